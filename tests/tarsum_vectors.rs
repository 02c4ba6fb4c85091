//! `stevedore tarsum` reproduces moby's TarSum test vectors (tarsum_test.go, whose data
//! files come from Debian's package of moby 20.10.24, fetched by scripts/deps.sh), gives
//! the same sums as moby's own tarsum code (built from that package by scripts/deps.sh)
//! on archives that exercise the Go reader's rules, and the same sum for the same entries
//! whether GNU tar or Python wrote the archive.

mod common;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn testdata(rel: &str) -> PathBuf {
    let p = root().join("target/moby-tarsum/testdata").join(rel);
    assert!(p.exists(), "{} missing: run scripts/deps.sh", p.display());
    p
}

/// `stevedore tarsum` of `input`; returns (exit status, stdout).
fn tarsum(input: &[u8], args: &[&str]) -> (bool, String) {
    feed(stevedore().arg("tarsum").args(args), input)
}

/// Runs `cmd` with `input` on stdin; returns its success and trimmed stdout.
fn feed(cmd: &mut Command, input: &[u8]) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

fn sum_of(file: &Path, version: &str, extra: Option<&Path>) -> String {
    let mut args = vec!["--version", version];
    let extra_arg;
    if let Some(e) = extra {
        extra_arg = e.display().to_string();
        args.extend(["--extra", &extra_arg]);
    }
    let (ok, out) = tarsum(&std::fs::read(file).unwrap(), &args);
    assert!(ok, "{out}");
    out
}

#[test]
fn upstream_test_data_files() {
    let layers = [
        "46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457",
        "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158",
        "xattr",
    ];
    let with_json = |i: usize, v: &str| {
        sum_of(
            &testdata(&format!("{}/layer.tar", layers[i])),
            v,
            Some(&testdata(&format!("{}/json", layers[i]))),
        )
    };
    let bare = |i: usize, v: &str| sum_of(&testdata(&format!("{}/layer.tar", layers[i])), v, None);
    assert_eq!(
        with_json(0, "v0"),
        "tarsum+sha256:4095cc12fa5fdb1ab2760377e1cd0c4ecdd3e61b4f9b82319d96fcea6c9a41c6"
    );
    assert_eq!(
        with_json(0, "dev"),
        "tarsum.dev+sha256:db56e35eec6ce65ba1588c20ba6b1ea23743b59e81fb6b7f358ccbde5580345c"
    );
    assert_eq!(
        with_json(2, "v0"),
        "tarsum+sha256:07e304a8dbcb215b37649fde1a699f8aeea47e60815707f1cdf4d55d25ff6ab4"
    );
    assert_eq!(
        with_json(2, "dev"),
        "tarsum.dev+sha256:6c58917892d77b3b357b0f9ad1e28e1f4ae4de3a8006bd3beb8beda214d8fd16"
    );
    assert_eq!(
        with_json(1, "v0"),
        "tarsum+sha256:c66bd5ec9f87b8f4c6135ca37684618f486a3dd1d113b138d0a177bfa39c2571"
    );
    assert_eq!(
        with_json(0, "v1"),
        "tarsum.v1+sha256:db56e35eec6ce65ba1588c20ba6b1ea23743b59e81fb6b7f358ccbde5580345c"
    );
    assert_eq!(
        with_json(1, "v1"),
        "tarsum.v1+sha256:2db1079d2a7f6cd7836712c95b8961d96fb1e222128dbef251a74c312cdf43ba"
    );
    assert_eq!(
        with_json(2, "v1"),
        "tarsum.v1+sha256:6c58917892d77b3b357b0f9ad1e28e1f4ae4de3a8006bd3beb8beda214d8fd16"
    );
    assert_eq!(
        bare(0, "v1"),
        "tarsum.v1+sha256:41cd5c911333ee394776e432fc5a27cc82dfea313e5feff965e31c0fddd9213d"
    );
    assert_eq!(
        bare(1, "v1"),
        "tarsum.v1+sha256:324d4cf44ee7daa46266c1df830c61a7df615c0632176a339e7310e34723d67a"
    );
    assert_eq!(
        bare(2, "v1"),
        "tarsum.v1+sha256:e77e6c36c4bc32c0795ca8a8c086bbaa6cb83b0d785522182d45d770cc5eeb6f"
    );
    assert_eq!(
        bare(0, "v0"),
        "tarsum+sha256:5e2c2a5b29c91f5ae3323f6cd74d1274c99de342669cb2e0c2b99f5e69c15598"
    );
    assert_eq!(
        bare(1, "v0"),
        "tarsum+sha256:2a7812e636235448785062100bb9103096aa6655a8f6bb9ac9b13fe8290f66df"
    );
    assert_eq!(
        bare(2, "v0"),
        "tarsum+sha256:c4c85576835bb02f053d33ef691d7c92a889ef8365481c608e6c33769d519ddf"
    );
}

