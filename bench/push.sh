#!/usr/bin/env bash
# Benchmarks pushing the synthetic 1.07 GiB store of bench/make_store.py to a local
# registry: `stevedore copy CONF docker://…` (the conf of bench/copy.sh, store-layer digests
# recorded) against `skopeo copy docker-archive:IMAGE docker://…` of the same image (IMAGE
# written by `stevedore build-layered`, untimed), with gzip (level 6 both) and zstd
# (level 3 both), three pushes each:
#
#   1 first:   to an empty repository;
#   2 again:   the same image to the same repository (nothing to upload);
#   3 changed: one store path changed (a copy of one path under a new hash, one file in
#              it rewritten: a new conf + conf-digests and a new docker archive, untimed),
#              to the same repository.
#
# Two registries (Debian's docker-registry, distribution 2.8), one per tool, each with its
# own config, storage and access log in a temporary directory, on 127.0.0.1 and free ports;
# stopped at exit. A run is the three pushes to a fresh repository
# (`s-CODEC-RUN/bench:1`, `k-CODEC-RUN/bench:1`) with fresh caches:
#   - stevedore's cache (`$XDG_CACHE_HOME/stevedore`) in DIR/push-cache/s-CODEC-RUN;
#   - skopeo, as root, keeps its blob-info cache in /var/lib/containers/cache (no option
#     moves it); each skopeo push runs in a private mount namespace (`unshare -m`) where
#     DIR/push-cache/k-CODEC-RUN is bind-mounted over that directory, so the system cache
#     is neither read nor written. (If unshare is not possible the system cache is used
#     and a note printed.)
# Both tools' caches persist from push 1 to push 3 of a run, as a user's would.
# The best of RUNS runs (default 1) is kept per push, the ratio skopeo / stevedore printed,
# and each push's blob requests counted from the registry's access log: HEAD …/blobs/,
# POST …/blobs/uploads/ (mounts, `?mount=`, counted apart), PATCH and PUT …/blobs/uploads/.
# At the end the two tools' pushes of each image must have the same diff_ids
# (`skopeo inspect --config`).
#
# usage: bash bench/push.sh [DIR]        (DIR defaults to /tmp/stevedore-bench)
# env:   STEVEDORE=path to the binary (default: target/release/stevedore of this checkout,
#        brought up to date with cargo build --release)
#        RUNS=number of runs (default 1)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
dir=${1:-/tmp/stevedore-bench}
runs=${RUNS:-1}
stevedore=${STEVEDORE:-$repo/target/release/stevedore}
source "$here/lib.sh"

build_stevedore

# --- inputs (as bench/copy.sh makes them) -------------------------------------------------
make_inputs
make_image

