//! Scanning a repo, and reading what a scan stored as a manifest: the model info and file
//! listing become the stored record ([`RepoRecord::from_listing`] classifies the variants),
//! content the store already holds is adopted at the new commit so it reads as cached, and a
//! record reads as the manifest with each variant's live state (bytes held, downloading in
//! this process).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cache::DEFAULT_REVISION;
use crate::error::Result;
use crate::fetch::{offline_error, Engine};
use crate::hub::HubClient;
use crate::manifest::{unix_now, Manifest, QuantLive, RepoRecord};
use crate::progress::Reporter;
use crate::store::FileRecord;
use crate::validate;

impl Engine {
    /// [`scan_record`](Self::scan_record) on a helper thread while `reporter` beats.
    pub(crate) fn scan_watched(
        self: &Arc<Self>,
        reporter: &mut Reporter<'_>,
        repo_id: &str,
        revision: Option<&str>,
    ) -> Result<RepoRecord> {
        let (engine, repo, revision) = (
            self.clone(),
            repo_id.to_string(),
            revision.map(str::to_string),
        );
        reporter.run("scan", move |watch| {
            engine.scan_record(&engine.hub.watched(watch), &repo, revision.as_deref())
        })
    }

    /// The work of `scan_repo`, returning the stored record itself (which another thread may
    /// delete from the catalog the moment it is stored). `hub` carries the caller's watch.
    fn scan_record(
        &self,
        hub: &HubClient,
        repo_id: &str,
        revision: Option<&str>,
    ) -> Result<RepoRecord> {
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        validate::revision(revision)?;
        let inner = self;
        if hub.is_offline() {
            return match inner.store.repo(repo_id)? {
                Some(rec) if rec.revision == revision || rec.commit == revision => Ok(rec),
                _ => Err(offline_error(&format!("scan {repo_id}"))),
            };
        }
        let info = hub.model_info(repo_id, revision)?;
        let listing = hub.list_files(repo_id, &info.sha)?;
        let now = unix_now();
        let record = inner.store.upsert_repo(repo_id, |old| {
            RepoRecord::from_listing(repo_id, revision, &info, &listing, old.as_ref(), now)
        })?;
        self.adopt_held_content(&record)?;
        Ok(record)
    }

    /// Record every listed file whose content the store already holds (from another revision,
    /// repo or variant) at this commit, so it reads as cached without a transfer.
    fn adopt_held_content(&self, record: &RepoRecord) -> Result<()> {
        let store = &self.store;
        for (path, listed) in &record.files {
            if store
                .cached_file(&record.repo_id, &record.commit, path)?
                .is_some()
            {
                continue;
            }
            let held = store.held_blob(listed.sha256.as_deref(), listed.git_oid.as_deref())?;
            if let Some(sha256) = held {
                let rec = FileRecord {
                    sha256,
                    size: listed.size,
                    git_oid: listed.git_oid.clone(),
                };
                store.reference_blob(&record.repo_id, &record.commit, path, &rec)?;
            }
        }
        Ok(())
    }

    /// `record` as the manifest callers see: each variant's status from what the store holds
    /// and what this process is downloading.
    pub(crate) fn manifest_of(&self, record: &RepoRecord) -> Manifest {
        let store = &self.store;
        let active = self.downloading.lock().unwrap_or_else(|p| p.into_inner());
        record.to_manifest(|key, files| {
            let mut live = QuantLive {
                all_held: true,
                ..QuantLive::default()
            };
            for f in files {
                match store.cached_file(&record.repo_id, &record.commit, f) {
                    Ok(Some(rec)) => live.held_bytes += rec.size,
                    _ => live.all_held = false,
                }
            }
            if let Some(loaded) = active.get(&(record.repo_id.clone(), key.to_string())) {
                live.downloading = true;
                live.held_bytes = live.held_bytes.max(loaded.load(Ordering::Relaxed));
            }
            live
        })
    }
}
