//! The Hub protocol as clients see it: model info, paginated tree listings, resolve with LFS
//! redirects to the CDN listener, ranges, revisions and the access rules.

mod common;

use common::{agent, call, get, raw, Scratch};
use hub_emulator::{
    git_blob_sha1, lfs_pointer, pseudo_random_bytes, pseudo_random_sha256, write_file,
    write_pseudo_random_file, write_repo_config, Emulator, Gated, Listener, RepoConfig,
};

const REPO: &str = "org/model";
const CONFIG_JSON: &[u8] = br#"{"model_type": "llama"}"#;
const WEIGHTS_LEN: u64 = 300_000;
const WEIGHTS_SEED: u64 = 42;

/// A repo with a small plain file, an LFS file by extension, and a nested folder.
fn sample_repo(scratch: &Scratch) {
    let root = scratch.path();
    write_file(root, REPO, "config.json", CONFIG_JSON).unwrap();
    write_file(root, REPO, "README.md", b"# model\n").unwrap();
    write_pseudo_random_file(root, REPO, "onnx/model.onnx", WEIGHTS_LEN, WEIGHTS_SEED).unwrap();
    write_file(root, REPO, "onnx/tokenizer.json", b"{}").unwrap();
    write_repo_config(
        root,
        REPO,
        &RepoConfig {
            pipeline_tag: Some("text-generation".into()),
            ..RepoConfig::default()
        },
    )
    .unwrap();
}

#[test]
fn model_info_reports_commit_task_and_siblings() {
    let scratch = Scratch::new("info");
    sample_repo(&scratch);
    let emu = Emulator::start(scratch.path()).unwrap();
    let agent = agent();

    let reply = get(
        &agent,
        &format!("{}/api/models/{REPO}/revision/main", emu.url()),
    );
    assert_eq!(reply.status, 200);
    let info = reply.json();
    assert_eq!(info["id"], REPO);
    assert_eq!(info["modelId"], REPO);
    assert_eq!(info["pipeline_tag"], "text-generation");
    assert_eq!(info["gated"], false);
    assert_eq!(info["private"], false);
    let sha = info["sha"].as_str().unwrap();
    assert_eq!(sha.len(), 40);
    assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(Some(sha.to_owned()), emu.commit_of(REPO));
    let siblings: Vec<&str> = info["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rfilename"].as_str().unwrap())
        .collect();
    // The config file is never listed.
    assert_eq!(
        siblings,
        [
            "README.md",
            "config.json",
            "onnx/model.onnx",
            "onnx/tokenizer.json"
        ]
    );
    assert!(info["lastModified"].as_str().unwrap().ends_with('Z'));

    // The plain form, the commit itself, and blobs=true.
    let plain = get(&agent, &format!("{}/api/models/{REPO}", emu.url())).json();
    assert_eq!(plain["sha"], sha);
    let by_sha = get(
        &agent,
        &format!("{}/api/models/{REPO}/revision/{sha}", emu.url()),
    );
    assert_eq!(by_sha.status, 200);
    let blobs = get(
        &agent,
        &format!("{}/api/models/{REPO}/revision/main?blobs=true", emu.url()),
    )
    .json();
    let onnx = &blobs["siblings"][2];
    assert_eq!(onnx["size"], WEIGHTS_LEN);
    assert_eq!(
        onnx["lfs"]["sha256"],
        pseudo_random_sha256(WEIGHTS_LEN, WEIGHTS_SEED)
    );
}

#[test]
fn commit_changes_when_a_file_changes() {
    let scratch = Scratch::new("commit");
    sample_repo(&scratch);
    let emu = Emulator::start(scratch.path()).unwrap();
    let before = emu.commit_of(REPO).unwrap();
    assert_eq!(emu.commit_of(REPO).unwrap(), before, "commit is stable");
    // Same size, different content.
    write_file(
        scratch.path(),
        REPO,
        "config.json",
        br#"{"model_type": "llamb"}"#,
    )
    .unwrap();
    let after = emu.commit_of(REPO).unwrap();
    assert_ne!(before, after);
    // The old commit no longer resolves.
    let reply = get(
        &agent(),
        &format!("{}/api/models/{REPO}/revision/{before}", emu.url()),
    );
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-error-code"), Some("RevisionNotFound"));
}

