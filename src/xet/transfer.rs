//! The native transfer of one Xet-backed file into a temporary file: read token,
//! reconstruction, then the terms — each copied from a blob we already hold when the chunk
//! index knows its chunks (chunk-level dedup), else decoded from its xorb piece fetched over
//! one of several connections — written in place, and the file hash checked at the end.
//!
//! Verification. The reconstruction names no chunk hash, only xorb hashes; so each fetched
//! piece's chunks are hashed as they are decoded (on the worker that fetched them: every
//! core hashes), and a piece that is a whole xorb is checked against the xorb's hash at once
//! — a corrupt chunk there is found with that piece and the piece fetched again. Every other
//! piece (part of a xorb another file shares) is checked by the file hash over all chunk
//! hashes at the end; on a mismatch exactly the pieces not yet proven are fetched again,
//! once, and a second mismatch is a clear error with nothing committed. Local copies are
//! checked chunk by chunk against the hashes recorded when their blob was verified.
//!
//! Resume. Each term's prefix written in place is recorded durable (in the same resume record
//! as ranged downloads, see [`PartialState::xet`]) by the next sync of the file, which comes
//! every 1/64 of the file written by all connections together (one connection syncs while the
//! others write on; write-back of each piece is started as it goes, so a sync finds little
//! left to do). A killed transfer fetches only the rest of each term — its own ranged
//! reconstruction names exactly those chunks — and re-chunks the durable prefixes from disk for
//! the file hash (a term starts on a chunk boundary, and its prefixes end on one, so chunking
//! those bytes alone gives their chunks again). A cancel or a failure syncs and records what
//! was written before it returns.
//!
//! Tokens and URLs. The read token is refreshed a minute before it expires and whenever the
//! CAS refuses it; a presigned xorb URL that is refused (expired) is replaced from a fresh
//! reconstruction. Both are retried a bounded number of times in a row.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::reconstruction::{Fetch, Layout, Reconstruction};
use super::{Held, LocalChunks, XetHash};
use crate::dir::{file_meta, Dir};
use crate::download::pwrite::{preallocate, read_exact_at, start_writeback, write_all_at};
use crate::download::{
    sleep_unless, sleep_unless_stopped, Attempts, Control, PartialState, ResumeLog,
    TransferOptions, XetPartial,
};
use crate::error::{Error, ErrorKind, Result};
use crate::hub::{CasAnswer, HubClient, XetToken};
use xet_format::hash::{chunk_hash, file_hash_of_root, merkle_root, Chunker};
use xet_format::xorb::{self, FormatError, Header, HEADER_LEN};

/// A token is replaced this long before the CAS would refuse it.
const TOKEN_MARGIN_SECS: i64 = 60;
/// Refusals in a row (of a token or a presigned URL) before the transfer gives up.
const MAX_REFUSALS: u32 = 4;
/// The file is synced, and what every connection has written recorded durable, each time
/// this share of it has been written since the last sync (within [`SYNC_BOUNDS`]): a kill
/// costs about that much again (under 2 % of the file, where a piece can be a whole 64 MiB
/// xorb), and a 2 GiB file takes 64 syncs, not one per few MiB per connection (each sync of
/// a file being written waits for a journal commit: 2 MiB per connection cost a third more
/// time).
const SYNC_SHARE: u64 = 64;
const SYNC_BOUNDS: (u64, u64) = (4 << 20, 64 << 20);

/// A term's chunks are written this many bytes at a time, each batch then handed to the
/// kernel's write-back (so the next sync finds it on its way to the disk): every write takes
/// the file's inode lock, which eight connections writing 64 KiB chunks one by one spent more
/// time spinning on than copying.
const WRITE_BATCH: usize = 1 << 20;

/// Threads copying terms from local blobs. Writes to one file take its inode lock in turn, so
/// a copy is bound by one core's memory copy: two keep it busy (one writes while the other
/// reads and hashes), and more only spin on the lock (eight spent more time spinning than
/// copying, and made a revision 2 slower than its revision 1).
const LOCAL_COPIERS: usize = 2;

/// A term's chunks as written: index in the xorb, hash, length.
type TermChunks = Vec<(u32, XetHash, u32)>;

/// What one call knows of one term of the layout.
#[derive(Debug, Clone, Default)]
struct TermState {
    /// Its chunks, once all are written.
    chunks: Option<TermChunks>,
    /// The chunks of the prefix an earlier call made durable (from disk).
    head: TermChunks,
    /// Bytes from its start written in place (a whole number of chunks), not yet all synced.
    written: u64,
    /// Bytes from its start synced and recorded (at most `written`).
    durable: u64,
    /// Bumped by each reset, so that a sync which looked at the term before it does not
    /// record the old bytes durable.
    generation: u32,
    /// Its bytes are proven right (by their xorb's hash, or chunk by chunk).
    proven: bool,
}

