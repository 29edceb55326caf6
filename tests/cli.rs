//! The `tabcache` binary end to end against the hub emulator: every command in human and
//! `--json` modes, exit codes, Ctrl-C during a download and the resumed run, `verify` finding
//! and repairing a blob damaged on disk, `rm` then `gc`, and `import-hf` of a cache that
//! huggingface_hub itself filled, after which a download transfers nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hub_emulator::{pseudo_random_sha256, write_file, write_pseudo_random_file, Fault, Listener};
use serde_json::Value;

const REPO: &str = "org/tiny-gguf";
const Q4: &str = "tiny-Q4_K_M.gguf";
const Q8: &str = "tiny-Q8_0.gguf";
const Q2: &str = "tiny-Q2_K.gguf";
const CONFIG: &[u8] = br#"{"model_type":"llama"}"#;

fn fill(root: &Path) {
    write_pseudo_random_file(root, REPO, Q4, 300_000, 1).unwrap();
    write_pseudo_random_file(root, REPO, Q8, 500_000, 2).unwrap();
    write_pseudo_random_file(root, REPO, Q2, 200_000, 3).unwrap();
    write_file(root, REPO, "config.json", CONFIG).unwrap();
    write_file(root, REPO, "README.md", b"# tiny gguf").unwrap();
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert success and parse stdout as JSON.
fn ok_json(out: &Output) -> Value {
    assert_eq!(
        code(out),
        0,
        "stderr: {}\nstdout: {}",
        stderr(out),
        stdout(out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

fn ok_text(out: &Output) -> String {
    assert_eq!(
        code(out),
        0,
        "stderr: {}\nstdout: {}",
        stderr(out),
        stdout(out)
    );
    stdout(out)
}

/// Assert exit `expected` with exactly one error line on stderr that contains `needle`.
fn fails(out: &Output, expected: i32, needle: &str) {
    assert_eq!(
        code(out),
        expected,
        "stderr: {}\nstdout: {}",
        stderr(out),
        stdout(out)
    );
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "want one error line: {err}");
    assert!(lines[0].contains(needle), "{needle:?} not in {err}");
}

#[test]
fn scan_in_both_modes() {
    let hub = hub(fill);
    let cache = tempfile::tempdir().unwrap();
    let text = ok_text(&tabcache(&hub, cache.path(), &["scan", REPO]));
    assert!(text.contains("KEY") && text.contains("STATUS"), "{text}");
    for key in ["Q2_K", "Q4_K_M", "Q8_0"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in {text}"));
        assert!(row.contains("available"), "{row}");
    }
    let m = ok_json(&tabcache(&hub, cache.path(), &["--json", "scan", REPO]));
    assert_eq!(m["repo_id"], REPO);
    assert_eq!(m["commit"].as_str(), hub.emu.commit_of(REPO).as_deref());
    assert_eq!(
        m["quants"]["Q4_K_M"]["files"],
        serde_json::json!([Q4, "config.json"])
    );
    assert_eq!(
        m["quants"]["Q4_K_M"]["total_size"],
        300_000 + CONFIG.len() as u64
    );

    let out = tabcache(&hub, cache.path(), &["--json", "scan", "org/missing"]);
    fails(&out, 3, "org/missing");
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["kind"], "repo_not_found");
    assert_eq!(err["error"]["exit_code"], 3);
}

#[test]
fn download_ls_path_cat_stats_in_both_modes() {
    let hub = hub(fill);
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();

    // No QUANT on a GGUF repo: Q4_K_M, and it says so.
    let out = tabcache(&hub, c, &["download", REPO]);
    let text = ok_text(&out);
    assert!(
        stderr(&out).contains("no QUANT given: downloading Q4_K_M"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("fetched {Q4}")),
        "plain lines when not a terminal: {}",
        stderr(&out)
    );
    assert!(text.contains("Q4_K_M: 2 file(s)"), "{text}");
    assert_eq!(
        hub.cdn_bytes(),
        300_000,
        "only the Q4_K_M weights came from the CDN"
    );

    let d = ok_json(&tabcache(
        &hub,
        c,
        &["--json", "download", REPO, "Q8_0", "--file", "README.md"],
    ));
    assert_eq!(d["quant"], "Q8_0");
    assert_eq!(d["quant_defaulted"], false);
    let paths: Vec<&str> = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [Q8, "config.json", "README.md"]);
    assert_eq!(d["total_bytes"], 500_000 + CONFIG.len() as u64 + 11);
    assert_eq!(hub.cdn_bytes(), 800_000, "config.json was held already");
    let local = PathBuf::from(d["files"][0]["local_path"].as_str().unwrap());
    assert_eq!(
        hub_emulator::sha256_file(&local).unwrap(),
        pseudo_random_sha256(500_000, 2)
    );

    // ls: repos, then one repo's files, by size.
    let text = ok_text(&tabcache(&hub, c, &["ls"]));
    let row = text.lines().find(|l| l.starts_with(REPO)).unwrap();
    assert!(
        row.contains("Q4_K_M (downloaded)") && row.contains("Q2_K (available)"),
        "{row}"
    );
    let repos = ok_json(&tabcache(&hub, c, &["--json", "ls"]));
    assert_eq!(repos[0]["repo_id"], REPO);
    assert_eq!(repos[0]["files"], 4);
    assert_eq!(repos[0]["size"], 800_000 + CONFIG.len() as u64 + 11);
    let text = ok_text(&tabcache(&hub, c, &["ls", REPO, "--sort", "size"]));
    let order: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(order, [Q8, Q4, "config.json", "README.md"]);
    let files = ok_json(&tabcache(&hub, c, &["--json", "ls", REPO]));
    let config = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "config.json")
        .unwrap();
    assert_eq!(
        config["variants"],
        serde_json::json!(["Q2_K", "Q4_K_M", "Q8_0"])
    );
    fails(
        &tabcache(&hub, c, &["ls", "org/unknown"]),
        3,
        "not in the cache",
    );

    // path and cat.
    let p = ok_text(&tabcache(&hub, c, &["path", REPO, "config.json"]));
    assert_eq!(std::fs::read(p.trim_end()).unwrap(), CONFIG);
    let p = ok_json(&tabcache(&hub, c, &["--json", "path", REPO, Q4]));
    assert!(p["path"].as_str().unwrap().ends_with(Q4), "{p}");
    let out = tabcache(&hub, c, &["cat", REPO, Q4]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        common::sha256_hex(&out.stdout),
        pseudo_random_sha256(300_000, 1)
    );
    let cfg = ok_json(&tabcache(&hub, c, &["--json", "cat", REPO, "config.json"]));
    assert_eq!(
        cfg["model_type"], "llama",
        "cat writes the raw bytes, also with --json"
    );
    fails(
        &tabcache(&hub, c, &["path", REPO, Q2]),
        3,
        "tabcache download",
    );
    fails(&tabcache(&hub, c, &["cat", REPO, Q2]), 3, "is not cached");

    // stats.
    let text = ok_text(&tabcache(&hub, c, &["stats"]));
    assert!(text.contains("files        4"), "{text}");
    let s = ok_json(&tabcache(&hub, c, &["--json", "stats"]));
    assert_eq!(s["total_repos"], 1);
    assert_eq!(s["total_files"], 4);
    assert_eq!(s["disk_bytes"], s["total_size"]);
}

