//! `tc_status`, the thread's last error message, and [`call`]: the wrapper every entry point
//! runs in, which turns a `Result` or a panic into a status and a message.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, ErrorKind};

// `TcStatus`, rendered by build.rs from the status table (src/status_table.rs) as source
// that cbindgen can read too.
include!(concat!(env!("OUT_DIR"), "/tc_status.rs"));

/// Generates what is said about each `TcStatus` from the status table.
macro_rules! status_maps {
    (
        outcomes { $( $(#[doc = $odoc:literal])* $outcome:ident = $ovalue:literal, $oname:literal; )* }
        errors { $( $(#[doc = $doc:literal])* $kind:ident = $value:literal, $name:literal, exit::$exit:ident; )* }
    ) => {
        impl From<ErrorKind> for TcStatus {
            fn from(kind: ErrorKind) -> TcStatus {
                match kind {
                    $( ErrorKind::$kind => TcStatus::$kind, )*
                }
            }
        }

        impl TcStatus {
            /// Every status.
            pub(crate) const ALL: &[TcStatus] = &[$(TcStatus::$outcome,)* $(TcStatus::$kind,)*];

            /// The stable name `tc_status_name` gives (a kind's is [`ErrorKind::as_str`]).
            pub(crate) fn name(self) -> &'static CStr {
                match self {
                    $( TcStatus::$outcome => const { static_cstr(concat!($oname, "\0")) }, )*
                    $( TcStatus::$kind => const { static_cstr(concat!($name, "\0")) }, )*
                }
            }
        }
    };
}

status_table!(status_maps);

/// A NUL-terminated literal as a `CStr` (called in `const` blocks: checked when compiling).
const fn static_cstr(text: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(text.as_bytes()) {
        Ok(name) => name,
        Err(_) => panic!("a status name holds a NUL"),
    }
}

/// Why a call did not succeed: a status and the message for tc_last_error_message().
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: TcStatus,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            status: TcStatus::InvalidArgument,
            message: message.into(),
        }
    }

    pub fn not_cached(message: impl Into<String>) -> Failure {
        Failure {
            status: TcStatus::NotCached,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            status: e.kind().into(),
            message: e.message().to_string(),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    // An interior NUL would cut the message short in C; show it instead.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(text));
}

fn clear_last_error() {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = None);
}

/// Run the body of the entry point `name`: a panic becomes `TC_STATUS_INTERNAL`, a failure
/// its status, and the thread's last error message is set (or cleared on success).
pub(crate) fn call(name: &str, body: impl FnOnce() -> Result<TcStatus, Failure>) -> TcStatus {
    clear_last_error();
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(Failure {
            status: TcStatus::Internal,
            message: format!("{name}: internal error ({what}); please report this bug to tabcache"),
        })
    });
    match outcome {
        Ok(status) => status,
        Err(failure) => {
            set_last_error(&failure.message);
            failure.status
        }
    }
}

/// Record a message for a function that cannot return a status (the `_free` and `_close`
/// functions), catching any panic.
pub(crate) fn call_void(name: &str, body: impl FnOnce() -> Result<(), Failure>) {
    call(name, || body().map(|()| TcStatus::Ok));
}

/// The message of the last failed call on this thread: what went wrong and what to do. A
/// call that succeeds clears it (the result is then ""). Never NULL. The string is owned
/// by the library and stays valid until the next tabcache call on this thread: copy it if
/// you need it longer; do not free it.
#[no_mangle]
pub extern "C" fn tc_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| match slot.borrow().as_ref() {
        Some(message) => message.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// A stable lower-case name for a tc_status value, e.g. "not_cached" for
/// TC_STATUS_NOT_CACHED; "unknown" for a value that is not a tc_status. The string is
/// static: do not free it. Never fails; callable from any thread.
#[no_mangle]
pub extern "C" fn tc_status_name(status: u32) -> *const c_char {
    TcStatus::ALL
        .iter()
        .find(|s| **s as u32 == status)
        .map_or(c"unknown".as_ptr(), |s| s.name().as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_message() -> String {
        unsafe { CStr::from_ptr(tc_last_error_message()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_panic_becomes_internal_with_a_message() {
        let status = call("tc_test", || panic!("invariant broken"));
        assert_eq!(status, TcStatus::Internal);
        let message = last_message();
        assert!(
            message.contains("tc_test") && message.contains("invariant broken"),
            "{message}"
        );
        assert_eq!(call("tc_test", || Ok(TcStatus::Ok)), TcStatus::Ok);
        assert_eq!(last_message(), "");
    }

    fn name_of(status: u32) -> &'static str {
        unsafe { CStr::from_ptr(tc_status_name(status)) }
            .to_str()
            .unwrap()
    }

    /// `InvalidArgument` -> `invalid_argument`: what cbindgen's `TC_STATUS_INVALID_ARGUMENT`
    /// becomes in lower case, which is how Python finds a status by its name.
    fn snake_case(variant: &str) -> String {
        let mut out = String::new();
        for c in variant.chars() {
            if c.is_ascii_uppercase() && !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    #[test]
    fn every_error_kind_has_its_own_status_named_as_the_kind() {
        use std::collections::HashSet;
        let statuses: HashSet<u32> = ErrorKind::ALL
            .iter()
            .map(|k| TcStatus::from(*k) as u32)
            .collect();
        assert_eq!(statuses.len(), ErrorKind::ALL.len());
        assert!(!statuses.contains(&(TcStatus::Ok as u32)));
        for &kind in ErrorKind::ALL {
            let status = TcStatus::from(kind);
            assert_eq!(name_of(status as u32), kind.as_str());
            // The kind and its status are the same entry of the table.
            assert_eq!(format!("{kind:?}"), format!("{status:?}"));
        }
        // The statuses that are not an error kind are exactly the three outcomes.
        let outcomes: Vec<TcStatus> = TcStatus::ALL
            .iter()
            .copied()
            .filter(|s| !statuses.contains(&(*s as u32)))
            .collect();
        assert_eq!(
            outcomes,
            [TcStatus::Ok, TcStatus::NotCached, TcStatus::Pending]
        );
    }

    #[test]
    fn statuses_are_numbered_without_gaps_and_named_after_their_variant() {
        let mut values: Vec<u32> = TcStatus::ALL.iter().map(|s| *s as u32).collect();
        values.sort_unstable();
        assert_eq!(values, (0..TcStatus::ALL.len() as u32).collect::<Vec<_>>());
        for &status in TcStatus::ALL {
            let name = name_of(status as u32);
            assert_eq!(name, status.name().to_str().unwrap());
            assert_eq!(name, snake_case(&format!("{status:?}")), "{status:?}");
        }
        assert_eq!(name_of(TcStatus::ALL.len() as u32), "unknown");
        assert_eq!(name_of(u32::MAX), "unknown");
    }

    #[test]
    fn the_header_declares_every_status_with_its_number() {
        let header = include_str!("../../include/tabcache.h");
        for &status in TcStatus::ALL {
            let line = format!(
                "TC_STATUS_{} = {},",
                name_of(status as u32).to_ascii_uppercase(),
                status as u32
            );
            assert!(header.contains(&line), "include/tabcache.h lacks {line}");
        }
        let declared = header
            .lines()
            .filter(|l| l.starts_with("  TC_STATUS_") && l.contains(" = "))
            .count();
        assert_eq!(
            declared,
            TcStatus::ALL.len(),
            "the header's tc_status has entries the table does not"
        );
    }

    #[test]
    fn interior_nul_in_a_message_is_shown_not_truncated() {
        call("tc_test", || Err(Failure::invalid("before\0after")));
        assert_eq!(last_message(), "before\\0after");
    }
}
