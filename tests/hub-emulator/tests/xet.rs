//! Xet-backed repos: `xetHash` in listings, the Xet headers of a resolve, the xet-read-token
//! route and its access rules, the CAS's reconstructions (shape, ranges, tokens), signed xorb
//! URLs (exact range, expiry, tampering), deduplication across revisions and repos, and the
//! CAS faults. Files are reassembled here by the protocol alone, as a client would.

mod common;

use std::collections::HashMap;

use common::{agent, call, raw, Reply, Scratch};
use hub_emulator::{
    pseudo_random_bytes, write_file, write_repo_config, Emulator, Fault, FaultKind, Gated,
    Listener, RepoConfig,
};
use serde_json::Value;
use xet_format::hash::{file_hash, XetHash};

const REPO: &str = "org/xet";

fn xet_repo(root: &std::path::Path, repo: &str, config: RepoConfig) {
    write_repo_config(
        root,
        repo,
        &RepoConfig {
            xet: true,
            ..config
        },
    )
    .unwrap();
}

/// `REPO/w.bin`, Xet-backed: `len` mixed bytes from `seed`, served by a fresh emulator;
/// with the file's Xet hash and a read token.
struct Served {
    _scratch: Scratch,
    emu: Emulator,
    hash: String,
    token: String,
}

fn serve_one(name: &str, len: usize, seed: u64) -> Served {
    let scratch = Scratch::new(name);
    let root = scratch.path();
    let weights = mixed(len, seed);
    write_file(root, REPO, "w.bin", &weights).unwrap();
    xet_repo(root, REPO, RepoConfig::default());
    let emu = Emulator::start(root).unwrap();
    let hash = xet_hash_of(&weights);
    let token = token(&emu, REPO);
    Served {
        _scratch: scratch,
        emu,
        hash,
        token,
    }
}

fn xet_hash_of(bytes: &[u8]) -> String {
    file_hash(bytes).unwrap().0.to_string()
}

/// The tree entry of `path`.
fn entry(emu: &Emulator, repo: &str, path: &str) -> Value {
    hub_emulator::client::tree(&emu.url(), repo)
        .into_iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("{path} not listed"))
}

fn token(emu: &Emulator, repo: &str) -> String {
    let reply = call(
        &agent(),
        "GET",
        &format!("{}/api/models/{repo}/xet-read-token/main", emu.url()),
        &[],
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["accessToken"].as_str().unwrap().to_owned()
}

fn reconstruction(emu: &Emulator, hash: &str, token: &str, range: Option<&str>) -> Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(range) = range {
        headers.push(("Range", range));
    }
    call(
        &agent(),
        "GET",
        &format!("{}/v1/reconstructions/{hash}", emu.cas_url()),
        &headers,
    )
}

/// Fetches every term of a v1 reconstruction through its fetch_info and returns the bytes
/// (after offset_into_first_range; a range answer still needs cutting to its length).
fn reassemble(recon: &Value) -> Vec<u8> {
    let agent = agent();
    let mut fetched: HashMap<(String, u64, u64), Vec<Vec<u8>>> = HashMap::new();
    let mut out = Vec::new();
    for term in recon["terms"].as_array().unwrap() {
        let xorb = term["hash"].as_str().unwrap().to_owned();
        let (start, end) = (
            term["range"]["start"].as_u64().unwrap(),
            term["range"]["end"].as_u64().unwrap(),
        );
        let info = recon["fetch_info"][&xorb]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                i["range"]["start"].as_u64().unwrap() <= start
                    && i["range"]["end"].as_u64().unwrap() >= end
            })
            .expect("a fetch_info covers every term");
        let first = info["range"]["start"].as_u64().unwrap();
        let key = (xorb.clone(), first, info["range"]["end"].as_u64().unwrap());
        let chunks = fetched.entry(key).or_insert_with(|| {
            let range = format!(
                "bytes={}-{}",
                info["url_range"]["start"], info["url_range"]["end"]
            );
            let reply = call(
                &agent,
                "GET",
                info["url"].as_str().unwrap(),
                &[("Range", &range)],
            );
            assert_eq!(
                reply.status,
                206,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            decode_records(&reply.body)
        });
        let mut piece = Vec::new();
        for chunk in &chunks[(start - first) as usize..(end - first) as usize] {
            piece.extend_from_slice(chunk);
        }
        assert_eq!(
            piece.len() as u64,
            term["unpacked_length"].as_u64().unwrap()
        );
        out.extend_from_slice(&piece);
    }
    out.drain(..recon["offset_into_first_range"].as_u64().unwrap() as usize);
    out
}

