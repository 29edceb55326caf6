//! Hashing and verification of transferred bytes: sha256 always (the store names blobs by it),
//! plus the git blob sha1 (`sha1("blob {len}\0" + content)`) when that is what the listing
//! gives for a non-LFS file. Streams hash in memory as bytes arrive; ranged transfers hash by
//! reading the file back in file order as its contiguous prefix completes.
//!
//! sha256 is ring's (BoringSSL's assembly, dispatching to SHA extensions, AVX or SSSE3): on
//! CPUs without SHA extensions it runs about twice as fast as the portable `sha2` crate, and
//! the hash is what a fast download waits for (see bench/RESULTS.md).

use std::fs::File;
use std::time::Duration;

use ring::digest::{Context, SHA256};
use sha1::{Digest, Sha1};

use super::pwrite::read_exact_at;
use super::Expected;
use crate::error::{Error, ErrorKind, Result};

/// Read-back piece size: large enough that syscalls are noise next to hashing, small enough
/// that the hasher notices a stop request quickly.
const READ_BACK_CHUNK: usize = 1 << 20;

/// How long the read-back hasher sleeps when it has caught up, unless a writer wakes it first.
const IDLE_WAIT: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digests {
    pub sha256: [u8; 32],
    /// Present when a git sha1 was asked for and the length was known before the first byte.
    pub git_sha1: Option<[u8; 20]>,
    pub len: u64,
}

/// Incremental hashes of one byte stream.
pub(crate) struct ContentHasher {
    sha256: Context,
    git_sha1: Option<(Sha1, u64)>,
    len: u64,
}

