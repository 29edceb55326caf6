//! `HEAD /{repo_id}/resolve/{revision}/{path}`: which commit a file is at, its ETag (the LFS
//! sha256 or git oid), its size, and where to GET its bytes. The Hub answers LFS files with a
//! redirect to a CDN whose own headers describe the redirect, not the file, so the metadata is
//! read from the Hub's response (`X-Linked-*`) and same-origin hops (renamed repos) are
//! followed with the token, cross-origin ones without it.

use super::http::{too_many_redirects, Hop, Http, Method, MAX_REDIRECTS};
use super::status::{display_url, Subject};
use super::url::{quote, Origin};
use crate::error::{Error, ErrorKind, Result};
use crate::validate;

/// The answer to a resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// `X-Repo-Commit`: the commit the revision resolved to.
    pub commit: Option<String>,
    /// `X-Linked-Etag`, else `ETag`, without `W/` and quotes: the LFS sha256 for LFS files,
    /// the git blob sha1 otherwise.
    pub etag: String,
    /// `X-Linked-Size`, else the final response's `Content-Length`.
    pub size: Option<u64>,
    /// Where to GET the bytes: the CDN location when redirected, else the resolve URL.
    pub url: String,
}

/// The metadata headers found so far; the first hop that names a field wins, except that a
/// `Content-Length` only counts on a response that is not a redirect.
#[derive(Default)]
struct Found {
    commit: Option<String>,
    linked_etag: Option<String>,
    etag: Option<String>,
    linked_size: Option<u64>,
    length: Option<u64>,
}

impl Found {
    fn read(&mut self, hop: &Hop) {
        self.commit = self.commit.take().or_else(|| hop.header("x-repo-commit"));
        self.linked_etag = self
            .linked_etag
            .take()
            .or_else(|| hop.header("x-linked-etag").map(|e| clean_etag(&e)));
        self.linked_size = self
            .linked_size
            .or_else(|| hop.header("x-linked-size").and_then(|s| s.parse().ok()));
        if !hop.is_redirect() {
            self.etag = self
                .etag
                .take()
                .or_else(|| hop.header("etag").map(|e| clean_etag(&e)));
            self.length = self
                .length
                .or_else(|| hop.header("content-length").and_then(|s| s.parse().ok()));
        } else if self.etag.is_none() {
            // The Hub puts the file's ETag on its own redirect; a CDN's final ETag may differ.
            self.etag = hop.header("etag").map(|e| clean_etag(&e));
        }
    }

    fn complete(&self) -> bool {
        self.linked_etag.as_ref().or(self.etag.as_ref()).is_some()
            && self.linked_size.or(self.length).is_some()
    }
}

pub fn resolve(http: &Http, repo_id: &str, revision: &str, path: &str) -> Result<ResolvedFile> {
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
    http.config.retry.run(|| resolve_once(http, &url, subject))
}

fn resolve_once(http: &Http, start: &str, subject: Subject<'_>) -> Result<ResolvedFile> {
    let headers = [("accept-encoding", "identity")];
    let hub = Origin::of(start);
    let mut found = Found::default();
    let mut hop = http.check(http.send_hop(Method::Head, start, &headers)?, subject)?;
    let mut redirects = 0;
    let url = loop {
        found.read(&hop);
        let Some(target) = hop.redirect_target() else {
            break hop.url;
        };
        let target = target?;
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            return Err(too_many_redirects(start));
        }
        // Off the Hub the answers describe a CDN object; only ask it when the Hub left
        // something out, since signed CDN URLs need not accept HEAD at all.
        if Origin::of(&target) != hub && found.complete() {
            break target;
        }
        hop = http.check(http.send_hop(Method::Head, &target, &headers)?, subject)?;
    };
    let etag = found.linked_etag.or(found.etag).ok_or_else(|| {
        Error::new(
            ErrorKind::Http,
            format!(
                "{} answered without an ETag, so it does not look like a Hugging Face Hub; check HF_ENDPOINT and any proxy or firewall between you and the Hub",
                display_url(start)
            ),
        )
    })?;
    // The commit names a folder of the snapshot view: only a real commit id will do.
    if let Some(commit) = found.commit.as_deref() {
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
    Ok(ResolvedFile {
        commit: found.commit.map(|c| c.to_ascii_lowercase()),
        etag,
        size: found.linked_size.or(found.length),
        url,
    })
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
    use super::clean_etag;

    #[test]
    fn etags_lose_weakness_and_quotes() {
        assert_eq!(clean_etag("W/\"abc\""), "abc");
        assert_eq!(clean_etag("\"abc\""), "abc");
        assert_eq!(clean_etag(" abc "), "abc");
    }
}
