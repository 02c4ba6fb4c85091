//! Real inputs for the fuzzing harness, made once per test process under
//! `target/fuzz-work/seeds` (a fixed place, so the same case seed mutates the same
//! bytes on every run): a fake store, docker archives written by `stevedore
//! build-layered` (plain, chained, gzip, zstd) and one assembled from GNU tar layers
//! (long names, PAX records, whiteouts), layer tars, confs, an `exportReferencesGraph`
//! graph, base json, and the structured attributes of the Nix steps.

use super::stevedore;
use serde_json::{json, Value};
use sha2::Digest;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every seed input, by what it is.
pub struct Seeds {
    pub dir: PathBuf,
    pub store_dir: String,
    pub paths: Vec<String>,
    /// The customisation layer directory (`layer.tar`, `checksum`).
    pub custom: PathBuf,
    /// A streamLayeredImage conf without, and one with, a base image.
    pub conf: PathBuf,
    pub conf_from: PathBuf,
    /// Docker archives: build-layered of `conf`, of `conf_from` (two images' layers),
    /// the first compressed with gzip and zstd, and one made of GNU tar layers.
    pub archive: PathBuf,
    pub chained: PathBuf,
    pub gz: PathBuf,
    pub zst: PathBuf,
    pub gnu_archive: PathBuf,
    /// Layer tars: GNU, PAX, ustar and v7 formats, and the customisation layer.
    pub layer_tars: Vec<PathBuf>,
    /// The closure graph of `paths`, as a list and inside an `.attrs.json`-like object,
    /// and a larger one of `/nix/store` paths.
    pub graph: PathBuf,
    pub graph_attrs: PathBuf,
    pub nix_graph: PathBuf,
    pub base_json: PathBuf,
    /// A directory to archive with `image-layer`, and its `image-layer` output.
    pub content: PathBuf,
    pub image_layer: PathBuf,
}

/// The seeds, made on first use.
pub fn get() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| make(&work_dir().join("seeds")))
}

