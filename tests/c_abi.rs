//! The C ABI tested from C: compiles the programs under `tests/c/` and `c-examples/` against
//! `include/tabcache.h` and the libtabcache that cargo built for this test run, runs them
//! against the hub emulator (the C API test under valgrind, which must report no leak and no
//! invalid access), and checks what they print.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use hub_emulator::{Emulator, Fault, FaultKind, Gated, Listener, RepoConfig};

const Q4_SIZE: usize = (3 << 19) + 123;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding libtabcache.so/.a of this build: the test binary lives in its deps/.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf();
    assert!(
        dir.join("libtabcache.so").exists() && dir.join("libtabcache.a").exists(),
        "libtabcache.so and libtabcache.a are not in {}; cargo builds them with the test (crate-type cdylib + staticlib)",
        dir.display()
    );
    dir
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tabcache-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

/// The repos every C program here expects (see the comment at the top of tests/c/api_test.c).
fn start_emulator(root: &Path) -> Emulator {
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

    put("org/tiny-gguf", "config.json", b"{\"model_type\": \"llama\"}\n");
    put("org/tiny-gguf", "README.md", b"# tiny-gguf\nA test model.\n");
    put("org/tiny-gguf", "model-Q4_K_M.gguf", &gguf(Q4_SIZE, 7, 3, 1));
    put("org/tiny-gguf", "model-Q8_0.gguf", &gguf((2 << 20) + 7, 7, 3, 2));
    config("org/tiny-gguf", text_generation.clone());

    put("org/slow-gguf", "model-Q4_K_M.gguf", &gguf(3 << 20, 9, 4, 3));
    put("org/slow-gguf", "model-Q8_0.gguf", &gguf(4 << 20, 9, 4, 4));
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

    let emulator = Emulator::start(root).expect("start the hub emulator");
    emulator.add_fault(Fault::status(500).on(Listener::Api).path("org/http500"));
    emulator.add_fault(Fault::status(429).on(Listener::Api).path("org/ratelimited"));
    emulator.add_fault(Fault::status(401).on(Listener::Api).path("org/unauth"));
    emulator.add_fault(Fault::new(FaultKind::Corrupt { offset: 1000 }).on(Listener::Cdn).path("org/corrupt"));
    emulator.add_fault(
        Fault::new(FaultKind::RateLimit {
            bytes_per_sec: 256 << 10,
        })
        .on(Listener::Cdn)
        .path("org/slow-gguf"),
    );
    emulator
}

/// A URL on 127.0.0.1 where nothing listens.
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    format!("http://{addr}")
}

fn run(command: &mut Command) -> Output {
    let output = command
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
    assert_success(&format!("compiling {}", source.display()), &run(&mut command));
}

fn valgrind() -> Command {
    let mut command = Command::new("valgrind");
    command
        .arg("--quiet")
        .arg("--error-exitcode=99")
        .arg("--leak-check=full")
        .arg("--show-leak-kinds=definite,indirect")
        .arg("--errors-for-leak-kinds=definite,indirect")
        .arg(format!("--suppressions={}", crate_dir().join("tests/c/valgrind.supp").display()));
    command
}

#[test]
fn c_api_under_valgrind() {
    let work = TempDir::new("c-api");
    let emulator = start_emulator(&work.0.join("repos"));
    let binary = work.0.join("api_test");
    compile(&crate_dir().join("tests/c/api_test.c"), &binary, false);
    let caches = work.0.join("caches");
    std::fs::create_dir_all(&caches).unwrap();

    let output = run(valgrind()
        .arg(&binary)
        .arg(emulator.url())
        .arg(dead_endpoint())
        .arg(&caches)
        .arg(Q4_SIZE.to_string())
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_HOME", work.0.join("hf-home")));
    assert_success("api_test under valgrind", &output);
    let stdout = text(&output.stdout);
    let sections: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ok - ")).collect();
    assert!(!stdout.contains("not ok"), "{stdout}");
    assert_eq!(sections.len(), 15, "every section ran:\n{stdout}");
    let tally = stdout.lines().last().unwrap_or_default();
    let passed: usize = tally
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the last line is the tally with no failure: {tally:?}"));
    assert!(passed > 250, "{passed} checks passed; the C test has more than that");
}
