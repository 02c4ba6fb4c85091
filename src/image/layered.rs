//! The image a `streamLayeredImage` conf describes: base layers, one layer per
//! `store_layers` entry, then the customisation layer, with nixpkgs' config rules.

use super::base;
use super::compress::Codec;
use super::conf::{Conf, LayerDigest, LayerDigests};
use super::config::overlay_env;
use super::descriptor::Platform;
use super::digest::Digest;
use super::model::{ArchiveLayout, Config, Image, Layer, Source, StreamerConfig};
use super::time::Time;
use super::users;
use crate::tar::pyheader::TarInfo;
use crate::tar::store_layer::{Owner, StoreLayer};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::os::unix::fs::MetadataExt;

/// Builds the image model for `conf`, checking every input before anything is written.
/// `repo_tag` overrides the conf's. Also returns what keeps a decompressed base alive.
pub fn from_conf(conf: &Conf, repo_tag: Option<&str>) -> Result<(Image, Option<base::BaseImage>)> {
    let now = Time::now();
    let created = Time::parse_or_now(&conf.created, now)?;
    let owner = store_owner(conf, now)?;
    let mtime = owner.mtime;
    let mut base = conf.from_image.as_deref().map(base::load).transpose()?;
    let mut layers: Vec<Layer> = Vec::new();
    let mut headers: Vec<Option<TarInfo>> = Vec::new();
    let mut history: Vec<Vec<String>> = Vec::new();
    if let Some(b) = &mut base {
        let base_headers = std::mem::take(&mut b.image.archive.headers);
        for (layer, header) in std::mem::take(&mut b.image.layers)
            .into_iter()
            .zip(base_headers)
        {
            let name = header
                .as_ref()
                .map(|h| h.name.as_slice())
                .unwrap_or_default();
            history.push(vec![String::from_utf8_lossy(name).into_owned()]);
            headers.push(header);
            layers.push(layer);
        }
    }
    for (layer, paths) in store_layers(conf, &owner)?
        .into_iter()
        .zip(&conf.store_layers)
    {
        history.push(paths.clone());
        headers.push(None);
        layers.push(layer);
    }
    let (custom, header) = customisation_layer(conf, mtime)?;
    history.push(vec![conf.customisation_layer.display().to_string()]);
    headers.push(Some(header));
    layers.push(custom);
    let config = match &base {
        Some(b) => overlay_env(&b.config, conf.config.clone()),
        None => conf.config.clone(),
    };
    let image = Image {
        config: Config::Streamer(StreamerConfig {
            created: created.isoformat(),
            architecture: conf.architecture.clone(),
            config,
            history,
        }),
        layers,
        platform: Platform {
            architecture: conf.architecture.as_str().unwrap_or_default().to_string(),
            os: "linux".to_string(),
            variant: conf.variant.clone().filter(|v| !v.is_empty()),
        },
        repo_tags: vec![repo_tag.unwrap_or(&conf.repo_tag).to_string()],
        archive: ArchiveLayout { mtime, headers },
    };
    Ok((image, base))
}

/// The store layers: archived from their paths while the image is written, or, with
/// `store_layer_files`, the tars their layer derivations built.
fn store_layers(conf: &Conf, owner: &Owner) -> Result<Vec<Layer>> {
    if let Some(dirs) = &conf.store_layer_files {
        return dirs.iter().map(|d| prebuilt_layer(d)).collect();
    }
    let digests = conf.valid_digests();
    list_store_layers(conf, owner)?
        .into_iter()
        .enumerate()
        .map(|(i, layer)| {
            let diff_id = digests
                .map(|d| &d[i])
                .map(|d| known_digest(d, &layer))
                .transpose()?;
            Ok(Layer {
                diff_id,
                blob: None,
                what: format!("store layer {}", layer.paths.join(" ")),
                source: Source::StorePaths(layer),
            })
        })
        .collect()
}

/// A store layer a layer derivation built: `DIR/layer.tar`, its diff_id from
/// `DIR/layer.json` once the tar's size agrees.
fn prebuilt_layer(dir: &std::path::Path) -> Result<Layer> {
    let info = crate::derivation::layer::LayerInfo::load(dir)?;
    let tar = std::path::PathBuf::from(&info.path);
    let len = std::fs::metadata(&tar)
        .with_context(|| format!("{}: cannot stat", tar.display()))?
        .len();
    if len != info.tar_size || info.size != info.tar_size {
        bail!(
            "{}: layer.json records an uncompressed tar of {} bytes, the file has {len}",
            tar.display(),
            info.tar_size
        );
    }
    Ok(Layer {
        diff_id: Some(Digest::parse(&info.diff_id)?),
        blob: None,
        what: format!("store layer {}", dir.display()),
        source: Source::File {
            path: tar,
            offset: 0,
            len,
            codec: Codec::None,
        },
    })
}

