# The builder of every package of bench/serve-pkgs (run by the host's python3 in the Nix
# sandbox): writes $out from the JSON spec in $spec, deterministically (the bytes depend
# only on the spec: its seed, sizes and dependencies).
#
# A package has
#   - `bin` MiB of "binaries" in `nbin` files (lib/*.so, bin/*): 4 KiB blocks, a third
#     pseudo-random, a third copies of earlier blocks with a few bytes changed, a third
#     from a 16-symbol alphabet; every file starts with the store paths of the package's
#     dependencies (an RPATH: this is how Nix finds the references);
#   - `text` MiB of text in `ntext` files in nested directories (share/NAME/…): lines
#     drawn from a pool of pseudo-words;
#   - `rand` MiB of incompressible data in `nrand` files (share/assets/: images, archives);
#   - nix-support/deps listing its dependencies.
# gzip -6 keeps about 63% of the whole image (419 MiB of tar, 265 MiB gzipped).
import json
import os
import random

spec = json.loads(os.environ["spec"])
out = os.environ["out"]
deps = spec["deps"].split()
rng = random.Random(spec["seed"])
MIB = 1 << 20


def write(rel, data):
    path = os.path.join(out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def split(total, n):
    """n sizes summing to total, skewed (a few large files, many small)."""
    if n == 0:
        return []
    weights = [rng.paretovariate(1.2) for _ in range(n)]
    s = sum(weights)
    sizes = [max(1, int(total * w / s)) for w in weights]
    sizes[0] += total - sum(sizes)
    return sizes


rpath = ("RPATH=" + ":".join(d + "/lib" for d in deps) + "\n").encode()
alphabet = bytes(rng.sample(range(256), 16))
pool = []


def binary(size):
    chunks = [b"\x7fELF" + rpath]
    n = len(chunks[0])
    while n < size:
        kind = rng.randrange(3)
        if kind == 0 or not pool:
            block = rng.randbytes(4096)
            if len(pool) < 256:
                pool.append(block)
        elif kind == 1:
            block = bytearray(rng.choice(pool))
            for _ in range(8):
                block[rng.randrange(4096)] = rng.randrange(256)
            block = bytes(block)
        else:
            block = bytes(alphabet[b & 15] for b in rng.randbytes(4096))
        chunks.append(block)
        n += len(block)
    return b"".join(chunks)[:size]


syllables = ["".join(rng.choice("abcdefghijklmnoprstuvwxyz_") for _ in range(rng.randint(2, 4)))
             for _ in range(300)]
words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(3000)]
lines = [(" " * 4 * rng.randrange(4) + " ".join(rng.choice(words) for _ in range(rng.randint(2, 12))) + "\n").encode()
         for _ in range(20000)]


def text(size):
    out_lines = []
    n = 0
    while n < size:
        chosen = rng.choices(lines, k=1000)
        out_lines.extend(chosen)
        n += sum(map(len, chosen))
    return b"".join(out_lines)[:size]


name = spec["name"]
for i, size in enumerate(split(int(spec["bin"] * MIB), spec["nbin"])):
    rel = f"bin/{name}-{i}" if i % 4 == 0 else f"lib/lib{name}-{i}.so.{i % 7}"
    write(rel, binary(size))
for i, size in enumerate(split(int(spec["text"] * MIB), spec["ntext"])):
    depth = rng.randrange(1, 4)
    parts = [rng.choice(words[:40]) for _ in range(depth)]
    write(os.path.join("share", name, *parts, f"{rng.choice(words)}-{i}.txt"), text(size))
for i, size in enumerate(split(int(spec["rand"] * MIB), spec["nrand"])):
    write(f"share/assets/{name}/blob-{i}.dat", rng.randbytes(size))
write("nix-support/deps", "".join(d + "\n" for d in deps).encode())
if spec["nbin"]:
    os.symlink(f"{name}-0", os.path.join(out, "bin", name))
