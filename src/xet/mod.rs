//! Xet, the Hub's chunked storage for large files, fetched natively: a Xet-backed file (one
//! the listing or the resolve names a Xet hash for) is rebuilt from the chunks of the CAS's
//! xorbs instead of being streamed whole through the bridge, verified by its Xet hash — a
//! tree over chunk hashes, computed on every core as the chunks arrive, unlike sha256's one
//! sequential chain — and, where the blobs we hold already have some of its chunks (another
//! revision, a variant sharing tensors), only the other chunks are fetched.
//!
//! - The format (chunking, hashes, xorb records) is the `xet-format` crate, shared with the
//!   hub emulator; re-exported here as [`hash`] and [`xorb`].
//! - `reconstruction`: the CAS's description of a file, checked before it is used.
//! - `transfer`: the transfer itself (tokens, pieces over several connections, dedup, resume).
//! - The chunk index ([`LocalChunks`]) is the store's, in the catalog.
//!
//! The blob is still named by the sha256 the Hub lists: for a Xet file the Hub's pairing of
//! its two hashes is trusted, and the bytes are checked by the Xet hash alone.

mod reconstruction;
mod transfer;

pub use xet_format::hash;
pub use xet_format::xorb;

pub use hash::{file_hash, XetHash};
pub(crate) use transfer::{transfer, Failure, XetFile};

/// One chunk of a file fetched natively: what the chunk index records, so a later term
/// naming the same chunk of the same xorb is copied from this file's blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub xorb: XetHash,
    /// The chunk's index in its xorb.
    pub index: u32,
    /// Where it is in the file.
    pub offset: u64,
    pub len: u32,
    pub hash: XetHash,
}

/// Chunks `start..end` of one xorb as a blob we hold has them.
pub(crate) struct LocalRun {
    /// The blob, open for reading (and so kept from eviction while this lives).
    pub file: std::fs::File,
    /// Per chunk, in order: offset in the blob, length, hash.
    pub chunks: Vec<(u64, u32, XetHash)>,
}

/// The chunk index: which chunks of which xorbs the cache's blobs hold.
pub(crate) trait LocalChunks: Sync {
    /// Whether every chunk `start..end` of `xorb` is held (a cheap look-up, no file opened).
    fn has(&self, xorb: &XetHash, start: u32, end: u32) -> bool;
    /// Those chunks, opened, or None when they are not (or no longer) all held.
    fn find(&self, xorb: &XetHash, start: u32, end: u32) -> Option<LocalRun>;
}
