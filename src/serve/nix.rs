//! Running `nix-build` on `nixery.nix` for one image (in its own process group, killed
//! when it outlives the build timeout), reading what it built (a manifest and where each
//! blob is, checked against the files, or the packages that do not exist), and naming
//! the derivation that failed from Nix's stderr.

use super::error::ApiError;
use super::names::Image;
use super::storage::Blob;
use crate::image::digest::{Algorithm, Digest};
use crate::image::media::DOCKER_MANIFEST;
use crate::image::oci;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

/// The most of nix-build's stdout and stderr kept (the end of them).
const MAX_OUTPUT: usize = 1 << 20;
/// How long nix-build may take to stop its builders once asked to.
const GRACE: Duration = Duration::from_secs(10);

/// How to build images.
#[derive(Clone, Debug)]
pub struct Builder {
    /// `STORAGE/nix/nixery.nix`.
    pub nix_file: PathBuf,
    /// The package source (`path!DIR`, `nixpkgs!CHANNEL`, `git!URL[!REV]`).
    pub source: String,
    /// This program, given to the Nix code as `stevedoreBin`.
    pub stevedore_bin: PathBuf,
    pub popularity: Option<PathBuf>,
    /// `gzip`, `zstd` or `none`; the Nix code's default when not given.
    pub compress: Option<String>,
    /// `--option NAME VALUE` pairs for nix-build.
    pub options: Vec<(String, String)>,
    pub timeout: Duration,
}

/// What nix-build produced.
#[derive(Debug)]
pub enum Built {
    Image(Manifest),
    NotFound(Vec<String>),
}

/// A manifest to serve and where its blobs are.
#[derive(Debug)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// The config blob first, then the layers, as the manifest lists them.
    pub blobs: Vec<(Digest, Blob)>,
    /// The names of the derivations nix-build built (the rest it had, or substituted),
    /// sorted.
    pub derivations_built: Vec<String>,
}

impl Builder {
    /// nix-build's arguments for `image`, its gc root at `out_link`.
    pub fn args(&self, image: &Image, out_link: &Path) -> Vec<String> {
        let mut args = vec![
            self.nix_file.display().to_string(),
            "--argstr".into(),
            "pkgSource".into(),
            self.source.clone(),
            "--arg".into(),
            "packages".into(),
            nix_list(&image.packages),
            "--argstr".into(),
            "tag".into(),
            image.tag.clone(),
            "--argstr".into(),
            "arch".into(),
            image.arch.oci().into(),
            "--arg".into(),
            "stevedoreBin".into(),
            self.stevedore_bin.display().to_string(),
        ];
        if let Some(p) = &self.popularity {
            args.extend(["--arg".into(), "popularity".into(), p.display().to_string()]);
        }
        if let Some(c) = &self.compress {
            args.extend(["--argstr".into(), "compressor".into(), c.clone()]);
        }
        // An image's layers are independent derivations: build them side by side unless
        // told otherwise (Nix's own default is one job at a time).
        if !self.options.iter().any(|(name, _)| name == "max-jobs") {
            args.extend(["--option".into(), "max-jobs".into(), "auto".into()]);
        }
        for (name, value) in &self.options {
            args.extend(["--option".into(), name.clone(), value.clone()]);
        }
        args.extend(["-o".into(), out_link.display().to_string()]);
        args
    }

