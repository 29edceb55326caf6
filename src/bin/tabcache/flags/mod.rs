//! The command line's arguments: clap's definitions of the global flags and the commands
//! (with the exit codes `--help` lists), the one-line form of a usage error, and (`token`)
//! the access token the flags give.

mod token;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tabcache::maintenance::DEFAULT_STALE_PARTIAL_AGE;

pub use token::{serve_token, token};

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
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the access token from FILE ("-": standard input), which keeps it out of the
    /// process list (for serve: the token its clients must send)
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Make no network request; answer from the cache only
    #[arg(long, global = true)]
    pub offline: bool,
    /// Set the cache's disk budget (e.g. 50GB, 20GiB), kept for every process; least recently
    /// used variants are evicted to stay within it. For prune: the size to prune to, this once
    #[arg(long, global = true, value_name = "SIZE", env = "TABCACHE_MAX_SIZE")]
    pub max_size: Option<String>,
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
    /// Keep a repo (or one of its variants) from eviction by the disk budget
    Pin { repo: String, quant: Option<String> },
    /// Undo `pin`
    Unpin { repo: String, quant: Option<String> },
    /// Evict least recently used variants now: to --max-size (else the budget) and/or those
    /// unused for --older-than days
    Prune {
        /// Also evict what was last used more than DAYS ago
        #[arg(long, value_name = "DAYS")]
        older_than: Option<f64>,
        /// Only list what would be evicted
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the cache over HTTP as a Hugging Face endpoint (HF_ENDPOINT, env.remoteHost)
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
}

const SERVE_HELP: &str = "\
Prints `serving http://HOST:PORT` on stdout once it listens (with --json: {\"serving\": URL}),
then one line per request on stderr (JSON lines with --json; none with --quiet). Ctrl-C or
SIGTERM stops it (exit 0). Other tabcache commands and programs may use the cache meanwhile.

For serve, --token-file names the token clients must send (`Authorization: Bearer`, as
huggingface_hub sends HF_TOKEN); the Hub token of pull-through comes from
--upstream-token-file, else HF_TOKEN, else the huggingface_hub token file.

  HF_ENDPOINT=http://127.0.0.1:8765 python -c 'from huggingface_hub import snapshot_download; ...'";

#[derive(Args)]
pub struct ServeArgs {
    /// Address to bind; anything but loopback needs --token-file (or --insecure-no-token)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind (0: any free port; the `serving` line tells which)
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// A browser origin that may read from the server (CORS), matched exactly, e.g.
    /// chrome-extension://<id> or http://localhost:5173; `*` allows every origin (repeatable)
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// A Host name clients may use besides the loopback ones, e.g. a team's cache-host
    /// (repeatable)
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Serve only what is cached: never fetch a missing file from the Hub
    #[arg(long)]
    pub no_pull_through: bool,
    /// Serve a non-loopback --host without a token: anyone who can reach it reads the cache
    #[arg(long)]
    pub insecure_no_token: bool,
    /// Read the Hub token for pull-through from FILE ("-": standard input)
    #[arg(long, value_name = "FILE")]
    pub upstream_token_file: Option<PathBuf>,
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

/// The bytes `--max-size` (or TABCACHE_MAX_SIZE) gives.
pub fn max_size(cli: &Cli) -> Result<Option<u64>, tabcache::Error> {
    cli.max_size
        .as_deref()
        .map(|text| {
            tabcache::parse_byte_size(text).map_err(|e| {
                tabcache::Error::invalid(format!(
                    "--max-size (or TABCACHE_MAX_SIZE): {}",
                    e.message()
                ))
            })
        })
        .transpose()
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
