//! `stevedore copy` (issue #9) against the real tools: OCI layouts and oci-archives
//! written from the golden confs of tests/data/stream (and images built from them) are
//! unpacked by umoci and run with chroot, read by skopeo (inspect, copy back to a docker
//! archive), imported and run by a private containerd (`ctr`); gzip and zstd layers are
//! read back; compressed bytes do not depend on the thread count or the run; round trips
//! keep diff_ids and config bytes; bad arguments give one line; an interrupted or failing
//! copy leaves no destination (no `index.json` naming missing blobs for `oci:`).

mod common;
use common::containerd::*;
use common::registry::skopeo;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CASES: [&str; 4] = ["default", "owner", "popularity", "from_image"];
const SOURCES: &str = "CONF.json, docker-archive:PATH[:NAME:TAG], oci:DIR[:TAG], oci-archive:PATH[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]";
const DESTS: &str = "docker-archive:PATH[:NAME:TAG], oci:DIR[:TAG], oci-archive:PATH[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]";

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `argv` chrooted into `rootfs` with exactly `env`, in `cwd`, as `uid`:`gid`;
/// returns its stdout.
fn run_chrooted(
    rootfs: &Path,
    argv: &[String],
    env: &[String],
    cwd: &str,
    ids: (u32, u32),
) -> String {
    assert!(
        argv[0].starts_with('/'),
        "absolute program expected: {argv:?}"
    );
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear();
    for e in env {
        let (k, v) = e.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let root = std::ffi::CString::new(text(rootfs)).unwrap();
    let cwd = std::ffi::CString::new(cwd).unwrap();
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let ok = |r: i32| match r {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            };
            ok(libc::chroot(root.as_ptr()))?;
            ok(libc::chdir(cwd.as_ptr()))?;
            ok(libc::setgroups(0, std::ptr::null()))?;
            ok(libc::setgid(ids.1))?;
            ok(libc::setuid(ids.0))
        });
    }
    stdout(&mut cmd)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Runs the process of a runtime bundle made by `umoci unpack` (umoci's reading of the
/// image config: args, env, cwd, user) chrooted into its rootfs; returns stdout.
fn run_bundle(bundle: &Path) -> String {
    let p = &read_json(&bundle.join("config.json"))["process"];
    let id = |k: &str| p["user"][k].as_u64().unwrap() as u32;
    run_chrooted(
        &bundle.join("rootfs"),
        &strings(&p["args"]),
        &strings(&p["env"]),
        p["cwd"].as_str().unwrap(),
        (id("uid"), id("gid")),
    )
}

/// `umoci unpack` of the image `tag` of the layout `layout` into `bundle`.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
}

/// `skopeo copy SOURCE docker-archive:OUT`.
fn skopeo_to_docker_archive(source: &str, out: &Path) {
    run(skopeo()
        .args(["copy", "--quiet", source])
        .arg(transport("docker-archive", out, None)));
}

/// `skopeo copy --dest-decompress SOURCE dir:OUT` (skopeo 1.9 puts no zstd layers in
/// docker archives); asserts that the layers skopeo decompressed are named by, and hash
/// to, `diff_ids`.
fn assert_skopeo_decompresses(source: &str, out: &Path, diff_ids: &Value) {
    run(skopeo()
        .args(["copy", "--quiet", "--dest-decompress", source])
        .arg(format!("dir:{}", out.display())));
    let layers = layer_digests(&read_json(&out.join("manifest.json")));
    for digest in &layers {
        let bytes = std::fs::read(out.join(digest.trim_start_matches("sha256:"))).unwrap();
        assert_eq!(
            format!("sha256:{}", sha256_hex(&bytes)),
            *digest,
            "{source}"
        );
    }
    assert_eq!(&json!(layers), diff_ids, "{source}");
}

/// The sha256 of every member of a tar, by name, read in one pass.
fn member_digests(archive: &Path) -> HashMap<String, String> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut out = HashMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut sha = <sha2::Sha256 as sha2::Digest>::new();
        std::io::copy(&mut entry, &mut sha).unwrap();
        out.insert(name, hex::encode(sha2::Digest::finalize(sha)));
    }
    out
}

