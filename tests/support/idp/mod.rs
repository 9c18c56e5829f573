//! A stand-in OpenID Connect identity provider for handoff's end-to-end tests.
//!
//! It is a real HTTP/1.1 server (hyper) on `127.0.0.1:0` that behaves like a small,
//! RFC-correct OIDC provider, plus the one extension handoff relies on: `/authorize`
//! logs the user in when the request carries a valid handoff identity assertion
//! (`X-Handoff-Assertion`, an EdDSA compact JWS verified against handoff's JWKS).
//!
//! The JWS code here is deliberately independent of handoff's own: the stand-in
//! checks handoff's output, it must not share its bugs.
//!
//! Endpoints:
//! - `GET  /.well-known/openid-configuration`
//! - `GET  /jwks` (the IdP's ES256 key)
//! - `POST /oauth/token` (`refresh_token` and `authorization_code` grants, form bodies only)
//! - `GET|POST /userinfo` (bearer access token)
//! - `POST /oauth/revoke` (RFC 7009)
//! - `GET  /authorize` (assertion login, `_session` cookie SSO, or the login page)
//!
//! Every request is recorded before it is handled, also while the IdP is "down".
//!
//! The stand-in's own tests are in `tests/idp_standin.rs` (run once, not in every
//! test binary that includes `mod support;`).
//!
//! Modules, in the order a request meets them:
//! - [`routes`]: recording, the outage switch, and dispatch by path (strict, or
//!   [`java_router`]'s reading); discovery and `/jwks`.
//! - [`authorize`]: `/authorize` and `/resume` (deferred session cookies).
//! - [`assertion`]: verifying handoff's assertion and fetching handoff's JWKS.
//! - [`token`]: the token endpoint's grants, id_tokens, `/userinfo`.
//! - [`revocation`]: RFC 7009 revocation.
//! - [`jwt`]: the IdP's ES256 key, signing, base64url, the clock of `iat`/`exp`.
//! - [`params`]: request parsing (forms, client authentication, cookies, bearer).
//! - [`reply`]: response builders (JSON, login page, error redirects).
//! - [`state`]: the server's state (grants, sessions, recordings).

mod assertion;
mod authorize;
pub mod java_router;
pub mod jwt;
mod params;
pub mod reply;
mod revocation;
mod routes;
mod state;
mod token;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::digest;
use ring::rand::SystemRandom;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use params::normalize_scope;
use state::{Inner, RefreshGrant, State};

/// Header that carries handoff's identity assertion.
pub const ASSERTION_HEADER: &str = "x-handoff-assertion";
/// Name of the IdP's session cookie (as `oidc-provider` names it).
pub const SESSION_COOKIE: &str = "_session";
/// Marker contained in the login page's body.
pub const LOGIN_PAGE_MARKER: &str = "IDP_LOGIN_PAGE";

const ACCESS_TOKEN_TTL: u64 = 3600;
const ID_TOKEN_TTL: u64 = 300;
const CODE_TTL: u64 = 60;
const MAX_BODY: usize = 1 << 20;
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `iat` / `nbf` of assertions.
const ASSERTION_LEEWAY: f64 = 5.0;
/// Longest accepted assertion lifetime (`exp - iat`).
const ASSERTION_MAX_LIFETIME: f64 = 60.0;

type Body = Full<Bytes>;

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub struct IdpOptions {
    /// `true`: token responses include an ES256 `id_token`; `false`: clients must use userinfo.
    pub id_token: bool,
    /// `true`: every refresh-token grant returns a new refresh token and invalidates the old one.
    pub rotate_refresh_tokens: bool,
    /// Where to fetch handoff's assertion-verification JWKS (can be set later).
    pub handoff_jwks_url: Option<String>,
    /// Expected `aud` of handoff assertions.
    pub assertion_audience: String,
    /// Expected `iss` of handoff assertions.
    pub assertion_issuer: String,
    /// `true`: like oidc-provider, an assertion login does not set the session
    /// cookie at once: it redirects to `/resume` (with a `_pending` cookie), and
    /// `/resume` sets `_session` and redirects to the client with the code.
    pub defer_session: bool,
    /// `true`: route like a Java servlet container / JAX-RS (Keycloak on Quarkus,
    /// Tomcat, Jetty) with lenient settings: the request path is normalised by
    /// [`java_route`] before it is matched (`/token;jsessionid=x`, `/a/../token`,
    /// `/a/%2e%2e/token`, `/a\..\token`, `/a%5c..%2ftoken` and `/token/` all reach
    /// `/token`'s handler). A proxy in front of such an IdP must see them as `/token`.
    pub java_router: bool,
}

impl Default for IdpOptions {
    /// id_token and rotation on, no JWKS URL, audience `test-idp`, issuer `handoff`.
    fn default() -> Self {
        IdpOptions {
            id_token: true,
            rotate_refresh_tokens: true,
            handoff_jwks_url: None,
            assertion_audience: "test-idp".to_string(),
            assertion_issuer: "handoff".to_string(),
            defer_session: false,
            java_router: false,
        }
    }
}

