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
//!
//! Layout: this module holds the model and the entry points; `file` the serde
//! structs; `validate` one module per section, which together collect every
//! error of a file ([`ConfigErrors`]), not only the first.

mod duration;
mod error;
mod file;
mod validate;

pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors};
pub use validate::parse_net;

use crate::secret::{Secret, SecretBytes};
use file::FileConfig;
use ipnet::IpNet;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    pub(crate) fn base_url(&self) -> String {
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

/// How assertions are signed. The key file is read (and checked to be a usable
/// key) while the config is validated, so a key that cannot be read or used is a
/// [`ConfigError`] naming `assertion.key_file` or `assertion.secret_file`.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// Ed25519 from a PKCS#8 file (`handoff keygen` writes one).
    Ed25519File {
        /// Where it was read from.
        path: PathBuf,
        /// The file's bytes (PEM or DER PKCS#8).
        pkcs8: SecretBytes,
    },
    /// A fresh Ed25519 key for this process only (development: the IdP must
    /// re-fetch the JWKS after every restart). Logged as a warning.
    Ephemeral,
    /// HS256 with a shared secret read from a file.
    Hs256File {
        /// Where it was read from.
        path: PathBuf,
        /// The secret: the file's bytes without surrounding whitespace.
        secret: SecretBytes,
    },
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
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
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
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
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
        validate::validate(raw, file, base)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::validate::testing::*;
    use super::*;

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
        let e = err(
            "[server]\npublic_host = \"x\"\nlisten = [\"nope\"]\n[upstream]\naddress = \"a:1\"\n",
        );
        assert_eq!(e.key, "server.listen[0]");
        assert!(
            e.to_string()
                .starts_with("handoff.toml: server.listen[0]: \"nope\""),
            "{e}"
        );

        let e = err(&format!("{MIN}[store]\nkind = \"redis\"\n"));
        assert_eq!(e.key, "store.url");

        let e = err(&format!(
            "{MIN}[store]\nurl = \"redis://x:1\"\ntimeout = \"fast\"\n"
        ));
        assert_eq!(e.key, "store.timeout");

        let e = err(&format!("{MIN}[admin]\nlisten = \"0.0.0.0:9090\"\n"));
        assert_eq!(e.key, "admin.listen");

        let e = err(&format!("{MIN}[names]\nredirect_cookie = \"stt\"\n"));
        assert_eq!(e.key, "names.redirect_cookie");

        let e = err(&format!("{MIN}[assertion]\nttl = \"5m\"\n"));
        assert_eq!(e.key, "assertion.ttl");

        let e = err("[server]\npublic_host = \"x\"\n");
        assert_eq!(e.key, "upstream");
    }

    #[test]
    fn unknown_keys_and_syntax_errors_point_at_the_line() {
        let e = err(&format!("{MIN}[store]\nurll = \"redis://x:1\"\n"));
        assert!(e.reason.contains("unknown field `urll`"), "{e}");
        assert_eq!(e.key, "6:1");
        let e = err("[server\n");
        assert_eq!(e.key, "1:8");
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
