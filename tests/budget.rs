//! The disk budget against the hub emulator: a download over the budget evicts the least
//! recently used variant (not the most recently read one), never a pinned one, one being read,
//! or one another process is downloading; a download that cannot fit fails before any CDN
//! request; `prune` with `dry_run` lists exactly what `prune` then removes.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use hub_emulator::{write_file, write_pseudo_random_file, Fault, FaultKind, Listener};
use tabcache::maintenance::PruneOptions;
use tabcache::{ErrorKind, ModelCache, QuantStatus};

const REPO: &str = "org/budget-gguf";
const SIZE: u64 = 300_000;
const CONFIG: &[u8] = br#"{"model_type":"llama"}"#;
/// Q2_K is split in two shards, so it can be partly cached while the rest downloads.
const Q2_SHARDS: [&str; 2] = ["m-Q2_K-00001-of-00002.gguf", "m-Q2_K-00002-of-00002.gguf"];

fn fill(root: &Path) {
    write_pseudo_random_file(root, REPO, Q2_SHARDS[0], SIZE / 2, 1).unwrap();
    write_pseudo_random_file(root, REPO, Q2_SHARDS[1], SIZE / 2, 2).unwrap();
    for (i, quant) in ["Q4_K_M", "Q5_K_M", "Q8_0"].iter().enumerate() {
        write_pseudo_random_file(root, REPO, &format!("m-{quant}.gguf"), SIZE, 3 + i as u64)
            .unwrap();
    }
    write_file(root, REPO, "config.json", CONFIG).unwrap();
}

/// Room for three variants and their shared config.json, not four.
fn three_variants() -> u64 {
    3 * SIZE + CONFIG.len() as u64 + 1000
}

fn status(cache: &ModelCache, quant: &str) -> QuantStatus {
    cache.get_manifest(REPO).unwrap().unwrap().quants[quant].status
}

fn held(cache: &ModelCache, path: &str) -> bool {
    cache.has_file(REPO, path, None).unwrap()
}

/// A cache holding Q2_K, Q4_K_M and Q5_K_M, downloaded in that order (so used in that order),
/// with a budget of three variants.
fn three_downloaded(hub: &Hub, dir: &Path) -> ModelCache {
    let cache = open(dir, hub);
    cache.scan_repo(REPO, None).unwrap();
    for quant in ["Q2_K", "Q4_K_M", "Q5_K_M"] {
        cache.download_quant(REPO, quant, None, None).unwrap();
        // Last uses are milliseconds apart at least.
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = cache.set_max_size(Some(three_variants())).unwrap();
    assert!(report.evicted.is_empty(), "three fit: {report:?}");
    cache
}

#[test]
fn the_least_recently_used_variant_goes_not_the_one_just_read() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = three_downloaded(&hub, dir.path());
    // Q2_K is the oldest download, but it is read now: Q4_K_M becomes the least recently used.
    assert!(cache.get_file(REPO, Q2_SHARDS[0], None).unwrap().is_some());
    std::thread::sleep(Duration::from_millis(5));

    cache.download_quant(REPO, "Q8_0", None, None).unwrap();
    assert!(!held(&cache, "m-Q4_K_M.gguf"), "Q4_K_M was evicted");
    assert_eq!(status(&cache, "Q4_K_M"), QuantStatus::Available);
    for path in [
        Q2_SHARDS[0],
        Q2_SHARDS[1],
        "m-Q5_K_M.gguf",
        "m-Q8_0.gguf",
        "config.json",
    ] {
        assert!(held(&cache, path), "{path} stays");
    }
    assert_eq!(status(&cache, "Q8_0"), QuantStatus::Downloaded);
    let stats = cache.stats().unwrap();
    assert!(stats.disk_bytes <= three_variants(), "{stats:?}");
    assert_eq!(stats.max_size, Some(three_variants()));
    assert_eq!(
        (stats.evictions.count, stats.evictions.bytes_freed),
        (1, SIZE)
    );
    let logged = &stats.evictions.recent[0];
    assert_eq!(
        (logged.quant.as_deref(), logged.files.as_slice()),
        (Some("Q4_K_M"), ["m-Q4_K_M.gguf".to_string()].as_slice())
    );
    // A second handle (any process) sees the same budget.
    assert_eq!(
        open(dir.path(), &hub).max_size().unwrap(),
        Some(three_variants())
    );
}

