//! buildImage's layer (nixpkgs' mkPureLayer): the layer directory archived as
//! `tar --hard-dereference --sort=name --mtime=@N --owner=UID --group=GID -cf layer.tar .`
//! (GNU format; owner names as the build sandbox has them), its TarSum computed while
//! it is written, `json` = the base json plus `checksum` (jshon's format), and
//! `VERSION` = `1.0`.

use super::jsonfmt;
use super::output::write_atomically;
use crate::tar::gnu::{self, GnuOptions};
use crate::tarsum::{TarSum, Version};
use anyhow::{Context, Result};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

/// Writes `out/layer.tar`, `out/json` and `out/VERSION` for the directory `dir`.
/// `owner` is `--owner`/`--group`; `None` keeps the owners the files have (runAsRoot).
pub fn write(
    dir: &Path,
    base_json: &Path,
    owner: Option<(u64, u64)>,
    mtime: i64,
    out: &Path,
) -> Result<()> {
    let mut json = read_base_json(base_json)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let opts = GnuOptions {
        mtime,
        owner: owner.map(|o| o.0),
        group: owner.map(|o| o.1),
        names: true,
        ..GnuOptions::default()
    };
    let mut sum = TarSum::new(Version::V1);
    write_atomically(&out.join("layer.tar"), |file| {
        let mut w = std::io::BufWriter::new(file);
        gnu::write_dir_summed(dir, &opts, &mut w, &mut sum)?;
        w.flush().context("cannot write layer")
    })?;
    json.insert("checksum".into(), Value::String(sum.finish(None)?));
    let text =
        jsonfmt::jshon(&Value::Object(json)).with_context(|| format!("{}", base_json.display()))?;
    std::fs::write(out.join("json"), text)?;
    std::fs::write(out.join("VERSION"), "1.0")?;
    Ok(())
}

/// The base json as a JSON object, checked to be one jshon can print (before anything
/// is written).
fn read_base_json(path: &Path) -> Result<serde_json::Map<String, Value>> {
    let what = || format!("{}", path.display());
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", what()))?;
    let json: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not a JSON object", what()))?;
    jsonfmt::jshon(&Value::Object(json.clone())).with_context(what)?;
    Ok(json)
}
