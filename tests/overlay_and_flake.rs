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
        "let p = {PKGS}; in [ p.dockerTools.pullImage (p.dockerTools.buildImage {{ name = \"y\"; }}).name p.stevedore.name \
         (p.dockerTools.buildLayeredImage {{ name = \"x\"; }}).name ]"
    ));
    assert_eq!(
        v,
        serde_json::json!([
            "prev pullImage",
            "docker-image-y.tar.gz",
            "stevedore-0.1.0",
            "x.tar.gz"
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
            "mergeImages",
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
