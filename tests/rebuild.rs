//! A lost catalog is rebuilt from `blobs/` and `hub/` (issue 12): deleted, replaced by garbage,
//! damaged behind an intact SQLite header, or left by the sled-based releases as a `catalog/`
//! folder. Each time a cache filled from the hub emulator (two repos, LFS and small git files,
//! one file shared by both repos, two revisions of one repo) serves every file it held again,
//! offline and without one request, `stats()` and `rebuilt_on_open()` say what the rebuild
//! restored, a second open rebuilds nothing, and an online scan restores the manifests after
//! which downloading a held variant transfers nothing. Also: a blob no view link names is kept
//! and adopted by the next scan, and the CLI says that it rebuilt the catalog.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use hub_emulator::{pseudo_random_bytes, write_file, write_pseudo_random_file};
use rusqlite::{Connection, OpenFlags};
use tabcache::{ModelCache, QuantStatus, Stats};

const A: &str = "org/model-a";
const B: &str = "org/model-b";
/// LFS, the same bytes in both repos (one blob).
const Q4: &str = "tiny-Q4_K_M.gguf";
/// LFS, A only.
const Q8: &str = "tiny-Q8_0.gguf";
/// LFS, B only.
const Q2: &str = "tiny-Q2_K.gguf";
const CONFIG: &str = "config.json";
const README: &str = "README.md";
const CONFIG_A1: &[u8] = br#"{"model_type":"llama","revision":1}"#;
const CONFIG_A2: &[u8] = br#"{"model_type":"llama","revision":2}"#;
const CONFIG_B: &[u8] = br#"{"model_type":"llama","repo":"b"}"#;
const README_A: &[u8] = b"# model a\n";
/// A: 4 files at its first commit, 4 at its second; B: 3.
const FILES: u64 = 11;
const REPOS: u64 = 2;

fn q4() -> Vec<u8> {
    pseudo_random_bytes(300_000, 1)
}
fn q8() -> Vec<u8> {
    pseudo_random_bytes(200_000, 2)
}
fn q2() -> Vec<u8> {
    pseudo_random_bytes(150_000, 3)
}

fn fill_repos(root: &Path) {
    write_pseudo_random_file(root, A, Q4, 300_000, 1).unwrap();
    write_pseudo_random_file(root, A, Q8, 200_000, 2).unwrap();
    write_file(root, A, CONFIG, CONFIG_A1).unwrap();
    write_file(root, A, README, README_A).unwrap();
    write_pseudo_random_file(root, B, Q4, 300_000, 1).unwrap();
    write_pseudo_random_file(root, B, Q2, 150_000, 3).unwrap();
    write_file(root, B, CONFIG, CONFIG_B).unwrap();
}

/// One cached file: `repo@commit:path` holds `bytes`.
struct Held {
    repo: &'static str,
    commit: String,
    path: &'static str,
    bytes: Vec<u8>,
}

/// What a filled cache holds, and what it said about itself before it was closed.
struct Filled {
    held: Vec<Held>,
    /// The commit `main` means in each repo.
    heads: BTreeMap<&'static str, String>,
    /// A's first commit (no longer on the hub).
    a1: String,
    stats: Stats,
}

