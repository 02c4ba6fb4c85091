//! Registries for the registry-client tests: distribution's `docker-registry` (plain,
//! htpasswd or token auth), a token server for it, a fault-injecting HTTP proxy, and
//! skopeo helpers. Everything listens on 127.0.0.1 only, and every process, thread and
//! socket is stopped when the object that started it is dropped. Every wait is bounded.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tempfile::TempDir;

/// Read and write timeout of every socket the harness opens.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a registry may take to answer its first `GET /v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// The User-Agent of the harness's own readiness probes, left out of `requests`.
const PROBE_AGENT: &str = "stevedore-harness-probe";
/// The longest skopeo command the helpers wait for.
pub const SKOPEO_TIMEOUT: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// base64 and small text helpers

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    use ::base64::Engine as _;
    ::base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// base64url without padding (RFC 7515 §2), as JWTs use it.
pub fn base64url(bytes: &[u8]) -> String {
    use ::base64::Engine as _;
    ::base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes standard base64 (padding optional); `None` if malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use ::base64::Engine as _;
    ::base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// Decodes `%XX` escapes and `+` (form encoding) in a query component.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(text.get(i + 1..i + 3).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `(name, value)` pairs of the query of a request target, decoded.
fn query_pairs(target: &str) -> Vec<(String, String)> {
    let Some((_, query)) = target.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// RFC 3339 UTC time of a Unix timestamp.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A free TCP port on 127.0.0.1 (bound then released: a caller that fails to bind it
/// should retry with another).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 message heads and bodies

/// The start line and headers of an HTTP message, as received (order and case kept).
#[derive(Clone, Debug)]
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    fn set(&mut self, name: &str, value: &str) {
        match self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.headers[i].1 = value.to_string();
                let mut seen = 0;
                self.headers.retain(|(n, _)| {
                    if n.eq_ignore_ascii_case(name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.headers.push((name.to_string(), value.to_string())),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{}\r\n", self.start);
        for (n, v) in &self.headers {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    /// The status of a response head (0 if unparsable).
    fn status(&self) -> u16 {
        self.start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn is_chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> Option<u64> {
        self.get("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
}

/// Reads a message head; `None` on EOF before its first byte.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF in a message head",
            ));
        }
        total += n;
        if total > 256 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue; // tolerated leading empty line (RFC 9112 §2.2)
            }
            break;
        }
        lines.push(line);
    }
    let start = lines.remove(0);
    let headers = lines
        .into_iter()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Ok(Some(Head { start, headers }))
}

/// How the body of a message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyLen {
    Empty,
    Fixed(u64),
    Chunked,
    UntilClose,
}

fn request_body_len(head: &Head) -> BodyLen {
    if head.is_chunked() {
        BodyLen::Chunked
    } else {
        match head.content_length() {
            Some(n) => BodyLen::Fixed(n),
            None => BodyLen::Empty,
        }
    }
}

fn response_body_len(method: &str, head: &Head) -> BodyLen {
    let status = head.status();
    if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        BodyLen::Empty
    } else if head.is_chunked() {
        BodyLen::Chunked
    } else {
        match head.content_length() {
            Some(n) => BodyLen::Fixed(n),
            None => BodyLen::UntilClose,
        }
    }
}

/// Copies a body from `r` to `w`. Chunked bodies are copied with their framing when
/// `raw`, or decoded otherwise. Returns the number of bytes written.
fn copy_body(r: &mut impl BufRead, w: &mut impl Write, len: BodyLen, raw: bool) -> io::Result<u64> {
    match len {
        BodyLen::Empty => Ok(0),
        BodyLen::Fixed(n) => {
            let copied = io::copy(&mut r.take(n), w)?;
            if copied < n {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {copied} of {n} bytes"),
                ));
            }
            Ok(copied)
        }
        BodyLen::UntilClose => io::copy(r, w),
        BodyLen::Chunked => {
            let mut written = 0;
            loop {
                let mut line = Vec::new();
                if r.read_until(b'\n', &mut line)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "EOF in chunk size",
                    ));
                }
                if raw {
                    w.write_all(&line)?;
                    written += line.len() as u64;
                }
                let text = String::from_utf8_lossy(&line);
                let size_text = text.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {text:?}"),
                    )
                })?;
                if size == 0 {
                    // Trailer section, up to an empty line.
                    loop {
                        let mut t = Vec::new();
                        if r.read_until(b'\n', &mut t)? == 0 {
                            return Ok(written);
                        }
                        if raw {
                            w.write_all(&t)?;
                            written += t.len() as u64;
                        }
                        if t == b"\r\n" || t == b"\n" {
                            return Ok(written);
                        }
                    }
                }
                let copied = io::copy(&mut r.take(size), w)?;
                written += copied;
                if copied < size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "EOF in a chunk",
                    ));
                }
                let mut crlf = Vec::new();
                r.read_until(b'\n', &mut crlf)?;
                if raw {
                    w.write_all(&crlf)?;
                    written += crlf.len() as u64;
                }
            }
        }
    }
}

