//! nixpkgs' `layeringPipeline` DSL (`dockerMakeLayers`, flatten_references_graph): a
//! list of `[name, args...]` steps applied in turn to the closure graph (excluded paths
//! removed first), whose result is flattened into layers.
//!
//! Graphs are vertex lists in igraph order: the closure sorted by narSize (stable, so
//! ties keep Nix's path order), induced subgraphs keeping their parent's order, merged
//! graphs concatenated. Steps: popularity_contest, limit_layers, split_every,
//! split_paths, subcomponent_out, subcomponent_in, remove_paths, over, map, pipe,
//! flatten, reverse. Where nixpkgs would crash (limit_layers over fewer graphs than its
//! limit) no empty layer is made; empty graphs never become layers.

use super::popularity;
use crate::store::Graph;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// A value flowing through the pipeline.
#[derive(Clone, Debug)]
enum Val {
    Graph(Vec<usize>),
    List(Vec<Val>),
    Dict(Vec<(String, Val)>),
}

/// Runs `pipeline` (JSON, or a string naming a JSON file) over `graph` minus `exclude`.
pub fn run(graph: &Graph, exclude: &HashSet<String>, pipeline: &Value) -> Result<Vec<Vec<String>>> {
    let pipeline = match pipeline {
        Value::String(file) => serde_json::from_slice(
            &std::fs::read(file)
                .with_context(|| format!("layeringPipeline {file}: cannot read"))?,
        )
        .with_context(|| format!("layeringPipeline {file}: not JSON"))?,
        other => other.clone(),
    };
    let mut vertices: Vec<usize> = (0..graph.len())
        .filter(|&i| !exclude.contains(&graph.nodes[i].path))
        .collect();
    vertices.sort_by_key(|&i| graph.nodes[i].nar_size);
    let ctx = Ctx {
        graph,
        index: graph_index(graph),
    };
    let result = ctx
        .pipe(&pipeline, Val::Graph(vertices))
        .context("layeringPipeline")?;
    let mut layers = Vec::new();
    flatten(result, &mut layers);
    Ok(layers
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.into_iter().map(|i| graph.nodes[i].path.clone()).collect())
        .collect())
}

fn graph_index(graph: &Graph) -> HashMap<&str, usize> {
    graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.path.as_str(), i))
        .collect()
}

fn flatten(v: Val, out: &mut Vec<Vec<usize>>) {
    match v {
        Val::Graph(g) => out.push(g),
        Val::List(items) => items.into_iter().for_each(|x| flatten(x, out)),
        Val::Dict(entries) => entries.into_iter().for_each(|(_, x)| flatten(x, out)),
    }
}

struct Ctx<'a> {
    graph: &'a Graph,
    index: HashMap<&'a str, usize>,
}