/// Asserts that the docker archive's config lists `diff_ids` and that each layer member
/// hashes to its diff_id.
fn assert_docker_archive_layers(archive: &Path, diff_ids: &Value) {
    assert_eq!(
        &config(archive)["rootfs"]["diff_ids"],
        diff_ids,
        "{}",
        archive.display()
    );
    let sums = member_digests(archive);
    let layers = strings(&manifest(archive)[0]["Layers"]);
    assert_eq!(layers.len(), diff_ids.as_array().unwrap().len());
    for (layer, diff_id) in layers.iter().zip(diff_ids.as_array().unwrap()) {
        assert_eq!(
            format!("sha256:{}", sums[layer]),
            diff_id.as_str().unwrap(),
            "{} {layer}",
            archive.display()
        );
    }
}

/// An RFC 3339 time (`2021-06-07T08:09:10.5+02:00`) as UTC seconds and nanoseconds, so
/// that Python's and Go's ways of writing the same time compare equal.
fn instant(s: &str) -> Option<(i64, u32)> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s.get(10..11)? != "T" {
        return None;
    }
    let rest = &s[19..];
    let digits = rest
        .strip_prefix('.')
        .map_or(0, |r| r.bytes().take_while(u8::is_ascii_digit).count());
    let frac = if digits > 0 { &rest[1..=digits] } else { "" };
    let nanos = format!("{frac:0<9}").get(..9)?.parse::<u32>().ok()?;
    let zone = &rest[if digits > 0 { digits + 1 } else { 0 }..];
    let offset = match zone {
        "Z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (zone.get(1..3)?.parse::<i64>().ok()? * 60
                + zone.get(4..6)?.parse::<i64>().ok()?)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((
        days * 86_400 + h * 3600 + mi * 60 + sec - offset * 60,
        nanos,
    ))
}

/// `v` with every RFC 3339 time string replaced by its UTC instant.
fn times_as_instants(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            instant(s).map_or_else(|| v.clone(), |(t, n)| json!(format!("@{t}.{n:09}")))
        }
        Value::Array(a) => Value::Array(a.iter().map(times_as_instants).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), times_as_instants(v)))
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// The config fields a tool that re-serialises the config must keep.
fn config_fields(config: &Value) -> Value {
    times_as_instants(&json!({
        "rootfs": config["rootfs"],
        "config": config["config"],
        "architecture": config["architecture"],
        "os": config["os"],
        "history": config["history"],
    }))
}

/// The OCI layout inside an oci-archive, unpacked by GNU tar into `dir`.
fn untar_layout(archive: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir));
    dir.to_path_buf()
}

fn config_hex(case: &str) -> String {
    expected(case)["config"]
        .as_str()
        .unwrap()
        .trim_end_matches(".json")
        .to_string()
}

#[test]
fn umoci_unpacks_the_docker_archive_rootfs_and_it_runs() {
    let dir = tempdir();
    let conf = runnable_conf(dir.path());
    let archive = dir.path().join("image.tar");
    stream_to(&conf, &archive);
    let docker = dir.path().join("docker");
    assert_eq!(run_image(&archive, &docker), HELLO);
    let diff_ids = config(&archive)["rootfs"]["diff_ids"].clone();
    for (compress, media_type) in [
        ("none", "application/vnd.oci.image.layer.v1.tar"),
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
    ] {
        let layout = dir.path().join(format!("oci-{compress}"));
        let dest = transport("oci", &layout, Some("run"));
        copy_image(text(&conf), &dest, &["--compress", compress]);
        let manifest = oci_manifest(&layout, Some("run"));
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], media_type);
        }
        if compress == "none" {
            assert_eq!(json!(layer_digests(&manifest)), diff_ids);
        }
        let bundle = dir.path().join(format!("bundle-{compress}"));
        umoci_unpack(&layout, "run", &bundle);
        assert_same_tree(&docker.join("bundle/rootfs"), &bundle.join("rootfs"));
        assert_eq!(run_bundle(&bundle), HELLO, "{compress}");
    }
}

