//! The transfer engine (`tabcache::download::transfer`) against the hub emulator over
//! 127.0.0.1, through the hub client's `FileSource`: large ranged transfers, resume after a
//! cancel, and every fault the emulator injects (drops, stalls, truncation, extra and flipped
//! bytes, servers ignoring `Range`, chunked bodies, 5xx/429 bursts).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hub_emulator::{Emulator, Fault, FaultKind, Listener, PseudoRandomReader};
use tabcache::digest::from_hex;
use tabcache::download::{
    transfer, Expected, PartialState, RangeSource, ResumeLog, TransferOptions, Transferred,
};
use tabcache::hub::{FileSource, HubClient, HubOptions};
use tabcache::{ErrorKind, Result};

mod common;
use common::{hub, hub_client, peak_rss_kib, Hub};

const MIB: u64 = 1 << 20;
const REPO: &str = "org/model";

/// A resume log in memory, counting what the engine does with it.
#[derive(Default)]
struct MemoryLog {
    state: Mutex<Option<PartialState>>,
    saves: AtomicUsize,
    clears: AtomicUsize,
}

impl ResumeLog for MemoryLog {
    fn load(&self) -> Result<Option<PartialState>> {
        Ok(self.state.lock().unwrap().clone())
    }
    fn save(&self, state: &PartialState) -> Result<()> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        *self.state.lock().unwrap() = Some(state.clone());
        Ok(())
    }
    fn clear(&self) -> Result<()> {
        self.clears.fetch_add(1, Ordering::SeqCst);
        *self.state.lock().unwrap() = None;
        Ok(())
    }
}

impl MemoryLog {
    fn done_ranges(&self) -> u32 {
        self.state
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |s| s.done.iter().map(|w| w.count_ones()).sum())
    }
}

/// A hub serving one repo, a hub client pointed at it, and a folder for partial files.
struct Setup {
    hub: Hub,
    tmp: tempfile::TempDir,
    client: HubClient,
}

impl Setup {
    /// A set-up serving a pseudo-random file `path` of `size` bytes from `seed`, with the
    /// file's source, a partial-file path for it, and its sha256.
    fn with_file(path: &str, size: u64, seed: u64) -> (Setup, FileSource, PathBuf, [u8; 32]) {
        let setup = Setup::new();
        let sha = setup.add_file(path, size, seed);
        let (source, tmp) = (setup.source(path), setup.tmp(path));
        (setup, source, tmp, sha)
    }

    fn new() -> Setup {
        let hub = hub(|_| {});
        // Slower and more patient than the cache tests' client: these transfers are large
        // and run beside other tests on shared cores.
        let client = hub_client(
            &hub,
            HubOptions {
                token: Some(String::new()),
                offline: Some(false),
                read_timeout: Some(Duration::from_secs(30)),
                max_retries: Some(5),
                retry_base_delay: Some(Duration::from_millis(10)),
                ..HubOptions::default()
            },
        );
        let tmp = tempfile::tempdir().unwrap();
        Setup { hub, tmp, client }
    }

    fn emu(&self) -> &Emulator {
        &self.hub.emu
    }

    /// Adds a pseudo-random file and returns its sha256.
    fn add_file(&self, path: &str, len: u64, seed: u64) -> [u8; 32] {
        hub_emulator::write_pseudo_random_file(self.hub.root(), REPO, path, len, seed).unwrap();
        from_hex(&hub_emulator::pseudo_random_sha256(len, seed)).unwrap()
    }

    /// The source the downloader gets: the CDN location for LFS files, found by a HEAD.
    fn source(&self, path: &str) -> FileSource {
        let resolved = self.client.resolve(REPO, "main", path).unwrap();
        self.client.file_source(&resolved.url)
    }

