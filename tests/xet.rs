//! Native Xet transfers against the hub emulator's Xet storage (validated against the official
//! client in tests/xet_emulator.rs): a Xet-backed file is rebuilt from xorb pieces with no
//! request to the bridge, byte-exact; a corrupted chunk is caught with its piece and fetched
//! again; refused (expired) tokens and URLs are replaced mid-transfer; an unknown compression
//! scheme falls back to the bridge with a note; a second revision with 1 MiB changed fetches
//! about that MiB, the rest copied from the first revision's blob (the chunk index).

mod common;

use common::*;
use hub_emulator::{
    pseudo_random_sha256, write_pseudo_random_file, write_repo_config, Fault, FaultKind, Listener,
    RepoConfig,
};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const REPO: &str = "org/xet-model";
const FILE: &str = "model.safetensors";
const MIB: u64 = 1 << 20;

fn xet_repo(root: &Path, size: u64, seed: u64) {
    xet_repo_named(root, REPO, size, seed);
}

fn xet_repo_named(root: &Path, repo: &str, size: u64, seed: u64) {
    write_pseudo_random_file(root, repo, FILE, size, seed).unwrap();
    write_repo_config(
        root,
        repo,
        &RepoConfig {
            xet: true,
            ..Default::default()
        },
    )
    .unwrap();
}

/// A hub serving the Xet-backed `REPO/FILE`: `size` pseudo-random bytes from `seed`, in
/// xorbs of at most `xorb_max` bytes (None: the emulator's default, the Hub's 64 MiB).
fn xet_hub(size: u64, seed: u64, xorb_max: Option<u64>) -> Hub {
    match xorb_max {
        Some(max) => hub_with(|root| xet_repo(root, size, seed), |b| b.xorb_max_bytes(max)),
        None => hub(|root| xet_repo(root, size, seed)),
    }
}

/// The file downloaded into a fresh cache and checked byte for byte.
fn download_checked(hub: &Hub, size: u64, seed: u64) -> (tempfile::TempDir, tabcache::ModelCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), hub);
    let path = download(&cache);
    assert_eq!(sha256_of(&path), pseudo_random_sha256(size, seed));
    (dir, cache)
}

/// Requests whose target contains `needle`.
fn requests_for(hub: &Hub, needle: &str) -> Vec<hub_emulator::RequestRecord> {
    hub.settled_requests()
        .into_iter()
        .filter(|r| r.target.contains(needle))
        .collect()
}

fn cas_targets(hub: &Hub) -> Vec<String> {
    hub.settled_requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Cas)
        .map(|r| r.target)
        .collect()
}

fn sha256_of(path: &Path) -> String {
    hub_emulator::sha256_file(path).unwrap()
}

/// Download through the listing (scan first), as the CLI and Python do.
fn download(cache: &tabcache::ModelCache) -> std::path::PathBuf {
    cache.scan_repo(REPO, None).unwrap();
    cache.download_file(REPO, FILE, None, None).unwrap()
}

#[test]
fn a_xet_file_is_rebuilt_from_xorbs_byte_exact_without_the_bridge() {
    let size = 256 * MIB;
    let hub = xet_hub(size, 16, None);
    let (_dir, cache) = download_checked(&hub, size, 16);
    assert!(cache.take_notes().is_empty());
    let cas = cas_targets(&hub);
    assert!(
        cas.iter().any(|t| t.contains("/reconstructions/")),
        "{cas:?}"
    );
    let xorbs = cas.iter().filter(|t| t.contains("xorb")).count();
    assert!(
        xorbs >= 4,
        "a 256 MiB file is several 64 MiB xorbs: {cas:?}"
    );
    assert!(hub.cdn_requests().is_empty(), "{:?}", hub.cdn_requests());
    // Fetched once: the pieces add up to the file (compression aside; random bytes are
    // stored as they are, plus 8 bytes of header per chunk).
    let cas_bytes = hub.emu.cas_bytes_sent();
    assert!(cas_bytes < size + size / 1000, "{cas_bytes}");
}

#[test]
fn a_corrupt_chunk_is_caught_with_its_piece_and_fetched_again() {
    // Three xorbs of about 8, 8 and 4 MiB: every piece is longer than the corrupt offset,
    // whichever a connection asks for first.
    let size = 20 * MIB;
    let hub = xet_hub(size, 17, Some(8 * MIB));
    // One byte 1 MiB into the first piece fetched.
    hub.emu.add_fault(
        Fault::new(FaultKind::Corrupt { offset: MIB })
            .on(Listener::Cas)
            .path("xorb")
            .times(1),
    );
    let (_dir, _cache) = download_checked(&hub, size, 17);
    let cas = cas_targets(&hub);
    let pieces: Vec<&String> = cas.iter().filter(|t| t.contains("xorb")).collect();
    let mut unique = pieces.clone();
    unique.sort();
    unique.dedup();
    // Exactly one piece twice: the corrupt one, nothing else again.
    assert_eq!(unique.len(), 3, "{pieces:?}");
    assert_eq!(pieces.len(), unique.len() + 1, "{pieces:?}");
    assert!(hub.cdn_requests().is_empty());
}

