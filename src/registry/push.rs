//! Writing an image to a registry: each layer's blob is skipped when the registry has it
//! (HEAD), mounted when another repository of the registry has it (`--mount-from`, or
//! where this machine pushed it before), else compressed and uploaded while it streams
//! (POST, one PATCH carrying the whole blob, PUT `?digest=`), hashed once. A layer whose
//! compressed digest is known without reading it (a stored blob, an uncompressed layer
//! with a recorded diff_id, or the cache of earlier pushes) is not read at all unless it
//! must be uploaded. A failed upload starts again with a new session, never resumed.
//! Then the config and the manifest; an index of several images last.

use super::cache::{Cache, Known};
use super::client::{describe, Body, Client};
use super::progress::Progress;
use super::pull::{self, Want};
use super::reference::{Reference, Version};
use crate::image::compress::{Codec, Compression};
use crate::image::descriptor::Descriptor;
use crate::image::digest::Digest;
use crate::image::layer_io::{produce_into, Produced};
use crate::image::media::{Format, MediaType};
use crate::image::model::{Image, Layer, Source};
use crate::image::oci::{Index, Manifest};
use crate::log;
use crate::tar::sink::{copy_by_writes, Sink};
use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// How to push.
#[derive(Clone, Debug)]
pub struct Options {
    pub compression: Compression,
    pub format: Format,
    /// Repositories of the same registry to mount blobs from.
    pub mount_from: Vec<String>,
    /// Blobs transferred at once.
    pub jobs: usize,
}

/// What happened to one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum How {
    Present,
    Mounted(String),
    Uploaded,
}

struct Pushed {
    diff_id: Digest,
    known: Known,
}

/// What a push did: per layer, and the manifest's descriptor (with the image's platform).
pub struct Outcome {
    pub manifest: Descriptor,
    pub layers: Vec<How>,
}

fn push_scopes(reference: &Reference) -> Vec<String> {
    vec![format!("repository:{}:pull,push", reference.repository)]
}

/// Pushes `image` to `reference` (its tag or digest), or, `untagged`, to its
/// repository by its manifest's digest only (an image an index will name).
pub fn push(
    client: &Client,
    reference: &Reference,
    image: &Image,
    opts: &Options,
    cache: &Cache,
    untagged: bool,
) -> Result<Outcome> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()?;
    let lookup = Lookup {
        cache,
        learned: match opts.compression.codec {
            Codec::None => HashMap::new(),
            _ => learn(client, reference, image, opts.compression),
        },
    };
    let progress = Progress::new(&format!("pushing {reference}"), None);
    let results: Vec<(Pushed, How)> = pool.install(|| {
        image
            .layers
            .par_iter()
            .with_max_len(1)
            .map(|layer| {
                push_layer(client, reference, layer, opts, &lookup, &progress)
                    .with_context(|| layer.what.clone())
            })
            .collect::<Result<_>>()
    })?;
    let diff_ids: Vec<Digest> = results.iter().map(|(p, _)| p.diff_id.clone()).collect();
    let config = image.config.render(&diff_ids);
    let config_desc = push_bytes(client, reference, MediaType::Config(opts.format), &config)?;
    let layer_type = MediaType::Layer(opts.format, opts.compression.codec);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MediaType::Manifest(opts.format)),
        config: config_desc,
        layers: results
            .iter()
            .map(|(p, _)| Descriptor::new(layer_type.clone(), p.known.digest.clone(), p.known.size))
            .collect(),
    };
    let bytes = serde_json::to_vec(&manifest)?;
    let at = match untagged {
        true => by_digest(reference, &Digest::of(&bytes)),
        false => reference.clone(),
    };
    let mut descriptor = put_manifest(client, &at, MediaType::Manifest(opts.format), &bytes)?;
    descriptor.platform = Some(image.platform.clone());
    Ok(Outcome {
        manifest: descriptor,
        layers: results.into_iter().map(|(_, h)| h).collect(),
    })
}