    fn tmp(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// [`fetch`] of the repo's `path` into the partial file `tmp`.
    fn fetch(
        &self,
        path: &str,
        tmp: &str,
        size: u64,
        sha256: [u8; 32],
        opts: &TransferOptions,
        log: &MemoryLog,
    ) -> Run {
        fetch(&self.source(path), &self.tmp(tmp), size, sha256, opts, log)
    }

    fn fault(&self, path: &str, kind: FaultKind) -> Fault {
        Fault::new(kind).on(Listener::Cdn).path(path)
    }
}

fn options(connections: usize, range_mib: u64) -> TransferOptions {
    TransferOptions {
        connections,
        range_size: range_mib * MIB,
        parallel_threshold: 2 * MIB,
        stall_timeout: Duration::from_secs(10),
        max_attempts: 5,
        backoff_base: Duration::from_millis(20),
    }
}

/// One transfer, with a thread sampling `progress` the way a caller would; panics if the
/// samples ever go down.
struct Run {
    result: Result<Transferred>,
    last_progress: u64,
    elapsed: Duration,
}

#[allow(clippy::too_many_arguments)]
fn run_with(
    source: &dyn RangeSource,
    tmp: &Path,
    size: Option<u64>,
    expected: &Expected,
    opts: &TransferOptions,
    log: &MemoryLog,
    cancel: &AtomicBool,
    during: impl FnOnce(&AtomicU64) + Send,
) -> Run {
    let progress = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let started = Instant::now();
    let (result, elapsed) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut last = 0;
            while !finished.load(Ordering::SeqCst) {
                let now = progress.load(Ordering::SeqCst);
                assert!(now >= last, "progress went down from {last} to {now}");
                last = now;
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let helper = s.spawn(|| during(&progress));
        let result = transfer(source, tmp, size, expected, opts, &progress, cancel, log);
        let elapsed = started.elapsed();
        finished.store(true, Ordering::SeqCst);
        sampler.join().unwrap();
        helper.join().unwrap();
        (result, elapsed)
    });
    Run {
        result,
        last_progress: progress.load(Ordering::SeqCst),
        elapsed,
    }
}

fn run(
    source: &dyn RangeSource,
    tmp: &Path,
    size: Option<u64>,
    expected: &Expected,
    opts: &TransferOptions,
    log: &MemoryLog,
) -> Run {
    run_with(
        source,
        tmp,
        size,
        expected,
        opts,
        log,
        &AtomicBool::new(false),
        |_| {},
    )
}

/// The usual transfer: a file of known `size`, checked against its sha256, never cancelled.
fn fetch(
    source: &dyn RangeSource,
    tmp: &Path,
    size: u64,
    sha256: [u8; 32],
    opts: &TransferOptions,
    log: &MemoryLog,
) -> Run {
    run(
        source,
        tmp,
        Some(size),
        &Expected::Sha256(sha256),
        opts,
        log,
    )
}

/// A transfer cancelled `grace` after `ready(progress)` first holds; also returns how long the
/// transfer took to return once cancelled.
#[allow(clippy::too_many_arguments)]
fn run_cancelled_when(
    source: &dyn RangeSource,
    tmp: &Path,
    size: u64,
    sha: [u8; 32],
    opts: &TransferOptions,
    log: &MemoryLog,
    grace: Duration,
    ready: impl Fn(&AtomicU64) -> bool + Sync,
) -> (Run, Duration) {
    let cancel = AtomicBool::new(false);
    let cancelled_at = Mutex::new(None);
    let run = run_with(
        source,
        tmp,
        Some(size),
        &Expected::Sha256(sha),
        opts,
        log,
        &cancel,
        |progress| {
            while !ready(progress) {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(grace);
            *cancelled_at.lock().unwrap() = Some(Instant::now());
            cancel.store(true, Ordering::SeqCst);
        },
    );
    let stopped_in = cancelled_at.lock().unwrap().unwrap().elapsed();
    (run, stopped_in)
}

/// The file holds exactly the generated bytes (compared piece by piece, never whole).
fn assert_same_bytes(path: &Path, len: u64, seed: u64) {
    let mut want = PseudoRandomReader::new(len, seed);
    let mut got = fs::File::open(path).unwrap();
    assert_eq!(got.metadata().unwrap().len(), len);
    let (mut a, mut b) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(MIB) as usize;
        want.read_exact(&mut a[..n]).unwrap();
        got.read_exact(&mut b[..n]).unwrap();
        assert!(
            a[..n] == b[..n],
            "bytes differ in the MiB at offset {offset}"
        );
        offset += n as u64;
    }
}