fn decode_records(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    while !bytes.is_empty() {
        let mut chunk = Vec::new();
        let used = xet_format::xorb::decode(bytes, &mut chunk).expect("valid chunk records");
        chunks.push(chunk);
        bytes = &bytes[used..];
    }
    chunks
}

/// Bytes whose chunks compress (runs of one value) and random bytes, mixed.
fn mixed(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = pseudo_random_bytes(len, seed);
    for block in bytes.chunks_mut(200_000).step_by(2) {
        block.fill(0);
    }
    bytes
}

#[test]
fn listings_and_resolves_carry_the_xet_hash_and_token_route() {
    let scratch = Scratch::new("xet-listing");
    let root = scratch.path();
    let weights = mixed(1_500_000, 1);
    write_file(root, REPO, "model.safetensors", &weights).unwrap();
    write_file(root, REPO, "config.json", b"{}").unwrap();
    xet_repo(root, REPO, RepoConfig::default());
    write_file(root, "org/plain", "model.safetensors", &weights).unwrap();
    let emu = Emulator::start(root).unwrap();

    let listed = entry(&emu, REPO, "model.safetensors");
    assert_eq!(listed["xetHash"], xet_hash_of(&weights));
    assert_eq!(listed["lfs"]["size"], weights.len() as u64);
    assert!(entry(&emu, REPO, "config.json").get("xetHash").is_none());
    assert!(entry(&emu, "org/plain", "model.safetensors")
        .get("xetHash")
        .is_none());
    let info = call(
        &agent(),
        "GET",
        &format!("{}/api/models/{REPO}?blobs=true", emu.url()),
        &[],
    )
    .json();
    let sibling = info["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["rfilename"] == "model.safetensors")
        .unwrap()
        .clone();
    assert_eq!(sibling["xetHash"], xet_hash_of(&weights));

    let commit = emu.commit_of(REPO).unwrap();
    let head = call(
        &agent(),
        "HEAD",
        &format!("{}/{REPO}/resolve/main/model.safetensors", emu.url()),
        &[],
    );
    assert_eq!(head.status, 302);
    assert_eq!(
        head.header("x-xet-hash"),
        Some(xet_hash_of(&weights).as_str())
    );
    let route = format!("/api/models/{REPO}/xet-read-token/{commit}");
    assert_eq!(
        head.header("link"),
        Some(format!("<{}{route}>; rel=\"xet-auth\"", emu.url()).as_str())
    );
    assert_eq!(head.header("x-xet-refresh-route"), Some(route.as_str()));
    assert!(head.header("x-linked-etag").is_some());
    // The bridge still serves the whole file.
    let location = head.header("location").unwrap().to_owned();
    let bridged = call(&agent(), "GET", &location, &[]);
    assert_eq!(bridged.body, weights);
    let id = emu.add_fault(
        Fault::new(FaultKind::NoXetHash)
            .on(Listener::Api)
            .path("model.safetensors")
            .times(1),
    );
    let stripped = call(
        &agent(),
        "HEAD",
        &format!("{}/{REPO}/resolve/main/model.safetensors", emu.url()),
        &[],
    );
    assert!(stripped.header("x-xet-hash").is_none());
    assert_eq!(stripped.header("x-xet-refresh-route"), Some(route.as_str()));
    assert!(stripped.header("link").is_some() && stripped.header("x-linked-size").is_some());
    assert_eq!(emu.fault_hits(id), 1);
    let plain = call(
        &agent(),
        "HEAD",
        &format!("{}/org/plain/resolve/main/model.safetensors", emu.url()),
        &[],
    );
    assert!(plain.header("x-xet-hash").is_none() && plain.header("link").is_none());

    let token_reply = call(&agent(), "GET", &format!("{}{route}", emu.url()), &[]);
    assert_eq!(token_reply.status, 200);
    let body = token_reply.json();
    assert_eq!(body["casUrl"], emu.cas_url());
    let exp = body["exp"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        exp >= now + 3590 && exp <= now + 3601,
        "exp {exp}, now {now}"
    );
    assert_eq!(
        token_reply.header("x-xet-cas-url"),
        Some(emu.cas_url().as_str())
    );
    assert_eq!(
        token_reply.header("x-xet-access-token"),
        body["accessToken"].as_str()
    );
    assert_eq!(
        token_reply.header("x-xet-token-expiration"),
        Some(exp.to_string().as_str())
    );
}

#[test]
fn xet_read_token_follows_the_download_access_rules() {
    let scratch = Scratch::new("xet-access");
    let root = scratch.path();
    for (repo, config) in [
        (
            "org/gated",
            RepoConfig {
                gated: Gated::Flag(true),
                tokens: vec!["hf_ok".into()],
                ..RepoConfig::default()
            },
        ),
        (
            "org/private",
            RepoConfig {
                private: true,
                tokens: vec!["hf_ok".into()],
                ..RepoConfig::default()
            },
        ),
    ] {
        write_file(root, repo, "w.bin", &mixed(100_000, 2)).unwrap();
        xet_repo(root, repo, config);
    }
    let emu = Emulator::start(root).unwrap();
    let url =
        |repo: &str, rev: &str| format!("{}/api/models/{repo}/xet-read-token/{rev}", emu.url());
    let agent = agent();
    let gated = call(&agent, "GET", &url("org/gated", "main"), &[]);
    assert_eq!((gated.status, gated.error_code()), (401, Some("GatedRepo")));
    let wrong = call(
        &agent,
        "GET",
        &url("org/gated", "main"),
        &[("Authorization", "Bearer hf_bad")],
    );
    assert_eq!((wrong.status, wrong.error_code()), (403, Some("GatedRepo")));
    let private = call(&agent, "GET", &url("org/private", "main"), &[]);
    assert_eq!(
        (private.status, private.error_code()),
        (401, Some("RepoNotFound"))
    );
    for repo in ["org/gated", "org/private"] {
        let ok = call(
            &agent,
            "GET",
            &url(repo, "main"),
            &[("Authorization", "Bearer hf_ok")],
        );
        assert_eq!(ok.status, 200, "{repo}");
    }
    let bad_rev = call(
        &agent,
        "GET",
        &url("org/gated", "v9"),
        &[("Authorization", "Bearer hf_ok")],
    );
    assert_eq!(
        (bad_rev.status, bad_rev.error_code()),
        (404, Some("RevisionNotFound"))
    );
}

#[test]
fn reconstruction_terms_rebuild_the_file_across_several_xorbs() {
    let scratch = Scratch::new("xet-recon");
    let root = scratch.path();
    let weights = mixed(3_000_000, 3);
    write_file(root, REPO, "w.bin", &weights).unwrap();
    xet_repo(root, REPO, RepoConfig::default());
    let emu = Emulator::builder(root)
        .xorb_max_bytes(600_000)
        .start()
        .unwrap();
    let hash = xet_hash_of(&weights);
    let token = token(&emu, REPO);
    let reply = reconstruction(&emu, &hash, &token, None);
    assert_eq!(reply.status, 200);
    let recon = reply.json();
    assert_eq!(recon["offset_into_first_range"], 0);
    let terms = recon["terms"].as_array().unwrap();
    let xorbs: std::collections::HashSet<&str> =
        terms.iter().map(|t| t["hash"].as_str().unwrap()).collect();
    assert!(xorbs.len() >= 2, "a 3 MB file in 600 kB xorbs: {recon}");
    // Every fetch_info covers exactly one term's chunks; every xorb of a term has one.
    for (xorb, infos) in recon["fetch_info"].as_object().unwrap() {
        assert!(xorbs.contains(xorb.as_str()));
        for info in infos.as_array().unwrap() {
            assert!(terms
                .iter()
                .any(|t| t["hash"] == xorb.as_str() && t["range"] == info["range"]));
            assert!(info["url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/xorb/default/{xorb}?", emu.cas_url())));
        }
    }
    let total: u64 = terms
        .iter()
        .map(|t| t["unpacked_length"].as_u64().unwrap())
        .sum();
    assert_eq!(total, weights.len() as u64);
    assert_eq!(reassemble(&recon), weights);
    let stats = emu.xet_stats();
    assert!(stats.xorbs >= 2 && stats.files == 1, "{stats:?}");
    // Compressible halves: the xorbs hold less than the file.
    assert!(stats.stored_bytes < weights.len() as u64, "{stats:?}");
    assert!(emu.cas_bytes_sent() > stats.stored_bytes);
    assert!(emu.bytes_sent_for(&hash) > 0);

    // A range: whole chunks around it, and the offset of its first byte.
    for (first, last) in [(1_234_567u64, 2_000_000u64), (0, 0), (2_999_999, 2_999_999)] {
        let range = format!("bytes={first}-{last}");
        let recon = reconstruction(&emu, &hash, &token, Some(&range)).json();
        let bytes = reassemble(&recon);
        let want = &weights[first as usize..=last as usize];
        assert!(bytes.len() >= want.len() && bytes.len() < want.len() + 2 * 131_072);
        assert_eq!(&bytes[..want.len()], want, "{range}");
    }
    let past_end = reconstruction(&emu, &hash, &token, Some("bytes=2999000-9999999")).json();
    assert_eq!(reassemble(&past_end), &weights[2_999_000..]);
    let beyond = reconstruction(&emu, &hash, &token, Some("bytes=3000000-3000010"));
    assert_eq!(beyond.status, 416);

    // v2: the same ranges, one single-range URL each.
    let auth = format!("Bearer {token}");
    let v2 = call(
        &agent(),
        "GET",
        &format!("{}/v2/reconstructions/{hash}", emu.cas_url()),
        &[("Authorization", &auth)],
    )
    .json();
    assert_eq!(v2["terms"], recon["terms"]);
    for (xorb, fetches) in v2["xorbs"].as_object().unwrap() {
        let v1 = recon["fetch_info"][xorb].as_array().unwrap();
        let fetches = fetches.as_array().unwrap();
        assert_eq!(fetches.len(), v1.len());
        for fetch in fetches {
            let ranges = fetch["ranges"].as_array().unwrap();
            assert_eq!(ranges.len(), 1);
            assert!(
                v1.iter()
                    .any(|i| i["range"] == ranges[0]["chunks"]
                        && i["url_range"] == ranges[0]["bytes"])
            );
        }
    }
}

