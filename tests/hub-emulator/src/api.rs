//! The Hub protocol: routing `/api/models/...` and `/{repo}/resolve/...` on the API listener
//! and `/cdn/{sha256}` on the CDN listener, access rules, model info, paginated tree listings,
//! resolve redirects and ranged file bodies.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::fault::Plan;
use crate::http::{encode_query_value, parse_range, percent_decode, RangeRequest, Request};
use crate::repo::{valid_file_path, RepoFile, RepoSnapshot, ScanError};
use crate::server::{Body, Response, Shared};

const API_PREFIX: &str = "/api/models/";

enum ApiRoute {
    Info {
        repo_id: String,
        revision: String,
    },
    Tree {
        repo_id: String,
        revision: String,
        subpath: String,
        trailing_slash: bool,
    },
    /// `/api/models/{repo}/xet-read-token/{rev}`: CAS credentials for a Xet repo.
    XetReadToken {
        repo_id: String,
        revision: String,
    },
}

/// The raw segments after `/api/models/`, without a trailing empty one, and whether the path
/// ended in `/`.
fn api_segments(path: &str) -> Option<(Vec<&str>, bool)> {
    let rest = path.strip_prefix(API_PREFIX)?;
    let trailing_slash = rest.ends_with('/');
    let segments = rest.trim_end_matches('/').split('/').collect();
    Some((segments, trailing_slash))
}

/// Where `revision` or `tree` sits: after `org/name` (index 2) or a legacy `name` (index 1).
fn keyword_index(segments: &[&str]) -> Option<usize> {
    [2, 1].into_iter().find(|&index| {
        segments.len() > index + 1
            && matches!(segments[index], "revision" | "tree" | "xet-read-token")
    })
}

pub(crate) fn is_tree_request(path: &str) -> bool {
    api_segments(path)
        .and_then(|(segments, _)| keyword_index(&segments).map(|index| segments[index] == "tree"))
        .unwrap_or(false)
}

fn decode_all(segments: &[&str]) -> Option<Vec<String>> {
    segments
        .iter()
        .map(|segment| percent_decode(segment))
        .collect()
}

fn parse_api_route(path: &str) -> Option<ApiRoute> {
    let (segments, trailing_slash) = api_segments(path)?;
    let Some(index) = keyword_index(&segments) else {
        if (1..=2).contains(&segments.len()) {
            return Some(ApiRoute::Info {
                repo_id: decode_all(&segments)?.join("/"),
                revision: "main".into(),
            });
        }
        return None;
    };
    let repo_id = decode_all(&segments[..index])?.join("/");
    let revision = percent_decode(segments[index + 1])?;
    let rest = decode_all(&segments[index + 2..])?.join("/");
    match segments[index] {
        "revision" if rest.is_empty() => Some(ApiRoute::Info { repo_id, revision }),
        "xet-read-token" if rest.is_empty() => Some(ApiRoute::XetReadToken { repo_id, revision }),
        "tree" => Some(ApiRoute::Tree {
            repo_id,
            revision,
            subpath: rest,
            trailing_slash,
        }),
        _ => None,
    }
}

/// `/{repo_id}/resolve/{revision}/{path}` with a one- or two-part repo id.
fn parse_resolve(path: &str) -> Option<(String, String, String)> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let index = [1, 2]
        .into_iter()
        .find(|&index| segments.len() > index + 2 && segments[index] == "resolve")?;
    let repo_id = decode_all(&segments[..index])?.join("/");
    let revision = percent_decode(segments[index + 1])?;
    let file_path = decode_all(&segments[index + 2..])?.join("/");
    Some((repo_id, revision, file_path))
}

