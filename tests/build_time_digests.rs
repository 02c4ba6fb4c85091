//! Store-layer digests recorded in the conf at build time (`stevedore conf-digests`, and
//! the Nix conf step by default): the stream then only copies bytes, the archive is the
//! one nixpkgs' streamer writes (golden data), `--verify` catches a digest that lies,
//! a conf edited after its digests were made falls back to hashing, and streaming
//! writes nothing to disk and hands large files to the kernel (`sendfile`, seen by
//! strace).

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `stevedore conf-digests CONF -o OUT`.
fn with_digests(conf: &Path, dir: &Path) -> PathBuf {
    let out = dir.join(format!(
        "{}.digests.json",
        conf.file_stem().unwrap().to_string_lossy()
    ));
    run(stevedore()
        .arg("conf-digests")
        .arg(conf)
        .arg("-o")
        .arg(&out));
    out
}

fn edit(conf: &Path, dir: &Path, name: &str, change: impl FnOnce(&mut Value)) -> PathBuf {
    let mut value = read_json(conf);
    change(&mut value);
    write_tmp(dir, name, value.to_string().as_bytes())
}

#[test]
fn recorded_digests_give_nixpkgs_archive() {
    let dir = tempfile::tempdir().unwrap();
    for case in ["default", "owner", "popularity", "from_image"] {
        let conf = with_digests(&golden_conf(case, dir.path()), dir.path());
        let digests = read_json(&conf)["store_layer_digests"]["layers"].clone();
        assert_eq!(
            digests.as_array().unwrap().len(),
            read_json(&conf)["store_layers"].as_array().unwrap().len(),
            "{case}"
        );
        for verify in [false, true] {
            let out = dir.path().join(format!("{case}-{verify}.tar"));
            let mut cmd = stevedore();
            cmd.arg("stream-layered").arg(&conf);
            if verify {
                cmd.arg("--verify");
            }
            std::fs::write(&out, run(&mut cmd).stdout).unwrap();
            assert_eq!(sha256sum(&out), expected(case)["archive_sha256"], "{case}");
        }
        let built = dir.path().join(format!("{case}-built.tar"));
        run(stevedore()
            .arg("build-layered")
            .arg(&conf)
            .arg("-o")
            .arg(&built));
        assert_eq!(
            sha256sum(&built),
            expected(case)["archive_sha256"],
            "{case}"
        );
    }
}

#[test]
fn a_lying_digest_is_copied_unless_verified() {
    let dir = tempfile::tempdir().unwrap();
    let conf = with_digests(&golden_conf("default", dir.path()), dir.path());
    let fake = format!("sha256:{}", "ab".repeat(32));
    let lying = edit(&conf, dir.path(), "lying.json", |v| {
        v["store_layer_digests"]["layers"][1]["diff_id"] = Value::String(fake.clone());
    });
    // Trusted: the stream copies bytes under the recorded name.
    let out = dir.path().join("lying.tar");
    stream_to(&lying, &out);
    assert_eq!(config(&out)["rootfs"]["diff_ids"][1], fake.as_str());
    // Verified: an error naming the layer and both digests.
    for sub in ["stream-layered", "build-layered"] {
        let mut cmd = stevedore();
        cmd.arg(sub).arg(&lying).arg("--verify");
        if sub == "build-layered" {
            cmd.arg("-o").arg(dir.path().join("verified.tar"));
        }
        let result = cmd.output().unwrap();
        assert_eq!(result.status.code(), Some(1), "{sub}");
        let err = String::from_utf8_lossy(&result.stderr);
        let paths = read_json(&conf)["store_layers"][1][0]
            .as_str()
            .unwrap()
            .to_string();
        assert!(err.contains(&paths) && err.contains(&fake), "{sub}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{sub}: {err}");
    }
    assert!(!dir.path().join("verified.tar").exists());
}

