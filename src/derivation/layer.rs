//! The builder of one layer derivation (`stevedore nix-layer`): the layer of a list of
//! store paths (`paths`, in nixpkgs' store-layer format, with the `uid`, `gid`,
//! `uname`, `gname` and `mtime` attributes as owner and time), or the customisation
//! layer of packages (`contents`: joined as symlinkJoin does, archived as nixpkgs'
//! customisation layer), compressed as `compressor` says, into `$out/layer.tar[.gz|.zst]`
//! with `$out/layer.json` ([`LayerInfo`]). nix/nixery.nix builds every layer this way,
//! and so does `buildLayeredImage { layerDerivations = true; }`, so Nix caches,
//! substitutes and builds each layer remotely on its own.

use super::attrs;
use crate::image::compress::{Codec, Compression};
use crate::image::media::{Format, MediaType};
use crate::image::model::{Layer, Source};
use crate::image::time::Time;
use crate::image::{layer_io, output};
use crate::log;
use crate::tar::gnu;
use crate::tar::store_layer::{Owner, StoreLayer};
use anyhow::{Context, Result};
use base64::Engine as _;
use md5::Digest as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    /// Hex sha256 of the blob (what a manifest names).
    pub sha256: String,
    /// Base64 md5 of the blob (Nixery's layer list carries it).
    pub md5: String,
    /// Size of the blob.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    pub path: String,
    pub media_type: String,
}

impl LayerInfo {
    /// Reads `DIR/layer.json`.
    pub fn load(dir: &Path) -> Result<LayerInfo> {
        let file = dir.join("layer.json");
        let text =
            std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
        serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a layer.json", file.display()))
    }
}

/// Runs the step: reads `.attrs.json`, writes `outputs.out`.
pub fn run() -> Result<()> {
    let started = std::time::Instant::now();
    let attrs = attrs::load()?;
    let out = attrs::output(&attrs, "out")?;
    let detail = build(&attrs, &out).with_context(|| attrs::attrs_file().display().to_string())?;
    log::built(&out, &detail, started);
    attrs::hold_log();
    Ok(())
}

fn build(attrs: &Value, out: &Path) -> Result<String> {
    let compressor = attrs::string(attrs, "compressor").unwrap_or_else(|| "gzip".into());
    let compression = Compression::parse(&compressor)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let (source, what) = match attrs.get("contents") {
        Some(contents) => customisation_source(&strings(contents)?)?,
        None => {
            let paths = strings(&attrs["paths"])?;
            let what = format!("store layer {}", paths.join(" "));
            let layer = StoreLayer::list(&paths, &owner(attrs)?)?;
            (Source::StorePaths(layer), what)
        }
    };
    let tar_size = source.stored_len();
    let layer = Layer {
        diff_id: None,
        blob: None,
        source,
        what: what.clone(),
    };
    let blob = out.join(blob_name(compression.codec));
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
        tar_size,
        path: blob.display().to_string(),
        media_type: MediaType::Layer(Format::Docker, compression.codec)
            .as_str()
            .to_string(),
    };
    std::fs::write(out.join("layer.json"), serde_json::to_vec(&info)?)
        .with_context(|| format!("{}: cannot write layer.json", out.display()))?;
    Ok(format!("{what}: {}", log::size(produced.size)))
}

/// The owner and time of a store layer's entries: nixpkgs' defaults (root, 1970-01-01
/// 00:00:01) unless the attributes say otherwise.
fn owner(attrs: &Value) -> Result<Owner> {
    let number = |key: &str| match &attrs[key] {
        Value::Number(n) => n
            .as_u64()
            .context(format!("{key} must be a non-negative integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .context(format!("{key} must be an integer")),
        _ => Ok(0),
    };
    let text = |key: &str| attrs::string(attrs, key).unwrap_or_else(|| "root".into());
    let mtime = match attrs::string(attrs, "mtime") {
        Some(t) => Time::parse(&t).context("mtime")?.timestamp(),
        None => 1,
    };
    Ok(Owner {
        uid: number("uid")?,
        gid: number("gid")?,
        uname: text("uname"),
        gname: text("gname"),
        mtime,
    })
}

/// The customisation layer: the packages joined as symlinkJoin does, archived as
/// nixpkgs' customisation layer in the build directory (then compressed into `$out`).
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
        codec: Codec::None,
    };
    Ok((source, "customisation layer".into()))
}

fn blob_name(codec: Codec) -> &'static str {
    match codec {
        Codec::None => "layer.tar",
        Codec::Gzip => "layer.tar.gz",
        Codec::Zstd => "layer.tar.zst",
    }
}

/// The base64 md5 of a file. Read once more after the blob is written: md5 is only for
/// Nixery's output shape, and the blob is compressed (small) or just written (cached).
pub fn md5_base64(path: &Path) -> Result<String> {
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

/// A list attribute of strings (store paths).
pub fn strings(value: &Value) -> Result<Vec<String>> {
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
