//! Properties of the layering algorithms on random DAGs: every path lands in exactly one
//! layer, excluded paths in none, the layer budget holds, and the order of the input
//! entries does not matter; for Nixery's, also that dominated paths stay with their
//! dominator and big or popular paths keep their own layer unless the budget forces a
//! merge.

use proptest::prelude::*;
use std::collections::HashSet;
use stevedore::plan::nixery::{self, Popularity};
use stevedore::plan::{plan, Algorithm};
use stevedore::store::Graph;

fn path(i: usize) -> String {
    let alphabet = b"0123456789abcdfghijklmnpqrsvwxyz";
    let hash: String = (0..32)
        .map(|k| alphabet[(i * 7 + k * 13) % 32] as char)
        .collect();
    format!("/nix/store/{hash}-p{i}")
}

fn graph_json(sizes: &[u64], edges: &[(usize, usize)], order: &[usize]) -> String {
    let nodes: Vec<serde_json::Value> = order
        .iter()
        .map(|&i| {
            let refs: Vec<String> = edges.iter().filter(|e| e.0 == i).map(|e| path(e.1)).collect();
            serde_json::json!({"path": path(i), "references": refs, "narSize": sizes[i], "closureSize": 0, "narHash": ""})
        })
        .collect();
    serde_json::Value::Array(nodes).to_string()
}

fn dag() -> impl Strategy<Value = (Vec<u64>, Vec<(usize, usize)>)> {
    (1usize..40).prop_flat_map(|n| {
        let sizes = proptest::collection::vec(1u64..5000, n);
        let edges = proptest::collection::vec((0..n, 0..n), 0..n * 3)
            .prop_map(|es| es.into_iter().filter(|(a, b)| a > b).collect::<Vec<_>>());
        (sizes, edges)
    })
}

proptest! {
    #[test]
    fn every_path_in_exactly_one_layer(
        (sizes, edges) in dag(), limit in 1usize..12, seed in any::<u64>(), which in 0usize..3
    ) {
        let n = sizes.len();
        let order: Vec<usize> = (0..n).collect();
        let g = Graph::from_json(graph_json(&sizes, &edges, &order).as_bytes(), None, "/nix/store").unwrap();
        let exclude: HashSet<String> = (0..n).filter(|&i| (i as u64 ^ seed).is_multiple_of(5)).map(path).collect();
        let algorithm = [Algorithm::Auto, Algorithm::Popularity, Algorithm::Nixery][which];
        let layers = plan(algorithm, &g, &exclude, limit);
        prop_assert!(layers.len() <= limit.max(1));
        prop_assert!(layers.iter().all(|l| !l.is_empty()));
        let mut seen = HashSet::new();
        for p in layers.iter().flatten() {
            prop_assert!(seen.insert(p.clone()), "{} twice", p);
            prop_assert!(!exclude.contains(p));
        }
        prop_assert_eq!(seen.len(), n - exclude.len());

        let mut shuffled = order.clone();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let g2 = Graph::from_json(graph_json(&sizes, &edges, &shuffled).as_bytes(), None, "/nix/store").unwrap();
        prop_assert_eq!(plan(algorithm, &g2, &exclude, limit), layers);
    }
}

/// A store path for the Nixery properties: every 7th is an `nss-cacert` (always popular).
fn npath(i: usize) -> String {
    let p = path(i);
    if i % 7 == 3 {
        p.replace(&format!("-p{i}"), &format!("-nss-cacert-{i}"))
    } else {
        p
    }
}

fn nixery_graph(sizes: &[u64], edges: &[(usize, usize)], order: &[usize]) -> Graph {
    let nodes: Vec<serde_json::Value> = order
        .iter()
        .map(|&i| {
            let mut refs: Vec<String> = edges
                .iter()
                .filter(|e| e.0 == i)
                .map(|e| npath(e.1))
                .collect();
            if i % 2 == 0 {
                refs.push(npath(i));
            }
            serde_json::json!({"path": npath(i), "references": refs, "narSize": sizes[i]})
        })
        .collect();
    Graph::from_json(
        serde_json::Value::Array(nodes).to_string().as_bytes(),
        None,
        "/nix/store",
    )
    .unwrap()
}

/// NAR sizes, references (from, to) and popularity by node.
type NixeryCase = (Vec<u64>, Vec<(usize, usize)>, Vec<Option<u64>>);

