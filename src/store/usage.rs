//! What the disk budget knows, kept in the catalog so every process sees the same: when each
//! cached file was last used (`files.last_used`), which repos and variants are pinned (`pins`),
//! and the budget itself (`meta` key `max_size`).
//!
//! Last use is noted in memory ([`UsageLog`]) and written at most every [`FLUSH_EVERY`], in
//! one transaction for everything noted meanwhile: `has_file` is a hot call (microseconds) and
//! must not become a write per call. Another process thus sees a use up to that late, which is
//! far finer than any eviction decision needs (they are about which model was used last
//! today, not this second). Whoever evicts flushes its own log first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::params;

use super::catalog::{from_sql, meta_in, set_meta_in, sql_err, Catalog};
use crate::error::Result;

/// Longest a noted use waits in memory before it is written.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Milliseconds since the epoch: what `files.last_used` holds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One cached file as the budget sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsedFile {
    pub repo: String,
    pub commit: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Milliseconds since the epoch; 0 when never noted.
    pub last_used: i64,
}

/// A pin: a whole repo (`quant` None) or one of its variants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Pin {
    pub repo_id: String,
    pub quant: Option<String>,
}

impl Catalog {
    /// Record the uses in `used` (`(repo, commit, path)` -> when), never moving a file's last
    /// use back in time. Files no longer cached are skipped.
    pub(crate) fn note_uses(&self, used: &HashMap<(String, String, String), i64>) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE files SET last_used = MAX(last_used, ?4)
                     WHERE repo_id = ?1 AND commit_sha = ?2 AND path = ?3",
                )
                .map_err(sql_err)?;
            for ((repo, commit, path), at) in used {
                stmt.execute(params![repo, commit, path, at])
                    .map_err(sql_err)?;
            }
            Ok(())
        })
    }

    /// Every cached file with its blob and last use.
    pub(crate) fn used_files(&self) -> Result<Vec<UsedFile>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT repo_id, commit_sha, path, sha256, size, last_used FROM files
                     ORDER BY repo_id, commit_sha, path",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(UsedFile {
                        repo: r.get(0)?,
                        commit: r.get(1)?,
                        path: r.get(2)?,
                        sha256: r.get(3)?,
                        size: from_sql(r.get(4)?),
                        last_used: r.get(5)?,
                    })
                })
                .map_err(sql_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
        })
    }

    /// The budget the cache was last given, in bytes.
    pub(crate) fn max_size(&self) -> Result<Option<u64>> {
        Ok(self
            .read(|c| meta_in(c, "max_size"))?
            .and_then(|v| v.parse().ok()))
    }

    /// Set (or, with None, remove) the budget for every process using the cache.
    pub(crate) fn set_max_size(&self, max_size: Option<u64>) -> Result<()> {
        let value = max_size.map(|bytes| bytes.to_string());
        self.write(|tx| set_meta_in(tx, "max_size", value.as_deref()))
    }

    pub(crate) fn pins(&self) -> Result<Vec<Pin>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT repo_id, quant_key FROM pins ORDER BY repo_id, quant_key")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    let quant: String = r.get(1)?;
                    Ok(Pin {
                        repo_id: r.get(0)?,
                        quant: (!quant.is_empty()).then_some(quant),
                    })
                })
                .map_err(sql_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
        })
    }

    /// Pin (`on`) or unpin a repo or variant. Returns whether that changed anything.
    pub(crate) fn set_pin(&self, pin: &Pin, on: bool) -> Result<bool> {
        let quant = pin.quant.as_deref().unwrap_or("");
        self.write(|tx| {
            let sql = if on {
                "INSERT OR IGNORE INTO pins (repo_id, quant_key) VALUES (?1, ?2)"
            } else {
                "DELETE FROM pins WHERE repo_id = ?1 AND quant_key = ?2"
            };
            let changed = tx
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(params![pin.repo_id, quant]))
                .map_err(sql_err)?;
            Ok(changed == 1)
        })
    }
}

/// Evictions so far, kept in the catalog's `meta` (key `evictions`): `stats` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvictionLog {
    /// Units evicted, and the bytes that freed, since the cache was made.
    pub count: u64,
    pub bytes_freed: u64,
    /// The latest [`RECENT_EVICTIONS`], oldest first.
    pub recent: Vec<LoggedEviction>,
}

/// One eviction as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoggedEviction {
    /// When (milliseconds since the epoch).
    pub at_ms: i64,
    pub repo_id: String,
    pub quant: Option<String>,
    pub files: Vec<String>,
    pub bytes_freed: u64,
}

/// How many evictions the log lists.
pub const RECENT_EVICTIONS: usize = 20;

impl Catalog {
    pub(crate) fn eviction_log(&self) -> Result<EvictionLog> {
        self.read(read_log)
    }

    pub(crate) fn log_evictions(&self, done: &[LoggedEviction]) -> Result<()> {
        self.write(|tx| {
            let mut log = read_log(tx)?;
            log.count += done.len() as u64;
            log.bytes_freed += done.iter().map(|e| e.bytes_freed).sum::<u64>();
            log.recent.extend(done.iter().cloned());
            let excess = log.recent.len().saturating_sub(RECENT_EVICTIONS);
            log.recent.drain(..excess);
            let text = serde_json::to_string(&log).expect("the log serializes");
            set_meta_in(tx, "evictions", Some(&text))
        })
    }
}

