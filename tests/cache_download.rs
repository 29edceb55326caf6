//! Downloads through ModelCache against the hub emulator: a whole variant with shared files,
//! external data and a >100 MiB file served three ways; resume after SIGKILL; network faults;
//! deduplication; one transfer for many callers; a second process working beside the first;
//! huggingface_hub reading our snapshot view offline.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use hub_emulator::{
    pseudo_random_bytes, pseudo_random_sha256, write_file, write_pseudo_random_file, Fault,
    FaultKind, Listener,
};
use tabcache::{ErrorKind, ModelCache, QuantStatus};

const REPO: &str = "org/model";
const BIG: &str = "onnx/model_q4.onnx_data";
const BIG_LEN: u64 = 110 << 20;
const MID: &str = "onnx/model_fp16.onnx";
const MID_LEN: u64 = 6 << 20;

fn fill(root: &Path) {
    write_file(root, REPO, "config.json", br#"{"model_type":"llama"}"#).unwrap();
    write_file(
        root,
        REPO,
        "tokenizer.json",
        &pseudo_random_bytes(50_000, 9),
    )
    .unwrap();
    write_pseudo_random_file(root, REPO, "onnx/model_q4.onnx", 300_000, 1).unwrap();
    write_pseudo_random_file(root, REPO, BIG, BIG_LEN, 2).unwrap();
    write_pseudo_random_file(root, REPO, MID, MID_LEN, 3).unwrap();
}

fn sha256_of_reader(mut r: impl Read) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    tabcache::digest::to_hex(&h.finalize())
}

#[test]
fn a_variant_downloads_verifies_and_is_served_three_ways() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache.scan_repo(REPO, None).unwrap();
    let mut calls: Vec<(u64, u64)> = Vec::new();
    let mut record = |loaded: u64, total: u64| {
        calls.push((loaded, total));
        true
    };
    let paths = cache
        .download_quant(REPO, "q4", None, Some(&mut record))
        .unwrap();

    let total = BIG_LEN + 300_000 + 50_000 + 22;
    assert!(
        calls.len() >= 2,
        "progress was reported {} times",
        calls.len()
    );
    assert!(
        calls.iter().all(|&(_, t)| t == total),
        "total is the whole variant"
    );
    assert!(
        calls.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress is monotonic"
    );
    assert_eq!(
        calls.last(),
        Some(&(total, total)),
        "final call reports completion"
    );
    assert_eq!(
        calls.iter().filter(|c| c.0 == total).count(),
        1,
        "one final call"
    );

    let m = cache.get_manifest(REPO).unwrap().unwrap();
    assert_eq!(m.quants["q4"].status, QuantStatus::Downloaded);
    assert_eq!(m.quants["q4"].downloaded_size, Some(total));

    // get_file: the whole bytes.
    let tok = cache
        .get_file(REPO, "tokenizer.json", None)
        .unwrap()
        .unwrap();
    assert_eq!(tok, pseudo_random_bytes(50_000, 9));
    // open_file: a stream over the >100 MiB file.
    let reader = cache.open_file(REPO, BIG, None).unwrap().unwrap();
    assert_eq!(sha256_of_reader(reader), pseudo_random_sha256(BIG_LEN, 2));
    // file_path: the snapshot view, external data beside its model under the repo's names.
    let model = cache
        .file_path(REPO, "onnx/model_q4.onnx", None)
        .unwrap()
        .unwrap();
    let data = cache.file_path(REPO, BIG, None).unwrap().unwrap();
    assert_eq!(model.parent(), data.parent());
    assert!(data.ends_with(Path::new("onnx/model_q4.onnx_data")));
    assert!(model.starts_with(cache.hub_cache_dir()));
    assert_eq!(
        sha256_of_reader(std::fs::File::open(&data).unwrap()),
        pseudo_random_sha256(BIG_LEN, 2)
    );
    // download_quant gave each of the variant's files' view paths, in the variant's order.
    let m = cache.get_manifest(REPO).unwrap().unwrap();
    let expected: Vec<_> = m.quants["q4"]
        .files
        .iter()
        .map(|f| cache.file_path(REPO, f, None).unwrap().unwrap())
        .collect();
    assert_eq!(paths, expected);
    // The snapshot folder holds them under their repo paths, as snapshot_download's does.
    let snapshot = cache.snapshot_dir(REPO, None).unwrap().unwrap();
    assert_eq!(snapshot.join(BIG), data);
    assert_eq!(cache.snapshot_dir("org/never-cached", None).unwrap(), None);
    // Not part of the variant: not cached.
    assert!(!cache.has_file(REPO, MID, None).unwrap());
    assert_eq!(cache.get_file(REPO, MID, None).unwrap(), None);
    assert_eq!(cache.file_path(REPO, MID, None).unwrap(), None);
    assert!(
        tmp_files(dir.path()).is_empty(),
        "tmp/ left behind: {:?}",
        tmp_files(dir.path())
    );
}

