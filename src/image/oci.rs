//! OCI image layouts (image-spec `image-layout.md`): reading an image out of a layout
//! directory or an oci-archive (the same files in a tar), and writing one into a layout
//! directory: blobs under `blobs/sha256/`, each written to a temporary name and renamed
//! to its digest, then `index.json` last, so an interrupted write leaves no index that
//! names a missing blob. The manifest and index JSON are serde's compact output of the
//! structs below, fields in the order given: their digests never change for the same
//! image.

use super::compress::Compression;
use super::descriptor::{Descriptor, Platform};
use super::digest::Digest;
use super::layer_io::{produce_blob, Produced};
use super::media::{Format, MediaType};
use super::model::{ArchiveLayout, Blob, Config, Image, Layer, Source};
use super::output::{keep_as, temp_file_in, write_bytes};
use crate::tar::reader;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The annotation that names an image in a layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The most a manifest, an index or a config may take (they are read into memory).
pub const MAX_JSON: u64 = 16 << 20;

#[derive(Serialize, Deserialize)]
struct LayoutHeader {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (OCI, or Docker schema 2).
#[derive(Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// Where a layout's blobs are: files of a directory, or members of an uncompressed tar.
pub enum Blobs {
    Dir(PathBuf),
    Archive {
        path: PathBuf,
        /// Member name (without `./`) to data offset and size.
        members: HashMap<String, (u64, u64)>,
    },
}

impl Blobs {
    /// The blobs of an oci-archive (an uncompressed tar of a layout).
    pub fn of_archive(path: &Path) -> Result<Blobs> {
        let mut members = HashMap::new();
        for m in reader::list(path)? {
            let name = String::from_utf8_lossy(&m.info.name);
            let name = name.trim_start_matches("./").to_string();
            members.insert(name, (m.data_offset, m.info.size));
        }
        Ok(Blobs::Archive {
            path: path.to_path_buf(),
            members,
        })
    }

    /// A file of the layout (`index.json`, `blobs/sha256/…`): a path, an offset and a size.
    fn locate(&self, name: &str) -> Result<(PathBuf, u64, u64)> {
        match self {
            Blobs::Dir(dir) => {
                let path = dir.join(name);
                let len = std::fs::metadata(&path)
                    .with_context(|| format!("{}: cannot open", path.display()))?
                    .len();
                Ok((path, 0, len))
            }
            Blobs::Archive { path, members } => {
                let &(offset, len) = members.get(name).with_context(|| format!("no {name}"))?;
                Ok((path.clone(), offset, len))
            }
        }
    }

    /// A blob's place, checked to have the size its descriptor says.
    fn blob(&self, d: &Descriptor) -> Result<(PathBuf, u64, u64)> {
        let name = format!("blobs/{}/{}", d.digest.algorithm().name(), d.digest.hex());
        let (path, offset, len) = self.locate(&name)?;
        if len != d.size {
            bail!("{name}: {len} bytes, but its descriptor says {}", d.size);
        }
        Ok((path, offset, len))
    }

    /// A small file of the layout, read whole.
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let (path, offset, len) = self.locate(name)?;
        read_range(&path, offset, len).with_context(|| name.to_string())
    }

    /// A blob read whole, checked against its digest.
    fn read_blob(&self, d: &Descriptor) -> Result<Vec<u8>> {
        let (path, offset, len) = self.blob(d)?;
        let bytes = read_range(&path, offset, len).with_context(|| d.digest.to_string())?;
        if Digest::of(&bytes) != d.digest {
            bail!("blob {} does not match its digest", d.digest);
        }
        Ok(bytes)
    }
}

fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    if len > MAX_JSON {
        bail!("{len} bytes is too large for a manifest, an index or a config");
    }
    let mut buf = vec![0u8; len as usize];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut buf, offset))
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(buf)
}

