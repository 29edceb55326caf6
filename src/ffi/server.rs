//! `tc_server`: the cache served over HTTP as a local Hugging Face endpoint (`crate::serve`).

use std::ffi::{c_char, c_int};
use std::sync::Mutex;

use super::args::{flag, optional_str, out_ptr, read_versioned, required_strs};
use super::cache::{TcCache, CACHES};
use super::error::{call, call_void, Failure, TcStatus};
use super::handles::Registry;
use super::memory::give_string;
use crate::serve::{ServeOptions, Server};

/// A running server answering the Hub's protocol from one cache. Opaque: start with
/// tc_server_start, stop with tc_server_stop. Its functions may be called from any thread.
pub struct TcServer {
    /// `None` once stopped (by the one tc_server_stop that removed the handle).
    server: Mutex<Option<Server>>,
    url: String,
}

static SERVERS: Registry<TcServer> = Registry::new("tc_server", 4);

/// How a server listens and whom it answers. Fill it with tc_server_options_init() first,
/// then set the fields you care about (struct_size: as for tc_options). Strings are borrowed
/// for the tc_server_start call only.
#[repr(C)]
pub struct TcServerOptions {
    /// sizeof(tc_server_options) as the caller compiled it; set by tc_server_options_init.
    pub struct_size: usize,
    /// Address or name to bind. NULL: "127.0.0.1". Anything but a loopback address needs a
    /// token (or insecure_no_token = 1).
    pub host: *const c_char,
    /// Port to bind; 0 (default): any free port (tc_server_url tells which).
    pub port: u16,
    /// Origins that get CORS headers, matched exactly ("chrome-extension://<id>",
    /// "http://localhost:5173"); "*" allows every origin. NULL with a count of 0: none.
    pub allow_origins: *const *const c_char,
    pub allow_origins_count: usize,
    /// Host header names accepted besides the loopback ones and the bound host (a team's
    /// "cache-host"). NULL with a count of 0: none.
    pub allow_hosts: *const *const c_char,
    pub allow_hosts_count: usize,
    /// 1: fetch what the cache lacks from its upstream, through the cache (never when the
    /// cache is offline); 0: serve only what is cached; -1 (default): the library's default.
    pub pull_through: c_int,
    /// When set, clients must send "Authorization: Bearer <token>" (CORS preflights
    /// excepted). NULL (default): no token.
    pub token: *const c_char,
    /// 1: allow a non-loopback host without a token. 0 (default): refuse it.
    pub insecure_no_token: c_int,
}

impl TcServerOptions {
    fn defaults() -> TcServerOptions {
        TcServerOptions {
            struct_size: std::mem::size_of::<TcServerOptions>(),
            host: std::ptr::null(),
            port: 0,
            allow_origins: std::ptr::null(),
            allow_origins_count: 0,
            allow_hosts: std::ptr::null(),
            allow_hosts_count: 0,
            pull_through: -1,
            token: std::ptr::null(),
            insecure_no_token: 0,
        }
    }

    /// The caller's options: the fields its `struct_size` covers, defaults for the rest.
    unsafe fn read(ptr: *const TcServerOptions) -> Result<TcServerOptions, Failure> {
        read_versioned(
            ptr,
            TcServerOptions::defaults(),
            "tc_server_options",
            "tc_server_options_init",
        )
    }

