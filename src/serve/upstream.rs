//! `--upstream docker://HOST/REPO`: a registry that holds the built blobs, so that several
//! servers share one store of layers. After a build the config and layer blobs are
//! pushed there (each skipped when the registry has it), and blob requests are answered
//! with a redirect to it.

use super::storage::Blob;
use crate::image::digest::Digest;
use crate::registry::client::{Client, Options};
use crate::registry::push::push_blob_file;
use crate::registry::reference::{Reference, Version};
use anyhow::{bail, Context, Result};
use std::sync::Arc;

/// The registry blobs go to.
pub struct Upstream {
    /// `docker://HOST/REPO`, as given and as recorded with each blob pushed.
    pub name: String,
    reference: Reference,
    client: Client,
}

impl Upstream {
    /// Connects to `docker://HOST/REPO` (no tag or digest).
    pub fn connect(text: &str) -> Result<Upstream> {
        let Some(rest) = text.strip_prefix("docker://") else {
            bail!("--upstream {text:?}: expected docker://HOST/REPO");
        };
        let reference = Reference::parse(rest).with_context(|| format!("--upstream {text:?}"))?;
        if rest.contains('@') || rest.rsplit('/').next().is_some_and(|r| r.contains(':')) {
            bail!("--upstream {text:?}: name a repository, without a tag or digest");
        }
        let client = Client::connect(&reference, &Options::default())
            .with_context(|| format!("--upstream {text:?}"))?;
        Ok(Upstream {
            name: format!("docker://{}/{}", reference.registry, reference.repository),
            reference: reference.with_version(Version::Tag("latest".into())),
            client,
        })
    }

    /// Pushes each blob the registry lacks (blocking); marks every one as pushed. Returns
    /// how many were uploaded.
    pub fn push(self: &Arc<Self>, blobs: &mut [(Digest, Blob)]) -> Result<usize> {
        let mut uploaded = 0;
        for (digest, blob) in blobs.iter_mut() {
            let sent = push_blob_file(&self.client, &self.reference, digest, &blob.path, blob.size)
                .with_context(|| format!("pushing {digest} to {}", self.name))?;
            uploaded += usize::from(sent);
            if !blob.pushed.contains(&self.name) {
                blob.pushed.push(self.name.clone());
            }
        }
        Ok(uploaded)
    }

    /// Where the registry serves a blob.
    pub fn blob_url(&self, digest: &Digest) -> String {
        self.client
            .url(&format!("/v2/{}/blobs/{digest}", self.reference.repository))
    }
}
