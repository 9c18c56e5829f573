//! Prometheus counters (SPEC §6), one registry per handoff instance.
//!
//! Labels are closed sets (outcomes and reasons are `&'static str` from the code),
//! never values from requests, so cardinality is bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// handoff's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `handoff_mints_total{outcome}`.
    pub mints: IntCounterVec,
    /// `handoff_redemptions_total{outcome,reason}`.
    pub redemptions: IntCounterVec,
    /// `handoff_sessions_total{outcome}`: bound, expired_absolute, expired_idle,
    /// revoked, store_unavailable, different_subject.
    pub sessions: IntCounterVec,
    /// `handoff_session_touches_total`: idle-time writes.
    pub session_touches: prometheus::IntCounter,
    /// `handoff_transaction_hops_total{outcome}`.
    pub transaction_hops: IntCounterVec,
    /// `handoff_revocations_total{what,why}`.
    pub revocations: IntCounterVec,
    /// `handoff_web_refresh_tokens_total{outcome}`: withheld, bound, allowed, denied, ...
    pub web_refresh_tokens: IntCounterVec,
    /// `handoff_store_errors_total{op}`.
    pub store_errors: IntCounterVec,
    /// `handoff_store_seconds{op}`.
    pub store_latency: HistogramVec,
    /// `handoff_rules_reloads_total{outcome}`.
    pub rules_reloads: IntCounterVec,
    /// `handoff_request_seconds{route}`.
    pub request_latency: HistogramVec,
    /// `handoff_mint_rate_limited_total{scope}`: mints refused with 429, by the
    /// limit that refused them (`lineage`, `client`, `network`; see
    /// [`crate::ratelimit::Scope`]).
    pub mint_rate_limited: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every handoff metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric name");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric name");
            h
        };
        let m = Metrics {
            mints: counter(
                "handoff_mints_total",
                "Session transfer token mint requests by outcome.",
                &["outcome"],
            ),
            redemptions: counter(
                "handoff_redemptions_total",
                "Session transfer token redemptions by outcome and reason.",
                &["outcome", "reason"],
            ),
            sessions: counter(
                "handoff_sessions_total",
                "Web session events by outcome.",
                &["outcome"],
            ),
            session_touches: {
                let c = prometheus::IntCounter::new(
                    "handoff_session_touches_total",
                    "Idle-time writes of web sessions.",
                )
                .expect("static metric definition");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric name");
                c
            },
            transaction_hops: counter(
                "handoff_transaction_hops_total",
                "Login transaction hops by outcome.",
                &["outcome"],
            ),
            revocations: counter(
                "handoff_revocations_total",
                "Revocations by what was revoked and why.",
                &["what", "why"],
            ),
            web_refresh_tokens: counter(
                "handoff_web_refresh_tokens_total",
                "Web refresh tokens mediated at the token endpoint, by outcome.",
                &["outcome"],
            ),
            store_errors: counter(
                "handoff_store_errors_total",
                "Store operations that failed or timed out.",
                &["op"],
            ),
            store_latency: histogram(
                "handoff_store_seconds",
                "Store operation latency.",
                &["op"],
                vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
            ),
            rules_reloads: counter(
                "handoff_rules_reloads_total",
                "Rules file reloads by outcome.",
                &["outcome"],
            ),
            request_latency: histogram(
                "handoff_request_seconds",
                "Latency of requests handoff answers or proxies, by route.",
                &["route"],
                prometheus::DEFAULT_BUCKETS.to_vec(),
            ),
            mint_rate_limited: counter(
                "handoff_mint_rate_limited_total",
                "Mint requests refused by a rate limit (429), by the limit's scope.",
                &["scope"],
            ),
            registry,
        };
        // Make the reasons visible at zero so dashboards and alerts have a series.
        for reason in crate::labels::Fallback::ALL {
            m.redemptions
                .with_label_values(&["fallback", reason.label()]);
        }
        for scope in crate::ratelimit::Scope::ALL {
            m.mint_rate_limited.with_label_values(&[scope.as_str()]);
        }
        m
    }

    /// Counts a redemption that fell back to an ordinary login.
    pub(crate) fn redemption_fallback(&self, reason: crate::labels::Fallback) {
        self.redemptions
            .with_label_values(&["fallback", reason.label()])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Current value of `handoff_mint_rate_limited_total{scope}` (tests).
    pub fn mint_rate_limited_count(&self, scope: crate::ratelimit::Scope) -> u64 {
        self.mint_rate_limited
            .with_label_values(&[scope.as_str()])
            .get()
    }

    /// Current value of `handoff_redemptions_total{outcome,reason}` (tests, benches).
    pub fn redemption_count(&self, outcome: &str, reason: &str) -> u64 {
        self.redemptions.with_label_values(&[outcome, reason]).get()
    }
}
