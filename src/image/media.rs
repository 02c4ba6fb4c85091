//! Media types of manifests, configs and layers, in the Docker (schema 2) and OCI
//! flavours, and which one a format and a compression call for.

use super::compress::Codec;
use anyhow::{bail, Result};

/// The two families of media types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Docker,
    Oci,
}

impl Format {
    /// Parses `docker` or `oci`.
    pub fn parse(text: &str) -> Result<Format> {
        match text {
            "docker" => Ok(Format::Docker),
            "oci" => Ok(Format::Oci),
            _ => bail!("{text:?}: expected docker or oci"),
        }
    }
}

/// A media type: one this project writes, or another one read somewhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MediaType {
    Index(Format),
    Manifest(Format),
    Config(Format),
    Layer(Format, Codec),
    Other(String),
}

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

const LAYERS: [(&str, Format, Codec); 6] = [
    (
        "application/vnd.oci.image.layer.v1.tar",
        Format::Oci,
        Codec::None,
    ),
    (
        "application/vnd.oci.image.layer.v1.tar+gzip",
        Format::Oci,
        Codec::Gzip,
    ),
    (
        "application/vnd.oci.image.layer.v1.tar+zstd",
        Format::Oci,
        Codec::Zstd,
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar",
        Format::Docker,
        Codec::None,
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        Format::Docker,
        Codec::Gzip,
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
        Format::Docker,
        Codec::Zstd,
    ),
];

impl MediaType {
    /// The media type named `text`.
    pub fn parse(text: &str) -> MediaType {
        match text {
            OCI_INDEX => MediaType::Index(Format::Oci),
            OCI_MANIFEST => MediaType::Manifest(Format::Oci),
            OCI_CONFIG => MediaType::Config(Format::Oci),
            DOCKER_LIST => MediaType::Index(Format::Docker),
            DOCKER_MANIFEST => MediaType::Manifest(Format::Docker),
            DOCKER_CONFIG => MediaType::Config(Format::Docker),
            _ => match LAYERS.iter().find(|(name, ..)| *name == text) {
                Some(&(_, format, codec)) => MediaType::Layer(format, codec),
                None => MediaType::Other(text.to_string()),
            },
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Index(Format::Oci) => OCI_INDEX,
            MediaType::Index(Format::Docker) => DOCKER_LIST,
            MediaType::Manifest(Format::Oci) => OCI_MANIFEST,
            MediaType::Manifest(Format::Docker) => DOCKER_MANIFEST,
            MediaType::Config(Format::Oci) => OCI_CONFIG,
            MediaType::Config(Format::Docker) => DOCKER_CONFIG,
            MediaType::Layer(format, codec) => LAYERS
                .iter()
                .find(|(_, f, c)| f == format && c == codec)
                .map_or("", |(name, ..)| name),
            MediaType::Other(text) => text,
        }
    }
}

impl serde::Serialize for MediaType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MediaType, D::Error> {
        Ok(MediaType::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (name, ..) in LAYERS {
            assert_eq!(MediaType::parse(name).as_str(), name);
        }
        for name in [
            OCI_INDEX,
            OCI_MANIFEST,
            OCI_CONFIG,
            DOCKER_LIST,
            DOCKER_MANIFEST,
            DOCKER_CONFIG,
        ] {
            assert_eq!(MediaType::parse(name).as_str(), name);
        }
        assert_eq!(MediaType::parse("text/plain").as_str(), "text/plain");
    }
}
