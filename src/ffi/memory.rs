//! Strings and buffers handed to C, and their free functions. Each one handed out is
//! remembered (disguised address -> length, see [`disguise`]), so freeing twice or freeing a
//! pointer that is not ours is refused instead of corrupting the heap, while one the caller
//! never freed is still a leak that valgrind reports.

use std::collections::BTreeMap;
use std::ffi::{c_char, CString};
use std::sync::Mutex;

use super::error::{call_void, Failure};
use super::handles::disguise;

/// Handed-out allocations: address -> byte length (0 for strings).
static HANDED_OUT: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

/// Inside a fork-quiet section, so a forked child never inherits the map locked.
fn handed_out() -> crate::fork::QuietGuard<'static, BTreeMap<usize, usize>> {
    crate::fork::lock(&HANDED_OUT)
}

/// Turn `text` into a C string the caller owns (free with tc_string_free).
pub(crate) fn give_string(text: &str) -> Result<*mut c_char, Failure> {
    let owned = CString::new(text).map_err(|_| Failure {
        status: super::TcStatus::Internal,
        message: "a result contains a NUL byte and cannot be returned as a C string; please report this bug".into(),
    })?;
    let ptr = owned.into_raw();
    handed_out().insert(disguise(ptr as usize), 0);
    Ok(ptr)
}

/// A buffer of bytes owned by the library, returned by tc_cache_get_file. Free it with
/// tc_bytes_free. An empty buffer has data == NULL and len == 0.
#[repr(C)]
pub struct TcBytes {
    /// The bytes; NULL when len is 0.
    pub data: *mut u8,
    /// The number of bytes at data.
    pub len: usize,
}

pub(crate) fn give_bytes(bytes: Vec<u8>) -> TcBytes {
    if bytes.is_empty() {
        return TcBytes {
            data: std::ptr::null_mut(),
            len: 0,
        };
    }
    let len = bytes.len();
    let data = Box::into_raw(bytes.into_boxed_slice()) as *mut u8;
    handed_out().insert(disguise(data as usize), len);
    TcBytes { data, len }
}

/// Free a string returned by tabcache (JSON results, paths). NULL is ignored. A pointer that
/// tabcache did not hand out, or one already freed, is ignored too (nothing is freed) and
/// tc_last_error_message() says so. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_string_free(string: *mut c_char) {
    call_void("tc_string_free", || {
        if string.is_null() {
            return Ok(());
        }
        match handed_out().remove(&disguise(string as usize)) {
            Some(0) => {
                drop(CString::from_raw(string));
                Ok(())
            }
            Some(len) => {
                // A buffer, not a string: put it back rather than free it the wrong way.
                handed_out().insert(disguise(string as usize), len);
                Err(Failure::invalid("tc_string_free was given a tc_bytes buffer; free it with tc_bytes_free"))
            }
            None => Err(Failure::invalid(
                "tc_string_free was given a pointer that is not a live string from tabcache (already freed?)",
            )),
        }
    })
}

/// Free the buffer of a tc_bytes returned by tabcache and reset *bytes to {NULL, 0}, so a
/// second call is harmless. NULL, or a tc_bytes whose data is NULL, is ignored. A buffer that
/// tabcache did not hand out, or one already freed, is not freed and tc_last_error_message()
/// says so. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_bytes_free(bytes: *mut TcBytes) {
    call_void("tc_bytes_free", || {
        let Some(bytes) = bytes.as_mut() else {
            return Ok(());
        };
        if bytes.data.is_null() {
            return Ok(());
        }
        let mut live = handed_out();
        match live.get(&disguise(bytes.data as usize)).copied() {
            Some(len) if len > 0 => {
                live.remove(&disguise(bytes.data as usize));
                drop(live);
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(bytes.data, len)));
                bytes.data = std::ptr::null_mut();
                bytes.len = 0;
                Ok(())
            }
            Some(_) => Err(Failure::invalid("tc_bytes_free was given a string; free it with tc_string_free")),
            None => Err(Failure::invalid(
                "tc_bytes_free was given a buffer that is not a live buffer from tabcache (already freed?)",
            )),
        }
    })
}
