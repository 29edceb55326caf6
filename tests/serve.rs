//! `tabcache::serve` over real HTTP on 127.0.0.1: a cache filled from the hub emulator is
//! served, and what Hub clients and browsers rely on is checked on the wire: bytes and the
//! Hub's headers (compared with the emulator's own), ranges, conditional requests, the JSON
//! listings, the Hub's error codes, and the guards (Host, token, CORS, traversal, links
//! planted in the view), and that stopping ends a download in progress. The server here
//! serves the cache alone (pull-through off); `tests/serve_pull.rs` tests pull-through.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use serde_json::Value;
use tabcache::serve::{ServeOptions, Server};
use tabcache::{ErrorKind, ModelCache};

const REPO: &str = "org/served";
const CONFIG: &[u8] = br#"{"model_type": "bert"}"#;
/// An LFS file (by extension), large enough for several chunks of the server's reads.
const MODEL: &str = "onnx/model.onnx";
const MODEL_SIZE: u64 = 3 * (1 << 20) + 12_345;
const BIG: &str = "big.bin";
/// Larger than what loopback socket buffers hold, so a stalled reader leaves a download
/// mid-flight on the server.
const BIG_SIZE: u64 = 48 << 20;

fn fill(root: &Path) {
    hub_emulator::write_file(root, REPO, "config.json", CONFIG).unwrap();
    hub_emulator::write_file(root, REPO, "onnx/tokenizer.json", b"{}").unwrap();
    hub_emulator::write_pseudo_random_file(root, REPO, MODEL, MODEL_SIZE, 7).unwrap();
    // Listed by the hub, never downloaded: the server must call it not cached.
    hub_emulator::write_file(root, REPO, "onnx/model_q4.onnx", b"q4 bytes").unwrap();
    hub_emulator::write_repo_config(
        root,
        REPO,
        &hub_emulator::RepoConfig {
            pipeline_tag: Some("feature-extraction".into()),
            ..Default::default()
        },
    )
    .unwrap();
}

struct Fixture {
    hub: Hub,
    _dir: tempfile::TempDir,
    cache: ModelCache,
    commit: String,
}

