#!/usr/bin/env bash
# Benchmarks `stevedore build-layered` on a synthetic ~1.1 GiB store (bench/make_store.py)
# against (a) the seed's method (one GNU tar | sha256sum per layer, sequentially) and
# (b) the floor (read and sha256 every file once with OpenSSL on all cores), and times
# `stevedore plan` on a 5,000-path graph. Best of 3 for each timing; peak RSS is the
# largest of stevedore's runs. Prints PASS/FAIL per target.
#
# usage: bash bench/run.sh [DIR]        (DIR defaults to /tmp/stevedore-bench)
# env:   STEVEDORE=path to the binary (default /tmp/bench-bin/stevedore, built from this
#        checkout with `cargo build --release` and copied there if missing)
#        RUNS=number of runs per timing (default 3)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
dir=${1:-/tmp/stevedore-bench}
runs=${RUNS:-3}
stevedore=${STEVEDORE:-/tmp/bench-bin/stevedore}

if [[ ! -x $stevedore ]]; then
    (cd "$repo" && cargo build --release)
    mkdir -p "$(dirname "$stevedore")"
    cp "$repo/target/release/stevedore" "$stevedore"
fi
if [[ ! -x /usr/bin/time ]]; then
    apt-get install -y time >/dev/null
fi

source "$here/lib.sh"

# --- inputs -------------------------------------------------------------------------------
python3 "$here/make_store.py" "$dir"
store=$dir/store
"$stevedore" plan "$dir/graph.json" --limit 99 --store-dir "$store" >"$dir/layers.json"

rm -rf "$dir/cust-src" "$dir/cust"
mkdir -p "$dir/cust-src/etc" "$dir/cust-src/tmp" "$dir/cust-src/root"
printf 'root:x:0:0::/root:/bin/sh\n' >"$dir/cust-src/etc/passwd"
printf 'root:x:0:\n' >"$dir/cust-src/etc/group"
ln -s "$(ls -d "$store"/*-bench-env)/pkgs" "$dir/cust-src/pkgs"
"$stevedore" customisation-layer "$dir/cust-src" -o "$dir/cust" 2>/dev/null

python3 - "$dir" "$store" <<'EOF'
import json, sys
d, store = sys.argv[1], sys.argv[2]
layers = json.load(open(f"{d}/layers.json"))
conf = {"architecture": "amd64", "config": {"Env": ["PATH=/pkgs/bin"]}, "os": "linux",
        "store_dir": store, "from_image": None, "store_layers": layers,
        "customisation_layer": f"{d}/cust", "repo_tag": "bench:1",
        "created": "1970-01-01T00:00:01+00:00", "mtime": "1970-01-01T00:00:01+00:00",
        "uid": "0", "gid": "0", "uname": "root", "gname": "root"}
json.dump(conf, open(f"{d}/conf.json", "w"), indent=1)
# One line per layer, paths relative to / (for tar -C /), for the seed's method.
with open(f"{d}/layers.txt", "w") as f:
    for layer in layers:
        f.write(" ".join(p.lstrip("/") for p in layer) + "\n")
EOF
read -r nlayers npaths < <(python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); print(len(l), sum(map(len, l)))' "$dir/layers.json")
read -r nfiles nbytes < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["files"], s["bytes"])' "$dir/.complete")

# Warm the page cache: read everything once.
find "$store" -type f -print0 | xargs -0 cat >/dev/null

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores," \
    "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, sha_ni: $(grep -q sha_ni /proc/cpuinfo && echo yes || echo no)"
echo "store: $npaths paths, $nfiles files, $((nbytes / 1048576)) MiB in $nlayers layers (+ customisation layer)"
echo "runs per timing: $runs (best kept)"
echo

# --- stevedore build-layered ----------------------------------------------------------------
s_times=() s_rss=()
for _ in $(seq "$runs"); do
    rm -f "$dir/out.tar"
    sync
    wait_quiet
    /usr/bin/time -f '%e %M' -o "$dir/time.out" "$stevedore" build-layered "$dir/conf.json" -o "$dir/out.tar" 2>/dev/null
    read -r t rss <"$dir/time.out"
    s_times+=("$t") s_rss+=("$rss")
