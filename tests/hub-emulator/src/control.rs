//! The `/_emulator/` control endpoints on the API listener, for tests that drive the emulator
//! from another process (Python, C, shell). They are neither logged nor subject to faults.

use std::sync::atomic::Ordering;

use serde::Deserialize;
use serde_json::json;

use crate::fault::{Fault, FaultId};
use crate::http::Request;
use crate::server::{Response, Shared};

pub(crate) const PREFIX: &str = "/_emulator/";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    page_size: Option<usize>,
    tree_redirect: Option<bool>,
    gzip_json: Option<bool>,
    xet_token_ttl: Option<u64>,
    xet_url_ttl: Option<u64>,
}

pub(crate) fn handle(shared: &Shared, request: &Request) -> Response {
    let route = request.path().strip_prefix(PREFIX).unwrap_or("");
    match (request.method.as_str(), route) {
        ("POST", "faults") => match serde_json::from_slice::<Fault>(&request.body) {
            Ok(fault) => {
                let id = shared.faults.lock().unwrap().add(fault);
                Response::json(200, &json!({ "id": id.0 }))
            }
            Err(err) => bad_json("fault", &err),
        },
        ("GET", "faults") => {
            let faults = shared.faults.lock().unwrap().list();
            Response::json(200, &json!(faults))
        }
        ("DELETE", "faults") => {
            shared.faults.lock().unwrap().clear();
            Response::json(200, &json!({ "cleared": true }))
        }
        ("DELETE", route) if route.starts_with("faults/") => {
            match route["faults/".len()..].parse::<u64>() {
                Ok(id) if shared.faults.lock().unwrap().remove(FaultId(id)) => {
                    Response::json(200, &json!({ "removed": id }))
                }
                _ => Response::hub_error(404, None, &format!("no fault {route}")),
            }
        }
        ("GET", "log") => Response::json(200, &json!(*shared.log.lock().unwrap())),
        ("POST", "log/clear") => {
            shared.log.lock().unwrap().clear();
            Response::json(200, &json!({ "cleared": true }))
        }
        ("GET", "stats") => {
            let log = shared.log.lock().unwrap();
            let total: u64 = log.iter().map(|record| record.body_bytes).sum();
            let cdn: u64 = log
                .iter()
                .filter(|record| record.listener == crate::fault::Listener::Cdn)
                .map(|record| record.body_bytes)
                .sum();
            let cas: u64 = log
                .iter()
                .filter(|record| record.listener == crate::fault::Listener::Cas)
                .map(|record| record.body_bytes)
                .sum();
            Response::json(
                200,
                &json!({
                    "requests": log.len(),
                    "bytes_sent_total": total,
                    "bytes_sent_api": total - cdn - cas,
                    "bytes_sent_cdn": cdn,
                    "bytes_sent_cas": cas,
                }),
            )
        }
        ("POST", "settings") => match serde_json::from_slice::<Settings>(&request.body) {
            Ok(settings) => {
                if let Some(page_size) = settings.page_size {
                    shared.page_size.store(page_size.max(1), Ordering::SeqCst);
                }
                if let Some(redirect) = settings.tree_redirect {
                    shared.tree_redirect.store(redirect, Ordering::SeqCst);
                }
                if let Some(gzip) = settings.gzip_json {
                    shared.gzip_json.store(gzip, Ordering::SeqCst);
                }
                if let Some(secs) = settings.xet_token_ttl {
                    shared.store.xet.token_ttl.store(secs, Ordering::SeqCst);
                }
                if let Some(secs) = settings.xet_url_ttl {
                    shared.store.xet.url_ttl.store(secs, Ordering::SeqCst);
                }
                Response::json(200, &json!({ "ok": true }))
            }
            Err(err) => bad_json("settings", &err),
        },
        _ => Response::hub_error(
            404,
            None,
            &format!(
                "unknown control endpoint {} {}; see tests/hub-emulator/README.md",
                request.method,
                request.path()
            ),
        ),
    }
}

fn bad_json(what: &str, err: &serde_json::Error) -> Response {
    Response::hub_error(
        400,
        None,
        &format!("invalid {what} JSON ({err}); see tests/hub-emulator/README.md for the shape"),
    )
}
