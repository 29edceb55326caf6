//! Many processes share one cache (issue 12): each test runs this test binary again as child
//! processes (an env var names the child's role) that open one cache directory and use it at
//! the same time against the hub emulator, whose request log counts the bytes the CDN sent.
//!
//! - two processes download different files concurrently and each sees the other's;
//! - four processes asking for one large file make one transfer;
//! - that transfer's process SIGKILLed half-way: a waiter takes over and resumes;
//! - a process waiting for another's transfer hears its progress;
//! - a 30 s storm of 4 processes x every operation with random SIGKILLs, then a consistency
//!   check of the catalog read with SQLite from outside the library. `TABCACHE_MP_SEED=N`
//!   replays a storm's schedule.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hub_emulator::{
    pseudo_random_bytes, pseudo_random_sha256, write_file, write_pseudo_random_file, Listener,
};
use tabcache::{ErrorKind, ModelCache};

const ROLE: &str = "TABCACHE_MP_ROLE";
const SYNC: &str = "TABCACHE_MP_SYNC";
const ARG: &str = "TABCACHE_MP_ARG";

/// How long a child waits for a barrier, and the parent for a child, before giving up.
const PATIENCE: Duration = Duration::from_secs(60);

/// What a child process is told: the cache and the hub, its role, a folder for barrier files
/// and one role-specific argument.
struct ChildEnv {
    child: ChildSetup,
    role: String,
    sync: PathBuf,
    arg: String,
}

impl ChildEnv {
    fn from_env() -> Option<ChildEnv> {
        Some(ChildEnv {
            child: ChildSetup::from_env()?,
            role: std::env::var(ROLE).ok()?,
            sync: std::env::var_os(SYNC)?.into(),
            arg: std::env::var(ARG).unwrap_or_default(),
        })
    }

    fn open(&self) -> ModelCache {
        ModelCache::open(&self.child.cache, self.child.options())
            .unwrap_or_else(|e| panic!("{}: open failed: {:?}: {e}", self.role, e.kind()))
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.sync.join(name)
    }
}

/// One shared cache, hub and barrier folder for the children of one test.
struct Family<'a> {
    test: &'static str,
    hub: &'a Hub,
    cache: tempfile::TempDir,
    sync: tempfile::TempDir,
}

