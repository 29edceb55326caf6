//! `tabcache scan`: the library's manifest of a repo, as a table of its variants.

use indicatif::HumanBytes;
use tabcache::ModelCache;

use super::CmdResult;
use crate::interrupt;
use crate::output::{print_table, short, Output};

pub fn scan(out: &Output, cache: &ModelCache, repo: &str, revision: Option<&str>) -> CmdResult {
    let manifest = interrupt::cancellable(|cancel| {
        cache.scan_repo_with_progress(repo, revision, Some(cancel))
    })?;
    if out.json {
        out.emit_json(&manifest);
        return Ok(());
    }
    println!(
        "{} @ {} (commit {}){}",
        manifest.repo_id,
        manifest.revision,
        short(&manifest.commit),
        manifest
            .task
            .as_deref()
            .map(|t| format!(", task {t}"))
            .unwrap_or_default()
    );
    let rows: Vec<[String; 4]> = manifest
        .quants
        .iter()
        .map(|(key, q)| {
            [
                key.clone(),
                q.files.len().to_string(),
                q.total_size
                    .map_or("?".into(), |s| HumanBytes(s).to_string()),
                q.status.as_str().to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no model variants");
    } else {
        print_table(&["KEY", "FILES", "SIZE", "STATUS"], &rows);
    }
    for (name, files) in &manifest.addons {
        println!("add-on {name}: {}", files.join(", "));
    }
    Ok(())
}
