//! The `/_emulator/` control endpoints and the `hub-emulator` command, as Python and C tests
//! use them from another process.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent, call, get, Scratch};
use hub_emulator::{pseudo_random_sha256, write_file, write_pseudo_random_file, Emulator};

const REPO: &str = "org/model";

fn post(agent: &ureq::Agent, url: &str, body: &str) -> (u16, serde_json::Value) {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

fn delete(agent: &ureq::Agent, url: &str) -> u16 {
    agent.delete(url).call().unwrap().status().as_u16()
}

#[test]
fn control_endpoints_install_faults_and_expose_the_log() {
    let scratch = Scratch::new("control");
    write_file(scratch.path(), REPO, "config.json", b"{}").unwrap();
    write_pseudo_random_file(scratch.path(), REPO, "model.gguf", 5000, 3).unwrap();
    let emu = Emulator::start(scratch.path()).unwrap();
    let agent = agent();
    let control = format!("{}/_emulator", emu.url());

    let (status, created) = post(
        &agent,
        &format!("{control}/faults"),
        r#"{"listener": "api", "path_contains": "config.json", "times": 1,
            "kind": {"type": "status", "status": 503, "retry_after": 2}}"#,
    );
    assert_eq!(status, 200);
    let id = created["id"].as_u64().unwrap();
    let listed = get(&agent, &format!("{control}/faults")).json();
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["fault"]["kind"]["type"], "status");

    let resolve = format!("{}/{REPO}/resolve/main/config.json", emu.url());
    let failed = get(&agent, &resolve);
    assert_eq!(failed.status, 503);
    assert_eq!(failed.header("retry-after"), Some("2"));
    assert_eq!(get(&agent, &resolve).body, b"{}");
    assert_eq!(
        get(&agent, &format!("{control}/faults")).json()[0]["hits"],
        1
    );

    // Follow the LFS redirect by hand so the CDN shows up in the stats.
    let redirect = common::call(
        &agent,
        "HEAD",
        &format!("{}/{REPO}/resolve/main/model.gguf", emu.url()),
        &[],
    );
    let blob = get(&agent, redirect.header("location").unwrap());
    assert_eq!(blob.body.len(), 5000);

    let log = get(&agent, &format!("{control}/log")).json();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 4, "control requests are not logged: {log:?}");
    assert_eq!(log[0]["status"], 503);
    assert_eq!(log[0]["listener"], "api");
    assert_eq!(log[0]["faults"][0], id);
    assert_eq!(log[3]["listener"], "cdn");
    let stats = get(&agent, &format!("{control}/stats")).json();
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["bytes_sent_cdn"], 5000);
    assert_eq!(stats["bytes_sent_total"], emu.bytes_sent_total());

    let (status, _) = post(&agent, &format!("{control}/log/clear"), "");
    assert_eq!(status, 200);
    assert!(emu.requests().is_empty());

    // Bad fault JSON is a 400 that says what is wrong.
    let (status, error) = post(
        &agent,
        &format!("{control}/faults"),
        r#"{"kind": {"type": "explode"}}"#,
    );
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("explode"));

    let (_, second) = post(
        &agent,
        &format!("{control}/faults"),
        r#"{"kind": {"type": "chunked"}}"#,
    );
    assert_eq!(
        delete(&agent, &format!("{control}/faults/{}", second["id"])),
        200
    );
    assert_eq!(
        delete(&agent, &format!("{control}/faults/{}", second["id"])),
        404
    );
    post(
        &agent,
        &format!("{control}/faults"),
        r#"{"kind": {"type": "chunked"}}"#,
    );
    assert_eq!(delete(&agent, &format!("{control}/faults")), 200);
    assert!(emu.faults().is_empty());

    let (status, _) = post(
        &agent,
        &format!("{control}/settings"),
        r#"{"page_size": 1, "tree_redirect": true}"#,
    );
    assert_eq!(status, 200);
    let tree = get(
        &agent,
        &format!("{}/api/models/{REPO}/tree/main", emu.url()),
    );
    assert_eq!(tree.status, 307);
    let tree = get(
        &agent,
        &format!("{}/api/models/{REPO}/tree/main/", emu.url()),
    );
    assert_eq!(tree.json().as_array().unwrap().len(), 1);
    assert!(tree.header("link").is_some());
}

/// Starts the command and returns it with the URL it printed.
fn spawn_binary(root: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hub-emulator"))
        .arg("--root")
        .arg(root)
        .args(["--page-size", "1"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim_end().to_owned())
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("hub-emulator did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn binary_prints_its_url_serves_and_stops_on_sigterm() {
    let scratch = Scratch::new("bin");
    write_file(scratch.path(), REPO, "a.json", b"1").unwrap();
    write_file(scratch.path(), REPO, "b.json", b"2").unwrap();
    let (mut child, url) = spawn_binary(scratch.path(), &[]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let agent = agent();
    let info = get(&agent, &format!("{url}/api/models/{REPO}"));
    assert_eq!(info.status, 200);
    let tree = get(&agent, &format!("{url}/api/models/{REPO}/tree/main"));
    assert!(tree.header("link").is_some(), "--page-size was applied");
    // Keep one idle keep-alive connection open: stopping must not wait for it.
    let _ = get(&agent, &format!("{url}/{REPO}/resolve/main/a.json"));

    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn binary_exits_when_stdin_closes() {
    let scratch = Scratch::new("bin-stdin");
    let (mut child, url) = spawn_binary(scratch.path(), &["--exit-on-stdin-eof"]);
    assert_eq!(
        get(&agent(), &format!("{url}/api/models/{REPO}")).status,
        401
    );
    drop(child.stdin.take());
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn binary_redirects_lfs_files_to_the_cdn_base_it_is_given() {
    let scratch = Scratch::new("bin-cdn-base");
    write_pseudo_random_file(scratch.path(), REPO, "model.gguf", 1000, 3).unwrap();
    let (mut child, url) = spawn_binary(
        scratch.path(),
        &["--cdn-base", "http://127.0.0.1:9/b", "--exit-on-stdin-eof"],
    );
    let redirect = call(
        &agent(),
        "HEAD",
        &format!("{url}/{REPO}/resolve/main/model.gguf"),
        &[],
    );
    assert_eq!(redirect.status, 302);
    assert_eq!(
        redirect.header("location").unwrap(),
        format!("http://127.0.0.1:9/b/{}", pseudo_random_sha256(1000, 3))
    );
    drop(child.stdin.take());
    assert!(wait_with_timeout(&mut child, Duration::from_secs(10)).success());

    let refused = Command::new(env!("CARGO_BIN_EXE_hub-emulator"))
        .arg("--root")
        .arg(scratch.path())
        .args(["--cdn-base", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--cdn-base wants an http://"));
}

#[test]
fn binary_refuses_a_missing_root_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_hub-emulator"))
        .args(["--root", "/nonexistent/hub-emulator-root"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a folder"));
    assert!(output.stdout.is_empty());
}
