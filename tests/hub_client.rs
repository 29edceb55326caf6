//! The hub client against the hub emulator over real loopback HTTP: what each error looks
//! like to a user, pagination and redirects, where the token goes, offline mode, hostile
//! listings, retries, stalls and ranged downloads.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use hub_emulator::{
    git_blob_sha1, pseudo_random_bytes, write_file, write_repo_config, Fault, FaultKind, Gated,
    Listener, RepoConfig,
};
use tabcache::download::RangeSource;
use tabcache::hub::{HubClient, HubOptions};
use tabcache::{Error, ErrorKind};

mod common;
use common::{hub_client, hub_with, sha256_hex, Hub};

const GOOD_TOKEN: &str = "hf_good_token_123";
const LFS_FILE: &str = "onnx/model_q4.onnx";
const LFS_SIZE: usize = 300_000;

fn lfs_bytes() -> Vec<u8> {
    pseudo_random_bytes(LFS_SIZE, 7)
}

/// `org/model` (public: config, tokenizer, README, an LFS onnx file), `org/gated` (gated,
/// GOOD_TOKEN may read) and `org/private` (private, GOOD_TOKEN may read).
fn start_hub(page_size: usize) -> Hub {
    hub_with(write_repos, |builder| builder.page_size(page_size))
}

fn write_repos(root: &Path) {
    write_model_repo(root);
    write_file(
        root,
        "org/gated",
        "model.gguf",
        &pseudo_random_bytes(1000, 1),
    )
    .unwrap();
    write_repo_config(
        root,
        "org/gated",
        &RepoConfig {
            gated: Gated::Flag(true),
            tokens: vec![GOOD_TOKEN.into()],
            ..Default::default()
        },
    )
    .unwrap();
    write_file(root, "org/private", "config.json", b"{}").unwrap();
    write_repo_config(
        root,
        "org/private",
        &RepoConfig {
            private: true,
            tokens: vec![GOOD_TOKEN.into()],
            ..Default::default()
        },
    )
    .unwrap();
}

fn write_model_repo(root: &Path) {
    write_file(
        root,
        "org/model",
        "config.json",
        br#"{"model_type":"bert"}"#,
    )
    .unwrap();
    write_file(root, "org/model", "tokenizer.json", b"{\"vocab\":{}}").unwrap();
    write_file(root, "org/model", "README.md", b"# model\n").unwrap();
    write_file(root, "org/model", LFS_FILE, &lfs_bytes()).unwrap();
    write_repo_config(
        root,
        "org/model",
        &RepoConfig {
            pipeline_tag: Some("text-generation".into()),
            ..Default::default()
        },
    )
    .unwrap();
}

impl Hub {
    /// A client for this emulator with fast retries and no process environment.
    fn client(&self, token: Option<&str>) -> HubClient {
        self.client_with(HubOptions {
            token: token.map(str::to_string),
            ..Default::default()
        })
    }

    fn client_with(&self, options: HubOptions) -> HubClient {
        let options = HubOptions {
            retry_base_delay: Some(options.retry_base_delay.unwrap_or(Duration::from_millis(5))),
            read_timeout: Some(options.read_timeout.unwrap_or(Duration::from_secs(10))),
            ..options
        };
        hub_client(self, options)
    }

    fn count(&self, method: &str, path_contains: &str) -> usize {
        self.settled_requests()
            .iter()
            .filter(|r| r.method == method && r.target.contains(path_contains))
            .count()
    }
}

fn assert_error(
    result: Result<impl std::fmt::Debug, Error>,
    kind: ErrorKind,
    fragments: &[&str],
) -> Error {
    let err = result.unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    for fragment in fragments {
        assert!(
            err.message().contains(fragment),
            "{fragment:?} missing from: {err}"
        );
    }
    err
}

