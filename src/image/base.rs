//! Reading a base image (`fromImage`): a docker archive, plain or compressed with gzip
//! or zstd. Only `manifest[0]` is used, as nixpkgs' streamer does; its layers are
//! copied with their original member headers and their diff_ids from the base config.

use super::compress::{self, Codec};
use super::digest::Digest;
use super::model::{Layer, Source};
use crate::tar::kind;
use crate::tar::pyheader::TarInfo;
use crate::tar::reader::{self, Member};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A loaded base image.
pub struct BaseImage {
    pub layers: Vec<Layer>,
    /// Each layer's member header, its name as the manifest gives it.
    pub headers: Vec<TarInfo>,
    /// The base's container config (`config` key of its image JSON).
    pub config: Value,
    /// Keeps a decompressed copy alive while its layers are read.
    _spill: Option<tempfile::NamedTempFile>,
}

/// Opens the archive at `path` (decompressing it to a temporary file if needed) and
/// reads its first image.
pub fn load(path: &Path) -> Result<BaseImage> {
    load_tagged(path, None)
}

/// As [`load`], choosing the image whose RepoTags hold `repo_tag` when one is given.
/// Errors name the archive (and the member, where one is at fault).
pub fn load_tagged(path: &Path, repo_tag: Option<&str>) -> Result<BaseImage> {
    read_image(path, repo_tag).with_context(|| format!("base image {}", path.display()))
}

fn read_image(path: &Path, repo_tag: Option<&str>) -> Result<BaseImage> {
    let (plain, spill) = plain_tar(path)?;
    let members = reader::list(&plain)?;
    let manifest: Value =
        read_json(&plain, &members, "manifest.json").context("not a docker archive")?;
    let entry = match repo_tag {
        None => manifest.get(0).context("manifest.json lists no image")?,
        Some(tag) => manifest
            .as_array()
            .and_then(|l| l.iter().find(|e| has_tag(e, tag)))
            .with_context(|| format!("no image tagged {tag}"))?,
    };
    let config_name = entry["Config"].as_str().context("manifest has no Config")?;
    let image_json: Value = read_json(&plain, &members, config_name).context("bad config")?;
    let names: Vec<&str> = entry["Layers"]
        .as_array()
        .context("manifest has no Layers")?
        .iter()
        .map(|v| v.as_str().unwrap_or_default())
        .collect();
    let diff_ids: Vec<&str> = image_json["rootfs"]["diff_ids"]
        .as_array()
        .context("config has no rootfs.diff_ids")?
        .iter()
        .map(|v| v.as_str().unwrap_or_default())
        .collect();
    if names.len() != diff_ids.len() {
        bail!("{} layers but {} diff_ids", names.len(), diff_ids.len());
    }
    let mut layers = Vec::new();
    let mut headers = Vec::new();
    for (name, diff_id) in names.iter().zip(diff_ids) {
        let (layer, header) = base_layer(&plain, &members, name, diff_id)?;
        layers.push(layer);
        headers.push(header);
    }
    Ok(BaseImage {
        layers,
        headers,
        config: image_json.get("config").cloned().unwrap_or(Value::Null),
        _spill: spill,
    })
}

/// The layer `name` of the archive `plain` (its member's bytes, copied as they are) and
/// the member's header under that name.
fn base_layer(
    plain: &Path,
    members: &[Member],
    name: &str,
    diff_id: &str,
) -> Result<(Layer, TarInfo)> {
    let shown = reader::shown(name.as_bytes());
    let member = resolve(members, name).with_context(|| format!("no layer {shown}"))?;
    if !reader::has_data(member.info.kind) {
        bail!("member {shown}: not a file");
    }
    let mut header = member.info.clone();
    header.name = name.as_bytes().to_vec();
    // A diff_id that is not a digest is not trusted: the layer is hashed when needed.
    let layer = Layer {
        diff_id: Digest::parse(diff_id).ok(),
        blob: None,
        what: format!("member {shown}"),
        source: Source::File {
            path: plain.to_path_buf(),
            offset: member.data_offset,
            len: member.info.size,
            codec: stored_codec(plain, member)?,
        },
    };
    Ok((layer, header))
}

/// The codec of a member's bytes, from its first ones.
fn stored_codec(file: &Path, member: &Member) -> Result<Codec> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 6];
    let n = (member.info.size as usize).min(magic.len());
    std::fs::File::open(file)
        .and_then(|f| f.read_exact_at(&mut magic[..n], member.data_offset))
        .context("cannot read")?;
    compress::sniff(&magic[..n])
}

fn has_tag(entry: &Value, tag: &str) -> bool {
    entry["RepoTags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == tag))
}

impl BaseImage {
    /// The temporary decompressed copy, if any, to keep while the layers are read.
    pub fn into_spill(self) -> Option<tempfile::NamedTempFile> {
        self._spill
    }
}

/// The member holding `name`'s bytes, following a symlink member (as skopeo writes
/// them) to its target.
pub fn resolve<'a>(members: &'a [Member], name: &str) -> Option<&'a Member> {
    let member = reader::find(members, name)?;
    if member.info.kind != kind::SYMLINK {
        return Some(member);
    }
    let target = String::from_utf8_lossy(&member.info.linkname).into_owned();
    let dir = Path::new(name).parent().unwrap_or(Path::new(""));
    let joined = normalize(&dir.join(target));
    reader::find(members, &joined).filter(|m| m.info.kind != kind::SYMLINK)
}

fn normalize(path: &Path) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(p) => parts.push(p),
            _ => {}
        }
    }
    parts
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The member `name` of the tar file at `file`, parsed as JSON.
pub fn read_json(file: &Path, members: &[Member], name: &str) -> Result<Value> {
    let shown = reader::shown(name.as_bytes());
    let m = reader::find(members, name).with_context(|| format!("no {shown}"))?;
    serde_json::from_slice(&reader::read_member(file, m)?)
        .with_context(|| format!("{shown} is not JSON"))
}

/// How an archive or a layer blob is compressed, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Plain,
    Gzip,
    Zstd,
    /// bzip2 or xz: recognised, not supported.
    Unsupported,
}

/// The compression the first bytes of a file show.
pub fn compression(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if magic.starts_with(b"BZh") || magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
        Compression::Unsupported
    } else {
        Compression::Plain
    }
}

/// The path of an uncompressed copy of the archive (itself when it is not compressed),
/// and the temporary file that holds a decompressed copy. Errors do not name `path`:
/// callers say which input it is.
pub fn plain_tar(path: &Path) -> Result<(PathBuf, Option<tempfile::NamedTempFile>)> {
    let mut file = std::fs::File::open(path).context("cannot open")?;
    let mut magic = [0u8; 6];
    let n = file.read(&mut magic).context("cannot read")?;
    let magic = &magic[..n];
    std::io::Seek::rewind(&mut file).context("cannot read")?;
    let decoder: Box<dyn Read> = match compression(magic) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
        Compression::Unsupported => bail!("bzip2/xz compression is not supported"),
        Compression::Plain => return Ok((path.to_path_buf(), None)),
    };
    let mut spill = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    std::io::copy(&mut { decoder }, spill.as_file_mut()).context("cannot decompress")?;
    Ok((spill.path().to_path_buf(), Some(spill)))
}
