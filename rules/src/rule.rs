//! Ordered rules (SPEC §4.3): matchers and decisions, precompiled at validation
//! so that matching is a walk over slices — no allocation, no I/O.

use std::time::Duration;

use crate::glob::Glob;
use crate::model::{AuthMethods, Binding, RedeemContext};
use crate::net::{same_prefix, Nets};

/// A UTC time-of-day window `[start, end)` in minutes; wraps midnight when
/// `start > end` (`22:00-06:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub start: u16,
    pub end: u16,
}

impl TimeRange {
    /// Parses `HH:MM-HH:MM` (UTC, 24h clock; `24:00` allowed as the end).
    pub(crate) fn parse(s: &str) -> Result<TimeRange, String> {
        let bad = || {
            format!("invalid time_of_day \"{s}\": expected \"HH:MM-HH:MM\" in UTC, like \"22:00-06:00\"")
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let hm = |t: &str, end: bool| -> Option<u16> {
            let (h, m) = t.split_once(':')?;
            if h.len() != 2
                || m.len() != 2
                || !(h.bytes().chain(m.bytes()).all(|c| c.is_ascii_digit()))
            {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            match (h, m) {
                (24, 0) if end => Some(1440),
                (0..=23, 0..=59) => Some(h * 60 + m),
                _ => None,
            }
        };
        let (start, end) = (hm(a, false).ok_or_else(bad)?, hm(b, true).ok_or_else(bad)?);
        if start == end || (start == 0 && end == 1440) {
            return Err(format!(
                "time_of_day \"{s}\" is empty or the whole day; remove the key to match at any time"
            ));
        }
        Ok(TimeRange { start, end })
    }

    pub(crate) fn contains(&self, minute: u16) -> bool {
        let m = minute % 1440;
        if self.start < self.end {
            self.start <= m && m < self.end
        } else {
            m >= self.start || m < self.end
        }
    }
}

/// One `[[rule]]`: `None` matchers match anything; `None` decisions decide nothing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub name: Option<String>,
    /// 1-based line of the `[[rule]]` header, for messages.
    pub line: usize,
    // matchers
    pub web_client: Option<Vec<Glob>>,
    pub native_client: Option<Vec<Glob>>,
    pub redeem_network: Option<Nets>,
    pub mint_network: Option<Nets>,
    pub redeem_asn: Option<Vec<u32>>,
    pub mint_asn: Option<Vec<u32>>,
    pub networks_differ: Option<bool>,
    pub method: Option<AuthMethods>,
    pub time_of_day: Option<TimeRange>,
    // decisions
    pub deny: Option<bool>,
    pub binding: Option<Binding>,
    pub session_absolute: Option<Duration>,
    pub session_idle: Option<Duration>,
    pub allow_refresh_token: Option<bool>,
    pub enforce_online_refresh_tokens: Option<bool>,
}

fn asn_in(list: &[u32], asn: Option<u32>) -> bool {
    matches!(asn, Some(a) if a != 0 && list.contains(&a))
}

impl Rule {
    /// Whether every matcher accepts `ctx`. `prefix` is the `[binding]` (v4, v6)
    /// prefix used by `networks_differ`. The plain definition: evaluation
    /// uses the `RuleIndex` for the method and network matchers and then
    /// [`Rule::matches_rest`]; tests check the two agree.
    pub(crate) fn matches(&self, ctx: &RedeemContext<'_>, prefix: (u8, u8)) -> bool {
        self.method.is_none_or(|m| m.contains(ctx.method))
            && self
                .redeem_network
                .as_ref()
                .is_none_or(|n| n.contains(ctx.redeem_ip))
            && self
                .mint_network
                .as_ref()
                .is_none_or(|n| n.contains(ctx.mint_ip))
            && self.matches_rest(ctx, prefix)
    }

    /// Whether the matchers other than `method`, `redeem_network` and
    /// `mint_network` (which the `RuleIndex` has checked) accept `ctx`.
    #[inline]
    pub(crate) fn matches_rest(&self, ctx: &RedeemContext<'_>, prefix: (u8, u8)) -> bool {
        self.web_client
            .as_ref()
            .is_none_or(|g| g.iter().any(|g| g.matches(ctx.web_client)))
            && self
                .native_client
                .as_ref()
                .is_none_or(|g| g.iter().any(|g| g.matches(ctx.native_client)))
            && self
                .redeem_asn
                .as_ref()
                .is_none_or(|l| asn_in(l, ctx.redeem_asn))
            && self
                .mint_asn
                .as_ref()
                .is_none_or(|l| asn_in(l, ctx.mint_asn))
            && self.networks_differ.is_none_or(|want| {
                want != same_prefix(ctx.mint_ip, ctx.redeem_ip, prefix.0, prefix.1)
            })
            && self
                .time_of_day
                .is_none_or(|t| t.contains(ctx.minute_of_day_utc))
    }

