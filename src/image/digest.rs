//! Content digests (`sha256:<64 hex>`, `sha512:<128 hex>`), parsed and checked once, so
//! that everything holding a `Digest` can trust it (a digest read from an archive or a
//! registry names blob files and URLs: it must not hold anything else).

use anyhow::{bail, Result};
use sha2::Digest as _;
use std::fmt;

/// A hash algorithm a digest may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// An algorithm and a lower-case hex value of the right length.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses `algorithm:hex`.
    pub fn parse(text: &str) -> Result<Digest> {
        let Some((name, hex)) = text.split_once(':') else {
            bail!("{text:?} is not a digest (algorithm:hex)");
        };
        let algorithm = match name {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => bail!("{text:?}: unsupported digest algorithm {name:?}"),
        };
        Digest::new(algorithm, hex).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))
    }

    /// A sha256 digest from its hex value.
    pub fn sha256(hex: &str) -> Result<Digest> {
        Digest::new(Algorithm::Sha256, hex)
    }

    fn new(algorithm: Algorithm, hex: &str) -> Result<Digest> {
        let lower_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if hex.len() != algorithm.hex_len() || !lower_hex {
            bail!(
                "not {} lower-case hex digits of {}",
                algorithm.hex_len(),
                algorithm.name()
            );
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(sha2::Sha256::digest(bytes).into())
    }

    /// The digest of a finished sha256.
    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(hash),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex value, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        let text = format!("sha256:{}", "ab".repeat(32));
        let d = Digest::parse(&text).unwrap();
        assert_eq!(d.to_string(), text);
        assert_eq!(d.hex(), "ab".repeat(32));
        assert_eq!(
            Digest::of(b""),
            Digest::sha256("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .unwrap()
        );
    }

    #[test]
    fn refuses_what_is_not_a_digest() {
        for bad in [
            "sha256:",
            "sha256:AB",
            &format!("sha256:{}", "AB".repeat(32)),
            &format!("sha256:{}/..", "ab".repeat(31)),
            &format!("md5:{}", "ab".repeat(16)),
            "ab",
            &format!("sha512:{}", "ab".repeat(32)),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }
}
