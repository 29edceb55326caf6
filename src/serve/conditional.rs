//! The request headers that change which bytes a file response carries: a single `Range`
//! (RFC 9110 §14; `bytes=0-0` is how transformers.js probes a size, suffix ranges how tail
//! readers start), `If-Range`, and `If-None-Match`. Several ranges in one request are answered
//! with the whole file, which the RFC allows, rather than a multipart body no Hub client asks
//! for.

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Range {
    /// No (usable) range: the whole file, `200`.
    Full,
    /// `206` with these bytes.
    Part { start: u64, len: u64 },
    /// `416`: the range starts past the end (or asks for an empty suffix).
    Unsatisfiable,
}

/// Parse `header` against `size`. A malformed header is ignored, as the RFC says, so a client
/// with an odd header still gets the file.
pub(crate) fn range(header: Option<&str>, size: u64) -> Range {
    let Some(spec) = header.map(str::trim).and_then(strip_bytes_unit) else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Range::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.is_empty() {
        // `bytes=-N`: the last N bytes.
        return match number(last) {
            None => Range::Full,
            Some(0) => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => {
                let len = n.min(size);
                Range::Part {
                    start: size - len,
                    len,
                }
            }
        };
    }
    let Some(start) = number(first) else {
        return Range::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            _ => return Range::Full,
        }
    };
    if start >= size {
        return Range::Unsatisfiable;
    }
    let end = end.map_or(size - 1, |e| e.min(size - 1));
    Range::Part {
        start,
        len: end - start + 1,
    }
}

fn strip_bytes_unit(header: &str) -> Option<&str> {
    let (unit, spec) = header.split_once('=')?;
    unit.trim().eq_ignore_ascii_case("bytes").then_some(spec)
}

/// Whether `If-None-Match` names `etag` (a bare value, unquoted): `*`, or one of the listed
/// tags compared weakly (a `W/` prefix is ignored), as the RFC says for this header.
pub(crate) fn none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || unquote(tag.strip_prefix("W/").unwrap_or(tag)) == Some(etag))
}

/// Whether an `If-Range` header still allows the range: it must be our entity tag, compared
/// strongly. A date (we send no `Last-Modified`) or another tag means "send it all".
pub(crate) fn if_range_holds(header: &str, etag: &str) -> bool {
    unquote(header.trim()) == Some(etag)
}

fn unquote(tag: &str) -> Option<&str> {
    tag.strip_prefix('"')?.strip_suffix('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, len: u64) -> Range {
        Range::Part { start, len }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(range(None, 10), Range::Full);
        assert_eq!(range(Some("bytes=0-0"), 10), part(0, 1));
        assert_eq!(range(Some("bytes=2-5"), 10), part(2, 4));
        assert_eq!(range(Some("bytes=2-"), 10), part(2, 8));
        assert_eq!(range(Some("bytes=5-100"), 10), part(5, 5));
        assert_eq!(range(Some("bytes=-3"), 10), part(7, 3));
        assert_eq!(range(Some("bytes=-30"), 10), part(0, 10));
        assert_eq!(range(Some("Bytes = 1-1"), 10), part(1, 1));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(range(Some("bytes=10-"), 10), Range::Unsatisfiable);
        assert_eq!(range(Some("bytes=10-20"), 10), Range::Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 10), Range::Unsatisfiable);
        assert_eq!(range(Some("bytes=0-0"), 0), Range::Unsatisfiable);
        assert_eq!(range(Some("bytes=-5"), 0), Range::Unsatisfiable);
    }

    #[test]
    fn ignored_ranges() {
        for header in [
            "bytes=5-2",
            "bytes=a-b",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(range(Some(header), 10), Range::Full, "{header}");
        }
    }

    #[test]
    fn entity_tags() {
        assert!(none_match("\"abc\"", "abc"));
        assert!(none_match("W/\"abc\"", "abc"));
        assert!(none_match("\"x\", \"abc\"", "abc"));
        assert!(none_match("*", "abc"));
        assert!(!none_match("\"abd\"", "abc"));
        assert!(!none_match("abc", "abc"));
        assert!(if_range_holds("\"abc\"", "abc"));
        assert!(!if_range_holds("W/\"abc\"", "abc"));
        assert!(!if_range_holds("Wed, 21 Oct 2015 07:28:00 GMT", "abc"));
    }
}
