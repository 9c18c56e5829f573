//! handoff's load harness: `cargo bench --bench load -- [OPTIONS]`.
//!
//! On loopback, with free ports, it starts a fast upstream standing in for the
//! IdP (`fake_idp`), `redis-server`, handoff (the release binary, Redis store and
//! embedded store), a bare pingora pass-through proxy as the baseline, and nginx
//! as the reference; then drives each scenario at several concurrency levels and
//! reports throughput, latency percentiles, CPU time per request and peak RSS of
//! each process — every figure next to its ratio to bare pingora (and nginx)
//! measured in the same run, because the machines are shared and noisy.
//!
//! `--smoke` is the CI mode (about 1 s per scenario, one level, installs
//! nothing); `--target URL` measures an external deployment instead (loopback
//! only unless `--i-own-this-target`). See benches/README.md.
//!
//! The same binary plays the upstream and the bare pingora proxy when started
//! with `--role`, so each runs as a process of its own.

mod bare_pingora;
mod client;
mod fake_idp;
mod procs;
mod report;

use clap::Parser;
use client::{contains_ci, Engine, Gen, Mode, Outcome, Plan, Window};
use procs::{free_port, Proc, RedisProbe, Stop};
use report::{Point, Report, RoundTrips, StoreMemory};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The handoff binary built alongside this bench (`target/release/handoff`
/// under `cargo bench`).
const HANDOFF_BIN: &str = env!("CARGO_BIN_EXE_handoff");

/// Longest point and longest whole run: everything is bounded in time.
const MAX_POINT_SECS: f64 = 60.0;
const MAX_RUN: Duration = Duration::from_secs(45 * 60);

/// Load harness for handoff (see benches/README.md).
#[derive(Parser, Debug, Clone)]
#[command(name = "cargo bench --bench load --", about, long_about = None)]
struct Args {
    /// CI mode: each scenario ~1 s at one concurrency level; installs nothing.
    #[arg(long)]
    smoke: bool,
    /// Interleaved rounds of direct/pingora/nginx/pass-through/session per level;
    /// the table shows each one's median round (default 3; smoke 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds measured per point (default 4; smoke 1; at most 60).
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up seconds before each point (default 1; smoke 0.3).
    #[arg(long)]
    warmup: Option<f64>,
    /// Concurrency levels: connections per point (default 1,32,256; smoke 16).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// Connections for the RSS point (pass-through and baselines); 0 skips it
    /// (default 1000; smoke 0).
    #[arg(long)]
    rss_connections: Option<usize>,
    /// Open loop at this total rate (requests/s) instead of closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Only these scenarios: direct,pingora,nginx,pass,session,idp-token,mint,redeem,mint-mem,redeem-mem.
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Where to write the JSON results (default: <target dir>/load-bench.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Skip the nginx reference.
    #[arg(long)]
    no_nginx: bool,
    /// Cap on requests per point, warm-up included (default 5,000,000; target mode 100,000).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Worker threads of the load client (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Worker threads of handoff and bare pingora, and nginx worker processes.
    #[arg(long, default_value_t = 2)]
    proxy_threads: usize,
    /// Keep the temporary folder (configs, logs) after the run.
    #[arg(long)]
    keep: bool,
    /// Measure an external deployment: GET this URL (http or https).
    #[arg(long)]
    target: Option<String>,
    /// With --target: a baseline URL measured in the same run (e.g. the IdP itself).
    #[arg(long)]
    baseline: Option<String>,
    /// Allow a --target/--baseline that is not on loopback (only if you own it).
    #[arg(long)]
    i_own_this_target: bool,
    /// With --target: extra request header `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// With --target: a PEM CA bundle to trust besides the web PKI roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// With --target: pid of the target's process on this machine, for CPU and RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: play a part (`upstream`, `bare-pingora`) instead of running the bench.
    #[arg(long, hide = true)]
    role: Option<String>,
    #[arg(long, hide = true)]
    listen: Option<String>,
    #[arg(long, hide = true)]
    upstream: Option<String>,
    /// Filters `cargo bench` may pass on to every bench; ignored here.
    #[arg(hide = true)]
    rest: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(role) = &args.role {
        let listen = args.listen.clone().unwrap_or_default();
        match role.as_str() {
            "upstream" => fake_idp::run(&listen),
            "bare-pingora" => bare_pingora::run(
                &listen,
                args.upstream.as_deref().unwrap_or(""),
                args.proxy_threads,
            ),
            other => {
                eprintln!("unknown role {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    if !args.bench && std::env::args().len() == 1 {
        // `cargo test --benches` runs bench binaries without arguments.
        println!("load: not a test; run it with `cargo bench --bench load -- --help`");
        return ExitCode::SUCCESS;
    }
    let result = if args.target.is_some() {
        target_mode(&args)
    } else {
        local_mode(&args)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run-wide settings, from the flags and the mode.
#[derive(Debug, Clone)]
struct Settings {
    smoke: bool,
    duration: Duration,
    warmup: Duration,
    levels: Vec<usize>,
    rss_conns: usize,
    mode: Mode,
    max_requests: u64,
    /// Sequential requests per MONITOR probe.
    probe: u64,
    /// Interleaved rounds of the cheap scenarios (median reported).
    rounds: usize,
    /// Most tokens one redeem point may use.
    redeem_cap: usize,
    /// Fresh STTs minted for the memory measurement.
    memory_batch: usize,
    scenarios: Option<Vec<String>>,
}

impl Settings {
    fn from(a: &Args) -> Result<Settings, String> {
        let secs = |v: Option<f64>, full: f64, smoke: f64| -> Result<Duration, String> {
            let v = v.unwrap_or(if a.smoke { smoke } else { full });
            if !(0.0..=MAX_POINT_SECS).contains(&v) {
                return Err(format!("durations must be within 0..{MAX_POINT_SECS} s"));
            }
            Ok(Duration::from_secs_f64(v))
        };
        let levels =
            a.concurrency.clone().unwrap_or_else(
                || {
                    if a.smoke {
                        vec![16]
                    } else {
                        vec![1, 32, 256]
                    }
                },
            );
        if levels.is_empty() || levels.iter().any(|c| *c == 0 || *c > 5000) {
            return Err("--concurrency: levels must be within 1..=5000".into());
        }
        let rss_conns = a.rss_connections.unwrap_or(if a.smoke { 0 } else { 1000 });
        if rss_conns > 5000 {
            return Err("--rss-connections: at most 5000".into());
        }
        let mode = match a.rate {
            Some(r) if r > 0.0 && r <= 1_000_000.0 => Mode::Open(r),
            Some(_) => return Err("--rate must be within (0, 1e6]".into()),
            None => Mode::Closed,
        };
        Ok(Settings {
            smoke: a.smoke,
            duration: secs(a.duration, 4.0, 1.0)?,
            warmup: secs(a.warmup, 1.0, 0.3)?,
            levels,
            rss_conns,
            mode,
            max_requests: a.max_requests.unwrap_or(5_000_000),
            probe: if a.smoke { 20 } else { 200 },
            rounds: a.rounds.unwrap_or(if a.smoke { 1 } else { 3 }).clamp(1, 9),
            redeem_cap: if a.smoke { 8_000 } else { 40_000 },
            memory_batch: if a.smoke { 200 } else { 2_000 },
            scenarios: a.scenarios.clone(),
        })
    }

    fn wants(&self, key: &str) -> bool {
        self.scenarios
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == key))
    }
}

// ---- what the scenarios send ------------------------------------------------------

/// Browser-like headers every GET scenario carries (the same for every proxy, so
/// the comparison is fair): ~500 bytes, with a few analytics cookies that handoff
/// must parse and pass through untouched.
fn browser_get(host: &str, path: &str, cookies: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
         Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
         Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n\
         Cookie: _ga=GA1.1.1234567890.1700000000; _ga_BENCH=GS1.1.1700000000.1.1.1700000100.0.0.0; theme=dark{cookies}\r\n\r\n"
    )
}

/// The same bytes every time; success is `status` (and `needle` in the head).
struct StaticReq {
    req: Vec<u8>,
    status: u16,
    needle: Option<&'static [u8]>,
}

impl Gen for StaticReq {
    fn request(&self, _seq: u64, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(&self.req);
        true
    }
    fn check(&self, status: u16, head: &[u8], _body: &[u8]) -> bool {
        status == self.status && self.needle.is_none_or(|n| contains_ci(head, n))
    }
}

/// Minted tokens waiting to be redeemed (FIFO, with their mint time).
#[derive(Default)]
struct Pool(Mutex<VecDeque<(Instant, String)>>);

impl Pool {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn push(&self, t: String) {
        self.0.lock().unwrap().push_back((Instant::now(), t));
    }
    /// The oldest token still well inside its 300 s lifetime.
    fn pop(&self) -> Option<String> {
        let mut q = self.0.lock().unwrap();
        while let Some((at, t)) = q.pop_front() {
            if at.elapsed() < Duration::from_secs(240) {
                return Some(t);
            }
        }
        None
    }
}

/// Users of the fake IdP the native app's refresh tokens belong to.
const USERS: u64 = 1000;
const NATIVE_CLIENT: &str = "bench-native";
const WEB_CLIENT: &str = "bench-web";

/// A refresh-token grant: a mint (with handoff's audience) or, without it, the
/// same grant the IdP answers for handoff.
struct TokenGrant {
    host: String,
    audience: Option<String>,
    pool: Option<Arc<Pool>>,
}

impl Gen for TokenGrant {
    fn request(&self, seq: u64, out: &mut Vec<u8>) -> bool {
        use std::io::Write;
        let user = seq % USERS;
        let aud = self
            .audience
            .as_deref()
            .map(|a| format!("&audience={a}"))
            .unwrap_or_default();
        let body = format!(
            "grant_type=refresh_token&client_id={NATIVE_CLIENT}&refresh_token=rt-{user}{aud}"
        );
        let _ = write!(
            out,
            "POST /oauth/token HTTP/1.1\r\nHost: {}\r\nUser-Agent: BenchApp/1.0 (iPhone; iOS 18.0) Auth0.swift/2.10\r\n\
             Accept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        true
    }
    fn check(&self, status: u16, _head: &[u8], body: &[u8]) -> bool {
        if status != 200 {
            return false;
        }
        match &self.pool {
            None => true,
            Some(pool) => {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                match v.get("access_token").and_then(|t| t.as_str()) {
                    Some(t) => {
                        pool.push(t.to_string());
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

/// A browser redeeming a fresh token (cookie delivery) at `/authorize`.
struct Redeem {
    host: String,
    pool: Arc<Pool>,
    /// Collect the IdP's `_session` cookie values (to prepare the session scenario).
    sessions: Option<Arc<Mutex<Vec<String>>>>,
}

impl Gen for Redeem {
    fn request(&self, seq: u64, out: &mut Vec<u8>) -> bool {
        let Some(token) = self.pool.pop() else {
            return false;
        };
        let path = format!(
            "/authorize?client_id={WEB_CLIENT}&response_type=code&scope=openid%20profile%20email\
             &redirect_uri=https%3A%2F%2Fapp.example%2Fcallback&state=st{seq}&nonce=n{seq}"
        );
        out.extend_from_slice(
            browser_get(
                &self.host,
                &path,
                &format!("; auth0_session_transfer_token={token}"),
            )
            .as_bytes(),
        );
        true
    }
    fn check(&self, status: u16, head: &[u8], _body: &[u8]) -> bool {
        // The fake IdP logs the user in (302 + _session) only with handoff's assertion.
        let ok = status == 302 && contains_ci(head, b"set-cookie: _session=");
        if ok {
            if let Some(s) = &self.sessions {
                if let Some(v) = cookie_value(head, b"set-cookie: _session=") {
                    s.lock().unwrap().push(v);
                }
            }
        }
        ok
    }
}

/// The value after `prefix` (case-insensitive) up to `;` or the line end.
fn cookie_value(head: &[u8], prefix_lower: &[u8]) -> Option<String> {
    let n = prefix_lower.len();
    let at = head.windows(n).position(|w| {
        w.iter()
            .zip(prefix_lower)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })?;
    let rest = &head[at + n..];
    let end = rest
        .iter()
        .position(|b| *b == b';' || *b == b'\r' || *b == b'\n')
        .unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// A logged-in browser: requests carrying a bound `_session` cookie.
struct SessionReq {
    host: String,
    cookies: Vec<String>,
}

impl Gen for SessionReq {
    fn request(&self, seq: u64, out: &mut Vec<u8>) -> bool {
        let c = &self.cookies[(seq as usize) % self.cookies.len()];
        out.extend_from_slice(
            browser_get(
                &self.host,
                "/account",
                &format!("; _session={c}; _session.legacy={c}"),
            )
            .as_bytes(),
        );
        true
    }
    fn check(&self, status: u16, head: &[u8], _body: &[u8]) -> bool {
        status == 200 && contains_ci(head, b"x-bench-session: present")
    }
}

// ---- measuring -----------------------------------------------------------------

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

/// Everything running for a local run.
struct Lab {
    exe: PathBuf,
    proxy_threads: usize,
    /// handoff accepts `[session]`.
    session: bool,
    rt: tokio::runtime::Runtime,
    settings: Settings,
    ticks: f64,
    upstream: Proc,
    upstream_addr: SocketAddr,
    redis: Option<(Proc, u16)>,
    pingora: Option<(Proc, SocketAddr)>,
    nginx: Option<(Proc, SocketAddr)>,
    handoff_redis: Option<Handoff>,
    handoff_mem: Option<Handoff>,
    /// A third handoff (same Redis, same public host) whose store connection goes
    /// through a relay that counts round trips; probes run there, so the measured
    /// instances never carry the relay's extra hop.
    probe: Option<(Handoff, procs::Relay)>,
    started: Instant,
    /// Configs and logs (removed after a successful run unless --keep).
    dir: PathBuf,
}

/// Connections the fake IdP has accepted so far.
fn upstream_stats(addr: SocketAddr) -> Option<u64> {
    let body = procs::http_get(addr, "/__bench/stats").ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v.get("connections")?.as_u64()
}

/// One measured point: what to send where, and whose CPU and RSS to account
/// (the first process is the server under test).
struct Run<'a> {
    key: &'a str,
    addr: SocketAddr,
    gen: Arc<dyn Gen>,
    conns: usize,
    warmup: Duration,
    max_requests: u64,
    procs: Vec<&'a Proc>,
    redis: bool,
    handoff: Option<&'a Handoff>,
    /// Overrides the run's loop mode.
    mode: Option<Mode>,
}

/// handoff's counters worth watching during a point.
const COUNTERS: &[&str] = &[
    "handoff_mints_total",
    "handoff_redemptions_total",
    "handoff_sessions_total",
    "handoff_store_errors_total",
];

struct Handoff {
    proc: Proc,
    addr: SocketAddr,
    admin: SocketAddr,
    public_host: String,
    pool: Arc<Pool>,
}

impl Handoff {
    fn host(&self) -> String {
        self.public_host.clone()
    }
    fn audience(&self) -> String {
        form_urlencoded::byte_serialize(
            format!("urn:{}:session_transfer", self.public_host).as_bytes(),
        )
        .collect()
    }
    fn counters(&self) -> BTreeMap<String, f64> {
        procs::counters(
            &procs::http_get(self.admin, "/metrics").unwrap_or_default(),
            COUNTERS,
        )
    }
}

impl Lab {
    fn time_left(&self) -> bool {
        self.started.elapsed() < MAX_RUN
    }

    /// Runs one point.
    fn measure(&self, r: Run<'_>) -> Point {
        let Run {
            key,
            addr,
            gen,
            conns,
            warmup,
            max_requests,
            procs,
            redis,
            handoff,
            mode,
        } = r;
        let mode = mode.unwrap_or(self.settings.mode);
        let plan = Plan {
            engine: Engine::Raw(addr),
            gen,
            conns,
            mode,
            warmup,
            duration: self.settings.duration,
            max_requests,
        };
        let counters0 = handoff.map(Handoff::counters);
        if std::env::var_os("LOAD_VERBOSE").is_some() {
            // A marker for scripts that attach a profiler to one point.
            eprintln!("   > {} {conns}", report::label(key));
        }
        let mut probe = if redis {
            self.redis
                .as_ref()
                .and_then(|(_, port)| RedisProbe::connect(*port).ok())
        } else {
            None
        };
        let server = procs.first().map(|p| p.name.clone()).unwrap_or_default();
        let mut snaps = Snaps {
            procs,
            redis: probe.as_mut(),
            t0: BTreeMap::new(),
            t1: BTreeMap::new(),
            rss: BTreeMap::new(),
            redis0: 0,
            redis1: 0,
            machine: [(0, 0, 0); 2],
        };
        let up0 = upstream_stats(self.upstream_addr);
        let outcome = self.rt.block_on(client::run(&plan, &mut snaps));
        let up1 = upstream_stats(self.upstream_addr);
        let done = (outcome.ok + outcome.errors).max(1) as f64;
        let mut cpu = BTreeMap::new();
        for (k, a) in &snaps.t0 {
            let b = snaps.t1.get(k).copied().unwrap_or(*a);
            cpu.insert(
                k.clone(),
                (b.saturating_sub(*a)) as f64 / self.ticks * 1e6 / done,
            );
        }
        // How much of the machine went to processes other than this run's
        // (other people's builds and tests on a shared machine), in cores.
        let ours: u64 = snaps
            .t0
            .iter()
            .map(|(k, a)| snaps.t1.get(k).copied().unwrap_or(*a).saturating_sub(*a))
            .sum();
        let (busy, total, irq) = (
            snaps.machine[1].0.saturating_sub(snaps.machine[0].0),
            snaps.machine[1].1.saturating_sub(snaps.machine[0].1),
            snaps.machine[1].2.saturating_sub(snaps.machine[0].2),
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
        let upstream_conns = match (up0, up1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let redis_cmds = (redis && snaps.redis1 > 0)
            .then(|| snaps.redis1.saturating_sub(snaps.redis0) as f64 / done);
        let mut notes = Vec::new();
        let mut counters = BTreeMap::new();
        if let (Some(h), Some(c0)) = (handoff, counters0) {
            for (k, v) in h.counters() {
                let d = v - c0.get(&k).copied().unwrap_or(0.0);
                if d > 0.0 {
                    counters.insert(k, d);
                }
            }
            let bad: Vec<String> = counters
                .iter()
                .filter(|(k, _)| {
                    k.contains("outcome=\"fallback\"")
                        || k.starts_with("handoff_store_errors_total")
                        || (k.starts_with("handoff_mints_total")
                            && !k.contains("outcome=\"minted\""))
                })
                .map(|(k, v)| format!("{k} +{v}"))
                .collect();
            if !bad.is_empty() {
                notes.push(format!("handoff counted: {}", bad.join(", ")));
            }
        }
        if other_cores > 0.25 {
            notes.push(format!(
                "noisy: {:.0}% of a core went to other processes during the window",
                other_cores * 100.0
            ));
        }
        if outcome.window + Duration::from_millis(50) < self.settings.duration {
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
        let p = Point {
            scenario: key.to_string(),
            conns,
            rate: match mode {
                Mode::Open(r) => Some(r),
                Mode::Closed => None,
            },
            server,
            outcome,
            cpu_us: cpu,
            peak_rss_kib: snaps.rss,
            redis_cmds_per_req: redis_cmds,
            handoff_counters: counters,
            machine_busy,
            other_cores,
            irq_cores,
            upstream_conns,
            round: 0,
            notes,
        };
        eprintln!(
            "   {:<27} {:>4} conns {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  {:>3} errors",
            report::label(key),
            conns,
            p.outcome.rps(),
            p.outcome.pct_us(0.5) / 1000.0,
            p.outcome.pct_us(0.99) / 1000.0,
            p.outcome.errors
        );
        p
    }

    /// Sends up to `n` requests (untimed; `conns` connections); returns what came back.
    fn drive(
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
    fn round_trips(&self, key: &str, gen: Arc<dyn Gen>) -> Option<RoundTrips> {
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
    fn top_up(&self, h: &Handoff, need: usize) {
        let have = h.pool.len();
        if have >= need {
            return;
        }
        let missing = (need - have) as u64;
        eprintln!("   (minting {missing} tokens for the redeem point)");
        let gen = Arc::new(TokenGrant {
            host: h.host(),
            audience: Some(h.audience()),
            pool: Some(h.pool.clone()),
        });
        self.drive(h.addr, gen, 32, missing, Duration::from_secs(90));
    }
}

fn start_pingora(
    exe: &Path,
    dir: &Path,
    name: &str,
    upstream: SocketAddr,
    threads: usize,
) -> Result<(Proc, SocketAddr), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(exe);
    cmd.args([
        "--role",
        "bare-pingora",
        "--listen",
        &addr.to_string(),
        "--upstream",
        &upstream.to_string(),
        "--proxy-threads",
        &threads.to_string(),
    ]);
    let mut p = Proc::spawn(
        name,
        cmd,
        &dir.join(format!("{name}.log")),
        false,
        Stop::Int,
    )?;
    procs::wait_listening(addr, "bare pingora", &mut p)?;
    Ok((p, addr))
}

/// Fresh servers for the RSS level: peak RSS depends on a process's history
/// (freed memory stays resident), so memory is measured on new processes.
struct Fresh {
    pingora: Option<(Proc, SocketAddr)>,
    nginx: Option<(Proc, SocketAddr)>,
    handoff: Option<Handoff>,
}

impl Lab {
    fn fresh(&self) -> Result<Fresh, String> {
        let s = &self.settings;
        let pingora = match (&self.pingora, s.wants("pingora")) {
            (Some(_), true) => Some(start_pingora(
                &self.exe,
                &self.dir,
                "pingora-rss",
                self.upstream_addr,
                self.proxy_threads,
            )?),
            _ => None,
        };
        let nginx = match (&self.nginx, procs::nginx_binary()) {
            (Some(_), Some(bin)) => {
                let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
                Some((
                    procs::start_nginx(
                        bin,
                        "nginx-rss",
                        &self.dir,
                        addr,
                        self.upstream_addr,
                        self.proxy_threads,
                    )?,
                    addr,
                ))
            }
            _ => None,
        };
        let handoff = match (s.wants("pass"), &self.redis) {
            (true, redis) => Some(start_handoff(
                &self.dir,
                "handoff-rss",
                self.upstream_addr,
                redis.as_ref().map(|(_, p)| *p),
                self.session,
                self.proxy_threads,
                None,
            )?),
            _ => None,
        };
        Ok(Fresh {
            pingora,
            nginx,
            handoff,
        })
    }
}

fn start_handoff(
    dir: &Path,
    name: &str,
    upstream: SocketAddr,
    redis_port: Option<u16>,
    session: bool,
    threads: usize,
    public_host: Option<&str>,
) -> Result<Handoff, String> {
    let port = free_port();
    let admin = free_port();
    let file = dir.join(format!("{name}.toml"));
    let public_host = public_host
        .map(str::to_owned)
        .unwrap_or_else(|| format!("127.0.0.1:{port}"));
    std::fs::write(
        &file,
        handoff_config(
            port,
            admin,
            upstream,
            redis_port,
            session,
            threads,
            &public_host,
        ),
    )
    .map_err(|e| e.to_string())?;
    check_config(&file)?;
    let mut cmd = Command::new(HANDOFF_BIN);
    cmd.arg("--config").arg(&file).current_dir(dir);
    let mut p = Proc::spawn(
        name,
        cmd,
        &dir.join(format!("{name}.log")),
        false,
        Stop::Int,
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    procs::wait_listening(addr, name, &mut p)?;
    procs::wait_listening(admin, name, &mut p)?;
    Ok(Handoff {
        proc: p,
        addr,
        admin,
        public_host,
        pool: Arc::new(Pool::default()),
    })
}

fn handoff_config(
    port: u16,
    admin: u16,
    upstream: SocketAddr,
    redis_port: Option<u16>,
    session: bool,
    threads: usize,
    public_host: &str,
) -> String {
    let store = match redis_port {
        Some(p) => format!("[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{p}\"\n"),
        None => "[store]\nkind = \"memory\"\n".to_string(),
    };
    let session = if session {
        "\n[session]\ncookie_names = [\"_session\"]\n"
    } else {
        ""
    };
    format!(
        "# written by handoff's load bench\n\
         [server]\nlisten = [\"127.0.0.1:{port}\"]\npublic_host = \"{public_host}\"\nthreads = {threads}\n\n\
         [upstream]\naddress = \"{upstream}\"\ntimeout = \"5s\"\n\n\
         {store}\n\
         [assertion]\nissuer = \"https://127.0.0.1:{port}/handoff\"\naudience = \"bench-idp\"\nkey_file = \"assertion.der\"\n\n\
         [rules]\nfile = \"rules.toml\"\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n{session}"
    )
}

const RULES: &str = r#"# written by handoff's load bench
[native."bench-native"]
can_create_session_transfer_token = true
transfer_token_ttl = "300s"
allowed_web_clients = ["bench-web"]

[web."bench-web"]
allowed_authentication_methods = ["cookie", "query"]
enforce_device_binding = "ip"
"#;

fn check_config(file: &Path) -> Result<(), String> {
    let out = Command::new(HANDOFF_BIN)
        .args(["config", "check"])
        .arg(file)
        .output()
        .map_err(|e| format!("{HANDOFF_BIN}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Whether this handoff accepts `[session] cookie_names` (web sessions bound to
/// the IdP's session cookie); the reason when it does not.
fn session_support(dir: &Path, upstream: SocketAddr) -> Result<(), String> {
    let file = dir.join("session-probe.toml");
    std::fs::write(
        &file,
        handoff_config(
            free_port(),
            free_port(),
            upstream,
            None,
            true,
            1,
            "127.0.0.1:1",
        ),
    )
    .map_err(|e| e.to_string())?;
    check_config(&file)
}

fn target_dir() -> PathBuf {
    // <target>/release/deps/load-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn tokio_rt(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())
}

/// `redis 7.0.15`, `nginx 1.22.1`: the version a command prints, shortened.
fn command_version(name: &str, cmd: &str, arg: &str) -> String {
    let line = Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            let t = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&t)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    // "Redis server v=7.0.15 sha=..." / "nginx version: nginx/1.22.1"
    let v = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v=").or_else(|| w.strip_prefix("nginx/")))
        .unwrap_or(line.as_str());
    if v.is_empty() {
        format!("{name} not installed")
    } else {
        format!("{name} {v}")
    }
}

fn local_mode(args: &Args) -> Result<bool, String> {
    let s = Settings::from(args)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Kept on failure, so the logs named in an error message are still there.
    let d = tempfile::Builder::new()
        .prefix("handoff-load-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let keep_logs = |e: String| format!("{e}\n(configs and logs are in {})", d.display());
    let mut report = Report::default();
    let lab = start_lab(args, &s, &exe, &d, &mut report).map_err(keep_logs)?;
    let healthy = run_scenarios(&lab, &mut report).map_err(keep_logs)?;
    drop(lab);

    // Output.
    print!("{}", report.table());
    print!("{}", report.targets_text());
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| target_dir().join("load-bench.json"));
    if let Some(parent) = json_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report.json(true)).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", json_path.display()))?;
    println!("\nJSON: {}", json_path.display());
    if args.keep || !healthy {
        println!("configs and logs kept in {}", d.display());
    } else {
        let _ = std::fs::remove_dir_all(&d);
    }
    Ok(healthy)
}

/// Starts every process of a local run.
fn start_lab(
    args: &Args,
    s: &Settings,
    exe: &Path,
    d: &Path,
    report: &mut Report,
) -> Result<Lab, String> {
    let d = d.to_path_buf();
    if !HANDOFF_BIN.contains("/release/") {
        eprintln!("warning: {HANDOFF_BIN} is not a release build; run through `cargo bench`");
    }

    // The fake IdP.
    let up_port = free_port();
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], up_port));
    let mut cmd = Command::new(exe);
    cmd.args(["--role", "upstream", "--listen", &upstream_addr.to_string()]);
    let mut upstream = Proc::spawn("upstream", cmd, &d.join("upstream.log"), false, Stop::Term)?;
    procs::wait_listening(upstream_addr, "the fake IdP", &mut upstream)?;

    // Redis.
    let have_redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    let redis = if have_redis {
        let port = free_port();
        Some((procs::start_redis(&d, port)?, port))
    } else {
        report
            .skipped
            .push("redis-server is not installed: Redis-store scenarios skipped (apt-get install -y redis-server)".into());
        None
    };

    // Bare pingora.
    let pingora = if s.wants("pingora") || s.wants("pass") {
        Some(start_pingora(
            exe,
            &d,
            "pingora",
            upstream_addr,
            args.proxy_threads,
        )?)
    } else {
        None
    };

    // nginx: installed by the full run's set-up, never by the smoke run.
    let nginx = if args.no_nginx || !s.wants("nginx") {
        None
    } else {
        let mut bin = procs::nginx_binary();
        if bin.is_none() && !s.smoke {
            match procs::install_nginx() {
                Ok(()) => bin = procs::nginx_binary(),
                Err(e) => report
                    .skipped
                    .push(format!("nginx: could not install nginx-light: {e}")),
            }
        }
        match bin {
            None => {
                report.skipped.push(if s.smoke {
                    "nginx is not installed: the nginx column is empty (smoke mode installs nothing; the full run installs nginx-light)".into()
                } else {
                    "nginx is not installed".into()
                });
                None
            }
            Some(bin) => {
                let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
                Some((
                    procs::start_nginx(bin, "nginx", &d, addr, upstream_addr, args.proxy_threads)?,
                    addr,
                ))
            }
        }
    };

    // handoff: the assertion key and rules, the [session] probe, both stores.
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| "cannot generate an Ed25519 key")?;
    std::fs::write(d.join("assertion.der"), pkcs8.as_ref()).map_err(|e| e.to_string())?;
    std::fs::write(d.join("rules.toml"), RULES).map_err(|e| e.to_string())?;
    let session = match session_support(&d, upstream_addr) {
        Ok(()) => true,
        Err(e) => {
            if s.wants("session") {
                report.skipped.push(format!(
                    "session cookie scenario: not available yet — this handoff rejects `[session] cookie_names` ({})",
                    e.lines().next().unwrap_or("")
                ));
            }
            false
        }
    };
    let need_redis_handoff = ["pass", "session", "mint", "redeem"]
        .iter()
        .any(|k| s.wants(k));
    let handoff_redis = match (&redis, need_redis_handoff) {
        (Some((_, port)), true) => Some(start_handoff(
            &d,
            "handoff-redis",
            upstream_addr,
            Some(*port),
            session,
            args.proxy_threads,
            None,
        )?),
        _ => None,
    };
    let probe = match (&redis, &handoff_redis) {
        (Some((_, port)), Some(main)) => {
            let relay = procs::Relay::start(*port)?;
            let h = start_handoff(
                &d,
                "handoff-probe",
                upstream_addr,
                Some(relay.port),
                session,
                1,
                Some(&main.public_host),
            )?;
            Some((h, relay))
        }
        _ => None,
    };
    let handoff_mem =
        if s.wants("mint-mem") || s.wants("redeem-mem") || (redis.is_none() && s.wants("pass")) {
            Some(start_handoff(
                &d,
                "handoff-memory",
                upstream_addr,
                None,
                session,
                args.proxy_threads,
                None,
            )?)
        } else {
            None
        };

    report.env = BTreeMap::from([
        (
            "cores".into(),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
                .to_string(),
        ),
        ("kernel".into(), command_version("linux", "uname", "-r")),
        (
            "redis".into(),
            command_version("redis", "redis-server", "--version"),
        ),
        (
            "nginx".into(),
            procs::nginx_binary()
                .map(|b| command_version("nginx", b, "-v"))
                .unwrap_or_else(|| "nginx not installed".into()),
        ),
        ("handoff_binary".into(), HANDOFF_BIN.to_string()),
        (
            "mode".into(),
            if s.smoke {
                "smoke".into()
            } else {
                "full".into()
            },
        ),
        (
            "loop".into(),
            match s.mode {
                Mode::Closed => "closed".into(),
                Mode::Open(r) => format!("open at {r} req/s"),
            },
        ),
        ("client_threads".into(), args.client_threads.to_string()),
        ("proxy_threads".into(), args.proxy_threads.to_string()),
        ("session_feature".into(), session.to_string()),
        (
            "unix_time".into(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_string(),
        ),
    ]);
    report.header = format!(
        "handoff load bench ({}): {} loop, {:.1} s per point after {:.1} s warm-up, median of {} interleaved round(s) \
         for direct/pingora/nginx/pass-through/session; client {} thread(s); handoff/pingora {} threads, nginx {} workers; \
         {} cores; {}; {}",
        if s.smoke { "smoke" } else { "full" },
        match s.mode { Mode::Closed => "closed".to_string(), Mode::Open(r) => format!("open ({r:.0} req/s)") },
        s.duration.as_secs_f64(),
        s.warmup.as_secs_f64(),
        s.rounds,
        args.client_threads,
        args.proxy_threads,
        args.proxy_threads,
        report.env["cores"],
        report.env["redis"],
        report.env["nginx"],
    );

    // Say who is who, so a profiler can be attached (`perf record -p PID`).
    let mut who = vec![format!(
        "upstream {} (pid {})",
        upstream_addr,
        upstream.pid()
    )];
    if let Some((p, port)) = &redis {
        who.push(format!("redis 127.0.0.1:{port} (pid {})", p.pid()));
    }
    for (p, a) in [&pingora, &nginx].into_iter().flatten() {
        who.push(format!("{} {a} (pid {})", p.name, p.pid()));
    }
    for h in [
        handoff_redis.as_ref(),
        handoff_mem.as_ref(),
        probe.as_ref().map(|(h, _)| h),
    ]
    .into_iter()
    .flatten()
    {
        who.push(format!("{} {} (pid {})", h.proc.name, h.addr, h.proc.pid()));
    }
    eprintln!(
        "started: {}; configs and logs in {}",
        who.join(", "),
        d.display()
    );
    Ok(Lab {
        exe: exe.to_path_buf(),
        proxy_threads: args.proxy_threads,
        session,
        rt: tokio_rt(args.client_threads)?,
        ticks: procs::clock_ticks() as f64,
        settings: s.clone(),
        upstream,
        upstream_addr,
        redis,
        pingora,
        nginx,
        handoff_redis,
        handoff_mem,
        probe,
        started: Instant::now(),
        dir: d,
    })
}

/// Runs every scenario at every level; false when the harness itself is broken
/// (a scenario with no successful request, or mostly errors) — numbers are never
/// judged here, only whether the machinery worked.
fn run_scenarios(lab: &Lab, report: &mut Report) -> Result<bool, String> {
    let s = &lab.settings;
    let up = lab.upstream_addr;
    let get = |host: String, addr: SocketAddr| -> (SocketAddr, Arc<dyn Gen>) {
        (
            addr,
            Arc::new(StaticReq {
                req: browser_get(&host, "/account", "").into_bytes(),
                status: 200,
                needle: None,
            }),
        )
    };
    let mint_gen = |h: &Handoff, pool: &Arc<Pool>| -> Arc<dyn Gen> {
        Arc::new(TokenGrant {
            host: h.host(),
            audience: Some(h.audience()),
            pool: Some(pool.clone()),
        })
    };
    let redeem_gen = |h: &Handoff, pool: &Arc<Pool>| -> Arc<dyn Gen> {
        Arc::new(Redeem {
            host: h.host(),
            pool: pool.clone(),
            sessions: None,
        })
    };

    // Pre-flight: every path answers as expected before anything is timed (this
    // also fetches the IdP's discovery document and JWKS into handoff's caches).
    let mut preflight: Vec<(&str, SocketAddr, Arc<dyn Gen>)> = Vec::new();
    let (a, g) = get(up.to_string(), up);
    preflight.push(("upstream", a, g));
    if let Some((_, a)) = &lab.pingora {
        let (a, g) = get(a.to_string(), *a);
        preflight.push(("bare pingora", a, g));
    }
    if let Some((_, a)) = &lab.nginx {
        let (a, g) = get(a.to_string(), *a);
        preflight.push(("nginx", a, g));
    }
    let instances = [
        lab.handoff_redis.as_ref(),
        lab.handoff_mem.as_ref(),
        lab.probe.as_ref().map(|(h, _)| h),
    ];
    for h in instances.into_iter().flatten() {
        let (a, g) = get(h.host(), h.addr);
        preflight.push(("handoff", a, g));
        let pool = Arc::new(Pool::default());
        preflight.push(("handoff mint", h.addr, mint_gen(h, &pool)));
        preflight.push(("handoff redeem", h.addr, redeem_gen(h, &pool)));
    }
    for (what, addr, gen) in preflight {
        let o = lab.drive(addr, gen, 1, 1, Duration::from_secs(15));
        if o.ok != 1 {
            return Err(format!(
                "pre-flight: {what} at {addr} did not answer as expected: {} (logs in {})",
                o.first_error.unwrap_or_else(|| "no answer".into()),
                lab.dir.display()
            ));
        }
    }

    // The session scenario needs logged-in browsers: mint, redeem, keep `_session`.
    let mut session_cookies: Vec<String> = Vec::new();
    let session_available = report
        .skipped
        .iter()
        .all(|x| !x.starts_with("session cookie"));
    if let (Some(h), true, true) = (&lab.handoff_redis, s.wants("session"), session_available) {
        let n = s.levels.iter().copied().max().unwrap_or(16).clamp(16, 1000);
        let pool = Arc::new(Pool::default());
        lab.drive(
            h.addr,
            mint_gen(h, &pool),
            16,
            n as u64,
            Duration::from_secs(60),
        );
        let got = Arc::new(Mutex::new(Vec::new()));
        let gen = Arc::new(Redeem {
            host: h.host(),
            pool,
            sessions: Some(got.clone()),
        });
        lab.drive(h.addr, gen, 16, n as u64, Duration::from_secs(60));
        session_cookies = std::mem::take(&mut *got.lock().unwrap());
        if session_cookies.is_empty() {
            report.skipped.push(
                "session cookie scenario: no `_session` cookie came back from the logins".into(),
            );
        }
    }

    let mut healthy = true;
    let mut keep = |p: Point, report: &mut Report| {
        // Only a scenario that never succeeded fails the run (the harness is
        // broken); errors are reported, never judged.
        if p.outcome.ok == 0 {
            healthy = false;
            report.skipped.push(format!(
                "BROKEN: {} at {} conns: {} ok, {} errors ({})",
                report::label(&p.scenario),
                p.conns,
                p.outcome.ok,
                p.outcome.errors,
                p.outcome.first_error.clone().unwrap_or_default()
            ));
        }
        report.points.push(p);
    };
    let mut probed: Vec<&str> = Vec::new();
    let mut probe = |key: &'static str, gen: Arc<dyn Gen>, report: &mut Report| {
        if !probed.contains(&key) {
            probed.push(key);
            if let Some(rt) = lab.round_trips(key, gen) {
                report.round_trips.push(rt);
            }
        }
    };

    let mut redeem_probed = false;
    let mut levels = s.levels.clone();
    if s.rss_conns > 0 && !levels.contains(&s.rss_conns) {
        levels.push(s.rss_conns);
    }
    for &c in &levels {
        if !lab.time_left() {
            report.skipped.push(format!(
                "{c} conns: the run's time budget ({} min) is spent",
                MAX_RUN.as_secs() / 60
            ));
            continue;
        }
        let rss_only = !s.levels.contains(&c);
        eprintln!(
            "-- {c} connection(s){}",
            if rss_only { " (RSS point)" } else { "" }
        );
        let run = |key, (addr, gen): (SocketAddr, Arc<dyn Gen>), procs, redis, handoff| Run {
            key,
            addr,
            gen,
            conns: c,
            warmup: s.warmup,
            max_requests: s.max_requests,
            procs,
            redis,
            handoff,
            mode: None,
        };
        // The cheap scenarios and their baselines run in interleaved rounds, each
        // round in a rotated order, and the table takes each one's median round:
        // a neighbour's burst of CPU then hurts one round, not one scenario.
        let fresh = if rss_only { Some(lab.fresh()?) } else { None };
        let (pingora, nginx, main_h) = match &fresh {
            Some(f) => (f.pingora.as_ref(), f.nginx.as_ref(), f.handoff.as_ref()),
            None => (
                lab.pingora.as_ref(),
                lab.nginx.as_ref(),
                lab.handoff_redis.as_ref().or(lab.handoff_mem.as_ref()),
            ),
        };
        let mut cheap: Vec<Run<'_>> = Vec::new();
        if s.wants("direct") && !rss_only {
            cheap.push(run(
                "direct",
                get(up.to_string(), up),
                vec![&lab.upstream],
                false,
                None,
            ));
        }
        if let (Some((pp, a)), true) = (pingora, s.wants("pingora")) {
            cheap.push(run(
                "pingora",
                get(a.to_string(), *a),
                vec![pp, &lab.upstream],
                false,
                None,
            ));
        }
        if let (Some((np, a)), true) = (nginx, s.wants("nginx")) {
            cheap.push(run(
                "nginx",
                get(a.to_string(), *a),
                vec![np, &lab.upstream],
                false,
                None,
            ));
        }
        if let (Some(h), true) = (main_h, s.wants("pass")) {
            let mut procs = vec![&h.proc, &lab.upstream];
            if let Some((r, _)) = &lab.redis {
                procs.push(r);
            }
            cheap.push(run(
                "pass",
                get(h.host(), h.addr),
                procs,
                lab.redis.is_some(),
                Some(h),
            ));
        }
        if let (Some(h), false, false) = (&lab.handoff_redis, session_cookies.is_empty(), rss_only)
        {
            let gen: Arc<dyn Gen> = Arc::new(SessionReq {
                host: h.host(),
                cookies: session_cookies.clone(),
            });
            let (r, _) = lab.redis.as_ref().expect("a Redis-store handoff has redis");
            cheap.push(run(
                "session",
                (h.addr, gen),
                vec![&h.proc, &lab.upstream, r],
                true,
                Some(h),
            ));
        }
        if rss_only {
            // Fresh servers first hold `c` keep-alive connections that are mostly
            // idle (open loop, one request per connection per second): memory per
            // connection. Then the rounds below put `c` requests in flight.
            for r in &cheap {
                let mut p = lab.measure(Run {
                    procs: r.procs.clone(),
                    gen: r.gen.clone(),
                    mode: Some(Mode::Open(c as f64)),
                    ..*r
                });
                p.round = usize::MAX;
                report.keepalive.push(p);
            }
        }
        let mut pass_all = Vec::new();
        for round in 0..s.rounds {
            let n = cheap.len().max(1);
            for i in 0..cheap.len() {
                let r = &cheap[(i + round) % n];
                let mut p = lab.measure(Run {
                    procs: r.procs.clone(),
                    gen: r.gen.clone(),
                    ..*r
                });
                p.round = round;
                if p.scenario == "pass" {
                    pass_all.push(p.outcome.rps());
                }
                keep(p, report);
            }
        }
        pass_all.sort_by(f64::total_cmp);
        let pass_rps = pass_all.get(pass_all.len() / 2).copied();
        if rss_only {
            drop(cheap);
            drop(fresh);
            continue;
        }
        if let Some(h) = main_h.filter(|_| s.wants("pass")) {
            probe("pass", get(h.host(), h.addr).1, report);
        }
        if let (Some(h), false) = (&lab.handoff_redis, session_cookies.is_empty()) {
            // One browser, request after request: after the first, the local cache
            // is fresh, and the store should not be asked.
            let one: Arc<dyn Gen> = Arc::new(SessionReq {
                host: h.host(),
                cookies: session_cookies[..1].to_vec(),
            });
            probe("session", one, report);
        }
        if s.wants("idp-token") || s.wants("mint") {
            let gen: Arc<dyn Gen> = Arc::new(TokenGrant {
                host: up.to_string(),
                audience: None,
                pool: None,
            });
            keep(
                lab.measure(run(
                    "idp-token",
                    (up, gen),
                    vec![&lab.upstream],
                    false,
                    None,
                )),
                report,
            );
        }
        let mut mint_rps = None;
        for (h, mint_key, redeem_key) in [
            (&lab.handoff_redis, "mint", "redeem"),
            (&lab.handoff_mem, "mint-mem", "redeem-mem"),
        ] {
            let Some(h) = h else { continue };
            let redis_backed = mint_key == "mint";
            let mut procs = vec![&h.proc, &lab.upstream];
            if redis_backed {
                if let Some((r, _)) = &lab.redis {
                    procs.push(r);
                }
            }
            if s.wants(mint_key) {
                let p = lab.measure(run(
                    mint_key,
                    (h.addr, mint_gen(h, &h.pool)),
                    procs.clone(),
                    redis_backed,
                    Some(h),
                ));
                mint_rps = Some(p.outcome.rps());
                keep(p, report);
                if redis_backed {
                    probe(mint_key, mint_gen(h, &Arc::new(Pool::default())), report);
                }
            }
            if s.wants(redeem_key) {
                // Each redemption spends a fresh token minted beforehand; a point
                // uses at most `redeem_cap` of them and ends early when they run out.
                let warm = s.warmup.min(Duration::from_millis(500));
                let est = match (mint_rps, pass_rps) {
                    (Some(m), Some(p)) => (2.0 * m).min(p),
                    (Some(m), None) => 2.0 * m,
                    (None, Some(p)) => p,
                    (None, None) => 5000.0,
                }
                .max(500.0);
                let need =
                    ((est * (warm + s.duration).as_secs_f64() * 1.2) as usize).min(s.redeem_cap);
                lab.top_up(h, need);
                let mut r = run(
                    redeem_key,
                    (h.addr, redeem_gen(h, &h.pool)),
                    procs.clone(),
                    redis_backed,
                    Some(h),
                );
                r.warmup = warm;
                r.max_requests = need as u64;
                keep(lab.measure(r), report);
                if redis_backed && !redeem_probed {
                    redeem_probed = true;
                    // Tokens minted by the measured instance, redeemed at the probe
                    // instance: they share the store, as instances of one deployment do.
                    lab.top_up(h, s.probe as usize + 5);
                    probe(redeem_key, redeem_gen(h, &h.pool), report);
                }
            }
        }
    }

    // Mint's own cost: at the lowest level, mint p50 minus the IdP's own grant p50.
    if let Some(&c) = s.levels.iter().min() {
        let find = |k: &str| {
            report
                .points
                .iter()
                .find(|p| p.scenario == k && p.conns == c)
        };
        let idp = find("idp-token");
        for key in ["mint", "mint-mem"] {
            if let (Some(m), Some(i), None) = (find(key), idp, report.mint_own) {
                let own = m.outcome.pct_us(0.5) - i.outcome.pct_us(0.5);
                report.mint_own = Some((c, own, m.server_cpu().unwrap_or(f64::NAN)));
            }
        }
    }

    // Redis memory per outstanding STT: a batch of fresh mints, never redeemed.
    if let (Some(h), Some((_, port)), true) = (&lab.handoff_redis, &lab.redis, s.wants("mint")) {
        if let Ok(mut redis) = RedisProbe::connect(*port) {
            let before = redis.used_memory();
            let o = lab.drive(
                h.addr,
                mint_gen(h, &Arc::new(Pool::default())),
                16,
                s.memory_batch as u64,
                Duration::from_secs(60),
            );
            let after = redis.used_memory();
            let (keys, mean, min, max) = redis.memory_usage("*:stt:*", 1000);
            let (ukeys, umean, _, _) = redis.memory_usage("*:used:*", 200);
            report.store_memory = Some(StoreMemory {
                keys,
                mean,
                min,
                max,
                used_memory_per_stt: (o.ok > 0)
                    .then(|| (after as f64 - before as f64) / o.ok as f64),
                used_marker_mean: (ukeys > 0).then_some(umean),
            });
        }
    }
    Ok(healthy)
}

// ---- --target: an external deployment --------------------------------------------

/// Refuses a URL whose host is not loopback, unless the operator owns it.
fn vet_target(url: &str, owned: bool) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url}: only http:// and https:// URLs")),
    }
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve {host}: {e}"))?
        .collect();
    let loopback = !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback());
    if !loopback && !owned {
        return Err(format!(
            "{url} is not on loopback ({}); load-testing someone else's server is an attack. \
             If you own it, pass --i-own-this-target.",
            addrs
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(uri)
}

struct AnyOk;

impl Gen for AnyOk {
    fn request(&self, _seq: u64, _out: &mut Vec<u8>) -> bool {
        true
    }
    fn check(&self, status: u16, _head: &[u8], _body: &[u8]) -> bool {
        status < 400
    }
}

struct PidWindow {
    pid: Option<u32>,
    t0: u64,
    t1: u64,
    rss: u64,
}

impl Window for PidWindow {
    fn open(&mut self) {
        if let Some(p) = self.pid {
            let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
            self.t0 = procs::cpu_ticks(p);
        }
    }
    fn close(&mut self) {
        if let Some(p) = self.pid {
            self.t1 = procs::cpu_ticks(p);
            self.rss = procs::status_kib(p, "VmHWM:");
        }
    }
}

fn target_mode(args: &Args) -> Result<bool, String> {
    let s = Settings::from(args)?;
    let target = vet_target(args.target.as_deref().unwrap_or(""), args.i_own_this_target)?;
    let baseline = args
        .baseline
        .as_deref()
        .map(|b| vet_target(b, args.i_own_this_target))
        .transpose()?;
    let levels: Vec<usize> =
        args.concurrency
            .clone()
            .unwrap_or_else(|| if s.smoke { vec![8] } else { vec![1, 16, 64] });
    if levels.iter().any(|c| *c > 1000) {
        return Err("--target: at most 1000 connections".into());
    }
    let max = args.max_requests.unwrap_or(100_000).min(1_000_000);
    let mut headers = Vec::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected `Name: value`"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let ca = args
        .ca_file
        .as_ref()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    let rt = tokio_rt(args.client_threads)?;
    let ticks = procs::clock_ticks() as f64;
    let mut report = Report {
        header: format!(
            "handoff load bench against {target}{}: {} loop, {:.1} s per point after {:.1} s warm-up, at most {max} requests per point",
            baseline.as_ref().map(|b| format!(" (baseline {b})")).unwrap_or_default(),
            match s.mode { Mode::Closed => "closed".to_string(), Mode::Open(r) => format!("open ({r:.0} req/s)") },
            s.duration.as_secs_f64(),
            s.warmup.as_secs_f64(),
        ),
        baseline_key: baseline.as_ref().map(|_| "baseline".to_string()),
        ..Report::default()
    };
    let started = Instant::now();
    let mut healthy = true;
    for &c in &levels {
        let client = client::hyper_client(c, ca.as_deref())?;
        let mut runs = Vec::new();
        if let Some(b) = &baseline {
            runs.push(("baseline", b.clone(), None));
        }
        runs.push(("target", target.clone(), args.pid));
        for (key, uri, pid) in runs {
            if started.elapsed() > MAX_RUN {
                report.skipped.push("time budget spent".into());
                break;
            }
            let plan = Plan {
                engine: Engine::Hyper {
                    client: Box::new(client.clone()),
                    uri,
                    headers: headers.clone(),
                },
                gen: Arc::new(AnyOk),
                conns: c,
                mode: s.mode,
                warmup: s.warmup,
                duration: s.duration,
                max_requests: max,
            };
            let mut w = PidWindow {
                pid,
                t0: 0,
                t1: 0,
                rss: 0,
            };
            let outcome = rt.block_on(client::run(&plan, &mut w));
            let done = (outcome.ok + outcome.errors).max(1) as f64;
            let mut cpu = BTreeMap::new();
            let mut rss = BTreeMap::new();
            if pid.is_some() {
                cpu.insert(
                    "target".to_string(),
                    (w.t1.saturating_sub(w.t0)) as f64 / ticks * 1e6 / done,
                );
                rss.insert("target".to_string(), w.rss);
            }
            if outcome.ok == 0 {
                healthy = false;
            }
            eprintln!(
                "   {key:<9} {c:>4} conns {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  {} errors",
                outcome.rps(),
                outcome.pct_us(0.5) / 1000.0,
                outcome.pct_us(0.99) / 1000.0,
                outcome.errors
            );
            let mut notes = Vec::new();
            if let Some(e) = &outcome.first_error {
                notes.push(format!("first error: {e}"));
            }
            report.points.push(Point {
                scenario: key.to_string(),
                conns: c,
                rate: match s.mode {
                    Mode::Open(r) => Some(r),
                    Mode::Closed => None,
                },
                server: "target".into(),
                outcome,
                cpu_us: cpu,
                peak_rss_kib: rss,
                redis_cmds_per_req: None,
                handoff_counters: BTreeMap::new(),
                machine_busy: 0.0,
                other_cores: 0.0,
                irq_cores: 0.0,
                upstream_conns: None,
                round: 0,
                notes,
            });
        }
    }
    print!("{}", report.table());
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| target_dir().join("load-bench-target.json"));
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report.json(false)).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", json_path.display()))?;
    println!("\nJSON: {}", json_path.display());
    Ok(healthy)
}
