//! The image model (a config plus ordered layers that know where their bytes come
//! from), the nixpkgs streamer's conf.json, and the docker-archive reader and writers.

pub mod ahead;
pub mod base;
pub mod changes;
pub mod compress;
pub mod conf;
pub mod config;
pub mod descriptor;
pub mod digest;
pub mod docker_archive;
pub mod flatten;
pub mod hashing;
pub mod json;
pub mod jsonfmt;
pub mod layer_io;
pub mod layered;
pub mod legacy_layer;
pub mod media;
pub mod merge;
pub mod model;
pub mod oci;
pub mod output;
pub mod pyjson;
pub mod time;
pub mod users;

pub use digest::Digest;
pub use model::{Image, Layer, Source};
