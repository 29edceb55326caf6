//! The snapshot view: the repo's files under their own names, laid out as a huggingface_hub
//! cache (`hub/models--{org}--{name}/snapshots/{commit}/{path}` plus `refs/{revision}`), each
//! entry a link to its blob. This is what `file_path` returns, so split GGUF shards and ONNX
//! external data resolve by name, mmap works, and huggingface_hub reads it offline.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub(crate) struct SnapshotView {
    root: PathBuf,
}

/// `org/name` -> `models--org--name`, huggingface_hub's folder name for a model repo.
pub(crate) fn repo_folder(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

impl SnapshotView {
    pub(crate) fn open(root: PathBuf) -> Result<SnapshotView> {
        fs::create_dir_all(&root).map_err(|e| Error::io("could not create", &root, e))?;
        Ok(SnapshotView { root })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The view path of a file. `repo_id`, `commit` and `path` must already be validated.
    pub(crate) fn file_path(&self, repo_id: &str, commit: &str, path: &str) -> PathBuf {
        let mut p = self
            .root
            .join(repo_folder(repo_id))
            .join("snapshots")
            .join(commit);
        for segment in path.split('/') {
            p.push(segment);
        }
        p
    }

    /// Point `refs/{revision}` at `commit`, as huggingface_hub does.
    pub(crate) fn set_ref(&self, repo_id: &str, revision: &str, commit: &str) -> Result<()> {
        let mut p = self.root.join(repo_folder(repo_id)).join("refs");
        for segment in revision.split('/') {
            p.push(segment);
        }
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io("could not create", parent, e))?;
        }
        if fs::read_to_string(&p).ok().as_deref() == Some(commit) {
            return Ok(());
        }
        let tmp = p.with_extension("tabcache-tmp");
        fs::write(&tmp, commit).map_err(|e| Error::io("could not write", &tmp, e))?;
        fs::rename(&tmp, &p).map_err(|e| Error::io("could not write", &p, e))
    }

    /// Make the view entry for `repo@commit:path` name `blob`. Tries a relative symlink, then a
    /// hard link, then a copy; an existing entry is replaced atomically.
    pub(crate) fn link(
        &self,
        repo_id: &str,
        commit: &str,
        path: &str,
        blob: &Path,
    ) -> Result<PathBuf> {
        let entry = self.file_path(repo_id, commit, path);
        let parent = entry.parent().expect("a view entry always has a parent");
        fs::create_dir_all(parent).map_err(|e| Error::io("could not create", parent, e))?;
        if points_to(&entry, blob) {
            return Ok(entry);
        }
        // Named so that is_link_in_progress knows it.
        let tmp = parent.join(format!(
            ".{}.tabcache-link",
            entry
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        let _ = fs::remove_file(&tmp);
        let linked =
            symlink(&relative_to(parent, blob), &tmp).is_ok() || fs::hard_link(blob, &tmp).is_ok();
        if !linked {
            fs::copy(blob, &tmp).map_err(|e| {
                Error::io("could not place the file in the snapshot view at", &tmp, e)
            })?;
        }
        fs::rename(&tmp, &entry).map_err(|e| {
            Error::io(
                "could not place the file in the snapshot view at",
                &entry,
                e,
            )
        })?;
        Ok(entry)
    }

    pub(crate) fn remove_repo(&self, repo_id: &str) -> Result<()> {
        let dir = self.root.join(repo_folder(repo_id));
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("could not remove", &dir, e)),
        }
    }

    /// Remove one file's view entry (absent is fine).
    pub(crate) fn remove_file(&self, repo_id: &str, commit: &str, path: &str) -> Result<()> {
        let entry = self.file_path(repo_id, commit, path);
        match fs::remove_file(&entry) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("could not remove", &entry, e)),
        }
    }
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

/// Whether a file name is one of the view's own temporary names (`.name.tabcache-link`).
pub(crate) fn is_link_in_progress(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tabcache-link")
}

fn points_to(entry: &Path, blob: &Path) -> bool {
    match (fs::canonicalize(entry), fs::canonicalize(blob)) {
        (Ok(a), Ok(b)) => a == b,
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

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

#[cfg(not(any(unix, windows)))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no symlinks",
    ))
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
