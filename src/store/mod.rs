//! Everything on disk under the user's cache directory:
//! - `catalog/`: the sled catalog (metadata only), see [`catalog`];
//! - `blobs/`: content-addressed, verified, read-only files, see [`blobs`];
//! - `hub/`: the snapshot view, a huggingface_hub-style cache of links to blobs, see [`view`];
//! - `tmp/`: partial downloads, resumed or cleaned on open;
//! - `LOCK`: held while the cache is open.
//!
//! Commit protocol for a downloaded file: the transfer writes and syncs `tmp/<key>.part` and
//! verifies it; [`Store::commit_file`] renames it into `blobs/`, records the file in one catalog
//! transaction (flushed), then links it into the view. A crash between any two steps leaves
//! either the old state or a blob no record names, which the next open removes.

mod blobs;
mod catalog;
mod lock;
mod view;

use std::path::{Path, PathBuf};

pub(crate) use blobs::Adopted;
pub use catalog::{CatalogTotals, FileRecord};

use crate::download::{PartialState, ResumeLog};
use crate::error::{Error, Result};
use crate::manifest::RepoRecord;

pub(crate) struct Store {
    root: PathBuf,
    catalog: catalog::Catalog,
    blobs: blobs::BlobDir,
    view: view::SnapshotView,
    gate: std::sync::Mutex<()>,
    // Dropped last: the lock must outlive every other handle into the directory.
    _lock: lock::DirLock,
}

