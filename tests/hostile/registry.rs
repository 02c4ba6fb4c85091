//! The fuzzing harness's registry: a tiny HTTP/1.1 server on 127.0.0.1 (a thread per
//! connection, `Connection: close`, a bounded number of them) answering `stevedore copy
//! docker://…` from the files of the current case, and the cases themselves: a valid
//! image (made once from the docker archive seeds by `stevedore copy … oci:`) served
//! directly or through an index, with one or two of its replies mutated: the manifest,
//! the index, the config, a layer blob, the `WWW-Authenticate` challenge, the token
//! reply, an error status and its body, a redirect, a body cut short.
//!
//! A case is a directory `srv/` of reply files named by key (`ping`, `manifest-<ref>`,
//! `blob-<digest>`, `token`, `r-<name>` for redirect targets): the body, `<key>.meta`
//! (JSON: `headers`, and a `fault` answered instead for the first `times` requests:
//! `status`, `headers`, `extra` bytes the Content-Length promises beyond the body, or
//! `drop` to close without an answer) and `<key>.fault` (the fault's body). `srv/auth`,
//! when present, is the challenge every unauthorised `/v2/` request gets (a 401 with
//! `srv/auth-body`).
//!
//! The client retries 5xx, 429, transport errors and corrupted blobs 5 times, waiting
//! 0.5 s to 4 s in between, and has no knob to wait less: a case that makes it spend
//! that backoff (about 7.5 s) is marked `slow`, and the harness runs it only when its
//! time budget has room (or when it is replayed).

use super::mutate::{self, Rng, HUGE, NUMBERS};
use super::seeds::{self, Seeds};
use super::stevedore;
use serde_json::{json, Value};
use sha2::Digest as _;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay silent.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_HEAD: usize = 64 << 10;
/// The most the client reads of a manifest or a config.
const MAX_JSON: u64 = 16 << 20;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media types a descriptor may be given.
const MEDIA_TYPES: [&str; 14] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "text/plain",
    "",
];

/// The registry: serves the current case until dropped.
pub struct Server {
    port: u16,
    state: Arc<State>,
    accept: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    stop: AtomicBool,
    live: AtomicUsize,
    /// The case's name (its repository is `fuzz/<name>`) and its `srv` directory.
    case: Mutex<Option<(String, PathBuf)>>,
    /// Requests per key in this case.
    hits: Mutex<HashMap<String, u64>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let accept = std::thread::spawn(move || accept_loop(&listener, &shared));
        Server {
            port,
            state,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn registry(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Answers from case `name`'s files in `dir/srv` from now on.
    pub fn serve(&self, name: &str, dir: &Path) {
        *self.state.case.lock().unwrap() = Some((name.to_string(), dir.join("srv")));
        self.state.hits.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>) {
    for conn in listener.incoming() {
        if state.stop.load(SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        while state.live.load(SeqCst) >= MAX_CONNECTIONS {
            if state.stop.load(SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        state.live.fetch_add(1, SeqCst);
        let shared = Arc::clone(state);
        let spawned = std::thread::Builder::new().spawn(move || {
            let _ = answer(&shared, conn);
            shared.live.fetch_sub(1, SeqCst);
        });
        if spawned.is_err() {
            state.live.fetch_sub(1, SeqCst);
        }
    }
}

/// What to answer a request with.
#[derive(Default)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    extra: u64,
    drop: bool,
}

impl Reply {
    fn error(status: u16, code: &str) -> Reply {
        let body = json!({"errors": [{"code": code, "message": "unknown to the fuzz registry"}]});
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            ..Reply::default()
        }
    }
}

/// Reads one request and answers it, then closes the connection.
fn answer(state: &State, mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut conn)?;
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut request = lines.next().unwrap_or_default().split(' ');
    let method = request.next().unwrap_or_default().to_string();
    let target = request.next().unwrap_or_default().to_string();
    let authorized =
        lines.any(|l| l.len() > 14 && l.as_bytes()[..14].eq_ignore_ascii_case(b"authorization:"));
    let reply = state.reply(&target, authorized);
    if reply.drop {
        return Ok(());
    }
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status)).into_bytes();
    for (k, v) in &reply.headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend(v.bytes().filter(|&b| b != b'\r' && b != b'\n'));
        out.extend_from_slice(b"\r\n");
    }
    let length = reply.body.len() as u64 + reply.extra;
    out.extend(format!("Content-Length: {length}\r\nConnection: close\r\n\r\n").bytes());
    if method != "HEAD" {
        out.extend_from_slice(&reply.body);
    }
    conn.write_all(&out)?;
    conn.flush()?;
    let _ = conn.shutdown(Shutdown::Write);
    Ok(())
}

/// The request line and headers; an error at once for what is not HTTP (the client's
/// TLS hello when it tries https), so that it does not wait for our timeout.
fn read_head(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
        if !head[0].is_ascii_uppercase() || head.len() > MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(head);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Fuzz",
    }
}

