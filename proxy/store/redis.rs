//! The Redis store.
//!
//! One `redis::aio::ConnectionManager` multiplexes every operation over one
//! connection and reconnects by itself; each operation is bounded by the
//! configured timeout (default 50 ms), after which the caller fails closed. The
//! manager lives on a small runtime of its own (`background_runtime`) so that
//! its connection task outlives any one of pingora's worker runtimes.
//!
//! After an outage the first request must not pay for the dead connection: a
//! health task checks the connection every 100 ms and so replaces it before a
//! request needs it, and an operation that fails on the connection is sent once
//! more (within its timeout) when that is safe — always for the idempotent ones,
//! and for the others only when the error proves Redis did not apply it.
//!
//! Multi-key steps are Lua scripts whose keys share the lineage hash tag, so each
//! is one round trip, atomic, and valid on Redis Cluster.

use super::*;
use crate::clock::SharedClock;
use ::redis::aio::ConnectionManager;
use ::redis::sentinel::{SentinelClient, SentinelServerType};
use ::redis::{AsyncCommands, Script};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::OnceLock;

/// Checks the lineage is not revoked and stores the STT record, atomically.
/// KEYS: stt, revoked. ARGV: record, ttl in ms.
const RECORD_MINT: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Consumes an STT: GET + DEL, leave a replay marker that lives as long as the
/// token would have plus the replay memory, and report the lineage's revocation.
/// Because it is one script, two redemptions of one token can never both see it.
/// The marker is `{"w":<web client>,"m":<record>}`: it remembers the web client of
/// this first consumption, which is what a replay's policy is read from.
/// KEYS: stt, used, revoked. ARGV: replay memory in ms, web client as JSON.
const CONSUME: &str = r#"
local revoked = redis.call('EXISTS', KEYS[3])
local v = redis.call('GET', KEYS[1])
if v then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 0 then pttl = 0 end
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '{"w":' .. ARGV[2] .. ',"m":' .. v .. '}', 'PX', pttl + tonumber(ARGV[1]))
  return {1, v, revoked}
end
local u = redis.call('GET', KEYS[2])
if u then return {2, u, revoked} end
return {0, '', revoked}
"#;

/// Counts a login-transaction hop. KEYS: tx, revoked. ARGV: max hops, ttl ms.
const TX_HOP: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 0 end
return 1
"#;

/// The lineage-slot half of binding a session: refuse if revoked, index the
/// cookie hash under the lineage, end the transaction. KEYS: revoked, sess, tx
/// (tx may be a dummy). ARGV: cookie hash, index ttl s, end tx (0/1), tx-ended value.
const BIND_LINEAGE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if ARGV[3] == '1' then redis.call('SET', KEYS[3], ARGV[4], 'EX', 120) end
return 1
"#;

/// Records session use: never over a tombstone, never recreating a gone key.
/// KEYS: ck. ARGV: new record.
const TOUCH: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v or string.find(v, '"revoked":true', 1, true) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
return 1
"#;

/// Turns a session record into a tombstone in place, keeping its TTL (the flag is
/// always serialized, so flipping its text is exact). KEYS: ck.
const REVOKE_SESSION: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local t, n = string.gsub(v, '"revoked":false', '"revoked":true', 1)
if n == 0 then return 0 end
redis.call('SET', KEYS[1], t, 'KEEPTTL')
return 1
"#;

/// Points an old session record at its successor, keeping its TTL. KEYS: ck. ARGV: new hash.
const MOVE_SESSION: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local t, n = string.gsub(v, '"moved_to":null', '"moved_to":"' .. ARGV[1] .. '"', 1)
if n == 0 then return 0 end
redis.call('SET', KEYS[1], t, 'KEEPTTL')
return 1
"#;

/// Shortens a key's TTL to at most ARGV[1] ms, never lengthening it, never
/// creating the key. KEYS: rt. ARGV: ttl ms.
const SHORTEN_TTL: &str = r#"
local t = redis.call('PTTL', KEYS[1])
if t == -2 then return 0 end
if t < 0 or t > tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
"#;

