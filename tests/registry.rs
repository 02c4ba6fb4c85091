//! `stevedore copy` to and from real registries (Debian's docker-registry, distribution
//! 2.8, started by the tests on 127.0.0.1): pushes read back by skopeo and containerd,
//! pulls of what skopeo pushed, indexes by platform, a second push that uploads nothing
//! and opens no store file, Basic and token auth, and injected faults that never yield a
//! wrong image.

mod common;
use common::containerd::*;
use common::registry::*;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// stevedore with its own cache and home (no auth files), bounded in time.
fn sd(dir: &Path) -> Command {
    let mut c = stevedore();
    c.env("XDG_CACHE_HOME", dir.join("cache"))
        .env("HOME", dir)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    c
}

fn bounded(cmd: &mut Command) -> Output {
    run_bounded(cmd, Duration::from_secs(120))
}

fn ok(cmd: &mut Command) -> Output {
    let out = bounded(cmd);
    assert_success(&out, &format!("{cmd:?}"));
    out
}

/// The golden conf `case` with its store layers' digests recorded (as the Nix side
/// writes confs by default).
fn digest_conf(case: &str, dir: &Path) -> PathBuf {
    let conf = golden_conf(case, dir);
    let out = dir.join(format!("{case}-digests.conf.json"));
    run(stevedore()
        .arg("conf-digests")
        .arg(&conf)
        .arg("-o")
        .arg(&out));
    out
}

fn copy(dir: &Path, args: &[&str]) -> Output {
    ok(sd(dir).arg("copy").args(args))
}

/// The config's bytes as the source stores them, parsed.
fn skopeo_config(src: &str) -> Value {
    let out =
        run_skopeo(skopeo().args(["inspect", "--tls-verify=false", "--raw", "--config", src]));
    assert_success(&out, src);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A manifest or index as stored, of any transport.
fn raw_manifest(src: &str) -> Value {
    serde_json::from_slice(&raw_bytes(src)).unwrap()
}

fn raw_bytes(src: &str) -> Vec<u8> {
    let out = run_skopeo(skopeo().args(["inspect", "--raw"]).args(tls(src)).arg(src));
    assert_success(&out, src);
    out.stdout
}

fn tls(src: &str) -> &'static [&'static str] {
    match src.starts_with("docker://") {
        true => &["--tls-verify=false"],
        false => &[],
    }
}

/// Blob upload requests the registry saw (sessions opened, bodies, closes).
fn uploads(reg: &Registry) -> usize {
    reg.requests("POST", "/blobs/uploads/")
        + reg.requests("PATCH", "/blobs/uploads/")
        + reg.requests("PUT", "/blobs/uploads/")
}

/// The last stderr line: the error of a failed command.
fn error_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines().last().unwrap_or_default().to_string()
}

#[test]
fn pushed_images_read_back_by_skopeo_and_pulled_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::plain();
    let conf = digest_conf("default", d);
    let archive = d.join("streamed.tar");
    stream_to(&conf, &archive);
    let want = config(&archive);
    for (repo, compress) in [
        ("test/gzip", "gzip"),
        ("test/zstd", "zstd"),
        ("test/none", "none"),
    ] {
        let dest = format!("docker://{}/{repo}:v1", reg.addr());
        copy(d, &[conf.to_str().unwrap(), &dest, "--compress", compress]);
        assert_eq!(skopeo_config(&dest), want, "{compress}");
        // skopeo decompresses every layer and checks it against its diff_id (it writes
        // no zstd into docker archives: those it copies to a layout, checking digests).
        let via_skopeo = d.join(format!("skopeo-{compress}"));
        let (to, check_diff_ids) = match compress {
            "zstd" => (format!("oci:{}:x", via_skopeo.display()), false),
            _ => (format!("docker-archive:{}", via_skopeo.display()), true),
        };
        assert_success(&skopeo_copy(&dest, &to, &["--src-tls-verify=false"]), &dest);
        if check_diff_ids {
            assert_eq!(config(&via_skopeo)["rootfs"], want["rootfs"]);
        }
        // stevedore pulls it back to the same config bytes and layers.
        let back = d.join(format!("back-{compress}.tar"));
        copy(d, &[&dest, &format!("docker-archive:{}", back.display())]);
        let back_manifest = manifest(&back);
        assert_eq!(
            tar_member(&back, back_manifest[0]["Config"].as_str().unwrap()),
            tar_member(&archive, manifest(&archive)[0]["Config"].as_str().unwrap())
        );
        for layer in back_manifest[0]["Layers"].as_array().unwrap() {
            let name = layer.as_str().unwrap();
            let diff_id = format!("sha256:{}", sha256_hex(&tar_member(&back, name)));
            assert!(want["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .contains(&Value::String(diff_id)));
        }
    }
    // The manifest pushed with --compress zstd names zstd layers.
    let m = raw_manifest(&format!("docker://{}/test/zstd:v1", reg.addr()));
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

#[test]
fn images_skopeo_pushed_are_pulled_with_their_digests() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::plain();
    let (image, manifest) = seed_registry(d, reg.addr(), "seeded/img:v1", 7, 3 << 20, &[]);
    let src = format!("docker://{}/seeded/img:v1", reg.addr());
    let layout = d.join("pulled");
    copy(d, &[&src, &format!("oci:{}:v1", layout.display())]);
    // The gzip blob skopeo pushed is kept as it is: same digests, same manifest layers.
    let pulled = oci_manifest(&layout, Some("v1"));
    assert_eq!(
        pulled["layers"][0]["digest"],
        manifest["layers"][0]["digest"]
    );
    let config = skopeo_config(&format!("oci:{}:v1", layout.display()));
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(&image.layer))
    );
    let archive = d.join("pulled.tar");
    copy(
        d,
        &[
            &src,
            &format!("docker-archive:{}:seeded/img:v1", archive.display()),
        ],
    );
    let m = common::manifest(&archive);
    assert_eq!(
        tar_member(&archive, m[0]["Layers"][0].as_str().unwrap()),
        image.layer
    );
    assert_eq!(m[0]["RepoTags"][0], "seeded/img:v1");
}

