//! [`ModelCache`]: the one facade that the C ABI, the Python package (through it) and the CLI
//! call. It turns requests into catalog look-ups, hub calls and flights, and owns the rules
//! that tie them together: which revision a read means, when content is already held (and so
//! transfers nothing), how progress and cancellation reach the caller.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::digest::{from_hex, is_hex_of_len, to_hex};
use crate::download::{self, Expected, TransferOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::flight::{Flight, Flights, Ticket};
use crate::hub::{HubClient, HubOptions};
use crate::manifest::{unix_now, ListedFile, Manifest, QuantLive, QuantState, RepoRecord};
use crate::progress::{
    reborrow, FileEvent, FileProgressFn, ProgressFn, Reporter, Watch, POLL_INTERVAL,
};
use crate::store::{FileRecord, Rebuilt, Store};
use crate::{quant, validate};

/// The revision a call means when it names none.
pub const DEFAULT_REVISION: &str = "main";

/// How a cache talks to the hub and moves bytes. `Default` reads the environment as
/// huggingface_hub does (see [`HubOptions`]).
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    pub hub: HubOptions,
    pub transfer: TransferOptions,
    /// How many files of one request are fetched at once (0 = default, 4).
    pub parallel_files: usize,
}

/// Cache statistics: the seed's `total_repos` and `total_size` (logical bytes of cached files)
/// plus what deduplication saves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub total_repos: u64,
    pub total_size: u64,
    pub total_files: u64,
    /// Bytes of blob files on disk: each distinct content once.
    pub disk_bytes: u64,
    /// `total_size - disk_bytes`: what storing shared content once saved.
    pub dedup_saved_bytes: u64,
    /// The last time the catalog was rebuilt from disk, and what that restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt: Option<Rebuilt>,
}

/// A model cache over one directory. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct ModelCache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    hub: HubClient,
    transfer: TransferOptions,
    parallel_files: usize,
    /// Shared with flight threads, which must be able to land after releasing the cache.
    flights: Arc<Flights>,
    /// Variants this process is downloading: (repo, quant) -> bytes held so far.
    active: Mutex<HashMap<(String, String), Arc<AtomicU64>>>,
}

/// Everything needed to fetch one file and check its bytes.
#[derive(Debug, Clone)]
struct FilePlan {
    repo: String,
    commit: String,
    path: String,
    size: Option<u64>,
    sha256: Option<String>,
    git_oid: Option<String>,
    /// Where to GET the bytes, when a resolve already told us.
    url: Option<String>,
}

impl FilePlan {
    /// The content's identity: the key of its flight and of its partial download.
    fn content_key(&self) -> String {
        match (&self.sha256, &self.git_oid) {
            (Some(sha), _) => format!("sha256-{sha}"),
            (None, Some(oid)) => format!("git-{oid}"),
            (None, None) => {
                use sha2::Digest;
                let id =
                    sha2::Sha256::digest(format!("{}\0{}\0{}", self.repo, self.commit, self.path));
                format!("path-{}", to_hex(&id))
            }
        }
    }

