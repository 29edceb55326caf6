//! `tc_cache`: opening and closing a cache, its options, and the blocking calls.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::time::Duration;

use super::args::{optional_str, out_ptr, read_versioned, required_str, required_strs};
use super::error::{call, call_void, Failure, TcStatus};
use super::handles::Registry;
use super::memory::{give_bytes, give_string, TcBytes};
use crate::cache::{CacheOptions, ModelCache};
use crate::progress::ProgressFn;

/// A model cache over one directory. Opaque: create with tc_cache_open, destroy with
/// tc_cache_close. One tc_cache may be used by many threads at once.
pub struct TcCache {
    pub(crate) cache: ModelCache,
}

pub(crate) static CACHES: Registry<TcCache> = Registry::new("tc_cache", 1);

/// How a cache talks to the Hub and moves bytes. Always fill it with tc_options_init()
/// first, then set the fields you care about: struct_size lets a newer library read a struct
/// compiled against an older header (fields it lacks take their defaults). Strings are
/// borrowed for the tc_cache_open call only.
#[repr(C)]
pub struct TcOptions {
    /// sizeof(tc_options) as the caller compiled it; set by tc_options_init.
    pub struct_size: usize,
    /// Hub base URL, e.g. "http://127.0.0.1:8080". NULL: the HF_ENDPOINT environment
    /// variable, else the public Hub.
    pub endpoint: *const c_char,
    /// Access token. NULL: HF_TOKEN, then the token file huggingface_hub writes. "": send
    /// no token.
    pub token: *const c_char,
    /// 1: make no network request at all (serve what is cached); 0: online; -1 (default):
    /// the HF_HUB_OFFLINE environment variable decides.
    pub offline: c_int,
    /// Connections used at once for one large file. 0: default (8).
    pub connections: u32,
    /// Largest byte range one request asks for, the unit of resume. 0: default (16 MiB).
    pub range_size: u64,
    /// Files fetched at once by one request (e.g. the shards of a variant). 0: default (4).
    pub parallel_files: u32,
    /// Time to establish a connection, in milliseconds. 0: default (10 s).
    pub connect_timeout_ms: u32,
    /// A connection that delivers no byte for this long (ms) is cut and retried. 0:
    /// HF_HUB_DOWNLOAD_TIMEOUT, else 30 s.
    pub read_timeout_ms: u32,
    /// Retries of a transient failure (connection fault, 408, 429, 5xx). -1: default (5).
    pub max_retries: i32,
    /// First wait between retries in milliseconds, doubled each time. 0: default (1 s).
    pub retry_base_delay_ms: u32,
    /// User-Agent header. NULL: "tabcache/<version>".
    pub user_agent: *const c_char,
    /// Files at least this many bytes are fetched in ranges over several connections, and
    /// resume from their durable ranges after a crash; smaller ones in one stream. 0:
    /// default (32 MiB). (Added after 0.1's first fields: read only when struct_size covers it.)
    pub parallel_threshold: u64,
    /// The disk budget to set on open, in bytes of blob files (see tc_cache_set_max_size): it
    /// is kept in the cache for every process, and the last one set wins. 0 (default): leave
    /// the cache's budget as it is (tc_cache_set_max_size(cache, 0, NULL) removes it). (Added
    /// after parallel_threshold: read only when struct_size covers it.)
    pub max_size: u64,
}

impl TcOptions {
    fn defaults() -> TcOptions {
        TcOptions {
            struct_size: std::mem::size_of::<TcOptions>(),
            endpoint: std::ptr::null(),
            token: std::ptr::null(),
            offline: -1,
            connections: 0,
            range_size: 0,
            parallel_files: 0,
            connect_timeout_ms: 0,
            read_timeout_ms: 0,
            max_retries: -1,
            retry_base_delay_ms: 0,
            user_agent: std::ptr::null(),
            parallel_threshold: 0,
            max_size: 0,
        }
    }

    /// The caller's options: the fields its `struct_size` covers, defaults for the rest.
    unsafe fn read(ptr: *const TcOptions) -> Result<TcOptions, Failure> {
        read_versioned(ptr, TcOptions::defaults(), "tc_options", "tc_options_init")
    }

