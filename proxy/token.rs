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
            Some(rt) => refresh_grant(h, params, &Secret::new(rt), f).await,
            None => Action::Pass,
        },
        _ => Action::Pass,
    }
}

/// An `authorization_code` grant: a recorded code of a transfer session is
/// exchanged by handoff itself, in SPEC §2.5's order — its session still alive, the
/// IdP asked, the answer's subject the transfer's, the refresh token withheld or
/// bound as policy says.
async fn code_grant(h: &Handoff, params: &TokenParams, code: &str, f: &Forward<'_>) -> Action {
    let code_hash = SecretHash::of(code.as_bytes());
    let rec = match h.store.take_code(&code_hash).await {
        Ok(Some(r)) => r,
        Ok(None) => return unrecorded_code_grant(h, params, f).await,
        Err(e) => {
            tracing::warn!(error = %e, "token mediation: store unavailable");
            return unavailable();
        }
    };
    let mut body = match exchange_recorded(h, &code_hash, &rec, f).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    if let Err(answer) = check_subject(h, &rec, &mut body).await {
        return answer;
    }
    mediate_refresh_token(h, &rec, &mut body).await;
    link_idp_sid(h, &rec, &body).await;
    json_answer(200, &Value::Object(body))
}

/// Asks the IdP to exchange a recorded code whose session is still alive. Whatever
/// the IdP did not spend stays recorded for the retry.
async fn exchange_recorded(
    h: &Handoff,
    code_hash: &SecretHash,
    rec: &CodeRecord,
    f: &Forward<'_>,
) -> Result<serde_json::Map<String, Value>, Action> {
    // A code of a session that has ended since (cascade, revocation, limits) buys
    // nothing: checked before the IdP is asked.
    match code_session_alive(h, rec).await {
        Ok(true) => {}
        Ok(false) => {
            h.metrics
                .web_refresh_tokens
                .with_label_values(&["code_of_ended_session"])
                .inc();
            tracing::info!(lineage = %rec.lineage, sid = %rec.sid, "code exchange refused: its transfer session has ended");
            return Err(oauth(
                400,
                "invalid_grant",
                "the authorization code is no longer valid",
            ));
        }
        Err(()) => {
            put_back_code(h, code_hash, rec).await;
            return Err(unavailable());
        }
    }
    let resp = match forward(h, &h.config.paths.token, f).await {
        Ok(r) => r,
        Err(a) => {
            put_back_code(h, code_hash, rec).await;
            return Err(a);
        }
    };
    if resp.status != 200 {
        // The IdP did not spend the code (a wrong verifier, redirect_uri or client
        // secret; an outage): it stays mediated for the retry.
        put_back_code(h, code_hash, rec).await;
        return Err(passthrough_answer(resp));
    }
    token_response(&resp).ok_or_else(unreadable_answer)
}

/// SPEC §7.12: the login must be the transaction's subject's. An answer for
/// someone else means the IdP logged in a session the transfer did not create:
/// that session is revoked and nothing is handed out. Without an id_token the
/// answer cannot be tied to the subject: no refresh token (the dangerous reading).
async fn check_subject(
    h: &Handoff,
    rec: &CodeRecord,
    body: &mut serde_json::Map<String, Value>,
) -> Result<(), Action> {
    let sub =
        id_token_claims(body).and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned));
    match sub {
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
            if let Some(rt) = refresh_token_of(body) {
                withhold(h, rec, &rt).await;
            }
            Err(oauth(
                400,
                "invalid_grant",
                "the login does not match the session transfer",
            ))
        }
        Some(_) => Ok(()),
        None => {
            if let Some(rt) = refresh_token_of(body) {
                tracing::warn!(sid = %rec.sid, "code exchange without an id_token: refresh token withheld");
                body.remove("refresh_token");
                withhold(h, rec, &rt).await;
            }
            Ok(())
        }
    }
}

fn refresh_token_of(body: &serde_json::Map<String, Value>) -> Option<Secret> {
    body.get("refresh_token")
        .and_then(Value::as_str)
        .map(Secret::new)
}

