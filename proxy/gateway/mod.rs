//! The public proxy: handoff's flows placed in pingora's request phases.
//!
//! A request meets handoff in this order (pingora's phase chart):
//! - `request_filter`: strip any client-sent assertion header (invariant 5); work out
//!   the client IP (trusted-proxy rule); serve the public JWKS; take every session
//!   transfer token out of the URL and the `Cookie` header (invariant 4: the IdP
//!   never sees one); on a redemption entry point, answer query delivery with a 303
//!   to the clean URL, or redeem a cookie-delivered token; on the token endpoint, read
//!   the body and run a mint when the audience says so.
//! - `upstream_peer`: the IdP.
//! - `upstream_request_filter`: the `Host`/`X-Forwarded-*` the IdP needs to build
//!   correct URLs, and the signed assertion after a successful redemption.
//! - `response_filter`: expire the transfer-token cookies in the browser; mark
//!   redemption responses `no-store` and `no-referrer`.
//! - `logging`: per-route latency.

use crate::app::Handoff;
use crate::assertion::{self, AssertionFacts};
use crate::config::HostHeader;
use crate::cookies;
use crate::hygiene;
use crate::mint::{self, parse_token_body, OAuthError};
use crate::redeem::{self, Outcome, Presented, Redeemed};
use crate::secret::{Secret, SecretHash, TransferToken};
use crate::session::Check;
use crate::store::{BindOutcome, CodeRecord, WebSession};
use crate::token;
use crate::transaction::Transaction;
use async_trait::async_trait;
use bytes::Bytes;
use handoff_rules::AuthMethod;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
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
    fn label(self) -> &'static str {
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
}

/// Per-request state.
#[derive(Debug)]
pub struct Ctx {
    route: Route,
    client_ip: IpAddr,
    started: Instant,
    /// The assertion to attach upstream (after a successful redemption).
    assertion: Option<Secret>,
    /// Transfer-token cookies the browser sent, to be expired in the response.
    expire: Vec<String>,
    /// Add `Cache-Control: no-store` and `Referrer-Policy: no-referrer`.
    no_store: bool,
    /// The original `Host`, for `X-Forwarded-Host`.
    host: Option<String>,
    tls: bool,
    /// The login transaction this request belongs to (continued or just started).
    tx: Option<Transaction>,
    /// A transaction cookie to set (sealed), when this request started one.
    new_tx_cookie: Option<String>,
    /// Expire the transaction cookie in the browser (ended, invalid, or done).
    expire_tx: bool,
    /// Live transfer sessions whose cookies this request carries.
    sessions: Vec<(String, SecretHash, WebSession)>,
    /// IdP session cookies that were dead: removed, and expired in the browser.
    expire_sessions: Vec<String>,
    /// A transaction that may no longer attach assertions (other IP, out of hops or
    /// time, store trouble) but whose session must still be bound if the IdP sets
    /// its cookie now: an unbound transfer session would have no limits at all.
    bind_only: Option<Transaction>,
    /// The transaction's session got bound in this response.
    tx_done: bool,
    /// `X-Forwarded-Proto` as a trusted proxy sent it (`http`/`https` only).
    forwarded_proto: Option<String>,
    /// The session this response bound (cookie hash and record).
    bound: Option<(SecretHash, WebSession)>,
    /// `client_id` of this request's query, if any.
    authorize_client: Option<String>,
    /// The request asks for an authorization response handoff could not mediate
    /// (or hides its parameters): no transfer login, no transfer session.
    unmediatable: bool,
    /// The Cookie header as it goes on, before `strip` is applied.
    cookie_rest: Option<Vec<u8>>,
    /// Session cookie names that must not reach the IdP on this request.
    strip: Vec<String>,
    /// Session cookie names of IdP sessions handoff did not bind.
    unbound: Vec<String>,
    /// The held-back end of the request body (see `request_body_filter`).
    body_tail: Vec<u8>,
}

/// A body read whole and parsed as token-endpoint parameters.
struct Form {
    body: Bytes,
    content_type: Option<String>,
    authorization: Option<String>,
    params: crate::mint::TokenParams,
}

impl Form {
    /// The request as handoff forwards it to the IdP itself.
    fn forward(&self, client_ip: IpAddr) -> token::Forward<'_> {
        token::Forward {
            body: &self.body,
            content_type: self.content_type.as_deref(),
            authorization: self.authorization.as_deref(),
            client_ip,
        }
    }
}

/// The pingora application.
pub struct Gateway {
    h: Arc<Handoff>,
    stt_cookie_names: Vec<String>,
    routes: Routes,
}

/// The configured paths in canonical form, computed once.
struct Routes {
    jwks: String,
    token: String,
    revocation: String,
    backchannel_logout: String,
    redemption: Vec<String>,
}

impl Gateway {
    /// The gateway for one handoff instance.
    pub fn new(h: Arc<Handoff>) -> Self {
        let n = &h.config.names;
        let mut stt_cookie_names = vec![n.redirect_cookie.clone(), n.cookie.clone()];
        stt_cookie_names.extend(n.cookie_aliases.iter().cloned());
        let c = |p: &str| canonical_path(p).into_owned();
        let routes = Routes {
            jwks: c(&h.config.paths.jwks),
            token: c(&h.config.paths.token),
            revocation: c(&h.config.paths.revocation),
            backchannel_logout: c(&h.config.backchannel_logout.path),
            redemption: h.config.paths.redemption.iter().map(|p| c(p)).collect(),
        };
        Gateway {
            h,
            stt_cookie_names,
            routes,
        }
    }
}

/// Removes `param` from a raw query string; returns the remaining query and the
/// first removed value (percent-decoded). Other parameters stay byte for byte.
pub fn take_query_param(query: &str, param: &str) -> (String, Option<String>) {
    let mut kept = Vec::new();
    let mut value = None;
    for seg in query.split('&') {
        let mut pairs = form_urlencoded::parse(seg.as_bytes());
        match pairs.next() {
            Some((k, v)) if k == param => {
                value.get_or_insert_with(|| v.into_owned());
            }
            _ => kept.push(seg),
        }
    }
    (kept.join("&"), value)
}

/// The value of `param` in a raw query string.
fn query_param(query: &str, param: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == param)
        .map(|(_, v)| v.into_owned())
}

