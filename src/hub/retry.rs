//! The retry policy of hub requests: when to try a failed request again and how long to wait
//! first: exponential backoff with jitter, or the wait the server asked for (read from its
//! headers in `status.rs`, carried by the error), capped, within bounds on both the number of
//! attempts and the total time spent waiting.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::progress::Watch;

/// How a transient failure is retried. Cheap to copy; one per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts in all).
    pub max_retries: u32,
    /// The first backoff; doubled on every further retry.
    pub base: Duration,
    /// No computed backoff grows beyond this.
    pub max_backoff: Duration,
    /// No single wait, even one the server asked for, is longer than this.
    pub max_server_wait: Duration,
    /// Give up once this much time has gone by since the first attempt.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            max_server_wait: Duration::from_secs(60),
            max_total: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): the server's wish when it named one,
    /// else `base * 2^retry` with jitter in [50%, 100%], capped.
    pub fn delay(&self, retry: u32, server_wish: Option<Duration>) -> Duration {
        if let Some(wish) = server_wish {
            return wish.min(self.max_server_wait);
        }
        crate::backoff::jittered(self.base, retry, self.max_backoff).min(self.max_server_wait)
    }

    /// Run `attempt` until it succeeds, fails for good, or the policy's bounds are reached.
    /// Only errors marked transient are retried; the last error is returned as it is. A
    /// cancel of `watch` ends a wait between attempts at once (with `Cancelled`).
    pub(crate) fn run<T>(
        &self,
        watch: &Watch,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut retry = 0;
        loop {
            watch.check()?;
            let err: Error = match attempt() {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if !err.is_transient() || retry >= self.max_retries {
                return Err(give_up(err, retry));
            }
            let wait = self.delay(retry, err.retry_after());
            if started.elapsed() + wait > self.max_total {
                return Err(give_up(err, retry));
            }
            watch.sleep(wait)?;
            retry += 1;
        }
    }
}

fn give_up(err: Error, retries: u32) -> Error {
    if retries == 0 || !err.is_transient() {
        return err;
    }
    let plural = if retries == 1 { "y" } else { "ies" };
    err.context(format!("gave up after {retries} retr{plural}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn delays_grow_with_jitter_and_respect_caps() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        for retry in 0..4 {
            let full = Duration::from_millis(100 << retry);
            let d = policy.delay(retry, None);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
        }
        assert!(policy.delay(30, None) <= policy.max_backoff);
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3600))),
            policy.max_server_wait
        );
    }

    fn fast_policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base: Duration::from_millis(1),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn retries_transient_errors_until_success() {
        let mut calls = 0;
        let got = fast_policy(5).run(&Watch::default(), || {
            calls += 1;
            if calls < 3 {
                Err(Error::new(ErrorKind::Http, "503").transient(None))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got, Ok(3));
    }

    #[test]
    fn stops_at_the_retry_bound_and_says_so() {
        let mut calls = 0;
        let err = fast_policy(2)
            .run(&Watch::default(), || -> Result<()> {
                calls += 1;
                Err(Error::new(ErrorKind::Http, "server error 503").transient(None))
            })
            .unwrap_err();
        assert_eq!(calls, 3);
        assert_eq!(err.kind(), ErrorKind::Http);
        assert!(
            err.message()
                .starts_with("gave up after 2 retries: server error 503"),
            "{err}"
        );
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let err = fast_policy(5)
            .run(&Watch::default(), || -> Result<()> {
                calls += 1;
                Err(Error::new(ErrorKind::RepoNotFound, "nope"))
            })
            .unwrap_err();
        assert_eq!((calls, err.message()), (1, "nope"));
    }

    #[test]
    fn total_time_bound_stops_long_server_waits() {
        let policy = RetryPolicy {
            max_total: Duration::from_millis(50),
            ..fast_policy(5)
        };
        let started = Instant::now();
        let mut calls = 0;
        let err = policy
            .run(&Watch::default(), || -> Result<()> {
                calls += 1;
                Err(Error::new(ErrorKind::RateLimited, "429")
                    .transient(Some(Duration::from_secs(30))))
            })
            .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
