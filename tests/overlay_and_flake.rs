//! overlay.nix and flake.nix, evaluated against a stand-in nixpkgs
//! (tests/nix/mock-nixpkgs): the overlay replaces the layered builders and keeps the
//! rest of dockerTools, the flake's packages, lib and checks build, and results are
//! overridable and carry nixpkgs' passthru (a user's passthru goes on the stream, as
//! in nixpkgs, where buildLayeredImage's own passthru is only imageTag and stream).

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

fn nix(tool: &str, expr: &str, extra: &[&str]) -> String {
    stdout(
        Command::new(tool)
            .current_dir(root())
            .env("STEVEDORE_BIN", env!("CARGO_BIN_EXE_stevedore"))
            .args(["-E", expr])
            .args(extra)
            .args(NIX_OPTIONS),
    )
}

fn eval(expr: &str) -> serde_json::Value {
    serde_json::from_str(&nix(
        "nix-instantiate",
        expr,
        &["--eval", "--strict", "--json"],
    ))
    .unwrap()
}

fn build(expr: &str) -> PathBuf {
    PathBuf::from(nix("nix-build", expr, &["--no-out-link"]).trim())
}

const PKGS: &str = "(import ./tests/nix/mock-nixpkgs { overlays = [ (import ./overlay.nix) ]; })";
const FLAKE: &str = "(import ./tests/nix/flake-outputs.nix)";

#[test]
fn overlay_replaces_layered_builders_and_keeps_the_rest() {
    let v = eval(&format!(
        "let p = {PKGS}; in [ p.dockerTools.tarsum (p.dockerTools.buildImage {{ name = \"y\"; }}).name p.stevedore.name \
         (p.dockerTools.buildLayeredImage {{ name = \"x\"; }}).name \
         (p.dockerTools.pullImage {{ imageName = \"r.io/a\"; imageDigest = \"sha256:0\"; hash = \"\"; }}).name \
         (builtins.isFunction p.dockerTools.imageIndex) \
         ((import ./tests/nix/mock-nixpkgs {{ system = \"aarch64-linux\"; overlays = [ (import ./overlay.nix) ]; }}).dockerTools.pullImage \
           {{ imageName = \"r.io/a\"; imageDigest = \"sha256:0\"; hash = \"\"; }}).arch ]"
    ));
    assert_eq!(
        v,
        serde_json::json!([
            "prev tarsum",
            "docker-image-y.tar.gz",
            "stevedore-0.1.0",
            "x.tar.gz",
            "docker-image-r.io-a-latest.tar",
            true,
            "arm64"
        ])
    );
}

#[test]
fn flake_checks_build_images_that_run() {
    let dir = tempfile::tempdir().unwrap();
    let image = build(&format!(
        "{FLAKE}.checks.${{builtins.currentSystem}}.hello-layered"
    ));
    let tar = dir.path().join("hello.tar");
    std::fs::write(
        &tar,
        run(Command::new("gzip").arg("-dc").arg(&image)).stdout,
    )
    .unwrap();
    assert_eq!(run_image(&tar, &dir.path().join("a")), "Hello, world!\n");
    let script = build(&format!(
        "{FLAKE}.checks.${{builtins.currentSystem}}.hello-stream"
    ));
    let streamed = dir.path().join("stream.tar");
    std::fs::write(&streamed, run(&mut Command::new(&script)).stdout).unwrap();
    assert_eq!(
        run_image(&streamed, &dir.path().join("b")),
        "Hello, world!\n"
    );
    let systems = eval(&format!("builtins.attrNames {FLAKE}.packages"));
    assert_eq!(
        systems,
        serde_json::json!(["aarch64-linux", "x86_64-linux"])
    );
}

#[test]
fn flake_lib_gives_the_builders_for_a_pkgs() {
    let v = eval(&format!(
        "let p = import ./tests/nix/mock-nixpkgs {{ }}; t = {FLAKE}.lib.dockerTools p; in \
         builtins.attrNames t"
    ));
    assert_eq!(
        v,
        serde_json::json!([
            "binSh",
            "buildImage",
            "buildImageWithNixDb",
            "buildLayeredImage",
            "buildLayeredImageWithNixDb",
            "buildNixShellImage",
            "caCertificates",
            "exportImage",
            "fakeNss",
            "imageIndex",
            "mergeImages",
            "pullImage",
            "shadowSetup",
            "streamLayeredImage",
            "streamNixShellImage",
            "usrBinEnv"
        ])
    );
}

