//! nixpkgs' layered-image tests (nixos/tests/docker-tools.nix), ported: images built by
//! nix/default.nix under real Nix, checked with skopeo, unpacked with umoci and run
//! with chroot using the image's Entrypoint/Cmd, Env, User and WorkingDir.

mod common;
use common::containerd::*;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One Nix command at a time: concurrent builds of shared inputs were seen killed.
static NIX: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

fn nix_args(cmd: &mut Command) -> &mut Command {
    cmd.arg(root().join("tests/nix/images.nix"))
        .args(["--arg", "stevedoreBin"])
        .arg(format!("\"{}\"", env!("CARGO_BIN_EXE_stevedore")))
        .args(NIX_OPTIONS)
}

/// Builds an attribute of tests/nix/images.nix. The first call builds them all at once
/// (Nix runs the builds in parallel); concurrent nix-build runs are avoided.
fn build(attr: &str) -> PathBuf {
    let mut all_built = NIX.lock().unwrap_or_else(|e| e.into_inner());
    if !*all_built {
        // Failures show up again, with their logs, when the attribute is built below.
        let _ = nix_args(&mut Command::new("nix-build"))
            .args(["--no-out-link", "-j", "4", "--keep-going"])
            .output();
        *all_built = true;
    }
    let out = stdout(nix_args(&mut Command::new("nix-build")).args(["-A", attr, "--no-out-link"]));
    PathBuf::from(out.trim())
}

/// Evaluates `attr` of tests/nix/images.nix to a string.
fn eval(attr: &str) -> String {
    let _nix = NIX.lock().unwrap_or_else(|e| e.into_inner());
    let out = stdout(nix_args(&mut Command::new("nix-instantiate")).args(["--eval", "-A", attr]));
    serde_json::from_str(out.trim()).expect("a Nix string")
}

/// An uncompressed docker archive of the image `attr` (running it if it is a stream
/// script), checked with skopeo.
fn archive(attr: &str, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let built = build(attr);
    let name = format!("{attr}.tar");
    let tar = if std::fs::metadata(&built).unwrap().permissions().mode() & 0o111 != 0 {
        write_tmp(dir, &name, &run(&mut Command::new(&built)).stdout)
    } else {
        decompressed(&built, dir, &name)
    };
    run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", tar.display())));
    tar
}

#[test]
fn layered_image_runs_and_has_extra_commands_output() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("layered-image", dir.path());
    assert_eq!(
        run_image(&tar, dir.path()),
        "Hello, world!\nThis is an example file from extraCommands\n"
    );
}

#[test]
fn include_store_paths_false_has_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("no-store-paths", dir.path());
    let rootfs = unpack(&tar, dir.path());
    assert!(!rootfs.join("nix/store").exists());
    assert!(std::fs::symlink_metadata(rootfs.join("bin/hello"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(manifest(&tar)[0]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(run_image(&tar, &dir.path().join("run")), "no store\n");
}

#[test]
fn image_tag_attribute_is_the_loaded_tag() {
    let dir = tempfile::tempdir().unwrap();
    for (attr, name) in [
        ("no-tag-layered", "bash-no-tag-layered"),
        ("no-tag-stream", "bash-no-tag-stream-layered"),
    ] {
        let tag = eval(&format!("{attr}.imageTag"));
        assert_eq!(tag.len(), 32, "{tag}");
        let tar = archive(attr, dir.path());
        assert_eq!(
            manifest(&tar)[0]["RepoTags"],
            serde_json::json!([format!("{name}:{tag}")])
        );
        assert_eq!(eval(&format!("{attr}.imageName")), name);
    }
}

#[test]
fn every_compressor_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut configs = Vec::new();
    for attr in ["uncompressed", "gz", "zstd"] {
        let tar = archive(attr, dir.path());
        configs.push(config(&tar)["rootfs"].clone());
        assert_eq!(run_image(&tar, &dir.path().join(attr)), "Hello, world!\n");
    }
    assert!(configs.windows(2).all(|w| w[0] == w[1]));
    let _nix = NIX.lock().unwrap_or_else(|e| e.into_inner());
    let bad = Command::new("nix-instantiate")
        .arg("--eval")
        .args(["-E", &format!("((import {}/tests/nix/tools.nix {{ stevedoreBin = \"/dev/null\"; }}).dockerTools.buildLayeredImage {{ name = \"bad\"; compressor = \"xz\"; }}).drvPath", root().display())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success()
            && err.contains("in docker image bad: compressor must be one of: [gz none zstd]"),
        "{err}"
    );
}

#[test]
fn nix_store_is_755_for_a_non_root_user() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("with-user", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "755\n755\n1000\n");
}

#[test]
fn store_symlinks_stay_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("store-symlink", dir.path());
    let hello = build("hello");
    assert_eq!(
        run_image(&tar, dir.path()),
        format!("{}/bin\n", hello.display())
    );
}

#[test]
fn created_now_is_not_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("unstable-date", dir.path());
    let created = config(&tar)["created"].as_str().unwrap().to_string();
    assert!(!created.starts_with("1970-01-01T00:00:01"), "{created}");
    let stable = archive("layered-image", dir.path());
    assert_eq!(config(&stable)["created"], "1970-01-01T00:00:01+00:00");
}