impl Ctx<'_> {
    fn pipe(&self, steps: &Value, input: Val) -> Result<Val> {
        let steps = steps.as_array().context("a pipeline is a list of steps")?;
        steps
            .iter()
            .try_fold(input, |acc, step| self.step(step, acc))
    }

    fn step(&self, step: &Value, input: Val) -> Result<Val> {
        let parts = step
            .as_array()
            .with_context(|| format!("step {step} is not a list"))?;
        let name = parts
            .first()
            .and_then(Value::as_str)
            .with_context(|| format!("step {step} has no name"))?;
        let arg = |i: usize| {
            parts
                .get(i)
                .with_context(|| format!("step {step} needs an argument"))
        };
        let count = |i: usize| -> Result<usize> {
            let n = arg(i)?
                .as_u64()
                .with_context(|| format!("step {step}: expected a number"))?;
            if n == 0 {
                bail!("step {step}: the count must be > 0");
            }
            Ok(n as usize)
        };
        match name {
            "pipe" => self.pipe(arg(1)?, input),
            "over" => {
                let key = arg(1)?
                    .as_str()
                    .with_context(|| format!("step {step}: key must be a string"))?;
                let Val::Dict(mut entries) = input else {
                    bail!("step {step}: input is not a dict")
                };
                let slot = entries
                    .iter_mut()
                    .find(|(k, _)| k == key)
                    .with_context(|| format!("step {step}: no key {key:?}"))?;
                slot.1 = self.step(arg(2)?, slot.1.clone())?;
                Ok(Val::Dict(entries))
            }
            "map" => {
                let f = arg(1)?;
                Ok(Val::List(
                    list(input)?
                        .into_iter()
                        .map(|x| self.step(f, x))
                        .collect::<Result<_>>()?,
                ))
            }
            "flatten" => {
                let mut out = Vec::new();
                flatten(input, &mut out);
                Ok(Val::List(out.into_iter().map(Val::Graph).collect()))
            }
            "reverse" => Ok(Val::List(list(input)?.into_iter().rev().collect())),
            "limit_layers" => Ok(limit_layers(count(1)?, list(input)?)),
            "split_every" => {
                let g = self.as_graph(input)?;
                Ok(Val::List(
                    g.chunks(count(1)?)
                        .map(|c| Val::Graph(c.to_vec()))
                        .collect(),
                ))
            }
            "remove_paths" => {
                let drop: HashSet<usize> = self.paths(arg(1)?).into_iter().collect();
                Ok(Val::Graph(
                    self.as_graph(input)?
                        .into_iter()
                        .filter(|v| !drop.contains(v))
                        .collect(),
                ))
            }
            "popularity_contest" => {
                let g = self.as_graph(input)?;
                let order = popularity::order_subgraph(self.graph, &g);
                Ok(Val::List(
                    order.into_iter().map(|v| Val::Graph(vec![v])).collect(),
                ))
            }
            "subcomponent_out" | "subcomponent_in" => {
                let g = self.as_graph(input)?;
                let starts = self.paths(arg(1)?);
                let main =
                    self.reach_within(&g, &starts, name == "subcomponent_out", &HashSet::new());
                Ok(split_by(&g, &[("main", &main)], "rest"))
            }
            "split_paths" => self.split_paths(self.as_graph(input)?, arg(1)?),
            other => bail!("unknown pipeline step {other:?}"),
        }
    }

    fn as_graph(&self, v: Val) -> Result<Vec<usize>> {
        match v {
            Val::Graph(g) => Ok(g),
            other => bail!("expected a graph, got {}", kind(&other)),
        }
    }

    /// Vertices named by a path or a list of paths (missing ones ignored).
    fn paths(&self, v: &Value) -> Vec<usize> {
        let names: Vec<&str> = match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        names
            .iter()
            .filter_map(|n| self.index.get(n).copied())
            .collect()
    }

    /// Vertices of `g` reachable from `starts` (in `g`) following references (`out`) or
    /// users, never entering `blocked`.
    fn reach_within(
        &self,
        g: &[usize],
        starts: &[usize],
        out: bool,
        blocked: &HashSet<usize>,
    ) -> HashSet<usize> {
        let members: HashSet<usize> = g.iter().copied().collect();
        let users = if out { Vec::new() } else { self.graph.users() };
        let mut seen = HashSet::new();
        let mut todo: Vec<usize> = starts
            .iter()
            .copied()
            .filter(|s| members.contains(s))
            .collect();
        while let Some(v) = todo.pop() {
            if seen.insert(v) {
                let next = if out {
                    &self.graph.nodes[v].references
                } else {
                    &users[v]
                };
                todo.extend(
                    next.iter()
                        .copied()
                        .filter(|n| members.contains(n) && !blocked.contains(n)),
                );
            }
        }
        seen
    }

    fn split_paths(&self, g: Vec<usize>, specs: &Value) -> Result<Val> {
        let members: HashSet<usize> = g.iter().copied().collect();
        let mut split = Vec::new();
        for spec in specs.as_array().context("split_paths takes a list")? {
            match spec {
                Value::Object(o) => {
                    let of = o
                        .get("children_of")
                        .context("split path spec: only children_of is allowed")?;
                    for p in self.paths(of).into_iter().filter(|p| members.contains(p)) {
                        split.extend(
                            self.graph.nodes[p]
                                .references
                                .iter()
                                .filter(|r| members.contains(r)),
                        );
                    }
                }
                other => split.extend(
                    self.paths(other)
                        .into_iter()
                        .filter(|p| members.contains(p)),
                ),
            }
        }
        if split.is_empty() {
            return Ok(Val::Dict(vec![("rest".into(), Val::Graph(g))]));
        }
        let used: HashSet<usize> = g
            .iter()
            .flat_map(|&v| self.graph.nodes[v].references.clone())
            .filter(|r| members.contains(r))
            .collect();
        let roots: Vec<usize> = g.iter().copied().filter(|v| !used.contains(v)).collect();
        if roots.len() == 1 && split.contains(&roots[0]) {
            return Ok(Val::Dict(vec![("main".into(), Val::Graph(g))]));
        }
        let split_off = self.reach_within(&g, &split, true, &HashSet::new());
        let blocked: HashSet<usize> = split.iter().copied().collect();
        let starts: Vec<usize> = roots.into_iter().filter(|r| !blocked.contains(r)).collect();
        let rest_with_common = self.reach_within(&g, &starts, true, &blocked);
        let common: HashSet<usize> = split_off.intersection(&rest_with_common).copied().collect();
        let main: HashSet<usize> = split_off.difference(&common).copied().collect();
        let rest: HashSet<usize> = rest_with_common.difference(&common).copied().collect();
        let pick = |set: &HashSet<usize>| {
            g.iter()
                .copied()
                .filter(|v| set.contains(v))
                .collect::<Vec<_>>()
        };
        let entries = [
            ("main", pick(&main)),
            ("common", pick(&common)),
            ("rest", pick(&rest)),
        ];
        Ok(Val::Dict(
            entries
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), Val::Graph(v)))
                .collect(),
        ))
    }
}

fn list(v: Val) -> Result<Vec<Val>> {
    match v {
        Val::List(items) => Ok(items),
        other => bail!("expected a list of graphs, got {}", kind(&other)),
    }
}

fn kind(v: &Val) -> &'static str {
    match v {
        Val::Graph(_) => "a graph",
        Val::List(_) => "a list",
        Val::Dict(_) => "a dict",
    }
}

/// The first `n - 1` items, then one graph merging the rest (in order).
fn limit_layers(n: usize, items: Vec<Val>) -> Val {
    let mut out: Vec<Val> = items.iter().take(n - 1).cloned().collect();
    let mut rest = Vec::new();
    for item in items.into_iter().skip(n - 1) {
        flatten(item, &mut rest);
    }
    if !rest.is_empty() {
        out.push(Val::Graph(rest.concat()));
    }
    Val::List(out)
}

/// `{main: ..., rest: g minus main}` with empty parts dropped.
fn split_by(g: &[usize], parts: &[(&str, &HashSet<usize>)], rest_key: &str) -> Val {
    let mut entries = Vec::new();
    let mut taken = HashSet::new();
    for (key, set) in parts {
        let part: Vec<usize> = g.iter().copied().filter(|v| set.contains(v)).collect();
        taken.extend(part.iter().copied());
        if !part.is_empty() {
            entries.push((key.to_string(), Val::Graph(part)));
        }
    }
    let rest: Vec<usize> = g.iter().copied().filter(|v| !taken.contains(v)).collect();
    if !rest.is_empty() {
        entries.push((rest_key.to_string(), Val::Graph(rest)));
    }
    Val::Dict(entries)
}