done
s=$(min "${s_times[@]}")
rss=$(max "${s_rss[@]}")
echo "stevedore build-layered: ${s} s (runs: ${s_times[*]}), peak RSS $((rss / 1024)) MiB (runs KiB: ${s_rss[*]}), archive $(($(stat -c %s "$dir/out.tar") / 1048576)) MiB"

# Informational: the same archive streamed to /dev/null (no output file to write).
st_times=()
for _ in $(seq "$runs"); do
    wait_quiet
    st_times+=("$(elapsed "$stevedore" stream-layered "$dir/conf.json")")
done
echo "  (info) stevedore stream-layered > /dev/null: $(min "${st_times[@]}") s (runs: ${st_times[*]})"

# --- (a) the seed's method ----------------------------------------------------------------
seed_method() {
    local -a layer
    while read -r -a layer; do
        tar -C / --sort=name --numeric-owner --owner=0 --group=0 --mtime=@1 --hard-dereference \
            -cf - "${layer[@]}" | sha256sum
    done <"$dir/layers.txt"
}
a_times=()
for _ in $(seq "$runs"); do
    wait_quiet
    a_times+=("$(elapsed seed_method)")
done
a=$(min "${a_times[@]}")
echo "(a) seed's method (tar | sha256sum per layer, sequential): ${a} s (runs: ${a_times[*]})"

# --- (b) the floor ----------------------------------------------------------------------------
floor() {
    find "$store" -type f -print0 | xargs -0 -P"$(nproc)" -n 200 openssl dgst -sha256
}
b_times=()
for _ in $(seq "$runs"); do
    wait_quiet
    b_times+=("$(elapsed floor)")
done
b=$(min "${b_times[@]}")
echo "(b) floor (openssl dgst -sha256 of every file, $(nproc) jobs): ${b} s (runs: ${b_times[*]})"

# --- stevedore plan on a 5,000-path graph -----------------------------------------------------
python3 "$here/gen_graph.py" 5000 1 >"$dir/graph5000.json"
p_times=()
for _ in $(seq "$runs"); do
    wait_quiet
    p_times+=("$(elapsed "$stevedore" plan "$dir/graph5000.json")")
done
p=$(min "${p_times[@]}")
echo "stevedore plan, 5,000-path graph: ${p} s (runs: ${p_times[*]})"

# --- archive sanity -------------------------------------------------------------------------
if skopeo inspect "docker-archive:$dir/out.tar" >"$dir/inspect.json"; then
    got=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["Layers"]))' "$dir/inspect.json")
    if [[ $got -eq $((nlayers + 1)) ]]; then sane=PASS; else sane=FAIL; fi
    echo "skopeo inspect docker-archive:out.tar: ok, $got layers (expected $((nlayers + 1)))"
else
    sane=FAIL
    echo "skopeo inspect docker-archive:out.tar: FAILED"
fi

# --- verdicts -------------------------------------------------------------------------------
echo
r1=$(python3 -c "print(f'{$a / $s:.2f}')")
r2=$(python3 -c "print(f'{$s / $b:.2f}')")
printf '%-44s %10s  %-10s %s\n' "target" "value" "goal" "result"
printf '%-44s %9sx  %-10s %s\n' "(a) seed / stevedore" "$r1" ">= 3x" "$(verdict "$r1 >= 3")"
printf '%-44s %9sx  %-10s %s\n' "stevedore / (b) floor" "$r2" "<= 1.5x" "$(verdict "$r2 <= 1.5")"
printf '%-44s %6s MiB  %-10s %s\n' "stevedore peak RSS" "$((rss / 1024))" "< 128 MiB" "$(verdict "$rss < 131072")"
printf '%-44s %9ss  %-10s %s\n' "plan, 5,000 paths" "$p" "< 1 s" "$(verdict "$p < 1")"
printf '%-44s %10s  %-10s %s\n' "skopeo inspect of the archive" "" "succeeds" "$sane"
if was_noisy; then
    echo "note: other load was seen on the machine before some runs; timings may be pessimistic"
fi
