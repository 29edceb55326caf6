//! Rebuilding a lost catalog from what is on disk. Blobs are named by their sha256 and the
//! snapshot view says which repo, commit and path each one is, so the two together restore
//! every file record: a deleted or damaged catalog, or one from the sled-based releases, costs
//! no transfer. Manifests (the listing of each repo, its variants) are not on disk; the next
//! online `scan_repo` restores them.
//!
//! Blobs are trusted by name here, as on every read: they are written only after their hash
//! was verified and are read-only since (`verify` re-hashes them on demand).

use std::fs;
use std::path::Path;

use super::blobs::BlobDir;
use super::catalog::RestoredFile;
use super::view::{entries_sorted, files_below, is_link_in_progress, read_ref};
use crate::digest::{git_blob_sha1_of, is_hex_of_len, sha256_file, to_hex};
use crate::dir::file_meta;
use crate::error::Result;
use crate::validate;

/// What the disk says: every blob (sha256, size), every view entry that names one, every ref.
pub(crate) struct OnDisk {
    pub(crate) blobs: Vec<(String, u64)>,
    pub(crate) files: Vec<RestoredFile>,
    /// (repo, revision, commit)
    pub(crate) refs: Vec<(String, String, String)>,
    /// (git blob sha1, sha256) of every blob small enough to be a plain git file: listings
    /// name those by git id only, so without this a scan could not find them held.
    pub(crate) git_oids: Vec<(String, String)>,
}

/// The Hub keeps files above this size in LFS (named by sha256); only smaller ones can be
/// listed by their git blob id.
const GIT_FILE_MAX: u64 = 10 << 20;

/// Read `blobs/` and the view under `hub_root`.
///
/// One pass on purpose: blobs and view entries are read in one walk so that every link is
/// matched against the blob set as it is met.
pub(crate) fn read(blobs: &BlobDir, hub_root: &Path) -> Result<OnDisk> {
    let mut disk = OnDisk {
        blobs: Vec::new(),
        files: Vec::new(),
        refs: Vec::new(),
        git_oids: Vec::new(),
    };
    for name in blobs.list()? {
        if !is_hex_of_len(&name, 32) {
            continue; // not a blob name: recovery removes it
        }
        // Only regular files are blobs; a link or FIFO at a blob's name is left for recovery
        // to remove, never read through.
        let Ok(mut file) = blobs.open_blob(&name) else {
            continue;
        };
        let Ok(meta) = file_meta(&file) else {
            continue;
        };
        if meta.len <= GIT_FILE_MAX {
            if let Ok(oid) = git_blob_sha1_of(&mut file, meta.len, &blobs.path(&name)) {
                disk.git_oids.push((to_hex(&oid), name.clone()));
            }
        }
        disk.blobs.push((name, meta.len));
    }
    let sizes: std::collections::HashMap<&str, u64> =
        disk.blobs.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    let mut files = Vec::new();
    // Folders of the view are never links (the view makes none): one planted there is not
    // entered, so nothing outside the cache is read as if it were the view.
    let real_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    for repo_dir in entries_sorted(hub_root)? {
        if !real_dir(&repo_dir) {
            continue;
        }
        let folder = file_name(&repo_dir);
        let Some(repo) = folder
            .strip_prefix("models--")
            .map(|f| f.replacen("--", "/", 1))
        else {
            continue;
        };
        if validate::repo_id(&repo).is_err() {
            continue;
        }
        let snapshots = repo_dir.join("snapshots");
        let commit_dirs = if real_dir(&snapshots) {
            entries_sorted(&snapshots)?
        } else {
            Vec::new()
        };
        for commit_dir in commit_dirs {
            let commit = file_name(&commit_dir);
            if validate::revision(&commit).is_err() || !real_dir(&commit_dir) {
                continue;
            }
            let mut entries = Vec::new();
            files_below(&commit_dir, "", &mut entries)?;
            for (path, entry) in entries {
                let name = path.rsplit('/').next().unwrap_or_default();
                if is_link_in_progress(name) || validate::repo_path(&path).is_err() {
                    continue;
                }
                if let Some(sha256) = blob_of(&entry, blobs)? {
                    if let Some(&size) = sizes.get(sha256.as_str()) {
                        files.push(RestoredFile {
                            repo: repo.clone(),
                            commit: commit.clone(),
                            path,
                            sha256,
                            size,
                        });
                    }
                }
            }
        }
        let refs = repo_dir.join("refs");
        let mut names = Vec::new();
        if real_dir(&refs) {
            files_below(&refs, "", &mut names)?;
        }
        for (revision, file) in names {
            if validate::revision(&revision).is_err() || revision.ends_with(".tabcache-tmp") {
                continue;
            }
            let commit = read_ref(&file).unwrap_or_default();
            if validate::revision(&commit).is_ok() {
                disk.refs.push((repo.clone(), revision, commit));
            }
        }
    }
    disk.files = files;
    Ok(disk)
}

/// The blob a view entry stands for: a link's target name when it points into `blobs/`, or
/// for a hard link or copy (where the platform has no symlinks) the hash of its bytes.
fn blob_of(entry: &Path, blobs: &BlobDir) -> Result<Option<String>> {
    let Ok(meta) = fs::symlink_metadata(entry) else {
        return Ok(None);
    };
    if meta.file_type().is_symlink() {
        let Ok(target) = fs::canonicalize(entry) else {
            return Ok(None); // dangling: its blob is gone
        };
        let name = file_name(&target);
        let in_blobs = is_hex_of_len(&name, 32)
            && fs::canonicalize(blobs.path(&name)).is_ok_and(|b| b == target);
        return Ok(in_blobs.then_some(name));
    }
    if !meta.is_file() {
        return Ok(None);
    }
    let sha = to_hex(&sha256_file(entry)?);
    Ok(blobs.exists(&sha).then_some(sha))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
