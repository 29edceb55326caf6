//! The tokens the flags give: the Hub access token from `--token` (with the warning it
//! deserves), `--token-file` (read with the checks a secret on disk needs), or none, which
//! leaves the library to look at HF_TOKEN and the huggingface_hub token file; and for `serve`,
//! the token its clients must send.

use std::io::Read;
use std::path::Path;

use tabcache::Error;

use super::{Cli, Command};

/// A token file holds one token; anything longer than this is not one.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// The Hub token the flags give (`None`: the library looks at HF_TOKEN and the token file).
/// For `serve`, `--token-file` is the clients' token instead ([`serve_token`]), and the Hub's
/// comes from `--upstream-token-file`.
pub fn token(cli: &Cli) -> Result<Option<String>, Error> {
    if let Command::Serve(args) = &cli.command {
        // `--token ""` (send no Hub token) says nothing about clients: it stays allowed.
        if let Some(token) = &cli.token {
            if token.is_empty() {
                return Ok(Some(String::new()));
            }
            return Err(Error::invalid(
                "serve takes no --token: give the Hub token with --upstream-token-file FILE (or \
                 HF_TOKEN), and the token clients must send with --token-file FILE",
            ));
        }
        return args
            .upstream_token_file
            .as_deref()
            .map(|path| read_token_file(path, "--upstream-token-file"))
            .transpose();
    }
    // Checked here, not by clap: for `serve` the two flags name different tokens.
    if cli.token.is_some() && cli.token_file.is_some() {
        return Err(Error::invalid(
            "--token and --token-file both give the access token; give only one",
        ));
    }
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
    cli.token_file
        .as_deref()
        .map(|path| read_token_file(path, "--token-file"))
        .transpose()
}

/// For `serve`: the token clients must send, from `--token-file`.
pub fn serve_token(cli: &Cli) -> Result<Option<String>, Error> {
    cli.token_file
        .as_deref()
        .map(|path| read_token_file(path, "--token-file"))
        .transpose()
}

/// The one token in `path` ("-": standard input), given to `flag`.
fn read_token_file(path: &Path, flag: &str) -> Result<String, Error> {
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
            "could not read the token file {shown} given to {flag}: {e}; give a readable file that holds the token"
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::invalid(format!(
            "the token file {shown} given to {flag} is empty; put the token in it (one line)"
        )));
    }
    if text.len() as u64 > MAX_TOKEN_FILE || token.contains(char::is_whitespace) {
        return Err(Error::invalid(format!(
            "the token file {shown} given to {flag} holds more than one token; put only the token in it (one line)"
        )));
    }
    Ok(token.to_string())
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
