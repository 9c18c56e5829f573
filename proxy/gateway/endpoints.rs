//! The IdP endpoints whose bodies handoff reads (SPEC §2.1, §2.5, §2.6): the token
//! endpoint (a mint, or mediation), the revocation endpoint, back-channel logout.

use super::body::{self, Form};
use super::ctx::{Ctx, Route};
use super::reply::{self, Read};
use super::request::fingerprint;
use crate::app::Handoff;
use crate::mint;
use crate::token;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Answers (or passes on) a request to one of the form endpoints; `Ok(true)` when
/// handoff answered.
pub(super) async fn serve(h: &Handoff, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let Read::Ok(form) = body::form(session, h.config.max_body_bytes).await? else {
        return Ok(true);
    };
    match ctx.route {
        Route::Token => token_endpoint(h, session, ctx, &form).await,
        Route::Revocation => {
            let f = form.forward(ctx.client_ip);
            let action = token::revocation_endpoint(h, &form.params, &f).await;
            reply::action(session, action).await
        }
        _ => {
            let (status, v) = crate::backchannel::logout(h, &form.params).await;
            reply::json(session, status, &v).await?;
            Ok(true)
        }
    }
}

/// The token endpoint: mint when the audience says so, otherwise mediate.
async fn token_endpoint(
    h: &Handoff,
    session: &mut Session,
    ctx: &mut Ctx,
    form: &Form,
) -> Result<bool> {
    let params = &form.params;
    if mint::classify_audience(&h.config.public_host, params) == mint::Audience::Other {
        let f = form.forward(ctx.client_ip);
        return reply::action(session, token::mediate(h, params, &f).await).await;
    }
    ctx.route = Route::Mint;
    let fp = fingerprint(session.req_header(), h.policy.load().fingerprint_headers());
    let answer = mint::mint(h, params, ctx.client_ip, fp).await;
    reply::respond(
        session,
        answer.status,
        &answer.headers(),
        Bytes::from(answer.body.to_string()),
    )
    .await?;
    Ok(true)
}