/// Reads the image tagged `tag` (or the only one) out of a layout.
pub fn read_image(blobs: &Blobs, tag: Option<&str>) -> Result<Image> {
    let header: LayoutHeader = serde_json::from_slice(&blobs.read("oci-layout")?)
        .context("oci-layout: not a layout header")?;
    if header.version != "1.0.0" {
        bail!(
            "oci-layout: unsupported imageLayoutVersion {:?}",
            header.version
        );
    }
    let index: Index =
        serde_json::from_slice(&blobs.read("index.json")?).context("index.json: not an index")?;
    let entry = pick(&index.manifests, tag)?;
    let manifest: Manifest = serde_json::from_slice(&blobs.read_blob(entry)?)
        .with_context(|| format!("manifest {}: not an image manifest", entry.digest))?;
    let config = blobs.read_blob(&manifest.config)?;
    let parsed: serde_json::Value = serde_json::from_slice(&config)
        .with_context(|| format!("config {}: not JSON", manifest.config.digest))?;
    let diff_ids = diff_ids(&parsed)?;
    if diff_ids.len() != manifest.layers.len() {
        bail!(
            "manifest {} has {} layers but its config {} diff_ids",
            entry.digest,
            manifest.layers.len(),
            diff_ids.len()
        );
    }
    let layers = manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(d, diff_id)| blob_layer(blobs, d, diff_id))
        .collect::<Result<_>>()?;
    Ok(Image {
        config: Config::Bytes(config),
        layers,
        platform: Platform::of_config(&parsed),
        repo_tags: tag.map(|t| vec![t.to_string()]).unwrap_or_default(),
        archive: ArchiveLayout::default(),
    })
}

/// The index entry named `tag`, or the only entry when no tag is given.
fn pick<'a>(manifests: &'a [Descriptor], tag: Option<&str>) -> Result<&'a Descriptor> {
    let found = match tag {
        Some(t) => manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(t))
            .with_context(|| format!("index.json names no image {t:?}"))?,
        None if manifests.len() == 1 => &manifests[0],
        None => bail!(
            "index.json lists {} images: name one with :TAG",
            manifests.len()
        ),
    };
    if !matches!(found.media_type, MediaType::Manifest(_)) {
        bail!(
            "{} is a {}, not an image manifest",
            found.digest,
            found.media_type.as_str()
        );
    }
    Ok(found)
}

/// The config's `rootfs.diff_ids`.
pub fn diff_ids(config: &serde_json::Value) -> Result<Vec<Digest>> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .context("config has no rootfs.diff_ids")?
        .iter()
        .map(|v| Digest::parse(v.as_str().unwrap_or_default()))
        .collect()
}

fn blob_layer(blobs: &Blobs, d: &Descriptor, diff_id: Digest) -> Result<Layer> {
    let MediaType::Layer(_, codec) = d.media_type else {
        bail!(
            "layer {}: unsupported media type {}",
            d.digest,
            d.media_type.as_str()
        );
    };
    let (path, offset, len) = blobs.blob(d)?;
    Ok(Layer {
        diff_id: Some(diff_id),
        blob: Some(Blob {
            descriptor: d.clone(),
            compression: None,
        }),
        what: format!("layer {}", d.digest),
        source: Source::File {
            path,
            offset,
            len,
            codec,
        },
    })
}

/// How to write a layout.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    pub compression: Compression,
    pub format: Format,
}

/// Writes `image` into the layout directory `dir` (made if missing; other images in it
/// are kept), named `tag` in the index if given; returns its manifest's descriptor.
pub fn write_image(
    image: &Image,
    dir: &Path,
    tag: Option<&str>,
    opts: WriteOptions,
) -> Result<Descriptor> {
    let entry = write_image_blobs(image, dir, opts)?;
    write_index(dir, named(entry.clone(), tag), tag)?;
    Ok(entry)
}

