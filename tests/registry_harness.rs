//! The registry test harness of tests/common/registry.rs, proven with skopeo 1.9 as the
//! client: a plain registry and its request log, htpasswd and token authentication (with
//! the harness's token server), and the fault proxy's injected statuses, corrupted bytes
//! and dropped connections. Every skopeo run is bounded (SKOPEO_TIMEOUT).

mod common;
use common::registry::*;
use common::{read_json, sha256_hex};
use serde_json::Value;
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_failure(out: &Output, what: &str, message: &str) {
    assert!(!out.status.success(), "{what} unexpectedly succeeded");
    assert!(
        stderr(out).contains(message),
        "{what}: expected {message:?} in {}",
        stderr(out)
    );
}

/// The digest of the single layer of a registry manifest.
fn layer_digest(manifest: &Value) -> String {
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    layers[0]["digest"].as_str().unwrap().to_string()
}

/// The single layer blob of the OCI layout `dir`, checked against its digest.
fn pulled_layer(dir: &Path) -> (String, Vec<u8>) {
    let index = read_json(&dir.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap();
    let manifest: Value = serde_json::from_slice(&blob(manifest_digest)).unwrap();
    let digest = layer_digest(&manifest);
    let bytes = blob(&digest);
    assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), digest);
    (digest, bytes)
}

fn port_closed(addr: &str) -> bool {
    TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)).is_err()
}

#[test]
fn plain_registry_push_pull_and_request_log() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::plain();
    let repo = format!("{}/stevedore/plain:latest", registry.addr());
    let (image, manifest) = seed_registry(
        dir.path(),
        registry.addr(),
        "stevedore/plain:latest",
        1,
        1 << 20,
        &[],
    );
    let layer = layer_digest(&manifest);

    // skopeo's push: per blob (layer, then config) HEAD (404), POST, one PATCH with the
    // whole blob, PUT ?digest=; then the manifest PUT. (skopeo may HEAD more digests its
    // blob-info cache, shared by all skopeo runs, knows as equivalent.)
    assert!(registry.requests("HEAD", "/v2/stevedore/plain/blobs/sha256:") >= 2);
    assert_eq!(
        registry.requests("POST", "/v2/stevedore/plain/blobs/uploads/"),
        2
    );
    assert_eq!(
        registry.requests("PATCH", "/v2/stevedore/plain/blobs/uploads/"),
        2
    );
    assert_eq!(
        registry.requests("PUT", "/v2/stevedore/plain/blobs/uploads/"),
        2
    );
    assert_eq!(
        registry.requests("PUT", "/v2/stevedore/plain/manifests/latest"),
        1
    );
    assert_eq!(
        registry.requests("PUT", &format!("digest={}", layer.replace(':', "%3A"))),
        1
    );
    let log = registry.access_log();
    assert!(
        log.iter().all(|r| r.user_agent.starts_with("skopeo/")),
        "{log:?}"
    );
    assert!(registry.log().contains("msg=\"response completed\""));

    // A second push finds both blobs (HEAD 200) and uploads nothing.
    assert_success(&push_image(&image, &repo, &[]), "second push");
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), 2);
    assert_eq!(registry.requests("PUT", "/manifests/latest"), 2);
    assert_eq!(
        registry
            .access_log()
            .iter()
            .filter(|r| r.method == "HEAD" && r.status == 200)
            .count(),
        2
    );

    // Read back: the pulled layer is the pushed (gzipped) blob, which unpacks to ours.
    let pulled = dir.path().join("pulled");
    assert_success(&pull_image(&repo, &pulled, &[]), "pull");
    let (digest, gz) = pulled_layer(&pulled);
    assert_eq!(digest, layer);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    assert_eq!(plain, image.layer);
    assert_eq!(registry.requests("GET", &format!("/blobs/{layer}")), 1);
}

