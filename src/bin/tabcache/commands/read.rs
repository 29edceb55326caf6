//! `tabcache path` and `tabcache cat`: one cached file, by its local path or its bytes on
//! stdout, for other programs. Neither touches the network.

use std::io::Write;

use serde_json::json;
use tabcache::{Error, ErrorKind, ModelCache};

use super::CmdResult;
use crate::output::Output;

/// What the library's "not cached" (None) means on this command line.
fn not_cached(repo: &str, file: &str) -> Error {
    Error::new(
        ErrorKind::EntryNotFound,
        format!("{file} of {repo} is not cached; fetch it with `tabcache download {repo} --file {file}`"),
    )
}

pub fn path(
    out: &Output,
    cache: &ModelCache,
    repo: &str,
    file: &str,
    revision: Option<&str>,
) -> CmdResult {
    let local = cache
        .file_path(repo, file, revision)?
        .ok_or_else(|| not_cached(repo, file))?;
    if out.json {
        out.emit_json(&json!({"repo_id": repo, "file": file, "path": local}));
    } else {
        println!("{}", local.display());
    }
    Ok(())
}

pub fn cat(cache: &ModelCache, repo: &str, file: &str, revision: Option<&str>) -> CmdResult {
    let mut handle = cache
        .open_file(repo, file, revision)?
        .ok_or_else(|| not_cached(repo, file))?;
    let mut stdout = std::io::stdout().lock();
    match std::io::copy(&mut handle, &mut stdout).and_then(|_| stdout.flush()) {
        Ok(()) => Ok(()),
        // The reader went away (`| head`): that is its choice, not our failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::new(
            ErrorKind::Io,
            format!("could not write {file} to stdout: {e}"),
        )
        .into()),
    }
}
