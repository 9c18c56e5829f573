//! The IdP's answer on its way to the browser (SPEC §2.4, §2.5): `Set-Cookie`s
//! hardened and the session cookie bound, the login transaction followed along the
//! IdP's redirect chain or ended, codes of transfer sessions recorded, and
//! handoff's own cookies set or expired.

use super::ctx::Ctx;
use super::request::{canonical_path, cookie_domain, host_matches};
use crate::app::Handoff;
use crate::cookies;
use crate::session::Bind;
use crate::token::{self, CodeOrigin};
use crate::transaction::TxCookie;
use http::header;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

/// Rewrites the IdP's `Set-Cookie`s and binds a session cookie set inside a login
/// transaction (or rotated inside a bound session).
pub(super) async fn rewrite_cookies(
    h: &Handoff,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
) -> Result<()> {
    let cfg = &h.config.session;
    let originals: Vec<String> = resp
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if originals.is_empty() {
        return Ok(());
    }
    let now = h.clock.now_secs();
    let cap = ctx
        .tx
        .binding()
        .map(|t| t.absolute_exp)
        .or_else(|| ctx.sessions.first().map(|l| l.session.absolute_exp))
        .map(|a| (a, now));
    let mut out = Vec::with_capacity(originals.len());
    let mut done = false;
    for raw in &originals {
        let Some(rw) = cookies::rewrite_set_cookie(raw, cfg, cap) else {
            tracing::warn!("dropped an unparseable Set-Cookie for an IdP session cookie");
            continue;
        };
        let mut line = rw.header;
        if let Some((name, value)) = rw.session_cookie {
            match crate::session::bind(h, &name, &value, ctx.tx.binding(), &ctx.sessions).await {
                Bind::NotOurs => {}
                Bind::Bound {
                    hash,
                    session,
                    ends_transaction,
                } => {
                    done |= ends_transaction;
                    ctx.bound = Some((hash, *session));
                }
                // Fail closed: a transfer session handoff cannot hold to its limits
                // must not exist in the browser.
                Bind::Withhold => line = cookies::expire_session_cookie(&name, cfg),
            }
        }
        out.push(line);
    }
    resp.remove_header(&header::SET_COOKIE);
    for v in out {
        resp.append_header(header::SET_COOKIE, v)?;
    }
    if done {
        // Ended after every Set-Cookie of the response is handled (an IdP may set
        // several session cookies at once).
        ctx.tx.done();
    }
    Ok(())
}

/// Where a redirect to handoff's own public host points, as a hop key (see
/// [`hop_key`]), if it is one.
fn local_redirect(h: &Handoff, resp: &ResponseHeader) -> Option<String> {
    if !(300..400).contains(&resp.status.as_u16()) {
        return None;
    }
    let loc = resp.headers.get(header::LOCATION)?.to_str().ok()?;
    let target = if loc.starts_with('/') && !loc.starts_with("//") {
        loc
    } else {
        let rest = loc
            .strip_prefix("https://")
            .or_else(|| loc.strip_prefix("http://"))?;
        let (host, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !host_matches(host, &h.config.public_host) {
            return None;
        }
        target
    };
    let target = target.split('#').next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(hop_key(
        &canonical_path(if path.is_empty() { "/" } else { path }),
        query,
    ))
}

/// What identifies one hop of the IdP's redirect chain: the canonical path and the
/// query exactly as the browser will send it back (so a `Location: /auth?x` names
/// that request, not every authorize request).
pub(super) fn hop_key(canonical_path: &str, query: &str) -> String {
    if query.is_empty() {
        canonical_path.to_string()
    } else {
        format!("{canonical_path}?{query}")
    }
}

/// The login transaction follows the IdP's redirect chain: the next hop that may
/// carry the assertion is the one this answer points to — and only a hop that did
/// carry the assertion moves the chain on (an unmediatable request on the chain
/// does not hand its own interaction the assertion). When the first answer points
/// nowhere on the public host, only the very same request (path and query) may
/// assert again — a reload, never another authorize request.
pub(super) fn follow_transaction(h: &Handoff, resp: &ResponseHeader, ctx: &mut Ctx) {
    if ctx.assertion.is_none() {
        return;
    }
    match local_redirect(h, resp) {
        Some(next) => ctx.tx.follow(&next),
        None => {
            if let crate::transaction::TxState::Started { .. } = ctx.tx {
                let here = ctx.hop.clone();
                ctx.tx.follow(&here);
            }
        }
    }
}

/// Records the code of a redirect issued inside a transfer session, or replaces a
/// redirect that must not reach the client as it is.
pub(super) async fn track_code(h: &Handoff, resp: &mut ResponseHeader, ctx: &Ctx) {
    let Some(location) = resp
        .headers
        .get(header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    else {
        return;
    };
    let origin = CodeOrigin {
        bound: ctx.bound.as_ref().map(|(h, s)| (h, s)),
        live: ctx.sessions.first(),
        tx: ctx.tx.asserting(),
        in_transaction: ctx.tx.is_active(),
        authorize_client: ctx.authorize_client.as_deref(),
    };
    if let Some(instead) = token::track_code(h, resp.status.as_u16(), &location, origin).await {
        let _ = resp.insert_header(header::LOCATION, instead);
    }
}

/// handoff's own cookies: transfer-token cookies and dead sessions expired, the
/// transaction cookie set or expired, redemption answers kept out of caches.
pub(super) fn own_cookies(h: &Handoff, resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
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
    let tx_cookie = &h.config.session.transaction_cookie;
    match ctx.tx.cookie() {
        TxCookie::Set(tx) => {
            let ttl = tx.exp.saturating_sub(h.clock.now_secs()) as i64;
            resp.append_header(
                header::SET_COOKIE,
                cookies::host_cookie(tx_cookie, &h.tx_key.seal(tx), ttl),
            )?;
        }
        TxCookie::Expire => {
            resp.append_header(header::SET_COOKIE, cookies::expire_cookie(tx_cookie))?;
        }
        TxCookie::Keep => {}
    }
    if ctx.no_store {
        resp.insert_header(header::CACHE_CONTROL, "no-store")?;
        resp.insert_header("referrer-policy", "no-referrer")?;
    }
    Ok(())
}
