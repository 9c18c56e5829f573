//! Validation: the file as written ([`super::file`]) → the model ([`Config`]),
//! or every error found.
//!
//! One module per section of the file, each a method of [`Validator`] that checks
//! its keys and returns its part of the model, or `None` when something in it was
//! wrong. Like `rules/src/validate.rs`, validation keeps going after an error and
//! collects them all, so one `handoff config check` shows every problem.
//!
//! Sections are checked in a fixed order (server, upstream, store, assertion,
//! names, paths, rules, admin, the listener overlap, session, clients,
//! back-channel logout, mint rate limits), and keys within a section in the order
//! the old stop-at-first check took them, so the first error is the one it
//! reported. A check that only makes sense on a valid value (a range on a parsed
//! duration, the overlap of parsed addresses) is skipped when that value was
//! already wrong: one mistake gives one error, not a cascade.

mod admin;
mod assertion;
mod clients;
mod listeners;
mod names;
mod rate_limit;
mod rules;
mod server;
mod session;
mod store;
mod upstream;

pub use server::parse_net;

use super::file::FileConfig;
use super::{parse_duration, Config, ConfigError, ConfigErrors};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Validates a parsed file. `file` names it in errors; `base` is the folder
/// relative paths are resolved against.
pub(super) fn validate(raw: FileConfig, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        file,
        base,
        errors: Vec::new(),
    };
    let config = v.config(raw);
    match (ConfigErrors::new(v.errors), config) {
        (None, Some(config)) => Ok(config),
        (Some(errors), _) => Err(errors),
        // A section said `None` without saying why: a bug here, never the file's.
        (None, None) => Err(ConfigError {
            file: file.into(),
            key: "(internal)".into(),
            reason: "validation rejected the file without an error".into(),
        }
        .into()),
    }
}

/// Checks one file, collecting every error it finds.
pub(super) struct Validator<'a> {
    file: &'a str,
    base: &'a Path,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    /// Every section, in order; `None` when any of them was wrong.
    fn config(&mut self, raw: FileConfig) -> Option<Config> {
        let server = self.server(raw.server);
        let public_host = server.as_ref().map_or("", |s| s.public_host.as_str());
        let upstream = self.upstream(raw.upstream);
        let store = self.store(raw.store);
        let assertion = self.assertion(raw.assertion, public_host);
        let names = self.names(raw.names);
        let paths = self.paths(raw.paths);
        let rules = self.rules(raw.rules);
        let admin = self.admin(raw.admin);
        if let (Some(s), Some(a)) = (&server, &admin) {
            self.distinct_listeners(&s.listeners, a.listen.as_deref());
        }
        let session = self.session(raw.session);
        let client_secrets = self.clients(&raw.clients);
        let backchannel_logout = self.backchannel_logout(raw.backchannel_logout);
        let mint_rate_limit = self.mint_rate_limit(raw.mint.rate_limit);
        let (server, rules) = (server?, rules?);
        Some(Config {
            listeners: server.listeners,
            threads: server.threads,
            public_host: server.public_host,
            trusted_proxies: server.trusted_proxies,
            forwarded_header: server.forwarded_header,
            max_body_bytes: server.max_body_bytes,
            upstream: upstream?,
            store: store?,
            assertion: assertion?,
            names: names?,
            paths: paths?,
            rules_file: rules.file,
            asn_table: rules.asn_table,
            rules_watch: rules.watch,
            admin: admin?,
            session: session?,
            client_secrets: client_secrets?,
            backchannel_logout: backchannel_logout?,
            mint_rate_limit: mint_rate_limit?,
        })
    }

    /// Records an error at `key`.
    fn report(&mut self, key: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.into(),
            key: key.into(),
            reason: reason.into(),
        });
    }

    /// `Some(v)` when `ok`, else records the error and gives `None`.
    fn check<T>(&mut self, ok: bool, v: T, key: &str, reason: impl Into<String>) -> Option<T> {
        if !ok {
            self.report(key, reason);
            return None;
        }
        Some(v)
    }

    /// `v` when it lies in `range`.
    fn in_range<T: PartialOrd>(
        &mut self,
        key: &str,
        v: T,
        range: RangeInclusive<T>,
        reason: &str,
    ) -> Option<T> {
        let ok = range.contains(&v);
        self.check(ok, v, key, reason)
    }

    /// Every item checked (all errors recorded); `Some` when all were good.
    fn each<T, U>(
        &mut self,
        items: &[T],
        mut f: impl FnMut(&mut Self, usize, &T) -> Option<U>,
    ) -> Option<Vec<U>> {
        let checked: Vec<Option<U>> = items
            .iter()
            .enumerate()
            .map(|(i, t)| f(self, i, t))
            .collect();
        checked.into_iter().collect()
    }

    /// A path from the file, resolved against the file's folder.
    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A file that must exist and be readable now (certificates, CA bundles).
    fn readable_file(&mut self, key: &str, p: &Path) -> Option<PathBuf> {
        let p = self.path(p);
        let ok = p.is_file() && std::fs::File::open(&p).is_ok();
        let reason = format!("{} is not a readable file", p.display());
        self.check(ok, p, key, reason)
    }

    fn duration(&mut self, key: &str, v: Option<&str>, default: Duration) -> Option<Duration> {
        match v {
            None => Some(default),
            Some(s) => {
                let d = parse_duration(s);
                let reason = format!(
                    "{s:?} is not a duration (expected e.g. \"50ms\", \"30s\", \"5m\", \"1h\")"
                );
                self.check(d.is_some(), d, key, reason).flatten()
            }
        }
    }

    fn socket_addr(&mut self, key: &str, s: &str) -> Option<String> {
        let a = s
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.to_string());
        let reason = format!("{s:?} is not ip:port (e.g. \"0.0.0.0:8080\", \"[::]:8443\")");
        self.check(a.is_some(), a, key, reason).flatten()
    }

    fn url_path(&mut self, key: &str, s: &str) -> Option<String> {
        let ok = s.starts_with('/') && !s.contains(['?', '#', ' ']);
        let reason = format!("{s:?} is not an absolute URL path (starting with '/', no query)");
        self.check(ok, s.to_string(), key, reason)
    }

    fn cookie_name(&mut self, key: &str, s: &str) -> Option<String> {
        let reason = format!("{s:?} is not a valid cookie or header name");
        self.check(is_token(s), s.to_string(), key, reason)
    }
}

