//! The hand-rolled HTTP/1.1 layer: reading requests off a keep-alive connection, URL decoding,
//! `Range` parsing and writing response heads. Nothing here knows about the Hub.

use std::io::{self, Read};
use std::net::TcpStream;

/// Requests with a head larger than this are refused: no real client sends one, and the limit
/// keeps a broken client from growing the buffer without end.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Control-endpoint bodies are small JSON documents.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub struct Request {
    pub method: String,
    /// Path and query exactly as the client sent them (origin form).
    pub target: String,
    /// HTTP/1.0 clients get one response per connection.
    pub http10: bool,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query().split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_query_component(key) == name).then(|| decode_query_component(value))
        })
    }

    pub fn wants_close(&self) -> bool {
        let connection = self.header("connection").unwrap_or("");
        if self.http10 {
            !connection.eq_ignore_ascii_case("keep-alive")
        } else {
            connection
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        }
    }

    /// The token of an `Authorization: Bearer` header, if any.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|token| !token.is_empty())
    }
}

pub enum ReadOutcome {
    Request(Box<Request>),
    /// The peer closed the connection between requests.
    Closed,
    /// The peer sent something that is not HTTP/1.x; the message is sent back with a 400.
    Malformed(String),
}

/// Reads one request from `stream`. `buffer` carries bytes already read past the previous request
/// (pipelining) and is reused across requests to avoid reallocating.
pub fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<ReadOutcome> {
    let head_end = loop {
        if let Some(pos) = find_head_end(buffer) {
            break pos;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Ok(ReadOutcome::Malformed("request head too large".into()));
        }
        if fill(stream, buffer)? == 0 {
            return Ok(ReadOutcome::Closed);
        }
    };
    let head = match std::str::from_utf8(&buffer[..head_end]) {
        Ok(head) => head.to_owned(),
        Err(_) => return Ok(ReadOutcome::Malformed("request head is not UTF-8".into())),
    };
    buffer.drain(..head_end + 4);

    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(ReadOutcome::Malformed(format!(
            "bad request line {request_line:?}"
        )));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Ok(ReadOutcome::Malformed(format!(
            "unsupported version {version}"
        )));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Ok(ReadOutcome::Malformed(format!("bad header line {line:?}")));
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut request = Request {
        method: method.to_owned(),
        target: origin_form(target),
        http10: version == "HTTP/1.0",
        headers,
        body: Vec::new(),
    };

    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        match read_chunked_body(stream, buffer)? {
            Some(body) => request.body = body,
            None => return Ok(ReadOutcome::Malformed("bad chunked request body".into())),
        }
    } else if let Some(length) = request.header("content-length") {
        let Ok(length) = length.parse::<usize>() else {
            return Ok(ReadOutcome::Malformed("bad Content-Length".into()));
        };
        if length > MAX_BODY_BYTES {
            return Ok(ReadOutcome::Malformed("request body too large".into()));
        }
        while buffer.len() < length {
            if fill(stream, buffer)? == 0 {
                return Ok(ReadOutcome::Closed);
            }
        }
        request.body = buffer.drain(..length).collect();
    }
    Ok(ReadOutcome::Request(Box::new(request)))
}

fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let read = match stream.read(&mut chunk) {
        Ok(read) => read,
        Err(err) if err.kind() == io::ErrorKind::Interrupted => return fill(stream, buffer),
        Err(err) => return Err(err),
    };
    buffer.extend_from_slice(&chunk[..read]);
    Ok(read)
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(4).position(|window| window == b"\r\n\r\n")
}

fn read_chunked_body(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(pos) = buffer.windows(2).position(|w| w == b"\r\n") {
                break pos;
            }
            if fill(stream, buffer)? == 0 {
                return Ok(None);
            }
        };
        let size_text = String::from_utf8_lossy(&buffer[..line_end]).to_string();
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Ok(None);
        };
        buffer.drain(..line_end + 2);
        if body.len() + size > MAX_BODY_BYTES {
            return Ok(None);
        }
        // The chunk data is followed by CRLF; the last chunk by optional trailers and CRLF.
        if size == 0 {
            loop {
                if let Some(pos) = find_head_end(buffer) {
                    buffer.drain(..pos + 4);
                    return Ok(Some(body));
                }
                if buffer.starts_with(b"\r\n") {
                    buffer.drain(..2);
                    return Ok(Some(body));
                }
                if fill(stream, buffer)? == 0 {
                    return Ok(None);
                }
            }
        }
        while buffer.len() < size + 2 {
            if fill(stream, buffer)? == 0 {
                return Ok(None);
            }
        }
        body.extend_from_slice(&buffer[..size]);
        buffer.drain(..size + 2);
    }
}

/// Clients may send an absolute URL as the target; only its path and query matter here.
fn origin_form(target: &str) -> String {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return match rest.find('/') {
                Some(pos) => rest[pos..].to_owned(),
                None => "/".to_owned(),
            };
        }
    }
    target.to_owned()
}

/// Decodes `%XX` escapes of one path segment; `None` when the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(high * 16 + low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn decode_query_component(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode(&spaced).unwrap_or(spaced)
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

/// Escapes a query value; `/` stays readable since RFC 3986 allows it in queries.
pub fn encode_query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The outcome of a `Range` header against a resource of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable single range: serve the whole resource with 200.
    Full,
    /// Serve `start..start + len` with 206.
    Partial { start: u64, len: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`. Malformed or multi-range headers are ignored
/// (RFC 9110 lets a server answer 200 to any range it does not support).
pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Ok(suffix) = last.parse::<u64>() else {
            return RangeRequest::Full;
        };
        if suffix == 0 || len == 0 {
            return RangeRequest::Unsatisfiable;
        }
        let take = suffix.min(len);
        return RangeRequest::Partial {
            start: len - take,
            len: take,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeRequest::Full;
    };
    let end_inclusive = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return RangeRequest::Full,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    let end_inclusive = end_inclusive.min(len - 1);
    RangeRequest::Partial {
        start,
        len: end_inclusive - start + 1,
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Formats a response head; `headers` must not contain the framing headers, which are given
/// by `framing`.
pub fn format_head(
    status: u16,
    headers: &[(String, String)],
    framing: Framing,
    close: bool,
) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    match framing {
        Framing::Length(len) => head.push_str(&format!("Content-Length: {len}\r\n")),
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("Server: hub-emulator\r\n\r\n");
    head
}

#[derive(Clone, Copy)]
pub enum Framing {
    Length(u64),
    Chunked,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeRequest::Full);
        assert_eq!(
            parse_range(Some("bytes=2-4"), 10),
            RangeRequest::Partial { start: 2, len: 3 }
        );
        assert_eq!(
            parse_range(Some("bytes=7-"), 10),
            RangeRequest::Partial { start: 7, len: 3 }
        );
        assert_eq!(
            parse_range(Some("bytes=5-100"), 10),
            RangeRequest::Partial { start: 5, len: 5 }
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            RangeRequest::Partial { start: 7, len: 3 }
        );
        assert_eq!(
            parse_range(Some("bytes=10-"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=0-"), 0),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=4-2"), 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeRequest::Full);
    }

    #[test]
    fn decoding() {
        assert_eq!(
            percent_decode("refs%2Fpr%2F1").as_deref(),
            Some("refs/pr/1")
        );
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(encode_query_value("a b/c&d"), "a%20b/c%26d");
        assert_eq!(origin_form("http://h:1/x?y"), "/x?y");
    }
}
