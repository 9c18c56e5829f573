//! The processes a load run starts, and what `/proc` says about them.
//!
//! Every server under test runs as its own process, so its CPU time and peak
//! RSS are its own: `/proc/PID/stat` (utime + stime, in clock ticks) and
//! `/proc/PID/status` (`VmHWM`, reset per point through `/proc/PID/clear_refs`).
//! Children die with the harness (`PR_SET_PDEATHSIG`), and are stopped by their
//! own pid, never by name.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn sysconf(name: i32) -> i64;
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
}

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const SC_CLK_TCK: i32 = 2;
const PR_SET_PDEATHSIG: i32 = 1;

/// How a child wants to be stopped.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// SIGINT (pingora: fast shutdown).
    Int,
    /// SIGTERM (redis, nginx: fast shutdown).
    Term,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { sysconf(SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, what: &str, child: &mut Proc) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.exited() {
            return Err(format!(
                "{what} exited ({status}) before listening on {addr}; see {}",
                child.log_hint
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not listen on {addr} within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process of the harness.
pub struct Proc {
    /// Short name (`handoff-redis`, `nginx`, ...).
    pub name: String,
    child: Child,
    /// Count the process's children too (nginx's workers).
    group: bool,
    stop: Stop,
    /// Where its output went.
    pub log_hint: String,
}

/// CPU ticks and peak RSS of one process (or group) at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// utime + stime, in clock ticks.
    pub ticks: u64,
}

impl Proc {
    /// Starts `cmd` with its stdout and stderr going to `log`.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        log: &Path,
        group: bool,
        stop: Stop,
    ) -> Result<Proc, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe; this only asks the kernel to kill the
        // child when the harness dies, so nothing outlives an interrupted run.
        unsafe {
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL as u64, 0, 0, 0);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            group,
            stop,
            log_hint: log.display().to_string(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// The pids to account: the process, plus its children for a group.
    pub fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.pid()];
        if self.group {
            v.extend(children_of(self.pid()));
        }
        v
    }

    /// CPU time so far.
    pub fn sample(&self) -> Sample {
        Sample {
            ticks: self.pids().iter().map(|p| cpu_ticks(*p)).sum(),
        }
    }

    /// Resets the peak RSS (`VmHWM`) to the current RSS.
    pub fn reset_peak(&self) {
        for p in self.pids() {
            let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
        }
    }

    /// Peak RSS since the last reset, in KiB (summed over a group: shared pages
    /// count once per process, so a group's figure is an upper bound).
    pub fn peak_rss_kib(&self) -> u64 {
        self.pids().iter().map(|p| status_kib(*p, "VmHWM:")).sum()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let kids = if self.group {
            children_of(self.pid())
        } else {
            Vec::new()
        };
        let sig = match self.stop {
            Stop::Int => SIGINT,
            Stop::Term => SIGTERM,
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { kill(self.pid() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for k in kids {
            if Path::new(&format!("/proc/{k}")).exists() {
                // SAFETY: a worker our child started, by its pid.
                unsafe { kill(k as i32, SIGKILL) };
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of `pid`, in clock ticks (0 if it is gone).
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may contain spaces: fields start after the last ')'.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// A `kB` field of `/proc/PID/status`.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            if let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) {
                if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Busy, total, and interrupt (irq + softirq: loopback TCP is mostly softirq
/// work) clock ticks of the whole machine (`/proc/stat`, all CPUs).
pub fn machine_ticks() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(l) = s.lines().next() else {
        return (0, 0, 0);
    };
    let v: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let irq = v.get(5).copied().unwrap_or(0) + v.get(6).copied().unwrap_or(0);
    (total.saturating_sub(idle), total, irq)
}

/// Our own CPU time (the load client), in clock ticks.
pub fn self_ticks() -> u64 {
    cpu_ticks(std::process::id())
}

// ---- redis ----------------------------------------------------------------------

/// Starts `redis-server` on `port` (no persistence) in `dir`.
pub fn start_redis(dir: &Path, port: u16) -> Result<Proc, String> {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ])
    .current_dir(dir);
    let mut p = Proc::spawn("redis", cmd, &dir.join("redis.log"), false, Stop::Term)?;
    wait_listening(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "redis-server",
        &mut p,
    )?;
    Ok(p)
}

/// A plain connection to redis for looking at it (not the one handoff uses).
pub struct RedisProbe {
    conn: redis::Connection,
    port: u16,
}

impl RedisProbe {
    /// Connects to redis on `port`.
    pub fn connect(port: u16) -> Result<RedisProbe, String> {
        let c =
            redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
        let conn = c
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|e| format!("redis: {e}"))?;
        Ok(RedisProbe { conn, port })
    }

    fn info(&mut self, section: &str) -> String {
        redis::cmd("INFO")
            .arg(section)
            .query::<String>(&mut self.conn)
            .unwrap_or_default()
    }

    fn info_field(&mut self, section: &str, field: &str) -> u64 {
        let text = self.info(section);
        text.lines()
            .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// `total_commands_processed` (includes commands run inside Lua scripts).
    pub fn commands_processed(&mut self) -> u64 {
        self.info_field("stats", "total_commands_processed")
    }

    /// `used_memory` in bytes.
    pub fn used_memory(&mut self) -> u64 {
        self.info_field("memory", "used_memory")
    }

    /// `MEMORY USAGE key SAMPLES 0` averaged over up to `max` keys matching
    /// `pattern`: (keys measured, mean bytes, min, max).
    pub fn memory_usage(&mut self, pattern: &str, max: usize) -> (usize, f64, u64, u64) {
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let r: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut self.conn);
            let Ok((next, batch)) = r else { break };
            keys.extend(batch);
            cursor = next;
            if cursor == 0 || keys.len() >= max {
                break;
            }
        }
        keys.truncate(max);
        let mut sizes = Vec::with_capacity(keys.len());
        for k in &keys {
            if let Ok(Some(n)) = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(k)
                .arg("SAMPLES")
                .arg(0)
                .query::<Option<u64>>(&mut self.conn)
            {
                sizes.push(n);
            }
        }
        if sizes.is_empty() {
            return (0, 0.0, 0, 0);
        }
        let sum: u64 = sizes.iter().sum();
        (
            sizes.len(),
            sum as f64 / sizes.len() as f64,
            *sizes.iter().min().unwrap_or(&0),
            *sizes.iter().max().unwrap_or(&0),
        )
    }

    /// Starts `MONITOR` on a connection of its own: every command redis runs is
    /// recorded until [`Monitor::finish`]. Commands run inside a Lua script show
    /// as `[0 lua]` and are told apart from the client's own round trips.
    pub fn monitor(&self) -> Result<Monitor, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.write_all(b"MONITOR\r\n").map_err(|e| e.to_string())?;
        let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        let mut first = String::new();
        r.read_line(&mut first).map_err(|e| e.to_string())?;
        if !first.starts_with("+OK") {
            return Err(format!("MONITOR refused: {}", first.trim()));
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        s.set_read_timeout(Some(Duration::from_millis(100))).ok();
        let (l2, st2) = (lines.clone(), stop.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = String::new();
            loop {
                buf.clear();
                match r.read_line(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => l2.lock().unwrap().push(buf.trim_end().to_string()),
                    Err(_) if st2.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
        });
        Ok(Monitor {
            stream: s,
            lines,
            stop,
            reader: Some(reader),
        })
    }
}

/// A running `MONITOR`.
pub struct Monitor {
    stream: TcpStream,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// What a `MONITOR` saw: top-level commands by name (round trips from clients;
/// a pipeline shows as several), and commands run inside scripts.
#[derive(Debug, Default, Clone)]
pub struct MonitorCounts {
    /// Client commands, by lower-case name.
    pub top_level: std::collections::BTreeMap<String, u64>,
    /// Commands run by Lua scripts.
    pub in_scripts: u64,
}

impl MonitorCounts {
    /// Sum of client commands.
    pub fn top_level_total(&self) -> u64 {
        self.top_level.values().sum()
    }
}

impl Monitor {
    /// Stops monitoring and counts.
    pub fn finish(mut self) -> MonitorCounts {
        // Let the last replies arrive.
        std::thread::sleep(Duration::from_millis(150));
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let mut c = MonitorCounts::default();
        for l in self.lines.lock().unwrap().iter() {
            // +1700000000.123456 [0 127.0.0.1:5555] "evalsha" "..." ...
            let Some((src, rest)) = l.split_once(']') else {
                continue;
            };
            let name = rest
                .trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if src.ends_with("lua") {
                c.in_scripts += 1;
            } else {
                *c.top_level.entry(name).or_default() += 1;
            }
        }
        c
    }
}

// ---- nginx ----------------------------------------------------------------------

/// The nginx binary, if installed.
pub fn nginx_binary() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Installs Debian's `nginx-light` (the full run's set-up; never in smoke mode).
pub fn install_nginx() -> Result<(), String> {
    eprintln!(
        "==> nginx is missing: installing Debian's nginx-light (apt-get install -y nginx-light)"
    );
    let run = |args: &[&str]| -> Result<(), String> {
        let st = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("apt-get: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("apt-get {} failed ({st})", args.join(" ")))
        }
    };
    if run(&["install", "-y", "-qq", "nginx-light"]).is_err() {
        run(&["update", "-qq"])?;
        run(&["install", "-y", "-qq", "nginx-light"])?;
    }
    Ok(())
}

/// Starts nginx as a keep-alive reverse proxy from `listen` to `upstream`, with
/// `workers` worker processes.
pub fn start_nginx(
    bin: &str,
    name: &str,
    dir: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
    workers: usize,
) -> Result<Proc, String> {
    let d = dir.join(name);
    std::fs::create_dir_all(d.join("tmp")).map_err(|e| e.to_string())?;
    let dd = d.display();
    let conf = format!(
        r#"# written by handoff's load bench
worker_processes {workers};
daemon off;
pid {dd}/nginx.pid;
error_log {dd}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dd}/tmp/body;
    proxy_temp_path {dd}/tmp/proxy;
    fastcgi_temp_path {dd}/tmp/fastcgi;
    uwsgi_temp_path {dd}/tmp/uwsgi;
    scgi_temp_path {dd}/tmp/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    upstream idp {{
        server {upstream};
        keepalive 128;
        keepalive_requests 100000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://idp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"#
    );
    let path = d.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(&d)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(d.join("error.log"));
    let mut p = Proc::spawn(name, cmd, &d.join("stderr.log"), true, Stop::Term)?;
    wait_listening(listen, "nginx", &mut p)?;
    Ok(p)
}

// ---- handoff's admin listener ---------------------------------------------------

/// GET `path` from `addr` with a one-shot HTTP/1.1 request; returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "GET {path}: {}",
            head.lines().next().unwrap_or("no answer")
        ));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Every sample of the Prometheus metrics named in `names`, keyed by the sample's
/// name and labels (`handoff_mints_total{outcome="minted"}`).
pub fn counters(text: &str, names: &[&str]) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            names.iter().any(|n| {
                l.starts_with(n) && matches!(l.as_bytes().get(n.len()), Some(b'{') | Some(b' '))
            })
        })
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse::<f64>().ok()?))
        })
        .collect()
}