    /// Whether it sets anything other than lifetimes.
    pub(crate) fn decides_beyond_lifetimes(&self) -> bool {
        self.deny.is_some()
            || self.binding.is_some()
            || self.allow_refresh_token.is_some()
            || self.enforce_online_refresh_tokens.is_some()
    }

    /// Whether it decides anything at all.
    pub(crate) fn decides_anything(&self) -> bool {
        self.decides_beyond_lifetimes()
            || self.session_absolute.is_some()
            || self.session_idle.is_some()
    }

    /// A label for messages: `rule[2] ("office")`.
    pub(crate) fn label(&self, index: usize) -> String {
        match &self.name {
            Some(n) => format!("rule[{index}] (\"{n}\")"),
            None => format!("rule[{index}]"),
        }
    }

    /// Whether every context `other` matches is matched by `self` too.
    /// Conservative: may say `false` for a real superset, never `true` wrongly.
    pub(crate) fn matchers_cover(&self, other: &Rule) -> bool {
        fn opt<T: ?Sized>(a: Option<&T>, b: Option<&T>, f: impl Fn(&T, &T) -> bool) -> bool {
            match (a, b) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => f(a, b),
            }
        }
        let globs = |a: &Vec<Glob>, b: &Vec<Glob>| b.iter().all(|g| a.iter().any(|h| h.covers(g)));
        let nets = |a: &Nets, b: &Nets| b.iter().all(|n| a.iter().any(|m| m.contains(n)));
        let asns = |a: &Vec<u32>, b: &Vec<u32>| b.iter().all(|x| a.contains(x));
        opt(self.web_client.as_ref(), other.web_client.as_ref(), globs)
            && opt(
                self.native_client.as_ref(),
                other.native_client.as_ref(),
                globs,
            )
            && opt(
                self.redeem_network.as_ref(),
                other.redeem_network.as_ref(),
                nets,
            )
            && opt(
                self.mint_network.as_ref(),
                other.mint_network.as_ref(),
                nets,
            )
            && opt(self.redeem_asn.as_ref(), other.redeem_asn.as_ref(), asns)
            && opt(self.mint_asn.as_ref(), other.mint_asn.as_ref(), asns)
            && opt(
                self.networks_differ.as_ref(),
                other.networks_differ.as_ref(),
                |a, b| a == b,
            )
            && opt(self.method.as_ref(), other.method.as_ref(), |a, b| {
                a.is_superset(*b)
            })
            && opt(
                self.time_of_day.as_ref(),
                other.time_of_day.as_ref(),
                |a, b| (0..1440).all(|m| !b.contains(m) || a.contains(m)),
            )
    }

    /// Whether `self` matching first leaves nothing for `later` to decide, given
    /// that `self` matches everything `later` does.
    pub(crate) fn overrides(&self, later: &Rule) -> bool {
        if self.deny == Some(true) {
            // A denied redemption gets no session: every decision of `later` is moot.
            return true;
        }
        // Lifetimes always combine, so a rule with a lifetime is never dead.
        later.session_absolute.is_none()
            && later.session_idle.is_none()
            && (later.deny.is_none() || self.deny.is_some())
            && (later.binding.is_none() || self.binding.is_some())
            && (later.allow_refresh_token.is_none() || self.allow_refresh_token.is_some())
            && (later.enforce_online_refresh_tokens.is_none()
                || self.enforce_online_refresh_tokens.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ranges() {
        let t = TimeRange::parse("09:00-17:30").unwrap();
        assert!(!t.contains(9 * 60 - 1));
        assert!(t.contains(9 * 60));
        assert!(t.contains(17 * 60 + 29));
        assert!(!t.contains(17 * 60 + 30));
        let w = TimeRange::parse("22:00-06:00").unwrap();
        assert!(w.contains(23 * 60));
        assert!(w.contains(0));
        assert!(w.contains(5 * 60 + 59));
        assert!(!w.contains(6 * 60));
        assert!(!w.contains(12 * 60));
        assert!(w.contains(1440 + 30), "taken modulo 1440");
        let e = TimeRange::parse("18:00-24:00").unwrap();
        assert!(e.contains(1439));
        for bad in [
            "9:00-17:00",
            "09:00",
            "25:00-01:00",
            "09:60-10:00",
            "24:00-01:00",
            "10:00-10:00",
            "00:00-24:00",
            "ab:cd-ef:gh",
        ] {
            assert!(TimeRange::parse(bad).is_err(), "{bad}");
        }
    }
}
