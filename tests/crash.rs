//! Crash safety: a child process runs a download/delete workload against the hub emulator and
//! is killed with SIGKILL at random moments (during transfers, hashing, commits, catalog
//! updates, deletes). After every kill the cache must open, serve only correct bytes, report
//! truthful statuses, keep no orphan blobs and no unbounded temp files, and the next run must
//! finish the work. Throughout, a second process (never killed) reads and downloads the same
//! repos in a loop and must never fail: the kills and the recoveries after them happen while
//! another process uses the cache. Prints a tally. `TABCACHE_SOAK=1` kills 300 times instead
//! of 30; `TABCACHE_CRASH_SEED=N` replays a run.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use hub_emulator::{
    pseudo_random_bytes, pseudo_random_sha256, write_file, write_pseudo_random_file,
};
use tabcache::QuantStatus;

const REPO: &str = "org/crashy";
const OTHER: &str = "org/sibling";
const BIG_LEN: u64 = 24 << 20;

/// Path -> (len, seed) of every generated file in REPO; OTHER holds a copy of the big one.
fn files() -> Vec<(&'static str, u64, u64)> {
    vec![
        ("onnx/model_q4.onnx", 200_000, 1),
        ("onnx/model_q4.onnx_data", BIG_LEN, 2),
        ("onnx/model_fp16.onnx", 6 << 20, 3),
        ("tokenizer.json", 40_000, 4),
    ]
}

fn fill(root: &Path) {
    write_file(root, REPO, "config.json", b"{\"a\":1}").unwrap();
    write_file(root, OTHER, "config.json", b"{\"a\":1}").unwrap();
    for (path, len, seed) in files() {
        write_pseudo_random_file(root, REPO, path, len, seed).unwrap();
    }
    write_pseudo_random_file(root, OTHER, "weights.onnx", BIG_LEN, 2).unwrap();
}

fn expected_hashes() -> HashMap<String, String> {
    let mut m: HashMap<String, String> = files()
        .into_iter()
        .map(|(p, len, seed)| (p.to_string(), pseudo_random_sha256(len, seed)))
        .collect();
    m.insert("config.json".into(), sha256_hex(b"{\"a\":1}"));
    m
}

/// The child's endless workload: every operation that writes to the cache, in a loop.
fn workload(child: &ChildSetup) {
    let cache = child.open();
    loop {
        cache.scan_repo(REPO, None).unwrap();
        cache.download_quant(REPO, "q4", None, None).unwrap();
        cache
            .download_file(OTHER, "weights.onnx", None, None)
            .unwrap();
        cache
            .download_file(REPO, "onnx/model_fp16.onnx", None, None)
            .unwrap();
        cache.delete_model(REPO).unwrap();
        cache
            .download_file(OTHER, "config.json", None, None)
            .unwrap();
        cache.delete_model(OTHER).unwrap();
    }
}

