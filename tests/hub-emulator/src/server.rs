//! The server machinery: shared state, accept loops, one thread per keep-alive connection,
//! writing responses (with the body faults of a [`Plan`] applied) and the request log.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::fault::{FaultTable, Listener, Plan, RequestFacts, StatusFault};
use crate::http::{self, Framing, ReadOutcome, Request};
use crate::repo::RepoStore;
use crate::{api, cas, control};

/// Body bytes go out in pieces this large (one buffer per connection, reused).
const BODY_BUFFER: usize = 256 * 1024;
/// Most bytes one sendfile(2) call may move, so a call never blocks for long.
const ZERO_COPY_SLICE: u64 = 1024 * 1024;
/// How often sleeping fault paths look at the shutdown flag.
const NAP: Duration = Duration::from_millis(20);

pub(crate) struct Shared {
    pub store: RepoStore,
    pub faults: Mutex<FaultTable>,
    pub log: Mutex<Vec<RequestRecord>>,
    pub page_size: AtomicUsize,
    pub tree_redirect: AtomicBool,
    /// Compress JSON answers with gzip for requests that accept it, as the Hub's front does.
    pub gzip_json: AtomicBool,
    pub log_to_stderr: bool,
    /// Where LFS redirects point instead of the CDN listener (no trailing `/`).
    pub cdn_base: Option<String>,
    pub api_addr: SocketAddr,
    pub cdn_addr: SocketAddr,
    pub cas_addr: SocketAddr,
    shutdown: AtomicBool,
    connections: Mutex<HashMap<u64, TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    next_connection: AtomicU64,
    next_seq: AtomicU64,
}

/// Where the three listeners are bound.
pub(crate) struct Addrs {
    pub api: SocketAddr,
    pub cdn: SocketAddr,
    pub cas: SocketAddr,
}

/// One served request, as the log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// Position in arrival order, counting from 1 over the emulator's life.
    pub seq: u64,
    pub listener: Listener,
    /// Requests on one keep-alive connection share this number.
    pub connection: u64,
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub range: Option<String>,
    /// The whole `Authorization` header value, if one was sent.
    pub authorization: Option<String>,
    pub status: u16,
    /// Body bytes written to the socket (an injected extra byte counts).
    /// Recorded before the last byte goes out (so a client that has read a response always
    /// finds it in the log) and corrected if the write fails midway.
    pub body_bytes: u64,
    /// Ids of the faults that fired for this request.
    pub faults: Vec<u64>,
}

pub(crate) enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of the file from `start`; the file is opened only when the body is sent.
    File {
        path: PathBuf,
        start: u64,
        len: u64,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut response = Response::new(status).header("Content-Type", "application/json");
        response.body = Body::Bytes(value.to_string().into_bytes());
        response
    }

    pub fn text(status: u16, text: impl Into<String>) -> Response {
        let mut response =
            Response::new(status).header("Content-Type", "text/plain; charset=utf-8");
        response.body = Body::Bytes(text.into().into_bytes());
        response
    }

    /// `405` for a method other than GET and HEAD, the only ones the download routes (the
    /// API's and the CAS's) answer; None for those two.
    pub(crate) fn unless_read(request: &Request) -> Option<Response> {
        if request.method == "GET" || request.method == "HEAD" {
            return None;
        }
        let message = format!("method {} is not supported here", request.method);
        Some(Response::hub_error(405, None, &message).header("Allow", "GET, HEAD"))
    }

    /// A Hub error: `X-Error-Code` (when given), `X-Error-Message` and `{"error": message}`.
    pub fn hub_error(status: u16, code: Option<&str>, message: &str) -> Response {
        let mut response = Response::json(status, &serde_json::json!({ "error": message }));
        if let Some(code) = code {
            response = response.header("X-Error-Code", code);
        }
        response.header("X-Error-Message", message)
    }

    fn from_status_fault(fault: &StatusFault) -> Response {
        let message = format!("injected fault: status {}", fault.status);
        let mut response = Response::hub_error(fault.status, fault.error_code.as_deref(), &message);
        if let Some(seconds) = fault.retry_after {
            response = response.header("Retry-After", seconds.to_string());
        }
        if let Some(seconds) = fault.ratelimit_reset {
            response = response.header("RateLimit", format!("\"default\";r=0;t={seconds}"));
        }
        response
    }
}