#[test]
fn model_info_reports_commit_task_gating_and_files() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    let info = client.model_info("org/model", "main").unwrap();
    assert_eq!(info.id, "org/model");
    assert_eq!(Some(info.sha.clone()), hub.emu.commit_of("org/model"));
    assert_eq!(info.pipeline_tag.as_deref(), Some("text-generation"));
    assert!(!info.gated && !info.private);
    let mut siblings = info.siblings.clone();
    siblings.sort();
    assert_eq!(
        siblings,
        ["README.md", "config.json", LFS_FILE, "tokenizer.json"]
    );
    // A commit sha is a revision too.
    assert_eq!(
        client.model_info("org/model", &info.sha).unwrap().sha,
        info.sha
    );
    let gated = client.model_info("org/gated", "main").unwrap();
    assert!(
        gated.gated,
        "the Hub shows gated repos' info without a token"
    );
    let request = &hub.settled_requests()[0];
    assert_eq!(request.target, "/api/models/org/model/revision/main");
    assert_eq!(request.authorization, None);
}

#[test]
fn listing_follows_every_page_and_uses_lfs_fields() {
    let hub = start_hub(2);
    let client = hub.client(None);
    let sha = client.model_info("org/model", "main").unwrap().sha;
    let mut files = client.list_files("org/model", &sha).unwrap();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["README.md", "config.json", LFS_FILE, "tokenizer.json"]
    );
    let lfs = files.iter().find(|f| f.path == LFS_FILE).unwrap();
    assert_eq!(lfs.size, LFS_SIZE as u64);
    assert_eq!(
        lfs.sha256.as_deref(),
        Some(sha256_hex(&lfs_bytes()).as_str())
    );
    let config = files.iter().find(|f| f.path == "config.json").unwrap();
    assert_eq!(config.sha256, None);
    assert_eq!(config.size, 21);
    assert_eq!(config.git_oid, git_blob_sha1(br#"{"model_type":"bert"}"#));
    // Four files plus the `onnx` directory at two entries a page.
    assert_eq!(hub.count("GET", "/tree/"), 3);
}

#[test]
fn listing_follows_a_307_to_the_trailing_slash_form() {
    let hub = start_hub(2);
    hub.emu.set_tree_redirect(true);
    let files = hub.client(None).list_files("org/model", "main").unwrap();
    assert_eq!(files.len(), 4);
    assert!(
        hub.settled_requests().iter().any(|r| r.status == 307),
        "the emulator did redirect"
    );
}

#[test]
fn missing_repo_revision_and_file() {
    let hub = start_hub(1000);
    let anonymous = hub.client(None);
    assert_error(
        anonymous.model_info("org/nothing", "main"),
        ErrorKind::RepoNotFound,
        &[
            "Repository 'org/nothing' not found",
            "Check the repo id",
            "HF_TOKEN",
        ],
    );
    assert_error(
        hub.client(Some(GOOD_TOKEN))
            .list_files("org/nothing", "main"),
        ErrorKind::RepoNotFound,
        &["Repository 'org/nothing' not found", "token that was sent"],
    );
    assert_error(
        anonymous.model_info("org/model", "v9"),
        ErrorKind::RevisionNotFound,
        &[
            "Revision 'v9' not found in repository 'org/model'",
            "Invalid rev id: v9",
        ],
    );
    assert_error(
        anonymous.resolve("org/model", "main", "missing.bin"),
        ErrorKind::EntryNotFound,
        &["File 'missing.bin' not found in repository 'org/model' at revision 'main'"],
    );
    assert_error(
        anonymous.resolve("org/nothing", "main", "config.json"),
        ErrorKind::RepoNotFound,
        &["Repository 'org/nothing' not found"],
    );
}

#[test]
fn gated_repo_needs_accepted_terms_and_a_token() {
    let hub = start_hub(1000);
    assert_error(
        hub.client(None).resolve("org/gated", "main", "model.gguf"),
        ErrorKind::GatedRepo,
        &[
            "Repository 'org/gated' is gated",
            "accept the terms",
            "HF_TOKEN",
        ],
    );
    assert_error(
        hub.client(Some("hf_wrong"))
            .resolve("org/gated", "main", "model.gguf"),
        ErrorKind::GatedRepo,
        &["accept the terms", "token sent belongs to the account"],
    );
    let resolved = hub
        .client(Some(GOOD_TOKEN))
        .resolve("org/gated", "main", "model.gguf")
        .unwrap();
    assert_eq!(resolved.size, Some(1000));
}

#[test]
fn private_repo_looks_missing_without_a_token_it_allows() {
    let hub = start_hub(1000);
    assert_error(
        hub.client(None).model_info("org/private", "main"),
        ErrorKind::RepoNotFound,
        &["HF_TOKEN"],
    );
    assert_error(
        hub.client(Some("hf_wrong"))
            .model_info("org/private", "main"),
        ErrorKind::RepoNotFound,
        &[],
    );
    let info = hub
        .client(Some(GOOD_TOKEN))
        .model_info("org/private", "main")
        .unwrap();
    assert!(info.private);
}

#[test]
fn refused_tokens_are_unauthorized_and_never_echoed() {
    let hub = start_hub(1000);
    hub.emu.add_fault(Fault::status(401).path("/revision/"));
    let err = assert_error(
        hub.client(Some(GOOD_TOKEN)).model_info("org/model", "main"),
        ErrorKind::Unauthorized,
        &["401 Unauthorized", "invalid, expired or revoked"],
    );
    assert!(!err.message().contains(GOOD_TOKEN));
    assert_error(
        hub.client(None).model_info("org/model", "main"),
        ErrorKind::Unauthorized,
        &["Authentication required"],
    );
    hub.emu.clear_faults();
    hub.emu.add_fault(Fault::status(403).path("/tree/"));
    assert_error(
        hub.client(Some(GOOD_TOKEN)).list_files("org/model", "main"),
        ErrorKind::Unauthorized,
        &["403 Forbidden", "read permission"],
    );
    assert_eq!(hub.count("GET", "/tree/"), 1, "a refusal is not retried");
}

#[test]
fn rate_limits_are_waited_out_as_the_server_asks() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    for fault in [
        Fault::rate_limited(1),
        Fault::new(FaultKind::Status {
            status: 429,
            retry_after: None,
            ratelimit_reset: Some(1),
            error_code: None,
        }),
    ] {
        hub.emu.clear_log();
        hub.emu.add_fault(fault.path("/revision/").times(1));
        let started = Instant::now();
        client.model_info("org/model", "main").unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(950),
            "waited only {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        let statuses: Vec<u16> = hub.settled_requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [429, 200]);
    }
}

