//! Web sessions (SPEC §2.4, §3): enforcing the limits of sessions created by a
//! session transfer.
//!
//! A transfer session is known by the hash of the IdP's session cookie it is
//! bound to. Every request that carries one of the IdP's session cookies is
//! checked here: an unbound cookie (a session the IdP made without handoff) passes
//! untouched; a bound one past its absolute or idle limit, or revoked, is dead —
//! the gateway removes it from the request and expires it in the browser.
//!
//! Costs on the hot path: state is served from a small local cache for at most
//! `session.cache_ttl` (≤ 1 s, the revocation propagation bound), so a busy session
//! costs about one store read per second per instance, not one per request. Idle
//! time slides with use, but the store is written at most once per `idle/10`.
//!
//! When the store is unreachable, a cached state is trusted for
//! `session.outage_grace` after it was last read; past that — or with nothing
//! cached — the cookie is treated as expired (fail closed, SPEC §5).

use crate::app::Handoff;
use crate::secret::SecretHash;
use crate::store::WebSession;
use std::collections::HashMap;
use std::sync::Mutex;

/// What a session cookie is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Not bound by handoff: pass untouched.
    Unbound,
    /// A live transfer session, with the hash of the cookie its current record is under.
    Alive(SecretHash, Box<WebSession>),
    /// Expired or revoked (the reason is a metric label).
    Dead(&'static str),
}

#[derive(Debug, Clone)]
struct Cached {
    session: Option<WebSession>,
    fetched_ms: u64,
}

/// The local cache of session states, keyed by cookie hash.
#[derive(Debug, Default)]
pub struct SessionCache {
    map: Mutex<HashMap<SecretHash, Cached>>,
    /// Entries read before this (ms) are not fresh, whatever their age.
    invalidated_ms: std::sync::atomic::AtomicU64,
}

/// Entries beyond this many make the cache start over (bounded memory).
const CACHE_MAX: usize = 100_000;

impl SessionCache {
    fn get(&self, k: &SecretHash) -> Option<Cached> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(k)
            .cloned()
    }

    fn put(&self, k: SecretHash, session: Option<WebSession>, now_ms: u64) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= CACHE_MAX {
            m.clear();
        }
        m.insert(
            k,
            Cached {
                session,
                fetched_ms: now_ms,
            },
        );
    }

    /// Forgets one cookie's state (after a revocation).
    pub fn forget(&self, k: &SecretHash) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(k);
    }

    /// Stops trusting every entry as fresh (revocations may have been missed), but
    /// keeps them as last known states for a store outage.
    pub fn invalidate(&self, now_ms: u64) {
        self.invalidated_ms
            .fetch_max(now_ms, std::sync::atomic::Ordering::SeqCst);
    }

    fn invalidated_ms(&self) -> u64 {
        self.invalidated_ms
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets everything (after a revocation).
    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn judge(s: &WebSession, now: u64) -> Option<&'static str> {
    if s.revoked {
        Some("revoked")
    } else if now >= s.absolute_exp {
        Some("expired_absolute")
    } else if now >= s.idle_exp() {
        Some("expired_idle")
    } else {
        None
    }
}

/// Reads a cookie's session state: fresh from the cache, else from the store,
/// else (store down) the last known state within the outage grace.
async fn load(
    h: &Handoff,
    cookie: &SecretHash,
    now_ms: u64,
) -> Result<(Option<WebSession>, bool), &'static str> {
    let cfg = &h.config.session;
    let cached = h.sessions.get(cookie);
    let invalidated = h.sessions.invalidated_ms();
    let fresh = cached.as_ref().filter(|c| {
        c.fetched_ms > invalidated
            && now_ms.saturating_sub(c.fetched_ms) < cfg.cache_ttl.as_millis() as u64
    });
    if let Some(c) = fresh {
        return Ok((c.session.clone(), true));
    }
    let read = match h.store.session_by_cookie(cookie).await {
        // The lineage's marker too: a cascade that could not tombstone every session
        // (a timeout half-way) still ends them all.
        Ok(Some(mut s)) if !s.revoked => match h.store.is_lineage_revoked(&s.lineage).await {
            Ok(revoked) => {
                s.revoked = revoked;
                Ok(Some(s))
            }
            Err(e) => Err(e),
        },
        other => other,
    };
    match read {
        Ok(s) => {
            h.sessions.put(*cookie, s.clone(), now_ms);
            Ok((s, false))
        }
        Err(e) => {
            h.metrics
                .store_errors
                .with_label_values(&["session_by_cookie"])
                .inc();
            match cached.filter(|c| {
                now_ms.saturating_sub(c.fetched_ms) < cfg.outage_grace.as_millis() as u64
            }) {
                Some(c) => {
                    tracing::warn!(error = %e, cookie = ?cookie, "store unavailable: using the last known session state");
                    Ok((c.session, true))
                }
                None => {
                    tracing::warn!(error = %e, cookie = ?cookie, "store unavailable and no recent state: treating the session as expired");
                    Err("store_unavailable")
                }
            }
        }
    }
}

/// How many cookie rotations a lookup follows.
const MAX_MOVES: usize = 8;