impl Shared {
    pub fn new(
        store: RepoStore,
        page_size: usize,
        tree_redirect: bool,
        log_to_stderr: bool,
        cdn_base: Option<String>,
        addrs: Addrs,
    ) -> Shared {
        Shared {
            store,
            faults: Mutex::new(FaultTable::default()),
            log: Mutex::new(Vec::new()),
            page_size: AtomicUsize::new(page_size.max(1)),
            tree_redirect: AtomicBool::new(tree_redirect),
            gzip_json: AtomicBool::new(false),
            log_to_stderr,
            cdn_base,
            api_addr: addrs.api,
            cdn_addr: addrs.cdn,
            cas_addr: addrs.cas,
            shutdown: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
            next_connection: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
        }
    }

    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Sleeps up to `duration`, waking early on shutdown; false when shutting down.
    fn nap(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            thread::sleep(NAP.min(deadline - now));
        }
    }

    /// Stops accepting, breaks every open connection and joins all threads.
    pub fn stop(&self, acceptors: Vec<JoinHandle<()>>) {
        self.shutdown.store(true, Ordering::SeqCst);
        // A connection wakes each acceptor blocked in accept() so it sees the flag.
        for addr in [self.api_addr, self.cdn_addr, self.cas_addr] {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        for acceptor in acceptors {
            let _ = acceptor.join();
        }
        // Acceptors register every connection before starting its thread, so after they are
        // joined this sees them all; shutting the sockets down wakes blocked reads and writes.
        for stream in self.connections.lock().unwrap().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let workers = std::mem::take(&mut *self.workers.lock().unwrap());
        for worker in workers {
            let _ = worker.join();
        }
    }
}

pub(crate) fn spawn_acceptor(
    shared: Arc<Shared>,
    listener: TcpListener,
    kind: Listener,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("hub-emulator-{kind:?}-accept").to_lowercase())
        .spawn(move || accept_loop(&shared, listener, kind))
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener, kind: Listener) {
    for stream in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let id = shared.next_connection.fetch_add(1, Ordering::SeqCst) + 1;
        let Ok(registered) = stream.try_clone() else {
            continue;
        };
        shared.connections.lock().unwrap().insert(id, registered);
        let worker_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("hub-emulator-conn-{id}"))
            .spawn(move || {
                serve_connection(&worker_shared, kind, stream, id);
                worker_shared.connections.lock().unwrap().remove(&id);
            });
        let mut workers = shared.workers.lock().unwrap();
        // Joining finished workers here keeps the list from growing over a long benchmark.
        let (finished, running): (Vec<_>, Vec<_>) =
            workers.drain(..).partition(|worker| worker.is_finished());
        *workers = running;
        for worker in finished {
            let _ = worker.join();
        }
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(_) => {
                shared.connections.lock().unwrap().remove(&id);
            }
        }
    }
}

fn serve_connection(shared: &Shared, kind: Listener, mut stream: TcpStream, connection: u64) {
    let mut pending = Vec::new();
    let mut body_buffer = Vec::new();
    while !shared.stopping() {
        let request = match http::read_request(&mut stream, &mut pending) {
            Ok(ReadOutcome::Request(request)) => request,
            Ok(ReadOutcome::Malformed(message)) => {
                let response = Response::hub_error(400, None, &format!("bad request: {message}"));
                let mut writer = BodyWriter::new(shared, &mut stream, &mut body_buffer);
                let _ = writer.send(false, response, &Plan::default(), true);
                return;
            }
            Ok(ReadOutcome::Closed) | Err(_) => return,
        };
        let keep_alive = handle(
            shared,
            kind,
            &mut stream,
            &mut body_buffer,
            &request,
            connection,
        );
        if !keep_alive || request.wants_close() {
            // Dropping the stream closes it (with a reset when a fault asked for one).
            return;
        }
    }
}

