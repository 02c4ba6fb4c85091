//! Writing outputs safely: a file appears at its path only when complete (written to a
//! temporary name beside it, then renamed), and the customisation layer's pair of
//! files, `layer.tar` and `checksum`.

use super::hashing::HashingWriter;
use crate::tar::gnu;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Runs `write` on a temporary file next to `path` and renames it into place only if
/// it succeeds, so no partial output is ever left at `path`.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = temp_file_in(dir)?;
    write(tmp.as_file()).with_context(|| format!("{}", path.display()))?;
    keep_as(tmp, path)
}

/// Writes `bytes` to `path` atomically (see [`write_atomically`]).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |mut f| f.write_all(bytes).context("cannot write"))
}

/// A temporary file in `dir` (`.stevedore-…`), removed unless kept.
pub fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".stevedore-")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a temporary file", dir.display()))
}

/// Renames a finished temporary file to `path`, readable by all.
pub fn keep_as(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    // The error would keep the temporary file alive (main exits without dropping it).
    let file = tmp
        .persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("{}: cannot rename into place", path.display()))?;
    let mut perms = file.metadata()?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    file.set_permissions(perms)?;
    Ok(())
}

/// Archives `dir` as nixpkgs' customisation layer: `output/layer.tar` (GNU tar format)
/// and its sha256 in `output/checksum`.
pub fn customisation_layer(dir: &Path, output: &Path, opts: &gnu::GnuOptions) -> Result<()> {
    std::fs::create_dir_all(output)
        .with_context(|| format!("{}: cannot create", output.display()))?;
    let tar = output.join("layer.tar");
    let mut digest = String::new();
    write_atomically(&tar, |file| {
        let mut w = HashingWriter::new(std::io::BufWriter::new(file));
        gnu::write_dir(dir, opts, &mut w)?;
        let (d, mut inner) = w.finish();
        inner.flush()?;
        digest = d;
        Ok(())
    })?;
    let checksum = output.join("checksum");
    std::fs::write(&checksum, format!("{digest}\n"))
        .with_context(|| format!("{}: cannot write", checksum.display()))
}
