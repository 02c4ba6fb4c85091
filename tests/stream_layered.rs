//! The docker archive equals, byte for byte, what nixpkgs' stream_layered_image.py
//! writes for the same conf (golden data, see tests/data/README.md), whichever writer,
//! thread count, base-image compression or output compression is used.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const CASES: [&str; 4] = ["default", "owner", "popularity", "from_image"];

fn config_of(archive: &Path) -> (String, serde_json::Value) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_member(archive, "manifest.json")).unwrap();
    let name = manifest[0]["Config"].as_str().unwrap().to_string();
    let config = serde_json::from_slice(&tar_member(archive, &name)).unwrap();
    (name, config)
}

#[test]
fn archives_equal_nixpkgs_streamer_output() {
    let dir = tempfile::tempdir().unwrap();
    for case in CASES {
        let conf = golden_conf(case, dir.path());
        let out = dir.path().join(format!("{case}.tar"));
        stream_to(&conf, &out);
        let want = expected(case);
        let (name, config) = config_of(&out);
        assert_eq!(name, want["config"], "{case}: config digest");
        assert_eq!(
            config["rootfs"]["diff_ids"], want["diff_ids"],
            "{case}: diff_ids"
        );
        assert_eq!(
            sha256sum_bytes(&tar_member(&out, "manifest.json")),
            want["manifest_sha256"]
        );
        assert_eq!(
            sha256sum(&out),
            want["archive_sha256"],
            "{case}: whole archive"
        );
    }
}

fn sha256sum_bytes(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn every_layer_hashes_to_its_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    let conf = golden_conf("owner", dir.path());
    let out = dir.path().join("owner.tar");
    stream_to(&conf, &out);
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_member(&out, "manifest.json")).unwrap();
    let (_, config) = config_of(&out);
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        config["rootfs"]["diff_ids"].as_array().unwrap().len()
    );
    for (layer, diff_id) in layers
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        let bytes = tar_member(&out, layer.as_str().unwrap());
        assert_eq!(
            format!("sha256:{}", sha256sum_bytes(&bytes)),
            diff_id.as_str().unwrap()
        );
    }
}

#[test]
fn file_and_stream_writers_agree_at_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    for case in ["default", "from_image"] {
        let conf = golden_conf(case, dir.path());
        let mut digests = Vec::new();
        for threads in ["1", "2", "3"] {
            let file = dir.path().join(format!("{case}-{threads}.tar"));
            run(stevedore()
                .env("RAYON_NUM_THREADS", threads)
                .arg("build-layered")
                .arg(&conf)
                .arg("-o")
                .arg(&file));
            digests.push(sha256sum(&file));
            let streamed = run(stevedore()
                .env("RAYON_NUM_THREADS", threads)
                .arg("stream-layered")
                .arg(&conf))
            .stdout;
            digests.push(sha256sum_bytes(&streamed));
        }
        assert!(
            digests
                .iter()
                .all(|d| *d == expected(case)["archive_sha256"]),
            "{case}: {digests:?}"
        );
    }
}

#[test]
fn compressed_base_images_give_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let conf_path = golden_conf("from_image", dir.path());
    let mut conf = read_json(&conf_path);
    let base = std::path::PathBuf::from(conf["from_image"].as_str().unwrap());
    for (tool, ext) in [("gzip", "gz"), ("zstd", "zst")] {
        let packed = dir.path().join(format!("base.tar.{ext}"));
        let bytes = run(Command::new(tool).arg("-c").arg(&base)).stdout;
        std::fs::write(&packed, bytes).unwrap();
        conf["from_image"] = serde_json::json!(packed);
        let c = dir.path().join(format!("conf-{ext}.json"));
        std::fs::write(&c, conf.to_string()).unwrap();
        let out = dir.path().join(format!("out-{ext}.tar"));
        stream_to(&c, &out);
        assert_eq!(
            sha256sum(&out),
            expected("from_image")["archive_sha256"],
            "{tool} base"
        );
    }
}

#[test]
fn base_env_is_merged_one_entry_per_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("child.tar");
    stream_to(&golden_conf("from_image", dir.path()), &out);
    let (_, config) = config_of(&out);
    let env = config["config"]["Env"].as_array().unwrap();
    assert_eq!(
        env.iter()
            .filter(|e| e.as_str().unwrap().starts_with("LAST_LAYER="))
            .count(),
        1
    );
    assert!(env.contains(&serde_json::json!("LAST_LAYER=child")));
    assert!(env.contains(&serde_json::json!("PATH=/bin")));
    let base_layers =
        config_of(&dir.path().join("default-base.tar")).1["rootfs"]["diff_ids"].clone();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(
        &diff_ids[..base_layers.as_array().unwrap().len()],
        base_layers.as_array().unwrap().as_slice()
    );
}

#[test]
fn compressed_outputs_hold_the_same_archive() {
    let dir = tempfile::tempdir().unwrap();
    let conf = golden_conf("default", dir.path());
    for (compressor, tool) in [("gz", "gzip"), ("zstd", "zstd")] {
        let out = dir.path().join(format!("image.tar.{compressor}"));
        run(stevedore()
            .arg("build-layered")
            .arg(&conf)
            .args(["--compressor", compressor, "-o"])
            .arg(&out));
        let plain = run(Command::new(tool).arg("-dc").arg(&out)).stdout;
        assert_eq!(
            sha256sum_bytes(&plain),
            expected("default")["archive_sha256"],
            "{compressor}"
        );
        // skopeo 1.9 reads only uncompressed archives; `docker load` decompresses first.
        let unpacked = dir.path().join(format!("unpacked-{compressor}.tar"));
        std::fs::write(&unpacked, plain).unwrap();
        run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", unpacked.display())));
    }
}

#[test]
fn repo_tag_can_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let conf = golden_conf("default", dir.path());
    for flag in ["--repo-tag", "--repo_tag", "-t"] {
        let bytes = run(stevedore()
            .arg("stream-layered")
            .arg(&conf)
            .args([flag, "other/name:v2"]))
        .stdout;
        let out = dir.path().join("tagged.tar");
        std::fs::write(&out, bytes).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&tar_member(&out, "manifest.json")).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!(["other/name:v2"])
        );
    }
}

#[test]
fn created_now_is_resolved_at_stream_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut conf = read_json(&golden_conf("default", dir.path()));
    conf["created"] = serde_json::json!("now");
    conf["mtime"] = serde_json::json!("now");
    let path = dir.path().join("now.json");
    std::fs::write(&path, conf.to_string()).unwrap();
    let out = dir.path().join("now.tar");
    stream_to(&path, &out);
    let (_, config) = config_of(&out);
    let created = config["created"].as_str().unwrap();
    assert!(
        created.ends_with("+00:00") && !created.starts_with("1970"),
        "{created}"
    );
    assert_eq!(config["history"][0]["created"], config["created"]);
}
