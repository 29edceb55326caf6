//! The token is a secret: it goes to the Hub's own host and nowhere else. Not to the CDN a
//! download redirects to, not into any error message, not into any byte the cache writes.

mod common;

use std::path::Path;

use common::*;
use hub_emulator::{
    write_file, write_pseudo_random_file, write_repo_config, Gated, Listener, RepoConfig,
};
use tabcache::{ErrorKind, ModelCache};

const TOKEN: &str = "hf_secretTOKENvalue0123456789";
const REPO: &str = "org/gated";

fn fill(root: &Path) {
    write_file(root, REPO, "config.json", b"{}").unwrap();
    write_pseudo_random_file(root, REPO, "model.safetensors", 3 << 20, 1).unwrap();
    let config = RepoConfig {
        gated: Gated::Flag(true),
        tokens: vec![TOKEN.into()],
        ..RepoConfig::default()
    };
    write_repo_config(root, REPO, &config).unwrap();
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    walk(dir)
        .into_iter()
        // symlink_metadata: a link is not a file here, as the entry's own file type said.
        .filter(|path| path.symlink_metadata().unwrap().is_file())
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .map(|path| path.display().to_string())
        .collect()
}

#[test]
fn the_token_reaches_the_hub_only_and_is_never_written_or_shown() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(&hub);
    options.hub.token = Some(TOKEN.into());
    let cache = ModelCache::open(dir.path(), options).unwrap();
    cache.scan_repo(REPO, None).unwrap();
    cache
        .download_quant(REPO, "safetensors", None, None)
        .unwrap();
    assert!(cache.has_file(REPO, "model.safetensors", None).unwrap());
    // Errors that involve the token do not show it.
    let err = cache
        .download_file(REPO, "missing.bin", None, None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EntryNotFound);
    assert!(!err.message().contains(TOKEN), "{err}");
    assert!(!format!("{err:?}").contains(TOKEN));
    assert!(
        !format!("{:?}", cache.hub()).contains(TOKEN),
        "Debug of the client shows the token"
    );
    drop(cache);

    let requests = hub.settled_requests();
    let hub_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.listener == Listener::Api)
        .collect();
    let cdn_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.listener == Listener::Cdn)
        .collect();
    assert!(!cdn_requests.is_empty(), "the weights came from the CDN");
    assert!(hub_requests
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))));
    assert!(
        cdn_requests.iter().all(|r| r.authorization.is_none()),
        "the token went to the CDN host"
    );
    let leaks = files_containing(dir.path(), TOKEN.as_bytes());
    assert!(leaks.is_empty(), "the token was written to {leaks:?}");
}

#[test]
fn a_wrong_token_is_refused_without_echoing_it() {
    let hub = hub(fill);
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(&hub);
    let wrong = "hf_wrongTOKENabcdefabcdef";
    options.hub.token = Some(wrong.into());
    let cache = ModelCache::open(dir.path(), options).unwrap();
    let err = cache
        .download_file(REPO, "model.safetensors", None, None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::GatedRepo, "{err}");
    assert!(
        err.message().contains("accept"),
        "tells the user what to do: {err}"
    );
    assert!(!err.message().contains(wrong), "{err}");
    assert!(files_containing(dir.path(), wrong.as_bytes()).is_empty());
}
