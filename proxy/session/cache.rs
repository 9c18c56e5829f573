//! The local cache of session states (see the parent module's doc for its bound).

use crate::secret::SecretHash;
use crate::store::WebSession;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub(super) struct Cached {
    pub(super) session: Option<WebSession>,
    pub(super) fetched_ms: u64,
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
    pub(super) fn get(&self, k: &SecretHash) -> Option<Cached> {
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
    pub(super) fn put(
        &self,
        k: SecretHash,
        session: Option<WebSession>,
        now_ms: u64,
        keep_ms: u64,
    ) {
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
    pub(crate) fn forget(&self, k: &SecretHash) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(k);
        self.negative
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(k);
    }

    /// Stops trusting every entry as fresh (revocations may have been missed), but
    /// keeps them as last known states for a store outage.
    pub(crate) fn invalidate(&self, now_ms: u64) {
        self.invalidated_ms
            .fetch_max(now_ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn invalidated_ms(&self) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> WebSession {
        WebSession {
            sid: "s".into(),
            sub: "u".into(),
            lineage: crate::secret::LineageId::generate(),
            web_client: "w".into(),
            native_client: "n".into(),
            created: 0,
            absolute_exp: 1000,
            idle_secs: 60,
            last_seen: 0,
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
        c.put(live, Some(session()), 1_000, 30_000);
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
}
