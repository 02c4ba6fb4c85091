#!/usr/bin/env bash
# Benchmarks `stevedore serve` (images named by their packages, built through Nix on the
# first request, nix/nixery.nix: one derivation per layer) against the same image built
# by dockerTools.buildLayeredImage (nix/default.nix) and pushed to a local registry.
#
# The image is `app/git/jq` from the package set bench/serve-pkgs (37 synthetic packages
# built by the host's python3, deterministic: a libc and shared libraries referenced by
# several packages, an interpreter with thousands of small files, data files; serve adds
# cacert and iana-etc, which are in the set): 37 store paths, 389 MiB in 15,015 files.
# The packages are built once, untimed, and kept (gc roots DIR/serve-pkgs-root*): packages
# being in the store is the normal case; what is timed is the image work. Every nix-build (serve's and
# the baseline's) gets the options of the tests (tests/common/mod.rs): no substituters, the
# sandbox with /usr /lib /lib64 /bin (the packages' builder is the host's python3).
#
# serve (`stevedore serve --listen 127.0.0.1:0 --pkgs path!bench/serve-pkgs --storage S`
# with those options as --nix-option, default gzip layers):
#   cold:   a fresh storage S and none of the image's nixery derivations' outputs in the
#           store (plan, layers, customisation layer, config, manifest output: the exact
#           derivations are found with nix-instantiate on serve's own nixery.nix with the
#           arguments serve passes, and their outputs deleted with `nix-store --delete`
#           after S's gc roots are removed; checked before each cold timing). The helper
#           (the stevedore binary's store copy) stays, as on any server that built once.
#           1. time to first byte of `GET /v2/app/git/jq/manifests/latest` (curl
#              `%{time_starttransfer}`, Accept: Docker schema 2 and OCI manifests);
#           2. a full pull, `skopeo copy docker://127.0.0.1:PORT/app/git/jq dir:DEST`, on
#              another fresh server, storage and purged store (its first request builds).
#   warm:   the same two requests again on server 1 after its build, then again after a
#           restart of that server with the same storage.
# baseline: bench/serve-base.nix, `buildLayeredImage` (defaults: maxLayers 100, the archive
#           gzipped) of the same packages, pushed with `stevedore copy docker-archive:…
#           docker://…/app/git/jq:latest --compress gzip` (fresh stevedore cache) to
#           Debian's docker-registry (distribution 2.8, own config, filesystem storage in
#           a temporary directory); then the same two requests against the registry.
#           Its cold cost is timed too: the nix-build (its derivations' outputs deleted
#           first, as for serve) and the push to a fresh registry; and again with
#           `compressor = "none"` (an uncompressed archive: no gzip pass that the push
#           undoes), pushed to another fresh registry.
# breakdown (untimed in the table, printed after it): serve's cold build taken apart with
#           the same nixery.nix and arguments: evaluation up to the plan, the plan (the
#           import-from-derivation), the rest of the evaluation, the layer derivations,
#           config + manifest; and the layers again with `compressor = "none"` (no gzip).
#
# Before each cold timing the packages' files are read once, before each warm pull the
# image's blobs (page cache warm).
# Everything listens on 127.0.0.1 (free ports) and is stopped at exit; storages, registry
# and pulled images live in a temporary directory, removed at exit with the derivation
# outputs made here (the packages stay). The pulled images of serve and of the registry
# must hold the same store paths: the file lists (path, type, size, mode, link target) of
# their layers under nix/store are compared, and against the packages' closure.
# RUNS (default 1) repeats the cold and warm measurements and keeps the best of each.
#
# usage: bash bench/serve.sh [DIR]       (DIR defaults to /tmp/stevedore-bench)
# env:   STEVEDORE=path to the binary (default: target/release/stevedore of this checkout,
#        brought up to date with cargo build --release)
#        RUNS=number of runs (default 1)
#        BREAKDOWN=0 skips the breakdown
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
dir=${1:-/tmp/stevedore-bench}
runs=${RUNS:-1}
stevedore=${STEVEDORE:-$repo/target/release/stevedore}
source "$here/lib.sh"