#[test]
fn default_quant_prefers_q4_k_m_then_q8_0_then_the_first() {
    let hub = hub(|root| {
        write_pseudo_random_file(root, "org/q8", "m-Q8_0.gguf", 1000, 1).unwrap();
        write_pseudo_random_file(root, "org/q8", "m-Q2_K.gguf", 1000, 2).unwrap();
        write_pseudo_random_file(root, "org/other", "m-Q5_K_S.gguf", 1000, 3).unwrap();
        write_pseudo_random_file(root, "org/other", "m-Q3_K_L.gguf", 1000, 4).unwrap();
        write_pseudo_random_file(root, "org/onnx", "onnx/model.onnx", 1000, 5).unwrap();
        write_pseudo_random_file(root, "org/onnx", "onnx/model_fp16.onnx", 1000, 6).unwrap();
    });
    let cache = tempfile::tempdir().unwrap();
    let d = ok_json(&tabcache(
        &hub,
        cache.path(),
        &["--json", "-q", "download", "org/q8"],
    ));
    assert_eq!(
        (d["quant"].as_str(), d["quant_defaulted"].as_bool()),
        (Some("Q8_0"), Some(true))
    );
    let d = ok_json(&tabcache(
        &hub,
        cache.path(),
        &["--json", "-q", "download", "org/other"],
    ));
    assert_eq!(d["quant"], "Q3_K_L");
    // Not GGUF and several variants: the user must choose.
    fails(
        &tabcache(&hub, cache.path(), &["download", "org/onnx"]),
        2,
        "fp16, fp32",
    );
    fails(
        &tabcache(&hub, cache.path(), &["download", "org/onnx", "int4"]),
        3,
        "fp16, fp32",
    );
}

