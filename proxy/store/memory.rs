//! The embedded in-memory store: one process, same semantics as Redis.
//!
//! It is a small key-value map with per-key expiry (read through the [`Clock`]
//! seam), laid out with the same [`Keys`] as the Redis store. Each trait method
//! holds the one lock for its whole body, which is what makes it as atomic as the
//! Lua scripts of the Redis store. Expired keys are dropped lazily on access and by
//! a sweep every 1,024 writes, so memory is bounded by live state.

use super::*;
use crate::clock::SharedClock;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug)]
struct Entry {
    value: String,
    expires_ms: u64,
}

#[derive(Debug, Default)]
struct Map {
    entries: HashMap<String, Entry>,
    writes: u64,
}

impl Map {
    fn get(&mut self, key: &str, now: u64) -> Option<&str> {
        if self.entries.get(key).is_some_and(|e| e.expires_ms <= now) {
            self.entries.remove(key);
        }
        self.entries.get(key).map(|e| e.value.as_str())
    }

    fn set(&mut self, key: String, value: String, now: u64, ttl: Duration) {
        self.writes += 1;
        if self.writes % 1024 == 0 {
            self.entries.retain(|_, e| e.expires_ms > now);
        }
        let expires_ms = now.saturating_add(ttl.as_millis() as u64);
        self.entries.insert(key, Entry { value, expires_ms });
    }

    /// Removes a live key, returning its value and remaining TTL.
    fn take(&mut self, key: &str, now: u64) -> Option<(String, Duration)> {
        let e = self.entries.remove(key)?;
        (e.expires_ms > now).then(|| (e.value, Duration::from_millis(e.expires_ms - now)))
    }
}

/// Adds `member` to the comma-separated set at `key` and renews its TTL (the
/// memory store's stand-in for SADD + EXPIRE; members never contain commas).
fn add_to_set(m: &mut Map, key: String, member: &str, now: u64) {
    let current = m.get(&key, now).map(str::to_owned).unwrap_or_default();
    let mut members: Vec<&str> = current.split(',').filter(|s| !s.is_empty()).collect();
    if !members.contains(&member) {
        members.push(member);
    }
    let v = members.join(",");
    m.set(key, v, now, INDEX_TTL);
}

/// The embedded store (single instance only).
#[derive(Debug)]
pub struct MemoryStore {
    map: Mutex<Map>,
    keys: Keys,
    clock: SharedClock,
}

impl MemoryStore {
    /// An empty store reading time from `clock`.
    pub fn new(clock: SharedClock) -> Self {
        MemoryStore {
            map: Mutex::new(Map::default()),
            keys: Keys::new("ho"),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        // A panic while holding the lock cannot leave the map half-written (every
        // method finishes its writes before anything that could panic), so a
        // poisoned lock is still consistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of live keys (for tests and metrics).
    pub fn len(&self) -> usize {
        let now = self.clock.now_ms();
        self.lock()
            .entries
            .values()
            .filter(|e| e.expires_ms > now)
            .count()
    }

    /// Whether the store holds no live key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn refresh_token_info(
        &self,
        token: &SecretHash,
    ) -> Result<Option<RefreshTokenInfo>, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        match m.get(&self.keys.refresh(token), now) {
            Some(v) => decode("refresh token info", v.as_bytes()).map(Some),
            None => Ok(None),
        }
    }

