//! Surviving `fork()`. A child gets a copy of the parent's memory with one thread in it: every
//! lock another thread held at that instant stays held for ever, and every file descriptor is
//! shared with the parent. Python's multiprocessing forks by default, so a child opening the
//! cache again (or freeing what it inherited) must neither hang nor harm the parent:
//!
//! - Every section of the library that takes a lock a child may need again (SQLite calls,
//!   whose global mutexes live inside SQLite; the C handle registries) runs inside [`quiet`].
//!   A fork waits until no thread is inside one and keeps new ones out until it is done, so
//!   the child starts with all of those locks free.
//! - In the child, the store lets go of what it inherited ([`crate::store::forget_inherited`]):
//!   it closes the parent's SQLite connections (else SQLite's per-process file records, which
//!   the child copied, would make a new connection believe it holds file locks it does not)
//!   and detaches the lock files the parent holds (else a lock would outlive a dead parent
//!   inside the child). Handles opened before the fork are refused in the child with a message
//!   saying to open the cache again.
//!
//! The fork handlers are installed the first time a section runs, which is before any state
//! they protect exists.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Forks under way (their prepare handler ran, their parent/child handler has not).
static FORKING: AtomicUsize = AtomicUsize::new(0);
/// Threads inside a quiet section.
static BUSY: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Depth of nested quiet sections on this thread: only the outermost one counts in BUSY,
    /// so a nested one never waits for a fork that waits for the outer one.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// This process's id, kept by the fork handlers: asking the kernel (`getpid`) on every
/// catalog call was a measurable part of a `has_file`.
static PID: AtomicU32 = AtomicU32::new(0);

/// The id of this process (right in a forked child too).
pub(crate) fn current_pid() -> u32 {
    // Installed before the id is kept, so no fork can happen in between unseen.
    install();
    match PID.load(Ordering::SeqCst) {
        0 => {
            let id = std::process::id();
            PID.store(id, Ordering::SeqCst);
            id
        }
        id => id,
    }
}

/// A section that a fork waits for; see the module doc.
pub(crate) struct Quiet {
    _not_send: std::marker::PhantomData<*const ()>,
}

pub(crate) fn quiet() -> Quiet {
    install();
    let depth = DEPTH.with(|d| {
        let v = d.get();
        d.set(v + 1);
        v
    });
    if depth == 0 {
        loop {
            // Wait while a fork is being prepared: it is waiting for sections to end.
            while FORKING.load(Ordering::SeqCst) != 0 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            BUSY.fetch_add(1, Ordering::SeqCst);
            if FORKING.load(Ordering::SeqCst) == 0 {
                break;
            }
            // A fork began between the check and the count: step back out of its way.
            BUSY.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Quiet {
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        let depth = DEPTH.with(|d| {
            let v = d.get() - 1;
            d.set(v);
            v
        });
        if depth == 0 {
            BUSY.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A mutex guard held inside a quiet section (the guard is released first).
pub(crate) struct QuietGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    _quiet: Quiet,
}

impl<T> std::ops::Deref for QuietGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for QuietGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// Lock `mutex` inside a quiet section. A poisoned mutex is taken as it is: every user of
/// these locks leaves its data consistent at each step.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> QuietGuard<'_, T> {
    let quiet = quiet();
    QuietGuard {
        guard: mutex.lock().unwrap_or_else(|p| p.into_inner()),
        _quiet: quiet,
    }
}

#[cfg(unix)]
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers are plain functions that live as long as the program.
        unsafe {
            libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child));
        }
    });
}

#[cfg(not(unix))]
fn install() {}

#[cfg(unix)]
extern "C" fn prepare() {
    FORKING.fetch_add(1, Ordering::SeqCst);
    // The forking thread may itself be inside a section (it is not, in this library; a
    // caller's callback could fork, though): do not wait for ourselves.
    let own = usize::from(DEPTH.with(|d| d.get()) > 0);
    while BUSY.load(Ordering::SeqCst) > own {
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
}

#[cfg(unix)]
extern "C" fn in_parent() {
    FORKING.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(unix)]
extern "C" fn in_child() {
    // No other thread exists here, and none was inside a section at the fork.
    PID.store(std::process::id(), Ordering::SeqCst);
    BUSY.store(DEPTH.with(|d| usize::from(d.get() > 0)), Ordering::SeqCst);
    FORKING.store(0, Ordering::SeqCst);
    crate::store::forget_inherited();
}
