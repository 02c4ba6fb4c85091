//! The customisation layer: a directory archived byte for byte as nixpkgs does it with
//! GNU tar under fakeroot, `tar --sort=name --numeric-owner --mtime=@N
//! --hard-dereference -cf layer.tar .` (GNU format, `./` names, `././@LongLink` records
//! for names or link targets over 100 bytes, record padding to 10240 bytes).
//!
//! Owners come from `lstat`, which fakeroot fakes when this runs under it, or from a
//! `fakeroot -s` state file, or are forced with `--owner`/`--group`.

use super::block::{field, Block, GNU_MAGIC};
use super::io::{copy_file, copy_range, write_zeros};
use super::reader::Member;
use super::{kind, padded, BLOCK, RECORD};
use crate::tarsum::{Entry as TarsumEntry, EntryHasher, TarSum};
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
    /// Write owner names (no `--numeric-owner`), as the Nix build sandbox names them.
    pub names: bool,
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
    write_items_summed(
        &collect_dir(root, opts)?,
        opts.mtime,
        !opts.names,
        out,
        None,
    )
}

/// As [`write_dir`], also computing the archive's TarSum as it is written.
pub fn write_dir_summed(
    root: &Path,
    opts: &GnuOptions,
    out: &mut dyn Write,
    sum: &mut TarSum,
) -> Result<u64> {
    write_items_summed(
        &collect_dir(root, opts)?,
        opts.mtime,
        !opts.names,
        out,
        Some(sum),
    )
}

fn collect_dir(root: &Path, opts: &GnuOptions) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    collect(root, b"./".to_vec(), opts, &mut items)?;
    if opts.names {
        for item in &mut items {
            (item.uname, item.gname) = sandbox_names(item.uid, item.gid);
        }
    }
    Ok(items)
}

impl Item {
    /// An entry owned by root (ids 0, names `root`), without content or name yet.
    pub fn root_owned(kind: u8, mode: u32) -> Item {
        Item {
            name: Vec::new(),
            content: Content::None,
            kind,
            mode,
            uid: 0,
            gid: 0,
            uname: b"root".to_vec(),
            gname: b"root".to_vec(),
            size: 0,
            link: Vec::new(),
            dev: (0, 0),
        }
    }

    /// The entry `tar -x` makes of a member of the tar file `file` (no name yet): its
    /// type (`0` and `7` as regular files), permission bits, owner and symlink target;
    /// a regular file's content read from the member.
    pub fn of_member(m: &Member, file: &Path) -> Item {
        let i = &m.info;
        let regular = matches!(i.kind, kind::REG | 0 | b'7');
        Item {
            name: Vec::new(),
            content: if regular {
                Content::Range(file.to_path_buf(), m.data_offset)
            } else {
                Content::None
            },
            kind: if regular { kind::REG } else { i.kind },
            mode: i.mode & 0o7777,
            uid: i.uid,
            gid: i.gid,
            uname: i.uname.clone(),
            gname: i.gname.clone(),
            size: if regular { i.size } else { 0 },
            link: match i.kind {
                kind::SYMLINK => i.linkname.clone(),
                _ => Vec::new(),
            },
            dev: (0, 0),
        }
    }

    /// The entry owned by root (ids 0, names `root`).
    pub fn owned_by_root(self) -> Item {
        Item {
            uid: 0,
            gid: 0,
            uname: b"root".to_vec(),
            gname: b"root".to_vec(),
            ..self
        }
    }
}

/// Writes `items` in order, every entry with `mtime`; returns the bytes written.
pub fn write_items(items: &[Item], mtime: i64, out: &mut dyn Write) -> Result<u64> {
    write_items_summed(items, mtime, false, out, None)
}

/// As [`write_items`], also feeding every entry to `tarsum` as it is written.
pub fn write_items_summed(
    items: &[Item],
    mtime: i64,
    numeric_owner: bool,
    out: &mut dyn Write,
    tarsum: Option<&mut TarSum>,
) -> Result<u64> {
    append_items(items, mtime, numeric_owner, out, tarsum, 0)
}

