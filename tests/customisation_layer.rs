//! The customisation layer equals GNU tar's output byte for byte (nixpkgs runs
//! `tar --sort=name --numeric-owner --mtime=@N --hard-dereference -cf layer.tar .`),
//! also under fakeroot, and symlink-join builds the tree lndir builds.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// A directory with the shapes GNU tar treats specially.
fn make_tree(root: &Path) {
    let long = "n".repeat(150);
    for d in [
        "empty",
        "sub/deeper",
        &format!("sub/{long}/{long}"),
        &"d".repeat(97),
        &"e".repeat(98),
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let files = [
        ("sub/file".to_string(), "content\n"),
        (format!("sub/{long}/{long}/{long}"), "deep\n"),
        ("x".repeat(98), "exactly 100 with ./\n"),
        ("y".repeat(99), "101 with ./\n"),
        ("héllo-wörld.txt".to_string(), "utf8\n"),
        (".hidden".to_string(), "dot\n"),
        ("a-b".to_string(), ""),
        ("a.b".to_string(), ""),
    ];
    for (name, text) in &files {
        std::fs::write(root.join(name), text).unwrap();
    }
    std::fs::write(root.join("big"), vec![7u8; 3 << 20]).unwrap();
    std::fs::hard_link(root.join("sub/file"), root.join("hardlink")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("dirlink")).unwrap();
    std::os::unix::fs::symlink("t".repeat(100), root.join("link100")).unwrap();
    std::os::unix::fs::symlink(
        format!("/nix/store/{}", "z".repeat(120)),
        root.join("longlink"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        format!("/{}", "q".repeat(120)),
        root.join(format!("both-{}", "w".repeat(110))),
    )
    .unwrap();
    let exe = root.join("sub/exe");
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    run(Command::new("chmod").arg("755").arg(&exe));
    run(Command::new("mkfifo").arg(root.join("fifo")));
}

fn gnu_tar(dir: &Path, out: &Path, extra: &[&str]) {
    run(Command::new("tar")
        .current_dir(dir)
        .args([
            "--sort=name",
            "--numeric-owner",
            "--mtime=@315532800",
            "--hard-dereference",
        ])
        .args(extra)
        .arg("-cf")
        .arg(out)
        .arg("."));
}

#[test]
fn matches_gnu_tar_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let ours = tmp.path().join("ours");
    run(stevedore()
        .arg("customisation-layer")
        .arg(&tree)
        .arg("-o")
        .arg(&ours)
        .args(["--owner", "0", "--group", "0"]));
    let theirs = tmp.path().join("gnu.tar");
    gnu_tar(&tree, &theirs, &["--owner=0", "--group=0"]);
    assert!(std::fs::read(&theirs).unwrap() == std::fs::read(ours.join("layer.tar")).unwrap());
    let checksum = std::fs::read_to_string(ours.join("checksum")).unwrap();
    assert_eq!(checksum.trim(), sha256sum(&theirs));
}

#[test]
fn mtime_comes_from_source_date_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("d/f"), "x").unwrap();
    let ours = tmp.path().join("ours");
    run(stevedore()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("customisation-layer")
        .arg(&tree)
        .arg("-o")
        .arg(&ours)
        .args(["--owner", "0", "--group", "0"]));
    let theirs = tmp.path().join("gnu.tar");
    // GNU tar takes the last --mtime given.
    gnu_tar(
        &tree,
        &theirs,
        &["--mtime=@1700000000", "--owner=0", "--group=0"],
    );
    assert!(std::fs::read(&theirs).unwrap() == std::fs::read(ours.join("layer.tar")).unwrap());
}

#[test]
fn fakeroot_ownership_persists_into_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("home/alice")).unwrap();
    std::fs::write(tree.join("home/alice/file"), "x").unwrap();
    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("gnu.tar");
    let script = format!(
        "set -e; /usr/bin/chown -R 1000:1000 {t}/home/alice; {s} customisation-layer {t} -o {o}; \
         cd {t} && tar --sort=name --numeric-owner --mtime=@315532800 --hard-dereference -cf {g} .",
        t = tree.display(),
        s = env!("CARGO_BIN_EXE_stevedore"),
        o = ours.display(),
        g = theirs.display()
    );
    run(Command::new("fakeroot").args(["sh", "-c", &script]));
    let bytes = std::fs::read(ours.join("layer.tar")).unwrap();
    assert!(std::fs::read(&theirs).unwrap() == bytes);
    let listing = stdout(
        Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(ours.join("layer.tar")),
    );
    assert!(
        listing
            .lines()
            .any(|l| l.contains("1000/1000") && l.ends_with("./home/alice/")),
        "{listing}"
    );
}

