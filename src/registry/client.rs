//! An HTTP client for one registry: picks https or http, authenticates as the registry's
//! challenges ask (anonymous, Basic, or Bearer tokens per set of scopes), retries
//! connection errors, 5xx and 429 (honouring `Retry-After`) with backoff, and turns error
//! replies into one-line messages with the registry's error codes. Proxies come from
//! `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (and `NO_PROXY`); like Go's clients it never
//! proxies this machine. Credentials never appear in a message.

use super::auth::{self, Challenge};
use super::credentials::{self, Credentials};
use super::reference::{host_name, is_loopback, Reference};
use super::tls;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

/// The longest error body read into a message.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `Some(false)`: https without checking certificates, else plain http.
    pub tls_verify: Option<bool>,
    /// Credentials given on the command line (else looked up in the auth files).
    pub credentials: Option<Credentials>,
}

/// A request's body: none, or bytes that may be sent again on a retry, or a stream that
/// cannot (its request is made once).
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream(Box<dyn Read + Send + 'a>),
}

/// A client for one registry.
pub struct Client {
    /// `host[:port]`, for messages.
    pub registry: String,
    /// `http://host[:port]` or `https://…`.
    base: String,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    state: Mutex<AuthState>,
    pub retry: Retry,
    /// Why the last ping found no server.
    unreachable: Mutex<Option<String>>,
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by their space-joined scopes.
    tokens: HashMap<String, String>,
}

/// How often and how long to retry.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 5,
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// The wait before attempt `n` (1-based retries): doubling from `first_wait`.
    pub fn wait(&self, n: u32) -> Duration {
        (self.first_wait * 2u32.saturating_pow(n.saturating_sub(1))).min(self.max_wait)
    }
}

/// What went wrong with a request.
#[derive(Debug)]
pub enum Failure {
    /// No answer (connection refused or dropped, timeout, TLS).
    Transport(String),
    /// An answer with an error status, described.
    Status(u16, String, Option<Duration>),
}

impl Failure {
    /// Whether trying again may help.
    pub fn transient(&self) -> bool {
        match self {
            Failure::Transport(_) => true,
            Failure::Status(code, ..) => *code == 429 || (*code >= 500 && *code != 501),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status(_, _, after) => *after,
            Failure::Transport(_) => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(e) => write!(f, "{e}"),
            Failure::Status(_, text, _) => write!(f, "{text}"),
        }
    }
}

