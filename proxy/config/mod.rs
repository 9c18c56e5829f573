//! The server configuration: one TOML file, validated at start into [`Config`].
//!
//! Layers (the river model): CLI flags name the file; the file is parsed into the
//! raw `File*` structs (serde, unknown keys rejected); [`Config::from_toml`] checks
//! every value and produces the one internal model that the rest of handoff uses.
//! Nothing downstream parses strings. Every error names the file, the key and the
//! reason (`handoff.toml: upstream.address: "idp:99999" is not host:port ...`).
//!
//! Policy (which clients may mint, lifetimes, binding) is *not* here: it lives in
//! the rules file, which SREs reload live (see `handoff-rules`).

mod file;

use crate::secret::Secret;
use file::{FileConfig, FileRate, FileRateLimit};
use ipnet::IpNet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error: which file, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: String,
    /// The dotted key (or `line:col` position for syntax errors).
    pub key: String,
    /// What is wrong, and what was expected.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// One public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `ip:port` to bind.
    pub addr: String,
    /// Certificate chain and key (PEM) when this listener speaks HTTPS.
    pub tls: Option<TlsFiles>,
}

/// PEM files for a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// What `Host` header the IdP receives on proxied requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHeader {
    /// The browser's own `Host` (default: the IdP builds its URLs for the public host).
    Preserve,
    /// A fixed value.
    Fixed(String),
}

/// The upstream identity provider.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` of the IdP.
    pub address: String,
    /// Whether handoff speaks TLS to the IdP.
    pub tls: bool,
    /// SNI and certificate name for TLS to the IdP.
    pub sni: String,
    /// Extra CA bundle (PEM) to trust for the IdP's certificate.
    pub ca_file: Option<PathBuf>,
    /// The `Host` header proxied requests carry.
    pub host_header: HostHeader,
    /// Whether to set `X-Forwarded-For`, `-Proto` and `-Host` for the IdP.
    pub forwarded_headers: bool,
    /// Timeout for handoff's own calls to the IdP (mint, discovery, JWKS).
    pub timeout: Duration,
    /// Path of the IdP's OpenID discovery document.
    pub discovery_path: String,
    /// Expected `iss` of the IdP's id_tokens; by default the discovered issuer.
    pub issuer: Option<String>,
    /// How long the IdP's JWKS is cached.
    pub jwks_cache_ttl: Duration,
}

impl Upstream {
    /// Base URL for handoff's own calls to the IdP (`http://host:port`).
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.address
        )
    }
}

/// Which store holds handoff's state.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded in-memory store: one instance only.
    Memory {
        /// `store.max_entries`: the hard cap on its entries (default
        /// [`crate::store::memory::DEFAULT_MAX_ENTRIES`]); when full, writes fail
        /// closed and nothing live is evicted.
        max_entries: usize,
    },
    /// Redis through Redis Sentinel (high availability): the master is looked up
    /// from the Sentinel nodes, again after a failover.
    RedisSentinel {
        /// `redis://host:port` URLs of Sentinel nodes.
        sentinels: Vec<Secret>,
        /// The monitored master's service name.
        master: String,
        /// Per-operation timeout.
        timeout: Duration,
        /// Prefix of every key handoff writes.
        key_prefix: String,
    },
    /// Redis (required with more than one instance).
    Redis {
        /// `redis://[user:pass@]host:port[/db]` or `rediss://...`.
        url: Secret,
        /// Per-operation timeout.
        timeout: Duration,
        /// Prefix of every key handoff writes.
        key_prefix: String,
    },
}

/// How assertions are signed.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// Ed25519 from a PKCS#8 file (`handoff keygen` writes one).
    Ed25519File(PathBuf),
    /// A fresh Ed25519 key for this process only (development: the IdP must
    /// re-fetch the JWKS after every restart). Logged as a warning.
    Ephemeral,
    /// HS256 with a shared secret read from a file.
    Hs256File(PathBuf),
}

/// The identity assertion handoff sends to the IdP (SPEC §2.3).
#[derive(Debug, Clone)]
pub struct AssertionConfig {
    /// Header name (default `X-Handoff-Assertion`).
    pub header: String,
    /// `iss` claim.
    pub issuer: String,
    /// `aud` claim: the IdP.
    pub audience: String,
    /// Lifetime (≤ 60 s).
    pub ttl: Duration,
    /// Signing key.
    pub key: SigningKey,
}

/// Cookie and parameter names of the wire contract (SPEC §2.2).
#[derive(Debug, Clone)]
pub struct Names {
    /// Cookie the native app sets (default `auth0_session_transfer_token`).
    pub cookie: String,
    /// Other accepted cookie names (default `session_transfer_token`).
    pub cookie_aliases: Vec<String>,
    /// Query parameter (default `session_transfer_token`).
    pub query_param: String,
    /// The `__Host-` cookie that carries a query-delivered token across the 303.
    pub redirect_cookie: String,
}

/// Paths handoff acts on.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The IdP's token endpoint (mint requests arrive here).
    pub token: String,
    /// The IdP's revocation endpoint.
    pub revocation: String,
    /// Redemption entry points (default `/authorize`).
    pub redemption: Vec<String>,
    /// Where handoff's public JWKS is served.
    pub jwks: String,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `ip:port`, loopback by default; `None` disables it.
    pub listen: Option<String>,
    /// Bearer token that protects state-changing calls.
    pub token: Option<Secret>,
}

/// `SameSite` for the IdP's session cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Lax` (default).
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (always with `Secure`).
    None,
}

