//! Moving bytes from a server into a verified temporary file: one stream for small files,
//! several ranged connections with positional writes for large ones, resumable from the
//! ranges recorded durable, hashed in file order while the transfer runs.
//!
//! [`transfer`] is the entry point; the store calls it with a file in its `tmp/` directory and
//! commits the file only after it returns `Ok`. The pieces: `plan` cuts a file into ranges,
//! `parallel` runs the ranged connections, `stream` the single one, `body` reads one response
//! with a stall watchdog, `retry` decides about retries, `hasher` hashes and verifies, and
//! `pwrite` does positional and durable file I/O on each platform, and `prefix` publishes the
//! bytes written in file order so far, for readers that stream a file while it downloads.

mod attempts;
mod body;
mod hasher;
mod parallel;
mod plan;
mod prefix;
// `serve` reads blobs at offsets with the same helper, so a file is read one way everywhere.
pub(crate) mod pwrite;
mod stream;

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dir::{Dir, Kind};
use crate::error::{Error, ErrorKind, Result};
pub(crate) use attempts::{sleep_unless, sleep_unless_stopped, Attempts};
pub(crate) use body::Control;
pub(crate) use prefix::{PrefixWatch, WrittenPrefix};

/// No real file is this large (1 PiB): a bigger size from a server is broken or hostile, and
/// is refused before anything is allocated for it.
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// Where the bytes come from: the hub client implements this for a resolved file URL, applying
/// its auth rules. One call is one request: the download retries failures marked transient
/// (waiting as long as their `retry_after` asks, unless cancelled), and a failure while reading
/// the body too (it resumes from the last byte held).
pub trait RangeSource: Send + Sync {
    /// GET the resource; with `Some((start, end))`, ask for bytes `start..end` (end exclusive).
    fn fetch(&self, range: Option<(u64, u64)>) -> Result<Fetched>;

    /// The server the bytes come from, as `host:port`: errors about what a response claimed
    /// name it.
    fn server(&self) -> String;

    /// The server that listed or resolved the file, as `host:port`: the size and hash given
    /// to [`transfer`] are its word, so errors about them name it.
    fn hub(&self) -> String;
}

/// An open response body.
pub struct Fetched {
    /// The server answered 206 with the range asked for; false means it sent the whole body.
    pub partial: bool,
    /// The body's length, when the server said (no `Content-Length` with chunked bodies).
    pub content_length: Option<u64>,
    /// The size of the whole file as the response states it: the total of a 206's
    /// `Content-Range` (None for `*`), a 200's `Content-Length`.
    pub total: Option<u64>,
    pub body: Box<dyn Read + Send>,
}

/// Which ranges of a partial download are durable on disk, as persisted by a [`ResumeLog`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialState {
    pub size: u64,
    pub range_size: u64,
    /// Bitset over range indices, 64 per word (empty for a Xet transfer).
    pub done: Vec<u64>,
    /// Set for a native Xet transfer, whose unit of resume is a term of the file's
    /// reconstruction rather than a byte range (`range_size` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xet: Option<XetPartial>,
}

/// What a native Xet transfer's resume record adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XetPartial {
    /// The Xet hash the terms are of: another file hash, another reconstruction.
    pub file_hash: String,
    /// Per term of the reconstruction: bytes from its start that are durable (whole chunks).
    pub prefixes: Vec<u64>,
    /// Their sum.
    pub durable: u64,
}

impl PartialState {
    /// Bytes in the ranges marked durable (the last range may be short). The record comes
    /// from disk and may be damaged: only its set bits are visited (never `size / range_size`
    /// indices), and the sum saturates.
    pub fn durable_bytes(&self) -> u64 {
        if let Some(xet) = &self.xet {
            return xet.durable.min(self.size);
        }
        let plan = plan::RangePlan {
            size: self.size,
            range_size: self.range_size.max(1),
        };
        let Some(done) = plan.resumable(self) else {
            return 0;
        };
        done.ones()
            .map(|i| plan.len(i))
            .fold(0u64, u64::saturating_add)
    }
}

