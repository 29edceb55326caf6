//! `tc_job`: downloads running on worker threads (see `crate::jobs`).

use std::ffi::c_char;
use std::time::Duration;

use super::args::{optional_str, out_ptr, required_str};
use super::cache::{to_json, TcCache, CACHES};
use super::error::{call, call_void, Failure, TcStatus};
use super::handles::Registry;
use super::memory::give_string;
use crate::jobs::{Job, JobOutput, JobResult};

/// A scan or download running on a worker thread. Opaque: start one with
/// tc_cache_scan_repo_start, tc_cache_download_quant_start or tc_cache_download_file_start,
/// release it with tc_job_free. All tc_job_ functions may be called from any thread. A
/// cancelled job finishes within a second whatever it was doing (see tc_progress_fn's
/// heartbeat), so tc_job_wait after tc_job_cancel, and tc_job_free, never block longer.
pub struct TcJob {
    job: Job,
}

static JOBS: Registry<TcJob> = Registry::new("tc_job", 2);

/// Start tc_cache_download_quant on a worker thread and return at once.
///
/// - repo_id, quant, revision (NULL = the scanned revision, else "main"): borrowed for this
///   call only.
/// - out: on TC_STATUS_OK receives the job; the caller owns it and frees it with
///   tc_job_free (which cancels it if still running).
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (NULL or malformed argument, bad cache
/// handle); TC_STATUS_INTERNAL when no thread can be started. Download errors are the job's
/// outcome: see tc_job_wait.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_download_quant_start(
    cache: *mut TcCache,
    repo_id: *const c_char,
    quant: *const c_char,
    revision: *const c_char,
    out: *mut *mut TcJob,
) -> TcStatus {
    call("tc_cache_download_quant_start", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let quant = required_str(quant, "quant")?;
        let revision = optional_str(revision, "revision")?;
        out_ptr(out, "out")?;
        let job = handle.cache.start_download_quant(repo, quant, revision)?;
        *out = JOBS.insert(TcJob { job })?;
        Ok(TcStatus::Ok)
    })
}

/// Start tc_cache_scan_repo on a worker thread and return at once. tc_job_progress gives
/// (files listed so far, 0) while it runs; tc_job_manifest_json the manifest once it
/// succeeded.
///
/// - repo_id, revision (NULL = "main"): borrowed for this call only.
/// - out: on TC_STATUS_OK receives the job; the caller owns it and frees it with
///   tc_job_free (which cancels it if still running).
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (NULL or malformed argument, bad cache
/// handle); TC_STATUS_INTERNAL when no thread can be started. Scan errors are the job's
/// outcome: see tc_job_wait.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_scan_repo_start(
    cache: *mut TcCache,
    repo_id: *const c_char,
    revision: *const c_char,
    out: *mut *mut TcJob,
) -> TcStatus {
    call("tc_cache_scan_repo_start", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let revision = optional_str(revision, "revision")?;
        out_ptr(out, "out")?;
        let job = handle.cache.start_scan_repo(repo, revision)?;
        *out = JOBS.insert(TcJob { job })?;
        Ok(TcStatus::Ok)
    })
}

/// Start tc_cache_download_file on a worker thread and return at once. The file's path is
/// available from tc_job_file_path once the job succeeded.
///
/// Arguments, ownership and return values as tc_cache_download_quant_start.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_download_file_start(
    cache: *mut TcCache,
    repo_id: *const c_char,
    path: *const c_char,
    revision: *const c_char,
    out: *mut *mut TcJob,
) -> TcStatus {
    call("tc_cache_download_file_start", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let file = required_str(path, "path")?;
        let revision = optional_str(revision, "revision")?;
        out_ptr(out, "out")?;
        let job = handle.cache.start_download_file(repo, file, revision)?;
        *out = JOBS.insert(TcJob { job })?;
        Ok(TcStatus::Ok)
    })
}

/// The job's progress: bytes loaded so far and the total (both 0 until the first report).
///
/// - out_loaded, out_total: required; written on TC_STATUS_OK.
///
/// Returns TC_STATUS_OK or TC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn tc_job_progress(
    job: *const TcJob,
    out_loaded: *mut u64,
    out_total: *mut u64,
) -> TcStatus {
    call("tc_job_progress", || {
        let handle = JOBS.get(job)?;
        out_ptr(out_loaded, "out_loaded")?;
        out_ptr(out_total, "out_total")?;
        let (loaded, total) = handle.job.progress();
        *out_loaded = loaded;
        *out_total = total;
        Ok(TcStatus::Ok)
    })
}

