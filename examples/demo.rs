//! The README's demo: start the bundled hub emulator with a small GGUF repo, scan it, download
//! one quantization with a progress bar, and print where the files are. Runs offline.
//!
//! `cargo run --example demo [CACHE_DIR]` (default: a fresh temporary directory).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use hub_emulator::{write_file, write_pseudo_random_file, write_repo_config, Emulator, RepoConfig};
use tabcache::hub::HubOptions;
use tabcache::{CacheOptions, ModelCache};

const REPO: &str = "demo/TinyStories-GGUF";

/// A GGUF header (magic, version 3, 0 tensors, 0 metadata) followed by `len` filler bytes.
fn write_gguf(root: &Path, path: &str, len: u64, seed: u64) {
    let payload = write_pseudo_random_file(root, REPO, path, len, seed).unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&0u64.to_le_bytes());
    header.extend_from_slice(&0u64.to_le_bytes());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(payload)
        .unwrap();
    file.write_all(&header).unwrap();
}

fn make_repo(root: &Path) {
    write_file(root, REPO, "README.md", b"# TinyStories GGUF (demo data)\n").unwrap();
    write_file(root, REPO, "config.json", br#"{"model_type": "llama"}"#).unwrap();
    for (i, (quant, mib)) in [("Q2_K", 24u64), ("Q4_K_M", 48), ("Q8_0", 96)]
        .iter()
        .enumerate()
    {
        write_gguf(
            root,
            &format!("tinystories-{quant}.gguf"),
            mib << 20,
            i as u64,
        );
    }
    for part in 1..=2u64 {
        write_gguf(
            root,
            &format!("F16/tinystories-F16-0000{part}-of-00002.gguf"),
            64 << 20,
            10 + part,
        );
    }
    let config = RepoConfig {
        pipeline_tag: Some("text-generation".into()),
        ..RepoConfig::default()
    };
    write_repo_config(root, REPO, &config).unwrap();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repos = tempfile::tempdir()?;
    make_repo(repos.path());
    let emu = Emulator::start(repos.path())?;
    println!("hub emulator at {} serving {REPO}", emu.url());

    let cache_dir = match std::env::args().nth(1) {
        Some(dir) => dir.into(),
        None => tempfile::tempdir()?.keep(),
    };
    let options = CacheOptions {
        hub: HubOptions {
            endpoint: Some(emu.url()),
            token: Some(String::new()),
            offline: Some(false),
            ..HubOptions::default()
        },
        ..CacheOptions::default()
    };
    let cache = ModelCache::open(&cache_dir, options)?;

    let manifest = cache.scan_repo(REPO, None)?;
    println!(
        "\n{REPO} ({}), commit {}",
        manifest.task.as_deref().unwrap_or("-"),
        &manifest.commit[..12]
    );
    println!("{:<10} {:>6} {:>10}  status", "variant", "files", "size");
    for (key, q) in &manifest.quants {
        let mib = q.total_size.unwrap_or(0) as f64 / (1 << 20) as f64;
        println!(
            "{key:<10} {:>6} {mib:>7.1} MiB  {}",
            q.files.len(),
            q.status.as_str()
        );
    }

    let quant = "Q4_K_M";
    println!("\ndownloading {quant}");
    let started = Instant::now();
    let mut bar = |loaded: u64, total: u64| {
        let width = 40;
        let done = (loaded * width as u64)
            .checked_div(total)
            .map_or(width, |d| d as usize);
        eprint!(
            "\r[{}{}] {:>6.1}/{:.1} MiB",
            "#".repeat(done),
            " ".repeat(width - done),
            loaded as f64 / (1 << 20) as f64,
            total as f64 / (1 << 20) as f64
        );
        true
    };
    cache.download_quant(REPO, quant, None, Some(&mut bar))?;
    eprintln!();
    println!(
        "done in {:.2} s, verified (sha256)",
        started.elapsed().as_secs_f64()
    );

    let manifest = cache.get_manifest(REPO)?.expect("scanned above");
    println!("\nfiles of {quant} (snapshot view, ready to mmap):");
    for file in &manifest.quants[quant].files {
        println!(
            "  {}",
            cache
                .file_path(REPO, file, None)?
                .expect("downloaded")
                .display()
        );
    }
    let stats = cache.stats()?;
    println!(
        "\ncache {}: {} repo(s), {} file(s), {:.1} MiB",
        cache.cache_dir().display(),
        stats.total_repos,
        stats.total_files,
        stats.total_size as f64 / (1 << 20) as f64
    );
    Ok(())
}
