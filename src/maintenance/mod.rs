//! Cache maintenance on [`ModelCache`](crate::ModelCache), shared by the `tabcache` command
//! line, the C ABI and Python, one job a file: [`verify`](verify) (re-hash every blob,
//! optionally drop and re-fetch what is damaged) and `gc` (unreferenced blobs, stale partial
//! downloads); [`import`](import) (adopt the files of an existing huggingface_hub cache
//! without transferring them again); [`inventory`](inventory) (what is cached, by repo and
//! file, and removing a repo or one of its variants); [`budget`](budget) (the size limit, pins
//! and `prune`). Every report is serde-serializable: the
//! CLI prints them as its `--json` output.

use serde::{Deserialize, Serialize};

pub mod budget;
pub mod import;
pub mod inventory;
pub mod verify;

pub use crate::budget::Eviction;
pub use crate::store::{EvictionLog, LoggedEviction, Pin};
pub use budget::{PruneOptions, PruneReport};
pub use import::{default_hf_hub_cache, ImportReport, ImportSkip};
pub use inventory::{FileListing, RemoveReport, RepoListing, Stats, VariantListing};
pub use verify::{DamagedBlob, GcReport, RepairFailure, VerifyReport, DEFAULT_STALE_PARTIAL_AGE};

/// One cached file: `repo_id@commit:path`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileRef {
    pub repo_id: String,
    pub commit: String,
    pub path: String,
}
