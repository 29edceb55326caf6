//! [`ModelCache`]: the one facade that the C ABI, the Python package (through it) and the CLI
//! call, read top to bottom as the API: opening, scanning, downloading, reading what is cached.
//! It owns the rules that tie requests to the catalog: which revision a read means, when a
//! file counts as cached, how progress and cancellation reach the caller. The work behind the
//! calls lives with its subject: scanning and the manifest's live state in `scan`, planning
//! and scheduling transfers in `fetch`, moving bytes in `download`, the catalog and files in
//! `store`. `ModelCache` methods are also defined, with their subject, in
//! [`jobs`](crate::jobs) (`start_*`: the same calls on a worker thread) and
//! [`maintenance`](crate::maintenance) (verify and gc, importing a huggingface_hub cache,
//! listings and removal).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::is_hex_of_len;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::Engine;
use crate::hub::HubClient;
use crate::manifest::Manifest;
use crate::progress::{reborrow, FileProgressFn, ProgressFn, Reporter};
use crate::store::{FileRecord, Rebuilt, Store};
use crate::validate;

/// The revision a call means when it names none.
pub const DEFAULT_REVISION: &str = "main";

pub use crate::options::CacheOptions;

/// One file of a download as it sits in the cache: its repo path, its size and its
/// snapshot-view path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFile {
    pub path: String,
    pub size: u64,
    pub local_path: PathBuf,
}

/// A model cache over one directory. Cheap to clone; safe to share between threads.
///
/// # Example
///
/// A local hub (the test emulator) stands in for the HuggingFace Hub here; by default the
/// cache talks to the Hub itself, reading `HF_ENDPOINT` and `HF_TOKEN` as huggingface_hub
/// does.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let repos = tempfile::tempdir()?;
/// # hub_emulator::write_file(repos.path(), "org/tiny", "config.json", b"{}")?;
/// # hub_emulator::write_file(repos.path(), "org/tiny", "onnx/model_q4.onnx", b"onnx")?;
/// # let hub = hub_emulator::Emulator::start(repos.path())?;
/// use tabcache::{CacheOptions, ModelCache};
///
/// let mut options = CacheOptions::default();
/// options.hub.endpoint = Some(hub.url());
/// # options.hub.token = Some(String::new());
/// # options.hub.offline = Some(false);
/// let dir = tempfile::tempdir()?;
/// let cache = ModelCache::open(dir.path(), options)?;
///
/// let manifest = cache.scan_repo("org/tiny", None)?;
/// assert!(manifest.quants.contains_key("q4"));
/// let paths = cache.download_quant("org/tiny", "q4", None, None)?;
/// assert!(paths[0].ends_with("onnx/model_q4.onnx"));
/// assert!(cache.has_file("org/tiny", "config.json", None)?);
/// assert_eq!(cache.get_file("org/tiny", "onnx/model_q4.onnx", None)?, Some(b"onnx".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ModelCache {
    engine: Arc<Engine>,
}

impl ModelCache {
    /// Open (creating if needed) the cache at `db_path`. Any number of processes and handles
    /// may have one cache open at once. A catalog that is missing, damaged or from the
    /// sled-based releases is rebuilt from the blobs and the snapshot view
    /// ([`ModelCache::rebuilt_on_open`] tells).
    ///
    /// # Errors
    /// `InvalidArgument` for an empty path or a catalog written by a newer tabcache; `Io` and
    /// `DiskFull` when the directory cannot be created or written.
    pub fn open(db_path: impl AsRef<Path>, options: CacheOptions) -> Result<ModelCache> {
        let db_path = db_path.as_ref();
        if db_path.as_os_str().is_empty() {
            return Err(Error::invalid(
                "the cache path is empty; give a directory such as ./model_cache",
            ));
        }
        let hub = HubClient::new(options.hub)?;
        let store = Store::open(db_path)?;
        let cache = ModelCache {
            engine: Arc::new(Engine::new(
                store,
                hub,
                options.transfer,
                options.parallel_files,
            )),
        };
        if let Some(max_size) = options.max_size {
            if cache.max_size()? != Some(max_size) {
                cache.set_max_size(Some(max_size))?;
            }
        }
        Ok(cache)
    }

