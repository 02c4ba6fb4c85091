//! Images pass skopeo and umoci, and the unpacked root filesystem holds every store
//! file with its bytes, mode and link target, the customisation layer on top.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

#[test]
fn skopeo_reads_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    stream_to(&golden_conf("owner", dir.path()), &archive);
    let out = stdout(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", archive.display())),
    );
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["Architecture"], "arm64");
    assert_eq!(info["Layers"], expected("owner")["diff_ids"]);
}

#[test]
fn unpacked_rootfs_matches_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let conf = golden_conf("default", dir.path());
    stream_to(&conf, &archive);
    let rootfs = unpack(&archive, dir.path());
    for p in ["nix", "nix/store"] {
        assert_eq!(
            std::fs::metadata(rootfs.join(p)).unwrap().mode() & 0o7777,
            0o755,
            "{p}"
        );
    }
    let layers = read_json(&conf)["store_layers"].clone();
    let mut paths = 0;
    for path in layers
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l.as_array().unwrap())
    {
        let path = Path::new(path.as_str().unwrap());
        assert_same_tree(path, &rootfs.join(path.strip_prefix("/").unwrap()));
        paths += 1;
    }
    assert_eq!(paths, 5);
    let symlink = fixture("storeSymlink");
    assert!(
        std::fs::symlink_metadata(rootfs.join(symlink.strip_prefix("/").unwrap()))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/motd")).unwrap(),
        "welcome\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/app")).unwrap(),
        fixture("app").join("bin/app")
    );
}

#[test]
fn configured_owner_is_on_every_store_entry() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    stream_to(&golden_conf("owner", dir.path()), &archive);
    let rootfs = unpack(&archive, dir.path());
    let lib = fixture("lib");
    let tool = lib.join("bin/tool");
    for p in [
        Path::new("nix/store"),
        lib.strip_prefix("/").unwrap(),
        tool.strip_prefix("/").unwrap(),
    ] {
        let m = std::fs::symlink_metadata(rootfs.join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 100), "{}", p.display());
    }
    let listing = stdout(Command::new("tar").arg("-tvf").arg(&archive));
    assert!(listing.contains("/layer.tar"));
}
