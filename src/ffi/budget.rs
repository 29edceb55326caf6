//! The disk budget in C: the size limit every process shares, pins, `tc_cache_prune`, and the
//! size parser the command line uses (so bindings read "50GB" by the same rules).

use std::ffi::{c_char, c_int};
use std::time::Duration;

use super::args::{flag, optional_str, out_ptr, read_versioned, required_str};
use super::cache::{to_json, TcCache, CACHES};
use super::error::{call, call_void, Failure, TcStatus};
use super::memory::give_string;
use crate::maintenance::PruneOptions;

/// The cache's disk budget: the most bytes its blob files (each distinct content once, what
/// tc_stats.disk_bytes counts) may take. It is kept in the cache, so every process and handle
/// using the directory (the command line too) honours the one set last.
///
/// - out_max_size: on TC_STATUS_OK receives the budget in bytes, 0 when none is set.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (NULL out_max_size, bad handle);
/// TC_STATUS_IO when the catalog cannot be read. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_max_size(
    cache: *mut TcCache,
    out_max_size: *mut u64,
) -> TcStatus {
    call("tc_cache_max_size", || {
        let handle = CACHES.get(cache)?;
        out_ptr(out_max_size, "out_max_size")?;
        *out_max_size = handle.cache.max_size()?.unwrap_or(0);
        Ok(TcStatus::Ok)
    })
}

/// Set the disk budget for every process using this cache (the last one set wins), and evict
/// least recently used content down to it now: whole variants, never a pinned repo or
/// variant, a file being downloaded, or a file another thread or process has open. From then
/// on, each download that lands evicts down to the budget, and one that cannot fit even after
/// evicting everything evictable fails with TC_STATUS_DISK_FULL before any byte is
/// transferred.
///
/// - max_size: the budget in bytes of blob files; 0 removes the budget.
/// - out_json: may be NULL; else on TC_STATUS_OK receives the eviction report, which the
///   caller frees with tc_string_free: {"evicted": [{"repo_id", "commit", "quant" (null for a
///   single file), "files": [paths], "bytes_freed", "last_used_ms"}], least recently used
///   first, "bytes_freed", "disk_bytes" (after), "dry_run": false}.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (bad handle); TC_STATUS_IO when the
/// catalog cannot be written or a file cannot be removed (the budget is set; what was evicted
/// before the failure stays evicted). Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_set_max_size(
    cache: *mut TcCache,
    max_size: u64,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_set_max_size", || {
        let handle = CACHES.get(cache)?;
        let report = handle
            .cache
            .set_max_size((max_size != 0).then_some(max_size))?;
        if !out_json.is_null() {
            *out_json = give_string(&to_json(&report)?)?;
        }
        Ok(TcStatus::Ok)
    })
}

/// Keep repo_id, or only its variant quant_key, from eviction by the budget and by
/// tc_cache_prune (tc_cache_delete_model still deletes it; the pin stays). The pin is kept in
/// the cache for every process; the repo need not be cached or scanned yet.
///
/// - repo_id ("org/name"): borrowed, UTF-8, required.
/// - quant_key: borrowed, UTF-8; a key of the manifest's "quants" (e.g. "Q4_K_M"); NULL pins
///   the whole repo.
/// - out_changed: may be NULL; else on TC_STATUS_OK receives true when the pin is new, false
///   when it was pinned already.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (NULL or malformed repo_id, an empty
/// quant_key, non-UTF-8 strings, bad handle); TC_STATUS_IO. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_pin(
    cache: *mut TcCache,
    repo_id: *const c_char,
    quant_key: *const c_char,
    out_changed: *mut bool,
) -> TcStatus {
    set_pin("tc_cache_pin", cache, repo_id, quant_key, out_changed, true)
}

/// Undo tc_cache_pin for repo_id (quant_key NULL) or its variant quant_key: a pin of the whole
/// repo and a pin of one variant are separate, each undone by its own unpin.
///
/// - out_changed: may be NULL; else on TC_STATUS_OK receives true when a pin was removed,
///   false when there was none.
///
/// Returns the statuses of tc_cache_pin. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_unpin(
    cache: *mut TcCache,
    repo_id: *const c_char,
    quant_key: *const c_char,
    out_changed: *mut bool,
) -> TcStatus {
    set_pin(
        "tc_cache_unpin",
        cache,
        repo_id,
        quant_key,
        out_changed,
        false,
    )
}

unsafe fn set_pin(
    name: &str,
    cache: *mut TcCache,
    repo_id: *const c_char,
    quant_key: *const c_char,
    out_changed: *mut bool,
    pinned: bool,
) -> TcStatus {
    call(name, || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let quant = optional_str(quant_key, "quant_key")?;
        let changed = if pinned {
            handle.cache.pin(repo, quant)?
        } else {
            handle.cache.unpin(repo, quant)?
        };
        if !out_changed.is_null() {
            *out_changed = changed;
        }
        Ok(TcStatus::Ok)
    })
}

