//! The `Link` response header (RFC 8288) as the Hub uses it for pagination: find the target of
//! the link whose `rel` includes `next`, tolerating several links, quoted or bare parameters,
//! commas inside `<...>` and stray whitespace.

/// The URI of the `rel="next"` link, if any. Relative URIs are returned as they are; the
/// caller resolves them against the request URL.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let target = after[..end].trim();
        let (params, remainder) = split_params(&after[end + 1..]);
        if params_have_next(params) && !target.is_empty() {
            return Some(target.to_string());
        }
        rest = remainder;
    }
}

/// Split `; rel="next"; title="a, b", <...>` into this link's parameters and what follows,
/// treating commas inside quotes as part of a value.
fn split_params(s: &str) -> (&str, &str) {
    let (params, rest) = split_once_unquoted(s, ',');
    (params, rest.unwrap_or(""))
}

fn params_have_next(params: &str) -> bool {
    split_unquoted(params, ';').into_iter().any(|param| {
        let Some((key, value)) = param.split_once('=') else {
            return false;
        };
        key.trim().eq_ignore_ascii_case("rel")
            && value
                .trim()
                .trim_matches('"')
                .split_ascii_whitespace()
                .any(|rel| rel.eq_ignore_ascii_case("next"))
    })
}

/// Split on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        let (head, tail) = split_once_unquoted(rest, sep);
        parts.push(head);
        match tail {
            Some(tail) => rest = tail,
            None => return parts,
        }
    }
}

/// The text before the first `sep` outside quotes, and what follows it (None: no `sep`).
fn split_once_unquoted(s: &str, sep: char) -> (&str, Option<&str>) {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => return (&s[..i], Some(&s[i + c.len_utf8()..])),
            _ => {}
        }
    }
    (s, None)
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn the_hub_form() {
        assert_eq!(
            next_link("<https://huggingface.co/api/models/a/b/tree/main?recursive=true&cursor=xyz>; rel=\"next\"")
                .as_deref(),
            Some("https://huggingface.co/api/models/a/b/tree/main?recursive=true&cursor=xyz")
        );
    }

    #[test]
    fn several_links_params_and_whitespace() {
        let header = "<http://h/p?page=1>; rel=\"prev\"; title=\"a, <b>; rel=next\" ,  < http://h/p?page=3 > ;REL = next";
        assert_eq!(next_link(header).as_deref(), Some("http://h/p?page=3"));
        assert_eq!(
            next_link("</x?c=1>; rel=\"last next\"").as_deref(),
            Some("/x?c=1")
        );
        assert_eq!(next_link("</x,y>; rel=next").as_deref(), Some("/x,y"));
    }

    #[test]
    fn no_next() {
        for header in [
            "",
            "garbage",
            "<http://h/p>; rel=\"prev\"",
            "<http://h/p>",
            "<>; rel=next",
            "<http://h/p; rel=next",
        ] {
            assert_eq!(next_link(header), None, "{header:?}");
        }
    }
}