/// Fill a cache at `dir` through the library, online, and close it.
fn fill_cache(hub: &Hub, dir: &Path) -> Filled {
    let cache = open(dir, hub);
    cache.download_quant(A, "Q4_K_M", None, None).unwrap();
    cache.download_quant(A, "Q8_0", None, None).unwrap();
    cache.download_file(A, README, None, None).unwrap();
    let a1 = cache.get_manifest(A).unwrap().unwrap().commit;
    // A second revision of A: one file changes; the others are the same blobs at a new commit.
    write_file(hub.root(), A, CONFIG, CONFIG_A2).unwrap();
    let a2 = cache.scan_repo(A, None).unwrap().commit;
    assert_ne!(a1, a2);
    cache.download_quant(A, "Q4_K_M", None, None).unwrap();
    cache.download_quant(A, "Q8_0", None, None).unwrap();
    cache.download_file(A, README, None, None).unwrap();
    // B shares Q4's bytes with A.
    cache.download_quant(B, "Q4_K_M", None, None).unwrap();
    cache.download_quant(B, "Q2_K", None, None).unwrap();
    let b = cache.get_manifest(B).unwrap().unwrap().commit;
    let stats = cache.stats().unwrap();
    assert_eq!(
        (stats.total_files, stats.total_repos),
        (FILES, REPOS),
        "{stats:?}"
    );
    assert_eq!(stats.rebuilt, None, "a new cache was never rebuilt");
    drop(cache);

    let at = |repo, commit: &String, path, bytes: &[u8]| Held {
        repo,
        commit: commit.clone(),
        path,
        bytes: bytes.to_vec(),
    };
    let held = vec![
        at(A, &a1, Q4, &q4()),
        at(A, &a1, Q8, &q8()),
        at(A, &a1, CONFIG, CONFIG_A1),
        at(A, &a1, README, README_A),
        at(A, &a2, Q4, &q4()),
        at(A, &a2, Q8, &q8()),
        at(A, &a2, CONFIG, CONFIG_A2),
        at(A, &a2, README, README_A),
        at(B, &b, Q4, &q4()),
        at(B, &b, Q2, &q2()),
        at(B, &b, CONFIG, CONFIG_B),
    ];
    assert_eq!(held.len() as u64, FILES);
    Filled {
        held,
        heads: BTreeMap::from([(A, a2), (B, b)]),
        a1,
        stats,
    }
}

fn catalog_path(dir: &Path) -> PathBuf {
    dir.join("catalog")
}

fn sidecar(dir: &Path, suffix: &str) -> PathBuf {
    dir.join(format!("catalog{suffix}"))
}

fn remove_catalog(dir: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        match std::fs::remove_file(sidecar(dir, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
            Err(e) => panic!("removing catalog{suffix}: {e}"),
        }
    }
}