impl TermState {
    /// Forget everything of the term: it is fetched again, whole.
    fn reset(&mut self) {
        *self = TermState {
            generation: self.generation.wrapping_add(1),
            ..TermState::default()
        };
    }
}

/// The file to fetch.
pub(crate) struct XetFile<'a> {
    pub repo: &'a str,
    pub commit: &'a str,
    pub hash: XetHash,
    pub size: u64,
}

/// A native transfer that ended with the verified file in place, synced.
#[derive(Debug)]
pub(crate) struct XetDone {
    /// Every chunk of the file, in order: what the chunk index records for it.
    pub chunks: Vec<Held>,
}

/// Why a native transfer did not end with the file.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The CAS cannot be used for this file (unreachable, no Xet access, an answer we do not
    /// support): fetch it over the bridge instead. Nothing of this attempt is kept.
    Fallback(String),
    /// The transfer failed (cancelled, corrupt, the disk): as a ranged download would.
    Failed(Error),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        Failure::Failed(err)
    }
}

/// The read token of one repo revision, fetched when first needed and refreshed.
struct Auth<'a> {
    hub: &'a HubClient,
    file: &'a XetFile<'a>,
    token: Mutex<Option<XetToken>>,
}

impl Auth<'_> {
    fn current(&self) -> Result<XetToken> {
        let mut token = lock(&self.token);
        let fresh = token
            .as_ref()
            .is_some_and(|t| t.exp - TOKEN_MARGIN_SECS > crate::manifest::unix_now());
        if !fresh {
            *token = Some(self.hub.xet_token(self.file.repo, self.file.commit)?);
        }
        Ok(token.clone().expect("just set"))
    }

    /// The CAS refused `token`: the next call gets a new one (unless another thread already
    /// did).
    fn refused(&self, token: &XetToken) {
        let mut current = lock(&self.token);
        if current.as_ref() == Some(token) {
            *current = None;
        }
    }
}

/// One piece of work for a connection.
#[derive(Debug, Clone)]
enum Unit {
    /// Fetch piece `fetch` of the layout and write the listed (whole) terms from it.
    Remote { fetch: usize, terms: Vec<usize> },
    /// Copy the term from a blob we hold.
    Local { term: usize },
    /// The rest of a term an earlier call left part-done: its own (ranged) reconstruction.
    Rest { term: usize },
}

/// Chunks `start..end` of a piece, to be written at `offset` of the file: a term, or the rest
/// of one. `base` is how far into term `term` it starts.
#[derive(Debug, Clone, Copy)]
struct Target {
    term: usize,
    base: u64,
    start: u32,
    end: u32,
    offset: u64,
    len: u64,
}

/// What one call shares between its connections.
struct Run<'a> {
    hub: &'a HubClient,
    file: &'a XetFile<'a>,
    opts: &'a TransferOptions,
    cancel: &'a AtomicBool,
    progress: &'a AtomicU64,
    resume: &'a dyn ResumeLog,
    local: &'a dyn LocalChunks,
    auth: Auth<'a>,
    layout: Layout,
    /// The presigned pieces as last handed out (replaced when one expires).
    fetches: Mutex<Vec<Fetch>>,
    out: &'a File,
    terms: Mutex<Vec<TermState>>,
    /// Bytes written since the last sync began, and how many call for the next one.
    unsynced: AtomicU64,
    sync_every: u64,
    /// Held by the connection syncing (the others go on writing); holds whether a sync
    /// failed (then nothing more may be recorded durable).
    sync_turn: Mutex<bool>,
    held: AtomicU64,
    /// The first failure ends every connection.
    failure: Mutex<Option<Failure>>,
    abort: AtomicBool,
}

