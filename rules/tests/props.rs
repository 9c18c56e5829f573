//! Property tests for address handling and the ASN table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use handoff_rules::{
    normalize_ip, same_prefix, AsnTable, AuthMethod, Binding, NetworkBinding, RedeemContext,
};
use proptest::prelude::*;

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

/// A context that differs from a passing one only in the two addresses.
fn ctx(mint: IpAddr, redeem: IpAddr) -> RedeemContext<'static> {
    RedeemContext {
        native_client: "n",
        web_client: "w",
        method: AuthMethod::Cookie,
        mint_ip: mint,
        redeem_ip: redeem,
        mint_fingerprint: None,
        redeem_fingerprint: None,
        mint_asn: None,
        redeem_asn: None,
        minute_of_day_utc: 0,
    }
}

fn prefix_binding(v4: u8, v6: u8) -> Binding {
    Binding {
        network: NetworkBinding::IpPrefix { v4, v6 },
        fingerprint: false,
    }
}

fn mapped(a: Ipv4Addr) -> IpAddr {
    IpAddr::V6(a.to_ipv6_mapped())
}

proptest! {
    #[test]
    fn prefix_and_ip_bindings_hold_for_the_same_address(
        a in any_ip(), v4 in 1u8..=32, v6 in 1u8..=128,
    ) {
        prop_assert!(prefix_binding(v4, v6).holds(&ctx(a, a)));
        prop_assert!(Binding::IP.holds(&ctx(a, a)));
    }

    #[test]
    fn bindings_treat_v4_mapped_v6_as_the_v4_address(
        a in any::<u32>(), b in any::<u32>(), v4 in 1u8..=32, v6 in 1u8..=128,
    ) {
        let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
        let plain = ctx(IpAddr::V4(a), IpAddr::V4(b));
        let p = prefix_binding(v4, v6);
        // Mapping either or both sides changes nothing, for any prefix.
        for c in [
            ctx(mapped(a), IpAddr::V4(b)),
            ctx(IpAddr::V4(a), mapped(b)),
            ctx(mapped(a), mapped(b)),
        ] {
            prop_assert_eq!(p.holds(&c), p.holds(&plain));
            prop_assert_eq!(Binding::IP.holds(&c), Binding::IP.holds(&plain));
        }
        prop_assert!(Binding::IP.holds(&ctx(IpAddr::V4(a), mapped(a))));
        // The IPv4 prefix applies, not the IPv6 one (a /96 + v4 bits).
        prop_assert_eq!(
            p.holds(&ctx(mapped(a), mapped(b))),
            u32::from(a).checked_shr(32 - u32::from(v4)).unwrap_or(0)
                == u32::from(b).checked_shr(32 - u32::from(v4)).unwrap_or(0)
        );
        // Deliberately not normalized: IPv4-compatible `::a.b.c.d` is IPv6, so
        // it never shares a prefix with the IPv4 address.
        let compatible = IpAddr::V6(Ipv6Addr::from(u128::from(u32::from(a))));
        prop_assert!(!p.holds(&ctx(IpAddr::V4(a), compatible)));
        prop_assert!(!Binding::IP.holds(&ctx(IpAddr::V4(a), compatible)));
    }

    #[test]
    fn prefix_binding_is_a_shared_prefix_of_the_given_length(
        a in any::<u128>(), b in any::<u128>(), v6 in 1u8..=128,
    ) {
        let (x, y) = (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)));
        let shift = 128 - u32::from(v6);
        let same = a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0);
        // Mapped addresses normalize to IPv4 and use the IPv4 prefix instead.
        prop_assume!(Ipv6Addr::from(a).to_ipv4_mapped().is_none());
        prop_assume!(Ipv6Addr::from(b).to_ipv4_mapped().is_none());
        prop_assert_eq!(prefix_binding(32, v6).holds(&ctx(x, y)), same);
    }

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

    #[test]
    fn asn_lookup_equals_linear_scan_for_ipv6(
        cuts in proptest::collection::btree_set(any::<u128>(), 0..40),
        asns in proptest::collection::vec(0u32..5, 20),
        probes in proptest::collection::vec(any::<u128>(), 50),
    ) {
        let cuts: Vec<u128> = cuts.into_iter().collect();
        let ranges: Vec<(u128, u128, u32)> = cuts
            .chunks_exact(2)
            .zip(asns.iter().cycle())
            .map(|(c, &asn)| (c[0], c[1], asn))
            // Ranges inside ::ffff:0:0/96 would be read as IPv4.
            .filter(|(s, e, _)| {
                Ipv6Addr::from(*s).to_ipv4_mapped().is_none()
                    && Ipv6Addr::from(*e).to_ipv4_mapped().is_none()
            })
            .collect();
        let mut tsv = String::new();
        for (s, e, asn) in ranges.iter().rev() {
            tsv.push_str(&format!("{}\t{}\t{asn}\tZZ\tdesc\n", Ipv6Addr::from(*s), Ipv6Addr::from(*e)));
        }
        let table = AsnTable::parse(&tsv, "t.tsv").unwrap();
        let linear = |ip: u128| ranges.iter().find(|(s, e, _)| *s <= ip && ip <= *e).map(|r| r.2).filter(|&a| a != 0);
        let mut points: Vec<u128> = probes;
        for (s, e, _) in &ranges {
            points.extend([*s, *e, s.wrapping_sub(1), e.wrapping_add(1)]);
        }
        for p in points {
            let ip = Ipv6Addr::from(p);
            if ip.to_ipv4_mapped().is_some() {
                continue;
            }
            prop_assert_eq!(table.lookup(IpAddr::V6(ip)), linear(p), "at {}", ip);
        }
    }
}
