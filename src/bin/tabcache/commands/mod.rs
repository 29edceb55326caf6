//! One function per command, each a few library calls and the printing of what they answer
//! (with `--json`, the library's report as it is). `main` dispatches here with the cache open.

mod budget;
mod download;
mod import;
mod ls;
mod read;
mod remove;
mod scan;
mod serve;
mod stats;
mod verify;

use tabcache::{Error, ErrorKind};

pub use budget::{evictions_so_far, note_evictions, note_pruned, pin, prune};
pub use download::download;
pub use import::import_hf;
pub use ls::ls;
pub use read::{cat, path};
pub use remove::{gc, rm};
pub use scan::scan;
pub use serve::serve;
pub use stats::stats;
pub use verify::verify;

/// How a command failed: the error, or damage it found and reported (`verify`).
pub enum Failure {
    Error(Error),
    Damaged(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

pub type CmdResult = Result<(), Failure>;

/// `e` followed by how to act on it with this command line (the library's messages name no
/// command).
fn with_hint(e: Error, hint: &str) -> Error {
    Error::new(e.kind(), format!("{}; {hint}", e.message()))
}

/// The library's error for a repo the cache does not hold, pointing at what it does hold.
fn not_held(e: Error) -> Error {
    match e.kind() {
        ErrorKind::RepoNotFound => with_hint(e, "`tabcache ls` lists what is"),
        _ => e,
    }
}
