//! The catalog: an SQLite database (`<cache>/catalog`) of metadata only, never file bytes.
//! Tables (schema version in `PRAGMA user_version`, forward migrations in [`MIGRATIONS`]):
//! - `repos`: repo id -> [`RepoRecord`] (JSON)
//! - `refs`: (repo, revision) -> commit
//! - `files`: (repo, commit, path) -> blob sha256, size, git oid ([`FileRecord`])
//! - `blobs`: sha256 -> size, how many `files` rows name it (kept in the same transaction as
//!   the rows, so a blob's last reference is known without a count)
//! - `git_oids`: git blob sha1 -> sha256 (so small files dedup before any transfer)
//! - `partials`: transfer key -> [`PartialState`] (which ranges of a `.part` are durable)
//! - `meta`: small facts about the catalog itself (the last rebuild, the disk budget)
//! - `pins`: repos and variants the budget never evicts (see `usage`)
//! - `xet_chunks`: (xorb, chunk index, blob) -> offset, length, chunk hash (see `chunks`)
//!
//! Why SQLite: many processes share one cache (a Python host, C engines, the CLI, a server),
//! and SQLite is the embedded store built and tested for exactly that: WAL lets readers run
//! beside a writer in another process, a crashed process never leaves a lock behind, and
//! `synchronous=FULL` makes every commit durable before it returns.
//!
//! Every change that touches several rows is one `BEGIN IMMEDIATE` transaction (it takes the
//! write lock up front, so two processes never deadlock upgrading a read to a write; the busy
//! timeout makes the second one wait its turn). Each handle keeps two connections: one for
//! writes and one for reads, so a writer waiting on another process never stalls this
//! process's look-ups. Statements are prepared once per connection (`prepare_cached`).

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::download::PartialState;
use crate::error::{Error, ErrorKind, Result};
use crate::fork::{self, QuietGuard};
use crate::manifest::RepoRecord;

/// How long a statement waits for another process's write to finish before it fails. Writes
/// are short (one record, one fsync), so this is only reached by a wedged process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Forward migrations: `MIGRATIONS[n]` takes a catalog from schema version `n` to `n + 1`.
/// Append only; never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the first SQLite schema.
    "CREATE TABLE repos (
         repo_id TEXT PRIMARY KEY,
         record TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE refs (
         repo_id TEXT NOT NULL,
         revision TEXT NOT NULL,
         commit_sha TEXT NOT NULL,
         PRIMARY KEY (repo_id, revision)
     ) WITHOUT ROWID;
     CREATE TABLE blobs (
         sha256 TEXT PRIMARY KEY,
         size INTEGER NOT NULL,
         refs INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE files (
         repo_id TEXT NOT NULL,
         commit_sha TEXT NOT NULL,
         path TEXT NOT NULL,
         sha256 TEXT NOT NULL REFERENCES blobs (sha256),
         size INTEGER NOT NULL,
         git_oid TEXT,
         PRIMARY KEY (repo_id, commit_sha, path)
     ) WITHOUT ROWID;
     CREATE INDEX files_by_blob ON files (sha256);
     CREATE TABLE git_oids (
         git_oid TEXT PRIMARY KEY,
         sha256 TEXT NOT NULL REFERENCES blobs (sha256) ON DELETE CASCADE
     ) WITHOUT ROWID;
     CREATE INDEX git_oids_by_blob ON git_oids (sha256);
     CREATE TABLE partials (
         key TEXT PRIMARY KEY,
         state TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE meta (
         key TEXT PRIMARY KEY,
         value TEXT NOT NULL
     ) WITHOUT ROWID;",
    // 1 -> 2: the disk budget. When each file was last used (milliseconds since the epoch; 0
    // for files cached before this version, which makes them the first to go), and the pins
    // that keep a repo (quant_key '') or a variant from eviction.
    "ALTER TABLE files ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE pins (
         repo_id TEXT NOT NULL,
         quant_key TEXT NOT NULL,
         PRIMARY KEY (repo_id, quant_key)
     ) WITHOUT ROWID;",
    // 2 -> 3: the Xet chunk index. Which chunk of which xorb each natively fetched blob holds
    // where, so a later file naming the same chunks copies them instead of fetching them
    // (see `chunks`). Rows go with their blob.
    "CREATE TABLE xet_chunks (
         xorb TEXT NOT NULL,
         idx INTEGER NOT NULL,
         sha256 TEXT NOT NULL REFERENCES blobs (sha256) ON DELETE CASCADE,
         offset INTEGER NOT NULL,
         len INTEGER NOT NULL,
         hash TEXT NOT NULL,
         PRIMARY KEY (xorb, idx, sha256)
     ) WITHOUT ROWID;
     CREATE INDEX xet_chunks_by_blob ON xet_chunks (sha256);",
];