/// The owner and mtime of every store-layer entry.
pub fn store_owner(conf: &Conf, now: Time) -> Result<Owner> {
    Ok(Owner {
        uid: conf.uid,
        gid: conf.gid,
        uname: conf.uname.clone(),
        gname: conf.gname.clone(),
        mtime: Time::parse_or_now(&conf.mtime, now)?.timestamp(),
    })
}

/// Every store layer of `conf`, listed (in parallel).
pub fn list_store_layers(conf: &Conf, owner: &Owner) -> Result<Vec<StoreLayer>> {
    conf.store_layers
        .par_iter()
        .map(|paths| StoreLayer::list(paths, owner))
        .collect()
}

/// Every store layer's diff_id and size, for `store_layer_digests`, hashed in parallel
/// (largest layers first); `None` when the bytes depend on when they are streamed
/// (`mtime = "now"`).
pub fn compute_digests(conf: &Conf) -> Result<Option<LayerDigests>> {
    if conf.mtime == "now" {
        return Ok(None);
    }
    let layers = list_store_layers(conf, &store_owner(conf, Time::now())?)?;
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(layers[i].size));
    let mut digests: Vec<(usize, Digest)> = order
        .par_iter()
        .with_max_len(1)
        .map(|&i| layers[i].digest().map(|d| (i, d)))
        .collect::<Result<_>>()?;
    digests.sort();
    Ok(Some(LayerDigests {
        key: conf.digest_key(),
        layers: digests
            .into_iter()
            .map(|(i, d)| LayerDigest {
                diff_id: d.to_string(),
                size: layers[i].size,
            })
            .collect(),
    }))
}

/// Adds `store_layer_digests` to the conf `value` (read from `path`); returns how many
/// bytes were hashed, or `None` when digests cannot be known in advance.
pub fn add_digests(value: &mut serde_json::Value, path: &std::path::Path) -> Result<Option<u64>> {
    let conf = Conf::from_value(value.clone(), path)?;
    let Some(digests) = compute_digests(&conf)? else {
        return Ok(None);
    };
    let bytes = digests.layers.iter().map(|l| l.size).sum();
    value["store_layer_digests"] = serde_json::to_value(digests)?;
    Ok(Some(bytes))
}

/// A recorded diff_id, once the layer's size agrees with the record.
fn known_digest(recorded: &LayerDigest, layer: &StoreLayer) -> Result<Digest> {
    if recorded.size != layer.size {
        bail!(
            "store layer {}: store_layer_digests records {} bytes, the paths now make {}",
            layer.paths.join(" "),
            recorded.size,
            layer.size
        );
    }
    Digest::parse(&recorded.diff_id)
}

/// The prebuilt customisation layer: `<dir>/layer.tar` with its sha256 in `<dir>/checksum`,
/// and its archive member header: `gettarinfo` of the file, as nixpkgs' streamer makes it.
fn customisation_layer(conf: &Conf, mtime: i64) -> Result<(Layer, TarInfo)> {
    let dir = &conf.customisation_layer;
    let checksum_file = dir.join("checksum");
    let checksum = std::fs::read_to_string(&checksum_file)
        .with_context(|| format!("{}: cannot read", checksum_file.display()))?
        .trim()
        .to_string();
    let Ok(diff_id) = Digest::sha256(&checksum) else {
        bail!("{}: not a sha256", checksum_file.display());
    };
    let tar = dir.join("layer.tar");
    let meta =
        std::fs::metadata(&tar).with_context(|| format!("{}: cannot stat", tar.display()))?;
    let name = format!("{checksum}/layer.tar").into_bytes();
    let header = TarInfo {
        name,
        mode: meta.mode(),
        uid: meta.uid() as u64,
        gid: meta.gid() as u64,
        uname: users::user_name(meta.uid()).into_bytes(),
        gname: users::group_name(meta.gid()).into_bytes(),
        ..TarInfo::file(b"", meta.len(), mtime)
    };
    let layer = Layer {
        diff_id: Some(diff_id),
        blob: None,
        what: format!("customisation layer {}", dir.display()),
        source: Source::File {
            path: tar,
            offset: 0,
            len: meta.len(),
            codec: Codec::None,
        },
    };
    Ok((layer, header))
}
