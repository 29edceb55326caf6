//! Carrying out an eviction the budget chose (`crate::budget`), so that no one reading a file
//! loses it: every reader of a blob holds a shared lock on its open file (`BlobDir::open_blob`),
//! and eviction removes a blob only while it holds that file's exclusive lock, taken without
//! waiting. A blob someone is reading, in this process or another, is therefore never chosen;
//! a reader that opens it during the removal waits for it, then reads the unlinked file whole.
//! A path handed out by `file_path` (an engine's mmap) holds no lock: its protection is that it
//! counts as used, so the budget reaches it last.

use std::collections::HashMap;
use std::fs::{File, TryLockError};

use super::Store;
use crate::budget::Eviction;
use crate::error::Result;

impl Store {
    /// Remove the files of `eviction` and the blobs whose last reference they held, unless one
    /// of those blobs is open for reading: then nothing is removed and the answer is false.
    ///
    /// # Errors
    /// `Io` when the catalog or a file cannot be changed.
    pub(crate) fn evict(&self, eviction: &Eviction) -> Result<bool> {
        let _gate = self.gate()?;
        let (repo, commit) = (&eviction.repo_id, &eviction.commit);
        // Blobs this removes the last reference of: their readers must be none.
        let mut dropped: HashMap<String, u64> = HashMap::new();
        for path in &eviction.files {
            if let Some(record) = self.catalog.file(repo, commit, path)? {
                *dropped.entry(record.sha256).or_default() += 1;
            }
        }
        let mut held: Vec<File> = Vec::new();
        for (sha, going) in &dropped {
            if self.catalog.blob_refs(sha)? != Some(*going) {
                continue;
            }
            let Ok(file) = self.blobs.open_unlocked(sha) else {
                continue;
            };
            match file.try_lock() {
                Ok(()) => held.push(file),
                Err(TryLockError::WouldBlock) => return Ok(false),
                // A file system without locks: nothing can be known about readers.
                Err(TryLockError::Error(_)) => held.push(file),
            }
        }
        for path in &eviction.files {
            self.remove_file_in_gate(repo, commit, path)?;
        }
        drop(held);
        Ok(true)
    }
}
