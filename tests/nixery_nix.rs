//! nix/nixery.nix under real Nix, over the package set tests/nixery-pkgs: its manifest
//! output describes its blobs as sha256sum, openssl and gzip see them; the image (gzip,
//! zstd or uncompressed layers) is one skopeo, umoci and containerd take; GNU tar lists
//! the layers; bad names, packages, sources and budgets fail as Nixery does; git sources
//! pick the revision by rev or image tag; an image sharing packages with one built
//! before builds only its new layers; layers come back from a binary cache instead of
//! being built.
//!
//! The tests that count builds or delete store paths use a copy of the package set whose
//! derivations are new to the store (`own_source`), so other tests never share them.

mod common;
use common::containerd::*;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The image most tests build: Nixery's always-added packages, a nested name and a
/// shared library (hello and xev both reference libshared).
const IMAGE: [&str; 4] = ["hello", "xorg.xev", "cacert", "iana-etc"];

/// What tests/nixery-pkgs' hello prints.
const HELLO: &str = "Hello from a Nixery-style stevedore image\n";

/// The package source `path!…/tests/nixery-pkgs`.
fn shared_source() -> String {
    format!("path!{}", root().join("tests/nixery-pkgs").display())
}

/// A copy of tests/nixery-pkgs in `dir` whose every derivation carries a salt unique to
/// this call, so its packages and layers are in no other test's store paths.
fn own_source(dir: &Path) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let salt = format!(
        "{}-{nanos}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::SeqCst)
    );
    let text = std::fs::read_to_string(root().join("tests/nixery-pkgs/default.nix")).unwrap();
    let anchor = "PATH = \"/usr/bin:/bin\";";
    assert!(
        text.contains(anchor),
        "tests/nixery-pkgs changed: no {anchor}"
    );
    let salted = text.replace(anchor, &format!("{anchor} salt = \"{salt}\";"));
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    std::fs::write(pkgs.join("default.nix"), salted).unwrap();
    format!("path!{}", pkgs.display())
}

/// A Nix list of strings.
fn nix_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("[ {} ]", quoted.join(" "))
}

/// `nix-build nix/nixery.nix` of `packages` from `source`, with no out link, the tests'
/// sandbox and the binary cache `substituters` (none when empty); `extra` are more
/// arguments (`-A`, `--argstr`, …).
fn nixery(source: &str, packages: &[&str], substituters: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new("nix-build");
    cmd.arg(root().join("nix/nixery.nix"))
        .args(["--argstr", "pkgSource", source])
        .args(["--arg", "packages", &nix_list(packages)])
        .args(["--arg", "stevedoreBin", env!("CARGO_BIN_EXE_stevedore")])
        .arg("--no-out-link")
        .args(NIX_OPTIONS)
        .args(["--option", "substituters", substituters])
        .args(extra);
    if !substituters.is_empty() {
        cmd.args(["--option", "require-sigs", "false"]);
    }
    cmd
}

/// Runs `cmd`, which must succeed; returns its output paths and its stderr (the log).
fn built(cmd: &mut Command) -> (Vec<PathBuf>, String) {
    let out = run(cmd);
    let paths = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    (paths, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The manifest output of `packages` from the shared package set.
fn manifest_output(packages: &[&str], extra: &[&str]) -> Value {
    let (out, _) = built(&mut nixery(&shared_source(), packages, "", extra));
    read_json(&out[0])
}

/// Runs `cmd`, which must fail; returns its stderr.
fn failure(cmd: &mut Command) -> String {
    let out = cmd.output().expect("nix-build runs");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{cmd:?} succeeded:\n{log}");
    log
}

/// The name of a store path, without the store directory and hash.
fn name_of(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap();
    &base[33..]
}

/// The store paths a Nix log says it did `what` with, from lines
/// `<what> '<store path>'…` (`building`, `copying path`).
fn logged(log: &str, what: &str) -> Vec<String> {
    let prefix = format!("{what} '");
    log.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split('\'').next().unwrap().to_string())
        .collect()
}

/// The names of the derivations a Nix log says it built, without `.drv`.
fn built_names(log: &str) -> BTreeSet<String> {
    logged(log, "building")
        .iter()
        .map(|d| name_of(d).strip_suffix(".drv").expect("a .drv").to_string())
        .collect()
}

/// The base64 md5 of a file, by `openssl dgst -md5 -binary | base64`.
fn openssl_md5(path: &Path) -> String {
    let out = stdout(
        Command::new("sh")
            .arg("-c")
            .arg("openssl dgst -md5 -binary \"$1\" | base64")
            .arg("sh")
            .arg(path),
    );
    out.trim().to_string()
}

/// The sha256 of a gzip file's contents, by `gzip -dc | sha256sum`.
fn gunzipped_sha256(path: &Path) -> String {
    let out = stdout(
        Command::new("bash")
            .arg("-c")
            .arg("set -o pipefail; gzip -dc \"$1\" | sha256sum")
            .arg("sh")
            .arg(path),
    );
    out.split_whitespace().next().unwrap().to_string()
}

/// One member as `tar -tvzf` lists it.
#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
    name: String,
    target: Option<String>,
}

