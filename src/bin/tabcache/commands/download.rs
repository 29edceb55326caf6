//! `tabcache download`: scan the repo, take the library's default variant when neither a
//! variant nor a file is named, and fetch the variant and the named files as one library
//! request while drawing its progress; then say what is cached, and where.

use std::time::Duration;

use indicatif::HumanBytes;
use serde::Serialize;
use tabcache::{CachedFile, Error, ErrorKind, Manifest, ModelCache};

use super::{with_hint, CmdResult};
use crate::flags::DownloadArgs;
use crate::interrupt;
use crate::output::Output;
use crate::progress::Bars;

/// The `--json` answer.
#[derive(Serialize)]
struct DownloadReport<'a> {
    repo_id: &'a str,
    revision: &'a str,
    commit: Option<&'a str>,
    quant: Option<&'a str>,
    quant_defaulted: bool,
    files: &'a [CachedFile],
    total_bytes: u64,
}

/// `tabcache download`: scan, pick the variant (the library's default when none is named),
/// fetch it and the named files in one library request, print what is where. Long but linear:
/// each step is one library call and its CLI wording.
pub fn download(out: &Output, cache: &ModelCache, args: &DownloadArgs) -> CmdResult {
    let repo = args.repo.as_str();
    let scanned = interrupt::cancellable(|cancel| {
        cache.scan_repo_with_progress(repo, args.revision.as_deref(), Some(cancel))
    });
    let manifest = match scanned {
        Ok(m) => Some(m),
        // Named files may be cached already; let each one answer for itself.
        Err(e)
            if e.kind() == ErrorKind::Offline && args.quant.is_none() && !args.files.is_empty() =>
        {
            None
        }
        Err(e) => return Err(e.into()),
    };
    let quant = match (args.quant.as_deref(), &manifest) {
        (Some(q), _) => Some(q),
        (None, Some(m)) if args.files.is_empty() => {
            let q = default_variant(m)?;
            let keys: Vec<&str> = m.quants.keys().map(String::as_str).collect();
            out.note(format!(
                "no QUANT given: downloading {q} (of {})",
                keys.join(", ")
            ));
            Some(q)
        }
        _ => None,
    };
    // At the scanned commit, so that the variant and the named files are of one snapshot.
    let commit = manifest.as_ref().map(|m| m.commit.as_str());
    let at = commit.or(args.revision.as_deref());
    let files: Vec<&str> = args.files.iter().map(String::as_str).collect();
    let bars = Bars::new(out);
    let fetched = cache.download_request(
        repo,
        quant,
        &files,
        at,
        Some(&mut |loaded, total| {
            bars.overall(loaded, total);
            interrupt::until_interrupted(loaded, total)
        }),
        Some(&mut |event| bars.file(event)),
    );
    bars.finish();
    if !out.quiet {
        for note in cache.take_notes() {
            eprintln!("note: {note}");
        }
    }
    if interrupt::is_interrupted() {
        // The library already waited (briefly) for its transfers to save their resume state;
        // one stuck on a silent server is not worth holding the user's terminal for.
        cache.wait_idle(Duration::from_millis(200));
        return Err(interrupt::interrupted().into());
    }
    let fetched = fetched?;
    // Saturating: the sizes add up what servers said.
    let total_bytes = fetched
        .iter()
        .fold(0u64, |sum, f| sum.saturating_add(f.size));
    if out.json {
        out.emit_json(&DownloadReport {
            repo_id: repo,
            revision: args
                .revision
                .as_deref()
                .unwrap_or(tabcache::DEFAULT_REVISION),
            commit,
            quant,
            quant_defaulted: args.quant.is_none() && quant.is_some(),
            files: &fetched,
            total_bytes,
        });
        return Ok(());
    }
    let what = quant.map(|q| format!(" {q}")).unwrap_or_default();
    println!(
        "{repo}{what}: {} file(s), {}",
        fetched.len(),
        HumanBytes(total_bytes)
    );
    if let Some(dir) = cache.snapshot_dir(repo, at)? {
        println!("{}", dir.display());
    }
    Ok(())
}

/// The library's choice of variant, with how to name one (or files) on this command line.
fn default_variant(manifest: &Manifest) -> Result<&str, Error> {
    manifest.default_variant().map_err(|e| {
        let repo = &manifest.repo_id;
        let how = match e.kind() {
            ErrorKind::EntryNotFound => format!("as in `tabcache download {repo} --file PATH`"),
            _ => format!("as in `tabcache download {repo} QUANT`"),
        };
        with_hint(e, &how)
    })
}
