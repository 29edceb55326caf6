//! A test client for Hub-protocol servers (the emulator, and tabcache's own `serve`): a ureq
//! agent that shows every status and redirect as is, and an answer read whole into a
//! [`Reply`]. Shared by the emulator's tests and tabcache's, so both read answers one way.

use std::time::Duration;

/// An agent that never turns a status into an error and never follows a redirect: the test
/// sees exactly what the server sent.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// An answer, whole.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// Read `response` whole (no body for a `head` request; at most 1 GiB).
    pub fn read(mut response: ureq::http::Response<ureq::Body>, head: bool) -> Reply {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = if head {
            Vec::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .unwrap_or_else(|err| panic!("reading the body failed: {err}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn error_code(&self) -> Option<&str> {
        self.header("x-error-code")
    }
}

/// `GET` (or `HEAD`) `url` with extra `headers`, read whole.
pub fn call(agent: &ureq::Agent, method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let response = match method {
        "GET" => {
            let mut request = agent.get(url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.call()
        }
        "HEAD" => {
            let mut request = agent.head(url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.call()
        }
        other => panic!("unsupported method {other}"),
    }
    .unwrap_or_else(|err| panic!("{method} {url} failed: {err}"));
    Reply::read(response, method == "HEAD")
}

/// The recursive tree listing of `repo` at `main` from the hub at `base`: its entries.
pub fn tree(base: &str, repo: &str) -> Vec<serde_json::Value> {
    let url = format!("{base}/api/models/{repo}/tree/main?recursive=true");
    let reply = call(&agent(), "GET", &url, &[]);
    assert_eq!(reply.status, 200, "GET {url}");
    match reply.json() {
        serde_json::Value::Array(entries) => entries,
        other => panic!("GET {url}: not a list: {other}"),
    }
}