#[test]
fn a_second_push_uploads_nothing_and_reads_no_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::plain();
    let conf = digest_conf("default", d);
    let dest = format!("docker://{}/test/again:v1", reg.addr());
    copy(d, &[conf.to_str().unwrap(), &dest]);
    let first = uploads(&reg);
    // Six layers in three requests each (POST, PATCH, PUT), the config in two.
    assert_eq!(first, 6 * 3 + 2);
    let trace = d.join("trace");
    let out = ok(Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_stevedore"))
        .env("XDG_CACHE_HOME", d.join("cache"))
        .env("HOME", d)
        .env_remove("REGISTRY_AUTH_FILE")
        .args(["copy", conf.to_str().unwrap(), &dest]));
    assert_eq!(uploads(&reg), first, "the second push uploaded something");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the registry has it"));
    let traced = std::fs::read_to_string(&trace).unwrap();
    let conf_value = read_json(&conf);
    let store_paths: Vec<&str> = conf_value["store_layers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l.as_array().unwrap().iter().map(|p| p.as_str().unwrap()))
        .collect();
    let opened: Vec<&str> = traced
        .lines()
        .filter(|l| !l.contains("O_DIRECTORY"))
        .filter(|l| store_paths.iter().any(|p| l.contains(p)))
        .collect();
    assert!(opened.is_empty(), "store files opened: {opened:#?}");
    // From a machine without the cache (a fresh CI runner): the tag's current manifest
    // and config pair each diff_id with its blob, so nothing is uploaded either.
    let out = ok(sd(d).env("XDG_CACHE_HOME", d.join("fresh-cache")).args([
        "copy",
        conf.to_str().unwrap(),
        &dest,
    ]));
    assert_eq!(
        uploads(&reg),
        first,
        "a push without the cache uploaded something"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("uploaded"));
    // The same image to another repository: every blob is mounted, none uploaded.
    let other = format!("docker://{}/test/other:v1", reg.addr());
    let out = copy(d, &[conf.to_str().unwrap(), &other]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("mounted from test/again"));
    assert_eq!(reg.requests("PATCH", "/v2/test/other/"), 0);
    assert!(reg.requests("POST", "mount=") >= 6);
    assert_eq!(skopeo_config(&other), skopeo_config(&dest));
}

/// `conf` with another architecture, as a new conf file.
fn with_architecture(conf: &Path, arch: &str, dir: &Path) -> PathBuf {
    let mut v = read_json(conf);
    v["architecture"] = Value::String(arch.to_string());
    write_tmp(dir, &format!("{arch}.conf.json"), v.to_string().as_bytes())
}