/// The checks every kind of lost catalog must pass once reopened: every file served again,
/// offline and without a request; the rebuild reported; the next open rebuilds nothing; an
/// online scan restores the manifests, after which a held variant downloads nothing.
fn assert_rebuilt(hub: &Hub, dir: &Path, filled: &Filled) {
    hub.settled_requests();
    hub.emu.clear_log();
    let before = unix_now();
    let cache = ModelCache::open(dir, offline_options(hub)).unwrap();
    let rebuilt = cache
        .rebuilt_on_open()
        .expect("this open rebuilt the catalog");
    assert_eq!(
        (rebuilt.files, rebuilt.repos),
        (FILES, REPOS),
        "{rebuilt:?}"
    );
    assert!(
        rebuilt.at >= before && rebuilt.at <= unix_now(),
        "{rebuilt:?}"
    );
    let stats = cache.stats().unwrap();
    assert_eq!(stats.rebuilt, Some(rebuilt));
    assert_eq!(
        Stats {
            rebuilt: None,
            ..stats
        },
        filled.stats,
        "the same totals as before the catalog was lost"
    );

    for h in &filled.held {
        let what = format!("{}@{}:{}", h.repo, h.commit, h.path);
        assert!(
            cache.has_file(h.repo, h.path, Some(&h.commit)).unwrap(),
            "{what}"
        );
        let got = cache.get_file(h.repo, h.path, Some(&h.commit)).unwrap();
        assert!(got.as_deref() == Some(&h.bytes[..]), "{what}: get_file");
        let path = cache
            .file_path(h.repo, h.path, Some(&h.commit))
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: no path"));
        assert_eq!(
            path,
            view_path(cache.cache_dir(), h.repo, &h.commit, h.path)
        );
        assert!(
            std::fs::read(&path).unwrap() == h.bytes,
            "{what}: file_path"
        );
        // The default revision, through the restored `refs/main`.
        if filled.heads[h.repo] == h.commit {
            assert!(
                cache.has_file(h.repo, h.path, None).unwrap(),
                "{what} at main"
            );
            let got = cache.get_file(h.repo, h.path, None).unwrap();
            assert!(got.as_deref() == Some(&h.bytes[..]), "{what} at main");
        }
    }
    assert_eq!(
        cache
            .get_file(A, CONFIG, Some(&filled.a1))
            .unwrap()
            .unwrap(),
        CONFIG_A1,
        "the first revision keeps its own bytes"
    );
    let requests = hub.settled_requests();
    assert!(requests.is_empty(), "requests while offline: {requests:?}");
    let refs = check_catalog(dir).refs;
    assert_eq!(refs.len(), 7, "7 distinct contents: {refs:?}");
    assert_eq!(refs.values().sum::<u64>(), FILES);
    drop(cache);

    // The catalog is whole again: the next open rebuilds nothing, and still reports the last
    // rebuild.
    let cache = ModelCache::open(dir, offline_options(hub)).unwrap();
    assert_eq!(
        cache.rebuilt_on_open(),
        None,
        "the second open rebuilt again"
    );
    assert_eq!(cache.stats().unwrap().rebuilt, Some(rebuilt));
    drop(cache);

    // Online: manifests were not on disk; a scan restores them, and sees what is held.
    let cache = open(dir, hub);
    assert_eq!(cache.rebuilt_on_open(), None);
    assert_eq!(
        cache.get_manifest(A).unwrap(),
        None,
        "manifests are not rebuilt"
    );
    let a = cache.scan_repo(A, None).unwrap();
    assert_eq!(a.commit, filled.heads[A]);
    for quant in ["Q4_K_M", "Q8_0"] {
        assert_eq!(a.quants[quant].status, QuantStatus::Downloaded, "A {quant}");
        assert_eq!(a.quants[quant].downloaded_size, a.quants[quant].total_size);
    }
    let b = cache.scan_repo(B, None).unwrap();
    for quant in ["Q4_K_M", "Q2_K"] {
        assert_eq!(b.quants[quant].status, QuantStatus::Downloaded, "B {quant}");
    }
    assert_eq!(cache.get_manifest(A).unwrap().unwrap(), a);
    hub.settled_requests();
    hub.emu.clear_log();
    cache.download_quant(A, "Q8_0", None, None).unwrap();
    cache.download_quant(B, "Q2_K", None, None).unwrap();
    cache.download_quant(B, "Q4_K_M", None, None).unwrap();
    let path = cache.download_file(A, Q4, None, None).unwrap();
    assert!(std::fs::read(path).unwrap() == q4());
    let requests = hub.settled_requests();
    assert!(
        requests.iter().all(|r| !r.target.contains("/resolve/")) && hub.cdn_requests().is_empty(),
        "a held variant transferred: {requests:?}"
    );
    assert_eq!(hub.emu.bytes_sent_total(), 0);
    assert_eq!(cache.stats().unwrap().total_files, FILES);
    drop(cache);
    check_catalog(dir);
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_deleted_catalog_is_rebuilt_and_serves_every_file_without_a_transfer() {
    let hub = hub(fill_repos);
    let dir = tempfile::tempdir().unwrap();
    let filled = fill_cache(&hub, dir.path());
    assert!(catalog_path(dir.path()).is_file());
    remove_catalog(dir.path());
    assert_rebuilt(&hub, dir.path(), &filled);
}

#[test]
fn a_catalog_of_garbage_bytes_is_moved_aside_and_rebuilt() {
    let hub = hub(fill_repos);
    let dir = tempfile::tempdir().unwrap();
    let filled = fill_cache(&hub, dir.path());
    remove_catalog(dir.path());
    let garbage = pseudo_random_bytes(64 * 1024, 99);
    std::fs::write(catalog_path(dir.path()), &garbage).unwrap();
    assert_rebuilt(&hub, dir.path(), &filled);
    assert!(
        std::fs::read(dir.path().join("catalog.damaged")).unwrap() == garbage,
        "the damaged catalog is kept aside, untouched"
    );
}

#[test]
fn a_catalog_damaged_behind_an_intact_header_is_rebuilt() {
    // A torn or scribbled-over catalog: SQLite's 100-byte header is whole (so the file opens
    // and its schema version reads), everything after it is garbage.
    let hub = hub(fill_repos);
    let dir = tempfile::tempdir().unwrap();
    let filled = fill_cache(&hub, dir.path());
    let real = std::fs::read(catalog_path(dir.path())).unwrap();
    assert!(real.starts_with(b"SQLite format 3\0") && real.len() > 4096);
    remove_catalog(dir.path());
    let mut damaged = real[..100].to_vec();
    damaged.extend(pseudo_random_bytes(real.len() - 100, 98));
    std::fs::write(catalog_path(dir.path()), &damaged).unwrap();
    assert_rebuilt(&hub, dir.path(), &filled);
    assert!(std::fs::read(dir.path().join("catalog.damaged")).unwrap() == damaged);
}

/// sled keys as the sled-based releases wrote them (`src/store/catalog.rs` before issue 12).
fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

/// Replace the SQLite catalog by the `catalog/` sled database the sled-based releases kept,
/// holding the same records in their trees and encodings (JSON values, `schema` = 1u64 BE in
/// the default tree), plus their `LOCK` file. Returns how many file records it wrote.
fn write_sled_catalog(dir: &Path) -> usize {
    let sqlite =
        Connection::open_with_flags(catalog_path(dir), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let rows = |sql: &str, n: usize| -> Vec<Vec<Option<String>>> {
        let mut stmt = sqlite.prepare(sql).unwrap();
        let out = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                            rusqlite::types::Value::Null => None,
                            rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                            rusqlite::types::Value::Text(t) => Some(t),
                            other => panic!("unexpected {other:?}"),
                        })
                    })
                    .collect()
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        out
    };
    let repos = rows("SELECT repo_id, record FROM repos", 2);
    let refs = rows("SELECT repo_id, revision, commit_sha FROM refs", 3);
    let files = rows(
        "SELECT repo_id, commit_sha, path, sha256, size, git_oid FROM files",
        6,
    );
    let blobs = rows("SELECT sha256, size, refs FROM blobs", 3);
    let git_oids = rows("SELECT git_oid, sha256 FROM git_oids", 2);
    let partials = rows("SELECT key, state FROM partials", 2);
    drop(sqlite);
    assert_eq!(files.len() as u64, FILES);
    assert!(!repos.is_empty() && !refs.is_empty() && !git_oids.is_empty());
    remove_catalog(dir);

    let s = |v: &Option<String>| v.clone().unwrap();
    let n = |v: &Option<String>| s(v).parse::<u64>().unwrap();
    let db = sled::Config::new()
        .path(catalog_path(dir))
        .open()
        .expect("a sled database");
    let tree = |name: &str| db.open_tree(name).unwrap();
    let (t_repos, t_refs, t_files, t_blobs, t_oids, t_partials) = (
        tree("repos"),
        tree("refs"),
        tree("files"),
        tree("blobs"),
        tree("git_oids"),
        tree("partials"),
    );
    for r in &repos {
        t_repos
            .insert(s(&r[0]).as_bytes(), s(&r[1]).as_bytes())
            .unwrap();
    }
    for r in &refs {
        t_refs
            .insert(key(&[&s(&r[0]), &s(&r[1])]), s(&r[2]).as_bytes())
            .unwrap();
    }
    for r in &files {
        let mut record = serde_json::json!({"sha256": s(&r[3]), "size": n(&r[4])});
        if let Some(oid) = &r[5] {
            record["git_oid"] = oid.clone().into();
        }
        t_files
            .insert(
                key(&[&s(&r[0]), &s(&r[1]), &s(&r[2])]),
                serde_json::to_vec(&record).unwrap(),
            )
            .unwrap();
    }
    for r in &blobs {
        let record = serde_json::json!({"size": n(&r[1]), "refs": n(&r[2])});
        t_blobs
            .insert(s(&r[0]).as_bytes(), serde_json::to_vec(&record).unwrap())
            .unwrap();
    }
    for r in &git_oids {
        t_oids
            .insert(s(&r[0]).as_bytes(), s(&r[1]).as_bytes())
            .unwrap();
    }
    for r in &partials {
        t_partials
            .insert(s(&r[0]).as_bytes(), s(&r[1]).as_bytes())
            .unwrap();
    }
    db.insert("schema", &1u64.to_be_bytes()).unwrap();
    db.flush().unwrap();
    drop((t_repos, t_refs, t_files, t_blobs, t_oids, t_partials));
    drop(db);
    // The old release's exclusive lock file.
    std::fs::write(dir.join("LOCK"), b"").unwrap();

    // It is a genuine sled catalog: sled reads the records back.
    let db = sled::open(catalog_path(dir)).unwrap();
    let count = db.open_tree("files").unwrap().len();
    assert_eq!(
        db.get("schema").unwrap().as_deref(),
        Some(&1u64.to_be_bytes()[..])
    );
    drop(db);
    count
}

