//! The validated settings and the types of a redemption decision.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::glob::Glob;
use crate::net::{same_prefix, NetList};

/// The longest a session transfer token may live (SPEC §2.1).
pub const MAX_TRANSFER_TOKEN_TTL: Duration = Duration::from_secs(300);

/// How the browser delivered the session transfer token (SPEC §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// The `auth0_session_transfer_token` / `session_transfer_token` cookie.
    Cookie,
    /// The `session_transfer_token` query parameter.
    Query,
}

impl AuthMethod {
    /// The name used in the rules file and in metrics: `cookie` or `query`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMethod::Cookie => "cookie",
            AuthMethod::Query => "query",
        }
    }

    fn bit(self) -> u8 {
        match self {
            AuthMethod::Cookie => 1,
            AuthMethod::Query => 2,
        }
    }
}

impl std::str::FromStr for AuthMethod {
    type Err = String;

    /// Parses `cookie` or `query` (as the rules file and metrics write them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cookie" => Ok(AuthMethod::Cookie),
            "query" => Ok(AuthMethod::Query),
            _ => Err(format!(
                "invalid method \"{s}\": expected \"cookie\" or \"query\""
            )),
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`AuthMethod`]s (a web client's `allowed_authentication_methods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AuthMethods(u8);

impl AuthMethods {
    /// Only the cookie (the default: the safe method).
    pub const COOKIE: AuthMethods = AuthMethods(1);
    /// Cookie and query parameter.
    pub const ALL: AuthMethods = AuthMethods(3);

    /// The empty set.
    pub fn empty() -> Self {
        AuthMethods(0)
    }
    /// Whether `m` is in the set.
    pub fn contains(&self, m: AuthMethod) -> bool {
        self.0 & m.bit() != 0
    }
    /// Adds `m` to the set.
    pub fn insert(&mut self, m: AuthMethod) {
        self.0 |= m.bit();
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
    /// Whether every method in `other` is also in `self`.
    pub fn is_superset(&self, other: AuthMethods) -> bool {
        self.0 & other.0 == other.0
    }
    /// The methods in the set, cookie first.
    pub fn iter(&self) -> impl Iterator<Item = AuthMethod> + '_ {
        [AuthMethod::Cookie, AuthMethod::Query]
            .into_iter()
            .filter(|m| self.contains(*m))
    }
}

/// The network half of a device binding (SPEC §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkBinding {
    /// No network check.
    None,
    /// `ip`: the redeeming IP equals the minting IP.
    Ip,
    /// `ip_prefix`: both IPs share the first `v4` (IPv4) or `v6` (IPv6) bits.
    IpPrefix {
        /// Prefix length for IPv4 addresses, 1..=32.
        v4: u8,
        /// Prefix length for IPv6 addresses, 1..=128.
        v6: u8,
    },
    /// `asn`: both IPs are in the same, known, autonomous system.
    Asn,
}

/// A device binding: a network mode, optionally combined with the fingerprint.
/// Both halves must hold. [`Binding::NONE`] binds nothing.
///
/// Written in the rules file as `"none"`, `"ip"`, `"ip_prefix"`, `"asn"`,
/// `"fingerprint"`, or a network mode `+ fingerprint`: `"ip_prefix+fingerprint"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The network check.
    pub network: NetworkBinding,
    /// Whether the device fingerprints of mint and redemption must be equal.
    pub fingerprint: bool,
}

impl Binding {
    /// No binding at all (must be explicit in the rules file).
    pub const NONE: Binding = Binding {
        network: NetworkBinding::None,
        fingerprint: false,
    };
    /// The default: same IP.
    pub const IP: Binding = Binding {
        network: NetworkBinding::Ip,
        fingerprint: false,
    };

    /// Whether this binds nothing.
    pub fn is_none(&self) -> bool {
        self.network == NetworkBinding::None && !self.fingerprint
    }

    /// Whether the check needs the ASN of the mint and redeem IPs.
    pub fn needs_asn(&self) -> bool {
        self.network == NetworkBinding::Asn
    }

