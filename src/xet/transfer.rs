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
//! Resume. A term is recorded durable (in the same resume record as ranged downloads, see
//! [`PartialState::xet`]) once its bytes are synced; a killed transfer fetches only the other
//! terms, and re-chunks the durable ones from disk for the file hash (a term starts and ends
//! on chunk boundaries, so chunking its bytes alone gives its chunks again).
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
use crate::download::pwrite::{preallocate, read_exact_at, write_all_at};
use crate::download::{
    sleep_unless_stopped, Attempts, Bitset, Control, PartialState, ResumeLog, TransferOptions,
    XetPartial,
};
use crate::error::{Error, ErrorKind, Result};
use crate::hub::{CasAnswer, HubClient, XetToken};
use xet_format::hash::{chunk_hash, file_hash_of_root, merkle_root, Chunker};
use xet_format::xorb::{self, FormatError, Header, HEADER_LEN};

/// A token is replaced this long before the CAS would refuse it.
const TOKEN_MARGIN_SECS: i64 = 60;
/// Refusals in a row (of a token or a presigned URL) before the transfer gives up.
const MAX_REFUSALS: u32 = 4;

/// A term's chunks as written: index in the xorb, hash, length.
type TermChunks = Vec<(u32, XetHash, u32)>;

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
    /// Fetch piece `fetch` and write the listed terms from it.
    Remote { fetch: usize, terms: Vec<usize> },
    /// Copy the term from a blob we hold.
    Local { term: usize },
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
    /// Per term: its chunks (index in the xorb, hash, length), once written.
    chunks: Mutex<Vec<Option<TermChunks>>>,
    /// Terms whose bytes are synced and recorded.
    durable: Mutex<Bitset>,
    /// Terms whose bytes are proven right (by their xorb's hash, or chunk by chunk).
    proven: Mutex<Bitset>,
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
    let layout = reconstruct(&auth, opts, cancel, true)?;
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
        chunks: Mutex::new(vec![None; terms]),
        durable: Mutex::new(durable),
        proven: Mutex::new(Bitset::new(terms)),
        held: AtomicU64::new(0),
        failure: Mutex::new(None),
        abort: AtomicBool::new(false),
    };
    let resumed: u64 = {
        let durable = lock(&run.durable);
        durable.ones().map(|t| run.layout.terms[t].len).sum()
    };
    run.add_held(resumed);
    let todo: Vec<usize> = (0..terms).filter(|&t| !lock(&run.durable).get(t)).collect();
    run.run_units(run.units(&todo, true))?;
    // Terms taken over from an earlier call: their chunks, again, from disk.
    for t in 0..terms {
        if lock(&run.chunks)[t].is_none() {
            let chunks = run.rechunk(t)?;
            lock(&run.chunks)[t] = Some(chunks);
        }
    }
    if !run.file_hash_matches() {
        // Fetch again exactly the terms nothing has proven yet, once.
        let unproven: Vec<usize> = {
            let proven = lock(&run.proven);
            (0..terms).filter(|&t| !proven.get(t)).collect()
        };
        for &t in &unproven {
            lock(&run.chunks)[t] = None;
        }
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

/// The whole file's reconstruction, checked. Problems before any byte is fetched (`first`)
/// mean the CAS cannot serve us: fall back. Later (a refresh of expired URLs) they fail the
/// transfer, which a later call resumes.
fn reconstruct(
    auth: &Auth,
    opts: &TransferOptions,
    cancel: &AtomicBool,
    first: bool,
) -> std::result::Result<Layout, Failure> {
    let give_up = |why: String| {
        if first {
            Failure::Fallback(why)
        } else {
            Failure::Failed(Error::new(ErrorKind::Http, why))
        }
    };
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
            .cas_json::<Reconstruction>(&url, &token, None, "Xet reconstruction")
        {
            Ok(CasAnswer::Document(answer)) => {
                return answer
                    .check(auth.file.size)
                    .map_err(|why| give_up(format!("the Xet storage at {server} sent {why}")));
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
                Ok(wait) => {
                    let never = AtomicBool::new(false);
                    let control = Control {
                        cancel,
                        abort: &never,
                        stall_timeout: opts.stall_timeout,
                    };
                    sleep_unless_stopped(wait, &control)?;
                }
                Err(e) => return Err(give_up(e.message().to_string())),
            },
        }
    }
}

