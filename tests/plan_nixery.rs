//! `stevedore plan --algorithm nixery` and `stevedore popularity` give what Nixery's own
//! code gives (layers/layers.go and popcount's counting, run as an oracle on generated
//! graphs; how the golden data was made is in tests/data/README.md), and the CLI rules.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use stevedore::plan::nixery;
use stevedore::store::Graph;

/// The golden cases: (name, data).
fn goldens() -> Vec<(String, Value)> {
    let mut cases: Vec<(String, Value)> = std::fs::read_dir(root().join("tests/data/nixery-plan"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read_json(&p),
            )
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(cases.len(), 4);
    cases
}

/// Writes a case's graph (`.attrs.json`-like) and popularity into `dir`.
fn write_inputs(data: &Value, dir: &Path) -> (PathBuf, PathBuf) {
    let graph = write_tmp(dir, "attrs.json", data["attrs"].to_string().as_bytes());
    let pop = write_tmp(
        dir,
        "popularity.json",
        data["popularity"].to_string().as_bytes(),
    );
    (graph, pop)
}

fn plan(graph: &Path, pop: &Path, limit: Option<&str>) -> Value {
    let mut cmd = stevedore();
    cmd.arg("plan")
        .arg(graph)
        .args(["--algorithm", "nixery", "--popularity"])
        .arg(pop);
    if let Some(l) = limit {
        cmd.args(["--limit", l]);
    }
    serde_json::from_str(&stdout(&mut cmd)).expect("plan prints JSON")
}

#[test]
fn plans_match_nixerys_layers_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (name, data) in goldens() {
        let (graph, pop) = write_inputs(&data, dir.path());
        for (budget, expected) in data["expected"].as_object().unwrap() {
            let got = plan(&graph, &pop, Some(budget));
            assert_eq!(got, expected["layers"], "{name} budget {budget}");
            checked += 1;
        }
        // Nixery's default budget.
        assert_eq!(
            plan(&graph, &pop, None),
            data["expected"]["94"]["layers"],
            "{name} default budget"
        );
    }
    assert_eq!(checked, 24);
}

#[test]
fn merge_ratings_match_nixerys() {
    for (name, data) in goldens() {
        let text = data["attrs"].to_string();
        let g = Graph::from_json(text.as_bytes(), Some("graph"), "/nix/store").unwrap();
        let roots: Vec<usize> = nixery::declared_roots(&data["attrs"], "graph")
            .iter()
            .map(|p| g.find(p).unwrap())
            .collect();
        let pop: nixery::Popularity = serde_json::from_value(data["popularity"].clone()).unwrap();
        assert_eq!(
            nixery::groups(&g, &roots, &pop).len() as u64,
            data["groups"].as_u64().unwrap(),
            "{name}"
        );
        for (budget, expected) in data["expected"].as_object().unwrap() {
            let layers = nixery::layers(&g, &roots, &pop, budget.parse().unwrap());
            let ratings: Vec<u64> = layers.iter().map(|l| l.merge_rating).collect();
            let want: Vec<u64> = expected["ratings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_u64().unwrap())
                .collect();
            assert_eq!(ratings, want, "{name} budget {budget}");
        }
    }
}

#[test]
fn popularity_matches_popcount() {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in goldens() {
        let (graph, _) = write_inputs(&data, dir.path());
        let out = stdout(stevedore().arg("popularity").arg(&graph));
        let got: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(got, data["popcount"], "{name}");
        // Keys come out sorted.
        let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        // A graph given twice counts each path once.
        let twice = stdout(stevedore().arg("popularity").arg(&graph).arg(&graph));
        assert_eq!(twice, out, "{name}");
    }
}

#[test]
fn popularity_of_the_graphs_feeds_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = goldens().remove(0);
    let (graph, _) = write_inputs(&data, dir.path());
    let pop = write_tmp(
        dir.path(),
        "pop.json",
        stdout(stevedore().arg("popularity").arg(&graph)).as_bytes(),
    );
    let layers = plan(&graph, &pop, Some("5"));
    assert_eq!(layers.as_array().unwrap().len(), 5);
}

#[test]
fn exclusions_and_plain_lists() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = goldens().remove(0);
    let (graph, pop) = write_inputs(&data, dir.path());
    let all = plan(&graph, &pop, Some("10"));
    let first = all[0][0].as_str().unwrap().to_string();
    let out = stdout(
        stevedore()
            .arg("plan")
            .arg(&graph)
            .args([
                "--algorithm",
                "nixery",
                "--limit",
                "10",
                "--exclude",
                &first,
            ])
            .arg("--popularity")
            .arg(&pop),
    );
    let excluded: Value = serde_json::from_str(&out).unwrap();
    let paths: HashSet<&str> = excluded
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l.as_array().unwrap())
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(!paths.contains(first.as_str()));
    assert_eq!(
        paths.len(),
        data["attrs"]["graph"].as_array().unwrap().len() - 1
    );

    // A plain list (no declared roots): the unreferenced paths are the roots.
    let list = write_tmp(
        dir.path(),
        "list.json",
        data["attrs"]["graph"].to_string().as_bytes(),
    );
    let plain = plan(&list, &pop, Some("3"));
    assert_eq!(plain.as_array().unwrap().len(), 3);
}

#[test]
fn bad_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = goldens().remove(0);
    let (graph, pop) = write_inputs(&data, dir.path());
    let out = stevedore()
        .arg("plan")
        .arg(&graph)
        .arg("--popularity")
        .arg(&pop)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only used by --algorithm nixery"));

    let bad = write_tmp(dir.path(), "bad.json", b"[1, 2]");
    let out = stevedore()
        .arg("plan")
        .arg(&graph)
        .args(["--algorithm", "nixery", "--popularity"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a JSON object"));

    let out = stevedore().arg("popularity").output().unwrap();
    assert!(!out.status.success());
}