    /// The options as `CacheOptions`: only conversions here (C's "unset" values, checks of
    /// the C types' ranges); what a setting means is `CacheOptions`'s builders.
    unsafe fn to_cache_options(&self) -> Result<CacheOptions, Failure> {
        let ms = |value: u32| Duration::from_millis(value.into());
        let mut o = CacheOptions::default()
            .connections(self.connections as usize)
            .range_size(self.range_size)
            .parallel_threshold(self.parallel_threshold)
            .parallel_files(self.parallel_files as usize)
            .connect_timeout(ms(self.connect_timeout_ms))
            .read_timeout(ms(self.read_timeout_ms))
            .retry_base_delay(ms(self.retry_base_delay_ms));
        if let Some(endpoint) = optional_str(self.endpoint, "tc_options.endpoint")? {
            o = o.endpoint(endpoint);
        }
        if let Some(token) = optional_str(self.token, "tc_options.token")? {
            o = o.token(token);
        }
        if let Some(user_agent) = optional_str(self.user_agent, "tc_options.user_agent")? {
            o = o.user_agent(user_agent);
        }
        if self.max_size != 0 {
            o = o.max_size(self.max_size);
        }
        o = match self.offline {
            -1 => o,
            0 => o.offline(false),
            1 => o.offline(true),
            other => {
                return Err(Failure::invalid(format!(
                    "tc_options.offline is {other}; use 1 (offline), 0 (online) or -1 (from HF_HUB_OFFLINE)"
                )))
            }
        };
        o = match self.max_retries {
            -1 => o,
            n if n >= 0 => o.max_retries(n as u32),
            n => {
                return Err(Failure::invalid(format!(
                    "tc_options.max_retries is {n}; use 0 or more, or -1 for the default"
                )))
            }
        };
        Ok(o)
    }
}

/// Fill *options with the defaults (every field "unset") and set struct_size. Call it before
/// setting any field. NULL is ignored. Never fails.
#[no_mangle]
pub unsafe extern "C" fn tc_options_init(options: *mut TcOptions) {
    call_void("tc_options_init", || {
        if let Some(options) = options.as_mut() {
            *options = TcOptions::defaults();
        }
        Ok(())
    })
}

/// Open (creating if needed) the cache in the directory db_path.
///
/// - db_path: borrowed, UTF-8, required.
/// - options: borrowed for this call; NULL means all defaults (environment variables apply).
/// - out: receives a new tc_cache on success (untouched on failure); the caller owns it and
///   must release it with tc_cache_close.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT for NULL db_path or out, non-UTF-8
/// strings, an empty path, a bad option, or a catalog written by a newer tabcache;
/// TC_STATUS_IO / TC_STATUS_DISK_FULL when the directory cannot be created or read. Other
/// processes or handles having the directory open is never an error. A catalog that is
/// missing, damaged or from the sled-based releases is rebuilt from the files the cache holds
/// (tc_cache_get_stats_json reports it under "rebuilt").
#[no_mangle]
pub unsafe extern "C" fn tc_cache_open(
    db_path: *const c_char,
    options: *const TcOptions,
    out: *mut *mut TcCache,
) -> TcStatus {
    call("tc_cache_open", || {
        let path = required_str(db_path, "db_path")?;
        out_ptr(out, "out")?;
        let options = TcOptions::read(options)?.to_cache_options()?;
        let cache = ModelCache::open(path, options)?;
        *out = CACHES.insert(TcCache { cache })?;
        Ok(TcStatus::Ok)
    })
}

/// Close a cache opened by tc_cache_open. NULL is ignored. It never waits: once it returns,
/// every function refuses the handle (TC_STATUS_INVALID_ARGUMENT), and calls already running
/// with it on other threads go on to their normal end; the cache (its catalog connection and
/// open files) is released when the last of them returns. Jobs started on this cache keep it
/// open until they are freed with tc_job_free; an open tc_reader keeps only its own file
/// open. Closing a handle twice, or one that is not from tc_cache_open, is detected and
/// ignored (tc_last_error_message() says so).
#[no_mangle]
pub unsafe extern "C" fn tc_cache_close(cache: *mut TcCache) {
    call_void("tc_cache_close", || {
        if cache.is_null() {
            return Ok(());
        }
        CACHES.remove(cache).map(drop)
    })
}

