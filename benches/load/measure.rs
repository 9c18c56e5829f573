//! Load generation and what is measured around it: one timed point (throughput,
//! latency percentiles, CPU time per request, peak RSS, Redis commands, handoff's
//! counters, the machine's noise), untimed driving, and store round trips.

use crate::client::{self, Engine, Gen, Mode, Outcome, Plan, Window};
use crate::lab::{Handoff, Lab};
use crate::procs::{self, Proc, RedisProbe};
use crate::report::{self, Point, RoundTrips};
use crate::requests::{Pool, TokenGrant};
use crate::settings::open_rate;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// One measured point: what to send where, and whose CPU and RSS to account
/// (the first process is the server under test).
#[derive(Clone)]
pub struct Run<'a> {
    pub key: &'a str,
    pub addr: SocketAddr,
    pub gen: Arc<dyn Gen>,
    pub conns: usize,
    pub warmup: Duration,
    pub max_requests: u64,
    pub procs: Vec<&'a Proc>,
    pub redis: bool,
    pub handoff: Option<&'a Handoff>,
    /// Overrides the run's loop mode.
    pub mode: Option<Mode>,
}

/// Snapshots at the edges of the measured window.
struct Snaps<'a> {
    procs: Vec<&'a Proc>,
    redis: Option<&'a mut RedisProbe>,
    /// Busy ticks of the whole machine at the edges.
    machine: [(u64, u64, u64); 2],
    t0: BTreeMap<String, u64>,
    t1: BTreeMap<String, u64>,
    rss: BTreeMap<String, u64>,
    redis0: u64,
    redis1: u64,
}

impl Window for Snaps<'_> {
    fn open(&mut self) {
        for p in &self.procs {
            p.reset_peak();
            self.t0.insert(p.name.clone(), p.sample().ticks);
        }
        self.t0.insert("client".into(), procs::self_ticks());
        self.machine[0] = procs::machine_ticks();
        if let Some(r) = self.redis.as_mut() {
            self.redis0 = r.commands_processed();
        }
    }
    fn close(&mut self) {
        for p in &self.procs {
            self.t1.insert(p.name.clone(), p.sample().ticks);
            self.rss.insert(p.name.clone(), p.peak_rss_kib());
        }
        self.t1.insert("client".into(), procs::self_ticks());
        self.machine[1] = procs::machine_ticks();
        if let Some(r) = self.redis.as_mut() {
            // The INFO call itself counts once.
            self.redis1 = r.commands_processed().saturating_sub(1);
        }
    }
}

/// How busy the machine was during a window.
struct Load {
    /// Share of the machine's CPU busy (0..1).
    machine_busy: f64,
    /// Cores that went to processes other than this run's.
    other_cores: f64,
    /// Cores of interrupt and softirq time.
    irq_cores: f64,
}

impl<'a> Snaps<'a> {
    fn new(procs: Vec<&'a Proc>, redis: Option<&'a mut RedisProbe>) -> Snaps<'a> {
        Snaps {
            procs,
            redis,
            t0: BTreeMap::new(),
            t1: BTreeMap::new(),
            rss: BTreeMap::new(),
            redis0: 0,
            redis1: 0,
            machine: [(0, 0, 0); 2],
        }
    }

    /// Ticks each process used in the window.
    fn used(&self) -> impl Iterator<Item = (&String, u64)> {
        self.t0.iter().map(|(k, a)| {
            let b = self.t1.get(k).copied().unwrap_or(*a);
            (k, b.saturating_sub(*a))
        })
    }

    /// CPU µs per completed request, by process.
    fn cpu_us(&self, ticks_per_s: f64, done: f64) -> BTreeMap<String, f64> {
        self.used()
            .map(|(k, t)| (k.clone(), t as f64 / ticks_per_s * 1e6 / done))
            .collect()
    }

    /// How much of the machine went to processes other than this run's (other
    /// people's builds and tests on a shared machine), in cores.
    fn load(&self) -> Load {
        let ours: u64 = self.used().map(|(_, t)| t).sum();
        let [m0, m1] = self.machine;
        let (busy, total, irq) = (
            m1.0.saturating_sub(m0.0),
            m1.1.saturating_sub(m0.1),
            m1.2.saturating_sub(m0.2),
        );
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        let window_ticks = total as f64 / cores;
        let (other_cores, irq_cores) = if window_ticks > 0.0 {
            (
                busy.saturating_sub(ours).saturating_sub(irq) as f64 / window_ticks,
                irq as f64 / window_ticks,
            )
        } else {
            (0.0, 0.0)
        };
        let machine_busy = if total > 0 {
            busy as f64 / total as f64
        } else {
            0.0
        };
        Load {
            machine_busy,
            other_cores,
            irq_cores,
        }
    }
}

