//! `[session]`: the IdP's session cookies, login transactions (SPEC §2.3) and
//! how session state is cached (SPEC §5, §6).

use super::super::file::FileSession;
use super::super::{SameSite, SessionConfig};
use super::Validator;
use std::time::Duration;

const DAY: u64 = 24 * 3600;

impl Validator<'_> {
    pub(super) fn session(&mut self, se: FileSession) -> Option<SessionConfig> {
        let names = se.cookie_names.unwrap_or_else(|| vec!["_session".into()]);
        let cookie_names = self.each(&names, |v, i, c| {
            v.cookie_name(&format!("session.cookie_names[{i}]"), c)
        });
        let (same_site, domain) = self.cookie_attributes(se.same_site.as_deref(), se.domain);
        let transaction_cookie = self.transaction_cookie(se.transaction_cookie.as_deref());
        let transaction_ttl = self.bounded(
            "session.transaction_ttl",
            se.transaction_ttl.as_deref(),
            120,
            5..=120,
            "must be between 5s and 120s (SPEC §2.3)",
        );
        let transaction_max_hops = self.in_range(
            "session.transaction_max_hops",
            se.transaction_max_hops.unwrap_or(20),
            1..=100,
            "must be between 1 and 100",
        );
        // How late a revocation is seen, how long an outage is ridden out, how long
        // state is kept: each a duration within its bounds, in this order.
        let [cache_ttl, outage_grace, retention] = [
            (
                "session.cache_ttl",
                se.cache_ttl.as_deref(),
                1,
                0..=1,
                "must be at most 1s: it bounds how late a revocation is seen (SPEC §6)",
            ),
            (
                "session.outage_grace",
                se.outage_grace.as_deref(),
                30,
                0..=600,
                "must be at most 10m",
            ),
            (
                "session.retention",
                se.retention.as_deref(),
                14 * DAY,
                3600..=365 * DAY,
                "must be between 1h and 365d, and at least the IdP's own session lifetime",
            ),
        ]
        .map(|(key, v, default, secs, reason)| self.bounded(key, v, default, secs, reason));
        let max_cookie_occurrences = self.in_range(
            "session.max_cookie_occurrences",
            se.max_cookie_occurrences.unwrap_or(4),
            1..=64,
            "must be between 1 and 64",
        );
        let max_cookie_bytes = self.in_range(
            "session.max_cookie_bytes",
            se.max_cookie_bytes.unwrap_or(16 * 1024),
            1024..=256 * 1024,
            "must be between 1024 and 262144",
        );
        Some(SessionConfig {
            cookie_names: cookie_names?,
            same_site: same_site?,
            domain: domain?,
            secure_all_cookies: se.secure_all_cookies.unwrap_or(true),
            transaction_cookie: transaction_cookie?,
            transaction_ttl: transaction_ttl?,
            transaction_max_hops: transaction_max_hops?,
            cache_ttl: cache_ttl?,
            retention: retention?,
            outage_grace: outage_grace?,
            max_cookie_occurrences: max_cookie_occurrences?,
            max_cookie_bytes: max_cookie_bytes?,
        })
    }

    /// `session.transaction_cookie`: a cookie name, and a `__Host-` one.
    fn transaction_cookie(&mut self, v: Option<&str>) -> Option<String> {
        self.cookie_name(
            "session.transaction_cookie",
            v.unwrap_or("__Host-handoff_tx"),
        )
        .and_then(|c| {
            self.check(
                c.starts_with("__Host-"),
                c,
                "session.transaction_cookie",
                "must start with __Host-",
            )
        })
    }

    /// `session.same_site` and `session.domain`: the attributes handoff gives the
    /// IdP's session cookies.
    fn cookie_attributes(
        &mut self,
        same_site: Option<&str>,
        domain: Option<String>,
    ) -> (Option<SameSite>, Option<Option<String>>) {
        let same_site = match same_site.unwrap_or("lax").to_ascii_lowercase().as_str() {
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            "none" => Some(SameSite::None),
            other => {
                self.report(
                    "session.same_site",
                    format!("{other:?}: expected \"lax\", \"strict\" or \"none\""),
                );
                None
            }
        };
        let domain = match domain {
            None => Some(None),
            Some(d) => {
                let d = d.trim_start_matches('.').to_ascii_lowercase();
                let ok = !d.is_empty() && !d.contains(['/', ' ', ':', ';']) && d.contains('.');
                let reason = format!("{d:?} is not a registrable domain (e.g. \"example.com\")");
                self.check(ok, Some(d), "session.domain", reason)
            }
        };
        (same_site, domain)
    }

    /// A duration (default `default` seconds) whose whole seconds lie in `secs`.
    fn bounded(
        &mut self,
        key: &str,
        v: Option<&str>,
        default: u64,
        secs: std::ops::RangeInclusive<u64>,
        reason: &str,
    ) -> Option<Duration> {
        let d = self.duration(key, v, Duration::from_secs(default))?;
        let (lo, hi) = (
            Duration::from_secs(*secs.start()),
            Duration::from_secs(*secs.end()),
        );
        self.check(d >= lo && d <= hi, d, key, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::SameSite;
    use super::super::testing::*;

    #[test]
    fn session_defaults() {
        let s = load(MIN).unwrap().session;
        assert_eq!(s.cookie_names, ["_session"]);
        assert_eq!(s.same_site, SameSite::Lax);
        assert_eq!(
            (s.transaction_cookie.as_str(), s.transaction_ttl.as_secs()),
            ("__Host-handoff_tx", 120)
        );
        assert_eq!(
            (s.max_cookie_occurrences, s.max_cookie_bytes),
            (4, 16 * 1024)
        );
        let s = load(&format!(
            "{MIN}[session]\ndomain = \".Example.COM\"\nsame_site = \"None\"\n"
        ))
        .unwrap()
        .session;
        assert_eq!(
            (s.domain.as_deref(), s.same_site),
            (Some("example.com"), SameSite::None)
        );
    }

    #[test]
    fn session_keys_are_checked_and_named() {
        assert_refused(
            "session",
            &[
                (
                    "cookie_names = [\"a b\"]",
                    "session.cookie_names[0]",
                    "\"a b\" is not a valid",
                ),
                (
                    "same_site = \"loose\"",
                    "session.same_site",
                    "\"loose\": expected",
                ),
                (
                    "domain = \"localhost\"",
                    "session.domain",
                    "\"localhost\" is not a registrable domain",
                ),
                (
                    "transaction_cookie = \"tx\"",
                    "session.transaction_cookie",
                    "must start with __Host-",
                ),
                (
                    "transaction_ttl = \"4s\"",
                    "session.transaction_ttl",
                    "must be between 5s and 120s",
                ),
                (
                    "transaction_ttl = \"121s\"",
                    "session.transaction_ttl",
                    "must be between 5s and 120s",
                ),
                (
                    "transaction_max_hops = 0",
                    "session.transaction_max_hops",
                    "must be between 1 and 100",
                ),
                (
                    "cache_ttl = \"2s\"",
                    "session.cache_ttl",
                    "must be at most 1s",
                ),
                (
                    "outage_grace = \"11m\"",
                    "session.outage_grace",
                    "must be at most 10m",
                ),
                (
                    "retention = \"59m\"",
                    "session.retention",
                    "must be between 1h and 365d",
                ),
                (
                    "retention = \"366d\"",
                    "session.retention",
                    "must be between 1h and 365d",
                ),
                (
                    "max_cookie_occurrences = 65",
                    "session.max_cookie_occurrences",
                    "must be between 1 and 64",
                ),
                (
                    "max_cookie_bytes = 1023",
                    "session.max_cookie_bytes",
                    "must be between 1024 and 262144",
                ),
            ],
        );
    }
}