pub(crate) fn handle_api(shared: &Shared, request: &Request, plan: &Plan) -> Response {
    if let Some(refused) = Response::unless_read(request) {
        return refused;
    }
    let path = request.path();
    if path.starts_with(API_PREFIX) {
        return match parse_api_route(path) {
            Some(ApiRoute::Info { repo_id, revision }) => {
                model_info(shared, request, &repo_id, &revision)
            }
            Some(ApiRoute::Tree {
                repo_id,
                revision,
                subpath,
                trailing_slash,
            }) => tree(
                shared,
                request,
                plan,
                &repo_id,
                &revision,
                &subpath,
                trailing_slash,
            ),
            Some(ApiRoute::XetReadToken { repo_id, revision }) => {
                xet_read_token(shared, request, &repo_id, &revision)
            }
            None => not_found(path),
        };
    }
    match parse_resolve(path) {
        Some((repo_id, revision, file_path)) => {
            resolve(shared, request, plan, &repo_id, &revision, &file_path)
        }
        None => not_found(path),
    }
}

fn not_found(path: &str) -> Response {
    Response::hub_error(404, None, &format!("no Hub route matches {path}"))
}

/// Opens a repo for `request` under the access rules; `download` marks resolve requests, the
/// only ones a gated repo refuses unless its config sets `gate_api`.
fn open_repo(
    shared: &Shared,
    request: &Request,
    repo_id: &str,
    download: bool,
) -> Result<RepoSnapshot, Response> {
    let token = request.bearer_token();
    let snapshot = match shared.store.scan(repo_id) {
        Ok(snapshot) => snapshot,
        Err(ScanError::NotFound) => return Err(repo_not_found(repo_id, token.is_some())),
        Err(ScanError::BadConfig(message)) => return Err(Response::hub_error(500, None, &message)),
        Err(ScanError::Io(err)) => {
            return Err(Response::hub_error(
                500,
                None,
                &format!("cannot read repo {repo_id}: {err}"),
            ));
        }
    };
    let config = &snapshot.config;
    let allowed = token.is_some_and(|token| config.tokens.iter().any(|allowed| allowed == token));
    if config.private && !allowed {
        return Err(repo_not_found(repo_id, token.is_some()));
    }
    if config.gated.is_gated() && !allowed && (download || config.gate_api) {
        return Err(match token {
            None => Response::hub_error(
                401,
                Some("GatedRepo"),
                &format!(
                    "Access to model {repo_id} is restricted. You must have access to it and be \
                     authenticated to access it. Please log in."
                ),
            ),
            Some(_) => Response::hub_error(
                403,
                Some("GatedRepo"),
                &format!(
                    "Access to model {repo_id} is restricted and you are not in the authorized \
                     list. Visit the model page to ask for access."
                ),
            ),
        });
    }
    Ok(snapshot)
}

/// HF answers a missing (or hidden private) repo with 401 to anonymous requests and 404 to
/// authenticated ones.
fn repo_not_found(repo_id: &str, authenticated: bool) -> Response {
    let status = if authenticated { 404 } else { 401 };
    Response::hub_error(
        status,
        Some("RepoNotFound"),
        &format!(
            "Repository Not Found for {repo_id}. Please make sure you specified the correct repo \
             id and are authenticated if it is private or gated."
        ),
    )
}

fn check_revision(snapshot: &RepoSnapshot, revision: &str) -> Result<(), Response> {
    if snapshot.resolves(revision) {
        Ok(())
    } else {
        Err(Response::hub_error(
            404,
            Some("RevisionNotFound"),
            &format!("Invalid rev id: {revision}"),
        ))
    }
}

