//! What the server keeps under `--storage DIR`, every file written atomically and only
//! after a whole build succeeded, the tag's record last, so that a killed build or server
//! leaves nothing a later request would serve:
//! - `nix/`: the Nix files the server runs (written at start-up);
//! - `roots/<key>`: nix-build's gc roots, which keep each image's layers alive;
//! - `blobs/sha256/<hex>`: where a layer or config blob is (`{"path", "size", "pushed"}`);
//! - `manifests/sha256/<hex>`: manifest bytes by their digest (containerd fetches them so);
//! - `manifests/<key>.json`: an image's record: what was asked for and its manifest digest.
//!
//! `<key>` is the sha256 of everything that decides an image (the cache key).

use crate::image::digest::Digest;
use crate::image::output::write_bytes;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Everything that decides what an image is: the cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub source: String,
    pub packages: Vec<String>,
    pub tag: String,
    pub arch: String,
    /// The layers' compression, as `nixery.nix` is asked for it.
    pub compress: String,
    /// The sha256 of the popularity file, if one is given.
    pub popularity: Option<String>,
}

impl Key {
    /// A file name for the key: the hex sha256 of its JSON.
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).expect("JSON of strings");
        Digest::of(&json).hex().to_string()
    }
}

/// An image built and stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Key,
    /// The name it was first asked for by (`shell/hello`).
    pub name: String,
    /// `sha256:…` of the manifest bytes.
    pub digest: String,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Unix time of the build.
    pub built: u64,
}

/// Where a blob's bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub path: PathBuf,
    pub size: u64,
    /// `docker://HOST/REPO` registries the blob was pushed to.
    #[serde(default)]
    pub pushed: Vec<String>,
}

/// The storage directory.
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Opens (creating) the directory and removes temporary files a killed process left.
    pub fn open(root: &Path) -> Result<Storage> {
        let root = std::path::absolute(root)
            .with_context(|| format!("{}: cannot resolve", root.display()))?;
        let s = Storage { root };
        for dir in s.dirs() {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            remove_temporary(&dir)?;
        }
        Ok(s)
    }

    fn dirs(&self) -> [PathBuf; 5] {
        [
            self.root.join("nix"),
            self.root.join("roots"),
            self.root.join("blobs/sha256"),
            self.root.join("manifests/sha256"),
            self.root.join("manifests"),
        ]
    }

    /// The storage directory, absolute.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes the Nix files (`(relative name, text)`) under `nix/`; returns the directory.
    pub fn write_nix_files(&self, files: &[(&str, &str)]) -> Result<PathBuf> {
        let dir = self.root.join("nix");
        for (name, text) in files {
            let path = dir.join(name);
            if std::fs::read(&path).ok().as_deref() == Some(text.as_bytes()) {
                continue;
            }
            write_bytes(&path, text.as_bytes())?;
        }
        Ok(dir)
    }

    /// The gc root nix-build writes for a key.
    pub fn gc_root(&self, id: &str) -> PathBuf {
        self.root.join("roots").join(id)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn manifest_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("manifests/sha256").join(digest.hex())
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root.join("manifests").join(format!("{id}.json"))
    }

    /// Stores a built image: its blobs' locations, the manifest bytes, then its record.
    pub fn save(&self, record: &Record, manifest: &[u8], blobs: &[(Digest, Blob)]) -> Result<()> {
        for (digest, blob) in blobs {
            let text = serde_json::to_vec(blob)?;
            write_bytes(&self.blob_path(digest), &text)?;
        }
        let digest = Digest::of(manifest);
        write_bytes(&self.manifest_path(&digest), manifest)?;
        let text = serde_json::to_vec_pretty(record)?;
        write_bytes(&self.record_path(&record.key.id()), &text)
    }

    /// Every stored image (with its manifest bytes) and blob. A record whose manifest is
    /// missing or does not match its digest is left out, and said so on stderr.
    pub fn load(&self) -> Result<Loaded> {
        let mut loaded = Loaded::default();
        let dir = self.root.join("manifests");
        for entry in read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match self.load_record(&path) {
                Ok((record, bytes)) => {
                    loaded.images.insert(record.key.id(), (record, bytes));
                }
                Err(e) => crate::log::note(&format!("serve: skipped {}: {e:#}", path.display())),
            }
        }
        for entry in read_dir(&self.root.join("blobs/sha256"))? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let Ok(digest) = Digest::sha256(&name) else {
                continue;
            };
            let parsed = std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|t| Ok(serde_json::from_slice::<Blob>(&t)?));
            match parsed {
                Ok(blob) => {
                    loaded.blobs.insert(digest, blob);
                }
                Err(e) => crate::log::note(&format!("serve: skipped {}: {e:#}", path.display())),
            }
        }
        Ok(loaded)
    }

    fn load_record(&self, path: &Path) -> Result<(Record, Vec<u8>)> {
        let text = std::fs::read(path).context("cannot read")?;
        let record: Record = serde_json::from_slice(&text).context("not a record")?;
        if format!("{}.json", record.key.id())
            != path.file_name().unwrap_or_default().to_string_lossy()
        {
            bail!("its key does not hash to its name");
        }
        let digest = Digest::parse(&record.digest)?;
        let bytes = std::fs::read(self.manifest_path(&digest))
            .with_context(|| format!("manifest {digest}: cannot read"))?;
        if Digest::of(&bytes) != digest {
            bail!(
                "manifest {digest}: its bytes hash to {}",
                Digest::of(&bytes)
            );
        }
        Ok((record, bytes))
    }
}