/// A cache holding `config.json`, `onnx/tokenizer.json` and the model (plus `big.bin` when
/// asked), scanned, so the repo has its record and `main` its ref.
fn fixture(with_big: bool) -> Fixture {
    let hub = hub(|root| {
        fill(root);
        if with_big {
            hub_emulator::write_pseudo_random_file(root, REPO, BIG, BIG_SIZE, 9).unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache.scan_repo(REPO, None).unwrap();
    let mut files = vec!["config.json", "onnx/tokenizer.json", MODEL];
    if with_big {
        files.push(BIG);
    }
    cache
        .download_files(REPO, &files, None, None, None)
        .unwrap();
    let commit = hub.emu.commit_of(REPO).unwrap();
    Fixture {
        hub,
        _dir: dir,
        cache,
        commit,
    }
}

/// A server of what the cache holds: what it lacks is a miss, however the upstream could
/// answer.
fn serve(cache: &ModelCache) -> Server {
    serve_with(cache, |_| {})
}

fn serve_with(cache: &ModelCache, configure: impl FnOnce(&mut ServeOptions)) -> Server {
    let mut options = ServeOptions {
        pull_through: false,
        ..ServeOptions::default()
    };
    configure(&mut options);
    Server::start(cache, options).unwrap()
}

/// A request written by hand, for what a client library would normalise or refuse to send
/// (dot segments, another `Host`). Returns the status, the head, and the body bytes.
fn raw(server: &Server, request_line_target: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let host = if extra.to_ascii_lowercase().contains("host:") {
        String::new()
    } else {
        format!("Host: {}\r\n", server.local_addr())
    };
    write!(
        stream,
        "GET {request_line_target} HTTP/1.1\r\n{host}{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, all[split + 4..].to_vec())
}

fn resolve_url(server: &Server, revision: &str, path: &str) -> String {
    format!("{}/{REPO}/resolve/{revision}/{path}", server.url())
}

fn repo_file(fx: &Fixture, path: &str) -> Vec<u8> {
    std::fs::read(path_of(fx.hub.root(), REPO, path)).unwrap()
}

fn git_blob_oid(bytes: &[u8]) -> String {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    tabcache::digest::to_hex(&hasher.finalize())
}

/// What the emulator (the Hub's stand-in) answers to a HEAD of the same file.
fn hub_head(fx: &Fixture, path: &str) -> Reply {
    head(
        &format!("{}/{REPO}/resolve/main/{path}", fx.hub.emu.url()),
        &[],
    )
}

#[test]
fn a_small_file_comes_with_the_hub_headers() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let r = get(&resolve_url(&server, "main", "config.json"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, CONFIG);
    assert_eq!(
        r.header("content-length"),
        Some(CONFIG.len().to_string().as_str())
    );
    let etag = format!("\"{}\"", git_blob_oid(CONFIG));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        r.header("etag"),
        hub_head(&fx, "config.json").header("etag")
    );
    assert_eq!(r.header("x-repo-commit"), Some(fx.commit.as_str()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("x-linked-etag"), None);
    assert_eq!(r.header("x-linked-size"), None);
    assert_eq!(r.header("content-encoding"), None);
}

#[test]
fn an_lfs_file_streams_whole_with_linked_etag_and_size() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let want = repo_file(&fx, MODEL);
    // A client that asks for compression gets the bytes as they are.
    let r = get(
        &resolve_url(&server, "main", MODEL),
        &[("accept-encoding", "gzip, br")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body.len() as u64, MODEL_SIZE);
    assert!(r.body == want, "the served bytes differ from the file");
    let sha = sha256_hex(&want);
    let quoted = format!("\"{sha}\"");
    assert_eq!(r.header("etag"), Some(quoted.as_str()));
    assert_eq!(r.header("x-linked-etag"), Some(quoted.as_str()));
    assert_eq!(
        r.header("x-linked-size"),
        Some(MODEL_SIZE.to_string().as_str())
    );
    let hub = hub_head(&fx, MODEL);
    assert_eq!(r.header("x-linked-etag"), hub.header("x-linked-etag"));
    assert_eq!(r.header("x-linked-size"), hub.header("x-linked-size"));
    assert_eq!(r.header("x-repo-commit"), hub.header("x-repo-commit"));
    // By commit sha, and with the revision percent-encoded, it is the same file.
    let by_commit = get(&resolve_url(&server, &fx.commit, MODEL), &[]);
    assert_eq!(by_commit.status, 200);
    assert!(by_commit.body == want);
    let encoded = get(&resolve_url(&server, "%6Dain", MODEL), &[]);
    assert_eq!(encoded.status, 200);
    assert_eq!(encoded.header("x-repo-commit"), Some(fx.commit.as_str()));
}

#[test]
fn head_gives_the_headers_and_no_body() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let r = head(&resolve_url(&server, "main", MODEL), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(MODEL_SIZE.to_string().as_str())
    );
    assert_eq!(
        r.header("x-linked-size"),
        Some(MODEL_SIZE.to_string().as_str())
    );
    // On the wire: the head and nothing after it.
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "HEAD /{REPO}/resolve/main/{MODEL} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    assert!(
        all.ends_with(b"\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&all)
    );
}

#[test]
fn single_ranges_first_byte_middle_suffix_and_past_the_end() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let want = repo_file(&fx, MODEL);
    let url = resolve_url(&server, "main", MODEL);
    let size = MODEL_SIZE;
    let cases: [(&str, u64, u64); 4] = [
        ("bytes=0-0", 0, 0),
        ("bytes=1000-299999", 1000, 299_999),
        ("bytes=-100", size - 100, size - 1),
        ("bytes=3000000-", 3_000_000, size - 1),
    ];
    for (range, first, last) in cases {
        let r = get(&url, &[("range", range)]);
        assert_eq!(r.status, 206, "{range}");
        let content_range = format!("bytes {first}-{last}/{size}");
        assert_eq!(
            r.header("content-range"),
            Some(content_range.as_str()),
            "{range}"
        );
        assert_eq!(
            r.header("content-length"),
            Some((last - first + 1).to_string().as_str())
        );
        assert!(r.body == want[first as usize..=last as usize], "{range}");
    }
    for past in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 5, size + 9),
    ] {
        let r = get(&url, &[("range", &past)]);
        assert_eq!(r.status, 416, "{past}");
        let unsatisfied = format!("bytes */{size}");
        assert_eq!(r.header("content-range"), Some(unsatisfied.as_str()));
    }
    // An If-Range that no longer matches means the whole file.
    let r = get(&url, &[("range", "bytes=0-0"), ("if-range", "\"0000\"")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, size);
}

#[test]
fn if_none_match_gives_304_only_for_the_files_etag() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let url = resolve_url(&server, "main", MODEL);
    let etag = get(&url, &[("range", "bytes=0-0")])
        .header("etag")
        .unwrap()
        .to_string();
    let r = get(&url, &[("if-none-match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let other = get(&url, &[("if-none-match", "\"abc\"")]);
    assert_eq!(other.status, 200);
    assert_eq!(other.body.len() as u64, MODEL_SIZE);
}

