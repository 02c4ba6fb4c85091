//! Reading an image from a registry into the model: the manifest (through an index or
//! manifest list, by platform), the config, and each layer's blob downloaded into a
//! directory, in parallel and bounded, every byte checked against its digest while it
//! streams. A failed or corrupted download starts again from its first byte, never
//! resumed, so a blob on disk is whole and right or absent.

use super::client::{describe, Body, Client};
use super::progress::Progress;
use super::reference::{Reference, Version};
use crate::image::descriptor::{Descriptor, Platform};
use crate::image::digest::Digest;
use crate::image::media::{MediaType, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::image::model::{ArchiveLayout, Blob, Config, Image, Layer, Source};
use crate::image::oci::{diff_ids, Index, Manifest, MAX_JSON};
use crate::image::output::write_atomically;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use sha2::Digest as _;
use std::io::{Read, Write};
use std::path::Path;

/// Every manifest type the client reads, for `Accept`.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Which image of an index to take: fields left `None` match anything, except that the
/// os and architecture default to this machine's.
#[derive(Clone, Debug, Default)]
pub struct Want {
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub variant: Option<String>,
}

impl Want {
    fn os(&self) -> &str {
        self.os.as_deref().unwrap_or("linux")
    }

    fn architecture(&self) -> &str {
        self.architecture
            .as_deref()
            .unwrap_or(match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                "x86" => "386",
                "powerpc64" => "ppc64le",
                other => other,
            })
    }

    fn matches(&self, p: &Platform) -> bool {
        p.os == self.os()
            && p.architecture == self.architecture()
            && (self.variant.is_none() || p.variant == self.variant)
    }
}

/// A manifest as fetched: its bytes, digest and media type.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: MediaType,
}

/// An image pulled: the model (its layers are files in the download directory) and the
/// digest of the image manifest it came from.
pub struct Pulled {
    pub image: Image,
    pub manifest: Fetched,
}

fn pull_scope(reference: &Reference) -> Vec<String> {
    vec![format!("repository:{}:pull", reference.repository)]
}

/// Fetches the manifest `reference` names, checked against its digest when it names one
/// or the registry states one.
pub fn fetch_manifest(client: &Client, reference: &Reference) -> Result<Fetched> {
    let path = format!(
        "/v2/{}/manifests/{}",
        reference.repository,
        reference.version_text()
    );
    let url = client.url(&path);
    let resp = client.send(
        "GET",
        &url,
        &pull_scope(reference),
        &[("Accept", ACCEPT)],
        Body::Empty,
    )?;
    let what = || format!("{reference}");
    if resp.status() != 200 {
        let code = resp.status();
        bail!("{}: manifest: {}", what(), describe(code, resp));
    }
    let content_type = resp.content_type().to_string();
    let stated = resp.header("docker-content-digest").map(str::to_string);
    let bytes = read_limited(resp.into_reader(), MAX_JSON)
        .with_context(|| format!("{}: manifest", what()))?;
    let digest = Digest::of(&bytes);
    if let Version::Digest(d) = &reference.version {
        if *d != digest {
            bail!("{}: the manifest's bytes hash to {digest}", what());
        }
    }
    if let Some(s) = stated.as_deref().and_then(|s| Digest::parse(s).ok()) {
        if s.algorithm() == digest.algorithm() && s != digest {
            bail!(
                "{}: the registry states digest {s}, the manifest hashes to {digest}",
                what()
            );
        }
    }
    let media_type = media_type(&bytes, &content_type).with_context(what)?;
    Ok(Fetched {
        bytes,
        digest,
        media_type,
    })
}

/// The manifest's media type: its `mediaType` field, else the `Content-Type`.
fn media_type(bytes: &[u8], content_type: &str) -> Result<MediaType> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    let typed: Typed = serde_json::from_slice(bytes).context("the manifest is not JSON")?;
    let text = typed.media_type.unwrap_or_else(|| content_type.to_string());
    match text.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | DOCKER_LIST => Ok(MediaType::parse(&text)),
        other => bail!("unsupported manifest type {other:?}"),
    }
}