# The changed image: the single-path layer nearest 16 MiB gets a new store path (the old
# one's hash reversed, still nixbase32) in the same store dir, a hard-linked copy with one
# file (its largest) rewritten; removed at exit. Every other layer is unchanged.
tmp=$(mktemp -d /tmp/stevedore-push.XXXXXX)
changed_path=
cleanup() {
    local pid
    for pid in "$tmp"/*.pid; do
        [[ -e $pid ]] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    # The changed path and what refers to it (the caches stay, for a look afterwards).
    [[ -n $changed_path ]] && rm -rf "$changed_path"
    rm -f "$dir/push-conf2.json" "$dir/push-conf2-digests.json" "$dir/push-image2.tar"
    rm -rf "$tmp" "$noisy_file"
}
trap cleanup EXIT
read -r old_path changed_path < <(python3 - "$dir/layers.json" <<'PY'
import json, os, sys
layers = json.load(open(sys.argv[1]))
def size(p):
    return sum(os.lstat(os.path.join(r, f)).st_size for r, _, fs in os.walk(p) for f in fs)
single = [l[0] for l in layers if len(l) == 1]
old = min(single, key=lambda p: abs(size(p) - 16 * 2**20))
d, base = os.path.split(old)
h, name = base.split("-", 1)
print(old, os.path.join(d, f"{h[::-1]}-{name}"))
PY
)
rm -rf "$changed_path"
cp -al "$old_path" "$changed_path"
changed_file=$(find "$changed_path" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
{ cat "$changed_file"; echo "changed by bench/push.sh"; } >"$tmp/changed"
rm -f "$changed_file"
mv "$tmp/changed" "$changed_file"
python3 - "$dir" "$old_path" "$changed_path" <<'PY'
import json, sys
d, old, new = sys.argv[1:]
c = json.load(open(f"{d}/conf.json"))
c["store_layers"] = [[new if p == old else p for p in l] for l in c["store_layers"]]
json.dump(c, open(f"{d}/push-conf2.json", "w"), indent=1)
PY
conf2=$dir/push-conf2-digests.json
"$stevedore" conf-digests "$dir/push-conf2.json" -o "$conf2" 2>/dev/null
image2=$dir/push-image2.tar
rm -f "$image2"
"$stevedore" build-layered "$conf2" -o "$image2" 2>/dev/null

read -r nlayers nfiles nbytes < <(python3 -c '
import json, sys
l = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
print(len(l), s["files"], s["bytes"])' "$dir/layers.json" "$dir/.complete")
changed_mib=$(du -sm "$old_path" | cut -f1)

# --- registries ---------------------------------------------------------------------------
s_port=$(start_registry s)
k_port=$(start_registry k)

# skopeo's blob-info cache: private if a mount namespace can be made.
private_cache=yes
mkdir -p "$tmp/probe"
if ! unshare -m --propagation private sh -c \
    "mount --bind '$tmp/probe' /var/lib/containers/cache" 2>/dev/null; then
    private_cache=no
fi

# Warm the page cache: the store and the docker archives, read once.
find "$store" "$changed_path" -type f -print0 | xargs -0 cat >/dev/null
cat "$image" "$image2" >/dev/null

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores," \
    "$(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "stevedore: $stevedore ($("$stevedore" --version)); $(skopeo --version);" \
    "$(docker-registry --version | sed 's/^docker-registry //')"
echo "store: $nfiles files, $((nbytes / 1048576)) MiB in $nlayers layers (+ customisation layer);" \
    "docker archive $(($(stat -c %s "$image") / 1048576)) MiB"
echo "push 3 changes one store path: $(basename "$old_path") ($changed_mib MiB, one layer)" \
    "-> $(basename "$changed_path"), one file rewritten"
echo "registries: 127.0.0.1:$s_port (stevedore), 127.0.0.1:$k_port (skopeo), filesystem storage"
if [[ $private_cache == yes ]]; then
    echo "caches: fresh per run; skopeo's blob-info cache private (bind-mounted over" \
        "/var/lib/containers/cache in its own mount namespace)"
else
    echo "caches: stevedore's fresh per run; skopeo's is the system one," \
        "/var/lib/containers/cache (could not unshare a mount namespace)"
fi
echo "runs: $runs (best kept; each run pushes to fresh repositories with fresh caches)"
echo

# --- timings ------------------------------------------------------------------------------
# Elapsed seconds of a command, or a failure (lib.sh's elapsed ignores the status).
timed() {
    local t0=${EPOCHREALTIME/./} t1
    "$@" >/dev/null || return 1
    t1=${EPOCHREALTIME/./}
    printf '%d.%06d\n' $(((t1 - t0) / 1000000)) $(((t1 - t0) % 1000000))
}
stevedore_push() { # stevedore_push CONF CODEC REPO CACHE
    XDG_CACHE_HOME=$4 "$stevedore" copy "$1" "docker://127.0.0.1:$s_port/$3:1" \
        --compress "$2" 2>>"$tmp/stevedore.log"
}
skopeo_push() { # skopeo_push IMAGE CODEC REPO CACHE
    local cmd=(skopeo --insecure-policy copy --quiet --dest-tls-verify=false
        --dest-compress-format "$2" "docker-archive:$1" "docker://127.0.0.1:$k_port/$3:1")
    if [[ $private_cache == yes ]]; then
        unshare -m --propagation private sh -c \
            'mount --bind "$0" /var/lib/containers/cache && exec "$@"' "$4" "${cmd[@]}" \
            2>>"$tmp/skopeo.log"
    else
        "${cmd[@]}" 2>>"$tmp/skopeo.log"
    fi
}
# Blob requests in the access log LOG after line FROM: "HEAD/POST/mount/PATCH/PUT".
requests() {
    tail -n +"$(($2 + 1))" "$1" | python3 -c '
import re, sys
n = dict(HEAD=0, POST=0, mount=0, PATCH=0, PUT=0)
for line in sys.stdin:
    m = re.search(r"\"(\w+) (/v2/\S*/blobs/\S*) HTTP", line)
    if not m:
        continue
    verb, path = m.groups()
    if verb == "HEAD":
        n["HEAD"] += 1
    elif "/blobs/uploads/" in path and verb in ("POST", "PATCH", "PUT"):
        n["mount" if verb == "POST" and "mount=" in path else verb] += 1
