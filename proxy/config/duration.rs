//! Durations in the server config: `"50ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"1d"`.
//!
//! **Why this is not the rules crate's grammar** (`rules/src/duration.rs`). The two
//! disagree, and making either use the other would change what files are accepted:
//! - the server config needs milliseconds (`store.timeout = "50ms"` is the
//!   default, `session.cache_ttl` is sub-second); the rules file has whole seconds
//!   only, since its durations are session and token lifetimes;
//! - the rules grammar is strict (units in the order d, h, m, s, each at most once,
//!   no surrounding spaces) and reports errors with a position in the rules file;
//!   this one has always taken the units in any order (`"30m1h"`) and trimmed
//!   surrounding whitespace, and deployed configs may rely on that.
//!
//! Unifying them is a behaviour change for one of the two files, so it is left to
//! its own issue: the likely shape is the rules grammar plus `ms`, exported from
//! `handoff-rules`, with a deprecation warning for the config's looser forms.

use std::time::Duration;

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
        // Checked: a long enough list of terms would overflow (and panic).
        total = total.checked_add(d)?;
        rest = &rest[unit..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_in_any_order_and_milliseconds() {
        assert_eq!(parse_duration("50ms"), Some(Duration::from_millis(50)));
        assert_eq!(parse_duration(" 1h30m "), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("30m1h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        for bad in ["", "30", "m", "1x", "1.5s", "-1s", "99999999999s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn overflow_is_refused_not_a_panic() {
        assert_eq!(parse_duration(&"999999999d".repeat(300_000)), None);
    }
}
