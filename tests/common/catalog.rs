//! The store's invariants checked from outside the library: the catalog opened read-only with
//! SQLite, the blobs and the view read from the file system. Shared by the tests that leave a
//! cache in a state worth checking (a rebuilt catalog, a storm of killed processes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{blob_files, sha256_hex};

/// The catalog's schema version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;

/// One row of the catalog's `files` table.
#[derive(Clone, Debug)]
pub struct FileRow {
    pub repo: String,
    pub commit: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

impl FileRow {
    /// `repo@commit:path`, for messages.
    pub fn what(&self) -> String {
        format!("{}@{}:{}", self.repo, self.commit, self.path)
    }
}

/// What [`check_catalog`] read and checked.
#[derive(Debug, Default)]
pub struct CatalogCheck {
    /// Every file record.
    pub files: Vec<FileRow>,
    /// Each blob's reference count (sha256 -> refs), every blob row.
    pub refs: BTreeMap<String, u64>,
    /// Blob files checked against their rows (size, hash).
    pub blobs: u64,
    /// View links checked to resolve to their blobs.
    pub links: u64,
    /// Reference counts checked against the file records naming each blob.
    pub refcounts: u64,
    /// View links no file record stands behind (a kill between a delete's steps): not a
    /// promise of the store, only counted.
    pub stray_links: u64,
}

/// Where the view puts `repo@commit:path`.
pub fn view_path(cache: &Path, repo: &str, commit: &str, path: &str) -> PathBuf {
    cache
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(commit)
        .join(path)
}

/// Every symlink under `dir`, recursively.
pub fn view_links(dir: &Path) -> Vec<PathBuf> {
    let mut links = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return links;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_symlink() => links.push(path),
            Ok(t) if t.is_dir() => links.extend(view_links(&path)),
            _ => {}
        }
    }
    links
}

/// Every invariant of the store a consistency check can test from outside, read from the
/// catalog file at `<cache>/catalog` (read-only) and the folders beside it:
///
/// - the database passes `integrity_check` and `foreign_key_check` and has the schema version;
/// - every blob row has a file in `blobs/` of the recorded size that hashes to its name, and
///   every file in `blobs/` has a row;
/// - every blob's reference count is the number of file records naming it;
/// - every file record names a blob row of its size, and its view entry is a relative symlink
///   that resolves to that blob.
///
/// Panics on the first broken invariant; returns what it read for the caller's own checks.
pub fn check_catalog(cache: &Path) -> CatalogCheck {
    let db = Connection::open_with_flags(
        cache.join("catalog"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("the catalog is an SQLite database");
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let fk: Vec<String> = db
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(fk.is_empty(), "rows naming missing parents in: {fk:?}");
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION, "the catalog's schema version");

    let mut blobs: BTreeMap<String, (u64, u64)> = BTreeMap::new(); // sha -> (size, refs)
    let mut stmt = db.prepare("SELECT sha256, size, refs FROM blobs").unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap()
    {
        let (sha, size, refs) = row.unwrap();
        blobs.insert(sha, (size as u64, refs as u64));
    }
    let mut files: Vec<FileRow> = Vec::new();
    let mut stmt = db
        .prepare("SELECT repo_id, commit_sha, path, sha256, size FROM files")
        .unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok(FileRow {
                repo: r.get(0)?,
                commit: r.get(1)?,
                path: r.get(2)?,
                sha256: r.get(3)?,
                size: r.get::<_, i64>(4)? as u64,
            })
        })
        .unwrap()
    {
        files.push(row.unwrap());
    }
    let mut checked = CatalogCheck::default();

    // Every blob row: its file exists, has the recorded size and hashes to its name.
    for (sha, (size, _)) in &blobs {
        let path = cache.join("blobs").join(sha);
        let meta = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("blob {sha} is recorded but its file is not there: {e}"));
        assert!(meta.is_file(), "blob {sha} is not a file");
        assert_eq!(meta.len(), *size, "blob {sha}: size on disk vs recorded");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            &sha256_hex(&bytes),
            sha,
            "blob {sha} does not hash to its name"
        );
        checked.blobs += 1;
    }
    // No blob file the catalog does not know.
    for name in blob_files(cache) {
        assert!(
            blobs.contains_key(&name),
            "blobs/{name} is on disk but not recorded"
        );
    }
    // Reference counts are the number of file records naming each blob.
    let mut named: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &files {
        *named.entry(f.sha256.as_str()).or_default() += 1;
    }
    for (sha, (_, refs)) in &blobs {
        let n = named.get(sha.as_str()).copied().unwrap_or(0);
        assert_eq!(
            *refs, n,
            "blob {sha}: refs {refs} but {n} file records name it"
        );
        checked.refcounts += 1;
    }
    // Every file record: a recorded blob of its size (so, by the checks above, a blob file of
    // that size hashing to the record's sha256), and a view link that resolves to it.
    for f in &files {
        let what = f.what();
        let sha = &f.sha256;
        let (blob_size, _) = blobs
            .get(sha)
            .unwrap_or_else(|| panic!("{what} names blob {sha}, which has no blobs row"));
        assert_eq!(*blob_size, f.size, "{what}: size vs its blob's");
        let link = view_path(cache, &f.repo, &f.commit, &f.path);
        let target = std::fs::read_link(&link)
            .unwrap_or_else(|e| panic!("{what}: no view link at {}: {e}", link.display()));
        assert!(
            target.is_relative(),
            "{what}: view link {target:?} is absolute"
        );
        let resolved = link.parent().unwrap().join(&target).canonicalize();
        assert_eq!(
            resolved.ok(),
            cache.join("blobs").join(sha).canonicalize().ok(),
            "{what}: the view link {target:?} does not point at its blob"
        );
        checked.links += 1;
    }
    let recorded: BTreeSet<PathBuf> = files
        .iter()
        .map(|f| view_path(cache, &f.repo, &f.commit, &f.path))
        .collect();
    checked.stray_links = view_links(&cache.join("hub"))
        .into_iter()
        .filter(|l| !recorded.contains(l))
        .count() as u64;
    checked.files = files;
    checked.refs = blobs
        .into_iter()
        .map(|(sha, (_, refs))| (sha, refs))
        .collect();
    checked
}