/// The second, live process: reads and downloads of the same repos (content the workload
/// fetches and deletes too) in a loop until `stop` appears. Any error or wrong byte panics.
fn reader(child: &ChildSetup, stop: &Path) {
    let cache = child.open();
    let expected = expected_hashes();
    let mut rounds = 0u64;
    let check_read = |what: &str, path: &Path, want: &str| match std::fs::read(path) {
        Ok(bytes) => assert_eq!(sha256_hex(&bytes), want, "reader: {what}: wrong bytes"),
        // The workload deleted the repo since the path was handed out.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("reader: {what}: {}: {e}", path.display()),
    };
    while !stop.exists() {
        let fail =
            |what: &str, e: tabcache::Error| -> ! { panic!("reader: {what}: {:?}: {e}", e.kind()) };
        cache
            .scan_repo(REPO, None)
            .unwrap_or_else(|e| fail("scan", e));
        for (path, sha) in &expected {
            cache
                .has_file(REPO, path, None)
                .unwrap_or_else(|e| fail(path, e));
            if let Some(bytes) = cache
                .get_file(REPO, path, None)
                .unwrap_or_else(|e| fail(path, e))
            {
                assert_eq!(&sha256_hex(&bytes), sha, "reader: get_file {path}");
            }
        }
        let fetches = [
            (REPO, "tokenizer.json", &expected["tokenizer.json"]),
            (REPO, "onnx/model_q4.onnx", &expected["onnx/model_q4.onnx"]),
            // The same content as REPO's q4 external data, which the workload fetches.
            (OTHER, "weights.onnx", &expected["onnx/model_q4.onnx_data"]),
            (OTHER, "config.json", &expected["config.json"]),
        ];
        for (repo, path, sha) in fetches {
            let what = format!("download {repo} {path}");
            let got = cache
                .download_file(repo, path, None, None)
                .unwrap_or_else(|e| fail(&what, e));
            check_read(&what, &got, sha);
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("READER rounds {rounds}");
}

/// Everything the cache promises after a crash. Returns the number of corrupt files served.
fn check_recovered(dir: &Path, hub: &Hub, expected: &HashMap<String, String>) -> usize {
    let cache = open(dir, hub);
    let mut corrupt = 0;
    for (path, sha) in expected {
        if cache.has_file(REPO, path, None).unwrap() {
            let bytes = cache
                .get_file(REPO, path, None)
                .unwrap()
                .expect("has_file but no bytes");
            if &sha256_hex(&bytes) != sha {
                corrupt += 1;
                eprintln!("CORRUPT: {path} served with the wrong bytes");
            }
        }
    }
    // The live reader only adds files while this runs: a variant whose files were all held
    // or all not held both before and after the manifest was read had that state then.
    let all_held = |files: &[String]| files.iter().all(|f| cache.has_file(REPO, f, None).unwrap());
    let held_before: HashMap<String, bool> = match cache.get_manifest(REPO).unwrap() {
        Some(m) => m
            .quants
            .iter()
            .map(|(k, q)| (k.clone(), all_held(&q.files)))
            .collect(),
        None => HashMap::new(),
    };
    if let Some(m) = cache.get_manifest(REPO).unwrap() {
        for (key, q) in &m.quants {
            let all_held = all_held(&q.files);
            if held_before.get(key) != Some(&all_held) {
                continue; // the reader completed it meanwhile
            }
            assert_eq!(
                q.status == QuantStatus::Downloaded,
                all_held,
                "{key}: status {:?} but all held = {all_held}",
                q.status
            );
            assert_ne!(
                q.status,
                QuantStatus::Downloading,
                "{key}: still downloading after the process died"
            );
        }
    }
    // Every blob on disk holds exactly the content its name says...
    for name in &blob_files(dir) {
        if let Ok(bytes) = std::fs::read(dir.join("blobs").join(name)) {
            if &sha256_hex(&bytes) != name {
                corrupt += 1;
                eprintln!("CORRUPT: blob {name} does not hash to its name");
            }
        }
    }
    // ... and is recorded: the bytes on disk are the bytes the catalog counts. The reader may
    // commit a blob while we look, so take a look the catalog did not change during.
    let mut looks = Vec::new();
    let consistent = (0..50).any(|_| {
        let before = cache.stats().unwrap().disk_bytes;
        let blobs = blob_files(dir);
        let disk: u64 = blobs
            .iter()
            .filter_map(|n| std::fs::metadata(dir.join("blobs").join(n)).ok())
            .map(|m| m.len())
            .sum();
        let after = cache.stats().unwrap().disk_bytes;
        looks.push((before, disk, after, blobs));
        if before == disk && disk == after {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
        false
    });
    assert!(
        consistent,
        "orphan or missing blob files (catalog bytes before, on disk, after, files): {:?}",
        looks.last()
    );
    // At most one partial download per distinct content (tmp/ also holds the lock files of
    // transfers, next to their partial files).
    let tmp = tmp_files(dir);
    let parts = tmp.iter().filter(|n| n.ends_with(".part")).count();
    assert!(parts <= expected.len(), "tmp/ grows: {tmp:?}");
    corrupt
}

const TEST: &str = "random_kills_lose_nothing_and_serve_nothing_wrong";
/// Set for the child that reads beside the killed workload: the file whose existence tells it
/// to stop.
const READER_STOP: &str = "TABCACHE_CRASH_READER_STOP";

#[test]
fn random_kills_lose_nothing_and_serve_nothing_wrong() {
    if let Some(child) = ChildSetup::from_env() {
        match std::env::var_os(READER_STOP) {
            Some(stop) => reader(&child, Path::new(&stop)),
            None => workload(&child),
        }
        return;
    }
    let kills: usize = if std::env::var("TABCACHE_SOAK").is_ok() {
        300
    } else {
        30
    };
    let seed = seed_from_env("TABCACHE_CRASH_SEED");
    println!("crash suite: seed {seed} (replay with TABCACHE_CRASH_SEED={seed})");
    let mut rng = XorShift(seed);
    let hub = hub(fill);
    // About 2 s for the whole workload cycle, so kills spread over every step of it.
    hub.slow_cdn(12_000_000);
    let dir = tempfile::tempdir().unwrap();
    let expected = expected_hashes();
    let work = tempfile::tempdir().unwrap();
    let (reader_stop, reader_err) = (work.path().join("stop"), work.path().join("reader.err"));
    let mut reader = child_command(TEST, &hub, dir.path())
        .env(READER_STOP, &reader_stop)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&reader_err).unwrap())
        .spawn()
        .unwrap();
    let reader_failed = |status: std::process::ExitStatus| -> String {
        format!(
            "the live reader process failed ({status}): {}",
            std::fs::read_to_string(&reader_err).unwrap_or_default()
        )
    };
    let (mut recovered, mut corrupt) = (0, 0);
    for _ in 0..kills {
        if let Some(status) = reader.try_wait().unwrap() {
            panic!("{}", reader_failed(status));
        }
        let mut child = child_command(TEST, &hub, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(30 + rng.next() % 2500);
        let started = Instant::now();
        while started.elapsed() < delay {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("the workload died by itself ({status}): {err}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let bad = check_recovered(dir.path(), &hub, &expected);
        corrupt += bad;
        if bad == 0 {
            recovered += 1;
        }
    }
    // The reader used the cache throughout without one failure.
    std::fs::write(&reader_stop, b"").unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = reader.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            reader.kill().unwrap();
            panic!("the live reader process did not stop");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{}", reader_failed(status));
    let mut out = String::new();
    std::io::Read::read_to_string(reader.stdout.as_mut().unwrap(), &mut out).unwrap();
    let rounds = out
        .lines()
        .find_map(|l| l.split_once("READER rounds ").map(|(_, n)| n))
        .unwrap_or_else(|| panic!("no reader tally: {out}"))
        .to_string();
    // After all that, the work still completes and every byte is right.
    hub.emu.clear_faults();
    let cache = open(dir.path(), &hub);
    cache.download_quant(REPO, "q4", None, None).unwrap();
    cache
        .download_file(OTHER, "weights.onnx", None, None)
        .unwrap();
    drop(cache);
    assert_eq!(check_recovered(dir.path(), &hub, &expected), 0);
    let cache = open(dir.path(), &hub);
    assert_eq!(
        cache.get_manifest(REPO).unwrap().unwrap().quants["q4"].status,
        QuantStatus::Downloaded
    );
    let weights = cache
        .get_file(OTHER, "weights.onnx", None)
        .unwrap()
        .unwrap();
    assert_eq!(weights, pseudo_random_bytes(BIG_LEN as usize, 2));
    println!(
        "crash suite: {recovered}/{kills} recovered, {corrupt} corrupt; \
         the live reader did {rounds} rounds"
    );
    assert_eq!((recovered, corrupt), (kills, 0));
}
