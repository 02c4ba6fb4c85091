//! Images built once: the caches in memory (images by key, manifests and blobs by
//! digest, loaded from the storage at start-up), and one build per key at a time. The
//! first request for a new image starts its build in a task of its own (so a client that
//! goes away does not stop it); later requests for the same image wait for that build,
//! and say on stderr what they wait for. A failed build is not kept: the next request
//! tries again.

use super::error::ApiError;
use super::names::Image;
use super::nix::{self, Built};
use super::storage::{Blob, Key, Record, Storage};
use super::upstream::Upstream;
use crate::image::digest::Digest;
use crate::image::oci;
use crate::log;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// A built image: its record and manifest bytes.
#[derive(Debug)]
pub struct Stored {
    pub record: Record,
    pub bytes: Vec<u8>,
    pub digest: Digest,
    /// The blobs the manifest names (config, then layers), read from it once.
    blobs: Vec<Digest>,
}

impl Stored {
    fn new(record: Record, bytes: Vec<u8>) -> Stored {
        let blobs = serde_json::from_slice::<oci::Manifest>(&bytes)
            .map(|m| {
                std::iter::once(m.config)
                    .chain(m.layers)
                    .map(|d| d.digest)
                    .collect()
            })
            .unwrap_or_default();
        Stored {
            digest: Digest::of(&bytes),
            record,
            bytes,
            blobs,
        }
    }
}

type Outcome = Option<Result<Arc<Stored>, ApiError>>;

/// The images of one server.
pub struct Builds {
    pub builder: nix::Builder,
    pub storage: Storage,
    pub upstream: Option<Arc<Upstream>>,
    /// The sha256 of the popularity file, part of every key.
    popularity: Option<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// By key id.
    images: HashMap<String, Arc<Stored>>,
    manifests: HashMap<Digest, Arc<Stored>>,
    blobs: HashMap<Digest, Blob>,
    /// Builds under way, by key id.
    building: HashMap<String, watch::Receiver<Outcome>>,
}

