//! Docker TarSum (moby `pkg/tarsum`): a digest of a tar's entries that ignores their
//! order and owner names. Each entry hashes its header fields (`name`, `mode`, `uid`,
//! `gid`, `size`, v0 also `mtime`, `typeflag`, `linkname`, blank `uname`/`gname`,
//! `devmajor`, `devminor`, v1 also its sorted `SCHILY.xattr.*` records) and then its
//! body; the hex digests are sorted and hashed together, after an optional `extra`.
//!
//! Headers are read as Go's archive/tar reader presents them to TarSum: PAX `x`, GNU
//! `L` and `K` records fold into the next entry, a PAX global header `g` is an entry of
//! its own, and a USTAR/PAX prefix is joined to the name. Written here because no crate
//! reproduces those reader rules, and the digest goes into nixpkgs' layer `json`.

mod go_tar;

use crate::tar::reader::MAX_RECORD;
use anyhow::{bail, Context, Result};
use go_tar::INVALID;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;

/// `time.Time{}.Unix()` in Go: 0001-01-01T00:00:00Z.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// TarSum versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Version {
    V0,
    V1,
    Dev,
}

impl Version {
    fn label(self) -> &'static str {
        match self {
            Version::V0 => "tarsum",
            Version::V1 => "tarsum.v1",
            Version::Dev => "tarsum.dev",
        }
    }
}

/// The header fields TarSum hashes.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub name: Vec<u8>,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub size: i64,
    pub mtime: i64,
    pub typeflag: u8,
    pub linkname: Vec<u8>,
    pub devmajor: i64,
    pub devminor: i64,
    /// `SCHILY.xattr.<key>` records, key without the prefix.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Collects per-entry digests; `finish` gives the TarSum string.
pub struct TarSum {
    version: Version,
    sums: Vec<(String, Vec<u8>)>,
}

/// Hashes one entry: feed its body with `update`, then hand it to [`TarSum::add`].
pub struct EntryHasher {
    sha: Sha256,
    name: Vec<u8>,
}

impl EntryHasher {
    /// Adds body bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
    }
}

impl TarSum {
    pub fn new(version: Version) -> TarSum {
        TarSum {
            version,
            sums: Vec::new(),
        }
    }

    /// Starts an entry, hashing its header fields.
    pub fn entry(&self, e: &Entry) -> EntryHasher {
        let mut sha = Sha256::new();
        let mut put = |k: &str, v: &[u8]| {
            sha.update(k.as_bytes());
            sha.update(v);
        };
        put("name", &e.name);
        put("mode", e.mode.to_string().as_bytes());
        put("uid", e.uid.to_string().as_bytes());
        put("gid", e.gid.to_string().as_bytes());
        put("size", e.size.to_string().as_bytes());
        if self.version == Version::V0 {
            put("mtime", e.mtime.to_string().as_bytes());
        }
        put("typeflag", &[e.typeflag]);
        put("linkname", &e.linkname);
        put("uname", b"");
        put("gname", b"");
        put("devmajor", e.devmajor.to_string().as_bytes());
        put("devminor", e.devminor.to_string().as_bytes());
        if self.version != Version::V0 {
            let mut xattrs = e.xattrs.clone();
            xattrs.sort();
            for (k, v) in &xattrs {
                sha.update(k);
                sha.update(v);
            }
        }
        EntryHasher {
            sha,
            name: e.name.clone(),
        }
    }

    /// Records a finished entry.
    pub fn add(&mut self, entry: EntryHasher) {
        self.sums
            .push((hex::encode(entry.sha.finalize()), normalise(&entry.name)));
    }

    /// `<label>+sha256:<hex>`, with `extra` hashed first (nixpkgs passes none).
    pub fn finish(mut self, extra: Option<&[u8]>) -> Result<String> {
        sort_sums(&mut self.sums)?;
        let mut sha = Sha256::new();
        if let Some(x) = extra {
            sha.update(x);
        }
        for (sum, _) in &self.sums {
            sha.update(sum.as_bytes());
        }
        Ok(format!(
            "{}+sha256:{}",
            self.version.label(),
            hex::encode(sha.finalize())
        ))
    }
}