fn model_info(shared: &Shared, request: &Request, repo_id: &str, revision: &str) -> Response {
    let snapshot = match open_repo(shared, request, repo_id, false) {
        Ok(snapshot) => snapshot,
        Err(response) => return response,
    };
    if let Err(response) = check_revision(&snapshot, revision) {
        return response;
    }
    let with_blobs = matches!(request.query_param("blobs").as_deref(), Some("true" | "1"));
    let siblings: Vec<Value> = snapshot
        .files
        .iter()
        .map(|file| {
            let mut sibling = json!({ "rfilename": file.path });
            if with_blobs {
                sibling["size"] = json!(file.size);
                sibling["blobId"] = json!(file.git_oid);
                if let Some(lfs) = lfs_info(file) {
                    sibling["lfs"] = json!({
                        "sha256": file.lfs_sha256, "size": file.size, "pointerSize": lfs.1
                    });
                }
                if let Some(xet_hash) = &file.xet_hash {
                    sibling["xetHash"] = json!(xet_hash);
                }
            }
            sibling
        })
        .collect();
    let config = &snapshot.config;
    let mut info = json!({
        "_id": &crate::data::sha1_hex(repo_id.as_bytes())[..24],
        "id": repo_id,
        "modelId": repo_id,
        "sha": snapshot.commit,
        "gated": config.gated.api_value(),
        "private": config.private,
        "disabled": false,
        "lastModified": iso8601(snapshot.last_modified),
        "tags": config.tags,
        "downloads": 0,
        "likes": 0,
        "siblings": siblings,
    });
    if let Some(task) = &config.pipeline_tag {
        info["pipeline_tag"] = json!(task);
    }
    if with_blobs {
        info["usedStorage"] = json!(snapshot.files.iter().map(|file| file.size).sum::<u64>());
    }
    Response::json(200, &info)
}

fn lfs_info(file: &RepoFile) -> Option<(&str, u64)> {
    file.lfs_sha256
        .as_deref()
        .map(|sha| (sha, file.pointer_size))
}

fn tree_entry(file: &RepoFile) -> Value {
    let mut entry = plain_tree_entry(file);
    if let Some(xet_hash) = &file.xet_hash {
        entry["xetHash"] = json!(xet_hash);
    }
    entry
}

fn plain_tree_entry(file: &RepoFile) -> Value {
    match lfs_info(file) {
        // As HF does, `oid` and `size` describe the pointer git stores; `lfs` the real file.
        Some((sha256, pointer_size)) => json!({
            "type": "file",
            "oid": file.git_oid,
            "size": pointer_size,
            "lfs": { "oid": sha256, "size": file.size, "pointerSize": pointer_size },
            "path": file.path,
        }),
        None => {
            json!({ "type": "file", "oid": file.git_oid, "size": file.size, "path": file.path })
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn tree(
    shared: &Shared,
    request: &Request,
    plan: &Plan,
    repo_id: &str,
    revision: &str,
    subpath: &str,
    trailing_slash: bool,
) -> Response {
    if shared.tree_redirect.load(Ordering::SeqCst) && !trailing_slash {
        // What a proxying mirror does: send the client to the trailing-slash form.
        let query = request.query();
        let location = if query.is_empty() {
            format!("{}/", request.path())
        } else {
            format!("{}/?{query}", request.path())
        };
        return Response::text(
            307,
            format!("Temporary Redirect. Redirecting to {location}"),
        )
        .header("Location", location);
    }
    if let Some(body) = &plan.raw_tree {
        let mut response = Response::new(200).header("Content-Type", "application/json");
        response.body = Body::Bytes(body.clone().into_bytes());
        return response;
    }
    let snapshot = match open_repo(shared, request, repo_id, false) {
        Ok(snapshot) => snapshot,
        Err(response) => return response,
    };
    if let Err(response) = check_revision(&snapshot, revision) {
        return response;
    }
    let recursive = matches!(
        request.query_param("recursive").as_deref(),
        Some("true" | "1" | "True")
    );
    let prefix = if subpath.is_empty() {
        String::new()
    } else if snapshot.dirs.iter().any(|(dir, _)| dir == subpath) {
        format!("{subpath}/")
    } else {
        return Response::hub_error(
            404,
            Some("EntryNotFound"),
            &format!("{subpath} does not exist on \"{revision}\""),
        );
    };
    let in_scope = |path: &str| {
        path.strip_prefix(prefix.as_str())
            .is_some_and(|rest| recursive || !rest.contains('/'))
    };
    let mut entries: Vec<(&str, Value)> = snapshot
        .dirs
        .iter()
        .filter(|(dir, _)| in_scope(dir))
        .map(|(dir, oid)| {
            (
                dir.as_str(),
                json!({ "type": "directory", "oid": oid, "size": 0, "path": dir }),
            )
        })
        .chain(
            snapshot
                .files
                .iter()
                .filter(|file| in_scope(&file.path))
                .map(|file| (file.path.as_str(), tree_entry(file))),
        )
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));

    let cursor = match request.query_param("cursor") {
        None => 0,
        Some(cursor) => match cursor.parse::<usize>() {
            Ok(cursor) => cursor,
            Err(_) => return Response::hub_error(400, None, &format!("invalid cursor {cursor:?}")),
        },
    };
    let page_size = shared.page_size.load(Ordering::SeqCst);
    let more = cursor.saturating_add(page_size) < entries.len();
    let page: Vec<Value> = entries
        .into_iter()
        .skip(cursor)
        .take(page_size)
        .map(|(_, entry)| entry)
        .collect();
    let mut response = Response::json(200, &Value::Array(page));
    if more || plan.endless_pagination {
        let next = next_page_url(shared, request, cursor + page_size);
        response = response.header("Link", format!("<{next}>; rel=\"next\""));
    }
    response
}

fn next_page_url(shared: &Shared, request: &Request, cursor: usize) -> String {
    let host = request
        .header("host")
        .map(str::to_owned)
        .unwrap_or_else(|| shared.api_addr.to_string());
    let mut query: Vec<&str> = request
        .query()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("cursor="))
        .collect();
    let cursor_pair = format!("cursor={cursor}");
    query.push(&cursor_pair);
    format!("http://{host}{}?{}", request.path(), query.join("&"))
}

