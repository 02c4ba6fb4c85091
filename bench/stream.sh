#!/usr/bin/env bash
# Benchmarks streaming and writing images on the synthetic 1.07 GiB store of
# bench/make_store.py (98 layers, 39,165 files), against the floor: reading and
# sha256-ing every file once with two processes (`openssl dgst`, `xargs -P2`).
#
#   (a) `stevedore stream-layered CONF | cat` for a nixpkgs-format conf (no digests in
#       it): time, peak RSS, blocks written to disk (must be none);
#   (b) the same conf with every store layer's diff_id recorded at build time
#       (`stevedore conf-digests`, what the Nix conf step does by default);
#   (c) `stevedore build-layered CONF -o OUT` (no digests);
#   (d) nixpkgs' own streamer against stevedore on a ~100 MB image made of some of the
#       same layers (one of ~40 MiB), both piped into cat; their archives must be equal.
#
# Ratios come from one run of this script (best of RUNS per timing) and are printed
# with PASS/FAIL against the goals of issue #8.
#
# usage: bash bench/stream.sh [DIR]        (DIR defaults to /tmp/stevedore-bench)
# env:   STEVEDORE=path to the binary (default: target/release/stevedore of this checkout,
#        brought up to date with cargo build --release)
#        NIXPKGS_STREAMER=path to nixpkgs' pkgs/build-support/docker/stream_layered_image.py
#        (NixOS/nixpkgs 0137840114d1444c766db37c01e96258e4edf5fb; default
#        /tmp/nixpkgs-streamer/stream_layered_image.py; (d) is skipped without it)
#        RUNS=number of runs per timing (default 3)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
dir=${1:-/tmp/stevedore-bench}
runs=${RUNS:-3}
stevedore=${STEVEDORE:-$repo/target/release/stevedore}
streamer=${NIXPKGS_STREAMER:-/tmp/nixpkgs-streamer/stream_layered_image.py}
source "$here/lib.sh"

build_stevedore

# --- inputs -------------------------------------------------------------------------------
make_inputs
python3 - "$dir" "$store" <<'PY'
import json, sys
d, store = sys.argv[1], sys.argv[2]
layers = json.load(open(f"{d}/layers.json"))
nar = {n["path"]: n["narSize"] for n in json.load(open(f"{d}/graph.json"))}
def conf(store_layers):
    return {"architecture": "amd64", "config": {"Env": ["PATH=/bin"]}, "os": "linux",
            "store_dir": store, "from_image": None, "store_layers": store_layers,
            "customisation_layer": f"{d}/cust", "repo_tag": "bench:1",
            "created": "1970-01-01T00:00:01+00:00", "mtime": "1970-01-01T00:00:01+00:00",
            "uid": "0", "gid": "0", "uname": "root", "gname": "root"}
json.dump(conf(layers), open(f"{d}/conf.json", "w"), indent=1)
# ~100 MB: the layer nearest 40 MiB, then others in plan order up to 92 MB.
size = lambda l: sum(nar[p] for p in l)
big = min(layers, key=lambda l: abs(size(l) - 40 * 2**20))
chosen, total = [big], size(big)
for l in layers:
    if total >= 92e6:
        break
    if l is not big and size(l) < 20e6:
        chosen.append(l)
        total += size(l)
