//! Withheld refresh tokens (SPEC §2.5): revoked at the IdP when their web session
//! ends, not at login.
//!
//! With `allow_refresh_token = false` handoff removes the refresh token from the
//! web app's token response. Revoking it at the IdP right away would end the web
//! app's login a second later: RFC 7009 §2.1 lets an IdP revoke the access tokens of
//! the same grant with the refresh token (oidc-provider revokes the whole grant), so
//! the access token of the same answer stops working. Nobody can use the withheld
//! token meanwhile — the web app never sees it, handoff denies it at its token
//! endpoint, and it is stored only sealed — so it is revoked when its web session
//! ends instead:
//! - at the exchange, [`hold`] seals it (ChaCha20-Poly1305, key derived from the
//!   transaction-cookie key, i.e. from the assertion signing key, so every instance
//!   that shares that key can open it; the lineage and the token's hash are the
//!   associated data) and keeps it under the lineage (`Keys::withheld`, TTL: the
//!   session's absolute limit plus [`RETENTION`]), and schedules the lineage at the
//!   session's expiry (`Keys::withheld_due`);
//! - a revocation (session, lineage cascade, subject, back-channel logout, a login
//!   answered for another subject) schedules the lineage now and wakes the sweeper;
//! - the sweeper ([`start`], every [`SWEEP_INTERVAL`] and on every wake-up) claims
//!   the due lineages (atomically: one instance each) and `settle`s them: each
//!   token whose session is still alive is scheduled again at the session's current
//!   expiry (idle time slides); each whose session has ended is unsealed, sent to
//!   the IdP's revocation endpoint with the web client's credentials and forgotten
//!   once the IdP answers 200; when the IdP fails it stays, retried after
//!   [`RETRY_AFTER`].
//!
//! The trade-off: between the session's end and the next sweep (at most
//! [`SWEEP_INTERVAL`] after the end, plus [`IDLE_GRACE`] for an idle end) the token
//! is still valid at the IdP — but usable by nobody, since only handoff has it, and
//! sealed. When the store loses the schedule entry (a sweeper that dies between its
//! claim and its re-schedule, or a store error there) the token is revoked at the
//! lineage's next revocation, or never: then it lives out its lifetime at the IdP,
//! still denied at handoff; the sealed copy goes with the key's TTL. An ephemeral
//! signing key (one instance, no key file) does not survive a restart: tokens
//! sealed before it cannot be opened after it (logged, and forgotten).

use crate::app::Handoff;
use crate::secret::{LineageId, Secret, SecretHash};
use crate::store::{StoreError, WithheldToken};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use ring::aead;
use std::sync::Arc;
use std::time::Duration;

/// How often each instance looks for due withheld tokens (also woken at once by
/// a revocation). One store script per interval and instance.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// How long after the session's absolute limit a withheld token's sealed copy is
/// kept (for retries while the IdP is unreachable).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// When the IdP could not revoke a token, how long until the next try (seconds).
pub const RETRY_AFTER: u64 = 60;

/// How long past a session's idle expiry its token is still left alone (seconds):
/// a request just before the limit may be recording its use right now.
pub const IDLE_GRACE: u64 = 2;

/// Lineages claimed per store call.
const CLAIM_BATCH: usize = 100;

/// Seals withheld refresh tokens.
pub struct SealKey(aead::LessSafeKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

fn aad(lineage: &LineageId, token: &SecretHash) -> Vec<u8> {
    format!(
        "handoff withheld refresh token v1|{}|{}",
        lineage.as_str(),
        token.hex()
    )
    .into_bytes()
}

impl SealKey {
    /// Derives the key from the transaction-cookie key (itself derived from the
    /// assertion signing key), under its own label.
    pub fn derive(tx: &crate::transaction::TxKey) -> SealKey {
        let k = tx.subkey(b"handoff withheld refresh token sealing key v1");
        SealKey(aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &k).expect("32-byte key"),
        ))
    }

    /// `base64url(nonce || ciphertext || tag)`, bound to the lineage and the token's hash.
    pub(crate) fn seal(&self, lineage: &LineageId, token: &Secret) -> String {
        let nonce = crate::secret::random_bytes::<12>();
        let mut buf = token.expose().as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad(lineage, &token.hash())),
                &mut buf,
            )
            .expect("sealing a short token cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens what `SealKey::seal` sealed for `lineage` and `token` (the hash the
    /// record is stored under); None when anything does not match.
    pub fn open(&self, lineage: &LineageId, token: &SecretHash, sealed: &str) -> Option<Secret> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < 12 + aead::CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let (nonce, rest) = raw.split_at(12);
        let mut buf = rest.to_vec();
        let plain = self
            .0
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(nonce).ok()?,
                aead::Aad::from(aad(lineage, token)),
                &mut buf,
            )
            .ok()?;
        let s = Secret::new(std::str::from_utf8(plain).ok()?);
        (s.hash() == *token).then_some(s)
    }
}

