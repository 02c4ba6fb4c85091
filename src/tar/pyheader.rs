//! Headers exactly as CPython's `tarfile` writes them in PAX format (the default since
//! 3.8, used by nixpkgs' `stream_layered_image.py`): a plain ustar header, preceded by a
//! `././@PaxHeader` block only when a field is too long, not ASCII, or out of range.
//!
//! Written by hand because byte-exactness with CPython is the point: the `tar` crate
//! would split long names into the ustar prefix and chooses other PAX triggers.

use super::block::{field, Block, POSIX_MAGIC};
use super::{kind, padded};

/// The fields of a `tarfile.TarInfo` that reach the archive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TarInfo {
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub kind: u8,
    pub linkname: Vec<u8>,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub devmajor: u64,
    pub devminor: u64,
    /// PAX records carried over from a parsed archive (`TarInfo.pax_headers`), in order.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TarInfo {
    /// A regular-file TarInfo as `tarfile.TarInfo(name)` creates it (mode 0644, root ids 0).
    pub fn file(name: &[u8], size: u64, mtime: i64) -> TarInfo {
        TarInfo {
            name: name.to_vec(),
            mode: 0o644,
            size,
            mtime,
            kind: kind::REG,
            ..TarInfo::default()
        }
    }

    /// Encodes the header block(s), as `TarInfo.tobuf(PAX_FORMAT, "utf-8", "surrogateescape")`.
    pub fn encode(&self) -> Vec<u8> {
        let mut name = self.name.clone();
        if self.kind == kind::DIR && !name.ends_with(b"/") {
            name.push(b'/');
        }
        let mut pax = self.pax.clone();
        let has = |pax: &[(Vec<u8>, Vec<u8>)], k: &[u8]| pax.iter().any(|(key, _)| key == k);
        for (value, key, limit) in [
            (&name, &b"path"[..], 100),
            (&self.linkname, b"linkpath", 100),
            (&self.uname, b"uname", 32),
            (&self.gname, b"gname", 32),
        ] {
            if !has(&pax, key) && (!value.is_ascii() || value.len() > limit) {
                pax.push((key.to_vec(), value.clone()));
            }
        }
        let mut numbers = [self.uid, self.gid, self.size, self.mtime.max(0) as u64];
        for (i, (key, digits)) in [("uid", 8), ("gid", 8), ("size", 12), ("mtime", 12)]
            .into_iter()
            .enumerate()
        {
            let negative = i == 3 && self.mtime < 0;
            if negative || numbers[i] >= 1u64 << (3 * (digits - 1)) {
                let text = if negative {
                    self.mtime.to_string()
                } else {
                    numbers[i].to_string()
                };
                numbers[i] = 0;
                if !has(&pax, key.as_bytes()) {
                    pax.push((key.as_bytes().to_vec(), text.into_bytes()));
                }
            }
        }
        let mut out = Vec::with_capacity(512);
        if !pax.is_empty() {
            out.extend_from_slice(&pax_header(&pax));
        }
        let mut b = Block::default();
        b.text(field::NAME, &ascii_replace(&name));
        b.octal(field::MODE, (self.mode & 0o7777) as u64);
        b.octal(field::UID, numbers[0]);
        b.octal(field::GID, numbers[1]);
        b.octal(field::SIZE, numbers[2]);
        b.octal(field::MTIME, numbers[3]);
        b.kind(self.kind);
        b.text(field::LINKNAME, &ascii_replace(&self.linkname));
        b.text(field::MAGIC, POSIX_MAGIC);
        b.text(field::UNAME, &ascii_replace(&self.uname));
        b.text(field::GNAME, &ascii_replace(&self.gname));
        if self.kind == kind::CHAR || self.kind == kind::BLOCK {
            b.octal(field::DEVMAJOR, self.devmajor);
            b.octal(field::DEVMINOR, self.devminor);
        }
        out.extend_from_slice(&b.finish());
        out
    }
}

/// The `././@PaxHeader` block plus its records, as `_create_pax_generic_header` writes them.
fn pax_header(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let binary = records.iter().any(|(_, v)| std::str::from_utf8(v).is_err());
    let mut body = Vec::new();
    if binary {
        body.extend_from_slice(b"21 hdrcharset=BINARY\n");
    }
    for (key, value) in records {
        body.extend_from_slice(&pax_record(key, value));
    }
    let mut b = Block::default();
    b.text(field::NAME, b"././@PaxHeader");
    b.octal(field::MODE, 0);
    b.octal(field::UID, 0);
    b.octal(field::GID, 0);
    b.octal(field::SIZE, body.len() as u64);
    b.octal(field::MTIME, 0);
    b.kind(kind::PAX);
    b.text(field::MAGIC, POSIX_MAGIC);
    let mut out = b.finish().to_vec();
    out.extend_from_slice(&body);
    out.resize(512 + padded(body.len() as u64) as usize, 0);
    out
}

/// One `"<len> <key>=<value>\n"` record, the length counting its own digits.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base;
    loop {
        let next = base + len.to_string().len();
        if next == len {
            break;
        }
        len = next;
    }
    let mut rec = format!("{len} ").into_bytes();
    rec.extend_from_slice(key);
    rec.push(b'=');
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

/// Python's `str.encode("ascii", "replace")` of a name decoded with surrogateescape:
/// every non-ASCII character, and every undecodable byte, becomes one `?`.
pub fn ascii_replace(bytes: &[u8]) -> Vec<u8> {
    if bytes.is_ascii() {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if c.is_ascii() { c as u8 } else { b'?' });
        }
        out.extend(std::iter::repeat_n(b'?', chunk.invalid().len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_length_counts_itself() {
        assert_eq!(pax_record(b"path", b"x"), b"9 path=x\n");
        let long = vec![b'a'; 95];
        let rec = pax_record(b"path", &long);
        assert_eq!(rec.len(), 105);
        assert!(rec.starts_with(b"105 path="));
    }

    #[test]
    fn replaces_non_ascii() {
        assert_eq!(ascii_replace("é/x".as_bytes()), b"?/x");
        assert_eq!(ascii_replace(b"\xff\xfea"), b"??a");
    }
}
