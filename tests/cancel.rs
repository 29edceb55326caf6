//! Cancellation, every source in every phase: a call is driven into one phase of its work (a
//! model-info request, the pages of a tree listing, a resolve, a `Retry-After: 30` wait, a body
//! that stalls, a server that accepts and never answers, a file of unknown size, the queued
//! files of a variant, another process's transfer of the same content), then cancelled; control
//! must be back within a second, and the next call must succeed, resuming what was durable.
//!
//! The sources tested here go through the C ABI (the same `extern "C"` functions the shared
//! library exports): the progress callback's non-zero return, and `tc_job_cancel` on a job,
//! after which `tc_job_wait` must answer `TC_STATUS_CANCELLED` and `tc_job_free` must not
//! block. Python's KeyboardInterrupt and asyncio cancellation are tested in
//! `python/tests/test_cancel.py`, the CLI's Ctrl-C in `tests/cli_interrupt.rs`; all three
//! share the phases of `tests/common/phases.rs`.

mod common;

use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::phases::{Call, Phase, Stage};
use tabcache::ffi::*;

/// What the C callback of one call shares with the test.
#[derive(Default)]
struct Listener {
    cancel: AtomicBool,
    calls: Mutex<Vec<(u64, u64, Instant)>>,
}

unsafe extern "C" fn on_progress(user_data: *mut c_void, loaded: u64, total: u64) -> c_int {
    let listener = &*(user_data as *const Listener);
    listener
        .calls
        .lock()
        .unwrap()
        .push((loaded, total, Instant::now()));
    c_int::from(listener.cancel.load(Ordering::SeqCst))
}

/// As [`on_progress`], and cancels at the first call that shows work done (however fast the
/// machine hashes, the call is then still in the middle of it).
unsafe extern "C" fn cancel_once_under_way(
    user_data: *mut c_void,
    loaded: u64,
    total: u64,
) -> c_int {
    let listener = &*(user_data as *const Listener);
    if loaded > 0 {
        listener.cancel.store(true, Ordering::SeqCst);
    }
    on_progress(user_data, loaded, total)
}

/// A C handle on the stage's cache, with the stage's options.
struct CCache(*mut TcCache);

// The handle is a registry key; the C ABI allows any thread to use it.
unsafe impl Send for CCache {}
unsafe impl Sync for CCache {}

impl CCache {
    fn open(stage: &Stage) -> CCache {
        let mut options = std::mem::MaybeUninit::<TcOptions>::uninit();
        let mut options = unsafe {
            tc_options_init(options.as_mut_ptr());
            options.assume_init()
        };
        let endpoint = CString::new(stage.hub.emu.url()).unwrap();
        let token = CString::new("").unwrap();
        let t = &stage.options;
        options.endpoint = endpoint.as_ptr();
        options.token = token.as_ptr();
        options.offline = 0;
        // The library's own retry waits (up to 60 s) and stall timeout (30 s) stand.
        options.read_timeout_ms = t.hub.read_timeout.unwrap().as_millis() as u32;
        options.retry_base_delay_ms = 5;
        options.connections = t.transfer.connections as u32;
        options.range_size = t.transfer.range_size;
        options.parallel_threshold = t.transfer.parallel_threshold;
        options.parallel_files = t.parallel_files as u32;
        let dir = CString::new(stage.dir.path().to_str().unwrap()).unwrap();
        let mut cache = ptr::null_mut();
        let status = unsafe { tc_cache_open(dir.as_ptr(), &options, &mut cache) };
        assert_eq!(status, TcStatus::Ok, "{}", last_error());
        CCache(cache)
    }

    /// Make `call` with a progress callback; its status.
    fn blocking(&self, call: &Call, listener: &Listener) -> TcStatus {
        let data = listener as *const Listener as *mut c_void;
        let repo = CString::new(common::phases::REPO).unwrap();
        unsafe {
            match call {
                Call::Scan => {
                    let mut json = ptr::null_mut();
                    let status = tc_cache_scan_repo_with_progress(
                        self.0,
                        repo.as_ptr(),
                        ptr::null(),
                        Some(on_progress),
                        data,
                        &mut json,
                    );
                    tc_string_free(json);
                    status
                }
                Call::File(path) => {
                    let path = CString::new(*path).unwrap();
                    let mut out = ptr::null_mut();
                    let status = tc_cache_download_file(
                        self.0,
                        repo.as_ptr(),
                        path.as_ptr(),
                        ptr::null(),
                        Some(on_progress),
                        data,
                        &mut out,
                    );
                    tc_string_free(out);
                    status
                }
                Call::Quant(quant) => {
                    let quant = CString::new(*quant).unwrap();
                    tc_cache_download_quant(
                        self.0,
                        repo.as_ptr(),
                        quant.as_ptr(),
                        ptr::null(),
                        Some(on_progress),
                        data,
                    )
                }
            }
        }
    }

