//! Revocation (SPEC §2.6): ending what came out of a native refresh token.
//!
//! Every revocation goes through here so that each one does the same four things:
//! change the store (lineage marker, session tombstones), forget the local cache,
//! announce it to the other instances over pub/sub, whose caches then forget
//! too, and schedule the revocation at the IdP of the refresh tokens handoff
//! withheld from the ended sessions ([`crate::withheld`]). The cache's own
//! freshness bound (`session.cache_ttl`, ≤ 1 s) is the backstop when an
//! announcement is lost.

use crate::app::{Handoff, LINEAGE_TTL};
use crate::secret::{LineageId, SecretHash};
use crate::store::StoreError;

async fn announce(h: &Handoff) {
    // Not fresh any more (the next request re-reads the store), but still the
    // last known state should the store go away right now.
    h.sessions.invalidate(h.clock.now_ms() + 1);
    if let Err(e) = h.store.publish_revocation().await {
        // Not fatal: other instances see it within their cache bound anyway.
        tracing::warn!(error = %e, "could not announce a revocation");
    }
}

/// Revokes a lineage: every web session and web refresh token of it, everywhere.
pub async fn revoke_lineage(
    h: &Handoff,
    lineage: &LineageId,
    why: &'static str,
) -> Result<usize, StoreError> {
    let ended = h.store.revoke_lineage(lineage, LINEAGE_TTL).await?;
    h.metrics
        .revocations
        .with_label_values(&["lineage", why])
        .inc();
    tracing::warn!(%lineage, sessions = ended, why, "lineage revoked");
    announce(h).await;
    crate::withheld::session_ended(h, lineage).await;
    Ok(ended)
}

/// Revokes one web session by handoff's session id.
pub async fn revoke_session(
    h: &Handoff,
    lineage: &LineageId,
    sid: &str,
    why: &'static str,
) -> Result<bool, StoreError> {
    let sessions = h.store.lineage_sessions(lineage).await?;
    let mut found = false;
    for (hash, s) in sessions.iter().filter(|(_, s)| s.sid == sid) {
        h.store.revoke_session(hash, s).await?;
        found = true;
    }
    if found {
        h.metrics
            .revocations
            .with_label_values(&["session", why])
            .inc();
        tracing::warn!(%lineage, sid, why, "web session revoked");
        announce(h).await;
        crate::withheld::session_ended(h, lineage).await;
    }
    Ok(found)
}

/// Revokes the session bound to an IdP session cookie hash.
pub(crate) async fn revoke_cookie(
    h: &Handoff,
    cookie: &SecretHash,
    why: &'static str,
) -> Result<bool, StoreError> {
    // The session's current record (the IdP may have rotated the cookie since).
    let Some((current, s)) = crate::session::current(h, cookie).await? else {
        return Ok(false);
    };
    h.store.revoke_session(&current, &s).await?;
    if current != *cookie {
        h.store.revoke_session(cookie, &s).await?;
    }
    h.metrics
        .revocations
        .with_label_values(&["session", why])
        .inc();
    tracing::warn!(lineage = %s.lineage, sid = %s.sid, why, "web session revoked");
    announce(h).await;
    crate::withheld::session_ended(h, &s.lineage).await;
    Ok(true)
}

/// Revokes every web session of a subject (all its lineages' sessions); with
/// `lineages`, the lineages themselves too (no more mints from them).
pub(crate) async fn revoke_subject(
    h: &Handoff,
    sub: &str,
    lineages: bool,
    why: &'static str,
) -> Result<usize, StoreError> {
    let mut ended = 0;
    let all = h.store.subject_lineages(sub).await?;
    for l in &all {
        let l = l.clone();
        if lineages {
            ended += h.store.revoke_lineage(&l, LINEAGE_TTL).await?;
        } else {
            for (hash, s) in h.store.lineage_sessions(&l).await? {
                if !s.revoked {
                    h.store.revoke_session(&hash, &s).await?;
                    ended += 1;
                }
            }
        }
    }
    h.metrics
        .revocations
        .with_label_values(&["subject", why])
        .inc();
    tracing::warn!(sessions = ended, why, "subject's transfer sessions revoked");
    announce(h).await;
    for l in &all {
        crate::withheld::session_ended(h, l).await;
    }
    Ok(ended)
}