/// The refresh token of a transfer session's code exchange: withheld
/// (`allow_refresh_token = false`, or an online token with no session to hold it
/// to), bound to the session (online), or allowed — and recorded either way.
async fn mediate_refresh_token(
    h: &Handoff,
    rec: &CodeRecord,
    body: &mut serde_json::Map<String, Value>,
) {
    let Some(rt) = refresh_token_of(body) else {
        return;
    };
    let refresh = rec.refresh;
    let mut info = RefreshTokenInfo {
        lineage: rec.lineage.clone(),
        kind: RefreshKind::Web,
        session_cookie: None,
        web_client: Some(rec.web_client.clone()),
        denied: false,
        native_client: None,
    };
    // Online refresh tokens need the session's cookie; without it the token could
    // not be held to the session, so it is withheld like a forbidden one.
    let unbindable = refresh.online && rec.session_cookie.is_none();
    let outcome = if !refresh.allow || unbindable {
        // Invariant 8: the web app never sees it.
        body.remove("refresh_token");
        info.denied = true;
        withhold(h, rec, &rt).await;
        "withheld"
    } else if refresh.online {
        info.session_cookie = rec.session_cookie.clone();
        "bound"
    } else {
        "allowed"
    };
    h.metrics
        .web_refresh_tokens
        .with_label_values(&[outcome])
        .inc();
    if let Err(e) = h
        .store
        .record_refresh_token(&rt.hash(), &info, LINEAGE_TTL)
        .await
    {
        tracing::error!(error = %e, "token mediation: could not record the web refresh token");
        if !info.denied {
            // Unrecorded, it could not be held to its session: do not hand it out.
            body.remove("refresh_token");
        }
    }
    tracing::info!(lineage = %rec.lineage, sid = %rec.sid, web_client = %rec.web_client, withheld = info.denied, "web refresh token mediated");
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
    session_alive(h, rec.session_cookie.as_deref()).await
}