/// SHA-256 over the configured request attributes (SPEC §4.2 `fingerprint`), or
/// None when none are configured or one of them is missing (a fingerprint
/// binding then fails).
pub fn fingerprint(req: &RequestHeader, names: &[String]) -> Option<[u8; 32]> {
    if names.is_empty() {
        return None;
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for n in names {
        ctx.update(n.as_bytes());
        ctx.update(b"\0");
        // A missing attribute makes no fingerprint at all: two requests that
        // both lack it must not "match".
        let v = req.headers.get(n.as_str())?;
        ctx.update(v.as_bytes());
        ctx.update(b"\0");
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Some(out)
}

async fn respond(
    session: &mut Session,
    status: u16,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (k, v) in headers {
        resp.append_header(k.to_string(), v.as_str())?;
    }
    resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    session
        .write_response_header(Box::new(resp), body.is_empty())
        .await?;
    if !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

async fn respond_json(session: &mut Session, status: u16, body: &serde_json::Value) -> Result<()> {
    let headers = [
        ("content-type", "application/json".to_string()),
        ("cache-control", "no-store".to_string()),
        ("pragma", "no-cache".to_string()),
    ];
    respond(session, status, &headers, Bytes::from(body.to_string())).await
}

/// `413` with an RFC 6749 error body.
async fn too_large(session: &mut Session, limit: usize) -> Result<()> {
    let e = OAuthError {
        status: 413,
        error: "invalid_request",
        description: format!("the body is larger than {limit} bytes"),
    };
    respond_json(session, 413, &e.body()).await
}

/// The cookies of a request, once handoff has taken out what is its own.
struct CookiesIn {
    /// Transfer-token cookies `(name, value)`, in order.
    stt: Vec<(String, String)>,
    /// The sealed transaction cookie, if any.
    tx: Option<String>,
    /// The Cookie header changed (something was taken out).
    changed: bool,
}

fn stt_in_body() -> Result<()> {
    Error::e_explain(
        ErrorType::HTTPStatus(400),
        "a session transfer token in a request body is never forwarded",
    )
}

/// Whether the request's `Host` is one of handoff's public hosts (case-insensitive;
/// a missing port, or the scheme's default one, matches the configured host).
pub fn host_matches(got: &str, public_host: &str) -> bool {
    fn split(h: &str) -> (String, Option<&str>) {
        let h = h.trim();
        if let Some(rest) = h.strip_prefix('[') {
            return match rest.split_once(']') {
                Some((a, p)) => (format!("[{}]", a.to_ascii_lowercase()), p.strip_prefix(':')),
                None => (h.to_ascii_lowercase(), None),
            };
        }
        match h.rsplit_once(':') {
            Some((a, p)) if !a.contains(':') => (a.to_ascii_lowercase(), Some(p)),
            _ => (h.to_ascii_lowercase(), None),
        }
    }
    let (gh, gp) = split(got);
    let (ph, pp) = split(public_host);
    let gh = gh.trim_end_matches('.');
    gh == ph.trim_end_matches('.')
        && match (gp, pp) {
            (Some(a), Some(b)) => a == b,
            (Some(a), None) => a == "443" || a == "80",
            _ => true,
        }
}

impl Gateway {
    /// Request hygiene (see [`hygiene`]): strips headers the IdP must not read from
    /// a client, works out the client's address, and refuses what cannot be read one
    /// way only. Returns the status to refuse the request with.
    fn hygiene(&self, session: &mut Session, ctx: &mut Ctx) -> Option<u16> {
        let h = &self.h;
        let req = session.req_header_mut();
        // Invariant 5: only handoff puts an assertion on a request.
        while req
            .remove_header(h.config.assertion.header.as_str())
            .is_some()
        {}
        let assertion = h.config.assertion.header.to_ascii_lowercase();
        let mut protected: Vec<&str> = hygiene::FORWARDING_HEADERS.to_vec();
        protected.extend_from_slice(hygiene::ROUTING_HEADERS);
        protected.extend_from_slice(hygiene::REWRITE_HEADERS);
        protected.push(&assertion);
        let mut drop: Vec<http::HeaderName> = Vec::new();
        for (name, value) in req.headers.iter() {
            let n = name.as_str();
            if n == "cookie" {
                continue;
            }
            let routing = (h.config.upstream.forwarded_headers
                && hygiene::ROUTING_HEADERS.contains(&n))
                || hygiene::REWRITE_HEADERS.contains(&n);
            let referer_leak = n == "referer"
                && value
                    .as_bytes()
                    .windows(h.config.names.query_param.len())
                    .any(|w| w.eq_ignore_ascii_case(h.config.names.query_param.as_bytes()));
            if hygiene::shadows(n, &protected)
                || routing
                || referer_leak
                || hygiene::contains_stt(value.as_bytes())
            {
                drop.push(name.clone());
            }
        }
        for name in drop {
            req.remove_header(&name);
        }
        let raw_path = req.uri.path();
        if hygiene::ambiguous_path(raw_path) || hygiene::contains_stt(raw_path.as_bytes()) {
            tracing::info!("refused a path that routers read in more than one way");
            return Some(400);
        }
        let host = req
            .headers
            .get(header::HOST)
            .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
            .or_else(|| req.uri.authority().map(|a| a.to_string()));
        let authority_ok = req
            .uri
            .authority()
            .is_none_or(|a| host_matches(a.as_str(), &h.config.public_host));
        if !authority_ok
            || host
                .as_deref()
                .is_some_and(|got| !host_matches(got, &h.config.public_host))
        {
            tracing::info!("refused a request for a host that is not handoff's");
            return Some(421);
        }
        ctx.host = host;
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let req = session.req_header();
        let name = match h.config.forwarded_header {
            crate::client_ip::ForwardedHeader::XForwardedFor => "x-forwarded-for",
            crate::client_ip::ForwardedHeader::Forwarded => "forwarded",
        };
        let raw: Vec<Option<&str>> = req
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().ok())
            .collect();
        ctx.client_ip = crate::client_ip::client_ip_from(
            peer,
            h.config.forwarded_header,
            &raw,
            &h.config.trusted_proxies,
        );
        if h.config
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&crate::client_ip::canonical(peer)))
        {
            ctx.forwarded_proto = req
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .filter(|p| *p == "https" || *p == "http")
                .map(str::to_owned);
        }
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        None
    }

    /// Answers a refused request with `status` and a short plain-text reason.
    async fn refuse(&self, session: &mut Session, status: u16) -> Result<bool> {
        let why = match status {
            421 => "this host is not served here\n",
            431 => "the Cookie header is too large\n",
            _ => "this request cannot be read unambiguously\n",
        };
        let headers = [
            ("content-type", "text/plain".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        respond(
            session,
            status,
            &headers,
            Bytes::from_static(why.as_bytes()),
        )
        .await?;
        Ok(true)
    }

    /// A URL that carried a transfer token (under its own name or any other): a 303
    /// to the same URL without it, so the address bar and history lose it (SPEC
    /// §2.2 step 1). On a redemption entry point, the delivered token rides along in
    /// a `__Host-` cookie; anywhere else it is dropped.
    async fn clean_url_redirect(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        path: &str,
        clean: &str,
        delivered: Option<String>,
        is_redemption: bool,
    ) -> Result<bool> {
        let h = &self.h;
        if is_redemption {
            ctx.route = Route::Redemption;
        }
        let method = &session.req_header().method;
        if method != http::Method::GET && method != http::Method::HEAD {
            // A redirect would turn it into a GET; the body cannot go on without it.
            return self.refuse(session, 400).await;
        }
        ctx.no_store = true;
        let mut headers = vec![
            ("location", hygiene::local_location(path, Some(clean))),
            ("cache-control", "no-store".to_string()),
            ("referrer-policy", "no-referrer".to_string()),
        ];
        match delivered.as_deref().map(TransferToken::parse) {
            Some(Ok(t)) if is_redemption => {
                let remaining = t.claimed_expiry() as i64 - h.clock.now_secs() as i64;
                headers.push((
                    "set-cookie",
                    cookies::host_cookie(
                        &h.config.names.redirect_cookie,
                        t.expose(),
                        remaining.clamp(0, 300),
                    ),
                ));
                tracing::debug!(token = %t, "query-delivered token moved to the redirect cookie");
            }
            Some(Err(_)) if is_redemption => {
                h.metrics
                    .redemptions
                    .with_label_values(&["fallback", "malformed"])
                    .inc();
                tracing::info!(
                    reason = "malformed",
                    "redemption fell back to an ordinary login"
                );
            }
            Some(_) => {
                tracing::info!(
                    "a session transfer token outside a redemption entry point was dropped"
                )
            }
            None => {}
        }
        respond(session, 303, &headers, Bytes::new()).await?;
        Ok(true)
    }

    /// Reads the `Cookie` header once: transfer-token and transaction cookies come
    /// out (the IdP sees neither), so does any cookie whose value is shaped like a
    /// transfer token, and the IdP's session cookies are checked. `Ok(None)`: the
    /// request has been answered (431).
    async fn read_cookies(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<Option<CookiesIn>> {
        let h = &self.h;
        let headers: Vec<Vec<u8>> = session
            .req_header()
            .headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect();
        let mut out = CookiesIn {
            stt: Vec::new(),
            tx: None,
            changed: false,
        };
        if headers.is_empty() {
            return Ok(Some(out));
        }
        if headers.iter().map(Vec::len).sum::<usize>() > h.config.session.max_cookie_bytes {
            self.refuse(session, 431).await?;
            return Ok(None);
        }
        let refs: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
        let mut names: Vec<&str> = self.stt_cookie_names.iter().map(String::as_str).collect();
        names.push(&h.config.session.transaction_cookie);
        let (rest, taken) = cookies::take_cookies(&refs, &names);
        out.changed = !taken.is_empty() || headers.len() > 1;
        for (name, value) in taken {
            if name == h.config.session.transaction_cookie {
                out.tx.get_or_insert(value);
            } else {
                if !ctx.expire.contains(&name) {
                    ctx.expire.push(name.clone());
                }
                out.stt.push((name, value));
            }
        }
        let rest = rest.map(|r| {
            let kept: Vec<&[u8]> = r
                .split(|b| *b == b';')
                .filter(|seg| !hygiene::contains_stt(seg))
                .collect();
            if kept.len() != r.split(|b| *b == b';').count() {
                out.changed = true;
            }
            kept.join(&b";"[..])
        });
        if let Some(r) = &rest {
            self.check_sessions(r, ctx).await;
        }
        ctx.cookie_rest = rest.filter(|r| !r.trim_ascii().is_empty());
        Ok(Some(out))
    }

    /// Writes the `Cookie` header the IdP receives: what [`Gateway::read_cookies`]
    /// kept, minus every session cookie this request must not pass (`ctx.strip`),
    /// however its name is spelled.
    fn rewrite_cookie_header(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        changed: bool,
    ) -> Result<()> {
        if !changed && ctx.strip.is_empty() {
            return Ok(());
        }
        let rest = match &ctx.cookie_rest {
            Some(r) if !ctx.strip.is_empty() => {
                let names: Vec<&str> = ctx.strip.iter().map(String::as_str).collect();
                cookies::take_cookies_folded(&[r.as_slice()], &names)
            }
            other => other.clone(),
        };
        let req = session.req_header_mut();
        req.remove_header("cookie");
        if let Some(rest) = rest {
            let v = http::HeaderValue::from_bytes(&rest)
                .or_err(ErrorType::InvalidHTTPHeader, "rebuilding the Cookie header")?;
            req.insert_header("cookie", v)?;
        }
        Ok(())
    }

    /// A non-GET request inside a transfer context: can handoff see every authorize
    /// parameter the IdP may read from its body? An unreadable body counts as no.
    /// `Ok(None)`: answered already (413, or 400 for a token in the body).
    async fn body_is_mediatable(&self, session: &mut Session) -> Result<Option<bool>> {
        let Some(body) = self.read_body(session).await? else {
            return Ok(None);
        };
        if hygiene::contains_stt(&body) {
            self.refuse(session, 400).await?;
            return Ok(None);
        }
        if body.is_empty() {
            return Ok(Some(true));
        }
        let ct = session
            .req_header()
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        Ok(Some(match parse_token_body(ct, &body) {
            Ok(p) => {
                let lower: Vec<(String, &str)> =
                    p.0.iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
                        .collect();
                !hygiene::unmediatable(lower.iter().map(|(k, v)| (k.as_str(), *v)))
            }
            // Not a form handoff can read (or a repeated parameter): unsafe.
            Err(_) => false,
        }))
    }

    /// A redemption entry point with a transfer token in a cookie (SPEC §2.2).
    async fn redemption(&self, session: &mut Session, ctx: &mut Ctx, stt: &[(String, String)]) {
        let h = &self.h;
        // Prefer a query-delivered token (the redirect cookie) over the native app's
        // cookie: it is the one this navigation carried.
        let chosen = stt
            .iter()
            .find(|(n, _)| *n == h.config.names.redirect_cookie)
            .map(|(_, v)| (v.clone(), AuthMethod::Query))
            .or_else(|| stt.first().map(|(_, v)| (v.clone(), AuthMethod::Cookie)));
        let Some((token, method)) = chosen else {
            return;
        };
        ctx.no_store = true;
        // A redemption attempt replaces any running transaction: whatever happens
        // next is this token's doing, or an ordinary login.
        ctx.tx = None;
        if ctx.unmediatable {
            // SPEC §7.11: the code would come back where the token endpoint cannot
            // see it. The token is not spent; this is an ordinary login.
            h.metrics
                .redemptions
                .with_label_values(&["fallback", "unmediatable"])
                .inc();
            tracing::info!(
                reason = "unmediatable",
                "redemption fell back to an ordinary login"
            );
            ctx.bind_only = None;
            ctx.expire_tx = true;
            return;
        }
        let web_client = ctx.authorize_client.clone();
        let fp = fingerprint(session.req_header(), h.policy.load().fingerprint_headers());
        let bound_subjects: Vec<&str> = ctx
            .sessions
            .iter()
            .map(|(_, _, s)| s.sub.as_str())
            .collect();
        let presented = Presented {
            token: &token,
            method,
            web_client: web_client.as_deref(),
            client_ip: ctx.client_ip,
            fingerprint: fp,
            bound_subjects: &bound_subjects,
        };
        match redeem::redeem(h, &presented).await {
            Outcome::Success(r) => self.start_transaction(&r, ctx),
            Outcome::Fallback("different_subject") => {
                // SPEC §2.2: the browser's session of another user is revoked and
                // this becomes an ordinary login.
                for (name, hash, s) in std::mem::take(&mut ctx.sessions) {
                    if let Err(e) = crate::session::revoke(h, &hash, &s).await {
                        tracing::error!(error = %e, sid = %s.sid, "could not revoke the other subject's session");
                    }
                    h.metrics
                        .sessions
                        .with_label_values(&["different_subject"])
                        .inc();
                    ctx.strip.push(name.clone());
                    ctx.expire_sessions.push(name);
                }
            }
            Outcome::Fallback(_) => {
                // An ordinary login: nothing of an earlier transaction goes on.
                ctx.bind_only = None;
                ctx.expire_tx = true;
            }
        }
    }

    /// Checks every IdP session cookie in `cookie_header`, every way an IdP might
    /// read it ([`cookies::scan_session_cookies`]), all readings at once. Fills
    /// `ctx.sessions` (live transfer sessions), `ctx.unbound` (plain cookies of
    /// sessions handoff did not bind) and `ctx.strip` (names that must not pass:
    /// a dead reading — the dead one wins —, an ambiguous value no live session
    /// explains, too many occurrences). Dead ones are also expired in the browser
    /// (`ctx.expire_sessions`), but not when the store merely could not say (a store
    /// outage must not log users out of sessions that may be perfectly good: SPEC §5).
    async fn check_sessions(&self, cookie_header: &[u8], ctx: &mut Ctx) {
        let h = &self.h;
        let cfg = &h.config.session;
        let scans = cookies::scan_session_cookies(
            &[cookie_header],
            &cfg.cookie_names,
            cfg.max_cookie_occurrences,
        );
        if scans.is_empty() {
            return;
        }
        let lookups: Vec<(usize, SecretHash)> = scans
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.over_limit)
            .flat_map(|(i, s)| {
                s.readings
                    .iter()
                    .map(move |r| (i, SecretHash::of(r.as_bytes())))
            })
            .collect();
        // One wait for all of them: the store client pipelines concurrent calls.
        let checks = futures_util::future::join_all(
            lookups
                .iter()
                .map(|(_, hash)| crate::session::check(h, hash)),
        )
        .await;
        for (i, scan) in scans.iter().enumerate() {
            if scan.over_limit {
                h.metrics.sessions.with_label_values(&["over_limit"]).inc();
                tracing::info!(cookie = %scan.name, "too many occurrences of a session cookie: stripped unread");
                ctx.strip.push(scan.name.clone());
                continue;
            }
            let mut alive: Vec<(String, SecretHash, WebSession)> = Vec::new();
            let mut dead_reason = None;
            for ((j, _), check) in lookups.iter().zip(&checks) {
                if *j != i {
                    continue;
                }
                match check {
                    Check::Unbound => {}
                    Check::Alive(live, s) => {
                        if !alive.iter().any(|(_, l, _)| l == live) {
                            alive.push((scan.name.clone(), *live, (**s).clone()));
                        }
                    }
                    Check::Dead(reason) => {
                        h.metrics.sessions.with_label_values(&[reason]).inc();
                        dead_reason.get_or_insert(*reason);
                    }
                }
            }
            if let Some(reason) = dead_reason {
                ctx.strip.push(scan.name.clone());
                if reason != "store_unavailable" {
                    ctx.expire_sessions.push(scan.name.clone());
                }
            } else if !alive.is_empty() {
                ctx.sessions.extend(alive);
            } else if scan.canonical {
                ctx.unbound.push(scan.name.clone());
            } else {
                // No live session explains the value, and some IdP may read it as
                // one handoff would call dead: it does not pass.
                h.metrics.sessions.with_label_values(&["ambiguous"]).inc();
                tracing::info!(cookie = %scan.name, "a session cookie in a non-canonical form was stripped");
                ctx.strip.push(scan.name.clone());
            }
        }
    }

    /// A request carrying a transaction cookie: open it, check time and IP, count
    /// the hop. On success `ctx.tx` is set; otherwise the cookie is expired.
    async fn continue_transaction(&self, sealed: &str, ctx: &mut Ctx) {
        let h = &self.h;
        let cfg = &h.config.session;
        let opened = h.tx_key.open(sealed);
        if let Some(t) = &opened {
            if t.absolute_exp > h.clock.now_secs() {
                ctx.bind_only = Some(t.clone());
            }
        }
        let tx = match opened {
            Some(tx) if tx.exp > h.clock.now_secs() && tx.ip == ctx.client_ip => tx,
            other => {
                let outcome = match other {
                    None => "invalid",
                    Some(t) if t.ip != ctx.client_ip => "wrong_ip",
                    Some(_) => "expired",
                };
                h.metrics
                    .transaction_hops
                    .with_label_values(&[outcome])
                    .inc();
                tracing::info!(outcome, client_ip = %ctx.client_ip, "login transaction cookie refused");
                ctx.expire_tx = true;
                return;
            }
        };
        match h
            .store
            .tx_hop(
                &tx.lineage,
                &tx.txid,
                cfg.transaction_max_hops,
                cfg.transaction_ttl,
            )
            .await
        {
            Ok(true) => {
                h.metrics.transaction_hops.with_label_values(&["ok"]).inc();
                ctx.tx = Some(tx);
            }
            Ok(false) => {
                h.metrics
                    .transaction_hops
                    .with_label_values(&["ended"])
                    .inc();
                tracing::info!(sid = %tx.sid, "login transaction over (done, out of hops, or lineage revoked)");
                ctx.expire_tx = true;
            }
            Err(e) => {
                // No assertion without the hop count (fail closed); the cookie stays,
                // so the next hop can try again once the store is back.
                h.metrics.store_errors.with_label_values(&["tx_hop"]).inc();
                h.metrics
                    .transaction_hops
                    .with_label_values(&["store_unavailable"])
                    .inc();
                tracing::warn!(error = %e, "login transaction hop not counted: store unavailable");
            }
        }
    }

    /// After a successful redemption: the assertion for this request and a new
    /// login transaction for the hops that follow.
    fn start_transaction(&self, r: &Redeemed, ctx: &mut Ctx) {
        let h = &self.h;
        let now = h.clock.now_secs();
        let tx = Transaction {
            txid: Transaction::new_id(),
            sid: r.sid.clone(),
            sub: r.ctx.sub.clone(),
            lineage: r.ctx.lineage.clone(),
            web_client: r.web_client.clone(),
            native_client: r.ctx.native_client_id.clone(),
            ip: ctx.client_ip,
            exp: now + h.config.session.transaction_ttl.as_secs(),
            absolute_exp: now + r.decision.session_absolute.as_secs(),
            idle_secs: r.decision.session_idle.as_secs(),
            refresh: crate::store::RefreshPolicy {
                allow: r.decision.allow_refresh_token,
                online: r.decision.enforce_online_refresh_tokens,
            },
        };
        ctx.new_tx_cookie = Some(h.tx_key.seal(&tx));
        ctx.tx = Some(tx);
        ctx.expire_tx = false;
        ctx.assertion = Some(r.assertion.clone());
    }

    /// Rewrites the IdP's `Set-Cookie`s (SPEC §2.4) and binds a session cookie set
    /// inside a login transaction (or rotated inside a bound session).
    async fn rewrite_cookies(&self, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        let h = &self.h;
        let cfg = &h.config.session;
        let now = h.clock.now_secs();
        let originals: Vec<String> = resp
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if originals.is_empty() {
            return Ok(());
        }
        let cap = ctx
            .tx
            .as_ref()
            .or(ctx.bind_only.as_ref())
            .map(|t| t.absolute_exp)
            .or_else(|| ctx.sessions.first().map(|(_, _, s)| s.absolute_exp))
            .map(|a| (a, now));
        let mut out = Vec::with_capacity(originals.len());
        for raw in &originals {
            let Some(rw) = cookies::rewrite_set_cookie(raw, cfg, cap) else {
                tracing::warn!("dropped an unparseable Set-Cookie for an IdP session cookie");
                continue;
            };
            let mut header = rw.header;
            if let Some((name, value)) = rw.session_cookie {
                if !self.bind(&name, &value, ctx).await {
                    // Fail closed: a transfer session handoff cannot hold to its limits
                    // must not exist in the browser.
                    header = cookies::expire_session_cookie(&name, cfg);
                }
            }
            out.push(header);
        }
        resp.remove_header(&header::SET_COOKIE);
        for v in out {
            resp.append_header(header::SET_COOKIE, v)?;
        }
        if ctx.tx_done {
            ctx.tx = None;
            ctx.bind_only = None;
            ctx.expire_tx = ctx.new_tx_cookie.take().is_none();
        }
        Ok(())
    }

    /// Binds an IdP session cookie value when this request belongs to a transfer
    /// session. Returns false when the cookie must not reach the browser.
    async fn bind(&self, name: &str, value: &str, ctx: &mut Ctx) -> bool {
        let h = &self.h;
        let hash = SecretHash::of(value.as_bytes());
        let now = h.clock.now_secs();
        let (session, txid, previous) = if let Some(tx) = ctx.tx.as_ref().or(ctx.bind_only.as_ref())
        {
            let s = WebSession {
                sid: tx.sid.clone(),
                sub: tx.sub.clone(),
                lineage: tx.lineage.clone(),
                web_client: tx.web_client.clone(),
                native_client: tx.native_client.clone(),
                created: now,
                absolute_exp: tx.absolute_exp,
                idle_secs: tx.idle_secs,
                last_seen: now,
                ip: tx.ip,
                revoked: false,
                moved_to: None,
                refresh: tx.refresh,
            };
            (s, Some(tx.txid.clone()), None)
        } else if let Some((_, h0, s)) = ctx
            .sessions
            .iter()
            .find(|(n, h0, _)| n == name && *h0 != hash)
        {
            // The IdP replaced the cookie of a bound session: the new value carries
            // the session on (one state, so idle time, refresh-token bindings and
            // revocation keep working whichever cookie is presented), and the old
            // record points at it.
            let carried = WebSession {
                last_seen: now,
                moved_to: None,
                ..s.clone()
            };
            (carried, None, Some(*h0))
        } else {
            return true;
        };
        match h
            .store
            .bind_session(&session, &hash, txid.as_deref(), h.config.session.retention)
            .await
        {
            Ok(BindOutcome::Bound) => {
                if let Some(old) = previous {
                    if let Err(e) = h.store.move_session(&old, &hash).await {
                        tracing::warn!(error = %e, sid = %session.sid, "could not point the old session cookie at the new one");
                    }
                    h.sessions.forget(&old);
                }
                h.metrics.sessions.with_label_values(&["bound"]).inc();
                ctx.bound = Some((hash, session.clone()));
                tracing::info!(sid = %session.sid, lineage = %session.lineage, cookie = name, absolute_exp = session.absolute_exp, "web session bound");
                if txid.is_some() {
                    // Ended after every Set-Cookie of the response is handled (an IdP
                    // may set several session cookies at once).
                    ctx.tx_done = true;
                }
                true
            }
            Ok(BindOutcome::LineageRevoked) => {
                h.metrics.sessions.with_label_values(&["revoked"]).inc();
                tracing::warn!(sid = %session.sid, lineage = %session.lineage, "session not bound: lineage revoked");
                false
            }
            Err(e) => {
                h.metrics
                    .store_errors
                    .with_label_values(&["bind_session"])
                    .inc();
                h.metrics
                    .sessions
                    .with_label_values(&["store_unavailable"])
                    .inc();
                tracing::error!(error = %e, sid = %session.sid, "session not bound: store unavailable; the IdP cookie is withheld");
                false
            }
        }
    }

    /// Reads the whole request body, up to the configured limit. `Ok(None)` means
    /// it was too large and a 413 has been sent.
    async fn read_body(&self, session: &mut Session) -> Result<Option<Bytes>> {
        let limit = self.h.config.max_body_bytes;
        let declared = session
            .req_header()
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            too_large(session, limit).await?;
            return Ok(None);
        }
        // Whatever we read is kept in pingora's retry buffer and replayed to the
        // IdP when the request is not a mint.
        session.enable_retry_buffering();
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                too_large(session, limit).await?;
                return Ok(None);
            }
        }
        Ok(Some(Bytes::from(body)))
    }

    /// Reads and parses a form or JSON body (token, revocation, logout endpoints).
    /// `Ok(None)`: a clear error has been answered already (413, 400).
    async fn read_form(&self, session: &mut Session) -> Result<Option<Form>> {
        let Some(body) = self.read_body(session).await? else {
            return Ok(None);
        };
        let content_type = session
            .req_header()
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match parse_token_body(content_type.as_deref(), &body) {
            Ok(params) => {
                let authorization = session
                    .req_header()
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok(Some(Form {
                    body,
                    content_type,
                    authorization,
                    params,
                }))
            }
            Err(e) => {
                respond_json(session, e.status, &e.body()).await?;
                Ok(None)
            }
        }
    }

    /// The token endpoint: mint when the audience says so, otherwise pass on.
    /// Returns true when handoff answered.
    async fn token_endpoint(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.route = Route::Token;
        let Some(form) = self.read_form(session).await? else {
            return Ok(true);
        };
        let params = &form.params;
        if mint::classify_audience(&self.h.config.public_host, params) == mint::Audience::Other {
            let f = form.forward(ctx.client_ip);
            return self
                .answer(session, token::mediate(&self.h, params, &f).await)
                .await;
        }
        ctx.route = Route::Mint;
        let fp = fingerprint(
            session.req_header(),
            self.h.policy.load().fingerprint_headers(),
        );
        let answer = mint::mint(&self.h, params, ctx.client_ip, fp).await;
        respond(
            session,
            answer.status,
            &answer.headers(),
            Bytes::from(answer.body.to_string()),
        )
        .await?;
        Ok(true)
    }
}