#[test]
fn endless_rate_limiting_gives_up_after_the_retry_bound() {
    let hub = start_hub(1000);
    hub.emu
        .add_fault(Fault::rate_limited(30).path("/revision/"));
    let client = hub.client_with(HubOptions {
        max_retries: Some(2),
        max_retry_wait: Some(Duration::from_millis(20)),
        ..Default::default()
    });
    let started = Instant::now();
    assert_error(
        client.model_info("org/model", "main"),
        ErrorKind::RateLimited,
        &[
            "gave up after 2 retries",
            "429 Too Many Requests",
            "HF_TOKEN",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(hub.count("GET", "/revision/"), 3);
}

#[test]
fn server_errors_are_retried_then_reported() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    hub.emu
        .add_fault(Fault::status(503).path("/tree/").times(3));
    assert_eq!(client.list_files("org/model", "main").unwrap().len(), 4);
    assert_eq!(hub.count("GET", "/tree/"), 4);

    hub.emu.clear_log();
    hub.emu.add_fault(Fault::status(500).path("/resolve/"));
    assert_error(
        client.resolve("org/model", "main", "config.json"),
        ErrorKind::Http,
        &[
            "gave up after 5 retries",
            "500 Internal Server Error",
            "retry later",
        ],
    );
    assert_eq!(hub.count("HEAD", "/resolve/"), 6);
}

#[test]
fn resolve_reads_lfs_metadata_from_the_hub_and_points_at_the_cdn() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    let resolved = client.resolve("org/model", "main", LFS_FILE).unwrap();
    assert_eq!(resolved.commit, hub.emu.commit_of("org/model"));
    assert_eq!(resolved.etag, sha256_hex(&lfs_bytes()));
    assert_eq!(resolved.size, Some(LFS_SIZE as u64));
    assert!(
        resolved.url.starts_with(&hub.emu.cdn_url()),
        "{}",
        resolved.url
    );

    let mut body = Vec::new();
    let fetched = client.file_source(&resolved.url).fetch(None).unwrap();
    assert!(!fetched.partial);
    assert_eq!(fetched.content_length, Some(LFS_SIZE as u64));
    fetched
        .body
        .take(LFS_SIZE as u64 + 1)
        .read_to_end(&mut body)
        .unwrap();
    assert!(body == lfs_bytes());
}

