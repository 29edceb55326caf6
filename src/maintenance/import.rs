//! `import_hf_cache` on [`ModelCache`]: adopting the files an existing huggingface_hub cache
//! holds, each checked against the hash its blob is named by, so that they are never
//! downloaded again.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use crate::cache::ModelCache;
use crate::digest::{is_hex_of_len, read_file_chunks, to_hex};
use crate::dir::file_meta;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::{ProgressFn, Reporter, Watch};
use crate::store::{entries_sorted, files_below, read_ref, Adopted, FileRecord};
use crate::validate;

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

impl ModelCache {
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
        self.import_hf_refs(repo_id, &folder.join("refs"), &commits, report)?;
        Ok(any)
    }

    /// Record the revisions in a `refs/` folder that point at `commits` (the snapshots just
    /// imported) and that this cache does not know yet.
    fn import_hf_refs(
        &self,
        repo_id: &str,
        refs: &Path,
        commits: &BTreeSet<String>,
        report: &mut ImportReport,
    ) -> Result<()> {
        let store = self.store();
        if refs.is_dir() {
            let mut ref_files = Vec::new();
            files_below(refs, "", &mut ref_files)?;
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
        Ok(())
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
        let record = self.checked_record(&mut file, &real, &blob_name, lfs, report, watch)?;
        match store.adopt_file(&file, &real, repo_id, commit, path, &record)? {
            Adopted::Linked => report.blobs_linked += 1,
            Adopted::Copied => report.blobs_copied += 1,
            Adopted::AlreadyHeld => {}
        }
        report.files_imported += 1;
        report.bytes_imported = report.bytes_imported.saturating_add(record.size);
        Ok(())
    }

    /// The record of the open file `file` (at `real`) whose blob is named `blob_name` (a
    /// sha256 when `lfs`, else a git blob sha1): from the store when it already holds that
    /// content, else from hashing the file, which must match its name (`Corrupt` if not).
    fn checked_record(
        &self,
        file: &mut fs::File,
        real: &Path,
        blob_name: &str,
        lfs: bool,
        report: &mut ImportReport,
        watch: &Watch,
    ) -> Result<FileRecord> {
        let store = self.store();
        // Content this cache already verified needs no second hashing.
        let held = if lfs {
            store.held_blob(Some(blob_name), None)?
        } else {
            store.held_blob(None, Some(blob_name))?
        };
        Ok(match held {
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
                git_oid: (!lfs).then(|| blob_name.to_string()),
            },
            None => {
                let (sha256, git_sha1, size) = hash_for_import(file, real, watch)?;
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
