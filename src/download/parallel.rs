//! The ranged transfer for large files: the file is preallocated, cut into ranges (see
//! `plan`), and `connections` worker threads claim ranges in file order, each writing its bytes
//! in place with positional writes. Three kinds of threads cooperate:
//!
//! - workers fetch ranges, resume a dropped range from its last byte held, and start write-back
//!   of each range as it completes;
//! - the hasher reads the file back in file order as the contiguous prefix grows (from the page
//!   cache, the bytes were just written), so the hash is ready moments after the last byte;
//!   a network faster than sha256 makes workers wait for it (see [`hash_lead`]); the prefix
//!   it has hashed is also what it publishes as readable in order (see `prefix`);
//! - the calling thread makes completed ranges durable: one `fdatasync` covers every range
//!   completed since the previous one, and only then are they recorded in the resume log.
//!   A worker claims its next range only once its last one is recorded, which bounds what a
//!   kill can lose to the range each connection is fetching.
//!
//! A server that answers a ranged request with the whole body sends the transfer to the
//! single stream, exactly once, reusing that response.

use std::cell::Cell;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::thread::Thread;
use std::time::Duration;

use super::attempts::{sleep_unless_stopped, Attempts};
use super::body::{receive, Control};
use super::hasher::{hash_in_file_order, verify, Digests};
use super::plan::{Bitset, RangePlan};
use super::pwrite::{preallocate, start_writeback, write_all_at};
use super::{size_claim_refused, stream, Fetched, Job, Transferred};
use crate::dir::file_meta;
use crate::error::{Error, ErrorKind, Result};

/// State shared by the threads of one ranged transfer.
struct Shared<'a> {
    job: &'a Job<'a>,
    plan: RangePlan,
    file: File,
    /// Bytes written from the start of each range; only ever grows.
    held: Vec<AtomicU64>,
    held_total: AtomicU64,
    /// Indices of the ranges to fetch, claimed in order through `next`.
    todo: Vec<usize>,
    next: AtomicUsize,
    /// Set when the transfer must stop: an error, or the fall back to one stream.
    abort: AtomicBool,
    error: Mutex<Option<Error>>,
    /// The full-body response that sent the transfer to one stream; the first one wins.
    fallback: Mutex<Option<Fetched>>,
    /// Ranges recorded durable in the resume log. A worker waits for its completed range to
    /// be recorded before it claims the next: so a kill loses at most the range each
    /// connection is fetching, never a backlog of completed ranges awaiting a slow sync.
    recorded: Mutex<Bitset>,
    recorded_changed: Condvar,
    /// Keeps workers within a bounded lead of the hasher.
    pace: HashPace,
}

/// How far past the hashed prefix a worker may write before it waits for the hasher.
///
/// The transfer is done when the hash is, and sha256 runs on one core at 250-400 MB/s without
/// SHA extensions: on a faster network (loopback, a LAN mirror) workers racing ahead only take
/// CPU and memory bandwidth from the hasher (bench case 1, 2 GiB on 2 cores: 7.36 s without
/// this bound, 7.14 s with it, median of 5 pairs; the hash alone takes 6.6 s). Two rounds of
/// ranges, so that on a slower network workers fetching ranges ahead of the hasher's never
/// wait for it.
///
/// No bound when the transfer resumes (`resumed` bytes already held): the hasher first reads
/// back what earlier runs wrote, and on a slow network the workers must use that time, not
/// wait for it (half of a 50 GB file takes the hasher minutes to re-read).
fn hash_lead(plan: &RangePlan, connections: usize, resumed: u64) -> u64 {
    if resumed > 0 {
        return u64::MAX;
    }
    let ranges_in_flight = connections.max(1) as u64 * plan.range_size;
    (2 * ranges_in_flight).max(MIN_HASH_LEAD)
}

const MIN_HASH_LEAD: u64 = 256 << 20;

