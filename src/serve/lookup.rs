//! What the server can deliver, read from the catalog: the commit a revision names, a cached
//! file's record, the cached files of a commit, and, when something is missing, which of the
//! Hub's three "not found" answers it is (the repo, the revision, or the entry). Every read
//! goes through the `ModelCache`'s store, so the rules are the library's: a ref the catalog
//! recorded or a commit sha, and a file counts only while its blob is present. Blocking
//! (SQLite); the server calls these off its async workers.

use crate::digest::to_hex;
use crate::error::Result;
use crate::store::FileRecord;
use crate::ModelCache;

/// A cached file as the Hub describes it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) path: String,
    pub(crate) record: FileRecord,
}

impl Entry {
    /// Whether the Hub keeps this file in LFS. The catalog holds a git blob id exactly for the
    /// files the Hub listed (or resolved) by one, the non-LFS files; an LFS file is known by its
    /// sha256 alone.
    pub(crate) fn is_lfs(&self) -> bool {
        self.record.git_oid.is_none()
    }

    /// The `ETag` the Hub sends for the file's bytes: the sha256 for LFS files, the git blob id
    /// for the others (bare; quoted on the wire).
    pub(crate) fn etag(&self) -> &str {
        self.record
            .git_oid
            .as_deref()
            .unwrap_or(&self.record.sha256)
    }

    /// What git stores for an LFS file: its pointer's blob id and size, which the Hub's tree
    /// listing gives as the entry's `oid` and `size`. The pointer text is fixed by the LFS
    /// spec, so these are the Hub's own values.
    pub(crate) fn lfs_pointer(&self) -> (String, u64) {
        let pointer = format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
            self.record.sha256, self.record.size
        );
        (
            to_hex(&crate::digest::git_blob_sha1(pointer.as_bytes())),
            pointer.len() as u64,
        )
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

/// The cached files of one repo at one commit.
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
            let entry = Entry {
                path: path.to_string(),
                record,
            };
            return Ok(Ok((commit.clone(), entry)));
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
        .map(|(_, _, path, record)| Entry { path, record })
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
