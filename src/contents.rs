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

/// buildImage's `copyToRoot`: each item's contents copied into `dest` in order, as
/// `rsync -a{k|K} item/ dest/` does: permissions kept, symlinks kept as symlinks, except
/// that (without `keep_dirlinks`, rsync `-k`) a symlink to a directory is copied as that
/// directory; later items replace earlier files. Directories get their source mode once
/// everything is copied.
pub fn copy_to_root(dest: &Path, items: &[&Path], keep_dirlinks: bool) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("{}: cannot create", dest.display()))?;
    let mut modes = Vec::new();
    for item in items {
        let meta =
            std::fs::metadata(item).with_context(|| format!("{}: cannot stat", item.display()))?;
        if !meta.is_dir() {
            bail!(
                "{}: not a directory (copyToRoot copies a directory's contents)",
                item.display()
            );
        }
        copy_dir(item, dest, keep_dirlinks, &mut modes)?;
        modes.push((
            dest.to_path_buf(),
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()),
        ));
    }
    for (dir, mode) in modes.into_iter().rev() {
        std::fs::set_permissions(
            &dir,
            std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
        )
        .with_context(|| format!("{}: cannot set mode", dir.display()))?;
    }
    Ok(())
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    keep_dirlinks: bool,
    modes: &mut Vec<(std::path::PathBuf, u32)>,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .with_context(|| format!("{}: cannot read directory", src.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let lmeta = std::fs::symlink_metadata(&from)?;
        let is_dir =
            lmeta.is_dir() || (lmeta.file_type().is_symlink() && !keep_dirlinks && from.is_dir());
        let existing = std::fs::symlink_metadata(&to).ok();
        if is_dir {
            let dest_is_dir = existing.as_ref().is_some_and(|m| {
                m.is_dir() || (keep_dirlinks && m.file_type().is_symlink() && to.is_dir())
            });
            if !dest_is_dir {
                if existing.is_some() {
                    std::fs::remove_file(&to)
                        .with_context(|| format!("{}: cannot replace", to.display()))?;
                }
                std::fs::create_dir(&to)
                    .with_context(|| format!("{}: cannot create", to.display()))?;
            }
            let mode = std::fs::metadata(&from)?.permissions().mode();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
            copy_dir(&from, &to, keep_dirlinks, modes)?;
            modes.push((to, mode));
            continue;
        }
        if let Some(m) = existing {
            if m.is_dir() {
                std::fs::remove_dir_all(&to)?;
            } else {
                std::fs::remove_file(&to)?;
            }
        }
        if lmeta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)
                .with_context(|| format!("{}: cannot create symlink", to.display()))?;
        } else {
            std::fs::copy(&from, &to)
                .with_context(|| format!("{}: cannot copy to {}", from.display(), to.display()))?;
            std::fs::set_permissions(
                &to,
                std::fs::Permissions::from_mode(lmeta.permissions().mode() & 0o7777),
            )?;
        }
    }
    Ok(())
}