#[test]
fn model_info_lists_the_cached_files() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    for url in [
        format!("{}/api/models/{REPO}", server.url()),
        format!("{}/api/models/{REPO}/revision/main", server.url()),
        format!("{}/api/models/{REPO}/revision/{}", server.url(), fx.commit),
    ] {
        let r = get(&url, &[]);
        assert_eq!(r.status, 200, "{url}");
        let info = r.json();
        assert_eq!(info["id"], REPO);
        assert_eq!(info["sha"], fx.commit.as_str());
        assert_eq!(info["pipeline_tag"], "feature-extraction");
        let names = siblings(&info);
        // Not onnx/model_q4.onnx, which the hub lists but the cache does not hold.
        assert_eq!(names, ["config.json", MODEL, "onnx/tokenizer.json"]);
    }
    let blobs = get(
        &format!("{}/api/models/{REPO}?blobs=true", server.url()),
        &[],
    )
    .json();
    let model = &blobs["siblings"][1];
    assert_eq!(model["size"], MODEL_SIZE);
    assert_eq!(model["lfs"]["sha256"], sha256_hex(&repo_file(&fx, MODEL)));
}

/// The emulator's tree entry for `path` (the Hub's view).
fn hub_tree_entry(fx: &Fixture, path: &str) -> Value {
    let r = get(
        &format!(
            "{}/api/models/{REPO}/tree/main?recursive=true",
            fx.hub.emu.url()
        ),
        &[],
    );
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .cloned()
        .unwrap()
}

#[test]
fn the_tree_lists_cached_files_and_folders_like_the_hub() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let tree = |query: &str| {
        get(
            &format!("{}/api/models/{REPO}/tree/main{query}", server.url()),
            &[],
        )
    };
    let paths = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["path"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |t: &str, p: &str| (t.to_string(), p.to_string());
    assert_eq!(
        paths(&tree("").json()),
        [pair("file", "config.json"), pair("directory", "onnx")]
    );
    let recursive = tree("?recursive=true").json();
    assert_eq!(
        paths(&recursive),
        [
            pair("file", "config.json"),
            pair("directory", "onnx"),
            pair("file", MODEL),
            pair("file", "onnx/tokenizer.json"),
        ]
    );
    assert_eq!(
        paths(
            &get(
                &format!("{}/api/models/{REPO}/tree/main/onnx", server.url()),
                &[]
            )
            .json()
        ),
        [pair("file", MODEL), pair("file", "onnx/tokenizer.json")]
    );
    // The same oid (git's pointer blob for LFS files), LFS facts and path as the Hub gives.
    for path in [MODEL, "config.json"] {
        let ours = recursive
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == path)
            .unwrap();
        let hub = hub_tree_entry(&fx, path);
        assert_eq!(ours["oid"], hub["oid"], "{path}");
        assert_eq!(
            ours.get("lfs").map(|l| &l["oid"]),
            hub.get("lfs").map(|l| &l["oid"])
        );
        assert_eq!(
            ours.get("lfs").map(|l| &l["pointerSize"]),
            hub.get("lfs").map(|l| &l["pointerSize"])
        );
    }
    let model = recursive
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == MODEL)
        .unwrap();
    assert_eq!(model["size"], MODEL_SIZE);
    assert_eq!(model["lfs"]["size"], MODEL_SIZE);
    let missing = get(
        &format!("{}/api/models/{REPO}/tree/main/nope", server.url()),
        &[],
    );
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, Some("EntryNotFound"))
    );
}

