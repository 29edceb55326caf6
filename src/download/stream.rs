//! The single-stream transfer: small files, files of unknown size, and the fallback for
//! servers that ignore `Range`. Bytes are hashed in memory as they arrive and written with one
//! reused buffer; a dropped connection resumes with `Range` from the last byte held when the
//! size is known and the server honours it, and restarts from byte 0 otherwise.

use std::fs::File;
use std::sync::atomic::Ordering;

use super::attempts::{sleep_unless_stopped, Attempts};
use super::body::{receive, Control};
use super::hasher::{git_blob_sha1_of_file, verify, ContentHasher};
use super::pwrite::write_all_at;
use super::{check_room, size_claim_refused, Expected, Fetched, Job, Transferred, MAX_FILE_SIZE};
use crate::error::{Error, ErrorKind, Result};

/// Run the stream into `file` (created at the job's path when `None`), starting with `first`
/// when a response is already open (the ranged transfer hands over a full body it received).
pub(crate) fn run(job: &Job, file: Option<File>, first: Option<Fetched>) -> Result<Transferred> {
    let file = match file {
        Some(file) => file,
        None => job.create_file()?,
    };
    file.set_len(0).map_err(|e| job.io_error("truncating", e))?;
    job.prefix.begin(&file);
    let abort = std::sync::atomic::AtomicBool::new(false);
    let control = Control {
        cancel: job.cancel,
        abort: &abort,
        stall_timeout: job.opts.stall_timeout,
    };
    let mut attempts = Attempts::new(job.opts.backoff_base, job.opts.max_attempts);
    let mut first = first;
    let mut held = 0u64;
    let mut hasher: Option<ContentHasher> = None;
    loop {
        if control.should_stop() {
            return Err(control.stopped());
        }
        let held_before = held;
        let result = attempt(job, &file, &control, &mut first, &mut held, &mut hasher);
        match result {
            Ok(()) => break,
            Err(err) if control.should_stop() => return Err(err),
            Err(err) => {
                let wait = attempts.after_failure(err, held > held_before)?;
                sleep_unless_stopped(wait, &control)?;
            }
        }
    }
    let hasher = hasher.ok_or_else(|| Error::internal("stream ended without hashing"))?;
    file.sync_data().map_err(|e| job.io_error("syncing", e))?;
    let digests = hasher.finish();
    let git_sha1 = match job.expected {
        Expected::GitSha1(_) if digests.git_sha1.is_none() => {
            Some(git_blob_sha1_of_file(&file, digests.len, job.at.path)?)
        }
        _ => None,
    };
    verify(job.expected, &digests, git_sha1)?;
    Ok(Transferred {
        sha256: digests.sha256,
        size: digests.len,
        bytes_fetched: job.fetched.load(Ordering::Relaxed),
    })
}

/// One request: continue from `held` if the server allows, else start over. Returns `Ok` when
/// the whole body is held.
///
/// One function on purpose: a request's life (open, check the response against what is held,
/// receive, hash, write) shares the hasher and the held count at every step; split, each piece
/// would need all of them back.
fn attempt(
    job: &Job,
    file: &File,
    control: &Control,
    first: &mut Option<Fetched>,
    held: &mut u64,
    hasher: &mut Option<ContentHasher>,
) -> Result<()> {
    // Without the size there is no end to name in a range, so a retry starts over.
    let range = match job.size {
        Some(size) if *held > 0 => Some((*held, size)),
        _ => None,
    };
    let fetched = match first.take() {
        Some(fetched) => fetched,
        None => job.source.fetch(range)?,
    };
    let offset = if range.is_some() && fetched.partial {
        *held
    } else {
        0
    };
    if offset == 0 && *held > 0 {
        // The server sent the whole body again: what we held is worth nothing now.
        *held = 0;
        *hasher = None;
        file.set_len(0).map_err(|e| job.io_error("truncating", e))?;
        job.prefix.begin(file);
    }
    if let Some(size) = job.size {
        if let Some(announced) = fetched.content_length {
            // Checked: a hostile Content-Length near 2^64 must not wrap into agreement.
            if offset.checked_add(announced) != Some(size) {
                return Err(size_claim_refused(
                    &job.source.server(),
                    format_args!(
                        "announced {announced} bytes (Content-Length) from byte {offset} of a file the listing gives as {size} bytes"
                    ),
                ));
            }
        }
        if let Some(claimed) = fetched.total.filter(|&t| t != size) {
            return Err(size_claim_refused(
                &job.source.server(),
                format_args!("claimed a file of {claimed} bytes, the listing gives {size}"),
            ));
        }
    } else if let Some(announced) = fetched.content_length.filter(|_| offset == 0) {
        // The only size there is: check it before writing a byte of it.
        check_room(announced, &job.at, &job.source.server())?;
    }
    let total = job.size.or(fetched.content_length.filter(|_| offset == 0));
    let hasher = hasher.get_or_insert_with(|| ContentHasher::new(job.expected, total));
    // With no size stated, no file is larger than MAX_FILE_SIZE either.
    let limit = Some(total.map_or(MAX_FILE_SIZE, |t| t.saturating_sub(offset)));
    let received = receive(fetched.body, limit, control, |chunk| {
        write_all_at(file, chunk, *held).map_err(|e| {
            let err = job.io_error("writing", e);
            if total.is_some() || err.kind() != ErrorKind::DiskFull {
                return err;
            }
            // The disk filled under a body of no stated size: maybe a large file, maybe a
            // server that never stops; the user should know which question to ask.
            Error::new(
                ErrorKind::DiskFull,
                format!(
                    "the disk filled after {} bytes of a file whose size the server at {} never stated; \
                     the partial file was deleted. If the file really is that large, free space and retry; \
                     if not, the server (or a proxy in between) is sending endless data",
                    *held,
                    job.source.server()
                ),
            )
        })?;
        hasher.update(chunk);
        *held += chunk.len() as u64;
        job.fetched.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        job.report_held(*held);
        job.prefix.grew_to(*held);
        Ok(())
    })?;
    if received.overflow {
        return Err(size_claim_refused(
            &job.source.server(),
            format_args!(
                "sent more than the {} bytes {}",
                total.unwrap_or(MAX_FILE_SIZE),
                match (job.size, total) {
                    (Some(_), _) => "the listing gives",
                    (None, Some(_)) => "it announced",
                    (None, None) => "any file may have",
                }
            ),
        ));
    }
    match total {
        // Truncation is a network fault (a proxy or the server dropped the connection): the
        // bytes held are good, so the next attempt continues from them.
        Some(total) if *held < total => Err(Error::new(
            ErrorKind::Network,
            format!("the connection ended after {} of {total} bytes", *held),
        )
        .transient(None)),
        _ => Ok(()),
    }
}