/// `target/fuzz-work`.
pub fn work_dir() -> PathBuf {
    target_dir().join("fuzz-work")
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

fn make(dir: &Path) -> Seeds {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let store = dir.join("store");
    let store_dir = store.to_str().unwrap().to_string();
    let paths = fake_store(&store);
    let custom = customisation_layer(dir);
    let layers: Vec<Vec<String>> = vec![paths[..2].to_vec(), paths[2..].to_vec()];
    let conf = write_json(
        &dir.join("conf.json"),
        &conf_of(&store_dir, &layers, &custom, None),
    );
    let archive = build_layered(&conf, &dir.join("image.tar"), "none");
    let from = conf_of(&store_dir, &layers[1..], &custom, Some(&archive));
    let conf_from = write_json(&dir.join("conf-from.json"), &from);
    let chained = build_layered(&conf_from, &dir.join("chained.tar"), "none");
    let gz = build_layered(&conf, &dir.join("image.tar.gz"), "gz");
    let zst = build_layered(&conf, &dir.join("image.tar.zst"), "zstd");
    let layer_tars = gnu_layers(dir, &custom);
    let gnu_archive = assemble(dir, &layer_tars[..3]);
    let graph_nodes = graph(&paths);
    let graph = write_json(&dir.join("graph.json"), &graph_nodes);
    let graph_attrs = write_json(
        &dir.join("graph-attrs.json"),
        &json!({"graph": graph_nodes, "other": [1, 2], "outputs": {"out": "/x"}}),
    );
    let nix_graph = write_json(&dir.join("nix-graph.json"), &nix_graph(40));
    let base_json = write_json(&dir.join("base.json"), &base_json());
    let (content, image_layer) = image_layer(dir, &base_json);
    Seeds {
        dir: dir.to_path_buf(),
        store_dir,
        paths,
        custom,
        conf,
        conf_from,
        archive,
        chained,
        gz,
        zst,
        gnu_archive,
        layer_tars,
        graph,
        graph_attrs,
        nix_graph,
        base_json,
        content,
        image_layer,
    }
}

impl Seeds {
    /// The structured attributes of the conf step (nix-conf), output `out`.
    pub fn conf_attrs(&self, out: &Path, from_image: Option<&Path>) -> Value {
        json!({
            "outputs": {"out": out},
            "graph": serde_json::from_slice::<Value>(&std::fs::read(&self.graph).unwrap()).unwrap(),
            "storeDir": self.store_dir,
            "fromImage": from_image,
            "baseJson": self.base_json,
            "imageName": "fuzz",
            "tag": "seed",
            "created": "1970-01-01T00:00:01Z",
            "mtime": "1970-01-01T00:00:01Z",
            "uid": 0,
            "gid": 0,
            "uname": "root",
            "gname": "root",
            "customisationLayer": self.custom,
            "maxLayers": 10,
            "excludePaths": [],
            "debug": false,
        })
    }

    /// The structured attributes of buildImage's image step (nix-build-image).
    pub fn build_attrs(&self, out: &Path, from_image: Option<&Path>) -> Value {
        let closure: Value = serde_json::from_slice(&std::fs::read(&self.graph).unwrap()).unwrap();
        json!({
            "outputs": {"out": out},
            "layer": self.image_layer,
            "closure": closure,
            "storeDir": self.store_dir,
            "fromImage": from_image,
            "baseJson": self.base_json,
            "imageName": "fuzz",
            "tag": "seed",
            "compressor": "none",
        })
    }

    /// A conf whose base image is `from_image`.
    pub fn conf_with_base(&self, from_image: &Path) -> Value {
        let layers = vec![self.paths[2..].to_vec()];
        conf_of(&self.store_dir, &layers, &self.custom, Some(from_image))
    }

    /// Every docker archive seed, compressed ones last.
    pub fn archives(&self) -> Vec<&Path> {
        vec![
            &self.archive,
            &self.chained,
            &self.gnu_archive,
            &self.gz,
            &self.zst,
        ]
    }
}

/// A directory to archive and its `image-layer` output.
fn image_layer(dir: &Path, base_json: &Path) -> (PathBuf, PathBuf) {
    let content = dir.join("content");
    contents(&content);
    let out = dir.join("image-layer");
    run(stevedore()
        .arg("image-layer")
        .arg(&content)
        .arg("-o")
        .arg(&out)
        .arg("--base-json")
        .arg(base_json));
    (content, out)
}

/// Runs `cmd`, panicking unless it succeeds.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn write_json(path: &Path, value: &Value) -> PathBuf {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path.to_path_buf()
}

fn build_layered(conf: &Path, out: &Path, compressor: &str) -> PathBuf {
    run(stevedore()
        .arg("build-layered")
        .arg(conf)
        .args(["--compressor", compressor, "-o"])
        .arg(out));
    out.to_path_buf()
}

/// A store path name in `store` (a valid nixbase32 hash part).
fn store_path(store: &Path, n: u8, name: &str) -> PathBuf {
    let digest = sha2::Sha256::digest([n]);
    let hash = stevedore::store::nixbase32::encode(&digest[..20]);
    store.join(format!("{hash}-{name}"))
}