#[test]
fn skopeo_reads_layouts_and_archives_as_the_streamed_image() {
    let dir = tempdir();
    for case in CASES {
        let conf = golden_conf(case, dir.path());
        let streamed = dir.path().join(format!("{case}.tar"));
        stream_to(&conf, &streamed);
        let want = config_fields(&config(&streamed));
        let layout = dir.path().join(format!("{case}-oci"));
        let archive = dir.path().join(format!("{case}-oci.tar"));
        copy_image(text(&conf), &transport("oci", &layout, Some(case)), &[]);
        copy_image(
            text(&conf),
            &transport("oci-archive", &archive, Some(case)),
            &[],
        );
        let manifest = oci_manifest(&layout, Some(case));
        assert_eq!(
            manifest["config"]["digest"],
            format!("sha256:{}", config_hex(case)),
            "{case}: config bytes as nixpkgs' streamer writes them"
        );
        for source in [
            transport("oci", &layout, Some(case)),
            transport("oci-archive", &archive, Some(case)),
        ] {
            let info: Value =
                serde_json::from_str(&stdout(Command::new("skopeo").args(["inspect", &source])))
                    .unwrap();
            assert_eq!(info["Layers"], json!(layer_digests(&manifest)), "{source}");
            assert_eq!(info["Digest"], oci_entry(&layout, Some(case))["digest"]);
            let seen: Value = serde_json::from_str(&stdout(
                Command::new("skopeo").args(["inspect", "--config", &source]),
            ))
            .unwrap();
            assert_eq!(config_fields(&seen), want, "{source}");
            let back = dir.path().join(format!("{case}-back.tar"));
            let _ = std::fs::remove_file(&back);
            skopeo_to_docker_archive(&source, &back);
            assert_docker_archive_layers(&back, &expected(case)["diff_ids"]);
            assert_eq!(config_fields(&config(&back)), want, "{source}");
        }
    }
}

#[test]
fn gzip_and_zstd_layers_read_back_by_skopeo() {
    let dir = tempdir();
    let conf = golden_conf("from_image", dir.path());
    let diff_ids = expected("from_image")["diff_ids"].clone();
    for (compress, suffix) in [("gzip", "+gzip"), ("zstd:19", "+zstd"), ("gzip:1", "+gzip")] {
        let name = compress.replace(':', "-");
        let layout = dir.path().join(&name);
        let archive = dir.path().join(format!("{name}.tar"));
        copy_image(
            text(&conf),
            &transport("oci", &layout, Some("t")),
            &["--compress", compress],
        );
        copy_image(
            text(&conf),
            &transport("oci-archive", &archive, Some("t")),
            &["--compress", compress],
        );
        let manifest = oci_manifest(&layout, Some("t"));
        for layer in manifest["layers"].as_array().unwrap() {
            assert!(
                layer["mediaType"].as_str().unwrap().ends_with(suffix),
                "{layer}"
            );
        }
        for source in [
            transport("oci", &layout, Some("t")),
            transport("oci-archive", &archive, Some("t")),
        ] {
            let back = dir.path().join(format!("{name}-back"));
            let _ = std::fs::remove_dir_all(&back);
            if suffix == "+zstd" {
                assert_skopeo_decompresses(&source, &back, &diff_ids);
            } else {
                let _ = std::fs::remove_file(&back);
                skopeo_to_docker_archive(&source, &back);
                assert_docker_archive_layers(&back, &diff_ids);
            }
        }
    }
}

#[test]
fn python_and_go_times_compare_as_instants() {
    assert_eq!(instant("1970-01-01T00:00:01+00:00"), Some((1, 0)));
    assert_eq!(
        instant("2021-06-07T08:09:10.500000+02:00"),
        instant("2021-06-07T06:09:10.5Z")
    );
    assert_eq!(
        instant("2021-06-07T06:09:10.5Z"),
        Some((1_623_046_150, 500_000_000))
    );
    assert_eq!(instant("store paths: []"), None);
}

