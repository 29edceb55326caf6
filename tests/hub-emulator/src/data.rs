//! Test-data helpers: laying files into a repo folder, deterministic pseudo-random content
//! streamed without holding it in memory, and the hashes the Hub protocol names files by.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::repo::RepoConfig;

const STREAM_BUFFER: usize = 256 * 1024;

/// The folder holding `repo_id` (`org/name` or a legacy `name`) under `root`.
pub fn repo_dir(root: &Path, repo_id: &str) -> PathBuf {
    root.join(repo_id)
}

/// Writes `bytes` as `path` (`/`-separated, relative) of `repo_id`, creating folders. The file
/// is written beside and renamed into place so a running emulator never lists a half-written
/// file and its hash cache sees a new inode.
pub fn write_file(root: &Path, repo_id: &str, path: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    write_with(root, repo_id, path, |file| file.write_all(bytes))
}

/// Writes `len` deterministic pseudo-random bytes (see [`PseudoRandomReader`]) as `path` of
/// `repo_id`, streaming them.
pub fn write_pseudo_random_file(
    root: &Path,
    repo_id: &str,
    path: &str,
    len: u64,
    seed: u64,
) -> io::Result<PathBuf> {
    write_with(root, repo_id, path, |file| {
        let mut reader = PseudoRandomReader::new(len, seed);
        copy_with_buffer(&mut reader, file)
    })
}

/// Writes the repo's `.emulator.json` (see the crate docs for its fields).
pub fn write_repo_config(root: &Path, repo_id: &str, config: &RepoConfig) -> io::Result<PathBuf> {
    let json = serde_json::to_vec_pretty(config).map_err(io::Error::other)?;
    write_file(root, repo_id, crate::repo::CONFIG_FILE, &json)
}

fn write_with(
    root: &Path,
    repo_id: &str,
    path: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<PathBuf> {
    static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
    let target = repo_dir(root, repo_id).join(path);
    let parent = target
        .parent()
        .ok_or_else(|| io::Error::other("file path has no parent folder"))?;
    fs::create_dir_all(parent)?;
    // The temporary name starts with a dot, so the emulator's listing skips it.
    let temp = parent.join(format!(
        ".emulator-tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = File::create(&temp)?;
    let result = fill(&mut file).and_then(|()| file.sync_data());
    drop(file);
    if let Err(err) = result {
        let _ = fs::remove_file(&temp);
        return Err(err);
    }
    fs::rename(&temp, &target)?;
    Ok(target)
}

fn copy_with_buffer(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<()> {
    let mut buffer = vec![0u8; STREAM_BUFFER];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        writer.write_all(&buffer[..read])?;
    }
}

/// Deterministic bytes from a 64-bit seed (xorshift64* over a splitmix64-mixed seed, so seed 0
/// works). The same `(len, seed)` always yields the same bytes, and a shorter length is a prefix
/// of a longer one.
pub struct PseudoRandomReader {
    state: u64,
    remaining: u64,
    pending: [u8; 8],
    pending_len: usize,
}

impl PseudoRandomReader {
    pub fn new(len: u64, seed: u64) -> Self {
        let mut mixed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^= mixed >> 31;
        PseudoRandomReader {
            state: mixed | 1,
            remaining: len,
            pending: [0; 8],
            pending_len: 0,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes()
    }
}

impl Read for PseudoRandomReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let want = (out.len() as u64).min(self.remaining) as usize;
        let mut written = 0;
        // Leftover bytes of a word split by the previous read come first.
        while written < want && self.pending_len > 0 {
            out[written] = self.pending[8 - self.pending_len];
            self.pending_len -= 1;
            written += 1;
        }
        while want - written >= 8 {
            let word = self.next_word();
            out[written..written + 8].copy_from_slice(&word);
            written += 8;
        }
        if written < want {
            self.pending = self.next_word();
            self.pending_len = 8;
            while written < want {
                out[written] = self.pending[8 - self.pending_len];
                self.pending_len -= 1;
                written += 1;
            }
        }
        self.remaining -= want as u64;
        Ok(want)
    }
}

/// Lowercase hex sha256 of what `reader` yields.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; STREAM_BUFFER];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

/// Lowercase hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    sha256_reader(File::open(path)?)
}

/// Lowercase hex sha256 of `len` pseudo-random bytes from `seed`, without a file.
pub fn pseudo_random_sha256(len: u64, seed: u64) -> String {
    sha256_reader(PseudoRandomReader::new(len, seed)).expect("reading generated bytes cannot fail")
}

/// All `len` pseudo-random bytes of `seed` in memory; for small test files only.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    PseudoRandomReader::new(len as u64, seed)
        .read_to_end(&mut bytes)
        .expect("reading generated bytes cannot fail");
    bytes
}

/// Git's blob id of `bytes`: sha1 of `blob <len>\0` followed by the content.
pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hex(&hasher.finalize())
}

/// Git's blob id of a file of `len` bytes, streamed.
pub fn git_blob_sha1_file(path: &Path, len: u64) -> io::Result<String> {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; STREAM_BUFFER];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

pub(crate) fn sha1_hex(bytes: &[u8]) -> String {
    hex(&Sha1::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_is_deterministic_and_prefix_stable() {
        let long = pseudo_random_bytes(1000, 7);
        assert_eq!(long, pseudo_random_bytes(1000, 7));
        assert_eq!(&long[..333], &pseudo_random_bytes(333, 7)[..]);
        assert_ne!(long, pseudo_random_bytes(1000, 8));
        // Odd-sized reads must give the same stream as one big read.
        let mut reader = PseudoRandomReader::new(1000, 7);
        let mut pieces = Vec::new();
        let mut buf = [0u8; 13];
        loop {
            let read = reader.read(&mut buf).unwrap();
            if read == 0 {
                break;
            }
            pieces.extend_from_slice(&buf[..read]);
        }
        assert_eq!(pieces, long);
    }

    #[test]
    fn git_blob_id_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_sha1(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }
}
