//! Every fault kind, checked on the wire with a raw client (ureq would reject most of them),
//! plus matching by listener, path and count.

mod common;

use std::time::{Duration, Instant};

use common::{agent, call, get, raw, RawReply, Scratch};
use hub_emulator::{
    pseudo_random_bytes, write_file, write_pseudo_random_file, Emulator, Fault, FaultKind, Listener,
};

const REPO: &str = "org/model";
const LEN: u64 = 100_000;
const SEED: u64 = 9;

struct Setup {
    _scratch: Scratch,
    emu: Emulator,
    /// Path+query of the weights on the CDN listener.
    cdn_target: String,
    content: Vec<u8>,
}

fn setup(name: &str) -> Setup {
    let scratch = Scratch::new(name);
    write_pseudo_random_file(scratch.path(), REPO, "model.safetensors", LEN, SEED).unwrap();
    write_file(scratch.path(), REPO, "config.json", b"{\"a\": 1}").unwrap();
    let emu = Emulator::builder(scratch.path())
        .page_size(1)
        .start()
        .unwrap();
    let redirect = call(
        &agent(),
        "HEAD",
        &format!("{}/{REPO}/resolve/main/model.safetensors", emu.url()),
        &[],
    );
    let location = redirect.header("location").unwrap();
    let cdn_target = location[emu.cdn_url().len()..].to_owned();
    emu.clear_log();
    Setup {
        _scratch: scratch,
        emu,
        cdn_target,
        content: pseudo_random_bytes(LEN as usize, SEED),
    }
}

impl Setup {
    fn cdn(&self, extra_headers: &str) -> RawReply {
        raw(self.emu.cdn_addr(), "GET", &self.cdn_target, extra_headers)
    }

    fn cdn_fault(&self, kind: FaultKind) -> hub_emulator::FaultId {
        self.emu.add_fault(
            Fault::new(kind)
                .on(Listener::Cdn)
                .path("model.safetensors")
                .times(1),
        )
    }
}

#[test]
fn drop_after_sends_exactly_n_bytes_then_closes() {
    let setup = setup("drop");
    let id = setup.cdn_fault(FaultKind::DropAfter {
        bytes: 1234,
        reset: false,
    });
    let reply = setup.cdn("");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length").unwrap(), LEN.to_string());
    assert_eq!(reply.body, &setup.content[..1234]);
    assert!(!reply.reset);
    assert_eq!(setup.emu.fault_hits(id), 1);
    let log = setup.emu.requests();
    assert_eq!(log[0].body_bytes, 1234);
    assert_eq!(log[0].faults, vec![id.0]);
    // Fired once only.
    assert_eq!(setup.cdn("").body, setup.content);
    assert_eq!(setup.emu.bytes_sent_for("model.safetensors"), 1234 + LEN);
}

#[test]
fn drop_after_with_reset_resets_the_connection() {
    let setup = setup("reset");
    setup.cdn_fault(FaultKind::DropAfter {
        bytes: 0,
        reset: true,
    });
    let reply = setup.cdn("");
    assert!(reply.reset, "expected a reset, got a clean close");
    assert!(reply.body.is_empty());
}

#[test]
fn status_faults_carry_retry_headers_and_keep_the_connection() {
    let setup = setup("status");
    setup
        .emu
        .add_fault(Fault::rate_limited(7).on(Listener::Api).times(2));
    setup.emu.add_fault(
        Fault::new(FaultKind::Status {
            status: 503,
            retry_after: None,
            ratelimit_reset: None,
            error_code: Some("Overloaded".into()),
        })
        .on(Listener::Cdn)
        .method("GET")
        .times(1),
    );
    let agent = agent();
    let url = format!("{}/api/models/{REPO}", setup.emu.url());
    for _ in 0..2 {
        let reply = get(&agent, &url);
        assert_eq!(reply.status, 429);
        assert_eq!(reply.header("retry-after"), Some("7"));
        assert_eq!(reply.header("ratelimit"), Some("\"default\";r=0;t=7"));
        assert!(reply.json()["error"].is_string());
    }
    assert_eq!(get(&agent, &url).status, 200);

    let cdn_url = format!("{}{}", setup.emu.cdn_url(), setup.cdn_target);
    // HEAD does not match a GET-only fault.
    assert_eq!(call(&agent, "HEAD", &cdn_url, &[]).status, 200);
    let failed = get(&agent, &cdn_url);
    assert_eq!(failed.status, 503);
    assert_eq!(failed.header("x-error-code"), Some("Overloaded"));
    assert_eq!(get(&agent, &cdn_url).body, setup.content);
    // Status faults do not close the connection.
    let connections: std::collections::HashSet<u64> = setup
        .emu
        .requests()
        .iter()
        .filter(|r| r.listener == Listener::Cdn)
        .map(|r| r.connection)
        .collect();
    assert_eq!(connections.len(), 1);
}