fn expect_ok(run: &Run, size: u64, sha256: [u8; 32]) -> Transferred {
    let done = run
        .result
        .clone()
        .unwrap_or_else(|e| panic!("transfer failed: {e}"));
    assert_eq!(done.sha256, sha256);
    assert_eq!(done.size, size);
    assert_eq!(run.last_progress, size);
    done
}

fn cdn_range_requests(setup: &Setup, path: &str) -> Vec<String> {
    setup
        .hub
        .cdn_requests()
        .into_iter()
        .filter(|r| r.target.contains(path) && r.method == "GET")
        .filter_map(|r| r.range)
        .collect()
}

#[test]
fn large_file_over_eight_connections_matches_the_source() {
    let size = 120 * MIB + 12_345;
    let (setup, source, tmp, sha) = Setup::with_file("big.gguf", size, 1);
    let log = MemoryLog::default();
    let rss_before = peak_rss_kib();
    let run = fetch(&source, &tmp, size, sha, &options(8, 8), &log);
    let done = expect_ok(&run, size, sha);
    eprintln!(
        "{} MiB over 8 connections in {:.2} s (verified and synced)",
        size / MIB,
        run.elapsed.as_secs_f64()
    );
    assert_eq!(done.bytes_fetched, size);
    assert_same_bytes(&tmp, size, 1);

    // 16 ranges of 8 MiB, each asked for once, over eight connections at once.
    let ranges = cdn_range_requests(&setup, "big.gguf");
    assert_eq!(ranges.len(), 16, "{ranges:?}");
    let connections: std::collections::HashSet<u64> = setup
        .hub
        .cdn_requests()
        .into_iter()
        .filter(|r| r.range.is_some())
        .map(|r| r.connection)
        .collect();
    assert!(
        connections.len() >= 8,
        "only {} connections",
        connections.len()
    );
    assert_eq!(setup.emu().bytes_sent_for("big.gguf"), size);
    assert_eq!(log.done_ranges(), 16, "every range recorded durable");
    // Memory: buffers per connection, not the file (other tests share the process, so the
    // bound is loose but far below the file's 120 MiB).
    if let (Some(before), Some(after)) = (rss_before, peak_rss_kib()) {
        assert!(
            after.saturating_sub(before) < 48 * 1024,
            "peak RSS grew {} KiB",
            after - before
        );
    }
}

