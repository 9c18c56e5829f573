//! Redemption (SPEC §2.2): the browser presents a session transfer token.
//!
//! The gateway has already taken the token out of the request (so the IdP never
//! sees it) and answered query delivery with a 303 to the clean URL; this module
//! decides what the token is worth, in the order of SPEC §2.2:
//! 2. garbage (wrong length or alphabet) is rejected before touching the store;
//! 3. the token is consumed atomically — it succeeds at most once;
//! 4. expiry, web client, binding, lineage revocation and the rules are checked;
//! 5. on success the caller forwards the request with a fresh assertion;
//! 6. on any failure the request goes upstream as an ordinary login, and the reason
//!    is logged (never the token) and counted;
//! 7. a replay may revoke the lineage (`revoke_lineage_on_replay`), as the token's
//!    own clients' policy says (`replay_revokes`), never the replaying request's.

use crate::app::{Handoff, LINEAGE_TTL};
use crate::assertion::AssertionFacts;
use crate::secret::{random_id, TransferToken};
use crate::store::{Consumed, MintContext};
use handoff_rules::{AuthMethod, DenyReason, RedeemContext};
use std::net::IpAddr;

pub use crate::labels::Fallback;

/// A presented token and what is known of the request that presented it.
#[derive(Debug)]
pub struct Presented<'a> {
    /// The token text as it arrived (not yet validated).
    pub token: &'a str,
    /// How it arrived.
    pub method: AuthMethod,
    /// `client_id` of the authorize request, if any.
    pub web_client: Option<&'a str>,
    /// The client IP (after the trusted-proxy rule).
    pub client_ip: IpAddr,
    /// The request's device fingerprint, when configured.
    pub fingerprint: Option<[u8; 32]>,
    /// Subjects of the live transfer sessions the browser already holds.
    pub bound_subjects: &'a [&'a str],
}

/// A successful redemption.
#[derive(Debug, Clone)]
pub struct Redeemed {
    /// The mint context of the spent token.
    pub ctx: MintContext,
    /// The new web session id.
    pub sid: String,
    /// The web client.
    pub web_client: String,
    /// The signed assertion for the IdP (a secret: never logged).
    pub assertion: crate::secret::Secret,
    /// Lifetimes the rules gave the session.
    pub decision: handoff_rules::Decision,
}

/// What happened.
#[derive(Debug)]
pub enum Outcome {
    /// Log the user in.
    Success(Box<Redeemed>),
    /// Ordinary login, and why.
    Fallback(Fallback),
}

fn deny_label(r: DenyReason) -> Fallback {
    match r {
        DenyReason::ClientNotAllowed | DenyReason::UnknownNativeClient => {
            Fallback::ClientNotAllowed
        }
        DenyReason::MethodNotAllowed => Fallback::MethodNotAllowed,
        DenyReason::BindingMismatch => Fallback::BindingMismatch,
        DenyReason::DeniedByRule => Fallback::DeniedByRule,
    }
}

fn parse_fingerprint(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Whether a replay of a token minted as `ctx` revokes its lineage. Read from the
/// token's own clients, never from the replaying request (whose `client_id` is the
/// replayer's choice):
/// - the web client the token was first presented for (`first_web_client`, as the
///   store recorded it at the first consumption), when the native client allows it:
///   its `revoke_lineage_on_replay`;
/// - otherwise (none recorded, or one the native client does not allow, so not one
///   of the token's clients): the dangerous reading — revoke if *any* web client the
///   native client allows has it on; a glob in `allowed_web_clients` may cover a
///   client that has it on, so it counts as on;
/// - a native client the rules no longer list: revoke.
pub(crate) fn replay_revokes(
    policy: &handoff_rules::Policy,
    ctx: &MintContext,
    first_web_client: Option<&str>,
) -> bool {
    let Some(native) = policy.native_client(&ctx.native_client_id) else {
        return true;
    };
    match first_web_client.filter(|w| !w.is_empty()) {
        Some(w) if native.allows_web_client(w) => policy.web_client(w).revoke_lineage_on_replay,
        _ => native
            .allowed_web_clients()
            .any(|p| p.contains('*') || policy.web_client(p).revoke_lineage_on_replay),
    }
}

/// The token a redemption request presents: a query-delivered one (in the
/// redirect cookie of the 303, SPEC §2.2 step 1) before the native app's cookie —
/// it is the one this navigation carried.
pub(crate) fn choose_token<'a>(
    cookies: &'a [(String, String)],
    redirect_cookie: &str,
) -> Option<(&'a str, AuthMethod)> {
    cookies
        .iter()
        .find(|(n, _)| n == redirect_cookie)
        .map(|(_, v)| (v.as_str(), AuthMethod::Query))
        .or_else(|| {
            cookies
                .first()
                .map(|(_, v)| (v.as_str(), AuthMethod::Cookie))
        })
}