impl Store {
    pub(crate) fn open(root: &Path) -> Result<Store> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io("could not create the cache directory", root, e))?;
        let root =
            std::fs::canonicalize(root).map_err(|e| Error::io("could not resolve", root, e))?;
        let lock = lock::DirLock::acquire(&root)?;
        let catalog = catalog::Catalog::open(&root.join("catalog"))?;
        let blobs = blobs::BlobDir::open(&root)?;
        let view = view::SnapshotView::open(root.join("hub"))?;
        let store = Store {
            root,
            catalog,
            blobs,
            view,
            gate: std::sync::Mutex::new(()),
            _lock: lock,
        };
        store.recover()?;
        Ok(store)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn view_root(&self) -> &Path {
        self.view.root()
    }

    /// Bring disk and catalog back in line after a crash: drop blob files no record names (a
    /// crash between rename and record), resume records whose partial file is gone, and
    /// partial files no resume record describes (their durable ranges are unknown, so they
    /// cannot be trusted). Records whose blob file is gone are left: reads check the file.
    fn recover(&self) -> Result<()> {
        self.remove_unrecorded_blobs()?;
        let partials: std::collections::HashSet<String> =
            self.catalog.partial_keys()?.into_iter().collect();
        for key in &partials {
            if !self.blobs.partial_path(key).is_file() {
                self.catalog.clear_partial(key)?;
            }
        }
        let tmp = self.blobs.tmp_dir().to_path_buf();
        for entry in std::fs::read_dir(&tmp).map_err(|e| Error::io("could not list", &tmp, e))? {
            let entry = entry.map_err(|e| Error::io("could not list", &tmp, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".part").unwrap_or(&name);
            if !partials.contains(key) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    pub(crate) fn repo(&self, repo: &str) -> Result<Option<RepoRecord>> {
        self.catalog.repo(repo)
    }

    pub(crate) fn repo_ids(&self) -> Result<Vec<String>> {
        self.catalog.repo_ids()
    }

    pub(crate) fn put_repo(&self, record: &RepoRecord) -> Result<()> {
        let _gate = self.gate();
        self.catalog.put_repo(record)?;
        self.view
            .set_ref(&record.repo_id, &record.revision, &record.commit)
    }

    pub(crate) fn update_repo(&self, repo: &str, change: impl Fn(&mut RepoRecord)) -> Result<()> {
        self.catalog.update_repo(repo, change)
    }

    /// Remember that `revision` of `repo` is `commit` (in the catalog and the view's `refs/`).
    pub(crate) fn set_ref(&self, repo: &str, revision: &str, commit: &str) -> Result<()> {
        let _gate = self.gate();
        if self.catalog.commit_for(repo, revision)?.as_deref() != Some(commit) {
            self.catalog.set_ref(repo, revision, commit)?;
        }
        self.view.set_ref(repo, revision, commit)
    }

    pub(crate) fn commit_for(&self, repo: &str, revision: &str) -> Result<Option<String>> {
        self.catalog.commit_for(repo, revision)
    }

    /// The record of a cached file whose blob is present.
    pub(crate) fn cached_file(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
    ) -> Result<Option<FileRecord>> {
        Ok(self
            .catalog
            .file(repo, commit, path)?
            .filter(|rec| self.blobs.exists(&rec.sha256)))
    }

    pub(crate) fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs.path(sha256)
    }

    /// A committed blob with this sha256, if the store has it.
    pub(crate) fn has_blob(&self, sha256: &str) -> Result<bool> {
        Ok(self.catalog.blob(sha256)?.is_some() && self.blobs.exists(sha256))
    }

    /// The sha256 of a committed blob whose git blob sha1 is `git_oid`, if the store has one.
    pub(crate) fn blob_for_git_oid(&self, git_oid: &str) -> Result<Option<String>> {
        match self.catalog.sha256_for_git_oid(git_oid)? {
            Some(sha) if self.has_blob(&sha)? => Ok(Some(sha)),
            _ => Ok(None),
        }
    }

    pub(crate) fn partial_path(&self, key: &str) -> PathBuf {
        self.blobs.partial_path(key)
    }

    pub(crate) fn resume_log(&self, key: &str) -> PartialLog<'_> {
        PartialLog {
            catalog: &self.catalog,
            key: key.to_string(),
        }
    }

    /// Commit a verified download at `tmp` as blob `record.sha256`, record it as
    /// `repo@commit:path`, and link it into the view. Returns the view path.
    pub(crate) fn commit_file(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        tmp: &Path,
        record: &FileRecord,
    ) -> Result<PathBuf> {
        let _gate = self.gate();
        self.blobs.commit(tmp, &record.sha256)?;
        self.add_file(repo, commit, path, record)
    }

    /// Record `repo@commit:path` as held by the committed blob `record.sha256` (dedup: no
    /// transfer), and link it into the view. Returns the view path, or None when the blob is
    /// not (or no longer) in the store, so the caller must fetch the bytes.
    pub(crate) fn reference_blob(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        record: &FileRecord,
    ) -> Result<Option<PathBuf>> {
        let _gate = self.gate();
        if !self.blobs.exists(&record.sha256) {
            return Ok(None);
        }
        self.add_file(repo, commit, path, record).map(Some)
    }

    /// Callers hold the blob gate.
    fn add_file(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        record: &FileRecord,
    ) -> Result<PathBuf> {
        let orphans = self.catalog.add_file(repo, commit, path, record)?;
        for sha in orphans {
            self.blobs.remove(&sha)?;
        }
        self.view
            .link(repo, commit, path, &self.blobs.path(&record.sha256))
    }

    /// Taken by everything that deletes blob files, adds references to existing ones or changes
    /// the view, so a delete can never remove a blob between another thread's "it is there"
    /// and its record, nor a repo's view folder while another thread links into it.
    fn gate(&self) -> std::sync::MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The view path of `repo@commit:path` and its record when it is cached, making sure the
    /// view entry exists (it may have been deleted by hand). Under the gate, so a delete on
    /// another thread cannot remove the record between the look-up and the link and leave a
    /// path to nothing.
    pub(crate) fn cached_view(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
    ) -> Result<Option<(PathBuf, FileRecord)>> {
        let _gate = self.gate();
        let Some(rec) = self.cached_file(repo, commit, path)? else {
            return Ok(None);
        };
        let view_path = self
            .view
            .link(repo, commit, path, &self.blobs.path(&rec.sha256))?;
        Ok(Some((view_path, rec)))
    }

    /// Forget `repo` and delete every blob only it referenced. Returns the bytes freed.
    pub(crate) fn remove_repo(&self, repo: &str) -> Result<u64> {
        let _gate = self.gate();
        let orphans = self.catalog.remove_repo(repo)?;
        let mut freed = 0;
        for sha in orphans {
            freed += std::fs::metadata(self.blobs.path(&sha))
                .map(|m| m.len())
                .unwrap_or(0);
            self.blobs.remove(&sha)?;
        }
        self.view.remove_repo(repo)?;
        Ok(freed)
    }

    pub(crate) fn totals(&self) -> Result<CatalogTotals> {
        self.catalog.totals()
    }

    /// Every file record (or one repo's): `(repo, commit, path, record)`.
    pub(crate) fn file_records(
        &self,
        repo: Option<&str>,
    ) -> Result<Vec<(String, String, String, FileRecord)>> {
        self.catalog.file_records(repo)
    }

    /// Every recorded blob: (sha256, size).
    pub(crate) fn blob_sizes(&self) -> Result<Vec<(String, u64)>> {
        Ok(self
            .catalog
            .blobs()?
            .into_iter()
            .map(|(sha, rec)| (sha, rec.size))
            .collect())
    }

    /// Forget one cached file and delete its blob if nothing else references it. Returns the
    /// bytes freed.
    pub(crate) fn remove_file(&self, repo: &str, commit: &str, path: &str) -> Result<u64> {
        let _gate = self.gate();
        let orphans = self.catalog.remove_file(repo, commit, path)?;
        self.view.remove_file(repo, commit, path)?;
        let mut freed = 0;
        for sha in orphans {
            freed += std::fs::metadata(self.blobs.path(&sha))
                .map(|m| m.len())
                .unwrap_or(0);
            self.blobs.remove(&sha)?;
        }
        Ok(freed)
    }

    /// Forget a damaged blob: its record, every file record naming it, their view entries and
    /// the blob file. Returns the files that must be fetched again, as `(repo, commit, path)`.
    pub(crate) fn drop_blob(&self, sha256: &str) -> Result<Vec<(String, String, String)>> {
        let _gate = self.gate();
        let holders = self.catalog.drop_blob(sha256)?;
        for (repo, commit, path) in &holders {
            self.view.remove_file(repo, commit, path)?;
        }
        self.blobs.remove(sha256)?;
        Ok(holders)
    }

    /// Bring a verified file from elsewhere (another cache) in as blob `record.sha256` and
    /// record it as `repo@commit:path`. `src` is linked or copied, never written.
    pub(crate) fn adopt_file(
        &self,
        src: &Path,
        repo: &str,
        commit: &str,
        path: &str,
        record: &FileRecord,
    ) -> Result<blobs::Adopted> {
        let _gate = self.gate();
        let how = self.blobs.adopt(src, &record.sha256)?;
        self.add_file(repo, commit, path, record)?;
        Ok(how)
    }

    /// Delete blob files no record references and every file in `tmp/` whose transfer key is
    /// not in `busy` (with its resume record).
    pub(crate) fn sweep(
        &self,
        busy: &std::collections::HashSet<String>,
        stale_after: std::time::Duration,
    ) -> Result<Swept> {
        let _gate = self.gate();
        let mut swept = Swept::default();
        (swept.blobs, swept.blob_bytes) = self.remove_unrecorded_blobs()?;
        let tmp = self.blobs.tmp_dir().to_path_buf();
        let now = std::time::SystemTime::now();
        for file in self.blobs.tmp_files()? {
            let (name, len) = (&file.name, file.len);
            let key = name.strip_suffix(".part").unwrap_or(name);
            if busy.contains(key) {
                continue;
            }
            // A file written in the future (clock change) counts as fresh.
            let age = file.modified.map_or(std::time::Duration::MAX, |m| {
                now.duration_since(m).unwrap_or_default()
            });
            if age < stale_after {
                swept.partials_kept += 1;
                swept.partial_bytes_kept += len;
                continue;
            }
            self.catalog.clear_partial(key)?;
            let path = tmp.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("could not delete", &path, e)),
            }
            swept.partials += 1;
            swept.partial_bytes += len;
        }
        Ok(swept)
    }
}

