//! The CAS listener, as the Hub's Xet storage answers a downloader: reconstructions
//! (`/v1/reconstructions/{file}` with per-range signed URLs, `/v2/...` with the same ranges in
//! the multi-range shape) behind a bearer access token, and the signed xorb URLs, which serve
//! exactly the byte range they were signed for until they expire, as S3 does.

use serde_json::{json, Map, Value};

use crate::fault::Plan;
use crate::http::Request;
use crate::server::{Body, Response, Shared};
use crate::xet::{unix_now, ReconError};
use xet_format::hash::XetHash;

pub(crate) fn handle_cas(shared: &Shared, request: &Request, plan: &Plan) -> Response {
    if let Some(refused) = Response::unless_read(request) {
        return refused;
    }
    let path = request.path();
    for (prefix, version) in [("/v1/reconstructions/", 1), ("/v2/reconstructions/", 2)] {
        if let Some(hash) = path.strip_prefix(prefix) {
            return reconstruction(shared, request, plan, hash, version);
        }
    }
    if let Some(rest) = path.strip_prefix("/xorb/") {
        // `{prefix}/{hash}`: the Hub's xorbs all live under the `default` prefix.
        if let Some(("default", hash)) = rest.split_once('/') {
            return xorb(shared, request, plan, hash);
        }
    }
    Response::hub_error(404, None, &format!("no CAS route matches {path}"))
}

fn reconstruction(
    shared: &Shared,
    request: &Request,
    plan: &Plan,
    hash: &str,
    version: u8,
) -> Response {
    let xet = &shared.store.xet;
    let repo = request
        .bearer_token()
        .and_then(|token| xet.check_token(token));
    let Some(repo) = repo.filter(|_| !plan.expire_xet_auth) else {
        return Response::hub_error(
            401,
            None,
            "invalid or expired Xet access token: ask the Hub's xet-read-token route for a new one",
        );
    };
    let Ok(file) = hash.parse::<XetHash>() else {
        return Response::hub_error(400, None, &format!("{hash:?} is not a Xet hash"));
    };
    let range = match request.header("range") {
        None => None,
        Some(header) => match parse_file_range(header) {
            Some(range) => Some(range),
            None => return Response::hub_error(400, None, &format!("bad Range {header:?}")),
        },
    };
    let recon = match xet.reconstruct(&file, &repo, range) {
        Ok(recon) => recon,
        Err(ReconError::UnknownFile | ReconError::NotInRepo) => {
            return Response::hub_error(404, None, &format!("no file {hash} in this repo's CAS"));
        }
        Err(ReconError::Unsatisfiable { size }) => {
            return Response::hub_error(
                416,
                None,
                &format!("range beyond the file's {size} bytes"),
            )
            .header("Content-Range", format!("bytes */{size}"));
        }
    };
    let cas = format!("http://{}", shared.cas_addr);
    let terms: Vec<Value> = recon
        .terms
        .iter()
        .map(|term| {
            json!({
                "hash": term.xorb_hash.to_string(),
                "range": {"start": term.chunks.0, "end": term.chunks.1},
                "unpacked_length": term.unpacked_length,
            })
        })
        .collect();
    // One fetch entry per distinct chunk range of a xorb, each URL signed for its bytes.
    let mut fetch: Map<String, Value> = Map::new();
    let mut seen = std::collections::HashSet::new();
    for term in &recon.terms {
        if !seen.insert((term.xorb_hash, term.chunks)) {
            continue;
        }
        let key = term.xorb_hash.to_string();
        let url = format!(
            "{cas}/xorb/default/{key}?{}",
            shared.store.xet.sign(&term.xorb_hash, term.bytes)
        );
        let chunks = json!({"start": term.chunks.0, "end": term.chunks.1});
        let bytes = json!({"start": term.bytes.0, "end": term.bytes.1});
        let entry = if version == 1 {
            json!({"range": chunks, "url": url, "url_range": bytes})
        } else {
            json!({"url": url, "ranges": [{"chunks": chunks, "bytes": bytes}]})
        };
        fetch
            .entry(key)
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("inserted as an array")
            .push(entry);
    }
    let fetch_key = if version == 1 { "fetch_info" } else { "xorbs" };
    Response::json(
        200,
        &json!({
            "offset_into_first_range": recon.offset_into_first_range,
            "terms": terms,
            fetch_key: Value::Object(fetch),
        }),
    )
}

/// S3 answers 403 to a URL whose signature, expiry or range does not hold.
fn forbidden(message: &str) -> Response {
    Response::hub_error(403, None, message)
}

fn xorb(shared: &Shared, request: &Request, plan: &Plan, hash: &str) -> Response {
    let xet = &shared.store.xet;
    let Ok(xorb_hash) = hash.parse::<XetHash>() else {
        return Response::hub_error(404, None, &format!("no xorb {hash:?}"));
    };
    let (Some(range), Some(exp), Some(sig)) = (
        request.query_param("r"),
        request.query_param("exp"),
        request.query_param("sig"),
    ) else {
        return forbidden("the URL is not signed (r, exp and sig are required)");
    };
    let Ok(exp) = exp.parse::<u64>() else {
        return forbidden("bad exp");
    };
    if xet.signature(&xorb_hash, &range, exp) != sig {
        return forbidden("signature does not match");
    }
    if plan.expire_xet_auth || unix_now() >= exp {
        return forbidden("Request has expired");
    }
    let wanted = format!("bytes={range}");
    if request.header("range").map(str::trim) != Some(wanted.as_str()) {
        return forbidden(&format!(
            "this URL is signed for exactly Range: {wanted}, got {:?}",
            request.header("range")
        ));
    }
    let Some((start, end)) = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b)
    else {
        return forbidden("bad signed range");
    };
    let Some((path, xorb_len)) = xet.xorb(&xorb_hash) else {
        return Response::hub_error(404, None, &format!("no xorb {hash}"));
    };
    if end >= xorb_len {
        return Response::hub_error(416, None, "range beyond the xorb")
            .header("Content-Range", format!("bytes */{xorb_len}"));
    }
    let len = end - start + 1;
    let mut response = Response::new(206)
        .header("Content-Type", "application/octet-stream")
        .header("Accept-Ranges", "bytes")
        .header("Content-Range", format!("bytes {start}-{end}/{xorb_len}"));
    response.body = if plan.xet_unknown_scheme && request.method == "GET" {
        // The first chunk record's scheme byte (header byte 4) becomes 7, which no client
        // knows; the bytes are read whole since a served range is at most one xorb (64 MiB).
        match read_range(&path, start, len) {
            Ok(mut bytes) => {
                if bytes.len() > 4 {
                    bytes[4] = 7;
                }
                Body::Bytes(bytes)
            }
            Err(err) => return Response::hub_error(500, None, &format!("reading xorb: {err}")),
        }
    } else {
        Body::File { path, start, len }
    };
    response
}

fn read_range(path: &std::path::Path, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `bytes=a-b` (inclusive) or `bytes=a-`: what a reconstruction accepts (no suffix ranges, no
/// lists; the end may lie past the file, which the answer then stops at).
fn parse_file_range(header: &str) -> Option<(u64, Option<u64>)> {
    let (first, last) = header.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start = first.trim().parse::<u64>().ok()?;
    let last = last.trim();
    if last.is_empty() {
        return Some((start, None));
    }
    let end = last.parse::<u64>().ok()?;
    (end >= start).then_some((start, Some(end)))
}