impl State {
    fn reply(&self, target: &str, authorized: bool) -> Reply {
        let Some((name, srv)) = self.case.lock().unwrap().clone() else {
            return Reply::error(404, "NAME_UNKNOWN");
        };
        let path = target.split('?').next().unwrap_or_default();
        let Some(key) = route(path, &name) else {
            return Reply::error(404, "NAME_UNKNOWN");
        };
        let guarded = key != "token" && !key.starts_with("r-");
        if guarded && !authorized {
            if let Ok(challenge) = std::fs::read_to_string(srv.join("auth")) {
                return Reply {
                    status: 401,
                    headers: vec![("WWW-Authenticate".into(), challenge)],
                    body: std::fs::read(srv.join("auth-body")).unwrap_or_default(),
                    ..Reply::default()
                };
            }
        }
        let hit = {
            let mut hits = self.hits.lock().unwrap();
            let n = hits.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let Ok(body) = std::fs::read(srv.join(&key)) else {
            let code = match key.starts_with("manifest-") {
                true => "MANIFEST_UNKNOWN",
                false => "BLOB_UNKNOWN",
            };
            return Reply::error(404, code);
        };
        let meta: Value = std::fs::read(srv.join(format!("{key}.meta")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let mut reply = Reply {
            status: 200,
            headers: pairs(&meta["headers"]),
            body,
            ..Reply::default()
        };
        let fault = &meta["fault"];
        if fault.is_object() && hit <= fault["times"].as_u64().unwrap_or(u64::MAX) {
            reply.status = fault["status"].as_u64().unwrap_or(200) as u16;
            if fault.get("headers").is_some() {
                reply.headers = pairs(&fault["headers"]);
            }
            if let Ok(b) = std::fs::read(srv.join(format!("{key}.fault"))) {
                reply.body = b;
            }
            reply.extra = fault["extra"].as_u64().unwrap_or(0);
            reply.drop = fault["drop"].as_bool().unwrap_or(false);
        }
        reply
    }
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
        .collect()
}

/// The key of a request path of case `name`.
fn route(path: &str, name: &str) -> Option<String> {
    let part = |s: &str| !s.is_empty() && s.len() < 200 && !s.contains('/') && s != "..";
    match path {
        "/v2/" | "/v2" => return Some("ping".into()),
        "/token" => return Some("token".into()),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/r/") {
        return part(rest).then(|| format!("r-{rest}"));
    }
    let rest = path.strip_prefix("/v2/fuzz/")?.strip_prefix(name)?;
    let (kind, id) = rest.strip_prefix('/')?.split_once('/')?;
    if !part(id) {
        return None;
    }
    match kind {
        "manifests" => Some(format!("manifest-{id}")),
        "blobs" => Some(format!("blob-{id}")),
        _ => None,
    }
}

/// An image as a registry serves it.
#[derive(Clone)]
pub struct Image {
    pub manifest: Value,
    pub config: Vec<u8>,
    /// The layer blobs, in the manifest's order.
    pub blobs: Vec<Vec<u8>>,
}

/// The seed images, made once: the plain archive as an OCI image with gzip layers and
/// with zstd layers, and the chained archive as a Docker image with uncompressed ones.
pub fn images(s: &Seeds) -> &'static [Image] {
    static IMAGES: OnceLock<Vec<Image>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = s.dir.join("registry");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let made: [(&Path, &[&str], &str); 3] = [
            (&s.archive, &["--compress", "gzip"], "gzip"),
            (&s.archive, &["--compress", "zstd"], "zstd"),
            (
                &s.chained,
                &["--compress", "none", "--format", "docker"],
                "plain",
            ),
        ];
        made.iter()
            .map(|(archive, args, name)| {
                let out = dir.join(name);
                seeds::run(
                    stevedore()
                        .arg("copy")
                        .args(*args)
                        .arg(format!("docker-archive:{}", archive.display()))
                        .arg(format!("oci:{}", out.display())),
                );
                read_layout(&out)
            })
            .collect()
    })
}

fn read_layout(dir: &Path) -> Image {
    let blob = |d: &Value| {
        let hex = d["digest"].as_str().unwrap().trim_start_matches("sha256:");
        std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
    };
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap())
        .expect("index.json");
    let manifest: Value = serde_json::from_slice(&blob(&index["manifests"][0])).unwrap();
    let config = blob(&manifest["config"]);
    let blobs = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(blob)
        .collect();
    Image {
        manifest,
        config,
        blobs,
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A file the registry serves.
#[derive(Default)]
struct Served {
    body: Vec<u8>,
    meta: Value,
    fault: Option<Vec<u8>>,
}

/// One case: the registry's replies, the reference to copy and the arguments.
pub struct Case {
    name: String,
    registry: String,
    files: BTreeMap<String, Served>,
    /// The challenge and the body of a 401.
    auth: Option<(String, Vec<u8>)>,
    /// `docker://127.0.0.1:PORT/fuzz/<name>:seed` (or `@digest`).
    pub reference: String,
    /// The options of `stevedore copy`.
    pub args: Vec<String>,
    /// Whether the client may spend its retries' backoff on this case.
    pub slow: bool,
    /// Whether to run it if it is slow (one in 10 is; the others would take most of
    /// the time of a campaign).
    pub slow_chosen: bool,
    /// What was done to the image, for the saved case.
    pub notes: Vec<String>,
}

/// Which reply a case mutates.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Valid,
    Manifest,
    Index,
    Config,
    Layer,
    Challenge,
    Token,
    Status,
    Cut,
    Redirect,
}

fn kind(rng: &mut Rng) -> Kind {
    const WEIGHTED: [(Kind, usize); 10] = [
        (Kind::Valid, 3),
        (Kind::Manifest, 20),
        (Kind::Index, 12),
        (Kind::Config, 14),
        (Kind::Layer, 14),
        (Kind::Challenge, 9),
        (Kind::Token, 7),
        (Kind::Status, 10),
        (Kind::Cut, 5),
        (Kind::Redirect, 6),
    ];
    let total: usize = WEIGHTED.iter().map(|w| w.1).sum();
    let mut n = rng.below(total);
    for (k, w) in WEIGHTED {
        if n < w {
            return k;
        }
        n -= w;
    }
    Kind::Valid
}

