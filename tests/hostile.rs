//! Hostile input through ModelCache: hundreds of malformed repo ids, file paths and revisions
//! (each must be refused as an invalid argument before any request is made), hostile server
//! listings (each must be refused naming the server), and hostile resolves and file responses:
//! absurd sizes, sizes disagreeing with the listing or larger than the disk, encoded bodies,
//! files with neither size nor hash. Those are downloaded in a child process whose peak memory
//! is checked, and each must end in a clear error naming the server with nothing committed.
//! Afterwards nothing exists outside the cache directory that was not there before. Prints a
//! tally.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use hub_emulator::{write_file, write_pseudo_random_file, Fault, FaultKind, Listener};
use serde_json::{json, Value};
use tabcache::{ErrorKind, ModelCache};

const REPO: &str = "org/fine";

fn fill(root: &Path) {
    write_file(root, REPO, "config.json", b"{}").unwrap();
    write_file(root, REPO, "onnx/model.onnx", b"onnx").unwrap();
}

/// A unique absolute place a path-traversal bug would write to.
fn escape_target() -> PathBuf {
    std::env::temp_dir().join(format!("tabcache-hostile-escape-{}", std::process::id()))
}

fn bad_repo_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "",
        " ",
        "/",
        "//",
        "a/",
        "/a",
        "a//b",
        "a/b/c",
        "a/b/c/d",
        "..",
        "../x",
        "x/..",
        "a/../b",
        "./a",
        "a/.",
        ".a/b",
        "a/.b",
        "-a/b",
        "a/-b",
        "a./b",
        "a/b.",
        "a--b/c",
        "a/b--c",
        "a..b/c",
        "a b/c",
        "a/b c",
        "a\tb/c",
        "a\nb/c",
        "a\0b/c",
        "a\\b",
        "a/b\\c",
        "C:/x",
        "c:\\x",
        "a:b/c",
        "a/b:c",
        "a?b/c",
        "a/b#c",
        "a/b%2e",
        "%2e%2e/x",
        "a/b*",
        "a/b'",
        "a/\"b\"",
        "a/<b>",
        "a/b|c",
        "ä/b",
        "a/ß",
        "a/b\u{202e}",
        "a/b\u{0}",
        "\u{feff}a/b",
        "a/b\r",
        "\u{7f}a/b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ids.push("x".repeat(97));
    ids.push(format!("{}/{}", "o".repeat(50), "n".repeat(50)));
    ids.push(format!("a/{}", escape_target().display()));
    ids
}