/// An HTTP response read by [`http`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn http_exchange(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    chunks: Option<&[&[u8]]>,
) -> io::Result<HttpResponse> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        let _ = write!(head, "Host: {addr}\r\n");
    }
    for (n, v) in headers {
        let _ = write!(head, "{n}: {v}\r\n");
    }
    if let Some(b) = body {
        let _ = write!(head, "Content-Length: {}\r\n", b.len());
    }
    if chunks.is_some() {
        head.push_str("Transfer-Encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    let mut w = stream.try_clone()?;
    w.write_all(head.as_bytes())?;
    if let Some(b) = body {
        w.write_all(b)?;
    }
    if let Some(chunks) = chunks {
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            w.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
            w.write_all(c)?;
            w.write_all(b"\r\n")?;
        }
        w.write_all(b"0\r\n\r\n")?;
    }
    w.flush()?;
    let mut r = BufReader::new(stream);
    let resp = loop {
        let h = read_head(&mut r)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
        if h.status() != 100 {
            break h;
        }
    };
    let mut body = Vec::new();
    copy_body(&mut r, &mut body, response_body_len(method, &resp), false)?;
    Ok(HttpResponse {
        status: resp.status(),
        headers: resp.headers,
        body,
    })
}

/// One HTTP/1.1 request to `addr` ("127.0.0.1:PORT") with `Connection: close`,
/// `Host: ADDR` unless `headers` has a Host, a `Content-Length` body if `body` is given, and the response read to its end (chunked
/// bodies decoded).
pub fn http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    http_exchange(addr, method, target, headers, body, None)
}

/// Like [`http`], with a `Transfer-Encoding: chunked` body sent as `chunks`.
pub fn http_chunked(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    chunks: &[&[u8]],
) -> io::Result<HttpResponse> {
    http_exchange(addr, method, target, headers, None, Some(chunks))
}

// ---------------------------------------------------------------------------------------
// A thread-per-connection TCP server that stops everything it started when dropped

/// The sockets open in a server's threads, so that dropping the server can shut them
/// down and its threads end promptly.
#[derive(Default)]
struct Tracker {
    closed: AtomicBool,
    next: AtomicU64,
    live: Mutex<HashMap<u64, TcpStream>>,
}

struct Tracked {
    tracker: Arc<Tracker>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        lock(&self.tracker.live).remove(&self.id);
    }
}

impl Tracker {
    fn track(self: &Arc<Self>, stream: &TcpStream) -> Tracked {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&self.live).insert(id, clone);
        }
        if self.closed.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Tracked {
            tracker: Arc::clone(self),
            id,
        }
    }

    fn close_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for s in lock(&self.live).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

