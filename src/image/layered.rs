//! The image a `streamLayeredImage` conf describes: base layers, one layer per
//! `store_layers` entry, then the customisation layer, with nixpkgs' config rules.

use super::base;
use super::conf::Conf;
use super::config::overlay_env;
use super::model::{Image, Layer, Source, DOCKER_LAYER};
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
    let mtime = Time::parse_or_now(&conf.mtime, now)?.timestamp();
    let owner = Owner {
        uid: conf.uid,
        gid: conf.gid,
        uname: conf.uname.clone(),
        gname: conf.gname.clone(),
        mtime,
    };
    let mut base = conf.from_image.as_deref().map(base::load).transpose()?;
    let mut layers: Vec<Layer> = match &mut base {
        Some(b) => std::mem::take(&mut b.layers),
        None => Vec::new(),
    };
    let store: Vec<StoreLayer> = conf
        .store_layers
        .par_iter()
        .map(|paths| StoreLayer::list(paths, &owner))
        .collect::<Result<_>>()?;
    for layer in store {
        layers.push(Layer {
            diff_id: None,
            size: layer.size,
            media_type: DOCKER_LAYER,
            history: layer.paths.clone(),
            header: TarInfo::file(b"", layer.size, mtime),
            source: Source::StorePaths(layer),
        });
    }
    layers.push(customisation_layer(conf, mtime)?);
    let config = match &base {
        Some(b) => overlay_env(&b.config, conf.config.clone()),
        None => conf.config.clone(),
    };
    let image = Image {
        layers,
        created: created.isoformat(),
        architecture: conf.architecture.clone(),
        config,
        repo_tag: repo_tag.unwrap_or(&conf.repo_tag).to_string(),
        mtime,
    };
    Ok((image, base))
}

/// The prebuilt customisation layer: `<dir>/layer.tar` with its sha256 in `<dir>/checksum`.
/// Its header is `gettarinfo` of the file, as nixpkgs' streamer makes it.
fn customisation_layer(conf: &Conf, mtime: i64) -> Result<Layer> {
    let dir = &conf.customisation_layer;
    let checksum_file = dir.join("checksum");
    let checksum = std::fs::read_to_string(&checksum_file)
        .with_context(|| format!("{}: cannot read", checksum_file.display()))?
        .trim()
        .to_string();
    if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{}: not a sha256", checksum_file.display());
    }
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
    Ok(Layer {
        diff_id: Some(checksum),
        size: meta.len(),
        media_type: DOCKER_LAYER,
        source: Source::FileRange {
            path: tar,
            offset: 0,
        },
        header,
        history: vec![dir.display().to_string()],
    })
}
