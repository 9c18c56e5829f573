//! `--target URL`: GETs to an external deployment (http or https, through hyper
//! and rustls), with an optional `--baseline URL` measured in the same run and
//! `--pid` for a local process's CPU and RSS. It refuses any host that does not
//! resolve to loopback unless `--i-own-this-target` is given, and it is bounded
//! in connections, requests per point and time.

use crate::client::{self, Engine, Gen, Plan, Window};
use crate::procs;
use crate::report::{Point, Report};
use crate::settings::{loop_header, open_rate, target_dir, Args, Settings, MAX_RUN};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Refuses a URL whose host is not loopback, unless the operator owns it.
pub fn vet_target(url: &str, owned: bool) -> Result<http::Uri, String> {
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

/// What `--target` runs: the URLs, the levels, and the requests' extras.
struct TargetPlan {
    target: http::Uri,
    baseline: Option<http::Uri>,
    levels: Vec<usize>,
    /// Requests per point, at most.
    max: u64,
    headers: Vec<(String, String)>,
    ca: Option<Vec<u8>>,
}

impl TargetPlan {
    fn from(args: &Args, s: &Settings) -> Result<TargetPlan, String> {
        let owned = args.i_own_this_target;
        let target = vet_target(args.target.as_deref().unwrap_or(""), owned)?;
        let baseline = args
            .baseline
            .as_deref()
            .map(|b| vet_target(b, owned))
            .transpose()?;
        let levels: Vec<usize> = args.concurrency.clone().unwrap_or_else(|| {
            if s.smoke {
                vec![8]
            } else {
                vec![1, 16, 64]
            }
        });
        if levels.iter().any(|c| *c > 1000) {
            return Err("--target: at most 1000 connections".into());
        }
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
        Ok(TargetPlan {
            target,
            baseline,
            levels,
            max: args.max_requests.unwrap_or(100_000).min(1_000_000),
            headers,
            ca,
        })
    }
}

/// Measures the target (and the baseline) at each level; false when one never
/// answered.
pub fn run(args: &Args) -> Result<bool, String> {
    let s = Settings::from(args)?;
    let tp = TargetPlan::from(args, &s)?;
    let rt = crate::settings::tokio_rt(args.client_threads)?;
    let ticks = procs::clock_ticks() as f64;
    let mut report = Report {
        header: format!(
            "handoff load bench against {}{}: {} loop, {:.1} s per point after {:.1} s warm-up, at most {} requests per point",
            tp.target,
            tp.baseline.as_ref().map(|b| format!(" (baseline {b})")).unwrap_or_default(),
            loop_header(s.mode),
            s.duration.as_secs_f64(),
            s.warmup.as_secs_f64(),
            tp.max,
        ),
        baseline_key: tp.baseline.as_ref().map(|_| "baseline".to_string()),
        ..Report::default()
    };
    let started = Instant::now();
    let mut healthy = true;
    for &c in &tp.levels {
        let client = client::hyper_client(c, tp.ca.as_deref())?;
        let mut runs = Vec::new();
        if let Some(b) = &tp.baseline {
            runs.push(("baseline", b.clone(), None));
        }
        runs.push(("target", tp.target.clone(), args.pid));
        for (key, uri, pid) in runs {
            if started.elapsed() > MAX_RUN {
                report.skipped.push("time budget spent".into());
                break;
            }
            let plan = Plan {
                engine: Engine::Hyper {
                    client: Box::new(client.clone()),
                    uri,
                    headers: tp.headers.clone(),
                },
                gen: Arc::new(AnyOk),
                conns: c,
                mode: s.mode,
                warmup: s.warmup,
                duration: s.duration,
                max_requests: tp.max,
            };
            let p = point(&rt, &plan, key, pid, ticks);
            healthy &= p.outcome.ok > 0;
            report.points.push(p);
        }
    }
    print!("{}", report.table());
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| target_dir().join("load-bench-target.json"));
    report.write_json(&json_path, false)?;
    Ok(healthy)
}

/// One point against a URL (`key`: `target` or `baseline`).
fn point(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    key: &str,
    pid: Option<u32>,
    ticks: f64,
) -> Point {
    let mut w = PidWindow {
        pid,
        t0: 0,
        t1: 0,
        rss: 0,
    };
    let outcome = rt.block_on(client::run(plan, &mut w));
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
    eprintln!(
        "   {key:<9} {:>4} conns {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  {} errors",
        plan.conns,
        outcome.rps(),
        outcome.pct_us(0.5) / 1000.0,
        outcome.pct_us(0.99) / 1000.0,
        outcome.errors
    );
    let notes = outcome
        .first_error
        .iter()
        .map(|e| format!("first error: {e}"))
        .collect();
    Point {
        scenario: key.to_string(),
        conns: plan.conns,
        rate: open_rate(plan.mode),
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
    }
}
