//! `tabcache serve` as a user runs it: the `serving URL` line on stdout (the real port for
//! `--port 0`), files and errors through it over real HTTP, one log line per request on stderr
//! (JSON lines with `--json`), `--token-file` and `--allow-origin` passed through, the refusals
//! that end in a usage error, and Ctrl-C / SIGTERM stopping it with exit 0.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStderr, Stdio};
use std::time::Duration;

use common::*;
use hub_emulator::write_file;
use serde_json::Value;

const REPO: &str = "org/served";
const CONFIG: &[u8] = br#"{"model_type":"bert"}"#;

fn fill(root: &Path) {
    write_file(root, REPO, "config.json", CONFIG).unwrap();
    write_file(root, REPO, "README.md", b"# served").unwrap();
}

/// A cache holding `REPO`'s config.json (not its README.md).
fn cached() -> (Hub, tempfile::TempDir) {
    let hub = hub(fill);
    let cache = tempfile::tempdir().unwrap();
    let out = tabcache(
        &hub,
        cache.path(),
        &["download", REPO, "--file", "config.json"],
    );
    assert!(out.status.success(), "{out:?}");
    (hub, cache)
}

/// `tabcache serve ARGS` started, and the URL of its `serving` line.
fn start(hub: &Hub, cache: &Path, args: &[&str]) -> (Child, String, BufReader<ChildStderr>) {
    let mut full = vec!["serve", "--port", "0"];
    full.extend_from_slice(args);
    let mut child = tabcache_command(hub, cache, &full)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = if args.contains(&"--json") {
        let line: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
        line["serving"].as_str().unwrap().to_string()
    } else {
        first
            .trim_end()
            .strip_prefix("serving ")
            .unwrap_or_else(|| panic!("no `serving` line: {first:?}"))
            .to_string()
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_ne!(url, "http://127.0.0.1:0", "the real port is printed");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    (child, url, stderr)
}

fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().unwrap();
    let cors = response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.body_mut().read_to_vec().unwrap();
    (response.status().as_u16(), body, cors)
}

/// Signal the server, then its exit code and what is left of its stderr.
fn stop(
    mut child: Child,
    mut stderr: BufReader<ChildStderr>,
    signal: libc::c_int,
) -> (i32, String) {
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    (status.code().expect("exited, not killed"), rest)
}

fn next_line(stderr: &mut BufReader<ChildStderr>) -> String {
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    line
}

#[test]
fn serves_the_cache_logs_each_request_and_ctrl_c_stops_it() {
    let (hub, cache) = cached();
    hub.emu.clear_log();
    let (child, url, mut stderr) = start(
        &hub,
        cache.path(),
        &[
            "--no-pull-through",
            "--allow-origin",
            "http://localhost:5173",
        ],
    );
    let (status, body, cors) = get(
        &format!("{url}/{REPO}/resolve/main/config.json"),
        &[("Origin", "http://localhost:5173")],
    );
    assert_eq!((status, body.as_slice()), (200, CONFIG));
    assert_eq!(cors.as_deref(), Some("http://localhost:5173"));
    let line = next_line(&mut stderr);
    assert!(
        line.contains(&format!(
            "GET /{REPO}/resolve/main/config.json 200 {}",
            CONFIG.len()
        )) && line.trim_end().ends_with("origin=http://localhost:5173"),
        "{line}"
    );

    let (status, _, cors) = get(
        &format!("{url}/{REPO}/resolve/main/README.md"),
        &[("Origin", "https://elsewhere.example")],
    );
    assert_eq!((status, cors), (404, None));
    assert!(
        next_line(&mut stderr).contains("/README.md 404"),
        "the error is logged too"
    );
    assert!(hub.emu.requests().is_empty(), "nothing went upstream");

    let (code, rest) = stop(child, stderr, libc::SIGINT);
    assert_eq!(code, 0, "{rest}");
    assert!(rest.contains("stopped"), "{rest}");
    assert!(
        std::net::TcpStream::connect_timeout(
            &url.trim_start_matches("http://").parse().unwrap(),
            Duration::from_secs(2)
        )
        .is_err(),
        "the port is closed"
    );
}

