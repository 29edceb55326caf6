//! The cache as a local Hugging Face endpoint: [`Server`] answers the Hub's own protocol
//! (`/{repo}/resolve/{revision}/{path}`, `/api/models/...`) out of a [`ModelCache`], so that
//! huggingface_hub (`HF_ENDPOINT`), transformers.js (`env.remoteHost`) and any other Hub
//! client read models from this cache instead of downloading them again.
//!
//! This module owns the server's life: binding, the tokio runtime (the only one in the
//! library, owned by the server alone), the accept loop and its connections, and stopping.
//! The pieces: `guard` decides who may ask (Host, token, CORS), `route` names the endpoint,
//! `lookup` reads the catalog, `respond` builds the Hub's answers, `conditional` reads
//! `Range`/`If-None-Match`, `body` streams blobs, `pull` fetches what the cache lacks from
//! its upstream.
//!
//! Runtime: multi-threaded with two workers. HTTP framing and socket writes of two clients
//! then proceed at once (the bench compares against nginx's worker processes), while every
//! blocking step (a catalog read, opening a blob, each chunk read) goes to tokio's blocking
//! pool, so neither worker ever waits on the disk or on SQLite. HTTP/1.1 only, by hyper.
//!
//! Pull-through ([`ServeOptions::pull_through`], on by default, never when the cache is
//! offline): a file or listing the cache does not hold is fetched from the cache's upstream
//! through the cache, one transfer however many ask, streamed to clients as it arrives and
//! cached like any download (see `pull`). Without it, what is not cached is the Hub's `404`
//! saying so.

mod body;
mod conditional;
mod guard;
mod log;
mod lookup;
mod pull;
mod respond;
mod route;

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, ErrorKind, Result};
use crate::ModelCache;
use body::Body;
pub use log::{RequestLog, Served};
use respond::Answer;
use route::Route;

/// How a [`Server`] listens and whom it answers.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to bind: `127.0.0.1` unless given. Anything but a loopback address needs
    /// a `token` (or `insecure_no_token`).
    pub host: String,
    /// 0: any free port ([`Server::local_addr`] tells which).
    pub port: u16,
    /// Origins that get CORS headers, matched exactly (`chrome-extension://<id>`,
    /// `http://localhost:5173`); `*` allows every origin, only when given.
    pub allow_origins: Vec<String>,
    /// Names besides the loopback ones that clients may send as `Host` (a team's
    /// `cache-host`). The bound address itself is always allowed.
    pub allow_hosts: Vec<String>,
    /// Fetch what the cache does not hold (files, listings) from the cache's upstream, through
    /// the cache, which keeps the files. On by default; ignored when the cache is offline.
    pub pull_through: bool,
    /// When set, every request but a CORS preflight must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Allow binding a non-loopback address without a token.
    pub insecure_no_token: bool,
    /// Entries per page of a tree listing (the Hub's is 1000).
    pub tree_page_size: usize,
    /// Told of every request once its answer's head is ready (the command line's log lines).
    pub log: Option<RequestLog>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".to_string(),
            port: 0,
            allow_origins: Vec::new(),
            allow_hosts: Vec::new(),
            pull_through: true,
            token: None,
            insecure_no_token: false,
            tree_page_size: 1000,
            log: None,
        }
    }
}