    /// Builds `image` and reads the result. Errors are the answers to give.
    pub async fn build(&self, image: &Image, out_link: &Path) -> Result<Built, ApiError> {
        let args = self.args(image, out_link);
        let mut cmd = tokio::process::Command::new("nix-build");
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
        // A server that is killed takes its builds with it: nix-build gets SIGTERM (and
        // stops its builders, which SIGKILL would leave running) when the thread that
        // started it ends, a runtime worker, which lives as long as the server.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ApiError::internal(format!("cannot run nix-build: {e}")))?;
        let pid = child.id();
        let _running = pid.map(Running::new);
        let stdout = tokio::spawn(read_tail(child.stdout.take()));
        let stderr = tokio::spawn(read_tail(child.stderr.take()));
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => status.map_err(|e| ApiError::internal(format!("nix-build: {e}")))?,
            Err(_) => {
                if let Some(pid) = pid {
                    stop_group(pid);
                    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                        signal_group(pid, libc::SIGKILL);
                    }
                }
                let _ = child.wait().await;
                return Err(ApiError::internal(format!(
                    "building {} took longer than {} s: nix-build was stopped",
                    image.display(),
                    self.timeout.as_secs()
                )));
            }
        };
        let output = std::process::Output {
            status,
            stdout: stdout.await.unwrap_or_default(),
            stderr: stderr.await.unwrap_or_default(),
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(ApiError::internal(failure_message(&stderr, &output.status))
                .with_detail(serde_json::json!({ "image": image.display() })));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(path) = stdout.lines().rev().find(|l| l.starts_with('/')) else {
            return Err(ApiError::internal("nix-build printed no output path"));
        };
        let path = PathBuf::from(path.trim());
        let mut built = tokio::task::spawn_blocking(move || read_output(&path))
            .await
            .map_err(|e| ApiError::internal(format!("reading nix-build's output: {e}")))??;
        if let Built::Image(m) = &mut built {
            m.derivations_built = derivations_built(&String::from_utf8_lossy(&output.stderr));
        }
        Ok(built)
    }
}

/// The process groups of the nix-builds under way.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A nix-build under way, forgotten when dropped.
struct Running(u32);

impl Running {
    fn new(pid: u32) -> Running {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        Running(pid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != self.0);
    }
}

/// Asks every nix-build under way to stop (the server is stopping).
pub fn stop_all() {
    let pids: Vec<u32> = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for pid in pids {
        stop_group(pid);
    }
}

/// Waits until no nix-build runs, at most `GRACE`.
pub async fn stopped() {
    let deadline = tokio::time::Instant::now() + GRACE;
    while !RUNNING.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks a nix-build's process group to stop: SIGTERM, on which Nix stops its builders
/// (they run in sessions of their own, out of the group's reach) and exits.
fn stop_group(pid: u32) {
    signal_group(pid, libc::SIGTERM);
}

fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals the group; no memory is involved.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

/// What a pipe gives, the last `MAX_OUTPUT` bytes of it.
async fn read_tail(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * MAX_OUTPUT {
            kept.drain(..kept.len() - MAX_OUTPUT);
        }
    }
    kept
}

/// `[ "a" "b" ]`, each string escaped as Nix reads it.
pub fn nix_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            let mut q = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' | '\\' => {
                        q.push('\\');
                        q.push(c);
                    }
                    '$' => q.push_str("\\$"),
                    '\n' => q.push_str("\\n"),
                    _ => q.push(c),
                }
            }
            q.push('"');
            q
        })
        .collect();
    format!("[ {} ]", quoted.join(" "))
}

/// One line saying why nix-build failed: the derivation whose builder failed when Nix
/// names one, else Nix's first error line.
pub fn failure_message(stderr: &str, status: &std::process::ExitStatus) -> String {
    if let Some(drv) = failed_derivation(stderr) {
        return format!("building {drv} failed");
    }
    let first_error = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string());
    match first_error {
        Some(e) => format!("nix-build failed: {e}"),
        None => format!("nix-build failed ({status})"),
    }
}

/// The derivations Nix says it built (`building '/nix/store/<hash>-<name>.drv'...`), by
/// name, sorted.
pub fn derivations_built(stderr: &str) -> Vec<String> {
    let mut drvs: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("building '"))
        .filter_map(|rest| rest.split_once('\'').map(|(drv, _)| drv))
        .filter(|drv| drv.ends_with(".drv"))
        .collect();
    drvs.sort();
    drvs.dedup();
    let mut names: Vec<String> = drvs
        .iter()
        .map(|drv| {
            let base = drv.rsplit('/').next().unwrap_or(drv);
            let name = base.split_once('-').map_or(base, |(_, name)| name);
            name.strip_suffix(".drv").unwrap_or(name).to_string()
        })
        .collect();
    names.sort();
    names
}

