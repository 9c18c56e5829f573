//! Where handoff keeps its state: one trait, two implementations.
//!
//! [`Store`] is the only way the flows touch state. [`redis::RedisStore`] is the
//! store for every deployment with more than one instance; [`memory::MemoryStore`]
//! is the embedded default for a single instance and the quick start. Both have the
//! same semantics, down to key TTLs, and one test suite (`tests/store.rs`) runs
//! against both.
//!
//! What is stored, and why it is safe to store:
//! - keys hold SHA-256 hashes of secrets ([`SecretHash`]), never secrets;
//! - every key has a TTL, so nothing grows without bound;
//! - every key that one redemption touches carries the lineage id as a Redis hash
//!   tag (`ho:{<lineage>}:...`), so the consume step is one Lua script — one round
//!   trip, atomic — and works on Redis Cluster.
//!
//! Errors never delete or invalidate data: a [`StoreError`] makes the caller fail
//! closed (mint answers 503, redemption falls back to an ordinary login).

pub mod memory;
pub mod metered;
pub mod redis;

use crate::secret::{LineageId, SecretHash};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The mint context (SPEC §2.1): what an STT records about the native app's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintContext {
    /// The user.
    #[serde(rename = "s")]
    pub sub: String,
    /// The native app's client id.
    #[serde(rename = "n")]
    pub native_client_id: String,
    /// The native refresh token's lineage. Not stored in the record: the key says it
    /// (`ho:{<lineage>}:stt:...`), and the stores fill it back in when they read it.
    #[serde(skip, default = "LineageId::unset")]
    pub lineage: LineageId,
    /// Scopes of the native grant.
    #[serde(rename = "sc", default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The minting IP (after the trusted-proxy rule).
    #[serde(rename = "ip")]
    pub ip: IpAddr,
    /// The minting IP's autonomous system, when an ASN table is configured.
    #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// SHA-256 device fingerprint of the mint request (hex), when configured.
    #[serde(rename = "fp", default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Issued at (Unix seconds).
    #[serde(rename = "iat")]
    pub iat: u64,
    /// Expires at (Unix seconds).
    #[serde(rename = "exp")]
    pub exp: u64,
}

/// A web session created by a session transfer (SPEC §2.4), as stored under the
/// hash of the IdP's session cookie that it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSession {
    /// Session id (the assertion's `sid`).
    pub sid: String,
    /// The user.
    pub sub: String,
    /// The native refresh token's lineage.
    pub lineage: LineageId,
    /// The web client that logged in.
    pub web_client: String,
    /// The native client whose token was redeemed.
    pub native_client: String,
    /// Created (Unix seconds).
    pub created: u64,
    /// Absolute expiry (Unix seconds).
    pub absolute_exp: u64,
    /// Idle limit (seconds).
    pub idle_secs: u64,
    /// Last use (Unix seconds); idle expiry is `last_seen + idle_secs`.
    pub last_seen: u64,
    /// The IP that redeemed the token.
    pub ip: IpAddr,
    /// Revoked: the record stays (a tombstone) so the cookie keeps counting as
    /// dead instead of looking unbound.
    #[serde(default)]
    pub revoked: bool,
    /// What the redemption's decision said of refresh tokens.
    #[serde(default)]
    pub refresh: RefreshPolicy,
    /// When the IdP replaced this session's cookie: the hash (hex) of the new one,
    /// whose record holds the session's state from then on. Always serialized
    /// (as `null` when unset), so scripts can set it without decoding.
    #[serde(default)]
    pub moved_to: Option<String>,
}

impl WebSession {
    /// When the session dies if not used again.
    pub fn idle_exp(&self) -> u64 {
        self.last_seen.saturating_add(self.idle_secs)
    }

    /// The earlier of the two limits.
    pub fn expires_at(&self) -> u64 {
        self.absolute_exp.min(self.idle_exp())
    }
}

/// Result of [`Store::bind_session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    /// The cookie now maps to the session.
    Bound,
    /// The lineage was revoked meanwhile: nothing is bound.
    LineageRevoked,
}

