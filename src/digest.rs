//! Hex encoding and whole-file hashing: the names blobs go by (sha256) and the git blob sha1
//! that the Hub reports for files not stored in LFS.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha1::Digest as _;

use crate::error::{Error, Result};
use crate::progress::Watch;

pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Lower-case hex of exactly `N` bytes, or None.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Whether `s` is a lower- or upper-case hex string of exactly `n` bytes.
pub fn is_hex_of_len(s: &str, n: usize) -> bool {
    s.len() == n * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Feed a file's content to `consume` in pieces; returns how many bytes it read. Only a
/// regular file is read: a FIFO, device or socket at `path` is refused without blocking.
pub fn read_chunks(path: &Path, consume: impl FnMut(&[u8])) -> Result<u64> {
    let mut file =
        crate::dir::open_regular_path(path).map_err(|e| Error::io("could not open", path, e))?;
    read_file_chunks(&mut file, path, &Watch::default(), consume)
}

/// Feed what is left of an open file to `consume` in pieces; returns how many bytes it read.
/// `path` names the file in errors. Each piece counts in `watch`, which is checked between
/// pieces: a cancel stops the read within a piece (1 MiB) with `Cancelled`.
pub(crate) fn read_file_chunks(
    file: &mut File,
    path: &Path,
    watch: &Watch,
    mut consume: impl FnMut(&[u8]),
) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        watch.check()?;
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("could not read", path, e))?;
        if n == 0 {
            return Ok(read);
        }
        consume(&buf[..n]);
        watch.add(n as u64);
        read += n as u64;
    }
}

/// The sha256 of a file's content, read in pieces.
pub fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let mut hasher = sha2::Sha256::new();
    read_chunks(path, |chunk| hasher.update(chunk))?;
    Ok(hasher.finalize().into())
}

/// The git blob id of a file of `size` bytes: sha1 of `"blob {size}\0"` and its content.
pub fn git_blob_sha1_file(path: &Path, size: u64) -> Result<[u8; 20]> {
    let mut file =
        crate::dir::open_regular_path(path).map_err(|e| Error::io("could not open", path, e))?;
    git_blob_sha1_of(&mut file, size, path)
}

/// The git blob id of `bytes`, held in memory (an LFS pointer, say).
pub fn git_blob_sha1(bytes: &[u8]) -> [u8; 20] {
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hasher.finalize().into()
}

/// [`git_blob_sha1_file`] of an open file (read from where it stands).
pub(crate) fn git_blob_sha1_of(file: &mut File, size: u64, path: &Path) -> Result<[u8; 20]> {
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {size}\0").as_bytes());
    read_file_chunks(file, path, &Watch::default(), |chunk| hasher.update(chunk))?;
    Ok(hasher.finalize().into())
}

/// The sha256 of what is left of an open file, counted in and stopped by `watch`. `path`
/// names it in errors.
pub(crate) fn sha256_of(file: &mut File, path: &Path, watch: &Watch) -> Result<[u8; 32]> {
    let mut hasher = sha2::Sha256::new();
    read_file_chunks(file, path, watch, |chunk| hasher.update(chunk))?;
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex::<4>("0001abff"), Some(bytes));
        assert_eq!(from_hex::<4>("0001ABFF"), Some(bytes));
        assert_eq!(from_hex::<4>("0001abf"), None);
        assert_eq!(from_hex::<4>("0001abfg"), None);
        assert!(is_hex_of_len("0001abff", 4));
        assert!(!is_hex_of_len("0001abfg", 4));
    }
}