type Handler = Arc<dyn Fn(TcpStream, &Arc<Tracker>) + Send + Sync>;

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tracker: Arc<Tracker>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    fn start(name: &str, handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tracker = Arc::new(Tracker::default());
        let workers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (stop, tracker, workers) = (stop.clone(), tracker.clone(), workers.clone());
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("{name}-accept"))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        };
                        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                        let guard = tracker.track(&stream);
                        let (handler, tracker) = (handler.clone(), tracker.clone());
                        let worker = std::thread::Builder::new()
                            .name(format!("{name}-conn"))
                            .spawn(move || {
                                let _guard = guard;
                                handler(stream, &tracker);
                            });
                        let mut ws = lock(&workers);
                        ws.retain(|w| !w.is_finished());
                        if let Ok(w) = worker {
                            ws.push(w);
                        }
                    }
                })
                .expect("spawn accept thread")
        };
        Server {
            addr,
            stop,
            tracker,
            workers,
            accept: Some(accept),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        self.tracker.close_all();
        let workers: Vec<_> = lock(&self.workers).drain(..).collect();
        for w in workers {
            let _ = w.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Registry

/// A `docker-registry serve` (distribution 2.8) on 127.0.0.1 with its own config and
/// storage in a temporary directory; killed when dropped.
pub struct Registry {
    child: Child,
    addr: String,
    log_path: PathBuf,
    dir: TempDir,
}

/// One line of a registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// The request target as logged (path and query).
    pub uri: String,
    pub status: u16,
    pub user_agent: String,
}

impl Registry {
    /// A registry without authentication.
    pub fn plain() -> Registry {
        Registry::start("plain", |_| String::new())
    }

    /// A registry with HTTP Basic authentication against a bcrypt htpasswd file holding
    /// one user.
    pub fn htpasswd(user: &str, password: &str) -> Registry {
        let (user, password) = (user.to_string(), password.to_string());
        Registry::start("htpasswd", move |dir| {
            let out = super::run(Command::new("htpasswd").args(["-Bbn", &user, &password]));
            let file = dir.join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: stevedore-test\n    path: {}\n",
                file.display()
            )
        })
    }

    /// A registry with token authentication, and the token server it trusts (which
    /// knows one user).
    pub fn token(user: &str, password: &str) -> (Registry, TokenServer) {
        let server = TokenServer::start(user, password);
        let (realm, service, issuer, cert) = (
            server.url(),
            server.service().to_string(),
            server.issuer().to_string(),
            server.cert_path().to_path_buf(),
        );
        let registry = Registry::start("token", move |_| {
            format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                cert.display()
            )
        });
        (registry, server)
    }

    /// Starts a registry whose config ends with `auth(dir)`; retries on another port if
    /// the chosen one was taken meanwhile.
    fn start(kind: &str, auth: impl Fn(&Path) -> String) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix(&format!("stevedore-registry-{kind}"))
            .tempdir()
            .expect("temp dir");
        let auth = auth(dir.path());
        let storage = dir.path().join("storage");
        let mut failures = String::new();
        for attempt in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n  secret: stevedore-test-secret\n{auth}",
                storage.display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join(format!("registry-{attempt}.log"));
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .unwrap();
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            // REGISTRY_* variables override the config file (REGISTRY_AUTH_FILE, meant
            // for containers tools, would even be read as `auth.file`).
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            let mut child = cmd.spawn().expect("cannot run docker-registry");
            match wait_ready(&mut child, &addr) {
                Ok(()) => {
                    return Registry {
                        child,
                        addr,
                        log_path,
                        dir,
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    let _ = write!(failures, "attempt {attempt} on {addr}: {e}\n{log}\n");
                    if !log.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("docker-registry did not start:\n{failures}");
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The directory of the registry's storage driver.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The whole log (stdout and stderr) so far, after waiting (at most 2 s) for it to
    /// stop growing: the access line of a request is written just after its response.
    pub fn log(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The requests of the access log, in order, without the harness's readiness probes.
    ///
    /// distribution 2.8 writes each request twice: a logrus line (`msg="response
    /// completed"`, with `http.request.method=… http.request.uri=…`) and an Apache combined
    /// log line, `127.0.0.1 - - [01/Dec/2026:17:34:01 +0000] "GET /v2/ HTTP/1.1" 200 2 ""
    /// "curl/7.88.1"`; this parses the latter, which exists for every request (also the
    /// ones refused with 401).
    pub fn access_log(&self) -> Vec<LoggedRequest> {
        self.log().lines().filter_map(parse_access_line).collect()
    }

    /// How many requests with `method` ("*" for any) have a target containing
    /// `path_contains`.
    pub fn requests(&self, method: &str, path_contains: &str) -> usize {
        self.access_log()
            .iter()
            .filter(|r| (method == "*" || r.method == method) && r.uri.contains(path_contains))
            .count()
    }
}

fn parse_access_line(line: &str) -> Option<LoggedRequest> {
    // `HOST - USER [DATE] "METHOD URI PROTO" STATUS SIZE "REFERER" "AGENT"`
    if line.starts_with("time=") {
        return None;
    }
    let open = line.find("] \"")? + 3;
    let rest = &line[open..];
    let close = rest.find('"')?;
    let mut request = rest[..close].split(' ');
    let method = request.next()?.to_string();
    let uri = request.next()?.to_string();
    let after = rest[close + 1..].trim_start();
    let status = after.split(' ').next()?.parse().ok()?;
    let user_agent = after
        .rsplit_once(" \"")
        .map(|(_, a)| a.trim_end_matches('"').to_string())
        .unwrap_or_default();
    if user_agent == PROBE_AGENT {
        return None;
    }
    Some(LoggedRequest {
        method,
        uri,
        status,
        user_agent,
    })
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the registry at `addr` answers `GET /v2/` (200 or 401).
fn wait_ready(child: &mut Child, addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("docker-registry exited: {status}"));
        }
        if let Ok(resp) = http(addr, "GET", "/v2/", &[("User-Agent", PROBE_AGENT)], None) {
            if resp.status == 200 || resp.status == 401 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no answer to GET /v2/ within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// Token server

/// One request the token server answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The Basic-auth user, if credentials were sent.
    pub user: Option<String>,
    pub service: Option<String>,
    /// The `scope` parameters, in order.
    pub scopes: Vec<String>,
    pub status: u16,
}

struct TokenState {
    user: String,
    password: String,
    service: String,
    issuer: String,
    key: PathBuf,
    cert_der_b64: String,
    anonymous_pull: AtomicBool,
    served: AtomicUsize,
    requests: Mutex<Vec<TokenRequest>>,
}

/// A token server for distribution's token auth (`GET /token?service=…&scope=…`, HTTP
/// Basic credentials optional), issuing RS256 JWTs with an `x5c` header holding its
/// self-signed certificate (which the registry has as `rootcertbundle`), signed by the
/// `openssl` CLI. Stopped when dropped.
pub struct TokenServer {
    state: Arc<TokenState>,
    dir: TempDir,
    server: Server,
}

impl TokenServer {
    /// A token server knowing one user; anonymous requests are refused until
    /// [`TokenServer::allow_anonymous_pull`].
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("stevedore-token")
            .tempdir()
            .expect("temp dir");
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.crt");
        let der = dir.path().join("token.der");
        super::run(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256"])
                .args(["-days", "2", "-subj", "/CN=stevedore-test-token-issuer"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        super::run(
            Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&cert)
                .arg("-out")
                .arg(&der),
        );
        let state = Arc::new(TokenState {
            user: user.to_string(),
            password: password.to_string(),
            service: "stevedore-test-registry".to_string(),
            issuer: "stevedore-test-issuer".to_string(),
            key,
            cert_der_b64: base64(&std::fs::read(&der).unwrap()),
            anonymous_pull: AtomicBool::new(false),
            served: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let handler_state = state.clone();
        let server = Server::start(
            "token",
            Arc::new(move |stream, _| {
                let _ = serve_token(stream, &handler_state);
            }),
        );
        TokenServer { state, dir, server }
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        self.server.addr.to_string()
    }

    /// The realm: `http://127.0.0.1:PORT/token`.
    pub fn url(&self) -> String {
        format!("http://{}/token", self.server.addr)
    }

    /// The `service` (the tokens' audience) the registry is configured with.
    pub fn service(&self) -> &str {
        &self.state.service
    }

    /// The tokens' issuer.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The PEM certificate whose key signs the tokens.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("token.crt")
    }

    /// Whether requests without credentials get a token (granting only `pull`).
    pub fn allow_anonymous_pull(&self, allow: bool) {
        self.state.anonymous_pull.store(allow, Ordering::SeqCst);
    }

    /// How many requests the server answered (any status).
    pub fn token_requests(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.requests).clone()
    }

    /// Every scope asked for, in order.
    pub fn scopes(&self) -> Vec<String> {
        self.requests().into_iter().flat_map(|r| r.scopes).collect()
    }

    /// A signed token for `user` granting `access` (`[(type, name, [actions])]`), valid
    /// from `nbf` to `exp` (Unix seconds): for tests that need expired or odd tokens.
    pub fn sign(&self, user: &str, access: &[(&str, &str, &[&str])], nbf: u64, exp: u64) -> String {
        let access: Vec<Value> = access
            .iter()
            .map(|(t, n, a)| json!({"type": t, "name": n, "actions": a}))
            .collect();
        make_jwt(&self.state, user, access, nbf, exp)
    }
}

fn make_jwt(st: &TokenState, user: &str, access: Vec<Value>, nbf: u64, exp: u64) -> String {
    static JTI: AtomicU64 = AtomicU64::new(0);
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [st.cert_der_b64]});
    let claims = json!({
        "iss": st.issuer,
        "sub": user,
        "aud": st.service,
        "exp": exp,
        "nbf": nbf,
        "iat": unix_now(),
        "jti": format!("stevedore-{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&st.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "openssl dgst -sign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{input}.{}", base64url(&out.stdout))
}

/// The actions of `scope` that `authenticated` (or an anonymous puller) gets.
fn grant(scope: &str, authenticated: bool) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let granted: Vec<&str> = actions
        .split(',')
        .filter(|a| {
            if authenticated {
                ["pull", "push", "delete", "*"].contains(a)
            } else {
                *a == "pull" && kind.starts_with("repository")
            }
        })
        .collect();
    if granted.is_empty() {
        return None;
    }
    Some(json!({"type": kind, "name": name, "actions": granted}))
}

fn serve_token(stream: TcpStream, st: &TokenState) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    copy_body(&mut reader, &mut io::sink(), request_body_len(&head), false)?;
    let mut parts = head.start.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let pairs = query_pairs(&target);
    let scopes: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let service = pairs
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    let creds = head
        .get("authorization")
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| base64_decode(b.trim()))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map(|s| match s.split_once(':') {
            Some((u, p)) => (u.to_string(), p.to_string()),
            None => (s, String::new()),
        });
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = if method != "GET" || path != "/token" {
        (
            404,
            json!({"errors": [{"code": "NOT_FOUND", "message": "only GET /token"}]}),
        )
    } else {
        let authenticated = match &creds {
            Some((u, p)) => (u == &st.user && p == &st.password).then_some(true),
            None => st.anonymous_pull.load(Ordering::SeqCst).then_some(false),
        };
        match authenticated {
            None => (
                401,
                json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
            ),
            Some(authenticated) => {
                let access: Vec<Value> = scopes
                    .iter()
                    .filter_map(|s| grant(s, authenticated))
                    .collect();
                let now = unix_now();
                let user = if authenticated { st.user.as_str() } else { "" };
                let token = make_jwt(st, user, access, now.saturating_sub(10), now + 300);
                (
                    200,
                    json!({
                        "token": token,
                        "access_token": token,
                        "expires_in": 300,
                        "issued_at": rfc3339(now),
                    }),
                )
            }
        }
    };
    lock(&st.requests).push(TokenRequest {
        user: creds.map(|(u, _)| u),
        service,
        scopes,
        status,
    });
    st.served.fetch_add(1, Ordering::SeqCst);
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 401 {
        resp.push_str("WWW-Authenticate: Basic realm=\"stevedore-test-token\"\r\n");
    }
    resp.push_str("\r\n");
    resp.push_str(&body);
    out.write_all(resp.as_bytes())?;
    out.flush()?;
    let _ = out.shutdown(Shutdown::Write);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Fault-injecting proxy

/// What a [`FaultProxy`] does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `status` (with a JSON error body, and `Retry-After: N` if given) without
    /// forwarding the request.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Answer `307 Temporary Redirect` to the same path on another host (`http://HOST`),
    /// as registries do to send blob downloads to storage.
    Redirect { host: String },
    /// Forward, then close the connection after half of the response body (only fires on
    /// 2xx responses with a non-empty body).
    DropMidBody,
    /// Forward, inverting every bit of the byte in the middle of the response body (only
    /// fires on 2xx responses with a non-empty body).
    CorruptByte,
}

impl Fault {
    /// `Fault::Status` without `Retry-After`.
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            retry_after: None,
        }
    }

    /// 429 Too Many Requests with `Retry-After: secs`.
    pub fn too_many_requests(secs: u64) -> Fault {
        Fault::Status {
            status: 429,
            retry_after: Some(secs),
        }
    }
}

