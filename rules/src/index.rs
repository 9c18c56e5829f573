//! A per-policy index that narrows down which rules a redemption can match,
//! so that the cost of a decision does not grow with the number of networks
//! written in the rules.
//!
//! Rules are numbered in file order and sets of rules are bitsets of `words`
//! `u64`s. For the two network matchers (`redeem_network`, `mint_network`) and
//! each address family, the address space is cut into segments at every
//! network's first address and one past its last; no network starts or ends
//! inside a segment, so every address of a segment is in the same networks.
//! Each segment stores the set of rules whose matcher accepts it, plus every
//! rule without that matcher. A lookup is one binary search. The method
//! matcher gets one set per method.
//!
//! The candidates of a request are the AND of its sets; only those are then
//! checked against their other matchers (`Rule::matches_rest`). Correct by
//! construction, and checked against the plain `Rule::matches` in tests and,
//! in debug builds, on every `explain`.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::AuthMethod;
use crate::net::{normalize_ip, Nets};
use crate::rule::Rule;

/// Sorted segment starts (the first is 0) and, per segment, a rule set.
#[derive(Debug, Clone, Default)]
struct Segments<T> {
    starts: Vec<T>,
    /// `starts.len() * words` words: the set of segment `s` is at `s * words`.
    sets: Vec<u64>,
}

impl<T: Copy + Ord + Default> Segments<T> {
    /// `ranges`: (rule, first, last) for every network of this family;
    /// `unconstrained`: the rules without this matcher.
    fn new(words: usize, ranges: &[(usize, T, Option<T>)], unconstrained: &[u64]) -> Self {
        let mut starts: Vec<T> = vec![T::default()];
        for &(_, first, after) in ranges {
            starts.push(first);
            starts.extend(after);
        }
        starts.sort_unstable();
        starts.dedup();
        let mut sets = Vec::with_capacity(starts.len() * words);
        for _ in 0..starts.len() {
            sets.extend_from_slice(unconstrained);
        }
        for &(rule, first, after) in ranges {
            let lo = starts.binary_search(&first).expect("a start");
            let hi = after.map_or(starts.len(), |a| starts.binary_search(&a).expect("a start"));
            for s in lo..hi {
                sets[s * words + rule / 64] |= 1 << (rule % 64);
            }
        }
        Segments { starts, sets }
    }

    #[inline]
    fn lookup(&self, words: usize, a: T) -> &[u64] {
        // starts[0] is the lowest address, so the point is at least 1.
        let s = self.starts.partition_point(|&x| x <= a) - 1;
        &self.sets[s * words..(s + 1) * words]
    }
}

/// One network matcher, both families.
#[derive(Debug, Clone, Default)]
struct NetIndex {
    v4: Segments<u32>,
    v6: Segments<u128>,
}

impl NetIndex {
    fn new(rules: &[Rule], words: usize, nets: impl Fn(&Rule) -> Option<&Nets>) -> NetIndex {
        let mut unconstrained = vec![0u64; words];
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (i, r) in rules.iter().enumerate() {
            let Some(list) = nets(r) else {
                unconstrained[i / 64] |= 1 << (i % 64);
                continue;
            };
            for n in list.iter() {
                match n {
                    IpNet::V4(n) => {
                        let last = u32::from(n.broadcast());
                        v4.push((i, u32::from(n.network()), last.checked_add(1)));
                    }
                    IpNet::V6(n) => {
                        let last = u128::from(n.broadcast());
                        v6.push((i, u128::from(n.network()), last.checked_add(1)));
                    }
                }
            }
        }
        NetIndex {
            v4: Segments::new(words, &v4, &unconstrained),
            v6: Segments::new(words, &v6, &unconstrained),
        }
    }

    #[inline]
    fn lookup(&self, words: usize, ip: IpAddr) -> &[u64] {
        match normalize_ip(ip) {
            IpAddr::V4(a) => self.v4.lookup(words, u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(words, u128::from(a)),
        }
    }
}

/// The index of one policy's rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleIndex {
    words: usize,
    redeem: NetIndex,
    mint: NetIndex,
    /// Per method (cookie, query): the rules whose method matcher accepts
    /// it, plus the rules without one.
    method: [Vec<u64>; 2],
}