    /// Whether the redemption context satisfies this binding.
    ///
    /// - `ip`: equal after IPv4-mapped IPv6 normalization ([`crate::normalize_ip`]);
    /// - `ip_prefix`: same family and same first N bits;
    /// - `asn`: both ASNs known (`Some`, not 0) and equal; unknown is a mismatch;
    /// - `fingerprint`: both present and equal; absent is a mismatch.
    pub fn holds(&self, ctx: &RedeemContext<'_>) -> bool {
        let network = match self.network {
            NetworkBinding::None => true,
            NetworkBinding::Ip => {
                crate::net::normalize_ip(ctx.mint_ip) == crate::net::normalize_ip(ctx.redeem_ip)
            }
            NetworkBinding::IpPrefix { v4, v6 } => same_prefix(ctx.mint_ip, ctx.redeem_ip, v4, v6),
            NetworkBinding::Asn => matches!(
                (ctx.mint_asn, ctx.redeem_asn),
                (Some(a), Some(b)) if a != 0 && a == b
            ),
        };
        let fingerprint = !self.fingerprint
            || match (&ctx.mint_fingerprint, &ctx.redeem_fingerprint) {
                // Not secret, but there is no reason to leak timing either.
                (Some(a), Some(b)) => a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0,
                _ => false,
            };
        network && fingerprint
    }
}

impl fmt::Display for Binding {
    /// The rules-file spelling: `none`, `ip`, `ip_prefix+fingerprint`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = match self.network {
            NetworkBinding::None => None,
            NetworkBinding::Ip => Some("ip"),
            NetworkBinding::IpPrefix { .. } => Some("ip_prefix"),
            NetworkBinding::Asn => Some("asn"),
        };
        match (net, self.fingerprint) {
            (None, false) => f.write_str("none"),
            (None, true) => f.write_str("fingerprint"),
            (Some(n), false) => f.write_str(n),
            (Some(n), true) => write!(f, "{n}+fingerprint"),
        }
    }
}

/// A native (mobile/desktop) client's resolved settings (SPEC §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeClient {
    /// The id or glob this entry was declared under (`*` for the defaults).
    pub id: String,
    /// Whether this client may mint session transfer tokens.
    pub can_create_session_transfer_token: bool,
    /// Lifetime of the tokens it mints; 1s..=300s.
    pub transfer_token_ttl: Duration,
    /// Whether revoking its refresh token revokes every web session of the lineage.
    pub enforce_cascade_revocation: bool,
    pub(crate) allowed_web_clients: Vec<Glob>,
    pub(crate) networks: NetList,
}

impl NativeClient {
    /// Whether tokens minted by this client may log in to `web_client_id`
    /// (exact id or glob in `allowed_web_clients`).
    pub fn allows_web_client(&self, web_client_id: &str) -> bool {
        self.allowed_web_clients
            .iter()
            .any(|g| g.matches(web_client_id))
    }

    /// Whether a mint from `ip` passes this client's `allowed_networks` /
    /// `denied_networks` (deny wins; an empty allow list allows any network).
    pub fn allows_mint_from(&self, ip: IpAddr) -> bool {
        self.networks.permits(ip)
    }

    /// The `allowed_web_clients` patterns as written.
    pub fn allowed_web_clients(&self) -> impl Iterator<Item = &str> {
        self.allowed_web_clients.iter().map(Glob::as_str)
    }
}

/// A web client's resolved settings (SPEC §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebClient {
    /// The id or glob this entry was declared under (`*` for the defaults).
    pub id: String,
    /// How the token may be delivered (`cookie`, `query`).
    pub allowed_authentication_methods: AuthMethods,
    /// The device binding checked at redemption, before any rule changes it.
    pub enforce_device_binding: Binding,
    /// Whether refresh tokens may reach the web app (SPEC §2.5).
    pub allow_refresh_token: bool,
    /// Whether its refresh tokens die with the web session (SPEC §2.5).
    pub enforce_online_refresh_tokens: bool,
    /// Absolute web-session lifetime.
    pub session_absolute: Duration,
    /// Idle web-session lifetime (≤ `session_absolute`).
    pub session_idle: Duration,
    /// Whether presenting a consumed token again revokes the whole lineage.
    pub revoke_lineage_on_replay: bool,
    pub(crate) networks: NetList,
}

