// The body of the fuzz targets, shared word for word with the stand-in test
// that runs on stable in CI (`rules/tests/fuzz_standin.rs`). Both `include!`
// this file, so it holds items only, with fully qualified paths.
//
// A panic anywhere below is a finding: a parser or evaluator bug, or a broken
// invariant.

/// Parses `src` as a rules file. If it validates, decides and explains
/// redemptions built from the file's own client ids, addresses and AS numbers,
/// and checks the invariants of `decide_redemption` on each. Returns whether
/// the file validated.
#[allow(dead_code)]
pub fn check_rules_source(src: &str) -> bool {
    use handoff_rules::{explain, AuthMethod, DenyReason, Policy, RedeemContext};
    use std::net::IpAddr;

    let policy = match Policy::from_toml(src, "fuzz.toml") {
        Ok(p) => p,
        Err(diags) => {
            // Every diagnostic points inside the file, and renders.
            let lines = src.matches('\n').count() + 1;
            assert!(diags.errors().next().is_some(), "rejected without an error");
            for d in diags.iter() {
                assert!(d.line >= 1 && d.line <= lines, "line {} of {lines}", d.line);
                assert!(d.column >= 1, "column {}", d.column);
            }
            assert!(!diags.to_string().is_empty());
            return false;
        }
    };
    for w in policy.warnings() {
        assert_eq!(w.severity, handoff_rules::Severity::Warning);
    }

    let s = fuzz_samples(src);
    let (v4, v6) = policy.binding_prefixes();
    assert!((1..=32).contains(&v4) && (1..=128).contains(&v6));
    let mut n = 0usize;
    for native in &s.ids {
        for web in &s.ids {
            for (k, &(mint_ip, redeem_ip)) in s.ip_pairs.iter().enumerate() {
                let method = [AuthMethod::Cookie, AuthMethod::Query][k % 2];
                let fp = |b: u8| ((b & 3) != 3).then_some([b & 1; 32]);
                let ctx = RedeemContext {
                    native_client: native,
                    web_client: web,
                    method,
                    mint_ip,
                    redeem_ip,
                    mint_fingerprint: fp(k as u8),
                    redeem_fingerprint: fp((k / 2) as u8),
                    mint_asn: s.asns[k % s.asns.len()],
                    redeem_asn: s.asns[(k / 2) % s.asns.len()],
                    minute_of_day_utc: s.minutes[k % s.minutes.len()],
                };
                let d = policy.decide_redemption(&ctx);
                assert_eq!(d, policy.decide_redemption(&ctx), "deterministic");

                // Lifetimes: positive, idle within absolute, never longer
                // than the web client's own.
                let w = policy.web_client(web);
                assert!(d.session_idle <= d.session_absolute);
                assert!(!d.session_idle.is_zero());
                assert!(d.session_absolute <= w.session_absolute);
                assert!(d.session_idle <= w.session_idle);
                assert_eq!(d.revoke_lineage_on_replay, w.revoke_lineage_on_replay);
                if let Some(i) = d.matched_rule {
                    assert!(i < policy.rule_count());
                }

                // The verdict against the client settings.
                let mints = policy.may_mint(native, mint_ip);
                let native_listed = policy
                    .native_client(native)
                    .is_some_and(|c| c.can_create_session_transfer_token);
                assert_eq!(
                    d.verdict == Err(DenyReason::UnknownNativeClient),
                    !native_listed
                );
                if d.is_allowed() {
                    let c = policy.native_client(native).expect("allowed, so listed");
                    assert!(mints && c.allows_web_client(web));
                    assert!(w.allowed_authentication_methods.contains(method));
                    assert!(w.allows_redeem_from(redeem_ip));
                    assert!(d.binding.holds(&ctx));
                }

                // IPv4-mapped IPv6 is the IPv4 address, everywhere.
                let mapped = |ip: IpAddr| match ip {
                    IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
                    v6 => v6,
                };
                let m = RedeemContext {
                    mint_ip: mapped(mint_ip),
                    redeem_ip: mapped(redeem_ip),
                    ..ctx
                };
                assert_eq!(d, policy.decide_redemption(&m), "v4-mapped differs");

                // `explain` agrees (and checks its own trace in debug
                // builds); not on every context, it is slow by design.
                if n % 8 == 0 {
                    let e = explain(&policy, &ctx);
                    assert_eq!(e.decision, d);
                    assert_eq!(
                        e.failed_check().map(|c| c.step.deny_reason()),
                        d.verdict.err()
                    );
                    assert_eq!(e.rules.len(), policy.rule_count());
                    assert!(e.to_string().starts_with("verdict: "));
                }
                n += 1;
            }
        }
    }
    true
}

