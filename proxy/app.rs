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
use crate::session::SessionCache;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::Store;
use crate::transaction::TxKey;
use arc_swap::ArcSwap;
use handoff_rules::Policy;
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
    pub policy: ArcSwap<Policy>,
    /// Signs assertions.
    pub signer: Signer,
    /// Seals login-transaction cookies.
    pub tx_key: TxKey,
    /// Recently read web-session states (forgotten on every revocation announced).
    pub sessions: Arc<SessionCache>,
    /// The public JWKS, serialized once.
    pub jwks_json: bytes::Bytes,
    /// handoff's client for the IdP.
    pub idp: Arc<IdpClient>,
    /// Counters.
    pub metrics: Metrics,
    /// Time.
    pub clock: SharedClock,
    /// `urn:{public_host}:session_transfer`.
    pub mint_audience: String,
}

/// Loads the rules file named by the config (or the built-in defaults).
pub fn load_policy(config: &Config) -> Result<Policy, String> {
    match &config.rules_file {
        None => Policy::from_toml("", "(built-in defaults)").map_err(|d| d.to_string()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
            Policy::from_toml(&text, &p.display().to_string()).map_err(|d| d.to_string())
        }
    }
}

/// Loads the assertion signing key the config names, and derives the
/// transaction-cookie key from the same secret (so instances that share the
/// signing key can open each other's transaction cookies).
pub fn load_signer(config: &Config) -> Result<(Signer, TxKey), String> {
    match &config.assertion.key {
        SigningKey::Ed25519File(p) => {
            let bytes =
                std::fs::read(p).map_err(|e| format!("assertion.key_file {}: {e}", p.display()))?;
            let signer = Signer::ed25519_from_pkcs8(&bytes)
                .map_err(|e| format!("assertion.key_file {}: {e}", p.display()))?;
            Ok((signer, TxKey::derive(&bytes)))
        }
        SigningKey::Hs256File(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| format!("assertion.secret_file {}: {e}", p.display()))?;
            let trimmed = bytes.trim_ascii();
            let signer = Signer::hs256(trimmed)
                .map_err(|e| format!("assertion.secret_file {}: {e}", p.display()))?;
            Ok((signer, TxKey::derive(trimmed)))
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
            StoreConfig::Memory => Arc::new(MemoryStore::new(clock.clone())),
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
        let policy = load_policy(&config)?;
        for w in policy.warnings() {
            tracing::warn!(%w, "rules");
        }
        let (signer, tx_key) = load_signer(&config)?;
        let jwks_json = serde_json::to_vec(&signer.public_jwks())
            .expect("JWKS serializes")
            .into();
        let idp = IdpClient::new(&config, clock.clone())?;
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
            config,
            store,
            policy: ArcSwap::from_pointee(policy),
            signer,
            tx_key,
            sessions: sessions.clone(),
            jwks_json,
            idp,
            metrics: Metrics::new(),
            clock,
        }))
    }

    /// Re-reads the rules file; on error the running rules stay in force.
    pub fn reload_rules(&self) -> Result<(), String> {
        match load_policy(&self.config) {
            Ok(p) => {
                self.policy.store(Arc::new(p));
                self.metrics
                    .rules_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!("rules reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .rules_reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::error!(error = %e, "rules reload rejected; the running rules stay in force");
                Err(e)
            }
        }
    }
}
