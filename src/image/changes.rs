//! What buildImage's `runAsRoot` changed in a root filesystem, as an overlay upper
//! directory would hold it: a snapshot of the tree before the script (kind, mode,
//! owner, link target, content digest per path), then the changed and new entries with
//! their parent directories, and a `.wh.<name>` whiteout for each deleted path.
//!
//! Run both steps under the same fakeroot session: the owners it reports are the ones
//! compared and kept.

use crate::tar::tree::path as join;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The state of one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    link: Vec<u8>,
    digest: String,
}

type Tree = BTreeMap<Vec<Vec<u8>>, State>;

/// Records the state of every path under `root`.
pub fn snapshot(root: &Path) -> Result<Tree> {
    let mut tree = Tree::new();
    walk(root, Vec::new(), &mut tree)?;
    Ok(tree)
}

fn walk(path: &Path, key: Vec<Vec<u8>>, tree: &mut Tree) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("{}: cannot stat", path.display()))?;
    let ft = meta.file_type();
    let (kind, link, digest) = if ft.is_dir() {
        ('d', Vec::new(), String::new())
    } else if ft.is_symlink() {
        (
            'l',
            std::fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
            String::new(),
        )
    } else if ft.is_file() {
        ('f', Vec::new(), file_digest(path)?)
    } else {
        ('o', Vec::new(), format!("{}", meta.rdev()))
    };
    tree.insert(
        key.clone(),
        State {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            link,
            digest,
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for n in names {
            let mut k = key.clone();
            k.push(n.as_bytes().to_vec());
            walk(&path.join(&n), k, tree)?;
        }
    }
    Ok(())
}

fn file_digest(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(sha.finalize()));
        }
        sha.update(&buf[..n]);
    }
}

/// Saves a snapshot as JSON.
pub fn save(tree: &Tree, file: &Path) -> Result<()> {
    let list: Vec<(&Vec<Vec<u8>>, &State)> = tree.iter().collect();
    std::fs::write(file, serde_json::to_vec(&list)?)
        .with_context(|| format!("{}: cannot write", file.display()))
}

/// Loads a saved snapshot.
pub fn load(file: &Path) -> Result<Tree> {
    let list: Vec<(Vec<Vec<u8>>, State)> = serde_json::from_slice(
        &std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?,
    )?;
    Ok(list.into_iter().collect())
}

/// Writes into `layer` what changed under `root` since `before`.
pub fn write_changes(root: &Path, before: &Tree, layer: &Path) -> Result<()> {
    let after = snapshot(root)?;
    std::fs::create_dir_all(layer)?;
    let mut dirs = Vec::new();
    for (key, state) in &after {
        if key.is_empty() || before.get(key) == Some(state) {
            continue;
        }
        ensure_parents(root, &after, layer, key, &mut dirs)?;
        copy_entry(root, layer, key, state, &mut dirs)?;
    }
    for key in before.keys() {
        let Some((name, parent)) = key.split_last() else {
            continue;
        };
        // A deleted directory's whiteout covers everything below it.
        if after.contains_key(key) || !after.contains_key(parent) {
            continue;
        }
        ensure_parents(root, &after, layer, key, &mut dirs)?;
        let mut whiteout = b".wh.".to_vec();
        whiteout.extend_from_slice(name);
        let path = join(layer, parent).join(std::ffi::OsStr::from_bytes(&whiteout));
        std::fs::write(&path, b"").with_context(|| format!("{}: cannot create", path.display()))?;
    }
    for (dir, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn ensure_parents(
    root: &Path,
    after: &Tree,
    layer: &Path,
    key: &[Vec<u8>],
    dirs: &mut Vec<(PathBuf, u32)>,
) -> Result<()> {
    for depth in 1..key.len() {
        let parent = &key[..depth];
        if !join(layer, parent).exists() {
            let state = after.get(parent).context("parent missing")?;
            copy_entry(root, layer, parent, state, dirs)?;
        }
    }
    Ok(())
}

fn copy_entry(
    root: &Path,
    layer: &Path,
    key: &[Vec<u8>],
    state: &State,
    dirs: &mut Vec<(PathBuf, u32)>,
) -> Result<()> {
    let from = join(root, key);
    let to = join(layer, key);
    match state.kind {
        'd' => {
            if !to.exists() {
                std::fs::create_dir(&to)
                    .with_context(|| format!("{}: cannot create", to.display()))?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
                dirs.push((to.clone(), state.mode));
            }
        }
        'l' => std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&state.link), &to)?,
        'f' => {
            std::fs::copy(&from, &to)
                .with_context(|| format!("{}: cannot copy", from.display()))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(state.mode))?;
        }
        _ => anyhow::bail!(
            "{}: runAsRoot made a special file; not supported",
            from.display()
        ),
    }
    lchown(&to, Some(state.uid), Some(state.gid))
        .with_context(|| format!("{}: cannot chown", to.display()))
}
