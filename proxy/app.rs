//! The shared state of one handoff instance.
//!
//! [`Handoff`] is built once from the validated [`Config`] and shared (`Arc`) by
//! the public proxy, the admin listener and the background tasks. The rules are
//! behind an [`ArcSwap`], so a reload replaces them atomically: every request reads
//! one whole rules set.

use crate::clock::SharedClock;
use crate::config::{Config, SigningKey, StoreConfig};
use crate::idp::IdpClient;
use crate::jws::Signer;
use crate::metrics::Metrics;
use crate::session::cache::SessionCache;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::Store;
use crate::transaction::state::TxKey;
use arc_swap::ArcSwap;
use handoff_rules::{AsnTable, Policy};
use std::sync::Arc;
use std::time::Duration;

/// How long handoff remembers a native refresh token's lineage, and a revocation.
pub const LINEAGE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// One handoff instance's state.
#[derive(Debug)]
pub struct Handoff {
    /// The validated configuration.
    pub config: Config,
    /// Where state lives.
    pub store: Arc<dyn Store>,
    /// The rules in force (swapped whole on reload).
    pub policy: ArcSwap<Rules>,
    /// The last reload attempt.
    pub reload_status: std::sync::Mutex<ReloadStatus>,
    /// Signs assertions and publishes their keys.
    pub asserter: crate::assertion::Asserter,
    /// Seals login-transaction cookies.
    pub tx_key: TxKey,
    /// Seals withheld refresh tokens (derived from `tx_key`; see [`crate::withheld`]).
    pub seal_key: crate::withheld::SealKey,
    /// Wakes the withheld-token sweeper (a session ended by revocation).
    pub withheld_wake: Arc<tokio::sync::Notify>,
    /// Recently read web-session states (forgotten on every revocation announced).
    pub sessions: Arc<SessionCache>,
    /// handoff's client for the IdP.
    pub idp: Arc<IdpClient>,
    /// Counters.
    pub metrics: Metrics,
    /// Time.
    pub clock: SharedClock,
    /// `urn:{public_host}:session_transfer`.
    pub mint_audience: String,
    /// Rate limits on minting (per instance; `[mint.rate_limit]`).
    pub mint_limits: crate::ratelimit::MintLimiter,
}

/// One whole rules set, as loaded: the policy, the ASN table that goes with it,
/// and where they came from. Swapped as one value, so no request ever sees the
/// policy of one reload with the table of another.
#[derive(Debug)]
pub struct Rules {
    /// The validated policy.
    pub policy: Policy,
    /// The ASN table, when configured.
    pub asn: Option<AsnTable>,
    /// SHA-256 (hex) of the rules file and the ASN table as loaded.
    pub sha256: String,
    /// When it was loaded (Unix seconds).
    pub loaded_at: u64,
}

impl std::ops::Deref for Rules {
    type Target = Policy;
    fn deref(&self) -> &Policy {
        &self.policy
    }
}

impl Rules {
    /// The ASN of `ip`, when a table is loaded and knows it.
    pub(crate) fn asn_of(&self, ip: std::net::IpAddr) -> Option<u32> {
        self.asn.as_ref().and_then(|t| t.lookup(ip))
    }
}

/// What the files the rules come from hash to right now (for the file watch).
pub(crate) fn rules_fingerprint(config: &Config) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in config.rules_file.iter().chain(config.asn_table.iter()) {
        ctx.update(&std::fs::read(p).unwrap_or_default());
        ctx.update(b"\0");
    }
    crate::secret::hex(ctx.finish().as_ref())
}

