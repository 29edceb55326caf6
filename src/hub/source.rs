//! [`FileSource`]: the bytes of one resolved file URL as a [`RangeSource`] for the downloader.
//! Each fetch is one GET (ranged when asked) under the token rule; the body is handed over as a
//! plain reader whose failures are `io::Error`s, a stall longer than the read timeout among
//! them. Failures come back marked transient or not, with the server's `Retry-After`, and the
//! downloader retries: it alone knows when the transfer is cancelled, and one retry loop per
//! connection keeps attempts from multiplying (the hub client's own `RetryPolicy` covers the
//! API calls: model info, tree, resolve).

use std::io::{self, Read};
use std::sync::Arc;

use super::http::{Hop, Http, Method};
use super::status::{display_url, Subject};
use super::url::server_name;
use crate::download::{Fetched, RangeSource, MAX_FILE_SIZE};
use crate::error::{Error, ErrorKind, Result};

/// A file URL (usually [`ResolvedFile::url`](super::ResolvedFile)) to fetch bytes from.
#[derive(Clone)]
pub struct FileSource {
    http: Arc<Http>,
    url: String,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("url", &display_url(&self.url))
            .finish()
    }
}

impl FileSource {
    pub(super) fn new(http: Arc<Http>, url: &str) -> FileSource {
        FileSource {
            http,
            url: url.to_string(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// GET the resource once and check every header that says what the body is (status, range,
    /// encoding, length); one function because each check needs the ones before it.
    fn fetch_once(&self, range: Option<(u64, u64)>) -> Result<Fetched> {
        let range_header = range.map(|(start, end)| format!("bytes={start}-{}", end - 1));
        // Compressed bytes would not be the file's bytes nor match its ranges.
        let mut headers = vec![("accept-encoding", "identity")];
        if let Some(value) = &range_header {
            headers.push(("range", value.as_str()));
        }
        let hop = self.http.check(
            self.http.send(Method::Get, &self.url, &headers)?,
            Subject::default(),
        )?;
        let status = hop.status();
        let server = server_name(&hop.url);
        // ureq would decode a compressed body on the fly: bytes that are not the file's, of a
        // length no header states, matching no range. Asked for identity, nothing else will do.
        if let Some(encoding) = hop
            .header("content-encoding")
            .filter(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(Error::new(
                ErrorKind::Http,
                format!(
                    "the server at {server} sent the file with Content-Encoding {:?} although only identity was accepted; \
                     encoded bytes cannot be checked against the file's size and ranges, so they were refused and nothing was cached. \
                     The server (or a proxy in between that compresses responses) is at fault",
                    encoding.chars().take(40).collect::<String>()
                ),
            ));
        }
        let content_length = if hop.header("transfer-encoding").is_some() {
            None
        } else {
            size_header(&hop, "content-length", &server)?
        };
        let (partial, total) = match (status, range) {
            (206, Some((start, end))) => {
                let content_range = hop.header("content-range");
                let parsed = content_range.as_deref().and_then(parse_content_range);
                if parsed.map(|(a, b, _)| (a, b)) != Some((start, end - 1)) {
                    return Err(Error::new(
                        ErrorKind::Http,
                        format!(
                            "{} answered bytes {start}-{} with Content-Range {content_range:?}: the server does not honour ranges correctly",
                            display_url(&hop.url),
                            end - 1
                        ),
                    ));
                }
                let total = parsed.and_then(|(_, _, total)| total);
                if let Some(total) = total.filter(|&t| t > MAX_FILE_SIZE) {
                    return Err(absurd_size(&server, "Content-Range", total));
                }
                (true, total)
            }
            (200, _) => (false, content_length),
            _ => {
                return Err(Error::new(
                    ErrorKind::Http,
                    format!(
                        "unexpected answer {status} to a download from {}",
                        display_url(&hop.url)
                    ),
                ))
            }
        };
        let read_timeout = self.http.config.read_timeout;
        let body = hop.response.into_body().into_reader();
        Ok(Fetched {
            partial,
            content_length,
            total,
            body: Box::new(BodyStream {
                inner: body,
                read_timeout,
            }),
        })
    }
}

impl RangeSource for FileSource {
    fn fetch(&self, range: Option<(u64, u64)>) -> Result<Fetched> {
        if let Some((start, end)) = range {
            if start >= end {
                return Err(Error::internal(format!(
                    "empty byte range {start}..{end} requested"
                )));
            }
        }
        self.http
            .ensure_online(&format!("download {}", display_url(&self.url)))?;
        self.fetch_once(range)
    }

    fn server(&self) -> String {
        server_name(&self.url)
    }

    fn hub(&self) -> String {
        server_name(&self.http.config.endpoint)
    }
}

/// A size header of a file response: absent is None; present, it must be a number no file
/// could exceed, or the response is refused before its body is read.
fn size_header(hop: &Hop, name: &str, server: &str) -> Result<Option<u64>> {
    let Some(value) = hop.header(name) else {
        return Ok(None);
    };
    match parse_size(&value) {
        Some(size) if size <= MAX_FILE_SIZE => Ok(Some(size)),
        Some(size) => Err(absurd_size(server, name, size)),
        None => Err(Error::new(
            ErrorKind::Http,
            format!(
                "the server at {server} sent {name} {:?}, which is not a size; refusing the response \
                 (the server or a proxy in between is at fault)",
                value.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// A decimal byte count as HTTP writes it: digits only (no sign, no spaces inside).
pub fn parse_size(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Overflowing u64 is as absurd as any size over the limit; saturate and let that refuse it.
    Some(value.parse().unwrap_or(u64::MAX))
}

/// The refusal of a size no file could have.
pub(super) fn absurd_size(server: &str, header: &str, size: u64) -> Error {
    Error::new(
        ErrorKind::Http,
        format!(
            "the server at {server} claimed a size of {size} bytes ({header}), which is invalid: no file is larger \
             than {MAX_FILE_SIZE} bytes (1 PiB); nothing was allocated or downloaded. The server (or a proxy in between) \
             is at fault: check HF_ENDPOINT, or report it to whoever runs that server"
        ),
    )
}

/// `bytes a-b/total` or `bytes a-b/*` -> (a, b, total).
pub fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.trim().split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(parse_size(t)?),
    };
    Some((parse_size(a)?, parse_size(b)?, total))
}

/// The response body, with ureq's wrapped errors turned into plain io errors that say what
/// happened (a stall becomes `TimedOut`).
struct BodyStream {
    inner: ureq::BodyReader<'static>,
    read_timeout: std::time::Duration,
}

impl Read for BodyStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|err| {
            let kind = err.kind();
            match ureq::Error::from(err) {
                ureq::Error::Io(err) => err,
                ureq::Error::Timeout(_) => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no data received for {:?} (read timeout); the connection was cut",
                        self.read_timeout
                    ),
                ),
                other => io::Error::new(kind, other.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_content_range, parse_size};

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, 99, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5, None)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes 0-1/-2"), None);
        assert_eq!(parse_content_range("bytes +0-1/2"), None);
        assert_eq!(
            parse_content_range("bytes 0-1/99999999999999999999999"),
            Some((0, 1, Some(u64::MAX)))
        );
    }

    #[test]
    fn sizes_are_plain_decimal() {
        assert_eq!(parse_size(" 42 "), Some(42));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "-1", "+1", "1e9", "0x10", "1 2", "٣"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_size("18446744073709551616"), Some(u64::MAX));
    }
}
