//! Disk full: a cache on a small tmpfs (mounted in a private mount namespace of a child
//! process, so the test needs no cleanup and leaves nothing mounted) runs out of space during a
//! download. The error must say so, nothing half-done may be visible, what was cached must stay
//! intact, and once space is freed the same download must succeed.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use hub_emulator::{pseudo_random_sha256, write_pseudo_random_file};
use tabcache::ErrorKind;

const REPO: &str = "org/fat";
const SMALL_LEN: u64 = 20 << 20;
const LARGE_LEN: u64 = 30 << 20;
/// Room for the small file and the catalog, not for both files.
const TMPFS_SIZE: &str = "40m";

/// Two files that each fit in what the large file leaves free, but not together.
const PART_LEN: u64 = 6 << 20;
const PARTS: [&str; 2] = ["part-a.onnx", "part-b.onnx"];

fn fill(root: &Path) {
    write_pseudo_random_file(root, REPO, "small.onnx", SMALL_LEN, 1).unwrap();
    write_pseudo_random_file(root, REPO, "large.onnx", LARGE_LEN, 2).unwrap();
    for (i, part) in PARTS.iter().enumerate() {
        write_pseudo_random_file(root, REPO, part, PART_LEN, 3 + i as u64).unwrap();
    }
}

/// Runs inside the child, on the tmpfs.
fn run_in_child(child: &ChildSetup) {
    let cache = child.open();
    cache.download_file(REPO, "small.onnx", None, None).unwrap();
    let err = cache
        .download_file(REPO, "large.onnx", None, None)
        .unwrap_err();
    println!("KIND {:?}", err.kind());
    println!("MESSAGE {}", err.message());
    assert!(!cache.has_file(REPO, "large.onnx", None).unwrap());
    assert_eq!(cache.get_file(REPO, "large.onnx", None).unwrap(), None);
    let small = cache.get_file(REPO, "small.onnx", None).unwrap().unwrap();
    println!(
        "SMALL-INTACT {}",
        sha256_hex(&small) == pseudo_random_sha256(SMALL_LEN, 1)
    );
    drop(small);
    // Free the space and try again.
    cache.delete_model(REPO).unwrap();
    cache.download_file(REPO, "large.onnx", None, None).unwrap();
    let large = cache.get_file(REPO, "large.onnx", None).unwrap().unwrap();
    println!(
        "LARGE-AFTER-FREEING {}",
        sha256_hex(&large) == pseudo_random_sha256(LARGE_LEN, 2)
    );
    drop(cache);
    // A reopened cache is consistent.
    let cache = child.open();
    println!(
        "REOPENED {}",
        cache.has_file(REPO, "large.onnx", None).unwrap()
    );
    // Files that fit one by one but not together: refused before the first one moves.
    let err = cache
        .download_files(REPO, &PARTS, None, None, None)
        .unwrap_err();
    println!("TOGETHER-KIND {:?}", err.kind());
    println!("TOGETHER-MESSAGE {}", err.message());
    println!(
        "TOGETHER-NONE-CACHED {}",
        !PARTS.iter().any(|p| cache.has_file(REPO, p, None).unwrap())
    );
}

#[test]
fn a_full_disk_is_a_clear_error_that_loses_nothing() {
    if let Some(child_env) = ChildSetup::from_env() {
        return run_in_child(&child_env);
    }
    let hub = hub(fill);
    let mount = tempfile::tempdir().unwrap();
    let cache_dir = mount.path().join("cache");
    let child = child_command(
        "a_full_disk_is_a_clear_error_that_loses_nothing",
        &hub,
        &cache_dir,
    );
    // The child command, run by a shell that first mounts the tmpfs. Root (as in CI) can
    // mount in a new mount namespace; others map themselves to root in a new user namespace
    // first.
    let quoted = |arg: &std::ffi::OsStr| format!("'{}'", arg.to_str().unwrap());
    let argv: Vec<String> = std::iter::once(child.get_program())
        .chain(child.get_args())
        .map(quoted)
        .collect();
    let script = format!(
        "mount -t tmpfs -o size={TMPFS_SIZE} tmpfs {} && exec {}",
        quoted(mount.path().as_os_str()),
        argv.join(" ")
    );
    let is_root = unsafe { libc::geteuid() } == 0;
    let ns_flags = if is_root { "-m" } else { "-rm" };
    let env = child.get_envs().filter_map(|(k, v)| Some((k, v?)));
    let out = Command::new("unshare")
        .args([ns_flags, "sh", "-c", &script])
        .envs(env)
        .output()
        .expect("`unshare` (util-linux) is needed for the disk-full test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    // Found anywhere in a line: libtest prints "test <name> ... " before the child's first
    // line when it runs one test at a time.
    let line = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(&format!("{key} ")).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {key} in:\n{stdout}\n{stderr}"))
            .trim()
            .to_string()
    };
    assert_eq!(line("KIND"), format!("{:?}", ErrorKind::DiskFull));
    let message = line("MESSAGE");
    assert!(
        message.contains("disk full") && message.contains("free some space"),
        "{message}"
    );
    assert_eq!(line("SMALL-INTACT"), "true");
    assert_eq!(line("LARGE-AFTER-FREEING"), "true");
    assert_eq!(line("REOPENED"), "true");
    assert_eq!(line("TOGETHER-KIND"), format!("{:?}", ErrorKind::DiskFull));
    let message = line("TOGETHER-MESSAGE");
    assert!(
        message.contains("this download needs 12.0 MiB") && message.contains("free some space"),
        "{message}"
    );
    assert_eq!(line("TOGETHER-NONE-CACHED"), "true");
    for part in PARTS {
        assert_eq!(hub.emu.bytes_sent_for(part), 0, "{part} was transferred");
    }
    assert!(
        !cache_dir.exists(),
        "the tmpfs was not private to the child"
    );
}
