//! Name validation on arbitrary strings: never panics, and whatever it accepts cannot leave the
//! directory it is joined to.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if tabcache::validate::repo_path(s).is_ok() {
        let joined = Path::new("/cache/snapshot").join(s);
        assert!(joined.starts_with("/cache/snapshot"), "{s:?} escapes");
        assert!(
            Path::new(s).components().all(|c| matches!(c, Component::Normal(_))),
            "{s:?} has a non-normal component"
        );
    }
    if tabcache::validate::repo_id(s).is_ok() {
        assert!(!s.contains("..") && !s.starts_with('/') && s.split('/').count() <= 2, "{s:?}");
        assert!(Path::new(s).components().all(|c| matches!(c, Component::Normal(_))), "{s:?}");
    }
    if tabcache::validate::revision(s).is_ok() {
        assert!(!s.contains("..") && !s.starts_with('/') && !s.contains('\\'), "{s:?}");
    }
});