#[test]
fn overlapping_closures_share_layers() {
    let dir = tempfile::tempdir().unwrap();
    let a = config(&archive("layered-image", dir.path()))["rootfs"]["diff_ids"].clone();
    let b = config(&archive("another-layered-image", dir.path()))["rootfs"]["diff_ids"].clone();
    let shared = a
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| b.as_array().unwrap().contains(d))
        .count();
    assert!(shared >= 2, "{a} {b}");
}

/// The store paths `attr` (a list of derivations) of tests/nix/images.nix evaluates to.
fn out_paths(attr: &str) -> Vec<String> {
    let _nix = NIX.lock().unwrap_or_else(|e| e.into_inner());
    // A derivation in JSON is its outPath; the plan is read back, so the store is written.
    let out = stdout(nix_args(&mut Command::new("nix-instantiate")).args([
        "--eval",
        "--strict",
        "--json",
        "--read-write-mode",
        "-A",
        attr,
    ]));
    serde_json::from_str(out.trim()).expect("a JSON list")
}

#[test]
fn layer_derivations_give_the_same_image_bytes() {
    for (plain, by_layer) in [
        ("layered-image", "layered-image-derivations"),
        ("another-layered-image", "another-layered-image-derivations"),
        ("non-root", "non-root-derivations"),
    ] {
        assert_eq!(
            sha256sum(&build(plain)),
            sha256sum(&build(by_layer)),
            "{plain} with layerDerivations"
        );
    }
}

#[test]
fn layer_derivations_are_shared_by_images_with_the_same_layer() {
    let dir = tempfile::tempdir().unwrap();
    let a = out_paths("layers-of-layered-image");
    let b = out_paths("layers-of-another-layered-image");
    let shared: Vec<&String> = a.iter().filter(|p| b.contains(p)).collect();
    // As many shared derivations as shared diff_ids (the layers are the same tars).
    let diff_ids = |attr: &str| config(&archive(attr, dir.path()))["rootfs"]["diff_ids"].clone();
    let (da, db) = (diff_ids("layered-image"), diff_ids("another-layered-image"));
    let same = da
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| db.as_array().unwrap().contains(d))
        .count();
    assert!(shared.len() >= 2, "{a:?} {b:?}");
    assert_eq!(shared.len(), same, "{a:?} {b:?} {da} {db}");
    for p in &a {
        let name = p.rsplit('/').next().unwrap();
        assert!(name[33..].starts_with("docker-layer-"), "{p}");
        let tar = Path::new(p).join("layer.tar");
        let listing = stdout(Command::new("tar").arg("-tvf").arg(&tar));
        assert!(
            listing.lines().next().unwrap().contains(" /nix/"),
            "{listing}"
        );
    }
}

#[test]
fn env_from_base_keeps_one_last_layer() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("env-layered", dir.path());
    let env = config(&tar)["config"]["Env"].clone();
    let last: Vec<&Value> = env
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.as_str().unwrap().starts_with("LAST_LAYER="))
        .collect();
    assert_eq!(last, [&serde_json::json!("LAST_LAYER=child")]);
    let out = run_image(&tar, dir.path());
    assert!(
        out.contains("FROM_PARENT=true\n")
            && out.contains("FROM_CHILD=true\n")
            && out.contains("LAST_LAYER=child\n"),
        "{out}"
    );
}

#[test]
fn max_layers_two_and_bulk_layer() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("twoLayered", dir.path());
    assert_eq!(manifest(&tar)[0]["Layers"].as_array().unwrap().len(), 2);
    let bulk = archive("bulk-layer", dir.path());
    assert_eq!(manifest(&bulk)[0]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(run_image(&bulk, dir.path()), "Hello, world!\n");
    let rootfs = dir.path().join("bundle/rootfs");
    for p in ["hello", "greeter", "busybox"] {
        assert!(
            std::fs::read_dir(rootfs.join("nix/store"))
                .unwrap()
                .any(|e| e.unwrap().file_name().to_string_lossy().contains(p)),
            "{p}"
        );
    }
}

#[test]
fn layered_on_two_layer_base_has_four_layers() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("layered-bulk-layer", dir.path());
    assert_eq!(manifest(&tar)[0]["Layers"].as_array().unwrap().len(), 4);
    assert_eq!(run_image(&tar, dir.path()), "Hello, world!\n");
}

#[test]
fn registry_prefixed_names_load_lower_cased() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("prefixed", dir.path());
    assert_eq!(
        manifest(&tar)[0]["RepoTags"],
        serde_json::json!(["registry-1.docker.io/image:latest"])
    );
    assert!(build("prefixed")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("-Image.tar.gz"));
}

#[test]
fn fake_root_commands_chown_persists() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("fake-root", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "1000\nHello, world!\n");
}

#[test]
fn bare_paths_in_contents() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("with-path", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "hello from test-dummy\n");
}

#[test]
fn architecture_override() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("with-architecture", dir.path());
    assert_eq!(config(&tar)["architecture"], "arm64");
}

#[test]
fn non_root_owner_user_and_workdir() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("non-root", dir.path());
    assert_eq!(
        run_image(&tar, dir.path()),
        "/tmp-work\n1000:1000\nenv-ok\n"
    );
}

