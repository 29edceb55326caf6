//! What the server holds, read from the catalog: the commit a revision names, a cached
//! file's record, the cached files of a commit, and, when something is missing, which of the
//! Hub's three "not found" answers it is (the repo, the revision, or the entry). Also the
//! [`Entry`] that describes a file as the Hub does, whether cached or only upstream. Every read
//! goes through the `ModelCache`'s store, so the rules are the library's: a ref the catalog
//! recorded or a commit sha, and a file counts only while its blob is present. Blocking
//! (SQLite); the server calls these off its async workers.

use crate::digest::to_hex;
use crate::error::Result;
use crate::hub::RemoteFile;
use crate::store::FileRecord;
use crate::ModelCache;

/// A file as the Hub describes it: one the cache holds (from the catalog), or one the upstream
/// lists or resolves (pull-through). The convention is the catalog's and the listing's: a git
/// blob id exactly for the files the Hub keeps out of LFS, which an LFS file lacks.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) path: String,
    pub(crate) size: u64,
    /// The content's sha256: known for every cached file, for an upstream one when it is in
    /// LFS (the Hub gives no sha256 of the others).
    pub(crate) sha256: Option<String>,
    pub(crate) git_oid: Option<String>,
}

impl Entry {
    pub(crate) fn cached(path: &str, record: FileRecord) -> Entry {
        Entry {
            path: path.to_string(),
            size: record.size,
            sha256: Some(record.sha256),
            git_oid: record.git_oid,
        }
    }

    /// A file as the upstream's tree listing gives it.
    pub(crate) fn listed(file: RemoteFile) -> Entry {
        let lfs = file.sha256.is_some();
        Entry {
            path: file.path,
            size: file.size,
            sha256: file.sha256,
            git_oid: (!lfs).then_some(file.git_oid),
        }
    }

    /// Whether the Hub keeps this file in LFS.
    pub(crate) fn is_lfs(&self) -> bool {
        self.git_oid.is_none()
    }

    /// The `ETag` the Hub sends for the file's bytes: the sha256 for LFS files, the git blob id
    /// for the others (bare; quoted on the wire). None only for a file an upstream resolved
    /// without naming a hash.
    pub(crate) fn etag(&self) -> Option<&str> {
        self.git_oid.as_deref().or(self.sha256.as_deref())
    }

    /// What git stores for an LFS file: its pointer's blob id and size, which the Hub's tree
    /// listing gives as the entry's `oid` and `size`. The pointer text is fixed by the LFS
    /// spec, so these are the Hub's own values.
    pub(crate) fn lfs_pointer(&self) -> Option<(String, u64)> {
        let sha256 = self.sha256.as_deref()?;
        let pointer = format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {}\n",
            self.size
        );
        Some((
            to_hex(&crate::digest::git_blob_sha1(pointer.as_bytes())),
            pointer.len() as u64,
        ))
    }
}

/// Which of the Hub's `404`s a miss is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    Repo,
    Revision,
    Entry,
}

impl Miss {
    /// The `X-Error-Code` huggingface_hub turns into its exception.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Miss::Repo => "RepoNotFound",
            Miss::Revision => "RevisionNotFound",
            Miss::Entry => "EntryNotFound",
        }
    }
}

/// The files of one repo at one commit that a listing shows: the cached ones, or (with
/// pull-through) the upstream's.
pub(crate) struct Snapshot {
    pub(crate) commit: String,
    /// The repo's `pipeline_tag`, when a scan recorded one.
    pub(crate) task: Option<String>,
    /// Sorted by path.
    pub(crate) files: Vec<Entry>,
}

/// The commit of `revision` and the cached `path` there.
pub(crate) fn file(
    cache: &ModelCache,
    repo: &str,
    revision: &str,
    path: &str,
) -> Result<std::result::Result<(String, Entry), Miss>> {
    let commit = cache.commit_of(repo, revision)?;
    if let Some(commit) = &commit {
        if let Some(record) = cache.store().cached_file(repo, commit, path)? {
            return Ok(Ok((commit.clone(), Entry::cached(path, record))));
        }
    }
    let files = cache.store().file_records(Some(repo))?;
    Ok(Err(miss(cache, repo, revision, commit.as_deref(), &files)?))
}

/// Every file of `repo` cached at the commit `revision` names.
pub(crate) fn snapshot(
    cache: &ModelCache,
    repo: &str,
    revision: &str,
) -> Result<std::result::Result<Snapshot, Miss>> {
    let store = cache.store();
    let commit = cache.commit_of(repo, revision)?;
    let records = store.file_records(Some(repo))?;
    let known = match &commit {
        Some(c) => known_commit(cache, repo, revision, c, &records)?,
        None => false,
    };
    let Some(commit) = commit.filter(|_| known) else {
        return Ok(Err(miss(cache, repo, revision, None, &records)?));
    };
    let files = records
        .into_iter()
        .filter(|(_, c, _, rec)| *c == commit && store.blob_file_size(&rec.sha256).is_some())
        .map(|(_, _, path, record)| Entry::cached(&path, record))
        .collect();
    let task = store.repo(repo)?.and_then(|r| r.task);
    Ok(Ok(Snapshot {
        commit,
        task,
        files,
    }))
}

/// Whether the catalog knows `commit` as `revision` of `repo`: a recorded ref, the scanned
/// commit, or a commit some cached file belongs to (a sha nobody recorded is a revision the
/// cache does not know, not an empty one).
fn known_commit(
    cache: &ModelCache,
    repo: &str,
    revision: &str,
    commit: &str,
    records: &[(String, String, String, FileRecord)],
) -> Result<bool> {
    let store = cache.store();
    Ok(store.commit_for(repo, revision)?.is_some()
        || store.repo(repo)?.is_some_and(|r| r.commit == commit)
        || records.iter().any(|(_, c, _, _)| c == commit))
}

fn miss(
    cache: &ModelCache,
    repo: &str,
    revision: &str,
    commit: Option<&str>,
    records: &[(String, String, String, FileRecord)],
) -> Result<Miss> {
    let store = cache.store();
    if store.repo(repo)?.is_none()
        && records.is_empty()
        && store.commit_for(repo, revision)?.is_none()
    {
        return Ok(Miss::Repo);
    }
    let known = match commit {
        Some(c) => known_commit(cache, repo, revision, c, records)?,
        None => false,
    };
    Ok(if known { Miss::Entry } else { Miss::Revision })
}
