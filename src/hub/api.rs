//! The Hub's JSON API as the cache needs it: model info (commit sha, task, gating, file names)
//! and the recursive, paginated tree listing with LFS sizes and hashes. Everything the server
//! sends is checked before it is believed: ids, shas, paths, sizes and hashes.

use std::collections::HashSet;

use serde::Deserialize;

use super::http::{Http, Method, JSON_REQUEST};
use super::link::next_link;
use super::status::{display_url, Subject};
use super::url::{join, quote};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Watch;
use crate::validate;

/// A listing longer than this is a server paging forever, not a repository.
pub const MAX_TREE_PAGES: usize = 10_000;
pub const MAX_TREE_ENTRIES: usize = 1_000_000;
use crate::download::MAX_FILE_SIZE;
const MAX_JSON: u64 = 64 * 1024 * 1024;

/// What `GET /api/models/{repo_id}/revision/{revision}` says about a repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The canonical repo id (it differs from the one asked for when the repo was renamed).
    pub id: String,
    /// The commit the revision points at: 40 (or 64) lower-case hex digits, checked.
    pub sha: String,
    /// The task, e.g. `text-generation`; the manifest's `task`.
    pub pipeline_tag: Option<String>,
    /// Access requires accepting terms (`gated` is `"auto"` or `"manual"` on the Hub).
    pub gated: bool,
    pub private: bool,
    /// Every file path at that commit (each validated like any path we would write).
    pub siblings: Vec<String>,
}

/// One file of a recursive tree listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Validated repo-relative path.
    pub path: String,
    /// The real size (`lfs.size` for LFS files, else `size`).
    pub size: u64,
    /// The git blob sha1 (40 hex digits).
    pub git_oid: String,
    /// The sha256 of the content for LFS files (`lfs.oid`), the hash to verify downloads by.
    pub sha256: Option<String>,
    /// The Xet file hash (`xetHash`, 64 hex) of a Xet-backed file: it can be fetched from
    /// the Hub's Xet storage and verified by this hash (see `crate::xet`).
    pub xet_hash: Option<String>,
}

#[derive(Deserialize)]
struct RawModelInfo {
    id: String,
    sha: Option<String>,
    pipeline_tag: Option<String>,
    #[serde(default)]
    gated: serde_json::Value,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    siblings: Vec<RawSibling>,
}

#[derive(Deserialize)]
struct RawSibling {
    rfilename: String,
}

#[derive(Deserialize)]
struct RawTreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    oid: Option<String>,
    size: Option<u64>,
    lfs: Option<RawLfs>,
    #[serde(rename = "xetHash")]
    xet_hash: Option<String>,
}

#[derive(Deserialize)]
struct RawLfs {
    oid: String,
    size: u64,
}

/// What every `/api/models/{repo_id}/{route}/{revision}` call starts with: the ids checked,
/// offline mode honoured (`doing` says what was refused), the URL (with `query`), and the
/// subject its errors name.
fn revision_api<'a>(
    http: &Http,
    repo_id: &'a str,
    revision: &'a str,
    route: &str,
    query: &str,
    doing: &str,
) -> Result<(String, Subject<'a>)> {
    validate::repo_id(repo_id)?;
    validate::revision(revision)?;
    http.ensure_online(doing)?;
    let url = format!(
        "{}/api/models/{repo_id}/{route}/{}{query}",
        http.config.endpoint,
        quote(revision, "")
    );
    let subject = Subject {
        repo_id: Some(repo_id),
        revision: Some(revision),
        path: None,
    };
    Ok((url, subject))
}

pub fn model_info(http: &Http, watch: &Watch, repo_id: &str, revision: &str) -> Result<ModelInfo> {
    let doing = format!("fetch information about '{repo_id}'");
    let (url, subject) = revision_api(http, repo_id, revision, "revision", "", &doing)?;
    let raw: RawModelInfo = http.config.retry.run(watch, || {
        let hop = http.check(http.send(Method::Get, &url, JSON_REQUEST)?, subject)?;
        hop.read_json(MAX_JSON, "model info")
    })?;

    check_model_info(raw, &url)
}

/// Check a model-info document the server sent for `url`.
fn check_model_info(raw: RawModelInfo, url: &str) -> Result<ModelInfo> {
    let culprit = |what: String| server_fault(url, what);
    validate::repo_id(&raw.id).map_err(|e| culprit(format!("a bad repo id ({})", e.message())))?;
    let sha = raw.sha.ok_or_else(|| culprit("no commit sha".into()))?;
    check_hex(&sha, &[40, 64])
        .map_err(|why| culprit(format!("a bad commit sha {sha:?} ({why})")))?;
    let mut seen = HashSet::new();
    let mut siblings = Vec::with_capacity(raw.siblings.len());
    for sibling in raw.siblings {
        check_listed_path(&sibling.rfilename, &mut seen).map_err(culprit)?;
        siblings.push(sibling.rfilename);
    }
    Ok(ModelInfo {
        id: raw.id,
        sha,
        pipeline_tag: raw.pipeline_tag.filter(|t| !t.is_empty()),
        gated: !matches!(
            raw.gated,
            serde_json::Value::Null | serde_json::Value::Bool(false)
        ),
        private: raw.private,
        siblings,
    })
}

