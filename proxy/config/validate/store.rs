//! `[store]`: the embedded store, Redis, or Redis through Sentinel.

use super::super::file::FileStore;
use super::super::StoreConfig;
use super::Validator;
use crate::secret::Secret;
use crate::store::memory::DEFAULT_MAX_ENTRIES;
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn store(&mut self, st: FileStore) -> Option<StoreConfig> {
        let memory_kind = match st.kind.as_deref() {
            None => st.url.is_none(),
            Some(k) => k == "memory",
        };
        let entries_ok = if st.max_entries.is_some() && !memory_kind {
            self.report(
                "store.max_entries",
                "only for the embedded store (kind = \"memory\"); cap Redis with its maxmemory",
            );
            false
        } else {
            self.check(
                st.max_entries != Some(0),
                true,
                "store.max_entries",
                "must be more than 0",
            )
            .is_some()
        };
        let max_entries = st.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
        let store = match st.kind.clone().as_deref() {
            None if st.url.is_none() => Some(StoreConfig::Memory { max_entries }),
            Some("memory") => {
                let reason = "given with kind = \"memory\"; remove it or set kind = \"redis\"";
                self.check(
                    st.url.is_none(),
                    StoreConfig::Memory { max_entries },
                    "store.url",
                    reason,
                )
            }
            Some("redis-sentinel") => self.sentinel(st),
            None | Some("redis") => self.redis(st),
            Some(other) => {
                let reason =
                    format!("{other:?}: expected \"memory\", \"redis\" or \"redis-sentinel\"");
                self.report("store.kind", reason);
                None
            }
        };
        store.filter(|_| entries_ok)
    }

    fn sentinel(&mut self, st: FileStore) -> Option<StoreConfig> {
        let sentinels = st.sentinels.unwrap_or_default();
        let given = self.check(
            !sentinels.is_empty(),
            (),
            "store.sentinels",
            "missing: kind = \"redis-sentinel\" needs sentinels = [\"redis://host:26379\", ...]",
        );
        let urls = self.each(&sentinels, |v, i, u| {
            v.check(
                is_redis_url(u),
                Secret::new(u.as_str()),
                &format!("store.sentinels[{i}]"),
                "expected a redis:// or rediss:// URL",
            )
        });
        let master = st.master.filter(|m| !m.is_empty());
        let master = self
            .check(
                master.is_some(),
                master,
                "store.master",
                "missing: the name Sentinel monitors the master under (e.g. \"mymaster\")",
            )
            .flatten();
        let (timeout, key_prefix) = self.redis_common(st.timeout.as_deref(), st.key_prefix);
        given?;
        Some(StoreConfig::RedisSentinel {
            sentinels: urls?,
            master: master?,
            timeout: timeout?,
            key_prefix: key_prefix?,
        })
    }

    fn redis(&mut self, st: FileStore) -> Option<StoreConfig> {
        let url = match st.url {
            None => {
                self.report(
                    "store.url",
                    "missing: kind = \"redis\" needs url = \"redis://host:port\"",
                );
                None
            }
            Some(u) => self.check(
                is_redis_url(&u),
                Secret::new(u),
                "store.url",
                "expected a redis:// or rediss:// URL",
            ),
        };
        let (timeout, key_prefix) = self.redis_common(st.timeout.as_deref(), st.key_prefix);
        Some(StoreConfig::Redis {
            url: url?,
            timeout: timeout?,
            key_prefix: key_prefix?,
        })
    }

    /// `store.timeout` and `store.key_prefix`, shared by both Redis kinds.
    fn redis_common(
        &mut self,
        timeout: Option<&str>,
        key_prefix: Option<String>,
    ) -> (Option<Duration>, Option<String>) {
        let timeout = self
            .duration("store.timeout", timeout, Duration::from_millis(50))
            .and_then(|t| self.check(!t.is_zero(), t, "store.timeout", "must be more than 0"));
        let key_prefix = key_prefix.unwrap_or_else(|| "ho".into());
        let ok = !key_prefix.is_empty() && !key_prefix.contains(['{', '}', ' ']);
        let key_prefix = self.check(
            ok,
            key_prefix,
            "store.key_prefix",
            "must be non-empty, without braces or spaces",
        );
        (timeout, key_prefix)
    }
}

fn is_redis_url(u: &str) -> bool {
    u.starts_with("redis://") || u.starts_with("rediss://")
}

#[cfg(test)]
mod tests {
    use super::super::super::StoreConfig;
    use super::super::testing::*;

    #[test]
    fn memory_store_cap() {
        let c = load(&format!("{MIN}[store]\nmax_entries = 1000\n")).unwrap();
        assert!(matches!(c.store, StoreConfig::Memory { max_entries: 1000 }));
        assert_refused(
            "store",
            &[
                ("max_entries = 0", "store.max_entries", ""),
                (
                    "url = \"redis://x:1\"\nmax_entries = 10",
                    "store.max_entries",
                    "",
                ),
            ],
        );
    }

    #[test]
    fn redis_stores() {
        assert_refused(
            "store",
            &[
                ("kind = \"redis\"", "store.url", ""),
                (
                    "url = \"redis://x:1\"\ntimeout = \"fast\"",
                    "store.timeout",
                    "\"fast\" is not a duration",
                ),
            ],
        );
        assert_eq!(
            keys(&format!(
                "{MIN}[store]\nurl = \"http://x:1\"\ntimeout = \"0s\"\nkey_prefix = \"{{a}}\"\n"
            )),
            ["store.url", "store.timeout", "store.key_prefix"]
        );
        assert_eq!(
            err(&format!(
                "{MIN}[store]\nkind = \"memory\"\nurl = \"redis://x:1\"\n"
            ))
            .key,
            "store.url"
        );
        assert_eq!(
            err(&format!("{MIN}[store]\nkind = \"etcd\"\n")).key,
            "store.kind"
        );
    }

    #[test]
    fn sentinel_stores() {
        let c = load(&format!("{MIN}[store]\nkind = \"redis-sentinel\"\nsentinels = [\"redis://10.0.0.1:26379\"]\nmaster = \"m\"\n")).unwrap();
        assert!(matches!(c.store, StoreConfig::RedisSentinel { ref master, .. } if master == "m"));
        let e = err(&format!(
            "{MIN}[store]\nkind = \"redis-sentinel\"\nmaster = \"m\"\n"
        ));
        assert_eq!(e.key, "store.sentinels");
        let e = err(&format!("{MIN}[store]\nkind = \"redis-sentinel\"\nsentinels = [\"10.0.0.1:26379\"]\nmaster = \"m\"\n"));
        assert_eq!(e.key, "store.sentinels[0]");
        let e = err(&format!(
            "{MIN}[store]\nkind = \"redis-sentinel\"\nsentinels = [\"redis://a:1\"]\n"
        ));
        assert_eq!(e.key, "store.master");
    }
}
