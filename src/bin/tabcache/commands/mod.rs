//! One function per command, each a few library calls and the printing of what they answer
//! (with `--json`, the library's report as it is). `main` dispatches here with the cache open.

mod download;
mod import;
mod ls;
mod read;
mod remove;
mod scan;
mod stats;
mod verify;

use tabcache::Error;

pub use download::download;
pub use import::import_hf;
pub use ls::ls;
pub use read::{cat, path};
pub use remove::{gc, rm};
pub use scan::scan;
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