/// Connections the fake IdP has accepted so far.
fn upstream_stats(addr: SocketAddr) -> Option<u64> {
    let body = procs::http_get(addr, "/__bench/stats").ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v.get("connections")?.as_u64()
}

/// The counters that moved since `before`, and a note naming the worrying ones
/// (fallbacks, store errors, mints that did not mint).
fn counter_deltas(
    h: &Handoff,
    before: &BTreeMap<String, f64>,
) -> (BTreeMap<String, f64>, Option<String>) {
    let mut counters = BTreeMap::new();
    for (k, v) in h.counters() {
        let d = v - before.get(&k).copied().unwrap_or(0.0);
        if d > 0.0 {
            counters.insert(k, d);
        }
    }
    let bad: Vec<String> = counters
        .iter()
        .filter(|(k, _)| {
            k.contains("outcome=\"fallback\"")
                || k.starts_with("handoff_store_errors_total")
                || (k.starts_with("handoff_mints_total") && !k.contains("outcome=\"minted\""))
        })
        .map(|(k, v)| format!("{k} +{v}"))
        .collect();
    let note = (!bad.is_empty()).then(|| format!("handoff counted: {}", bad.join(", ")));
    (counters, note)
}

/// The remarks under a row: noise, a window cut short, errors.
fn window_notes(other_cores: f64, outcome: &Outcome, duration: Duration) -> Vec<String> {
    let mut notes = Vec::new();
    if other_cores > 0.25 {
        notes.push(format!(
            "noisy: {:.0}% of a core went to other processes during the window",
            other_cores * 100.0
        ));
    }
    if outcome.window + Duration::from_millis(50) < duration {
        notes.push(format!(
            "window {:.2} s (requests ran out)",
            outcome.window.as_secs_f64()
        ));
    }
    if outcome.errors > 0 {
        notes.push(format!(
            "{} errors; first: {}",
            outcome.errors,
            outcome.first_error.clone().unwrap_or_default()
        ));
    }
    notes
}

/// The progress line of a point on stderr.
fn progress(p: &Point) {
    eprintln!(
        "   {:<27} {:>4} conns {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  {:>3} errors",
        report::label(&p.scenario),
        p.conns,
        p.outcome.rps(),
        p.outcome.pct_us(0.5) / 1000.0,
        p.outcome.pct_us(0.99) / 1000.0,
        p.outcome.errors
    );
}

