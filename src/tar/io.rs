//! Copying file contents into archives: exact lengths, block padding, clear errors.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Writes `n` NUL bytes.
pub fn write_zeros(out: &mut dyn Write, mut n: u64) -> Result<u64> {
    let zeros = [0u8; 4096];
    let total = n;
    while n > 0 {
        let k = n.min(zeros.len() as u64) as usize;
        out.write_all(&zeros[..k]).context("cannot write layer")?;
        n -= k as u64;
    }
    Ok(total)
}

/// Copies exactly `size` bytes of `path` (no padding).
pub fn copy_file(path: &Path, size: u64, out: &mut dyn Write, buf: &mut Vec<u8>) -> Result<u64> {
    let mut file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let chunk = (size as usize).clamp(1, 1 << 20);
    if buf.len() < chunk {
        buf.resize(chunk, 0);
    }
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let got = file
            .read(&mut buf[..want])
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if got == 0 {
            bail!("{}: file shrank while being archived", path.display());
        }
        out.write_all(&buf[..got]).context("cannot write layer")?;
        left -= got as u64;
    }
    Ok(size)
}

/// Copies `size` bytes of `path` starting at `offset` (no padding).
pub fn copy_range(
    path: &Path,
    offset: u64,
    size: u64,
    out: &mut dyn Write,
    buf: &mut [u8],
) -> Result<()> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut left = size;
    let mut at = offset;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let got = file
            .read_at(&mut buf[..want], at)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if got == 0 {
            bail!("{}: ends before the member does", path.display());
        }
        out.write_all(&buf[..got]).context("cannot write output")?;
        left -= got as u64;
        at += got as u64;
    }
    Ok(())
}