/// What `Storage::load` found.
#[derive(Default)]
pub struct Loaded {
    /// By key id: the record and the manifest bytes.
    pub images: HashMap<String, (Record, Vec<u8>)>,
    pub blobs: HashMap<Digest, Blob>,
}

fn read_dir(dir: &Path) -> Result<std::fs::ReadDir> {
    std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))
}

/// Removes `.stevedore-*` files (half-written by a process that was killed).
fn remove_temporary(dir: &Path) -> Result<()> {
    for entry in read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".stevedore-")
        {
            let path = entry.path();
            std::fs::remove_file(&path)
                .with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: &str) -> Key {
        Key {
            source: "path!/x".into(),
            packages: vec!["a".into(), "b".into()],
            tag: tag.into(),
            arch: "amd64".into(),
            compress: "gzip".into(),
            popularity: None,
        }
    }

    #[test]
    fn a_saved_image_is_loaded_back_and_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let manifest = br#"{"schemaVersion":2}"#;
        let digest = Digest::of(manifest);
        let record = Record {
            key: key("latest"),
            name: "a/b".into(),
            digest: digest.to_string(),
            media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
            built: 1,
        };
        let blob = Blob {
            path: "/nix/store/x".into(),
            size: 3,
            pushed: vec![],
        };
        let blob_digest = Digest::of(b"abc");
        s.save(&record, manifest, &[(blob_digest.clone(), blob.clone())])
            .unwrap();
        // What a killed write leaves behind.
        let half = dir.path().join("manifests/.stevedore-xyz");
        std::fs::write(&half, b"{").unwrap();
        let s = Storage::open(dir.path()).unwrap();
        assert!(!half.exists());
        let loaded = s.load().unwrap();
        assert_eq!(
            loaded.images[&record.key.id()],
            (record.clone(), manifest.to_vec())
        );
        assert_eq!(loaded.blobs[&blob_digest], blob);
        assert_ne!(key("latest").id(), key("v2").id());
    }

    #[test]
    fn a_record_without_its_manifest_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let manifest = b"{}";
        let record = Record {
            key: key("latest"),
            name: "a/b".into(),
            digest: Digest::of(manifest).to_string(),
            media_type: "x".into(),
            built: 1,
        };
        s.save(&record, manifest, &[]).unwrap();
        std::fs::remove_file(s.manifest_path(&Digest::of(manifest))).unwrap();
        assert!(s.load().unwrap().images.is_empty());
        // Or whose manifest was changed.
        s.save(&record, manifest, &[]).unwrap();
        std::fs::write(s.manifest_path(&Digest::of(manifest)), b"{ }").unwrap();
        assert!(s.load().unwrap().images.is_empty());
    }
}