/// Four store paths: files, symlinks, directories, a long and a non-ASCII name.
fn fake_store(store: &Path) -> Vec<String> {
    let app = store_path(store, 1, "app-1.0");
    std::fs::create_dir_all(app.join("bin")).unwrap();
    std::fs::write(app.join("bin/app"), "#!/bin/sh\necho hello\n").unwrap();
    symlink("app", app.join("bin/hi")).unwrap();
    let long = app.join("share").join("d".repeat(90)).join("n".repeat(80));
    std::fs::create_dir_all(&long).unwrap();
    std::fs::write(long.join("f".repeat(60)), "deep").unwrap();
    std::fs::write(app.join("share/é-ünïcode.txt"), "x").unwrap();
    let lib = store_path(store, 2, "lib-2.0");
    std::fs::create_dir_all(lib.join("lib/empty")).unwrap();
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(lib.join("lib/libfoo.so"), &bytes).unwrap();
    symlink("libfoo.so", lib.join("lib/libfoo.so.1")).unwrap();
    symlink("t".repeat(150), lib.join("lib/long-link")).unwrap();
    let big = store_path(store, 3, "big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("blob"), vec![b'b'; 30_000]).unwrap();
    let link = store_path(store, 4, "link");
    symlink(&app, &link).unwrap();
    [app, lib, big, link]
        .iter()
        .map(|p| p.to_str().unwrap().to_string())
        .collect()
}

/// The customisation layer of a small tree (GNU long names and links in it).
fn customisation_layer(dir: &Path) -> PathBuf {
    let tree = dir.join("custom-tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(tree.join("l".repeat(120)), "long").unwrap();
    symlink("k".repeat(130), tree.join("kk")).unwrap();
    let out = dir.join("custom");
    run(stevedore()
        .arg("customisation-layer")
        .arg(&tree)
        .arg("-o")
        .arg(&out));
    out
}

fn conf_of(store_dir: &str, layers: &[Vec<String>], custom: &Path, base: Option<&Path>) -> Value {
    json!({
        "architecture": "amd64",
        "config": {
            "Cmd": ["/bin/app"],
            "Env": ["PATH=/bin", "LAST_LAYER=seed"],
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"org.example/x": "y"},
            "Memory": 1073741824,
            "CpuShares": 512
        },
        "os": "linux",
        "variant": "",
        "store_dir": store_dir,
        "from_image": base,
        "customisation_layer": custom,
        "repo_tag": "fuzz:seed",
        "created": "1970-01-01T00:00:01+00:00",
        "mtime": "1970-01-01T00:00:01+00:00",
        "uid": "0",
        "gid": "0",
        "uname": "root",
        "gname": "root",
        "store_layers": layers,
    })
}

/// A tree for GNU tar layers: long names, a long link, a hard link, a FIFO, whiteouts.
fn contents(dir: &Path) {
    std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
    std::fs::write(dir.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
    let deep = dir.join("p".repeat(99)).join("q".repeat(99));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("r".repeat(99)), "deep file").unwrap();
    symlink("z".repeat(120), dir.join("long-target")).unwrap();
    std::fs::hard_link(dir.join("usr/bin/tool"), dir.join("usr/bin/tool2")).unwrap();
    std::fs::write(dir.join("ünï"), "u").unwrap();
}

/// Layer tars written by GNU tar in four formats, then the customisation layer.
fn gnu_layers(dir: &Path, custom: &Path) -> Vec<PathBuf> {
    let tree = dir.join("layer-tree");
    contents(&tree);
    let upper = dir.join("layer-upper");
    std::fs::create_dir_all(upper.join("usr")).unwrap();
    std::fs::write(upper.join("usr/.wh..wh..opq"), "").unwrap();
    std::fs::write(upper.join(".wh.ünï"), "").unwrap();
    std::fs::write(upper.join("usr/new"), "new").unwrap();
    let mut out: Vec<PathBuf> = [
        ("gnu", &tree, "gnu"),
        ("pax", &tree, "pax"),
        ("upper", &upper, "ustar"),
        ("v7", &upper, "v7"),
    ]
    .into_iter()
    .filter_map(|(name, src, format)| gnu_tar(src, format, &dir.join(format!("layer-{name}.tar"))))
    .collect();
    out.push(custom.join("layer.tar"));
    out
}

/// GNU tar's archive of `src` in `format` at `tar`, if it wrote one (ustar and v7 cannot
/// hold every name; whatever tar wrote is a seed).
fn gnu_tar(src: &Path, format: &str, tar: &Path) -> Option<PathBuf> {
    let mut cmd = Command::new("tar");
    cmd.args([
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mtime=@1",
        "--format",
        format,
    ]);
    if format == "pax" {
        cmd.arg("--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime");
    }
    let ok = cmd
        .arg("-cf")
        .arg(tar)
        .arg("-C")
        .arg(src)
        .arg(".")
        .status()
        .unwrap();
    (ok.success() || tar.exists()).then(|| tar.to_path_buf())
}

/// A docker archive of `layers` put together by hand and archived by GNU tar in PAX
/// format (one layer directory has a name over 100 bytes).
fn assemble(dir: &Path, layers: &[PathBuf]) -> PathBuf {
    let root = dir.join("assembled");
    let (names, diff_ids) = layer_dirs(&root, layers);
    let config_name = image_files(&root, &names, &diff_ids);
    let out = dir.join("assembled.tar");
    let mut cmd = Command::new("tar");
    cmd.args([
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mtime=@1",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "--format=pax",
        "-cf",
    ])
    .arg(&out)
    .arg("-C")
    .arg(&root)
    .arg("manifest.json")
    .arg(&config_name);
    for n in &names {
        cmd.arg(n.trim_end_matches("/layer.tar"));
    }
    run(&mut cmd);
    out
}

/// Each layer as `<dir>/layer.tar` under `root` (the first directory's name over 100
/// bytes); their member names and diff_ids.
fn layer_dirs(root: &Path, layers: &[PathBuf]) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let bytes = std::fs::read(layer).unwrap();
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        let sub = if i == 0 {
            "x".repeat(110)
        } else {
            digest.clone()
        };
        std::fs::create_dir_all(root.join(&sub)).unwrap();
        std::fs::write(root.join(&sub).join("layer.tar"), &bytes).unwrap();
        names.push(format!("{sub}/layer.tar"));
        diff_ids.push(format!("sha256:{digest}"));
    }
    (names, diff_ids)
}