fn resolve(
    shared: &Shared,
    request: &Request,
    plan: &Plan,
    repo_id: &str,
    revision: &str,
    file_path: &str,
) -> Response {
    let snapshot = match open_repo(shared, request, repo_id, true) {
        Ok(snapshot) => snapshot,
        Err(response) => return response,
    };
    if let Err(response) = check_revision(&snapshot, revision) {
        return response;
    }
    let Some(file) = snapshot
        .file(file_path)
        .filter(|_| valid_file_path(file_path))
    else {
        return Response::hub_error(
            404,
            Some("EntryNotFound"),
            &format!("Entry not found: {file_path} does not exist in {repo_id} at \"{revision}\""),
        );
    };
    match lfs_info(file) {
        Some((sha256, _)) => {
            let location = match &shared.cdn_base {
                Some(base) => format!("{base}/{sha256}"),
                None => format!(
                    "http://{}/cdn/{sha256}?repo={}&file={}",
                    shared.cdn_addr,
                    encode_query_value(repo_id),
                    encode_query_value(&file.path)
                ),
            };
            let mut response = Response::text(302, format!("Found. Redirecting to {location}"))
                .header("Location", location)
                .header("X-Repo-Commit", snapshot.commit.as_str())
                .header("X-Linked-Etag", format!("\"{sha256}\""))
                .header("X-Linked-Size", file.size.to_string())
                .header("ETag", format!("\"{}\"", file.git_oid));
            if let Some(xet_hash) = &file.xet_hash {
                // As the Hub: the hash names the file in the CAS, the route gives its token
                // (pinned to the commit so a token refresh cannot drift to a newer one).
                let route = format!("/api/models/{repo_id}/xet-read-token/{}", snapshot.commit);
                response = response
                    .header("X-Xet-Hash", xet_hash.as_str())
                    .header(
                        "Link",
                        format!("<http://{}{route}>; rel=\"xet-auth\"", shared.api_addr),
                    )
                    .header("X-Xet-Refresh-Route", route);
            }
            response
        }
        None => file_response(
            request,
            plan,
            file.abs.clone(),
            file.size,
            &file.git_oid,
            vec![("X-Repo-Commit".into(), snapshot.commit.clone())],
        ),
    }
}

