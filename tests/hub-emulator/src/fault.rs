//! Fault injection: what a test can ask the emulator to do wrong, which requests a fault
//! matches, how many times it fires, and the per-request plan that the fault table hands the
//! response writer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Stalls are bounded so that a forgotten fault cannot hang a test run.
pub const MAX_STALL_SECONDS: f64 = 120.0;

/// Which of the three listeners served (or a fault applies to) a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Listener {
    /// Hub API and resolve (`url()`).
    Api,
    /// Blob downloads behind LFS redirects (`cdn_url()`).
    Cdn,
    /// Xet storage: reconstructions and signed xorb ranges (`cas_url()`).
    Cas,
    /// Either (only meaningful in a [`Fault`]).
    #[default]
    Any,
}

/// One injected fault. In JSON (the control endpoint takes the same shape):
/// `{"listener": "cdn", "path_contains": "model.gguf", "times": 1,
///   "kind": {"type": "drop_after", "bytes": 1000}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default)]
    pub listener: Listener,
    /// Matches when the request's path+query contains this, raw or percent-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// Matches only this method (`GET`, `HEAD`, ...), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Fire for the first N matching requests; absent means every matching request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    pub kind: FaultKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// Send the head and `bytes` body bytes, then close the connection; with `reset`, close
    /// with a TCP reset instead of a clean FIN (the peer may then lose unread bytes).
    DropAfter {
        bytes: u64,
        #[serde(default)]
        reset: bool,
    },
    /// Answer `status` instead (body `{"error": ...}`), optionally with `Retry-After: N`,
    /// `RateLimit: "default";r=0;t=N` and `X-Error-Code`. The connection stays usable.
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ratelimit_reset: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
    },
    /// Send `bytes` body bytes, sleep `seconds` (at most 120), then close.
    Stall { bytes: u64, seconds: f64 },
    /// Flip every bit of the byte at `offset` of the resource (file offset, also in a range
    /// response); the length stays right.
    Corrupt { offset: u64 },
    /// Answer 200 with the whole body whatever `Range` asked.
    IgnoreRange,
    /// Send the body with `Transfer-Encoding: chunked` and no `Content-Length`.
    Chunked,
    /// Declare the full `Content-Length` but leave out the last `missing` bytes, then close.
    Truncate { missing: u64 },
    /// Declare and send one byte more than the body has.
    ExtraByte,
    /// Pace the body at this many bytes per second.
    RateLimit { bytes_per_sec: u64 },
    /// Answer tree listings with this body (status 200, JSON content type, no `Link`).
    RawTree { body: String },
    /// Tree listings always carry a `Link: rel="next"`, past the end with empty pages.
    EndlessPagination,
    /// Claim the file has `size` bytes, on HEAD and GET alike: the `X-Linked-Size` of a
    /// resolve redirect, the `Content-Length` of a whole file response (its body stays the
    /// real one, cut at `size` if shorter, then the connection closes) and the total of a
    /// range response's `Content-Range` (its length and body stay right).
    ClaimSize { size: u64 },
    /// Send file bodies with `Content-Encoding: <encoding>` whatever the request accepts; with
    /// `gzip` the body (or range) really is gzip-compressed and `Content-Length` is its
    /// compressed length, with anything else the bytes go out as they are.
    ContentEncoding { encoding: String },
    /// Resolves and file responses (HEAD and GET) give neither a size nor a hash: no
    /// `X-Linked-Size` or `X-Linked-Etag`, an `ETag` that is no hash, and file bodies chunked
    /// (so no `Content-Length`), as a careless mirror might answer.
    NoMetadata,
    /// Resolves and file responses state no size: no `X-Linked-Size`, and file bodies chunked
    /// (so no `Content-Length`); the hash headers stay. A file of unknown size.
    NoSize,
    /// Accept the request and answer nothing at all (not even a status line) for `seconds`
    /// (at most 120), then close: a server that accepts and never answers. Any request,
    /// HEAD and API calls included.
    Hang { seconds: f64 },
    /// Xorb range responses (CAS listener) whose first chunk record names compression scheme
    /// 7, which does not exist: a client must fail (or refetch), never write garbage.
    XetUnknownScheme,
    /// The CAS treats the token or URL as expired: reconstructions answer 401, xorb URLs 403,
    /// as when a client outlives its credentials (use `times` for a client that refreshes).
    ExpireXetAuth,
    /// Resolves of Xet-backed files without `X-Xet-Hash` (the `Link` and refresh route stay),
    /// as a CDN in front of the Hub may answer from its cache: the listing's `xetHash` is then
    /// the only source of the hash.
    NoXetHash,
}

