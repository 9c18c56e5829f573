//! Token endpoint mediation (SPEC §2.5): what the web app's token requests may get.
//!
//! handoff fronts the IdP's token endpoint. Most requests pass through pingora
//! untouched (their body replayed from the buffer the mint check read). Those that
//! belong to handoff's world are sent by handoff itself, so it can read and change
//! the answer:
//! - an `authorization_code` grant for a code the IdP issued inside a transfer
//!   session (the gateway recorded it from the redirect's `Location`): with
//!   `allow_refresh_token = false` the `refresh_token` is removed from the answer
//!   (and, when the web client's credentials are configured, kept sealed and
//!   revoked at the IdP once the web session ends — [`crate::withheld`]; it is
//!   denied here either way); otherwise it is recorded — bound to the web session
//!   when `enforce_online_refresh_tokens`;
//! - a `refresh_token` grant with a web token handoff knows: refused with
//!   `invalid_grant` once it is denied, its lineage revoked, or its session dead;
//!   otherwise forwarded, and a rotated token inherits the binding;
//! - a `refresh_token` grant with a native token of a known lineage: forwarded, and
//!   the rotated token joins the lineage (so cascade revocation can find it);
//! - the revocation endpoint: forwarded; when the IdP accepts the revocation of a
//!   native token, its lineage is revoked (cascade), if the native client enforces it.
//!
//! When the store cannot say whether a request belongs to a transfer session, the
//! answer is `503 temporarily_unavailable`: passing it through could hand a web app
//! a refresh token policy forbids (invariants 8 and 9).

use crate::app::{Handoff, LINEAGE_TTL};
use crate::mint::{OAuthError, TokenParams};
use crate::revocation;
use crate::secret::{Secret, SecretHash};
use crate::store::{CodeRecord, RefreshKind, RefreshTokenInfo, SessionLink};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use serde_json::Value;
use std::net::IpAddr;

/// What the gateway does with a token-endpoint request.
#[derive(Debug)]
pub enum Action {
    /// Let pingora proxy it as it is.
    Pass,
    /// Answer with this status and body (JSON or the IdP's own).
    Answer {
        /// HTTP status.
        status: u16,
        /// Body.
        body: Bytes,
        /// Content type.
        content_type: String,
    },
}

fn json_answer(status: u16, v: &Value) -> Action {
    Action::Answer {
        status,
        body: Bytes::from(v.to_string()),
        content_type: "application/json".into(),
    }
}

fn oauth(status: u16, error: &'static str, description: &str) -> Action {
    json_answer(
        status,
        &OAuthError {
            status,
            error,
            description: description.into(),
        }
        .body(),
    )
}

fn unavailable() -> Action {
    oauth(
        503,
        "temporarily_unavailable",
        "the session store is unavailable; try again",
    )
}

/// The request as handoff forwards it itself.
#[derive(Debug)]
pub struct Forward<'a> {
    /// The original body (sent as is).
    pub body: &'a Bytes,
    /// Its content type.
    pub content_type: Option<&'a str>,
    /// The client's `Authorization` header (client authentication), if any.
    pub authorization: Option<&'a str>,
    /// The client IP.
    pub client_ip: IpAddr,
}

async fn forward(
    h: &Handoff,
    path: &str,
    f: &Forward<'_>,
) -> Result<crate::idp::IdpResponse, Action> {
    let mut headers = vec![
        (
            "content-type",
            f.content_type
                .unwrap_or("application/x-www-form-urlencoded")
                .to_string(),
        ),
        ("accept", "application/json".to_string()),
        ("x-forwarded-for", f.client_ip.to_string()),
    ];
    if let Some(a) = f.authorization {
        headers.push(("authorization", a.to_string()));
    }
    h.idp
        .send(http::Method::POST, path, &headers, f.body.clone())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, path, "token mediation: identity provider unavailable");
            oauth(
                503,
                "temporarily_unavailable",
                "the identity provider is unavailable; try again",
            )
        })
}

