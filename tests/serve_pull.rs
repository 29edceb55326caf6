//! Pull-through of `tabcache::serve` over real HTTP on 127.0.0.1, the hub emulator as the
//! cache's upstream: a file the cache lacks is fetched once however many clients ask (the
//! emulator's byte counters tell), streamed while it arrives, held back at its end until it
//! verifies (a corrupt body cuts every client and caches nothing), and cached like any
//! download; `HEAD`, `If-None-Match` and ranges of an uncached file; listings from the
//! upstream; the upstream token never shown; and misses without pull-through or offline.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use hub_emulator::{Fault, FaultKind, Listener};
use serde_json::Value;
use tabcache::serve::{ServeOptions, Server};
use tabcache::{CacheOptions, ModelCache};

const REPO: &str = "org/pulled";
/// LFS by its extension, so the upstream redirects its bytes to the CDN listener.
const FILE: &str = "model.bin";
const CONFIG: &[u8] = br#"{"model_type": "bert"}"#;
const SEED: u64 = 11;

struct Setup {
    hub: Hub,
    dir: tempfile::TempDir,
    cache: ModelCache,
}

/// An upstream with `config.json`, `onnx/tokenizer.json` and `FILE` of `size` bytes, and an
/// empty cache that points at it (never scanned: files are planned by a resolve upstream).
fn setup(size: u64) -> Setup {
    setup_with(size, options)
}

fn setup_with(size: u64, cache_options: impl FnOnce(&Hub) -> CacheOptions) -> Setup {
    let hub = hub(|root| {
        hub_emulator::write_file(root, REPO, "config.json", CONFIG).unwrap();
        hub_emulator::write_file(root, REPO, "onnx/tokenizer.json", b"{}").unwrap();
        hub_emulator::write_pseudo_random_file(root, REPO, FILE, size, SEED).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::open(dir.path(), cache_options(&hub)).unwrap();
    Setup { hub, dir, cache }
}

/// A server with the default options: pull-through on.
fn serve(cache: &ModelCache) -> Server {
    Server::start(cache, ServeOptions::default()).unwrap()
}

fn url_of(server: &Server, path: &str) -> String {
    format!("{}/{REPO}/resolve/main/{path}", server.url())
}

/// The emulator's request log once it is complete, then emptied.
fn settle_and_clear(hub: &Hub) {
    hub.settled_requests();
    hub.emu.clear_log();
}

/// Nothing of `FILE` is in the cache: no blob file, no catalog record, no view entry.
fn assert_nothing_cached(s: &Setup) {
    assert!(!s.cache.has_file(REPO, FILE, None).unwrap());
    assert_eq!(blob_files(s.dir.path()), Vec::<String>::new());
    let catalog = check_catalog(s.dir.path());
    assert!(catalog.files.is_empty(), "{:?}", catalog.files);
    assert!(catalog.refs.is_empty(), "{:?}", catalog.refs);
    let in_view: Vec<_> = walk(&s.dir.path().join("hub"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == FILE))
        .collect();
    assert!(in_view.is_empty(), "{in_view:?}");
}

/// Three clients at once, one upstream transfer of 256 MiB, three correct bodies; then the
/// file is cached, and asking again makes no request upstream.
#[test]
fn three_clients_at_once_share_one_upstream_transfer() {
    const SIZE: u64 = 256 << 20;
    let s = setup(SIZE);
    let want = hub_emulator::pseudo_random_sha256(SIZE, SEED);
    let server = serve(&s.cache);
    let url = url_of(&server, FILE);
    settle_and_clear(&s.hub);
    let started = Instant::now();
    let barrier = std::sync::Barrier::new(3);
    let bodies: Vec<Streamed> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    get_streamed(&url, &[])
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    eprintln!("three clients of {SIZE} bytes took {:?}", started.elapsed());
    // Server, clients and emulator share this process: a whole file held anywhere in it would
    // show.
    let peak = peak_rss_kib().unwrap();
    eprintln!("peak resident memory {peak} KiB");
    assert!(peak < SIZE / 1024, "peak resident memory {peak} KiB");
    for body in &bodies {
        assert_eq!(body.status, 200);
        assert_eq!(body.ended, Ok(()));
        assert_eq!((body.received, body.sha256.as_str()), (SIZE, want.as_str()));
    }
    let upstream = s.hub.settled_requests();
    let cdn_bytes: u64 = upstream
        .iter()
        .filter(|r| r.listener == Listener::Cdn)
        .map(|r| r.body_bytes)
        .sum();
    eprintln!("the upstream sent {cdn_bytes} file bytes");
    assert!(
        (SIZE..SIZE + SIZE / 16).contains(&cdn_bytes),
        "one transfer of {SIZE} bytes expected, the upstream sent {cdn_bytes}"
    );

    // Cached like any download: catalog, blob, view.
    assert!(s.cache.has_file(REPO, FILE, None).unwrap());
    let listed = s.cache.list_files(REPO).unwrap();
    assert!(
        listed
            .iter()
            .any(|f| f.path == FILE && f.size == SIZE && f.sha256 == want),
        "{listed:?}"
    );
    assert_eq!(blob_files(s.dir.path()), vec![want.clone()]);
    let view = s.cache.file_path(REPO, FILE, None).unwrap().unwrap();
    assert_eq!(std::fs::metadata(view).unwrap().len(), SIZE);

    s.hub.emu.clear_log();
    let again = get_streamed(&url, &[]);
    assert_eq!(
        (again.received, again.sha256.as_str()),
        (SIZE, want.as_str())
    );
    assert!(
        s.hub.settled_requests().is_empty(),
        "a cached file made requests upstream: {:?}",
        s.hub.emu.requests()
    );
}

/// With the upstream flipping a byte in the middle of the file, every client's answer ends
/// before its last byte, and nothing is cached.
#[test]
fn a_corrupt_upstream_body_cuts_every_client_and_caches_nothing() {
    const SIZE: u64 = 24 << 20;
    let s = setup(SIZE);
    s.hub.emu.add_fault(
        Fault::new(FaultKind::Corrupt { offset: SIZE / 2 })
            .on(Listener::Cdn)
            .path(FILE),
    );
    let server = serve(&s.cache);
    let url = url_of(&server, FILE);
    let bodies: Vec<Streamed> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| get_streamed(&url, &[])))
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for body in &bodies {
        // The head went out with the first bytes; the end never came.
        assert_eq!(body.status, 200);
        assert!(body.received < SIZE, "a client got all {SIZE} bytes");
        assert!(body.ended.is_err(), "the answer ended as if complete");
    }
    assert!(s.cache.wait_idle(Duration::from_secs(10)));
    assert_nothing_cached(&s);
    assert!(
        !tmp_files(s.dir.path()).iter().any(|n| n.ends_with(".part")),
        "the corrupt partial file was kept: {:?}",
        tmp_files(s.dir.path())
    );
}

