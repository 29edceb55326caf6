//! `tabcache import-hf`: the library adopts a huggingface_hub cache's files; this says what
//! it took and what it skipped.

use std::path::Path;

use indicatif::HumanBytes;
use tabcache::ModelCache;

use super::CmdResult;
use crate::interrupt;
use crate::output::Output;

pub fn import_hf(out: &Output, cache: &ModelCache, dir: Option<&Path>) -> CmdResult {
    let report =
        interrupt::cancellable(|cancel| cache.import_hf_cache_with_progress(dir, Some(cancel)))?;
    if out.verbose > 0 || !out.json {
        for skip in &report.skipped {
            out.note(format!("skipped {}: {}", skip.path.display(), skip.reason));
        }
    }
    if out.json {
        out.emit_json(&report);
        return Ok(());
    }
    println!(
        "imported {} file(s), {}, of {} repo(s) from {} ({} linked, {} copied, {} already cached, {} skipped)",
        report.files_imported,
        HumanBytes(report.bytes_imported),
        report.repos.len(),
        report.hf_cache.display(),
        report.blobs_linked,
        report.blobs_copied,
        report.files_already_cached,
        report.skipped.len()
    );
    Ok(())
}
