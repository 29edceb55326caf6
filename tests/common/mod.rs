//! Shared set-up for the ModelCache integration tests: a folder of repos served by the hub
//! emulator on 127.0.0.1, and cache options that point at it and ignore the developer's own
//! Hugging Face environment (token, offline flag).

#![allow(dead_code)] // each test binary uses its own subset

mod catalog;
pub mod http;
pub mod phases;

#[allow(unused_imports)] // not every test binary checks the catalog
pub use catalog::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hub_emulator::{Emulator, EmulatorBuilder, Fault, FaultId, FaultKind, Listener, RequestRecord};
use tabcache::download::TransferOptions;
use tabcache::hub::{HubClient, HubOptions};
use tabcache::{CacheOptions, ModelCache};

pub struct Hub {
    pub emu: Emulator,
    pub repos: tempfile::TempDir,
}

impl Hub {
    pub fn root(&self) -> &Path {
        self.repos.path()
    }

    /// Requests that reached the CDN listener (file bytes).
    pub fn cdn_requests(&self) -> Vec<RequestRecord> {
        self.emu
            .requests()
            .into_iter()
            .filter(|r| r.listener == Listener::Cdn)
            .collect()
    }

    /// Slow every CDN answer to `bytes_per_sec`, so that a test can act mid-transfer.
    pub fn slow_cdn(&self, bytes_per_sec: u64) -> FaultId {
        self.emu
            .add_fault(Fault::new(FaultKind::RateLimit { bytes_per_sec }).on(Listener::Cdn))
    }

    /// Body bytes the CDN listener sent.
    pub fn cdn_bytes(&self) -> u64 {
        self.cdn_requests().iter().map(|r| r.body_bytes).sum()
    }

    /// The emulator logs a request after answering it; wait until the log stops growing.
    pub fn settled_requests(&self) -> Vec<RequestRecord> {
        let mut last = self.emu.requests().len();
        loop {
            std::thread::sleep(Duration::from_millis(30));
            let now = self.emu.requests();
            if now.len() == last {
                return now;
            }
            last = now.len();
        }
    }
}

/// A hub serving repos laid out by `fill(root)`.
pub fn hub(fill: impl FnOnce(&Path)) -> Hub {
    hub_with(fill, |builder| builder)
}

/// [`hub`] with emulator settings of its own (page size, LFS threshold, ...).
pub fn hub_with(
    fill: impl FnOnce(&Path),
    configure: impl FnOnce(EmulatorBuilder) -> EmulatorBuilder,
) -> Hub {
    let repos = tempfile::tempdir().unwrap();
    fill(repos.path());
    let emu = configure(Emulator::builder(repos.path())).start().unwrap();
    Hub { emu, repos }
}

/// A hub client pointed at `hub` with `options`, blind to the process environment (HF_TOKEN,
/// HF_ENDPOINT, ...) so that a developer's own settings cannot change what a test sees.
pub fn hub_client(hub: &Hub, options: HubOptions) -> HubClient {
    let options = HubOptions {
        endpoint: Some(hub.emu.url()),
        ..options
    };
    HubClient::with_env(options, &|_| None).unwrap()
}

/// Transfer settings small enough that test files exercise ranges, resume and retries fast.
pub fn test_transfer() -> TransferOptions {
    TransferOptions {
        connections: 4,
        range_size: 1 << 20,
        parallel_threshold: 4 << 20,
        stall_timeout: Duration::from_secs(2),
        max_attempts: 4,
        backoff_base: Duration::from_millis(10),
    }
}

pub fn options(hub: &Hub) -> CacheOptions {
    options_for(&hub.emu.url())
}

pub fn options_for(endpoint: &str) -> CacheOptions {
    CacheOptions {
        hub: HubOptions {
            endpoint: Some(endpoint.to_string()),
            // Empty: send no token even if the developer has HF_TOKEN set.
            token: Some(String::new()),
            offline: Some(false),
            read_timeout: Some(Duration::from_secs(2)),
            retry_base_delay: Some(Duration::from_millis(5)),
            max_retry_wait: Some(Duration::from_millis(200)),
            ..HubOptions::default()
        },
        transfer: test_transfer(),
        parallel_files: 4,
        max_size: None,
    }
}

pub fn offline_options(hub: &Hub) -> CacheOptions {
    let mut o = options(hub);
    o.hub.offline = Some(true);
    o
}

pub fn open(dir: &Path, hub: &Hub) -> ModelCache {
    ModelCache::open(dir, options(hub)).unwrap()
}

/// The Python with huggingface_hub that tests run: `TABCACHE_TEST_PYTHON`, else the
/// project's `.venv` (made by `scripts/venv`). A missing one fails the test, never skips it.
pub fn test_python() -> PathBuf {
    if let Some(p) = std::env::var_os("TABCACHE_TEST_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no test Python: run `bash scripts/venv` (or scripts/test), or set TABCACHE_TEST_PYTHON"
    );
    venv
}