/// The hashed prefix, as workers wait on it.
struct HashPace {
    hashed: AtomicU64,
    lead: u64,
    moved: Condvar,
    moved_lock: Mutex<()>,
}

impl HashPace {
    fn new(lead: u64) -> HashPace {
        HashPace {
            hashed: AtomicU64::new(0),
            lead,
            moved: Condvar::new(),
            moved_lock: Mutex::new(()),
        }
    }

    /// Block while byte `at` is more than the lead past the hashed prefix, until `stop()`.
    /// The worker writing the first incomplete range never waits long: when it is that far
    /// ahead, the hasher has that many bytes ready to hash.
    fn wait_within_lead(&self, at: u64, stop: impl Fn() -> bool) {
        let too_far = || {
            at > self
                .hashed
                .load(Ordering::Acquire)
                .saturating_add(self.lead)
        };
        if !too_far() {
            return;
        }
        let mut guard = self.moved_lock.lock().unwrap_or_else(|p| p.into_inner());
        while too_far() && !stop() {
            // Woken as the hasher moves; the timeout only bounds how late a stop is seen.
            guard = self
                .moved
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The first `bytes` of the file are hashed.
    fn hashed(&self, bytes: u64) {
        self.hashed.store(bytes, Ordering::Release);
        // Taking the lock orders this wake-up after a waiter's check, so none is missed.
        drop(self.moved_lock.lock().unwrap_or_else(|p| p.into_inner()));
        self.moved.notify_all();
    }
}

pub(crate) fn run(job: &Job, size: u64) -> Result<Transferred> {
    let plan = RangePlan::new(size, job.opts.connections, job.opts.range_size);
    let (file, done) = open_or_resume(job, &plan)?;
    job.prefix.begin(&file);
    let held: Vec<AtomicU64> = (0..plan.count())
        .map(|i| AtomicU64::new(if done.get(i) { plan.len(i) } else { 0 }))
        .collect();
    let resumed: u64 = held.iter().map(|h| h.load(Ordering::Relaxed)).sum();
    job.resumed.store(resumed, Ordering::Relaxed);
    job.report_held(resumed);
    let shared = Shared {
        job,
        plan,
        file,
        held,
        held_total: AtomicU64::new(resumed),
        todo: (0..plan.count()).filter(|&i| !done.get(i)).collect(),
        next: AtomicUsize::new(0),
        abort: AtomicBool::new(false),
        error: Mutex::new(None),
        fallback: Mutex::new(None),
        recorded: Mutex::new(done.clone()),
        recorded_changed: Condvar::new(),
        pace: HashPace::new(hash_lead(&plan, job.opts.connections, resumed)),
    };
    let digests = run_threads(&shared, done);

    let Shared {
        file,
        error,
        fallback,
        ..
    } = shared;
    if let Some(fetched) = fallback.into_inner().unwrap_or_else(|p| p.into_inner()) {
        // The ranges recorded so far came from a server we no longer trust to serve ranges;
        // the stream rewrites the file from byte 0.
        job.resume.clear()?;
        return stream::run(job, Some(file), Some(fetched));
    }
    if let Some(err) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(err);
    }
    // Without an error, the hasher stops early only when the transfer was stopped (a cancel
    // some thread saw, even if it was withdrawn since).
    let Some(digests) = digests else {
        return Err(Error::cancelled());
    };
    if digests.len != size {
        return Err(Error::internal(format!(
            "hashed {} bytes of {size}",
            digests.len
        )));
    }
    verify(job.expected, &digests, None)?;
    Ok(Transferred {
        sha256: digests.sha256,
        size,
        bytes_fetched: job.fetched.load(Ordering::Relaxed),
    })
}

/// Open the file to resume when the resume log describes this plan and the file has its
/// length; otherwise forget any record and start a preallocated file from scratch.
fn open_or_resume(job: &Job, plan: &RangePlan) -> Result<(File, Bitset)> {
    let recorded = job.resume.load()?;
    let usable = recorded.as_ref().and_then(|state| plan.resumable(state));
    if let Some(done) = usable {
        // Only the file an earlier attempt made: one with another hard link shares its bytes
        // with a name elsewhere, which resuming would write into.
        if let Ok(file) = job.at.dir.open_rw(job.at.name, false) {
            if file_meta(&file).is_ok_and(|m| m.len == plan.size && m.links == 1) {
                return Ok((file, done));
            }
        }
    }
    // An empty record replaces any old one before the file is written (so it never describes
    // bytes of another attempt), and exists before the file is: the file is full-size from its
    // preallocation on, so its length says nothing, and the record is what others (another
    // process waiting for this content) read.
    let none_done = Bitset::new(plan.count());
    job.resume.save(&plan.state(&none_done))?;
    let file = job.create_file()?;
    preallocate(&file, plan.size).map_err(|e| job.io_error("preallocating", e))?;
    // The new entry must survive a power loss for the file to be resumed.
    job.at
        .dir
        .sync()
        .map_err(|e| job.io_error("syncing the directory of", e))?;
    Ok((file, none_done))
}

/// Run workers and hasher, and make ranges durable on this thread until the workers end.
fn run_threads(shared: &Shared, mut durable: Bitset) -> Option<Digests> {
    std::thread::scope(|scope| {
        let hasher = std::thread::Builder::new()
            .name("tabcache-hash".into())
            .spawn_scoped(scope, || hash(shared));
        let hasher = match hasher {
            Ok(handle) => handle,
            Err(e) => {
                shared.fail(Error::internal(format!(
                    "could not start the hashing thread: {e}"
                )));
                return None;
            }
        };
        let (completed, completions) = mpsc::channel::<usize>();
        let workers = shared.job.opts.connections.max(1).min(shared.todo.len());
        for n in 0..workers {
            let completed = completed.clone();
            let hasher_thread = hasher.thread().clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tabcache-dl-{n}"))
                .spawn_scoped(scope, move || work(shared, &completed, &hasher_thread));
            if let Err(e) = spawned {
                shared.fail(Error::internal(format!(
                    "could not start a download thread: {e}"
                )));
            }
        }
        drop(completed);
        make_durable(shared, &completions, &mut durable);
        hasher.join().unwrap_or_else(|_| {
            shared.fail(Error::internal("the hashing thread panicked"));
            None
        })
    })
}

impl Shared<'_> {
    /// Record the first error and stop every thread.
    fn fail(&self, err: Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(err);
        }
        self.abort.store(true, Ordering::Relaxed);
        self.recorded_changed.notify_all();
    }

    /// Block until range `index` is recorded durable or the transfer stops.
    fn wait_recorded(&self, index: usize, control: &Control) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        while !recorded.get(index) && !control.should_stop() {
            // Woken by each recorded batch; the timeout only bounds how late a cancel is seen.
            recorded = self
                .recorded_changed
                .wait_timeout(recorded, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn control(&self) -> Control<'_> {
        Control {
            cancel: self.job.cancel,
            abort: &self.abort,
            stall_timeout: self.job.opts.stall_timeout,
        }
    }
}

