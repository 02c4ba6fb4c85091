//! Listing the members of an uncompressed tar file without reading their contents,
//! parsed the way CPython's `tarfile` parses them (GNU long names, PAX records), so a
//! member can be written again exactly as nixpkgs' streamer re-writes base layers.
//!
//! Nothing a header declares is trusted: every size must fit in what remains of the
//! file (or range) before anything is read, skipped or allocated, PAX records and GNU
//! long names are limited to [`MAX_RECORD`] bytes, and all offsets are checked. Errors
//! name the member but not the file: callers add the file they were reading.

use super::block::{checksum_ok, field, parse_number};
use super::pyheader::TarInfo;
use super::{kind, padded, BLOCK};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The largest PAX record block or GNU long name or link accepted (as Go's archive/tar).
pub const MAX_RECORD: u64 = 1 << 20;

/// The most PAX record bytes kept over all members (global records are copied into
/// every member, so a small archive could otherwise take unbounded memory).
const MAX_KEPT_RECORDS: u64 = 64 << 20;

/// A member: its header as CPython sees it, and where its data starts in the file.
/// The reader guarantees that a member with data ([`has_data`]) lies within the file.
#[derive(Clone, Debug)]
pub struct Member {
    pub info: TarInfo,
    pub data_offset: u64,
}

/// Lists every member of the tar file at `path`.
pub fn list(path: &Path) -> Result<Vec<Member>> {
    let len = std::fs::metadata(path).context("cannot open")?.len();
    list_range(path, 0, len)
}

/// Lists the members of a tar stored at `start..start + len` of the file at `path`
/// (a layer inside an image archive); data offsets are offsets in that file.
pub fn list_range(path: &Path, start: u64, len: u64) -> Result<Vec<Member>> {
    let file = File::open(path).context("cannot open")?;
    let file_len = file.metadata().context("cannot open")?.len();
    let end = start
        .checked_add(len)
        .filter(|&end| end <= file_len)
        .with_context(|| {
            format!("{len} bytes at offset {start} do not fit in a file of {file_len} bytes")
        })?;
    let mut lister = Lister {
        file,
        end,
        members: Vec::new(),
        pending: Pending::default(),
        global: Vec::new(),
        kept: 0,
    };
    let mut offset = start;
    while lister.end.saturating_sub(offset) >= BLOCK {
        let mut block = [0u8; 512];
        lister
            .file
            .read_exact_at(&mut block, offset)
            .context("cannot read")?;
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let info = parse_header(&block).with_context(|| {
            format!("not a tar archive (bad header at byte {})", offset - start)
        })?;
        offset = lister.take(info, offset + BLOCK)?;
    }
    Ok(lister.members)
}

/// The state of a listing: the file, where the range ends, and records not yet applied.
struct Lister {
    file: File,
    end: u64,
    members: Vec<Member>,
    pending: Pending,
    global: Vec<(Vec<u8>, Vec<u8>)>,
    kept: u64,
}

impl Lister {
    /// Takes the member whose header was just read (data at `data`); returns the offset
    /// of the next header.
    fn take(&mut self, info: TarInfo, data: u64) -> Result<u64> {
        let remain = self.end - data;
        if is_record(info.kind) {
            let body = self.record(&info, data, remain)?;
            match info.kind {
                kind::GNU_LONGNAME => self.pending.name = Some(nul_terminated(&body)),
                kind::GNU_LONGLINK => self.pending.link = Some(nul_terminated(&body)),
                kind::PAX => self.pending.pax = Some(parse_pax(&body, &self.global)),
                _ => self.global = parse_pax(&body, &self.global),
            }
            return Ok(data + padded(info.size));
        }
        let info = std::mem::take(&mut self.pending).apply(info, &self.global);
        let size = if has_data(info.kind) { info.size } else { 0 };
        if size > remain {
            bail!(
                "member {}: declares {size} bytes but only {remain} remain",
                shown(&info.name)
            );
        }
        self.keep(&info)?;
        self.members.push(Member {
            info,
            data_offset: data,
        });
        Ok(data + padded(size))
    }

    /// The body of a PAX or GNU long-name record, its size checked first.
    fn record(&self, info: &TarInfo, data: u64, remain: u64) -> Result<Vec<u8>> {
        let name = shown(&info.name);
        if info.size > remain {
            bail!(
                "member {name}: declares {} bytes but only {remain} remain",
                info.size
            );
        }
        if info.size > MAX_RECORD {
            bail!(
                "member {name}: a {} record of {} bytes is over the {MAX_RECORD}-byte limit",
                record_kind(info.kind),
                info.size
            );
        }
        let mut body = vec![0u8; info.size as usize];
        self.file
            .read_exact_at(&mut body, data)
            .context("cannot read")?;
        Ok(body)
    }

    /// Counts the PAX record bytes a member keeps, refusing more than the budget.
    fn keep(&mut self, info: &TarInfo) -> Result<()> {
        let bytes: u64 = info
            .pax
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        self.kept = self.kept.saturating_add(bytes);
        if self.kept > MAX_KEPT_RECORDS {
            bail!(
                "member {}: the members' PAX records exceed {MAX_KEPT_RECORDS} bytes in all",
                shown(&info.name)
            );
        }
        Ok(())
    }
}

/// A member name for an error message: one line, control characters escaped.
pub fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).escape_debug().to_string()
}

fn is_record(k: u8) -> bool {
    matches!(
        k,
        kind::GNU_LONGNAME | kind::GNU_LONGLINK | kind::PAX | b'g'
    )
}