/// Ask the job to stop. It finishes soon after with TC_STATUS_CANCELLED (or with its own
/// outcome if it had already finished); partial data is kept for a later resume. Does not
/// wait: follow with tc_job_wait.
///
/// Returns TC_STATUS_OK or TC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn tc_job_cancel(job: *const TcJob) -> TcStatus {
    call("tc_job_cancel", || {
        JOBS.get(job)?.job.cancel();
        Ok(TcStatus::Ok)
    })
}

/// Wait until the job finishes or timeout_ms milliseconds pass (a negative value waits
/// without limit; 0 only polls).
///
/// Returns TC_STATUS_PENDING when the job is still running; else the job's outcome:
/// TC_STATUS_OK, TC_STATUS_CANCELLED, or the error its download met (the statuses of
/// tc_cache_download_quant / tc_cache_download_file), with the message in
/// tc_last_error_message(). TC_STATUS_INVALID_ARGUMENT for a bad handle.
#[no_mangle]
pub unsafe extern "C" fn tc_job_wait(job: *const TcJob, timeout_ms: i64) -> TcStatus {
    call("tc_job_wait", || {
        let handle = JOBS.get(job)?;
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        outcome_status(handle.job.wait(timeout))
    })
}

/// The job's state without waiting: TC_STATUS_PENDING while it runs, else its outcome as
/// tc_job_wait returns it. TC_STATUS_INVALID_ARGUMENT for a bad handle.
#[no_mangle]
pub unsafe extern "C" fn tc_job_status(job: *const TcJob) -> TcStatus {
    call("tc_job_status", || {
        outcome_status(JOBS.get(job)?.job.outcome())
    })
}

/// The snapshot-view path of the file a finished tc_cache_download_file_start job fetched.
///
/// - out_path: on TC_STATUS_OK receives the path; the caller frees it with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_PENDING while the job runs; the job's error if it
/// failed; TC_STATUS_INVALID_ARGUMENT for a bad handle, NULL out_path, or a variant job
/// (which has no single path).
#[no_mangle]
pub unsafe extern "C" fn tc_job_file_path(
    job: *const TcJob,
    out_path: *mut *mut c_char,
) -> TcStatus {
    call("tc_job_file_path", || {
        let handle = JOBS.get(job)?;
        out_ptr(out_path, "out_path")?;
        match handle.job.outcome() {
            None => Ok(TcStatus::Pending),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(JobOutput::Files(_) | JobOutput::Manifest(_))) => Err(Failure::invalid(
                "this job is not a file download, so it has no single path; use tc_cache_file_path per file",
            )),
            Some(Ok(JobOutput::File(path))) => {
                let text = path.to_str().ok_or_else(|| Failure {
                    status: TcStatus::Io,
                    message: format!("the path {} is not valid UTF-8", path.display()),
                })?;
                *out_path = give_string(text)?;
                Ok(TcStatus::Ok)
            }
        }
    })
}

/// The manifest a finished tc_cache_scan_repo_start job produced, as JSON (the shape of
/// tc_cache_scan_repo's).
///
/// - out_json: on TC_STATUS_OK receives the manifest; the caller frees it with
///   tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_PENDING while the job runs; the job's error if it
/// failed; TC_STATUS_INVALID_ARGUMENT for a bad handle, NULL out_json, or a job that is not a
/// scan.
#[no_mangle]
pub unsafe extern "C" fn tc_job_manifest_json(
    job: *const TcJob,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_job_manifest_json", || {
        let handle = JOBS.get(job)?;
        out_ptr(out_json, "out_json")?;
        match handle.job.outcome() {
            None => Ok(TcStatus::Pending),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(JobOutput::Manifest(manifest))) => {
                *out_json = give_string(&to_json(&*manifest)?)?;
                Ok(TcStatus::Ok)
            }
            Some(Ok(_)) => Err(Failure::invalid(
                "this job is not a scan, so it has no manifest; start one with tc_cache_scan_repo_start",
            )),
        }
    })
}

/// Free a job. A job still running is cancelled first, and this call waits for its worker
/// thread to stop (within a second), so no job thread outlives the handle. NULL is ignored; a job already
/// freed, or a pointer that is not a tc_job, is detected and ignored (tc_last_error_message()
/// says so).
#[no_mangle]
pub unsafe extern "C" fn tc_job_free(job: *mut TcJob) {
    call_void("tc_job_free", || {
        if job.is_null() {
            return Ok(());
        }
        JOBS.remove(job).map(drop)
    })
}

fn outcome_status(outcome: Option<JobResult>) -> Result<TcStatus, Failure> {
    match outcome {
        None => Ok(TcStatus::Pending),
        Some(Ok(_)) => Ok(TcStatus::Ok),
        Some(Err(e)) => Err(e.into()),
    }
}