#[test]
fn repeated_paths_keep_archive_order() {
    let v0 = [
        "7cabb5e9128bb4a93ff867b9464d7c66a644ae51ea2e90e6ef313f3bef93f077",
        "805fd393cfd58900b10c5636cf9bab48b2406d9b66523122f2352620c85dc7f9",
        "85d2b8389f077659d78aca898f9e632ed9161f553f144aef100648eac540147b",
        "cbe4dee79fe979d69c16c2bccd032e3205716a562f4a3c1ca1cbeed7b256eb19",
    ];
    let v1 = [
        "f58c88e8bec1a3f43ec5f0af0f02e4b8e9bf3730282d515cd31086a99e43f50a",
        "ac77bf939e533e883cea7b88db2519aa5e4c9014ec0154e86f17b6df3c9b65cc",
        "0a707b1a5384e71318173f3bbb78f9603ead51f33872095856d0ef882507dc50",
        "5487308f0d81a59788c566049dd7228b93825c11376486aa93301a7da2b31362",
    ];
    for i in 0..4 {
        let file = testdata(&format!("collision/collision-{i}.tar"));
        assert_eq!(
            sum_of(&file, "v0", None),
            format!("tarsum+sha256:{}", v0[i])
        );
        assert_eq!(
            sum_of(&file, "v1", None),
            format!("tarsum.v1+sha256:{}", v1[i])
        );
    }
}

/// Builds a tar with Python's tarfile (a real writer) from a small description.
fn python_tar(script: &str) -> Vec<u8> {
    let code = format!("import io, tarfile, sys\nbuf = io.BytesIO()\n{script}\nsys.stdout.buffer.write(buf.getvalue())\n");
    run(Command::new("python3").args(["-c", &code])).stdout
}

#[test]
fn iteration_vectors() {
    let one = |name: &str, extra: &str, data: &str| {
        python_tar(&format!(
            "t = tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT)\n\
             i = tarfile.TarInfo({name:?}); i.mode = 0; i.mtime = 0; i.size = {len}\n{extra}\n\
             t.addfile(i, io.BytesIO({data:?}.encode())); t.close()",
            len = data.len()
        ))
    };
    let plain = one("file.txt", "", "");
    assert_eq!(
        tarsum(&plain, &["--version", "v0"]).1,
        "tarsum+sha256:626c4a2e9a467d65c33ae81f7f3dedd4de8ccaee72af73223c4bc4718cbc7bbd"
    );
    assert_eq!(
        tarsum(&plain, &["--version", "dev"]).1,
        "tarsum.dev+sha256:6ffd43a1573a9913325b4918e124ee982a99c0f3cba90fc032a65f5e20bdd465"
    );
    let owner = "i.uid = i.gid = 1000; i.uname = 'slartibartfast'; i.gname = 'users'";
    let another = one("another.txt", owner, "test");
    assert_eq!(
        tarsum(&another, &["--version", "dev"]).1,
        "tarsum.dev+sha256:862964db95e0fa7e42836ae4caab3576ab1df8d275720a45bdd01a5a3730cc63"
    );
    let xattrs = |pairs: &str| {
        one(
            "xattrs.txt",
            &format!("{owner}; i.pax_headers = {pairs}"),
            "test",
        )
    };
    let lower = xattrs("{'SCHILY.xattr.user.key1': 'value1', 'SCHILY.xattr.user.key2': 'value2'}");
    assert_eq!(
        tarsum(&lower, &["--version", "dev"]).1,
        "tarsum.dev+sha256:4b1ba03544b49d96a32bacc77f8113220bd2f6a77e7e6d1e7b33cd87117d88e7"
    );
    let upper = xattrs("{'SCHILY.xattr.user.KEY1': 'value1', 'SCHILY.xattr.user.key2': 'value2'}");
    assert_eq!(
        tarsum(&upper, &["--version", "dev"]).1,
        "tarsum.dev+sha256:410b602c898bd4e82e800050f89848fc2cf20fd52aa59c1ce29df76b878b84a6"
    );
    let ignored = xattrs("{'SCHILY.xattr.user.NOT': 'CALCULATED'}");
    assert_eq!(
        tarsum(&ignored, &["--version", "v0"]).1,
        "tarsum+sha256:b1f97eab73abd7593c245e51070f9fbdb1824c6b00a0b7a3d7f0015cd05e9e86"
    );
    let mib = python_tar(
        "t = tarfile.open(fileobj=buf, mode='w', format=tarfile.USTAR_FORMAT)\n\
         i = tarfile.TarInfo('/testdata0'); i.mode = 0o755; i.mtime = 0; i.size = 1 << 20\n\
         t.addfile(i, io.BytesIO(bytes(1 << 20))); t.close()",
    );
    assert_eq!(
        tarsum(&mib, &["--version", "v0"]).1,
        "tarsum+sha256:75258b2c5dcd9adfe24ce71eeca5fc5019c7e669912f15703ede92b1a60cb11f"
    );
}