fn record_kind(k: u8) -> &'static str {
    match k {
        kind::GNU_LONGNAME => "GNU long name",
        kind::GNU_LONGLINK => "GNU long link",
        _ => "PAX",
    }
}

/// A member name's path components, without empty and `.` ones (`..` kept).
pub fn components(name: &[u8]) -> Vec<Vec<u8>> {
    name.split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// The bytes of a member of the tar file at `path` (a member with data; its size is
/// checked against the file before anything is allocated).
pub fn read_member(path: &Path, member: &Member) -> Result<Vec<u8>> {
    let name = shown(&member.info.name);
    if !has_data(member.info.kind) {
        bail!("member {name} is not a file");
    }
    let file = File::open(path).context("cannot open")?;
    let file_len = file.metadata().context("cannot open")?.len();
    let size = member.info.size;
    if member.data_offset.saturating_add(size) > file_len {
        bail!("member {name}: declares {size} bytes but the file ends before");
    }
    let mut buf = vec![0u8; size as usize];
    file.read_exact_at(&mut buf, member.data_offset)
        .with_context(|| format!("cannot read member {name}"))?;
    Ok(buf)
}

/// The last member named `name` (as `TarFile.getmember`), trailing slashes ignored.
pub fn find<'a>(members: &'a [Member], name: &str) -> Option<&'a Member> {
    let want = name.trim_end_matches('/').as_bytes();
    members.iter().rev().find(|m| m.info.name == want)
}

/// Whether members of this type have data after their header (CPython's rule).
pub fn has_data(k: u8) -> bool {
    !matches!(k, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

#[derive(Default)]
struct Pending {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Pending {
    fn apply(self, mut info: TarInfo, global: &[(Vec<u8>, Vec<u8>)]) -> TarInfo {
        if let Some(n) = self.name {
            info.name = n;
        }
        if let Some(l) = self.link {
            info.linkname = l;
        }
        let records = self.pax.unwrap_or_else(|| global.to_vec());
        for (key, value) in &records {
            let text = String::from_utf8_lossy(value);
            match key.as_slice() {
                b"path" => info.name = value.clone(),
                b"linkpath" => info.linkname = value.clone(),
                b"uname" => info.uname = value.clone(),
                b"gname" => info.gname = value.clone(),
                b"size" => info.size = text.parse().unwrap_or(info.size),
                b"uid" => info.uid = text.parse().unwrap_or(info.uid),
                b"gid" => info.gid = text.parse().unwrap_or(info.gid),
                b"mtime" => {
                    if let Ok(t) = text.parse::<f64>() {
                        info.mtime = t.round_ties_even() as i64;
                    }
                }
                _ => {}
            }
        }
        info.pax = records;
        if info.kind == 0 && info.name.ends_with(b"/") {
            info.kind = kind::DIR;
        }
        if info.kind == kind::DIR {
            while info.name.len() > 1 && info.name.ends_with(b"/") {
                info.name.pop();
            }
        }
        info
    }
}

fn nul_terminated(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..end].to_vec()
}

fn parse_header(b: &[u8; 512]) -> Result<TarInfo> {
    let num =
        |(at, len): (usize, usize)| parse_number(&b[at..at + len]).context("bad numeric field");
    if !checksum_ok(b) {
        bail!("checksum mismatch");
    }
    let text = |(at, len): (usize, usize)| nul_terminated(&b[at..at + len]);
    let mut name = text(field::NAME);
    let k = b[field::TYPE];
    let prefix = text(field::PREFIX);
    let posix = &b[257..263] == b"ustar\0";
    if posix && !prefix.is_empty() && !matches!(k, b'L' | b'K' | b'S' | b'M' | b'N' | b'D' | b'V') {
        let mut full = prefix;
        full.push(b'/');
        full.extend_from_slice(&name);
        name = full;
    }
    Ok(TarInfo {
        name,
        mode: num(field::MODE)? as u32,
        uid: num(field::UID)?,
        gid: num(field::GID)?,
        size: num(field::SIZE)?,
        mtime: num(field::MTIME)? as i64,
        kind: k,
        linkname: text(field::LINKNAME),
        uname: text(field::UNAME),
        gname: text(field::GNAME),
        devmajor: num(field::DEVMAJOR).unwrap_or(0),
        devminor: num(field::DEVMINOR).unwrap_or(0),
        pax: Vec::new(),
    })
}

/// PAX records, in order, starting from the global ones (a later key replaces in place).
fn parse_pax(body: &[u8], global: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut records = global.to_vec();
    let mut rest = body;
    while let Some(space) = rest.iter().position(|&c| c == b' ') {
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if len <= space + 1 || len > rest.len() {
            break;
        }
        let record = &rest[space + 1..len - 1];
        if let Some(eq) = record.iter().position(|&c| c == b'=') {
            let (key, value) = (record[..eq].to_vec(), record[eq + 1..].to_vec());
            if key != b"hdrcharset" {
                match records.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = value,
                    None => records.push((key, value)),
                }
            }
        }
        rest = &rest[len..];
    }
    records
}

/// Where a tar file's end-of-archive blocks start (the first all-zero header block).
pub fn data_end(path: &Path) -> Result<u64> {
    let members = list(path)?;
    Ok(members
        .iter()
        .map(|m| {
            m.data_offset
                + if has_data(m.info.kind) {
                    padded(m.info.size)
                } else {
                    0
                }
        })
        .max()
        .unwrap_or(0))
}
