//! The sled catalog: metadata only, never file bytes. Trees and keys:
//! - `repos`: repo id -> [`RepoRecord`] (JSON)
//! - `refs`: `repo \0 revision` -> commit
//! - `files`: `repo \0 commit \0 path` -> [`FileRecord`]
//! - `blobs`: sha256 hex -> [`BlobRecord`] (size, how many file records point at it)
//! - `git_oids`: git blob sha1 hex -> sha256 hex (so small files dedup before any transfer)
//! - `partials`: transfer key -> [`PartialState`] (which ranges of a `.part` are durable)
//! - `meta`: `schema` -> version
//!
//! Every change that touches several trees is one sled transaction, and every commit point
//! ends in a flush, so what the catalog says is durable. Writers are serialized by a mutex
//! because some changes read a prefix before they transact (sled transactions cannot scan).

use std::sync::Mutex;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::download::PartialState;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::RepoRecord;

const SCHEMA_VERSION: u64 = 1;
/// sled's page cache; metadata is small, so keep the footprint small (default is 1 GiB).
const CACHE_CAPACITY: u64 = 16 * 1024 * 1024;

/// A cached file: which blob holds its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_oid: Option<String>,
}

/// A stored blob and how many file records reference it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    pub refs: u64,
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

pub(crate) struct Catalog {
    db: sled::Db,
    repos: sled::Tree,
    refs: sled::Tree,
    files: sled::Tree,
    blobs: sled::Tree,
    git_oids: sled::Tree,
    partials: sled::Tree,
    writer: Mutex<()>,
}

fn catalog_err(err: sled::Error) -> Error {
    match err {
        sled::Error::Io(e) => Error::new(ErrorKind::Io, format!("catalog I/O error: {e}")),
        sled::Error::Corruption { .. } => Error::new(
            ErrorKind::Corrupt,
            format!("the catalog is damaged ({err}); move the cache directory aside and let tabcache rebuild it"),
        ),
        other => Error::internal(format!("catalog error: {other}")),
    }
}

fn tx_err(err: TransactionError<Error>) -> Error {
    match err {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => catalog_err(e),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("catalog records always serialize")
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("a {what} record in the catalog is unreadable ({e}); run `tabcache verify --repair`"),
        )
    })
}

fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn key3(a: &str, b: &str, c: &str) -> Vec<u8> {
    let mut k = key2(a, b);
    k.push(0);
    k.extend_from_slice(c.as_bytes());
    k
}

fn prefix(repo: &str) -> Vec<u8> {
    let mut k = repo.as_bytes().to_vec();
    k.push(0);
    k
}