/// Whether the web session a cookie hash (hex) was bound to is alive now, read from
/// the store (no cache); no cookie: nothing to hold it to, so `true`. `Err` when the
/// store cannot say.
async fn session_alive(h: &Handoff, cookie: Option<&str>) -> Result<bool, ()> {
    let Some(cookie) = cookie.and_then(SecretHash::from_hex) else {
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

/// Who a token request says it is, as an IdP would read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A client id handoff read (the body's `client_id`, the HTTP Basic user in any
    /// case of the scheme, or a `client_assertion`'s `sub`).
    Client(String),
    /// Some client authentication handoff cannot attribute: treated as a client a
    /// session transfer may log in to (the dangerous reading).
    Unknown,
}

/// The caller of a token request (see [`Caller`]). Every identity the request
/// claims — the body's `client_id`, an `Authorization` header, a
/// `client_assertion` — is read; an unreadable one, or two that disagree (which
/// would the IdP believe?), make the caller `Unknown`, never "no client".
pub fn request_caller(params: &TokenParams, f: &Forward<'_>) -> Caller {
    let mut claimed: Vec<Option<String>> = Vec::new();
    if let Some(c) = params.get("client_id") {
        claimed.push(Some(c.to_string()));
    }
    if let Some(a) = f.authorization {
        claimed.push(basic_user(a));
    }
    if let Some(jwt) = params.get("client_assertion") {
        claimed.push(
            jwt.split('.')
                .nth(1)
                .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
                .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
                .and_then(|v| v.get("sub").and_then(Value::as_str).map(str::to_owned)),
        );
    }
    match claimed.split_first() {
        Some((Some(first), rest)) if rest.iter().all(|c| c.as_deref() == Some(first)) => {
            Caller::Client(first.clone())
        }
        _ => Caller::Unknown,
    }
}

/// The user of an HTTP Basic `Authorization` (any case of the scheme, the user
/// percent-decoded as RFC 6749 §2.3.1 says).
fn basic_user(a: &str) -> Option<String> {
    let (scheme, rest) = a.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
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
    // Native clients' own logins are the IdP's business; every other exchange is
    // made by handoff, so it can read the answer.
    let (client, watched) = {
        let p = h.policy.load();
        match request_caller(params, f) {
            Caller::Client(c) if p.native_client(&c).is_some() => return Action::Pass,
            Caller::Client(c) => {
                let watched = p.is_transfer_web_client(&c);
                (Some(c), watched)
            }
            Caller::Unknown => (None, true),
        }
    };
    let resp = match forward(h, &h.config.paths.token, f).await {
        Ok(r) => r,
        Err(a) => return a,
    };
    if resp.status != 200 {
        return passthrough_answer(resp);
    }
    let Some(mut body) = token_response(&resp) else {
        return unreadable_answer();
    };
    if !body.contains_key("refresh_token") {
        return json_answer(200, &Value::Object(body));
    }
    let class = classify_unrecorded(h, &body).await;
    // A transfer login's refresh token could not be bound to a session handoff
    // knows, so it is withheld even where the client may have refresh tokens; a
    // client no transfer logs in to keeps what it cannot be told apart from.
    let withhold = match class {
        Unrecorded::Ordinary => false,
        Unrecorded::Transfer => true,
        // An allowed refresh token is honoured only bound to its session, and an
        // unrecorded one never is: a client a transfer may log in to keeps one
        // only when the answer shows an ordinary login.
        Unrecorded::Unknown => watched,
    };
    if withhold {
        let rt = body
            .remove("refresh_token")
            .and_then(|v| v.as_str().map(Secret::new));
        if let (Some(rt), Some(c)) = (rt, &client) {
            // Held to the transfer session the id_token's `sid` names, if any;
            // a token of no session handoff knows is revoked now (the web app's
            // access token may go with it: a login that escaped mediation).
            match linked_session(h, &body).await {
                Some(link) => {
                    crate::withheld::hold(h, &link.lineage, "", Some(&link.session_cookie), c, &rt)
                        .await
                }
                None => revoke_at_idp(h, c, &rt),
            }
        }
        h.metrics
            .web_refresh_tokens
            .with_label_values(&["withheld_unrecorded"])
            .inc();
        tracing::warn!(web_client = client.as_deref().unwrap_or("-"), class = ?class, "refresh token withheld from a code exchange handoff could not match to a recorded code");
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

/// Where a redirect of the IdP came from, as far as code tracking cares.
#[derive(Debug, Clone, Copy, Default)]
pub struct CodeOrigin<'a> {
    /// The session this very response bound.
    pub bound: Option<(&'a SecretHash, &'a crate::store::WebSession)>,
    /// A live transfer session the request carried.
    pub live: Option<&'a crate::session::LiveSession>,
    /// The login transaction that asserted on this request.
    pub tx: Option<&'a crate::transaction::Transaction>,
    /// A transaction is running at all (asserting or only binding).
    pub in_transaction: bool,
    /// `client_id` of the request's query.
    pub authorize_client: Option<&'a str>,
}

/// Remembers an authorization code the IdP issues inside a transfer session (from
/// the redirect's `Location`), so its token response can be mediated (SPEC §2.5).
/// Returns the `Location` to send instead when the redirect must not reach the
/// client as it is: an authorization response in a form the token endpoint cannot
/// mediate (fragment, JARM), or a code the store could not record.
pub(crate) async fn track_code(
    h: &Handoff,
    status: u16,
    location: &str,
    o: CodeOrigin<'_>,
) -> Option<String> {
    if !(300..400).contains(&status) {
        return None;
    }
    let in_transfer = o.bound.is_some() || o.live.is_some() || o.in_transaction;
    if in_transfer && hides_authorization_response(location) {
        // The token endpoint could not tell it belongs to a transfer session.
        tracing::warn!(
            "withheld an authorization response in a form the token endpoint cannot mediate"
        );
        h.metrics
            .sessions
            .with_label_values(&["unmediatable_response"])
            .inc();
        return Some(withhold_response(location));
    }
    let code = location
        .split_once('?')
        .and_then(|(_, q)| query_param(q.split('#').next().unwrap_or(q), "code"))?;
    let (s, cookie) = match (o.bound, o.live, o.tx) {
        (Some((hash, s)), _, _) => (Origin::from(s), Some(hash.hex())),
        (None, Some(l), _) => (Origin::from(&l.session), Some(l.hash.hex())),
        (None, None, Some(t)) => (Origin::from(t), None),
        (None, None, None) => return None,
    };
    // The code is for the client of this authorize request (SSO may serve another
    // client than the one the transfer logged in to), whose own settings may only
    // tighten what the redemption decided.
    let web_client = o.authorize_client.unwrap_or(s.web_client).to_string();
    let refresh = if web_client == s.web_client {
        s.refresh
    } else {
        let other = h.policy.load().web_client(&web_client).clone();
        crate::store::RefreshPolicy {
            allow: s.refresh.allow && other.allow_refresh_token,
            online: s.refresh.online || other.enforce_online_refresh_tokens,
        }
    };
    let rec = CodeRecord {
        lineage: s.lineage.clone(),
        sid: s.sid.to_string(),
        session_cookie: cookie,
        web_client,
        sub: s.sub.to_string(),
        refresh,
    };
    match h
        .store
        .record_code(&SecretHash::of(code.as_bytes()), &rec, CODE_TTL)
        .await
    {
        Ok(()) => None,
        Err(e) => {
            // An unrecorded code's token response would escape mediation (a refresh
            // token could reach the web app): the code must not reach the app. It
            // gets an RFC 6749 error redirect instead, state kept.
            tracing::error!(error = %e, sid = %rec.sid, "could not record an authorization code of a transfer session; withholding it");
            Some(withhold_code(location))
        }
    }
}

/// The transfer session a code was issued in, whichever record it came from.
struct Origin<'a> {
    lineage: &'a crate::secret::LineageId,
    sid: &'a str,
    sub: &'a str,
    web_client: &'a str,
    refresh: crate::store::RefreshPolicy,
}

impl<'a> From<&'a crate::store::WebSession> for Origin<'a> {
    fn from(s: &'a crate::store::WebSession) -> Self {
        Origin {
            lineage: &s.lineage,
            sid: &s.sid,
            sub: &s.sub,
            web_client: &s.web_client,
            refresh: s.refresh,
        }
    }
}

