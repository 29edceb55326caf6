//! `tabcache stats`: the library's totals for the cache, and where it is.

use indicatif::HumanBytes;
use serde_json::json;
use tabcache::ModelCache;

use super::CmdResult;
use crate::output::Output;

pub fn stats(out: &Output, cache: &ModelCache) -> CmdResult {
    let stats = cache.stats()?;
    if out.json {
        let mut value = serde_json::to_value(stats).expect("stats serialize");
        value["cache_dir"] = json!(cache.cache_dir());
        out.emit_json(&value);
        return Ok(());
    }
    println!("cache        {}", cache.cache_dir().display());
    println!("repos        {}", stats.total_repos);
    println!("files        {}", stats.total_files);
    println!("total size   {}", HumanBytes(stats.total_size));
    println!("on disk      {}", HumanBytes(stats.disk_bytes));
    println!("dedup saved  {}", HumanBytes(stats.dedup_saved_bytes));
    match stats.max_size {
        Some(limit) => println!("budget       {}", HumanBytes(limit)),
        None => println!("budget       none (--max-size SIZE sets one)"),
    }
    println!(
        "evicted      {} unit(s), {}",
        stats.evictions.count,
        HumanBytes(stats.evictions.bytes_freed)
    );
    if let Some(r) = stats.rebuilt {
        println!(
            "rebuilt      {} files of {} repos, at unix time {}",
            r.files, r.repos, r.at
        );
    }
    Ok(())
}
