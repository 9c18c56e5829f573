//! The lab of a local run: every process on 127.0.0.1, on free ports — the fake
//! IdP, `redis-server`, handoff (Redis store, embedded store, and a probe
//! instance behind a relay that counts store round trips), bare pingora and
//! nginx — and fresh copies of the proxies for the RSS point.

use crate::client::Mode;
use crate::procs::{self, free_port, Proc, Stop};
use crate::report::Report;
use crate::requests::Pool;
use crate::settings::{loop_header, Settings, MAX_RUN};
use crate::settings::{tokio_rt, COUNTERS};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

/// The handoff binary built alongside this bench (`target/release/handoff`
/// under `cargo bench`).
const HANDOFF_BIN: &str = env!("CARGO_BIN_EXE_handoff");

/// Everything running for a local run.
pub struct Lab {
    exe: PathBuf,
    /// handoff accepts `[session]`.
    session: bool,
    pub rt: tokio::runtime::Runtime,
    pub settings: Settings,
    /// Clock ticks per second (`/proc` CPU times).
    pub ticks: f64,
    pub upstream: Proc,
    pub upstream_addr: SocketAddr,
    pub redis: Option<(Proc, u16)>,
    pub pingora: Option<(Proc, SocketAddr)>,
    pub nginx: Option<(Proc, SocketAddr)>,
    pub handoff_redis: Option<Handoff>,
    pub handoff_mem: Option<Handoff>,
    /// A third handoff (same Redis, same public host) whose store connection goes
    /// through a relay that counts round trips; probes run there, so the measured
    /// instances never carry the relay's extra hop.
    pub probe: Option<(Handoff, procs::Relay)>,
    started: Instant,
    /// Configs and logs (removed after a successful run unless --keep).
    pub dir: PathBuf,
}

/// A running handoff.
pub struct Handoff {
    pub proc: Proc,
    pub addr: SocketAddr,
    admin: SocketAddr,
    public_host: String,
    /// Tokens minted at this instance, waiting to be redeemed.
    pub pool: Arc<Pool>,
}

impl Handoff {
    pub fn host(&self) -> String {
        self.public_host.clone()
    }
    pub fn audience(&self) -> String {
        form_urlencoded::byte_serialize(
            format!("urn:{}:session_transfer", self.public_host).as_bytes(),
        )
        .collect()
    }
    pub fn counters(&self) -> BTreeMap<String, f64> {
        procs::counters(
            &procs::http_get(self.admin, "/metrics").unwrap_or_default(),
            COUNTERS,
        )
    }
}

/// The three handoff instances of a local run.
struct Handoffs {
    redis: Option<Handoff>,
    mem: Option<Handoff>,
    probe: Option<(Handoff, procs::Relay)>,
}

/// Fresh servers for the RSS level: peak RSS depends on a process's history
/// (freed memory stays resident), so memory is measured on new processes.
pub struct Fresh {
    pub pingora: Option<(Proc, SocketAddr)>,
    pub nginx: Option<(Proc, SocketAddr)>,
    pub handoff: Option<Handoff>,
}

impl Lab {
    /// Starts every process of a local run.
    pub fn start(s: &Settings, exe: &Path, d: &Path, report: &mut Report) -> Result<Lab, String> {
        if !HANDOFF_BIN.contains("/release/") {
            eprintln!("warning: {HANDOFF_BIN} is not a release build; run through `cargo bench`");
        }
        let (upstream, upstream_addr) = start_upstream(exe, d)?;
        let redis = start_redis(d, report)?;
        let pingora = if s.wants("pingora") || s.wants("pass") {
            Some(start_pingora(
                exe,
                d,
                "pingora",
                upstream_addr,
                s.proxy_threads,
            )?)
        } else {
            None
        };
        let nginx = start_reference_nginx(s, d, upstream_addr, report)?;
        let session = prepare_handoff(s, d, upstream_addr, report)?;
        let handoffs = start_handoffs(s, d, upstream_addr, &redis, session)?;
        report.env = environment(s, session);
        report.header = header(s, &report.env);
        let lab = Lab {
            exe: exe.to_path_buf(),
            session,
            rt: tokio_rt(s.client_threads)?,
            ticks: procs::clock_ticks() as f64,
            settings: s.clone(),
            upstream,
            upstream_addr,
            redis,
            pingora,
            nginx,
            handoff_redis: handoffs.redis,
            handoff_mem: handoffs.mem,
            probe: handoffs.probe,
            started: Instant::now(),
            dir: d.to_path_buf(),
        };
        lab.announce();
        Ok(lab)
    }