/// moby's `FileInfoSums.SortBySums`: by digest, unless a name repeats; then Go's
/// `sort.Sort` with "same name: archive order, else digest", which is reproduced for
/// the insertion sort Go uses up to 12 entries.
fn sort_sums(sums: &mut [(String, Vec<u8>)]) -> Result<()> {
    let mut seen = HashMap::new();
    let duplicated = sums
        .iter()
        .any(|(_, n)| seen.insert(n.clone(), ()).is_some());
    if !duplicated {
        sums.sort_by(|a, b| a.0.cmp(&b.0));
        return Ok(());
    }
    if sums.len() > 12 {
        bail!("TarSum of an archive with repeated paths and more than 12 entries depends on Go's pdqsort; not supported");
    }
    let mut items: Vec<(usize, (String, Vec<u8>))> = sums.iter().cloned().enumerate().collect();
    let less = |a: &(usize, (String, Vec<u8>)), b: &(usize, (String, Vec<u8>))| {
        if a.1 .1 == b.1 .1 {
            a.0 < b.0
        } else {
            a.1 .0 < b.1 .0
        }
    };
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && less(&items[j], &items[j - 1]) {
            items.swap(j, j - 1);
            j -= 1;
        }
    }
    for (slot, (_, item)) in sums.iter_mut().zip(items) {
        *slot = item;
    }
    Ok(())
}

/// `path.Join(".", path.Join("/", name))`: the name used only to find repeats.
fn normalise(name: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

/// TarSum of a whole tar stream, read as Go's archive/tar reads it.
pub fn of_stream(input: &mut dyn Read, version: Version, extra: Option<&[u8]>) -> Result<String> {
    let mut sum = TarSum::new(version);
    let mut pending = Pending::default();
    let mut pad = 0;
    // Go reads the padding after a member when it looks for the next header; input
    // that ends within it ends the archive.
    while skip_padding(input, pad)? {
        let Some(block) = read_block(input)? else {
            break;
        };
        if block.iter().all(|&b| b == 0) {
            end_of_archive(input)?;
            break;
        }
        let h = go_tar::header(&block)?;
        let len = body_len(h.typeflag, h.size)?;
        pad = crate::tar::padded(len) - len;
        match h.typeflag {
            b'x' => pending.pax = Some(go_tar::pax_records(&read_special(input, len)?)?),
            b'L' => pending.name = Some(go_tar::text(&read_special(input, len)?)),
            b'K' => pending.link = Some(go_tar::text(&read_special(input, len)?)),
            b'g' => {
                let records = go_tar::pax_records(&read_special(input, len)?)?;
                sum.add(sum.entry(&global_entry(h.entry, &records)));
                pending = Pending::default();
            }
            _ => {
                let len = entry(input, h.entry, std::mem::take(&mut pending), &mut sum)?;
                pad = crate::tar::padded(len) - len;
            }
        }
    }
    sum.finish(extra)
}

/// A global header as Go returns it: only its name, type and xattrs; its zero ModTime
/// is year 1, which v0 hashes as -62135596800. mergePAX runs first, so a `path` record
/// renames it.
fn global_entry(header: Entry, records: &[(Vec<u8>, Vec<u8>)]) -> Entry {
    let name = records
        .iter()
        .find(|(k, _)| k == b"path")
        .map_or(header.name, |(_, v)| v.clone());
    Entry {
        name,
        typeflag: b'g',
        mtime: GO_ZERO_TIME,
        xattrs: xattrs(records),
        ..Entry::default()
    }
}

/// Hashes an entry with the records before it applied; returns its body length.
fn entry(input: &mut dyn Read, mut e: Entry, pending: Pending, sum: &mut TarSum) -> Result<u64> {
    pending.apply(&mut e)?;
    if e.typeflag == 0 {
        e.typeflag = if e.name.ends_with(b"/") { b'5' } else { b'0' };
    }
    let len = body_len(e.typeflag, e.size)?;
    let mut hasher = sum.entry(&e);
    copy_body(input, len, &mut hasher)?;
    sum.add(hasher);
    Ok(len)
}

/// Go's `handleRegularFile`: header-only types have no body; a negative size is invalid.
fn body_len(typeflag: u8, size: i64) -> Result<u64> {
    if matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
        return Ok(0);
    }
    u64::try_from(size).ok().context(INVALID)
}