impl Client {
    /// A client for `reference`'s registry: https unless the registry is this machine or
    /// `tls_verify` is false (then https without checks is tried first, then http).
    pub fn connect(reference: &Reference, opts: &Options) -> Result<Client> {
        let host = reference.api_host().to_string();
        let credentials = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => credentials::lookup(&reference.registry)?,
        };
        let schemes: &[(&str, bool)] = match (opts.tls_verify, reference.is_local()) {
            (Some(false), _) => &[("https", false), ("http", false)],
            (_, true) => &[("http", true), ("https", true)],
            _ => &[("https", true)],
        };
        let mut last = String::new();
        for (i, &(scheme, verify)) in schemes.iter().enumerate() {
            let client = Client {
                registry: reference.registry.clone(),
                base: format!("{scheme}://{host}"),
                agent: agent(&host, verify)?,
                credentials: credentials.clone(),
                state: Mutex::new(AuthState::default()),
                retry: Retry::default(),
                unreachable: Mutex::new(None),
            };
            // Connection errors are retried on the last scheme tried.
            if client.ping(i + 1 == schemes.len())? {
                return Ok(client);
            }
            last = client
                .unreachable
                .lock()
                .unwrap()
                .take()
                .unwrap_or_default();
        }
        bail!("registry {}: cannot connect: {last}", reference.registry)
    }

    /// `GET /v2/`: any HTTP answer shows the scheme works (`Ok(true)`); a 401 brings the
    /// challenge (an error if it cannot be understood); `Ok(false)`: no connection.
    fn ping(&self, retry: bool) -> Result<bool> {
        let url = self.url("/v2/");
        let mut attempt = 0;
        loop {
            match self.agent.get(&url).call() {
                Ok(_) => return Ok(true),
                Err(ureq::Error::Status(401, resp)) => {
                    self.note_challenge(&resp)?;
                    return Ok(true);
                }
                Err(ureq::Error::Status(..)) => return Ok(true),
                Err(ureq::Error::Transport(t)) => {
                    attempt += 1;
                    if !retry || attempt >= self.retry.attempts {
                        *self.unreachable.lock().unwrap() = Some(t.to_string());
                        return Ok(false);
                    }
                    std::thread::sleep(self.retry.wait(attempt));
                }
            }
        }
    }

    /// An absolute URL for a path of the API (`/v2/…`) or a `Location` the registry gave.
    pub fn url(&self, path: &str) -> String {
        match path.starts_with("http://") || path.starts_with("https://") {
            true => path.to_string(),
            false => format!("{}{path}", self.base),
        }
    }

    /// Sends a request with the authorization `scopes` call for, retrying transient
    /// failures when the body can be sent again. Error statuses that are not transient
    /// come back as responses for the caller to read (404 of a HEAD is an answer).
    pub fn send(
        &self,
        method: &str,
        url: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        mut body: Body,
    ) -> Result<ureq::Response> {
        let mut attempt = 0u32;
        let mut reauthorised = false;
        loop {
            let replay = !matches!(body, Body::Stream(_));
            let this = std::mem::replace(&mut body, Body::Empty);
            let (result, back) = self.once(method, url, scopes, headers, this)?;
            body = back;
            match result {
                Ok(resp) => return Ok(resp),
                Err(Attempt::Unauthorized(resp)) if !reauthorised && replay => {
                    reauthorised = true;
                    self.note_challenge(&resp)?;
                    self.forget_token(scopes);
                }
                Err(Attempt::Unauthorized(resp)) => {
                    bail!(
                        "registry {}: {method} {}: {}",
                        self.registry,
                        path_of(url),
                        self.unauthorized(*resp)
                    )
                }
                Err(Attempt::Failed(f)) => {
                    attempt += 1;
                    if !f.transient() || !replay || attempt >= self.retry.attempts {
                        bail!(
                            "registry {}: {method} {}: {f}{}",
                            self.registry,
                            path_of(url),
                            tries(attempt, f.transient() && replay)
                        );
                    }
                    let wait = f
                        .retry_after()
                        .map(|w| w.min(self.retry.max_wait))
                        .unwrap_or_else(|| self.retry.wait(attempt));
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// One attempt; the body comes back when it can be sent again.
    fn once<'a>(
        &self,
        method: &str,
        url: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        body: Body<'a>,
    ) -> Result<(std::result::Result<ureq::Response, Attempt>, Body<'a>)> {
        let mut req = self.agent.request(method, url);
        if let Some(a) = self.authorization(scopes)? {
            req = req.set("Authorization", &a);
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let (result, back) = match body {
            Body::Empty => (req.call(), Body::Empty),
            Body::Bytes(b) => (req.send_bytes(b), Body::Bytes(b)),
            Body::Stream(r) => (req.send(r), Body::Empty),
        };
        let result = match result {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(401, resp)) => Err(Attempt::Unauthorized(Box::new(resp))),
            Err(ureq::Error::Status(code, resp)) if code == 429 || code >= 500 => {
                let after = retry_after(&resp);
                Err(Attempt::Failed(Failure::Status(
                    code,
                    describe(code, resp),
                    after,
                )))
            }
            Err(ureq::Error::Status(_, resp)) => Ok(resp),
            Err(ureq::Error::Transport(t)) => {
                Err(Attempt::Failed(Failure::Transport(t.to_string())))
            }
        };
        Ok((result, back))
    }

    /// The `Authorization` header for `scopes`, fetching a token when the registry wants
    /// bearer tokens.
    fn authorization(&self, scopes: &[String]) -> Result<Option<String>> {
        let challenge = self.state.lock().unwrap().challenge.clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials.as_ref().map(auth::basic)),
            Some(Challenge::Bearer { realm, service }) => {
                let key = scopes.join(" ");
                if let Some(t) = self.state.lock().unwrap().tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scopes)?;
                self.state.lock().unwrap().tokens.insert(key, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn fetch_token(&self, realm: &str, service: Option<&str>, scopes: &[String]) -> Result<String> {
        let url = auth::token_url(realm, service, scopes);
        let mut attempt = 0;
        loop {
            let mut req = self.agent.get(&url);
            if let Some(c) = &self.credentials {
                req = req.set("Authorization", &auth::basic(c));
            }
            match req.call() {
                Ok(resp) => {
                    let mut body = Vec::new();
                    resp.into_reader()
                        .take(MAX_ERROR_BODY)
                        .read_to_end(&mut body)
                        .with_context(|| {
                            format!("registry {}: token server {realm}", self.registry)
                        })?;
                    return auth::parse_token(&body).with_context(|| {
                        format!("registry {}: token server {realm}", self.registry)
                    });
                }
                Err(ureq::Error::Status(code @ (401 | 403), _)) => bail!(
                    "registry {}: the token server {realm} refused {} ({code})",
                    self.registry,
                    self.who()
                ),
                Err(ureq::Error::Status(code, resp)) if code != 429 && code < 500 => bail!(
                    "registry {}: token server {realm}: {}",
                    self.registry,
                    describe(code, resp)
                ),
                Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::InvalidUrl => {
                    bail!("registry {}: token server {realm:?}: {t}", self.registry)
                }
                Err(e) => {
                    attempt += 1;
                    if attempt >= self.retry.attempts {
                        bail!("registry {}: token server {realm}: {e}", self.registry);
                    }
                    std::thread::sleep(self.retry.wait(attempt));
                }
            }
        }
    }

    fn note_challenge(&self, resp: &ureq::Response) -> Result<()> {
        let header = resp
            .header("www-authenticate")
            .with_context(|| format!("registry {}: 401 without a challenge", self.registry))?;
        let challenge =
            Challenge::parse(header).with_context(|| format!("registry {}", self.registry))?;
        self.state.lock().unwrap().challenge = Some(challenge);
        Ok(())
    }

    fn forget_token(&self, scopes: &[String]) {
        self.state.lock().unwrap().tokens.remove(&scopes.join(" "));
    }

    /// Why a request stayed unauthorised, without any secret.
    fn unauthorized(&self, resp: ureq::Response) -> String {
        let detail = describe(401, resp);
        match self.credentials {
            None => format!(
                "{detail}: the registry wants credentials and none were found (looked in {})",
                files()
            ),
            Some(_) => format!("{detail}: the registry refused {}", self.who()),
        }
    }

    fn who(&self) -> String {
        match &self.credentials {
            Some(c) => format!("the credentials of user {:?}", c.username),
            None => "anonymous access".to_string(),
        }
    }
}

enum Attempt {
    Unauthorized(Box<ureq::Response>),
    Failed(Failure),
}

fn files() -> String {
    credentials::auth_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn tries(attempts: u32, retried: bool) -> String {
    match retried && attempts > 1 {
        true => format!(" (after {attempts} attempts)"),
        false => String::new(),
    }
}

/// The path and query of a URL, for messages.
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// A `Retry-After` given in seconds.
fn retry_after(resp: &ureq::Response) -> Option<Duration> {
    let secs: u64 = resp.header("retry-after")?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// An error reply in one line: the status and the registry's error codes and messages.
pub fn describe(code: u16, resp: ureq::Response) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Error>,
    }
    #[derive(serde::Deserialize)]
    struct Error {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let mut body = Vec::new();
    let _ = resp
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    let parts = match serde_json::from_slice::<Errors>(&body) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::new(),
    };
    match parts.is_empty() {
        true => format!("{code}"),
        false => format!("{code} {parts}"),
    }
}

/// An agent for `host`: a proxy from the environment unless `host` is this machine or
/// in `NO_PROXY`; certificates checked or not; redirects followed, authorization kept
/// only on the same host.
fn agent(host: &str, verify: bool) -> Result<ureq::Agent> {
    let mut builder = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .timeout_write(Duration::from_secs(120))
        .redirects(5)
        .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
        .user_agent(concat!("stevedore/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections_per_host(8);
    if let Some(proxy) = proxy_for(host) {
        let p = ureq::Proxy::new(&proxy).map_err(|e| anyhow!("proxy {}: {e}", redact(&proxy)))?;
        builder = builder.proxy(p);
    }
    if !verify {
        builder = builder.tls_config(tls::unchecked());
    }
    Ok(builder.build())
}

/// The proxy the environment names for `host`, if it is to be used.
fn proxy_for(host: &str) -> Option<String> {
    let name = host_name(host);
    if is_loopback(name) {
        return None;
    }
    let var = |k: &str| {
        std::env::var(k)
            .or_else(|_| std::env::var(k.to_ascii_lowercase()))
            .ok()
            .filter(|v| !v.is_empty())
    };
    if let Some(no) = var("NO_PROXY") {
        let skip = no.split(',').map(str::trim).any(|n| {
            n == "*"
                || (!n.is_empty()
                    && (name == n.trim_start_matches('.')
                        || name.ends_with(&format!(".{}", n.trim_start_matches('.')))))
        });
        if skip {
            return None;
        }
    }
    var("HTTPS_PROXY")
        .or_else(|| var("HTTP_PROXY"))
        .or_else(|| var("ALL_PROXY"))
}

/// A proxy URL without its password.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…@{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_paths_not_hosts_and_hide_proxy_passwords() {
        assert_eq!(path_of("http://h:5/v2/a/blobs/x?y=1"), "/v2/a/blobs/x?y=1");
        assert_eq!(redact("http://u:secret@proxy:3128"), "http://…@proxy:3128");
        assert_eq!(proxy_for("127.0.0.1:5000"), None);
        let r = Retry::default();
        assert_eq!(r.wait(1), Duration::from_millis(500));
        assert_eq!(r.wait(3), Duration::from_secs(2));
        assert_eq!(r.wait(30), Duration::from_secs(30));
    }
}
