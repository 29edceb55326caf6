//! The `tabcache` command line: a thin layer over [`ModelCache`] and its maintenance calls.
//! It owns only what a terminal needs: argument parsing, the default cache directory, progress
//! bars (or plain lines when stderr is not a terminal), Ctrl-C, human tables, `--json` output
//! and the mapping of error kinds to exit codes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use tabcache::download::TransferOptions;
use tabcache::hub::HubOptions;
use tabcache::maintenance::{FileListing, RepoListing, VerifyReport, DEFAULT_STALE_PARTIAL_AGE};
use tabcache::{CacheOptions, Error, ErrorKind, FileEvent, Manifest, ModelCache};

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NOT_FOUND: u8 = 3;
const EXIT_NETWORK: u8 = 4;
const EXIT_DAMAGED: u8 = 5;
const EXIT_LOCKED: u8 = 6;
const EXIT_OFFLINE: u8 = 7;
const EXIT_INTERRUPTED: u8 = 130;

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
struct Cli {
    /// Cache directory [default: $TABCACHE_HOME, else <platform cache dir>/tabcache]
    #[arg(long, global = true, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Hub base URL [default: $HF_ENDPOINT, else the public Hub]
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// Access token [default: $HF_TOKEN, else the huggingface_hub token file]. Other users of
    /// the machine can read it in the process list: prefer --token-file or HF_TOKEN
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// Read the access token from FILE ("-": standard input), which keeps it out of the
    /// process list
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Make no network request; answer from the cache only
    #[arg(long, global = true)]
    offline: bool,
    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    json: bool,
    /// Print only results and errors (no progress, no notes)
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Say more (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List a repo's variants (key, files, size, status) from the hub
    Scan {
        repo: String,
        #[arg(long)]
        revision: Option<String>,
    },
    /// Download a variant (default on GGUF repos: Q4_K_M, then Q8_0) and/or single files
    Download {
        repo: String,
        quant: Option<String>,
        /// A file of the repo to download (repeatable)
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<String>,
        #[arg(long)]
        revision: Option<String>,
        /// Connections per large file
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
        connections: Option<u16>,
    },
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

#[derive(Clone, Copy, ValueEnum)]
enum SortKey {
    Name,
    Size,
}

/// Set by SIGINT; the progress callbacks of long commands read it and cancel. The library
/// calls them at least every 200 ms whatever it is doing, so Ctrl-C ends a command within a
/// second.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The progress callback of a command that shows no progress: it only cancels on Ctrl-C.
fn until_interrupted(_loaded: u64, _total: u64) -> bool {
    !INTERRUPTED.load(Ordering::Relaxed)
}

/// What an interrupted command ends with (exit code 130).
fn interrupted() -> Error {
    Error::new(
        ErrorKind::Cancelled,
        "interrupted; partial downloads are kept: run the same command again to resume",
    )
}

/// `result`, with a cancellation by Ctrl-C worded as [`interrupted`].
fn unless_interrupted<T>(result: Result<T, Error>) -> Result<T, Error> {
    match result {
        Err(e) if e.kind() == ErrorKind::Cancelled && INTERRUPTED.load(Ordering::Relaxed) => {
            Err(interrupted())
        }
        other => other,
    }
}

const SECONDS_PER_DAY: f64 = 86_400.0;

#[cfg(unix)]
extern "C" fn on_sigint(_signal: libc::c_int) {
    // A second Ctrl-C means "stop now": partial state is durable at every point anyway.
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(EXIT_INTERRUPTED as libc::c_int) };
    }
}

fn install_sigint_handler() {
    #[cfg(unix)]
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// How a command failed: the error, or damage it found and reported (`verify`).
enum Failure {
    Error(Error),
    Damaged(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

type CmdResult = Result<(), Failure>;

struct Ctx {
    json: bool,
    quiet: bool,
    verbose: u8,
}

impl Ctx {
    /// A note for the person at the terminal (stderr), unless quiet.
    fn note(&self, text: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", text.as_ref());
        }
    }

    fn emit_json(&self, value: &impl Serialize) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, value);
        let _ = writeln!(out);
    }
}

