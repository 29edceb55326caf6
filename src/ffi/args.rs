//! Reading C arguments: borrowed strings, optional strings, and out-pointers that are written
//! only on success.

use std::ffi::{c_char, CStr};

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

/// Check that a required out-pointer is not NULL before any work is done.
pub(crate) fn out_ptr<T>(ptr: *mut T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "{what} is NULL; pass the address of a variable to receive the result"
        )));
    }
    Ok(())
}
