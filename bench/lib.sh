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