#[test]
fn cas_refuses_missing_bad_and_expired_tokens_and_unknown_files() {
    let scratch = Scratch::new("xet-tokens");
    let root = scratch.path();
    let weights = mixed(300_000, 4);
    write_file(root, REPO, "w.bin", &weights).unwrap();
    xet_repo(root, REPO, RepoConfig::default());
    write_file(root, "org/other", "x.bin", &mixed(200_000, 5)).unwrap();
    xet_repo(root, "org/other", RepoConfig::default());
    let emu = Emulator::start(root).unwrap();
    let hash = xet_hash_of(&weights);
    let url = format!("{}/v1/reconstructions/{hash}", emu.cas_url());
    let none = call(&agent(), "GET", &url, &[]);
    assert_eq!(none.status, 401);
    assert!(none.json()["error"].is_string());
    assert_eq!(reconstruction(&emu, &hash, "xet_made_up", None).status, 401);
    let good = token(&emu, REPO);
    assert_eq!(reconstruction(&emu, &hash, &good, None).status, 200);
    let unknown = XetHash([7; 32]).to_string();
    assert_eq!(reconstruction(&emu, &unknown, &good, None).status, 404);
    // Another repo's token does not open this repo's files.
    let other = token(&emu, "org/other");
    assert_eq!(reconstruction(&emu, &hash, &other, None).status, 404);

    emu.set_xet_token_ttl(1);
    let short = token(&emu, REPO);
    assert_eq!(reconstruction(&emu, &hash, &short, None).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(reconstruction(&emu, &hash, &short, None).status, 401);
    emu.set_xet_token_ttl(0);
    let dead = token(&emu, REPO);
    assert_eq!(reconstruction(&emu, &hash, &dead, None).status, 401);
    // Tokens issued before stay good.
    assert_eq!(reconstruction(&emu, &hash, &good, None).status, 200);
    let cas: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Cas)
        .collect();
    assert!(cas
        .iter()
        .all(|r| r.target.starts_with("/v1/reconstructions/")));
}

