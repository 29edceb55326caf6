//! Pull-through: what the cache does not hold is fetched from its upstream (the cache's own
//! endpoint and token) through the cache, and served while it arrives.
//!
//! A file goes the way any download goes: planned by `Engine::plan_file` (the scanned listing,
//! else one `HEAD` resolve upstream), then fetched by the content's flight, which every
//! requester of that content in this process joins (clients of this server and library
//! callers alike: one transfer however many ask), and committed as a download commits (blob,
//! catalog, view). This module only reads: each client's answer is fed by a task of its own
//! from the flight's file as its in-order prefix grows (`download::prefix`), a chunk at a time
//! on the blocking pool into a channel of two chunks, so a slow client waits alone and never
//! holds up the transfer or the others. The last [`HELD_BACK`] bytes wait for the flight to
//! land: its sha256 (or git blob id) verified, they follow; a mismatch or any other failure
//! ends the answer with an error, so the client's connection closes short of its
//! `Content-Length` and no client ever receives a complete wrong file.
//!
//! Choices:
//! - Interest: each answer is one requester of the flight. A client that leaves withdraws,
//!   and when the last one leaves the flight's own rule applies: it stops, its durable ranges
//!   kept, and the next request resumes from them. So the upstream's bandwidth and the disk
//!   are never spent on a file nobody waits for, and a client's retry loses at most a range
//!   per connection.
//! - Before its headers, an answer waits (at most [`FIRST_BYTES_WAIT`]) for the transfer's
//!   first bytes: a failure before any byte (the upstream refusing, a missing file) is then a
//!   proper HTTP error, not a cut connection.
//! - `HEAD`, `If-None-Match` and an unsatisfiable `Range` are answered from the plan alone,
//!   without a transfer, as the Hub answers them. A satisfiable `Range` joins the transfer
//!   of the whole file (which the cache keeps) and is sent as the prefix covers it; a range
//!   that ends before the held-back tail is sent as soon as its bytes are in place.
//! - A file whose size the upstream does not state (never the Hub) is fetched whole first,
//!   then served from the cache; so is content another process is fetching (only its blob is
//!   visible here).
//! - A transfer that starts its file over after this answer sent bytes of it ends the answer
//!   (its client retries): the bytes sent might not be the verified ones.
//!
//! Listings with pull-through are the upstream's (model info, then the recursive tree at its
//! commit); the only thing they write is the commit the revision names, as a resolve records
//! it. When the upstream cannot list (unreachable, refusing, or not knowing the repo), the
//! cache's own listing stands in if it has one.
//!
//! The upstream token stays in the hub client: it is sent only to the upstream's origin and
//! never appears in its errors, which are what clients see of an upstream failure.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::StatusCode;
use tokio::sync::{mpsc, watch};

use super::body::{read_chunk, Body, ChannelBody, CHUNK};
use super::lookup::{Entry, Snapshot};
use super::respond::{self, Answer};
use super::run_blocking;
use crate::download::WrittenPrefix;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::FilePlan;
use crate::flight::Ticket;
use crate::store::FileRecord;
use crate::ModelCache;

/// Bytes at the end of a file that are sent only once it verified: the last read's worth, so
/// an answer cut by a mismatch is plainly short. Verification comes moments after the last
/// byte (the hash follows the transfer), so holding them back costs no time.
const HELD_BACK: u64 = CHUNK;

/// The longest an answer waits for the transfer's first bytes before sending its headers:
/// short enough for clients' read timeouts (huggingface_hub's is 10 s), long enough for the
/// upstream to answer or refuse.
const FIRST_BYTES_WAIT: Duration = Duration::from_secs(5);

/// How many times one answer starts a flight again that another requester's cancel stopped
/// just as this one joined it (each start resumes from the durable ranges).
const MAX_REJOINS: u32 = 3;

/// Chunks buffered per answer between its feeder and hyper.
const CHANNEL_CHUNKS: usize = 2;