/// A DAG with NAR sizes up to 60 MB, so that some closures pass Nixery's 100 MB, and
/// popularity data for some of its names (some at or over the threshold of 100).
fn nixery_case() -> impl Strategy<Value = NixeryCase> {
    (1usize..40).prop_flat_map(|n| {
        let sizes = proptest::collection::vec(1u64..60_000_000, n);
        let edges = proptest::collection::vec((0..n, 0..n), 0..n * 3)
            .prop_map(|es| es.into_iter().filter(|(a, b)| a > b).collect::<Vec<_>>());
        let pops = proptest::collection::vec(proptest::option::of(1u64..300), n);
        (sizes, edges, pops)
    })
}

/// dominated[c][v]: every route from the synthetic root to v passes through c (c != v),
/// by brute force: v is not reachable once c is removed.
fn dominance(g: &Graph, from_root: &[usize]) -> Vec<Vec<bool>> {
    let n = g.len();
    (0..n)
        .map(|c| {
            let mut seen = vec![false; n];
            let mut todo: Vec<usize> = from_root.iter().copied().filter(|&r| r != c).collect();
            while let Some(i) = todo.pop() {
                if !seen[i] {
                    seen[i] = true;
                    todo.extend(g.nodes[i].references.iter().copied().filter(|&j| j != c));
                }
            }
            (0..n).map(|v| v != c && !seen[v]).collect()
        })
        .collect()
}

proptest! {
    #[test]
    fn nixery_layers(
        (sizes, edges, pops) in nixery_case(), budget in 1usize..45, seed in any::<u64>()
    ) {
        let n = sizes.len();
        let order: Vec<usize> = (0..n).collect();
        let g = nixery_graph(&sizes, &edges, &order);
        let popularity: Popularity = (0..n)
            .filter_map(|i| pops[i].map(|p| (nixery::package_name(&npath(i)).to_string(), p)))
            .collect();
        let none = HashSet::new();
        let layers = nixery::plan(&g, &[], &popularity, &none, budget);

        // Every path in exactly one layer, at most `budget` layers, none empty.
        prop_assert!(layers.len() <= budget);
        prop_assert!(layers.iter().all(|l| !l.is_empty()));
        let mut layer_of = std::collections::HashMap::new();
        for (k, l) in layers.iter().enumerate() {
            for p in l {
                prop_assert!(layer_of.insert(p.clone(), k).is_none(), "{} twice", p);
            }
        }
        prop_assert_eq!(layer_of.len(), n);

        // Which paths hang off the root: unreferenced, big or popular.
        let sizes_c = nixery::closure_sizes(&g);
        let users = g.users();
        let big_or_popular: Vec<bool> = (0..n)
            .map(|i| {
                sizes_c[i] > nixery::SIZE_THRESHOLD
                    || nixery::path_popularity(&g.nodes[i].path, &popularity) >= nixery::POPULARITY_THRESHOLD
            })
            .collect();
        let from_root: Vec<usize> = (0..n).filter(|&i| users[i].is_empty() || big_or_popular[i]).collect();
        let dom = dominance(&g, &from_root);

        // A path lands with every path that dominates it.
        for c in 0..n {
            for v in 0..n {
                if dom[c][v] {
                    prop_assert_eq!(layer_of[&g.nodes[c].path], layer_of[&g.nodes[v].path],
                        "{} dominates {}", &g.nodes[c].path, &g.nodes[v].path);
                }
            }
        }

        // Big or popular paths are children of the root: nothing dominates them, and
        // they share a layer with another one only in the one merged layer.
        let groups = nixery::groups(&g, &[], &popularity).len();
        let mut shared = HashSet::new();
        for i in (0..n).filter(|&i| big_or_popular[i]) {
            prop_assert!((0..n).all(|c| !dom[c][i]));
            let k = layer_of[&g.nodes[i].path];
            let others = (0..n).filter(|&j| j != i && big_or_popular[j] && layer_of[&g.nodes[j].path] == k).count();
            if others > 0 {
                prop_assert!(groups > budget, "merged without need");
                shared.insert(k);
            }
        }
        prop_assert!(shared.len() <= 1);
        prop_assert_eq!(layers.len(), groups.min(budget));

        // Independent of the order of the graph's entries, and deterministic.
        let mut shuffled = order.clone();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let g2 = nixery_graph(&sizes, &edges, &shuffled);
        prop_assert_eq!(&nixery::plan(&g2, &[], &popularity, &none, budget), &layers);
        prop_assert_eq!(&nixery::plan(&g, &[], &popularity, &none, budget), &layers);
    }
}
