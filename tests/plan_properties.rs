//! Properties of the layering algorithms on random DAGs: every path lands in exactly one
//! layer, excluded paths in none, the layer budget holds, and the order of the input
//! entries does not matter.

use proptest::prelude::*;
use std::collections::HashSet;
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
        (sizes, edges) in dag(), limit in 1usize..12, seed in any::<u64>(), popular in any::<bool>()
    ) {
        let n = sizes.len();
        let order: Vec<usize> = (0..n).collect();
        let g = Graph::from_json(graph_json(&sizes, &edges, &order).as_bytes(), None, "/nix/store").unwrap();
        let exclude: HashSet<String> = (0..n).filter(|&i| (i as u64 ^ seed).is_multiple_of(5)).map(path).collect();
        let algorithm = if popular { Algorithm::Popularity } else { Algorithm::Auto };
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