/// A case for repository `fuzz/<name>` of the registry `registry` (`127.0.0.1:PORT`).
pub fn case(rng: &mut Rng, images: &[Image], registry: &str, name: &str) -> Case {
    let image = rng.pick(images).clone();
    let first = kind(rng);
    let second = rng.chance(1, 4).then(|| kind(rng));
    let has = |k: Kind| first == k || second == Some(k);
    let mut c = Case {
        name: name.to_string(),
        registry: registry.to_string(),
        files: BTreeMap::new(),
        auth: None,
        reference: String::new(),
        args: vec![
            "--os".into(),
            "linux".into(),
            "--arch".into(),
            "amd64".into(),
        ],
        slow: false,
        slow_chosen: rng.chance(1, 10),
        notes: vec![format!("kinds: {first:?} {second:?}")],
    };
    c.serve(
        "ping",
        b"{}".to_vec(),
        json!({"headers": [["Content-Type", "application/json"]]}),
    );

    let mut config = image.config.clone();
    if has(Kind::Config) {
        mutate_config(rng, &mut config, &mut c.notes);
    }
    let mut manifest = image.manifest.clone();
    let mut blobs = image.blobs.clone();
    let mut layer_faults = Vec::new();
    if has(Kind::Layer) {
        layer_faults = mutate_layer(rng, &mut manifest, &mut blobs, &mut c.notes);
    }
    if !(has(Kind::Config) && rng.chance(1, 8)) {
        manifest["config"]["digest"] = json!(sha256(&config));
        manifest["config"]["size"] = json!(config.len());
    } else {
        c.notes.push("config descriptor left stale".into());
    }
    if has(Kind::Manifest) {
        mutate_manifest(rng, &mut manifest, &mut config, &blobs, &mut c.notes);
    }
    c.serve_blob(&config);
    for (i, b) in blobs.iter().enumerate() {
        let digest = manifest["layers"][i]["digest"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| sha256(b));
        c.serve(&format!("blob-{digest}"), b.clone(), Value::Null);
    }
    for (digest, bad, times) in layer_faults {
        let key = format!("blob-{digest}");
        // The manifest's mutation may have renamed the blob: then there is nothing to fault.
        if let Some(served) = c.files.get_mut(&key) {
            served.meta = json!({"fault": {"status": 200, "times": times}});
            served.fault = Some(bad);
        }
    }
    let manifest_type = manifest["mediaType"]
        .as_str()
        .unwrap_or(OCI_MANIFEST)
        .to_string();
    let mut manifest_bytes = match rng.chance(1, 2) {
        true => serde_json::to_vec(&manifest).unwrap(),
        false => serde_json::to_vec_pretty(&manifest).unwrap(),
    };
    if has(Kind::Manifest) && rng.chance(1, 3) {
        mutate::json_input(rng, &mut manifest_bytes);
        c.notes.push("manifest bytes mutated".into());
    }
    c.slow |= blobs_mismatch(&manifest_bytes, &c.files);
    let manifest_digest = sha256(&manifest_bytes);
    let content_type = match has(Kind::Manifest) && rng.chance(1, 4) {
        true => rng.pick(&MEDIA_TYPES).to_string(),
        false => manifest_type.clone(),
    };
    c.serve_manifest(rng, &manifest_digest, &manifest_bytes, &content_type);

    let via_index = has(Kind::Index) || rng.chance(1, 4);
    let tag_body = match via_index {
        true => {
            let entry = json!({
                "mediaType": manifest_type,
                "digest": manifest_digest,
                "size": manifest_bytes.len(),
                "platform": {"architecture": "amd64", "os": "linux"},
            });
            let (index, index_type) = index_of(rng, entry, &manifest_type);
            let mut bytes = serde_json::to_vec(&index).unwrap();
            if has(Kind::Index) {
                mutate_index(rng, &mut bytes, &mut c);
            }
            c.serve_manifest(rng, &sha256(&bytes), &bytes, &index_type);
            bytes
        }
        false => manifest_bytes.clone(),
    };
    let tag_meta = c.files[&format!("manifest-{}", sha256(&tag_body))]
        .meta
        .clone();
    c.serve("manifest-seed", tag_body.clone(), tag_meta);
    let repository = format!("{registry}/fuzz/{name}");
    c.reference = match rng.below(20) {
        0 | 1 => format!("docker://{repository}@{}", sha256(&tag_body)),
        2 => {
            let wrong = sha256(&[rng.next() as u8]);
            c.serve(&format!("manifest-{wrong}"), tag_body.clone(), Value::Null);
            format!("docker://{repository}@{wrong}")
        }
        _ => format!("docker://{repository}:seed"),
    };

    if has(Kind::Challenge) {
        challenge(rng, &mut c);
    }
    if has(Kind::Token) {
        token(rng, &mut c);
    }
    if has(Kind::Status) {
        status(rng, &mut c, &manifest_digest);
    }
    if has(Kind::Cut) {
        cut(rng, &mut c, &manifest_digest);
    }
    if has(Kind::Redirect) {
        redirect(rng, &mut c, &manifest_digest);
    }
    if rng.chance(1, 3) {
        c.args.extend(["--compress".into(), "none".into()]);
    }
    if rng.chance(1, 8) {
        c.args.extend(["--jobs".into(), "1".into()]);
    }
    c
}

impl Case {
    fn serve(&mut self, key: &str, body: Vec<u8>, meta: Value) {
        self.files.insert(
            key.to_string(),
            Served {
                body,
                meta,
                fault: None,
            },
        );
    }

    fn serve_blob(&mut self, bytes: &[u8]) {
        self.serve(
            &format!("blob-{}", sha256(bytes)),
            bytes.to_vec(),
            Value::Null,
        );
    }

    /// Serves a manifest or an index under its digest, with its Content-Type and
    /// sometimes a Docker-Content-Digest header (right or wrong).
    fn serve_manifest(&mut self, rng: &mut Rng, digest: &str, bytes: &[u8], content_type: &str) {
        let mut headers = vec![json!(["Content-Type", content_type])];
        let stated = match rng.below(12) {
            0..=5 => Some(digest.to_string()),
            6 => Some(sha256(b"another manifest")),
            7 => Some(format!("sha512:{}", "ab".repeat(64))),
            8 => Some("sha256:NOT-A-DIGEST".into()),
            _ => None,
        };
        if let Some(s) = stated {
            headers.push(json!(["Docker-Content-Digest", s]));
        }
        self.serve(
            &format!("manifest-{digest}"),
            bytes.to_vec(),
            json!({ "headers": headers }),
        );
    }

