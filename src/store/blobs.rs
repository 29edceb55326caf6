//! Content-addressed blob files: `blobs/<sha256>`, each distinct content once, read-only after
//! its verified commit, and `tmp/` where transfers write before they commit.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub(crate) struct BlobDir {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl BlobDir {
    pub(crate) fn open(root: &Path) -> Result<BlobDir> {
        let blobs = root.join("blobs");
        let tmp = root.join("tmp");
        for dir in [&blobs, &tmp] {
            fs::create_dir_all(dir).map_err(|e| Error::io("could not create", dir, e))?;
        }
        Ok(BlobDir { blobs, tmp })
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Where the blob with this sha256 (lower-case hex) lives once committed.
    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.blobs.join(sha256)
    }

    pub(crate) fn exists(&self, sha256: &str) -> bool {
        self.path(sha256).is_file()
    }

    /// Where a transfer identified by `key` writes its bytes.
    pub(crate) fn partial_path(&self, key: &str) -> PathBuf {
        self.tmp.join(format!("{key}.part"))
    }

    /// The lock a transfer of `key` holds while it runs (see `lock::TransferLock`).
    pub(crate) fn lock_path(&self, key: &str) -> PathBuf {
        self.tmp.join(format!("{key}.lock"))
    }

    /// Move a verified, synced temporary file into place as blob `sha256`. If the blob already
    /// exists (another transfer committed the same bytes), the temporary file is dropped.
    pub(crate) fn commit(&self, tmp: &Path, sha256: &str) -> Result<PathBuf> {
        let dest = self.path(sha256);
        if dest.is_file() {
            let _ = fs::remove_file(tmp);
            return Ok(dest);
        }
        make_read_only(tmp)?;
        fs::rename(tmp, &dest)
            .map_err(|e| Error::io("could not move the verified download into", &dest, e))?;
        sync_dir(&self.blobs);
        Ok(dest)
    }

    pub(crate) fn remove(&self, sha256: &str) -> Result<()> {
        let path = self.path(sha256);
        // Windows refuses to delete read-only files; unix only needs the directory writable.
        #[cfg(not(unix))]
        if let Ok(meta) = fs::metadata(&path) {
            let mut perms = meta.permissions();
            perms.set_readonly(false);
            let _ = fs::set_permissions(&path, perms);
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("could not delete", &path, e)),
        }
    }

    /// The names of every file in `blobs/` (committed or not recorded).
    pub(crate) fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in
            fs::read_dir(&self.blobs).map_err(|e| Error::io("could not list", &self.blobs, e))?
        {
            let entry = entry.map_err(|e| Error::io("could not list", &self.blobs, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    /// Bring an existing, already verified file in as blob `sha256`: hard-linked when the file
    /// system allows (no copy), copied otherwise. `src` is never written, not even its mode:
    /// a hard link shares it with its other owner, so it keeps the permissions it has.
    pub(crate) fn adopt(&self, src: &Path, sha256: &str) -> Result<Adopted> {
        if self.exists(sha256) {
            return Ok(Adopted::AlreadyHeld);
        }
        let tmp = self.tmp.join(format!("adopt-{sha256}"));
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(src, &tmp).is_ok() {
            let dest = self.path(sha256);
            fs::rename(&tmp, &dest)
                .map_err(|e| Error::io("could not move the adopted file into", &dest, e))?;
            sync_dir(&self.blobs);
            return Ok(Adopted::Linked);
        }
        fs::copy(src, &tmp).map_err(|e| Error::io("could not copy into", &tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("could not sync", &tmp, e))?;
        self.commit(&tmp, sha256)?;
        Ok(Adopted::Copied)
    }

    /// The files in `tmp/`: (name, bytes).
    pub(crate) fn tmp_files(&self) -> Result<Vec<TmpFile>> {
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&self.tmp).map_err(|e| Error::io("could not list", &self.tmp, e))?
        {
            let entry = entry.map_err(|e| Error::io("could not list", &self.tmp, e))?;
            let metadata = entry.metadata().ok();
            out.push(TmpFile {
                name: entry.file_name().to_string_lossy().into_owned(),
                len: metadata.as_ref().map_or(0, |m| m.len()),
                modified: metadata.and_then(|m| m.modified().ok()),
            });
        }
        Ok(out)
    }
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

fn make_read_only(path: &Path) -> Result<()> {
    let mut perms = fs::metadata(path)
        .map_err(|e| Error::io("could not read the metadata of", path, e))?
        .permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms).map_err(|e| Error::io("could not make read-only", path, e))
}

/// Make a rename durable. Best effort: not every platform can open a directory to sync it.
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