/// The members of a gzip-compressed layer, listed by GNU tar.
fn gnu_listing(layer: &Path) -> Vec<Entry> {
    stdout(Command::new("tar").arg("-tvzf").arg(layer))
        .lines()
        .map(|line| {
            // mode owner size date time name[ -> target]
            let mut fields = Vec::new();
            let mut rest = line;
            for _ in 0..5 {
                rest = rest.trim_start();
                let end = rest.find(' ').expect("six columns");
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            let rest = rest.trim_start();
            let (name, target) = match rest.split_once(" -> ") {
                Some((n, t)) => (n.to_string(), Some(t.to_string())),
                None => (rest.to_string(), None),
            };
            Entry {
                mode: fields[0].to_string(),
                owner: fields[1].to_string(),
                name,
                target,
            }
        })
        .collect()
}

/// The layer blobs of a manifest output, in manifest order.
fn layer_files(output: &Value) -> Vec<PathBuf> {
    output["manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let hex = l["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap();
            PathBuf::from(output["layerLocations"][hex]["path"].as_str().unwrap())
        })
        .collect()
}

/// The image config of a manifest output.
fn image_config(output: &Value) -> Value {
    let hex = output["manifest"]["config"]["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    read_json(Path::new(
        output["layerLocations"][hex]["path"].as_str().unwrap(),
    ))
}

/// The out paths of `attrs` of tests/nixery-pkgs, built by nix-build.
fn package_paths(attrs: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("nix-build");
    cmd.arg(root().join("tests/nixery-pkgs"))
        .arg("--no-out-link")
        .args(NIX_OPTIONS);
    for a in attrs {
        cmd.args(["-A", a]);
    }
    stdout(&mut cmd).lines().map(str::to_string).collect()
}

/// The closure of packages of the test set, as `nix-store -qR` lists it.
fn closure(attrs: &[&str]) -> BTreeSet<String> {
    stdout(
        Command::new("nix-store")
            .arg("-qR")
            .args(package_paths(attrs)),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Writes a manifest output as skopeo's `dir:` transport lays an image out.
fn dir_transport(output: &Value, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&output["manifest"]).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").unwrap();
    for (hex, location) in output["layerLocations"].as_object().unwrap() {
        std::fs::copy(location["path"].as_str().unwrap(), dir.join(hex)).unwrap();
    }
}

#[test]
fn layer_locations_describe_their_files() {
    let output = manifest_output(&IMAGE, &[]);
    let locations = output["layerLocations"].as_object().unwrap();
    for (hex, location) in locations {
        let path = Path::new(location["path"].as_str().unwrap());
        assert_eq!(location["sha256"], hex.as_str());
        assert_eq!(sha256sum(path), *hex, "{}", path.display());
        assert_eq!(location["md5"], openssl_md5(path), "{}", path.display());
        assert_eq!(
            location["size"],
            std::fs::metadata(path).unwrap().len(),
            "{}",
            path.display()
        );
    }
    // The manifest names exactly the config and layers that layerLocations holds.
    let manifest = &output["manifest"];
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    let descriptors: Vec<&Value> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .collect();
    let named: BTreeSet<String> = descriptors
        .iter()
        .map(|d| {
            let hex = d["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap();
            assert_eq!(d["size"], locations[hex]["size"], "{hex}");
            hex.to_string()
        })
        .collect();
    assert_eq!(named.len(), descriptors.len(), "a blob named twice");
    assert_eq!(named, locations.keys().cloned().collect());
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    // One layer per store path of the closure here (budget to spare), plus the
    // customisation layer.
    let closure = stdout(
        Command::new("nix-store")
            .arg("-qR")
            .args(package_paths(&IMAGE)),
    );
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        closure.lines().count() + 1
    );
}

#[test]
fn config_describes_the_layers_and_nixerys_defaults() {
    let output = manifest_output(&IMAGE, &[]);
    let config = image_config(&output);
    let diff_ids: Vec<String> = layer_files(&output)
        .iter()
        .map(|l| format!("sha256:{}", gunzipped_sha256(l)))
        .collect();
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"])
    );
    assert!(config["config"].get("Cmd").is_none(), "{config}");
}

