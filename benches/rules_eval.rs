//! How fast is a redemption decision, and does it allocate? (SPEC §4.3: rule
//! evaluation does no I/O and no allocation on the hot path.)
//!
//! Two generated rules files, each with 200 rules and 1,000 networks:
//!
//! - `realistic`: rules filter on web/native client, method, ASN and time of
//!   day as well as networks, the way a real file would;
//! - `networks_only`: every rule has only a `redeem_network` matcher with five
//!   networks, and the request is in none of them: the worst case for the
//!   network matchers (a linear scan would test all 1,000 networks);
//!
//! and, for contrast, `clients_only`: 200 rules with client globs only, which
//! the rule index cannot narrow, so every decision checks every rule.
//!
//! A counting global allocator counts heap allocations during a run of
//! decisions; the bench prints allocations per decision and fails if it is not
//! zero.
//!
//! Run: `cargo bench --bench rules_eval` (add `-- --quick` for a short run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use handoff_rules::{AuthMethod, Policy, RedeemContext};

/// Counts every allocation (all threads; the measured loop runs on one).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RULES: usize = 200;
const NETS_PER_RULE: usize = 5;
const NATIVES: usize = 20;
const WEBS: usize = 50;

/// The `k`-th network of rule `i`: IPv4 /24s for even rules, IPv6 /48s for odd.
fn network(i: usize, k: usize) -> String {
    if i % 2 == 0 {
        format!("10.{}.{}.0/24", i, k * 10)
    } else {
        format!("2001:db8:{:x}{:02x}::/48", i, k)
    }
}

fn clients(out: &mut String) {
    out.push_str("[binding]\nipv4_prefix = 24\nipv6_prefix = 64\n\n");
    out.push_str("[fingerprint]\nheaders = [\"x-device-id\"]\n\n");
    for n in 0..NATIVES {
        let _ = writeln!(
            out,
            "[native.app-{n}]\ncan_create_session_transfer_token = true\nallowed_web_clients = [\"web-*\"]\ndenied_networks = [\"192.0.2.0/24\"]\n"
        );
    }
    out.push_str("[native.\"beta-*\"]\ncan_create_session_transfer_token = true\nallowed_web_clients = [\"web-1*\"]\n\n");
    for w in 0..WEBS {
        let _ = writeln!(
            out,
            "[web.web-{w}]\nallowed_authentication_methods = [\"cookie\", \"query\"]\nenforce_device_binding = \"ip_prefix\"\nsession_absolute = \"{}m\"\nsession_idle = \"10m\"\n",
            20 + w
        );
    }
}

/// 200 rules, 1,000 networks, matchers of every kind.
fn realistic_file() -> String {
    let mut out = String::new();
    clients(&mut out);
    for i in 0..RULES {
        let _ = writeln!(out, "[[rule]]\nname = \"rule {i}\"");
        match i % 4 {
            0 => {
                let _ = writeln!(
                    out,
                    "web_client = [\"web-{}\", \"web-{}\"]",
                    i % WEBS,
                    (i + 7) % WEBS
                );
            }
            1 => {
                let _ = writeln!(out, "native_client = \"app-{}\"", i % NATIVES);
            }
            _ => {}
        }
        if i % 5 == 0 {
            out.push_str("method = \"query\"\n");
        }
        let nets: Vec<String> = (0..NETS_PER_RULE)
            .map(|k| format!("\"{}\"", network(i, k)))
            .collect();
        let key = if i % 3 == 0 {
            "mint_network"
        } else {
            "redeem_network"
        };
        let _ = writeln!(out, "{key} = [{}]", nets.join(", "));
        if i % 9 == 0 {
            let _ = writeln!(out, "redeem_asn = [{}, {}]", 64496 + i, 64497 + i);
        }
        if i % 7 == 0 {
            out.push_str("time_of_day = \"22:00-06:00\"\n");
        }
        if i % 11 == 0 {
            out.push_str("networks_differ = true\n");
        }
        match i % 10 {
            3 => out.push_str("deny = true\n"),
            5 => out.push_str("binding = \"ip+fingerprint\"\n"),
            7 => out.push_str("allow_refresh_token = true\n"),
            _ => {
                let _ = writeln!(
                    out,
                    "session_absolute = \"{}m\"\nsession_idle = \"5m\"",
                    10 + i % 20
                );
            }
        }
        out.push('\n');
    }
    out
}

