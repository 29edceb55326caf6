//! Cache maintenance on [`ModelCache`], shared by the `tabcache` command line, the C ABI and
//! Python: `verify` (re-hash every blob, optionally drop and re-fetch what is damaged), `gc`
//! (unreferenced blobs, stale partial downloads), `import_hf_cache` (adopt the files of an
//! existing huggingface_hub cache without transferring them again), and the listings and
//! per-variant removal behind `tabcache ls` and `tabcache rm --quant`. Every report is
//! serde-serializable: the CLI prints them as its `--json` output.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use crate::cache::ModelCache;
use crate::digest::{is_hex_of_len, read_file_chunks, sha256_of, to_hex};
use crate::dir::file_meta;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::QuantStatus;
use crate::progress::{ProgressFn, Reporter, Watch};
use crate::store::{entries_sorted, files_below, read_ref, Adopted, FileRecord, Store};
use crate::validate;

/// One cached file: `repo_id@commit:path`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileRef {
    pub repo_id: String,
    pub commit: String,
    pub path: String,
}

/// A blob whose bytes no longer match what was recorded, and the files it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedBlob {
    pub sha256: String,
    pub size: u64,
    /// What is wrong, in words: missing, wrong size, or the hash it has now.
    pub problem: String,
    pub files: Vec<FileRef>,
}

/// A file `verify --repair` could not fetch again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairFailure {
    pub file: FileRef,
    pub error: String,
}

/// What [`ModelCache::verify`] found (and repaired).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub damaged: Vec<DamagedBlob>,
    /// Whether damaged blobs were dropped and their files fetched again.
    pub repair: bool,
    pub repaired: Vec<FileRef>,
    pub repair_failed: Vec<RepairFailure>,
    /// True when the cache holds no damaged bytes now (nothing found, or everything repaired).
    pub ok: bool,
}

/// What [`ModelCache::gc`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub blobs_removed: u64,
    pub blob_bytes_freed: u64,
    pub partials_removed: u64,
    pub partial_bytes_freed: u64,
    pub bytes_freed: u64,
    /// Partial downloads written to more recently than the staleness limit: kept, resumable.
    pub partials_kept: u64,
    pub partial_bytes_kept: u64,
}

/// How long an idle partial download is kept for resuming before [`ModelCache::gc`] calls it
/// stale. A download interrupted on Friday should still resume on Monday.
pub const DEFAULT_STALE_PARTIAL_AGE: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 60 * 60);

/// A file of the huggingface_hub cache that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSkip {
    pub path: PathBuf,
    pub reason: String,
}

/// What [`ModelCache::import_hf_cache`] adopted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The huggingface_hub cache directory read (never written).
    pub hf_cache: PathBuf,
    /// Repos with at least one file now cached.
    pub repos: Vec<String>,
    /// Files newly recorded in this cache.
    pub files_imported: u64,
    pub bytes_imported: u64,
    /// Files this cache already held.
    pub files_already_cached: u64,
    /// New blobs hard-linked (no bytes copied) or copied.
    pub blobs_linked: u64,
    pub blobs_copied: u64,
    /// Revisions (`refs/`) recorded.
    pub refs_imported: u64,
    /// Bytes read to check files against their hashes (content already held is not read).
    pub bytes_hashed: u64,
    pub skipped: Vec<ImportSkip>,
}

/// One repo as `tabcache ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoListing {
    pub repo_id: String,
    /// The scanned revision and its commit (None when files came without a scan, e.g. import).
    pub revision: Option<String>,
    pub commit: Option<String>,
    /// Cached files (at every commit) and their logical size.
    pub files: u64,
    pub size: u64,
    pub variants: Vec<VariantListing>,
}

/// One variant of a scanned repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantListing {
    pub key: String,
    pub status: QuantStatus,
    pub files: u64,
    pub total_size: Option<u64>,
    pub downloaded_size: Option<u64>,
}

/// One cached file of a repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileListing {
    pub path: String,
    pub commit: String,
    pub size: u64,
    pub sha256: String,
    /// The variants of the scanned commit that include this file.
    pub variants: Vec<String>,
}

/// What [`ModelCache::remove_quant`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveReport {
    pub repo_id: String,
    pub quant: Option<String>,
    /// Paths whose records were removed.
    pub files_removed: Vec<String>,
    pub bytes_freed: u64,
}