#[test]
fn refused_tokens_and_expired_urls_are_replaced_mid_transfer() {
    let size = 24 * MIB;
    let hub = xet_hub(size, 18, Some(4 * MIB));
    // The first reconstruction is refused (an expired token), and two xorb pieces (expired
    // URLs) later on.
    hub.emu.add_fault(
        Fault::new(FaultKind::ExpireXetAuth)
            .on(Listener::Cas)
            .path("reconstructions")
            .times(1),
    );
    hub.emu.add_fault(
        Fault::new(FaultKind::ExpireXetAuth)
            .on(Listener::Cas)
            .path("xorb")
            .times(2),
    );
    let (_dir, _cache) = download_checked(&hub, size, 18);
    let tokens = requests_for(&hub, "xet-read-token").len();
    let reconstructions = requests_for(&hub, "/reconstructions/").len();
    assert!(tokens >= 2, "the refused token was replaced: {tokens}");
    assert!(
        reconstructions >= 3,
        "fresh URLs were asked for: {reconstructions}"
    );
    assert!(hub.cdn_requests().is_empty());
}

/// A token about to expire is replaced before it is used, so the CAS never has to refuse
/// one: it lives 61 s, a minute is the margin, so any reconstruction asked for a second
/// after the first (here, for the URLs that expire mid-transfer) takes a new token first.
#[test]
fn a_token_close_to_expiry_is_replaced_before_the_cas_refuses_it() {
    let size = 32 * MIB;
    let hub = xet_hub(size, 19, Some(4 * MIB));
    hub.emu.set_xet_token_ttl(61);
    hub.emu.set_xet_url_ttl(1);
    // Slow enough (4 connections x 2 MB/s) that pieces start after their URLs expired.
    hub.emu.add_fault(
        Fault::new(FaultKind::RateLimit {
            bytes_per_sec: 2_000_000,
        })
        .on(Listener::Cas)
        .path("xorb"),
    );
    let (_dir, _cache) = download_checked(&hub, size, 19);
    let tokens = requests_for(&hub, "xet-read-token").len();
    let reconstructions: Vec<u16> = requests_for(&hub, "/reconstructions/")
        .iter()
        .map(|r| r.status)
        .collect();
    assert!(
        reconstructions.len() >= 2,
        "expired URLs were replaced: {reconstructions:?}"
    );
    assert!(
        reconstructions.iter().all(|&status| status == 200),
        "a reconstruction was refused, so a stale token was used: {reconstructions:?}"
    );
    assert!(
        tokens >= 2,
        "the token was replaced before it expired: {tokens} token requests"
    );
}

#[test]
fn an_unknown_compression_scheme_falls_back_to_the_bridge_with_a_note() {
    let size = 12 * MIB;
    let hub = xet_hub(size, 19, None);
    hub.emu.add_fault(
        Fault::new(FaultKind::XetUnknownScheme)
            .on(Listener::Cas)
            .path("xorb"),
    );
    let (_dir, cache) = download_checked(&hub, size, 19);
    let notes = cache.take_notes();
    assert!(
        notes.len() == 1 && notes[0].contains("bridge") && notes[0].contains("scheme"),
        "{notes:?}"
    );
    assert!(!hub.cdn_requests().is_empty(), "the bridge served it");
}

/// Rewrite `len` bytes at `at` of `path` with other pseudo-random bytes.
fn rewrite(path: &Path, at: u64, len: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut rng = XorShift(99);
    let change: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    f.write_all(&change).unwrap();
}