    /// Makes a key answer `fault` (its body `body`) instead, for its first `times`
    /// requests (a missing key is served as an empty 200 otherwise).
    fn fault(&mut self, key: &str, mut fault: Value, body: Option<Vec<u8>>) {
        let file = self.files.entry(key.to_string()).or_default();
        if file.meta.is_null() {
            file.meta = json!({});
        }
        if fault["times"].is_null() {
            fault["times"] = json!(u64::MAX);
        }
        file.meta["fault"] = fault;
        file.fault = body;
    }

    /// A key to disturb: the ping, a manifest, the config or a layer blob.
    fn pick_key(&self, rng: &mut Rng, manifest_digest: &str) -> String {
        let blobs: Vec<&String> = self
            .files
            .keys()
            .filter(|k| k.starts_with("blob-"))
            .collect();
        match rng.below(5) {
            0 => "ping".into(),
            1 => "manifest-seed".into(),
            2 => format!("manifest-{manifest_digest}"),
            _ if !blobs.is_empty() => rng.pick(&blobs).to_string(),
            _ => "manifest-seed".into(),
        }
    }

    /// Writes the case's files into `dir/srv` (a fresh directory) and `dir/tmp`.
    pub fn write(&self, dir: &Path) {
        let srv = dir.join("srv");
        let _ = std::fs::remove_dir_all(&srv);
        std::fs::create_dir_all(&srv).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let requestable = |k: &&String| !k.contains(['/', '\0']) && k.len() < 200;
        for (key, f) in self.files.iter().filter(|(k, _)| requestable(k)) {
            std::fs::write(srv.join(key), &f.body).unwrap();
            if !f.meta.is_null() {
                std::fs::write(srv.join(format!("{key}.meta")), f.meta.to_string()).unwrap();
            }
            if let Some(b) = &f.fault {
                std::fs::write(srv.join(format!("{key}.fault")), b).unwrap();
            }
        }
        if let Some((challenge, body)) = &self.auth {
            std::fs::write(srv.join("auth"), challenge).unwrap();
            std::fs::write(srv.join("auth-body"), body).unwrap();
        }
        let notes = format!(
            "{}\nreference: {}\nargs: {:?}\nslow: {}\n",
            self.notes.join("\n"),
            self.reference,
            self.args,
            self.slow
        );
        std::fs::write(srv.join("NOTES"), notes).unwrap();
    }

    /// The case's files as one tar, `dir/case.tar`, to keep a failing case.
    pub fn bundle(&self, dir: &Path) -> PathBuf {
        let out = dir.join("case.tar");
        let _ = std::process::Command::new("tar")
            .arg("-cf")
            .arg(&out)
            .arg("-C")
            .arg(dir)
            .arg("srv")
            .status();
        out
    }
}

/// Whether a descriptor of the manifest names a blob the registry serves with other
/// bytes or another size: the client then downloads it again and again.
fn blobs_mismatch(manifest: &[u8], files: &BTreeMap<String, Served>) -> bool {
    let Ok(m) = serde_json::from_slice::<Value>(manifest) else {
        return false;
    };
    let layers = m["layers"].as_array().cloned().unwrap_or_default();
    let config = std::iter::once((true, m["config"].clone()));
    config
        .chain(layers.into_iter().map(|l| (false, l)))
        .any(|(is_config, d)| {
            let (Some(digest), Some(size)) = (d["digest"].as_str(), d["size"].as_u64()) else {
                return false;
            };
            if is_config && size > MAX_JSON {
                return false;
            }
            match files.get(&format!("blob-{digest}")) {
                Some(f) => {
                    let flaky = f.meta["fault"]["times"].as_u64().unwrap_or(0) <= 2;
                    let wrong = sha256(&f.body) != digest || f.body.len() as u64 != size;
                    wrong || (f.fault.is_some() && !flaky)
                }
                None => false,
            }
        })
}

/// Mutates the config: anything (JSON-aware), or its `rootfs.diff_ids`.
fn mutate_config(rng: &mut Rng, config: &mut Vec<u8>, notes: &mut Vec<String>) {
    if rng.chance(1, 2) {
        mutate::json_input(rng, config);
        notes.push("config mutated".into());
        return;
    }
    let mut c: Value = serde_json::from_slice(config).unwrap();
    let ids = c["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut ids = ids;
    let what = match rng.below(8) {
        0 if !ids.is_empty() => {
            ids.remove(rng.below(ids.len()));
            "a diff_id removed"
        }
        1 if !ids.is_empty() => {
            let x = rng.pick(&ids).clone();
            ids.push(x);
            "a diff_id added"
        }
        2 if !ids.is_empty() => {
            let i = rng.below(ids.len());
            let text = ids[i].as_str().unwrap_or_default().to_string();
            ids[i] = json!(flip_hex(rng, &text));
            "a diff_id changed"
        }
        3 if ids.len() > 1 => {
            let (a, b) = (rng.below(ids.len()), rng.below(ids.len()));
            ids.swap(a, b);
            "diff_ids swapped"
        }
        4 if !ids.is_empty() => {
            let i = rng.below(ids.len());
            ids[i] = bad_digest(rng, ids[i].as_str().unwrap_or_default());
            "a diff_id malformed"
        }
        5 => {
            c["rootfs"] = json!({"type": "layers"});
            "no diff_ids"
        }
        6 => {
            c["rootfs"]["diff_ids"] = json!({"0": ids});
            "diff_ids not a list"
        }
        _ => {
            ids = vec![json!(sha256(b"x")); 1 + rng.below(3)];
            "other diff_ids"
        }
    };
    if c["rootfs"]["diff_ids"].is_array() {
        c["rootfs"]["diff_ids"] = Value::Array(ids);
    }
    notes.push(format!("config: {what}"));
    *config = serde_json::to_vec(&c).unwrap();
}

/// A digest with one hex digit changed.
fn flip_hex(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.len() > 8 {
        let i = 7 + rng.below(chars.len() - 7);
        chars[i] = if chars[i] == '0' { '1' } else { '0' };
    }
    chars.into_iter().collect()
}

/// A digest that is not one, or not sha256.
fn bad_digest(rng: &mut Rng, text: &str) -> Value {
    let hex = text.trim_start_matches("sha256:");
    let choices = [
        json!(text.to_uppercase()),
        json!(&text[..text.len().min(20)]),
        json!(format!("sha512:{hex}{hex}")),
        json!(format!("md5:{}", &hex[..hex.len().min(32)])),
        json!(format!("sha256:{hex}/../../x")),
        json!(hex),
        json!(""),
        json!(null),
        json!(7),
        json!(format!("sha256:{hex}\n")),
    ];
    rng.pick(&choices).clone()
}

/// Mutates one layer blob; returns the faults to serve: (digest, bytes, times) where
/// the right bytes come after `times` requests.
fn mutate_layer(
    rng: &mut Rng,
    manifest: &mut Value,
    blobs: &mut [Vec<u8>],
    notes: &mut Vec<String>,
) -> Vec<(String, Vec<u8>, u64)> {
    let i = rng.below(blobs.len());
    let media = manifest["layers"][i]["mediaType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut bad = blobs[i].clone();
    if media.ends_with("gzip") && rng.chance(1, 3) {
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&bad[..])
            .read_to_end(&mut tar)
            .unwrap();
        mutate::tar_input(rng, &mut tar, &[]);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&tar).unwrap();
        bad = enc.finish().unwrap();
    } else if media.ends_with("tar") && rng.chance(1, 2) {
        mutate::tar_input(rng, &mut bad, &[]);
    } else {
        for _ in 0..1 + rng.below(3) {
            mutate::bytes(rng, &mut bad, &[]);
        }
    }
    let digest = manifest["layers"][i]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    match rng.below(6) {
        0..=2 => {
            manifest["layers"][i]["digest"] = json!(sha256(&bad));
            manifest["layers"][i]["size"] = json!(bad.len());
            notes.push(format!("layer {i} mutated, its descriptor updated"));
            blobs[i] = bad;
            Vec::new()
        }
        3 => {
            notes.push(format!("layer {i} mutated under its old digest"));
            blobs[i] = bad;
            Vec::new()
        }
        _ => {
            let times = 1 + rng.below(2) as u64;
            notes.push(format!("layer {i} mutated for its first {times} requests"));
            vec![(digest, bad, times)]
        }
    }
}

