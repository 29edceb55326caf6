//! The C ABI tested from C: compiles the programs under `tests/c/` and `c-examples/` against
//! `include/tabcache.h` and the libtabcache that cargo built for this test run, runs them
//! against the hub emulator (the C API test under valgrind, which must report no leak and no
//! invalid access), and checks what they print.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hub_emulator::{Fault, FaultKind, Gated, Listener, RepoConfig};

mod common;
use common::{hub_with, Hub};

/// Small files keep the run fast under valgrind; the emulator's LFS threshold is lowered so
/// that they still travel as LFS files through the CDN redirect, as model weights do.
const Q4_SIZE: usize = (200 << 10) + 123;
const LFS_THRESHOLD: u64 = 64 << 10;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding libtabcache.so/.a of this build. `cargo test` builds them into
/// deps/ beside the test binary (only `cargo build` copies them up to target/<profile>/, so
/// that copy may be stale).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let dir = exe
        .parent()
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    assert!(
        dir.join("libtabcache.so").exists() && dir.join("libtabcache.a").exists(),
        "libtabcache.so and libtabcache.a are not in {}; cargo builds them with the test (crate-type cdylib + staticlib)",
        dir.display()
    );
    dir
}

/// A GGUF file as a runtime reads it: magic, version 3, tensor count, metadata count, then
/// bytes that stand in for the rest.
fn gguf(len: usize, tensors: u64, metadata: u64, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&tensors.to_le_bytes());
    bytes.extend_from_slice(&metadata.to_le_bytes());
    bytes.extend_from_slice(&hub_emulator::pseudo_random_bytes(len - bytes.len(), seed));
    bytes
}

/// A hub serving the repos every C program here expects (see the comment at the top of
/// tests/c/api_test.c), with the faults some of them are for.
fn start_hub() -> Hub {
    let hub = hub_with(write_repos, |builder| builder.lfs_threshold(LFS_THRESHOLD));
    let emulator = &hub.emu;
    emulator.add_fault(Fault::status(500).on(Listener::Api).path("org/http500"));
    emulator.add_fault(Fault::status(429).on(Listener::Api).path("org/ratelimited"));
    emulator.add_fault(Fault::status(401).on(Listener::Api).path("org/unauth"));
    emulator.add_fault(
        Fault::new(FaultKind::Corrupt { offset: 1000 })
            .on(Listener::Cdn)
            .path("org/corrupt"),
    );
    emulator.add_fault(
        Fault::new(FaultKind::RateLimit {
            bytes_per_sec: 64 << 10,
        })
        .on(Listener::Cdn)
        .path("org/slow-gguf"),
    );
    hub
}

fn write_repos(root: &Path) {
    let put = |repo: &str, path: &str, bytes: &[u8]| {
        hub_emulator::write_file(root, repo, path, bytes).expect("write a repo file");
    };
    let config = |repo: &str, config: RepoConfig| {
        hub_emulator::write_repo_config(root, repo, &config).expect("write a repo config");
    };
    let text_generation = RepoConfig {
        pipeline_tag: Some("text-generation".into()),
        ..RepoConfig::default()
    };

    put(
        "org/tiny-gguf",
        "config.json",
        b"{\"model_type\": \"llama\"}\n",
    );
    put(
        "org/tiny-gguf",
        "README.md",
        b"# tiny-gguf\nA test model.\n",
    );
    put(
        "org/tiny-gguf",
        "model-Q4_K_M.gguf",
        &gguf(Q4_SIZE, 7, 3, 1),
    );
    put(
        "org/tiny-gguf",
        "model-Q8_0.gguf",
        &gguf((300 << 10) + 7, 7, 3, 2),
    );
    config("org/tiny-gguf", text_generation.clone());

    put(
        "org/slow-gguf",
        "model-Q4_K_M.gguf",
        &gguf(1 << 20, 9, 4, 3),
    );
    put("org/slow-gguf", "model-Q8_0.gguf", &gguf(1 << 20, 9, 4, 4));
    config("org/slow-gguf", text_generation);

    put("org/gated", "config.json", b"{}\n");
    config(
        "org/gated",
        RepoConfig {
            gated: Gated::Flag(true),
            ..RepoConfig::default()
        },
    );
    for repo in ["org/http500", "org/ratelimited", "org/unauth"] {
        put(repo, "config.json", b"{}\n");
    }
    put("org/corrupt", "model-Q4_K_M.gguf", &gguf(Q4_SIZE, 7, 3, 5));
    put(
        "org/served",
        "weights.bin",
        &hub_emulator::pseudo_random_bytes(16 << 20, 6),
    );

    // The disk budget section: four variants of one size, so a budget of three evicts one.
    put(
        "org/budget-gguf",
        "config.json",
        b"{\"model_type\": \"llama\"}\n",
    );
    for (seed, quant) in (10..).zip(["Q2_K", "Q4_K_M", "Q5_K_M", "Q8_0"]) {
        put(
            "org/budget-gguf",
            &format!("m-{quant}.gguf"),
            &gguf(LFS_THRESHOLD as usize + 10_000, 5, 2, seed),
        );
    }
}