/// SPEC §2.2 step 1: the `Set-Cookie` that carries a query-delivered token across
/// the 303 to the clean URL (a `__Host-` cookie living as long as the token
/// claims, ≤ 300 s). `None` when the token is garbage (counted as `malformed`).
pub(crate) fn redirect_cookie(h: &Handoff, delivered: &str) -> Option<String> {
    match TransferToken::parse(delivered) {
        Ok(t) => {
            let remaining = t.claimed_expiry() as i64 - h.clock.now_secs() as i64;
            tracing::debug!(token = %t, "query-delivered token moved to the redirect cookie");
            Some(crate::cookies::host_cookie(
                &h.config.names.redirect_cookie,
                t.expose(),
                remaining.clamp(0, 300),
            ))
        }
        Err(_) => {
            h.metrics.redemption_fallback(Fallback::Malformed);
            tracing::info!(
                reason = Fallback::Malformed.label(),
                "redemption fell back to an ordinary login"
            );
            None
        }
    }
}

/// Redeems a presented token; counts and logs the outcome.
pub async fn redeem(h: &Handoff, p: &Presented<'_>) -> Outcome {
    let outcome = redeem_inner(h, p).await;
    match &outcome {
        Outcome::Success(r) => {
            h.metrics
                .redemptions
                .with_label_values(&["success", "ok"])
                .inc();
            tracing::info!(
                lineage = %r.ctx.lineage, sid = %r.sid, web_client = %r.web_client,
                native_client = %r.ctx.native_client_id, client_ip = %p.client_ip,
                "session transfer token redeemed"
            );
        }
        Outcome::Fallback(reason) => {
            h.metrics.redemption_fallback(*reason);
            let reason = reason.label();
            tracing::info!(reason, client_ip = %p.client_ip, web_client = p.web_client.unwrap_or("-"), "redemption fell back to an ordinary login");
        }
    }
    outcome
}

async fn redeem_inner(h: &Handoff, p: &Presented<'_>) -> Outcome {
    match redeem_steps(h, p).await {
        Ok(r) => Outcome::Success(Box::new(r)),
        Err(reason) => Outcome::Fallback(reason),
    }
}

/// The steps of SPEC §2.2 in order; a fallback is the `Err`.
async fn redeem_steps(h: &Handoff, p: &Presented<'_>) -> Result<Redeemed, Fallback> {
    // 2. garbage never reaches the store
    let token = TransferToken::parse(p.token).map_err(|e| {
        tracing::debug!(error = %e, "malformed session transfer token");
        Fallback::Malformed
    })?;
    // 3. spend it (the store remembers which web client it was first presented for)
    let web_client = p.web_client.unwrap_or("");
    let (ctx, lineage_revoked) = spend(h, &token, web_client).await?;
    // 4. the redemption context
    let decision = check(h, p, &ctx, lineage_revoked, web_client)?;
    // 5. log the user in
    let sid = random_id();
    let assertion = h.asserter.sign(&AssertionFacts {
        sub: &ctx.sub,
        lineage: ctx.lineage.as_str(),
        native_client: &ctx.native_client_id,
        sid: &sid,
        web_client,
    });
    Ok(Redeemed {
        sid,
        web_client: web_client.to_string(),
        assertion,
        decision,
        ctx,
    })
}

/// Step 3: consumes the token; a fresh one gives its mint context and whether its
/// lineage is revoked. A replay is `not_found_or_expired`, and may revoke the lineage.
async fn spend(
    h: &Handoff,
    token: &TransferToken,
    web_client: &str,
) -> Result<(MintContext, bool), Fallback> {
    let consumed = h
        .store
        .consume_transfer_token(token.lineage(), token.hash(), web_client)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, token = %token, "redemption: store unavailable");
            Fallback::StoreUnavailable
        })?;
    match consumed {
        Consumed::Unknown => Err(Fallback::NotFoundOrExpired),
        Consumed::Replayed {
            ctx,
            first_web_client,
        } => {
            tracing::warn!(token = %token, lineage = %ctx.lineage, "replayed session transfer token");
            on_replay(h, &ctx, first_web_client.as_deref()).await;
            Err(Fallback::NotFoundOrExpired)
        }
        Consumed::Fresh {
            ctx,
            lineage_revoked,
        } => Ok((ctx, lineage_revoked)),
    }
}

