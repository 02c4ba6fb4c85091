//! `stevedore serve` against real clients on 127.0.0.1: skopeo, containerd, a real
//! registry as upstream, headless Chromium for the page, and raw HTTP for what clients
//! never send. Every server builds through the nixery.nix built in, over the package set
//! tests/nixery-pkgs salted for it alone (tests/common/serve.rs), so every test sees its
//! own builds, whatever else runs.

mod common;
use common::containerd::Containerd;
use common::read_json;
use common::registry::{run_bounded, skopeo, Registry};
use common::serve::{registry_error, Serve};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What tests/nixery-pkgs' hello prints.
const HELLO: &str = "Hello from a Nixery-style stevedore image\n";

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn skopeo_run(args: &[&str]) -> Output {
    run_bounded(skopeo().args(args), Duration::from_secs(120))
}

fn inspect(serve: &Serve, image: &str) -> Value {
    let out = ok(
        skopeo_run(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/{image}", serve.addr()),
        ]),
        "skopeo inspect",
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn skopeo_inspects_and_copies_an_image_built_on_first_request() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("storage"), &[]);
    let info = inspect(&serve, "shell/hello");
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["RepoTags"], serde_json::json!(["latest"]));
    // One layer per store path of the closure (the budget is not reached), and the
    // customisation layer.
    let layers = info["Layers"].as_array().unwrap().len();
    assert!(layers >= 8, "{info}");
    // The packages the Nix code was given: shell's, hello, cacert and iana-etc, sorted.
    assert!(
        serve.log().contains(
            "building shell/hello:latest for amd64: bashInteractive cacert coreutils hello iana-etc moreutils nano"
        ),
        "{}",
        serve.log()
    );
    for dest in ["oci", "dir"] {
        let path = dir.path().join(dest);
        let target = match dest {
            "oci" => format!("oci:{}:hello", path.display()),
            _ => format!("dir:{}", path.display()),
        };
        ok(
            skopeo_run(&[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}/shell/hello:latest", serve.addr()),
                &target,
            ]),
            "skopeo copy",
        );
    }
    // Nixery's config: bash when bashInteractive is in, the certificates' path.
    let config = ok(
        skopeo_run(&[
            "inspect",
            "--config",
            &format!("oci:{}:hello", dir.path().join("oci").display()),
        ]),
        "skopeo inspect --config",
    );
    let config = json(&config.stdout);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["bash"]));
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"])
    );
    // dir: keeps the manifest's bytes: their digest is the one the server states.
    let bytes = std::fs::read(dir.path().join("dir/manifest.json")).unwrap();
    let r = serve.get("/v2/shell/hello/manifests/latest");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, bytes);
    assert_eq!(r.header("content-type"), Some(MANIFEST_V2));
    assert_eq!(
        r.header("docker-content-digest").unwrap(),
        format!("sha256:{}", sha256_hex(&bytes))
    );
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    // Every pull after the first used what was built: one build in all.
    assert_eq!(serve.count("serve: building "), 1, "{}", serve.log());
    // The order of packages and the meta-packages' expansion share the cache.
    inspect(&serve, "shell/hello/cacert");
    assert_eq!(serve.count("serve: building "), 1, "{}", serve.log());
    let arm = inspect(&serve, "arm64/shell/hello");
    assert_eq!(arm["Architecture"], "arm64");
    assert_eq!(serve.count("serve: building "), 2);
    // Nested and case-amended attribute names.
    assert_eq!(
        serve
            .get("/v2/xorg.xev/haskellpackages.stylish-haskell/manifests/latest")
            .status,
        200
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn the_base_endpoint_answers_and_heads_carry_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    for method in ["GET", "HEAD"] {
        let r = serve.request(method, "/v2/", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
    assert_eq!(serve.get("/v2/").body, b"{}");
    // A HEAD on a manifest builds it, as Nixery does.
    let head = serve.request("HEAD", "/v2/hello/manifests/latest", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let get = serve.get("/v2/hello/manifests/latest");
    assert_eq!(
        head.header("content-length").unwrap(),
        get.body.len().to_string()
    );
    assert_eq!(
        head.header("docker-content-digest"),
        get.header("docker-content-digest")
    );
    assert_eq!(serve.count("serve: building "), 1);
    // Writes are refused.
    let put = serve.request("PUT", "/v2/hello/manifests/latest", &[]);
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, HEAD"));
    assert_eq!(registry_error(&put).0, "UNSUPPORTED");
}

#[test]
fn unknown_packages_are_all_named_in_a_404() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let r = serve.get("/v2/shell/nosuchpkg/hello/xorg.nothere/alsomissing/manifests/latest");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let (code, message) = registry_error(&r);
    assert_eq!(code, "MANIFEST_UNKNOWN");
    assert!(
        message.contains("alsomissing")
            && message.contains("nosuchpkg")
            && message.contains("xorg.nothere"),
        "{message}"
    );
    assert!(!message.contains("hello"), "{message}");
    // skopeo says so too.
    let out = skopeo_run(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/nosuchpkg", serve.addr()),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchpkg"));
}

#[test]
fn malformed_names_tags_digests_and_traversal_get_400s_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let serve = Serve::start(&storage, &[]);
    let before = tree(dir.path());
    let cases: &[(&str, u16, &str)] = &[
        ("/v2/Hello/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/hel%20lo/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/hello/manifests/-bad", 400, "TAG_INVALID"),
        ("/v2/hello/manifests/a..b%00", 400, "TAG_INVALID"),
        (
            "/v2/../../../etc/passwd/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/hello/../../../../etc/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/%2e%2e/%2e%2e/etc/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        ("/v2/%2E%2E%2Fetc/blobs/sha256:00", 400, "NAME_INVALID"),
        ("/v2/hello//etc/manifests/latest", 400, "NAME_INVALID"),
        ("/v2//etc/passwd/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/..\\..\\etc/manifests/latest", 400, "NAME_INVALID"),
        (
            "/v2/hello/blobs/sha256:../../../etc/passwd",
            400,
            "NAME_INVALID",
        ),
        ("/v2/hello/blobs/sha256:%2e%2e%2f", 400, "DIGEST_INVALID"),
        ("/v2/hello/manifests/sha256:abc", 400, "DIGEST_INVALID"),
        ("/v2/hello/blobs/md5:abc", 400, "DIGEST_INVALID"),
        ("/v2/hello/manifests/sha512:abc", 400, "DIGEST_INVALID"),
    ];
    for (target, status, code) in cases {
        let r = serve.get(target);
        assert_eq!(
            r.status,
            *status,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(registry_error(&r).0, *code, "{target}");
    }
    let unknown = format!("/v2/hello/blobs/sha256:{}", "0".repeat(64));
    let r = serve.get(&unknown);
    assert_eq!(
        (r.status, registry_error(&r).0.as_str()),
        (404, "BLOB_UNKNOWN")
    );
    let r = serve.get(&format!("/v2/hello/manifests/sha256:{}", "0".repeat(64)));
    assert_eq!(
        (r.status, registry_error(&r).0.as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    // Nothing was built, and nothing was written.
    assert_eq!(serve.count("serve: building"), 0, "{}", serve.log());
    assert_eq!(tree(dir.path()), before);
}

/// Every path under `dir`.
fn tree(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                todo.push(p.clone());
            }
            all.push(p);
        }
    }
    all.sort();
    all
}

#[test]
fn a_failing_build_is_a_500_naming_the_derivation_and_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    for attempt in 1..=2 {
        let r = serve.get("/v2/shell/broken/manifests/latest");
        assert_eq!(r.status, 500);
        let (code, message) = registry_error(&r);
        assert_eq!(code, "UNKNOWN");
        assert!(
            message.starts_with("building /nix/store/")
                && message.ends_with("-broken-1.0.drv failed"),
            "{message}"
        );
        assert_eq!(serve.count("serve: building shell/broken"), attempt);
    }
    assert!(serve.log().contains("-broken-1.0.drv failed"));
}

