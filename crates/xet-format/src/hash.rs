//! The Xet file hash: what the Hub lists as `xetHash` for a Xet-backed file. The bytes are cut
//! into content-defined chunks (a gear hash over the bytes places boundaries, 8 KiB to
//! 128 KiB, 64 KiB on average), each chunk is hashed with keyed BLAKE3, and the chunk hashes
//! are folded into a Merkle tree whose root, keyed once more, is the file hash.
//!
//! The rules are those of the official implementation (xet-core), to the byte, because the
//! Hub compares hashes: the first `MIN_CHUNK - 65` bytes of a chunk are not hashed at all
//! (the gear hash only remembers its last 64 bytes), and no chunk is shorter than
//! `MIN_CHUNK` but the last.
//! Files are read in pieces: memory stays at one maximum chunk whatever the file's size.

use std::fmt;
use std::io::{self, Read};

/// Chunk boundaries: at least this long (less 64 bytes, see the module note) ...
pub const MIN_CHUNK: usize = 8 * 1024;
/// ... at most this long ...
pub const MAX_CHUNK: usize = 128 * 1024;
/// ... and where the gear hash's top 16 bits are zero (a 64 KiB mean).
const MASK: u64 = 0xFFFF_0000_0000_0000;
/// The gear hash depends on this many of the last bytes only.
const GEAR_WINDOW: usize = 64;

const DATA_KEY: [u8; 32] = [
    102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16,
    155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41,
];
const NODE_KEY: [u8; 32] = [
    1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83, 111, 55,
    199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63,
];
/// The key of the last step, root to file hash.
const FILE_KEY: [u8; 32] = [0; 32];

/// A Xet hash (of a chunk, a tree node or a file): 32 bytes, shown the Hub's way.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct XetHash(pub [u8; 32]);

impl XetHash {
    /// The last word as a little-endian integer: what the Merkle tree cuts on.
    fn last_word(&self) -> u64 {
        u64::from_le_bytes(self.0[24..32].try_into().expect("8 bytes"))
    }
}

impl fmt::Display for XetHash {
    /// As in `xetHash`: each 8-byte word printed as a little-endian integer in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for word in self.0.chunks_exact(8) {
            let value = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            write!(f, "{value:016x}")?;
        }
        Ok(())
    }
}

/// A string that is not 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadHex;

impl fmt::Display for BadHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Xet hash is 64 hex digits")
    }
}

impl std::error::Error for BadHex {}

impl std::str::FromStr for XetHash {
    type Err = BadHex;

    /// The inverse of `Display`: each 16-digit word is a little-endian integer.
    fn from_str(text: &str) -> Result<XetHash, BadHex> {
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadHex);
        }
        let mut bytes = [0u8; 32];
        for (i, word) in bytes.chunks_exact_mut(8).enumerate() {
            let value = u64::from_str_radix(&text[16 * i..16 * (i + 1)], 16).map_err(|_| BadHex)?;
            word.copy_from_slice(&value.to_le_bytes());
        }
        Ok(XetHash(bytes))
    }
}

impl fmt::Debug for XetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XetHash({self})")
    }
}

/// A chunk's hash.
pub fn chunk_hash(bytes: &[u8]) -> XetHash {
    XetHash(*blake3::keyed_hash(&DATA_KEY, bytes).as_bytes())
}

/// The content-defined chunks of a stream, one after another.
pub struct Chunker<R> {
    reader: R,
    /// The bytes read and not yet given out as chunks (at most [`MAX_CHUNK`] once filled).
    pending: Vec<u8>,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R) -> Chunker<R> {
        Chunker {
            reader,
            pending: Vec::with_capacity(2 * MAX_CHUNK),
            eof: false,
        }
    }

    /// The next chunk's bytes (borrowed until the next call), or None at the end.
    ///
    /// # Errors
    /// What reading the stream gave.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        // A boundary is decided within the first MAX_CHUNK bytes: have them, or the end.
        while !self.eof && self.pending.len() < MAX_CHUNK {
            let start = self.pending.len();
            self.pending.resize(start + MAX_CHUNK, 0);
            let n = loop {
                match self.reader.read(&mut self.pending[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.pending.truncate(start);
                        return Err(e);
                    }
                }
            };
            self.pending.truncate(start + n);
            self.eof = n == 0;
        }
        if self.pending.is_empty() {
            return Ok(None);
        }
        let len = self.boundary();
        let rest = self.pending.split_off(len);
        Ok(Some(std::mem::replace(&mut self.pending, rest)))
    }

    /// Where the chunk starting at `pending[0]` ends. The gear state starts at 0 for each
    /// chunk, the first `MIN_CHUNK - 65` bytes are not hashed, and a match before
    /// `MIN_CHUNK` (possible in the 64 bytes the gear hash needs to forget its start) is no
    /// boundary.
    fn boundary(&mut self) -> usize {
        let available = self.pending.len();
        let skip = (MIN_CHUNK - GEAR_WINDOW - 1).min(available);
        let end = available.min(MAX_CHUNK);
        let mut gear = 0u64;
        let mut cut = end;
        for (i, &byte) in self.pending[skip..end].iter().enumerate() {
            gear = (gear << 1).wrapping_add(gearhash::DEFAULT_TABLE[byte as usize]);
            if gear & MASK == 0 && skip + i + 1 >= MIN_CHUNK {
                cut = skip + i + 1;
                break;
            }
        }
        cut
    }
}