build_stevedore
stevedore=$(realpath "$stevedore")
mkdir -p "$dir"

name=app/git/jq
packages='[ "app" "cacert" "git" "iana-etc" "jq" ]' # as serve sorts and completes them
pkgs_dir=$here/serve-pkgs
nix_options=(--option substituters '' --option sandbox true
    --option extra-sandbox-paths '/usr /lib /lib64 /bin')
serve_options=()
for ((i = 0; i < ${#nix_options[@]}; i += 3)); do
    serve_options+=(--nix-option "${nix_options[i + 1]}" "${nix_options[i + 2]}")
done
accept='application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json'

tmp=$(mktemp -d /tmp/stevedore-serve.XXXXXX)
cleanup() {
    local pid
    for pid in "$tmp"/*.pid; do
        [[ -e $pid ]] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    sleep 0.5
    # What was built here goes too (the packages stay, rooted in DIR).
    rm -rf "$tmp"/storage-* "$tmp"/base-result* "$tmp"/breakdown-root*
    if [[ -e $tmp/nix/nixery.nix ]]; then
        (purge_serve) >/dev/null 2>&1 || true
        (purge_serve none) >/dev/null 2>&1 || true
        (purge_base) >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp" "$noisy_file"
}
trap cleanup EXIT

# --- the packages (untimed) ---------------------------------------------------------------
nix-build "$pkgs_dir" -A app -A git -A jq -A cacert -A iana-etc "${nix_options[@]}" \
    -o "$dir/serve-pkgs-root" >/dev/null 2>"$tmp/pkgs.log" || {
    cat "$tmp/pkgs.log" >&2
    exit 1
}
nix-store -qR "$dir"/serve-pkgs-root* | sort -u >"$tmp/closure"
read -r npaths nfiles nbytes < <(python3 - "$tmp/closure" <<'PY'
import os, sys
paths = open(sys.argv[1]).read().split()
files = size = 0
for p in paths:
    for root, dirs, fs in os.walk(p):
        for f in fs:
            files += 1
            size += os.lstat(os.path.join(root, f)).st_size
print(len(paths), files, size)
PY
)

# The packages' files read once, before each cold timing: the page cache holds them, as on
# a server that uses its store (this machine otherwise evicts pages idle for a while).
warm_packages() { xargs -a "$tmp/closure" -I{} find {} -type f -print0 | xargs -0 cat >/dev/null; }
# And the blobs, before each warm pull: those serve's storage points to (STORAGE/blobs/
# sha256/* records {"path", …}), or the registry's files.
warm_serve_blobs() { # warm_serve_blobs STORAGE
    python3 -c 'import json, sys
for f in sys.argv[1:]:
    print(json.load(open(f))["path"])' "$1"/blobs/sha256/* | xargs cat >/dev/null
}
warm_registry_blobs() { find "$tmp/$1/storage" -type f -print0 | xargs -0 cat >/dev/null; }

# --- servers and registries ---------------------------------------------------------------
# start_serve NAME STORAGE -> the port (the log in $tmp/NAME.log)
start_serve() {
    local name=$1 storage=$2 port
    "$stevedore" serve --listen 127.0.0.1:0 --pkgs "path!$pkgs_dir" --storage "$storage" \
        "${serve_options[@]}" >"$tmp/$name.out" 2>"$tmp/$name.log" &
    echo $! >"$tmp/$name.pid"
    for _ in $(seq 100); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$tmp/$name.log")
        if [[ -n $port ]]; then
            echo "$port"
            return
        fi
        sleep 0.1
    done
    echo "stevedore serve did not start:" >&2
    cat "$tmp/$name.log" >&2
    exit 1
}
stop() { # stop NAME
    local pid
    pid=$(cat "$tmp/$1.pid")
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$tmp/$1.pid"
}

# --- making builds cold -------------------------------------------------------------------
# The nixery.nix serve runs (written into every storage at start-up), kept apart.
# nix-build's arguments as serve gives them (src/serve/nix.rs).
nixery_args=("$tmp/nix/nixery.nix" --argstr pkgSource "path!$pkgs_dir" --arg packages "$packages"
    --argstr tag latest --argstr arch amd64 --arg stevedoreBin "$stevedore")
# delete_outputs FILE: deletes the valid store paths listed in FILE (which nothing else
# may keep alive), then checks that none is left. (A path can be alive for a moment, held
# by a temporary root of a nix process: tried again a few times.)
delete_outputs() {
    local valid try
    for try in 1 2 3 4 5 6; do
        valid=$(nix-store --check-validity --print-invalid $(cat "$1") 2>/dev/null | sort >"$1.invalid"
            sort "$1" | comm -23 - "$1.invalid")
        [[ -z $valid ]] && return
        ((try < 6)) || break
        nix-store --delete $valid >/dev/null 2>"$tmp/delete.log" || sleep 1
    done
    echo "cannot delete the previous build's outputs:" >&2
    cat "$tmp/delete.log" >&2
    for p in $valid; do
        echo "$p: roots $(nix-store -q --roots "$p" | tr '\n' ' ')referrers $(nix-store -q --referrers "$p" | tr '\n' ' ')" >&2
    done
    exit 1
}
# purge_serve [COMPRESSOR]: the outputs of the image's nixery derivations, deleted (the
# plan is built by the evaluation if missing, then deleted too).
purge_serve() {
    local args=("${nixery_args[@]}") extra=() plan top
    [[ -n ${1:-} ]] && extra=(--argstr compressor "$1")
    plan=$(nix-instantiate "${args[@]}" "${extra[@]}" "${nix_options[@]}" -A plan 2>"$tmp/purge.log") || {
        cat "$tmp/purge.log" >&2
        exit 1
    }
    top=$(nix-instantiate "${args[@]}" "${extra[@]}" "${nix_options[@]}" 2>"$tmp/purge.log") || {
        cat "$tmp/purge.log" >&2
        exit 1
    }
    { echo "$plan"; nix-store -qR "$top" | grep -E -- '-(nixery-[^/]*|manifest-output\.json)\.drv$'; } |
        xargs nix-store -q --outputs >"$tmp/purge-serve"
    delete_outputs "$tmp/purge-serve"
}
base_args=("$here/serve-base.nix" --arg stevedoreBin "$stevedore")
# purge_base: the same for the baseline, both variants (the uncompressed archive refers
# to the customisation layer and conf they share).
purge_base() {
    local c top
    for c in gz none; do
        top=$(nix-instantiate "${base_args[@]}" --argstr compressor "$c" "${nix_options[@]}" \
            2>"$tmp/purge.log") || {
            cat "$tmp/purge.log" >&2
            exit 1
        }
        nix-store -qR "$top" | grep -E -- '-bench-base[^/]*\.drv$' | xargs nix-store -q --outputs
    done | sort -u >"$tmp/purge-base"
    delete_outputs "$tmp/purge-base"
}

# base_cold COMPRESSOR METRIC REGISTRY -> the registry's port: the baseline built
# (buildLayeredImage with COMPRESSOR, its outputs deleted first) and pushed to a fresh
# registry REGISTRY, both timed (METRIC-build, METRIC-push); the image is $tmp/base-result.
base_cold() {
    local t port
    rm -f "$tmp/base-result"
    purge_base
    port=$(start_registry "$3")
    warm_packages
    wait_quiet
    t=$(timed nix-build "${base_args[@]}" --argstr compressor "$1" "${nix_options[@]}" \
        -o "$tmp/base-result" 2>"$tmp/base.log") || {
        cat "$tmp/base.log" >&2
        exit 1
    }
    echo "$t" >>"$tmp/res-$2-build"
    sync
    wait_quiet
    t=$(timed env XDG_CACHE_HOME="$tmp/cache-$3" "$stevedore" copy \
        "docker-archive:$(readlink "$tmp/base-result")" "docker://127.0.0.1:$port/$name:latest" \
        --compress gzip 2>"$tmp/push.log") || {
        cat "$tmp/push.log" >&2
        exit 1
    }
    echo "$t" >>"$tmp/res-$2-push"
    echo "$port"
}

manifest_digest() { # manifest_digest PORT: the pushed image's manifest digest
    curl -sI -H "Accept: $accept" "http://127.0.0.1:$1/v2/$name/manifests/latest" |
        sed -n 's/^docker-content-digest: *\([^[:space:]]*\).*/\1/Ip'
}

# --- timings ------------------------------------------------------------------------------
# ttfb PORT REPO -> seconds to the manifest's first byte (fails unless 200)
ttfb() {
    local out
    out=$(curl -s -o "$tmp/manifest.json" -w '%{http_code} %{time_starttransfer}' \
        -H "Accept: $accept" "http://127.0.0.1:$1/v2/$2/manifests/latest")
    if [[ ${out% *} != 200 ]]; then
        echo "GET /v2/$2/manifests/latest on port $1: HTTP ${out% *}" >&2
        cat "$tmp/manifest.json" >&2
        exit 1
    fi
    echo "${out#* }"
}
# pull PORT REPO DEST -> seconds of a full pull into a fresh dir:DEST
pull() {
    local t0 t1
    rm -rf "$3"
    sync
    t0=${EPOCHREALTIME/./}
    skopeo --insecure-policy copy --quiet --src-tls-verify=false \
        "docker://127.0.0.1:$1/$2:latest" "dir:$3" 2>"$tmp/skopeo.log" || {
        echo "skopeo copy from port $1 failed:" >&2
        cat "$tmp/skopeo.log" >&2
        exit 1
    }
    t1=${EPOCHREALTIME/./}
    printf '%d.%06d\n' $(((t1 - t0) / 1000000)) $(((t1 - t0) % 1000000))
}
timed() { # timed CMD… -> seconds (fails with the command)
    local t0=${EPOCHREALTIME/./} t1
    "$@" >/dev/null || return 1
    t1=${EPOCHREALTIME/./}
    printf '%d.%06d\n' $(((t1 - t0) / 1000000)) $(((t1 - t0) % 1000000))
}
# measure METRIC CMD…: runs CMD (which prints seconds) and records its output.
measure() {
    local t
    t=$("${@:2}") || exit 1
    echo "$t" >>"$tmp/res-$1"
}
built_line() { sed -n 's/.*serve: built [^ ]*: sha256:[0-9a-f]*, //p' "$tmp/$1.log" | tail -1; }

for run in $(seq "$runs"); do
    # serve 1: cold TTFB, then warm on the same server, then after a restart.
    storage=$tmp/storage-$run-a
    port=$(start_serve "serve-$run-a" "$storage")
    if [[ ! -e $tmp/nix/nixery.nix ]]; then
        cp -r "$storage/nix" "$tmp/nix"
    fi
    purge_serve
    warm_packages
    wait_quiet
    measure serve-cold-ttfb ttfb "$port" "$name"
    echo "$(built_line "serve-$run-a")" >"$tmp/built-$run-a"
    wait_quiet
    measure serve-warm-ttfb ttfb "$port" "$name"
    warm_serve_blobs "$storage"
    wait_quiet
    measure serve-warm-pull pull "$port" "$name" "$tmp/pull-serve"
    stop "serve-$run-a"
    port=$(start_serve "serve-$run-r" "$storage")
    wait_quiet
    measure serve-restart-ttfb ttfb "$port" "$name"
    warm_serve_blobs "$storage"
    wait_quiet
    measure serve-restart-pull pull "$port" "$name" "$tmp/pull-serve-r"
    grep -q 'serve: built' "$tmp/serve-$run-r.log" && echo "note: the restarted server built again" >&2
    stop "serve-$run-r"
    rm -rf "$storage"

    # serve 2: a cold full pull.
    purge_serve
    storage=$tmp/storage-$run-b
    port=$(start_serve "serve-$run-b" "$storage")
    warm_packages
    wait_quiet
    measure serve-cold-pull pull "$port" "$name" "$tmp/pull-serve-cold"
    echo "$(built_line "serve-$run-b")" >"$tmp/built-$run-b"
    stop "serve-$run-b"
    rm -rf "$storage"
    purge_serve

    # baseline: nix-build, push to a fresh registry, then TTFB and pull from it; and the
    # cold cost again with the archive uncompressed.
    rport=$(base_cold none base-none "registry-$run-none")
    none_digest=$(manifest_digest "$rport")
    stop "registry-$run-none"
    rm -rf "${tmp:?}/registry-$run-none"
    rport=$(base_cold gz base "registry-$run")
    image=$(readlink "$tmp/base-result")
    gz_digest=$(manifest_digest "$rport")
    wait_quiet
    measure base-ttfb ttfb "$rport" "$name"
    warm_registry_blobs "registry-$run"
    wait_quiet
    measure base-pull pull "$rport" "$name" "$tmp/pull-base"
    base_bytes=$(stat -c %s "$image")
    if ((run < runs)); then
        stop "registry-$run"
        rm -rf "${tmp:?}/registry-$run"
    fi
done

# --- breakdown of serve's cold build ------------------------------------------------------
breakdown=()
if [[ ${BREAKDOWN:-1} != 0 ]]; then
    args=("${nixery_args[@]}")
    purge_serve
    o=$tmp/breakdown-root
    bd() { # bd LABEL CMD…
        local t
        warm_packages
        wait_quiet
        t=$(timed "${@:2}" 2>"$tmp/bd.log") || {
            echo "$1 failed:" >&2
            cat "$tmp/bd.log" >&2
            exit 1
        }
        breakdown+=("$(printf '  %-58s %8.2f s' "$1" "$t")")
    }
    bd "evaluation up to the plan (nix-instantiate -A plan)" \
        nix-instantiate "${args[@]}" "${nix_options[@]}" -A plan
    bd "the plan (nix-build -A plan: evaluation + the IFD build)" \
        nix-build "${args[@]}" "${nix_options[@]}" -A plan -o "$o-plan"
    bd "whole evaluation, plan read back (nix-instantiate)" \
        nix-instantiate "${args[@]}" "${nix_options[@]}"
    bd "the $(nix-instantiate "${args[@]}" "${nix_options[@]}" -A layers 2>/dev/null | wc -l) layer derivations (nix-build -A layers)" \
        nix-build "${args[@]}" "${nix_options[@]}" -A layers -o "$o-layers"
    bd "config + manifest output (nix-build)" \
        nix-build "${args[@]}" "${nix_options[@]}" -o "$o-manifest"
    layer_bytes=$(cat "$o"-layers*/layer.tar* | wc -c)
    rm -f "$o"*
    purge_serve
    nix-build "${args[@]}" "${nix_options[@]}" -A plan -o "$o-plan" >/dev/null 2>&1
    bd "the layers again, max-jobs 2 (nix-build -A layers)" \
        nix-build "${args[@]}" "${nix_options[@]}" --option max-jobs 2 -A layers -o "$o-layers"
    bd "the layers again, compressor none (nix-build -A layers)" \
        nix-build "${args[@]}" --argstr compressor none "${nix_options[@]}" -A layers -o "$o-none"
    none_bytes=$(cat "$o"-none*/layer.tar | wc -c)
    rm -f "$o"*
    purge_serve
    purge_serve none
fi

# --- the images compared ------------------------------------------------------------------
compare() {
    python3 - "$tmp/pull-serve" "$tmp/pull-base" "$tmp/closure" <<'PY'
import json, os, sys, tarfile
def listing(d):
    m = json.load(open(os.path.join(d, "manifest.json")))
    store, other, size = set(), set(), 0
    for l in m["layers"]:
        h = l["digest"].split(":")[1]
        size += l["size"]
        with tarfile.open(os.path.join(d, h), "r:*") as t:
            for e in t:
                name = os.path.normpath("/" + e.name).lstrip("/")  # /nix/…, ./nix/…, nix/…
                row = (name, e.type, e.size if e.isfile() else 0, e.mode, e.linkname)
                (store if name.startswith("nix/store/") else other).add(row)
    return len(m["layers"]), size, store, other
sl, ss, sstore, sother = listing(sys.argv[1])
bl, bs, bstore, bother = listing(sys.argv[2])
closure = {os.path.basename(p) for p in open(sys.argv[3]).read().split()}
def paths(rows):
    return {r[0].split("/")[2] for r in rows}
print(f"layers: serve {sl}, registry {bl}; compressed: serve {ss / 2**20:.1f} MiB, registry {bs / 2**20:.1f} MiB")
same = sstore == bstore
print(f"store files (path, type, size, mode, link): serve {len(sstore)}, registry {len(bstore)}: "
      + ("SAME" if same else f"DIFFERENT ({len(sstore - bstore)} only in serve's, {len(bstore - sstore)} only in the registry's)"))
ok = paths(sstore) == paths(bstore) == closure
print(f"store paths: serve {len(paths(sstore))}, registry {len(paths(bstore))}, packages' closure {len(closure)}: "
      + ("SAME" if ok else "DIFFERENT"))
print(f"outside the store (customisation layer): serve {len(sother)} entries, registry {len(bother)}, "
      + ("same" if sother == bother else f"{len(sother & bother)} in common"))
sys.exit(0 if same and ok else 1)
PY
}

# --- report -------------------------------------------------------------------------------
best() { min $(cat "$tmp/res-$1"); }
all() { tr '\n' ' ' <"$tmp/res-$1" | sed 's/ $//'; }
cell() { printf '%.4f' "$(best "$1")"; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores," \
    "$(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(nix --version)"
echo "stevedore: $stevedore ($("$stevedore" --version)); $(skopeo --version);" \
    "$(docker-registry --version | sed 's/^docker-registry //'); curl $(curl --version | head -1 | cut -d' ' -f2)"
echo "image: $name (+ cacert, iana-etc): $npaths store paths, $nfiles files, $((nbytes / 1048576)) MiB" \
    "(bench/serve-pkgs, built before, untimed)"
echo "nix options: $(printf '%q ' "${nix_options[@]}")(max-jobs: $(nix --extra-experimental-features nix-command show-config 2>/dev/null | sed -n 's/^max-jobs = //p'))"
echo "serve's builds (its log): cold TTFB run: $(cat "$tmp/built-$runs-a"); cold pull run: $(cat "$tmp/built-$runs-b")"
echo "baseline: buildLayeredImage archive $((base_bytes / 1048576)) MiB (gzipped), pushed with stevedore copy --compress gzip"
echo "runs: $runs (best kept)"
echo
printf '%-44s %14s %14s\n' "" "TTFB (s)" "full pull (s)"
printf '%-44s %14s %14s\n' "serve, cold (nix-build on the request)" "$(cell serve-cold-ttfb)" "$(cell serve-cold-pull)"
printf '%-44s %14s %14s\n' "serve, warm (same server)" "$(cell serve-warm-ttfb)" "$(cell serve-warm-pull)"
printf '%-44s %14s %14s\n' "serve, warm (restarted, same storage)" "$(cell serve-restart-ttfb)" "$(cell serve-restart-pull)"
printf '%-44s %14s %14s\n' "registry (buildLayeredImage, pushed)" "$(cell base-ttfb)" "$(cell base-pull)"
base_cold=$(python3 -c 'import sys; print(sum(map(float, sys.argv[1:])))' "$(best base-build)" "$(best base-push)")
printf '%-44s %14s %14s\n' "baseline cold: nix-build + push (+ request)" \
    "$(python3 -c 'import sys; print(f"{float(sys.argv[1]) + float(sys.argv[2]):.4f}")' "$base_cold" "$(best base-ttfb)")" \
    "$(python3 -c 'import sys; print(f"{float(sys.argv[1]) + float(sys.argv[2]):.4f}")' "$base_cold" "$(best base-pull)")"
base_none_cold=$(python3 -c 'import sys; print(sum(map(float, sys.argv[1:])))' "$(best base-none-build)" "$(best base-none-push)")
printf '%-44s %14s %14s\n' "  the same, archive uncompressed (\"none\")" \
    "$(python3 -c 'import sys; print(f"{float(sys.argv[1]) + float(sys.argv[2]):.4f}")' "$base_none_cold" "$(best base-ttfb)")" \
    "$(python3 -c 'import sys; print(f"{float(sys.argv[1]) + float(sys.argv[2]):.4f}")' "$base_none_cold" "$(best base-pull)")"
echo "  (gz: nix-build $(cell base-build) s, push $(cell base-push) s; none: nix-build" \
    "$(cell base-none-build) s, push $(cell base-none-push) s; the same image pushed:" \
    "$([[ -n $gz_digest && $gz_digest == "$none_digest" ]] && echo "yes, $gz_digest" || echo "NO, $gz_digest, $none_digest"))"
echo
echo "ratios (above 1: serve is faster):"
echo "  cold: (baseline nix-build + push + pull) / serve cold pull:" \
    "$(ratio "$(python3 -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2]))' "$base_cold" "$(best base-pull)")" "$(best serve-cold-pull)")x;" \
    "(nix-build + push + TTFB) / serve cold TTFB:" \
    "$(ratio "$(python3 -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2]))' "$base_cold" "$(best base-ttfb)")" "$(best serve-cold-ttfb)")x"
echo "  cold, archive uncompressed: pull $(ratio "$(python3 -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2]))' "$base_none_cold" "$(best base-pull)")" "$(best serve-cold-pull)")x," \
    "TTFB $(ratio "$(python3 -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2]))' "$base_none_cold" "$(best base-ttfb)")" "$(best serve-cold-ttfb)")x"