    /// Import the huggingface_hub cache at `dir` with a progress callback that cancels once
    /// hashing is under way; its status.
    fn import(&self, dir: &CStr, listener: &Listener) -> TcStatus {
        let mut json = ptr::null_mut();
        let data = listener as *const Listener as *mut c_void;
        unsafe {
            let status = tc_cache_import_hf_with_progress(
                self.0,
                dir.as_ptr(),
                Some(cancel_once_under_way),
                data,
                &mut json,
            );
            tc_string_free(json);
            status
        }
    }

    /// Start `call` as a job.
    fn start(&self, call: &Call) -> Job {
        let repo = CString::new(common::phases::REPO).unwrap();
        let mut job = ptr::null_mut();
        let status = unsafe {
            match call {
                Call::Scan => {
                    tc_cache_scan_repo_start(self.0, repo.as_ptr(), ptr::null(), &mut job)
                }
                Call::File(path) => {
                    let path = CString::new(*path).unwrap();
                    tc_cache_download_file_start(
                        self.0,
                        repo.as_ptr(),
                        path.as_ptr(),
                        ptr::null(),
                        &mut job,
                    )
                }
                Call::Quant(quant) => {
                    let quant = CString::new(*quant).unwrap();
                    tc_cache_download_quant_start(
                        self.0,
                        repo.as_ptr(),
                        quant.as_ptr(),
                        ptr::null(),
                        &mut job,
                    )
                }
            }
        };
        assert_eq!(status, TcStatus::Ok, "{}", last_error());
        Job(job)
    }
}

impl Drop for CCache {
    fn drop(&mut self) {
        unsafe { tc_cache_close(self.0) };
    }
}

struct Job(*mut TcJob);

fn last_error() -> String {
    unsafe { CStr::from_ptr(tc_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// Within this of the cancel, control must be back.
const LIMIT: Duration = Duration::from_secs(1);

fn cancel_by_callback(phase: Phase) {
    let stage = Stage::new(phase);
    let cache = CCache::open(&stage);
    let call = phase.call();
    let listener = Listener::default();
    let (status, cancelled_at, returned_at) = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            let status = cache.blocking(&call, &listener);
            (status, Instant::now())
        });
        stage.wait_until_reached(&running);
        let cancelled_at = Instant::now();
        listener.cancel.store(true, Ordering::SeqCst);
        let (status, returned_at) = running.join().unwrap();
        (status, cancelled_at, returned_at)
    });
    let took = returned_at - cancelled_at;
    assert_eq!(status, TcStatus::Cancelled, "{phase:?}: {}", last_error());
    assert!(took < LIMIT, "{phase:?}: back {took:?} after the cancel");
    let calls = listener.calls.lock().unwrap();
    // The heartbeat: no gap of more than 250 ms between calls while the call ran.
    let mut previous = calls.first().map(|c| c.2);
    for &(_, _, at) in calls.iter() {
        let gap = at - previous.unwrap();
        assert!(
            gap <= Duration::from_millis(250) + Duration::from_millis(60),
            "{phase:?}: {gap:?} without a progress call"
        );
        previous = Some(at);
    }
    let pairs: Vec<(u64, u64)> = calls.iter().map(|&(l, t, _)| (l, t)).collect();
    assert!(
        pairs.windows(2).all(|w| w[1].0 >= w[0].0),
        "{phase:?}: loaded went back: {pairs:?}"
    );
    phase.check_progress(&pairs);
    drop(calls);
    drop(cache);
    stage.finish_and_check_resume();
}

