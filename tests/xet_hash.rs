//! Our Xet file hash against the official implementation's: `hf_xet.hash_files` (PyPI, in the
//! test venv) on generated files at the edges of the chunking rules — empty, one byte, one
//! chunk, around the minimum and maximum chunk sizes, long runs of zeros (every chunk the
//! maximum), random data of many chunks and several tree levels, and a mix.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tabcache::xet::file_hash;

/// Deterministic bytes (a 64-bit LCG's top byte).
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(bytes))
        .unwrap();
    path
}

#[test]
fn our_xet_hash_is_hf_xets_on_the_generated_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut mixed = random(700_000, 3);
    mixed.extend(std::iter::repeat_n(0u8, 300_000));
    mixed.extend(random(200_000, 4));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one-byte", vec![42]),
        ("one-chunk", random(5_000, 1)),
        ("min-less-65", random(8 * 1024 - 65, 2)),
        ("min", random(8 * 1024, 2)),
        ("max", random(128 * 1024, 5)),
        ("max-plus-one", random(128 * 1024 + 1, 5)),
        ("zeros", vec![0; 1_000_000]),
        ("random-3m", random(3_000_000, 6)),
        // Hundreds of chunks: several levels of the Merkle tree.
        ("random-40m", random(40 << 20, 7)),
        ("mixed", mixed),
    ];
    let paths: Vec<PathBuf> = cases
        .iter()
        .map(|(name, bytes)| write(dir.path(), name, bytes))
        .collect();
    let script = "import hf_xet, sys\nfor info in hf_xet.hash_files(sys.argv[1:]):\n    print(info.hash, info.file_size)\n";
    let stdout = python_stdout(
        Command::new(test_python())
            .arg("-c")
            .arg(script)
            .args(&paths),
    );
    let theirs: Vec<&str> = stdout.lines().collect();
    assert_eq!(theirs.len(), cases.len(), "{stdout}");
    for ((name, bytes), line) in cases.iter().zip(theirs) {
        let (ours, size) = file_hash(&bytes[..]).unwrap();
        assert_eq!(
            format!("{ours} {size}"),
            line,
            "{name}: ours, then hf_xet's"
        );
    }
}
