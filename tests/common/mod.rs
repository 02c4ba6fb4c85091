//! Shared helpers for the integration tests: the stevedore binary, Nix-built fixtures,
//! and real external tools.
#![allow(dead_code)]

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
