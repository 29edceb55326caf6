//! `tc_reader`: streaming reads of a cached file.

use std::ffi::c_char;
use std::fs::File;
use std::io::Read;

use super::args::{optional_str, out_ptr, required_str};
use super::cache::{not_cached_file, TcCache, CACHES};
use super::error::{call, call_void, Failure, TcStatus};
use super::handles::Registry;

/// A read-only stream over one cached file. Opaque: open with tc_cache_open_reader, read
/// with tc_reader_read, close with tc_reader_close. Reads from several threads at once are
/// safe but share one position.
pub struct TcReader {
    file: File,
    size: u64,
}

static READERS: Registry<TcReader> = Registry::new("tc_reader");

/// Open a cached file for streaming.
///
/// - repo_id, path, revision (NULL = "main"): borrowed, UTF-8.
/// - out: on TC_STATUS_OK receives the reader; the caller closes it with tc_reader_close.
///   It stays valid after tc_cache_close.
///
/// Returns TC_STATUS_OK; TC_STATUS_NOT_CACHED when the file is not cached;
/// TC_STATUS_INVALID_ARGUMENT; TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_cache_open_reader(
    cache: *mut TcCache,
    repo_id: *const c_char,
    path: *const c_char,
    revision: *const c_char,
    out: *mut *mut TcReader,
) -> TcStatus {
    call("tc_cache_open_reader", || {
        let handle = CACHES.get(cache)?;
        let repo = required_str(repo_id, "repo_id")?;
        let file = required_str(path, "path")?;
        let revision = optional_str(revision, "revision")?;
        out_ptr(out, "out")?;
        let Some(opened) = handle.cache.open_file(repo, file, revision)? else {
            return Err(not_cached_file(repo, file));
        };
        let size = opened.metadata().map(|m| m.len()).map_err(|e| Failure {
            status: TcStatus::Io,
            message: format!("could not read the size of {file} of {repo}: {e}"),
        })?;
        *out = READERS.insert(TcReader { file: opened, size });
        Ok(TcStatus::Ok)
    })
}

/// Read up to len bytes into buf.
///
/// - buf: caller-owned, at least len bytes; may be NULL only when len is 0.
/// - out_read: required; receives the number of bytes read, 0 at the end of the file.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT; TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_reader_read(
    reader: *mut TcReader,
    buf: *mut u8,
    len: usize,
    out_read: *mut usize,
) -> TcStatus {
    call("tc_reader_read", || {
        let handle = READERS.get(reader)?;
        out_ptr(out_read, "out_read")?;
        if len == 0 {
            *out_read = 0;
            return Ok(TcStatus::Ok);
        }
        out_ptr(buf, "buf")?;
        let target = std::slice::from_raw_parts_mut(buf, len);
        let n = loop {
            match (&handle.file).read(target) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        }
        .map_err(|e| Failure {
            status: TcStatus::Io,
            message: format!("reading a cached file failed: {e}"),
        })?;
        *out_read = n;
        Ok(TcStatus::Ok)
    })
}

/// The size in bytes of the reader's file.
///
/// Returns TC_STATUS_OK (out_size written) or TC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn tc_reader_size(reader: *const TcReader, out_size: *mut u64) -> TcStatus {
    call("tc_reader_size", || {
        let handle = READERS.get(reader)?;
        out_ptr(out_size, "out_size")?;
        *out_size = handle.size;
        Ok(TcStatus::Ok)
    })
}

/// Close a reader. NULL is ignored; a reader already closed, or a pointer that is not a
/// tc_reader, is detected and ignored (tc_last_error_message() says so).
#[no_mangle]
pub unsafe extern "C" fn tc_reader_close(reader: *mut TcReader) {
    call_void("tc_reader_close", || {
        if reader.is_null() {
            return Ok(());
        }
        READERS.remove(reader).map(drop)
    })
}
