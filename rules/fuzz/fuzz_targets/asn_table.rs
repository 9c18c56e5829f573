//! Arbitrary UTF-8 → `AsnTable::parse`; when it parses, look up addresses from
//! the text and check the invariants in `check.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check.rs");

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        check_asn_source(src);
    }
});
