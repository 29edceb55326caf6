//! `tabcache verify`: the library re-hashes the blobs (and with --repair fetches damaged
//! files again); this prints its report and fails with exit code 5 when damage remains.

use indicatif::HumanBytes;
use tabcache::ModelCache;

use super::{CmdResult, Failure};
use crate::interrupt;
use crate::output::{short, Output};

pub fn verify(out: &Output, cache: &ModelCache, repo: Option<&str>, repair: bool) -> CmdResult {
    let report =
        interrupt::cancellable(|cancel| cache.verify_with_progress(repo, repair, Some(cancel)))?;
    if out.json {
        out.emit_json(&report);
    } else {
        println!(
            "checked {} blob(s), {}: {} damaged",
            report.blobs_checked,
            HumanBytes(report.bytes_checked),
            report.damaged.len()
        );
        for blob in &report.damaged {
            println!("damaged {}: {}", blob.sha256, blob.problem);
            for f in &blob.files {
                println!("  held {}@{}:{}", f.repo_id, short(&f.commit), f.path);
            }
        }
        for f in &report.repaired {
            println!("repaired {}:{}", f.repo_id, f.path);
        }
    }
    for failure in &report.repair_failed {
        eprintln!(
            "could not repair {}:{}: {}",
            failure.file.repo_id, failure.file.path, failure.error
        );
    }
    if report.ok {
        return Ok(());
    }
    Err(Failure::Damaged(if repair {
        format!(
            "{} file(s) could not be repaired; check the network (or go online) and run `tabcache verify --repair` again",
            report.repair_failed.len()
        )
    } else {
        let files: usize = report.damaged.iter().map(|b| b.files.len()).sum();
        format!(
            "{} damaged blob(s) holding {files} file(s); run `tabcache verify --repair` to fetch them again",
            report.damaged.len()
        )
    }))
}