#[test]
fn stall_sends_some_bytes_then_waits_then_closes() {
    let setup = setup("stall");
    setup.cdn_fault(FaultKind::Stall {
        bytes: 500,
        seconds: 0.6,
    });
    let started = Instant::now();
    let reply = setup.cdn("");
    let waited = started.elapsed();
    assert_eq!(reply.body, &setup.content[..500]);
    assert!(waited >= Duration::from_millis(550), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[test]
fn corrupt_flips_one_byte_in_full_and_ranged_bodies() {
    let setup = setup("corrupt");
    setup.emu.add_fault(
        Fault::new(FaultKind::Corrupt { offset: 5000 })
            .on(Listener::Cdn)
            .times(2),
    );
    let full = setup.cdn("");
    assert_eq!(full.body.len(), setup.content.len());
    let differing: Vec<usize> = (0..full.body.len())
        .filter(|&i| full.body[i] != setup.content[i])
        .collect();
    assert_eq!(differing, vec![5000]);
    let ranged = setup.cdn("Range: bytes=4990-5009\r\n");
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body.len(), 20);
    assert_ne!(ranged.body[10], setup.content[5000]);
    assert_eq!(&ranged.body[..10], &setup.content[4990..5000]);
    assert_eq!(&ranged.body[11..], &setup.content[5001..5010]);
}

#[test]
fn ignore_range_answers_the_whole_body() {
    let setup = setup("ignore-range");
    setup.cdn_fault(FaultKind::IgnoreRange);
    let reply = setup.cdn("Range: bytes=10-19\r\n");
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-range").is_none());
    assert_eq!(reply.body, setup.content);
    let honoured = setup.cdn("Range: bytes=10-19\r\n");
    assert_eq!(honoured.status, 206);
}

#[test]
fn chunked_has_no_content_length_and_decodes_to_the_body() {
    let setup = setup("chunked");
    setup.cdn_fault(FaultKind::Chunked);
    let reply = setup.cdn("");
    assert_eq!(
        reply.header("transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert!(reply.header("content-length").is_none());
    assert_eq!(decode_chunked(&reply.body), setup.content);

    // ureq decodes it as any client would.
    setup.cdn_fault(FaultKind::Chunked);
    let via_ureq = get(
        &agent(),
        &format!("{}{}", setup.emu.cdn_url(), setup.cdn_target),
    );
    assert_eq!(via_ureq.body, setup.content);
}

fn decode_chunked(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[..line_end]).unwrap(), 16).unwrap();
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            assert_eq!(bytes, b"\r\n");
            return out;
        }
        out.extend_from_slice(&bytes[..size]);
        assert_eq!(&bytes[size..size + 2], b"\r\n");
        bytes = &bytes[size + 2..];
    }
}

#[test]
fn truncate_declares_the_full_length_and_sends_less() {
    let setup = setup("truncate");
    setup.cdn_fault(FaultKind::Truncate { missing: 10 });
    let reply = setup.cdn("");
    assert_eq!(reply.header("content-length").unwrap(), LEN.to_string());
    assert_eq!(reply.body, &setup.content[..LEN as usize - 10]);
}

#[test]
fn extra_byte_declares_and_sends_one_byte_too_many() {
    let setup = setup("extra");
    setup.cdn_fault(FaultKind::ExtraByte);
    let reply = setup.cdn("");
    assert_eq!(
        reply.header("content-length").unwrap(),
        (LEN + 1).to_string()
    );
    assert_eq!(reply.body.len() as u64, LEN + 1);
    assert_eq!(&reply.body[..LEN as usize], &setup.content[..]);
}

