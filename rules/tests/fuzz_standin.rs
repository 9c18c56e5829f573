//! A cheap stand-in for the `cargo fuzz` targets in `rules/fuzz/`, on stable
//! and in CI: the same body (`fuzz/check.rs`) over a few thousand inputs made
//! by mutating the examples and golden files with a seeded PRNG.
//!
//! `HANDOFF_FUZZ_ITERS=100000 HANDOFF_FUZZ_SEED=7 cargo test -p handoff-rules
//! --release --test fuzz_standin` runs longer or elsewhere; a failure prints
//! the seed and the input.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

include!("../fuzz/check.rs");

/// xorshift64*: deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values worth trying in place of a value: edges, wrong types, near-misses.
const VALUES: &[&str] = &[
    "true",
    "false",
    "0",
    "-1",
    "1",
    "32",
    "33",
    "128",
    "129",
    "99999999999999999999",
    "\"\"",
    "\"*\"",
    "[]",
    "[\"*\"]",
    "{}",
    "1.5",
    "1979-05-27",
    "\"0s\"",
    "\"1s\"",
    "\"59s\"",
    "\"5m\"",
    "\"5m1s\"",
    "\"1h30m\"",
    "\"1d\"",
    "\"30m15m\"",
    "\"none\"",
    "\"ip\"",
    "\"ip_prefix\"",
    "\"asn\"",
    "\"fingerprint\"",
    "\"ip_prefix+fingerprint\"",
    "\"asn+fingerprint\"",
    "\"ip+asn\"",
    "\"fingerprint+ip\"",
    "\"cookie\"",
    "\"query\"",
    "[\"cookie\", \"query\"]",
    "[\"query\", \"query\"]",
    "\"10.0.0.0/8\"",
    "\"10.1.2.3/8\"",
    "\"0.0.0.0/0\"",
    "\"::/0\"",
    "\"::ffff:10.0.0.0/104\"",
    "\"2001:db8::/32\"",
    "[\"203.0.113.0/24\", \"2001:db8::/48\"]",
    "\"::10.0.0.1\"",
    "64500",
    "[64500, 0]",
    "[4294967295]",
    "4294967296",
    "\"22:00-06:00\"",
    "\"00:00-24:00\"",
    "\"24:00-01:00\"",
    "\"09:00-09:00\"",
    "\"23:59-00:00\"",
    "\"é*ü\"",
    "\"shop-*\"",
    "\"*-*\"",
    "[\"a\", \"a\"]",
    "\"\\u0000\"",
    "'literal'",
    "\"\"\"multi\nline\"\"\"",
];

/// Whole lines worth inserting.
const LINES: &[&str] = &[
    "[[rule]]",
    "[rule]",
    "[web.\"*\"]",
    "[web.spa]",
    "[native.\"*\"]",
    "[native.app]",
    "[defaults.web]",
    "[defaults.native]",
    "[defaults]",
    "[binding]",
    "[fingerprint]",
    "allow_unbound = true",
    "binding = \"none\"",
    "enforce_device_binding = \"none\"",
    "deny = true",
    "deny = false",
    "networks_differ = true",
    "headers = [\"x-device-id\"]",
    "headers = []",
    "ipv4_prefix = 1",
    "ipv6_prefix = 128",
    "can_create_session_transfer_token = true",
    "allowed_web_clients = [\"*\"]",
    "session_idle = \"1d\"",
    "session_absolute = \"1s\"",
    "redeem_asn = []",
    "web_client = []",
    "unknown_key = 1",
    "rule = 5",
    "[[web]]",
    "a.b.c = 1",
    "\"quoted key\" = 2",
    "[native.\"\"]",
    "",
    "#",
    "=",
    "[",
    "]]",
];

/// Characters worth inserting: TOML syntax, multi-byte, control.
const CHARS: &[char] = &[
    '"', '\'', '[', ']', '{', '}', '=', ',', '.', '#', '\n', '\r', '\t', ' ', '*', '\\', ':', '-',
    '/', '0', '9', 'é', 'ü', '→', '😀', '\u{0}', '\u{7f}', '\u{feff}',
];