impl<'a> Family<'a> {
    fn new(test: &'static str, hub: &'a Hub) -> Self {
        Family {
            test,
            hub,
            cache: tempfile::tempdir().unwrap(),
            sync: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, role: &str, arg: &str) -> Command {
        let mut cmd = child_command(self.test, self.hub, self.cache.path());
        cmd.env(ROLE, role)
            .env(SYNC, self.sync.path())
            .env(ARG, arg);
        cmd
    }

    /// A child whose (short) output the parent reads when it ends.
    fn spawn(&self, role: &str, arg: &str) -> Child {
        self.command(role, arg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.sync.path().join(name)
    }

    /// Wait until every child has created its marker, failing fast if one dies first.
    fn wait_markers(&self, children: &mut [Child], names: &[String]) {
        let started = Instant::now();
        while !names.iter().all(|n| self.marker(n).exists()) {
            for child in children.iter_mut() {
                if let Some(status) = child.try_wait().unwrap() {
                    let out = read_output(child, status);
                    panic!(
                        "a child died before its barrier ({status}):\n{}",
                        show(&out)
                    );
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "children never reached the barrier"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn read_output(child: &mut Child, status: std::process::ExitStatus) -> Output {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        std::io::Read::read_to_end(&mut s, &mut stdout).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        std::io::Read::read_to_end(&mut s, &mut stderr).unwrap();
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Wait for a child to end (killing it after `PATIENCE`) and insist that it succeeded.
fn finish(mut child: Child) -> Output {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = read_output(&mut child, status);
            assert!(out.status.success(), "a child failed:\n{}", show(&out));
            return out;
        }
        if started.elapsed() > PATIENCE {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            panic!(
                "a child hung for {PATIENCE:?}:\n{}",
                show(&read_output(&mut child, status))
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The words after `MP <key>` on the child's line that holds it.
fn reported(out: &Output, key: &str) -> Vec<String> {
    let prefix = format!("MP {key} ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // The test harness may have begun the line (`test name ... `) before the child's output.
        .find_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no `{prefix}` line:\n{}", show(out)))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// One range per connection: what a transfer may fetch twice (a range cut by a kill).
fn slack_per_transfer() -> u64 {
    let t = test_transfer();
    t.connections as u64 * t.range_size
}

fn read_hash(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------------
// 1. Two processes, different files, at the same time.

const PAIR_REPO: &str = "org/pair";
const PAIR_LEN: u64 = 6 << 20;

/// (path, seed) of the two files, one per process.
const PAIR_FILES: [(&str, u64); 2] = [("onnx/model.onnx", 31), ("onnx/model_fp16.onnx", 32)];

fn pair_child(env: &ChildEnv) {
    let n: usize = env.arg.parse().unwrap();
    let (mine, mine_seed) = PAIR_FILES[n];
    let (other, other_seed) = PAIR_FILES[1 - n];
    let cache = env.open();
    touch(&env.marker(&format!("open-{n}")));
    wait_for_file(&env.marker("go"), PATIENCE);
    let start = epoch_ms();
    let path = cache.download_file(PAIR_REPO, mine, None, None).unwrap();
    let end = epoch_ms();
    assert_eq!(read_hash(&path), pseudo_random_sha256(PAIR_LEN, mine_seed));
    println!("MP downloaded {start} {end}");
    touch(&env.marker(&format!("done-{n}")));
    // The other process's file, through this handle that was opened before it existed.
    wait_for_file(&env.marker(&format!("done-{}", 1 - n)), PATIENCE);
    assert!(cache.has_file(PAIR_REPO, other, None).unwrap());
    let bytes = cache.get_file(PAIR_REPO, other, None).unwrap().unwrap();
    let want = pseudo_random_sha256(PAIR_LEN, other_seed);
    assert_eq!(sha256_hex(&bytes), want, "get_file of the other's file");
    let view = cache.file_path(PAIR_REPO, other, None).unwrap().unwrap();
    assert_eq!(read_hash(&view), want, "file_path of the other's file");
    println!("MP saw-other {}", view.display());
}

#[test]
fn two_processes_download_different_files_at_once_and_see_each_others() {
    if let Some(env) = ChildEnv::from_env() {
        return pair_child(&env);
    }
    let hub = hub(|root| {
        for (path, seed) in PAIR_FILES {
            write_pseudo_random_file(root, PAIR_REPO, path, PAIR_LEN, seed).unwrap();
        }
    });
    // ~0.5 s per file over 4 connections, so the two transfers overlap.
    hub.slow_cdn(3_000_000);
    let fam = Family::new(
        "two_processes_download_different_files_at_once_and_see_each_others",
        &hub,
    );
    let mut children: Vec<Child> = (0..2).map(|n| fam.spawn("pair", &n.to_string())).collect();
    // Both have the cache open before either downloads.
    fam.wait_markers(&mut children, &["open-0".into(), "open-1".into()]);
    touch(&fam.marker("go"));
    let outs: Vec<Output> = children.into_iter().map(finish).collect();
    let spans: Vec<(u64, u64)> = outs
        .iter()
        .map(|o| {
            let w = reported(o, "downloaded");
            (w[0].parse().unwrap(), w[1].parse().unwrap())
        })
        .collect();
    assert!(
        spans[0].0 < spans[1].1 && spans[1].0 < spans[0].1,
        "the downloads did not overlap: {spans:?}"
    );
    for o in &outs {
        reported(o, "saw-other");
    }
    let sent = hub.cdn_bytes();
    assert!(
        sent <= 2 * PAIR_LEN + 2 * slack_per_transfer(),
        "the CDN sent {sent} bytes for two files of {PAIR_LEN}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Four processes, one large file: one transfer.

const BIG_REPO: &str = "org/big";
const BIG: &str = "model.onnx_data";
const BIG_LEN: u64 = 32 << 20;

fn same_file_child(env: &ChildEnv, seed: u64) {
    let n = &env.arg;
    let cache = env.open();
    touch(&env.marker(&format!("open-{n}")));
    wait_for_file(&env.marker("go"), PATIENCE);
    let start = epoch_ms();
    let path = cache.download_file(BIG_REPO, BIG, None, None).unwrap();
    let end = epoch_ms();
    let sha = read_hash(&path);
    assert_eq!(sha, pseudo_random_sha256(BIG_LEN, seed));
    println!("MP got {start} {end} {}", path.display());
}

#[test]
fn four_processes_asking_for_one_file_transfer_it_once() {
    const SEED: u64 = 41;
    if let Some(env) = ChildEnv::from_env() {
        return same_file_child(&env, SEED);
    }
    let hub = hub(|root| {
        write_pseudo_random_file(root, BIG_REPO, BIG, BIG_LEN, SEED).unwrap();
    });
    // ~2.8 s for the file over 4 connections: all four ask while it is on the wire.
    hub.slow_cdn(3_000_000);
    let fam = Family::new("four_processes_asking_for_one_file_transfer_it_once", &hub);
    let mut children: Vec<Child> = (0..4).map(|n| fam.spawn("same", &n.to_string())).collect();
    let names: Vec<String> = (0..4).map(|n| format!("open-{n}")).collect();
    fam.wait_markers(&mut children, &names);
    touch(&fam.marker("go"));
    let outs: Vec<Output> = children.into_iter().map(finish).collect();
    let got: Vec<Vec<String>> = outs.iter().map(|o| reported(o, "got")).collect();
    // The test is only worth something if all four asked before the first one had the file.
    let last_start = got.iter().map(|w| w[0].parse::<u64>().unwrap()).max();
    let first_end = got.iter().map(|w| w[1].parse::<u64>().unwrap()).min();
    assert!(
        last_start < first_end,
        "the four requests did not overlap: {got:?}"
    );
    let sent = hub.cdn_bytes();
    assert!(
        sent <= BIG_LEN + slack_per_transfer(),
        "the CDN sent {sent} bytes for one file of {BIG_LEN}: more than one transfer"
    );
    // Every process was handed the snapshot-view path of the file.
    let cache = open(fam.cache.path(), &hub);
    let view = cache.file_path(BIG_REPO, BIG, None).unwrap().unwrap();
    for w in &got {
        assert_eq!(Path::new(&w[2]), view, "{got:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The transferring process killed half-way: a waiter takes over and resumes.

const KILLED_REPO: &str = "org/killed";

fn owner_child(env: &ChildEnv) {
    let cache = env.open();
    cache.download_file(KILLED_REPO, BIG, None, None).unwrap();
    println!("MP owner-finished");
}

fn waiter_child(env: &ChildEnv, seed: u64) {
    let n = &env.arg;
    let cache = env.open();
    touch(&env.marker(&format!("open-{n}")));
    let path = cache.download_file(KILLED_REPO, BIG, None, None).unwrap();
    assert_eq!(read_hash(&path), pseudo_random_sha256(BIG_LEN, seed));
    println!("MP got {}", path.display());
}

#[test]
fn a_transfer_killed_half_way_is_finished_by_a_waiting_process() {
    const SEED: u64 = 42;
    if let Some(env) = ChildEnv::from_env() {
        return match env.role.as_str() {
            "owner" => owner_child(&env),
            _ => waiter_child(&env, SEED),
        };
    }
    let hub = hub(|root| {
        write_pseudo_random_file(root, KILLED_REPO, BIG, BIG_LEN, SEED).unwrap();
    });
    // ~4 s for the file over 4 connections.
    hub.slow_cdn(2_000_000);
    let fam = Family::new(
        "a_transfer_killed_half_way_is_finished_by_a_waiting_process",
        &hub,
    );
    let mut owner = fam.spawn("owner", "");
    // Once the owner's transfer is under way (a first range has arrived), three more ask.
    let started = Instant::now();
    while hub.cdn_bytes() == 0 {
        assert!(owner.try_wait().unwrap().is_none(), "the owner ended early");
        assert!(started.elapsed() < PATIENCE, "the owner never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut waiters: Vec<Child> = (0..3)
        .map(|n| fam.spawn("waiter", &n.to_string()))
        .collect();
    let names: Vec<String> = (0..3).map(|n| format!("open-{n}")).collect();
    fam.wait_markers(&mut waiters, &names);
    while hub.cdn_bytes() < BIG_LEN / 2 {
        assert!(owner.try_wait().unwrap().is_none(), "the owner ended early");
        assert!(started.elapsed() < PATIENCE, "the owner stalled");
        std::thread::sleep(Duration::from_millis(2));
    }
    let at_kill = hub.cdn_bytes();
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert!(at_kill < BIG_LEN, "the owner was not killed half-way");
    let outs: Vec<Output> = waiters.into_iter().map(finish).collect();
    let cache = open(fam.cache.path(), &hub);
    let view = cache.file_path(KILLED_REPO, BIG, None).unwrap().unwrap();
    for o in &outs {
        assert_eq!(Path::new(&reported(o, "got")[0]), view);
    }
    // Two processes transferred (the killed owner, the waiter that took over); restarting
    // from zero would have cost at_kill (>= half the file) more than the file.
    let sent = hub.settled_requests();
    let sent: u64 = sent
        .iter()
        .filter(|r| r.listener == Listener::Cdn)
        .map(|r| r.body_bytes)
        .sum();
    println!("killed transfer: {at_kill} of {BIG_LEN} bytes sent before the kill, {sent} in all");
    assert!(
        sent <= BIG_LEN + 2 * slack_per_transfer(),
        "the CDN sent {sent} bytes for one file of {BIG_LEN} ({at_kill} before the kill): \
         the take-over did not resume, or more than one process took over"
    );
}

// ---------------------------------------------------------------------------------------------
// 3b. A process waiting for another's transfer hears its progress.

const WATCHED_REPO: &str = "org/watched";
const WATCHED_LEN: u64 = 16 << 20;

fn watcher_child(env: &ChildEnv, seed: u64) {
    let cache = env.open();
    // (loaded, total) calls short of the end, while the other process moves the bytes.
    let mut midway: Vec<u64> = Vec::new();
    let mut on_progress = |loaded: u64, total: u64| {
        if loaded < total {
            midway.push(loaded);
        }
        true
    };
    let path = cache
        .download_file(WATCHED_REPO, BIG, None, Some(&mut on_progress))
        .unwrap();
    assert_eq!(read_hash(&path), pseudo_random_sha256(WATCHED_LEN, seed));
    let midway: Vec<String> = midway.iter().map(u64::to_string).collect();
    println!("MP heard {}", midway.join(" "));
}

#[test]
fn a_process_waiting_for_another_processs_transfer_hears_its_progress() {
    const SEED: u64 = 43;
    if let Some(env) = ChildEnv::from_env() {
        return match env.role.as_str() {
            "owner" => {
                env.open()
                    .download_file(WATCHED_REPO, BIG, None, None)
                    .unwrap();
            }
            _ => watcher_child(&env, SEED),
        };
    }
    let hub = hub(|root| {
        write_pseudo_random_file(root, WATCHED_REPO, BIG, WATCHED_LEN, SEED).unwrap();
    });
    // ~2 s for the file over 4 connections.
    hub.slow_cdn(2_000_000);
    let fam = Family::new(
        "a_process_waiting_for_another_processs_transfer_hears_its_progress",
        &hub,
    );
    let owner = fam.spawn("owner", "");
    // The watcher asks as soon as the owner's transfer has begun (its partial file exists),
    // as a second process started a moment after the first would.
    let started = Instant::now();
    let part_exists = || {
        std::fs::read_dir(fam.cache.path().join("tmp")).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".part")))
        })
    };
    while !part_exists() {
        assert!(started.elapsed() < PATIENCE, "the owner never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let watcher = fam.spawn("watcher", "");
    let out = finish(watcher);
    finish(owner);
    let heard: Vec<u64> = reported(&out, "heard")
        .iter()
        .map(|w| w.parse().unwrap())
        .collect();
    // ~2 s of transfer, reported every 50 ms or so as ranges become durable: a few distinct
    // values below the total, rising.
    let distinct: BTreeSet<u64> = heard.iter().copied().collect();
    assert!(
        distinct.len() >= 3 && heard.windows(2).all(|w| w[0] <= w[1]),
        "the waiting process heard {heard:?} of {WATCHED_LEN} bytes before the end"
    );
    assert!(
        hub.cdn_bytes() <= WATCHED_LEN + slack_per_transfer(),
        "the watcher transferred too"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. The storm: 4 processes x every operation, random SIGKILLs, then a consistency check.

const STORM_A: &str = "org/storm-a";
const STORM_B: &str = "org/storm-b";
const STORM_SECONDS: u64 = 30;
const STORM_PROCESSES: usize = 4;

/// (repo, path, len, seed). B's onnx/model.onnx is A's q4 external data (one blob for both),
/// and both hold the same q4 graph and config.json.
fn storm_files() -> Vec<(&'static str, &'static str, u64, u64)> {
    vec![
        (STORM_A, "onnx/model_q4.onnx", 200_000, 51),
        (STORM_A, "onnx/model_q4.onnx_data", 6 << 20, 52),
        (STORM_A, "onnx/model_fp16.onnx", 5 << 20, 53),
        (STORM_A, "tokenizer.json", 30_000, 54),
        (STORM_B, "onnx/model.onnx", 6 << 20, 52),
        (STORM_B, "onnx/model_q4.onnx", 200_000, 51),
        (STORM_B, "tokenizer.json", 30_000, 55),
    ]
}

const STORM_CONFIG: &[u8] = b"{\"model_type\":\"bert\"}";

fn storm_fill(root: &Path) {
    for (repo, path, len, seed) in storm_files() {
        write_pseudo_random_file(root, repo, path, len, seed).unwrap();
    }
    write_file(root, STORM_A, "config.json", STORM_CONFIG).unwrap();
    write_file(root, STORM_B, "config.json", STORM_CONFIG).unwrap();
}

fn storm_expected() -> HashMap<(&'static str, &'static str), String> {
    storm_files()
        .into_iter()
        .map(|(r, p, len, seed)| ((r, p), pseudo_random_sha256(len, seed)))
        .chain([
            ((STORM_A, "config.json"), sha256_hex(STORM_CONFIG)),
            ((STORM_B, "config.json"), sha256_hex(STORM_CONFIG)),
        ])
        .collect()
}

const OPS: [&str; 9] = [
    "scan_repo",
    "download_file",
    "download_quant",
    "delete_model",
    "has_file",
    "get_file",
    "file_path",
    "gc",
    "verify",
];

/// Relative weights of OPS: reads and downloads often, deletes, gc and verify now and then.
const WEIGHTS: [u64; 9] = [10, 25, 10, 4, 15, 15, 10, 5, 6];

fn pick_op(rng: &mut XorShift) -> &'static str {
    let mut r = rng.below(WEIGHTS.iter().sum());
    for (op, w) in OPS.iter().zip(WEIGHTS) {
        if r < w {
            return op;
        }
        r -= w;
    }
    unreachable!()
}

/// Bytes read through a path the library returned: right, or gone because another process
/// deleted the repo since (the path was true when it was handed out).
fn check_read(what: &str, path: &Path, want: &str) {
    match std::fs::read(path) {
        Ok(bytes) => assert_eq!(&sha256_hex(&bytes), want, "{what}: wrong bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("{what}: {}: {e}", path.display()),
    }
}

/// A storm child: random operations until the stop marker appears, each completed one
/// appended to ops.log. Any error or wrong byte ends it with a panic (exit status 101).
fn storm_child(env: &ChildEnv) {
    let seed: u64 = env.arg.parse().unwrap();
    let mut rng = XorShift(seed);
    let expected = storm_expected();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.marker("ops.log"))
        .unwrap();
    let cache = env.open();
    let stop = env.marker("stop");
    while !stop.exists() {
        let op = pick_op(&mut rng);
        let repo = if rng.below(2) == 0 { STORM_A } else { STORM_B };
        let paths: Vec<&str> = expected
            .keys()
            .filter(|(r, _)| *r == repo)
            .map(|(_, p)| *p)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let path = paths[rng.below(paths.len() as u64) as usize];
        let want = &expected[&(repo, path)];
        let what = format!("{op} {repo} {path}");
        eprintln!("op {what}");
        let fail = |e: tabcache::Error| -> ! { panic!("{what}: {:?}: {e}", e.kind()) };
        match op {
            "scan_repo" => {
                cache.scan_repo(repo, None).unwrap_or_else(|e| fail(e));
            }
            "download_file" => {
                let p = cache
                    .download_file(repo, path, None, None)
                    .unwrap_or_else(|e| fail(e));
                check_read(&what, &p, want);
            }
            "download_quant" => {
                let manifest = match cache.get_manifest(repo).unwrap_or_else(|e| fail(e)) {
                    Some(m) => m,
                    None => cache.scan_repo(repo, None).unwrap_or_else(|e| fail(e)),
                };
                let keys: Vec<&String> = manifest.quants.keys().collect();
                let key = keys[rng.below(keys.len() as u64) as usize];
                cache
                    .download_quant(repo, key, None, None)
                    .unwrap_or_else(|e| fail(e));
            }
            "delete_model" => match cache.delete_model(repo) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::RepoNotFound => {}
                Err(e) => fail(e),
            },
            "has_file" => {
                cache.has_file(repo, path, None).unwrap_or_else(|e| fail(e));
            }
            "get_file" => {
                if let Some(bytes) = cache.get_file(repo, path, None).unwrap_or_else(|e| fail(e)) {
                    assert_eq!(&sha256_hex(&bytes), want, "{what}: wrong bytes");
                }
            }
            "file_path" => {
                if let Some(p) = cache
                    .file_path(repo, path, None)
                    .unwrap_or_else(|e| fail(e))
                {
                    check_read(&what, &p, want);
                }
            }
            "gc" => {
                let stale = if rng.below(2) == 0 {
                    Duration::ZERO
                } else {
                    tabcache::maintenance::DEFAULT_STALE_PARTIAL_AGE
                };
                cache.gc(stale).unwrap_or_else(|e| fail(e));
            }
            "verify" => {
                let report = cache.verify(None, false).unwrap_or_else(|e| fail(e));
                assert!(report.ok, "{what}: damaged blobs: {:?}", report.damaged);
            }
            _ => unreachable!(),
        }
        // One write per line, so a kill cannot leave half a line.
        log.write_all(format!("{op}\n").as_bytes()).unwrap();
    }
    println!("MP storm-child-done");
}

struct StormChild {
    child: Child,
    stderr: PathBuf,
}

fn spawn_storm_child(fam: &Family, slot: usize, generation: u32, seed: u64) -> StormChild {
    let stderr = fam.marker(&format!("child-{slot}-{generation}.err"));
    let child = fam
        .command("storm", &seed.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    StormChild { child, stderr }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn a_storm_of_four_processes_with_random_kills_leaves_a_consistent_catalog() {
    if let Some(env) = ChildEnv::from_env() {
        return storm_child(&env);
    }
    let seed = seed_from_env("TABCACHE_MP_SEED");
    println!("storm: seed {seed} (replay with TABCACHE_MP_SEED={seed})");
    let mut rng = XorShift(seed);
    let hub = hub(storm_fill);
    // A 6 MiB file takes ~0.3 s over 4 connections: kills land mid-transfer often.
    hub.slow_cdn(5_000_000);
    let fam = Family::new(
        "a_storm_of_four_processes_with_random_kills_leaves_a_consistent_catalog",
        &hub,
    );
    let mut generation = 0;
    let mut children: Vec<StormChild> = (0..STORM_PROCESSES)
        .map(|slot| spawn_storm_child(&fam, slot, 0, rng.next() | 1))
        .collect();
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(STORM_SECONDS) {
        let kill_at = Instant::now() + Duration::from_millis(200 + rng.below(1800));
        while Instant::now() < kill_at {
            for c in children.iter_mut() {
                if let Some(status) = c.child.try_wait().unwrap() {
                    panic!(
                        "storm (seed {seed}): a child died by itself ({status}):\n{}",
                        tail(&c.stderr, 40)
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let slot = rng.below(STORM_PROCESSES as u64) as usize;
        children[slot].child.kill().unwrap();
        children[slot].child.wait().unwrap();
        kills += 1;
        generation += 1;
        children[slot] = spawn_storm_child(&fam, slot, generation, rng.next() | 1);
    }
    touch(&fam.marker("stop"));
    for mut c in children {
        let ended = Instant::now();
        let status = loop {
            if let Some(status) = c.child.try_wait().unwrap() {
                break status;
            }
            if ended.elapsed() > PATIENCE {
                c.child.kill().unwrap();
                panic!(
                    "storm (seed {seed}): a child did not stop:\n{}",
                    tail(&c.stderr, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            status.success(),
            "storm (seed {seed}): a child failed ({status}):\n{}",
            tail(&c.stderr, 40)
        );
    }
    let mut done: BTreeMap<String, u64> = OPS.iter().map(|op| (op.to_string(), 0)).collect();
    for line in std::fs::read_to_string(fam.marker("ops.log"))
        .unwrap()
        .lines()
    {
        *done.entry(line.to_string()).or_default() += 1;
    }
    let checks = check_storm_catalog(fam.cache.path());
    let tally: Vec<String> = done.iter().map(|(op, n)| format!("{op} {n}")).collect();
    println!(
        "storm: {} s, {STORM_PROCESSES} processes, {kills} kills; operations: {}; \
         consistency: {} file records, {} blobs hashed, {} view links, {} refcounts checked \
         ({} view links without a record)",
        started.elapsed().as_secs(),
        tally.join(", "),
        checks.files.len(),
        checks.blobs,
        checks.links,
        checks.refcounts,
        checks.stray_links
    );
    for (op, n) in &done {
        assert!(*n > 0, "storm (seed {seed}): no {op} completed");
    }
    // The files still download and serve right after the storm.
    hub.emu.clear_faults();
    let cache = open(fam.cache.path(), &hub);
    let p = cache
        .download_file(STORM_B, "onnx/model.onnx", None, None)
        .unwrap();
    assert_eq!(
        std::fs::read(p).unwrap(),
        pseudo_random_bytes(6 << 20, 52),
        "storm (seed {seed})"
    );
}

/// The store's invariants after a storm (see [`common::check_catalog`]), plus the storm's own:
/// every file record holds the content the hub has at that path, and at most one partial
/// download per distinct content is left in `tmp/`.
fn check_storm_catalog(cache: &Path) -> CatalogCheck {
    let checked = check_catalog(cache);
    let expected = storm_expected();
    for f in &checked.files {
        assert_eq!(
            expected.get(&(f.repo.as_str(), f.path.as_str())),
            Some(&f.sha256),
            "{}: recorded with the wrong content",
            f.what()
        );
    }
    let parts = tmp_files(cache)
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .count();
    assert!(parts <= expected.len(), "tmp/ grows: {parts} .part files");
    checked
}