/// Pushes an index (or manifest list) of images already pushed to the repository.
pub fn push_index(
    client: &Client,
    reference: &Reference,
    manifests: Vec<Descriptor>,
    format: Format,
) -> Result<Descriptor> {
    let index = Index {
        schema_version: 2,
        media_type: Some(MediaType::Index(format)),
        manifests,
    };
    let bytes = serde_json::to_vec(&index)?;
    put_manifest(client, reference, MediaType::Index(format), &bytes)
}

/// A blob the layer already has in the asked codec (copied as it is, never recoded).
fn stored_blob(layer: &Layer, c: Compression) -> Option<&Descriptor> {
    let blob = layer.blob.as_ref()?;
    match (&blob.descriptor.media_type, c.codec) {
        (MediaType::Layer(_, codec), wanted) if *codec == wanted && wanted != Codec::None => {
            Some(&blob.descriptor)
        }
        _ => None,
    }
}

/// The blob's digest and size when known without reading the layer.
fn known_blob(layer: &Layer, c: Compression, known: &Lookup) -> Option<(Digest, Known)> {
    let diff_id = layer.diff_id.clone()?;
    if let Some(d) = stored_blob(layer, c) {
        let known = Known {
            digest: d.digest.clone(),
            size: d.size,
        };
        return Some((diff_id, known));
    }
    if c.codec == Codec::None {
        let size = match &layer.source {
            Source::StorePaths(_) => layer.source.stored_len(),
            Source::File {
                codec: Codec::None,
                len,
                ..
            } => *len,
            Source::File { .. } => return None,
        };
        let known = Known {
            digest: diff_id.clone(),
            size,
        };
        return Some((diff_id, known));
    }
    let known = known.blob(&diff_id, c)?;
    Some((diff_id, known))
}

/// Where compressed digests are looked up: the cache of this machine's pushes, then
/// what the destination already holds under the tag being pushed (its manifest and
/// config pair each diff_id with a blob), so that a push from a machine without the
/// cache (a fresh CI runner) still skips the layers the registry has.
struct Lookup<'a> {
    cache: &'a Cache,
    learned: HashMap<Digest, Known>,
}

impl Lookup<'_> {
    fn blob(&self, diff_id: &Digest, c: Compression) -> Option<Known> {
        self.cache
            .blob(diff_id, c)
            .or_else(|| self.learned.get(diff_id).cloned())
    }
}

/// The blobs of the image now at `reference` (for `image`'s platform, through an index)
/// compressed with `c`'s codec, by diff_id; nothing when there is none or it cannot
/// be read.
fn learn(
    client: &Client,
    reference: &Reference,
    image: &Image,
    c: Compression,
) -> HashMap<Digest, Known> {
    let want = Want {
        os: Some(image.platform.os.clone()),
        architecture: Some(image.platform.architecture.clone()),
        variant: image.platform.variant.clone(),
    };
    let found = || -> Result<HashMap<Digest, Known>> {
        let fetched = pull::resolve(client, reference, &want)?;
        let manifest: Manifest = serde_json::from_slice(&fetched.bytes)?;
        let config = pull::fetch_small_blob(client, reference, &manifest.config)?;
        let config: serde_json::Value = serde_json::from_slice(&config)?;
        let diff_ids = crate::image::oci::diff_ids(&config)?;
        Ok(diff_ids
            .into_iter()
            .zip(manifest.layers)
            .filter(|(_, d)| matches!(d.media_type, MediaType::Layer(_, codec) if codec == c.codec))
            .map(|(id, d)| {
                (
                    id,
                    Known {
                        digest: d.digest,
                        size: d.size,
                    },
                )
            })
            .collect())
    };
    found().unwrap_or_default()
}

