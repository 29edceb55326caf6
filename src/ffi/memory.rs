//! Strings and buffers handed to C, and their free functions. Each one handed out is
//! remembered (by disguised address, see [`disguise`]), so freeing twice or freeing a pointer
//! that is not ours is refused instead of corrupting the heap, while one the caller never
//! freed is still a leak that valgrind reports.
//!
//! A freed pointer must stay refused even after the allocator reuses its memory for the next
//! string, which it does at once. So each allocation has [`SLACK`] spare bytes in front and
//! the data starts at an offset into them (the pointer's generation, in effect) chosen so that
//! the pointer is none of the last [`RETIRED`] pointers freed: a stale or double free of one
//! of those finds it retired and is refused. `SLACK > RETIRED` guarantees a free offset on
//! every allocation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::c_char;
use std::sync::Mutex;

use super::error::{call_void, Failure};
use super::handles::disguise;

/// Freed pointers that are never handed out again while remembered.
const RETIRED: usize = 1023;
/// Spare bytes in front of each allocation, one possible start per byte.
const SLACK: usize = RETIRED + 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Bytes,
}

/// One handed-out allocation: a `Vec<u8>` taken apart, its data some bytes in.
#[derive(Clone, Copy)]
struct Given {
    kind: Kind,
    /// The disguised address of the Vec's buffer.
    base: usize,
    /// The Vec's length (offset + data) and capacity, to rebuild it for freeing.
    len: usize,
    capacity: usize,
}

struct HandedOut {
    /// Disguised pointer handed to C -> its allocation.
    live: BTreeMap<usize, Given>,
    /// Disguised pointers freed lately, oldest first, and the same as a set.
    retired: VecDeque<usize>,
    retired_set: BTreeSet<usize>,
}

static HANDED_OUT: Mutex<HandedOut> = Mutex::new(HandedOut {
    live: BTreeMap::new(),
    retired: VecDeque::new(),
    retired_set: BTreeSet::new(),
});

/// Inside a fork-quiet section, so a forked child never inherits the map locked.
fn handed_out() -> crate::fork::QuietGuard<'static, HandedOut> {
    crate::fork::lock(&HANDED_OUT)
}

/// Hand `data` to C with `SLACK` bytes of room in front of it, at an offset whose pointer was
/// not freed lately; returns the pointer C gets.
fn give(kind: Kind, mut data: Vec<u8>) -> *mut u8 {
    let data_len = data.len();
    data.reserve_exact(SLACK);
    let mut handed = handed_out();
    let base = data.as_mut_ptr().expose_provenance();
    // At most RETIRED of the SLACK candidates are retired, so one is always free.
    let offset = (0..SLACK)
        .find(|o| !handed.retired_set.contains(&disguise(base + o)))
        .expect("SLACK exceeds RETIRED");
    data.resize(data_len + offset, 0);
    data.copy_within(0..data_len, offset);
    let mut data = std::mem::ManuallyDrop::new(data);
    debug_assert_eq!(
        data.as_mut_ptr().addr(),
        base,
        "no reallocation after reserve"
    );
    let given = Given {
        kind,
        base: disguise(base),
        len: data.len(),
        capacity: data.capacity(),
    };
    handed.live.insert(disguise(base + offset), given);
    // SAFETY: offset <= data_len + offset = len, within the allocation.
    unsafe { data.as_mut_ptr().add(offset) }
}

/// Take back what `pointer` names, if it is a live allocation of `kind`. The error says what
/// is wrong with the pointer.
fn take_back(pointer: *const u8, kind: Kind, function: &str) -> Result<(), Failure> {
    let key = disguise(pointer.addr());
    let mut handed = handed_out();
    let given = match handed.live.get(&key) {
        Some(given) if given.kind == kind => *given,
        Some(_) => {
            return Err(Failure::invalid(match kind {
                Kind::String => "tc_string_free was given a tc_bytes buffer; free it with tc_bytes_free",
                Kind::Bytes => "tc_bytes_free was given a string; free it with tc_string_free",
            }))
        }
        None if handed.retired_set.contains(&key) => {
            return Err(Failure::invalid(format!(
                "{function} was given a pointer that was already freed; free each string or buffer from tabcache once"
            )))
        }
        None => {
            return Err(Failure::invalid(format!(
                "{function} was given a pointer that is not a live {} from tabcache (already freed?)",
                match kind {
                    Kind::String => "string",
                    Kind::Bytes => "buffer",
                }
            )))
        }
    };
    handed.live.remove(&key);
    handed.retired.push_back(key);
    handed.retired_set.insert(key);
    while handed.retired.len() > RETIRED {
        if let Some(oldest) = handed.retired.pop_front() {
            handed.retired_set.remove(&oldest);
        }
    }
    drop(handed);
    let base: *mut u8 = std::ptr::with_exposed_provenance_mut(disguise(given.base));
    // SAFETY: base, len and capacity are those of the Vec that `give` took apart, handed back
    // once (the entry is gone from the live map).
    drop(unsafe { Vec::from_raw_parts(base, given.len, given.capacity) });
    Ok(())
}