fn bad_paths() -> Vec<String> {
    let target = escape_target();
    let mut paths: Vec<String> = [
        "",
        "/",
        ".",
        "..",
        "../x",
        "../../x",
        "../../../../../../etc/passwd",
        "a/../../x",
        "a/./b",
        "./a",
        "a/.",
        "a/..",
        "a//b",
        "a/",
        "/a",
        "/etc/passwd",
        "//server/share/x",
        "\\\\server\\share\\x",
        "a\\b",
        "..\\..\\x",
        "C:/x",
        "C:\\x",
        "c:x",
        "Z:",
        "a/C:/b",
        "a/b:c",
        "a\0b",
        "\0",
        "a\nb",
        "a\rb",
        "a\tb",
        "\u{7}",
        "\u{1b}[31m",
        "a/\u{7f}",
        "\u{85}x",
        "a/.../b/../../..",
        "....//x",
        "a/b\u{0}.onnx",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.push(target.join("x").display().to_string());
    paths.push(format!("../{}", target.display()));
    paths.push("a/".repeat(3000));
    paths.push("x".repeat(5000));
    paths.push(format!("{}../x", "a/".repeat(100)));
    for depth in 1..=10 {
        paths.push(format!("{}x", "../".repeat(depth)));
        paths.push(format!("{}x", "..\\".repeat(depth)));
    }
    paths
}

fn bad_revisions() -> Vec<String> {
    let mut revs: Vec<String> = [
        "",
        " ",
        "..",
        "../main",
        "main/..",
        "a/../b",
        "/main",
        "main/",
        "a\\b",
        "ma in",
        "main\n",
        "main\0",
        "\t",
        "main\r\n",
        "ma\u{7f}in",
        "mäin",
        "refs/../../x",
        "\u{202e}niam",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    revs.push("r".repeat(257));
    revs
}

fn expect_invalid(what: &str, result: tabcache::Result<impl std::fmt::Debug>, tally: &mut usize) {
    match result {
        Err(e) if e.kind() == ErrorKind::InvalidArgument && e.message().contains("invalid") => {
            *tally += 1
        }
        other => panic!("{what}: expected a clear invalid-argument error, got {other:?}"),
    }
}

/// Every file under `dir`, relative.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    walk(dir)
        .into_iter()
        .map(|path| path.strip_prefix(dir).unwrap().to_path_buf())
        .collect()
}

#[test]
fn malformed_names_are_refused_before_any_request() {
    let hub = hub(fill);
    let sandbox = tempfile::tempdir().unwrap();
    let cache_dir = sandbox.path().join("cache");
    let cache = open(&cache_dir, &hub);
    hub.emu.clear_log();
    let mut tally = 0;
    for id in bad_repo_ids() {
        let w = format!("repo id {id:?}");
        expect_invalid(&w, cache.scan_repo(&id, None), &mut tally);
        expect_invalid(&w, cache.get_manifest(&id), &mut tally);
        expect_invalid(
            &w,
            cache.download_file(&id, "config.json", None, None),
            &mut tally,
        );
        expect_invalid(
            &w,
            cache.download_quant(&id, "fp32", None, None),
            &mut tally,
        );
        expect_invalid(&w, cache.has_file(&id, "config.json", None), &mut tally);
        expect_invalid(&w, cache.get_file(&id, "config.json", None), &mut tally);
        expect_invalid(&w, cache.file_path(&id, "config.json", None), &mut tally);
        expect_invalid(&w, cache.open_file(&id, "config.json", None), &mut tally);
        expect_invalid(&w, cache.delete_model(&id), &mut tally);
    }
    for path in bad_paths() {
        let w = format!("path {path:?}");
        expect_invalid(&w, cache.download_file(REPO, &path, None, None), &mut tally);
        expect_invalid(&w, cache.has_file(REPO, &path, None), &mut tally);
        expect_invalid(&w, cache.get_file(REPO, &path, None), &mut tally);
        expect_invalid(&w, cache.file_path(REPO, &path, None), &mut tally);
        expect_invalid(&w, cache.open_file(REPO, &path, None), &mut tally);
    }
    for rev in bad_revisions() {
        let w = format!("revision {rev:?}");
        expect_invalid(&w, cache.scan_repo(REPO, Some(&rev)), &mut tally);
        expect_invalid(
            &w,
            cache.download_file(REPO, "config.json", Some(&rev), None),
            &mut tally,
        );
        expect_invalid(
            &w,
            cache.download_quant(REPO, "fp32", Some(&rev), None),
            &mut tally,
        );
        expect_invalid(
            &w,
            cache.has_file(REPO, "config.json", Some(&rev)),
            &mut tally,
        );
        expect_invalid(
            &w,
            cache.get_file(REPO, "config.json", Some(&rev)),
            &mut tally,
        );
    }
    println!("hostile names: {tally} refused");
    assert!(tally >= 200, "only {tally} cases");
    assert!(
        hub.settled_requests().is_empty(),
        "a malformed name reached the network"
    );
    assert!(
        !escape_target().exists(),
        "something escaped to {}",
        escape_target().display()
    );
    let names: BTreeSet<PathBuf> = tree(sandbox.path())
        .into_iter()
        .filter(|p| p.components().count() == 1)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([PathBuf::from("cache")]),
        "files appeared outside the cache"
    );
    // The cache still works.
    cache
        .download_file(REPO, "config.json", None, None)
        .unwrap();
    assert_eq!(
        cache.get_file(REPO, "config.json", None).unwrap().unwrap(),
        b"{}"
    );
}

