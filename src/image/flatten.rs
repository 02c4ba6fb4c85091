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
use super::compress::Codec;
use super::docker_archive::read::decompress;
use super::model::Source;
use crate::tar::gnu::{self, Content, Item};
use crate::tar::kind;
use crate::tar::reader::{self, Member};
use crate::tar::tree::{self, Key, Tree};
use anyhow::{bail, Context, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An image's flattened root filesystem, read and checked, ready to be written.
pub struct Flat {
    tree: Tree,
    /// Decompressed copies the entries' contents are read from.
    _spills: Vec<tempfile::NamedTempFile>,
}

/// Reads the root filesystem of `archive` (the image tagged `repo_tag`, or the first).
pub fn load(archive: &Path, repo_tag: Option<&str>) -> Result<Flat> {
    let image = base::load_tagged(archive, repo_tag)?;
    let mut tree = Tree::default();
    let mut spills = Vec::new();
    for layer in &image.image.layers {
        let Source::File {
            path,
            offset,
            len,
            codec,
        } = &layer.source
        else {
            continue;
        };
        let in_layer = || format!("base image {}: {}", archive.display(), layer.what);
        let (file, start, len, spill) =
            layer_tar(path, *offset, *len, *codec).with_context(in_layer)?;
        spills.extend(spill);
        let members = reader::list_range(&file, start, len).with_context(in_layer)?;
        apply_layer(&mut tree, &members, &file).with_context(in_layer)?;
    }
    spills.extend(image.into_spill());
    Ok(Flat {
        tree,
        _spills: spills,
    })
}

impl Flat {
    /// Writes the root filesystem as one tar to `out`, every entry with `mtime`.
    pub fn write(mut self, mtime: i64, out: &mut dyn Write) -> Result<()> {
        let items = std::mem::take(&mut self.tree).into_items(dir_item(0o755), b"./");
        gnu::write_items(&items, mtime, out)?;
        Ok(())
    }
}

/// Writes the image's root filesystem into `dest` (owners set with chown, so under
/// fakeroot they are recorded); directories get their modes last.
pub fn unpack(archive: &Path, repo_tag: Option<&str>, dest: &Path) -> Result<()> {
    let flat = load(archive, repo_tag)?;
    write_tree(&flat.tree, dest).with_context(|| {
        format!(
            "base image {}: cannot unpack into {}",
            archive.display(),
            dest.display()
        )
    })
}

fn write_tree(tree: &Tree, dest: &Path) -> Result<()> {
    use std::os::unix::fs::{lchown, PermissionsExt};
    std::fs::create_dir_all(dest)?;
    let mut dirs = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for (key, item) in tree.iter() {
        let path = tree::path(dest, key);
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
    if let Some(root) = tree.get(&[]) {
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
    codec: Codec,
) -> Result<(PathBuf, u64, u64, Option<tempfile::NamedTempFile>)> {
    if codec == Codec::None {
        return Ok((path.to_path_buf(), offset, size, None));
    }
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let spill = decompress(codec, file.take(size))?;
    let len = spill.as_file().metadata()?.len();
    Ok((spill.path().to_path_buf(), 0, len, Some(spill)))
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

fn apply_layer(tree: &mut Tree, members: &[Member], file: &Path) -> Result<()> {
    for m in members {
        let key = key_of(&m.info.name)?;
        let Some((base, parent)) = key.split_last() else {
            continue;
        };
        if base.as_slice() == b".wh..wh..opq" {
            tree.remove_below(parent);
        } else if let Some(hidden) = base.strip_prefix(b".wh.") {
            let mut target = parent.to_vec();
            target.push(hidden.to_vec());
            tree.remove_subtree(&target);
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
        check_parents(tree, &key, &name)?;
        let item = item_of(tree, m, file, &name)?;
        if item.kind != kind::DIR || tree.get(&key).is_some_and(|old| old.kind != kind::DIR) {
            tree.remove_subtree(&key);
        }
        tree.insert_with_parents(key, item, &dir_item(0o755));
    }
    Ok(())
}

/// Refuses a member below a symlink or a non-directory of the image.
fn check_parents(tree: &Tree, key: &[Vec<u8>], name: &str) -> Result<()> {
    for depth in 1..key.len() {
        match tree.get(&key[..depth]) {
            Some(p) if p.kind == kind::SYMLINK => bail!(
                "member {name:?} goes through the symlink /{}",
                String::from_utf8_lossy(&key[..depth].join(&b'/'))
            ),
            Some(p) if p.kind != kind::DIR => bail!("member {name:?} is below a non-directory"),
            _ => {}
        }
    }
    Ok(())
}

fn item_of(tree: &Tree, m: &Member, file: &Path, name: &str) -> Result<Item> {
    let i = &m.info;
    match i.kind {
        kind::REG | 0 | b'7' | kind::DIR | kind::FIFO => {}
        kind::SYMLINK if i.linkname.is_empty() => bail!("member {name:?} is a symlink to nothing"),
        kind::SYMLINK if i.linkname.len() > PATH_MAX => {
            bail!("member {name:?} is a symlink to a target over {PATH_MAX} bytes")
        }
        kind::SYMLINK => {}
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
    Ok(Item::of_member(m, file))
}