/// The C progress callback: called with the work done so far and the total work of the
/// request (bytes for downloads, files listed for scans), throttled (at most about 20 calls
/// a second) and monotonic.
///
/// - total is 0 while unknown (a scan, a file whose size no listing gives); loaded still
///   grows meanwhile.
/// - Heartbeat: while the call runs, the callback is called at least every 250 ms (200 ms in
///   practice), with unchanged values when nothing moved (during a resolve, a retry wait, a
///   stalled or silent server, a wait for another process's transfer). So the callback is also
///   the cancel check: return non-zero and the call returns TC_STATUS_CANCELLED within a
///   second, whatever it was doing; partial data is kept and the next call resumes.
/// - On success the last call has loaded == total (for an unknown total, both are then what
///   was done); with a known non-zero total it is the only such call.
///
/// Return 0 to continue, non-zero to cancel. For blocking calls it runs on the thread that
/// made the call. It must not call tc_cache_close on the cache in use, and must not throw
/// (C++) or longjmp out.
pub type TcProgressFn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, loaded: u64, total: u64) -> c_int>;

/// Wrap a C callback as the Rust progress closure; `None` for a NULL callback, so that a call
/// nobody can cancel does its work on the calling thread.
fn progress_closure(
    callback: TcProgressFn,
    user_data: *mut c_void,
) -> Option<impl FnMut(u64, u64) -> bool> {
    callback.map(|f| move |loaded, total| unsafe { f(user_data, loaded, total) == 0 })
}

/// Lend the wrapped callback to a `ModelCache` call.
fn lend(report: &mut Option<impl FnMut(u64, u64) -> bool>) -> Option<ProgressFn<'_>> {
    report.as_mut().map(|f| f as ProgressFn<'_>)
}

/// Scan repo_id at revision on the Hub: list its files, classify them into quantization
/// variants and store the manifest. Offline, answers from the stored manifest if any.
///
/// - repo_id ("org/name"), revision (NULL = "main"): borrowed, UTF-8.
/// - out_json: receives the manifest as a JSON object (repo_id, task, created_at,
///   updated_at, quants {name: {status, files, total_size, downloaded_size, last_updated}},
///   revision, commit, addons). The caller owns it: free with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (NULL or malformed argument, bad
/// handle); TC_STATUS_REPO_NOT_FOUND; TC_STATUS_REVISION_NOT_FOUND; TC_STATUS_GATED_REPO;
/// TC_STATUS_UNAUTHORIZED; TC_STATUS_RATE_LIMITED; TC_STATUS_NETWORK; TC_STATUS_HTTP;
/// TC_STATUS_OFFLINE (offline and never scanned); TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_scan_repo(
    cache: *mut TcCache,
    repo_id: *const c_char,
    revision: *const c_char,
    out_json: *mut *mut c_char,
) -> TcStatus {
    tc_cache_scan_repo_with_progress(cache, repo_id, revision, None, ptr::null_mut(), out_json)
}

/// tc_cache_scan_repo with progress and cancellation: progress gets (files listed so far, 0)
/// as the pages of the listing arrive, a heartbeat while a request or retry wait is under way,
/// and (n, n) at the end (see tc_progress_fn).
///
/// - progress (may be NULL) and user_data: called on this thread.
///
/// Returns the statuses of tc_cache_scan_repo, and TC_STATUS_CANCELLED when progress returned
/// non-zero (within a second, even in the middle of a request; the stored manifest is as
/// before).
#[no_mangle]
pub unsafe extern "C" fn tc_cache_scan_repo_with_progress(
    cache: *mut TcCache,
    repo_id: *const c_char,
    revision: *const c_char,
    progress: TcProgressFn,
    user_data: *mut c_void,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_scan_repo", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let revision = optional_str(revision, "revision")?;
        out_ptr(out_json, "out_json")?;
        let mut report = progress_closure(progress, user_data);
        let manifest = handle
            .cache
            .scan_repo_with_progress(repo, revision, lend(&mut report))?;
        *out_json = give_string(&to_json(&manifest)?)?;
        Ok(TcStatus::Ok)
    })
}

