//! Turning a Hub response status (with its `X-Error-Code` / `X-Error-Message` headers or JSON
//! `error` body) into an [`Error`] whose kind callers branch on and whose message tells the
//! user what to do, in the spirit of huggingface_hub's `hf_raise_for_status`. Also marks
//! which failures are worth retrying (408, 429, 5xx) and how long the server asked us to wait
//! (`Retry-After`, the `RateLimit` reset), which the retry policies honour.

use std::time::{Duration, SystemTime};

use ureq::http::HeaderMap;

use crate::error::{Error, ErrorKind};

/// What a request was about, so that a 404 or 403 can name it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    pub repo_id: Option<&'a str>,
    pub revision: Option<&'a str>,
    /// Set for resolve requests: a bare 404 then means the file is missing.
    pub path: Option<&'a str>,
}

/// The error for a response whose status is not a success, or None for 1xx-3xx/2xx.
///
/// One `match` on purpose: the status-to-error table of the Hub protocol, read as a whole.
pub fn error_for_status(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    url: &str,
    subject: Subject<'_>,
    token_sent: bool,
) -> Option<Error> {
    if status < 400 {
        return None;
    }
    let code = header(headers, "x-error-code");
    let server_says = server_message(headers, body)
        .map(|m| format!(" (server says: {m})"))
        .unwrap_or_default();
    let url = display_url(url);
    let repo = subject.repo_id.unwrap_or("?");
    let revision = subject.revision.unwrap_or("main");
    let token_hint = if token_sent {
        "the token that was sent does not grant access to it; check that it belongs to an account with access"
    } else {
        "pass an access token (the token option or HF_TOKEN, or log in with `hf auth login`)"
    };

    let repo_not_found = || {
        Error::new(
            ErrorKind::RepoNotFound,
            format!("Repository '{repo}' not found{server_says}. Check the repo id; if it is private or gated, {token_hint}."),
        )
    };

    let error = match (status, code.as_deref()) {
        (_, Some("RepoNotFound")) => repo_not_found(),
        (404, None) if subject.repo_id.is_some() && subject.path.is_none() => repo_not_found(),
        (_, Some("RevisionNotFound")) => Error::new(
            ErrorKind::RevisionNotFound,
            format!(
                "Revision '{revision}' not found in repository '{repo}'{server_says}. Check the branch, tag or commit name (the default branch is usually `main`)."
            ),
        ),
        (_, Some("EntryNotFound")) | (404, None) => match subject.path {
            Some(path) => Error::new(
                ErrorKind::EntryNotFound,
                format!("File '{path}' not found in repository '{repo}' at revision '{revision}'{server_says}. Check the file name against the repo's file list."),
            ),
            None => Error::new(ErrorKind::EntryNotFound, format!("Nothing found at {url} (404 Not Found){server_says}.")),
        },
        (_, Some("GatedRepo")) => Error::new(
            ErrorKind::GatedRepo,
            format!(
                "Repository '{repo}' is gated{server_says}: open its page on the Hub, log in and accept the terms to request access, then {}.",
                if token_sent {
                    "make sure the token sent belongs to the account that was granted access"
                } else {
                    "pass an access token of that account (the token option or HF_TOKEN)"
                }
            ),
        ),
        (401, _) => Error::new(
            ErrorKind::Unauthorized,
            if token_sent {
                format!("The Hub refused the access token (401 Unauthorized) for {url}{server_says}. It may be invalid, expired or revoked: create a new one in your Hub settings and set HF_TOKEN.")
            } else {
                format!("Authentication required (401 Unauthorized) for {url}{server_says}: {token_hint}.")
            },
        ),
        (403, _) => Error::new(
            ErrorKind::Unauthorized,
            format!("Access forbidden (403 Forbidden) for {url}{server_says}: make sure your token has read permission for this repo ({token_hint})."),
        ),
        (416, _) => Error::new(
            ErrorKind::Http,
            format!("The server cannot serve the requested byte range of {url} (416 Range Not Satisfiable){server_says}: the file on the server is not the size the listing reported; scan the repo again."),
        ),
        (429, _) => Error::new(
            ErrorKind::RateLimited,
            format!("Rate limited by the Hub (429 Too Many Requests) for {url}{server_says}. Wait a few minutes and retry; authenticated requests (HF_TOKEN) get higher limits."),
        )
        .transient(requested_wait(headers)),
        (408, _) | (500..=599, _) => Error::new(
            ErrorKind::Http,
            format!("The server answered {status}{} for {url}{server_says}: a problem on the server side; retry later.", reason(status)),
        )
        .transient(requested_wait(headers)),
        _ => Error::new(ErrorKind::Http, format!("Unexpected answer {status}{} from {url}{server_says}.", reason(status))),
    };
    Some(error)
}

