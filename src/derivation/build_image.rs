//! The image step of `buildImage` (nixpkgs' `result` derivation): the base image's
//! files, then the new layer with the closure appended (store paths the base and the
//! layer do not already have, as `tar -r` adds them), the layer's `json` finished with
//! `parent`, `id` and `Size`, the image JSON (jq's format, Env appended to the base's),
//! `manifest.json`, `repositories`, all archived with GNU tar as nixpkgs does
//! (`--sort=name --owner=0 --group=0`, read-only modes, names without `./`).

use super::attrs;
use crate::image::docker_archive::{self, Archive, Compressor};
use crate::image::hashing::sha256_hex;
use crate::image::jsonfmt;
use crate::image::output::write_atomically;
use crate::store::Graph;
use crate::tar::gnu::{self, Content, GnuOptions, Item};
use crate::tar::kind;
use crate::tar::reader::{self, Member};
use crate::tar::tree::{Key, Tree};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A base image, unpacked in memory.
struct Base {
    /// Member names (without `./`) to their items, as `tar -xp` would leave them.
    files: Tree,
    layers: Vec<String>,
    env: Vec<Value>,
    parent: String,
    /// Every path of every `*/layer.tar`, as nixpkgs' `ls_tar` prints them.
    paths: BTreeSet<Vec<u8>>,
    /// Keeps a decompressed copy alive while the files are read.
    _archive: Archive,
}

/// Runs the step: reads `.attrs.json`, writes `outputs.out`; errors name the file.
pub fn run() -> Result<()> {
    let started = std::time::Instant::now();
    let a = attrs::load()?;
    build(&a, started).with_context(|| attrs::attrs_file().display().to_string())
}

fn build(a: &Value, started: std::time::Instant) -> Result<()> {
    let step = Step::from_attrs(a)?;
    let base = match &step.from_image {
        Some(p) => Some(load_base(p)?),
        None => None,
    };
    let work = tempfile::tempdir()?;
    let image = assemble(
        &step.layer,
        base.as_ref(),
        &step.graph,
        &step.base_json,
        &step.image_name,
        &step.tag,
        step.mtime,
        work.path(),
    )?;
    write_atomically(&step.out, |file| {
        let mut input = std::fs::File::open(&image)?;
        docker_archive::compress_file(&mut input, file, step.compressor)
    })?;
    let from_base = base.as_ref().map_or(0, |b| b.layers.len());
    let detail = format!(
        "{} ({from_base} from the base image), {}",
        crate::log::count(from_base + 1, "layer"),
        crate::log::file_size(&step.out)
    );
    crate::log::built(&step.out, &detail, started);
    Ok(())
}

/// What the step's structured attributes ask for.
struct Step {
    out: PathBuf,
    mtime: i64,
    layer: PathBuf,
    from_image: Option<PathBuf>,
    graph: Graph,
    tag: String,
    image_name: String,
    base_json: Value,
    compressor: Compressor,
}

impl Step {
    fn from_attrs(a: &Value) -> Result<Step> {
        let out = attrs::output(a, "out")?;
        let mtime = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(315_532_800);
        let store_dir = attrs::string(a, "storeDir").unwrap_or_else(|| "/nix/store".into());
        let layer = PathBuf::from(attrs::string(a, "layer").context("no layer")?);
        let graph = Graph::from_json(a["closure"].to_string().as_bytes(), None, &store_dir)
            .context("layer closure")?;
        let tag = attrs::string(a, "tag")
            .unwrap_or_else(|| super::conf::hash_part(&out.to_string_lossy()));
        let image_name = attrs::string(a, "imageName").context("no imageName")?;
        let base_json = attrs::string(a, "baseJson").context("no baseJson")?;
        let base_json: Value = serde_json::from_slice(
            &std::fs::read(&base_json).with_context(|| format!("{base_json}: cannot read"))?,
        )
        .with_context(|| format!("{base_json}: not JSON"))?;
        let compressor = match attrs::string(a, "compressor").as_deref() {
            Some("none") => Compressor::None,
            Some("zstd") => Compressor::Zstd,
            _ => Compressor::Gz,
        };
        Ok(Step {
            out,
            mtime,
            layer,
            from_image: attrs::string(a, "fromImage").map(PathBuf::from),
            graph,
            tag,
            image_name,
            base_json,
            compressor,
        })
    }
}

