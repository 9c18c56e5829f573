//! The embedded in-memory store: one process, same semantics as Redis.
//!
//! It is a small key-value map with per-key expiry (read through the `Clock`
//! seam), laid out with the same [`Keys`] as the Redis store. Each trait method
//! holds the one lock for its whole body, which is what makes it as atomic as the
//! Lua scripts of the Redis store. Expired keys are dropped lazily on access and by
//! a sweep every 1,024 writes, so memory is bounded by live state.
//!
//! It also has a hard cap on the number of entries ([`DEFAULT_MAX_ENTRIES`] unless
//! configured): when the map is full even after dropping expired entries, a write
//! that would add keys fails with a [`StoreError`] (callers fail closed: mint
//! answers 503, redemption falls back to an ordinary login) and changes nothing.
//! Nothing live is ever evicted to make room: revocation markers, consumed-token
//! markers and sessions are security state. Lineage revocations are the one write
//! the cap does not refuse: refusing one would leave the lineage's sessions alive;
//! they are bounded by the lineages that exist (each one is revoked under one key).

use super::*;
use crate::clock::SharedClock;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug)]
struct Entry {
    value: String,
    expires_ms: u64,
}

/// The default cap on the number of entries of the memory store (about a few
/// hundred MB of small records at most).
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// While full, expired entries are swept at most this often (a sweep walks the
/// whole map under the lock; a flood of refused writes must not turn into a flood
/// of sweeps).
const FULL_SWEEP_INTERVAL_MS: u64 = 1000;

#[derive(Debug)]
struct Map {
    entries: HashMap<String, Entry>,
    writes: u64,
    max_entries: usize,
    last_full_sweep_ms: Option<u64>,
    /// The schedule of withheld refresh tokens (Redis: the sorted set
    /// [`Keys::withheld_due`]): (due, lineage) in due order, and each lineage's due.
    /// Bounded by the lineages holding withheld tokens; an entry leaves when claimed.
    withheld_due: std::collections::BTreeSet<(u64, String)>,
    withheld_due_of: HashMap<String, u64>,
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

