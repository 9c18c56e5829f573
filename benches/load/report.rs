//! Results: one [`Point`] per (scenario, concurrency), the stdout table with every
//! figure as a ratio to bare pingora (and nginx) measured in the same run, the
//! issue's targets checked against them, and the JSON file for tooling.

use crate::client::Outcome;
use crate::procs::MonitorCounts;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Scenario keys, in table order, with their labels.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("direct", "direct to upstream"),
    ("pingora", "bare pingora"),
    ("nginx", "nginx"),
    ("pass", "handoff pass-through"),
    ("session", "handoff session cookie"),
    ("idp-token", "IdP token grant (direct)"),
    ("mint", "handoff mint (redis)"),
    ("redeem", "handoff redeem (redis)"),
    ("mint-mem", "handoff mint (memory)"),
    ("redeem-mem", "handoff redeem (memory)"),
    ("baseline", "baseline"),
    ("target", "target"),
];

/// The label of a scenario key.
pub fn label(key: &str) -> &'static str {
    SCENARIOS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, l)| *l)
        .unwrap_or("?")
}

/// One measured point.
#[derive(Debug, Clone)]
pub struct Point {
    /// Scenario key.
    pub scenario: String,
    /// Concurrent connections.
    pub conns: usize,
    /// Open-loop rate, if any.
    pub rate: Option<f64>,
    /// The process under test (`handoff-redis`, `pingora`, ...).
    pub server: String,
    /// What the client saw.
    pub outcome: Outcome,
    /// CPU µs per completed request, by process (and `client`).
    pub cpu_us: BTreeMap<String, f64>,
    /// Peak RSS during the point, KiB, by process.
    pub peak_rss_kib: BTreeMap<String, u64>,
    /// Redis commands per request in the window (script-internal ones included).
    pub redis_cmds_per_req: Option<f64>,
    /// handoff's counters that moved during the point (mints, redemptions by
    /// outcome and reason, sessions, store errors).
    pub handoff_counters: BTreeMap<String, f64>,
    /// Share of the machine's CPU busy during the window (0..1).
    pub machine_busy: f64,
    /// CPU used by processes other than this run's during the window, in cores.
    pub other_cores: f64,
    /// Interrupt and softirq time during the window (loopback TCP), in cores.
    pub irq_cores: f64,
    /// Connections the fake IdP accepted during the point (connection reuse check).
    pub upstream_conns: Option<u64>,
    /// Which interleaved round (0-based).
    pub round: usize,
    /// Remarks (e.g. the window ended early because the tokens ran out).
    pub notes: Vec<String>,
}

impl Point {
    /// Server CPU µs per request.
    pub fn server_cpu(&self) -> Option<f64> {
        self.cpu_us.get(&self.server).copied()
    }

    /// CPU µs per request of every server process in the path (not the client).
    pub fn stack_cpu(&self) -> f64 {
        self.cpu_us
            .iter()
            .filter(|(k, _)| k.as_str() != "client")
            .map(|(_, v)| *v)
            .sum()
    }

    /// Peak RSS of the server, MiB.
    pub fn server_rss_mib(&self) -> Option<f64> {
        self.peak_rss_kib
            .get(&self.server)
            .map(|k| *k as f64 / 1024.0)
    }

    fn json(&self) -> Value {
        let o = &self.outcome;
        json!({
            "scenario": self.scenario,
            "label": label(&self.scenario),
            "connections": self.conns,
            "open_loop_rate": self.rate,
            "server": self.server,
            "ok": o.ok,
            "errors": o.errors,
            "first_error": o.first_error,
            "window_s": o.window.as_secs_f64(),
            "rps": o.rps(),
            "latency_us": {
                "p50": nan_null(o.pct_us(0.50)), "p90": nan_null(o.pct_us(0.90)),
                "p99": nan_null(o.pct_us(0.99)), "p999": nan_null(o.pct_us(0.999)),
                "max": nan_null(o.pct_us(1.0)), "mean": nan_null(o.mean_us()),
            },
            "cpu_us_per_request": self.cpu_us,
            "peak_rss_kib": self.peak_rss_kib,
            "redis_commands_per_request": self.redis_cmds_per_req,
            "handoff_counters": self.handoff_counters,
            "machine_busy": self.machine_busy,
            "other_processes_cores": self.other_cores,
            "irq_softirq_cores": self.irq_cores,
            "upstream_connections_opened": self.upstream_conns,
            "round": self.round,
            "notes": self.notes,
        })
    }
}

