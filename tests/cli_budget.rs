//! The disk budget from the command line: `--max-size` / `TABCACHE_MAX_SIZE` set it for the
//! cache (stats shows it), a download over it evicts the least recently used variant and says
//! so, `pin`/`unpin` and `ls` show pins and last use, `prune --dry-run` lists exactly what
//! `prune` removes, and a bad size is a usage error.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use hub_emulator::{write_file, write_pseudo_random_file};
use serde_json::Value;

const REPO: &str = "org/cli-budget";
const SIZE: u64 = 200_000;

fn fill(root: &Path) {
    for (i, quant) in ["Q2_K", "Q4_K_M", "Q5_K_M", "Q8_0"].iter().enumerate() {
        write_pseudo_random_file(root, REPO, &format!("m-{quant}.gguf"), SIZE, i as u64 + 1)
            .unwrap();
    }
    write_file(root, REPO, "config.json", b"{}").unwrap();
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// Three variants downloaded in order, then a budget of three set by `--max-size`.
fn three_downloaded(hub: &Hub, cache: &Path) {
    for quant in ["Q2_K", "Q4_K_M", "Q5_K_M"] {
        ok(&tabcache(hub, cache, &["download", REPO, quant]));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let budget = (3 * SIZE + 1000).to_string();
    let stats = json(&tabcache(
        hub,
        cache,
        &["--max-size", &budget, "--json", "stats"],
    ));
    assert_eq!(stats["max_size"], 3 * SIZE + 1000);
}

#[test]
fn a_download_over_the_budget_evicts_the_least_recently_used_and_says_so() {
    let hub = hub(fill);
    let cache = tempfile::tempdir().unwrap();
    three_downloaded(&hub, cache.path());
    // Reading Q2_K makes Q4_K_M the least recently used.
    ok(&tabcache(&hub, cache.path(), &["cat", REPO, "m-Q2_K.gguf"]));
    let out = tabcache(&hub, cache.path(), &["download", REPO, "Q8_0"]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "evicted org/cli-budget Q4_K_M (1 file(s), 200.00 KB) to stay within the disk budget"
        ) || stderr.contains(
            "evicted org/cli-budget Q4_K_M (1 file(s), 195.31 KiB) to stay within the disk budget"
        ),
        "{stderr}"
    );
    let listing = json(&tabcache(&hub, cache.path(), &["--json", "ls"]));
    let variants: Vec<(String, String)> = listing[0]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["key"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        variants.contains(&("Q4_K_M".into(), "available".into())),
        "{variants:?}"
    );
    assert!(variants.contains(&("Q2_K".into(), "downloaded".into())));
    let stats = json(&tabcache(&hub, cache.path(), &["--json", "stats"]));
    assert_eq!(stats["evictions"]["count"], 1);
}

#[test]
fn pins_show_in_ls_and_keep_a_variant() {
    let hub = hub(fill);
    let cache = tempfile::tempdir().unwrap();
    three_downloaded(&hub, cache.path());
    let out = ok(&tabcache(&hub, cache.path(), &["pin", REPO, "Q2_K"]));
    assert!(out.contains("pinned"), "{out}");
    let out = ok(&tabcache(&hub, cache.path(), &["pin", REPO, "Q2_K"]));
    assert!(out.contains("already pinned"), "{out}");
    let table = ok(&tabcache(&hub, cache.path(), &["ls"]));
    assert!(
        table.contains("LAST USED") && table.contains("just now"),
        "{table}"
    );
    assert!(table.contains("Q2_K (downloaded, pinned)"), "{table}");

    ok(&tabcache(&hub, cache.path(), &["download", REPO, "Q8_0"]));
    let files = ok(&tabcache(&hub, cache.path(), &["ls", REPO]));
    assert!(files.contains("m-Q2_K.gguf"), "pinned, kept: {files}");
    assert!(
        !files.contains("m-Q4_K_M.gguf"),
        "the next oldest went: {files}"
    );
    let out = ok(&tabcache(&hub, cache.path(), &["unpin", REPO, "Q2_K"]));
    assert!(out.contains("unpinned"), "{out}");
}

#[test]
fn prune_dry_run_lists_exactly_what_prune_removes() {
    let hub = hub(fill);
    let cache = tempfile::tempdir().unwrap();
    three_downloaded(&hub, cache.path());
    let to = (SIZE + 1000).to_string();
    let dry = json(&tabcache(
        &hub,
        cache.path(),
        &["--json", "--max-size", &to, "prune", "--dry-run"],
    ));
    let done = json(&tabcache(
        &hub,
        cache.path(),
        &["--json", "--max-size", &to, "prune"],
    ));
    assert_eq!(dry["evicted"], done["evicted"]);
    assert_eq!(done["evicted"].as_array().unwrap().len(), 2);
    let stats = json(&tabcache(&hub, cache.path(), &["--json", "stats"]));
    assert_eq!(
        stats["max_size"],
        3 * SIZE + 1000,
        "prune's --max-size is not a new budget"
    );
    let text = ok(&tabcache(
        &hub,
        cache.path(),
        &["prune", "--older-than", "0", "--dry-run"],
    ));
    assert!(text.contains("would evict org/cli-budget Q5_K_M"), "{text}");
}

#[test]
fn a_bad_size_is_a_usage_error_from_the_flag_and_the_environment() {
    let hub = hub(fill);
    let cache = tempfile::tempdir().unwrap();
    let out = tabcache(&hub, cache.path(), &["--max-size", "lots", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--max-size") && stderr.contains("50GB"),
        "{stderr}"
    );
    let out = tabcache_command(&hub, cache.path(), &["--json", "stats"])
        .env("TABCACHE_MAX_SIZE", "2GiB")
        .output()
        .unwrap();
    assert_eq!(json(&out)["max_size"], 2u64 << 30);
}