fn passthrough_answer(r: crate::idp::IdpResponse) -> Action {
    Action::Answer {
        status: r.status,
        body: r.body,
        content_type: "application/json".into(),
    }
}

/// Mediates a token-endpoint request that is not a mint.
pub async fn mediate(h: &Handoff, params: &TokenParams, f: &Forward<'_>) -> Action {
    match params.get("grant_type") {
        Some("authorization_code") => match params.get("code") {
            Some(code) => code_grant(h, params, code, f).await,
            None => Action::Pass,
        },
        Some("refresh_token") => match params.get("refresh_token") {
            Some(rt) => refresh_grant(h, &Secret::new(rt), f).await,
            None => Action::Pass,
        },
        _ => Action::Pass,
    }
}

async fn code_grant(h: &Handoff, params: &TokenParams, code: &str, f: &Forward<'_>) -> Action {
    let code_hash = SecretHash::of(code.as_bytes());
    let rec = match h.store.take_code(&code_hash).await {
        Ok(Some(r)) => r,
        Ok(None) => return unrecorded_code_grant(h, params, f).await,
        Err(e) => {
            h.metrics
                .store_errors
                .with_label_values(&["take_code"])
                .inc();
            tracing::warn!(error = %e, "token mediation: store unavailable");
            return unavailable();
        }
    };
    // A code of a session that has ended since (cascade, revocation, limits) buys
    // nothing: checked before the IdP is asked.
    match code_session_alive(h, &rec).await {
        Ok(true) => {}
        Ok(false) => {
            h.metrics
                .web_refresh_tokens
                .with_label_values(&["code_of_ended_session"])
                .inc();
            tracing::info!(lineage = %rec.lineage, sid = %rec.sid, "code exchange refused: its transfer session has ended");
            return oauth(
                400,
                "invalid_grant",
                "the authorization code is no longer valid",
            );
        }
        Err(()) => {
            put_back_code(h, &code_hash, &rec).await;
            return unavailable();
        }
    }
    let resp = match forward(h, &h.config.paths.token, f).await {
        Ok(r) => r,
        Err(a) => {
            put_back_code(h, &code_hash, &rec).await;
            return a;
        }
    };
    if resp.status != 200 {
        // The IdP did not spend the code (a wrong verifier, redirect_uri or client
        // secret; an outage): it stays mediated for the retry.
        put_back_code(h, &code_hash, &rec).await;
        return passthrough_answer(resp);
    }
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&resp.body) else {
        // A 200 handoff cannot read might carry a refresh token: not passed on.
        tracing::error!(
            "token mediation: the identity provider's token response is not a JSON object"
        );
        return oauth(
            502,
            "server_error",
            "the identity provider answered unexpectedly",
        );
    };
    // SPEC §7.12: the login must be the transaction's subject's. An answer for
    // someone else means the IdP logged in a session the transfer did not create:
    // that session is revoked and nothing is handed out.
    match id_token_claims(&body)
        .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned))
    {
        Some(sub) if sub != rec.sub => {
            tracing::error!(lineage = %rec.lineage, sid = %rec.sid, "code exchange answered for another subject than the session transfer's; session revoked");
            h.metrics
                .web_refresh_tokens
                .with_label_values(&["subject_mismatch"])
                .inc();
            if let Err(e) =
                revocation::revoke_session(h, &rec.lineage, &rec.sid, "subject_mismatch").await
            {
                tracing::error!(error = %e, sid = %rec.sid, "could not revoke a session bound to the wrong subject");
            }
            // Nobody gets this answer: its refresh token goes with the session
            // (kept until the IdP confirms, like every withheld one).
            if let Some(rt) = body
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(Secret::new)
            {
                withhold(h, &rec, &rt).await;
            }
            return oauth(
                400,
                "invalid_grant",
                "the login does not match the session transfer",
            );
        }
        Some(_) => {}
        None => {
            if body.contains_key("refresh_token") {
                // Without an id_token the answer cannot be tied to the transfer's
                // subject: no refresh token (the dangerous reading).
                tracing::warn!(sid = %rec.sid, "code exchange without an id_token: refresh token withheld");
                if let Some(rt) = body
                    .remove("refresh_token")
                    .and_then(|v| v.as_str().map(Secret::new))
                {
                    withhold(h, &rec, &rt).await;
                }
            }
        }
    }
    let refresh = rec.refresh;
    if let Some(rt) = body
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(Secret::new)
    {
        let mut info = RefreshTokenInfo {
            lineage: rec.lineage.clone(),
            kind: RefreshKind::Web,
            session_cookie: None,
            web_client: Some(rec.web_client.clone()),
            denied: false,
            native_client: None,
        };
        // Online refresh tokens need the session's cookie; without it the token
        // could not be held to the session, so it is withheld like a forbidden one.
        let unbindable = refresh.online && rec.session_cookie.is_none();
        if !refresh.allow || unbindable {
            // Invariant 8: the web app never sees it.
            body.remove("refresh_token");
            info.denied = true;
            h.metrics
                .web_refresh_tokens
                .with_label_values(&["withheld"])
                .inc();
            withhold(h, &rec, &rt).await;
        } else if refresh.online {
            info.session_cookie = rec.session_cookie.clone();
            h.metrics
                .web_refresh_tokens
                .with_label_values(&["bound"])
                .inc();
        } else {
            h.metrics
                .web_refresh_tokens
                .with_label_values(&["allowed"])
                .inc();
        }
        if let Err(e) = h
            .store
            .record_refresh_token(&rt.hash(), &info, LINEAGE_TTL)
            .await
        {
            h.metrics
                .store_errors
                .with_label_values(&["record_refresh_token"])
                .inc();
            tracing::error!(error = %e, "token mediation: could not record the web refresh token");
            if !info.denied {
                // Unrecorded, it could not be held to its session: do not hand it out.
                body.remove("refresh_token");
            }
        }
        tracing::info!(lineage = %rec.lineage, sid = %rec.sid, web_client = %rec.web_client, withheld = info.denied, "web refresh token mediated");
    }
    link_idp_sid(h, &rec, &body).await;
    json_answer(200, &Value::Object(body))
}