impl WebClient {
    /// Whether a redemption from `ip` passes this client's `allowed_networks` /
    /// `denied_networks` (deny wins; an empty allow list allows any network).
    pub fn allows_redeem_from(&self, ip: IpAddr) -> bool {
        self.networks.permits(ip)
    }
}

/// Everything the policy needs to know about one redemption. Built by the proxy
/// from the stored mint context and the redeeming request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeemContext<'a> {
    /// The client id that minted the token.
    pub native_client: &'a str,
    /// The `client_id` of the authorize request.
    pub web_client: &'a str,
    /// How the token arrived.
    pub method: AuthMethod,
    /// The client IP at mint time (after the trusted-proxy rule).
    pub mint_ip: IpAddr,
    /// The client IP now (after the trusted-proxy rule).
    pub redeem_ip: IpAddr,
    /// Device fingerprint at mint time, if one could be computed.
    pub mint_fingerprint: Option<[u8; 32]>,
    /// Device fingerprint now, if one could be computed.
    pub redeem_fingerprint: Option<[u8; 32]>,
    /// ASN of `mint_ip`, where an ASN table is configured and knows it.
    pub mint_asn: Option<u32>,
    /// ASN of `redeem_ip`, where an ASN table is configured and knows it.
    pub redeem_asn: Option<u32>,
    /// Minutes since 00:00 UTC, 0..1440 (larger values are taken modulo 1440).
    pub minute_of_day_utc: u16,
}

/// Why a redemption was refused. Falls back to an ordinary login (SPEC §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The native client is not in the file, or may not mint.
    UnknownNativeClient,
    /// The web client is not in the native client's `allowed_web_clients`.
    ClientNotAllowed,
    /// The delivery method is not in the web client's `allowed_authentication_methods`.
    MethodNotAllowed,
    /// A network allow/deny list or a `deny = true` rule refused it.
    DeniedByRule,
    /// The device binding does not hold.
    BindingMismatch,
}

impl DenyReason {
    /// The snake_case metric label (`binding_mismatch`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyReason::UnknownNativeClient => "unknown_native_client",
            DenyReason::ClientNotAllowed => "client_not_allowed",
            DenyReason::MethodNotAllowed => "method_not_allowed",
            DenyReason::DeniedByRule => "denied_by_rule",
            DenyReason::BindingMismatch => "binding_mismatch",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of [`crate::Policy::decide_redemption`]: the verdict and the
/// settings the web session gets if it is allowed.
///
/// The settings are filled in whatever the verdict, so `explain` can show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `Ok(())` to log the user in; otherwise why not.
    pub verdict: Result<(), DenyReason>,
    /// Absolute session lifetime: the minimum of the web client's and of every
    /// matching rule's.
    pub session_absolute: Duration,
    /// Idle session lifetime: the minimum of the web client's and of every
    /// matching rule's, and never more than `session_absolute`.
    pub session_idle: Duration,
    /// Whether refresh tokens may reach the web app.
    pub allow_refresh_token: bool,
    /// Whether the web app's refresh tokens die with the session.
    pub enforce_online_refresh_tokens: bool,
    /// Whether a replay of this token revokes the lineage.
    pub revoke_lineage_on_replay: bool,
    /// The binding that was (or would have been) checked.
    pub binding: Binding,
    /// Index (0-based, file order) of the deciding rule: the rule that denied,
    /// else the first matching rule that set `deny`, `binding` or a refresh-token
    /// setting, else the first matching rule; `None` if no rule matched.
    pub matched_rule: Option<usize>,
}

impl Decision {
    /// Whether the redemption is allowed.
    pub fn is_allowed(&self) -> bool {
        self.verdict.is_ok()
    }
}
