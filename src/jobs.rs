//! Background jobs: a scan or download started on a worker thread that the caller polls,
//! waits for with a timeout, or cancels. This is the asynchronous API of the C ABI (`tc_job`),
//! and the one that Python's asyncio variants build on: the blocking [`ModelCache`] call runs
//! unchanged on the worker, its progress callback feeds atomic counters and reads the cancel
//! flag. Since blocking calls reach their callback at least every
//! [`HEARTBEAT`](crate::progress::HEARTBEAT) whatever they are doing, a cancelled job finishes
//! within a heartbeat and a poll, and dropping one never waits longer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cache::{ModelCache, DEFAULT_REVISION};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::validate;

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutput {
    /// A variant download: the snapshot-view paths of its files.
    Files(Vec<PathBuf>),
    /// A file download: the file's snapshot-view path.
    File(PathBuf),
    /// A scan: the repo's manifest.
    Manifest(Box<Manifest>),
}

/// A finished job's outcome.
pub type JobResult = Result<JobOutput>;

/// A download running on its own thread. Dropping the job cancels it and waits for its thread,
/// so no worker outlives its handle.
pub struct Job {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Shared {
    loaded: AtomicU64,
    total: AtomicU64,
    cancel: AtomicBool,
    outcome: Mutex<Option<JobResult>>,
    finished: Condvar,
}

impl Job {
    fn spawn(
        name: String,
        work: impl FnOnce(&mut dyn FnMut(u64, u64) -> bool) -> JobResult + Send + 'static,
    ) -> Result<Job> {
        let shared = Arc::new(Shared::default());
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let s = &worker_shared;
                let mut progress = |loaded: u64, total: u64| {
                    s.total.store(total, Ordering::Relaxed);
                    s.loaded.store(loaded, Ordering::Relaxed);
                    !s.cancel.load(Ordering::Relaxed)
                };
                // A panic in the download must still finish the job, or waiters would hang.
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut progress)))
                        .unwrap_or_else(|_| {
                            Err(Error::internal(
                                "a download job panicked; please report this bug",
                            ))
                        });
                let mut slot = s.outcome.lock().unwrap_or_else(|p| p.into_inner());
                *slot = Some(outcome);
                s.finished.notify_all();
            })
            .map_err(|e| Error::internal(format!("could not start a download thread: {e}")))?;
        Ok(Job {
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// `(loaded, total)` bytes as last reported; `(0, 0)` until the first report.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.shared.loaded.load(Ordering::Relaxed),
            self.shared.total.load(Ordering::Relaxed),
        )
    }

    /// Ask the job to stop; it finishes soon after with [`crate::ErrorKind::Cancelled`]
    /// (unless it had already finished). Partial data is kept for a later resume.
    pub fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::Relaxed);
    }

    /// The outcome once finished, without waiting.
    pub fn outcome(&self) -> Option<JobResult> {
        self.shared
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wait until the job finishes or `timeout` passes (`None` = no limit). Returns the
    /// outcome, or `None` when the job is still running.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<JobResult> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut slot = self
            .shared
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(outcome) = slot.as_ref() {
                return Some(outcome.clone());
            }
            slot = match deadline {
                None => self
                    .shared
                    .finished
                    .wait(slot)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.shared
                        .finished
                        .wait_timeout(slot, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.cancel();
        let worker = self
            .worker
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(worker) = worker {
            // The worker catches its own panics, so joining cannot fail in a way worth reporting.
            let _ = worker.join();
        }
    }
}

impl ModelCache {
    /// Start [`ModelCache::download_quant`] on a worker thread. Arguments are checked here, so
    /// a malformed repo id fails at once rather than in the job.
    pub fn start_download_quant(
        &self,
        repo_id: &str,
        quant: &str,
        revision: Option<&str>,
    ) -> Result<Job> {
        validate::repo_id(repo_id)?;
        validate::revision(revision.unwrap_or(DEFAULT_REVISION))?;
        if quant.is_empty() {
            return Err(Error::invalid(
                "the variant name is empty; pass one of the keys of the manifest's quants",
            ));
        }
        let (cache, repo, quant_key, revision) = (
            self.clone(),
            repo_id.to_string(),
            quant.to_string(),
            revision.map(str::to_string),
        );
        Job::spawn(format!("tabcache-job-{quant}"), move |progress| {
            cache
                .download_quant(&repo, &quant_key, revision.as_deref(), Some(progress))
                .map(JobOutput::Files)
        })
    }

    /// Start [`ModelCache::download_file`] on a worker thread; the job's result is the file's
    /// snapshot-view path.
    pub fn start_download_file(
        &self,
        repo_id: &str,
        path: &str,
        revision: Option<&str>,
    ) -> Result<Job> {
        validate::repo_id(repo_id)?;
        validate::repo_path(path)?;
        validate::revision(revision.unwrap_or(DEFAULT_REVISION))?;
        let (cache, repo, file, revision) = (
            self.clone(),
            repo_id.to_string(),
            path.to_string(),
            revision.map(str::to_string),
        );
        Job::spawn("tabcache-job-file".to_string(), move |progress| {
            cache
                .download_file(&repo, &file, revision.as_deref(), Some(progress))
                .map(JobOutput::File)
        })
    }

    /// Start [`ModelCache::scan_repo`] on a worker thread; its progress counts the files
    /// listed, and the job's result is the manifest.
    pub fn start_scan_repo(&self, repo_id: &str, revision: Option<&str>) -> Result<Job> {
        validate::repo_id(repo_id)?;
        validate::revision(revision.unwrap_or(DEFAULT_REVISION))?;
        let (cache, repo, revision) = (
            self.clone(),
            repo_id.to_string(),
            revision.map(str::to_string),
        );
        Job::spawn("tabcache-job-scan".to_string(), move |progress| {
            cache
                .scan_repo_with_progress(&repo, revision.as_deref(), Some(progress))
                .map(|manifest| JobOutput::Manifest(Box::new(manifest)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn wait_times_out_while_running_and_returns_the_outcome_after() {
        let gate = Arc::new(AtomicBool::new(false));
        let g = gate.clone();
        let job = Job::spawn("test".into(), move |progress| {
            progress(1, 2);
            while !g.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(JobOutput::Files(Vec::new()))
        })
        .unwrap();
        assert!(job.wait(Some(Duration::from_millis(20))).is_none());
        assert_eq!(job.progress(), (1, 2));
        gate.store(true, Ordering::Relaxed);
        assert_eq!(job.wait(None), Some(Ok(JobOutput::Files(Vec::new()))));
        assert_eq!(job.outcome(), Some(Ok(JobOutput::Files(Vec::new()))));
    }

    #[test]
    fn cancel_reaches_the_progress_callback() {
        let job = Job::spawn("test".into(), |progress| loop {
            if !progress(0, 10) {
                return Err(Error::cancelled());
            }
            std::thread::sleep(Duration::from_millis(1));
        })
        .unwrap();
        job.cancel();
        let outcome = job
            .wait(Some(Duration::from_secs(10)))
            .expect("job finished");
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Cancelled);
    }

    #[test]
    fn a_panicking_job_finishes_as_internal() {
        let job = Job::spawn("test".into(), |_| panic!("boom")).unwrap();
        let outcome = job.wait(None).unwrap();
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Internal);
    }

    #[test]
    fn dropping_a_running_job_cancels_and_joins() {
        let stopped = Arc::new(AtomicBool::new(false));
        let s = stopped.clone();
        let job = Job::spawn("test".into(), move |progress| {
            while progress(0, 1) {
                std::thread::sleep(Duration::from_millis(1));
            }
            s.store(true, Ordering::Relaxed);
            Err(Error::cancelled())
        })
        .unwrap();
        drop(job);
        assert!(stopped.load(Ordering::Relaxed));
    }
}