    /// Makes sure `keys` can be written without going over the cap: counts those not
    /// present, sweeps expired entries if they would not fit (at most once per
    /// [`FULL_SWEEP_INTERVAL_MS`]), and refuses — before anything is written — if
    /// they still do not. Never evicts a live entry.
    fn room(&mut self, keys: &[&str], now: u64) -> Result<(), StoreError> {
        let new = keys
            .iter()
            .filter(|k| !self.entries.contains_key(**k))
            .count();
        if self.entries.len() + new <= self.max_entries {
            return Ok(());
        }
        let due = self
            .last_full_sweep_ms
            .is_none_or(|t| now.saturating_sub(t) >= FULL_SWEEP_INTERVAL_MS);
        if due {
            self.last_full_sweep_ms = Some(now);
            self.entries.retain(|_, e| e.expires_ms > now);
            let new = keys
                .iter()
                .filter(|k| !self.entries.contains_key(**k))
                .count();
            if self.entries.len() + new <= self.max_entries {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "memory store full ({} entries, max_entries = {})",
            self.entries.len(),
            self.max_entries
        )))
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
    /// Writes one record under `key` (refused, changing nothing, when full).
    fn put_one(&self, key: String, value: String, ttl: Duration) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        m.room(&[&key], now)?;
        m.set(key, value, now, ttl);
        Ok(())
    }

    /// An empty store reading time from `clock`, capped at [`DEFAULT_MAX_ENTRIES`].
    pub fn new(clock: SharedClock) -> Self {
        Self::with_max_entries(clock, DEFAULT_MAX_ENTRIES)
    }

    /// An empty store reading time from `clock` that holds at most `max_entries`
    /// entries (at least 1): past that, writes that would add keys fail.
    pub fn with_max_entries(clock: SharedClock, max_entries: usize) -> Self {
        MemoryStore {
            map: Mutex::new(Map {
                entries: HashMap::new(),
                writes: 0,
                max_entries: max_entries.max(1),
                last_full_sweep_ms: None,
                withheld_due: Default::default(),
                withheld_due_of: HashMap::new(),
            }),
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
        let stt_key = self.keys.stt(&ctx.lineage, stt);
        let rt_keys: Vec<String> = refresh_tokens
            .iter()
            .map(|rt| self.keys.refresh(rt))
            .collect();
        let mut all: Vec<&str> = rt_keys.iter().map(String::as_str).collect();
        all.push(&stt_key);
        m.room(&all, now)?;
        let info = encode(&RefreshTokenInfo {
            native_client: Some(ctx.native_client_id.clone()),
            ..RefreshTokenInfo::native(ctx.lineage.clone())
        });
        for k in rt_keys {
            m.set(k, info.clone(), now, refresh_ttl);
        }
        if m.get(&self.keys.revoked(&ctx.lineage), now).is_some() {
            return Ok(MintWrite::LineageRevoked);
        }
        m.set(stt_key, encode(ctx), now, ttl_until(now, ctx.exp));
        Ok(MintWrite::Stored)
    }

    async fn consume_transfer_token(
        &self,
        lineage: &LineageId,
        stt: &SecretHash,
        web_client: &str,
    ) -> Result<Consumed, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let revoked = m.get(&self.keys.revoked(lineage), now).is_some();
        // Taking the token frees the entry its marker then takes: never over the cap.
        if let Some((v, remaining)) = m.take(&self.keys.stt(lineage, stt), now) {
            m.set(
                self.keys.used(lineage, stt),
                encode_used(&v, web_client),
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
            Some(v) => {
                let (ctx, first_web_client) = decode_used(lineage, v.as_bytes())?;
                Ok(Consumed::Replayed {
                    ctx,
                    first_web_client,
                })
            }
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
        // Never refused for capacity (see the module doc).
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
        self.put_one(self.keys.code(code), encode(rec), ttl)
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
        self.put_one(self.keys.refresh(token), encode(info), ttl)
    }

    async fn link_idp_session(
        &self,
        idp_sid: &str,
        link: &SessionLink,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_one(self.keys.idp_sid(idp_sid), encode(link), ttl)
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
        m.room(&[&key], now)?;
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
        let keys = [
            self.keys.tx(l, txid.unwrap_or("-")),
            self.keys.lineage_sessions(l),
            self.keys.subject(&session.sub),
            self.keys.cookie(cookie),
        ];
        let n = if txid.is_some() { 0 } else { 1 };
        let wanted: Vec<&str> = keys[n..].iter().map(String::as_str).collect();
        m.room(&wanted, now)?;
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

    async fn expire_refresh_token(
        &self,
        token: &SecretHash,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let key = self.keys.refresh(token);
        if m.get(&key, now).is_some() {
            if let Some(e) = m.entries.get_mut(&key) {
                e.expires_ms = e.expires_ms.min(now.saturating_add(ttl.as_millis() as u64));
            }
        }
        Ok(())
    }

    async fn remember_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let key = self.keys.once(name);
        let mut m = self.lock();
        if m.get(&key, now).is_some() {
            return Ok(false);
        }
        m.room(&[&key], now)?;
        m.set(key, "1".into(), now, ttl);
        Ok(true)
    }

    async fn forget_once(&self, name: &str) -> Result<(), StoreError> {
        let key = self.keys.once(name);
        self.lock().entries.remove(&key);
        Ok(())
    }

    async fn hold_withheld(
        &self,
        lineage: &LineageId,
        token: &SecretHash,
        rec: &WithheldToken,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let key = self.keys.withheld(lineage);
        let mut m = self.lock();
        m.room(&[&key], now)?;
        let (mut all, left) = match m.take(&key, now) {
            Some((v, left)) => (
                decode::<HashMap<String, WithheldToken>>("withheld tokens", v.as_bytes())?,
                left,
            ),
            None => (HashMap::new(), Duration::ZERO),
        };
        all.insert(token.hex(), rec.clone());
        m.set(key, encode(&all), now, ttl.max(left));
        Ok(())
    }

    async fn withheld_tokens(
        &self,
        lineage: &LineageId,
    ) -> Result<Vec<(SecretHash, WithheldToken)>, StoreError> {
        let now = self.clock.now_ms();
        let mut m = self.lock();
        let Some(v) = m.get(&self.keys.withheld(lineage), now) else {
            return Ok(Vec::new());
        };
        let all: HashMap<String, WithheldToken> = decode("withheld tokens", v.as_bytes())?;
        Ok(all
            .into_iter()
            .filter_map(|(h, r)| SecretHash::from_hex(&h).map(|h| (h, r)))
            .collect())
    }

    async fn drop_withheld(
        &self,
        lineage: &LineageId,
        token: &SecretHash,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let key = self.keys.withheld(lineage);
        let mut m = self.lock();
        let Some((v, left)) = m.take(&key, now) else {
            return Ok(());
        };
        let mut all: HashMap<String, WithheldToken> = decode("withheld tokens", v.as_bytes())?;
        all.remove(&token.hex());
        if !all.is_empty() {
            m.set(key, encode(&all), now, left);
        }
        Ok(())
    }

    async fn schedule_withheld(
        &self,
        lineage: &LineageId,
        due_secs: u64,
    ) -> Result<(), StoreError> {
        let mut m = self.lock();
        let l = lineage.as_str().to_string();
        match m.withheld_due_of.get(&l).copied() {
            Some(d) if d <= due_secs => {}
            old => {
                if let Some(d) = old {
                    m.withheld_due.remove(&(d, l.clone()));
                }
                m.withheld_due.insert((due_secs, l.clone()));
                m.withheld_due_of.insert(l, due_secs);
            }
        }
        Ok(())
    }

    async fn claim_withheld_due(
        &self,
        now_secs: u64,
        max: usize,
    ) -> Result<Vec<LineageId>, StoreError> {
        let mut m = self.lock();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((d, l)) = m.withheld_due.first().cloned() else {
                break;
            };
            if d > now_secs {
                break;
            }
            m.withheld_due.remove(&(d, l.clone()));
            m.withheld_due_of.remove(&l);
            out.extend(LineageId::parse(&l));
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