#[test]
fn a_sled_era_catalog_folder_is_replaced_by_a_rebuilt_sqlite_catalog() {
    let hub = hub(fill_repos);
    let dir = tempfile::tempdir().unwrap();
    let filled = fill_cache(&hub, dir.path());
    assert_eq!(write_sled_catalog(dir.path()) as u64, FILES);
    assert!(catalog_path(dir.path()).is_dir());
    assert_rebuilt(&hub, dir.path(), &filled);
    assert!(
        catalog_path(dir.path()).is_file(),
        "the sled folder is gone, an SQLite file in its place"
    );
}

#[test]
fn a_blob_no_view_link_names_is_kept_and_adopted_by_the_next_scan() {
    let hub = hub(fill_repos);
    let dir = tempfile::tempdir().unwrap();
    let filled = fill_cache(&hub, dir.path());
    let b = filled.heads[B].clone();
    // Q2's blob is named by B's view entry only; without it and the catalog, nothing says
    // which file the blob is.
    std::fs::remove_file(view_path(dir.path(), B, &b, Q2)).unwrap();
    remove_catalog(dir.path());
    let q2_sha = sha256_hex(&q2());

    let cache = ModelCache::open(dir.path(), offline_options(&hub)).unwrap();
    let rebuilt = cache.rebuilt_on_open().unwrap();
    assert_eq!((rebuilt.files, rebuilt.repos), (FILES - 1, REPOS));
    assert!(!cache.has_file(B, Q2, None).unwrap());
    assert!(
        blob_files(dir.path()).contains(&q2_sha),
        "the verified blob survived"
    );
    assert_eq!(
        cache.stats().unwrap().disk_bytes,
        filled.stats.disk_bytes,
        "every blob is still counted"
    );
    drop(cache);
    let refs = check_catalog(dir.path()).refs;
    assert_eq!(
        refs.get(&q2_sha),
        Some(&0),
        "kept with no reference: {refs:?}"
    );

    // Reopening (recovery runs again) keeps it too.
    drop(ModelCache::open(dir.path(), offline_options(&hub)).unwrap());
    assert!(blob_files(dir.path()).contains(&q2_sha));

    // The next scan that lists it adopts it: no transfer.
    let cache = open(dir.path(), &hub);
    let m = cache.scan_repo(B, None).unwrap();
    assert_eq!(m.quants["Q2_K"].status, QuantStatus::Downloaded);
    assert!(cache.has_file(B, Q2, None).unwrap());
    hub.settled_requests();
    hub.emu.clear_log();
    cache.download_quant(B, "Q2_K", None, None).unwrap();
    let path = cache.file_path(B, Q2, None).unwrap().unwrap();
    assert!(
        std::fs::read(&path).unwrap() == q2(),
        "the view entry is back"
    );
    assert_eq!(
        hub.settled_requests().len(),
        0,
        "downloading an adopted file made requests"
    );
    drop(cache);
    assert_eq!(check_catalog(dir.path()).refs.get(&q2_sha), Some(&1));
}