/// Open the file to resume when the resume record describes this file's terms and the file
/// has its length; otherwise record an empty state and start a preallocated file.
fn open_or_resume(
    dir: &Dir,
    name: &str,
    file: &XetFile,
    layout: &Layout,
    resume: &dyn ResumeLog,
) -> Result<(File, Bitset)> {
    let path = dir.join(name);
    let terms = layout.terms.len();
    let hash = file.hash.to_string();
    let recorded = resume.load()?.filter(|state| {
        state.size == file.size
            && state
                .xet
                .as_ref()
                .is_some_and(|x| x.file_hash == hash && x.terms == terms as u64)
            && state.done.len() == Bitset::words_for(terms)
    });
    if let Some(state) = recorded {
        if let Ok(out) = dir.open_rw(name, false) {
            if file_meta(&out).is_ok_and(|m| m.len == file.size && m.links == 1) {
                return Ok((out, Bitset::from_words(terms, state.done)));
            }
        }
    }
    let none = Bitset::new(terms);
    resume.save(&xet_state(file, &hash, &none, 0))?;
    let out = dir
        .create_fresh(name)
        .map_err(|e| Error::io("creating", &path, e))?;
    preallocate(&out, file.size).map_err(|e| Error::io("preallocating", &path, e))?;
    dir.sync()
        .map_err(|e| Error::io("syncing the directory of", &path, e))?;
    Ok((out, none))
}

fn xet_state(file: &XetFile, hash: &str, done: &Bitset, durable: u64) -> PartialState {
    PartialState {
        size: file.size,
        range_size: 0,
        done: done.words().to_vec(),
        xet: Some(XetPartial {
            file_hash: hash.to_string(),
            terms: done.len() as u64,
            durable,
        }),
    }
}

