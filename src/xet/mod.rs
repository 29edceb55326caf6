//! Xet, the Hub's chunked storage for large files. For now: the Xet file hash ([`hash`]), so
//! a Xet-backed file can be verified by the hash the Hub lists for it (`xetHash`), which is
//! a tree over chunks and so, unlike sha256, not one sequential chain. The native transfer
//! (reconstructions, xorbs, chunk-level dedup) is issue 16's remaining work.

pub mod hash;

pub use hash::{file_hash, XetHash};