#[test]
fn containerd_imports_and_runs_what_copy_writes() {
    let dir = tempdir();
    let conf = runnable_conf(dir.path());
    let ctd = Containerd::start();
    let cases = [
        ("oci-archive", "gzip", "oci"),
        ("oci-archive", "zstd:19", "oci"),
        ("oci-archive", "none", "oci"),
        ("oci-archive", "gzip", "docker"),
        ("docker-archive", "none", "docker"),
        ("docker-archive", "gzip", "docker"),
    ];
    for (i, (kind, compress, format)) in cases.into_iter().enumerate() {
        let what = format!("{kind} --compress {compress} --format {format}");
        let path = dir.path().join(format!("image-{i}.tar"));
        let name = format!("docker.io/library/copy-{i}");
        let reference = format!("{name}:v1");
        let mut import = ctd.ctr();
        import.args(["images", "import"]);
        if kind == "oci-archive" {
            copy_image(
                text(&conf),
                &transport(kind, &path, Some("v1")),
                &["--compress", compress, "--format", format],
            );
            import.args(["--base-name", &name]);
        } else {
            copy_image(
                text(&conf),
                &transport(kind, &path, Some(&reference)),
                &["--compress", compress],
            );
        }
        run(import.arg(&path));
        if kind == "oci-archive" {
            let index: Value = serde_json::from_slice(&tar_member(&path, "index.json")).unwrap();
            let digest = index["manifests"][0]["digest"]
                .as_str()
                .unwrap()
                .to_string();
            let listing = stdout(ctd.ctr().args(["images", "ls"]));
            assert!(
                listing
                    .lines()
                    .any(|l| l.starts_with(&reference) && l.contains(&digest)),
                "{what}: {listing}"
            );
        }
        let out = stdout(
            ctd.ctr()
                .args(["run", "--rm", &reference, &format!("copy-{i}")]),
        );
        assert_eq!(out, HELLO, "{what}");
    }
}

#[test]
fn compressed_bytes_do_not_depend_on_threads_or_runs() {
    let dir = tempdir();
    let conf = golden_conf("from_image", dir.path());
    for compress in ["gzip", "zstd:19"] {
        let sums: Vec<String> = ["1", "2", "2"]
            .iter()
            .enumerate()
            .map(|(i, threads)| {
                let out = dir
                    .path()
                    .join(format!("{}-{i}.tar", compress.replace(':', "-")));
                run(stevedore()
                    .env("RAYON_NUM_THREADS", threads)
                    .args(["copy", text(&conf)])
                    .arg(transport("oci-archive", &out, Some("t")))
                    .args(["--compress", compress]));
                sha256sum(&out)
            })
            .collect();
        assert!(sums.iter().all(|s| *s == sums[0]), "{compress}: {sums:?}");
    }
}

#[test]
fn round_trips_keep_diff_ids_and_config_bytes() {
    let dir = tempdir();
    let d = |name: &str| dir.path().join(name);
    for case in CASES {
        let conf = golden_conf(case, dir.path());
        let direct = d(&format!("{case}-direct.tar"));
        copy_image(
            text(&conf),
            &transport("docker-archive", &direct, None),
            &[],
        );
        assert_eq!(
            sha256sum(&direct),
            expected(case)["archive_sha256"],
            "{case}"
        );
    }
    let case = "from_image";
    let conf = golden_conf(case, dir.path());
    let diff_ids = expected(case)["diff_ids"].clone();
    let name = Some("fixture:golden");
    let steps = [
        (
            text(&conf).to_string(),
            transport("oci", &d("a"), Some("t")),
            "gzip",
        ),
        (
            transport("oci", &d("a"), Some("t")),
            transport("docker-archive", &d("b.tar"), name),
            "none",
        ),
        (
            transport("docker-archive", &d("b.tar"), name),
            transport("oci-archive", &d("c.tar"), Some("t")),
            "zstd",
        ),
        (
            transport("oci-archive", &d("c.tar"), Some("t")),
            transport("docker-archive", &d("d.tar"), name),
            "none",
        ),
    ];
    for (source, dest, compress) in &steps {
        copy_image(source, dest, &["--compress", compress]);
    }
    let config_of_layout = |layout: &Path| {
        let digest = oci_manifest(layout, Some("t"))["config"]["digest"].clone();
        std::fs::read(oci_blob(layout, digest.as_str().unwrap())).unwrap()
    };
    let layout_c = untar_layout(&d("c.tar"), &d("c"));
    for (what, config_bytes) in [
        ("oci", config_of_layout(&d("a"))),
        (
            "docker-archive",
            tar_member(&d("b.tar"), expected(case)["config"].as_str().unwrap()),
        ),
        ("oci-archive", config_of_layout(&layout_c)),
    ] {
        assert_eq!(
            sha256_hex(&config_bytes),
            config_hex(case),
            "{what}: config bytes"
        );
        let parsed: Value = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(parsed["rootfs"]["diff_ids"], diff_ids, "{what}");
    }
    assert_docker_archive_layers(&d("b.tar"), &diff_ids);
    assert_eq!(
        sha256sum(&d("b.tar")),
        sha256sum(&d("d.tar")),
        "docker archives differ"
    );
    // The same layers compressed from the conf (store paths) and from the docker archive
    // (members) are the same blobs.
    copy_image(
        text(&conf),
        &transport("oci", &d("z"), Some("t")),
        &["--compress", "zstd"],
    );
    assert_eq!(
        layer_digests(&oci_manifest(&d("z"), Some("t"))),
        layer_digests(&oci_manifest(&layout_c, Some("t")))
    );
}