#[test]
fn several_sources_make_an_index_pulled_by_platform_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::plain();
    let conf = digest_conf("default", d);
    let arm = with_architecture(&conf, "arm64", d);
    for (format, media_type) in [
        ("oci", "application/vnd.oci.image.index.v1+json"),
        (
            "docker",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ),
    ] {
        let dest = format!("docker://{}/multi/{format}:v1", reg.addr());
        copy(
            d,
            &[
                conf.to_str().unwrap(),
                arm.to_str().unwrap(),
                &dest,
                "--format",
                format,
            ],
        );
        let index = raw_manifest(&dest);
        assert_eq!(index["mediaType"], media_type);
        let archs: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap())
            .collect();
        assert_eq!(archs, ["amd64", "arm64"]);
        // By the index's digest, one platform or the other.
        let raw = raw_bytes(&dest);
        let by_digest = format!(
            "docker://{}/multi/{format}@sha256:{}",
            reg.addr(),
            sha256_hex(&raw)
        );
        for (arch, flags) in [("amd64", vec![]), ("arm64", vec!["--arch", "arm64"])] {
            let out = d.join(format!("{format}-{arch}"));
            let mut args = vec![by_digest.as_str()];
            let dest = format!("oci:{}:x", out.display());
            args.push(&dest);
            args.extend(flags);
            copy(d, &args);
            assert_eq!(
                skopeo_config(&format!("oci:{}:x", out.display()))["architecture"],
                arch
            );
        }
        let out = bounded(sd(d).args([
            "copy",
            &by_digest,
            "oci:/nonexistent-never/x",
            "--arch",
            "s390x",
        ]));
        assert!(!out.status.success());
        assert!(
            error_line(&out).contains("no image for linux/s390x (it has linux/amd64, linux/arm64)"),
            "{}",
            error_line(&out)
        );
    }
    // The same index into an OCI layout.
    let layout = d.join("layout");
    copy(
        d,
        &[
            conf.to_str().unwrap(),
            arm.to_str().unwrap(),
            &format!("oci:{}:multi", layout.display()),
        ],
    );
    let index = raw_manifest(&format!("oci:{}:multi", layout.display()));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
}

#[test]
fn containerd_pulls_and_runs_what_was_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::plain();
    let conf = runnable_conf(d);
    let ctd = Containerd::start();
    for (i, compress) in ["gzip", "zstd"].into_iter().enumerate() {
        let reference = format!("{}/run/{compress}:v1", reg.addr());
        copy(
            d,
            &[
                conf.to_str().unwrap(),
                &format!("docker://{reference}"),
                "--compress",
                compress,
            ],
        );
        ok(ctd
            .ctr()
            .args(["images", "pull", "--plain-http", &reference]));
        let out = ok(ctd.ctr().args([
            "run",
            "--rm",
            &reference,
            &format!("run-{}-{i}", std::process::id()),
        ]));
        assert_eq!(String::from_utf8_lossy(&out.stdout), HELLO, "{compress}");
    }
}

#[test]
fn basic_auth_takes_credentials_from_auth_files_and_never_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::htpasswd("alice", "s3cret-pass");
    let conf = digest_conf("default", d);
    let dest = format!("docker://{}/auth/img:v1", reg.addr());
    let src = conf.to_str().unwrap();
    // None, then wrong ones: one line naming the registry, never the password.
    let out = bounded(sd(d).args(["copy", src, &dest]));
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.contains(reg.addr()) && line.contains("wants credentials"),
        "{line}"
    );
    let out = bounded(sd(d).args(["copy", src, &dest, "--dest-creds", "alice:wrong-pass"]));
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.contains(reg.addr()) && line.contains("refused the credentials of user \"alice\""),
        "{line}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("wrong-pass"));
    // Right ones, from REGISTRY_AUTH_FILE.
    let auth = d.join("auth.json");
    write_auth_file(&auth, reg.addr(), "alice", "s3cret-pass");
    let out = ok(sd(d)
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["copy", src, &dest]));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
    let back = d.join("back.tar");
    ok(sd(d).env("REGISTRY_AUTH_FILE", &auth).args([
        "copy",
        &dest,
        &format!("docker-archive:{}", back.display()),
    ]));
    assert_eq!(
        config(&back)["rootfs"],
        skopeo_config_creds(&dest, "alice:s3cret-pass")["rootfs"]
    );
}