/// A structure-aware mutation of an image manifest (it may rewrite the config, to keep
/// the diff_ids in step with duplicated layers).
fn mutate_manifest(
    rng: &mut Rng,
    m: &mut Value,
    config: &mut Vec<u8>,
    blobs: &[Vec<u8>],
    notes: &mut Vec<String>,
) {
    let layers = m["layers"].as_array().map_or(0, Vec::len);
    let which = rng.below(layers + 1);
    let what = match rng.below(12) {
        0 => {
            descriptor(m, which)["size"] = match rng.chance(1, 4) {
                true => number(rng.pick(&NUMBERS)),
                false => json!(*rng.pick(&HUGE)),
            };
            "a size"
        }
        1 => {
            let d = descriptor(m, which);
            let text = d["digest"].as_str().unwrap_or_default().to_string();
            d["digest"] = match rng.chance(1, 2) {
                true => json!(flip_hex(rng, &text)),
                false => bad_digest(rng, &text),
            };
            "a digest"
        }
        2 => {
            descriptor(m, which)["mediaType"] = json!(rng.pick(&MEDIA_TYPES));
            "a descriptor's media type"
        }
        3 => {
            match rng.chance(1, 4) {
                true => drop(m.as_object_mut().unwrap().remove("mediaType")),
                false => m["mediaType"] = json!(rng.pick(&MEDIA_TYPES)),
            }
            "the manifest's media type"
        }
        4 => {
            let keys = ["config", "layers", "schemaVersion", "mediaType"];
            m.as_object_mut().unwrap().remove(*rng.pick(&keys));
            "a field removed"
        }
        5 => {
            let k = *rng.pick(&[2usize, 16, 200, 120_000]);
            let copies: Vec<Value> = (0..k)
                .flat_map(|_| m["layers"].as_array().cloned().unwrap_or_default())
                .collect();
            m["layers"] = Value::Array(copies);
            if k <= 200 && rng.chance(3, 4) {
                let mut c: Value = serde_json::from_slice(config).unwrap_or(Value::Null);
                if let Some(ids) = c["rootfs"]["diff_ids"].as_array().cloned() {
                    let all: Vec<Value> = (0..k).flat_map(|_| ids.clone()).collect();
                    c["rootfs"]["diff_ids"] = Value::Array(all);
                    *config = serde_json::to_vec(&c).unwrap();
                    m["config"]["digest"] = json!(sha256(config));
                    m["config"]["size"] = json!(config.len());
                }
            }
            "layers repeated"
        }
        6 => {
            let inner = m.clone();
            let digest = sha256(&serde_json::to_vec(&inner).unwrap());
            *m = json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": 1,
                    "platform": {"architecture": "amd64", "os": "linux"},
                }],
            });
            "an index instead of the manifest"
        }
        7 => {
            let d = descriptor(m, which);
            for _ in 0..1 + rng.below(300) {
                *d = Value::Array(vec![d.take()]);
            }
            "a descriptor nested deep"
        }
        8 => {
            let d = descriptor(m, which);
            d["annotations"] = json!({"x": "a".repeat(1 + rng.below(200_000))});
            d["urls"] = json!(["http://127.0.0.1:1/foreign"]);
            d["platform"] = json!({"os": 7});
            "descriptor extras"
        }
        9 => {
            m["schemaVersion"] = number(rng.pick(&["1", "\"2\"", "-1", "1e400", "3"]));
            "schemaVersion"
        }
        10 if layers > 1 => {
            let l = m["layers"].as_array_mut().unwrap();
            let (a, b) = (rng.below(l.len()), rng.below(l.len()));
            l.swap(a, b);
            "layers swapped"
        }
        _ => {
            let other = sha256(rng.pick(blobs).as_slice());
            descriptor(m, which)["digest"] = json!(other);
            "a descriptor naming another blob"
        }
    };
    notes.push(format!("manifest: {what} (descriptor {which})"));
}