fn nan_null(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// Store traffic of sequential requests: round trips counted at a relay in
/// front of redis, commands seen by `MONITOR`.
#[derive(Debug, Clone)]
pub struct RoundTrips {
    /// Scenario key.
    pub scenario: String,
    /// Successful requests during the probe.
    pub requests: u64,
    /// Round trips to redis (a pipeline is one).
    pub round_trips: u64,
    /// What redis saw.
    pub counts: MonitorCounts,
}

impl RoundTrips {
    /// Round trips per request.
    pub fn per_request(&self) -> f64 {
        if self.requests == 0 {
            f64::NAN
        } else {
            self.round_trips as f64 / self.requests as f64
        }
    }

    /// Client (top-level) commands per request.
    pub fn commands_per_request(&self) -> f64 {
        if self.requests == 0 {
            f64::NAN
        } else {
            self.counts.top_level_total() as f64 / self.requests as f64
        }
    }
}

/// Redis memory per outstanding STT.
#[derive(Debug, Clone, Default)]
pub struct StoreMemory {
    /// Keys measured with `MEMORY USAGE`.
    pub keys: usize,
    /// Mean `MEMORY USAGE` of an STT key, bytes.
    pub mean: f64,
    /// Smallest and largest.
    pub min: u64,
    pub max: u64,
    /// `used_memory` growth per STT over a batch of fresh mints, bytes.
    pub used_memory_per_stt: Option<f64>,
    /// Mean `MEMORY USAGE` of a replay marker (`used`) key, bytes.
    pub used_marker_mean: Option<f64>,
}

/// One target of the issue, checked.
#[derive(Debug, Clone)]
pub struct TargetCheck {
    pub name: String,
    /// Some(true) met, Some(false) missed, None not measured.
    pub met: Option<bool>,
    pub detail: String,
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Report {
    pub header: String,
    pub points: Vec<Point>,
    pub round_trips: Vec<RoundTrips>,
    pub store_memory: Option<StoreMemory>,
    /// Mint's own cost at the lowest concurrency: (conns, mint p50 − IdP p50 in µs, handoff CPU µs/mint).
    pub mint_own: Option<(usize, f64, f64)>,
    pub skipped: Vec<String>,
    /// The RSS level again, open loop at one request per connection per second.
    pub keepalive: Vec<Point>,
    pub env: BTreeMap<String, String>,
    /// Whether ratios are to bare pingora/nginx (local) or to a baseline (target mode).
    pub baseline_key: Option<String>,
}

impl Report {
    /// The point of `scenario` at `conns`: the median-throughput round when it
    /// ran several.
    fn find(&self, scenario: &str, conns: usize) -> Option<&Point> {
        let mut v: Vec<&Point> = self
            .points
            .iter()
            .filter(|p| p.scenario == scenario && p.conns == conns)
            .collect();
        v.sort_by(|a, b| a.outcome.rps().total_cmp(&b.outcome.rps()));
        v.get(v.len() / 2).copied()
    }

    /// How many rounds `scenario` ran at `conns`, and the spread of their throughput.
    fn spread(&self, scenario: &str, conns: usize) -> Option<(usize, f64, f64)> {
        let v: Vec<f64> = self
            .points
            .iter()
            .filter(|p| p.scenario == scenario && p.conns == conns)
            .map(|p| p.outcome.rps())
            .collect();
        (v.len() > 1).then(|| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            (v.len(), lo, hi)
        })
    }

    fn levels(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.points.iter().map(|p| p.conns).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut s = self.column_heads();
        for c in self.levels() {
            self.level_rows(&mut s, c);
        }
        self.round_trip_lines(&mut s);
        self.keepalive_lines(&mut s);
        self.tail_lines(&mut s);
        s
    }

    /// The header line and the column heads.
    fn column_heads(&self) -> String {
        let mut s = String::new();
        s.push_str(&self.header);
        s.push('\n');
        let base = self.base();
        let base_short = if base == "pingora" {
            "×pingora"
        } else {
            "×baseln"
        };
        s.push_str(&format!(
            "{:<27} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7} {:>8} {:>7} {:>8} {:>6}\n",
            "scenario",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "cpu µs/r",
            "stack µs",
            "rss MiB",
            base_short,
            "×nginx",
            "Δp99 ms",
            "errors"
        ));
        s
    }

    /// The scenario ratios are to: bare pingora, or the `--target` baseline.
    fn base(&self) -> &str {
        self.baseline_key.as_deref().unwrap_or("pingora")
    }

    /// The rows of one level, with their notes.
    fn level_rows(&self, s: &mut String, c: usize) {
        let rate = self
            .points
            .iter()
            .find(|p| p.conns == c)
            .and_then(|p| p.rate)
            .map(|r| format!(", open loop at {r:.0} req/s"))
            .unwrap_or_default();
        s.push_str(&format!("-- {c} connection(s){rate}\n"));
        let b = self.find(self.base(), c);
        let n = self.find("nginx", c);
        for (key, _) in SCENARIOS {
            let Some(p) = self.find(key, c) else { continue };
            let o = &p.outcome;
            // The median of per-round ratios where both ran in the same rounds.
            let ratio = |x: Option<&Point>| {
                x.and_then(|x| ratio_at(self, key, &x.scenario, c))
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "-".into())
            };
            let dp99 = b
                .map(|b| format!("{:+.3}", (o.pct_us(0.99) - b.outcome.pct_us(0.99)) / 1000.0))
                .unwrap_or_else(|| "-".into());
            s.push_str(&format!(
                "{:<27} {:>9.0} {:>7.3} {:>7.3} {:>8.3} {:>8} {:>8} {:>7} {:>8} {:>7} {:>8} {:>6}\n",
                label(key),
                o.rps(),
                o.pct_us(0.50) / 1000.0,
                o.pct_us(0.99) / 1000.0,
                o.pct_us(0.999) / 1000.0,
                p.server_cpu().map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
                if p.cpu_us.is_empty() { "-".to_string() } else { format!("{:.1}", p.stack_cpu()) },
                p.server_rss_mib().map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
                ratio(b),
                ratio(n),
                dp99,
                o.errors,
            ));
            if let Some((n, lo, hi)) = self.spread(key, c) {
                s.push_str(&format!(
                    "{:<27}   ^ median of {n} rounds ({lo:.0}..{hi:.0} req/s)\n",
                    ""
                ));
            }
            for note in &p.notes {
                s.push_str(&format!("{:<27}   ^ {note}\n", ""));
            }
        }
    }

    /// Store traffic per request, from the probes.
    fn round_trip_lines(&self, s: &mut String) {
        if self.round_trips.is_empty() {
            return;
        }
        s.push_str("\nstore traffic per request (sequential requests to a third instance; round trips counted at a relay in front of redis, commands by MONITOR):\n");
        for r in &self.round_trips {
            let detail: Vec<String> = r
                .counts
                .top_level
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect();
            s.push_str(&format!(
                    "  {:<27} {:>5.2} round trips, {:>5.2} commands/request over {} requests  [{}]  (+{} inside scripts)\n",
                    label(&r.scenario),
                    r.per_request(),
                    r.commands_per_request(),
                    r.requests,
                    if detail.is_empty() { "none".to_string() } else { detail.join(" ") },
                    r.counts.in_scripts
                ));
        }
    }

    /// Peak RSS at the RSS point's keep-alive connections.
    fn keepalive_lines(&self, s: &mut String) {
        if self.keepalive.is_empty() {
            return;
        }
        s.push_str(&format!(
                "\npeak RSS holding {} keep-alive connections, each sending one request a second (open loop):\n",
                self.keepalive[0].conns
            ));
        for p in &self.keepalive {
            s.push_str(&format!(
                "  {:<27} {:>7} MiB   ({:.0} req/s, p99 {:.3} ms, {} errors)\n",
                label(&p.scenario),
                p.server_rss_mib()
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "-".into()),
                p.outcome.rps(),
                p.outcome.pct_us(0.99) / 1000.0,
                p.outcome.errors
            ));
        }
    }

    /// Redis memory per STT, mint's own cost, what was skipped.
    fn tail_lines(&self, s: &mut String) {
        if let Some(m) = &self.store_memory {
            s.push_str(&format!(
                "\nredis memory per outstanding STT: MEMORY USAGE mean {:.0} B (min {}, max {}, {} keys)",
                m.mean, m.min, m.max, m.keys
            ));
            if let Some(u) = m.used_memory_per_stt {
                s.push_str(&format!("; used_memory growth {u:.0} B/STT"));
            }
            if let Some(u) = m.used_marker_mean {
                s.push_str(&format!("; replay marker {u:.0} B"));
            }
            s.push('\n');
        }
        if let Some((c, own, cpu)) = self.mint_own {
            s.push_str(&format!(
                "mint, handoff's own cost at {c} connection(s): p50(mint) − p50(IdP token grant) = {own:.0} µs; handoff CPU {cpu:.0} µs/mint\n"
            ));
        }
        for sk in &self.skipped {
            s.push_str(&format!("skipped: {sk}\n"));
        }
    }

    /// The issue's targets, checked against this run.
    pub fn targets(&self) -> Vec<TargetCheck> {
        let levels = self.levels();
        CHECKS.iter().map(|check| check(self, &levels)).collect()
    }

    /// The store round-trip probe of `scenario`.
    fn probe_of(&self, scenario: &str) -> Option<&RoundTrips> {
        self.round_trips.iter().find(|r| r.scenario == scenario)
    }

    /// The targets as text.
    pub fn targets_text(&self) -> String {
        let mut s = String::from("\ntargets (issue 6), measured in this run:\n");
        for t in self.targets() {
            let tag = match t.met {
                Some(true) => "MET   ",
                Some(false) => "MISSED",
                None => "n/a   ",
            };
            s.push_str(&format!("  [{tag}] {}: {}\n", t.name, t.detail));
        }
        s
    }

    /// Writes [`Report::json`] to `path` and says where.
    pub fn write_json(&self, path: &std::path::Path, local: bool) -> Result<(), String> {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&self.json(local)).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("\nJSON: {}", path.display());
        Ok(())
    }

    /// The JSON document.
    pub fn json(&self, local: bool) -> Value {
        let targets: Vec<Value> = if local {
            self.targets()
                .iter()
                .map(|t| json!({"target": t.name, "met": t.met, "detail": t.detail}))
                .collect()
        } else {
            Vec::new()
        };
        json!({
            "tool": "handoff benches/load",
            "environment": self.env,
            "header": self.header,
            "points": self.points.iter().map(Point::json).collect::<Vec<_>>(),
            "store_round_trips": self.round_trips.iter().map(|r| json!({
                "scenario": r.scenario,
                "requests": r.requests,
                "round_trips": r.round_trips,
                "round_trips_per_request": nan_null(r.per_request()),
                "commands_per_request": nan_null(r.commands_per_request()),
                "top_level": r.counts.top_level,
                "inside_scripts": r.counts.in_scripts,
            })).collect::<Vec<_>>(),
            "redis_memory_per_stt": self.store_memory.as_ref().map(|m| json!({
                "keys": m.keys, "memory_usage_mean": m.mean, "min": m.min, "max": m.max,
                "used_memory_growth_per_stt": m.used_memory_per_stt,
                "replay_marker_mean": m.used_marker_mean,
            })),
            "mint_own_cost": self.mint_own.map(|(c, own, cpu)| json!({
                "connections": c, "p50_minus_idp_p50_us": own, "handoff_cpu_us_per_mint": cpu,
            })),
            "skipped": self.skipped,
            "keepalive_rss": self.keepalive.iter().map(Point::json).collect::<Vec<_>>(),
            "targets": targets,
        })
    }
}