/// Two repos sharing all but a MiB: the second is mostly copied from the first, and deleting
/// it must not take the first one's chunks out of the index with it (a chunk held by two
/// blobs is indexed for each).
#[test]
fn deleting_a_blob_that_shares_chunks_keeps_the_others_indexed() {
    const OTHER: &str = "org/xet-finetune";
    let size = 64 * MIB;
    let hub = hub(|root| {
        xet_repo(root, size, 23);
        xet_repo_named(root, OTHER, size, 23);
        rewrite(&path_of(root, OTHER, FILE), size / 2, MIB);
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    download(&cache);
    let fetch_other = || {
        hub.emu.clear_log();
        cache.scan_repo(OTHER, None).unwrap();
        cache.download_file(OTHER, FILE, None, None).unwrap();
        hub.emu.cas_bytes_sent()
    };
    let first = fetch_other();
    assert!(first <= 4 * MIB, "CAS bytes for the shared file: {first}");
    cache.delete_model(OTHER).unwrap();
    let again = fetch_other();
    assert!(
        again <= 4 * MIB,
        "CAS bytes after the other copy was deleted: {again} (the index lost the first blob's chunks)"
    );
}

#[test]
fn revision_two_with_one_changed_mib_fetches_about_that_mib() {
    let size = 256 * MIB;
    let hub = xet_hub(size, 20, None);
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    let first = download(&cache);
    let first_commit = hub.emu.commit_of(REPO).unwrap();
    // Revision 2: one MiB in the middle rewritten.
    let file = path_of(hub.root(), REPO, FILE);
    rewrite(&file, size / 2, MIB);
    let expected = sha256_of(&file);
    assert_ne!(hub.emu.commit_of(REPO).unwrap(), first_commit);
    hub.emu.clear_log();
    let second = download(&cache);
    assert_eq!(sha256_of(&second), expected);
    assert_ne!(
        sha256_of(&first),
        expected,
        "revision 1 is still cached as it was"
    );
    let cas = cas_targets(&hub);
    let pieces = cas.iter().filter(|t| t.contains("xorb")).count();
    assert_eq!(
        pieces, 1,
        "one xorb piece for the one changed region: {cas:?}"
    );
    let cas_bytes = hub.emu.cas_bytes_sent();
    assert!(
        cas_bytes <= 4 * MIB,
        "CAS bytes for revision 2: {cas_bytes}"
    );
    assert!(hub.cdn_requests().is_empty());
}

/// The child's side: download, printing the bytes held as they grow (the parent kills it
/// halfway; the emulator logs a request's bytes only once it is answered).
fn child_download(child: &ChildSetup) {
    use std::io::Write;
    let cache = child.open();
    cache.scan_repo(REPO, None).unwrap();
    let mut report = |loaded: u64, _total: u64| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "held {loaded}");
        let _ = out.flush();
        true
    };
    cache
        .download_file(REPO, FILE, None, Some(&mut report))
        .unwrap();
    println!("child finished");
}

#[test]
fn a_native_download_killed_halfway_resumes_fetching_under_a_tenth_more() {
    if let Some(child) = ChildSetup::from_env() {
        return child_download(&child);
    }
    let size = 256 * MIB;
    let hub = xet_hub(size, 21, None);
    // Slow the CAS so the kill lands mid-transfer: 4 connections x 16 MB/s.
    let slow = hub.emu.add_fault(
        Fault::new(FaultKind::RateLimit {
            bytes_per_sec: 16_000_000,
        })
        .on(Listener::Cas),
    );
    let dir = tempfile::tempdir().unwrap();
    let test = "a_native_download_killed_halfway_resumes_fetching_under_a_tenth_more";
    let mut child = child_command(test, &hub, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut at_kill = 0;
    for line in lines {
        let line = line.unwrap();
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        assert_ne!(line, "child finished", "the child ended before the kill");
        if let Some(held) = line
            .strip_prefix("held ")
            .and_then(|n| n.parse::<u64>().ok())
        {
            if held >= size / 2 {
                at_kill = held;
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        at_kill >= size / 2,
        "the child stopped reporting before half the file"
    );
    hub.emu.remove_fault(slow);
    let cache = open(dir.path(), &hub);
    assert!(!cache.has_file(REPO, FILE, None).unwrap());
    let path = download(&cache);
    assert_eq!(sha256_of(&path), pseudo_random_sha256(size, 21));
    let total = hub.emu.cas_bytes_sent();
    eprintln!(
        "killed with {at_kill} of {size} bytes held; {total} CAS bytes in all ({:.3}x the file)",
        total as f64 / size as f64
    );
    assert!(
        total <= size + size / 10,
        "CAS bytes {total} for a {size}-byte file killed at {at_kill}"
    );
    assert!(hub.cdn_requests().is_empty());
    assert!(tmp_files(dir.path()).is_empty());
}

#[test]
fn a_cancelled_native_download_stops_at_once_and_the_next_call_resumes() {
    let size = 64 * MIB;
    let hub = xet_hub(size, 22, None);
    let slow = hub.emu.add_fault(
        Fault::new(FaultKind::RateLimit {
            bytes_per_sec: 8_000_000,
        })
        .on(Listener::Cas),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache.scan_repo(REPO, None).unwrap();
    let cancelled_at = std::cell::Cell::new(None);
    let mut stop_at_half = |loaded: u64, total: u64| {
        let go_on = total == 0 || loaded < total / 2;
        if !go_on && cancelled_at.get().is_none() {
            cancelled_at.set(Some(Instant::now()));
        }
        go_on
    };
    let err = cache
        .download_file(REPO, FILE, None, Some(&mut stop_at_half))
        .unwrap_err();
    let returned_after = cancelled_at.get().unwrap().elapsed();
    assert_eq!(err.kind(), tabcache::ErrorKind::Cancelled, "{err}");
    assert!(
        returned_after < Duration::from_secs(1),
        "returned {returned_after:?} after the cancel"
    );
    assert!(!cache.has_file(REPO, FILE, None).unwrap());
    hub.emu.remove_fault(slow);
    let path = cache.download_file(REPO, FILE, None, None).unwrap();
    assert_eq!(sha256_of(&path), pseudo_random_sha256(size, 22));
    // The connections cut at the cancel had bytes in flight; the durable half was kept.
    let total = hub.emu.cas_bytes_sent();
    assert!(total <= size + size / 4, "CAS bytes {total} for {size}");
    assert!(hub.cdn_requests().is_empty());
}
