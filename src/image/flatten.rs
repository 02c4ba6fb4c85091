//! `exportImage`: the layers of a docker archive applied in order, whiteouts
//! (`.wh.<name>`) and opaque directories (`.wh..wh..opq`) included, written as one root
//! filesystem tar the way nixpkgs' `tar --sort=name --hard-dereference --mtime=@N -cf
//! layer.tar .` of the mounted image writes it (GNU format, `./` names).
//!
//! Nothing is extracted to disk, so nothing can escape: a member whose path goes
//! through a symlink of the image, or that contains `..`, and device nodes, are refused
//! with an error naming the member. A leading `/` counts from the image root (nixpkgs'
//! own layers name members `/nix/store/...`).

use super::base;
use super::model::Source;
use crate::tar::gnu::{self, Content, Item};
use crate::tar::kind;
use crate::tar::reader::{self, Member};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

type Key = Vec<Vec<u8>>;

/// An image's flattened root filesystem, read and checked, ready to be written.
pub struct Flat {
    tree: BTreeMap<Key, Item>,
    /// Decompressed copies the entries' contents are read from.
    _spills: Vec<tempfile::NamedTempFile>,
}

/// Reads the root filesystem of `archive` (the image tagged `repo_tag`, or the first).
pub fn load(archive: &Path, repo_tag: Option<&str>) -> Result<Flat> {
    let (tree, spills) = flatten(archive, repo_tag)?;
    Ok(Flat {
        tree,
        _spills: spills,
    })
}

impl Flat {
    /// Writes the root filesystem as one tar to `out`, every entry with `mtime`.
    pub fn write(mut self, mtime: i64, out: &mut dyn Write) -> Result<()> {
        let root = self
            .tree
            .remove(&Vec::new())
            .unwrap_or_else(|| dir_item(0o755));
        let mut items = vec![Item {
            name: b"./".to_vec(),
            ..root
        }];
        for (key, item) in std::mem::take(&mut self.tree) {
            let mut name = b"./".to_vec();
            name.extend(key.join(&b'/'));
            if item.kind == kind::DIR {
                name.push(b'/');
            }
            items.push(Item { name, ..item });
        }
        gnu::write_items(&items, mtime, out)?;
        Ok(())
    }
}

/// The image's root filesystem: every path (as components) to its entry; keep the
/// returned temporary files while the entries' contents are read.
pub fn flatten(
    archive: &Path,
    repo_tag: Option<&str>,
) -> Result<(BTreeMap<Key, Item>, Vec<tempfile::NamedTempFile>)> {
    let image = base::load_tagged(archive, repo_tag)?;
    let mut tree: BTreeMap<Key, Item> = BTreeMap::new();
    let mut spills = Vec::new();
    for layer in &image.layers {
        let Source::File {
            path, offset, len, ..
        } = &layer.source
        else {
            continue;
        };
        let in_layer = || format!("base image {}: {}", archive.display(), layer.what);
        let (file, start, len, spill) = layer_tar(path, *offset, *len).with_context(in_layer)?;
        spills.extend(spill);
        let members = reader::list_range(&file, start, len).with_context(in_layer)?;
        apply_layer(&mut tree, &members, &file).with_context(in_layer)?;
    }
    spills.extend(image.into_spill());
    Ok((tree, spills))
}

/// Writes the image's root filesystem into `dest` (owners set with chown, so under
/// fakeroot they are recorded); directories get their modes last.
pub fn unpack(archive: &Path, repo_tag: Option<&str>, dest: &Path) -> Result<()> {
    let (tree, _spills) = flatten(archive, repo_tag)?;
    write_tree(&tree, dest).with_context(|| {
        format!(
            "base image {}: cannot unpack into {}",
            archive.display(),
            dest.display()
        )
    })
}

fn write_tree(tree: &BTreeMap<Key, Item>, dest: &Path) -> Result<()> {
    use std::os::unix::fs::{lchown, PermissionsExt};
    std::fs::create_dir_all(dest)?;
    let mut dirs = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for (key, item) in tree {
        let path = key.iter().fold(dest.to_path_buf(), |p, c| {
            p.join(std::ffi::OsStr::from_bytes(c))
        });
        match item.kind {
            kind::DIR => {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("{}: cannot create", path.display()))?;
                dirs.push((path.clone(), item.mode));
            }
            kind::SYMLINK => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&item.link), &path)
                    .with_context(|| format!("{}: cannot create", path.display()))?
            }
            kind::FIFO => {
                let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
                // SAFETY: c is a valid NUL-terminated path.
                if unsafe { libc::mkfifo(c.as_ptr(), item.mode) } != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("{}: cannot create", path.display()));
                }
            }
            _ => {
                let mut f = std::fs::File::create(&path)
                    .with_context(|| format!("{}: cannot create", path.display()))?;
                if let Content::Range(src, offset) = &item.content {
                    crate::tar::io::copy_range(src, *offset, item.size, &mut f, &mut buf)?;
                }
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(item.mode))?;
            }
        }
        lchown(&path, Some(item.uid as u32), Some(item.gid as u32))
            .with_context(|| format!("{}: cannot chown", path.display()))?;
    }
    if let Some(root) = tree.get(&Vec::new()) {
        dirs.push((dest.to_path_buf(), root.mode));
    }
    for (dir, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// A layer's uncompressed tar: in place, or decompressed to a temporary file.
fn layer_tar(
    path: &Path,
    offset: u64,
    size: u64,
) -> Result<(PathBuf, u64, u64, Option<tempfile::NamedTempFile>)> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)?.read_at(&mut magic, offset)?;
    let n = n.min(size as usize);
    if base::compression(&magic[..n]) == base::Compression::Plain {
        return Ok((path.to_path_buf(), offset, size, None));
    }
    let mut blob = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    let mut buf = vec![0u8; 1 << 20];
    crate::tar::io::copy_range(path, offset, size, blob.as_file_mut(), &mut buf)?;
    let (plain, spill) = base::plain_tar(blob.path())?;
    let len = std::fs::metadata(&plain)?.len();
    Ok((plain, 0, len, spill.or(Some(blob))))
}