/// A cached file: which blob holds its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_oid: Option<String>,
}

/// Totals over the catalog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogTotals {
    pub repos: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// What the last rebuild of the catalog from `blobs/` and `hub/` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rebuilt {
    /// File records restored from the snapshot view.
    pub files: u64,
    /// Repos those files belong to.
    pub repos: u64,
    /// When, in unix seconds.
    pub at: i64,
}

/// One file record as the rebuild restores it.
pub(crate) struct RestoredFile {
    pub(crate) repo: String,
    pub(crate) commit: String,
    pub(crate) path: String,
    pub(crate) sha256: String,
    pub(crate) size: u64,
}

pub(crate) struct Catalog {
    conns: Arc<Connections>,
}

/// One handle's connections. Every use runs in a fork-quiet section ([`crate::fork`]), so a
/// fork never copies a connection (or SQLite's global state) in the middle of a call.
struct Connections {
    writer: Mutex<Option<Connection>>,
    reader: Mutex<Option<Connection>>,
    /// The process that opened them; no other may use them (see [`Catalog::conn`]).
    opener: u32,
}

impl Drop for Connections {
    fn drop(&mut self) {
        let _quiet = fork::quiet();
        for conn in [&self.writer, &self.reader] {
            drop(conn.lock().unwrap_or_else(|p| p.into_inner()).take());
        }
    }
}

/// Every catalog open in this process, for [`forget_inherited`].
static LIVE: Mutex<Vec<Weak<Connections>>> = Mutex::new(Vec::new());

/// In a forked child: close the connections the parent opened. SQLite keeps one record per
/// open file per process, and the child has a copy of the parent's; a connection the child
/// opens itself would share it and believe it holds file locks only the parent holds. Closing
/// the copies first removes those records. Closing is safe for the parent: the child holds no
/// file locks to release, and the parent's own shared lock keeps a closing child from
/// checkpointing or deleting the write-ahead log under it.
pub(crate) fn forget_inherited() {
    let me = crate::fork::current_pid();
    let mut live = fork::lock(&LIVE);
    for conns in live.iter().filter_map(Weak::upgrade) {
        if conns.opener == me {
            continue;
        }
        for slot in [&conns.writer, &conns.reader] {
            let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(conn) = taken {
                if let Err((conn, _)) = conn.close() {
                    // Still open (it cannot be here: the child runs no statement); never
                    // retry a close of the parent's connection.
                    std::mem::forget(conn);
                }
            }
        }
    }
    live.retain(|w| w.strong_count() > 0);
}

/// Why a catalog could not be opened: damage (rebuild it) is told apart from everything else.
pub(crate) enum OpenError {
    /// Not an SQLite database, or a damaged one.
    Damaged(Error),
    Other(Error),
}

impl From<Error> for OpenError {
    fn from(e: Error) -> Self {
        OpenError::Other(e)
    }
}

fn is_damage(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// The `meta` value of `key`, if set.
pub(super) fn meta_in(c: &Connection, key: &str) -> Result<Option<String>> {
    c.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(sql_err)
}

/// Set (None: remove) the `meta` value of `key`.
pub(super) fn set_meta_in(tx: &Transaction<'_>, key: &str, value: Option<&str>) -> Result<()> {
    match value {
        Some(value) => tx
            .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute([key, value])),
        None => tx
            .prepare_cached("DELETE FROM meta WHERE key = ?1")
            .and_then(|mut s| s.execute([key])),
    }
    .map(drop)
    .map_err(sql_err)
}

