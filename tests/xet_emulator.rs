//! The hub emulator's Xet storage against the official client: huggingface_hub with hf_xet
//! (PyPI, in the test venv) downloads Xet-backed files from the emulator through the CAS
//! listener, byte-exact, and hf_xet's own hash of each file is the `xetHash` the emulator
//! lists. If the emulator drifts from what the real client expects, tabcache's Xet client
//! could pass against it and still fail on the Hub: this test is what keeps them honest.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::*;
use hub_emulator::{
    pseudo_random_bytes, write_file, write_repo_config, Emulator, Listener, RepoConfig,
};

const REPO: &str = "org/xet-model";
const COPY_REPO: &str = "org/xet-copy";

/// Repo files: (repo, path, bytes). Small xorbs make the random file span several of them.
fn files() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let random = pseudo_random_bytes(6 << 20, 11);
    let mut zero_runs = vec![0u8; 3 << 20];
    for (i, island) in zero_runs.chunks_mut(700_000).enumerate() {
        island[..5_000].copy_from_slice(&pseudo_random_bytes(5_000, 20 + i as u64));
    }
    // A smooth f32 tensor: byte grouping puts the similar exponent bytes together.
    let floats: Vec<u8> = (0..(1 << 18))
        .flat_map(|i| ((i as f32) * 0.001).sin().to_le_bytes())
        .collect();
    vec![
        (
            REPO,
            "tiny.bin",
            b"a Xet-backed file of one small chunk\n".to_vec(),
        ),
        (REPO, "one-chunk.bin", pseudo_random_bytes(5_000, 12)),
        (REPO, "random.bin", random.clone()),
        (REPO, "zero-runs.bin", zero_runs),
        (REPO, "floats.safetensors", floats),
        (COPY_REPO, "same-as-random.bin", random),
    ]
}

fn lay_out(root: &Path) {
    for (repo, path, bytes) in files() {
        write_file(root, repo, path, &bytes).unwrap();
    }
    write_file(root, REPO, "config.json", b"{\"model_type\": \"test\"}").unwrap();
    for repo in [REPO, COPY_REPO] {
        let config = RepoConfig {
            xet: true,
            ..RepoConfig::default()
        };
        write_repo_config(root, repo, &config).unwrap();
    }
}