impl Gateway {
    /// Writes a mediation answer; `Ok(false)` lets pingora proxy the request.
    async fn answer(&self, session: &mut Session, action: token::Action) -> Result<bool> {
        match action {
            token::Action::Pass => Ok(false),
            token::Action::Answer {
                status,
                body,
                content_type,
            } => {
                let headers = [
                    ("content-type", content_type),
                    ("cache-control", "no-store".to_string()),
                    ("pragma", "no-cache".to_string()),
                ];
                respond(session, status, &headers, body).await?;
                Ok(true)
            }
        }
    }

    /// The revocation endpoint (RFC 7009) and back-channel logout: bodies handoff
    /// must read. Returns true when handoff answered.
    async fn form_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        revocation: bool,
    ) -> Result<bool> {
        ctx.route = if revocation {
            Route::Revocation
        } else {
            Route::BackchannelLogout
        };
        let Some(form) = self.read_form(session).await? else {
            return Ok(true);
        };
        let params = &form.params;
        if !revocation {
            let (status, v) = crate::backchannel::logout(&self.h, params).await;
            respond_json(session, status, &v).await?;
            return Ok(true);
        }
        let f = form.forward(ctx.client_ip);
        self.answer(
            session,
            token::revocation_endpoint(&self.h, params, &f).await,
        )
        .await
    }

    /// Remembers an authorization code the IdP issues inside a transfer session
    /// (from the redirect's `Location`), so its token response can be mediated.
    async fn track_code(&self, resp: &mut ResponseHeader, ctx: &Ctx) {
        let h = &self.h;
        if !(300..400).contains(&resp.status.as_u16()) {
            return;
        }
        let location = resp
            .headers
            .get(header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let Some(location) = location else {
            return;
        };
        let in_transfer = ctx.bound.is_some() || !ctx.sessions.is_empty() || ctx.tx.is_some();
        if in_transfer && hides_authorization_response(&location) {
            // A code, token or JARM response in the fragment (or a `response` JWT):
            // the token endpoint could not tell it belongs to a transfer session.
            // It does not reach the client.
            tracing::warn!(
                "withheld an authorization response in a form the token endpoint cannot mediate"
            );
            h.metrics
                .sessions
                .with_label_values(&["unmediatable_response"])
                .inc();
            let _ = resp.insert_header(header::LOCATION, withhold_response(&location));
            return;
        }
        let Some(code) = location
            .split_once('?')
            .and_then(|(_, q)| query_param(q.split('#').next().unwrap_or(q), "code"))
        else {
            return;
        };
        let rec = if let Some((hash, s)) = &ctx.bound {
            Some((
                s.lineage.clone(),
                s.sid.clone(),
                Some(hash.hex()),
                s.web_client.clone(),
                s.sub.clone(),
                s.refresh,
            ))
        } else if let Some((_, hash, s)) = ctx.sessions.first() {
            Some((
                s.lineage.clone(),
                s.sid.clone(),
                Some(hash.hex()),
                s.web_client.clone(),
                s.sub.clone(),
                s.refresh,
            ))
        } else {
            ctx.tx.as_ref().map(|t| {
                (
                    t.lineage.clone(),
                    t.sid.clone(),
                    None,
                    t.web_client.clone(),
                    t.sub.clone(),
                    t.refresh,
                )
            })
        };
        let Some((lineage, sid, session_cookie, session_client, sub, refresh)) = rec else {
            return;
        };
        // The code is for the client of this authorize request (SSO may serve
        // another client than the one the transfer logged in to).
        let web_client = ctx
            .authorize_client
            .clone()
            .unwrap_or_else(|| session_client.clone());
        // SSO for another client than the transfer's: that client's own settings
        // may only tighten what the redemption decided.
        let refresh = if web_client == session_client {
            refresh
        } else {
            let other = h.policy.load().web_client(&web_client).clone();
            crate::store::RefreshPolicy {
                allow: refresh.allow && other.allow_refresh_token,
                online: refresh.online || other.enforce_online_refresh_tokens,
            }
        };
        let rec = CodeRecord {
            lineage,
            sid,
            session_cookie,
            web_client,
            sub,
            refresh,
        };
        if let Err(e) = h
            .store
            .record_code(&SecretHash::of(code.as_bytes()), &rec, CODE_TTL)
            .await
        {
            // An unrecorded code's token response would escape mediation (a refresh
            // token could reach the web app): the code must not reach the app.
            // It gets an RFC 6749 error redirect instead, state kept.
            h.metrics
                .store_errors
                .with_label_values(&["record_code"])
                .inc();
            tracing::error!(error = %e, sid = %rec.sid, "could not record an authorization code of a transfer session; withholding it");
            if let Some(loc) = resp
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            {
                let _ = resp.insert_header(header::LOCATION, withhold_code(&loc));
            }
        }
    }
}

