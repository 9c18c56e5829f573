//! Delivery and redemption at the gateway (SPEC §2.2): the clean-URL 303 for a
//! token in a URL, and a redemption entry point's token in a cookie.

use super::ctx::{Ctx, Route};
use super::reply;
use super::request::fingerprint;
use crate::app::Handoff;
use crate::hygiene;
use crate::labels::Fallback;
use crate::redeem::{self, Outcome, Presented};
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::Session;

/// A URL that carried a transfer token (under its own name or any other): a 303 to
/// the same URL without it, so the address bar and history lose it. On a
/// redemption entry point the delivered token rides along in a `__Host-` cookie;
/// anywhere else it is dropped. The `Location` is always a local path.
pub(super) async fn clean_url(
    h: &Handoff,
    session: &mut Session,
    ctx: &mut Ctx,
    clean: &str,
    delivered: Option<String>,
) -> Result<bool> {
    let method = &session.req_header().method;
    if method != http::Method::GET && method != http::Method::HEAD {
        // A redirect would turn it into a GET; the body cannot go on without it.
        return reply::refuse(session, 400).await;
    }
    ctx.no_store = true;
    let mut headers = vec![
        ("location", hygiene::local_location(&ctx.path, Some(clean))),
        ("cache-control", "no-store".to_string()),
        ("referrer-policy", "no-referrer".to_string()),
    ];
    match (delivered, ctx.route == Route::Redemption) {
        (Some(t), true) => {
            if let Some(c) = redeem::redirect_cookie(h, &t) {
                headers.push(("set-cookie", c));
            }
        }
        (Some(_), false) => {
            tracing::info!("a session transfer token outside a redemption entry point was dropped")
        }
        (None, _) => {}
    }
    reply::respond(session, 303, &headers, Bytes::new()).await?;
    Ok(true)
}

/// A redemption entry point with a transfer token in a cookie: redeems it and moves
/// the login transaction along (started on success; an ordinary login otherwise).
pub(super) async fn redeem(
    h: &Handoff,
    session: &Session,
    ctx: &mut Ctx,
    stt: &[(String, String)],
) {
    let Some((token, method)) = redeem::choose_token(stt, &h.config.names.redirect_cookie) else {
        return;
    };
    ctx.no_store = true;
    ctx.tx.redemption_attempt();
    if ctx.unmediatable {
        // SPEC §7.11: the code would come back where the token endpoint cannot see
        // it. The token is not spent; this is an ordinary login.
        h.metrics.redemption_fallback(Fallback::Unmediatable);
        tracing::info!(
            reason = Fallback::Unmediatable.label(),
            "redemption fell back to an ordinary login"
        );
        ctx.tx.end();
        return;
    }
    let fp = fingerprint(session.req_header(), h.policy.load().fingerprint_headers());
    let bound_subjects: Vec<&str> = ctx
        .sessions
        .iter()
        .map(|l| l.session.sub.as_str())
        .collect();
    let presented = Presented {
        token,
        method,
        web_client: ctx.authorize_client.as_deref(),
        client_ip: ctx.client_ip,
        fingerprint: fp,
        bound_subjects: &bound_subjects,
    };
    match redeem::redeem(h, &presented).await {
        Outcome::Success(r) => {
            ctx.tx = crate::transaction::start(h, &r, ctx.client_ip);
            ctx.assertion = Some(r.assertion.clone());
        }
        Outcome::Fallback(Fallback::DifferentSubject) => {
            // SPEC §2.2: the browser's session of another user is revoked and this
            // becomes an ordinary login.
            for l in std::mem::take(&mut ctx.sessions) {
                if let Err(e) =
                    crate::revocation::revoke_cookie(h, &l.hash, "different_subject").await
                {
                    tracing::error!(error = %e, sid = %l.session.sid, "could not revoke the other subject's session");
                }
                h.metrics
                    .sessions
                    .with_label_values(&["different_subject"])
                    .inc();
                ctx.strip.push(l.cookie.clone());
                ctx.expire_sessions.push(l.cookie);
            }
        }
        Outcome::Fallback(_) => ctx.tx.end(),
    }
}