#[test]
fn docker_media_types_in_an_oci_layout_pass_skopeo() {
    let dir = tempdir();
    let conf = golden_conf("default", dir.path());
    let layout = dir.path().join("docker-types");
    // Untagged: skopeo 1.9 looks a tag up among OCI manifests only (containers/image's
    // oci transport skips other media types), so `oci:DIR:TAG` would not find it.
    copy_image(
        text(&conf),
        &transport("oci", &layout, None),
        &["--format", "docker"],
    );
    let entry = oci_entry(&layout, None);
    assert_eq!(
        entry["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let written = oci_manifest(&layout, None);
    assert_eq!(written["mediaType"], entry["mediaType"]);
    assert_eq!(
        written["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for layer in written["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    let source = transport("oci", &layout, None);
    let raw = stdout(Command::new("skopeo").args(["inspect", "--raw", &source]));
    assert_eq!(
        raw.as_bytes(),
        std::fs::read(oci_blob(&layout, entry["digest"].as_str().unwrap())).unwrap()
    );
    let back = dir.path().join("back.tar");
    skopeo_to_docker_archive(&source, &back);
    assert_docker_archive_layers(&back, &expected("default")["diff_ids"]);
    assert_eq!(manifest(&back)[0]["Config"], expected("default")["config"]);
}

#[test]
fn copies_into_a_layout_keep_its_other_images() {
    let dir = tempdir();
    let (layout, _) = existing_layout(dir.path());
    let dest = transport("oci", &layout, Some("new"));
    copy_image(text(&golden_conf("owner", dir.path())), &dest, &[]);
    copy_image(text(&golden_conf("default", dir.path())), &dest, &[]);
    assert_index_complete(&layout);
    let listed = stdout(Command::new("umoci").args(["ls", "--layout", text(&layout)]));
    let mut tags: Vec<&str> = listed.lines().collect();
    tags.sort();
    assert_eq!(tags, ["new", "old"]);
    let seen: Value = serde_json::from_str(&stdout(
        Command::new("skopeo").args(["inspect", "--config", &dest]),
    ))
    .unwrap();
    assert_eq!(seen["rootfs"]["diff_ids"], expected("default")["diff_ids"]);
    run(Command::new("skopeo").args(["inspect", &transport("oci", &layout, Some("old"))]));
}

/// Runs a stevedore command that must fail with exit 1 and one `stevedore: ` line
/// containing each of `needles`.
fn fails_naming(args: &[&str], needles: &[&str]) {
    let out = stevedore().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line expected: {err}");
    assert!(err.starts_with("stevedore: "), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} does not name {n:?}");
    }
}

#[test]
fn bad_arguments_fail_with_one_line_naming_them() {
    let dir = tempdir();
    let conf = golden_conf("default", dir.path());
    let conf = text(&conf);
    let out = dir.path().join("out");
    let good = transport("oci", &out, None);
    for bad in [
        "oci:",
        "oci-archive:",
        "docker-archive:",
        "docker://",
        "docker://127.0.0.1:1/Upper",
        "docker://127.0.0.1:1/a:",
        "docker://127.0.0.1:1/a@sha256:12",
        "dir:/tmp/x",
        "image.tar",
        "docker-archive:x.tar:notag",
        "oci:/tmp/x:",
        "containers-storage:x",
    ] {
        fails_naming(
            &["copy", bad, &good],
            &[&format!("source {bad:?}"), SOURCES],
        );
        fails_naming(
            &["copy", conf, bad],
            &[&format!("destination {bad:?}"), DESTS],
        );
    }
    fails_naming(&["copy", conf, conf], &[DESTS]);
    for (flag, value, forms) in [
        ("--compress", "gzip:10", "1 to 9"),
        ("--compress", "gzip:0", "1 to 9"),
        ("--compress", "zstd:20", "1 to 19"),
        ("--compress", "zstd:x", "1 to 19"),
        ("--compress", "lz4", "none, gzip[:1-9] or zstd[:1-19]"),
        ("--compress", "none:1", "none, gzip[:1-9] or zstd[:1-19]"),
        ("--compress", "", "none, gzip[:1-9] or zstd[:1-19]"),
        ("--format", "v2s2", "docker or oci"),
        ("--format", "OCI", "docker or oci"),
    ] {
        let quoted = format!("{value:?}");
        fails_naming(&["copy", conf, &good, flag, value], &[flag, &quoted, forms]);
    }
    for missing in ["docker-archive", "oci", "oci-archive"] {
        let path = dir.path().join(format!("missing-{missing}"));
        fails_naming(
            &["copy", &transport(missing, &path, None), &good],
            &[text(&path)],
        );
    }
    assert!(!out.exists(), "a failed copy left {}", out.display());
}

/// Paths under `dir` that are, or are inside, a `.stevedore-` temporary.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(".stevedore-") {
            found.push(path.clone());
        }
        if path.is_dir() {
            found.extend(temporaries(&path));
        }
    }
    found
}

