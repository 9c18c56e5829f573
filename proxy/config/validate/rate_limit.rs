//! `[mint.rate_limit]`: per-lineage, per-client and per-network limits on minting
//! (see [`MintRateLimit`] for the defaults and why).

use super::super::file::{FileRate, FileRateLimit};
use super::super::{MintRateLimit, Rate};
use super::Validator;

impl Validator<'_> {
    pub(super) fn mint_rate_limit(&mut self, r: FileRateLimit) -> Option<MintRateLimit> {
        let d = MintRateLimit::default();
        let ipv4_prefix = self.in_range(
            "mint.rate_limit.ipv4_prefix",
            r.ipv4_prefix.unwrap_or(d.ipv4_prefix),
            8..=32,
            "must be between 8 and 32 (24: one /24 is one network)",
        );
        let ipv6_prefix = self.in_range(
            "mint.rate_limit.ipv6_prefix",
            r.ipv6_prefix.unwrap_or(d.ipv6_prefix),
            32..=128,
            "must be between 32 and 128 (64: one /64 is one customer's link)",
        );
        let max_tracked = self.in_range(
            "mint.rate_limit.max_tracked",
            r.max_tracked.unwrap_or(d.max_tracked),
            1000..=10_000_000,
            "must be between 1000 and 10000000",
        );
        let lineage = self.rate("mint.rate_limit.lineage", r.lineage, MintRateLimit::LINEAGE);
        let client = self.rate("mint.rate_limit.client", r.client, MintRateLimit::CLIENT);
        let network = self.rate("mint.rate_limit.network", r.network, MintRateLimit::NETWORK);
        Some(MintRateLimit {
            lineage: lineage?,
            client: client?,
            network: network?,
            ipv4_prefix: ipv4_prefix?,
            ipv6_prefix: ipv6_prefix?,
            max_tracked: max_tracked?,
        })
    }

    /// One scope: omitted fields take `default`'s values; `Some(None)` is "off".
    fn rate(&mut self, key: &str, r: FileRate, default: Rate) -> Option<Option<Rate>> {
        let per_minute = r.per_minute.unwrap_or(default.per_minute);
        if per_minute == 0 {
            let reason = "given with per_minute = 0 (the limit is off); remove one of them";
            return self.check(
                r.burst.is_none_or(|b| b == 0),
                None,
                &format!("{key}.burst"),
                reason,
            );
        }
        let per_minute = self.in_range(
            &format!("{key}.per_minute"),
            per_minute,
            1..=1_000_000,
            "must be between 1 and 1000000 (or 0 to turn this limit off)",
        );
        let burst = self.in_range(
            &format!("{key}.burst"),
            r.burst.unwrap_or(default.burst),
            1..=100_000,
            "must be between 1 and 100000",
        );
        Some(Some(Rate {
            per_minute: per_minute?,
            burst: burst?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::{MintRateLimit, Rate};
    use super::super::testing::*;

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
            let e = err(&format!("{MIN}[mint.rate_limit]\n{tail}\n"));
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
            let e = err(&format!("{MIN}[mint.rate_limit]\n{tail}\n"));
            assert!(e.key.contains(':'), "{tail}: {e}");
        }
        let e = err(&format!("{MIN}[mint]\nrate = 1\n"));
        assert!(e.reason.contains("unknown field `rate`"), "{e}");
    }
}