#[test]
fn cancel_then_resume_fetches_at_most_one_range_per_connection_again() {
    let size = 48 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("resume.bin", size, 2);
    let log = MemoryLog::default();
    let opts = options(4, 2);
    // Slow enough to cancel half way.
    let slow = setup.emu().add_fault(setup.fault(
        "resume.bin",
        FaultKind::RateLimit {
            bytes_per_sec: 6 * MIB,
        },
    ));
    let (first, _) = run_cancelled_when(
        &source,
        &tmp,
        size,
        sha,
        &opts,
        &log,
        Duration::ZERO,
        |progress| progress.load(Ordering::SeqCst) >= size / 2,
    );
    assert_eq!(first.result.unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(fs::metadata(&tmp).unwrap().len(), size, "partial file kept");
    let durable = log.done_ranges() as u64;
    assert!(
        durable >= 6,
        "only {durable} ranges durable after half the file"
    );
    assert!(durable < 24);

    setup.emu().remove_fault(slow);
    let second = fetch(&source, &tmp, size, sha, &opts, &log);
    let done = expect_ok(&second, size, sha);
    assert_eq!(
        done.bytes_fetched,
        size - durable * 2 * MIB,
        "only the missing ranges"
    );
    assert_same_bytes(&tmp, size, 2);
    let total = setup.emu().bytes_sent_for("resume.bin");
    assert!(
        total <= size + 4 * 2 * MIB,
        "sent {total} bytes for a {size}-byte file"
    );
}

#[test]
#[cfg(unix)]
fn resumed_ranges_are_hashed_from_disk_and_a_bad_one_restarts_the_file() {
    let size = 16 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("w.bin", size, 3);
    let log = MemoryLog::default();
    let opts = options(2, 1);
    setup.emu().add_fault(setup.fault(
        "w.bin",
        FaultKind::RateLimit {
            bytes_per_sec: 4 * MIB,
        },
    ));
    let (first, _) = run_cancelled_when(
        &source,
        &tmp,
        size,
        sha,
        &opts,
        &log,
        Duration::ZERO,
        |progress| progress.load(Ordering::SeqCst) >= 4 * MIB,
    );
    assert_eq!(first.result.unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(log.done_ranges() >= 1);
    // Damage the first range, which the log says is durable: the resumed run must notice.
    let mut bytes = vec![0u8; 1];
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tmp)
        .unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, 100).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[!bytes[0]], 100).unwrap();
    drop(file);
    setup.emu().clear_faults();
    let second = fetch(&source, &tmp, size, sha, &opts, &log);
    // The damage is caught by the hash, and since resumed bytes may be what is wrong, the
    // transfer starts once more from nothing: the whole file comes again, right this time.
    let done = second.result.unwrap();
    assert_eq!(done.sha256, sha);
    assert!(
        done.bytes_fetched >= size,
        "fetched {} after discarding the resumed bytes",
        done.bytes_fetched
    );
    assert_eq!(fs::read(&tmp).unwrap().len() as u64, size);

    // A server that keeps sending a bad byte is corrupt for good: nothing is kept.
    let _ = fs::remove_file(&tmp);
    log.clear().unwrap();
    setup
        .emu()
        .add_fault(setup.fault("w.bin", FaultKind::Corrupt { offset: 100 }));
    let third = fetch(&source, &tmp, size, sha, &opts, &log);
    let err = third.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(!tmp.exists(), "corrupt partial file removed");
    assert!(log.state.lock().unwrap().is_none(), "resume record cleared");
}

/// A cancel withdrawn again a moment later (a flight that a new requester joins as it stops):
/// whichever of the transfer's threads saw it, the transfer ends promptly, either verified
/// (none saw it) or cancelled (the requester then starts it again, resuming), never as a
/// failure of its own and never with a thread left waiting for others that quit. Windows
/// around the threads' polls, so that some threads see the cancel and some do not.
#[test]
fn a_cancel_withdrawn_while_the_transfer_stops_ends_it_cancelled_or_done() {
    let size = 8 * MIB;
    let (setup, source, _, sha) = Setup::with_file("flicker.bin", size, 5);
    setup.emu().add_fault(setup.fault(
        "flicker.bin",
        FaultKind::RateLimit {
            bytes_per_sec: 2 * MIB,
        },
    ));
    for window_ms in [1, 5, 10, 20, 30, 45, 60] {
        let log = MemoryLog::default();
        let tmp = setup.tmp(&format!("flicker-{window_ms}"));
        let cancel = AtomicBool::new(false);
        let run = run_with(
            &source,
            &tmp,
            Some(size),
            &Expected::Sha256(sha),
            &options(4, 1),
            &log,
            &cancel,
            |progress| {
                while progress.load(Ordering::SeqCst) < MIB {
                    std::thread::sleep(Duration::from_millis(2));
                }
                cancel.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(window_ms));
                cancel.store(false, Ordering::SeqCst);
            },
        );
        match run.result {
            Ok(done) => assert_eq!(done.sha256, sha, "{window_ms} ms"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Cancelled, "{window_ms} ms: {e}"),
        }
        assert!(
            run.elapsed < Duration::from_secs(10),
            "{window_ms} ms: {:?}",
            run.elapsed
        );
    }
}