/// Whether a file with bytes in it is in a `.stevedore-` temporary under `dir` (or
/// anywhere under `dir` when `in_temp`).
fn bytes_written(dir: &Path, in_temp: bool) -> bool {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries.into_iter().any(|e| {
        let path = e.path();
        let temp = in_temp || e.file_name().to_string_lossy().starts_with(".stevedore-");
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => bytes_written(&path, temp),
            Ok(m) => temp && m.len() > 0,
            Err(_) => false,
        }
    })
}

/// Asserts that every blob the layout's index names (and their manifests' blobs) exists
/// with its digest's bytes.
fn assert_index_complete(layout: &Path) {
    let index = read_json(&layout.join("index.json"));
    for entry in index["manifests"].as_array().unwrap() {
        let manifest_path = oci_blob(layout, entry["digest"].as_str().unwrap());
        let bytes = std::fs::read(&manifest_path).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), entry["digest"]);
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        let blobs =
            std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap());
        for d in blobs {
            let blob = std::fs::read(oci_blob(layout, d["digest"].as_str().unwrap())).unwrap();
            assert_eq!(format!("sha256:{}", sha256_hex(&blob)), d["digest"]);
        }
    }
}

/// An OCI layout (tag `old`) to copy into: a small image already there.
fn existing_layout(dir: &Path) -> (PathBuf, Vec<u8>) {
    let layout = dir.join("layout");
    write_plain_layout(&layout, &[&one_file_tar("old", b"old\n")], Some("old"));
    let index = std::fs::read(layout.join("index.json")).unwrap();
    (layout, index)
}

/// Checks a destination after an interrupted or failed copy: no archive at its path; for
/// a layout, the index it had before (or none), naming only complete blobs, still read
/// by skopeo.
/// Where a copy of `kind` goes in `out`: an archive that must not appear, or a layout
/// already holding an image, with its index as it was.
fn destination_in(out: &Path, kind: &str) -> (PathBuf, Option<Vec<u8>>) {
    match kind {
        "oci" => {
            let (layout, index) = existing_layout(out);
            (layout, Some(index))
        }
        _ => (out.join("image.tar"), None),
    }
}

fn assert_no_destination(kind: &str, path: &Path, index_before: Option<&[u8]>) {
    if kind != "oci" {
        assert!(!path.exists(), "{kind}: {} exists", path.display());
        return;
    }
    let index = std::fs::read(path.join("index.json")).ok();
    assert_eq!(index.as_deref(), index_before, "oci: index.json changed");
    if index.is_some() {
        assert_index_complete(path);
        run(Command::new("skopeo").args(["inspect", &transport("oci", path, Some("old"))]));
    }
}

