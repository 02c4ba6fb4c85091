//! Nix store concepts: store paths, nixbase32, and the closure graph Nix exports.

pub mod graph;
pub mod nixbase32;
pub mod path;

pub use graph::{Graph, Node};
pub use path::StorePath;