    /// Conversions only; what each setting means is `ServeOptions`'s.
    unsafe fn to_serve_options(&self) -> Result<ServeOptions, Failure> {
        let mut o = ServeOptions::default();
        if let Some(host) = optional_str(self.host, "tc_server_options.host")? {
            o.host = host.to_string();
        }
        o.port = self.port;
        let strings = |items: Vec<&str>| items.into_iter().map(str::to_string).collect();
        o.allow_origins = strings(required_strs(
            self.allow_origins,
            self.allow_origins_count,
            "tc_server_options.allow_origins",
        )?);
        o.allow_hosts = strings(required_strs(
            self.allow_hosts,
            self.allow_hosts_count,
            "tc_server_options.allow_hosts",
        )?);
        o.pull_through = match self.pull_through {
            -1 => o.pull_through,
            0 => false,
            1 => true,
            other => {
                return Err(Failure::invalid(format!(
                    "tc_server_options.pull_through is {other}; use 1 (on), 0 (off) or -1 (default)"
                )))
            }
        };
        o.token = optional_str(self.token, "tc_server_options.token")?.map(str::to_string);
        o.insecure_no_token = flag(
            self.insecure_no_token,
            "tc_server_options.insecure_no_token",
        )?;
        Ok(o)
    }
}

/// Fill *options with the defaults and set struct_size. Call it before setting any field.
/// NULL is ignored. Never fails.
#[no_mangle]
pub unsafe extern "C" fn tc_server_options_init(options: *mut TcServerOptions) {
    call_void("tc_server_options_init", || {
        if let Some(options) = options.as_mut() {
            *options = TcServerOptions::defaults();
        }
        Ok(())
    })
}

/// Serve cache over HTTP as a Hugging Face endpoint: point HF_ENDPOINT (huggingface_hub),
/// env.remoteHost (transformers.js) or any Hub client at tc_server_url. Returns once the port
/// is bound; requests are answered on the server's own threads until tc_server_stop.
///
/// - cache: the cache to serve; the server keeps it open until stopped, even past
///   tc_cache_close.
/// - options: borrowed for this call; NULL means all defaults (127.0.0.1, any free port, no
///   CORS origins, no token).
/// - out: receives the new tc_server on success; the caller stops it with tc_server_stop.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT for NULL cache or out, a bad option, a
/// host that does not resolve, an empty token, or a non-loopback host without a token (and
/// without insecure_no_token); TC_STATUS_IO when the address cannot be bound (the port is in
/// use, or not permitted).
#[no_mangle]
pub unsafe extern "C" fn tc_server_start(
    cache: *mut TcCache,
    options: *const TcServerOptions,
    out: *mut *mut TcServer,
) -> TcStatus {
    call("tc_server_start", || {
        let handle = CACHES.get(cache)?;
        let options = TcServerOptions::read(options)?.to_serve_options()?;
        out_ptr(out, "out")?;
        let server = Server::start(&handle.cache, options)?;
        let url = server.url().to_string();
        *out = SERVERS.insert(TcServer {
            server: Mutex::new(Some(server)),
            url,
        })?;
        Ok(TcStatus::Ok)
    })
}

/// The server's base URL, "http://HOST:PORT" with the port actually bound.
///
/// - out_url: on TC_STATUS_OK receives the URL; the caller frees it with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT for a NULL out_url or a stopped server.
#[no_mangle]
pub unsafe extern "C" fn tc_server_url(
    server: *const TcServer,
    out_url: *mut *mut c_char,
) -> TcStatus {
    call("tc_server_url", || {
        let server = SERVERS.get(server)?;
        out_ptr(out_url, "out_url")?;
        *out_url = give_string(&server.url)?;
        Ok(TcStatus::Ok)
    })
}

/// Stop the server and release it: it stops listening, ends every open connection (a client
/// in the middle of a download sees its body end short, never a wrong byte) and returns once
/// the server's threads are gone. NULL is ignored; stopping twice, or a pointer that is not a
/// tc_server, is detected and ignored (tc_last_error_message() says so). Safe while other
/// threads use the same cache; do not call it from a tc_progress_fn.
#[no_mangle]
pub unsafe extern "C" fn tc_server_stop(server: *mut TcServer) {
    call_void("tc_server_stop", || {
        if server.is_null() {
            return Ok(());
        }
        let server = SERVERS.remove(server)?;
        let running = server
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(running) = running {
            running.stop();
        }
        Ok(())
    })
}