#[test]
fn a_build_past_its_timeout_is_stopped_with_a_500() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough for a small image of packages new to the store, on a busy machine.
    let serve = Serve::start(dir.path(), &["--build-timeout", "8"]);
    let started = Instant::now();
    let r = serve.get("/v2/slow/manifests/latest");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(r.status, 500);
    let (_, message) = registry_error(&r);
    assert!(message.contains("longer than 8 s"), "{message}");
    // The server still builds, and nothing of the stopped build is served.
    let r = serve.get("/v2/hello/manifests/latest");
    assert_eq!(r.status, 200, "{}", serve.log());
    assert!(no_nix_build_of(&serve.salt));
    // Nor its builder (Nix stops builders when asked to stop, not when killed).
    assert!(no_builder_of(&serve.salt, Duration::from_secs(15)));
}

/// The pids of the processes whose environment holds `entry` (`NAME=VALUE`) and, if
/// given, `also`.
fn processes_with(entry: &str, also: Option<&str>) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
            let has = |v: &str| vars.contains(&v.as_bytes());
            (has(entry) && also.is_none_or(has)).then_some(pid)
        })
        .collect()
}

/// The pids of the nix-builds a server with the salt `salt` runs (they have it in their
/// environment).
fn nix_builds_of(salt: &str) -> Vec<i32> {
    processes_with(&format!("NIXERY_PKGS_SALT={salt}"), None)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            argv0.ends_with(b"nix-build")
        })
        .collect()
}