/// What is wrong with blob `sha`'s file that should hold `size` bytes hashing to `sha`, if
/// anything; and how many bytes were hashed to tell. The file is opened by its name in
/// `blobs/` without following a link there or blocking on a FIFO: either counts as damage.
/// Hashing counts in and is stopped by `watch`; a cancel is `Err(Cancelled)`.
fn blob_problem(
    store: &Store,
    sha: &str,
    size: u64,
    watch: &Watch,
) -> Result<(u64, Option<String>)> {
    let path = store.blob_path(sha);
    let opened = store.open_blob(sha).and_then(|f| Ok((file_meta(&f)?, f)));
    let (meta, mut file) = match opened {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((0, Some("the blob file is missing".to_string())))
        }
        Err(e) => {
            return Ok((
                0,
                Some(format!(
                    "the blob file cannot be opened as a regular file ({e}): a link or special file is at its name"
                )),
            ))
        }
        Ok(opened) => opened,
    };
    if meta.len != size {
        return Ok((
            0,
            Some(format!(
                "the blob file has {} bytes, {size} were recorded",
                meta.len
            )),
        ));
    }
    match sha256_of(&mut file, &path, watch) {
        Ok(actual) => {
            let actual = to_hex(&actual);
            let problem = (actual != sha).then(|| format!("its content now hashes to {actual}"));
            Ok((meta.len, problem))
        }
        Err(e) if e.kind() == ErrorKind::Cancelled => Err(e),
        Err(e) => Ok((
            0,
            Some(format!("the blob file cannot be read: {}", e.message())),
        )),
    }
}

/// The huggingface_hub cache directory as huggingface_hub finds it: `$HF_HUB_CACHE`, else
/// `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn default_hf_hub_cache() -> Option<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env("HF_HUB_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(home) = env("HF_HOME") {
        return Some(PathBuf::from(home).join("hub"));
    }
    if let Some(xdg) = env("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("huggingface").join("hub"));
    }
    let home = env("HOME").or_else(|| env("USERPROFILE"))?;
    Some(
        PathBuf::from(home)
            .join(".cache")
            .join("huggingface")
            .join("hub"),
    )
}

fn repo_not_cached(repo_id: &str) -> Error {
    Error::new(
        ErrorKind::RepoNotFound,
        format!("{repo_id} is not in the cache; `tabcache ls` lists what is"),
    )
}

impl ModelCache {
    /// Re-hash every blob (or those `repo` references) against its recorded sha256. With
    /// `repair`, drop each damaged blob (its records, view entries and file) and fetch the
    /// files it held again.
    pub fn verify(&self, repo: Option<&str>, repair: bool) -> Result<VerifyReport> {
        self.verify_with_progress(repo, repair, None)
    }

