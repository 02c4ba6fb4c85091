//! nixpkgs' `referencesByPopularity` (closure-graph.py) and the split that
//! `streamLayeredImage` used before the layering pipeline: the `limit - 1` most popular
//! paths get a layer each and every remaining path goes into one last layer.
//!
//! closure-graph.py counts, for every path, the occurrences of it in the tree obtained by
//! expanding the graph from its roots. That count equals the sum, over the path and all
//! its ancestors, of the number of distinct routes from a root to each of them, which is
//! what is computed here (in `u128`, falling back to big integers if that overflows).

use crate::store::Graph;
use num_bigint::BigUint;
use num_traits::{CheckedAdd, One, Zero};
use std::collections::HashSet;

/// Paths of `graph`, most popular first, ties by `package_name` ascending.
pub fn order(graph: &Graph) -> Vec<String> {
    match popularity::<u128>(graph) {
        Some(pop) => order_by(graph, &pop),
        None => order_by(graph, &popularity::<BigUint>(graph).expect("big integers")),
    }
}

/// The vertices of a subgraph (`vertices`, in igraph order) by popularity within it, as
/// flatten_references_graph's `popularity_contest` orders them.
pub fn order_subgraph(graph: &Graph, vertices: &[usize]) -> Vec<usize> {
    order(&graph.induced(vertices))
        .into_iter()
        .map(|p| graph.find(&p).expect("a vertex of the graph"))
        .collect()
}

/// The old jq split over the popularity order, excluded paths removed first.
pub fn split(graph: &Graph, exclude: &HashSet<String>, limit: usize) -> Vec<Vec<String>> {
    let paths: Vec<String> = order(graph)
        .into_iter()
        .filter(|p| !exclude.contains(p))
        .collect();
    let singles = limit.saturating_sub(1).min(paths.len());
    let mut layers: Vec<Vec<String>> = paths[..singles].iter().map(|p| vec![p.clone()]).collect();
    if paths.len() > singles {
        layers.push(paths[singles..].to_vec());
    }
    layers
}

/// closure-graph.py's `package_name`: the first '-'-separated part moved to the end.
fn package_name(path: &str) -> String {
    match path.split_once('-') {
        Some((first, rest)) => format!("{rest}-{first}"),
        None => path.to_string(),
    }
}

fn order_by<C: Ord>(graph: &Graph, pop: &[C]) -> Vec<String> {
    let mut keyed: Vec<(&C, String, usize)> = (0..graph.len())
        .map(|i| (&pop[i], package_name(&graph.nodes[i].path), i))
        .collect();
    keyed.sort_by(|a, b| b.0.cmp(a.0).then_with(|| a.1.cmp(&b.1)));
    keyed
        .into_iter()
        .map(|(_, _, i)| graph.nodes[i].path.clone())
        .collect()
}

/// Popularity of every node, or `None` if `C` overflows.
fn popularity<C: Clone + Ord + CheckedAdd + Zero + One>(graph: &Graph) -> Option<Vec<C>> {
    let n = graph.len();
    let users = graph.users();
    let order = graph.topological_order();
    // routes[w]: number of distinct routes from a virtual root (above all roots) to w.
    let mut routes = vec![C::zero(); n];
    for &w in &order {
        if users[w].is_empty() {
            routes[w] = C::one();
        }
        for &r in &graph.nodes[w].references {
            routes[r] = routes[r].checked_add(&routes[w])?;
        }
    }
    // ancestors[y]: y and every node from which y is reachable, as a bitset.
    let words = n.div_ceil(64);
    let mut ancestors = vec![0u64; n * words];
    let mut pop = vec![C::zero(); n];
    for &y in &order {
        ancestors[y * words + y / 64] |= 1 << (y % 64);
        for &u in &users[y] {
            for k in 0..words {
                ancestors[y * words + k] |= ancestors[u * words + k];
            }
        }
        let mut total = C::zero();
        for k in 0..words {
            let mut bits = ancestors[y * words + k];
            while bits != 0 {
                let w = k * 64 + bits.trailing_zeros() as usize;
                total = total.checked_add(&routes[w])?;
                bits &= bits - 1;
            }
        }
        pop[y] = total;
    }
    Some(pop)
}
