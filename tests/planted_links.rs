//! Links planted inside the cache directory are never followed: with symlinks (and a hard
//! link) to a canary folder outside the cache at every name the cache creates, writes,
//! renames, chmods or deletes (`tmp/<key>.part`, `tmp/<key>.lock`, `blobs/<sha256>`, refs,
//! snapshot folders and entries, the view's temporary names), planted before the cache is
//! opened and between operations, downloads, deletes, gc, verify and recovery leave the canary
//! exactly as it was (every entry's kind, mode, size, mtime, inode and content), and the cache
//! ends up holding the right bytes. A link at one of the cache's own top-level names refuses
//! the open with a message naming it and saying what to do; the cache root itself may be a
//! link. `import_hf_cache` refuses FIFOs without blocking on them and commits only bytes it
//! hashed.

#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use hub_emulator::{write_file, write_pseudo_random_file};
use tabcache::{ErrorKind, ModelCache};

const REPO: &str = "org/model";
const FOLDER: &str = "hub/models--org--model";
const CONFIG: &str = "config.json";
const NESTED: &str = "extra/tokenizer.json";
const Q4: &str = "tiny-Q4_K_M.gguf";
const Q4_LEN: u64 = 300_000;
/// Above the test transfer's parallel threshold: fetched in ranges, with a resume record.
const Q8: &str = "tiny-Q8_0.gguf";
const Q8_LEN: u64 = 6 << 20;
const FILES: [&str; 4] = [CONFIG, NESTED, Q4, Q8];

