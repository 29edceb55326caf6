//! The one error type of the crate: a kind that callers branch on (and that the C ABI maps to
//! `tc_status`, Python to its exception classes, the CLI to exit codes) plus a message written
//! for the person who will read it: what went wrong and what to do about it.

use std::fmt;

/// What went wrong, coarse enough to act on. Every kind maps to exactly one `tc_status` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A repo id, revision, path or option the caller gave is malformed.
    InvalidArgument,
    /// The repository does not exist (or is private and no valid token was sent).
    RepoNotFound,
    /// The repository exists but the revision (branch, tag, commit) does not.
    RevisionNotFound,
    /// The repository and revision exist but the file does not; also "quant not in manifest".
    EntryNotFound,
    /// The repository is gated: its terms must be accepted and a token sent.
    GatedRepo,
    /// The token was refused (401/403 that is not a gate).
    Unauthorized,
    /// The server kept answering 429 after every retry the policy allowed.
    RateLimited,
    /// Connection refused, reset, DNS, TLS, timeout: the network failed, not the server.
    Network,
    /// The server answered with an unexpected status or a response we cannot use.
    Http,
    /// A local file-system operation failed.
    Io,
    /// The disk (or quota) is full.
    DiskFull,
    /// Bytes did not match their recorded size or hash; nothing was committed.
    Corrupt,
    /// Reserved (the C status and Python exception stay): releases before 0.2 returned it
    /// when another process held the cache directory. Caches are shared now; nothing does.
    Locked,
    /// Offline mode is on and the request needs the network.
    Offline,
    /// The caller cancelled (progress callback, job cancel, Ctrl-C).
    Cancelled,
    /// A bug: an invariant of this library was broken. Please report it.
    Internal,
}

impl ErrorKind {
    /// A stable, lower-case name for logs, JSON output and tests.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::RepoNotFound => "repo_not_found",
            ErrorKind::RevisionNotFound => "revision_not_found",
            ErrorKind::EntryNotFound => "entry_not_found",
            ErrorKind::GatedRepo => "gated_repo",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Network => "network",
            ErrorKind::Http => "http",
            ErrorKind::Io => "io",
            ErrorKind::DiskFull => "disk_full",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Locked => "locked",
            ErrorKind::Offline => "offline",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
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
