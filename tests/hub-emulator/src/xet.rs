//! The emulator's Xet storage: the global content-addressed chunk store behind every Xet-backed
//! repo (xorbs on disk in a private temp folder, the chunk → xorb map, each file's
//! reconstruction terms), as the Hub builds it on upload — a chunk already stored anywhere is
//! referenced, never stored again — plus the secrets behind CAS access tokens and signed xorb
//! URLs. The HTTP side is `cas.rs` (CAS listener) and `api.rs` (the xet-read-token route).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use xet_format::hash::{chunk_hash, file_hash_of_root, merkle_root, Chunker, XetHash};
use xet_format::xorb::{self, Scheme};

use crate::data::hex;
use crate::repo::FileKey;

/// A xorb holds at most this many bytes of chunk records (the Hub's limit) ...
pub const DEFAULT_XORB_MAX_BYTES: u64 = 64 << 20;
/// ... and at most this many chunks.
pub const XORB_MAX_CHUNKS: usize = 8192;
/// Tokens and signed URLs live this long unless a test shortens it.
pub const DEFAULT_XET_TTL_SECS: u64 = 3600;

/// One sealed xorb: its chunk records are in `path`, in order.
struct Xorb {
    hash: XetHash,
    path: PathBuf,
    /// Byte offset of each chunk record, and the xorb's length last (chunks + 1 entries).
    record_offsets: Vec<u64>,
    /// Uncompressed offset of each chunk within the xorb, and the total last.
    unpacked_offsets: Vec<u64>,
}

/// A run of consecutive chunks `start..end` of one xorb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Term {
    xorb: usize,
    start: u32,
    end: u32,
}

struct FileRecon {
    size: u64,
    terms: Vec<Term>,
}

#[derive(Default)]
struct State {
    xorbs: Vec<Xorb>,
    xorb_by_hash: HashMap<XetHash, usize>,
    /// Every stored chunk: (xorb index, chunk index).
    chunks: HashMap<XetHash, (usize, u32)>,
    files: HashMap<XetHash, FileRecon>,
    /// Which repos hold each file: a token of another repo may not reconstruct it.
    file_repos: HashMap<XetHash, HashSet<String>>,
    /// Issued access tokens: repo and expiry.
    tokens: HashMap<String, (String, SystemTime)>,
}

/// What the store holds, for tests that check deduplication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XetStats {
    pub xorbs: usize,
    pub chunks: usize,
    /// Bytes of chunk records on disk over all xorbs.
    pub stored_bytes: u64,
    pub files: usize,
}

/// One term of an answered reconstruction, resolved to hashes and byte ranges.
pub(crate) struct AnswerTerm {
    pub xorb_hash: XetHash,
    pub chunks: (u32, u32),
    pub unpacked_length: u64,
    /// Inclusive byte range of the chunk records in the xorb.
    pub bytes: (u64, u64),
}

pub(crate) struct Reconstruction {
    pub offset_into_first_range: u64,
    pub terms: Vec<AnswerTerm>,
}

pub(crate) enum ReconError {
    UnknownFile,
    /// The file is not in the token's repo.
    NotInRepo,
    Unsatisfiable {
        size: u64,
    },
}

/// A xorb being filled by one ingest; sealed when full or when the file ends.
struct OpenXorb {
    index: usize,
    temp_path: PathBuf,
    writer: BufWriter<File>,
    leaves: Vec<(XetHash, u64)>,
    local: HashMap<XetHash, u32>,
    record_offsets: Vec<u64>,
    unpacked_offsets: Vec<u64>,
}

pub struct XetStore {
    dir: PathBuf,
    secret: [u8; 32],
    xorb_max_bytes: u64,
    pub token_ttl: AtomicU64,
    pub url_ttl: AtomicU64,
    state: Mutex<State>,
    /// Ingests run one at a time, so concurrent first requests for a file build it once and
    /// the index a new xorb will get is stable while it fills.
    building: Mutex<()>,
    /// (path, file version) → file hash: each file version is chunked once.
    ingested: Mutex<HashMap<PathBuf, (FileKey, XetHash)>>,
    next_token: AtomicU64,
}

