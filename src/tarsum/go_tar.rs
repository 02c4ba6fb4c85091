//! Header blocks and PAX records read by Go 1.19's `archive/tar` rules, which moby's
//! TarSum sees (and which differ from CPython's): numbers trimmed of NULs and spaces at
//! both ends, base-256 with negative values, the format from the magic (V7, USTAR,
//! STAR, GNU) deciding which fields count, strict PAX records and PAX times.

use super::Entry;
use anyhow::{bail, Context, Result};

/// Go's `archive/tar.ErrHeader`.
pub const INVALID: &str = "archive/tar: invalid tar header";

/// A header block as Go's reader returns it, before PAX and GNU records apply.
pub struct Header {
    pub entry: Entry,
    pub typeflag: u8,
    pub size: i64,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

/// Parses a (non-zero) header block.
pub fn header(b: &[u8; 512]) -> Result<Header> {
    let format = format(b).context(INVALID)?;
    let num = |at: usize, len: usize| numeric(&b[at..at + len]).context(INVALID);
    let (devmajor, devminor) = match format {
        Format::V7 => (0, 0),
        _ => (num(329, 8)?, num(337, 8)?),
    };
    let size = num(124, 12)?;
    let typeflag = b[156];
    let entry = Entry {
        name: full_name(b, format),
        mode: num(100, 8)?,
        uid: num(108, 8)?,
        gid: num(116, 8)?,
        size,
        mtime: num(136, 12)?,
        typeflag,
        linkname: text(&b[157..257]),
        devmajor,
        devminor,
        xattrs: Vec::new(),
    };
    Ok(Header {
        entry,
        typeflag,
        size,
    })
}

/// `getFormat`: `None` when the checksum is wrong.
fn format(b: &[u8; 512]) -> Option<Format> {
    let stored = octal(&b[148..156])?;
    let sum = |f: fn(u8) -> i64| -> i64 {
        b.iter()
            .enumerate()
            .map(|(i, &x)| if (148..156).contains(&i) { 32 } else { f(x) })
            .sum()
    };
    if stored != sum(|x| x as i64) && stored != sum(|x| x as i8 as i64) {
        return None;
    }
    Some(match (&b[257..263], &b[263..265], &b[508..512]) {
        (b"ustar\0", _, b"tar\0") => Format::Star,
        (b"ustar\0", _, _) => Format::Ustar,
        (b"ustar ", b" \0", _) => Format::Gnu,
        _ => Format::V7,
    })
}

/// The name, with the prefix the format has (GNU's only as pre-Go 1.8 writers left it:
/// when its atime or ctime does not parse and it is ASCII).
fn full_name(b: &[u8; 512], format: Format) -> Vec<u8> {
    let name = text(&b[0..100]);
    let prefix = match format {
        Format::V7 => Vec::new(),
        Format::Ustar => text(&b[345..500]),
        Format::Star => text(&b[345..476]),
        Format::Gnu => {
            let bad = |at: usize| b[at] != 0 && numeric(&b[at..at + 12]).is_none();
            let prefix = text(&b[345..500]);
            if (bad(345) || bad(357)) && prefix.is_ascii() {
                prefix
            } else {
                Vec::new()
            }
        }
    };
    if prefix.is_empty() {
        return name;
    }
    [prefix, name].join(&b'/')
}

/// `parseString`: up to the first NUL.
pub fn text(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..end].to_vec()
}

/// `parseNumeric`: base-256 (a set top bit; negative when the next one is set too),
/// else octal; `None` where Go sets ErrHeader (also for what overflows an int64).
pub fn numeric(b: &[u8]) -> Option<i64> {
    if b.first().is_none_or(|&c| c & 0x80 == 0) {
        return octal(b);
    }
    let inv = if b[0] & 0x40 != 0 { 0xff } else { 0 };
    let mut x: u64 = 0;
    for (i, &c) in b.iter().enumerate() {
        let c = if i == 0 { (c ^ inv) & 0x7f } else { c ^ inv };
        if x >> 56 > 0 {
            return None;
        }
        x = x << 8 | c as u64;
    }
    if x >> 63 > 0 {
        return None;
    }
    Some(if inv == 0xff { !(x as i64) } else { x as i64 })
}

/// `parseOctal`: spaces and NULs trimmed at both ends, then up to the first NUL, octal
/// digits only.
fn octal(b: &[u8]) -> Option<i64> {
    let blank = |c: &u8| *c == b' ' || *c == 0;
    let start = b.iter().position(|c| !blank(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !blank(c)).map_or(start, |e| e + 1);
    if start >= end {
        return Some(0);
    }
    let digits = text(&b[start..end]);
    if digits.is_empty() || !digits.iter().all(|c| (b'0'..=b'7').contains(c)) {
        return None;
    }
    let text = std::str::from_utf8(&digits).ok()?;
    u64::from_str_radix(text, 8).ok().map(|x| x as i64)
}

/// `parsePAX`: the records, in order, a later key replacing an earlier one.
pub fn pax_records(body: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (k, v, len) = pax_record(rest).context(INVALID)?;
        match records.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => records.push((k, v)),
        }
        rest = &rest[len..];
    }
    Ok(records)
}

/// `parsePAXRecord`: key, value and the record's length, or `None` if it is invalid.
fn pax_record(s: &[u8]) -> Option<(Vec<u8>, Vec<u8>, usize)> {
    let space = s.iter().position(|&c| c == b' ')?;
    let n: i64 = std::str::from_utf8(&s[..space]).ok()?.parse().ok()?;
    if n < 5 || n as u64 > s.len() as u64 || n as usize <= space + 1 {
        return None;
    }
    let n = n as usize;
    if s[n - 1] != b'\n' {
        return None;
    }
    let record = &s[space + 1..n - 1];
    let eq = record.iter().position(|&c| c == b'=')?;
    let (k, v) = (&record[..eq], &record[eq + 1..]);
    let nul_free = match k {
        b"path" | b"linkpath" | b"uname" | b"gname" => !v.contains(&0),
        _ => !k.contains(&0),
    };
    (!k.is_empty() && nul_free).then(|| (k.to_vec(), v.to_vec(), n))
}

/// A PAX integer record (`size`, `uid`, `gid`): `strconv.ParseInt`.
pub fn pax_int(v: &[u8]) -> Result<i64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|t| t.parse().ok())
        .context(INVALID)
}

/// `parsePAXTime(v).Unix()`: seconds, a fraction of a negative time rounding down.
pub fn pax_time(v: &[u8]) -> Result<i64> {
    let text = std::str::from_utf8(v).context(INVALID)?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let whole: i64 = secs.parse().ok().context(INVALID)?;
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        bail!(INVALID);
    }
    let below = frac.bytes().take(9).any(|c| c != b'0');
    Ok(if below && secs.starts_with('-') {
        whole - 1
    } else {
        whole
    })
}
