//! The public proxy: handoff's flows placed in pingora's request phases. Each phase
//! below reads as the list of flows a request meets, in SPEC order; the flows
//! themselves take plain data and return decisions (only this folder touches
//! pingora's `Session`).
//!
//! | phase | what happens | where |
//! |---|---|---|
//! | `request_filter` | request hygiene, sorted once: assertion and shadow headers out, ambiguous paths `400`, foreign hosts `421`, client IP, route | `request` |
//! | | handoff's JWKS | here |
//! | | a token in the URL: `303` to the clean URL | `delivery` |
//! | | the Cookie header read once: transfer tokens and the transaction cookie out, session cookies judged | `cookie_header`, [`crate::session`] |
//! | | the login transaction continued | [`crate::transaction`] |
//! | | unmediatable shapes (query, or a body inside a transfer context) | `body`, [`crate::hygiene`] |
//! | | redemption | `delivery`, [`crate::redeem`] |
//! | | the assertion, the Cookie header written once | here, `cookie_header` |
//! | | token, revocation, logout endpoints | `endpoints` |
//! | `request_body_filter` | no token in a body reaches the IdP | `body` |
//! | `upstream_peer` | the IdP | here |
//! | `upstream_request_filter` | `Host`/`X-Forwarded-*` as handoff decided; the assertion | here |
//! | `response_filter` | `Set-Cookie` hardened and bound, the transaction followed or ended, codes recorded, handoff's cookies | `response` |
//! | `logging` | per-route latency | here |
//!
//! `request_filter` returning `Ok(true)` means handoff answered the request itself.

mod body;
mod cookie_header;
mod ctx;
mod delivery;
mod endpoints;
mod reply;
mod request;
mod response;

pub use ctx::{Ctx, Route};
pub use request::{canonical_path, fingerprint, host_matches};

use crate::app::Handoff;
use crate::assertion::AssertionFacts;
use crate::config::HostHeader;
use crate::hygiene;
use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use reply::Read;
use std::sync::Arc;

/// The pingora application.
pub struct Gateway {
    h: Arc<Handoff>,
    stt_cookie_names: Vec<String>,
    routes: request::Routes,
}

impl Gateway {
    /// The gateway for one handoff instance.
    pub fn new(h: Arc<Handoff>) -> Self {
        let n = &h.config.names;
        let mut stt_cookie_names = vec![n.redirect_cookie.clone(), n.cookie.clone()];
        stt_cookie_names.extend(n.cookie_aliases.iter().cloned());
        let routes = request::Routes::new(&h);
        Gateway {
            h,
            stt_cookie_names,
            routes,
        }
    }

    /// A non-GET request inside a transfer context may hide authorize parameters
    /// in its body: read it. `Ok(false)`: answered already.
    async fn check_body(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        redeeming: bool,
    ) -> Result<bool> {
        let method = &session.req_header().method;
        let reads = method != http::Method::GET && method != http::Method::HEAD;
        if !reads || ctx.route.reads_form() || !(ctx.in_transfer() || redeeming) {
            return Ok(true);
        }
        match body::mediatable(session, self.h.config.max_body_bytes).await? {
            Read::Answered => Ok(false),
            Read::Ok(ok) => {
                ctx.unmediatable |= !ok;
                Ok(true)
            }
        }
    }

    /// What of the browser's IdP sessions may reach the IdP on this request.
    fn keep_sessions_safe(&self, ctx: &mut Ctx) {
        if ctx.unmediatable && !ctx.sessions.is_empty() {
            // The request asks for a response the token endpoint could not mediate
            // (form_post, fragment, JARM, hybrid, PAR, JAR): within a transfer
            // session that is an ordinary login instead.
            let names: Vec<String> = ctx.sessions.drain(..).map(|l| l.cookie).collect();
            ctx.strip.extend(names);
        }
        if ctx.tx.is_active() {
            // SPEC §7.12: a session the browser already had (which handoff did not
            // bind) is kept out of the login transaction, so the IdP cannot SSO it
            // and have handoff bind it to the token's subject.
            ctx.strip.append(&mut ctx.unbound);
        }
    }

    /// The assertion on every hop of a login transaction (SPEC §2.3) — never on a
    /// request whose response handoff could not mediate.
    fn attach_assertion(&self, ctx: &mut Ctx) {
        if ctx.unmediatable {
            ctx.assertion = None;
            return;
        }
        if ctx.assertion.is_some() {
            return;
        }
        if let Some(tx) = ctx.tx.asserting() {
            ctx.assertion = Some(self.h.asserter.sign(&AssertionFacts {
                sub: &tx.sub,
                lineage: tx.lineage.as_str(),
                native_client: &tx.native_client,
                sid: &tx.sid,
                web_client: &tx.web_client,
            }));
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let h = &self.h;
        if let Some(status) = request::sort(h, &self.routes, session, ctx) {
            return reply::refuse(session, status).await;
        }
        if ctx.route == Route::Jwks {
            let headers = [
                ("content-type", "application/json".to_string()),
                ("cache-control", "public, max-age=300".to_string()),
            ];
            reply::respond(session, 200, &headers, h.asserter.jwks_json()).await?;
            return Ok(true);
        }
        // Invariant 4: take every transfer token out of the URL...
        let query = session.req_header().uri.query().unwrap_or("");
        let cleaned = hygiene::clean_query(query, &h.config.names.query_param);
        if let Some(clean) = cleaned.query {
            return delivery::clean_url(h, session, ctx, &clean, cleaned.delivered).await;
        }
        // ...and out of the Cookie header, on every request (the native app's cookie
        // is scoped to the whole IdP host, so the browser sends it everywhere).
        let Some(cookies) = cookie_header::read(h, &self.stt_cookie_names, session, ctx).await?
        else {
            return Ok(true);
        };
        if let Some(v) = &cookies.tx {
            ctx.tx = crate::transaction::continue_from_cookie(h, v, ctx.client_ip, &ctx.hop).await;
        }
        let redeeming = ctx.route == Route::Redemption && !cookies.stt.is_empty();
        if !self.check_body(session, ctx, redeeming).await? {
            return Ok(true);
        }
        if redeeming {
            delivery::redeem(h, session, ctx, &cookies.stt).await;
        }
        self.keep_sessions_safe(ctx);
        self.attach_assertion(ctx);
        cookie_header::write(session, ctx, cookies.changed)?;
        if ctx.route.reads_form() {
            return endpoints::serve(h, session, ctx).await;
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
        body::scan_chunk(body, end_of_stream, &mut ctx.body_tail)
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
            let scheme = if ctx.tls { "https" } else { "http" };
            let proto = ctx.forwarded_proto.as_deref().unwrap_or(scheme);
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
        response::rewrite_cookies(h, resp, ctx).await?;
        response::follow_transaction(h, resp, ctx);
        response::track_code(h, resp, ctx).await;
        response::own_cookies(h, resp, ctx)
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