/// `GET`/`HEAD` of a file the cache does not hold: plan it upstream, then answer from the
/// plan (`HEAD`, `304`, `416`) or stream it through its flight.
pub(super) async fn resolve(
    cache: ModelCache,
    request: HeaderMap,
    head: bool,
    repo: String,
    revision: String,
    path: String,
) -> Answer {
    let planned = {
        let (cache, repo, revision, path) =
            (cache.clone(), repo.clone(), revision.clone(), path.clone());
        run_blocking(move || plan(&cache, &repo, &revision, &path)).await
    };
    let plan = match planned {
        Ok(Ok(Some(plan))) => plan,
        // Held already (another repo or revision had the bytes): now recorded, and cached.
        Ok(Ok(None)) => return cached(cache, request, head, repo, revision, path).await,
        Ok(Err(answer)) => return *answer,
        Err(answer) => return answer,
    };
    let Some(size) = plan.size else {
        let mut pull = Pull::start(cache.clone(), plan);
        return match pull.landed().await {
            Ok(()) => cached(cache, request, head, repo, revision, path).await,
            Err(e) => upstream_error(&e, &what(&repo, &revision, &path)),
        };
    };
    let entry = Entry {
        path: path.clone(),
        size,
        sha256: plan.sha256.clone(),
        git_oid: plan.git_oid.clone(),
    };
    let bytes = match respond::file_answer(&request, head, &plan.commit, &entry) {
        Ok(bytes) => bytes,
        Err(done) => return *done,
    };
    let mut pull = Pull::start(cache, plan);
    if let Err(e) = pull.first_bytes().await {
        return upstream_error(&e, &what(&repo, &revision, &path));
    }
    let (sender, chunks) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::spawn(pull.feed(sender, bytes.start, bytes.len, size));
    let len = bytes.len;
    bytes.with_body(Body::Channel(ChannelBody::new(chunks, len)))
}

/// The answer from the cache, once the file is there.
async fn cached(
    cache: ModelCache,
    request: HeaderMap,
    head: bool,
    repo: String,
    revision: String,
    path: String,
) -> Answer {
    run_blocking(move || {
        respond::cached_file(&cache, &request, head, &repo, &revision, &path)
            .unwrap_or_else(|miss| respond::not_found(miss, &repo, &revision, Some(&path)))
    })
    .await
    .unwrap_or_else(|answer| answer)
}

/// Where `path` comes from and what it must hash to; None when the store holds its content
/// already (then recorded for this path). Blocking: the catalog, maybe a resolve upstream.
fn plan(
    cache: &ModelCache,
    repo: &str,
    revision: &str,
    path: &str,
) -> std::result::Result<Option<FilePlan>, Box<Answer>> {
    let engine = cache.engine();
    let plan = engine
        .plan_file(cache.hub(), repo, revision, path)
        .map_err(|e| Box::new(upstream_error(&e, &what(repo, revision, path))))?;
    match engine.already_held(&plan) {
        Ok(Some(_)) => Ok(None),
        // The disk budget refuses, before a byte moves, what cannot fit (507).
        Ok(None) => match engine.admit(std::slice::from_ref(&plan)) {
            Ok(_) => Ok(Some(plan)),
            Err(e) => Err(Box::new(upstream_error(&e, &what(repo, revision, path)))),
        },
        Err(e) => Err(Box::new(respond::internal(&e))),
    }
}

fn what(repo: &str, revision: &str, path: &str) -> String {
    format!("{path} of {repo} at \"{revision}\"")
}

/// An upstream failure as the Hub's own answer (status and `X-Error-Code`), so a client raises
/// what it would have raised talking to the Hub; the message is the hub client's, which names
/// the upstream and never holds the token.
pub(super) fn upstream_error(e: &Error, what: &str) -> Answer {
    let (status, code) = match e.kind() {
        ErrorKind::RepoNotFound => (StatusCode::NOT_FOUND, Some("RepoNotFound")),
        ErrorKind::RevisionNotFound => (StatusCode::NOT_FOUND, Some("RevisionNotFound")),
        ErrorKind::EntryNotFound => (StatusCode::NOT_FOUND, Some("EntryNotFound")),
        ErrorKind::GatedRepo => (StatusCode::FORBIDDEN, Some("GatedRepo")),
        // The upstream refused the cache's token: not this client's credentials, which a 401
        // would blame.
        ErrorKind::Unauthorized => (StatusCode::FORBIDDEN, None),
        ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, None),
        ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, None),
        ErrorKind::DiskFull => (StatusCode::INSUFFICIENT_STORAGE, None),
        ErrorKind::Io | ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, None),
        ErrorKind::Cancelled => (StatusCode::SERVICE_UNAVAILABLE, None),
        ErrorKind::Network
        | ErrorKind::Http
        | ErrorKind::Corrupt
        | ErrorKind::Offline
        | ErrorKind::Locked => (StatusCode::BAD_GATEWAY, None),
    };
    respond::error(
        status,
        code,
        &format!(
            "{what} is not cached, and fetching it from the upstream failed: {}",
            e.message()
        ),
    )
}

