//! The Xet chunk index: for each blob fetched natively from Xet storage, where each chunk of
//! each xorb it was rebuilt from lies in it. A later Xet file (a new revision, a variant
//! sharing tensors) whose reconstruction names chunks already held copies them from the blob
//! instead of fetching them (chunk-level dedup, see `crate::xet`).
//!
//! Keyed by (xorb, chunk index, blob) because that is how a reconstruction names bytes (it
//! gives no chunk hashes), and because one chunk is in every blob that shares it: each keeps
//! its own rows, so deleting one blob never loses another's. The chunk hash is kept to check
//! a copy before it is used. Rows go with their blob (`ON DELETE CASCADE`), so eviction and
//! gc never leave an entry to a blob that is gone; the reader's lock on an opened blob keeps
//! it from eviction while it is copied.

use rusqlite::params;

use super::catalog::{sql_err, Catalog};
use super::Store;
use crate::error::Result;
use crate::xet::{Held, LocalChunks, LocalRun, XetHash};

/// One indexed chunk in a blob: offset there, length and hash.
type Row = (u64, u32, String);

impl Catalog {
    /// Record where blob `sha256` holds `chunks` (again: the same rows, unchanged).
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

    /// A blob that holds every chunk `start..end` of `xorb`, if one does.
    fn blob_with_xet_chunks(&self, xorb: &XetHash, start: u32, end: u32) -> Result<Option<String>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT sha256 FROM xet_chunks WHERE xorb = ?1 AND idx >= ?2 AND idx < ?3
                     GROUP BY sha256 HAVING COUNT(*) = ?4 LIMIT 1",
                )
                .map_err(sql_err)?;
            let mut rows = stmt
                .query(params![xorb.to_string(), start, end, end - start])
                .map_err(sql_err)?;
            match rows.next().map_err(sql_err)? {
                Some(row) => Ok(Some(row.get(0).map_err(sql_err)?)),
                None => Ok(None),
            }
        })
    }

    /// Where blob `sha256` holds chunks `start..end` of `xorb`, in order.
    fn xet_chunks_in(
        &self,
        sha256: &str,
        xorb: &XetHash,
        start: u32,
        end: u32,
    ) -> Result<Vec<Row>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT offset, len, hash FROM xet_chunks
                     WHERE xorb = ?1 AND idx >= ?2 AND idx < ?3 AND sha256 = ?4 ORDER BY idx",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![xorb.to_string(), start, end, sha256], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
                })
                .map_err(sql_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
        })
    }
}

impl LocalChunks for Store {
    fn has(&self, xorb: &XetHash, start: u32, end: u32) -> bool {
        matches!(
            self.catalog.blob_with_xet_chunks(xorb, start, end),
            Ok(Some(_))
        )
    }

    /// Only runs held in one blob are copied (the common case: the term's chunks came from
    /// one earlier file); a run no single blob holds is fetched.
    fn find(&self, xorb: &XetHash, start: u32, end: u32) -> Option<LocalRun> {
        let blob = self.catalog.blob_with_xet_chunks(xorb, start, end).ok()??;
        let rows = self.catalog.xet_chunks_in(&blob, xorb, start, end).ok()?;
        if rows.len() != (end - start) as usize {
            return None;
        }
        let chunks = rows
            .into_iter()
            .map(|(offset, len, hash)| Some((offset, len, hash.parse().ok()?)))
            .collect::<Option<Vec<_>>>()?;
        let file = self.blobs.open_blob(&blob).ok()?;
        Some(LocalRun { file, chunks })
    }
}