#[test]
fn fakeroot_state_file_gives_the_same_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("srv")).unwrap();
    std::fs::write(tree.join("srv/data"), "x").unwrap();
    let state = tmp.path().join("state");
    run(Command::new("fakeroot")
        .arg("-s")
        .arg(&state)
        .args(["sh", "-c"])
        .arg(format!(
            "/usr/bin/chown 12345:54321 {t}/srv/data && /usr/bin/chmod 600 {t}/srv/data",
            t = tree.display()
        )));
    // Files fakeroot has no record of are root's, whoever owns them really.
    std::fs::write(tree.join("untracked"), "y").unwrap();
    run(Command::new("chown")
        .arg("4242:4343")
        .arg(tree.join("untracked")));
    let ours = tmp.path().join("ours");
    run(stevedore()
        .arg("customisation-layer")
        .arg(&tree)
        .arg("-o")
        .arg(&ours)
        .arg("--fakeroot-state")
        .arg(&state));
    let theirs = tmp.path().join("gnu.tar");
    run(Command::new("fakeroot").arg("-i").arg(&state).args(["sh", "-c"])
        .arg(format!("cd {} && tar --sort=name --numeric-owner --mtime=@315532800 --hard-dereference -cf {} .", tree.display(), theirs.display())));
    assert!(std::fs::read(&theirs).unwrap() == std::fs::read(ours.join("layer.tar")).unwrap());
    let listing = stdout(
        Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&theirs),
    );
    assert!(listing.contains("-rw------- 12345/54321"), "{listing}");
    assert!(
        listing.contains(" 0/0 ") && listing.contains("./untracked"),
        "{listing}"
    );
    assert!(!listing.contains("4242"), "{listing}");
}

#[test]
fn symlink_join_builds_the_tree_lndir_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (root, files) in [
        (&a, ["bin/x", "share/doc/a", "etc/conf"]),
        (&b, ["bin/y", "share/doc/b", "etc/conf"]),
    ] {
        for f in files {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), f).unwrap();
        }
    }
    std::os::unix::fs::symlink("x", a.join("bin/x-alias")).unwrap();
    std::fs::write(b.join("backup~"), "skipped").unwrap();
    let ours = tmp.path().join("ours");
    run(stevedore().arg("symlink-join").arg(&ours).arg(&a).arg(&b));
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    for src in [&a, &b] {
        run(Command::new("lndir").arg("-silent").arg(src).arg(&theirs));
    }
    let (o, t) = (tmp.path().join("o.tar"), tmp.path().join("t.tar"));
    gnu_tar(&ours, &o, &["--owner=0", "--group=0"]);
    gnu_tar(&theirs, &t, &["--owner=0", "--group=0"]);
    assert!(std::fs::read(&o).unwrap() == std::fs::read(&t).unwrap());
    assert_eq!(
        std::fs::read_link(ours.join("etc/conf")).unwrap(),
        a.join("etc/conf")
    );
}

#[test]
fn image_layer_matches_gnu_tar_with_owner_names() {
    // buildImage's layer: no --numeric-owner, so GNU tar writes owner names, also in its
    // ././@LongLink records.
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    std::fs::remove_file(tree.join("fifo")).unwrap();
    let base = tmp.path().join("base.json");
    std::fs::write(&base, r#"{"architecture":"amd64","config":null,"created":"1970-01-01T00:00:01Z","os":"linux","preferLocalBuild":true,"variant":""}"#).unwrap();
    let ours = tmp.path().join("ours");
    run(stevedore()
        .arg("image-layer")
        .arg(&tree)
        .arg("-o")
        .arg(&ours)
        .arg("--base-json")
        .arg(&base));
    let theirs = tmp.path().join("gnu.tar");
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
        .arg(&theirs)
        .arg("."));
    assert!(std::fs::read(&theirs).unwrap() == std::fs::read(ours.join("layer.tar")).unwrap());
}