    async fn record_mint(
        &self,
        stt: &SecretHash,
        ctx: &MintContext,
        refresh_tokens: &[SecretHash],
        refresh_ttl: Duration,
    ) -> Result<MintWrite, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let info = encode(&RefreshTokenInfo {
            native_client: Some(ctx.native_client_id.clone()),
            ..RefreshTokenInfo::native(ctx.lineage.clone())
        });
        for rt in refresh_tokens {
            m.set(self.keys.refresh(rt), info.clone(), now, refresh_ttl);
        }
        if m.get(&self.keys.revoked(&ctx.lineage), now).is_some() {
            return Ok(MintWrite::LineageRevoked);
        }
        m.set(
            self.keys.stt(&ctx.lineage, stt),
            encode(ctx),
            now,
            ttl_until(now, ctx.exp),
        );
        Ok(MintWrite::Stored)
    }

    async fn consume_transfer_token(
        &self,
        lineage: &LineageId,
        stt: &SecretHash,
    ) -> Result<Consumed, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let revoked = m.get(&self.keys.revoked(lineage), now).is_some();
        if let Some((v, remaining)) = m.take(&self.keys.stt(lineage, stt), now) {
            m.set(
                self.keys.used(lineage, stt),
                v.clone(),
                now,
                remaining + REPLAY_MEMORY,
            );
            let ctx = decode_mint(lineage, v.as_bytes())?;
            return Ok(Consumed::Fresh {
                ctx,
                lineage_revoked: revoked,
            });
        }
        match m.get(&self.keys.used(lineage, stt), now) {
            Some(v) => Ok(Consumed::Replayed {
                ctx: decode_mint(lineage, v.as_bytes())?,
            }),
            None => Ok(Consumed::Unknown),
        }
    }

    async fn revoke_lineage(
        &self,
        lineage: &LineageId,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        m.set(self.keys.revoked(lineage), "1".into(), now, ttl);
        let members = m
            .get(&self.keys.lineage_sessions(lineage), now)
            .map(str::to_owned)
            .unwrap_or_default();
        let mut ended = 0;
        for h in members.split(',').filter(|h| !h.is_empty()) {
            let key = format!("{}:ck:{h}", self.keys.prefix());
            if m.get(&key, now).is_some() {
                if let Some(e) = m.entries.get_mut(&key) {
                    if e.value.contains(LIVE_MARK) {
                        e.value = e.value.replacen(LIVE_MARK, REVOKED_MARK, 1);
                        ended += 1;
                    }
                }
            }
        }
        Ok(ended)
    }

    async fn lineage_sessions(
        &self,
        lineage: &LineageId,
    ) -> Result<Vec<(SecretHash, WebSession)>, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let members = m
            .get(&self.keys.lineage_sessions(lineage), now)
            .map(str::to_owned)
            .unwrap_or_default();
        let mut out = Vec::new();
        for h in members.split(',').filter(|h| !h.is_empty()) {
            let Some(hash) = SecretHash::from_hex(h) else {
                continue;
            };
            if let Some(v) = m.get(&self.keys.cookie(&hash), now) {
                out.push((hash, decode("web session", v.as_bytes())?));
            }
        }
        Ok(out)
    }

    async fn subject_lineages(&self, sub: &str) -> Result<Vec<LineageId>, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let members = m
            .get(&self.keys.subject(sub), now)
            .map(str::to_owned)
            .unwrap_or_default();
        Ok(members.split(',').filter_map(LineageId::parse).collect())
    }

    async fn record_code(
        &self,
        code: &SecretHash,
        rec: &CodeRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.lock().set(self.keys.code(code), encode(rec), now, ttl);
        Ok(())
    }

    async fn take_code(&self, code: &SecretHash) -> Result<Option<CodeRecord>, StoreError> {
        let now = self.clock.now_ms();
        let v = self.lock().take(&self.keys.code(code), now);
        v.map(|(v, _)| decode("authorization code", v.as_bytes()))
            .transpose()
    }

    async fn record_refresh_token(
        &self,
        token: &SecretHash,
        info: &RefreshTokenInfo,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.lock()
            .set(self.keys.refresh(token), encode(info), now, ttl);
        Ok(())
    }

    async fn link_idp_session(
        &self,
        idp_sid: &str,
        link: &SessionLink,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.lock()
            .set(self.keys.idp_sid(idp_sid), encode(link), now, ttl);
        Ok(())
    }

    async fn idp_session(&self, idp_sid: &str) -> Result<Option<SessionLink>, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        m.get(&self.keys.idp_sid(idp_sid), now)
            .map(|v| decode("IdP session link", v.as_bytes()))
            .transpose()
    }

    async fn publish_revocation(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn subscribe_revocations(&self, _on_event: std::sync::Arc<dyn Fn(Announcement) + Send + Sync>) {
    }

    async fn is_lineage_revoked(&self, lineage: &LineageId) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        Ok(self.lock().get(&self.keys.revoked(lineage), now).is_some())
    }

    async fn tx_hop(
        &self,
        lineage: &LineageId,
        txid: &str,
        max_hops: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        if m.get(&self.keys.revoked(lineage), now).is_some() {
            return Ok(false);
        }
        let key = self.keys.tx(lineage, txid);
        let n = m
            .get(&key, now)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
            .saturating_add(1);
        match m.entries.get_mut(&key) {
            Some(e) => e.value = n.to_string(),
            None => m.set(key, n.to_string(), now, ttl),
        }
        Ok(n <= max_hops)
    }

    async fn bind_session(
        &self,
        session: &WebSession,
        cookie: &SecretHash,
        txid: Option<&str>,
        retention: Duration,
    ) -> Result<BindOutcome, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let l = &session.lineage;
        if m.get(&self.keys.revoked(l), now).is_some() {
            return Ok(BindOutcome::LineageRevoked);
        }
        if let Some(txid) = txid {
            m.set(
                self.keys.tx(l, txid),
                TX_ENDED.to_string(),
                now,
                Duration::from_secs(120),
            );
        }
        add_to_set(&mut m, self.keys.lineage_sessions(l), &cookie.hex(), now);
        add_to_set(&mut m, self.keys.subject(&session.sub), l.as_str(), now);
        m.set(
            self.keys.cookie(cookie),
            encode(session),
            now,
            ttl_until(now, session.absolute_exp) + retention,
        );
        Ok(BindOutcome::Bound)
    }

    async fn session_by_cookie(
        &self,
        cookie: &SecretHash,
    ) -> Result<Option<WebSession>, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        m.get(&self.keys.cookie(cookie), now)
            .map(|v| decode("web session", v.as_bytes()))
            .transpose()
    }

    async fn touch_session(
        &self,
        cookie: &SecretHash,
        session: &WebSession,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let key = self.keys.cookie(cookie);
        let live = m.get(&key, now).is_some_and(|v| !v.contains(REVOKED_MARK));
        if live {
            if let Some(e) = m.entries.get_mut(&key) {
                e.value = encode(session);
            }
        }
        Ok(())
    }

    async fn revoke_session(
        &self,
        cookie: &SecretHash,
        _session: &WebSession,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let key = self.keys.cookie(cookie);
        if m.get(&key, now).is_some() {
            if let Some(e) = m.entries.get_mut(&key) {
                e.value = e.value.replacen(LIVE_MARK, REVOKED_MARK, 1);
            }
        }
        Ok(())
    }

    async fn move_session(&self, old: &SecretHash, new: &SecretHash) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let key = self.keys.cookie(old);
        if m.get(&key, now).is_some() {
            if let Some(e) = m.entries.get_mut(&key) {
                e.value =
                    e.value
                        .replacen(UNMOVED_MARK, &format!("\"moved_to\":\"{}\"", new.hex()), 1);
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