/// The issue's targets, in the order they are printed; each gets the run's levels.
const CHECKS: &[fn(&Report, &[usize]) -> TargetCheck] = &[
    pass_throughput,
    pass_p99,
    session_cookie,
    redeem_throughput,
    redeem_round_trips,
    mint_cost,
    rss_at_1000,
    redis_memory_per_stt,
];

/// Target 1, pass-through vs bare pingora: throughput.
fn pass_throughput(r: &Report, levels: &[usize]) -> TargetCheck {
    const NAME: &str = "pass-through ≥ 0.90 × bare pingora throughput";
    let Some((worst, at)) = ratio_worst(r, levels, "pass", "pingora") else {
        return not_measured(NAME);
    };
    let all_ratios: Vec<String> = levels
        .iter()
        .filter_map(|&c| {
            let q = ratio_at(r, "pass", "pingora", c)?;
            let cpu = cpu_ratio(r, "pass", "pingora", c)
                .map(|x| format!(", CPU/request ×{x:.2}"))
                .unwrap_or_default();
            Some(format!("{c} conns {q:.2}{cpu}"))
        })
        .collect();
    TargetCheck {
        name: NAME.into(),
        met: Some(worst >= 0.90),
        detail: format!(
            "lowest ratio {worst:.3} (at {at} conns){}; by level: {}",
            miss(worst, 0.90),
            all_ratios.join("; ")
        ),
    }
}

