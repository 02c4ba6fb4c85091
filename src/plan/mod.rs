//! Layer planning: pure functions from a closure graph to an ordered list of layers,
//! each layer an ordered list of store paths (nixpkgs' layer-tool JSON).

pub mod auto;
pub mod cpython_set;
pub mod nixery;
pub mod pipeline;
pub mod popularity;

use crate::store::Graph;
use std::collections::HashSet;

/// A layering algorithm, by the name users give it on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// nixpkgs' current default, `dockerAutoLayer` (auto-layer.py).
    Auto,
    /// `referencesByPopularity` order, `limit - 1` single-path layers plus one for the rest.
    Popularity,
    /// Nixery's dominator-tree layering (`nixery`); here without popularity data.
    Nixery,
}

/// Plans layers for `graph` with at most `limit` layers; `exclude` paths take part in
/// the computation (as nixpkgs' do) but never appear in the result.
pub fn plan(
    algorithm: Algorithm,
    graph: &Graph,
    exclude: &HashSet<String>,
    limit: usize,
) -> Vec<Vec<String>> {
    match algorithm {
        Algorithm::Auto => auto::auto_layer(graph, exclude, limit),
        Algorithm::Popularity => popularity::split(graph, exclude, limit),
        Algorithm::Nixery => nixery::plan(graph, &[], &Default::default(), exclude, limit),
    }
}

/// Formats layers as Python's `json.dumps` prints a list of lists of strings.
pub fn to_json(layers: &[Vec<String>]) -> String {
    crate::image::pyjson::dumps(&serde_json::json!(layers), None)
}
