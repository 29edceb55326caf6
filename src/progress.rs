//! Progress reporting for blocking calls: the calling thread polls byte counters that worker
//! threads advance, and hands the caller's callback throttled, monotonic `(loaded, total)`
//! pairs, ending with exactly one `loaded == total` call on success.

use std::time::{Duration, Instant};

/// How often a blocking call wakes to report progress and check for cancellation.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// At most this many callbacks per second (plus the final one).
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The caller's progress callback: gets `(loaded, total)`, returns false to cancel.
pub type ProgressFn<'a> = &'a mut dyn FnMut(u64, u64) -> bool;

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

pub(crate) struct Reporter<'a> {
    callback: Option<ProgressFn<'a>>,
    total: u64,
    reported: Option<u64>,
    last_call: Option<Instant>,
    cancelled: bool,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(callback: Option<ProgressFn<'a>>, total: u64) -> Self {
        Reporter {
            callback,
            total,
            reported: None,
            last_call: None,
            cancelled: false,
        }
    }

    /// Report `loaded` if enough time has passed and it moved. Returns false once the
    /// callback asked to cancel.
    pub(crate) fn tick(&mut self, loaded: u64) -> bool {
        let loaded = loaded.min(self.total);
        let due = self.last_call.is_none_or(|t| t.elapsed() >= MIN_INTERVAL);
        let moved = self.reported.is_none_or(|r| loaded > r);
        // The final `loaded == total` call is finish()'s to make, exactly once.
        if due && moved && loaded < self.total {
            self.call(loaded);
        }
        !self.cancelled
    }

    /// The final call, on success.
    pub(crate) fn finish(&mut self) {
        if !self.cancelled && self.reported != Some(self.total) {
            self.call(self.total);
        }
    }

    fn call(&mut self, loaded: u64) {
        // Monotonic even if the counters behind `loaded` ever stepped back.
        let loaded = self.reported.map_or(loaded, |r| r.max(loaded));
        self.reported = Some(loaded);
        self.last_call = Some(Instant::now());
        if let Some(cb) = self.callback.as_mut() {
            if !cb(loaded, self.total) {
                self.cancelled = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_monotonic_and_final() {
        let mut calls = Vec::new();
        {
            let mut cb = |l: u64, t: u64| {
                calls.push((l, t));
                true
            };
            let mut r = Reporter::new(Some(&mut cb), 100);
            for l in [10, 20, 5, 30] {
                assert!(r.tick(l));
            }
            std::thread::sleep(MIN_INTERVAL);
            r.tick(40);
            r.finish();
            r.finish();
        }
        assert_eq!(calls, vec![(10, 100), (40, 100), (100, 100)]);
    }

    #[test]
    fn cancel_from_callback() {
        let mut cb = |_: u64, _: u64| false;
        let mut r = Reporter::new(Some(&mut cb), 100);
        assert!(!r.tick(1));
        assert!(!r.tick(2));
    }
}