#[test]
fn cancel_stops_promptly_even_while_the_server_stalls() {
    let size = 8 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("c.bin", size, 4);
    let log = MemoryLog::default();
    let mut opts = options(4, 1);
    opts.stall_timeout = Duration::from_secs(60);
    setup.emu().add_fault(setup.fault(
        "c.bin",
        FaultKind::Stall {
            bytes: 300_000,
            seconds: 30.0,
        },
    ));
    let (run, stopped_in) = run_cancelled_when(
        &source,
        &tmp,
        size,
        sha,
        &opts,
        &log,
        Duration::from_millis(100),
        |progress| progress.load(Ordering::SeqCst) >= 4 * 300_000,
    );
    assert_eq!(run.result.unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(
        stopped_in < Duration::from_secs(1),
        "took {stopped_in:?} to stop"
    );
    assert!(tmp.exists(), "partial file kept for resume");
    assert_eq!(log.clears.load(Ordering::SeqCst), 0);
}

#[test]
fn cancel_stops_promptly_during_a_retry_wait_the_server_asked_for() {
    // Every request is told to come back in 30 s (429 with Retry-After): the transfer waits,
    // and a cancel must end that wait, not sit it out.
    let size = 8 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("r.bin", size, 5);
    setup
        .emu()
        .add_fault(Fault::rate_limited(30).on(Listener::Cdn).times(1000));
    let cdn_requests = || setup.hub.cdn_requests().len();
    // The grace lets every connection be refused and start its wait.
    let (run, stopped_in) = run_cancelled_when(
        &source,
        &tmp,
        size,
        sha,
        &options(4, 1),
        &MemoryLog::default(),
        Duration::from_millis(300),
        |_| cdn_requests() >= 4,
    );
    assert_eq!(run.result.unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(
        stopped_in < Duration::from_secs(1),
        "took {stopped_in:?} to stop"
    );
    // One request per connection: the wait was honoured, not hammered through.
    let refused = setup
        .hub
        .cdn_requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .count();
    assert!((1..=4).contains(&refused), "{refused} requests refused");
}

#[test]
fn dropped_connections_resume_from_the_last_byte_held() {
    let size = 24 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("d.bin", size, 5);
    let log = MemoryLog::default();
    let drop_after = MIB + 12_345;
    setup.emu().add_fault(
        setup
            .fault(
                "d.bin",
                FaultKind::DropAfter {
                    bytes: drop_after,
                    reset: false,
                },
            )
            .times(3),
    );
    let run = fetch(&source, &tmp, size, sha, &options(4, 4), &log);
    let done = expect_ok(&run, size, sha);
    assert_same_bytes(&tmp, size, 5);
    // Three ranges were cut and continued from where they stopped, nothing fetched twice.
    let resumed: Vec<String> = cdn_range_requests(&setup, "d.bin")
        .into_iter()
        .filter(|r| {
            let start: u64 = r
                .trim_start_matches("bytes=")
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            start % (4 * MIB) == drop_after
        })
        .collect();
    assert_eq!(resumed.len(), 3, "{resumed:?}");
    assert_eq!(done.bytes_fetched, size);
    assert_eq!(setup.emu().bytes_sent_for("d.bin"), size);
}

#[test]
fn a_reset_stream_resumes_with_a_range() {
    let size = 1_500_000;
    let (setup, source, tmp, sha) = Setup::with_file("s.gguf", size, 6);
    setup.emu().add_fault(
        setup
            .fault(
                "s.gguf",
                FaultKind::DropAfter {
                    bytes: 600_000,
                    reset: true,
                },
            )
            .times(2),
    );
    let mut opts = options(4, 4);
    opts.parallel_threshold = 32 * MIB;
    let run = fetch(&source, &tmp, size, sha, &opts, &MemoryLog::default());
    expect_ok(&run, size, sha);
    assert_same_bytes(&tmp, size, 6);
    let ranged = cdn_range_requests(&setup, "s.gguf");
    assert!(!ranged.is_empty(), "the retries asked for the rest only");
}

#[test]
fn a_server_ignoring_range_is_read_as_one_stream() {
    let size = 24 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("n.bin", size, 7);
    let log = MemoryLog::default();
    setup
        .emu()
        .add_fault(setup.fault("n.bin", FaultKind::IgnoreRange));
    let run = fetch(&source, &tmp, size, sha, &options(4, 4), &log);
    let done = expect_ok(&run, size, sha);
    assert_same_bytes(&tmp, size, 7);
    // One full body was used; the others that raced it were dropped unread.
    assert_eq!(done.bytes_fetched, size);
    assert!(log.state.lock().unwrap().is_none(), "range record cleared");
}

#[test]
fn a_server_that_stops_honouring_range_midway_keeps_progress_monotonic() {
    let size = 24 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("m.bin", size, 8);
    let log = MemoryLog::default();
    let slow = setup.emu().add_fault(setup.fault(
        "m.bin",
        FaultKind::RateLimit {
            bytes_per_sec: 8 * MIB,
        },
    ));
    let cancel = AtomicBool::new(false);
    let run = run_with(
        &source,
        &tmp,
        Some(size),
        &Expected::Sha256(sha),
        &options(4, 2),
        &log,
        &cancel,
        |progress| {
            while progress.load(Ordering::SeqCst) < size / 3 {
                std::thread::sleep(Duration::from_millis(5));
            }
            setup
                .emu()
                .add_fault(setup.fault("m.bin", FaultKind::IgnoreRange));
            setup.emu().remove_fault(slow);
        },
    );
    // The sampler in run_with asserted that progress never went down across the restart.
    let done = expect_ok(&run, size, sha);
    assert_same_bytes(&tmp, size, 8);
    let full_answers = setup
        .hub
        .cdn_requests()
        .into_iter()
        .filter(|r| r.range.is_some() && r.status == 200)
        .count();
    assert!(full_answers >= 1, "the server never ignored a range");
    assert!(
        done.bytes_fetched > size,
        "bytes held before the restart were fetched again"
    );
    assert!(log.state.lock().unwrap().is_none(), "range record cleared");
}

#[test]
fn chunked_bodies_without_length_work_ranged_and_streamed() {
    let setup = Setup::new();
    let big = 12 * MIB + 77;
    let small = 1_200_000;
    let sha_big = setup.add_file("big.bin", big, 9);
    let sha_small = setup.add_file("small.bin", small, 10);
    setup
        .emu()
        .add_fault(Fault::new(FaultKind::Chunked).on(Listener::Cdn));
    let log = MemoryLog::default();

    let ranged = setup.fetch("big.bin", "big", big, sha_big, &options(4, 2), &log);
    expect_ok(&ranged, big, sha_big);
    assert_same_bytes(&setup.tmp("big"), big, 9);

    let streamed = setup.fetch("small.bin", "small", small, sha_small, &options(4, 2), &log);
    expect_ok(&streamed, small, sha_small);

    // Size unknown to the caller too: the stream's end is the file's end, and the hash says
    // whether it is the file.
    let unknown = run(
        &setup.source("small.bin"),
        &setup.tmp("small2"),
        None,
        &Expected::Sha256(sha_small),
        &options(4, 2),
        &log,
    );
    expect_ok(&unknown, small, sha_small);

    // Without a hash as well, nothing could tell these bytes from any others: refused before
    // a request is made, naming the server that left both out.
    let source = setup.source("small.bin");
    let requests = setup.emu().requests().len();
    let unverifiable = run(
        &source,
        &setup.tmp("small3"),
        None,
        &Expected::Unknown,
        &options(4, 2),
        &log,
    );
    let err = unverifiable.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Http, "{err}");
    assert!(
        err.message().contains("neither the size nor a hash")
            && err.message().contains(&setup.emu().url()[7..]),
        "{err}"
    );
    assert_eq!(setup.emu().requests().len(), requests, "a request was made");
    assert!(!setup.tmp("small3").exists());

    // A mirror like olah: no Range, no Content-Length.
    setup
        .emu()
        .add_fault(Fault::new(FaultKind::IgnoreRange).on(Listener::Cdn));
    let mirror = setup.fetch("big.bin", "big2", big, sha_big, &options(4, 2), &log);
    expect_ok(&mirror, big, sha_big);
    assert_same_bytes(&setup.tmp("big2"), big, 9);
}

#[test]
fn a_flipped_byte_is_corrupt_and_nothing_is_kept() {
    let size = 12 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("x.bin", size, 11);
    let log = MemoryLog::default();
    setup.emu().add_fault(setup.fault(
        "x.bin",
        FaultKind::Corrupt {
            offset: 5 * MIB + 7,
        },
    ));
    let run = fetch(&source, &tmp, size, sha, &options(4, 2), &log);
    let err = run.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let want_hex = hub_emulator::pseudo_random_sha256(size, 11);
    assert!(err.message().contains(&want_hex), "{}", err.message());
    assert!(
        err.message().contains("nothing was cached"),
        "{}",
        err.message()
    );
    assert!(!tmp.exists());
    assert!(log.state.lock().unwrap().is_none());
    assert!(log.clears.load(Ordering::SeqCst) >= 1);
}

#[test]
fn a_small_git_file_is_checked_against_its_blob_sha1() {
    let setup = Setup::new();
    let bytes = hub_emulator::pseudo_random_bytes(100_000, 12);
    hub_emulator::write_file(setup.hub.root(), REPO, "tokenizer.txt", &bytes).unwrap();
    let git_sha1: [u8; 20] = from_hex(&hub_emulator::git_blob_sha1(&bytes)).unwrap();
    let sha256: [u8; 32] = from_hex(&hub_emulator::sha256_reader(&bytes[..]).unwrap()).unwrap();
    let resolved = setup.client.resolve(REPO, "main", "tokenizer.txt").unwrap();
    assert_eq!(
        resolved.etag,
        hub_emulator::git_blob_sha1(&bytes),
        "a non-LFS file"
    );
    let source = setup.client.file_source(&resolved.url);
    let log = MemoryLog::default();
    let opts = options(4, 2);

    let good = run(
        &source,
        &setup.tmp("t"),
        Some(100_000),
        &Expected::GitSha1(git_sha1),
        &opts,
        &log,
    );
    expect_ok(&good, 100_000, sha256);
    // Without a size (and a chunked body) the sha1 is computed from the file afterwards.
    let chunked = setup
        .emu()
        .add_fault(Fault::new(FaultKind::Chunked).path("tokenizer.txt"));
    let unsized_run = run(
        &source,
        &setup.tmp("t2"),
        None,
        &Expected::GitSha1(git_sha1),
        &opts,
        &log,
    );
    expect_ok(&unsized_run, 100_000, sha256);
    setup.emu().remove_fault(chunked);

    setup
        .emu()
        .add_fault(Fault::new(FaultKind::Corrupt { offset: 10 }).path("tokenizer.txt"));
    let bad = run(
        &source,
        &setup.tmp("t3"),
        Some(100_000),
        &Expected::GitSha1(git_sha1),
        &opts,
        &log,
    );
    let err = bad.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.message().contains(&hub_emulator::git_blob_sha1(&bytes)),
        "{}",
        err.message()
    );
    assert!(!setup.tmp("t3").exists());
}