#[test]
fn the_tree_paginates_with_link_headers() {
    let fx = fixture(false);
    let server = serve_with(&fx.cache, |o| o.tree_page_size = 1);
    let mut url = format!(
        "{}/api/models/{REPO}/tree/main?recursive=true",
        server.url()
    );
    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = get(&url, &[]);
        assert_eq!(r.status, 200);
        let page = r.json();
        assert_eq!(page.as_array().unwrap().len(), 1);
        seen.push(page[0]["path"].as_str().unwrap().to_string());
        match r.header("link") {
            Some(link) => {
                assert!(link.ends_with(">; rel=\"next\""), "{link}");
                url = link[1..link.find('>').unwrap()].to_string();
                assert!(url.contains("recursive=true"), "{url}");
            }
            None => break,
        }
    }
    assert_eq!(seen, ["config.json", "onnx", MODEL, "onnx/tokenizer.json"]);
}

#[test]
fn paths_info_answers_for_the_cached_paths_only() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let url = format!("{}/api/models/{REPO}/paths-info/main", server.url());
    // As huggingface_hub sends it: repeated form fields.
    let r = Reply::read(
        agent()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .send("paths=onnx%2Fmodel.onnx&paths=onnx&paths=onnx%2Fmodel_q4.onnx&paths=config.json&expand=False")
            .unwrap(),
        false,
    );
    assert_eq!(r.status, 200);
    let entries = r.json();
    let got: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("file", MODEL),
            ("directory", "onnx"),
            ("file", "config.json")
        ]
    );
    assert_eq!(entries[0]["lfs"]["oid"], sha256_hex(&repo_file(&fx, MODEL)));
    let traversal = Reply::read(
        agent()
            .post(&url)
            .header("content-type", "application/json")
            .send(r#"{"paths": ["../../etc/passwd"]}"#)
            .unwrap(),
        false,
    );
    assert_eq!(traversal.status, 400);
}

#[test]
fn misses_carry_the_hubs_error_codes() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let base = server.url().to_string();
    let unknown_sha = "0123456789abcdef0123456789abcdef01234567";
    let cases = [
        (
            format!("{base}/org/other/resolve/main/config.json"),
            "RepoNotFound",
        ),
        (format!("{base}/api/models/org/other"), "RepoNotFound"),
        (
            format!("{base}/{REPO}/resolve/v9/config.json"),
            "RevisionNotFound",
        ),
        (
            format!("{base}/{REPO}/resolve/{unknown_sha}/config.json"),
            "RevisionNotFound",
        ),
        (
            format!("{base}/api/models/{REPO}/revision/v9"),
            "RevisionNotFound",
        ),
        (
            format!("{base}/api/models/{REPO}/tree/{unknown_sha}"),
            "RevisionNotFound",
        ),
        (
            format!("{base}/{REPO}/resolve/main/onnx/model_q4.onnx"),
            "EntryNotFound",
        ),
        (
            format!("{base}/{REPO}/resolve/main/nothing.bin"),
            "EntryNotFound",
        ),
    ];
    for (url, code) in &cases {
        let r = get(url, &[]);
        assert_eq!((r.status, r.error_code()), (404, Some(*code)), "{url}");
        assert!(
            r.json()["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{url}"
        );
        // A HEAD has only headers to tell it.
        let h = head(url, &[]);
        assert_eq!((h.status, h.error_code()), (404, Some(*code)), "HEAD {url}");
        assert!(h.header("x-error-message").is_some());
    }
    let r = get(
        &format!("{base}/{REPO}/resolve/main/onnx/model_q4.onnx"),
        &[],
    );
    assert!(r.json()["error"].as_str().unwrap().contains("not cached"));
}