/// Whether a recorded code's transfer session may still exchange it: lineage not
/// revoked, session (when known) alive. `Err` when the store cannot say.
async fn code_session_alive(h: &Handoff, rec: &CodeRecord) -> Result<bool, ()> {
    match h.store.is_lineage_revoked(&rec.lineage).await {
        Ok(true) => return Ok(false),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "token mediation: store unavailable");
            return Err(());
        }
    }
    let Some(cookie) = rec.session_cookie.as_deref().and_then(SecretHash::from_hex) else {
        return Ok(true);
    };
    match crate::session::current(h, &cookie).await {
        Ok(Some((_, s))) => {
            let now = h.clock.now_secs();
            Ok(!s.revoked && now < s.absolute_exp && now < s.idle_exp())
        }
        Ok(None) => Ok(false),
        Err(e) => {
            tracing::warn!(error = %e, "token mediation: store unavailable");
            Err(())
        }
    }
}

/// The claims of the `id_token` in a token response, read without verifying it:
/// it comes straight from the IdP over handoff's own connection.
fn id_token_claims(body: &serde_json::Map<String, Value>) -> Option<Value> {
    let payload = body
        .get("id_token")?
        .as_str()?
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())?;
    serde_json::from_slice::<Value>(&payload)
        .ok()
        .filter(Value::is_object)
}

