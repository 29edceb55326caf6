//! The one place requests leave the process: a shared ureq agent (connection pool, timeouts,
//! user agent), the rule that the token goes only to the endpoint's own origin, redirects
//! followed by hand so that rule holds on every hop, network faults turned into [`Error`]s,
//! and responses checked against [`status::error_for_status`].

use std::io::Read;

use ureq::http::Response;
use ureq::{Agent, Body};

use super::config::HubConfig;
use super::status::{self, display_url, Subject};
use super::url::{self, server_name, Origin};
use crate::error::{Error, ErrorKind, Result};

/// More hops than any real chain (Hub -> renamed repo -> CDN -> storage) needs.
pub const MAX_REDIRECTS: usize = 10;
/// An error body is only read for its message.
const MAX_ERROR_BODY: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// The client's connection to the world; shared by every clone of a `HubClient`.
pub struct Http {
    agent: Agent,
    pub config: HubConfig,
}

/// One response, with the URL that produced it and whether the token went with it.
pub struct Hop {
    pub url: String,
    pub response: Response<Body>,
    pub token_sent: bool,
    /// A HEAD response has no body to read, whatever its Content-Length says.
    pub head: bool,
}

impl Http {
    pub fn new(config: HubConfig) -> Http {
        // Redirects are ours to follow (per-hop auth) and statuses ours to map. The per-read
        // timeout restarts on every socket read: it is the stall timeout, covering both the
        // wait for headers and every read of a body, without limiting a long healthy transfer.
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(config.user_agent.as_str())
            .timeout_resolve(Some(config.connect_timeout))
            .timeout_connect(Some(config.connect_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .timeout_per_write(Some(config.read_timeout))
            .max_idle_connections_per_host(16)
            .build()
            .new_agent();
        Http { agent, config }
    }

    /// The error every network operation returns in offline mode, before any connection.
    pub fn ensure_online(&self, what: &str) -> Result<()> {
        if !self.config.offline {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Offline,
            format!(
                "cannot {what}: offline mode is on (HF_HUB_OFFLINE or the offline option) and the data is not cached; \
                 turn offline mode off to fetch it"
            ),
        ))
    }

    /// Whether a request to `url` carries the token: only to the endpoint's own origin.
    fn token_for(&self, url: &str) -> Option<&str> {
        let token = self.config.token.as_deref()?;
        (Origin::of(url).as_ref() == Some(&self.config.endpoint_origin)).then_some(token)
    }

    /// Send one request, redirects not followed.
    pub fn send_hop(&self, method: Method, url: &str, headers: &[(&str, &str)]) -> Result<Hop> {
        self.send_hop_as(method, url, headers, self.token_for(url))
    }

    /// Send one request that carries its own `authorization` among `headers` (a Xet token
    /// to its CAS): the Hub token is never added, whatever the origin. Redirects not followed.
    pub fn send_own_auth(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Hop> {
        self.send_hop_as(method, url, headers, None)
    }

    fn send_hop_as(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        token: Option<&str>,
    ) -> Result<Hop> {
        let mut request = match method {
            Method::Get => self.agent.get(url),
            Method::Head => self.agent.head(url),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request
            .call()
            .map_err(|err| self.transport_error(err, url))?;
        Ok(Hop {
            url: url.to_string(),
            response,
            token_sent: token.is_some(),
            head: matches!(method, Method::Head),
        })
    }

    /// Send a request and follow its redirects (each hop under the token rule), returning
    /// the first response that is not a redirect, whatever its status.
    pub fn send(&self, method: Method, url: &str, headers: &[(&str, &str)]) -> Result<Hop> {
        let mut hop = self.send_hop(method, url, headers)?;
        for _ in 0..MAX_REDIRECTS {
            match hop.redirect_target() {
                None => return Ok(hop),
                Some(next) => hop = self.send_hop(method, &next?, headers)?,
            }
        }
        Err(too_many_redirects(url))
    }

    /// Map a ureq failure (no usable response) to a Network error, retryable when the
    /// fault is of the kind that goes away.
    pub fn transport_error(&self, err: ureq::Error, url: &str) -> Error {
        let place = display_url(url);
        let offline_hint = "check your network connection, proxy and HF_ENDPOINT; to use only what is cached, set HF_HUB_OFFLINE=1";
        match err {
            ureq::Error::Timeout(which) => Error::new(
                ErrorKind::Network,
                format!(
                    "timed out ({which}) talking to {place}: no data for {:?} (read timeout) or no connection within {:?} (connect timeout); {offline_hint}",
                    self.config.read_timeout, self.config.connect_timeout
                ),
            )
            .transient(None),
            ureq::Error::HostNotFound => Error::new(
                ErrorKind::Network,
                format!("could not resolve the host of {place}; {offline_hint}"),
            )
            .transient(None),
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_) => Error::new(
                ErrorKind::Network,
                format!("connection to {place} failed ({err}); {offline_hint}"),
            )
            .transient(None),
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                Error::invalid(format!("cannot request {place}: {err}"))
            }
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => Error::new(
                ErrorKind::Network,
                format!("TLS failure talking to {place} ({err}): check the system clock and any proxy that intercepts HTTPS"),
            ),
            other => Error::new(ErrorKind::Http, format!("request to {place} failed: {other}")),
        }
    }

    /// Remove the token from a message the server could have echoed it into.
    pub fn scrub(&self, err: Error) -> Error {
        match &self.config.token {
            Some(token) => err.redact(token),
            None => err,
        }
    }

    /// The hop as it is when its status is a success or redirect; else the mapped error.
    pub fn check(&self, hop: Hop, subject: Subject<'_>) -> Result<Hop> {
        let status = hop.status();
        if status < 400 {
            return Ok(hop);
        }
        let url = hop.url.clone();
        let token_sent = hop.token_sent;
        let encoding = hop.header("content-encoding");
        let (parts, body) = hop.response.into_parts();
        let mut text = Vec::new();
        // A broken (or oddly encoded) error body still leaves the status to report.
        if !hop.head {
            if let Ok(reader) = decoded(body, encoding.as_deref(), &url, "error") {
                let _ = reader.take(MAX_ERROR_BODY).read_to_end(&mut text);
            }
        }
        let err =
            status::error_for_status(status, &parts.headers, &text, &url, subject, token_sent)
                .unwrap_or_else(|| Error::internal("status mapping disagreed with itself"));
        Err(self.scrub(err))
    }
}

impl Hop {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        status::header(self.response.headers(), name)
    }

