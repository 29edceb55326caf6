//! The disk budget on [`ModelCache`]: the size limit every process shares, pins, and
//! `prune`, which evicts least recently used content to a size or by age (`--dry-run` lists
//! exactly what `prune` then removes). What to evict is `crate::budget`'s choice; removing it
//! so no reader loses a file is `Store::evict`'s.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::budget::{self, Eviction, FileKey, Target};
use crate::cache::ModelCache;
use crate::download::human_bytes;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Engine, FilePlan};
use crate::store::{LoggedEviction, Pin};
use crate::validate;

/// Most blobs one request holds open against eviction by other processes.
const MAX_HELD: usize = 64;

/// A request the budget let through: the files to spare when evicting for it, and the cached
/// blobs it holds open against eviction by other processes until it is dropped.
pub(crate) struct Admitted {
    pub(crate) protected: HashSet<FileKey>,
    _held: Vec<std::fs::File>,
}

/// What [`ModelCache::prune`] evicts until.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    /// Evict until the cache's blobs take at most this many bytes (default: the budget, if
    /// one is set).
    pub max_size: Option<u64>,
    /// Also evict everything last used longer ago than this.
    pub older_than: Option<Duration>,
    /// Only say what would go.
    pub dry_run: bool,
}

/// What [`ModelCache::prune`] (or a download over the budget) evicted, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub evicted: Vec<Eviction>,
    pub bytes_freed: u64,
    /// Bytes of the cache's blobs after (for a dry run: as they would be).
    pub disk_bytes: u64,
    pub dry_run: bool,
}

impl ModelCache {
    /// The budget every process using this cache honours, in bytes of blob files.
    ///
    /// # Errors
    /// `Io` when the catalog cannot be read.
    pub fn max_size(&self) -> Result<Option<u64>> {
        self.store().max_size()
    }

    /// Set (None: remove) the budget for every process using this cache, and evict down to
    /// it now. The last one set wins.
    ///
    /// # Errors
    /// `Io` when the catalog cannot be written or a file cannot be removed.
    pub fn set_max_size(&self, max_size: Option<u64>) -> Result<PruneReport> {
        self.store().set_max_size(max_size)?;
        self.engine().evict_to(
            Target {
                bytes: 0,
                older_than: None,
            },
            max_size,
            &HashSet::new(),
            false,
        )
    }

    /// Keep `repo_id` (or only its variant `quant`) from eviction. Returns false when it was
    /// pinned already.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed repo id; `Io` when the catalog cannot be written.
    pub fn pin(&self, repo_id: &str, quant: Option<&str>) -> Result<bool> {
        self.store().set_pin(&pin_of(repo_id, quant)?, true)
    }

    /// Undo [`ModelCache::pin`]. Returns false when it was not pinned.
    ///
    /// # Errors
    /// As for `pin`.
    pub fn unpin(&self, repo_id: &str, quant: Option<&str>) -> Result<bool> {
        self.store().set_pin(&pin_of(repo_id, quant)?, false)
    }

    /// The pins, by repo.
    ///
    /// # Errors
    /// `Io` when the catalog cannot be read.
    pub fn pins(&self) -> Result<Vec<Pin>> {
        self.store().pins()
    }

    /// Evict least recently used content (whole variants; never pinned ones, never a blob
    /// someone is reading) down to `options.max_size` (else the budget) and everything last
    /// used before `options.older_than`. With `dry_run`, nothing is removed and the report
    /// lists exactly what would be.
    ///
    /// # Errors
    /// `Io` when the catalog cannot be read or written, or a file cannot be removed.
    pub fn prune(&self, options: PruneOptions) -> Result<PruneReport> {
        let max_size = match options.max_size {
            Some(size) => Some(size),
            None => self.max_size()?,
        };
        let older_than = options.older_than.map(|age| {
            crate::store::now_ms()
                .saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
        });
        if max_size.is_none() && older_than.is_none() {
            return Err(Error::invalid(
                "nothing to prune to: no budget is set; give a size, an age, or set a budget",
            ));
        }
        self.engine().evict_to(
            Target {
                bytes: 0,
                older_than,
            },
            max_size,
            &HashSet::new(),
            options.dry_run,
        )
    }
}