fn char_boundary(s: &str, rng: &mut Rng) -> usize {
    let mut i = rng.below(s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(src: &str, seeds: &[String], rng: &mut Rng) -> String {
    let mut s = src.to_owned();
    for _ in 0..1 + rng.below(3) {
        let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
        let n = lines.len();
        match rng.below(10) {
            0 if n > 0 => {
                lines.remove(rng.below(n));
            }
            1 if n > 0 => {
                let l = lines[rng.below(n)].clone();
                lines.insert(rng.below(n + 1), l);
            }
            2 if n > 1 => {
                let (a, b) = (rng.below(n), rng.below(n));
                lines.swap(a, b);
            }
            3 => {
                let other: Vec<&str> = rng.pick(seeds).lines().collect();
                if !other.is_empty() {
                    let l = (*rng.pick(&other)).to_owned();
                    lines.insert(rng.below(n + 1), l);
                }
            }
            4 | 5 => {
                // Replace the value of a `key = value` line.
                let with_value: Vec<usize> = (0..n).filter(|&i| lines[i].contains(" = ")).collect();
                if !with_value.is_empty() {
                    let i = *rng.pick(&with_value);
                    let key = lines[i].split(" = ").next().unwrap_or_default().to_owned();
                    lines[i] = format!("{key} = {}", rng.pick(VALUES));
                }
            }
            6 => lines.insert(rng.below(n + 1), (*rng.pick(LINES)).to_owned()),
            7 => {
                let mut t = lines.join("\n");
                let i = char_boundary(&t, rng);
                t.insert(i, *rng.pick(CHARS));
                s = t;
                continue;
            }
            8 => {
                let mut t = lines.join("\n");
                let (a, b) = (char_boundary(&t, rng), char_boundary(&t, rng));
                let (lo, mut hi) = (a.min(b), a.max(b).min(a.min(b) + 40));
                while !t.is_char_boundary(hi) {
                    hi -= 1;
                }
                t.replace_range(lo..hi, "");
                s = t;
                continue;
            }
            _ => {
                let mut t = lines.join("\n");
                t.truncate(char_boundary(&t, rng));
                s = t;
                continue;
            }
        }
        s = lines.join("\n");
        s.push('\n');
    }
    s
}

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    // The examples first: `mutated_rules_files_keep_the_invariants` counts on it.
    for dir in ["examples", "tests/golden"] {
        let mut files: Vec<_> = fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        out.extend(files.iter().map(|p| fs::read_to_string(p).unwrap()));
    }
    assert!(out.len() >= 8, "seed files missing");
    out
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(input: &str, check: fn(&str) -> bool, seed: u64, i: u64) -> bool {
    match catch_unwind(AssertUnwindSafe(|| check(input))) {
        Ok(valid) => valid,
        Err(_) => panic!("input {i} (HANDOFF_FUZZ_SEED={seed}) broke an invariant:\n{input:?}"),
    }
}

#[test]
fn seeds_pass_the_fuzz_body() {
    for (i, s) in seeds().iter().enumerate() {
        run(s, check_rules_source, 0, i as u64);
    }
    // The valid seeds validate (the golden ones are mostly invalid on purpose).
    for name in ["strict", "mobile", "corporate"] {
        let src = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.toml")),
        )
        .unwrap();
        assert!(check_rules_source(&src), "{name}");
    }
}

#[test]
fn mutated_rules_files_keep_the_invariants() {
    let seed = env_or("HANDOFF_FUZZ_SEED", 0x5eed_2024);
    let iters = env_or("HANDOFF_FUZZ_ITERS", 3000);
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let mut valid = 0;
    for i in 0..iters {
        // Mostly the (valid) examples, which come first; the golden files are
        // invalid on purpose.
        let base = if rng.below(3) > 0 {
            &seeds[rng.below(3)]
        } else {
            rng.pick(&seeds)
        };
        let input = mutate(base, &seeds, &mut rng);
        if run(&input, check_rules_source, seed, i) {
            valid += 1;
        }
    }
    // The mix must exercise evaluation, not only the error paths.
    eprintln!("{valid} of {iters} mutated inputs validated");
    assert!(
        valid * 6 >= iters,
        "only {valid} of {iters} mutated inputs validated"
    );
    assert!(valid < iters, "no mutation was rejected");
}

#[test]
fn mutated_asn_tables_keep_the_invariants() {
    let seed = env_or("HANDOFF_FUZZ_SEED", 0x5eed_2024);
    let iters = env_or("HANDOFF_FUZZ_ITERS", 3000) / 3;
    let table = "# ip2asn\n1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n\
        1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
        1.0.4.0\t1.0.7.255\t38803\tAU\tGTELECOM\n\
        ::ffff:9.0.0.0\t::ffff:9.0.0.255\t64501\tZZ\tMAPPED\n\
        2001:db8::\t2001:db8:ffff:ffff:ffff:ffff:ffff:ffff\t64500\tZZ\tDOC\n\
        2001:db9::\t2001:db9::ffff\t64502\tZZ\tDOC2\n"
        .to_owned();
    assert!(check_asn_source(&table));
    let seeds = vec![table];
    let mut rng = Rng(seed | 1);
    let mut valid = 0;
    for i in 0..iters {
        let input = mutate(&seeds[0], &seeds, &mut rng);
        if run(&input, check_asn_source, seed, i) {
            valid += 1;
        }
    }
    assert!(valid > 0 && valid < iters, "{valid} of {iters} parsed");
}