/// Turn `text` into a C string the caller owns (free with tc_string_free).
pub(crate) fn give_string(text: &str) -> Result<*mut c_char, Failure> {
    if text.as_bytes().contains(&0) {
        return Err(Failure {
            status: super::TcStatus::Internal,
            message: "a result contains a NUL byte and cannot be returned as a C string; please report this bug".into(),
        });
    }
    let mut bytes = Vec::with_capacity(text.len() + 1 + SLACK);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    Ok(give(Kind::String, bytes).cast())
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
    TcBytes {
        data: give(Kind::Bytes, bytes),
        len,
    }
}

/// Free a string returned by tabcache (JSON results, paths). NULL is ignored. A pointer that
/// tabcache did not hand out, or one already freed, is ignored too (nothing is freed) and
/// tc_last_error_message() says so; a string freed lately stays refused even when its memory
/// already holds a newer string. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_string_free(string: *mut c_char) {
    call_void("tc_string_free", || {
        if string.is_null() {
            return Ok(());
        }
        take_back(string.cast(), Kind::String, "tc_string_free")
    })
}

/// Free the buffer of a tc_bytes returned by tabcache and reset *bytes to {NULL, 0}, so a
/// second call is harmless. NULL, or a tc_bytes whose data is NULL, is ignored. A buffer that
/// tabcache did not hand out, or one already freed (a copy of the tc_bytes freed before), is
/// not freed and tc_last_error_message() says so, also when its memory already holds a newer
/// buffer. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn tc_bytes_free(bytes: *mut TcBytes) {
    call_void("tc_bytes_free", || {
        let Some(bytes) = bytes.as_mut() else {
            return Ok(());
        };
        if bytes.data.is_null() {
            return Ok(());
        }
        take_back(bytes.data, Kind::Bytes, "tc_bytes_free")?;
        bytes.data = std::ptr::null_mut();
        bytes.len = 0;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retired window is the process's: tests that free must not evict each other's.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn a_freed_string_stays_refused_when_its_memory_holds_the_next() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let stale = give_string("first").unwrap();
        let stale_addr = stale.addr();
        take_back(stale.cast(), Kind::String, "test").unwrap();
        // The same length again: the allocator reuses the block, the pointer differs.
        let mut newer = Vec::new();
        for _ in 0..2000 {
            let next = give_string("other").unwrap();
            assert_ne!(
                next.addr(),
                stale_addr,
                "a retired pointer was handed out again"
            );
            newer.push(next);
        }
        let err = take_back(stale.cast(), Kind::String, "test").unwrap_err();
        assert!(err.message.contains("already freed"), "{}", err.message);
        for next in newer {
            // SAFETY: a live string handed out above.
            assert_eq!(
                unsafe { std::ffi::CStr::from_ptr(next) }.to_str(),
                Ok("other")
            );
            take_back(next.cast(), Kind::String, "test").unwrap();
        }
    }

    #[test]
    fn a_hot_block_never_runs_out_of_offsets() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        // Free and allocate in a loop far longer than RETIRED: each pointer differs from
        // every one retired before it.
        let mut retired = VecDeque::new();
        for i in 0..3 * RETIRED {
            let bytes = give_bytes(vec![i as u8; 100]);
            assert!(!retired.contains(&bytes.data.addr()), "round {i}");
            // SAFETY: a live buffer of 100 bytes.
            assert_eq!(unsafe { *bytes.data.add(99) }, i as u8);
            take_back(bytes.data, Kind::Bytes, "test").unwrap();
            retired.push_back(bytes.data.addr());
            if retired.len() > RETIRED / 2 {
                retired.pop_front();
            }
        }
    }

    #[test]
    fn kinds_are_not_mixed() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let string = give_string("s").unwrap();
        let err = take_back(string.cast(), Kind::Bytes, "tc_bytes_free").unwrap_err();
        assert!(err.message.contains("tc_string_free"), "{}", err.message);
        take_back(string.cast(), Kind::String, "tc_string_free").unwrap();
    }
}
