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
//!
//! | module | what |
//! |---|---|
//! | `settings` | the flags, the modes (full, `--smoke`) and the run-wide settings |
//! | `scenarios` | the table of scenarios and the run through them, level by level |
//! | `requests` | what each scenario sends and counts as a success |
//! | `lab` | starting handoff, bare pingora, nginx, redis and the fake IdP |
//! | `measure` | one timed point: load, percentiles, CPU per request, RSS, noise |
//! | `target` | `--target`: an external deployment, with its loopback guard |
//! | `client`, `procs`, `report` | the HTTP load client, processes and `/proc`, the table and JSON |
//! | `fake_idp`, `bare_pingora` | the `--role` parts |

mod bare_pingora;
mod client;
mod fake_idp;
mod lab;
mod measure;
mod procs;
mod report;
mod requests;
mod scenarios;
mod settings;
mod target;

use clap::Parser;
use lab::Lab;
use report::Report;
use settings::{target_dir, Args, Settings};
use std::process::ExitCode;

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
        target::run(&args)
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

/// The local run: start the lab, run the scenarios, print the table and the
/// targets, write the JSON.
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
    let lab = Lab::start(&s, &exe, &d, &mut report).map_err(keep_logs)?;
    let healthy = scenarios::run_all(&lab, &mut report).map_err(keep_logs)?;
    drop(lab);

    print!("{}", report.table());
    print!("{}", report.targets_text());
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| target_dir().join("load-bench.json"));
    if let Some(parent) = json_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    report.write_json(&json_path, true)?;
    if args.keep || !healthy {
        println!("configs and logs kept in {}", d.display());
    } else {
        let _ = std::fs::remove_dir_all(&d);
    }
    Ok(healthy)
}