#[test]
fn resolve_of_a_small_file_stays_on_the_hub() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    let resolved = client.resolve("org/model", "main", "config.json").unwrap();
    assert_eq!(resolved.etag, git_blob_sha1(br#"{"model_type":"bert"}"#));
    assert_eq!(resolved.size, Some(21));
    assert_eq!(
        resolved.url,
        format!("{}/org/model/resolve/main/config.json", hub.emu.url())
    );
    assert_eq!(resolved.commit, hub.emu.commit_of("org/model"));
}

#[test]
fn the_token_goes_to_the_hub_and_never_to_the_cdn() {
    let hub = start_hub(1000);
    let client = hub.client(Some(GOOD_TOKEN));
    client.model_info("org/model", "main").unwrap();
    client.list_files("org/model", "main").unwrap();
    let resolved = client.resolve("org/model", "main", LFS_FILE).unwrap();
    let mut sink = Vec::new();
    client
        .file_source(&resolved.url)
        .fetch(None)
        .unwrap()
        .body
        .read_to_end(&mut sink)
        .unwrap();
    client
        .file_source(&resolved.url)
        .fetch(Some((0, 10)))
        .unwrap();
    let requests = hub.settled_requests();
    let (api, cdn): (Vec<_>, Vec<_>) = requests.iter().partition(|r| r.listener == Listener::Api);
    assert!(api.len() >= 3 && cdn.len() == 2, "{requests:?}");
    let bearer = format!("Bearer {GOOD_TOKEN}");
    assert!(
        api.iter()
            .all(|r| r.authorization.as_deref() == Some(bearer.as_str())),
        "{api:?}"
    );
    assert!(cdn.iter().all(|r| r.authorization.is_none()), "{cdn:?}");
}

#[test]
fn offline_mode_opens_no_connection() {
    let hub = start_hub(1000);
    let client = hub.client_with(HubOptions {
        offline: Some(true),
        ..Default::default()
    });
    assert!(client.is_offline());
    for result in [
        client.model_info("org/model", "main").map(|_| ()),
        client.list_files("org/model", "main").map(|_| ()),
        client
            .resolve("org/model", "main", "config.json")
            .map(|_| ()),
        client
            .file_source(&format!(
                "{}/org/model/resolve/main/config.json",
                hub.emu.url()
            ))
            .fetch(None)
            .map(|_| ()),
    ] {
        assert_error(
            result,
            ErrorKind::Offline,
            &["offline mode is on", "HF_HUB_OFFLINE", "not cached"],
        );
    }
    assert!(hub.settled_requests().is_empty());
}

#[test]
fn hostile_listings_are_refused_naming_the_server() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    let oid = "0123456789abcdef0123456789abcdef01234567";
    let file = |path: &str, extra: &str| {
        format!(r#"[{{"type":"file","path":{path:?},"oid":"{oid}","size":1{extra}}}]"#)
    };
    let cases = [
        (file("../../x", ""), "`..` segment"),
        (file("/etc/passwd", ""), "absolute"),
        (file("a\\b", ""), "backslash"),
        (file("C:/x", ""), "drive letter"),
        (
            format!(
                r#"[{{"type":"file","path":"a","oid":"{oid}","size":1}},{{"type":"file","path":"a","oid":"{oid}","size":1}}]"#
            ),
            "twice",
        ),
        (
            format!(r#"[{{"type":"file","path":"a","oid":"{oid}","size":-5}}]"#),
            "invalid file listing",
        ),
        (
            file("a", ",\"size\":99999999999999999").replace(",\"size\":1,", ","),
            "absurd size",
        ),
        (
            r#"[{"type":"file","path":"a","oid":"not-hex","size":1}]"#.to_string(),
            "bad git oid",
        ),
        (
            file("a", r#","lfs":{"oid":"zz","size":1}"#),
            "bad LFS sha256",
        ),
        ("{not json".to_string(), "invalid file listing"),
        ("{\"error\":\"x\"}".to_string(), "invalid file listing"),
        (
            // Each at the 1 PiB limit, together past 2^64: no sum of them may wrap.
            format!(
                "[{}]",
                (0..16_385)
                    .map(|i| format!(
                        r#"{{"type":"file","path":"f{i}","oid":"{oid}","size":1125899906842624}}"#
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "add up to more than 2^64 bytes",
        ),
    ];
    for (body, why) in cases {
        hub.emu.clear_faults();
        hub.emu
            .add_fault(Fault::new(FaultKind::RawTree { body: body.clone() }));
        let err = assert_error(
            client.list_files("org/model", "main"),
            ErrorKind::Http,
            &[why, "the server at http://127.0.0.1"],
        );
        assert!(err.message().contains("not the request"), "{body}: {err}");
    }
}

#[test]
fn gzip_json_is_decoded_and_capped_by_its_decoded_size() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    let plain_info = client.model_info("org/model", "main").unwrap();
    let plain = client.list_files("org/model", "main").unwrap();
    let plain_bytes = hub.emu.bytes_sent_for("/tree/");
    hub.emu.clear_log();
    hub.emu.set_gzip_json(true);
    assert_eq!(client.model_info("org/model", "main").unwrap(), plain_info);
    assert_eq!(client.list_files("org/model", "main").unwrap(), plain);
    let gzip_bytes = hub.emu.bytes_sent_for("/tree/");
    assert!(
        gzip_bytes < plain_bytes,
        "the listing came compressed: {gzip_bytes} vs {plain_bytes} bytes"
    );

    // 65 MiB of JSON that compresses to a few hundred KiB: the cap counts decoded bytes.
    let bomb = format!("[{}]", " ".repeat(65 << 20));
    hub.emu.clear_log();
    hub.emu
        .add_fault(Fault::new(FaultKind::RawTree { body: bomb }));
    assert_error(
        client.list_files("org/model", "main"),
        ErrorKind::Http,
        &[
            "larger than 67108864 bytes",
            "the server at http://127.0.0.1",
        ],
    );
    let sent = hub.emu.bytes_sent_for("/tree/");
    assert!(sent < 4 << 20, "the bomb went compressed ({sent} bytes)");
}

#[test]
fn endless_pagination_is_bounded() {
    let hub = start_hub(1000);
    hub.emu.add_fault(Fault::new(FaultKind::EndlessPagination));
    let started = Instant::now();
    assert_error(
        hub.client(None).list_files("org/model", "main"),
        ErrorKind::Http,
        &["more than 10000 pages", "page forever"],
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_stalled_body_is_cut_by_the_read_timeout() {
    let hub = start_hub(1000);
    let client = hub.client_with(HubOptions {
        read_timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    });
    let resolved = client.resolve("org/model", "main", LFS_FILE).unwrap();
    hub.emu.add_fault(
        Fault::new(FaultKind::Stall {
            bytes: 1000,
            seconds: 20.0,
        })
        .on(Listener::Cdn),
    );
    let started = Instant::now();
    let fetched = client.file_source(&resolved.url).fetch(None).unwrap();
    let mut body = Vec::new();
    let err = fetched
        .body
        .take(LFS_SIZE as u64)
        .read_to_end(&mut body)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("read timeout"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_stalled_api_answer_is_a_network_error_after_retries() {
    let hub = start_hub(1000);
    hub.emu.add_fault(
        Fault::new(FaultKind::Stall {
            bytes: 0,
            seconds: 20.0,
        })
        .path("/revision/"),
    );
    let client = hub.client_with(HubOptions {
        read_timeout: Some(Duration::from_millis(200)),
        max_retries: Some(1),
        ..Default::default()
    });
    let started = Instant::now();
    let err = client.model_info("org/model", "main");
    // The stall sends the head first, so the body read is what times out.
    assert_error(
        err,
        ErrorKind::Network,
        &["model info", "gave up after 1 retry"],
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_connection_dropped_mid_body_is_an_io_error_not_a_short_read() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    let resolved = client.resolve("org/model", "main", LFS_FILE).unwrap();
    hub.emu.add_fault(
        Fault::new(FaultKind::DropAfter {
            bytes: 5000,
            reset: false,
        })
        .on(Listener::Cdn)
        .times(1),
    );
    let mut body = Vec::new();
    let fetched = client.file_source(&resolved.url).fetch(None).unwrap();
    assert!(fetched
        .body
        .take(LFS_SIZE as u64 + 1)
        .read_to_end(&mut body)
        .is_err());
    assert!(body.len() <= 5000);
}

#[test]
fn ranged_fetches_and_servers_that_ignore_range() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    let resolved = client.resolve("org/model", "main", LFS_FILE).unwrap();
    let source = client.file_source(&resolved.url);
    let expected = lfs_bytes();

    let fetched = source.fetch(Some((1000, 1100))).unwrap();
    assert!(fetched.partial);
    assert_eq!(fetched.content_length, Some(100));
    let mut body = Vec::new();
    fetched.body.take(1000).read_to_end(&mut body).unwrap();
    assert!(body == expected[1000..1100]);
    assert_eq!(
        hub.settled_requests().last().unwrap().range.as_deref(),
        Some("bytes=1000-1099")
    );

    hub.emu.add_fault(
        Fault::new(FaultKind::IgnoreRange)
            .on(Listener::Cdn)
            .times(1),
    );
    let fetched = source.fetch(Some((1000, 1100))).unwrap();
    assert!(!fetched.partial, "a 200 is the whole file");
    assert_eq!(fetched.content_length, Some(LFS_SIZE as u64));

    assert_error(
        source
            .fetch(Some((LFS_SIZE as u64 + 10, LFS_SIZE as u64 + 20)))
            .map(|_| ()),
        ErrorKind::Http,
        &["416 Range Not Satisfiable", "scan the repo again"],
    );

    hub.emu
        .add_fault(Fault::new(FaultKind::Chunked).on(Listener::Cdn).times(1));
    let fetched = source.fetch(None).unwrap();
    assert_eq!(fetched.content_length, None);
    let mut body = Vec::new();
    fetched
        .body
        .take(LFS_SIZE as u64 + 1)
        .read_to_end(&mut body)
        .unwrap();
    assert!(body == expected);
}

#[test]
fn a_fetch_of_a_missing_url_is_entry_not_found() {
    let hub = start_hub(1000);
    let client = hub.client(None);
    let url = format!("{}/org/model/resolve/main/nope.bin?x=1", hub.emu.url());
    assert_error(
        client.file_source(&url).fetch(None).map(|_| ()),
        ErrorKind::EntryNotFound,
        &["404"],
    );
}
