//! Progress and cancellation for blocking calls. The calling thread never does the slow work
//! itself: worker threads (flights, or the helper of [`Reporter::run`]) advance counters, and
//! the calling thread polls them and hands the caller's callback throttled, monotonic
//! `(loaded, total)` pairs. Because the calling thread only waits, it can call the callback on
//! a heartbeat even when nothing moves (a resolve, a retry wait, a stalled server), and so a
//! cancel (the callback returning false, which is how every cancel source arrives: a C
//! callback, a job's cancel flag, Python's KeyboardInterrupt, the CLI's Ctrl-C) is seen within
//! one heartbeat whatever the work is doing.
//!
//! The contract the C header states: `loaded` never goes back; `total` is 0 while unknown (a
//! scan's file count, a file with no listed size), and `loaded` still grows meanwhile; the
//! callback is called at least every [`HEARTBEAT`] (unchanged values when nothing moved); on
//! success the last call has `loaded == total`, and with a known non-zero total it is the
//! only such call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a blocking call wakes to report progress and check for cancellation.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// At most this many callbacks per second for moving counters (plus the final one).
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// The callback is called at least this often while a call runs, moved or not.
pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// The caller's progress callback: gets `(loaded, total)`, returns false to cancel.
pub type ProgressFn<'a> = &'a mut dyn FnMut(u64, u64) -> bool;

/// Lend the callback in `progress` to one phase of a call (planning, then transfer) and keep
/// it for the next.
pub(crate) fn reborrow<'s>(progress: &'s mut Option<ProgressFn<'_>>) -> Option<ProgressFn<'s>> {
    match progress {
        Some(callback) => Some(&mut **callback),
        None => None,
    }
}

/// What happens to each file of a multi-file download, for callers that show one progress
/// bar per file (the CLI). Called on the calling thread, alongside the overall `ProgressFn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileEvent<'a> {
    /// Bytes held so far of a file being fetched (`total` is 0 when the listing gives none).
    Progress {
        path: &'a str,
        loaded: u64,
        total: u64,
    },
    /// The file is cached: fetched and committed, or found already held. Once per file.
    Done { path: &'a str, size: u64 },
}

/// The caller's per-file callback; see [`FileEvent`].
pub type FileProgressFn<'a> = &'a mut dyn FnMut(FileEvent<'_>);

/// The worker's side of a call its caller can cancel: a flag the caller sets when it walks
/// away, and a count of work done (files listed, bytes hashed) that the caller reports.
/// Cheap to clone; every clone shares the same flag and count.
#[derive(Clone, Default, Debug)]
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
}

impl Watch {
    /// A watch whose cancel flag is `stop` (a flight's, which several requesters share).
    pub(crate) fn on(stop: Arc<AtomicBool>) -> Watch {
        Watch {
            stop,
            done: Arc::default(),
        }
    }

    pub(crate) fn cancel(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once the caller walked away: the check between steps of long work.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::cancelled())
        } else {
            Ok(())
        }
    }

    /// Count `n` more units of work done.
    pub(crate) fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Sleep `wait` (a retry back-off, a server's `Retry-After`), waking early with
    /// `Err(Cancelled)` when the caller walks away.
    pub(crate) fn sleep(&self, wait: Duration) -> Result<()> {
        let until = Instant::now() + wait;
        loop {
            self.check()?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(POLL_INTERVAL));
        }
    }
}

/// The calling thread's side: the caller's callback, throttled, monotonic, with a heartbeat.
pub(crate) struct Reporter<'a> {
    callback: Option<ProgressFn<'a>>,
    /// `None` while unknown: reported as 0, and `loaded` is not capped.
    total: Option<u64>,
    reported: Option<u64>,
    last_call: Option<Instant>,
    cancelled: bool,
}

impl<'a> Reporter<'a> {
    /// A reporter over `total` units (`None`: not known until the end).
    pub(crate) fn new(callback: Option<ProgressFn<'a>>, total: Option<u64>) -> Self {
        Reporter {
            callback,
            total,
            reported: None,
            last_call: None,
            cancelled: false,
        }
    }

    /// Whether anyone listens (and so whether anything can cancel).
    pub(crate) fn has_callback(&self) -> bool {
        self.callback.is_some()
    }

    /// Report `loaded` if it moved and the throttle allows, or the unchanged count when a
    /// heartbeat is due. Returns false once the callback asked to cancel.
    pub(crate) fn tick(&mut self, loaded: u64) -> bool {
        if self.cancelled {
            return false;
        }
        let now = Instant::now();
        let since = self.last_call.map(|t| now.duration_since(t));
        let before = self.reported.unwrap_or(0);
        // The final `loaded == total` call is finish()'s to make, exactly once.
        let value = match self.total {
            Some(total) if loaded >= total => before,
            _ => loaded.max(before),
        };
        let moved = self.reported.is_none_or(|r| value > r);
        let throttle_open = since.is_none_or(|s| s >= MIN_INTERVAL);
        let heartbeat_due = since.is_none_or(|s| s >= HEARTBEAT);
        if (moved && throttle_open) || heartbeat_due {
            self.call(value, self.total.unwrap_or(0));
        }
        !self.cancelled
    }

    /// The final call, on success: `loaded == total`, where an unknown total becomes what
    /// was loaded.
    pub(crate) fn finish(&mut self, loaded: u64) {
        let total = self
            .total
            .unwrap_or_else(|| loaded.max(self.reported.unwrap_or(0)));
        // tick() never reports a known total (that call is the final one), so the
        // final call is always made; for an unknown one it names the total at last.
        let already_final = self.total.is_some() && self.reported == Some(total);
        if !self.cancelled && !already_final {
            self.call(total, total);
        }
    }

