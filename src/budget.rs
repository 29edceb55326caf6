//! The disk budget's choices: what to evict, least recently used first, in whole variants.
//!
//! This module decides and never touches the disk: it turns the catalog's facts (each cached
//! file's blob, size and last use; the repos' variants; the pins) into eviction [`Unit`]s and
//! walks them oldest first, handing each to a caller's `evict` that does the removal (or, for a
//! dry run, only records it) and may refuse a unit it finds in use. Keeping the choice pure
//! keeps it testable on its own and identical between `prune --dry-run` and `prune`.
//!
//! Units: a variant of a repo at its recorded commit is evicted whole — the files only it lists
//! together, and a file several variants share (`config.json`, a tokenizer) only once no other
//! variant that still holds files of its own lists it. Every other cached file (one fetched by
//! path, one of an older commit, one of a repo never scanned) is a unit of its own. A unit's
//! last use is the latest of its own files'.
//!
//! Never chosen: pinned repos and variants, and files the caller marks protected (those of
//! the download that just landed, of downloads under way); a unit whose own file is protected
//! stays whole, one that only shares a protected file loses the rest.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::manifest::RepoRecord;
use crate::store::{Pin, UsedFile};

/// `(repo, commit, path)`: one cached file.
pub(crate) type FileKey = (String, String, String);

/// Something the budget may evict as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    pub repo: String,
    pub commit: String,
    /// The variant, or None for a single file.
    pub quant: Option<String>,
    /// The unit's cached files (a variant's shared ones included).
    pub files: Vec<String>,
    /// Milliseconds since the epoch.
    pub last_used: i64,
}

/// A unit chosen, with what removing it takes away.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Eviction {
    pub repo_id: String,
    pub commit: String,
    /// The variant, or None for a single file.
    pub quant: Option<String>,
    /// The files removed (shared files another variant still uses stay).
    pub files: Vec<String>,
    /// Bytes of the blobs whose last reference goes.
    pub bytes_freed: u64,
    /// When the unit was last used (milliseconds since the epoch; 0: before tracking began).
    pub last_used_ms: i64,
}

/// What to evict until: `bytes` freed, and every unit last used before `older_than` (ms).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Target {
    pub bytes: u64,
    pub older_than: Option<i64>,
}

/// The units of everything cached: the variants of each scanned repo at its recorded commit,
/// and every other file on its own.
pub(crate) fn units(records: &[RepoRecord], files: &[UsedFile]) -> Vec<Unit> {
    let mut held: HashMap<(&str, &str), BTreeMap<&str, i64>> = HashMap::new();
    for f in files {
        held.entry((&f.repo, &f.commit))
            .or_default()
            .insert(&f.path, f.last_used);
    }
    let mut units = Vec::new();
    let mut in_variant: HashSet<FileKey> = HashSet::new();
    for record in records {
        let Some(cached) = held.get(&(record.repo_id.as_str(), record.commit.as_str())) else {
            continue;
        };
        let listed_by: HashMap<&str, usize> =
            record
                .variants
                .values()
                .flatten()
                .fold(HashMap::new(), |mut count, path| {
                    *count.entry(path.as_str()).or_insert(0) += 1;
                    count
                });
        for (quant, paths) in &record.variants {
            let files: Vec<String> = paths
                .iter()
                .filter(|p| cached.contains_key(p.as_str()))
                .cloned()
                .collect();
            let own_last_use = files
                .iter()
                .filter(|p| listed_by[p.as_str()] == 1)
                .map(|p| cached[p.as_str()])
                .max();
            // A variant that holds only shared files is not downloaded: it is no unit, and
            // does not keep those files.
            let Some(last_used) = own_last_use else {
                continue;
            };
            for path in &files {
                in_variant.insert((record.repo_id.clone(), record.commit.clone(), path.clone()));
            }
            units.push(Unit {
                repo: record.repo_id.clone(),
                commit: record.commit.clone(),
                quant: Some(quant.clone()),
                files,
                last_used,
            });
        }
    }
    for f in files {
        let key = (f.repo.clone(), f.commit.clone(), f.path.clone());
        if !in_variant.contains(&key) {
            units.push(Unit {
                repo: f.repo.clone(),
                commit: f.commit.clone(),
                quant: None,
                files: vec![f.path.clone()],
                last_used: f.last_used,
            });
        }
    }
    units
}