/// A JSON number (or other value) from its text.
fn number(text: &&str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The config's descriptor (0) or a layer's (1…).
fn descriptor(m: &mut Value, which: usize) -> &mut Value {
    match which {
        0 => &mut m["config"],
        i => &mut m["layers"][i - 1],
    }
}

/// An index listing `entry` among decoys; its media type.
fn index_of(rng: &mut Rng, entry: Value, manifest_type: &str) -> (Value, String) {
    let docker = manifest_type == DOCKER_MANIFEST;
    let index_type = if docker { DOCKER_LIST } else { OCI_INDEX };
    let decoy = |arch: &str, os: &str| {
        json!({
            "mediaType": manifest_type,
            "digest": sha256(arch.as_bytes()),
            "size": 100,
            "platform": {"architecture": arch, "os": os},
        })
    };
    let mut manifests = vec![decoy("arm64", "linux"), decoy("amd64", "windows")];
    let at = rng.below(manifests.len() + 1);
    manifests.insert(at, entry);
    let index = json!({"schemaVersion": 2, "mediaType": index_type, "manifests": manifests});
    (index, index_type.to_string())
}

/// Mutates an index: JSON-aware anywhere, or its platforms and entries.
fn mutate_index(rng: &mut Rng, bytes: &mut Vec<u8>, c: &mut Case) {
    if rng.chance(1, 2) {
        mutate::json_input(rng, bytes);
        c.notes.push("index mutated".into());
        return;
    }
    let mut index: Value = serde_json::from_slice(bytes).unwrap();
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let at = entries
        .iter()
        .position(|e| e["platform"]["os"] == "linux" && e["platform"]["architecture"] == "amd64")
        .unwrap_or(0);
    let e = &mut index["manifests"][at];
    let what = match rng.below(8) {
        0 => {
            e["platform"]["variant"] = json!("v8");
            if rng.chance(1, 2) {
                c.args.extend(["--variant".into(), "v8".into()]);
            }
            "a variant"
        }
        1 => {
            c.args.extend(["--variant".into(), "v7".into()]);
            "another variant wanted"
        }
        2 => {
            e.as_object_mut().unwrap().remove("platform");
            "no platform"
        }
        3 => {
            e["platform"]["architecture"] = json!("AMD64");
            "an upper-case architecture"
        }
        4 => {
            e["size"] = json!(*rng.pick(&HUGE));
            "an entry's size"
        }
        5 => {
            let text = e["digest"].as_str().unwrap_or_default().to_string();
            e["digest"] = bad_digest(rng, &text);
            "an entry's digest"
        }
        6 => {
            let k = *rng.pick(&[10usize, 1000, 200_000]);
            let decoys = vec![entries[(at + 1) % entries.len()].clone(); k];
            let mut all = decoys;
            all.push(index["manifests"][at].clone());
            index["manifests"] = Value::Array(all);
            "many decoys"
        }
        _ => {
            let nested =
                json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [e.clone()]});
            let nested_bytes = serde_json::to_vec(&nested).unwrap();
            let digest = sha256(&nested_bytes);
            c.serve(
                &format!("manifest-{digest}"),
                nested_bytes.clone(),
                json!({"headers": [["Content-Type", OCI_INDEX]]}),
            );
            e["digest"] = json!(digest);
            e["size"] = json!(nested_bytes.len());
            e["mediaType"] = json!(OCI_INDEX);
            "an index in the index"
        }
    };
    c.notes.push(format!("index: {what}"));
    *bytes = serde_json::to_vec(&index).unwrap();
}

