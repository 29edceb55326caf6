//! The snapshot view: the repo's files under their own names, laid out as a huggingface_hub
//! cache (`hub/models--{org}--{name}/snapshots/{commit}/{path}` plus `refs/{revision}`), each
//! entry a link to its blob. This is what `file_path` returns, so split GGUF shards and ONNX
//! external data resolve by name, mmap works, and huggingface_hub reads it offline.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::blobs::BlobDir;
use crate::dir::{Dir, Kind};
use crate::error::{Error, Result};

/// The view under `hub/`. Every change walks from the `hub` handle one folder at a time (see
/// `crate::dir`), never through a link: a link found where the view keeps a folder (planted:
/// the view never makes one) is removed and a real folder made in its place, so nothing it
/// points to is touched; a link at a file entry's or ref's name is replaced, not followed.
pub(crate) struct SnapshotView {
    root: Dir,
}

/// `org/name` -> `models--org--name`, huggingface_hub's folder name for a model repo.
pub(crate) fn repo_folder(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

impl SnapshotView {
    pub(crate) fn open(cache_root: &Dir) -> Result<SnapshotView> {
        let root = cache_root
            .sub("hub", true)
            .map_err(|e| Error::io("could not create", &cache_root.join("hub"), e))?;
        Ok(SnapshotView { root })
    }

    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// The `hub/` handle, for checks that it is still where it was opened.
    pub(crate) fn dir(&self) -> &Dir {
        &self.root
    }

    /// The view path of a file. `repo_id`, `commit` and `path` must already be validated.
    pub(crate) fn file_path(&self, repo_id: &str, commit: &str, path: &str) -> PathBuf {
        let mut p = self.snapshot_dir(repo_id, commit);
        for segment in path.split('/') {
            p.push(segment);
        }
        p
    }

    /// The snapshot folder of `repo_id` at `commit`.
    pub(crate) fn snapshot_dir(&self, repo_id: &str, commit: &str) -> PathBuf {
        self.root
            .join(repo_folder(repo_id))
            .join("snapshots")
            .join(commit)
    }

    /// The folder reached from `hub/` through `names`. With `create`, missing folders are made
    /// and links where a folder belongs are replaced by one; without, None when any of them is
    /// not a real folder (nothing of the view's is below a link).
    fn walk<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        create: bool,
    ) -> Result<Option<Dir>> {
        let mut dir = self.root.clone();
        for name in names {
            let at = dir.join(name);
            let meta = dir
                .stat(name)
                .map_err(|e| Error::io("could not read", &at, e))?;
            match meta.map(|m| m.kind) {
                Some(Kind::Dir) => {}
                None if create => {}
                Some(Kind::Link) if create => {
                    dir.remove_file(name)
                        .map_err(|e| Error::io("could not remove the link planted at", &at, e))?;
                }
                _ if !create => return Ok(None),
                _ => {
                    return Err(Error::new(
                        crate::error::ErrorKind::Io,
                        format!(
                            "{} is not a folder, and the snapshot view needs one there; \
                             remove it (it is not part of the cache) and retry",
                            at.display()
                        ),
                    ))
                }
            }
            dir = dir
                .sub(name, create)
                .map_err(|e| Error::io("could not create", &at, e))?;
        }
        Ok(Some(dir))
    }

    /// Point `refs/{revision}` at `commit`, as huggingface_hub does.
    pub(crate) fn set_ref(&self, repo_id: &str, revision: &str, commit: &str) -> Result<()> {
        let folder = repo_folder(repo_id);
        let (parents, name) = match revision.rsplit_once('/') {
            Some((parents, name)) => (Some(parents), name),
            None => (None, revision),
        };
        let names = [folder.as_str(), "refs"]
            .into_iter()
            .chain(parents.into_iter().flat_map(|p| p.split('/')));
        let dir = self.walk(names, true)?.expect("walk creates every folder");
        let mut current = String::new();
        let held = dir
            .open_read(name)
            .and_then(|mut f| f.read_to_string(&mut current))
            .is_ok();
        if held && current == commit {
            return Ok(());
        }
        let tmp = format!("{name}.tabcache-tmp");
        let tmp_path = dir.join(&tmp);
        dir.create_fresh(&tmp)
            .and_then(|mut f| f.write_all(commit.as_bytes()))
            .map_err(|e| Error::io("could not write", &tmp_path, e))?;
        dir.rename(&tmp, &dir, name)
            .map_err(|e| Error::io("could not write", &dir.join(name), e))
    }

    /// Make the view entry for `repo@commit:path` name blob `sha256`. Tries a relative
    /// symlink, then a hard link, then a copy; an existing entry is replaced atomically.
    pub(crate) fn link(
        &self,
        repo_id: &str,
        commit: &str,
        path: &str,
        blobs: &BlobDir,
        sha256: &str,
    ) -> Result<PathBuf> {
        let entry = self.file_path(repo_id, commit, path);
        let parent_path = entry.parent().expect("a view entry always has a parent");
        let folder = repo_folder(repo_id);
        let (names, name) = entry_folders(&folder, commit, path);
        let dir = self.walk(names, true)?.expect("walk creates every folder");
        let target = relative_to(parent_path, &blobs.path(sha256));
        if points_to(&dir, name, &target, blobs, sha256) {
            return Ok(entry);
        }
        // Named so that is_link_in_progress knows it.
        let tmp = format!(".{name}.tabcache-link");
        let placing = |e| {
            Error::io(
                "could not place the file in the snapshot view at",
                &entry,
                e,
            )
        };
        dir.remove_file(&tmp).map_err(placing)?;
        let linked = dir.symlink(&target, &tmp).is_ok()
            || dir.hard_link(blobs.blobs_dir(), sha256, &tmp).is_ok();
        if !linked {
            blobs
                .open_blob(sha256)
                .and_then(|blob| dir.copy_new(&blob, &tmp))
                .map_err(placing)?;
        }
        dir.rename(&tmp, &dir, name).map_err(placing)?;
        Ok(entry)
    }

    pub(crate) fn remove_repo(&self, repo_id: &str) -> Result<()> {
        let folder = repo_folder(repo_id);
        self.root
            .remove_tree(&folder)
            .map_err(|e| Error::io("could not remove", &self.root.join(&folder), e))
    }

    /// Remove one file's view entry (absent is fine, and so is an entry below a planted link:
    /// nothing there is the view's).
    pub(crate) fn remove_file(&self, repo_id: &str, commit: &str, path: &str) -> Result<()> {
        let folder = repo_folder(repo_id);
        let (names, name) = entry_folders(&folder, commit, path);
        let Some(dir) = self.walk(names, false)? else {
            return Ok(());
        };
        dir.remove_file(name).map(drop).map_err(|e| {
            Error::io(
                "could not remove",
                &self.file_path(repo_id, commit, path),
                e,
            )
        })
    }
}

