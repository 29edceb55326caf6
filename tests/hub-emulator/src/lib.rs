//! A small HuggingFace Hub emulator for tabcache's tests: it serves repos from a folder over
//! the real Hub protocol (model info, paginated tree, resolve with LFS redirects to a separate
//! CDN listener, ranges, error codes, gated and private repos, Xet-backed repos with their own
//! CAS listener), records every request, and injects faults on demand. See README.md beside this crate for the protocol details.
//!
//! ```no_run
//! use hub_emulator::{Emulator, Fault, FaultKind, Listener};
//! let root = std::env::temp_dir().join("repos");
//! hub_emulator::write_file(&root, "org/model", "config.json", b"{}").unwrap();
//! let emu = Emulator::builder(&root).page_size(2).start().unwrap();
//! emu.add_fault(Fault::new(FaultKind::DropAfter { bytes: 100, reset: false })
//!     .on(Listener::Cdn).times(1));
//! println!("{}", emu.url());
//! ```

mod api;
mod cas;
pub mod client;
mod control;
mod data;
mod fault;
mod http;
mod repo;
mod server;
mod xet;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use data::{
    git_blob_sha1, git_blob_sha1_file, pseudo_random_bytes, pseudo_random_sha256, repo_dir,
    sha256_file, sha256_reader, write_file, write_pseudo_random_file, write_repo_config,
    PseudoRandomReader,
};
pub use fault::{Fault, FaultEntry, FaultId, FaultKind, Listener, MAX_STALL_SECONDS};
pub use repo::{
    lfs_pointer, Gated, RepoConfig, CONFIG_FILE, DEFAULT_LFS_THRESHOLD, LFS_EXTENSIONS,
};
pub use server::RequestRecord;
pub use xet::{XetStats, DEFAULT_XET_TTL_SECS, DEFAULT_XORB_MAX_BYTES, XORB_MAX_CHUNKS};

use server::Shared;

/// Tree listings answer this many entries per page unless told otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// Settings for [`Emulator::start`]; get one from [`Emulator::builder`].
#[derive(Clone, Debug)]
pub struct EmulatorBuilder {
    root: PathBuf,
    port: u16,
    cdn_port: u16,
    cas_port: u16,
    xorb_max_bytes: u64,
    page_size: usize,
    lfs_threshold: u64,
    tree_redirect: bool,
    log_to_stderr: bool,
    cdn_base: Option<String>,
    frozen: bool,
}

impl EmulatorBuilder {
    /// The API listener's port; 0 (the default) picks a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The CDN listener's port; 0 (the default) picks a free one.
    pub fn cdn_port(mut self, port: u16) -> Self {
        self.cdn_port = port;
        self
    }

    /// The CAS listener's port (Xet storage); 0 (the default) picks a free one.
    pub fn cas_port(mut self, port: u16) -> Self {
        self.cas_port = port;
        self
    }

    /// New xorbs hold at most this many bytes of chunk records (default 64 MiB, the Hub's
    /// limit): smaller makes a test file span several xorbs.
    pub fn xorb_max_bytes(mut self, bytes: u64) -> Self {
        self.xorb_max_bytes = bytes;
        self
    }

    /// Tree entries per page (at least 1; default 1000).
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size;
        self
    }

    /// Files this large or larger are LFS files whatever their extension (default 1 MiB).
    pub fn lfs_threshold(mut self, bytes: u64) -> Self {
        self.lfs_threshold = bytes;
        self
    }

    /// Answer tree requests without a trailing slash with a 307 to the trailing-slash form.
    pub fn tree_redirect(mut self, on: bool) -> Self {
        self.tree_redirect = on;
        self
    }

    /// Redirect LFS files to `<base>/<sha256>` on another server (a real CDN stand-in such as
    /// nginx serving a folder of blobs named by sha256) instead of this emulator's CDN
    /// listener, which still runs but is no longer linked. A trailing `/` is ignored.
    pub fn cdn_base(mut self, base: impl Into<String>) -> Self {
        self.cdn_base = Some(base.into().trim_end_matches('/').to_owned());
        self
    }

    /// The repos will not change while the emulator runs: walk each once, not per request
    /// (for benchmarks with repos of thousands of files; tests that edit repos leave it off).
    pub fn frozen(mut self, on: bool) -> Self {
        self.frozen = on;
        self
    }

    /// Print one line per request to stderr.
    pub fn log_to_stderr(mut self, on: bool) -> Self {
        self.log_to_stderr = on;
        self
    }

    /// Binds the three listeners on 127.0.0.1 and starts serving.
    pub fn start(self) -> io::Result<Emulator> {
        let api = TcpListener::bind(("127.0.0.1", self.port))?;
        let cdn = TcpListener::bind(("127.0.0.1", self.cdn_port))?;
        let cas = TcpListener::bind(("127.0.0.1", self.cas_port))?;
        let xet = xet::XetStore::new(self.xorb_max_bytes)?;
        let shared = Arc::new(Shared::new(
            repo::RepoStore::new(self.root, self.lfs_threshold, self.frozen, xet),
            self.page_size,
            self.tree_redirect,
            self.log_to_stderr,
            self.cdn_base,
            server::Addrs {
                api: api.local_addr()?,
                cdn: cdn.local_addr()?,
                cas: cas.local_addr()?,
            },
        ));
        let mut acceptors = Vec::new();
        for (listener, kind) in [
            (api, Listener::Api),
            (cdn, Listener::Cdn),
            (cas, Listener::Cas),
        ] {
            match server::spawn_acceptor(Arc::clone(&shared), listener, kind) {
                Ok(handle) => acceptors.push(handle),
                Err(err) => {
                    shared.stop(acceptors);
                    return Err(err);
                }
            }
        }
        Ok(Emulator { shared, acceptors })
    }
}

