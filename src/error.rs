//! The one error type of the crate: a kind that callers branch on (and that the C ABI maps to
//! `tc_status`, Python to its exception classes, the CLI to exit codes) plus a message written
//! for the person who will read it: what went wrong and what to do about it.

use std::fmt;

/// Generates [`ErrorKind`] and what is said about each kind from the status table
/// (src/status_table.rs), so that no other list of kinds exists.
macro_rules! error_kinds {
    (
        outcomes { $($outcomes:tt)* }
        errors { $( $(#[doc = $doc:literal])* $kind:ident = $value:literal, $name:literal, exit::$exit:ident; )* }
    ) => {
        /// What went wrong, coarse enough to act on. Every kind maps to exactly one
        /// `tc_status` code, Python exception and CLI exit code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $( $(#[doc = $doc])* $kind, )*
        }

        impl ErrorKind {
            /// Every kind, in the table's order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind),*];

            /// A stable, lower-case name for logs, JSON output and tests; also the name
            /// `tc_status_name` gives the kind's status.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( ErrorKind::$kind => $name, )*
                }
            }

            /// The exit status of the `tabcache` command that fails with this kind (see
            /// [`exit`]).
            pub fn exit_code(self) -> u8 {
                match self {
                    $( ErrorKind::$kind => exit::$exit, )*
                }
            }
        }
    };
}

status_table!(error_kinds);

/// The exit statuses of the `tabcache` command line, a contract of their own (scripts branch
/// on them). [`ErrorKind::exit_code`] gives a failed command's.
pub mod exit {
    /// Any other failure (I/O, disk full, a bug).
    pub const FAILURE: u8 = 1;
    /// Bad usage or arguments.
    pub const USAGE: u8 = 2;
    /// The repository, revision, file or variant does not exist (or is not cached).
    pub const NOT_FOUND: u8 = 3;
    /// The network or the Hub failed, or refused access.
    pub const NETWORK: u8 = 4;
    /// Bytes did not match their hash (a download, or `verify` found damage).
    pub const DAMAGED: u8 = 5;
    /// Reserved for [`super::ErrorKind::Locked`], which nothing returns any more.
    pub const LOCKED: u8 = 6;
    /// Offline mode is on and the command needs the network.
    pub const OFFLINE: u8 = 7;
    /// Interrupted (Ctrl-C), as shells report SIGINT: 128 + 2.
    pub const INTERRUPTED: u8 = 130;
}

/// An error with its kind and a complete, human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// Worth retrying as it is (connection fault, 408/429/5xx); set by the hub client.
    transient: bool,
    /// How long the server asked us to wait (`Retry-After`, `RateLimit: ...;t=N`).
    retry_after: Option<std::time::Duration>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            transient: false,
            retry_after: None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The wait the server asked for, if it named one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// Mark this error as worth retrying, optionally after the wait the server asked for.
    pub fn transient(mut self, retry_after: Option<std::time::Duration>) -> Self {
        self.transient = true;
        self.retry_after = retry_after;
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    pub fn cancelled() -> Self {
        Error::new(
            ErrorKind::Cancelled,
            "cancelled by the caller; partial data is kept and the next call resumes",
        )
    }

    /// An I/O error on `path` while doing `what`; ENOSPC/EDQUOT become [`ErrorKind::DiskFull`].
    pub fn io(what: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        if is_disk_full(&err) {
            return Error::new(
                ErrorKind::DiskFull,
                format!(
                    "disk full while {what} {}: free some space (or run `tabcache gc`) and retry; what was already cached is intact",
                    path.display()
                ),
            );
        }
        Error::new(ErrorKind::Io, format!("{what} {}: {err}", path.display()))
    }

    /// The same error with every occurrence of `secret` (a token a server may have echoed
    /// into its answer) in the message replaced by `<redacted>`.
    pub fn redact(mut self, secret: &str) -> Self {
        if !secret.is_empty() && self.message.contains(secret) {
            self.message = self.message.replace(secret, "<redacted>");
        }
        self
    }

    /// Prefix the message with context, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

fn is_disk_full(err: &std::io::Error) -> bool {
    if err.kind() == std::io::ErrorKind::StorageFull
        || err.kind() == std::io::ErrorKind::QuotaExceeded
    {
        return true;
    }
    #[cfg(unix)]
    {
        matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
    }
    #[cfg(not(unix))]
    {
        false
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_failing_exit_code_from_the_cli_contract() {
        let codes = [
            exit::FAILURE,
            exit::USAGE,
            exit::NOT_FOUND,
            exit::NETWORK,
            exit::DAMAGED,
            exit::LOCKED,
            exit::OFFLINE,
            exit::INTERRUPTED,
        ];
        for &kind in ErrorKind::ALL {
            assert!(codes.contains(&kind.exit_code()), "{kind:?}");
        }
        // The codes scripts branch on most (`tabcache --help` lists them all).
        assert_eq!(ErrorKind::InvalidArgument.exit_code(), 2);
        assert_eq!(ErrorKind::EntryNotFound.exit_code(), 3);
        assert_eq!(ErrorKind::Network.exit_code(), 4);
        assert_eq!(ErrorKind::Corrupt.exit_code(), 5);
        assert_eq!(ErrorKind::Offline.exit_code(), 7);
        assert_eq!(ErrorKind::Cancelled.exit_code(), 130);
    }

    #[test]
    fn kinds_have_distinct_names() {
        let names: std::collections::HashSet<&str> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
