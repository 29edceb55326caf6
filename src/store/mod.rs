//! Everything on disk under the user's cache directory:
//! - `catalog`: the SQLite catalog (metadata only), see [`catalog`];
//! - `blobs/`: content-addressed, verified, read-only files, see [`blobs`];
//! - `hub/`: the snapshot view, a huggingface_hub-style cache of links to blobs, see [`view`];
//! - `tmp/`: partial downloads and the lock of each transfer under way, see [`lock`];
//! - `gate.lock`: the cross-process gate, see [`lock`].
//!
//! Any number of processes and handles may have one directory open at once. What keeps them
//! consistent: every multi-record change is one catalog transaction; a content key is
//! transferred only by the holder of its [`lock::TransferLock`]; deleting a blob file and
//! adding a reference to one happen only inside the [`lock::Gate`]; recovery and sweeps leave
//! alone every `tmp/` file whose transfer lock a live process holds.
//!
//! Commit protocol for a downloaded file: the transfer writes and syncs `tmp/<key>.part` and
//! verifies it; [`Store::commit_file`] renames it into `blobs/`, records the file in one catalog
//! transaction (durable when it returns), then links it into the view. A crash between any two
//! steps leaves either the old state or a blob no record names, which the next open removes.
//!
//! Nothing here follows a link planted inside the cache directory: `blobs/`, `tmp/` and `hub/`
//! are opened once as directory handles and every file operation is relative to them (see
//! `crate::dir`); a link at one of the cache's own top-level names refuses the open with a
//! message saying what to do; and every change first checks that those folders are still the
//! ones opened. The catalog is opened by SQLite with `SQLITE_OPEN_NOFOLLOW` (its `-wal` and
//! `-shm` files always with `O_NOFOLLOW`). Only the cache root itself may be a link.
//!
//! The catalog can always be rebuilt from `blobs/` and `hub/` ([`rebuild`]): opening a cache
//! whose catalog is missing, damaged or from the sled-based releases restores every file record
//! without a transfer.

mod blobs;
mod catalog;
mod chunks;
mod evict;
mod lock;
mod rebuild;
mod usage;
mod view;

use std::path::{Path, PathBuf};

pub(crate) use blobs::Adopted;
use blobs::BlobDir;
pub use catalog::{CatalogTotals, FileRecord, Rebuilt};
pub(crate) use usage::{now_ms, UsageLog, UsedFile};
pub use usage::{EvictionLog, LoggedEviction, Pin};
pub(crate) use view::{entries_sorted, files_below, read_ref};

use crate::dir::{Dir, Kind};
use crate::download::{PartialState, ResumeLog};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::RepoRecord;

pub(crate) struct Store {
    root: PathBuf,
    catalog: catalog::Catalog,
    blobs: blobs::BlobDir,
    view: view::SnapshotView,
    gate: lock::Gate,
    /// What opening this store rebuilt, if the catalog had to be rebuilt.
    rebuilt: Option<Rebuilt>,
    /// Uses of cached files noted and not yet written (see `usage`).
    usage: UsageLog,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Best effort: a use not written only makes eviction less informed.
        let _ = self.flush_uses();
    }
}