/// How long the server asked us to wait: `Retry-After`, else the `RateLimit` reset `t=`.
pub fn requested_wait(headers: &HeaderMap) -> Option<Duration> {
    header(headers, "retry-after")
        .and_then(|v| parse_retry_after(&v, SystemTime::now()))
        .or_else(|| header(headers, "ratelimit").and_then(|v| parse_ratelimit_reset(&v)))
}

/// `Retry-After`: either delay-seconds or an HTTP date (RFC 9110 IMF-fixdate). A date in the
/// past means "now".
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `t=` (seconds until the quota resets) of the IETF draft `RateLimit` header, e.g.
/// `"api";r=0;t=55`. Several comma-separated policies: the longest wait wins.
fn parse_ratelimit_reset(value: &str) -> Option<Duration> {
    value
        .split(',')
        .filter_map(|item| {
            item.split(';').skip(1).find_map(|param| {
                let (key, val) = param.split_once('=')?;
                if key.trim().eq_ignore_ascii_case("t") {
                    val.trim().trim_matches('"').parse::<u64>().ok()
                } else {
                    None
                }
            })
        })
        .max()
        .map(Duration::from_secs)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` only (the form RFC 9110 requires senders to use).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let (_weekday, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A header's value as text, if present and valid.
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)?
        .to_str()
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A URL fit for an error message: query strings (signed CDN URLs carry credentials there)
/// are dropped.
pub fn display_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// `X-Error-Message`, else the JSON body's `error` (string or list), cut to a sane length.
fn server_message(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let message = header(headers, "x-error-message").or_else(|| {
        let json: serde_json::Value = serde_json::from_slice(body).ok()?;
        match json.get("error")? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        }
    })?;
    let message: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    Some(message).filter(|m| !m.trim().is_empty())
}

fn reason(status: u16) -> String {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::HeaderValue;

    fn map(
        status: u16,
        pairs: &[(&'static str, &str)],
        body: &str,
        subject: Subject,
        token: bool,
    ) -> Error {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        error_for_status(
            status,
            &headers,
            body.as_bytes(),
            "http://h/x?sig=secret",
            subject,
            token,
        )
        .unwrap()
    }

    const REPO: Subject = Subject {
        repo_id: Some("org/repo"),
        revision: Some("main"),
        path: None,
    };
    const FILE: Subject = Subject {
        repo_id: Some("org/repo"),
        revision: Some("v1"),
        path: Some("a.bin"),
    };

    #[test]
    fn successes_are_not_errors() {
        for status in [200, 206, 302, 307] {
            assert!(error_for_status(status, &HeaderMap::new(), b"", "u", REPO, false).is_none());
        }
    }

    #[test]
    fn error_codes_win_over_statuses() {
        let e = map(401, &[("x-error-code", "RepoNotFound")], "", REPO, false);
        assert_eq!(e.kind(), ErrorKind::RepoNotFound);
        assert!(
            e.message().contains("Repository 'org/repo' not found")
                && e.message().contains("HF_TOKEN"),
            "{e}"
        );
        let e = map(
            404,
            &[
                ("x-error-code", "RevisionNotFound"),
                ("x-error-message", "Invalid rev id: v9"),
            ],
            "",
            REPO,
            false,
        );
        assert_eq!(e.kind(), ErrorKind::RevisionNotFound);
        assert!(
            e.message().contains("server says: Invalid rev id: v9"),
            "{e}"
        );
        let e = map(404, &[("x-error-code", "EntryNotFound")], "", FILE, false);
        assert_eq!(e.kind(), ErrorKind::EntryNotFound);
        assert!(
            e.message()
                .contains("File 'a.bin' not found in repository 'org/repo' at revision 'v1'"),
            "{e}"
        );
        let e = map(403, &[("x-error-code", "GatedRepo")], "", REPO, true);
        assert_eq!(e.kind(), ErrorKind::GatedRepo);
        assert!(
            e.message().contains("accept the terms") && e.message().contains("token sent"),
            "{e}"
        );
        let e = map(401, &[("x-error-code", "GatedRepo")], "", REPO, false);
        assert!(e.message().contains("HF_TOKEN"), "{e}");
    }

    #[test]
    fn bare_statuses() {
        assert_eq!(
            map(404, &[], "", REPO, false).kind(),
            ErrorKind::RepoNotFound
        );
        assert_eq!(
            map(404, &[], "", FILE, false).kind(),
            ErrorKind::EntryNotFound
        );
        let e = map(404, &[], "", Subject::default(), false);
        assert_eq!(e.kind(), ErrorKind::EntryNotFound);
        assert!(
            !e.message().contains("secret"),
            "query strings stay out of messages: {e}"
        );
        let e = map(
            401,
            &[],
            "{\"error\":\"Invalid credentials in Authorization header\"}",
            REPO,
            true,
        );
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(
            e.message()
                .contains("Invalid credentials in Authorization header"),
            "{e}"
        );
        assert_eq!(
            map(403, &[], "", REPO, true).kind(),
            ErrorKind::Unauthorized
        );
        assert!(!map(403, &[], "", REPO, true).is_transient());
    }

    #[test]
    fn transient_statuses_carry_the_wait() {
        let e = map(429, &[("retry-after", "7")], "", REPO, false);
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let e = map(429, &[("ratelimit", "\"api\";r=0;t=12")], "", REPO, false);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
        let e = map(429, &[], "", REPO, false);
        assert!(e.is_transient() && e.retry_after().is_none());
        for status in [408, 500, 502, 503, 504] {
            let e = map(status, &[], "", REPO, false);
            assert!(e.is_transient() && e.kind() == ErrorKind::Http, "{status}");
        }
        assert!(map(503, &[], "", REPO, false)
            .message()
            .contains("503 Service Unavailable"));
        assert!(!map(400, &[], "", REPO, false).is_transient());
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 06 Nov 1994 08:49:37
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", SystemTime::UNIX_EPOCH),
            Some(Duration::ZERO)
        );
        for bad in [
            "",
            "-1",
            "soon",
            "1.5",
            "Sun, 06 Nov 1994 25:00:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn ratelimit_reset() {
        assert_eq!(
            parse_ratelimit_reset("\"api\";r=0;t=55"),
            Some(Duration::from_secs(55))
        );
        assert_eq!(
            parse_ratelimit_reset("\"default\"; r=0; t=12"),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            parse_ratelimit_reset("a;r=1;t=3, b;r=0;T=9"),
            Some(Duration::from_secs(9))
        );
        assert_eq!(parse_ratelimit_reset("\"api\";r=0"), None);
        assert_eq!(
            parse_ratelimit_reset("t=5"),
            None,
            "t= must be a parameter of an item"
        );
        assert_eq!(parse_ratelimit_reset("\"api\";t=x"), None);
    }
}
