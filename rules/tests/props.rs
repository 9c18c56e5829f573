//! Property tests for address handling and the ASN table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use handoff_rules::{normalize_ip, same_prefix, AsnTable};
use proptest::prelude::*;

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

proptest! {
    #[test]
    fn an_address_matches_itself_at_any_prefix(a in any_ip(), v4 in 0u8..=32, v6 in 0u8..=128) {
        prop_assert!(same_prefix(a, a, v4, v6));
    }

    #[test]
    fn v4_mapped_v6_is_the_v4_address(a in any::<u32>(), v4 in 0u8..=32, v6 in 0u8..=128) {
        let v4addr = Ipv4Addr::from(a);
        let mapped = IpAddr::V6(v4addr.to_ipv6_mapped());
        prop_assert_eq!(normalize_ip(mapped), IpAddr::V4(v4addr));
        prop_assert!(same_prefix(mapped, IpAddr::V4(v4addr), v4, v6));
        prop_assert!(same_prefix(IpAddr::V4(v4addr), mapped, v4, v6));
    }

    #[test]
    fn longer_prefix_match_implies_shorter(a in any_ip(), b in any_ip(), n in 0u8..=32, m in 0u8..=128) {
        if same_prefix(a, b, n, m) {
            prop_assert!(same_prefix(a, b, n / 2, m / 2));
        }
    }

    #[test]
    fn asn_lookup_equals_linear_scan(
        // Disjoint ranges: sorted distinct cut points, paired up.
        mut cuts in proptest::collection::btree_set(any::<u32>(), 0..40),
        asns in proptest::collection::vec(0u32..5, 20),
        probes in proptest::collection::vec(any::<u32>(), 50),
    ) {
        let cuts: Vec<u32> = std::mem::take(&mut cuts).into_iter().collect();
        let ranges: Vec<(u32, u32, u32)> = cuts
            .chunks_exact(2)
            .zip(asns.iter().cycle())
            .map(|(c, &asn)| (c[0], c[1], asn))
            .collect();
        // Shuffle-ish: the file need not be sorted.
        let mut tsv = String::new();
        for (s, e, asn) in ranges.iter().rev() {
            tsv.push_str(&format!("{}\t{}\t{asn}\tZZ\tdesc\n", Ipv4Addr::from(*s), Ipv4Addr::from(*e)));
        }
        let table = AsnTable::parse(&tsv, "t.tsv").unwrap();
        let linear = |ip: u32| ranges.iter().find(|(s, e, _)| *s <= ip && ip <= *e).map(|r| r.2).filter(|&a| a != 0);
        let mut points: Vec<u32> = probes;
        for (s, e, _) in &ranges {
            points.extend([*s, *e, s.wrapping_sub(1), e.wrapping_add(1)]);
        }
        for p in points {
            prop_assert_eq!(table.lookup(IpAddr::V4(Ipv4Addr::from(p))), linear(p), "at {}", Ipv4Addr::from(p));
            let mapped = IpAddr::V6(Ipv4Addr::from(p).to_ipv6_mapped());
            prop_assert_eq!(table.lookup(mapped), linear(p));
        }
    }
}
