//! Planning and running the transfers of one request, for [`ModelCache`](crate::ModelCache):
//! which bytes each requested file needs ([`FilePlan`], from the scanned listing, the catalog
//! or a resolve), whether the store already holds them (then nothing moves), and the scheduler
//! that runs a few flights at once while the calling thread reports progress and watches for
//! a cancel. [`Engine`] is the part of a cache that transfers need: the store, the hub client,
//! the transfer settings and the flights, shared by a cache's clones and its flight threads.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cache::DEFAULT_REVISION;
use crate::digest::{from_hex, is_hex_of_len, to_hex};
use crate::download::{self, Expected, TransferOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::flight::{Flight, Flights, Ticket};
use crate::hub::{HubClient, ResolvedFile};
use crate::manifest::{unix_now, ListedFile};
use crate::progress::{
    reborrow, FileEvent, FileProgressFn, ProgressFn, Reporter, Watch, POLL_INTERVAL,
};
use crate::store::{FileRecord, Store};

/// Everything needed to fetch one file and check its bytes.
#[derive(Debug, Clone)]
pub(crate) struct FilePlan {
    pub(crate) repo: String,
    pub(crate) commit: String,
    pub(crate) path: String,
    pub(crate) size: Option<u64>,
    pub(crate) sha256: Option<String>,
    pub(crate) git_oid: Option<String>,
    /// Where to GET the bytes, when a resolve already told us.
    url: Option<String>,
    /// The Xet file hash of a Xet-backed file: it is fetched natively (see `crate::xet`).
    pub(crate) xet_hash: Option<String>,
}

impl FilePlan {
    /// A file as the scanned listing of `commit` gives it (`None`: the listing lacks it, so
    /// nothing is known of its bytes until the flight resolves it).
    pub(crate) fn listed(
        repo: &str,
        commit: &str,
        path: &str,
        listed: Option<&ListedFile>,
    ) -> FilePlan {
        FilePlan {
            repo: repo.to_string(),
            commit: commit.to_string(),
            path: path.to_string(),
            size: listed.map(|l| l.size),
            sha256: listed.and_then(|l| l.sha256.clone()),
            git_oid: listed.and_then(|l| l.git_oid.clone()),
            url: None,
            xet_hash: listed.and_then(|l| l.xet_hash.clone()),
        }
    }

    /// A file the catalog already holds at `commit`: no request is made for it.
    pub(crate) fn cached(repo: &str, commit: String, path: &str, rec: FileRecord) -> FilePlan {
        FilePlan {
            repo: repo.to_string(),
            commit,
            path: path.to_string(),
            size: Some(rec.size),
            sha256: Some(rec.sha256),
            git_oid: rec.git_oid,
            url: None,
            xet_hash: None,
        }
    }

    /// A file as a resolve described it: the ETag is its sha256 (LFS) or git blob sha1.
    pub(crate) fn resolved(
        repo: &str,
        commit: String,
        path: &str,
        resolved: ResolvedFile,
    ) -> FilePlan {
        let etag = resolved.etag.to_ascii_lowercase();
        FilePlan {
            repo: repo.to_string(),
            commit,
            path: path.to_string(),
            size: resolved.size,
            sha256: is_hex_of_len(&etag, 32).then(|| etag.clone()),
            git_oid: is_hex_of_len(&etag, 20).then(|| etag.clone()),
            url: Some(resolved.url),
            xet_hash: resolved.xet_hash,
        }
    }

    /// The content's identity: the key of its flight and of its partial download.
    pub(crate) fn content_key(&self) -> String {
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

/// What transfers need of a cache; see the module docs.
pub(crate) struct Engine {
    pub(crate) store: Store,
    pub(crate) hub: HubClient,
    transfer: TransferOptions,
    /// How many files of one request are fetched at once.
    parallel_files: usize,
    /// Shared with flight threads, which must be able to land after releasing the engine.
    flights: Arc<Flights>,
    /// Variants this process is downloading: (repo, quant) -> bytes held so far.
    pub(crate) downloading: Mutex<HashMap<(String, String), Arc<AtomicU64>>>,
    /// Notes for the caller (e.g. a Xet file fetched through the bridge, and why).
    notes: Mutex<Vec<String>>,
}

impl Engine {
    pub(crate) fn new(
        store: Store,
        hub: HubClient,
        transfer: TransferOptions,
        parallel_files: usize,
    ) -> Engine {
        Engine {
            store,
            hub,
            transfer,
            parallel_files: if parallel_files == 0 {
                4
            } else {
                parallel_files
            },
            flights: Arc::default(),
            downloading: Mutex::default(),
            notes: Mutex::default(),
        }
    }

    /// The content keys of the transfers this process has under way.
    pub(crate) fn transfers_in_flight(&self) -> Vec<String> {
        self.flights.keys()
    }

    /// The plans of a request for variant `quant` (at the scanned commit; scanning first when
    /// the repo was never scanned or `revision` differs) and each of `files` not among its
    /// files (at the same commit; with no variant, at `revision`), each once: the variant's
    /// files in its order, then the others in the order given. Also whether the plans are the
    /// variant's files alone. Arguments are the caller's to validate.
    pub(crate) fn plan_request(
        self: &Arc<Self>,
        repo_id: &str,
        quant: Option<&str>,
        files: &[&str],
        revision: Option<&str>,
        progress: &mut Option<ProgressFn<'_>>,
    ) -> Result<(Vec<FilePlan>, bool)> {
        let mut plans: Vec<FilePlan> = Vec::new();
        let mut others_at = revision.unwrap_or(DEFAULT_REVISION).to_string();
        if let Some(quant) = quant {
            let record = match (self.store.repo(repo_id)?, revision) {
                (Some(rec), None) => rec,
                (Some(rec), Some(r)) if rec.revision == r || rec.commit == r => rec,
                _ => {
                    // The scan counts files, not bytes: the caller's byte progress only beats
                    // at (0, 0) meanwhile (still able to cancel), so it stays monotonic in one
                    // unit.
                    let listening = progress.is_some();
                    let mut beat = |_: u64, _: u64| progress.as_mut().is_none_or(|p| p(0, 0));
                    let mut scanning =
                        Reporter::new(listening.then_some(&mut beat as ProgressFn<'_>), None);
                    self.scan_watched(&mut scanning, repo_id, revision)?
                }
            };
            plans = record
                .variant_files(quant)?
                .iter()
                .map(|path| FilePlan::listed(repo_id, &record.commit, path, record.files.get(path)))
                .collect();
            others_at = record.commit;
        }
        let mut others: Vec<&str> = Vec::new();
        for path in files {
            if !plans.iter().any(|p| p.path == *path) && !others.contains(path) {
                others.push(path);
            }
        }
        if !others.is_empty() {
            let mut planning = Reporter::new(reborrow(progress), None);
            plans.extend(self.plan_watched(&mut planning, repo_id, &others_at, &others)?);
        }
        Ok((plans, others.is_empty()))
    }

    /// The commit and record of `path` cached for `revision` (a ref, or a commit sha), if it
    /// is. Arguments are the caller's to validate.
    pub(crate) fn cached_record(
        &self,
        repo_id: &str,
        path: &str,
        revision: &str,
    ) -> Result<Option<(String, FileRecord)>> {
        // The recorded ref, else the revision itself when it is a commit sha.
        let sha = is_hex_of_len(revision, 20).then(|| revision.to_ascii_lowercase());
        self.store
            .cached_file_at_revision(repo_id, revision, path, sha.as_deref())
    }

    /// Plan each of `paths` (cached ones from the catalog, the others from the listing or a
    /// resolve) on a helper thread while `reporter` beats, so that a cancel ends a slow
    /// resolve or a retry wait at once.
    pub(crate) fn plan_watched(
        self: &Arc<Self>,
        reporter: &mut Reporter<'_>,
        repo_id: &str,
        revision: &str,
        paths: &[&str],
    ) -> Result<Vec<FilePlan>> {
        let (engine, repo, revision) = (self.clone(), repo_id.to_string(), revision.to_string());
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        reporter.run("resolve", move |watch| {
            let hub = engine.hub.watched(watch);
            let mut plans = Vec::with_capacity(paths.len());
            for path in &paths {
                watch.check()?;
                // Cached files make no request, and their sizes count in the overall progress.
                plans.push(match engine.cached_record(&repo, path, &revision)? {
                    Some((commit, rec)) => FilePlan::cached(&repo, commit, path, rec),
                    None => engine.plan_file(&hub, &repo, &revision, path)?,
                });
            }
            Ok(plans)
        })
    }

    /// Work out where `path` comes from and what its bytes must hash to: from the scanned
    /// listing when it covers this revision, else from a resolve (one HEAD request) by `hub`.
    pub(crate) fn plan_file(
        &self,
        hub: &HubClient,
        repo: &str,
        revision: &str,
        path: &str,
    ) -> Result<FilePlan> {
        if let Some(rec) = self.store.repo(repo)? {
            if rec.revision == revision || rec.commit == revision {
                if let Some(listed) = rec.files.get(path) {
                    return Ok(FilePlan::listed(repo, &rec.commit, path, Some(listed)));
                }
            }
        }
        if hub.is_offline() {
            return Err(offline_error(&format!("download {path} from {repo}")));
        }
        let mut resolved = hub.resolve(repo, revision, path)?;
        // A server that names no commit (some mirrors) leaves model info to tell us.
        let commit = match resolved.commit.take() {
            Some(c) => c,
            None => hub.model_info(repo, revision)?.sha,
        };
        self.store.set_ref(repo, revision, &commit)?;
        Ok(FilePlan::resolved(repo, commit, path, resolved))
    }

    /// If the store already holds the content `plan` names, record it for the plan's path and
    /// return the record: no transfer needed.
    pub(crate) fn already_held(&self, plan: &FilePlan) -> Result<Option<FileRecord>> {
        let store = &self.store;
        if let Some(rec) = store.cached_file(&plan.repo, &plan.commit, &plan.path)? {
            return Ok(Some(rec));
        }
        let Some(sha256) = store.held_blob(plan.sha256.as_deref(), plan.git_oid.as_deref())? else {
            return Ok(None);
        };
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
    /// thread, which only waits: flights do the work (see [`Schedule`]). Content already held
    /// counts as loaded and is not transferred.
    pub(crate) fn fetch_all(
        self: &Arc<Self>,
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
        if self.hub.is_offline() {
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
        // The budget refuses what cannot fit before a byte moves, and keeps this request's
        // files when it evicts to make room for them afterwards.
        let admitted = self.admit(&plans)?;
        let mut schedule = Schedule::new(self, plans, &mut tell)?;
        while schedule.start_queued() {
            schedule.collect_landed(&mut tell)?;
            let loaded = schedule.loaded(&mut tell);
            if let Some(live) = live {
                live.store(loaded, Ordering::Relaxed);
            }
            if !reporter.tick(loaded) {
                schedule.withdraw();
                return Err(Error::cancelled());
            }
        }
        reporter.finish(schedule.loaded_done);
        self.enforce_budget(&admitted.protected)?;
        Ok(())
    }

    /// The files of the variants this process is downloading now, at their recorded commit:
    /// the budget keeps them.
    pub(crate) fn files_downloading(&self) -> Result<Vec<crate::budget::FileKey>> {
        let variants: Vec<(String, String)> = self
            .downloading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let mut files = Vec::new();
        for (repo, quant) in variants {
            if let Some(record) = self.store.repo(&repo)? {
                for path in record.variants.get(&quant).into_iter().flatten() {
                    files.push((repo.clone(), record.commit.clone(), path.clone()));
                }
            }
        }
        Ok(files)
    }

    /// Fetch `plans` as variant `quant`'s download: it reads as `downloading` meanwhile (with
    /// its bytes so far when `counted`: the plans are its files alone), and the attempt is
    /// recorded (when, and its error unless cancelled) for its status in the manifest.
    pub(crate) fn fetch_variant(
        self: &Arc<Self>,
        repo_id: &str,
        quant: &str,
        plans: Vec<FilePlan>,
        counted: bool,
        progress: Option<ProgressFn<'_>>,
        per_file: Option<FileProgressFn<'_>>,
    ) -> Result<()> {
        let loaded = Arc::new(AtomicU64::new(0));
        let key = (repo_id.to_string(), quant.to_string());
        self.downloading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), loaded.clone());
        let live = counted.then_some(&*loaded);
        let result = self.fetch_all(plans, progress, live, per_file);
        self.downloading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let error = match &result {
            Err(e) if e.kind() != ErrorKind::Cancelled => Some(e.message().to_string()),
            _ => None,
        };
        self.store.update_repo(repo_id, |rec| {
            let state = rec.quant_state.entry(quant.to_string()).or_default();
            state.last_updated = unix_now();
            state.error = error.clone();
        })?;
        result
    }

    /// Join the flight fetching `plan`'s content, or start it: every requester of one content
    /// in this process (a download, the server's pull-through) shares one transfer.
    pub(crate) fn start_flight(self: &Arc<Self>, plan: &FilePlan) -> Ticket {
        let key = plan.content_key();
        self.flights.join_or_start(&key, |flight| {
            let engine = self.clone();
            let flights = self.flights.clone();
            let plan = plan.clone();
            let key = key.clone();
            std::thread::Builder::new()
                .name(format!("tabcache-fetch-{}", &key[..key.len().min(20)]))
                .spawn(move || {
                    let outcome = engine.run_flight(&plan, &key, &flight);
                    // Release the cache before anyone learns the outcome, so a caller that
                    // then closes its handle knows no thread of ours still uses the directory.
                    drop(engine);
                    flights.land(&key, &flight, outcome);
                })
                .expect("spawning a download thread");
        })
    }

    /// The body of a flight: become the one transfer of this content across processes, then
    /// resolve, transfer into `tmp/`, verify, commit, record.
    fn run_flight(&self, plan: &FilePlan, key: &str, flight: &Flight) -> Result<FileRecord> {
        let inner = self;
        // Another process may be fetching the same content: wait for it, then take what it
        // committed, or (if it died or gave up) resume from the ranges it made durable.
        let _claim = inner
            .store
            .claim_transfer(key, &flight.cancel, &flight.progress)?;
        if let Some(rec) = self.already_held(plan)? {
            return Ok(rec);
        }
        if let Some(rec) = self.fetch_xet(plan, key, flight)? {
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
            &flight.prefix,
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
}

impl Engine {
    /// The native Xet transfer of `plan`'s content, when it is Xet-backed (a Xet hash with
    /// the size and sha256 the blob is named by) and native Xet is on. None when it is not,
    /// or when the Xet storage cannot serve it: then the bridge is used, and a note says why.
    /// No resolve is needed first: the listing gave everything.
    fn fetch_xet(&self, plan: &FilePlan, key: &str, flight: &Flight) -> Result<Option<FileRecord>> {
        let (Some(xet), Some(size), Some(sha256)) = (&plan.xet_hash, plan.size, &plan.sha256)
        else {
            return Ok(None);
        };
        let Ok(hash) = xet.parse::<crate::xet::XetHash>() else {
            return Ok(None);
        };
        if !self.hub.uses_xet() || size == 0 {
            return Ok(None);
        }
        let hub = self.hub.watched(&Watch::on(flight.cancel.clone()));
        let file = crate::xet::XetFile {
            repo: &plan.repo,
            commit: &plan.commit,
            hash,
            size,
        };
        let (tmp_dir, tmp_name) = self.store.partial(key);
        let log = self.store.resume_log(key);
        use crate::download::ResumeLog;
        let outcome = crate::xet::transfer(
            &hub,
            &file,
            tmp_dir,
            &tmp_name,
            &self.transfer,
            &flight.progress,
            &flight.cancel,
            &log,
            &self.store,
        );
        match outcome {
            Ok(done) => {
                let record = FileRecord {
                    sha256: sha256.clone(),
                    size,
                    git_oid: plan.git_oid.clone(),
                };
                self.store
                    .commit_file(&plan.repo, &plan.commit, &plan.path, key, &record)?;
                log.clear()?;
                // The index only speeds later transfers up: a failure to record it loses
                // nothing cached.
                let _ = self.store.record_xet_chunks(sha256, &done.chunks);
                Ok(Some(record))
            }
            Err(crate::xet::Failure::Fallback(why)) => {
                // The bridge starts its own partial file and record.
                log.clear()?;
                self.note(format!(
                    "{}/{}: fetched through the bridge, not natively from Xet storage: {why}",
                    plan.repo, plan.path
                ));
                Ok(None)
            }
            Err(crate::xet::Failure::Failed(err)) => {
                if err.kind() == ErrorKind::Corrupt {
                    let _ = tmp_dir.remove_file(&tmp_name);
                    log.clear()?;
                }
                Err(err)
            }
        }
    }

    /// Keep a note for the caller (see [`Engine::take_notes`]): something worth saying that
    /// is not a failure.
    fn note(&self, note: String) {
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        // Only the latest matter; a long-running server must not grow this without bound.
        if notes.len() >= 64 {
            notes.remove(0);
        }
        notes.push(note);
    }

    /// The notes kept since the last call, oldest first.
    pub(crate) fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

pub(crate) fn offline_error(what: &str) -> Error {
    Error::new(
        ErrorKind::Offline,
        format!(
            "cannot {what}: offline mode is on (HF_HUB_OFFLINE or the offline option) and it is not cached; \
             go online once to fetch it"
        ),
    )
}

/// The files of one request as they move from queued to running (a flight each, at most
/// `parallel_files` at once) to done.
struct Schedule<'e> {
    engine: &'e Arc<Engine>,
    queue: VecDeque<FilePlan>,
    running: Vec<(FilePlan, Ticket)>,
    /// Bytes of the files done (fetched, or found held).
    loaded_done: u64,
}

impl<'e> Schedule<'e> {
    /// Queue `plans`, counting those whose content is already held as done.
    fn new(
        engine: &'e Arc<Engine>,
        plans: Vec<FilePlan>,
        tell: &mut dyn FnMut(FileEvent<'_>),
    ) -> Result<Schedule<'e>> {
        let mut schedule = Schedule {
            engine,
            queue: VecDeque::new(),
            running: Vec::new(),
            loaded_done: 0,
        };
        for plan in plans {
            match engine.already_held(&plan)? {
                Some(rec) => schedule.done(&plan, rec.size, tell),
                None => schedule.queue.push_back(plan),
            }
        }
        Ok(schedule)
    }

    fn done(&mut self, plan: &FilePlan, size: u64, tell: &mut dyn FnMut(FileEvent<'_>)) {
        self.loaded_done += size;
        tell(FileEvent::Done {
            path: &plan.path,
            size,
        });
    }

    /// Start flights for queued files while there is room; false once nothing is left at all.
    fn start_queued(&mut self) -> bool {
        while self.running.len() < self.engine.parallel_files {
            let Some(plan) = self.queue.pop_front() else {
                break;
            };
            let ticket = self.engine.start_flight(&plan);
            self.running.push((plan, ticket));
        }
        !self.running.is_empty()
    }

    /// Wait (one poll interval at most) for flights to land, and take in their outcomes.
    fn collect_landed(&mut self, tell: &mut dyn FnMut(FileEvent<'_>)) -> Result<()> {
        let mut i = 0;
        while i < self.running.len() {
            // One wait per round, on the first flight; the others are only looked at.
            let wait = if i == 0 {
                POLL_INTERVAL
            } else {
                Duration::ZERO
            };
            match self.running[i].1.wait(wait) {
                None => i += 1,
                Some(Ok(rec)) => {
                    let (plan, _) = self.running.swap_remove(i);
                    let store = &self.engine.store;
                    match store.reference_blob(&plan.repo, &plan.commit, &plan.path, &rec)? {
                        Some(_) => self.done(&plan, rec.size, tell),
                        // Deleted by another thread since it landed: fetch it again.
                        None => self.queue.push_front(plan),
                    }
                }
                // Someone else's cancel stopped a flight we still want: start it again.
                Some(Err(e)) if e.kind() == ErrorKind::Cancelled => {
                    let (plan, _) = self.running.swap_remove(i);
                    self.queue.push_front(plan);
                }
                Some(Err(e)) => {
                    let plan = &self.running[i].0;
                    return Err(e.context(format!("{}: {}", plan.repo, plan.path)));
                }
            }
        }
        Ok(())
    }

    /// Bytes held so far of the whole request, telling each running file's own count.
    fn loaded(&self, tell: &mut dyn FnMut(FileEvent<'_>)) -> u64 {
        let mut loaded = self.loaded_done;
        for (plan, ticket) in &self.running {
            let held = ticket.progress();
            tell(FileEvent::Progress {
                path: &plan.path,
                loaded: held,
                total: plan.size.unwrap_or(0),
            });
            loaded += held;
        }
        loaded
    }

    /// Withdraw from every running flight; those no one else wants stop.
    fn withdraw(self) {
        crate::flight::withdraw_all(self.running.into_iter().map(|(_, ticket)| ticket));
    }
}
