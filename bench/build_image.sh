#!/usr/bin/env bash
# Benchmarks stevedore's buildImage layer (copy-to-root + chmod + image-layer) against the
# nixpkgs method for the same work (mkPureLayer: rsync each copyToRoot item into layer/,
# chmod, then `tar | tee layer.tar | tarsum`, then jshon), on the synthetic store of
# bench/make_store.py. Each side is timed best-of-N; the outputs (layer.tar, json, VERSION)
# must be byte-identical (on a mismatch, the differing tar header fields are listed). Then
# stevedore's peak RSS is measured on a half-size and a whole-store workload, to show how
# memory scales with the image.
#
# Not timed, on either side: the final image step (`stevedore nix-build-image`, which only
# runs inside a Nix build), and nixpkgs' closure append (`tar -r` of the layer's closure
# in the result derivation, a later step on both sides).
#
# nixpkgs pipes the tar into a Go `tarsum` tool that is not available here; `stevedore
# tarsum` stands in for it (same TarSum v1 output).
#
# usage: bash bench/build_image.sh [DIR]      (DIR defaults to /tmp/stevedore-bench)
# env:   STEVEDORE=path to the binary (default /tmp/bench-bin2/stevedore; build it with
#        `cargo build --release` and copy target/release/stevedore there)
#        RUNS=number of runs per side (default 3)
#        ITEMS=number of copyToRoot items in the main workload (default 30)
#        FS=loop (default as root): the layer trees and outputs go on a fresh ext4 file
#           system (default mkfs.ext4 options, so with a journal) in a 16 GiB sparse file
#           DIR/build-image.img on a loop device (direct I/O), mounted on DIR/build-image/run
#           for the run; each run's trees are removed before the next run of the same side
#        FS=dir (default otherwise): they go in DIR/build-image/run on DIR's file system,
#           and nothing is removed until the end (see the comment below)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-/tmp/stevedore-bench}
runs=${RUNS:-3}
nitems=${ITEMS:-30}
stevedore=${STEVEDORE:-/tmp/bench-bin2/stevedore}
if ((EUID == 0)); then fs=${FS:-loop}; else fs=${FS:-dir}; fi

if [[ ! -x $stevedore ]]; then
    echo "error: no stevedore binary at $stevedore (cargo build --release, copy it there, or set STEVEDORE)" >&2
    exit 1
fi
missing=()
for t in rsync jshon; do command -v "$t" >/dev/null || missing+=("$t"); done
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
    apt-get install -y "${missing[@]}" >/dev/null
fi

# Nix builds run with SOURCE_DATE_EPOCH=315532800; mkPureLayer's tar uses it for --mtime
# and `stevedore image-layer` reads it as its default --mtime.
export SOURCE_DATE_EPOCH=315532800
umask 022

source "$here/lib.sh"
fsec() { python3 -c 'import sys; print(f"{float(sys.argv[1]):.2f}")' "$1"; }

# --- inputs -------------------------------------------------------------------------------
python3 "$here/make_store.py" "$dir"
store=$dir/store
work=$dir/build-image
# Why FS=loop. Every run writes ~1.3 GB (the layer tree and layer.tar), and two effects of
# the file system and the VM distorted timings made in place:
# - On ext4 without a journal (the machine of BENCHMARKS.md), inode allocation skips inodes
#   freed in the last 60 s (6 min while their inode table block is dirty), re-scanning past
#   each of them for every new inode (`recently_deleted` in `find_inode_bit`). Removing the
#   previous run's tree, or any other process's deletions, made file creation several
#   times slower. Ext4 with a journal does not do this check.
# - Not removing anything instead makes the page cache grow into free guest memory, which
#   this VM hands back to the host (virtio-balloon free page reporting), so the first
#   write to such a page is much slower: image-layer's system time, mostly the copy into
#   the page cache, went from 0.5 s to 1.9 s over five runs.
# So FS=loop uses a fresh journalled ext4 and removes each run's tree before the next one,
# which keeps reusing the same memory. With FS=dir, nothing is removed during the timings,
# outputs left by an earlier invocation are removed here, and the timings wait until 65 s
# after the last removal (stamped in .removed).
if [[ -d $work/run ]] && ! mountpoint -q "$work/run"; then
    rm -rf "$work/run"
    sync
    date +%s >"$work/.removed"
