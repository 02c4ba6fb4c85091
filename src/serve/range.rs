//! HTTP `Range: bytes=…` requests on a blob (RFC 9110 §14): one range is served as a
//! 206; several, or a header that cannot be read, are ignored (the whole blob, as the RFC
//! allows); a range that starts past the end is unsatisfiable (416).

/// What to send of a blob of a known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// All of it (200).
    Full,
    /// Bytes `start..=end` (206).
    Part { start: u64, end: u64 },
    /// Nothing can be sent (416).
    Unsatisfiable,
}

/// The range a `Range` header asks of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let number = |s: &str| -> Option<u64> {
        match !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            true => s.parse().ok(),
            false => None,
        }
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => Range::Full,
            Some(0) => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (first, last) => {
            let Some(start) = number(first) else {
                return Range::Full;
            };
            let end = match last {
                "" => u64::MAX,
                l => match number(l) {
                    Some(e) if e >= start => e,
                    _ => return Range::Full,
                },
            };
            if start >= size {
                return Range::Unsatisfiable;
            }
            Range::Part {
                start,
                end: end.min(size - 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let part = |start, end| Range::Part { start, end };
        assert_eq!(parse(None, 10), Range::Full);
        assert_eq!(parse(Some("bytes=0-4"), 10), part(0, 4));
        assert_eq!(parse(Some("bytes=5-"), 10), part(5, 9));
        assert_eq!(parse(Some("bytes=5-100"), 10), part(5, 9));
        assert_eq!(parse(Some("bytes=-3"), 10), part(7, 9));
        assert_eq!(parse(Some("bytes=-30"), 10), part(0, 9));
        assert_eq!(parse(Some("bytes=9-9"), 10), part(9, 9));
        assert_eq!(parse(Some("bytes=10-"), 10), Range::Unsatisfiable);
        assert_eq!(parse(Some("bytes=10-20"), 10), Range::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Range::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Range::Unsatisfiable);
        // Unreadable or several ranges: the whole blob.
        for ignored in [
            "bytes=4-2",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=",
            "bytes=+1-2",
        ] {
            assert_eq!(parse(Some(ignored), 10), Range::Full, "{ignored}");
        }
    }
}
