//! A Hub client's side of the server tests (`tests/serve*.rs`): requests over real HTTP with
//! ureq, answers read whole into a [`Reply`] (status, headers, body), or streamed through a
//! sha256 for files too large to hold.

use std::io::Read;

pub use hub_emulator::client::{agent, Reply};

/// The file names a model-info answer lists (`siblings[].rfilename`), in its order.
pub fn siblings(info: &serde_json::Value) -> Vec<&str> {
    info["siblings"]
        .as_array()
        .expect("model info lists siblings")
        .iter()
        .map(|s| s["rfilename"].as_str().expect("a sibling names its file"))
        .collect()
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    Reply::read(request.call().unwrap(), false)
}

pub fn head(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().head(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    Reply::read(request.call().unwrap(), true)
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