// ---------------------------------------------------------------- the command line

fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{:?}\nstderr: {stderr}\nstdout: {stdout}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn the_cli_says_it_rebuilt_the_catalog_and_stats_reports_the_rebuild() {
    let hub = hub(fill_repos);
    let dir = tempfile::tempdir().unwrap();
    fill_cache(&hub, dir.path());
    let (_, stderr) = ok(&tabcache(&hub, dir.path(), &["stats"]));
    assert!(!stderr.contains("rebuilt"), "nothing to rebuild: {stderr}");
    remove_catalog(dir.path());

    // Whichever command opens first says so, even with -q.
    let (stdout, stderr) = ok(&tabcache(&hub, dir.path(), &["-q", "stats"]));
    let line = format!("rebuilt the catalog from disk: {FILES} files of {REPOS} repos");
    assert!(stderr.contains(&line), "{line:?} not on stderr: {stderr}");
    assert!(
        !stdout.contains(&line),
        "the notice is for stderr: {stdout}"
    );

    let (stdout, stderr) = ok(&tabcache(&hub, dir.path(), &["--json", "stats"]));
    assert!(
        !stderr.contains("rebuilt the catalog"),
        "rebuilt twice: {stderr}"
    );
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats["rebuilt"]["files"], FILES, "{stats}");
    assert_eq!(stats["rebuilt"]["repos"], REPOS, "{stats}");
    assert!(
        stats["rebuilt"]["at"].as_i64().unwrap() > 1_700_000_000,
        "{stats}"
    );

    // The other commands serve the restored files.
    let (listed, _) = ok(&tabcache(&hub, dir.path(), &["--offline", "ls", A]));
    assert!(listed.contains(Q8), "{listed}");
    let out = tabcache(&hub, dir.path(), &["--offline", "cat", B, Q2]);
    ok(&out);
    assert!(out.stdout == q2());
}

