//! The Xet storage format, shared by tabcache's native client and the hub emulator that tests
//! it, so that the two agree by construction and one oracle (the official `hf_xet`, in the
//! test venv) checks both: the emulator's `xetHash` listings and its xorbs are validated
//! against `hf_xet.hash_files` and an `hf_xet` download, and tabcache's hash against the same
//! files. It owns only bytes-in, bytes-out rules; no I/O beyond a `Read`, no HTTP.
//!
//! - [`hash`]: content-defined chunking, chunk hashes, the Merkle tree, file and xorb hashes.
//! - [`xorb`]: the chunk records a xorb (and every ranged fetch of one) is made of.

pub mod hash;
pub mod xorb;

pub use hash::{chunk_hash, file_hash, file_hash_with, merkle_root, Chunker, XetHash};