impl Lab {
    /// Runs one point.
    pub fn measure(&self, r: Run<'_>) -> Point {
        let mode = r.mode.unwrap_or(self.settings.mode);
        let plan = Plan {
            engine: Engine::Raw(r.addr),
            gen: r.gen,
            conns: r.conns,
            mode,
            warmup: r.warmup,
            duration: self.settings.duration,
            max_requests: r.max_requests,
        };
        let counters0 = r.handoff.map(Handoff::counters);
        if std::env::var_os("LOAD_VERBOSE").is_some() {
            // A marker for scripts that attach a profiler to one point.
            eprintln!("   > {} {}", report::label(r.key), r.conns);
        }
        let mut probe = if r.redis {
            self.redis
                .as_ref()
                .and_then(|(_, port)| RedisProbe::connect(*port).ok())
        } else {
            None
        };
        let server = r.procs.first().map(|p| p.name.clone()).unwrap_or_default();
        let mut snaps = Snaps::new(r.procs, probe.as_mut());
        let up0 = upstream_stats(self.upstream_addr);
        let outcome = self.rt.block_on(client::run(&plan, &mut snaps));
        let up1 = upstream_stats(self.upstream_addr);
        let done = (outcome.ok + outcome.errors).max(1) as f64;
        let load = snaps.load();
        let upstream_conns = match (up0, up1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let redis_cmds = (r.redis && snaps.redis1 > 0)
            .then(|| snaps.redis1.saturating_sub(snaps.redis0) as f64 / done);
        let (counters, counted) = match (r.handoff, counters0) {
            (Some(h), Some(c0)) => counter_deltas(h, &c0),
            _ => (BTreeMap::new(), None),
        };
        let mut notes: Vec<String> = counted.into_iter().collect();
        notes.extend(window_notes(
            load.other_cores,
            &outcome,
            self.settings.duration,
        ));
        let p = Point {
            scenario: r.key.to_string(),
            conns: r.conns,
            rate: open_rate(mode),
            server,
            outcome,
            cpu_us: snaps.cpu_us(self.ticks, done),
            peak_rss_kib: snaps.rss,
            redis_cmds_per_req: redis_cmds,
            handoff_counters: counters,
            machine_busy: load.machine_busy,
            other_cores: load.other_cores,
            irq_cores: load.irq_cores,
            upstream_conns,
            round: 0,
            notes,
        };
        progress(&p);
        p
    }

    /// Sends up to `n` requests (untimed; `conns` connections); returns what came back.
    pub fn drive(
        &self,
        addr: SocketAddr,
        gen: Arc<dyn Gen>,
        conns: usize,
        n: u64,
        limit: Duration,
    ) -> Outcome {
        struct Nop;
        impl Window for Nop {
            fn open(&mut self) {}
            fn close(&mut self) {}
        }
        let plan = Plan {
            engine: Engine::Raw(addr),
            gen,
            conns,
            mode: Mode::Closed,
            warmup: Duration::ZERO,
            duration: limit,
            max_requests: n,
        };
        self.rt.block_on(client::run(&plan, &mut Nop))
    }

    /// Store round trips per request: sequential requests to the probe instance,
    /// counted at its relay (round trips) and by redis MONITOR (commands). A few
    /// requests first warm its caches, connection and scripts; they are not counted.
    pub fn round_trips(&self, key: &str, gen: Arc<dyn Gen>) -> Option<RoundTrips> {
        let (_, port) = self.redis.as_ref()?;
        let (h, relay) = self.probe.as_ref()?;
        self.drive(h.addr, gen.clone(), 1, 5, Duration::from_secs(10));
        let redis = RedisProbe::connect(*port).ok()?;
        let mon = redis.monitor().ok()?;
        let before = relay.round_trips();
        let out = self.drive(h.addr, gen, 1, self.settings.probe, Duration::from_secs(30));
        let counts = mon.finish();
        Some(RoundTrips {
            scenario: key.to_string(),
            requests: out.ok,
            round_trips: relay.round_trips() - before,
            counts,
        })
    }

    /// Mints until `h`'s pool holds `need` tokens (bounded: 90 s).
    pub fn top_up(&self, h: &Handoff, need: usize) {
        let have = h.pool.len();
        if have >= need {
            return;
        }
        let missing = (need - have) as u64;
        eprintln!("   (minting {missing} tokens for the redeem point)");
        let gen = mint_gen(h, &h.pool);
        self.drive(h.addr, gen, 32, missing, Duration::from_secs(90));
    }
}

/// A native app's mint at `h`, its tokens kept in `pool`.
pub fn mint_gen(h: &Handoff, pool: &Arc<Pool>) -> Arc<dyn Gen> {
    Arc::new(TokenGrant {
        host: h.host(),
        audience: Some(h.audience()),
        pool: Some(pool.clone()),
    })
}