    fn expected(&self) -> Expected {
        if let Some(sha) = self.sha256.as_deref().and_then(from_hex::<32>) {
            Expected::Sha256(sha)
        } else if let Some(oid) = self.git_oid.as_deref().and_then(from_hex::<20>) {
            Expected::GitSha1(oid)
        } else {
            Expected::Unknown
        }
    }
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
        Ok(ModelCache {
            inner: Arc::new(Inner {
                store,
                hub,
                transfer: options.transfer,
                parallel_files: if options.parallel_files == 0 {
                    4
                } else {
                    options.parallel_files
                },
                flights: Arc::default(),
                active: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// What this open rebuilt, when the catalog had to be rebuilt from disk.
    pub fn rebuilt_on_open(&self) -> Option<Rebuilt> {
        self.inner.store.rebuilt_on_open()
    }

    /// The cache directory (absolute).
    pub fn cache_dir(&self) -> &Path {
        self.inner.store.root()
    }

    /// The snapshot view: a huggingface_hub cache directory (`HF_HUB_CACHE`) of our files.
    pub fn hub_cache_dir(&self) -> &Path {
        self.inner.store.view_root()
    }

    pub fn hub(&self) -> &HubClient {
        &self.inner.hub
    }

    /// Ask the hub for `repo_id` at `revision` (default `main`), classify its files into
    /// variants and store the manifest. Offline, answers from the catalog when it can.
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
        let record = self.scan_record_watched(&mut reporter, repo_id, revision)?;
        reporter.finish(record.files.len() as u64);
        Ok(self.manifest_of(&record))
    }

    /// [`scan_record`](Self::scan_record) on a helper thread while `reporter` beats.
    fn scan_record_watched(
        &self,
        reporter: &mut Reporter<'_>,
        repo_id: &str,
        revision: Option<&str>,
    ) -> Result<RepoRecord> {
        let (cache, repo, revision) = (
            self.clone(),
            repo_id.to_string(),
            revision.map(str::to_string),
        );
        reporter.run("scan", move |watch| {
            cache.scan_record(&cache.inner.hub.watched(watch), &repo, revision.as_deref())
        })
    }

    /// The work of `scan_repo`, returning the stored record itself (which another thread may
    /// delete from the catalog the moment it is stored). `hub` carries the caller's watch.
    fn scan_record(
        &self,
        hub: &HubClient,
        repo_id: &str,
        revision: Option<&str>,
    ) -> Result<RepoRecord> {
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        validate::revision(revision)?;
        let inner = &self.inner;
        if hub.is_offline() {
            return match inner.store.repo(repo_id)? {
                Some(rec) if rec.revision == revision || rec.commit == revision => Ok(rec),
                _ => Err(offline_error(&format!("scan {repo_id}"))),
            };
        }
        let info = hub.model_info(repo_id, revision)?;
        let listing = hub.list_files(repo_id, &info.sha)?;
        let classes = quant::classify(listing.iter().map(|f| f.path.as_str()));
        let files: BTreeMap<String, ListedFile> = listing
            .iter()
            .map(|f| {
                let listed = ListedFile {
                    size: f.size,
                    sha256: f.sha256.clone(),
                    git_oid: if f.sha256.is_none() {
                        Some(f.git_oid.clone())
                    } else {
                        None
                    },
                };
                (f.path.clone(), listed)
            })
            .collect();
        let variants = classes
            .variants
            .keys()
            .filter_map(|k| classes.files_for(k).map(|files| (k.clone(), files)))
            .collect();
        let now = unix_now();
        let record = inner.store.upsert_repo(repo_id, |old| {
            let same_commit = old.as_ref().is_some_and(|o| o.commit == info.sha);
            let quant_state = old
                .as_ref()
                .map(|o| {
                    o.quant_state
                        .iter()
                        .map(|(k, s)| {
                            // A failure belongs to the commit it happened at.
                            let error = if same_commit { s.error.clone() } else { None };
                            (
                                k.clone(),
                                QuantState {
                                    last_updated: s.last_updated,
                                    error,
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            RepoRecord {
                repo_id: repo_id.to_string(),
                task: info.pipeline_tag.clone(),
                created_at: old.as_ref().map_or(now, |o| o.created_at),
                updated_at: now,
                revision: revision.to_string(),
                commit: info.sha.clone(),
                files,
                variants,
                addons: classes.addons.clone(),
                quant_state,
            }
        })?;
        self.adopt_held_content(&record)?;
        Ok(record)
    }

    /// Record every listed file whose content the store already holds (from another revision,
    /// repo or variant) at this commit, so it reads as cached without a transfer.
    fn adopt_held_content(&self, record: &RepoRecord) -> Result<()> {
        let store = &self.inner.store;
        for (path, listed) in &record.files {
            if store
                .cached_file(&record.repo_id, &record.commit, path)?
                .is_some()
            {
                continue;
            }
            let sha = match (&listed.sha256, &listed.git_oid) {
                (Some(sha), _) if store.has_blob(sha)? => Some(sha.clone()),
                (None, Some(oid)) => store.blob_for_git_oid(oid)?,
                _ => None,
            };
            if let Some(sha256) = sha {
                let rec = FileRecord {
                    sha256,
                    size: listed.size,
                    git_oid: listed.git_oid.clone(),
                };
                store.reference_blob(&record.repo_id, &record.commit, path, &rec)?;
            }
        }
        Ok(())
    }

    /// The stored manifest of `repo_id`, without network; None when it was never scanned.
    pub fn get_manifest(&self, repo_id: &str) -> Result<Option<Manifest>> {
        validate::repo_id(repo_id)?;
        Ok(self
            .inner
            .store
            .repo(repo_id)?
            .map(|rec| self.manifest_of(&rec)))
    }

    fn manifest_of(&self, record: &RepoRecord) -> Manifest {
        let store = &self.inner.store;
        let active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        record.to_manifest(|key, files| {
            let mut live = QuantLive {
                all_held: true,
                ..QuantLive::default()
            };
            for f in files {
                match store.cached_file(&record.repo_id, &record.commit, f) {
                    Ok(Some(rec)) => live.held_bytes += rec.size,
                    _ => live.all_held = false,
                }
            }
            if let Some(loaded) = active.get(&(record.repo_id.clone(), key.to_string())) {
                live.downloading = true;
                live.held_bytes = live.held_bytes.max(loaded.load(Ordering::Relaxed));
            }
            live
        })
    }

    /// Download one file (default revision `main`) and return its snapshot-view path.
    /// `progress` gets `(loaded, total)` on this thread and may return false to cancel.
    pub fn download_file(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<PathBuf> {
        validate::repo_id(repo_id)?;
        validate::repo_path(path)?;
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        validate::revision(revision)?;
        let mut progress = progress;
        // A delete_model on another thread can remove the file between its landing and our
        // look-up; the caller asked for it to be cached, so fetch it again (a few times).
        for _ in 0..3 {
            let plan = match self.cached_commit(repo_id, revision, path)? {
                Some(commit) => {
                    match self.ready_path(repo_id, &commit, path, reborrow(&mut progress))? {
                        Some(view_path) => return Ok(view_path),
                        None => continue, // deleted by another thread since we looked
                    }
                }
                None => {
                    let mut planning = Reporter::new(reborrow(&mut progress), None);
                    self.plan_watched(&mut planning, repo_id, revision, &[path])?
                        .remove(0)
                }
            };
            let (repo, commit) = (plan.repo.clone(), plan.commit.clone());
            self.fetch_all(vec![plan], reborrow(&mut progress), None, None)?;
            if let Some(view_path) = self.file_path_at(&repo, &commit, path)? {
                return Ok(view_path);
            }
        }
        Err(Error::new(
            ErrorKind::Io,
            format!("{repo_id}: {path} was deleted by another caller each time it downloaded; retry once the deletes stop"),
        ))
    }

    /// Download several files of one repo (default revision `main`), a few at a time, and
    /// return their snapshot-view paths in the order asked. `progress` gets the overall
    /// `(loaded, total)` and may return false to cancel; `per_file` hears about each file.
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
        let plans = self.plan_watched(&mut planning, repo_id, revision, paths)?;
        let at: Vec<(String, String)> = plans
            .iter()
            .map(|p| (p.commit.clone(), p.path.clone()))
            .collect();
        self.fetch_all(plans, progress, None, per_file)?;
        at.iter()
            .map(
                |(commit, path)| match self.file_path_at(repo_id, commit, path)? {
                    Some(view_path) => Ok(view_path),
                    // Deleted by another thread since it landed: download_file fetches it again.
                    None => self.download_file(repo_id, path, Some(commit), None),
                },
            )
            .collect()
    }

    /// Plan each of `paths` (cached ones from the catalog, the others from the listing or a
    /// resolve) on a helper thread while `reporter` beats, so that a cancel ends a slow
    /// resolve or a retry wait at once.
    fn plan_watched(
        &self,
        reporter: &mut Reporter<'_>,
        repo_id: &str,
        revision: &str,
        paths: &[&str],
    ) -> Result<Vec<FilePlan>> {
        let (cache, repo, revision) = (self.clone(), repo_id.to_string(), revision.to_string());
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        reporter.run("resolve", move |watch| {
            let hub = cache.inner.hub.watched(watch);
            let mut plans = Vec::with_capacity(paths.len());
            for path in &paths {
                watch.check()?;
                // Cached files make no request, and their sizes count in the overall progress.
                plans.push(match cache.cached_record(&repo, path, Some(&revision))? {
                    Some((commit, rec)) => FilePlan {
                        repo: repo.clone(),
                        commit,
                        path: path.clone(),
                        size: Some(rec.size),
                        sha256: Some(rec.sha256),
                        git_oid: rec.git_oid,
                        url: None,
                    },
                    None => cache.plan_file(&hub, &repo, &revision, path)?,
                });
            }
            Ok(plans)
        })
    }

    /// The commit at which `path` is already cached for `revision`, if it is.
    fn cached_commit(&self, repo: &str, revision: &str, path: &str) -> Result<Option<String>> {
        Ok(self
            .commit_of(repo, revision)?
            .filter(|c| matches!(self.inner.store.cached_file(repo, c, path), Ok(Some(_)))))
    }

    fn ready_path(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<Option<PathBuf>> {
        let Some((view_path, rec)) = self.inner.store.cached_view(repo, commit, path)? else {
            return Ok(None);
        };
        Reporter::new(progress, Some(rec.size)).finish(rec.size);
        Ok(Some(view_path))
    }

    /// Download every file of variant `quant` (as listed by the last scan; scans first if the
    /// repo was never scanned or `revision` differs from the scanned one).
    pub fn download_quant(
        &self,
        repo_id: &str,
        quant: &str,
        revision: Option<&str>,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<()> {
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
    ) -> Result<()> {
        validate::repo_id(repo_id)?;
        let mut progress = progress;
        let record = match (self.inner.store.repo(repo_id)?, revision) {
            (Some(rec), None) => rec,
            (Some(rec), Some(r)) if rec.revision == r || rec.commit == r => rec,
            _ => {
                let mut scanning = Reporter::new(reborrow(&mut progress), None);
                self.scan_record_watched(&mut scanning, repo_id, revision)?
            }
        };
        let files = record.variant_files(quant)?;
        let plans: Vec<FilePlan> = files
            .iter()
            .map(|path| {
                let listed = record.files.get(path);
                FilePlan {
                    repo: repo_id.to_string(),
                    commit: record.commit.clone(),
                    path: path.clone(),
                    size: listed.map(|l| l.size),
                    sha256: listed.and_then(|l| l.sha256.clone()),
                    git_oid: listed.and_then(|l| l.git_oid.clone()),
                    url: None,
                }
            })
            .collect();
        let loaded = Arc::new(AtomicU64::new(0));
        let key = (repo_id.to_string(), quant.to_string());
        self.inner
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), loaded.clone());
        let result = self.fetch_all(plans, progress, Some(&loaded), per_file);
        self.inner
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let error = match &result {
            Err(e) if e.kind() != ErrorKind::Cancelled => Some(e.message().to_string()),
            _ => None,
        };
        self.inner.store.update_repo(repo_id, |rec| {
            let state = rec.quant_state.entry(quant.to_string()).or_default();
            state.last_updated = unix_now();
            state.error = error.clone();
        })?;
        result
    }

    /// Work out where `path` comes from and what its bytes must hash to: from the scanned
    /// listing when it covers this revision, else from a resolve (one HEAD request) by `hub`.
    fn plan_file(
        &self,
        hub: &HubClient,
        repo: &str,
        revision: &str,
        path: &str,
    ) -> Result<FilePlan> {
        if let Some(rec) = self.inner.store.repo(repo)? {
            if rec.revision == revision || rec.commit == revision {
                if let Some(listed) = rec.files.get(path) {
                    return Ok(FilePlan {
                        repo: repo.to_string(),
                        commit: rec.commit.clone(),
                        path: path.to_string(),
                        size: Some(listed.size),
                        sha256: listed.sha256.clone(),
                        git_oid: listed.git_oid.clone(),
                        url: None,
                    });
                }
            }
        }
        if hub.is_offline() {
            return Err(offline_error(&format!("download {path} from {repo}")));
        }
        let resolved = hub.resolve(repo, revision, path)?;
        // A server that names no commit (some mirrors) leaves model info to tell us.
        let commit = match resolved.commit {
            Some(c) => c,
            None => hub.model_info(repo, revision)?.sha,
        };
        self.inner.store.set_ref(repo, revision, &commit)?;
        let etag = resolved.etag.to_ascii_lowercase();
        Ok(FilePlan {
            repo: repo.to_string(),
            commit,
            path: path.to_string(),
            size: resolved.size,
            sha256: is_hex_of_len(&etag, 32).then(|| etag.clone()),
            git_oid: is_hex_of_len(&etag, 20).then(|| etag.clone()),
            url: Some(resolved.url),
        })
    }

    /// If the store already holds the content `plan` names, record it for the plan's path and
    /// return the record: no transfer needed.
    fn already_held(&self, plan: &FilePlan) -> Result<Option<FileRecord>> {
        let store = &self.inner.store;
        if let Some(rec) = store.cached_file(&plan.repo, &plan.commit, &plan.path)? {
            return Ok(Some(rec));
        }
        let sha = match (&plan.sha256, &plan.git_oid) {
            (Some(sha), _) if store.has_blob(sha)? => Some(sha.clone()),
            (None, Some(oid)) => store.blob_for_git_oid(oid)?,
            _ => None,
        };
        let Some(sha256) = sha else { return Ok(None) };
        // Gone since we looked (deleted by another thread): not held after all.
        let Some(size) = store.blob_file_size(&sha256) else {
            return Ok(None);
        };
        let rec = FileRecord {
            sha256,
            size,
            git_oid: plan.git_oid.clone(),
        };
        Ok(store
            .reference_blob(&plan.repo, &plan.commit, &plan.path, &rec)?
            .map(|_| rec))
    }

    /// Fetch every plan (several at once), reporting progress for the whole request on this
    /// thread. Content already held counts as loaded and is not transferred.
    fn fetch_all(
        &self,
        plans: Vec<FilePlan>,
        progress: Option<ProgressFn<'_>>,
        live: Option<&AtomicU64>,
        mut per_file: Option<FileProgressFn<'_>>,
    ) -> Result<()> {
        let mut tell = |event: FileEvent<'_>| {
            if let Some(f) = per_file.as_mut() {
                f(event)
            }
        };
        if self.inner.hub.is_offline() {
            for plan in &plans {
                if self.already_held(plan)?.is_none() {
                    return Err(offline_error(&format!(
                        "download {} from {}",
                        plan.path, plan.repo
                    )));
                }
            }
        }
        // Sizes from resolves are each at most 1 PiB, but many of them could still wrap a sum.
        // One file of unknown size makes the whole total unknown (reported as 0).
        let total = plans
            .iter()
            .try_fold(0u64, |sum, p| p.size.map(|size| sum.saturating_add(size)));
        let mut reporter = Reporter::new(progress, total);
        let mut loaded_done = 0u64;
        let mut queue = std::collections::VecDeque::new();
        for plan in plans {
            match self.already_held(&plan)? {
                Some(rec) => {
                    loaded_done += rec.size;
                    tell(FileEvent::Done {
                        path: &plan.path,
                        size: rec.size,
                    });
                }
                None => queue.push_back(plan),
            }
        }
        let mut running: Vec<(FilePlan, Ticket)> = Vec::new();
        loop {
            while running.len() < self.inner.parallel_files {
                let Some(plan) = queue.pop_front() else { break };
                let ticket = self.start_flight(&plan);
                running.push((plan, ticket));
            }
            if running.is_empty() {
                break;
            }
            let mut i = 0;
            while i < running.len() {
                let wait = if i == 0 {
                    POLL_INTERVAL
                } else {
                    std::time::Duration::ZERO
                };
                match running[i].1.wait(wait) {
                    None => i += 1,
                    Some(Ok(rec)) => {
                        let (plan, _) = running.swap_remove(i);
                        let store = &self.inner.store;
                        match store.reference_blob(&plan.repo, &plan.commit, &plan.path, &rec)? {
                            Some(_) => {
                                loaded_done += rec.size;
                                tell(FileEvent::Done {
                                    path: &plan.path,
                                    size: rec.size,
                                });
                            }
                            // Deleted by another thread since it landed: fetch it again.
                            None => queue.push_front(plan),
                        }
                    }
                    // Someone else's cancel stopped a flight we still want: start it again.
                    Some(Err(e)) if e.kind() == ErrorKind::Cancelled => {
                        let (plan, _) = running.swap_remove(i);
                        queue.push_front(plan);
                    }
                    Some(Err(e)) => {
                        return Err(
                            e.context(format!("{}: {}", running[i].0.repo, running[i].0.path))
                        )
                    }
                }
            }
            for (plan, ticket) in &running {
                tell(FileEvent::Progress {
                    path: &plan.path,
                    loaded: ticket.progress(),
                    total: plan.size.unwrap_or(0),
                });
            }
            let loaded = loaded_done + running.iter().map(|(_, t)| t.progress()).sum::<u64>();
            if let Some(live) = live {
                live.store(loaded, Ordering::Relaxed);
            }
            if !reporter.tick(loaded) {
                // Withdraw our interest; flights no one else wants stop.
                crate::flight::withdraw_all(running.into_iter().map(|(_, ticket)| ticket));
                return Err(Error::cancelled());
            }
        }
        reporter.finish(loaded_done);
        Ok(())
    }

    fn start_flight(&self, plan: &FilePlan) -> Ticket {
        let key = plan.content_key();
        self.inner.flights.join_or_start(&key, |flight| {
            let cache = self.clone();
            let flights = self.inner.flights.clone();
            let plan = plan.clone();
            let key = key.clone();
            std::thread::Builder::new()
                .name(format!("tabcache-fetch-{}", &key[..key.len().min(20)]))
                .spawn(move || {
                    let outcome = cache.run_flight(&plan, &key, &flight);
                    // Release the cache before anyone learns the outcome, so a caller that
                    // then closes its handle knows no thread of ours still uses the directory.
                    drop(cache);
                    flights.land(&key, &flight, outcome);
                })
                .expect("spawning a download thread");
        })
    }

    /// The body of a flight: become the one transfer of this content across processes, then
    /// resolve, transfer into `tmp/`, verify, commit, record.
    fn run_flight(&self, plan: &FilePlan, key: &str, flight: &Flight) -> Result<FileRecord> {
        let inner = &self.inner;
        // Another process may be fetching the same content: wait for it, then take what it
        // committed, or (if it died or gave up) resume from the ranges it made durable.
        let _claim = inner
            .store
            .claim_transfer(key, &flight.cancel, &flight.progress)?;
        if let Some(rec) = self.already_held(plan)? {
            return Ok(rec);
        }
        let url = match &plan.url {
            Some(url) => url.clone(),
            None => {
                // Watched by the flight's cancel: a retry wait ends when every requester left.
                let hub = inner.hub.watched(&Watch::on(flight.cancel.clone()));
                let resolved = hub.resolve(&plan.repo, &plan.commit, &plan.path)?;
                // Refused here, before a transfer allocates anything for the claimed size.
                if let (Some(listed), Some(claimed)) = (plan.size, resolved.size) {
                    if listed != claimed {
                        let server = resolved
                            .size_from
                            .unwrap_or_else(|| crate::hub::server_name(&resolved.url));
                        return Err(download::size_claim_refused(
                            &server,
                            format_args!(
                                "said {} has {claimed} bytes, its listing gives {listed}",
                                plan.path
                            ),
                        ));
                    }
                }
                resolved.url
            }
        };
        let source = inner.hub.file_source(&url);
        let (tmp_dir, tmp_name) = inner.store.partial(key);
        let log = inner.store.resume_log(key);
        let done = download::transfer_in(
            &source,
            tmp_dir,
            &tmp_name,
            plan.size,
            &plan.expected(),
            &inner.transfer,
            &flight.progress,
            &flight.cancel,
            &log,
        )?;
        let record = FileRecord {
            sha256: to_hex(&done.sha256),
            size: done.size,
            git_oid: plan.git_oid.clone(),
        };
        inner
            .store
            .commit_file(&plan.repo, &plan.commit, &plan.path, key, &record)?;
        use crate::download::ResumeLog;
        log.clear()?;
        Ok(record)
    }

    /// The commit that `revision` of `repo` means locally: a recorded ref, or the revision
    /// itself when it is a commit sha.
    fn commit_of(&self, repo: &str, revision: &str) -> Result<Option<String>> {
        if let Some(c) = self.inner.store.commit_for(repo, revision)? {
            return Ok(Some(c));
        }
        Ok(is_hex_of_len(revision, 20).then(|| revision.to_ascii_lowercase()))
    }

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
        // As commit_of: the recorded ref, else the revision itself when it is a commit sha.
        let sha = is_hex_of_len(revision, 20).then(|| revision.to_ascii_lowercase());
        self.inner
            .store
            .cached_file_at_revision(repo_id, revision, path, sha.as_deref())
    }

    /// Whether `path` of `repo_id` (default revision `main`) is cached. No network.
    pub fn has_file(&self, repo_id: &str, path: &str, revision: Option<&str>) -> Result<bool> {
        Ok(self.cached_record(repo_id, path, revision)?.is_some())
    }

    /// The whole cached file, or None when it is not cached. Prefer [`ModelCache::file_path`] or
    /// [`ModelCache::open_file`] for large files.
    pub fn get_file(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
    ) -> Result<Option<Vec<u8>>> {
        let Some((_, rec)) = self.cached_record(repo_id, path, revision)? else {
            return Ok(None);
        };
        let blob = self.inner.store.blob_path(&rec.sha256);
        let mut bytes = Vec::with_capacity(usize::try_from(rec.size).unwrap_or(0));
        use std::io::Read;
        self.inner
            .store
            .open_blob(&rec.sha256)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map(|_| Some(bytes))
            .map_err(|e| Error::io("could not read", &blob, e))
    }

    /// A read-only handle on the cached file, for streaming; None when it is not cached.
    pub fn open_file(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
    ) -> Result<Option<std::fs::File>> {
        let Some((_, rec)) = self.cached_record(repo_id, path, revision)? else {
            return Ok(None);
        };
        let blob = self.inner.store.blob_path(&rec.sha256);
        self.inner
            .store
            .open_blob(&rec.sha256)
            .map(Some)
            .map_err(|e| Error::io("could not open", &blob, e))
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

    fn file_path_at(&self, repo: &str, commit: &str, path: &str) -> Result<Option<PathBuf>> {
        Ok(self
            .inner
            .store
            .cached_view(repo, commit, path)?
            .map(|(view_path, _)| view_path))
    }

    /// Forget `repo_id` and delete every blob no other repo references. Returns bytes freed.
    pub fn delete_model(&self, repo_id: &str) -> Result<u64> {
        validate::repo_id(repo_id)?;
        self.inner.store.remove_repo(repo_id)
    }

    pub fn stats(&self) -> Result<Stats> {
        let t = self.inner.store.totals()?;
        Ok(Stats {
            total_repos: t.repos,
            total_size: t.logical_bytes,
            total_files: t.files,
            disk_bytes: t.blob_bytes,
            dedup_saved_bytes: t.logical_bytes.saturating_sub(t.blob_bytes),
            rebuilt: self.inner.store.last_rebuild()?,
        })
    }

    /// Every repo the catalog knows (scanned or holding files).
    pub fn repo_ids(&self) -> Result<Vec<String>> {
        self.inner.store.repo_ids()
    }

    /// The store beneath, for the maintenance operations (`crate::maintenance`).
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The content keys of the transfers this process has under way.
    pub(crate) fn transfers_in_flight(&self) -> Vec<String> {
        self.inner.flights.keys()
    }
}

fn offline_error(what: &str) -> Error {
    Error::new(
        ErrorKind::Offline,
        format!(
            "cannot {what}: offline mode is on (HF_HUB_OFFLINE or the offline option) and it is not cached; \
             go online once to fetch it"
        ),
    )
}