/// The redirect `loc` without its `code`, with `error=temporarily_unavailable`
/// instead (other parameters, `state` included, kept byte for byte).
pub fn withhold_code(loc: &str) -> String {
    let (base, query) = loc.split_once('?').unwrap_or((loc, ""));
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let (mut kept, _) = take_query_param(query, "code");
    if !kept.is_empty() {
        kept.push('&');
    }
    kept.push_str("error=temporarily_unavailable");
    match fragment {
        Some(f) => format!("{base}?{kept}#{f}"),
        None => format!("{base}?{kept}"),
    }
}

/// Whether a redirect carries an authorization response outside the query's
/// `code`: in the fragment (`code`, `access_token`, `id_token`, `response`) or as a
/// JARM `response` parameter.
pub fn hides_authorization_response(loc: &str) -> bool {
    let (before, fragment) = loc.split_once('#').unwrap_or((loc, ""));
    let query = before.split_once('?').map(|(_, q)| q).unwrap_or("");
    let in_fragment = form_urlencoded::parse(fragment.as_bytes()).any(|(k, _)| {
        matches!(
            k.to_ascii_lowercase().as_str(),
            "code" | "access_token" | "id_token" | "response" | "refresh_token"
        )
    });
    in_fragment || query_param(query, "response").is_some()
}