fn key_of(name: &[u8]) -> Key {
    reader::components(name)
}

/// `realpath -ms --relative-to=.` of each member, with a leading `/`, `.` left out.
fn ls_tar(members: &[Member]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for m in members {
        let mut parts: Vec<&[u8]> = Vec::new();
        for p in m.info.name.split(|&b| b == b'/') {
            match p {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        if !parts.is_empty() {
            let mut path = b"/".to_vec();
            path.extend(parts.join(&b'/'));
            out.push(path);
        }
    }
    out
}

fn load_base(path: &Path) -> Result<Base> {
    read_base(path).with_context(|| format!("base image {}", path.display()))
}

fn read_base(path: &Path) -> Result<Base> {
    let archive = Archive::open(path)?;
    let entry = archive.entry(None)?;
    let env = archive.config(&entry)?.container["Env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // nixpkgs' image step never sees fromImageName/fromImageTag (only fromImage and
    // baseJson reach it), so the parent is always the first image's config id.
    let config_name = &entry.config;
    let parent = config_name
        .strip_suffix(".json")
        .unwrap_or(config_name)
        .to_string();
    let (files, paths) = base_files(&archive)?;
    for l in &entry.layers {
        if files
            .get(&key_of(l.as_bytes()))
            .is_none_or(|f: &Item| f.kind != kind::REG)
        {
            bail!("no layer {}", reader::shown(l.as_bytes()));
        }
    }
    Ok(Base {
        files,
        layers: entry.layers,
        env,
        parent,
        paths,
        _archive: archive,
    })
}

/// The base's files as `tar -xp` leaves them (metadata files left out), and every path
/// of its layers.
fn base_files(archive: &Archive) -> Result<(Tree, BTreeSet<Vec<u8>>)> {
    let mut files = Tree::default();
    let mut paths = BTreeSet::new();
    for m in archive.members() {
        let key = key_of(&m.info.name);
        if key.is_empty()
            || (key.len() == 1 && (key[0].ends_with(b".json") || key[0] == b"repositories"))
        {
            continue;
        }
        let item = base_item(m, archive.file())?;
        if key.len() == 2 && key[1] == b"layer.tar" {
            paths.extend(ls_tar(&layer_members(archive, m)?));
        }
        files.insert_with_parents(key, item, &owned_dir(0o755));
    }
    Ok((files, paths))
}

/// The members of a base layer (`*/layer.tar`, or the member a symlink of skopeo's
/// layout points to), errors naming it.
fn layer_members(archive: &Archive, m: &Member) -> Result<Vec<Member>> {
    let in_member = || format!("member {}", reader::shown(&m.info.name));
    let name = String::from_utf8_lossy(&m.info.name).into_owned();
    let t = archive.layer_member(&name).with_context(in_member)?;
    reader::list_range(archive.file(), t.data_offset, t.info.size).with_context(in_member)
}

fn owned_dir(mode: u32) -> Item {
    Item::root_owned(kind::DIR, mode)
}

fn base_item(m: &Member, file: &Path) -> Result<Item> {
    let item = Item::of_member(m, file).owned_by_root();
    Ok(match m.info.kind {
        kind::DIR | kind::REG | 0 => item,
        kind::SYMLINK => Item {
            mode: 0o777,
            ..item
        },
        other => bail!(
            "member {} has unsupported type {:?}",
            reader::shown(&m.info.name),
            other as char
        ),
    })
}

/// `chmod -R ug+rw` then `chmod -R a-w`, as nixpkgs leaves the image directory.
fn read_only(mode: u32) -> u32 {
    (mode | 0o660) & !0o222
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    layer: &Path,
    base: Option<&Base>,
    graph: &Graph,
    base_json: &Value,
    name: &str,
    tag: &str,
    mtime: i64,
    work: &Path,
) -> Result<PathBuf> {
    let layer_str = layer.to_string_lossy().into_owned();
    let pure = layer.join("layer.tar");
    let mut known: BTreeSet<Vec<u8>> = base.map(|b| b.paths.clone()).unwrap_or_default();
    let pure_members = reader::list(&pure).with_context(|| format!("{}", pure.display()))?;
    known.extend(ls_tar(&pure_members));
    let mut layer_files: BTreeSet<Vec<u8>> = BTreeSet::new();
    for node in &graph.nodes {
        collect_paths(Path::new(&node.path), &mut layer_files)?;
    }
    layer_files.retain(|p| !String::from_utf8_lossy(p).contains(&layer_str));
    let nix_dirs = work.join("nix");
    if graph.len() > 1 && !known.contains(&b"/nix/store"[..]) {
        std::fs::create_dir_all(nix_dirs.join("store"))?;
        for d in [nix_dirs.join("store"), nix_dirs.clone()] {
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o555))?;
        }
        layer_files.insert(b"./nix".to_vec());
        layer_files.insert(b"./nix/store".to_vec());
    }
    let new_files: Vec<Vec<u8>> = layer_files
        .into_iter()
        .filter(|p| !known.contains(p))
        .collect();
    let opts = GnuOptions {
        mtime,
        owner: Some(0),
        group: Some(0),
        names: true,
        ..GnuOptions::default()
    };
    let mut appended = Vec::new();
    for p in &new_files {
        let text = String::from_utf8_lossy(p).into_owned();
        let (fs_path, mut member) = match text.strip_prefix("./") {
            Some(rel) => (work.join(rel), p.clone()),
            None => (PathBuf::from(&text), p[1..].to_vec()),
        };
        if std::fs::symlink_metadata(&fs_path)?.is_dir() {
            member.push(b'/');
        }
        appended.extend(gnu::item_for_path(&fs_path, member, &opts)?);
    }
    let layer_tar = work.join("layer.tar");
    let new_layer_sha = {
        // The bytes are hashed as they are written: the diff_id needs no second read.
        let start = reader::data_end(&pure).with_context(|| format!("{}", pure.display()))?;
        let file = std::io::BufWriter::new(std::fs::File::create(&layer_tar)?);
        let mut out = crate::image::hashing::HashingWriter::new(file);
        std::io::copy(
            &mut std::io::Read::take(std::fs::File::open(&pure)?, start),
            &mut out,
        )?;
        gnu::append_items(&appended, mtime, false, &mut out, None, start)?;
        // tar -r does not shorten the file it appends to.
        let original = std::fs::metadata(&pure)?.len();
        let missing = original.saturating_sub(out.count);
        crate::tar::io::write_zeros(&mut out, missing)?;
        let (digest, mut file) = out.finish();
        file.flush()?;
        digest
    };
    let json_file = layer.join("json");
    let in_json_file = || format!("{}", json_file.display());
    let mut json: Map<String, Value> =
        serde_json::from_slice(&std::fs::read(&json_file).with_context(in_json_file)?)
            .with_context(in_json_file)?;
    if let Some(b) = base.filter(|b| !b.parent.is_empty()) {
        json.insert("parent".into(), json!(b.parent));
    }
    let layer_id = sha256_hex(
        jsonfmt::jshon(&Value::Object(json.clone()))
            .with_context(in_json_file)?
            .as_bytes(),
    );
    json.insert("id".into(), json!(layer_id));
    json.insert("Size".into(), json!(std::fs::metadata(&layer_tar)?.len()));
    let mut files = base.map(|b| b.files.clone()).unwrap_or_default();
    for (_, item) in files.iter_mut() {
        if item.kind != kind::SYMLINK {
            item.mode = read_only(item.mode);
        }
    }
    let layer_dir = layer_id.as_bytes().to_vec();
    let json_path = work.join("json");
    std::fs::write(&json_path, jsonfmt::jshon(&Value::Object(json))?)?;
    let version = work.join("VERSION");
    std::fs::write(&version, "1.0")?;
    for (name, path) in [
        (&b"layer.tar"[..], &layer_tar),
        (b"json", &json_path),
        (b"VERSION", &version),
    ] {
        add_file(&mut files, vec![layer_dir.clone(), name.to_vec()], path)?;
    }
    let mut layers: Vec<String> = base.map(|b| b.layers.clone()).unwrap_or_default();
    layers.push(format!("{layer_id}/layer.tar"));
    let mut diff_ids = Vec::new();
    for l in &layers[..layers.len() - 1] {
        let item = files
            .get(&key_of(l.as_bytes()))
            .with_context(|| format!("layer {l} is not in the image"))?;
        diff_ids.push(json!(format!("sha256:{}", item_sha256(item)?)));
    }
    diff_ids.push(json!(format!("sha256:{new_layer_sha}")));
    let image_json = image_config(
        base_json,
        base.map(|b| b.env.clone()).unwrap_or_default(),
        diff_ids,
    );
    let config_name = format!("{}.json", sha256_hex(image_json.as_bytes()));
    let manifest = jsonfmt::jq(
        &json!([{"RepoTags": [format!("{name}:{tag}")], "Layers": layers, "Config": config_name}]),
    );
    let repositories = jsonfmt::jshon(&json!({ name: { tag: layer_id } }))?;
    for (file, text) in [
        (config_name.as_str(), &image_json),
        ("manifest.json", &manifest),
        ("repositories", &repositories),
    ] {
        let path = work.join(format!("top-{file}"));
        std::fs::write(&path, text)?;
        add_file(&mut files, vec![file.as_bytes().to_vec()], &path)?;
    }
    files.insert(vec![layer_dir], owned_dir(0o555));
    let items = files.into_items(owned_dir(0o555), b"");
    let image = work.join("image.tar");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&image)?);
    gnu::write_items(&items, mtime, &mut out)?;
    out.flush()?;
    Ok(image)
}

