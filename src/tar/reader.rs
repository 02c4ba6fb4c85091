//! Listing the members of an uncompressed tar file without reading their contents,
//! parsed the way CPython's `tarfile` parses them (GNU long names, PAX records), so a
//! member can be written again exactly as nixpkgs' streamer re-writes base layers.

use super::block::{checksum_ok, field, parse_number};
use super::pyheader::TarInfo;
use super::{kind, padded, BLOCK};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A member: its header as CPython sees it, and where its data starts in the file.
#[derive(Clone, Debug)]
pub struct Member {
    pub info: TarInfo,
    pub data_offset: u64,
}

/// Lists every member of the tar file at `path`.
pub fn list(path: &Path) -> Result<Vec<Member>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .len();
    list_range(path, 0, len)
}

/// Lists the members of a tar stored at `start..start + len` of the file at `path`
/// (a layer inside an image archive); data offsets are offsets in that file.
pub fn list_range(path: &Path, start: u64, len: u64) -> Result<Vec<Member>> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = start + len;
    let mut members = Vec::new();
    let mut offset = start;
    let mut pending = Pending::default();
    let mut global: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    while offset + BLOCK <= len {
        let mut block = [0u8; 512];
        file.read_exact_at(&mut block, offset)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let info = parse_header(&block).with_context(|| {
            format!(
                "{}: not a tar archive (bad header at byte {offset})",
                path.display()
            )
        })?;
        let data = offset + BLOCK;
        let body = |size: u64| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; size as usize];
            file.read_exact_at(&mut buf, data)
                .with_context(|| format!("{}: truncated archive", path.display()))?;
            Ok(buf)
        };
        match info.kind {
            kind::GNU_LONGNAME => pending.name = Some(nul_terminated(&body(info.size)?)),
            kind::GNU_LONGLINK => pending.link = Some(nul_terminated(&body(info.size)?)),
            kind::PAX => pending.pax = Some(parse_pax(&body(info.size)?, &global)),
            b'g' => global = parse_pax(&body(info.size)?, &global),
            _ => {}
        }
        let meta = matches!(
            info.kind,
            kind::GNU_LONGNAME | kind::GNU_LONGLINK | kind::PAX | b'g'
        );
        let skip = if meta || has_data(info.kind) {
            padded(info.size)
        } else {
            0
        };
        if !meta {
            let info = pending.apply(info, &global);
            if data + info.size > len && has_data(info.kind) {
                bail!("{}: truncated archive", path.display());
            }
            members.push(Member {
                info,
                data_offset: data,
            });
            pending = Pending::default();
        }
        offset = data + skip;
    }
    Ok(members)
}

/// A member name's path components, without empty and `.` ones (`..` kept).
pub fn components(name: &[u8]) -> Vec<Vec<u8>> {
    name.split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// The bytes of a member of the tar file at `path`.
pub fn read_member(path: &Path, member: &Member) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; member.info.size as usize];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut buf, member.data_offset))
        .with_context(|| {
            format!(
                "{}: cannot read member {}",
                path.display(),
                String::from_utf8_lossy(&member.info.name)
            )
        })?;
    Ok(buf)
}

/// The last member named `name` (as `TarFile.getmember`), trailing slashes ignored.
pub fn find<'a>(members: &'a [Member], name: &str) -> Option<&'a Member> {
    let want = name.trim_end_matches('/').as_bytes();
    members.iter().rev().find(|m| m.info.name == want)
}

fn has_data(k: u8) -> bool {
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
