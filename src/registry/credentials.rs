//! Registry credentials, found where skopeo and docker keep them: `$REGISTRY_AUTH_FILE`
//! (alone, when set), else `$XDG_RUNTIME_DIR/containers/auth.json`, then
//! `~/.docker/config.json`. An auth file's `credHelpers` entry for the registry, or its
//! `credsStore`, names a `docker-credential-<helper>` program asked with `get`; otherwise
//! its `auths` entry holds base64 `user:password`. Secrets never reach a message.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A user name and a password (or token); `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, <secret>)", self.username)
    }
}

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

/// The auth files to look in, first match wins.
pub fn auth_files() -> Vec<PathBuf> {
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return vec![PathBuf::from(f)];
    }
    let mut files = Vec::new();
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(Path::new(&run).join("containers/auth.json"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        files.push(Path::new(&home).join(".docker/config.json"));
    }
    files
}

/// The credentials stored for `registry` (`host[:port]`), if any.
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    for path in auth_files() {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => bail!("{}: cannot read: {e}", path.display()),
        };
        let file: AuthFile = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: not an auth file: {e}", path.display()))?;
        if let Some(found) =
            from_file(&file, registry).with_context(|| path.display().to_string())?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn from_file(file: &AuthFile, registry: &str) -> Result<Option<Credentials>> {
    let keys = keys(registry);
    let helper = keys
        .iter()
        .find_map(|k| file.cred_helpers.get(k))
        .or(file.creds_store.as_ref());
    if let Some(helper) = helper {
        if let Some(found) = from_helper(helper, registry)? {
            return Ok(Some(found));
        }
    }
    let entry = keys.iter().find_map(|k| file.auths.get(k));
    match entry.and_then(|e| e.auth.as_deref()) {
        Some(auth) => decode(auth).map(Some),
        None => Ok(None),
    }
}

/// The keys an auth file may use for `registry`.
fn keys(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ];
    if registry == "docker.io" {
        keys.push("https://index.docker.io/v1/".to_string());
        keys.push("index.docker.io".to_string());
    }
    keys
}

/// Decodes an `auth` value: base64 of `user:password`.
fn decode(auth: &str) -> Result<Credentials> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| anyhow::anyhow!("an auths entry is not base64"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("an auths entry is not UTF-8"))?;
    match text.split_once(':') {
        Some((u, p)) => Ok(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }),
        None => bail!("an auths entry is not user:password"),
    }
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Asks `docker-credential-<helper> get` for `registry`'s credentials; a helper that
/// knows none answers with a failure, which means none.
fn from_helper(helper: &str, registry: &str) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("credential helper {program}: cannot run"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is answered by its status below.
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("credential helper {program}: cannot run"))?;
    if !out.status.success() {
        return Ok(None);
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout)
        .map_err(|_| anyhow::anyhow!("credential helper {program}: unreadable reply"))?;
    Ok(Some(Credentials {
        username: reply.username,
        password: reply.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_entries_and_hides_secrets() {
        let file: AuthFile = serde_json::from_str(
            r#"{"auths": {"https://127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"}}}"#,
        )
        .unwrap();
        let found = from_file(&file, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("user", "pass")
        );
        assert!(!format!("{found:?}").contains("pass"));
        assert_eq!(from_file(&file, "other:5000").unwrap(), None);
    }
}