    /// What this open rebuilt, when the catalog had to be rebuilt from disk.
    pub fn rebuilt_on_open(&self) -> Option<Rebuilt> {
        self.engine.store.rebuilt_on_open()
    }

    /// The cache directory (absolute).
    pub fn cache_dir(&self) -> &Path {
        self.engine.store.root()
    }

    /// The snapshot view: a huggingface_hub cache directory (`HF_HUB_CACHE`) of our files.
    pub fn hub_cache_dir(&self) -> &Path {
        self.engine.store.view_root()
    }

    pub fn hub(&self) -> &HubClient {
        &self.engine.hub
    }

    /// Notes about transfers since the last call, oldest first: things worth telling a user
    /// that are not failures (a Xet-backed file fetched through the bridge, and why).
    pub fn take_notes(&self) -> Vec<String> {
        self.engine.take_notes()
    }

    /// Ask the hub for `repo_id` at `revision` (default `main`), classify its files into
    /// variants and store the manifest. Offline, answers from the catalog when it can.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed repo id or revision (before any request);
    /// `RepoNotFound`, `RevisionNotFound`, `GatedRepo`, `Unauthorized`, `RateLimited`, `Network`, `Http` as the hub answered; `Offline` when offline and never scanned; `Io` from the catalog.
    pub fn scan_repo(&self, repo_id: &str, revision: Option<&str>) -> Result<Manifest> {
        self.scan_repo_with_progress(repo_id, revision, None)
    }

