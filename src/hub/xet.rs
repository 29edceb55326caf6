//! The HTTP side of Xet: the read token the Hub hands out for a repo's Xet storage
//! (`GET /api/models/{repo}/xet-read-token/{rev}`, under the Hub token like any API call),
//! and the CAS's JSON answers (reconstructions), under that Xet token. The Xet token goes
//! only to the CAS named with it, and the Hub token never goes to the CAS; xorb bytes come
//! from presigned URLs through the ordinary [`FileSource`](super::FileSource), which sends no
//! token to another origin.
//!
//! What the answers mean (terms, fetch info, their checks) is `crate::xet`'s business; this
//! module only moves and decodes them.

use serde::Deserialize;

use super::http::{Method, JSON_REQUEST};
use super::status::{display_url, Subject};
use super::url::quote;
use super::HubClient;
use crate::error::{Error, ErrorKind, Result};
use crate::validate;

/// A reconstruction of even a 1 TB file is a few MB of JSON; more is not a real answer.
const MAX_CAS_JSON: u64 = 64 << 20;

/// Access to a repo's Xet storage, from the Hub.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct XetToken {
    #[serde(rename = "accessToken")]
    pub access_token: String,
    /// Unix seconds after which the CAS refuses the token.
    pub exp: i64,
    /// The CAS base URL, without a trailing `/`.
    #[serde(rename = "casUrl")]
    pub cas_url: String,
}

impl std::fmt::Debug for XetToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XetToken")
            .field("access_token", &"<redacted>")
            .field("exp", &self.exp)
            .field("cas_url", &self.cas_url)
            .finish()
    }
}

/// A CAS answer: the document, or a refusal of the token (401/403: it expired or was
/// revoked; a fresh one may be accepted).
pub enum CasAnswer<T> {
    Document(T),
    TokenRefused,
}

impl HubClient {
    /// `GET /api/models/{repo_id}/xet-read-token/{revision}`: a token for the CAS holding the
    /// repo's Xet-backed files, and where that CAS is. Retried like every API call.
    ///
    /// # Errors
    /// As model info: the repo or revision missing, the token refused or the repo gated,
    /// offline mode, the network; [`ErrorKind::Http`] for an answer that is not a token.
    pub fn xet_token(&self, repo_id: &str, revision: &str) -> Result<XetToken> {
        validate::repo_id(repo_id)?;
        validate::revision(revision)?;
        let http = &self.http;
        http.ensure_online(&format!("get Xet access for '{repo_id}'"))?;
        let url = format!(
            "{}/api/models/{repo_id}/xet-read-token/{}",
            self.endpoint(),
            quote(revision, "")
        );
        let subject = Subject {
            repo_id: Some(repo_id),
            revision: Some(revision),
            path: None,
        };
        let mut token: XetToken = http.config.retry.run(&self.watch, || {
            let hop = http.check(http.send(Method::Get, &url, JSON_REQUEST)?, subject)?;
            hop.read_json(MAX_CAS_JSON, "Xet read token")
        })?;
        let bad = |why: &str| {
            Error::new(
                ErrorKind::Http,
                format!(
                    "the Hub at {} sent a Xet read token with {why}; the server (or a proxy in between) is at fault",
                    display_url(&url)
                ),
            )
        };
        token.cas_url = token.cas_url.trim_end_matches('/').to_string();
        if !(token.cas_url.starts_with("http://") || token.cas_url.starts_with("https://")) {
            return Err(bad("a CAS URL that is not http(s)"));
        }
        if token.access_token.is_empty()
            || token
                .access_token
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' ')
        {
            return Err(bad("an empty or malformed access token"));
        }
        Ok(token)
    }

    /// GET a CAS JSON document at `url` with the Xet `token` (never the Hub token), asking for
    /// bytes `range` (start, end exclusive) of the file when given. One request: the caller
    /// retries, because only it knows when to get a fresh token instead.
    ///
    /// # Errors
    /// The mapped status (5xx and 429 transient, with `Retry-After`), the network, or
    /// [`ErrorKind::Http`] for a body that is not the document.
    pub fn cas_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        token: &XetToken,
        range: Option<(u64, u64)>,
        what: &str,
    ) -> Result<CasAnswer<T>> {
        self.http.ensure_online(what)?;
        let bearer = format!("Bearer {}", token.access_token);
        let range = range.map(|(start, end)| format!("bytes={start}-{}", end.saturating_sub(1)));
        let mut headers = JSON_REQUEST.to_vec();
        headers.push(("authorization", bearer.as_str()));
        if let Some(range) = &range {
            headers.push(("range", range.as_str()));
        }
        let hop = self.http.send_own_auth(Method::Get, url, &headers)?;
        if matches!(hop.status(), 401 | 403) {
            return Ok(CasAnswer::TokenRefused);
        }
        let hop = self.http.check(hop, Subject::default())?;
        // The access token is in no answer, but an echoing server must not leak it.
        let document = hop
            .read_json(MAX_CAS_JSON, what)
            .map_err(|e| e.redact(&token.access_token))?;
        Ok(CasAnswer::Document(document))
    }
}
