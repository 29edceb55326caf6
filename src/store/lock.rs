//! The cross-process locks of a cache directory. Both are OS advisory locks (`flock` on unix,
//! `LockFileEx` on Windows, through `std::fs::File::lock`), so the kernel releases them when
//! their holder dies: a crashed or killed process never leaves the cache locked.
//!
//! - [`Gate`] (`gate.lock`): held for the short moments that delete blob files, add references
//!   to existing blobs, change the snapshot view, or recover the directory on open. It makes
//!   "the blob is there" and "record a reference to it" one step against every deleter, in
//!   this process (a mutex: threads share the lock file) and in every other.
//! - [`TransferLock`] (`tmp/<key>.lock`): held by whichever process transfers one content key,
//!   from before its first byte until the blob is committed or the transfer stops. Waiters and
//!   sweepers see it held and leave that key's files alone.

use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use crate::dir::{Dir, Kind};
use crate::error::{Error, Result};
use crate::fork;

/// The lock files this process has open, with the process that opened each: a forked child
/// must let go of its parent's (see [`detach_inherited`]).
#[cfg(unix)]
static OPEN_LOCKS: Mutex<Vec<(std::os::fd::RawFd, u32)>> = Mutex::new(Vec::new());

#[cfg(unix)]
fn track(file: &File) {
    use std::os::fd::AsRawFd;
    fork::lock(&OPEN_LOCKS).push((file.as_raw_fd(), crate::fork::current_pid()));
}

#[cfg(unix)]
fn untrack(file: &File) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    fork::lock(&OPEN_LOCKS).retain(|&(f, _)| f != fd);
}

#[cfg(not(unix))]
fn track(_file: &File) {}

#[cfg(not(unix))]
fn untrack(_file: &File) {}

/// In a forked child: point the parent's lock-file descriptors at `/dev/null`. An advisory
/// lock belongs to the open file both processes share and lives while either has it open, so a
/// child that kept them would keep its parent's transfer locked after the parent died.
#[cfg(unix)]
pub(crate) fn detach_inherited() {
    let me = crate::fork::current_pid();
    let mut open = fork::lock(&OPEN_LOCKS);
    // SAFETY: plain descriptor calls on descriptors this registry knows to be open.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null >= 0 {
            for &(fd, _) in open.iter().filter(|(_, pid)| *pid != me) {
                #[cfg(target_os = "linux")]
                libc::dup3(null, fd, libc::O_CLOEXEC);
                #[cfg(not(target_os = "linux"))]
                libc::dup2(null, fd);
            }
            libc::close(null);
        }
    }
    // The descriptors stay open (now on /dev/null) and are closed by whoever owns them.
    open.retain(|&(_, pid)| pid == me);
}

#[cfg(not(unix))]
pub(crate) fn detach_inherited() {}

/// Open (creating) a lock file without following a link planted at its name. The cache makes
/// only regular lock files, so a link or special file at the name holds no lock: it is removed
/// (what a link points to is not touched) and a lock file made in its place.
fn open_lock_file(dir: &Dir, name: &str) -> std::io::Result<File> {
    match dir.open_rw(name, true) {
        Ok(file) => Ok(file),
        Err(e) => match dir.stat(name) {
            Ok(Some(meta)) if matches!(meta.kind, Kind::Link | Kind::Other) => {
                dir.remove_file(name)?;
                dir.open_rw(name, true)
            }
            _ => Err(e),
        },
    }
}

pub(crate) struct Gate {
    path: PathBuf,
    file: File,
    threads: Mutex<()>,
}

/// Held while the gate is; dropping it releases the file lock, then the mutex.
pub(crate) struct GateGuard<'a> {
    file: &'a File,
    _threads: MutexGuard<'a, ()>,
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        untrack(&self.file);
    }
}

impl Gate {
    pub(crate) fn open(root: &Dir) -> Result<Gate> {
        let path = root.join("gate.lock");
        let file = open_lock_file(root, "gate.lock")
            .map_err(|e| Error::io("could not create the lock file", &path, e))?;
        Ok(Gate {
            path,
            file,
            threads: Mutex::new(()),
        })
    }

    /// Wait for the gate. Holders only do a few file operations and one catalog write, so the
    /// wait is short; a holder that dies releases it.
    pub(crate) fn enter(&self) -> Result<GateGuard<'_>> {
        // A panic while holding the gate leaves no half-state worth guarding: every change
        // under it is a catalog transaction plus idempotent file operations.
        let threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        self.file
            .lock()
            .map_err(|e| Error::io("could not lock", &self.path, e))?;
        Ok(GateGuard {
            file: &self.file,
            _threads: threads,
        })
    }
}

/// The lock on one content key's transfer. Dropping it removes the lock file, then unlocks.
pub(crate) struct TransferLock {
    file: File,
    dir: Dir,
    name: String,
}

impl TransferLock {
    /// Take the lock `name` in `dir` if no one holds it; `Ok(None)` when a live holder (in
    /// this process or another) does.
    pub(crate) fn try_acquire(dir: &Dir, name: &str) -> Result<Option<TransferLock>> {
        let path = dir.join(name);
        loop {
            let file =
                open_lock_file(dir, name).map_err(|e| Error::io("could not create", &path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(Error::io("could not lock", &path, e)),
            }
            // The holder before us removes the file before unlocking it; if that happened after
            // we opened it, our lock is on a file no one else will ever open, while a newcomer
            // may lock a new one at the path. Only the file the path names counts.
            if names_same_file(&file, dir, name) {
                track(&file);
                return Ok(Some(TransferLock {
                    file,
                    dir: dir.clone(),
                    name: name.to_string(),
                }));
            }
        }
    }
}

impl Drop for TransferLock {
    fn drop(&mut self) {
        // Removed while still held, so no one can lock this file after we are done with it.
        let _ = self.dir.remove_file(&self.name);
        let _ = self.file.unlock();
        untrack(&self.file);
    }
}

/// Whether `name` in `dir` is (still) the open `file`.
fn names_same_file(file: &File, dir: &Dir, name: &str) -> bool {
    #[cfg(unix)]
    {
        match (crate::dir::file_meta(file), dir.stat(name)) {
            (Ok(a), Ok(Some(b))) => a.id == b.id,
            _ => false,
        }
    }
    // Windows cannot delete a file another handle has open, so the name still names it.
    #[cfg(not(unix))]
    {
        let _ = file;
        matches!(dir.stat(name), Ok(Some(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_lock_is_exclusive_and_removes_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let path = tmp.path().join("k.lock");
        let first = TransferLock::try_acquire(&dir, "k.lock")
            .unwrap()
            .expect("free");
        // A second open file description in the same process conflicts, as another process's does.
        assert!(TransferLock::try_acquire(&dir, "k.lock").unwrap().is_none());
        drop(first);
        assert!(!path.exists());
        let again = TransferLock::try_acquire(&dir, "k.lock").unwrap();
        assert!(again.is_some());
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_is_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        let path = tmp.path().join("k.lock");
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let lock = TransferLock::try_acquire(&dir, "k.lock").unwrap();
        assert!(lock.is_some(), "the planted link holds no lock");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        drop(lock);
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
    }
}