/// The pids of the builders of packages salted with `salt` (of derivation `name`, if
/// given): their derivations carry the salt, so their environment does.
fn builders_of(salt: &str, name: Option<&str>) -> Vec<i32> {
    let name = name.map(|n| format!("name={n}"));
    processes_with(&format!("salt={salt}"), name.as_deref())
}

/// Waits until a builder of `serve`'s derivation `name` runs.
fn wait_for_builder(serve: &Serve, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while builders_of(&serve.salt, Some(name)).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no builder of {name}: {}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether no builder of packages salted with `salt` runs, within `limit`.
fn no_builder_of(salt: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !builders_of(salt, None).is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Whether no nix-build of a server with the salt `salt` runs, within 10 s.
fn no_nix_build_of(salt: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nix_builds_of(salt).is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

#[test]
fn a_killed_build_is_a_500_stores_nothing_and_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let serve = Serve::start(&storage, &[]);
    let addr = serve.addr().to_string();
    let target = "/v2/lazy/coreutils/manifests/latest";
    let client = std::thread::spawn(move || {
        common::registry::http(&addr, "GET", target, &[], None).unwrap()
    });
    wait_for_builder(&serve, "lazy-1.0");
    for pid in nix_builds_of(&serve.salt) {
        // SAFETY: kill(2) of a nix-build this test's server started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let r = client.join().unwrap();
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        registry_error(&r).1.contains("nix-build failed"),
        "{:?}",
        registry_error(&r)
    );
    let records = std::fs::read_dir(storage.join("manifests"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert_eq!(records, 0);
    assert_eq!(serve.get(target).status, 200, "{}", serve.log());
    assert_eq!(serve.count("serve: building lazy/coreutils"), 2);
}

#[test]
fn a_killed_server_leaves_nothing_a_later_request_would_serve() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let serve = Serve::start(&storage, &[]);
    let addr = serve.addr().to_string();
    let target = "/v2/lazy/moreutils/manifests/latest";
    let client =
        std::thread::spawn(move || common::registry::http(&addr, "GET", target, &[], None));
    wait_for_builder(&serve, "lazy-1.0");
    let salt = serve.salt.clone();
    assert!(!nix_builds_of(&salt).is_empty());
    serve.kill();
    assert!(
        client.join().unwrap().is_err(),
        "an answer from a killed server"
    );
    // Its nix-build went with it, and its builder sooner than its 3 s would end it.
    assert!(no_nix_build_of(&salt));
    assert!(no_builder_of(&salt, Duration::from_secs(2)));
    let manifests: Vec<_> = std::fs::read_dir(storage.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "sha256")
        .collect();
    assert!(manifests.is_empty(), "{manifests:?}");
    // A half-written file of the kind a killed write leaves is removed at start-up.
    let half = storage.join("blobs/sha256/.stevedore-half");
    std::fs::write(&half, b"{\"path\":").unwrap();
    let serve = Serve::start_with(&storage, &salt, &[], &[]);
    assert!(!half.exists());
    // The image is built again, from the start.
    let r = serve.get(target);
    assert_eq!(r.status, 200);
    assert_eq!(serve.count("serve: building lazy/moreutils"), 1);
}

#[test]
fn concurrent_requests_for_a_new_image_wait_for_one_build() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let addr = serve.addr().to_string();
    let tag = "latest";
    let target = format!("/v2/lazy/hello/manifests/{tag}");
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let (addr, target) = (addr.clone(), target.clone());
            std::thread::spawn(move || {
                common::registry::http(&addr, "GET", &target, &[], None).unwrap()
            })
        })
        .collect();
    let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(answers.iter().all(|r| r.status == 200));
    let digests: std::collections::HashSet<_> = answers
        .iter()
        .map(|r| r.header("docker-content-digest").unwrap().to_string())
        .collect();
    assert_eq!(digests.len(), 1);
    let log = serve.log();
    assert_eq!(
        serve.count(&format!("serve: building lazy/hello:{tag}")),
        1,
        "{log}"
    );
    assert_eq!(
        serve.count(&format!("serve: built lazy/hello:{tag}")),
        1,
        "{log}"
    );
    // Those that came while it was built said what they waited for.
    assert!(
        log.contains(&format!(
            "serve: waiting for lazy/hello:{tag} (building cacert hello iana-etc lazy)"
        )),
        "{log}"
    );
    // Different images build side by side (`lazy` is made anew for each).
    let a = addr.clone();
    let one = std::thread::spawn(move || {
        common::registry::http(
            &a,
            "GET",
            &format!("/v2/lazy/figlet/manifests/{tag}"),
            &[],
            None,
        )
        .unwrap()
    });
    let two = serve.get(&format!("/v2/lazy/nano/manifests/{tag}"));
    let one = one.join().unwrap();
    assert_eq!((one.status, two.status), (200, 200));
    let log = serve.log();
    let first_built = ["serve: built lazy/figlet", "serve: built lazy/nano"]
        .map(|b| log.find(b).unwrap())
        .into_iter()
        .min()
        .unwrap();
    assert!(
        log.find("serve: building lazy/figlet").unwrap() < first_built,
        "{log}"
    );
    assert!(
        log.find("serve: building lazy/nano").unwrap() < first_built,
        "{log}"
    );
}