/// Loads the rules file named by the config (or the built-in defaults) and the ASN
/// table. Errors carry file, line, column and reason.
pub fn load_rules(config: &Config) -> Result<Rules, String> {
    let sha256 = rules_fingerprint(config);
    let policy = match &config.rules_file {
        None => Policy::from_toml("", "(built-in defaults)").map_err(|d| d.to_string())?,
        Some(p) => read_policy(p)?,
    };
    let asn = match &config.asn_table {
        None => {
            if policy.uses_asn() {
                return Err("the rules use ASNs (binding \"asn\" or an ASN matcher) but no [rules] asn_table is configured".into());
            }
            None
        }
        Some(p) => Some(read_asn_table(p)?),
    };
    let loaded_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Rules {
        policy,
        asn,
        sha256,
        loaded_at,
    })
}

/// Reads and validates one rules file (the one place a rules file is read: the
/// proxy at start and reload, `config check`, `rules check` and `rules explain`).
/// The error is `FILE: cannot read: ...` or the file's diagnostics.
pub fn read_policy(path: &std::path::Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Policy::from_toml(&text, &path.display().to_string()).map_err(|d| d.to_string())
}

/// Reads and parses an ip2asn TSV table.
pub fn read_asn_table(path: &std::path::Path) -> Result<AsnTable, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    AsnTable::parse(&text, &path.display().to_string()).map_err(|d| d.to_string())
}

/// Loads only the policy (CLI checks).
pub fn load_policy(config: &Config) -> Result<Policy, String> {
    load_rules(config).map(|r| r.policy)
}

/// The outcome of the last reload attempt (shown on the admin listener).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Unix seconds of the last attempt.
    pub at: u64,
    /// Whether it was accepted.
    pub ok: bool,
    /// The diagnostics when it was rejected.
    pub error: Option<String>,
    /// What asked for it: `start`, `sighup`, `watch`, `admin`.
    pub trigger: String,
}

/// Builds the assertion signer from the key the config read, and derives the
/// transaction-cookie key from the same secret (so instances that share the
/// signing key can open each other's transaction cookies).
pub fn load_signer(config: &Config) -> Result<(Signer, TxKey), String> {
    match &config.assertion.key {
        // The config read the files and checked the keys; these errors are for a
        // `Config` built by hand.
        SigningKey::Ed25519File { path, pkcs8 } => {
            let signer = Signer::ed25519_from_pkcs8(pkcs8.expose())
                .map_err(|e| format!("assertion.key_file {}: {e}", path.display()))?;
            Ok((signer, TxKey::derive(pkcs8.expose())))
        }
        SigningKey::Hs256File { path, secret } => {
            let signer = Signer::hs256(secret.expose())
                .map_err(|e| format!("assertion.secret_file {}: {e}", path.display()))?;
            Ok((signer, TxKey::derive(secret.expose())))
        }
        SigningKey::Ephemeral => {
            tracing::warn!(
                "no assertion.key_file: signing assertions with a key that lives only in this process \
                 (run `handoff keygen` and set assertion.key_file for production)"
            );
            Ok((Signer::ephemeral_ed25519(), TxKey::random()))
        }
    }
}

impl Handoff {
    /// Builds an instance with the store the config names.
    pub fn build(config: Config, clock: SharedClock) -> Result<Arc<Self>, String> {
        let store: Arc<dyn Store> = match &config.store {
            StoreConfig::Memory { max_entries } => {
                Arc::new(MemoryStore::with_max_entries(clock.clone(), *max_entries))
            }
            StoreConfig::RedisSentinel {
                sentinels,
                master,
                timeout,
                key_prefix,
            } => {
                let urls: Vec<String> = sentinels.iter().map(|s| s.expose().to_string()).collect();
                Arc::new(
                    RedisStore::with_sentinel(&urls, master, key_prefix, *timeout, clock.clone())
                        .map_err(|e| format!("store: {e}"))?,
                )
            }
            StoreConfig::Redis {
                url,
                timeout,
                key_prefix,
            } => Arc::new(
                RedisStore::new(url.expose(), key_prefix, *timeout, clock.clone())
                    .map_err(|e| format!("store: {e}"))?,
            ),
        };
        Self::build_with_store(config, clock, store)
    }