/// Persistence of [`PartialState`] for one transfer; the store implements it over the catalog.
pub trait ResumeLog: Send + Sync {
    fn load(&self) -> Result<Option<PartialState>>;
    /// Called after the ranges it marks are synced to disk.
    fn save(&self, state: &PartialState) -> Result<()>;
    fn clear(&self) -> Result<()>;
}

/// How a transfer uses the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOptions {
    /// Connections used at once for one large file.
    pub connections: usize,
    /// The largest range one request asks for, and the unit of resume: a killed transfer
    /// fetches again at most one range per connection. Files too small to give every
    /// connection a full range use smaller ranges (whole MiBs, at least 1 MiB).
    pub range_size: u64,
    /// Files of at least this many bytes (and a known size) are fetched in ranges; smaller
    /// ones, and files of unknown size, in one stream.
    pub parallel_threshold: u64,
    /// A connection that delivers no byte for this long is cut and retried.
    pub stall_timeout: Duration,
    /// Failures in a row (without a new byte held) before a range or stream is given up.
    pub max_attempts: u32,
    /// First wait before a retry; it doubles with each failure in a row.
    pub backoff_base: Duration,
}

impl Default for TransferOptions {
    /// 16 MiB ranges: a request's round trip (a few ms to a CDN) is small next to the time
    /// 16 MiB takes on one connection (~100-300 ms at typical per-connection rates), a kill
    /// costs at most 8 x 16 MiB again, and a 100 GB file's resume bitset is under 1 KiB.
    fn default() -> Self {
        TransferOptions {
            connections: 8,
            range_size: 16 << 20,
            parallel_threshold: 32 << 20,
            stall_timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
        }
    }
}

/// What the listing says the content hashes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// An LFS file's oid.
    Sha256([u8; 32]),
    /// A non-LFS file's git blob id: sha1 of `"blob {len}\0"` followed by the content.
    GitSha1([u8; 20]),
    /// Nothing to check against; the sha256 is computed and returned all the same.
    Unknown,
}

/// A transfer that ended with the verified file at `tmp_path`, synced to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    pub sha256: [u8; 32],
    pub size: u64,
    /// Body bytes received over the network by this call (resumed bytes are not counted).
    pub bytes_fetched: u64,
}

/// Fetch `source` into `tmp_path` and verify it.
///
/// `size` is the size the listing gives (`None` when unknown: one stream, however large).
/// `progress` is raised, never lowered, to the bytes held so far, resumed ones included, as
/// they land; the caller polls and throttles it. Setting `cancel` stops every connection
/// within about 50 ms.
///
/// What a server claims is checked before anything is allocated for it: a size over
/// [`MAX_FILE_SIZE`] or over the free space of `tmp_path`'s file system is refused, and so is
/// a response whose `Content-Length` or `Content-Range` contradicts `size`. A file with
/// neither a size nor a hash (`size` None, [`Expected::Unknown`]) is refused before any
/// request: nothing could tell its bytes from any others, and a `Transferred` means verified.
///
/// Errors: [`ErrorKind::Corrupt`] for a size or hash mismatch, after deleting `tmp_path` and
/// clearing `resume` (a mismatch on a resumed file is first retried once from scratch);
/// [`ErrorKind::Http`] for a size that cannot be real or a file that cannot be verified;
/// [`ErrorKind::DiskFull`] for a file larger than the free space; [`ErrorKind::Cancelled`]
/// when cancelled, keeping `tmp_path` and `resume` so a later call resumes; the source's
/// error when it is not transient (e.g. not found) or when retries ran out; I/O errors of the
/// temporary file. A failure that leaves nothing resumable deletes `tmp_path` (it may be
/// preallocated to the whole size).
///
/// The file's folder is opened once and the file is then only ever created, opened and
/// removed by its name in that folder, never through a link at that name (see [`transfer_in`]).
#[allow(clippy::too_many_arguments)]
pub fn transfer(
    source: &dyn RangeSource,
    tmp_path: &Path,
    size: Option<u64>,
    expected: &Expected,
    opts: &TransferOptions,
    progress: &AtomicU64,
    cancel: &AtomicBool,
    resume: &dyn ResumeLog,
) -> Result<Transferred> {
    let (dir, name) = Dir::open_parent(tmp_path)
        .map_err(|e| Error::io("could not open the folder of", tmp_path, e))?;
    let name = name.to_str().ok_or_else(|| {
        Error::invalid(format!("{} is not a UTF-8 file name", tmp_path.display()))
    })?;
    // Nobody reads this transfer's file while it runs.
    let unread = PrefixWatch::default();
    transfer_in(
        source, &dir, name, size, expected, opts, progress, cancel, resume, &unread,
    )
}

