//! Image references as `docker://` names them: `HOST[:PORT]/REPO[:TAG|@DIGEST]`, or
//! Docker Hub's short forms (`alpine`, `library/alpine:3`), normalised as docker does:
//! no host means `docker.io`, and a one-part repository there gains `library/`.

use crate::image::digest::Digest;
use anyhow::{bail, Result};
use std::fmt;

/// Docker Hub's name and the host its API answers on.
const HUB: &str = "docker.io";
const HUB_API: &str = "registry-1.docker.io";

/// A tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    Tag(String),
    Digest(Digest),
}

/// A repository in a registry, and optionally one image of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (or `docker.io`).
    pub registry: String,
    pub repository: String,
    pub version: Version,
}

impl Reference {
    /// Parses `HOST/REPO[:TAG|@DIGEST]` (no `docker://`); the tag defaults to `latest`.
    pub fn parse(text: &str) -> Result<Reference> {
        let (name, version) = match text.split_once('@') {
            Some((n, d)) => (n, Version::Digest(Digest::parse(d)?)),
            None => match text.rsplit_once(':') {
                Some((n, t)) if !t.contains('/') => (n, Version::Tag(t.to_string())),
                _ => (text, Version::Tag("latest".to_string())),
            },
        };
        if let Version::Tag(t) = &version {
            if !valid_tag(t) {
                bail!("{text:?}: {t:?} is not a tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})");
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((host, rest)) if is_host(host) => (host.to_string(), rest.to_string()),
            _ => (HUB.to_string(), name.to_string()),
        };
        let repository = match registry == HUB && !repository.contains('/') {
            true => format!("library/{repository}"),
            false => repository,
        };
        if !valid_repository(&repository) {
            bail!("{text:?}: {repository:?} is not a repository name (lower-case a-z, 0-9, separators . _ __ - and /)");
        }
        Ok(Reference {
            registry,
            repository,
            version,
        })
    }

    /// The host and port requests go to.
    pub fn api_host(&self) -> &str {
        match self.registry.as_str() {
            HUB => HUB_API,
            r => r,
        }
    }

    /// Whether the registry is this machine, where plain http is assumed, as skopeo and
    /// docker do.
    pub fn is_local(&self) -> bool {
        is_loopback(host_name(&self.registry))
    }

    /// The same repository at another version.
    pub fn with_version(&self, version: Version) -> Reference {
        Reference {
            version,
            ..self.clone()
        }
    }

    /// The tag or digest as a manifest URL names it.
    pub fn version_text(&self) -> String {
        match &self.version {
            Version::Tag(t) => t.clone(),
            Version::Digest(d) => d.to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Version::Tag(t) => write!(f, "{}/{}:{t}", self.registry, self.repository),
            Version::Digest(d) => write!(f, "{}/{}@{d}", self.registry, self.repository),
        }
    }
}

/// The host of `host[:port]`.
pub fn host_name(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// Whether a host name is this machine.
pub fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
}

/// The first part of a name is a host when it has a dot or a port, or is `localhost`.
fn is_host(part: &str) -> bool {
    part.contains('.') || part.contains(':') || part == "localhost"
}

fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first = bytes.next();
    tag.len() <= 128
        && first.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// distribution's name grammar: components of `[a-z0-9]+` joined by `.`, `_`, `__` or
/// runs of `-`, separated by `/`.
fn valid_repository(name: &str) -> bool {
    name.len() <= 255 && name.split('/').all(valid_component)
}

fn valid_component(part: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = part.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_as_docker_does() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "a/b")
        );
        assert!(r.is_local());
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(r.version_text(), d);
        assert!(!Reference::parse("quay.io/x/y").unwrap().is_local());
    }

    #[test]
    fn refuses_what_a_registry_would() {
        for bad in [
            "Upper/case",
            "host:5000/a//b",
            "host:5000/a:",
            "host:5000/a:-x",
            "host:5000/../x",
            "host:5000/a@sha256:12",
            "host:5000/a_-b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