/// The RFC 7009 request that revokes `rt` as `web_client` (HTTP Basic with its
/// configured secret); None when handoff has no credentials for that client.
pub(crate) fn revocation_request(
    h: &Handoff,
    web_client: &str,
    rt: &Secret,
) -> Option<(Vec<(&'static str, String)>, Bytes)> {
    let secret = h.config.client_secrets.get(web_client)?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        form_urlencoded::byte_serialize(web_client.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect::<String>()
    ));
    let body =
        serde_urlencoded::to_string([("token", rt.expose()), ("token_type_hint", "refresh_token")])
            .expect("strings encode");
    Some((
        vec![
            ("content-type", "application/x-www-form-urlencoded".into()),
            ("authorization", format!("Basic {basic}")),
        ],
        Bytes::from(body),
    ))
}

/// What became of one revocation at the IdP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revoked {
    /// The IdP answered 200 (RFC 7009: also for a token it no longer knows).
    Yes,
    /// No credentials for the client (any more): it cannot be revoked by handoff.
    NoCredentials,
    /// The IdP failed or refused: try again later.
    Failed,
}

async fn revoke_now(h: &Handoff, web_client: &str, rt: &Secret) -> Revoked {
    let Some((headers, body)) = revocation_request(h, web_client, rt) else {
        return Revoked::NoCredentials;
    };
    let headers: Vec<(&str, String)> = headers.into_iter().collect();
    match h
        .idp
        .send(
            http::Method::POST,
            &h.config.paths.revocation,
            &headers,
            body,
        )
        .await
    {
        Ok(r) if r.status == 200 => Revoked::Yes,
        Ok(r) => {
            tracing::warn!(
                status = r.status,
                web_client,
                "identity provider refused to revoke a withheld refresh token; will retry"
            );
            Revoked::Failed
        }
        Err(e) => {
            tracing::warn!(error = %e, web_client, "could not revoke a withheld refresh token at the identity provider; will retry");
            Revoked::Failed
        }
    }
}

/// Until when the session a withheld token belongs to is alive (the Unix second
/// from which the token may be revoked), or None when it has ended.
async fn alive_until(h: &Handoff, rec: &WithheldToken) -> Result<Option<u64>, StoreError> {
    let Some(cookie) = SecretHash::from_hex(&rec.session_cookie) else {
        return Ok(None);
    };
    let now = h.clock.now_secs();
    Ok(match crate::session::current(h, &cookie).await? {
        Some((_, s)) if !s.revoked && now < s.absolute_exp && now < s.idle_exp() + IDLE_GRACE => {
            Some(s.absolute_exp.min(s.idle_exp() + IDLE_GRACE))
        }
        _ => None,
    })
}