/// Fetch `file` natively into `name` in the folder `dir` (the cache's `tmp/`), verified by
/// its Xet hash. `progress` rises to the bytes held; `cancel` stops every connection within
/// about 50 ms, keeping what is durable for a later call.
///
/// # Errors
/// [`Failure::Fallback`] when the CAS cannot serve this file (the caller uses the bridge);
/// [`Failure::Failed`] with [`ErrorKind::Cancelled`], [`ErrorKind::Corrupt`] (the bytes
/// failed the file hash twice; nothing is kept), or the error that ended the transfer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn transfer(
    hub: &HubClient,
    file: &XetFile,
    dir: &Dir,
    name: &str,
    opts: &TransferOptions,
    progress: &AtomicU64,
    cancel: &AtomicBool,
    resume: &dyn ResumeLog,
    local: &dyn LocalChunks,
) -> std::result::Result<XetDone, Failure> {
    let auth = Auth {
        hub,
        file,
        token: Mutex::new(None),
    };
    let layout = reconstruct(&auth, opts, cancel, None).map_err(|failure| match failure {
        Failure::Failed(e) if e.kind() != ErrorKind::Cancelled => {
            Failure::Fallback(e.message().to_string())
        }
        other => other,
    })?;
    let (out, durable) = open_or_resume(dir, name, file, &layout, resume)?;
    let terms = layout.terms.len();
    let run = Run {
        hub,
        file,
        opts,
        cancel,
        progress,
        resume,
        local,
        auth,
        fetches: Mutex::new(layout.fetches.clone()),
        layout,
        out: &out,
        terms: Mutex::new(
            durable
                .iter()
                .map(|&durable| TermState {
                    written: durable,
                    durable,
                    ..TermState::default()
                })
                .collect(),
        ),
        unsynced: AtomicU64::new(0),
        sync_every: (file.size / SYNC_SHARE).clamp(SYNC_BOUNDS.0, SYNC_BOUNDS.1),
        sync_turn: Mutex::new(false),
        held: AtomicU64::new(0),
        failure: Mutex::new(None),
        abort: AtomicBool::new(false),
    };
    // What an earlier call made durable: its chunks again, from disk (a prefix of a term
    // starts on the term's first chunk and ends on a chunk boundary).
    let mut todo = Vec::new();
    for (t, &done) in durable.iter().enumerate() {
        let head = if done > 0 {
            run.rechunk(t, done)?
        } else {
            Vec::new()
        };
        let written: u64 = head.iter().map(|&(_, _, len)| u64::from(len)).sum();
        let state = &mut lock(&run.terms)[t];
        if written != done {
            // Not chunk-aligned after all: fetch the whole term.
            state.reset();
            todo.push(t);
            continue;
        }
        run.add_held(done);
        if done == run.layout.terms[t].len {
            state.chunks = Some(head);
        } else {
            state.head = head;
            todo.push(t);
        }
    }
    run.run_units(run.units(&todo, true))?;
    if !run.file_hash_matches() {
        // Fetch again exactly the terms nothing has proven yet, whole, once.
        let unproven: Vec<usize> = {
            let mut states = lock(&run.terms);
            let unproven = (0..terms)
                .filter(|&t| !states[t].proven)
                .collect::<Vec<_>>();
            unproven.iter().for_each(|&t| states[t].reset());
            unproven
        };
        run.run_units(run.units(&unproven, false))?;
        if !run.file_hash_matches() {
            return Err(Failure::Failed(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the Xet storage at {} sent bytes of {} that do not hash to its Xet hash {}, twice; nothing was cached. \
                     The server (or a proxy in between) is at fault: retry later, and if it persists report it",
                    crate::hub::server_name(&run.auth.current().map(|t| t.cas_url).unwrap_or_default()),
                    file.repo,
                    file.hash
                ),
            )));
        }
    }
    out.sync_data()
        .map_err(|e| Error::io("syncing", &dir.join(name), e))?;
    let chunks = run.held_chunks();
    Ok(XetDone { chunks })
}

/// The reconstruction of the whole file, or of bytes `range` (start, end exclusive; a chunk
/// boundary to the end of a term), checked, with its terms placed at their file offsets.
fn reconstruct(
    auth: &Auth,
    opts: &TransferOptions,
    cancel: &AtomicBool,
    range: Option<(u64, u64)>,
) -> std::result::Result<Layout, Failure> {
    let give_up = |why: String| Failure::Failed(Error::new(ErrorKind::Http, why));
    let mut attempts = Attempts::new(opts.backoff_base, opts.max_attempts);
    let mut refusals = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Failure::Failed(Error::cancelled()));
        }
        let token = match auth.current() {
            Ok(token) => token,
            Err(e) if e.kind() == ErrorKind::Cancelled => return Err(e.into()),
            Err(e) => return Err(give_up(format!("no Xet access: {}", e.message()))),
        };
        let url = format!("{}/v1/reconstructions/{}", token.cas_url, auth.file.hash);
        let server = crate::hub::server_name(&url);
        match auth
            .hub
            .cas_json::<Reconstruction>(&url, &token, range, "Xet reconstruction")
        {
            Ok(CasAnswer::Document(answer)) => {
                let (start, len) = match range {
                    Some((start, end)) => (start, end - start),
                    None => (0, auth.file.size),
                };
                let mut layout = answer
                    .check(len)
                    .map_err(|why| give_up(format!("the Xet storage at {server} sent {why}")))?;
                layout.terms.iter_mut().for_each(|t| t.offset += start);
                return Ok(layout);
            }
            Ok(CasAnswer::TokenRefused) => {
                refusals += 1;
                if refusals >= MAX_REFUSALS {
                    return Err(give_up(format!(
                        "the Xet storage at {server} refused {refusals} fresh read tokens in a row"
                    )));
                }
                auth.refused(&token);
            }
            Err(e) => match attempts.after_failure(e, false) {
                Ok(wait) => sleep_unless(wait, || cancel.load(Ordering::Relaxed))?,
                Err(e) => return Err(give_up(e.message().to_string())),
            },
        }
    }
}

