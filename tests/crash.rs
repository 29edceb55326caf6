//! Crash safety: a child process runs a download/delete workload against the hub emulator and
//! is killed with SIGKILL at random moments (during transfers, hashing, commits, catalog
//! updates, deletes). After every kill the cache must open, serve only correct bytes, report
//! truthful statuses, keep no orphan blobs and no unbounded temp files, and the next run must
//! finish the work. Prints a tally. `TABCACHE_SOAK=1` kills 300 times instead of 30;
//! `TABCACHE_CRASH_SEED=N` replays a run.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hub_emulator::{
    pseudo_random_bytes, pseudo_random_sha256, write_file, write_pseudo_random_file, Fault,
    FaultKind, Listener,
};
use tabcache::{ModelCache, QuantStatus};

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
fn workload(cache_dir: &str, endpoint: &str) {
    let cache = ModelCache::open(cache_dir, options_for(endpoint)).unwrap();
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

/// A small deterministic generator for kill times.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
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
    if let Some(m) = cache.get_manifest(REPO).unwrap() {
        for (key, q) in &m.quants {
            let all_held = q
                .files
                .iter()
                .all(|f| cache.has_file(REPO, f, None).unwrap());
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
    // Every blob on disk is recorded, and holds exactly the content its name says.
    let stats = cache.stats().unwrap();
    let blobs = blob_files(dir);
    let mut disk = 0;
    for name in &blobs {
        let bytes = std::fs::read(dir.join("blobs").join(name)).unwrap();
        disk += bytes.len() as u64;
        if &sha256_hex(&bytes) != name {
            corrupt += 1;
            eprintln!("CORRUPT: blob {name} does not hash to its name");
        }
    }
    assert_eq!(
        disk, stats.disk_bytes,
        "orphan or missing blob files: {blobs:?}"
    );
    // At most one partial download per distinct content.
    let tmp = tmp_files(dir);
    assert!(tmp.len() <= expected.len(), "tmp/ grows: {tmp:?}");
    corrupt
}

#[test]
fn random_kills_lose_nothing_and_serve_nothing_wrong() {
    if let (Ok(dir), Ok(endpoint)) = (
        std::env::var("TABCACHE_CRASH_CACHE"),
        std::env::var("TABCACHE_CRASH_ENDPOINT"),
    ) {
        workload(&dir, &endpoint);
        return;
    }
    let kills: usize = if std::env::var("TABCACHE_SOAK").is_ok() {
        300
    } else {
        30
    };
    let seed: u64 = std::env::var("TABCACHE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash suite: seed {seed} (replay with TABCACHE_CRASH_SEED={seed})");
    let mut rng = XorShift(seed);
    let hub = hub(fill);
    // About 2 s for the whole workload cycle, so kills spread over every step of it.
    hub.emu.add_fault(
        Fault::new(FaultKind::RateLimit {
            bytes_per_sec: 12_000_000,
        })
        .on(Listener::Cdn),
    );
    let dir = tempfile::tempdir().unwrap();
    let expected = expected_hashes();
    let (mut recovered, mut corrupt) = (0, 0);
    for _ in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "random_kills_lose_nothing_and_serve_nothing_wrong",
                "--exact",
                "--nocapture",
            ])
            .env("TABCACHE_CRASH_CACHE", dir.path())
            .env("TABCACHE_CRASH_ENDPOINT", hub.emu.url())
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
    println!("crash suite: {recovered}/{kills} recovered, {corrupt} corrupt");
    assert_eq!((recovered, corrupt), (kills, 0));
}