impl ContentHasher {
    /// The git sha1 hashes a header holding the length, so it can only run alongside the
    /// sha256 when `known_len` is given; otherwise [`git_blob_sha1_of_file`] computes it later.
    pub fn new(expected: &Expected, known_len: Option<u64>) -> ContentHasher {
        let git_sha1 = match (expected, known_len) {
            (Expected::GitSha1(_), Some(len)) => Some((git_blob_hasher(len), len)),
            _ => None,
        };
        ContentHasher {
            sha256: Context::new(&SHA256),
            git_sha1,
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some((sha1, _)) = &mut self.git_sha1 {
            sha1.update(data);
        }
        self.len += data.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn finish(self) -> Digests {
        let len = self.len;
        Digests {
            sha256: self
                .sha256
                .finish()
                .as_ref()
                .try_into()
                .expect("a sha256 digest is 32 bytes"),
            // A header promising another length gives a meaningless sha1.
            git_sha1: self
                .git_sha1
                .filter(|(_, header_len)| *header_len == len)
                .map(|(h, _)| h.finalize().into()),
            len,
        }
    }
}

fn git_blob_hasher(len: u64) -> Sha1 {
    let mut sha1 = Sha1::new();
    sha1.update(format!("blob {len}\0").as_bytes());
    sha1
}

/// The git blob sha1 of the first `len` bytes of `file`, read back from disk.
pub(crate) fn git_blob_sha1_of_file(
    file: &File,
    len: u64,
    what: &std::path::Path,
) -> Result<[u8; 20]> {
    let mut sha1 = git_blob_hasher(len);
    let mut buf = vec![0u8; READ_BACK_CHUNK];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(buf.len() as u64) as usize;
        read_exact_at(file, &mut buf[..n], offset)
            .map_err(|e| Error::io("reading back", what, e))?;
        sha1.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(sha1.finalize().into())
}

/// Hash `file` from byte 0 to `size` in order, following a prefix that other threads are
/// still writing: `frontier()` says how many bytes from the start are written, and a writer
/// may `unpark` this thread when it moves. The bytes were just written, so the reads come
/// from the page cache, and hashing finishes shortly after the last byte lands instead of
/// re-reading the whole file at the end. `on_hashed(n)` is told each time the first `n` bytes
/// are hashed. Returns `None` when `stop()` turns true first.
pub(crate) fn hash_in_file_order(
    file: &File,
    path: &std::path::Path,
    size: u64,
    expected: &Expected,
    frontier: impl Fn() -> u64,
    stop: impl Fn() -> bool,
    on_hashed: impl Fn(u64),
) -> Result<Option<Digests>> {
    let mut hasher = ContentHasher::new(expected, Some(size));
    let mut buf = vec![0u8; READ_BACK_CHUNK];
    while hasher.len() < size {
        if stop() {
            return Ok(None);
        }
        let hashed = hasher.len();
        let ready = frontier().min(size);
        if ready <= hashed {
            std::thread::park_timeout(IDLE_WAIT);
            continue;
        }
        let n = (ready - hashed).min(buf.len() as u64) as usize;
        read_exact_at(file, &mut buf[..n], hashed)
            .map_err(|e| Error::io("reading back for hashing", path, e))?;
        hasher.update(&buf[..n]);
        on_hashed(hasher.len());
    }
    Ok(Some(hasher.finish()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const NOTHING_CACHED: &str =
    "nothing was cached and the partial file was deleted; retry, and if it fails again the server is serving other bytes than its listing says";

/// The error for bytes that are not the file the listing describes.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("downloaded file is corrupt: {what}; {NOTHING_CACHED}"),
    )
}

/// Check `digests` against what the listing promised. `git_sha1` is the git blob sha1 when it
/// had to be computed after the fact.
pub(crate) fn verify(
    expected: &Expected,
    digests: &Digests,
    git_sha1: Option<[u8; 20]>,
) -> Result<()> {
    match expected {
        Expected::Sha256(want) if *want != digests.sha256 => Err(corrupt(format_args!(
            "expected sha256 {}, got {} ({} bytes)",
            hex(want),
            hex(&digests.sha256),
            digests.len
        ))),
        Expected::GitSha1(want) => {
            let got = git_sha1
                .or(digests.git_sha1)
                .ok_or_else(|| Error::internal("git sha1 was expected but never computed"))?;
            if *want != got {
                return Err(corrupt(format_args!(
                    "expected git blob sha1 {}, got {} ({} bytes)",
                    hex(want),
                    hex(&got),
                    digests.len
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Sha256;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn digests(data: &[u8], expected: &Expected) -> Digests {
        let mut hasher = ContentHasher::new(expected, Some(data.len() as u64));
        // Feed in uneven pieces: the result must not depend on how the bytes arrived.
        for piece in data.chunks(7) {
            hasher.update(piece);
        }
        hasher.finish()
    }

    // Known values from `git hash-object` and `sha256sum`.
    const HELLO_GIT: &str = "ce013625030ba8dba906f756967f9e9ca394464a"; // printf 'hello\n' | git hash-object --stdin
    const EMPTY_GIT: &str = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"; // git hash-object /dev/null
    const HELLO_SHA256: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[test]
    fn git_blob_sha1_matches_git_hash_object() {
        let want: [u8; 20] = unhex(HELLO_GIT);
        let expected = Expected::GitSha1(want);
        let d = digests(b"hello\n", &expected);
        assert_eq!(d.git_sha1, Some(want));
        assert_eq!(d.sha256, unhex::<32>(HELLO_SHA256));
        verify(&expected, &d, None).unwrap();
        let empty: [u8; 20] = unhex(EMPTY_GIT);
        assert_eq!(
            digests(b"", &Expected::GitSha1(empty)).git_sha1,
            Some(empty)
        );
    }

    #[test]
    fn git_blob_sha1_of_a_file_read_back_matches() {
        let path = std::env::temp_dir().join(format!("tabcache-hasher-{}", std::process::id()));
        std::fs::write(&path, b"hello\nand more bytes after the blob").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            git_blob_sha1_of_file(&file, 6, &path).unwrap(),
            unhex::<20>(HELLO_GIT)
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_wrong_length_header_gives_no_git_sha1() {
        let mut hasher = ContentHasher::new(&Expected::GitSha1([0; 20]), Some(5));
        hasher.update(b"hello\n");
        assert_eq!(hasher.finish().git_sha1, None);
    }

    #[test]
    fn mismatches_are_corrupt_and_name_both_values() {
        let d = digests(b"hello\n", &Expected::Unknown);
        let err = verify(&Expected::Sha256([0xab; 32]), &d, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(
            err.message().contains(&"ab".repeat(32)),
            "{}",
            err.message()
        );
        assert!(err.message().contains(HELLO_SHA256), "{}", err.message());
        assert!(err.message().contains("nothing was cached"));

        let d = digests(b"hello!", &Expected::GitSha1([0; 20]));
        let err = verify(&Expected::GitSha1(unhex(HELLO_GIT)), &d, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains(HELLO_GIT), "{}", err.message());
        verify(&Expected::Unknown, &d, None).unwrap();
    }

    #[test]
    fn read_back_hasher_follows_a_growing_prefix() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let path = std::env::temp_dir().join(format!("tabcache-follow-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        file.set_len(data.len() as u64).unwrap();
        let written = AtomicU64::new(0);
        let reported = AtomicU64::new(0);
        let got = std::thread::scope(|s| {
            let hasher = s.spawn(|| {
                hash_in_file_order(
                    &file,
                    &path,
                    data.len() as u64,
                    &Expected::Unknown,
                    || written.load(Ordering::Acquire),
                    || false,
                    |n| {
                        // Reported hashed prefixes only grow and never pass what was written.
                        assert!(n > reported.swap(n, Ordering::Relaxed));
                        assert!(n <= written.load(Ordering::Acquire));
                    },
                )
            });
            for piece in data.chunks(300_001) {
                let at = written.load(Ordering::Relaxed);
                super::super::pwrite::write_all_at(&file, piece, at).unwrap();
                written.fetch_add(piece.len() as u64, Ordering::Release);
                hasher.thread().unpark();
            }
            hasher.join().unwrap()
        });
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(got.unwrap().unwrap().sha256, want);
        assert_eq!(reported.load(Ordering::Relaxed), data.len() as u64);
        // And it gives up when told to stop.
        let stopped = hash_in_file_order(
            &file,
            &path,
            data.len() as u64 + 1,
            &Expected::Unknown,
            || 0,
            || true,
            |_| panic!("nothing may be hashed after a stop"),
        )
        .unwrap();
        assert!(stopped.is_none());
        std::fs::remove_file(&path).unwrap();
    }
}