impl Store {
    /// Open the cache at `root`, creating it if needed, and bring it in line with the disk:
    /// rebuild a lost catalog, remove what a crash left that no live process holds.
    pub(crate) fn open(root: &Path) -> Result<Store> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io("could not create the cache directory", root, e))?;
        let root =
            std::fs::canonicalize(root).map_err(|e| Error::io("could not resolve", root, e))?;
        let root_dir = Dir::open(&root).map_err(|e| Error::io("could not open", &root, e))?;
        refuse_planted_links(&root_dir)?;
        let blobs = BlobDir::open(&root_dir)?;
        let view = view::SnapshotView::open(&root_dir)?;
        let gate = lock::Gate::open(&root_dir)?;
        // One opener at a time creates, migrates, rebuilds and recovers; the rest wait a moment.
        let guard = gate.enter()?;
        let (catalog, rebuilt) = open_catalog(&root, &blobs, &view)?;
        drop(guard);
        let store = Store {
            root,
            catalog,
            blobs,
            view,
            gate,
            rebuilt,
            usage: UsageLog::default(),
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

    /// The snapshot folder of `repo` at `commit` in the view (which may not exist).
    pub(crate) fn snapshot_dir(&self, repo: &str, commit: &str) -> std::path::PathBuf {
        self.view.snapshot_dir(repo, commit)
    }

    /// What opening this store rebuilt, when its catalog was lost.
    pub(crate) fn rebuilt_on_open(&self) -> Option<Rebuilt> {
        self.rebuilt
    }

    /// The last rebuild of this cache's catalog, by any process.
    pub(crate) fn last_rebuild(&self) -> Result<Option<Rebuilt>> {
        self.catalog.last_rebuild()
    }

    /// Bring disk and catalog back in line after a crash: drop blob files no record names (a
    /// crash between rename and record), and the leftovers of transfers no live process runs:
    /// resume records whose partial file is gone, partial files no resume record describes
    /// (their durable ranges are unknown, so they cannot be trusted), stray lock files.
    /// Records whose blob file is gone are left: reads check the file.
    fn recover(&self) -> Result<()> {
        let _gate = self.gate()?;
        self.remove_unrecorded_blobs()?;
        self.sweep_transfers(None)?;
        Ok(())
    }

    pub(crate) fn repo(&self, repo: &str) -> Result<Option<RepoRecord>> {
        self.catalog.repo(repo)
    }

    pub(crate) fn repo_ids(&self) -> Result<Vec<String>> {
        self.catalog.repo_ids()
    }

    /// Store the record `build` makes from the stored one (None when new) and point the
    /// view's ref at its commit. `build` runs inside the catalog transaction, so a change
    /// another process made meanwhile (a variant's last failure, say) is seen, never lost.
    pub(crate) fn upsert_repo(
        &self,
        repo: &str,
        build: impl FnOnce(Option<RepoRecord>) -> RepoRecord,
    ) -> Result<RepoRecord> {
        let _gate = self.gate()?;
        let record = self.catalog.upsert_repo(repo, build)?;
        self.view
            .set_ref(&record.repo_id, &record.revision, &record.commit)?;
        Ok(record)
    }

    pub(crate) fn update_repo(
        &self,
        repo: &str,
        change: impl FnOnce(&mut RepoRecord),
    ) -> Result<()> {
        self.catalog.update_repo(repo, change)
    }

    /// Remember that `revision` of `repo` is `commit` (in the catalog and the view's `refs/`).
    pub(crate) fn set_ref(&self, repo: &str, revision: &str, commit: &str) -> Result<()> {
        let _gate = self.gate()?;
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

    /// The commit and record of `path` at `revision` (a ref, or a commit sha given as
    /// `commit_if_sha`) when it is cached and its blob is present.
    pub(crate) fn cached_file_at_revision(
        &self,
        repo: &str,
        revision: &str,
        path: &str,
        commit_if_sha: Option<&str>,
    ) -> Result<Option<(String, FileRecord)>> {
        Ok(self
            .catalog
            .file_at_revision(repo, revision, path, commit_if_sha)?
            .filter(|(_, rec)| self.blobs.exists(&rec.sha256)))
    }

    pub(crate) fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs.path(sha256)
    }

    /// A committed blob with this sha256, if the store has it.
    pub(crate) fn has_blob(&self, sha256: &str) -> Result<bool> {
        Ok(self.catalog.blob_size(sha256)?.is_some() && self.blobs.exists(sha256))
    }

    /// The sha256 of a committed blob whose git blob sha1 is `git_oid`, if the store has one.
    /// The blob holding content known by its sha256, or (for files the Hub lists without one)
    /// by its git blob sha1, when the store has it: such content needs no transfer.
    pub(crate) fn held_blob(
        &self,
        sha256: Option<&str>,
        git_oid: Option<&str>,
    ) -> Result<Option<String>> {
        match (sha256, git_oid) {
            (Some(sha), _) => Ok(self.has_blob(sha)?.then(|| sha.to_string())),
            (None, Some(oid)) => self.blob_for_git_oid(oid),
            (None, None) => Ok(None),
        }
    }

    pub(crate) fn blob_for_git_oid(&self, git_oid: &str) -> Result<Option<String>> {
        match self.catalog.sha256_for_git_oid(git_oid)? {
            Some(sha) if self.has_blob(&sha)? => Ok(Some(sha)),
            _ => Ok(None),
        }
    }

    /// Where a transfer of content `key` writes: the `tmp/` handle and the file's name in it.
    pub(crate) fn partial(&self, key: &str) -> (&Dir, String) {
        (self.blobs.tmp_dir(), BlobDir::partial_name(key))
    }

    /// The size of blob `sha256`'s file, when a regular file is at its name.
    pub(crate) fn blob_file_size(&self, sha256: &str) -> Option<u64> {
        self.blobs.size(sha256)
    }

    /// A committed blob's file, opened for reading: never through a link planted at its name,
    /// never blocking on a FIFO there.
    pub(crate) fn open_blob(&self, sha256: &str) -> std::io::Result<std::fs::File> {
        self.blobs.open_blob(sha256)
    }

    /// Index the Xet chunks committed blob `sha256` holds (see `chunks`).
    pub(crate) fn record_xet_chunks(
        &self,
        sha256: &str,
        chunks: &[crate::xet::Held],
    ) -> Result<()> {
        self.catalog.record_xet_chunks(sha256, chunks)
    }

    pub(crate) fn resume_log(&self, key: &str) -> PartialLog<'_> {
        PartialLog {
            catalog: &self.catalog,
            key: key.to_string(),
        }
    }

    /// Commit the verified download of content `key` (at [`Store::partial`]) as blob
    /// `record.sha256`, record it as `repo@commit:path`, and link it into the view. Returns the
    /// view path.
    pub(crate) fn commit_file(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        key: &str,
        record: &FileRecord,
    ) -> Result<PathBuf> {
        let _gate = self.gate()?;
        self.blobs
            .commit(&BlobDir::partial_name(key), &record.sha256)?;
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
        let _gate = self.gate()?;
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
            .link(repo, commit, path, &self.blobs, &record.sha256)
    }

    /// Taken by everything that deletes blob files, adds references to existing ones or changes
    /// the view, in every process, so a delete can never remove a blob between another
    /// caller's "it is there" and its record, nor a repo's view folder while another caller
    /// links into it.
    fn gate(&self) -> Result<lock::GateGuard<'_>> {
        // The lock file is shared with the parent after fork(), so it would not exclude it.
        self.catalog.ensure_opened_here()?;
        let guard = self.gate.enter()?;
        self.check_layout()?;
        Ok(guard)
    }

    /// Refuse to change anything once `blobs/`, `tmp/` or `hub/` is no longer the folder this
    /// store opened (moved away, or swapped for a link or another folder): the handles would
    /// still work, on a folder that is no longer the cache's.
    fn check_layout(&self) -> Result<()> {
        for dir in [
            self.blobs.blobs_dir(),
            self.blobs.tmp_dir(),
            self.view.dir(),
        ] {
            if !dir.still_at_path() {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "{} was moved or replaced (by a link or another folder) while this cache was open, \
                         so nothing was changed; put the cache's folder back there, then open the cache again",
                        dir.path().display()
                    ),
                ));
            }
        }
        Ok(())
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
        let _gate = self.gate()?;
        let Some(rec) = self.cached_file(repo, commit, path)? else {
            return Ok(None);
        };
        let view_path = self
            .view
            .link(repo, commit, path, &self.blobs, &rec.sha256)?;
        Ok(Some((view_path, rec)))
    }

    /// Forget `repo` and delete every blob only it referenced. Returns the bytes freed.
    pub(crate) fn remove_repo(&self, repo: &str) -> Result<u64> {
        let _gate = self.gate()?;
        let orphans = self.catalog.remove_repo(repo)?;
        let mut freed = 0;
        for sha in orphans {
            freed += self.blobs.size(&sha).unwrap_or(0);
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

    /// The recorded size of blob `sha256`, read under the gate (so no delete is half done), or
    /// None when it is not recorded (any more).
    pub(crate) fn recorded_blob(&self, sha256: &str) -> Result<Option<u64>> {
        let _gate = self.gate()?;
        self.catalog.blob_size(sha256)
    }

    /// Every recorded blob: (sha256, size).
    pub(crate) fn blob_sizes(&self) -> Result<Vec<(String, u64)>> {
        self.catalog.blob_sizes()
    }

    /// Forget one cached file and delete its blob if nothing else references it. Returns the
    /// bytes freed.
    pub(crate) fn remove_file(&self, repo: &str, commit: &str, path: &str) -> Result<u64> {
        let _gate = self.gate()?;
        self.remove_file_in_gate(repo, commit, path)
    }

    /// [`Store::remove_file`], for a caller already inside the gate.
    fn remove_file_in_gate(&self, repo: &str, commit: &str, path: &str) -> Result<u64> {
        let orphans = self.catalog.remove_file(repo, commit, path)?;
        self.view.remove_file(repo, commit, path)?;
        let mut freed = 0;
        for sha in orphans {
            freed += self.blobs.size(&sha).unwrap_or(0);
            self.blobs.remove(&sha)?;
        }
        Ok(freed)
    }

    /// Forget a damaged blob: its record, every file record naming it, their view entries and
    /// the blob file. Returns the files that must be fetched again, as `(repo, commit, path)`.
    pub(crate) fn drop_blob(&self, sha256: &str) -> Result<Vec<(String, String, String)>> {
        let _gate = self.gate()?;
        let holders = self.catalog.drop_blob(sha256)?;
        for (repo, commit, path) in &holders {
            self.view.remove_file(repo, commit, path)?;
        }
        self.blobs.remove(sha256)?;
        Ok(holders)
    }

    /// Bring a verified file from elsewhere (another cache) in as blob `record.sha256` and
    /// record it as `repo@commit:path`. `src` is the open file whose bytes were verified, found
    /// at `src_path`; it is linked or copied (see [`BlobDir::adopt`]), never written.
    pub(crate) fn adopt_file(
        &self,
        src: &std::fs::File,
        src_path: &Path,
        repo: &str,
        commit: &str,
        path: &str,
        record: &FileRecord,
    ) -> Result<blobs::Adopted> {
        let _gate = self.gate()?;
        let how = self.blobs.adopt(src, src_path, &record.sha256)?;
        self.add_file(repo, commit, path, record)?;
        Ok(how)
    }

    /// Delete blob files no record references (and blobs a rebuild kept that no file names),
    /// and the partial downloads no live process is running that nothing has written to for
    /// `stale_after`.
    pub(crate) fn sweep(&self, stale_after: std::time::Duration) -> Result<Swept> {
        let _gate = self.gate()?;
        let mut swept = Swept::default();
        for sha in self.catalog.drop_unreferenced_blobs()? {
            swept.blobs += 1;
            swept.blob_bytes += self.blobs.size(&sha).unwrap_or(0);
            self.blobs.remove(&sha)?;
        }
        let (files, bytes) = self.remove_unrecorded_blobs()?;
        swept.blobs += files;
        swept.blob_bytes += bytes;
        let partials = self.sweep_transfers(Some(stale_after))?;
        swept.partials = partials.partials;
        swept.partial_bytes = partials.partial_bytes;
        swept.partials_kept = partials.partials_kept;
        swept.partial_bytes_kept = partials.partial_bytes_kept;
        Ok(swept)
    }

    /// Clean up `tmp/` key by key, each under its transfer lock, so nothing a live transfer
    /// (of any process) uses is touched. A partial download without a resume record, a resume
    /// record without its file, and a lock alone are always removed; a resumable partial
    /// download only when `stale_after` is given and it has been idle that long. Callers hold
    /// the gate (which keeps adoptions, the other writers of `tmp/`, away).
    ///
    /// One loop on purpose: each key is examined and cleaned under its own transfer lock, held
    /// across the whole decision.
    fn sweep_transfers(&self, stale_after: Option<std::time::Duration>) -> Result<Swept> {
        let mut swept = Swept::default();
        let mut keys: std::collections::BTreeMap<String, Option<blobs::TmpFile>> = self
            .catalog
            .partial_keys()?
            .into_iter()
            .map(|k| (k, None))
            .collect();
        for file in self.blobs.tmp_files()? {
            if let Some(key) = file.name.strip_suffix(".part") {
                keys.insert(key.to_string(), Some(file));
            } else if let Some(key) = file.name.strip_suffix(".lock") {
                keys.entry(key.to_string()).or_insert(None);
            } else {
                // An adoption's copy that a crash interrupted (adoptions run under the gate).
                let _ = self.blobs.tmp_dir().remove_file(&file.name);
            }
        }
        let now = std::time::SystemTime::now();
        for (key, part) in keys {
            let tmp = self.blobs.tmp_dir();
            let Some(_claim) = lock::TransferLock::try_acquire(tmp, &BlobDir::lock_name(&key))?
            else {
                continue; // a live transfer
            };
            let recorded = self.catalog.partial(&key)?.is_some();
            let Some(file) = part else {
                // A lock alone, or a resume record whose file is gone.
                if recorded {
                    self.catalog.clear_partial(&key)?;
                }
                continue;
            };
            let remove = match stale_after {
                // On open: only what no record describes.
                None => !recorded,
                // A file written in the future (clock change) counts as fresh.
                Some(limit) => {
                    !recorded
                        || file.modified.map_or(std::time::Duration::MAX, |m| {
                            now.duration_since(m).unwrap_or_default()
                        }) >= limit
                }
            };
            if !remove {
                swept.partials_kept += 1;
                swept.partial_bytes_kept += file.len;
                continue;
            }
            self.catalog.clear_partial(&key)?;
            let name = BlobDir::partial_name(&key);
            match tmp.remove_file(&name) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return Err(Error::io("could not delete", &tmp.join(&name), e)),
            }
            swept.partials += 1;
            swept.partial_bytes += file.len;
        }
        Ok(swept)
    }

    /// Become the one transfer of content `key` across every process: take its lock, waiting
    /// while another process holds it (every `POLL` a look at `cancel`, and `progress` raised
    /// to the bytes the holder has recorded durable). The lock is released when the returned
    /// guard drops. After a wait the holder may have committed the content: look before
    /// fetching.
    ///
    /// # Errors
    /// `Cancelled` when `cancel` is set while waiting; I/O errors on the lock file.
    pub(crate) fn claim_transfer(
        &self,
        key: &str,
        cancel: &std::sync::atomic::AtomicBool,
        progress: &std::sync::atomic::AtomicU64,
    ) -> Result<TransferClaim> {
        use std::sync::atomic::Ordering;
        const POLL: std::time::Duration = std::time::Duration::from_millis(50);
        // Before a byte lands in tmp/: it must still be the cache's.
        self.check_layout()?;
        let name = BlobDir::lock_name(key);
        loop {
            if let Some(lock) = lock::TransferLock::try_acquire(self.blobs.tmp_dir(), &name)? {
                return Ok(TransferClaim { _lock: lock });
            }
            if cancel.load(Ordering::SeqCst) {
                return Err(Error::cancelled());
            }
            if let Some(held) = self.bytes_held(key)? {
                progress.fetch_max(held, Ordering::Relaxed);
            }
            std::thread::sleep(POLL);
        }
    }

    /// How much of `key`'s content another process's transfer holds: its durable ranges, or
    /// for a single stream (which keeps no range record, and writes its file in order) the
    /// length of its partial file. A ranged transfer records its (empty) state before its
    /// preallocated file could be seen, so a full-length file never reads as all held.
    fn bytes_held(&self, key: &str) -> Result<Option<u64>> {
        if let Some(state) = self.catalog.partial(key)? {
            return Ok(Some(state.durable_bytes()));
        }
        Ok(self
            .blobs
            .tmp_dir()
            .stat(BlobDir::partial_name(key))
            .ok()
            .flatten()
            .map(|m| m.len))
    }
}