#[test]
fn a_frozen_emulator_keeps_serving_the_repo_as_first_walked() {
    let scratch = Scratch::new("frozen");
    sample_repo(&scratch);
    let emu = Emulator::builder(scratch.path())
        .frozen(true)
        .start()
        .unwrap();
    let before = emu.commit_of(REPO).unwrap();
    write_file(scratch.path(), REPO, "added.txt", b"new").unwrap();
    assert_eq!(emu.commit_of(REPO).unwrap(), before);
    let tree = get(
        &agent(),
        &format!("{}/api/models/{REPO}/tree/main?recursive=true", emu.url()),
    );
    assert_eq!(tree.status, 200);
    let listing = String::from_utf8_lossy(&tree.body);
    assert!(listing.contains("config.json"), "{listing}");
    assert!(!listing.contains("added.txt"), "{listing}");
    // Repos not walked yet are walked on first use.
    write_file(scratch.path(), "org/later", "config.json", CONFIG_JSON).unwrap();
    assert!(emu.commit_of("org/later").is_some());
}

#[test]
fn unknown_revision_is_revision_not_found() {
    let scratch = Scratch::new("rev");
    sample_repo(&scratch);
    let emu = Emulator::start(scratch.path()).unwrap();
    let agent = agent();
    for url in [
        format!("{}/api/models/{REPO}/revision/refs%2Fpr%2F1", emu.url()),
        format!("{}/api/models/{REPO}/tree/v2?recursive=true", emu.url()),
        format!("{}/{REPO}/resolve/v2/config.json", emu.url()),
    ] {
        let reply = get(&agent, &url);
        assert_eq!(reply.status, 404, "{url}");
        assert_eq!(
            reply.header("x-error-code"),
            Some("RevisionNotFound"),
            "{url}"
        );
        assert!(reply.header("x-error-message").is_some());
        assert!(reply.json()["error"].as_str().unwrap().contains("rev"));
    }
}