#[test]
fn xorb_urls_serve_exactly_their_signed_range_until_they_expire() {
    let Served {
        _scratch,
        emu,
        hash,
        token,
    } = serve_one("xet-urls", 400_000, 6);
    let recon = reconstruction(&emu, &hash, &token, None).json();
    let (xorb, infos) = recon["fetch_info"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let info = &infos[0];
    let url = info["url"].as_str().unwrap();
    let (start, end) = (
        info["url_range"]["start"].as_u64().unwrap(),
        info["url_range"]["end"].as_u64().unwrap(),
    );
    let exact = format!("bytes={start}-{end}");
    let ok = call(&agent(), "GET", url, &[("Range", &exact)]);
    assert_eq!(ok.status, 206);
    assert_eq!(ok.body.len() as u64, end - start + 1);
    assert!(ok
        .header("content-range")
        .unwrap()
        .starts_with(&format!("bytes {start}-{end}/")));
    let agent = agent();
    let forbidden = |url: &str, range: Option<&str>| {
        let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
        let reply = call(&agent, "GET", url, &headers);
        assert_eq!(reply.status, 403, "{url} {range:?}");
        assert!(reply.json()["error"].is_string());
    };
    forbidden(url, None);
    forbidden(url, Some(&format!("bytes={start}-{}", end - 1)));
    forbidden(url, Some(&format!("bytes={start}-")));
    forbidden(&url.replace("sig=", "sig=0"), Some(&exact));
    let other_range = url.replace(
        &format!("r={start}-{end}"),
        &format!("r={start}-{}", end - 1),
    );
    forbidden(&other_range, Some(&format!("bytes={start}-{}", end - 1)));
    // The unsigned xorb path is no way in either.
    forbidden(
        &format!("{}/xorb/default/{xorb}", emu.cas_url()),
        Some(&exact),
    );

    emu.set_xet_url_ttl(0);
    let stale = reconstruction(&emu, &hash, &token, None).json();
    let stale_info = &stale["fetch_info"][xorb][0];
    forbidden(stale_info["url"].as_str().unwrap(), Some(&exact));
    // URLs handed out earlier still work.
    assert_eq!(call(&agent, "GET", url, &[("Range", &exact)]).status, 206);
}

#[test]
fn a_new_revision_references_the_old_xorbs_and_stores_only_the_change() {
    let scratch = Scratch::new("xet-dedup");
    let root = scratch.path();
    let mut weights = pseudo_random_bytes(8 << 20, 7);
    write_file(root, REPO, "w.bin", &weights).unwrap();
    xet_repo(root, REPO, RepoConfig::default());
    let emu = Emulator::start(root).unwrap();
    let old_hash = xet_hash_of(&weights);
    assert_eq!(entry(&emu, REPO, "w.bin")["xetHash"], old_hash);
    let before = emu.xet_stats();
    let old_token = token(&emu, REPO);
    let old = reconstruction(&emu, &old_hash, &old_token, None).json();
    let old_xorbs: Vec<&str> = old["terms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["hash"].as_str().unwrap())
        .collect();

    // A new commit: 1 MiB in the middle rewritten.
    let change = pseudo_random_bytes(1 << 20, 8);
    weights[4 << 20..5 << 20].copy_from_slice(&change);
    write_file(root, REPO, "w.bin", &weights).unwrap();
    let new_hash = xet_hash_of(&weights);
    assert_ne!(new_hash, old_hash);
    assert_eq!(entry(&emu, REPO, "w.bin")["xetHash"], new_hash);
    let after = emu.xet_stats();
    assert_eq!(after.xorbs, before.xorbs + 1, "one new xorb for the change");
    let added = after.stored_bytes - before.stored_bytes;
    assert!(
        added > 1 << 20 && added < (1 << 20) + 3 * 131_072,
        "the new xorb holds the change and the chunks around it: {added}"
    );

    let new = reconstruction(&emu, &new_hash, &token(&emu, REPO), None).json();
    let terms = new["terms"].as_array().unwrap();
    let xorb_of = |t: &Value| t["hash"].as_str().unwrap().to_owned();
    assert!(terms.len() >= 3, "{new}");
    assert!(old_xorbs.contains(&xorb_of(&terms[0]).as_str()));
    assert!(old_xorbs.contains(&xorb_of(terms.last().unwrap()).as_str()));
    let fresh: Vec<&Value> = terms
        .iter()
        .filter(|t| !old_xorbs.contains(&xorb_of(t).as_str()))
        .collect();
    assert_eq!(fresh.len(), 1, "one term into the new xorb: {new}");
    let fresh_len = fresh[0]["unpacked_length"].as_u64().unwrap();
    assert!((1 << 20..(1 << 20) + 3 * 131_072).contains(&fresh_len));
    assert_eq!(reassemble(&new), weights);
    // The old revision's file is still in the CAS.
    assert_eq!(reassemble(&old).len(), 8 << 20);

    // The same bytes in another repo store nothing new.
    write_file(root, "org/copy", "same.bin", &weights).unwrap();
    xet_repo(root, "org/copy", RepoConfig::default());
    assert_eq!(entry(&emu, "org/copy", "same.bin")["xetHash"], new_hash);
    let copied = emu.xet_stats();
    assert_eq!(
        (copied.xorbs, copied.stored_bytes),
        (after.xorbs, after.stored_bytes)
    );
    let copy = reconstruction(&emu, &new_hash, &token(&emu, "org/copy"), None).json();
    assert_eq!(copy["terms"], new["terms"]);
}

#[test]
fn repeated_chunks_are_stored_once() {
    let scratch = Scratch::new("xet-zeros");
    let root = scratch.path();
    let zeros = vec![0u8; 2 << 20];
    write_file(root, REPO, "zeros.bin", &zeros).unwrap();
    xet_repo(root, REPO, RepoConfig::default());
    let emu = Emulator::start(root).unwrap();
    let hash = xet_hash_of(&zeros);
    assert_eq!(entry(&emu, REPO, "zeros.bin")["xetHash"], hash);
    let stats = emu.xet_stats();
    assert_eq!((stats.xorbs, stats.chunks), (1, 1), "{stats:?}");
    assert!(stats.stored_bytes < 4096, "zeros compress: {stats:?}");
    let recon = reconstruction(&emu, &hash, &token(&emu, REPO), None).json();
    assert_eq!(recon["terms"].as_array().unwrap().len(), 16);
    let infos = recon["fetch_info"].as_object().unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos.values().next().unwrap().as_array().unwrap().len(), 1);
    assert_eq!(reassemble(&recon), zeros);
}

/// The first fetch_info of `file`'s reconstruction: (url, Range header value).
fn first_fetch(emu: &Emulator, hash: &str, token: &str) -> (String, String) {
    let recon = reconstruction(emu, hash, token, None).json();
    let info = &recon["fetch_info"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()[0];
    (
        info["url"].as_str().unwrap().to_owned(),
        format!(
            "bytes={}-{}",
            info["url_range"]["start"], info["url_range"]["end"]
        ),
    )
}

#[test]
fn cas_faults_fire_on_the_cas_listener() {
    let Served {
        _scratch,
        emu,
        hash,
        token,
    } = serve_one("xet-faults", 300_000, 9);
    let (url, range) = first_fetch(&emu, &hash, &token);
    let clean = call(&agent(), "GET", &url, &[("Range", &range)]).body;

    // Unknown scheme: the first record's scheme byte says 7, which decoding refuses.
    let id = emu.add_fault(
        Fault::new(FaultKind::XetUnknownScheme)
            .on(Listener::Cas)
            .path("/xorb/")
            .times(1),
    );
    let bad = call(&agent(), "GET", &url, &[("Range", &range)]);
    assert_eq!((bad.status, bad.body.len()), (206, clean.len()));
    assert_eq!(bad.body[4], 7);
    assert_eq!(bad.body[5..], clean[5..]);
    assert!(matches!(
        xet_format::xorb::decode(&bad.body, &mut Vec::new()),
        Err(xet_format::xorb::FormatError::UnknownScheme(7))
    ));
    assert_eq!(emu.fault_hits(id), 1);
    assert_eq!(
        call(&agent(), "GET", &url, &[("Range", &range)]).body,
        clean
    );

    // Expired credentials for two requests, then good again (a client that refreshes).
    emu.add_fault(
        Fault::new(FaultKind::ExpireXetAuth)
            .on(Listener::Cas)
            .times(2),
    );
    assert_eq!(reconstruction(&emu, &hash, &token, None).status, 401);
    assert_eq!(
        call(&agent(), "GET", &url, &[("Range", &range)]).status,
        403
    );
    assert_eq!(reconstruction(&emu, &hash, &token, None).status, 200);

    // Corrupt flips a byte at a xorb offset; DropAfter cuts the body; Status answers 503.
    let start: u64 = range["bytes=".len()..]
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    emu.add_fault(
        Fault::new(FaultKind::Corrupt {
            offset: start + 100,
        })
        .on(Listener::Cas)
        .times(1),
    );
    let corrupt = call(&agent(), "GET", &url, &[("Range", &range)]).body;
    assert_eq!(corrupt[100], clean[100] ^ 0xFF);
    emu.add_fault(
        Fault::new(FaultKind::DropAfter {
            bytes: 10,
            reset: false,
        })
        .on(Listener::Cas)
        .path("/xorb/")
        .times(1),
    );
    let cut = raw(
        emu.cas_addr(),
        "GET",
        url.strip_prefix(&emu.cas_url()).unwrap(),
        &format!("Range: {range}\r\n"),
    );
    assert_eq!((cut.status, cut.body.len()), (206, 10));
    emu.add_fault(
        Fault::new(FaultKind::Status {
            status: 503,
            retry_after: Some(1),
            ratelimit_reset: None,
            error_code: None,
        })
        .on(Listener::Cas)
        .path("/v1/reconstructions/")
        .times(1),
    );
    let unavailable = reconstruction(&emu, &hash, &token, None);
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.header("retry-after"), Some("1"));
    // Faults on the CDN listener leave the CAS alone.
    emu.add_fault(Fault::status(500).on(Listener::Cdn));
    assert_eq!(reconstruction(&emu, &hash, &token, None).status, 200);
    let logged: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Cas)
        .collect();
    assert!(logged.iter().any(|r| !r.faults.is_empty()));
    let json = serde_json::to_value(&logged[0]).unwrap();
    assert_eq!(json["listener"], "cas");
}