/// The redirect `loc` with its authorization response replaced by
/// `error=access_denied` (its `state` kept, the fragment dropped).
pub fn withhold_response(loc: &str) -> String {
    let (before, fragment) = loc.split_once('#').unwrap_or((loc, ""));
    let (base, query) = before.split_once('?').unwrap_or((before, ""));
    let state = query_param(query, "state").or_else(|| {
        form_urlencoded::parse(fragment.as_bytes())
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
    });
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("error", "access_denied");
    out.append_pair(
        "error_description",
        "this response mode is not available in a session transfer",
    );
    if let Some(s) = state {
        out.append_pair("state", &s);
    }
    format!("{base}?{}", out.finish())
}

/// A path as routers that are lenient see it: percent-decoded, ASCII lower-case,
/// repeated slashes collapsed, no trailing slash, `.` segments dropped.
pub fn canonical_path(path: &str) -> std::borrow::Cow<'_, str> {
    // Fast path: most paths are canonical already.
    let b = path.as_bytes();
    let clean = b.first() == Some(&b'/')
        && (b.len() == 1 || b[b.len() - 1] != b'/')
        && !b
            .iter()
            .any(|c| c.is_ascii_uppercase() || *c == b'%' || *c == b'+')
        && !path.contains("//")
        && !path.contains("/./")
        && !path.ends_with("/.");
    if clean {
        return std::borrow::Cow::Borrowed(path);
    }
    let decoded: Vec<u8> =
        form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default();
    let decoded = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    let segments: Vec<&str> = decoded
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    std::borrow::Cow::Owned(format!("/{}", segments.join("/")))
}

