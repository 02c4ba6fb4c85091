//! `stevedore export-image` (exportImage) flattens a docker archive into the root
//! filesystem umoci unpacks from it, whiteouts and opaque directories included, and
//! refuses members that would escape the image or are device nodes.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes a docker archive with Python's tarfile: each layer a list of
/// `(name, type, content or link target)` with type one of f, d, l, c (char device).
fn docker_archive(dir: &Path, layers: &str) -> PathBuf {
    let out = dir.join("image.tar");
    let script = format!(
        r#"
import hashlib, io, json, tarfile
layers = {layers}
def layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in entries:
            i = tarfile.TarInfo(name); i.mtime = 1
            if kind == "f":
                i.size = len(data); i.mode = 0o640; t.addfile(i, io.BytesIO(data.encode()))
            elif kind == "d":
                i.type = tarfile.DIRTYPE; i.mode = 0o750; t.addfile(i)
            elif kind == "l":
                i.type = tarfile.SYMTYPE; i.linkname = data; t.addfile(i)
            elif kind == "c":
                i.type = tarfile.CHRTYPE; i.devmajor = 1; i.devminor = 3; t.addfile(i)
    return buf.getvalue()
blobs = [layer(l) for l in layers]
ids = [hashlib.sha256(b).hexdigest() for b in blobs]
config = json.dumps({{"architecture": "amd64", "os": "linux", "config": {{}},
    "rootfs": {{"type": "layers", "diff_ids": ["sha256:" + i for i in ids]}}}}).encode()
cname = hashlib.sha256(config).hexdigest() + ".json"
manifest = json.dumps([{{"Config": cname, "RepoTags": ["t:1"], "Layers": [i + "/layer.tar" for i in ids]}}]).encode()
with tarfile.open({out:?}, "w") as t:
    for name, data in [(i + "/layer.tar", b) for i, b in zip(ids, blobs)] + [(cname, config), ("manifest.json", manifest)]:
        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
"#,
        out = out.display().to_string()
    );
    run(Command::new("python3").args(["-c", &script]));
    out
}

fn export(archive: &Path, out: &Path) -> std::process::Output {
    stevedore()
        .arg("export-image")
        .arg(archive)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

fn extract(tar: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    run(Command::new("tar")
        .arg("-xpf")
        .arg(tar)
        .arg("-C")
        .arg(dir)
        .arg("--same-owner"));
    dir.to_path_buf()
}

#[test]
fn whiteouts_and_opaque_directories_match_umoci() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = docker_archive(
        tmp.path(),
        r#"[
          [("a", "d", ""), ("a/x", "f", "x1"), ("a/y", "f", "y1"), ("b", "d", ""), ("b/z", "f", "z1"),
           ("c", "d", ""), ("c/w", "f", "w1"), ("keep", "l", "a/y"), ("/abs", "f", "absolute")],
          [("a/.wh.x", "f", ""), ("b/.wh..wh..opq", "f", ""), ("b/new", "f", "n2"), (".wh.c", "f", ""),
           ("a/y", "f", "y2"), ("d/e/f", "f", "implicit parents")]
        ]"#,
    );
    let out = tmp.path().join("rootfs.tar");
    assert!(export(&archive, &out).status.success());
    let ours = extract(&out, &tmp.path().join("ours"));
    let theirs = unpack(&archive, &tmp.path().join("umoci"));
    assert_same_tree(&theirs, &ours);
    assert_eq!(std::fs::read_to_string(ours.join("a/y")).unwrap(), "y2");
    assert!(!ours.join("a/x").exists() && !ours.join("b/z").exists() && !ours.join("c").exists());
    let listing = stdout(Command::new("tar").arg("-tf").arg(&out));
    assert!(
        listing.starts_with("./\n./a/\n./a/y\n./abs\n./b/\n./b/new\n"),
        "{listing}"
    );
}

#[test]
fn layered_image_exports_like_umoci_unpacks() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("image.tar");
    stream_to(&golden_conf("from_image", tmp.path()), &archive);
    let out = tmp.path().join("rootfs.tar");
    assert!(export(&archive, &out).status.success());
    let ours = extract(&out, &tmp.path().join("ours"));
    let theirs = unpack(&archive, &tmp.path().join("umoci"));
    assert_same_tree(&theirs, &ours);
    assert!(ours.join("etc/motd").exists());
}

#[test]
fn escaping_members_and_devices_are_refused() {
    let cases = [
        (r#"[[("../evil", "f", "x")]]"#, "'..'"),
        (
            r#"[[("link", "l", "/etc")], [("link/passwd", "f", "x")]]"#,
            "goes through the symlink /link",
        ),
        (r#"[[("dev/null", "c", "")]]"#, "is a device node"),
        (
            r#"[[("a", "f", "x"), ("a/b", "f", "y")]]"#,
            "below a non-directory",
        ),
    ];
    for (layers, why) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let archive = docker_archive(tmp.path(), layers);
        let out_dir = tmp.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let result = export(&archive, &out_dir.join("rootfs.tar"));
        let err = String::from_utf8_lossy(&result.stderr);
        assert!(
            !result.status.success() && err.contains(why),
            "{layers}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    }
}
