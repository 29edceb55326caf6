//! The `Link` header parser on arbitrary headers: never panics, and a next link it finds is a
//! substring of the header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    if let Some(next) = tabcache::hub::fuzzing::next_link(header) {
        assert!(header.contains(next.as_str()), "{next:?} not in {header:?}");
    }
});