/// Target 1, pass-through vs bare pingora: p99.
fn pass_p99(r: &Report, levels: &[usize]) -> TargetCheck {
    const NAME: &str = "pass-through p99 within +0.25 ms of bare pingora";
    let mut worst_p99 = None::<(f64, usize)>;
    for &c in levels {
        if let (Some(p), Some(b)) = (r.find("pass", c), r.find("pingora", c)) {
            if b.outcome.rps() > 0.0 {
                let d = (p.outcome.pct_us(0.99) - b.outcome.pct_us(0.99)) / 1000.0;
                if worst_p99.is_none_or(|(w, _)| d > w) {
                    worst_p99 = Some((d, c));
                }
            }
        }
    }
    let Some((d, c)) = worst_p99 else {
        return not_measured(NAME);
    };
    TargetCheck {
        name: NAME.into(),
        met: Some(d <= 0.25),
        detail: format!(
            "largest Δp99 {d:+.3} ms (at {c} conns){}",
            over(d > 0.25, d - 0.25, 3, " ms")
        ),
    }
}

/// Target 2, a bound session cookie.
fn session_cookie(r: &Report, levels: &[usize]) -> TargetCheck {
    const NAME: &str =
        "bound session cookie: ≥ 0.85 × pass-through, no store round trip when cached";
    let Some((q, c)) = ratio_worst(r, levels, "session", "pass") else {
        return not_measured(NAME);
    };
    let trips = r.probe_of("session");
    let trips_ok = trips.map(|t| t.per_request() < 0.01);
    TargetCheck {
        name: NAME.into(),
        met: Some(q >= 0.85 && trips_ok != Some(false)),
        detail: format!(
            "lowest ratio {q:.3} (at {c} conns){}; store round trips/request with a fresh cache {}",
            miss(q, 0.85),
            trips
                .map(|t| format!("{:.3}", t.per_request()))
                .unwrap_or_else(|| "not measured".into())
        ),
    }
}

