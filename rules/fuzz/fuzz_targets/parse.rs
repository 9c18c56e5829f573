//! Arbitrary UTF-8 → `Policy::from_toml`; when it validates, decide and explain
//! redemptions built from the file's own ids, addresses and AS numbers, and
//! check the invariants in `check.rs` (shared with the stand-in test
//! `rules/tests/fuzz_standin.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check.rs");

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        check_rules_source(src);
    }
});
