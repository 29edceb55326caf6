//! The HuggingFace Hub client: model info, recursive file listings, file resolution and byte
//! sources for downloads, spoken exactly as the official clients speak the protocol.
//!
//! [`HubClient`] is cheap to clone and safe to share between threads; all clones share one
//! connection pool. Settings come from [`HubOptions`], then the environment (`HF_ENDPOINT`,
//! `HF_TOKEN`, `HF_HUB_OFFLINE`, ...). The token is sent only to the endpoint's own origin
//! (scheme, host, port), never to a CDN, and never appears in errors or `Debug` output. In
//! offline mode no method opens a connection. Transient failures (connection faults, 408,
//! 429, 5xx) are retried with backoff and jitter, honouring `Retry-After` and `RateLimit`.
//!
//! Stall detection uses ureq's per-read timeout (`timeout_per_read`), which restarts on every
//! socket read: a response (headers or body) that delivers no byte for `read_timeout` is cut,
//! while a slow but live multi-gigabyte transfer is never limited in total.

mod api;

/// Parsers of what a server sends, exposed for the fuzz targets in `fuzz/`; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::api::{parse_model_info, parse_tree_page};
    pub use super::link::next_link;
    pub use super::resolve::{Step, Walk};
    pub use super::source::{parse_content_range, parse_size};
    pub use super::url::server_name;
}

mod config;
mod http;
mod link;
mod resolve;
mod retry;
mod source;
mod status;
mod url;
mod xet;

use std::fmt;
use std::sync::Arc;

pub use api::{ModelInfo, RemoteFile, MAX_TREE_ENTRIES, MAX_TREE_PAGES};
pub use config::{HubOptions, DEFAULT_ENDPOINT};
pub use resolve::ResolvedFile;
pub use source::FileSource;
pub(crate) use url::server_name;
pub use xet::{CasAnswer, XetToken};

use crate::error::Result;
use crate::progress::Watch;
use config::HubConfig;
use http::Http;

/// A handle on one Hub endpoint with its settings and connection pool.
#[derive(Clone)]
pub struct HubClient {
    http: Arc<Http>,
    /// Cancels this client's requests, waits and pagination (see [`HubClient::watched`]).
    watch: Watch,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("config", &self.http.config)
            .finish()
    }
}

impl HubClient {
    /// Settings from `options`, then the process environment, then defaults.
    pub fn new(options: HubOptions) -> Result<HubClient> {
        HubClient::with_env(options, &|name| std::env::var(name).ok())
    }

    /// As [`HubClient::new`] with an explicit environment (a variable lookup), for callers
    /// and tests that must not depend on the process environment.
    pub fn with_env(
        options: HubOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<HubClient> {
        let config = HubConfig::resolve(options, env)?;
        Ok(HubClient {
            http: Arc::new(Http::new(config)),
            watch: Watch::default(),
        })
    }

    /// This client (same settings and connection pool) for work done under `watch`: its
    /// retry waits end and its paginated listings stop as soon as the watch is cancelled,
    /// and listings count their files in it.
    pub(crate) fn watched(&self, watch: &Watch) -> HubClient {
        HubClient {
            http: self.http.clone(),
            watch: watch.clone(),
        }
    }

    /// The endpoint in use, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.http.config.endpoint
    }

    pub fn is_offline(&self) -> bool {
        self.http.config.offline
    }

    /// Whether Xet-backed files are fetched natively (see [`HubOptions::xet`]).
    pub fn uses_xet(&self) -> bool {
        self.http.config.xet
    }

    pub fn has_token(&self) -> bool {
        self.http.config.token.is_some()
    }

    /// `GET /api/models/{repo_id}/revision/{revision}`.
    pub fn model_info(&self, repo_id: &str, revision: &str) -> Result<ModelInfo> {
        api::model_info(&self.http, &self.watch, repo_id, revision)
    }

    /// Every file of the repo at `revision` (pass the commit sha from [`Self::model_info`] so
    /// that all pages describe one commit): `GET /api/models/{repo_id}/tree/{revision}?recursive=true`,
    /// all pages, directories left out, every entry validated.
    pub fn list_files(&self, repo_id: &str, revision: &str) -> Result<Vec<RemoteFile>> {
        api::list_files(&self.http, &self.watch, repo_id, revision)
    }

    /// `HEAD /{repo_id}/resolve/{revision}/{path}`: commit, ETag, size and the URL to GET.
    pub fn resolve(&self, repo_id: &str, revision: &str, path: &str) -> Result<ResolvedFile> {
        resolve::resolve(&self.http, &self.watch, repo_id, revision, path)
    }

    /// The URL of a resolve (`{endpoint}/{repo_id}/resolve/{revision}/{path}`), for callers that
    /// skip the HEAD because they already know the file; inputs are validated.
    pub fn resolve_url(&self, repo_id: &str, revision: &str, path: &str) -> Result<String> {
        crate::validate::repo_id(repo_id)?;
        crate::validate::revision(revision)?;
        crate::validate::repo_path(path)?;
        Ok(format!(
            "{}/{repo_id}/resolve/{}/{}",
            self.endpoint(),
            url::quote(revision, ""),
            url::quote(path, "/")
        ))
    }

    /// A byte source for `url` (usually [`ResolvedFile::url`]) for the downloader.
    pub fn file_source(&self, url: &str) -> FileSource {
        FileSource::new(self.http.clone(), url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(options: HubOptions) -> HubClient {
        HubClient::with_env(options, &|_| None).unwrap()
    }

    #[test]
    fn client_is_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<HubClient>();
        assert_send_sync::<FileSource>();
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = client(HubOptions {
            token: Some("hf_topsecret".into()),
            ..Default::default()
        });
        assert!(c.has_token());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hf_topsecret") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn urls_are_built_with_quoting() {
        let c = client(HubOptions {
            endpoint: Some("http://127.0.0.1:1/".into()),
            ..Default::default()
        });
        assert_eq!(c.endpoint(), "http://127.0.0.1:1");
        assert_eq!(
            c.resolve_url("org/repo", "refs/pr/1", "dir/a b.gguf")
                .unwrap(),
            "http://127.0.0.1:1/org/repo/resolve/refs%2Fpr%2F1/dir/a%20b.gguf"
        );
        assert!(c.resolve_url("org/repo", "main", "../x").is_err());
    }

    #[test]
    fn invalid_names_are_refused_before_any_request() {
        // Port 1 on loopback: a request would fail with Network, not InvalidArgument.
        let c = client(HubOptions {
            endpoint: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        });
        use crate::ErrorKind::InvalidArgument;
        assert_eq!(
            c.model_info("../x", "main").unwrap_err().kind(),
            InvalidArgument
        );
        assert_eq!(
            c.model_info("a/b", "a b").unwrap_err().kind(),
            InvalidArgument
        );
        assert_eq!(
            c.list_files("a/b/c", "main").unwrap_err().kind(),
            InvalidArgument
        );
        assert_eq!(
            c.resolve("a/b", "main", "/etc/passwd").unwrap_err().kind(),
            InvalidArgument
        );
    }

    #[test]
    fn offline_refuses_without_connecting() {
        let c = client(HubOptions {
            endpoint: Some("http://127.0.0.1:1".into()),
            offline: Some(true),
            ..Default::default()
        });
        assert!(c.is_offline());
        let err = c.model_info("a/b", "main").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Offline);
        assert!(err.message().contains("HF_HUB_OFFLINE"), "{err}");
        use crate::download::RangeSource;
        let err = c
            .file_source("http://127.0.0.1:1/x")
            .fetch(None)
            .err()
            .unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::Offline);
    }
}
