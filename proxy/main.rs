//! The `handoff` command: run the proxy, check files, make keys.

use clap::{Parser, Subcommand};
use handoff::app::{load_signer, Handoff};
use handoff::clock::SystemClock;
use handoff::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// handoff: Native-to-Web SSO in front of an OpenID Connect identity provider.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The server config file (runs the proxy when no subcommand is given).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text", global = true)]
    log_format: String,
    /// Take over the listening sockets of a running handoff (zero-downtime upgrade).
    #[arg(long)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Check the server config.
    Config {
        #[command(subcommand)]
        what: ConfigCmd,
    },
    /// Check the rules file.
    Rules {
        #[command(subcommand)]
        what: RulesCmd,
    },
    /// Write a new Ed25519 assertion signing key (PKCS#8 PEM).
    Keygen {
        /// Where to write it (refuses to overwrite).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Print the assertion verification JWKS for the key the config names.
    Jwks,
    /// Talk to a running handoff's admin listener (address and token from --config).
    Admin {
        #[command(subcommand)]
        what: AdminCmd,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// List a subject's lineages and web sessions.
    List {
        /// The user (`sub`).
        #[arg(long)]
        subject: String,
    },
    /// Revoke a lineage, one web session, or everything of a subject.
    Revoke {
        /// A lineage id (alone: the whole lineage; with --session: one session of it).
        #[arg(long, conflicts_with = "subject")]
        lineage: Option<String>,
        /// A web session id (needs --lineage).
        #[arg(long, requires = "lineage")]
        session: Option<String>,
        /// A user: every web session of theirs.
        #[arg(long)]
        subject: Option<String>,
        /// With --subject: revoke their lineages too (no more mints from them).
        #[arg(long, requires = "subject")]
        lineages: bool,
    },
    /// Reload the rules file.
    Reload,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a config file; exit 1 with the reason when it is wrong.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Validate a rules file; diagnostics like a compiler, exit 1 on error.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Explain what a redemption would get: the decision, which rules matched and
    /// why, and the effective lifetimes. Exit 0 allowed, 1 denied, 2 bad input.
    Explain {
        /// The rules file.
        file: PathBuf,
        /// The native client that minted the token.
        #[arg(long)]
        native_client: String,
        /// The web client redeeming it (`client_id` of the authorize request).
        #[arg(long)]
        web_client: String,
        /// The IP that minted the token.
        #[arg(long)]
        mint_ip: std::net::IpAddr,
        /// The IP that redeems it.
        #[arg(long)]
        redeem_ip: std::net::IpAddr,
        /// How the token arrives: `cookie` or `query`.
        #[arg(long, default_value = "cookie")]
        method: handoff_rules::AuthMethod,
        /// An ip2asn TSV table, for ASN bindings and matchers.
        #[arg(long)]
        asn_table: Option<PathBuf>,
        /// Time of day of the redemption, `HH:MM` UTC (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Pretend the redeeming device's fingerprint differs from the minting one.
        #[arg(long)]
        other_device: bool,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    let path =
        path.ok_or("no config file: pass --config FILE (see deploy/examples/handoff.toml)")?;
    Config::load(path).map_err(|e| e.to_string())
}

fn run(cli: &Cli) -> Result<(), String> {
    let config = load_config(cli.config.as_ref())?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    handoff::logging::init(&cli.log_format);
    let result = match &cli.command {
        None | Some(Command::Run) => run(&cli),
        Some(Command::Rules {
            what:
                RulesCmd::Explain {
                    file,
                    native_client,
                    web_client,
                    mint_ip,
                    redeem_ip,
                    method,
                    asn_table,
                    at,
                    other_device,
                },
        }) => {
            return match explain(
                file,
                native_client,
                web_client,
                *mint_ip,
                *redeem_ip,
                *method,
                asn_table.as_deref(),
                at.as_deref(),
                *other_device,
            ) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("handoff: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Config {
            what: ConfigCmd::Check { file },
        }) => check_config(file),
        Some(Command::Rules {
            what: RulesCmd::Check { file },
        }) => std::fs::read_to_string(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))
            .and_then(|text| {
                let p = handoff_rules::Policy::from_toml(&text, &file.display().to_string())
                    .map_err(|d| d.to_string())?;
                for w in p.warnings() {
                    eprintln!("{w}");
                }
                println!("{}: ok", file.display());
                Ok(())
            }),
        Some(Command::Keygen { out }) => {
            if out.exists() {
                Err(format!(
                    "{} exists; refusing to overwrite a key",
                    out.display()
                ))
            } else {
                write_private(out, handoff::jws::generate_ed25519_pem().as_bytes())
                    .map(|()| println!("wrote {} (set assertion.key_file to it)", out.display()))
                    .map_err(|e| format!("{}: {e}", out.display()))
            }
        }
        Some(Command::Admin { what }) => {
            load_config(cli.config.as_ref()).and_then(|c| admin_call(&c, what))
        }
        Some(Command::Jwks) => load_config(cli.config.as_ref())
            .and_then(|c| load_signer(&c))
            .map(|s| {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s.0.public_jwks()).expect("JWKS serializes")
                );
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("handoff: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `handoff rules explain`: prints the explanation; Ok(allowed).
#[allow(clippy::too_many_arguments)]
fn explain(
    file: &std::path::Path,
    native_client: &str,
    web_client: &str,
    mint_ip: std::net::IpAddr,
    redeem_ip: std::net::IpAddr,
    method: handoff_rules::AuthMethod,
    asn_table: Option<&std::path::Path>,
    at: Option<&str>,
    other_device: bool,
) -> Result<bool, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    let policy = handoff_rules::Policy::from_toml(&text, &file.display().to_string())
        .map_err(|d| d.to_string())?;
    for w in policy.warnings() {
        eprintln!("{w}");
    }
    let table = match asn_table {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
            Some(
                handoff_rules::AsnTable::parse(&t, &p.display().to_string())
                    .map_err(|d| d.to_string())?,
            )
        }
        None => {
            if policy.uses_asn() {
                eprintln!("warning: the rules use ASNs but no --asn-table was given: every ASN is unknown");
            }
            None
        }
    };
    let minute_of_day_utc = match at {
        Some(t) => {
            let (h, m) = t
                .split_once(':')
                .ok_or_else(|| format!("--at {t:?}: expected HH:MM"))?;
            let (h, m): (u16, u16) = (
                h.parse().map_err(|_| format!("--at {t:?}: bad hour"))?,
                m.parse().map_err(|_| format!("--at {t:?}: bad minute"))?,
            );
            if h > 23 || m > 59 {
                return Err(format!(
                    "--at {t:?}: expected HH:MM between 00:00 and 23:59"
                ));
            }
            h * 60 + m
        }
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            ((secs / 60) % 1440) as u16
        }
    };
    let fp = [7u8; 32];
    let other = [9u8; 32];
    let ctx = handoff_rules::RedeemContext {
        native_client,
        web_client,
        method,
        mint_ip,
        redeem_ip,
        mint_fingerprint: Some(fp),
        redeem_fingerprint: Some(if other_device { other } else { fp }),
        mint_asn: table.as_ref().and_then(|t| t.lookup(mint_ip)),
        redeem_asn: table.as_ref().and_then(|t| t.lookup(redeem_ip)),
        minute_of_day_utc,
    };
    let e = handoff_rules::explain(&policy, &ctx);
    print!("{e}");
    Ok(e.is_allowed())
}

/// Validates the config and everything it names (signing key, rules file).
fn check_config(file: &std::path::Path) -> Result<(), String> {
    let c = Config::load(file).map_err(|e| e.to_string())?;
    load_signer(&c)?;
    let policy = handoff::app::load_policy(&c)?;
    for w in policy.warnings() {
        eprintln!("{w}");
    }
    println!(
        "{}: ok ({} listener(s), upstream {}, mint audience {})",
        file.display(),
        c.listeners.len(),
        c.upstream.address,
        c.mint_audience()
    );
    Ok(())
}

/// One call to the admin API; prints the JSON answer; fails on a non-2xx status.
fn admin_call(c: &Config, what: &AdminCmd) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    let addr = c
        .admin
        .listen
        .as_deref()
        .ok_or("the admin listener is disabled in this config")?;
    let (method, path, body) = match what {
        AdminCmd::List { subject } => (
            "GET",
            format!(
                "/sessions?subject={}",
                form_urlencoded::byte_serialize(subject.as_bytes()).collect::<String>()
            ),
            String::new(),
        ),
        AdminCmd::Revoke {
            lineage,
            session,
            subject,
            lineages,
        } => {
            let body = match (lineage, session, subject) {
                (Some(l), Some(s), _) => serde_json::json!({"lineage": l, "session": s}),
                (Some(l), None, _) => serde_json::json!({"lineage": l}),
                (None, _, Some(sub)) => serde_json::json!({"subject": sub, "lineages": lineages}),
                _ => return Err("give --lineage [--session], or --subject".into()),
            };
            ("POST", "/revoke".to_string(), body.to_string())
        }
        AdminCmd::Reload => ("POST", "/rules/reload".to_string(), String::new()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<bytes::Bytes>>();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/json");
        if let Some(t) = &c.admin.token {
            req = req.header("authorization", format!("Bearer {}", t.expose()));
        }
        let req = req
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| format!("admin listener {addr}: timed out"))?
            .map_err(|e| format!("admin listener {addr}: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        println!("{}", String::from_utf8_lossy(&bytes));
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("admin listener answered {status}"))
        }
    })
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