fi
mkdir -p "$work/run"
if [[ $fs == loop ]]; then
    img=$dir/build-image.img
    rm -f "$img"
    truncate -s 16G "$img"
    mkfs.ext4 -q -F "$img"
    loopdev=$(losetup --direct-io=on -f --show "$img")
    mount "$loopdev" "$work/run"
    trap 'umount "$work/run"; losetup -d "$loopdev"; rm -f "$img" "$noisy_file"' EXIT
elif [[ $fs != dir ]]; then
    echo "error: FS must be dir or loop" >&2
    exit 1
fi
printf '%s\n' '{"architecture":"amd64","config":{},"created":"1970-01-01T00:00:01Z","os":"linux","preferLocalBuild":true,"variant":""}' \
    >"$work/base.json"

# Workloads, as copyToRoot lists of store paths (each a directory whose contents are
# merged into the layer root, as with a buildEnv):
#   full:   the ITEMS largest store paths (the bench-env symlink farm excluded)
#   half:   every other one of those (about half the bytes)
#   all:    every store path but bench-env (the whole 1.1 GiB store)
python3 - "$store" "$nitems" "$work" <<'EOF'
import os, sys
store, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def size(p):
    return sum(os.lstat(os.path.join(r, f)).st_size for r, _, fs in os.walk(p) for f in fs)
paths = [os.path.join(store, e) for e in sorted(os.listdir(store)) if not e.endswith("-bench-env")]
sized = sorted(((size(p), p) for p in paths), key=lambda t: (-t[0], t[1]))
full = [p for _, p in sized[:n]]
# Keep the store's (hash) order within a list, as a Nix list of packages would be.
for name, sel in (("full", full), ("half", full[::2]), ("all", [p for _, p in sized])):
    with open(f"{work}/items-{name}.txt", "w") as f:
        f.write("".join(p + "\n" for p in sorted(sel)))
EOF
mapfile -t full <"$work/items-full.txt"
mapfile -t half <"$work/items-half.txt"
mapfile -t all <"$work/items-all.txt"

# Warm the page cache: read everything once.
find "$store" -type f -print0 | xargs -0 cat >/dev/null
if [[ $fs == dir && -f $work/.removed ]]; then
    wait_s=$(($(<"$work/.removed") + 65 - $(date +%s)))
    if ((wait_s > 0)); then
        echo "waiting ${wait_s} s for ext4 to stop skipping recently freed inodes" >&2
        sleep "$wait_s"
    fi
fi

# --- the two methods ------------------------------------------------------------------------
# Each takes LAYERDIR OUT ITEM... and prints "COPY_SECONDS PACK_SECONDS" (copy = the
# copyToRoot step and chmod; pack = layer.tar + json + VERSION).

# stevedore: also records each command's peak RSS (KiB) in $work/rss.copy, $work/rss.pack.
stevedore_side() {
    local layer=$1 out=$2 t0 t1 t2
    shift 2
    t0=${EPOCHREALTIME/./}
    /usr/bin/time -f '%M' -o "$work/rss.copy" "$stevedore" copy-to-root "$layer" "$@"
    chmod ug+w "$layer"
    t1=${EPOCHREALTIME/./}
    /usr/bin/time -f '%M' -o "$work/rss.pack" "$stevedore" image-layer "$layer" -o "$out" \
        --base-json "$work/base.json" --uid 0 --gid 0
    t2=${EPOCHREALTIME/./}
    echo "$((t1 - t0))e-6 $((t2 - t1))e-6"
}

# nixpkgs (pkgs/build-support/docker/default.nix, mkPureLayer), with `stevedore tarsum`
# standing in for nixpkgs' Go tarsum tool.
nixpkgs_side() {
    local layer=$1 out=$2 t0 t1 t2 item tarhash
    shift 2
    t0=${EPOCHREALTIME/./}
    mkdir "$layer"
    for item in "$@"; do
        rsync -ak --chown=0:0 "$item/" "$layer/"
    done
    chmod ug+w "$layer"
    t1=${EPOCHREALTIME/./}
    mkdir "$out"
    tarhash=$(tar -C "$layer" --hard-dereference --sort=name --mtime="@$SOURCE_DATE_EPOCH" \
        --owner=0 --group=0 -cf - . | tee -p "$out/layer.tar" | "$stevedore" tarsum)
    jshon -s "$tarhash" -i checksum <"$work/base.json" >"$out/json"
    echo -n "1.0" >"$out/VERSION"
    t2=${EPOCHREALTIME/./}
    echo "$((t1 - t0))e-6 $((t2 - t1))e-6"
}