fn fill(root: &Path) {
    write_file(root, REPO, CONFIG, br#"{"model_type":"llama"}"#).unwrap();
    write_file(root, REPO, NESTED, br#"{"vocab":{}}"#).unwrap();
    write_pseudo_random_file(root, REPO, Q4, Q4_LEN, 41).unwrap();
    write_pseudo_random_file(root, REPO, Q8, Q8_LEN, 42).unwrap();
}

/// A cache directory (not yet created) and, beside it, a canary folder that nothing the cache
/// does may touch.
struct Site {
    _tmp: tempfile::TempDir,
    cache: PathBuf,
    canary: PathBuf,
}

fn site() -> Site {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let canary = tmp.path().join("canary");
    std::fs::create_dir_all(canary.join("sub")).unwrap();
    std::fs::create_dir_all(canary.join("empty")).unwrap();
    let files: [(&str, &[u8], u32); 3] = [
        ("a.bin", b"canary a: writable", 0o644),
        ("ro.bin", b"canary ro: read-only", 0o444),
        ("sub/inner.txt", b"canary inner", 0o600),
    ];
    for (name, bytes, mode) in files {
        let path = canary.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    Site {
        _tmp: tmp,
        cache,
        canary,
    }
}

impl Site {
    /// Plant a symlink at `at` (relative to the cache) to `to` (relative to the canary),
    /// making the real folders above `at` as needed and replacing what is at `at`.
    fn link(&self, at: &str, to: &str) {
        let at = self.cache.join(at);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        remove_entry(&at);
        symlink(self.canary.join(to), &at).unwrap();
    }

    /// Plant a hard link at `at` to the canary file `to`.
    fn hard_link(&self, at: &str, to: &str) {
        let at = self.cache.join(at);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        remove_entry(&at);
        std::fs::hard_link(self.canary.join(to), &at).unwrap();
    }

    /// Plant a FIFO at `at`.
    fn fifo(&self, at: &str) {
        let at = self.cache.join(at);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        remove_entry(&at);
        mkfifo(&at);
    }

    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        snapshot(&self.canary)
    }

    fn assert_untouched(&self, before: &BTreeMap<PathBuf, String>, after_what: &str) {
        let now = self.snapshot();
        assert_eq!(
            &now, before,
            "the canary outside the cache changed after {after_what}"
        );
    }
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; mkfifo reads it only.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Remove whatever is at `path` (a link itself, never what it points to).
fn remove_entry(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// Every entry under `root` (itself included), never following a link: kind, mode, size,
/// mtime, inode, and the content hash of files or the target of links. Reading a file
/// changes only its atime, which is not compared.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, path: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let m = std::fs::symlink_metadata(path).unwrap();
        let t = m.file_type();
        let what = if t.is_symlink() {
            format!("link -> {}", std::fs::read_link(path).unwrap().display())
        } else if t.is_file() {
            format!("file {}", sha256_hex(&std::fs::read(path).unwrap()))
        } else if t.is_dir() {
            "dir".to_string()
        } else {
            "special".to_string()
        };
        out.insert(
            path.strip_prefix(root).unwrap().to_path_buf(),
            format!(
                "{what} mode={:o} len={} mtime={}.{:09} ino={}",
                m.mode(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ino()
            ),
        );
        if t.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for entry in entries {
                walk(root, &entry, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn bytes_on_hub(hub: &Hub, file: &str) -> Vec<u8> {
    std::fs::read(path_of(hub.root(), REPO, file)).unwrap()
}

/// The content key a download of `file` transfers under: `sha256-<oid>` for LFS files,
/// `git-<blob sha1>` for the others (as the listing names them).
fn content_key(hub: &Hub, file: &str) -> String {
    let bytes = bytes_on_hub(hub, file);
    if file.ends_with(".gguf") {
        format!("sha256-{}", sha256_hex(&bytes))
    } else {
        let path = path_of(hub.root(), REPO, file);
        let oid = tabcache::digest::git_blob_sha1_file(&path, bytes.len() as u64).unwrap();
        format!("git-{}", tabcache::digest::to_hex(&oid))
    }
}

/// Every file of the repo is cached with the hub's bytes, read through the view.
fn assert_cached_right(cache: &ModelCache, hub: &Hub) {
    for file in FILES {
        let view = cache
            .file_path(REPO, file, None)
            .unwrap()
            .unwrap_or_else(|| panic!("{file} is cached"));
        assert_eq!(
            std::fs::read(&view).unwrap(),
            bytes_on_hub(hub, file),
            "{file} through {}",
            view.display()
        );
    }
}

/// No link is left in the cache's `blobs/` or `tmp/`, and every blob's bytes hash to its name.
fn assert_blobs_sound(cache_dir: &Path) {
    for folder in ["blobs", "tmp"] {
        for entry in std::fs::read_dir(cache_dir.join(folder)).unwrap() {
            let entry = entry.unwrap();
            let t = entry.file_type().unwrap();
            assert!(
                t.is_file(),
                "{} is not a regular file",
                entry.path().display()
            );
            if folder == "blobs" {
                let name = entry.file_name().to_string_lossy().into_owned();
                assert_eq!(
                    sha256_hex(&std::fs::read(entry.path()).unwrap()),
                    name,
                    "blob {name} holds other bytes"
                );
            }
        }
    }
}

fn download_all(cache: &ModelCache) {
    for file in FILES {
        cache.download_file(REPO, file, None, None).unwrap();
    }
}

/// Run `f` on another thread and fail (instead of hanging) when it takes longer than `limit`:
/// what a call that blocks on a FIFO would do.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}: blocked on a FIFO?"))
}

#[test]
fn links_planted_at_file_names_before_open_are_replaced_never_followed() {
    let hub = hub(fill);
    let site = site();
    let commit = hub.emu.commit_of(REPO).unwrap();
    let snap = format!("{FOLDER}/snapshots/{commit}");
    let q4 = content_key(&hub, Q4);
    let q8 = content_key(&hub, Q8);
    let config = content_key(&hub, CONFIG);
    let q4_sha = sha256_hex(&bytes_on_hub(&hub, Q4));
    // Every name the downloads create, write, chmod or rename, each a link to a canary file.
    site.link(&format!("tmp/{q4}.part"), "a.bin");
    site.link(&format!("tmp/{q4}.lock"), "ro.bin");
    site.link(&format!("tmp/{config}.part"), "sub/inner.txt");
    site.link(&format!("blobs/{q4_sha}"), "ro.bin");
    site.link(&format!("{FOLDER}/refs/main"), "a.bin");
    site.link(&format!("{FOLDER}/refs/main.tabcache-tmp"), "sub/inner.txt");
    site.link(&format!("{snap}/{Q4}"), "ro.bin");
    site.link(&format!("{snap}/.{Q4}.tabcache-link"), "a.bin");
    site.link(&format!("{snap}/.{CONFIG}.tabcache-link"), "ro.bin");
    // A hard link shares the canary file's bytes: a transfer must not write into it.
    site.hard_link(&format!("tmp/{q8}.part"), "a.bin");
    let before = site.snapshot();

    let cache = open(&site.cache, &hub);
    download_all(&cache);
    site.assert_untouched(&before, "downloads over planted links");
    assert_cached_right(&cache, &hub);
    assert_blobs_sound(&site.cache);
    let main = std::fs::read_to_string(site.cache.join(format!("{FOLDER}/refs/main"))).unwrap();
    assert_eq!(main, commit, "refs/main is a real file naming the commit");
    assert!(cache.verify(None, false).unwrap().ok);
}

#[test]
fn links_planted_between_operations_are_replaced_never_followed() {
    let hub = hub(fill);
    let site = site();
    let commit = hub.emu.commit_of(REPO).unwrap();
    let snap = format!("{FOLDER}/snapshots/{commit}");
    let cache = open(&site.cache, &hub);
    cache.scan_repo(REPO, None).unwrap();
    cache.download_file(REPO, CONFIG, None, None).unwrap();
    // Now, with the cache open: links where the next downloads write.
    let q8 = content_key(&hub, Q8);
    site.link(&format!("tmp/{q8}.part"), "ro.bin");
    site.link(&format!("tmp/{q8}.lock"), "a.bin");
    site.link(&format!("{snap}/{Q8}"), "a.bin");
    site.link(&format!("{snap}/{CONFIG}"), "ro.bin"); // over a cached file's entry
    site.link(&format!("{FOLDER}/refs/main"), "sub/inner.txt");
    let before = site.snapshot();
    download_all(&cache);
    cache.scan_repo(REPO, None).unwrap(); // writes refs/main again
    site.assert_untouched(
        &before,
        "downloads and a scan over links planted while open",
    );
    assert_cached_right(&cache, &hub);
    assert_blobs_sound(&site.cache);

    // Deletes: a view entry of the variant's file and an extra entry in the snapshot are
    // links to the canary; removing the variant and then the whole repo unlinks them only.
    let quants: Vec<String> = cache
        .get_manifest(REPO)
        .unwrap()
        .unwrap()
        .quants
        .keys()
        .cloned()
        .collect();
    let q8_key = quants
        .iter()
        .find(|k| k.contains("Q8"))
        .unwrap_or_else(|| panic!("a Q8 variant in {quants:?}"));
    site.link(&format!("{snap}/{Q8}"), "a.bin");
    site.link(&format!("{snap}/planted"), "sub");
    site.link(&format!("{snap}/extra/planted.txt"), "sub/inner.txt");
    let before = site.snapshot();
    let removed = cache.remove_quant(REPO, q8_key).unwrap();
    assert_eq!(removed.files_removed, vec![Q8.to_string()]);
    assert!(!cache.has_file(REPO, Q8, None).unwrap());
    cache.delete_model(REPO).unwrap();
    site.assert_untouched(&before, "remove_quant and delete_model over planted links");
    assert!(!site.cache.join(FOLDER).exists(), "the repo's view is gone");
    assert!(cache.repo_ids().unwrap().is_empty());
}

#[test]
fn a_resumed_download_never_writes_into_a_file_planted_in_its_place() {
    let hub = hub(fill);
    let site = site();
    let cache = open(&site.cache, &hub);
    let q8 = content_key(&hub, Q8);
    let part = site.cache.join(format!("tmp/{q8}.part"));
    // Cancel the ranged download of Q8 part way: its full-length partial file and resume
    // record stay, to be resumed.
    let cancel_part_way = || {
        // Slow enough that the callback sees the transfer before it ends.
        hub.slow_cdn(4_000_000);
        let mut stop_early = |loaded: u64, _total: u64| loaded < (2 << 20);
        let err = cache
            .download_file(REPO, Q8, None, Some(&mut stop_early))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{}", err.message());
        assert!(cache.wait_idle(Duration::from_secs(10)));
        hub.emu.clear_faults();
        assert_eq!(std::fs::metadata(&part).unwrap().len(), Q8_LEN);
    };
    cancel_part_way();
    // A file of the very same length in the canary, hard-linked at the partial file's name:
    // resuming into it would write into the canary.
    std::fs::copy(&part, site.canary.join("lookalike.part")).unwrap();
    site.hard_link(&format!("tmp/{q8}.part"), "lookalike.part");
    let before = site.snapshot();
    cache.download_file(REPO, Q8, None, None).unwrap();
    site.assert_untouched(&before, "a resume over a planted hard link");

    // The same with a symlink.
    cache.delete_model(REPO).unwrap();
    cancel_part_way();
    std::fs::copy(&part, site.canary.join("lookalike-2.part")).unwrap();
    site.link(&format!("tmp/{q8}.part"), "lookalike-2.part");
    let before = site.snapshot();
    let view = cache.download_file(REPO, Q8, None, None).unwrap();
    site.assert_untouched(&before, "a resume over a planted symlink");
    assert_eq!(std::fs::read(view).unwrap(), bytes_on_hub(&hub, Q8));
    assert_blobs_sound(&site.cache);
}

#[test]
fn folders_of_the_view_swapped_for_links_are_replaced_never_entered() {
    let hub = hub(fill);
    let commit = hub.emu.commit_of(REPO).unwrap();
    let snap = format!("{FOLDER}/snapshots/{commit}");
    // Each folder of the view in turn is a link to a canary folder: before open, and while
    // open, the next operation makes a real folder in its place.
    for (at, to) in [
        (FOLDER.to_string(), "empty"),
        (format!("{FOLDER}/snapshots"), "empty"),
        (snap.clone(), "sub"),
        (format!("{snap}/extra"), "sub"),
        (format!("{FOLDER}/refs"), "empty"),
    ] {
        let site = site();
        site.link(&at, to);
        let before = site.snapshot();
        let cache = open(&site.cache, &hub);
        download_all(&cache);
        site.assert_untouched(&before, &format!("downloads with {at} a link"));
        assert_cached_right(&cache, &hub);
        assert!(
            std::fs::symlink_metadata(site.cache.join(&at))
                .unwrap()
                .is_dir(),
            "{at} is a real folder now"
        );

        site.link(&at, to);
        let before = site.snapshot();
        for file in FILES {
            let view = cache.file_path(REPO, file, None).unwrap().unwrap();
            assert_eq!(std::fs::read(view).unwrap(), bytes_on_hub(&hub, file));
        }
        cache.scan_repo(REPO, None).unwrap();
        site.assert_untouched(&before, &format!("file_path and scan with {at} a link"));

        site.link(&at, to);
        let before = site.snapshot();
        cache.delete_model(REPO).unwrap();
        site.assert_untouched(&before, &format!("delete_model with {at} a link"));
        assert!(!site.cache.join(FOLDER).exists());
        assert_blobs_sound(&site.cache);
    }
}

#[test]
fn a_link_at_a_top_level_name_refuses_the_open_saying_what_to_do() {
    let hub = hub(fill);
    for name in ["blobs", "tmp", "hub", "catalog", "gate.lock", "catalog-wal"] {
        let site = site();
        {
            let cache = open(&site.cache, &hub);
            cache.download_file(REPO, CONFIG, None, None).unwrap();
        }
        // The cache's own entry moves into the canary folder and a link replaces it: what a
        // user who "moved blobs/ to another disk" would have.
        let at = site.cache.join(name);
        let moved = site.canary.join(format!("moved-{name}"));
        let had_entry = at.exists();
        if had_entry {
            std::fs::rename(&at, &moved).unwrap();
        } else {
            std::fs::write(&moved, b"").unwrap();
        }
        symlink(&moved, &at).unwrap();
        let before = site.snapshot();
        let err = ModelCache::open(&site.cache, options(&hub))
            .err()
            .unwrap_or_else(|| panic!("the open with {name} a link was refused"));
        site.assert_untouched(&before, &format!("the refused open with {name} a link"));
        assert_eq!(err.kind(), ErrorKind::Io, "{name}: {}", err.message());
        let msg = err.message();
        assert!(
            msg.contains(&at.display().to_string()) && msg.contains("symbolic link"),
            "the message names the link: {msg}"
        );
        assert!(
            msg.contains(&format!("rm {}", at.display())),
            "the message says what to do: {msg}"
        );
        // Doing what it says loses nothing cached.
        std::fs::remove_file(&at).unwrap();
        if had_entry && matches!(name, "blobs" | "tmp" | "hub" | "catalog") {
            std::fs::rename(&moved, &at).unwrap();
        }
        let cache = ModelCache::open(&site.cache, offline_options(&hub)).unwrap();
        let view = cache.file_path(REPO, CONFIG, None).unwrap().unwrap();
        assert_eq!(std::fs::read(view).unwrap(), bytes_on_hub(&hub, CONFIG));
    }
}

#[test]
fn the_cache_root_itself_may_be_a_link() {
    let hub = hub(fill);
    let site = site();
    std::fs::create_dir_all(&site.cache).unwrap();
    let link = site.cache.parent().unwrap().join("cache-link");
    symlink(&site.cache, &link).unwrap();
    let cache = open(&link, &hub);
    download_all(&cache);
    assert_cached_right(&cache, &hub);
    assert_eq!(blob_files(&site.cache).len(), FILES.len());
}

#[test]
fn cache_folders_swapped_for_links_while_open_stop_changes_and_touch_nothing() {
    let hub = hub(fill);
    for name in ["blobs", "tmp", "hub"] {
        let site = site();
        let cache = open(&site.cache, &hub);
        cache.download_file(REPO, CONFIG, None, None).unwrap();
        // Moved out of the way (not into the canary: the store's handle still names it).
        let at = site.cache.join(name);
        let moved = site.cache.with_file_name(format!("moved-{name}"));
        std::fs::rename(&at, &moved).unwrap();
        symlink(site.canary.join("empty"), &at).unwrap();
        let before = site.snapshot();
        let err = cache
            .download_file(REPO, Q4, None, None)
            .expect_err("a download into a swapped folder is refused");
        assert!(
            err.message().contains(&at.display().to_string())
                && err.message().contains("moved or replaced"),
            "{name}: {}",
            err.message()
        );
        let _ = cache.delete_model(REPO);
        let _ = cache.gc(Duration::ZERO);
        site.assert_untouched(
            &before,
            &format!("operations with {name} swapped for a link"),
        );
    }
}

#[test]
fn recovery_gc_and_verify_never_follow_planted_links_or_block_on_fifos() {
    let hub = hub(fill);
    let site = site();
    {
        let cache = open(&site.cache, &hub);
        download_all(&cache);
    }
    let q8_sha = sha256_hex(&bytes_on_hub(&hub, Q8));
    let unrecorded = "ab".repeat(32);
    // Crash leftovers, as links and FIFOs: partial files and locks no record describes, an
    // adoption's copy, a blob no record names, junk in tmp/.
    site.link("tmp/sha256-dead.part", "a.bin");
    site.link("tmp/sha256-dead.lock", "ro.bin");
    site.link("tmp/adopt-leftover", "sub/inner.txt");
    site.link("tmp/junk", "sub");
    site.fifo("tmp/sha256-fifo.part");
    site.link(&format!("blobs/{unrecorded}"), "ro.bin");
    site.fifo(&format!("blobs/{}", "cd".repeat(32)));
    let before = site.snapshot();
    let (dir, opts) = (site.cache.clone(), options(&hub));
    let cache = within(Duration::from_secs(60), "open (recovery)", move || {
        ModelCache::open(dir, opts).unwrap()
    });
    site.assert_untouched(&before, "recovery on open");
    assert_blobs_sound(&site.cache);
    assert_cached_right(&cache, &hub);

    site.link("tmp/sha256-stale.part", "a.bin");
    site.link(&format!("blobs/{unrecorded}"), "ro.bin");
    let before = site.snapshot();
    cache.gc(Duration::ZERO).unwrap();
    site.assert_untouched(&before, "gc");
    assert_blobs_sound(&site.cache);

    // A recorded blob replaced by a link to the canary, another by a FIFO: verify reports
    // both damaged without reading through the link or blocking, and repair fetches them
    // again into real files.
    let q4_sha = sha256_hex(&bytes_on_hub(&hub, Q4));
    site.link(&format!("blobs/{q8_sha}"), "ro.bin");
    site.fifo(&format!("blobs/{q4_sha}"));
    let before = site.snapshot();
    let cache = std::sync::Arc::new(cache);
    let shared = cache.clone();
    let report = within(Duration::from_secs(60), "verify", move || {
        shared.verify(None, true).unwrap()
    });
    let damaged: Vec<&str> = report.damaged.iter().map(|d| d.sha256.as_str()).collect();
    assert!(
        damaged.contains(&q8_sha.as_str()) && damaged.contains(&q4_sha.as_str()),
        "{report:?}"
    );
    assert!(report.ok && report.repair_failed.is_empty(), "{report:?}");
    site.assert_untouched(&before, "verify --repair");
    assert_blobs_sound(&site.cache);
    assert_cached_right(&cache, &hub);
}

#[test]
fn a_rebuild_never_follows_links_or_blocks_on_fifos_in_the_view() {
    let hub = hub(fill);
    let site = site();
    let commit = hub.emu.commit_of(REPO).unwrap();
    {
        let cache = open(&site.cache, &hub);
        download_all(&cache);
    }
    // The catalog is lost; the view holds a FIFO as a ref and links to the canary.
    for sidecar in ["catalog", "catalog-wal", "catalog-shm"] {
        let _ = std::fs::remove_file(site.cache.join(sidecar));
    }
    site.fifo(&format!("{FOLDER}/refs/stuck"));
    site.link(
        &format!("{FOLDER}/snapshots/{commit}/planted.json"),
        "a.bin",
    );
    site.link(&format!("{FOLDER}/snapshots/{}", "1".repeat(40)), "sub");
    let before = site.snapshot();
    let (dir, opts) = (site.cache.clone(), options(&hub));
    let cache = within(Duration::from_secs(60), "open (rebuild)", move || {
        ModelCache::open(dir, opts).unwrap()
    });
    assert!(cache.rebuilt_on_open().is_some());
    site.assert_untouched(&before, "the rebuild");
    assert_cached_right(&cache, &hub);
    assert!(!cache.has_file(REPO, "planted.json", None).unwrap());
}

/// A huggingface_hub cache as huggingface_hub lays it out, holding `files` (path, bytes) of
/// `REPO` at `commit`: blobs named by sha256 (LFS-style, every file here), snapshot links to
/// them, `refs/main`.
fn fake_hf_cache(root: &Path, commit: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let repo = root.join("models--org--model");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    for (path, bytes) in files {
        let sha = sha256_hex(bytes);
        std::fs::write(repo.join("blobs").join(&sha), bytes).unwrap();
        symlink(Path::new("../../blobs").join(&sha), snap.join(path)).unwrap();
    }
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    repo
}

#[test]
fn import_refuses_fifos_without_blocking_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    let commit = "2".repeat(40);
    let good: &[u8] = b"{\"ok\":true}";
    let repo = fake_hf_cache(&hf, &commit, &[("config.json", good)]);
    // A blob that is a FIFO (named as if it held some bytes), linked from the snapshot; a ref
    // that is a FIFO; a snapshot entry that is itself a FIFO.
    let fifo_sha = sha256_hex(b"never read");
    mkfifo(&repo.join("blobs").join(&fifo_sha));
    symlink(
        Path::new("../../blobs").join(&fifo_sha),
        repo.join("snapshots").join(&commit).join("weights.gguf"),
    )
    .unwrap();
    mkfifo(&repo.join("refs/stuck"));
    mkfifo(&repo.join("snapshots").join(&commit).join("pipe.bin"));
    let cache_dir = tmp.path().join("cache");
    let (hf_dir, dir) = (hf.clone(), cache_dir.clone());
    let report = within(Duration::from_secs(60), "import_hf_cache", move || {
        let cache = ModelCache::open(dir, options_for("http://127.0.0.1:9")).unwrap();
        cache.import_hf_cache(Some(&hf_dir)).unwrap()
    });
    assert_eq!(report.files_imported, 1, "{report:?}");
    let reason_for = |name: &str| {
        report
            .skipped
            .iter()
            .find(|s| s.path.ends_with(name))
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("{name} is reported skipped: {report:?}"))
    };
    assert!(
        reason_for("weights.gguf").contains("not a regular file"),
        "{report:?}"
    );
    assert!(
        reason_for("stuck").contains("not a regular file"),
        "{report:?}"
    );
    assert!(!reason_for("pipe.bin").is_empty());
    let cache = ModelCache::open(&cache_dir, options_for("http://127.0.0.1:9")).unwrap();
    assert_eq!(
        cache.get_file(REPO, "config.json", Some(&commit)).unwrap(),
        Some(good.to_vec())
    );
    assert_blobs_sound(&cache_dir);
}

#[test]
fn import_commits_only_the_bytes_it_hashed_while_the_file_is_swapped() {
    // The huggingface_hub blob's path is swapped, over and over, between an inode with the
    // right bytes and one with other bytes of the same size. Whatever an import sees, it
    // never commits the other bytes under the right name: either it hashed the right inode
    // and commits exactly that one (linked, or copied from the file it hashed), or it hashed
    // the wrong one and skips the file as damaged.
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    let commit = "3".repeat(40);
    let right = hub_emulator::pseudo_random_bytes(1 << 20, 51);
    let wrong = hub_emulator::pseudo_random_bytes(1 << 20, 52);
    let sha = sha256_hex(&right);
    let repo = fake_hf_cache(&hf, &commit, &[("weights.gguf", &right)]);
    let blob = repo.join("blobs").join(&sha);
    let sources = tmp.path().join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    std::fs::write(sources.join("right"), &right).unwrap();
    std::fs::write(sources.join("wrong"), &wrong).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, blob, sources) = (stop.clone(), blob.clone(), sources.clone());
        std::thread::spawn(move || {
            let staged = sources.join("staged");
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for which in ["wrong", "right"] {
                    let _ = std::fs::remove_file(&staged);
                    std::fs::hard_link(sources.join(which), &staged).unwrap();
                    std::fs::rename(&staged, &blob).unwrap();
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let (mut committed, mut skipped) = (0, 0);
    for round in 0..40 {
        let dir = tmp.path().join(format!("cache-{round}"));
        let cache = ModelCache::open(&dir, options_for("http://127.0.0.1:9")).unwrap();
        let report = cache.import_hf_cache(Some(&hf)).unwrap();
        committed += report.files_imported;
        skipped += report.skipped.len() as u64;
        if report.files_imported == 1 {
            let held = cache
                .get_file(REPO, "weights.gguf", Some(&commit))
                .unwrap()
                .expect("imported");
            assert_eq!(
                sha256_hex(&held),
                sha,
                "round {round}: the committed file holds the bytes its name says"
            );
        }
        assert_blobs_sound(&dir);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(
        swaps > 40,
        "the path was swapped during the imports ({swaps} times)"
    );
    assert_eq!(
        committed + skipped,
        40,
        "every round imported or skipped the file"
    );
    // Those shared the right inode with the huggingface_hub cache: the wrong bytes never did.
    assert_eq!(
        std::fs::read(sources.join("right")).unwrap(),
        right,
        "the source was never written"
    );
}
