//! `HEAD /{repo_id}/resolve/{revision}/{path}`: which commit a file is at, its ETag (the LFS
//! sha256 or git oid), its size, and where to GET its bytes. The Hub answers LFS files with a
//! redirect to a CDN whose own headers describe the redirect, not the file, so the metadata is
//! read from the Hub's response (`X-Linked-*`) and same-origin hops (renamed repos) are
//! followed with the token, cross-origin ones without it.
//!
//! What a hop claims is checked as it arrives: a size header must be a plain number of at most
//! [`MAX_FILE_SIZE`] (1 PiB), an `X-Linked-Size` and a final `Content-Length` must agree, and
//! the `Content-Length` of an encoded response is no size at all. A refusal names the server
//! (`host:port`) that sent the claim. [`Walk`] holds these rules apart from the network, for
//! the fuzz target in `fuzz/`.

use super::http::{too_many_redirects, Http, Method, MAX_REDIRECTS};
use super::source::{absurd_size, parse_size};
use super::status::{display_url, Subject};
use super::url::{join, quote, server_name, Origin};
use crate::download::MAX_FILE_SIZE;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Watch;
use crate::validate;

/// The answer to a resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// `X-Repo-Commit`: the commit the revision resolved to.
    pub commit: Option<String>,
    /// `X-Linked-Etag`, else `ETag`, without `W/` and quotes: the LFS sha256 for LFS files,
    /// the git blob sha1 otherwise.
    pub etag: String,
    /// `X-Linked-Size`, else the final response's `Content-Length`; at most
    /// [`MAX_FILE_SIZE`].
    pub size: Option<u64>,
    /// The `host:port` that stated `size`, for an error about it to name the right server.
    pub size_from: Option<String>,
    /// Where to GET the bytes: the CDN location when redirected, else the resolve URL.
    pub url: String,
    /// `X-Xet-Hash` (lower-case, 64 hex) of a Xet-backed file: it can be fetched natively.
    pub xet_hash: Option<String>,
}

/// The metadata headers found so far; the first hop that names a field wins, except that a
/// `Content-Length` only counts on a response that is not a redirect.
#[derive(Default)]
struct Found {
    commit: Option<String>,
    linked_etag: Option<String>,
    etag: Option<String>,
    /// With the `host:port` that sent it, for a disagreement to name both servers.
    linked_size: Option<(u64, String)>,
    length: Option<(u64, String)>,
    xet_hash: Option<String>,
}

impl Found {
    /// Take in one hop's headers. A size header that is present must be a number no file
    /// could exceed: a hostile size is refused here, before any caller allocates for it.
    fn read(
        &mut self,
        url: &str,
        redirect: bool,
        header: &dyn Fn(&str) -> Option<String>,
    ) -> Result<()> {
        let server = server_name(url);
        let size = |name: &str| -> Result<Option<(u64, String)>> {
            let Some(value) = header(name) else {
                return Ok(None);
            };
            match parse_size(&value) {
                Some(n) if n <= MAX_FILE_SIZE => Ok(Some((n, server.clone()))),
                Some(n) => Err(absurd_size(&server, name, n)),
                None => Err(Error::new(
                    ErrorKind::Http,
                    format!(
                        "the server at {server} answered the resolve of {} with {name} {:?}, which is not a size; \
                         refusing it (the server or a proxy in between is at fault)",
                        display_url(url),
                        value.chars().take(40).collect::<String>()
                    ),
                )),
            }
        };
        let etag = || {
            header("etag")
                .map(|e| clean_etag(&e))
                .filter(|e| !e.is_empty())
        };
        self.commit = self.commit.take().or_else(|| header("x-repo-commit"));
        // Anything but a hash is ignored (the bridge still serves the file), never trusted.
        self.xet_hash = self.xet_hash.take().or_else(|| {
            header("x-xet-hash")
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| crate::digest::is_hex_of_len(h, 32))
        });
        self.linked_etag = self.linked_etag.take().or_else(|| {
            header("x-linked-etag")
                .map(|e| clean_etag(&e))
                .filter(|e| !e.is_empty())
        });
        if self.linked_size.is_none() {
            self.linked_size = size("x-linked-size")?;
        }
        if !redirect {
            self.etag = self.etag.take().or_else(etag);
            // An encoded body's length is not the file's size.
            let identity =
                header("content-encoding").is_none_or(|e| e.eq_ignore_ascii_case("identity"));
            if self.length.is_none() && identity {
                self.length = size("content-length")?;
            }
        } else if self.etag.is_none() {
            // The Hub puts the file's ETag on its own redirect; a CDN's final ETag may differ.
            self.etag = etag();
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        self.linked_etag.as_ref().or(self.etag.as_ref()).is_some()
            && self.linked_size.as_ref().or(self.length.as_ref()).is_some()
    }

