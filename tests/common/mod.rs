//! Shared helpers for the integration tests: the stevedore binary, Nix-built fixtures,
//! and real external tools.
#![allow(dead_code)]

pub mod containerd;
pub mod registry;
pub mod serve;

use std::os::unix::process::CommandExt;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command running the stevedore binary under test.
pub fn stevedore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
}

/// Runs `cmd`, panicking with its stderr unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` and returns its stdout as text.
pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("utf-8 output")
}

/// Options for every nix-build of the tests: no binary cache (there is no network), and
/// the sandbox with the host tools the fixtures use. Builds run sandboxed as nixpkgs'
/// do; unsandboxed, Nix 2.8 sometimes kills very short builders (NixOS/nix#2176).
pub const NIX_OPTIONS: [&str; 9] = [
    "--option",
    "substituters",
    "",
    "--option",
    "sandbox",
    "true",
    "--option",
    "extra-sandbox-paths",
    "/usr /lib /lib64 /bin",
];

/// The store path of a fixture attribute of tests/nix/fixtures.nix, built with nix-build.
pub fn fixture(attr: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let cache = BUILT.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(attr) {
        return p.clone();
    }
    let file = root().join("tests/nix/fixtures.nix");
    let path = stdout(Command::new("nix-build").arg(&file).args([
        "-A",
        attr,
        "--no-out-link",
        "--option",
        "substituters",
        "",
    ]));
    let path = PathBuf::from(path.trim());
    cache.insert(attr.to_string(), path.clone());
    path
}

/// sha256 of a file, by the real `sha256sum`.
pub fn sha256sum(path: &Path) -> String {
    let out = stdout(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().expect("digest").to_string()
}

/// One member of a tar file, extracted by GNU tar.
pub fn tar_member(archive: &Path, member: &str) -> Vec<u8> {
    run(Command::new("tar").arg("-xOf").arg(archive).arg(member)).stdout
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Parses a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read json")).expect("parse json")
}

/// Writes the golden conf `case` (tests/data/stream) into `dir`, building the fixtures
/// it names first; `@default` as from_image becomes stevedore's archive of `default`.
pub fn golden_conf(case: &str, dir: &Path) -> PathBuf {
    fixture("graph");
    fixture("custom");
    let mut conf = read_json(&root().join(format!("tests/data/stream/{case}.conf.json")));
    if conf["from_image"] == "@default" {
        let base = dir.join("default-base.tar");
        if !base.exists() {
            let base_conf = golden_conf("default", dir);
            run(stevedore()
                .arg("build-layered")
                .arg(&base_conf)
                .arg("-o")
                .arg(&base));
        }
        conf["from_image"] = serde_json::json!(base);
    }
    let path = dir.join(format!("{case}.conf.json"));
    std::fs::write(&path, conf.to_string()).unwrap();
    path
}

/// The golden expectations for `case`.
pub fn expected(case: &str) -> serde_json::Value {
    read_json(&root().join("tests/data/stream/expected.json"))[case].clone()
}

/// Writes the archive of `conf` with `stevedore stream-layered` to `out`.
pub fn stream_to(conf: &Path, out: &Path) {
    let bytes = run(stevedore().arg("stream-layered").arg(conf)).stdout;
    std::fs::write(out, bytes).unwrap();
}

/// Unpacks a docker archive into `dir/bundle/rootfs` with skopeo and umoci.
pub fn unpack(archive: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let oci = dir.join("oci");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("oci:{}:test", oci.display())));
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:test", oci.display()))
        .arg(&bundle));
    bundle.join("rootfs")
}

use serde_json::Value;

/// The docker archive's manifest.json.
pub fn manifest(tar: &Path) -> Value {
    serde_json::from_slice(&tar_member(tar, "manifest.json")).unwrap()
}

/// The image config of a docker archive.
pub fn config(tar: &Path) -> Value {
    let name = manifest(tar)[0]["Config"].as_str().unwrap().to_string();
    serde_json::from_slice(&tar_member(tar, &name)).unwrap()
}