#[test]
fn tree_lists_lfs_fields_and_paginates_with_link() {
    let scratch = Scratch::new("tree");
    sample_repo(&scratch);
    let emu = Emulator::builder(scratch.path())
        .page_size(2)
        .start()
        .unwrap();
    let agent = agent();

    let mut url = format!("{}/api/models/{REPO}/tree/main?recursive=true", emu.url());
    let mut entries = Vec::new();
    let mut pages = 0;
    loop {
        let reply = get(&agent, &url);
        assert_eq!(reply.status, 200);
        pages += 1;
        let page = reply.json();
        assert!(page.as_array().unwrap().len() <= 2);
        entries.extend(page.as_array().unwrap().iter().cloned());
        let Some(link) = reply.header("link") else {
            break;
        };
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        url = link[1..link.find('>').unwrap()].to_owned();
        assert!(
            url.starts_with(&emu.url()) && url.contains("cursor="),
            "{url}"
        );
        assert!(url.contains("recursive=true"));
    }
    // 4 files and the onnx folder in 3 pages.
    assert_eq!(pages, 3);
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "config.json",
            "onnx",
            "onnx/model.onnx",
            "onnx/tokenizer.json"
        ]
    );

    let config = &entries[1];
    assert_eq!(config["type"], "file");
    assert_eq!(config["size"], CONFIG_JSON.len());
    assert_eq!(config["oid"], git_blob_sha1(CONFIG_JSON));
    assert!(config.get("lfs").is_none());

    let dir = &entries[2];
    assert_eq!(dir["type"], "directory");
    assert_eq!(dir["size"], 0);
    assert_eq!(dir["oid"].as_str().unwrap().len(), 40);

    let sha256 = pseudo_random_sha256(WEIGHTS_LEN, WEIGHTS_SEED);
    let pointer = lfs_pointer(&sha256, WEIGHTS_LEN);
    let weights = &entries[3];
    assert_eq!(weights["lfs"]["oid"], sha256.as_str());
    assert_eq!(weights["lfs"]["size"], WEIGHTS_LEN);
    assert_eq!(weights["lfs"]["pointerSize"], pointer.len());
    assert_eq!(weights["oid"], git_blob_sha1(pointer.as_bytes()));
    assert_eq!(weights["size"], pointer.len());

    // Non-recursive listing of a folder, `recursive=1`, and a missing folder.
    let onnx = get(
        &agent,
        &format!("{}/api/models/{REPO}/tree/main/onnx", emu.url()),
    );
    assert_eq!(onnx.json().as_array().unwrap().len(), 2);
    let top = get(
        &agent,
        &format!("{}/api/models/{REPO}/tree/main", emu.url()),
    );
    let top_paths: Vec<String> = top
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(top_paths, ["README.md", "config.json"]);
    emu.set_page_size(100);
    let all = get(
        &agent,
        &format!(
            "{}/api/models/{REPO}/tree/main?recursive=1&expand=true",
            emu.url()
        ),
    );
    assert_eq!(all.json().as_array().unwrap().len(), 5);
    assert!(all.header("link").is_none());
    let missing = get(
        &agent,
        &format!("{}/api/models/{REPO}/tree/main/nope", emu.url()),
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-error-code"), Some("EntryNotFound"));
}

#[test]
fn tree_redirect_sends_clients_to_the_trailing_slash_form() {
    let scratch = Scratch::new("redirect");
    sample_repo(&scratch);
    let emu = Emulator::builder(scratch.path())
        .tree_redirect(true)
        .start()
        .unwrap();
    let reply = get(
        &agent(),
        &format!("{}/api/models/{REPO}/tree/main?recursive=true", emu.url()),
    );
    assert_eq!(reply.status, 307);
    let location = reply.header("location").unwrap().to_owned();
    assert_eq!(
        location,
        format!("/api/models/{REPO}/tree/main/?recursive=true")
    );
    let followed = get(&agent(), &format!("{}{location}", emu.url()));
    assert_eq!(followed.status, 200);
    assert_eq!(followed.json().as_array().unwrap().len(), 5);

    // A client that follows redirects gets there in one call.
    let following: ureq::Agent = ureq::Agent::config_builder().build().into();
    let listing: serde_json::Value = following
        .get(&format!(
            "{}/api/models/{REPO}/tree/main?recursive=true",
            emu.url()
        ))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap();
    assert_eq!(listing.as_array().unwrap().len(), 5);
}

#[test]
fn cdn_base_sends_lfs_redirects_to_another_server_by_sha256() {
    let scratch = Scratch::new("cdn-base");
    sample_repo(&scratch);
    let emu = Emulator::builder(scratch.path())
        .cdn_base("http://127.0.0.1:9/blobs/")
        .start()
        .unwrap();
    let agent = agent();
    let sha256 = pseudo_random_sha256(WEIGHTS_LEN, WEIGHTS_SEED);
    for method in ["HEAD", "GET"] {
        let redirect = call(
            &agent,
            method,
            &format!("{}/{REPO}/resolve/main/onnx/model.onnx", emu.url()),
            &[],
        );
        assert_eq!(redirect.status, 302, "{method}");
        assert_eq!(
            redirect.header("location").unwrap(),
            format!("http://127.0.0.1:9/blobs/{sha256}"),
            "{method}"
        );
        assert_eq!(
            redirect.header("x-linked-etag").unwrap(),
            format!("\"{sha256}\"")
        );
    }
    // Small files are still served by the emulator itself.
    let small = get(
        &agent,
        &format!("{}/{REPO}/resolve/main/config.json", emu.url()),
    );
    assert_eq!(small.status, 200);
    assert_eq!(small.body, CONFIG_JSON);
}

