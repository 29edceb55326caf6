//! The command line's arguments: clap's definitions of the global flags and the commands
//! (with the exit codes `--help` lists), the one-line form of a usage error, and (`token`)
//! the access token the flags give.

mod token;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tabcache::maintenance::DEFAULT_STALE_PARTIAL_AGE;

pub use token::token;

pub const SECONDS_PER_DAY: f64 = 86_400.0;

/// The exit codes as `--help` tells them; the library's `ErrorKind::exit_code` gives them.
const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    other failure (file system, disk full, internal error)
  2    usage error (bad arguments, invalid repo id or path)
  3    not found (repo, revision, file or variant; or not cached)
  4    network or authentication failure (unreachable, refused token, gated, rate limited)
  5    integrity damage (bytes that do not match their hash; `verify` found damage)
  6    reserved (releases before 0.2: cache locked by another process)
  7    offline mode and the request needs the network
  130  interrupted (Ctrl-C); partial downloads are kept and the next run resumes

Any number of tabcache commands and programs using the library may share one cache at once.
The cache directory is --cache, else $TABCACHE_HOME, else `tabcache` under the platform cache
directory ($XDG_CACHE_HOME or ~/.cache, ~/Library/Caches, %LOCALAPPDATA%).";

/// A model cache for HuggingFace repositories.
#[derive(Parser)]
#[command(name = "tabcache", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Cache directory [default: $TABCACHE_HOME, else <platform cache dir>/tabcache]
    #[arg(long, global = true, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Hub base URL [default: $HF_ENDPOINT, else the public Hub]
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Access token [default: $HF_TOKEN, else the huggingface_hub token file]. Other users of
    /// the machine can read it in the process list: prefer --token-file or HF_TOKEN
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// Read the access token from FILE ("-": standard input), which keeps it out of the
    /// process list
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Make no network request; answer from the cache only
    #[arg(long, global = true)]
    pub offline: bool,
    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only results and errors (no progress, no notes)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say more (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// List a repo's variants (key, files, size, status) from the hub
    Scan {
        repo: String,
        #[arg(long)]
        revision: Option<String>,
    },
    /// Download a variant (default on GGUF repos: Q4_K_M, then Q8_0) and/or single files
    Download(DownloadArgs),
    /// List cached repos, or one repo's cached files
    Ls {
        repo: Option<String>,
        #[arg(long, value_enum, default_value_t = SortKey::Name)]
        sort: SortKey,
    },
    /// Print the local path of a cached file (for other programs)
    Path {
        repo: String,
        file: String,
        #[arg(long)]
        revision: Option<String>,
    },
    /// Write a cached file's bytes to stdout (raw bytes, also with --json)
    Cat {
        repo: String,
        file: String,
        #[arg(long)]
        revision: Option<String>,
    },
    /// Re-hash every blob against its recorded sha256
    Verify {
        repo: Option<String>,
        /// Drop damaged blobs and download their files again
        #[arg(long)]
        repair: bool,
    },
    /// Remove a repo, or only one variant's files that no other variant uses
    Rm {
        repo: String,
        #[arg(long, value_name = "Q")]
        quant: Option<String>,
    },
    /// Remove unreferenced blobs and stale partial downloads; report bytes freed
    Gc {
        /// Partial downloads untouched for this many days are stale; younger ones are kept to
        /// be resumed (0: remove every partial download not in use)
        #[arg(
            long,
            value_name = "DAYS",
            default_value_t = DEFAULT_STALE_PARTIAL_AGE.as_secs_f64() / SECONDS_PER_DAY,
            allow_negative_numbers = true
        )]
        stale_days: f64,
    },
    /// Totals: repos, files, logical and on-disk bytes
    Stats,
    /// Adopt the files of a huggingface_hub cache without downloading them again
    ImportHf {
        /// [default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct DownloadArgs {
    pub repo: String,
    pub quant: Option<String>,
    /// A file of the repo to download (repeatable)
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<String>,
    #[arg(long)]
    pub revision: Option<String>,
    /// Connections per large file
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: Option<u16>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SortKey {
    Name,
    Size,
}

/// clap's first paragraph ("error: ...", maybe with the missing names on the next lines) on
/// one line, pointing at --help: its usage block is what --help is for.
pub fn usage_error(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = first.join(" ");
    let message = message.trim_start_matches("error: ");
    format!("{message}; see `tabcache --help`")
}
