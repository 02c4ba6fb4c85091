//! Nixery's layering (layers/layers.go, see peers.md §4.3): a synthetic root points at
//! the top-level roots and at every "big or popular" path (closure over 100 MB, or
//! popularity of at least 100); each child of the root in the dominator tree of that
//! graph becomes a layer holding everything it dominates. While there are more layers
//! than the budget, the two lowest-rated are merged (rating = popularity of the layer's
//! root × Σ closure sizes of its members), without re-sorting, so one "rest" layer keeps
//! absorbing the lowest ones. Layers come out by rating, highest first, as Nixery's
//! manifest orders them.
//!
//! Also Nixery's popcount (popcount/popcount.go) over closure graphs instead of a
//! channel's narinfos: [`popularity`].
//!
//! The budget counts store-path layers, as `limit` does for the other algorithms (the
//! customisation layer, Nixery's symlink layer, comes on top): Nixery's 94 by default.
//! The dominator tree is petgraph's `simple_fast` (Cooper–Harvey–Kennedy); Nixery uses
//! gonum's Lengauer–Tarjan. A dominator tree is unique, so only the order in which
//! children are listed could differ, and the tie-break below makes that irrelevant.
//!
//! Where this differs from, or pins down, Nixery:
//! - Ties in the ascending rating sort (Go's `sort.Slice`, which is not stable and whose
//!   result on ties depends on gonum's child order) are broken by the layer's smallest
//!   store path, ascending; the output order (rating descending) breaks ties the same way.
//!   Layers are disjoint, so that key is unique and the result is deterministic.
//! - The top-level roots are the declared ones ([`declared_roots`], Nixery's
//!   `exportReferencesGraph.graph`) plus every path nothing else references. For a real
//!   exportReferencesGraph the latter are all declared roots, so this adds nothing; for a
//!   plain graph list (no declared roots) it makes every path reachable.
//! - `closureSize` is taken from the graph; a node without one (0, as in graphs written
//!   without structured attrs) gets Nix's definition: the sum of `narSize` over its
//!   closure, itself included.
//! - A name is the store path's base name without `HASH-`, for any store directory
//!   (Nixery's regex only strips `/nix/store/`).
//! - Ratings are `u64` with wrap-around, as Go's `uint64` arithmetic.
//! - A budget of 0 is taken as 1 (Nixery would index out of range).

use crate::store::Graph;
use petgraph::algo::dominators;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Nixery's layer budget for store paths (its symlink layer comes on top of it).
pub const BUDGET: usize = 94;
/// Closures larger than this get their own edge from the root (Nixery: 100 MB).
pub const SIZE_THRESHOLD: u64 = 100_000_000;
/// Paths at least this popular get their own edge from the root.
pub const POPULARITY_THRESHOLD: u64 = 100;
/// Popularity Nixery gives `nss-cacert*` and `iana-etc*`, which it adds to every image.
pub const ALWAYS_POPULAR: u64 = 500_000;

/// Popularity data: store path name without its hash → reference count.
pub type Popularity = BTreeMap<String, u64>;

/// A planned layer: its store paths and its merge rating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Sorted for an unmerged layer; a merged one is the concatenation of its parts.
    pub contents: Vec<String>,
    pub merge_rating: u64,
}

impl Layer {
    /// The tie-break key: the smallest path (layers are disjoint, so it is unique).
    fn key(&self) -> &str {
        self.contents.iter().min().map_or("", String::as_str)
    }
}

/// The name popcount and Nixery use: the base name without `HASH-`.
pub fn package_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split_once('-').map_or(base, |(_, name)| name)
}

/// Nixery's popularity of a path: 500000 for `nss-cacert*`/`iana-etc*`, else the
/// popularity data's value, else 1.
pub fn path_popularity(path: &str, popularity: &Popularity) -> u64 {
    let name = package_name(path);
    if name.starts_with("nss-cacert") || name.starts_with("iana-etc") {
        ALWAYS_POPULAR
    } else {
        popularity.get(name).copied().unwrap_or(1)
    }
}

/// Closure sizes: the graph's `closureSize`, or where it is 0 the sum of `narSize` over
/// the node's closure (Nix's definition).
pub fn closure_sizes(graph: &Graph) -> Vec<u64> {
    (0..graph.len())
        .map(|i| match graph.nodes[i].closure_size {
            0 => {
                let seen = graph.reach(&[i], &|j| graph.nodes[j].references.as_slice());
                seen.iter()
                    .enumerate()
                    .filter(|(_, &s)| s)
                    .map(|(j, _)| graph.nodes[j].nar_size)
                    .fold(0u64, u64::wrapping_add)
            }
            size => size,
        })
        .collect()
}