#[test]
fn another_host_name_is_refused() {
    let fx = fixture(false);
    let server = serve_with(&fx.cache, |o| o.allow_hosts = vec!["cache-host".into()]);
    let target = format!("/{REPO}/resolve/main/config.json");
    let port = server.local_addr().port();
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        let (status, _, body) = raw(&server, &target, &format!("Host: {host}\r\n"));
        assert_eq!(status, 421, "{host}");
        assert!(!body.windows(CONFIG.len()).any(|w| w == CONFIG));
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("[::1]:{port}"),
        format!("cache-host:{port}"),
    ] {
        let (status, _, body) = raw(&server, &target, &format!("Host: {host}\r\n"));
        assert_eq!((status, body.as_slice()), (200, CONFIG), "{host}");
    }
}

#[test]
fn traversal_attempts_are_refused() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), b"SECRET-OUTSIDE-THE-CACHE").unwrap();
    let outside = secret
        .path()
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    for target in [
        format!("/{REPO}/resolve/main/../../../../{outside}"),
        format!("/{REPO}/resolve/main/%2e%2e/%2e%2e/%2e%2e/%2e%2e/{outside}"),
        format!("/{REPO}/resolve/main/onnx%2F..%2F..%2F..%2F{outside}"),
        format!("/{REPO}/resolve/main//{outside}"),
        format!("/{REPO}/resolve/main/%2F{outside}"),
        format!("/{REPO}/resolve/..%2F..%2F/config.json"),
        "/org/%2e%2e/resolve/main/config.json".to_string(),
        format!("/api/models/{REPO}/tree/main/..%2F.."),
    ] {
        let (status, head, body) = raw(&server, &target, "");
        assert_eq!(status, 400, "{target}: {head}");
        assert!(
            !String::from_utf8_lossy(&body).contains("SECRET"),
            "{target}"
        );
    }
}

#[test]
fn links_planted_in_the_view_are_not_followed() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), b"SECRET-OUTSIDE-THE-CACHE").unwrap();
    let snapshot = fx.cache.snapshot_dir(REPO, None).unwrap().unwrap();
    // A cached file's view entry swapped for a link out of the cache.
    let config = snapshot.join("config.json");
    std::fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink(secret.path(), &config).unwrap();
    // And a link at a name the cache never held.
    std::os::unix::fs::symlink(secret.path(), snapshot.join("planted.txt")).unwrap();
    let r = get(&resolve_url(&server, "main", "config.json"), &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, CONFIG));
    let planted = get(&resolve_url(&server, "main", "planted.txt"), &[]);
    assert_eq!(
        (planted.status, planted.error_code()),
        (404, Some("EntryNotFound"))
    );
    assert!(!String::from_utf8_lossy(&planted.body).contains("SECRET"));
}

const EXTENSION: &str = "chrome-extension://abcdefghijklmnopabcdefghijklmnop";