/// Keeps a withheld refresh token; the hash lives at least ARGV[3] ms.
/// KEYS: wh. ARGV: field, record, ttl ms.
const HOLD_WITHHELD: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"#;

/// Schedules a lineage's withheld tokens, only ever bringing the due time forward.
/// KEYS: whdue. ARGV: lineage, due s, index ttl ms.
const SCHEDULE_WITHHELD: &str = r#"
local d = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not d) or tonumber(d) > tonumber(ARGV[2]) then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// Claims the due lineages (read and removed in one step: one claimer each).
/// KEYS: whdue. ARGV: now s, max.
const CLAIM_WITHHELD: &str = r#"
local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #m > 0 then redis.call('ZREM', KEYS[1], unpack(m)) end
return m
"#;

/// The lineage-slot half of a cascade: mark revoked, return the bound cookie
/// hashes. KEYS: revoked, sess. ARGV: ttl s.
const REVOKE_LINEAGE: &str = r#"
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return redis.call('SMEMBERS', KEYS[2])
"#;

/// A process-wide runtime for store connections (two threads).
pub(crate) fn background_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("handoff-store")
            .enable_all()
            .build()
            .expect("cannot start the store runtime")
    })
}

/// The Redis store.
pub struct RedisStore {
    conn: RedisConn,
    keys: Keys,
    timeout: Duration,
    clock: SharedClock,
    consume: Script,
    tx_hop: Script,
    bind_lineage: Script,
    touch: Script,
    revoke_session: Script,
    revoke_lineage: Script,
    move_session: Script,
    shorten_ttl: Script,
    hold_withheld: Script,
    schedule_withheld: Script,
    claim_withheld: Script,
    source: Source,
    _health: Health,
}

/// Where connections come from: one address, or whatever master Sentinel names.
#[derive(Clone)]
enum Source {
    Direct(::redis::Client),
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

impl Source {
    /// A client for the current master.
    async fn client(&self) -> ::redis::RedisResult<::redis::Client> {
        match self {
            Source::Direct(c) => Ok(c.clone()),
            Source::Sentinel(s) => s.lock().await.async_get_client().await,
        }
    }
}

fn manager_config(timeout: Duration) -> ::redis::aio::ConnectionManagerConfig {
    ::redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(500))
}

/// How often the health task checks the command connection. A dead connection
/// (Redis restarted while idle) or a failed reconnect (Redis was down at the last
/// attempt) is replaced by the time the next request needs it, at most this long
/// after Redis answers again.
const HEALTH_INTERVAL: Duration = Duration::from_millis(100);

/// Sentinel is not asked again within this long of the last time (a storm of
/// failing requests during an outage must not become a storm of lookups).
const RESOLVE_GAP: Duration = Duration::from_millis(50);

/// Whether an operation may be sent a second time after a connection-level
/// failure. A retry stays inside the operation's one timeout.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Retry {
    /// Running it twice has the effect of running it once (reads, SETs of the
    /// same value, the idempotent scripts): retried after any connection-level
    /// error, even when the first attempt may have executed.
    Idempotent,
    /// Not safe to run twice (consuming an STT — a second run reports a replay —,
    /// taking a code, counting a hop): retried only when the error proves the
    /// request was not applied (the connection was refused, so nothing was sent;
    /// or a demoted master refused the write with `READONLY`).
    IfNotApplied,
}

/// The error proves Redis did not apply the request.
fn not_applied(e: &::redis::RedisError) -> bool {
    e.is_connection_refusal() || e.code() == Some("READONLY")
}

/// The connection failed (as opposed to Redis answering with an error, or the
/// time running out).
fn connection_level(e: &::redis::RedisError) -> bool {
    !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped())
}

impl Retry {
    fn allows(self, e: &::redis::RedisError) -> bool {
        not_applied(e) || (self == Retry::Idempotent && connection_level(e))
    }
}

