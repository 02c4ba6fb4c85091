//! pullImage's builder (a fixed-output derivation, so it may reach the network): pulls
//! `imageName@imageDigest` for the platform asked and writes it to `$out` as an
//! uncompressed docker archive named `finalImageName:finalImageTag`. The archive's bytes
//! depend only on the pulled content and those arguments (layers stored uncompressed
//! under their diff_ids, members in a fixed order and mtime), so the output hash users
//! pin stays valid across stevedore releases; tests/pull_image.rs freezes the format.
//! `stevedore prefetch` writes the same archive to hash it.

use super::attrs;
use crate::copy::{self, Location, Options};
use crate::image::compress::Compression;
use crate::registry::client;
use crate::registry::pull::Want;
use crate::registry::reference::{Reference, Version};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// What to pull and how to name it.
pub struct Request {
    pub reference: Reference,
    pub want: Want,
    pub final_name: String,
    pub tls_verify: Option<bool>,
}

/// Runs the builder: reads `.attrs.json`, writes `outputs.out`.
pub fn run() -> Result<()> {
    let a = attrs::load()?;
    let out = attrs::output(&a, "out")?;
    let text = |k: &str| attrs::string(&a, k).filter(|v| !v.is_empty());
    let name = text("sourceImageName").context("no sourceImageName attribute")?;
    let digest = text("imageDigest").context("no imageDigest attribute")?;
    let reference =
        Reference::parse(&format!("{name}@{digest}")).context("imageName, imageDigest")?;
    let request = Request {
        reference,
        want: Want {
            os: text("os"),
            architecture: text("arch"),
            variant: text("variant"),
        },
        final_name: format!(
            "{}:{}",
            text("imageName").unwrap_or(name),
            text("imageTag").unwrap_or_else(|| "latest".to_string())
        ),
        tls_verify: a.get("tlsVerify").and_then(|v| v.as_bool()),
    };
    pull_to_archive(&request, &out)
}

/// Pulls the image and writes it as a docker archive at `out`.
pub fn pull_to_archive(request: &Request, out: &Path) -> Result<()> {
    if !matches!(request.reference.version, Version::Digest(_)) {
        bail!(
            "{}: pullImage needs a digest (imageDigest), not a tag",
            request.reference
        );
    }
    let registry = client::Options {
        tls_verify: match request.tls_verify {
            Some(false) => Some(false),
            _ => None,
        },
        credentials: None,
    };
    let opts = Options {
        compression: Some(Compression::NONE),
        src_registry: registry,
        want: request.want.clone(),
        jobs: 4,
        ..Options::default()
    };
    let source = Location::Registry(request.reference.clone());
    let read = copy::read(&source, &opts)?;
    let mut image = read.image;
    image.repo_tags.clear();
    let dest = Location::DockerArchive {
        path: out.to_path_buf(),
        name: Some(request.final_name.clone()),
    };
    copy::write(image, &dest, &opts)
}

/// `stevedore prefetch IMAGE[:TAG]`: the attribute set for pullImage (as
/// nix-prefetch-docker prints it), from the digest the tag names now and the hash of
/// the archive pullImage will write.
pub fn prefetch(image: &str, want: Want, tls_verify: Option<bool>) -> Result<String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let named = Reference::parse(image).with_context(|| format!("{image:?}"))?;
    let opts = client::Options {
        tls_verify,
        credentials: None,
    };
    let c = client::Client::connect(&named, &opts)?;
    let top = crate::registry::pull::fetch_manifest(&c, &named)?;
    let tag = match &named.version {
        Version::Tag(t) => t.clone(),
        Version::Digest(_) => "latest".to_string(),
    };
    let name = image.split_once('@').map_or(image, |(n, _)| n).to_string();
    let name = match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => n.to_string(),
        _ => name,
    };
    let request = Request {
        reference: named.with_version(Version::Digest(top.digest.clone())),
        want,
        final_name: format!("{name}:{tag}"),
        tls_verify,
    };
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("image.tar");
    pull_to_archive(&request, &archive)?;
    let mut file = std::fs::File::open(&archive)?;
    let mut sha = sha2::Sha256::new();
    std::io::copy(&mut file, &mut sha)?;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    Ok(format!(
        "{{\n  imageName = \"{name}\";\n  imageDigest = \"{}\";\n  hash = \"sha256-{hash}\";\n  finalImageName = \"{name}\";\n  finalImageTag = \"{tag}\";\n}}\n",
        top.digest
    ))
}