/// Open the file to resume when the resume record describes this file's terms and the file
/// has its length; otherwise record an empty state and start a preallocated file. Returns
/// the file and each term's durable prefix.
fn open_or_resume(
    dir: &Dir,
    name: &str,
    file: &XetFile,
    layout: &Layout,
    resume: &dyn ResumeLog,
) -> Result<(File, Vec<u64>)> {
    let path = dir.join(name);
    let hash = file.hash.to_string();
    let recorded = resume.load()?.and_then(|state| {
        let xet = state.xet.filter(|x| x.file_hash == hash)?;
        let fits = state.size == file.size
            && xet.prefixes.len() == layout.terms.len()
            && xet
                .prefixes
                .iter()
                .zip(&layout.terms)
                .all(|(&p, t)| p <= t.len);
        fits.then_some(xet.prefixes)
    });
    if let Some(prefixes) = recorded {
        if let Ok(out) = dir.open_rw(name, false) {
            if file_meta(&out).is_ok_and(|m| m.len == file.size && m.links == 1) {
                return Ok((out, prefixes));
            }
        }
    }
    let none = vec![0; layout.terms.len()];
    resume.save(&xet_state(file, &none))?;
    let out = dir
        .create_fresh(name)
        .map_err(|e| Error::io("creating", &path, e))?;
    preallocate(&out, file.size).map_err(|e| Error::io("preallocating", &path, e))?;
    dir.sync()
        .map_err(|e| Error::io("syncing the directory of", &path, e))?;
    Ok((out, none))
}

fn xet_state(file: &XetFile, prefixes: &[u64]) -> PartialState {
    PartialState {
        size: file.size,
        range_size: 0,
        done: Vec::new(),
        xet: Some(XetPartial {
            file_hash: file.hash.to_string(),
            prefixes: prefixes.to_vec(),
            durable: prefixes.iter().sum(),
        }),
    }
}

