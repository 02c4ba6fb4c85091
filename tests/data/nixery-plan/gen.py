#!/usr/bin/env python3
"""Random Nixery runtime graphs for tests/data/nixery-plan (see tests/data/README.md).

gen.py N SEED  ->  JSON on stdout: {"attrs": .attrs.json-like object as Nixery reads it
(exportReferencesGraph.graph = top-level roots; graph = entries with closureSize),
"popularity": name -> count}. Deterministic in N and SEED.
"""
import json
import random
import sys

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
SPECIAL = ["glibc-2.40-66", "nss-cacert-3.101", "iana-etc-20240318", "openssl-3.0.14",
           "zlib-1.3.1", "bash-5.2p32", "gcc-13.3.0-lib", "libffi-3.4.6"]


def main():
    n, seed = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    names = [SPECIAL[i] if i < len(SPECIAL) else f"pkg{i}-{rng.randint(0, 9)}.{i}" for i in range(n)]
    rng.shuffle(names)
    paths = ["/nix/store/" + "".join(rng.choice(ALPHABET) for _ in range(32)) + "-" + name
             for name in names]
    # Node i may reference nodes j > i only: a DAG. The first n // 30 + 1 nodes are the
    # roots, every other node has a tree parent before it, and some extra edges cross.
    top = n // 30 + 1
    refs = [set() for _ in range(n)]
    for i in range(top, n):
        refs[rng.randrange(0, i)].add(i)
    for i in range(n):
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
            if i + 1 < n:
                refs[i].add(rng.randrange(i + 1, n))
    refs = [sorted(r) for r in refs]
    nar = [rng.randint(1_000, 20_000_000) if rng.random() > 0.05 else rng.randint(100_000_001, 300_000_000)
           for _ in range(n)]
    closure = []
    for i in range(n):
        seen, todo = set(), [i]
        while todo:
            j = todo.pop()
            if j not in seen:
                seen.add(j)
                todo.extend(refs[j])
        closure.append(sum(nar[j] for j in seen))
    referenced = {j for r in refs for j in r}
    roots = [i for i in range(n) if i not in referenced]
    roots += rng.sample(sorted(referenced), min(2, len(referenced)))
    entries = []
    for i in range(n):
        r = [paths[j] for j in refs[i]]
        if rng.random() < 0.8:
            r.append(paths[i])  # Nix's self-reference
        rng.shuffle(r)
        entries.append({"closureSize": closure[i], "narSize": nar[i], "path": paths[i],
                        "references": r})
    rng.shuffle(entries)
    popularity = {name: rng.choice([2, 5, 40, 99, 100, 150, 300000])
                  for name in rng.sample(names, n // 3)}
    json.dump({"attrs": {"exportReferencesGraph": {"graph": sorted(paths[i] for i in roots)},
                         "graph": entries},
               "popularity": popularity}, sys.stdout, sort_keys=True)


main()