/// Parses `src` as an ip2asn table. If it parses, looks up the addresses
/// found in the text: an IPv4 address and its IPv4-mapped form agree, and a
/// range's start and end map to an AS (not 0). Returns whether it parsed.
#[allow(dead_code)]
pub fn check_asn_source(src: &str) -> bool {
    use std::net::IpAddr;

    let Ok(table) = handoff_rules::AsnTable::parse(src, "fuzz.tsv") else {
        return false;
    };
    for ip in fuzz_samples(src).ips {
        let asn = table.lookup(ip);
        assert_ne!(asn, Some(0), "AS 0 is not routed");
        if let IpAddr::V4(a) = ip {
            assert_eq!(asn, table.lookup(IpAddr::V6(a.to_ipv6_mapped())));
        }
    }
    for line in src.lines().filter(|l| !l.starts_with('#')) {
        let mut cols = line.split('\t');
        if let (Some(a), Some(b), Some(Ok(asn))) = (
            cols.next().and_then(|a| a.trim().parse::<IpAddr>().ok()),
            cols.next().and_then(|b| b.trim().parse::<IpAddr>().ok()),
            cols.next().map(|n| n.trim().parse::<u32>()),
        ) {
            let want = (asn != 0).then_some(asn);
            assert_eq!(table.lookup(a), want, "start of {line:?}");
            assert_eq!(table.lookup(b), want, "end of {line:?}");
        }
    }
    true
}

/// Values taken from the fuzzed text, so that its rules can match.
#[allow(dead_code)]
pub struct FuzzSamples {
    /// Client ids: words of the text (a `*` in a glob replaced by `x`), plus
    /// a few fixed ones.
    pub ids: Vec<String>,
    /// Addresses in the text (bare, or as the network of a CIDR) and fixed ones.
    pub ips: Vec<std::net::IpAddr>,
    /// (mint, redeem) pairs: equal, neighbours, and across families.
    pub ip_pairs: Vec<(std::net::IpAddr, std::net::IpAddr)>,
    /// AS numbers in the text, `None` and 0.
    pub asns: Vec<Option<u32>>,
    /// Minutes of the day: fixed ones and those of `HH:MM` in the text.
    pub minutes: Vec<u16>,
}

/// Picks client ids, addresses, AS numbers and times of day from `src`.
#[allow(dead_code)]
pub fn fuzz_samples(src: &str) -> FuzzSamples {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    const MAX_IDS: usize = 3;
    const MAX_IPS: usize = 6;
    let mut ids: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    let mut asns: Vec<Option<u32>> = vec![None, Some(0)];
    let mut minutes: Vec<u16> = vec![0, 12 * 60, 23 * 60 + 59];
    let is_word = |c: char| c.is_alphanumeric() || "._-*:/".contains(c);
    let id = |s: &str| s.trim().trim_matches('"').replace('*', "x");
    for line in src.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        // Client ids: of [native.ID] / [web."ID"] headers, and the quoted
        // strings of lines that name clients.
        let mut found: Vec<String> = Vec::new();
        if let Some(rest) = line
            .strip_prefix("[native.")
            .or_else(|| line.strip_prefix("[web."))
        {
            found.push(id(rest.trim_end_matches(']')));
        } else if line.contains("client") {
            let quoted = line.split('"').skip(1).step_by(2);
            found.extend(quoted.map(id));
        }
        for f in found {
            if ids.len() < MAX_IDS && !ids.contains(&f) {
                ids.push(f);
            }
        }
        for word in line.split(|c: char| !is_word(c)).filter(|w| !w.is_empty()) {
            let addr = word.split('/').next().unwrap_or(word);
            if let Ok(ip) = addr.parse::<IpAddr>() {
                if ips.len() < MAX_IPS && !ips.contains(&ip) {
                    ips.push(ip);
                }
            } else if let Ok(n) = word.parse::<u32>() {
                if asns.len() < 5 && !asns.contains(&Some(n)) {
                    asns.push(Some(n));
                }
            } else if let Some((h, m)) = word.split_once(':') {
                if let (Ok(h), Some(Ok(m))) = (h.parse::<u16>(), m.get(..2).map(str::parse::<u16>))
                {
                    if minutes.len() < 6 {
                        minutes.push(((u32::from(h) * 60 + u32::from(m)) % 1440) as u16);
                    }
                }
            }
        }
    }
    ids.push(String::new());
    ips.extend([
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    ]);
    let mut ip_pairs = Vec::new();
    for (i, &a) in ips.iter().enumerate() {
        let b = ips[(i + 1) % ips.len()];
        // The neighbour address: same prefix at most lengths.
        let near = match a {
            IpAddr::V4(x) => IpAddr::V4(Ipv4Addr::from(u32::from(x) ^ 1)),
            IpAddr::V6(x) => IpAddr::V6(Ipv6Addr::from(u128::from(x) ^ 1)),
        };
        ip_pairs.extend([(a, a), (a, b), (a, near)]);
    }
    ip_pairs.truncate(8);
    FuzzSamples {
        ids,
        ips,
        ip_pairs,
        asns,
        minutes,
    }
}