/// The connection every operation uses, with the retry rule of the operation.
/// Direct: a reconnecting [`ConnectionManager`]. Sentinel: a manager for the
/// master Sentinel named last; when an operation fails as if the master were
/// gone (connection errors, or `READONLY` from a demoted master after a
/// failover), Sentinel is asked again and, where the retry rule allows, the
/// operation is sent once more to the new master. A background health task
/// ([`RedisStore::health`]) keeps the connection fresh between requests.
#[derive(Clone)]
struct RedisConn {
    link: Link,
    retry: Retry,
}

#[derive(Clone)]
enum Link {
    Direct(ConnectionManager),
    Sentinel(Arc<SentinelConn>),
}

impl RedisConn {
    /// The same connection, for an operation that may be retried after any
    /// connection-level error.
    fn idempotent(&self) -> RedisConn {
        RedisConn {
            link: self.link.clone(),
            retry: Retry::Idempotent,
        }
    }

    /// Sends with `send`, and once more if the first attempt failed in a way the
    /// retry rule allows. (The manager has already started replacing a failed
    /// connection; the second attempt waits for the new one.)
    async fn send<'a, T>(
        &'a self,
        send: impl Fn(ConnectionManager) -> ::redis::RedisFuture<'a, T> + Send + 'a,
    ) -> ::redis::RedisResult<T> {
        match &self.link {
            Link::Direct(m) => match send(m.clone()).await {
                Err(e) if self.retry.allows(&e) => {
                    tracing::debug!(error = %e, "Redis: connection failed; sending again");
                    send(m.clone()).await
                }
                r => r,
            },
            Link::Sentinel(s) => {
                let (used, m) = s.current_manager().await?;
                let e = match send(m).await {
                    Err(e) if master_gone(&e) => e,
                    r => return r,
                };
                if !self.retry.allows(&e) {
                    s.re_resolve(used);
                    return Err(e);
                }
                tracing::debug!(error = %e, "Redis Sentinel: master gone; asking again and sending again");
                s.resolve_unless_replaced(&used).await;
                let (used, m) = s.current_manager().await?;
                let r = send(m).await;
                if r.as_ref().is_err_and(master_gone) {
                    s.re_resolve(used);
                }
                r
            }
        }
    }
}

type Current = Arc<Option<ConnectionManager>>;

struct SentinelConn {
    current: ArcSwap<Option<ConnectionManager>>,
    sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
    /// When Sentinel was last asked (see [`RESOLVE_GAP`]).
    asked: std::sync::Mutex<Option<std::time::Instant>>,
    timeout: Duration,
}

impl SentinelConn {
    /// Asks Sentinel for the master and connects to it — unless `failed` (the
    /// manager an operation just saw fail) was replaced meanwhile, or Sentinel
    /// was asked a moment ago. Lookups are serialized.
    async fn resolve_unless_replaced(&self, failed: &Current) {
        let mut sentinel = self.sentinel.lock().await;
        if !Arc::ptr_eq(&self.current.load_full(), failed) {
            return;
        }
        {
            let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
            if asked.is_some_and(|t| t.elapsed() < RESOLVE_GAP) {
                return;
            }
            *asked = Some(std::time::Instant::now());
        }
        let client = match sentinel.async_get_client().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "Redis Sentinel: cannot find the master");
                return;
            }
        };
        // (Still under the lock: whoever waits on it sees the new manager.)
        match ConnectionManager::new_lazy_with_config(client, manager_config(self.timeout)) {
            Ok(m) => {
                self.current.store(Arc::new(Some(m)));
                tracing::info!("Redis Sentinel: connected to the current master");
            }
            Err(e) => tracing::warn!(error = %e, "Redis Sentinel: cannot connect to the master"),
        }
        drop(sentinel);
    }

    /// [`Self::resolve_unless_replaced`] in the background.
    fn re_resolve(self: &Arc<Self>, failed: Current) {
        let this = self.clone();
        background_runtime().spawn(async move { this.resolve_unless_replaced(&failed).await });
    }

    /// The manager for the current master, asking Sentinel now when none is known
    /// yet (at start, or when every lookup so far failed).
    async fn current_manager(&self) -> ::redis::RedisResult<(Current, ConnectionManager)> {
        let current = self.current.load_full();
        if let Some(m) = current.as_ref() {
            return Ok((current.clone(), m.clone()));
        }
        self.resolve_unless_replaced(&current).await;
        let current = self.current.load_full();
        match current.as_ref() {
            Some(m) => Ok((current.clone(), m.clone())),
            None => Err(::redis::RedisError::from((
                ::redis::ErrorKind::Io,
                "Redis Sentinel: no master known",
            ))),
        }
    }

    /// One health check: the current master still answers, as a master (a
    /// demoted one answers PING too, but not writes). Otherwise Sentinel is asked
    /// again.
    async fn check(&self) -> ::redis::RedisResult<()> {
        let (used, mut m) = self.current_manager().await?;
        let role = ::redis::cmd("ROLE")
            .query_async::<Vec<::redis::Value>>(&mut m)
            .await
            .and_then(|v| {
                let role = v
                    .first()
                    .and_then(|r| ::redis::from_redis_value_ref::<String>(r).ok());
                match role.as_deref() {
                    Some("master") => Ok(()),
                    _ => Err(::redis::RedisError::from((
                        ::redis::ErrorKind::Io,
                        "Redis Sentinel: the known master is no master",
                    ))),
                }
            });
        if role.is_err() {
            self.resolve_unless_replaced(&used).await;
        }
        role
    }
}

