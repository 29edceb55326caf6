//! `tabcache rm` (a repo, or one variant's own files) and `tabcache gc` (unreferenced blobs
//! and stale partial downloads): the library removes, this says what went.

use std::time::Duration;

use indicatif::HumanBytes;
use tabcache::{Error, ModelCache};

use super::{not_held, CmdResult};
use crate::flags::SECONDS_PER_DAY;
use crate::output::Output;

pub fn rm(out: &Output, cache: &ModelCache, repo: &str, quant: Option<&str>) -> CmdResult {
    let report = match quant {
        Some(q) => cache.remove_quant(repo, q),
        None => cache.remove_repo(repo),
    }
    .map_err(not_held)?;
    if out.json {
        out.emit_json(&report);
    } else {
        let what = quant.map(|q| format!(" {q}")).unwrap_or_default();
        println!(
            "removed {repo}{what}: {} file(s), freed {}",
            report.files_removed.len(),
            HumanBytes(report.bytes_freed)
        );
    }
    Ok(())
}

pub fn gc(out: &Output, cache: &ModelCache, stale_days: f64) -> CmdResult {
    let stale_after = Duration::try_from_secs_f64(stale_days * SECONDS_PER_DAY).map_err(|_| {
        Error::invalid(format!(
            "--stale-days {stale_days} is not a number of days; give 0 or more, e.g. 7"
        ))
    })?;
    let report = cache.gc(stale_after)?;
    if out.json {
        out.emit_json(&report);
        return Ok(());
    }
    println!(
        "removed {} unreferenced blob(s) and {} stale partial download(s); freed {}",
        report.blobs_removed,
        report.partials_removed,
        HumanBytes(report.bytes_freed)
    );
    if report.partials_kept > 0 {
        out.note(format!(
            "kept {} partial download(s) ({}) younger than {stale_days} days to resume; \
             `tabcache gc --stale-days 0` removes them",
            report.partials_kept,
            HumanBytes(report.partial_bytes_kept)
        ));
    }
    Ok(())
}