#[test]
fn htpasswd_registry_checks_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::htpasswd("alice", "s3cret");
    let image = sample_image(dir.path(), 2, 4096);
    let repo = format!("{}/stevedore/basic:v1", registry.addr());

    let out = push_image(&image, &repo, &[]);
    assert_failure(&out, "anonymous push", "authentication required");
    let out = push_image(&image, &repo, &["--dest-creds=alice:wrong"]);
    // distribution answers the same 401 for a wrong password as for none.
    assert_failure(
        &out,
        "push with a wrong password",
        "authentication required",
    );
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), 0);
    assert!(registry.access_log().iter().any(|r| r.status == 401));

    assert_success(
        &push_image(&image, &repo, &["--dest-creds=alice:s3cret"]),
        "push",
    );
    assert_eq!(registry.requests("PUT", "/manifests/v1"), 1);
    let manifest = registry_manifest(&repo, &["--creds=alice:s3cret"]);
    assert_failure(
        &inspect_raw(&repo, &["--creds=bob:s3cret"]),
        "inspect as bob",
        "authentication required",
    );

    // The same through an auth file.
    let good = dir.path().join("good.json");
    write_auth_file(&good, registry.addr(), "alice", "s3cret");
    let bad = dir.path().join("bad.json");
    write_auth_file(&bad, registry.addr(), "alice", "nope");
    let pull = |auth_file: &Path, to: &str| {
        run_skopeo(
            skopeo()
                .env("REGISTRY_AUTH_FILE", auth_file)
                .args(["copy", "--src-tls-verify=false"])
                .arg(format!("docker://{repo}"))
                .arg(format!("oci:{}:latest", dir.path().join(to).display())),
        )
    };
    assert_success(&pull(&good, "pulled"), "pull with REGISTRY_AUTH_FILE");
    assert_eq!(
        pulled_layer(&dir.path().join("pulled")).0,
        layer_digest(&manifest)
    );
    assert_failure(
        &pull(&bad, "refused"),
        "pull with a bad auth file",
        "authentication required",
    );
}

#[test]
fn token_registry_with_the_token_server() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, tokens) = Registry::token("bob", "hunter2");
    let image = sample_image(dir.path(), 3, 4096);
    let repo = format!("{}/stevedore/tok:v1", registry.addr());

    assert_success(
        &push_image(&image, &repo, &["--dest-creds=bob:hunter2"]),
        "push",
    );
    assert!(tokens.token_requests() >= 1);
    assert!(
        tokens
            .scopes()
            .contains(&"repository:stevedore/tok:pull,push".to_string()),
        "{:?}",
        tokens.requests()
    );
    let first = &tokens.requests()[0];
    assert_eq!(first.user.as_deref(), Some("bob"));
    assert_eq!(first.service.as_deref(), Some(tokens.service()));
    assert_eq!(first.status, 200);
    // The registry challenged first, then accepted the bearer token.
    let log = registry.access_log();
    assert_eq!(log[0].status, 401, "{log:?}");
    assert_eq!(registry.requests("PUT", "/manifests/v1"), 1);

    // Pull with credentials asks for pull only.
    let pulled = dir.path().join("pulled");
    assert_success(
        &pull_image(&repo, &pulled, &["--src-creds=bob:hunter2"]),
        "pull",
    );
    assert_eq!(
        tokens.requests().last().unwrap().scopes,
        vec!["repository:stevedore/tok:pull".to_string()]
    );

    // Wrong credentials: the token server answers 401, skopeo fails.
    let asked = tokens.token_requests();
    let out = push_image(&image, &repo, &["--dest-creds=bob:wrong"]);
    assert_failure(
        &out,
        "push with a wrong password",
        "unable to retrieve auth token: invalid username/password",
    );
    assert!(tokens.token_requests() > asked);
    assert_eq!(tokens.requests().last().unwrap().status, 401);

    // Anonymous: refused, until the token server allows anonymous pulls; a push still
    // gets no push right.
    let out = pull_image(&repo, &dir.path().join("anon0"), &["--src-no-creds"]);
    assert!(!out.status.success(), "anonymous pull succeeded");
    tokens.allow_anonymous_pull(true);
    assert_success(
        &pull_image(&repo, &dir.path().join("anon1"), &["--src-no-creds"]),
        "anonymous pull",
    );
    assert_eq!(tokens.requests().last().unwrap().user, None);
    let out = push_image(
        &image,
        &format!("{}/stevedore/other:v1", registry.addr()),
        &["--dest-no-creds"],
    );
    assert_failure(&out, "anonymous push", "authentication required");
}

