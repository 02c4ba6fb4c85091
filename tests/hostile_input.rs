//! Regressions for hostile input found by reading the readers (issue #8, point 5):
//! declared sizes that wrap offsets or become allocations, and JSON numbers a tool
//! cannot hold. Each must end quickly with one `stevedore: ` line naming the input
//! (and the member), exit 1; never a hang, a panic or an abort.

mod hostile;

use hostile::{header, pax_record, push_padded, run_limited, scratch, seeds, stevedore, Outcome};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Far below the time a wrapping offset loops for.
const QUICK: Duration = Duration::from_secs(5);

/// 2^64 − 512: a multiple of 512 that wraps any offset it is added to.
const WRAPS: u64 = u64::MAX - 511;

/// Runs `cmd` in `dir` under the harness limits.
fn run_in(cmd: &mut Command, dir: &Path, stdin: Option<&Path>) -> Outcome {
    cmd.current_dir(dir);
    run_limited(cmd, stdin, dir, QUICK)
}

/// Asserts exit 1 with one `stevedore: ` line holding every one of `words`.
fn clean_error(o: &Outcome, words: &[&str]) -> String {
    assert_eq!(o.code, Some(1), "{}", o.describe());
    let line = o.stderr.trim_end_matches('\n');
    assert!(
        line.starts_with("stevedore: ") && !line.contains('\n'),
        "{}",
        o.describe()
    );
    for w in words {
        assert!(line.contains(w), "{w:?} missing: {line}");
    }
    line.to_string()
}

/// A tar of one header declaring `size` followed by `data_len` zero bytes.
fn tar_declaring(dir: &Path, name: &str, kind: u8, size: u64, data_len: usize) -> PathBuf {
    let mut tar = header(name.as_bytes(), kind, size).to_vec();
    tar.resize(512 + data_len, 0);
    let path = dir.join(format!("{}.tar", name.replace('/', "_")));
    std::fs::write(&path, tar).unwrap();
    path
}

/// Every command that reads a base image, with `archive` as its input.
fn base_image_readers(archive: &Path, dir: &Path) -> Vec<Command> {
    let s = seeds::get();
    let mut export = stevedore();
    export
        .arg("export-image")
        .arg(archive)
        .arg("-o")
        .arg(dir.join("out.tar"));
    let mut unpack = stevedore();
    unpack
        .arg("unpack-image")
        .arg(archive)
        .arg(dir.join("root"));
    let mut merge = stevedore();
    merge
        .arg("merge-images")
        .arg("-o")
        .arg(dir.join("merged.tar"));
    merge.arg(archive).arg(&s.archive);
    let conf = dir.join("conf.json");
    std::fs::write(&conf, s.conf_with_base(archive).to_string()).unwrap();
    let mut stream = stevedore();
    stream.arg("stream-layered").arg(&conf);
    let attrs = s.build_attrs(&dir.join("image"), Some(archive));
    std::fs::write(dir.join(".attrs.json"), attrs.to_string()).unwrap();
    let mut build_image = stevedore();
    build_image.arg("nix-build-image").env("NIX_BUILD_TOP", dir);
    vec![export, unpack, merge, stream, build_image]
}

#[test]
fn base_256_size_that_wraps_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tar_declaring(tmp.path(), "abc/layer.tar", b'0', WRAPS, 1024);
    let name = archive.to_str().unwrap();
    for mut cmd in base_image_readers(&archive, tmp.path()) {
        let dir = scratch(tmp.path(), "run");
        let words = [
            name,
            "member abc/layer.tar: declares 18446744073709551104 bytes but only 1024 remain",
        ];
        clean_error(&run_in(&mut cmd, &dir, None), &words);
    }
}

