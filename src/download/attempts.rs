//! The attempts of one connection's work (a range, or the single stream): which failures are
//! worth another attempt, how long to wait (the shared backoff with jitter, or what the server
//! asked for), and when to give up. Unlike the hub's request retries (`hub/retry.rs`), the
//! count is of failures in a row, so work that moves forward is never given up on.

use std::time::Duration;

use super::body::{Control, POLL};
use crate::error::{Error, Result};

/// No single wait is longer than this, whatever the attempt count or the server asked for.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Consecutive failures of one piece of work (a range, or the single stream).
pub(crate) struct Attempts {
    base: Duration,
    max_attempts: u32,
    failures: u32,
}

impl Attempts {
    pub fn new(base: Duration, max_attempts: u32) -> Attempts {
        Attempts {
            base,
            max_attempts: max_attempts.max(1),
            failures: 0,
        }
    }

    /// Decide what to do after `err`. An attempt that moved the work forward (held new bytes)
    /// resets the count: `max_attempts` bounds failures in a row, so a long range on a flaky
    /// link still completes while a dead server is given up on quickly. Returns the wait
    /// before the next attempt, or the error to end with.
    pub fn after_failure(&mut self, err: Error, made_progress: bool) -> Result<Duration> {
        if !err.is_transient() {
            return Err(err);
        }
        if made_progress {
            self.failures = 0;
        }
        self.failures += 1;
        if self.failures >= self.max_attempts {
            let n = self.failures;
            return Err(err.context(format!("gave up after {n} attempts in a row")));
        }
        Ok(wait_before_retry(
            self.base,
            self.failures,
            err.retry_after(),
        ))
    }
}

/// `retry_after` when the server named one; otherwise the shared exponential backoff with
/// jitter, from `base` after the first failure.
fn wait_before_retry(base: Duration, failures: u32, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(wait) => wait.min(MAX_WAIT),
        None => crate::backoff::jittered(base, failures.saturating_sub(1), MAX_WAIT),
    }
}

/// Sleep `wait`, waking early (with the stop error) when the transfer is cancelled or aborted.
pub(crate) fn sleep_unless_stopped(wait: Duration, control: &Control) -> Result<()> {
    sleep_unless(wait, || control.should_stop())
}

/// Sleep `wait`, polling `stop`, and return `Cancelled` as soon as it is true: for waits
/// outside a transfer's threads, which have a cancel flag but no [`Control`].
pub(crate) fn sleep_unless(wait: Duration, stop: impl Fn() -> bool) -> Result<()> {
    let until = std::time::Instant::now() + wait;
    loop {
        if stop() {
            return Err(Error::cancelled());
        }
        let now = std::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn transient() -> Error {
        Error::new(ErrorKind::Network, "reset").transient(None)
    }

    #[test]
    fn gives_up_after_max_failures_in_a_row() {
        let mut attempts = Attempts::new(Duration::from_millis(10), 3);
        assert!(attempts.after_failure(transient(), false).is_ok());
        assert!(attempts.after_failure(transient(), false).is_ok());
        let err = attempts.after_failure(transient(), false).unwrap_err();
        assert!(
            err.message().starts_with("gave up after 3 attempts"),
            "{}",
            err.message()
        );
        assert_eq!(err.kind(), ErrorKind::Network);
    }

    #[test]
    fn progress_resets_the_count() {
        let mut attempts = Attempts::new(Duration::from_millis(10), 2);
        for _ in 0..10 {
            assert!(attempts.after_failure(transient(), true).is_ok());
        }
        assert!(attempts.after_failure(transient(), false).is_err());
    }

    #[test]
    fn permanent_errors_end_at_once() {
        let mut attempts = Attempts::new(Duration::from_millis(10), 5);
        let err = attempts
            .after_failure(Error::new(ErrorKind::EntryNotFound, "404"), false)
            .unwrap_err();
        assert_eq!(err.message(), "404");
    }

    #[test]
    fn waits_grow_and_honour_retry_after() {
        let base = Duration::from_millis(100);
        for failures in 1..6 {
            let full = base * (1 << (failures - 1));
            let wait = wait_before_retry(base, failures, None);
            assert!(wait >= full / 2 && wait <= full, "{failures}: {wait:?}");
        }
        assert_eq!(
            wait_before_retry(base, 1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            wait_before_retry(base, 1, Some(Duration::from_secs(3600))),
            MAX_WAIT
        );
        assert!(wait_before_retry(base, 40, None) <= MAX_WAIT);
    }
}
