//! Exit codes: the one mapping from the library's error kinds to the codes scripts branch
//! on, and the `--help` text that documents them.

use tabcache::ErrorKind;

const FAILURE: u8 = 1;
/// Also what clap's usage errors exit with.
pub const USAGE: u8 = 2;
const NOT_FOUND: u8 = 3;
const NETWORK: u8 = 4;
const DAMAGED: u8 = 5;
const LOCKED: u8 = 6;
const OFFLINE: u8 = 7;
/// Also what a second Ctrl-C exits with at once (see `interrupt`).
pub const INTERRUPTED: u8 = 130;

pub const HELP: &str = "\
Exit codes:
  0    success
  1    other failure (file system, disk full, internal error)
  2    usage error (bad arguments, invalid repo id or path)
  3    not found (repo, revision, file or variant; or not cached)
  4    network or authentication failure (unreachable, refused token, gated, rate limited)
  5    integrity damage (bytes that do not match their hash; `verify` found damage)
  6    reserved (releases before 0.2: cache locked by another process)
  7    offline mode and the request needs the network
  130  interrupted (Ctrl-C); partial downloads are kept and the next run resumes

Any number of tabcache commands and programs using the library may share one cache at once.
The cache directory is --cache, else $TABCACHE_HOME, else `tabcache` under the platform cache
directory ($XDG_CACHE_HOME or ~/.cache, ~/Library/Caches, %LOCALAPPDATA%).";

pub fn code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidArgument => USAGE,
        ErrorKind::RepoNotFound | ErrorKind::RevisionNotFound | ErrorKind::EntryNotFound => {
            NOT_FOUND
        }
        ErrorKind::GatedRepo
        | ErrorKind::Unauthorized
        | ErrorKind::RateLimited
        | ErrorKind::Network
        | ErrorKind::Http => NETWORK,
        ErrorKind::Corrupt => DAMAGED,
        ErrorKind::Locked => LOCKED,
        ErrorKind::Offline => OFFLINE,
        ErrorKind::Cancelled => INTERRUPTED,
        ErrorKind::Io | ErrorKind::DiskFull | ErrorKind::Internal => FAILURE,
    }
}