/// Turn an SQLite error into ours, with what the user can do about it.
pub(super) fn sql_err(err: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    match err.sqlite_error_code() {
        Some(C::DiskFull) => Error::new(
            ErrorKind::DiskFull,
            format!("the disk is full: the catalog could not be written ({err}); free some space and retry"),
        ),
        Some(C::NotADatabase | C::DatabaseCorrupt) => Error::new(
            ErrorKind::Corrupt,
            format!("the catalog is damaged ({err}); close the programs using this cache, delete its `catalog` file and open it again: tabcache rebuilds the catalog from the files it holds, with no download"),
        ),
        Some(C::DatabaseBusy | C::DatabaseLocked) => Error::new(
            ErrorKind::Io,
            format!("the catalog stayed busy for {} s ({err}): another process holds it; retry when it has finished", BUSY_TIMEOUT.as_secs()),
        ),
        Some(C::ReadOnly | C::PermissionDenied | C::CannotOpen) => Error::new(
            ErrorKind::Io,
            format!("the catalog cannot be written ({err}); check the cache directory's permissions"),
        ),
        Some(_) => Error::new(ErrorKind::Io, format!("catalog error: {err}")),
        None => Error::internal(format!("catalog error: {err}")),
    }
}

fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("catalog records always serialize")
}

fn decode<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("a {what} record in the catalog is unreadable ({e}); run `verify` with repair, or delete the catalog file to have it rebuilt"),
        )
    })
}