#[test]
fn control_stats_count_cas_bytes_and_faults_take_the_cas_listener() {
    let Served {
        _scratch,
        emu,
        hash,
        token,
    } = serve_one("xet-control", 200_000, 10);
    let (url, range) = first_fetch(&emu, &hash, &token);
    let fetched = call(&agent(), "GET", &url, &[("Range", &range)]).body.len() as u64;
    let stats = call(
        &agent(),
        "GET",
        &format!("{}/_emulator/stats", emu.url()),
        &[],
    )
    .json();
    assert_eq!(stats["bytes_sent_cas"], emu.cas_bytes_sent());
    assert!(emu.cas_bytes_sent() > fetched);
    let fault: Fault = serde_json::from_str(
        r#"{"listener": "cas", "path_contains": "/xorb/", "kind": {"type": "xet_unknown_scheme"}}"#,
    )
    .unwrap();
    assert_eq!(
        fault,
        Fault::new(FaultKind::XetUnknownScheme)
            .on(Listener::Cas)
            .path("/xorb/")
    );
    let expire: Fault =
        serde_json::from_str(r#"{"times": 1, "kind": {"type": "expire_xet_auth"}}"#).unwrap();
    assert_eq!(expire, Fault::new(FaultKind::ExpireXetAuth).times(1));
}