/// One request as the IdP received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// As received: path and query (origin form).
    pub uri: String,
    /// Lower-case names, values decoded lossily as UTF-8, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// Whether `needle` occurs in the URI, in any header value, or in the body.
    pub fn contains(&self, needle: &str) -> bool {
        let n = needle.as_bytes();
        self.uri.contains(needle)
            || self.headers.iter().any(|(_, v)| v.contains(needle))
            || n.is_empty()
            || self.body.windows(n.len()).any(|w| w == n)
    }

    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        let end = self.uri.find('?').unwrap_or(self.uri.len());
        &self.uri[..end]
    }
}

/// A successful login through a handoff assertion.
#[derive(Clone, Debug, PartialEq)]
pub struct LoginRecord {
    pub sub: String,
    /// The web client of the `/authorize` request (equal to the assertion's `client_id`).
    pub client_id: String,
    /// All claims of the assertion.
    pub claims: Value,
    /// Value of the `_session` cookie the IdP set for this login.
    pub session: String,
}

/// The running stand-in. Dropping it stops the server (abruptly); prefer [`TestIdp::shutdown`].
pub struct TestIdp {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestIdp {
    /// Binds `127.0.0.1:0`, generates the ES256 signing key and starts serving.
    pub async fn start(opts: IdpOptions) -> TestIdp {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("test IdP: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("test IdP: local_addr");
        let issuer = format!("http://{addr}");

        let rng = SystemRandom::new();
        let (signing_key, kid, public_jwk) = jwt::generate_es256(&rng);

        let state = State {
            jwks_url: opts.handoff_jwks_url.clone(),
            ..State::default()
        };
        let inner = Arc::new(Inner {
            issuer,
            opts,
            rng,
            signing_key,
            kid,
            public_jwk,
            client: Client::builder(TokioExecutor::new()).build_http(),
            state: Mutex::new(state),
        });

        let (shutdown_tx, mut shutdown_rx) = oneshot::channel::<()>();
        let server = inner.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut shutdown_rx => break,
                    accepted = listener.accept() => {
                        let stream = match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        };
                        let inner = server.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req| {
                                let inner = inner.clone();
                                async move { Ok::<_, Infallible>(inner.handle(req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            // Dropping `conns` aborts the open connections.
        });

        TestIdp {
            inner,
            addr,
            shutdown_tx: Some(shutdown_tx),
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn issuer(&self) -> String {
        self.inner.issuer.clone()
    }

    /// Sets where handoff's JWKS is fetched from, and forgets the cached keys.
    pub fn set_handoff_jwks_url(&self, url: &str) {
        let mut st = self.inner.lock();
        st.jwks_url = Some(url.to_string());
        st.jwks_cache.clear();
    }

    /// Seeds a valid refresh token (as if `sub` had logged in to `client_id`).
    pub fn issue_refresh_token(&self, sub: &str, client_id: &str, scope: &str) -> String {
        let token = self.inner.random_token();
        let grant = RefreshGrant {
            sub: sub.to_string(),
            client_id: client_id.to_string(),
            scope: normalize_scope(scope),
        };
        self.inner.lock().refresh.insert(token.clone(), grant);
        token
    }

    /// Whether `token` is a refresh token the IdP would currently accept.
    pub fn refresh_token_active(&self, token: &str) -> bool {
        self.inner.lock().refresh.contains_key(token)
    }

    /// The refresh tokens the IdP currently accepts that were issued to `client_id`.
    pub fn refresh_tokens_of(&self, client_id: &str) -> Vec<String> {
        let st = self.inner.lock();
        st.refresh
            .iter()
            .filter(|(_, g)| g.client_id == client_id)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().requests.clone()
    }

    /// Successful assertion logins, in order.
    pub fn logins(&self) -> Vec<LoginRecord> {
        self.inner.lock().logins.clone()
    }

    /// Why assertions were rejected, in order (for debugging failing tests).
    pub fn assertion_rejections(&self) -> Vec<String> {
        self.inner.lock().assertion_rejections.clone()
    }

    /// When down, every endpoint answers 503 (requests are still recorded).
    /// Signs arbitrary claims with the IdP's ES256 key (e.g. a back-channel
    /// `logout_token`), as the IdP would.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        self.inner.sign_claims(claims)
    }

    /// An ordinary IdP session of `sub` (as a password login makes it, without
    /// handoff); returns its `_session` cookie value.
    pub fn password_session(&self, sub: &str) -> String {
        let session = self.inner.random_token();
        let mut st = self.inner.lock();
        st.sessions.insert(session.clone(), sub.to_string());
        st.password_sessions.insert(session.clone());
        session
    }

    /// The IdP's session id (`sid` in its id_tokens) for a `_session` cookie value.
    pub fn session_id(cookie_value: &str) -> String {
        jwt::b64e(digest::digest(&digest::SHA256, cookie_value.as_bytes()).as_ref())[..16]
            .to_string()
    }

    /// Simulates an outage: every endpoint answers 503.
    pub fn set_down(&self, down: bool) {
        self.inner.lock().down = down;
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