#[test]
fn cmd_is_bash_when_bash_interactive_is_asked_for() {
    let config = image_config(&manifest_output(&["bashInteractive", "hello"], &[]));
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["bash"]));
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"])
    );
}

#[test]
fn arm64_images_say_so() {
    let config = image_config(&manifest_output(&["hello"], &["--argstr", "arch", "arm64"]));
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["os"], "linux");
}

#[test]
fn image_copies_unpacks_and_runs_with_real_tools() {
    let dir = tempfile::tempdir().unwrap();
    let output = manifest_output(&IMAGE, &[]);
    let layout = dir.path().join("dir");
    dir_transport(&output, &layout);
    let source = transport("dir", &layout, None);
    run(Command::new("skopeo").arg("inspect").arg(&source));

    let oci = dir.path().join("oci");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .arg(&source)
        .arg(transport("oci", &oci, Some("hello"))));
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:hello", oci.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let hello = &package_paths(&["hello"])[0];
    let link = std::fs::read_link(rootfs.join("bin/hello")).expect("/bin/hello is a symlink");
    assert_eq!(link, Path::new(hello).join("bin/hello"));
    assert!(rootfs.join(&hello[1..]).join("bin/hello").is_file());
    for file in ["etc/ssl/certs/ca-bundle.crt", "etc/protocols", "bin/xev"] {
        assert!(rootfs.join(file).exists(), "/{file}");
    }

    let archive = dir.path().join("image.tar");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .arg(&source)
        .arg(format!(
            "docker-archive:{}:nixery/hello:latest",
            archive.display()
        )));
    let ctd = Containerd::start();
    run(ctd.ctr().args(["images", "import"]).arg(&archive));
    let out = stdout(ctd.ctr().args([
        "run",
        "--rm",
        "docker.io/nixery/hello:latest",
        "nixery-hello",
        "/bin/hello",
    ]));
    assert_eq!(out, HELLO);
}

#[test]
fn uncompressed_and_zstd_images_run_in_containerd() {
    let dir = tempfile::tempdir().unwrap();
    let ctd = Containerd::start();
    for compressor in ["none", "zstd"] {
        let output = manifest_output(&["hello"], &["--argstr", "compressor", compressor]);
        let layout = dir.path().join(compressor);
        dir_transport(&output, &layout);
        let archive = dir.path().join(format!("{compressor}.tar"));
        let copy = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet"])
            .arg(transport("dir", &layout, None))
            .arg(transport("oci-archive", &archive, Some("v1")))
            .output()
            .unwrap();
        assert!(
            copy.status.success(),
            "compressor {compressor}: skopeo cannot read the image ({}): {}",
            output["manifest"]["layers"][0]["mediaType"],
            String::from_utf8_lossy(&copy.stderr)
        );
        let name = format!("docker.io/nixery/hello-{compressor}");
        run(ctd
            .ctr()
            .args(["images", "import", "--base-name", &name])
            .arg(&archive));
        let out = stdout(ctd.ctr().args([
            "run",
            "--rm",
            &format!("{name}:v1"),
            &format!("nixery-{compressor}"),
            "/bin/hello",
        ]));
        assert_eq!(out, HELLO, "compressor {compressor}");
    }
}