impl Engine {
    /// Evict for `target`, plus whatever brings the blobs under `max_size`, sparing
    /// `protected`.
    pub(crate) fn evict_to(
        &self,
        mut target: Target,
        max_size: Option<u64>,
        protected: &HashSet<FileKey>,
        dry_run: bool,
    ) -> Result<PruneReport> {
        let store = &self.store;
        let disk_bytes = store.totals()?.blob_bytes;
        if let Some(limit) = max_size {
            target.bytes = target.bytes.max(disk_bytes.saturating_sub(limit));
        }
        if target.bytes == 0 && target.older_than.is_none() {
            return Ok(PruneReport {
                disk_bytes,
                dry_run,
                ..PruneReport::default()
            });
        }
        // Under the budget (every download asks): no file is read.
        let files = store.used_files()?;
        let units = budget::units(&store.repo_records()?, &files);
        let pins = store.pins()?;
        let mut failure = None;
        let evicted = budget::choose(units, &files, &pins, protected, target, |eviction| {
            if dry_run || failure.is_some() {
                return failure.is_none();
            }
            match store.evict(eviction) {
                Ok(done) => done,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if !dry_run && !evicted.is_empty() {
            let at_ms = crate::store::now_ms();
            let logged: Vec<LoggedEviction> = evicted
                .iter()
                .map(|e| LoggedEviction {
                    at_ms,
                    repo_id: e.repo_id.clone(),
                    quant: e.quant.clone(),
                    files: e.files.clone(),
                    bytes_freed: e.bytes_freed,
                })
                .collect();
            store.log_evictions(&logged)?;
        }
        let bytes_freed = evicted.iter().map(|e| e.bytes_freed).sum();
        Ok(PruneReport {
            evicted,
            bytes_freed,
            disk_bytes: disk_bytes.saturating_sub(bytes_freed),
            dry_run,
        })
    }

    /// Before a transfer of `plans`: refuse at once (nothing transferred, nothing evicted) what
    /// cannot fit in the budget even after evicting everything evictable, or on the file
    /// system. Returns the files the request must keep from eviction while it runs and once
    /// it lands.
    pub(crate) fn admit(&self, plans: &[FilePlan]) -> Result<Admitted> {
        let mut protected: HashSet<FileKey> = plans
            .iter()
            .map(|p| (p.repo.clone(), p.commit.clone(), p.path.clone()))
            .collect();
        protected.extend(self.files_downloading()?);
        let store = &self.store;
        // Bytes still to come: content not held, less what a partial download already holds
        // on disk (a resumed transfer's file is allocated whole). Files cached already count
        // as used now, and are held (below).
        let mut needed = 0u64;
        let mut largest = 0u64;
        let mut on_disk = 0u64;
        let mut counted = HashSet::new();
        let mut cached = Vec::new();
        for plan in plans {
            let held = match store.cached_file(&plan.repo, &plan.commit, &plan.path)? {
                Some(record) => {
                    store.note_use(&plan.repo, &plan.commit, &plan.path);
                    cached.push(record);
                    true
                }
                None => match &plan.sha256 {
                    Some(sha) => store.has_blob(sha)?,
                    None => false,
                },
            };
            let key = plan.content_key();
            if !held && counted.insert(key.clone()) {
                needed = needed.saturating_add(plan.size.unwrap_or(0));
                largest = largest.max(plan.size.unwrap_or(0));
                let (tmp, name) = store.partial(&key);
                on_disk += tmp.stat(&name).ok().flatten().map_or(0, |m| m.len);
            }
        }
        // The largest cached blobs stay open with the readers' lock until the request ends:
        // no other process's eviction takes a variant while it downloads. At most
        // [`MAX_HELD`] (a variant of thousands of files must not exhaust file descriptors);
        // one held blob keeps its whole variant, and the rest were just used.
        cached.sort_by_key(|record| std::cmp::Reverse(record.size));
        let admitted = Admitted {
            protected,
            _held: cached
                .iter()
                .take(MAX_HELD)
                .filter_map(|record| store.open_blob(&record.sha256).ok())
                .collect(),
        };
        if needed == 0 {
            return Ok(admitted);
        }
        let limit = store.max_size()?;
        // Without a budget nothing may be evicted.
        let evictable = match limit {
            Some(_) => {
                let all = Target {
                    bytes: u64::MAX,
                    older_than: None,
                };
                self.evict_to(all, None, &admitted.protected, true)?
                    .bytes_freed
            }
            None => 0,
        };
        let disk_bytes = store.totals()?.blob_bytes;
        if let Some(limit) = limit {
            let floor = disk_bytes.saturating_sub(evictable);
            if floor.saturating_add(needed) > limit {
                return Err(Error::new(
                    ErrorKind::DiskFull,
                    format!(
                        "this download needs {} but the cache's budget is {}: it holds {}, of which {} \
                         can be evicted (the rest is pinned or in use); raise the budget (max_size), \
                         unpin or remove something, and retry",
                        human_bytes(needed),
                        human_bytes(limit),
                        human_bytes(disk_bytes),
                        human_bytes(evictable)
                    ),
                ));
            }
        }
        // Files that fit one by one but not together are refused here, before the first of
        // them moves; a single file larger than the disk is left to the transfer's own check,
        // which names the server that claimed the size (it may be a hostile claim).
        let (tmp, _) = store.partial("");
        if let Some(free) = tmp.free_space() {
            let room = free.saturating_add(evictable).saturating_add(on_disk);
            if needed > room && largest <= free {
                return Err(Error::new(
                    ErrorKind::DiskFull,
                    format!(
                        "disk full: this download needs {} and the file system of {} has {} free{}; \
                         nothing was downloaded: free some space (gc removes stale partial \
                         downloads; prune evicts what was least used) and retry",
                        human_bytes(needed),
                        tmp.path().display(),
                        human_bytes(free),
                        if evictable > 0 {
                            format!(" and {} could be evicted", human_bytes(evictable))
                        } else {
                            String::new()
                        }
                    ),
                ));
            }
        }
        Ok(admitted)
    }

    /// After a download landed: evict down to the budget, sparing `protected`.
    pub(crate) fn enforce_budget(&self, protected: &HashSet<FileKey>) -> Result<PruneReport> {
        let none = Target::default();
        match self.store.max_size()? {
            Some(limit) => self.evict_to(none, Some(limit), protected, false),
            None => Ok(PruneReport::default()),
        }
    }
}

fn pin_of(repo_id: &str, quant: Option<&str>) -> Result<Pin> {
    validate::repo_id(repo_id)?;
    if quant.is_some_and(|q| q.trim().is_empty()) {
        return Err(Error::invalid(format!(
            "the variant to pin or unpin in {repo_id} is empty; give one such as Q4_K_M, or \
             none for the whole repo"
        )));
    }
    Ok(Pin {
        repo_id: repo_id.to_string(),
        quant: quant.map(str::to_string),
    })
}
