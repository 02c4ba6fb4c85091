//! nix/default.nix's registry side under real Nix (sandboxed builds, as the other tests
//! run them), against distribution registries on 127.0.0.1 that each test starts and
//! stops: `pullImage` (a fixed-output derivation run by `stevedore nix-pull-image`) with
//! the arguments `stevedore prefetch` prints, its frozen digest and archive hash
//! (tests/data/pull-image, see tests/data/README.md), a wrong pinned hash, picking one
//! platform of an index; `copyToRegistry` of a built image; `imageIndex` from
//! per-architecture images. `STEVEDORE_WRITE_GOLDEN=1` rewrites the goldens.

mod common;
use common::registry::*;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

/// One Nix command at a time: concurrent builds of shared inputs were seen killed.
static NIX: Mutex<()> = Mutex::new(());

/// The longest a nix-build or nix-instantiate of these tests may take.
const NIX_TIMEOUT: Duration = Duration::from_secs(300);

/// The final name and tag of the golden pull: no port in them, so the archive (and its
/// hash) is the same on every run.
const GOLDEN_NAME: &str = "stevedore/golden";
const GOLDEN_TAG: &str = "v1";

fn golden_path() -> PathBuf {
    root().join("tests/data/pull-image/expected.json")
}

/// A string unique to this run, for store path names: a fixed-output derivation whose
/// name and hash were built before is not built again, and these tests want the pull.
fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}-{}", std::process::id(), t.as_nanos())
}

/// Writes `dir/test.nix`: `body` (an attribute set) with `dockerTools` (tests/nix/tools.nix,
/// i.e. nix/default.nix with the binary under test), `busybox` and `system` in scope.
fn expression(dir: &Path, body: &str) -> PathBuf {
    let text = format!(
        "let\n  tools = import {}/tests/nix/tools.nix {{ stevedoreBin = \"{}\"; }};\n  \
         inherit (tools) dockerTools busybox;\n  system = builtins.currentSystem;\n  \
         mk = name: script: derivation {{ inherit name system; builder = \"/bin/sh\"; PATH = \"/usr/bin:/bin\"; args = [ \"-c\" script ]; }};\n\
         in\n{body}\n",
        root().display(),
        env!("CARGO_BIN_EXE_stevedore")
    );
    let path = dir.join("test.nix");
    std::fs::write(&path, text).unwrap();
    path
}

/// nix-build of `attrs` of `file` (sandboxed, no substituters), bounded; the output
/// whatever the status.
fn nix_build_output(file: &Path, attrs: &[&str]) -> Output {
    let _nix = NIX.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new("nix-build");
    cmd.arg(file).arg("--no-out-link").args(NIX_OPTIONS);
    for a in attrs {
        cmd.args(["-A", a]);
    }
    run_bounded(&mut cmd, NIX_TIMEOUT)
}

/// The outputs of `attrs` of `file`, in order; panics with Nix's log on failure.
fn nix_build(file: &Path, attrs: &[&str]) -> Vec<PathBuf> {
    let out = nix_build_output(file, attrs);
    assert_success(&out, &format!("nix-build {attrs:?}"));
    let paths: Vec<PathBuf> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(paths.len(), attrs.len(), "{paths:?}");
    paths
}