impl Run<'_> {
    /// The work for `terms`: a local copy where the index has the term's chunks (and
    /// `local` allows it), else one fetch per piece, shared by the terms it holds.
    fn units(&self, terms: &[usize], local: bool) -> Vec<Unit> {
        let mut units = Vec::new();
        let mut by_fetch: HashMap<usize, Vec<usize>> = HashMap::new();
        for &t in terms {
            let term = &self.layout.terms[t];
            if local && self.local.has(&term.xorb, term.start, term.end) {
                units.push(Unit::Local { term: t });
            } else {
                by_fetch.entry(term.fetch).or_default().push(t);
            }
        }
        let mut remote: Vec<Unit> = by_fetch
            .into_iter()
            .map(|(fetch, terms)| Unit::Remote { fetch, terms })
            .collect();
        // In file order: the prefix grows from the start, and a resume loses the least.
        remote.sort_by_key(|u| match u {
            Unit::Remote { terms, .. } => terms[0],
            Unit::Local { term } => *term,
        });
        units.extend(remote);
        units
    }

    /// Run `units` over the connections; the first failure stops the rest.
    fn run_units(&self, units: Vec<Unit>) -> std::result::Result<(), Failure> {
        let queue = Mutex::new(units.into_iter());
        let workers = self.opts.connections.max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    if self.abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some(unit) = lock(&queue).next() else {
                        return;
                    };
                    if let Err(failure) = self.run_unit(&unit) {
                        self.fail(failure);
                        return;
                    }
                });
            }
        });
        match lock(&self.failure).take() {
            Some(failure) => Err(failure),
            None if self.cancel.load(Ordering::Relaxed) => Err(Error::cancelled().into()),
            None => Ok(()),
        }
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
            Unit::Local { term } => match self.copy_local(*term)? {
                true => Ok(()),
                // The blob went, or its bytes were not what the index says: fetch instead.
                false => {
                    let fetch = self.layout.terms[*term].fetch;
                    self.fetch_piece(fetch, &[*term])
                }
            },
            Unit::Remote { fetch, terms } => self.fetch_piece(*fetch, terms),
        }
    }

    /// Copy term `t` from a blob the index says holds its chunks, checking each chunk's
    /// hash. False when it cannot (then nothing of the term is recorded).
    fn copy_local(&self, t: usize) -> Result<bool> {
        let term = &self.layout.terms[t];
        let Some(run) = self.local.find(&term.xorb, term.start, term.end) else {
            return Ok(false);
        };
        let mut buf = Vec::new();
        let mut at = term.offset;
        let mut chunks = Vec::with_capacity(run.chunks.len());
        for (i, &(offset, len, hash)) in run.chunks.iter().enumerate() {
            if self.stopped() {
                return Err(Error::cancelled());
            }
            buf.resize(len as usize, 0);
            if read_exact_at(&run.file, &mut buf, offset).is_err() || chunk_hash(&buf) != hash {
                return Ok(false);
            }
            if at + u64::from(len) > term.offset + term.len {
                return Ok(false);
            }
            write_all_at(self.out, &buf, at).map_err(|e| self.io("writing", e))?;
            at += u64::from(len);
            chunks.push((term.start + i as u32, hash, len));
        }
        if at != term.offset + term.len {
            return Ok(false);
        }
        self.finish_terms(&[(t, chunks)], true)?;
        Ok(true)
    }

    /// Fetch piece `f` and write `terms` from it: retried on transient failures, a refused
    /// (expired) URL replaced, a piece whose decoding fails fetched again.
    fn fetch_piece(&self, f: usize, terms: &[usize]) -> std::result::Result<(), Failure> {
        let mut attempts = Attempts::new(self.opts.backoff_base, self.opts.max_attempts);
        let mut refusals = 0;
        loop {
            if self.stopped() {
                return Err(Error::cancelled().into());
            }
            let fetch = lock(&self.fetches)[f].clone();
            let outcome = self.fetch_once(&fetch, terms);
            let err = match outcome {
                Ok(()) => return Ok(()),
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
                self.refresh_urls(&fetch)?;
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
        let fresh = reconstruct(&self.auth, self.opts, self.cancel, false)?;
        let mut fetches = lock(&self.fetches);
        for slot in fetches.iter_mut() {
            if let Some(new) = fresh.fetches.iter().find(|n| n.same_piece(slot)) {
                slot.url = new.url.clone();
                slot.bytes_start = new.bytes_start;
                slot.bytes_end = new.bytes_end;
            }
        }
        Ok(())
    }

    /// One GET of a piece: decode its chunk records in order, write each chunk where the
    /// terms want it, then check lengths and (for a whole xorb) the xorb hash.
    fn fetch_once(&self, fetch: &Fetch, terms: &[usize]) -> std::result::Result<(), Failure> {
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
        let mut cursors: Vec<u64> = vec![0; terms.len()];
        let mut per_term: Vec<TermChunks> = vec![Vec::new(); terms.len()];
        let mut leaves = Vec::with_capacity((fetch.end - fetch.start) as usize);
        let (mut record, mut chunk) = (Vec::new(), Vec::new());
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
            for (k, &t) in terms.iter().enumerate() {
                let term = &self.layout.terms[t];
                if !(term.start..term.end).contains(&index) {
                    continue;
                }
                if cursors[k] + u64::from(len) > term.len {
                    return Err(self.bad_piece(fetch, PieceError::TermLength));
                }
                write_all_at(self.out, &chunk, term.offset + cursors[k])
                    .map_err(|e| self.io("writing", e))?;
                cursors[k] += u64::from(len);
                per_term[k].push((index, hash, len));
                self.add_held(u64::from(len));
            }
        }
        if body.left != 0 {
            return Err(self.bad_piece(fetch, PieceError::Trailing));
        }
        for (k, &t) in terms.iter().enumerate() {
            if cursors[k] != self.layout.terms[t].len {
                return Err(self.bad_piece(fetch, PieceError::TermLength));
            }
        }
        let whole_xorb = merkle_root(&leaves) == fetch.xorb;
        let done: Vec<(usize, TermChunks)> = terms.iter().copied().zip(per_term).collect();
        self.finish_terms(&done, whole_xorb)?;
        Ok(())
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

    /// Record finished terms: sync the file, then mark them durable in the resume record.
    fn finish_terms(&self, done: &[(usize, TermChunks)], proven: bool) -> Result<()> {
        self.out.sync_data().map_err(|e| self.io("syncing", e))?;
        {
            let mut chunks = lock(&self.chunks);
            let mut proven_terms = lock(&self.proven);
            for (t, list) in done {
                chunks[*t] = Some(list.clone());
                if proven {
                    proven_terms.set(*t);
                }
            }
        }
        let mut durable = lock(&self.durable);
        for (t, _) in done {
            durable.set(*t);
        }
        let bytes: u64 = durable.ones().map(|t| self.layout.terms[t].len).sum();
        let hash = self.file.hash.to_string();
        self.resume
            .save(&xet_state(self.file, &hash, &durable, bytes))
    }

    /// The chunks of durable term `t`, from the file's bytes.
    fn rechunk(&self, t: usize) -> Result<TermChunks> {
        let term = &self.layout.terms[t];
        let reader = FileRegion {
            file: self.out,
            at: term.offset,
            end: term.offset + term.len,
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
        let chunks = lock(&self.chunks);
        let mut leaves = Vec::new();
        for term in chunks.iter() {
            let Some(term) = term else { return false };
            leaves.extend(term.iter().map(|&(_, h, len)| (h, u64::from(len))));
        }
        file_hash_of_root(merkle_root(&leaves), leaves.is_empty()) == self.file.hash
    }

    fn held_chunks(&self) -> Vec<Held> {
        let chunks = lock(&self.chunks);
        let mut held = Vec::new();
        for (term, list) in self.layout.terms.iter().zip(chunks.iter()) {
            let mut offset = term.offset;
            for &(index, hash, len) in list.iter().flatten() {
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