/// Target 3, redeem: throughput.
fn redeem_throughput(r: &Report, levels: &[usize]) -> TargetCheck {
    const NAME: &str = "redeem ≥ 0.50 × pass-through throughput";
    let Some((q, c)) = ratio_worst(r, levels, "redeem", "pass") else {
        return not_measured(NAME);
    };
    TargetCheck {
        name: NAME.into(),
        met: Some(q >= 0.50),
        detail: format!(
            "lowest ratio {q:.3} (at {c} conns, redis store){}",
            miss(q, 0.50)
        ),
    }
}

/// Target 3, redeem: store round trips.
fn redeem_round_trips(r: &Report, _levels: &[usize]) -> TargetCheck {
    const NAME: &str = "exactly one store round trip per redemption";
    let Some(t) = r.probe_of("redeem").filter(|t| t.requests > 0) else {
        return not_measured(NAME);
    };
    TargetCheck {
        name: NAME.into(),
        met: Some((t.per_request() - 1.0).abs() < 1e-9),
        detail: format!(
            "{:.2} round trips ({:.2} commands) per redemption over {} redemptions{}",
            t.per_request(),
            t.commands_per_request(),
            t.requests,
            over(t.per_request() > 1.0, t.per_request() - 1.0, 2, "")
        ),
    }
}

/// Target 4, mint: handoff's own cost.
fn mint_cost(r: &Report, _levels: &[usize]) -> TargetCheck {
    const NAME: &str = "mint: handoff's own cost < 100 µs at p50";
    let Some((c, own, cpu)) = r.mint_own else {
        return not_measured(NAME);
    };
    TargetCheck {
        name: NAME.into(),
        met: Some(own < 100.0),
        detail: format!(
            "p50(mint) − p50(IdP grant) = {own:.0} µs at {c} conn(s){}; handoff CPU {cpu:.0} µs/mint",
            over(own >= 100.0, own - 100.0, 0, " µs")
        ),
    }
}