#[test]
fn truncated_bodies_are_retried_from_the_last_byte_held() {
    let setup = Setup::new();
    let big = 12 * MIB;
    let small = 1_500_000;
    let sha_big = setup.add_file("big.bin", big, 13);
    let sha_small = setup.add_file("small.bin", small, 14);
    setup.emu().add_fault(
        Fault::new(FaultKind::Truncate { missing: 1000 })
            .on(Listener::Cdn)
            .times(4),
    );
    let log = MemoryLog::default();
    let ranged = setup.fetch("big.bin", "big", big, sha_big, &options(4, 2), &log);
    expect_ok(&ranged, big, sha_big);
    assert_same_bytes(&setup.tmp("big"), big, 13);
    let streamed = setup.fetch("small.bin", "small", small, sha_small, &options(4, 2), &log);
    expect_ok(&streamed, small, sha_small);

    // A server that always cuts the end: given up as a network error, the file not verified.
    setup
        .emu()
        .add_fault(Fault::new(FaultKind::Truncate { missing: 1000 }).on(Listener::Cdn));
    let mut opts = options(4, 2);
    opts.max_attempts = 3;
    let always = setup.fetch("small.bin", "small2", small, sha_small, &opts, &log);
    let err = always.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(
        err.message().contains("gave up after 3 attempts"),
        "{}",
        err.message()
    );
}

