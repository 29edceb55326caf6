//! The access token the flags give: `--token` (with the warning it deserves), `--token-file`
//! (read with the checks a secret on disk needs), or none, which leaves the library to look
//! at HF_TOKEN and the huggingface_hub token file.

use std::io::Read;
use std::path::Path;

use tabcache::Error;

use super::Cli;

/// A token file holds one token; anything longer than this is not one.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

pub fn token(cli: &Cli) -> Result<Option<String>, Error> {
    if let Some(token) = &cli.token {
        if !token.is_empty() {
            // Said even with --quiet: scripts are where a token in argv leaks (cron, CI logs).
            eprintln!(
                "warning: --token puts the token in the process list, where other users of this machine \
                 can read it (ps, /proc); use --token-file FILE or the HF_TOKEN environment variable instead"
            );
        }
        return Ok(Some(token.clone()));
    }
    let Some(path) = &cli.token_file else {
        return Ok(None);
    };
    let shown = path.display();
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_TOKEN_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|file| {
            warn_if_others_can_read(&file, path);
            file.take(MAX_TOKEN_FILE + 1).read_to_string(&mut text)
        })
    };
    read.map_err(|e| {
        Error::invalid(format!(
            "could not read the token file {shown} given to --token-file: {e}; give a readable file that holds the access token"
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::invalid(format!(
            "the token file {shown} given to --token-file is empty; put the access token in it (one line)"
        )));
    }
    if text.len() as u64 > MAX_TOKEN_FILE || token.contains(char::is_whitespace) {
        return Err(Error::invalid(format!(
            "the token file {shown} given to --token-file holds more than one token; put only the access token in it (one line)"
        )));
    }
    Ok(Some(token.to_string()))
}

/// A token file others may read leaks the token as surely as --token does.
fn warn_if_others_can_read(file: &std::fs::File, path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = file.metadata() {
            if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "warning: the token file {} can be read by other users; `chmod 600 {}` keeps the token yours",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
}
