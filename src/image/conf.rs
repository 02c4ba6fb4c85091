//! The conf.json that nixpkgs' `streamLayeredImage` writes for its streamer
//! (store_dir, from_image, store_layers, customisation_layer, repo_tag, created, mtime,
//! uid, gid, uname, gname, config, architecture, os, variant).

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
        let conf: Conf = serde_json::from_slice(&text)
            .map_err(|e| anyhow::anyhow!("{}: malformed conf: {e}", path.display()))?;
        conf.check()
            .with_context(|| format!("{}", path.display()))?;
        Ok(conf)
    }

    fn check(&self) -> Result<()> {
        super::time::check(&self.created).context("created")?;
        super::time::check(&self.mtime).context("mtime")?;
        for path in self.store_layers.iter().flatten() {
            if !path.starts_with(&self.store_dir) {
                bail!("store path {path} is outside store_dir {}", self.store_dir);
            }
        }
        if !self.config.is_object() && !self.config.is_null() {
            bail!("config must be an object");
        }
        Ok(())
    }
}