/// Serves one request; false when the connection must close.
fn handle(
    shared: &Shared,
    kind: Listener,
    stream: &mut TcpStream,
    body_buffer: &mut Vec<u8>,
    request: &Request,
    connection: u64,
) -> bool {
    let is_head = request.method == "HEAD";
    let close = request.wants_close();
    if kind == Listener::Api && request.path().starts_with(control::PREFIX) {
        let response = control::handle(shared, request);
        let mut writer = BodyWriter::new(shared, stream, body_buffer);
        return writer
            .send(is_head, response, &Plan::default(), close)
            .keep_alive;
    }

    let decoded = http::percent_decode(&request.target).unwrap_or_else(|| request.target.clone());
    let facts = RequestFacts {
        listener: kind,
        method: &request.method,
        target: &request.target,
        decoded_target: &decoded,
        is_tree: kind == Listener::Api && api::is_tree_request(request.path()),
    };
    let plan = shared.faults.lock().unwrap().plan(&facts);
    let response = match (&plan.status, kind) {
        (Some(fault), _) => Response::from_status_fault(fault),
        (None, Listener::Cdn) => api::handle_cdn(shared, request, &plan),
        (None, Listener::Cas) => cas::handle_cas(shared, request, &plan),
        (None, _) => api::handle_api(shared, request, &plan),
    };
    let (response, plan) = apply_head_faults(response, plan, is_head);
    let response = if shared.gzip_json.load(Ordering::SeqCst) {
        gzip_json(request, response)
    } else {
        response
    };
    let planned_bytes = if is_head {
        0
    } else {
        body_limit(response.body.len(), &plan) + u64::from(plan.extra_byte)
    };
    let seq = shared.next_seq.fetch_add(1, Ordering::SeqCst) + 1;
    let record = RequestRecord {
        seq,
        listener: kind,
        connection,
        method: request.method.clone(),
        target: request.target.clone(),
        range: request.header("range").map(str::to_owned),
        authorization: request.header("authorization").map(str::to_owned),
        status: response.status,
        body_bytes: planned_bytes,
        faults: plan.fired.iter().map(|id| id.0).collect(),
    };
    if shared.log_to_stderr {
        eprintln!(
            "hub-emulator: {:?} {} {} -> {} ({} bytes)",
            kind, record.method, record.target, record.status, record.body_bytes
        );
    }
    shared.log.lock().unwrap().push(record);
    if let Some(silence) = plan.hang {
        // Woken early by shutdown, so a test that ends mid-hang does not wait for it.
        shared.nap(silence);
        return false;
    }

    let mut writer = BodyWriter::new(shared, stream, body_buffer);
    let outcome = writer.send(is_head, response, &plan, close);
    if outcome.body_bytes != planned_bytes {
        let mut log = shared.log.lock().unwrap();
        if let Some(record) = log.iter_mut().rev().find(|record| record.seq == seq) {
            record.body_bytes = outcome.body_bytes;
        }
    }
    outcome.keep_alive
}

/// The faults that rewrite what a response says about its file (and, for a gzip encoding,
/// its body) before it is framed. Only file responses (200/206 with a file body) and resolve
/// redirects carry such claims; other responses pass unchanged.
fn apply_head_faults(mut response: Response, mut plan: Plan, is_head: bool) -> (Response, Plan) {
    let is_file =
        matches!(response.body, Body::File { .. }) && matches!(response.status, 200 | 206);
    let named = |name: &str, wanted: &str| name.eq_ignore_ascii_case(wanted);
    if plan.no_metadata {
        response
            .headers
            .retain(|(name, _)| !named(name, "x-linked-size") && !named(name, "x-linked-etag"));
        for (name, value) in &mut response.headers {
            if named(name, "etag") {
                *value = "\"opaque-etag\"".to_owned();
            }
        }
        plan.chunked |= is_file;
    }
    if plan.no_xet_hash {
        response
            .headers
            .retain(|(name, _)| !named(name, "x-xet-hash"));
    }
    if plan.no_size {
        response
            .headers
            .retain(|(name, _)| !named(name, "x-linked-size"));
        plan.chunked |= is_file;
    }
    if let Some(size) = plan.claim_size {
        for (name, value) in &mut response.headers {
            if named(name, "x-linked-size") {
                *value = size.to_string();
            }
            if named(name, "content-range") && is_file {
                if let Some((span, _)) = value.rsplit_once('/') {
                    *value = format!("{span}/{size}");
                }
            }
        }
        // Only a whole file body is framed by the claim: a redirect keeps its own length, and
        // a 206 states the file's size in its Content-Range (its length is the range's).
        if !is_file || response.status == 206 {
            plan.claim_size = None;
        }
    }
    if let Some(encoding) = plan
        .content_encoding
        .clone()
        .filter(|_| is_file && !is_head)
    {
        if encoding.eq_ignore_ascii_case("gzip") {
            if let Body::File { path, start, len } = &response.body {
                match gzip_range(path, *start, *len) {
                    Ok(compressed) => response.body = Body::Bytes(compressed),
                    Err(err) => {
                        return (
                            Response::hub_error(500, None, &format!("gzip: {err}")),
                            plan,
                        )
                    }
                }
            }
        }
        response = response.header("Content-Encoding", encoding);
    }
    (response, plan)
}

