//! A real browser reads a model from `tabcache::serve` (issue 15): Debian's Chromium, headless,
//! driven by playwright-core, opens a page that loads transformers.js (the npm package) with
//! `env.remoteHost` set to our server and onnxruntime-web's wasm from the page's own origin, and
//! runs a small real model that the test generates (`tests/browser/make_model.py`: a BERT-like
//! ONNX graph with known weights, its tokenizer and config). The model reaches the cache the
//! honest way: the hub emulator hosts it, tabcache downloads it, and the emulator is gone before
//! the browser starts.
//!
//! Checked: the page's embedding equals the one numpy computed from the weights; the browser
//! fetched nothing from any origin but the page's and our server's; and a second page, from
//! an origin the server was not told to allow, is refused by CORS while the server did answer
//! it, with no CORS headers.
//!
//! Needs `node`, `/usr/bin/chromium` (or `TABCACHE_CHROMIUM`) and `tests/browser/node_modules`
//! (`bash scripts/browser-deps`, which `scripts/test` runs). A missing one fails the test with
//! what to run; it is never skipped. `TABCACHE_BROWSER_REPORT=FILE` saves what the browser did
//! (every request, the raw headers of each exchange with the server, the console).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tabcache::serve::{ServeOptions, Server};

const REPO: &str = "tabcache-test/tiny-bert";
/// The whole browser session, launch to close; it takes a few seconds when all is well.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn chromium_runs_a_model_from_the_server_and_other_origins_are_refused() {
    let started = Instant::now();
    let tools = BrowserTools::find();

    // The model, and what it must compute.
    let made = tempfile::tempdir().unwrap();
    python_stdout(
        Command::new(test_python())
            .arg(browser_dir().join("make_model.py"))
            .arg(made.path()),
    );
    let expected: Value =
        serde_json::from_slice(&std::fs::read(made.path().join("expected.json")).unwrap()).unwrap();
    let repo_files = files_under(&made.path().join("repo"));

    // Into the cache through the hub emulator, as a user's download would bring it.
    let hub = hub(|root| {
        for (path, bytes) in &repo_files {
            hub_emulator::write_file(root, REPO, path, bytes).unwrap();
        }
        hub_emulator::write_repo_config(
            root,
            REPO,
            &hub_emulator::RepoConfig {
                pipeline_tag: Some("feature-extraction".into()),
                ..Default::default()
            },
        )
        .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &hub);
    cache.scan_repo(REPO, None).unwrap();
    let fetched = cache.download_quant(REPO, "fp32", None, None).unwrap();
    for (path, bytes) in &repo_files {
        let held = fetched
            .iter()
            .find(|p| p.ends_with(path))
            .unwrap_or_else(|| panic!("the fp32 download did not bring {path}: {fetched:?}"));
        assert_eq!(&std::fs::read(held).unwrap(), bytes, "{path}");
    }
    let commit = hub.emu.commit_of(REPO).unwrap();
    // From here on the cache is the only place the model exists.
    drop(hub);

    // The page's origin (allowed) and a second origin serving the same page (not allowed).
    let site = Site::start(&tools.node_modules);
    let allowed_origin = format!("http://{}", site.allowed);
    let refused_origin = format!("http://{}", site.refused);
    let server = Server::start(
        &cache,
        ServeOptions {
            allow_origins: vec![allowed_origin.clone()],
            pull_through: false,
            ..ServeOptions::default()
        },
    )
    .unwrap();

    let report = tools.drive(&json!({
        "allowed_page": format!("{allowed_origin}/index.html"),
        "refused_page": format!("{refused_origin}/index.html"),
        "server": server.url(),
        "repo": REPO,
        "text": expected["text"],
        "timeout_ms": 60_000,
    }));
    // Everything the browser did, for a reader of a failure (or a curious developer).
    if let Some(path) = std::env::var_os("TABCACHE_BROWSER_REPORT") {
        std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    }
    let allowed = &report["allowed"];
    let refused = &report["refused"];

    // 1. The model ran in the page and computed what numpy computed.
    let result = &allowed["result"];
    assert_eq!(
        result["ok"],
        true,
        "the page failed: {}\nconsole: {:#}",
        result["error"].as_str().unwrap_or(""),
        allowed["console"]
    );
    assert_eq!(
        result["input_ids"], expected["input_ids"],
        "transformers.js tokenized differently"
    );
    assert_eq!(result["dims"], expected["dims"]);
    let got = floats(&result["embedding"]);
    let want = floats(&expected["embedding"]);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 + 1e-4 * w.abs(),
            "embedding value {i}: the page computed {g}, numpy {w}"
        );
    }
    // The wasm we serve is the runtime transformers.js bundles, not a stale neighbour.
    assert_eq!(
        result["ort_version"].as_str(),
        Some(tools.onnxruntime_web_version().as_str()),
        "transformers.js bundles another onnxruntime-web than the one installed beside it"
    );

    // 2. Nothing came from anywhere but the page's origin and our server.
    for page in [(allowed, &allowed_origin), (refused, &refused_origin)] {
        let (page, origin) = page;
        let requests = page["requests"].as_array().unwrap();
        assert!(!requests.is_empty());
        for r in requests {
            let url = r["url"].as_str().unwrap();
            assert!(
                from_origin(url, origin) || from_origin(url, server.url()),
                "the page at {origin} fetched {url} ({}), from neither its origin nor the \
                 server",
                r["resource_type"]
            );
        }
    }
    // The runtime came from the page's origin: transformers.js and both onnxruntime files.
    let served = site.log();
    for path in [
        "/transformers/transformers.js",
        "/ort/ort-wasm-simd-threaded.asyncify.mjs",
        "/ort/ort-wasm-simd-threaded.asyncify.wasm",
    ] {
        assert!(
            served
                .iter()
                .any(|(port, p, status)| *port == site.allowed.port()
                    && p == path
                    && *status == 200),
            "the page did not load {path} from its origin; served: {served:?}"
        );
    }
    // The model came from the server, every answer readable by the allowed origin.
    let exchanges = allowed["server_exchanges"].as_array().unwrap();
    for file in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "onnx/model.onnx",
    ] {
        let url = format!("{}/{REPO}/resolve/main/{file}", server.url());
        let x = exchanges
            .iter()
            .find(|x| x["url"] == url.as_str() && x["status"] == 200)
            .unwrap_or_else(|| panic!("no 200 for {url}; exchanges: {exchanges:#?}"));
        assert_eq!(
            header(&x["response_headers"], "access-control-allow-origin"),
            Some(allowed_origin.as_str()),
            "{url}"
        );
    }
    for x in exchanges {
        assert!(
            x["error"].is_null(),
            "a request of the allowed page failed: {x:#}"
        );
        // `Cache-Control: no-store`: the browser keeps no HTTP-cache copy of the model, so it
        // never revalidates one (which would show as If-None-Match and a 304).
        assert!(
            header(&x["raw_request_headers"], "if-none-match").is_none() && x["status"] != 304,
            "the browser kept its own copy of a model file: {x:#}"
        );
    }
    // transformers.js sizes files with `Range: bytes=0-0`; the page can read the answer's
    // Content-Range only because the server exposes it.
    let probe = exchanges
        .iter()
        .find(|x| header(&x["raw_request_headers"], "range") == Some("bytes=0-0"))
        .unwrap_or_else(|| panic!("transformers.js sent no size probe: {exchanges:#?}"));
    assert_eq!(probe["status"], 206, "{probe:#}");
    assert!(
        header(&probe["response_headers"], "content-range")
            .is_some_and(|r| r.starts_with("bytes 0-0/"))
            && header(&probe["response_headers"], "access-control-expose-headers")
                .is_some_and(|h| h.contains("Content-Range")),
        "{probe:#}"
    );

    // 3. The other origin: transformers.js fails, a plain fetch fails, and yet the server
    // answered every request (the browser saw a status) without CORS headers.
    let result = &refused["result"];
    assert_eq!(
        result["ok"], false,
        "a page from a refused origin ran the model"
    );
    let fetch = &refused["fetch"];
    assert_eq!(fetch["ok"], false, "a refused origin read a file: {fetch}");
    assert!(
        fetch["error"].as_str().unwrap().contains("Failed to fetch"),
        "{fetch}"
    );
    let exchanges = refused["server_exchanges"].as_array().unwrap();
    let config_url = format!("{}/{REPO}/resolve/main/config.json", server.url());
    assert!(
        exchanges.iter().any(|x| x["url"] == config_url.as_str()),
        "the refused page's requests never reached the server: {exchanges:#?}"
    );
    for x in exchanges {
        assert_eq!(
            header(&x["raw_request_headers"], "origin"),
            Some(refused_origin.as_str()),
            "{x:#}"
        );
        let status = x["status"].as_u64();
        assert!(
            matches!(status, Some(200 | 206))
                && header(&x["response_headers"], "x-repo-commit") == Some(commit.as_str()),
            "the server did not answer the refused page's request (or not with the file): {x:#}"
        );
        assert!(
            header(&x["response_headers"], "access-control-allow-origin").is_none()
                && header(&x["response_headers"], "access-control-expose-headers").is_none(),
            "the server sent CORS headers to an origin not allowed: {x:#}"
        );
        assert_eq!(
            x["cors_error"], "MissingAllowOriginHeader",
            "the browser did not refuse it for CORS: {x:#}"
        );
    }
    assert!(
        site.log()
            .iter()
            .any(|(port, p, _)| *port == site.refused.port() && p == "/page.js"),
        "the refused page was not loaded from its own origin"
    );

    server.stop();
    eprintln!(
        "browser test: {} ({}), {:.1} s in all",
        report["chromium_version"],
        tools.chromium.display(),
        started.elapsed().as_secs_f64()
    );
}