    /// Builds an instance around a given store.
    pub fn build_with_store(
        config: Config,
        clock: SharedClock,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Self>, String> {
        let policy = load_rules(&config)?;
        for w in policy.policy.warnings() {
            tracing::warn!(%w, "rules");
        }
        let (signer, tx_key) = load_signer(&config)?;
        let asserter = crate::assertion::Asserter::new(signer, &config.assertion, clock.clone());
        let idp = IdpClient::new(&config, clock.clone())?;
        let metrics = Metrics::new();
        // Every store call goes through the one metered seam.
        let store: Arc<dyn Store> = Arc::new(crate::store::metered::Metered::new(
            store,
            metrics.store_latency.clone(),
            metrics.store_errors.clone(),
        ));
        let sessions = Arc::new(SessionCache::default());
        let cache = sessions.clone();
        let cache_clock = clock.clone();
        store.subscribe_revocations(Arc::new(move |a| match a {
            // The store just answered the revoker: forget, and read it again.
            crate::store::Announcement::Revoked => cache.clear(),
            // Maybe missed some: stop trusting the cache as fresh, but keep it as
            // the last known state for the outage grace.
            crate::store::Announcement::Unsure => cache.invalidate(cache_clock.now_ms()),
        }));
        Ok(Arc::new(Handoff {
            mint_audience: config.mint_audience(),
            mint_limits: crate::ratelimit::MintLimiter::new(&config.mint_rate_limit),
            config,
            store,
            reload_status: std::sync::Mutex::new(ReloadStatus {
                at: policy.loaded_at,
                ok: true,
                error: None,
                trigger: "start".into(),
            }),
            policy: ArcSwap::from_pointee(policy),
            asserter,
            seal_key: crate::withheld::SealKey::derive(&tx_key),
            withheld_wake: Arc::new(tokio::sync::Notify::new()),
            tx_key,
            sessions: sessions.clone(),
            idp,
            metrics,
            clock,
        }))
    }

    /// Re-reads the rules file (and ASN table), validates them off the request
    /// path, and swaps them in whole; on error the running rules stay in force.
    pub fn reload_rules(&self, trigger: &str) -> Result<(), String> {
        let result = load_rules(&self.config);
        let now = self.clock.now_secs();
        let status = match &result {
            Ok(_) => ReloadStatus {
                at: now,
                ok: true,
                error: None,
                trigger: trigger.into(),
            },
            Err(e) => ReloadStatus {
                at: now,
                ok: false,
                error: Some(e.clone()),
                trigger: trigger.into(),
            },
        };
        *self.reload_status.lock().unwrap_or_else(|p| p.into_inner()) = status;
        match result {
            Ok(r) => {
                for w in r.policy.warnings() {
                    tracing::warn!(%w, "rules");
                }
                tracing::info!(sha256 = %r.sha256, trigger, "rules reloaded");
                self.policy.store(Arc::new(r));
                self.metrics
                    .rules_reloads
                    .with_label_values(&["success"])
                    .inc();
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .rules_reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::error!(error = %e, trigger, "rules reload rejected; the running rules stay in force");
                Err(e)
            }
        }
    }

    /// Starts the rules file watch: every `rules.watch_interval`, reload when the
    /// files' contents changed (compared by hash, so a touch without a change, or
    /// an editor's rename dance, does nothing). Runs on its own thread.
    pub(crate) fn watch_rules(self: &Arc<Self>) {
        let interval = self.config.rules_watch;
        if interval.is_zero()
            || (self.config.rules_file.is_none() && self.config.asn_table.is_none())
        {
            return;
        }
        let weak = Arc::downgrade(self);
        let mut last = self.policy.load().sha256.clone();
        let spawned = std::thread::Builder::new()
            .name("handoff-rules-watch".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(h) = weak.upgrade() else { return };
                let now = rules_fingerprint(&h.config);
                if now != last {
                    last = now;
                    let _ = h.reload_rules("watch");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the rules file watch");
        }
    }
}