/// Writes `items` after `start` bytes of an archive that `out` continues (as `tar -r`
/// does after the last member), then the end blocks and the padding to a whole record
/// counted from the archive's start; returns the bytes written by this call.
pub fn append_items(
    items: &[Item],
    mtime: i64,
    numeric_owner: bool,
    out: &mut dyn Write,
    mut tarsum: Option<&mut TarSum>,
    start: u64,
) -> Result<u64> {
    let mut written = 0u64;
    let mut buf = Vec::new();
    for item in items {
        let header = encode(item, mtime, numeric_owner);
        out.write_all(&header).context("cannot write layer")?;
        written += header.len() as u64;
        let mut tee = Tee {
            out: &mut *out,
            hasher: tarsum.as_ref().map(|t| t.entry(&tarsum_entry(item, mtime))),
        };
        match &item.content {
            Content::File(path) => written += copy_file(path, item.size, &mut tee, &mut buf)?,
            Content::Range(path, offset) => {
                buf.resize(1 << 20, 0);
                copy_range(path, *offset, item.size, &mut tee, &mut buf)?;
                written += item.size;
            }
            Content::None => {}
        }
        written += write_zeros(tee.out, padded(item.size) - item.size)?;
        if let (Some(t), Some(h)) = (tarsum.as_deref_mut(), tee.hasher) {
            t.add(h);
        }
    }
    let total = (start + written + 2 * BLOCK).div_ceil(RECORD) * RECORD;
    written += write_zeros(out, total - start - written)?;
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

/// The entry GNU tar makes for `path` under the member name `name` (sockets: none).
pub fn item_for_path(path: &Path, name: Vec<u8>, opts: &GnuOptions) -> Result<Option<Item>> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("{}: cannot stat", path.display()))?;
    let mut found = item(path, name, &meta, opts)?;
    if let (true, Some(i)) = (opts.names, found.as_mut()) {
        (i.uname, i.gname) = sandbox_names(i.uid, i.gid);
    }
    Ok(found)
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

/// Passes an entry's body on and, for a TarSum, hashes it.
struct Tee<'a> {
    out: &'a mut dyn Write,
    hasher: Option<EntryHasher>,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn tarsum_entry(item: &Item, mtime: i64) -> TarsumEntry {
    TarsumEntry {
        name: item.name.clone(),
        mode: item.mode as i64,
        uid: item.uid as i64,
        gid: item.gid as i64,
        size: item.size as i64,
        mtime,
        typeflag: item.kind,
        linkname: item.link.clone(),
        devmajor: if matches!(item.kind, kind::CHAR | kind::BLOCK) {
            item.dev.0 as i64
        } else {
            0
        },
        devminor: if matches!(item.kind, kind::CHAR | kind::BLOCK) {
            item.dev.1 as i64
        } else {
            0
        },
        xattrs: Vec::new(),
    }
}

/// The user and group names GNU tar writes for `--owner=N --group=N` inside Nix's build
/// sandbox, whose /etc/passwd and /etc/group hold only root, nixbld and nobody.
pub fn sandbox_names(uid: u64, gid: u64) -> (Vec<u8>, Vec<u8>) {
    let user: &[u8] = match uid {
        0 => b"root",
        1000 => b"nixbld",
        65534 => b"nobody",
        _ => b"",
    };
    let group: &[u8] = match gid {
        0 => b"root",
        100 => b"nixbld",
        65534 => b"nogroup",
        _ => b"",
    };
    (user.to_vec(), group.to_vec())
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

fn encode(item: &Item, mtime: i64, numeric_owner: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if item.link.len() > 100 {
        out.extend(long_record(kind::GNU_LONGLINK, &item.link, numeric_owner));
    }
    if item.name.len() > 100 {
        out.extend(long_record(kind::GNU_LONGNAME, &item.name, numeric_owner));
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
/// GNU tar names root as its owner unless `--numeric-owner` is given.
fn long_record(k: u8, text: &[u8], numeric_owner: bool) -> Vec<u8> {
    let mut b = Block::default();
    b.text(field::NAME, b"././@LongLink");
    b.octal(field::MODE, 0o644);
    b.octal(field::UID, 0);
    b.octal(field::GID, 0);
    b.octal(field::SIZE, text.len() as u64 + 1);
    b.octal(field::MTIME, 0);
    b.kind(k);
    b.text(field::MAGIC, GNU_MAGIC);
    if !numeric_owner {
        b.text(field::UNAME, b"root");
        b.text(field::GNAME, b"root");
    }
    let mut out = b.finish().to_vec();
    out.extend_from_slice(text);
    out.resize(512 + padded(text.len() as u64 + 1) as usize, 0);
    out
}