impl Builds {
    /// The caches as the storage holds them.
    pub fn new(
        builder: nix::Builder,
        storage: Storage,
        upstream: Option<Upstream>,
        popularity: Option<String>,
    ) -> anyhow::Result<Builds> {
        let loaded = storage.load()?;
        let mut state = State {
            blobs: loaded.blobs,
            ..State::default()
        };
        for (id, (record, bytes)) in loaded.images {
            let stored = Arc::new(Stored::new(record, bytes));
            state
                .manifests
                .insert(stored.digest.clone(), stored.clone());
            state.images.insert(id, stored);
        }
        Ok(Builds {
            builder,
            storage,
            upstream: upstream.map(Arc::new),
            popularity,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cache key of an image.
    pub fn key(&self, image: &Image) -> Key {
        Key {
            source: self.builder.source.clone(),
            packages: image.packages.clone(),
            tag: image.tag.clone(),
            arch: image.arch.oci().to_string(),
            compress: self.builder.compress.clone().unwrap_or_default(),
            popularity: self.popularity.clone(),
        }
    }

    /// The image, built now unless it was built before or is being built.
    pub async fn image(self: &Arc<Self>, image: &Image) -> Result<Arc<Stored>, ApiError> {
        let key = self.key(image);
        let id = key.id();
        let mut rx = {
            let mut state = self.lock();
            if let Some(stored) = state.images.get(&id).cloned() {
                match self.missing_blob(&state, &stored) {
                    None => return Ok(stored),
                    // Its layers were collected (its gc root removed): build it again.
                    Some(why) => {
                        log::note(&format!(
                            "serve: {}: {why}: building it again",
                            image.display()
                        ));
                        state.images.remove(&id);
                    }
                }
            }
            match state.building.get(&id) {
                Some(rx) => {
                    log::note(&format!(
                        "serve: waiting for {} (building {})",
                        image.display(),
                        image.packages.join(" ")
                    ));
                    rx.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    state.building.insert(id.clone(), rx.clone());
                    log::note(&format!(
                        "serve: building {} for {}: {}",
                        image.display(),
                        image.arch.oci(),
                        image.packages.join(" ")
                    ));
                    let builds = self.clone();
                    let image = image.clone();
                    tokio::spawn(async move {
                        let done = Done {
                            builds: builds.clone(),
                            id,
                            tx,
                        };
                        let result = builds.build(&image, key).await;
                        done.finish(result);
                    });
                    rx
                }
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ApiError::internal("the build stopped without a result"))?;
        outcome.clone().expect("waited for a result")
    }

    /// Runs Nix, pushes the blobs upstream if asked, and stores the image.
    async fn build(self: &Arc<Self>, image: &Image, key: Key) -> Result<Arc<Stored>, ApiError> {
        let started = Instant::now();
        let gc_root = self.storage.gc_root(&key.id());
        let result = self.builder.build(image, &gc_root).await;
        let manifest = match result {
            Ok(Built::Image(m)) => m,
            Ok(Built::NotFound(pkgs)) => {
                let e = ApiError::packages_unknown(&pkgs);
                log::note(&format!("serve: {}: {}", image.display(), e.message));
                return Err(e);
            }
            Err(e) => {
                log::note(&format!("serve: {}: {}", image.display(), e.message));
                return Err(e);
            }
        };
        let derivations = manifest.derivations_built;
        let digest = Digest::of(&manifest.bytes);
        let record = Record {
            key,
            name: image.name.clone(),
            digest: digest.to_string(),
            media_type: manifest.media_type.clone(),
            built: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let stored = Arc::new(Stored::new(record, manifest.bytes));
        let mut blobs = manifest.blobs;
        let builds = self.clone();
        let to_keep = stored.clone();
        let (blobs, uploaded) = tokio::task::spawn_blocking(move || {
            let uploaded = match &builds.upstream {
                Some(up) => up.push(&mut blobs)?,
                None => 0,
            };
            builds
                .storage
                .save(&to_keep.record, &to_keep.bytes, &blobs)?;
            anyhow::Ok((blobs, uploaded))
        })
        .await
        .map_err(|e| ApiError::internal(format!("storing {}: {e}", image.display())))?
        .map_err(|e| {
            let e = ApiError::internal(format!("storing {}: {e:#}", image.display()));
            log::note(&format!("serve: {}", e.message));
            e
        })?;
        let pushed = match &self.upstream {
            Some(up) => format!(", {} uploaded to {}", log::count(uploaded, "blob"), up.name),
            None => String::new(),
        };
        log::note(&format!(
            "serve: built {}: {}, {} ({} built){pushed}, in {:.2} s",
            image.display(),
            stored.digest,
            log::count(blobs.len().saturating_sub(1), "layer"),
            log::count(derivations.len(), "derivation"),
            started.elapsed().as_secs_f64()
        ));
        // What Nix built, so that a log shows which layers were new.
        log::note(&format!(
            "serve: derivations built for {}: {}",
            image.display(),
            match derivations.is_empty() {
                true => "none".to_string(),
                false => derivations.join(" "),
            }
        ));
        let mut state = self.lock();
        state.blobs.extend(blobs);
        Ok(stored)
    }

    /// Why a stored image cannot be served as it is: a blob of its manifest that is
    /// neither upstream nor in its file any more.
    fn missing_blob(&self, state: &State, stored: &Stored) -> Option<String> {
        let upstream = self.upstream.as_ref().map(|u| u.name.as_str());
        for digest in &stored.blobs {
            let Some(blob) = state.blobs.get(digest) else {
                return Some(format!("blob {digest} is not recorded"));
            };
            let pushed = upstream.is_some_and(|u| blob.pushed.iter().any(|p| p == u));
            if !pushed && !blob.path.is_file() {
                return Some(format!("blob {digest} is gone ({})", blob.path.display()));
            }
        }
        None
    }

    /// A manifest by its digest.
    pub fn manifest(&self, digest: &Digest) -> Option<Arc<Stored>> {
        self.lock().manifests.get(digest).cloned()
    }

    /// Where a blob is.
    pub fn blob(&self, digest: &Digest) -> Option<Blob> {
        self.lock().blobs.get(digest).cloned()
    }

    /// The tags built of the image `image` names (whatever its tag), sorted.
    pub fn tags(&self, image: &Image) -> Vec<String> {
        let any_tag = |k: &Key| {
            let mut k = k.clone();
            k.tag.clear();
            k
        };
        let wanted = any_tag(&self.key(image));
        let mut tags: Vec<String> = self
            .lock()
            .images
            .values()
            .filter(|s| any_tag(&s.record.key) == wanted)
            .map(|s| s.record.key.tag.clone())
            .collect();
        tags.sort();
        tags
    }

    /// Every image built, newest first.
    pub fn images(&self) -> Vec<Arc<Stored>> {
        let mut all: Vec<_> = self.lock().images.values().cloned().collect();
        all.sort_by(|a, b| {
            (b.record.built, &a.record.name, &a.record.key.tag).cmp(&(
                a.record.built,
                &b.record.name,
                &b.record.key.tag,
            ))
        });
        all
    }
}

/// Ends a build under way: records a success in the caches, and always removes the
/// build from those under way (even if the task panicked) and wakes its waiters.
struct Done {
    builds: Arc<Builds>,
    id: String,
    tx: watch::Sender<Outcome>,
}

impl Done {
    fn finish(self, result: Result<Arc<Stored>, ApiError>) {
        if let Ok(stored) = &result {
            let mut state = self.builds.lock();
            state
                .manifests
                .insert(stored.digest.clone(), stored.clone());
            state.images.insert(self.id.clone(), stored.clone());
        }
        let _ = self.tx.send(Some(result));
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        self.builds.lock().building.remove(&self.id);
    }
}