/// True for an RFC 7230 token (header names, cookie names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Helpers for the sections' tests.
#[cfg(test)]
pub(super) mod testing {
    use super::super::{Config, ConfigError, ConfigErrors};
    use std::path::Path;

    /// The smallest valid file.
    pub const MIN: &str =
        "[server]\npublic_host = \"login.example.com\"\n[upstream]\naddress = \"127.0.0.1:3000\"\n";

    /// Validates `t` as `handoff.toml` in `/etc/handoff`.
    pub fn load(t: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml(t, "handoff.toml", Path::new("/etc/handoff"))
    }

    /// The first error of a file that must be refused.
    pub fn err(t: &str) -> ConfigError {
        load(t).expect_err(t).first().clone()
    }

    /// Asserts that each `(tail, key, reason)`, written under `[section]`, is refused
    /// first with `key` and a reason that starts with `reason`.
    pub(crate) fn assert_refused(section: &str, cases: &[(&str, &str, &str)]) {
        for (tail, key, reason) in cases {
            let e = err(&format!("{MIN}[{section}]\n{tail}\n"));
            assert_eq!(e.key, *key, "{tail}: {e}");
            assert!(e.reason.starts_with(reason), "{tail}: {e}");
        }
    }

    /// The keys of every error of `t`, in order (empty when it is valid).
    pub fn keys(t: &str) -> Vec<String> {
        load(t)
            .err()
            .map_or(vec![], |e| e.iter().map(|e| e.key.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;

    #[test]
    fn every_broken_section_is_reported_in_order() {
        let t = "[server]\npublic_host = \"x\"\nthreads = 0\n[upstream]\naddress = \"a\"\n\
                 [store]\nkind = \"etcd\"\n[session]\nsame_site = \"sometimes\"\ncache_ttl = \"5s\"\n\
                 [mint.rate_limit]\nipv4_prefix = 1\n";
        assert_eq!(
            keys(t),
            [
                "server.threads",
                "upstream.address",
                "store.kind",
                "session.same_site",
                "session.cache_ttl",
                "mint.rate_limit.ipv4_prefix"
            ]
        );
        let e = load(t).unwrap_err();
        assert_eq!(e.to_string().lines().count(), 6, "{e}");
        assert!(e.iter().all(|e| e.file == "handoff.toml"));
    }

    #[test]
    fn an_empty_file_misses_the_public_host_and_the_upstream() {
        assert_eq!(keys(""), ["server.public_host", "upstream"]);
    }

    #[test]
    fn a_wrong_value_is_one_error_not_a_cascade() {
        // A bad duration is not also out of range; a bad listener is not also
        // "no listener"; a missing token file does not also make the admin
        // listener unprotected.
        assert_eq!(
            keys(&format!("{MIN}[session]\ncache_ttl = \"soon\"\n")),
            ["session.cache_ttl"]
        );
        assert_eq!(
            keys("[server]\npublic_host = \"x\"\nlisten = [\"nope\"]\n[upstream]\naddress = \"a:1\"\n"),
            ["server.listen[0]"]
        );
        assert_eq!(
            keys(&format!(
                "{MIN}[admin]\nlisten = \"0.0.0.0:9090\"\ntoken_file = \"/nonexistent/t\"\n"
            )),
            ["admin.token_file"]
        );
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
}