/// Run as a child process (see `a_killed_download_resumes_from_its_durable_ranges`).
fn child_download(child: &ChildSetup) {
    let mut options = child.options();
    options.transfer.connections = 4;
    let cache = ModelCache::open(&child.cache, options).unwrap();
    cache.download_file(REPO, BIG, None, None).unwrap();
    println!("child finished");
}

#[test]
fn a_killed_download_resumes_from_its_durable_ranges() {
    if let Some(child) = ChildSetup::from_env() {
        return child_download(&child);
    }
    let hub = hub(fill);
    // Slow the CDN so the kills land mid-transfer: 4 connections x 8 MB/s.
    hub.slow_cdn(8_000_000);
    let dir = tempfile::tempdir().unwrap();
    let opts = test_transfer();
    let slack_per_kill = opts.connections as u64 * opts.range_size;
    let mut kills = 0;
    for fraction in [0.15, 0.4, 0.7] {
        let test = "a_killed_download_resumes_from_its_durable_ranges";
        let mut child = child_command(test, &hub, dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let target = (BIG_LEN as f64 * fraction) as u64;
        let start = Instant::now();
        while hub.cdn_bytes() < target {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "child made no progress"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "child ended before the kill"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        // The reopened cache is consistent: nothing half-done is served.
        let cache = open(dir.path(), &hub);
        assert!(!cache.has_file(REPO, BIG, None).unwrap());
        assert_eq!(cache.get_file(REPO, BIG, None).unwrap(), None);
        assert!(blob_files(dir.path()).is_empty());
    }
    hub.emu.clear_faults();
    let cache = open(dir.path(), &hub);
    cache.download_file(REPO, BIG, None, None).unwrap();
    let reader = cache.open_file(REPO, BIG, None).unwrap().unwrap();
    assert_eq!(sha256_of_reader(reader), pseudo_random_sha256(BIG_LEN, 2));
    let fetched = hub.cdn_bytes();
    assert!(
        fetched <= BIG_LEN + kills * slack_per_kill,
        "fetched {fetched} bytes for a {BIG_LEN}-byte file over {kills} kills (allowed {} extra per kill)",
        slack_per_kill
    );
    assert!(tmp_files(dir.path()).is_empty());
}

/// Download MID (ranged) and config.json (one stream) with `fault` active; return the result.
fn download_with_fault(fault: Fault) -> (tempfile::TempDir, Hub, tabcache::Result<()>) {
    let hub = hub(fill);
    hub.emu.add_fault(fault);
    let dir = tempfile::tempdir().unwrap();
    let result = {
        let cache = open(dir.path(), &hub);
        cache
            .download_file(REPO, MID, None, None)
            .and_then(|_| cache.download_file(REPO, "tokenizer.json", None, None))
            .map(|_| ())
    };
    (dir, hub, result)
}

fn assert_cached_and_right(dir: &Path, hub: &Hub) {
    let cache = open(dir, hub);
    let got = cache
        .get_file(REPO, MID, None)
        .unwrap()
        .expect("MID cached");
    assert_eq!(sha256_hex(&got), pseudo_random_sha256(MID_LEN, 3));
    let tok = cache
        .get_file(REPO, "tokenizer.json", None)
        .unwrap()
        .expect("tokenizer cached");
    assert_eq!(tok, pseudo_random_bytes(50_000, 9));
}

#[test]
fn transient_faults_end_in_the_right_file() {
    let faults = [
        ("503 burst", Fault::status(503).on(Listener::Any).times(3)),
        (
            "429 with Retry-After/RateLimit",
            Fault::rate_limited(0).times(2),
        ),
        (
            "dropped connection",
            Fault::new(FaultKind::DropAfter {
                bytes: 100_000,
                reset: true,
            })
            .on(Listener::Cdn)
            .times(2),
        ),
        (
            "truncated body",
            Fault::new(FaultKind::Truncate { missing: 1000 })
                .on(Listener::Cdn)
                .times(2),
        ),
        (
            "server ignores Range",
            Fault::new(FaultKind::IgnoreRange).on(Listener::Cdn),
        ),
        ("chunked without length", Fault::new(FaultKind::Chunked)),
        (
            "stall past the timeout",
            Fault::new(FaultKind::Stall {
                bytes: 10_000,
                seconds: 4.0,
            })
            .on(Listener::Cdn)
            .times(1),
        ),
    ];
    for (name, fault) in faults {
        let (dir, hub, result) = download_with_fault(fault);
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_cached_and_right(dir.path(), &hub);
    }
}

#[test]
fn corrupt_bytes_are_an_error_and_nothing_is_committed() {
    for (name, fault, path) in [
        (
            "corrupt ranged",
            Fault::new(FaultKind::Corrupt { offset: 5_000_000 }).path("fp16"),
            MID,
        ),
        (
            "corrupt stream",
            Fault::new(FaultKind::Corrupt { offset: 10 }).path("tokenizer"),
            "tokenizer.json",
        ),
        (
            "one byte too many",
            Fault::new(FaultKind::ExtraByte).path("tokenizer"),
            "tokenizer.json",
        ),
    ] {
        let hub = hub(fill);
        hub.emu.add_fault(fault);
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path(), &hub);
        let err = cache.download_file(REPO, path, None, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{name}: {err}");
        assert!(
            err.message().contains("nothing was cached") || err.message().contains("not cached"),
            "{name}: {err}"
        );
        assert!(!cache.has_file(REPO, path, None).unwrap(), "{name}");
        assert_eq!(cache.get_file(REPO, path, None).unwrap(), None, "{name}");
        assert!(
            blob_files(dir.path()).is_empty(),
            "{name}: a blob was committed"
        );
        assert!(
            tmp_files(dir.path()).is_empty(),
            "{name}: bad bytes kept in tmp/"
        );
    }
}

#[test]
fn shared_content_is_stored_once_and_survives_deleting_the_other_repo() {
    let hub = hub(|root| {
        fill(root);
        write_file(
            root,
            "org/copy",
            "config.json",
            br#"{"model_type":"llama"}"#,
        )
        .unwrap();
        write_pseudo_random_file(root, "org/copy", "weights/same.onnx", MID_LEN, 3).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache.download_file(REPO, MID, None, None).unwrap();
    cache
        .download_file(REPO, "config.json", None, None)
        .unwrap();
    hub.settled_requests();
    let before = hub.cdn_bytes();
    let api_bytes_before = hub.emu.bytes_sent_for("copy/resolve");
    cache
        .download_file("org/copy", "weights/same.onnx", None, None)
        .unwrap();
    cache
        .download_file("org/copy", "config.json", None, None)
        .unwrap();
    hub.settled_requests();
    assert_eq!(
        hub.cdn_bytes(),
        before,
        "the second repo's identical file transferred bytes"
    );
    assert_eq!(
        hub.emu.bytes_sent_for("copy/resolve"),
        api_bytes_before,
        "a HEAD has no body"
    );
    assert_eq!(
        blob_files(dir.path()).len(),
        2,
        "one blob per distinct content"
    );
    let stats = cache.stats().unwrap();
    assert_eq!(stats.total_repos, 2);
    assert_eq!(stats.total_files, 4);
    assert_eq!(stats.total_size, 2 * (MID_LEN + 22));
    assert_eq!(stats.disk_bytes, MID_LEN + 22);
    assert_eq!(stats.dedup_saved_bytes, MID_LEN + 22);

    let freed = cache.delete_model(REPO).unwrap();
    assert_eq!(freed, 0, "every blob is still referenced by org/copy");
    assert!(!cache.has_file(REPO, MID, None).unwrap());
    let same = cache
        .get_file("org/copy", "weights/same.onnx", None)
        .unwrap()
        .unwrap();
    assert_eq!(sha256_hex(&same), pseudo_random_sha256(MID_LEN, 3));
    assert_eq!(cache.delete_model("org/copy").unwrap(), MID_LEN + 22);
    assert!(blob_files(dir.path()).is_empty());
    assert_eq!(cache.stats().unwrap(), tabcache::Stats::default());
}

#[test]
fn eight_threads_asking_for_one_variant_share_one_transfer() {
    let hub = hub(|root| {
        write_file(root, REPO, "config.json", b"{}").unwrap();
        write_pseudo_random_file(root, REPO, "onnx/model_fp16.onnx", MID_LEN, 3).unwrap();
        write_pseudo_random_file(root, REPO, "onnx/model_fp16.onnx_data", 2 * MID_LEN, 4).unwrap();
    });
    // Slow enough that all eight threads ask while the first transfer runs.
    hub.slow_cdn(20_000_000);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache.scan_repo(REPO, None).unwrap();
    let successes = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let mut last = 0;
                let mut check = |loaded: u64, _total: u64| {
                    assert!(loaded >= last);
                    last = loaded;
                    true
                };
                cache
                    .download_quant(REPO, "fp16", None, Some(&mut check))
                    .unwrap();
                successes.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    assert_eq!(successes.load(Ordering::SeqCst), 8);
    hub.settled_requests();
    assert_eq!(
        hub.cdn_bytes(),
        3 * MID_LEN,
        "the content was transferred more than once"
    );
    let data = cache
        .get_file(REPO, "onnx/model_fp16.onnx_data", None)
        .unwrap()
        .unwrap();
    assert_eq!(sha256_hex(&data), pseudo_random_sha256(2 * MID_LEN, 4));
}

#[test]
fn cancelling_from_the_callback_keeps_what_was_fetched_for_the_next_call() {
    let hub = hub(fill);
    hub.slow_cdn(20_000_000);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    // Total 0 (unknown) while the file is resolved: keep going until it is known.
    let mut stop_at_half = |loaded: u64, total: u64| total == 0 || loaded < total / 2;
    let started = Instant::now();
    let err = cache
        .download_file(REPO, BIG, None, Some(&mut stop_at_half))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(!cache.has_file(REPO, BIG, None).unwrap());
    hub.settled_requests();
    let first = hub.cdn_bytes();
    assert!(
        (BIG_LEN / 2..BIG_LEN).contains(&first),
        "first attempt fetched {first}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    hub.emu.clear_faults();
    cache.download_file(REPO, BIG, None, None).unwrap();
    hub.settled_requests();
    let opts = test_transfer();
    let extra = hub.cdn_bytes() - BIG_LEN;
    assert!(
        extra <= opts.connections as u64 * opts.range_size,
        "resume re-fetched {extra} bytes beyond the file size"
    );
}

#[test]
fn offline_serves_what_is_cached_and_asks_nothing() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = open(dir.path(), &hub);
        cache
            .download_file(REPO, "config.json", None, None)
            .unwrap();
    }
    hub.settled_requests();
    hub.emu.clear_log();
    let cache = ModelCache::open(dir.path(), offline_options(&hub)).unwrap();
    assert!(cache.has_file(REPO, "config.json", None).unwrap());
    let path = cache
        .download_file(REPO, "config.json", None, None)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), br#"{"model_type":"llama"}"#);
    let err = cache
        .download_file(REPO, "tokenizer.json", None, None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Offline);
    assert!(
        hub.settled_requests().is_empty(),
        "offline mode made requests"
    );
}

/// Run as a child process beside the parent, which holds the same cache open: open it, read
/// what the parent downloaded, download a file of its own, and report how it went.
fn child_open(child: &ChildSetup) {
    let started = Instant::now();
    let cache = child.open();
    let open_ms = started.elapsed().as_millis();
    assert!(cache.has_file(REPO, "config.json", None).unwrap());
    let config = cache.get_file(REPO, "config.json", None).unwrap().unwrap();
    assert_eq!(config, br#"{"model_type":"llama"}"#);
    let path = cache
        .download_file(REPO, "tokenizer.json", None, None)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), pseudo_random_bytes(50_000, 9));
    println!("OPEN-RESULT {open_ms} ok");
}

#[test]
fn a_second_process_opens_the_cache_and_works_beside_the_first() {
    if let Some(child) = ChildSetup::from_env() {
        return child_open(&child);
    }
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache
        .download_file(REPO, "config.json", None, None)
        .unwrap();
    let started = Instant::now();
    let test = "a_second_process_opens_the_cache_and_works_beside_the_first";
    let out = child_command(test, &hub, dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the second process failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("OPEN-RESULT ").map(|(_, rest)| rest))
        .expect(&stdout);
    // Opening does not wait for the first process to let go.
    let open_ms: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(open_ms < 2000, "the second open took {open_ms} ms");
    assert!(started.elapsed() < Duration::from_secs(20));
    // The first process, open all along, sees the second's download and keeps working.
    assert!(cache.has_file(REPO, "tokenizer.json", None).unwrap());
    assert_eq!(
        cache
            .get_file(REPO, "tokenizer.json", None)
            .unwrap()
            .unwrap(),
        pseudo_random_bytes(50_000, 9)
    );
    cache
        .download_file(REPO, "onnx/model_q4.onnx", None, None)
        .unwrap();
}

#[test]
fn huggingface_hub_reads_our_snapshot_view_offline() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache
        .download_file(REPO, "config.json", None, None)
        .unwrap();
    cache
        .download_file(REPO, "onnx/model_q4.onnx", None, None)
        .unwrap();
    hub.settled_requests();
    hub.emu.clear_log();
    let script = r#"
import sys, hashlib
from huggingface_hub import hf_hub_download
cache_dir, repo = sys.argv[1], sys.argv[2]
for name in ["config.json", "onnx/model_q4.onnx"]:
    p = hf_hub_download(repo, name, cache_dir=cache_dir)
    print(name, p, hashlib.sha256(open(p, "rb").read()).hexdigest())
try:
    hf_hub_download(repo, "tokenizer.json", cache_dir=cache_dir)
    print("UNEXPECTED tokenizer found")
except Exception as e:
    print("missing-ok", type(e).__name__)
"#;
    let stdout = python_stdout(
        Command::new(test_python())
            .args(["-c", script])
            .arg(cache.hub_cache_dir())
            .arg(REPO)
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_ENDPOINT", hub.emu.url())
            .env_remove("HF_TOKEN"),
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let config = cache.file_path(REPO, "config.json", None).unwrap().unwrap();
    assert_eq!(
        lines[0],
        format!(
            "config.json {} {}",
            config.display(),
            sha256_hex(br#"{"model_type":"llama"}"#)
        )
    );
    assert!(
        lines[1].ends_with(&pseudo_random_sha256(300_000, 1)),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("missing-ok"), "{}", lines[2]);
    assert!(
        hub.settled_requests().is_empty(),
        "huggingface_hub went online"
    );
}

#[test]
fn manifest_statuses_follow_a_download_through_downloading_failed_and_downloaded() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache.scan_repo(REPO, None).unwrap();

    // A corrupt server: the variant fails, with the reason in the manifest.
    let fault = hub
        .emu
        .add_fault(Fault::new(FaultKind::Corrupt { offset: 100 }).path("model_q4.onnx"));
    let err = cache.download_quant(REPO, "q4", None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let q4 = cache.get_manifest(REPO).unwrap().unwrap().quants["q4"].clone();
    assert_eq!(q4.status, QuantStatus::Failed);
    assert!(
        q4.error.as_deref().unwrap_or("").contains("sha256"),
        "{:?}",
        q4.error
    );
    hub.emu.remove_fault(fault);

    // While it downloads (slowly), another thread sees `downloading` and growing bytes.
    hub.slow_cdn(30_000_000);
    let seen = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen = Vec::new();
            for _ in 0..400 {
                let q = cache.get_manifest(REPO).unwrap().unwrap().quants["q4"].clone();
                seen.push((q.status, q.downloaded_size.unwrap_or(0)));
                if q.status == QuantStatus::Downloaded {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            seen
        });
        cache.download_quant(REPO, "q4", None, None).unwrap();
        watcher.join().unwrap()
    });
    let downloading: Vec<u64> = seen
        .iter()
        .filter(|(st, _)| *st == QuantStatus::Downloading)
        .map(|&(_, n)| n)
        .collect();
    assert!(downloading.len() >= 2, "never saw `downloading`: {seen:?}");
    assert!(
        downloading.windows(2).all(|w| w[0] <= w[1]),
        "downloaded_size went back: {downloading:?}"
    );
    assert!(
        downloading.last() > downloading.first(),
        "downloaded_size did not grow"
    );
    let q4 = cache.get_manifest(REPO).unwrap().unwrap().quants["q4"].clone();
    assert_eq!(q4.status, QuantStatus::Downloaded);
    assert_eq!(q4.error, None);
    assert_eq!(q4.downloaded_size, q4.total_size);
}

