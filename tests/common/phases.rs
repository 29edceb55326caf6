//! The phases a blocking call can be cancelled in, for the cancellation tests of every cancel
//! source (`tests/cancel.rs` through the C ABI, `tests/cli_interrupt.rs` for Ctrl-C): a
//! [`Stage`] is a hub emulator and an empty cache arranged so that the phase's [`Call`] gets
//! stuck in that phase, a way to know it got there, and the check afterwards that the next call
//! succeeds (resuming what the cancelled one made durable).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use hub_emulator::{write_file, write_pseudo_random_file, Fault, FaultKind};
use tabcache::{CacheOptions, ModelCache};

use super::{hub, options, tabcache_command, Hub};

pub const REPO: &str = "org/cancel";
pub const BIG: &str = "big.bin";
const BIG_SIZE: u64 = 8 << 20;
pub const UNKNOWN: &str = "unknown.bin";
const UNKNOWN_SIZE: u64 = 2 << 20;
pub const QUANT: &str = "Q4_K_M";
const SHARDS: [&str; 3] = [
    "model-Q4_K_M-00001-of-00003.gguf",
    "model-Q4_K_M-00002-of-00003.gguf",
    "model-Q4_K_M-00003-of-00003.gguf",
];
const SHARD_SIZE: u64 = 5 << 20;
/// Small files, so that a listing two entries a page takes several pages.
const NOTES: usize = 10;
/// Faults that stall are longer than any test, and woken by the emulator's shutdown.
const FOREVER: f64 = 60.0;

