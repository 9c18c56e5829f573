//! Rate limits on minting (issue 9, attack 7): per lineage, per native client and
//! per source network.
//!
//! Without them one stolen (or merely buggy) native refresh token could be chained
//! through mint after mint, each one writing refresh-token mappings and an STT
//! record to the store and costing the IdP a refresh-token rotation.
//!
//! Each scope is a GCRA limiter ("generic cell rate algorithm", the token bucket
//! written as one timestamp per key): a key may make `burst` requests at once and
//! then one every `60 s / per_minute`. The limiters live in this process: **limits
//! are per instance**, so with N instances behind a load balancer a key may get up
//! to N times the configured rate. That was chosen over counting in the store
//! because a mint already costs store round trips on the critical path and a
//! limiter must keep working (and keep refusing) when the store is slow or down;
//! the per-instance bound is still what keeps one account from growing the store
//! without bound, since growth is bounded by rate × instances × TTL.
//!
//! Memory is bounded: each scope tracks at most `max_tracked` keys (64-bit keyed
//! hashes of the lineage id, client id or masked network, 16 bytes of state each).
//! A key whose bucket has refilled holds no information and is dropped first; when
//! a flood of distinct keys still fills the table, the eighth of the keys closest to
//! refilled are forgotten, which gives those keys their full burst back early — the
//! least permissive choice that does not refuse keys just because the table is full.

use crate::config::{MintRateLimit, Rate};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;

/// What a limit applies to (the `scope` label of `handoff_mint_rate_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One lineage: the refresh tokens that descend from one native login.
    Lineage,
    /// One native client id.
    Client,
    /// One source network (the client IP, after the trusted-proxy rule, masked to
    /// the configured prefix).
    Network,
}

impl Scope {
    /// Every scope, for metrics that should show a series at zero.
    pub const ALL: [Scope; 3] = [Scope::Lineage, Scope::Client, Scope::Network];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Lineage => "lineage",
            Scope::Client => "client",
            Scope::Network => "network",
        }
    }
}

/// A refused request: which limit, and how long until one more request is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit that refused.
    pub scope: Scope,
    /// Whole seconds to wait (at least 1): the `Retry-After` value.
    pub retry_after_secs: u64,
}

/// One GCRA limiter over keys hashed to 64 bits, with bounded memory.
#[derive(Debug)]
pub struct Limiter {
    /// Microseconds between two requests at the sustained rate.
    interval_us: u64,
    /// How far ahead of now a key's theoretical arrival time may run (burst − 1
    /// intervals).
    tolerance_us: u64,
    capacity: usize,
    hasher: std::collections::hash_map::RandomState,
    /// Key hash → theoretical arrival time (µs since the epoch).
    tats: Mutex<HashMap<u64, u64>>,
}

