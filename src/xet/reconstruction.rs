//! A file's reconstruction, as the CAS describes it (`GET /v1/reconstructions/{file_hash}`):
//! the ordered terms (a run of chunks of one xorb each) and, per xorb, the presigned URLs
//! and byte ranges that hold those chunks. [`Reconstruction::check`] turns the server's
//! answer into a [`Layout`] only when it is self-consistent: every term has a fetch that
//! covers it, lengths add up to the file's size, no count or range is beyond what the format
//! allows. A hostile or broken CAS therefore never makes us allocate without bound, write
//! past the file, or loop; it ends the native transfer (and the bridge is used instead).

use std::collections::HashMap;

use serde::Deserialize;

use super::XetHash;

/// A xorb holds at most this many chunks, and a chunk at most 128 KiB ...
const MAX_XORB_CHUNKS: u64 = 8192;
/// ... so a xorb's chunk records are at most this long (64 MiB of chunks, each record
/// a little longer than its chunk when stored).
const MAX_XORB_BYTES: u64 = 80 << 20;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub(crate) struct IndexRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawTerm {
    pub hash: String,
    pub range: IndexRange,
    pub unpacked_length: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawFetch {
    pub range: IndexRange,
    pub url: String,
    /// Inclusive byte range.
    pub url_range: IndexRange,
}

/// The CAS's answer, as sent.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Reconstruction {
    #[serde(default)]
    pub offset_into_first_range: u64,
    pub terms: Vec<RawTerm>,
    #[serde(default)]
    pub fetch_info: HashMap<String, Vec<RawFetch>>,
}

/// One term, placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term {
    pub xorb: XetHash,
    /// Chunk indices in the xorb, end exclusive.
    pub start: u32,
    pub end: u32,
    /// Where its bytes go in the file, and how many there are.
    pub offset: u64,
    pub len: u64,
    /// The fetch (index into [`Layout::fetches`]) whose bytes hold this term.
    pub fetch: usize,
}

/// A presigned piece of a xorb: chunks `start..end`, bytes `bytes_start..=bytes_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub xorb: XetHash,
    pub start: u32,
    pub end: u32,
    pub url: String,
    pub bytes_start: u64,
    pub bytes_end: u64,
}

impl Fetch {
    /// The range to GET, end exclusive.
    pub fn byte_range(&self) -> (u64, u64) {
        (self.bytes_start, self.bytes_end + 1)
    }

    /// The same piece of the same xorb (its URL may be a fresh signature).
    pub fn same_piece(&self, other: &Fetch) -> bool {
        self.xorb == other.xorb && self.start == other.start && self.end == other.end
    }
}

/// A checked reconstruction of a whole file.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub terms: Vec<Term>,
    pub fetches: Vec<Fetch>,
}

impl Reconstruction {
    /// The layout of a file of `size` bytes, or what is wrong with the answer.
    pub fn check(self, size: u64) -> Result<Layout, String> {
        if self.offset_into_first_range != 0 {
            return Err(format!(
                "an offset of {} into the first term of a whole file",
                self.offset_into_first_range
            ));
        }
        let mut fetches: Vec<Fetch> = Vec::new();
        let mut by_xorb: HashMap<XetHash, Vec<usize>> = HashMap::new();
        for (xorb, list) in self.fetch_info {
            let xorb = parse_hash(&xorb)?;
            for raw in list {
                let fetch = check_fetch(xorb, raw)?;
                by_xorb.entry(xorb).or_default().push(fetches.len());
                fetches.push(fetch);
            }
        }
        let mut terms = Vec::with_capacity(self.terms.len());
        let mut offset = 0u64;
        for raw in self.terms {
            let xorb = parse_hash(&raw.hash)?;
            let IndexRange { start, end } = raw.range;
            if start >= end || end > MAX_XORB_CHUNKS {
                return Err(format!("a term with chunks {start}..{end} of xorb {xorb}"));
            }
            // Every chunk has at least one byte and at most 128 KiB.
            let chunks = end - start;
            if raw.unpacked_length < chunks
                || raw.unpacked_length > chunks * xet_format::hash::MAX_CHUNK as u64
            {
                return Err(format!(
                    "a term of {chunks} chunks said to hold {} bytes",
                    raw.unpacked_length
                ));
            }
            let fetch = by_xorb
                .get(&xorb)
                .and_then(|list| {
                    list.iter().copied().find(|&i| {
                        let f = &fetches[i];
                        u64::from(f.start) <= start && u64::from(f.end) >= end
                    })
                })
                .ok_or_else(|| {
                    format!("no fetch info covering chunks {start}..{end} of xorb {xorb}")
                })?;
            terms.push(Term {
                xorb,
                start: start as u32,
                end: end as u32,
                offset,
                len: raw.unpacked_length,
                fetch,
            });
            offset = offset.saturating_add(raw.unpacked_length);
        }
        if offset != size {
            return Err(format!(
                "terms adding up to {offset} bytes for a file of {size}"
            ));
        }
        Ok(Layout { terms, fetches })
    }
}

