//! The command line and the run-wide settings it selects: the full run (the
//! defaults), `--smoke` (CI: about 1 s per scenario at one level, installs
//! nothing) and `--target` (an external deployment, see `target`).

use crate::client::Mode;
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest point and longest whole run: everything is bounded in time.
pub const MAX_POINT_SECS: f64 = 60.0;
pub const MAX_RUN: Duration = Duration::from_secs(45 * 60);

/// Load harness for handoff (see benches/README.md).
#[derive(Parser, Debug, Clone)]
#[command(name = "cargo bench --bench load --", about, long_about = None)]
pub struct Args {
    /// CI mode: each scenario ~1 s at one concurrency level; installs nothing.
    #[arg(long)]
    pub smoke: bool,
    /// Interleaved rounds of direct/pingora/nginx/pass-through/session per level;
    /// the table shows each one's median round (default 3; smoke 1).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seconds measured per point (default 4; smoke 1; at most 60).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up seconds before each point (default 1; smoke 0.3).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Concurrency levels: connections per point (default 1,32,256; smoke 16).
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Option<Vec<usize>>,
    /// Connections for the RSS point (pass-through and baselines); 0 skips it
    /// (default 1000; smoke 0).
    #[arg(long)]
    pub rss_connections: Option<usize>,
    /// Open loop at this total rate (requests/s) instead of closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Only these scenarios: direct,pingora,nginx,pass,session,idp-token,mint,redeem,mint-mem,redeem-mem.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Option<Vec<String>>,
    /// Where to write the JSON results (default: <target dir>/load-bench.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Skip the nginx reference.
    #[arg(long)]
    pub no_nginx: bool,
    /// Cap on requests per point, warm-up included (default 5,000,000; target mode 100,000).
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Worker threads of the load client (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Worker threads of handoff and bare pingora, and nginx worker processes.
    #[arg(long, default_value_t = 2)]
    pub proxy_threads: usize,
    /// Keep the temporary folder (configs, logs) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Measure an external deployment: GET this URL (http or https).
    #[arg(long)]
    pub target: Option<String>,
    /// With --target: a baseline URL measured in the same run (e.g. the IdP itself).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Allow a --target/--baseline that is not on loopback (only if you own it).
    #[arg(long)]
    pub i_own_this_target: bool,
    /// With --target: extra request header `Name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// With --target: a PEM CA bundle to trust besides the web PKI roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// With --target: pid of the target's process on this machine, for CPU and RSS.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
    /// Internal: play a part (`upstream`, `bare-pingora`) instead of running the bench.
    #[arg(long, hide = true)]
    pub role: Option<String>,
    #[arg(long, hide = true)]
    pub listen: Option<String>,
    #[arg(long, hide = true)]
    pub upstream: Option<String>,
    /// Filters `cargo bench` may pass on to every bench; ignored here.
    #[arg(hide = true)]
    pub rest: Vec<String>,
}

/// Run-wide settings, from the flags and the mode.
#[derive(Debug, Clone)]
pub struct Settings {
    pub smoke: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub levels: Vec<usize>,
    pub rss_conns: usize,
    pub mode: Mode,
    pub max_requests: u64,
    /// Sequential requests per MONITOR probe.
    pub probe: u64,
    /// Interleaved rounds of the cheap scenarios (median reported).
    pub rounds: usize,
    /// Most tokens one redeem point may use.
    pub redeem_cap: usize,
    /// Fresh STTs minted for the memory measurement.
    pub memory_batch: usize,
    pub scenarios: Option<Vec<String>>,
    /// Worker threads of the load client.
    pub client_threads: usize,
    /// Worker threads of handoff and bare pingora, and nginx worker processes.
    pub proxy_threads: usize,
    /// Skip the nginx reference.
    pub no_nginx: bool,
}

impl Settings {
    pub fn from(a: &Args) -> Result<Settings, String> {
        let secs = |v: Option<f64>, full: f64, smoke: f64| -> Result<Duration, String> {
            let v = v.unwrap_or(if a.smoke { smoke } else { full });
            if !(0.0..=MAX_POINT_SECS).contains(&v) {
                return Err(format!("durations must be within 0..{MAX_POINT_SECS} s"));
            }
            Ok(Duration::from_secs_f64(v))
        };
        let levels = a
            .concurrency
            .clone()
            .unwrap_or_else(|| pick(a.smoke, vec![1, 32, 256], vec![16]));
        if levels.is_empty() || levels.iter().any(|c| *c == 0 || *c > 5000) {
            return Err("--concurrency: levels must be within 1..=5000".into());
        }
        let rss_conns = a.rss_connections.unwrap_or(pick(a.smoke, 1000, 0));
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
            probe: pick(a.smoke, 200, 20),
            rounds: a.rounds.unwrap_or(pick(a.smoke, 3, 1)).clamp(1, 9),
            redeem_cap: pick(a.smoke, 40_000, 8_000),
            memory_batch: pick(a.smoke, 2_000, 200),
            scenarios: a.scenarios.clone(),
            client_threads: a.client_threads,
            proxy_threads: a.proxy_threads,
            no_nginx: a.no_nginx,
        })
    }

    /// Whether `--scenarios` asks for `key` (every scenario when not given).
    pub fn wants(&self, key: &str) -> bool {
        self.scenarios
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == key))
    }

    /// `full` or `smoke`, for the header and the JSON.
    pub fn mode_name(&self) -> &'static str {
        if self.smoke {
            "smoke"
        } else {
            "full"
        }
    }
}

/// `full` in a full run, `smoke` with `--smoke`.
fn pick<T>(smoke: bool, full: T, smoke_value: T) -> T {
    if smoke {
        smoke_value
    } else {
        full
    }
}

/// The loop mode as the report's header says it.
pub fn loop_header(mode: Mode) -> String {
    match mode {
        Mode::Closed => "closed".to_string(),
        Mode::Open(r) => format!("open ({r:.0} req/s)"),
    }
}

/// The open-loop rate, if any (a point's `rate`).
pub fn open_rate(mode: Mode) -> Option<f64> {
    match mode {
        Mode::Open(r) => Some(r),
        Mode::Closed => None,
    }
}

/// Where the JSON goes by default: cargo's target folder.
pub fn target_dir() -> PathBuf {
    // <target>/release/deps/load-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// handoff's counters worth watching during a point.
pub const COUNTERS: &[&str] = &[
    "handoff_mints_total",
    "handoff_redemptions_total",
    "handoff_sessions_total",
    "handoff_store_errors_total",
];

/// A tokio runtime for the load client: current-thread for one thread.
pub fn tokio_rt(threads: usize) -> Result<tokio::runtime::Runtime, String> {
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
