//! Xorb chunk records: what a xorb, and every ranged fetch of one, is made of. Each record is
//! an 8-byte header — version (0), compressed length (u24 LE), compression scheme,
//! uncompressed length (u24 LE) — then the compressed bytes. Schemes: 0 stored, 1 an LZ4
//! *frame*, 2 "byte grouping 4" (byte i to group i mod 4, the groups concatenated, the first
//! `len % 4` one byte longer) then an LZ4 frame, which suits the float tensors models are
//! made of. A record is stored when compressing would not shrink it.
//!
//! Decoding checks every length against the header, so a truncated or padded record, an
//! unknown version or an unknown scheme is an error, never wrong bytes. Whether the bytes are
//! the *right* ones is the caller's check (the chunk hash).

use std::fmt;
use std::io::{Read, Write};

/// Every chunk record starts with this many header bytes.
pub const HEADER_LEN: usize = 8;

/// The only record version there is.
const VERSION: u8 = 0;

/// How a chunk's bytes are stored in its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    None = 0,
    Lz4 = 1,
    ByteGrouping4Lz4 = 2,
}

impl Scheme {
    fn from_byte(byte: u8) -> Option<Scheme> {
        match byte {
            0 => Some(Scheme::None),
            1 => Some(Scheme::Lz4),
            2 => Some(Scheme::ByteGrouping4Lz4),
            _ => None,
        }
    }
}

/// What is wrong with a chunk record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than the header or its compressed length says.
    Truncated {
        needed: usize,
        have: usize,
    },
    UnknownVersion(u8),
    UnknownScheme(u8),
    /// The record decoded to another length than its header says.
    LengthMismatch {
        expected: usize,
        got: usize,
    },
    /// The LZ4 frame could not be decoded.
    Lz4(String),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated { needed, have } => {
                write!(f, "chunk record cut short: {have} of {needed} bytes")
            }
            FormatError::UnknownVersion(v) => write!(f, "unknown chunk record version {v}"),
            FormatError::UnknownScheme(s) => write!(f, "unknown chunk compression scheme {s}"),
            FormatError::LengthMismatch { expected, got } => write!(
                f,
                "chunk record decoded to {got} bytes, its header says {expected}"
            ),
            FormatError::Lz4(e) => write!(f, "chunk record is not a valid LZ4 frame: {e}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// A parsed record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes after the header.
    pub compressed_len: usize,
    /// Raw: an unknown scheme is reported when decoding, with the record's place known.
    pub scheme: u8,
    pub uncompressed_len: usize,
}

impl Header {
    /// The header at the start of `bytes`.
    ///
    /// # Errors
    /// Fewer than [`HEADER_LEN`] bytes, or an unknown version.
    pub fn parse(bytes: &[u8]) -> Result<Header, FormatError> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(FormatError::Truncated {
                needed: HEADER_LEN,
                have: bytes.len(),
            });
        };
        if head[0] != VERSION {
            return Err(FormatError::UnknownVersion(head[0]));
        }
        let u24 = |b: &[u8]| b[0] as usize | (b[1] as usize) << 8 | (b[2] as usize) << 16;
        Ok(Header {
            compressed_len: u24(&head[1..4]),
            scheme: head[4],
            uncompressed_len: u24(&head[5..8]),
        })
    }

    /// The whole record's length, header included.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + self.compressed_len
    }
}

/// Appends the record of `chunk` (at most 16 MiB - 1, in practice ≤ 128 KiB) to `out`,
/// compressed with `scheme` unless that would not make it smaller.
pub fn encode(chunk: &[u8], scheme: Scheme, out: &mut Vec<u8>) {
    assert!(
        chunk.len() < 1 << 24,
        "a chunk record holds less than 16 MiB"
    );
    let compressed = match scheme {
        Scheme::None => None,
        Scheme::Lz4 => Some(lz4_frame(chunk)),
        Scheme::ByteGrouping4Lz4 => Some(lz4_frame(&group4(chunk))),
    };
    let (scheme, payload) = match compressed {
        Some(bytes) if bytes.len() < chunk.len() => (scheme, bytes),
        _ => (Scheme::None, chunk.to_vec()),
    };
    write_header(out, payload.len(), scheme as u8, chunk.len());
    out.extend_from_slice(&payload);
}

/// Appends a record with exactly these header fields and payload: for tests and the
/// emulator's faults (an unknown scheme, a corrupt payload), which [`encode`] never writes.
pub fn encode_raw(scheme: u8, payload: &[u8], uncompressed_len: usize, out: &mut Vec<u8>) {
    write_header(out, payload.len(), scheme, uncompressed_len);
    out.extend_from_slice(payload);
}

fn write_header(out: &mut Vec<u8>, compressed_len: usize, scheme: u8, uncompressed_len: usize) {
    let u24 = |n: usize| [n as u8, (n >> 8) as u8, (n >> 16) as u8];
    out.push(VERSION);
    out.extend_from_slice(&u24(compressed_len));
    out.push(scheme);
    out.extend_from_slice(&u24(uncompressed_len));
}

/// Decodes the record at the start of `bytes`, appending the chunk to `out`; returns the
/// record's length (header included), so records can be walked one after another.
///
/// # Errors
/// A record cut short, an unknown version or scheme, an invalid LZ4 frame, or any length
/// that differs from the header's.
pub fn decode(bytes: &[u8], out: &mut Vec<u8>) -> Result<usize, FormatError> {
    let header = Header::parse(bytes)?;
    let payload = bytes
        .get(HEADER_LEN..header.record_len())
        .ok_or(FormatError::Truncated {
            needed: header.record_len(),
            have: bytes.len(),
        })?;
    decode_payload(&header, payload, out)?;
    Ok(header.record_len())
}