#[test]
fn a_pinned_variant_is_never_evicted() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = three_downloaded(&hub, dir.path());
    assert!(cache.pin(REPO, Some("Q2_K")).unwrap());
    cache.download_quant(REPO, "Q8_0", None, None).unwrap();
    assert!(
        held(&cache, Q2_SHARDS[0]),
        "pinned, though least recently used"
    );
    assert!(!held(&cache, "m-Q4_K_M.gguf"), "the next one went instead");

    // A pinned repo: nothing of it goes, even under a lower budget, so a download that
    // needs room fails up front.
    assert!(cache.pin(REPO, None).unwrap());
    let lowered = cache.set_max_size(Some(2 * SIZE)).unwrap();
    assert!(lowered.evicted.is_empty(), "{lowered:?}");
    let before = hub.cdn_bytes();
    let err = cache
        .download_quant(REPO, "Q4_K_M", None, None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DiskFull, "{err}");
    assert_eq!(hub.cdn_bytes(), before, "nothing was transferred");
}

#[test]
fn a_variant_being_read_in_another_thread_is_not_evicted() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = three_downloaded(&hub, dir.path());
    let (opened, wait_opened) = mpsc::channel();
    let (done, wait_done) = mpsc::channel::<()>();
    let reader_cache = cache.clone();
    let reader = std::thread::spawn(move || {
        let file = reader_cache
            .open_file(REPO, Q2_SHARDS[1], None)
            .unwrap()
            .unwrap();
        opened.send(()).unwrap();
        wait_done.recv().unwrap();
        drop(file);
    });
    wait_opened.recv().unwrap();
    // Opening it was a use: read the others after it, so Q2_K is the least recently used
    // again and only the open file protects it.
    for path in ["m-Q4_K_M.gguf", "m-Q5_K_M.gguf"] {
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get_file(REPO, path, None).unwrap().is_some());
    }
    cache.download_quant(REPO, "Q8_0", None, None).unwrap();
    done.send(()).unwrap();
    reader.join().unwrap();
    assert!(held(&cache, Q2_SHARDS[1]), "the open file's variant stays");
    assert!(!held(&cache, "m-Q4_K_M.gguf"));
}

#[test]
fn a_download_larger_than_the_budget_fails_before_any_cdn_request() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache.scan_repo(REPO, None).unwrap();
    cache.set_max_size(Some(SIZE / 2)).unwrap();
    hub.emu.clear_log();
    let err = cache.download_quant(REPO, "Q8_0", None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DiskFull);
    let message = err.to_string();
    assert!(
        message.contains("293.0 KiB") && message.contains("146.5 KiB"),
        "the message names what is needed and the budget: {message}"
    );
    assert!(hub.cdn_requests().is_empty(), "no CDN request was made");
    assert!(!held(&cache, "m-Q8_0.gguf"));
}

#[test]
fn prune_dry_run_lists_exactly_what_prune_removes() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = three_downloaded(&hub, dir.path());
    cache.set_max_size(None).unwrap();
    let to = PruneOptions {
        max_size: Some(SIZE + 1000),
        ..PruneOptions::default()
    };
    let dry = cache
        .prune(PruneOptions {
            dry_run: true,
            ..to
        })
        .unwrap();
    assert!(dry.dry_run);
    // Not has_file: asking counts as a use and would change the order.
    assert_eq!(
        cache.stats().unwrap().disk_bytes,
        dry.disk_bytes + dry.bytes_freed,
        "a dry run removes nothing"
    );
    let done = cache.prune(to).unwrap();
    assert_eq!(dry.evicted, done.evicted);
    assert_eq!(
        done.evicted
            .iter()
            .map(|e| e.quant.as_deref().unwrap())
            .collect::<Vec<_>>(),
        ["Q2_K", "Q4_K_M"],
        "oldest first, until one variant is left"
    );
    assert_eq!(done.disk_bytes, cache.stats().unwrap().disk_bytes);
    assert!(done.disk_bytes <= SIZE + 1000);
    assert_eq!(
        cache.prune(PruneOptions::default()).unwrap_err().kind(),
        ErrorKind::InvalidArgument,
        "no budget and no size: nothing to prune to"
    );
}

