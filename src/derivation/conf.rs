//! The conf step of `streamLayeredImage`: plans the store layers from the closure graph
//! and writes the conf.json nixpkgs' streamer reads (baseJson's keys, then store_dir,
//! from_image, store_layers, customisation_layer, repo_tag, created, mtime, uid, gid,
//! uname, gname), with nixpkgs' layer budget and its error messages.

use super::attrs;
use crate::image::time::Time;
use crate::image::{base, layered};
use crate::log;
use crate::plan::{self, Algorithm};
use crate::store::Graph;
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// Runs the step: reads `.attrs.json`, writes `outputs.out`.
pub fn run() -> Result<()> {
    let started = std::time::Instant::now();
    let attrs = attrs::load()?;
    let file = || attrs::attrs_file().display().to_string();
    let out = attrs::output(&attrs, "out").with_context(file)?;
    let mut conf = build(&attrs, &out.to_string_lossy()).with_context(file)?;
    let hashed = if attrs["precomputeDigests"].as_bool() == Some(false) {
        None
    } else {
        layered::add_digests(&mut conf, &out).with_context(file)?
    };
    std::fs::write(&out, serde_json::to_string_pretty(&conf)? + "\n")
        .with_context(|| format!("{}: cannot write", out.display()))?;
    log::built(&out, &summary(&conf, hashed), started);
    Ok(())
}

/// The conf of `layerDerivations = true`: the planned conf (`baseConf`) with the layer
/// derivations' outputs (`layers`, one per store layer) as `store_layer_files` (each
/// holds its tar and, in layer.json, its diff_id), checked as a conf is read.
pub fn run_with_layers() -> Result<()> {
    let started = std::time::Instant::now();
    let attrs = attrs::load()?;
    let file = || attrs::attrs_file().display().to_string();
    let out = attrs::output(&attrs, "out").with_context(file)?;
    let base = attrs::string(&attrs, "baseConf")
        .context("no baseConf")
        .with_context(file)?;
    let base = std::path::Path::new(&base);
    let mut value: Value = serde_json::from_slice(
        &std::fs::read(base).with_context(|| format!("{}: cannot read", base.display()))?,
    )
    .with_context(|| format!("{}: not JSON", base.display()))?;
    let dirs = super::layer::strings(&attrs["layers"]).with_context(file)?;
    value["store_layer_files"] = json!(dirs);
    crate::image::conf::Conf::from_value(value.clone(), &out)?;
    std::fs::write(&out, serde_json::to_string_pretty(&value)? + "\n")
        .with_context(|| format!("{}: cannot write", out.display()))?;
    let detail = format!(
        "{} from layer derivations",
        log::count(dirs.len(), "store layer")
    );
    log::built(&out, &detail, started);
    Ok(())
}

/// What the conf holds, for the build log.
fn summary(conf: &Value, hashed: Option<u64>) -> String {
    let layers = conf["store_layers"].as_array().map_or(0, Vec::len);
    let paths: usize = conf["store_layers"].as_array().map_or(0, |l| {
        l.iter().filter_map(Value::as_array).map(Vec::len).sum()
    });
    let digests = match hashed {
        Some(bytes) => format!("diff_ids of {} computed", log::size(bytes)),
        None => "diff_ids left to the stream".to_string(),
    };
    format!(
        "{} of {} + customisation layer{}, {digests}",
        log::count(layers, "store layer"),
        log::count(paths, "store path"),
        if conf["from_image"].is_null() {
            ""
        } else {
            " on the base image's layers"
        }
    )
}

fn build(attrs: &Value, out: &str) -> Result<Value> {
    let store_dir = attrs::string(attrs, "storeDir").unwrap_or_else(|| "/nix/store".into());
    let from_image = attrs::string(attrs, "fromImage");
    let layers = store_layers(attrs, &store_dir, from_image.as_deref())?;
    if attrs["debug"].as_bool() == Some(true) {
        eprintln!("store layers: {}", serde_json::to_string_pretty(&layers)?);
    }
    let base_json = attrs::string(attrs, "baseJson").context("no baseJson")?;
    let mut conf: Map<String, Value> = serde_json::from_slice(
        &std::fs::read(&base_json).with_context(|| format!("{base_json}: cannot read"))?,
    )
    .with_context(|| format!("{base_json}: not a JSON object"))?;
    let tag = match attrs::string(attrs, "tag") {
        Some(t) => t,
        None => hash_part(out),
    };
    let image_name = attrs::string(attrs, "imageName").context("no imageName")?;
    let text = |k: &str| attrs::string(attrs, k).unwrap_or_default();
    conf.insert("store_dir".into(), json!(store_dir));
    conf.insert("from_image".into(), json!(from_image));
    conf.insert("store_layers".into(), json!(layers));
    conf.insert(
        "customisation_layer".into(),
        json!(text("customisationLayer")),
    );
    conf.insert("repo_tag".into(), json!(format!("{image_name}:{tag}")));
    conf.insert("created".into(), json!(normalise_time(&text("created"))?));
    conf.insert("mtime".into(), json!(normalise_time(&text("mtime"))?));
    for key in ["uid", "gid"] {
        conf.insert(key.into(), json!(number_text(&attrs[key])));
    }
    conf.insert("uname".into(), json!(text("uname")));
    conf.insert("gname".into(), json!(text("gname")));
    Ok(Value::Object(conf))
}

/// The hash part of a store path (what nixpkgs uses as the default tag).
pub fn hash_part(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split('-').next().unwrap_or(base).to_string()
}

/// `date -Iseconds -d TIME` in a UTC build: whole seconds, `+00:00`; "now" stays.
fn normalise_time(text: &str) -> Result<String> {
    if text == "now" {
        return Ok(text.into());
    }
    let t = Time::parse(text)?;
    Ok(Time::from_timestamp(t.timestamp()).isoformat())
}

fn number_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn store_layers(
    attrs: &Value,
    store_dir: &str,
    from_image: Option<&str>,
) -> Result<Vec<Vec<String>>> {
    let graph_value = attrs.get("graph").cloned().unwrap_or(json!([]));
    let graph = Graph::from_json(graph_value.to_string().as_bytes(), None, store_dir)
        .context("closure graph")?;
    let exclude: HashSet<String> = attrs["excludePaths"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(pipeline) = attrs.get("layeringPipeline").filter(|p| !p.is_null()) {
        return plan::pipeline::run(&graph, &exclude, pipeline);
    }
    let max_layers = attrs["maxLayers"].as_u64().unwrap_or(100) as usize;
    let base_layers = match from_image {
        Some(path) => base::load(std::path::Path::new(path))?.image.layers.len(),
        None => 0,
    };
    let used = 1 + base_layers;
    if used >= max_layers {
        bail!(
            "Error: usedLayers {used} layers to store 'fromImage' and 'extraCommands', but only \
             maxLayers={max_layers} were allowed. At least 1 layer is required to store contents."
        );
    }
    if graph.is_empty() {
        return Ok(Vec::new());
    }
    let algorithm = match attrs::string(attrs, "layeringAlgorithm").as_deref() {
        Some("popularity") => Algorithm::Popularity,
        _ => Algorithm::Auto,
    };
    Ok(plan::plan(algorithm, &graph, &exclude, max_layers - used))
}