#[test]
fn usage_and_exit_codes() {
    let hub = hub(fill);
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    let help = ok_text(&tabcache(&hub, c, &["--help"]));
    for line in [
        "Exit codes:",
        "130",
        "share one cache",
        "offline",
        "integrity",
    ] {
        assert!(help.contains(line), "{line} not in --help");
    }
    fails(&tabcache(&hub, c, &["download"]), 2, "<REPO>");
    fails(&tabcache(&hub, c, &["frobnicate"]), 2, "frobnicate");
    fails(
        &tabcache(&hub, c, &["scan", "../etc"]),
        2,
        "invalid repo id",
    );
    let out = tabcache(&hub, c, &["--json", "--offline", "download", REPO]);
    fails(&out, 7, "offline");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["error"]["kind"],
        "offline"
    );

    let id = hub
        .emu
        .add_fault(Fault::status(403).on(Listener::Api).path("/api/models/"));
    fails(&tabcache(&hub, c, &["scan", REPO]), 4, "token");
    hub.emu.remove_fault(id);

    // The cache is shared: commands run while a library handle has it open, and each side
    // sees what the other cached.
    let held = tabcache::ModelCache::open(c, options(&hub)).unwrap();
    ok_text(&tabcache(&hub, c, &["stats"]));
    ok_json(&tabcache(
        &hub,
        c,
        &["--json", "-q", "download", REPO, "Q4_K_M"],
    ));
    assert!(held.has_file(REPO, Q4, None).unwrap());
    held.download_file(REPO, Q8, None, None).unwrap();
    let listed = ok_text(&tabcache(&hub, c, &["ls", REPO]));
    assert!(listed.contains(Q8), "{listed}");
    drop(held);
    ok_text(&tabcache(&hub, c, &["stats"]));
}

#[test]
fn ctrl_c_stops_a_download_cleanly_and_the_next_run_resumes() {
    const BIG: &str = "big-Q4_K_M.gguf";
    const SIZE: u64 = 40 << 20;
    let hub = hub(|root| {
        write_pseudo_random_file(root, "org/big", BIG, SIZE, 9).unwrap();
        write_file(root, "org/big", "config.json", CONFIG).unwrap();
    });
    let cache = tempfile::tempdir().unwrap();
    // Two connections over 16 MiB ranges (16 + 16 + 8 MiB), each paced at 8 MiB/s: the first two
    // ranges are durable after ~2 s, the last one is in flight when Ctrl-C comes.
    hub.slow_cdn(8 << 20);
    let args = ["download", "org/big", "Q4_K_M", "--connections", "2"];
    let mut child = tabcache_command(&hub, cache.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // A connection asks for the third range only once it has received its first one whole.
    let range_requests = || {
        hub.cdn_requests()
            .iter()
            .filter(|r| r.method == "GET" && r.target.contains(BIG))
            .count()
    };
    while range_requests() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "download did not progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "download ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Time to sync and record the finished ranges; the last range needs ~1 s more.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let out = child.wait_with_output().unwrap();
    fails(&out, 130, "run the same command again to resume");
    // The emulator logs a response's planned length and corrects it once the cut is noticed.
    let start = Instant::now();
    while hub.emu.bytes_sent_for(BIG) >= SIZE && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = hub.emu.bytes_sent_for(BIG);
    assert!(
        first < SIZE,
        "the transfer finished before Ctrl-C ({first} bytes)"
    );

    hub.emu.clear_faults();
    hub.settled_requests();
    hub.emu.clear_log();
    let out = tabcache(
        &hub,
        cache.path(),
        &[
            "--json",
            "download",
            "org/big",
            "Q4_K_M",
            "--connections",
            "2",
        ],
    );
    let d = ok_json(&out);
    let second: u64 = hub.cdn_requests().iter().map(|r| r.body_bytes).sum();
    assert!(
        second <= SIZE - (16 << 20),
        "the resumed run fetched {second} bytes: nothing was kept"
    );
    let local = PathBuf::from(d["files"][0]["local_path"].as_str().unwrap());
    assert_eq!(
        hub_emulator::sha256_file(&local).unwrap(),
        pseudo_random_sha256(SIZE, 9)
    );
}

/// The blob file of `path` in `cache`, made writable so a test can damage it.
fn writable_blob(hub: &Hub, cache: &Path, path: &str) -> PathBuf {
    let files = ok_json(&tabcache(hub, cache, &["--json", "ls", REPO]));
    let sha = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = cache.join("blobs").join(&sha);
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).unwrap();
    blob
}