/// The test Python running `script` (with `args`) as a huggingface_hub user pointed at
/// `endpoint`, keeping its downloads in `hf_cache`, with nothing from the developer's Hub
/// environment (token, offline mode, HF_HOME).
pub fn huggingface_hub(endpoint: &str, hf_cache: &Path, script: &str, args: &[&str]) -> Command {
    let mut python = Command::new(test_python());
    python
        .arg("-c")
        .arg(script)
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", hf_cache)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HOME");
    python
}

/// Run `python` (from [`test_python`], with its script and environment set) and return its
/// stdout; panics with both streams when it fails.
pub fn python_stdout(python: &mut Command) -> String {
    let out = python.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Names of the files in the cache's `blobs/` folder.
pub fn blob_files(cache_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every entry under `dir` (files, folders, links; links not followed), as full paths.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// Names of the files in the cache's `tmp/` folder.
pub fn tmp_files(cache_dir: &Path) -> Vec<String> {
    std::fs::read_dir(cache_dir.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    tabcache::digest::to_hex(&sha2::Sha256::digest(bytes))
}

pub fn path_of(root: &Path, repo: &str, file: &str) -> PathBuf {
    hub_emulator::repo_dir(root, repo).join(file)
}

/// A deterministic generator (xorshift64) for seeded, replayable schedules: kill times, victims,
/// operation mixes. Never seed it with 0.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The seed a seeded test uses: `env_var` when set (to replay a run), else the clock.
pub fn seed_from_env(env_var: &str) -> u64 {
    std::env::var(env_var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

/// This test binary, re-run to execute only `test` (whose body checks an env var to know it is
/// a child): the self-re-exec pattern of the multi-process tests.
pub fn self_exec(test: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    cmd
}

const CHILD_CACHE: &str = "TABCACHE_CHILD_CACHE";
const CHILD_ENDPOINT: &str = "TABCACHE_CHILD_ENDPOINT";

/// [`self_exec`] of `test` as a child that works on the cache `cache` against `hub`, which
/// the child finds with [`ChildSetup::from_env`].
pub fn child_command(test: &str, hub: &Hub, cache: &Path) -> Command {
    let mut cmd = self_exec(test);
    cmd.env(CHILD_CACHE, cache)
        .env(CHILD_ENDPOINT, hub.emu.url())
        // The child's options say token and offline mode; nothing from the developer's
        // environment may add to them.
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        // A failing child's panic message is what the parent shows; no backtrace noise.
        .env("RUST_BACKTRACE", "0");
    cmd
}

/// What a child started by [`child_command`] was handed: the cache and the hub.
pub struct ChildSetup {
    pub cache: PathBuf,
    pub endpoint: String,
}

impl ChildSetup {
    /// `None` in the parent: the test body runs as the parent.
    pub fn from_env() -> Option<ChildSetup> {
        Some(ChildSetup {
            cache: std::env::var_os(CHILD_CACHE)?.into(),
            endpoint: std::env::var(CHILD_ENDPOINT).ok()?,
        })
    }

    pub fn options(&self) -> CacheOptions {
        options_for(&self.endpoint)
    }

    pub fn open(&self) -> ModelCache {
        ModelCache::open(&self.cache, self.options())
            .unwrap_or_else(|e| panic!("the child could not open the cache: {:?}: {e}", e.kind()))
    }
}

/// Create (or truncate) an empty marker file: one side of a file barrier between processes.
pub fn touch(path: &Path) {
    std::fs::write(path, b"").unwrap();
}

/// Wait for a marker file another process creates; panics after `timeout`.
pub fn wait_for_file(path: &Path, timeout: Duration) {
    let started = std::time::Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < timeout,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// This process's peak resident memory (VmHWM) in KiB, where /proc tells it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Milliseconds since the Unix epoch: a clock that processes on one machine share.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Run the `tabcache` binary on `cache` against `hub`, isolated from the developer's HF
/// environment.
pub fn tabcache(hub: &Hub, cache: &Path, args: &[&str]) -> Output {
    tabcache_command(hub, cache, args).output().unwrap()
}

/// The command [`tabcache`] runs, to spawn it instead (stdin is null; stdout and stderr are
/// the caller's to set).
pub fn tabcache_command(hub: &Hub, cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tabcache"));
    cmd.arg("--cache")
        .arg(cache)
        .args(["--endpoint", &hub.emu.url(), "--token", ""])
        .args(args)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_ENDPOINT")
        .env_remove("TABCACHE_HOME")
        .stdin(Stdio::null());
    cmd
}

/// A huggingface_hub cache holding one file of `size` zero bytes (sparse, so it costs no disk)
/// under its true sha256 (or, without `true_hash`, a name it does not hash to): enough
/// hashing that a cancel lands in the middle of it.
pub fn hf_cache_with_zeros(root: &Path, size: u64, true_hash: bool) {
    use sha2::Digest;
    let sha = if true_hash {
        let mut hasher = sha2::Sha256::new();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..size >> 20 {
            hasher.update(&zeros);
        }
        tabcache::digest::to_hex(&hasher.finalize())
    } else {
        "ab".repeat(32)
    };
    let repo = root.join("models--org--zeros");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::fs::File::create(repo.join("blobs").join(&sha))
        .unwrap()
        .set_len(size)
        .unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{sha}"),
        repo.join("snapshots").join(commit).join("zeros.bin"),
    )
    .unwrap();
}
