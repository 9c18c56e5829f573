//! `decide_redemption` and `AsnTable::lookup` run on every redemption: prove
//! they do not allocate, with a global allocator that counts this thread's
//! allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use handoff_rules::{AsnTable, AuthMethod, Policy, RedeemContext};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the thread-local may already be gone during thread exit.
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn the_counter_counts() {
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8]))) > 0);
}

#[test]
fn deciding_does_not_allocate() {
    for name in ["strict", "mobile", "corporate"] {
        deciding_does_not_allocate_with(name);
    }
}

fn deciding_does_not_allocate_with(name: &str) {
    let path = format!("{}/examples/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(path).unwrap();
    let policy = Policy::from_toml(&src, name).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let contexts = [
        (
            "com.example.ios",
            "account-portal",
            AuthMethod::Cookie,
            "203.0.113.7",
            "203.0.113.9",
            600,
        ),
        (
            "com.example.android.beta",
            "shop-eu",
            AuthMethod::Query,
            "2001:db8::1",
            "::ffff:198.51.100.4",
            1400,
        ),
        (
            "unknown",
            "unknown",
            AuthMethod::Query,
            "192.0.2.1",
            "192.0.2.1",
            0,
        ),
        (
            "com.example.app",
            "shop",
            AuthMethod::Query,
            "10.1.4.20",
            "10.2.4.20",
            1300,
        ),
        (
            "corp.workspace.ios",
            "payments",
            AuthMethod::Cookie,
            "10.1.4.20",
            "10.8.4.20",
            1300,
        ),
    ];
    for (native, web, method, mint, redeem, minute) in contexts {
        let ctx = RedeemContext {
            native_client: native,
            web_client: web,
            method,
            mint_ip: ip(mint),
            redeem_ip: ip(redeem),
            mint_fingerprint: Some([7; 32]),
            redeem_fingerprint: Some([7; 32]),
            mint_asn: Some(64500),
            redeem_asn: None,
            minute_of_day_utc: minute,
        };
        let mut decision = None;
        let n = allocations_in(|| decision = Some(policy.decide_redemption(&ctx)));
        assert_eq!(
            n, 0,
            "decide_redemption allocated for {ctx:?} -> {decision:?}"
        );
    }
}

#[test]
fn asn_lookup_does_not_allocate() {
    let table = AsnTable::parse(
        "1.0.0.0\t1.0.0.255\t13335\tUS\tX\n2001:db8::\t2001:db8::ffff\t64500\tZZ\tY\n",
        "t.tsv",
    )
    .unwrap();
    let probes: [IpAddr; 3] = [
        "1.0.0.7".parse().unwrap(),
        "::ffff:1.0.0.7".parse().unwrap(),
        "2001:db8::5".parse().unwrap(),
    ];
    let mut found = 0;
    let n = allocations_in(|| found = probes.iter().filter_map(|&p| table.lookup(p)).count());
    assert_eq!((n, found), (0, 3));
}