#[test]
fn store_layers_hold_whole_store_paths_owned_by_root() {
    let output = manifest_output(&IMAGE, &[]);
    let files = layer_files(&output);
    let (store_layers, _) = files.split_at(files.len() - 1);
    let mut seen = BTreeSet::new();
    for layer in store_layers {
        let entries = gnu_listing(layer);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names[..2], ["/nix/", "/nix/store/"], "{}", layer.display());
        for e in &entries {
            assert_eq!(e.owner, "root/root", "{e:?} in {}", layer.display());
        }
        // The store paths it holds, each whole, as find lists it.
        let paths: BTreeSet<String> = names[2..]
            .iter()
            .map(|n| n.split('/').take(4).collect::<Vec<_>>().join("/"))
            .collect();
        let mut expected = vec!["/nix/".to_string(), "/nix/store/".to_string()];
        for p in &paths {
            let listed = stdout(
                Command::new("find")
                    .arg(p)
                    .args(["(", "-type", "d", "-printf", "%p/\\n", ")"])
                    .args(["-o", "-printf", "%p\\n"]),
            );
            expected.extend(listed.lines().map(str::to_string));
            assert!(seen.insert(p.clone()), "{p} is in two layers");
        }
        let mut sorted = names[2..].to_vec();
        sorted.sort_unstable();
        expected[2..].sort_unstable();
        assert_eq!(sorted, expected[2..], "{}", layer.display());
    }
    // Together the store layers hold the packages' closure, as nix-store sees it.
    let closure: BTreeSet<String> = closure(&IMAGE);
    assert_eq!(seen, closure);
}

#[test]
fn customisation_layer_links_every_package() {
    let packages = ["hello", "xorg.xev", "cacert", "iana-etc", "coreutils"];
    let output = manifest_output(&packages, &[]);
    let files = layer_files(&output);
    let entries = gnu_listing(files.last().unwrap());
    for e in &entries {
        assert_eq!(e.owner, "0/0", "{e:?}");
    }
    let listed: BTreeMap<String, Option<String>> = entries
        .iter()
        .map(|e| {
            if e.mode.starts_with('l') {
                (e.name.clone(), e.target.clone())
            } else {
                assert!(e.mode.starts_with('d'), "{e:?}");
                (e.name.clone(), None)
            }
        })
        .collect();
    // lndir (symlinkJoin): directories are made, files are linked to, symlinks copied;
    // the first package wins a name.
    let mut expected = BTreeMap::from([("./".to_string(), None)]);
    for pkg in package_paths(&packages) {
        let found = stdout(Command::new("find").arg(&pkg).args([
            "-mindepth",
            "1",
            "-printf",
            "%y %P %l\\n",
        ]));
        for line in found.lines() {
            let mut parts = line.splitn(3, ' ');
            let (kind, rel, link) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let (name, target) = match kind {
                "d" => (format!("./{rel}/"), None),
                "l" => (format!("./{rel}"), Some(link.to_string())),
                _ => (format!("./{rel}"), Some(format!("{pkg}/{rel}"))),
            };
            expected.entry(name).or_insert(target);
        }
    }
    assert_eq!(listed, expected);
}

#[test]
fn every_derivation_rebuilds_bit_for_bit() {
    // nix-build --check builds again and fails if the output differs.
    let packages = ["hello", "xorg.xev", "cacert", "iana-etc", "coreutils"];
    for attr in [
        &["-A", "plan"][..],
        &["-A", "layers"],
        &["-A", "configFile"],
        &[],
    ] {
        let (outputs, _) = built(&mut nixery(&shared_source(), &packages, "", attr));
        let extra = [attr, &["--check"]].concat();
        let (_, log) = built(&mut nixery(&shared_source(), &packages, "", &extra));
        assert_eq!(
            logged(&log, "checking outputs of").len(),
            outputs.len(),
            "{attr:?}: {log}"
        );
    }
}

#[test]
fn unknown_names_are_all_reported() {
    let output = manifest_output(&["hello", "nope", "xorg.nope", "xorg"], &[]);
    assert_eq!(
        output,
        serde_json::json!({"error": "not_found", "pkgs": ["nope", "xorg.nope", "xorg"]})
    );
}

#[test]
fn lower_case_names_find_camel_case_sets() {
    let output = manifest_output(&["haskellpackages.stylish-haskell"], &[]);
    let entries = gnu_listing(layer_files(&output).last().unwrap());
    let stylish = &package_paths(&["haskellPackages.stylish-haskell"])[0];
    let link = entries
        .iter()
        .find(|e| e.name == "./bin/stylish-haskell")
        .expect("bin/stylish-haskell in the customisation layer");
    assert_eq!(
        link.target.as_deref(),
        Some(format!("{stylish}/bin/stylish-haskell").as_str())
    );
}

#[test]
fn a_failing_package_fails_the_build_naming_it() {
    let log = failure(&mut nixery(&shared_source(), &["hello", "broken"], "", &[]));
    assert!(
        log.contains("broken-1.0.drv") && log.contains("failed"),
        "{log}"
    );
}