impl Fault {
    /// A fault of `kind` on any listener and path, firing every time.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            listener: Listener::Any,
            path_contains: None,
            method: None,
            times: None,
            kind,
        }
    }

    pub fn on(mut self, listener: Listener) -> Fault {
        self.listener = listener;
        self
    }

    pub fn path(mut self, substring: impl Into<String>) -> Fault {
        self.path_contains = Some(substring.into());
        self
    }

    pub fn method(mut self, method: impl Into<String>) -> Fault {
        self.method = Some(method.into());
        self
    }

    pub fn times(mut self, times: u64) -> Fault {
        self.times = Some(times);
        self
    }

    /// A bare status fault, e.g. `Fault::status(503)`.
    pub fn status(status: u16) -> Fault {
        Fault::new(FaultKind::Status {
            status,
            retry_after: None,
            ratelimit_reset: None,
            error_code: None,
        })
    }

    /// A 429 that asks the client to wait `seconds` through both `Retry-After` and `RateLimit`.
    pub fn rate_limited(seconds: u64) -> Fault {
        Fault::new(FaultKind::Status {
            status: 429,
            retry_after: Some(seconds),
            ratelimit_reset: Some(seconds),
            error_code: None,
        })
    }

    fn matches(&self, request: &RequestFacts) -> bool {
        let listener_ok = self.listener == Listener::Any || self.listener == request.listener;
        let method_ok = self
            .method
            .as_ref()
            .is_none_or(|method| method.eq_ignore_ascii_case(request.method));
        let path_ok = self.path_contains.as_ref().is_none_or(|needle| {
            request.target.contains(needle.as_str())
                || request.decoded_target.contains(needle.as_str())
        });
        let applies = match self.kind {
            FaultKind::Status { .. } => true,
            FaultKind::RawTree { .. } | FaultKind::EndlessPagination => request.is_tree,
            // Header faults: a HEAD is where a resolve reads them.
            FaultKind::ClaimSize { .. }
            | FaultKind::NoMetadata
            | FaultKind::NoSize
            | FaultKind::NoXetHash
            | FaultKind::Hang { .. } => true,
            // A HEAD has no body to damage; it must not use up a body fault meant for the GET.
            _ => request.method != "HEAD",
        };
        listener_ok && method_ok && path_ok && applies
    }
}

/// What the fault table needs to know about a request.
pub struct RequestFacts<'a> {
    pub listener: Listener,
    pub method: &'a str,
    pub target: &'a str,
    pub decoded_target: &'a str,
    pub is_tree: bool,
}

/// Identifies a fault for removal and hit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaultId(pub u64);

/// The combined effect of every fault that fired for one request.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub status: Option<StatusFault>,
    pub drop_after: Option<(u64, bool)>,
    pub stall: Option<(u64, Duration)>,
    pub corrupt: Vec<u64>,
    pub ignore_range: bool,
    pub chunked: bool,
    pub truncate: Option<u64>,
    pub extra_byte: bool,
    pub rate: Option<u64>,
    pub raw_tree: Option<String>,
    pub endless_pagination: bool,
    pub claim_size: Option<u64>,
    pub content_encoding: Option<String>,
    pub no_metadata: bool,
    pub no_size: bool,
    /// Answer nothing for this long, then close.
    pub hang: Option<Duration>,
    pub xet_unknown_scheme: bool,
    pub expire_xet_auth: bool,
    pub no_xet_hash: bool,
    pub fired: Vec<FaultId>,
}

#[derive(Clone, Debug)]
pub struct StatusFault {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub ratelimit_reset: Option<u64>,
    pub error_code: Option<String>,
}

impl Plan {
    /// Whether the body ends early and the connection closes after it.
    pub fn cuts_short(&self) -> bool {
        self.drop_after.is_some()
            || self.stall.is_some()
            || self.truncate.is_some()
            || self.claim_size.is_some()
    }