/// Runs the image's command in its unpacked rootfs, as `docker run` would; returns stdout.
pub fn run_image(tar: &Path, dir: &Path) -> String {
    let rootfs = unpack(tar, dir);
    let c = &config(tar)["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let argv: Vec<String> = strings(&c["Entrypoint"])
        .into_iter()
        .chain(strings(&c["Cmd"]))
        .collect();
    let env = strings(&c["Env"]);
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .to_string();
    let program = if argv[0].contains('/') {
        argv[0].clone()
    } else {
        path.split(':')
            .map(|d| format!("{d}/{}", argv[0]))
            .find(|p| rootfs.join(&p[1..]).exists())
            .expect("command on PATH")
    };
    let (uid, gid) = match c["User"].as_str().unwrap_or("") {
        "" => (0, 0),
        user => {
            let (u, g) = user.split_once(':').unwrap_or((user, user));
            (u.parse::<u32>().unwrap(), g.parse::<u32>().unwrap())
        }
    };
    let workdir = c["WorkingDir"]
        .as_str()
        .filter(|w| !w.is_empty())
        .unwrap_or("/")
        .to_string();
    let mut cmd = Command::new(&program);
    cmd.args(&argv[1..]).env_clear();
    for e in &env {
        let (k, v) = e.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let root_c = std::ffi::CString::new(rootfs.to_str().unwrap()).unwrap();
    let work_c = std::ffi::CString::new(workdir).unwrap();
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: i32| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::chroot(root_c.as_ptr()))?;
            check(libc::chdir(work_c.as_ptr()))?;
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))
        });
    }
    stdout(&mut cmd)
}

/// Asserts that `copy` mirrors `original`: the same names, kinds, permissions, owners,
/// bytes and link targets, all the way down.
pub fn assert_same_tree(original: &Path, copy: &Path) {
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::symlink_metadata(original).unwrap();
    let b =
        std::fs::symlink_metadata(copy).unwrap_or_else(|_| panic!("{} missing", copy.display()));
    assert_eq!(a.file_type(), b.file_type(), "{}", copy.display());
    assert_eq!((a.uid(), a.gid()), (b.uid(), b.gid()), "{}", copy.display());
    assert_eq!(a.mode() & 0o7777, b.mode() & 0o7777, "{}", copy.display());
    if a.file_type().is_symlink() {
        assert_eq!(
            std::fs::read_link(original).unwrap(),
            std::fs::read_link(copy).unwrap()
        );
    } else if a.is_file() {
        assert!(
            std::fs::read(original).unwrap() == std::fs::read(copy).unwrap(),
            "{}",
            copy.display()
        );
    } else if a.is_dir() {
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(original), names(copy), "{}", copy.display());
        for name in names(original) {
            assert_same_tree(&original.join(&name), &copy.join(&name));
        }
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Runs `stevedore copy SOURCE DEST EXTRA...`, panicking unless it succeeds.
pub fn copy_image(source: &str, dest: &str, extra: &[&str]) {
    run(stevedore().args(["copy", source, dest]).args(extra));
}

/// `TRANSPORT:PATH` or `TRANSPORT:PATH:NAME`, as skopeo and `stevedore copy` take them.
pub fn transport(kind: &str, path: &Path, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{kind}:{}:{n}", path.display()),
        None => format!("{kind}:{}", path.display()),
    }
}

/// The path of the blob `digest` (`sha256:…`) in the OCI layout `dir`.
pub fn oci_blob(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    dir.join("blobs/sha256").join(hex)
}

/// The index entry of the image named `tag` (or the only one) in the OCI layout `dir`.
pub fn oci_entry(dir: &Path, tag: Option<&str>) -> Value {
    let index = read_json(&dir.join("index.json"));
    let entries = index["manifests"].as_array().expect("index manifests");
    match tag {
        Some(t) => entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == t)
            .unwrap_or_else(|| panic!("no image {t} in {}", dir.display()))
            .clone(),
        None => {
            assert_eq!(entries.len(), 1, "{}", dir.display());
            entries[0].clone()
        }
    }
}

/// The manifest of the image named `tag` (or the only one) in the OCI layout `dir`.
pub fn oci_manifest(dir: &Path, tag: Option<&str>) -> Value {
    let entry = oci_entry(dir, tag);
    read_json(&oci_blob(dir, entry["digest"].as_str().unwrap()))
}

/// The digests (`sha256:…`) of the layer blobs of an OCI manifest.
pub fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("manifest layers")
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Writes an OCI layout at `dir` holding one image of uncompressed `layers` (amd64,
/// linux, an empty container config), named `tag` if given.
pub fn write_plain_layout(dir: &Path, layers: &[&[u8]], tag: Option<&str>) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |media_type: &str, bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob("application/vnd.oci.image.config.v1+json", config.to_string().as_bytes()),
        "layers": layers
            .iter()
            .map(|l| blob("application/vnd.oci.image.layer.v1.tar", l))
            .collect::<Vec<_>>(),
    });
    let mut entry = blob(
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    if let Some(t) = tag {
        entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": t});
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// `len` pseudo-random (incompressible) bytes from `seed` (splitmix64): the same on every
/// machine.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A ustar archive of one regular file `name` holding `data` (mode 0644, owner 0:0,
/// mtime 0), ended by two zero blocks: the same bytes on every machine.
pub fn one_file_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut put = |at: usize, field: &[u8]| header[at..at + field.len()].copy_from_slice(field);
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", data.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    put(265, b"root");
    put(297, b"root");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    tar
}
