//! Eight threads hammer one cache with a random mix of every operation (downloads of the same
//! and of different variants, reads, deletes, scans, stats) for a bounded time. No deadlock,
//! no panic, every error one a user could act on, and at the end a consistent catalog: every
//! blob on disk recorded and right, every file reported cached served with the right bytes.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use hub_emulator::{pseudo_random_sha256, write_file, write_pseudo_random_file};

const A: &str = "org/alpha";
const B: &str = "org/beta";

/// (repo, path, len, seed); beta shares alpha's fp16 weights.
fn files() -> Vec<(&'static str, &'static str, u64, u64)> {
    vec![
        (A, "onnx/model_fp16.onnx", 6 << 20, 1),
        (A, "onnx/model_q4.onnx", 300_000, 2),
        (A, "onnx/model_q4.onnx_data", 5 << 20, 3),
        (A, "tokenizer.json", 20_000, 4),
        (B, "onnx/model_fp16.onnx", 6 << 20, 1),
        (B, "onnx/model.onnx", 2 << 20, 5),
        (B, "tokenizer.json", 20_000, 6),
    ]
}

fn fill(root: &Path) {
    for (repo, path, len, seed) in files() {
        write_pseudo_random_file(root, repo, path, len, seed).unwrap();
    }
    write_file(root, A, "config.json", b"{}").unwrap();
    write_file(root, B, "config.json", b"{}").unwrap();
}

#[test]
fn eight_threads_of_mixed_operations_leave_a_consistent_cache() {
    let hub = hub(fill);
    hub.slow_cdn(40_000_000);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    let expected: HashMap<(&str, &str), String> = files()
        .into_iter()
        .map(|(r, p, len, seed)| ((r, p), pseudo_random_sha256(len, seed)))
        .chain([
            ((A, "config.json"), sha256_hex(b"{}")),
            ((B, "config.json"), sha256_hex(b"{}")),
        ])
        .collect();
    let ops = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(6);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (cache, expected, ops) = (&cache, &expected, &ops);
            s.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                while Instant::now() < deadline {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let repo = if x & 1 == 0 { A } else { B };
                    let result: tabcache::Result<()> = match (x >> 1) % 9 {
                        0 => cache.scan_repo(repo, None).map(|_| ()),
                        1 => cache
                            .download_quant(repo, if repo == A { "q4" } else { "fp16" }, None, None)
                            .map(|_| ()),
                        2 => cache
                            .download_quant(
                                repo,
                                if repo == A { "fp16" } else { "fp32" },
                                None,
                                None,
                            )
                            .map(|_| ()),
                        3 => cache
                            .download_file(repo, "onnx/model_fp16.onnx", None, None)
                            .map(|_| ()),
                        4 => cache.has_file(repo, "tokenizer.json", None).map(|_| ()),
                        5 => match cache.get_file(repo, "onnx/model_fp16.onnx", None) {
                            Ok(Some(bytes)) => {
                                assert_eq!(
                                    &sha256_hex(&bytes),
                                    &expected[&(repo, "onnx/model_fp16.onnx")]
                                );
                                Ok(())
                            }
                            other => other.map(|_| ()),
                        },
                        6 if (x >> 8).is_multiple_of(4) => cache.delete_model(repo).map(|_| ()),
                        7 => cache.stats().map(|_| ()),
                        _ => cache.get_manifest(repo).map(|_| ()),
                    };
                    if let Err(e) = result {
                        // A quant download of a repo another thread just deleted finds no manifest
                        // and rescans; nothing else may fail.
                        panic!("thread {t}: unexpected error {:?}: {e}", e.kind());
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let done = ops.load(Ordering::Relaxed);
    println!("concurrency: {done} operations over 8 threads, no deadlock, no panic");
    assert!(done > 50, "only {done} operations ran");
    drop(cache);

    // Consistency after the storm, seen by a fresh open.
    let cache = open(dir.path(), &hub);
    for ((repo, path), sha) in &expected {
        if cache.has_file(repo, path, None).unwrap() {
            let bytes = cache.get_file(repo, path, None).unwrap().unwrap();
            assert_eq!(&sha256_hex(&bytes), sha, "{repo}/{path} served wrong bytes");
        }
    }
    let mut disk = 0;
    for name in blob_files(dir.path()) {
        let bytes = std::fs::read(dir.path().join("blobs").join(&name)).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            name,
            "blob content does not match its name"
        );
        disk += bytes.len() as u64;
    }
    let stats = cache.stats().unwrap();
    assert_eq!(stats.disk_bytes, disk, "catalog and blobs/ disagree");
    assert!(
        tmp_files(dir.path()).is_empty(),
        "tmp/ left behind: {:?}",
        tmp_files(dir.path())
    );
    // And it still works.
    cache.download_quant(A, "q4", None, None).unwrap();
    assert!(cache.has_file(A, "onnx/model_q4.onnx_data", None).unwrap());
}

/// A reader that finds a file in the catalog while another thread deletes it: the blob is gone
/// by the time it opens it. That is "not cached" (or, if it came back meanwhile, the new
/// bytes), never an I/O error.
#[test]
fn a_read_racing_a_delete_is_not_cached_not_an_error() {
    const SMALL: &str = "tokenizer.json";
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    let want = pseudo_random_sha256(20_000, 4);
    let (reads, misses, cycles) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    std::thread::scope(|s| {
        s.spawn(|| {
            while Instant::now() < deadline {
                cache.download_file(A, SMALL, None, None).unwrap();
                cache.delete_model(A).unwrap();
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                while Instant::now() < deadline {
                    match cache.get_file(A, SMALL, None) {
                        Ok(Some(bytes)) => assert_eq!(sha256_hex(&bytes), want),
                        Ok(None) => {
                            misses.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("get_file racing a delete: {:?}: {e}", e.kind()),
                    }
                    match cache.open_file(A, SMALL, None) {
                        Ok(_) => {}
                        Err(e) => panic!("open_file racing a delete: {:?}: {e}", e.kind()),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let (reads, misses, cycles) = (reads.into_inner(), misses.into_inner(), cycles.into_inner());
    println!("race: {reads} reads ({misses} not cached) over {cycles} download/delete cycles");
    assert!(
        cycles > 20 && misses > 0 && misses < reads,
        "the race did not run"
    );
}