/// The derivations the server's log says nix-build built for `image` (`NAME:TAG`).
fn derivations_built(serve: &Serve, image: &str) -> BTreeSet<String> {
    let prefix = format!("serve: derivations built for {image}: ");
    let log = serve.log();
    let line = log
        .lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, built)| built))
        .unwrap_or_else(|| panic!("no {prefix:?} in the log: {log}"));
    line.split(' ')
        .filter(|d| *d != "none")
        .map(str::to_string)
        .collect()
}

/// The layer digests of a manifest.
fn layer_digests(manifest: &Value) -> BTreeSet<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_second_image_sharing_packages_builds_only_its_new_layers() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("storage"), &[]);
    let pull = |image: &str| {
        ok(
            skopeo_run(&[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}/{image}", serve.addr()),
                &format!(
                    "oci:{}:{}",
                    dir.path().join("oci").display(),
                    image.replace('/', "-")
                ),
            ]),
            "skopeo copy",
        );
        json(&serve.get(&format!("/v2/{image}/manifests/latest")).body)
    };
    let first = pull("hello/xorg.xev");
    // The server's packages are its own: the first image builds all of them, a layer
    // for each, and the image's own derivations.
    let packages = [
        "busybox-1.35.0",
        "hello-2.12.1",
        "iana-etc-20230316",
        "libshared-1.0",
        "nss-cacert-3.92",
        "xev-1.2.5",
    ];
    let image = [
        "nixery-plan.json",
        "nixery-customisation-layer",
        "nixery-config.json",
        "manifest-output.json",
    ];
    let expected: BTreeSet<String> = packages
        .iter()
        .flat_map(|p| [p.to_string(), format!("nixery-layer-{p}")])
        .chain(image.map(String::from))
        .collect();
    let built = derivations_built(&serve, "hello/xorg.xev:latest");
    // (The helper, stevedore itself, is shared with every other server.)
    assert_eq!(
        built
            .iter()
            .filter(|d| *d != "stevedore")
            .cloned()
            .collect::<BTreeSet<_>>(),
        expected,
        "{}",
        serve.log()
    );
    // The second shares all but figlet: it builds figlet, figlet's layer, and its own
    // plan, customisation layer, config and manifest.
    let second = pull("hello/xorg.xev/figlet");
    let expected: BTreeSet<String> = ["figlet-2.2.5", "nixery-layer-figlet-2.2.5"]
        .into_iter()
        .chain(image)
        .map(String::from)
        .collect();
    assert_eq!(
        derivations_built(&serve, "hello/xorg.xev/figlet:latest"),
        expected,
        "{}",
        serve.log()
    );
    // As the manifests say: the second has the first's store layers, and two of its own.
    let (a, b) = (layer_digests(&first), layer_digests(&second));
    assert_eq!(b.len(), a.len() + 1);
    assert_eq!(b.difference(&a).count(), 2);
}