/// The top-level roots an `.attrs.json` declares for the graph under `key`
/// (`exportReferencesGraph.<key>`, a list of store paths); empty if there are none.
pub fn declared_roots(attrs: &serde_json::Value, key: &str) -> Vec<String> {
    attrs
        .get("exportReferencesGraph")
        .and_then(|e| e.get(key))
        .and_then(serde_json::Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The unmerged layers, one per child of the synthetic root in the dominator tree,
/// sorted by merge rating ascending (ties: smallest path ascending). `roots` are the
/// declared top-level paths (indices into `graph`).
pub fn groups(graph: &Graph, roots: &[usize], popularity: &Popularity) -> Vec<Layer> {
    let n = graph.len();
    let sizes = closure_sizes(graph);
    let pops: Vec<u64> = graph
        .nodes
        .iter()
        .map(|node| path_popularity(&node.path, popularity))
        .collect();
    let users = graph.users();

    // Node 0 is the root, node i + 1 is graph node i.
    let mut g: DiGraph<(), ()> = DiGraph::with_capacity(n + 1, n * 2);
    for _ in 0..=n {
        g.add_node(());
    }
    let mut from_root = vec![false; n];
    for &r in roots {
        from_root[r] = true;
    }
    for i in 0..n {
        if users[i].is_empty() || sizes[i] > SIZE_THRESHOLD || pops[i] >= POPULARITY_THRESHOLD {
            from_root[i] = true;
        }
    }
    for (i, &edge) in from_root.iter().enumerate() {
        if edge {
            g.add_edge(NodeIndex::new(0), NodeIndex::new(i + 1), ());
        }
        for &r in &graph.nodes[i].references {
            g.add_edge(NodeIndex::new(i + 1), NodeIndex::new(r + 1), ());
        }
    }
    let dom = dominators::simple_fast(&g, NodeIndex::new(0));

    // top[i]: the child of the root that dominates graph node i (i itself for a child).
    // An immediate dominator references its node transitively, so it comes earlier in
    // a topological order.
    let mut top = vec![usize::MAX; n];
    for i in graph.topological_order() {
        top[i] = match dom.immediate_dominator(NodeIndex::new(i + 1)) {
            Some(d) if d.index() == 0 => i,
            Some(d) => top[d.index() - 1],
            None => unreachable!("every node hangs off the root"),
        };
    }
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &t) in top.iter().enumerate() {
        members.entry(t).or_default().push(i);
    }
    let mut layers: Vec<Layer> = members
        .into_iter()
        .map(|(t, ms)| {
            let size = ms.iter().map(|&m| sizes[m]).fold(0u64, u64::wrapping_add);
            let mut contents: Vec<String> =
                ms.iter().map(|&m| graph.nodes[m].path.clone()).collect();
            contents.sort();
            Layer {
                contents,
                merge_rating: pops[t].wrapping_mul(size),
            }
        })
        .collect();
    layers.sort_by(|a, b| {
        a.merge_rating
            .cmp(&b.merge_rating)
            .then_with(|| a.key().cmp(b.key()))
    });
    layers
}

/// Merges the lowest-rated of the ascending `layers` until at most `budget` remain
/// (Nixery's loop: the first into the second, no re-sorting), then orders them by
/// rating descending (ties: smallest path ascending).
pub fn merge(mut layers: Vec<Layer>, budget: usize) -> Vec<Layer> {
    let budget = budget.max(1);
    if layers.len() > budget {
        let cut = layers.len() - budget + 1;
        let rest: Vec<Layer> = layers.drain(..cut).collect();
        let merged = Layer {
            merge_rating: rest
                .iter()
                .map(|l| l.merge_rating)
                .fold(0u64, u64::wrapping_add),
            contents: rest.into_iter().flat_map(|l| l.contents).collect(),
        };
        layers.insert(0, merged);
    }
    layers.sort_by(|a, b| {
        b.merge_rating
            .cmp(&a.merge_rating)
            .then_with(|| a.key().cmp(b.key()))
    });
    layers
}

/// Nixery's layers for `graph`, highest rating first.
pub fn layers(
    graph: &Graph,
    roots: &[usize],
    popularity: &Popularity,
    budget: usize,
) -> Vec<Layer> {
    merge(groups(graph, roots, popularity), budget)
}

/// The plan as the other algorithms give it: `exclude` paths take part in the
/// computation but are removed from the result (a layer left empty disappears).
pub fn plan(
    graph: &Graph,
    roots: &[usize],
    popularity: &Popularity,
    exclude: &HashSet<String>,
    budget: usize,
) -> Vec<Vec<String>> {
    layers(graph, roots, popularity, budget)
        .into_iter()
        .map(|l| {
            l.contents
                .into_iter()
                .filter(|p| !exclude.contains(p))
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// popcount over closure graphs: for every path name (hash stripped), the number of
/// references to paths of that name, counted once per distinct referencing path (a path
/// present in several graphs counts once). As in popcount, which counts the
/// `References:` of narinfos, a self-reference counts too, and names whose count is 1
/// are dropped (popcount's "only a self-reference"; this also drops a name referenced
/// once by another path and not by itself).
pub fn popularity(graphs: &[Graph]) -> Popularity {
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut counts = Popularity::new();
    for graph in graphs {
        for node in &graph.nodes {
            if seen.insert(&node.path, ()).is_some() {
                continue;
            }
            let referenced = node
                .references
                .iter()
                .map(|&r| graph.nodes[r].path.as_str())
                .chain(node.self_reference.then_some(node.path.as_str()));
            for path in referenced {
                *counts.entry(package_name(path).to_string()).or_default() += 1;
            }
        }
    }
    counts.retain(|_, &mut c| c != 1);
    counts
}

/// Reads popularity data: a JSON object, store path name without hash → count
/// (Nixery's popcount format).
pub fn read_popularity(file: &std::path::Path) -> anyhow::Result<Popularity> {
    use anyhow::Context;
    let text = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "{}: expected a JSON object of names and non-negative counts",
            file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store path named `name` with a hash of `c` repeated (`e` is no nixbase32 digit).
    fn p(c: char, name: &str) -> String {
        let c = if c == 'e' { 'x' } else { c };
        format!("/nix/store/{}-{name}", c.to_string().repeat(32))
    }

    /// The example of layers.go's doc comment: root → A, B, C, D; A, B, C → E (popular);
    /// C → D → F; D → G (big). Sizes are NAR sizes here, closure sizes are computed.
    fn example() -> (Graph, Popularity) {
        let node = |c: char, refs: &[char], nar: u64| {
            let refs: Vec<String> = refs.iter().map(|&r| p(r, &r.to_string())).collect();
            serde_json::json!({"path": p(c, &c.to_string()), "references": refs, "narSize": nar})
        };
        let json = serde_json::json!([
            node('a', &['e'], 1),
            node('b', &['e'], 1),
            node('c', &['e', 'd'], 1),
            node('d', &['f', 'g'], 1),
            node('e', &[], 1),
            node('f', &[], 1),
            node('g', &[], 200_000_000),
        ]);
        let g = Graph::from_json(json.to_string().as_bytes(), None, "/nix/store").unwrap();
        (g, Popularity::from([("e".to_string(), 100)]))
    }

    fn names(layers: &[Vec<String>]) -> Vec<Vec<String>> {
        layers
            .iter()
            .map(|l| {
                let mut v: Vec<String> = l.iter().map(|p| package_name(p).to_string()).collect();
                v.sort();
                v
            })
            .collect()
    }

    #[test]
    fn layers_go_example() {
        let (g, pop) = example();
        let roots: Vec<usize> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| g.find(&p(n.chars().next().unwrap(), n)).unwrap())
            .collect();
        let plan = |budget| names(&plan(&g, &roots, &pop, &HashSet::new(), budget));
        let v = |groups: &[&[&str]]| -> Vec<Vec<String>> {
            groups
                .iter()
                .map(|l| l.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        // Children of the root: A, B, C, D (declared), E (popular), G (big); F is
        // dominated by D. Ratings: A 2, B 2, E 100 × 1, G 200M, D 200M+2 + 1 (F),
        // C 200M+4 (its closure holds G).
        let all = plan(10);
        assert_eq!(all.len(), 6);
        assert!(all.contains(&v(&[&["d", "f"]])[0]));
        assert!(all.contains(&v(&[&["g"]])[0]));
        assert_eq!(plan(1), v(&[&["a", "b", "c", "d", "e", "f", "g"]]));
        // The merged layer's rating is the sum of its parts', so it comes first.
        assert_eq!(plan(2), v(&[&["a", "b", "d", "e", "f", "g"], &["c"]]));
        assert_eq!(
            plan(5),
            v(&[&["c"], &["d", "f"], &["g"], &["e"], &["a", "b"]])
        );
        assert_eq!(plan(0), plan(1));
    }

    #[test]
    fn closure_sizes_follow_nix() {
        let (g, _) = example();
        let sizes = closure_sizes(&g);
        let d = g.find(&p('d', "d")).unwrap();
        assert_eq!(sizes[d], 200_000_002);
    }

    #[test]
    fn popcount_counts_self_references_and_drops_ones() {
        let (a, b, c) = (p('a', "lib-1"), p('b', "app"), p('c', "tool"));
        let json = format!(
            r#"[{{"path": "{a}", "references": ["{a}"]}},
                {{"path": "{b}", "references": ["{a}", "{b}"]}},
                {{"path": "{c}", "references": ["{a}", "{b}"]}}]"#
        );
        let g = Graph::from_json(json.as_bytes(), None, "/nix/store").unwrap();
        let pop = popularity(&[g.clone(), g]);
        assert_eq!(
            pop,
            Popularity::from([("lib-1".to_string(), 3), ("app".to_string(), 2)])
        );
    }
}