/// Fold `(hash, size)` leaves into the Merkle root (all zeros for none).
pub fn merkle_root(leaves: &[(XetHash, u64)]) -> XetHash {
    if leaves.is_empty() {
        return XetHash::default();
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len() / 2 + 1);
        let mut rest = &level[..];
        while !rest.is_empty() {
            let cut = next_cut(rest);
            next.push(node(&rest[..cut]));
            rest = &rest[cut..];
        }
        level = next;
    }
    level[0].0
}

/// How many of `nodes` the next group takes: all when 2 or fewer; else up to and including
/// the first node from index 2 whose hash's last word is a multiple of 4, at most 9.
fn next_cut(nodes: &[(XetHash, u64)]) -> usize {
    if nodes.len() <= 2 {
        return nodes.len();
    }
    let end = nodes.len().min(9);
    (2..end)
        .find(|&i| nodes[i].0.last_word().is_multiple_of(4))
        .map_or(end, |i| i + 1)
}

/// A group's node: keyed BLAKE3 over its `"{hash} : {size}\n"` lines, and the sizes' sum.
fn node(group: &[(XetHash, u64)]) -> (XetHash, u64) {
    let mut text = String::with_capacity(group.len() * 90);
    let mut size = 0;
    for (hash, len) in group {
        text.push_str(&format!("{hash} : {len}\n"));
        size += len;
    }
    (
        XetHash(*blake3::keyed_hash(&NODE_KEY, text.as_bytes()).as_bytes()),
        size,
    )
}

/// The file hash of the Merkle root of its chunks (all zeros for an empty file).
pub fn file_hash_of_root(root: XetHash, empty: bool) -> XetHash {
    if empty {
        return XetHash::default();
    }
    XetHash(*blake3::keyed_hash(&FILE_KEY, &root.0).as_bytes())
}

/// Chunks in flight between the chunker and the hashing threads: bounds memory to this many
/// maximum chunks (4 MiB).
const IN_FLIGHT: usize = 32;

/// The Xet hash of everything `reader` gives, and its length. The chunk boundaries are found
/// on this thread (the gear hash is one sequential pass); the chunks are hashed on the other
/// cores meanwhile, so the hash is not bound by one core the way sha256 is.
///
/// # Errors
/// What reading gave.
pub fn file_hash(reader: impl Read) -> io::Result<(XetHash, u64)> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1));
    file_hash_with(reader, workers.max(1))
}

