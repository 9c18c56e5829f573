//! The `handoff` subcommands other than running the proxy: what each one takes
//! (the clap types, here) and does (one module each). `main.rs` parses, then
//! either runs the proxy or hands the command to [`dispatch`].

mod admin;
mod check;
mod explain;
mod keygen;

use clap::{Args, Parser, Subcommand};
use handoff::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// handoff: Native-to-Web SSO in front of an OpenID Connect identity provider.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// The server config file (runs the proxy when no subcommand is given).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text", global = true)]
    pub log_format: String,
    /// Take over the listening sockets of a running handoff (zero-downtime upgrade).
    #[arg(long)]
    pub upgrade: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
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
pub enum AdminCmd {
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
pub enum ConfigCmd {
    /// Validate a config file; exit 1 with the reason when it is wrong.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum RulesCmd {
    /// Validate a rules file; diagnostics like a compiler, exit 1 on error.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Explain what a redemption would get: the decision, which rules matched and
    /// why, and the effective lifetimes. Exit 0 allowed, 1 denied, 2 bad input.
    Explain(ExplainArgs),
}

/// The arguments of `handoff rules explain`.
#[derive(Args)]
pub struct ExplainArgs {
    /// The rules file.
    pub file: PathBuf,
    /// The native client that minted the token.
    #[arg(long)]
    pub native_client: String,
    /// The web client redeeming it (`client_id` of the authorize request).
    #[arg(long)]
    pub web_client: String,
    /// The IP that minted the token.
    #[arg(long)]
    pub mint_ip: std::net::IpAddr,
    /// The IP that redeems it.
    #[arg(long)]
    pub redeem_ip: std::net::IpAddr,
    /// How the token arrives: `cookie` or `query`.
    #[arg(long, default_value = "cookie")]
    pub method: handoff_rules::AuthMethod,
    /// An ip2asn TSV table, for ASN bindings and matchers.
    #[arg(long)]
    pub asn_table: Option<PathBuf>,
    /// Time of day of the redemption, `HH:MM` UTC (default: now).
    #[arg(long)]
    pub at: Option<String>,
    /// Pretend the redeeming device's fingerprint differs from the minting one.
    #[arg(long)]
    pub other_device: bool,
}

/// Runs one subcommand to its exit code; `None` for `run`, which is main's.
pub fn dispatch(command: &Command, config: Option<&PathBuf>) -> Option<ExitCode> {
    let result = match command {
        Command::Run => return None,
        Command::Rules {
            what: RulesCmd::Explain(args),
        } => return Some(explain::run(args)),
        Command::Config {
            what: ConfigCmd::Check { file },
        } => check::config(file),
        Command::Rules {
            what: RulesCmd::Check { file },
        } => check::rules(file),
        Command::Keygen { out } => keygen::keygen(out),
        Command::Jwks => load_config(config).and_then(|c| keygen::jwks(&c)),
        Command::Admin { what } => load_config(config).and_then(|c| admin::call(&c, what)),
    };
    Some(exit(result))
}

/// Exit 0, or print the error and exit 1.
pub fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("handoff: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The config `--config` names, validated (every error, one per line).
pub fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    let path =
        path.ok_or("no config file: pass --config FILE (see deploy/examples/handoff.toml)")?;
    Config::load(path).map_err(|e| e.to_string())
}

/// Reads a rules file, printing its warnings to stderr.
fn read_rules(file: &std::path::Path) -> Result<handoff_rules::Policy, String> {
    let policy = handoff::app::read_policy(file)?;
    print_warnings(&policy);
    Ok(policy)
}

fn print_warnings(policy: &handoff_rules::Policy) {
    for w in policy.warnings() {
        eprintln!("{w}");
    }
}
