//! `scan_repo` and `get_manifest` through ModelCache against the hub emulator: the seed's
//! manifest shape, persistence in the catalog, answers without network, re-scans that find a
//! new commit, offline mode.

mod common;

use std::path::Path;

use common::*;
use hub_emulator::{write_file, write_pseudo_random_file, write_repo_config, RepoConfig};
use tabcache::{ErrorKind, ModelCache, QuantStatus};

const REPO: &str = "org/tiny-onnx";

fn fill(root: &Path) {
    write_file(root, REPO, "config.json", br#"{"model_type":"bert"}"#).unwrap();
    write_file(root, REPO, "tokenizer.json", b"{\"tok\":1}").unwrap();
    write_file(root, REPO, "README.md", b"# tiny").unwrap();
    write_pseudo_random_file(root, REPO, "onnx/model.onnx", 40_000, 1).unwrap();
    write_pseudo_random_file(root, REPO, "onnx/model_fp16.onnx", 20_000, 2).unwrap();
    write_pseudo_random_file(root, REPO, "onnx/model_q4f16.onnx", 5_000, 3).unwrap();
    write_pseudo_random_file(root, REPO, "onnx/model_q4f16.onnx_data", 9_000, 4).unwrap();
    let config = RepoConfig {
        pipeline_tag: Some("feature-extraction".into()),
        ..RepoConfig::default()
    };
    write_repo_config(root, REPO, &config).unwrap();
}

#[test]
fn scan_returns_the_seed_manifest_shape() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    let m = cache.scan_repo(REPO, None).unwrap();
    assert_eq!(m.repo_id, REPO);
    assert_eq!(m.task.as_deref(), Some("feature-extraction"));
    assert_eq!(m.revision, "main");
    assert_eq!(Some(m.commit.clone()), hub.emu.commit_of(REPO));
    assert!(m.created_at > 1_700_000_000 && m.updated_at >= m.created_at);
    let keys: Vec<&str> = m.quants.keys().map(String::as_str).collect();
    assert_eq!(keys, ["fp16", "fp32", "q4f16"]);
    let q4 = &m.quants["q4f16"];
    assert_eq!(q4.status, QuantStatus::Available);
    assert_eq!(
        q4.files,
        [
            "onnx/model_q4f16.onnx",
            "onnx/model_q4f16.onnx_data",
            "config.json",
            "tokenizer.json"
        ]
    );
    let config_len = br#"{"model_type":"bert"}"#.len() as u64;
    assert_eq!(q4.total_size, Some(5_000 + 9_000 + config_len + 9));
    assert_eq!(q4.downloaded_size, Some(0));
    assert!(q4.last_updated >= m.created_at);

    // The JSON form is exactly the seed's field names (plus revision, commit, addons).
    let json = serde_json::to_value(&m).unwrap();
    for field in [
        "repo_id",
        "task",
        "created_at",
        "updated_at",
        "quants",
        "revision",
        "commit",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    let q = &json["quants"]["q4f16"];
    assert_eq!(q["status"], "available");
    for field in [
        "status",
        "files",
        "total_size",
        "downloaded_size",
        "last_updated",
    ] {
        assert!(q.get(field).is_some(), "{field} missing from {q}");
    }
}

#[test]
fn get_manifest_answers_from_the_catalog_without_network_and_survives_reopen() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = open(dir.path(), &hub);
        assert_eq!(
            cache.get_manifest(REPO).unwrap(),
            None,
            "never scanned: None"
        );
        cache.scan_repo(REPO, None).unwrap();
    }
    hub.settled_requests();
    hub.emu.clear_log();
    let cache = open(dir.path(), &hub);
    let m = cache
        .get_manifest(REPO)
        .unwrap()
        .expect("manifest persisted");
    assert_eq!(m.quants.len(), 3);
    assert!(
        hub.settled_requests().is_empty(),
        "get_manifest made requests"
    );
    assert_eq!(cache.get_manifest("org/other").unwrap(), None);
    assert_eq!(
        cache.get_manifest("../bad").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn rescan_after_a_new_commit_updates_files_and_statuses() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    let first = cache.scan_repo(REPO, None).unwrap();
    cache.download_quant(REPO, "q4f16", None, None).unwrap();
    assert_eq!(
        cache.get_manifest(REPO).unwrap().unwrap().quants["q4f16"].status,
        QuantStatus::Downloaded
    );

    // The repo gets a new q4f16 weight file and a new variant.
    write_pseudo_random_file(hub.root(), REPO, "onnx/model_q4f16.onnx", 6_000, 30).unwrap();
    write_pseudo_random_file(hub.root(), REPO, "onnx/model_int8.onnx", 7_000, 31).unwrap();
    let second = cache.scan_repo(REPO, None).unwrap();
    assert_ne!(second.commit, first.commit);
    assert_eq!(second.created_at, first.created_at);
    assert!(second.quants.contains_key("int8"));
    let q4 = &second.quants["q4f16"];
    assert_eq!(
        q4.status,
        QuantStatus::Available,
        "its weight changed: no longer downloaded"
    );
    // The unchanged files (external data, config, tokenizer) are still held at the new commit.
    assert_eq!(q4.downloaded_size, Some(9_000 + 21 + 9));
    assert!(cache
        .has_file(REPO, "onnx/model_q4f16.onnx_data", None)
        .unwrap());
    assert!(!cache.has_file(REPO, "onnx/model_q4f16.onnx", None).unwrap());
}

