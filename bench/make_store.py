#!/usr/bin/env python3
"""Generates a deterministic synthetic Nix store for benchmarking stevedore.

usage: make_store.py DIR [--seed N] [--force]

Writes DIR/store/<32-char nixbase32 hash>-<name> (about 1.1 GiB, 240 store paths,
~30,000 files, plus symlinks) and DIR/graph.json (an exportReferencesGraph-style list of
{"path","references","narSize","closureSize","narHash"}), then the stamp DIR/.complete.
A second run with the same parameters finds the stamp and does nothing; --force (or a
missing/different stamp) wipes DIR/store and regenerates.

The mix: many small files (100 B - 20 KB, log-uniform) in nested directories, some medium
files (100 KB - 5 MB), a few large ones (20 - 110 MB, each in its own path, so that no
path holds more than ~10% of the bytes); relative symlinks inside a path and absolute
symlinks into referenced paths; a root "bench-env" path made of symlinks only, as a
buildEnv would be. Contents come from one seeded random 1 MiB block, rotated per file and
per MiB chunk and prefixed with the file's name, so files differ and are not all zeros,
yet cost nothing to generate. References form a DAG (a path only refers to paths made
before it), with a few very popular base paths, as in a real closure.
"""
import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"  # nixbase32
VERSION = 2
N_PATHS = 240
TARGET_BYTES = 1100 * 2**20  # a bit over 1 GiB
LARGE_MB = [22, 36, 52, 70, 88, 105]
BLOCK = 2**20
WORDS = ["core", "util", "lib", "net", "ssl", "xml", "gfx", "db", "py", "perl", "gtk", "font",
         "zip", "icu", "crypt", "term", "http", "json", "yaml", "sql", "audio", "video"]
DIRS = ["lib", "share", "include", "bin", "libexec", "etc", "share/doc", "share/man/man1",
        "lib/python3.11/site-packages", "share/locale"]


def store_hash(rng):
    return "".join(rng.choice(ALPHABET) for _ in range(32))