#[test]
fn fakechroot_resolves_absolute_paths_in_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("fakechroot", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "Hello, world!\n");
    let rootfs = dir.path().join("bundle/rootfs");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(rootfs.join("opt")).unwrap().uid(), 1000);
    assert!(!rootfs.join("usr").exists() && !rootfs.join("proc").exists());
}

#[test]
fn images_equal_what_stevedore_writes_from_their_conf() {
    let dir = tempfile::tempdir().unwrap();
    for attr in ["layered-image", "env-layered", "non-root", "fake-root"] {
        let image = archive(attr, dir.path());
        let conf = build(&format!("{attr}.stream.conf"));
        let streamed = dir.path().join(format!("{attr}-streamed.tar"));
        std::fs::write(
            &streamed,
            run(stevedore().arg("stream-layered").arg(&conf)).stdout,
        )
        .unwrap();
        let file = dir.path().join(format!("{attr}-file.tar"));
        run(stevedore()
            .arg("build-layered")
            .arg(&conf)
            .arg("-o")
            .arg(&file));
        for other in [&streamed, &file] {
            assert_eq!(
                manifest(other)[0]["Config"],
                manifest(&image)[0]["Config"],
                "{attr}"
            );
            assert_eq!(config(other)["rootfs"], config(&image)["rootfs"], "{attr}");
        }
        assert_eq!(sha256sum(&streamed), sha256sum(&file));
    }
    let script = archive("stream-layered", dir.path());
    let conf = build("stream-layered.conf");
    let direct = run(stevedore().arg("stream-layered").arg(&conf)).stdout;
    assert!(std::fs::read(&script).unwrap() == direct);
}

#[test]
fn conf_step_records_layer_digests_unless_asked_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = read_json(&build("stream-layered.conf"));
    let script = archive("stream-layered", dir.path());
    let diff_ids = config(&script)["rootfs"]["diff_ids"].clone();
    let layers = recorded["store_layer_digests"]["layers"]
        .as_array()
        .unwrap();
    assert_eq!(
        layers.len(),
        recorded["store_layers"].as_array().unwrap().len()
    );
    assert!(!layers.is_empty());
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(layer["diff_id"], diff_ids[i]);
    }
    let hashing = read_json(&build("stream-hashing.conf"));
    assert!(hashing.get("store_layer_digests").is_none());
    let hashed = archive("stream-hashing", dir.path());
    assert_eq!(sha256sum(&hashed), sha256sum(&script));
}

#[test]
fn unsandboxed_builds_give_identical_bytes() {
    build("layered-image");
    let attrs = [
        "layered-image.stream.conf.customisationLayer",
        "fake-root.stream.conf.customisationLayer",
        "fakechroot.stream.conf.customisationLayer",
        "non-root.stream.conf",
    ];
    let _nix = NIX.lock().unwrap_or_else(|e| e.into_inner());
    for attr in attrs {
        // Rebuild outside the sandbox and compare with the sandboxed result. Nix 2.8
        // sometimes kills very short unsandboxed builders (NixOS/nix#2176): retry those.
        for attempt in 1.. {
            let out = nix_args(&mut Command::new("nix-build"))
                .args([
                    "-A",
                    attr,
                    "--no-out-link",
                    "--check",
                    "--option",
                    "sandbox",
                    "false",
                ])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                break;
            }
            assert!(
                err.contains("signal 9 (Killed)") && attempt < 5,
                "{attr}: {err}"
            );
        }
    }
}

#[test]
fn nix_db_registers_the_contents_closure() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("nix-db", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "Hello, world!\n");
    let rootfs = dir.path().join("bundle/rootfs");
    let store = format!("local?root={}", rootfs.display());
    let (hello, busybox) = (build("hello"), build("busybox"));
    let refs = stdout(
        Command::new("nix-store")
            .args(["--store", &store, "-q", "--references"])
            .arg(&hello),
    );
    assert_eq!(refs.trim(), busybox.display().to_string());
    let closure = stdout(
        Command::new("nix-store")
            .args(["--store", &store, "-qR"])
            .arg(&hello),
    );
    assert_eq!(closure.lines().count(), 2, "{closure}");
    run(Command::new("nix-store").args(["--store", &store, "--verify", "--check-contents"]));
    let roots = std::fs::read_dir(rootfs.join("nix/var/nix/gcroots/docker"))
        .unwrap()
        .count();
    assert_eq!(roots, 2);
    let info = stdout(
        Command::new("nix-store")
            .args(["--store", &store, "-q", "--hash"])
            .arg(&hello),
    );
    let real = stdout(Command::new("nix-store").args(["-q", "--hash"]).arg(&hello));
    assert_eq!(info, real);
}

#[test]
fn layering_pipeline_decides_the_store_layers() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("pipeline", dir.path());
    let conf = read_json(&build("pipeline.stream.conf"));
    let layers = conf["store_layers"].as_array().unwrap();
    // subcomponent_out: greeter and its closure (busybox) as "main", narSize order; then
    // the rest (hello) by popularity.
    let names: Vec<Vec<&str>> = layers
        .iter()
        .map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|p| &p.as_str().unwrap()[44..])
                .collect()
        })
        .collect();
    assert_eq!(names, [vec!["greeter", "busybox"], vec!["hello-2.12"]]);
    assert_eq!(manifest(&tar)[0]["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(run_image(&tar, dir.path()), "Hello, world!\n");
}

#[test]
fn store_paths_in_config_join_the_closure() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("config-refs", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "greetings from config\n");
}