/// 200 rules of five networks each, nothing else: every network is tested
/// for a request that matches none.
fn networks_only_file() -> String {
    let mut out = String::new();
    clients(&mut out);
    for i in 0..RULES {
        let nets: Vec<String> = (0..NETS_PER_RULE)
            .map(|k| format!("\"{}\"", network(i, k)))
            .collect();
        let _ = writeln!(
            out,
            "[[rule]]\nredeem_network = [{}]\nsession_absolute = \"{}m\"\n",
            nets.join(", "),
            10 + i % 20
        );
    }
    out
}

/// 200 rules that the index cannot narrow down (no network or method
/// matcher): each has client globs, so every request is checked against
/// every rule. The worst case for the rule walk itself (no networks).
fn clients_only_file() -> String {
    let mut out = String::new();
    clients(&mut out);
    for i in 0..RULES {
        let _ = writeln!(
            out,
            "[[rule]]\nweb_client = [\"shop-{i}-*\", \"*-beta-{i}\"]\nnative_client = \"app-*\"\nsession_absolute = \"{}m\"\n",
            10 + i % 20
        );
    }
    out
}

fn policy(src: &str, name: &str, networks: usize) -> Policy {
    let p = Policy::from_toml(src, name).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.rule_count(), RULES);
    let rules = &src[src.find("[[rule]]").expect("rules")..];
    let nets = rules.matches("/24\"").count() + rules.matches("/48\"").count();
    assert_eq!(nets, networks, "{name}: networks in rules");
    p
}

/// The client ids of request `j`, aimed at rule `(j * 37) % RULES`: for half
/// of the requests they pass its client matchers, for the others they are a
/// spread of listed, unlisted and unmatched ids.
fn request_clients() -> Vec<(String, String)> {
    (0..256usize)
        .map(|j| {
            let i = (j * 37) % RULES;
            let (native, web) = if j % 4 < 2 {
                (
                    if i % 4 == 1 { i % NATIVES } else { j % NATIVES },
                    if i % 4 == 0 { i % WEBS } else { j % WEBS },
                )
            } else {
                (j % (NATIVES + 2), (j * 7) % (WEBS + 5))
            };
            let native = match native {
                n if n < NATIVES => format!("app-{n}"),
                n if n == NATIVES => "beta-7".to_owned(),
                _ => "unknown".to_owned(),
            };
            (native, format!("web-{web}"))
        })
        .collect()
}

/// A spread of requests: half aimed at one rule (inside its networks, with
/// its method, ASN and time of day), half outside every rule network; IPv4,
/// IPv6 and IPv4-mapped; fingerprints equal or not.
fn contexts(clients: &[(String, String)]) -> Vec<RedeemContext<'_>> {
    let ip_in = |i: usize, k: usize, host: u8| -> IpAddr {
        if i % 2 == 0 {
            IpAddr::V4(Ipv4Addr::new(10, i as u8, (k * 10) as u8, host))
        } else {
            let hi = ((i as u16) << 8) | k as u16;
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                hi,
                7,
                0,
                0,
                0,
                u16::from(host),
            ))
        }
    };
    let mut out = Vec::new();
    for (j, (native, web)) in clients.iter().enumerate() {
        let i = (j * 37) % RULES;
        let aimed = j % 4 < 2;
        let (mint, redeem) = match j % 4 {
            // Same network, or (for `networks_differ` rules) another of the
            // rule's networks.
            0 | 1 if i % 11 == 0 => (ip_in(i, 0, 1), ip_in(i, 3, 2)),
            0 => (ip_in(i, j % 5, 1), ip_in(i, j % 5, 2)),
            1 => (ip_in(i, 4, 9), ip_in(i, 4, 9)),
            2 => {
                let a = IpAddr::V4(Ipv4Addr::new(203, 0, 113, j as u8));
                (a, a)
            }
            _ => {
                let v4 = Ipv4Addr::new(198, 51, 100, j as u8);
                (IpAddr::V4(v4), IpAddr::V6(v4.to_ipv6_mapped()))
            }
        };
        let asn = if aimed && i % 9 == 0 {
            64496 + i as u32
        } else {
            64000 + j as u32
        };
        out.push(RedeemContext {
            native_client: native,
            web_client: web,
            method: if (aimed && i % 5 == 0) || j % 3 == 0 {
                AuthMethod::Query
            } else {
                AuthMethod::Cookie
            },
            mint_ip: mint,
            redeem_ip: redeem,
            mint_fingerprint: Some([1; 32]),
            redeem_fingerprint: Some([u8::from(j % 5 != 0); 32]),
            mint_asn: Some(asn),
            redeem_asn: (j % 6 != 5).then_some(asn),
            minute_of_day_utc: if aimed && i % 7 == 0 {
                23 * 60
            } else {
                ((j * 97) % 1440) as u16
            },
        });
    }
    out
}