#[test]
fn blobs_answer_range_requests() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let manifest = json(&serve.get("/v2/hello/manifests/latest").body);
    // The largest layer (busybox's).
    let largest = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap();
    let layer = largest["digest"].as_str().unwrap();
    let size = largest["size"].as_u64().unwrap();
    assert!(size > 1000, "{manifest}");
    let target = format!("/v2/hello/blobs/{layer}");
    let whole = serve.get(&target);
    assert_eq!(whole.status, 200);
    assert_eq!(
        whole.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(whole.header("content-length").unwrap(), size.to_string());
    assert_eq!(whole.header("docker-content-digest"), Some(layer));
    assert_eq!(format!("sha256:{}", sha256_hex(&whole.body)), layer);
    let part = serve.request("GET", &target, &[("Range", "bytes=100-199")]);
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range").unwrap(),
        format!("bytes 100-199/{size}")
    );
    assert_eq!(part.body, whole.body[100..200]);
    let tail = serve.request("GET", &target, &[("Range", "bytes=-10")]);
    assert_eq!(tail.body, whole.body[size as usize - 10..]);
    let open = serve.request(
        "GET",
        &target,
        &[("Range", &format!("bytes={}-", size - 5))],
    );
    assert_eq!(open.body, whole.body[size as usize - 5..]);
    let past = serve.request("GET", &target, &[("Range", &format!("bytes={size}-"))]);
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range").unwrap(),
        format!("bytes */{size}")
    );
    let head = serve.request("HEAD", &target, &[]);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length").unwrap(), size.to_string());
    // The manifest is a blob too, as containerd may ask for it.
    let digest = serve.get("/v2/hello/manifests/latest");
    let digest = digest.header("docker-content-digest").unwrap();
    let as_blob = serve.get(&format!("/v2/hello/blobs/{digest}"));
    assert_eq!(as_blob.status, 200);
    assert_eq!(format!("sha256:{}", sha256_hex(&as_blob.body)), digest);
}

#[test]
fn what_was_built_is_served_by_digest_and_after_a_restart_without_nix() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let (bytes, digest, salt) = {
        let serve = Serve::start(&storage, &[]);
        let r = serve.get("/v2/shell/hello/manifests/v2");
        assert_eq!(r.status, 200);
        let salt = serve.salt.clone();
        assert!(serve.stop().success());
        (
            r.body.clone(),
            r.header("docker-content-digest").unwrap().to_string(),
            salt,
        )
    };
    // Without nix-build on its PATH, and with the same package set.
    let no_nix = dir.path().join("empty-bin");
    std::fs::create_dir(&no_nix).unwrap();
    let serve = Serve::start_with(&storage, &salt, &[("PATH", no_nix.to_str().unwrap())], &[]);
    let r = serve.get("/v2/shell/hello/manifests/v2");
    assert_eq!((r.status, &r.body), (200, &bytes));
    let by_digest = serve.get(&format!("/v2/shell/hello/manifests/{digest}"));
    assert_eq!(by_digest.body, bytes);
    assert_eq!(by_digest.header("content-type"), Some(MANIFEST_V2));
    // Any name may ask for a digest (containerd keeps the name it pulled).
    assert_eq!(
        serve.get(&format!("/v2/other/manifests/{digest}")).status,
        200
    );
    let config = json(&bytes)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        serve.get(&format!("/v2/shell/hello/blobs/{config}")).status,
        200
    );
    assert_eq!(serve.count("serve: building"), 0, "{}", serve.log());
    // What it has not built it cannot build.
    let r = serve.get("/v2/figlet/manifests/latest");
    assert_eq!(r.status, 500);
    assert!(
        registry_error(&r).1.contains("cannot run nix-build"),
        "{:?}",
        registry_error(&r)
    );
}