/// The stored manifest of repo_id (as last scanned), without any network request.
///
/// - repo_id: borrowed, UTF-8.
/// - out_json: on TC_STATUS_OK receives the manifest JSON (same shape as
///   tc_cache_scan_repo); the caller frees it with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_NOT_CACHED when the repo was never scanned (*out_json
/// untouched: this is "no manifest", not an error); TC_STATUS_INVALID_ARGUMENT; TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_get_manifest(
    cache: *mut TcCache,
    repo_id: *const c_char,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_get_manifest", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        out_ptr(out_json, "out_json")?;
        match handle.cache.get_manifest(repo)? {
            Some(manifest) => {
                *out_json = give_string(&to_json(&manifest)?)?;
                Ok(TcStatus::Ok)
            }
            None => Err(Failure::not_cached(format!(
                "{repo} has no manifest in this cache; call tc_cache_scan_repo first"
            ))),
        }
    })
}

/// Download one file of repo_id at revision into the cache (nothing is transferred when
/// its content is already held) and give its snapshot-view path.
///
/// - repo_id, path (e.g. "config.json"), revision (NULL = "main"): borrowed, UTF-8.
/// - progress (may be NULL) and user_data: see tc_progress_fn; called on this thread.
/// - out_path: may be NULL; else receives the file's path, which the caller frees with
///   tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_CANCELLED when progress returned non-zero (the partial
/// data is kept, the next call resumes); TC_STATUS_ENTRY_NOT_FOUND; TC_STATUS_REPO_NOT_FOUND;
/// TC_STATUS_REVISION_NOT_FOUND; TC_STATUS_GATED_REPO; TC_STATUS_UNAUTHORIZED;
/// TC_STATUS_RATE_LIMITED; TC_STATUS_NETWORK; TC_STATUS_HTTP; TC_STATUS_CORRUPT (hash
/// mismatch, nothing committed); TC_STATUS_OFFLINE; TC_STATUS_IO; TC_STATUS_DISK_FULL;
/// TC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_download_file(
    cache: *mut TcCache,
    repo_id: *const c_char,
    path: *const c_char,
    revision: *const c_char,
    progress: TcProgressFn,
    user_data: *mut c_void,
    out_path: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_download_file", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let file = required_str(path, "path")?;
        let revision = optional_str(revision, "revision")?;
        let mut report = progress_closure(progress, user_data);
        let local = handle
            .cache
            .download_file(repo, file, revision, lend(&mut report))?;
        if !out_path.is_null() {
            *out_path = give_string(&path_text(&local)?)?;
        }
        Ok(TcStatus::Ok)
    })
}

/// Download several files of repo_id at revision, a few at a time (nothing is transferred
/// for contents already held), and give their snapshot-view paths.
///
/// - repo_id, revision (NULL = "main"): borrowed, UTF-8.
/// - paths: borrowed array of path_count UTF-8 repo paths (e.g. "config.json"); may be NULL
///   when path_count is 0.
/// - progress (may be NULL) and user_data: progress over all the files' bytes; called on this
///   thread.
/// - out_json: may be NULL; else receives a JSON array of the files' paths, in the order asked,
///   which the caller frees with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (a NULL or malformed path, before any
/// request); TC_STATUS_CANCELLED when progress returned non-zero (files that landed stay
/// cached, partial data is kept); otherwise the errors of tc_cache_download_file, for the
/// first file that failed (the message names it).
#[no_mangle]
pub unsafe extern "C" fn tc_cache_download_files(
    cache: *mut TcCache,
    repo_id: *const c_char,
    paths: *const *const c_char,
    path_count: usize,
    revision: *const c_char,
    progress: TcProgressFn,
    user_data: *mut c_void,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_download_files", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let files = required_strs(paths, path_count, "paths")?;
        let revision = optional_str(revision, "revision")?;
        let mut report = progress_closure(progress, user_data);
        let local = handle
            .cache
            .download_files(repo, &files, revision, lend(&mut report), None)?;
        if !out_json.is_null() {
            let texts = local
                .iter()
                .map(|p| path_text(p))
                .collect::<Result<Vec<_>, _>>()?;
            *out_json = give_string(&to_json(&texts)?)?;
        }
        Ok(TcStatus::Ok)
    })
}