/// Decodes one record's payload (the bytes after `header`), appending the chunk to `out`.
///
/// # Errors
/// As [`decode`].
pub fn decode_payload(
    header: &Header,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    if payload.len() != header.compressed_len {
        return Err(FormatError::Truncated {
            needed: header.compressed_len,
            have: payload.len(),
        });
    }
    let start = out.len();
    let scheme =
        Scheme::from_byte(header.scheme).ok_or(FormatError::UnknownScheme(header.scheme))?;
    match scheme {
        Scheme::None => out.extend_from_slice(payload),
        Scheme::Lz4 => unlz4_frame(payload, header.uncompressed_len, out)?,
        Scheme::ByteGrouping4Lz4 => {
            let mut grouped = Vec::with_capacity(header.uncompressed_len);
            unlz4_frame(payload, header.uncompressed_len, &mut grouped)?;
            ungroup4(&grouped, out);
        }
    }
    let got = out.len() - start;
    if got != header.uncompressed_len {
        out.truncate(start);
        return Err(FormatError::LengthMismatch {
            expected: header.uncompressed_len,
            got,
        });
    }
    Ok(())
}

fn lz4_frame(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(bytes.len()));
    encoder.write_all(bytes).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

/// Decodes at most `limit` + 1 bytes, so a frame that claims more than its header cannot
/// make us allocate without bound; the length check then reports it.
fn unlz4_frame(frame: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let decoder = lz4_flex::frame::FrameDecoder::new(frame);
    decoder
        .take(limit as u64 + 1)
        .read_to_end(out)
        .map(|_| ())
        .map_err(|e| FormatError::Lz4(e.to_string()))
}

/// Byte i goes to group i mod 4; the groups are concatenated.
fn group4(bytes: &[u8]) -> Vec<u8> {
    let mut grouped = Vec::with_capacity(bytes.len());
    for group in 0..4 {
        grouped.extend(bytes.iter().skip(group).step_by(4));
    }
    grouped
}

/// The inverse of [`group4`]: with n bytes, the first n % 4 groups are one byte longer.
fn ungroup4(grouped: &[u8], out: &mut Vec<u8>) {
    let n = grouped.len();
    let mut starts = [0usize; 5];
    for group in 0..4 {
        let len = n / 4 + usize::from(group < n % 4);
        starts[group + 1] = starts[group] + len;
    }
    out.reserve(n);
    for i in 0..n {
        out.push(grouped[starts[i % 4] + i / 4]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Floats-like: a slowly varying high byte, noisy low bytes.
        (0..len)
            .map(|i| match i % 4 {
                3 => 0x3f,
                2 => (i / 4096) as u8,
                _ => (i.wrapping_mul(2654435761) >> 13) as u8,
            })
            .collect()
    }

    #[test]
    fn every_scheme_round_trips_and_says_its_lengths() {
        for len in [0, 1, 3, 4, 5, 7, 8191, 65536, 131072] {
            let chunk = sample(len);
            for scheme in [Scheme::None, Scheme::Lz4, Scheme::ByteGrouping4Lz4] {
                let mut record = Vec::new();
                encode(&chunk, scheme, &mut record);
                let header = Header::parse(&record).unwrap();
                assert_eq!(header.uncompressed_len, len);
                assert_eq!(header.record_len(), record.len());
                let mut out = vec![9];
                assert_eq!(decode(&record, &mut out).unwrap(), record.len());
                assert_eq!(&out[1..], &chunk[..], "{scheme:?} {len}");
            }
        }
        // Compressible data is stored compressed; incompressible data is stored as is.
        let mut record = Vec::new();
        encode(&vec![0u8; 65536], Scheme::Lz4, &mut record);
        assert_eq!(record[4], Scheme::Lz4 as u8);
        assert!(record.len() < 4096);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        record.clear();
        encode(&noise, Scheme::Lz4, &mut record);
        assert_eq!(record[4], Scheme::None as u8);
    }

    #[test]
    fn groups_of_four_split_and_join() {
        let bytes: Vec<u8> = (0..11).collect();
        let grouped = group4(&bytes);
        assert_eq!(grouped, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7]);
        let mut out = Vec::new();
        ungroup4(&grouped, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn bad_records_are_errors_not_bytes() {
        let mut record = Vec::new();
        encode(&sample(10_000), Scheme::Lz4, &mut record);
        let mut out = Vec::new();
        // Cut short, in the header and in the payload.
        assert!(matches!(
            decode(&record[..5], &mut out),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&record[..record.len() - 1], &mut out),
            Err(FormatError::Truncated { .. })
        ));
        // Unknown version and scheme.
        let mut bad = record.clone();
        bad[0] = 1;
        assert_eq!(decode(&bad, &mut out), Err(FormatError::UnknownVersion(1)));
        let mut bad = Vec::new();
        encode_raw(7, b"abc", 3, &mut bad);
        assert_eq!(decode(&bad, &mut out), Err(FormatError::UnknownScheme(7)));
        // A header that lies about the length.
        let mut bad = Vec::new();
        encode_raw(0, b"abc", 4, &mut bad);
        assert!(matches!(
            decode(&bad, &mut out),
            Err(FormatError::LengthMismatch { .. })
        ));
        // A corrupt frame.
        let mut bad = record.clone();
        let middle = bad.len() / 2;
        bad[middle..].iter_mut().for_each(|b| *b ^= 0x5a);
        assert!(decode(&bad, &mut out).is_err());
        assert!(out.is_empty());
    }
}