/// In a forked child, let go of what the parent's stores hold: their catalog connections and
/// lock files (see `crate::fork`).
pub(crate) fn forget_inherited() {
    catalog::forget_inherited();
    lock::detach_inherited();
}

/// The right to transfer one content key, in every process, for as long as it lives.
pub(crate) struct TransferClaim {
    _lock: lock::TransferLock,
}

/// Open the catalog, creating or rebuilding it when it is missing, damaged or from the sled
/// releases. Callers hold the gate, so only one opener does this at a time.
fn open_catalog(
    root: &Path,
    blobs: &BlobDir,
    view: &view::SnapshotView,
) -> Result<(catalog::Catalog, Option<Rebuilt>)> {
    let path = root.join("catalog");
    if path.is_dir() {
        // The sled releases kept their catalog in a folder of that name; the blobs and the
        // view it described are all still here, and are what the rebuild reads.
        std::fs::remove_dir_all(&path)
            .map_err(|e| Error::io("could not remove the old (sled) catalog", &path, e))?;
    }
    if !path.exists() {
        // A write-ahead log left beside a deleted catalog belongs to that catalog: SQLite
        // would replay it into the new one.
        remove_sidecars(&path)?;
    }
    let catalog = match catalog::Catalog::open(&path) {
        Ok(c) => c,
        Err(catalog::OpenError::Other(e)) => return Err(e),
        Err(catalog::OpenError::Damaged(_)) => {
            set_aside_damaged(root, &path)?;
            open_new(&path)?
        }
    };
    // An empty catalog over a directory that holds blobs lost its records (deleted, damaged,
    // a sled folder, or a rebuild cut short): restore them rather than sweep the blobs away.
    // This first read of the tables is also where damage past the header shows.
    let catalog = match catalog.is_empty() {
        Ok(false) => return Ok((catalog, None)),
        Ok(true) => catalog,
        Err(e) if e.kind() == ErrorKind::Corrupt => {
            drop(catalog);
            set_aside_damaged(root, &path)?;
            open_new(&path)?
        }
        Err(e) => return Err(e),
    };
    let disk = rebuild::read(blobs, view.root())?;
    if disk.blobs.is_empty() {
        return Ok((catalog, None));
    }
    let rebuilt = catalog.restore(&disk.blobs, &disk.files, &disk.refs, &disk.git_oids)?;
    Ok((catalog, Some(rebuilt)))
}