echo "  warm: registry / serve: TTFB $(ratio "$(best base-ttfb)" "$(best serve-warm-ttfb)")x," \
    "pull $(ratio "$(best base-pull)" "$(best serve-warm-pull)")x; after a restart: TTFB" \
    "$(ratio "$(best base-ttfb)" "$(best serve-restart-ttfb)")x, pull $(ratio "$(best base-pull)" "$(best serve-restart-pull)")x"
if ((runs > 1)); then
    echo
    echo "all runs:"
    for m in serve-cold-ttfb serve-cold-pull serve-warm-ttfb serve-warm-pull serve-restart-ttfb \
        serve-restart-pull base-build base-push base-ttfb base-pull base-none-build base-none-push; do
        printf '  %-20s %s\n' "$m" "$(all "$m")"
    done
fi
if ((${#breakdown[@]})); then
    echo
    echo "breakdown of serve's cold build (the same nixery.nix and arguments, by steps; each"
    echo "nix command evaluates again):"
    printf '%s\n' "${breakdown[@]}"
    echo "  layer blobs: gzip $((layer_bytes / 1048576)) MiB, none $((none_bytes / 1048576)) MiB"
fi
echo
status=0
compare || status=1
if was_noisy; then
    echo "note: other load was seen on the machine before some timings; they may be pessimistic"
fi
exit $status