fn push_layer(
    client: &Client,
    reference: &Reference,
    layer: &Layer,
    opts: &Options,
    lookup: &Lookup,
    progress: &Progress,
) -> Result<(Pushed, How)> {
    let cache = lookup.cache;
    let known = match (&layer.diff_id, lookup.learned.is_empty()) {
        // A re-push of a tag from a conf without recorded digests: hashing the layer
        // (far cheaper than compressing and uploading it) may show the registry has it.
        (None, false) => {
            let diff_id = crate::image::layer_io::digest(layer)?;
            lookup
                .blob(&diff_id, opts.compression)
                .map(|known| (diff_id, known))
        }
        _ => known_blob(layer, opts.compression, lookup),
    };
    if let Some((diff_id, known)) = known {
        if let Some(how) = find_or_mount(client, reference, &known.digest, opts, cache)? {
            cache.put_repository(&client.registry, &known.digest, &reference.repository);
            progress.note(&format!(
                "{reference}: blob {}: {}",
                known.digest,
                says(&how)
            ));
            return Ok((Pushed { diff_id, known }, how));
        }
    }
    let produced = upload_layer(client, reference, layer, opts.compression, progress)?;
    let known = Known {
        digest: produced.digest.clone(),
        size: produced.size,
    };
    cache.put_blob(&produced.diff_id, opts.compression, &known);
    cache.put_repository(&client.registry, &known.digest, &reference.repository);
    progress.note(&format!(
        "{reference}: blob {}: uploaded {}",
        known.digest,
        log::size(known.size)
    ));
    Ok((
        Pushed {
            diff_id: produced.diff_id,
            known,
        },
        How::Uploaded,
    ))
}

fn says(how: &How) -> String {
    match how {
        How::Present => "the registry has it".to_string(),
        How::Mounted(from) => format!("mounted from {from}"),
        How::Uploaded => "uploaded".to_string(),
    }
}

/// Whether the repository has the blob (HEAD), or it could be mounted from another.
fn find_or_mount(
    client: &Client,
    reference: &Reference,
    digest: &Digest,
    opts: &Options,
    cache: &Cache,
) -> Result<Option<How>> {
    if has_blob(client, reference, digest)? {
        return Ok(Some(How::Present));
    }
    let mut sources: Vec<String> = opts.mount_from.clone();
    sources.extend(cache.repositories(&client.registry, digest));
    sources.retain(|r| *r != reference.repository);
    sources.dedup();
    for from in sources {
        if mount(client, reference, digest, &from)? {
            return Ok(Some(How::Mounted(from)));
        }
    }
    Ok(None)
}

fn has_blob(client: &Client, reference: &Reference, digest: &Digest) -> Result<bool> {
    let url = client.url(&format!("/v2/{}/blobs/{digest}", reference.repository));
    let resp = client.send("HEAD", &url, &push_scopes(reference), &[], Body::Empty)?;
    Ok(resp.status() == 200)
}