/// Step 7: a replay revokes the lineage when the token's own clients say so
/// (`replay_revokes`), never the replayer's `client_id`.
async fn on_replay(h: &Handoff, ctx: &MintContext, first_web_client: Option<&str>) {
    if !replay_revokes(&h.policy.load().policy, ctx, first_web_client) {
        return;
    }
    match h.store.revoke_lineage(&ctx.lineage, LINEAGE_TTL).await {
        Ok(_) => {
            tracing::warn!(lineage = %ctx.lineage, "lineage revoked after replay")
        }
        Err(e) => {
            tracing::error!(error = %e, lineage = %ctx.lineage, "could not revoke lineage after replay")
        }
    }
}

/// Step 4: expiry, lineage revocation, web client, the rules, the network binding
/// and the browser's other transfer sessions; the rules' decision if all hold.
fn check(
    h: &Handoff,
    p: &Presented<'_>,
    ctx: &MintContext,
    lineage_revoked: bool,
    web_client: &str,
) -> Result<handoff_rules::Decision, Fallback> {
    if ctx.exp <= h.clock.now_secs() {
        return Err(Fallback::NotFoundOrExpired);
    }
    if lineage_revoked {
        return Err(Fallback::LineageRevoked);
    }
    if web_client.is_empty() {
        return Err(Fallback::ClientNotAllowed);
    }
    let minute_of_day_utc = ((h.clock.now_secs() / 60) % 1440) as u16;
    let decision = {
        let policy = h.policy.load();
        policy.decide_redemption(&RedeemContext {
            native_client: &ctx.native_client_id,
            web_client,
            method: p.method,
            mint_ip: ctx.ip,
            redeem_ip: p.client_ip,
            mint_fingerprint: ctx.fingerprint.as_deref().and_then(parse_fingerprint),
            redeem_fingerprint: p.fingerprint,
            mint_asn: ctx.asn,
            redeem_asn: policy.asn_of(p.client_ip),
            minute_of_day_utc,
        })
    };
    if let Err(reason) = decision.verdict {
        return Err(deny_label(reason));
    }
    // A trusted proxy sent a forwarding header handoff could not read, at mint or
    // now: the client is unknown, and no network binding can hold for it.
    let unknown = crate::client_ip::UNKNOWN;
    if decision.binding.network != handoff_rules::NetworkBinding::None
        && (ctx.ip == unknown || p.client_ip == unknown)
    {
        return Err(Fallback::BindingMismatch);
    }
    if p.bound_subjects.iter().any(|s| *s != ctx.sub) {
        tracing::warn!(lineage = %ctx.lineage, "browser holds a transfer session of another user: revoking it, ordinary login");
        return Err(Fallback::DifferentSubject);
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::LineageId;

    fn ctx(native: &str) -> MintContext {
        MintContext {
            sub: "alice".into(),
            native_client_id: native.into(),
            lineage: LineageId::generate(),
            scope: String::new(),
            ip: "127.0.0.1".parse().unwrap(),
            asn: None,
            fingerprint: None,
            iat: 0,
            exp: 60,
        }
    }

    #[test]
    fn replay_policy_comes_from_the_tokens_own_clients() {
        let policy = handoff_rules::Policy::from_toml(
            r#"
[native.app]
can_create_session_transfer_token = true
allowed_web_clients = ["strict", "lax"]

[native.globbed]
can_create_session_transfer_token = true
allowed_web_clients = ["shop-*"]

[native.laxonly]
can_create_session_transfer_token = true
allowed_web_clients = ["lax"]

[web.strict]
revoke_lineage_on_replay = true

[web.lax]
revoke_lineage_on_replay = false

[web.outsider]
revoke_lineage_on_replay = true
"#,
            "rules.toml",
        )
        .unwrap();
        let app = ctx("app");
        // The first redemption's client decides.
        assert!(replay_revokes(&policy, &app, Some("strict")));
        assert!(!replay_revokes(&policy, &app, Some("lax")));
        // None recorded, or one that is not the token's: any allowed client's "on".
        assert!(replay_revokes(&policy, &app, None));
        assert!(replay_revokes(&policy, &app, Some("")));
        assert!(replay_revokes(&policy, &app, Some("outsider")));
        assert!(!replay_revokes(&policy, &ctx("laxonly"), None));
        assert!(!replay_revokes(&policy, &ctx("laxonly"), Some("outsider")));
        // A glob may cover a client that has it on; an unlisted native: revoke.
        assert!(replay_revokes(&policy, &ctx("globbed"), None));
        assert!(replay_revokes(&policy, &ctx("gone"), Some("lax")));
    }
}
