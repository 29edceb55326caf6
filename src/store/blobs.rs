//! Content-addressed blob files: `blobs/<sha256>`, each distinct content once, read-only after
//! its verified commit, and `tmp/` where transfers write before they commit.
//!
//! Both folders are [`Dir`] handles opened once (see `crate::dir`): a link planted at a blob's
//! or a partial download's name, or at `blobs`/`tmp` after the store opened them, is never
//! followed. A blob is a regular file; a link or special file at a blob's name counts as no
//! blob (the next download replaces it, recovery removes it).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::dir::{file_meta, make_read_only, Dir, Kind, Meta};
use crate::error::{Error, ErrorKind, Result};

pub(crate) struct BlobDir {
    blobs: Dir,
    tmp: Dir,
}

impl BlobDir {
    pub(crate) fn open(root: &Dir) -> Result<BlobDir> {
        let sub = |name: &str| {
            root.sub(name, true)
                .map_err(|e| Error::io("could not create", &root.join(name), e))
        };
        Ok(BlobDir {
            blobs: sub("blobs")?,
            tmp: sub("tmp")?,
        })
    }

    pub(crate) fn blobs_dir(&self) -> &Dir {
        &self.blobs
    }

    pub(crate) fn tmp_dir(&self) -> &Dir {
        &self.tmp
    }

