//! What the scenarios send: the request generators (`client::Gen`) of the local
//! run, each with the answer it counts as a success, and the pool of minted
//! tokens the redeem scenarios spend.

use crate::client::{contains_ci, Gen};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Browser-like headers every GET scenario carries (the same for every proxy, so
/// the comparison is fair): ~500 bytes, with a few analytics cookies that handoff
/// must parse and pass through untouched.
pub fn browser_get(host: &str, path: &str, cookies: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
         Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
         Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n\
         Cookie: _ga=GA1.1.1234567890.1700000000; _ga_BENCH=GS1.1.1700000000.1.1.1700000100.0.0.0; theme=dark{cookies}\r\n\r\n"
    )
}

/// The same bytes every time; success is `status` (and `needle` in the head).
pub struct StaticReq {
    pub req: Vec<u8>,
    pub status: u16,
    pub needle: Option<&'static [u8]>,
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
pub struct Pool(Mutex<VecDeque<(Instant, String)>>);

impl Pool {
    /// An empty pool to share between generators.
    pub fn shared() -> Arc<Pool> {
        Arc::new(Pool::default())
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn push(&self, t: String) {
        self.0.lock().unwrap().push_back((Instant::now(), t));
    }
    /// The oldest token still well inside its 300 s lifetime.
    pub fn pop(&self) -> Option<String> {
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
pub struct TokenGrant {
    pub host: String,
    pub audience: Option<String>,
    pub pool: Option<Arc<Pool>>,
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
pub struct Redeem {
    pub host: String,
    pub pool: Arc<Pool>,
    /// Collect the IdP's `_session` cookie values (to prepare the session scenario).
    pub sessions: Option<Arc<Mutex<Vec<String>>>>,
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
pub struct SessionReq {
    pub host: String,
    pub cookies: Vec<String>,
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