/// Keeps `rt`, withheld from `web_client` in web session `sid` of `lineage` (bound
/// to the IdP session cookie with hash `cookie`, hex; an empty `sid`: the bound
/// session's), until that session ends,
/// and revokes it at the IdP then. Without credentials for the client there is
/// nothing to do (it is denied at handoff's token endpoint either way). When it
/// cannot be kept (no session to hold it to, a store error), it is revoked now.
pub async fn hold(
    h: &Handoff,
    lineage: &LineageId,
    sid: &str,
    cookie: Option<&str>,
    web_client: &str,
    rt: &Secret,
) {
    if !h.config.client_secrets.contains_key(web_client) {
        return;
    }
    let Some(cookie) = cookie.filter(|c| SecretHash::from_hex(c).is_some()) else {
        tracing::warn!(%lineage, sid, "withheld refresh token of no known session: revoked now");
        revoke_in_background(h, web_client, rt);
        return;
    };
    let now = h.clock.now_secs();
    let session = crate::session::current(h, &SecretHash::from_hex(cookie).expect("checked")).await;
    let sid = match &session {
        Ok(Some((_, s))) if sid.is_empty() => s.sid.clone(),
        _ => sid.to_string(),
    };
    let sid = sid.as_str();
    let (due, ttl) = match session {
        Ok(Some((_, s))) if !s.revoked => (
            s.absolute_exp.min(s.idle_exp() + IDLE_GRACE).max(now),
            Duration::from_secs(s.absolute_exp.saturating_sub(now)) + RETENTION,
        ),
        Ok(_) => (now, RETENTION),
        Err(e) => {
            tracing::warn!(error = %e, %lineage, sid, "could not keep a withheld refresh token: store unavailable; revoked now");
            revoke_in_background(h, web_client, rt);
            return;
        }
    };
    let rec = WithheldToken {
        sid: sid.to_string(),
        session_cookie: cookie.to_string(),
        web_client: web_client.to_string(),
        sealed: h.seal_key.seal(lineage, rt),
    };
    let kept = async {
        h.store
            .hold_withheld(lineage, &rt.hash(), &rec, ttl)
            .await?;
        h.store.schedule_withheld(lineage, due).await
    };
    if let Err(e) = kept.await {
        tracing::warn!(error = %e, %lineage, sid, "could not keep a withheld refresh token: store unavailable; revoked now");
        revoke_in_background(h, web_client, rt);
        return;
    }
    h.metrics
        .web_refresh_tokens
        .with_label_values(&["held_until_session_end"])
        .inc();
    tracing::info!(%lineage, sid, web_client, due, "withheld refresh token kept (sealed) until its web session ends");
    if due <= now {
        h.withheld_wake.notify_one();
    }
}

/// A web session of `lineage` ended by revocation: its withheld tokens are due now.
/// Not fatal when the store fails: the session's own due time still comes.
pub async fn session_ended(h: &Handoff, lineage: &LineageId) {
    if h.config.client_secrets.is_empty() {
        return;
    }
    match h.store.schedule_withheld(lineage, h.clock.now_secs()).await {
        Ok(()) => h.withheld_wake.notify_one(),
        Err(e) => {
            tracing::warn!(error = %e, %lineage, "could not schedule the revocation of withheld refresh tokens; they follow their session's expiry")
        }
    }
}

/// Revokes `rt` at the IdP in the background (nothing kept: for tokens of sessions
/// that are already dead, or that could not be kept).
pub(crate) fn revoke_in_background(h: &Handoff, web_client: &str, rt: &Secret) {
    let Some((headers, body)) = revocation_request(h, web_client, rt) else {
        return;
    };
    let idp = h.idp.clone();
    let path = h.config.paths.revocation.clone();
    crate::store::redis::background_runtime().spawn(async move {
        let headers: Vec<(&str, String)> = headers.into_iter().collect();
        match idp.send(http::Method::POST, &path, &headers, body).await {
            Ok(r) if r.status == 200 => tracing::info!("withheld web refresh token revoked at the identity provider"),
            Ok(r) => tracing::warn!(status = r.status, "identity provider refused to revoke a withheld refresh token"),
            Err(e) => tracing::warn!(error = %e, "could not revoke a withheld refresh token at the identity provider"),
        }
    });
}