fn main() -> ExitCode {
    let json_requested = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's first paragraph ("error: ...", maybe with the missing names on the next
            // lines) on one line; its usage block is what --help is for.
            let rendered = e.render().to_string();
            let first: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = first.join(" ");
            let message = message.trim_start_matches("error: ");
            report_error(
                json_requested,
                "usage",
                &format!("{message}; see `tabcache --help`"),
                EXIT_USAGE,
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let ctx = Ctx {
        json: cli.json,
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    match run(&cli, &ctx) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Damaged(message)) => {
            // The report itself is already on stdout (as JSON with --json).
            report_error(false, "corrupt", &message, EXIT_DAMAGED);
            ExitCode::from(EXIT_DAMAGED)
        }
        Err(Failure::Error(e)) => {
            let code = exit_code(e.kind());
            report_error(ctx.json, e.kind().as_str(), e.message(), code);
            ExitCode::from(code)
        }
    }
}

/// One line on stderr; with `--json`, also the error as JSON on stdout.
fn report_error(json: bool, kind: &str, message: &str, code: u8) {
    if json {
        let value = json!({"error": {"kind": kind, "message": message, "exit_code": code}});
        println!("{value}");
    }
    eprintln!("error: {}", message.replace('\n', " "));
}

fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidArgument => EXIT_USAGE,
        ErrorKind::RepoNotFound | ErrorKind::RevisionNotFound | ErrorKind::EntryNotFound => {
            EXIT_NOT_FOUND
        }
        ErrorKind::GatedRepo
        | ErrorKind::Unauthorized
        | ErrorKind::RateLimited
        | ErrorKind::Network
        | ErrorKind::Http => EXIT_NETWORK,
        ErrorKind::Corrupt => EXIT_DAMAGED,
        ErrorKind::Locked => EXIT_LOCKED,
        ErrorKind::Offline => EXIT_OFFLINE,
        ErrorKind::Cancelled => EXIT_INTERRUPTED,
        ErrorKind::Io | ErrorKind::DiskFull | ErrorKind::Internal => EXIT_FAILURE,
    }
}

/// `$TABCACHE_HOME`, else `tabcache` under the platform's per-user cache directory.
fn default_cache_dir() -> Option<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env("TABCACHE_HOME") {
        return Some(PathBuf::from(dir));
    }
    let base = if cfg!(windows) {
        env("LOCALAPPDATA").map(PathBuf::from)
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| PathBuf::from(h).join("Library").join("Caches"))
    } else {
        env("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
    }?;
    Some(base.join("tabcache"))
}

