//! `tabcache pin`, `unpin` and `prune`: the library's disk budget from the shell, and the
//! eviction lines other commands print when a download made room.

use std::time::Duration;

use indicatif::HumanBytes;
use tabcache::maintenance::{Eviction, LoggedEviction, PruneOptions, PruneReport};
use tabcache::{Error, ModelCache};

use super::CmdResult;
use crate::flags::SECONDS_PER_DAY;
use crate::output::Output;

pub fn pin(
    out: &Output,
    cache: &ModelCache,
    repo: &str,
    quant: Option<&str>,
    on: bool,
) -> CmdResult {
    let changed = if on {
        cache.pin(repo, quant)?
    } else {
        cache.unpin(repo, quant)?
    };
    let what = match quant {
        Some(quant) => format!("{repo} {quant}"),
        None => repo.to_string(),
    };
    if out.json {
        out.emit_json(
            &serde_json::json!({"repo_id": repo, "quant": quant, "pinned": on, "changed": changed}),
        );
        return Ok(());
    }
    let said = match (on, changed) {
        (true, true) => "pinned: the disk budget never evicts it",
        (true, false) => "was already pinned",
        (false, true) => "unpinned",
        (false, false) => "was not pinned",
    };
    println!("{what} {said}");
    Ok(())
}

pub fn prune(
    out: &Output,
    cache: &ModelCache,
    max_size: Option<u64>,
    older_than_days: Option<f64>,
    dry_run: bool,
) -> CmdResult {
    let older_than = older_than_days
        .map(|days| {
            Duration::try_from_secs_f64(days * SECONDS_PER_DAY).map_err(|_| {
                Error::invalid(format!(
                    "--older-than {days} is not a number of days; give 0 or more"
                ))
            })
        })
        .transpose()?;
    let report = cache.prune(PruneOptions {
        max_size,
        older_than,
        dry_run,
    })?;
    if out.json {
        out.emit_json(&report);
        return Ok(());
    }
    let verb = if dry_run { "would evict" } else { "evicted" };
    for eviction in &report.evicted {
        println!("{verb} {}", describe(eviction));
    }
    println!(
        "{verb} {} unit(s), {}; the cache takes {}",
        report.evicted.len(),
        HumanBytes(report.bytes_freed),
        HumanBytes(report.disk_bytes)
    );
    Ok(())
}

/// `org/model Q8_0 (2 file(s), 1.2 GiB)` or `org/model weights.bin (300 KiB)`.
fn describe(e: &Eviction) -> String {
    what(&e.repo_id, e.quant.as_deref(), &e.files, e.bytes_freed)
}

fn what(repo: &str, quant: Option<&str>, files: &[String], bytes: u64) -> String {
    match quant {
        Some(quant) => format!(
            "{repo} {quant} ({} file(s), {})",
            files.len(),
            HumanBytes(bytes)
        ),
        None => format!("{repo} {} ({})", files.join(", "), HumanBytes(bytes)),
    }
}

/// A note for each eviction of `report` (one a new budget made).
pub fn note_pruned(out: &Output, report: &PruneReport) {
    for eviction in &report.evicted {
        out.note(format!(
            "evicted {} to stay within the disk budget",
            describe(eviction)
        ));
    }
}

/// How many evictions the cache has logged so far (to tell, after a command, which are new).
pub fn evictions_so_far(cache: &ModelCache) -> u64 {
    cache.stats().map(|s| s.evictions.count).unwrap_or(0)
}

/// A note for each eviction logged since `before` (see [`evictions_so_far`]).
pub fn note_evictions(out: &Output, cache: &ModelCache, before: u64) {
    let Ok(stats) = cache.stats() else {
        return;
    };
    let new = stats.evictions.count.saturating_sub(before) as usize;
    let recent = &stats.evictions.recent;
    let shown: &[LoggedEviction] = &recent[recent.len().saturating_sub(new)..];
    for e in shown {
        out.note(format!(
            "evicted {} to stay within the disk budget",
            what(&e.repo_id, e.quant.as_deref(), &e.files, e.bytes_freed)
        ));
    }
}
