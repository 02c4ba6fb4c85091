//! The closure graph Nix writes for `exportReferencesGraph` (structured attrs or plain JSON).
//!
//! Nodes are kept sorted by path, which is the order Nix itself emits them in, so
//! everything computed from a graph is independent of the order of the input entries.

use super::StorePath;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// One store path of the closure.
#[derive(Clone, Debug)]
pub struct Node {
    pub path: String,
    /// Indices of referenced nodes, without self-references and duplicates, sorted.
    pub references: Vec<usize>,
    /// Whether the path references itself.
    pub self_reference: bool,
    pub nar_size: u64,
    pub closure_size: u64,
    pub nar_hash: String,
}

/// A closure graph with nodes sorted by path.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNode {
    path: String,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    nar_size: u64,
    #[serde(default)]
    closure_size: u64,
    #[serde(default)]
    nar_hash: String,
}

impl Graph {
    /// Reads a graph file: a JSON list of nodes, or an object (`.attrs.json`) holding one
    /// under `key` (or under its only key whose value is a list of nodes).
    pub fn load(file: &Path, key: Option<&str>, store_dir: &str) -> Result<Graph> {
        let text =
            std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
        Graph::from_json(&text, key, store_dir).with_context(|| format!("{}", file.display()))
    }

    /// Parses graph JSON; see [`Graph::load`].
    pub fn from_json(text: &[u8], key: Option<&str>, store_dir: &str) -> Result<Graph> {
        let value: serde_json::Value = serde_json::from_slice(text).context("not valid JSON")?;
        let list = select_list(value, key)?;
        let raw: Vec<RawNode> =
            serde_json::from_value(list).context("not a list of closure graph entries")?;
        Graph::from_raw(raw, store_dir)
    }

    fn from_raw(mut raw: Vec<RawNode>, store_dir: &str) -> Result<Graph> {
        raw.sort_by(|a, b| a.path.cmp(&b.path));
        let mut index = HashMap::with_capacity(raw.len());
        for (i, node) in raw.iter().enumerate() {
            StorePath::parse(store_dir, &node.path).map_err(anyhow::Error::msg)?;
            if index.insert(node.path.clone(), i).is_some() {
                bail!("{} appears twice in the graph", node.path);
            }
        }
        let mut nodes = Vec::with_capacity(raw.len());
        for (i, node) in raw.into_iter().enumerate() {
            let mut refs = Vec::with_capacity(node.references.len());
            let mut self_reference = false;
            for r in &node.references {
                match index.get(r) {
                    Some(&j) if j != i => refs.push(j),
                    Some(_) => self_reference = true,
                    None => bail!("{} references {r}, which is not in the graph", node.path),
                }
            }
            refs.sort_unstable();
            refs.dedup();
            nodes.push(Node {
                path: node.path,
                references: refs,
                self_reference,
                nar_size: node.nar_size,
                closure_size: node.closure_size,
                nar_hash: node.nar_hash,
            });
        }
        let graph = Graph { nodes, index };
        graph.check_acyclic()?;
        Ok(graph)
    }