/// Small (non-LFS) files are known to a scan by their git blob sha1 only, so reusing a held
/// blob for them needs the catalog's `git_oids` index, which a rebuild does not restore yet.
#[test]
fn small_git_files_are_adopted_and_deduplicated_after_a_rebuild() {
    let hub = hub(fill_repos);
    let dir = tempfile::tempdir().unwrap();
    let filled = fill_cache(&hub, dir.path());
    // B's config.json blob is named by that one view entry: after the rebuild it is a blob of
    // refs 0, which the next scan should adopt as it does LFS blobs.
    std::fs::remove_file(view_path(dir.path(), B, &filled.heads[B], CONFIG)).unwrap();
    remove_catalog(dir.path());
    let cache = open(dir.path(), &hub);
    assert_eq!(cache.rebuilt_on_open().unwrap().files, FILES - 1);
    let m = cache.scan_repo(B, None).unwrap();
    assert!(
        cache.has_file(B, CONFIG, None).unwrap(),
        "a held small file was not adopted by the scan"
    );
    assert_eq!(m.quants["Q2_K"].status, QuantStatus::Downloaded);
    // A repo that was never cached, listing a small file whose bytes are held (A's README):
    // before the catalog was lost this cost one HEAD and no body byte.
    write_file(hub.root(), "org/model-c", README, README_A).unwrap();
    hub.settled_requests();
    hub.emu.clear_log();
    cache.download_quant(B, "Q2_K", None, None).unwrap();
    cache
        .download_file("org/model-c", README, None, None)
        .unwrap();
    let requests = hub.settled_requests();
    assert_eq!(
        hub.emu.bytes_sent_total(),
        0,
        "held small files transferred again: {requests:?}"
    );
}

#[test]
fn a_catalog_damaged_past_its_first_page_is_rebuilt() {
    // The first page (header and schema) is whole, the tables' pages are garbage: the file
    // opens and its schema version reads, the first look at a table fails.
    let hub = hub(fill_repos);
    let dir = tempfile::tempdir().unwrap();
    let filled = fill_cache(&hub, dir.path());
    let real = std::fs::read(catalog_path(dir.path())).unwrap();
    assert!(real.len() > 2 * 4096, "{} bytes", real.len());
    remove_catalog(dir.path());
    let mut damaged = real[..4096].to_vec();
    damaged.extend(pseudo_random_bytes(real.len() - 4096, 97));
    std::fs::write(catalog_path(dir.path()), &damaged).unwrap();
    assert_rebuilt(&hub, dir.path(), &filled);
}

#[test]
fn openers_racing_after_the_catalog_was_lost_rebuild_it_once() {
    let hub = hub(fill_repos);
    let dir = tempfile::tempdir().unwrap();
    let filled = fill_cache(&hub, dir.path());
    remove_catalog(dir.path());
    let start = std::sync::Barrier::new(4);
    let reports: Vec<Option<(u64, u64)>> = std::thread::scope(|s| {
        let openers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let cache = ModelCache::open(dir.path(), offline_options(&hub)).unwrap();
                    for h in &filled.held {
                        assert!(cache.has_file(h.repo, h.path, Some(&h.commit)).unwrap());
                    }
                    cache.rebuilt_on_open().map(|r| (r.files, r.repos))
                })
            })
            .collect();
        openers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let rebuilt: Vec<_> = reports.iter().flatten().collect();
    assert_eq!(
        rebuilt,
        [&(FILES, REPOS)],
        "one opener rebuilds: {reports:?}"
    );
    check_catalog(dir.path());
}