/// A JSON answer gzip-compressed when the request accepts gzip (the `gzip_json` setting).
fn gzip_json(request: &Request, mut response: Response) -> Response {
    let accepts = request.header("accept-encoding").is_some_and(|value| {
        value.split(',').any(|coding| {
            coding
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("gzip")
        })
    });
    let is_json = response.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type") && value.starts_with("application/json")
    });
    if let (true, true, Body::Bytes(bytes)) = (accepts, is_json, &response.body) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if encoder.write_all(bytes).is_ok() {
            if let Ok(compressed) = encoder.finish() {
                response.body = Body::Bytes(compressed);
                response = response.header("Content-Encoding", "gzip");
            }
        }
    }
    response
}

/// `len` bytes of `path` from `start`, gzip-compressed (test files are small).
fn gzip_range(path: &std::path::Path, start: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::copy(&mut file.take(len), &mut encoder)?;
    encoder.finish()
}

struct SendOutcome {
    body_bytes: u64,
    keep_alive: bool,
}

struct BodyWriter<'a> {
    shared: &'a Shared,
    stream: &'a mut TcpStream,
    buffer: &'a mut Vec<u8>,
    sent: u64,
}

impl<'a> BodyWriter<'a> {
    fn new(shared: &'a Shared, stream: &'a mut TcpStream, buffer: &'a mut Vec<u8>) -> Self {
        BodyWriter {
            shared,
            stream,
            buffer,
            sent: 0,
        }
    }

    fn send(&mut self, is_head: bool, response: Response, plan: &Plan, close: bool) -> SendOutcome {
        let result = self.try_send(is_head, response, plan, close);
        SendOutcome {
            body_bytes: self.sent,
            keep_alive: matches!(result, Ok(true)),
        }
    }

    /// Ok(true) when the connection can serve another request.
    fn try_send(
        &mut self,
        is_head: bool,
        response: Response,
        plan: &Plan,
        close: bool,
    ) -> io::Result<bool> {
        let body_len = response.body.len();
        let extra = u64::from(plan.extra_byte);
        let framing = match (plan.chunked, plan.claim_size) {
            (true, _) => Framing::Chunked,
            (false, Some(claimed)) => Framing::Length(claimed),
            (false, None) => Framing::Length(body_len + extra),
        };
        let limit = body_limit(body_len, plan);
        let close = close || (plan.cuts_short() && !is_head);
        let head = http::format_head(response.status, &response.headers, framing, close);

        if is_head {
            self.stream.write_all(head.as_bytes())?;
            return Ok(!close);
        }
        match response.body {
            Body::Bytes(bytes) if plan.body_is_clean() => {
                // One write for head and body: a small second segment would wait on Nagle.
                let mut whole = head.into_bytes();
                whole.extend_from_slice(&bytes);
                self.stream.write_all(&whole)?;
                self.sent = bytes.len() as u64;
            }
            Body::File { path, start, len } if plan.body_is_clean() => {
                let file = File::open(path)?;
                self.stream.write_all(head.as_bytes())?;
                self.send_zero_copy(&file, start, len)?;
            }
            body => {
                self.stream.write_all(head.as_bytes())?;
                self.send_faulty(body, limit, plan)?;
            }
        }
        if let Some((_, pause)) = plan.stall {
            self.stream.flush()?;
            self.shared.nap(pause);
        }
        if let Some((_, true)) = plan.drop_after {
            set_reset_on_close(self.stream);
        }
        Ok(!close)
    }