chosen.sort(key=layers.index)
json.dump(conf(chosen), open(f"{d}/conf100.json", "w"), indent=1)
PY
"$stevedore" conf-digests "$dir/conf.json" -o "$dir/conf-digests.json" 2>/dev/null
"$stevedore" conf-digests "$dir/conf100.json" -o "$dir/conf100-digests.json" 2>/dev/null
read -r nlayers nfiles nbytes < <(python3 -c '
import json, sys
l = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
print(len(l), s["files"], s["bytes"])' "$dir/layers.json" "$dir/.complete")

# Warm the page cache: read everything once.
find "$store" -type f -print0 | xargs -0 cat >/dev/null

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores," \
    "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, sha_ni: $(grep -q sha_ni /proc/cpuinfo && echo yes || echo no)"
echo "stevedore: $stevedore ($("$stevedore" --version))"
echo "store: $nfiles files, $((nbytes / 1048576)) MiB in $nlayers layers (+ customisation layer)"
echo "runs per timing: $runs (best kept)"
echo

# --- timings ------------------------------------------------------------------------------
floor() { find "$store" -type f -print0 | xargs -0 -P2 -n 200 openssl dgst -sha256; }
stream() { "$stevedore" stream-layered "$1" | cat >/dev/null; }
stream_nixpkgs() { python3 "$streamer" "$1" 2>/dev/null | cat >/dev/null; }
build() { "$stevedore" build-layered "$1" -o "$dir/out.tar" 2>/dev/null; }
# Before each build: no output file, and the last one's pages written back.
clean_out() { rm -f "$dir/out.tar"; sync; }

read -r f f_runs < <(best_of floor)
echo "floor (openssl dgst -sha256 of every file, 2 processes): $f s $f_runs"
read -r a a_runs < <(best_of stream "$dir/conf.json")
echo "(a) stream-layered conf.json | cat: $a s $a_runs"
read -r b b_runs < <(best_of stream "$dir/conf-digests.json")
echo "(b) stream-layered conf-digests.json | cat: $b s $b_runs"
read -r c c_runs < <(before=clean_out best_of build "$dir/conf.json")
echo "(c) build-layered conf.json -o out.tar: $c s $c_runs"
read -r c2 c2_runs < <(before=clean_out best_of build "$dir/conf-digests.json")
echo "    (info) build-layered conf-digests.json -o out.tar: $c2 s $c2_runs"

# Peak RSS and blocks written, with an empty TMPDIR that must stay empty.
rm -rf "$dir/tmp-watch" && mkdir "$dir/tmp-watch"
TMPDIR=$dir/tmp-watch /usr/bin/time -f '%M %O' -o "$dir/stream.rss" \
    "$stevedore" stream-layered "$dir/conf.json" | cat >/dev/null
read -r rss written <"$dir/stream.rss"
leftover=$(find "$dir/tmp-watch" -mindepth 1 | wc -l)
echo "(a) peak RSS $((rss / 1024)) MiB, file system blocks written: $written, files left in TMPDIR: $leftover"

if [[ -f $streamer ]]; then
    small=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["store_layers"]))' "$dir/conf100.json")
    mb=$("$stevedore" stream-layered "$dir/conf100.json" | wc -c)
    n_sum=$(python3 "$streamer" "$dir/conf100.json" 2>/dev/null | sha256sum | cut -d' ' -f1)
    s_sum=$("$stevedore" stream-layered "$dir/conf100.json" | sha256sum | cut -d' ' -f1)
    same=$([[ $n_sum == "$s_sum" ]] && echo "identical" || echo "DIFFERENT")
    echo "(d) image of $((mb / 1000000)) MB, $small store layers; archives: $same"
    read -r n n_runs < <(best_of stream_nixpkgs "$dir/conf100.json")
    echo "    nixpkgs stream_layered_image.py | cat: $n s $n_runs"
    read -r d d_runs < <(best_of stream "$dir/conf100.json")
    echo "    stevedore stream-layered | cat: $d s $d_runs"
    read -r d2 d2_runs < <(best_of stream "$dir/conf100-digests.json")
    echo "    (info) stevedore, digests recorded: $d2 s $d2_runs"
fi

# --- verdicts -----------------------------------------------------------------------------
echo
printf '%-48s %10s  %-10s %s\n' "target" "value" "goal" "result"
r=$(ratio "$a" "$f")
printf '%-48s %9sx  %-10s %s\n' "(a) stream / floor" "$r" "<= 1.3x" "$(verdict "$r <= 1.3")"
printf '%-48s %6s MiB  %-10s %s\n' "(a) peak RSS" "$((rss / 1024))" "< 128 MiB" "$(verdict "$rss < 131072")"
printf '%-48s %10s  %-10s %s\n' "(a) written to disk (blocks, TMPDIR files)" "$written, $leftover" "0, 0" \
    "$(verdict "$written == 0 and $leftover == 0")"
r=$(ratio "$b" "$f")
printf '%-48s %9sx  %-10s %s\n' "(b) stream with recorded digests / floor" "$r" "<= 0.6x" "$(verdict "$r <= 0.6")"
r=$(ratio "$c" "$f")
printf '%-48s %9sx  %-10s %s\n' "(c) build-layered / floor" "$r" "<= 1.1x" "$(verdict "$r <= 1.1")"
if [[ -f $streamer ]]; then
    r=$(ratio "$n" "$d")
    printf '%-48s %9sx  %-10s %s\n' "(d) nixpkgs streamer / stevedore, ~100 MB" "$r" ">= 10x" "$(verdict "$r >= 10")"
    printf '%-48s %10s  %-10s %s\n' "(d) same archive as nixpkgs' streamer" "$same" "identical" \
        "$(verdict "'$same' == 'identical'")"
fi
if was_noisy; then
    echo "note: other load was seen on the machine before some runs; timings may be pessimistic"
fi