#[test]
fn token_server_tokens_are_checked_by_the_registry() {
    let (registry, tokens) = Registry::token("bob", "hunter2");
    let addr = registry.addr();

    let challenge = http(addr, "GET", "/v2/", &[], None).unwrap();
    assert_eq!(challenge.status, 401);
    let www = challenge.header("www-authenticate").unwrap();
    assert!(www.starts_with("Bearer "), "{www}");
    assert!(
        www.contains(&format!("realm=\"{}\"", tokens.url())),
        "{www}"
    );
    assert!(
        www.contains(&format!("service=\"{}\"", tokens.service())),
        "{www}"
    );

    // The token endpoint.
    let query = format!(
        "/token?service={}&scope=repository%3Astevedore%2Fx%3Apull%2Cpush&scope=repository%3Aother%3Apull",
        tokens.service()
    );
    let basic = format!("Basic {}", base64(b"bob:hunter2"));
    let resp = http(
        &tokens.addr(),
        "GET",
        &query,
        &[("Authorization", &basic)],
        None,
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        tokens.scopes(),
        vec!["repository:stevedore/x:pull,push", "repository:other:pull"]
    );
    let token = body["token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64_decode(
            &token
                .split('.')
                .nth(1)
                .unwrap()
                .replace('-', "+")
                .replace('_', "/"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    assert_eq!(claims["sub"], "bob");
    let bad = format!("Basic {}", base64(b"bob:nope"));
    assert_eq!(
        http(
            &tokens.addr(),
            "GET",
            &query,
            &[("Authorization", &bad)],
            None
        )
        .unwrap()
        .status,
        401
    );
    assert_eq!(
        http(&tokens.addr(), "GET", &query, &[], None)
            .unwrap()
            .status,
        401
    );

    let bearer = |t: &str| format!("Bearer {t}");
    let get = |path: &str, t: &str| {
        http(addr, "GET", path, &[("Authorization", &bearer(t))], None)
            .unwrap()
            .status
    };
    assert_eq!(get("/v2/", token), 200);
    // The repository does not exist yet: 404 means the token was accepted for it.
    assert_eq!(get("/v2/stevedore/x/tags/list", token), 404);
    assert_eq!(get("/v2/stevedore/y/tags/list", token), 401);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let pull: &[&str] = &["pull"];
    let expired = tokens.sign(
        "bob",
        &[("repository", "stevedore/x", pull)],
        now - 600,
        now - 300,
    );
    assert_eq!(get("/v2/", &expired), 401);
    let fresh = tokens.sign(
        "bob",
        &[("repository", "stevedore/y", pull)],
        now - 10,
        now + 60,
    );
    assert_eq!(get("/v2/stevedore/y/tags/list", &fresh), 404);
    // A signature changed in its middle (the last base64url character carries unused
    // bits, which Go ignores).
    let mut forged = fresh.clone().into_bytes();
    let at = forged.len() - 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    assert_eq!(get("/v2/", &String::from_utf8(forged).unwrap()), 401);
}

#[test]
fn fault_proxy_forwards_skopeo_and_raw_requests() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::plain();
    let proxy = FaultProxy::start(registry.addr());
    let image = sample_image(dir.path(), 4, 256 * 1024);
    let repo = format!("{}/stevedore/proxied:latest", proxy.addr());

    // skopeo (Go) sends each blob in one PATCH, on keep-alive connections the proxy
    // closes after each answer.
    assert_success(&push_image(&image, &repo, &[]), "push through the proxy");
    let patches: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2);
    assert!(patches.iter().all(|p| p.status == 202), "{patches:?}");
    // The layer, gzipped on the fly (length unknown), is chunked; the config is not.
    assert!(patches[0].chunked && !patches[1].chunked, "{patches:?}");
    assert_eq!(registry.requests("PATCH", "/blobs/uploads/"), 2);
    let pulled = dir.path().join("pulled");
    assert_success(&pull_image(&repo, &pulled, &[]), "pull through the proxy");
    let (layer, bytes) = pulled_layer(&pulled);
    assert_eq!(proxy.count("GET", &format!("/blobs/{layer}")), 1);
    assert!(proxy
        .requests()
        .iter()
        .all(|r| r.fault.is_none() && r.status != 0));

    // By hand: a chunked PATCH and a Content-Length PUT, and HEAD.
    let p = proxy.addr();
    let post = http(
        &p,
        "POST",
        "/v2/stevedore/raw/blobs/uploads/",
        &[],
        Some(b""),
    )
    .unwrap();
    assert_eq!(post.status, 202);
    let location = post.header("location").unwrap().to_string();
    assert!(location.starts_with(&format!("http://{p}/")), "{location}");
    let path = location.strip_prefix(&format!("http://{p}")).unwrap();
    let patch = http_chunked(
        &p,
        "PATCH",
        path,
        &[("Content-Type", "application/octet-stream")],
        &[&bytes[..1000], &bytes[1000..70_000], &bytes[70_000..]],
    )
    .unwrap();
    assert_eq!(
        patch.status,
        202,
        "{}",
        String::from_utf8_lossy(&patch.body)
    );
    let next = patch.header("location").unwrap();
    let next = next.strip_prefix(&format!("http://{p}")).unwrap_or(next);
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    let put = http(
        &p,
        "PUT",
        &format!("{next}&digest={digest}"),
        &[],
        Some(b""),
    )
    .unwrap();
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    let blob = format!("/v2/stevedore/raw/blobs/{digest}");
    let head = http(&p, "HEAD", &blob, &[], None).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    assert!(head.body.is_empty());
    assert_eq!(http(&p, "GET", &blob, &[], None).unwrap().body, bytes);
    // A Location naming the upstream (here because the client sent its Host) is
    // rewritten to name the proxy.
    let host = [("Host", registry.addr())];
    let post = http(
        &p,
        "POST",
        "/v2/stevedore/raw/blobs/uploads/",
        &host,
        Some(b""),
    )
    .unwrap();
    assert_eq!(post.status, 202);
    let location = post.header("location").unwrap();
    assert!(
        location.starts_with(&format!("http://{p}/v2/stevedore/raw/blobs/uploads/")),
        "{location}"
    );
    let seen = proxy.requests();
    assert!(seen
        .iter()
        .any(|r| r.method == "PATCH" && r.chunked && r.path.contains("/stevedore/raw/")));
}

