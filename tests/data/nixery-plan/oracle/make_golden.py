#!/usr/bin/env python3
# make_golden.py N SEED BUDGET... : runs ../gen.py and the layers oracle (built as
# ./oracle next to this script, see tests/data/README.md); fails on rating ties.
# The popcount expectation comes from ./popcount-oracle on the same graph.
import json, subprocess, sys, os, tempfile
n, seed, budgets = sys.argv[1], sys.argv[2], sys.argv[3:]
here = os.path.dirname(os.path.abspath(__file__))
gen = os.path.join(here, "..", "gen.py")
data = json.loads(subprocess.check_output([sys.executable, gen, n, seed]))
with tempfile.TemporaryDirectory() as d:
    g, p = os.path.join(d, "g.json"), os.path.join(d, "p.json")
    json.dump(data["attrs"], open(g, "w")); json.dump(data["popularity"], open(p, "w"))
    run = lambda b: json.loads(subprocess.check_output([os.path.join(here, "oracle"), g, p, str(b)]))
    groups = run(10**9)
    ratings = [l["rating"] for l in groups]
    if len(set(ratings)) != len(ratings):
        sys.exit(f"rating ties among the {len(groups)} groups: pick another seed")
    expected = {}
    for b in budgets:
        out = run(b)
        rs = [l["rating"] for l in out]
        if len(set(rs)) != len(rs):
            sys.exit(f"rating ties in the output for budget {b}")
        expected[b] = {"layers": [l["contents"] for l in out], "ratings": rs}
    data["popcount"] = json.loads(subprocess.check_output([os.path.join(here, "popcount-oracle"), g]))
data["groups"] = len(groups)
data["expected"] = expected
data["oracle"] = {"nixery": "tazjin/nixery 0d880c60b5f89cadcb876c4bb5420a8e80659b82 layers/layers.go",
                  "gonum": "v0.11.0", "go": "1.19.8",
                  "popcount": "tazjin/nixery 0d880c60b5f89cadcb876c4bb5420a8e80659b82 popcount/popcount.go (counting loop, on narinfos made from the graph)"}
json.dump(data, sys.stdout, sort_keys=True)