impl Store {
    /// Delete every file in `blobs/` that no blob record names; returns (files, bytes).
    fn remove_unrecorded_blobs(&self) -> Result<(u64, u64)> {
        let recorded: std::collections::HashSet<String> = self
            .catalog
            .blobs()?
            .into_iter()
            .map(|(sha, _)| sha)
            .collect();
        let (mut files, mut bytes) = (0, 0);
        for name in self.blobs.list()? {
            if !recorded.contains(&name) {
                bytes += std::fs::metadata(self.blobs.path(&name))
                    .map(|m| m.len())
                    .unwrap_or(0);
                files += 1;
                self.blobs.remove(&name)?;
            }
        }
        Ok((files, bytes))
    }
}

/// What [`Store::sweep`] deleted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Swept {
    pub(crate) blobs: u64,
    pub(crate) blob_bytes: u64,
    pub(crate) partials: u64,
    pub(crate) partial_bytes: u64,
    /// Idle partial downloads younger than the staleness limit, left to be resumed.
    pub(crate) partials_kept: u64,
    pub(crate) partial_bytes_kept: u64,
}

/// The catalog-backed [`ResumeLog`] of one transfer.
pub(crate) struct PartialLog<'a> {
    catalog: &'a catalog::Catalog,
    key: String,
}

impl ResumeLog for PartialLog<'_> {
    fn load(&self) -> Result<Option<PartialState>> {
        self.catalog.partial(&self.key)
    }

    fn save(&self, state: &PartialState) -> Result<()> {
        self.catalog.save_partial(&self.key, state)
    }

    fn clear(&self) -> Result<()> {
        self.catalog.clear_partial(&self.key)
    }
}