/// The first bytes reach a client while the transfer still runs (the upstream is slow), and
/// the whole body follows, correct.
#[test]
fn bytes_reach_a_client_while_the_transfer_runs() {
    const SIZE: u64 = 16 << 20;
    let s = setup(SIZE);
    s.hub.slow_cdn(2 << 20);
    let server = serve(&s.cache);
    let mut cached_at_first_byte = None;
    let body = stream_with(&url_of(&server, FILE), &[], |received| {
        cached_at_first_byte
            .get_or_insert_with(|| (received, s.cache.has_file(REPO, FILE, None).unwrap()));
    });
    let (first, cached) = cached_at_first_byte.unwrap();
    assert!(
        !cached,
        "the file was already cached when the first {first} bytes arrived: not streamed"
    );
    assert_eq!(
        (body.received, body.sha256),
        (SIZE, hub_emulator::pseudo_random_sha256(SIZE, SEED))
    );
    assert!(s.cache.has_file(REPO, FILE, None).unwrap());
}

/// A request written by hand whose answer the test reads when it chooses: the head now, the
/// body (hashed) later.
struct RawClient {
    stream: TcpStream,
    head: String,
    /// Body bytes read along with the head.
    early: Vec<u8>,
}

impl RawClient {
    fn get(server: &Server, path: &str) -> RawClient {
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET /{REPO}/resolve/main/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let split = loop {
            if let Some(i) = all.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the connection closed before the head");
            all.extend_from_slice(&buf[..n]);
        };
        RawClient {
            stream,
            head: String::from_utf8_lossy(&all[..split]).into_owned(),
            early: all[split + 4..].to_vec(),
        }
    }