/// The pins, by repo, as a JSON array: [{"repo_id", "quant" (null: the whole repo)}].
///
/// - out_json: on TC_STATUS_OK receives the JSON; the caller frees it with tc_string_free.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (NULL out_json, bad handle);
/// TC_STATUS_IO. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_pins_json(
    cache: *mut TcCache,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_pins_json", || {
        let handle = CACHES.get(cache)?;
        out_ptr(out_json, "out_json")?;
        *out_json = give_string(&to_json(&handle.cache.pins()?)?)?;
        Ok(TcStatus::Ok)
    })
}

/// What tc_cache_prune evicts. Fill it with tc_prune_options_init() first, then set the
/// fields you care about (struct_size: as for tc_options).
#[repr(C)]
pub struct TcPruneOptions {
    /// sizeof(tc_prune_options) as the caller compiled it; set by tc_prune_options_init.
    pub struct_size: usize,
    /// Evict until the blob files take at most this many bytes, this once (the budget stays
    /// as it is). 0 (default): the budget, if one is set.
    pub max_size: u64,
    /// Also evict everything last used longer ago than this many seconds. 0 (default): no age
    /// limit.
    pub older_than_seconds: u64,
    /// 1: remove nothing, only report what would go (exactly what a prune with the same
    /// options run next removes, unless the cache changes in between). 0 (default): evict.
    pub dry_run: c_int,
}

impl TcPruneOptions {
    fn defaults() -> TcPruneOptions {
        TcPruneOptions {
            struct_size: std::mem::size_of::<TcPruneOptions>(),
            max_size: 0,
            older_than_seconds: 0,
            dry_run: 0,
        }
    }

    /// The caller's options as `PruneOptions`: only C's "unset" values and flag checks here.
    unsafe fn read(ptr: *const TcPruneOptions) -> Result<PruneOptions, Failure> {
        let o = read_versioned(
            ptr,
            TcPruneOptions::defaults(),
            "tc_prune_options",
            "tc_prune_options_init",
        )?;
        Ok(PruneOptions {
            max_size: (o.max_size != 0).then_some(o.max_size),
            older_than: (o.older_than_seconds != 0)
                .then(|| Duration::from_secs(o.older_than_seconds)),
            dry_run: flag(o.dry_run, "tc_prune_options.dry_run")?,
        })
    }
}

/// Fill *options with the defaults and set struct_size. Call it before setting any field.
/// NULL is ignored. Never fails.
#[no_mangle]
pub unsafe extern "C" fn tc_prune_options_init(options: *mut TcPruneOptions) {
    call_void("tc_prune_options_init", || {
        if let Some(options) = options.as_mut() {
            *options = TcPruneOptions::defaults();
        }
        Ok(())
    })
}

/// Evict least recently used content now (whole variants; never a pinned repo or variant, a
/// file being downloaded, or one another thread or process has open): down to
/// options->max_size (else the budget), and everything last used more than
/// options->older_than_seconds ago. With dry_run, nothing is removed and the report lists
/// exactly what would be.
///
/// - options: borrowed for this call; NULL means the defaults (down to the budget).
/// - out_json: on TC_STATUS_OK receives the report (the shape tc_cache_set_max_size gives,
///   with "dry_run" true for a dry run, when "disk_bytes" is what would remain); the caller
///   frees it with tc_string_free.
///
/// Returns TC_STATUS_OK (also when nothing had to go: "evicted" is []);
/// TC_STATUS_INVALID_ARGUMENT (NULL out_json, bad handle, a bad option, or nothing to prune to:
/// no max_size, no older_than_seconds and no budget set); TC_STATUS_IO when the catalog
/// cannot be written or a file cannot be removed. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_prune(
    cache: *mut TcCache,
    options: *const TcPruneOptions,
    out_json: *mut *mut c_char,
) -> TcStatus {
    call("tc_cache_prune", || {
        let handle = CACHES.get(cache)?;
        let options = TcPruneOptions::read(options)?;
        out_ptr(out_json, "out_json")?;
        let report = handle.cache.prune(options)?;
        *out_json = give_string(&to_json(&report)?)?;
        Ok(TcStatus::Ok)
    })
}

/// A size as people write it, in bytes, by the rules of the command line's --max-size:
/// "50GB" (10^9 each), "20GiB" (2^30 each), "512MB", "1.5 TB", "1000" (bytes); units are
/// case-insensitive, a bare K/M/G/T is decimal like KB, spaces around are ignored.
///
/// - text: borrowed, UTF-8, required.
/// - out_bytes: on TC_STATUS_OK receives the size.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT for a NULL argument or text that is not a
/// size (negative, no number, an unknown unit; the message shows the forms accepted). Never
/// touches a cache; callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_parse_size(text: *const c_char, out_bytes: *mut u64) -> TcStatus {
    call("tc_parse_size", || {
        let text = required_str(text, "text")?;
        out_ptr(out_bytes, "out_bytes")?;
        *out_bytes = crate::parse_byte_size(text)?;
        Ok(TcStatus::Ok)
    })
}