fn dir_item(mode: u32) -> Item {
    Item::root_owned(kind::DIR, mode)
}

/// The longest path (and symlink target) Linux takes, without its NUL.
const PATH_MAX: usize = 4095;

/// Member name to path components: `./`, `/` and empty parts dropped; `..` and names
/// no file system holds (a component over 255 bytes, a path over 4095) refused.
fn key_of(name: &[u8]) -> Result<Key> {
    let key = reader::components(name);
    let shown = || String::from_utf8_lossy(name).into_owned();
    if key.iter().any(|p| p == b"..") {
        bail!("member {:?} has a '..' component", shown());
    }
    if key.iter().any(|p| p.len() > 255) {
        bail!("member {:?} has a component over 255 bytes", shown());
    }
    if name.len() > PATH_MAX {
        bail!("member {:?} has a name over {PATH_MAX} bytes", shown());
    }
    Ok(key)
}

fn remove_subtree(tree: &mut BTreeMap<Key, Item>, key: &Key) {
    let doomed: Vec<Key> = tree
        .range(key.clone()..)
        .take_while(|(k, _)| k.starts_with(key))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        tree.remove(&k);
    }
}

fn apply_layer(tree: &mut BTreeMap<Key, Item>, members: &[Member], file: &Path) -> Result<()> {
    let lower: Vec<Key> = tree.keys().cloned().collect();
    for m in members {
        let key = key_of(&m.info.name)?;
        let Some(base) = key.last() else { continue };
        let parent = key[..key.len() - 1].to_vec();
        if base.as_slice() == b".wh..wh..opq" {
            for k in lower
                .iter()
                .filter(|k| k.len() > parent.len() && k.starts_with(&parent))
            {
                tree.remove(k);
            }
        } else if let Some(hidden) = base.strip_prefix(b".wh.") {
            let mut target = parent.clone();
            target.push(hidden.to_vec());
            remove_subtree(tree, &target);
        }
    }
    for m in members {
        let name = String::from_utf8_lossy(&m.info.name).into_owned();
        let key = key_of(&m.info.name)?;
        if key.last().is_some_and(|b| b.starts_with(b".wh.")) {
            continue;
        }
        if key.is_empty() && m.info.kind != kind::DIR {
            bail!("member {name:?} would replace the root directory");
        }
        for depth in 1..key.len() {
            match tree.get(&key[..depth]) {
                Some(p) if p.kind == kind::SYMLINK => bail!(
                    "member {name:?} goes through the symlink /{}",
                    String::from_utf8_lossy(&key[..depth].join(&b'/'))
                ),
                Some(p) if p.kind != kind::DIR => bail!("member {name:?} is below a non-directory"),
                Some(_) => {}
                None => {
                    tree.insert(key[..depth].to_vec(), dir_item(0o755));
                }
            }
        }
        let item = item_of(tree, m, file, &name)?;
        if item.kind != kind::DIR || tree.get(&key).is_some_and(|old| old.kind != kind::DIR) {
            remove_subtree(tree, &key);
        }
        tree.insert(key, item);
    }
    Ok(())
}

fn item_of(tree: &BTreeMap<Key, Item>, m: &Member, file: &Path, name: &str) -> Result<Item> {
    let i = &m.info;
    let mut item = Item {
        name: Vec::new(),
        content: Content::None,
        kind: i.kind,
        mode: i.mode & 0o7777,
        uid: i.uid,
        gid: i.gid,
        uname: i.uname.clone(),
        gname: i.gname.clone(),
        size: 0,
        link: Vec::new(),
        dev: (0, 0),
    };
    match i.kind {
        kind::REG | 0 | b'7' => {
            item.kind = kind::REG;
            item.size = i.size;
            item.content = Content::Range(file.to_path_buf(), m.data_offset);
        }
        kind::DIR | kind::FIFO => {}
        kind::SYMLINK if i.linkname.is_empty() => bail!("member {name:?} is a symlink to nothing"),
        kind::SYMLINK if i.linkname.len() > PATH_MAX => {
            bail!("member {name:?} is a symlink to a target over {PATH_MAX} bytes")
        }
        kind::SYMLINK => item.link = i.linkname.clone(),
        b'1' => {
            let target = key_of(&i.linkname)?;
            let t = tree
                .get(&target)
                .filter(|t| t.kind == kind::REG)
                .with_context(|| {
                    format!(
                        "member {name:?} links to {:?}, which is not a file of the image",
                        String::from_utf8_lossy(&i.linkname)
                    )
                })?;
            return Ok(t.clone());
        }
        kind::CHAR | kind::BLOCK => bail!("member {name:?} is a device node"),
        other => bail!("member {name:?} has unsupported type {:?}", other as char),
    }
    Ok(item)
}
