//! URL plumbing the client needs and nothing more: percent-encoding of path segments (as
//! Python's `urllib.parse.quote` does), the origin (scheme, host, port) that decides where the
//! token may go, and resolving a `Location`/`Link` target against the request URL.

use crate::error::{Error, Result};

/// Percent-encode every byte except letters, digits, `-_.~` and the bytes in `safe`
/// (`quote(s, safe="")` for revisions, `quote(path)` keeps `/`).
pub fn quote(s: &str, safe: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || safe.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Scheme, host and effective port: the unit of trust for the `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an absolute http(s) URL; None for anything else.
    pub fn of(url: &str) -> Option<Origin> {
        let uri: ureq::http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let host = uri.host()?.to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        Some(Origin {
            port: uri.port_u16().unwrap_or(default_port),
            scheme,
            host,
        })
    }
}

/// `host:port` of an absolute URL, as errors name the server that sent something wrong (the
/// port is the effective one, so a message is unambiguous even when the URL left it out);
/// the URL itself, cut at its path, when it is not one.
pub fn server_name(url: &str) -> String {
    match Origin::of(url) {
        Some(origin) if origin.host.contains(':') => {
            format!("[{}]:{}", origin.host.trim_matches(['[', ']']), origin.port)
        }
        Some(origin) => format!("{}:{}", origin.host, origin.port),
        None => super::status::display_url(url).chars().take(200).collect(),
    }
}

/// Resolve `target` (absolute, scheme-relative, absolute-path or relative-path, as servers put
/// in `Location` and `Link`) against the absolute URL `base`.
pub fn join(base: &str, target: &str) -> Result<String> {
    let target = target.trim();
    let bad = || {
        Error::new(
            crate::ErrorKind::Http,
            format!("the server sent an unusable URL {target:?} (relative to {base})"),
        )
    };
    if target.is_empty() || target.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad());
    }
    if has_scheme(target) {
        return Origin::of(target)
            .map(|_| target.to_string())
            .ok_or_else(bad);
    }
    let scheme_end = base.find("://").ok_or_else(bad)?;
    let authority_start = scheme_end + 3;
    let path_start = base[authority_start..]
        .find(['/', '?', '#'])
        .map_or(base.len(), |i| authority_start + i);
    let joined = if let Some(rest) = target.strip_prefix("//") {
        format!("{}//{rest}", &base[..scheme_end + 1])
    } else if target.starts_with('/') {
        format!("{}{target}", &base[..path_start])
    } else {
        let base_path_end = base[path_start..]
            .find(['?', '#'])
            .map_or(base.len(), |i| path_start + i);
        let base_path = &base[path_start..base_path_end];
        if target.starts_with('?') {
            format!("{}{target}", &base[..base_path_end])
        } else {
            let dir_end = base_path.rfind('/').map_or(0, |i| i + 1);
            let dir = if dir_end == 0 {
                "/"
            } else {
                &base_path[..dir_end]
            };
            format!("{}{dir}{target}", &base[..path_start])
        }
    };
    Origin::of(&joined).map(|_| joined).ok_or_else(bad)
}

fn has_scheme(s: &str) -> bool {
    match s.find(':') {
        Some(i) if i > 0 => {
            let scheme = &s[..i];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !s[..i].contains('/')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_python() {
        assert_eq!(quote("refs/pr/1", ""), "refs%2Fpr%2F1");
        assert_eq!(quote("main", ""), "main");
        assert_eq!(quote("dir/a b+c%.gguf", "/"), "dir/a%20b%2Bc%25.gguf");
        assert_eq!(quote("é~_-.", ""), "%C3%A9~_-.");
    }

    #[test]
    fn origins() {
        let a = Origin::of("https://huggingface.co/api/models/x").unwrap();
        assert_eq!(
            Some(a.clone()),
            Origin::of("HTTPS://HuggingFace.co:443/other")
        );
        assert_ne!(Some(a.clone()), Origin::of("http://huggingface.co/api"));
        assert_ne!(
            Some(a.clone()),
            Origin::of("https://cdn-lfs.huggingface.co/x")
        );
        assert_ne!(Some(a), Origin::of("https://huggingface.co:8443/x"));
        assert_eq!(
            Origin::of("http://127.0.0.1:1234/x"),
            Origin::of("http://127.0.0.1:1234")
        );
        assert_ne!(
            Origin::of("http://127.0.0.1:1234/x"),
            Origin::of("http://127.0.0.1:1235/x")
        );
        assert_eq!(Origin::of("ftp://h/x"), None);
        assert_eq!(
            server_name("http://127.0.0.1:1234/a/b?c=1"),
            "127.0.0.1:1234"
        );
        assert_eq!(server_name("https://LocalHost/x"), "localhost:443");
        assert_eq!(server_name("http://[::1]:8/x"), "[::1]:8");
        assert_eq!(Origin::of("/relative"), None);
    }

    #[test]
    fn joining() {
        let base = "http://127.0.0.1:9/api/models/a/b/tree/main?recursive=true";
        assert_eq!(
            join(base, "https://cdn.example/x?sig=1").unwrap(),
            "https://cdn.example/x?sig=1"
        );
        assert_eq!(join(base, "//cdn:8/x").unwrap(), "http://cdn:8/x");
        assert_eq!(
            join(base, "/api/models/a/b/tree/main/?c=2").unwrap(),
            "http://127.0.0.1:9/api/models/a/b/tree/main/?c=2"
        );
        assert_eq!(
            join(base, "main/").unwrap(),
            "http://127.0.0.1:9/api/models/a/b/tree/main/"
        );
        assert_eq!(
            join(base, "?cursor=3").unwrap(),
            "http://127.0.0.1:9/api/models/a/b/tree/main?cursor=3"
        );
        assert_eq!(join("http://h:1", "x").unwrap(), "http://h:1/x");
        for bad in ["", "javascript:alert(1)", "ftp://h/x", "/a b", "http://"] {
            assert!(join(base, bad).is_err(), "{bad:?}");
        }
    }
}
