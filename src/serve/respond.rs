//! The answers, as the Hub gives them: a file's bytes with the Hub's headers (`ETag`,
//! `X-Linked-Etag`/`X-Linked-Size` for LFS files, `X-Repo-Commit`, ranges, `304`), model info,
//! the paginated tree listing, paths-info, and errors with `X-Error-Code`/`X-Error-Message`
//! and a JSON `{"error": ...}` body, which is what huggingface_hub maps to its exceptions.
//! Listings show the [`Snapshot`] they are given (what this server can deliver: the files
//! cached at that commit, or with pull-through the upstream's); a file's headers need only
//! its [`Entry`], so a file the cache does not hold yet is described exactly as a cached one.
//! Blocking (catalog reads, opening a blob); called on the blocking pool.

use std::collections::BTreeSet;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::body::{Body, FileBody};
use super::conditional::{self, Range};
use super::lookup::{self, Entry, Miss, Snapshot};
use crate::error::Error;
use crate::ModelCache;

pub(crate) type Answer = Response<Body>;

/// An error as the Hub sends it. The message goes in the JSON body and, made safe for a
/// header, in `X-Error-Message` (a `HEAD` answer has only headers).
pub(crate) fn error(status: StatusCode, code: Option<&'static str>, message: &str) -> Answer {
    let mut response = json(status, &json!({ "error": message }));
    let headers = response.headers_mut();
    if let Some(code) = code {
        headers.insert("x-error-code", HeaderValue::from_static(code));
    }
    let printable: String = message
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&printable) {
        headers.insert("x-error-message", value);
    }
    response
}