/// A request a [`FaultProxy`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The status sent to the client (0 if none was: the client went away first; 502
    /// if the upstream could not be reached).
    pub status: u16,
    /// The id of the fault that fired on it.
    pub fault: Option<usize>,
    /// Whether the request body was sent with `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

struct Rule {
    method: String,
    path: String,
    fault: Fault,
    remaining: usize,
    fired: usize,
}

#[derive(Default)]
struct ProxyState {
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<ProxiedRequest>>,
}

impl ProxyState {
    /// Takes one firing of the first rule matching the request for which `wanted` holds.
    fn take(
        &self,
        method: &str,
        path: &str,
        wanted: impl Fn(&Fault) -> bool,
    ) -> Option<(usize, Fault)> {
        let mut rules = lock(&self.rules);
        let (id, rule) = rules.iter_mut().enumerate().find(|(_, r)| {
            r.remaining > 0
                && (r.method == "*" || r.method == method)
                && path.contains(&r.path)
                && wanted(&r.fault)
        })?;
        rule.remaining -= 1;
        rule.fired += 1;
        Some((id, rule.fault.clone()))
    }

    fn update(&self, idx: usize, status: u16, fault: Option<usize>) {
        let mut seen = lock(&self.seen);
        seen[idx].status = status;
        seen[idx].fault = fault;
    }
}