/// The folders from `hub/` down to the view entry of `path` at `commit` in the repo folder
/// `folder`, and the entry's own name.
fn entry_folders<'a>(
    folder: &'a str,
    commit: &'a str,
    path: &'a str,
) -> (impl Iterator<Item = &'a str>, &'a str) {
    let (parents, name) = match path.rsplit_once('/') {
        Some((parents, name)) => (Some(parents), name),
        None => (None, path),
    };
    let names = [folder, "snapshots", commit]
        .into_iter()
        .chain(parents.into_iter().flat_map(|p| p.split('/')));
    (names, name)
}

/// The entries of `dir`, sorted so walks and reports are stable; none when it does not exist.
pub(crate) fn entries_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let list = match fs::read_dir(dir) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("could not list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in list {
        out.push(
            entry
                .map_err(|e| Error::io("could not list", dir, e))?
                .path(),
        );
    }
    out.sort();
    Ok(out)
}

/// Every non-directory below `dir` (links are listed, never followed), as (`/`-joined path
/// relative to `dir` after `prefix`, full path): the files of a snapshot or `refs/` folder.
pub(crate) fn files_below(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<()> {
    for entry in entries_sorted(dir)? {
        let name = entry
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta =
            fs::symlink_metadata(&entry).map_err(|e| Error::io("could not read", &entry, e))?;
        if meta.is_dir() {
            files_below(&entry, &rel, out)?;
        } else {
            out.push((rel, entry));
        }
    }
    Ok(())
}

/// The commit a ref file (of this view or another huggingface_hub cache) names, read without blocking on a FIFO planted there.
pub(crate) fn read_ref(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    crate::dir::open_regular_path(path)?.read_to_string(&mut text)?;
    Ok(text.trim().to_string())
}

/// Whether a file name is one of the view's own temporary names (`.name.tabcache-link`).
pub(crate) fn is_link_in_progress(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tabcache-link")
}

/// Whether entry `name` of `dir` already stands for blob `sha256`: the very link `link` would
/// make, or (where links fail) a hard link to the blob file.
fn points_to(dir: &Dir, name: &str, target: &Path, blobs: &BlobDir, sha256: &str) -> bool {
    match dir.stat(name) {
        Ok(Some(meta)) if meta.kind == Kind::Link => dir.read_link(name).is_ok_and(|t| t == target),
        Ok(Some(meta)) if meta.kind == Kind::File && cfg!(unix) => blobs
            .blobs_dir()
            .stat(sha256)
            .ok()
            .flatten()
            .is_some_and(|b| b.kind == Kind::File && b.id == meta.id),
        _ => false,
    }
}

/// The path of `target` relative to the directory `from` (both under the same root).
fn relative_to(from: &Path, target: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for c in &to[common..] {
        rel.push(c.as_os_str());
    }
    rel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_to(
                Path::new("/c/hub/models--a--b/snapshots/x/onnx"),
                Path::new("/c/blobs/ab")
            ),
            PathBuf::from("../../../../../blobs/ab")
        );
        assert_eq!(repo_folder("org/name"), "models--org--name");
        assert_eq!(repo_folder("gpt2"), "models--gpt2");
    }
}
