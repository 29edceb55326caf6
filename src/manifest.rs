//! What `scan_repo` and `get_manifest` return (the seed's manifest shape, plus `revision` and
//! `commit` beside it) and the record the catalog keeps per repo, from which every manifest
//! is derived. Statuses are derived, never stored: a quant is `downloaded` when the catalog
//! holds all its files, `downloading` while this process transfers it, `failed` when its last
//! attempt failed, `available` otherwise. So no crash can leave a status that lies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::hub::{ModelInfo, RemoteFile};
use crate::quant;

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
    /// The variant to fetch when the caller names none ([`Manifest::default_variant`]), or
    /// None when there is no single sensible choice.
    #[serde(default)]
    pub default_quant: Option<String>,
}

/// On a GGUF repo, the variants a caller naming none gets, best first: the usual balance of
/// size and quality, then the near-lossless one.
const PREFERRED_GGUF: [&str; 2] = ["Q4_K_M", "Q8_0"];

impl Manifest {
    /// The variant to fetch when the caller names none: on a repo with GGUF variants
    /// `Q4_K_M`, else `Q8_0`, else the first GGUF variant; otherwise the only variant.
    ///
    /// # Errors
    /// `EntryNotFound` when the repo has no variants (name its files instead);
    /// `InvalidArgument` when it has several and none is preferred (the message lists them).
    pub fn default_variant(&self) -> Result<&str> {
        default_variant(&self.repo_id, &self.quants)
    }
}

fn default_variant<'a, T: QuantFiles>(
    repo_id: &str,
    quants: &'a BTreeMap<String, T>,
) -> Result<&'a str> {
    let gguf: Vec<&'a str> = quants
        .iter()
        .filter(|(_, q)| {
            q.files()
                .iter()
                .any(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if let Some(k) = PREFERRED_GGUF
        .iter()
        .find_map(|preferred| gguf.iter().find(|k| *k == preferred))
    {
        return Ok(k);
    }
    if let Some(first) = gguf.first() {
        return Ok(first);
    }
    let keys: Vec<&'a str> = quants.keys().map(String::as_str).collect();
    match keys.as_slice() {
        [] => Err(Error::new(
            ErrorKind::EntryNotFound,
            format!("{repo_id} has no model variants; name the files to download"),
        )),
        [only] => Ok(only),
        several => Err(Error::invalid(format!(
            "{repo_id} has several variants ({}); name the one to download",
            several.join(", ")
        ))),
    }
}

/// The files of a variant, as a manifest and a record each hold them.
trait QuantFiles {
    fn files(&self) -> &[String];
}

impl QuantFiles for QuantInfo {
    fn files(&self) -> &[String] {
        &self.files
    }
}

impl QuantFiles for Vec<String> {
    fn files(&self) -> &[String] {
        self
    }
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
    /// The Xet file hash, for Xet-backed files (fetched natively, see `crate::xet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xet_hash: Option<String>,
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
    /// The record of `repo_id` at `revision` from its model info and file listing: the files
    /// with their sizes and hashes, classified into variants and addons. What the stored
    /// record `old` knew of each variant (when it was last fetched; a failure, if it happened
    /// at this same commit) carries over, as does its first-scan time.
    pub fn from_listing(
        repo_id: &str,
        revision: &str,
        info: &ModelInfo,
        listing: &[RemoteFile],
        old: Option<&RepoRecord>,
        now: i64,
    ) -> RepoRecord {
        let classes = quant::classify(listing.iter().map(|f| f.path.as_str()));
        let files = listing
            .iter()
            .map(|f| {
                let listed = ListedFile {
                    size: f.size,
                    sha256: f.sha256.clone(),
                    // The git blob sha1 identifies content only the Hub lists no sha256 for.
                    git_oid: f.sha256.is_none().then(|| f.git_oid.clone()),
                    xet_hash: f.xet_hash.clone(),
                };
                (f.path.clone(), listed)
            })
            .collect();
        let variants = classes
            .variants
            .keys()
            .filter_map(|k| classes.files_for(k).map(|files| (k.clone(), files)))
            .collect();
        let same_commit = old.is_some_and(|o| o.commit == info.sha);
        let quant_state = old
            .map(|o| {
                o.quant_state
                    .iter()
                    .map(|(k, s)| {
                        // A failure belongs to the commit it happened at.
                        let error = if same_commit { s.error.clone() } else { None };
                        let state = QuantState {
                            last_updated: s.last_updated,
                            error,
                        };
                        (k.clone(), state)
                    })
                    .collect()
            })
            .unwrap_or_default();
        RepoRecord {
            repo_id: repo_id.to_string(),
            task: info.pipeline_tag.clone(),
            created_at: old.map_or(now, |o| o.created_at),
            updated_at: now,
            revision: revision.to_string(),
            commit: info.sha.clone(),
            files,
            variants,
            addons: classes.addons,
            quant_state,
        }
    }

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
            default_quant: default_variant(&self.repo_id, &self.variants)
                .ok()
                .map(str::to_string),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn quants(variants: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        variants
            .iter()
            .map(|(k, files)| (k.to_string(), files.iter().map(|f| f.to_string()).collect()))
            .collect()
    }

    #[test]
    fn the_default_variant_prefers_q4_k_m_then_q8_0_then_the_first_gguf() {
        let gguf = quants(&[
            ("Q2_K", &["m-Q2_K.gguf"]),
            ("Q4_K_M", &["m-Q4_K_M.gguf"]),
            ("Q8_0", &["m-Q8_0.gguf"]),
        ]);
        assert_eq!(default_variant("o/r", &gguf).unwrap(), "Q4_K_M");
        let no_q4 = quants(&[("Q2_K", &["m-Q2_K.gguf"]), ("Q8_0", &["m-Q8_0.gguf"])]);
        assert_eq!(default_variant("o/r", &no_q4).unwrap(), "Q8_0");
        let neither = quants(&[("Q3_K_S", &["m-Q3_K_S.gguf"]), ("Q2_K", &["m-Q2_K.gguf"])]);
        assert_eq!(default_variant("o/r", &neither).unwrap(), "Q2_K");
        // GGUF variants win over others, whatever their names.
        let mixed = quants(&[
            ("fp16", &["onnx/model_fp16.onnx"]),
            ("Q5_K_M", &["m-Q5_K_M.GGUF"]),
        ]);
        assert_eq!(default_variant("o/r", &mixed).unwrap(), "Q5_K_M");
    }

    #[test]
    fn without_gguf_only_a_single_variant_is_a_default() {
        let one = quants(&[("q4f16", &["onnx/model_q4f16.onnx"])]);
        assert_eq!(default_variant("o/r", &one).unwrap(), "q4f16");
        let none = quants(&[]);
        let err = default_variant("o/r", &none).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::EntryNotFound);
        assert!(err.message().contains("no model variants"), "{err}");
        let several = quants(&[("fp16", &["a.onnx"]), ("q4", &["b.onnx"])]);
        let err = default_variant("o/r", &several).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("fp16, q4"), "{err}");
    }
}