/// A token file holds one token; anything longer than this is not one.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// The token the command line gives: --token (with the warning it deserves), --token-file,
/// or none (the library then looks at HF_TOKEN and the huggingface_hub token file).
fn cli_token(cli: &Cli) -> Result<Option<String>, Error> {
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
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::io::stdin().lock(), MAX_TOKEN_FILE + 1),
            &mut text,
        )
    } else {
        std::fs::File::open(path).and_then(|file| {
            warn_if_others_can_read(&file, path);
            std::io::Read::read_to_string(
                &mut std::io::Read::take(file, MAX_TOKEN_FILE + 1),
                &mut text,
            )
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
fn warn_if_others_can_read(file: &std::fs::File, path: &std::path::Path) {
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

fn open_cache(cli: &Cli, ctx: &Ctx, connections: Option<u16>) -> Result<ModelCache, Error> {
    let dir = match &cli.cache {
        Some(dir) => dir.clone(),
        None => default_cache_dir().ok_or_else(|| {
            Error::invalid(
                "no cache directory: HOME is not set; pass --cache DIR or set TABCACHE_HOME",
            )
        })?,
    };
    let mut transfer = TransferOptions::default();
    if let Some(n) = connections {
        transfer.connections = n as usize;
    }
    let options = CacheOptions {
        hub: HubOptions {
            endpoint: cli.endpoint.clone(),
            token: cli_token(cli)?,
            offline: cli.offline.then_some(true),
            ..HubOptions::default()
        },
        transfer,
        parallel_files: 0,
    };
    let cache = ModelCache::open(&dir, options)?;
    if let Some(rebuilt) = cache.rebuilt_on_open() {
        // Said even with --quiet: the catalog was lost, and the user should know why the
        // manifests are gone until the next scan.
        eprintln!(
            "rebuilt the catalog from disk: {} files of {} repos (scan a repo again to restore its variants)",
            rebuilt.files, rebuilt.repos
        );
    }
    if ctx.verbose > 0 {
        eprintln!(
            "cache {} (hub endpoint {})",
            cache.cache_dir().display(),
            cache.hub().endpoint()
        );
    }
    Ok(cache)
}

fn run(cli: &Cli, ctx: &Ctx) -> CmdResult {
    let connections = match &cli.command {
        Command::Download { connections, .. } => *connections,
        _ => None,
    };
    let cache = open_cache(cli, ctx, connections)?;
    match &cli.command {
        Command::Scan { repo, revision } => scan(ctx, &cache, repo, revision.as_deref()),
        Command::Download {
            repo,
            quant,
            files,
            revision,
            ..
        } => download(
            ctx,
            &cache,
            repo,
            quant.as_deref(),
            files,
            revision.as_deref(),
        ),
        Command::Ls { repo, sort } => ls(ctx, &cache, repo.as_deref(), *sort),
        Command::Path {
            repo,
            file,
            revision,
        } => path(ctx, &cache, repo, file, revision.as_deref()),
        Command::Cat {
            repo,
            file,
            revision,
        } => cat(&cache, repo, file, revision.as_deref()),
        Command::Verify { repo, repair } => verify(ctx, &cache, repo.as_deref(), *repair),
        Command::Rm { repo, quant } => rm(ctx, &cache, repo, quant.as_deref()),
        Command::Gc { stale_days } => {
            let stale_after =
                Duration::try_from_secs_f64(stale_days * SECONDS_PER_DAY).map_err(|_| {
                    Error::invalid(format!(
                        "--stale-days {stale_days} is not a number of days; give 0 or more, e.g. 7"
                    ))
                })?;
            let report = cache.gc(stale_after)?;
            if ctx.json {
                ctx.emit_json(&report);
            } else {
                println!(
                    "removed {} unreferenced blob(s) and {} stale partial download(s); freed {}",
                    report.blobs_removed,
                    report.partials_removed,
                    HumanBytes(report.bytes_freed)
                );
                if report.partials_kept > 0 {
                    ctx.note(format!(
                        "kept {} partial download(s) ({}) younger than {stale_days} days to resume; \
                         `tabcache gc --stale-days 0` removes them",
                        report.partials_kept,
                        HumanBytes(report.partial_bytes_kept)
                    ));
                }
            }
            Ok(())
        }
        Command::Stats => {
            let stats = cache.stats()?;
            if ctx.json {
                let mut value = serde_json::to_value(stats).expect("stats serialize");
                value["cache_dir"] = json!(cache.cache_dir());
                ctx.emit_json(&value);
            } else {
                println!("cache        {}", cache.cache_dir().display());
                println!("repos        {}", stats.total_repos);
                println!("files        {}", stats.total_files);
                println!("total size   {}", HumanBytes(stats.total_size));
                println!("on disk      {}", HumanBytes(stats.disk_bytes));
                println!("dedup saved  {}", HumanBytes(stats.dedup_saved_bytes));
                if let Some(r) = stats.rebuilt {
                    println!(
                        "rebuilt      {} files of {} repos, at unix time {}",
                        r.files, r.repos, r.at
                    );
                }
            }
            Ok(())
        }
        Command::ImportHf { dir } => import_hf(ctx, &cache, dir.as_deref()),
    }
}

fn scan(ctx: &Ctx, cache: &ModelCache, repo: &str, revision: Option<&str>) -> CmdResult {
    install_sigint_handler();
    let manifest = unless_interrupted(cache.scan_repo_with_progress(
        repo,
        revision,
        Some(&mut until_interrupted),
    ))?;
    if ctx.json {
        ctx.emit_json(&manifest);
        return Ok(());
    }
    println!(
        "{} @ {} (commit {}){}",
        manifest.repo_id,
        manifest.revision,
        short(&manifest.commit),
        manifest
            .task
            .as_deref()
            .map(|t| format!(", task {t}"))
            .unwrap_or_default()
    );
    let rows: Vec<[String; 4]> = manifest
        .quants
        .iter()
        .map(|(key, q)| {
            [
                key.clone(),
                q.files.len().to_string(),
                q.total_size
                    .map_or("?".into(), |s| HumanBytes(s).to_string()),
                q.status.as_str().to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no model variants");
    } else {
        print_table(&["KEY", "FILES", "SIZE", "STATUS"], &rows);
    }
    for (name, files) in &manifest.addons {
        println!("add-on {name}: {}", files.join(", "));
    }
    Ok(())
}

/// llama.cpp's default choice on a GGUF repo: Q4_K_M, then Q8_0, then the first GGUF variant.
/// On another repo, its only variant.
fn default_quant(manifest: &Manifest) -> Result<String, Error> {
    let gguf: Vec<&String> = manifest
        .quants
        .iter()
        .filter(|(_, q)| {
            q.files
                .iter()
                .any(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        })
        .map(|(k, _)| k)
        .collect();
    for preferred in ["Q4_K_M", "Q8_0"] {
        if let Some(k) = gguf.iter().find(|k| k.as_str() == preferred) {
            return Ok(k.to_string());
        }
    }
    if let Some(first) = gguf.first() {
        return Ok(first.to_string());
    }
    let keys: Vec<&str> = manifest.quants.keys().map(String::as_str).collect();
    match keys.as_slice() {
        [] => Err(Error::new(
            ErrorKind::EntryNotFound,
            format!(
                "{} has no model variants; name the files to fetch with --file PATH",
                manifest.repo_id
            ),
        )),
        [only] => Ok(only.to_string()),
        several => Err(Error::invalid(format!(
            "{} has several variants ({}); name one: tabcache download {} QUANT",
            manifest.repo_id,
            several.join(", "),
            manifest.repo_id
        ))),
    }
}

#[derive(Serialize)]
struct DownloadedFile {
    path: String,
    size: u64,
    local_path: PathBuf,
}

#[derive(Serialize)]
struct DownloadReport {
    repo_id: String,
    revision: String,
    commit: Option<String>,
    quant: Option<String>,
    quant_defaulted: bool,
    files: Vec<DownloadedFile>,
    total_bytes: u64,
}

fn download(
    ctx: &Ctx,
    cache: &ModelCache,
    repo: &str,
    quant: Option<&str>,
    files: &[String],
    revision: Option<&str>,
) -> CmdResult {
    install_sigint_handler();
    let revision_name = revision.unwrap_or(tabcache::DEFAULT_REVISION).to_string();
    let scanned = cache.scan_repo_with_progress(repo, revision, Some(&mut until_interrupted));
    let manifest = match unless_interrupted(scanned) {
        Ok(m) => Some(m),
        // Named files may be cached already; let each one answer for itself.
        Err(e) if e.kind() == ErrorKind::Offline && quant.is_none() && !files.is_empty() => None,
        Err(e) => return Err(e.into()),
    };
    let (quant, defaulted) = match (quant, &manifest) {
        (Some(q), _) => (Some(q.to_string()), false),
        (None, Some(m)) if files.is_empty() => (Some(default_quant(m)?), true),
        _ => (None, false),
    };
    let mut variant_files: Vec<String> = Vec::new();
    if let (Some(q), Some(m)) = (&quant, &manifest) {
        let Some(info) = m.quants.get(q) else {
            let known: Vec<&str> = m.quants.keys().map(String::as_str).collect();
            return Err(Error::new(
                ErrorKind::EntryNotFound,
                format!(
                    "{repo} has no variant {q:?}; its variants are: {} (see `tabcache scan {repo}`)",
                    known.join(", ")
                ),
            )
            .into());
        };
        if defaulted {
            ctx.note(format!(
                "no QUANT given: downloading {q} (of {})",
                m.quants.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        variant_files.extend(info.files.iter().cloned());
    }
    let mut extras: Vec<String> = Vec::new();
    for f in files {
        if !variant_files.contains(f) && !extras.contains(f) {
            extras.push(f.clone());
        }
    }
    let sizes = cache.listed_sizes(repo)?.unwrap_or_default();
    let commit = manifest.as_ref().map(|m| m.commit.clone());
    let fetch_at = commit.clone().unwrap_or_else(|| revision_name.clone());
    let variant = quant.as_deref().zip(commit.as_deref());
    let request = FetchRequest {
        repo,
        revision: &fetch_at,
        variant,
        variant_files: &variant_files,
        extras: &extras,
        sizes: &sizes,
    };
    let fetched = fetch_files(ctx, cache, &request)?;
    let total_bytes = fetched
        .iter()
        .fold(0u64, |sum, f| sum.saturating_add(f.size));
    if ctx.json {
        ctx.emit_json(&DownloadReport {
            repo_id: repo.to_string(),
            revision: revision_name,
            commit,
            quant,
            quant_defaulted: defaulted,
            files: fetched,
            total_bytes,
        });
    } else {
        let what = quant.map(|q| format!(" {q}")).unwrap_or_default();
        println!(
            "{repo}{what}: {} file(s), {}",
            fetched.len(),
            HumanBytes(total_bytes)
        );
        if let Some(dir) = fetched
            .first()
            .and_then(|f| snapshot_dir(&f.local_path, &f.path))
        {
            println!("{}", dir.display());
        }
    }
    Ok(())
}

/// The snapshot folder that holds `local` (the file `path` of the repo).
fn snapshot_dir(local: &std::path::Path, path: &str) -> Option<PathBuf> {
    let mut dir = local.to_path_buf();
    for _ in path.split('/') {
        dir = dir.parent()?.to_path_buf();
    }
    Some(dir)
}

/// What `download` fetches: the files of a variant (recorded as that variant's download) and
/// other files named on the command line.
struct FetchRequest<'a> {
    repo: &'a str,
    revision: &'a str,
    /// (quant, commit) when a variant is asked for.
    variant: Option<(&'a str, &'a str)>,
    variant_files: &'a [String],
    extras: &'a [String],
    sizes: &'a std::collections::BTreeMap<String, u64>,
}

/// Fetch through the library (`download_quant_per_file`, then `download_files` for the other
/// named files): a progress bar per file and one overall when stderr is a terminal, a plain
/// line per file otherwise. Ctrl-C cancels; the next run resumes.
fn fetch_files(
    ctx: &Ctx,
    cache: &ModelCache,
    request: &FetchRequest,
) -> Result<Vec<DownloadedFile>, Error> {
    // Saturating: the sizes are the listing's, a server's word.
    let size_of = |paths: &[String]| -> u64 {
        paths
            .iter()
            .filter_map(|p| request.sizes.get(p))
            .fold(0, |sum: u64, &size| sum.saturating_add(size))
    };
    let count = request.variant_files.len() + request.extras.len();
    let bars = Bars::new(
        ctx,
        size_of(request.variant_files).saturating_add(size_of(request.extras)),
        count,
    );
    let mut overall = |loaded: u64, _total: u64| bars.overall(loaded);
    let mut per_file = |event: FileEvent<'_>| bars.file(event);
    let mut outcome = Ok(());
    if let Some((quant, commit)) = request.variant {
        outcome = cache
            .download_quant_per_file(
                request.repo,
                quant,
                Some(commit),
                Some(&mut overall),
                Some(&mut per_file),
            )
            .map(|_| ());
    }
    let mut extra_paths = Vec::new();
    if outcome.is_ok() && !request.extras.is_empty() {
        bars.next_phase(size_of(request.variant_files));
        let extras: Vec<&str> = request.extras.iter().map(String::as_str).collect();
        match cache.download_files(
            request.repo,
            &extras,
            Some(request.revision),
            Some(&mut overall),
            Some(&mut per_file),
        ) {
            Ok(paths) => extra_paths = paths,
            Err(e) => outcome = Err(e),
        }
    }
    bars.finish();
    if INTERRUPTED.load(Ordering::Relaxed) {
        // The library already waited (briefly) for its transfers to save their resume state;
        // one stuck on a silent server is not worth holding the user's terminal for.
        cache.wait_idle(Duration::from_millis(200));
        return Err(interrupted());
    }
    outcome?;
    // download_quant gives no paths: the variant's files are looked up; the others came back.
    let mut local_paths = Vec::with_capacity(request.variant_files.len() + extra_paths.len());
    for path in request.variant_files {
        let local = cache
            .file_path(request.repo, path, Some(request.revision))?
            .ok_or_else(|| Error::internal(format!("{path} is not cached after its download")))?;
        local_paths.push(local);
    }
    local_paths.extend(extra_paths);
    Ok(request
        .variant_files
        .iter()
        .chain(request.extras)
        .zip(local_paths)
        .map(|(path, local_path)| DownloadedFile {
            path: path.clone(),
            size: std::fs::metadata(&local_path).map_or(0, |m| m.len()),
            local_path,
        })
        .collect())
}

/// The download's progress display: one bar per file in flight and an overall bar on a
/// terminal; otherwise one line per file as it is cached (none with --quiet).
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    file_style: ProgressStyle,
    in_flight: RefCell<HashMap<String, ProgressBar>>,
    lines: bool,
    /// Bytes of the phases already done (the variant, before the other named files).
    done_before: Cell<u64>,
}

impl Bars {
    fn new(ctx: &Ctx, total: u64, files: usize) -> Bars {
        let bars = !ctx.quiet && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = |chars: &str| {
            ProgressStyle::with_template(
                "{msg:30!} [{bar:25}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}",
            )
            .expect("valid template")
            .progress_chars(chars)
        };
        let overall = multi.add(ProgressBar::new(total));
        overall.set_style(style("## "));
        overall.set_message(format!("total ({files} files)"));
        Bars {
            multi,
            overall,
            file_style: style("=> "),
            in_flight: RefCell::new(HashMap::new()),
            lines: !bars && !ctx.quiet,
            done_before: Cell::new(0),
        }
    }

    /// The overall progress of the current phase; false once Ctrl-C was pressed.
    fn overall(&self, loaded: u64) -> bool {
        self.overall
            .set_position(self.done_before.get().saturating_add(loaded));
        !INTERRUPTED.load(Ordering::Relaxed)
    }

    fn next_phase(&self, bytes_done: u64) {
        self.done_before.set(bytes_done);
    }

    fn file(&self, event: FileEvent<'_>) {
        match event {
            FileEvent::Progress {
                path,
                loaded,
                total,
            } => {
                let mut in_flight = self.in_flight.borrow_mut();
                let bar = in_flight.entry(path.to_string()).or_insert_with(|| {
                    let bar = self
                        .multi
                        .insert_before(&self.overall, ProgressBar::new(total));
                    bar.set_style(self.file_style.clone());
                    bar.set_message(path.to_string());
                    bar
                });
                bar.set_length(total);
                bar.set_position(loaded);
            }
            FileEvent::Done { path, size } => {
                if let Some(bar) = self.in_flight.borrow_mut().remove(path) {
                    bar.finish_and_clear();
                }
                if self.lines {
                    eprintln!("fetched {path} ({})", HumanBytes(size));
                }
            }
        }
    }

    fn finish(&self) {
        for (_, bar) in self.in_flight.borrow_mut().drain() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}

fn ls(ctx: &Ctx, cache: &ModelCache, repo: Option<&str>, sort: SortKey) -> CmdResult {
    match repo {
        None => {
            let mut repos: Vec<RepoListing> = cache.list_repos()?;
            if let SortKey::Size = sort {
                repos.sort_by(|a, b| b.size.cmp(&a.size).then(a.repo_id.cmp(&b.repo_id)));
            }
            if ctx.json {
                ctx.emit_json(&repos);
                return Ok(());
            }
            if repos.is_empty() {
                println!("the cache is empty; `tabcache download REPO` fills it");
                return Ok(());
            }
            let rows: Vec<[String; 4]> = repos
                .iter()
                .map(|r| {
                    let variants: Vec<String> = r
                        .variants
                        .iter()
                        .map(|v| format!("{} ({})", v.key, v.status.as_str()))
                        .collect();
                    [
                        r.repo_id.clone(),
                        r.files.to_string(),
                        HumanBytes(r.size).to_string(),
                        variants.join(", "),
                    ]
                })
                .collect();
            print_table(&["REPO", "FILES", "SIZE", "VARIANTS"], &rows);
        }
        Some(repo) => {
            let mut files: Vec<FileListing> = cache.list_files(repo)?;
            if let SortKey::Size = sort {
                files.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
            }
            if ctx.json {
                ctx.emit_json(&files);
                return Ok(());
            }
            let rows: Vec<[String; 4]> = files
                .iter()
                .map(|f| {
                    [
                        f.path.clone(),
                        HumanBytes(f.size).to_string(),
                        f.variants.join(", "),
                        short(&f.commit).to_string(),
                    ]
                })
                .collect();
            print_table(&["PATH", "SIZE", "VARIANTS", "COMMIT"], &rows);
        }
    }
    Ok(())
}

fn not_cached(repo: &str, file: &str) -> Error {
    Error::new(
        ErrorKind::EntryNotFound,
        format!("{file} of {repo} is not cached; fetch it with `tabcache download {repo} --file {file}`"),
    )
}

fn path(
    ctx: &Ctx,
    cache: &ModelCache,
    repo: &str,
    file: &str,
    revision: Option<&str>,
) -> CmdResult {
    let local = cache
        .file_path(repo, file, revision)?
        .ok_or_else(|| not_cached(repo, file))?;
    if ctx.json {
        ctx.emit_json(&json!({"repo_id": repo, "file": file, "path": local}));
    } else {
        println!("{}", local.display());
    }
    Ok(())
}

fn cat(cache: &ModelCache, repo: &str, file: &str, revision: Option<&str>) -> CmdResult {
    let mut handle = cache
        .open_file(repo, file, revision)?
        .ok_or_else(|| not_cached(repo, file))?;
    let mut out = std::io::stdout().lock();
    match std::io::copy(&mut handle, &mut out).and_then(|_| out.flush()) {
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

fn verify(ctx: &Ctx, cache: &ModelCache, repo: Option<&str>, repair: bool) -> CmdResult {
    install_sigint_handler();
    let report: VerifyReport =
        unless_interrupted(cache.verify_with_progress(repo, repair, Some(&mut until_interrupted)))?;
    if ctx.json {
        ctx.emit_json(&report);
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
    let files: usize = report.damaged.iter().map(|b| b.files.len()).sum();
    Err(Failure::Damaged(if repair {
        format!(
            "{} file(s) could not be repaired; check the network (or go online) and run `tabcache verify --repair` again",
            report.repair_failed.len()
        )
    } else {
        format!(
            "{} damaged blob(s) holding {files} file(s); run `tabcache verify --repair` to fetch them again",
            report.damaged.len()
        )
    }))
}

fn rm(ctx: &Ctx, cache: &ModelCache, repo: &str, quant: Option<&str>) -> CmdResult {
    let report = match quant {
        Some(q) => cache.remove_quant(repo, q)?,
        None => cache.remove_repo(repo)?,
    };
    if ctx.json {
        ctx.emit_json(&report);
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

fn import_hf(ctx: &Ctx, cache: &ModelCache, dir: Option<&std::path::Path>) -> CmdResult {
    install_sigint_handler();
    let report =
        unless_interrupted(cache.import_hf_cache_with_progress(dir, Some(&mut until_interrupted)))?;
    if ctx.verbose > 0 || !ctx.json {
        for skip in &report.skipped {
            ctx.note(format!("skipped {}: {}", skip.path.display(), skip.reason));
        }
    }
    if ctx.json {
        ctx.emit_json(&report);
    } else {
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
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

/// Left-aligned columns, two spaces apart.
fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