/// The image manifest `reference` names, choosing by platform through an index.
pub fn resolve(client: &Client, reference: &Reference, want: &Want) -> Result<Fetched> {
    let fetched = fetch_manifest(client, reference)?;
    if !matches!(fetched.media_type, MediaType::Index(_)) {
        return Ok(fetched);
    }
    let index: Index = serde_json::from_slice(&fetched.bytes)
        .with_context(|| format!("{reference}: not an image index"))?;
    let chosen = index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .with_context(|| {
            format!(
                "{reference}: no image for {}/{}{} (it has {})",
                want.os(),
                want.architecture(),
                want.variant
                    .as_deref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default(),
                platforms(&index)
            )
        })?;
    fetch_manifest(
        client,
        &reference.with_version(Version::Digest(chosen.digest.clone())),
    )
}

fn platforms(index: &Index) -> String {
    let names: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    match names.is_empty() {
        true => "no platforms".to_string(),
        false => names.join(", "),
    }
}

/// Pulls the image `reference` names into `dir` (its layer blobs, by digest).
pub fn pull(
    client: &Client,
    reference: &Reference,
    want: &Want,
    dir: &Path,
    jobs: usize,
) -> Result<Pulled> {
    let fetched = resolve(client, reference, want)?;
    let manifest: Manifest = serde_json::from_slice(&fetched.bytes).with_context(|| {
        format!(
            "{reference}: manifest {}: not an image manifest",
            fetched.digest
        )
    })?;
    let config = fetch_small_blob(client, reference, &manifest.config)?;
    let parsed: serde_json::Value = serde_json::from_slice(&config)
        .with_context(|| format!("{reference}: config {}: not JSON", manifest.config.digest))?;
    let diff_ids = diff_ids(&parsed).with_context(|| format!("{reference}: config"))?;
    if diff_ids.len() != manifest.layers.len() {
        bail!(
            "{reference}: the manifest lists {} layers, its config {} diff_ids",
            manifest.layers.len(),
            diff_ids.len()
        );
    }
    let total = manifest
        .layers
        .iter()
        .fold(0u64, |sum, d| sum.saturating_add(d.size));
    let progress = Progress::new(&format!("pulling {reference}"), Some(total));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()?;
    let layers: Vec<Layer> = pool.install(|| {
        manifest
            .layers
            .par_iter()
            .zip(diff_ids)
            .map(|(d, diff_id)| pull_layer(client, reference, d, diff_id, dir, &progress))
            .collect::<Result<_>>()
    })?;
    Ok(Pulled {
        image: Image {
            config: Config::Bytes(config),
            layers,
            platform: Platform::of_config(&parsed),
            repo_tags: Vec::new(),
            archive: ArchiveLayout::default(),
        },
        manifest: fetched,
    })
}

fn pull_layer(
    client: &Client,
    reference: &Reference,
    d: &Descriptor,
    diff_id: Digest,
    dir: &Path,
    progress: &Progress,
) -> Result<Layer> {
    let MediaType::Layer(_, codec) = d.media_type else {
        bail!(
            "{reference}: layer {}: unsupported media type {}",
            d.digest,
            d.media_type.as_str()
        );
    };
    let path = dir.join(d.digest.hex());
    download(client, reference, d, &path, progress)?;
    progress.note(&format!(
        "{reference}: blob {}: downloaded {}",
        d.digest,
        crate::log::size(d.size)
    ));
    Ok(Layer {
        diff_id: Some(diff_id),
        blob: Some(Blob {
            descriptor: d.clone(),
            compression: None,
        }),
        what: format!("{reference}: layer {}", d.digest),
        source: Source::File {
            path,
            offset: 0,
            len: d.size,
            codec,
        },
    })
}