fn method_slot(m: AuthMethod) -> usize {
    match m {
        AuthMethod::Cookie => 0,
        AuthMethod::Query => 1,
    }
}

impl RuleIndex {
    pub(crate) fn new(rules: &[Rule]) -> RuleIndex {
        let words = rules.len().div_ceil(64);
        let mut method = [vec![0u64; words], vec![0u64; words]];
        for (i, r) in rules.iter().enumerate() {
            for m in [AuthMethod::Cookie, AuthMethod::Query] {
                if r.method.is_none_or(|set| set.contains(m)) {
                    method[method_slot(m)][i / 64] |= 1 << (i % 64);
                }
            }
        }
        RuleIndex {
            words,
            redeem: NetIndex::new(rules, words, |r| r.redeem_network.as_ref()),
            mint: NetIndex::new(rules, words, |r| r.mint_network.as_ref()),
            method,
        }
    }

    /// Calls `f` with the index of every rule whose network and method
    /// matchers accept the request, in ascending (file) order.
    #[inline]
    pub(crate) fn for_each_candidate(
        &self,
        method: AuthMethod,
        redeem_ip: IpAddr,
        mint_ip: IpAddr,
        mut f: impl FnMut(usize),
    ) {
        let redeem = self.redeem.lookup(self.words, redeem_ip);
        let mint = self.mint.lookup(self.words, mint_ip);
        let method = &self.method[method_slot(method)];
        for (w, ((r, m), me)) in redeem.iter().zip(mint).zip(method).enumerate() {
            let mut bits = r & m & me;
            while bits != 0 {
                f(w * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AuthMethods;
    use crate::net::parse_net;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn rule(redeem: Option<&[&str]>, mint: Option<&[&str]>, method: Option<AuthMethod>) -> Rule {
        let nets = |l: &[&str]| Nets::new(l.iter().map(|s| parse_net(s).unwrap()).collect());
        Rule {
            name: None,
            line: 1,
            web_client: None,
            native_client: None,
            redeem_network: redeem.map(nets),
            mint_network: mint.map(nets),
            redeem_asn: None,
            mint_asn: None,
            networks_differ: None,
            method: method.map(|m| {
                let mut s = AuthMethods::empty();
                s.insert(m);
                s
            }),
            time_of_day: None,
            deny: Some(true),
            binding: None,
            session_absolute: None,
            session_idle: None,
            allow_refresh_token: None,
            enforce_online_refresh_tokens: None,
        }
    }

    /// xorshift64*, for reproducible pseudo-random networks and probes.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    fn candidates(ix: &RuleIndex, m: AuthMethod, redeem: IpAddr, mint: IpAddr) -> Vec<usize> {
        let mut out = Vec::new();
        ix.for_each_candidate(m, redeem, mint, |i| out.push(i));
        out
    }

    fn plain(rules: &[Rule], m: AuthMethod, redeem: IpAddr, mint: IpAddr) -> Vec<usize> {
        (0..rules.len())
            .filter(|&i| {
                let r = &rules[i];
                r.method.is_none_or(|s| s.contains(m))
                    && r.redeem_network.as_ref().is_none_or(|n| n.contains(redeem))
                    && r.mint_network.as_ref().is_none_or(|n| n.contains(mint))
            })
            .collect()
    }

    #[test]
    fn small_example() {
        let rules = vec![
            rule(Some(&["10.0.0.0/8"]), None, None),
            rule(
                None,
                Some(&["10.1.0.0/16", "2001:db8::/32"]),
                Some(AuthMethod::Query),
            ),
            rule(Some(&["0.0.0.0/0", "::/0"]), None, Some(AuthMethod::Cookie)),
            rule(None, None, None),
            rule(Some(&["255.255.255.255/32", "64:ff9b::/96"]), None, None),
        ];
        let ix = RuleIndex::new(&rules);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let q = AuthMethod::Query;
        let c = AuthMethod::Cookie;
        assert_eq!(candidates(&ix, c, ip("10.1.2.3"), ip("1.1.1.1")), [0, 2, 3]);
        assert_eq!(
            candidates(&ix, q, ip("10.1.2.3"), ip("10.1.9.9")),
            [0, 1, 3]
        );
        assert_eq!(
            candidates(&ix, q, ip("::ffff:10.1.2.3"), ip("2001:db8::1")),
            [0, 1, 3]
        );
        assert_eq!(
            candidates(&ix, c, ip("255.255.255.255"), ip("::")),
            [2, 3, 4]
        );
        // IPv4-mapped is IPv4; NAT64 addresses stay IPv6.
        assert_eq!(candidates(&ix, q, ip("::ffff:1.2.3.4"), ip("::")), [3]);
        assert_eq!(candidates(&ix, q, ip("64:ff9b::1.2.3.4"), ip("::")), [3, 4]);
        assert!(RuleIndex::new(&[]).words == 0);
        let mut none = true;
        RuleIndex::new(&[]).for_each_candidate(c, ip("::"), ip("::"), |_| none = false);
        assert!(none);
    }

    #[test]
    fn equals_plain_matching_on_random_networks() {
        let mut rng = Rng(0x1dea_5eed);
        for round in 0..40 {
            // Up to 150 rules (three words), clustered networks so that they
            // nest and overlap.
            let n = 1 + (rng.next() % 150) as usize;
            let mut texts: Vec<Vec<String>> = Vec::new();
            let mut rules = Vec::new();
            for _ in 0..n {
                let mut list = Vec::new();
                for _ in 0..rng.next() % 4 {
                    let r = rng.next();
                    list.push(if r % 3 == 0 {
                        let len = (r >> 8) % 129;
                        let a = Ipv6Addr::from(((r as u128) << 64 | 0x2001_0db8) << 32);
                        IpNet::new(IpAddr::V6(a), len as u8)
                            .unwrap()
                            .trunc()
                            .to_string()
                    } else {
                        let len = 4 + (r >> 8) % 29;
                        let a = Ipv4Addr::from(0x0a00_0000 | ((r >> 16) as u32 & 0x00ff_ffff));
                        IpNet::new(IpAddr::V4(a), len as u8)
                            .unwrap()
                            .trunc()
                            .to_string()
                    });
                }
                texts.push(list);
            }
            for (i, t) in texts.iter().enumerate() {
                let l: Vec<&str> = t.iter().map(String::as_str).collect();
                let j = (i + round) % texts.len();
                let m: Vec<&str> = texts[j].iter().map(String::as_str).collect();
                let method = [None, Some(AuthMethod::Cookie), Some(AuthMethod::Query)]
                    [(rng.next() % 3) as usize];
                rules.push(rule(
                    (!l.is_empty()).then_some(&l[..]),
                    (rng.next() % 2 == 0 && !m.is_empty()).then_some(&m[..]),
                    method,
                ));
            }
            let ix = RuleIndex::new(&rules);
            // Probes: every network's edges and neighbours, and random ones.
            let mut probes: Vec<IpAddr> = Vec::new();
            for r in &rules {
                for n in r
                    .redeem_network
                    .iter()
                    .chain(&r.mint_network)
                    .flat_map(|n| n.iter())
                {
                    let (lo, hi) = (n.network(), n.broadcast());
                    probes.extend([lo, hi]);
                    match (lo, hi) {
                        (IpAddr::V4(lo), IpAddr::V4(hi)) => probes.extend([
                            IpAddr::V4(Ipv4Addr::from(u32::from(lo).wrapping_sub(1))),
                            IpAddr::V4(Ipv4Addr::from(u32::from(hi).wrapping_add(1))),
                            IpAddr::V6(hi.to_ipv6_mapped()),
                        ]),
                        (IpAddr::V6(lo), IpAddr::V6(hi)) => probes.extend([
                            IpAddr::V6(Ipv6Addr::from(u128::from(lo).wrapping_sub(1))),
                            IpAddr::V6(Ipv6Addr::from(u128::from(hi).wrapping_add(1))),
                        ]),
                        _ => unreachable!(),
                    }
                }
            }
            for _ in 0..50 {
                let r = rng.next();
                probes.push(IpAddr::V4(Ipv4Addr::from(
                    0x0a00_0000 | (r as u32 & 0x00ff_ffff),
                )));
            }
            for (k, &a) in probes.iter().enumerate() {
                let b = probes[(k * 7 + 1) % probes.len()];
                for m in [AuthMethod::Cookie, AuthMethod::Query] {
                    assert_eq!(
                        candidates(&ix, m, a, b),
                        plain(&rules, m, a, b),
                        "round {round}: redeem {a}, mint {b}"
                    );
                }
            }
        }
    }
}