#[test]
fn base_layers_count_against_max_layers() {
    let _ = build("layered-image");
    let _nix = NIX.lock().unwrap_or_else(|e| e.into_inner());
    let out = nix_args(&mut Command::new("nix-build"))
        .args(["-A", "too-many-base-layers", "--no-out-link"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Error: usedLayers 3 layers to store 'fromImage' and 'extraCommands', but only maxLayers=3 were allowed. At least 1 layer is required to store contents."),
        "{err}"
    );
}

#[test]
fn stream_script_takes_a_repo_tag() {
    let script = build("stream-layered");
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--repo-tag", "--repo_tag", "-t"] {
        let tar = dir.path().join("s.tar");
        std::fs::write(
            &tar,
            run(Command::new(&script).args([flag, "other:tag"])).stdout,
        )
        .unwrap();
        assert_eq!(
            manifest(&tar)[0]["RepoTags"],
            serde_json::json!(["other:tag"])
        );
    }
}

#[test]
fn export_image_flattens_without_a_vm() {
    let dir = tempfile::tempdir().unwrap();
    let plain = build("exported");
    let tagged = build("exported-tagged");
    assert!(std::fs::read(&plain).unwrap() == std::fs::read(&tagged).unwrap());
    assert!(tagged.to_string_lossy().ends_with("-exported.tar.gz"));
    let listing = stdout(Command::new("tar").arg("-tf").arg(&plain));
    assert!(
        listing.starts_with("./\n./bin/\n") && listing.contains("./bin/hello\n"),
        "{listing}"
    );
    assert!(listing.contains("./example-output\n"));
    let hello = build("hello");
    assert!(listing.contains(&format!(".{}/bin/hello\n", hello.display())));
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&plain)
        .arg("-C")
        .arg(&rootfs));
    let out = Command::new("chroot")
        .arg(&rootfs)
        .arg("/bin/hello")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, world!\n");
}

#[test]
fn environment_helpers_have_nixpkgs_contents() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("helpers", dir.path());
    assert_eq!(
        run_image(&tar, dir.path()),
        "root:x:0:0:root user:/var/empty:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
         nobody:x:65534:65534:nobody:/var/empty:/bin/sh\nroot:x:0:\nalice:x:1000:\nnobody:x:65534:\n\
         hosts: files dns\nfixture bundle\n"
    );
    let rootfs = dir.path().join("bundle/rootfs");
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("/usr/bin/bash")
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("usr/bin/env")).unwrap(),
        Path::new("/usr/bin/env")
    );
    assert!(rootfs.join("var/empty").is_dir());
    for p in [
        "etc/ssl/certs/ca-bundle.crt",
        "etc/pki/tls/certs/ca-bundle.crt",
    ] {
        assert!(std::fs::read_link(rootfs.join(p))
            .unwrap()
            .ends_with("etc/ssl/certs/ca-bundle.crt"));
    }
}

/// An uncompressed copy of a built archive, whatever its compression.
fn decompressed(built: &Path, dir: &Path, name: &str) -> PathBuf {
    let head = std::fs::read(built).unwrap();
    let bytes = match head.get(..4) {
        Some([0x1f, 0x8b, ..]) => run(Command::new("gzip").arg("-dc").arg(built)).stdout,
        Some([0x28, 0xb5, 0x2f, 0xfd]) => run(Command::new("zstd").arg("-dc").arg(built)).stdout,
        _ => head,
    };
    let out = dir.join(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn merged_images_load_each_image_and_keep_owners() {
    let dir = tempfile::tempdir().unwrap();
    let merged = build("merged");
    assert!(merged.to_string_lossy().ends_with("-merge-docker-images"));
    assert_eq!(
        &std::fs::read(&merged).unwrap()[..4],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "zstd, as the last input"
    );
    let tar = decompressed(&merged, dir.path(), "merged.tar");
    let tags: Vec<String> = manifest(&tar)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["RepoTags"][0].as_str().unwrap().to_string())
        .collect();
    let no_tag = format!("bash-no-tag-layered:{}", eval("no-tag-layered.imageTag"));
    assert_eq!(
        tags,
        [
            "layered-image:latest",
            "layered-image-with-fake-root-commands:latest",
            no_tag.as_str(),
            "zstd:x"
        ]
    );
    for tag in &tags {
        run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}:{tag}", tar.display())));
    }
    let oci = dir.path().join("oci");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .arg(format!(
            "docker-archive:{}:layered-image-with-fake-root-commands:latest",
            tar.display()
        ))
        .arg(format!("oci:{}:x", oci.display())));
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:x", oci.display()))
        .arg(&bundle));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(bundle.join("rootfs/home/alice"))
            .unwrap()
            .uid(),
        1000
    );
    let listing = stdout(Command::new("tar").args(["-tvf"]).arg(&tar));
    assert!(
        listing.lines().all(|l| l.contains(" root/root ")),
        "{listing}"
    );
    let gz = build("merged-gz-last");
    assert_eq!(&std::fs::read(&gz).unwrap()[..2], &[0x1f, 0x8b]);
    let gz_tar = decompressed(&gz, dir.path(), "gz.tar");
    assert_eq!(manifest(&gz_tar).as_array().unwrap().len(), 3);
}