#[test]
fn bad_sources_are_refused_clearly() {
    let relative = "path!tests/nixery-pkgs";
    for source in [
        relative,
        "svn!https://example.org/pkgs",
        "nixpkgs",
        "path!/a!/b",
    ] {
        let log = failure(&mut nixery(source, &["hello"], "", &[]));
        assert!(
            log.contains(&format!("package source {source}: expected"))
                && log.contains("path!DIR with an absolute DIR"),
            "{source}: {log}"
        );
    }
}

/// Runs git in `repo`, as a committer of its own.
fn git(repo: &Path, args: &[&str]) -> String {
    stdout(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["-c", "user.name=test", "-c", "user.email=test@example.org"])
            .args(args),
    )
}

/// What hello prints in the image of `source` and `tag`: the last line of the script its
/// customisation layer's /bin/hello links to; or nix-build's error.
fn hello_message(source: &str, tag: &str) -> String {
    let out = nixery(
        source,
        &["hello"],
        "",
        &["--argstr", "tag", tag, "-A", "customisationLayer"],
    )
    .output()
    .unwrap();
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("error") || l.starts_with("fatal"))
            .collect();
        return format!("nix-build failed: {}", errors.join(" / "));
    }
    let layer = String::from_utf8(out.stdout).unwrap();
    let entries = gnu_listing(&Path::new(layer.trim()).join("layer.tar.gz"));
    let link = entries
        .iter()
        .find(|e| e.name == "./bin/hello")
        .and_then(|e| e.target.clone())
        .expect("/bin/hello");
    let script = std::fs::read_to_string(link).unwrap();
    script.lines().last().unwrap().to_string()
}

/// Serves the files under `dir` over plain HTTP on 127.0.0.1 (GET only, all git's dumb
/// protocol needs) until the test process ends; returns `HOST:PORT`.
fn serve_files(dir: PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let answer = move |mut stream: std::net::TcpStream| -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request = String::new();
        reader.read_line(&mut request)?;
        let mut header = String::new();
        while reader.read_line(&mut header)? > 2 {
            header.clear();
        }
        let target = request.split_whitespace().nth(1).unwrap_or("/");
        let path = target.split('?').next().unwrap().trim_start_matches('/');
        match std::fs::read(dir.join(path)) {
            Ok(bytes) if !path.contains("..") => {
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                )?;
                stream.write_all(&bytes)
            }
            _ => write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        }
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream);
        }
    });
    addr
}

