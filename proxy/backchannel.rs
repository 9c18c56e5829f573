//! OpenID Connect Back-Channel Logout 1.0: the IdP tells handoff that one of its
//! sessions ended, and handoff revokes the transfer sessions that belong to it.
//!
//! The `logout_token` is a JWT from the IdP, verified like its id_tokens (its JWKS,
//! its `iss`) plus the logout-token rules of the spec's §2.6: `aud` is one of the
//! configured audiences, `iat` is recent, the `events` claim names the
//! back-channel-logout event, there is no `nonce`, there is a `jti`, and there is a
//! `sid` or `sub`.
//!
//! Replays: each accepted token's `jti` (with its `iss`) is remembered in the store
//! ([`Store::remember_once`](crate::store::Store::remember_once), atomic "set if
//! absent", so across instances) for as long as the token could pass the checks
//! above ([`replay_memory`]); the same token again is refused with a 400 and
//! revokes nothing. A store error answers 503 and revokes nothing. When the
//! revocation itself fails (503), the `jti` is forgotten again
//! ([`Store::forget_once`](crate::store::Store::forget_once)), so that the IdP's
//! retry of the same token is not taken for a replay.
//! A `sid` ends the web session linked to it (recorded when its code was
//! exchanged); a `sub` alone ends every transfer session of that user.

use crate::app::Handoff;
use crate::idp::audience_contains;
use crate::mint::TokenParams;
use crate::revocation;
use crate::secret::SecretHash;
use serde_json::{json, Value};

/// The event URI a logout token must carry.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How far `iat` may be from now (seconds).
const MAX_SKEW: u64 = 300;

/// The shortest time a logout token's `jti` is remembered (seconds).
pub const MIN_REPLAY_MEMORY: u64 = 60;

/// Added to how long a logout token can still pass the checks, for the clocks of
/// other instances (which check it against their own) being a little behind.
const CLOCK_MARGIN: u64 = 60;

/// The longest time a logout token's `jti` is remembered (seconds, 11 minutes):
/// `2 × MAX_SKEW` is the longest any token can pass the `iat` check (`iat` at most
/// `MAX_SKEW` ahead of now, accepted until `MAX_SKEW` after it), plus the clock
/// margin, so the cap never opens a window.
pub const MAX_REPLAY_MEMORY: u64 = 2 * MAX_SKEW + CLOCK_MARGIN;

/// How long to remember a logout token with these (checked) claims, at `now`: until
/// it stops passing [`check_claims`] — the earlier of its `exp` and `iat + MAX_SKEW`
/// — plus a minute of clock margin, and at least [`MIN_REPLAY_MEMORY`], at most
/// [`MAX_REPLAY_MEMORY`] seconds.
pub fn replay_memory(claims: &Value, now: u64) -> std::time::Duration {
    let iat = claims.get("iat").and_then(Value::as_u64).unwrap_or(now);
    let mut until = iat.saturating_add(MAX_SKEW);
    if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
        until = until.min(exp);
    }
    let secs = until
        .saturating_sub(now)
        .saturating_add(CLOCK_MARGIN)
        .clamp(MIN_REPLAY_MEMORY, MAX_REPLAY_MEMORY);
    std::time::Duration::from_secs(secs)
}

fn bad(description: &str) -> (u16, Value) {
    (
        400,
        json!({"error": "invalid_request", "error_description": description}),
    )
}

/// Handles one logout request; returns the status and JSON body to answer with.
pub async fn logout(h: &Handoff, params: &TokenParams) -> (u16, Value) {
    match logout_steps(h, params).await {
        Ok(n) => {
            tracing::info!(sessions = n, "back-channel logout processed");
            (200, json!({}))
        }
        Err(answer) => answer,
    }
}

/// An answer to the IdP.
type Answer = (u16, Value);

fn unavailable() -> Answer {
    (503, json!({"error": "temporarily_unavailable"}))
}

/// Verify the token, spend its `jti` once, revoke what it names; how many sessions.
async fn logout_steps(h: &Handoff, params: &TokenParams) -> Result<usize, Answer> {
    if h.config.backchannel_logout.audiences.is_empty() {
        return Err((
            404,
            json!({"error": "not_found", "error_description": "back-channel logout is not configured"}),
        ));
    }
    let token = params
        .get("logout_token")
        .ok_or_else(|| bad("logout_token is required"))?;
    let claims = verified_claims(h, token).await?;
    let once = spend_jti(h, &claims).await?;
    let named = (
        claims.get("sid").and_then(Value::as_str),
        claims.get("sub").and_then(Value::as_str),
    );
    let result = match named {
        (Some(sid), _) => revoke_idp_session(h, sid).await,
        (None, Some(sub)) => revocation::revoke_subject(h, sub, false, "backchannel_logout").await,
        (None, None) => return Err(bad("the logout_token names neither sid nor sub")),
    };
    match result {
        Ok(n) => Ok(n),
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout: store unavailable");
            // Release the claim on the jti: the IdP will retry this very token.
            if let Err(e) = h.store.forget_once(&once).await {
                tracing::error!(error = %e, "back-channel logout: could not forget the jti; a retry of this logout_token will be refused as a replay");
            }
            Err(unavailable())
        }
    }
}