# drop NAME: with FS=loop, removes the layer tree and output of NAME (see above).
drop() {
    if [[ $fs == loop ]]; then rm -rf "$work/run/$1-layer" "$work/run/$1-out"; fi
}

# run SIDE ITEM...: best-of-$runs; sets best_total best_copy best_pack times_list
run() {
    local side=$1 copy pack total
    shift
    best_total="" times_list=()
    for i in $(seq "$runs"); do
        if ((i > 1)); then drop "$side-$((i - 1))"; fi
        sync
        wait_quiet
        "${side}_side" "$work/run/$side-$i-layer" "$work/run/$side-$i-out" "$@" >"$work/times"
        read -r copy pack <"$work/times"
        total=$(python3 -c "print($copy + $pack)")
        times_list+=("$(fsec "$total")=$(fsec "$copy")+$(fsec "$pack")")
        if [[ -z $best_total ]] || python3 -c "import sys; sys.exit(0 if $total < $best_total else 1)"; then
            best_total=$total best_copy=$copy best_pack=$pack
        fi
        if [[ $side == stevedore ]]; then
            s_rss_copy+=("$(<"$work/rss.copy")") s_rss_pack+=("$(<"$work/rss.pack")")
        fi
    done
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores," \
    "$(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(tar --version | head -1), rsync $(rsync --version | awk 'NR==1 {print $3}')"
echo "output file system: $(findmnt -n -o FSTYPE,SOURCE -T "$work/run" | tr -s ' ')" \
    "($(if [[ $fs == loop ]]; then echo "fresh, FS=loop"; else echo "FS=dir"; fi))"
echo "workload: copyToRoot = ${#full[@]} store paths (the largest of the synthetic store), runs per side: $runs (best kept)"
echo

# --- timings (the last run of each side is kept on disk for the comparison) -----------------
s_rss_copy=() s_rss_pack=()
run stevedore "${full[@]}"
s=$best_total s_copy=$best_copy s_pack=$best_pack s_list=("${times_list[@]}")
run nixpkgs "${full[@]}"
n=$best_total n_copy=$best_copy n_pack=$best_pack n_list=("${times_list[@]}")

max_kib() { printf '%s\n' "$@" | sort -n | tail -1; }
rss_full=$(max_kib "${s_rss_copy[@]}" "${s_rss_pack[@]}")
# The last run of each side is compared.
sl=$work/run/stevedore-$runs-layer so=$work/run/stevedore-$runs-out no=$work/run/nixpkgs-$runs-out
layer_bytes=$(stat -c %s "$so/layer.tar")
entries() { find "$1" | wc -l; }
full_entries=$(entries "$sl")
echo "layer: $((layer_bytes / 1048576)) MiB layer.tar, $full_entries entries" \
    "($(find "$sl" -type f | wc -l) files, $(find "$sl" -type l | wc -l) symlinks)"
echo "stevedore (copy-to-root + chmod + image-layer): $(fsec "$s") s (runs, total=copy+pack: ${s_list[*]});" \
    "copy $(fsec "$s_copy") s + pack $(fsec "$s_pack") s;" \
    "peak RSS $((rss_full / 1024)) MiB (copy-to-root KiB: ${s_rss_copy[*]}; image-layer KiB: ${s_rss_pack[*]})"
echo "nixpkgs (rsync -ak + chmod + tar | tee | tarsum + jshon): $(fsec "$n") s (runs, total=copy+pack: ${n_list[*]});" \
    "copy $(fsec "$n_copy") s + pack $(fsec "$n_pack") s"
echo "ratio nixpkgs / stevedore: total $(python3 -c "print(f'{$n / $s:.2f}')")x," \
    "copy $(python3 -c "print(f'{$n_copy / $s_copy:.2f}')")x, pack $(python3 -c "print(f'{$n_pack / $s_pack:.2f}')")x"

# Says which tar headers and header fields differ (when the sizes match).
explain_diff() {
    if [[ $(stat -c %s "$1") != $(stat -c %s "$2") ]]; then
        echo "  sizes differ: $(stat -c %s "$1") vs $(stat -c %s "$2")"
        return
    fi
    { cmp -l "$1" "$2" || true; } | python3 -c '
import sys
a, b = open(sys.argv[1], "rb"), open(sys.argv[2], "rb")
fields = [(0, "name"), (100, "mode"), (108, "uid"), (116, "gid"), (124, "size"), (136, "mtime"),
          (148, "chksum"), (156, "typeflag"), (157, "linkname"), (257, "magic"), (263, "version"),
          (265, "uname"), (297, "gname"), (329, "devmajor"), (337, "devminor"), (345, "prefix")]
blocks, nbytes = {}, 0
for line in sys.stdin:
    off = int(line.split()[0]) - 1
    nbytes += 1
    blocks.setdefault(off // 512, set()).add(max(f for f in fields if f[0] <= off % 512)[1])
kinds = {}
for blk, fs in blocks.items():
    a.seek(blk * 512); ha = a.read(512); b.seek(blk * 512); hb = b.read(512)
    key = (ha[:100].rstrip(b"\0").decode(errors="replace"), chr(ha[156]), ",".join(sorted(fs)),
           ha[265:297].rstrip(b"\0").decode(), hb[265:297].rstrip(b"\0").decode(),
           ha[297:329].rstrip(b"\0").decode(), hb[297:329].rstrip(b"\0").decode())
    kinds[key] = kinds.get(key, 0) + 1
print(f"  {nbytes} bytes differ, in {len(blocks)} 512-byte blocks:")
for (name, t, fs, ua, ub, ga, gb), n in sorted(kinds.items()):
    print(f"  {n} x header {name!r} type {t}: fields {fs}; uname/gname stevedore {ua!r}/{ga!r}, nixpkgs {ub!r}/{gb!r}")
' "$1" "$2"
    if diff -q <(tar -tvf "$1") <(tar -tvf "$2") >/dev/null; then
        echo "  tar -tvf listings: identical"
    else
        echo "  tar -tvf listings: DIFFERENT"
    fi
}

same=PASS
for f in layer.tar json VERSION; do
    if cmp -s "$so/$f" "$no/$f"; then
        echo "cmp $f: identical ($(stat -c %s "$so/$f") bytes)"
    else
        same=FAIL
        echo "cmp $f: DIFFERENT ($(cmp "$so/$f" "$no/$f" 2>&1 | head -1))"
        if [[ $f == layer.tar ]]; then explain_diff "$so/$f" "$no/$f"; fi
    fi
done
echo "checksum: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["checksum"])' "$so/json")"
drop "stevedore-$runs"
drop "nixpkgs-$runs"

# --- memory vs image size ---------------------------------------------------------------------
echo
echo "stevedore peak RSS by image size (one run each):"
rss_line() { # NAME ITEM...
    local name=$1
    shift
    sync
    wait_quiet
    stevedore_side "$work/run/$name-layer" "$work/run/$name-out" "$@" >/dev/null
    printf '  %-7s %3d items, layer.tar %5d MiB, %6d entries: copy-to-root %3d MiB, image-layer %3d MiB\n' \
        "$name" $# $(($(stat -c %s "$work/run/$name-out/layer.tar") / 1048576)) "$(entries "$work/run/$name-layer")" \
        $(($(<"$work/rss.copy") / 1024)) $(($(<"$work/rss.pack") / 1024))
    drop "$name"
}
rss_line half "${half[@]}"
printf '  %-7s %3d items, layer.tar %5d MiB, %6d entries: copy-to-root %3d MiB, image-layer %3d MiB (max of the timed runs)\n' \
    full ${#full[@]} $((layer_bytes / 1048576)) "$full_entries" \
    $(($(max_kib "${s_rss_copy[@]}") / 1024)) $(($(max_kib "${s_rss_pack[@]}") / 1024))
rss_line all "${all[@]}"
if [[ $fs == dir ]]; then
    rm -rf "$work/run"
    sync
    date +%s >"$work/.removed"
fi

echo
echo "outputs identical: $same"
if was_noisy; then
    echo "note: other load was seen on the machine before some runs; timings may be pessimistic"
fi
[[ $same == PASS ]]