/// What a phase's call does.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    Scan,
    File(&'static str),
    Quant(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `GET /api/models/...` that the server accepts and never answers.
    ModelInfo,
    /// The tree listing: two pages arrive, the third never does.
    TreePages,
    /// The resolve `HEAD` of a file, never answered.
    Resolve,
    /// The resolve answered 429 with `Retry-After: 30`: the client waits.
    RetryWait,
    /// The file's body: some bytes, then nothing (the connection stays open).
    StalledBody,
    /// The file's `GET` accepted and never answered.
    SilentServer,
    /// A file no response gives a size for (chunked, no `X-Linked-Size`), arriving slowly.
    UnknownSize,
    /// A variant of three files fetched one at a time, slowly: two still queued.
    QueuedFiles,
    /// Another process (the CLI) is fetching the same content; the call waits for it.
    OtherProcess,
}

/// One `#[test] fn <phase>() { $check(Phase::<Phase>) }` per phase, so that every cancel
/// source is tested in every phase and a new phase cannot be left out of one of them.
#[allow(unused_macros)] // only the cancellation test binaries use it
macro_rules! phase_tests {
    ($check:path) => {
        $crate::common::phases::phase_tests!(@each $check;
            model_info: ModelInfo,
            tree_pages: TreePages,
            resolve: Resolve,
            retry_wait: RetryWait,
            stalled_body: StalledBody,
            silent_server: SilentServer,
            unknown_size: UnknownSize,
            queued_files: QueuedFiles,
            other_process: OtherProcess,
        );
    };
    (@each $check:path; $($name:ident: $phase:ident,)*) => {
        $(
            #[test]
            fn $name() {
                $check($crate::common::phases::Phase::$phase)
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use phase_tests;

impl Phase {
    pub fn call(self) -> Call {
        match self {
            Phase::ModelInfo | Phase::TreePages => Call::Scan,
            Phase::UnknownSize => Call::File(UNKNOWN),
            Phase::QueuedFiles => Call::Quant(QUANT),
            _ => Call::File(BIG),
        }
    }

    /// The bytes of the files the call fetches.
    fn call_bytes(self) -> u64 {
        match self.call() {
            Call::Scan => 0,
            Call::File(UNKNOWN) => UNKNOWN_SIZE,
            Call::File(_) => BIG_SIZE,
            Call::Quant(_) => SHARD_SIZE * SHARDS.len() as u64,
        }
    }

    fn fill(self, root: &Path) {
        write_file(root, REPO, "config.json", b"{}").unwrap();
        for i in 0..NOTES {
            write_file(root, REPO, &format!("notes/n{i}.txt"), b"note").unwrap();
        }
        match self.call() {
            Call::Scan => {}
            Call::File(UNKNOWN) => {
                write_pseudo_random_file(root, REPO, UNKNOWN, UNKNOWN_SIZE, 7).unwrap();
            }
            Call::File(_) => {
                write_pseudo_random_file(root, REPO, BIG, BIG_SIZE, 8).unwrap();
            }
            Call::Quant(_) => {
                for (i, shard) in SHARDS.iter().enumerate() {
                    write_pseudo_random_file(root, REPO, shard, SHARD_SIZE, 20 + i as u64).unwrap();
                }
            }
        }
    }

    fn arrange(self, hub: &Hub) {
        let emu = &hub.emu;
        let hang = || Fault::new(FaultKind::Hang { seconds: FOREVER });
        match self {
            Phase::ModelInfo => {
                emu.add_fault(hang().path(format!("/api/models/{REPO}/revision/")));
            }
            Phase::TreePages => {
                emu.set_page_size(2);
                emu.add_fault(hang().path("cursor=4"));
            }
            Phase::Resolve => {
                emu.add_fault(hang().path("/resolve/").method("HEAD"));
            }
            Phase::RetryWait => {
                emu.add_fault(Fault::rate_limited(30).path("/resolve/").method("HEAD"));
            }
            Phase::StalledBody => {
                emu.add_fault(
                    Fault::new(FaultKind::Stall {
                        bytes: 100_000,
                        seconds: FOREVER,
                    })
                    .path(BIG)
                    .method("GET"),
                );
            }
            Phase::SilentServer => {
                emu.add_fault(hang().path(BIG).method("GET"));
            }
            Phase::UnknownSize => {
                emu.add_fault(Fault::new(FaultKind::NoSize).path(UNKNOWN));
                emu.add_fault(
                    Fault::new(FaultKind::RateLimit {
                        bytes_per_sec: 256 << 10,
                    })
                    .path(UNKNOWN)
                    .method("GET"),
                );
            }
            Phase::QueuedFiles => {
                emu.add_fault(
                    Fault::new(FaultKind::RateLimit {
                        bytes_per_sec: 2 << 20,
                    })
                    .path(".gguf")
                    .method("GET"),
                );
            }
            Phase::OtherProcess => {
                emu.add_fault(
                    Fault::new(FaultKind::RateLimit {
                        bytes_per_sec: 4 << 20,
                    })
                    .path(BIG)
                    .method("GET"),
                );
            }
        }
    }

    /// Whether the call is now in this phase (as the emulator's log shows).
    fn reached(self, hub: &Hub) -> bool {
        let requests = hub.emu.requests();
        let count = |wanted: &dyn Fn(&hub_emulator::RequestRecord) -> bool| {
            requests.iter().filter(|r| wanted(r)).count()
        };
        let gets = |name: &str| count(&|r| r.method == "GET" && r.target.contains(name));
        match self {
            Phase::ModelInfo => count(&|r| r.target.contains("/revision/")) > 0,
            Phase::TreePages => count(&|r| r.target.contains("cursor=4")) > 0,
            Phase::Resolve => count(&|r| r.method == "HEAD") > 0,
            Phase::RetryWait => count(&|r| r.method == "HEAD" && r.status == 429) > 0,
            Phase::StalledBody | Phase::SilentServer => gets(BIG) > 0,
            Phase::UnknownSize => gets(UNKNOWN) > 0,
            Phase::QueuedFiles => gets(SHARDS[0]) > 0,
            // The other process's transfer is under way before the call starts.
            Phase::OtherProcess => true,
        }
    }

    /// How long after [`Phase::reached`] the call is well inside the phase: its request
    /// blocked, its wait begun, its bytes flowing; for a variant, the first ranges of its
    /// first file complete (1 MiB ranges at 2 MiB/s).
    fn settle(self) -> Duration {
        match self {
            Phase::QueuedFiles => Duration::from_millis(900),
            _ => Duration::from_millis(300),
        }
    }

    /// What the progress callback must have seen before the cancel.
    pub fn check_progress(self, pairs: &[(u64, u64)]) {
        match self {
            Phase::TreePages => assert!(
                pairs
                    .iter()
                    .any(|&(listed, total)| listed >= 2 && total == 0),
                "a scan reports the files of its first pages, with total 0: {pairs:?}"
            ),
            Phase::UnknownSize => assert!(
                pairs
                    .iter()
                    .any(|&(loaded, total)| loaded > 0 && total == 0),
                "a file of unknown size reports growing bytes with total 0: {pairs:?}"
            ),
            // The variant's scan (it was never scanned) counts files, but a download reports
            // bytes only: until the sizes are known it beats at (0, 0).
            Phase::QueuedFiles => assert!(
                !pairs.is_empty()
                    && pairs
                        .iter()
                        .all(|&(loaded, total)| total > 0 || loaded == 0),
                "a variant download reports bytes of a known total, or (0, 0): {pairs:?}"
            ),
            _ => assert!(!pairs.is_empty(), "{self:?}: no progress call at all"),
        }
    }

    /// Whether a cancel in this phase leaves ranges for the next call to resume from.
    fn leaves_durable_ranges(self) -> bool {
        matches!(self, Phase::QueuedFiles | Phase::OtherProcess)
    }
}

/// One phase set up: the hub, the (empty) cache directory, the options to open it with.
pub struct Stage {
    pub phase: Phase,
    pub hub: Hub,
    pub dir: tempfile::TempDir,
    pub options: CacheOptions,
    other: Option<Child>,
}

impl Stage {
    pub fn new(phase: Phase) -> Stage {
        let hub = hub(|root| phase.fill(root));
        let dir = tempfile::tempdir().unwrap();
        let mut options = options(&hub);
        // Nothing in a phase may end on its own while the test waits: only the cancel.
        options.hub.read_timeout = Some(Duration::from_secs(30));
        options.hub.max_retry_wait = Some(Duration::from_secs(60));
        options.transfer.stall_timeout = Duration::from_secs(30);
        options.parallel_files = 1;
        phase.arrange(&hub);
        let other = (phase == Phase::OtherProcess).then(|| {
            let child = tabcache_command(
                &hub,
                dir.path(),
                &["--quiet", "download", REPO, "--file", BIG],
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
            let started = Instant::now();
            while !hub
                .emu
                .requests()
                .iter()
                .any(|r| r.method == "GET" && r.target.contains(BIG))
            {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the other process never fetched"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            child
        });
        Stage {
            phase,
            hub,
            dir,
            options,
            other,
        }
    }

    /// Wait until the call is stuck in the phase; panics if `ended()` first.
    pub fn wait_until_reached_by(&self, mut ended: impl FnMut() -> bool) {
        let started = Instant::now();
        while !self.phase.reached(&self.hub) {
            assert!(
                !ended(),
                "{:?}: the call ended before reaching the phase",
                self.phase
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{:?}: the call never reached the phase",
                self.phase
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(self.phase.settle());
        assert!(
            !ended(),
            "{:?}: the call ended in the phase by itself",
            self.phase
        );
    }

    pub fn wait_until_reached<T>(&self, running: &std::thread::ScopedJoinHandle<'_, T>) {
        self.wait_until_reached_by(|| running.is_finished());
    }

    /// Lift the faults and make the call again: it must succeed, and after a phase that
    /// leaves durable ranges, fetch fewer bytes than the files hold.
    pub fn finish_and_check_resume(mut self) {
        let fetched = self.call_again();
        if self.phase.leaves_durable_ranges() {
            assert!(
                fetched < self.phase.call_bytes(),
                "{:?}: the next call fetched {fetched} bytes of {}: nothing was resumed",
                self.phase,
                self.phase.call_bytes()
            );
        }
    }

    /// Lift the faults (after the other process, if any, finished) and make the call again
    /// through the library; it must succeed. Returns the bytes the CDN sent for it.
    pub fn call_again(&mut self) -> u64 {
        if let Some(mut other) = self.other.take() {
            assert!(other.wait().unwrap().success(), "the other process failed");
        }
        self.hub.emu.clear_faults();
        self.hub.emu.set_page_size(hub_emulator::DEFAULT_PAGE_SIZE);
        self.hub.emu.clear_log();
        let cache = ModelCache::open(self.dir.path(), self.options.clone()).unwrap();
        let result = match self.phase.call() {
            Call::Scan => cache.scan_repo(REPO, None).map(|m| {
                assert_eq!(m.repo_id, REPO);
            }),
            Call::File(path) => cache.download_file(REPO, path, None, None).map(|_| ()),
            Call::Quant(quant) => cache.download_quant(REPO, quant, None, None).map(|_| ()),
        };
        result
            .unwrap_or_else(|e| panic!("{:?}: the call after the cancel failed: {e}", self.phase));
        self.hub.cdn_bytes()
    }

    /// The CLI command that makes the phase's call.
    pub fn cli_args(&self) -> Vec<&'static str> {
        match self.phase.call() {
            Call::Scan => vec!["scan", REPO],
            Call::File(path) => vec!["download", REPO, "--file", path],
            Call::Quant(quant) => vec!["download", REPO, quant],
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(mut other) = self.other.take() {
            let _ = other.kill();
            let _ = other.wait();
        }
    }
}