/// The names the cache keeps at its top level. A link at any of them would lead the cache's
/// writes and deletes out of it: it is refused, never followed.
const TOP_LEVEL: [&str; 7] = [
    "blobs",
    "tmp",
    "hub",
    "gate.lock",
    "catalog",
    "catalog-wal",
    "catalog-shm",
];

/// Refuse a cache directory with a link at one of its own names, saying what to do. Nothing is
/// changed: the link and what it points to stay as they are.
fn refuse_planted_links(root: &Dir) -> Result<()> {
    for name in TOP_LEVEL {
        let path = root.join(name);
        let meta = root
            .stat(name)
            .map_err(|e| Error::io("could not read", &path, e))?;
        if meta.map(|m| m.kind) != Some(Kind::Link) {
            continue;
        }
        let target = std::fs::read_link(&path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        let fix = match name {
            "blobs" | "tmp" | "hub" => format!(
                "to keep what it holds, put the folder itself there instead                  (`rm {p} && mv {target} {p}`); to keep the whole cache on another disk, make the                  cache directory itself the link",
                p = path.display()
            ),
            "catalog" => format!(
                "remove the link (`rm {}`): the catalog is rebuilt from blobs/ and hub/ on the next                  open, with nothing downloaded again",
                path.display()
            ),
            _ => format!("remove the link (`rm {}`)", path.display()),
        };
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} is a symbolic link (to {target}); tabcache never follows links inside its cache                  directory, so the cache was not opened and nothing was changed. To open it, {fix}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Move a damaged catalog to `catalog.damaged` (replacing an older one), with its log gone.
fn set_aside_damaged(root: &Path, path: &Path) -> Result<()> {
    let aside = root.join("catalog.damaged");
    std::fs::rename(path, &aside)
        .map_err(|e| Error::io("could not move the damaged catalog to", &aside, e))?;
    remove_sidecars(path)
}

/// Open the catalog just created in place of a damaged one.
fn open_new(path: &Path) -> Result<catalog::Catalog> {
    catalog::Catalog::open(path).map_err(|e| match e {
        catalog::OpenError::Other(e) | catalog::OpenError::Damaged(e) => e,
    })
}

fn remove_sidecars(catalog: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = catalog.as_os_str().to_os_string();
        name.push(suffix);
        let sidecar = PathBuf::from(name);
        match std::fs::remove_file(&sidecar) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("could not remove", &sidecar, e)),
        }
    }
    Ok(())
}

impl Store {
    /// Delete every file in `blobs/` that no blob record names; returns (files, bytes).
    fn remove_unrecorded_blobs(&self) -> Result<(u64, u64)> {
        let recorded: std::collections::HashSet<String> = self
            .catalog
            .blob_sizes()?
            .into_iter()
            .map(|(sha, _)| sha)
            .collect();
        let (mut files, mut bytes) = (0, 0);
        for name in self.blobs.list()? {
            if !recorded.contains(&name) {
                bytes += self.blobs.size(&name).unwrap_or(0);
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