/// Writes the images' blobs, then an image index of them (OCI, or a Docker manifest
/// list) named `tag` in the layout's index; returns the index's descriptor.
pub fn write_images(
    images: &[Image],
    dir: &Path,
    tag: Option<&str>,
    opts: WriteOptions,
) -> Result<Descriptor> {
    let manifests = images
        .iter()
        .map(|i| write_image_blobs(i, dir, opts))
        .collect::<Result<Vec<_>>>()?;
    let index = Index {
        schema_version: 2,
        media_type: Some(MediaType::Index(opts.format)),
        manifests,
    };
    let blob_dir = dir.join("blobs").join("sha256");
    let entry = write_bytes_blob(
        &blob_dir,
        MediaType::Index(opts.format),
        &serde_json::to_vec(&index)?,
    )?;
    write_index(dir, named(entry.clone(), tag), tag)?;
    Ok(entry)
}

fn named(mut entry: Descriptor, tag: Option<&str>) -> Descriptor {
    if let Some(t) = tag {
        entry
            .annotations
            .insert(REF_NAME.to_string(), t.to_string());
    }
    entry
}

/// Writes an image's layer blobs, config and manifest into the layout (not its index);
/// returns the manifest's descriptor, with the image's platform.
fn write_image_blobs(image: &Image, dir: &Path, opts: WriteOptions) -> Result<Descriptor> {
    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir)
        .with_context(|| format!("{}: cannot create", blob_dir.display()))?;
    write_if_missing(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let produced: Vec<Produced> = image
        .layers
        .par_iter()
        .with_max_len(1)
        .map(|layer| write_layer_blob(layer, &blob_dir, opts.compression))
        .collect::<Result<_>>()?;
    let diff_ids: Vec<Digest> = produced.iter().map(|p| p.diff_id.clone()).collect();
    let config = image.config.render(&diff_ids);
    let config = write_bytes_blob(&blob_dir, MediaType::Config(opts.format), &config)?;
    let layer_type = MediaType::Layer(opts.format, opts.compression.codec);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MediaType::Manifest(opts.format)),
        config,
        layers: produced
            .into_iter()
            .map(|p| Descriptor::new(layer_type.clone(), p.digest, p.size))
            .collect(),
    };
    let bytes = serde_json::to_vec(&manifest)?;
    let mut entry = write_bytes_blob(&blob_dir, MediaType::Manifest(opts.format), &bytes)?;
    entry.platform = Some(image.platform.clone());
    Ok(entry)
}

/// Produces one layer's blob into `blob_dir` under its digest.
fn write_layer_blob(layer: &Layer, blob_dir: &Path, compression: Compression) -> Result<Produced> {
    let tmp = temp_file_in(blob_dir)?;
    let produced =
        produce_blob(layer, compression, tmp.as_file()).with_context(|| layer.what.clone())?;
    keep_as(tmp, &blob_dir.join(produced.digest.hex()))?;
    Ok(produced)
}

/// Writes `bytes` as a blob; returns its descriptor.
fn write_bytes_blob(blob_dir: &Path, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor> {
    let digest = Digest::of(bytes);
    write_bytes(&blob_dir.join(digest.hex()), bytes)?;
    Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
}

fn write_if_missing(path: &Path, bytes: &[u8]) -> Result<()> {
    match path.exists() {
        true => Ok(()),
        false => write_bytes(path, bytes),
    }
}

/// Adds `entry` to the layout's index (replacing an entry of the same name), written
/// to a temporary file and renamed: the last step of writing an image.
fn write_index(dir: &Path, entry: Descriptor, tag: Option<&str>) -> Result<()> {
    let path = dir.join("index.json");
    let mut manifests: Vec<Descriptor> = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice::<Index>(&bytes)
                .with_context(|| format!("{}: not an index", path.display()))?
                .manifests
        }
        Err(_) => Vec::new(),
    };
    manifests.retain(|d| match tag {
        Some(t) => d.annotations.get(REF_NAME).map(String::as_str) != Some(t),
        None => d.digest != entry.digest,
    });
    manifests.push(entry);
    let index = Index {
        schema_version: 2,
        media_type: Some(MediaType::Index(Format::Oci)),
        manifests,
    };
    write_bytes(&path, &serde_json::to_vec(&index)?)
}