    /// Whether the body can go out untouched (and so by the kernel's zero-copy path).
    pub fn body_is_clean(&self) -> bool {
        self.drop_after.is_none()
            && self.stall.is_none()
            && self.corrupt.is_empty()
            && !self.chunked
            && self.truncate.is_none()
            && !self.extra_byte
            && self.rate.is_none()
            && self.claim_size.is_none()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultEntry {
    pub id: FaultId,
    pub fault: Fault,
    pub hits: u64,
}

#[derive(Default)]
pub struct FaultTable {
    next_id: u64,
    entries: Vec<FaultEntry>,
}

impl FaultTable {
    pub fn add(&mut self, fault: Fault) -> FaultId {
        self.next_id += 1;
        let id = FaultId(self.next_id);
        self.entries.push(FaultEntry { id, fault, hits: 0 });
        id
    }

    pub fn remove(&mut self, id: FaultId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.id != id);
        self.entries.len() != before
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn hits(&self, id: FaultId) -> u64 {
        self.entries
            .iter()
            .find(|entry| entry.id == id)
            .map_or(0, |entry| entry.hits)
    }

    pub fn list(&self) -> Vec<FaultEntry> {
        self.entries.clone()
    }

    /// Fires the faults that match `request`. The first matching status fault wins alone (the
    /// request gets no body to damage); otherwise every matching fault fires and combines.
    pub fn plan(&mut self, request: &RequestFacts) -> Plan {
        let mut plan = Plan::default();
        let live = |entry: &FaultEntry| entry.fault.times.is_none_or(|times| entry.hits < times);
        if let Some(entry) = self.entries.iter_mut().find(|entry| {
            live(entry)
                && matches!(entry.fault.kind, FaultKind::Status { .. })
                && entry.fault.matches(request)
        }) {
            entry.hits += 1;
            plan.fired.push(entry.id);
            if let FaultKind::Status {
                status,
                retry_after,
                ratelimit_reset,
                error_code,
            } = &entry.fault.kind
            {
                plan.status = Some(StatusFault {
                    status: *status,
                    retry_after: *retry_after,
                    ratelimit_reset: *ratelimit_reset,
                    error_code: error_code.clone(),
                });
            }
            return plan;
        }
        for entry in self.entries.iter_mut() {
            if !live(entry) || !entry.fault.matches(request) {
                continue;
            }
            entry.hits += 1;
            plan.fired.push(entry.id);
            match &entry.fault.kind {
                FaultKind::Status { .. } => unreachable!("status faults are handled above"),
                FaultKind::DropAfter { bytes, reset } => {
                    plan.drop_after = Some(min_limit(plan.drop_after, (*bytes, *reset)));
                }
                FaultKind::Stall { bytes, seconds } => {
                    let seconds = seconds.clamp(0.0, MAX_STALL_SECONDS);
                    plan.stall = Some((*bytes, Duration::from_secs_f64(seconds)));
                }
                FaultKind::Corrupt { offset } => plan.corrupt.push(*offset),
                FaultKind::IgnoreRange => plan.ignore_range = true,
                FaultKind::Chunked => plan.chunked = true,
                FaultKind::Truncate { missing } => plan.truncate = Some(*missing),
                FaultKind::ExtraByte => plan.extra_byte = true,
                FaultKind::RateLimit { bytes_per_sec } => plan.rate = Some((*bytes_per_sec).max(1)),
                FaultKind::RawTree { body } => plan.raw_tree = Some(body.clone()),
                FaultKind::EndlessPagination => plan.endless_pagination = true,
                FaultKind::ClaimSize { size } => plan.claim_size = Some(*size),
                FaultKind::ContentEncoding { encoding } => {
                    plan.content_encoding = Some(encoding.clone())
                }
                FaultKind::NoMetadata => plan.no_metadata = true,
                FaultKind::NoSize => plan.no_size = true,
                FaultKind::XetUnknownScheme => plan.xet_unknown_scheme = true,
                FaultKind::ExpireXetAuth => plan.expire_xet_auth = true,
                FaultKind::NoXetHash => plan.no_xet_hash = true,
                FaultKind::Hang { seconds } => {
                    let seconds = seconds.clamp(0.0, MAX_STALL_SECONDS);
                    plan.hang = Some(Duration::from_secs_f64(seconds));
                }
            }
        }
        plan
    }
}

fn min_limit(current: Option<(u64, bool)>, new: (u64, bool)) -> (u64, bool) {
    match current {
        Some(current) if current.0 <= new.0 => current,
        _ => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(listener: Listener, method: &'a str, target: &'a str) -> RequestFacts<'a> {
        RequestFacts {
            listener,
            method,
            target,
            decoded_target: target,
            is_tree: false,
        }
    }

    #[test]
    fn times_and_matching() {
        let mut table = FaultTable::default();
        let id = table.add(Fault::status(503).on(Listener::Cdn).path("x.bin").times(2));
        let cdn = facts(Listener::Cdn, "GET", "/cdn/abc?file=x.bin");
        assert!(table
            .plan(&facts(Listener::Api, "GET", "/x.bin"))
            .status
            .is_none());
        assert!(table.plan(&cdn).status.is_some());
        assert!(table.plan(&cdn).status.is_some());
        assert!(table.plan(&cdn).status.is_none());
        assert_eq!(table.hits(id), 2);
    }

    #[test]
    fn head_does_not_use_up_body_faults() {
        let mut table = FaultTable::default();
        let id = table.add(
            Fault::new(FaultKind::DropAfter {
                bytes: 1,
                reset: false,
            })
            .times(1),
        );
        assert!(table
            .plan(&facts(Listener::Api, "HEAD", "/a"))
            .drop_after
            .is_none());
        assert_eq!(table.hits(id), 0);
        assert!(table
            .plan(&facts(Listener::Api, "GET", "/a"))
            .drop_after
            .is_some());
    }

    #[test]
    fn json_shape() {
        let fault: Fault = serde_json::from_str(
            r#"{"listener":"cdn","times":1,"kind":{"type":"drop_after","bytes":10}}"#,
        )
        .unwrap();
        assert_eq!(
            fault,
            Fault::new(FaultKind::DropAfter {
                bytes: 10,
                reset: false
            })
            .on(Listener::Cdn)
            .times(1)
        );
        let typo: Result<Fault, _> =
            serde_json::from_str(r#"{"path_contain":"x","kind":{"type":"chunked"}}"#);
        assert!(typo.is_err());
    }
}
