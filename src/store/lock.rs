//! The cache directory's exclusive lock: one process (and one open `ModelCache`) at a time,
//! because sled is a single-process store. Taken before anything else is touched, released
//! when the handle drops; a second opener gets a prompt, clear `Locked` error, never a hang.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

pub(crate) struct DirLock {
    // The lock lives as long as this handle to the lock file.
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(root: &Path) -> Result<DirLock> {
        let path = root.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("could not create the lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "cache is locked by another process (or another open ModelCache in this process): {}; \
                     close the other user or give this one a different cache directory",
                    root.display()
                ),
            )),
            Err(TryLockError::Error(e)) => Err(Error::io("could not lock", &path, e)),
        }
    }
}
