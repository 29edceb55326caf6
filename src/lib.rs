//! tabcache: a model cache for HuggingFace repositories.
//!
//! [`ModelCache`] is the one facade that the C ABI (`ffi`), the `tabcache` command line and
//! Rust users call. Beneath it: `hub` speaks the Hub protocol, `quant` turns a listing into
//! quantization variants, `manifest` holds what `scan_repo` returns, `store` keeps the sled
//! catalog, the content-addressed blobs and the snapshot view, and `download` moves bytes.

pub mod download;
pub mod error;
pub mod hub;
pub mod validate;

pub use error::{Error, ErrorKind, Result};