/// An HTTP/1.1 reverse proxy on 127.0.0.1 in front of a registry, injecting faults.
/// Each request is answered with `Connection: close` and its connection closed; request
/// bodies (Content-Length or chunked) and responses are streamed through unchanged,
/// except `Location` headers naming the upstream, which name the proxy instead.
/// Stopped when dropped.
pub struct FaultProxy {
    state: Arc<ProxyState>,
    upstream: String,
    server: Server,
}

impl FaultProxy {
    /// A proxy in front of `upstream` ("127.0.0.1:PORT", e.g. [`Registry::addr`]).
    pub fn start(upstream: &str) -> FaultProxy {
        let state = Arc::new(ProxyState::default());
        let upstream_addr: SocketAddr = upstream.parse().expect("upstream 127.0.0.1:PORT");
        let handler_state = state.clone();
        // The proxy's own address is only known once it listens.
        let own: Arc<Mutex<String>> = Arc::default();
        let handler_own = own.clone();
        let server = Server::start(
            "fault-proxy",
            Arc::new(move |stream, tracker| {
                let own = lock(&handler_own).clone();
                let _ = proxy_one(stream, tracker, &handler_state, upstream_addr, &own);
            }),
        );
        *lock(&own) = server.addr.to_string();
        FaultProxy {
            state,
            upstream: upstream.to_string(),
            server,
        }
    }

