//! The image model: a config plus an ordered list of layers; each layer knows its
//! diff_id (when known before writing), size, media type and where its bytes come from.

use crate::tar::pyheader::TarInfo;
use crate::tar::store_layer::StoreLayer;
use serde_json::Value;
use std::path::PathBuf;

/// Media type of an uncompressed Docker layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Where a layer's bytes come from.
pub enum Source {
    /// Store paths, archived while the image is written.
    StorePaths(StoreLayer),
    /// A byte range of a file: a layer inside a base archive, or a prebuilt layer.tar.
    FileRange { path: PathBuf, offset: u64 },
}

/// One layer of an image.
pub struct Layer {
    /// Hex sha256 of the uncompressed tar, when known without producing it.
    pub diff_id: Option<String>,
    pub size: u64,
    pub media_type: &'static str,
    pub source: Source,
    /// The member header in a docker archive; an empty name means `<diff_id>/layer.tar`.
    pub header: TarInfo,
    /// What the history comment lists for this layer.
    pub history: Vec<String>,
}

impl Layer {
    /// The member name in a docker archive, once the diff_id is known.
    pub fn member_name(&self, diff_id: &str) -> Vec<u8> {
        if self.header.name.is_empty() {
            format!("{diff_id}/layer.tar").into_bytes()
        } else {
            self.header.name.clone()
        }
    }
}

/// An image: its layers and what its config is made from.
pub struct Image {
    pub layers: Vec<Layer>,
    /// `created`, already in `isoformat()` form.
    pub created: String,
    pub architecture: Value,
    /// The container config (`config` key), base Env already merged.
    pub config: Value,
    pub repo_tag: String,
    /// mtime of the archive's own members.
    pub mtime: i64,
}
