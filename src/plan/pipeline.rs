//! nixpkgs' `layeringPipeline` DSL (`dockerMakeLayers` / flatten_references_graph).

use crate::store::Graph;
use anyhow::{bail, Result};
use serde_json::Value;
use std::collections::HashSet;

/// Runs a pipeline over `graph` with `exclude` removed.
pub fn run(
    _graph: &Graph,
    _exclude: &HashSet<String>,
    pipeline: &Value,
) -> Result<Vec<Vec<String>>> {
    bail!("layeringPipeline {pipeline} is not supported yet")
}
