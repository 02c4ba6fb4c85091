//! `mergeImages`: several docker archives (plain, gzip or zstd) merged into one that
//! holds every image, as nixpkgs' script does it: each input is unpacked, their files
//! copied together (the first copy of a name wins, inputs taken in the order of their
//! file names, as the shell glob `inputs/*/*` takes them), `manifest.json` and
//! `repositories` merged with `jq -s add` (in argument order), and the tree archived
//! with GNU tar (`--sort=name --owner=0 --group=0 --mtime=@N`, names without `./`),
//! compressed as the last input was.

use super::base::{plain_tar, read_json, Compression};
use super::docker_archive::Compressor;
use crate::tar::gnu::{self, Content, Item};
use crate::tar::kind;
use crate::tar::reader::{self, Member};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

type Key = Vec<Vec<u8>>;

/// The compression of an input archive, as `file --mime-type` tells it.
pub fn compression_of(path: &Path) -> Result<Compressor> {
    let mut head = [0u8; 512];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let n = f.read(&mut head)?;
    let head = &head[..n];
    match super::base::compression(head) {
        Compression::Gzip => Ok(Compressor::Gz),
        Compression::Zstd => Ok(Compressor::Zstd),
        Compression::Plain if n >= 262 && &head[257..262] == b"ustar" => Ok(Compressor::None),
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
    let mut unpacked = Vec::new();
    for input in inputs {
        let in_input = || format!("{}", input.display());
        compressor = compression_of(input)?;
        let (plain, spill) = plain_tar(input).with_context(in_input)?;
        let members = reader::list(&plain).with_context(in_input)?;
        for (name, list) in [
            ("manifest.json", &mut manifests),
            ("repositories", &mut repositories),
        ] {
            if reader::find(&members, name).is_some() {
                list.push(read_json(&plain, &members, name).with_context(in_input)?);
            }
        }
        let base = input
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        unpacked.push((base, input, plain, members, spill));
    }
    unpacked.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tree: BTreeMap<Key, Item> = BTreeMap::new();
    for (_, input, plain, members, _) in &unpacked {
        add_members(&mut tree, members, plain, umask)
            .with_context(|| format!("{}", input.display()))?;
    }
    let mut extra = vec![
        (b"manifest.json".to_vec(), jq_add(&manifests)),
        (b"repositories".to_vec(), jq_add(&repositories)),
    ];
    let spill = tempfile::NamedTempFile::new()?;
    let mut offset = 0;
    let mut file = spill.as_file();
    for (name, text) in &mut extra {
        file.write_all(text.as_bytes())?;
        let item = Item {
            size: text.len() as u64,
            content: Content::Range(spill.path().to_path_buf(), offset),
            ..file_item(0o644 & !umask)
        };
        offset += text.len() as u64;
        tree.insert(vec![std::mem::take(name)], item);
    }
    let mut items = vec![Item {
        name: b"./".to_vec(),
        ..dir_item(0o755 & !umask)
    }];
    for (key, item) in tree {
        let mut name = key.join(&b'/');
        if item.kind == kind::DIR {
            name.push(b'/');
        }
        items.push(Item { name, ..item });
    }
    gnu::write_items(&items, mtime, out)?;
    Ok(compressor)
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

fn owned(kind: u8, mode: u32) -> Item {
    Item::root_owned(kind, mode)
}

fn dir_item(mode: u32) -> Item {
    owned(kind::DIR, mode)
}

fn file_item(mode: u32) -> Item {
    owned(kind::REG, mode)
}

/// Adds an input's files as `tar -x` then `cp -R --update=none` leave them: modes less
/// the umask, owners root, names already present kept.
fn add_members(
    tree: &mut BTreeMap<Key, Item>,
    members: &[Member],
    file: &Path,
    umask: u32,
) -> Result<()> {
    let mut this: BTreeMap<Key, Item> = BTreeMap::new();
    for m in members {
        let name = reader::shown(&m.info.name);
        let key: Key = reader::components(&m.info.name);
        if key.is_empty() || key.iter().any(|p| p == b"..") {
            continue;
        }
        if matches!(key[0].as_slice(), b"manifest.json" | b"repositories") && key.len() == 1 {
            continue;
        }
        for depth in 1..key.len() {
            this.entry(key[..depth].to_vec())
                .or_insert_with(|| dir_item(0o755 & !umask));
        }
        let mode = (m.info.mode & 0o7777) & !umask;
        let item = match m.info.kind {
            kind::REG | 0 => Item {
                size: m.info.size,
                content: Content::Range(file.to_path_buf(), m.data_offset),
                ..file_item(mode)
            },
            kind::DIR => dir_item(mode),
            kind::SYMLINK => Item {
                link: m.info.linkname.clone(),
                ..owned(kind::SYMLINK, 0o777)
            },
            b'1' => {
                let target: Key = reader::components(&m.info.linkname);
                this.get(&target)
                    .cloned()
                    .with_context(|| format!("member {name} links to a missing file"))?
            }
            other => bail!("member {name} has unsupported type {:?}", other as char),
        };
        this.insert(key, item);
    }
    for (k, v) in this {
        tree.entry(k).or_insert(v);
    }
    Ok(())
}
