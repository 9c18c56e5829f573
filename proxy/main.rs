//! The `handoff` command: parse the arguments, run a subcommand ([`cli`]) or
//! build the services from the config and hand them to pingora.

mod cli;

use clap::Parser;
use handoff::app::Handoff;
use handoff::clock::SystemClock;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    handoff::logging::init(&args.log_format);
    let subcommand = args.command.as_ref();
    match subcommand.and_then(|c| cli::dispatch(c, args.config.as_ref())) {
        Some(code) => code,
        None => cli::exit(run(&args)),
    }
}

/// Runs the proxy: the validated config → the shared state → pingora's services.
fn run(cli: &cli::Cli) -> Result<(), String> {
    let config = cli::load_config(cli.config.as_ref())?;
    let h = Handoff::build(config, Arc::new(SystemClock))?;
    tracing::info!(
        listeners = ?h.config.listeners.iter().map(|l| l.addr.as_str()).collect::<Vec<_>>(),
        admin = ?h.config.admin.listen,
        upstream = %h.config.upstream.address,
        store = if matches!(h.config.store, handoff::config::StoreConfig::Memory { .. }) { "memory" } else { "redis" },
        "handoff starting"
    );
    let opt = pingora::server::configuration::Opt {
        upgrade: cli.upgrade,
        ..Default::default()
    };
    let server = handoff::server::build(h.clone(), Some(opt))?;
    spawn_sighup_reload(h);
    server.run_forever()
}

/// SIGHUP reloads the rules (SPEC §4).
fn spawn_sighup_reload(h: Arc<Handoff>) {
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGHUP");
                return;
            }
        };
        rt.block_on(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::error!("cannot watch SIGHUP");
                return;
            };
            while hup.recv().await.is_some() {
                let _ = h.reload_rules("sighup");
            }
        });
    });
}