    /// "127.0.0.1:PORT" of the proxy.
    pub fn addr(&self) -> String {
        self.server.addr.to_string()
    }

    /// The upstream's "127.0.0.1:PORT".
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Adds a fault for the next `times` requests with `method` ("*" for any) whose target
    /// contains `path_contains`; returns its id. Rules are tried in the order added.
    pub fn add_fault(
        &self,
        method: &str,
        path_contains: &str,
        fault: Fault,
        times: usize,
    ) -> usize {
        let mut rules = lock(&self.state.rules);
        rules.push(Rule {
            method: method.to_string(),
            path: path_contains.to_string(),
            fault,
            remaining: times,
            fired: 0,
        });
        rules.len() - 1
    }

    /// How many times fault `id` fired.
    pub fn fired(&self, id: usize) -> usize {
        lock(&self.state.rules)[id].fired
    }

    /// How many more times fault `id` will fire.
    pub fn remaining(&self, id: usize) -> usize {
        lock(&self.state.rules)[id].remaining
    }

    /// Disarms every fault (their counts stay).
    pub fn clear_faults(&self) {
        for r in lock(&self.state.rules).iter_mut() {
            r.remaining = 0;
        }
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        lock(&self.state.seen).clone()
    }

    /// How many requests with `method` ("*" for any) had a target containing
    /// `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        lock(&self.state.seen)
            .iter()
            .filter(|r| (method == "*" || r.method == method) && r.path.contains(path_contains))
            .count()
    }
}

/// A writer that corrupts or cuts a body at byte offset `at`.
struct FaultWriter<'a, W: Write> {
    inner: &'a mut W,
    pos: u64,
    at: u64,
    fault: Fault,
}

impl<W: Write> Write for FaultWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.pos + buf.len() as u64;
        match self.fault {
            Fault::DropMidBody if end > self.at || self.at == 0 => {
                let keep = self.at.saturating_sub(self.pos) as usize;
                self.inner.write_all(&buf[..keep.min(buf.len())])?;
                self.inner.flush()?;
                return Err(io::Error::other("fault: connection dropped"));
            }
            Fault::CorruptByte if self.pos <= self.at && self.at < end => {
                let mut copy = buf.to_vec();
                copy[(self.at - self.pos) as usize] ^= 0xff;
                self.inner.write_all(&copy)?;
            }
            _ => self.inner.write_all(buf)?,
        }
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn simple_response(status: u16, extra: &str, method: &str) -> Vec<u8> {
    let (reason, code) = match status {
        429 => ("Too Many Requests", "TOOMANYREQUESTS"),
        500 => ("Internal Server Error", "UNKNOWN"),
        502 => ("Bad Gateway", "UNKNOWN"),
        503 => ("Service Unavailable", "UNAVAILABLE"),
        _ => ("Injected Fault", "UNKNOWN"),
    };
    let body = json!({"errors": [{"code": code, "message": format!("injected {status}"), "detail": null}]})
        .to_string();
    let mut s = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    if method != "HEAD" {
        s.push_str(&body);
    }
    s.into_bytes()
}