/// The challenges the client must handle at once (the realm, when there is one, is
/// the registry's own token server).
fn challenges(registry: &str, name: &str) -> Vec<String> {
    let realm = format!("http://{registry}/token");
    vec![
        format!(r#"Bearer realm="{realm}",service="fuzz",scope="repository:fuzz/{name}:pull""#),
        format!("Bearer realm={realm},service=fuzz"),
        format!(r#"BEARER   realm="{realm}" , service="fu\"zz\\""#),
        format!(
            r#"bearer realm="{realm}?x=1&y=%20",service="{}""#,
            "s".repeat(5000)
        ),
        format!(r#"Bearer realm="{realm}",realm="{realm}",,,=,=="#),
        format!(r#"Bearer realm="{realm}",service="unterminated"#),
        format!(r#"Bearer realm="{realm}\"#),
        r#"Bearer service="fuzz",scope="x""#.into(),
        r#"Basic realm="fuzz""#.into(),
        "Basic".into(),
        "Negotiate".into(),
        r#"Digest realm="x", nonce="y""#.into(),
        "".into(),
        "Bearer".into(),
        "Bearer =".into(),
        r#"Bearer realm="""#.into(),
    ]
}

fn error_body(code: &str) -> Vec<u8> {
    json!({"errors": [{
        "code": code,
        "message": "the fuzz registry says no",
        "detail": [{"Type": "repository", "Name": "fuzz", "Action": "pull"}],
    }]})
    .to_string()
    .into_bytes()
}

/// A mutated error body: JSON-aware, or huge, or not text.
fn mutated_error_body(rng: &mut Rng, code: &str) -> Vec<u8> {
    let mut body = error_body(code);
    match rng.below(6) {
        0 => body = vec![b' '; 70 << 10].into_iter().chain(body).collect(),
        1 => body = (0..1 + rng.below(512)).map(|_| rng.next() as u8).collect(),
        2 => body.clear(),
        _ => mutate::json_input(rng, &mut body),
    }
    body
}

/// The registry asks for authentication with a challenge: one it must handle, or a
/// mutated one (which may send the client to a token server that is not there).
fn challenge(rng: &mut Rng, c: &mut Case) {
    let all = challenges(&c.registry, &c.name);
    let mut header = rng.pick(&all[..2]).clone();
    if rng.chance(1, 4) {
        let mut bytes = header.into_bytes();
        for _ in 0..1 + rng.below(3) {
            mutate::bytes(rng, &mut bytes, &[]);
        }
        header = String::from_utf8_lossy(&bytes).replace(['\r', '\n'], " ");
        c.slow = true;
        c.notes.push("challenge: mutated".into());
    } else {
        header = rng.pick(&all).clone();
        c.notes.push(format!("challenge: {header:?}"));
    }
    if header.to_ascii_lowercase().starts_with("basic") && rng.chance(1, 2) {
        c.args.extend(["--src-creds".into(), "fuzz:secret".into()]);
    }
    let body = match rng.chance(1, 2) {
        true => mutated_error_body(rng, "UNAUTHORIZED"),
        false => error_body("UNAUTHORIZED"),
    };
    c.auth = Some((header, body));
    c.serve("token", token_reply("fuzz-token"), Value::Null);
}

fn token_reply(token: &str) -> Vec<u8> {
    json!({"token": token, "access_token": token, "expires_in": 300, "issued_at": "2024-01-01T00:00:00Z"})
        .to_string()
        .into_bytes()
}

/// The registry wants a bearer token, and its token server's reply is mutated.
fn token(rng: &mut Rng, c: &mut Case) {
    let realm = format!("http://{}/token", c.registry);
    c.auth = Some((
        format!(r#"Bearer realm="{realm}",service="fuzz""#),
        error_body("UNAUTHORIZED"),
    ));
    let mut reply = token_reply("fuzz-token");
    match rng.below(6) {
        0 => {
            let status = *rng.pick(&[401u16, 403, 404, 500, 503]);
            c.slow |= !matches!(status, 401 | 403);
            let fault = json!({"status": status, "headers": []});
            c.serve("token", reply, Value::Null);
            c.fault("token", fault, Some(error_body("DENIED")));
            c.notes.push(format!("token: status {status}"));
            return;
        }
        1 => {
            reply = match rng.below(4) {
                0 => Vec::new(),
                1 => b"<html>token</html>".to_vec(),
                2 => br#"{"token": ""}"#.to_vec(),
                _ => vec![b' '; 70 << 10].into_iter().chain(reply).collect(),
            };
            c.notes.push("token: an odd reply".into());
        }
        _ => {
            mutate::json_input(rng, &mut reply);
            c.notes.push("token: mutated".into());
        }
    }
    c.slow |= !header_safe_token(&reply);
    c.serve("token", reply, Value::Null);
}

/// Whether the token the client takes from `reply` makes a valid header (a token that
/// does not is refused by the client's HTTP library before sending, and retried).
fn header_safe_token(reply: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(reply) else {
        return true;
    };
    let mut safe = true;
    let mut visit = vec![&v];
    while let Some(x) = visit.pop() {
        match x {
            Value::String(s) => safe &= s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
            Value::Array(a) => visit.extend(a),
            Value::Object(o) => visit.extend(o.values()),
            _ => {}
        }
    }
    safe
}

/// One reply becomes an error status with a (mutated) error body, for some requests.
fn status(rng: &mut Rng, c: &mut Case, manifest_digest: &str) {
    let key = c.pick_key(rng, manifest_digest);
    let statuses = [
        400u16, 401, 403, 404, 405, 409, 429, 500, 501, 502, 503, 504, 204, 206, 302, 418, 599,
    ];
    let status = *rng.pick(&statuses);
    let times = *rng.pick(&[1u64, 2, 5, u64::MAX]);
    let transient = status == 429 || (status >= 500 && status != 501);
    let mut headers = vec![json!(["Content-Type", "application/json"])];
    let retry_after = match rng.below(6) {
        0..=3 => "0".to_string(),
        4 => rng
            .pick(&["", "soon", "-1", "1", "99999999999999999999"])
            .to_string(),
        _ => String::new(),
    };
    if !retry_after.is_empty() || rng.chance(1, 2) {
        headers.push(json!(["Retry-After", retry_after]));
    }
    if status == 401 {
        let all = challenges(&c.registry, &c.name);
        headers.push(json!(["WWW-Authenticate", rng.pick(&all)]));
        if !c.files.contains_key("token") {
            c.serve("token", token_reply("fuzz-token"), Value::Null);
        }
    }
    c.slow |= transient && key != "ping" && retry_after != "0" && times > 2;
    let body = mutated_error_body(rng, "FUZZ");
    c.fault(
        &key,
        json!({"status": status, "headers": headers, "times": times}),
        Some(body),
    );
    c.notes.push(format!(
        "status {status} for {key}, {times} times, Retry-After {retry_after:?}"
    ));
}

/// A body cut short (the Content-Length promising more), or no answer at all.
fn cut(rng: &mut Rng, c: &mut Case, manifest_digest: &str) {
    let key = match rng.chance(1, 6) {
        true => "token".to_string(),
        false => c.pick_key(rng, manifest_digest),
    };
    if key == "token" && c.auth.is_none() {
        token(rng, c);
    }
    let body = c
        .files
        .get(&key)
        .map(|f| f.body.clone())
        .unwrap_or_default();
    let times = *rng.pick(&[1u64, 2, u64::MAX]);
    let drop = rng.chance(1, 3);
    let keep = rng.below(body.len() + 1);
    let extra = (body.len() - keep) as u64 + 1 + rng.below(1 << 20) as u64;
    let slow = match key.as_str() {
        "ping" => false,
        "token" => drop,
        k if k.starts_with("manifest-") => drop,
        _ => true,
    };
    c.slow |= slow && times > 2;
    let fault = match drop {
        true => json!({"drop": true, "times": times}),
        false => json!({"status": 200, "extra": extra, "times": times}),
    };
    c.fault(&key, fault, Some(body[..keep].to_vec()));
    c.notes
        .push(format!("{key} cut at {keep} (drop {drop}), {times} times"));
}

/// A reply becomes a redirect to elsewhere on the registry (or somewhere broken).
fn redirect(rng: &mut Rng, c: &mut Case, manifest_digest: &str) {
    let blobs: Vec<String> = c
        .files
        .keys()
        .filter(|k| k.starts_with("blob-"))
        .cloned()
        .collect();
    let key = match rng.chance(2, 3) && !blobs.is_empty() {
        true => rng.pick(&blobs).clone(),
        false => rng
            .pick(&[
                "manifest-seed".to_string(),
                format!("manifest-{manifest_digest}"),
            ])
            .clone(),
    };
    let Some(target) = c.files.get(&key).map(|f| (f.body.clone(), f.meta.clone())) else {
        return;
    };
    let id = format!("to-{}", rng.next() % 1000);
    c.serve(
        &format!("r-{id}"),
        target.0,
        json!({"headers": target.1["headers"].clone()}),
    );
    let here = format!("http://{}", c.registry);
    let fast = [
        format!("/r/{id}"),
        format!("{here}/r/{id}"),
        format!("../../../../r/{id}"),
        "/r/missing".to_string(),
    ];
    let slow = [
        String::new(),
        format!("http://127.0.0.1:1/r/{id}"),
        "http://".to_string(),
        "ht tp://x".to_string(),
        "//".to_string(),
    ];
    let times = *rng.pick(&[1u64, u64::MAX]);
    let location = match rng.below(8) {
        0..=4 => rng.pick(&fast).clone(),
        5 | 6 => {
            c.slow |= times > 2;
            rng.pick(&slow).clone()
        }
        _ => {
            let mut bytes = rng.pick(&fast).clone().into_bytes();
            mutate::bytes(rng, &mut bytes, &[]);
            c.slow |= times > 2;
            String::from_utf8_lossy(&bytes).replace(['\r', '\n'], " ")
        }
    };
    let status = *rng.pick(&[301u16, 302, 303, 307, 308]);
    c.fault(
        &key,
        json!({"status": status, "headers": [["Location", location]], "times": times}),
        Some(Vec::new()),
    );
    c.notes
        .push(format!("{key}: {status} to {location:?}, {times} times"));
}

/// After exit 0: `out` is a whole OCI layout of one image: every blob there and
/// matching its descriptor, as many diff_ids as layers, each layer's uncompressed bytes
/// hashing to its diff_id.
pub fn check_layout(out: &Path) -> Result<(), String> {
    let text = |what: &str, bytes: &[u8]| -> Result<Value, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("{what}: not JSON: {e}"))
    };
    let index_bytes =
        std::fs::read(out.join("index.json")).map_err(|e| format!("no index.json: {e}"))?;
    let index = text("index.json", &index_bytes)?;
    let entries = index["manifests"]
        .as_array()
        .ok_or("index.json: no manifests")?;
    if entries.len() != 1 {
        return Err(format!("index.json lists {} manifests", entries.len()));
    }
    let manifest = text("manifest", &blob(out, &entries[0])?)?;
    let config = text("config", &blob(out, &manifest["config"])?)?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or("config: no diff_ids")?;
    let layers = manifest["layers"].as_array().ok_or("manifest: no layers")?;
    if diff_ids.len() != layers.len() {
        return Err(format!(
            "{} layers, {} diff_ids",
            layers.len(),
            diff_ids.len()
        ));
    }
    for (i, (d, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        let bytes = blob(out, d)?;
        let media = d["mediaType"].as_str().unwrap_or_default();
        let codec = match stevedore::image::media::MediaType::parse(media) {
            stevedore::image::media::MediaType::Layer(_, codec) => codec,
            _ => return Err(format!("layer {i}: media type {media:?}")),
        };
        let plain = stevedore::image::compress::decoder(codec, &bytes[..])
            .map_err(|e| e.to_string())
            .and_then(|r| {
                let mut v = Vec::new();
                r.take(1 << 30)
                    .read_to_end(&mut v)
                    .map_err(|e| e.to_string())?;
                Ok(v)
            });
        let got = plain.as_deref().map(sha256);
        if got.as_deref().ok() == diff_id.as_str() {
            continue;
        }
        return Err(format!(
            "layer {i} ({media}): its uncompressed bytes ({got:?}) do not hash to its diff_id {diff_id}"
        ));
    }
    Ok(())
}

/// A blob of the layout `out`, checked against its descriptor.
fn blob(out: &Path, d: &Value) -> Result<Vec<u8>, String> {
    let digest = d["digest"]
        .as_str()
        .ok_or_else(|| format!("a descriptor without digest: {d}"))?;
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {digest}"))?;
    let bytes = std::fs::read(out.join("blobs/sha256").join(hex))
        .map_err(|e| format!("blob {digest}: {e}"))?;
    if sha256(&bytes) != digest || Some(bytes.len() as u64) != d["size"].as_u64() {
        return Err(format!("blob {digest} does not match its descriptor {d}"));
    }
    Ok(bytes)
}

/// After exit 1: no index.json in `out`.
pub fn nothing_written(out: &Path) -> Result<(), String> {
    match out.join("index.json").exists() {
        true => Err("index.json left behind after an error".into()),
        false => Ok(()),
    }
}

/// No `stevedore-pull-*` (or anything) left in the run's TMPDIR.
pub fn tmp_empty(tmp: &Path) -> Result<(), String> {
    let left: Vec<String> = std::fs::read_dir(tmp)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    match left.is_empty() {
        true => Ok(()),
        false => Err(format!("left in TMPDIR: {left:?}")),
    }
}

/// stderr without the notes a pull prints as it goes (`stevedore: REF: blob D:
/// downloaded 10.0 KiB`, `…; downloading it again`), which come before the one error
/// line of a failed run.
pub fn without_notes(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !is_note(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn is_note(line: &str) -> bool {
    let downloaded = line
        .rsplit_once(": downloaded ")
        .is_some_and(|(_, size)| size.len() < 16 && size.ends_with('B'));
    line.starts_with("stevedore: ")
        && line.contains(": blob sha256:")
        && (downloaded || line.ends_with("; downloading it again"))
}
