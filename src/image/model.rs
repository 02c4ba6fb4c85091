//! The image model every reader produces and every writer takes: an image is its config
//! (bytes, or nixpkgs' streamer config rendered once the diff_ids are known), its
//! layers in order and its platform; a layer knows its diff_id when it is known without
//! reading it, its compressed blob when there is one, and where its bytes come from.

use super::compress::{Codec, Compression};
use super::descriptor::{Descriptor, Platform};
use super::digest::Digest;
use super::{config, pyjson};
use crate::tar::pyheader::TarInfo;
use crate::tar::store_layer::StoreLayer;
use serde_json::Value;
use std::path::PathBuf;

/// Where a layer's bytes come from.
pub enum Source {
    /// Store paths, archived while the image is written.
    StorePaths(StoreLayer),
    /// `len` bytes of a file from `offset` (a prebuilt layer.tar, a member of an archive,
    /// a blob of an OCI layout), stored compressed with `codec` (or not).
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        codec: Codec,
    },
}

impl Source {
    /// How many bytes the source holds, as stored.
    pub fn stored_len(&self) -> u64 {
        match self {
            Source::StorePaths(s) => s.size,
            Source::File { len, .. } => *len,
        }
    }

    /// The codec the stored bytes use.
    pub fn codec(&self) -> Codec {
        match self {
            Source::StorePaths(_) => Codec::None,
            Source::File { codec, .. } => *codec,
        }
    }
}

/// A layer's compressed form: its descriptor, and how it was made when it was made here.
#[derive(Clone, Debug)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub compression: Option<Compression>,
}

/// One layer of an image.
pub struct Layer {
    /// The sha256 of the uncompressed tar, when known without producing it.
    pub diff_id: Option<Digest>,
    /// The compressed blob, when one exists already (the source stores it compressed).
    pub blob: Option<Blob>,
    pub source: Source,
    /// What the layer is, for messages (its store paths, or where it was read).
    pub what: String,
}

/// nixpkgs' streamer config (`json.dumps(indent=4)` of created, architecture, os,
/// config, rootfs, history), which depends on the diff_ids.
pub struct StreamerConfig {
    /// `created`, in `isoformat()` form.
    pub created: String,
    pub architecture: Value,
    /// The container config (`config` key), base Env already merged.
    pub config: Value,
    /// What each layer's history comment lists.
    pub history: Vec<Vec<String>>,
}

/// An image's config.
pub enum Config {
    /// The bytes, as read.
    Bytes(Vec<u8>),
    /// Rendered from the diff_ids.
    Streamer(StreamerConfig),
}

impl Config {
    /// The config's bytes for these diff_ids (layer order).
    pub fn render(&self, diff_ids: &[Digest]) -> Vec<u8> {
        match self {
            Config::Bytes(b) => b.clone(),
            Config::Streamer(s) => config::streamer_config(s, diff_ids),
        }
    }
}

/// How a docker-archive writer stores each layer as nixpkgs' streamer does: the member
/// header a layer had in a base archive, or `gettarinfo` of a prebuilt layer.tar; by
/// default `<diff_id>/layer.tar`, mode 0644, owned by 0:0.
#[derive(Default)]
pub struct ArchiveLayout {
    /// mtime of the archive's own members.
    pub mtime: i64,
    /// One per layer.
    pub headers: Vec<Option<TarInfo>>,
}

/// An image.
pub struct Image {
    pub config: Config,
    pub layers: Vec<Layer>,
    pub platform: Platform,
    /// Names (`name:tag`) the image is known by.
    pub repo_tags: Vec<String>,
    pub archive: ArchiveLayout,
}

impl Image {
    /// The docker-archive member header of layer `i`, once its diff_id is known.
    pub fn member_header(&self, i: usize, diff_id: &Digest) -> TarInfo {
        let size = self.layers[i].source.stored_len();
        let mut info = match self.archive.headers.get(i) {
            Some(Some(h)) => h.clone(),
            _ => TarInfo::file(b"", size, self.archive.mtime),
        };
        if info.name.is_empty() {
            info.name = format!("{}/layer.tar", diff_id.hex()).into_bytes();
        }
        info.size = size;
        info
    }
}

/// Python's `repr()` of a history list, as the streamer's comments show it.
pub fn history_comment(paths: &[String]) -> String {
    format!("store paths: {}", pyjson::repr_list(paths))
}