fn cancel_by_job(phase: Phase) {
    let stage = Stage::new(phase);
    let cache = CCache::open(&stage);
    let job = cache.start(&phase.call());
    stage.wait_until_reached_by(|| unsafe { tc_job_status(job.0) } != TcStatus::Pending);
    assert_eq!(
        unsafe { tc_job_status(job.0) },
        TcStatus::Pending,
        "{phase:?}: the job ended before the cancel: {}",
        last_error()
    );
    let cancelled_at = Instant::now();
    assert_eq!(unsafe { tc_job_cancel(job.0) }, TcStatus::Ok);
    let status = unsafe { tc_job_wait(job.0, LIMIT.as_millis() as i64) };
    let took = cancelled_at.elapsed();
    assert_eq!(status, TcStatus::Cancelled, "{phase:?}: {}", last_error());
    assert!(
        took < LIMIT,
        "{phase:?}: tc_job_wait answered {took:?} after the cancel"
    );
    let freeing = Instant::now();
    unsafe { tc_job_free(job.0) };
    let took = freeing.elapsed();
    assert!(took < LIMIT, "{phase:?}: tc_job_free took {took:?}");
    drop(cache);
    stage.finish_and_check_resume();
}

/// `tc_job_free` of a job still running (no cancel first) returns within a second too.
#[test]
fn freeing_a_running_job_never_blocks() {
    let stage = Stage::new(Phase::SilentServer);
    let cache = CCache::open(&stage);
    let job = cache.start(&Phase::SilentServer.call());
    stage.wait_until_reached_by(|| false);
    let freeing = Instant::now();
    unsafe { tc_job_free(job.0) };
    assert!(freeing.elapsed() < LIMIT, "{:?}", freeing.elapsed());
}

/// Each phase cancelled from the progress callback and by `tc_job_cancel`.
mod by_callback {
    crate::common::phases::phase_tests!(super::cancel_by_callback);
}
mod by_job_cancel {
    crate::common::phases::phase_tests!(super::cancel_by_job);
}

/// `import_hf_cache` (by the C callback) and `verify` stop within a second of a cancel in
/// the middle of hashing a large file; the next import (and verify) completes.
#[test]
fn import_and_verify_stop_mid_hash() {
    const SIZE: u64 = 256 << 20;
    let hf = tempfile::tempdir().unwrap();
    common::hf_cache_with_zeros(hf.path(), SIZE, true);
    let stage = Stage::new(Phase::ModelInfo);
    let cache = CCache::open(&stage);
    let listener = Listener::default();
    let dir = CString::new(hf.path().to_str().unwrap()).unwrap();
    let status = cache.import(&dir, &listener);
    let returned_at = Instant::now();
    assert_eq!(status, TcStatus::Cancelled, "{}", last_error());
    let cancelled_at = listener.calls.lock().unwrap().last().unwrap().2;
    assert!(
        returned_at - cancelled_at < LIMIT,
        "{:?}",
        returned_at - cancelled_at
    );
    let calls = listener.calls.lock().unwrap().clone();
    assert!(
        calls.iter().all(|c| c.1 == 0) && calls.iter().any(|c| c.0 < SIZE),
        "an import reports bytes hashed with total 0: {:?}",
        calls.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>()
    );
    drop(cache);

    let rust = tabcache::ModelCache::open(stage.dir.path(), stage.options.clone()).unwrap();
    assert!(!rust.has_file("org/zeros", "zeros.bin", None).unwrap());
    let report = rust.import_hf_cache(Some(hf.path())).unwrap();
    assert_eq!(report.files_imported, 1, "{report:?}");

    let mut seen = Vec::new();
    let mut cancelled_at = None;
    let mut stop_once_under_way = |loaded: u64, total: u64| {
        seen.push((loaded, total));
        if loaded > 0 {
            cancelled_at.get_or_insert_with(Instant::now);
        }
        loaded == 0
    };
    let err = rust
        .verify_with_progress(None, false, Some(&mut stop_once_under_way))
        .unwrap_err();
    let took = cancelled_at.unwrap().elapsed();
    assert_eq!(err.kind(), tabcache::ErrorKind::Cancelled, "{err}");
    assert!(took < LIMIT, "{took:?}");
    assert!(seen.iter().all(|&(_, total)| total == SIZE), "{seen:?}");
    assert!(rust.verify(None, false).unwrap().ok);
}