    pub fn is_redirect(&self) -> bool {
        matches!(self.status(), 301 | 302 | 303 | 307 | 308)
    }

    /// Where a redirect points, resolved against this hop's URL; None if not a redirect.
    pub fn redirect_target(&self) -> Option<Result<String>> {
        if !self.is_redirect() {
            return None;
        }
        Some(match self.header("location") {
            Some(location) => url::join(&self.url, &location),
            None => Err(Error::new(
                ErrorKind::Http,
                format!(
                    "the server answered {} without a Location for {}",
                    self.status(),
                    display_url(&self.url)
                ),
            )),
        })
    }

    /// Read the body as JSON of type `T`, at most `limit` bytes once decoded (a small gzip
    /// body must not expand without bound). `what` names the document for the message when
    /// the server sent something else.
    pub fn read_json<T: serde::de::DeserializeOwned>(self, limit: u64, what: &str) -> Result<T> {
        let url = self.url.clone();
        let too_large = || {
            Error::new(
                ErrorKind::Http,
                format!(
                    "the server at {} sent a {what} larger than {limit} bytes; refusing to read it",
                    display_url(&url)
                ),
            )
        };
        let encoding = self.header("content-encoding");
        let reader = decoded(self.response.into_body(), encoding.as_deref(), &url, what)?;
        let mut bytes = Vec::new();
        reader
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|err| match ureq::Error::from(err) {
                ureq::Error::BodyExceedsLimit(_) => too_large(),
                err => Error::new(
                    ErrorKind::Network,
                    format!("reading {what} from {} failed: {err}", display_url(&url)),
                )
                .transient(None),
            })?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        serde_json::from_slice(&bytes).map_err(|err| {
            Error::new(
                ErrorKind::Http,
                format!(
                    "the server at {} sent an invalid {what} ({err}); the server (or a proxy in between) is at fault, not the request",
                    display_url(&url)
                ),
            )
        })
    }
}

/// The body of a JSON (or error) response as its bytes were meant: gzip is the one encoding
/// asked for besides identity (see [`JSON_ENCODINGS`]), and decoded here rather than by ureq,
/// which would decode file transfers too without saying so. The caller caps the decoded size.
fn decoded(body: Body, encoding: Option<&str>, url: &str, what: &str) -> Result<Box<dyn Read>> {
    let raw = body.into_reader();
    match encoding.map(str::trim) {
        None | Some("") => Ok(Box::new(raw)),
        Some(e) if e.eq_ignore_ascii_case("identity") => Ok(Box::new(raw)),
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => {
            Ok(Box::new(flate2::read::MultiGzDecoder::new(raw)))
        }
        Some(other) => Err(Error::new(
            ErrorKind::Http,
            format!(
                "the server at {} sent a {what} with Content-Encoding {:?}, which was not asked for (only {JSON_ENCODINGS}); \
                 the server (or a proxy in between) is at fault",
                server_name(url),
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// The `Accept-Encoding` of API requests (model info, tree listings): their JSON compresses
/// well, and [`decoded`] undoes it.
pub const JSON_ENCODINGS: &str = "gzip, identity";

/// The headers of every Hub API request for JSON.
pub const JSON_REQUEST: &[(&str, &str)] = &[
    ("accept", "application/json"),
    ("accept-encoding", JSON_ENCODINGS),
];

pub fn too_many_redirects(url: &str) -> Error {
    Error::new(
        ErrorKind::Http,
        format!("more than {MAX_REDIRECTS} redirects starting at {}: the server is redirecting in a loop", display_url(url)),
    )
}