#[test]
fn empty_archives_and_errors() {
    let empty = "tarsum+sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for input in [vec![], vec![0u8; 1024], vec![0u8; 10240]] {
        assert_eq!(
            tarsum(&input, &["--version", "v0"]),
            (true, empty.to_string())
        );
    }
    let (ok, out) = tarsum(&[b'x'; 700], &[]);
    assert!(!ok && out.contains("invalid tar header"), "{out}");
    let tar = python_tar("t = tarfile.open(fileobj=buf, mode='w'); i = tarfile.TarInfo('f'); i.size = 5000; t.addfile(i, io.BytesIO(bytes(5000))); t.close()");
    let (ok, out) = tarsum(&tar[..2048], &[]);
    assert!(!ok && out.contains("unexpected EOF"), "{out}");
}

#[test]
fn gnu_long_names_fold_like_pax_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let long = "n".repeat(150);
    std::fs::create_dir_all(dir.join(&long)).unwrap();
    std::fs::write(dir.join(&long).join(&long), "content").unwrap();
    std::os::unix::fs::symlink("t".repeat(120), dir.join("link")).unwrap();
    let mut sums = Vec::new();
    for format in ["gnu", "pax", "posix"] {
        let tar = run(Command::new("tar").current_dir(&dir).args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@1",
            "--format",
            format,
            "-cf",
            "-",
            ".",
        ]))
        .stdout;
        sums.push(tarsum(&tar, &[]).1);
    }
    assert!(sums[0].starts_with("tarsum.v1+sha256:"));
    assert_eq!(
        sums[0], sums[1],
        "GNU L/K records and PAX records describe the same entries"
    );
}

/// The reference tool scripts/deps.sh builds from moby's own tarsum sources.
fn reference(input: &[u8], version: &str) -> (bool, String) {
    feed(Command::new(testdata("../tarsum")).arg(version), input)
}

#[test]
fn matches_moby_tarsum_on_tricky_archives() {
    let cases = [
        // A PAX global header before the entries (an entry of its own for Go).
        "t = tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT, pax_headers={'comment': 'g', 'SCHILY.xattr.user.g': 'x'})\n\
         i = tarfile.TarInfo('a'); i.size = 1; t.addfile(i, io.BytesIO(b'a')); t.close()",
        // xattrs, one of them empty (Go 1.19 drops it), a big uid and a fractional mtime in PAX.
        "t = tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT)\n\
         i = tarfile.TarInfo('x'); i.size = 2; i.uid = 10000000; i.mtime = 1.75\n\
         i.pax_headers = {'SCHILY.xattr.user.b': 'B', 'SCHILY.xattr.user.a': 'A', 'SCHILY.xattr.user.e': ''}\n\
         t.addfile(i, io.BytesIO(b'xx')); t.close()",
        // GNU long names and long link targets, a hard link, devices and a fifo.
        "t = tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT)\n\
         n = 'd' * 150 + '/' + 'f' * 120\n\
         i = tarfile.TarInfo(n); i.size = 3; t.addfile(i, io.BytesIO(b'abc'))\n\
         l = tarfile.TarInfo('l'); l.type = tarfile.SYMTYPE; l.linkname = 'z' * 130; t.addfile(l)\n\
         h = tarfile.TarInfo('h'); h.type = tarfile.LNKTYPE; h.linkname = n; t.addfile(h)\n\
         c = tarfile.TarInfo('c'); c.type = tarfile.CHRTYPE; c.devmajor = 1; c.devminor = 3; t.addfile(c)\n\
         b = tarfile.TarInfo('b'); b.type = tarfile.BLKTYPE; b.devmajor = 8; b.devminor = 1; t.addfile(b)\n\
         f = tarfile.TarInfo('p'); f.type = tarfile.FIFOTYPE; t.addfile(f); t.close()",
        // A USTAR name split into prefix and name.
        "t = tarfile.open(fileobj=buf, mode='w', format=tarfile.USTAR_FORMAT)\n\
         i = tarfile.TarInfo('p' * 120 + '/' + 'n' * 40); i.size = 0; t.addfile(i); t.close()",
        // The same path three times, among other entries.
        "t = tarfile.open(fileobj=buf, mode='w')\n\
         for k, d in enumerate([b'1', b'2', b'3']):\n    i = tarfile.TarInfo('dup'); i.size = 1; i.mtime = k; t.addfile(i, io.BytesIO(d))\n\
         for n in ['e', 'f', 'g']:\n    i = tarfile.TarInfo(n); i.size = 0; t.addfile(i)\n\
         t.close()",
        // A global header that renames itself with a path record.
        "t = tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT, pax_headers={'path': 'renamed'})\n\
         i = tarfile.TarInfo('b'); i.size = 0; t.addfile(i); t.close()",
        // An old-style regular file whose name ends in '/' (read as a directory).
        "t = tarfile.open(fileobj=buf, mode='w', format=tarfile.USTAR_FORMAT)\n\
         i = tarfile.TarInfo('dirlike/'); i.type = tarfile.AREGTYPE; t.addfile(i); t.close()",
    ];
    for script in cases {
        let tar = python_tar(script);
        for version in ["v0", "v1", "dev"] {
            let ours = tarsum(&tar, &["--version", version]);
            assert_eq!(ours, reference(&tar, version), "{version}: {script}");
        }
    }
}
