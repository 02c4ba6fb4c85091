//! Bad input gives one clear line naming the input, a non-zero exit, and no output
//! file left where the good one would go.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// Runs a failing stevedore command; returns its one-line error.
fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("stevedore: "), "{err}");
    err
}

/// build-layered must fail and leave nothing in the output directory.
fn build_fails(conf: &Path, dir: &Path) -> String {
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let err = fails(
        stevedore()
            .arg("build-layered")
            .arg(conf)
            .arg("-o")
            .arg(out_dir.join("image.tar")),
    );
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        0,
        "output left behind"
    );
    let streamed = stevedore()
        .arg("stream-layered")
        .arg(conf)
        .output()
        .unwrap();
    assert!(!streamed.status.success() && streamed.stdout.is_empty());
    err
}

fn edited_conf(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let mut conf = read_json(&golden_conf("default", dir));
    edit(&mut conf);
    let path = dir.join("edited.json");
    std::fs::write(&path, conf.to_string()).unwrap();
    path
}

#[test]
fn missing_store_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = "/nix/store/00000000000000000000000000000000-missing";
    let conf = edited_conf(dir.path(), |c| {
        c["store_layers"][0] = serde_json::json!([missing])
    });
    assert!(build_fails(&conf, dir.path()).contains(missing));
}

#[test]
fn path_outside_store_dir() {
    let dir = tempfile::tempdir().unwrap();
    let conf = edited_conf(dir.path(), |c| {
        c["store_layers"][0] = serde_json::json!(["/etc"])
    });
    let err = build_fails(&conf, dir.path());
    assert!(
        err.contains("/etc") && err.contains("outside store_dir"),
        "{err}"
    );
}

#[test]
fn malformed_conf() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    assert!(build_fails(&bad, dir.path()).contains("bad.json"));
    let no_layers = edited_conf(dir.path(), |c| {
        c.as_object_mut().unwrap().remove("store_layers");
    });
    assert!(build_fails(&no_layers, dir.path()).contains("store_layers"));
    let bad_uid = edited_conf(dir.path(), |c| c["uid"] = serde_json::json!("root"));
    assert!(build_fails(&bad_uid, dir.path()).contains("\"root\" is not an integer"));
    let bad_time = edited_conf(dir.path(), |c| {
        c["created"] = serde_json::json!("yesterday")
    });
    assert!(build_fails(&bad_time, dir.path()).contains("yesterday"));
}

#[test]
fn base_image_that_is_not_a_docker_archive() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let conf = edited_conf(dir.path(), |c| c["from_image"] = serde_json::json!(junk));
    assert!(build_fails(&conf, dir.path()).contains("junk.tar"));
    let plain = dir.path().join("plain.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&plain)
        .arg("-C")
        .arg(dir.path())
        .arg("junk.tar"));
    let conf = edited_conf(dir.path(), |c| c["from_image"] = serde_json::json!(plain));
    let err = build_fails(&conf, dir.path());
    assert!(
        err.contains("plain.tar") && err.contains("not a docker archive"),
        "{err}"
    );
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = store.join("0c8v8ymkq2sg4d8lbf2fx6pkr1fpjv3d-secret");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("key"), "x").unwrap();
    let conf = edited_conf(dir.path(), |c| {
        c["store_dir"] = serde_json::json!(store);
        c["store_layers"] = serde_json::json!([[path]]);
    });
    // Root reads any file, so run as nobody when we are root; nobody must reach the rest.
    run(Command::new("chmod").args(["-R", "a+rwX"]).arg(dir.path()));
    run(Command::new("chmod").arg("000").arg(path.join("key")));
    let as_nobody = |args: &[&std::ffi::OsStr]| {
        // SAFETY: geteuid has no preconditions.
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_stevedore"),
            ]);
            c
        } else {
            stevedore()
        };
        cmd.args(args);
        cmd
    };
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    run(Command::new("chmod").args(["-R", "a+rwx"]).arg(&out_dir));
    let target = out_dir.join("image.tar");
    let err = fails(&mut as_nobody(&[
        "build-layered".as_ref(),
        conf.as_os_str(),
        "-o".as_ref(),
        target.as_os_str(),
    ]));
    assert!(
        err.contains("key") && err.contains("Permission denied"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
}

#[test]
fn malformed_graph() {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("graph.json");
    std::fs::write(
        &graph,
        r#"[{"path": "/nix/store/not-a-store-path", "references": []}]"#,
    )
    .unwrap();
    let err = fails(stevedore().arg("plan").arg(&graph));
    assert!(
        err.contains("graph.json") && err.contains("not-a-store-path"),
        "{err}"
    );
    std::fs::write(&graph, "[1, 2]").unwrap();
    assert!(fails(stevedore().arg("plan").arg(&graph)).contains("graph.json"));
}

#[test]
fn unreadable_customisation_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = fails(
        stevedore()
            .arg("customisation-layer")
            .arg(dir.path().join("nope"))
            .arg("-o")
            .arg(&out),
    );
    assert!(err.contains("nope"), "{err}");
    assert!(!out.join("layer.tar").exists());
}