impl Limiter {
    /// A limiter allowing `rate`, tracking at most `capacity` keys.
    pub fn new(rate: Rate, capacity: usize) -> Self {
        let interval_us = (60_000_000 / u64::from(rate.per_minute.max(1))).max(1);
        Limiter {
            interval_us,
            tolerance_us: interval_us * u64::from(rate.burst.max(1) - 1),
            capacity: capacity.max(8),
            hasher: Default::default(),
            tats: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key` at `now_ms`; `Err(wait in µs)` when it is over
    /// the limit (and then nothing is counted).
    pub fn check(&self, key: &[u8], now_ms: u64) -> Result<(), u64> {
        let k = self.hasher.hash_one(key);
        let now = now_ms.saturating_mul(1000);
        let mut m = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let tat = m.get(&k).copied().unwrap_or(now).max(now);
        if tat - now > self.tolerance_us {
            return Err(tat - now - self.tolerance_us);
        }
        if m.len() >= self.capacity && !m.contains_key(&k) {
            self.evict(&mut m, now);
        }
        m.insert(k, tat + self.interval_us);
        Ok(())
    }

    /// How many keys are tracked (tests, metrics).
    pub fn tracked(&self) -> usize {
        self.tats.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn evict(&self, m: &mut HashMap<u64, u64>, now: u64) {
        // A refilled bucket is the same as no entry.
        m.retain(|_, tat| *tat > now);
        if m.len() < self.capacity {
            return;
        }
        // Forget the eighth closest to refilled (amortized: this runs once per
        // capacity/8 new keys at most).
        let mut tats: Vec<u64> = m.values().copied().collect();
        let k = (self.capacity / 8).max(1);
        let (_, cut, _) = tats.select_nth_unstable(k - 1);
        let cut = *cut;
        m.retain(|_, tat| *tat > cut);
    }
}

/// The network `ip` belongs to for rate limiting: IPv4 (and IPv4-mapped IPv6)
/// masked to `v4_prefix` bits, IPv6 to `v6_prefix` bits.
pub fn network_of(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            // The mask's top 32 bits, as an IPv4 mask.
            let mask = (leading_ones(32, v4_prefix) >> 96) as u32;
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & leading_ones(128, v6_prefix)).into()),
    }
}

/// A 128-bit mask whose first `prefix` bits (at most `width`) are set.
fn leading_ones(width: u8, prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(width)))
        .unwrap_or(0)
}

/// The three mint limits of one instance (`[mint.rate_limit]`).
#[derive(Debug)]
pub struct MintLimiter {
    lineage: Option<Limiter>,
    client: Option<Limiter>,
    network: Option<Limiter>,
    v4_prefix: u8,
    v6_prefix: u8,
}

impl MintLimiter {
    /// Limiters for the configured rates (a scope configured off has none).
    pub fn new(cfg: &MintRateLimit) -> Self {
        let make = |r: Option<Rate>| r.map(|r| Limiter::new(r, cfg.max_tracked));
        MintLimiter {
            lineage: make(cfg.lineage),
            client: make(cfg.client),
            network: make(cfg.network),
            v4_prefix: cfg.ipv4_prefix,
            v6_prefix: cfg.ipv6_prefix,
        }
    }

    fn check(
        limiter: &Option<Limiter>,
        scope: Scope,
        key: &[u8],
        now_ms: u64,
    ) -> Result<(), Limited> {
        let Some(l) = limiter else { return Ok(()) };
        l.check(key, now_ms).map_err(|wait_us| Limited {
            scope,
            retry_after_secs: wait_us.div_ceil(1_000_000).max(1),
        })
    }

    /// Counts a mint request from `ip`'s network.
    pub(crate) fn check_network(&self, ip: IpAddr, now_ms: u64) -> Result<(), Limited> {
        let net = network_of(ip, self.v4_prefix, self.v6_prefix);
        let key = match net {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        Self::check(&self.network, Scope::Network, &key, now_ms)
    }

    /// Counts a mint request of native client `client_id`.
    pub(crate) fn check_client(&self, client_id: &str, now_ms: u64) -> Result<(), Limited> {
        Self::check(&self.client, Scope::Client, client_id.as_bytes(), now_ms)
    }

    /// Counts a mint request from the refresh-token lineage `lineage`.
    pub(crate) fn check_lineage(&self, lineage: &str, now_ms: u64) -> Result<(), Limited> {
        Self::check(&self.lineage, Scope::Lineage, lineage.as_bytes(), now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    /// A limiter of `per_minute` with `burst`, tracking at most `capacity` keys.
    fn limiter(per_minute: u32, burst: u32, capacity: usize) -> Limiter {
        Limiter::new(Rate { per_minute, burst }, capacity)
    }

    #[test]
    fn burst_then_sustained_rate() {
        let l = limiter(10, 3, 100);
        for _ in 0..3 {
            assert_eq!(l.check(b"a", T0), Ok(()));
        }
        // Full: the next slot opens one interval (6 s) after the first request.
        assert_eq!(l.check(b"a", T0), Err(6_000_000));
        assert_eq!(l.check(b"a", T0 + 5_999), Err(1_000));
        // Other keys are independent.
        assert_eq!(l.check(b"b", T0), Ok(()));
        assert_eq!(l.check(b"a", T0 + 6_000), Ok(()));
        assert!(l.check(b"a", T0 + 6_000).is_err());
        // After a long pause the whole burst is back.
        for _ in 0..3 {
            assert_eq!(l.check(b"a", T0 + 600_000), Ok(()));
        }
        assert!(l.check(b"a", T0 + 600_000).is_err());
    }

    #[test]
    fn refused_requests_are_not_counted() {
        let l = limiter(60, 1, 100);
        assert!(l.check(b"a", T0).is_ok());
        for _ in 0..100 {
            assert!(l.check(b"a", T0 + 500).is_err());
        }
        assert!(l.check(b"a", T0 + 1_000).is_ok());
    }

    #[test]
    fn memory_is_bounded_and_busy_keys_are_kept() {
        let l = limiter(1, 2, 64);
        // One busy key, spent.
        assert!(l.check(b"busy", T0).is_ok());
        assert!(l.check(b"busy", T0).is_ok());
        assert!(l.check(b"busy", T0).is_err());
        // A flood of distinct keys, each with a single request.
        for i in 0..10_000u32 {
            assert!(l.check(&i.to_be_bytes(), T0 + 1).is_ok());
            assert!(l.tracked() <= 64);
        }
        // The busy key ran furthest ahead, so it is the last to be forgotten.
        assert!(l.check(b"busy", T0 + 2).is_err());
    }

    #[test]
    fn networks_are_masked() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(network_of(ip("192.0.2.77"), 24, 64), ip("192.0.2.0"));
        assert_eq!(network_of(ip("::ffff:192.0.2.77"), 24, 64), ip("192.0.2.0"));
        assert_eq!(
            network_of(ip("2001:db8:1:2:3:4:5:6"), 24, 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(network_of(ip("192.0.2.77"), 32, 128), ip("192.0.2.77"));
        assert_eq!(network_of(ip("192.0.2.77"), 0, 0), ip("0.0.0.0"));
        assert_eq!(network_of(ip("2001:db8::1"), 0, 0), ip("::"));
        // Every IPv4 prefix (and a too-long one) keeps exactly its leading bits.
        for p in 0..=33u8 {
            let want = u32::MAX.checked_shl(32 - u32::from(p.min(32))).unwrap_or(0);
            assert_eq!(
                network_of(ip("255.255.255.255"), p, 0),
                IpAddr::V4(want.into()),
                "/{p}"
            );
        }
    }

    #[test]
    fn scopes_limit_independently_and_off_means_off() {
        let cfg = MintRateLimit {
            lineage: Some(Rate {
                per_minute: 1,
                burst: 1,
            }),
            client: None,
            network: Some(Rate {
                per_minute: 1,
                burst: 2,
            }),
            ..MintRateLimit::default()
        };
        let m = MintLimiter::new(&cfg);
        assert!(m.check_lineage("L1", T0).is_ok());
        let e = m.check_lineage("L1", T0).unwrap_err();
        assert_eq!(e.scope, Scope::Lineage);
        assert_eq!(e.retry_after_secs, 60);
        assert!(m.check_lineage("L2", T0).is_ok());
        for _ in 0..1000 {
            assert!(m.check_client("native-app", T0).is_ok());
        }
        let a = "198.51.100.1".parse().unwrap();
        let b = "198.51.100.200".parse().unwrap();
        assert!(m.check_network(a, T0).is_ok());
        assert!(m.check_network(b, T0).is_ok());
        assert_eq!(m.check_network(a, T0).unwrap_err().scope, Scope::Network);
        assert!(m.check_network("198.51.101.1".parse().unwrap(), T0).is_ok());
    }
}