impl<'a> From<&'a crate::transaction::Transaction> for Origin<'a> {
    fn from(t: &'a crate::transaction::Transaction) -> Self {
        Origin {
            lineage: &t.lineage,
            sid: &t.sid,
            sub: &t.sub,
            web_client: &t.web_client,
            refresh: t.refresh,
        }
    }
}

/// The value of `param` in a raw query string.
pub fn query_param(query: &str, param: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == param)
        .map(|(_, v)| v.into_owned())
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

/// The IdP's 200 token response as a JSON object, if it is one.
fn token_response(resp: &crate::idp::IdpResponse) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(&resp.body) {
        Ok(Value::Object(body)) => Some(body),
        _ => None,
    }
}

/// A 200 handoff cannot read might carry a refresh token: it is not passed on.
fn unreadable_answer() -> Action {
    tracing::error!("token mediation: the identity provider's token response is not a JSON object");
    oauth(
        502,
        "server_error",
        "the identity provider answered unexpectedly",
    )
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

/// A refresh grant with a token handoff has no record of, by a client that is not
/// native: made by handoff, and refused (the token revoked) when the IdP's answer
/// says it belongs to a transfer login — such a token should never have reached
/// a web app (SPEC §7.11, defence in depth).
async fn unrecorded_refresh_grant(
    h: &Handoff,
    params: &TokenParams,
    rt: &Secret,
    f: &Forward<'_>,
) -> Action {
    let client = match request_caller(params, f) {
        Caller::Client(c) if h.policy.load().native_client(&c).is_some() => return Action::Pass,
        Caller::Client(c) => Some(c),
        Caller::Unknown => None,
    };
    let resp = match forward(h, &h.config.paths.token, f).await {
        Ok(r) => r,
        Err(a) => return a,
    };
    let body = match serde_json::from_slice::<Value>(&resp.body) {
        Ok(Value::Object(b)) if resp.status == 200 => b,
        _ => return passthrough_answer(resp),
    };
    if classify_unrecorded(h, &body).await != Unrecorded::Transfer {
        return passthrough_answer(resp);
    }
    h.metrics
        .web_refresh_tokens
        .with_label_values(&["unrecorded_transfer"])
        .inc();
    tracing::error!(
        web_client = client.as_deref().unwrap_or("-"),
        "a refresh token of a transfer login that handoff never handed out was refused"
    );
    if let Some(c) = &client {
        revoke_at_idp(h, c, rt);
        if let Some(new) = body.get("refresh_token").and_then(Value::as_str) {
            revoke_at_idp(h, c, &Secret::new(new));
        }
    }
    oauth(400, "invalid_grant", "the refresh token is no longer valid")
}

async fn refresh_grant(h: &Handoff, params: &TokenParams, rt: &Secret, f: &Forward<'_>) -> Action {
    let hash = rt.hash();
    let info = match h.store.refresh_token_info(&hash).await {
        Ok(Some(i)) => i,
        Ok(None) => return unrecorded_refresh_grant(h, params, rt, f).await,
        Err(e) => {
            tracing::warn!(error = %e, "token mediation: store unavailable");
            return unavailable();
        }
    };
    if let Err(answer) = may_refresh(h, &info, &hash, rt).await {
        return answer;
    }
    let resp = match forward(h, &h.config.paths.token, f).await {
        Ok(r) => r,
        Err(a) => return a,
    };
    carry_rotation(h, &info, &hash, rt, resp).await
}

/// A known refresh token may be used while its lineage is not revoked and — a web
/// one — it is not denied and its session (online tokens) lives. An online token of
/// a dead session is denied from now on and revoked at the IdP.
async fn may_refresh(
    h: &Handoff,
    info: &RefreshTokenInfo,
    hash: &SecretHash,
    rt: &Secret,
) -> Result<(), Action> {
    let refuse = |why: &'static str| {
        h.metrics.web_refresh_tokens.with_label_values(&[why]).inc();
        tracing::info!(lineage = %info.lineage, why, "refresh grant refused");
        oauth(400, "invalid_grant", "the refresh token is no longer valid")
    };
    match h.store.is_lineage_revoked(&info.lineage).await {
        Ok(true) => return Err(refuse("lineage_revoked")),
        Ok(false) => {}
        Err(_) => return Err(unavailable()),
    }
    if info.kind != RefreshKind::Web {
        return Ok(());
    }
    if info.denied {
        return Err(refuse("denied"));
    }
    match session_alive(h, info.session_cookie.as_deref()).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            // Online refresh token of a dead session: refuse, and revoke it.
            let denied = RefreshTokenInfo {
                denied: true,
                ..info.clone()
            };
            let _ = h
                .store
                .record_refresh_token(hash, &denied, LINEAGE_TTL)
                .await;
            if let Some(wc) = &info.web_client {
                revoke_at_idp(h, wc, rt);
            }
            Err(refuse("session_ended"))
        }
        Err(()) => Err(unavailable()),
    }
}