/// [`transfer`] into the file `name` of the open folder `dir` (the cache's `tmp/`): every
/// open, creation and removal is relative to `dir` and refuses a link or special file at
/// `name`; a file started from scratch replaces whatever was at `name` by a new one, and a
/// resumed one must be a regular file with no other hard link. So a link planted at the name
/// or at the folder's path never leads a write elsewhere.
///
/// `prefix` is told the file and how much of it is in place from byte 0 as the transfer
/// goes, for readers that stream it meanwhile.
///
/// Long but linear: refuse what cannot be verified, check room, run, retry once from scratch
/// after a corrupt resume, verify; each step is a call.
#[allow(clippy::too_many_arguments)]
pub(crate) fn transfer_in(
    source: &dyn RangeSource,
    dir: &Dir,
    name: &str,
    size: Option<u64>,
    expected: &Expected,
    opts: &TransferOptions,
    progress: &AtomicU64,
    cancel: &AtomicBool,
    resume: &dyn ResumeLog,
    prefix: &PrefixWatch,
) -> Result<Transferred> {
    if size.is_none() && *expected == Expected::Unknown {
        return Err(unverifiable(&source.hub()));
    }
    let tmp_path = dir.join(name);
    let at = At {
        dir,
        name,
        path: &tmp_path,
    };
    if let Some(size) = size {
        check_room(size, &at, &source.hub())?;
    }
    let job = Job {
        source,
        at,
        size,
        expected,
        opts,
        progress,
        cancel,
        resume,
        prefix,
        fetched: AtomicU64::new(0),
        resumed: AtomicU64::new(0),
    };
    let run = |job: &Job| match size {
        Some(size) if size > 0 && size >= opts.parallel_threshold => parallel::run(job, size),
        _ => stream::run(job, None, None),
    };
    let mut result = run(&job);
    if matches!(&result, Err(e) if e.kind() == ErrorKind::Corrupt)
        && job.resumed.load(Ordering::Relaxed) > 0
    {
        // Bytes kept from an earlier attempt may be what is wrong (a server that once sent a
        // bad range): start again from nothing, once, before calling the content corrupt.
        discard(&job.at, resume)?;
        job.resumed.store(0, Ordering::Relaxed);
        result = run(&job);
    }
    match result {
        Err(err) if err.kind() == ErrorKind::Corrupt => {
            // The bytes are bad: neither they nor the record of them may be resumed.
            if let Err(e) = discard(&job.at, resume) {
                return Err(err.context(format!("(and discarding the partial file failed: {e})")));
            }
            Err(err)
        }
        Err(err) if cancel.load(Ordering::Relaxed) && err.kind() != ErrorKind::Cancelled => {
            Err(Error::cancelled())
        }
        Err(err) if err.kind() != ErrorKind::Cancelled => {
            // Given up: a partial file holding no durable range is worth nothing to a later
            // call, and a preallocated one holds the file's whole size of disk.
            let durable = resume
                .load()
                .map_or(true, |state| state.is_some_and(|s| s.durable_bytes() > 0));
            if !durable {
                if let Err(e) = discard(&job.at, resume) {
                    return Err(err.context(format!("(and removing the partial file failed: {e})")));
                }
            }
            Err(err)
        }
        other => other,
    }
}

/// The refusal of a file that comes with neither a size nor a hash.
fn unverifiable(hub: &str) -> Error {
    Error::new(
        ErrorKind::Http,
        format!(
            "the server at {hub} gave neither the size nor a hash (sha256 or git blob id) of this file, \
             so its bytes could not be checked; tabcache refuses to cache what it cannot verify, and nothing was downloaded. \
             The Hugging Face Hub always sends both: check HF_ENDPOINT, or the proxy or mirror in between"
        ),
    )
}

