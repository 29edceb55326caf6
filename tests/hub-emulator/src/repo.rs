//! Repos on disk: validating ids and paths, reading `.emulator.json`, walking a repo folder
//! into a snapshot with git/LFS ids and a deterministic commit sha, and the hash cache that
//! keeps large files from being hashed more than once.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::data::{git_blob_sha1, git_blob_sha1_file, sha1_hex, sha256_file};
use crate::xet::XetStore;

/// The per-repo settings file; it is never listed or served.
pub const CONFIG_FILE: &str = ".emulator.json";

/// Extensions HF stores in LFS whatever their size (its default `.gitattributes`).
pub const LFS_EXTENSIONS: &[&str] = &[
    "gguf",
    "onnx",
    "onnx_data",
    "safetensors",
    "bin",
    "pt",
    "pth",
    "h5",
    "msgpack",
    "tflite",
    "ot",
    "npz",
];

/// Files at least this large are LFS files unless the builder says otherwise.
pub const DEFAULT_LFS_THRESHOLD: u64 = 1024 * 1024;

/// The contents of `<repo dir>/.emulator.json`. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepoConfig {
    /// Reported as `pipeline_tag` in model info; omitted when absent, as HF does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_tag: Option<String>,
    /// `true` (reported as `"auto"`), `"auto"`/`"manual"`, or `false`.
    pub gated: Gated,
    /// A private repo looks exactly like a missing one to a request without an allowed token.
    pub private: bool,
    /// Tokens allowed to read a gated or private repo.
    pub tokens: Vec<String>,
    /// Reported as `tags` in model info.
    pub tags: Vec<String>,
    /// Gate model info and tree listing too. HF serves them for gated repos and gates only
    /// file downloads, which is the default here.
    pub gate_api: bool,
    /// Every LFS file of the repo is Xet-backed: listed with `xetHash`, resolved with the Xet
    /// headers, and stored as xorbs in the emulator's CAS.
    pub xet: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Gated {
    Flag(bool),
    Mode(String),
}

impl Default for Gated {
    fn default() -> Self {
        Gated::Flag(false)
    }
}

impl Gated {
    pub fn is_gated(&self) -> bool {
        !matches!(self, Gated::Flag(false))
    }

    /// The value model info reports: `false`, `"auto"` or `"manual"`.
    pub fn api_value(&self) -> serde_json::Value {
        match self {
            Gated::Flag(false) => serde_json::Value::Bool(false),
            Gated::Flag(true) => serde_json::Value::String("auto".into()),
            Gated::Mode(mode) => serde_json::Value::String(mode.clone()),
        }
    }
}