/// The listing of `repo` at `revision` with pull-through: the upstream's (recording the
/// commit `revision` names), else (the upstream could not list it) the cache's, else the
/// upstream's error. Blocking: requests upstream.
pub(super) fn upstream_snapshot(
    cache: &ModelCache,
    repo: &str,
    revision: &str,
) -> std::result::Result<Snapshot, Box<Answer>> {
    let listed = (|| {
        let hub = cache.hub();
        let info = hub.model_info(repo, revision)?;
        // At the commit, so that every page describes the same one.
        let files = hub.list_files(repo, &info.sha)?;
        Ok::<_, Error>((info, files))
    })();
    let (info, files) = match listed {
        Ok(listed) => listed,
        Err(e) => {
            return respond::cached_snapshot(cache, repo, revision).map_err(|_| {
                Box::new(upstream_error(
                    &e,
                    &format!("the listing of {repo} at \"{revision}\""),
                ))
            })
        }
    };
    // As a resolve does: the cache then knows the commit the revision names (huggingface_hub
    // fetches a snapshot's files by that commit, and the cache finds them under the revision).
    if info.sha != revision {
        if let Err(e) = cache.store().set_ref(repo, revision, &info.sha) {
            return Err(Box::new(respond::internal(&e)));
        }
    }
    let mut files: Vec<Entry> = files.into_iter().map(Entry::listed).collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Snapshot {
        commit: info.sha,
        task: info.pipeline_tag,
        files,
    })
}

/// One answer's interest in the flight of its file.
struct Pull {
    cache: ModelCache,
    plan: FilePlan,
    /// None only while being replaced; withdrawn (without waiting) when the answer ends.
    ticket: Option<Ticket>,
    prefix: watch::Receiver<WrittenPrefix>,
    rejoins: u32,
    /// The landed content is recorded for this plan's path (the flight may have been started
    /// for another path with the same bytes).
    recorded: bool,
}

/// Where an answer reads its bytes.
enum Source {
    /// The transfer's file while it runs, in the generation the answer started with.
    Writing {
        generation: u64,
        file: Arc<std::fs::File>,
    },
    /// Verified bytes: the landed transfer's file, or the committed blob.
    Verified(Arc<std::fs::File>),
}

impl Pull {
    fn start(cache: ModelCache, plan: FilePlan) -> Pull {
        let ticket = cache.engine().start_flight(&plan);
        let prefix = ticket.prefix();
        Pull {
            cache,
            plan,
            ticket: Some(ticket),
            prefix,
            rejoins: 0,
            recorded: false,
        }
    }

    /// The transfer as it is now: its prefix, and its outcome once it landed. While nothing
    /// has been sent (`may_rejoin`), a flight that another requester's cancel stopped just as
    /// this one joined is started again.
    fn look(&mut self, may_rejoin: bool) -> (WrittenPrefix, Option<Result<FileRecord>>) {
        loop {
            let seen = self.prefix.borrow_and_update().clone();
            let outcome = match (&mut self.ticket, seen.ended) {
                (Some(ticket), true) => ticket.wait(Duration::ZERO),
                _ => None,
            };
            match outcome {
                Some(Err(e))
                    if e.kind() == ErrorKind::Cancelled
                        && may_rejoin
                        && self.rejoins < MAX_REJOINS =>
                {
                    self.rejoins += 1;
                    if let Some(old) = self.ticket.take() {
                        old.withdraw_now();
                    }
                    let ticket = self.cache.engine().start_flight(&self.plan);
                    self.prefix = ticket.prefix();
                    self.ticket = Some(ticket);
                }
                outcome => return (seen, outcome),
            }
        }
    }

    /// Record the landed content for this plan's path, once (as a download's scheduler does).
    async fn record(&mut self, rec: &FileRecord) -> io::Result<()> {
        if self.recorded {
            return Ok(());
        }
        self.recorded = true;
        let (cache, plan, rec) = (self.cache.clone(), self.plan.clone(), rec.clone());
        let recorded = tokio::task::spawn_blocking(move || {
            let recorded =
                cache
                    .store()
                    .reference_blob(&plan.repo, &plan.commit, &plan.path, &rec)?;
            // Cached like any download: the budget makes room after it, keeping this file. An
            // eviction that fails is the next download's to retry; this answer's bytes are
            // verified and go out regardless.
            let this = (plan.repo.clone(), plan.commit.clone(), plan.path.clone());
            let _ = cache.engine().enforce_budget(&[this].into());
            Ok::<_, crate::Error>(recorded)
        })
        .await;
        match recorded {
            // Deleted by another caller since it landed: this answer still has verified bytes
            // to send (an open file), the cache just does not keep them.
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(io::Error::other(e.message().to_string())),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// Wait until the transfer has landed (recorded for this path), or its failure.
    async fn landed(&mut self) -> Result<()> {
        loop {
            match self.look(true) {
                (_, Some(Ok(rec))) => {
                    return self
                        .record(&rec)
                        .await
                        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))
                }
                (_, Some(Err(e))) => return Err(e),
                (_, None) => {
                    if self.prefix.changed().await.is_err() {
                        return Err(flight_gone());
                    }
                }
            }
        }
    }

