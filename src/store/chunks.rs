//! The Xet chunk index: for each blob fetched natively from Xet storage, where each chunk of
//! each xorb it was rebuilt from lies in it. A later Xet file (a new revision, a variant
//! sharing tensors) whose reconstruction names chunks already held copies them from the blob
//! instead of fetching them (chunk-level dedup, see `crate::xet`).
//!
//! Keyed by (xorb, chunk index) because that is how a reconstruction names bytes: it gives
//! no chunk hashes. The chunk hash is kept to check a copy before it is used. Rows go with
//! their blob (`ON DELETE CASCADE`), so eviction and gc never leave an entry to a blob that
//! is gone; the reader's lock on an opened blob keeps it from eviction while it is copied.

use rusqlite::params;

use super::catalog::{sql_err, Catalog};
use super::Store;
use crate::error::Result;
use crate::xet::{Held, LocalChunks, LocalRun, XetHash};

/// One indexed chunk: its blob, offset there, length and hash.
type Row = (String, u64, u32, String);

impl Catalog {
    /// Record where blob `sha256` holds `chunks`. A chunk already indexed in another blob now
    /// points here: either copy is good, and this one was verified last.
    pub(crate) fn record_xet_chunks(&self, sha256: &str, chunks: &[Held]) -> Result<()> {
        self.write(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO xet_chunks (xorb, idx, sha256, offset, len, hash)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM blobs WHERE sha256 = ?3)",
                )
                .map_err(sql_err)?;
            for c in chunks {
                stmt.execute(params![
                    c.xorb.to_string(),
                    c.index,
                    sha256,
                    c.offset as i64,
                    c.len,
                    c.hash.to_string()
                ])
                .map_err(sql_err)?;
            }
            Ok(())
        })
    }

    /// The indexed chunks `start..end` of `xorb`, in order (fewer when some are not held).
    fn xet_chunks(&self, xorb: &XetHash, start: u32, end: u32) -> Result<Vec<Row>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT sha256, offset, len, hash FROM xet_chunks
                     WHERE xorb = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![xorb.to_string(), start, end], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?, r.get(3)?))
                })
                .map_err(sql_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
        })
    }

    fn xet_chunk_count(&self, xorb: &XetHash, start: u32, end: u32) -> Result<u64> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM xet_chunks WHERE xorb = ?1 AND idx >= ?2 AND idx < ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![xorb.to_string(), start, end], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .map(|n| n as u64)
            .map_err(sql_err)
        })
    }
}

impl LocalChunks for Store {
    fn has(&self, xorb: &XetHash, start: u32, end: u32) -> bool {
        self.catalog
            .xet_chunk_count(xorb, start, end)
            .is_ok_and(|n| n == u64::from(end - start))
    }

    /// Only runs held in one blob are copied (the common case: the term's chunks came from
    /// one earlier file); a run split over blobs is fetched.
    fn find(&self, xorb: &XetHash, start: u32, end: u32) -> Option<LocalRun> {
        let rows = self.catalog.xet_chunks(xorb, start, end).ok()?;
        if rows.len() != (end - start) as usize {
            return None;
        }
        let blob = rows[0].0.clone();
        if rows.iter().any(|r| r.0 != blob) {
            return None;
        }
        let chunks = rows
            .into_iter()
            .map(|(_, offset, len, hash)| Some((offset, len, hash.parse().ok()?)))
            .collect::<Option<Vec<_>>>()?;
        let file = self.blobs.open_blob(&blob).ok()?;
        Some(LocalRun { file, chunks })
    }
}
