//! stevedore: nixpkgs `dockerTools` images, byte for byte, built in one parallel pass.
//!
//! `store` reads Nix's closure graphs, `plan` turns them into layers, `tar` writes
//! layers exactly as nixpkgs does, and `image` assembles and writes images.

pub mod contents;
pub mod copy;
pub mod derivation;
pub mod image;
pub mod log;
pub mod plan;
pub mod registry;
pub mod serve;
pub mod store;
pub mod tar;
pub mod tarsum;