#[test]
fn verify_finds_a_damaged_blob_and_repair_fetches_it_again() {
    let hub = hub(fill);
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    ok_json(&tabcache(
        &hub,
        c,
        &["--json", "-q", "download", REPO, "Q4_K_M"],
    ));
    let text = ok_text(&tabcache(&hub, c, &["verify"]));
    assert!(
        text.contains("checked 2 blob(s)") && text.contains("0 damaged"),
        "{text}"
    );

    let blob = writable_blob(&hub, c, Q4);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1234] ^= 0x40;
    std::fs::write(&blob, &bytes).unwrap();

    let out = tabcache(&hub, c, &["verify"]);
    fails(&out, 5, "tabcache verify --repair");
    assert!(
        stdout(&out).contains(&format!("{REPO}@")) && stdout(&out).contains(Q4),
        "{}",
        stdout(&out)
    );
    let out = tabcache(&hub, c, &["--json", "verify", REPO]);
    assert_eq!(code(&out), 5);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["damaged"].as_array().unwrap().len(), 1);
    assert_eq!(
        report["damaged"][0]["sha256"],
        pseudo_random_sha256(300_000, 1)
    );
    assert_eq!(report["damaged"][0]["files"][0]["path"], Q4);

    hub.settled_requests();
    hub.emu.clear_log();
    let report = ok_json(&tabcache(&hub, c, &["--json", "verify", "--repair"]));
    assert_eq!(report["ok"], true);
    assert_eq!(report["repaired"][0]["path"], Q4);
    assert_eq!(
        hub.cdn_bytes(),
        300_000,
        "exactly the damaged file was fetched again"
    );
    let report = ok_json(&tabcache(&hub, c, &["--json", "verify"]));
    assert_eq!(
        (report["ok"].as_bool(), report["blobs_checked"].as_u64()),
        (Some(true), Some(2))
    );
    let out = tabcache(&hub, c, &["cat", REPO, Q4]);
    assert_eq!(
        common::sha256_hex(&out.stdout),
        pseudo_random_sha256(300_000, 1)
    );
}