#[test]
fn huge_pax_and_long_name_records() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in [b'x', b'g', b'L', b'K'] {
        for size in [1 << 40, WRAPS] {
            let name = if kind == b'L' || kind == b'K' {
                "././@LongLink"
            } else {
                "././@PaxHeader"
            };
            let archive = tar_declaring(tmp.path(), name, kind, size, 1024);
            let mut cmd = stevedore();
            cmd.arg("export-image")
                .arg(&archive)
                .arg("-o")
                .arg(tmp.path().join("o"));
            let declared = format!("declares {size} bytes but only 1024 remain");
            let words = [archive.to_str().unwrap(), name, &declared];
            clean_error(&run_in(&mut cmd, tmp.path(), None), &words);
        }
    }
}

#[test]
fn records_over_one_mebibyte_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let body = pax_record("comment", &"c".repeat(1 << 20));
    let mut tar = header(b"././@PaxHeader", b'x', body.len() as u64).to_vec();
    push_padded(&mut tar, &body);
    tar.extend_from_slice(&header(b"manifest.json", b'0', 0));
    tar.resize(tar.len() + 1024, 0);
    let archive = tmp.path().join("big-pax.tar");
    std::fs::write(&archive, &tar).unwrap();
    let mut cmd = stevedore();
    cmd.arg("export-image")
        .arg(&archive)
        .arg("-o")
        .arg(tmp.path().join("o"));
    let words = [
        archive.to_str().unwrap(),
        "PAX record",
        "1048576-byte limit",
    ];
    clean_error(&run_in(&mut cmd, tmp.path(), None), &words);
    let stdin = tmp.path().join("stdin.tar");
    std::fs::write(&stdin, &tar).unwrap();
    assert_eq!(
        tarsum_of(&stdin, tmp.path()),
        (1, "archive/tar: header field too long".to_string())
    );
}

/// `stevedore tarsum < input`: its exit code and stdout line; never a signal or a hang.
fn tarsum_of(input: &Path, dir: &Path) -> (i32, String) {
    let o = run_in(stevedore().arg("tarsum"), dir, Some(input));
    assert!(o.code.is_some() && o.stderr.is_empty(), "{}", o.describe());
    (o.code.unwrap(), o.stdout_text().trim_end().to_string())
}

/// moby's own tarsum tool (v1), when scripts/deps.sh has built it.
fn moby_tarsum(input: &Path) -> Option<(i32, String)> {
    moby_tarsum_version(input, "v1")
}

#[test]
fn tarsum_with_huge_declared_sizes_on_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (b'x', 1 << 40, "unexpected EOF"),
        (b'L', 1 << 40, "unexpected EOF"),
        (b'x', WRAPS, "archive/tar: invalid tar header"),
        (b'0', WRAPS, "archive/tar: invalid tar header"),
        (b'0', 1 << 40, "unexpected EOF"),
    ];
    for (kind, size, message) in cases {
        let input = tar_declaring(tmp.path(), &format!("m{}", kind as char), kind, size, 1024);
        let got = tarsum_of(&input, tmp.path());
        assert_eq!(got, (1, message.to_string()), "{} {size}", kind as char);
        if let Some(want) = moby_tarsum(&input) {
            assert_eq!(got, want, "moby's tarsum on {} {size}", kind as char);
        }
    }
}

#[test]
fn tarsum_refuses_a_negative_pax_size() {
    let tmp = tempfile::tempdir().unwrap();
    let body = pax_record("size", "-1");
    let mut tar = header(b"././@PaxHeader", b'x', body.len() as u64).to_vec();
    push_padded(&mut tar, &body);
    tar.extend_from_slice(&header(b"file", b'0', 0));
    tar.resize(tar.len() + 1024, 0);
    let input = tmp.path().join("negative.tar");
    std::fs::write(&input, &tar).unwrap();
    let got = tarsum_of(&input, tmp.path());
    assert_eq!(got, (1, "archive/tar: invalid tar header".to_string()));
    if let Some(want) = moby_tarsum(&input) {
        assert_eq!(got, want);
    }
}

