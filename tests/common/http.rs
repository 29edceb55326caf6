//! A Hub client's side of the server tests (`tests/serve*.rs`): requests over real HTTP with
//! ureq, answers read whole into a [`Reply`] (status, headers, body), or streamed through a
//! sha256 for files too large to hold.

use std::io::Read;
use std::time::Duration;

use serde_json::Value;

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn error_code(&self) -> Option<&str> {
        self.header("x-error-code")
    }
}

pub fn reply(mut response: ureq::http::Response<ureq::Body>, head: bool) -> Reply {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = if head {
        Vec::new()
    } else {
        response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap()
    };
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    reply(request.call().unwrap(), false)
}

pub fn head(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().head(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    reply(request.call().unwrap(), true)
}

/// A `GET` whose body is hashed as it arrives instead of kept: the status, the bytes received,
/// their sha256, and how the body ended (`Err` when the connection ended before its
/// `Content-Length`, or failed).
pub struct Streamed {
    pub status: u16,
    pub received: u64,
    pub sha256: String,
    pub ended: Result<(), String>,
}

pub fn get_streamed(url: &str, headers: &[(&str, &str)]) -> Streamed {
    stream_with(url, headers, |_| {})
}

/// [`get_streamed`], calling `seen(bytes so far)` after each read (to act mid-body).
pub fn stream_with(url: &str, headers: &[(&str, &str)], mut seen: impl FnMut(u64)) -> Streamed {
    use sha2::Digest;
    let mut request = agent().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut received = 0u64;
    let ended = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                hasher.update(&buf[..n]);
                received += n as u64;
                seen(received);
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    Streamed {
        status,
        received,
        sha256: tabcache::digest::to_hex(&hasher.finalize()),
        ended,
    }
}
