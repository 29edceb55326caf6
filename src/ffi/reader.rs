//! `tc_reader`: streaming reads of a cached file.

use std::ffi::c_char;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

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

static READERS: Registry<TcReader> = Registry::new("tc_reader", 3);

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
        *out = READERS.insert(TcReader { file: opened, size })?;
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

/// Move the reader's position, as lseek/fseek do, and give the new position.
///
/// - whence: 0 = from the start of the file (offset must be >= 0), 1 = from the current
///   position, 2 = from the end of the file. Positions past the end are allowed (reads there
///   return 0 bytes); a position before the start is an error.
/// - out_position: may be NULL; else receives the new position from the start of the file.
///
/// Returns TC_STATUS_OK; TC_STATUS_INVALID_ARGUMENT (bad handle, unknown whence, or a
/// position before the start; the position is then unchanged); TC_STATUS_IO.
#[no_mangle]
pub unsafe extern "C" fn tc_reader_seek(
    reader: *mut TcReader,
    offset: i64,
    whence: i32,
    out_position: *mut u64,
) -> TcStatus {
    call("tc_reader_seek", || {
        let handle = READERS.get(reader)?;
        let target = match whence {
            0 => SeekFrom::Start(u64::try_from(offset).map_err(|_| {
                Failure::invalid(format!(
                    "offset {offset} is before the start of the file; pass an offset >= 0 with whence 0"
                ))
            })?),
            1 => SeekFrom::Current(offset),
            2 => SeekFrom::End(offset),
            other => {
                return Err(Failure::invalid(format!(
                    "whence {other} is not 0 (start), 1 (current) or 2 (end)"
                )))
            }
        };
        let position = (&handle.file).seek(target).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                Failure::invalid(format!(
                    "seeking by {offset} (whence {whence}) would move before the start of the file"
                ))
            } else {
                Failure {
                    status: TcStatus::Io,
                    message: format!("seeking in a cached file failed: {e}"),
                }
            }
        })?;
        if !out_position.is_null() {
            *out_position = position;
        }
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