    /// [`verify`](Self::verify), reporting `(bytes hashed, bytes to hash)`; `progress` may
    /// return false to cancel, which stops the hashing (and any repair download) within a
    /// second with `Cancelled`.
    pub fn verify_with_progress(
        &self,
        repo: Option<&str>,
        repair: bool,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<VerifyReport> {
        if let Some(repo) = repo {
            validate::repo_id(repo)?;
        }
        let store = self.store();
        let mut holders: BTreeMap<String, Vec<FileRef>> = BTreeMap::new();
        for (repo_id, commit, path, rec) in store.file_records(None)? {
            holders.entry(rec.sha256).or_default().push(FileRef {
                repo_id,
                commit,
                path,
            });
        }
        let sizes: BTreeMap<String, u64> = store.blob_sizes()?.into_iter().collect();
        let wanted: Vec<(String, u64)> = match repo {
            None => sizes
                .keys()
                .chain(holders.keys())
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter(),
            Some(repo) => holders
                .iter()
                .filter(|(_, files)| files.iter().any(|f| f.repo_id == repo))
                .map(|(sha, _)| sha.clone())
                .collect::<BTreeSet<_>>()
                .into_iter(),
        }
        .map(|sha| {
            let size = sizes.get(&sha).copied().unwrap_or(0);
            (sha, size)
        })
        .collect();
        let total = wanted
            .iter()
            .fold(0u64, |sum, (_, size)| sum.saturating_add(*size));
        let mut reporter = Reporter::new(progress, Some(total));
        let cache = self.clone();
        let mut report = reporter.run("verify", move |watch| {
            cache.find_damage(&wanted, holders, watch)
        })?;
        report.repair = repair;
        if repair {
            // Repairs keep the callback beating (and cancellable) at the hashed count.
            let mut beat = |_: u64, _: u64| reporter.tick(total);
            for blob in &report.damaged {
                for (repo_id, commit, path) in store.drop_blob(&blob.sha256)? {
                    let file = FileRef {
                        repo_id,
                        commit,
                        path,
                    };
                    let fetched = self.download_file(
                        &file.repo_id,
                        &file.path,
                        Some(&file.commit),
                        Some(&mut beat),
                    );
                    match fetched {
                        Ok(_) => report.repaired.push(file),
                        Err(e) if e.kind() == ErrorKind::Cancelled => return Err(e),
                        Err(e) => report.repair_failed.push(RepairFailure {
                            file,
                            error: e.message().to_string(),
                        }),
                    }
                }
            }
        }
        reporter.finish(total);
        report.ok = report.damaged.is_empty() || (repair && report.repair_failed.is_empty());
        Ok(report)
    }

    /// Hash each of `wanted` (sha256, recorded size) and report the damaged ones.
    fn find_damage(
        &self,
        wanted: &[(String, u64)],
        holders: BTreeMap<String, Vec<FileRef>>,
        watch: &Watch,
    ) -> Result<VerifyReport> {
        let store = self.store();
        let mut report = VerifyReport::default();
        for (sha, size) in wanted {
            report.blobs_checked += 1;
            let (checked, mut problem) = blob_problem(store, sha, *size, watch)?;
            report.bytes_checked += checked;
            if problem.is_some() {
                // Another process (or thread) may have deleted or re-added the blob since the
                // records were read: only what its record says now, under the gate, counts.
                // Asked again after the second look, which a delete can also overlap.
                problem = match store.recorded_blob(sha)? {
                    None => None,
                    Some(recorded) => blob_problem(store, sha, recorded, watch)?
                        .1
                        .filter(|_| matches!(store.recorded_blob(sha), Ok(Some(_)))),
                };
            }
            if let Some(problem) = problem {
                report.damaged.push(DamagedBlob {
                    files: holders.get(sha).cloned().unwrap_or_default(),
                    sha256: sha.clone(),
                    size: *size,
                    problem,
                });
            }
        }
        Ok(report)
    }

    /// Delete blob files no record references, and stale partial downloads: those no transfer
    /// of this process is using and nothing has written to for `stale_after`
    /// ([`DEFAULT_STALE_PARTIAL_AGE`] is a week). A removed partial download starts from zero
    /// if it is ever asked for again; `Duration::ZERO` removes every idle one.
    pub fn gc(&self, stale_after: std::time::Duration) -> Result<GcReport> {
        let swept = self.store().sweep(stale_after)?;
        Ok(GcReport {
            blobs_removed: swept.blobs,
            blob_bytes_freed: swept.blob_bytes,
            partials_removed: swept.partials,
            partial_bytes_freed: swept.partial_bytes,
            bytes_freed: swept.blob_bytes + swept.partial_bytes,
            partials_kept: swept.partials_kept,
            partial_bytes_kept: swept.partial_bytes_kept,
        })
    }

    /// Adopt what a huggingface_hub cache holds (`dir`, default [`default_hf_hub_cache`]):
    /// every `models--org--name/snapshots/<commit>/<path>` whose bytes match the hash its blob
    /// is named by (sha256 for LFS files, the git blob sha1 otherwise) is hard-linked (or
    /// copied) into this cache and recorded for that repo and commit, with the revisions in
    /// `refs/` this cache does not know yet. The huggingface_hub cache is only read.
    ///
    /// Each file is opened once, without blocking (a FIFO, device or socket is skipped with a
    /// reason, never read), and the bytes hashed from that open file are the ones brought in:
    /// a hard link is kept only when it names the very file that was hashed, otherwise the
    /// file is copied from the open handle. A hard-linked blob shares one file with
    /// huggingface_hub's cache: a write through either changes both. tabcache's own blobs are
    /// read-only, but the import leaves a shared file's permissions as they are (changing them
    /// would change huggingface_hub's file); [`ModelCache::verify`] detects content changed
    /// that way.
    pub fn import_hf_cache(&self, dir: Option<&Path>) -> Result<ImportReport> {
        self.import_hf_cache_with_progress(dir, None)
    }

    /// [`import_hf_cache`](Self::import_hf_cache), reporting `(bytes hashed, 0)` as it goes
    /// and `(n, n)` at the end; `progress` may return false to cancel, which stops it within a
    /// second with `Cancelled` (the files already imported stay imported; the next import
    /// skips them).
    pub fn import_hf_cache_with_progress(
        &self,
        dir: Option<&Path>,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<ImportReport> {
        let mut reporter = Reporter::new(progress, None);
        let (cache, dir) = (self.clone(), dir.map(Path::to_path_buf));
        let report = reporter.run("import", move |watch| {
            cache.import_watched(dir.as_deref(), watch)
        })?;
        reporter.finish(report.bytes_hashed);
        Ok(report)
    }

    fn import_watched(&self, dir: Option<&Path>, watch: &Watch) -> Result<ImportReport> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => default_hf_hub_cache().ok_or_else(|| {
                Error::invalid(
                    "cannot find the huggingface_hub cache: HOME is not set; pass its directory",
                )
            })?,
        };
        if !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::EntryNotFound,
                format!(
                    "no huggingface_hub cache at {}; pass the directory that holds the `models--*` folders",
                    dir.display()
                ),
            ));
        }
        let mut report = ImportReport {
            hf_cache: dir.clone(),
            ..ImportReport::default()
        };
        let mut repos = BTreeSet::new();
        for entry in entries_sorted(&dir)? {
            let name = entry
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let Some(folder) = name.strip_prefix("models--") else {
                continue; // datasets, spaces, .locks: not ours to adopt
            };
            let repo_id = folder.replacen("--", "/", 1);
            if let Err(e) = validate::repo_id(&repo_id) {
                report.skipped.push(ImportSkip {
                    path: entry,
                    reason: e.message().to_string(),
                });
                continue;
            }
            if self.import_hf_repo(&repo_id, &entry, &mut report, watch)? {
                repos.insert(repo_id);
            }
        }
        report.repos = repos.into_iter().collect();
        Ok(report)
    }

    /// Import one `models--*` folder. Returns whether the repo has any file cached afterwards.
    fn import_hf_repo(
        &self,
        repo_id: &str,
        folder: &Path,
        report: &mut ImportReport,
        watch: &Watch,
    ) -> Result<bool> {
        let store = self.store();
        let mut any = false;
        let mut commits = BTreeSet::new();
        let snapshots = folder.join("snapshots");
        if snapshots.is_dir() {
            for snapshot in entries_sorted(&snapshots)? {
                let commit = snapshot
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if !is_hex_of_len(&commit, 20) || commit != commit.to_ascii_lowercase() {
                    report.skipped.push(ImportSkip {
                        path: snapshot,
                        reason: "a snapshot folder must be named by a 40-hex commit sha".into(),
                    });
                    continue;
                }
                let mut files = Vec::new();
                files_below(&snapshot, "", &mut files)?;
                for (path, on_disk) in files {
                    watch.check()?;
                    match self.import_hf_file(repo_id, &commit, &path, &on_disk, report, watch) {
                        Ok(()) => {
                            any = true;
                            commits.insert(commit.clone());
                        }
                        Err(e)
                            if e.kind() == ErrorKind::InvalidArgument
                                || e.kind() == ErrorKind::Corrupt =>
                        {
                            report.skipped.push(ImportSkip {
                                path: on_disk,
                                reason: e.message().to_string(),
                            })
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let refs = folder.join("refs");
        if refs.is_dir() {
            let mut ref_files = Vec::new();
            files_below(&refs, "", &mut ref_files)?;
            for (revision, file) in ref_files {
                let commit = match read_ref(&file) {
                    Ok(commit) => commit,
                    // A FIFO or device is never opened blocking, nor read.
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                        report.skipped.push(ImportSkip {
                            path: file,
                            reason: format!("{e}; not read as a ref"),
                        });
                        continue;
                    }
                    Err(e) => return Err(Error::io("could not read", &file, e)),
                };
                let known = store.commit_for(repo_id, &revision)?.is_some();
                if validate::revision(&revision).is_ok() && commits.contains(&commit) && !known {
                    store.set_ref(repo_id, &revision, &commit)?;
                    report.refs_imported += 1;
                }
            }
        }
        Ok(any)
    }

    /// Check one snapshot file against its blob name and adopt it. InvalidArgument and Corrupt
    /// errors mean "skip this file"; others stop the import.
    fn import_hf_file(
        &self,
        repo_id: &str,
        commit: &str,
        path: &str,
        on_disk: &Path,
        report: &mut ImportReport,
        watch: &Watch,
    ) -> Result<()> {
        validate::repo_path(path)?;
        let store = self.store();
        if store.cached_file(repo_id, commit, path)?.is_some() {
            report.files_already_cached += 1;
            return Ok(());
        }
        let link = fs::read_link(on_disk).map_err(|_| {
            Error::invalid(
                "not a link into the cache's blobs/, so there is no hash to check it against",
            )
        })?;
        let blob_name = link
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let lfs = is_hex_of_len(&blob_name, 32);
        if !lfs && !is_hex_of_len(&blob_name, 20) {
            return Err(Error::invalid(format!(
                "its blob name {blob_name:?} is neither a sha256 nor a git sha1"
            )));
        }
        let real = fs::canonicalize(on_disk)
            .map_err(|e| Error::invalid(format!("its blob is missing ({e})")))?;
        // Opened once, without blocking on a FIFO or device (refused): this one open file is
        // what is hashed and what is linked or copied in, whatever the path names later.
        let mut file = crate::dir::open_regular_path(&real).map_err(|e| {
            Error::invalid(format!(
                "its blob {} cannot be opened as a regular file ({e}); not imported",
                real.display()
            ))
        })?;
        // Content this cache already verified needs no second hashing.
        let held = if lfs {
            store.held_blob(Some(&blob_name), None)?
        } else {
            store.held_blob(None, Some(&blob_name))?
        };
        let record = match held {
            Some(sha256) => FileRecord {
                size: store.blob_file_size(&sha256).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Io,
                        format!(
                            "{} went missing while importing; run the import again",
                            store.blob_path(&sha256).display()
                        ),
                    )
                })?,
                sha256,
                git_oid: (!lfs).then(|| blob_name.clone()),
            },
            None => {
                let (sha256, git_sha1, size) = hash_for_import(&mut file, &real, watch)?;
                report.bytes_hashed = report.bytes_hashed.saturating_add(size);
                let matches = if lfs {
                    sha256 == blob_name
                } else {
                    git_sha1 == blob_name
                };
                if !matches {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!(
                            "its content does not match its {} {blob_name} (damaged in the huggingface_hub cache); not imported",
                            if lfs { "sha256" } else { "git blob sha1" }
                        ),
                    ));
                }
                FileRecord {
                    sha256,
                    size,
                    git_oid: (!lfs).then_some(git_sha1),
                }
            }
        };
        match store.adopt_file(&file, &real, repo_id, commit, path, &record)? {
            Adopted::Linked => report.blobs_linked += 1,
            Adopted::Copied => report.blobs_copied += 1,
            Adopted::AlreadyHeld => {}
        }
        report.files_imported += 1;
        report.bytes_imported = report.bytes_imported.saturating_add(record.size);
        Ok(())
    }

    /// Every repo in the cache (scanned, or holding files) with its cached files' count and
    /// size and, when scanned, its variants.
    pub fn list_repos(&self) -> Result<Vec<RepoListing>> {
        let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (repo_id, _, _, rec) in self.store().file_records(None)? {
            let t = totals.entry(repo_id).or_default();
            t.0 += 1;
            t.1 = t.1.saturating_add(rec.size);
        }
        for id in self.repo_ids()? {
            totals.entry(id).or_default();
        }
        let mut out = Vec::new();
        for (repo_id, (files, size)) in totals {
            let manifest = self.get_manifest(&repo_id)?;
            let variants = manifest
                .as_ref()
                .map(|m| {
                    m.quants
                        .iter()
                        .map(|(key, q)| VariantListing {
                            key: key.clone(),
                            status: q.status,
                            files: q.files.len() as u64,
                            total_size: q.total_size,
                            downloaded_size: q.downloaded_size,
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(RepoListing {
                revision: manifest.as_ref().map(|m| m.revision.clone()),
                commit: manifest.as_ref().map(|m| m.commit.clone()),
                repo_id,
                files,
                size,
                variants,
            });
        }
        Ok(out)
    }

    /// The cached files of `repo_id` (at every commit), sorted by path.
    pub fn list_files(&self, repo_id: &str) -> Result<Vec<FileListing>> {
        validate::repo_id(repo_id)?;
        let record = self.store().repo(repo_id)?;
        let records = self.store().file_records(Some(repo_id))?;
        if record.is_none() && records.is_empty() {
            return Err(repo_not_cached(repo_id));
        }
        let mut out: Vec<FileListing> = records
            .into_iter()
            .map(|(_, commit, path, rec)| {
                let variants = record
                    .as_ref()
                    .filter(|r| r.commit == commit)
                    .map(|r| {
                        r.variants
                            .iter()
                            .filter(|(_, files)| files.contains(&path))
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                FileListing {
                    path,
                    commit,
                    size: rec.size,
                    sha256: rec.sha256,
                    variants,
                }
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path).then(a.commit.cmp(&b.commit)));
        Ok(out)
    }

    /// Remove the cached files of one variant that no other variant of the scanned commit
    /// uses (shared config and tokenizer files stay), deleting blobs nothing else references.
    pub fn remove_quant(&self, repo_id: &str, quant: &str) -> Result<RemoveReport> {
        validate::repo_id(repo_id)?;
        let store = self.store();
        let record = store
            .repo(repo_id)?
            .ok_or_else(|| repo_not_cached(repo_id))?;
        let files = record.variant_files(quant)?;
        let kept: HashSet<&String> = record
            .variants
            .iter()
            .filter(|(k, _)| k.as_str() != quant)
            .flat_map(|(_, f)| f)
            .collect();
        let mut report = RemoveReport {
            repo_id: repo_id.to_string(),
            quant: Some(quant.to_string()),
            ..RemoveReport::default()
        };
        for path in files.iter().filter(|p| !kept.contains(p)) {
            if store.cached_file(repo_id, &record.commit, path)?.is_some() {
                report.bytes_freed += store.remove_file(repo_id, &record.commit, path)?;
                report.files_removed.push(path.clone());
            }
        }
        Ok(report)
    }

    /// The size of every file in the scanned listing of `repo_id` (None when never scanned).
    pub fn listed_sizes(&self, repo_id: &str) -> Result<Option<BTreeMap<String, u64>>> {
        validate::repo_id(repo_id)?;
        Ok(self.store().repo(repo_id)?.map(|r| {
            r.files
                .into_iter()
                .map(|(path, f)| (path, f.size))
                .collect()
        }))
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

    /// Forget `repo_id` entirely (as [`ModelCache::delete_model`]), reporting what went.
    pub fn remove_repo(&self, repo_id: &str) -> Result<RemoveReport> {
        validate::repo_id(repo_id)?;
        let files: Vec<String> = self
            .store()
            .file_records(Some(repo_id))?
            .into_iter()
            .map(|(_, _, path, _)| path)
            .collect();
        if files.is_empty() && self.store().repo(repo_id)?.is_none() {
            return Err(repo_not_cached(repo_id));
        }
        let bytes_freed = self.delete_model(repo_id)?;
        Ok(RemoveReport {
            repo_id: repo_id.to_string(),
            quant: None,
            files_removed: files,
            bytes_freed,
        })
    }
}

/// One pass over an open file: its sha256, its git blob sha1 (`blob <len>\0` + content), its
/// size. `path` names it in messages.
fn hash_for_import(
    file: &mut fs::File,
    path: &Path,
    watch: &Watch,
) -> Result<(String, String, u64)> {
    let size = file_meta(file)
        .map_err(|e| Error::io("could not read", path, e))?
        .len;
    let mut sha256 = sha2::Sha256::new();
    let mut git = sha1::Sha1::new();
    git.update(format!("blob {size}\0").as_bytes());
    let read = read_file_chunks(file, path, watch, |chunk| {
        sha256.update(chunk);
        git.update(chunk);
    })?;
    if read != size {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{} changed size while it was read; not imported",
                path.display()
            ),
        ));
    }
    Ok((to_hex(&sha256.finalize()), to_hex(&git.finalize()), size))
}
