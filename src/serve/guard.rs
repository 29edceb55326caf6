//! Who may ask, checked before any route: the `Host` header (a loopback name or one the user
//! allowed, so a DNS-rebinding page cannot reach the cache under its own name), the access
//! token (`Authorization: Bearer`, compared in constant time), and CORS (headers only for the
//! origins the user allowed, on every answer including errors; preflights answered without the
//! token, since browsers never send credentials on them).

use hyper::header::{self, HeaderMap, HeaderValue};

/// The response headers a page may read besides the safelisted ones: what transformers.js
/// reads to size a file (`Content-Range`, `Content-Length`) and what Hub clients check.
const EXPOSE_HEADERS: &str =
    "Content-Range, Content-Length, ETag, X-Repo-Commit, X-Linked-Size, X-Linked-Etag, X-Error-Code, X-Error-Message";

pub(crate) const ALLOW_METHODS: &str = "GET, HEAD, POST, OPTIONS";

/// Whether `host` (the `Host` header) names this server: `127.0.0.1`, `localhost` or `[::1]`,
/// or one of `allowed` (lower-case names), with any port or none.
pub(crate) fn host_allowed(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = strip_port(host.trim()).to_ascii_lowercase();
    matches!(name.as_str(), "127.0.0.1" | "localhost" | "[::1]") || allowed.contains(&name)
}

/// `name` of `name:port`; an IPv6 literal keeps its brackets.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether the request carries `Authorization: Bearer <token>` (when a token is required).
pub(crate) fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
    else {
        return false;
    };
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Equality whose time depends on the lengths only, so the token cannot be guessed byte by
/// byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Access-Control-Allow-Origin` value for a request from `origin`: that origin when the
/// user allowed it exactly, `*` when the user allowed `*`, else none.
pub(crate) fn allowed_origin(origin: Option<&str>, allowed: &[String]) -> Option<HeaderValue> {
    let origin = origin?;
    if allowed.iter().any(|a| a == origin) {
        return HeaderValue::from_str(origin).ok();
    }
    allowed
        .iter()
        .any(|a| a == "*")
        .then(|| HeaderValue::from_static("*"))
}

/// Add the CORS headers an answer to `origin` carries (none for an origin not allowed).
pub(crate) fn add_cors(headers: &mut HeaderMap, origin: Option<&str>, allowed: &[String]) {
    // Caches between us and a browser must not hand one origin's answer to another.
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(value) = allowed_origin(origin, allowed) else {
        return;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}

/// The headers of an answer to a preflight from an allowed origin (the caller adds the CORS
/// headers every answer gets). The headers asked for are granted as asked: the origin is one
/// the user trusts, and every endpoint is read-only.
pub(crate) fn preflight_headers(request: &HeaderMap, out: &mut HeaderMap) {
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    // Chrome's Private Network Access preflight: a page may reach a loopback server only when
    // the server says so.
    if request
        .get("access-control-request-private-network")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        out.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let allowed = vec!["cache-host".to_string()];
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8765",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "[::1]",
            "cache-host:8765",
            "Cache-Host",
        ] {
            assert!(host_allowed(Some(ok), &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8765",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "[::2]:80",
            "",
            "cache-host.evil",
        ] {
            assert!(!host_allowed(Some(bad), &allowed), "{bad}");
        }
        assert!(!host_allowed(None, &allowed));
    }

    #[test]
    fn tokens() {
        let mut headers = HeaderMap::new();
        assert!(authorized(&headers, None));
        assert!(!authorized(&headers, Some("s3cret")));
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&headers, Some("s3cret")));
        assert!(!authorized(&headers, Some("s3cre")));
        assert!(!authorized(&headers, Some("s3cret!")));
        headers.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!authorized(&headers, Some("s3cret")));
    }

    #[test]
    fn origins() {
        let allowed = vec!["chrome-extension://abc".to_string()];
        assert_eq!(
            allowed_origin(Some("chrome-extension://abc"), &allowed).unwrap(),
            "chrome-extension://abc"
        );
        assert!(allowed_origin(Some("chrome-extension://abcd"), &allowed).is_none());
        assert!(allowed_origin(Some("http://evil.example"), &allowed).is_none());
        assert!(allowed_origin(None, &allowed).is_none());
        let any = vec!["*".to_string()];
        assert_eq!(allowed_origin(Some("http://x"), &any).unwrap(), "*");
    }
}
