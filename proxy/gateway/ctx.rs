//! What the gateway knows of one request: sorted once when it arrives
//! ([`super::request`]), then moved along by the flows.

use crate::secret::{Secret, SecretHash};
use crate::session::LiveSession;
use crate::store::WebSession;
use crate::transaction::TxState;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// Which of handoff's routes a request took (the `route` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// Proxied to the IdP untouched (beyond header hygiene).
    #[default]
    Proxy,
    /// A redemption entry point.
    Redemption,
    /// The token endpoint.
    Token,
    /// A mint, answered by handoff.
    Mint,
    /// handoff's JWKS.
    Jwks,
    /// The revocation endpoint.
    Revocation,
    /// Back-channel logout.
    BackchannelLogout,
}

impl Route {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Route::Proxy => "proxy",
            Route::Redemption => "redemption",
            Route::Token => "token",
            Route::Mint => "mint",
            Route::Jwks => "jwks",
            Route::Revocation => "revocation",
            Route::BackchannelLogout => "backchannel_logout",
        }
    }

    /// The routes whose POST body handoff reads itself.
    pub(crate) fn reads_form(self) -> bool {
        matches!(
            self,
            Route::Token | Route::Revocation | Route::BackchannelLogout
        )
    }
}

/// Per-request state.
#[derive(Debug)]
pub struct Ctx {
    /// The route (sorted once; `Token` may become `Mint`).
    pub route: Route,
    /// The raw path.
    pub path: String,
    /// The path as the IdP will route it.
    pub canonical_path: String,
    /// This request as a hop of a login transaction: the canonical path and the
    /// raw query (see `response::hop_key`).
    pub hop: String,
    /// The client IP (after the trusted-proxy rule).
    pub client_ip: IpAddr,
    pub(super) started: Instant,
    /// The original `Host`.
    pub host: Option<String>,
    /// The request came over TLS.
    pub tls: bool,
    /// `X-Forwarded-Proto` as a trusted proxy sent it (`http`/`https` only).
    pub forwarded_proto: Option<String>,
    /// `client_id` of this request's query, if any.
    pub authorize_client: Option<String>,
    /// The request asks for an authorization response handoff could not mediate
    /// (or hides its parameters): no transfer login, no transfer session.
    pub unmediatable: bool,
    /// The assertion to attach upstream.
    pub assertion: Option<Secret>,
    /// Transfer-token cookies the browser sent, to be expired in the response.
    pub expire: Vec<String>,
    /// Add `Cache-Control: no-store` and `Referrer-Policy: no-referrer`.
    pub no_store: bool,
    /// The login transaction.
    pub tx: TxState,
    /// Live transfer sessions whose cookies this request carries.
    pub sessions: Vec<LiveSession>,
    /// IdP session cookies whose session is over: expired in the browser.
    pub expire_sessions: Vec<String>,
    /// Session cookie names of IdP sessions handoff did not bind.
    pub unbound: Vec<String>,
    /// Session cookie names that must not reach the IdP on this request.
    pub strip: Vec<String>,
    /// The Cookie header as it goes on, before `strip` is applied.
    pub cookie_rest: Option<Vec<u8>>,
    /// The session this response bound (cookie hash and record).
    pub bound: Option<(SecretHash, WebSession)>,
    /// The held-back end of the request body (see `body::scan_chunk`).
    pub body_tail: Vec<u8>,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx {
            route: Route::Proxy,
            path: String::new(),
            canonical_path: String::new(),
            hop: String::new(),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            started: Instant::now(),
            host: None,
            tls: false,
            forwarded_proto: None,
            authorize_client: None,
            unmediatable: false,
            assertion: None,
            expire: Vec::new(),
            no_store: false,
            tx: TxState::None,
            sessions: Vec::new(),
            expire_sessions: Vec::new(),
            unbound: Vec::new(),
            strip: Vec::new(),
            cookie_rest: None,
            bound: None,
            body_tail: Vec::new(),
        }
    }
}

impl Ctx {
    /// Whether a transfer session or login transaction is involved in this request.
    pub(crate) fn in_transfer(&self) -> bool {
        self.tx.is_active() || !self.sessions.is_empty()
    }
}
