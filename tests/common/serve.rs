//! A `stevedore serve` of the test's own on 127.0.0.1 (any free port, read from its
//! start-up line), its stderr in a file the test reads; stopped (SIGTERM, then SIGKILL)
//! when dropped. Every wait is bounded.
//!
//! It serves the package set tests/nixery-pkgs through the nixery.nix built in, with a
//! salt of its own in NIXERY_PKGS_SALT (see the set's header): its packages and layers
//! are built for it, shared with no other test, and its builders carry `salt=<salt>` in
//! their environment.

use super::registry::{http, HttpResponse};
use super::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The package source every server is given.
pub fn packages() -> String {
    format!("path!{}", root().join("tests/nixery-pkgs").display())
}

/// A salt no other server, test or run has.
pub fn unique_salt() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "serve-{}-{nanos}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::SeqCst)
    )
}

pub struct Serve {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
    pub storage: PathBuf,
    /// Its NIXERY_PKGS_SALT.
    pub salt: String,
}

impl Serve {
    /// Starts a server keeping its files in `storage`, with a salt of its own and `extra`
    /// arguments.
    pub fn start(storage: &Path, extra: &[&str]) -> Serve {
        Serve::start_with(storage, &unique_salt(), &[], extra)
    }

    /// Starts a server with the salt `salt` and more environment variables `env`.
    pub fn start_with(storage: &Path, salt: &str, env: &[(&str, &str)], extra: &[&str]) -> Serve {
        std::fs::create_dir_all(storage).unwrap();
        let log = tempfile::Builder::new()
            .prefix("serve-log")
            .tempfile()
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        let mut cmd = stevedore();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--storage"])
            .arg(storage)
            .args(["--pkgs", &packages()])
            .env("NIXERY_PKGS_SALT", salt)
            .envs(env.iter().copied());
        for option in NIX_OPTIONS.chunks(3) {
            cmd.args(["--nix-option", option[1], option[2]]);
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("stevedore serve");
        let mut serve = Serve {
            child: Some(child),
            addr: String::new(),
            log,
            storage: storage.to_path_buf(),
            salt: salt.to_string(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = serve.log();
            if let Some(rest) = text.split("listening on http://").nth(1) {
                serve.addr = rest.split([',', ' ', '\n']).next().unwrap().to_string();
                return serve;
            }
            let exited = serve.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                panic!("stevedore serve did not start: {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Lines of the log holding `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// One request to the server.
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http(&self.addr, method, target, headers, None)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}; log: {}", self.log()))
    }

    pub fn get(&self, target: &str) -> HttpResponse {
        self.request("GET", target, &[])
    }

    /// Waits until the log has a line holding `needle`.
    pub fn wait_for(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count(needle) == 0 {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log after {limit:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (SIGKILL after 10 s); its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate().expect("a running server")
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.terminate();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The registry error of a response: (code, message).
pub fn registry_error(r: &HttpResponse) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&r.body)));
    let e = &v["errors"][0];
    (
        e["code"].as_str().unwrap_or_default().to_string(),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}
