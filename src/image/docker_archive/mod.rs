//! Docker archives (Docker Image Spec v1.2: `manifest.json`, image configs and layer
//! tars as members of one tar): `read` opens one and gives its images as the model,
//! `write` writes an image as one, as nixpkgs' streamer does.

pub mod read;
pub mod write;

pub use read::Archive;
pub use write::{
    check_digest, compress_file, write_compressed, write_file, write_stream, Compressor, Written,
};