/// The `xetHash` the emulator lists for each (repo, path).
fn listed_hashes(emu: &Emulator, repo: &str) -> Vec<(String, String)> {
    hub_emulator::client::tree(&emu.url(), repo)
        .iter()
        .filter_map(|entry| {
            Some((
                entry["path"].as_str()?.to_owned(),
                entry.get("xetHash")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Downloads `(repo, path)` pairs with huggingface_hub; prints each local path.
const DOWNLOAD: &str = "import sys\nfrom huggingface_hub import hf_hub_download\nargs = sys.argv[1:]\nfor repo, name in zip(args[::2], args[1::2]):\n    print(hf_hub_download(repo, name))\n";

fn download(emu: &Emulator, dir: &Path, pairs: &[(&str, &str)], force_v1: bool) -> Vec<String> {
    let args: Vec<&str> = pairs.iter().flat_map(|(r, p)| [*r, *p]).collect();
    let mut python = huggingface_hub(&emu.url(), &dir.join("hub"), DOWNLOAD, &args);
    // hf_xet keeps a chunk cache of its own: a fresh one per run, so every byte comes from
    // the emulator; and nothing from the developer's environment turns Xet off.
    python
        .env("HF_XET_CACHE", dir.join("xet"))
        .env_remove("HF_HUB_DISABLE_XET")
        .env_remove("HF_XET_CLIENT_RECONSTRUCTION_API_VERSION");
    if force_v1 {
        python.env("HF_XET_CLIENT_RECONSTRUCTION_API_VERSION", "1");
    }
    python_stdout(&mut python)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn huggingface_hub_downloads_xet_files_from_the_emulator_cas() {
    let repos = tempfile::tempdir().unwrap();
    lay_out(repos.path());
    let emu = Emulator::builder(repos.path())
        .xorb_max_bytes(1 << 20)
        .start()
        .unwrap();
    let files = files();

    // (a) hf_xet's hash of each file is the listed xetHash.
    let mut listed = listed_hashes(&emu, REPO);
    listed.extend(listed_hashes(&emu, COPY_REPO));
    let paths: Vec<_> = files
        .iter()
        .map(|(repo, path, _)| path_of(repos.path(), repo, path))
        .collect();
    let script =
        "import hf_xet, sys\nfor info in hf_xet.hash_files(sys.argv[1:]):\n    print(info.hash)\n";
    let theirs = python_stdout(
        std::process::Command::new(test_python())
            .arg("-c")
            .arg(script)
            .args(&paths),
    );
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(theirs.len(), files.len());
    for ((_, path, _), hash) in files.iter().zip(&theirs) {
        let ours = listed
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("{path} has no xetHash in the listing"));
        assert_eq!(&ours.1, hash, "{path}: listed, then hf_xet's");
    }
    assert!(
        !listed.iter().any(|(p, _)| p == "config.json"),
        "plain files are not Xet-backed"
    );
    let stored = emu.xet_stats();
    assert!(
        stored.xorbs >= 6,
        "6 MiB of random data in 1 MiB xorbs: {stored:?}"
    );
    // Compressible files take less room than they hold; the copy took none.
    let total: usize = files.iter().take(5).map(|(_, _, b)| b.len()).sum();
    assert!(stored.stored_bytes < total as u64, "{stored:?}");
    assert_eq!(stored.files, 5, "the copy is the same file: {stored:?}");

    // (b) every file downloads byte-exact through the CAS, none through the CDN bridge.
    emu.clear_log();
    let work = tempfile::tempdir().unwrap();
    let mut pairs: Vec<(&str, &str)> = files.iter().map(|(r, p, _)| (*r, *p)).collect();
    pairs.push((REPO, "config.json"));
    let local = download(&emu, work.path(), &pairs, false);
    assert_eq!(local.len(), pairs.len());
    for ((_, path, bytes), local) in files.iter().zip(&local) {
        assert!(
            std::fs::read(local).unwrap() == *bytes,
            "{path} downloaded differs"
        );
    }
    assert_eq!(
        std::fs::read(local.last().unwrap()).unwrap(),
        b"{\"model_type\": \"test\"}"
    );
    let log = emu.requests();
    assert!(
        log.iter().all(|r| r.listener != Listener::Cdn),
        "the CDN bridge was used: {log:#?}"
    );
    let cas: Vec<_> = log.iter().filter(|r| r.listener == Listener::Cas).collect();
    for (path, hash) in &listed {
        assert!(
            cas.iter()
                .any(|r| r.target.contains("/reconstructions/") && r.target.contains(hash)),
            "no reconstruction of {path}: {cas:#?}"
        );
    }
    let xorbs: HashSet<&str> = cas
        .iter()
        .filter(|r| r.target.starts_with("/xorb/"))
        .inspect(|r| assert_eq!(r.status, 206, "{r:?}"))
        .map(|r| r.target.split(['/', '?']).nth(3).unwrap())
        .collect();
    assert!(xorbs.len() >= stored.xorbs, "every xorb fetched: {cas:#?}");
    assert!(cas.iter().all(|r| r.status < 300), "{cas:#?}");
    assert!(cas
        .iter()
        .filter(|r| r.target.contains("/reconstructions/"))
        .all(|r| r
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer xet_"))));
    assert!(emu.cas_bytes_sent() > 0);

    // The v1 reconstruction API too (hf_xet asks v2 first and falls back on 404).
    emu.clear_log();
    let v1 = tempfile::tempdir().unwrap();
    let local = download(&emu, v1.path(), &[(REPO, "random.bin")], true);
    assert!(std::fs::read(&local[0]).unwrap() == files[2].2);
    let log = emu.requests();
    assert!(log
        .iter()
        .any(|r| r.listener == Listener::Cas && r.target.starts_with("/v1/reconstructions/")));
    assert!(log.iter().all(|r| !r.target.starts_with("/v2/")));
}