    /// The subgraph of `vertices` and the references among them.
    pub fn induced(&self, vertices: &[usize]) -> Graph {
        let mut keep: Vec<usize> = vertices.to_vec();
        keep.sort_unstable();
        keep.dedup();
        let new_index: HashMap<usize, usize> =
            keep.iter().enumerate().map(|(n, &o)| (o, n)).collect();
        let nodes: Vec<Node> = keep
            .iter()
            .map(|&o| {
                let mut node = self.nodes[o].clone();
                node.references = node
                    .references
                    .iter()
                    .filter_map(|r| new_index.get(r).copied())
                    .collect();
                node
            })
            .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.path.clone(), i))
            .collect();
        Graph { nodes, index }
    }

    /// Index of a node by path.
    pub fn find(&self, path: &str) -> Option<usize> {
        self.index.get(path).copied()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a graph without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// For each node, the nodes that reference it (sorted).
    pub fn users(&self) -> Vec<Vec<usize>> {
        let mut users = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &r in &node.references {
                users[r].push(i);
            }
        }
        users
    }

    /// Nodes in an order where every node comes after all nodes that reference it.
    pub fn topological_order(&self) -> Vec<usize> {
        let users = self.users();
        let mut pending: Vec<usize> = users.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..self.len()).filter(|&i| pending[i] == 0).collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(i) = ready.pop() {
            order.push(i);
            for &r in &self.nodes[i].references {
                pending[r] -= 1;
                if pending[r] == 0 {
                    ready.push(r);
                }
            }
        }
        order
    }

    fn check_acyclic(&self) -> Result<()> {
        let order = self.topological_order();
        if order.len() != self.len() {
            let mut seen = vec![false; self.len()];
            order.iter().for_each(|&i| seen[i] = true);
            let stuck = seen.iter().position(|s| !s).unwrap_or(0);
            bail!("reference cycle through {}", self.nodes[stuck].path);
        }
        Ok(())
    }

    /// All nodes reachable from `start` through `edges`, `start` included, as a mask.
    pub fn reach<'e>(&self, start: &[usize], edges: &dyn Fn(usize) -> &'e [usize]) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut todo: Vec<usize> = start.to_vec();
        while let Some(i) = todo.pop() {
            if !seen[i] {
                seen[i] = true;
                todo.extend(edges(i).iter().copied().filter(|&j| !seen[j]));
            }
        }
        seen
    }
}

fn select_list(value: serde_json::Value, key: Option<&str>) -> Result<serde_json::Value> {
    use serde_json::Value;
    match (value, key) {
        (list @ Value::Array(_), None) => Ok(list),
        (Value::Object(mut map), Some(k)) => map
            .remove(k)
            .with_context(|| format!("no key {k:?} in the graph file")),
        (Value::Object(map), None) => {
            if let Some(v) = map.get("graph") {
                return Ok(v.clone());
            }
            let mut lists = map.into_iter().filter(|(_, v)| looks_like_graph(v));
            match (lists.next(), lists.next()) {
                (Some((_, v)), None) => Ok(v),
                _ => bail!("cannot tell which key holds the graph; pass --graph-key"),
            }
        }
        _ => bail!("expected a list of closure graph entries or an object holding one"),
    }
}

fn looks_like_graph(v: &serde_json::Value) -> bool {
    v.as_array()
        .is_some_and(|l| l.iter().all(|e| e.get("path").is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(c: char, name: &str) -> String {
        format!("/nix/store/{}-{name}", c.to_string().repeat(32))
    }

    #[test]
    fn sorts_and_resolves_references() {
        let json = format!(
            r#"{{"graph": [
              {{"path": "{b}", "references": ["{b}", "{a}"], "narSize": 2}},
              {{"path": "{a}", "references": [], "narSize": 1}}]}}"#,
            a = p('a', "a"),
            b = p('b', "b")
        );
        let g = Graph::from_json(json.as_bytes(), None, "/nix/store").unwrap();
        assert_eq!(g.nodes[0].path, p('a', "a"));
        assert_eq!(g.nodes[1].references, vec![0]);
    }

    #[test]
    fn rejects_dangling_reference() {
        let json = format!(
            r#"[{{"path": "{}", "references": ["{}"]}}]"#,
            p('a', "a"),
            p('b', "b")
        );
        let err = Graph::from_json(json.as_bytes(), None, "/nix/store").unwrap_err();
        assert!(format!("{err:#}").contains("not in the graph"));
    }

    #[test]
    fn rejects_cycles() {
        let (a, b) = (p('a', "a"), p('b', "b"));
        let json = format!(
            r#"[{{"path": "{a}", "references": ["{b}"]}}, {{"path": "{b}", "references": ["{a}"]}}]"#
        );
        assert!(Graph::from_json(json.as_bytes(), None, "/nix/store").is_err());
    }
}