/// Download every file of the variant quant (a key of the manifest's "quants", e.g.
/// "Q4_K_M") of repo_id. Scans first when the repo was never scanned or revision differs
/// from the scanned one.
///
/// - repo_id, quant, revision (NULL = the scanned revision, else "main"): borrowed, UTF-8.
/// - progress (may be NULL) and user_data: progress over all the variant's bytes; called on
///   this thread.
///
/// Returns TC_STATUS_OK; TC_STATUS_CANCELLED when progress returned non-zero;
/// TC_STATUS_ENTRY_NOT_FOUND when the repo has no such variant (the message lists the
/// variants); otherwise the errors of tc_cache_download_file.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_download_quant(
    cache: *mut TcCache,
    repo_id: *const c_char,
    quant: *const c_char,
    revision: *const c_char,
    progress: TcProgressFn,
    user_data: *mut c_void,
) -> TcStatus {
    call("tc_cache_download_quant", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let quant = required_str(quant, "quant")?;
        let revision = optional_str(revision, "revision")?;
        let mut report = progress_closure(progress, user_data);
        handle
            .cache
            .download_quant(repo, quant, revision, lend(&mut report))?;
        Ok(TcStatus::Ok)
    })
}

/// Whether path of repo_id at revision (NULL = "main") is cached. No network request.
///
/// - out: receives true or false on TC_STATUS_OK.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT; TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_has_file(
    cache: *mut TcCache,
    repo_id: *const c_char,
    path: *const c_char,
    revision: *const c_char,
    out: *mut bool,
) -> TcStatus {
    call("tc_cache_has_file", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let file = required_str(path, "path")?;
        let revision = optional_str(revision, "revision")?;
        out_ptr(out, "out")?;
        *out = handle.cache.has_file(repo, file, revision)?;
        Ok(TcStatus::Ok)
    })
}

/// The whole content of a cached file, read into memory. For large files prefer
/// tc_cache_file_path (mmap) or tc_cache_open_reader (streaming).
///
/// - out: on TC_STATUS_OK receives the bytes; the caller frees them with tc_bytes_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_NOT_CACHED when the file is not cached (*out untouched);
/// TC_STATUS_INVALID_ARGUMENT; TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_get_file(
    cache: *mut TcCache,
    repo_id: *const c_char,
    path: *const c_char,
    revision: *const c_char,
    out: *mut TcBytes,
) -> TcStatus {
    call("tc_cache_get_file", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let file = required_str(path, "path")?;
        let revision = optional_str(revision, "revision")?;
        out_ptr(out, "out")?;
        match handle.cache.get_file(repo, file, revision)? {
            Some(bytes) => {
                *out = give_bytes(bytes);
                Ok(TcStatus::Ok)
            }
            None => Err(not_cached_file(repo, file)),
        }
    })
}

/// The path of a cached file in the snapshot view (a Hugging Face hub cache layout, with the
/// repo's own file names beside each other): what a runtime mmaps, and where split GGUF
/// shards and ONNX external data find their siblings. The file is read-only.
///
/// - out_path: on TC_STATUS_OK receives the path; the caller frees it with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_NOT_CACHED when the file is not cached;
/// TC_STATUS_INVALID_ARGUMENT; TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_file_path(
    cache: *mut TcCache,
    repo_id: *const c_char,
    path: *const c_char,
    revision: *const c_char,
    out_path: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_file_path", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let file = required_str(path, "path")?;
        let revision = optional_str(revision, "revision")?;
        out_ptr(out_path, "out_path")?;
        match handle.cache.file_path(repo, file, revision)? {
            Some(local) => {
                *out_path = give_string(&path_text(&local)?)?;
                Ok(TcStatus::Ok)
            }
            None => Err(not_cached_file(repo, file)),
        }
    })
}

/// Forget repo_id (every revision) and delete the files no other repo shares.
///
/// - out_freed_bytes: may be NULL; else receives the bytes freed on disk.
///
/// Returns TC_STATUS_OK (also when the repo was not cached: 0 bytes freed);
/// TC_STATUS_INVALID_ARGUMENT; TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_delete_model(
    cache: *mut TcCache,
    repo_id: *const c_char,
    out_freed_bytes: *mut u64,
) -> TcStatus {
    call("tc_cache_delete_model", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let freed = handle.cache.delete_model(repo)?;
        if !out_freed_bytes.is_null() {
            *out_freed_bytes = freed;
        }
        Ok(TcStatus::Ok)
    })
}