#[test]
fn cors_headers_only_for_allowed_origins_errors_included() {
    let fx = fixture(false);
    let server = serve_with(&fx.cache, |o| o.allow_origins = vec![EXTENSION.into()]);
    let ok = resolve_url(&server, "main", MODEL);
    let missing = resolve_url(&server, "main", "missing.bin");
    for url in [&ok, &missing] {
        let r = get(url, &[("origin", EXTENSION), ("range", "bytes=0-0")]);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some(EXTENSION),
            "{url}"
        );
        let exposed = r.header("access-control-expose-headers").unwrap();
        for name in [
            "Content-Range",
            "Content-Length",
            "ETag",
            "X-Repo-Commit",
            "X-Linked-Size",
        ] {
            assert!(exposed.contains(name), "{name} in {exposed}");
        }
        let other = get(url, &[("origin", "http://evil.example")]);
        assert_eq!(other.header("access-control-allow-origin"), None);
        assert_eq!(other.header("access-control-expose-headers"), None);
    }
    assert_eq!(get(&missing, &[("origin", EXTENSION)]).status, 404);

    let preflight = |origin: &str| {
        Reply::read(
            agent()
                .options(&ok)
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization, range")
                .call()
                .unwrap(),
            true,
        )
    };
    let allowed = preflight(EXTENSION);
    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(EXTENSION)
    );
    assert!(allowed
        .header("access-control-allow-methods")
        .unwrap()
        .contains("GET"));
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("authorization, range")
    );
    let refused = preflight("http://evil.example");
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("access-control-allow-origin"), None);
}

#[test]
fn a_star_origin_allows_any_page_only_when_given() {
    let fx = fixture(false);
    let open = serve_with(&fx.cache, |o| o.allow_origins = vec!["*".into()]);
    let r = get(
        &resolve_url(&open, "main", "config.json"),
        &[("origin", "http://any.example")],
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let closed = serve(&fx.cache);
    let r = get(
        &resolve_url(&closed, "main", "config.json"),
        &[("origin", "http://any.example")],
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn a_token_is_required_when_one_is_set_but_not_for_preflights() {
    let fx = fixture(false);
    let server = serve_with(&fx.cache, |o| {
        o.token = Some("s3cret-token".into());
        o.allow_origins = vec![EXTENSION.into()];
    });
    let url = resolve_url(&server, "main", "config.json");
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "Bearer s3cret-token-and-more")],
        vec![("authorization", "s3cret-token")],
    ] {
        let r = get(&url, &headers);
        assert_eq!(r.status, 401, "{headers:?}");
        assert!(r.body.windows(CONFIG.len()).all(|w| w != CONFIG));
    }
    let r = get(&url, &[("authorization", "Bearer s3cret-token")]);
    assert_eq!((r.status, r.body.as_slice()), (200, CONFIG));
    let info = get(&format!("{}/api/models/{REPO}", server.url()), &[]);
    assert_eq!(info.status, 401);
    let preflight = Reply::read(
        agent()
            .options(&url)
            .header("origin", EXTENSION)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .call()
            .unwrap(),
        true,
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(EXTENSION)
    );
}

#[test]
fn start_refuses_a_non_loopback_bind_without_a_token() {
    let fx = fixture(false);
    let start = |configure: &dyn Fn(&mut ServeOptions)| {
        let mut options = ServeOptions::default();
        configure(&mut options);
        Server::start(&fx.cache, options)
            .err()
            .map(|e| (e.kind(), e.message().to_string()))
    };
    // Refused before anything is bound: no test may listen beyond loopback.
    let (kind, message) = start(&|o| o.host = "0.0.0.0".into()).unwrap();
    assert_eq!(kind, ErrorKind::InvalidArgument);
    assert!(message.contains("token"), "{message}");
    let (kind, _) = start(&|o| o.token = Some(String::new())).unwrap();
    assert_eq!(kind, ErrorKind::InvalidArgument);
    let (kind, _) = start(&|o| o.host = "no such host name.invalid".into()).unwrap();
    assert_eq!(kind, ErrorKind::InvalidArgument);
    // A port in use is an I/O error naming the address.
    let taken = serve(&fx.cache);
    let port = taken.local_addr().port();
    let (kind, message) = start(&|o| o.port = port).unwrap();
    assert_eq!(kind, ErrorKind::Io);
    assert!(message.contains(&port.to_string()), "{message}");
}

#[test]
fn many_clients_at_once_get_identical_bytes() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let want = repo_file(&fx, MODEL);
    let url = resolve_url(&server, "main", MODEL);
    let bodies: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| get(&url, &[]).body)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for body in bodies {
        assert!(body == want);
    }
}