/// Web sessions (SPEC §2.3 login transaction, §2.4 session cookies).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Names of the IdP's session cookies (e.g. `_session` for oidc-provider,
    /// `KEYCLOAK_SESSION`/`KEYCLOAK_IDENTITY` for Keycloak).
    pub cookie_names: Vec<String>,
    /// `SameSite` given to those cookies.
    pub same_site: SameSite,
    /// The widest `Domain` those cookies may carry; `None` makes them host-only.
    pub domain: Option<String>,
    /// Add `Secure` to every other cookie the IdP sets too.
    pub secure_all_cookies: bool,
    /// The `__Host-` cookie that tracks a login transaction.
    pub transaction_cookie: String,
    /// How long a login transaction may last (≤ 120 s).
    pub transaction_ttl: Duration,
    /// How many upstream requests one login transaction may carry an assertion on.
    pub transaction_max_hops: u32,
    /// How long a session's state may be served from the local cache: the bound
    /// on how late a revocation made elsewhere is seen here (SPEC §6: ≤ 1 s).
    pub cache_ttl: Duration,
    /// How long a session's record outlives its absolute limit, so that a kept copy
    /// of its cookie still counts as dead: at least the IdP's own session lifetime.
    pub retention: Duration,
    /// While the store is unreachable, a cached session state is trusted this long
    /// after it was last read; then the session counts as expired (SPEC §5).
    pub outage_grace: Duration,
    /// How many occurrences of one session cookie name a request may carry (every
    /// reading of each is checked against the store); past it the name is stripped
    /// without a look-up, so one request cannot cost thousands of store reads.
    pub max_cookie_occurrences: usize,
    /// The largest `Cookie` header (all of them together) handoff accepts; a larger
    /// one is answered `431`.
    pub max_cookie_bytes: usize,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public listeners.
    pub listeners: Vec<Listener>,
    /// Worker threads of the public service.
    pub threads: usize,
    /// The public host of the IdP as browsers see it; the mint audience is
    /// `urn:{public_host}:session_transfer`.
    pub public_host: String,
    /// Peers whose forwarding header is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The forwarding header those proxies write (only it is read).
    pub forwarded_header: crate::client_ip::ForwardedHeader,
    /// Largest request body handoff reads itself (token endpoint), ≤ 64 KiB.
    pub max_body_bytes: usize,
    /// The IdP.
    pub upstream: Upstream,
    /// The store.
    pub store: StoreConfig,
    /// The assertion.
    pub assertion: AssertionConfig,
    /// Names.
    pub names: Names,
    /// Paths.
    pub paths: Paths,
    /// The rules file; `None` means built-in defaults (no client may mint).
    pub rules_file: Option<PathBuf>,
    /// An ip2asn TSV table for the `asn` binding mode and ASN matchers; reloaded
    /// with the rules.
    pub asn_table: Option<PathBuf>,
    /// How often the rules file (and ASN table) are checked for changes; zero
    /// turns the file watch off (SIGHUP and the admin API still reload).
    pub rules_watch: Duration,
    /// Admin listener.
    pub admin: AdminConfig,
    /// Web sessions: the IdP's session cookies, login transactions, caching.
    pub session: SessionConfig,
    /// Client secrets of web clients, by client id: used to revoke, at the IdP
    /// (RFC 7009), refresh tokens handoff withholds from them.
    pub client_secrets: std::collections::HashMap<String, Secret>,
    /// OpenID Connect Back-Channel Logout.
    pub backchannel_logout: BackchannelLogout,
    /// Rate limits on minting (`[mint.rate_limit]`).
    pub mint_rate_limit: MintRateLimit,
}

/// OpenID Connect Back-Channel Logout: the IdP tells handoff a session ended.
#[derive(Debug, Clone)]
pub struct BackchannelLogout {
    /// Path on the public listener (also served on the admin listener).
    pub path: String,
    /// Accepted `aud` values of logout tokens (the client ids the IdP addresses
    /// them to). Empty: the endpoint is off.
    pub audiences: Vec<String>,
}

/// A rate limit: `burst` requests at once, then `per_minute` sustained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained requests per minute (1 ..= 1 000 000).
    pub per_minute: u32,
    /// Requests allowed at once after a pause (1 ..= 100 000).
    pub burst: u32,
}

/// Rate limits on minting (`[mint.rate_limit]`, issue 9 / attack 7), enforced by
/// [`crate::ratelimit::MintLimiter`]. **Per instance**: with N instances a key may
/// get up to N times these rates. `None`: that scope is off (`per_minute = 0`).
///
/// The defaults are far above what a real app does, and far below what fills a
/// store:
/// - **lineage** 10/min, burst 10: a user opens a web view by hand; even an app
///   that mints ahead for several web views at once stays under 10 a minute, while
///   a loop chaining mints from one login is stopped at 10 (each mint writes up to
///   two refresh-token mappings and an STT record, and rotates the IdP's token).
/// - **client** 6000/min, burst 1000 per instance: a ceiling on one native client id
///   as a whole (100 mints a second on one instance), a circuit breaker for a
///   botnet rather than a limit a user can meet.
/// - **network** 300/min, burst 100, per IPv4 /24 and IPv6 /64: a /24 may be a
///   carrier-grade NAT with thousands of phones, each minting a few times a day;
///   a /64 is one customer's link. Behind a load balancer, the client IP is the one
///   the trusted-proxy rule yields — with `server.trusted_proxies` unset, every
///   request comes from the balancer's network and this limit must be raised or
///   turned off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRateLimit {
    /// Per refresh-token lineage (checked before the IdP is asked to rotate).
    pub lineage: Option<Rate>,
    /// Per native client id.
    pub client: Option<Rate>,
    /// Per source network.
    pub network: Option<Rate>,
    /// Prefix length an IPv4 address is masked to for the network limit (8 ..= 32).
    pub ipv4_prefix: u8,
    /// Prefix length an IPv6 address is masked to for the network limit (32 ..= 128).
    pub ipv6_prefix: u8,
    /// Most keys each scope tracks at once (1000 ..= 10 000 000); bounds memory at
    /// about 32 bytes a key.
    pub max_tracked: usize,
}

impl MintRateLimit {
    /// Default per-lineage limit.
    pub const LINEAGE: Rate = Rate {
        per_minute: 10,
        burst: 10,
    };
    /// Default per-client limit.
    pub const CLIENT: Rate = Rate {
        per_minute: 6000,
        burst: 1000,
    };
    /// Default per-network limit.
    pub const NETWORK: Rate = Rate {
        per_minute: 300,
        burst: 100,
    };
}

impl Default for MintRateLimit {
    fn default() -> Self {
        MintRateLimit {
            lineage: Some(Self::LINEAGE),
            client: Some(Self::CLIENT),
            network: Some(Self::NETWORK),
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            max_tracked: 100_000,
        }
    }
}

impl Config {
    /// The `audience` value that marks a token request as a mint.
    pub fn mint_audience(&self) -> String {
        format!("urn:{}:session_transfer", self.public_host)
    }

