//! The steps of `nix/nixery.nix`'s derivations, whose builder is the helper itself
//! (`stevedore nix-nixery`; the `step` attribute says which):
//! - `install`: copies the running helper to `$out/bin/stevedore` (a binary given to the
//!   Nix code as a path becomes a store path this way, with no shell);
//! - `plan`: Nixery's layer groups for the closure graph, read back by the Nix code;
//! - `layer`: one layer blob (store paths, or the customisation layer's symlink tree of
//!   the packages) and its `layer.json` (diff_id, sha256, base64 md5, size, path);
//! - `config`: the image config (architecture, os, rootfs, config) from the layers;
//! - `manifest`: Nixery's manifest output `{manifest, layerLocations}`;
//! - `write`: `text` to `$out` (the `{error = "not_found"; …}` output).

use super::attrs;
use crate::image::compress::Compression;
use crate::image::descriptor::Descriptor;
use crate::image::digest::Digest;
use crate::image::media::{Format, MediaType};
use crate::image::model::{Layer, Source};
use crate::image::{layer_io, output};
use crate::log;
use crate::plan::nixery;
use crate::store::Graph;
use crate::tar::gnu;
use crate::tar::store_layer::{Owner, StoreLayer};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use md5::Digest as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

/// mtime of the customisation layer's entries, as `tar --mtime=@$SOURCE_DATE_EPOCH`
/// under nixpkgs' stdenv.
const CUSTOMISATION_MTIME: i64 = 315_532_800;

/// What a layer derivation records about its blob (`layer.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LayerInfo {
    /// `sha256:…` of the uncompressed tar.
    pub diff_id: String,
    /// Hex sha256 of the blob (what the manifest names).
    pub sha256: String,
    /// Base64 md5 of the blob (the seed's `layerLocations` carry it).
    pub md5: String,
    pub size: u64,
    pub path: String,
    pub media_type: String,
}

/// Runs the step named by the `step` attribute.
pub fn run() -> Result<()> {
    let started = std::time::Instant::now();
    let attrs = attrs::load()?;
    let out = attrs::output(&attrs, "out")?;
    let step = attrs::string(&attrs, "step").unwrap_or_default();
    let detail = match step.as_str() {
        "install" => install(&out)?,
        "plan" => plan(&attrs, &out)?,
        "layer" => layer(&attrs, &out)?,
        "config" => config(&attrs, &out)?,
        "manifest" => manifest(&attrs, &out)?,
        "write" => write(&attrs, &out)?,
        other => bail!(
            "{}: unknown nixery step {other:?}",
            attrs::attrs_file().display()
        ),
    };
    log::built(&out, &detail, started);
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
    let listed: Vec<Value> = layers
        .iter()
        .map(|l| json!({"contents": l.contents, "mergeRating": l.merge_rating}))
        .collect();
    std::fs::write(out, serde_json::to_vec(&listed)?)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(format!(
        "{} of {}",
        log::count(layers.len(), "layer group"),
        log::count(graph.len(), "store path")
    ))
}

fn layer(attrs: &Value, out: &Path) -> Result<String> {
    let compression =
        Compression::parse(&attrs::string(attrs, "compressor").unwrap_or("gzip".into()))?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let (source, what) = match attrs.get("contents") {
        Some(contents) => customisation_source(&strings(contents)?)?,
        None => {
            let paths = strings(&attrs["paths"])?;
            let owner = Owner {
                uid: 0,
                gid: 0,
                uname: "root".into(),
                gname: "root".into(),
                mtime: 1,
            };
            let what = format!("store layer {}", paths.join(" "));
            (Source::StorePaths(StoreLayer::list(&paths, &owner)?), what)
        }
    };
    let layer = Layer {
        diff_id: None,
        blob: None,
        source,
        what: what.clone(),
    };
    let blob = out.join(blob_name(compression));
    let mut produced = None;
    output::write_atomically(&blob, |file| {
        produced = Some(layer_io::produce_blob(&layer, compression, file)?);
        Ok(())
    })?;
    let produced = produced.context("no blob produced")?;
    let info = LayerInfo {
        diff_id: produced.diff_id.to_string(),
        sha256: produced.digest.hex().to_string(),
        md5: md5_base64(&blob)?,
        size: produced.size,
        path: blob.display().to_string(),
        media_type: MediaType::Layer(Format::Docker, compression.codec)
            .as_str()
            .to_string(),
    };
    std::fs::write(out.join("layer.json"), serde_json::to_vec(&info)?)
        .with_context(|| format!("{}: cannot write layer.json", out.display()))?;
    Ok(format!("{what}: {}", log::size(produced.size)))
}

/// The customisation layer: the packages joined as symlinkJoin does, archived as
/// nixpkgs' customisation layer (in the build directory, then compressed into `$out`).
fn customisation_source(contents: &[String]) -> Result<(Source, String)> {
    let top = PathBuf::from(std::env::var_os("NIX_BUILD_TOP").unwrap_or_else(|| ".".into()));
    let root = top.join("root");
    let refs: Vec<&Path> = contents.iter().map(Path::new).collect();
    crate::contents::symlink_join(&root, &refs)?;
    let opts = gnu::GnuOptions {
        mtime: CUSTOMISATION_MTIME,
        owner: Some(0),
        group: Some(0),
        faked: None,
        exclude: Vec::new(),
        names: false,
    };
    let archived = top.join("customisation");
    output::customisation_layer(&root, &archived, &opts)?;
    let path = archived.join("layer.tar");
    let len = std::fs::metadata(&path)?.len();
    let source = Source::File {
        path,
        offset: 0,
        len,
        codec: crate::image::compress::Codec::None,
    };
    Ok((source, "customisation layer".into()))
}

fn blob_name(compression: Compression) -> &'static str {
    use crate::image::compress::Codec;
    match compression.codec {
        Codec::None => "layer.tar",
        Codec::Gzip => "layer.tar.gz",
        Codec::Zstd => "layer.tar.zst",
    }
}

/// The base64 md5 of a file. Read once more after the blob is written: md5 is only for
/// the seed's output shape, and the blob is compressed (small) or just written (cached).
fn md5_base64(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
}

fn strings(value: &Value) -> Result<Vec<String>> {
    value
        .as_array()
        .context("expected a list of store paths")?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .context("expected a store path")
        })
        .collect()
}

/// The layer derivations' `layer.json`s, in order.
fn layer_infos(attrs: &Value) -> Result<Vec<LayerInfo>> {
    strings(&attrs["layers"])?
        .iter()
        .map(|dir| {
            let file = Path::new(dir).join("layer.json");
            let text =
                std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("{}: not a layer.json", file.display()))
        })
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
    let descriptor = |media: &str, sha256: &str, size: u64| -> Result<Descriptor> {
        Ok(Descriptor::new(
            MediaType::parse(media),
            Digest::sha256(sha256)?,
            size,
        ))
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::Manifest(Format::Docker).as_str(),
        "config": descriptor(
            MediaType::Config(Format::Docker).as_str(),
            config_digest.hex(),
            config_bytes.len() as u64,
        )?,
        "layers": layers
            .iter()
            .map(|l| descriptor(&l.media_type, &l.sha256, l.size))
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
