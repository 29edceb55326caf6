//! Model-info and tree-listing JSON from a hostile server: never panics, and every file it
//! accepts has a valid path, listed once.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use tabcache::hub::fuzzing::{parse_model_info, parse_tree_page};

fuzz_target!(|data: &[u8]| {
    let url = "http://127.0.0.1/api/models/org/name/tree/main";
    if let Ok(info) = parse_model_info(data, url) {
        assert!(tabcache::validate::repo_id(&info.id).is_ok());
        assert!(info.sha.len() == 40 || info.sha.len() == 64);
        for s in &info.siblings {
            assert!(tabcache::validate::repo_path(s).is_ok(), "{s:?}");
        }
    }
    let mut seen = HashSet::new();
    if let Ok(files) = parse_tree_page(data, url, &mut seen) {
        let mut unique = HashSet::new();
        for f in files {
            assert!(tabcache::validate::repo_path(&f.path).is_ok(), "{:?}", f.path);
            assert!(unique.insert(f.path.clone()), "listed twice: {:?}", f.path);
            if let Some(sha) = &f.sha256 {
                assert!(tabcache::digest::is_hex_of_len(sha, 32), "{sha:?}");
            }
        }
    }
});
