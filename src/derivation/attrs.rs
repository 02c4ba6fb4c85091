//! Structured attributes of the running Nix build (`__structuredAttrs = true`):
//! `.attrs.json` in `$NIX_BUILD_TOP` (or the current directory), else `$NIX_ATTRS_JSON_FILE`.

use anyhow::{Context, Result};
use serde_json::Value;
use std::path::PathBuf;

/// The path of the build's `.attrs.json`. The build directory's copy comes first: Nix 2.8
/// sets `NIX_ATTRS_JSON_FILE` to the host-side path even inside the sandbox.
pub fn attrs_file() -> PathBuf {
    let top = std::env::var_os("NIX_BUILD_TOP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let local = top.join(".attrs.json");
    match std::env::var_os("NIX_ATTRS_JSON_FILE") {
        Some(f) if !local.exists() => PathBuf::from(f),
        _ => local,
    }
}

/// Reads the build's attributes.
pub fn load() -> Result<Value> {
    let file = attrs_file();
    let text = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", file.display()))
}

/// The path of output `name` (`outputs.<name>`).
pub fn output(attrs: &Value, name: &str) -> Result<PathBuf> {
    attrs["outputs"][name]
        .as_str()
        .map(PathBuf::from)
        .with_context(|| format!("no output {name:?} in the structured attributes"))
}

/// A string attribute, or `None` if absent or null.
pub fn string(attrs: &Value, key: &str) -> Option<String> {
    attrs.get(key).and_then(Value::as_str).map(str::to_string)
}

/// For a builder that is the helper itself (no shell to hold the log): leaves a child
/// holding the build log open for 50 ms, so the builder exits before the log closes.
/// Unsandboxed, Nix 2.8 kills the builder's process group when its log closes, which
/// can catch a very short builder before it exits (NixOS/nix#2176; holdLog in
/// nix/default.nix does this for shell builders).
pub fn hold_log() {
    // SAFETY: the child only sleeps and exits, both async-signal-safe.
    unsafe {
        if libc::fork() == 0 {
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            };
            libc::nanosleep(&pause, std::ptr::null_mut());
            libc::_exit(0);
        }
    }
}
