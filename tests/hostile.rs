//! Hostile input through ModelCache: hundreds of malformed repo ids, file paths and revisions
//! (each must be refused as an invalid argument before any request is made), and hostile
//! server listings (each must be refused naming the server). Afterwards nothing exists outside
//! the cache directory that was not there before. Prints a tally.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use hub_emulator::{write_file, Fault, FaultKind};
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
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out
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