/// Where the driver, the page and `node_modules` live.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

struct BrowserTools {
    chromium: PathBuf,
    node_modules: PathBuf,
}

impl BrowserTools {
    /// The browser, node and the npm packages; panics saying how to get whichever is missing.
    fn find() -> BrowserTools {
        let chromium = std::env::var_os("TABCACHE_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        assert!(
            chromium.exists(),
            "no Chromium at {}: install Debian's (`apt-get install chromium`; `bash \
             scripts/browser-deps` does it as root), or set TABCACHE_CHROMIUM",
            chromium.display()
        );
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.is_ok_and(|o| o.status.success()),
            "`node` is required to drive the browser: `bash scripts/browser-deps` installs it \
             (Debian's nodejs)"
        );
        let node_modules = browser_dir().join("node_modules");
        for package in [
            "playwright-core",
            "@huggingface/transformers",
            "onnxruntime-web",
        ] {
            assert!(
                node_modules.join(package).join("package.json").exists(),
                "{package} is not installed in {}: run `bash scripts/browser-deps`",
                node_modules.display()
            );
        }
        BrowserTools {
            chromium,
            node_modules,
        }
    }

    fn onnxruntime_web_version(&self) -> String {
        let package: Value = serde_json::from_slice(
            &std::fs::read(self.node_modules.join("onnxruntime-web/package.json")).unwrap(),
        )
        .unwrap();
        package["version"].as_str().unwrap().to_string()
    }

    /// Run `driver.mjs` with `config` (plus the browser's path) and return its report; panics
    /// with its output when it fails or outlives [`DRIVER_TIMEOUT`].
    fn drive(&self, config: &Value) -> Value {
        let mut config = config.clone();
        config["chromium"] = json!(self.chromium);
        let out_dir = tempfile::tempdir().unwrap();
        let stdout_path = out_dir.path().join("stdout");
        let stderr_path = out_dir.path().join("stderr");
        let mut child = Command::new("node")
            .arg(browser_dir().join("driver.mjs"))
            .arg(config.to_string())
            .current_dir(browser_dir())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + DRIVER_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = std::fs::read_to_string(&stdout_path).unwrap();
        let stderr = std::fs::read_to_string(&stderr_path).unwrap();
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!("the browser driver failed ({s}):\n{stdout}\n{stderr}"),
            None => panic!(
                "the browser driver did not finish within {DRIVER_TIMEOUT:?}:\n{stdout}\n{stderr}"
            ),
        }
        let last = stdout.lines().last().unwrap_or("");
        serde_json::from_str(last).unwrap_or_else(|e| {
            panic!("the browser driver's report is not JSON ({e}):\n{stdout}\n{stderr}")
        })
    }
}