/// A running server. Stops on [`Server::stop`] or when dropped.
pub struct Server {
    addr: SocketAddr,
    url: String,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

/// What every request handler shares.
struct State {
    cache: ModelCache,
    allow_origins: Vec<String>,
    /// Lower-case `Host` names allowed besides the loopback ones.
    allow_hosts: Vec<String>,
    token: Option<String>,
    tree_page_size: usize,
    log: Option<RequestLog>,
    /// Pull-through asked for and the cache online.
    pull_through: bool,
}

/// The most a `paths-info` body may hold: far more than any real list of paths.
const MAX_REQUEST_BODY: usize = 1 << 20;

/// A client has this long to send its request headers (slow-loris connections end).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

impl Server {
    /// Bind and start serving `cache`. Returns once the port is bound, so the URL is usable at
    /// once.
    ///
    /// # Errors
    /// `InvalidArgument` for a host that does not resolve, a non-loopback bind without a token
    /// (and without `insecure_no_token`), or an empty token; `Io` when the address cannot be
    /// bound (in use, not permitted) or the runtime cannot start.
    pub fn start(cache: &ModelCache, options: ServeOptions) -> Result<Server> {
        if options.token.as_deref() == Some("") {
            return Err(Error::invalid(
                "the serving token is empty; give a non-empty token or none",
            ));
        }
        let addr = (options.host.as_str(), options.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "cannot serve on host {:?}: it is not an address or a name that resolves",
                    options.host
                ))
            })?;
        if !addr.ip().is_loopback() && options.token.is_none() && !options.insecure_no_token {
            return Err(Error::invalid(format!(
                "serving on {} (not a loopback address) lets other machines read the cache: \
                 give a token (clients send it as `Authorization: Bearer`), or allow it \
                 explicitly with insecure_no_token",
                addr.ip()
            )));
        }
        let listener = StdListener::bind(addr)
            .map_err(|e| Error::new(ErrorKind::Io, format!("could not listen on {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("could not read the bound address: {e}"),
            )
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::new(ErrorKind::Io, format!("could not set up {addr}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tabcache-serve")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("could not start the server runtime: {e}"),
                )
            })?;

        let url_host = if addr.ip().is_unspecified() {
            // A wildcard bind is reachable here on loopback.
            "127.0.0.1".to_string()
        } else {
            match addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        let mut allow_hosts: Vec<String> = options
            .allow_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        allow_hosts.push(options.host.to_ascii_lowercase());
        allow_hosts.push(url_host.clone());
        let state = Arc::new(State {
            cache: cache.clone(),
            allow_origins: options.allow_origins,
            allow_hosts,
            token: options.token,
            tree_page_size: options.tree_page_size,
            log: options.log,
            pull_through: options.pull_through && !cache.hub().is_offline(),
        });
        let (stop, stopped) = watch::channel(false);
        // The runtime lives and dies on its own thread, so stopping works from any caller,
        // even one inside another tokio runtime (where dropping a runtime would panic).
        let thread = std::thread::Builder::new()
            .name("tabcache-serve-accept".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => accept_loop(listener, state, stopped).await,
                        Err(e) => eprintln!("tabcache serve: could not listen: {e}"),
                    }
                });
                // Chunk reads in flight are short; none can hold the stop up for long.
                runtime.shutdown_timeout(Duration::from_secs(5));
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("could not start the server thread: {e}"),
                )
            })?;
        Ok(Server {
            addr,
            url: format!("http://{url_host}:{}", addr.port()),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://HOST:PORT`, with the port actually bound: what to set `HF_ENDPOINT` or
    /// transformers.js's `env.remoteHost` to.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop listening and end every open connection (a download in progress ends short, which
    /// its client sees as an incomplete body), then wait until the server is gone.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shut_down();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, peer, state.clone()));
                }
                // Out of file descriptors and the like: pause rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Dropping a connection's task closes its socket: idle keep-alive connections and
    // downloads in progress alike end now.
    connections.shutdown().await;
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, state: Arc<State>) {
    let service = hyper::service::service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, peer, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Every answer, errors included, gets the CORS headers its origin is allowed, and is logged
/// when the server has a log.
async fn handle(state: Arc<State>, peer: SocketAddr, request: Request<Incoming>) -> Answer {
    let arrived = Instant::now();
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let asked = state.log.is_some().then(|| {
        let target = request.uri().path_and_query().map_or("/", |t| t.as_str());
        (request.method().to_string(), target.to_string())
    });
    let mut answer = answer(&state, request, origin.as_deref()).await;
    guard::add_cors(
        answer.headers_mut(),
        origin.as_deref(),
        &state.allow_origins,
    );
    if let (Some(log), Some((method, target))) = (&state.log, asked) {
        // Set by the file answers (a HEAD's too); the JSON ones know their body's size.
        let length = answer
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .or_else(|| hyper::body::Body::size_hint(answer.body()).exact());
        log.record(&Served {
            peer,
            method,
            target,
            status: answer.status().as_u16(),
            length,
            origin,
            elapsed: arrived.elapsed(),
        });
    }
    answer
}

async fn answer(state: &Arc<State>, request: Request<Incoming>, origin: Option<&str>) -> Answer {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !guard::host_allowed(host, &state.allow_hosts) {
        return respond::error(
            StatusCode::MISDIRECTED_REQUEST,
            None,
            "this server answers only to its own loopback names and the hosts it was told to \
             allow (the Host header named another)",
        );
    }
    if request.method() == Method::OPTIONS {
        return preflight(state, &request, origin);
    }
    if !guard::authorized(request.headers(), state.token.as_deref()) {
        // The Hub's words for a refused token: huggingface_hub then reports a 401, not a
        // missing repo.
        let mut answer = respond::error(
            StatusCode::UNAUTHORIZED,
            None,
            "Invalid credentials in Authorization header",
        );
        answer
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return answer;
    }
    let route = match route::parse(request.uri().path()) {
        Ok(Some(route)) => route,
        Ok(None) => {
            return respond::error(
                StatusCode::NOT_FOUND,
                None,
                &format!("no Hub endpoint at {}", request.uri().path()),
            )
        }
        Err(e) => return respond::bad_request(&e),
    };
    let method = request.method().clone();
    let cache = state.cache.clone();
    match (method, route) {
        (
            m @ (Method::GET | Method::HEAD),
            Route::Resolve {
                repo,
                revision,
                path,
            },
        ) => {
            let headers = request.headers().clone();
            let head = m == Method::HEAD;
            let cached = {
                let (cache, headers, repo, revision, path) = (
                    cache.clone(),
                    headers.clone(),
                    repo.clone(),
                    revision.clone(),
                    path.clone(),
                );
                run_blocking(move || {
                    respond::cached_file(&cache, &headers, head, &repo, &revision, &path)
                })
                .await
            };
            match cached {
                Ok(Ok(answer)) | Err(answer) => answer,
                Ok(Err(_)) if state.pull_through => {
                    pull::resolve(cache, headers, head, repo, revision, path).await
                }
                Ok(Err(miss)) => respond::not_found(miss, &repo, &revision, Some(&path)),
            }
        }
        (Method::GET | Method::HEAD, Route::Info { repo, revision }) => {
            let blobs = query_flag(&request, "blobs");
            let pull = state.pull_through;
            blocking(move || match listing(&cache, pull, &repo, &revision) {
                Ok(snapshot) => respond::model_info(&snapshot, &repo, blobs),
                Err(answer) => *answer,
            })
            .await
        }
        (
            Method::GET | Method::HEAD,
            Route::Tree {
                repo,
                revision,
                path,
            },
        ) => {
            let recursive = query_flag(&request, "recursive");
            let cursor = query_value(&request, "cursor");
            let query: Vec<String> = request
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
                .map(str::to_string)
                .collect();
            // The host was checked above, so the next page's URL names this server.
            let url = format!("http://{}{}", host.unwrap_or(""), request.uri().path());
            let page_size = state.tree_page_size;
            let pull = state.pull_through;
            blocking(move || {
                let q = respond::TreeQuery {
                    path: &path,
                    recursive,
                    cursor: cursor.as_deref(),
                    page_size,
                    url,
                    query,
                };
                match listing(&cache, pull, &repo, &revision) {
                    Ok(snapshot) => respond::tree(&snapshot, &repo, &revision, &q),
                    Err(answer) => *answer,
                }
            })
            .await
        }
        (Method::POST, Route::PathsInfo { repo, revision }) => {
            let json = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("application/json"));
            let body = match Limited::new(request.into_body(), MAX_REQUEST_BODY)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return respond::error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        None,
                        "the request body is too large (or was cut off)",
                    )
                }
            };
            let Some(paths) = requested_paths(&body, json) else {
                return respond::error(
                    StatusCode::BAD_REQUEST,
                    None,
                    "paths-info expects `paths` as form fields or a JSON list",
                );
            };
            if let Some(bad) = paths
                .iter()
                .find_map(|p| crate::validate::repo_path(p).err())
            {
                return respond::bad_request(&bad);
            }
            let pull = state.pull_through;
            blocking(move || match listing(&cache, pull, &repo, &revision) {
                Ok(snapshot) => respond::paths_info(&snapshot, &paths),
                Err(answer) => *answer,
            })
            .await
        }
        (_, route) => {
            let allow = match route {
                Route::PathsInfo { .. } => "POST",
                _ => "GET, HEAD",
            };
            let mut answer = respond::error(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                "this server is read-only; that method is not served here",
            );
            answer
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            answer
        }
    }
}

