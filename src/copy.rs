//! `stevedore copy SOURCE... DEST`: reads images from any source the model has a reader
//! for and writes them with any writer, named with skopeo's transports. SOURCE is a
//! stream conf (a path ending in `.json`), `docker-archive:PATH[:NAME:TAG]`,
//! `oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]` or `docker://HOST/REPO[:TAG|@DIGEST]`; DEST
//! is any of those but a conf. Like skopeo, a path ends at the first `:` after the
//! transport. Several sources make an image index (OCI) or manifest list (Docker).

use crate::image::compress::Compression;
use crate::image::docker_archive::Archive;
use crate::image::layer_io::produce_blob;
use crate::image::media::Format;
use crate::image::model::{Image, Source};
use crate::image::oci::{self, Blobs, WriteOptions};
use crate::image::output::write_atomically;
use crate::image::{conf::Conf, docker_archive, layered};
use crate::registry::cache::Cache;
use crate::registry::client::{self, Client};
use crate::registry::pull::{self, Want};
use crate::registry::push;
use crate::registry::reference::{Reference, Version};
use crate::tar::gnu::{self, Content, Item};
use crate::tar::kind;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

const SOURCES: &str = "CONF.json, docker-archive:PATH[:NAME:TAG], oci:DIR[:TAG], oci-archive:PATH[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]";
const DESTS: &str = "docker-archive:PATH[:NAME:TAG], oci:DIR[:TAG], oci-archive:PATH[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]";

/// Where an image is read from or written to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Conf(PathBuf),
    DockerArchive { path: PathBuf, name: Option<String> },
    Oci { dir: PathBuf, tag: Option<String> },
    OciArchive { path: PathBuf, tag: Option<String> },
    Registry(Reference),
}

impl Location {
    /// Parses a SOURCE argument.
    pub fn source(text: &str) -> Result<Location> {
        if let Some(r) = registry(text) {
            return r.with_context(|| format!("source {text:?}: expected {SOURCES}"));
        }
        match parse(text) {
            Some(l) => Ok(l),
            None if text.ends_with(".json") && !text.contains(':') => {
                Ok(Location::Conf(PathBuf::from(text)))
            }
            None => bail!("source {text:?}: expected {SOURCES}"),
        }
    }

    /// Parses a DEST argument.
    pub fn dest(text: &str) -> Result<Location> {
        if let Some(r) = registry(text) {
            return r.with_context(|| format!("destination {text:?}: expected {DESTS}"));
        }
        parse(text).with_context(|| format!("destination {text:?}: expected {DESTS}"))
    }
}

/// A `docker://` reference, if `text` is one.
fn registry(text: &str) -> Option<Result<Location>> {
    let rest = text.strip_prefix("docker://")?;
    Some(Reference::parse(rest).map(Location::Registry))
}

fn parse(text: &str) -> Option<Location> {
    let (transport, rest) = text.split_once(':')?;
    let (path, name) = match rest.split_once(':') {
        Some((p, n)) => (p, Some(n.to_string())),
        None => (rest, None),
    };
    if path.is_empty() || name.as_deref() == Some("") {
        return None;
    }
    let path = PathBuf::from(path);
    match transport {
        "docker-archive" if name.as_deref().is_none_or(|n| n.contains(':')) => {
            Some(Location::DockerArchive { path, name })
        }
        "oci" => Some(Location::Oci {
            dir: path,
            tag: name,
        }),
        "oci-archive" => Some(Location::OciArchive { path, tag: name }),
        _ => None,
    }
}

/// How to read and write.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// None: the destination's default (none for docker-archive, gzip for OCI and
    /// registries).
    pub compression: Option<Compression>,
    /// None: the destination's own (docker for docker-archive, oci for OCI and
    /// registries).
    pub format: Option<Format>,
    /// How to reach the source's registry.
    pub src_registry: client::Options,
    /// How to reach the destination's registry.
    pub registry: client::Options,
    /// Which image of a registry's index to read.
    pub want: Want,
    /// Repositories of the destination registry to mount blobs from.
    pub mount_from: Vec<String>,
    /// Blobs transferred at once.
    pub jobs: usize,
}

/// An image read from a source, with what keeps its files readable.
pub struct Read {
    pub image: Image,
    /// Temporary files and directories the image's layers are read from.
    pub keep: Vec<Box<dyn std::any::Any>>,
}

