//! The load client: HTTP/1.1 keep-alive, one connection per concurrent user,
//! closed-loop (each connection sends its next request when the previous answer
//! is in) or open-loop (requests at a fixed rate; latency counts from the moment
//! a request was due, so a stalled server cannot hide its queue — no coordinated
//! omission).
//!
//! For loopback scenarios it speaks HTTP/1.1 itself over tokio's `TcpStream`:
//! pre-built request bytes out, status line / `Content-Length` / chunked back,
//! no per-request allocation on the hot path beyond what a scenario asks for.
//! On a 2-core machine shared by the client and every server, a lean client
//! leaves the cores to the servers being measured. `--target` (an external
//! deployment, maybe HTTPS) goes through hyper and rustls instead.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a scenario sends, and what counts as success.
pub trait Gen: Send + Sync + 'static {
    /// Writes request number `seq` into `out` (cleared); false when there is
    /// nothing left to send (a pool of tokens ran out).
    fn request(&self, seq: u64, out: &mut Vec<u8>) -> bool;
    /// Whether an answer is a success. `head` is the status line and headers.
    fn check(&self, status: u16, head: &[u8], body: &[u8]) -> bool;
}

/// Closed or open loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Each connection waits for its answer before sending again.
    Closed,
    /// Requests are due at a fixed total rate (per second).
    Open(f64),
}

/// Where the requests go.
#[derive(Clone)]
pub enum Engine {
    /// Our own HTTP/1.1 over plain TCP.
    Raw(SocketAddr),
    /// hyper + rustls (external targets), GET `uri` with `headers`.
    Hyper {
        client: Box<HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>>,
        uri: http::Uri,
        headers: Vec<(String, String)>,
    },
}

/// One measured point.
#[derive(Clone)]
pub struct Plan {
    pub engine: Engine,
    pub gen: Arc<dyn Gen>,
    pub conns: usize,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    /// Hard cap on requests sent (warm-up included).
    pub max_requests: u64,
}

/// What the client saw in the measured window.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Successful answers completed in the window.
    pub ok: u64,
    /// Failed answers (wrong status or content) and transport errors in the window.
    pub errors: u64,
    /// Latencies (ns) of every answer completed in the window, sorted.
    pub latencies: Vec<u64>,
    /// Length of the window (shorter than planned when the requests ran out).
    pub window: Duration,
    /// Requests sent in all (warm-up included).
    pub sent: u64,
    /// A sample of what went wrong, for the report.
    pub first_error: Option<String>,
}

impl Outcome {
    /// Successful answers per second.
    pub fn rps(&self) -> f64 {
        if self.window.is_zero() {
            0.0
        } else {
            self.ok as f64 / self.window.as_secs_f64()
        }
    }

    /// Nearest-rank percentile, in microseconds.
    pub fn pct_us(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let n = self.latencies.len();
        let idx = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        self.latencies[idx] as f64 / 1000.0
    }

    /// Mean latency, in microseconds.
    pub fn mean_us(&self) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.iter().sum::<u64>() as f64 / self.latencies.len() as f64 / 1000.0
    }
}

struct Shared {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    sent: AtomicU64,
    max: u64,
    running: AtomicUsize,
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct WorkerOut {
    ok: u64,
    errors: u64,
    latencies: Vec<u64>,
    last_done: Option<Instant>,
    first_error: Option<String>,
}

/// Hooks run at the edges of the measured window (CPU and store snapshots).
pub trait Window: Send {
    /// The window opens (warm-up is over).
    fn open(&mut self);
    /// The window closes.
    fn close(&mut self);
}

/// Runs `plan`: warm-up, then the measured window, calling `w` at its edges.
pub async fn run(plan: &Plan, w: &mut dyn Window) -> Outcome {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        measure_from: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
        sent: AtomicU64::new(0),
        max: plan.max_requests,
        running: AtomicUsize::new(plan.conns),
        done: tokio::sync::Notify::new(),
    });
    let mut set = tokio::task::JoinSet::new();
    for id in 0..plan.conns {
        let (p, s) = (plan.clone(), shared.clone());
        set.spawn(async move {
            let out = worker(id, &p, &s).await;
            if s.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                s.done.notify_one();
            }
            out
        });
    }
    let all_done = async {
        loop {
            let n = shared.done.notified();
            if shared.running.load(Ordering::SeqCst) == 0 {
                break;
            }
            n.await;
        }
    };
    tokio::pin!(all_done);
    let mut finished_early = tokio::select! {
        _ = tokio::time::sleep_until(shared.measure_from.into()) => false,
        _ = &mut all_done => true,
    };
    w.open();
    let opened = Instant::now().max(shared.measure_from);
    if !finished_early {
        finished_early = tokio::select! {
            _ = tokio::time::sleep_until(shared.end.into()) => false,
            _ = &mut all_done => true,
        };
    }
    w.close();
    let mut out = Outcome::default();
    let mut last = opened;
    while let Some(r) = set.join_next().await {
        let Ok(r) = r else { continue };
        out.ok += r.ok;
        out.errors += r.errors;
        out.latencies.extend(r.latencies);
        if let Some(t) = r.last_done {
            last = last.max(t);
        }
        if out.first_error.is_none() {
            out.first_error = r.first_error;
        }
    }
    let end = if finished_early { last } else { shared.end };
    out.window = end.saturating_duration_since(opened);
    out.latencies.sort_unstable();
    out.sent = shared.sent.load(Ordering::SeqCst);
    out
}