/// Which kind of refresh token a hash belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshKind {
    /// A native app's token: may mint (policy permitting).
    Native,
    /// Issued to a web app inside a transfer session: may never mint (no nesting).
    Web,
}

/// What handoff knows of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenInfo {
    /// Its lineage.
    #[serde(rename = "l")]
    pub lineage: LineageId,
    /// Native or web.
    #[serde(rename = "k")]
    pub kind: RefreshKind,
    /// A web token's session: the hash (hex) of the IdP session cookie it is bound
    /// to, when it is an online refresh token (SPEC §2.5).
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub session_cookie: Option<String>,
    /// The web client it was issued to.
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub web_client: Option<String>,
    /// Denied at handoff's token endpoint (withheld from the web app, or revoked).
    #[serde(rename = "d", default, skip_serializing_if = "std::ops::Not::not")]
    pub denied: bool,
    /// A native token's client (for its cascade-revocation setting).
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub native_client: Option<String>,
}

impl RefreshTokenInfo {
    /// A native app's token of `lineage`.
    pub fn native(lineage: LineageId) -> Self {
        RefreshTokenInfo {
            lineage,
            kind: RefreshKind::Native,
            session_cookie: None,
            web_client: None,
            denied: false,
            native_client: None,
        }
    }
}

/// An authorization code the IdP issued inside a transfer session (SPEC §2.5):
/// its token response belongs to that session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// The lineage.
    pub lineage: LineageId,
    /// handoff's web session id.
    pub sid: String,
    /// Hash (hex) of the bound IdP session cookie, when known.
    pub session_cookie: Option<String>,
    /// The web client the code was issued to.
    pub web_client: String,
    /// The user.
    pub sub: String,
    /// What the redemption's decision said of refresh tokens (rules included).
    #[serde(default)]
    pub refresh: RefreshPolicy,
}

/// A transfer session's refresh-token policy, as the redemption decided it
/// (client settings and matching rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshPolicy {
    /// `allow_refresh_token`.
    pub allow: bool,
    /// `enforce_online_refresh_tokens`.
    pub online: bool,
}

impl Default for RefreshPolicy {
    /// The strict defaults: none allowed; online if ever allowed.
    fn default() -> Self {
        RefreshPolicy {
            allow: false,
            online: true,
        }
    }
}

/// Where a session of the IdP (its `sid`) lives in handoff (for back-channel logout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLink {
    /// The lineage.
    pub lineage: LineageId,
    /// Hash (hex) of the bound IdP session cookie.
    pub session_cookie: String,
}

/// A refresh token handoff withheld from a web app (SPEC §2.5), kept until its web
/// session ends so that it can be revoked at the IdP then (revoking it at login
/// would take the web app's access token with it: RFC 7009 §2.1 lets the IdP revoke
/// the whole grant, and oidc-provider does). Stored under its lineage
/// ([`Keys::withheld`]), keyed by the token's hash; the token itself only sealed
/// (AEAD under a key derived from handoff's secret material, see
/// [`crate::withheld`]), never in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithheldToken {
    /// handoff's web session id.
    #[serde(rename = "s")]
    pub sid: String,
    /// Hash (hex) of the IdP session cookie the session was bound to at the exchange.
    #[serde(rename = "c")]
    pub session_cookie: String,
    /// The web client it was issued to (whose credentials revoke it).
    #[serde(rename = "w")]
    pub web_client: String,
    /// The token, sealed.
    #[serde(rename = "t")]
    pub sealed: String,
}

/// Result of [`Store::record_mint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintWrite {
    /// The STT is stored and can be redeemed.
    Stored,
    /// The lineage was revoked: nothing was stored.
    LineageRevoked,
}

/// Result of [`Store::consume_transfer_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// First presentation: the token is now spent.
    Fresh {
        /// What the mint recorded.
        ctx: MintContext,
        /// Whether the lineage has been revoked.
        lineage_revoked: bool,
    },
    /// The token was already spent: a replay.
    Replayed {
        /// What the mint recorded.
        ctx: MintContext,
        /// The web client (`client_id`) the token was first presented for, as the
        /// first consumption recorded it; `None` when that presentation named none
        /// (or one too long to keep), or the marker predates this record. Replay
        /// policy reads this, never the replaying request's `client_id`.
        first_web_client: Option<String>,
    },
    /// Never minted, or expired and gone.
    Unknown,
}

