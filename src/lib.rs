//! tabcache: a model cache for HuggingFace repositories.
//!
//! [`ModelCache`] is the one facade that the C ABI (`ffi`), the `tabcache` command line and
//! Rust users call. Beneath it: `hub` speaks the Hub protocol, `quant` turns a listing into
//! quantization variants, `manifest` holds what `scan_repo` returns, `store` keeps the SQLite
//! catalog, the content-addressed blobs and the snapshot view, `fetch` plans and schedules the
//! transfers of a request, and `download` moves bytes. `serve` answers HTTP clients out of the
//! cache over the Hub's own protocol (a local Hugging Face endpoint).

/// The one list of call outcomes (`tc_status`, its numbers and names, the error kinds and
/// their exit codes) that `error` and `ffi` generate their types from. First, so that its
/// macro is in scope in the modules below.
#[macro_use]
mod status_table;

mod backoff;
mod budget;
mod cache;
pub mod digest;
mod dir;
pub mod download;
pub mod error;
mod fetch;
pub mod ffi;
mod flight;
mod fork;
pub mod hub;
pub mod jobs;
pub mod maintenance;
pub mod manifest;
mod options;
mod progress;
pub mod quant;
mod scan;
pub mod serve;
mod store;
pub mod validate;
pub mod xet;

pub use cache::{CacheOptions, CachedFile, ModelCache, DEFAULT_REVISION};
pub use error::{Error, ErrorKind, Result};
pub use maintenance::inventory::Stats;
pub use manifest::{Manifest, QuantInfo, QuantStatus};
pub use options::{default_cache_dir, parse_byte_size};
pub use progress::{FileEvent, FileProgressFn, ProgressFn};
pub use store::Rebuilt;