#[test]
fn an_image_whose_layers_were_collected_is_built_again() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let serve = Serve::start(&storage, &[]);
    let target = "/v2/hello/manifests/latest";
    let first = serve.get(target);
    assert_eq!(first.status, 200);
    // The image's gc root goes, and the garbage collector takes its outputs: the
    // manifest output, the config's and every layer's (this server's alone: its
    // packages are salted).
    let root = std::fs::read_dir(storage.join("roots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let output = std::fs::read_link(&root).unwrap();
    let outputs: std::collections::BTreeSet<String> = read_json(&output)["layerLocations"]
        .as_object()
        .unwrap()
        .values()
        .map(|l| {
            let path = l["path"].as_str().unwrap();
            path.split('/').take(4).collect::<Vec<_>>().join("/")
        })
        .collect();
    assert_eq!(
        outputs.len(),
        json(&first.body)["layers"].as_array().unwrap().len() + 1
    );
    std::fs::remove_file(&root).unwrap();
    ok(
        std::process::Command::new("nix-store")
            .arg("--delete")
            .arg(&output)
            .args(&outputs)
            .output()
            .unwrap(),
        "nix-store --delete",
    );
    for path in &outputs {
        assert!(!std::path::Path::new(path).exists(), "{path}");
    }
    let again = serve.get(target);
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert!(serve.log().contains("is gone"), "{}", serve.log());
    assert_eq!(serve.count("serve: building hello:"), 2);
    let layer = json(&again.body)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(serve.get(&format!("/v2/hello/blobs/{layer}")).status, 200);
}

#[test]
fn containerd_pulls_and_runs_an_image_built_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let ctd = Containerd::start();
    let reference = format!("{}/shell/hello:latest", serve.addr());
    let pull = run_bounded(
        ctd.ctr()
            .args(["images", "pull", "--plain-http", &reference]),
        Duration::from_secs(120),
    );
    ok(pull, "ctr images pull");
    let id = format!("serve-{}", std::process::id());
    let out = run_bounded(
        ctd.ctr()
            .args(["run", "--rm", &reference, &id, "/bin/hello"]),
        Duration::from_secs(60),
    );
    let out = ok(out, "ctr run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), HELLO);
}

#[test]
fn upstream_gets_the_blobs_and_blob_requests_are_redirected_there() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let upstream = format!("docker://{}/layers", reg.addr());
    let first = Serve::start(&dir.path().join("a"), &["--upstream", &upstream]);
    let manifest = json(&first.get("/v2/shell/hello/manifests/latest").body);
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let r = first.get(&format!("/v2/shell/hello/blobs/{layer}"));
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location").unwrap(),
        format!("http://{}/v2/layers/blobs/{layer}", reg.addr())
    );
    let blob_puts = reg.requests("PUT", "/v2/layers/blobs/uploads/");
    assert_eq!(blob_puts, 1 + manifest["layers"].as_array().unwrap().len());
    // skopeo follows the redirects to the registry.
    let gets_before = reg.requests("GET", "/v2/layers/blobs/sha256:");
    ok(
        skopeo_run(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/shell/hello", first.addr()),
            &format!("oci:{}:x", dir.path().join("oci").display()),
        ]),
        "skopeo copy through redirects",
    );
    assert!(reg.requests("GET", "/v2/layers/blobs/sha256:") > gets_before);
    // A second server sharing the registry (and the package set) builds the same image
    // and uploads nothing.
    let second = Serve::start_with(
        &dir.path().join("b"),
        &first.salt,
        &[],
        &["--upstream", &upstream],
    );
    assert_eq!(second.get("/v2/shell/hello/manifests/latest").status, 200);
    assert_eq!(reg.requests("PUT", "/v2/layers/blobs/uploads/"), blob_puts);
    assert!(
        second.log().contains("0 blobs uploaded to docker://"),
        "{}",
        second.log()
    );
}