// ---- counting store round trips ----------------------------------------------------

/// A TCP relay in front of redis that counts round trips: with requests sent one
/// after another, every burst of bytes from a client that follows an answer (or
/// opens the connection) is one round trip, however many commands it pipelines.
pub struct Relay {
    /// The port clients connect to.
    pub port: u16,
    bursts: Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    /// Relays 127.0.0.1:<new port> to 127.0.0.1:`to`.
    pub fn start(to: u16) -> Result<Relay, String> {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
        let bursts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let b = bursts.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let Ok(s) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let _ = c.set_nodelay(true);
                let _ = s.set_nodelay(true);
                // 0: nothing yet, 1: client spoke last, 2: server spoke last.
                let last = Arc::new(std::sync::atomic::AtomicU8::new(0));
                let pipe = |mut from: TcpStream,
                            mut to: TcpStream,
                            mine: u8,
                            count: Option<Arc<std::sync::atomic::AtomicU64>>,
                            last: Arc<std::sync::atomic::AtomicU8>| {
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if last.swap(mine, Ordering::SeqCst) != mine {
                                if let Some(c) = &count {
                                    c.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                let (Ok(c2), Ok(s2)) = (c.try_clone(), s.try_clone()) else {
                    continue;
                };
                pipe(c, s, 1, Some(b.clone()), last.clone());
                pipe(s2, c2, 2, None, last);
            }
        });
        Ok(Relay { port, bursts })
    }

    /// Round trips so far.
    pub fn round_trips(&self) -> u64 {
        self.bursts.load(Ordering::SeqCst)
    }
}