    /// The resolved file, once the hops are read and `url` is where to GET it.
    fn finish(self, start: &str, url: String) -> Result<ResolvedFile> {
        let etag = self.linked_etag.or(self.etag).ok_or_else(|| {
            Error::new(
                ErrorKind::Http,
                format!(
                    "{} answered without an ETag, so it does not look like a Hugging Face Hub; check HF_ENDPOINT and any proxy or firewall between you and the Hub",
                    display_url(start)
                ),
            )
        })?;
        // The commit names a folder of the snapshot view: only a real commit id will do.
        if let Some(commit) = self.commit.as_deref() {
            if !crate::digest::is_hex_of_len(commit, 20) {
                return Err(Error::new(
                    ErrorKind::Http,
                    format!(
                        "{} answered with X-Repo-Commit {:?}, which is not a commit id; refusing it (the server or a proxy in between is at fault)",
                        display_url(start),
                        commit.chars().take(80).collect::<String>()
                    ),
                ));
            }
        }
        if let (Some((linked, hub)), Some((length, server))) = (&self.linked_size, &self.length) {
            if linked != length {
                return Err(Error::new(
                    ErrorKind::Http,
                    format!(
                        "the server at {hub} claimed {linked} bytes (X-Linked-Size) for {} and the server at {server} \
                         {length} bytes (Content-Length): one size claimed is invalid, so neither is used and nothing was downloaded; \
                         the server (or a proxy in between) is at fault",
                        display_url(start)
                    ),
                ));
            }
        }
        Ok(ResolvedFile {
            commit: self.commit.map(|c| c.to_ascii_lowercase()),
            etag,
            size: self
                .linked_size
                .as_ref()
                .or(self.length.as_ref())
                .map(|(n, _)| *n),
            size_from: self.linked_size.or(self.length).map(|(_, server)| server),
            url,
            xet_hash: self.xet_hash,
        })
    }
}

/// A resolve as a walk over its hops, apart from the network so that the fuzz target can
/// drive it: [`Walk::step`] takes one response and says what comes next.
pub struct Walk {
    start: String,
    hub: Option<Origin>,
    found: Found,
    redirects: usize,
}

/// What to do after a hop.
#[derive(Debug)]
pub enum Step {
    /// HEAD this URL next.
    Next(String),
    Done(ResolvedFile),
}

impl Walk {
    pub fn new(start: &str) -> Walk {
        Walk {
            start: start.to_string(),
            hub: Origin::of(start),
            found: Found::default(),
            redirects: 0,
        }
    }

    /// Take in the response to a HEAD of `url` (a status below 400; errors are mapped
    /// before): its headers by name (lower case), trimmed, None when absent or empty.
    pub fn step(
        &mut self,
        url: &str,
        status: u16,
        header: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Step> {
        let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
        self.found.read(url, redirect, header)?;
        if !redirect {
            return self.finish(url.to_string()).map(Step::Done);
        }
        let target = match header("location") {
            Some(location) => join(url, &location)?,
            None => {
                return Err(Error::new(
                    ErrorKind::Http,
                    format!(
                        "the server answered {status} without a Location for {}",
                        display_url(url)
                    ),
                ))
            }
        };
        self.redirects += 1;
        if self.redirects > MAX_REDIRECTS {
            return Err(too_many_redirects(&self.start));
        }
        // Off the Hub the answers describe a CDN object; only ask it when the Hub left
        // something out, since signed CDN URLs need not accept HEAD at all.
        if Origin::of(&target) != self.hub && self.found.complete() {
            return self.finish(target).map(Step::Done);
        }
        Ok(Step::Next(target))
    }

    fn finish(&mut self, url: String) -> Result<ResolvedFile> {
        std::mem::take(&mut self.found).finish(&self.start, url)
    }
}

pub fn resolve(
    http: &Http,
    watch: &Watch,
    repo_id: &str,
    revision: &str,
    path: &str,
) -> Result<ResolvedFile> {
    validate::repo_id(repo_id)?;
    validate::revision(revision)?;
    validate::repo_path(path)?;
    http.ensure_online(&format!("resolve '{path}' in '{repo_id}'"))?;
    let url = format!(
        "{}/{repo_id}/resolve/{}/{}",
        http.config.endpoint,
        quote(revision, ""),
        quote(path, "/")
    );
    let subject = Subject {
        repo_id: Some(repo_id),
        revision: Some(revision),
        path: Some(path),
    };
    http.config
        .retry
        .run(watch, || resolve_once(http, watch, &url, subject))
}

fn resolve_once(
    http: &Http,
    watch: &Watch,
    start: &str,
    subject: Subject<'_>,
) -> Result<ResolvedFile> {
    let headers = [("accept-encoding", "identity")];
    let mut walk = Walk::new(start);
    let mut url = start.to_string();
    loop {
        watch.check()?;
        let hop = http.check(http.send_hop(Method::Head, &url, &headers)?, subject)?;
        match walk.step(&hop.url, hop.status(), &|name| hop.header(name))? {
            Step::Done(resolved) => return Ok(resolved),
            Step::Next(next) => url = next,
        }
    }
}

/// `W/"abc"` -> `abc`.
fn clean_etag(etag: &str) -> String {
    let etag = etag.trim();
    etag.strip_prefix("W/")
        .unwrap_or(etag)
        .trim_matches('"')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "http://127.0.0.1:7/org/m/resolve/main/w.bin";
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    /// One response: its URL, status and headers.
    type Hop<'a> = (&'a str, u16, &'a [(&'a str, &'a str)]);

    /// Walk `hops` as a resolve would; the last must end it.
    fn walk(hops: &[Hop]) -> Result<ResolvedFile> {
        let mut walk = Walk::new(START);
        for (i, (url, status, headers)) in hops.iter().enumerate() {
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            match walk.step(url, *status, &header)? {
                Step::Done(resolved) => {
                    assert_eq!(i, hops.len() - 1, "ended early");
                    return Ok(resolved);
                }
                Step::Next(next) => assert_eq!(next, hops[i + 1].0),
            }
        }
        panic!("the walk did not end")
    }

    fn lfs_redirect<'a>(size: &'a str, etag: &'a str) -> [(&'a str, &'a str); 5] {
        [
            ("location", "http://127.0.0.1:8/cdn/x"),
            ("x-repo-commit", COMMIT),
            ("x-linked-etag", etag),
            ("x-linked-size", size),
            ("etag", "\"pointer\""),
        ]
    }