fn skopeo_config_creds(src: &str, creds: &str) -> Value {
    let out = run_skopeo(skopeo().args([
        "inspect",
        "--tls-verify=false",
        "--creds",
        creds,
        "--raw",
        "--config",
        src,
    ]));
    assert_success(&out, src);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn token_auth_asks_for_the_scopes_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (reg, tokens) = Registry::token("bob", "t0ken-pass");
    let conf = digest_conf("default", d);
    let src = conf.to_str().unwrap();
    let dest = format!("docker://{}/tok/img:v1", reg.addr());
    let out = bounded(sd(d).args(["copy", src, &dest, "--dest-creds", "bob:bad-pass"]));
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.contains(reg.addr()) && line.contains("refused"),
        "{line}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("bad-pass"));
    copy(d, &[src, &dest, "--dest-creds", "bob:t0ken-pass"]);
    assert!(
        tokens
            .scopes()
            .iter()
            .any(|s| s == "repository:tok/img:pull,push"),
        "{:?}",
        tokens.scopes()
    );
    let back = d.join("back.tar");
    copy(
        d,
        &[
            &dest,
            &format!("docker-archive:{}", back.display()),
            "--src-creds",
            "bob:t0ken-pass",
        ],
    );
    assert!(tokens
        .scopes()
        .iter()
        .any(|s| s == "repository:tok/img:pull"));
    assert_eq!(config(&back)["rootfs"], config_of_conf(&conf, d)["rootfs"]);
    // Mounting from another repository asks for pull on it too.
    let other = format!("docker://{}/tok/other:v1", reg.addr());
    copy(d, &[src, &other, "--dest-creds", "bob:t0ken-pass"]);
    assert!(tokens
        .scopes()
        .iter()
        .any(|s| s == "repository:tok/img:pull"));
}

fn config_of_conf(conf: &Path, dir: &Path) -> Value {
    let archive = dir.join("conf-archive.tar");
    stream_to(conf, &archive);
    config(&archive)
}

#[test]
fn injected_faults_are_retried_and_never_give_a_wrong_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::plain();
    let proxy = FaultProxy::start(reg.addr());
    let conf = digest_conf("default", d);
    let want = config_of_conf(&conf, d);
    let dest = format!("docker://{}/fault/img:v1", proxy.addr());
    // Push through 500s, a 503 and a 429 with Retry-After.
    proxy.add_fault("PATCH", "/blobs/uploads/", Fault::status(500), 2);
    proxy.add_fault("HEAD", "/blobs/", Fault::status(503), 1);
    proxy.add_fault("PUT", "/manifests/", Fault::too_many_requests(1), 1);
    copy(d, &[conf.to_str().unwrap(), &dest]);
    assert_eq!(
        skopeo_config(&format!("docker://{}/fault/img:v1", reg.addr())),
        want
    );
    // Pull through a dropped connection, a corrupted byte, a 500 and a 429.
    proxy.clear_faults();
    let drop = proxy.add_fault("GET", "/blobs/", Fault::DropMidBody, 1);
    let corrupt = proxy.add_fault("GET", "/blobs/", Fault::CorruptByte, 1);
    proxy.add_fault("GET", "/blobs/", Fault::status(500), 1);
    proxy.add_fault("GET", "/manifests/", Fault::too_many_requests(1), 1);
    let back = d.join("back.tar");
    copy(d, &[&dest, &format!("docker-archive:{}", back.display())]);
    assert_eq!((proxy.fired(drop), proxy.fired(corrupt)), (1, 1));
    assert_eq!(config(&back), want);
    // Every attempt corrupted: a clear error naming the blob, and no archive.
    proxy.clear_faults();
    proxy.add_fault("GET", "/blobs/", Fault::CorruptByte, 100);
    let failed = d.join("failed.tar");
    let out = bounded(sd(d).args([
        "copy",
        &dest,
        &format!("docker-archive:{}", failed.display()),
    ]));
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.contains("blob sha256:") && line.contains("attempts") && line.contains("hash to"),
        "{line}"
    );
    assert!(!failed.exists());
    // Every upload refused: the push fails naming the layer, the tag never appears.
    proxy.clear_faults();
    proxy.add_fault("PATCH", "/blobs/uploads/", Fault::status(500), 100);
    let conf2 = with_architecture(&digest_conf("owner", d), "arm64", d);
    let dest2 = format!("docker://{}/fault/never:v1", proxy.addr());
    let out = bounded(sd(d).args(["copy", conf2.to_str().unwrap(), &dest2]));
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("upload failed 5 times"),
        "{}",
        error_line(&out)
    );
    let missing = inspect_raw(&format!("{}/fault/never:v1", reg.addr()), &[]);
    assert!(!missing.status.success());
}