/// `attr` of `file`, evaluated strictly, as JSON.
fn nix_eval(file: &Path, attr: &str) -> Value {
    let _nix = NIX.lock().unwrap_or_else(|e| e.into_inner());
    let out = run_bounded(
        Command::new("nix-instantiate")
            .arg(file)
            .args(["--eval", "--strict", "--json", "-A", attr])
            .args(NIX_OPTIONS),
        NIX_TIMEOUT,
    );
    assert_success(&out, &format!("nix-instantiate --eval -A {attr}"));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `stevedore prefetch IMAGE EXTRA...`, parsed: `{ key = "value"; ... }`.
fn prefetch(image: &str, extra: &[&str]) -> HashMap<String, String> {
    let text = stdout(stevedore().arg("prefetch").arg(image).args(extra));
    let attrs: HashMap<String, String> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(" = ")?;
            let v = v.strip_suffix(';')?.strip_prefix('"')?.strip_suffix('"')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    for key in [
        "imageName",
        "imageDigest",
        "hash",
        "finalImageName",
        "finalImageTag",
    ] {
        assert!(attrs.contains_key(key), "no {key} in {text}");
    }
    attrs
}

/// A pullImage call: `imageName`, `imageDigest` and `args` (Nix attributes, each ending
/// in `;`).
fn pull_call(image_name: &str, digest: &str, args: &str) -> String {
    format!(
        "dockerTools.pullImage {{ imageName = \"{image_name}\"; imageDigest = \"{digest}\"; {args} }}"
    )
}

/// The (specified, got) hashes of Nix's hash-mismatch message.
fn mismatch(stderr: &str) -> (String, String) {
    let after = |key: &str| {
        let at = stderr
            .find(key)
            .unwrap_or_else(|| panic!("no {key:?} in {stderr}"));
        stderr[at + key.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    (after("specified:"), after("got:"))
}

/// The image config of a registry image, as stored (read with skopeo).
fn registry_config(src: &str, extra: &[&str]) -> Value {
    let out = run_skopeo(
        skopeo()
            .args(["inspect", "--config", "--tls-verify=false"])
            .args(extra)
            .arg(format!("docker://{src}")),
    );
    assert_success(&out, &format!("skopeo inspect --config docker://{src}"));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks that `tar` is a docker archive skopeo reads, holding one image tagged
/// `repo_tag` whose config bytes have the digest `config_digest`.
fn assert_archive(tar: &Path, repo_tag: &str, config_digest: &str) {
    let out = run_skopeo(
        skopeo()
            .args(["inspect", "--raw"])
            .arg(format!("docker-archive:{}", tar.display())),
    );
    assert_success(&out, "skopeo inspect docker-archive");
    let raw: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(raw["config"]["digest"], config_digest, "{}", tar.display());
    let m = manifest(tar);
    assert_eq!(m.as_array().unwrap().len(), 1);
    assert_eq!(m[0]["RepoTags"], json!([repo_tag]));
    let name = m[0]["Config"].as_str().unwrap();
    assert_eq!(
        format!("sha256:{}", sha256_hex(&tar_member(tar, name))),
        config_digest
    );
}

/// The goldens of tests/data/pull-image/expected.json.
fn goldens() -> Value {
    read_json(&golden_path())
}

/// Pushes the golden conf `default` (gzip layers) to `ADDR/test/golden:v1`.
fn push_golden(registry: &Registry, dir: &Path) -> String {
    let conf = golden_conf("default", dir);
    let dest = format!("{}/test/golden:v1", registry.addr());
    copy_image(conf.to_str().unwrap(), &format!("docker://{dest}"), &[]);
    dest
}

#[test]
fn pull_image_of_a_pushed_image_matches_the_goldens() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::plain();
    let addr = registry.addr().to_string();
    let dest = push_golden(&registry, dir.path());
    let pushed = registry_manifest(&dest, &[]);
    let config_digest = pushed["config"]["digest"].as_str().unwrap().to_string();

    let p = prefetch(&dest, &[]);
    let digest = p["imageDigest"].clone();
    assert_eq!(p["imageName"], format!("{addr}/test/golden"));
    assert_eq!(p["finalImageName"], p["imageName"]);
    assert_eq!(p["finalImageTag"], "v1");

    if std::env::var_os("STEVEDORE_WRITE_GOLDEN").is_some() {
        // The hash of the archive named GOLDEN_NAME:GOLDEN_TAG, as Nix reports it.
        let file = expression(
            dir.path(),
            &format!(
                "{{ probe = {}; }}",
                pull_call(
                    &p["imageName"],
                    &digest,
                    &format!(
                        "hash = \"\"; finalImageName = \"{GOLDEN_NAME}\"; finalImageTag = \"{GOLDEN_TAG}\"; name = \"golden-probe-{}.tar\";",
                        nonce()
                    )
                )
            ),
        );
        let out = nix_build_output(&file, &["probe"]);
        let (_, got) = mismatch(&String::from_utf8_lossy(&out.stderr));
        let golden = json!({
            "source": "tests/data/stream/default.conf.json pushed by `stevedore copy CONF docker://127.0.0.1:PORT/test/golden:v1` (gzip layers)",
            "imageDigest": digest,
            "finalImageName": GOLDEN_NAME,
            "finalImageTag": GOLDEN_TAG,
            "hash": got,
        });
        std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
        std::fs::write(
            golden_path(),
            serde_json::to_string_pretty(&golden).unwrap() + "\n",
        )
        .unwrap();
    }
    let golden = goldens();
    assert_eq!(
        digest, golden["imageDigest"],
        "the pushed manifest changed (see tests/data/README.md)"
    );
    assert_eq!(golden["finalImageName"], GOLDEN_NAME);
    assert_eq!(golden["finalImageTag"], GOLDEN_TAG);
    let golden_hash = golden["hash"].as_str().unwrap();
    let golden_hex = hex::encode(
        base64_decode(golden_hash.strip_prefix("sha256-").unwrap()).expect("an SRI hash"),
    );

    // As prefetched (the archive is named after the source, port included); the same
    // image with the golden name, from two spellings of the registry (the source name
    // is not in the archive), pinned by `hash` and by `sha256`.
    let n = nonce();
    let final_golden =
        format!("finalImageName = \"{GOLDEN_NAME}\"; finalImageTag = \"{GOLDEN_TAG}\";");
    let file = expression(
        dir.path(),
        &format!(
            "{{\n  prefetched = {};\n  golden = {};\n  localhost = {};\n  defaultName = {};\n}}",
            pull_call(
                &p["imageName"],
                &digest,
                &format!(
                    "hash = \"{}\"; finalImageName = \"{}\"; finalImageTag = \"{}\"; name = \"prefetched-{n}.tar\";",
                    p["hash"], p["finalImageName"], p["finalImageTag"]
                )
            ),
            pull_call(
                &p["imageName"],
                &digest,
                &format!("hash = \"{golden_hash}\"; {final_golden} name = \"golden-{n}.tar\";")
            ),
            pull_call(
                &format!("localhost:{}/test/golden", addr.rsplit_once(':').unwrap().1),
                &digest,
                &format!("sha256 = \"{golden_hex}\"; {final_golden} name = \"golden-localhost-{n}.tar\";")
            ),
            pull_call(&p["imageName"], &digest, &format!("hash = \"{}\"; finalImageTag = \"v1\";", p["hash"])),
        ),
    );
    let blobs_before = registry.requests("GET", "/v2/test/golden/blobs/");
    let built = nix_build(&file, &["prefetched", "golden", "localhost"]);
    assert!(
        registry.requests("GET", "/v2/test/golden/blobs/") >= blobs_before + 3 * 7,
        "the builds did not pull: {:?}",
        registry.access_log()
    );
    assert_archive(&built[0], &format!("{addr}/test/golden:v1"), &config_digest);
    for tar in &built[1..] {
        assert_archive(tar, &format!("{GOLDEN_NAME}:{GOLDEN_TAG}"), &config_digest);
        assert_eq!(sha256sum(tar), golden_hex);
    }
    let diff_ids = &expected("default")["diff_ids"];
    for tar in &built {
        assert_eq!(&config(tar)["rootfs"]["diff_ids"], diff_ids);
    }
    assert_eq!(registry_config(&dest, &[])["rootfs"]["diff_ids"], *diff_ids);
    // nixpkgs' fixName of docker-image-FINALNAME-FINALTAG.tar.
    assert_eq!(
        nix_eval(&file, "defaultName.name"),
        json!(format!(
            "docker-image-127.0.0.1-{}-test-golden-v1.tar",
            addr.rsplit_once(':').unwrap().1
        ))
    );
}

#[test]
fn pull_image_with_a_wrong_hash_fails_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::plain();
    let dest = push_golden(&registry, dir.path());
    let p = prefetch(&dest, &[]);
    let wrong = format!(
        "sha256-{}",
        base64(&hex::decode(sha256_hex(b"wrong")).unwrap())
    );
    assert_ne!(wrong, p["hash"]);
    let file = expression(
        dir.path(),
        &format!(
            "{{ wrong = {}; }}",
            pull_call(
                &p["imageName"],
                &p["imageDigest"],
                &format!(
                    "hash = \"{wrong}\"; finalImageTag = \"v1\"; name = \"wrong-{}.tar\";",
                    nonce()
                )
            )
        ),
    );
    let out = nix_build_output(&file, &["wrong"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("hash mismatch"), "{err}");
    assert_eq!(mismatch(&err), (wrong.clone(), p["hash"].clone()), "{err}");
}

#[test]
fn pull_image_picks_the_platform_of_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::plain();
    let amd64 = golden_conf("default", dir.path());
    let mut conf = read_json(&amd64);
    conf["architecture"] = json!("arm64");
    let arm64 = write_tmp(dir.path(), "arm64.conf.json", conf.to_string().as_bytes());
    let dest = format!("{}/test/multi:v1", registry.addr());
    run(stevedore()
        .arg("copy")
        .args([&amd64, &arm64])
        .arg(format!("docker://{dest}")));
    let index = registry_manifest(&dest, &[]);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");

    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no image for {other} in this test"),
    };
    let arm = prefetch(&dest, &["--arch", "arm64"]);
    let default = prefetch(&dest, &[]);
    // Both name the index; the hashes differ with the image picked.
    assert_eq!(arm["imageDigest"], default["imageDigest"]);
    assert_ne!(arm["hash"], default["hash"]);
    let n = nonce();
    let file = expression(
        dir.path(),
        &format!(
            "{{\n  arm = {};\n  default = {};\n}}",
            pull_call(
                &arm["imageName"],
                &arm["imageDigest"],
                &format!("arch = \"arm64\"; hash = \"{}\"; finalImageTag = \"v1\"; name = \"multi-arm-{n}.tar\";", arm["hash"])
            ),
            pull_call(
                &default["imageName"],
                &default["imageDigest"],
                &format!("hash = \"{}\"; finalImageTag = \"v1\"; name = \"multi-default-{n}.tar\";", default["hash"])
            ),
        ),
    );
    let built = nix_build(&file, &["arm", "default"]);
    assert_eq!(config(&built[0])["architecture"], "arm64");
    assert_eq!(config(&built[1])["architecture"], host_arch);
    for tar in &built {
        assert_eq!(
            config(tar)["rootfs"]["diff_ids"],
            expected("default")["diff_ids"]
        );
    }
}

#[test]
fn pull_image_arguments_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let digest = format!("sha256:{}", "1".repeat(64));
    let file = expression(
        dir.path(),
        &format!(
            "let\n  h = \"sha256-{h}\";\n  p = {};\n  evaluates = a: (builtins.tryEval (dockerTools.pullImage ({{ imageName = \"a/b\"; imageDigest = \"{digest}\"; }} // a)).drvPath).success;\n\
             in {{ v = [ p.name p.imageName p.imageTag p.sourceImageName p.outputHashMode p.outputHashAlgo p.os p.arch p.variant p.tlsVerify p.impureEnvVars p.copyToRegistry.meta.mainProgram (evaluates {{ }}) (evaluates {{ hash = h; sha256 = h; }}) (evaluates {{ hash = h; }}) ]; }}",
            pull_call("registry.example:5000/Some/Image", &digest, "hash = h; finalImageName = \"mirror/image\";"),
            h = "A".repeat(43) + "=",
        ),
    );
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(
        nix_eval(&file, "v"),
        json!([
            "docker-image-mirror-image-latest.tar",
            "mirror/image",
            "latest",
            "registry.example:5000/Some/Image",
            "flat",
            "sha256",
            "linux",
            host_arch,
            "",
            true,
            [
                "http_proxy",
                "https_proxy",
                "ftp_proxy",
                "all_proxy",
                "no_proxy",
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "FTP_PROXY",
                "ALL_PROXY",
                "NO_PROXY",
                "NIX_SSL_CERT_FILE"
            ],
            "copy-to-registry",
            false,
            false,
            true
        ])
    );
}

