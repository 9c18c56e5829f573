//! The request's `Cookie` header, read once and written once: handoff's own
//! cookies (transfer tokens, the transaction) come out, so does any cookie whose
//! value is shaped like a transfer token, and the IdP's session cookies are judged
//! ([`crate::session::scan_cookies`]); what may pass is written back one time.

use super::ctx::Ctx;
use super::reply;
use crate::app::Handoff;
use crate::cookies;
use crate::hygiene;
use http::header;
use pingora::prelude::*;
use pingora::proxy::Session;

/// The cookies of a request, once handoff has taken out what is its own.
pub(super) struct CookiesIn {
    /// Transfer-token cookies `(name, value)`, in order.
    pub stt: Vec<(String, String)>,
    /// The sealed transaction cookie, if any.
    pub tx: Option<String>,
    /// The Cookie header changed (something was taken out).
    pub changed: bool,
}

/// Reads the `Cookie` header(s). `Ok(None)`: answered (`431`, over
/// `session.max_cookie_bytes`).
pub(super) async fn read(
    h: &Handoff,
    stt_names: &[String],
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<Option<CookiesIn>> {
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
        changed: headers.len() > 1,
    };
    if headers.is_empty() {
        return Ok(Some(out));
    }
    if headers.iter().map(Vec::len).sum::<usize>() > h.config.session.max_cookie_bytes {
        reply::refuse(session, 431).await?;
        return Ok(None);
    }
    let refs: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
    let mut names: Vec<&str> = stt_names.iter().map(String::as_str).collect();
    names.push(&h.config.session.transaction_cookie);
    let (rest, taken) = cookies::take_cookies(&refs, &names);
    out.changed |= !taken.is_empty();
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
    let rest = rest.map(|r| without_token_shaped(&r, &mut out.changed));
    if let Some(r) = &rest {
        let scan = crate::session::scan_cookies(h, r).await;
        ctx.sessions = scan.live;
        ctx.unbound = scan.unbound;
        ctx.strip.extend(scan.strip);
        ctx.expire_sessions.extend(scan.expire);
    }
    ctx.cookie_rest = rest.filter(|r| !r.trim_ascii().is_empty());
    Ok(Some(out))
}

/// The pairs of a Cookie header without those whose value is token-shaped.
fn without_token_shaped(r: &[u8], changed: &mut bool) -> Vec<u8> {
    let all: Vec<&[u8]> = r.split(|b| *b == b';').collect();
    let kept: Vec<&[u8]> = all
        .iter()
        .copied()
        .filter(|seg| !hygiene::contains_stt(seg))
        .collect();
    *changed |= kept.len() != all.len();
    kept.join(&b";"[..])
}

/// Writes the `Cookie` header the IdP receives: what [`read`] kept, minus every
/// session cookie this request must not pass (`ctx.strip`), however its name is
/// spelled.
pub(super) fn write(session: &mut Session, ctx: &Ctx, changed: bool) -> Result<()> {
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