    #[test]
    fn an_lfs_redirect_is_believed_without_asking_the_cdn() {
        let got = walk(&[(START, 302, &lfs_redirect("1234", "\"abc\""))]).unwrap();
        assert_eq!(got.size, Some(1234));
        assert_eq!(got.etag, "abc");
        assert_eq!(got.url, "http://127.0.0.1:8/cdn/x");
        assert_eq!(got.commit.as_deref(), Some(COMMIT));
    }

    #[test]
    fn sizes_must_be_numbers_no_file_exceeds() {
        for (size, says) in [
            (
                "4611686018427387904",
                "4611686018427387904 bytes (x-linked-size), which is invalid",
            ),
            ("99999999999999999999999", "invalid"),
            ("-1", "not a size"),
            ("1e9", "not a size"),
        ] {
            let err = walk(&[(START, 302, &lfs_redirect(size, "\"abc\""))]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Http, "{err}");
            assert!(
                err.message().contains("the server at 127.0.0.1:7") && err.message().contains(says),
                "{size}: {err}"
            );
        }
        let err = walk(&[(
            START,
            200,
            &[("etag", "\"abc\""), ("content-length", "1125899906842625")],
        )])
        .unwrap_err();
        assert!(
            err.message().contains("(content-length), which is invalid"),
            "{err}"
        );
        // 1 PiB itself is allowed.
        let got = walk(&[(
            START,
            200,
            &[("etag", "a"), ("content-length", "1125899906842624")],
        )]);
        assert_eq!(got.unwrap().size, Some(MAX_FILE_SIZE));
    }

    #[test]
    fn the_hub_and_the_cdn_must_agree_on_the_size() {
        // No ETag on the redirect: the CDN is asked, and its length contradicts the Hub's.
        let redirect = [
            ("location", "http://127.0.0.1:8/cdn/x"),
            ("x-linked-size", "1000"),
        ];
        let cdn = [("etag", "\"abc\""), ("content-length", "999")];
        let err = walk(&[
            (START, 302, &redirect),
            ("http://127.0.0.1:8/cdn/x", 200, &cdn),
        ])
        .unwrap_err();
        assert!(
            err.message()
                .contains("127.0.0.1:7 claimed 1000 bytes (X-Linked-Size)")
                && err.message().contains("127.0.0.1:8")
                && err.message().contains("invalid"),
            "{err}"
        );
        let cdn = [("etag", "\"abc\""), ("content-length", "1000")];
        let got = walk(&[
            (START, 302, &redirect),
            ("http://127.0.0.1:8/cdn/x", 200, &cdn),
        ]);
        assert_eq!(got.unwrap().size, Some(1000));
    }

    #[test]
    fn an_encoded_length_is_no_size_and_an_empty_etag_no_etag() {
        let got = walk(&[(
            START,
            200,
            &[
                ("etag", "\"abc\""),
                ("content-length", "10"),
                ("content-encoding", "gzip"),
            ],
        )])
        .unwrap();
        assert_eq!(got.size, None);
        let err = walk(&[(START, 200, &[("etag", "\"\""), ("content-length", "10")])]).unwrap_err();
        assert!(err.message().contains("without an ETag"), "{err}");
    }

    #[test]
    fn redirects_are_bounded() {
        let mut walk = Walk::new(START);
        let header = |name: &str| (name == "location").then(|| "/again".to_string());
        let mut last = None;
        for _ in 0..=MAX_REDIRECTS {
            last = Some(walk.step("http://127.0.0.1:7/again", 302, &header));
        }
        let err = last.unwrap().unwrap_err();
        assert!(err.message().contains("redirects"), "{err}");
    }

    #[test]
    fn etags_lose_weakness_and_quotes() {
        assert_eq!(clean_etag("W/\"abc\""), "abc");
        assert_eq!(clean_etag("\"abc\""), "abc");
        assert_eq!(clean_etag(" abc "), "abc");
    }
}
