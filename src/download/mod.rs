//! Moving bytes from a server into a verified temporary file: one stream for small files,
//! several ranged connections with positional writes for large ones, resumable from the
//! ranges recorded durable, hashed in file order while the transfer runs.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Where the bytes come from: the hub client implements this for a resolved file URL, applying
/// its auth rules and retrying until response headers arrive. A failure while reading the body
/// is the download's to handle (it resumes from the last byte held).
pub trait RangeSource: Send + Sync {
    /// GET the resource; with `Some((start, end))`, ask for bytes `start..end` (end exclusive).
    fn fetch(&self, range: Option<(u64, u64)>) -> Result<Fetched>;
}

/// An open response body.
pub struct Fetched {
    /// The server answered 206 with the range asked for; false means it sent the whole body.
    pub partial: bool,
    /// The body's length, when the server said (no `Content-Length` with chunked bodies).
    pub content_length: Option<u64>,
    pub body: Box<dyn Read + Send>,
}

/// Which ranges of a partial download are durable on disk, as persisted by a [`ResumeLog`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialState {
    pub size: u64,
    pub range_size: u64,
    /// Bitset over range indices, 64 ranges per word.
    pub done: Vec<u64>,
}

/// Persistence of [`PartialState`] for one transfer; the store implements it over the catalog.
pub trait ResumeLog: Send + Sync {
    fn load(&self) -> Result<Option<PartialState>>;
    /// Called after the ranges it marks are synced to disk.
    fn save(&self, state: &PartialState) -> Result<()>;
    fn clear(&self) -> Result<()>;
}