#[test]
fn base_json_numbers_jshon_cannot_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let content = tmp.path().join("content");
    std::fs::create_dir_all(&content).unwrap();
    for (number, why) in [
        ("1e400", "real number overflow"),
        ("-1e400", "real number overflow"),
        ("18446744073709551616", "too big integer"),
        ("-9223372036854775809", "too big negative integer"),
    ] {
        let base_json = tmp.path().join("base.json");
        std::fs::write(
            &base_json,
            format!("{{\"config\": {{\"Memory\": {number}}}}}"),
        )
        .unwrap();
        let out = tmp.path().join("layer");
        let mut cmd = stevedore();
        cmd.arg("image-layer").arg(&content).arg("-o").arg(&out);
        cmd.arg("--base-json").arg(&base_json);
        let o = run_in(&mut cmd, tmp.path(), None);
        clean_error(&o, &[base_json.to_str().unwrap(), why]);
        assert!(!out.join("layer.tar").exists(), "output left behind");
    }
}

/// A PAX header (`x`) holding `records`.
fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
    let mut out = header(b"././@PaxHeader", b'x', body.len() as u64).to_vec();
    push_padded(&mut out, &body);
    out
}

/// A member with `data`, padded.
fn member(name: &str, kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = header(name.as_bytes(), kind, data.len() as u64).to_vec();
    push_padded(&mut out, data);
    out
}

/// A GNU long name record (`L`) holding `name` (nothing for an empty one).
fn long_name(name: &str) -> Vec<u8> {
    let body = if name.is_empty() {
        Vec::new()
    } else {
        format!("{name}\0").into_bytes()
    };
    member("././@LongLink", b'L', &body)
}

/// Edge cases of Go's tar reader the fuzzer found stevedore's tarsum reading otherwise:
/// each input, and whether Go (and so stevedore) gives a sum for it.
fn go_reader_cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let tar = |parts: &[Vec<u8>]| [parts.concat(), vec![0; 1024]].concat();
    let file = || member("f", b'0', b"");
    let mut odd_numbers = header(b"f", b'0', 0);
    odd_numbers[100..108].copy_from_slice(b" \0 0644 ");
    hostile::fix_checksum(&mut odd_numbers);
    let mut unpadded = header(b"f", b'0', 5).to_vec();
    unpadded.extend_from_slice(b"hello");
    vec![
        (
            "a zero block, then a header",
            tar(&[file(), vec![0; 512], file()]),
            false,
        ),
        ("input ending in padding", unpadded, true),
        (
            "a negative PAX size on a directory",
            tar(&[pax(&[("size", "-1")]), member("d/", b'5', b"")]),
            true,
        ),
        (
            "a negative PAX size on a file",
            tar(&[pax(&[("size", "-1")]), file()]),
            false,
        ),
        (
            "an empty GNU long name",
            tar(&[long_name(""), member("f", b'0', b"x")]),
            true,
        ),
        (
            "a PAX path and a GNU long name",
            tar(&[pax(&[("path", "pax")]), long_name("gnu"), file()]),
            true,
        ),
        (
            "a fractional PAX uid",
            tar(&[pax(&[("uid", "5.5")]), file()]),
            false,
        ),
        (
            "a negative fractional PAX mtime",
            tar(&[pax(&[("mtime", "-1.5")]), file()]),
            true,
        ),
        (
            "a bad PAX atime",
            tar(&[pax(&[("atime", "x")]), file()]),
            false,
        ),
        (
            "numbers between NULs and spaces",
            tar(&[odd_numbers.to_vec()]),
            true,
        ),
    ]
}

#[test]
fn tarsum_reads_as_gos_archive_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.tar");
    for (what, tar, ok) in go_reader_cases() {
        std::fs::write(&input, &tar).unwrap();
        for version in ["v0", "v1"] {
            let mut cmd = stevedore();
            cmd.args(["tarsum", "--version", version]);
            let o = run_in(&mut cmd, tmp.path(), Some(&input));
            let ours = (o.code.unwrap(), o.stdout_text().trim_end().to_string());
            assert_eq!(ours.0 == 0, ok, "{what}: {ours:?}");
            if let Some(theirs) = moby_tarsum_version(&input, version) {
                assert_eq!(ours, theirs, "{what} ({version})");
            }
        }
    }
}

