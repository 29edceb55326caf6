//! Ctrl-C in the CLI, in every phase of `tests/common/phases.rs`: the `tabcache` process gets
//! SIGINT while stuck in the phase and must exit with 130 within a second, saying that partial
//! downloads are kept; the same command then succeeds. A second Ctrl-C exits at once, without
//! waiting for the first to wind down.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::phases::{Phase, Stage};

fn spawn(stage: &Stage) -> Child {
    let mut args = vec!["--quiet"];
    args.extend(stage.cli_args());
    common::tabcache_command(&stage.hub, stage.dir.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigint(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a pid we own.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
}

/// Wait for `child` to exit, at most `limit`; its exit code and stderr, and how long it took.
fn exit_within(mut child: Child, limit: Duration) -> (i32, String, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let took = started.elapsed();
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code().unwrap_or(-1), stderr, took);
        }
        if started.elapsed() > limit * 5 {
            let _ = child.kill();
            panic!("still running {:?} after Ctrl-C", started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ctrl_c(phase: Phase) {
    let mut stage = Stage::new(phase);
    let mut child = spawn(&stage);
    stage.wait_until_reached_by(|| child.try_wait().unwrap().is_some());
    sigint(&child);
    let (code, stderr, took) = exit_within(child, Duration::from_secs(1));
    assert_eq!(code, 130, "{phase:?}: {stderr}");
    assert!(
        took < Duration::from_secs(1),
        "{phase:?}: exited {took:?} after Ctrl-C"
    );
    assert!(
        stderr.contains("interrupted") && stderr.contains("run the same command again"),
        "{phase:?}: {stderr}"
    );
    stage.call_again();
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    // A silent server: the first Ctrl-C waits (half a second) for the stuck transfer to stop.
    let stage = Stage::new(Phase::SilentServer);
    let mut child = spawn(&stage);
    stage.wait_until_reached_by(|| child.try_wait().unwrap().is_some());
    sigint(&child);
    std::thread::sleep(Duration::from_millis(2));
    sigint(&child);
    let (code, stderr, took) = exit_within(child, Duration::from_secs(1));
    assert_eq!(code, 130, "{stderr}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Gone before the first Ctrl-C's orderly exit could say anything.
    assert!(!stderr.contains("interrupted"), "{stderr}");
}

#[test]
fn ctrl_c_stops_an_import_mid_hash() {
    let hf = tempfile::tempdir().unwrap();
    common::hf_cache_with_zeros(hf.path(), 1 << 30, false);
    let stage = Stage::new(Phase::ModelInfo);
    let args = ["--quiet", "import-hf", hf.path().to_str().unwrap()];
    let child = common::tabcache_command(&stage.hub, stage.dir.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Hashing 1 GiB takes seconds here (half a second with SHA extensions).
    std::thread::sleep(Duration::from_millis(150));
    sigint(&child);
    let (code, stderr, took) = exit_within(child, Duration::from_secs(1));
    assert_eq!(code, 130, "{stderr}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

common::phases::phase_tests!(ctrl_c);