/// The longest web client id a consumed-token marker keeps; a longer one (it came
/// from the request, so its length is the presenter's choice) is kept as `None`.
pub const MAX_RECORDED_WEB_CLIENT: usize = 256;

/// A consumed-token marker: the mint record and the web client of the first
/// consumption. Written as `{"w":<web client or null>,"m":<mint record>}` (the
/// Redis script builds it by concatenation, without decoding the record).
#[derive(Deserialize)]
struct UsedMarker {
    #[serde(default)]
    w: Option<String>,
    m: MintContext,
}

/// The `"w"` field of a consumed-token marker for a presentation naming `web_client`.
fn used_web_client_json(web_client: &str) -> String {
    let kept = (!web_client.is_empty() && web_client.len() <= MAX_RECORDED_WEB_CLIENT)
        .then_some(web_client);
    serde_json::to_string(&kept).expect("strings always serialize")
}

/// The consumed-token marker for mint record `record` first presented for `web_client`.
fn encode_used(record: &str, web_client: &str) -> String {
    format!(
        "{{\"w\":{},\"m\":{}}}",
        used_web_client_json(web_client),
        record
    )
}

/// Decodes a consumed-token marker read under `lineage`'s key. A marker written
/// before markers recorded the web client is the bare mint record.
fn decode_used(
    lineage: &LineageId,
    bytes: &[u8],
) -> Result<(MintContext, Option<String>), StoreError> {
    match serde_json::from_slice::<UsedMarker>(bytes) {
        Ok(u) => {
            let mut ctx = u.m;
            ctx.lineage = lineage.clone();
            Ok((ctx, u.w))
        }
        Err(_) => Ok((decode_mint(lineage, bytes)?, None)),
    }
}

/// A store failure. Carries no key material beyond hash prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store did not answer within the operation timeout.
    Timeout,
    /// The store is unreachable or answered with an error.
    Unavailable(String),
    /// A stored value could not be decoded (nothing is changed because of it).
    Corrupt(String),
}