#[test]
fn results_are_overridable_and_carry_passthru() {
    let v = eval(&format!(
        "let t = {PKGS}.dockerTools; \
             img = t.buildLayeredImage {{ name = \"Reg.io/App\"; tag = \"v1\"; passthru.extra = 42; meta.description = \"d\"; }}; \
             s = t.streamLayeredImage {{ name = \"s\"; tag = \"t\"; passthru.extra = 7; }}; \
             o = img.override {{ tag = \"v2\"; }}; \
             f = img.override (old: {{ tag = old.tag + \"-f\"; }}); \
         in [ img.imageName img.imageTag o.imageTag f.imageTag (img ? extra) img.stream.passthru.extra \
              img.meta.description img.stream.isExe s.isExe s.passthru.extra s.imageTag \
              (builtins.baseNameOf s.conf.name) img.name ]"
    ));
    assert_eq!(
        v,
        serde_json::json!([
            "reg.io/app",
            "v1",
            "v2",
            "v1-f",
            false,
            42,
            "d",
            true,
            true,
            7,
            "t",
            "s-conf.json",
            "App.tar.gz"
        ])
    );
}

#[test]
fn max_layers_below_two_is_refused_as_nixpkgs_does() {
    let out = Command::new("nix-instantiate")
        .current_dir(root())
        .env("STEVEDORE_BIN", env!("CARGO_BIN_EXE_stevedore"))
        .args(["--eval", "-E", &format!("({PKGS}.dockerTools.streamLayeredImage {{ name = \"x\"; maxLayers = 1; }}).drvPath")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the maxLayers argument of dockerTools.buildLayeredImage function must be greather than 1 (current value: 1)"), "{err}");
}

#[test]
fn stream_script_streams_a_conf_as_nixpkgs_one_does() {
    // nixpkgs: `${img.streamScript} ${img.conf} | docker load`.
    let dir = tempfile::tempdir().unwrap();
    let image = format!(
        "({PKGS}.dockerTools.streamLayeredImage {{ name = \"hello\"; tag = \"latest\"; \
         contents = [ {PKGS}.hello ]; config.Cmd = [ \"/bin/hello\" ]; }})"
    );
    let stream = build(&image);
    let script = build(&format!("{image}.streamScript"));
    let conf = build(&format!("{image}.conf"));
    let by_image = run(&mut Command::new(&stream)).stdout;
    let by_script = run(Command::new(&script).arg(&conf)).stdout;
    assert!(by_image == by_script, "the stream script's archive differs");
    let by_helper = run(stevedore().arg("stream-layered").arg(&conf)).stdout;
    assert!(
        by_image == by_helper,
        "stevedore stream-layered's archive differs"
    );
    let retagged = write_tmp(
        dir.path(),
        "retagged.tar",
        &run(Command::new(&script)
            .arg(&conf)
            .args(["--repo_tag", "other:tag"]))
        .stdout,
    );
    assert_eq!(
        manifest(&retagged)[0]["RepoTags"],
        serde_json::json!(["other:tag"])
    );
    assert_eq!(run_image(&retagged, dir.path()), "Hello, world!\n");
}

/// An image whose snippets use stdenv's tools and record the PATH they saw.
const TOOLS_ARGS: &str = r#"name = "tools"; tag = "latest";
  extraCommands = ''
    echo "$PATH" > extra-path
    printf 'a b\nc d\n' > data; sed -i s/a/A/ data; grep -q A data
    find . -name data > found; awk '{print $2}' data > awked
    tar -cf data.tar data; xz data.tar
  '';"#;

/// The tools' image, layered (with fakeRootCommands) or not (buildImage, runAsRoot).
fn tools_image(builders: &str, layered: bool) -> String {
    if layered {
        format!(
            "({builders}.buildLayeredImage {{ {TOOLS_ARGS} \
             fakeRootCommands = ''echo \"$PATH\" > fakeroot-path; printf 'x\\n' | sed s/x/y/ > sedded''; }})"
        )
    } else {
        format!(
            "({builders}.buildImage {{ {TOOLS_ARGS} \
             runAsRoot = ''echo \"$PATH\" > /root-path; printf 'x\\n' | sed s/x/z/ > /sedded''; }})"
        )
    }
}

/// A file of an image's root filesystem (flattened by `stevedore export-image`).
fn exported_bytes(image: &std::path::Path, dir: &std::path::Path, name: &str) -> Vec<u8> {
    let root = dir.join(format!(
        "{}.root.tar",
        image.file_name().unwrap().to_string_lossy()
    ));
    if !root.exists() {
        run(stevedore()
            .arg("export-image")
            .arg(image)
            .arg("-o")
            .arg(&root));
    }
    tar_member(&root, &format!("./{name}"))
}

fn exported_file(image: &std::path::Path, dir: &std::path::Path, name: &str) -> String {
    String::from_utf8(exported_bytes(image, dir, name)).unwrap()
}

#[test]
fn user_snippets_have_stdenv_tools_after_the_builders_own() {
    let dir = tempfile::tempdir().unwrap();
    let tools = eval(&format!(
        "builtins.concatStringsSep \":\" (map (p: \"${{p}}/bin\") {PKGS}.stdenv.initialPath)"
    ));
    let tools = tools.as_str().unwrap();
    let layered = tools_image(&format!("{PKGS}.dockerTools"), true);
    let built = build(&layered);
    let custom_path = eval(&format!(
        "{layered}.stream.conf.drvAttrs.customisationLayer.drvAttrs.PATH"
    ));
    let custom_path = custom_path.as_str().unwrap();
    assert_eq!(
        exported_file(&built, dir.path(), "extra-path"),
        format!("{custom_path}:{tools}\n")
    );
    // Under fakeroot, after what fakeroot's own wrapper adds (as nixpkgs' does).
    let fakeroot_path = exported_file(&built, dir.path(), "fakeroot-path");
    assert!(
        fakeroot_path.starts_with(custom_path) && fakeroot_path.ends_with(&format!(":{tools}\n")),
        "{fakeroot_path}"
    );
    assert_eq!(exported_file(&built, dir.path(), "awked"), "b\nd\n");
    assert_eq!(exported_file(&built, dir.path(), "found"), "./data\n");
    assert_eq!(exported_file(&built, dir.path(), "sedded"), "y\n");
    let xz = run(Command::new("xz").arg("-dc").arg(write_tmp(
        dir.path(),
        "data.tar.xz",
        &exported_bytes(&built, dir.path(), "data.tar.xz"),
    )));
    assert!(String::from_utf8_lossy(&xz.stdout).contains("A b\nc d\n"));

    // runAsRoot runs bash inside the image root: the mock's host-linked bash needs the
    // host's /usr and /lib bound there (hostPaths), which the overlay does not pass.
    let hosted = "(import ./nix/default.nix { inherit (p) stevedore bash coreutils fakeroot proot; \
                  shellTools = p.stdenv.initialPath; hostPaths = [ \"/usr\" \"/lib\" \"/lib64\" ]; })";
    let plain = build(&format!(
        "let p = {PKGS}; in {}",
        tools_image(hosted, false)
    ));
    assert!(exported_file(&plain, dir.path(), "extra-path").ends_with(&format!(":{tools}\n")));
    let root_path = exported_file(&plain, dir.path(), "root-path");
    assert!(
        root_path.ends_with(&format!("/bin:/bin:{tools}\n")),
        "{root_path}"
    );
    assert_eq!(exported_file(&plain, dir.path(), "sedded"), "z\n");
}

#[test]
fn shell_tools_change_no_builder_path() {
    // The same builders without shellTools: every derivation's PATH is the same, and a
    // snippet that needs sed fails (the tools come from shellTools alone).
    let bare =
        "(import ./nix/default.nix { inherit (p) stevedore bash coreutils fakeroot proot; })";
    let with = "(import ./nix/default.nix { inherit (p) stevedore bash coreutils fakeroot proot; \
                shellTools = p.stdenv.initialPath; })";
    let paths = |builders: &str| {
        let layered = tools_image(builders, true);
        let plain = tools_image(builders, false);
        eval(&format!(
            "let p = {PKGS}; in map (d: d.drvAttrs.PATH) [ {layered}.stream.conf \
             {layered}.stream.conf.drvAttrs.customisationLayer {layered} {plain} {plain}.layer \
             {plain}.drvAttrs.baseJson ]"
        ))
    };
    assert_eq!(paths(bare), paths(with));
    let out = Command::new("nix-build")
        .current_dir(root())
        .env("STEVEDORE_BIN", env!("CARGO_BIN_EXE_stevedore"))
        .args(["--no-out-link", "-E"])
        .arg(format!("let p = {PKGS}; in {}", tools_image(bare, true)))
        .args(NIX_OPTIONS)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sed: command not found"), "{err}");
}

#[test]
fn flake_lib_nixery_builds_images_by_package_name_from_a_pkgs() {
    let out = build(&format!(
        "let p = import ./tests/nix/mock-nixpkgs {{ }}; in \
         {FLAKE}.lib.nixery p {{ packages = [ \"hello\" ]; }}"
    ));
    let output: serde_json::Value = read_json(&out);
    let layers = output["manifest"]["layers"].as_array().unwrap();
    // hello's closure in one or more store layers, then the customisation layer.
    assert!(layers.len() >= 2, "{output}");
    for layer in layers {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let path = output["layerLocations"][hex]["path"].as_str().unwrap();
        assert_eq!(sha256sum(std::path::Path::new(path)), hex);
    }
    let missing = build(&format!(
        "let p = import ./tests/nix/mock-nixpkgs {{ }}; in \
         {FLAKE}.lib.nixery p {{ packages = [ \"hello\" \"no-such-package\" ]; }}"
    ));
    assert_eq!(
        read_json(&missing),
        serde_json::json!({"error": "not_found", "pkgs": ["no-such-package"]})
    );
}
