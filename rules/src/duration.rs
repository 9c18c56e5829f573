//! Durations as the rules file writes them: `"90s"`, `"30m"`, `"1h30m"`, `"1d"`.

use std::fmt;
use std::time::Duration;

/// Parses `<n>d<n>h<n>m<n>s`, each part optional but at least one present, units
/// in that order, each at most once, whole seconds only. No spaces.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: [(u8, u64); 4] = [(b'd', 86_400), (b'h', 3_600), (b'm', 60), (b's', 1)];
    let expected = || {
        format!("invalid duration \"{s}\": expected whole numbers with units d, h, m, s in that order, like \"90s\", \"30m\" or \"1h30m\"")
    };
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(expected());
    }
    let mut total: u64 = 0;
    let mut next_unit = 0; // index into UNITS of the smallest unit still allowed
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i || i == bytes.len() {
            return Err(expected());
        }
        let n: u64 = s[start..i].parse().map_err(|_| expected())?;
        let unit = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == bytes[i])
            .ok_or_else(expected)?;
        let (_, secs) = UNITS[next_unit + unit];
        next_unit += unit + 1;
        total = n
            .checked_mul(secs)
            .and_then(|x| x.checked_add(total))
            .ok_or_else(|| format!("duration \"{s}\" is too long"))?;
        i += 1;
    }
    Ok(Duration::from_secs(total))
}

/// Displays a duration the way the rules file writes it (`1h30m`, `0s`).
pub(crate) struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        let s = |x| parse_duration(x).unwrap().as_secs();
        assert_eq!(s("90s"), 90);
        assert_eq!(s("30m"), 1800);
        assert_eq!(s("1h"), 3600);
        assert_eq!(s("1h30m"), 5400);
        assert_eq!(s("1d2h3m4s"), 93_784);
        assert_eq!(s("0s"), 0);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "90",
            "s",
            "1x",
            "1m1h",
            "1h1h",
            "1.5h",
            "-1s",
            " 1s",
            "1s ",
            "1h 30m",
            "99999999999999999999s",
            "1H",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("213503982334602d").is_err(), "overflow");
    }

    #[test]
    fn human_round_trips() {
        for x in ["0s", "90s", "1m30s", "1h30m", "1d", "2d3h"] {
            let d = parse_duration(x).unwrap();
            let shown = Human(d).to_string();
            assert_eq!(parse_duration(&shown).unwrap(), d);
        }
        assert_eq!(Human(Duration::from_secs(90)).to_string(), "1m30s");
    }
}
