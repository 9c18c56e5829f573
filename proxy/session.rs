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
///
/// Two maps, so that cookies handoff never bound (which anyone can invent by the
/// thousand) cannot push out the states of real sessions: a negative result never
/// evicts a positive one. Each map is bounded and makes room by age — entries past
/// the outage grace (useless even as a last known state) go first, then the oldest
/// — never by starting over.
#[derive(Debug, Default)]
pub struct SessionCache {
    map: Mutex<HashMap<SecretHash, Cached>>,
    negative: Mutex<HashMap<SecretHash, Cached>>,
    /// Entries read before this (ms) are not fresh, whatever their age.
    invalidated_ms: std::sync::atomic::AtomicU64,
}

/// Most session states cached (bounded memory: ~300 B each).
const CACHE_MAX: usize = 100_000;
/// Most "not bound" results cached.
const NEGATIVE_MAX: usize = 20_000;

/// Makes room in `m` for one more entry: drops entries older than `keep_ms`, then,
/// if still full, the oldest one. False when nothing could be dropped.
fn make_room(m: &mut HashMap<SecretHash, Cached>, max: usize, now_ms: u64, keep_ms: u64) -> bool {
    if m.len() < max {
        return true;
    }
    m.retain(|_, c| now_ms.saturating_sub(c.fetched_ms) < keep_ms);
    if m.len() < max {
        return true;
    }
    let oldest = m.iter().min_by_key(|(_, c)| c.fetched_ms).map(|(k, _)| *k);
    match oldest {
        Some(k) => {
            m.remove(&k);
            true
        }
        None => false,
    }
}

impl SessionCache {
    fn get(&self, k: &SecretHash) -> Option<Cached> {
        let hit = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(k)
            .cloned();
        hit.or_else(|| {
            self.negative
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(k)
                .cloned()
        })
    }

    /// Caches a state read at `now_ms`; `keep_ms` is how long an entry is worth
    /// keeping at all (the outage grace).
    fn put(&self, k: SecretHash, session: Option<WebSession>, now_ms: u64, keep_ms: u64) {
        let entry = Cached {
            session,
            fetched_ms: now_ms,
        };
        if entry.session.is_some() {
            self.negative
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&k);
            let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if m.contains_key(&k) || make_room(&mut m, CACHE_MAX, now_ms, keep_ms) {
                m.insert(k, entry);
            }
        } else {
            self.map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&k);
            let mut m = self.negative.lock().unwrap_or_else(|p| p.into_inner());
            if m.contains_key(&k) || make_room(&mut m, NEGATIVE_MAX, now_ms, keep_ms.min(1_000)) {
                m.insert(k, entry);
            }
        }
    }

    /// How many states are cached (positive, negative).
    pub fn len(&self) -> (usize, usize) {
        (
            self.map.lock().unwrap_or_else(|p| p.into_inner()).len(),
            self.negative
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
        )
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// Forgets one cookie's state (after a revocation).
    pub fn forget(&self, k: &SecretHash) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(k);
        self.negative
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(k);
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
        self.negative
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

fn grace_ms(h: &Handoff) -> u64 {
    (h.config.session.outage_grace.as_millis() as u64)
        .max(h.config.session.cache_ttl.as_millis() as u64)
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
            h.sessions.put(*cookie, s.clone(), now_ms, grace_ms(h));
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
                h.sessions
                    .put(key, Some(newer.clone()), now_ms, grace_ms(h));
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
            Ok(()) => h
                .sessions
                .put(*cookie, Some(s.clone()), h.clock.now_ms(), grace_ms(h)),
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
    crate::withheld::session_ended(h, &s.lineage).await;
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
    fn unbound_floods_never_evict_live_states() {
        let c = SessionCache::default();
        let live = SecretHash::of(b"live");
        c.put(live, Some(session(0, 60, 1000)), 1_000, 30_000);
        for i in 0..(NEGATIVE_MAX + 500) {
            c.put(
                SecretHash::of(format!("junk{i}").as_bytes()),
                None,
                1_000 + i as u64,
                30_000,
            );
        }
        assert!(
            c.get(&live).and_then(|e| e.session).is_some(),
            "the live state survived"
        );
        let (pos, neg) = c.len();
        assert_eq!(pos, 1);
        assert!(neg <= NEGATIVE_MAX, "{neg}");
    }

    #[test]
    fn a_full_cache_makes_room_by_age() {
        let mut m = HashMap::new();
        for i in 0..10u64 {
            m.insert(
                SecretHash::of(&i.to_be_bytes()),
                Cached {
                    session: None,
                    fetched_ms: i,
                },
            );
        }
        assert!(make_room(&mut m, 10, 100, 1_000));
        assert_eq!(m.len(), 9, "one entry, the oldest, made room");
        assert!(!m.contains_key(&SecretHash::of(&0u64.to_be_bytes())));
        assert!(make_room(&mut m, 9, 2_000, 1_000));
        assert!(m.is_empty(), "stale entries go first");
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