/// Wait for completed ranges, sync, then record them; repeat until every worker has ended.
/// Ranges that complete during a sync are covered by the next one. Their workers wait for it
/// (see `Shared::recorded`): a durable download cannot outrun the disk's write-back anyway,
/// and ranges started early with `sync_file_range` keep each sync short.
fn make_durable(shared: &Shared, completions: &mpsc::Receiver<usize>, durable: &mut Bitset) {
    let mut failed = false;
    while let Ok(first) = completions.recv() {
        if failed {
            continue; // keep draining so workers are never blocked; nothing more is recorded
        }
        let mut batch = vec![first];
        batch.extend(completions.try_iter());
        let recorded = shared
            .file
            .sync_data()
            .map_err(|e| shared.job.io_error("syncing", e))
            .and_then(|()| {
                batch.iter().for_each(|&i| durable.set(i));
                shared.job.resume.save(&shared.plan.state(durable))
            });
        match recorded {
            Ok(()) => {
                *shared.recorded.lock().unwrap_or_else(|p| p.into_inner()) = durable.clone();
                shared.recorded_changed.notify_all();
            }
            Err(err) => {
                shared.fail(err);
                failed = true;
            }
        }
    }
}

fn hash(shared: &Shared) -> Option<Digests> {
    // Ranges before `first_incomplete` are complete; it only moves forward.
    let first_incomplete = Cell::new(0usize);
    let frontier = || {
        let mut i = first_incomplete.get();
        while i < shared.plan.count()
            && shared.held[i].load(Ordering::Acquire) == shared.plan.len(i)
        {
            i += 1;
        }
        first_incomplete.set(i);
        if i == shared.plan.count() {
            return shared.plan.size;
        }
        shared.plan.bounds(i).0 + shared.held[i].load(Ordering::Acquire)
    };
    let control = shared.control();
    let stop = || control.should_stop();
    let job = shared.job;
    match hash_in_file_order(
        &shared.file,
        job.at.path,
        shared.plan.size,
        job.expected,
        frontier,
        stop,
        |hashed| {
            shared.pace.hashed(hashed);
            // What the hasher read back is in place, in order: readers may stream it.
            job.prefix.grew_to(hashed);
        },
    ) {
        Ok(digests) => digests,
        Err(err) => {
            shared.fail(err);
            None
        }
    }
}

