//! IP-to-ASN table for the `asn` binding (SPEC §4.2), from the public `ip2asn`
//! TSV format: `range_start \t range_end \t AS_number \t country \t description`.
//!
//! Loaded into two sorted range vectors (IPv4, IPv6) and searched by binary
//! search, so a lookup is O(log n) and allocation-free. Loading is the caller's
//! I/O; this module only parses text.

use std::net::IpAddr;

use crate::diag::{Diagnostics, Reporter};
use crate::net::normalize_ip;

/// Most errors reported for one table file; past this, parsing stops (a wrong
/// file would otherwise give millions of lines of diagnostics).
const MAX_ERRORS: usize = 20;

/// A sorted, non-overlapping IP range → ASN table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AsnTable {
    v4: Vec<(u32, u32, u32)>,
    v6: Vec<(u128, u128, u32)>,
}

impl AsnTable {
    /// Parses ip2asn TSV text. Rows with AS number 0 ("not routed") are skipped,
    /// so their addresses look up as `None`. Empty lines and lines starting with
    /// `#` are ignored. Overlapping ranges are an error.
    pub fn parse(tsv: &str, file_name: &str) -> Result<AsnTable, Diagnostics> {
        let mut r = Reporter::new(tsv, file_name);
        let mut table = AsnTable::default();
        // (line offset) of each row, to report overlaps where they are.
        let mut v4_at = Vec::new();
        let mut v6_at = Vec::new();
        let mut offset = 0;
        for line in tsv.split_inclusive('\n') {
            let at = offset;
            offset += line.len();
            let text = line.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() || text.starts_with('#') {
                continue;
            }
            if r.error_count() >= MAX_ERRORS {
                r.error(&(at..at), "too many errors; giving up on this file");
                break;
            }
            let mut cols = text.split('\t');
            let (Some(a), Some(b), Some(asn)) = (cols.next(), cols.next(), cols.next()) else {
                r.error(
                    &(at..at),
                    "expected at least 3 tab-separated columns: range_start, range_end, AS_number",
                );
                continue;
            };
            let col = |c: &str| {
                let start = at + (c.as_ptr() as usize - text.as_ptr() as usize);
                start..start
            };
            let Ok(asn) = asn.trim().parse::<u32>() else {
                r.error(&col(asn), format!("invalid AS number \"{asn}\""));
                continue;
            };
            let (Ok(start), Ok(end)) = (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>())
            else {
                let bad = if a.trim().parse::<IpAddr>().is_err() {
                    a
                } else {
                    b
                };
                r.error(&col(bad), format!("invalid IP address \"{bad}\""));
                continue;
            };
            let (start, end) = (normalize_ip(start), normalize_ip(end));
            match (start, end) {
                (IpAddr::V4(s), IpAddr::V4(e)) if s <= e => {
                    if asn != 0 {
                        table.v4.push((s.into(), e.into(), asn));
                        v4_at.push(at);
                    }
                }
                (IpAddr::V6(s), IpAddr::V6(e)) if s <= e => {
                    if asn != 0 {
                        table.v6.push((s.into(), e.into(), asn));
                        v6_at.push(at);
                    }
                }
                _ => r.error(
                    &col(a),
                    format!("range {a} - {b} is empty or mixes IPv4 and IPv6"),
                ),
            }
        }
        sort_and_check(&mut table.v4, v4_at, &mut r);
        sort_and_check(&mut table.v6, v6_at, &mut r);
        if r.error_count() > 0 {
            return Err(Diagnostics::new(r.finish()));
        }
        Ok(table)
    }

    /// The AS number announcing `ip`, if the table knows one. IPv4-mapped IPv6
    /// addresses are looked up as IPv4.
    pub fn lookup(&self, ip: IpAddr) -> Option<u32> {
        match normalize_ip(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Number of routed ranges.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the table has no routed ranges.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn find<T: Ord + Copy>(ranges: &[(T, T, u32)], ip: T) -> Option<u32> {
    // The last range starting at or before `ip` is the only candidate, because
    // ranges do not overlap (checked at parse time).
    let i = ranges.partition_point(|r| r.0 <= ip);
    let (_, end, asn) = *ranges.get(i.checked_sub(1)?)?;
    (ip <= end).then_some(asn)
}

fn sort_and_check<T: Ord + Copy + std::fmt::Debug>(
    ranges: &mut Vec<(T, T, u32)>,
    at: Vec<usize>,
    r: &mut Reporter<'_>,
) {
    let mut idx: Vec<usize> = (0..ranges.len()).collect();
    idx.sort_by_key(|&i| ranges[i].0);
    let sorted: Vec<(T, T, u32)> = idx.iter().map(|&i| ranges[i]).collect();
    for w in idx.windows(2) {
        let (prev, next) = (ranges[w[0]], ranges[w[1]]);
        if next.0 <= prev.1 {
            let line = r.line_of(at[w[0]]);
            r.error(
                &(at[w[1]]..at[w[1]]),
                format!("this range overlaps the range on line {line}"),
            );
        }
    }
    *ranges = sorted;
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSV: &str = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n\
1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
1.0.4.0\t1.0.7.255\t38803\tAU\tGTELECOM\n\
2001:db8::\t2001:db8:ffff:ffff:ffff:ffff:ffff:ffff\t64500\tZZ\tDOC\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookups() {
        let t = AsnTable::parse(TSV, "ip2asn.tsv").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup(ip("1.0.0.0")), Some(13335));
        assert_eq!(t.lookup(ip("1.0.0.255")), Some(13335));
        assert_eq!(t.lookup(ip("1.0.2.1")), None, "ASN 0 is not routed");
        assert_eq!(t.lookup(ip("1.0.5.5")), Some(38803));
        assert_eq!(t.lookup(ip("::ffff:1.0.5.5")), Some(38803));
        assert_eq!(t.lookup(ip("1.0.8.0")), None);
        assert_eq!(t.lookup(ip("0.255.255.255")), None);
        assert_eq!(t.lookup(ip("2001:db8::42")), Some(64500));
        assert_eq!(t.lookup(ip("2001:db9::")), None);
    }

    #[test]
    fn errors_have_positions() {
        let bad =
            "1.0.0.0\t1.0.0.255\t13335\tUS\tX\nnope\t1.0.0.1\t1\n1.0.0.128\t1.0.1.0\t7\tUS\tY\n";
        let e = AsnTable::parse(bad, "t.tsv").unwrap_err().to_string();
        assert_eq!(
            e,
            "t.tsv:2:1: error: invalid IP address \"nope\"\n\
             t.tsv:3:1: error: this range overlaps the range on line 1"
        );
    }
}
