//! One transfer per blob in this process: every request for content the store lacks joins the
//! flight already fetching that content, or starts one on its own thread. Requesters only wait
//! and watch the flight's byte counter, so the caller's thread stays free to report progress
//! and notice cancellation; a flight is cancelled only when every requester has walked away.
//! Across processes, a flight first claims the content's transfer lock in the store
//! (`Store::claim_transfer`): one flight in one process moves the bytes, the others wait for
//! its blob, and take over from its durable ranges if it dies.
//!
//! A flight also publishes the prefix of its file written so far ([`Flight::prefix`]), so
//! that the server's pull-through streams the bytes to its clients while they arrive; such
//! async requesters watch the prefix and the landing through it instead of blocking in
//! [`Ticket::wait`], and withdraw with [`Ticket::withdraw_now`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::download::{PrefixWatch, WrittenPrefix};
use crate::error::Result;
use crate::store::FileRecord;

pub(crate) struct Flight {
    /// Bytes of the content held so far (resumed bytes included).
    pub(crate) progress: AtomicU64,
    /// Set when no requester wants the bytes any more; the transfer checks it between reads.
    pub(crate) cancel: Arc<AtomicBool>,
    /// The transfer's file and its bytes in place from byte 0; ends when the flight lands.
    pub(crate) prefix: PrefixWatch,
    interested: AtomicUsize,
    outcome: Mutex<Option<Result<FileRecord>>>,
    landed: Condvar,
}

/// The flights under way, by content key.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

impl Flights {
    /// Join the flight for `key`, or create one and hand it to `start` (which must run it on a
    /// thread of its own and call [`Flights::land`] when done). `start` runs under the registry
    /// lock only long enough to spawn.
    pub(crate) fn join_or_start(&self, key: &str, start: impl FnOnce(Arc<Flight>)) -> Ticket {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = map.get(key) {
            flight.interested.fetch_add(1, Ordering::SeqCst);
            // Everyone before us walked away; we still want the bytes. If the transfer already
            // stopped, our ticket lands as Cancelled and the caller starts a new flight.
            flight.cancel.store(false, Ordering::SeqCst);
            return Ticket {
                flight: flight.clone(),
                settled: false,
            };
        }
        let flight = Arc::new(Flight {
            progress: AtomicU64::new(0),
            cancel: Arc::default(),
            prefix: PrefixWatch::default(),
            interested: AtomicUsize::new(1),
            outcome: Mutex::new(None),
            landed: Condvar::new(),
        });
        map.insert(key.to_string(), flight.clone());
        start(flight.clone());
        Ticket {
            flight,
            settled: false,
        }
    }

    /// Publish a flight's outcome and retire it, so the next request for `key` starts afresh.
    pub(crate) fn land(&self, key: &str, flight: &Flight, outcome: Result<FileRecord>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        *flight.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        flight.landed.notify_all();
        // After the outcome is in place, so that a reader woken by the end finds it.
        flight.prefix.end();
    }

    /// The content keys of every flight under way (their `tmp/` files are in use).
    pub(crate) fn keys(&self) -> Vec<String> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.keys().cloned().collect()
    }
}

/// One requester's interest in a flight. Dropping it unsettled withdraws the interest.
pub(crate) struct Ticket {
    flight: Arc<Flight>,
    settled: bool,
}

impl Ticket {
    pub(crate) fn progress(&self) -> u64 {
        self.flight.progress.load(Ordering::Relaxed)
    }

    /// The flight's file as it is written, and (`ended`) its landing: for readers that stream
    /// it meanwhile and must not block a thread to wait.
    pub(crate) fn prefix(&self) -> tokio::sync::watch::Receiver<WrittenPrefix> {
        self.flight.prefix.subscribe()
    }

    /// The outcome, waiting at most `timeout` for it.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Option<Result<FileRecord>> {
        let guard = self
            .flight
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .flight
            .landed
            .wait_timeout_while(guard, timeout, |o| o.is_none())
            .unwrap_or_else(|p| p.into_inner());
        let outcome = guard.clone();
        if outcome.is_some() {
            self.settled = true;
        }
        outcome
    }
}

/// How long withdrawing the last interest waits for the flight to stop. Transfers check their
/// cancel flag every few tens of milliseconds, so a flight normally stops well within this; one
/// stuck in a request that a silent server never answers (or on a wedged disk) is left to end
/// by itself (at the hub client's read timeout), since a cancelled call must return within a
/// second. Its durable ranges stay, and the next request for the content joins or resumes it.
const STOP_WAIT: Duration = Duration::from_millis(500);

impl Ticket {
    /// Withdraw this interest without waiting; the flight, when it was the last one (the
    /// flight is then cancelled and its stop worth waiting for).
    fn withdraw(&mut self) -> Option<Arc<Flight>> {
        if self.settled {
            return None;
        }
        self.settled = true;
        if self.flight.interested.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.flight.cancel.store(true, Ordering::SeqCst);
            return Some(self.flight.clone());
        }
        None
    }
}

impl Ticket {
    /// Withdraw this interest without waiting for the flight to stop, for callers on an async
    /// runtime's threads (which must never block); the flight still stops as
    /// [`withdraw_all`] describes when this was its last requester.
    pub(crate) fn withdraw_now(mut self) {
        self.withdraw();
    }
}

impl Flight {
    /// Wait until the flight landed or `deadline` passed: when a cancelled call returns, none
    /// of its connections or threads are normally still running, and its resumable state is
    /// on disk.
    fn wait_landed(&self, deadline: Instant) {
        let guard = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self.landed.wait_timeout_while(guard, left, |o| o.is_none());
    }
}

/// Withdraw every ticket at once, then wait for the flights no one else wants to stop, all
/// within one [`STOP_WAIT`] (dropping them one by one would wait once per stuck flight).
pub(crate) fn withdraw_all(tickets: impl IntoIterator<Item = Ticket>) {
    let deadline = Instant::now() + STOP_WAIT;
    let stopping: Vec<Arc<Flight>> = tickets
        .into_iter()
        .filter_map(|mut ticket| ticket.withdraw())
        .collect();
    for flight in stopping {
        flight.wait_landed(deadline);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(flight) = self.withdraw() {
            flight.wait_landed(Instant::now() + STOP_WAIT);
        }
    }
}