#[test]
fn offline_scan_serves_the_stored_manifest_and_makes_no_request() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    {
        open(dir.path(), &hub).scan_repo(REPO, None).unwrap();
    }
    hub.settled_requests();
    hub.emu.clear_log();
    let cache = ModelCache::open(dir.path(), offline_options(&hub)).unwrap();
    assert_eq!(cache.scan_repo(REPO, None).unwrap().quants.len(), 3);
    let err = cache.scan_repo("org/never-seen", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Offline);
    assert!(err.message().contains("offline"), "{err}");
    let err = cache.download_quant(REPO, "fp16", None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Offline, "{err}");
    assert!(
        hub.settled_requests().is_empty(),
        "offline mode made requests"
    );
}

#[test]
fn scan_errors_name_the_problem() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    let err = cache.scan_repo("org/missing", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RepoNotFound, "{err}");
    assert!(err.message().contains("org/missing"), "{err}");
    let err = cache.scan_repo(REPO, Some("v9")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionNotFound, "{err}");
    let err = cache.download_quant(REPO, "q9", None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EntryNotFound);
    assert!(err.message().contains("fp16, fp32, q4f16"), "{err}");
    for bad in ["", "../x", "a/b/c", "a b"] {
        assert_eq!(
            cache.scan_repo(bad, None).unwrap_err().kind(),
            ErrorKind::InvalidArgument,
            "{bad:?}"
        );
    }
}

#[test]
fn an_empty_repo_scans_with_no_variants() {
    let hub = hub(|root| {
        write_file(root, "org/empty", "README.md", b"nothing here").unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    let m = cache.scan_repo("org/empty", None).unwrap();
    assert!(m.quants.is_empty());
    assert_eq!(m.task, None);
}

#[test]
fn a_second_handle_on_the_same_cache_opens_and_works_beside_the_first() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), &hub);
    let second = ModelCache::open(dir.path(), options(&hub))
        .unwrap_or_else(|e| panic!("a second open failed: {:?}: {e}", e.kind()));
    // Both read and write, and each sees what the other did: one catalog, not two copies.
    let m = first.scan_repo(REPO, None).unwrap();
    assert_eq!(second.get_manifest(REPO).unwrap().unwrap(), m);
    first
        .download_file(REPO, "config.json", None, None)
        .unwrap();
    assert!(second.has_file(REPO, "config.json", None).unwrap());
    assert_eq!(
        second.get_file(REPO, "config.json", None).unwrap().unwrap(),
        br#"{"model_type":"bert"}"#
    );
    let path = second
        .download_file(REPO, "onnx/model.onnx", None, None)
        .unwrap();
    assert_eq!(
        std::fs::read(path).unwrap(),
        hub_emulator::pseudo_random_bytes(40_000, 1)
    );
    assert!(first.has_file(REPO, "onnx/model.onnx", None).unwrap());
    assert_eq!(
        first.file_path(REPO, "onnx/model.onnx", None).unwrap(),
        second.file_path(REPO, "onnx/model.onnx", None).unwrap()
    );
    // A delete through one is seen by the other.
    second.delete_model(REPO).unwrap();
    assert!(!first.has_file(REPO, "config.json", None).unwrap());
    assert!(first.get_manifest(REPO).unwrap().is_none());
    // Closing one leaves the other working.
    drop(first);
    assert_eq!(second.scan_repo(REPO, None).unwrap().repo_id, REPO);
}
