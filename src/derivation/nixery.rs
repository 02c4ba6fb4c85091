//! The steps of `nix/nixery.nix`'s derivations, whose builder is the helper itself
//! (`stevedore nix-nixery`; the `step` attribute says which):
//! - `install`: copies the running helper to `$out/bin/stevedore` (a binary given to the
//!   Nix code as a path becomes a store path this way, with no shell);
//! - `plan`: Nixery's layer groups for the closure graph, read back by the Nix code;
//! - `config`: the image config (architecture, os, rootfs, config) from the layers;
//! - `manifest`: Nixery's manifest output `{manifest, layerLocations}` (Docker schema 2;
//!   OCI when the layers are zstd);
//! - `write`: `text` to `$out` (the `{error = "not_found"; …}` output).
//!
//! Each layer is built by its own derivation, `stevedore nix-layer` (layer.rs).

use super::attrs;
use super::layer::{md5_base64, strings, LayerInfo};
use crate::image::compress::Codec;
use crate::image::descriptor::Descriptor;
use crate::image::digest::Digest;
use crate::image::media::{Format, MediaType};
use crate::log;
use crate::plan::nixery;
use crate::store::Graph;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// Runs the step named by the `step` attribute.
pub fn run() -> Result<()> {
    let started = std::time::Instant::now();
    let attrs = attrs::load()?;
    let out = attrs::output(&attrs, "out")?;
    let step = attrs::string(&attrs, "step").unwrap_or_default();
    let detail = match step.as_str() {
        "install" => install(&out)?,
        "plan" => plan(&attrs, &out)?,
        "config" => config(&attrs, &out)?,
        "manifest" => manifest(&attrs, &out)?,
        "write" => write(&attrs, &out)?,
        other => bail!(
            "{}: unknown nixery step {other:?}",
            attrs::attrs_file().display()
        ),
    };
    log::built(&out, &detail, started);
    attrs::hold_log();
    Ok(())
}

fn install(out: &Path) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the running helper")?;
    let bin = out.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("{}: cannot create", bin.display()))?;
    std::fs::copy(&exe, bin.join("stevedore"))
        .with_context(|| format!("{}: cannot copy to {}", exe.display(), bin.display()))?;
    Ok("the stevedore helper".into())
}

fn plan(attrs: &Value, out: &Path) -> Result<String> {
    let store_dir = attrs::string(attrs, "storeDir").unwrap_or_else(|| "/nix/store".into());
    let file = attrs::attrs_file();
    let graph = Graph::load(&file, Some("graph"), &store_dir)?;
    let roots = nixery::declared_roots(attrs, "graph")
        .iter()
        .map(|p| {
            graph
                .find(p)
                .with_context(|| format!("root {p} is not in the graph"))
        })
        .collect::<Result<Vec<_>>>()?;
    let max_layers = attrs["maxLayers"]
        .as_u64()
        .unwrap_or(nixery::BUDGET as u64 + 1);
    if max_layers < 2 {
        bail!("maxLayers must be at least 2 (one store layer and the customisation layer), not {max_layers}");
    }
    let popularity = match attrs::string(attrs, "popularity") {
        Some(p) => nixery::read_popularity(Path::new(&p))?,
        None => Default::default(),
    };
    let layers = nixery::layers(&graph, &roots, &popularity, max_layers as usize - 1);
    let sizes = nixery::closure_sizes(&graph);
    let listed: Vec<Value> = layers
        .iter()
        .map(|l| {
            let name = nixery::package_name(top_path(&graph, &sizes, &l.contents));
            json!({"name": name, "contents": l.contents, "mergeRating": l.merge_rating})
        })
        .collect();
    std::fs::write(out, serde_json::to_vec(&listed)?)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(format!(
        "{} of {}",
        log::count(layers.len(), "layer group"),
        log::count(graph.len(), "store path")
    ))
}

/// What names a layer group: its path with the largest closure (the group's root in the
/// dominator tree, which holds every other member; for a merged layer, the largest
/// root), the smallest path on a tie.
fn top_path<'a>(graph: &Graph, sizes: &[u64], contents: &'a [String]) -> &'a str {
    let size = |p: &String| graph.find(p).map_or(0, |i| sizes[i]);
    contents
        .iter()
        .max_by(|a, b| size(a).cmp(&size(b)).then_with(|| b.cmp(a)))
        .map_or("", String::as_str)
}

/// The layer derivations' `layer.json`s, in order.
fn layer_infos(attrs: &Value) -> Result<Vec<LayerInfo>> {
    strings(&attrs["layers"])?
        .iter()
        .map(|dir| LayerInfo::load(Path::new(dir)))
        .collect()
}

fn config(attrs: &Value, out: &Path) -> Result<String> {
    let layers = layer_infos(attrs)?;
    let config = json!({
        "architecture": attrs::string(attrs, "arch").unwrap_or("amd64".into()),
        "os": "linux",
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "config": attrs.get("config").cloned().unwrap_or(json!({})),
    });
    std::fs::write(out, serde_json::to_vec(&config)?)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(format!("config of {}", log::count(layers.len(), "layer")))
}

fn manifest(attrs: &Value, out: &Path) -> Result<String> {
    let layers = layer_infos(attrs)?;
    let config_path = attrs::string(attrs, "configFile").context("no configFile")?;
    let config_bytes =
        std::fs::read(&config_path).with_context(|| format!("{config_path}: cannot read"))?;
    let config_digest = Digest::of(&config_bytes);
    let codecs = layers
        .iter()
        .map(|l| match MediaType::parse(&l.media_type) {
            MediaType::Layer(_, codec) => Ok(codec),
            _ => bail!("{}: not a layer media type: {}", l.path, l.media_type),
        })
        .collect::<Result<Vec<_>>>()?;
    // Docker schema 2, as Nixery; OCI when a layer is zstd, which Docker's media types
    // do not name in a way skopeo or containerd read.
    let format = match codecs.contains(&Codec::Zstd) {
        true => Format::Oci,
        false => Format::Docker,
    };
    let descriptor = |media: MediaType, sha256: &str, size: u64| -> Result<Descriptor> {
        Ok(Descriptor::new(media, Digest::sha256(sha256)?, size))
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::Manifest(format).as_str(),
        "config": descriptor(
            MediaType::Config(format),
            config_digest.hex(),
            config_bytes.len() as u64,
        )?,
        "layers": layers
            .iter()
            .zip(codecs)
            .map(|(l, codec)| descriptor(MediaType::Layer(format, codec), &l.sha256, l.size))
            .collect::<Result<Vec<_>>>()?,
    });
    let mut locations = serde_json::Map::new();
    let config_md5 = md5_base64(Path::new(&config_path))?;
    locations.insert(
        config_digest.hex().to_string(),
        json!({"sha256": config_digest.hex(), "md5": config_md5, "size": config_bytes.len(), "path": config_path}),
    );
    for l in &layers {
        locations.insert(
            l.sha256.clone(),
            json!({"sha256": l.sha256, "md5": l.md5, "size": l.size, "path": l.path}),
        );
    }
    let output = json!({"manifest": manifest, "layerLocations": locations});
    std::fs::write(out, serde_json::to_vec(&output)?)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(format!("manifest of {}", log::count(layers.len(), "layer")))
}

fn write(attrs: &Value, out: &Path) -> Result<String> {
    let text = attrs::string(attrs, "text").context("no text")?;
    std::fs::write(out, &text).with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(format!("{} bytes", text.len()))
}