/// The host part of `public_host`, when it is a DNS name (cookies cannot carry an
/// IP address as their `Domain`).
fn cookie_domain(public_host: &str) -> Option<&str> {
    let host = public_host.rsplit_once(':').map_or(public_host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            public_host
        }
    });
    (host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[') && host.contains('.'))
        .then_some(host)
}

use crate::token::CODE_TTL;

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            route: Route::Proxy,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            started: Instant::now(),
            assertion: None,
            expire: Vec::new(),
            no_store: false,
            host: None,
            tls: false,
            tx: None,
            new_tx_cookie: None,
            expire_tx: false,
            sessions: Vec::new(),
            expire_sessions: Vec::new(),
            bound: None,
            authorize_client: None,
            bind_only: None,
            tx_done: false,
            forwarded_proto: None,
            unmediatable: false,
            cookie_rest: None,
            strip: Vec::new(),
            unbound: Vec::new(),
            body_tail: Vec::new(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Hygiene first: nothing below may be fooled by a header, path or value
        // that the IdP would read another way (SPEC §7.11).
        if let Some(status) = self.hygiene(session, ctx) {
            return self.refuse(session, status).await;
        }
        let path = session.req_header().uri.path().to_string();
        // Matched in a canonical form: IdP routers commonly ignore case, a trailing
        // slash and percent-encoding, so `/Token/` must not slip past mediation.
        let route = canonical_path(&path).into_owned();
        let method = session.req_header().method.clone();
        let h = &self.h;
        if route == self.routes.jwks
            && (method == http::Method::GET || method == http::Method::HEAD)
        {
            ctx.route = Route::Jwks;
            let headers = [
                ("content-type", "application/json".to_string()),
                ("cache-control", "public, max-age=300".to_string()),
            ];
            respond(session, 200, &headers, h.jwks_json.clone()).await?;
            return Ok(true);
        }
        let is_redemption = self.routes.redemption.iter().any(|p| *p == route);
        let form_endpoint = method == http::Method::POST
            && (route == self.routes.token
                || route == self.routes.revocation
                || route == self.routes.backchannel_logout);
        ctx.authorize_client = session
            .req_header()
            .uri
            .query()
            .and_then(|q| query_param(q, "client_id"));
        ctx.unmediatable = session
            .req_header()
            .uri
            .query()
            .is_some_and(hygiene::unmediatable_query);

        // Invariant 4: take every transfer token out of the URL...
        let cleaned = session
            .req_header()
            .uri
            .query()
            .map(|q| hygiene::clean_query(q, &h.config.names.query_param))
            .unwrap_or_default();
        if let Some(clean) = cleaned.query {
            return self
                .clean_url_redirect(
                    session,
                    ctx,
                    &path,
                    &clean,
                    cleaned.delivered,
                    is_redemption,
                )
                .await;
        }

        // ...and out of the Cookie header, on every request (the native app's cookie
        // is scoped to the whole IdP host, so the browser sends it everywhere).
        let Some(cookies_in) = self.read_cookies(session, ctx).await? else {
            return Ok(true);
        };
        if let Some(v) = &cookies_in.tx {
            self.continue_transaction(v, ctx).await;
        }
        // A body the IdP may read authorize parameters from (POST /auth) is looked
        // at whenever a transfer session is involved: unreadable counts as unsafe.
        let transfer_context = ctx.tx.is_some()
            || ctx.bind_only.is_some()
            || !ctx.sessions.is_empty()
            || (is_redemption && !cookies_in.stt.is_empty());
        if transfer_context
            && !form_endpoint
            && method != http::Method::GET
            && method != http::Method::HEAD
        {
            match self.body_is_mediatable(session).await? {
                None => return Ok(true),
                Some(false) => ctx.unmediatable = true,
                Some(true) => {}
            }
        }
        if ctx.unmediatable && !ctx.sessions.is_empty() {
            // The request asks for a response the token endpoint could not mediate
            // (form_post, fragment, JARM, hybrid, PAR, JAR): within a transfer
            // session that is an ordinary login instead.
            let names: Vec<String> = ctx.sessions.drain(..).map(|(n, _, _)| n).collect();
            ctx.strip.extend(names);
        }

        if is_redemption {
            ctx.route = Route::Redemption;
            self.redemption(session, ctx, &cookies_in.stt).await;
        }
        if ctx.tx.is_some() || ctx.bind_only.is_some() {
            // SPEC §7.12: a session the browser already had (which handoff did not
            // bind) is kept out of the login transaction, so the IdP cannot SSO it
            // and have handoff bind it to the token's subject.
            ctx.strip.append(&mut ctx.unbound);
        }
        if ctx.assertion.is_none() && !ctx.unmediatable {
            if let Some(tx) = &ctx.tx {
                ctx.assertion = Some(Secret::new(assertion::sign(
                    h,
                    &AssertionFacts {
                        sub: &tx.sub,
                        lineage: tx.lineage.as_str(),
                        native_client: &tx.native_client,
                        sid: &tx.sid,
                        web_client: &tx.web_client,
                    },
                )));
            }
        } else if ctx.unmediatable {
            ctx.assertion = None;
        }
        self.rewrite_cookie_header(session, ctx, cookies_in.changed)?;
        if is_redemption {
            return Ok(false);
        }
        if route == self.routes.token && method == http::Method::POST {
            return self.token_endpoint(session, ctx).await;
        }
        if route == self.routes.revocation && method == http::Method::POST {
            return self.form_endpoint(session, ctx, true).await;
        }
        if route == self.routes.backchannel_logout && method == http::Method::POST {
            return self.form_endpoint(session, ctx, false).await;
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Invariant 4 for bodies: a token split across chunks is seen whole before
        // any of it goes on, so the tail of each chunk is held back until the next.
        let chunk = body.take().unwrap_or_default();
        if ctx.body_tail.is_empty() && end_of_stream {
            if hygiene::contains_stt(&chunk) {
                return stt_in_body();
            }
            *body = Some(chunk);
            return Ok(());
        }
        let mut joined = std::mem::take(&mut ctx.body_tail);
        joined.extend_from_slice(&chunk);
        if hygiene::contains_stt(&joined) {
            return stt_in_body();
        }
        if end_of_stream {
            *body = Some(Bytes::from(joined));
        } else {
            let keep = joined.len().saturating_sub(hygiene::STT_WINDOW);
            ctx.body_tail = joined.split_off(keep);
            *body = Some(Bytes::from(joined));
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let u = &self.h.config.upstream;
        let mut peer = HttpPeer::new(u.address.as_str(), u.tls, u.sni.clone());
        peer.options.connection_timeout = Some(u.timeout);
        peer.options.total_connection_timeout = Some(u.timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let h = &self.h;
        while req
            .remove_header(h.config.assertion.header.as_str())
            .is_some()
        {}
        if let HostHeader::Fixed(host) = &h.config.upstream.host_header {
            req.insert_header(header::HOST, host.as_str())?;
        }
        if h.config.upstream.forwarded_headers {
            // handoff decided who the client is; the IdP hears only that.
            req.remove_header("forwarded");
            req.insert_header("x-forwarded-for", ctx.client_ip.to_string())?;
            let proto =
                ctx.forwarded_proto
                    .as_deref()
                    .unwrap_or(if ctx.tls { "https" } else { "http" });
            req.insert_header("x-forwarded-proto", proto)?;
            // The configured public host, never the client's: the IdP builds its
            // published URLs from it (discovery, redirects).
            req.insert_header("x-forwarded-host", h.config.public_host.as_str())?;
        }
        if let Some(a) = &ctx.assertion {
            req.insert_header(h.config.assertion.header.clone(), a.expose())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let h = &self.h;
        self.rewrite_cookies(resp, ctx).await?;
        self.track_code(resp, ctx).await;
        for name in &ctx.expire {
            resp.append_header(header::SET_COOKIE, cookies::expire_cookie(name))?;
            // The native app may have set its cookie for the IdP's domain: remove that too.
            if let Some(d) = cookie_domain(&h.config.public_host) {
                if !name.starts_with("__Host-") {
                    resp.append_header(
                        header::SET_COOKIE,
                        cookies::expire_cookie_in_domain(name, d),
                    )?;
                }
            }
        }
        for name in &ctx.expire_sessions {
            resp.append_header(
                header::SET_COOKIE,
                cookies::expire_session_cookie(name, &h.config.session),
            )?;
        }
        if let Some(sealed) = &ctx.new_tx_cookie {
            let ttl = h.config.session.transaction_ttl.as_secs() as i64;
            resp.append_header(
                header::SET_COOKIE,
                cookies::host_cookie(&h.config.session.transaction_cookie, sealed, ttl),
            )?;
        } else if ctx.expire_tx {
            resp.append_header(
                header::SET_COOKIE,
                cookies::expire_cookie(&h.config.session.transaction_cookie),
            )?;
        }
        if ctx.no_store {
            resp.insert_header(header::CACHE_CONTROL, "no-store")?;
            resp.insert_header("referrer-policy", "no-referrer")?;
        }
        Ok(())
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&pingora::Error>, ctx: &mut Ctx) {
        self.h
            .metrics
            .request_latency
            .with_label_values(&[ctx.route.label()])
            .observe(ctx.started.elapsed().as_secs_f64());
    }

    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        // pingora logs this on errors: the path only, never the query (it may hold a token).
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_routers_see_one_path() {
        for p in [
            "/oauth/token",
            "/OAuth/Token",
            "/oauth/token/",
            "//oauth//token",
            "/oauth/%74oken",
            "/oauth/./token",
        ] {
            assert_eq!(canonical_path(p), "/oauth/token", "{p}");
        }
        assert_eq!(canonical_path("/"), "/");
        assert_ne!(canonical_path("/oauth/tokens"), "/oauth/token");
    }

    #[test]
    fn withheld_codes_become_error_redirects() {
        assert_eq!(
            withhold_code("https://app/cb?code=abc&state=s%201"),
            "https://app/cb?state=s%201&error=temporarily_unavailable"
        );
        assert_eq!(
            withhold_code("https://app/cb?code=abc"),
            "https://app/cb?error=temporarily_unavailable"
        );
        assert_eq!(
            withhold_code("https://app/cb?state=x&code=abc#f"),
            "https://app/cb?state=x&error=temporarily_unavailable#f"
        );
    }

    #[test]
    fn query_param_is_removed_and_the_rest_kept() {
        let (q, v) = take_query_param(
            "client_id=web&session_transfer_token=abc.1.x&state=a%20b",
            "session_transfer_token",
        );
        assert_eq!(q, "client_id=web&state=a%20b");
        assert_eq!(v.as_deref(), Some("abc.1.x"));
        let (q, v) = take_query_param(
            "session_transfer_token=a&session_transfer_token=b",
            "session_transfer_token",
        );
        assert_eq!((q.as_str(), v.as_deref()), ("", Some("a")));
        let (q, v) = take_query_param("a=1&&b", "x");
        assert_eq!((q.as_str(), v), ("a=1&&b", None));
        // percent-encoded parameter name is still recognised
        let (q, v) = take_query_param("session%5Ftransfer%5Ftoken=z", "session_transfer_token");
        assert_eq!((q.as_str(), v.as_deref()), ("", Some("z")));
    }
}