/// The source of the interruption tests: an OCI layout of one 64 MiB layer of
/// incompressible bytes, slow to compress at gzip level 9 (seconds).
fn large_source(dir: &Path) -> String {
    let src = dir.join("large");
    let layer = one_file_tar("random.bin", &pseudo_random(1, 64 << 20));
    write_plain_layout(&src, &[&layer], None);
    transport("oci", &src, None)
}

#[test]
fn killed_copy_leaves_no_destination() {
    let dir = tempdir();
    let source = large_source(dir.path());
    for kind in ["docker-archive", "oci-archive", "oci"] {
        let out = dir.path().join(kind);
        std::fs::create_dir_all(&out).unwrap();
        let (path, before) = destination_in(&out, kind);
        let mut child = stevedore()
            .args([
                "copy",
                &source,
                &transport(kind, &path, Some("new:v1")),
                "--compress",
                "gzip:9",
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !bytes_written(&out, false) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{kind}: copy ended before it was killed"
            );
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{kind}: nothing written"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{kind}: not killed mid-way"
        );
        assert_no_destination(kind, &path, before.as_deref());
    }
}

/// A copy of `src` (an OCI layout of gzip blobs) whose largest layer blob has one byte
/// flipped `from_end` bytes before its end (same size, no longer its digest).
fn corrupted_layout(src: &Path, dst: &Path, from_end: usize) -> PathBuf {
    run(Command::new("cp").arg("-a").arg(src).arg(dst));
    let manifest = oci_manifest(dst, None);
    let largest = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = oci_blob(dst, &largest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.len() - from_end;
    bytes[at] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    dst.to_path_buf()
}

#[test]
fn failing_source_leaves_no_destination() {
    let dir = tempdir();
    let plain = dir.path().join("plain");
    write_plain_layout(
        &plain,
        &[&one_file_tar("random.bin", &pseudo_random(2, 8 << 20))],
        None,
    );
    let gz = dir.path().join("gz");
    copy_image(
        &transport("oci", &plain, None),
        &transport("oci", &gz, None),
        &["--compress", "gzip:1"],
    );
    // Near the end: megabytes are decompressed and recompressed before the error.
    let source = transport(
        "oci",
        &corrupted_layout(&gz, &dir.path().join("bad"), 100),
        None,
    );
    for kind in ["docker-archive", "oci-archive", "oci"] {
        let out = dir.path().join(format!("out-{kind}"));
        std::fs::create_dir_all(&out).unwrap();
        let (path, before) = destination_in(&out, kind);
        let dest = transport(kind, &path, Some("new:v1"));
        fails_naming(
            &["copy", &source, &dest, "--compress", "zstd"],
            &["cannot decompress"],
        );
        assert_no_destination(kind, &path, before.as_deref());
        assert_eq!(
            temporaries(&out),
            Vec::<PathBuf>::new(),
            "{kind}: temporaries left"
        );
    }
}

#[test]
fn blobs_not_matching_their_digest_are_refused() {
    let dir = tempdir();
    let conf = golden_conf("default", dir.path());
    for compress in ["gzip", "none"] {
        let src = dir.path().join(format!("src-{compress}"));
        copy_image(
            text(&conf),
            &transport("oci", &src, None),
            &["--compress", compress],
        );
        let bad = corrupted_layout(&src, &dir.path().join(format!("bad-{compress}")), 1000);
        // skopeo refuses it: "Digest did not match".
        let skopeo_dest = transport("oci", &dir.path().join(format!("skopeo-{compress}")), None);
        let refused = skopeo()
            .args([
                "copy",
                "--quiet",
                &transport("oci", &bad, None),
                &skopeo_dest,
            ])
            .output()
            .unwrap();
        assert!(!refused.status.success());
        for kind in ["oci", "oci-archive"] {
            let path = dir.path().join(format!("{kind}-{compress}"));
            let dest = transport(kind, &path, None);
            fails_naming(
                &[
                    "copy",
                    &transport("oci", &bad, None),
                    &dest,
                    "--compress",
                    compress,
                ],
                &["sha256:"],
            );
            assert_no_destination(kind, &path, None);
        }
    }
}