#[test]
fn one_extra_byte_is_corrupt_ranged_and_streamed() {
    let setup = Setup::new();
    let big = 12 * MIB;
    let small = 1_500_000;
    let sha_big = setup.add_file("big.bin", big, 15);
    let sha_small = setup.add_file("small.bin", small, 16);
    setup
        .emu()
        .add_fault(Fault::new(FaultKind::ExtraByte).on(Listener::Cdn));
    let log = MemoryLog::default();
    for (path, size, sha) in [("big.bin", big, sha_big), ("small.bin", small, sha_small)] {
        let tmp = setup.tmp(path);
        let run = fetch(&setup.source(path), &tmp, size, sha, &options(4, 2), &log);
        let err = run.result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{path}: {err}");
        assert!(!tmp.exists(), "{path}: nothing kept");
    }
    // Chunked, so only the body itself shows the extra byte.
    setup
        .emu()
        .add_fault(Fault::new(FaultKind::Chunked).on(Listener::Cdn));
    let tmp = setup.tmp("chunked");
    let run = fetch(
        &setup.source("small.bin"),
        &tmp,
        small,
        sha_small,
        &options(4, 2),
        &log,
    );
    assert_eq!(run.result.unwrap_err().kind(), ErrorKind::Corrupt);
    assert!(!tmp.exists());
}