#[test]
fn json_lines_a_token_file_and_sigterm() {
    let (hub, cache) = cached();
    let token_file = cache.path().join("clients.token");
    std::fs::write(&token_file, "team-secret\n").unwrap();
    // Private, or the first stderr line is the warning that others can read it.
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let token_arg = token_file.to_str().unwrap();
    let (child, url, mut stderr) = start(
        &hub,
        cache.path(),
        &["--json", "--token-file", token_arg, "--no-pull-through"],
    );
    let file = format!("{url}/{REPO}/resolve/main/config.json");
    assert_eq!(get(&file, &[]).0, 401);
    let logged: Value = serde_json::from_str(&next_line(&mut stderr)).unwrap();
    assert_eq!(logged["status"], 401);
    assert_eq!(logged["method"], "GET");
    let (status, body, _) = get(&file, &[("Authorization", "Bearer team-secret")]);
    assert_eq!((status, body.as_slice()), (200, CONFIG));
    let logged = next_line(&mut stderr);
    assert!(
        !logged.contains("team-secret"),
        "no token in the log: {logged}"
    );
    let logged: Value = serde_json::from_str(&logged).unwrap();
    assert_eq!(logged["length"], CONFIG.len());

    let (code, rest) = stop(child, stderr, libc::SIGTERM);
    assert_eq!(code, 0, "{rest}");
}

#[test]
fn quiet_logs_nothing() {
    let (hub, cache) = cached();
    let (child, url, stderr) = start(&hub, cache.path(), &["--quiet", "--no-pull-through"]);
    assert_eq!(
        get(&format!("{url}/{REPO}/resolve/main/config.json"), &[]).0,
        200
    );
    let (code, rest) = stop(child, stderr, libc::SIGINT);
    assert_eq!((code, rest.as_str()), (0, ""));
}

#[test]
fn refusals_are_usage_errors_that_say_what_to_do() {
    let (hub, cache) = cached();
    let run = |args: &[&str]| {
        let mut full = vec!["serve", "--port", "0", "--no-pull-through"];
        full.extend_from_slice(args);
        tabcache(&hub, cache.path(), &full)
    };
    let error_line = |out: &std::process::Output| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        err.lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line: {err}"))
            .to_string()
    };
    let line = error_line(&run(&["--host", "0.0.0.0"]));
    assert!(
        line.contains("--token-file") && line.contains("--insecure-no-token"),
        "{line}"
    );
    let with_hub_token = std::process::Command::new(env!("CARGO_BIN_EXE_tabcache"))
        .arg("--cache")
        .arg(cache.path())
        .args(["--endpoint", &hub.emu.url(), "--token", "hf_x", "serve"])
        .args(["--port", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let line = error_line(&with_hub_token);
    assert!(line.contains("--upstream-token-file"), "{line}");
    let empty = cache.path().join("empty.token");
    std::fs::write(&empty, "").unwrap();
    let line = error_line(&run(&["--token-file", empty.to_str().unwrap()]));
    assert!(line.contains("is empty"), "{line}");
}

#[test]
fn a_non_loopback_bind_without_a_token_is_served_only_when_asked_with_a_warning() {
    let (hub, cache) = cached();
    let (child, url, mut stderr) = start(
        &hub,
        cache.path(),
        &[
            "--host",
            "0.0.0.0",
            "--insecure-no-token",
            "--no-pull-through",
        ],
    );
    let warning = next_line(&mut stderr);
    assert!(
        warning.starts_with("warning: --insecure-no-token"),
        "{warning}"
    );
    assert_eq!(
        get(&format!("{url}/{REPO}/resolve/main/config.json"), &[]).0,
        200
    );
    let (code, _) = stop(child, stderr, libc::SIGINT);
    assert_eq!(code, 0);
}

#[test]
fn what_another_process_downloads_meanwhile_is_served_at_once() {
    let (hub, cache) = cached();
    let (child, url, stderr) = start(&hub, cache.path(), &["--quiet", "--no-pull-through"]);
    let readme = format!("{url}/{REPO}/resolve/main/README.md");
    assert_eq!(get(&readme, &[]).0, 404, "not cached yet");
    let out = tabcache(
        &hub,
        cache.path(),
        &["download", REPO, "--file", "README.md"],
    );
    assert!(out.status.success(), "{out:?}");
    let (status, body, _) = get(&readme, &[]);
    assert_eq!((status, body.as_slice()), (200, b"# served".as_slice()));
    let (code, rest) = stop(child, stderr, libc::SIGINT);
    assert_eq!((code, rest.as_str()), (0, ""));
}
