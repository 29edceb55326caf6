//! The resolve walk (`X-Linked-*`, `ETag`, `Content-Length`, `Location` over redirect hops) and
//! the size and `Content-Range` parsers on arbitrary responses: never panics, never believes a
//! size over 1 PiB, a commit that is not one, or a target that is not an http(s) URL, and
//! ends within the redirect bound.
//!
//! Input: hops separated by a blank line; each is a status line (`302`) and `name: value`
//! header lines. The first hop answers the resolve URL, each next one the target before it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tabcache::download::MAX_FILE_SIZE;
use tabcache::hub::fuzzing::{parse_content_range, parse_size, server_name, Step, Walk};

/// An absolute http(s) URL (schemes are case-insensitive).
fn is_http(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

const START: &str = "http://127.0.0.1:8080/org/model/resolve/main/model.safetensors";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut walk = Walk::new(START);
    let mut url = START.to_string();
    for (n, hop) in text.split("\n\n").enumerate() {
        let mut lines = hop.lines();
        let Some(status) = lines.next().and_then(|l| l.trim().parse::<u16>().ok()) else {
            return;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        for (_, value) in &headers {
            if let Some(size) = parse_size(value) {
                assert!(
                    value.trim().bytes().all(|b| b.is_ascii_digit()),
                    "{value:?} -> {size}"
                );
            }
            if let Some((first, last, _)) = parse_content_range(value) {
                assert!(
                    value.contains(&first.to_string()) || first == u64::MAX,
                    "{value:?}"
                );
                assert!(
                    value.contains(&last.to_string()) || last == u64::MAX,
                    "{value:?}"
                );
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        match walk.step(&url, status, &header) {
            Err(_) => return,
            Ok(Step::Next(next)) => {
                assert!(n < 10, "followed more than 10 redirects");
                assert!(is_http(&next), "{next:?}");
                let _ = server_name(&next);
                url = next;
            }
            Ok(Step::Done(resolved)) => {
                assert!(
                    resolved.size.is_none_or(|s| s <= MAX_FILE_SIZE),
                    "{resolved:?}"
                );
                assert!(!resolved.etag.is_empty(), "{resolved:?}");
                if let Some(commit) = &resolved.commit {
                    assert!(
                        commit.len() == 40
                            && commit
                                .bytes()
                                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                        "{resolved:?}"
                    );
                }
                assert!(is_http(&resolved.url), "{resolved:?}");
                return;
            }
        }
    }
});
