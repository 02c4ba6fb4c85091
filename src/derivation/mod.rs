//! The steps stevedore runs as the builder of `nix/default.nix`'s derivations: each
//! reads the derivation's structured attributes (`.attrs.json`) and writes its outputs.

pub mod attrs;
pub mod base_json;
pub mod build_image;
pub mod conf;
pub mod layer;
pub mod nix_db;
pub mod nixery;
pub mod pull_image;