/// Refuse a claimed `size` that cannot be real (over [`MAX_FILE_SIZE`]) or that the file
/// system holding `at` has no room for, before anything is allocated for it. Bytes of `at`
/// already on disk (a resumed, preallocated file) count as room.
pub(crate) fn check_room(size: u64, at: &At, server: &str) -> Result<()> {
    if size > MAX_FILE_SIZE {
        return Err(Error::new(
            ErrorKind::Http,
            format!(
                "the server at {server} claimed a size of {size} bytes ({}) for this file, which is invalid: \
                 no file is larger than {} ({MAX_FILE_SIZE} bytes); nothing was allocated or downloaded. \
                 The server (or a proxy in between) is at fault: check HF_ENDPOINT, or report it to whoever runs that server",
                human_bytes(size),
                human_bytes(MAX_FILE_SIZE)
            ),
        ));
    }
    let on_disk = at
        .dir
        .stat(at.name)
        .ok()
        .flatten()
        .filter(|m| m.kind == Kind::File)
        .map_or(0, |m| m.len);
    let needed = size.saturating_sub(on_disk);
    match at.dir.free_space() {
        Some(free) if needed > free => Err(Error::new(
            ErrorKind::DiskFull,
            // Most files larger than the free space are real, so this reads as the disk-full
            // message it most likely is, and says what it is if the size cannot be real.
            format!(
                "disk full: the server at {server} claimed a size of {size} bytes ({}) for this file, more than \
                 the {} free on the file system of {}; nothing was allocated or downloaded. If the file is that large, \
                 free some space (gc removes stale partial downloads; or move the cache) and retry; if it cannot be, the size the \
                 server claimed is invalid (the server or a proxy in between is at fault)",
                human_bytes(size),
                human_bytes(free),
                at.dir.path().display()
            ),
        )),
        _ => Ok(()),
    }
}

/// `1.5 GiB`: sizes in messages, readable next to the exact byte count.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A size a response stated that contradicts the size the file is known to have: nothing from
/// such a response is used.
pub(crate) fn size_claim_refused(server: &str, claim: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "the server at {server} {claim}: the size it claimed is invalid, so nothing was cached \
             and nothing it sent was kept. The server (or a proxy in between) is at fault: retry later, \
             and if it persists report it to whoever runs that server"
        ),
    )
}

/// The file a transfer writes: `name` in the open folder `dir`, at `path` (for messages).
pub(crate) struct At<'a> {
    dir: &'a Dir,
    name: &'a str,
    path: &'a Path,
}

/// One call of [`transfer`], shared by the threads that serve it.
pub(crate) struct Job<'a> {
    source: &'a dyn RangeSource,
    at: At<'a>,
    size: Option<u64>,
    expected: &'a Expected,
    opts: &'a TransferOptions,
    progress: &'a AtomicU64,
    cancel: &'a AtomicBool,
    resume: &'a dyn ResumeLog,
    prefix: &'a PrefixWatch,
    /// Body bytes received over the network by this call.
    fetched: AtomicU64,
    /// Bytes taken over from an earlier attempt's partial file.
    resumed: AtomicU64,
}

/// Delete a partial file and its resume record: its bytes must not be trusted again.
fn discard(at: &At, resume: &dyn ResumeLog) -> Result<()> {
    at.dir
        .remove_file(at.name)
        .map_err(|e| Error::io("could not remove", at.path, e))?;
    resume.clear()
}

impl Job<'_> {
    /// Record that `held` bytes are now held. Callers pass running totals; taking the
    /// maximum keeps the caller's view monotonic when a stream restarts from zero or
    /// threads report out of order.
    fn report_held(&self, held: u64) {
        self.progress.fetch_max(held, Ordering::Relaxed);
    }

    fn io_error(&self, what: &str, err: std::io::Error) -> Error {
        Error::io(what, self.at.path, err)
    }

    /// The partial file, created anew (whatever was at its name is unlinked, never truncated
    /// or followed).
    fn create_file(&self) -> Result<std::fs::File> {
        self.at
            .dir
            .create_fresh(self.at.name)
            .map_err(|e| self.io_error("creating", e))
    }
}
