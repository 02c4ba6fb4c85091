//! Store-path layers, byte for byte as nixpkgs' `archive_paths_to` writes them:
//! `/nix/` and `/nix/store/` first, then each store path's entries in list order, the
//! configured owner and mtime on every entry, hard links written as regular files, and
//! the archive padded to CPython's 10240-byte record.
//!
//! A layer is listed first (metadata only), which gives its exact size; then written
//! to any `Sink`, which takes file contents the cheapest way it can.

use super::pyheader::TarInfo;
use super::sink::{copy_path, write_zeros, Discard, Hashing, Sink};
use super::walk::{store_path_entries, Entry, Kind};
use super::{kind, padded, BLOCK, RECORD};
use anyhow::{bail, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Ownership and time applied to every entry of a store layer.
#[derive(Clone, Debug)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
    pub uname: String,
    pub gname: String,
    pub mtime: i64,
}

/// A listed store layer: its entries and its exact archive size.
pub struct StoreLayer {
    pub paths: Vec<String>,
    entries: Vec<Entry>,
    owner: Owner,
    pub size: u64,
}

impl StoreLayer {
    /// Lists `paths` (absolute store paths, in layer order).
    pub fn list(paths: &[String], owner: &Owner) -> Result<StoreLayer> {
        let mut entries = Vec::new();
        for p in paths {
            let normal: std::path::PathBuf = Path::new(p).components().collect();
            entries.extend(store_path_entries(&normal)?);
        }
        let mut layer = StoreLayer {
            paths: paths.to_vec(),
            entries,
            owner: owner.clone(),
            size: 0,
        };
        let mut size: u64 = root_dirs(owner)
            .iter()
            .map(|t| t.encode().len() as u64)
            .sum();
        for e in &layer.entries {
            size += layer.info(e).encode().len() as u64 + padded(e.size);
        }
        layer.size = (size + 2 * BLOCK).div_ceil(RECORD) * RECORD;
        Ok(layer)
    }

    fn info(&self, e: &Entry) -> TarInfo {
        let (k, linkname) = match &e.kind {
            Kind::Dir => (kind::DIR, Vec::new()),
            Kind::File => (kind::REG, Vec::new()),
            Kind::Symlink(target) => (kind::SYMLINK, target.clone()),
        };
        owned(
            TarInfo {
                name: e.path.as_os_str().as_bytes().to_vec(),
                mode: e.mode,
                size: e.size,
                kind: k,
                linkname,
                ..TarInfo::default()
            },
            &self.owner,
        )
    }

    /// The sha256 of the layer's bytes (its diff_id), reading every file once.
    pub fn digest(&self) -> Result<crate::image::Digest> {
        let mut discard = Discard;
        let mut hashing = Hashing::new(&mut discard);
        self.write_to(&mut hashing)?;
        Ok(hashing.finish())
    }

    /// Writes the layer, exactly `self.size` bytes.
    pub fn write_to(&self, out: &mut dyn Sink) -> Result<()> {
        let mut written = 0u64;
        for t in root_dirs(&self.owner) {
            written += write(out, &t.encode())?;
        }
        for e in &self.entries {
            written += write(out, &self.info(e).encode())?;
            if e.kind == Kind::File {
                copy_path(out, &e.path, e.size)?;
                write_zeros(out, padded(e.size) - e.size)?;
                written += padded(e.size);
            }
        }
        let Some(end) = self.size.checked_sub(written) else {
            bail!("{}: changed while archived", self.paths.join(" "));
        };
        write_zeros(out, end)
    }
}

fn owned(mut t: TarInfo, owner: &Owner) -> TarInfo {
    t.uid = owner.uid;
    t.gid = owner.gid;
    t.uname = owner.uname.as_bytes().to_vec();
    t.gname = owner.gname.as_bytes().to_vec();
    t.mtime = owner.mtime;
    t
}

fn root_dirs(owner: &Owner) -> [TarInfo; 2] {
    let dir = |name: &[u8]| {
        owned(
            TarInfo {
                name: name.to_vec(),
                mode: 0o755,
                kind: kind::DIR,
                ..TarInfo::default()
            },
            owner,
        )
    };
    [dir(b"/nix"), dir(b"/nix/store")]
}

fn write(out: &mut dyn Sink, bytes: &[u8]) -> Result<u64> {
    out.write_all(bytes)?;
    Ok(bytes.len() as u64)
}