fn proxy_one(
    client: TcpStream,
    tracker: &Arc<Tracker>,
    st: &ProxyState,
    upstream: SocketAddr,
    own: &str,
) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut out = client;
    // A TLS ClientHello (Go clients try https first) or other non-HTTP bytes: refuse now,
    // rather than wait for a head that never comes.
    match reader.fill_buf()?.first() {
        None => return Ok(()),
        Some(b) if !b.is_ascii_uppercase() => {
            out.write_all(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )?;
            let _ = out.shutdown(Shutdown::Write);
            return Ok(());
        }
        Some(_) => {}
    }
    let Some(mut head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = head.start.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let idx = {
        let mut seen = lock(&st.seen);
        seen.push(ProxiedRequest {
            method: method.clone(),
            path: target.clone(),
            status: 0,
            fault: None,
            chunked: head.is_chunked(),
        });
        seen.len() - 1
    };
    let req_len = request_body_len(&head);
    let expect = head
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    head.remove("expect");

    if let Some((id, Fault::Redirect { host })) =
        st.take(&method, &target, |f| matches!(f, Fault::Redirect { .. }))
    {
        st.update(idx, 307, Some(id));
        if !expect {
            copy_body(&mut reader, &mut io::sink(), req_len, false)?;
        }
        let extra = format!("Location: http://{host}{target}\r\n");
        out.write_all(&simple_response(307, &extra, &method))?;
        out.flush()?;
        let _ = out.shutdown(Shutdown::Write);
        return Ok(());
    }
    if let Some((
        id,
        Fault::Status {
            status,
            retry_after,
        },
    )) = st.take(&method, &target, |f| matches!(f, Fault::Status { .. }))
    {
        st.update(idx, status, Some(id));
        if !expect {
            copy_body(&mut reader, &mut io::sink(), req_len, false)?;
        }
        let extra = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
        out.write_all(&simple_response(status, &extra, &method))?;
        out.flush()?;
        let _ = out.shutdown(Shutdown::Write);
        return Ok(());
    }

    let upstream_stream = match TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(_) => {
            st.update(idx, 502, None);
            if !expect {
                let _ = copy_body(&mut reader, &mut io::sink(), req_len, false);
            }
            out.write_all(&simple_response(502, "", &method))?;
            let _ = out.shutdown(Shutdown::Write);
            return Ok(());
        }
    };
    upstream_stream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream_stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let _guard = tracker.track(&upstream_stream);
    if expect {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    head.set("Connection", "close");
    head.remove("keep-alive");
    head.remove("proxy-connection");
    let mut up_w = upstream_stream.try_clone()?;
    let mut up_r = BufReader::new(upstream_stream);
    // The upstream may answer before reading the whole body (a 401, say): read its
    // answer even if sending the body failed.
    let sent = up_w
        .write_all(&head.to_bytes())
        .and_then(|()| copy_body(&mut reader, &mut up_w, req_len, true))
        .and_then(|_| up_w.flush());
    let mut resp = loop {
        match read_head(&mut up_r) {
            Ok(Some(h)) if (100..200).contains(&h.status()) => continue,
            Ok(Some(h)) => break h,
            Ok(None) => {
                sent?;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upstream closed",
                ));
            }
            Err(e) => {
                sent?;
                return Err(e);
            }
        }
    };
    let status = resp.status();
    let resp_len = response_body_len(&method, &resp);
    if let Some(loc) = resp.get("location").map(str::to_string) {
        let upstream_text = upstream.to_string();
        if loc.contains(&upstream_text) {
            resp.set("Location", &loc.replace(&upstream_text, own));
        }
    }
    resp.set("Connection", "close");
    resp.remove("keep-alive");
    let body_fault = if (200..300).contains(&status)
        && resp_len != BodyLen::Empty
        && resp_len != BodyLen::Fixed(0)
    {
        st.take(&method, &target, |f| {
            !matches!(f, Fault::Status { .. } | Fault::Redirect { .. })
        })
    } else {
        None
    };
    st.update(idx, status, body_fault.as_ref().map(|(id, _)| *id));
    out.write_all(&resp.to_bytes())?;
    match body_fault {
        None => {
            copy_body(&mut up_r, &mut out, resp_len, true)?;
        }
        Some((_, fault)) => {
            let result = match resp_len {
                BodyLen::Fixed(n) => {
                    let mut w = FaultWriter {
                        inner: &mut out,
                        pos: 0,
                        at: n / 2,
                        fault: fault.clone(),
                    };
                    copy_body(&mut up_r, &mut w, resp_len, true).map(drop)
                }
                _ => {
                    // Unknown length: buffer it to find the middle (framing included for
                    // chunked bodies).
                    let mut all = Vec::new();
                    copy_body(&mut up_r, &mut all, resp_len, true)?;
                    let mut w = FaultWriter {
                        inner: &mut out,
                        pos: 0,
                        at: all.len() as u64 / 2,
                        fault: fault.clone(),
                    };
                    w.write_all(&all)
                }
            };
            if fault == Fault::DropMidBody {
                let _ = out.shutdown(Shutdown::Both);
                return Ok(());
            }
            result?;
        }
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Write);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Credentials, skopeo and images

/// Writes a containers auth file (`{"auths": {"REGISTRY": {"auth": base64(user:pass)}}}`,
/// for `REGISTRY_AUTH_FILE` or `--authfile`) to `path`.
pub fn write_auth_file(path: &Path, registry: &str, user: &str, password: &str) {
    let auth = base64(format!("{user}:{password}").as_bytes());
    let doc = json!({"auths": {registry: {"auth": auth}}});
    std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

/// Runs `cmd` with piped output, killing it and panicking if it is not done within
/// `limit`; returns its output whatever its exit status.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let (status, timed_out) = loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            break (s, false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break (child.wait().expect("wait for killed child"), true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    assert!(
        !timed_out,
        "{cmd:?} did not finish within {limit:?}; stderr: {}",
        String::from_utf8_lossy(&stderr)
    );
    Output {
        status,
        stdout,
        stderr,
    }
}