/// Looks at a lineage's withheld tokens: revokes those whose session has ended
/// (forgetting them once the IdP confirms), and schedules the lineage again for
/// the rest. Returns how many it revoked.
pub(crate) async fn settle(h: &Handoff, lineage: &LineageId) -> Result<usize, StoreError> {
    let tokens = h.store.withheld_tokens(lineage).await?;
    if tokens.is_empty() {
        return Ok(0);
    }
    let lineage_revoked = h.store.is_lineage_revoked(lineage).await?;
    let now = h.clock.now_secs();
    let mut next: Option<u64> = None;
    let mut revoked = 0;
    for (hash, rec) in tokens {
        if !lineage_revoked {
            if let Some(until) = alive_until(h, &rec).await? {
                next = Some(next.map_or(until, |n| n.min(until)));
                continue;
            }
        }
        let outcome = match h.seal_key.open(lineage, &hash, &rec.sealed) {
            Some(rt) => revoke_now(h, &rec.web_client, &rt).await,
            None => {
                tracing::error!(%lineage, sid = %rec.sid, "a withheld refresh token cannot be unsealed (the signing key changed?); forgotten, not revoked");
                Revoked::NoCredentials
            }
        };
        match outcome {
            Revoked::Yes | Revoked::NoCredentials => {
                h.store.drop_withheld(lineage, &hash).await?;
                if outcome == Revoked::Yes {
                    revoked += 1;
                    h.metrics
                        .web_refresh_tokens
                        .with_label_values(&["revoked_at_session_end"])
                        .inc();
                    tracing::info!(%lineage, sid = %rec.sid, web_client = %rec.web_client, "withheld refresh token revoked at the identity provider: its web session ended");
                }
            }
            Revoked::Failed => {
                let retry = now + RETRY_AFTER;
                next = Some(next.map_or(retry, |n| n.min(retry)));
            }
        }
    }
    if let Some(due) = next {
        h.store.schedule_withheld(lineage, due).await?;
    }
    Ok(revoked)
}

/// One sweep: claims every due lineage and settles it. Returns how many tokens
/// were revoked. A lineage whose settling fails is scheduled again.
pub(crate) async fn sweep(h: &Handoff) -> usize {
    let mut revoked = 0;
    loop {
        let now = h.clock.now_secs();
        let due = match h.store.claim_withheld_due(now, CLAIM_BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "withheld refresh tokens: store unavailable; next sweep");
                return revoked;
            }
        };
        let n = due.len();
        for lineage in due {
            match settle(h, &lineage).await {
                Ok(r) => revoked += r,
                Err(e) => {
                    tracing::warn!(error = %e, %lineage, "could not settle withheld refresh tokens; retrying later");
                    if let Err(e) = h.store.schedule_withheld(&lineage, now + RETRY_AFTER).await {
                        tracing::error!(error = %e, %lineage, "could not reschedule withheld refresh tokens; they are revoked at the lineage's next revocation");
                    }
                }
            }
        }
        if n < CLAIM_BATCH {
            return revoked;
        }
    }
}

/// Starts the sweeper of `h` (stops when `h` is dropped).
pub fn start(h: &Arc<Handoff>) {
    if h.config.client_secrets.is_empty() {
        return;
    }
    let weak = Arc::downgrade(h);
    crate::store::redis::background_runtime().spawn(async move {
        loop {
            let Some(wake) = weak.upgrade().map(|h| h.withheld_wake.clone()) else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
                _ = wake.notified() => {}
            }
            let Some(h) = weak.upgrade() else {
                return;
            };
            sweep(&h).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_open_only_for_their_lineage_and_hash() {
        let k = SealKey::derive(&crate::transaction::TxKey::derive(b"material"));
        let l = LineageId::generate();
        let rt = Secret::new("refresh-token-value");
        let s = k.seal(&l, &rt);
        assert!(!s.contains("refresh-token-value"));
        assert_eq!(
            k.open(&l, &rt.hash(), &s).map(|t| t.expose().to_string()),
            Some("refresh-token-value".into())
        );
        assert!(k.open(&LineageId::generate(), &rt.hash(), &s).is_none());
        assert!(k.open(&l, &Secret::new("other").hash(), &s).is_none());
        let other = SealKey::derive(&crate::transaction::TxKey::derive(b"other"));
        assert!(other.open(&l, &rt.hash(), &s).is_none());
        assert_ne!(k.seal(&l, &rt), s, "a fresh nonce each time");
        for g in ["", "a", "%%", &"A".repeat(100)] {
            assert!(k.open(&l, &rt.hash(), g).is_none());
        }
    }
}