/// A running emulator. Dropping it stops the listeners, breaks open connections, joins every
/// thread and removes its xorbs.
pub struct Emulator {
    shared: Arc<Shared>,
    acceptors: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Settings with defaults for serving the repos under `root`.
    pub fn builder(root: impl Into<PathBuf>) -> EmulatorBuilder {
        EmulatorBuilder {
            root: root.into(),
            port: 0,
            cdn_port: 0,
            cas_port: 0,
            xorb_max_bytes: DEFAULT_XORB_MAX_BYTES,
            page_size: DEFAULT_PAGE_SIZE,
            lfs_threshold: DEFAULT_LFS_THRESHOLD,
            tree_redirect: false,
            log_to_stderr: false,
            cdn_base: None,
            frozen: false,
        }
    }

    /// Starts with default settings.
    pub fn start(root: impl Into<PathBuf>) -> io::Result<Emulator> {
        Emulator::builder(root).start()
    }

    /// The Hub endpoint, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.api_addr)
    }

    /// The CDN listener, `http://127.0.0.1:PORT`.
    pub fn cdn_url(&self) -> String {
        format!("http://{}", self.shared.cdn_addr)
    }

    /// The CAS listener (Xet storage), `http://127.0.0.1:PORT`: the `casUrl` of its tokens.
    pub fn cas_url(&self) -> String {
        format!("http://{}", self.shared.cas_addr)
    }

    pub fn cas_addr(&self) -> SocketAddr {
        self.shared.cas_addr
    }

    /// Xet access tokens issued from now on live `secs` seconds (default 3600; 0: already
    /// expired when issued).
    pub fn set_xet_token_ttl(&self, secs: u64) {
        self.shared
            .store
            .xet
            .token_ttl
            .store(secs, Ordering::SeqCst);
    }

    /// Signed xorb URLs handed out from now on live `secs` seconds (default 3600; 0: already
    /// expired).
    pub fn set_xet_url_ttl(&self, secs: u64) {
        self.shared.store.xet.url_ttl.store(secs, Ordering::SeqCst);
    }

    /// Body bytes sent on the CAS listener (reconstructions and xorb ranges).
    pub fn cas_bytes_sent(&self) -> u64 {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|record| record.listener == Listener::Cas)
            .map(|record| record.body_bytes)
            .sum()
    }

    /// What the CAS stores now: xorbs, distinct chunks, bytes on disk, files.
    pub fn xet_stats(&self) -> XetStats {
        self.shared.store.xet.stats()
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.api_addr
    }

    pub fn cdn_addr(&self) -> SocketAddr {
        self.shared.cdn_addr
    }

    pub fn root(&self) -> &Path {
        self.shared.store.root()
    }

    pub fn add_fault(&self, fault: Fault) -> FaultId {
        self.shared.faults.lock().unwrap().add(fault)
    }

    /// False when no such fault is installed.
    pub fn remove_fault(&self, id: FaultId) -> bool {
        self.shared.faults.lock().unwrap().remove(id)
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// How many requests the fault has fired for (0 once removed).
    pub fn fault_hits(&self, id: FaultId) -> u64 {
        self.shared.faults.lock().unwrap().hits(id)
    }

    pub fn faults(&self) -> Vec<FaultEntry> {
        self.shared.faults.lock().unwrap().list()
    }

    pub fn set_page_size(&self, page_size: usize) {
        self.shared
            .page_size
            .store(page_size.max(1), Ordering::SeqCst);
    }

    pub fn set_tree_redirect(&self, on: bool) {
        self.shared.tree_redirect.store(on, Ordering::SeqCst);
    }

    /// Compress JSON answers (model info, tree listings, errors) with gzip for requests whose
    /// `Accept-Encoding` names it, as the Hub does. Off by default.
    pub fn set_gzip_json(&self, on: bool) {
        self.shared.gzip_json.store(on, Ordering::SeqCst);
    }

    /// Every request served since the start or the last [`Emulator::clear_log`], in arrival
    /// order. A request is in the log before its client can have read the whole response. Control requests are not recorded.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Body bytes sent on all listeners.
    pub fn bytes_sent_total(&self) -> u64 {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|record| record.body_bytes)
            .sum()
    }

    /// Body bytes sent for requests whose path+query contains `path_substring`, raw or
    /// percent-decoded (CDN URLs carry `?repo=...&file=...`, so a file name matches both the
    /// resolve and the CDN request).
    pub fn bytes_sent_for(&self, path_substring: &str) -> u64 {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|record| {
                record.target.contains(path_substring)
                    || http::percent_decode(&record.target)
                        .is_some_and(|decoded| decoded.contains(path_substring))
            })
            .map(|record| record.body_bytes)
            .sum()
    }

    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// The commit sha the emulator reports for `repo_id` now, or None if it does not exist.
    pub fn commit_of(&self, repo_id: &str) -> Option<String> {
        self.shared
            .store
            .scan(repo_id)
            .ok()
            .map(|snapshot| snapshot.commit)
    }

    /// Stops now; the same as dropping it.
    pub fn stop(self) {}
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared.stop(std::mem::take(&mut self.acceptors));
    }
}