#[test]
fn build_image_layer_equals_rsync_then_gnu_tar() {
    let dir = tempfile::tempdir().unwrap();
    let layer = build("bash-image.layer");
    let root = build("root");
    let tree = dir.path().join("layer");
    std::fs::create_dir(&tree).unwrap();
    run(Command::new("rsync")
        .args(["-ak", "--chown=0:0"])
        .arg(format!("{}/", root.display()))
        .arg(format!("{}/", tree.display())));
    run(Command::new("chmod").arg("ug+w").arg(&tree));
    let gnu = dir.path().join("gnu.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .args([
            "--hard-dereference",
            "--sort=name",
            "--mtime=@315532800",
            "--owner=0",
            "--group=0",
            "-cf",
        ])
        .arg(&gnu)
        .arg("."));
    assert!(std::fs::read(&gnu).unwrap() == std::fs::read(layer.join("layer.tar")).unwrap());
    let checksum = stdout(
        stevedore()
            .arg("tarsum")
            .stdin(std::fs::File::open(&gnu).unwrap()),
    );
    let json = read_json(&layer.join("json"));
    assert_eq!(json["checksum"], checksum.trim());
    assert_eq!(
        std::fs::read_to_string(layer.join("VERSION")).unwrap(),
        "1.0"
    );
    let jshon =
        stdout(Command::new("jshon").stdin(std::fs::File::open(layer.join("json")).unwrap()));
    assert_eq!(std::fs::read_to_string(layer.join("json")).unwrap(), jshon);
}

#[test]
fn build_image_runs_and_has_nixpkgs_layout() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("bash-image", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "Hello, world!\n");
    let m = manifest(&tar);
    let layer_tar = m[0]["Layers"][0].as_str().unwrap().to_string();
    let id = layer_tar.trim_end_matches("/layer.tar").to_string();
    let json_bytes = tar_member(&tar, &format!("{id}/json"));
    let json: Value = serde_json::from_slice(&json_bytes).unwrap();
    assert_eq!(json["id"], id.as_str());
    assert_eq!(json["Size"], tar_member(&tar, &layer_tar).len());
    assert_eq!(tar_member(&tar, &format!("{id}/VERSION")), b"1.0");
    let repos: Value = serde_json::from_slice(&tar_member(&tar, "repositories")).unwrap();
    assert_eq!(repos, serde_json::json!({"bash": {"latest": id}}));
    let config_name = m[0]["Config"].as_str().unwrap();
    let config_bytes = tar_member(&tar, config_name);
    let jq = run(Command::new("jq")
        .arg(".")
        .arg(write_tmp(dir.path(), "c.json", &config_bytes)))
    .stdout;
    assert_eq!(config_bytes, jq, "jq's format");
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    let keys: Vec<&String> = config.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "architecture",
            "config",
            "created",
            "os",
            "preferLocalBuild",
            "variant",
            "rootfs",
            "history"
        ]
    );
    assert_eq!(config["config"]["Env"], serde_json::json!([]));
    assert_eq!(config["created"], "1970-01-01T00:00:01Z", "a stable date");
    let layer_bytes = tar_member(&tar, &layer_tar);
    use sha2::Digest;
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&layer_bytes)))
    );
    let listing = stdout(Command::new("tar").arg("-tvf").arg(&tar));
    assert!(
        listing.lines().all(|l| l.contains(" root/root ")),
        "{listing}"
    );
    assert!(
        listing.lines().next().unwrap().starts_with("dr-xr-xr-x")
            && listing.lines().next().unwrap().ends_with(" ./")
    );
    let inner = stdout(Command::new("tar").arg("-tf").arg(write_tmp(
        dir.path(),
        "l.tar",
        &tar_member(&tar, &layer_tar),
    )));
    assert!(
        inner.contains("\n./nix/\n./nix/store/\nnix/store/"),
        "{inner}"
    );
}

#[test]
fn build_image_chains_apply_upper_layers_last() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("layers-order", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "layer1\nlayer2\nlayer3\n");
    let m = manifest(&tar);
    assert_eq!(m[0]["Layers"].as_array().unwrap().len(), 3);
    let l2 = decompressed(&build("layer2"), dir.path(), "l2.tar");
    let parent_config = manifest(&l2)[0]["Config"]
        .as_str()
        .unwrap()
        .trim_end_matches(".json")
        .to_string();
    let top = m[0]["Layers"][2]
        .as_str()
        .unwrap()
        .trim_end_matches("/layer.tar")
        .to_string();
    let json: Value = serde_json::from_slice(&tar_member(&tar, &format!("{top}/json"))).unwrap();
    assert_eq!(json["parent"], parent_config.as_str());
}