    /// Read `len` body bytes; their sha256.
    fn finish(mut self, len: u64) -> String {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(&self.early);
        let mut left = len - self.early.len() as u64;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "the body ended {left} bytes short");
            let n = (n as u64).min(left) as usize;
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        tabcache::digest::to_hex(&hasher.finalize())
    }
}

/// A client that stops reading and one that leaves mid-body hold up neither the transfer nor
/// a third client; the stalled one, reading again, gets the whole correct file.
#[test]
fn a_stalled_client_and_one_that_leaves_hold_up_no_one() {
    // Far more than loopback socket buffers hold, so the stalled client's answer stays
    // mid-body on the server.
    const SIZE: u64 = 48 << 20;
    let s = setup(SIZE);
    let want = hub_emulator::pseudo_random_sha256(SIZE, SEED);
    let server = serve(&s.cache);
    let url = url_of(&server, FILE);
    let stalled = RawClient::get(&server, FILE);
    assert!(stalled.head.starts_with("HTTP/1.1 200"), "{}", stalled.head);
    let mut leaving = RawClient::get(&server, FILE);
    let mut buf = vec![0u8; 1 << 20];
    let mut read = leaving.early.len();
    while read < 1 << 20 {
        read += leaving.stream.read(&mut buf).unwrap();
    }
    drop(leaving);
    let reading = get_streamed(&url, &[]);
    assert_eq!(
        (reading.received, reading.sha256.as_str()),
        (SIZE, want.as_str())
    );
    // The transfer finished while one client slept: the file is cached.
    assert!(s.cache.has_file(REPO, FILE, None).unwrap());
    assert_eq!(stalled.finish(SIZE), want);
    assert!(
        s.hub.cdn_bytes() < SIZE + SIZE / 16,
        "{}",
        s.hub.cdn_bytes()
    );
}

/// When the last client leaves, the transfer stops (the documented choice: nobody's bandwidth
/// or disk goes to a file nobody waits for), keeping its durable ranges; the next request
/// resumes from them.
#[test]
fn the_last_client_leaving_stops_the_transfer_and_the_next_resumes() {
    const SIZE: u64 = 16 << 20;
    let s = setup(SIZE);
    let slow = s.hub.slow_cdn(1 << 20);
    let server = serve(&s.cache);
    let mut leaving = RawClient::get(&server, FILE);
    let mut buf = vec![0u8; 1 << 20];
    let mut read = leaving.early.len();
    while read < 3 << 20 {
        read += leaving.stream.read(&mut buf).unwrap();
    }
    drop(leaving);
    assert!(
        s.cache.wait_idle(Duration::from_secs(5)),
        "the transfer went on without anyone waiting for it"
    );
    assert!(!s.cache.has_file(REPO, FILE, None).unwrap());
    assert!(
        tmp_files(s.dir.path()).iter().any(|n| n.ends_with(".part")),
        "no partial file kept to resume: {:?}",
        tmp_files(s.dir.path())
    );
    let first = s.hub.cdn_bytes();
    assert!(first < SIZE, "{first}");
    s.hub.emu.remove_fault(slow);
    settle_and_clear(&s.hub);
    let body = get_streamed(&url_of(&server, FILE), &[]);
    assert_eq!(
        (body.received, body.sha256),
        (SIZE, hub_emulator::pseudo_random_sha256(SIZE, SEED))
    );
    let second = s.hub.cdn_bytes();
    assert!(
        second <= SIZE - (2 << 20),
        "the second transfer fetched {second} of {SIZE} bytes: it did not resume"
    );
}

