# Helpers shared by the bench scripts (sourced): timing, idle-CPU waits, verdicts.

# Elapsed seconds of a command (its stdout discarded), via bash's microsecond clock.
elapsed() {
    local t0=${EPOCHREALTIME/./}
    "$@" >/dev/null
    local t1=${EPOCHREALTIME/./}
    printf '%d.%06d\n' $(((t1 - t0) / 1000000)) $(((t1 - t0) % 1000000))
}

# Waits (up to ~30 s) until the CPUs are at least 90% idle over half a second, so that
# other work on the machine (a concurrent cargo build) does not land in a timing.
# (Timings run in subshells, so a busy wait is recorded in a file, not a variable.)
noisy_file=$(mktemp)
trap 'rm -f "$noisy_file"' EXIT
was_noisy() { [[ -s $noisy_file ]]; }
wait_quiet() {
    local _c u n s i w q sq st t0 b0 t1 b1
    for _ in $(seq 60); do
        read -r _c u n s i w q sq st _ </proc/stat
        t0=$((u + n + s + i + w + q + sq + st)) b0=$((u + n + s + q + sq + st))
        sleep 0.5
        read -r _c u n s i w q sq st _ </proc/stat
        t1=$((u + n + s + i + w + q + sq + st)) b1=$((u + n + s + q + sq + st))
        if (((b1 - b0) * 10 <= t1 - t0)); then return; fi
    done
    echo busy >>"$noisy_file"
    echo "warning: the machine stayed busy; this timing may be disturbed" >&2
}

min() { python3 -c 'import sys; print(min(float(x) for x in sys.argv[1:]))' "$@"; }
max() { python3 -c 'import sys; print(max(int(x) for x in sys.argv[1:]))' "$@"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$1" "$2"; }
verdict() { # verdict EXPR -> PASS or FAIL
    if python3 -c "import sys; sys.exit(0 if ($1) else 1)"; then echo PASS; else echo FAIL; fi
}

# The best of $runs timings of a command, each after waiting for idle CPUs; $before (a
# command, not timed) runs first each time.
best_of() {
    local times=() _
    for _ in $(seq "$runs"); do
        ${before:-true}
        wait_quiet
        times+=("$(elapsed "$@")")
    done
    echo "$(min "${times[@]}") (runs: ${times[*]})"
}

# Brings this checkout's release binary up to date (cargo does nothing when it is), unless
# $STEVEDORE names another binary; a stale binary would be benchmarked otherwise.
build_stevedore() {
    if [[ -z ${STEVEDORE:-} ]]; then
        (cd "$repo" && cargo build --release --quiet)
    fi
}

# The inputs every script uses, in $dir: the synthetic store ($store), its plan
# (layers.json, 99 layers) and the customisation layer (cust/).
make_inputs() {
    python3 "$here/make_store.py" "$dir" >/dev/null
    store=$dir/store
    "$stevedore" plan "$dir/graph.json" --limit 99 --store-dir "$store" >"$dir/layers.json"
    rm -rf "$dir/cust-src" "$dir/cust"
    mkdir -p "$dir/cust-src/etc"
    printf 'root:x:0:0::/root:/bin/sh\n' >"$dir/cust-src/etc/passwd"
    "$stevedore" customisation-layer "$dir/cust-src" -o "$dir/cust" 2>/dev/null
}

# $dir/conf.json of the whole store; $conf, the same with store-layer digests recorded
# (as the Nix conf step writes it); and $image, its docker archive (for skopeo).
make_image() {
    python3 - "$dir" "$store" <<'PY'
import json, sys
d, store = sys.argv[1], sys.argv[2]
json.dump({"architecture": "amd64", "config": {"Env": ["PATH=/bin"]}, "os": "linux",
           "store_dir": store, "from_image": None,
           "store_layers": json.load(open(f"{d}/layers.json")),
           "customisation_layer": f"{d}/cust", "repo_tag": "bench:1",
           "created": "1970-01-01T00:00:01+00:00", "mtime": "1970-01-01T00:00:01+00:00",
           "uid": "0", "gid": "0", "uname": "root", "gname": "root"},
          open(f"{d}/conf.json", "w"), indent=1)
PY
    conf=$dir/conf-digests.json
    "$stevedore" conf-digests "$dir/conf.json" -o "$conf" 2>/dev/null
    image=$dir/copy-image.tar
    rm -f "$image"
    "$stevedore" build-layered "$conf" -o "$image" 2>/dev/null
}

# --- local registries (the callers set $tmp and stop what $tmp/NAME.pid names) ----------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Starts Debian's docker-registry on 127.0.0.1 and a free port, with its own config,
# storage and logs in $tmp/NAME (access log: $tmp/NAME/access.log); prints the port.
start_registry() { # start_registry NAME -> the port
    local name=$1 port
    port=$(free_port)
    mkdir -p "$tmp/$name/storage"
    cat >"$tmp/$name/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $tmp/$name/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: stevedore-bench
EOF
    # The access log (Apache combined lines) goes to stdout, the rest to stderr.
    docker-registry serve "$tmp/$name/config.yml" >"$tmp/$name/access.log" 2>"$tmp/$name/registry.log" &
    echo $! >"$tmp/$name.pid"
    for _ in $(seq 50); do
        if curl -fs "http://127.0.0.1:$port/v2/" >/dev/null; then
            echo "$port"
            return
        fi
        sleep 0.1
    done
    echo "docker-registry did not start:" >&2
    cat "$tmp/$name/registry.log" >&2
    exit 1
}
