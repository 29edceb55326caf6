//! The `hub-emulator` command: serves a folder of repos for Python and C tests and the demo.
//! It prints its base URL as the first line on stdout, then serves until SIGTERM/SIGINT (or,
//! with `--exit-on-stdin-eof`, until its stdin closes, so it dies with a parent that forgot to
//! stop it), and exits 0.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hub_emulator::Emulator;

static STOP: AtomicBool = AtomicBool::new(false);

const USAGE: &str = "usage: hub-emulator --root DIR [--port N] [--cdn-port N] [--cas-port N] \
[--page-size N] [--lfs-threshold BYTES] [--xorb-max-bytes BYTES] [--cdn-base URL] [--tree-redirect] [--frozen] [--log-requests] [--exit-on-stdin-eof]";

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Options {
    root: PathBuf,
    port: u16,
    cdn_port: u16,
    cas_port: u16,
    xorb_max_bytes: u64,
    page_size: usize,
    lfs_threshold: u64,
    tree_redirect: bool,
    log_requests: bool,
    exit_on_stdin_eof: bool,
    cdn_base: Option<String>,
    frozen: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut root = None;
    let mut options = Options {
        root: PathBuf::new(),
        port: 0,
        cdn_port: 0,
        cas_port: 0,
        xorb_max_bytes: hub_emulator::DEFAULT_XORB_MAX_BYTES,
        page_size: hub_emulator::DEFAULT_PAGE_SIZE,
        lfs_threshold: hub_emulator::DEFAULT_LFS_THRESHOLD,
        tree_redirect: false,
        log_requests: false,
        exit_on_stdin_eof: false,
        cdn_base: None,
        frozen: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--root" => root = Some(PathBuf::from(value("--root")?)),
            "--port" => options.port = number("--port", &value("--port")?)?,
            "--cdn-port" => options.cdn_port = number("--cdn-port", &value("--cdn-port")?)?,
            "--cas-port" => options.cas_port = number("--cas-port", &value("--cas-port")?)?,
            "--xorb-max-bytes" => {
                options.xorb_max_bytes = number("--xorb-max-bytes", &value("--xorb-max-bytes")?)?
            }
            "--page-size" => options.page_size = number("--page-size", &value("--page-size")?)?,
            "--lfs-threshold" => {
                options.lfs_threshold = number("--lfs-threshold", &value("--lfs-threshold")?)?
            }
            "--cdn-base" => {
                let base = value("--cdn-base")?;
                if !base.starts_with("http://") && !base.starts_with("https://") {
                    return Err(format!(
                        "--cdn-base wants an http:// or https:// URL, got {base:?}\n{USAGE}"
                    ));
                }
                options.cdn_base = Some(base);
            }
            "--tree-redirect" => options.tree_redirect = true,
            "--frozen" => options.frozen = true,
            "--log-requests" => options.log_requests = true,
            "--exit-on-stdin-eof" => options.exit_on_stdin_eof = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    options.root = root.ok_or_else(|| format!("--root is required\n{USAGE}"))?;
    if !options.root.is_dir() {
        return Err(format!(
            "--root {} is not a folder: create it and put repos in it as ORG/NAME/...",
            options.root.display()
        ));
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name} wants a number, got {text:?}\n{USAGE}"))
}

fn main() -> ExitCode {
    let mut options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("hub-emulator: {message}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            request_stop as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGINT,
            request_stop as *const () as libc::sighandler_t,
        );
    }
    let mut builder = Emulator::builder(&options.root);
    if let Some(base) = options.cdn_base.take() {
        builder = builder.cdn_base(base);
    }
    let emulator = match builder
        .port(options.port)
        .cdn_port(options.cdn_port)
        .cas_port(options.cas_port)
        .xorb_max_bytes(options.xorb_max_bytes)
        .page_size(options.page_size)
        .lfs_threshold(options.lfs_threshold)
        .tree_redirect(options.tree_redirect)
        .frozen(options.frozen)
        .log_to_stderr(options.log_requests)
        .start()
    {
        Ok(emulator) => emulator,
        Err(err) => {
            eprintln!("hub-emulator: cannot listen on 127.0.0.1: {err}");
            return ExitCode::from(1);
        }
    };
    let mut stdout = io::stdout().lock();
    if writeln!(stdout, "{}", emulator.url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    drop(stdout);
    if options.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let mut sink = [0u8; 4096];
            let mut stdin = io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            STOP.store(true, Ordering::SeqCst);
        });
    }
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(emulator);
    ExitCode::SUCCESS
}