    /// Run `work` on a thread of its own while this thread keeps the callback beating with the
    /// work's [`Watch::done`] count. Returns the work's result, or `Err(Cancelled)` within a
    /// poll of the callback asking to stop: the watch is then cancelled so that the work winds
    /// down by itself (its requests and waits check it), but it is not waited for, since a
    /// request stuck on a silent server may take until its read timeout to give up. Without
    /// a callback nothing can cancel, so the work simply runs on this thread.
    ///
    /// # Errors
    /// The work's own, `Cancelled`, or `Internal` if its thread could not start or panicked.
    pub(crate) fn run<T: Send + 'static>(
        &mut self,
        name: &str,
        work: impl FnOnce(&Watch) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let watch = Watch::default();
        if !self.has_callback() {
            return work(&watch);
        }
        let (sender, outcome) = std::sync::mpsc::sync_channel(1);
        let worker_watch = watch.clone();
        std::thread::Builder::new()
            .name(format!("tabcache-{name}"))
            .spawn(move || {
                // The receiver is gone when the caller walked away; nobody needs the result.
                let _ = sender.send(work(&worker_watch));
            })
            .map_err(|e| Error::internal(format!("could not start a thread to {name}: {e}")))?;
        loop {
            match outcome.recv_timeout(POLL_INTERVAL) {
                Ok(result) => return result,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::internal(format!(
                        "the thread that was to {name} panicked; please report this bug"
                    )))
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if !self.tick(watch.done()) {
                        watch.cancel();
                        return Err(Error::cancelled());
                    }
                }
            }
        }
    }

    fn call(&mut self, loaded: u64, total: u64) {
        self.reported = Some(loaded);
        self.last_call = Some(Instant::now());
        if let Some(cb) = self.callback.as_mut() {
            if !cb(loaded, total) {
                self.cancelled = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(calls: &mut Vec<(u64, u64)>) -> impl FnMut(u64, u64) -> bool + '_ {
        move |l, t| {
            calls.push((l, t));
            true
        }
    }

    #[test]
    fn throttled_monotonic_and_final() {
        let mut calls = Vec::new();
        {
            let mut cb = recorder(&mut calls);
            let mut r = Reporter::new(Some(&mut cb), Some(100));
            for l in [10, 20, 5, 30] {
                assert!(r.tick(l));
            }
            std::thread::sleep(MIN_INTERVAL);
            r.tick(40);
            r.finish(100);
            r.finish(100);
        }
        assert_eq!(calls, vec![(10, 100), (40, 100), (100, 100)]);
    }

    #[test]
    fn a_heartbeat_repeats_the_count_when_nothing_moves() {
        let mut calls = Vec::new();
        {
            let mut cb = recorder(&mut calls);
            let mut r = Reporter::new(Some(&mut cb), Some(100));
            r.tick(10);
            r.tick(10);
            std::thread::sleep(HEARTBEAT);
            r.tick(10);
            // All bytes in but not yet committed: still not the final call.
            std::thread::sleep(HEARTBEAT);
            r.tick(100);
            r.finish(100);
        }
        assert_eq!(calls, vec![(10, 100), (10, 100), (10, 100), (100, 100)]);
    }

    #[test]
    fn an_unknown_total_is_zero_while_loaded_grows_and_the_end_names_it() {
        let mut calls = Vec::new();
        {
            let mut cb = recorder(&mut calls);
            let mut r = Reporter::new(Some(&mut cb), None);
            r.tick(0);
            std::thread::sleep(MIN_INTERVAL);
            r.tick(7000);
            r.finish(9000);
        }
        assert_eq!(calls, vec![(0, 0), (7000, 0), (9000, 9000)]);
    }

    #[test]
    fn cancel_from_callback() {
        let mut cb = |_: u64, _: u64| false;
        let mut r = Reporter::new(Some(&mut cb), Some(100));
        assert!(!r.tick(1));
        assert!(!r.tick(2));
    }

    #[test]
    fn run_returns_cancelled_at_once_while_the_work_is_stuck() {
        let cancels_after = Instant::now() + Duration::from_millis(100);
        let mut cb = |_: u64, _: u64| Instant::now() < cancels_after;
        let mut r = Reporter::new(Some(&mut cb), None);
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let started = Instant::now();
        let result = r.run("wait", move |watch| {
            // A wait far longer than the test: only the cancel ends it early.
            let waited = watch.sleep(Duration::from_secs(60));
            let _ = seen_tx.send(waited.is_err());
            waited
        });
        assert_eq!(result.unwrap_err().kind(), crate::ErrorKind::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(1));
        // The work saw the cancel too and stopped waiting.
        assert!(seen.recv_timeout(Duration::from_secs(1)).unwrap());
    }

    #[test]
    fn run_reports_the_work_count_and_returns_its_result() {
        let mut calls = Vec::new();
        let result = {
            let mut cb = recorder(&mut calls);
            let mut r = Reporter::new(Some(&mut cb), None);
            r.run("count", |watch| {
                watch.add(3);
                std::thread::sleep(HEARTBEAT + POLL_INTERVAL * 3);
                Ok(42)
            })
        };
        assert_eq!(result.unwrap(), 42);
        assert!(calls.contains(&(3, 0)), "{calls:?}");
    }
}