/// The repo of the huggingface_hub cache that api_test.c imports: two files whose blobs match
/// their names (an LFS weight named by its sha256, a small file by its git blob sha1) and one
/// whose bytes were damaged after download, all at this commit, which `refs/main` names.
const HF_REPO_FOLDER: &str = "models--org--imported";
const HF_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Lay out a huggingface_hub cache at `dir` as huggingface_hub writes it: content in
/// `blobs/<hash>`, `snapshots/<commit>/<path>` symlinks to them, `refs/main` naming the commit.
fn write_hf_cache(dir: &Path) {
    let repo = dir.join(HF_REPO_FOLDER);
    let snapshot = repo.join("snapshots").join(HF_COMMIT);
    for folder in [repo.join("blobs"), repo.join("refs"), snapshot.clone()] {
        std::fs::create_dir_all(folder).expect("create the hf cache folders");
    }
    let weights = gguf(50_000, 5, 2, 6);
    let config = b"{\"model_type\": \"llama\"}\n".to_vec();
    let mut damaged = gguf(20_000, 5, 2, 7);
    let damaged_name = hub_emulator::sha256_reader(damaged.as_slice()).unwrap();
    damaged[100] ^= 0xff;
    let files = [
        (
            "model-Q4_K_M.gguf",
            hub_emulator::sha256_reader(weights.as_slice()).unwrap(),
            weights,
        ),
        ("config.json", hub_emulator::git_blob_sha1(&config), config),
        ("damaged.gguf", damaged_name, damaged),
    ];
    for (path, blob, bytes) in files {
        std::fs::write(repo.join("blobs").join(&blob), bytes).expect("write a blob");
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join(path))
            .expect("link a snapshot file to its blob");
    }
    std::fs::write(repo.join("refs").join("main"), HF_COMMIT).expect("write refs/main");
}

/// A URL on 127.0.0.1 where nothing listens.
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    format!("http://{addr}")
}