/// `skopeo --insecure-policy` with a private HOME and no REGISTRY_AUTH_FILE,
/// XDG_RUNTIME_DIR, XDG_CONFIG_HOME or DOCKER_CONFIG, so that no credentials but the
/// ones a test gives are used (a test may set REGISTRY_AUTH_FILE on the command).
pub fn skopeo() -> Command {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skopeo-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new("skopeo");
    cmd.env("HOME", &home)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DOCKER_CONFIG")
        .arg("--insecure-policy");
    cmd
}

/// Runs `cmd` bounded by [`SKOPEO_TIMEOUT`].
pub fn run_skopeo(cmd: &mut Command) -> Output {
    run_bounded(cmd, SKOPEO_TIMEOUT)
}

/// `skopeo copy EXTRA... SRC DEST`, bounded; the output whatever the status.
pub fn skopeo_copy(src: &str, dest: &str, extra: &[&str]) -> Output {
    run_skopeo(skopeo().arg("copy").args(extra).args([src, dest]))
}

/// Panics with skopeo's stderr unless `out` is a success.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OCI layout holding one small image, made by [`super::write_plain_layout`].
#[derive(Clone, Debug)]
pub struct SampleImage {
    /// The layout directory; the image is tagged `latest`.
    pub layout: PathBuf,
    /// The uncompressed layer: a tar holding `data`, `len` pseudo-random bytes.
    pub layer: Vec<u8>,
}

impl SampleImage {
    /// `oci:LAYOUT:latest`.
    pub fn reference(&self) -> String {
        format!("oci:{}:latest", self.layout.display())
    }
}

/// Writes an OCI layout at `dir/image-SEED` with one uncompressed layer (a tar of one file
/// of `len` incompressible bytes from `seed`).
pub fn sample_image(dir: &Path, seed: u64, len: usize) -> SampleImage {
    let layout = dir.join(format!("image-{seed}"));
    let layer = super::one_file_tar("data", &super::pseudo_random(seed, len));
    super::write_plain_layout(&layout, &[&layer], Some("latest"));
    SampleImage { layout, layer }
}

/// Pushes `image` to `docker://DEST` (DEST = "ADDR/REPO:TAG") over plain http with skopeo
/// (which gzips the layer on the way); the output whatever the status.
pub fn push_image(image: &SampleImage, dest: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    skopeo_copy(&image.reference(), &format!("docker://{dest}"), &args)
}

/// Pulls `docker://SRC` into the OCI layout `dir` (tag `latest`) with skopeo over plain
/// http; the output whatever the status.
pub fn pull_image(src: &str, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--src-tls-verify=false"];
    args.extend_from_slice(extra);
    skopeo_copy(
        &format!("docker://{src}"),
        &format!("oci:{}:latest", dir.display()),
        &args,
    )
}

/// `skopeo inspect --raw` of `docker://SRC` over plain http: the manifest as stored.
pub fn inspect_raw(src: &str, extra: &[&str]) -> Output {
    run_skopeo(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .args(extra)
            .arg(format!("docker://{src}")),
    )
}

/// The manifest of `docker://SRC`, read with skopeo; panics on failure.
pub fn registry_manifest(src: &str, extra: &[&str]) -> Value {
    let out = inspect_raw(src, extra);
    assert_success(&out, &format!("skopeo inspect --raw docker://{src}"));
    serde_json::from_slice(&out.stdout).expect("manifest JSON")
}

/// Makes a sample image and pushes it to `registry/repo:tag` (a plain registry, or one
/// `extra` gives credentials for); returns the image and the pushed manifest.
pub fn seed_registry(
    dir: &Path,
    registry: &str,
    repo_tag: &str,
    seed: u64,
    len: usize,
    extra: &[&str],
) -> (SampleImage, Value) {
    let image = sample_image(dir, seed, len);
    let dest = format!("{registry}/{repo_tag}");
    let out = push_image(&image, &dest, extra);
    assert_success(&out, &format!("skopeo copy to docker://{dest}"));
    let manifest = registry_manifest_with(&dest, extra);
    (image, manifest)
}

/// The manifest of `docker://SRC`, with `--dest-creds=…` in `extra` turned into the
/// `--creds=…` of `skopeo inspect`.
fn registry_manifest_with(src: &str, extra: &[&str]) -> Value {
    let inspect_extra: Vec<String> = extra
        .iter()
        .filter_map(|a| {
            if let Some(c) = a.strip_prefix("--dest-creds=") {
                Some(format!("--creds={c}"))
            } else {
                a.strip_prefix("--dest-authfile=")
                    .map(|f| format!("--authfile={f}"))
            }
        })
        .collect();
    let refs: Vec<&str> = inspect_extra.iter().map(String::as_str).collect();
    registry_manifest(src, &refs)
}
