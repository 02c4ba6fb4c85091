#!/usr/bin/env python3
"""Writes a random but realistic closure graph (exportReferencesGraph JSON) to stdout.

usage: gen_graph.py NODES SEED [--ties]

Nodes reference only nodes created before them (a DAG, like a store closure); sizes are
log-normal, so a few paths are large and most are small. --ties draws sizes from a small
set so that equal narSizes and closure sizes are common.
"""
import json
import random
import sys

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"


def main():
    n, seed = int(sys.argv[1]), int(sys.argv[2])
    ties = "--ties" in sys.argv
    rng = random.Random(seed)
    paths = []
    for i in range(n):
        h = "".join(rng.choice(ALPHABET) for _ in range(32))
        paths.append(f"/nix/store/{h}-pkg{i % 97}-{rng.randint(0, 9)}.{i}")
    nodes = []
    for i, p in enumerate(paths):
        k = min(i, int(rng.expovariate(1 / 4)))
        refs = sorted(set(rng.sample(paths[:i], k))) if k else []
        if rng.random() < 0.5:
            refs = sorted(set(refs + [p]))
        size = rng.choice([100, 200, 1000]) if ties else int(rng.lognormvariate(10, 2.5)) + 1
        nodes.append({"closureSize": 0, "narHash": "sha256:" + "0" * 52, "narSize": size,
                      "path": p, "references": refs})
    rng.shuffle(nodes)
    json.dump({"graph": nodes}, sys.stdout)


main()