/// The eviction log as stored. One that cannot be read is only history: it starts again.
fn read_log(c: &rusqlite::Connection) -> Result<EvictionLog> {
    Ok(meta_in(c, "evictions")?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

impl super::Store {
    /// Note a use of `repo@commit:path` (written within [`FLUSH_EVERY`]).
    pub(crate) fn note_use(&self, repo: &str, commit: &str, path: &str) {
        self.usage.note(&self.catalog, repo, commit, path);
    }

    /// Write the uses noted in this process now.
    pub(crate) fn flush_uses(&self) -> Result<()> {
        self.usage.flush(&self.catalog)
    }

    /// Every cached file with its last use, this process's noted uses included.
    pub(crate) fn used_files(&self) -> Result<Vec<UsedFile>> {
        self.flush_uses()?;
        self.catalog.used_files()
    }

    pub(crate) fn eviction_log(&self) -> Result<EvictionLog> {
        self.catalog.eviction_log()
    }

    pub(crate) fn log_evictions(&self, done: &[LoggedEviction]) -> Result<()> {
        self.catalog.log_evictions(done)
    }

    pub(crate) fn max_size(&self) -> Result<Option<u64>> {
        self.catalog.max_size()
    }

    pub(crate) fn set_max_size(&self, max_size: Option<u64>) -> Result<()> {
        self.catalog.set_max_size(max_size)
    }

    pub(crate) fn pins(&self) -> Result<Vec<Pin>> {
        self.catalog.pins()
    }

    pub(crate) fn set_pin(&self, pin: &Pin, on: bool) -> Result<bool> {
        self.catalog.set_pin(pin, on)
    }

    /// Every stored repo record.
    pub(crate) fn repo_records(&self) -> Result<Vec<crate::manifest::RepoRecord>> {
        let mut records = Vec::new();
        for repo in self.catalog.repo_ids()? {
            records.extend(self.catalog.repo(&repo)?);
        }
        Ok(records)
    }
}

/// Uses noted in this process and not yet written.
pub(crate) struct UsageLog {
    pending: Mutex<Pending>,
}

struct Pending {
    uses: HashMap<(String, String, String), i64>,
    since: Instant,
}

impl Default for UsageLog {
    fn default() -> Self {
        UsageLog {
            pending: Mutex::new(Pending {
                uses: HashMap::new(),
                since: Instant::now(),
            }),
        }
    }
}

impl UsageLog {
    /// Note that `repo@commit:path` was used now; written with the others once
    /// [`FLUSH_EVERY`] has passed since the last write.
    pub(crate) fn note(&self, catalog: &Catalog, repo: &str, commit: &str, path: &str) {
        let due = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.uses.insert(
                (repo.to_string(), commit.to_string(), path.to_string()),
                now_ms(),
            );
            pending.since.elapsed() >= FLUSH_EVERY
        };
        if due {
            // A use that cannot be written (a busy or full disk) only makes eviction less
            // informed; the call that used the file must not fail for it.
            let _ = self.flush(catalog);
        }
    }

    /// Write every noted use now.
    pub(crate) fn flush(&self, catalog: &Catalog) -> Result<()> {
        let uses = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.since = Instant::now();
            std::mem::take(&mut pending.uses)
        };
        catalog.note_uses(&uses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileRecord;

    fn catalog(dir: &std::path::Path) -> Catalog {
        Catalog::open(&dir.join("catalog")).unwrap_or_else(|_| panic!("open"))
    }

    fn add(catalog: &Catalog, path: &str, sha: &str) {
        let record = FileRecord {
            sha256: sha.into(),
            size: 10,
            git_oid: None,
        };
        catalog.add_file("org/a", "c1", path, &record).unwrap();
    }

    #[test]
    fn uses_are_written_in_one_go_and_never_go_back_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(dir.path());
        add(&catalog, "a.bin", "aa");
        add(&catalog, "b.bin", "bb");
        let admitted = catalog.used_files().unwrap();
        assert!(
            admitted.iter().all(|f| f.last_used > 0),
            "a new file counts as used"
        );

        let log = UsageLog::default();
        log.note(&catalog, "org/a", "c1", "a.bin");
        log.note(&catalog, "org/a", "c1", "gone.bin");
        assert_eq!(
            catalog.used_files().unwrap(),
            admitted,
            "not written before it is due"
        );
        log.flush(&catalog).unwrap();
        let after = catalog.used_files().unwrap();
        assert!(after[0].last_used >= admitted[0].last_used);
        assert_eq!(after[1], admitted[1], "b.bin was not used");

        let mut old = HashMap::new();
        old.insert(("org/a".into(), "c1".into(), "a.bin".into()), 1);
        catalog.note_uses(&old).unwrap();
        assert_eq!(
            catalog.used_files().unwrap()[0].last_used,
            after[0].last_used
        );
    }

    #[test]
    fn budget_and_pins_are_kept_in_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(dir.path());
        assert_eq!(catalog.max_size().unwrap(), None);
        catalog.set_max_size(Some(5 << 30)).unwrap();
        assert_eq!(catalog.max_size().unwrap(), Some(5 << 30));
        let reopened = self::catalog(dir.path());
        assert_eq!(
            reopened.max_size().unwrap(),
            Some(5 << 30),
            "every handle sees it"
        );
        catalog.set_max_size(None).unwrap();
        assert_eq!(reopened.max_size().unwrap(), None);

        let repo = Pin {
            repo_id: "org/a".into(),
            quant: None,
        };
        let variant = Pin {
            repo_id: "org/a".into(),
            quant: Some("Q4_K_M".into()),
        };
        assert!(catalog.set_pin(&repo, true).unwrap());
        assert!(!catalog.set_pin(&repo, true).unwrap(), "already pinned");
        assert!(catalog.set_pin(&variant, true).unwrap());
        assert_eq!(
            reopened.pins().unwrap(),
            vec![repo.clone(), variant.clone()]
        );
        assert!(catalog.set_pin(&repo, false).unwrap());
        assert!(!catalog.set_pin(&repo, false).unwrap());
        assert_eq!(reopened.pins().unwrap(), vec![variant]);
    }
}