#[test]
fn rate_limit_paces_the_body() {
    let setup = setup("rate");
    setup.cdn_fault(FaultKind::RateLimit {
        bytes_per_sec: 200_000,
    });
    let started = Instant::now();
    let reply = setup.cdn("");
    let took = started.elapsed();
    assert_eq!(reply.body, setup.content);
    // 100 kB at 200 kB/s: about half a second.
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn raw_tree_and_endless_pagination_only_touch_listings() {
    let setup = setup("tree-faults");
    let hostile = r#"[{"type":"file","oid":"x","size":1,"path":"../../etc/passwd"}]"#;
    setup.emu.add_fault(
        Fault::new(FaultKind::RawTree {
            body: hostile.into(),
        })
        .on(Listener::Api)
        .times(1),
    );
    let agent = agent();
    // A model-info request does not use up the tree fault.
    assert_eq!(
        get(&agent, &format!("{}/api/models/{REPO}", setup.emu.url())).status,
        200
    );
    let tree_url = format!(
        "{}/api/models/{REPO}/tree/main?recursive=true",
        setup.emu.url()
    );
    let reply = get(&agent, &tree_url);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, hostile.as_bytes());
    assert!(reply.header("link").is_none());

    setup
        .emu
        .add_fault(Fault::new(FaultKind::EndlessPagination).on(Listener::Api));
    let mut url = tree_url;
    let mut pages = Vec::new();
    for _ in 0..6 {
        let reply = get(&agent, &url);
        let link = reply
            .header("link")
            .expect("endless pagination always links")
            .to_owned();
        pages.push(reply.json().as_array().unwrap().len());
        url = link[1..link.find('>').unwrap()].to_owned();
    }
    // Two real entries (page size 1), then empty pages forever.
    assert_eq!(pages, [1, 1, 0, 0, 0, 0]);
}

#[test]
fn faults_match_by_listener_and_path_and_can_be_removed() {
    let setup = setup("matching");
    let api_only = setup
        .emu
        .add_fault(Fault::status(500).on(Listener::Api).path("config.json"));
    let agent = agent();
    assert_eq!(
        get(
            &agent,
            &format!("{}/{REPO}/resolve/main/config.json", setup.emu.url())
        )
        .status,
        500
    );
    assert_eq!(
        get(&agent, &format!("{}/api/models/{REPO}", setup.emu.url())).status,
        200
    );
    assert_eq!(setup.cdn("").status, 200);
    assert_eq!(setup.emu.faults().len(), 1);
    assert!(setup.emu.remove_fault(api_only));
    assert!(!setup.emu.remove_fault(api_only));
    assert_eq!(
        get(
            &agent,
            &format!("{}/{REPO}/resolve/main/config.json", setup.emu.url())
        )
        .status,
        200
    );

    setup.emu.add_fault(Fault::status(502));
    setup.emu.clear_faults();
    assert_eq!(setup.cdn("").status, 200);

    // Faults on small in-memory bodies work the same way.
    setup.emu.add_fault(
        Fault::new(FaultKind::Truncate { missing: 3 })
            .on(Listener::Api)
            .path("config.json")
            .times(1),
    );
    let cut = raw(
        setup.emu.addr(),
        "GET",
        &format!("/{REPO}/resolve/main/config.json"),
        "",
    );
    assert_eq!(cut.body, b"{\"a\":");
}

#[test]
fn dropping_the_emulator_mid_stall_does_not_hang() {
    let setup = setup("shutdown");
    setup.cdn_fault(FaultKind::Stall {
        bytes: 10,
        seconds: 60.0,
    });
    let addr = setup.emu.cdn_addr();
    let target = setup.cdn_target.clone();
    let client = std::thread::spawn(move || raw(addr, "GET", &target, ""));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    drop(setup);
    assert!(started.elapsed() < Duration::from_secs(5));
    let reply = client.join().unwrap();
    assert_eq!(reply.body.len(), 10);
}

