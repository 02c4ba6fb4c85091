//! The customisation layer: a directory archived byte for byte as nixpkgs does it with
//! GNU tar under fakeroot, `tar --sort=name --numeric-owner --mtime=@N
//! --hard-dereference -cf layer.tar .` (GNU format, `./` names, `././@LongLink` records
//! for names or link targets over 100 bytes, record padding to 10240 bytes).
//!
//! Owners come from `lstat`, which fakeroot fakes when this runs under it, or from a
//! `fakeroot -s` state file, or are forced with `--owner`/`--group`.

use super::block::{field, Block, GNU_MAGIC};
use super::io::{copy_file, copy_range, write_zeros};
use super::{kind, padded, BLOCK, RECORD};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What fakeroot recorded for one inode (`fakeroot -s FILE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faked {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub rdev: u64,
}

/// Options of the GNU tar run being reproduced.
#[derive(Clone, Debug, Default)]
pub struct GnuOptions {
    /// `--mtime=@N`.
    pub mtime: i64,
    /// `--owner=N`.
    pub owner: Option<u64>,
    /// `--group=N`.
    pub group: Option<u64>,
    /// Ownership recorded by fakeroot, by (device, inode); `None` when not faking.
    /// Under fakeroot, a file it has no record of is owned by root.
    pub faked: Option<HashMap<(u64, u64), Faked>>,
    /// `--exclude=NAME` patterns, matched against whole member names (e.g. `./proc`).
    pub exclude: Vec<Vec<u8>>,
}

/// Reads a `fakeroot -s` state file.
pub fn read_fakeroot_state(path: &Path) -> Result<HashMap<(u64, u64), Faked>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read fakeroot state", path.display()))?;
    let mut map = HashMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || format!("{}:{}: not a fakeroot state line", path.display(), n + 1);
        let fields: HashMap<&str, &str> = line
            .split(',')
            .map(|kv| kv.split_once('=').with_context(bad))
            .collect::<Result<_>>()?;
        let get = |k: &str, radix: u32| -> Result<u64> {
            let v = fields.get(k).with_context(bad)?;
            u64::from_str_radix(v, radix).with_context(bad)
        };
        map.insert(
            (get("dev", 16)?, get("ino", 10)?),
            Faked {
                mode: get("mode", 8)? as u32,
                uid: get("uid", 10)?,
                gid: get("gid", 10)?,
                rdev: get("rdev", 10)?,
            },
        );
    }
    Ok(map)
}

/// Where an entry's content comes from.
#[derive(Clone, Debug)]
pub enum Content {
    None,
    File(PathBuf),
    /// `size` bytes of a file from an offset (a member of another archive).
    Range(PathBuf, u64),
}

/// One entry of a GNU-format archive.
#[derive(Clone, Debug)]
pub struct Item {
    /// The member name (`./...`, directories ending in `/`).
    pub name: Vec<u8>,
    pub content: Content,
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub size: u64,
    pub link: Vec<u8>,
    pub dev: (u64, u64),
}

/// Archives the directory `root` into `out`; returns the number of bytes written.
pub fn write_dir(root: &Path, opts: &GnuOptions, out: &mut dyn Write) -> Result<u64> {
    let mut items = Vec::new();
    collect(root, b"./".to_vec(), opts, &mut items)?;
    write_items(&items, opts.mtime, out)
}

/// Writes `items` in order, every entry with `mtime`; returns the bytes written.
pub fn write_items(items: &[Item], mtime: i64, out: &mut dyn Write) -> Result<u64> {
    let mut written = 0u64;
    let mut buf = Vec::new();
    for item in items {
        let header = encode(item, mtime);
        out.write_all(&header).context("cannot write layer")?;
        written += header.len() as u64;
        match &item.content {
            Content::File(path) => written += copy_file(path, item.size, out, &mut buf)?,
            Content::Range(path, offset) => {
                buf.resize(1 << 20, 0);
                copy_range(path, *offset, item.size, out, &mut buf)?;
                written += item.size + write_zeros(out, padded(item.size) - item.size)?;
            }
            Content::None => {}
        }
    }
    let total = (written + 2 * BLOCK).div_ceil(RECORD) * RECORD;
    written += write_zeros(out, total - written)?;
    Ok(written)
}

fn collect(path: &Path, name: Vec<u8>, opts: &GnuOptions, items: &mut Vec<Item>) -> Result<()> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(&name);
    if opts.exclude.iter().any(|e| e.as_slice() == trimmed) {
        return Ok(());
    }
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("{}: cannot stat", path.display()))?;
    let Some(item) = item(path, name, &meta, opts)? else {
        return Ok(());
    };
    let is_dir = item.kind == kind::DIR;
    let prefix = item.name.clone();
    items.push(item);
    if is_dir {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot read directory", path.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("{}: cannot read directory", path.display()))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for child in names {
            let mut child_name = prefix.clone();
            child_name.extend_from_slice(child.as_bytes());
            collect(&path.join(&child), child_name, opts, items)?;
        }
    }
    Ok(())
}

fn item(
    path: &Path,
    mut name: Vec<u8>,
    meta: &std::fs::Metadata,
    opts: &GnuOptions,
) -> Result<Option<Item>> {
    let root = Faked {
        mode: meta.mode(),
        uid: 0,
        gid: 0,
        rdev: meta.rdev(),
    };
    let faked = opts
        .faked
        .as_ref()
        .map(|f| f.get(&(meta.dev(), meta.ino())).copied().unwrap_or(root));
    let st_mode = faked.map_or(meta.mode(), |f| f.mode);
    let rdev = faked.map_or(meta.rdev(), |f| f.rdev);
    let ft = meta.file_type();
    let fmt = st_mode & 0o170000;
    let (k, link) = match fmt {
        0o040000 => (kind::DIR, Vec::new()),
        0o100000 => (kind::REG, Vec::new()),
        0o120000 => {
            let target = std::fs::read_link(path)
                .with_context(|| format!("{}: cannot read link", path.display()))?;
            (kind::SYMLINK, target.as_os_str().as_bytes().to_vec())
        }
        0o020000 => (kind::CHAR, Vec::new()),
        0o060000 => (kind::BLOCK, Vec::new()),
        0o010000 => (kind::FIFO, Vec::new()),
        _ if ft.is_socket() => return Ok(None),
        _ => bail!("{}: unsupported file type", path.display()),
    };
    if k == kind::DIR && !name.ends_with(b"/") {
        name.push(b'/');
    }
    let size = if k == kind::REG { meta.len() } else { 0 };
    Ok(Some(Item {
        name,
        content: if k == kind::REG {
            Content::File(path.to_path_buf())
        } else {
            Content::None
        },
        kind: k,
        mode: st_mode & 0o7777,
        uid: opts
            .owner
            .unwrap_or(faked.map_or(meta.uid() as u64, |f| f.uid)),
        gid: opts
            .group
            .unwrap_or(faked.map_or(meta.gid() as u64, |f| f.gid)),
        uname: Vec::new(),
        gname: Vec::new(),
        size,
        link,
        dev: (dev_major(rdev), dev_minor(rdev)),
    }))
}

fn dev_major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}

fn dev_minor(rdev: u64) -> u64 {
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}

fn number(b: &mut Block, f: (usize, usize), value: u64) {
    if !b.octal(f, value) {
        b.base256(f, value);
    }
}

fn encode(item: &Item, mtime: i64) -> Vec<u8> {
    let mut out = Vec::new();
    if item.link.len() > 100 {
        out.extend(long_record(kind::GNU_LONGLINK, &item.link));
    }
    if item.name.len() > 100 {
        out.extend(long_record(kind::GNU_LONGNAME, &item.name));
    }
    let mut b = Block::default();
    b.text(field::NAME, &item.name);
    number(&mut b, field::MODE, item.mode as u64);
    number(&mut b, field::UID, item.uid);
    number(&mut b, field::GID, item.gid);
    number(&mut b, field::SIZE, item.size);
    number(&mut b, field::MTIME, mtime.max(0) as u64);
    b.kind(item.kind);
    b.text(field::LINKNAME, &item.link);
    b.text(field::MAGIC, GNU_MAGIC);
    b.text(field::UNAME, &item.uname);
    b.text(field::GNAME, &item.gname);
    if item.kind == kind::CHAR || item.kind == kind::BLOCK {
        number(&mut b, field::DEVMAJOR, item.dev.0);
        number(&mut b, field::DEVMINOR, item.dev.1);
    }
    out.extend_from_slice(&b.finish());
    out
}

/// A `././@LongLink` header and its NUL-terminated payload.
fn long_record(k: u8, text: &[u8]) -> Vec<u8> {
    let mut b = Block::default();
    b.text(field::NAME, b"././@LongLink");
    b.octal(field::MODE, 0o644);
    b.octal(field::UID, 0);
    b.octal(field::GID, 0);
    b.octal(field::SIZE, text.len() as u64 + 1);
    b.octal(field::MTIME, 0);
    b.kind(k);
    b.text(field::MAGIC, GNU_MAGIC);
    let mut out = b.finish().to_vec();
    out.extend_from_slice(text);
    out.resize(512 + padded(text.len() as u64 + 1) as usize, 0);
    out
}