/// Check one page of a tree listing the server sent for `url`: its files (directories
/// dropped), every path validated and not listed before (`seen` spans all pages).
fn check_tree_page(
    entries: Vec<RawTreeEntry>,
    url: &str,
    seen: &mut HashSet<String>,
) -> Result<Vec<RemoteFile>> {
    let mut files = Vec::new();
    for entry in entries {
        if let Some(file) = tree_file(entry, seen).map_err(|why| server_fault(url, why))? {
            files.push(file);
        }
    }
    Ok(files)
}

/// [`check_model_info`] over raw bytes, for the fuzzer.
pub fn parse_model_info(body: &[u8], url: &str) -> Result<ModelInfo> {
    let raw = serde_json::from_slice(body)
        .map_err(|e| server_fault(url, format!("invalid model info ({e})")))?;
    check_model_info(raw, url)
}

/// [`check_tree_page`] over raw bytes, for the fuzzer.
pub fn parse_tree_page(
    body: &[u8],
    url: &str,
    seen: &mut HashSet<String>,
) -> Result<Vec<RemoteFile>> {
    let entries = serde_json::from_slice(body)
        .map_err(|e| server_fault(url, format!("an invalid file listing ({e})")))?;
    check_tree_page(entries, url, seen)
}

/// Every file of the listing, all pages; `watch` counts the files listed so far and is
/// checked before each page.
///
/// One loop on purpose: the pagination guards (revisits, page and entry limits, size sums)
/// span all pages.
pub fn list_files(
    http: &Http,
    watch: &Watch,
    repo_id: &str,
    revision: &str,
) -> Result<Vec<RemoteFile>> {
    let doing = format!("list the files of '{repo_id}'");
    let (first, subject) =
        revision_api(http, repo_id, revision, "tree", "?recursive=true", &doing)?;
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut seen = HashSet::new();
    let mut next = Some(first.clone());
    let mut visited = HashSet::new();
    while let Some(url) = next.take() {
        if !visited.insert(url.clone()) {
            return Err(server_fault(
                &first,
                format!("a listing whose pages link back to {}", display_url(&url)),
            ));
        }
        if visited.len() > MAX_TREE_PAGES {
            return Err(server_fault(
                &first,
                format!("more than {MAX_TREE_PAGES} pages of listing (it seems to page forever)"),
            ));
        }
        let (page_url, entries, link) = http.config.retry.run(watch, || {
            let hop = http.check(http.send(Method::Get, &url, JSON_REQUEST)?, subject)?;
            let page_url = hop.url.clone();
            let link = hop.header("link");
            let entries: Vec<RawTreeEntry> = hop.read_json(MAX_JSON, "file listing")?;
            Ok((page_url, entries, link))
        })?;
        let page = check_tree_page(entries, &page_url, &mut seen)?;
        // Each size is at most 1 PiB, but a million of them is not: sums of a listing's sizes
        // (a variant's total, the progress total) must never wrap.
        total = page
            .iter()
            .try_fold(total, |sum, f| sum.checked_add(f.size))
            .ok_or_else(|| {
                server_fault(
                    &first,
                    "file sizes that add up to more than 2^64 bytes".into(),
                )
            })?;
        watch.add(page.len() as u64);
        files.extend(page);
        if files.len() > MAX_TREE_ENTRIES {
            return Err(server_fault(
                &first,
                format!("more than {MAX_TREE_ENTRIES} files"),
            ));
        }
        next = match link.as_deref().and_then(next_link) {
            Some(target) => Some(join(&page_url, &target)?),
            None => None,
        };
    }
    Ok(files)
}

