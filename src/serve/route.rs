//! Which Hub endpoint a request path names: `/{repo}/resolve/{revision}/{path}`,
//! `/api/models/{repo}[/revision/{revision}]`, `/api/models/{repo}/tree/{revision}[/{path}]` and
//! `/api/models/{repo}/paths-info/{revision}`, with one- or two-part repo ids. Each segment is
//! percent-decoded on its own (so `refs%2Fpr%2F1` is one revision), then the repo id, revision
//! and path go through `crate::validate`, the checks every other entry point uses: an encoded
//! `..`, an absolute path or an empty segment is refused here, before any look-up.

use percent_encoding::percent_decode_str;

use crate::error::Result;
use crate::validate;
use crate::DEFAULT_REVISION;

/// A request the server knows how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Resolve {
        repo: String,
        revision: String,
        path: String,
    },
    Info {
        repo: String,
        revision: String,
    },
    Tree {
        repo: String,
        revision: String,
        /// The folder listed, "" for the repo's root.
        path: String,
    },
    PathsInfo {
        repo: String,
        revision: String,
    },
}

const API_PREFIX: &str = "/api/models/";

/// The route of `path` (the URL path, without the query): `Ok(None)` when no endpoint has that
/// shape, `Err` (InvalidArgument) when one does but a name in it is malformed or hostile.
pub(crate) fn parse(path: &str) -> Result<Option<Route>> {
    let route = match path.strip_prefix(API_PREFIX) {
        Some(rest) => parse_api(rest.strip_suffix('/').unwrap_or(rest))?,
        None => parse_resolve(path)?,
    };
    if let Some(route) = &route {
        check(route)?;
    }
    Ok(route)
}

fn parse_api(rest: &str) -> Result<Option<Route>> {
    let segments: Vec<&str> = rest.split('/').collect();
    // The keyword after `org/name` (index 2), else after a legacy one-part `name` (index 1).
    let keyword = [2, 1].into_iter().find(|&i| {
        segments.len() > i + 1 && matches!(segments[i], "revision" | "tree" | "paths-info")
    });
    let Some(i) = keyword else {
        if (1..=2).contains(&segments.len()) {
            return Ok(Some(Route::Info {
                repo: join(&segments)?,
                revision: DEFAULT_REVISION.to_string(),
            }));
        }
        return Ok(None);
    };
    let repo = join(&segments[..i])?;
    let revision = decode(segments[i + 1])?;
    let rest = &segments[i + 2..];
    Ok(match segments[i] {
        "revision" if rest.is_empty() => Some(Route::Info { repo, revision }),
        "paths-info" if rest.is_empty() => Some(Route::PathsInfo { repo, revision }),
        "tree" => Some(Route::Tree {
            repo,
            revision,
            path: join(rest)?,
        }),
        _ => None,
    })
}

fn parse_resolve(path: &str) -> Result<Option<Route>> {
    let Some(rest) = path.strip_prefix('/') else {
        return Ok(None);
    };
    let segments: Vec<&str> = rest.split('/').collect();
    // `org/name/resolve/...` first, so a repo named `resolve` in an org still routes.
    let Some(i) = [2, 1]
        .into_iter()
        .find(|&i| segments.len() > i + 2 && segments[i] == "resolve")
    else {
        return Ok(None);
    };
    Ok(Some(Route::Resolve {
        repo: join(&segments[..i])?,
        revision: decode(segments[i + 1])?,
        path: join(&segments[i + 2..])?,
    }))
}

/// Decode each segment and join them with `/`. An encoded `/` inside a segment stays a `/` in
/// the result, so `a%2F..%2Fb` meets the same `..` check as `a/../b`.
fn join(segments: &[&str]) -> Result<String> {
    let decoded: Result<Vec<String>> = segments.iter().map(|s| decode(s)).collect();
    Ok(decoded?.join("/"))
}

fn decode(segment: &str) -> Result<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| crate::Error::invalid("the request path is not UTF-8 once decoded"))
}

fn check(route: &Route) -> Result<()> {
    let (repo, revision, path) = match route {
        Route::Resolve {
            repo,
            revision,
            path,
        } => (repo, revision, Some(path)),
        Route::Tree {
            repo,
            revision,
            path,
        } => (repo, revision, Some(path).filter(|p| !p.is_empty())),
        Route::Info { repo, revision } | Route::PathsInfo { repo, revision } => {
            (repo, revision, None)
        }
    };
    validate::repo_id(repo)?;
    validate::revision(revision)?;
    if let Some(path) = path {
        validate::repo_path(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(repo: &str, revision: &str, path: &str) -> Option<Route> {
        Some(Route::Resolve {
            repo: repo.into(),
            revision: revision.into(),
            path: path.into(),
        })
    }

    #[test]
    fn resolve_routes() {
        assert_eq!(
            parse("/org/name/resolve/main/onnx/model.onnx").unwrap(),
            resolve("org/name", "main", "onnx/model.onnx")
        );
        assert_eq!(
            parse("/org/name/resolve/refs%2Fpr%2F1/config.json").unwrap(),
            resolve("org/name", "refs/pr/1", "config.json")
        );
        assert_eq!(
            parse("/gpt2/resolve/main/config.json").unwrap(),
            resolve("gpt2", "main", "config.json")
        );
        assert_eq!(
            parse("/org/resolve/resolve/main/f").unwrap(),
            resolve("org/resolve", "main", "f")
        );
        assert_eq!(parse("/org/name/blob/main/x").unwrap(), None);
        assert_eq!(parse("/").unwrap(), None);
    }

    #[test]
    fn api_routes() {
        assert_eq!(
            parse("/api/models/org/name").unwrap(),
            Some(Route::Info {
                repo: "org/name".into(),
                revision: "main".into()
            })
        );
        assert_eq!(
            parse("/api/models/org/name/revision/v1.0").unwrap(),
            Some(Route::Info {
                repo: "org/name".into(),
                revision: "v1.0".into()
            })
        );
        assert_eq!(
            parse("/api/models/org/name/tree/main/onnx/").unwrap(),
            Some(Route::Tree {
                repo: "org/name".into(),
                revision: "main".into(),
                path: "onnx".into()
            })
        );
        assert_eq!(
            parse("/api/models/gpt2/tree/main").unwrap(),
            Some(Route::Tree {
                repo: "gpt2".into(),
                revision: "main".into(),
                path: "".into()
            })
        );
        assert_eq!(
            parse("/api/models/org/name/paths-info/main").unwrap(),
            Some(Route::PathsInfo {
                repo: "org/name".into(),
                revision: "main".into()
            })
        );
        assert_eq!(parse("/api/models/a/b/c/d").unwrap(), None);
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "/org/name/resolve/main/../x",
            "/org/name/resolve/main/%2e%2e/x",
            "/org/name/resolve/main/a%2F..%2F..%2Fx",
            "/org/name/resolve/main//etc/passwd",
            "/org/name/resolve/main/%2Fetc%2Fpasswd",
            "/org/name/resolve/..%2F..%2Fx/config.json",
            "/org/%2e%2e/resolve/main/config.json",
            "/api/models/org/name/tree/main/../..",
            "/org/name/resolve/main/a%00b",
            "/org/name/resolve/main/%ff",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