/// A small content derivation for the built images.
const ROOT: &str = "mk \"pushed-root\" \"mkdir -p $out/etc && echo pushed > $out/etc/pushed\"";

#[test]
fn copy_to_registry_pushes_a_built_image() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::plain();
    let name = format!("{}/test/built", registry.addr());
    let file = expression(
        dir.path(),
        &format!(
            "rec {{\n  root = {ROOT};\n  image = dockerTools.buildLayeredImage {{ name = \"{name}\"; tag = \"v1\"; compressor = \"none\"; contents = [ root ]; config.Cmd = [ \"/etc/pushed\" ]; }};\n}}"
        ),
    );
    let built = nix_build(&file, &["image", "image.copyToRegistry"]);
    assert_eq!(
        nix_eval(&file, "image.copyToRegistry.meta.mainProgram"),
        "copy-to-registry"
    );
    run(&mut Command::new(built[1].join("bin/copy-to-registry")));
    let pushed = registry_config(&format!("{name}:v1"), &[]);
    let diff_ids = &config(&built[0])["rootfs"]["diff_ids"];
    assert!(diff_ids.as_array().unwrap().len() >= 2, "{diff_ids}");
    assert_eq!(&pushed["rootfs"]["diff_ids"], diff_ids);
    assert_eq!(pushed["config"]["Cmd"], json!(["/etc/pushed"]));
    let manifest = registry_manifest(&format!("{name}:v1"), &[]);
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        diff_ids.as_array().unwrap().len()
    );
}