fn master_gone(e: &::redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.code() == Some("READONLY")
}

impl ::redis::aio::ConnectionLike for RedisConn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a ::redis::Cmd,
    ) -> ::redis::RedisFuture<'a, ::redis::Value> {
        let this = &*self;
        Box::pin(this.send(move |mut m| Box::pin(async move { m.send_packed_command(cmd).await })))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> ::redis::RedisFuture<'a, Vec<::redis::Value>> {
        let this = &*self;
        Box::pin(this.send(move |mut m| {
            Box::pin(async move { m.send_packed_commands(pipeline, offset, count).await })
        }))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The health task of one store; stopped with it.
struct Health(tokio::task::JoinHandle<()>);

impl Drop for Health {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects lazily to `url` (the first operation connects; a Redis that is down
    /// at start makes operations fail, not the start).
    pub fn new(
        url: &str,
        key_prefix: &str,
        timeout: Duration,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let client = ::redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad Redis URL ({:?})", e.kind())))?;
        let source = Source::Direct(client.clone());
        let _guard = background_runtime().enter();
        let conn = Link::Direct(
            ConnectionManager::new_lazy_with_config(client, manager_config(timeout))
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        );
        Ok(Self::with(conn, source, key_prefix, timeout, clock))
    }

    /// Connects through Redis Sentinel: `sentinels` are `redis://host:port` URLs of
    /// Sentinel nodes, `master` the monitored service name. The master is looked up
    /// lazily and again after every failure that looks like a failover.
    pub fn with_sentinel(
        sentinels: &[String],
        master: &str,
        key_prefix: &str,
        timeout: Duration,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let client = SentinelClient::build(
            sentinels.to_vec(),
            master.to_string(),
            None,
            SentinelServerType::Master,
        )
        .map_err(|e| {
            StoreError::Unavailable(format!("bad Sentinel configuration ({:?})", e.kind()))
        })?;
        let sentinel = Arc::new(tokio::sync::Mutex::new(client));
        let conn = Arc::new(SentinelConn {
            current: ArcSwap::from_pointee(None),
            sentinel: sentinel.clone(),
            asked: std::sync::Mutex::new(None),
            timeout,
        });
        conn.re_resolve(conn.current.load_full());
        Ok(Self::with(
            Link::Sentinel(conn),
            Source::Sentinel(sentinel),
            key_prefix,
            timeout,
            clock,
        ))
    }

    fn with(
        link: Link,
        source: Source,
        key_prefix: &str,
        timeout: Duration,
        clock: SharedClock,
    ) -> Self {
        let _health = Self::health(link.clone(), timeout);
        RedisStore {
            conn: RedisConn {
                link,
                retry: Retry::IfNotApplied,
            },
            keys: Keys::new(key_prefix),
            timeout,
            clock,
            consume: Script::new(CONSUME),
            tx_hop: Script::new(TX_HOP),
            bind_lineage: Script::new(BIND_LINEAGE),
            touch: Script::new(TOUCH),
            revoke_session: Script::new(REVOKE_SESSION),
            revoke_lineage: Script::new(REVOKE_LINEAGE),
            move_session: Script::new(MOVE_SESSION),
            shorten_ttl: Script::new(SHORTEN_TTL),
            hold_withheld: Script::new(HOLD_WITHHELD),
            schedule_withheld: Script::new(SCHEDULE_WITHHELD),
            claim_withheld: Script::new(CLAIM_WITHHELD),
            source,
            _health,
        }
    }

    /// The health task: every [`HEALTH_INTERVAL`], a PING (Direct) or ROLE
    /// (Sentinel) on the command connection. A failure makes the manager start a
    /// new connection (and, through Sentinel, asks for the master again), so
    /// after an outage the connection is back before a request needs it — the
    /// manager would otherwise hand the next request the error of its last
    /// failed reconnect, or the dead connection of before the outage.
    fn health(link: Link, timeout: Duration) -> Health {
        let bound = timeout.max(Duration::from_millis(250));
        Health(background_runtime().spawn(async move {
            let mut healthy = true;
            loop {
                tokio::time::sleep(HEALTH_INTERVAL).await;
                let check = async {
                    match &link {
                        Link::Direct(m) => {
                            let mut m = m.clone();
                            ::redis::cmd("PING")
                                .query_async::<String>(&mut m)
                                .await
                                .map(drop)
                        }
                        Link::Sentinel(s) => s.check().await,
                    }
                };
                let r = match tokio::time::timeout(bound, check).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                };
                match r {
                    Ok(()) if !healthy => {
                        healthy = true;
                        tracing::info!("Redis store connection re-established");
                    }
                    Err(e) if healthy => {
                        healthy = false;
                        tracing::warn!(error = %e, "Redis store connection lost; reconnecting");
                    }
                    _ => {}
                }
            }
        }))
    }

