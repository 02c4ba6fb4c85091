//! `mergeImages`: several docker archives (plain, gzip or zstd) merged into one that
//! holds every image, as nixpkgs' script does it: each input is unpacked, their files
//! copied together (the first copy of a name wins, inputs taken in the order of their
//! file names, as the shell glob `inputs/*/*` takes them), `manifest.json` and
//! `repositories` merged with `jq -s add` (in argument order), and the tree archived
//! with GNU tar (`--sort=name --owner=0 --group=0 --mtime=@N`, names without `./`),
//! compressed as the last input was.

use super::compress::{self, Codec};
use super::docker_archive::{Archive, Compressor};
use crate::tar::gnu::{self, Content, Item};
use crate::tar::kind;
use crate::tar::reader;
use crate::tar::tree::{Key, Tree};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The compression of an input archive, as `file --mime-type` tells it.
pub fn compression_of(path: &Path) -> Result<Compressor> {
    let mut head = [0u8; 512];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let n = f.read(&mut head)?;
    let head = &head[..n];
    match compress::sniff(head) {
        Ok(Codec::Gzip) => Ok(Compressor::Gz),
        Ok(Codec::Zstd) => Ok(Compressor::Zstd),
        Ok(Codec::None) if n >= 262 && &head[257..262] == b"ustar" => Ok(Compressor::None),
        _ => bail!("{}: not a tar, gzip or zstd file", path.display()),
    }
}

/// Merges `inputs` into `out`; returns the compression to apply (the last input's).
pub fn merge(
    inputs: &[PathBuf],
    mtime: i64,
    umask: u32,
    out: &mut dyn Write,
) -> Result<Compressor> {
    let mut compressor = Compressor::Gz;
    let mut manifests = Vec::new();
    let mut repositories = Vec::new();
    let mut opened = Vec::new();
    for input in inputs {
        let in_input = || format!("{}", input.display());
        compressor = compression_of(input)?;
        let archive = Archive::open(input).with_context(in_input)?;
        for (name, list) in [
            ("manifest.json", &mut manifests),
            ("repositories", &mut repositories),
        ] {
            if archive.find(name).is_some() {
                list.push(archive.json::<Value>(name).with_context(in_input)?);
            }
        }
        let base = input
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        opened.push((base, input, archive));
    }
    opened.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tree = Tree::default();
    for (_, input, archive) in &opened {
        let files = extracted(archive, umask).with_context(|| format!("{}", input.display()))?;
        tree.add_missing(files);
    }
    let spill = tempfile::NamedTempFile::new()?;
    let merged = [
        ("manifest.json", jq_add(&manifests)),
        ("repositories", jq_add(&repositories)),
    ];
    add_files(&mut tree, &merged, &spill, 0o644 & !umask)?;
    let items = tree.into_items(dir_item(0o755 & !umask), b"");
    gnu::write_items(&items, mtime, out)?;
    Ok(compressor)
}

/// Adds top-level files of these names and texts, the texts written into `spill`.
fn add_files(
    tree: &mut Tree,
    files: &[(&str, String)],
    spill: &tempfile::NamedTempFile,
    mode: u32,
) -> Result<()> {
    let mut offset = 0;
    let mut file = spill.as_file();
    for (name, text) in files {
        file.write_all(text.as_bytes())?;
        let item = Item {
            size: text.len() as u64,
            content: Content::Range(spill.path().to_path_buf(), offset),
            ..file_item(mode)
        };
        offset += text.len() as u64;
        tree.insert(vec![name.as_bytes().to_vec()], item);
    }
    Ok(())
}

/// `jq -s add` of the documents: arrays concatenated, objects merged (later keys win),
/// printed as jq prints (2-space indent, trailing newline); `null` when there are none.
fn jq_add(docs: &[Value]) -> String {
    let mut acc = Value::Null;
    for d in docs {
        acc = match (acc, d) {
            (Value::Null, d) => d.clone(),
            (Value::Array(mut a), Value::Array(b)) => {
                a.extend(b.iter().cloned());
                Value::Array(a)
            }
            (Value::Object(mut a), Value::Object(b)) => {
                for (k, v) in b {
                    a.insert(k.clone(), v.clone());
                }
                Value::Object(a)
            }
            (_, d) => d.clone(),
        };
    }
    super::jsonfmt::jq(&acc)
}

fn dir_item(mode: u32) -> Item {
    Item::root_owned(kind::DIR, mode)
}

fn file_item(mode: u32) -> Item {
    Item::root_owned(kind::REG, mode)
}

/// An input's files as `tar -x` leaves them, to be copied with `cp -R --update=none`:
/// modes less the umask, owners root, `manifest.json` and `repositories` left out.
fn extracted(archive: &Archive, umask: u32) -> Result<Tree> {
    let file = archive.file();
    let mut tree = Tree::default();
    for m in archive.members() {
        let name = reader::shown(&m.info.name);
        let key: Key = reader::components(&m.info.name);
        if key.is_empty() || key.iter().any(|p| p == b"..") {
            continue;
        }
        if matches!(key[0].as_slice(), b"manifest.json" | b"repositories") && key.len() == 1 {
            continue;
        }
        let item = match m.info.kind {
            kind::REG | 0 | kind::DIR => Item {
                mode: (m.info.mode & 0o7777) & !umask,
                ..Item::of_member(m, file).owned_by_root()
            },
            kind::SYMLINK => Item {
                mode: 0o777,
                ..Item::of_member(m, file).owned_by_root()
            },
            b'1' => {
                let target: Key = reader::components(&m.info.linkname);
                tree.get(&target)
                    .cloned()
                    .with_context(|| format!("member {name} links to a missing file"))?
            }
            other => bail!("member {name} has unsupported type {:?}", other as char),
        };
        tree.insert_with_parents(key, item, &dir_item(0o755 & !umask));
    }
    Ok(tree)
}