    /// Where the blob with this sha256 (lower-case hex) lives once committed.
    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.blobs.join(sha256)
    }

    /// The blob file's metadata, when a regular file is at its name.
    fn blob_meta(&self, sha256: &str) -> Option<Meta> {
        self.blobs
            .stat(sha256)
            .ok()
            .flatten()
            .filter(|m| m.kind == Kind::File)
    }

    pub(crate) fn exists(&self, sha256: &str) -> bool {
        self.blob_meta(sha256).is_some()
    }

    /// The size of the blob file, when there is one.
    pub(crate) fn size(&self, sha256: &str) -> Option<u64> {
        self.blob_meta(sha256).map(|m| m.len)
    }

    /// The blob file, opened for reading (never through a link, never blocking on a FIFO), with
    /// a shared lock held as long as the file is open: eviction leaves a blob alone while anyone
    /// reads it (see `evict`). Waits only while an eviction is removing this very blob.
    pub(crate) fn open_blob(&self, sha256: &str) -> std::io::Result<File> {
        let file = self.open_unlocked(sha256)?;
        match file.lock_shared() {
            // A file system without locks (some network mounts): reading still works.
            Ok(()) | Err(_) => Ok(file),
        }
    }

    /// The blob file, opened for reading without the readers' lock.
    pub(crate) fn open_unlocked(&self, sha256: &str) -> std::io::Result<File> {
        self.blobs.open_read(sha256)
    }

    /// The name in `tmp/` where a transfer identified by `key` writes its bytes.
    pub(crate) fn partial_name(key: &str) -> String {
        format!("{key}.part")
    }

    /// The name in `tmp/` of the lock a transfer of `key` holds while it runs (see
    /// `lock::TransferLock`).
    pub(crate) fn lock_name(key: &str) -> String {
        format!("{key}.lock")
    }

    /// Move the verified, synced file `tmp/<name>` into place as blob `sha256`. If the blob
    /// already exists (another transfer committed the same bytes), the temporary file is
    /// dropped. Only the file the transfer made goes in: a link, a special file or a file with
    /// other hard links at `name` (planted, not written by a transfer) is refused, and a file
    /// swapped in between the checks and the rename is taken out again.
    pub(crate) fn commit(&self, name: &str, sha256: &str) -> Result<PathBuf> {
        let dest = self.path(sha256);
        let src = self.tmp.join(name);
        if self.exists(sha256) {
            let _ = self.tmp.remove_file(name);
            return Ok(dest);
        }
        let file = self
            .tmp
            .open_read(name)
            .map_err(|e| Error::io("could not open the verified download", &src, e))?;
        let meta =
            file_meta(&file).map_err(|e| Error::io("could not read the metadata of", &src, e))?;
        if meta.links != 1 {
            return Err(replaced(&src));
        }
        make_read_only(&file).map_err(|e| Error::io("could not make read-only", &src, e))?;
        self.tmp
            .rename(name, &self.blobs, sha256)
            .map_err(|e| Error::io("could not move the verified download into", &dest, e))?;
        if self.blobs.stat(sha256).ok().flatten().map(|m| m.id) != Some(meta.id) {
            let _ = self.blobs.remove_file(sha256);
            return Err(replaced(&src));
        }
        sync_dir(&self.blobs);
        Ok(dest)
    }

    pub(crate) fn remove(&self, sha256: &str) -> Result<()> {
        self.blobs
            .remove_file(sha256)
            .map(drop)
            .map_err(|e| Error::io("could not delete", &self.path(sha256), e))
    }

    /// The names of every entry in `blobs/` (committed or not recorded).
    pub(crate) fn list(&self) -> Result<Vec<String>> {
        self.blobs
            .list()
            .map_err(|e| Error::io("could not list", self.blobs.path(), e))
    }

    /// Bring an existing, already verified file in as blob `sha256`: `src` is the open file
    /// whose bytes were hashed, `src_path` where it was found. Hard-linked when the file system
    /// allows (no copy) and the path still names the file that was hashed, copied from `src`
    /// otherwise, so what is committed is always what was hashed. `src` is never written, not
    /// even its mode: a hard link shares it with its other owner, so it keeps the permissions
    /// it has.
    pub(crate) fn adopt(&self, src: &File, src_path: &Path, sha256: &str) -> Result<Adopted> {
        if self.exists(sha256) {
            return Ok(Adopted::AlreadyHeld);
        }
        let name = format!("adopt-{sha256}");
        let tmp_path = self.tmp.join(&name);
        let _ = self.tmp.remove_file(&name);
        let hashed = file_meta(src).map_err(|e| Error::io("could not read", src_path, e))?;
        if self.tmp.hard_link_path(src_path, &name).is_ok() {
            let linked = self.tmp.stat(&name).ok().flatten();
            // On unix the ids tell the inode hashed from one swapped in at the path since; where
            // the platform has none, the path is all there is to go by.
            if linked.is_some_and(|m| m.kind == Kind::File && m.id == hashed.id) {
                self.tmp.rename(&name, &self.blobs, sha256).map_err(|e| {
                    Error::io(
                        "could not move the adopted file into",
                        &self.path(sha256),
                        e,
                    )
                })?;
                sync_dir(&self.blobs);
                return Ok(Adopted::Linked);
            }
            let _ = self.tmp.remove_file(&name);
        }
        self.tmp
            .copy_new(src, &name)
            .map_err(|e| Error::io("could not copy into", &tmp_path, e))?;
        self.commit(&name, sha256)?;
        Ok(Adopted::Copied)
    }

    /// The entries of `tmp/`, as the directory lists them.
    pub(crate) fn tmp_files(&self) -> Result<Vec<TmpFile>> {
        let mut out = Vec::new();
        for name in self
            .tmp
            .list()
            .map_err(|e| Error::io("could not list", self.tmp.path(), e))?
        {
            let meta = self.tmp.stat(&name).ok().flatten();
            out.push(TmpFile {
                name,
                len: meta.map_or(0, |m| m.len),
                modified: meta.and_then(|m| m.modified),
            });
        }
        Ok(out)
    }
}

/// The refusal of a file in `tmp/` that is not (or no longer) the one a transfer wrote.
fn replaced(path: &Path) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "{} is not the file the download wrote (it was replaced, or another name links to it), \
             so it was not committed and nothing outside the cache was changed; something else is \
             writing in the cache's tmp/ folder: stop it and download again",
            path.display()
        ),
    )
}

/// A file in `tmp/`: a partial download or its leftovers.
pub(crate) struct TmpFile {
    pub(crate) name: String,
    pub(crate) len: u64,
    /// Last written; None where the platform cannot say.
    pub(crate) modified: Option<std::time::SystemTime>,
}

/// How [`BlobDir::adopt`] brought a file in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adopted {
    AlreadyHeld,
    Linked,
    Copied,
}

/// Make a rename durable. Best effort: not every platform can sync a directory.
pub(crate) fn sync_dir(dir: &Dir) {
    let _ = dir.sync();
}