impl StoreError {
    /// The same error, saying which operation it interrupted.
    pub fn during(self, op: &str) -> StoreError {
        match self {
            StoreError::Timeout => StoreError::Unavailable(format!("{op}: timed out")),
            StoreError::Unavailable(e) => StoreError::Unavailable(format!("{op}: {e}")),
            StoreError::Corrupt(e) => StoreError::Corrupt(format!("{op}: {e}")),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("store operation timed out"),
            StoreError::Unavailable(e) => write!(f, "store unavailable: {e}"),
            StoreError::Corrupt(e) => write!(f, "stored value unreadable: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// How long a rotated-out refresh token's mapping ([`Keys::refresh`]) lives once its
/// successor has been recorded ([`Store::expire_refresh_token`]), instead of the
/// whole lineage lifetime: each rotation would otherwise leave one more 90-day key,
/// and a chain of rotations grows the store without bound in practice. One hour
/// is far longer than any IdP's rotation grace window (Auth0's reuse interval is
/// seconds to minutes) and a native app's retry after a lost response, during which
/// the old token may still be presented and must still map to its lineage; after it,
/// an IdP that rotates refuses the old token anyway.
pub const ROTATED_REFRESH_TTL: Duration = Duration::from_secs(3600);

/// How long a consumed-token marker outlives the token, so that a replay shortly
/// after expiry is still recognised as one.
pub const REPLAY_MEMORY: Duration = Duration::from_secs(60);

/// The state operations of handoff's flows. Both implementations are atomic per call.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// What handoff knows of the refresh token with this hash.
    async fn refresh_token_info(
        &self,
        token: &SecretHash,
    ) -> Result<Option<RefreshTokenInfo>, StoreError>;

    /// Records a mint: maps each of `refresh_tokens` (the presented one and the
    /// rotated one) to the lineage for `refresh_ttl`, then — atomically with a check
    /// that the lineage is not revoked — stores the STT record under `stt` until
    /// `ctx.exp`.
    async fn record_mint(
        &self,
        stt: &SecretHash,
        ctx: &MintContext,
        refresh_tokens: &[SecretHash],
        refresh_ttl: Duration,
    ) -> Result<MintWrite, StoreError>;

    /// Consumes the STT with hash `stt` of lineage `lineage`, presented for
    /// `web_client` (the request's `client_id`, empty if none): atomically removes
    /// it, leaves a replay marker that remembers `web_client`, and reports whether
    /// the lineage is revoked. A token succeeds at most once, across any number of
    /// callers and instances. A replay reports the web client of the *first*
    /// consumption ([`Consumed::Replayed`]); the replaying `web_client` is ignored.
    async fn consume_transfer_token(
        &self,
        lineage: &LineageId,
        stt: &SecretHash,
        web_client: &str,
    ) -> Result<Consumed, StoreError>;

    /// Revokes a lineage for `ttl` (SPEC §2.6 cascade): marks it revoked (no more
    /// mints, redemptions, transactions or bindings) and turns every web session
    /// bound under it into a tombstone. Returns how many sessions it ended.
    async fn revoke_lineage(&self, lineage: &LineageId, ttl: Duration)
        -> Result<usize, StoreError>;

    /// The web sessions bound under a lineage, with their cookie hashes.
    async fn lineage_sessions(
        &self,
        lineage: &LineageId,
    ) -> Result<Vec<(SecretHash, WebSession)>, StoreError>;

    /// The lineages a subject has had transfer sessions under.
    async fn subject_lineages(&self, sub: &str) -> Result<Vec<LineageId>, StoreError>;

    /// Remembers an authorization code issued inside a transfer session.
    async fn record_code(
        &self,
        code: &SecretHash,
        rec: &CodeRecord,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Takes (reads and forgets) what is known of an authorization code.
    async fn take_code(&self, code: &SecretHash) -> Result<Option<CodeRecord>, StoreError>;

    /// Records (or overwrites) what handoff knows of a refresh token.
    async fn record_refresh_token(
        &self,
        token: &SecretHash,
        info: &RefreshTokenInfo,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Links the IdP's session id to a bound web session.
    async fn link_idp_session(
        &self,
        idp_sid: &str,
        link: &SessionLink,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The web session the IdP's session id is linked to.
    async fn idp_session(&self, idp_sid: &str) -> Result<Option<SessionLink>, StoreError>;

    /// Tells every instance that something was revoked (their caches must forget).
    async fn publish_revocation(&self) -> Result<(), StoreError>;

    /// Calls `on_event` with [`Announcement::Revoked`] whenever any instance
    /// publishes a revocation, and with [`Announcement::Unsure`] whenever the
    /// subscription is lost or re-established (revocations may have been missed).
    /// The embedded store is one instance: a no-op.
    fn subscribe_revocations(&self, on_event: std::sync::Arc<dyn Fn(Announcement) + Send + Sync>);

    /// Whether a lineage is revoked.
    async fn is_lineage_revoked(&self, lineage: &LineageId) -> Result<bool, StoreError>;

    /// Counts one hop of login transaction `txid`; false once the transaction has
    /// ended, has used `max_hops`, or its lineage is revoked. The counter lives `ttl`.
    async fn tx_hop(
        &self,
        lineage: &LineageId,
        txid: &str,
        max_hops: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Binds the IdP session cookie with hash `cookie` to `session`, indexes it under
    /// its lineage and subject, and ends login transaction `txid` if given. Refused
    /// when the lineage is revoked. The record lives `retention` past the session's
    /// absolute expiry: a dead session's cookie must stay known as dead for as long
    /// as the IdP might still honour it, or it would pass as unbound.
    async fn bind_session(
        &self,
        session: &WebSession,
        cookie: &SecretHash,
        txid: Option<&str>,
        retention: Duration,
    ) -> Result<BindOutcome, StoreError>;

    /// The session a cookie hash is bound to, if any.
    async fn session_by_cookie(
        &self,
        cookie: &SecretHash,
    ) -> Result<Option<WebSession>, StoreError>;

    /// Records use of a bound session (its `last_seen`), never over a revocation
    /// and never recreating a record that is gone.
    async fn touch_session(
        &self,
        cookie: &SecretHash,
        session: &WebSession,
    ) -> Result<(), StoreError>;

    /// Marks the record under `old` as replaced by the one under `new` (the IdP
    /// rotated its session cookie), keeping its TTL; a revoked record stays revoked.
    async fn move_session(&self, old: &SecretHash, new: &SecretHash) -> Result<(), StoreError>;

    /// Revokes one web session: its record becomes a tombstone (`revoked`), keeping
    /// its TTL.
    async fn revoke_session(
        &self,
        cookie: &SecretHash,
        session: &WebSession,
    ) -> Result<(), StoreError>;

    /// Shortens the life of refresh token `token`'s mapping to at most `ttl` (never
    /// lengthens it; a mapping that is gone stays gone). Called for the rotated-out
    /// token when a rotation is recorded, so rotation chains do not pile up
    /// [`Keys::refresh`] entries for the whole lineage lifetime.
    async fn expire_refresh_token(
        &self,
        token: &SecretHash,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Remembers `name` for `ttl`, atomically "set if absent": `true` the first time,
    /// `false` while it is still remembered (a replay). Across instances (Redis
    /// `SET NX PX`). The key is a hash of `name` ([`Keys::once`]).
    async fn remember_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Forgets `name` (remembered by [`Store::remember_once`]), so that it can be
    /// remembered again: for a caller that claimed it and whose work under the
    /// claim then failed, so that a retry is not taken for a replay.
    async fn forget_once(&self, name: &str) -> Result<(), StoreError>;

    /// Keeps a withheld refresh token (with hash `token`) of `lineage` until its
    /// session ends; the lineage's record lives at least `ttl` from now.
    async fn hold_withheld(
        &self,
        lineage: &LineageId,
        token: &SecretHash,
        rec: &WithheldToken,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The withheld refresh tokens a lineage still holds.
    async fn withheld_tokens(
        &self,
        lineage: &LineageId,
    ) -> Result<Vec<(SecretHash, WithheldToken)>, StoreError>;

    /// Forgets a withheld refresh token (it was revoked at the IdP).
    async fn drop_withheld(
        &self,
        lineage: &LineageId,
        token: &SecretHash,
    ) -> Result<(), StoreError>;

    /// Asks for `lineage`'s withheld tokens to be looked at again at `due_secs`
    /// (Unix seconds), or earlier if it is already due earlier: a due time is only
    /// ever brought forward, never pushed back (an early look costs one read; a late
    /// one would keep a dead session's token alive at the IdP).
    async fn schedule_withheld(&self, lineage: &LineageId, due_secs: u64)
        -> Result<(), StoreError>;

    /// Claims up to `max` lineages due by `now_secs` and removes them from the
    /// schedule, atomically: across instances, each due entry is claimed once.
    /// The claimer schedules again what it does not finish.
    async fn claim_withheld_due(
        &self,
        now_secs: u64,
        max: usize,
    ) -> Result<Vec<LineageId>, StoreError>;

    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// What the revocation subscription tells an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// Something was revoked (and the store answered the revoker just now).
    Revoked,
    /// The subscription dropped or came back: announcements may have been missed.
    Unsure,
}

/// The key names, shared by both implementations so their layouts are identical.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (default `ho`).
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `ho:{L}:stt:<hash>` — the STT record (the hash in base64url: these keys are
    /// the most numerous, so they are kept short).
    pub fn stt(&self, l: &LineageId, h: &SecretHash) -> String {
        format!("{}:{{{}}}:stt:{}", self.prefix, l.as_str(), h.b64())
    }

    /// `ho:{L}:used:<hash>` — a consumed STT (replay detection).
    pub fn used(&self, l: &LineageId, h: &SecretHash) -> String {
        format!("{}:{{{}}}:used:{}", self.prefix, l.as_str(), h.b64())
    }

    /// `ho:{L}:revoked` — the lineage's revocation marker.
    pub fn revoked(&self, l: &LineageId) -> String {
        format!("{}:{{{}}}:revoked", self.prefix, l.as_str())
    }

    /// `ho:{L}:tx:<txid>` — a login transaction's hop counter.
    pub fn tx(&self, l: &LineageId, txid: &str) -> String {
        format!("{}:{{{}}}:tx:{}", self.prefix, l.as_str(), txid)
    }

    /// `ho:{L}:sess` — the set of cookie hashes bound to the lineage's web sessions.
    pub fn lineage_sessions(&self, l: &LineageId) -> String {
        format!("{}:{{{}}}:sess", self.prefix, l.as_str())
    }

    /// `ho:ck:<hash>` — the web session an IdP session cookie is bound to (one read).
    pub fn cookie(&self, h: &SecretHash) -> String {
        format!("{}:ck:{}", self.prefix, h.hex())
    }

    /// `ho:sub:<hash of sub>` — the lineages of a subject.
    pub fn subject(&self, sub: &str) -> String {
        format!(
            "{}:sub:{}",
            self.prefix,
            SecretHash::of(sub.as_bytes()).hex()
        )
    }

    /// `ho:code:<hash>` — an authorization code issued inside a transfer session.
    pub fn code(&self, h: &SecretHash) -> String {
        format!("{}:code:{}", self.prefix, h.hex())
    }

    /// `ho:isid:<hash of the IdP's sid>` — where an IdP session lives in handoff.
    pub fn idp_sid(&self, sid: &str) -> String {
        format!(
            "{}:isid:{}",
            self.prefix,
            SecretHash::of(sid.as_bytes()).hex()
        )
    }

    /// The pub/sub channel revocations are announced on.
    pub(crate) fn revocations_channel(&self) -> String {
        format!("{}:revocations", self.prefix)
    }

    /// `ho:once:<hash of name>` — a name remembered by [`Store::remember_once`]
    /// (e.g. a back-channel logout token's `jti`).
    pub fn once(&self, name: &str) -> String {
        format!(
            "{}:once:{}",
            self.prefix,
            SecretHash::of(name.as_bytes()).hex()
        )
    }

    /// `ho:{L}:wh` — the lineage's withheld refresh tokens, sealed (a hash: token
    /// hash (hex) → [`WithheldToken`]).
    pub fn withheld(&self, l: &LineageId) -> String {
        format!("{}:{{{}}}:wh", self.prefix, l.as_str())
    }

    /// `ho:whdue` — when each lineage's withheld tokens are next looked at (a
    /// sorted set: lineage → Unix seconds). One key per deployment (on Redis
    /// Cluster it lives on one shard; each instance reads it once per sweep).
    pub(crate) fn withheld_due(&self) -> String {
        format!("{}:whdue", self.prefix)
    }

    /// `ho:rt:<hash>` — a refresh token's lineage and kind.
    pub fn refresh(&self, h: &SecretHash) -> String {
        format!("{}:rt:{}", self.prefix, h.hex())
    }
}

/// Decodes an STT record read under `lineage`'s key, with the lineage filled in.
fn decode_mint(lineage: &LineageId, bytes: &[u8]) -> Result<MintContext, StoreError> {
    let mut ctx: MintContext = decode("transfer token", bytes)?;
    ctx.lineage = lineage.clone();
    Ok(ctx)
}

fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store records always serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// How a revoked session record reads (serde_json's compact form of the flag):
/// touch scripts refuse to write over it, and revocations write it in place of
/// [`LIVE_MARK`] (a record always serializes the flag, so both stores and the Lua
/// scripts can flip it without decoding the record).
const REVOKED_MARK: &str = "\"revoked\":true";
/// How a live session record reads.
const LIVE_MARK: &str = "\"revoked\":false";
/// How a record that was never replaced reads.
const UNMOVED_MARK: &str = "\"moved_to\":null";

/// A hop count that marks a login transaction as ended.
const TX_ENDED: u32 = 1_000_000;

/// How long the lineage and subject indexes live after their last write.
pub const INDEX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Milliseconds from `now_ms` until `until_secs`, at least 1 s (a TTL of 0 would mean "no TTL").
fn ttl_until(now_ms: u64, until_secs: u64) -> Duration {
    let until_ms = until_secs.saturating_mul(1000);
    Duration::from_millis(until_ms.saturating_sub(now_ms).max(1000))
}
