//! What the cache holds: its counters (`stats`), listings (`tabcache ls`, `list_repos`,
//! `list_files`), and removing a repo or one of its variants.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cache::ModelCache;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::QuantStatus;
use crate::store::{EvictionLog, Rebuilt};
use crate::validate;

/// Cache statistics: the seed's `total_repos` and `total_size` (logical bytes of cached files)
/// plus what deduplication saves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The disk budget every process honours (bytes of blob files), if one is set.
    #[serde(default)]
    pub max_size: Option<u64>,
    /// What the budget evicted: totals and the latest evictions.
    #[serde(default)]
    pub evictions: EvictionLog,
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
    /// The latest use of any of its files (milliseconds since the epoch; None: none recorded).
    pub last_used_ms: Option<i64>,
    /// The whole repo is pinned (kept from eviction by the disk budget).
    pub pinned: bool,
}

/// One variant of a scanned repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantListing {
    pub key: String,
    pub status: QuantStatus,
    pub files: u64,
    pub total_size: Option<u64>,
    pub downloaded_size: Option<u64>,
    /// This variant is pinned (the repo's pin counts too).
    pub pinned: bool,
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

fn repo_not_cached(repo_id: &str) -> Error {
    Error::new(
        ErrorKind::RepoNotFound,
        format!("{repo_id} is not in the cache: nothing of it was scanned or downloaded here"),
    )
}

impl ModelCache {
    /// The seed's counters and what deduplication saves (see [`Stats`]).
    pub fn stats(&self) -> Result<Stats> {
        let t = self.store().totals()?;
        Ok(Stats {
            total_repos: t.repos,
            total_size: t.logical_bytes,
            total_files: t.files,
            disk_bytes: t.blob_bytes,
            dedup_saved_bytes: t.logical_bytes.saturating_sub(t.blob_bytes),
            rebuilt: self.store().last_rebuild()?,
            max_size: self.store().max_size()?,
            evictions: self.store().eviction_log()?,
        })
    }

    /// Every repo the catalog knows (scanned or holding files).
    pub fn repo_ids(&self) -> Result<Vec<String>> {
        self.store().repo_ids()
    }

    /// Every repo in the cache (scanned, or holding files) with its cached files' count and
    /// size and, when scanned, its variants.
    pub fn list_repos(&self) -> Result<Vec<RepoListing>> {
        let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut last_used: BTreeMap<String, i64> = BTreeMap::new();
        for file in self.store().used_files()? {
            let t = totals.entry(file.repo.clone()).or_default();
            t.0 += 1;
            t.1 = t.1.saturating_add(file.size);
            let latest = last_used.entry(file.repo).or_default();
            *latest = (*latest).max(file.last_used);
        }
        let pins = self.store().pins()?;
        let pinned = |repo: &str, quant: Option<&str>| {
            pins.iter()
                .any(|p| p.repo_id == repo && (p.quant.is_none() || p.quant.as_deref() == quant))
        };
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
                            pinned: pinned(&repo_id, Some(key)),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(RepoListing {
                revision: manifest.as_ref().map(|m| m.revision.clone()),
                commit: manifest.as_ref().map(|m| m.commit.clone()),
                files,
                size,
                variants,
                last_used_ms: last_used.get(&repo_id).copied().filter(|&ms| ms > 0),
                pinned: pinned(&repo_id, None),
                repo_id,
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

    /// Forget `repo_id` entirely (every revision) and delete every blob no other repo
    /// references, reporting what went. [`ModelCache::delete_model`] is this, in the seed's
    /// shape.
    ///
    /// # Errors
    /// `RepoNotFound` when the cache knows nothing of `repo_id`; `Io` when a file cannot be
    /// removed (the catalog no longer lists it; the next `gc` removes it).
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
        let bytes_freed = self.store().remove_repo(repo_id)?;
        Ok(RemoveReport {
            repo_id: repo_id.to_string(),
            quant: None,
            files_removed: files,
            bytes_freed,
        })
    }
}