    /// Sends `len` bytes of `file` from `start` with sendfile(2): no copy through user space,
    /// and an exact count of what the socket took.
    #[cfg(target_os = "linux")]
    fn send_zero_copy(&mut self, file: &File, start: u64, len: u64) -> io::Result<()> {
        use std::os::unix::io::AsRawFd;
        let mut offset = libc::off_t::try_from(start).map_err(io::Error::other)?;
        while self.sent < len {
            let count = ZERO_COPY_SLICE.min(len - self.sent) as usize;
            // SAFETY: both fds are open for the duration of the call; `offset` is a valid
            // pointer to an off_t that sendfile advances.
            let sent = unsafe {
                libc::sendfile(
                    self.stream.as_raw_fd(),
                    file.as_raw_fd(),
                    &mut offset,
                    count,
                )
            };
            match sent {
                -1 => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                }
                0 => return Err(io::Error::other("file shrank while it was served")),
                sent => self.sent += sent as u64,
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn send_zero_copy(&mut self, file: &File, start: u64, len: u64) -> io::Result<()> {
        let mut file = file.try_clone()?;
        file.seek(SeekFrom::Start(start))?;
        if self.buffer.len() < BODY_BUFFER {
            self.buffer.resize(BODY_BUFFER, 0);
        }
        while self.sent < len {
            let want = (BODY_BUFFER as u64).min(len - self.sent) as usize;
            file.read_exact(&mut self.buffer[..want])?;
            self.stream.write_all(&self.buffer[..want])?;
            self.sent += want as u64;
        }
        Ok(())
    }

    fn send_faulty(&mut self, body: Body, limit: u64, plan: &Plan) -> io::Result<()> {
        if self.buffer.len() < BODY_BUFFER {
            self.buffer.resize(BODY_BUFFER, 0);
        }
        let (mut file, bytes, resource_start) = match body {
            Body::Bytes(bytes) => (None, bytes, 0),
            Body::File { path, start, .. } => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(start))?;
                (Some(file), Vec::new(), start)
            }
        };
        let piece_size = match plan.rate {
            Some(rate) => (rate / 20).clamp(1, BODY_BUFFER as u64) as usize,
            None => BODY_BUFFER,
        };
        let started = Instant::now();
        let mut done = 0u64;
        while done < limit {
            let want = piece_size.min((limit - done) as usize);
            let piece = &mut self.buffer[..want];
            match file.as_mut() {
                Some(file) => file.read_exact(piece)?,
                None => piece.copy_from_slice(&bytes[done as usize..done as usize + want]),
            }
            for &offset in &plan.corrupt {
                let at = resource_start + done;
                if offset >= at && offset < at + want as u64 {
                    piece[(offset - at) as usize] ^= 0xFF;
                }
            }
            if let Some(rate) = plan.rate {
                let due = Duration::from_secs_f64(done as f64 / rate as f64);
                let elapsed = started.elapsed();
                if due > elapsed && !self.shared.nap(due - elapsed) {
                    return Err(io::Error::other("emulator stopping"));
                }
            }
            if plan.chunked {
                self.stream.write_all(format!("{want:X}\r\n").as_bytes())?;
                self.stream.write_all(&self.buffer[..want])?;
                self.stream.write_all(b"\r\n")?;
            } else {
                self.stream.write_all(&self.buffer[..want])?;
            }
            done += want as u64;
            self.sent = done;
        }
        if plan.extra_byte {
            let extra: &[u8] = if plan.chunked { b"1\r\n\n\r\n" } else { b"\n" };
            self.stream.write_all(extra)?;
            self.sent += 1;
        }
        if plan.chunked && !plan.cuts_short() {
            self.stream.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    }
}

/// How much of a body of `body_len` bytes goes out before a fault cuts it short.
fn body_limit(body_len: u64, plan: &Plan) -> u64 {
    let mut limit = body_len;
    if let Some((bytes, _)) = plan.drop_after {
        limit = limit.min(bytes);
    }
    if let Some((bytes, _)) = plan.stall {
        limit = limit.min(bytes);
    }
    if let Some(missing) = plan.truncate {
        limit = limit.min(body_len.saturating_sub(missing));
    }
    if let Some(claimed) = plan.claim_size {
        limit = limit.min(claimed);
    }
    limit
}

/// SO_LINGER with a zero timeout makes close() send a reset instead of a FIN.
fn set_reset_on_close(stream: &TcpStream) {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the fd is a live socket owned by `stream`, and `linger` outlives the call.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}