/// The child of `a_variant_another_process_is_downloading_is_not_evicted`: downloads Q2_K,
/// whose second shard the CDN sends slowly.
#[test]
fn child_downloads_q2_slowly() {
    let Some(child) = ChildSetup::from_env() else {
        return;
    };
    child
        .open()
        .download_quant(REPO, "Q2_K", None, None)
        .unwrap();
}

#[test]
fn a_variant_another_process_is_downloading_is_not_evicted() {
    if ChildSetup::from_env().is_some() {
        return;
    }
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache.scan_repo(REPO, None).unwrap();
    // Q2_K's first shard is the oldest content; its second is not cached yet.
    cache.download_file(REPO, Q2_SHARDS[0], None, None).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    for quant in ["Q4_K_M", "Q5_K_M"] {
        cache.download_quant(REPO, quant, None, None).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    cache.set_max_size(Some(three_variants())).unwrap();
    hub.emu.add_fault(
        Fault::new(FaultKind::RateLimit {
            bytes_per_sec: 50_000,
        })
        .on(Listener::Cdn)
        .path(Q2_SHARDS[1]),
    );
    hub.emu.clear_log();
    let mut child = child_command("child_downloads_q2_slowly", &hub, dir.path())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !hub
        .cdn_requests()
        .iter()
        .any(|r| r.target.contains(Q2_SHARDS[1]))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the child never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The child is mid-download: Q2_K is the least recently used variant, but in use.
    cache.download_quant(REPO, "Q8_0", None, None).unwrap();
    assert!(
        held(&cache, Q2_SHARDS[0]),
        "the variant being downloaded stays"
    );
    assert!(!held(&cache, "m-Q4_K_M.gguf"), "the next oldest went");
    assert!(child.wait().unwrap().success());
    assert!(held(&cache, Q2_SHARDS[1]));
}

#[test]
fn serving_counts_as_a_use_and_pull_through_respects_the_budget() {
    use tabcache::serve::{ServeOptions, Server};
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = three_downloaded(&hub, dir.path());
    let server = Server::start(&cache, ServeOptions::default()).unwrap();
    let url = |path: &str| format!("{}/{REPO}/resolve/main/{path}", server.url());
    // Q2_K is the oldest download; a client reading it makes Q4_K_M the least recently used.
    assert_eq!(common::http::get(&url(Q2_SHARDS[0]), &[]).status, 200);
    std::thread::sleep(Duration::from_millis(5));
    // Pulled through the server, Q8_0 is cached like a download: the budget makes room.
    hub.emu.clear_log();
    let q8 = common::http::get(&url("m-Q8_0.gguf"), &[]);
    assert_eq!((q8.status, q8.body.len() as u64), (200, SIZE));
    assert!(held(&cache, "m-Q8_0.gguf"));
    assert!(held(&cache, Q2_SHARDS[0]), "served, so recently used: kept");
    assert!(
        !held(&cache, "m-Q4_K_M.gguf"),
        "the least recently used went"
    );

    // What cannot fit is refused before any transfer: 507, with the sizes.
    cache.pin(REPO, None).unwrap();
    hub.emu.clear_log();
    let refused = common::http::get(&url("m-Q4_K_M.gguf"), &[]);
    assert_eq!(refused.status, 507, "{}", refused.json());
    assert!(
        refused.json()["error"].as_str().unwrap().contains("budget"),
        "{}",
        refused.json()
    );
    assert!(hub.cdn_requests().is_empty(), "nothing was transferred");
    server.stop();
}