#[test]
fn a_stalled_connection_is_cut_and_retried() {
    let size = 12 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("st.bin", size, 17);
    let mut opts = options(4, 2);
    opts.stall_timeout = Duration::from_millis(400);
    setup.emu().add_fault(
        setup
            .fault(
                "st.bin",
                FaultKind::Stall {
                    bytes: 300_000,
                    seconds: 20.0,
                },
            )
            .times(2),
    );
    let run = fetch(&source, &tmp, size, sha, &opts, &MemoryLog::default());
    expect_ok(&run, size, sha);
    assert_same_bytes(&tmp, size, 17);
    assert!(
        run.elapsed < Duration::from_secs(5),
        "took {:?}",
        run.elapsed
    );
}

#[test]
fn bursts_of_503_and_429_end_in_the_right_file() {
    let size = 12 * MIB;
    let (setup, source, tmp, sha) = Setup::with_file("b.bin", size, 18);
    setup
        .emu()
        .add_fault(Fault::status(503).on(Listener::Cdn).times(6));
    setup
        .emu()
        .add_fault(Fault::rate_limited(1).on(Listener::Cdn).times(2));
    let run = fetch(
        &source,
        &tmp,
        size,
        sha,
        &options(4, 2),
        &MemoryLog::default(),
    );
    expect_ok(&run, size, sha);
    assert_same_bytes(&tmp, size, 18);
    let statuses: Vec<u16> = setup
        .hub
        .cdn_requests()
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 6);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 2);
}

#[test]
fn a_missing_file_ends_the_transfer_at_once() {
    let setup = Setup::new();
    setup.add_file("present.bin", 10, 19);
    let url = setup
        .client
        .resolve_url(REPO, "main", "absent.bin")
        .unwrap();
    let source = setup.client.file_source(&url);
    let tmp = setup.tmp("a");
    let run = run(
        &source,
        &tmp,
        Some(40 * MIB),
        &Expected::Unknown,
        &options(8, 4),
        &MemoryLog::default(),
    );
    let err = run.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EntryNotFound, "{err}");
    assert!(
        run.elapsed < Duration::from_secs(2),
        "took {:?}",
        run.elapsed
    );
    let requests = setup.emu().requests().len();
    assert!(requests <= 8, "{requests} requests for a missing file");
}

#[test]
fn a_stale_resume_record_is_ignored() {
    let size = 8 * MIB;
    // Held, not used: the emulator must keep serving until the transfer ends.
    let (_setup, source, tmp, sha) = Setup::with_file("o.bin", size, 20);
    // A record for another range size, and a file of the right length full of zeros.
    fs::write(&tmp, vec![0u8; size as usize]).unwrap();
    let log = MemoryLog::default();
    *log.state.lock().unwrap() = Some(PartialState {
        size,
        range_size: 4 * MIB,
        done: vec![0b11],
        xet: None,
    });
    let run = fetch(&source, &tmp, size, sha, &options(4, 1), &log);
    let done = expect_ok(&run, size, sha);
    assert_eq!(done.bytes_fetched, size);
    assert_same_bytes(&tmp, size, 20);
}