/// Every file under `root` as (`/`-separated relative path, bytes).
fn files_under(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = walk(root)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap();
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            (rel.join("/"), std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list of numbers: {value}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Whether `url` is a resource of `origin`: the origin itself, or a `blob:` URL it made.
fn from_origin(url: &str, origin: &str) -> bool {
    let url = url.strip_prefix("blob:").unwrap_or(url);
    url.strip_prefix(origin)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A header of a DevTools header object (names in any case; Chromium joins repeats with `\n`).
fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// The test page's static server: the page, transformers.js and onnxruntime-web's runtime
/// files, from memory, on two ports of 127.0.0.1: two origins, one allowed by our server and
/// one not. It logs what it served, so the test can tell where the runtime came from. hyper on
/// a runtime of its own, like the server under test, but sharing nothing with it.
struct Site {
    allowed: SocketAddr,
    refused: SocketAddr,
    log: Arc<Mutex<Vec<(u16, String, u16)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Files = HashMap<&'static str, (Bytes, &'static str)>;

impl Site {
    fn start(node_modules: &Path) -> Site {
        let read = |path: PathBuf| {
            Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        };
        let page = browser_dir().join("page");
        let ort = node_modules.join("onnxruntime-web/dist");
        let js = "text/javascript";
        let files: Files = HashMap::from([
            ("/index.html", (read(page.join("index.html")), "text/html")),
            ("/page.js", (read(page.join("page.js")), js)),
            (
                "/transformers/transformers.js",
                (
                    read(node_modules.join("@huggingface/transformers/dist/transformers.js")),
                    js,
                ),
            ),
            (
                "/ort/ort-wasm-simd-threaded.asyncify.mjs",
                (read(ort.join("ort-wasm-simd-threaded.asyncify.mjs")), js),
            ),
            (
                // application/wasm: what WebAssembly.instantiateStreaming insists on.
                "/ort/ort-wasm-simd-threaded.asyncify.wasm",
                (
                    read(ort.join("ort-wasm-simd-threaded.asyncify.wasm")),
                    "application/wasm",
                ),
            ),
        ]);
        let files = Arc::new(files);
        let log = Arc::new(Mutex::new(Vec::new()));
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listeners = [bind(), bind()];
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = {
            let log = log.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    for listener in listeners {
                        listener.set_nonblocking(true).unwrap();
                        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                        tokio::spawn(accept(listener, files.clone(), log.clone()));
                    }
                    let _ = stopped.await;
                });
            })
        };
        Site {
            allowed: addrs[0],
            refused: addrs[1],
            log,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// (port, path, status) of every request so far.
    fn log(&self) -> Vec<(u16, String, u16)> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    files: Arc<Files>,
    log: Arc<Mutex<Vec<(u16, String, u16)>>>,
) {
    let port = listener.local_addr().unwrap().port();
    while let Ok((stream, _)) = listener.accept().await {
        let (files, log) = (files.clone(), log.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let path = match request.uri().path() {
                    "/" => "/index.html",
                    p => p,
                };
                let response = match files.get(path) {
                    Some((body, content_type)) => Response::builder()
                        .header("content-type", *content_type)
                        .body(Full::new(body.clone())),
                    None => Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Full::new(Bytes::from_static(b"not part of the test page"))),
                }
                .unwrap();
                log.lock()
                    .unwrap()
                    .push((port, path.to_string(), response.status().as_u16()));
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