pub(crate) fn json(status: StatusCode, value: &Value) -> Answer {
    let mut response = Response::new(Body::bytes(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// A failure of the cache itself (the catalog, a read): `500`, saying what failed.
pub(crate) fn internal(e: &Error) -> Answer {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        None,
        &format!("the cache could not answer: {}", e.message()),
    )
}

/// A name in the request is malformed or hostile (`crate::validate` refused it).
pub(crate) fn bad_request(e: &Error) -> Answer {
    error(StatusCode::BAD_REQUEST, None, e.message())
}

/// What the cache does not hold, said as the Hub would (its `X-Error-Code`), and that it is
/// only not cached: this server answers from the cache alone (pull-through off, or the cache
/// offline).
pub(crate) fn not_found(miss: Miss, repo: &str, revision: &str, path: Option<&str>) -> Answer {
    let message = match miss {
        Miss::Repo => format!("Repository Not Found for {repo}: this cache holds nothing of it"),
        Miss::Revision => format!("Invalid rev id: {revision} is not a revision this cache knows of {repo}"),
        Miss::Entry => format!(
            "Entry not found: {} of {repo} at \"{revision}\" is not cached (this server serves only what the cache holds)",
            path.unwrap_or("that path")
        ),
    };
    error(StatusCode::NOT_FOUND, Some(miss.code()), &message)
}

fn quoted(tag: &str) -> HeaderValue {
    // Hex digests only: always a valid header value.
    HeaderValue::from_str(&format!("\"{tag}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

fn number(n: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&n.to_string()).unwrap_or(HeaderValue::from_static("0"))
}

/// The bytes a resolve sends, decided before any byte of the file is read: bytes
/// `start..start + len` of the file with this status and the Hub's headers for the file.
pub(crate) struct FileBytes {
    status: StatusCode,
    headers: HeaderMap,
    pub(crate) start: u64,
    pub(crate) len: u64,
}

impl FileBytes {
    /// The answer, with `body` for the bytes.
    pub(crate) fn with_body(self, body: Body) -> Answer {
        with_headers(Response::new(body), self.status, self.headers)
    }
}

/// The answer to `GET`/`HEAD` of `entry` at `commit` (cached or not: only the Hub's
/// description of the file is needed), as the request's `If-None-Match`, `If-Range` and
/// `Range` ask: the bytes to send, or (`Err`) an answer complete without them — a `304`, a
/// `416`, a `HEAD`'s headers.
pub(crate) fn file_answer(
    request: &HeaderMap,
    head: bool,
    commit: &str,
    entry: &Entry,
) -> Result<FileBytes, Box<Answer>> {
    let size = entry.size;
    let mut headers = HeaderMap::new();
    if let Some(etag) = entry.etag() {
        headers.insert(header::ETAG, quoted(etag));
    }
    if let Ok(value) = HeaderValue::from_str(commit) {
        headers.insert("x-repo-commit", value);
    }
    if let (true, Some(sha256)) = (entry.is_lfs(), &entry.sha256) {
        headers.insert("x-linked-etag", quoted(sha256));
        headers.insert("x-linked-size", number(size));
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // The bytes are on this machine's disk already, and re-reading them from here is cheap:
    // a browser keeping its own HTTP-cache copy would store every model twice.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let text = |name: header::HeaderName| request.get(name).and_then(|v| v.to_str().ok());
    let etag = entry.etag().unwrap_or("");
    if text(header::IF_NONE_MATCH)
        .is_some_and(|h| !etag.is_empty() && conditional::none_match(h, etag))
    {
        return Err(Box::new(with_headers(
            Response::new(Body::Empty),
            StatusCode::NOT_MODIFIED,
            headers,
        )));
    }
    let range_header = match text(header::IF_RANGE) {
        Some(if_range) if !conditional::if_range_holds(if_range, etag) => None,
        _ => text(header::RANGE),
    };
    let (status, start, len) = match conditional::range(range_header, size) {
        Range::Full => (StatusCode::OK, 0, size),
        Range::Part { start, len } => (StatusCode::PARTIAL_CONTENT, start, len),
        Range::Unsatisfiable => {
            let mut answer = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                None,
                &format!(
                    "the range asked for is past the end of {} ({size} bytes)",
                    entry.path
                ),
            );
            answer.headers_mut().extend(headers);
            answer
                .headers_mut()
                .insert(header::CONTENT_RANGE, number(format!("bytes */{size}")));
            return Err(Box::new(answer));
        }
    };
    if status == StatusCode::PARTIAL_CONTENT {
        headers.insert(
            header::CONTENT_RANGE,
            number(format!("bytes {start}-{}/{size}", start + len - 1)),
        );
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, number(len));
    if head {
        return Err(Box::new(with_headers(
            Response::new(Body::Empty),
            status,
            headers,
        )));
    }
    Ok(FileBytes {
        status,
        headers,
        start,
        len,
    })
}

/// `GET`/`HEAD /{repo}/resolve/{revision}/{path}` of a cached file, from its blob;
/// `Err(miss)` when the cache does not hold it.
pub(crate) fn cached_file(
    cache: &ModelCache,
    request: &HeaderMap,
    head: bool,
    repo: &str,
    revision: &str,
    path: &str,
) -> Result<Answer, Miss> {
    let (commit, entry) = match lookup::file(cache, repo, revision, path) {
        Ok(Ok(found)) => found,
        Ok(Err(miss)) => return Err(miss),
        Err(e) => return Ok(internal(&e)),
    };
    // Served is used, for the disk budget's least-recently-used order.
    cache.store().note_use(repo, &commit, path);
    let bytes = match file_answer(request, head, &commit, &entry) {
        Ok(bytes) => bytes,
        Err(done) => return Ok(*done),
    };
    let Some(sha256) = entry.sha256.as_deref() else {
        return Ok(internal(&Error::internal(format!(
            "the catalog names no blob for {path}"
        ))));
    };
    // From the blob by its name in `blobs/`, never through the view's link (which anyone
    // with write access to the view could point elsewhere).
    let body = match cache.store().open_blob(sha256) {
        Ok(file) => Body::File(FileBody::new(file, bytes.start, bytes.len)),
        // Removed (gc, delete) since the look-up: it is no longer cached.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Entry),
        Err(e) => {
            let blob = cache.store().blob_path(sha256);
            return Ok(internal(&Error::io("could not open", &blob, e)));
        }
    };
    Ok(bytes.with_body(body))
}

fn with_headers(mut response: Answer, status: StatusCode, headers: HeaderMap) -> Answer {
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    response
}

/// The cached files of `repo` at `revision`, or the Hub's `404` for what the cache lacks.
pub(crate) fn cached_snapshot(
    cache: &ModelCache,
    repo: &str,
    revision: &str,
) -> Result<Snapshot, Box<Answer>> {
    match lookup::snapshot(cache, repo, revision) {
        Ok(Ok(snapshot)) => Ok(snapshot),
        Ok(Err(miss)) => Err(Box::new(not_found(miss, repo, revision, None))),
        Err(e) => Err(Box::new(internal(&e))),
    }
}

/// `GET /api/models/{repo}[/revision/{revision}]`: what `model_info`/`repo_info` read (`sha` is
/// what `snapshot_download` resolves the revision to), with `?blobs=true` sizes and hashes.
pub(crate) fn model_info(snapshot: &Snapshot, repo: &str, blobs: bool) -> Answer {
    let siblings: Vec<Value> = snapshot
        .files
        .iter()
        .map(|entry| {
            let mut sibling = json!({ "rfilename": entry.path });
            if blobs {
                let file = file_json(entry);
                sibling["size"] = json!(entry.size);
                sibling["blobId"] = file["oid"].clone();
                if let Some(lfs) = file.get("lfs") {
                    sibling["lfs"] = json!({
                        "sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]
                    });
                }
            }
            sibling
        })
        .collect();
    let mut info = json!({
        "id": repo,
        "modelId": repo,
        "sha": snapshot.commit,
        "private": false,
        "disabled": false,
        "gated": false,
        "tags": [],
        "downloads": 0,
        "likes": 0,
        "siblings": siblings,
    });
    if let Some(task) = &snapshot.task {
        info["pipeline_tag"] = json!(task);
    }
    if blobs {
        info["usedStorage"] = json!(snapshot.files.iter().map(|f| f.size).sum::<u64>());
    }
    json(StatusCode::OK, &info)
}

/// A file as the tree and paths-info list it. As the Hub does: `size` is the file's size,
/// `oid` the blob git stores (for LFS files, the pointer), `lfs` the real content.
fn file_json(entry: &Entry) -> Value {
    match (entry.is_lfs(), entry.lfs_pointer()) {
        (true, Some((pointer_oid, pointer_size))) => json!({
            "type": "file",
            "oid": pointer_oid,
            "size": entry.size,
            "lfs": { "oid": entry.sha256, "size": entry.size, "pointerSize": pointer_size },
            "path": entry.path,
        }),
        _ => json!({
            "type": "file", "oid": entry.etag(), "size": entry.size, "path": entry.path
        }),
    }
}

/// A folder as the listings give it. Its `oid` is a stable id of the folder at that commit,
/// not git's tree id: the cache may hold only part of the folder, so the tree id of what it
/// holds would not be the Hub's anyway.
fn folder_json(commit: &str, path: &str) -> Value {
    let id = crate::digest::git_blob_sha1(format!("tabcache-folder\0{commit}\0{path}").as_bytes());
    json!({ "type": "directory", "oid": crate::digest::to_hex(&id), "size": 0, "path": path })
}

/// Every folder that holds a cached file, at any depth.
fn folders(snapshot: &Snapshot) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    for entry in &snapshot.files {
        let mut path = entry.path.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            if !out.insert(parent) {
                break;
            }
            path = parent;
        }
    }
    out
}

/// What a tree request asks, besides the repo and revision.
pub(crate) struct TreeQuery<'a> {
    /// The folder listed, "" for the root.
    pub(crate) path: &'a str,
    pub(crate) recursive: bool,
    pub(crate) cursor: Option<&'a str>,
    pub(crate) page_size: usize,
    /// The URL of this listing without its query, for the `Link` to the next page.
    pub(crate) url: String,
    /// The query without `cursor`, kept on the next page's URL.
    pub(crate) query: Vec<String>,
}

/// `GET /api/models/{repo}/tree/{revision}[/{path}]`, paginated with `Link: <...>; rel="next"`
/// as the Hub does (huggingface_hub follows it), the cursor being the index of the next entry.
pub(crate) fn tree(snapshot: &Snapshot, repo: &str, revision: &str, q: &TreeQuery<'_>) -> Answer {
    let folders = folders(snapshot);
    let prefix = if q.path.is_empty() {
        String::new()
    } else if folders.contains(q.path) {
        format!("{}/", q.path)
    } else {
        return not_found(Miss::Entry, repo, revision, Some(q.path));
    };
    let in_scope = |path: &str| {
        path.strip_prefix(prefix.as_str())
            .is_some_and(|rest| q.recursive || !rest.contains('/'))
    };
    let mut entries: Vec<(&str, Value)> = folders
        .iter()
        .filter(|f| in_scope(f))
        .map(|f| (*f, folder_json(&snapshot.commit, f)))
        .chain(
            snapshot
                .files
                .iter()
                .filter(|e| in_scope(&e.path))
                .map(|e| (e.path.as_str(), file_json(e))),
        )
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let start = match q.cursor.map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                None,
                "invalid cursor: follow the Link header of the previous page",
            )
        }
    };
    let page_size = q.page_size.max(1);
    let more = start.saturating_add(page_size) < entries.len();
    let page: Vec<Value> = entries
        .into_iter()
        .skip(start)
        .take(page_size)
        .map(|(_, v)| v)
        .collect();
    let mut answer = json(StatusCode::OK, &Value::Array(page));
    if more {
        let mut query = q.query.clone();
        query.push(format!("cursor={}", start + page_size));
        let link = format!("<{}?{}>; rel=\"next\"", q.url, query.join("&"));
        if let Ok(value) = HeaderValue::from_str(&link) {
            answer.headers_mut().insert(header::LINK, value);
        }
    }
    answer
}

/// `POST /api/models/{repo}/paths-info/{revision}`: the files and folders among `paths` that
/// the snapshot holds, in the order asked; the others are left out, as the Hub does. The
/// caller has validated `paths`.
pub(crate) fn paths_info(snapshot: &Snapshot, paths: &[String]) -> Answer {
    let folders = folders(snapshot);
    let found: Vec<Value> = paths
        .iter()
        .filter_map(|path| {
            if let Some(entry) = snapshot.files.iter().find(|e| &e.path == path) {
                Some(file_json(entry))
            } else {
                folders
                    .contains(path.as_str())
                    .then(|| folder_json(&snapshot.commit, path))
            }
        })
        .collect();
    json(StatusCode::OK, &Value::Array(found))
}