/// A read-only (0444) regular file of the image, root's.
fn add_file(files: &mut Tree, key: Key, path: &Path) -> Result<()> {
    let size = std::fs::metadata(path)?.len();
    files.insert(
        key,
        Item {
            kind: kind::REG,
            mode: 0o444,
            size,
            content: Content::File(path.to_path_buf()),
            ..owned_dir(0)
        },
    );
    Ok(())
}

fn item_sha256(item: &Item) -> Result<String> {
    let mut buf = vec![0u8; 1 << 20];
    let mut w = crate::image::hashing::HashingWriter::new(std::io::sink());
    match &item.content {
        Content::File(p) => {
            crate::tar::io::copy_file(p, item.size, &mut w, &mut buf)?;
        }
        Content::Range(p, off) => crate::tar::io::copy_range(p, *off, item.size, &mut w, &mut buf)?,
        Content::None => {}
    }
    Ok(w.finish().0)
}

/// The image JSON: base json, `.config.Env = $baseEnv + .config.Env`, rootfs, history.
fn image_config(base_json: &Value, base_env: Vec<Value>, diff_ids: Vec<Value>) -> String {
    let mut doc = base_json.as_object().cloned().unwrap_or_default();
    let mut config = match doc.get("config") {
        Some(Value::Object(c)) => c.clone(),
        _ => Map::new(),
    };
    let own = config
        .get("Env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    config.insert(
        "Env".into(),
        Value::Array(base_env.into_iter().chain(own).collect()),
    );
    doc.insert("config".into(), Value::Object(config));
    let created = doc.get("created").cloned().unwrap_or(Value::Null);
    let history: Vec<Value> = diff_ids
        .iter()
        .map(|_| json!({ "created": created }))
        .collect();
    doc.insert(
        "rootfs".into(),
        json!({"diff_ids": diff_ids, "type": "layers"}),
    );
    doc.insert("history".into(), Value::Array(history));
    jsonfmt::jq(&Value::Object(doc))
}

/// `find PATH`: the path and everything below it (symlinks not followed).
fn collect_paths(path: &Path, out: &mut BTreeSet<Vec<u8>>) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    out.insert(path.as_os_str().as_bytes().to_vec());
    if std::fs::symlink_metadata(path)
        .with_context(|| format!("{}: cannot stat", path.display()))?
        .is_dir()
    {
        for e in std::fs::read_dir(path)? {
            collect_paths(&e?.path(), out)?;
        }
    }
    Ok(())
}