/// The `client_id` of a token request: the body's, or the HTTP Basic user.
fn request_client_id(params: &TokenParams, f: &Forward<'_>) -> Option<String> {
    if let Some(c) = params.get("client_id") {
        return Some(c.to_string());
    }
    let basic = f.authorization?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()?;
    let user = String::from_utf8(decoded).ok()?;
    let user = user.split(':').next()?;
    form_urlencoded::parse(format!("u={user}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// How a code exchange that matches no recorded code is judged, from the IdP's
/// own answer (SPEC §7.11, defence in depth: a code that came back where handoff
/// could not see it — an HTML form, a fragment — still meets the token endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrecorded {
    /// The id_token says a session transfer logged the user in (`amr`), or names an
    /// IdP session handoff linked to a transfer session (`sid`).
    Transfer,
    /// The id_token says another method logged the user in, and its `sid` is no
    /// transfer session's.
    Ordinary,
    /// Nothing in the answer tells.
    Unknown,
}

/// Classifies an unrecorded code exchange's answer (see [`Unrecorded`]).
pub async fn classify_unrecorded(h: &Handoff, body: &serde_json::Map<String, Value>) -> Unrecorded {
    let Some(claims) = id_token_claims(body) else {
        return Unrecorded::Unknown;
    };
    let amr: Option<Vec<&str>> = claims
        .get("amr")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    if amr
        .as_ref()
        .is_some_and(|a| a.contains(&"session_transfer"))
    {
        return Unrecorded::Transfer;
    }
    if let Some(sid) = claims.get("sid").and_then(Value::as_str) {
        match h.store.idp_session(sid).await {
            Ok(Some(_)) => return Unrecorded::Transfer,
            Ok(None) => {}
            Err(_) => return Unrecorded::Unknown,
        }
    }
    match amr {
        Some(a) if !a.is_empty() => Unrecorded::Ordinary,
        _ => Unrecorded::Unknown,
    }
}

/// A code exchange handoff has no record of. For a client a session transfer may
/// log in to, handoff makes the exchange itself and withholds the refresh token
/// unless the answer shows an ordinary login (or the client's policy allows
/// refresh tokens): no code issued inside a transfer session escapes mediation,
/// whatever shape its authorize request had. Every other client passes untouched.
async fn unrecorded_code_grant(h: &Handoff, params: &TokenParams, f: &Forward<'_>) -> Action {
    let Some(client) = request_client_id(params, f) else {
        return Action::Pass;
    };
    let (watched, allow) = {
        let p = h.policy.load();
        (
            p.native_client(&client).is_none() && p.is_transfer_web_client(&client),
            p.web_client(&client).allow_refresh_token,
        )
    };
    if !watched {
        return Action::Pass;
    }
    let resp = match forward(h, &h.config.paths.token, f).await {
        Ok(r) => r,
        Err(a) => return a,
    };
    if resp.status != 200 {
        return passthrough_answer(resp);
    }
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&resp.body) else {
        tracing::error!(
            "token mediation: the identity provider's token response is not a JSON object"
        );
        return oauth(
            502,
            "server_error",
            "the identity provider answered unexpectedly",
        );
    };
    if !body.contains_key("refresh_token") {
        return json_answer(200, &Value::Object(body));
    }
    let class = classify_unrecorded(h, &body).await;
    // A transfer login's refresh token could not be bound to a session handoff
    // knows, so it is withheld even where the client may have refresh tokens.
    let withhold = match class {
        Unrecorded::Ordinary => false,
        Unrecorded::Transfer => true,
        Unrecorded::Unknown => !allow,
    };
    if withhold {
        if let Some(rt) = body
            .remove("refresh_token")
            .and_then(|v| v.as_str().map(Secret::new))
        {
            // Held to the transfer session the id_token's `sid` names, if any;
            // a token of no session handoff knows is revoked now (the web app's
            // access token may go with it: a login that escaped mediation).
            match linked_session(h, &body).await {
                Some(link) => {
                    crate::withheld::hold(
                        h,
                        &link.lineage,
                        "",
                        Some(&link.session_cookie),
                        &client,
                        &rt,
                    )
                    .await
                }
                None => revoke_at_idp(h, &client, &rt),
            }
        }
        h.metrics
            .web_refresh_tokens
            .with_label_values(&["withheld_unrecorded"])
            .inc();
        tracing::warn!(web_client = %client, class = ?class, "refresh token withheld from a code exchange handoff could not match to a recorded code");
    }
    json_answer(200, &Value::Object(body))
}

/// The transfer session the id_token's `sid` is linked to (back-channel logout's
/// link, made at a recorded exchange), if any.
async fn linked_session(h: &Handoff, body: &serde_json::Map<String, Value>) -> Option<SessionLink> {
    let claims = id_token_claims(body)?;
    let sid = claims.get("sid")?.as_str()?;
    h.store.idp_session(sid).await.ok().flatten()
}

/// Puts a code record back after an exchange the IdP did not complete.
async fn put_back_code(h: &Handoff, code: &SecretHash, rec: &CodeRecord) {
    if let Err(e) = h.store.record_code(code, rec, CODE_TTL).await {
        tracing::error!(error = %e, "token mediation: could not put an authorization code record back");
    }
}

/// How long an authorization code of a transfer session is remembered.
pub const CODE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// Remembers the IdP's `sid` (from the id_token it just issued, straight from the
/// IdP) so back-channel logout for that `sid` can find the web session.
async fn link_idp_sid(h: &Handoff, rec: &CodeRecord, body: &serde_json::Map<String, Value>) {
    let (Some(cookie), Some(id_token)) = (
        &rec.session_cookie,
        body.get("id_token").and_then(Value::as_str),
    ) else {
        return;
    };
    let Some(payload) = id_token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
    else {
        return;
    };
    let Some(sid) = serde_json::from_slice::<Value>(&payload)
        .ok()
        .and_then(|v| v.get("sid").and_then(Value::as_str).map(str::to_owned))
    else {
        return;
    };
    let link = SessionLink {
        lineage: rec.lineage.clone(),
        session_cookie: cookie.clone(),
    };
    if let Err(e) = h.store.link_idp_session(&sid, &link, LINEAGE_TTL).await {
        tracing::warn!(error = %e, "could not link the IdP session for back-channel logout");
    }
}

/// A refresh token withheld from the web app of a recorded code's session: kept
/// (sealed) and revoked at the IdP when that session ends, not now — revoking it
/// now would take the access token of the same answer with it (RFC 7009 §2.1).
async fn withhold(h: &Handoff, rec: &CodeRecord, rt: &Secret) {
    crate::withheld::hold(
        h,
        &rec.lineage,
        &rec.sid,
        rec.session_cookie.as_deref(),
        &rec.web_client,
        rt,
    )
    .await;
}

/// RFC 7009 revocation at the IdP now, when the web client's credentials are
/// configured. Runs in the background: the token is denied at handoff already.
fn revoke_at_idp(h: &Handoff, web_client: &str, rt: &Secret) {
    crate::withheld::revoke_in_background(h, web_client, rt);
}

async fn refresh_grant(h: &Handoff, rt: &Secret, f: &Forward<'_>) -> Action {
    let hash = rt.hash();
    let info = match h.store.refresh_token_info(&hash).await {
        Ok(Some(i)) => i,
        Ok(None) => return Action::Pass,
        Err(e) => {
            h.metrics
                .store_errors
                .with_label_values(&["refresh_token_info"])
                .inc();
            tracing::warn!(error = %e, "token mediation: store unavailable");
            return unavailable();
        }
    };
    let refuse = |h: &Handoff, why: &'static str| {
        h.metrics.web_refresh_tokens.with_label_values(&[why]).inc();
        tracing::info!(lineage = %info.lineage, why, "refresh grant refused");
        oauth(400, "invalid_grant", "the refresh token is no longer valid")
    };
    match h.store.is_lineage_revoked(&info.lineage).await {
        Ok(true) => return refuse(h, "lineage_revoked"),
        Ok(false) => {}
        Err(_) => return unavailable(),
    }
    if info.kind == RefreshKind::Web {
        if info.denied {
            return refuse(h, "denied");
        }
        if let Some(cookie) = info
            .session_cookie
            .as_deref()
            .and_then(SecretHash::from_hex)
        {
            let alive = match crate::session::current(h, &cookie).await {
                Ok(Some((_, s))) => {
                    let now = h.clock.now_secs();
                    !s.revoked && now < s.absolute_exp && now < s.idle_exp()
                }
                Ok(None) => false,
                Err(_) => return unavailable(),
            };
            if !alive {
                // Online refresh token of a dead session: refuse, and revoke it.
                let denied = RefreshTokenInfo {
                    denied: true,
                    ..info.clone()
                };
                let _ = h
                    .store
                    .record_refresh_token(&hash, &denied, LINEAGE_TTL)
                    .await;
                if let Some(wc) = &info.web_client {
                    revoke_at_idp(h, wc, rt);
                }
                return refuse(h, "session_ended");
            }
        }
    }
    let resp = match forward(h, &h.config.paths.token, f).await {
        Ok(r) => r,
        Err(a) => return a,
    };
    if resp.status == 200 {
        if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&resp.body) {
            if let Some(new) = body
                .get("refresh_token")
                .and_then(Value::as_str)
                .filter(|n| *n != rt.expose())
            {
                // Rotation: the new token inherits lineage and binding.
                if let Err(e) = h
                    .store
                    .record_refresh_token(&Secret::new(new).hash(), &info, LINEAGE_TTL)
                    .await
                {
                    tracing::error!(error = %e, "could not carry a refresh token's lineage across rotation");
                    if info.kind == RefreshKind::Web {
                        let mut body = body.clone();
                        body.remove("refresh_token");
                        return json_answer(200, &Value::Object(body));
                    }
                } else if info.kind == RefreshKind::Native {
                    // The rotated-out token's mapping need not live long now.
                    let ttl = crate::store::ROTATED_REFRESH_TTL;
                    if let Err(e) = h.store.expire_refresh_token(&hash, ttl).await {
                        tracing::warn!(error = %e, "could not shorten a rotated-out refresh token's mapping");
                    }
                }
            }
        }
    }
    passthrough_answer(resp)
}