/// Sizes are u64 in Rust and i64 in SQLite; no file comes near 2^63 bytes.
pub(super) fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn connect(path: &Path) -> std::result::Result<Connection, OpenError> {
    // NOFOLLOW: a link planted at `catalog` is refused, not opened (SQLite would resolve it and
    // keep its -wal and -shm files beside whatever it points to). The store opens the catalog
    // under a canonical root, so no link is left in the path. SQLite opens the -wal, -shm and
    // journal files with O_NOFOLLOW always.
    let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        OpenError::Other(
            sql_err(e).context(format!("could not open the catalog at {}", path.display())),
        )
    })?;
    let classify = |e: rusqlite::Error| {
        if is_damage(&e) {
            OpenError::Damaged(sql_err(e))
        } else {
            OpenError::Other(sql_err(e))
        }
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    // The first statement that reads the file: garbage shows up here as "not a database".
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Other(Error::new(
            ErrorKind::Io,
            format!(
                "the catalog at {} cannot use write-ahead logging (the file system refused it: journal mode {mode}); put the cache on a local disk",
                path.display()
            ),
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(classify)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(classify)?;
    Ok(conn)
}

/// Bring the schema up to [`MIGRATIONS`]`.len()`, once, whichever process gets there first.
fn migrate(conn: &mut Connection, path: &Path) -> std::result::Result<(), OpenError> {
    let latest = MIGRATIONS.len() as i64;
    let version = |c: &Connection| -> rusqlite::Result<i64> {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
    };
    let classify = |e: rusqlite::Error| {
        if is_damage(&e) {
            OpenError::Damaged(sql_err(e))
        } else {
            OpenError::Other(sql_err(e))
        }
    };
    let newer = |v: i64| {
        OpenError::Other(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the catalog at {} has schema version {v}, written by a newer tabcache (this one knows {latest}); use the newer version, or a new cache directory",
                path.display()
            ),
        ))
    };
    let current = version(conn).map_err(classify)?;
    if current == latest {
        return Ok(());
    }
    if current > latest {
        return Err(newer(current));
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    // Another process may have migrated while we waited for the write lock.
    let current = version(&tx).map_err(classify)?;
    if current > latest {
        return Err(newer(current));
    }
    for step in &MIGRATIONS[current as usize..] {
        tx.execute_batch(step).map_err(classify)?;
    }
    tx.pragma_update(None, "user_version", latest)
        .map_err(classify)?;
    tx.commit().map_err(classify)
}

impl Catalog {
    /// Open (creating and migrating if needed) the catalog at `path`.
    pub(crate) fn open(path: &Path) -> std::result::Result<Catalog, OpenError> {
        let _quiet = fork::quiet();
        let mut writer = connect(path)?;
        migrate(&mut writer, path)?;
        let reader = connect(path)?;
        let conns = Arc::new(Connections {
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(Some(reader)),
            opener: crate::fork::current_pid(),
        });
        let mut live = fork::lock(&LIVE);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&conns));
        Ok(Catalog { conns })
    }

    /// Refuse a forked child's use of a handle its parent opened.
    pub(crate) fn ensure_opened_here(&self) -> Result<()> {
        ensure_same_process(self.conns.opener)
    }

    /// A connection of this handle, refused in a forked child: SQLite connections must not
    /// cross `fork()` (see [`forget_inherited`]).
    fn conn<'a>(
        &self,
        which: &'a Mutex<Option<Connection>>,
    ) -> Result<QuietGuard<'a, Option<Connection>>> {
        self.ensure_opened_here()?;
        // A panic while holding a connection leaves no half-state: changes are transactions,
        // rolled back when dropped.
        let guard = fork::lock(which);
        if guard.is_none() {
            return Err(Error::internal("the catalog connection is closed"));
        }
        Ok(guard)
    }

    /// Run `change` in one write transaction; it commits only if `change` returns Ok.
    pub(super) fn write<T>(&self, change: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut guard = self.conn(&self.conns.writer)?;
        let conn = guard.as_mut().expect("checked by conn");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        let out = change(&tx)?;
        tx.commit().map_err(sql_err)?;
        Ok(out)
    }

    /// Run `look` on the read connection (one statement is one consistent snapshot; `look`
    /// that runs several opens its own transaction).
    pub(super) fn read<T>(&self, look: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let guard = self.conn(&self.conns.reader)?;
        look(guard.as_ref().expect("checked by conn"))
    }

    pub(crate) fn repo(&self, repo: &str) -> Result<Option<RepoRecord>> {
        self.read(|c| repo_in(c, repo))
    }

    pub(crate) fn repo_ids(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT repo_id FROM repos ORDER BY repo_id")
                .map_err(sql_err)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(sql_err)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(sql_err)
        })
    }

    /// Store the record `build` makes from the one stored now (None when new), and point its
    /// revision at its commit, in one transaction: a change another process made between our
    /// read and our write is never lost.
    pub(crate) fn upsert_repo(
        &self,
        repo: &str,
        build: impl FnOnce(Option<RepoRecord>) -> RepoRecord,
    ) -> Result<RepoRecord> {
        self.write(|tx| {
            let record = build(repo_in(tx, repo)?);
            tx.prepare_cached("INSERT OR REPLACE INTO repos (repo_id, record) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![record.repo_id, encode(&record)]))
                .map_err(sql_err)?;
            set_ref_in(tx, &record.repo_id, &record.revision, &record.commit)?;
            Ok(record)
        })
    }

    /// Apply `change` to the stored record, if there is one.
    pub(crate) fn update_repo(
        &self,
        repo: &str,
        change: impl FnOnce(&mut RepoRecord),
    ) -> Result<()> {
        self.write(|tx| {
            if let Some(mut record) = repo_in(tx, repo)? {
                change(&mut record);
                tx.prepare_cached("UPDATE repos SET record = ?2 WHERE repo_id = ?1")
                    .and_then(|mut s| s.execute(params![repo, encode(&record)]))
                    .map_err(sql_err)?;
            }
            Ok(())
        })
    }

    pub(crate) fn set_ref(&self, repo: &str, revision: &str, commit: &str) -> Result<()> {
        self.write(|tx| set_ref_in(tx, repo, revision, commit))
    }

    pub(crate) fn commit_for(&self, repo: &str, revision: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT commit_sha FROM refs WHERE repo_id = ?1 AND revision = ?2")
                .and_then(|mut s| {
                    s.query_row(params![repo, revision], |r| r.get(0))
                        .optional()
                })
                .map_err(sql_err)
        })
    }

    /// How many file records name blob `sha256` (None: no such blob).
    pub(crate) fn blob_refs(&self, sha256: &str) -> Result<Option<u64>> {
        self.read(|c| {
            c.prepare_cached("SELECT refs FROM blobs WHERE sha256 = ?1")
                .and_then(|mut s| s.query_row([sha256], |r| r.get::<_, i64>(0)).optional())
                .map_err(sql_err)
        })
        .map(|refs| refs.map(from_sql))
    }

    pub(crate) fn file(&self, repo: &str, commit: &str, path: &str) -> Result<Option<FileRecord>> {
        self.read(|c| file_in(c, repo, commit, path))
    }

    /// The file record of `path` at the commit `revision` of `repo` means: the recorded ref,
    /// else `commit_if_sha` (the revision itself, when it is a commit sha). One statement, so
    /// one read of the catalog: this is the hot path of `has_file`.
    pub(crate) fn file_at_revision(
        &self,
        repo: &str,
        revision: &str,
        path: &str,
        commit_if_sha: Option<&str>,
    ) -> Result<Option<(String, FileRecord)>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT f.commit_sha, f.sha256, f.size, f.git_oid FROM files f
                 WHERE f.repo_id = ?1 AND f.path = ?3 AND f.commit_sha = COALESCE(
                     (SELECT commit_sha FROM refs WHERE repo_id = ?1 AND revision = ?2), ?4)",
            )
            .and_then(|mut s| {
                s.query_row(params![repo, revision, path, commit_if_sha], |r| {
                    Ok((
                        r.get(0)?,
                        FileRecord {
                            sha256: r.get(1)?,
                            size: from_sql(r.get(2)?),
                            git_oid: r.get(3)?,
                        },
                    ))
                })
                .optional()
            })
            .map_err(sql_err)
        })
    }

    /// The recorded size of blob `sha256`, if it is recorded.
    pub(crate) fn blob_size(&self, sha256: &str) -> Result<Option<u64>> {
        self.read(|c| {
            c.prepare_cached("SELECT size FROM blobs WHERE sha256 = ?1")
                .and_then(|mut s| s.query_row([sha256], |r| r.get(0).map(from_sql)).optional())
                .map_err(sql_err)
        })
    }

    /// Every blob record: (sha256, size).
    pub(crate) fn blob_sizes(&self) -> Result<Vec<(String, u64)>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT sha256, size FROM blobs ORDER BY sha256")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, from_sql(r.get(1)?))))
                .map_err(sql_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
        })
    }

    pub(crate) fn sha256_for_git_oid(&self, git_oid: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT sha256 FROM git_oids WHERE git_oid = ?1")
                .and_then(|mut s| s.query_row([git_oid], |r| r.get(0)).optional())
                .map_err(sql_err)
        })
    }

    /// Record that `repo@commit:path` is held by the blob `record.sha256` (whose file must already
    /// be committed to the blob store). Replaces an older record for the same path, dropping the
    /// old blob's reference. Returns the blobs whose last reference this removed.
    pub(crate) fn add_file(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        record: &FileRecord,
    ) -> Result<Vec<String>> {
        self.write(|tx| {
            let mut orphans = Vec::new();
            if let Some(old) = file_in(tx, repo, commit, path)? {
                if old.sha256 == record.sha256 {
                    return Ok(orphans);
                }
                orphans.extend(remove_file_in(tx, repo, commit, path)?);
            }
            tx.prepare_cached(
                "INSERT INTO blobs (sha256, size, refs) VALUES (?1, ?2, 1)
                 ON CONFLICT (sha256) DO UPDATE SET refs = refs + 1",
            )
            .and_then(|mut s| s.execute(params![record.sha256, to_sql(record.size)]))
            .map_err(sql_err)?;
            // A file just cached counts as just used: the budget never evicts what it admitted.
            tx.prepare_cached(
                "INSERT INTO files (repo_id, commit_sha, path, sha256, size, git_oid, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    repo,
                    commit,
                    path,
                    record.sha256,
                    to_sql(record.size),
                    record.git_oid,
                    super::usage::now_ms()
                ])
            })
            .map_err(sql_err)?;
            if let Some(oid) = &record.git_oid {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO git_oids (git_oid, sha256) VALUES (?1, ?2)",
                )
                .and_then(|mut s| s.execute(params![oid, record.sha256]))
                .map_err(sql_err)?;
            }
            // A blob that was orphaned and is referenced again in this same change stays.
            orphans.retain(|sha| sha != &record.sha256);
            Ok(orphans)
        })
    }

    /// Forget `repo` entirely: its record, refs and file records. Returns the blobs no one
    /// references any more, for the caller to delete after this commit.
    pub(crate) fn remove_repo(&self, repo: &str) -> Result<Vec<String>> {
        self.write(|tx| {
            let files: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare_cached("SELECT commit_sha, path FROM files WHERE repo_id = ?1")
                    .map_err(sql_err)?;
                let rows = stmt
                    .query_map([repo], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(sql_err)?;
                rows.collect::<rusqlite::Result<_>>().map_err(sql_err)?
            };
            let mut orphans = Vec::new();
            for (commit, path) in &files {
                orphans.extend(remove_file_in(tx, repo, commit, path)?);
            }
            for sql in [
                "DELETE FROM repos WHERE repo_id = ?1",
                "DELETE FROM refs WHERE repo_id = ?1",
            ] {
                tx.prepare_cached(sql)
                    .and_then(|mut s| s.execute([repo]))
                    .map_err(sql_err)?;
            }
            Ok(orphans)
        })
    }

    pub(crate) fn partial(&self, key: &str) -> Result<Option<PartialState>> {
        let text: Option<String> = self.read(|c| {
            c.prepare_cached("SELECT state FROM partials WHERE key = ?1")
                .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
                .map_err(sql_err)
        })?;
        text.map(|t| decode(&t, "partial download")).transpose()
    }

    pub(crate) fn save_partial(&self, key: &str, state: &PartialState) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached("INSERT OR REPLACE INTO partials (key, state) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![key, encode(state)]))
                .map_err(sql_err)?;
            Ok(())
        })
    }

    pub(crate) fn clear_partial(&self, key: &str) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM partials WHERE key = ?1")
                .and_then(|mut s| s.execute([key]))
                .map_err(sql_err)?;
            Ok(())
        })
    }

    pub(crate) fn partial_keys(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT key FROM partials ORDER BY key")
                .map_err(sql_err)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(sql_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
        })
    }

    pub(crate) fn totals(&self) -> Result<CatalogTotals> {
        self.read(|c| {
            c.query_row(
                "SELECT
                     (SELECT COUNT(*) FROM (SELECT repo_id FROM files UNION SELECT repo_id FROM repos)),
                     (SELECT COUNT(*) FROM files),
                     (SELECT COALESCE(SUM(size), 0) FROM files),
                     (SELECT COUNT(*) FROM blobs),
                     (SELECT COALESCE(SUM(size), 0) FROM blobs)",
                [],
                |r| {
                    Ok(CatalogTotals {
                        repos: from_sql(r.get(0)?),
                        files: from_sql(r.get(1)?),
                        logical_bytes: from_sql(r.get(2)?),
                        blobs: from_sql(r.get(3)?),
                        blob_bytes: from_sql(r.get(4)?),
                    })
                },
            )
            .map_err(sql_err)
        })
    }

    /// Every file record (or those of one repo): `(repo, commit, path, record)`.
    pub(crate) fn file_records(
        &self,
        repo: Option<&str>,
    ) -> Result<Vec<(String, String, String, FileRecord)>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT repo_id, commit_sha, path, sha256, size, git_oid FROM files
                     WHERE ?1 IS NULL OR repo_id = ?1
                     ORDER BY repo_id, commit_sha, path",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([repo], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        FileRecord {
                            sha256: r.get(3)?,
                            size: from_sql(r.get(4)?),
                            git_oid: r.get(5)?,
                        },
                    ))
                })
                .map_err(sql_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
        })
    }

    /// Forget one file record. Returns the blobs whose last reference this removed.
    pub(crate) fn remove_file(&self, repo: &str, commit: &str, path: &str) -> Result<Vec<String>> {
        self.write(|tx| {
            Ok(remove_file_in(tx, repo, commit, path)?
                .into_iter()
                .collect())
        })
    }

    /// Forget blob `sha256` and every file record that names it (its bytes are damaged).
    /// Returns those files as `(repo, commit, path)`.
    pub(crate) fn drop_blob(&self, sha256: &str) -> Result<Vec<(String, String, String)>> {
        self.write(|tx| {
            let holders: Vec<(String, String, String)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT repo_id, commit_sha, path FROM files WHERE sha256 = ?1
                         ORDER BY repo_id, commit_sha, path",
                    )
                    .map_err(sql_err)?;
                let rows = stmt
                    .query_map([sha256], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(sql_err)?;
                rows.collect::<rusqlite::Result<_>>().map_err(sql_err)?
            };
            for sql in [
                "DELETE FROM files WHERE sha256 = ?1",
                "DELETE FROM blobs WHERE sha256 = ?1",
            ] {
                tx.prepare_cached(sql)
                    .and_then(|mut s| s.execute([sha256]))
                    .map_err(sql_err)?;
            }
            Ok(holders)
        })
    }

    /// Remove blob records that no file names (kept by a rebuild, see [`Catalog::restore`]);
    /// returns their sha256s, for the caller to delete the files after this commit.
    pub(crate) fn drop_unreferenced_blobs(&self) -> Result<Vec<String>> {
        self.write(|tx| {
            let shas: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached("SELECT sha256 FROM blobs WHERE refs = 0")
                    .map_err(sql_err)?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(sql_err)?;
                rows.collect::<rusqlite::Result<_>>().map_err(sql_err)?
            };
            tx.prepare_cached("DELETE FROM blobs WHERE refs = 0")
                .and_then(|mut s| s.execute([]))
                .map_err(sql_err)?;
            Ok(shas)
        })
    }

    /// Fill an empty catalog from what is on disk: `files` from the snapshot view, `refs` from
    /// its `refs/` folders, every blob file (named and sized) with the number of files naming
    /// it (zero for blobs no view entry names), and the git ids of the small ones. Records the
    /// rebuild in `meta`.
    pub(crate) fn restore(
        &self,
        blobs: &[(String, u64)],
        files: &[RestoredFile],
        refs: &[(String, String, String)],
        git_oids: &[(String, String)],
    ) -> Result<Rebuilt> {
        self.write(|tx| {
            for (sha, size) in blobs {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO blobs (sha256, size, refs) VALUES (?1, ?2, 0)",
                )
                .and_then(|mut s| s.execute(params![sha, to_sql(*size)]))
                .map_err(sql_err)?;
            }
            let mut repos = std::collections::BTreeSet::new();
            let mut restored = 0;
            for f in files {
                let inserted = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO files (repo_id, commit_sha, path, sha256, size)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![f.repo, f.commit, f.path, f.sha256, to_sql(f.size)])
                    })
                    .map_err(sql_err)?;
                if inserted == 1 {
                    tx.prepare_cached("UPDATE blobs SET refs = refs + 1 WHERE sha256 = ?1")
                        .and_then(|mut s| s.execute([&f.sha256]))
                        .map_err(sql_err)?;
                    repos.insert(f.repo.as_str());
                    restored += 1;
                }
            }
            for (repo, revision, commit) in refs {
                set_ref_in(tx, repo, revision, commit)?;
            }
            for (oid, sha) in git_oids {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO git_oids (git_oid, sha256) VALUES (?1, ?2)",
                )
                .and_then(|mut s| s.execute(params![oid, sha]))
                .map_err(sql_err)?;
            }
            let rebuilt = Rebuilt {
                files: restored,
                repos: repos.len() as u64,
                at: crate::manifest::unix_now(),
            };
            set_meta_in(tx, "rebuilt", Some(&encode(&rebuilt)))?;
            Ok(rebuilt)
        })
    }

    /// The last rebuild, if the catalog was ever rebuilt.
    pub(crate) fn last_rebuild(&self) -> Result<Option<Rebuilt>> {
        self.read(|c| meta_in(c, "rebuilt"))?
            .map(|t| decode(&t, "rebuild"))
            .transpose()
    }

    /// Whether the catalog holds nothing at all (a new cache, or a lost catalog).
    pub(crate) fn is_empty(&self) -> Result<bool> {
        self.read(|c| {
            c.query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM files) AND NOT EXISTS (SELECT 1 FROM blobs)
                    AND NOT EXISTS (SELECT 1 FROM repos) AND NOT EXISTS (SELECT 1 FROM refs)",
                [],
                |r| r.get(0),
            )
            .map_err(sql_err)
        })
    }
}