fn parse_hash(text: &str) -> Result<XetHash, String> {
    text.parse()
        .map_err(|_| format!("a xorb hash {:?} that is not 64 hex digits", truncate(text)))
}

fn check_fetch(xorb: XetHash, raw: RawFetch) -> Result<Fetch, String> {
    let IndexRange { start, end } = raw.range;
    if start >= end || end > MAX_XORB_CHUNKS {
        return Err(format!(
            "fetch info for chunks {start}..{end} of xorb {xorb}"
        ));
    }
    let bytes = raw.url_range;
    if bytes.end < bytes.start || bytes.end - bytes.start >= MAX_XORB_BYTES {
        return Err(format!(
            "fetch info for bytes {}..={} of xorb {xorb}",
            bytes.start, bytes.end
        ));
    }
    if !(raw.url.starts_with("http://") || raw.url.starts_with("https://")) {
        return Err(format!(
            "a xorb URL that is not http(s): {:?}",
            truncate(&raw.url)
        ));
    }
    Ok(Fetch {
        xorb,
        start: start as u32,
        end: end as u32,
        url: raw.url,
        bytes_start: bytes.start,
        bytes_end: bytes.end,
    })
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn answer(terms: &str, fetch: &str) -> Reconstruction {
        serde_json::from_str(&format!(
            r#"{{"offset_into_first_range":0,"terms":[{terms}],"fetch_info":{{"{X}":[{fetch}]}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn terms_are_placed_and_matched_to_a_covering_fetch() {
        let r = answer(
            &format!(
                r#"{{"hash":"{X}","range":{{"start":0,"end":2}},"unpacked_length":100}},
                   {{"hash":"{X}","range":{{"start":1,"end":3}},"unpacked_length":50}}"#
            ),
            r#"{"range":{"start":0,"end":3},"url":"http://127.0.0.1:1/x","url_range":{"start":0,"end":99}}"#,
        );
        let layout = r.check(150).unwrap();
        assert_eq!(layout.terms.len(), 2);
        assert_eq!((layout.terms[1].offset, layout.terms[1].len), (100, 50));
        assert_eq!(layout.terms[1].fetch, 0);
        assert_eq!(layout.fetches[0].byte_range(), (0, 100));
    }

    #[test]
    fn inconsistent_answers_are_refused() {
        let fetch = r#"{"range":{"start":0,"end":2},"url":"http://127.0.0.1:1/x","url_range":{"start":0,"end":99}}"#;
        let term = |range: &str, len: u64| {
            format!(r#"{{"hash":"{X}","range":{range},"unpacked_length":{len}}}"#)
        };
        // Sizes that do not add up, a term no fetch covers, a term of more bytes than its
        // chunks can hold, an empty range, a huge byte range, a non-http URL.
        let ok = term(r#"{"start":0,"end":2}"#, 100);
        assert!(answer(&ok, fetch).check(101).is_err());
        assert!(answer(&term(r#"{"start":0,"end":3}"#, 100), fetch)
            .check(100)
            .is_err());
        assert!(answer(&term(r#"{"start":0,"end":2}"#, 1 << 30), fetch)
            .check(1 << 30)
            .is_err());
        assert!(answer(&term(r#"{"start":1,"end":1}"#, 0), fetch)
            .check(0)
            .is_err());
        let huge = r#"{"range":{"start":0,"end":2},"url":"http://h/x","url_range":{"start":0,"end":999999999999}}"#;
        assert!(answer(&ok, huge).check(100).is_err());
        let file = r#"{"range":{"start":0,"end":2},"url":"file:///etc/passwd","url_range":{"start":0,"end":9}}"#;
        assert!(answer(&ok, file).check(100).is_err());
        assert!(answer(&ok, fetch).check(100).is_ok());
    }
}