/// A CORS preflight (or a plain `OPTIONS`): answered without the token, since browsers never
/// send credentials on a preflight. An origin not allowed gets `403` and no CORS headers.
fn preflight(state: &State, request: &Request<Incoming>, origin: Option<&str>) -> Answer {
    let mut answer = Response::new(Body::Empty);
    *answer.status_mut() = StatusCode::NO_CONTENT;
    answer.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static(guard::ALLOW_METHODS),
    );
    if origin.is_none() {
        return answer;
    }
    if guard::allowed_origin(origin, &state.allow_origins).is_none() {
        return respond::error(
            StatusCode::FORBIDDEN,
            None,
            "this origin is not allowed to read from this server",
        );
    }
    guard::preflight_headers(request.headers(), answer.headers_mut());
    answer
}

/// What the listings show: with pull-through the upstream's files, else the cached ones.
/// Blocking.
fn listing(
    cache: &ModelCache,
    pull_through: bool,
    repo: &str,
    revision: &str,
) -> std::result::Result<lookup::Snapshot, Box<Answer>> {
    if pull_through {
        return pull::upstream_snapshot(cache, repo, revision);
    }
    respond::cached_snapshot(cache, repo, revision)
}

/// Run a blocking step (catalog read, blob open, a request upstream) on the blocking pool;
/// `Err` is the answer when it failed.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, Answer> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| respond::internal(&Error::internal(format!("a request handler failed: {e}"))))
}