/// The image config and `manifest.json` under `root`; the config's name.
fn image_files(root: &Path, names: &[String], diff_ids: &[String]) -> String {
    let config = json!({
        "architecture": "amd64",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/usr/bin/tool"]},
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    });
    let config_text = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", hex::encode(sha2::Sha256::digest(&config_text)));
    std::fs::write(root.join(&config_name), &config_text).unwrap();
    let manifest = json!([{"Config": config_name, "RepoTags": ["gnu:seed"], "Layers": names}]);
    std::fs::write(root.join("manifest.json"), manifest.to_string()).unwrap();
    config_name
}

/// The closure graph of the fake store, shaped as Nix's `exportReferencesGraph`.
fn graph(paths: &[String]) -> Value {
    let refs: [&[usize]; 4] = [&[0, 1], &[1], &[], &[0, 2]];
    let nodes: Vec<Value> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let digest = sha2::Sha256::digest(p.as_bytes());
            json!({
                "closureSize": 1000 * (i + 1),
                "narHash": format!("sha256:{}", stevedore::store::nixbase32::encode(&digest)),
                "narSize": 100 * (i + 1) + 24,
                "path": p,
                "references": refs[i].iter().map(|&r| paths[r].clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Value::Array(nodes)
}

/// A closure of `n` `/nix/store` paths: each refers to a few later ones (and some to
/// themselves), sizes spread out, as `exportReferencesGraph` writes it.
fn nix_graph(n: usize) -> Value {
    let path = |i: usize| {
        let digest = sha2::Sha256::digest(i.to_le_bytes());
        let hash = stevedore::store::nixbase32::encode(&digest[..20]);
        format!("/nix/store/{hash}-pkg-{i}")
    };
    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            let mut refs: Vec<String> = [i + 1, i + 3, 2 * i + 1, n - 1]
                .into_iter()
                .filter(|&j| j > i && j < n)
                .map(path)
                .collect();
            if i % 4 == 0 {
                refs.push(path(i));
            }
            let digest = sha2::Sha256::digest(path(i).as_bytes());
            json!({
                "closureSize": 1_000_000 - i * 1000,
                "narHash": format!("sha256:{}", stevedore::store::nixbase32::encode(&digest)),
                "narSize": (i * 7919) % 100_000 + 128,
                "path": path(i),
                "references": refs,
            })
        })
        .collect();
    Value::Array(nodes)
}

/// A buildImage base json, numbers included.
fn base_json() -> Value {
    json!({
        "created": "1970-01-01T00:00:01Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin:/bin"],
            "Cmd": ["/bin/sh"],
            "Memory": 1073741824,
            "CpuShares": 512,
            "Cpu": 0.5,
            "Healthcheck": {"Interval": 30000000000i64, "Retries": 3}
        },
    })
}
