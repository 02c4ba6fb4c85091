//! Golden digests that freeze compressed layer bytes (tests/data/compressed/expected.json,
//! see tests/data/README.md): `stevedore copy … oci:DIR --compress C` for `gzip` (level
//! 6), `gzip:1`, `gzip:9`, `zstd` (level 3) and `zstd:19`, over every layer of the golden
//! confs of tests/data/stream and over generated inputs (an empty tar, 1 MiB of zeros, a
//! tar of incompressible bytes from a fixed seed). Each blob is first vouched for by the
//! real tools: `gzip -dc` / `zstd -dc` give back the exact layer (its diff_id), the gzip
//! header has no name and mtime 0, the zstd frame no checksum and no content size. Any
//! changed digest fails the test; changing them needs a CHANGELOG.md entry.
//!
//! To remake the goldens (after a deliberate change of encoder, version or level):
//! `STEVEDORE_WRITE_GOLDEN=1 cargo test --release --test compressed_layers`.

mod common;
use common::*;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

const CODECS: [&str; 5] = ["gzip", "gzip:1", "gzip:9", "zstd", "zstd:19"];
const CASES: [&str; 4] = ["default", "owner", "popularity", "from_image"];

/// The generated inputs, in layer order: an empty tar (two zero blocks), 1 MiB of zeros
/// (also an empty tar), and a tar of 2 MiB + 12,345 pseudo-random bytes.
fn generated_layers() -> Vec<Vec<u8>> {
    vec![
        vec![0u8; 1024],
        vec![0u8; 1 << 20],
        one_file_tar("random.bin", &pseudo_random(9, (2 << 20) + 12_345)),
    ]
}

/// The real tool's decompression of `blob`, after checking the header fields that must
/// not depend on the machine or the input's name.
fn real_decompress(codec: &str, blob: &Path) -> Vec<u8> {
    let bytes = std::fs::read(blob).unwrap();
    let tool = if codec.starts_with("gzip") {
        assert_eq!(
            &bytes[..4],
            [0x1f, 0x8b, 8, 0],
            "gzip header, no name: {codec}"
        );
        assert_eq!(&bytes[4..8], [0; 4], "gzip mtime 0: {codec}");
        "gzip"
    } else {
        assert_eq!(&bytes[..4], [0x28, 0xb5, 0x2f, 0xfd], "zstd magic: {codec}");
        assert_eq!(
            bytes[4] & 0b1110_0100,
            0,
            "zstd: no content size or checksum"
        );
        "zstd"
    };
    run(Command::new(tool).arg("-dc").arg(blob)).stdout
}

/// For `source` copied with each codec: the diff_ids and, per codec, the blob digests,
/// each blob not in `checked` yet checked with the real tool (and added).
fn digests(source: &str, dir: &Path, checked: &mut HashSet<String>) -> Value {
    let mut out = Map::new();
    for codec in CODECS {
        let layout = dir.join(codec.replace(':', "-"));
        copy_image(
            source,
            &transport("oci", &layout, None),
            &["--compress", codec],
        );
        let manifest = oci_manifest(&layout, None);
        let config = read_json(&oci_blob(
            &layout,
            manifest["config"]["digest"].as_str().unwrap(),
        ));
        let diff_ids = config["rootfs"]["diff_ids"].clone();
        let blobs = layer_digests(&manifest);
        for (blob, diff_id) in blobs.iter().zip(diff_ids.as_array().unwrap()) {
            if !checked.insert(blob.clone()) {
                continue;
            }
            let plain = real_decompress(codec, &oci_blob(&layout, blob));
            assert_eq!(
                format!("sha256:{}", sha256_hex(&plain)),
                diff_id.as_str().unwrap(),
                "{source} {codec}: {blob} does not decompress to its layer"
            );
        }
        match out.get("diff_ids") {
            Some(d) => assert_eq!(d, &diff_ids, "{source}: diff_ids depend on the codec"),
            None => {
                out.insert("diff_ids".into(), diff_ids);
            }
        }
        out.insert(codec.into(), json!(blobs));
    }
    Value::Object(out)
}

#[test]
fn compressed_layer_digests_are_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let mut got = Map::new();
    let mut checked = HashSet::new();
    for case in CASES {
        let conf = golden_conf(case, dir.path());
        let work = dir.path().join(case);
        got.insert(
            case.into(),
            digests(conf.to_str().unwrap(), &work, &mut checked),
        );
        assert_eq!(got[case]["diff_ids"], expected(case)["diff_ids"], "{case}");
    }
    let layers = generated_layers();
    let source = dir.path().join("generated-src");
    write_plain_layout(
        &source,
        &layers.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        None,
    );
    let generated = digests(
        &transport("oci", &source, None),
        &dir.path().join("generated"),
        &mut checked,
    );
    // Docker's well-known empty layer: the input generator itself has not moved.
    assert_eq!(
        generated["diff_ids"][0],
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    );
    got.insert("generated".into(), generated);
    let got = Value::Object(got);
    let path = root().join("tests/data/compressed/expected.json");
    if std::env::var_os("STEVEDORE_WRITE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
    }
    let want = read_json(&path);
    for (input, codecs) in want.as_object().unwrap() {
        for (codec, digests) in codecs.as_object().unwrap() {
            assert_eq!(
                &got[input][codec], digests,
                "{input} {codec}: compressed bytes changed (see tests/data/README.md)"
            );
        }
    }
    assert_eq!(got, want, "inputs or codecs differ from the goldens");
}