/// [`file_hash`] with `workers` hashing threads beside the chunking one.
pub fn file_hash_with(reader: impl Read, workers: usize) -> io::Result<(XetHash, u64)> {
    let mut chunker = Chunker::new(reader);
    let (to_hash, chunks) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(IN_FLIGHT);
    let chunks = std::sync::Mutex::new(chunks);
    let (to_collect, hashed) = std::sync::mpsc::channel::<(usize, XetHash, u64)>();
    let (read, leaves) = std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            let (chunks, to_collect) = (&chunks, to_collect.clone());
            scope.spawn(move || loop {
                let next = chunks.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((index, bytes)) = next else { return };
                let _ = to_collect.send((index, chunk_hash(&bytes), bytes.len() as u64));
            });
        }
        drop(to_collect);
        let mut count = 0;
        let read = loop {
            match chunker.next_chunk() {
                Ok(Some(bytes)) => {
                    // The workers only stop when this sender is gone.
                    let _ = to_hash.send((count, bytes));
                    count += 1;
                }
                Ok(None) => break Ok(count),
                Err(e) => break Err(e),
            }
        };
        drop(to_hash);
        let mut leaves: Vec<(usize, XetHash, u64)> = hashed.iter().collect();
        leaves.sort_unstable_by_key(|(index, _, _)| *index);
        (read, leaves)
    });
    read?;
    let total = leaves.iter().map(|(_, _, len)| len).sum();
    let leaves: Vec<(XetHash, u64)> = leaves.into_iter().map(|(_, h, len)| (h, len)).collect();
    let root = merkle_root(&leaves);
    Ok((file_hash_of_root(root, leaves.is_empty()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> XetHash {
        let hash: XetHash = text.parse().unwrap();
        assert_eq!(hash.to_string(), text);
        hash
    }

    /// xet-core's reference values for the tree (merklehash's `test_correctness`): leaves, the
    /// root, and the file hash with the zero salt.
    #[test]
    fn the_merkle_tree_matches_the_reference() {
        let a = hex("cfc5d07f6f03c29bbf424132963fe08d19a37d5757aaf520bf08119f05cd56d6");
        let b = hex("c3e67584b5c4fc2a89837ec39e40f2c8a6bb0b2987ac94cd4b31e5fbdd210a72");
        let c = hex("0d2beb91b9196929a5ddec9f6e306924ddf4a24268e3e59fd8464738d525af37");
        let d = hex("adf8773496a9b7319b2e50dc98093f344053b17d8ad37100b9c07d9805988784");
        let z = XetHash::default();
        // (leaves, root, file hash)
        type Case = (Vec<(XetHash, u64)>, &'static str, &'static str);
        let cases: Vec<Case> = vec![
            (
                vec![(z, 0)],
                "0000000000000000000000000000000000000000000000000000000000000000",
                "638a6bc391964a85939d48f008e8bdbae6a7975e7ca2d87a3ce2492f4e4d8a4c",
            ),
            (
                vec![(a, 100)],
                "cfc5d07f6f03c29bbf424132963fe08d19a37d5757aaf520bf08119f05cd56d6",
                "8e16257caa3fe079d484d872a8975264b2ff683b0d6db9028cc7c0f968a45661",
            ),
            (
                vec![(a, 100), (b, 200), (c, 300)],
                "71ec1275fca074724e2dd666921b3277c7cee603e4d025bcab2d4050015be2bc",
                "54e55dccc6653c612bdb5576c5d3cb34bb31bc4e100248abccf4c908b3ef7715",
            ),
            (
                vec![(a, 100); 4],
                "89f2ada89ff8c96763c6b25010e6dd76a4c05b1466207633ea559acf2093211b",
                "2cdba690d0e09563596e0cda626d43eb4c96ef1e994fe72d9b2f5a83cfcd36dd",
            ),
            (
                vec![(a, 100), (b, 200), (a, 100), (b, 200), (c, 300), (d, 400)],
                "52c826f99507aa05d0b45e9837fa1709e0485425cfbcb1e80db3905cf98b3ee9",
                "91d21684db364c8883ab8209fa5eb2e781cf07f37e1fa43e731c30839afe422f",
            ),
            (
                vec![(z, 0), (a, 100), (z, 0), (a, 100), (z, 0)],
                "f36c6a6374a567efd36ed087aeb680b57e3af4e0b5b8e7be2593df4cb647a2de",
                "ab2f46d31855e1133b3b5b70e78f841394a648710a208923b221c1a8a0572a1f",
            ),
        ];
        for (leaves, root, file) in cases {
            let got = merkle_root(&leaves);
            assert_eq!(got.to_string(), root, "{leaves:?}");
            assert_eq!(file_hash_of_root(got, false).to_string(), file);
        }
        assert_eq!(merkle_root(&[]), XetHash::default());
    }

    #[test]
    fn chunks_cover_the_stream_within_the_size_limits() {
        let mut state = 7u64;
        let data: Vec<u8> = (0..3_000_000)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        let mut chunker = Chunker::new(&data[..]);
        let mut joined = Vec::new();
        let mut sizes = Vec::new();
        while let Some(chunk) = chunker.next_chunk().unwrap() {
            sizes.push(chunk.len());
            joined.extend_from_slice(&chunk);
        }
        assert_eq!(joined, data);
        let (last, body) = sizes.split_last().unwrap();
        assert!(*last <= MAX_CHUNK);
        assert!(body.iter().all(|&s| (MIN_CHUNK..=MAX_CHUNK).contains(&s)));
        let mean = data.len() / sizes.len();
        assert!((32 << 10..=96 << 10).contains(&mean), "mean chunk {mean}");
        // Zeros never match the mask: every chunk is the maximum.
        let zeros = vec![0u8; 3 * MAX_CHUNK + 5];
        let mut chunker = Chunker::new(&zeros[..]);
        let mut sizes = Vec::new();
        while let Some(chunk) = chunker.next_chunk().unwrap() {
            sizes.push(chunk.len());
        }
        assert_eq!(sizes, [MAX_CHUNK, MAX_CHUNK, MAX_CHUNK, 5]);
        assert_eq!(file_hash(&[][..]).unwrap(), (XetHash::default(), 0));
        // However many threads hash, the order of the leaves is the stream's.
        let one = file_hash_with(&data[..], 1).unwrap();
        for workers in [2, 3, 8] {
            assert_eq!(file_hash_with(&data[..], workers).unwrap(), one);
        }
    }
}