/// moby's own tarsum tool for one TarSum version, when scripts/deps.sh has built it.
fn moby_tarsum_version(input: &Path, version: &str) -> Option<(i32, String)> {
    let tool = seeds::target_dir().join("moby-tarsum/tarsum");
    let out = Command::new(tool)
        .arg(version)
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    Some((out.status.code()?, text))
}

/// A docker archive holding one image whose only layer is `layer`.
fn archive_with_layer(dir: &Path, layer: &[u8]) -> PathBuf {
    let config = br#"{"rootfs": {"type": "layers", "diff_ids": ["sha256:00"]}}"#;
    let manifest = br#"[{"Config": "c.json", "Layers": ["l/layer.tar"]}]"#;
    let mut tar = member("manifest.json", b'0', manifest);
    tar.extend(member("c.json", b'0', config));
    tar.extend(member("l/layer.tar", b'0', layer));
    tar.resize(tar.len() + 1024, 0);
    let path = dir.join("archive.tar");
    std::fs::write(&path, tar).unwrap();
    path
}

/// Layer members no file system can hold, and what the error says about each.
fn unholdable_members() -> Vec<(Vec<u8>, &'static str)> {
    let long_target = "t".repeat(5000);
    let long_name = format!("{}/f", "d/".repeat(2100));
    let with_pax = |records: &[(&str, &str)], name: &[u8], kind: u8| {
        [pax(records), header(name, kind, 0).to_vec(), vec![0; 1024]].concat()
    };
    vec![
        (
            with_pax(&[], b"nix/store", b'2'),
            "\"nix/store\" is a symlink to nothing",
        ),
        (
            with_pax(&[("linkpath", &long_target)], b"link", b'2'),
            "\"link\" is a symlink to a target over 4095 bytes",
        ),
        (
            with_pax(&[("path", &long_name)], b"f", b'0'),
            "has a name over 4095 bytes",
        ),
    ]
}

#[test]
fn layer_members_no_file_system_holds() {
    let tmp = tempfile::tempdir().unwrap();
    for (layer, why) in unholdable_members() {
        let archive = archive_with_layer(tmp.path(), &layer);
        let words = [archive.to_str().unwrap(), "member l/layer.tar", why];
        let mut export = stevedore();
        export.arg("export-image").arg(&archive).arg("-o");
        export.arg(tmp.path().join("o.tar"));
        clean_error(&run_in(&mut export, tmp.path(), None), &words);
        let mut unpack = stevedore();
        unpack
            .arg("unpack-image")
            .arg(&archive)
            .arg(tmp.path().join("root"));
        clean_error(&run_in(&mut unpack, tmp.path(), None), &words);
    }
}

/// Layer sizes past 2^64 in all: planning sums them as Python does, without overflow.
#[test]
fn plan_with_huge_nar_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |c: char| format!("/nix/store/{}-p{c}", c.to_string().repeat(32));
    let graph = serde_json::json!([
        {"path": path('a'), "narSize": u64::MAX, "references": [path('b'), path('c')]},
        {"path": path('b'), "narSize": u64::MAX, "references": []},
        {"path": path('c'), "narSize": u64::MAX, "references": []},
    ]);
    let file = tmp.path().join("graph.json");
    std::fs::write(&file, graph.to_string()).unwrap();
    let o = run_in(stevedore().arg("plan").arg(&file), tmp.path(), None);
    assert_eq!(o.code, Some(0), "{}", o.describe());
}

#[test]
fn non_ascii_time_in_a_conf() {
    let tmp = tempfile::tempdir().unwrap();
    let s = seeds::get();
    let mut conf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&s.conf).unwrap()).unwrap();
    conf["created"] = serde_json::json!("197é-01-01T00:00:00Z");
    let path = tmp.path().join("conf.json");
    std::fs::write(&path, conf.to_string()).unwrap();
    let mut cmd = stevedore();
    cmd.arg("stream-layered").arg(&path);
    let words = [path.to_str().unwrap(), "is not an ISO 8601 time"];
    clean_error(&run_in(&mut cmd, tmp.path(), None), &words);
}
