//! Joining content directories as nixpkgs' `symlinkJoin` does (`lndir -silent` per
//! path, in order): directories are created and merged, everything else becomes a
//! symlink to the source file, and a source symlink is copied as a symlink with the
//! same target. The first path to provide a name wins. Like lndir, names ending in `~`
//! and directories named RCS, SCCS, CVS, CVS.adm, .svn, .git, .hg or BitKeeper are skipped.
//!
//! One difference: lndir follows a symlink to a directory only while the directory's
//! link count says more subdirectories remain (so it depends on readdir order); here a
//! symlink is always copied as a symlink, which is deterministic.

use anyhow::{bail, Context, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const SKIPPED_DIRS: &[&str] = &[
    "RCS",
    "SCCS",
    "CVS",
    "CVS.adm",
    ".svn",
    ".git",
    ".hg",
    "BitKeeper",
];

/// Joins `sources` into `out` (created if missing).
pub fn symlink_join(out: &Path, sources: &[&Path]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    for src in sources {
        let meta =
            std::fs::metadata(src).with_context(|| format!("{}: cannot stat", src.display()))?;
        if !meta.is_dir() {
            bail!(
                "{}: not a directory (symlinkJoin takes directories)",
                src.display()
            );
        }
        join_dir(src, out)?;
    }
    Ok(())
}

fn join_dir(src: &Path, dst: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .with_context(|| format!("{}: cannot read directory", src.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{}: cannot read directory", src.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.as_bytes().ends_with(b"~") {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if SKIPPED_DIRS.iter().any(|d| d.as_bytes() == name.as_bytes()) {
                continue;
            }
            match std::fs::symlink_metadata(&to) {
                Err(_) => std::fs::create_dir(&to)
                    .with_context(|| format!("{}: cannot create", to.display()))?,
                Ok(m) if m.is_dir() => {}
                Ok(_) => continue,
            }
            join_dir(&from, &to)?;
        } else if std::fs::symlink_metadata(&to).is_err() {
            let target = if ft.is_symlink() {
                std::fs::read_link(&from)?
            } else {
                from.clone()
            };
            std::os::unix::fs::symlink(&target, &to)
                .with_context(|| format!("{}: cannot create symlink", to.display()))?;
        }
    }
    Ok(())
}