/// Target 5, RSS at 1,000 connections: mostly idle keep-alive connections, and the
/// same number of requests in flight (closed loop), next to bare pingora.
fn rss_at_1000(r: &Report, _levels: &[usize]) -> TargetCheck {
    const NAME: &str = "handoff RSS < 64 MiB at 1,000 keep-alive connections";
    let rss_of = |v: &[Point], k: &str| {
        v.iter()
            .filter(|p| p.scenario == k && p.conns >= 1000)
            .filter_map(|p| p.server_rss_mib())
            .fold(None::<f64>, |a, m| Some(a.map_or(m, |a| a.max(m))))
    };
    let busy: Vec<Point> = r
        .points
        .iter()
        .filter(|p| p.conns >= 1000)
        .cloned()
        .collect();
    let (idle, idle_base) = (
        rss_of(&r.keepalive, "pass"),
        rss_of(&r.keepalive, "pingora"),
    );
    let (inflight, inflight_base) = (rss_of(&busy, "pass"), rss_of(&busy, "pingora"));
    if idle.is_none() && inflight.is_none() {
        return not_measured(NAME);
    }
    let f = |v: Option<f64>| {
        v.map(|m| format!("{m:.1} MiB"))
            .unwrap_or_else(|| "not measured".into())
    };
    let worst = idle.into_iter().chain(inflight).fold(0.0, f64::max);
    TargetCheck {
        name: NAME.into(),
        met: Some(worst < 64.0),
        detail: format!(
            "peak RSS {} with 1,000 mostly idle connections (bare pingora {}); {} with 1,000 requests in flight (bare pingora {}){}",
            f(idle),
            f(idle_base),
            f(inflight),
            f(inflight_base),
            over(worst >= 64.0, worst - 64.0, 1, " MiB")
        ),
    }
}

/// Target 6, Redis memory per outstanding STT.
fn redis_memory_per_stt(r: &Report, _levels: &[usize]) -> TargetCheck {
    const NAME: &str = "Redis memory per outstanding STT < 300 bytes (MEMORY USAGE)";
    let Some(m) = r.store_memory.as_ref().filter(|m| m.keys > 0) else {
        return not_measured(NAME);
    };
    TargetCheck {
        name: NAME.into(),
        met: Some(m.mean < 300.0),
        detail: format!(
            "mean {:.0} B over {} keys{}",
            m.mean,
            m.keys,
            over(m.mean >= 300.0, m.mean - 300.0, 0, " B")
        ),
    }
}

/// The throughput ratio a/b at `c`: the median of the per-round ratios when both
/// ran in the same interleaved rounds (each pair close in time, so a burst of
/// noise hits both), else the ratio of the two medians.
fn ratio_at(r: &Report, a: &str, b: &str, c: usize) -> Option<f64> {
    let rounds = |k: &str| -> Vec<&Point> {
        r.points
            .iter()
            .filter(|p| p.scenario == k && p.conns == c)
            .collect()
    };
    let (xa, xb) = (rounds(a), rounds(b));
    let mut paired: Vec<f64> = xa
        .iter()
        .filter_map(|p| {
            let q = xb.iter().find(|o| o.round == p.round)?;
            (q.outcome.rps() > 0.0).then(|| p.outcome.rps() / q.outcome.rps())
        })
        .collect();
    if xa.len() > 1 && paired.len() == xa.len() {
        paired.sort_by(f64::total_cmp);
        return Some(paired[paired.len() / 2]);
    }
    let (x, y) = (r.find(a, c)?, r.find(b, c)?);
    (y.outcome.rps() > 0.0).then(|| x.outcome.rps() / y.outcome.rps())
}

fn ratio_worst(r: &Report, levels: &[usize], a: &str, b: &str) -> Option<(f64, usize)> {
    let mut worst = None::<(f64, usize)>;
    for &c in levels {
        if let Some(q) = ratio_at(r, a, b, c) {
            if worst.is_none_or(|(w, _)| q < w) {
                worst = Some((q, c));
            }
        }
    }
    worst
}

/// Server CPU per request of `a` over `b` at `c` (medians over rounds).
fn cpu_ratio(r: &Report, a: &str, b: &str, c: usize) -> Option<f64> {
    let med = |k: &str| {
        let mut v: Vec<f64> = r
            .points
            .iter()
            .filter(|p| p.scenario == k && p.conns == c)
            .filter_map(Point::server_cpu)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    Some(med(a)? / med(b)?)
}

fn miss(r: f64, goal: f64) -> String {
    if r < goal {
        format!(
            ": missed by {:.3} ({:.1}% short)",
            goal - r,
            (goal - r) / goal * 100.0
        )
    } else {
        String::new()
    }
}

/// `: missed by <by><unit>` when `missed`, else nothing.
fn over(missed: bool, by: f64, precision: usize, unit: &str) -> String {
    if missed {
        format!(": missed by {by:.precision$}{unit}")
    } else {
        String::new()
    }
}

fn not_measured(name: &str) -> TargetCheck {
    TargetCheck {
        name: name.into(),
        met: None,
        detail: "not measured in this run".into(),
    }
}
