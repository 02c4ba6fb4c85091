//! What earlier pushes learned, under `$XDG_CACHE_HOME/stevedore` (else
//! `~/.cache/stevedore`), safe to delete at any time:
//! - `blobs/<diff_id hex>/<codec>-<level>`: the compressed blob's digest and size for a
//!   layer, so that a push of an unchanged layer asks the registry about it without
//!   reading (or compressing) a byte of it;
//! - `pushed/<registry>/<blob digest hex>`: repositories of that registry the blob was
//!   pushed to or found in, to mount it from instead of uploading it again.
//!
//! Entries are written to a temporary name and renamed; an unreadable entry counts as
//! absent.

use crate::image::compress::{Codec, Compression};
use crate::image::digest::Digest;
use crate::image::output::write_bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A blob's digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    pub digest: Digest,
    pub size: u64,
}

/// The cache directory, or none when no place is known (then nothing is cached).
pub struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    /// The user's cache.
    pub fn user() -> Cache {
        let dir = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .map(|d| d.join("stevedore"));
        Cache { dir }
    }

    fn blob_entry(&self, diff_id: &Digest, c: Compression) -> Option<PathBuf> {
        let codec = match c.codec {
            Codec::None => return None,
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        };
        let name = format!("{codec}-{}", c.level);
        Some(
            self.dir
                .as_ref()?
                .join("blobs")
                .join(diff_id.hex())
                .join(name),
        )
    }

    /// The compressed blob of the layer `diff_id` with `c`, if a push recorded it.
    pub fn blob(&self, diff_id: &Digest, c: Compression) -> Option<Known> {
        let bytes = std::fs::read(self.blob_entry(diff_id, c)?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records the compressed blob of the layer `diff_id` with `c`.
    pub fn put_blob(&self, diff_id: &Digest, c: Compression, known: &Known) {
        if let Some(path) = self.blob_entry(diff_id, c) {
            if let Ok(bytes) = serde_json::to_vec(known) {
                write(&path, &bytes);
            }
        }
    }

    fn repos_entry(&self, registry: &str, digest: &Digest) -> Option<PathBuf> {
        let registry: String = registry
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(
            self.dir
                .as_ref()?
                .join("pushed")
                .join(registry)
                .join(digest.hex()),
        )
    }

    /// Repositories of `registry` known to hold the blob.
    pub fn repositories(&self, registry: &str, digest: &Digest) -> Vec<String> {
        let Some(path) = self.repos_entry(registry, digest) else {
            return Vec::new();
        };
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Records that `repository` of `registry` holds the blob.
    pub fn put_repository(&self, registry: &str, digest: &Digest, repository: &str) {
        let mut repos = self.repositories(registry, digest);
        if repos.iter().any(|r| r == repository) {
            return;
        }
        repos.push(repository.to_string());
        if let Some(path) = self.repos_entry(registry, digest) {
            write(&path, (repos.join("\n") + "\n").as_bytes());
        }
    }
}

/// Writes a cache entry; a cache that cannot be written is only slower next time.
fn write(path: &Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = write_bytes(path, bytes);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_blobs_and_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache {
            dir: Some(dir.path().to_path_buf()),
        };
        let id = Digest::of(b"layer");
        let known = Known {
            digest: Digest::of(b"blob"),
            size: 4,
        };
        let gzip = Compression::GZIP;
        assert_eq!(cache.blob(&id, gzip), None);
        cache.put_blob(&id, gzip, &known);
        assert_eq!(cache.blob(&id, gzip), Some(known.clone()));
        assert_eq!(cache.blob(&id, Compression::parse("gzip:9").unwrap()), None);
        cache.put_repository("127.0.0.1:5000", &known.digest, "a/b");
        cache.put_repository("127.0.0.1:5000", &known.digest, "a/b");
        cache.put_repository("127.0.0.1:5000", &known.digest, "c");
        assert_eq!(
            cache.repositories("127.0.0.1:5000", &known.digest),
            ["a/b", "c"]
        );
        assert!(cache.repositories("other", &known.digest).is_empty());
    }
}