#[test]
fn skopeo_under_injected_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::plain();
    let (_, manifest) = seed_registry(
        dir.path(),
        registry.addr(),
        "stevedore/flaky:latest",
        5,
        256 * 1024,
        &[],
    );
    let layer = layer_digest(&manifest);
    let proxy = FaultProxy::start(registry.addr());
    let repo = format!("{}/stevedore/flaky:latest", proxy.addr());
    let blob = format!("/blobs/{layer}");

    // 429 with Retry-After: skopeo (containers/image) waits and asks again, by itself.
    let limited = proxy.add_fault("GET", &blob, Fault::too_many_requests(1), 2);
    let start = Instant::now();
    assert_success(
        &pull_image(&repo, &dir.path().join("a"), &[]),
        "pull under 429",
    );
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(proxy.fired(limited), 2);
    let statuses: Vec<u16> = proxy
        .requests()
        .iter()
        .filter(|r| r.path.contains(&blob))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 429, 200]);

    // 500 and 503: skopeo 1.9 does not retry them, not even with --retry-times (its
    // retry only covers network errors and registry error codes): the first one fails
    // the copy.
    let before = proxy.count("GET", &blob);
    let failing = proxy.add_fault("GET", &blob, Fault::status(500), 3);
    let out = pull_image(&repo, &dir.path().join("b"), &["--retry-times=3"]);
    assert_failure(
        &out,
        "pull under 500",
        "invalid status code from registry 500",
    );
    assert_eq!(proxy.fired(failing), 1);
    assert_eq!(proxy.count("GET", &blob), before + 1);
    proxy.clear_faults();
    let unavailable = proxy.add_fault("GET", "/manifests/latest", Fault::status(503), 1);
    let out = pull_image(&repo, &dir.path().join("c"), &["--retry-times=3"]);
    assert_failure(
        &out,
        "pull under 503",
        "received unexpected HTTP status: 503",
    );
    assert_eq!(proxy.fired(unavailable), 1);

    // Faults that fired are spent: the same pull now succeeds.
    assert_success(
        &pull_image(&repo, &dir.path().join("d"), &[]),
        "pull after the faults",
    );
}

#[test]
fn skopeo_under_corrupted_and_dropped_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::plain();
    let (_, manifest) = seed_registry(
        dir.path(),
        registry.addr(),
        "stevedore/broken:latest",
        6,
        1 << 20,
        &[],
    );
    let layer = layer_digest(&manifest);
    let proxy = FaultProxy::start(registry.addr());
    let repo = format!("{}/stevedore/broken:latest", proxy.addr());
    let blob = format!("/blobs/{layer}");

    // One flipped byte in the middle of the layer: a digest error.
    let corrupt = proxy.add_fault("GET", &blob, Fault::CorruptByte, 1);
    let out = pull_image(&repo, &dir.path().join("a"), &["--retry-times=3"]);
    assert_failure(&out, "pull of a corrupted blob", "Digest did not match");
    assert!(
        stderr(&out).contains(&format!("expected {layer}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(proxy.fired(corrupt), 1);
    assert_eq!(proxy.count("GET", &blob), 1);

    // The connection dropped after half the layer: skopeo 1.9 fails ("unexpected EOF")
    // and does not retry, even with --retry-times.
    let dropped = proxy.add_fault("GET", &blob, Fault::DropMidBody, 1);
    let out = pull_image(&repo, &dir.path().join("b"), &["--retry-times=3"]);
    assert_failure(&out, "pull of a dropped blob", "unexpected EOF");
    assert_eq!(proxy.fired(dropped), 1);
    assert_eq!(proxy.count("GET", &blob), 2);

    assert_success(
        &pull_image(&repo, &dir.path().join("c"), &[]),
        "pull without faults",
    );
    assert_eq!(pulled_layer(&dir.path().join("c")).0, layer);
}

#[test]
fn everything_stops_when_dropped() {
    let (registry, tokens) = Registry::token("u", "p");
    let proxy = FaultProxy::start(registry.addr());
    let addrs = [registry.addr().to_string(), tokens.addr(), proxy.addr()];
    // Idle clients that never send a request must not hold the servers up.
    let idle: Vec<TcpStream> = [&addrs[1], &addrs[2]]
        .iter()
        .map(|a| TcpStream::connect(a.as_str()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    drop(proxy);
    drop(tokens);
    drop(registry);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    for a in &addrs {
        assert!(port_closed(a), "{a} still listening");
    }
    drop(idle);
}