print("/".join(str(n[k]) for k in ("HEAD", "POST", "mount", "PATCH", "PUT")))'
}
# push TOOL PUSH CODEC RUN: times one push, records "seconds requests" in $tmp/res.
push() {
    local tool=$1 n=$2 codec=$3 run=$4 fn log what where cache before t
    case $tool in
    s) fn=stevedore_push log=$tmp/s/access.log ;;
    k) fn=skopeo_push log=$tmp/k/access.log ;;
    esac
    case $tool$n in
    s3) what=$conf2 ;;
    s*) what=$conf ;;
    k3) what=$image2 ;;
    k*) what=$image ;;
    esac
    where=$tool-$codec-$run/bench
    cache=$dir/push-cache/$tool-$codec-$run
    if [[ $n == 1 ]]; then
        rm -rf "$cache"
        mkdir -p "$cache"
    fi
    sync
    wait_quiet
    before=$(wc -l <"$log")
    if ! t=$(timed "$fn" "$what" "$codec" "$where" "$cache"); then
        echo "push $n of $tool ($codec, run $run) failed:" >&2
        cat "$tmp/stevedore.log" "$tmp/skopeo.log" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 0.5 # the registry logs a request after answering it
    echo "$t $(requests "$log" "$before")" >>"$tmp/res-$tool-$n-$codec"
}
# best FILE -> "best (runs: …)<TAB>requests of the best run"
best() {
    python3 - "$1" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
b = min(rows, key=lambda r: float(r[0]))
print(f"{b[0]} (runs: {' '.join(r[0] for r in rows)})\t{b[1]}")
PY
}
# The diff_ids (as a short hash) and the layers' total size in MiB of a pushed image.
image_facts() { # image_facts PORT REPOSITORY
    local ref=docker://127.0.0.1:$1/$2:1 ids
    ids=$(skopeo inspect --tls-verify=false --config "$ref" | python3 -c \
        'import json, sys, hashlib; print(hashlib.sha256(json.dumps(json.load(sys.stdin)["rootfs"]["diff_ids"]).encode()).hexdigest()[:16])')
    echo "$ids $(skopeo inspect --tls-verify=false --raw "$ref" | python3 -c \
        'import json, sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]) // 2**20)')"
}

names=([1]="1 first" [2]="2 again" [3]="3 changed")
printf '%-5s %-10s %-34s %-34s %6s  %-20s %s\n' codec push "stevedore copy (s)" "skopeo copy (s)" \
    ratio "stevedore requests" "skopeo requests"
checks=()
for codec in gzip zstd; do
    for run in $(seq "$runs"); do
        for tool in s k; do
            push "$tool" 1 "$codec" "$run"
            push "$tool" 2 "$codec" "$run"
            if ((run == runs)); then
                port=$([[ $tool == s ]] && echo "$s_port" || echo "$k_port")
                read -r ids size < <(image_facts "$port" "$tool-$codec-$run/bench")
                eval "${tool}_ids1=\$ids ${tool}_size1=\$size"
            fi
            push "$tool" 3 "$codec" "$run"
            if ((run == runs)); then
                read -r ids size < <(image_facts "$port" "$tool-$codec-$run/bench")
                eval "${tool}_ids3=\$ids"
            fi
        done
    done
    for n in 1 2 3; do
        IFS=$'\t' read -r s_time s_req < <(best "$tmp/res-s-$n-$codec")
        IFS=$'\t' read -r k_time k_req < <(best "$tmp/res-k-$n-$codec")
        printf '%-5s %-10s %-34s %-34s %5sx  %-20s %s\n' "$codec" "${names[$n]}" "$s_time" \
            "$k_time" "$(ratio "${k_time%% *}" "${s_time%% *}")" "$s_req" "$k_req"
    done
    same() { [[ $1 == "$2" ]] && echo "same diff_ids" || echo "DIFFERENT diff_ids"; }
    checks+=("$codec: image 1 $(same "$s_ids1" "$k_ids1"), image 2 $(same "$s_ids3" "$k_ids3"); layers in the registry: stevedore $s_size1 MiB, skopeo $k_size1 MiB")
done
echo
echo "requests: HEAD/POST/mount/PATCH/PUT on /v2/…/blobs/ (POST, PATCH, PUT: …/blobs/uploads/;"
echo "mount: POST …?mount=); ratio is skopeo's time over stevedore's"
printf '%s\n' "${checks[@]}"
if [[ $private_cache == no ]]; then
    echo "note: skopeo used the system blob-info cache (/var/lib/containers/cache)"
fi
if was_noisy; then
    echo "note: other load was seen on the machine before some runs; timings may be pessimistic"
fi