impl Catalog {
    pub(crate) fn open(path: &std::path::Path) -> Result<Catalog> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_CAPACITY)
            .open()
            .map_err(|e| {
                catalog_err(e).context(format!("could not open the catalog at {}", path.display()))
            })?;
        let tree = |name: &str| db.open_tree(name).map_err(catalog_err);
        let catalog = Catalog {
            repos: tree("repos")?,
            refs: tree("refs")?,
            files: tree("files")?,
            blobs: tree("blobs")?,
            git_oids: tree("git_oids")?,
            partials: tree("partials")?,
            db,
            writer: Mutex::new(()),
        };
        match catalog.db.get("schema").map_err(catalog_err)? {
            None => {
                catalog
                    .db
                    .insert("schema", &SCHEMA_VERSION.to_be_bytes())
                    .map_err(catalog_err)?;
                catalog.flush()?;
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_be_bytes() => {}
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the catalog at {} was written by another version of tabcache; use that version or a new cache directory",
                        path.display()
                    ),
                ))
            }
        }
        Ok(catalog)
    }

    fn write_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the guard leaves no half-state: changes are transactions.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(catalog_err)
    }

    pub(crate) fn repo(&self, repo: &str) -> Result<Option<RepoRecord>> {
        match self.repos.get(repo).map_err(catalog_err)? {
            Some(v) => decode(&v, "repo").map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn repo_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for item in self.repos.iter() {
            let (k, _) = item.map_err(catalog_err)?;
            ids.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(ids)
    }

    /// Store a scanned repo and point `revision` at its commit.
    pub(crate) fn put_repo(&self, record: &RepoRecord) -> Result<()> {
        let _w = self.write_guard();
        (&self.repos, &self.refs)
            .transaction(|(repos, refs)| {
                repos.insert(record.repo_id.as_bytes(), encode(record))?;
                refs.insert(
                    key2(&record.repo_id, &record.revision),
                    record.commit.as_bytes(),
                )?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.flush()
    }

    /// Apply `change` to the stored record, if there is one.
    pub(crate) fn update_repo(&self, repo: &str, change: impl Fn(&mut RepoRecord)) -> Result<()> {
        let _w = self.write_guard();
        if let Some(mut record) = self.repo(repo)? {
            change(&mut record);
            self.repos
                .insert(repo.as_bytes(), encode(&record))
                .map_err(catalog_err)?;
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn set_ref(&self, repo: &str, revision: &str, commit: &str) -> Result<()> {
        let _w = self.write_guard();
        self.refs
            .insert(key2(repo, revision), commit.as_bytes())
            .map_err(catalog_err)?;
        Ok(())
    }

    pub(crate) fn commit_for(&self, repo: &str, revision: &str) -> Result<Option<String>> {
        Ok(self
            .refs
            .get(key2(repo, revision))
            .map_err(catalog_err)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub(crate) fn file(&self, repo: &str, commit: &str, path: &str) -> Result<Option<FileRecord>> {
        match self
            .files
            .get(key3(repo, commit, path))
            .map_err(catalog_err)?
        {
            Some(v) => decode(&v, "file").map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn blob(&self, sha256: &str) -> Result<Option<BlobRecord>> {
        match self.blobs.get(sha256).map_err(catalog_err)? {
            Some(v) => decode(&v, "blob").map(Some),
            None => Ok(None),
        }
    }

    /// Every blob record: (sha256, record).
    pub(crate) fn blobs(&self) -> Result<Vec<(String, BlobRecord)>> {
        let mut out = Vec::new();
        for item in self.blobs.iter() {
            let (k, v) = item.map_err(catalog_err)?;
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                decode(&v, "blob")?,
            ));
        }
        Ok(out)
    }

    pub(crate) fn sha256_for_git_oid(&self, git_oid: &str) -> Result<Option<String>> {
        Ok(self
            .git_oids
            .get(git_oid)
            .map_err(catalog_err)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
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
        let _w = self.write_guard();
        let key = key3(repo, commit, path);
        let orphans = (&self.files, &self.blobs, &self.git_oids)
            .transaction(|(files, blobs, git_oids)| {
                let mut orphans = Vec::new();
                if let Some(old) = files.get(&key)? {
                    let old: FileRecord =
                        decode(&old, "file").map_err(ConflictableTransactionError::Abort)?;
                    if old.sha256 == record.sha256 {
                        return Ok(orphans);
                    }
                    if release(blobs, &old.sha256)? {
                        orphans.push(old.sha256);
                    }
                }
                let blob = match blobs.get(record.sha256.as_bytes())? {
                    Some(v) => {
                        let mut b: BlobRecord =
                            decode(&v, "blob").map_err(ConflictableTransactionError::Abort)?;
                        b.refs += 1;
                        b
                    }
                    None => BlobRecord {
                        size: record.size,
                        refs: 1,
                    },
                };
                blobs.insert(record.sha256.as_bytes(), encode(&blob))?;
                files.insert(key.as_slice(), encode(record))?;
                if let Some(oid) = &record.git_oid {
                    git_oids.insert(oid.as_bytes(), record.sha256.as_bytes())?;
                }
                Ok(orphans)
            })
            .map_err(tx_err)?;
        self.flush()?;
        Ok(orphans)
    }

    /// Forget `repo` entirely: its record, refs and file records. Returns the blobs no one
    /// references any more, for the caller to delete after this commit.
    pub(crate) fn remove_repo(&self, repo: &str) -> Result<Vec<String>> {
        let _w = self.write_guard();
        let file_keys: Vec<sled::IVec> = self
            .files
            .scan_prefix(prefix(repo))
            .keys()
            .collect::<std::result::Result<_, _>>()
            .map_err(catalog_err)?;
        let ref_keys: Vec<sled::IVec> = self
            .refs
            .scan_prefix(prefix(repo))
            .keys()
            .collect::<std::result::Result<_, _>>()
            .map_err(catalog_err)?;
        let orphans = (
            &self.repos,
            &self.refs,
            &self.files,
            &self.blobs,
            &self.git_oids,
        )
            .transaction(|(repos, refs, files, blobs, git_oids)| {
                let mut orphans = Vec::new();
                repos.remove(repo.as_bytes())?;
                for k in &ref_keys {
                    refs.remove(k)?;
                }
                for k in &file_keys {
                    if let Some(v) = files.remove(k)? {
                        let rec: FileRecord =
                            decode(&v, "file").map_err(ConflictableTransactionError::Abort)?;
                        if release(blobs, &rec.sha256)? {
                            if let Some(oid) = &rec.git_oid {
                                git_oids.remove(oid.as_bytes())?;
                            }
                            orphans.push(rec.sha256);
                        }
                    }
                }
                Ok(orphans)
            })
            .map_err(tx_err)?;
        self.flush()?;
        Ok(orphans)
    }

    pub(crate) fn partial(&self, key: &str) -> Result<Option<PartialState>> {
        match self.partials.get(key).map_err(catalog_err)? {
            Some(v) => decode(&v, "partial download").map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn save_partial(&self, key: &str, state: &PartialState) -> Result<()> {
        self.partials
            .insert(key, encode(state))
            .map_err(catalog_err)?;
        self.flush()
    }

    pub(crate) fn clear_partial(&self, key: &str) -> Result<()> {
        self.partials.remove(key).map_err(catalog_err)?;
        self.flush()
    }

    pub(crate) fn partial_keys(&self) -> Result<Vec<String>> {
        self.partials
            .iter()
            .keys()
            .map(|k| {
                k.map(|k| String::from_utf8_lossy(&k).into_owned())
                    .map_err(catalog_err)
            })
            .collect()
    }

    pub(crate) fn totals(&self) -> Result<CatalogTotals> {
        let mut totals = CatalogTotals::default();
        let mut repos = std::collections::BTreeSet::new();
        for item in self.files.iter() {
            let (k, v) = item.map_err(catalog_err)?;
            let rec: FileRecord = decode(&v, "file")?;
            totals.files += 1;
            totals.logical_bytes += rec.size;
            let repo_end = k.iter().position(|&b| b == 0).unwrap_or(k.len());
            repos.insert(k[..repo_end].to_vec());
        }
        for item in self.repos.iter().keys() {
            repos.insert(item.map_err(catalog_err)?.to_vec());
        }
        totals.repos = repos.len() as u64;
        for (_, blob) in self.blobs()? {
            totals.blobs += 1;
            totals.blob_bytes += blob.size;
        }
        Ok(totals)
    }

    /// Every file record (or those of one repo): `(repo, commit, path, record)`.
    pub(crate) fn file_records(
        &self,
        repo: Option<&str>,
    ) -> Result<Vec<(String, String, String, FileRecord)>> {
        let iter = match repo {
            Some(repo) => self.files.scan_prefix(prefix(repo)),
            None => self.files.iter(),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(catalog_err)?;
            let key = String::from_utf8_lossy(&k);
            let mut parts = key.splitn(3, '\0');
            let (Some(r), Some(c), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    "a file key in the catalog is malformed; run `tabcache verify --repair`",
                ));
            };
            out.push((
                r.to_string(),
                c.to_string(),
                p.to_string(),
                decode(&v, "file")?,
            ));
        }
        Ok(out)
    }

    /// Forget one file record. Returns the blobs whose last reference this removed.
    pub(crate) fn remove_file(&self, repo: &str, commit: &str, path: &str) -> Result<Vec<String>> {
        let _w = self.write_guard();
        let key = key3(repo, commit, path);
        let orphans = (&self.files, &self.blobs, &self.git_oids)
            .transaction(|(files, blobs, git_oids)| {
                let mut orphans = Vec::new();
                if let Some(v) = files.remove(key.as_slice())? {
                    let rec: FileRecord =
                        decode(&v, "file").map_err(ConflictableTransactionError::Abort)?;
                    if release(blobs, &rec.sha256)? {
                        if let Some(oid) = &rec.git_oid {
                            git_oids.remove(oid.as_bytes())?;
                        }
                        orphans.push(rec.sha256);
                    }
                }
                Ok(orphans)
            })
            .map_err(tx_err)?;
        self.flush()?;
        Ok(orphans)
    }

    /// Forget blob `sha256` and every file record that names it (its bytes are damaged).
    /// Returns those files as `(repo, commit, path)`.
    pub(crate) fn drop_blob(&self, sha256: &str) -> Result<Vec<(String, String, String)>> {
        let _w = self.write_guard();
        let holders: Vec<(String, String, String, FileRecord)> = self
            .file_records(None)?
            .into_iter()
            .filter(|(_, _, _, rec)| rec.sha256 == sha256)
            .collect();
        (&self.files, &self.blobs, &self.git_oids)
            .transaction(|(files, blobs, git_oids)| {
                for (repo, commit, path, rec) in &holders {
                    files.remove(key3(repo, commit, path))?;
                    if let Some(oid) = &rec.git_oid {
                        git_oids.remove(oid.as_bytes())?;
                    }
                }
                blobs.remove(sha256.as_bytes())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.flush()?;
        Ok(holders.into_iter().map(|(r, c, p, _)| (r, c, p)).collect())
    }
}

/// Drop one reference to `sha256`; true when that was the last one (the record is removed).
fn release(
    blobs: &sled::transaction::TransactionalTree,
    sha256: &str,
) -> std::result::Result<bool, ConflictableTransactionError<Error>> {
    let Some(v) = blobs.get(sha256.as_bytes())? else {
        return Ok(false);
    };
    let mut blob: BlobRecord = decode(&v, "blob").map_err(ConflictableTransactionError::Abort)?;
    blob.refs = blob.refs.saturating_sub(1);
    if blob.refs == 0 {
        blobs.remove(sha256.as_bytes())?;
        Ok(true)
    } else {
        blobs.insert(sha256.as_bytes(), encode(&blob))?;
        Ok(false)
    }
}