/// The logout token's claims, its signature verified against the IdP's keys and
/// its rules checked.
async fn verified_claims(h: &Handoff, token: &str) -> Result<Value, Answer> {
    let claims = match h.idp.verify_jws(token).await {
        Ok(c) => c,
        Err(crate::idp::IdpError::Unavailable(e)) => {
            tracing::warn!(error = %e, "back-channel logout: cannot reach the identity provider's keys");
            return Err(unavailable());
        }
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout: logout_token refused");
            return Err(bad("the logout_token does not verify"));
        }
    };
    let audiences = &h.config.backchannel_logout.audiences;
    if let Err(why) = check_claims(&claims, audiences, h.clock.now_secs()) {
        tracing::warn!(why, "back-channel logout: logout_token refused");
        return Err(bad(why));
    }
    Ok(claims)
}

/// Replay: the same token (same issuer and jti) is honoured once (`check_claims`
/// made sure there is a jti). Returns the name it was remembered under.
async fn spend_jti(h: &Handoff, claims: &Value) -> Result<String, Answer> {
    let claim = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
    let once = format!("backchannel-logout\0{}\0{}", claim("iss"), claim("jti"));
    let ttl = replay_memory(claims, h.clock.now_secs());
    match h.store.remember_once(&once, ttl).await {
        Ok(true) => Ok(once),
        Ok(false) => {
            tracing::warn!("back-channel logout: logout_token replayed (jti already used)");
            Err(bad("the logout_token has already been used"))
        }
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout: store unavailable");
            Err(unavailable())
        }
    }
}

/// Revokes the web session the IdP's `sid` was linked to, if any.
async fn revoke_idp_session(h: &Handoff, sid: &str) -> Result<usize, crate::store::StoreError> {
    let Some(link) = h.store.idp_session(sid).await? else {
        return Ok(0);
    };
    match SecretHash::from_hex(&link.session_cookie) {
        Some(hash) => revocation::revoke_cookie(h, &hash, "backchannel_logout")
            .await
            .map(usize::from),
        None => Ok(0),
    }
}

/// The logout-token rules beyond the signature and `iss`.
pub fn check_claims(claims: &Value, audiences: &[String], now: u64) -> Result<(), &'static str> {
    if !audiences.iter().any(|a| audience_contains(claims, a)) {
        return Err("aud is not one of the configured audiences");
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or("iat is missing")?;
    if iat > now + MAX_SKEW || iat + MAX_SKEW < now {
        return Err("iat is too far from now");
    }
    if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
        if exp <= now {
            return Err("the logout_token has expired");
        }
    }
    if !claims
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|e| e.contains_key(EVENT))
    {
        return Err("events does not name the back-channel logout event");
    }
    if claims.get("nonce").is_some() {
        return Err("a logout_token must not carry a nonce");
    }
    if claims
        .get("jti")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("jti is missing");
    }
    if claims.get("sid").and_then(Value::as_str).is_none()
        && claims.get("sub").and_then(Value::as_str).is_none()
    {
        return Err("the logout_token names neither sid nor sub");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_token_rules() {
        let auds = vec!["web-app".to_string()];
        let good =
            json!({"aud": "web-app", "iat": 1000, "jti": "j", "events": {EVENT: {}}, "sid": "s"});
        assert_eq!(check_claims(&good, &auds, 1000), Ok(()));
        let mut c = good.clone();
        c["aud"] = json!("other");
        assert!(check_claims(&c, &auds, 1000).is_err());
        assert!(check_claims(&good, &auds, 2000).is_err(), "stale iat");
        let mut c = good.clone();
        c["nonce"] = json!("n");
        assert!(check_claims(&c, &auds, 1000).is_err());
        let mut c = good.clone();
        c["events"] = json!({});
        assert!(check_claims(&c, &auds, 1000).is_err());
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("sid");
        assert!(check_claims(&c, &auds, 1000).is_err());
        c["sub"] = json!("alice");
        assert_eq!(check_claims(&c, &auds, 1000), Ok(()));
        c["exp"] = json!(999);
        assert!(check_claims(&c, &auds, 1000).is_err());
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("jti");
        assert!(check_claims(&c, &auds, 1000).is_err(), "no jti");
        c["jti"] = json!("");
        assert!(check_claims(&c, &auds, 1000).is_err(), "empty jti");
    }

    #[test]
    fn jtis_are_remembered_while_the_token_could_pass() {
        let secs = |c: Value, now| replay_memory(&c, now).as_secs();
        // No exp: until iat + MAX_SKEW, plus the clock margin.
        assert_eq!(secs(json!({"iat": 1000}), 1000), MAX_SKEW + CLOCK_MARGIN);
        // iat ahead of now: the whole window, which the cap covers.
        assert_eq!(secs(json!({"iat": 1300}), 1000), MAX_REPLAY_MEMORY);
        // exp earlier than that: until exp, but at least the minimum.
        assert_eq!(
            secs(json!({"iat": 1000, "exp": 1200}), 1000),
            200 + CLOCK_MARGIN
        );
        assert_eq!(
            secs(json!({"iat": 1000, "exp": 1001}), 1000),
            MIN_REPLAY_MEMORY.max(1 + CLOCK_MARGIN)
        );
        // Old iat: the minimum.
        assert_eq!(secs(json!({"iat": 600}), 1000), MIN_REPLAY_MEMORY);
    }
}