#[test]
fn resolve_serves_small_files_and_redirects_lfs_to_the_cdn() {
    let scratch = Scratch::new("resolve");
    sample_repo(&scratch);
    let emu = Emulator::start(scratch.path()).unwrap();
    let agent = agent();
    let commit = emu.commit_of(REPO).unwrap();

    let small = get(
        &agent,
        &format!("{}/{REPO}/resolve/main/config.json", emu.url()),
    );
    assert_eq!(small.status, 200);
    assert_eq!(small.body, CONFIG_JSON);
    assert_eq!(
        small.header("etag").unwrap(),
        format!("\"{}\"", git_blob_sha1(CONFIG_JSON))
    );
    assert_eq!(small.header("x-repo-commit"), Some(commit.as_str()));
    assert_eq!(
        small.header("content-length").unwrap(),
        CONFIG_JSON.len().to_string()
    );
    let head = call(
        &agent,
        "HEAD",
        &format!("{}/{REPO}/resolve/{commit}/config.json", emu.url()),
        &[],
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length").unwrap(),
        CONFIG_JSON.len().to_string()
    );

    let sha256 = pseudo_random_sha256(WEIGHTS_LEN, WEIGHTS_SEED);
    let pointer = lfs_pointer(&sha256, WEIGHTS_LEN);
    for method in ["HEAD", "GET"] {
        let redirect = call(
            &agent,
            method,
            &format!("{}/{REPO}/resolve/main/onnx/model.onnx", emu.url()),
            &[],
        );
        assert_eq!(redirect.status, 302, "{method}");
        let location = redirect.header("location").unwrap();
        assert!(
            location.starts_with(&format!("{}/cdn/{sha256}", emu.cdn_url())),
            "{location}"
        );
        assert_ne!(emu.cdn_url(), emu.url());
        assert_eq!(redirect.header("x-repo-commit"), Some(commit.as_str()));
        assert_eq!(
            redirect.header("x-linked-etag").unwrap(),
            format!("\"{sha256}\"")
        );
        assert_eq!(
            redirect.header("x-linked-size").unwrap(),
            WEIGHTS_LEN.to_string()
        );
        assert_eq!(
            redirect.header("etag").unwrap(),
            format!("\"{}\"", git_blob_sha1(pointer.as_bytes()))
        );
        let own_length: u64 = redirect.header("content-length").unwrap().parse().unwrap();
        assert!(own_length > 0 && own_length < 1000);
        if method == "GET" {
            assert_eq!(redirect.body.len() as u64, own_length);
        }
    }

    let location = call(
        &agent,
        "HEAD",
        &format!("{}/{REPO}/resolve/main/onnx/model.onnx", emu.url()),
        &[],
    )
    .header("location")
    .unwrap()
    .to_owned();
    let blob = get(&agent, &location);
    assert_eq!(blob.status, 200);
    assert_eq!(
        blob.body,
        pseudo_random_bytes(WEIGHTS_LEN as usize, WEIGHTS_SEED)
    );
    assert_eq!(blob.header("accept-ranges"), Some("bytes"));
    assert_eq!(blob.header("etag").unwrap(), format!("\"{sha256}\""));

    // The log tells which listener served what.
    let records = emu.requests();
    let cdn: Vec<_> = records
        .iter()
        .filter(|r| r.listener == Listener::Cdn)
        .collect();
    assert_eq!(cdn.len(), 1);
    assert_eq!(cdn[0].body_bytes, WEIGHTS_LEN);
    assert_eq!(
        emu.bytes_sent_for("onnx/model.onnx")
            - records
                .iter()
                .filter(|r| r.listener == Listener::Api && r.target.contains("model.onnx"))
                .map(|r| r.body_bytes)
                .sum::<u64>(),
        WEIGHTS_LEN
    );
    assert!(emu.bytes_sent_total() >= WEIGHTS_LEN + CONFIG_JSON.len() as u64);

    let missing = get(
        &agent,
        &format!("{}/{REPO}/resolve/main/nope.bin", emu.url()),
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-error-code"), Some("EntryNotFound"));
    let traversal = raw(
        emu.addr(),
        "GET",
        &format!("/{REPO}/resolve/main/../../etc/passwd"),
        "",
    );
    assert_eq!(traversal.status, 404);
}

#[test]
fn cdn_honours_ranges() {
    let scratch = Scratch::new("range");
    sample_repo(&scratch);
    let emu = Emulator::start(scratch.path()).unwrap();
    let agent = agent();
    let location = call(
        &agent,
        "HEAD",
        &format!("{}/{REPO}/resolve/main/onnx/model.onnx", emu.url()),
        &[],
    )
    .header("location")
    .unwrap()
    .to_owned();
    let content = pseudo_random_bytes(WEIGHTS_LEN as usize, WEIGHTS_SEED);

    let middle = call(&agent, "GET", &location, &[("Range", "bytes=100-199")]);
    assert_eq!(middle.status, 206);
    assert_eq!(middle.body, &content[100..200]);
    assert_eq!(
        middle.header("content-range").unwrap(),
        format!("bytes 100-199/{WEIGHTS_LEN}")
    );
    let tail = call(&agent, "GET", &location, &[("Range", "bytes=299990-")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, &content[299_990..]);
    let beyond = call(
        &agent,
        "GET",
        &location,
        &[("Range", &format!("bytes={WEIGHTS_LEN}-"))],
    );
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range").unwrap(),
        format!("bytes */{WEIGHTS_LEN}")
    );
    let head = call(&agent, "HEAD", &location, &[("Range", "bytes=0-9")]);
    assert_eq!(head.status, 206);
    assert_eq!(head.header("content-length"), Some("10"));

    // Ranges on a plain file through resolve too.
    let small = call(
        &agent,
        "GET",
        &format!("{}/{REPO}/resolve/main/config.json", emu.url()),
        &[("Range", "bytes=2-5")],
    );
    assert_eq!(small.status, 206);
    assert_eq!(small.body, &CONFIG_JSON[2..6]);

    // Every request above reused one pooled connection per listener.
    let connections: std::collections::HashSet<(Listener, u64)> = emu
        .requests()
        .iter()
        .map(|r| (r.listener, r.connection))
        .collect();
    assert_eq!(connections.len(), 2, "{:?}", emu.requests());

    let unknown = get(&agent, &format!("{}/cdn/{}", emu.cdn_url(), "0".repeat(64)));
    assert_eq!(unknown.status, 404);
}

#[test]
fn gated_private_and_missing_repos_answer_like_the_hub() {
    let scratch = Scratch::new("access");
    let root = scratch.path();
    write_file(root, "org/gated", "config.json", b"{}").unwrap();
    write_repo_config(
        root,
        "org/gated",
        &RepoConfig {
            gated: Gated::Flag(true),
            tokens: vec!["hf_good".into()],
            ..RepoConfig::default()
        },
    )
    .unwrap();
    write_file(root, "org/private", "config.json", b"{}").unwrap();
    write_repo_config(
        root,
        "org/private",
        &RepoConfig {
            private: true,
            tokens: vec!["hf_good".into()],
            ..RepoConfig::default()
        },
    )
    .unwrap();
    write_file(root, "legacy", "config.json", b"{}").unwrap();
    let emu = Emulator::start(root).unwrap();
    let agent = agent();
    let good = [("Authorization", "Bearer hf_good")];
    let bad = [("Authorization", "Bearer hf_bad")];
    let fetch = |path: &str, headers: &[(&str, &str)]| {
        let reply = call(&agent, "GET", &format!("{}{path}", emu.url()), headers);
        let code = reply.header("x-error-code").map(str::to_owned);
        if reply.status >= 400 {
            assert!(reply.header("x-error-message").is_some(), "{path}");
            assert!(reply.json()["error"].is_string(), "{path}");
        }
        (reply.status, code)
    };
    let gated_code = Some("GatedRepo".to_owned());
    let not_found = Some("RepoNotFound".to_owned());

    // Gated: info readable by anyone (as on the Hub) and reports "auto"; downloads need a token.
    let info = get(&agent, &format!("{}/api/models/org/gated", emu.url())).json();
    assert_eq!(info["gated"], "auto");
    assert_eq!(
        fetch("/org/gated/resolve/main/config.json", &[]),
        (401, gated_code.clone())
    );
    assert_eq!(
        fetch("/org/gated/resolve/main/config.json", &bad),
        (403, gated_code.clone())
    );
    assert_eq!(
        fetch("/org/gated/resolve/main/config.json", &good),
        (200, None)
    );

    // Private: indistinguishable from missing without an allowed token.
    for path in [
        "/api/models/org/private",
        "/org/private/resolve/main/config.json",
    ] {
        assert_eq!(fetch(path, &[]), (401, not_found.clone()), "{path}");
        assert_eq!(fetch(path, &bad), (404, not_found.clone()), "{path}");
        assert_eq!(fetch(path, &good).0, 200, "{path}");
    }
    for path in [
        "/api/models/org/missing",
        "/org/missing/resolve/main/config.json",
        "/api/models/org/missing/tree/main",
    ] {
        assert_eq!(fetch(path, &[]), (401, not_found.clone()), "{path}");
        assert_eq!(fetch(path, &good), (404, not_found.clone()), "{path}");
    }

    // gate_api extends the gate to model info and listings.
    write_repo_config(
        root,
        "org/gated",
        &RepoConfig {
            gated: Gated::Mode("manual".into()),
            gate_api: true,
            tokens: vec!["hf_good".into()],
            ..RepoConfig::default()
        },
    )
    .unwrap();
    assert_eq!(
        fetch("/api/models/org/gated", &[]),
        (401, gated_code.clone())
    );
    assert_eq!(
        fetch("/api/models/org/gated/tree/main", &bad),
        (403, gated_code)
    );
    let info = call(
        &agent,
        "GET",
        &format!("{}/api/models/org/gated", emu.url()),
        &good,
    )
    .json();
    assert_eq!(info["gated"], "manual");

    // Legacy ids without an org.
    assert_eq!(fetch("/api/models/legacy", &[]).0, 200);
    assert_eq!(fetch("/legacy/resolve/main/config.json", &[]).0, 200);

    // The token is recorded so tests can check where it went.
    assert!(emu
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some("Bearer hf_good")));

    // A broken config file is a loud 500 naming the file.
    write_file(root, "org/gated", ".emulator.json", b"{not json").unwrap();
    let broken = get(&agent, &format!("{}/api/models/org/gated", emu.url()));
    assert_eq!(broken.status, 500);
    assert!(broken.json()["error"]
        .as_str()
        .unwrap()
        .contains(".emulator.json"));
}

#[test]
fn lfs_threshold_makes_large_files_lfs() {
    let scratch = Scratch::new("threshold");
    write_pseudo_random_file(scratch.path(), REPO, "big.txt", 5000, 1).unwrap();
    write_file(scratch.path(), REPO, "small.txt", b"hi").unwrap();
    let emu = Emulator::builder(scratch.path())
        .lfs_threshold(4096)
        .start()
        .unwrap();
    let listing = get(
        &agent(),
        &format!("{}/api/models/{REPO}/tree/main", emu.url()),
    )
    .json();
    assert_eq!(listing[0]["path"], "big.txt");
    assert_eq!(listing[0]["lfs"]["size"], 5000);
    assert!(listing[1].get("lfs").is_none());
}
