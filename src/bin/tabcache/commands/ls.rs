//! `tabcache ls`: the library's listing of the cached repos, or of one repo's cached files,
//! as a table (by name, or largest first).

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
    let rows: Vec<[String; 4]> = repos
        .iter()
        .map(|r| {
            let variants: Vec<String> = r
                .variants
                .iter()
                .map(|v| format!("{} ({})", v.key, v.status.as_str()))
                .collect();
            [
                r.repo_id.clone(),
                r.files.to_string(),
                HumanBytes(r.size).to_string(),
                variants.join(", "),
            ]
        })
        .collect();
    print_table(&["REPO", "FILES", "SIZE", "VARIANTS"], &rows);
    Ok(())
}