impl XetStore {
    pub fn new(xorb_max_bytes: u64) -> io::Result<XetStore> {
        static STORES: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let serial = STORES.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "hub-emulator-xet-{}-{serial}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir)?;
        // The secret only has to be unguessable by the client under test, not cryptographic.
        let mut seed = Sha256::new();
        seed.update(nanos.to_le_bytes());
        seed.update(serial.to_le_bytes());
        seed.update(std::process::id().to_le_bytes());
        seed.update(dir.to_string_lossy().as_bytes());
        Ok(XetStore {
            dir,
            secret: seed.finalize().into(),
            xorb_max_bytes: xorb_max_bytes.max(1),
            token_ttl: AtomicU64::new(DEFAULT_XET_TTL_SECS),
            url_ttl: AtomicU64::new(DEFAULT_XET_TTL_SECS),
            state: Mutex::new(State::default()),
            building: Mutex::new(()),
            ingested: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(0),
        })
    }

    /// The Xet file hash of `abs` (a file of `repo_id`), chunking it into the store the first
    /// time this version of the file is seen.
    pub fn ingest(&self, repo_id: &str, abs: &Path, key: FileKey) -> io::Result<XetHash> {
        let cached = || {
            self.ingested
                .lock()
                .unwrap()
                .get(abs)
                .filter(|(cached_key, _)| *cached_key == key)
                .map(|(_, hash)| *hash)
        };
        let hash = match cached() {
            Some(hash) => hash,
            None => {
                let _gate = self.building.lock().unwrap();
                match cached() {
                    Some(hash) => hash,
                    None => {
                        let hash = self.build(abs)?;
                        self.ingested
                            .lock()
                            .unwrap()
                            .insert(abs.to_owned(), (key, hash));
                        hash
                    }
                }
            }
        };
        let mut state = self.state.lock().unwrap();
        let repos = state.file_repos.entry(hash).or_default();
        if !repos.contains(repo_id) {
            repos.insert(repo_id.to_owned());
        }
        Ok(hash)
    }

    /// Chunks `abs` (streamed: one chunk in memory at a time), stores the chunks no xorb
    /// holds yet in new xorbs and records the file's terms. Runs under `building`.
    fn build(&self, abs: &Path) -> io::Result<XetHash> {
        let mut chunker = Chunker::new(File::open(abs)?);
        let mut leaves = Vec::new();
        let mut terms: Vec<Term> = Vec::new();
        let mut open: Option<OpenXorb> = None;
        let mut size = 0u64;
        let mut lz4 = Vec::new();
        let mut grouped = Vec::new();
        while let Some(chunk) = chunker.next_chunk()? {
            let hash = chunk_hash(&chunk);
            let len = chunk.len() as u64;
            size += len;
            leaves.push((hash, len));
            let known = self.state.lock().unwrap().chunks.get(&hash).copied();
            let location = match known {
                Some(location) => location,
                None => match open
                    .as_ref()
                    .and_then(|o| o.local.get(&hash).map(|i| (o.index, *i)))
                {
                    Some(location) => location,
                    None => {
                        // Stored as the Hub's uploader does: whichever of LZ4 and byte
                        // grouping + LZ4 is smaller (encode falls back to stored by itself).
                        lz4.clear();
                        grouped.clear();
                        xorb::encode(&chunk, Scheme::Lz4, &mut lz4);
                        xorb::encode(&chunk, Scheme::ByteGrouping4Lz4, &mut grouped);
                        let record = if grouped.len() < lz4.len() {
                            &grouped
                        } else {
                            &lz4
                        };
                        let full = open.as_ref().is_some_and(|o| {
                            o.leaves.len() >= XORB_MAX_CHUNKS
                                || o.record_offsets.last().copied().unwrap_or(0)
                                    + record.len() as u64
                                    > self.xorb_max_bytes
                        });
                        if full {
                            if let Some(done) = open.take() {
                                self.seal(done)?;
                            }
                        }
                        if open.is_none() {
                            open = Some(self.open_xorb()?);
                        }
                        let o = open.as_mut().expect("opened above");
                        o.writer.write_all(record)?;
                        let index = o.leaves.len() as u32;
                        o.leaves.push((hash, len));
                        o.local.insert(hash, index);
                        let last = *o.record_offsets.last().expect("starts with 0");
                        o.record_offsets.push(last + record.len() as u64);
                        let unpacked = *o.unpacked_offsets.last().expect("starts with 0");
                        o.unpacked_offsets.push(unpacked + len);
                        (o.index, index)
                    }
                },
            };
            match terms.last_mut() {
                Some(term) if term.xorb == location.0 && term.end == location.1 => term.end += 1,
                _ => terms.push(Term {
                    xorb: location.0,
                    start: location.1,
                    end: location.1 + 1,
                }),
            }
        }
        if let Some(done) = open.take() {
            self.seal(done)?;
        }
        let file_hash = file_hash_of_root(merkle_root(&leaves), size == 0);
        self.state
            .lock()
            .unwrap()
            .files
            .entry(file_hash)
            .or_insert(FileRecon { size, terms });
        Ok(file_hash)
    }