/// `org/name` or legacy `name`, each part of letters, digits, `-`, `_`, `.`, not starting with
/// `-` or `.`, at most 96 characters: anything else cannot name a folder under the root.
pub fn valid_repo_id(repo_id: &str) -> bool {
    let parts: Vec<&str> = repo_id.split('/').collect();
    repo_id.len() <= 96
        && (1..=2).contains(&parts.len())
        && parts.iter().all(|part| {
            !part.is_empty()
                && !part.starts_with(['.', '-'])
                && !part.contains("..")
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// A relative `/`-separated path with no empty, `.` or `..` segment and no backslash or NUL.
pub fn valid_file_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

#[derive(Clone, Debug)]
pub struct RepoFile {
    /// Repo-relative, `/`-separated.
    pub path: String,
    pub abs: PathBuf,
    pub size: u64,
    /// The sha256 of the content, for LFS files.
    pub lfs_sha256: Option<String>,
    /// Git blob id: of the content for plain files, of the LFS pointer for LFS files.
    pub git_oid: String,
    pub pointer_size: u64,
    /// The Xet file hash (Hub hex), for the LFS files of a Xet repo.
    pub xet_hash: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RepoSnapshot {
    pub config: RepoConfig,
    /// Sorted by path.
    pub files: Vec<RepoFile>,
    /// `(path, oid)` of every folder, sorted by path.
    pub dirs: Vec<(String, String)>,
    pub commit: String,
    pub last_modified: SystemTime,
}

impl RepoSnapshot {
    pub fn resolves(&self, revision: &str) -> bool {
        revision == "main" || revision == self.commit
    }

    pub fn file(&self, path: &str) -> Option<&RepoFile> {
        self.files
            .binary_search_by(|file| file.path.as_str().cmp(path))
            .ok()
            .map(|index| &self.files[index])
    }
}

pub enum ScanError {
    NotFound,
    /// `.emulator.json` is unreadable or invalid; the message says which file and why.
    BadConfig(String),
    Io(io::Error),
}

/// What identifies one version of a file on disk. mtime alone is too coarse (file times tick
/// with the kernel clock), so the inode and ctime join it; the helpers write by rename, which
/// always gives a new inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileKey {
    size: u64,
    mtime: Option<SystemTime>,
    inode: u64,
    ctime: (i64, i64),
}

impl FileKey {
    pub fn of(metadata: &fs::Metadata) -> FileKey {
        #[cfg(unix)]
        let (inode, ctime) = {
            use std::os::unix::fs::MetadataExt;
            (metadata.ino(), (metadata.ctime(), metadata.ctime_nsec()))
        };
        #[cfg(not(unix))]
        let (inode, ctime) = (0, (0, 0));
        FileKey {
            size: metadata.len(),
            mtime: metadata.modified().ok(),
            inode,
            ctime,
        }
    }
}

#[derive(Clone)]
enum ContentHash {
    Lfs(String),
    Git(String),
}

/// Where the CDN finds a blob named by its sha256.
#[derive(Clone)]
pub struct BlobLocation {
    pub abs: PathBuf,
    pub size: u64,
    pub key: FileKey,
}

pub struct RepoStore {
    root: PathBuf,
    lfs_threshold: u64,
    hashes: Mutex<HashMap<PathBuf, (FileKey, ContentHash)>>,
    /// Hashing runs under this lock so that concurrent first requests for a large file hash it
    /// once, not once each.
    hashing: Mutex<()>,
    blobs: Mutex<HashMap<String, BlobLocation>>,
    /// With `frozen`, each repo is walked once and that snapshot served from then on.
    frozen: Option<Mutex<HashMap<String, RepoSnapshot>>>,
    /// The CAS behind Xet repos, shared by all of them (deduplication is global).
    pub xet: XetStore,
}

impl RepoStore {
    /// `frozen`: the repos never change while the emulator runs (a benchmark's data), so each
    /// is walked once instead of on every request; walking stats every file, which a repo of
    /// 10,000 files turns into ~85 ms per request.
    pub fn new(root: PathBuf, lfs_threshold: u64, frozen: bool, xet: XetStore) -> RepoStore {
        RepoStore {
            root,
            lfs_threshold,
            hashes: Mutex::new(HashMap::new()),
            hashing: Mutex::new(()),
            blobs: Mutex::new(HashMap::new()),
            frozen: frozen.then(|| Mutex::new(HashMap::new())),
            xet,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn is_lfs(&self, path: &str, size: u64) -> bool {
        let extension = path.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
        size >= self.lfs_threshold
            || LFS_EXTENSIONS.contains(&extension)
            || extension.starts_with("onnx_data")
    }

    pub fn scan(&self, repo_id: &str) -> Result<RepoSnapshot, ScanError> {
        let Some(frozen) = &self.frozen else {
            return self.walk_repo(repo_id);
        };
        if let Some(snapshot) = frozen.lock().unwrap().get(repo_id) {
            return Ok(snapshot.clone());
        }
        let snapshot = self.walk_repo(repo_id)?;
        frozen
            .lock()
            .unwrap()
            .insert(repo_id.to_owned(), snapshot.clone());
        Ok(snapshot)
    }

    fn walk_repo(&self, repo_id: &str) -> Result<RepoSnapshot, ScanError> {
        if !valid_repo_id(repo_id) {
            return Err(ScanError::NotFound);
        }
        let dir = self.root.join(repo_id);
        if !dir.is_dir() {
            return Err(ScanError::NotFound);
        }
        let config = read_config(&dir.join(CONFIG_FILE))?;
        let mut found = Vec::new();
        let mut dir_paths = Vec::new();
        walk(&dir, "", &mut found, &mut dir_paths).map_err(ScanError::Io)?;
        found.sort_by(|a, b| a.0.cmp(&b.0));
        dir_paths.sort();

        let mut files = Vec::with_capacity(found.len());
        let mut last_modified = SystemTime::UNIX_EPOCH;
        for (path, abs, metadata) in found {
            let key = FileKey::of(&metadata);
            if let Some(modified) = key.mtime {
                last_modified = last_modified.max(modified);
            }
            let mut file = self.describe(path, abs, key).map_err(ScanError::Io)?;
            if config.xet && file.lfs_sha256.is_some() {
                let hash = self
                    .xet
                    .ingest(repo_id, &file.abs, key)
                    .map_err(ScanError::Io)?;
                file.xet_hash = Some(hash.to_string());
            }
            files.push(file);
        }
        let commit = commit_sha(&files);
        let dirs = dir_paths
            .into_iter()
            .map(|dir_path| {
                let oid = tree_oid(&dir_path, &files);
                (dir_path, oid)
            })
            .collect();
        Ok(RepoSnapshot {
            config,
            files,
            dirs,
            commit,
            last_modified,
        })
    }

    fn describe(&self, path: String, abs: PathBuf, key: FileKey) -> io::Result<RepoFile> {
        let size = key.size;
        let lfs = self.is_lfs(&path, size);
        let hash = self.content_hash(&abs, key, lfs)?;
        Ok(match hash {
            ContentHash::Lfs(sha256) => {
                let pointer = lfs_pointer(&sha256, size);
                self.blobs.lock().unwrap().insert(
                    sha256.clone(),
                    BlobLocation {
                        abs: abs.clone(),
                        size,
                        key,
                    },
                );
                RepoFile {
                    path,
                    abs,
                    size,
                    git_oid: git_blob_sha1(pointer.as_bytes()),
                    pointer_size: pointer.len() as u64,
                    lfs_sha256: Some(sha256),
                    xet_hash: None,
                }
            }
            ContentHash::Git(sha1) => RepoFile {
                path,
                abs,
                size,
                git_oid: sha1,
                pointer_size: 0,
                lfs_sha256: None,
                xet_hash: None,
            },
        })
    }

    fn content_hash(&self, abs: &Path, key: FileKey, lfs: bool) -> io::Result<ContentHash> {
        let cached = |store: &RepoStore| {
            store
                .hashes
                .lock()
                .unwrap()
                .get(abs)
                .filter(|(cached_key, hash)| {
                    *cached_key == key && matches!(hash, ContentHash::Lfs(_)) == lfs
                })
                .map(|(_, hash)| hash.clone())
        };
        if let Some(hash) = cached(self) {
            return Ok(hash);
        }
        let _gate = self.hashing.lock().unwrap();
        if let Some(hash) = cached(self) {
            return Ok(hash);
        }
        let hash = if lfs {
            ContentHash::Lfs(sha256_file(abs)?)
        } else {
            ContentHash::Git(git_blob_sha1_file(abs, key.size)?)
        };
        self.hashes
            .lock()
            .unwrap()
            .insert(abs.to_owned(), (key, hash.clone()));
        Ok(hash)
    }

    /// The file holding the blob `sha256`, if a scan has seen it and it is unchanged since.
    pub fn blob(&self, sha256: &str) -> Option<BlobLocation> {
        let location = self.blobs.lock().unwrap().get(sha256).cloned()?;
        let metadata = fs::metadata(&location.abs).ok()?;
        (FileKey::of(&metadata) == location.key).then_some(location)
    }
}

fn read_config(path: &Path) -> Result<RepoConfig, ScanError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
            ScanError::BadConfig(format!(
                "{} is not a valid emulator repo config ({err}); fix or delete it",
                path.display()
            ))
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(RepoConfig::default()),
        Err(err) => Err(ScanError::BadConfig(format!(
            "cannot read {}: {err}",
            path.display()
        ))),
    }
}

type Found = (String, PathBuf, fs::Metadata);

fn walk(
    dir: &Path,
    prefix: &str,
    files: &mut Vec<Found>,
    dirs: &mut Vec<String>,
) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let skipped = name == ".git"
            || name.starts_with(".emulator-tmp-")
            || (prefix.is_empty() && name == CONFIG_FILE);
        if skipped {
            continue;
        }
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let metadata = fs::metadata(entry.path())?;
        if metadata.is_dir() {
            walk(&entry.path(), &path, files, dirs)?;
            dirs.push(path);
        } else if metadata.is_file() {
            files.push((path, entry.path(), metadata));
        }
    }
    Ok(())
}

/// The LFS pointer file git stores in place of a large file.
pub fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

fn content_id(file: &RepoFile) -> &str {
    file.lfs_sha256.as_deref().unwrap_or(&file.git_oid)
}

fn commit_sha(files: &[RepoFile]) -> String {
    let mut listing = String::from("commit\0");
    for file in files {
        listing.push_str(&format!(
            "{}\0{}\0{}\n",
            file.path,
            file.size,
            content_id(file)
        ));
    }
    sha1_hex(listing.as_bytes())
}

fn tree_oid(dir_path: &str, files: &[RepoFile]) -> String {
    let prefix = format!("{dir_path}/");
    let mut listing = format!("tree\0{dir_path}\0");
    for file in files.iter().filter(|file| file.path.starts_with(&prefix)) {
        listing.push_str(&format!("{}\0{}\n", file.path, content_id(file)));
    }
    sha1_hex(listing.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for good in ["gpt2", "org/name", "Org-1/na_me.v2"] {
            assert!(valid_repo_id(good), "{good}");
        }
        for bad in [
            "", "a/b/c", "../x", "a/..", ".hidden", "-x", "a//b", "a b", "a/b..c",
        ] {
            assert!(!valid_repo_id(bad), "{bad}");
        }
    }

    #[test]
    fn file_paths() {
        assert!(valid_file_path("onnx/model.onnx"));
        for bad in ["", "/abs", "a/../b", "./a", "a//b", "a\\b", "a/"] {
            assert!(!valid_file_path(bad), "{bad}");
        }
    }

    #[test]
    fn pointer_size_follows_digits() {
        let sha = "0".repeat(64);
        assert_eq!(lfs_pointer(&sha, 123_456_789).len(), 134);
        assert_eq!(lfs_pointer(&sha, 5).len(), 126);
    }

    #[test]
    fn config_rejects_unknown_fields() {
        let parsed: Result<RepoConfig, _> = serde_json::from_str(r#"{"gatd": true}"#);
        assert!(parsed.is_err());
        let parsed: RepoConfig =
            serde_json::from_str(r#"{"gated": true, "tokens": ["hf_x"]}"#).unwrap();
        assert_eq!(parsed.gated.api_value(), serde_json::json!("auto"));
    }
}