#[test]
fn build_image_env_is_appended_to_the_base_env() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("env-child", dir.path());
    assert_eq!(
        config(&tar)["config"]["Env"],
        serde_json::json!([
            "FROM_PARENT=true",
            "LAST_LAYER=parent",
            "FROM_CHILD=true",
            "LAST_LAYER=child"
        ])
    );
    let out = run_image(&tar, dir.path());
    assert!(
        out.contains("FROM_PARENT=true\n")
            && out.contains("FROM_CHILD=true\n")
            && out.contains("LAST_LAYER=child\n"),
        "{out}"
    );
}

#[test]
fn build_image_tags_names_compressors_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let tag = eval("build-no-tag.imageTag");
    let tar = archive("build-no-tag", dir.path());
    assert_eq!(
        manifest(&tar)[0]["RepoTags"],
        serde_json::json!([format!("bash-no-tag:{tag}")])
    );
    for attr in ["build-uncompressed", "build-zstd", "build-prefixed"] {
        let tar = archive(attr, dir.path());
        assert_eq!(
            run_image(&tar, &dir.path().join(attr)),
            "Hello, world!\n",
            "{attr}"
        );
    }
    assert!(build("build-uncompressed")
        .to_string_lossy()
        .ends_with("docker-image-bash-uncompressed.tar"));
    assert!(build("build-zstd").to_string_lossy().ends_with(".tar.zst"));
    let prefixed = archive("build-prefixed", dir.path());
    assert_eq!(
        manifest(&prefixed)[0]["RepoTags"],
        serde_json::json!(["registry-1.docker.io/image:latest"])
    );
    assert!(String::from_utf8(tar_member(&prefixed, "repositories"))
        .unwrap()
        .contains("\"registry-1.docker.io\\/image\""));
    let with_path = archive("build-with-path", dir.path());
    assert_eq!(
        run_image(&with_path, &dir.path().join("p")),
        "hello from test-dummy\n"
    );
    assert_eq!(
        config(&archive("build-arm64", dir.path()))["architecture"],
        "arm64"
    );
    let now = config(&archive("build-now", dir.path()));
    let created = now["created"].as_str().unwrap().to_string();
    assert!(
        created.ends_with("+00:00") && !created.starts_with("1970"),
        "{created}"
    );
    assert_eq!(now["config"]["Labels"]["created"], "now");
    assert_eq!(now["history"][0]["created"], created.as_str());
}

#[test]
fn build_image_and_layered_images_stack_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let on_layered = archive("build-on-layered", dir.path());
    assert_eq!(
        manifest(&on_layered)[0]["Layers"].as_array().unwrap().len(),
        4
    );
    assert_eq!(
        run_image(&on_layered, &dir.path().join("a")),
        "This is an example file from extraCommands\non-top\n"
    );
    let on_build = archive("layered-on-build", dir.path());
    assert_eq!(
        run_image(&on_build, &dir.path().join("b")),
        "greetings from both\n"
    );
}

#[test]
fn build_image_with_nix_db() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("build-nix-db", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "Hello, world!\n");
    let rootfs = dir.path().join("bundle/rootfs");
    let store = format!("local?root={}", rootfs.display());
    run(Command::new("nix-store").args(["--store", &store, "--verify", "--check-contents"]));
    let refs = stdout(
        Command::new("nix-store")
            .args(["--store", &store, "-q", "--references"])
            .arg(build("hello")),
    );
    assert_eq!(refs.trim(), build("busybox").display().to_string());
}