/// CAS credentials: the same access rules as a download, then a token scoped to the repo.
fn xet_read_token(shared: &Shared, request: &Request, repo_id: &str, revision: &str) -> Response {
    let snapshot = match open_repo(shared, request, repo_id, true) {
        Ok(snapshot) => snapshot,
        Err(response) => return response,
    };
    if let Err(response) = check_revision(&snapshot, revision) {
        return response;
    }
    let (token, exp) = shared.store.xet.issue_token(repo_id);
    let cas_url = format!("http://{}", shared.cas_addr);
    // huggingface_hub reads the headers, hf_xet's own refresh the body: the Hub sends both.
    Response::json(
        200,
        &json!({ "accessToken": token, "exp": exp, "casUrl": cas_url }),
    )
    .header("X-Xet-Cas-Url", cas_url.as_str())
    .header("X-Xet-Access-Token", token.as_str())
    .header("X-Xet-Token-Expiration", exp.to_string())
}

pub(crate) fn handle_cdn(shared: &Shared, request: &Request, plan: &Plan) -> Response {
    if let Some(refused) = Response::unless_read(request) {
        return refused;
    }
    let sha256 = request.path().strip_prefix("/cdn/").unwrap_or("");
    match shared.store.blob(sha256) {
        Some(blob) => file_response(request, plan, blob.abs, blob.size, sha256, Vec::new()),
        None => Response::hub_error(
            404,
            None,
            &format!("no blob {sha256} here: resolve the file first (the blob may have changed)"),
        ),
    }
}

/// A file body honouring `Range` (unless a fault says to ignore it).
fn file_response(
    request: &Request,
    plan: &Plan,
    path: std::path::PathBuf,
    size: u64,
    etag: &str,
    headers: Vec<(String, String)>,
) -> Response {
    let range_header = if plan.ignore_range {
        None
    } else {
        request.header("range")
    };
    let (status, start, len) = match parse_range(range_header, size) {
        RangeRequest::Full => (200, 0, size),
        RangeRequest::Partial { start, len } => (206, start, len),
        RangeRequest::Unsatisfiable => {
            return Response::hub_error(
                416,
                None,
                &format!("range not satisfiable for {size} bytes"),
            )
            .header("Content-Range", format!("bytes */{size}"));
        }
    };
    let mut response = Response::new(status);
    response.headers = headers;
    response = response
        .header("Content-Type", "application/octet-stream")
        .header("Accept-Ranges", "bytes")
        .header("ETag", format!("\"{etag}\""));
    if status == 206 {
        response = response.header(
            "Content-Range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    response.body = Body::File { path, start, len };
    response
}

/// `2024-05-01T12:00:00.000Z`, as the Hub writes timestamps.
fn iso8601(time: SystemTime) -> String {
    let duration = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = duration.as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        duration.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn routes() {
        assert!(matches!(
            parse_api_route("/api/models/org/name/revision/refs%2Fpr%2F1"),
            Some(ApiRoute::Info { repo_id, revision }) if repo_id == "org/name" && revision == "refs/pr/1"
        ));
        assert!(matches!(
            parse_api_route("/api/models/gpt2"),
            Some(ApiRoute::Info { repo_id, revision }) if repo_id == "gpt2" && revision == "main"
        ));
        assert!(matches!(
            parse_api_route("/api/models/gpt2/tree/main/onnx/"),
            Some(ApiRoute::Tree { repo_id, subpath, trailing_slash: true, .. })
                if repo_id == "gpt2" && subpath == "onnx"
        ));
        assert!(is_tree_request("/api/models/org/name/tree/main"));
        assert!(!is_tree_request("/api/models/org/name"));
        assert_eq!(
            parse_resolve("/org/name/resolve/main/onnx/model.onnx"),
            Some(("org/name".into(), "main".into(), "onnx/model.onnx".into()))
        );
        assert_eq!(
            parse_resolve("/gpt2/resolve/main/config.json"),
            Some(("gpt2".into(), "main".into(), "config.json".into()))
        );
        assert_eq!(parse_resolve("/org/name/blob/main/x"), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(iso8601(leap_day), "2024-02-29T12:34:56.789Z");
    }
}
