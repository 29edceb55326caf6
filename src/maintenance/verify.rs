//! `verify` and `gc` on [`ModelCache`]: re-hashing blobs against their names (and fetching
//! damaged files again), and deleting what no record references.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::FileRef;
use crate::cache::ModelCache;
use crate::digest::{sha256_of, to_hex};
use crate::dir::file_meta;
use crate::error::{ErrorKind, Result};
use crate::progress::{ProgressFn, Reporter, Watch};
use crate::store::Store;
use crate::validate;

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
        let (wanted, holders) = self.blobs_to_check(repo)?;
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
            self.repair(&mut report, &mut |_: u64, _: u64| reporter.tick(total))?;
        }
        reporter.finish(total);
        report.ok = report.damaged.is_empty() || (repair && report.repair_failed.is_empty());
        Ok(report)
    }

    /// The blobs to hash, (sha256, recorded size) in name order: every blob, or those holding
    /// a file of `repo`; and the files each holds.
    #[allow(clippy::type_complexity)]
    fn blobs_to_check(
        &self,
        repo: Option<&str>,
    ) -> Result<(Vec<(String, u64)>, BTreeMap<String, Vec<FileRef>>)> {
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
        let wanted = match repo {
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
        Ok((wanted, holders))
    }

    /// Drop each damaged blob of `report` and fetch the files it held again, recording what
    /// was repaired and what could not be; `beat` is every download's progress callback.
    fn repair(&self, report: &mut VerifyReport, beat: ProgressFn<'_>) -> Result<()> {
        let store = self.store();
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
                    Some(&mut *beat),
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
        Ok(())
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
}