/// Asks the registry to mount the blob from `from`; true if it did.
fn mount(client: &Client, reference: &Reference, digest: &Digest, from: &str) -> Result<bool> {
    let url = client.url(&format!(
        "/v2/{}/blobs/uploads/?mount={digest}&from={from}",
        reference.repository
    ));
    let scopes = vec![
        format!("repository:{}:pull,push", reference.repository),
        format!("repository:{from}:pull"),
    ];
    let resp = client.send(
        "POST",
        &url,
        &scopes,
        &[("Content-Length", "0")],
        Body::Empty,
    )?;
    match resp.status() {
        201 => Ok(true),
        202 => {
            // An upload session was opened instead: close it (best effort).
            if let Some(location) = resp.header("location").map(str::to_string) {
                let url = client.url(&location);
                let _ = client.send("DELETE", &url, &scopes, &[], Body::Empty);
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Opens an upload session; its location.
fn start_upload(client: &Client, reference: &Reference) -> Result<String> {
    let url = client.url(&format!("/v2/{}/blobs/uploads/", reference.repository));
    let resp = client.send(
        "POST",
        &url,
        &push_scopes(reference),
        &[("Content-Length", "0")],
        Body::Empty,
    )?;
    if resp.status() != 202 {
        let code = resp.status();
        bail!("cannot start an upload: {}", describe(code, resp));
    }
    location_of(client, &resp)
}

/// A response's `Location`, made absolute.
fn location_of(client: &Client, resp: &ureq::Response) -> Result<String> {
    let loc = resp
        .header("location")
        .context("the registry gave no upload location")?;
    Ok(client.url(loc))
}

/// `location` with `?digest=` (or `&digest=`) added.
fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// Compresses and uploads a layer as it streams; a failed attempt starts over.
fn upload_layer(
    client: &Client,
    reference: &Reference,
    layer: &Layer,
    c: Compression,
    progress: &Progress,
) -> Result<Produced> {
    let mut attempt = 0;
    loop {
        match upload_once(client, reference, layer, c, progress) {
            Ok(p) => return Ok(p),
            Err(Upload::Fatal(e)) => return Err(e),
            Err(Upload::Retry(e)) => {
                attempt += 1;
                if attempt >= client.retry.attempts {
                    return Err(e.context(format!("upload failed {attempt} times")));
                }
                progress.note(&format!("{}: {e:#}; uploading it again", layer.what));
                std::thread::sleep(client.retry.wait(attempt));
            }
        }
    }
}

enum Upload {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

fn upload_once(
    client: &Client,
    reference: &Reference,
    layer: &Layer,
    c: Compression,
    progress: &Progress,
) -> std::result::Result<Produced, Upload> {
    let location = start_upload(client, reference).map_err(Upload::Retry)?;
    let (tx, rx) = sync_channel::<Vec<u8>>(4);
    let (sent, produced) = std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut sink = ChannelSink::new(tx);
            produce_into(layer, c, &mut sink)
        });
        let body = Body::Stream(Box::new(ChannelReader::new(rx, progress)));
        let headers = [("Content-Type", "application/octet-stream")];
        let sent = client.send("PATCH", &location, &push_scopes(reference), &headers, body);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the layer's producer panicked")));
        (sent, produced)
    });
    let (produced, resp) = match (produced, sent) {
        (Ok(p), Ok(resp)) if resp.status() == 202 => (p, resp),
        // The registry took a short body because the layer could not be read: give up.
        (Err(e), Ok(resp)) if resp.status() == 202 => {
            let _ = client.send(
                "DELETE",
                &location,
                &push_scopes(reference),
                &[],
                Body::Empty,
            );
            return Err(Upload::Fatal(e));
        }
        (_, Ok(resp)) => {
            let code = resp.status();
            return Err(Upload::Retry(anyhow!("upload: {}", describe(code, resp))));
        }
        // The transfer broke: the producer only saw its reader go.
        (_, Err(e)) => return Err(Upload::Retry(e)),
    };
    let location = location_of(client, &resp).map_err(Upload::Retry)?;
    finish_upload(
        client,
        reference,
        &location,
        &produced.digest,
        Body::Empty,
        None,
    )
    .map_err(Upload::Retry)?;
    Ok(produced)
}

/// Closes an upload with its digest (and, for a monolithic upload, its bytes: `len` of
/// them when they come from a stream).
fn finish_upload(
    client: &Client,
    reference: &Reference,
    location: &str,
    digest: &Digest,
    body: Body,
    len: Option<u64>,
) -> Result<()> {
    let url = with_digest(location, digest);
    let len = len.map(|n| n.to_string());
    let mut headers = vec![("Content-Type", "application/octet-stream")];
    if let Some(n) = &len {
        headers.push(("Content-Length", n.as_str()));
    }
    let resp = client.send("PUT", &url, &push_scopes(reference), &headers, body)?;
    if resp.status() != 201 {
        let code = resp.status();
        bail!(
            "blob {digest}: the registry did not accept it: {}",
            describe(code, resp)
        );
    }
    Ok(())
}

/// Pushes a blob stored in a file, whole (POST, then one PUT carrying it), unless the
/// repository has it (HEAD); true if it was uploaded. The registry checks the digest.
pub fn push_blob_file(
    client: &Client,
    reference: &Reference,
    digest: &Digest,
    path: &Path,
    size: u64,
) -> Result<bool> {
    if has_blob(client, reference, digest)? {
        return Ok(false);
    }
    let location = start_upload(client, reference)?;
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let body = Body::Stream(Box::new(file.take(size)));
    finish_upload(client, reference, &location, digest, body, Some(size))?;
    Ok(true)
}

/// Pushes a small blob (a config) whole, unless the registry has it.
fn push_bytes(
    client: &Client,
    reference: &Reference,
    media_type: MediaType,
    bytes: &[u8],
) -> Result<Descriptor> {
    let digest = Digest::of(bytes);
    if !has_blob(client, reference, &digest)? {
        let location = start_upload(client, reference)?;
        finish_upload(
            client,
            reference,
            &location,
            &digest,
            Body::Bytes(bytes),
            None,
        )?;
    }
    Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
}

/// PUTs a manifest or an index at the reference's tag or digest.
fn put_manifest(
    client: &Client,
    reference: &Reference,
    media_type: MediaType,
    bytes: &[u8],
) -> Result<Descriptor> {
    let digest = Digest::of(bytes);
    if let Version::Digest(d) = &reference.version {
        if *d != digest {
            bail!("{reference}: the manifest to push hashes to {digest}");
        }
    }
    let url = client.url(&format!(
        "/v2/{}/manifests/{}",
        reference.repository,
        reference.version_text()
    ));
    let headers = [("Content-Type", media_type.as_str())];
    let resp = client.send(
        "PUT",
        &url,
        &push_scopes(reference),
        &headers,
        Body::Bytes(bytes),
    )?;
    if resp.status() != 201 {
        let code = resp.status();
        bail!(
            "{reference}: the registry refused the manifest: {}",
            describe(code, resp)
        );
    }
    if let Some(stated) = resp.header("docker-content-digest") {
        if stated != digest.to_string() {
            bail!("{reference}: the registry stored the manifest as {stated}, not {digest}");
        }
    }
    Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
}

/// The digest reference of a pushed manifest in the same repository.
pub fn by_digest(reference: &Reference, digest: &Digest) -> Reference {
    reference.with_version(Version::Digest(digest.clone()))
}

/// Chunks a layer's bytes into a channel, for an upload's body.
struct ChannelSink {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

const CHUNK: usize = 256 << 10;

impl ChannelSink {
    fn new(tx: SyncSender<Vec<u8>>) -> Self {
        ChannelSink {
            tx,
            buf: Vec::with_capacity(CHUNK),
            chunk: Vec::new(),
        }
    }

    fn send(&mut self) -> Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| anyhow!("the upload stopped"))
    }
}

impl Sink for ChannelSink {
    fn write_all(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let n = (CHUNK - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == CHUNK {
                self.send()?;
            }
        }
        Ok(())
    }

    fn copy_from(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
        copy_by_writes(self, |s| &mut s.chunk, file, path, offset, len)
    }

    fn flush(&mut self) -> Result<()> {
        match self.buf.is_empty() {
            true => Ok(()),
            false => self.send(),
        }
    }
}

/// The reading end: an upload body that ends when the producer is done.
struct ChannelReader<'a> {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    progress: &'a Progress,
}

impl<'a> ChannelReader<'a> {
    fn new(rx: Receiver<Vec<u8>>, progress: &'a Progress) -> Self {
        ChannelReader {
            rx,
            current: Vec::new(),
            pos: 0,
            progress,
        }
    }
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.current = next;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = (self.current.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        self.progress.add(n as u64);
        Ok(n)
    }
}