async fn worker(id: usize, plan: &Plan, s: &Shared) -> WorkerOut {
    let mut out = WorkerOut::default();
    let mut req = Vec::with_capacity(2048);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut conn: Option<TcpStream> = None;
    let mut seq = id as u64;
    // Open loop: this connection's share of the rate, staggered across connections.
    let interval = match plan.mode {
        Mode::Open(rate) => Some(Duration::from_secs_f64(plan.conns as f64 / rate.max(0.001))),
        Mode::Closed => None,
    };
    let mut due = interval.map(|i| s.start + i.mul_f64(id as f64 / plan.conns as f64));
    loop {
        if let Some(d) = due {
            if d >= s.end {
                break;
            }
            tokio::time::sleep_until(d.into()).await;
        }
        if Instant::now() >= s.end || s.sent.fetch_add(1, Ordering::Relaxed) >= s.max {
            break;
        }
        req.clear();
        if !plan.gen.request(seq, &mut req) {
            break;
        }
        seq += plan.conns as u64;
        let t0 = due.unwrap_or_else(Instant::now);
        if let (Some(d), Some(i)) = (due.as_mut(), interval) {
            *d += i;
        }
        let result = exchange(plan, &mut conn, &req, &mut buf).await;
        let t1 = Instant::now();
        let failed = result.is_err();
        if failed {
            conn = None;
        }
        out.record(result, t0, t1, s);
        if failed {
            // Do not spin on a server that refuses connections.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    out
}

/// Sends one request and reads its answer: whether it counts as a success, and
/// its status.
async fn exchange(
    plan: &Plan,
    conn: &mut Option<TcpStream>,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(bool, u16), String> {
    match &plan.engine {
        Engine::Raw(addr) => {
            match tokio::time::timeout(REQUEST_TIMEOUT, raw_exchange(conn, *addr, req, buf)).await {
                Ok(Ok(a)) => {
                    if a.close {
                        *conn = None;
                    }
                    let good = plan.gen.check(a.status, &buf[..a.head_end], a.body(buf));
                    Ok((good, a.status))
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err("timed out".to_string()),
            }
        }
        Engine::Hyper {
            client,
            uri,
            headers,
        } => tokio::time::timeout(REQUEST_TIMEOUT, hyper_exchange(client, uri, headers))
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
            .map(|(status, head, body)| (plan.gen.check(status, &head, &body), status)),
    }
}

impl WorkerOut {
    /// Counts an answer that completed at `t1` (inside the window, or only its
    /// error when outside).
    fn record(
        &mut self,
        result: Result<(bool, u16), String>,
        t0: Instant,
        t1: Instant,
        s: &Shared,
    ) {
        if t1 >= s.measure_from && t1 <= s.end {
            self.latencies.push((t1 - t0).as_nanos() as u64);
            self.last_done = Some(t1);
            match result {
                Ok((true, _)) => self.ok += 1,
                Ok((false, status)) => {
                    self.errors += 1;
                    if self.first_error.is_none() {
                        self.first_error = Some(format!("unexpected answer: HTTP {status}"));
                    }
                }
                Err(e) => {
                    self.errors += 1;
                    if self.first_error.is_none() {
                        self.first_error = Some(e);
                    }
                }
            }
        } else if let Err(e) = result {
            // A failure outside the window still says something is wrong.
            if self.first_error.is_none() {
                self.first_error = Some(e);
            }
        }
    }
}

/// Where the parts of an answer are in the read buffer.
struct Answer {
    status: u16,
    head_end: usize,
    /// The body (a de-chunked body is copied to the end of the buffer).
    body: std::ops::Range<usize>,
    /// The server will close the connection after this answer.
    close: bool,
}

impl Answer {
    fn body<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.body.clone()]
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if hay.len() < needle.len() || from > hay.len() - needle.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.reserve(8192);
    match s.read_buf(buf).await {
        Ok(0) => Err("connection closed by the server".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends `req` on the connection (opening one if needed) and reads one answer
/// into `buf`. A chunked body is de-chunked in place at the end of `buf`.
async fn raw_exchange(
    conn: &mut Option<TcpStream>,
    addr: SocketAddr,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> Result<Answer, String> {
    if conn.is_none() {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        *conn = Some(s);
    }
    let s = conn.as_mut().expect("just connected");
    s.write_all(req).await.map_err(|e| e.to_string())?;
    buf.clear();
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n", 0) {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head larger than 64 KiB".into());
        }
        fill(s, buf).await?;
    };
    let Head {
        status,
        length,
        chunked,
        close,
    } = parse_head(&buf[..head_end])?;
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    if no_body {
        return Ok(Answer {
            status,
            head_end,
            body: head_end..head_end,
            close,
        });
    }
    if chunked {
        let body = read_chunked(s, buf, head_end).await?;
        return Ok(Answer {
            status,
            head_end,
            body,
            close,
        });
    }
    match length {
        Some(n) => {
            while buf.len() < head_end + n {
                fill(s, buf).await?;
            }
            Ok(Answer {
                status,
                head_end,
                body: head_end..head_end + n,
                close,
            })
        }
        None => {
            // Body until the server closes.
            loop {
                buf.reserve(8192);
                match s.read_buf(buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            *conn = None;
            let end = buf.len();
            Ok(Answer {
                status,
                head_end,
                body: head_end..end,
                close: true,
            })
        }
    }
}

/// What the head of an answer says about its body and the connection.
struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
    close: bool,
}

/// Reads the status line and the headers that frame the body.
fn parse_head(head: &[u8]) -> Result<Head, String> {
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
        return Err("not an HTTP/1.x response".into());
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|v| v.parse::<u16>().ok())
        .ok_or("bad status line")?;
    let mut length = None;
    let mut chunked = false;
    let mut close = head.starts_with(b"HTTP/1.0");
    for line in head.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Head {
        status,
        length,
        chunked,
        close,
    })
}

/// Reads a chunked body that starts at `head_end`: walks the chunks, copies
/// their data to the end of the buffer once complete, and returns where it is.
async fn read_chunked(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_end: usize,
) -> Result<std::ops::Range<usize>, String> {
    let mut pos = head_end;
    let mut parts: Vec<std::ops::Range<usize>> = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = find(buf, b"\r\n", pos) {
                break p;
            }
            fill(s, buf).await?;
        };
        let size_text = std::str::from_utf8(&buf[pos..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers (if any) end with an empty line.
            loop {
                if let Some(p) = find(buf, b"\r\n", pos) {
                    if p == pos {
                        pos += 2;
                        break;
                    }
                    pos = p + 2;
                    continue;
                }
                fill(s, buf).await?;
            }
            break;
        }
        while buf.len() < pos + size + 2 {
            fill(s, buf).await?;
        }
        parts.push(pos..pos + size);
        pos += size + 2;
    }
    let total = pos;
    let start = buf.len();
    for r in parts {
        buf.extend_from_within(r);
    }
    let end = buf.len();
    debug_assert!(total <= start);
    Ok(start..end)
}

async fn hyper_exchange(
    client: &HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: &http::Uri,
    headers: &[(String, String)],
) -> Result<(u16, Vec<u8>, Bytes), String> {
    let mut b = http::Request::builder().method("GET").uri(uri.clone());
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let mut head = format!("HTTP/1.1 {status}\r\n").into_bytes();
    for (k, v) in resp.headers() {
        head.extend_from_slice(k.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, head, body))
}

/// A hyper client for external targets: HTTP/1.1, keep-alive, HTTPS with the
/// webpki roots (plus `ca_pem`, if given).
pub fn hyper_client(
    max_idle: usize,
    ca_pem: Option<&[u8]>,
) -> Result<HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(mut pem) = ca_pem {
        for c in rustls_pemfile::certs(&mut pem) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let conn = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(HyperClient::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(Duration::from_secs(60))
        .build(conn))
}

/// Case-insensitive search for an ASCII `needle` (given in lower case).
pub fn contains_ci(hay: &[u8], needle_lower: &[u8]) -> bool {
    hay.len() >= needle_lower.len()
        && hay.windows(needle_lower.len()).any(|w| {
            w.iter()
                .zip(needle_lower)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
        })
}
