//! [`FileSource`]: the bytes of one resolved file URL as a [`RangeSource`] for the downloader.
//! Each fetch is one GET (ranged when asked) under the token rule; the body is handed over as a
//! plain reader whose failures are `io::Error`s, a stall longer than the read timeout among
//! them. Failures come back marked transient or not, with the server's `Retry-After`, and the
//! downloader retries: it alone knows when the transfer is cancelled, and one retry loop per
//! connection keeps attempts from multiplying (the hub client's own `RetryPolicy` covers the
//! API calls: model info, tree, resolve).

use std::io::{self, Read};
use std::sync::Arc;

use super::http::{Http, Method};
use super::status::{display_url, Subject};
use crate::download::{Fetched, RangeSource};
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
        let partial = match (status, range) {
            (206, Some((start, end))) => {
                let content_range = hop.header("content-range");
                if content_range.as_deref().and_then(parse_content_range) != Some((start, end - 1))
                {
                    return Err(Error::new(
                        ErrorKind::Http,
                        format!(
                            "{} answered bytes {start}-{} with Content-Range {content_range:?}: the server does not honour ranges correctly",
                            display_url(&hop.url),
                            end - 1
                        ),
                    ));
                }
                true
            }
            (200, _) => false,
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
        let content_length = if hop.header("transfer-encoding").is_some() {
            None
        } else {
            hop.header("content-length").and_then(|v| v.parse().ok())
        };
        let read_timeout = self.http.config.read_timeout;
        let body = hop.response.into_body().into_reader();
        Ok(Fetched {
            partial,
            content_length,
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
}

/// `bytes a-b/total` or `bytes a-b/*` -> (a, b).
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, _total) = rest.split_once('/')?;
    let (a, b) = span.trim().split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
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
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