/// Reads the image `source` names.
pub fn read(source: &Location, opts: &Options) -> Result<Read> {
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let image = match source {
        Location::Conf(path) => {
            let conf = Conf::load(path)?;
            let (image, b) =
                layered::from_conf(&conf, None).with_context(|| path.display().to_string())?;
            keep.extend(b.map(|b| Box::new(b) as Box<dyn std::any::Any>));
            image
        }
        Location::DockerArchive { path, name } => {
            let (image, b) = read_docker_archive(path, name.as_deref())?;
            keep.push(Box::new(b));
            image
        }
        Location::Oci { dir, tag } => oci::read_image(&Blobs::Dir(dir.clone()), tag.as_deref())
            .with_context(|| format!("oci:{}", dir.display()))?,
        Location::OciArchive { path, tag } => {
            let what = || format!("oci-archive:{}", path.display());
            let blobs = Blobs::of_archive(path).with_context(what)?;
            oci::read_image(&blobs, tag.as_deref()).with_context(what)?
        }
        Location::Registry(reference) => {
            let client = Client::connect(reference, &opts.src_registry)?;
            let dir = tempfile::Builder::new()
                .prefix("stevedore-pull-")
                .tempdir()?;
            let pulled = pull::pull(&client, reference, &opts.want, dir.path(), opts.jobs)?;
            keep.push(Box::new(dir));
            let mut image = pulled.image;
            if let Version::Tag(t) = &reference.version {
                image.repo_tags = vec![format!(
                    "{}/{}:{t}",
                    reference.registry, reference.repository
                )];
            }
            image
        }
    };
    Ok(Read { image, keep })
}

/// The image of a docker archive named `name` (or its first), and the archive, which
/// keeps a decompressed copy alive while the layers are read.
fn read_docker_archive(path: &Path, name: Option<&str>) -> Result<(Image, Archive)> {
    let read = || -> Result<(Image, Archive)> {
        let archive = Archive::open(path)?;
        let entry = archive.entry(name)?;
        let config = archive.config(&entry)?;
        Ok((archive.image(&entry, config)?, archive))
    };
    read().with_context(|| format!("docker-archive:{}", path.display()))
}

/// Writes `image` to `dest`.
pub fn write(mut image: Image, dest: &Location, opts: &Options) -> Result<()> {
    match dest {
        Location::Conf(_) => bail!("a conf cannot be a destination: expected {DESTS}"),
        Location::DockerArchive { path, name } => {
            if let Some(n) = name {
                image.repo_tags = vec![n.clone()];
            }
            let compression = opts.compression.unwrap_or(Compression::NONE);
            let dir = parent(path);
            let work = tempfile::Builder::new()
                .prefix(".stevedore-")
                .tempdir_in(dir)?;
            recode_layers(&mut image, compression, work.path())?;
            write_atomically(path, |file| {
                docker_archive::write_file(&image, file, false).map(|_| ())
            })
        }
        Location::Oci { dir, tag } => {
            oci::write_image(&image, dir, tag.as_deref(), layout_options(opts))?;
            Ok(())
        }
        Location::OciArchive { path, tag } => write_oci_archive(path, |dir| {
            oci::write_image(&image, dir, tag.as_deref(), layout_options(opts)).map(|_| ())
        }),
        Location::Registry(reference) => {
            let client = Client::connect(reference, &opts.registry)?;
            push::push(
                &client,
                reference,
                &image,
                &push_options(opts),
                &Cache::user(),
                false,
            )?;
            Ok(())
        }
    }
}

/// Writes several images to `dest` as one image index (or manifest list).
pub fn write_index(images: Vec<Image>, dest: &Location, opts: &Options) -> Result<()> {
    match dest {
        Location::Conf(_) => bail!("a conf cannot be a destination: expected {DESTS}"),
        Location::DockerArchive { .. } => bail!(
            "a docker archive holds no image index: write several images to oci:, oci-archive: or docker://"
        ),
        Location::Oci { dir, tag } => {
            oci::write_images(&images, dir, tag.as_deref(), layout_options(opts))?;
            Ok(())
        }
        Location::OciArchive { path, tag } => write_oci_archive(path, |dir| {
            oci::write_images(&images, dir, tag.as_deref(), layout_options(opts)).map(|_| ())
        }),
        Location::Registry(reference) => {
            let client = Client::connect(reference, &opts.registry)?;
            let push_opts = push_options(opts);
            let cache = Cache::user();
            let mut manifests = Vec::new();
            for image in &images {
                let outcome = push::push(&client, reference, image, &push_opts, &cache, true)?;
                manifests.push(outcome.manifest);
            }
            push::push_index(&client, reference, manifests, push_opts.format)?;
            Ok(())
        }
    }
}