    async fn run<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(StoreError::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(StoreError::Timeout),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Ok(Ok(v)) => Ok(v),
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn refresh_token_info(
        &self,
        token: &SecretHash,
    ) -> Result<Option<RefreshTokenInfo>, StoreError> {
        let mut c = self.conn.idempotent();
        let v: Option<String> = self.run(c.get(self.keys.refresh(token))).await?;
        v.map(|v| decode("refresh token info", v.as_bytes()))
            .transpose()
    }

    async fn record_mint(
        &self,
        stt: &SecretHash,
        ctx: &MintContext,
        refresh_tokens: &[SecretHash],
        refresh_ttl: Duration,
    ) -> Result<MintWrite, StoreError> {
        let mut c = self.conn.idempotent();
        let info = encode(&RefreshTokenInfo {
            native_client: Some(ctx.native_client_id.clone()),
            ..RefreshTokenInfo::native(ctx.lineage.clone())
        });
        // One round trip: the refresh-token mappings (outside the lineage's hash
        // slot: they are looked up by token alone) and then the STT script, in one
        // pipeline — executed in order by the server. (On a Cluster these would be
        // two requests; the script alone is slot-safe.)
        let ttl = ttl_until(self.clock.now_ms(), ctx.exp);
        let mut p = ::redis::pipe();
        for rt in refresh_tokens {
            p.set_ex(self.keys.refresh(rt), &info, refresh_ttl.as_secs().max(1))
                .ignore();
        }
        p.cmd("EVAL")
            .arg(RECORD_MINT)
            .arg(2)
            .arg(self.keys.stt(&ctx.lineage, stt))
            .arg(self.keys.revoked(&ctx.lineage))
            .arg(encode(ctx))
            .arg(ttl.as_millis() as u64);
        let (stored,): (i64,) = self.run(p.query_async(&mut c)).await?;
        Ok(if stored == 1 {
            MintWrite::Stored
        } else {
            MintWrite::LineageRevoked
        })
    }

    async fn consume_transfer_token(
        &self,
        lineage: &LineageId,
        stt: &SecretHash,
        web_client: &str,
    ) -> Result<Consumed, StoreError> {
        // Not idempotent: retried only when Redis cannot have applied it.
        let mut c = self.conn.clone();
        let (state, value, revoked): (i64, String, i64) = self
            .run(
                self.consume
                    .key(self.keys.stt(lineage, stt))
                    .key(self.keys.used(lineage, stt))
                    .key(self.keys.revoked(lineage))
                    .arg(REPLAY_MEMORY.as_millis() as u64)
                    .arg(used_web_client_json(web_client))
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(match state {
            1 => Consumed::Fresh {
                ctx: decode_mint(lineage, value.as_bytes())?,
                lineage_revoked: revoked == 1,
            },
            2 => {
                let (ctx, first_web_client) = decode_used(lineage, value.as_bytes())?;
                Consumed::Replayed {
                    ctx,
                    first_web_client,
                }
            }
            _ => Consumed::Unknown,
        })
    }

    async fn revoke_lineage(
        &self,
        lineage: &LineageId,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        let mut c = self.conn.idempotent();
        let members: Vec<String> = self
            .run(
                self.revoke_lineage
                    .key(self.keys.revoked(lineage))
                    .key(self.keys.lineage_sessions(lineage))
                    .arg(ttl.as_secs().max(1))
                    .invoke_async(&mut c),
            )
            .await?;
        // Each cookie key is in its own slot: one small script each, pipelined.
        let mut ended = 0;
        for chunk in members.chunks(256) {
            let mut p = ::redis::pipe();
            for h in chunk {
                if let Some(hash) = SecretHash::from_hex(h) {
                    p.cmd("EVAL")
                        .arg(REVOKE_SESSION)
                        .arg(1)
                        .arg(self.keys.cookie(&hash));
                }
            }
            let flipped: Vec<i64> = self.run(p.query_async(&mut c)).await?;
            ended += flipped.iter().filter(|n| **n == 1).count();
        }
        Ok(ended)
    }

    async fn lineage_sessions(
        &self,
        lineage: &LineageId,
    ) -> Result<Vec<(SecretHash, WebSession)>, StoreError> {
        let mut c = self.conn.idempotent();
        let members: Vec<String> = self
            .run(c.smembers(self.keys.lineage_sessions(lineage)))
            .await?;
        let hashes: Vec<SecretHash> = members
            .iter()
            .filter_map(|h| SecretHash::from_hex(h))
            .collect();
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = hashes.iter().map(|h| self.keys.cookie(h)).collect();
        let mut out = Vec::new();
        for (hs, ks) in hashes.chunks(256).zip(keys.chunks(256)) {
            let mut p = ::redis::pipe();
            for k in ks {
                p.get(k);
            }
            let values: Vec<Option<String>> = self.run(p.query_async(&mut c)).await?;
            for (h, v) in hs.iter().zip(values) {
                if let Some(v) = v {
                    out.push((*h, decode("web session", v.as_bytes())?));
                }
            }
        }
        Ok(out)
    }

    async fn subject_lineages(&self, sub: &str) -> Result<Vec<LineageId>, StoreError> {
        let mut c = self.conn.idempotent();
        let members: Vec<String> = self.run(c.smembers(self.keys.subject(sub))).await?;
        Ok(members.iter().filter_map(|l| LineageId::parse(l)).collect())
    }

    async fn record_code(
        &self,
        code: &SecretHash,
        rec: &CodeRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        self.run(c.pset_ex(self.keys.code(code), encode(rec), ttl.as_millis() as u64))
            .await
    }

    async fn take_code(&self, code: &SecretHash) -> Result<Option<CodeRecord>, StoreError> {
        // Not idempotent: retried only when Redis cannot have applied it.
        let mut c = self.conn.clone();
        let v: Option<String> = self.run(c.get_del(self.keys.code(code))).await?;
        v.map(|v| decode("authorization code", v.as_bytes()))
            .transpose()
    }

    async fn record_refresh_token(
        &self,
        token: &SecretHash,
        info: &RefreshTokenInfo,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        self.run(c.set_ex(self.keys.refresh(token), encode(info), ttl.as_secs().max(1)))
            .await
    }

    async fn link_idp_session(
        &self,
        idp_sid: &str,
        link: &SessionLink,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        self.run(c.set_ex(
            self.keys.idp_sid(idp_sid),
            encode(link),
            ttl.as_secs().max(1),
        ))
        .await
    }

    async fn idp_session(&self, idp_sid: &str) -> Result<Option<SessionLink>, StoreError> {
        let mut c = self.conn.idempotent();
        let v: Option<String> = self.run(c.get(self.keys.idp_sid(idp_sid))).await?;
        v.map(|v| decode("IdP session link", v.as_bytes()))
            .transpose()
    }

    async fn publish_revocation(&self) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        let _: i64 = self
            .run(c.publish(self.keys.revocations_channel(), "1"))
            .await?;
        Ok(())
    }

    fn subscribe_revocations(&self, on_event: std::sync::Arc<dyn Fn(Announcement) + Send + Sync>) {
        let source = self.source.clone();
        let channel = self.keys.revocations_channel();
        background_runtime().spawn(async move {
            use futures_util::StreamExt;
            loop {
                let client = match source.client().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot find Redis for revocations");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                match client.get_async_pubsub().await {
                    Ok(mut ps) => match ps.subscribe(&channel).await {
                        Ok(()) => {
                            // (Re)subscribed: anything revoked while we were away
                            // may still sit in the cache.
                            on_event(Announcement::Unsure);
                            tracing::debug!("subscribed to revocations");
                            let mut messages = ps.on_message();
                            while messages.next().await.is_some() {
                                on_event(Announcement::Revoked);
                            }
                            on_event(Announcement::Unsure);
                            tracing::warn!("revocation subscription lost; reconnecting");
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot subscribe to revocations"),
                    },
                    Err(e) => tracing::debug!(error = %e, "cannot connect for revocations"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    async fn is_lineage_revoked(&self, lineage: &LineageId) -> Result<bool, StoreError> {
        let mut c = self.conn.idempotent();
        self.run(c.exists(self.keys.revoked(lineage))).await
    }

    async fn tx_hop(
        &self,
        lineage: &LineageId,
        txid: &str,
        max_hops: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        // Not idempotent: retried only when Redis cannot have applied it.
        let mut c = self.conn.clone();
        let ok: i64 = self
            .run(
                self.tx_hop
                    .key(self.keys.tx(lineage, txid))
                    .key(self.keys.revoked(lineage))
                    .arg(max_hops)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(ok == 1)
    }

    async fn bind_session(
        &self,
        session: &WebSession,
        cookie: &SecretHash,
        txid: Option<&str>,
        retention: Duration,
    ) -> Result<BindOutcome, StoreError> {
        let mut c = self.conn.idempotent();
        let l = &session.lineage;
        // The cookie key and the subject index live in other hash slots (they are
        // found by cookie or subject alone): a pipeline of their own, written first.
        let ttl = ttl_until(self.clock.now_ms(), session.absolute_exp) + retention;
        let mut p = ::redis::pipe();
        p.pset_ex(
            self.keys.cookie(cookie),
            encode(session),
            ttl.as_millis() as u64,
        )
        .ignore()
        .sadd(self.keys.subject(&session.sub), l.as_str())
        .ignore()
        .expire(self.keys.subject(&session.sub), INDEX_TTL.as_secs() as i64)
        .ignore();
        let () = self.run(p.query_async(&mut c)).await?;
        // Then, atomically in the lineage's slot: refuse if revoked, else index the
        // cookie (from here on a cascade finds and tombstones it) and end the
        // transaction. A revocation can therefore never slip between the two steps
        // unseen: before the script, the script sees its marker; after, its walk
        // sees the cookie. (Meanwhile the session check reads the marker too.)
        let bound: i64 = self
            .run(
                self.bind_lineage
                    .key(self.keys.revoked(l))
                    .key(self.keys.lineage_sessions(l))
                    .key(self.keys.tx(l, txid.unwrap_or("-")))
                    .arg(cookie.hex())
                    .arg(INDEX_TTL.as_secs())
                    .arg(if txid.is_some() { "1" } else { "0" })
                    .arg(TX_ENDED)
                    .invoke_async(&mut c),
            )
            .await?;
        if bound == 0 {
            Store::revoke_session(self, cookie, session).await?;
            return Ok(BindOutcome::LineageRevoked);
        }
        Ok(BindOutcome::Bound)
    }

    async fn session_by_cookie(
        &self,
        cookie: &SecretHash,
    ) -> Result<Option<WebSession>, StoreError> {
        let mut c = self.conn.idempotent();
        let v: Option<String> = self.run(c.get(self.keys.cookie(cookie))).await?;
        v.map(|v| decode("web session", v.as_bytes())).transpose()
    }

    async fn touch_session(
        &self,
        cookie: &SecretHash,
        session: &WebSession,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        let _: i64 = self
            .run(
                self.touch
                    .key(self.keys.cookie(cookie))
                    .arg(encode(session))
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(())
    }

    async fn revoke_session(
        &self,
        cookie: &SecretHash,
        _session: &WebSession,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        let _: i64 = self
            .run(
                self.revoke_session
                    .key(self.keys.cookie(cookie))
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(())
    }

    async fn move_session(&self, old: &SecretHash, new: &SecretHash) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        let _: i64 = self
            .run(
                self.move_session
                    .key(self.keys.cookie(old))
                    .arg(new.hex())
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(())
    }

    async fn expire_refresh_token(
        &self,
        token: &SecretHash,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = self
            .run(
                self.shorten_ttl
                    .key(self.keys.refresh(token))
                    .arg((ttl.as_millis() as u64).max(1))
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(())
    }

    async fn remember_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let set: Option<String> = self
            .run(
                ::redis::cmd("SET")
                    .arg(self.keys.once(name))
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg((ttl.as_millis() as u64).max(1))
                    .query_async(&mut c),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn forget_once(&self, name: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = self.run(c.del(self.keys.once(name))).await?;
        Ok(())
    }

    async fn hold_withheld(
        &self,
        lineage: &LineageId,
        token: &SecretHash,
        rec: &WithheldToken,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        let _: i64 = self
            .run(
                self.hold_withheld
                    .key(self.keys.withheld(lineage))
                    .arg(token.hex())
                    .arg(encode(rec))
                    .arg((ttl.as_millis() as u64).max(1))
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(())
    }

    async fn withheld_tokens(
        &self,
        lineage: &LineageId,
    ) -> Result<Vec<(SecretHash, WithheldToken)>, StoreError> {
        let mut c = self.conn.idempotent();
        let all: std::collections::HashMap<String, String> =
            self.run(c.hgetall(self.keys.withheld(lineage))).await?;
        let mut out = Vec::new();
        for (h, v) in all {
            if let Some(h) = SecretHash::from_hex(&h) {
                out.push((h, decode("withheld token", v.as_bytes())?));
            }
        }
        Ok(out)
    }

    async fn drop_withheld(
        &self,
        lineage: &LineageId,
        token: &SecretHash,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        let _: i64 = self
            .run(c.hdel(self.keys.withheld(lineage), token.hex()))
            .await?;
        Ok(())
    }

    async fn schedule_withheld(
        &self,
        lineage: &LineageId,
        due_secs: u64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        let _: i64 = self
            .run(
                self.schedule_withheld
                    .key(self.keys.withheld_due())
                    .arg(lineage.as_str())
                    .arg(due_secs)
                    .arg(INDEX_TTL.as_millis() as u64)
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(())
    }

    async fn claim_withheld_due(
        &self,
        now_secs: u64,
        max: usize,
    ) -> Result<Vec<LineageId>, StoreError> {
        // Not idempotent: retried only when Redis cannot have applied it.
        let mut c = self.conn.clone();
        let claimed: Vec<String> = self
            .run(
                self.claim_withheld
                    .key(self.keys.withheld_due())
                    .arg(now_secs)
                    .arg(max.max(1))
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(claimed.iter().filter_map(|l| LineageId::parse(l)).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.idempotent();
        let _: String = self.run(::redis::cmd("PING").query_async(&mut c)).await?;
        Ok(())
    }
}