/// Refuse to use, in a forked child, a handle its parent opened.
fn ensure_same_process(opener: u32) -> Result<()> {
    let me = crate::fork::current_pid();
    if me == opener {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "this cache handle was opened by process {opener} and this is process {me}, a fork of it; \
         a handle cannot cross fork(): open the cache again in this process"
    )))
}

fn repo_in(c: &Connection, repo: &str) -> Result<Option<RepoRecord>> {
    let text: Option<String> = c
        .prepare_cached("SELECT record FROM repos WHERE repo_id = ?1")
        .and_then(|mut s| s.query_row([repo], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    text.map(|t| decode(&t, "repo")).transpose()
}

fn set_ref_in(c: &Connection, repo: &str, revision: &str, commit: &str) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO refs (repo_id, revision, commit_sha) VALUES (?1, ?2, ?3)
         ON CONFLICT (repo_id, revision) DO UPDATE SET commit_sha = excluded.commit_sha
         WHERE commit_sha != excluded.commit_sha",
    )
    .and_then(|mut s| s.execute(params![repo, revision, commit]))
    .map_err(sql_err)?;
    Ok(())
}

fn file_in(c: &Connection, repo: &str, commit: &str, path: &str) -> Result<Option<FileRecord>> {
    c.prepare_cached(
        "SELECT sha256, size, git_oid FROM files
         WHERE repo_id = ?1 AND commit_sha = ?2 AND path = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![repo, commit, path], |r| {
            Ok(FileRecord {
                sha256: r.get(0)?,
                size: from_sql(r.get(1)?),
                git_oid: r.get(2)?,
            })
        })
        .optional()
    })
    .map_err(sql_err)
}

/// Remove one file record, dropping its blob reference; returns the blob when that was its
/// last reference (its record, and its git-oid index entries, are gone too).
fn remove_file_in(
    tx: &Transaction<'_>,
    repo: &str,
    commit: &str,
    path: &str,
) -> Result<Option<String>> {
    let Some(rec) = file_in(tx, repo, commit, path)? else {
        return Ok(None);
    };
    tx.prepare_cached("DELETE FROM files WHERE repo_id = ?1 AND commit_sha = ?2 AND path = ?3")
        .and_then(|mut s| s.execute(params![repo, commit, path]))
        .map_err(sql_err)?;
    tx.prepare_cached("UPDATE blobs SET refs = MAX(refs - 1, 0) WHERE sha256 = ?1")
        .and_then(|mut s| s.execute([&rec.sha256]))
        .map_err(sql_err)?;
    let gone = tx
        .prepare_cached("DELETE FROM blobs WHERE sha256 = ?1 AND refs = 0")
        .and_then(|mut s| s.execute([&rec.sha256]))
        .map_err(sql_err)?;
    Ok((gone == 1).then_some(rec.sha256))
}
