//! Reading C arguments: borrowed strings, optional strings, and out-pointers that are written
//! only on success.

use std::ffi::{c_char, c_int, CStr};

use super::error::Failure;

/// A required UTF-8 string argument named `what`.
pub(crate) unsafe fn required_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "{what} is NULL; pass a NUL-terminated UTF-8 string"
        )));
    }
    CStr::from_ptr(ptr)
        .to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8; pass a UTF-8 string")))
}

/// An optional string argument: NULL means "not given".
pub(crate) unsafe fn optional_str<'a>(
    ptr: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        Ok(None)
    } else {
        required_str(ptr, what).map(Some)
    }
}

/// A required array of `count` UTF-8 strings named `what`; NULL is allowed only when `count`
/// is 0.
pub(crate) unsafe fn required_strs<'a>(
    ptr: *const *const c_char,
    count: usize,
    what: &str,
) -> Result<Vec<&'a str>, Failure> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "{what} is NULL with a count of {count}; pass an array of {count} strings"
        )));
    }
    std::slice::from_raw_parts(ptr, count)
        .iter()
        .enumerate()
        .map(|(i, &item)| required_str(item, &format!("{what}[{i}]")))
        .collect()
}

/// Check that a required out-pointer is not NULL before any work is done.
pub(crate) fn out_ptr<T>(ptr: *mut T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "{what} is NULL; pass the address of a variable to receive the result"
        )));
    }
    Ok(())
}

/// A C boolean field named `what` that must be 0 or 1.
pub(crate) fn flag(value: c_int, what: &str) -> Result<bool, Failure> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(Failure::invalid(format!("{what} is {other}; use 0 or 1"))),
    }
}

/// A versioned options struct (its first field a `usize` `struct_size`, as tc_options_init and
/// its kin set it) read from the caller: the fields its `struct_size` covers, `defaults` for
/// the rest, so a caller compiled against an older, shorter struct keeps working. NULL gives
/// `defaults`. `name` is the C type, `init` its init function, for the message.
pub(crate) unsafe fn read_versioned<T>(
    ptr: *const T,
    mut defaults: T,
    name: &str,
    init: &str,
) -> Result<T, Failure> {
    if ptr.is_null() {
        return Ok(defaults);
    }
    let size = ptr.cast::<usize>().read_unaligned();
    let ours = std::mem::size_of::<T>();
    if size < std::mem::size_of::<usize>() || size > ours {
        return Err(Failure::invalid(format!(
            "{name}.struct_size is {size}, this library understands 8..={ours}; call {init}() \
             before setting fields, and build against this library's header"
        )));
    }
    std::ptr::copy_nonoverlapping(
        ptr.cast::<u8>(),
        std::ptr::addr_of_mut!(defaults).cast::<u8>(),
        size,
    );
    Ok(defaults)
}