def log_uniform(rng, lo, hi):
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def plan_store(seed, store):
    """Decides every path's name, references, files and symlinks; writes nothing."""
    rng = random.Random(seed)
    paths = []
    for i in range(N_PATHS - 1):
        name = f"{rng.choice(WORDS)}{rng.choice(WORDS)}-{rng.randint(0, 9)}.{rng.randint(0, 30)}"
        paths.append({"path": f"{store}/{store_hash(rng)}-{name}", "files": [], "links": []})
    # References: path i refers only to earlier paths (a DAG); the first few are popular
    # base libraries (glibc, zlib, ...) that most paths refer to.
    for i, p in enumerate(paths):
        refs = set()
        if i > 0:
            refs.update(j for j in range(min(i, 5)) if rng.random() < 0.6 / (j + 1) ** 0.5)
            k = min(i, int(rng.expovariate(1 / 3)))
            refs.update(rng.sample(range(i), k))
        p["ref_idx"] = sorted(refs)
        p["self_ref"] = rng.random() < 0.6
    # Small files in nested directories.
    for i, p in enumerate(paths):
        n = min(1200, max(5, int(rng.lognormvariate(4.6, 1.0))))
        # A directory tree of about one directory per 8 files (as in real packages),
        # grown by adding subdirectories to random existing ones, at most 5 deep.
        dirs = rng.sample(DIRS, rng.randint(1, 4))
        while len(dirs) < n // 8:
            parent = rng.choice(dirs)
            if parent.count("/") < 4:
                dirs.append(f"{parent}/{rng.choice(WORDS)}{len(dirs)}")
        for f in range(n):
            ext = rng.choice(["so", "py", "h", "txt", "mo", "pl"])
            p["files"].append([f"{rng.choice(dirs)}/f{f}.{ext}", log_uniform(rng, 100, 20_000),
                               rng.random() < 0.1])
    # Large files, each alone in a (late) path with its small files.
    for mb, i in zip(LARGE_MB, rng.sample(range(N_PATHS // 2, N_PATHS - 1), len(LARGE_MB))):
        paths[i]["files"].append([f"lib/big{mb}.so", mb * 2**20 + rng.randint(0, 2**20), True])
    # Medium files, spread over the other paths until the target total is reached.
    large = {i for i, p in enumerate(paths) if any(f[0].startswith("lib/big") for f in p["files"])}
    medium_paths = [i for i in rng.sample(range(N_PATHS - 1), 130) if i not in large]
    total = sum(f[1] for p in paths for f in p["files"])
    m = 0
    while total < TARGET_BYTES:
        size = log_uniform(rng, 100_000, 5_000_000)
        p = paths[rng.choice(medium_paths)]
        p["files"].append([f"{rng.choice(['lib', 'share/data', 'lib/gfx'])}/m{m}.dat", size, False])
        total += size
        m += 1
    # Symlinks: relative ones inside the path, absolute ones into referenced paths.
    for p in paths:
        for li in range(rng.randint(0, 6)):
            p["links"].append([f"bin/l{li}", "../" + rng.choice(p["files"])[0]])
        for li, j in enumerate(p["ref_idx"][:3]):
            dep = paths[j]
            p["links"].append([f"lib/dep{li}", f"{dep['path']}/{rng.choice(dep['files'])[0]}"])
    # Root: a buildEnv-like path of symlinks to the top-level packages (those nobody refers to).
    referenced = {j for p in paths for j in p["ref_idx"]}
    tops = [i for i in range(len(paths)) if i not in referenced]
    root = {"path": f"{store}/{store_hash(rng)}-bench-env", "files": [], "links": [],
            "ref_idx": tops, "self_ref": False}
    for i in tops:
        root["links"].append([f"pkgs/{os.path.basename(paths[i]['path'])}", paths[i]["path"]])
    paths.append(root)
    return paths


def write_file(path, rel, size, block):
    """Writes `size` bytes: the member's name, then the block rotated per file and chunk."""
    h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "little")
    head = (rel + "\n").encode()[:size]
    with open(path, "wb") as f:
        f.write(head)
        left = size - len(head)
        chunk = 0
        mv = memoryview(block)
        while left > 0:
            off = (h + chunk * 7919 * 131) % BLOCK
            n = min(left, BLOCK)
            first = mv[off:off + n]
            f.write(first)
            if len(first) < n:
                f.write(mv[:n - len(first)])
            left -= n
            chunk += 1


def make_store(root_dir, seed):
    store = os.path.join(root_dir, "store")
    paths = plan_store(seed, store)
    block = random.Random(seed ^ 0x5EED).randbytes(BLOCK)
    nfiles = nlinks = total = 0
    for p in paths:
        os.makedirs(p["path"])
        for rel, size, exe in p["files"]:
            full = os.path.join(p["path"], rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            write_file(full, rel, size, block)
            os.chmod(full, 0o555 if exe else 0o444)
        for rel, target in p["links"]:
            full = os.path.join(p["path"], rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            os.symlink(target, full)
        p["narSize"] = sum(f[1] for f in p["files"])
        nfiles += len(p["files"])
        nlinks += len(p["links"])
        total += p["narSize"]
    # closureSize: sum of narSize over the path's closure.
    closures = []
    for p in paths:  # references point to earlier paths only, so closures are ready
        c = {id(p)}
        for j in p["ref_idx"]:
            c |= closures[j]
        closures.append(c)
    size_of = {id(p): p["narSize"] for p in paths}
    graph = []
    for p, c in zip(paths, closures):
        refs = [paths[j]["path"] for j in p["ref_idx"]] + ([p["path"]] if p["self_ref"] else [])
        nar_hash = hashlib.sha256(p["path"].encode()).digest()
        graph.append({"path": p["path"], "references": sorted(refs), "narSize": p["narSize"],
                      "closureSize": sum(size_of[x] for x in c),
                      "narHash": "sha256:" + "".join(ALPHABET[b % 32] for b in nar_hash + nar_hash[:20])})
    random.Random(seed).shuffle(graph)
    with open(os.path.join(root_dir, "graph.json"), "w") as f:
        json.dump(graph, f, indent=1)
    biggest = max(p["narSize"] for p in paths)
    return {"paths": len(paths), "files": nfiles, "symlinks": nlinks, "bytes": total,
            "largest_path_share": round(biggest / total, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    stamp_path = os.path.join(args.dir, ".complete")
    want = {"version": VERSION, "seed": args.seed}
    if not args.force and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            have = json.load(f)
        if all(have.get(k) == v for k, v in want.items()):
            print(f"store already complete: {json.dumps(have)}", file=sys.stderr)
            return
    for stale in ("store", "graph.json", ".complete"):
        full = os.path.join(args.dir, stale)
        if os.path.isdir(full):
            shutil.rmtree(full)
        elif os.path.exists(full):
            os.remove(full)
    os.makedirs(args.dir, exist_ok=True)
    stats = make_store(args.dir, args.seed)
    want.update(stats)
    with open(stamp_path, "w") as f:
        json.dump(want, f)
    print(f"store generated: {json.dumps(want)}", file=sys.stderr)


main()
