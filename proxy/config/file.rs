//! The config file as written: serde structs, unknown keys rejected.
//!
//! These mirror the TOML tables one to one and hold strings and options as the
//! operator wrote them; validation turns them into the model in [`super`].
//! Nothing outside `config` sees them.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub(super) server: FileServer,
    pub(super) upstream: Option<FileUpstream>,
    #[serde(default)]
    pub(super) store: FileStore,
    #[serde(default)]
    pub(super) assertion: FileAssertion,
    #[serde(default)]
    pub(super) names: FileNames,
    #[serde(default)]
    pub(super) paths: FilePaths,
    #[serde(default)]
    pub(super) rules: FileRules,
    #[serde(default)]
    pub(super) admin: FileAdmin,
    #[serde(default)]
    pub(super) session: FileSession,
    #[serde(default)]
    pub(super) clients: std::collections::BTreeMap<String, FileClient>,
    #[serde(default)]
    pub(super) backchannel_logout: FileBackchannel,
    #[serde(default)]
    pub(super) mint: FileMint,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMint {
    #[serde(default)]
    pub(super) rate_limit: FileRateLimit,
}

/// `[mint.rate_limit]`; see [`super::MintRateLimit`] for the defaults and why.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRateLimit {
    #[serde(default)]
    pub(super) lineage: FileRate,
    #[serde(default)]
    pub(super) client: FileRate,
    #[serde(default)]
    pub(super) network: FileRate,
    pub(super) ipv4_prefix: Option<u8>,
    pub(super) ipv6_prefix: Option<u8>,
    pub(super) max_tracked: Option<usize>,
}

/// `{ per_minute = N, burst = M }`; `per_minute = 0` turns the scope off.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRate {
    pub(super) per_minute: Option<u32>,
    pub(super) burst: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileClient {
    pub(super) secret_file: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBackchannel {
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSession {
    pub(super) cookie_names: Option<Vec<String>>,
    pub(super) same_site: Option<String>,
    pub(super) domain: Option<String>,
    pub(super) secure_all_cookies: Option<bool>,
    pub(super) transaction_cookie: Option<String>,
    pub(super) transaction_ttl: Option<String>,
    pub(super) transaction_max_hops: Option<u32>,
    pub(super) cache_ttl: Option<String>,
    pub(super) outage_grace: Option<String>,
    pub(super) retention: Option<String>,
    pub(super) max_cookie_occurrences: Option<usize>,
    pub(super) max_cookie_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    pub(super) listen: Option<Vec<String>>,
    #[serde(default)]
    pub(super) tls: Vec<FileTls>,
    pub(super) threads: Option<usize>,
    pub(super) public_host: Option<String>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
    pub(super) forwarded_header: Option<String>,
    pub(super) max_body_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub(super) listen: String,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUpstream {
    pub(super) address: String,
    #[serde(default)]
    pub(super) tls: bool,
    pub(super) sni: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) host_header: Option<String>,
    pub(super) forwarded_headers: Option<bool>,
    pub(super) timeout: Option<String>,
    pub(super) discovery_path: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) jwks_cache_ttl: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    pub(super) kind: Option<String>,
    pub(super) url: Option<String>,
    pub(super) sentinels: Option<Vec<String>>,
    pub(super) master: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) key_prefix: Option<String>,
    pub(super) max_entries: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAssertion {
    pub(super) header: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) ttl: Option<String>,
    pub(super) alg: Option<String>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) secret_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileNames {
    pub(super) cookie: Option<String>,
    pub(super) cookie_aliases: Option<Vec<String>>,
    pub(super) query_param: Option<String>,
    pub(super) redirect_cookie: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePaths {
    pub(super) token: Option<String>,
    pub(super) revocation: Option<String>,
    pub(super) redemption: Option<Vec<String>>,
    pub(super) jwks: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRules {
    pub(super) file: Option<PathBuf>,
    pub(super) asn_table: Option<PathBuf>,
    pub(super) watch_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) disabled: bool,
    pub(super) token_file: Option<PathBuf>,
}
