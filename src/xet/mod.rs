//! Xet, the Hub's chunked storage for large files. The format itself (chunking, hashes, xorb
//! records) is the `xet-format` crate, shared with the hub emulator; re-exported here as
//! `tabcache::xet::hash`. The native transfer (reconstructions, xorbs, chunk-level dedup)
//! builds on it in the modules below.

pub use xet_format::hash;
pub use xet_format::xorb;

pub use hash::{file_hash, XetHash};
