#!/usr/bin/env bash
# Benchmarks `stevedore copy CONF oci:DIR` on the synthetic 1.07 GiB store of
# bench/make_store.py (the conf of bench/stream.sh, store-layer digests recorded as the
# Nix conf step does by default) against `skopeo copy docker-archive:IMAGE oci:DIR` of the
# same image (IMAGE written by `stevedore build-layered`, untimed), for each compression:
#
#   none: stevedore --compress none   skopeo --dest-oci-accept-uncompressed-layers
#   gzip: stevedore --compress gzip   skopeo --dest-compress-format gzip (level 6 both)
#   zstd: stevedore --compress zstd   skopeo --dest-compress-format zstd (level 3 both)
#
# Each run writes a fresh layout (the last one removed and synced first, untimed); the
# best of RUNS is kept and the ratio skopeo / stevedore printed. Both layouts must list
# the same diff_ids (checked with `skopeo inspect --config`); their sizes are printed.
#
# usage: bash bench/copy.sh [DIR]        (DIR defaults to /tmp/stevedore-bench)
# env:   STEVEDORE=path to the binary (default: target/release/stevedore of this checkout,
#        brought up to date with cargo build --release)
#        RUNS=number of runs per timing (default 3)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
dir=${1:-/tmp/stevedore-bench}
runs=${RUNS:-3}
stevedore=${STEVEDORE:-$repo/target/release/stevedore}
source "$here/lib.sh"

build_stevedore

# --- inputs (as bench/stream.sh makes them) ---------------------------------------------
make_inputs
make_image
out=$dir/copy-out
read -r nlayers nfiles nbytes < <(python3 -c '
import json, sys
l = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
print(len(l), s["files"], s["bytes"])' "$dir/layers.json" "$dir/.complete")

# Warm the page cache: the store and the docker archive, read once.
find "$store" -type f -print0 | xargs -0 cat >/dev/null
cat "$image" >/dev/null

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores," \
    "$(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "stevedore: $stevedore ($("$stevedore" --version)); $(skopeo --version)"
echo "store: $nfiles files, $((nbytes / 1048576)) MiB in $nlayers layers (+ customisation layer);" \
    "docker archive $(($(stat -c %s "$image") / 1048576)) MiB"
echo "runs per timing: $runs (best kept)"
echo

# --- timings ------------------------------------------------------------------------------
clean_out() { rm -rf "$out"; sync; }
stevedore_copy() { "$stevedore" copy "$conf" "oci:$out:bench" --compress "$1" 2>/dev/null; }
skopeo_copy() {
    local flags
    case $1 in
    none) flags=(--dest-oci-accept-uncompressed-layers) ;;
    *) flags=(--dest-compress-format "$1") ;;
    esac
    skopeo --insecure-policy copy --quiet "${flags[@]}" "docker-archive:$image" "oci:$out:bench"
}
# The diff_ids and the blobs' total size of the layout just written.
layout_facts() {
    local ids
    ids=$(skopeo inspect --config "oci:$out:bench" | python3 -c \
        'import json, sys, hashlib; print(hashlib.sha256(json.dumps(json.load(sys.stdin)["rootfs"]["diff_ids"]).encode()).hexdigest()[:16])')
    echo "$ids $(du -sb "$out/blobs" | cut -f1)"
}

printf '%-6s %-34s %-34s %7s  %s\n' codec "stevedore copy (s)" "skopeo copy (s)" ratio "diff_ids, layout size"
for codec in none gzip zstd; do
    read -r s s_runs < <(before=clean_out best_of stevedore_copy "$codec")
    read -r s_ids s_size < <(layout_facts)
    read -r k k_runs < <(before=clean_out best_of skopeo_copy "$codec")
    read -r k_ids k_size < <(layout_facts)
    same=$([[ $s_ids == "$k_ids" ]] && echo "same diff_ids" || echo "DIFFERENT diff_ids")
    printf '%-6s %-34s %-34s %6sx  %s; stevedore %d MiB, skopeo %d MiB\n' "$codec" "$s $s_runs" \
        "$k $k_runs" "$(ratio "$k" "$s")" "$same" $((s_size / 1048576)) $((k_size / 1048576))
done
clean_out
if was_noisy; then
    echo "note: other load was seen on the machine before some runs; timings may be pessimistic"
fi