/// A library download under way and a client of the server share one transfer.
#[test]
fn a_library_download_and_a_client_share_one_transfer() {
    const SIZE: u64 = 16 << 20;
    let s = setup(SIZE);
    let want = hub_emulator::pseudo_random_sha256(SIZE, SEED);
    s.hub.slow_cdn(4 << 20);
    let server = serve(&s.cache);
    std::thread::scope(|scope| {
        let download = scope.spawn(|| s.cache.download_file(REPO, FILE, None, None).unwrap());
        let started = Instant::now();
        while s.hub.cdn_requests().is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no transfer began"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let body = get_streamed(&url_of(&server, FILE), &[]);
        assert_eq!((body.received, body.sha256.as_str()), (SIZE, want.as_str()));
        let path = download.join().unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), SIZE);
    });
    let sent = s.hub.cdn_bytes();
    assert!(
        (SIZE..SIZE + SIZE / 16).contains(&sent),
        "one transfer expected, the upstream sent {sent} bytes"
    );
}

/// `HEAD`, `If-None-Match` and an unsatisfiable range of an uncached file are answered from
/// the upstream's description, as the Hub answers them, without moving its bytes; satisfiable
/// ranges join a transfer of the file and get their bytes.
#[test]
fn head_conditional_and_ranges_of_an_uncached_file() {
    const SIZE: u64 = 6 << 20;
    let s = setup(SIZE);
    let want = hub_emulator::pseudo_random_bytes(SIZE as usize, SEED);
    let sha = sha256_hex(&want);
    let server = serve(&s.cache);
    let url = url_of(&server, FILE);
    let hub = head(
        &format!("{}/{REPO}/resolve/main/{FILE}", s.hub.emu.url()),
        &[],
    );
    settle_and_clear(&s.hub);

    let r = head(&url, &[]);
    assert_eq!(r.status, 200);
    let quoted = format!("\"{sha}\"");
    assert_eq!(r.header("etag"), Some(quoted.as_str()));
    assert_eq!(r.header("x-linked-etag"), hub.header("x-linked-etag"));
    assert_eq!(r.header("x-linked-size"), hub.header("x-linked-size"));
    assert_eq!(r.header("x-linked-size"), Some(SIZE.to_string().as_str()));
    assert_eq!(r.header("x-repo-commit"), hub.header("x-repo-commit"));
    assert_eq!(r.header("content-length"), Some(SIZE.to_string().as_str()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let not_modified = get(&url, &[("if-none-match", &quoted)]);
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    let past_the_end = get(&url, &[("range", &format!("bytes={SIZE}-"))]);
    assert_eq!(past_the_end.status, 416);
    assert_eq!(
        past_the_end.header("content-range"),
        Some(format!("bytes */{SIZE}").as_str())
    );
    assert_eq!(
        s.hub.cdn_bytes(),
        0,
        "bytes moved for answers that need none"
    );
    assert!(!s.cache.has_file(REPO, FILE, None).unwrap());

    for (range, first, last) in [
        ("bytes=0-0", 0, 0),
        ("bytes=3000000-3999999", 3_000_000, 3_999_999),
        ("bytes=-100", SIZE - 100, SIZE - 1),
    ] {
        let r = get(&url, &[("range", range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/{SIZE}").as_str()),
            "{range}"
        );
        assert!(
            r.body == want[first as usize..=last as usize],
            "{range}: other bytes"
        );
    }
    assert!(s.cache.wait_idle(Duration::from_secs(10)));
    assert!(s.cache.has_file(REPO, FILE, None).unwrap());
}

/// Without pull-through, or with the cache offline, what is not cached is the Hub's `404`
/// saying so, and the upstream is not asked; listings are the cached files.
#[test]
fn without_pull_through_or_offline_a_miss_is_not_cached() {
    let s = setup(1 << 20);
    s.cache
        .download_file(REPO, "config.json", None, None)
        .unwrap();
    let offline = ModelCache::open(s.dir.path(), offline_options(&s.hub)).unwrap();
    let off = Server::start(
        &s.cache,
        ServeOptions {
            pull_through: false,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let offline_server = serve(&offline);
    settle_and_clear(&s.hub);
    for server in [&off, &offline_server] {
        let r = get(&url_of(server, FILE), &[]);
        assert_eq!((r.status, r.error_code()), (404, Some("EntryNotFound")));
        assert!(r.json()["error"].as_str().unwrap().contains("not cached"));
        let h = head(&url_of(server, FILE), &[]);
        assert_eq!((h.status, h.error_code()), (404, Some("EntryNotFound")));
        let other = get(
            &format!("{}/org/elsewhere/resolve/main/config.json", server.url()),
            &[],
        );
        assert_eq!(
            (other.status, other.error_code()),
            (404, Some("RepoNotFound"))
        );
        let info = get(&format!("{}/api/models/{REPO}", server.url()), &[]).json();
        assert_eq!(
            info["siblings"],
            serde_json::json!([{ "rfilename": "config.json" }])
        );
        assert_eq!(get(&url_of(server, "config.json"), &[]).body, CONFIG);
    }
    assert!(
        s.hub.settled_requests().is_empty(),
        "the upstream was asked: {:?}",
        s.hub.emu.requests()
    );
}

/// The file entries of a tree listing (folder ids are the server's own), without `size`:
/// the emulator gives an LFS file's pointer size there, the Hub (and this server) the file's.
fn files_of(tree: &Value) -> Vec<Value> {
    tree.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| {
            let mut e = e.clone();
            e.as_object_mut().unwrap().remove("size");
            e
        })
        .collect()
}

/// With pull-through, model info, the tree and paths-info list what the upstream lists, even
/// though the cache holds one file; the upstream's entries are given as the upstream gives
/// them.
#[test]
fn listings_with_pull_through_are_the_upstreams() {
    let s = setup(2 << 20);
    s.cache
        .download_file(REPO, "config.json", None, None)
        .unwrap();
    let server = serve(&s.cache);
    let upstream = s.hub.emu.url();
    let commit = s.hub.emu.commit_of(REPO).unwrap();

    let info = get(&format!("{}/api/models/{REPO}", server.url()), &[]);
    assert_eq!(info.status, 200);
    let info = info.json();
    assert_eq!(info["sha"], commit.as_str());
    let names = siblings(&info);
    assert_eq!(names, ["config.json", FILE, "onnx/tokenizer.json"]);

    let ours = get(
        &format!(
            "{}/api/models/{REPO}/tree/main?recursive=true",
            server.url()
        ),
        &[],
    );
    let theirs = get(
        &format!("{upstream}/api/models/{REPO}/tree/main?recursive=true"),
        &[],
    );
    assert_eq!(ours.status, 200);
    assert_eq!(files_of(&ours.json()), files_of(&theirs.json()));
    let sizes: Vec<(String, u64)> = ours
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let want_sizes = [
        ("config.json", CONFIG.len() as u64),
        (FILE, 2 << 20),
        ("onnx/tokenizer.json", 2),
    ];
    assert_eq!(sizes, want_sizes.map(|(p, n)| (p.to_string(), n)));
    let folders: Vec<Value> = ours
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "directory")
        .map(|e| e["path"].clone())
        .collect();
    assert_eq!(folders, [serde_json::json!("onnx")]);

    let paths_info = Reply::read(
        agent()
            .post(&format!(
                "{}/api/models/{REPO}/paths-info/main",
                server.url()
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .send(format!("paths={FILE}&paths=absent.bin"))
            .unwrap(),
        false,
    );
    assert_eq!(paths_info.status, 200);
    let found = paths_info.json();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["path"], FILE);
    assert_eq!(found[0]["lfs"]["size"], 2 << 20);

    // What the upstream does not have is the upstream's 404.
    let missing = get(&format!("{}/api/models/org/nowhere", server.url()), &[]);
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, Some("RepoNotFound"))
    );
    let missing = get(&url_of(&server, "absent.bin"), &[]);
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, Some("EntryNotFound"))
    );
}

/// The cache's upstream token reaches the upstream (a private repo answers), and never a
/// client: not in a served answer, not in an error.
#[test]
fn the_upstream_token_is_used_and_never_shown() {
    const SECRET: &str = "hf_upstream_secret_token";
    let s = setup_with(1 << 20, |hub| {
        let mut o = options(hub);
        o.hub.token = Some(SECRET.to_string());
        o
    });
    hub_emulator::write_repo_config(
        s.hub.root(),
        REPO,
        &hub_emulator::RepoConfig {
            private: true,
            tokens: vec![SECRET.to_string()],
            ..Default::default()
        },
    )
    .unwrap();
    let server = serve(&s.cache);
    let mut answers = vec![
        get(&url_of(&server, "config.json"), &[]),
        get(&url_of(&server, FILE), &[]),
        get(&url_of(&server, "absent.bin"), &[]),
        get(
            &format!("{}/api/models/{REPO}?blobs=true", server.url()),
            &[],
        ),
        get(
            &format!("{}/api/models/{REPO}/tree/main", server.url()),
            &[],
        ),
        get(&format!("{}/api/models/org/nowhere", server.url()), &[]),
    ];
    answers.push(head(&url_of(&server, "absent.bin"), &[]));
    assert_eq!(answers[0].body, CONFIG);
    assert_eq!(answers[1].body.len(), 1 << 20);
    assert_eq!(answers[2].error_code(), Some("EntryNotFound"));
    for answer in &answers {
        let all = format!(
            "{:?} {}",
            answer.headers,
            String::from_utf8_lossy(&answer.body)
        );
        assert!(!all.contains(SECRET), "the token reached a client: {all}");
    }
    let upstream = s.hub.settled_requests();
    assert!(upstream
        .iter()
        .any(|r| r.authorization.as_deref() == Some(&format!("Bearer {SECRET}"))));
}

/// A hostile upstream answer (a listing naming a path out of the repo, a size claim the
/// bytes contradict) is an error for the client; nothing lands outside the cache, nothing is
/// cached, and the server keeps serving.
#[test]
fn hostile_upstream_answers_are_errors_not_files() {
    const SIZE: u64 = 6 << 20;
    let s = setup(SIZE);
    let server = serve(&s.cache);
    let listing = s.hub.emu.add_fault(Fault::new(FaultKind::RawTree {
        body: r#"[{"type":"file","oid":"0000000000000000000000000000000000000000","size":3,"path":"../../escape.txt"}]"#.into(),
    }));
    let tree = get(
        &format!("{}/api/models/{REPO}/tree/main", server.url()),
        &[],
    );
    assert_eq!(tree.status, 502, "{}", String::from_utf8_lossy(&tree.body));
    assert!(tree.json()["error"].as_str().is_some());
    s.hub.emu.remove_fault(listing);

    // The CDN claims another size than the resolve did: refused before a byte is kept.
    s.hub.emu.add_fault(
        Fault::new(FaultKind::ClaimSize { size: SIZE * 2 })
            .on(Listener::Cdn)
            .path(FILE),
    );
    let r = get(&url_of(&server, FILE), &[]);
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["error"].as_str().unwrap().contains("size"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(s.cache.wait_idle(Duration::from_secs(10)));
    assert_nothing_cached(&s);
    let escaped: Vec<_> = walk(s.dir.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "escape.txt"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    assert!(!s.dir.path().join("../escape.txt").exists());
    assert_eq!(get(&url_of(&server, "config.json"), &[]).body, CONFIG);
}

/// The real huggingface_hub, with `HF_ENDPOINT` at our server and the cache empty:
/// `snapshot_download` gets the whole repo through the cache, which keeps it.
#[test]
fn huggingface_hub_snapshot_downloads_an_uncached_repo_through_the_cache() {
    let s = setup(3 << 20);
    let server = serve(&s.cache);
    let client_cache = tempfile::tempdir().unwrap();
    let script = r#"
import hashlib, os, sys
from huggingface_hub import snapshot_download
folder = snapshot_download(sys.argv[1])
for root, _, files in sorted(os.walk(folder)):
    for name in sorted(files):
        path = os.path.join(root, name)
        print(os.path.relpath(path, folder), hashlib.sha256(open(path, "rb").read()).hexdigest())
"#;
    let stdout = python_stdout(&mut huggingface_hub(
        server.url(),
        client_cache.path(),
        script,
        &[REPO],
    ));
    let sha = |path: &str| sha256_hex(&std::fs::read(path_of(s.hub.root(), REPO, path)).unwrap());
    let want: Vec<String> = ["config.json", FILE, "onnx/tokenizer.json"]
        .iter()
        .map(|p| format!("{p} {}", sha(p)))
        .collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), want);
    for path in ["config.json", FILE, "onnx/tokenizer.json"] {
        assert!(s.cache.has_file(REPO, path, None).unwrap(), "{path}");
    }
}