impl Run<'_> {
    /// The work for `terms`: the rest of a part-done term; a local copy where the index has
    /// the term's chunks (and `local` allows it); else one fetch per piece, shared by the
    /// terms it holds.
    fn units(&self, terms: &[usize], local: bool) -> Vec<Unit> {
        let mut units = Vec::new();
        let mut by_fetch: HashMap<usize, Vec<usize>> = HashMap::new();
        let states = lock(&self.terms);
        for &t in terms {
            let term = &self.layout.terms[t];
            if states[t].durable > 0 {
                units.push(Unit::Rest { term: t });
            } else if local && self.local.has(&term.xorb, term.start, term.end) {
                units.push(Unit::Local { term: t });
            } else {
                by_fetch.entry(term.fetch).or_default().push(t);
            }
        }
        let mut remote: Vec<Unit> = by_fetch
            .into_iter()
            .map(|(fetch, terms)| Unit::Remote { fetch, terms })
            .collect();
        // In file order: a kill then leaves whole terms from the start.
        remote.sort_by_key(|u| match u {
            Unit::Remote { terms, .. } => terms[0],
            Unit::Local { term } | Unit::Rest { term } => *term,
        });
        units.extend(remote);
        units
    }

    /// Run `units`, those from the network over the connections and local copies on
    /// [`LOCAL_COPIERS`] threads of their own; the first failure stops the rest.
    fn run_units(&self, units: Vec<Unit>) -> std::result::Result<(), Failure> {
        let (local, remote): (Vec<Unit>, Vec<Unit>) = units
            .into_iter()
            .partition(|u| matches!(u, Unit::Local { .. }));
        let queues = [
            (Mutex::new(remote.into_iter()), self.opts.connections.max(1)),
            (Mutex::new(local.into_iter()), LOCAL_COPIERS),
        ];
        std::thread::scope(|scope| {
            for (queue, workers) in &queues {
                for _ in 0..*workers {
                    scope.spawn(|| loop {
                        if self.abort.load(Ordering::Relaxed) {
                            return;
                        }
                        let Some(unit) = lock(queue).next() else {
                            return;
                        };
                        if let Err(failure) = self.run_unit(&unit) {
                            self.fail(failure);
                            return;
                        }
                    });
                }
            }
        });
        let ended = match lock(&self.failure).take() {
            Some(failure) => Err(failure),
            None if self.cancel.load(Ordering::Relaxed) => Err(Error::cancelled().into()),
            None => Ok(()),
        };
        if ended.is_err() {
            // Keep what was written for the next call. The failure is what the caller needs
            // to hear; a sync failing as well changes nothing it can do.
            let _ = self.sync_and_record(true);
        }
        ended
    }

    fn fail(&self, failure: Failure) {
        let mut first = lock(&self.failure);
        if first.is_none() {
            *first = Some(failure);
        }
        self.abort.store(true, Ordering::Relaxed);
    }

    fn control(&self) -> Control<'_> {
        Control {
            cancel: self.cancel,
            abort: &self.abort,
            stall_timeout: self.opts.stall_timeout,
        }
    }

    fn stopped(&self) -> bool {
        self.abort.load(Ordering::Relaxed) || self.cancel.load(Ordering::Relaxed)
    }

    fn run_unit(&self, unit: &Unit) -> std::result::Result<(), Failure> {
        match unit {
            Unit::Local { term } => {
                if self.copy_local(*term)? {
                    return Ok(());
                }
                // The blob went, or its bytes were not what the index says: fetch instead.
                let fetch = self.layout.terms[*term].fetch;
                self.fetch_terms(fetch, &[*term])
            }
            Unit::Remote { fetch, terms } => self.fetch_terms(*fetch, terms),
            Unit::Rest { term } => self.fetch_rest(*term),
        }
    }

    /// All of term `t`, as a target.
    fn whole_term(&self, t: usize) -> Target {
        let term = &self.layout.terms[t];
        Target {
            term: t,
            base: 0,
            start: term.start,
            end: term.end,
            offset: term.offset,
            len: term.len,
        }
    }

    /// Whole terms from piece `f` of the layout.
    fn fetch_terms(&self, f: usize, terms: &[usize]) -> std::result::Result<(), Failure> {
        let targets: Vec<Target> = terms.iter().map(|&t| self.whole_term(t)).collect();
        let (lists, proven) = self.fetch_piece(
            &|| lock(&self.fetches)[f].clone(),
            &|refused| self.refresh_urls(refused),
            &targets,
        )?;
        self.finish_terms(terms.iter().copied().zip(lists).collect(), proven);
        Ok(())
    }

    /// The rest of term `t` after its durable prefix: the ranged reconstruction of those
    /// bytes names exactly the chunks still needed. Should the CAS not answer it usably,
    /// the whole term is fetched instead.
    fn fetch_rest(&self, t: usize) -> std::result::Result<(), Failure> {
        let term = self.layout.terms[t].clone();
        let done = lock(&self.terms)[t].durable;
        let range = (term.offset + done, term.offset + term.len);
        let sub = match reconstruct(&self.auth, self.opts, self.cancel, Some(range)) {
            Ok(sub) => sub,
            Err(Failure::Failed(e)) if e.kind() != ErrorKind::Cancelled => {
                lock(&self.terms)[t].reset();
                return self.fetch_terms(term.fetch, &[t]);
            }
            Err(other) => return Err(other),
        };
        let sub_fetches = Mutex::new(sub.fetches.clone());
        let mut chunks = std::mem::take(&mut lock(&self.terms)[t].head);
        let mut base = done;
        for part in &sub.terms {
            let target = Target {
                term: t,
                base,
                start: part.start,
                end: part.end,
                offset: part.offset,
                len: part.len,
            };
            let refresh = |_refused: &Fetch| -> std::result::Result<(), Failure> {
                let fresh = reconstruct(&self.auth, self.opts, self.cancel, Some(range))?;
                replace_urls(&mut lock(&sub_fetches), &fresh);
                Ok(())
            };
            let (mut lists, _) = self.fetch_piece(
                &|| lock(&sub_fetches)[part.fetch].clone(),
                &refresh,
                &[target],
            )?;
            chunks.append(&mut lists[0]);
            base += part.len;
        }
        // Part of a xorb: proven by the file hash only.
        self.finish_terms(vec![(t, chunks)], false);
        Ok(())
    }

    /// Copy term `t` from a blob the index says holds its chunks, checking each chunk's
    /// hash. False when it cannot (then nothing of the term is recorded).
    fn copy_local(&self, t: usize) -> Result<bool> {
        let term = &self.layout.terms[t];
        let Some(run) = self.local.find(&term.xorb, term.start, term.end) else {
            return Ok(false);
        };
        let target = self.whole_term(t);
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        let mut cursor = 0u64;
        let mut chunks = Vec::with_capacity(run.chunks.len());
        for (i, &(offset, len, hash)) in run.chunks.iter().enumerate() {
            if self.stopped() {
                return Err(Error::cancelled());
            }
            if cursor + u64::from(len) > term.len {
                return Ok(false);
            }
            let from = batch.len();
            batch.resize(from + len as usize, 0);
            let chunk = &mut batch[from..];
            if read_exact_at(&run.file, chunk, offset).is_err() || chunk_hash(chunk) != hash {
                return Ok(false);
            }
            cursor += u64::from(len);
            chunks.push((term.start + i as u32, hash, len));
            if batch.len() >= WRITE_BATCH {
                self.write_batch(&target, &mut batch, cursor)?;
            }
        }
        if cursor != term.len {
            return Ok(false);
        }
        self.write_batch(&target, &mut batch, cursor)?;
        self.finish_terms(vec![(t, chunks)], true);
        Ok(true)
    }

    /// Fetch a piece (`current` gives its latest URL; `refresh` replaces a refused one) and
    /// write `targets` from it: retried on transient failures, a piece whose decoding fails
    /// fetched again. Returns each target's chunks and whether the piece was a whole xorb
    /// that hashed to its name.
    fn fetch_piece(
        &self,
        current: &dyn Fn() -> Fetch,
        refresh: &dyn Fn(&Fetch) -> std::result::Result<(), Failure>,
        targets: &[Target],
    ) -> std::result::Result<(Vec<TermChunks>, bool), Failure> {
        let mut attempts = Attempts::new(self.opts.backoff_base, self.opts.max_attempts);
        let mut refusals = 0;
        loop {
            if self.stopped() {
                return Err(Error::cancelled().into());
            }
            let fetch = current();
            let err = match self.fetch_once(&fetch, targets) {
                Ok(done) => return Ok(done),
                Err(Failure::Fallback(why)) => return Err(Failure::Fallback(why)),
                Err(Failure::Failed(err)) => err,
            };
            if self.stopped() {
                return Err(Error::cancelled().into());
            }
            if err.kind() == ErrorKind::Unauthorized {
                refusals += 1;
                if refusals >= MAX_REFUSALS {
                    return Err(err.into());
                }
                refresh(&fetch)?;
                continue;
            }
            match attempts.after_failure(err, false) {
                Ok(wait) => sleep_unless_stopped(wait, &self.control())?,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Presigned URLs expire: get the reconstruction again and take its URLs, unless another
    /// connection already replaced the one that was refused.
    fn refresh_urls(&self, refused: &Fetch) -> std::result::Result<(), Failure> {
        let still_current = lock(&self.fetches).iter().any(|f| f.url == refused.url);
        if !still_current {
            return Ok(());
        }
        let fresh = reconstruct(&self.auth, self.opts, self.cancel, None)?;
        replace_urls(&mut lock(&self.fetches), &fresh);
        Ok(())
    }

    /// One GET of a piece: decode its chunk records in order, write each chunk where the
    /// targets want it (syncing and recording progress every few MiB, so a kill loses
    /// little), then check lengths and (for a whole xorb) the xorb hash.
    fn fetch_once(
        &self,
        fetch: &Fetch,
        targets: &[Target],
    ) -> std::result::Result<(Vec<TermChunks>, bool), Failure> {
        let source = self.hub.file_source(&fetch.url);
        let (start, end) = fetch.byte_range();
        use crate::download::RangeSource;
        let fetched = source.fetch(Some((start, end)))?;
        if !fetched.partial && fetched.content_length != Some(end - start) {
            return Err(Failure::Fallback(format!(
                "the Xet storage at {} ignored the byte range of a xorb piece",
                source.server()
            )));
        }
        let mut body = Limited {
            inner: fetched.body,
            left: end - start,
        };
        let mut cursors: Vec<u64> = vec![0; targets.len()];
        let mut lists: Vec<TermChunks> = vec![Vec::new(); targets.len()];
        let mut leaves = Vec::with_capacity((fetch.end - fetch.start) as usize);
        let (mut record, mut chunk) = (Vec::new(), Vec::new());
        // Per target: decoded bytes not yet written (they end at its cursor).
        let mut batches: Vec<Vec<u8>> = vec![Vec::new(); targets.len()];
        for index in fetch.start..fetch.end {
            if self.stopped() {
                return Err(Error::cancelled().into());
            }
            chunk.clear();
            read_record(&mut body, &mut record, &mut chunk)
                .map_err(|e| self.bad_piece(fetch, e))?;
            let hash = chunk_hash(&chunk);
            let len = chunk.len() as u32;
            leaves.push((hash, u64::from(len)));
            for (k, target) in targets.iter().enumerate() {
                if !(target.start..target.end).contains(&index) {
                    continue;
                }
                if cursors[k] + u64::from(len) > target.len {
                    return Err(self.bad_piece(fetch, PieceError::TermLength));
                }
                batches[k].extend_from_slice(&chunk);
                cursors[k] += u64::from(len);
                lists[k].push((index, hash, len));
                if batches[k].len() >= WRITE_BATCH {
                    self.write_batch(target, &mut batches[k], cursors[k])?;
                }
            }
        }
        for ((target, batch), &cursor) in targets.iter().zip(&mut batches).zip(&cursors) {
            self.write_batch(target, batch, cursor)?;
        }
        if body.left != 0 {
            return Err(self.bad_piece(fetch, PieceError::Trailing));
        }
        if cursors.iter().zip(targets).any(|(&c, t)| c != t.len) {
            return Err(self.bad_piece(fetch, PieceError::TermLength));
        }
        Ok((lists, merkle_root(&leaves) == fetch.xorb))
    }

    /// A piece that could not be decoded into its terms: fetched again (a transient error),
    /// unless the format is one we do not know, which the bridge avoids.
    fn bad_piece(&self, fetch: &Fetch, err: PieceError) -> Failure {
        let server = crate::hub::server_name(&fetch.url);
        match err {
            PieceError::Format(FormatError::UnknownScheme(s)) => Failure::Fallback(format!(
                "the Xet storage at {server} sent a chunk compressed with scheme {s}, which tabcache does not know"
            )),
            PieceError::Format(FormatError::UnknownVersion(v)) => Failure::Fallback(format!(
                "the Xet storage at {server} sent a chunk record of version {v}, which tabcache does not know"
            )),
            PieceError::Io(e) => Failure::Failed(
                Error::new(
                    ErrorKind::Network,
                    format!("reading a xorb piece from {server} failed: {e}"),
                )
                .transient(None),
            ),
            other => Failure::Failed(
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "the Xet storage at {server} sent a bad piece of xorb {} ({other}); fetching it again",
                        fetch.xorb
                    ),
                )
                .transient(None),
            ),
        }
    }

    /// Write `batch`, the bytes of `target` that end at its `cursor`, start their write-back,
    /// and note them written.
    fn write_batch(&self, target: &Target, batch: &mut Vec<u8>, cursor: u64) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let len = batch.len() as u64;
        let at = target.offset + cursor - len;
        write_all_at(self.out, batch, at).map_err(|e| self.io("writing", e))?;
        start_writeback(self.out, at, len);
        batch.clear();
        self.add_held(len);
        self.wrote(target, cursor, len)
    }

    /// `target` holds its first `cursor` bytes in place, the last `len` just written: extend
    /// its term's written prefix (only by bytes that continue it), and sync when enough has
    /// been written since the last sync.
    fn wrote(&self, target: &Target, cursor: u64, len: u64) -> Result<()> {
        {
            let state = &mut lock(&self.terms)[target.term];
            if state.written >= target.base {
                state.written = state.written.max(target.base + cursor);
            }
        }
        let unsynced = self.unsynced.fetch_add(len, Ordering::Relaxed);
        if unsynced + len >= self.sync_every {
            self.sync_and_record(false)?;
        }
        Ok(())
    }

    /// Finished terms: all their bytes written, their chunks known (and `proven` by their
    /// xorb's hash or chunk by chunk). The next sync records them durable.
    fn finish_terms(&self, done: Vec<(usize, TermChunks)>, proven: bool) {
        let mut states = lock(&self.terms);
        for (t, list) in done {
            let state = &mut states[t];
            state.written = self.layout.terms[t].len;
            state.chunks = Some(list);
            state.proven |= proven;
        }
    }

    /// Sync the file, then record every term's prefix written before the sync began as
    /// durable in the resume record. One connection syncs at a time while the others go on
    /// writing; unless `wait`, a connection that finds a sync under way leaves it at that.
    fn sync_and_record(&self, wait: bool) -> Result<()> {
        let mut failed = match self.sync_turn.try_lock() {
            Ok(turn) => turn,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if wait => lock(&self.sync_turn),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        if *failed {
            return Err(self.io("syncing", io::Error::other("an earlier sync failed")));
        }
        self.unsynced.store(0, Ordering::Relaxed);
        let before: Vec<(u32, u64)> = lock(&self.terms)
            .iter()
            .map(|s| (s.generation, s.written))
            .collect();
        if let Err(e) = self.out.sync_data() {
            *failed = true;
            return Err(self.io("syncing", e));
        }
        let mut states = lock(&self.terms);
        for (state, (generation, written)) in states.iter_mut().zip(before) {
            if state.generation == generation {
                state.durable = state.durable.max(written);
            }
        }
        let prefixes: Vec<u64> = states.iter().map(|s| s.durable).collect();
        self.resume.save(&xet_state(self.file, &prefixes))
    }

    /// The chunks of the first `len` bytes of term `t`, from the file's bytes.
    fn rechunk(&self, t: usize, len: u64) -> Result<TermChunks> {
        let term = &self.layout.terms[t];
        let reader = FileRegion {
            file: self.out,
            at: term.offset,
            end: term.offset + len,
        };
        let mut chunker = Chunker::new(reader);
        let mut chunks = Vec::new();
        let mut index = term.start;
        while let Some(bytes) = chunker.next_chunk().map_err(|e| self.io("reading", e))? {
            chunks.push((index, chunk_hash(&bytes), bytes.len() as u32));
            index += 1;
        }
        Ok(chunks)
    }

    /// Whether the chunks written, in file order, hash to the file's Xet hash.
    fn file_hash_matches(&self) -> bool {
        let states = lock(&self.terms);
        let mut leaves = Vec::new();
        for state in states.iter() {
            let Some(term) = &state.chunks else {
                return false;
            };
            leaves.extend(term.iter().map(|&(_, h, len)| (h, u64::from(len))));
        }
        file_hash_of_root(merkle_root(&leaves), leaves.is_empty()) == self.file.hash
    }

    fn held_chunks(&self) -> Vec<Held> {
        let states = lock(&self.terms);
        let mut held = Vec::new();
        for (term, state) in self.layout.terms.iter().zip(states.iter()) {
            let mut offset = term.offset;
            for &(index, hash, len) in state.chunks.iter().flatten() {
                held.push(Held {
                    xorb: term.xorb,
                    index,
                    offset,
                    len,
                    hash,
                });
                offset += u64::from(len);
            }
        }
        held
    }

    fn add_held(&self, bytes: u64) {
        let held = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.progress
            .fetch_max(held.min(self.file.size), Ordering::Relaxed);
    }

    fn io(&self, what: &str, err: io::Error) -> Error {
        Error::new(
            ErrorKind::Io,
            format!(
                "{what} the partial download of {} failed: {err}",
                self.file.repo
            ),
        )
    }
}

