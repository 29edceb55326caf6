//! `tc_status`, the thread's last error message, and [`call`]: the wrapper every entry point
//! runs in, which turns a `Result` or a panic into a status and a message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, ErrorKind};

/// The outcome of a call. 0 is success; every other value says what failed, and
/// tc_last_error_message() gives the message. The numbering is stable across versions;
/// new codes are only ever appended.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcStatus {
    /// Success.
    Ok = 0,
    /// A required pointer was NULL, a string was not UTF-8 or malformed (repo id, path,
    /// revision), an option was out of range, or a handle was closed, freed or not one of ours.
    InvalidArgument = 1,
    /// The repository does not exist, or is private and the token does not grant access.
    RepoNotFound = 2,
    /// The repository exists but the revision (branch, tag or commit) does not.
    RevisionNotFound = 3,
    /// The file does not exist in the repository, or the variant is not in the manifest.
    EntryNotFound = 4,
    /// The repository is gated: accept its terms on the Hub and pass a token.
    GatedRepo = 5,
    /// The token was refused.
    Unauthorized = 6,
    /// The Hub kept answering 429 after every allowed retry.
    RateLimited = 7,
    /// Connection refused or reset, DNS or TLS failure, timeout.
    Network = 8,
    /// The server answered with an unexpected status or an unusable response.
    Http = 9,
    /// A local file-system operation failed.
    Io = 10,
    /// The disk or quota is full; what was already cached is intact.
    DiskFull = 11,
    /// Downloaded bytes did not match their size or hash; nothing was committed.
    Corrupt = 12,
    /// Reserved: releases before 0.2 returned it when another process held the cache
    /// directory. Caches are shared now, and nothing returns it.
    Locked = 13,
    /// Offline mode is on and the request needs the network.
    Offline = 14,
    /// The progress callback returned non-zero, or the job was cancelled.
    Cancelled = 15,
    /// A bug in tabcache (a caught panic or a broken invariant). Please report it.
    Internal = 16,
    /// Not an error: the thing asked for is not in the local cache (a manifest never
    /// scanned, a file never downloaded). No output is written.
    NotCached = 17,
    /// Not an error: the job is still running.
    Pending = 18,
}

impl From<ErrorKind> for TcStatus {
    fn from(kind: ErrorKind) -> TcStatus {
        match kind {
            ErrorKind::InvalidArgument => TcStatus::InvalidArgument,
            ErrorKind::RepoNotFound => TcStatus::RepoNotFound,
            ErrorKind::RevisionNotFound => TcStatus::RevisionNotFound,
            ErrorKind::EntryNotFound => TcStatus::EntryNotFound,
            ErrorKind::GatedRepo => TcStatus::GatedRepo,
            ErrorKind::Unauthorized => TcStatus::Unauthorized,
            ErrorKind::RateLimited => TcStatus::RateLimited,
            ErrorKind::Network => TcStatus::Network,
            ErrorKind::Http => TcStatus::Http,
            ErrorKind::Io => TcStatus::Io,
            ErrorKind::DiskFull => TcStatus::DiskFull,
            ErrorKind::Corrupt => TcStatus::Corrupt,
            ErrorKind::Locked => TcStatus::Locked,
            ErrorKind::Offline => TcStatus::Offline,
            ErrorKind::Cancelled => TcStatus::Cancelled,
            ErrorKind::Internal => TcStatus::Internal,
        }
    }
}

impl TcStatus {
    const ALL: [TcStatus; 19] = [
        TcStatus::Ok,
        TcStatus::InvalidArgument,
        TcStatus::RepoNotFound,
        TcStatus::RevisionNotFound,
        TcStatus::EntryNotFound,
        TcStatus::GatedRepo,
        TcStatus::Unauthorized,
        TcStatus::RateLimited,
        TcStatus::Network,
        TcStatus::Http,
        TcStatus::Io,
        TcStatus::DiskFull,
        TcStatus::Corrupt,
        TcStatus::Locked,
        TcStatus::Offline,
        TcStatus::Cancelled,
        TcStatus::Internal,
        TcStatus::NotCached,
        TcStatus::Pending,
    ];

    fn name(self) -> &'static std::ffi::CStr {
        match self {
            TcStatus::Ok => c"ok",
            TcStatus::InvalidArgument => c"invalid_argument",
            TcStatus::RepoNotFound => c"repo_not_found",
            TcStatus::RevisionNotFound => c"revision_not_found",
            TcStatus::EntryNotFound => c"entry_not_found",
            TcStatus::GatedRepo => c"gated_repo",
            TcStatus::Unauthorized => c"unauthorized",
            TcStatus::RateLimited => c"rate_limited",
            TcStatus::Network => c"network",
            TcStatus::Http => c"http",
            TcStatus::Io => c"io",
            TcStatus::DiskFull => c"disk_full",
            TcStatus::Corrupt => c"corrupt",
            TcStatus::Locked => c"locked",
            TcStatus::Offline => c"offline",
            TcStatus::Cancelled => c"cancelled",
            TcStatus::Internal => c"internal",
            TcStatus::NotCached => c"not_cached",
            TcStatus::Pending => c"pending",
        }
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
    use std::ffi::CStr;

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

    #[test]
    fn every_error_kind_has_its_own_status_and_name() {
        use std::collections::HashSet;
        let kinds = [
            ErrorKind::InvalidArgument,
            ErrorKind::RepoNotFound,
            ErrorKind::RevisionNotFound,
            ErrorKind::EntryNotFound,
            ErrorKind::GatedRepo,
            ErrorKind::Unauthorized,
            ErrorKind::RateLimited,
            ErrorKind::Network,
            ErrorKind::Http,
            ErrorKind::Io,
            ErrorKind::DiskFull,
            ErrorKind::Corrupt,
            ErrorKind::Locked,
            ErrorKind::Offline,
            ErrorKind::Cancelled,
            ErrorKind::Internal,
        ];
        let statuses: HashSet<u32> = kinds.iter().map(|k| TcStatus::from(*k) as u32).collect();
        assert_eq!(statuses.len(), kinds.len());
        assert!(!statuses.contains(&0));
        for kind in kinds {
            // The C name of a kind's status is the kind's own stable name.
            let name = unsafe { CStr::from_ptr(tc_status_name(TcStatus::from(kind) as u32)) };
            assert_eq!(name.to_str().unwrap(), kind.as_str());
        }
    }

    #[test]
    fn interior_nul_in_a_message_is_shown_not_truncated() {
        call("tc_test", || Err(Failure::invalid("before\0after")));
        assert_eq!(last_message(), "before\\0after");
    }
}
