//! What `scan_repo` and `get_manifest` return (the seed's manifest shape, plus `revision` and
//! `commit` beside it) and the record the catalog keeps per repo, from which every manifest
//! is derived. Statuses are derived, never stored: a quant is `downloaded` when the catalog
//! holds all its files, `downloading` while this process transfers it, `failed` when its last
//! attempt failed, `available` otherwise. So no crash can leave a status that lies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state of one quantization variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantStatus {
    Available,
    Downloading,
    Downloaded,
    Failed,
}

impl QuantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QuantStatus::Available => "available",
            QuantStatus::Downloading => "downloading",
            QuantStatus::Downloaded => "downloaded",
            QuantStatus::Failed => "failed",
        }
    }
}

/// One variant in a [`Manifest`], exactly the seed's fields plus `error` when it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantInfo {
    pub status: QuantStatus,
    pub files: Vec<String>,
    pub total_size: Option<u64>,
    pub downloaded_size: Option<u64>,
    pub last_updated: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The seed's manifest: `repo_id`, `task`, `created_at`, `updated_at`, `quants`; plus the
/// revision it was scanned at and the commit that revision pointed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub repo_id: String,
    pub task: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub quants: BTreeMap<String, QuantInfo>,
    pub revision: String,
    pub commit: String,
    /// Add-ons that are not variants of their own (GGUF `mmproj-*` projectors): name -> files.
    #[serde(default)]
    pub addons: BTreeMap<String, Vec<String>>,
}

/// What the listing says about one file; enough to download and verify it without asking again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFile {
    pub size: u64,
    /// The LFS sha256 (hex), for LFS files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The git blob sha1 (hex) of the file, for non-LFS files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_oid: Option<String>,
}

/// Per-variant facts that cannot be derived from the catalog's file records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantState {
    pub last_updated: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The catalog's record of a scanned repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRecord {
    pub repo_id: String,
    pub task: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub revision: String,
    pub commit: String,
    pub files: BTreeMap<String, ListedFile>,
    /// quant key -> every file downloading it fetches (own files, then shared files).
    pub variants: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub addons: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub quant_state: BTreeMap<String, QuantState>,
}

/// Live facts about a variant that the record cannot hold: whether this process is fetching
/// it and how many of its bytes are held.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuantLive {
    pub downloading: bool,
    pub held_bytes: u64,
    pub all_held: bool,
}

impl RepoRecord {
    /// The variant's total size, when the listing gave every file's size. Saturating: a
    /// listing's sizes come from a server.
    pub fn variant_size(&self, key: &str) -> Option<u64> {
        let files = self.variants.get(key)?;
        files.iter().try_fold(0u64, |total, f| {
            self.files.get(f).map(|l| total.saturating_add(l.size))
        })
    }

    /// The files of variant `key`, or an error naming the variants there are.
    pub fn variant_files(&self, key: &str) -> crate::Result<&Vec<String>> {
        self.variants.get(key).ok_or_else(|| {
            let known: Vec<&str> = self.variants.keys().map(String::as_str).collect();
            crate::Error::new(
                crate::ErrorKind::EntryNotFound,
                format!(
                    "{} has no variant {key:?}; its variants are: {}",
                    self.repo_id,
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    /// Build the manifest, asking `live` about each variant.
    pub fn to_manifest(&self, mut live: impl FnMut(&str, &[String]) -> QuantLive) -> Manifest {
        let quants = self
            .variants
            .iter()
            .map(|(key, files)| {
                let now = live(key, files);
                let state = self.quant_state.get(key).cloned().unwrap_or_default();
                let status = if now.downloading {
                    QuantStatus::Downloading
                } else if now.all_held {
                    QuantStatus::Downloaded
                } else if state.error.is_some() {
                    QuantStatus::Failed
                } else {
                    QuantStatus::Available
                };
                let info = QuantInfo {
                    status,
                    files: files.clone(),
                    total_size: self.variant_size(key),
                    downloaded_size: Some(now.held_bytes),
                    last_updated: if state.last_updated == 0 {
                        self.updated_at
                    } else {
                        state.last_updated
                    },
                    error: if status == QuantStatus::Failed {
                        state.error
                    } else {
                        None
                    },
                };
                (key.clone(), info)
            })
            .collect();
        Manifest {
            repo_id: self.repo_id.clone(),
            task: self.task.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            quants,
            revision: self.revision.clone(),
            commit: self.commit.clone(),
            addons: self.addons.clone(),
        }
    }
}

/// Seconds since the Unix epoch, the manifest's time unit.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
