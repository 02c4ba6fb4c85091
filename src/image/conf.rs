//! The conf.json that nixpkgs' `streamLayeredImage` writes for its streamer
//! (store_dir, from_image, store_layers, customisation_layer, repo_tag, created, mtime,
//! uid, gid, uname, gname, config, architecture, os, variant), plus stevedore's optional
//! `store_layer_digests`: every store layer's diff_id and size, computed at build time
//! so that streaming only copies bytes; and `store_layer_files`, the layers prebuilt by
//! one derivation each. nixpkgs' streamer ignores the extra keys.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A parsed and checked conf.json.
#[derive(Clone, Debug, Deserialize)]
pub struct Conf {
    pub store_dir: String,
    #[serde(default)]
    pub from_image: Option<PathBuf>,
    pub store_layers: Vec<Vec<String>>,
    pub customisation_layer: PathBuf,
    pub repo_tag: String,
    pub created: String,
    pub mtime: String,
    #[serde(deserialize_with = "int_or_string")]
    pub uid: u64,
    #[serde(deserialize_with = "int_or_string")]
    pub gid: u64,
    pub uname: String,
    pub gname: String,
    pub config: Value,
    pub architecture: Value,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub store_layer_digests: Option<LayerDigests>,
    /// stevedore's `store_layer_files`: for each store layer, the output of the layer
    /// derivation that built it (`layer.tar` and `layer.json`), when
    /// `buildLayeredImage { layerDerivations = true; }` built them one by one.
    #[serde(default)]
    pub store_layer_files: Option<Vec<PathBuf>>,
    /// Where the conf was read from (for messages).
    #[serde(skip)]
    pub path: PathBuf,
}

/// Store layers' diff_ids and sizes, valid for the conf whose `key` they carry.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
pub struct LayerDigests {
    /// [`Conf::digest_key`] of the conf they were computed for.
    pub key: String,
    pub layers: Vec<LayerDigest>,
}

/// One store layer's `sha256:…` diff_id and byte size.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
pub struct LayerDigest {
    pub diff_id: String,
    pub size: u64,
}

/// `int(conf["uid"])`: a JSON integer or a string holding one.
fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| D::Error::custom("expected a non-negative integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{s:?} is not an integer"))),
        other => Err(D::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

impl Conf {
    /// Reads and checks a conf file.
    pub fn load(path: &Path) -> Result<Conf> {
        let text =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let value: Value = serde_json::from_slice(&text)
            .map_err(|e| anyhow::anyhow!("{}: malformed conf: {e}", path.display()))?;
        Conf::from_value(value, path)
    }

    /// Checks a conf given as JSON; `path` names it in messages.
    pub fn from_value(value: Value, path: &Path) -> Result<Conf> {
        let mut conf: Conf = serde_json::from_value(value)
            .map_err(|e| anyhow::anyhow!("{}: malformed conf: {e}", path.display()))?;
        conf.path = path.to_path_buf();
        conf.check()
            .with_context(|| format!("{}", path.display()))?;
        Ok(conf)
    }

    /// What store layers' bytes depend on (their paths, owner and mtime), hashed: a
    /// `store_layer_digests` whose key differs was made for another conf.
    pub fn digest_key(&self) -> String {
        let what = serde_json::json!([
            self.store_dir,
            self.store_layers,
            self.uid,
            self.gid,
            self.uname,
            self.gname,
            self.mtime
        ]);
        super::hashing::sha256_hex(what.to_string().as_bytes())
    }

    /// The recorded store-layer digests, if they were made for this conf; a note on
    /// stderr when they were made for another.
    pub fn valid_digests(&self) -> Option<&[LayerDigest]> {
        let digests = self.store_layer_digests.as_ref()?;
        if digests.key == self.digest_key() && digests.layers.len() == self.store_layers.len() {
            return Some(&digests.layers);
        }
        eprintln!(
            "stevedore: {}: store_layer_digests were made for other store layers, owner or \
             mtime; hashing the layers instead",
            self.path.display()
        );
        None
    }

    fn check(&self) -> Result<()> {
        super::time::check(&self.created).context("created")?;
        super::time::check(&self.mtime).context("mtime")?;
        for path in self.store_layers.iter().flatten() {
            if !path.starts_with(&self.store_dir) {
                bail!("store path {path} is outside store_dir {}", self.store_dir);
            }
        }
        if let Some(files) = &self.store_layer_files {
            if files.len() != self.store_layers.len() {
                bail!(
                    "store_layer_files names {} layers, store_layers {}",
                    files.len(),
                    self.store_layers.len()
                );
            }
        }
        if !self.config.is_object() && !self.config.is_null() {
            bail!("config must be an object");
        }
        for layer in self.store_layer_digests.iter().flat_map(|d| &d.layers) {
            let hex = layer.diff_id.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                bail!(
                    "store_layer_digests: {:?} is not a sha256 digest",
                    layer.diff_id
                );
            }
        }
        Ok(())
    }
}