#[test]
fn rm_removes_a_variant_or_a_repo_and_gc_cleans_what_is_left() {
    let hub = hub(|root| {
        fill(root);
        write_pseudo_random_file(root, "org/big", "big-Q8_0.gguf", 6 << 20, 4).unwrap();
    });
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    // An interrupted download leaves a partial file with its resume record.
    {
        let lib = tabcache::ModelCache::open(c, options(&hub)).unwrap();
        hub.slow_cdn(2 << 20);
        // 1 MiB ranges over 4 connections: past 4.5 MiB, at least four ranges are whole.
        let mut cancel_after_a_few = |loaded: u64, _total: u64| loaded < (9 << 19);
        let err = lib
            .download_quant("org/big", "Q8_0", None, Some(&mut cancel_after_a_few))
            .unwrap_err();
        assert_eq!(err.kind(), tabcache::ErrorKind::Cancelled);
        hub.emu.clear_faults();
        assert!(
            lib.wait_idle(Duration::from_secs(10)),
            "the cancelled transfer did not stop"
        );
    }
    tabcache::ModelCache::open(c, options(&hub)).unwrap();
    let partials: Vec<String> = tmp_files(c)
        .into_iter()
        .filter(|f| f.ends_with(".part"))
        .collect();
    assert_eq!(partials.len(), 1, "one partial download kept: {partials:?}");

    for quant in ["Q4_K_M", "Q8_0"] {
        ok_json(&tabcache(
            &hub,
            c,
            &["--json", "-q", "download", REPO, quant],
        ));
    }
    let blobs_before = blob_files(c).len();
    let r = ok_json(&tabcache(
        &hub,
        c,
        &["--json", "rm", REPO, "--quant", "Q8_0"],
    ));
    assert_eq!(
        r["files_removed"],
        serde_json::json!([Q8]),
        "config.json is shared with Q4_K_M"
    );
    assert_eq!(r["bytes_freed"], 500_000);
    assert_eq!(blob_files(c).len(), blobs_before - 1);
    ok_text(&tabcache(&hub, c, &["path", REPO, "config.json"]));
    fails(
        &tabcache(&hub, c, &["rm", REPO, "--quant", "Q9"]),
        3,
        "Q2_K, Q4_K_M, Q8_0",
    );

    // The interrupted download is fresh: gc keeps it to be resumed...
    let g = ok_json(&tabcache(&hub, c, &["--json", "gc"]));
    assert_eq!(g["partials_removed"], 0, "{g}");
    assert_eq!(g["partials_kept"], 1, "{g}");
    assert!(g["partial_bytes_kept"].as_u64().unwrap() > 0, "{g}");
    assert_eq!(tmp_files(c).len(), 1);
    let out = tabcache(&hub, c, &["gc"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("--stale-days 0"), "{}", stderr(&out));
    fails(
        &tabcache(&hub, c, &["gc", "--stale-days", "-1"]),
        2,
        "--stale-days",
    );
    // ...until nothing has written to it for longer than the limit (a week by default).
    let partial = c.join("tmp").join(&tmp_files(c)[0]);
    let eight_days_ago = std::time::SystemTime::now() - Duration::from_secs(8 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&partial)
        .unwrap()
        .set_modified(eight_days_ago)
        .unwrap();
    let g = ok_json(&tabcache(&hub, c, &["--json", "gc"]));
    assert_eq!(g["partials_removed"], 1, "{g}");
    assert!(g["partial_bytes_freed"].as_u64().unwrap() > 0, "{g}");
    assert_eq!(g["partials_kept"], 0, "{g}");
    assert_eq!(g["blobs_removed"], 0);
    assert!(tmp_files(c).is_empty());

    let text = ok_text(&tabcache(&hub, c, &["rm", REPO]));
    assert!(
        text.contains(&format!("removed {REPO}: 2 file(s), freed")),
        "{text}"
    );
    assert!(blob_files(c).is_empty(), "{:?}", blob_files(c));
    let text = ok_text(&tabcache(&hub, c, &["gc"]));
    assert!(
        text.contains("removed 0 unreferenced blob(s) and 0 stale partial download(s); freed 0 B"),
        "{text}"
    );
    fails(&tabcache(&hub, c, &["rm", REPO]), 3, "not in the cache");
}

/// Every entry under `dir`: links with their targets, files with their content hash and
/// read-only flag, for "unchanged" checks.
fn tree_digest(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                out.push((
                    name,
                    std::fs::read_link(&path)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                ));
            } else {
                let sha = hub_emulator::sha256_file(&path).unwrap();
                out.push((
                    name,
                    format!("{sha} read-only={}", meta.permissions().readonly()),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn import_hf_adopts_a_cache_huggingface_hub_filled_and_the_download_transfers_nothing() {
    let hub = hub(fill);
    let hf = tempfile::tempdir().unwrap();
    let script = format!(
        "from huggingface_hub import hf_hub_download, snapshot_download\n\
         snapshot_download({REPO:?}, allow_patterns=[{Q4:?}, 'config.json'])\n\
         hf_hub_download({REPO:?}, 'README.md')\n"
    );
    let out = huggingface_hub(&hub.emu.url(), hf.path(), &script, &[])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "huggingface_hub failed: {}",
        stderr(&out)
    );
    assert_eq!(
        hub.cdn_bytes(),
        300_000,
        "huggingface_hub fetched the Q4_K_M weights"
    );
    let hf_before = tree_digest(hf.path());

    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    let r = ok_json(&tabcache(
        &hub,
        c,
        &["--json", "import-hf", hf.path().to_str().unwrap()],
    ));
    assert_eq!(r["repos"], serde_json::json!([REPO]));
    assert_eq!(r["files_imported"], 3, "{r}");
    assert_eq!(r["bytes_imported"], 300_000 + CONFIG.len() as u64 + 11);
    assert_eq!(
        r["blobs_linked"].as_u64().unwrap() + r["blobs_copied"].as_u64().unwrap(),
        3
    );
    assert_eq!(r["skipped"], serde_json::json!([]));
    assert!(r["refs_imported"].as_u64().unwrap() >= 1, "refs/main: {r}");
    assert_eq!(
        tree_digest(hf.path()),
        hf_before,
        "the huggingface_hub cache was modified"
    );

    // The same files again: nothing crosses the network but metadata.
    hub.settled_requests();
    hub.emu.clear_log();
    ok_json(&tabcache(
        &hub,
        c,
        &["--json", "-q", "download", REPO, "Q4_K_M"],
    ));
    ok_json(&tabcache(
        &hub,
        c,
        &["--json", "-q", "download", REPO, "--file", "README.md"],
    ));
    let requests = hub.settled_requests();
    assert_eq!(
        hub.cdn_bytes(),
        0,
        "the download transferred file bytes from the CDN"
    );
    let fetched: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/resolve/"))
        .map(|r| r.target.as_str())
        .collect();
    assert!(fetched.is_empty(), "files fetched again: {fetched:?}");
    let out = tabcache(&hub, c, &["cat", REPO, Q4]);
    assert_eq!(
        common::sha256_hex(&out.stdout),
        pseudo_random_sha256(300_000, 1)
    );
    ok_json(&tabcache(&hub, c, &["--json", "verify"]));

    // Human mode, a second time: everything is already cached.
    let text = ok_text(&tabcache(
        &hub,
        c,
        &["import-hf", hf.path().to_str().unwrap()],
    ));
    assert!(
        text.contains("imported 0 file(s)") && text.contains("3 already cached"),
        "{text}"
    );
    fails(
        &tabcache(&hub, c, &["import-hf", "/nonexistent/hf"]),
        3,
        "no huggingface_hub cache",
    );
    assert_eq!(tree_digest(hf.path()), hf_before);
}

#[test]
fn a_failed_download_marks_its_variant_failed_until_a_download_succeeds() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    let status = |c: &Path| {
        let m = ok_json(&tabcache(&hub, c, &["--json", "--offline", "scan", REPO]));
        m["quants"]["Q8_0"]["status"].as_str().unwrap().to_string()
    };
    let gone = hub
        .emu
        .add_fault(Fault::status(404).on(Listener::Cdn).path(Q8).times(1000));
    fails(&tabcache(&hub, c, &["download", REPO, "Q8_0"]), 3, Q8);
    assert_eq!(status(c), "failed");
    hub.emu.remove_fault(gone);
    ok_json(&tabcache(
        &hub,
        c,
        &["--json", "-q", "download", REPO, "Q8_0"],
    ));
    assert_eq!(status(c), "downloaded");
}

/// The binary with no token option at all, isolated from the developer's HF environment
/// (HF_HOME points at an empty folder, so no huggingface_hub token file is found either).
fn bare_command(hub: &Hub, cache: &Path, hf_home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tabcache"));
    cmd.arg("--cache")
        .arg(cache)
        .args(["--endpoint", &hub.emu.url()])
        .args(args)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("TABCACHE_HOME")
        .env("HF_HOME", hf_home)
        .stdin(Stdio::null());
    cmd
}

const PRIVATE: &str = "org/private";
const SECRET: &str = "hf_cli_secret_token";

fn fill_private(root: &Path) {
    fill(root);
    write_file(root, PRIVATE, "config.json", b"{}").unwrap();
    hub_emulator::write_repo_config(
        root,
        PRIVATE,
        &hub_emulator::RepoConfig {
            private: true,
            tokens: vec![SECRET.into()],
            ..Default::default()
        },
    )
    .unwrap();
}

fn bearers(hub: &Hub) -> Vec<Option<String>> {
    hub.settled_requests()
        .into_iter()
        .map(|r| r.authorization)
        .collect()
}

#[test]
fn token_on_the_command_line_is_warned_about_and_a_token_file_is_not() {
    let hub = hub(fill_private);
    let cache = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (c, h) = (cache.path(), home.path());

    // Without a token the private repo is not there for us.
    let out = bare_command(&hub, c, h, &["scan", PRIVATE])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    // --token works, and says who else can see it.
    hub.emu.clear_log();
    let out = bare_command(&hub, c, h, &["-q", "--token", SECRET, "scan", PRIVATE])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(
        warning.contains("warning: --token puts the token in the process list")
            && warning.contains("--token-file")
            && warning.contains("HF_TOKEN"),
        "{warning}"
    );
    assert!(
        !warning.contains(SECRET),
        "the warning shows the token: {warning}"
    );
    assert!(bearers(&hub).contains(&Some(format!("Bearer {SECRET}"))));

    // --token-file: the same access, no warning (the file is private to us), the trailing
    // newline an editor leaves is not part of the token.
    let token_file = home.path().join("token");
    std::fs::write(&token_file, format!("{SECRET}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    hub.emu.clear_log();
    let file_arg = token_file.to_str().unwrap();
    let out = bare_command(&hub, c, h, &["--token-file", file_arg, "scan", PRIVATE])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let sent = bearers(&hub);
    assert!(
        !sent.is_empty()
            && sent
                .iter()
                .all(|b| b.as_deref() == Some(&format!("Bearer {SECRET}"))),
        "{sent:?}"
    );

    // Standard input works the same ("-").
    let mut child = bare_command(&hub, c, h, &["--token-file", "-", "scan", PRIVATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), SECRET.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A token file others can read is said to be one.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = bare_command(&hub, c, h, &["--token-file", file_arg, "scan", PRIVATE])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("can be read by other users")
                && stderr(&out).contains("chmod 600"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_bad_token_file_is_a_clear_usage_error() {
    let hub = hub(fill_private);
    let cache = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (c, h) = (cache.path(), home.path());
    let run = |args: &[&str]| bare_command(&hub, c, h, args).output().unwrap();

    let missing = home.path().join("no-such-token");
    let out = run(&["--token-file", missing.to_str().unwrap(), "scan", PRIVATE]);
    fails(&out, 2, "could not read the token file");
    assert!(stderr(&out).contains("no-such-token"), "{}", stderr(&out));

    let empty = home.path().join("empty");
    std::fs::write(&empty, "\n  \n").unwrap();
    fails(
        &run(&["--token-file", empty.to_str().unwrap(), "scan", PRIVATE]),
        2,
        "is empty",
    );

    let two = home.path().join("two");
    std::fs::write(&two, format!("{SECRET}\nhf_other\n")).unwrap();
    let out = run(&["--token-file", two.to_str().unwrap(), "scan", PRIVATE]);
    fails(&out, 2, "more than one token");
    assert!(!stderr(&out).contains(SECRET), "{}", stderr(&out));

    let out = run(&[
        "--token",
        SECRET,
        "--token-file",
        empty.to_str().unwrap(),
        "scan",
        PRIVATE,
    ]);
    fails(&out, 2, "--token-file");
    assert!(
        hub.settled_requests().is_empty(),
        "a bad token option reached the network"
    );
}