/// A `FileEvent` as recorded: (path, `Some((loaded, total))` for progress or `None` for done,
/// the size when done).
type SeenEvent = (String, Option<(u64, u64)>, u64);

#[test]
fn download_files_fetches_several_in_order_and_tells_about_each_file() {
    let hub = hub(|root| {
        write_file(root, REPO, "config.json", b"{}").unwrap();
        write_pseudo_random_file(root, REPO, "a.bin", 3 << 20, 4).unwrap();
        write_pseudo_random_file(root, REPO, "b.onnx", 200_000, 5).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    let asked = ["b.onnx", "config.json", "a.bin"];
    let total = (3 << 20) + 200_000 + 2;

    let mut events: Vec<SeenEvent> = Vec::new();
    let mut last_overall = 0;
    let paths = cache
        .download_files(
            REPO,
            &asked,
            None,
            Some(&mut |loaded, of| {
                // While the files are planned the total is not known yet: (0, 0).
                assert!(of == total || (of, loaded) == (0, 0), "({loaded}, {of})");
                last_overall = loaded;
                true
            }),
            Some(&mut |event| {
                events.push(match event {
                    tabcache::FileEvent::Progress {
                        path,
                        loaded,
                        total,
                    } => (path.to_string(), Some((loaded, total)), 0),
                    tabcache::FileEvent::Done { path, size } => (path.to_string(), None, size),
                })
            }),
        )
        .unwrap();
    assert_eq!(last_overall, total);
    for (path, local) in asked.iter().zip(&paths) {
        assert!(local.ends_with(path), "{local:?} for {path}");
        assert_eq!(
            std::fs::read(local).unwrap(),
            std::fs::read(hub.root().join(REPO).join(path)).unwrap()
        );
    }
    for path in asked {
        let done: Vec<u64> = events
            .iter()
            .filter(|(p, progress, _)| p == path && progress.is_none())
            .map(|(_, _, size)| *size)
            .collect();
        let want = std::fs::metadata(hub.root().join(REPO).join(path))
            .unwrap()
            .len();
        assert_eq!(done, vec![want], "one Done per file with its size: {path}");
        let done_at = events
            .iter()
            .position(|(p, progress, _)| p == path && progress.is_none())
            .unwrap();
        for (p, progress, _) in &events {
            if let (true, Some((loaded, of))) = (p == path, progress) {
                assert!(loaded <= of && *of == want, "{path}: {loaded}/{of}");
            }
        }
        assert!(
            !events[done_at + 1..]
                .iter()
                .any(|(p, progress, _)| p == path && progress.is_some()),
            "progress of {path} after its Done"
        );
    }

    // Asked again: every file answers from the cache, in order, with no transfer, and the
    // progress still covers all their bytes.
    let cdn_before = hub.cdn_bytes();
    let mut again = Vec::new();
    let mut final_progress = None;
    let paths_again = cache
        .download_files(
            REPO,
            &asked,
            None,
            Some(&mut |loaded, of| {
                final_progress = Some((loaded, of));
                true
            }),
            Some(&mut |event| again.push(format!("{event:?}"))),
        )
        .unwrap();
    assert_eq!(final_progress, Some((total, total)));
    assert_eq!(paths_again, paths);
    assert_eq!(hub.cdn_bytes(), cdn_before);
    assert_eq!(again.len(), 3, "{again:?}");
    assert!(again.iter().all(|e| e.starts_with("Done")), "{again:?}");

    // A hostile path is refused before any request.
    let err = cache
        .download_files(REPO, &["config.json", "../x"], None, None, None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}
