//! Addresses and networks, with one deliberate normalization.
//!
//! **IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are treated as the IPv4
//! address `a.b.c.d` everywhere** (binding checks, network lists, rule matchers,
//! ASN lookup). A dual-stack listener reports IPv4 peers in that form; without the
//! normalization the same phone would look like two different clients depending
//! on which socket the mint and the redemption arrived on, and an IPv4 CIDR in a
//! deny list would silently fail to match. For the same reason, networks written
//! in the rules file as IPv4-mapped IPv6 are rejected (write the IPv4 CIDR).

use std::net::IpAddr;

use ipnet::IpNet;

/// `::ffff:a.b.c.d` → `a.b.c.d`; every other address unchanged.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Whether two addresses (normalized first) share their first `v4` / `v6` bits.
/// Addresses of different families never do.
pub fn same_prefix(a: IpAddr, b: IpAddr, v4: u8, v6: u8) -> bool {
    match (normalize_ip(a), normalize_ip(b)) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(v4.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// A list of networks compiled for matching: the networks as written (for
/// messages and coverage checks) and, per address family, `(network, mask)`
/// pairs, so a test is one AND and one compare, with no per-test mask
/// computation and no enum dispatch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Nets {
    list: Vec<IpNet>,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Nets {
    pub(crate) fn new(list: Vec<IpNet>) -> Nets {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for n in &list {
            match n {
                IpNet::V4(n) => {
                    let mask = u32::from(n.netmask());
                    v4.push((u32::from(n.network()) & mask, mask));
                }
                IpNet::V6(n) => {
                    let mask = u128::from(n.netmask());
                    v6.push((u128::from(n.network()) & mask, mask));
                }
            }
        }
        Nets { list, v4, v6 }
    }

    /// Whether `ip` (normalized) is in any of the networks.
    #[inline]
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match normalize_ip(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|&(n, m)| a & m == n)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|&(n, m)| a & m == n)
            }
        }
    }
}

impl std::ops::Deref for Nets {
    type Target = [IpNet];

    /// The networks as written.
    fn deref(&self) -> &[IpNet] {
        &self.list
    }
}

/// A source-network allow/deny list. Empty `allowed` means "any network".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetList {
    pub allowed: Nets,
    pub denied: Nets,
}

impl NetList {
    /// Deny wins over allow; an empty allow list allows everything not denied.
    pub(crate) fn permits(&self, ip: IpAddr) -> bool {
        !self.denied.contains(ip) && (self.allowed.is_empty() || self.allowed.contains(ip))
    }
}

/// Parses a CIDR (`10.0.0.0/8`) or a bare address (a /32 or /128) as the rules
/// file writes it.
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                return Err(format!(
                    "invalid network \"{s}\": expected a CIDR like \"10.0.0.0/8\" or \"2001:db8::/32\", or a single address"
                ))
            }
        },
    };
    if let IpNet::V6(v6) = net {
        if v6.prefix_len() >= 96 && v6.network().to_ipv4_mapped().is_some() {
            let v4 = v6.network().to_ipv4_mapped().expect("checked");
            return Err(format!(
                "network \"{s}\" is IPv4-mapped IPv6, which never matches because addresses are normalized to IPv4; write \"{v4}/{}\"",
                v6.prefix_len() - 96
            ));
        }
    }
    if net.addr() != net.network() {
        return Err(format!(
            "network \"{s}\" has host bits set; write \"{}\"",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn normalizes_v4_mapped_only() {
        assert_eq!(normalize_ip(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(normalize_ip(ip("2001:db8::1")), ip("2001:db8::1"));
        // IPv4-compatible (deprecated ::a.b.c.d) is not mapped and stays IPv6.
        assert_eq!(normalize_ip(ip("::10.1.2.3")), ip("::10.1.2.3"));
    }

    #[test]
    fn prefixes() {
        assert!(same_prefix(ip("10.1.2.3"), ip("10.1.2.200"), 24, 64));
        assert!(!same_prefix(ip("10.1.2.3"), ip("10.1.3.3"), 24, 64));
        assert!(same_prefix(ip("10.1.2.3"), ip("::ffff:10.1.2.3"), 32, 64));
        assert!(same_prefix(ip("1.2.3.4"), ip("200.2.3.4"), 0, 0));
        assert!(same_prefix(
            ip("2001:db8:1:2::1"),
            ip("2001:db8:1:2:ffff::9"),
            32,
            64
        ));
        assert!(!same_prefix(
            ip("2001:db8:1:2::1"),
            ip("2001:db8:1:3::1"),
            32,
            64
        ));
        assert!(!same_prefix(ip("10.0.0.1"), ip("2001:db8::1"), 0, 0));
    }

    #[test]
    fn net_lists() {
        let l = NetList {
            allowed: Nets::new(vec![parse_net("10.0.0.0/8").unwrap()]),
            denied: Nets::new(vec![parse_net("10.66.0.0/16").unwrap()]),
        };
        assert!(l.permits(ip("10.1.1.1")));
        assert!(l.permits(ip("::ffff:10.1.1.1")));
        assert!(!l.permits(ip("10.66.1.1")));
        assert!(!l.permits(ip("192.168.1.1")));
        assert!(NetList::default().permits(ip("192.168.1.1")));
    }

    #[test]
    fn compiled_networks_match_like_ipnet() {
        let list: Vec<IpNet> = [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "192.0.2.128/25",
            "203.0.113.7/32",
            "::/0",
            "2001:db8::/32",
            "2001:db8:1:2::/64",
            "::1/128",
        ]
        .iter()
        .map(|s| parse_net(s).unwrap())
        .collect();
        let probes = [
            "10.1.2.3",
            "11.0.0.0",
            "192.0.2.127",
            "192.0.2.128",
            "192.0.2.255",
            "203.0.113.7",
            "203.0.113.8",
            "::ffff:192.0.2.200",
            "2001:db8:1:2::9",
            "2001:db8:1:3::9",
            "2001:db9::",
            "::1",
            "::2",
        ];
        for k in 0..list.len() {
            for first in [k, 0] {
                let sub = list[first..=k].to_vec();
                let nets = Nets::new(sub.clone());
                assert_eq!(&*nets, &sub[..]);
                for p in probes {
                    let a = normalize_ip(ip(p));
                    assert_eq!(
                        nets.contains(ip(p)),
                        sub.iter().any(|n| n.contains(&a)),
                        "{p} in {sub:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn parsing_networks() {
        assert_eq!(parse_net("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert!(parse_net("10.1.2.3/8")
            .unwrap_err()
            .contains("\"10.0.0.0/8\""));
        assert!(parse_net("::ffff:10.0.0.0/104")
            .unwrap_err()
            .contains("\"10.0.0.0/8\""));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("office").is_err());
    }
}
