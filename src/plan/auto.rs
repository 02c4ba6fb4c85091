//! nixpkgs' `dockerAutoLayer` (auto-layer.py, PR #355189): the largest store paths
//! become layer "primaries" one by one, and every path is grouped by the set of
//! primaries that claim it, until one more primary would exceed the layer limit.
//!
//! Same budget rule, same grouping, same in-layer order (name, then hash) and same
//! layer order (closure size) as nixpkgs. Two points where nixpkgs depends on input
//! order or on CPython internals:
//! - narSize ties among candidate primaries: nixpkgs takes the later entry of the
//!   graph first; the graph is sorted by path here, which is the order Nix writes it in.
//! - layers with equal closure sizes: nixpkgs keeps the iteration order of a CPython
//!   `set` of frozensets, which depends on string hashing; it is reproduced for
//!   `PYTHONHASHSEED=0`, which nixpkgs' Python setup hook exports (see `cpython_set`).

use super::cpython_set::{frozenset_hash, set_order, str_hash};
use crate::store::Graph;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// Interned sets of primaries; a layer is identified by its set.
#[derive(Default)]
struct Sets {
    ids: HashMap<Vec<u32>, u32>,
    sets: Vec<Vec<u32>>,
    members: Vec<usize>,
    live: usize,
}

impl Sets {
    fn intern(&mut self, set: Vec<u32>) -> u32 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.ids.insert(set.clone(), id);
        self.sets.push(set);
        self.members.push(0);
        id
    }

    fn add(&mut self, id: u32) {
        self.members[id as usize] += 1;
        if self.members[id as usize] == 1 {
            self.live += 1;
        }
    }

    fn remove(&mut self, id: u32) {
        self.members[id as usize] -= 1;
        if self.members[id as usize] == 0 {
            self.live -= 1;
        }
    }
}

/// The layer split: for each node, the id of its set of primaries.
struct Split {
    of: Vec<u32>,
    sets: Sets,
}

impl Split {
    fn assign(&mut self, node: usize, id: u32, undo: &mut Vec<(usize, u32)>) {
        let old = self.of[node];
        if old != id {
            undo.push((node, old));
            self.sets.remove(old);
            self.sets.add(id);
            self.of[node] = id;
        }
    }

    fn revert(&mut self, undo: Vec<(usize, u32)>) {
        for (node, old) in undo.into_iter().rev() {
            let now = self.of[node];
            self.sets.remove(now);
            self.sets.add(old);
            self.of[node] = old;
        }
    }
}

/// Splits `graph` into at most `limit` layers as auto-layer.py does.
pub fn auto_layer(graph: &Graph, exclude: &HashSet<String>, limit: usize) -> Vec<Vec<String>> {
    let split = choose_split(graph, limit);
    let layers = group_layers(graph, &split);
    layers
        .into_iter()
        .map(|paths| {
            paths
                .into_iter()
                .map(|i| graph.nodes[i].path.clone())
                .filter(|p| !exclude.contains(p))
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

fn choose_split(graph: &Graph, limit: usize) -> Split {
    let n = graph.len();
    let users = graph.users();
    let mut sets = Sets::default();
    let empty = sets.intern(Vec::new());
    (0..n).for_each(|_| sets.add(empty));
    let mut split = Split {
        of: vec![empty; n],
        sets,
    };
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by_key(|&i| graph.nodes[i].nar_size);
    for &primary in by_size.iter().rev() {
        let deps = graph.reach(&graph.nodes[primary].references, &|i| {
            &graph.nodes[i].references
        });
        let ups = graph.reach(&users[primary], &|i| &users[i]);
        let mut undo = Vec::new();
        let own = split.sets.intern(vec![primary as u32]);
        split.assign(primary, own, &mut undo);
        for dep in (0..n).filter(|&d| deps[d] && d != primary) {
            let mut set: Vec<u32> = split.sets.sets[split.of[dep] as usize]
                .iter()
                .copied()
                .filter(|&p| !ups[p as usize] || p as usize == primary)
                .collect();
            if !set
                .iter()
                .any(|&p| deps[p as usize] && p as usize != primary)
            {
                if let Err(at) = set.binary_search(&(primary as u32)) {
                    set.insert(at, primary as u32);
                }
            }
            let id = split.sets.intern(set);
            split.assign(dep, id, &mut undo);
        }
        if split.sets.live > limit {
            split.revert(undo);
            break;
        }
    }
    split
}

/// `path_key` of auto-layer.py: the part after the first '-', then the part before it.
fn path_key(path: &str) -> (&str, &str) {
    match path.split_once('-') {
        Some((hash, name)) => (name, hash),
        None => ("", path),
    }
}

fn compare_paths(graph: &Graph, a: usize, b: usize) -> Ordering {
    path_key(&graph.nodes[a].path).cmp(&path_key(&graph.nodes[b].path))
}

/// Layers as node lists, in nixpkgs' order: by closure size, ties in the order CPython
/// iterates `set(layer_split.values())`.
fn group_layers(graph: &Graph, split: &Split) -> Vec<Vec<usize>> {
    let mut ids: Vec<u32> = Vec::new();
    let mut groups: HashMap<u32, Vec<usize>> = HashMap::new();
    for (node, &id) in split.of.iter().enumerate() {
        let group = groups.entry(id).or_default();
        if group.is_empty() {
            ids.push(id);
        }
        group.push(node);
    }
    let hashes: Vec<u64> = ids
        .iter()
        .map(|&id| {
            let primaries = &split.sets.sets[id as usize];
            let items: Vec<u64> = primaries
                .iter()
                .map(|&p| str_hash(graph.nodes[p as usize].path.as_bytes()))
                .collect();
            frozenset_hash(&items)
        })
        .collect();
    // Python's sizes are unbounded integers: no narSize sum can overflow here.
    let mut layers: Vec<(u128, Vec<usize>)> = set_order(&hashes)
        .into_iter()
        .map(|k| {
            let mut nodes = groups.remove(&ids[k]).expect("group");
            nodes.sort_by(|&a, &b| compare_paths(graph, a, b));
            let closure = graph.reach(&nodes, &|i| &graph.nodes[i].references);
            let size = (0..graph.len())
                .filter(|&i| closure[i])
                .map(|i| graph.nodes[i].nar_size as u128)
                .sum();
            (size, nodes)
        })
        .collect();
    layers.sort_by_key(|(size, _)| *size);
    layers.into_iter().map(|(_, nodes)| nodes).collect()
}