    /// Reads and validates a config file. Relative paths inside it are relative to
    /// the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: name.clone(),
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, &name, base)
    }

    /// Parses and validates config text. `file` names it in errors; `base` is the
    /// folder relative paths are resolved against.
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: FileConfig = toml::from_str(text).map_err(|e| {
            let key = match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!("{line}:{col}")
                }
                None => "(syntax)".into(),
            };
            ConfigError {
                file: file.into(),
                key,
                reason: e.message().to_string(),
            }
        })?;
        Validator { file, base }.validate(raw)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// ---- validation ----------------------------------------------------------------

struct Validator<'a> {
    file: &'a str,
    base: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(
        &self,
        key: &str,
        v: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => parse_duration(s).ok_or_else(|| {
                self.err(
                    key,
                    format!(
                        "{s:?} is not a duration (expected e.g. \"50ms\", \"30s\", \"5m\", \"1h\")"
                    ),
                )
            }),
        }
    }

    /// `store.timeout` and `store.key_prefix`, shared by both Redis kinds.
    fn redis_common(
        &self,
        timeout: Option<&str>,
        key_prefix: Option<String>,
    ) -> Result<(Duration, String), ConfigError> {
        let timeout = self.duration("store.timeout", timeout, Duration::from_millis(50))?;
        if timeout.is_zero() {
            return Err(self.err("store.timeout", "must be more than 0"));
        }
        let key_prefix = key_prefix.unwrap_or_else(|| "ho".into());
        if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) {
            return Err(self.err(
                "store.key_prefix",
                "must be non-empty, without braces or spaces",
            ));
        }
        Ok((timeout, key_prefix))
    }

    fn socket_addr(&self, key: &str, s: &str) -> Result<String, ConfigError> {
        s.parse::<std::net::SocketAddr>()
            .map(|a| a.to_string())
            .map_err(|_| {
                self.err(
                    key,
                    format!("{s:?} is not ip:port (e.g. \"0.0.0.0:8080\", \"[::]:8443\")"),
                )
            })
    }

    fn url_path(&self, key: &str, s: &str) -> Result<String, ConfigError> {
        if s.starts_with('/') && !s.contains(['?', '#', ' ']) {
            Ok(s.to_string())
        } else {
            Err(self.err(
                key,
                format!("{s:?} is not an absolute URL path (starting with '/', no query)"),
            ))
        }
    }

    fn cookie_name(&self, key: &str, s: &str) -> Result<String, ConfigError> {
        if is_token(s) {
            Ok(s.to_string())
        } else {
            Err(self.err(key, format!("{s:?} is not a valid cookie or header name")))
        }
    }

    /// One scope of `[mint.rate_limit]`: omitted fields take `default`'s values.
    fn rate(&self, key: &str, r: FileRate, default: Rate) -> Result<Option<Rate>, ConfigError> {
        let per_minute = r.per_minute.unwrap_or(default.per_minute);
        if per_minute == 0 {
            if r.burst.is_some_and(|b| b != 0) {
                return Err(self.err(
                    &format!("{key}.burst"),
                    "given with per_minute = 0 (the limit is off); remove one of them",
                ));
            }
            return Ok(None);
        }
        if per_minute > 1_000_000 {
            return Err(self.err(
                &format!("{key}.per_minute"),
                "must be between 1 and 1000000 (or 0 to turn this limit off)",
            ));
        }
        let burst = r.burst.unwrap_or(default.burst);
        if !(1..=100_000).contains(&burst) {
            return Err(self.err(&format!("{key}.burst"), "must be between 1 and 100000"));
        }
        Ok(Some(Rate { per_minute, burst }))
    }

    /// `[mint.rate_limit]`.
    fn mint_rate_limit(&self, r: FileRateLimit) -> Result<MintRateLimit, ConfigError> {
        let d = MintRateLimit::default();
        let ipv4_prefix = r.ipv4_prefix.unwrap_or(d.ipv4_prefix);
        if !(8..=32).contains(&ipv4_prefix) {
            return Err(self.err(
                "mint.rate_limit.ipv4_prefix",
                "must be between 8 and 32 (24: one /24 is one network)",
            ));
        }
        let ipv6_prefix = r.ipv6_prefix.unwrap_or(d.ipv6_prefix);
        if !(32..=128).contains(&ipv6_prefix) {
            return Err(self.err(
                "mint.rate_limit.ipv6_prefix",
                "must be between 32 and 128 (64: one /64 is one customer's link)",
            ));
        }
        let max_tracked = r.max_tracked.unwrap_or(d.max_tracked);
        if !(1000..=10_000_000).contains(&max_tracked) {
            return Err(self.err(
                "mint.rate_limit.max_tracked",
                "must be between 1000 and 10000000",
            ));
        }
        Ok(MintRateLimit {
            lineage: self.rate("mint.rate_limit.lineage", r.lineage, MintRateLimit::LINEAGE)?,
            client: self.rate("mint.rate_limit.client", r.client, MintRateLimit::CLIENT)?,
            network: self.rate("mint.rate_limit.network", r.network, MintRateLimit::NETWORK)?,
            ipv4_prefix,
            ipv6_prefix,
            max_tracked,
        })
    }

    /// No two listeners (public, TLS, admin) on one address: the kernel would
    /// either refuse the second bind or split connections between them. A
    /// wildcard address overlaps the addresses it covers on its port
    /// (`0.0.0.0:P` every IPv4 one, `[::]:P` every one: Linux binds it
    /// dual-stack); port 0 means "any free port" and never clashes.
    fn distinct_listeners(
        &self,
        listeners: &[Listener],
        admin: Option<&str>,
    ) -> Result<(), ConfigError> {
        let (mut plain, mut tls) = (0, 0);
        let mut seen: Vec<(String, std::net::SocketAddr)> = Vec::new();
        let public = listeners.iter().map(|l| {
            let key = if l.tls.is_some() {
                tls += 1;
                format!("server.tls[{}].listen", tls - 1)
            } else {
                plain += 1;
                format!("server.listen[{}]", plain - 1)
            };
            (key, l.addr.as_str())
        });
        let all: Vec<(String, &str)> = public
            .chain(admin.map(|a| ("admin.listen".to_string(), a)))
            .collect();
        for (key, addr) in all {
            let a: std::net::SocketAddr = addr.parse().expect("validated above");
            if let Some((other, b)) = seen.iter().find(|(_, b)| listeners_overlap(&a, b)) {
                let same = if a == *b {
                    String::new()
                } else {
                    format!(" ({b})")
                };
                return Err(self.err(
                    &key,
                    format!("{a} is also the address of {other}{same}: two listeners cannot share an address; give each its own port"),
                ));
            }
            seen.push((key, a));
        }
        Ok(())
    }

    fn validate(&self, raw: FileConfig) -> Result<Config, ConfigError> {
        let s = raw.server;
        let mut listeners = Vec::new();
        let listen = s.listen.unwrap_or_else(|| {
            if s.tls.is_empty() {
                vec!["127.0.0.1:8080".to_string()]
            } else {
                vec![]
            }
        });
        for (i, l) in listen.iter().enumerate() {
            listeners.push(Listener {
                addr: self.socket_addr(&format!("server.listen[{i}]"), l)?,
                tls: None,
            });
        }
        for (i, t) in s.tls.iter().enumerate() {
            let key = format!("server.tls[{i}]");
            let cert = self.path(&t.cert);
            let tkey = self.path(&t.key);
            for (what, p) in [("cert", &cert), ("key", &tkey)] {
                if !p.is_file() {
                    return Err(self.err(
                        &format!("{key}.{what}"),
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
            listeners.push(Listener {
                addr: self.socket_addr(&format!("{key}.listen"), &t.listen)?,
                tls: Some(TlsFiles { cert, key: tkey }),
            });
        }
        if listeners.is_empty() {
            return Err(self.err(
                "server.listen",
                "no listener: give server.listen or a [[server.tls]] entry",
            ));
        }
        let threads = s.threads.unwrap_or(2);
        if !(1..=256).contains(&threads) {
            return Err(self.err("server.threads", "must be between 1 and 256"));
        }
        let public_host = s
            .public_host
            .ok_or_else(|| self.err("server.public_host", "missing: the IdP's public host name as browsers see it (e.g. \"login.example.com\")"))?;
        if public_host.is_empty() || public_host.contains(['/', ' ', '@', '?', '#']) {
            return Err(self.err(
                "server.public_host",
                format!("{public_host:?} is not a host name (no scheme, no path)"),
            ));
        }
        let mut trusted_proxies = Vec::new();
        for (i, n) in s.trusted_proxies.iter().enumerate() {
            trusted_proxies.push(parse_net(n).ok_or_else(|| {
                self.err(
                    &format!("server.trusted_proxies[{i}]"),
                    format!("{n:?} is not a network (CIDR like \"10.0.0.0/8\" or an address)"),
                )
            })?);
        }
        let forwarded_header = match s
            .forwarded_header
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("x-forwarded-for") => crate::client_ip::ForwardedHeader::XForwardedFor,
            Some("forwarded") => crate::client_ip::ForwardedHeader::Forwarded,
            Some(other) => {
                return Err(self.err(
                    "server.forwarded_header",
                    format!("{other:?}: expected \"x-forwarded-for\" or \"forwarded\""),
                ))
            }
        };
        let max_body_bytes = s.max_body_bytes.unwrap_or(16 * 1024);
        if !(1024..=64 * 1024).contains(&max_body_bytes) {
            return Err(self.err("server.max_body_bytes", "must be between 1024 and 65536 (bodies handoff reads are replayed to the IdP from a 64 KiB buffer)"));
        }

        let u = raw.upstream.ok_or_else(|| {
            self.err(
                "upstream",
                "missing: the [upstream] table with the IdP's address",
            )
        })?;
        let (host, _port) = split_host_port(&u.address).ok_or_else(|| {
            self.err(
                "upstream.address",
                format!("{:?} is not host:port", u.address),
            )
        })?;
        let host_header = match u.host_header.as_deref() {
            None | Some("preserve") => HostHeader::Preserve,
            Some(h) if !h.is_empty() && !h.contains(['/', ' ']) => HostHeader::Fixed(h.to_string()),
            Some(h) => {
                return Err(self.err(
                    "upstream.host_header",
                    format!("{h:?}: expected \"preserve\" or a host name"),
                ))
            }
        };
        let ca_file = u.ca_file.as_deref().map(|p| self.path(p));
        if let Some(p) = &ca_file {
            if !p.is_file() {
                return Err(self.err(
                    "upstream.ca_file",
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        let upstream = Upstream {
            sni: u.sni.unwrap_or_else(|| host.to_string()),
            address: u.address.clone(),
            tls: u.tls,
            ca_file,
            host_header,
            forwarded_headers: u.forwarded_headers.unwrap_or(true),
            timeout: self.duration(
                "upstream.timeout",
                u.timeout.as_deref(),
                Duration::from_secs(5),
            )?,
            discovery_path: self.url_path(
                "upstream.discovery_path",
                u.discovery_path
                    .as_deref()
                    .unwrap_or("/.well-known/openid-configuration"),
            )?,
            issuer: u.issuer,
            jwks_cache_ttl: self.duration(
                "upstream.jwks_cache_ttl",
                u.jwks_cache_ttl.as_deref(),
                Duration::from_secs(300),
            )?,
        };

        let st = raw.store;
        let memory_kind = match st.kind.as_deref() {
            None => st.url.is_none(),
            Some(k) => k == "memory",
        };
        if st.max_entries.is_some() && !memory_kind {
            return Err(self.err(
                "store.max_entries",
                "only for the embedded store (kind = \"memory\"); cap Redis with its maxmemory",
            ));
        }
        if st.max_entries == Some(0) {
            return Err(self.err("store.max_entries", "must be more than 0"));
        }
        let max_entries = st
            .max_entries
            .unwrap_or(crate::store::memory::DEFAULT_MAX_ENTRIES);
        let store = match st.kind.as_deref() {
            None if st.url.is_none() => StoreConfig::Memory { max_entries },
            Some("memory") => {
                if st.url.is_some() {
                    return Err(self.err(
                        "store.url",
                        "given with kind = \"memory\"; remove it or set kind = \"redis\"",
                    ));
                }
                StoreConfig::Memory { max_entries }
            }
            Some("redis-sentinel") => {
                let sentinels = st.sentinels.unwrap_or_default();
                if sentinels.is_empty() {
                    return Err(self.err("store.sentinels", "missing: kind = \"redis-sentinel\" needs sentinels = [\"redis://host:26379\", ...]"));
                }
                for (i, u) in sentinels.iter().enumerate() {
                    if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                        return Err(self.err(
                            &format!("store.sentinels[{i}]"),
                            "expected a redis:// or rediss:// URL",
                        ));
                    }
                }
                let master = st.master.filter(|m| !m.is_empty()).ok_or_else(|| {
                    self.err(
                        "store.master",
                        "missing: the name Sentinel monitors the master under (e.g. \"mymaster\")",
                    )
                })?;
                let (timeout, key_prefix) =
                    self.redis_common(st.timeout.as_deref(), st.key_prefix)?;
                StoreConfig::RedisSentinel {
                    sentinels: sentinels.into_iter().map(Secret::new).collect(),
                    master,
                    timeout,
                    key_prefix,
                }
            }
            None | Some("redis") => {
                let url = st.url.ok_or_else(|| {
                    self.err(
                        "store.url",
                        "missing: kind = \"redis\" needs url = \"redis://host:port\"",
                    )
                })?;
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(self.err("store.url", "expected a redis:// or rediss:// URL"));
                }
                let (timeout, key_prefix) =
                    self.redis_common(st.timeout.as_deref(), st.key_prefix)?;
                StoreConfig::Redis {
                    url: Secret::new(url),
                    timeout,
                    key_prefix,
                }
            }
            Some(other) => {
                return Err(self.err(
                    "store.kind",
                    format!("{other:?}: expected \"memory\", \"redis\" or \"redis-sentinel\""),
                ))
            }
        };

        let a = raw.assertion;
        let ttl = self.duration("assertion.ttl", a.ttl.as_deref(), Duration::from_secs(60))?;
        if ttl.is_zero() || ttl > Duration::from_secs(60) {
            return Err(self.err("assertion.ttl", "must be between 1s and 60s (SPEC §2.3)"));
        }
        let key = match a.alg.as_deref().unwrap_or("EdDSA") {
            "EdDSA" => {
                if a.secret_file.is_some() {
                    return Err(self.err("assertion.secret_file", "only used with alg = \"HS256\""));
                }
                match a.key_file {
                    Some(p) => SigningKey::Ed25519File(self.path(&p)),
                    None => SigningKey::Ephemeral,
                }
            }
            "HS256" => {
                let p = a.secret_file.ok_or_else(|| self.err("assertion.secret_file", "missing: alg = \"HS256\" needs a file holding the shared secret (at least 32 bytes)"))?;
                SigningKey::Hs256File(self.path(&p))
            }
            other => {
                return Err(self.err(
                    "assertion.alg",
                    format!("{other:?}: expected \"EdDSA\" or \"HS256\""),
                ))
            }
        };
        match &key {
            SigningKey::Ed25519File(p) if !p.is_file() => {
                return Err(self.err(
                    "assertion.key_file",
                    format!(
                        "{} is not a readable file (make one with `handoff keygen --out FILE`)",
                        p.display()
                    ),
                ))
            }
            SigningKey::Hs256File(p) if !p.is_file() => {
                return Err(self.err(
                    "assertion.secret_file",
                    format!("{} is not a readable file", p.display()),
                ))
            }
            _ => {}
        }
        let assertion = AssertionConfig {
            header: self.cookie_name(
                "assertion.header",
                a.header.as_deref().unwrap_or("X-Handoff-Assertion"),
            )?,
            issuer: a
                .issuer
                .unwrap_or_else(|| format!("https://{public_host}/handoff")),
            audience: a
                .audience
                .unwrap_or_else(|| format!("https://{public_host}")),
            ttl,
            key,
        };

        let n = raw.names;
        let redirect_cookie = self.cookie_name(
            "names.redirect_cookie",
            n.redirect_cookie.as_deref().unwrap_or("__Host-handoff_stt"),
        )?;
        if !redirect_cookie.starts_with("__Host-") {
            return Err(self.err(
                "names.redirect_cookie",
                "must start with __Host- (SPEC §2.2: no Domain, Path=/, Secure)",
            ));
        }
        let mut cookie_aliases = Vec::new();
        for (i, c) in n
            .cookie_aliases
            .unwrap_or_else(|| vec!["session_transfer_token".into()])
            .iter()
            .enumerate()
        {
            cookie_aliases.push(self.cookie_name(&format!("names.cookie_aliases[{i}]"), c)?);
        }
        let names = Names {
            cookie: self.cookie_name(
                "names.cookie",
                n.cookie
                    .as_deref()
                    .unwrap_or("auth0_session_transfer_token"),
            )?,
            cookie_aliases,
            query_param: self.cookie_name(
                "names.query_param",
                n.query_param.as_deref().unwrap_or("session_transfer_token"),
            )?,
            redirect_cookie,
        };

        let p = raw.paths;
        let mut redemption = Vec::new();
        for (i, r) in p
            .redemption
            .unwrap_or_else(|| vec!["/authorize".into()])
            .iter()
            .enumerate()
        {
            redemption.push(self.url_path(&format!("paths.redemption[{i}]"), r)?);
        }
        let paths = Paths {
            token: self.url_path("paths.token", p.token.as_deref().unwrap_or("/oauth/token"))?,
            revocation: self.url_path(
                "paths.revocation",
                p.revocation.as_deref().unwrap_or("/oauth/revoke"),
            )?,
            redemption,
            jwks: self.url_path(
                "paths.jwks",
                p.jwks
                    .as_deref()
                    .unwrap_or("/.well-known/handoff/jwks.json"),
            )?,
        };

        let rules_file = raw.rules.file.as_deref().map(|p| self.path(p));
        let asn_table = raw.rules.asn_table.as_deref().map(|p| self.path(p));
        let rules_watch = self.duration(
            "rules.watch_interval",
            raw.rules.watch_interval.as_deref(),
            Duration::from_secs(1),
        )?;

        let ad = raw.admin;
        let token = match &ad.token_file {
            None => None,
            Some(p) => {
                let p = self.path(p);
                let t = std::fs::read_to_string(&p).map_err(|e| {
                    self.err(
                        "admin.token_file",
                        format!("cannot read {}: {e}", p.display()),
                    )
                })?;
                let t = t.trim().to_string();
                if t.len() < 16 {
                    return Err(self.err(
                        "admin.token_file",
                        "the token must be at least 16 characters",
                    ));
                }
                Some(Secret::new(t))
            }
        };
        let listen = if ad.disabled {
            None
        } else {
            let l = self.socket_addr(
                "admin.listen",
                ad.listen.as_deref().unwrap_or("127.0.0.1:9090"),
            )?;
            let ip: std::net::SocketAddr = l.parse().expect("validated above");
            if !ip.ip().is_loopback() && token.is_none() {
                return Err(self.err("admin.listen", format!("{l} is not a loopback address: set admin.token_file so the admin API is protected")));
            }
            Some(l)
        };
        self.distinct_listeners(&listeners, listen.as_deref())?;

        let se = raw.session;
        let mut cookie_names = Vec::new();
        for (i, c) in se
            .cookie_names
            .unwrap_or_else(|| vec!["_session".into()])
            .iter()
            .enumerate()
        {
            cookie_names.push(self.cookie_name(&format!("session.cookie_names[{i}]"), c)?);
        }
        let same_site = match se
            .same_site
            .as_deref()
            .unwrap_or("lax")
            .to_ascii_lowercase()
            .as_str()
        {
            "lax" => SameSite::Lax,
            "strict" => SameSite::Strict,
            "none" => SameSite::None,
            other => {
                return Err(self.err(
                    "session.same_site",
                    format!("{other:?}: expected \"lax\", \"strict\" or \"none\""),
                ))
            }
        };
        let domain = match se.domain {
            None => None,
            Some(d) => {
                let d = d.trim_start_matches('.').to_ascii_lowercase();
                if d.is_empty() || d.contains(['/', ' ', ':', ';']) || !d.contains('.') {
                    return Err(self.err(
                        "session.domain",
                        format!("{d:?} is not a registrable domain (e.g. \"example.com\")"),
                    ));
                }
                Some(d)
            }
        };
        let transaction_cookie = self.cookie_name(
            "session.transaction_cookie",
            se.transaction_cookie
                .as_deref()
                .unwrap_or("__Host-handoff_tx"),
        )?;
        if !transaction_cookie.starts_with("__Host-") {
            return Err(self.err("session.transaction_cookie", "must start with __Host-"));
        }
        let transaction_ttl = self.duration(
            "session.transaction_ttl",
            se.transaction_ttl.as_deref(),
            Duration::from_secs(120),
        )?;
        if transaction_ttl.as_secs() < 5 || transaction_ttl > Duration::from_secs(120) {
            return Err(self.err(
                "session.transaction_ttl",
                "must be between 5s and 120s (SPEC §2.3)",
            ));
        }
        let transaction_max_hops = se.transaction_max_hops.unwrap_or(20);
        if !(1..=100).contains(&transaction_max_hops) {
            return Err(self.err("session.transaction_max_hops", "must be between 1 and 100"));
        }
        let cache_ttl = self.duration(
            "session.cache_ttl",
            se.cache_ttl.as_deref(),
            Duration::from_secs(1),
        )?;
        if cache_ttl > Duration::from_secs(1) {
            return Err(self.err(
                "session.cache_ttl",
                "must be at most 1s: it bounds how late a revocation is seen (SPEC §6)",
            ));
        }
        let outage_grace = self.duration(
            "session.outage_grace",
            se.outage_grace.as_deref(),
            Duration::from_secs(30),
        )?;
        if outage_grace > Duration::from_secs(600) {
            return Err(self.err("session.outage_grace", "must be at most 10m"));
        }
        let retention = self.duration(
            "session.retention",
            se.retention.as_deref(),
            Duration::from_secs(14 * 24 * 3600),
        )?;
        if retention < Duration::from_secs(3600) || retention > Duration::from_secs(365 * 24 * 3600)
        {
            return Err(self.err(
                "session.retention",
                "must be between 1h and 365d, and at least the IdP's own session lifetime",
            ));
        }
        let max_cookie_occurrences = se.max_cookie_occurrences.unwrap_or(4);
        if !(1..=64).contains(&max_cookie_occurrences) {
            return Err(self.err("session.max_cookie_occurrences", "must be between 1 and 64"));
        }
        let max_cookie_bytes = se.max_cookie_bytes.unwrap_or(16 * 1024);
        if !(1024..=256 * 1024).contains(&max_cookie_bytes) {
            return Err(self.err(
                "session.max_cookie_bytes",
                "must be between 1024 and 262144",
            ));
        }
        let session = SessionConfig {
            max_cookie_occurrences,
            max_cookie_bytes,
            retention,
            cookie_names,
            same_site,
            domain,
            secure_all_cookies: se.secure_all_cookies.unwrap_or(true),
            transaction_cookie,
            transaction_ttl,
            transaction_max_hops,
            cache_ttl,
            outage_grace,
        };

        let mut client_secrets = std::collections::HashMap::new();
        for (id, c) in &raw.clients {
            let p = self.path(&c.secret_file);
            let s = std::fs::read_to_string(&p).map_err(|e| {
                self.err(
                    &format!("clients.{id}.secret_file"),
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            let s = s.trim();
            if s.is_empty() {
                return Err(self.err(&format!("clients.{id}.secret_file"), "the file is empty"));
            }
            client_secrets.insert(id.clone(), Secret::new(s));
        }
        let backchannel_logout = BackchannelLogout {
            path: self.url_path(
                "backchannel_logout.path",
                raw.backchannel_logout
                    .path
                    .as_deref()
                    .unwrap_or("/handoff/backchannel-logout"),
            )?,
            audiences: raw.backchannel_logout.audiences.clone(),
        };

        let mint_rate_limit = self.mint_rate_limit(raw.mint.rate_limit)?;

        Ok(Config {
            mint_rate_limit,
            client_secrets,
            backchannel_logout,
            listeners,
            threads,
            public_host,
            trusted_proxies,
            forwarded_header,
            max_body_bytes,
            upstream,
            store,
            assertion,
            names,
            paths,
            rules_file,
            asn_table,
            rules_watch,
            admin: AdminConfig { listen, token },
            session,
        })
    }
}

/// True for an RFC 7230 token (header names, cookie names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 || host.contains(['/', ' ']) {
        return None;
    }
    Some((host.trim_start_matches('[').trim_end_matches(']'), port))
}

/// Parses `"10.0.0.0/8"` or a bare address (as a /32 or /128).
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Parses `"50ms"`, `"30s"`, `"5m"`, `"1h"`, `"1h30m"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let d = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86400),
            _ => return None,
        };
        total += d;
        rest = &rest[unit..];
    }
    Some(total)
}

/// Whether two listen addresses overlap: the same port (not 0) and the same IP,
/// or one a wildcard that covers the other (`[::]` covers IPv4 too).
fn listeners_overlap(a: &std::net::SocketAddr, b: &std::net::SocketAddr) -> bool {
    use std::net::IpAddr;
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    let covers = |w: IpAddr, o: IpAddr| match w {
        IpAddr::V6(w) => w.is_unspecified(),
        IpAddr::V4(w) => w.is_unspecified() && o.is_ipv4(),
    };
    x == y || covers(x, y) || covers(y, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str =
        "[server]\npublic_host = \"login.example.com\"\n[upstream]\naddress = \"127.0.0.1:3000\"\n";

    fn load(t: &str) -> Result<Config, ConfigError> {
        Config::from_toml(t, "handoff.toml", Path::new("/etc/handoff"))
    }

    #[test]
    fn two_listeners_on_one_address_are_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["c.pem", "k.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let tls = |addr: &str| {
            format!("[[server.tls]]\nlisten = \"{addr}\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n")
        };
        let cfg = |listen: &str, tls: &str, admin: &str| {
            format!(
                "[server]\npublic_host = \"login.example.com\"\nlisten = [{listen}]\n{tls}\
                 [upstream]\naddress = \"127.0.0.1:3000\"\n[admin]\nlisten = \"{admin}\"\n"
            )
        };
        let check = |t: String| Config::from_toml(&t, "handoff.toml", dir.path());
        let clashes = [
            // (public listen, TLS listeners, admin, key reported, key named in the reason)
            (
                "\"127.0.0.1:8080\"",
                String::new(),
                "127.0.0.1:8080",
                "admin.listen",
                "server.listen[0]",
            ),
            (
                "\"0.0.0.0:8080\"",
                String::new(),
                "127.0.0.1:8080",
                "admin.listen",
                "server.listen[0]",
            ),
            (
                "\"[::]:8080\"",
                String::new(),
                "127.0.0.1:8080",
                "admin.listen",
                "server.listen[0]",
            ),
            ("\"127.0.0.1:8080\"", String::new(), "[::1]:9090", "", ""),
            (
                "\"[::]:8080\"",
                String::new(),
                "[::1]:8080",
                "admin.listen",
                "server.listen[0]",
            ),
            (
                "\"127.0.0.1:8080\", \"127.0.0.1:8080\"",
                String::new(),
                "127.0.0.1:9090",
                "server.listen[1]",
                "server.listen[0]",
            ),
            (
                "\"127.0.0.1:8080\", \"0.0.0.0:8080\"",
                String::new(),
                "127.0.0.1:9090",
                "server.listen[1]",
                "server.listen[0]",
            ),
            (
                "\"127.0.0.1:8080\"",
                tls("0.0.0.0:8080"),
                "127.0.0.1:9090",
                "server.tls[0].listen",
                "server.listen[0]",
            ),
            (
                "",
                tls("127.0.0.1:8443") + &tls("127.0.0.1:8443"),
                "127.0.0.1:9090",
                "server.tls[1].listen",
                "server.tls[0].listen",
            ),
            (
                "",
                tls("127.0.0.1:8443"),
                "127.0.0.1:8443",
                "admin.listen",
                "server.tls[0].listen",
            ),
            (
                "\"[::ffff:127.0.0.1]:8080\"",
                String::new(),
                "127.0.0.1:8080",
                "admin.listen",
                "server.listen[0]",
            ),
        ];
        for (listen, tls, admin, key, other) in &clashes {
            let r = check(cfg(listen, tls, admin));
            if key.is_empty() {
                assert!(r.is_ok(), "{listen} {tls} {admin}: {r:?}");
                continue;
            }
            let e = r.expect_err(&format!("{listen} / {tls} / {admin} was accepted"));
            assert_eq!(&e.key, key, "{e}");
            assert!(e.reason.contains(other), "{e}");
            assert_eq!(e.file, "handoff.toml");
        }
        // No clash: other ports, other addresses, port 0 (any free port), a v4
        // wildcard next to an IPv6 address.
        let fine = [
            (
                "\"127.0.0.1:8080\", \"127.0.0.2:8080\"",
                String::new(),
                "127.0.0.1:9090",
            ),
            ("\"0.0.0.0:8080\"", tls("0.0.0.0:8443"), "127.0.0.1:9090"),
            (
                "\"127.0.0.1:0\", \"127.0.0.1:0\"",
                tls("0.0.0.0:0"),
                "127.0.0.1:0",
            ),
            ("\"0.0.0.0:8080\"", String::new(), "[::1]:8080"),
        ];
        for (listen, tls, admin) in &fine {
            let r = check(cfg(listen, tls, admin));
            assert!(r.is_ok(), "{listen} {tls} {admin}: {r:?}");
        }
        // A disabled admin listener clashes with nothing.
        let t = cfg("\"127.0.0.1:9090\"", "", "x").replace("listen = \"x\"", "disabled = true");
        assert!(check(t).is_ok());
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MIN).unwrap();
        assert_eq!(c.mint_audience(), "urn:login.example.com:session_transfer");
        assert_eq!(c.listeners[0].addr, "127.0.0.1:8080");
        assert!(matches!(
            c.store,
            StoreConfig::Memory {
                max_entries: crate::store::memory::DEFAULT_MAX_ENTRIES
            }
        ));
        assert_eq!(c.names.cookie, "auth0_session_transfer_token");
        assert_eq!(c.names.cookie_aliases, vec!["session_transfer_token"]);
        assert_eq!(c.paths.redemption, vec!["/authorize"]);
        assert_eq!(c.assertion.header, "X-Handoff-Assertion");
        assert_eq!(c.admin.listen.as_deref(), Some("127.0.0.1:9090"));
        assert_eq!(c.upstream.base_url(), "http://127.0.0.1:3000");
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let e = load(
            "[server]\npublic_host = \"x\"\nlisten = [\"nope\"]\n[upstream]\naddress = \"a:1\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "server.listen[0]");
        assert!(
            e.to_string()
                .starts_with("handoff.toml: server.listen[0]: \"nope\""),
            "{e}"
        );

        let e = load(&format!("{MIN}[store]\nkind = \"redis\"\n")).unwrap_err();
        assert_eq!(e.key, "store.url");

        let e = load(&format!(
            "{MIN}[store]\nurl = \"redis://x:1\"\ntimeout = \"fast\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "store.timeout");

        let e = load(&format!("{MIN}[admin]\nlisten = \"0.0.0.0:9090\"\n")).unwrap_err();
        assert_eq!(e.key, "admin.listen");

        let e = load(&format!("{MIN}[names]\nredirect_cookie = \"stt\"\n")).unwrap_err();
        assert_eq!(e.key, "names.redirect_cookie");

        let e = load(&format!("{MIN}[assertion]\nttl = \"5m\"\n")).unwrap_err();
        assert_eq!(e.key, "assertion.ttl");

        let e = load("[server]\npublic_host = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "upstream");
    }

    #[test]
    fn memory_store_cap() {
        let c = load(&format!("{MIN}[store]\nmax_entries = 1000\n")).unwrap();
        assert!(matches!(c.store, StoreConfig::Memory { max_entries: 1000 }));
        let e = load(&format!("{MIN}[store]\nmax_entries = 0\n")).unwrap_err();
        assert_eq!(e.key, "store.max_entries");
        let e = load(&format!(
            "{MIN}[store]\nurl = \"redis://x:1\"\nmax_entries = 10\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "store.max_entries");
    }

    #[test]
    fn sentinel_stores() {
        let c = load(&format!("{MIN}[store]\nkind = \"redis-sentinel\"\nsentinels = [\"redis://10.0.0.1:26379\"]\nmaster = \"m\"\n")).unwrap();
        assert!(matches!(c.store, StoreConfig::RedisSentinel { ref master, .. } if master == "m"));
        let e = load(&format!(
            "{MIN}[store]\nkind = \"redis-sentinel\"\nmaster = \"m\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "store.sentinels");
        let e = load(&format!("{MIN}[store]\nkind = \"redis-sentinel\"\nsentinels = [\"10.0.0.1:26379\"]\nmaster = \"m\"\n")).unwrap_err();
        assert_eq!(e.key, "store.sentinels[0]");
        let e = load(&format!(
            "{MIN}[store]\nkind = \"redis-sentinel\"\nsentinels = [\"redis://a:1\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "store.master");
    }

    #[test]
    fn unknown_keys_and_syntax_errors_point_at_the_line() {
        let e = load(&format!("{MIN}[store]\nurll = \"redis://x:1\"\n")).unwrap_err();
        assert!(e.reason.contains("unknown field `urll`"), "{e}");
        assert_eq!(e.key, "6:1");
        let e = load("[server\n").unwrap_err();
        assert_eq!(e.key, "1:8");
    }

    #[test]
    fn garbage_never_panics() {
        for t in [
            "",
            "\u{0}",
            "[[[",
            "server = 3",
            "[upstream]\naddress = 7",
            "[server]\nthreads = -1",
        ] {
            let _ = load(t);
        }
    }

    #[test]
    fn mint_rate_limits_default_and_validate() {
        let c = load(MIN).unwrap();
        assert_eq!(c.mint_rate_limit, MintRateLimit::default());
        assert_eq!(c.mint_rate_limit.lineage, Some(MintRateLimit::LINEAGE));

        let c = load(&format!(
            "{MIN}[mint.rate_limit]\nlineage = {{ per_minute = 5 }}\nclient = {{ per_minute = 0 }}\n\
             network = {{ per_minute = 60, burst = 20 }}\nipv4_prefix = 32\nipv6_prefix = 56\nmax_tracked = 5000\n"
        ))
        .unwrap();
        let r = &c.mint_rate_limit;
        assert_eq!(
            r.lineage,
            Some(Rate {
                per_minute: 5,
                burst: 10
            }),
            "an omitted burst keeps its default"
        );
        assert_eq!(r.client, None, "per_minute = 0 turns the scope off");
        assert_eq!(
            r.network,
            Some(Rate {
                per_minute: 60,
                burst: 20
            })
        );
        assert_eq!(
            (r.ipv4_prefix, r.ipv6_prefix, r.max_tracked),
            (32, 56, 5000)
        );

        // The dotted-table spelling works too.
        let c = load(&format!(
            "{MIN}[mint.rate_limit.lineage]\nper_minute = 3\nburst = 1\n"
        ))
        .unwrap();
        assert_eq!(
            c.mint_rate_limit.lineage,
            Some(Rate {
                per_minute: 3,
                burst: 1
            })
        );

        for (tail, key) in [
            ("lineage = { burst = 0 }", "mint.rate_limit.lineage.burst"),
            (
                "client = { burst = 100001 }",
                "mint.rate_limit.client.burst",
            ),
            (
                "network = { per_minute = 1000001 }",
                "mint.rate_limit.network.per_minute",
            ),
            (
                "lineage = { per_minute = 0, burst = 5 }",
                "mint.rate_limit.lineage.burst",
            ),
            ("ipv4_prefix = 7", "mint.rate_limit.ipv4_prefix"),
            ("ipv4_prefix = 33", "mint.rate_limit.ipv4_prefix"),
            ("ipv6_prefix = 16", "mint.rate_limit.ipv6_prefix"),
            ("ipv6_prefix = 129", "mint.rate_limit.ipv6_prefix"),
            ("max_tracked = 10", "mint.rate_limit.max_tracked"),
        ] {
            let e = load(&format!("{MIN}[mint.rate_limit]\n{tail}\n")).unwrap_err();
            assert_eq!(e.key, key, "{tail}: {e}");
            assert!(
                e.to_string().starts_with("handoff.toml: mint.rate_limit."),
                "{e}"
            );
        }
        // Unknown keys, and a negative number, are refused with a position.
        for tail in [
            "lineage = { per_second = 1 }",
            "per_lineage = 1",
            "lineage = { per_minute = -1 }",
        ] {
            let e = load(&format!("{MIN}[mint.rate_limit]\n{tail}\n")).unwrap_err();
            assert!(e.key.contains(':'), "{tail}: {e}");
        }
        let e = load(&format!("{MIN}[mint]\nrate = 1\n")).unwrap_err();
        assert!(e.reason.contains("unknown field `rate`"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms"), Some(Duration::from_millis(50)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("99999999999s"), None);
    }
}
