//! Descriptors (what a manifest or an index says of a blob: media type, digest, size,
//! and for images in an index their platform) and platforms, in the OCI JSON shape.

use super::digest::Digest;
use super::media::MediaType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The platform an image runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform an image config JSON states (`architecture`, `os`, `variant`).
    pub fn of_config(config: &serde_json::Value) -> Platform {
        let text = |k: &str| config.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        Platform {
            architecture: text("architecture").to_string(),
            os: text("os").to_string(),
            variant: Some(text("variant"))
                .filter(|v| !v.is_empty())
                .map(str::to_string),
        }
    }
}

/// A reference to a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type,
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}