    fn open_xorb(&self) -> io::Result<OpenXorb> {
        let index = self.state.lock().unwrap().xorbs.len();
        let temp_path = self.dir.join(format!("open-{index}"));
        Ok(OpenXorb {
            index,
            writer: BufWriter::with_capacity(1 << 20, File::create(&temp_path)?),
            temp_path,
            leaves: Vec::new(),
            local: HashMap::new(),
            record_offsets: vec![0],
            unpacked_offsets: vec![0],
        })
    }

    /// A xorb is named by the Merkle root of its chunks, known once it is full.
    fn seal(&self, open: OpenXorb) -> io::Result<()> {
        let OpenXorb {
            index,
            temp_path,
            writer,
            leaves,
            record_offsets,
            unpacked_offsets,
            ..
        } = open;
        writer.into_inner().map_err(|err| err.into_error())?;
        let hash = merkle_root(&leaves);
        let path = self.dir.join(hash.to_string());
        fs::rename(&temp_path, &path)?;
        let mut state = self.state.lock().unwrap();
        debug_assert_eq!(state.xorbs.len(), index);
        for (i, (chunk, _)) in leaves.iter().enumerate() {
            state.chunks.entry(*chunk).or_insert((index, i as u32));
        }
        state.xorb_by_hash.insert(hash, index);
        state.xorbs.push(Xorb {
            hash,
            path,
            record_offsets,
            unpacked_offsets,
        });
        Ok(())
    }

    pub fn stats(&self) -> XetStats {
        let state = self.state.lock().unwrap();
        XetStats {
            xorbs: state.xorbs.len(),
            chunks: state.chunks.len(),
            stored_bytes: state
                .xorbs
                .iter()
                .map(|x| *x.record_offsets.last().unwrap_or(&0))
                .sum(),
            files: state.files.len(),
        }
    }