/// A listed file, checked; None for directories and other non-files.
fn tree_file(
    entry: RawTreeEntry,
    seen: &mut HashSet<String>,
) -> Result<Option<RemoteFile>, String> {
    if entry.kind != "file" {
        check_path(&entry.path)?;
        return Ok(None);
    }
    check_listed_path(&entry.path, seen)?;
    let oid = entry
        .oid
        .ok_or_else(|| format!("no oid for {:?}", entry.path))?;
    check_hex(&oid, &[40])
        .map_err(|why| format!("a bad git oid {oid:?} for {:?} ({why})", entry.path))?;
    let (size, sha256) = match entry.lfs {
        Some(lfs) => {
            check_hex(&lfs.oid, &[64]).map_err(|why| {
                format!(
                    "a bad LFS sha256 {:?} for {:?} ({why})",
                    lfs.oid, entry.path
                )
            })?;
            (lfs.size, Some(lfs.oid))
        }
        None => (
            entry
                .size
                .ok_or_else(|| format!("no size for {:?}", entry.path))?,
            None,
        ),
    };
    if size > MAX_FILE_SIZE {
        return Err(format!("an absurd size {size} for {:?}", entry.path));
    }
    if let Some(xet) = &entry.xet_hash {
        check_hex(xet, &[64])
            .map_err(|why| format!("a bad xetHash {xet:?} for {:?} ({why})", entry.path))?;
    }
    // A Xet hash without the sha256 the blob is named by is of no use to the store.
    let xet_hash = entry.xet_hash.filter(|_| sha256.is_some());
    Ok(Some(RemoteFile {
        path: entry.path,
        size,
        git_oid: oid,
        sha256,
        xet_hash: xet_hash.map(|h| h.to_ascii_lowercase()),
    }))
}

fn check_path(path: &str) -> Result<(), String> {
    validate::repo_path(path).map_err(|e| e.message().to_string())
}

fn check_listed_path(path: &str, seen: &mut HashSet<String>) -> Result<(), String> {
    check_path(path)?;
    if !seen.insert(path.to_string()) {
        return Err(format!("the file {path:?} twice"));
    }
    Ok(())
}

/// Lower-case hex of one of the allowed lengths.
fn check_hex(value: &str, lengths: &[usize]) -> Result<(), &'static str> {
    if !lengths.contains(&value.len()) {
        return Err("wrong length");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("not lower-case hex");
    }
    Ok(())
}

/// The server, not the caller, sent something unusable.
fn server_fault(url: &str, what: String) -> Error {
    Error::new(
        ErrorKind::Http,
        format!(
            "the server at {} sent {what}; refusing to use its listing (the server or a proxy in between is at fault, not the request)",
            display_url(url)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> RawTreeEntry {
        serde_json::from_str(json).unwrap()
    }

    const OID: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn lfs_fields_win_and_directories_are_skipped() {
        let mut seen = HashSet::new();
        let sha = "a".repeat(64);
        let lfs = entry(&format!(
            r#"{{"type":"file","path":"onnx/model.onnx","oid":"{OID}","size":134,"lfs":{{"oid":"{sha}","size":5000000,"pointerSize":134}}}}"#
        ));
        let file = tree_file(lfs, &mut seen).unwrap().unwrap();
        assert_eq!(
            (file.size, file.sha256.as_deref(), file.git_oid.as_str()),
            (5_000_000, Some(sha.as_str()), OID)
        );
        let plain = entry(&format!(
            r#"{{"type":"file","path":"config.json","oid":"{OID}","size":12}}"#
        ));
        assert_eq!(tree_file(plain, &mut seen).unwrap().unwrap().sha256, None);
        let dir = entry(&format!(
            r#"{{"type":"directory","path":"onnx","oid":"{OID}","size":0}}"#
        ));
        assert_eq!(tree_file(dir, &mut seen).unwrap(), None);
    }

    #[test]
    fn hostile_entries_are_refused() {
        let sha = "a".repeat(64);
        for (json, why) in [
            (
                format!(r#"{{"type":"file","path":"../../x","oid":"{OID}","size":1}}"#),
                "`..`",
            ),
            (
                format!(r#"{{"type":"file","path":"/etc/passwd","oid":"{OID}","size":1}}"#),
                "absolute",
            ),
            (
                format!(r#"{{"type":"file","path":"a\\b","oid":"{OID}","size":1}}"#),
                "backslash",
            ),
            (
                format!(r#"{{"type":"directory","path":"../up","oid":"{OID}","size":0}}"#),
                "`..`",
            ),
            (
                r#"{"type":"file","path":"a","oid":"xyz","size":1}"#.to_string(),
                "git oid",
            ),
            (
                format!(
                    r#"{{"type":"file","path":"a","oid":"{OID}","size":1,"lfs":{{"oid":"{}","size":1}}}}"#,
                    &sha[..63]
                ),
                "LFS sha256",
            ),
            (
                format!(r#"{{"type":"file","path":"a","oid":"{OID}","size":1125899906842625}}"#),
                "absurd size",
            ),
            (
                format!(r#"{{"type":"file","path":"a","oid":"{OID}"}}"#),
                "no size",
            ),
        ] {
            let err = tree_file(entry(&json), &mut HashSet::new()).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
        let mut seen = HashSet::new();
        let twice = format!(r#"{{"type":"file","path":"a","oid":"{OID}","size":1}}"#);
        tree_file(entry(&twice), &mut seen).unwrap();
        assert!(tree_file(entry(&twice), &mut seen)
            .unwrap_err()
            .contains("twice"));
        assert!(serde_json::from_str::<RawTreeEntry>(
            r#"{"type":"file","path":"a","oid":"x","size":-1}"#
        )
        .is_err());
    }
}
