//! Validation of every name that reaches the file system or a URL: repo ids, revisions and
//! repo-relative file paths. The same checks guard what the caller passes and what a server
//! lists, so that no input, friendly or hostile, can name a file outside the cache.

use crate::error::{Error, Result};

const MAX_REPO_ID: usize = 96;
const MAX_PATH: usize = 4096;
const MAX_REVISION: usize = 256;

/// `org/name` or legacy `name`: letters, digits, `-`, `_`, `.`; no `..`, no leading `-`/`.`,
/// no trailing `.`, at most 96 characters.
pub fn repo_id(repo_id: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "invalid repo id {:?}: {why}; expected `org/name` such as `TheBloke/Llama-2-7B-GGUF`",
            truncate(repo_id)
        )))
    };
    if repo_id.is_empty() {
        return bad("it is empty");
    }
    if repo_id.len() > MAX_REPO_ID {
        return bad("it is longer than 96 characters");
    }
    let parts: Vec<&str> = repo_id.split('/').collect();
    if parts.len() > 2 {
        return bad("it has more than one `/`");
    }
    for part in parts {
        if part.is_empty() {
            return bad("a part is empty");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return bad("only letters, digits, `-`, `_` and `.` are allowed");
        }
        if part.starts_with('-') || part.starts_with('.') {
            return bad("a part starts with `-` or `.`");
        }
        if part.ends_with('.') {
            return bad("a part ends with `.`");
        }
        if part.contains("..") || part.contains("--") {
            return bad("`..` and `--` are not allowed");
        }
    }
    Ok(())
}

/// A branch, tag or commit: printable ASCII without spaces, `..`, backslash or a leading `/`.
/// Revisions may contain `/` (branch `refs/pr/1`), so they are URL-quoted before use and are
/// never used as a path component without encoding.
pub fn revision(revision: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "invalid revision {:?}: {why}; use a branch, tag or commit sha such as `main`",
            truncate(revision)
        )))
    };
    if revision.is_empty() {
        return bad("it is empty");
    }
    if revision.len() > MAX_REVISION {
        return bad("it is longer than 256 characters");
    }
    if !revision.bytes().all(|b| b.is_ascii_graphic()) {
        return bad("only printable ASCII without spaces is allowed");
    }
    if revision.contains("..")
        || revision.contains('\\')
        || revision.starts_with('/')
        || revision.ends_with('/')
    {
        return bad("`..`, `\\` and a leading or trailing `/` are not allowed");
    }
    Ok(())
}

/// A file path inside a repo: relative, `/`-separated, no empty, `.` or `..` segments, no
/// backslash, NUL or control characters, no drive letters.
pub fn repo_path(path: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "invalid file path {:?}: {why}; expected a relative path inside the repo such as `onnx/model.onnx`",
            truncate(path)
        )))
    };
    if path.is_empty() {
        return bad("it is empty");
    }
    if path.len() > MAX_PATH {
        return bad("it is longer than 4096 bytes");
    }
    if path.chars().any(|c| c.is_control()) {
        return bad("it contains a control character");
    }
    if path.contains('\\') {
        return bad("it contains a backslash");
    }
    if path.starts_with('/') {
        return bad("it is absolute");
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return bad("it starts with a drive letter");
    }
    for segment in path.split('/') {
        match segment {
            "" => return bad("it has an empty segment"),
            "." | ".." => return bad("it has a `.` or `..` segment"),
            _ => {}
        }
        if segment.contains(':') {
            return bad("a segment contains `:`");
        }
    }
    Ok(())
}

/// Cut a hostile input down before it goes into a message.
fn truncate(s: &str) -> String {
    if s.chars().count() <= 120 {
        s.to_string()
    } else {
        let head: String = s.chars().take(117).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for ok in [
            "gpt2",
            "org/name",
            "TheBloke/Llama-2-7B-Chat-GGUF",
            "a_b/c.d-e",
        ] {
            assert!(repo_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/",
            "a/",
            "/a",
            "a/b/c",
            "../x",
            "a/..",
            "a/.b",
            "-a/b",
            "a/b.",
            "a b/c",
            "a/b\0",
            "a\\b",
            "a/b..c",
            &"x".repeat(97),
        ] {
            let err = repo_id(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
            assert!(err.message().contains("invalid repo id"));
        }
    }

    #[test]
    fn revisions() {
        for ok in [
            "main",
            "v1.0",
            "refs/pr/1",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(revision(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a b", "../main", "a/../b", "/main", "main/", "a\\b", "m\0", "m\n",
        ] {
            assert!(revision(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repo_paths() {
        for ok in [
            "config.json",
            "onnx/model_q4f16.onnx",
            "Q4_K_M/model-00001-of-00002.gguf",
            "a..b",
        ] {
            assert!(repo_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
            "C:/x",
            "c:x",
            "a\0b",
            "a\nb",
            "a/",
            "x/C:/y",
        ] {
            let err = repo_path(bad).unwrap_err();
            assert!(err.message().contains("invalid file path"), "{bad:?}");
        }
    }
}