#[test]
fn git_sources_pick_the_revision_by_rev_or_tag() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let text = std::fs::read_to_string(root().join("tests/nixery-pkgs/default.nix")).unwrap();
    let with = |message: &str| {
        let changed = text.replace("Hello from a Nixery-style stevedore image", message);
        assert_ne!(changed, text, "tests/nixery-pkgs: hello's message changed");
        std::fs::write(repo.join("default.nix"), changed).unwrap();
    };
    // Commit "one" (also the branch `first`), then "two" on `main`, the default branch
    // (not `master`).
    git(&repo, &["init", "--quiet", "--initial-branch=main"]);
    with("one");
    git(&repo, &["add", "default.nix"]);
    git(&repo, &["commit", "--quiet", "-m", "one"]);
    let first = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    git(&repo, &["branch", "first"]);
    with("two");
    git(&repo, &["commit", "--quiet", "-am", "two"]);
    // Uncommitted work is in no revision: no image holds it.
    with("uncommitted");
    // The same repository on a (dumb) HTTP server.
    let served = dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    let bare = served.join("repo.git");
    git(
        dir.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            repo.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    git(&bare, &["update-server-info"]);
    let addr = serve_files(served);

    let mut wrong = Vec::new();
    for url in [
        format!("git!file://{}", repo.display()),
        format!("git!http://{addr}/repo.git"),
    ] {
        let cases = [
            (format!("{url}!{first}"), "latest", "one"),
            (url.clone(), first.as_str(), "one"),
            (url.clone(), "first", "one"),
            (url.clone(), "latest", "two"),
        ];
        for (source, tag, expected) in &cases {
            let expected = format!("echo \"{expected}\"");
            let got = hello_message(source, tag);
            if got != expected {
                wrong.push(format!("{source} tag {tag}: {got}, not {expected}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn an_empty_package_list_is_refused() {
    let log = failure(&mut nixery(&shared_source(), &[], "", &[]));
    assert!(log.contains("needs at least one package"), "{log}");
}

#[test]
fn two_layers_are_one_store_layer_and_the_customisation_layer() {
    let output = manifest_output(&IMAGE, &["--arg", "maxLayers", "2"]);
    let files = layer_files(&output);
    assert_eq!(files.len(), 2);
    let store: BTreeSet<String> = gnu_listing(&files[0])
        .iter()
        .filter_map(|e| {
            let parts: Vec<&str> = e.name.split('/').collect();
            (parts.len() >= 4 && !parts[3].is_empty()).then(|| parts[..4].join("/"))
        })
        .collect();
    let closure: BTreeSet<String> = closure(&IMAGE);
    assert_eq!(store, closure);
    assert!(gnu_listing(&files[1])
        .iter()
        .any(|e| e.name == "./bin/hello"));
}

#[test]
fn a_budget_below_two_layers_is_a_clear_error() {
    for max in ["1", "0"] {
        let log = failure(&mut nixery(
            &shared_source(),
            &["hello"],
            "",
            &["--arg", "maxLayers", max],
        ));
        assert!(
            log.contains("maxLayers must be at least 2") && log.contains(&format!("not {max}")),
            "maxLayers {max}: {log}"
        );
    }
}

#[test]
fn a_second_image_builds_only_its_new_layers() {
    let dir = tempfile::tempdir().unwrap();
    let source = own_source(dir.path());
    let first = IMAGE.to_vec();
    let second = ["hello", "xorg.xev", "figlet", "cacert", "iana-etc"];
    built(&mut nixery(&source, &first, "", &[]));
    let (_, log) = built(&mut nixery(&source, &second, "", &[]));
    let expected: BTreeSet<String> = [
        "figlet-2.2.5",
        "nixery-plan.json",
        "nixery-layer-figlet-2.2.5",
        "nixery-customisation-layer",
        "nixery-config.json",
        "manifest-output.json",
    ]
    .map(String::from)
    .into();
    assert_eq!(built_names(&log), expected, "{log}");

    // As Nix sees the layer derivations: every one of the second image's but its new
    // package's and its customisation layer is one of the first image's.
    let layers = |packages: &[&str]| -> Vec<PathBuf> {
        built(&mut nixery(&source, packages, "", &["-A", "layers"])).0
    };
    let (a, b) = (layers(&first), layers(&second));
    assert_eq!(b.len(), a.len() + 1);
    let a: BTreeSet<PathBuf> = a.into_iter().collect();
    let new: Vec<&str> = b
        .iter()
        .filter(|p| !a.contains(*p))
        .map(|p| name_of(p.to_str().unwrap()))
        .collect();
    assert_eq!(
        new,
        ["nixery-layer-figlet-2.2.5", "nixery-customisation-layer"]
    );
}

#[test]
fn layers_are_substituted_from_a_binary_cache() {
    let dir = tempfile::tempdir().unwrap();
    let source = own_source(dir.path());
    let (layers, _) = built(&mut nixery(&source, &IMAGE, "", &["-A", "layers"]));
    // Six store paths, each its own layer, and the customisation layer.
    assert_eq!(layers.len(), 7, "{layers:?}");
    let cache = format!("file://{}", dir.path().join("cache").display());
    run(Command::new("nix")
        .args(["--extra-experimental-features", "nix-command", "copy"])
        .args(["--to", &format!("{cache}?compression=none")])
        .args(&layers));
    run(Command::new("nix-store").arg("--delete").args(&layers));
    for l in &layers {
        assert!(!l.exists(), "{} not deleted", l.display());
    }

    let (again, log) = built(&mut nixery(&source, &IMAGE, &cache, &["-A", "layers"]));
    assert_eq!(again, layers);
    let copied: BTreeSet<String> = logged(&log, "copying path")
        .into_iter()
        .filter(|p| log.contains(&format!("copying path '{p}' from '{cache}'")))
        .collect();
    let expected: BTreeSet<String> = layers
        .iter()
        .map(|l| l.to_str().unwrap().to_string())
        .collect();
    assert_eq!(copied, expected, "{log}");
    assert_eq!(built_names(&log), BTreeSet::new(), "{log}");
    // What came back is what was built: the blobs match their layer.json.
    for l in &layers {
        let info = read_json(&l.join("layer.json"));
        assert_eq!(info["sha256"], sha256sum(&l.join("layer.tar.gz")));
    }
}