fn run(command: &mut Command) -> Output {
    // cargo points LD_LIBRARY_PATH at target/<profile>/, whose libtabcache.so is whatever the
    // last `cargo build` left there; the programs must load the one their rpath names.
    let output = command
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap_or_else(|e| panic!("could not run {command:?}: {e}"));
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Compile one C or C++ source against the header and the shared library.
fn compile(source: &Path, output: &Path, cpp: bool) {
    let lib = lib_dir();
    let mut command = Command::new(if cpp { "c++" } else { "cc" });
    if cpp {
        command.arg("-std=c++17");
    } else {
        command.args(["-std=c11", "-pedantic"]);
    }
    command
        .args(["-g", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir().join("include"))
        .arg(source)
        .arg("-o")
        .arg(output)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-ltabcache", "-lpthread"]);
    assert_success(
        &format!("compiling {}", source.display()),
        &run(&mut command),
    );
}

fn valgrind() -> Command {
    let mut command = Command::new("valgrind");
    command
        .arg("--quiet")
        .arg("--error-exitcode=99")
        .arg("--leak-check=full")
        .arg("--show-leak-kinds=definite,indirect")
        .arg("--errors-for-leak-kinds=definite,indirect")
        .arg(format!(
            "--suppressions={}",
            crate_dir().join("tests/c/valgrind.supp").display()
        ));
    command
}

/// tests/c/api_test.c, compiled into `work`, as a command running it under valgrind (with
/// `valgrind_options` beside the usual ones) against `hub`, with the caches it makes under
/// `work` and the huggingface_hub cache `hf_cache` to import.
fn api_test(work: &Path, hub: &Hub, hf_cache: &Path, valgrind_options: &[&str]) -> Command {
    let binary = work.join("api_test");
    compile(&crate_dir().join("tests/c/api_test.c"), &binary, false);
    let caches = work.join("caches");
    std::fs::create_dir_all(&caches).unwrap();
    let mut command = valgrind();
    command
        .args(valgrind_options)
        .arg(&binary)
        .arg(hub.emu.url())
        .arg(dead_endpoint())
        .arg(&caches)
        .arg(Q4_SIZE.to_string())
        .arg(hf_cache)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_HOME", work.join("hf-home"));
    command
}

/// The sections api_test reported passing (`ok - ...` lines) and its count of passed checks,
/// after asserting that nothing failed and that the last line is the tally.
fn tally(stdout: &str) -> (usize, usize) {
    assert!(!stdout.contains("not ok"), "{stdout}");
    let sections = stdout.lines().filter(|l| l.starts_with("ok - ")).count();
    let last = stdout.lines().last().unwrap_or_default();
    let passed = last
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the last line is the tally with no failure: {last:?}"));
    (sections, passed)
}

#[test]
fn c_api_under_valgrind() {
    let work = tempfile::tempdir().unwrap();
    let hub = start_hub();
    let hf_cache = work.path().join("hf-hub-cache");
    write_hf_cache(&hf_cache);
    let output = run(api_test(work.path(), &hub, &hf_cache, &[])
        // What tc_cache_import_hf reads when given no directory.
        .env("HF_HUB_CACHE", &hf_cache));
    assert_success("api_test under valgrind", &output);
    let stdout = text(&output.stdout);
    println!("{stdout}");
    let (sections, passed) = tally(&stdout);
    assert_eq!(sections, 20, "every section ran:\n{stdout}");
    assert!(
        passed > 250,
        "{passed} checks passed; the C test has more than that"
    );
}

/// Handles, strings and buffers whose memory a newer one reuses: the stale pointer is still
/// refused. Strings and buffers are memory the allocator gives back, and valgrind holds freed
/// blocks back from reuse (20 MB of them, to catch use after free) where a real allocator
/// reuses them at once, which is the case under test; so this section runs in its own
/// valgrind run with `--freelist-vol=0` (valgrind still checks every access and leak).
#[test]
fn stale_handles_are_refused_after_their_memory_is_reused_under_valgrind() {
    let work = tempfile::tempdir().unwrap();
    let hub = start_hub();
    let no_hf_cache = work.path().join("no-hf-cache");
    // Only the "reuse" section, named after api_test's other arguments.
    let output = run(api_test(work.path(), &hub, &no_hf_cache, &["--freelist-vol=0"]).arg("reuse"));
    assert_success("api_test reuse under valgrind", &output);
    let stdout = text(&output.stdout);
    println!("{stdout}");
    assert_eq!(tally(&stdout).0, 1, "{stdout}");
}

/// `make install` puts the library, header and tabcache.pc under a prefix; the examples build
/// from it with pkg-config (shared, and quickstart also static), run against the emulator,
/// and print what a user would see.
#[test]
fn examples_install_build_with_pkg_config_and_run() {
    let work = tempfile::tempdir().unwrap();
    let hub = start_hub();
    let prefix = work.path().join("prefix");
    let bin = work.path().join("bin");
    let examples = crate_dir().join("c-examples");

    let mut install = Command::new("make");
    install
        .arg("-C")
        .arg(&examples)
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("LIBDIR={}", lib_dir().display()));
    assert_success("make install", &run(&mut install));
    for installed in [
        "lib/libtabcache.so",
        "lib/libtabcache.a",
        "include/tabcache.h",
        "lib/pkgconfig/tabcache.pc",
    ] {
        assert!(
            prefix.join(installed).exists(),
            "make install did not install {installed}"
        );
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/tabcache.pc")).unwrap();
    assert!(
        pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{pc}"
    );

    let mut build = Command::new("make");
    build
        .arg("-C")
        .arg(&examples)
        .args(["USE_PKG_CONFIG=1", "all", "static"])
        .arg(format!("OUT={}", bin.display()))
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"));
    assert_success("make examples with pkg-config", &run(&mut build));

    let example = |name: &str, args: &[&str]| -> String {
        let mut command = Command::new(bin.join(name));
        command
            .args(args)
            .current_dir(work.path())
            .env("HF_ENDPOINT", hub.emu.url())
            .env("HF_HOME", work.path().join("hf-home"))
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE");
        let output = run(&mut command);
        assert_success(name, &output);
        text(&output.stdout)
    };

    for (name, cache) in [
        ("quickstart", "cache-shared"),
        ("quickstart-static", "cache-static"),
    ] {
        let out = example(name, &[cache, "org/tiny-gguf", "Q4_K_M", "config.json"]);
        let expected = format!(
            "tabcache {version}\nvariant: Q4_K_M\nvariant: Q8_0\ndownloaded: Q4_K_M\n\
             has_file config.json: yes\nget_file config.json: 24 bytes\n",
            version = env!("CARGO_PKG_VERSION")
        );
        assert!(
            out.starts_with(&expected),
            "{name} printed:\n{out}\nexpected it to start with:\n{expected}"
        );
        let stats = out.lines().last().unwrap_or_default();
        assert!(stats.starts_with("stats: 1 repos, "), "{name}: {stats}");
    }

    let out = example(
        "gguf_header",
        &["cache-shared", "org/tiny-gguf", "model-Q4_K_M.gguf"],
    );
    assert!(out.contains("/model-Q4_K_M.gguf\n"), "{out}");
    assert!(
        out.ends_with(&format!(
            "magic: GGUF\nversion: 3\ntensors: 7\nmetadata entries: 3\nfile size: {Q4_SIZE} bytes\n"
        )),
        "{out}"
    );

    let out = example(
        "async_download",
        &[
            "cache-async",
            "org/tiny-gguf",
            "Q8_0",
            "org/slow-gguf",
            "Q4_K_M",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        "started: org/tiny-gguf Q8_0 and org/slow-gguf Q4_K_M"
    );
    assert!(
        lines[1].starts_with("Q8_0: done (") && lines[1].ends_with(" bytes)"),
        "{out}"
    );
    assert_eq!(lines[2], "Q4_K_M: cancelled");
}