/// Walk `units` least recently used first, choosing until `target` is met, and hand each
/// choice to `evict`, which removes it (returning true) or finds it in use (false: it is kept,
/// and the walk goes on). Returns what was evicted, in order.
pub(crate) fn choose(
    mut units: Vec<Unit>,
    files: &[UsedFile],
    pins: &[Pin],
    protected: &HashSet<FileKey>,
    target: Target,
    mut evict: impl FnMut(&Eviction) -> bool,
) -> Vec<Eviction> {
    units.sort_by(|a, b| {
        (a.last_used, &a.repo, &a.quant, &a.files).cmp(&(b.last_used, &b.repo, &b.quant, &b.files))
    });
    let mut refs: HashMap<&str, (u64, u64)> = HashMap::new(); // sha -> (references, size)
    let mut blob_of: HashMap<FileKey, &str> = HashMap::new();
    for f in files {
        refs.entry(&f.sha256).or_insert((0, f.size)).0 += 1;
        blob_of.insert(
            (f.repo.clone(), f.commit.clone(), f.path.clone()),
            &f.sha256,
        );
    }
    let pinned = |unit: &Unit| {
        pins.iter()
            .any(|pin| pin.repo_id == unit.repo && (pin.quant.is_none() || pin.quant == unit.quant))
    };
    // Variants still holding files of their own (or pinned): they keep the files they list.
    let mut keeping: Vec<&Unit> = units.iter().filter(|u| u.quant.is_some()).collect();
    let mut removed: HashSet<FileKey> = HashSet::new();
    let mut chosen = Vec::new();
    let mut freed = 0u64;
    for unit in &units {
        let met = freed >= target.bytes
            && target
                .older_than
                .is_none_or(|cutoff| unit.last_used >= cutoff);
        if met {
            break;
        }
        let key = |path: &String| (unit.repo.clone(), unit.commit.clone(), path.clone());
        if pinned(unit) {
            continue;
        }
        let shared_with_a_keeper = |path: &String| {
            keeping.iter().any(|other| {
                !std::ptr::eq(*other, unit)
                    && other.repo == unit.repo
                    && other.commit == unit.commit
                    && other.files.contains(path)
            })
        };
        // A protected file stays; when that is one of the unit's own files (a variant being
        // downloaded), the unit stays whole.
        let own_protected = unit
            .files
            .iter()
            .any(|p| protected.contains(&key(p)) && !shared_with_a_keeper(p));
        if own_protected {
            continue;
        }
        let goes: Vec<String> = unit
            .files
            .iter()
            .filter(|p| {
                !removed.contains(&key(p))
                    && !shared_with_a_keeper(p)
                    && !protected.contains(&key(p))
            })
            .cloned()
            .collect();
        if goes.is_empty() {
            continue;
        }
        // The references this unit holds, per blob: a blob goes with its last one.
        let mut dropping: HashMap<&str, u64> = HashMap::new();
        for path in &goes {
            if let Some(sha) = blob_of.get(&key(path)) {
                *dropping.entry(sha).or_default() += 1;
            }
        }
        let bytes_freed = dropping
            .iter()
            .filter_map(|(sha, n)| {
                let (held, size) = refs[sha];
                (held == *n).then_some(size)
            })
            .sum();
        let eviction = Eviction {
            repo_id: unit.repo.clone(),
            commit: unit.commit.clone(),
            quant: unit.quant.clone(),
            files: goes,
            bytes_freed,
            last_used_ms: unit.last_used,
        };
        if !evict(&eviction) {
            continue;
        }
        for (sha, n) in dropping {
            refs.get_mut(sha).expect("every file's blob is counted").0 -= n;
        }
        freed += bytes_freed;
        removed.extend(eviction.files.iter().map(key));
        keeping.retain(|other| !std::ptr::eq(*other, unit));
        chosen.push(eviction);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Free at least `bytes`, whatever the age.
    fn freeing(bytes: u64) -> Target {
        Target {
            bytes,
            older_than: None,
        }
    }

    fn file(repo: &str, path: &str, sha: &str, size: u64, last_used: i64) -> UsedFile {
        UsedFile {
            repo: repo.into(),
            commit: "c1".into(),
            path: path.into(),
            sha256: sha.into(),
            size,
            last_used,
        }
    }

    fn record(repo: &str, variants: &[(&str, &[&str])]) -> RepoRecord {
        RepoRecord {
            repo_id: repo.into(),
            task: None,
            created_at: 0,
            updated_at: 0,
            revision: "main".into(),
            commit: "c1".into(),
            files: Default::default(),
            variants: variants
                .iter()
                .map(|(k, files)| (k.to_string(), files.iter().map(|f| f.to_string()).collect()))
                .collect(),
            addons: Default::default(),
            quant_state: Default::default(),
        }
    }

    /// A repo with three GGUF variants sharing config.json, used at 10, 30 and 20.
    fn three_variants() -> (Vec<RepoRecord>, Vec<UsedFile>) {
        let records = vec![record(
            "org/m",
            &[
                ("Q4_K_M", &["m-Q4_K_M.gguf", "config.json"]),
                ("Q8_0", &["m-Q8_0.gguf", "config.json"]),
                ("F16", &["m-F16.gguf", "config.json"]),
            ],
        )];
        let files = vec![
            file("org/m", "m-Q4_K_M.gguf", "q4", 4 * MIB, 10),
            file("org/m", "m-Q8_0.gguf", "q8", 8 * MIB, 30),
            file("org/m", "m-F16.gguf", "f16", 16 * MIB, 20),
            file("org/m", "config.json", "cfg", 1, 30),
        ];
        (records, files)
    }

    fn plan(
        records: &[RepoRecord],
        files: &[UsedFile],
        pins: &[Pin],
        target: Target,
    ) -> Vec<Eviction> {
        choose(
            units(records, files),
            files,
            pins,
            &HashSet::new(),
            target,
            |_| true,
        )
    }

    fn names(chosen: &[Eviction]) -> Vec<String> {
        chosen
            .iter()
            .map(|e| e.quant.clone().unwrap_or_else(|| e.files.join(",")))
            .collect()
    }

    #[test]
    fn least_recently_used_variants_go_first_and_shared_files_last() {
        let (records, files) = three_variants();
        let chosen = plan(&records, &files, &[], freeing(4 * MIB));
        assert_eq!(names(&chosen), ["Q4_K_M"]);
        assert_eq!(
            chosen[0].files,
            ["m-Q4_K_M.gguf"],
            "config.json is still used by others"
        );
        assert_eq!(chosen[0].bytes_freed, 4 * MIB);

        let everything = plan(&records, &files, &[], freeing(u64::MAX));
        assert_eq!(names(&everything), ["Q4_K_M", "F16", "Q8_0"]);
        assert_eq!(
            everything[2].files,
            ["m-Q8_0.gguf", "config.json"],
            "the last one takes it"
        );
        let total: u64 = everything.iter().map(|e| e.bytes_freed).sum();
        assert_eq!(total, 28 * MIB + 1);
    }

    #[test]
    fn pins_and_protected_files_are_never_chosen() {
        let (records, files) = three_variants();
        let q4 = Pin {
            repo_id: "org/m".into(),
            quant: Some("Q4_K_M".into()),
        };
        let chosen = plan(&records, &files, &[q4], freeing(5 * MIB));
        assert_eq!(names(&chosen), ["F16"]);
        let repo = Pin {
            repo_id: "org/m".into(),
            quant: None,
        };
        assert!(plan(
            &records,
            &files,
            &[repo],
            Target {
                bytes: u64::MAX,
                older_than: None
            }
        )
        .is_empty());

        let protected: HashSet<FileKey> =
            [("org/m".into(), "c1".into(), "m-F16.gguf".into())].into();
        let chosen = choose(
            units(&records, &files),
            &files,
            &[],
            &protected,
            freeing(20 * MIB),
            |_| true,
        );
        assert_eq!(names(&chosen), ["Q4_K_M", "Q8_0"]);
        assert_eq!(
            chosen[1].files,
            ["m-Q8_0.gguf"],
            "F16 still holds config.json"
        );
    }

    #[test]
    fn a_unit_found_in_use_is_kept_and_the_walk_goes_on() {
        let (records, files) = three_variants();
        let chosen = choose(
            units(&records, &files),
            &files,
            &[],
            &HashSet::new(),
            freeing(5 * MIB),
            |e| e.quant.as_deref() != Some("Q4_K_M"),
        );
        assert_eq!(names(&chosen), ["F16"]);
        assert_eq!(chosen[0].bytes_freed, 16 * MIB);
    }

    #[test]
    fn loose_files_and_content_shared_across_repos() {
        let (mut records, mut files) = three_variants();
        records.push(record("org/copy", &[("Q4_K_M", &["copy-Q4_K_M.gguf"])]));
        // The same bytes as org/m's Q4_K_M, and a file fetched by path from an unscanned repo.
        files.push(file("org/copy", "copy-Q4_K_M.gguf", "q4", 4 * MIB, 5));
        files.push(file("org/loose", "weights.bin", "w", 2 * MIB, 1));
        let chosen = plan(&records, &files, &[], freeing(6 * MIB));
        assert_eq!(names(&chosen), ["weights.bin", "Q4_K_M", "Q4_K_M"]);
        assert_eq!(
            chosen.iter().map(|e| e.bytes_freed).collect::<Vec<_>>(),
            [2 * MIB, 0, 4 * MIB],
            "the shared blob is freed with its last reference"
        );
    }

    #[test]
    fn by_age_everything_older_goes_even_past_the_bytes() {
        let (records, files) = three_variants();
        let chosen = plan(
            &records,
            &files,
            &[],
            Target {
                bytes: 0,
                older_than: Some(25),
            },
        );
        assert_eq!(names(&chosen), ["Q4_K_M", "F16"]);
    }
}