/// The platforms of an index's entries, as `os/architecture`, in order.
fn platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {index}"))
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn image_index_of_per_architecture_images() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::plain();
    let name = format!("{}/test/index", registry.addr());
    // A stream image (its conf), a layered image (its stream's conf) and a buildImage
    // (its docker archive).
    let file = expression(
        dir.path(),
        &format!(
            "rec {{\n  root = {ROOT};\n  \
             amd64 = dockerTools.streamLayeredImage {{ name = \"app\"; tag = \"amd64\"; architecture = \"amd64\"; contents = [ root ]; }};\n  \
             arm64 = dockerTools.buildLayeredImage {{ name = \"app\"; tag = \"arm64\"; architecture = \"arm64\"; contents = [ root ]; }};\n  \
             s390x = dockerTools.buildImage {{ name = \"app\"; tag = \"s390x\"; architecture = \"s390x\"; copyToRoot = root; }};\n  \
             index = dockerTools.imageIndex {{ name = \"{name}\"; tag = \"v1\"; images = [ amd64 arm64 s390x ]; }};\n}}"
        ),
    );
    let built = nix_build(&file, &["index", "index.copyTo", "index.copyToRegistry"]);
    let want = ["linux/amd64", "linux/arm64", "linux/s390x"];

    // The derivation: an OCI layout holding the index, tagged v1.
    let raw = |reference: String| -> Value {
        let out = run_skopeo(skopeo().args(["inspect", "--raw"]).arg(&reference));
        assert_success(&out, &format!("skopeo inspect --raw {reference}"));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let stored = raw(format!("oci:{}:v1", built[0].display()));
    assert_eq!(
        stored["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(platforms(&stored), want);

    // copyTo: the same index, written from the images' sources.
    let layout = dir.path().join("layout");
    run(Command::new(built[1].join("bin/copy-to")).arg(format!("oci:{}:v1", layout.display())));
    assert_eq!(raw(format!("oci:{}:v1", layout.display())), stored);

    // copyToRegistry: docker://NAME:TAG, an OCI index; with --format docker, a manifest list.
    run(&mut Command::new(built[2].join("bin/copy-to-registry")));
    let pushed = registry_manifest(&format!("{name}:v1"), &[]);
    assert_eq!(pushed, stored);
    for (arch, entry) in ["amd64", "arm64", "s390x"].iter().zip(0..) {
        let c = registry_config(&format!("{name}:v1"), &["--override-arch", arch]);
        assert_eq!(c["architecture"], *arch);
        let digest = stored["manifests"][entry]["digest"].as_str().unwrap();
        let m = registry_manifest(&format!("{name}@{digest}"), &[]);
        assert_eq!(
            c["rootfs"]["diff_ids"].as_array().unwrap().len(),
            m["layers"].as_array().unwrap().len()
        );
    }
    run(Command::new(built[2].join("bin/copy-to-registry")).args(["--format", "docker"]));
    let list = registry_manifest(&format!("{name}:v1"), &[]);
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(platforms(&list), want);
}
