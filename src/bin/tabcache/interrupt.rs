//! Ctrl-C. The first SIGINT sets a flag that the progress callbacks of long commands return,
//! so the library cancels (it calls them at least every 200 ms whatever it is doing, so a
//! command ends within a second) and the command exits with 130, saying that partial
//! downloads are kept. A second SIGINT exits at once. `serve` waits for the first (or a
//! SIGTERM) to stop.

use std::sync::atomic::{AtomicBool, Ordering};

use tabcache::{Error, ErrorKind, ProgressFn};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// `call` (a library call that takes a progress callback) with Ctrl-C caught and cancelling
/// it, and such a cancel worded as [`interrupted`]. Commands that run no such call keep the
/// default Ctrl-C (an immediate end): they have nothing to wind down.
pub fn cancellable<T>(call: impl FnOnce(ProgressFn<'_>) -> Result<T, Error>) -> Result<T, Error> {
    install();
    let result = call(&mut until_interrupted);
    match result {
        Err(e) if e.kind() == ErrorKind::Cancelled && is_interrupted() => Err(interrupted()),
        other => other,
    }
}

/// Block until Ctrl-C or SIGTERM (for `serve`, whose normal end they are), checking every
/// 100 ms.
pub fn wait_for_stop() {
    install();
    #[cfg(unix)]
    // SAFETY: as in `install`.
    unsafe {
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
    while !is_interrupted() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Catch Ctrl-C from now on (again, for each call: it is idempotent).
fn install() {
    #[cfg(unix)]
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

#[cfg(unix)]
extern "C" fn on_sigint(_signal: libc::c_int) {
    // A second Ctrl-C means "stop now": partial state is durable at every point anyway.
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(tabcache::error::exit::INTERRUPTED.into()) };
    }
}

pub fn is_interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// A progress callback that shows nothing: it only cancels once Ctrl-C was pressed.
pub fn until_interrupted(_loaded: u64, _total: u64) -> bool {
    !is_interrupted()
}

/// What an interrupted command ends with (exit code 130): the library's cancellation, in the
/// words of the terminal the Ctrl-C came from.
pub fn interrupted() -> Error {
    Error::new(
        ErrorKind::Cancelled,
        "interrupted; partial downloads are kept: run the same command again to resume",
    )
}
