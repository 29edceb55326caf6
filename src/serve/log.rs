//! What a server tells about each request it answered: [`Served`] records, handed to the
//! [`RequestLog`] its options carry (the command line prints them, one line each).
//!
//! A record names the request (method, path and query), who asked (peer address, `Origin`)
//! and the answer's head (status, length), taken when the head is ready: the body may still be
//! streaming, so `elapsed` is the time to the first byte, not to the last. Nothing secret is in
//! a record: no header values but `Origin`, never a token.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// One answered request.
#[derive(Debug, Clone)]
pub struct Served {
    pub peer: SocketAddr,
    pub method: String,
    /// The request target as sent: path and query, still percent-encoded.
    pub target: String,
    pub status: u16,
    /// The answer's `Content-Length` (of the range, for a `206`); `None` when it has none.
    pub length: Option<u64>,
    /// The page or extension that asked, when a browser did.
    pub origin: Option<String>,
    /// From the request's arrival to its answer's head.
    pub elapsed: Duration,
}

impl fmt::Display for Served {
    /// `127.0.0.1:51234 GET /org/name/resolve/main/model.onnx 200 1048576 3ms`, then the origin
    /// when there is one; `-` for an unknown length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} ",
            self.peer, self.method, self.target, self.status
        )?;
        match self.length {
            Some(length) => write!(f, "{length}")?,
            None => f.write_str("-")?,
        }
        write!(f, " {}ms", self.elapsed.as_millis())?;
        if let Some(origin) = &self.origin {
            write!(f, " origin={origin}")?;
        }
        Ok(())
    }
}

/// Called once per request, on a server thread (several at once when clients are): keep it
/// quick, a slow log slows answers.
#[derive(Clone)]
pub struct RequestLog(Arc<dyn Fn(&Served) + Send + Sync>);

impl RequestLog {
    pub fn new(log: impl Fn(&Served) + Send + Sync + 'static) -> RequestLog {
        RequestLog(Arc::new(log))
    }

    pub(crate) fn record(&self, served: &Served) {
        (self.0)(served)
    }
}

impl fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestLog(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_as_one_line() {
        let mut served = Served {
            peer: "127.0.0.1:5000".parse().unwrap(),
            method: "GET".into(),
            target: "/a/b/resolve/main/x.bin".into(),
            status: 206,
            length: Some(1),
            origin: Some("chrome-extension://abc".into()),
            elapsed: Duration::from_millis(7),
        };
        assert_eq!(
            served.to_string(),
            "127.0.0.1:5000 GET /a/b/resolve/main/x.bin 206 1 7ms origin=chrome-extension://abc"
        );
        served.length = None;
        served.origin = None;
        assert_eq!(
            served.to_string(),
            "127.0.0.1:5000 GET /a/b/resolve/main/x.bin 206 - 7ms"
        );
    }
}