#[test]
fn build_image_argument_errors() {
    let _nix = NIX.lock().unwrap_or_else(|e| e.into_inner());
    let eval_err = |args: &str| {
        let expr = format!(
            "((import {}/tests/nix/tools.nix {{ stevedoreBin = \"/dev/null\"; }}).dockerTools.buildImage {{ name = \"x\"; {args} }}).drvPath",
            root().display()
        );
        let out = Command::new("nix-instantiate")
            .args(["--eval", "-E", &expr])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(eval_err("contents = [ ]; copyToRoot = [ ];")
        .contains("You can not specify both contents and copyToRoot"));
}

#[test]
fn build_image_closure_append_equals_gnu_tar_append() {
    // The layer's closure is appended as `tar -r` appends a file list: every path of the
    // closure (find) not already in the layer or the base, sorted in C order, with
    // ./nix and ./nix/store (0555) when the closure has more than one path.
    let dir = tempfile::tempdir().unwrap();
    let image = archive("bash-image", dir.path());
    let layer = build("bash-image.layer");
    let layer_str = layer.display().to_string();
    let closure = stdout(Command::new("nix-store").arg("-qR").arg(&layer));
    let mut files: Vec<String> = Vec::new();
    for path in closure.lines() {
        files.extend(
            stdout(Command::new("find").arg(path))
                .lines()
                .map(String::from),
        );
    }
    let in_layer: Vec<String> = stdout(Command::new("tar").arg("-tf").arg(layer.join("layer.tar")))
        .lines()
        .map(|l| format!("/{}", l.trim_start_matches("./").trim_end_matches('/')))
        .collect();
    files.retain(|f| !f.contains(&layer_str) && !in_layer.contains(f));
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("nix/store")).unwrap();
    run(Command::new("chmod")
        .args(["-R", "555"])
        .arg(work.join("nix")));
    files.push("./nix".into());
    files.push("./nix/store".into());
    files.sort();
    files.dedup();
    std::fs::write(dir.path().join("newFiles"), files.join("\n") + "\n").unwrap();
    let ours = dir.path().join("appended.tar");
    std::fs::copy(layer.join("layer.tar"), &ours).unwrap();
    run(Command::new("chmod").arg("u+w").arg(&ours));
    run(Command::new("tar")
        .current_dir(&work)
        .arg("-rpf")
        .arg(&ours)
        .args([
            "--hard-dereference",
            "--sort=name",
            "--mtime=@315532800",
            "--owner=0",
            "--group=0",
        ])
        .args(["--no-recursion", "--verbatim-files-from", "--files-from"])
        .arg(dir.path().join("newFiles")));
    let member = manifest(&image)[0]["Layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::fs::read(&ours).unwrap() == tar_member(&image, &member));
}

#[test]
fn images_run_under_containerd_and_runc() {
    let dir = tempfile::tempdir().unwrap();
    let ctd = Containerd::start();
    for (attr, reference, expected) in [
        (
            "layered-image",
            "docker.io/library/layered-image:latest",
            "Hello, world!\nThis is an example file from extraCommands\n",
        ),
        (
            "bash-image",
            "docker.io/library/bash:latest",
            "Hello, world!\n",
        ),
        (
            "layers-order",
            "docker.io/library/l3:latest",
            "layer1\nlayer2\nlayer3\n",
        ),
        (
            "stream-layered",
            "docker.io/library/stream-layered:latest",
            "Hello, world!\n",
        ),
    ] {
        let tar = archive(attr, dir.path());
        run(ctd.ctr().args(["images", "import"]).arg(&tar));
        let out = stdout(
            ctd.ctr()
                .args(["run", "--rm", reference, &format!("t-{attr}")]),
        );
        assert_eq!(out, expected, "{attr}");
    }
}

#[test]
fn run_as_root_without_a_vm() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("root3", dir.path());
    // Upper layers win, the scripts ran in order over their bases, a file deleted by the
    // last script is gone, and a chown made by a script persists.
    assert_eq!(
        run_image(&tar, dir.path()),
        "layer2\nlayer3\nabc\nlayer1-deleted\n1000:1000\n"
    );
    let m = manifest(&tar);
    let top = m[0]["Layers"][2].as_str().unwrap().to_string();
    let listing = stdout(Command::new("tar").arg("-tvf").arg(write_tmp(
        dir.path(),
        "top.tar",
        &tar_member(&tar, &top),
    )));
    assert!(listing.contains("./tmp/.wh.layer1"), "{listing}");
    let second = m[0]["Layers"][1].as_str().unwrap().to_string();
    let listing = stdout(
        Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(write_tmp(
                dir.path(),
                "second.tar",
                &tar_member(&tar, &second),
            )),
    );
    assert!(
        listing
            .lines()
            .any(|l| l.contains(" 1000/1000 ") && l.ends_with("./home/alice/")),
        "{listing}"
    );
}

#[test]
fn run_as_root_ignores_from_image_name_and_tag() {
    // As nixpkgs' runWithOverlay: the base is the first image, and a name:tag that
    // matches nothing is not an error.
    let dir = tempfile::tempdir().unwrap();
    let named = archive("root-unmatched", dir.path());
    assert_eq!(sha256sum(&named), sha256sum(&archive("root3", dir.path())));
}

#[test]
fn base_images_may_repeat_a_layer() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("on-repeated-base", dir.path());
    assert_eq!(run_image(&tar, dir.path()), "adlayer1\n");
    assert_eq!(manifest(&tar)[0]["Layers"].as_array().unwrap().len(), 3);
}

#[test]
fn nix_shell_images_enter_the_derivation_environment() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive("nix-shell-run", dir.path());
    let c = config(&tar)["config"].clone();
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/build");
    let out = run_image(&tar, dir.path());
    // The derivation's output is not in the image; buildDerivation builds it there.
    assert_eq!(out, "from the shell image|a b|1|passed as a file|/build|/build|1000:1000\nbuilding from the shell image\n");
    let built = archive("nix-shell-build", dir.path());
    assert!(build("nix-shell-build")
        .to_string_lossy()
        .ends_with("hello-shell-env.tar.gz"));
    let cmd = config(&built)["config"]["Cmd"].clone();
    assert_eq!(cmd[1], "--rcfile");
}

#[test]
fn build_images_equal_nixpkgs_buildimage_output() {
    // Golden digests from nixpkgs' own buildImage steps run with the real tools on the
    // same inputs (tests/data/README.md).
    let expected = read_json(&root().join("tests/data/build-image/expected.json"));
    let dir = tempfile::tempdir().unwrap();
    for (attr, digest) in expected.as_object().unwrap() {
        let tar = decompressed(&build(attr), dir.path(), &format!("{attr}.tar"));
        assert_eq!(sha256sum(&tar), digest.as_str().unwrap(), "{attr}");
    }
}

/// `tar -tv` of the top layer of a built buildImage archive.
fn top_layer_listing(attr: &str, dir: &Path, numeric: bool) -> String {
    let tar = archive(attr, dir);
    let layers = manifest(&tar)[0]["Layers"].clone();
    let top = layers
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let layer = write_tmp(dir, &format!("{attr}-top.tar"), &tar_member(&tar, &top));
    let mut cmd = Command::new("tar");
    if numeric {
        cmd.arg("--numeric-owner");
    }
    stdout(cmd.arg("-tvf").arg(layer))
}

