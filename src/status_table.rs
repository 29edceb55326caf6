// The one list of call outcomes (the module's doc is on its `mod` line in lib.rs: build.rs
// `include!`s this file, where an inner `//!` comment is not allowed).
//
// Everything that enumerates outcomes is generated from this list, so adding an error kind
// is one entry here:
//   - `ErrorKind`, its stable names and CLI exit codes (src/error.rs),
//   - the C enum `tc_status` with its numbers and documentation (rendered by build.rs for
//     the crate and for cbindgen), `tc_status_name`, and kind -> status (src/ffi/error.rs),
//   - Python's exception per status, looked up by name (`lib.TC_STATUS_<NAME>`).
//
// Each entry: its documentation (C's and Rust's), `Variant = number, "stable_name"`, and for
// an error kind the CLI's exit code. Numbers are ABI: never change or reuse one; a new entry
// takes the next free number. The stable name is the variant in snake_case (Python finds
// `TC_STATUS_<NAME>` by it; a test checks). `outcomes` are statuses that are not errors.

/// Call `$then!` with the table.
macro_rules! status_table {
    ($then:ident) => {
        $then! {
            outcomes {
                /// Success.
                Ok = 0, "ok";
                /// Not an error: the thing asked for is not in the local cache (a manifest
                /// never scanned, a file never downloaded). No output is written.
                NotCached = 17, "not_cached";
                /// Not an error: the job is still running.
                Pending = 18, "pending";
            }
            errors {
                /// An argument is malformed: a repo id, revision, path or option (or one out
                /// of range). From C also: a required pointer was NULL, a string was not
                /// UTF-8, or a handle was closed, freed or not one of ours.
                InvalidArgument = 1, "invalid_argument", exit::USAGE;
                /// The repository does not exist, or is private and the token does not grant
                /// access.
                RepoNotFound = 2, "repo_not_found", exit::NOT_FOUND;
                /// The repository exists but the revision (branch, tag or commit) does not.
                RevisionNotFound = 3, "revision_not_found", exit::NOT_FOUND;
                /// The file does not exist in the repository, or the variant is not in the
                /// manifest.
                EntryNotFound = 4, "entry_not_found", exit::NOT_FOUND;
                /// The repository is gated: accept its terms on the Hub and pass a token.
                GatedRepo = 5, "gated_repo", exit::NETWORK;
                /// The token was refused (a 401/403 that is not a gate).
                Unauthorized = 6, "unauthorized", exit::NETWORK;
                /// The Hub kept answering 429 after every allowed retry.
                RateLimited = 7, "rate_limited", exit::NETWORK;
                /// Connection refused or reset, DNS or TLS failure, timeout: the network
                /// failed, not the server.
                Network = 8, "network", exit::NETWORK;
                /// The server answered with an unexpected status or an unusable response.
                Http = 9, "http", exit::NETWORK;
                /// A local file-system operation failed.
                Io = 10, "io", exit::FAILURE;
                /// The disk or quota is full; what was already cached is intact.
                DiskFull = 11, "disk_full", exit::FAILURE;
                /// Downloaded bytes did not match their size or hash; nothing was committed.
                Corrupt = 12, "corrupt", exit::DAMAGED;
                /// Reserved: releases before 0.2 returned it when another process held the
                /// cache directory. Caches are shared now, and nothing returns it (the status,
                /// the kind and the Python exception stay for code that names them).
                Locked = 13, "locked", exit::LOCKED;
                /// Offline mode is on and the request needs the network.
                Offline = 14, "offline", exit::OFFLINE;
                /// The caller cancelled: the progress callback returned non-zero, the job was
                /// cancelled, or Ctrl-C.
                Cancelled = 15, "cancelled", exit::INTERRUPTED;
                /// A bug in tabcache (a caught panic or a broken invariant). Please report it.
                Internal = 16, "internal", exit::FAILURE;
            }
        }
    };
}
