//! Listing a store path's files in the order nixpkgs' streamer archives them:
//! `[path] + path.rglob("*")` sorted as `pathlib.Path` objects (component by component),
//! never descending into symlinked directories, and only the link itself for a store
//! path that is a symlink.

use anyhow::{bail, Context, Result};
use std::cmp::Ordering;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink(Vec<u8>),
}

/// One file found under a store path, with the metadata the archive needs.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: Kind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Content length for files, 0 otherwise.
    pub size: u64,
}

/// Compares two file names as Python compares the `str`s it decodes them to
/// (UTF-8 with surrogateescape): code point order.
pub fn compare_names(a: &[u8], b: &[u8]) -> Ordering {
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(_), Ok(_)) => a.cmp(b),
        _ => code_points(a).cmp(code_points(b)),
    }
}

fn code_points(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes.utf8_chunks().flat_map(|chunk| {
        let valid = chunk.valid().chars().map(|c| c as u32);
        let escaped = chunk.invalid().iter().map(|&b| 0xDC00 + b as u32);
        valid.chain(escaped)
    })
}

/// Entries of one store path, in archive order.
pub fn store_path_entries(path: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("{}: cannot stat store path", path.display()))?;
    let is_dir = meta.is_dir();
    out.push(entry(path.to_path_buf(), &meta)?);
    if is_dir {
        walk_dir(path, &mut out)?;
    }
    Ok(out)
}

fn walk_dir(dir: &Path, out: &mut Vec<Entry>) -> Result<()> {
    let read = || format!("{}: cannot read directory", dir.display());
    let mut children: Vec<(OsString, std::fs::Metadata)> = Vec::new();
    for e in std::fs::read_dir(dir).with_context(read)? {
        let e = e.with_context(read)?;
        // Stat relative to the open directory (no lookup of the whole path again);
        // like lstat, this does not follow symlinks.
        let meta = e
            .metadata()
            .with_context(|| format!("{}: cannot stat", e.path().display()))?;
        children.push((e.file_name(), meta));
    }
    children.sort_by(|a, b| compare_names(a.0.as_bytes(), b.0.as_bytes()));
    for (name, meta) in children {
        let path = dir.join(&name);
        let is_dir = meta.is_dir();
        out.push(entry(path.clone(), &meta)?);
        if is_dir {
            walk_dir(&path, out)?;
        }
    }
    Ok(())
}

fn entry(path: PathBuf, meta: &std::fs::Metadata) -> Result<Entry> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        let target = std::fs::read_link(&path)
            .with_context(|| format!("{}: cannot read link", path.display()))?;
        Kind::Symlink(target.into_os_string().into_vec())
    } else {
        bail!("{}: not a file, directory or symlink", path.display());
    };
    let size = if kind == Kind::File { meta.len() } else { 0 };
    Ok(Entry {
        path,
        kind,
        mode: meta.mode() & 0o7777,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_sort_before_longer_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        for d in ["a/b", "a.d"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("a/b/c"), "x").unwrap();
        std::fs::write(root.join("a-c"), "x").unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let names: Vec<String> = store_path_entries(&root)
            .unwrap()
            .iter()
            .map(|e| e.path.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["", "a", "a/b", "a/b/c", "a-c", "a.d", "link"]);
    }

    #[test]
    fn surrogate_escapes_sort_after_bmp_letters() {
        assert_eq!(compare_names("é".as_bytes(), b"\xff"), Ordering::Less);
        assert_eq!(compare_names(b"\xc3", "é".as_bytes()), Ordering::Greater);
    }
}