    /// Says who is who, so a profiler can be attached (`perf record -p PID`).
    fn announce(&self) {
        let mut who = vec![format!(
            "upstream {} (pid {})",
            self.upstream_addr,
            self.upstream.pid()
        )];
        if let Some((p, port)) = &self.redis {
            who.push(format!("redis 127.0.0.1:{port} (pid {})", p.pid()));
        }
        for (p, a) in [&self.pingora, &self.nginx].into_iter().flatten() {
            who.push(format!("{} {a} (pid {})", p.name, p.pid()));
        }
        for h in self.handoffs() {
            who.push(format!("{} {} (pid {})", h.proc.name, h.addr, h.proc.pid()));
        }
        eprintln!(
            "started: {}; configs and logs in {}",
            who.join(", "),
            self.dir.display()
        );
    }

    /// Every handoff instance running: Redis store, embedded store, probe.
    pub fn handoffs(&self) -> impl Iterator<Item = &Handoff> {
        [
            self.handoff_redis.as_ref(),
            self.handoff_mem.as_ref(),
            self.probe.as_ref().map(|(h, _)| h),
        ]
        .into_iter()
        .flatten()
    }

    pub fn time_left(&self) -> bool {
        self.started.elapsed() < MAX_RUN
    }

    /// New proxies for the RSS point (those that run in this lab).
    pub fn fresh(&self) -> Result<Fresh, String> {
        let s = &self.settings;
        let pingora = match (&self.pingora, s.wants("pingora")) {
            (Some(_), true) => Some(start_pingora(
                &self.exe,
                &self.dir,
                "pingora-rss",
                self.upstream_addr,
                s.proxy_threads,
            )?),
            _ => None,
        };
        let nginx = match (&self.nginx, procs::nginx_binary()) {
            (Some(_), Some(bin)) => Some(start_nginx(
                bin,
                "nginx-rss",
                &self.dir,
                self.upstream_addr,
                s.proxy_threads,
            )?),
            _ => None,
        };
        let handoff = match (s.wants("pass"), &self.redis) {
            (true, redis) => Some(start_handoff(
                &self.dir,
                "handoff-rss",
                self.upstream_addr,
                redis.as_ref().map(|(_, p)| *p),
                self.session,
                s.proxy_threads,
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

/// The fake IdP, as a process of its own (`--role upstream`).
fn start_upstream(exe: &Path, d: &Path) -> Result<(Proc, SocketAddr), String> {
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(exe);
    cmd.args(["--role", "upstream", "--listen", &upstream_addr.to_string()]);
    let mut upstream = Proc::spawn("upstream", cmd, &d.join("upstream.log"), false, Stop::Term)?;
    procs::wait_listening(upstream_addr, "the fake IdP", &mut upstream)?;
    Ok((upstream, upstream_addr))
}

/// redis-server when it is installed (the Redis-store scenarios are skipped
/// with a note otherwise).
fn start_redis(d: &Path, report: &mut Report) -> Result<Option<(Proc, u16)>, String> {
    let have_redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if have_redis {
        let port = free_port();
        return Ok(Some((procs::start_redis(d, port)?, port)));
    }
    report
        .skipped
        .push("redis-server is not installed: Redis-store scenarios skipped (apt-get install -y redis-server)".into());
    Ok(None)
}

/// nginx: installed by the full run's set-up, never by the smoke run.
fn start_reference_nginx(
    s: &Settings,
    d: &Path,
    upstream: SocketAddr,
    report: &mut Report,
) -> Result<Option<(Proc, SocketAddr)>, String> {
    if s.no_nginx || !s.wants("nginx") {
        return Ok(None);
    }
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
            Ok(None)
        }
        Some(bin) => Ok(Some(start_nginx(
            bin,
            "nginx",
            d,
            upstream,
            s.proxy_threads,
        )?)),
    }
}

fn start_nginx(
    bin: &str,
    name: &str,
    d: &Path,
    upstream: SocketAddr,
    threads: usize,
) -> Result<(Proc, SocketAddr), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    Ok((
        procs::start_nginx(bin, name, d, addr, upstream, threads)?,
        addr,
    ))
}

/// A proxy process, its output in `<dir>/<name>.log`, stopped with SIGINT.
fn spawn_logged(dir: &Path, name: &str, cmd: Command) -> Result<Proc, String> {
    Proc::spawn(
        name,
        cmd,
        &dir.join(format!("{name}.log")),
        false,
        Stop::Int,
    )
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
    let mut p = spawn_logged(dir, name, cmd)?;
    procs::wait_listening(addr, "bare pingora", &mut p)?;
    Ok((p, addr))
}

/// handoff's assertion key and rules; whether this handoff accepts `[session]`
/// (the session scenario is skipped with a note when it does not).
fn prepare_handoff(
    s: &Settings,
    d: &Path,
    upstream: SocketAddr,
    report: &mut Report,
) -> Result<bool, String> {
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| "cannot generate an Ed25519 key")?;
    std::fs::write(d.join("assertion.der"), pkcs8.as_ref()).map_err(|e| e.to_string())?;
    std::fs::write(d.join("rules.toml"), RULES).map_err(|e| e.to_string())?;
    match session_support(d, upstream) {
        Ok(()) => Ok(true),
        Err(e) => {
            if s.wants("session") {
                report.skipped.push(format!(
                    "session cookie scenario: not available yet — this handoff rejects `[session] cookie_names` ({})",
                    e.lines().next().unwrap_or("")
                ));
            }
            Ok(false)
        }
    }
}

/// The Redis-store instance (and the probe instance behind it), the embedded
/// store instance: each when a wanted scenario needs it.
fn start_handoffs(
    s: &Settings,
    d: &Path,
    upstream: SocketAddr,
    redis: &Option<(Proc, u16)>,
    session: bool,
) -> Result<Handoffs, String> {
    let threads = s.proxy_threads;
    let need_redis_handoff = ["pass", "session", "mint", "redeem"]
        .iter()
        .any(|k| s.wants(k));
    let handoff_redis = match (redis, need_redis_handoff) {
        (Some((_, port)), true) => Some(start_handoff(
            d,
            "handoff-redis",
            upstream,
            Some(*port),
            session,
            threads,
            None,
        )?),
        _ => None,
    };
    let probe = match (redis, &handoff_redis) {
        (Some((_, port)), Some(main)) => {
            let relay = procs::Relay::start(*port)?;
            let h = start_handoff(
                d,
                "handoff-probe",
                upstream,
                Some(relay.port),
                session,
                1,
                Some(&main.public_host),
            )?;
            Some((h, relay))
        }
        _ => None,
    };
    let want_mem =
        s.wants("mint-mem") || s.wants("redeem-mem") || (redis.is_none() && s.wants("pass"));
    let mem = if want_mem {
        Some(start_handoff(
            d,
            "handoff-memory",
            upstream,
            None,
            session,
            threads,
            None,
        )?)
    } else {
        None
    };
    Ok(Handoffs {
        redis: handoff_redis,
        mem,
        probe,
    })
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
    let mut p = spawn_logged(dir, name, cmd)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    procs::wait_listening(addr, name, &mut p)?;
    procs::wait_listening(admin, name, &mut p)?;
    Ok(Handoff {
        proc: p,
        addr,
        admin,
        public_host,
        pool: Pool::shared(),
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
         # A load generator mints from one address and one login at thousands a\n\
         # second: the per-instance mint limits are off here (they are tested in\n\
         # tests/hardening.rs).\n\
         [mint.rate_limit]\nlineage = {{ per_minute = 0 }}\nclient = {{ per_minute = 0 }}\nnetwork = {{ per_minute = 0 }}\n\n\
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

/// What the report says about the machine and the run.
fn environment(s: &Settings, session: bool) -> BTreeMap<String, String> {
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let nginx = procs::nginx_binary()
        .map(|b| command_version("nginx", b, "-v"))
        .unwrap_or_else(|| "nginx not installed".into());
    let lp = match s.mode {
        Mode::Closed => "closed".into(),
        Mode::Open(r) => format!("open at {r} req/s"),
    };
    BTreeMap::from([
        ("cores".into(), cores.to_string()),
        ("kernel".into(), command_version("linux", "uname", "-r")),
        (
            "redis".into(),
            command_version("redis", "redis-server", "--version"),
        ),
        ("nginx".into(), nginx),
        ("handoff_binary".into(), HANDOFF_BIN.to_string()),
        ("mode".into(), s.mode_name().into()),
        ("loop".into(), lp),
        ("client_threads".into(), s.client_threads.to_string()),
        ("proxy_threads".into(), s.proxy_threads.to_string()),
        ("session_feature".into(), session.to_string()),
        ("unix_time".into(), unix_time.to_string()),
    ])
}

/// The report's first line.
fn header(s: &Settings, env: &BTreeMap<String, String>) -> String {
    format!(
        "handoff load bench ({}): {} loop, {:.1} s per point after {:.1} s warm-up, median of {} interleaved round(s) \
         for direct/pingora/nginx/pass-through/session; client {} thread(s); handoff/pingora {} threads, nginx {} workers; \
         {} cores; {}; {}",
        s.mode_name(),
        loop_header(s.mode),
        s.duration.as_secs_f64(),
        s.warmup.as_secs_f64(),
        s.rounds,
        s.client_threads,
        s.proxy_threads,
        s.proxy_threads,
        env["cores"],
        env["redis"],
        env["nginx"],
    )
}