#[test]
fn blob_downloads_follow_redirects_to_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::plain();
    let conf = digest_conf("default", d);
    copy(
        d,
        &[
            conf.to_str().unwrap(),
            &format!("docker://{}/redir/img:v1", reg.addr()),
        ],
    );
    // The "storage": another host name and port in front of the same registry.
    let storage = FaultProxy::start(reg.addr());
    let port = storage.addr().rsplit_once(':').unwrap().1.to_string();
    let front = FaultProxy::start(reg.addr());
    let host = format!("localhost:{port}");
    let redirect = front.add_fault("GET", "/blobs/", Fault::Redirect { host }, 100);
    let back = d.join("back.tar");
    let src = format!("docker://{}/redir/img:v1", front.addr());
    copy(d, &[&src, &format!("docker-archive:{}", back.display())]);
    assert_eq!(front.fired(redirect), 7, "a config and six layers");
    assert_eq!(storage.count("GET", "/blobs/"), 7);
    assert_eq!(config(&back), config_of_conf(&conf, d));
}

#[test]
fn proxy_variables_are_honoured_except_for_no_proxy_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::plain();
    let conf = digest_conf("default", d);
    // A name only the proxy can reach: it forwards every request to the registry.
    let proxy = FaultProxy::start(reg.addr());
    let dest = "docker://registry.stevedore.test:5000/proxied/img:v1";
    let via_proxy = |cmd: &mut Command| {
        cmd.env("HTTP_PROXY", format!("http://{}", proxy.addr()))
            .env("HTTPS_PROXY", format!("http://{}", proxy.addr()))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
    };
    let mut push = sd(d);
    via_proxy(&mut push);
    ok(push.args(["copy", conf.to_str().unwrap(), dest, "--tls-verify=false"]));
    assert!(proxy.count("PUT", "/v2/proxied/img/manifests/v1") >= 1);
    assert_eq!(
        skopeo_config(&format!("docker://{}/proxied/img:v1", reg.addr())),
        config_of_conf(&conf, d)
    );
    // NO_PROXY names the host: no request reaches the proxy.
    let before = proxy.requests().len();
    let mut pull = sd(d);
    via_proxy(&mut pull);
    let out = bounded(pull.env("NO_PROXY", "other.test,.stevedore.test").args([
        "copy",
        dest,
        "oci:/nonexistent-never/x",
        "--tls-verify=false",
    ]));
    assert!(!out.status.success());
    assert_eq!(proxy.requests().len(), before);
}

#[test]
fn credential_helpers_named_by_the_auth_file_are_asked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::htpasswd("alice", "s3cret-pass");
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-stevetest");
    let asked = d.join("asked");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread -r server\necho \"$1 $server\" >> {}\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret-pass\"}}' \"$server\"\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let auth = write_tmp(
        d,
        "auth.json",
        format!(r#"{{"credHelpers": {{"{}": "stevetest"}}}}"#, reg.addr()).as_bytes(),
    );
    let conf = digest_conf("default", d);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dest = format!("docker://{}/helped/img:v1", reg.addr());
    let out = ok(sd(d)
        .env("PATH", path)
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["copy", conf.to_str().unwrap(), &dest]));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap().lines().next(),
        Some(format!("get {}", reg.addr()).as_str())
    );
    assert_eq!(
        skopeo_config_creds(&dest, "alice:s3cret-pass"),
        config_of_conf(&conf, d)
    );
}

#[test]
fn progress_is_a_bar_on_terminals_and_lines_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::plain();
    let proxy = FaultProxy::start(reg.addr());
    // Slow enough for the bar to be drawn: the manifest waits for a Retry-After.
    proxy.add_fault("PUT", "/manifests/", Fault::too_many_requests(1), 1);
    let conf = digest_conf("default", d);
    let dest = format!("docker://{}/tty/img:v1", proxy.addr());
    let command = format!(
        "XDG_CACHE_HOME={} {} copy {} {dest}",
        d.join("tty-cache").display(),
        env!("CARGO_BIN_EXE_stevedore"),
        conf.display()
    );
    let out = ok(Command::new("script").args(["-qec", &command, "/dev/null"]));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains(&format!("pushing {}/tty/img:v1", proxy.addr())),
        "{screen}"
    );
    assert!(screen.contains('\x1b'), "no terminal drawing: {screen}");
    // Not a terminal: plain lines, one per blob, no escape codes.
    proxy.add_fault("PUT", "/manifests/", Fault::too_many_requests(1), 1);
    let other = format!("docker://{}/plain/img:v1", proxy.addr());
    let out = copy(d, &[conf.to_str().unwrap(), &other]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains('\x1b'), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains(": blob sha256:")).count(),
        6,
        "{log}"
    );
}
