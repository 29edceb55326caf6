//! Shared helpers for the emulator's own tests: scratch repo roots, a ureq agent that shows
//! every status and redirect as is, and a raw HTTP/1.1 client for responses ureq would reject.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A scratch folder removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hub-emulator-test-{}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub use hub_emulator::client::{agent, call, Reply};

pub fn get(agent: &ureq::Agent, url: &str) -> Reply {
    call(agent, "GET", url, &[])
}

/// What a raw request got back: the head as text and every byte after it until the server
/// closed the connection (or the read timed out).
pub struct RawReply {
    pub head: String,
    pub body: Vec<u8>,
    pub status: u16,
    /// True when the connection ended by a reset rather than a clean close.
    pub reset: bool,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Sends one request with `Connection: close` and reads everything the server sends.
pub fn raw(addr: SocketAddr, method: &str, target: &str, extra_headers: &str) -> RawReply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra_headers}\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut reset = false;
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => bytes.extend_from_slice(&chunk[..read]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                reset = true;
                break;
            }
            Err(err) => panic!("reading raw reply failed: {err}"),
        }
    }
    let split = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    RawReply {
        head,
        body: bytes[split + 4..].to_vec(),
        status,
        reset,
    }
}