    /// The terms that cover `range` (inclusive bytes; None: the whole file) of `file`, trimmed
    /// to whole chunks, as the CAS answers them. `repo`: the token's repo.
    pub(crate) fn reconstruct(
        &self,
        file: &XetHash,
        repo: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<Reconstruction, ReconError> {
        let state = self.state.lock().unwrap();
        let recon = state.files.get(file).ok_or(ReconError::UnknownFile)?;
        if !state
            .file_repos
            .get(file)
            .is_some_and(|repos| repos.contains(repo))
        {
            return Err(ReconError::NotInRepo);
        }
        let size = recon.size;
        let (first, last) = match range {
            None if size == 0 => {
                return Ok(Reconstruction {
                    offset_into_first_range: 0,
                    terms: Vec::new(),
                })
            }
            None => (0, size - 1),
            Some((start, _)) if start >= size => return Err(ReconError::Unsatisfiable { size }),
            Some((start, end)) => (start, end.unwrap_or(u64::MAX).min(size - 1)),
        };
        let mut answer = Reconstruction {
            offset_into_first_range: 0,
            terms: Vec::new(),
        };
        let mut pos = 0u64;
        for term in &recon.terms {
            if pos > last {
                break;
            }
            let xorb = &state.xorbs[term.xorb];
            let unpacked = |chunk: u32| xorb.unpacked_offsets[chunk as usize];
            let term_len = unpacked(term.end) - unpacked(term.start);
            if pos + term_len <= first {
                pos += term_len;
                continue;
            }
            // File offset of chunk `c` of this term.
            let at = |chunk: u32| pos + unpacked(chunk) - unpacked(term.start);
            let mut start = term.start;
            while at(start + 1) <= first {
                start += 1;
            }
            let mut end = start + 1;
            while end < term.end && at(end) <= last {
                end += 1;
            }
            if answer.terms.is_empty() {
                answer.offset_into_first_range = first - at(start);
            }
            answer.terms.push(AnswerTerm {
                xorb_hash: xorb.hash,
                chunks: (start, end),
                unpacked_length: unpacked(end) - unpacked(start),
                bytes: (
                    xorb.record_offsets[start as usize],
                    xorb.record_offsets[end as usize] - 1,
                ),
            });
            pos += term_len;
        }
        Ok(answer)
    }

    /// The file and length of a sealed xorb.
    pub(crate) fn xorb(&self, hash: &XetHash) -> Option<(PathBuf, u64)> {
        let state = self.state.lock().unwrap();
        let index = *state.xorb_by_hash.get(hash)?;
        let xorb = &state.xorbs[index];
        Some((xorb.path.clone(), *xorb.record_offsets.last().unwrap_or(&0)))
    }

    /// A new access token for `repo`, and its expiry in unix seconds.
    pub fn issue_token(&self, repo: &str) -> (String, u64) {
        let serial = self.next_token.fetch_add(1, Ordering::SeqCst);
        let mut hasher = Sha256::new();
        hasher.update(self.secret);
        hasher.update(b"token");
        hasher.update(serial.to_le_bytes());
        hasher.update(repo.as_bytes());
        let token = format!("xet_{}", hex(&hasher.finalize()));
        let (expires, exp) = expiry(self.token_ttl.load(Ordering::SeqCst));
        self.state
            .lock()
            .unwrap()
            .tokens
            .insert(token.clone(), (repo.to_owned(), expires));
        (token, exp)
    }

    /// The repo of a live token; None for an unknown or expired one.
    pub fn check_token(&self, token: &str) -> Option<String> {
        let state = self.state.lock().unwrap();
        let (repo, expires) = state.tokens.get(token)?;
        (SystemTime::now() < *expires).then(|| repo.clone())
    }

    /// The query (`r=..&exp=..&sig=..`) that signs exactly `bytes` of `xorb`.
    pub fn sign(&self, xorb: &XetHash, bytes: (u64, u64)) -> String {
        let (_, exp) = expiry(self.url_ttl.load(Ordering::SeqCst));
        let range = format!("{}-{}", bytes.0, bytes.1);
        let sig = self.signature(xorb, &range, exp);
        format!("r={range}&exp={exp}&sig={sig}")
    }

    pub fn signature(&self, xorb: &XetHash, range: &str, exp: u64) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.secret);
        hasher.update(xorb.to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(range.as_bytes());
        hasher.update(b"\0");
        hasher.update(exp.to_string().as_bytes());
        hex(&hasher.finalize())
    }
}

impl Drop for XetStore {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The moment `ttl` seconds from now, and the same rounded up to unix seconds (so a URL or
/// token lives at least `ttl`; 0 gives one that is already expired).
fn expiry(ttl: u64) -> (SystemTime, u64) {
    let now = SystemTime::now();
    let expires = now + Duration::from_secs(ttl);
    let since = expires.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0 && ttl > 0);
    (expires, secs)
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