#[test]
fn hostile_listings_are_refused_and_write_nothing() {
    let hub = hub(fill);
    let sandbox = tempfile::tempdir().unwrap();
    let cache_dir = sandbox.path().join("cache");
    let cache = open(&cache_dir, &hub);
    let before = tree(&cache_dir);
    let oid = "0123456789abcdef0123456789abcdef01234567";
    let sha = "a".repeat(64);
    let file =
        |path: &str| format!(r#"[{{"type":"file","path":{path:?},"oid":"{oid}","size":1}}]"#);
    let target = escape_target().join("x").display().to_string();
    let mut bodies = vec![
        file("../../x"),
        file("/etc/passwd"),
        file(&target),
        file("a/../../../b"),
        file("onnx/../../../../x.onnx"),
        file("a\\..\\..\\x"),
        file("C:/Windows/x"),
        file("a//b"),
        file("./config.json"),
        file(""),
        file("a\u{0}b"),
        file(&"a/".repeat(3000)),
        format!(
            r#"[{{"type":"file","path":"x","oid":"{oid}","size":1}},{{"type":"file","path":"x","oid":"{oid}","size":2}}]"#
        ),
        format!(r#"[{{"type":"file","path":"x","oid":"{oid}","size":-1}}]"#),
        format!(r#"[{{"type":"file","path":"x","oid":"{oid}","size":1e30}}]"#),
        format!(r#"[{{"type":"file","path":"x","oid":"{oid}","size":"1"}}]"#),
        format!(r#"[{{"type":"file","path":"x","oid":"../../x","size":1}}]"#),
        format!(
            r#"[{{"type":"file","path":"x.onnx","oid":"{oid}","size":1,"lfs":{{"oid":"../../../x","size":1}}}}]"#
        ),
        format!(
            r#"[{{"type":"file","path":"x.onnx","oid":"{oid}","size":1,"lfs":{{"oid":"{sha}","size":-4}}}}]"#
        ),
        "{not json".into(),
        "".into(),
        "null".into(),
        "[null]".into(),
        "{\"files\": []}".into(),
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".into(),
    ];
    bodies.push(format!("[{}]", vec![r#"{"type":"file"}"#; 1000].join(",")));
    let mut refused = 0;
    for body in &bodies {
        hub.emu.clear_faults();
        hub.emu
            .add_fault(Fault::new(FaultKind::RawTree { body: body.clone() }));
        let err = cache.scan_repo(REPO, None).unwrap_err();
        let short: String = body.chars().take(60).collect();
        assert!(
            matches!(err.kind(), ErrorKind::Http | ErrorKind::InvalidArgument),
            "{short}: {err}"
        );
        assert!(
            err.message().contains("server"),
            "{short}: the message should blame the server: {err}"
        );
        assert_eq!(
            cache.get_manifest(REPO).unwrap(),
            None,
            "{short}: a manifest was stored"
        );
        refused += 1;
    }
    hub.emu.clear_faults();
    hub.emu.add_fault(Fault::new(FaultKind::EndlessPagination));
    hub.emu.set_page_size(1);
    let err = cache.scan_repo(REPO, None).unwrap_err();
    assert!(err.message().contains("page"), "endless pagination: {err}");
    refused += 1;
    println!("hostile listings: {refused}/{} refused", bodies.len() + 1);
    assert!(!escape_target().exists());
    assert_eq!(
        tree(&cache_dir)
            .iter()
            .filter(|p| p.starts_with("hub"))
            .count(),
        before.iter().filter(|p| p.starts_with("hub")).count()
    );
    let names: BTreeSet<PathBuf> = tree(sandbox.path())
        .into_iter()
        .filter(|p| p.components().count() == 1)
        .collect();
    assert_eq!(names, BTreeSet::from([PathBuf::from("cache")]));
}

#[test]
fn a_closed_or_foreign_directory_is_a_clear_error() {
    let hub = hub(fill);
    let sandbox = tempfile::tempdir().unwrap();
    // A file where the cache directory should be.
    let file = sandbox.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = ModelCache::open(&file, options(&hub))
        .err()
        .expect("opened a file as a cache");
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains("not-a-dir"), "{err}");
    let err = ModelCache::open("", options(&hub)).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

/// The repo of the hostile download cases: a large LFS file (fetched in ranges with the test
/// transfer options), a small LFS file (one stream) and a small git file.
const HOSTILE_REPO: &str = "org/weights";
const BIG: &str = "model.safetensors";
const BIG_SIZE: u64 = 6 << 20;
const SMALL_LFS: &str = "adapter.safetensors";
const SMALL_LFS_SIZE: u64 = (1 << 20) + 4321;
const GIT_FILE: &str = "config.json";

fn fill_weights(root: &Path) {
    write_pseudo_random_file(root, HOSTILE_REPO, BIG, BIG_SIZE, 31).unwrap();
    write_pseudo_random_file(root, HOSTILE_REPO, SMALL_LFS, SMALL_LFS_SIZE, 32).unwrap();
    write_file(root, HOSTILE_REPO, GIT_FILE, br#"{"model_type": "bert"}"#).unwrap();
}

/// Set in the child: the case (JSON) that `hostile_downloads_end_in_clear_errors_with_bounded_memory`
/// runs instead of being the parent.
const CHILD_CASE: &str = "TABCACHE_HOSTILE_CHILD_CASE";
const CHILD_TEST: &str = "hostile_downloads_end_in_clear_errors_with_bounded_memory";
/// Peak memory a child may reach: the library with the test transfer options needs a few tens
/// of MiB; anything sized by a claimed size (a 2^62-byte claim) would be far beyond it.
const PEAK_LIMIT_KIB: u64 = 200 << 10;

/// The child's side: open the cache, optionally scan (so the listing gives the sizes), download
/// one file, and print the outcome with the process's peak resident memory (VmHWM).
fn run_child_case(case: &str) {
    let case: Value = serde_json::from_str(case).unwrap();
    let cache = ChildSetup::from_env()
        .expect("the parent hands over the cache")
        .open();
    let path = case["path"].as_str().unwrap();
    let outcome = (|| {
        if case["scan"].as_bool().unwrap() {
            cache.scan_repo(HOSTILE_REPO, None)?;
        }
        cache.download_file(HOSTILE_REPO, path, None, None)
    })();
    drop(cache);
    let peak_kib = peak_rss_kib().expect("VmHWM in /proc/self/status");
    let report = match outcome {
        Ok(local) => json!({"ok": local.display().to_string(), "peak_kib": peak_kib}),
        Err(e) => json!({"kind": e.kind().as_str(), "message": e.message(), "peak_kib": peak_kib}),
    };
    println!("HOSTILE-CHILD {report}");
}

/// Run one case in a child process (this test binary, running only this test) and return
/// what it printed.
fn in_child(hub: &Hub, cache_dir: &Path, path: &str, scan: bool) -> Value {
    let case = json!({"path": path, "scan": scan});
    let output = child_command(CHILD_TEST, hub, cache_dir)
        .env(CHILD_CASE, case.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("HOSTILE-CHILD ").map(|(_, json)| json))
        .unwrap_or_else(|| panic!("the child printed no outcome:\n{stdout}"));
    serde_json::from_str(line).unwrap()
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn hostile_downloads_end_in_clear_errors_with_bounded_memory() {
    if let Ok(case) = std::env::var(CHILD_CASE) {
        return run_child_case(&case);
    }
    let hub = hub(fill_weights);
    let api = host_port(&hub.emu.url());
    let cdn = host_port(&hub.emu.cdn_url());
    let absurd = 1u64 << 62;
    // Under the 1 PiB that any file may have, over any disk this test runs on.
    let beyond_disk = 1u64 << 49;
    struct Case {
        name: &'static str,
        faults: Vec<Fault>,
        path: &'static str,
        scan: bool,
        kind: &'static str,
        server: String,
        says: &'static [&'static str],
    }
    let claim = |size: u64| FaultKind::ClaimSize { size };
    let cases = vec![
        Case {
            name: "absurd X-Linked-Size on the resolve",
            faults: vec![Fault::new(claim(absurd)).on(Listener::Api).path(BIG)],
            path: BIG,
            scan: false,
            kind: "http",
            server: api.clone(),
            says: &["claimed a size of 4611686018427387904 bytes", "invalid"],
        },
        Case {
            name: "absurd Content-Length on a git file's resolve",
            faults: vec![Fault::new(claim(absurd)).on(Listener::Api).path(GIT_FILE)],
            path: GIT_FILE,
            scan: false,
            kind: "http",
            server: api.clone(),
            says: &["claimed a size of 4611686018427387904 bytes", "invalid"],
        },
        Case {
            name: "absurd X-Linked-Size on the resolve, listing known",
            faults: vec![Fault::new(claim(absurd)).on(Listener::Api).path(SMALL_LFS)],
            path: SMALL_LFS,
            scan: true,
            kind: "http",
            server: api.clone(),
            says: &["claimed a size of 4611686018427387904 bytes", "invalid"],
        },
        Case {
            name: "absurd Content-Length on the download, listing known",
            faults: vec![Fault::new(claim(absurd)).on(Listener::Cdn).path(SMALL_LFS)],
            path: SMALL_LFS,
            scan: true,
            kind: "http",
            server: cdn.clone(),
            says: &["claimed a size of 4611686018427387904 bytes", "invalid"],
        },
        Case {
            name: "a size larger than the free disk space",
            faults: vec![Fault::new(claim(beyond_disk)).on(Listener::Api).path(BIG)],
            path: BIG,
            scan: false,
            kind: "disk_full",
            server: api.clone(),
            says: &["claimed a size of 562949953421312 bytes", "free", "invalid"],
        },
        Case {
            name: "X-Linked-Size on the resolve disagreeing with the listing",
            faults: vec![Fault::new(claim(SMALL_LFS_SIZE + 1000))
                .on(Listener::Api)
                .path(SMALL_LFS)],
            path: SMALL_LFS,
            scan: true,
            kind: "corrupt",
            server: api.clone(),
            says: &["its listing gives", "the size it claimed is invalid"],
        },
        Case {
            name: "Content-Length disagreeing with the listing (one stream)",
            faults: vec![Fault::new(claim(SMALL_LFS_SIZE + 1000))
                .on(Listener::Cdn)
                .path(SMALL_LFS)],
            path: SMALL_LFS,
            scan: true,
            kind: "corrupt",
            server: cdn.clone(),
            says: &["Content-Length", "the size it claimed is invalid"],
        },
        Case {
            name: "Content-Range disagreeing with the listing (ranges)",
            faults: vec![Fault::new(claim(BIG_SIZE * 2)).on(Listener::Cdn).path(BIG)],
            path: BIG,
            scan: true,
            kind: "corrupt",
            server: cdn.clone(),
            says: &["the size it claimed is invalid"],
        },
        Case {
            name: "a gzip-encoded body (CDN)",
            faults: vec![Fault::new(FaultKind::ContentEncoding {
                encoding: "gzip".into(),
            })
            .on(Listener::Cdn)
            .path(SMALL_LFS)],
            path: SMALL_LFS,
            scan: true,
            kind: "http",
            server: cdn.clone(),
            says: &["Content-Encoding \"gzip\"", "identity"],
        },
        Case {
            name: "a gzip-encoded body (ranges)",
            faults: vec![Fault::new(FaultKind::ContentEncoding {
                encoding: "gzip".into(),
            })
            .on(Listener::Cdn)
            .path(BIG)],
            path: BIG,
            scan: false,
            kind: "http",
            server: cdn.clone(),
            says: &["Content-Encoding \"gzip\""],
        },
        Case {
            name: "a gzip-encoded git file (Hub)",
            faults: vec![Fault::new(FaultKind::ContentEncoding {
                encoding: "gzip".into(),
            })
            .on(Listener::Api)
            .path(GIT_FILE)],
            path: GIT_FILE,
            scan: true,
            kind: "http",
            server: api.clone(),
            says: &["Content-Encoding \"gzip\""],
        },
        Case {
            name: "neither size nor hash",
            faults: vec![Fault::new(FaultKind::NoMetadata).path(SMALL_LFS)],
            path: SMALL_LFS,
            scan: false,
            kind: "http",
            server: api.clone(),
            says: &["neither the size nor a hash", "cannot verify"],
        },
    ];
    let sandbox = tempfile::tempdir().unwrap();
    let mut tally = 0;
    for (n, case) in cases.iter().enumerate() {
        let cache_dir = sandbox.path().join(format!("cache-{n}"));
        hub.emu.clear_faults();
        for fault in &case.faults {
            hub.emu.add_fault(fault.clone());
        }
        let outcome = in_child(&hub, &cache_dir, case.path, case.scan);
        let name = case.name;
        assert_eq!(outcome["kind"], case.kind, "{name}: {outcome}");
        let message = outcome["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("server at {}", case.server)),
            "{name}: the message should name the server {}: {message}",
            case.server
        );
        for says in case.says {
            assert!(message.contains(says), "{name}: {says:?} not in: {message}");
        }
        let peak = outcome["peak_kib"].as_u64().unwrap();
        assert!(
            peak < PEAK_LIMIT_KIB,
            "{name}: the child peaked at {peak} KiB"
        );
        // Nothing committed, nothing left behind.
        let cache = open(&cache_dir, &hub);
        assert!(
            !cache.has_file(HOSTILE_REPO, case.path, None).unwrap(),
            "{name}: the file is cached"
        );
        assert!(blob_files(&cache_dir).is_empty(), "{name}: a blob landed");
        let partials: Vec<String> = tmp_files(&cache_dir)
            .into_iter()
            .filter(|f| f.ends_with(".part"))
            .collect();
        assert!(
            partials.is_empty(),
            "{name}: partial files left: {partials:?}"
        );
        println!("hostile download refused: {name} ({peak} KiB peak): {message}");
        tally += 1;
    }
    // The same cache works once the server behaves.
    hub.emu.clear_faults();
    let cache_dir = sandbox.path().join("cache-0");
    let outcome = in_child(&hub, &cache_dir, BIG, false);
    assert!(outcome["ok"].is_string(), "{outcome}");
    println!("hostile downloads: {tally}/{} refused", cases.len());
}