/// The derivation Nix says failed: `builder for '/nix/store/…drv' failed`, `Cannot build
/// '…drv'`, or the first `.drv` an error line names.
pub fn failed_derivation(stderr: &str) -> Option<String> {
    for marker in ["builder for '", "Cannot build '"] {
        if let Some(drv) = stderr.lines().find_map(|l| quoted_drv_after(l, marker)) {
            return Some(drv);
        }
    }
    stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("error:"))
        .find_map(|l| quoted_drv_after(l, "'"))
}

/// The quoted `….drv` path that follows `marker` in `line`.
fn quoted_drv_after(line: &str, marker: &str) -> Option<String> {
    let mut rest = line;
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let end = rest.find('\'')?;
        let candidate = &rest[..end];
        if candidate.starts_with('/') && candidate.ends_with(".drv") {
            return Some(candidate.to_string());
        }
        rest = &rest[end + 1..];
    }
    None
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Output {
    Image {
        manifest: Value,
        #[serde(rename = "layerLocations")]
        layer_locations: HashMap<String, Location>,
    },
    Error {
        error: String,
        #[serde(default)]
        pkgs: Vec<String>,
    },
}

#[derive(Deserialize)]
struct Location {
    size: u64,
    path: PathBuf,
}

/// Reads nix-build's output file: a manifest whose every blob is where `layerLocations`
/// says, with the size it says, or the packages that were not found.
pub fn read_output(path: &Path) -> Result<Built, ApiError> {
    let bad = |why: String| ApiError::internal(format!("{}: {why}", path.display()));
    let text = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let output: Output = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("not the output of nixery.nix: {e}")))?;
    let (manifest, locations) = match output {
        Output::Error { error, pkgs } if error == "not_found" && !pkgs.is_empty() => {
            return Ok(Built::NotFound(pkgs));
        }
        Output::Error { error, .. } => return Err(bad(format!("the Nix code says {error:?}"))),
        Output::Image {
            manifest,
            layer_locations,
        } => (manifest, layer_locations),
    };
    let shape: oci::Manifest = serde_json::from_value(manifest.clone())
        .map_err(|e| bad(format!("malformed manifest: {e}")))?;
    let media_type = shape
        .media_type
        .as_ref()
        .map_or(DOCKER_MANIFEST, |m| m.as_str())
        .to_string();
    let mut blobs = Vec::new();
    for d in std::iter::once(&shape.config).chain(&shape.layers) {
        let digest = d.digest.clone();
        if digest.algorithm() != Algorithm::Sha256 {
            return Err(bad(format!(
                "malformed manifest: {digest} is not a sha256 digest"
            )));
        }
        let loc = locations
            .get(digest.hex())
            .ok_or_else(|| bad(format!("layerLocations has no {digest}")))?;
        if !loc.path.is_absolute() {
            return Err(bad(format!(
                "{digest}: {} is not an absolute path",
                loc.path.display()
            )));
        }
        let actual = std::fs::metadata(&loc.path)
            .map_err(|e| bad(format!("{digest}: {}: {e}", loc.path.display())))?;
        if !actual.is_file() || actual.len() != loc.size || loc.size != d.size {
            return Err(bad(format!(
                "{digest}: {} has {} bytes, the manifest says {} and layerLocations {}",
                loc.path.display(),
                actual.len(),
                d.size,
                loc.size
            )));
        }
        let blob = Blob {
            path: loc.path.clone(),
            size: loc.size,
            pushed: Vec::new(),
        };
        if !blobs.iter().any(|(g, _)| *g == digest) {
            blobs.push((digest, blob));
        }
    }
    let bytes = serde_json::to_vec(&manifest).map_err(|e| bad(e.to_string()))?;
    Ok(Built::Image(Manifest {
        bytes,
        media_type,
        blobs,
        derivations_built: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn the_failing_derivation_is_named() {
        let nix_2_8 = "building '/nix/store/aaa-broken.drv'...\n\
            error: builder for '/nix/store/aaa-broken.drv' failed with exit code 1;\n\
            last 10 log lines:\n> boom\n\
            error: 1 dependencies of derivation '/nix/store/bbb-image.drv' failed to build\n";
        assert_eq!(
            failed_derivation(nix_2_8).as_deref(),
            Some("/nix/store/aaa-broken.drv")
        );
        let newer = "error: Cannot build '/nix/store/ccc-broken.drv'.\n       Reason: builder failed with exit code 1.\n";
        assert_eq!(
            failed_derivation(newer).as_deref(),
            Some("/nix/store/ccc-broken.drv")
        );
        let other = "error: hash mismatch in fixed-output derivation '/nix/store/ddd-src.drv':\n";
        assert_eq!(
            failed_derivation(other).as_deref(),
            Some("/nix/store/ddd-src.drv")
        );
        assert_eq!(derivations_built(nix_2_8), ["broken"]);
        assert_eq!(
            derivations_built(
                "building '/nix/store/bbb-x-1.0.drv'...\nbuilding '/nix/store/aaa-y.json.drv'...\n\
                 building '/nix/store/bbb-x-1.0.drv'...\n"
            ),
            ["x-1.0", "y.json"]
        );
        let status = std::process::ExitStatus::from_raw(1 << 8);
        assert_eq!(
            failure_message("warning: x\nerror: undefined variable 'y'\n", &status),
            "nix-build failed: undefined variable 'y'"
        );
        assert_eq!(
            failure_message(nix_2_8, &status),
            "building /nix/store/aaa-broken.drv failed"
        );
    }

    #[test]
    fn packages_are_passed_as_a_nix_list() {
        assert_eq!(
            nix_list(&["a".into(), "x.y".into(), "q\"$\\".into()]),
            r#"[ "a" "x.y" "q\"\$\\" ]"#
        );
    }

    fn output(dir: &Path, layer_size: u64, said: u64) -> PathBuf {
        let layer = dir.join("layer");
        std::fs::write(&layer, vec![0u8; layer_size as usize]).unwrap();
        let config = dir.join("config");
        std::fs::write(&config, b"{}").unwrap();
        let (l, c) = ("1".repeat(64), "2".repeat(64));
        let json = serde_json::json!({
            "manifest": {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": "c", "digest": format!("sha256:{c}"), "size": 2},
                "layers": [{"mediaType": "l", "digest": format!("sha256:{l}"), "size": said}],
            },
            "layerLocations": {
                l.clone(): {"sha256": l, "md5": "x", "size": said, "path": layer},
                c.clone(): {"sha256": c, "md5": "x", "size": 2, "path": config},
            }
        });
        let out = dir.join("out.json");
        std::fs::write(&out, json.to_string()).unwrap();
        out
    }

    #[test]
    fn the_output_is_checked_against_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let Built::Image(m) = read_output(&output(dir.path(), 5, 5)).unwrap() else {
            panic!("not an image")
        };
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        // Key order is kept: the bytes are the manifest as Nix wrote it.
        assert!(m.bytes.starts_with(br#"{"schemaVersion":2,"mediaType""#));
        let e = read_output(&output(dir.path(), 5, 6)).unwrap_err();
        assert_eq!(e.status, 500);
        assert!(e.message.contains("layer has 5 bytes"), "{}", e.message);
        let nf = dir.path().join("nf.json");
        std::fs::write(&nf, r#"{"error":"not_found","pkgs":["a","b"]}"#).unwrap();
        assert!(matches!(read_output(&nf), Ok(Built::NotFound(p)) if p == ["a", "b"]));
        std::fs::write(&nf, "[").unwrap();
        assert_eq!(read_output(&nf).unwrap_err().status, 500);
    }
}
