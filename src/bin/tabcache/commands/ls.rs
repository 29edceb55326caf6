//! `tabcache ls`: the library's listing of the cached repos (with last use and pins), or of
//! one repo's cached files, as a table (by name, or largest first).

use indicatif::HumanBytes;
use tabcache::ModelCache;

use super::{not_held, CmdResult};
use crate::flags::SortKey;
use crate::output::{print_table, short, Output};

pub fn ls(out: &Output, cache: &ModelCache, repo: Option<&str>, sort: SortKey) -> CmdResult {
    let Some(repo) = repo else {
        return ls_repos(out, cache, sort);
    };
    let mut files = cache.list_files(repo).map_err(not_held)?;
    if let SortKey::Size = sort {
        files.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    }
    if out.json {
        out.emit_json(&files);
        return Ok(());
    }
    let rows: Vec<[String; 4]> = files
        .iter()
        .map(|f| {
            [
                f.path.clone(),
                HumanBytes(f.size).to_string(),
                f.variants.join(", "),
                short(&f.commit).to_string(),
            ]
        })
        .collect();
    print_table(&["PATH", "SIZE", "VARIANTS", "COMMIT"], &rows);
    Ok(())
}

fn ls_repos(out: &Output, cache: &ModelCache, sort: SortKey) -> CmdResult {
    let mut repos = cache.list_repos()?;
    if let SortKey::Size = sort {
        repos.sort_by(|a, b| b.size.cmp(&a.size).then(a.repo_id.cmp(&b.repo_id)));
    }
    if out.json {
        out.emit_json(&repos);
        return Ok(());
    }
    if repos.is_empty() {
        println!("the cache is empty; `tabcache download REPO` fills it");
        return Ok(());
    }
    let now = std::time::SystemTime::now();
    let rows: Vec<[String; 5]> = repos
        .iter()
        .map(|r| {
            let variants: Vec<String> = r
                .variants
                .iter()
                .map(|v| {
                    let pin = if v.pinned && !r.pinned {
                        ", pinned"
                    } else {
                        ""
                    };
                    format!("{} ({}{pin})", v.key, v.status.as_str())
                })
                .collect();
            let name = if r.pinned {
                format!("{} (pinned)", r.repo_id)
            } else {
                r.repo_id.clone()
            };
            [
                name,
                r.files.to_string(),
                HumanBytes(r.size).to_string(),
                r.last_used_ms.map_or("-".into(), |ms| ago(now, ms)),
                variants.join(", "),
            ]
        })
        .collect();
    print_table(&["REPO", "FILES", "SIZE", "LAST USED", "VARIANTS"], &rows);
    Ok(())
}

/// `just now`, `5 min ago`, `3 h ago`, `12 days ago`: when a repo was last used.
fn ago(now: std::time::SystemTime, ms: i64) -> String {
    let then = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let secs = now.duration_since(then).map_or(0, |d| d.as_secs());
    match secs {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}