/// The IdP's answer to a known refresh token: a rotated token inherits lineage and
/// binding (a web one is not handed out when that cannot be recorded); a native
/// one's rotated-out mapping need not live long now.
async fn carry_rotation(
    h: &Handoff,
    info: &RefreshTokenInfo,
    hash: &SecretHash,
    rt: &Secret,
    resp: crate::idp::IdpResponse,
) -> Action {
    let body = match token_response(&resp) {
        Some(body) if resp.status == 200 => body,
        _ => return passthrough_answer(resp),
    };
    let Some(new) = body
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|n| *n != rt.expose())
    else {
        return passthrough_answer(resp);
    };
    let recorded = h
        .store
        .record_refresh_token(&Secret::new(new).hash(), info, LINEAGE_TTL)
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not carry a refresh token's lineage across rotation");
        if info.kind == RefreshKind::Web {
            let mut body = body.clone();
            body.remove("refresh_token");
            return json_answer(200, &Value::Object(body));
        }
    } else if info.kind == RefreshKind::Native {
        let ttl = crate::store::ROTATED_REFRESH_TTL;
        if let Err(e) = h.store.expire_refresh_token(hash, ttl).await {
            tracing::warn!(error = %e, "could not shorten a rotated-out refresh token's mapping");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_read_as_the_idp_might_and_disagreements_are_unknown() {
        use base64::Engine;
        let body = Bytes::new();
        let basic = |u: &str| {
            format!(
                "basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:s"))
            )
        };
        let f = |auth: Option<&str>| Forward {
            body: &body,
            content_type: None,
            authorization: auth.map(|a| Box::leak(a.to_string().into_boxed_str()) as &str),
            client_ip: "127.0.0.1".parse().unwrap(),
        };
        let p = |kv: &[(&str, &str)]| {
            TokenParams(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let web = Caller::Client("web-app".into());
        assert_eq!(
            request_caller(&p(&[("client_id", "web-app")]), &f(None)),
            web
        );
        assert_eq!(request_caller(&p(&[]), &f(Some(&basic("web-app")))), web);
        assert_eq!(request_caller(&p(&[]), &f(Some(&basic("web%2Dapp")))), web);
        assert_eq!(
            request_caller(
                &p(&[("client_id", "native-app")]),
                &f(Some(&basic("web-app")))
            ),
            Caller::Unknown,
            "two identities that disagree"
        );
        assert_eq!(
            request_caller(&p(&[]), &f(Some("Bearer x"))),
            Caller::Unknown
        );
        assert_eq!(request_caller(&p(&[]), &f(None)), Caller::Unknown);
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
    fn responses_in_fragments_or_jarm_are_withheld() {
        for l in [
            "https://app/cb#code=x&state=s",
            "https://app/cb#access_token=x",
            "https://app/cb?response=eyJ.x.y",
            "https://app/cb?state=s#id_token=x",
        ] {
            assert!(hides_authorization_response(l), "{l}");
            let w = withhold_response(l);
            assert!(w.contains("error=access_denied") && !w.contains('#'), "{w}");
        }
        assert!(!hides_authorization_response(
            "https://app/cb?code=x&state=s"
        ));
        assert!(withhold_response("https://app/cb#code=x&state=s").ends_with("state=s"));
    }

    #[test]
    fn query_param_is_removed_and_the_rest_kept() {
        let (q, v) = take_query_param(
            "client_id=web&session_transfer_token=abc.1.x&state=a%20b",
            "session_transfer_token",
        );
        assert_eq!(q, "client_id=web&state=a%20b");
        assert_eq!(v.as_deref(), Some("abc.1.x"));
        let (q, v) = take_query_param("a=1&&b", "x");
        assert_eq!((q.as_str(), v), ("a=1&&b", None));
    }
}
