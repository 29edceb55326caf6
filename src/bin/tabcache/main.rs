//! The `tabcache` command line: glue over the library. `main` parses the flags, opens the
//! cache they name, runs the command and turns its outcome into an exit code. What a command
//! decides (which variant, which files, where they are, what a report says) is the library's:
//! [`ModelCache`] and its maintenance calls. The CLI owns only what a terminal needs:
//!
//! - `flags`: the arguments (clap) and the access token they give;
//! - `commands`: one function per command, a few library calls and the printing of their answer;
//! - `progress`: a download's progress bars, or plain lines when stderr is not a terminal;
//! - `output`: notes, tables, `--json` and error lines;
//! - `interrupt`: Ctrl-C, which cancels through the library's progress callbacks.
//!
//! Exit codes are the library's too: `ErrorKind::exit_code` and `tabcache::error::exit`.

mod commands;
mod flags;
mod interrupt;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;
use tabcache::error::exit;
use tabcache::{CacheOptions, Error, ErrorKind, ModelCache};

use commands::{CmdResult, Failure};
use flags::{Cli, Command};
use output::Output;

fn main() -> ExitCode {
    // Known before parsing, so that a usage error is JSON too when --json was asked for.
    let json_requested = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let code = exit::USAGE;
            output::report_error(json_requested, "usage", &flags::usage_error(&e), code);
            return ExitCode::from(code);
        }
    };
    let out = Output {
        json: cli.json,
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    let failure = match run(&cli, &out) {
        Ok(()) => return ExitCode::SUCCESS,
        Err(failure) => failure,
    };
    let (kind, message, json) = match &failure {
        Failure::Error(e) => (e.kind(), e.message(), out.json),
        // The report itself is already on stdout (as JSON with --json).
        Failure::Damaged(message) => (ErrorKind::Corrupt, message.as_str(), false),
    };
    let code = kind.exit_code();
    output::report_error(json, kind.as_str(), message, code);
    ExitCode::from(code)
}

fn run(cli: &Cli, out: &Output) -> CmdResult {
    let cache = open_cache(cli, out)?;
    match &cli.command {
        Command::Scan { repo, revision } => commands::scan(out, &cache, repo, revision.as_deref()),
        Command::Download(args) => {
            let before = commands::evictions_so_far(&cache);
            let done = commands::download(out, &cache, args);
            commands::note_evictions(out, &cache, before);
            done
        }
        Command::Ls { repo, sort } => commands::ls(out, &cache, repo.as_deref(), *sort),
        Command::Path {
            repo,
            file,
            revision,
        } => commands::path(out, &cache, repo, file, revision.as_deref()),
        Command::Cat {
            repo,
            file,
            revision,
        } => commands::cat(&cache, repo, file, revision.as_deref()),
        Command::Verify { repo, repair } => commands::verify(out, &cache, repo.as_deref(), *repair),
        Command::Rm { repo, quant } => commands::rm(out, &cache, repo, quant.as_deref()),
        Command::Gc { stale_days } => commands::gc(out, &cache, *stale_days),
        Command::Stats => commands::stats(out, &cache),
        Command::ImportHf { dir } => commands::import_hf(out, &cache, dir.as_deref()),
        Command::Pin { repo, quant } => commands::pin(out, &cache, repo, quant.as_deref(), true),
        Command::Unpin { repo, quant } => commands::pin(out, &cache, repo, quant.as_deref(), false),
        Command::Prune {
            older_than,
            dry_run,
        } => commands::prune(out, &cache, flags::max_size(cli)?, *older_than, *dry_run),
        Command::Serve(args) => commands::serve(out, &cache, args, flags::serve_token(cli)?),
    }
}

/// The cache the flags name (else the library's default directory), with the hub and
/// transfer options they give.
fn open_cache(cli: &Cli, out: &Output) -> Result<ModelCache, Error> {
    let dir = match &cli.cache {
        Some(dir) => dir.clone(),
        None => tabcache::default_cache_dir().ok_or_else(|| {
            Error::invalid(
                "no cache directory: HOME is not set; pass --cache DIR or set TABCACHE_HOME",
            )
        })?,
    };
    // Unset flags leave the library's defaults, which read the environment (HF_ENDPOINT,
    // HF_TOKEN, HF_HUB_OFFLINE) as huggingface_hub does.
    let mut options = CacheOptions::default();
    if let Some(url) = &cli.endpoint {
        options = options.endpoint(url.clone());
    }
    if let Some(token) = flags::token(cli)? {
        options = options.token(token);
    }
    if cli.offline {
        options = options.offline(true);
    }

    if let Command::Download(args) = &cli.command {
        if let Some(n) = args.connections {
            options = options.connections(n.into());
        }
    }
    let cache = ModelCache::open(&dir, options)?;
    // For prune, --max-size is the size to prune to this once, not a new budget.
    if !matches!(cli.command, Command::Prune { .. }) {
        if let Some(bytes) = flags::max_size(cli)? {
            if cache.max_size()? != Some(bytes) {
                let report = cache.set_max_size(Some(bytes))?;
                out.note(format!(
                    "disk budget set to {} for every process using this cache",
                    indicatif::HumanBytes(bytes)
                ));
                commands::note_pruned(out, &report);
            }
        }
    }
    if let Some(rebuilt) = cache.rebuilt_on_open() {
        // Said even with --quiet: the catalog was lost, and the user should know why the
        // manifests are gone until the next scan.
        eprintln!(
            "rebuilt the catalog from disk: {} files of {} repos (scan a repo again to restore its variants)",
            rebuilt.files, rebuilt.repos
        );
    }
    if out.verbose > 0 {
        eprintln!(
            "cache {} (hub endpoint {})",
            cache.cache_dir().display(),
            cache.hub().endpoint()
        );
    }
    Ok(cache)
}