/// Writes a layout with `fill` into a temporary directory beside `path`, then archives it
/// to `path` (which appears only when complete).
fn write_oci_archive(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix(".stevedore-")
        .tempdir_in(parent(path))?;
    fill(work.path())?;
    write_atomically(path, |file| tar_layout(work.path(), file))
}

fn push_options(opts: &Options) -> push::Options {
    push::Options {
        compression: opts.compression.unwrap_or(Compression::GZIP),
        format: opts.format.unwrap_or(Format::Oci),
        mount_from: opts.mount_from.clone(),
        jobs: opts.jobs,
    }
}

fn layout_options(opts: &Options) -> WriteOptions {
    WriteOptions {
        compression: opts.compression.unwrap_or(Compression::GZIP),
        format: opts.format.unwrap_or(Format::Oci),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Stores every layer whose source is not stored with `compression`'s codec as a file in
/// `work` that is, so that a docker archive can copy it.
fn recode_layers(image: &mut Image, compression: Compression, work: &Path) -> Result<()> {
    image
        .layers
        .par_iter_mut()
        .with_max_len(1)
        .enumerate()
        .try_for_each(|(i, layer)| {
            if layer.source.codec() == compression.codec {
                return Ok(());
            }
            let path = work.join(format!("layer-{i}"));
            let file = std::fs::File::create(&path)
                .with_context(|| format!("{}: cannot create", path.display()))?;
            let produced =
                produce_blob(layer, compression, &file).with_context(|| layer.what.clone())?;
            layer.diff_id = Some(produced.diff_id);
            layer.source = Source::File {
                path,
                offset: 0,
                len: produced.size,
                codec: compression.codec,
            };
            Ok::<_, anyhow::Error>(())
        })?;
    Ok(())
}

/// Archives the layout directory `dir` (its files, in name order) into `out`.
fn tar_layout(dir: &Path, out: &std::fs::File) -> Result<()> {
    let mut items = Vec::new();
    let mut blobs: Vec<PathBuf> = std::fs::read_dir(dir.join("blobs/sha256"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    blobs.sort();
    items.push(dir_item("blobs/"));
    items.push(dir_item("blobs/sha256/"));
    for b in &blobs {
        let name = format!(
            "blobs/sha256/{}",
            b.file_name().unwrap_or_default().to_string_lossy()
        );
        items.push(file_item(&name, b)?);
    }
    items.push(file_item("index.json", &dir.join("index.json"))?);
    items.push(file_item("oci-layout", &dir.join("oci-layout"))?);
    let mut w = std::io::BufWriter::new(out);
    gnu::write_items(&items, 0, &mut w)?;
    std::io::Write::flush(&mut w).context("cannot write output")
}

fn dir_item(name: &str) -> Item {
    Item {
        name: name.as_bytes().to_vec(),
        ..Item::root_owned(kind::DIR, 0o755)
    }
}

fn file_item(name: &str, path: &Path) -> Result<Item> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot stat", path.display()))?
        .len();
    Ok(Item {
        name: name.as_bytes().to_vec(),
        size,
        content: Content::File(path.to_path_buf()),
        ..Item::root_owned(kind::REG, 0o644)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports_as_skopeo_names_them() {
        assert_eq!(
            Location::source("oci:/tmp/x:v1").unwrap(),
            Location::Oci {
                dir: "/tmp/x".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Location::dest("docker-archive:out.tar:hello:latest").unwrap(),
            Location::DockerArchive {
                path: "out.tar".into(),
                name: Some("hello:latest".into())
            }
        );
        assert_eq!(
            Location::source("conf.json").unwrap(),
            Location::Conf("conf.json".into())
        );
        for bad in [
            "docker://X/y",
            "docker://h:5000/a:",
            "oci:",
            "dir:/x",
            "docker-archive:x.tar:notag",
            "oci:/x:",
            "x.tar",
        ] {
            assert!(Location::source(bad).is_err(), "{bad}");
        }
        assert!(Location::dest("conf.json").is_err());
    }
}
