//! The README's first command builds examples/hello.nix the way a user builds an image
//! (an expression calling dockerTools.buildLayeredImage); the image it makes runs.

mod common;
use common::*;
use std::process::Command;

#[test]
fn example_expression_builds_an_image_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let built = stdout(
        Command::new("nix-build")
            .arg(root().join("examples/hello.nix"))
            .args(["-A", "image", "--no-out-link", "--arg", "stevedoreBin"])
            .arg(format!("\"{}\"", env!("CARGO_BIN_EXE_stevedore")))
            .args(NIX_OPTIONS),
    );
    let tar = write_tmp(
        dir.path(),
        "hello.tar",
        &run(Command::new("gzip").arg("-dc").arg(built.trim())).stdout,
    );
    assert_eq!(manifest(&tar)[0]["RepoTags"][0], "hello-stevedore:latest");
    let out = run_image(&tar, dir.path());
    assert!(out.starts_with("Hello from a stevedore image ("), "{out}");
}