    /// Wait until the transfer has its first bytes in place or has landed (Ok), or has failed
    /// (Err), or [`FIRST_BYTES_WAIT`] passed (Ok: the answer goes out and waits in its body).
    async fn first_bytes(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + FIRST_BYTES_WAIT;
        loop {
            match self.look(true) {
                (_, Some(Ok(_))) => return Ok(()),
                (_, Some(Err(e))) => return Err(e),
                (seen, None) if seen.file.is_some() && seen.len > 0 => return Ok(()),
                (_, None) => {}
            }
            match tokio::time::timeout_at(deadline, self.prefix.changed()).await {
                Err(_) => return Ok(()),
                Ok(Err(_)) => return Err(flight_gone()),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Send bytes `start..start + len` of the file of `size` bytes to `sender`, as they are in
    /// place; an error ends the answer short. Ends when the client leaves (the receiver is
    /// dropped), withdrawing this interest.
    async fn feed(
        mut self,
        sender: mpsc::Sender<io::Result<Bytes>>,
        start: u64,
        len: u64,
        size: u64,
    ) {
        if let Err(e) = self.send(&sender, start, start + len, size).await {
            let _ = sender.send(Err(e)).await;
        }
    }

    /// The loop of [`Pull::feed`]: look at the transfer, send what may be sent, else wait for
    /// it to change (or the client to leave).
    async fn send(
        &mut self,
        sender: &mpsc::Sender<io::Result<Bytes>>,
        start: u64,
        end: u64,
        size: u64,
    ) -> io::Result<()> {
        let held_back_from = size.saturating_sub(HELD_BACK);
        let mut offset = start;
        let mut source: Option<Source> = None;
        while offset < end {
            // Until a byte is sent, the answer may take its bytes from whatever file the
            // transfer writes now; after, only from the one it started with.
            let nothing_sent = offset == start;
            if nothing_sent {
                // Perhaps of a flight since replaced (see `look`).
                source = None;
            }
            let (seen, outcome) = self.look(nothing_sent);
            let readable_end = match outcome {
                Some(Ok(rec)) => {
                    self.record(&rec).await?;
                    source = Some(match source.take() {
                        Some(Source::Verified(file)) => Source::Verified(file),
                        Some(Source::Writing { generation, file })
                            if generation == seen.generation =>
                        {
                            Source::Verified(file)
                        }
                        Some(Source::Writing { .. }) if !nothing_sent => return Err(restarted()),
                        // The landed file, or the blob when the bytes came from elsewhere
                        // (held already, another process's transfer).
                        _ => Source::Verified(match seen.file {
                            Some(file) => file,
                            None => self.open_blob(&rec).await?,
                        }),
                    });
                    end
                }
                Some(Err(e)) => return Err(io::Error::other(e.message().to_string())),
                None => {
                    if nothing_sent {
                        source = seen.file.map(|file| Source::Writing {
                            generation: seen.generation,
                            file,
                        });
                    } else if !matches!(&source, Some(Source::Writing { generation, .. }) if *generation == seen.generation)
                    {
                        return Err(restarted());
                    }
                    match source {
                        Some(_) => seen.len.min(held_back_from),
                        None => 0,
                    }
                }
            };
            let file = match &source {
                Some(Source::Writing { file, .. } | Source::Verified(file))
                    if readable_end > offset =>
                {
                    file.clone()
                }
                _ => {
                    tokio::select! {
                        changed = self.prefix.changed() => if changed.is_err() {
                            return Err(io::Error::other(flight_gone().message().to_string()));
                        },
                        () = sender.closed() => return Ok(()),
                    }
                    continue;
                }
            };
            let len = (readable_end.min(end) - offset).min(CHUNK);
            let chunk = tokio::task::spawn_blocking(move || read_chunk(&file, offset, len))
                .await
                .map_err(io::Error::other)??;
            offset += len;
            if sender.send(Ok(chunk)).await.is_err() {
                return Ok(()); // the client left
            }
        }
        Ok(())
    }

    async fn open_blob(&self, rec: &FileRecord) -> io::Result<Arc<std::fs::File>> {
        let (cache, sha256) = (self.cache.clone(), rec.sha256.clone());
        tokio::task::spawn_blocking(move || cache.store().open_blob(&sha256).map(Arc::new))
            .await
            .map_err(io::Error::other)?
    }
}

impl Drop for Pull {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            ticket.withdraw_now();
        }
    }
}

fn restarted() -> io::Error {
    io::Error::other(
        "the upstream transfer started the file over after this answer began; retry the request",
    )
}

fn flight_gone() -> Error {
    Error::internal("a transfer ended without an outcome")
}