#[test]
fn claim_size_claims_on_head_and_get_and_sends_the_real_body() {
    let setup = setup("claim-size");
    let claimed = 1u64 << 62;
    setup
        .emu
        .add_fault(Fault::new(FaultKind::ClaimSize { size: claimed }).path("model.safetensors"));
    let resolve = "/org/model/resolve/main/model.safetensors";
    let head = raw(setup.emu.addr(), "HEAD", resolve, "");
    assert_eq!(head.status, 302);
    assert_eq!(head.header("x-linked-size").unwrap(), claimed.to_string());
    // The redirect's own framing is left alone.
    assert_ne!(head.header("content-length").unwrap(), claimed.to_string());

    let reply = setup.cdn("");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length").unwrap(), claimed.to_string());
    assert_eq!(reply.body, setup.content, "the real body, then the close");
    let ranged = setup.cdn("Range: bytes=10-19\r\n");
    assert_eq!(ranged.status, 206);
    assert_eq!(
        ranged.header("content-range").unwrap(),
        format!("bytes 10-19/{claimed}")
    );
    assert_eq!(ranged.header("content-length").unwrap(), "10");
    assert_eq!(ranged.body, &setup.content[10..20]);

    // A small file answers the resolve itself: its Content-Length is the claim.
    setup
        .emu
        .add_fault(Fault::new(FaultKind::ClaimSize { size: 3 }).path("config.json"));
    let small = raw(
        setup.emu.addr(),
        "GET",
        "/org/model/resolve/main/config.json",
        "",
    );
    assert_eq!(small.header("content-length").unwrap(), "3");
    assert_eq!(small.body, b"{\"a");
}

#[test]
fn content_encoding_gzip_really_compresses_file_bodies() {
    use std::io::Read;
    let setup = setup("content-encoding");
    setup.cdn_fault(FaultKind::ContentEncoding {
        encoding: "gzip".into(),
    });
    let reply = setup.cdn("Accept-Encoding: identity\r\n");
    assert_eq!(reply.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        reply.header("content-length").unwrap(),
        reply.body.len().to_string()
    );
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&reply.body[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, setup.content);
    // Fired once; the next answer is plain again, and a HEAD never carries it.
    assert!(setup.cdn("").header("content-encoding").is_none());
    setup.cdn_fault(FaultKind::ContentEncoding {
        encoding: "br".into(),
    });
    let head = raw(setup.emu.cdn_addr(), "HEAD", &setup.cdn_target, "");
    assert!(head.header("content-encoding").is_none());
    let other = setup.cdn("");
    assert_eq!(other.header("content-encoding").as_deref(), Some("br"));
    assert_eq!(
        other.body, setup.content,
        "other encodings go out as they are"
    );
}

#[test]
fn no_metadata_leaves_out_size_and_hash() {
    let setup = setup("no-metadata");
    setup.emu.add_fault(Fault::new(FaultKind::NoMetadata));
    let resolve = "/org/model/resolve/main/model.safetensors";
    let head = raw(setup.emu.addr(), "HEAD", resolve, "");
    assert_eq!(head.status, 302);
    assert!(head.header("x-linked-size").is_none());
    assert!(head.header("x-linked-etag").is_none());
    assert_eq!(head.header("etag").as_deref(), Some("\"opaque-etag\""));
    let cdn_head = raw(setup.emu.cdn_addr(), "HEAD", &setup.cdn_target, "");
    assert!(cdn_head.header("content-length").is_none());
    assert_eq!(cdn_head.header("etag").as_deref(), Some("\"opaque-etag\""));
    let reply = setup.cdn("");
    assert_eq!(
        reply.header("transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert!(reply.header("content-length").is_none());
    assert_eq!(decode_chunked(&reply.body), setup.content);
    // A small file's resolve is its own answer: no length there either.
    let small = raw(
        setup.emu.addr(),
        "HEAD",
        "/org/model/resolve/main/config.json",
        "",
    );
    assert_eq!(small.status, 200);
    assert!(small.header("content-length").is_none());
    assert_eq!(small.header("etag").as_deref(), Some("\"opaque-etag\""));
}
