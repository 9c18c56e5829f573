//! handoff itself, in-process, on real sockets: the same `handoff::server::build`
//! that `main` uses, run on a thread with a shutdown signal the test controls, and
//! a [`ManualClock`] so tests can move time without sleeping.

use super::idp::TestIdp;
use super::redis::free_port;
use handoff::app::Handoff;
use handoff::clock::ManualClock;
use handoff::config::Config;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The rules most tests run with: `native-app` may mint for `web-app`, which
/// accepts both delivery methods and binds to the IP.
pub const DEFAULT_RULES: &str = r#"
[native."native-app"]
can_create_session_transfer_token = true
allowed_web_clients = ["web-app", "web-strict"]

[native."other-native"]
can_create_session_transfer_token = false

[web."web-app"]
allowed_authentication_methods = ["cookie", "query"]
enforce_device_binding = "ip"

[web."web-strict"]
allowed_authentication_methods = ["cookie"]
revoke_lineage_on_replay = true
"#;

/// How to run handoff.
#[derive(Clone)]
pub struct Options {
    /// `None`: the embedded store; `Some(url)`: Redis.
    pub redis_url: Option<String>,
    /// The rules file's text.
    pub rules: String,
    /// Extra TOML appended to the `[server]` table.
    pub server_extra: String,
    /// Serve HTTPS (with a certificate generated for 127.0.0.1) instead of HTTP.
    pub tls: bool,
    /// The assertion signing key (PKCS#8 PEM); a new one when None. Instances that
    /// serve one IdP share it.
    pub signing_key_pem: Option<String>,
    /// Extra TOML tables appended to the config (e.g. `[session]`, `[paths]`).
    pub extra: String,
    /// A file holding the admin API's bearer token.
    pub admin_token_file: Option<String>,
    /// Extra keys of the `[rules]` table (e.g. `watch_interval`, `asn_table`).
    pub rules_table: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            redis_url: None,
            rules: DEFAULT_RULES.into(),
            server_extra: String::new(),
            tls: false,
            signing_key_pem: None,
            extra: String::new(),
            admin_token_file: None,
            rules_table: "watch_interval = \"0s\"\n".into(),
        }
    }
}

struct Signal(tokio::sync::Mutex<tokio::sync::oneshot::Receiver<()>>);

#[async_trait::async_trait]
impl ShutdownSignalWatch for Signal {
    async fn recv(&self) -> ShutdownSignal {
        let _ = (&mut *self.0.lock().await).await;
        ShutdownSignal::FastShutdown
    }
}

/// A running handoff.
pub struct Running {
    /// Public listener.
    pub addr: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// The instance's state (metrics, store, ...).
    pub h: Arc<Handoff>,
    /// Its clock.
    pub clock: Arc<ManualClock>,
    /// The assertion signing key in use (PKCS#8 PEM).
    pub signing_key_pem: String,
    /// PEM of the test CA when `tls` is on.
    pub ca_pem: Option<String>,
    /// The config file's folder.
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts handoff in front of `idp`.
    pub fn start(idp: &TestIdp, opts: Options) -> Running {
        super::logs::init();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let admin_port = free_port();
        std::fs::write(dir.path().join("rules.toml"), &opts.rules).unwrap();
        let signing_key_pem = opts
            .signing_key_pem
            .clone()
            .unwrap_or_else(handoff::jws::generate_ed25519_pem);
        std::fs::write(dir.path().join("assertion.pem"), &signing_key_pem).unwrap();
        let store = match &opts.redis_url {
            None => String::new(),
            Some(u) => format!("[store]\nkind = \"redis\"\nurl = \"{u}\"\ntimeout = \"200ms\"\n"),
        };
        let (listen, ca_pem) = if opts.tls {
            let cert = rcgen::generate_simple_self_signed(vec![
                "127.0.0.1".to_string(),
                "localhost".to_string(),
            ])
            .unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
            (
                format!("listen = []\n[[server.tls]]\nlisten = \"127.0.0.1:{port}\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"),
                Some(cert.cert.pem()),
            )
        } else {
            (format!("listen = [\"127.0.0.1:{port}\"]\n"), None)
        };
        let config = format!(
            "[server]\npublic_host = \"127.0.0.1:{port}\"\nthreads = 2\n{extra}\n{listen}\n\
             [upstream]\naddress = \"{idp}\"\ntimeout = \"2s\"\n\n\
             [assertion]\nissuer = \"handoff\"\naudience = \"test-idp\"\nkey_file = \"assertion.pem\"\n\n\
             [rules]\nfile = \"rules.toml\"\n{rules_table}\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n{admin_token}\n{store}\n{more}",
            admin_token = opts.admin_token_file.as_ref().map(|f| format!("token_file = {f:?}\n")).unwrap_or_default(),
            more = opts.extra,
            rules_table = opts.rules_table,
            extra = opts.server_extra,
            idp = idp.addr(),
        );
        std::fs::write(dir.path().join("handoff.toml"), &config).unwrap();
        let config = Config::load(&dir.path().join("handoff.toml"))
            .unwrap_or_else(|e| panic!("test config: {e}\n{config}"));
        let clock = ManualClock::new();
        let h = Handoff::build(config, clock.clone()).unwrap();
        let server = handoff::server::build(h.clone(), None).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(Signal(tokio::sync::Mutex::new(rx))),
            });
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err()
            || std::net::TcpStream::connect(admin).is_err()
        {
            assert!(Instant::now() < deadline, "handoff did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = Running {
            addr,
            admin,
            h,
            clock,
            signing_key_pem,
            ca_pem,
            dir,
            stop: Some(tx),
            thread: Some(thread),
        };
        // The IdP fetches handoff's public keys from the admin listener (plain HTTP).
        idp.set_handoff_jwks_url(&r.admin_url("/.well-known/handoff/jwks.json"));
        r
    }

    /// `http(s)://127.0.0.1:PORT{path}` on the public listener.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:PORT{path}` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The lineage a bound `_session` cookie belongs to.
    pub async fn lineage_of(&self, session: &str) -> handoff::secret::LineageId {
        let hash = handoff::secret::SecretHash::of(session.as_bytes());
        self.h
            .store
            .session_by_cookie(&hash)
            .await
            .unwrap()
            .expect("a bound session")
            .lineage
    }

    /// The mint audience.
    pub fn audience(&self) -> String {
        self.h.mint_audience.clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