#[derive(Default)]
struct Pending {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Pending {
    /// PAX records first, then GNU long names (which win, in Go's reader).
    fn apply(self, e: &mut Entry) -> Result<()> {
        if let Some(records) = &self.pax {
            merge_pax(e, records)?;
        }
        // An empty long name or link changes nothing (Go tests for "").
        if let Some(n) = self.name.filter(|n| !n.is_empty()) {
            e.name = n;
        }
        if let Some(l) = self.link.filter(|l| !l.is_empty()) {
            e.linkname = l;
        }
        Ok(())
    }
}

/// Go 1.19's `mergePAX` (records with empty values are skipped).
fn merge_pax(e: &mut Entry, records: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    for (k, v) in records.iter().filter(|(_, v)| !v.is_empty()) {
        match k.as_slice() {
            b"path" => e.name = v.clone(),
            b"linkpath" => e.linkname = v.clone(),
            b"size" => e.size = go_tar::pax_int(v)?,
            b"uid" => e.uid = go_tar::pax_int(v)?,
            b"gid" => e.gid = go_tar::pax_int(v)?,
            b"mtime" => e.mtime = go_tar::pax_time(v)?,
            b"atime" | b"ctime" => {
                go_tar::pax_time(v)?;
            }
            _ => {}
        }
    }
    e.xattrs = xattrs(records);
    Ok(())
}

fn xattrs(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    records
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .filter_map(|(k, v)| {
            k.strip_prefix(b"SCHILY.xattr.")
                .map(|k| (k.to_vec(), v.clone()))
        })
        .collect()
}

/// After a zero block: a second one, or the end of the input (Go's reader refuses
/// anything else).
fn end_of_archive(input: &mut dyn Read) -> Result<()> {
    match read_block(input)? {
        Some(b) if b.iter().any(|&x| x != 0) => bail!(INVALID),
        _ => Ok(()),
    }
}

fn read_block(input: &mut dyn Read) -> Result<Option<[u8; 512]>> {
    let mut block = [0u8; 512];
    let mut got = 0;
    while got < 512 {
        let n = input.read(&mut block[got..]).context("cannot read input")?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                bail!("unexpected EOF")
            };
        }
        got += n;
    }
    Ok(Some(block))
}

/// The body of a PAX or GNU long-name record, as Go's `readSpecialFile` reads it: at
/// most [`MAX_RECORD`] bytes, grown as the bytes arrive (never allocated from `len`).
fn read_special(input: &mut dyn Read, len: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    input.take(len.min(MAX_RECORD + 1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_RECORD {
        bail!("archive/tar: header field too long");
    }
    if (buf.len() as u64) < len {
        bail!("unexpected EOF");
    }
    Ok(buf)
}

/// Exactly `len` body bytes into the entry's hash.
fn copy_body(input: &mut dyn Read, len: u64, hasher: &mut EntryHasher) -> Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = input.read(&mut buf[..want])?;
        if n == 0 {
            bail!("unexpected EOF");
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// Skips `n` bytes of padding; false when the input ends first (Go's `tryReadFull`).
fn skip_padding(input: &mut dyn Read, n: u64) -> Result<bool> {
    let copied = std::io::copy(&mut input.take(n), &mut std::io::sink())?;
    Ok(copied == n)
}