/// [`run_blocking`] of a step that gives the answer.
async fn blocking(work: impl FnOnce() -> Answer + Send + 'static) -> Answer {
    run_blocking(work).await.unwrap_or_else(|answer| answer)
}

fn query_value(request: &Request<Incoming>, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    form_values(query.as_bytes(), name).into_iter().next()
}

fn query_flag(request: &Request<Incoming>, name: &str) -> bool {
    matches!(
        query_value(request, name).as_deref(),
        Some("true" | "True" | "1")
    )
}

/// Every value of `name` in an `application/x-www-form-urlencoded` string.
fn form_values(form: &[u8], name: &str) -> Vec<String> {
    form.split(|&b| b == b'&')
        .filter_map(|pair| {
            let pair: Vec<u8> = pair
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            let text = String::from_utf8(pair).ok()?;
            let (key, value) = text.split_once('=').unwrap_or((text.as_str(), ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .ok()
                    .map(|c| c.into_owned())
            };
            (decode(key)? == name).then(|| decode(value)).flatten()
        })
        .collect()
}

/// The `paths` of a paths-info body: huggingface_hub sends them as repeated form fields; a
/// JSON `{"paths": [...]}` is accepted too.
fn requested_paths(body: &[u8], json: bool) -> Option<Vec<String>> {
    if json {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        return value
            .get("paths")?
            .as_array()?
            .iter()
            .map(|p| p.as_str().map(str::to_string))
            .collect();
    }
    Some(form_values(body, "paths"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies() {
        assert_eq!(
            form_values(
                b"paths=a.json&paths=onnx%2Fmodel.onnx&expand=False",
                "paths"
            ),
            vec!["a.json", "onnx/model.onnx"]
        );
        assert_eq!(form_values(b"paths=a+b", "paths"), vec!["a b"]);
        assert_eq!(
            requested_paths(br#"{"paths": ["x", "y/z"]}"#, true).unwrap(),
            vec!["x", "y/z"]
        );
        assert!(requested_paths(br#"{"paths": [1]}"#, true).is_none());
    }
}