/// The IdP's revocation endpoint (RFC 7009), fronted. handoff records the
/// revocation first — a native token of a known lineage whose client enforces
/// cascade revocation revokes the lineage; a web token is denied — and only then
/// tells the IdP. When the store cannot record it, the answer is `503` and the IdP
/// is not told, so the client's retry still cascades (SPEC §5: never fail open).
pub async fn revocation_endpoint(h: &Handoff, params: &TokenParams, f: &Forward<'_>) -> Action {
    let Some(token) = params.get("token").map(Secret::new) else {
        return Action::Pass;
    };
    match h.store.refresh_token_info(&token.hash()).await {
        Ok(Some(info)) if info.kind == RefreshKind::Native => {
            let cascade = info
                .native_client
                .as_deref()
                .and_then(|n| {
                    h.policy
                        .load()
                        .native_client(n)
                        .map(|c| c.enforce_cascade_revocation)
                })
                .unwrap_or(true);
            if cascade {
                if let Err(e) =
                    revocation::revoke_lineage(h, &info.lineage, "native_token_revoked").await
                {
                    tracing::error!(error = %e, lineage = %info.lineage, "cascade revocation failed: store unavailable; the identity provider was not told");
                    return unavailable();
                }
            }
        }
        Ok(Some(info)) => {
            let denied = RefreshTokenInfo {
                denied: true,
                ..info
            };
            if h.store
                .record_refresh_token(&token.hash(), &denied, LINEAGE_TTL)
                .await
                .is_err()
            {
                return unavailable();
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "cascade revocation: store unavailable; the identity provider was not told");
            return unavailable();
        }
    }
    match forward(h, &h.config.paths.revocation, f).await {
        Ok(resp) => passthrough_answer(resp),
        Err(a) => a,
    }
}