/// Cache counters, filled by tc_cache_get_stats. Further counters appear in
/// tc_cache_get_stats_json, never here, so this struct keeps its size.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TcStats {
    /// Repositories the cache knows.
    pub total_repos: u64,
    /// Bytes of all cached files as the repos list them (a shared file counts per repo).
    pub total_size: u64,
    /// Cached files over all repos and revisions.
    pub total_files: u64,
    /// Bytes on disk: each distinct content once.
    pub disk_bytes: u64,
    /// total_size - disk_bytes: what storing shared content once saved.
    pub dedup_saved_bytes: u64,
}

/// The cache's counters.
///
/// - out: on TC_STATUS_OK receives the counters.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT; TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_get_stats(cache: *mut TcCache, out: *mut TcStats) -> TcStatus {
    call("tc_cache_get_stats", || {
        let handle = CACHES.get(cache)?;
        out_ptr(out, "out")?;
        let s = handle.cache.stats()?;
        *out = TcStats {
            total_repos: s.total_repos,
            total_size: s.total_size,
            total_files: s.total_files,
            disk_bytes: s.disk_bytes,
            dedup_saved_bytes: s.dedup_saved_bytes,
        };
        Ok(TcStatus::Ok)
    })
}

/// The cache's counters as a JSON object (the fields of tc_stats, and any added later).
///
/// - out_json: on TC_STATUS_OK receives the JSON; the caller frees it with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT; TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_get_stats_json(
    cache: *mut TcCache,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_get_stats_json", || {
        let handle = CACHES.get(cache)?;
        out_ptr(out_json, "out_json")?;
        let stats = handle.cache.stats()?;
        *out_json = give_string(&to_json(&stats)?)?;
        Ok(TcStatus::Ok)
    })
}

/// The notes kept since the last call, oldest first, as a JSON array of strings, and forget
/// them: things worth telling a user that are not failures (a Xet-backed file fetched
/// through the Hub's bridge, and why). The cache keeps the latest 64.
///
/// - out_json: on TC_STATUS_OK receives the JSON; the caller frees it with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (NULL out_json, bad handle). Callable
/// from any thread: each note goes to the one call that takes it.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_take_notes_json(
    cache: *mut TcCache,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_take_notes_json", || {
        let handle = CACHES.get(cache)?;
        out_ptr(out_json, "out_json")?;
        *out_json = give_string(&to_json(&handle.cache.take_notes())?)?;
        Ok(TcStatus::Ok)
    })
}

/// Adopt the files an existing huggingface_hub cache already holds, so that downloading them
/// transfers nothing: each models--org--name/snapshots/<commit>/<path> whose bytes match the
/// hash its blob is named by is hard-linked (or copied) into this cache and recorded for that
/// repo and commit, with the revisions of its refs/ folder. The huggingface_hub cache is only
/// read. Makes no network request; a file that fails its hash check is skipped and listed.
/// Callable from any thread.
///
/// - hf_cache_dir: borrowed, UTF-8; the directory holding the models--* folders. NULL: the
///   HF_HUB_CACHE environment variable, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub,
///   else ~/.cache/huggingface/hub (as huggingface_hub finds it).
/// - out_json: on TC_STATUS_OK receives the report as a JSON object (hf_cache, repos,
///   files_imported, bytes_imported, files_already_cached, blobs_linked, blobs_copied,
///   refs_imported, bytes_hashed, skipped [{path, reason}]). The caller owns it: free with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (NULL cache or out_json, bad handle,
/// non-UTF-8 hf_cache_dir, or NULL when no default directory can be found);
/// TC_STATUS_ENTRY_NOT_FOUND when hf_cache_dir is not a directory (the message names it);
/// TC_STATUS_IO; TC_STATUS_DISK_FULL.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_import_hf(
    cache: *mut TcCache,
    hf_cache_dir: *const c_char,
    out_json: *mut *mut c_char,
) -> TcStatus {
    tc_cache_import_hf_with_progress(cache, hf_cache_dir, None, ptr::null_mut(), out_json)
}