/// The current record of the session a cookie hash was bound to, following the
/// IdP's cookie rotations, read from the store (no cache): for decisions that
/// must not be stale (refresh grants, revocations).
pub async fn current(
    h: &Handoff,
    cookie: &SecretHash,
) -> Result<Option<(SecretHash, WebSession)>, crate::store::StoreError> {
    let mut key = *cookie;
    for _ in 0..=MAX_MOVES {
        let Some(s) = h.store.session_by_cookie(&key).await? else {
            return Ok(None);
        };
        match s.moved_to.as_deref().and_then(SecretHash::from_hex) {
            Some(next) => key = next,
            None => return Ok(Some((key, s))),
        }
    }
    Ok(None)
}

/// Checks the session bound to the cookie with hash `cookie`, sliding its idle time.
///
/// When the IdP replaced the session's cookie (oidc-provider re-keys its session
/// after an interaction), the old cookie's record points at the new one
/// (`moved_to`): one web session, one state, whichever cookie a request carries.
/// The state judged — and touched — is always the current one.
pub async fn check(h: &Handoff, cookie: &SecretHash) -> Check {
    let now_ms = h.clock.now_ms();
    let now = now_ms / 1000;
    let mut key = *cookie;
    let (mut state, mut from_cache) = match load(h, &key, now_ms).await {
        Ok(x) => x,
        Err(reason) => return Check::Dead(reason),
    };
    for _ in 0..MAX_MOVES {
        let Some(next) = state
            .as_ref()
            .and_then(|s| s.moved_to.as_deref())
            .and_then(SecretHash::from_hex)
        else {
            break;
        };
        key = next;
        (state, from_cache) = match load(h, &key, now_ms).await {
            Ok((Some(s), c)) => (Some(s), c),
            // The successor is gone: nothing current to hold the session to.
            Ok((None, _)) => return Check::Dead("expired_absolute"),
            Err(reason) => return Check::Dead(reason),
        };
    }
    let Some(mut s) = state else {
        return Check::Unbound;
    };
    if s.moved_to.is_some() {
        // More rotations than anyone makes: refuse rather than loop.
        return Check::Dead("revoked");
    }
    if let Some(mut reason) = judge(&s, now) {
        if from_cache && reason == "expired_idle" {
            // Another instance may have seen the session used since we cached it.
            if let Ok(Some(newer)) = h.store.session_by_cookie(&key).await {
                h.sessions.put(key, Some(newer.clone()), now_ms);
                match judge(&newer, now) {
                    None if newer.moved_to.is_none() => return touch(h, &key, newer, now).await,
                    None => reason = "revoked",
                    Some(r) => reason = r,
                }
                s = newer;
            }
        }
        tracing::info!(sid = %s.sid, lineage = %s.lineage, reason, "web session ended");
        return Check::Dead(reason);
    }
    touch(h, &key, s, now).await
}

async fn touch(h: &Handoff, cookie: &SecretHash, mut s: WebSession, now: u64) -> Check {
    let throttle = (s.idle_secs / 10).max(1);
    if now.saturating_sub(s.last_seen) >= throttle {
        s.last_seen = now;
        match h.store.touch_session(cookie, &s).await {
            Ok(()) => h.sessions.put(*cookie, Some(s.clone()), h.clock.now_ms()),
            Err(e) => {
                // Not fatal: the session is alive; the next request tries again.
                h.metrics
                    .store_errors
                    .with_label_values(&["touch_session"])
                    .inc();
                tracing::debug!(error = %e, "could not record session use");
            }
        }
        h.metrics.session_touches.inc();
    }
    Check::Alive(*cookie, Box::new(s))
}

/// Revokes a session now (store and local cache).
pub async fn revoke(
    h: &Handoff,
    cookie: &SecretHash,
    s: &WebSession,
) -> Result<(), crate::store::StoreError> {
    h.store.revoke_session(cookie, s).await?;
    h.sessions.forget(cookie);
    if let Err(e) = h.store.publish_revocation().await {
        tracing::warn!(error = %e, "could not announce a revocation");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::LineageId;

    fn session(last_seen: u64, idle: u64, abs: u64) -> WebSession {
        WebSession {
            sid: "s".into(),
            sub: "u".into(),
            lineage: LineageId::generate(),
            web_client: "w".into(),
            native_client: "n".into(),
            created: 0,
            absolute_exp: abs,
            idle_secs: idle,
            last_seen,
            ip: "127.0.0.1".parse().unwrap(),
            revoked: false,
            moved_to: None,
            refresh: Default::default(),
        }
    }

    #[test]
    fn limits() {
        assert_eq!(judge(&session(100, 60, 1000), 159), None);
        assert_eq!(judge(&session(100, 60, 1000), 160), Some("expired_idle"));
        assert_eq!(
            judge(&session(990, 60, 1000), 1000),
            Some("expired_absolute")
        );
        assert_eq!(session(990, 60, 1000).expires_at(), 1000);
        assert_eq!(
            judge(
                &WebSession {
                    revoked: true,
                    ..session(100, 60, 1000)
                },
                101
            ),
            Some("revoked")
        );
    }
}