    /// [`scan_repo`](Self::scan_repo), reporting `(files listed, 0)` as the pages of the
    /// listing arrive and `(n, n)` at the end; `progress` may return false to cancel (the scan
    /// then returns `Cancelled` at once, even in the middle of a request or a retry wait).
    pub fn scan_repo_with_progress(
        &self,
        repo_id: &str,
        revision: Option<&str>,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<Manifest> {
        validate::repo_id(repo_id)?;
        let mut reporter = Reporter::new(progress, None);
        let record = self.engine.scan_watched(&mut reporter, repo_id, revision)?;
        reporter.finish(record.files.len() as u64);
        Ok(self.engine.manifest_of(&record))
    }

    /// The stored manifest of `repo_id`, without network; None when it was never scanned.
    pub fn get_manifest(&self, repo_id: &str) -> Result<Option<Manifest>> {
        validate::repo_id(repo_id)?;
        Ok(self
            .engine
            .store
            .repo(repo_id)?
            .map(|rec| self.engine.manifest_of(&rec)))
    }

    /// Download one file (default revision `main`) and return its snapshot-view path. Nothing
    /// is transferred when its content is already held (under any repo or revision).
    /// `progress` gets `(loaded, total)` on this thread, at least every 200 ms, and may return
    /// false to cancel.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed argument (before any request); `EntryNotFound` and
    /// `RepoNotFound`, `RevisionNotFound`, `GatedRepo`, `Unauthorized`, `RateLimited`,
    /// `Network`, `Http` as the hub answered; `Corrupt` when the bytes do not match their hash
    /// (nothing is committed); `Cancelled` (partial data kept: the next call resumes);
    /// `Offline`; `Io`; `DiskFull`.
    pub fn download_file(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<PathBuf> {
        Ok(self.download_held(repo_id, path, revision, progress)?.0)
    }

    /// The work of [`download_file`](Self::download_file): the file's view path and size once
    /// it is cached.
    fn download_held(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<(PathBuf, u64)> {
        validate::repo_id(repo_id)?;
        validate::repo_path(path)?;
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        validate::revision(revision)?;
        let mut progress = progress;
        // A delete_model on another thread can remove the file between its landing and our
        // look-up; the caller asked for it to be cached, so fetch it again (a few times).
        for _ in 0..REFETCHES {
            let plan = match self.cached_commit(repo_id, revision, path)? {
                Some(commit) => {
                    match self.ready_path(repo_id, &commit, path, reborrow(&mut progress))? {
                        Some(held) => return Ok(held),
                        None => continue, // deleted by another thread since we looked
                    }
                }
                None => {
                    let mut planning = Reporter::new(reborrow(&mut progress), None);
                    self.engine
                        .plan_watched(&mut planning, repo_id, revision, &[path])?
                        .remove(0)
                }
            };
            let (repo, commit) = (plan.repo.clone(), plan.commit.clone());
            self.engine
                .fetch_all(vec![plan], reborrow(&mut progress), None, None)?;
            if let Some((view_path, rec)) = self.engine.store.cached_view(&repo, &commit, path)? {
                return Ok((view_path, rec.size));
            }
        }
        Err(deleted_each_time(repo_id, path))
    }

    /// Download several files of one repo (default revision `main`), a few at a time, and
    /// return their snapshot-view paths in the order asked. `progress` gets the overall
    /// `(loaded, total)` and may return false to cancel; `per_file` hears about each file.
    ///
    /// # Errors
    /// As [`download_file`](Self::download_file), for the first file that failed (the message
    /// names it); every path is validated before the first request. Files that landed before a
    /// failure or a cancel stay cached.
    pub fn download_files(
        &self,
        repo_id: &str,
        paths: &[&str],
        revision: Option<&str>,
        progress: Option<ProgressFn<'_>>,
        per_file: Option<FileProgressFn<'_>>,
    ) -> Result<Vec<PathBuf>> {
        validate::repo_id(repo_id)?;
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        validate::revision(revision)?;
        // Every path is checked before the first request is made for any of them.
        for path in paths {
            validate::repo_path(path)?;
        }
        let mut progress = progress;
        let mut planning = Reporter::new(reborrow(&mut progress), None);
        let plans = self
            .engine
            .plan_watched(&mut planning, repo_id, revision, paths)?;
        let at: Vec<(String, String)> = plans
            .iter()
            .map(|p| (p.commit.clone(), p.path.clone()))
            .collect();
        self.engine.fetch_all(plans, progress, None, per_file)?;
        self.view_paths(repo_id, &at)
    }

    /// The commit at which `path` is already cached for `revision`, if it is.
    fn cached_commit(&self, repo: &str, revision: &str, path: &str) -> Result<Option<String>> {
        Ok(self
            .commit_of(repo, revision)?
            .filter(|c| matches!(self.engine.store.cached_file(repo, c, path), Ok(Some(_)))))
    }

    fn ready_path(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<Option<(PathBuf, u64)>> {
        let Some((view_path, rec)) = self.engine.store.cached_view(repo, commit, path)? else {
            return Ok(None);
        };
        Reporter::new(progress, Some(rec.size)).finish(rec.size);
        Ok(Some((view_path, rec.size)))
    }

    /// Download every file of variant `quant` (as listed by the last scan; scans first if the
    /// repo was never scanned or `revision` differs from the scanned one), and return the
    /// snapshot-view paths of its files, in the variant's order.
    ///
    /// # Errors
    /// `EntryNotFound` when the repo has no such variant (the message lists them); otherwise
    /// as [`scan_repo`](Self::scan_repo) and [`download_file`](Self::download_file). A failure
    /// other than a cancel is recorded in the manifest (status `failed`) until a download of
    /// the variant succeeds.
    pub fn download_quant(
        &self,
        repo_id: &str,
        quant: &str,
        revision: Option<&str>,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<Vec<PathBuf>> {
        self.download_quant_per_file(repo_id, quant, revision, progress, None)
    }

    /// [`download_quant`](Self::download_quant), also telling `per_file` about each file.
    pub fn download_quant_per_file(
        &self,
        repo_id: &str,
        quant: &str,
        revision: Option<&str>,
        progress: Option<ProgressFn<'_>>,
        per_file: Option<FileProgressFn<'_>>,
    ) -> Result<Vec<PathBuf>> {
        let files =
            self.download_request(repo_id, Some(quant), &[], revision, progress, per_file)?;
        Ok(files.into_iter().map(|f| f.local_path).collect())
    }

    /// A variant and other files of one repo as one request (`tabcache download REPO QUANT
    /// --file PATH`): the files of variant `quant` as
    /// [`download_quant_per_file`](Self::download_quant_per_file) fetches them (at the scanned
    /// commit, recorded as that variant's download), and each of `files` not among them at
    /// the same commit; with no variant, `files` at `revision` (default `main`). They are
    /// fetched together, each once, and `progress` gets one `(loaded, total)` over all of
    /// them. Returns the variant's files in its order, then the others in the order given.
    ///
    /// # Errors
    /// As [`download_quant`](Self::download_quant) for the variant (its failure is recorded
    /// the same way) and [`download_files`](Self::download_files) for the others; every path
    /// is validated before the first request. Files that landed before a failure or a cancel
    /// stay cached.
    pub fn download_request(
        &self,
        repo_id: &str,
        quant: Option<&str>,
        files: &[&str],
        revision: Option<&str>,
        progress: Option<ProgressFn<'_>>,
        per_file: Option<FileProgressFn<'_>>,
    ) -> Result<Vec<CachedFile>> {
        validate::repo_id(repo_id)?;
        if let Some(revision) = revision {
            validate::revision(revision)?;
        }
        // Every path is checked before the first request is made for any of them.
        for path in files {
            validate::repo_path(path)?;
        }
        let mut progress = progress;
        let (plans, variant_only) =
            self.engine
                .plan_request(repo_id, quant, files, revision, &mut progress)?;
        let at: Vec<(String, String)> = plans
            .iter()
            .map(|p| (p.commit.clone(), p.path.clone()))
            .collect();
        match quant {
            // The bytes of other files must not count as the variant's while it downloads.
            Some(quant) => self.engine.fetch_variant(
                repo_id,
                quant,
                plans,
                variant_only,
                progress,
                per_file,
            )?,
            None => self.engine.fetch_all(plans, progress, None, per_file)?,
        }
        self.cached_files(repo_id, &at)
    }

    /// The snapshot-view paths of files just fetched, `(commit, path)` each, in order.
    fn view_paths(&self, repo_id: &str, at: &[(String, String)]) -> Result<Vec<PathBuf>> {
        let files = self.cached_files(repo_id, at)?;
        Ok(files.into_iter().map(|f| f.local_path).collect())
    }

    /// Files just fetched, `(commit, path)` each, as they sit in the cache, in order. One that
    /// another thread deleted since it landed is fetched again.
    fn cached_files(&self, repo_id: &str, at: &[(String, String)]) -> Result<Vec<CachedFile>> {
        let store = &self.engine.store;
        at.iter()
            .map(|(commit, path)| {
                let (local_path, size) = match store.cached_view(repo_id, commit, path)? {
                    Some((local_path, rec)) => (local_path, rec.size),
                    None => self.download_held(repo_id, path, Some(commit), None)?,
                };
                Ok(CachedFile {
                    path: path.clone(),
                    size,
                    local_path,
                })
            })
            .collect()
    }

    /// The commit that `revision` of `repo` means locally: a recorded ref, or the revision
    /// itself when it is a commit sha.
    pub(crate) fn commit_of(&self, repo: &str, revision: &str) -> Result<Option<String>> {
        if let Some(c) = self.engine.store.commit_for(repo, revision)? {
            return Ok(Some(c));
        }
        Ok(is_hex_of_len(revision, 20).then(|| revision.to_ascii_lowercase()))
    }

    /// The cached file the caller asks for, which counts as a use of it (for the budget's
    /// least-recently-used order): every look-up of the API (`has_file` answering true,
    /// `get_file`, `open_file`, `file_path`) comes through here.
    fn cached_record(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
    ) -> Result<Option<(String, FileRecord)>> {
        validate::repo_id(repo_id)?;
        validate::repo_path(path)?;
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        validate::revision(revision)?;
        let found = self.engine.cached_record(repo_id, path, revision)?;
        if let Some((commit, _)) = &found {
            self.engine.store.note_use(repo_id, commit, path);
        }
        Ok(found)
    }

    /// Whether `path` of `repo_id` (default revision `main`) is cached. No network.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed argument; `Io` from the catalog.
    pub fn has_file(&self, repo_id: &str, path: &str, revision: Option<&str>) -> Result<bool> {
        Ok(self.cached_record(repo_id, path, revision)?.is_some())
    }

    /// The whole cached file, or None when it is not cached. Prefer [`ModelCache::file_path`] or
    /// [`ModelCache::open_file`] for large files.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed argument; `Io` when the blob cannot be read.
    pub fn get_file(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
    ) -> Result<Option<Vec<u8>>> {
        let Some((rec, mut file)) = self.open_cached(repo_id, path, revision)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(rec.size).unwrap_or(0));
        use std::io::Read;
        file.read_to_end(&mut bytes)
            .map(|_| Some(bytes))
            .map_err(|e| {
                Error::io(
                    "could not read",
                    &self.engine.store.blob_path(&rec.sha256),
                    e,
                )
            })
    }

    /// A read-only handle on the cached file, for streaming; None when it is not cached.
    pub fn open_file(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
    ) -> Result<Option<std::fs::File>> {
        Ok(self
            .open_cached(repo_id, path, revision)?
            .map(|(_, file)| file))
    }

    /// The cached file's record and its blob, opened (and share-locked, so no eviction or gc
    /// removes it while it is read). Between the catalog look-up and the open, another process
    /// may delete the file (`delete_model`, `gc`, eviction) or replace it: a blob found gone is
    /// looked up again, and a file whose blob stays gone is not cached (as the look-up itself
    /// treats a missing blob), not an I/O error.
    fn open_cached(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
    ) -> Result<Option<(FileRecord, std::fs::File)>> {
        const LOOKS: usize = 3;
        for _ in 0..LOOKS {
            let Some((_, rec)) = self.cached_record(repo_id, path, revision)? else {
                return Ok(None);
            };
            match self.engine.store.open_blob(&rec.sha256) {
                Ok(file) => return Ok(Some((rec, file))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let blob = self.engine.store.blob_path(&rec.sha256);
                    return Err(Error::io("could not open", &blob, e));
                }
            }
        }
        Ok(None)
    }

    /// The snapshot-view path of the cached file (its repo's name, beside its siblings, for
    /// mmap, split GGUF shards and ONNX external data); None when it is not cached.
    pub fn file_path(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
    ) -> Result<Option<PathBuf>> {
        let Some((commit, _)) = self.cached_record(repo_id, path, revision)? else {
            return Ok(None);
        };
        self.file_path_at(repo_id, &commit, path)
    }

    /// The snapshot folder of `repo_id` at `revision` (default `main`) in the view, where its
    /// cached files sit under their repo paths (`hub/models--org--name/snapshots/<commit>`:
    /// what huggingface_hub's `snapshot_download` returns); None when nothing of it is cached.
    pub fn snapshot_dir(&self, repo_id: &str, revision: Option<&str>) -> Result<Option<PathBuf>> {
        validate::repo_id(repo_id)?;
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        validate::revision(revision)?;
        let Some(commit) = self.commit_of(repo_id, revision)? else {
            return Ok(None);
        };
        let dir = self.engine.store.snapshot_dir(repo_id, &commit);
        Ok(dir.is_dir().then_some(dir))
    }

    fn file_path_at(&self, repo: &str, commit: &str, path: &str) -> Result<Option<PathBuf>> {
        Ok(self
            .engine
            .store
            .cached_view(repo, commit, path)?
            .map(|(view_path, _)| view_path))
    }

    /// Forget `repo_id` and delete every blob no other repo references. Returns bytes freed
    /// (0 when the repo was not cached). The seed's shape of
    /// [`remove_repo`](Self::remove_repo), which reports the files too.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed repo id; `Io` when a file cannot be removed.
    pub fn delete_model(&self, repo_id: &str) -> Result<u64> {
        match self.remove_repo(repo_id) {
            Ok(removed) => Ok(removed.bytes_freed),
            Err(e) if e.kind() == ErrorKind::RepoNotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The store beneath, for the maintenance operations (`crate::maintenance`).
    pub(crate) fn store(&self) -> &Store {
        &self.engine.store
    }

    /// The transfer machinery (plans, flights), for the server's pull-through: it fetches
    /// exactly as downloads do, sharing their flights.
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Wait (at most `timeout`) until no transfer of this process is under way, so that after a
    /// cancel every partial download has saved its resume state. Returns whether it is idle.
    pub fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.transfers_in_flight().is_empty() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The content keys of the transfers this process has under way.
    pub(crate) fn transfers_in_flight(&self) -> Vec<String> {
        self.engine.transfers_in_flight()
    }
}

/// How many times a file that another caller deletes as soon as it lands is fetched again
/// before the download gives up (a storm of deletes of the same repo).
const REFETCHES: usize = 8;

/// A download that another caller's deletes kept undoing.
fn deleted_each_time(repo_id: &str, path: &str) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("{repo_id}: {path} was deleted by another caller each time it downloaded; retry once the deletes stop"),
    )
}