/// tc_cache_import_hf with progress and cancellation: progress gets (bytes hashed so far, 0)
/// while files are checked, a heartbeat meanwhile, and (n, n) at the end (see
/// tc_progress_fn).
///
/// - progress (may be NULL) and user_data: called on this thread.
///
/// Returns the statuses of tc_cache_import_hf, and TC_STATUS_CANCELLED when progress returned
/// non-zero (within a second, even in the middle of hashing a large file; what was imported
/// before stays imported, and the next import skips it).
#[no_mangle]
pub unsafe extern "C" fn tc_cache_import_hf_with_progress(
    cache: *mut TcCache,
    hf_cache_dir: *const c_char,
    progress: TcProgressFn,
    user_data: *mut c_void,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_import_hf", || {
        let handle = CACHES.get(cache)?;
        let dir = optional_str(hf_cache_dir, "hf_cache_dir")?;
        out_ptr(out_json, "out_json")?;
        let mut report = progress_closure(progress, user_data);
        let imported = handle
            .cache
            .import_hf_cache_with_progress(dir.map(std::path::Path::new), lend(&mut report))?;
        *out_json = give_string(&to_json(&imported)?)?;
        Ok(TcStatus::Ok)
    })
}

pub(crate) fn not_cached_file(repo: &str, file: &str) -> Failure {
    Failure::not_cached(format!(
        "{file} of {repo} is not cached; download it first with tc_cache_download_file"
    ))
}

pub(super) fn to_json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure {
        status: TcStatus::Internal,
        message: format!("could not encode the result as JSON ({e}); please report this bug"),
    })
}

fn path_text(path: &std::path::Path) -> Result<String, Failure> {
    path.to_str().map(str::to_string).ok_or_else(|| Failure {
        status: TcStatus::Io,
        message: format!(
            "the cache path {} is not valid UTF-8 and cannot be returned to C; use a UTF-8 cache directory",
            path.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_an_older_header_take_defaults_for_the_fields_it_lacks() {
        let mut caller = TcOptions::defaults();
        caller.endpoint = c"http://127.0.0.1:9".as_ptr();
        caller.connections = 3;
        // A caller compiled when tc_options ended after `endpoint`.
        caller.struct_size = std::mem::offset_of!(TcOptions, token);
        let read = unsafe { TcOptions::read(&caller) }.unwrap();
        assert_eq!(read.endpoint, caller.endpoint);
        assert_eq!(read.connections, 0);
        assert_eq!(read.max_retries, -1);

        // A caller compiled when tc_options ended with parallel_threshold: what lies beyond
        // its struct (here 5) is not read as a budget.
        let mut caller = TcOptions::defaults();
        caller.parallel_threshold = 4 << 20;
        caller.max_size = 5;
        caller.struct_size = std::mem::offset_of!(TcOptions, max_size);
        let read = unsafe { TcOptions::read(&caller) }.unwrap();
        assert_eq!(read.parallel_threshold, 4 << 20);
        assert_eq!(read.max_size, 0);
        assert_eq!(unsafe { read.to_cache_options() }.unwrap().max_size, None);
    }

    #[test]
    fn options_map_onto_cache_options() {
        let mut caller = TcOptions::defaults();
        caller.offline = 1;
        caller.connections = 2;
        caller.range_size = 1 << 20;
        caller.parallel_threshold = 4 << 20;
        caller.read_timeout_ms = 1500;
        caller.max_retries = 0;
        caller.max_size = 50_000_000_000;
        let o = unsafe { caller.to_cache_options() }.unwrap();
        assert_eq!(o.max_size, Some(50_000_000_000));
        assert_eq!(o.transfer.parallel_threshold, 4 << 20);
        assert_eq!(o.hub.offline, Some(true));
        assert_eq!(o.transfer.connections, 2);
        assert_eq!(o.transfer.range_size, 1 << 20);
        assert_eq!(o.hub.read_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(o.transfer.stall_timeout, Duration::from_millis(1500));
        assert_eq!(o.hub.max_retries, Some(0));
        assert_eq!(o.transfer.max_attempts, 1);
    }
}