/// A worker: claim ranges in file order until none is left or the transfer stops.
fn work(shared: &Shared, completed: &mpsc::Sender<usize>, hasher: &Thread) {
    let control = shared.control();
    loop {
        let claim = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(&index) = shared.todo.get(claim) else {
            return;
        };
        match fetch_range(shared, index, &control, hasher) {
            Ok(None) => {
                let (start, end) = shared.plan.bounds(index);
                start_writeback(&shared.file, start, end - start);
                // The receiver lives until every worker has ended.
                let _ = completed.send(index);
                shared.wait_recorded(index, &control);
            }
            Ok(Some(full_body)) => {
                let mut slot = shared.fallback.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(full_body);
                }
                shared.abort.store(true, Ordering::Relaxed);
                return;
            }
            Err(_) if control.should_stop() => return,
            Err(err) => {
                shared.fail(err);
                return;
            }
        }
    }
}

/// Fetch range `index` into place, retrying transient faults from the last byte held.
/// Returns the response when the server ignored the range and sent the whole body.
///
/// One function on purpose: a range's retry loop, where each attempt resumes from the bytes
/// the previous one held; the attempt state is shared by every branch.
fn fetch_range(
    shared: &Shared,
    index: usize,
    control: &Control,
    hasher: &Thread,
) -> Result<Option<Fetched>> {
    let (start, end) = shared.plan.bounds(index);
    let held = &shared.held[index];
    let job = shared.job;
    let mut attempts = Attempts::new(job.opts.backoff_base, job.opts.max_attempts);
    loop {
        if control.should_stop() {
            return Err(control.stopped());
        }
        let from = start + held.load(Ordering::Relaxed);
        if from == end {
            return Ok(None);
        }
        let result = (|| {
            let fetched = job.source.fetch(Some((from, end)))?;
            if !fetched.partial {
                return Ok(Some(fetched));
            }
            let asked = end - from;
            if let Some(announced) = fetched.content_length.filter(|&n| n > asked) {
                return Err(size_claim_refused(
                    &job.source.server(),
                    format_args!(
                        "announced {announced} bytes (Content-Length) for bytes {from}..{end} ({asked} bytes) it was asked for"
                    ),
                ));
            }
            if let Some(claimed) = fetched.total.filter(|&t| t != shared.plan.size) {
                return Err(size_claim_refused(
                    &job.source.server(),
                    format_args!(
                        "claimed a file of {claimed} bytes (Content-Range), the listing gives {}",
                        shared.plan.size
                    ),
                ));
            }
            // A shorter answer is treated like a dropped connection: continue where it ended.
            let received = receive(fetched.body, Some(asked), control, |chunk| {
                let at = start + held.load(Ordering::Relaxed);
                shared.pace.wait_within_lead(at, || control.should_stop());
                if control.should_stop() {
                    return Err(control.stopped());
                }
                write_all_at(&shared.file, chunk, at).map_err(|e| job.io_error("writing", e))?;
                let n = chunk.len() as u64;
                held.fetch_add(n, Ordering::Release);
                job.fetched.fetch_add(n, Ordering::Relaxed);
                job.report_held(shared.held_total.fetch_add(n, Ordering::Relaxed) + n);
                hasher.unpark();
                Ok(())
            })?;
            if received.overflow {
                return Err(size_claim_refused(
                    &job.source.server(),
                    format_args!("sent more than bytes {from}..{end} it was asked for"),
                ));
            }
            if start + held.load(Ordering::Relaxed) < end {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!(
                        "the connection ended at byte {} of range {start}..{end}",
                        start + held.load(Ordering::Relaxed)
                    ),
                )
                .transient(None));
            }
            Ok(None)
        })();
        match result {
            Ok(outcome) => return Ok(outcome),
            Err(err) if control.should_stop() => return Err(err),
            Err(err) => {
                let progressed = start + held.load(Ordering::Relaxed) > from;
                let wait = attempts.after_failure(err, progressed)?;
                sleep_unless_stopped(wait, control)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_lead_covers_two_rounds_of_ranges_and_never_less_than_the_minimum() {
        let plan = RangePlan::new(8 << 30, 8, 16 << 20);
        assert_eq!(hash_lead(&plan, 8, 0), 256 << 20);
        assert_eq!(hash_lead(&plan, 32, 0), 2 * 32 * (16 << 20));
        assert_eq!(hash_lead(&plan, 0, 0), MIN_HASH_LEAD);
    }

    #[test]
    fn a_resumed_transfer_never_waits_for_the_hasher() {
        let plan = RangePlan::new(8 << 30, 8, 16 << 20);
        let lead = hash_lead(&plan, 8, 4 << 30);
        assert_eq!(lead, u64::MAX);
        // Nothing hashed yet, a worker at the end of the file: no wait (the stop panics).
        HashPace::new(lead).wait_within_lead(8 << 30, || panic!("must not wait"));
    }

    #[test]
    fn a_worker_too_far_ahead_waits_until_the_hasher_comes_within_the_lead() {
        let pace = HashPace::new(100);
        // Within the lead: no wait at all.
        pace.wait_within_lead(100, || panic!("must not wait"));
        let released = std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                pace.wait_within_lead(250, || false);
                Instant::now()
            });
            std::thread::sleep(Duration::from_millis(100));
            pace.hashed(149); // still 101 bytes behind: keeps waiting
            std::thread::sleep(Duration::from_millis(100));
            assert!(!waiter.is_finished(), "released while still too far ahead");
            let moved = Instant::now();
            pace.hashed(150);
            (waiter.join().unwrap(), moved)
        });
        assert!(released.0 >= released.1);
    }

    #[test]
    fn a_stop_releases_a_waiting_worker() {
        let pace = HashPace::new(10);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter =
                s.spawn(|| pace.wait_within_lead(1 << 40, || stop.load(Ordering::Relaxed)));
            std::thread::sleep(Duration::from_millis(60));
            assert!(!waiter.is_finished());
            stop.store(true, Ordering::Relaxed);
            waiter.join().unwrap();
        });
    }
}