/// A config (or other small blob), read whole and checked.
pub fn fetch_small_blob(client: &Client, reference: &Reference, d: &Descriptor) -> Result<Vec<u8>> {
    if d.size > MAX_JSON {
        bail!(
            "{reference}: blob {}: {} bytes is too large for a config",
            d.digest,
            d.size
        );
    }
    let mut out = Vec::new();
    fetch_blob(client, reference, d, &mut out, &Progress::hidden())?;
    Ok(out)
}

/// Downloads a blob to `path` (written to a temporary name, renamed when it checks out).
fn download(
    client: &Client,
    reference: &Reference,
    d: &Descriptor,
    path: &Path,
    progress: &Progress,
) -> Result<()> {
    write_atomically(path, |file| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        fetch_blob(client, reference, d, &mut out, progress)
    })
}

/// Where a blob is downloaded to: emptied before every attempt.
trait Restart: Write {
    fn restart(&mut self) -> std::io::Result<()>;
}

impl Restart for Vec<u8> {
    fn restart(&mut self) -> std::io::Result<()> {
        self.clear();
        Ok(())
    }
}

impl Restart for std::io::BufWriter<&std::fs::File> {
    fn restart(&mut self) -> std::io::Result<()> {
        use std::io::Seek;
        self.flush()?;
        self.get_ref().set_len(0)?;
        self.seek(std::io::SeekFrom::Start(0))?;
        Ok(())
    }
}

/// GETs a blob into `out` (emptied for every attempt), checking its size and digest as
/// the bytes arrive; retries from the start when the transfer fails or the bytes are
/// wrong.
fn fetch_blob(
    client: &Client,
    reference: &Reference,
    d: &Descriptor,
    out: &mut dyn Restart,
    progress: &Progress,
) -> Result<()> {
    let url = client.url(&format!("/v2/{}/blobs/{}", reference.repository, d.digest));
    let what = || format!("{reference}: blob {}", d.digest);
    let mut attempt = 0;
    loop {
        out.restart().context("cannot write")?;
        let resp = client
            .send("GET", &url, &pull_scope(reference), &[], Body::Empty)
            .with_context(what)?;
        if resp.status() != 200 {
            let code = resp.status();
            bail!("{}: {}", what(), describe(code, resp));
        }
        match copy_checked(resp.into_reader(), out, d, progress) {
            Ok(()) => return Ok(()),
            Err(e) => {
                attempt += 1;
                if attempt >= client.retry.attempts {
                    return Err(e)
                        .with_context(|| format!("{} (after {attempt} attempts)", what()));
                }
                progress.note(&format!("{}: {e:#}; downloading it again", what()));
                std::thread::sleep(client.retry.wait(attempt));
            }
        }
    }
}

/// Copies a blob's body, refusing more bytes than its size, fewer, or bytes that do not
/// hash to its digest.
fn copy_checked(
    mut body: impl Read,
    out: &mut dyn Write,
    d: &Descriptor,
    progress: &Progress,
) -> Result<()> {
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).context("the transfer broke off")?;
        if n == 0 {
            break;
        }
        total += n as u64;
        progress.add(n as u64);
        if total > d.size {
            bail!("more than the {} bytes its descriptor states", d.size);
        }
        sha.update(&buf[..n]);
        out.write_all(&buf[..n]).context("cannot write")?;
    }
    if total != d.size {
        bail!("{total} bytes, not the {} its descriptor states", d.size);
    }
    let got = Digest::from_sha256(sha.finalize().into());
    if got != d.digest {
        bail!("its bytes hash to {got}");
    }
    out.flush().context("cannot write")?;
    Ok(())
}

fn read_limited(body: impl Read, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    body.take(limit + 1)
        .read_to_end(&mut bytes)
        .context("the transfer broke off")?;
    if bytes.len() as u64 > limit {
        bail!("larger than {limit} bytes");
    }
    Ok(bytes)
}