/// Take the fresh URLs of `fresh` for the pieces in `fetches` (a piece the fresh one lacks
/// keeps its URL, fails again and is given up on after a few refusals).
fn replace_urls(fetches: &mut [Fetch], fresh: &Layout) {
    for slot in fetches.iter_mut() {
        if let Some(new) = fresh.fetches.iter().find(|n| n.same_piece(slot)) {
            slot.url = new.url.clone();
            slot.bytes_start = new.bytes_start;
            slot.bytes_end = new.bytes_end;
        }
    }
}

/// Why a fetched piece could not be used.
#[derive(Debug)]
enum PieceError {
    Format(FormatError),
    Io(io::Error),
    /// A term's chunks came to another length than the reconstruction said.
    TermLength,
    /// The body held more than its chunk records.
    Trailing,
}

impl std::fmt::Display for PieceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PieceError::Format(e) => write!(f, "{e}"),
            PieceError::Io(e) => write!(f, "{e}"),
            PieceError::TermLength => f.write_str("its chunks do not add up to the terms' lengths"),
            PieceError::Trailing => f.write_str("bytes beyond its chunk records"),
        }
    }
}

/// Read one chunk record from `body` (into `record`) and decode it, appending to `chunk`.
fn read_record(
    body: &mut impl Read,
    record: &mut Vec<u8>,
    chunk: &mut Vec<u8>,
) -> std::result::Result<(), PieceError> {
    let mut head = [0u8; HEADER_LEN];
    body.read_exact(&mut head).map_err(read_error)?;
    let header = Header::parse(&head).map_err(PieceError::Format)?;
    if header.uncompressed_len > xet_format::hash::MAX_CHUNK {
        return Err(PieceError::Format(FormatError::LengthMismatch {
            expected: xet_format::hash::MAX_CHUNK,
            got: header.uncompressed_len,
        }));
    }
    record.resize(header.compressed_len, 0);
    body.read_exact(record).map_err(read_error)?;
    xorb::decode_payload(&header, record, chunk).map_err(PieceError::Format)
}

/// A body that ends before its records do is a short piece (fetched again), not a format
/// error.
fn read_error(err: io::Error) -> PieceError {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        PieceError::Format(FormatError::Truncated { needed: 0, have: 0 })
    } else {
        PieceError::Io(err)
    }
}

/// A body that stops at the length asked for (what follows is not ours to decode).
struct Limited {
    inner: Box<dyn Read + Send>,
    left: u64,
}

impl Read for Limited {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf.len().min(self.left as usize);
        if max == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Bytes `at..end` of a file, as a reader.
struct FileRegion<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl Read for FileRegion<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min((self.end - self.at) as usize);
        if n == 0 {
            return Ok(0);
        }
        read_exact_at(self.file, &mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