/// Decides `n` times over `ctxs`; returns allocations per decision.
fn allocations_per_decision(p: &Policy, ctxs: &[RedeemContext<'_>], n: usize) -> f64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..n {
        black_box(p.decide_redemption(black_box(&ctxs[i % ctxs.len()])));
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before) as f64 / n as f64
}

fn bench(c: &mut Criterion) {
    let clients = request_clients();
    let all_nets = RULES * NETS_PER_RULE;
    let realistic = policy(&realistic_file(), "realistic.toml", all_nets);
    let worst = policy(&networks_only_file(), "networks_only.toml", all_nets);
    let unindexed = policy(&clients_only_file(), "clients_only.toml", 0);
    let ctxs = contexts(&clients);
    let allowed = ctxs
        .iter()
        .filter(|x| realistic.decide_redemption(x).is_allowed())
        .count();
    let matched = ctxs
        .iter()
        .filter(|x| realistic.decide_redemption(x).matched_rule.is_some())
        .count();
    println!(
        "realistic: {} requests, {allowed} allowed, {matched} matched at least one rule",
        ctxs.len()
    );
    assert!(
        matched >= ctxs.len() / 4,
        "the requests should exercise the rules"
    );
    // Not in any rule network, a listed native client, allowed web client.
    let miss = RedeemContext {
        native_client: "app-1",
        web_client: "web-1",
        method: AuthMethod::Cookie,
        mint_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        redeem_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
        mint_fingerprint: None,
        redeem_fingerprint: None,
        mint_asn: None,
        redeem_asn: None,
        minute_of_day_utc: 720,
    };
    let miss6 = RedeemContext {
        mint_ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 1, 0, 0, 0, 1)),
        redeem_ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 1, 0, 0, 0, 2)),
        ..miss
    };
    assert_eq!(worst.decide_redemption(&miss).matched_rule, None);
    assert_eq!(worst.decide_redemption(&miss6).matched_rule, None);
    assert!(worst.decide_redemption(&miss).is_allowed());

    assert_eq!(unindexed.decide_redemption(&miss).matched_rule, None);
    for (name, p, cs) in [
        ("realistic", &realistic, &ctxs[..]),
        ("networks_only/ipv4", &worst, std::slice::from_ref(&miss)),
        ("networks_only/ipv6", &worst, std::slice::from_ref(&miss6)),
        ("clients_only", &unindexed, std::slice::from_ref(&miss)),
    ] {
        let per = allocations_per_decision(p, cs, 100_000);
        println!("{name}: {per} heap allocations per decision (100000 decisions)");
        assert_eq!(per, 0.0, "{name}: decide_redemption allocated");
    }

    let mut g = c.benchmark_group("decide_redemption_200_rules_1000_networks");
    g.bench_function("realistic", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ctxs.len();
            realistic.decide_redemption(black_box(&ctxs[i]))
        })
    });
    g.bench_function("networks_only/ipv4", |b| {
        b.iter(|| worst.decide_redemption(black_box(&miss)))
    });
    g.bench_function("networks_only/ipv6", |b| {
        b.iter(|| worst.decide_redemption(black_box(&miss6)))
    });
    g.bench_function("clients_only", |b| {
        b.iter(|| unindexed.decide_redemption(black_box(&miss)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