#[test]
fn stop_ends_a_download_in_progress_and_idle_connections() {
    let fx = fixture(true);
    let server = serve(&fx.cache);
    let mut downloading = TcpStream::connect(server.local_addr()).unwrap();
    write!(
        downloading,
        "GET /{REPO}/resolve/main/{BIG} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    // An idle keep-alive connection after one answered request.
    let mut idle = TcpStream::connect(server.local_addr()).unwrap();
    write!(
        idle,
        "GET /{REPO}/resolve/main/config.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    for stream in [&downloading, &idle] {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }
    let mut first = vec![0; 64 * 1024];
    let first_read = downloading.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..first_read]).starts_with("HTTP/1.1 200"));
    // The whole small answer, however many reads it takes; the connection then sits idle.
    let mut answered = Vec::new();
    while !answered.ends_with(CONFIG) {
        let mut chunk = [0; 4096];
        let k = idle.read(&mut chunk).unwrap();
        assert!(k > 0, "the idle connection closed before its answer");
        answered.extend_from_slice(&chunk[..k]);
    }

    let addr = server.local_addr();
    let started = Instant::now();
    server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        started.elapsed()
    );
    // The download ends short of its 48 MiB, with an end of stream (or a reset), not a hang.
    let mut received = first_read as u64;
    let mut buf = vec![0; 1 << 20];
    loop {
        match downloading.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => received += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the download neither ended nor reset: {e}"),
        }
    }
    assert!(received < BIG_SIZE, "the whole file arrived after stop");
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
    // And nothing listens any more.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn dropping_the_server_stops_it() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    let addr = server.local_addr();
    assert_eq!(
        get(&resolve_url(&server, "main", "config.json"), &[]).status,
        200
    );
    drop(server);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

/// What the Done-when of serving asks of the real huggingface_hub: with `HF_ENDPOINT` at our
/// server (online mode, its own empty cache), `hf_hub_download` and `snapshot_download` of
/// the cached repo give the same bytes, and the Hub's misses raise its own exceptions. The
/// emulator (the upstream) sees no request meanwhile.
#[test]
fn huggingface_hub_downloads_through_the_server() {
    let fx = fixture(false);
    let server = serve(&fx.cache);
    fx.hub.settled_requests();
    fx.hub.emu.clear_log();
    let client_cache = tempfile::tempdir().unwrap();
    let script = r#"
import hashlib, os, sys
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
repo = sys.argv[1]
def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
print("file", sha(hf_hub_download(repo, "onnx/model.onnx")))
folder = snapshot_download(repo)
for root, _, files in sorted(os.walk(folder)):
    for name in sorted(files):
        path = os.path.join(root, name)
        print("snap", os.path.relpath(path, folder), sha(path))
for args, error in [
    ((repo, "onnx/model_q4.onnx"), EntryNotFoundError),
    (("org/absent", "config.json"), RepositoryNotFoundError),
]:
    try:
        hf_hub_download(*args)
        print("UNEXPECTED success", args)
    except error as e:
        print("raised", type(e).__name__)
try:
    hf_hub_download(repo, "config.json", revision="v9")
    print("UNEXPECTED success v9")
except RevisionNotFoundError as e:
    print("raised", type(e).__name__)
"#;
    let stdout = python_stdout(&mut huggingface_hub(
        server.url(),
        client_cache.path(),
        script,
        &[REPO],
    ));
    let sha = |path: &str| sha256_hex(&repo_file(&fx, path));
    let mut want = vec![format!("file {}", sha(MODEL))];
    for path in ["config.json", MODEL, "onnx/tokenizer.json"] {
        want.push(format!("snap {path} {}", sha(path)));
    }
    want.extend(
        [
            "raised RemoteEntryNotFoundError",
            "raised RepositoryNotFoundError",
            "raised RevisionNotFoundError",
        ]
        .map(String::from),
    );
    assert_eq!(stdout.lines().collect::<Vec<_>>(), want);
    assert!(
        fx.hub.settled_requests().is_empty(),
        "the upstream was asked: {:?}",
        fx.hub.emu.requests()
    );
}
