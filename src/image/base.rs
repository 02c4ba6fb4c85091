//! Reading a base image (`fromImage`, or the image `exportImage` and `runAsRoot`
//! unpack): one image of a docker archive, plain or compressed with gzip or zstd; the
//! first one, as nixpkgs' streamer takes `manifest[0]`, unless a tag is asked for. Its
//! layers are copied with their original member headers and their diff_ids from its
//! config.

use super::docker_archive::Archive;
use super::model::Image;
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::Path;

/// A loaded base image.
pub struct BaseImage {
    /// The image: its config's bytes, its layers (members of the archive) and their
    /// member headers (`archive.headers`, each named as the manifest names it).
    pub image: Image,
    /// The container config (`config` key of its image config), `null` if none.
    pub config: Value,
    /// Keeps a decompressed copy alive while the layers are read.
    archive: Archive,
}

/// Opens the archive at `path` (decompressing it to a temporary file if needed) and
/// reads its first image.
pub fn load(path: &Path) -> Result<BaseImage> {
    load_tagged(path, None)
}

/// As [`load`], choosing the image whose RepoTags hold `repo_tag` when one is given.
/// Errors name the archive (and the member, where one is at fault).
pub fn load_tagged(path: &Path, repo_tag: Option<&str>) -> Result<BaseImage> {
    read(path, repo_tag).with_context(|| format!("base image {}", path.display()))
}

fn read(path: &Path, repo_tag: Option<&str>) -> Result<BaseImage> {
    let archive = Archive::open(path)?;
    let entry = archive.entry(repo_tag)?;
    let config = archive.config(&entry)?;
    let container = config.container.clone();
    let image = archive.image(&entry, config)?;
    Ok(BaseImage {
        image,
        config: container,
        archive,
    })
}

impl BaseImage {
    /// The temporary decompressed copy, if any, to keep while the layers are read.
    pub fn into_spill(self) -> Option<tempfile::NamedTempFile> {
        self.archive.into_spill()
    }
}