#[test]
fn the_landing_page_shows_how_to_pull_and_what_was_built() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let r = serve.get("/v2/shell/hello/manifests/latest");
    let digest = r.header("docker-content-digest").unwrap();
    let url = format!("http://{}/", serve.addr());
    let profile = dir.path().join("chromium");
    let out = run_bounded(
        std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(&url),
        Duration::from_secs(60),
    );
    let dom = String::from_utf8_lossy(&ok(out, "chromium").stdout).into_owned();
    assert!(
        dom.contains(&format!("docker://{}/shell/hello", serve.addr())),
        "{dom}"
    );
    assert!(dom.contains(&format!("docker pull {}/shell/git", serve.addr())));
    assert!(dom.contains("tests/nixery-pkgs"));
    assert!(
        dom.contains("shell/hello:latest") && dom.contains(digest),
        "{dom}"
    );
    // A Host header is text from outside: escaped, never markup.
    let evil = serve.request("GET", "/", &[("Host", "<script>alert(1)</script>")]);
    let body = String::from_utf8_lossy(&evil.body);
    assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"));
}

#[test]
fn zstd_layers_come_in_an_oci_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &["--compress", "zstd"]);
    let r = serve.get("/v2/hello/manifests/latest");
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    let manifest = json(&r.body);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    ok(
        skopeo_run(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/hello", serve.addr()),
            &format!("oci:{}:hello", dir.path().join("oci").display()),
        ]),
        "skopeo copy",
    );
}

#[test]
fn bad_flags_are_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("s");
    let pkgs = format!(
        "path!{}",
        common::root().join("tests/nixery-pkgs").display()
    );
    let not_json = dir.path().join("pop.json");
    std::fs::write(&not_json, b"[1, 2]").unwrap();
    // Each case replaces one flag of a good command line.
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--listen".into(), "nowhere".into()],
            "--listen \"nowhere\"",
        ),
        (vec!["--pkgs".into(), "cvs!x".into()], "--pkgs \"cvs!x\""),
        (
            vec!["--pkgs".into(), "path!/no/such/dir".into()],
            "does not exist",
        ),
        (
            vec!["--upstream".into(), "http://x/y".into()],
            "docker://HOST/REPO",
        ),
        (
            vec!["--upstream".into(), "docker://127.0.0.1:1/a:tag".into()],
            "without a tag",
        ),
        (
            vec!["--popularity".into(), not_json.display().to_string()],
            "not a JSON object",
        ),
        (
            vec!["--build-timeout".into(), "0".into()],
            "at least 1 second",
        ),
    ];
    for (args, says) in cases {
        let mut flags = vec![
            ("--listen".to_string(), "127.0.0.1:0".to_string()),
            ("--pkgs".into(), pkgs.clone()),
            ("--storage".into(), storage.display().to_string()),
        ];
        flags.retain(|(f, _)| *f != args[0]);
        flags.push((args[0].clone(), args[1].clone()));
        let mut cmd = common::stevedore();
        cmd.arg("serve");
        for (flag, value) in flags {
            cmd.args([flag, value]);
        }
        let out = run_bounded(&mut cmd, Duration::from_secs(30));
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("stevedore: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn popularity_data_goes_to_the_layering() {
    let dir = tempfile::tempdir().unwrap();
    let pop = dir.path().join("popularity.json");
    std::fs::write(&pop, br#"{"libshared-1.0": 1000, "busybox-1.35.0": 5000}"#).unwrap();
    let serve = Serve::start(dir.path(), &["--popularity", pop.to_str().unwrap()]);
    let r = serve.get("/v2/hello/xorg.xev/manifests/latest");
    assert_eq!(r.status, 200, "{}", serve.log());
}
