//! The benchmark's stand-in for the `tabcache` command line (and the path the C ABI takes:
//! one `ModelCache` call per request): download a file or a variant into a cache, or time the
//! warm-serving calls. The endpoint comes from `HF_ENDPOINT`, as for every other contender.
//! Prints one JSON object on stdout; `bench/driver.py` runs it.
//!
//! ```text
//! fetch file  CACHE REPO PATH           download_file (progress lines on stderr with --progress)
//! fetch quant CACHE REPO QUANT          download_quant
//! fetch warm  CACHE REPO PATH CALLS     has_file / get_manifest latency, get_file vs fs::read,
//!                                       streaming open_file throughput
//! fetch open  CACHE REPO PATH           time to open the cache and answer one has_file
//! ```

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use tabcache::{CacheOptions, ModelCache};

type Failure = Box<dyn std::error::Error>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let progress = args.iter().any(|a| a == "--progress");
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--progress")
        .collect();
    let result = match args.as_slice() {
        ["file", cache, repo, path] => file(cache, repo, path, progress),
        ["quant", cache, repo, key] => quant(cache, repo, key),
        ["warm", cache, repo, path, calls] => match calls.parse() {
            Ok(calls) => warm(cache, repo, path, calls),
            Err(_) => Err(format!("CALLS wants a number, got {calls:?}").into()),
        },
        ["open", cache, repo, path] => open(cache, repo, path),
        _ => Err(
            "usage: fetch file|quant|warm|open CACHE REPO PATH|QUANT [CALLS] [--progress]\n\
                  (see the comment at the top of examples/fetch.rs)"
                .into(),
        ),
    };
    if let Err(err) = result {
        eprintln!("fetch: {err}");
        std::process::exit(1);
    }
}

fn open_cache(cache: &str) -> Result<ModelCache, Failure> {
    Ok(ModelCache::open(cache, CacheOptions::default())?)
}

fn file(cache: &str, repo: &str, path: &str, progress: bool) -> Result<(), Failure> {
    let started = Instant::now();
    let cache = open_cache(cache)?;
    // Progress goes to stderr so the driver can kill the process at a given fraction.
    let mut report = |loaded: u64, total: u64| {
        let _ = writeln!(std::io::stderr(), "progress {loaded} {total}");
        true
    };
    let callback: Option<tabcache::ProgressFn<'_>> =
        if progress { Some(&mut report) } else { None };
    let landed = cache.download_file(repo, path, None, callback)?;
    println!(
        r#"{{"seconds": {}, "path": {:?}}}"#,
        started.elapsed().as_secs_f64(),
        landed.display().to_string()
    );
    Ok(())
}

fn quant(cache: &str, repo: &str, quant: &str) -> Result<(), Failure> {
    let started = Instant::now();
    let cache = open_cache(cache)?;
    cache.download_quant(repo, quant, None, None)?;
    println!(r#"{{"seconds": {}}}"#, started.elapsed().as_secs_f64());
    Ok(())
}

/// Mean seconds per call of `call`, over `calls` calls.
fn per_call(calls: u32, mut call: impl FnMut() -> Result<(), Failure>) -> Result<f64, Failure> {
    let started = Instant::now();
    for _ in 0..calls {
        call()?;
    }
    Ok(started.elapsed().as_secs_f64() / f64::from(calls.max(1)))
}

/// Best of a few runs: the page cache is warm in both, so the minimum shows the code's cost.
fn best_of(
    runs: u32,
    mut run: impl FnMut() -> Result<u64, Failure>,
) -> Result<(f64, u64), Failure> {
    let mut best = f64::INFINITY;
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        bytes = run()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok((best, bytes))
}

fn warm(cache: &str, repo: &str, path: &str, calls: u32) -> Result<(), Failure> {
    let cache = open_cache(cache)?;
    if !cache.has_file(repo, path, None)? {
        return Err(format!("{repo}/{path} is not cached; download it first").into());
    }
    if cache.get_manifest(repo)?.is_none() {
        // download_file alone records no manifest; time get_manifest on a real one.
        cache.scan_repo(repo, None)?;
    }
    let has_file = per_call(calls, || {
        std::hint::black_box(cache.has_file(repo, path, None)?);
        Ok(())
    })?;
    let get_manifest = per_call(calls / 10, || {
        std::hint::black_box(cache.get_manifest(repo)?);
        Ok(())
    })?;
    let blob = cache
        .file_path(repo, path, None)?
        .ok_or("a cached file has no path")?;
    let (get_file, size) = best_of(3, || {
        let bytes = cache.get_file(repo, path, None)?.ok_or("not cached")?;
        Ok(std::hint::black_box(bytes).len() as u64)
    })?;
    let (fs_read, _) = best_of(3, || Ok(std::fs::read(&blob)?.len() as u64))?;
    let (stream, _) = best_of(3, || {
        let mut file = cache.open_file(repo, path, None)?.ok_or("not cached")?;
        read_through(&mut file)
    })?;
    println!(
        r#"{{"has_file_s": {has_file}, "get_manifest_s": {get_manifest}, "get_file_s": {get_file}, "fs_read_s": {fs_read}, "open_file_stream_s": {stream}, "bytes": {size}}}"#
    );
    Ok(())
}

/// Read `file` to the end in 1 MiB pieces, as a streaming consumer would.
fn read_through(file: &mut std::fs::File) -> Result<u64, Failure> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

fn open(cache: &str, repo: &str, path: &str) -> Result<(), Failure> {
    let started = Instant::now();
    let cache = open_cache(cache)?;
    let opened = started.elapsed().as_secs_f64();
    let cached = cache.has_file(repo, path, None)?;
    let answered = started.elapsed().as_secs_f64();
    let files = cache.stats()?.total_files;
    if !cached && !Path::new(path).as_os_str().is_empty() {
        return Err(format!("{repo}/{path} is not cached").into());
    }
    println!(r#"{{"open_s": {opened}, "first_has_file_s": {answered}, "files": {files}}}"#);
    Ok(())
}