#[test]
fn build_image_uid_gid_and_dirlinks() {
    let dir = tempfile::tempdir().unwrap();
    // --owner/--group apply to the layer's own files, named as the build sandbox names
    // them; the appended store paths are root's.
    let names = top_layer_listing("build-owner", dir.path(), false);
    assert!(
        names
            .lines()
            .any(|l| l.contains(" nixbld/nixbld ") && l.ends_with(" ./bin/")),
        "{names}"
    );
    assert!(
        names
            .lines()
            .any(|l| l.contains(" root/root ") && l.contains(" nix/store/")),
        "{names}"
    );
    let numeric = top_layer_listing("build-owner", dir.path(), true);
    assert!(
        numeric
            .lines()
            .any(|l| l.contains(" 1000/100 ") && l.ends_with(" ./bin/")),
        "{numeric}"
    );
    // rsync -k copies a symlink to a directory as the directory; -K keeps the link.
    let copied = top_layer_listing("build-dirlinks", dir.path(), false);
    assert!(
        copied
            .lines()
            .any(|l| l.starts_with('d') && l.ends_with(" ./tools/")),
        "{copied}"
    );
    assert!(copied.contains("./tools/hello"), "{copied}");
    let kept = top_layer_listing("build-keep-dirlinks", dir.path(), false);
    assert!(
        kept.lines()
            .any(|l| l.starts_with('l') && l.contains(" ./tools -> ")),
        "{kept}"
    );
}

/// The builder logs of the derivations stevedore's builders made for `attr` (those run
/// by bash; the fixtures' own use /bin/sh), by derivation name.
fn step_logs(attr: &str) -> Vec<(String, String)> {
    build(attr);
    let drv = stdout(nix_args(&mut Command::new("nix-instantiate")).args(["-A", attr]));
    let closure = stdout(Command::new("nix-store").args(["-qR", drv.trim()]));
    let mut logs = Vec::new();
    for d in closure.lines().filter(|d| d.ends_with(".drv")) {
        // Derive(outputs, inputDrvs, inputSrcs, "system", "builder", ...)
        let text = std::fs::read_to_string(d).unwrap();
        let system = stdout(Command::new("nix-instantiate").args([
            "--eval",
            "-E",
            "builtins.currentSystem",
        ]));
        let after = format!("{},\"", system.trim());
        let builder = text.split(&after).nth(1).and_then(|t| t.split('"').next());
        if !builder.is_some_and(|b| b.ends_with("/bash")) {
            continue;
        }
        let out = Command::new("nix-store")
            .args(["--read-log", d])
            .output()
            .unwrap();
        if out.status.success() {
            logs.push((
                d.to_string(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
        }
    }
    logs
}

#[test]
fn build_logs_say_what_was_built_and_nothing_alarming() {
    for attr in [
        "layered-image",
        "root3",
        "build-now",
        "stream-layered",
        "fakechroot",
    ] {
        let logs = step_logs(attr);
        assert!(!logs.is_empty(), "{attr}: no build logs");
        for (drv, log) in &logs {
            let lower = log.to_lowercase();
            for bad in ["not found", "error", "warning", "no such file"] {
                assert!(!lower.contains(bad), "{drv}: {bad:?} in its log:\n{log}");
            }
        }
        let summary = regex_like_summary(&logs);
        assert!(
            summary,
            "{attr}: no one-line summary of the image in {logs:#?}"
        );
    }
}

/// Whether some log has a line `stevedore: NAME: N layer(s)…, SIZE…, in T s`.
fn regex_like_summary(logs: &[(String, String)]) -> bool {
    logs.iter().flat_map(|(_, l)| l.lines()).any(|line| {
        line.starts_with("stevedore: ")
            && (line.contains(" layers")
                || line.contains(" layer,")
                || line.contains(" store layer"))
            && line.contains("iB")
            && line.ends_with(" s")
    })
}

#[test]
fn every_image_has_a_copy_to_script() {
    // passthru.copyTo: `copy-to DEST` runs `stevedore copy` on the image; a layered image
    // copies from its conf (the script names the conf, not a docker archive).
    let dir = tempfile::tempdir().unwrap();
    for attr in ["stream-layered", "layered-image", "bash-image", "merged"] {
        let script = build(&format!("{attr}.copyTo")).join("bin/copy-to");
        let text = std::fs::read_to_string(&script).unwrap();
        assert_eq!(
            text.contains("-conf.json"),
            attr.contains("layered"),
            "{text}"
        );
        let layout = dir.path().join(attr);
        run(Command::new(&script).arg(format!("oci:{}:v1", layout.display())));
        let inspected: Value = serde_json::from_str(&stdout(
            Command::new("skopeo")
                .args(["inspect", "--config"])
                .arg(format!("oci:{}:v1", layout.display())),
        ))
        .unwrap();
        // A merged archive's first image is its first input's.
        let image = archive(
            if attr == "merged" {
                "layered-image"
            } else {
                attr
            },
            dir.path(),
        );
        assert_eq!(inspected["rootfs"], config(&image)["rootfs"], "{attr}");
    }
}