#[test]
fn digests_made_for_another_conf_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let plain = golden_conf("default", dir.path());
    let conf = with_digests(&plain, dir.path());
    // Another owner after the digests were made: the note, then the right archive.
    let moved = edit(&conf, dir.path(), "moved.json", |v| {
        v["uid"] = Value::from(1000);
        v["uname"] = Value::from("user");
    });
    let moved_plain = edit(&plain, dir.path(), "moved-plain.json", |v| {
        v["uid"] = Value::from(1000);
        v["uname"] = Value::from("user");
    });
    let out = stevedore()
        .arg("stream-layered")
        .arg(&moved)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hashing the layers instead"));
    let want = run(stevedore().arg("stream-layered").arg(&moved_plain)).stdout;
    assert!(out.stdout == want, "the fallback archive differs");
    // A size that no longer matches: an error naming the layer.
    let resized = edit(&conf, dir.path(), "resized.json", |v| {
        v["store_layer_digests"]["layers"][0]["size"] = Value::from(512);
    });
    let out = stevedore()
        .arg("stream-layered")
        .arg(&resized)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("records 512 bytes"), "{err}");
}

#[test]
fn mtime_now_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let now = edit(
        &golden_conf("default", dir.path()),
        dir.path(),
        "now.json",
        |v| v["mtime"] = Value::from("now"),
    );
    let conf = with_digests(&now, dir.path());
    assert!(read_json(&conf).get("store_layer_digests").is_none());
}

/// A conf over a store in `dir` holding one path with a large and a small file.
fn large_file_conf(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    let path = store.join("0123456789abcdfghijklmnpqrsvwxyz-big");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("large"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(path.join("small"), b"small").unwrap();
    let custom = dir.join("custom");
    std::fs::create_dir_all(custom.join("root")).unwrap();
    run(stevedore()
        .arg("customisation-layer")
        .arg(custom.join("root"))
        .arg("-o")
        .arg(custom.join("out")));
    let conf = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {}, "store_dir": store,
        "from_image": null, "store_layers": [[path]], "customisation_layer": custom.join("out"),
        "repo_tag": "big:1", "created": "1970-01-01T00:00:01+00:00",
        "mtime": "1970-01-01T00:00:01+00:00", "uid": 0, "gid": 0, "uname": "root", "gname": "root"
    });
    write_tmp(dir, "big.json", conf.to_string().as_bytes())
}

/// strace's record of `stevedore stream-layered CONF > OUT`.
fn traced_stream(conf: &Path, out: &Path, log: &Path) -> String {
    let status = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,sendfile,write,pwrite64",
            "-o",
        ])
        .arg(log)
        .arg(env!("CARGO_BIN_EXE_stevedore"))
        .arg("stream-layered")
        .arg(conf)
        .stdout(std::fs::File::create(out).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn streaming_writes_no_file_and_sends_large_files_from_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    for (name, conf) in [
        ("hashed", large_file_conf(dir.path())),
        (
            "recorded",
            with_digests(&large_file_conf(dir.path()), dir.path()),
        ),
    ] {
        let out = dir.path().join(format!("{name}.tar"));
        let trace = traced_stream(&conf, &out, &dir.path().join(format!("{name}.strace")));
        let created: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains("openat(") && (l.contains("O_WRONLY") || l.contains("O_RDWR")))
            .collect();
        assert!(
            created.is_empty(),
            "{name}: files opened for writing: {created:?}"
        );
        // A call can be split into "<unfinished ...>" and "<... sendfile resumed>" lines.
        let sent: u64 = trace
            .lines()
            .filter(|l| l.contains("sendfile(1,") || l.contains("sendfile resumed"))
            .filter_map(|l| l.rsplit(" = ").next()?.trim().parse::<u64>().ok())
            .sum();
        assert_eq!(sent, 3 << 20, "{name}: bytes sent by sendfile\n{trace}");
        run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", out.display())));
    }
}

#[test]
fn build_layered_copies_recorded_layers_in_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let conf = with_digests(&large_file_conf(dir.path()), dir.path());
    let out = dir.path().join("built.tar");
    let log = dir.path().join("built.strace");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=copy_file_range", "-o"])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_stevedore"))
        .arg("build-layered")
        .arg(&conf)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let trace = std::fs::read_to_string(&log).unwrap();
    let copied: u64 = trace
        .lines()
        .filter(|l| l.contains("copy_file_range"))
        .filter_map(|l| l.rsplit(" = ").next()?.trim().parse::<u64>().ok())
        .sum();
    assert_eq!(copied, 3 << 20, "{trace}");
    let streamed = run(stevedore().arg("stream-layered").arg(&conf)).stdout;
    assert!(std::fs::read(&out).unwrap() == streamed);
}
