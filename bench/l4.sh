#!/usr/bin/env bash
# End-to-end L4 benchmark: direct vs mosn (tcp_proxy) vs nginx stream vs haproxy (mode tcp).
#
#   bench/l4.sh [--quick] [--workers N] [--only direct,mosn,nginx,haproxy] [--rounds N] [--no-build]
#
# Measures, through each path and in one run:
#   1. small request/response rate: wrk -t1 -c50 against a tiny nginx HTTP upstream (req/s, p50, p99)
#   2. bulk throughput: iperf3, 1 stream and 4 streams (Gbit/s)
#   3. CPU time of the proxy process(es): µs CPU per request, CPU seconds per GB
#   4. ratios mosn/nginx and mosn/haproxy, with PASS/MISS against the targets
# Prints a Markdown report to stdout and writes it to bench/results/l4-<date>.md.
# Progress goes to stderr. The script fails only when a step breaks, never on a MISS.
# See docs/BENCHMARKS.md for the method.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WAIT_LISTEN_SECONDS=10
SKIP_MOSN_ONLY=direct,nginx,haproxy

usage() {
    cat <<'EOF'
usage: bench/l4.sh [options]
  --quick            3 s runs instead of 10 s
  --workers N        worker processes/threads for every proxy (mosn "processor",
                     nginx worker_processes, haproxy nbthread); default 1
  --only LIST        comma-separated subset of direct,mosn,nginx,haproxy
                     (default: all; env L4_ONLY works too)
  --rounds N         measurement rounds, alternating forward/reverse order; best
                     round is reported (default 4; with --quick 2)
  --no-build         do not run cargo build; use the existing binary
                     (env MOSN_BIN overrides target/release/mosn)
  --quiet-wait S     before each measurement wait up to S seconds for the machine
                     to be idle (other processes < 25 % of all CPUs); default 60,
                     0 disables
  -h, --help         this text
EOF
}

QUICK=0
WORKERS=1
ROUNDS=""
BUILD=1
QUIET_WAIT=60
ONLY="${L4_ONLY:-direct,mosn,nginx,haproxy}"
ARGS_TEXT="$*"

while (($#)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --workers) WORKERS="${2:?--workers needs a value}"; shift ;;
    --workers=*) WORKERS="${1#*=}" ;;
    --only) ONLY="${2:?--only needs a value}"; shift ;;
    --only=*) ONLY="${1#*=}" ;;
    --rounds) ROUNDS="${2:?--rounds needs a value}"; shift ;;
    --rounds=*) ROUNDS="${1#*=}" ;;
    --no-build) BUILD=0 ;;
    --quiet-wait) QUIET_WAIT="${2:?--quiet-wait needs a value}"; shift ;;
    --quiet-wait=*) QUIET_WAIT="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "l4.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[l4 %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[l4] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"
if [[ -z "$ROUNDS" ]]; then if ((QUICK)); then ROUNDS=2; else ROUNDS=4; fi; fi
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || die "--quiet-wait must be a number of seconds"

ALL_PATHS=(direct mosn nginx haproxy)
PATHS=()
IFS=',' read -r -a wanted <<<"$ONLY"
for w in "${wanted[@]}"; do
    case "$w" in direct | mosn | nginx | haproxy) ;; *) die "--only: unknown path '$w'" ;; esac
done
for p in "${ALL_PATHS[@]}"; do
    for w in "${wanted[@]}"; do
        if [[ "$w" == "$p" ]]; then PATHS+=("$p"); break; fi
    done
done
((${#PATHS[@]})) || die "--only selects no path"

if ((QUICK)); then DUR=3; else DUR=10; fi
WARMUP=1
CONNS=50

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
RESULTS_DIR="$ROOT/bench/results"
MOSN_BIN="${MOSN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mosn}"
if [[ "$MOSN_BIN" != */* ]]; then
    MOSN_BIN="$(command -v "$MOSN_BIN" || echo "$MOSN_BIN")" # a bare name: look it up in PATH
fi
[[ "$MOSN_BIN" == /* ]] || MOSN_BIN="$PWD/$MOSN_BIN"               # the proxy runs from a temp dir

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx)
if has_path nginx && ! compgen -G '/usr/lib/nginx/modules/ngx_stream_module.so' >/dev/null; then
    need_pkgs+=(libnginx-mod-stream)
fi
if has_path haproxy; then command -v haproxy >/dev/null || need_pkgs+=(haproxy); fi
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v iperf3 >/dev/null || need_pkgs+=(iperf3)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v ss >/dev/null || need_pkgs+=(iproute2)
command -v pgrep >/dev/null || need_pkgs+=(procps)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
fi
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
if has_path nginx; then [[ -f "$STREAM_MODULE" ]] || die "nginx stream module not found at $STREAM_MODULE"; fi
CLK_TCK="$(getconf CLK_TCK)"
NCPU="$(nproc)"

# ---------------------------------------------------------------- ports, temp dir, cleanup
BASE=$((20000 + ($$ % 2000) * 10))
P_HTTP=$((BASE + 0))       # upstream nginx HTTP
P_IPERF=$((BASE + 1))      # upstream iperf3 -s
P_MOSN=$((BASE + 2))
P_MOSN_ADMIN=$((BASE + 3))
P_NGINX=$((BASE + 4))
P_HAPROXY=$((BASE + 5))
for port in "$P_HTTP" "$P_IPERF" "$P_MOSN" "$P_MOSN_ADMIN" "$P_NGINX" "$P_HAPROXY"; do
    if ss -Htln "sport = :$port" | grep -q .; then die "port $port is already in use (pid-derived base $BASE); rerun"; fi
done

TMP="$(mktemp -d /tmp/mosn-l4.XXXXXX)"
PIDS=()

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# our_ticks: CPU ticks of everything this benchmark runs: upstreams, the proxy, our children
our_ticks() {
    local t
    t=$(($(cpu_ticks "$UP_HTTP_PID") + $(cpu_ticks "$UP_IPERF_PID") + $(self_child_ticks)))
    if [[ -n "${PROXY_PID:-}" ]]; then t=$((t + $(cpu_ticks "$PROXY_PID"))); fi
    echo "$t"
}

fdiv() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (b == 0 || a == "" || b == "") print "n/a"; else printf f "\n", a / b }'; }

# ---------------------------------------------------------------- build
if has_path mosn; then
    if ((BUILD)); then
        log "cargo build --release --bin mosn"
        (cd "$ROOT" && cargo build --release --bin mosn) >&2 || die "cargo build --release --bin mosn failed"
    fi
    [[ -x "$MOSN_BIN" ]] || die "mosn binary not found at $MOSN_BIN"
fi

RUSTC_AT_START="$(pgrep -c -x rustc || true)"
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
if ((RUSTC_AT_START > 0)); then
    log "WARNING: $RUSTC_AT_START rustc process(es) running: other compiles share the CPU; figures will be noisy"
fi

# ---------------------------------------------------------------- upstreams
mkdir -p "$TMP/up-http"
cat >"$TMP/up-http/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/up-http/nginx.pid;
error_log $TMP/up-http/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/up-http/body;
    proxy_temp_path $TMP/up-http/proxy;
    fastcgi_temp_path $TMP/up-http/fastcgi;
    uwsgi_temp_path $TMP/up-http/uwsgi;
    scgi_temp_path $TMP/up-http/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$P_HTTP backlog=4096;
        location / { return 200 "hello\n"; }
    }
}
EOF

start_upstreams() {
    log "starting upstream nginx HTTP on :$P_HTTP and iperf3 -s on :$P_IPERF"
    nginx -p "$TMP/up-http/" -e "$TMP/up-http/error.log" -c "$TMP/up-http/nginx.conf" -g 'daemon off;' \
        >"$TMP/up-http/stdout.log" 2>&1 &
    UP_HTTP_PID=$!
    PIDS+=("$UP_HTTP_PID")
    wait_listen "$P_HTTP" "$UP_HTTP_PID" "upstream nginx" "$TMP/up-http/error.log"

    iperf3 -s -B 127.0.0.1 -p "$P_IPERF" >"$TMP/iperf3-server.log" 2>&1 &
    UP_IPERF_PID=$!
    PIDS+=("$UP_IPERF_PID")
    wait_listen "$P_IPERF" "$UP_IPERF_PID" "iperf3 server" "$TMP/iperf3-server.log"
}

# ---------------------------------------------------------------- proxies
# start_proxy PATH UPSTREAM_PORT -> sets PROXY_PID, FRONT_PORT (PROXY_PID empty for direct)
start_proxy() {
    local path="$1" up="$2" dir="$TMP/$1-$2"
    PROXY_PID=""
    mkdir -p "$dir"
    case "$path" in
    direct)
        FRONT_PORT="$up"
        return 0
        ;;
    mosn)
        FRONT_PORT="$P_MOSN"
        cat >"$dir/mosn.json" <<EOF
{"pid":"$dir/mosn.pid",
 "servers":[{"default_log_path":"stderr","default_log_level":"WARN","processor":$WORKERS,
  "listeners":[{"name":"l4","address":"127.0.0.1:$P_MOSN","bind_port":true,
    "filter_chains":[{"filters":[{"type":"tcp_proxy","config":{"cluster":"up","max_connect_attempts":1}}]}]}]}],
 "cluster_manager":{"clusters":[{"name":"up","type":"SIMPLE","lb_type":"LB_ROUNDROBIN","hosts":[{"address":"127.0.0.1:$up"}]}]},
 "admin":{"address":{"socket_address":{"address":"127.0.0.1","port_value":$P_MOSN_ADMIN}}}}
EOF
        (cd "$dir" && exec "$MOSN_BIN" start -c "$dir/mosn.json") >"$dir/mosn.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "mosn" "$dir/mosn.log"
        ;;
    nginx)
        FRONT_PORT="$P_NGINX"
        cat >"$dir/nginx.conf" <<EOF
load_module $STREAM_MODULE;
worker_processes $WORKERS;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
stream {
    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        proxy_pass 127.0.0.1:$up;
        proxy_connect_timeout 5s;
        proxy_timeout 300s;
    }
}
EOF
        nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' >"$dir/stdout.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "nginx stream" "$dir/error.log"
        ;;
    haproxy)
        FRONT_PORT="$P_HAPROXY"
        cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn 8192

defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s

frontend fe
    bind 127.0.0.1:$P_HAPROXY
    default_backend be

backend be
    server up 127.0.0.1:$up
EOF
        haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "haproxy" "$dir/haproxy.log"
        ;;
    esac
}

# one HTTP request through the path; fails clearly when the proxy accepts but does not relay
check_http() {
    local path="$1" port="$2" code
    code="$(curl -sS -m 5 -o "$TMP/check.body" -w '%{http_code}' "http://127.0.0.1:$port/" 2>"$TMP/check.err")" || code="error: $(cat "$TMP/check.err")"
    if [[ "$code" != 200 ]] || ! grep -q hello "$TMP/check.body" 2>/dev/null; then
        local hint=""
        [[ "$path" == mosn ]] && hint="; mosn's tcp_proxy does not relay yet? run with --only direct,nginx,haproxy to skip it"
        die "$path: an HTTP request through 127.0.0.1:$port failed ($code)$hint"
    fi
}

# ---------------------------------------------------------------- measurements
declare -A RPS P50 P99 CPUREQ CPUPCT ERRS GBPS CPUGB BGR BGB

run_wrk() { # run_wrk PATH ROUND
    local path="$1" round="$2" out="$TMP/wrk-$1-$2.txt" t0 t1 c0=0 c1=0 reqs rps p50 p99 errs secs
    start_proxy "$path" "$P_HTTP"
    check_http "$path" "$FRONT_PORT"
    wait_quiet
    wrk -t1 -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$FRONT_PORT/" >/dev/null 2>&1 || die "$path: wrk warm-up failed"
    bg_begin
    [[ -n "$PROXY_PID" ]] && c0="$(cpu_ticks "$PROXY_PID")"
    t0="$(now)"
    wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$FRONT_PORT/" >"$out" 2>&1 || {
        cat "$out" >&2
        die "$path: wrk failed"
    }
    t1="$(now)"
    [[ -n "$PROXY_PID" ]] && c1="$(cpu_ticks "$PROXY_PID")"
    BGR[$path,$round]="$(bg_end)"
    stop_proxy

    reqs="$(awk '/requests in/ { print $1; exit }' "$out")"
    rps="$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")"
    p50="$(awk '$1 == "50%" { print $2; exit }' "$out")"
    p99="$(awk '$1 == "99%" { print $2; exit }' "$out")"
    errs="$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }' "$out")"
    [[ -n "$reqs" && "$reqs" -gt 0 && -n "$rps" && -n "$p50" && -n "$p99" ]] || {
        cat "$out" >&2
        die "$path: wrk completed no request or its output could not be parsed"
    }
    RPS[$path,$round]="$rps"
    P50[$path,$round]="$(to_ms "$p50")"
    P99[$path,$round]="$(to_ms "$p99")"
    ERRS[$path,$round]="$errs"
    if [[ "$path" == direct ]]; then
        CPUREQ[$path,$round]="—"
        CPUPCT[$path,$round]="—"
    else
        secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
        CPUREQ[$path,$round]="$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f\n", t / hz * 1e6 / n }')"
        CPUPCT[$path,$round]="$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f\n", t / hz / s * 100 }')"
    fi
    log "  $path round $round: $rps req/s, p50 ${P50[$path,$round]} ms, p99 ${P99[$path,$round]} ms, CPU ${CPUREQ[$path,$round]} µs/req (${CPUPCT[$path,$round]} %), errors $errs, background CPU ${BGR[$path,$round]} %"
}

# iperf_once PORT STREAMS OUT: one iperf3 client run, retrying once if the server is still busy
iperf_once() {
    local port="$1" streams="$2" out="$3" try
    for try in 1 2 3; do
        if iperf3 -c 127.0.0.1 -p "$port" -t "$DUR" -P "$streams" --connect-timeout 5000 -J >"$out" 2>&1; then
            return 0
        fi
        if grep -q 'busy' "$out" 2>/dev/null && ((try < 3)); then sleep 1; continue; fi
        return 1
    done
}

run_iperf() { # run_iperf PATH ROUND  (1 stream, then 4 streams, through one proxy instance)
    local path="$1" round="$2" streams out c0 c1 bytes bps
    start_proxy "$path" "$P_IPERF"
    for streams in 1 4; do
        out="$TMP/iperf-$path-$round-$streams.json"
        c0=0 c1=0
        wait_quiet
        bg_begin
        [[ -n "$PROXY_PID" ]] && c0="$(cpu_ticks "$PROXY_PID")"
        iperf_once "$FRONT_PORT" "$streams" "$out" || {
            jq -r '.error // empty' "$out" >&2 2>/dev/null || cat "$out" >&2
            die "$path: iperf3 -P $streams failed"
        }
        [[ -n "$PROXY_PID" ]] && c1="$(cpu_ticks "$PROXY_PID")"
        BGB[$path,$round,$streams]="$(bg_end)"
        bytes="$(jq -r '.end.sum_received.bytes // 0' "$out")"
        bps="$(jq -r '.end.sum_received.bits_per_second // 0' "$out")"
        [[ "$bytes" != 0 ]] || die "$path: iperf3 -P $streams moved no data"
        GBPS[$path,$round,$streams]="$(awk -v b="$bps" 'BEGIN { printf "%.2f\n", b / 1e9 }')"
        if [[ "$path" == direct ]]; then
            CPUGB[$path,$round,$streams]="—"
        else
            CPUGB[$path,$round,$streams]="$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v by="$bytes" 'BEGIN { printf "%.3f\n", (t / hz) / (by / 1e9) }')"
        fi
        log "  $path round $round, $streams stream(s): ${GBPS[$path,$round,$streams]} Gbit/s, CPU ${CPUGB[$path,$round,$streams]} s/GB, background CPU ${BGB[$path,$round,$streams]} %"
        sleep 0.5
    done
    stop_proxy
}

# ---------------------------------------------------------------- run
start_upstreams

log "preflight: one HTTP request through each selected path"
for path in "${PATHS[@]}"; do
    start_proxy "$path" "$P_HTTP"
    check_http "$path" "$FRONT_PORT"
    stop_proxy
done

STARTED_AT="$(date '+%Y-%m-%d %H:%M:%S %Z')"
for ((round = 1; round <= ROUNDS; round++)); do
    order=("${PATHS[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#PATHS[@]} - 1; i >= 0; i--)); do order+=("${PATHS[i]}"); done
    fi
    log "round $round/$ROUNDS, order: ${order[*]}"
    for path in "${order[@]}"; do run_wrk "$path" "$round"; done
    for path in "${order[@]}"; do run_iperf "$path" "$round"; done
done
RUSTC_AT_END="$(pgrep -c -x rustc || true)"
LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- best of rounds
declare -A BEST_R BEST_B
for path in "${PATHS[@]}"; do
    best=1
    for ((r = 2; r <= ROUNDS; r++)); do
        if awk -v a="${RPS[$path,$r]}" -v b="${RPS[$path,$best]}" 'BEGIN { exit !(a > b) }'; then best=$r; fi
    done
    BEST_R[$path]=$best
    for s in 1 4; do
        best=1
        for ((r = 2; r <= ROUNDS; r++)); do
            if awk -v a="${GBPS[$path,$r,$s]}" -v b="${GBPS[$path,$best,$s]}" 'BEGIN { exit !(a > b) }'; then best=$r; fi
        done
        BEST_B[$path,$s]=$best
    done
done

# metric PATH NAME -> best-round value
metric() {
    local p="$1"
    case "$2" in
    rps) echo "${RPS[$p,${BEST_R[$p]}]}" ;;
    p50) echo "${P50[$p,${BEST_R[$p]}]}" ;;
    p99) echo "${P99[$p,${BEST_R[$p]}]}" ;;
    cpureq) echo "${CPUREQ[$p,${BEST_R[$p]}]}" ;;
    cpupct) echo "${CPUPCT[$p,${BEST_R[$p]}]}" ;;
    errs) echo "${ERRS[$p,${BEST_R[$p]}]}" ;;
    bgr) echo "${BGR[$p,${BEST_R[$p]}]}" ;;
    bg1) echo "${BGB[$p,${BEST_B[$p,1]},1]}" ;;
    bg4) echo "${BGB[$p,${BEST_B[$p,4]},4]}" ;;
    g1) echo "${GBPS[$p,${BEST_B[$p,1]},1]}" ;;
    g4) echo "${GBPS[$p,${BEST_B[$p,4]},4]}" ;;
    gb1) echo "${CPUGB[$p,${BEST_B[$p,1]},1]}" ;;
    gb4) echo "${CPUGB[$p,${BEST_B[$p,4]},4]}" ;;
    esac
}

ratio() { # ratio METRIC OTHER_PATH [PRINTF_FORMAT]
    if has_path mosn && has_path "$2"; then
        local a b
        a="$(metric mosn "$1")"
        b="$(metric "$2" "$1")"
        if [[ "$a" == "—" || "$b" == "—" ]]; then echo "n/a"; else fdiv "$a" "$b" "${3:-%.2f}"; fi
    else
        echo "n/a"
    fi
}

# metric_r PATH NAME ROUND -> the value measured in that round
metric_r() {
    local p="$1" r="$3"
    case "$2" in
    rps) echo "${RPS[$p,$r]}" ;;
    p50) echo "${P50[$p,$r]}" ;;
    p99) echo "${P99[$p,$r]}" ;;
    cpureq) echo "${CPUREQ[$p,$r]}" ;;
    g1) echo "${GBPS[$p,$r,1]}" ;;
    g4) echo "${GBPS[$p,$r,4]}" ;;
    gb1) echo "${CPUGB[$p,$r,1]}" ;;
    gb4) echo "${CPUGB[$p,$r,4]}" ;;
    esac
}

# paired_median METRIC OTHER_PATH: median over rounds of mosn/OTHER, each ratio taken
# within one round (the two measurements are minutes apart, not the whole run)
paired_median() {
    if ! { has_path mosn && has_path "$2"; }; then echo "n/a"; return 0; fi
    local r a b
    for ((r = 1; r <= ROUNDS; r++)); do
        a="$(metric_r mosn "$1" "$r")"
        b="$(metric_r "$2" "$1" "$r")"
        fdiv "$a" "$b" %.6f
    done | grep -v n/a | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f\n", m }'
}

target_line() { # target_line LABEL METRIC MIN
    local r pm
    r="$(ratio "$2" nginx %.3f)"
    pm="$(paired_median "$2" nginx)"
    if [[ "$r" == "n/a" ]]; then
        echo "| $1 | >= $3x | n/a | n/a | not measured |"
    elif awk -v r="$r" -v m="$3" 'BEGIN { exit !(r >= m) }'; then
        echo "| $1 | >= $3x | ${r}x | ${pm}x | **PASS** |"
    else
        echo "| $1 | >= $3x | ${r}x | ${pm}x | **MISS** |"
    fi
}

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null; then GIT_REV="$GIT_REV + uncommitted changes"; fi
STAMP="$(date '+%Y%m%d-%H%M%S')"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/l4-$STAMP.md"
CMD="bench/l4.sh${ARGS_TEXT:+ $ARGS_TEXT}"

{
    echo "# L4 benchmark, $STARTED_AT"
    echo
    echo "- command: \`$CMD\` (git $GIT_REV)"
    echo "- machine: $(nproc) CPU(s), ${CPU_MODEL:-unknown CPU}, Linux $(uname -r)"
    echo "- peers: $(nginx -v 2>&1 | sed 's/^nginx version: //')$(has_path haproxy && echo ", $(haproxy -v | awk 'NR == 1 { print "HAProxy " $3 }')"), $(wrk -v 2>&1 | awk 'NR == 1 { print $1 " " $2 }'), $(iperf3 -v | awk 'NR == 1 { print $1 " " $2 }')"
    echo "- settings: $WORKERS worker(s) per proxy, ${DUR} s per run (+${WARMUP} s wrk warm-up), wrk -t1 -c$CONNS, $ROUNDS round(s) alternating forward/reverse order, best round reported, quiet wait up to ${QUIET_WAIT} s before each measurement"
    echo "- load average at start / end: $LOAD_AT_START / $LOAD_AT_END; rustc processes at start / end: $RUSTC_AT_START / $RUSTC_AT_END"
    echo "- absolute figures depend on this shared 2-core machine; compare the ratios, which come from one run"
    echo
    echo "## Small request/response rate (wrk, HTTP 'hello' upstream, keep-alive)"
    echo
    echo "| path | req/s | p50 ms | p99 ms | proxy CPU µs/req | proxy CPU % | errors | background CPU % |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for p in "${PATHS[@]}"; do
        echo "| $p | $(metric "$p" rps) | $(metric "$p" p50) | $(metric "$p" p99) | $(metric "$p" cpureq) | $(metric "$p" cpupct) | $(metric "$p" errs) | $(metric "$p" bgr) |"
    done
    echo
    echo "## Bulk throughput (iperf3 client -> server, ${DUR} s)"
    echo
    echo "| path | 1 stream Gbit/s | 1 stream proxy CPU s/GB | 4 streams Gbit/s | 4 streams proxy CPU s/GB | background CPU % (1 / 4) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for p in "${PATHS[@]}"; do
        echo "| $p | $(metric "$p" g1) | $(metric "$p" gb1) | $(metric "$p" g4) | $(metric "$p" gb4) | $(metric "$p" bg1) / $(metric "$p" bg4) |"
    done
    echo
    echo "## Ratios (same run)"
    echo
    echo "Best: ratio of the best rounds (the figures above). Paired median: median over rounds of the ratio within each round."
    echo
    echo "| figure | better | mosn/nginx best | mosn/nginx paired median | mosn/haproxy best | mosn/haproxy paired median |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
    echo "| req/s | higher | $(ratio rps nginx) | $(paired_median rps nginx) | $(ratio rps haproxy) | $(paired_median rps haproxy) |"
    echo "| p50 latency | lower | $(ratio p50 nginx) | $(paired_median p50 nginx) | $(ratio p50 haproxy) | $(paired_median p50 haproxy) |"
    echo "| p99 latency | lower | $(ratio p99 nginx) | $(paired_median p99 nginx) | $(ratio p99 haproxy) | $(paired_median p99 haproxy) |"
    echo "| CPU µs/req | lower | $(ratio cpureq nginx) | $(paired_median cpureq nginx) | $(ratio cpureq haproxy) | $(paired_median cpureq haproxy) |"
    echo "| 1 stream Gbit/s | higher | $(ratio g1 nginx) | $(paired_median g1 nginx) | $(ratio g1 haproxy) | $(paired_median g1 haproxy) |"
    echo "| 1 stream CPU s/GB | lower | $(ratio gb1 nginx) | $(paired_median gb1 nginx) | $(ratio gb1 haproxy) | $(paired_median gb1 haproxy) |"
    echo "| 4 streams Gbit/s | higher | $(ratio g4 nginx) | $(paired_median g4 nginx) | $(ratio g4 haproxy) | $(paired_median g4 haproxy) |"
    echo "| 4 streams CPU s/GB | lower | $(ratio gb4 nginx) | $(paired_median gb4 nginx) | $(ratio gb4 haproxy) | $(paired_median gb4 haproxy) |"
    echo
    echo "## Targets (mosn vs nginx stream)"
    echo
    echo "Judged on the best-round ratio; the paired median is shown for context."
    echo
    echo "| target | wanted | measured (best) | paired median | result |"
    echo "| --- | ---: | ---: | ---: | --- |"
    target_line "request rate" rps 1.0
    target_line "throughput, 1 stream" g1 0.9
    target_line "throughput, 4 streams" g4 0.9
    echo
    echo "## All rounds"
    echo
    echo "Background CPU % (bg) is the share of all CPUs used by processes outside the benchmark during that measurement."
    echo
    echo "| round | path | req/s | p50 ms | p99 ms | CPU µs/req | bg % | 1 stream Gbit/s | CPU s/GB | bg % | 4 streams Gbit/s | CPU s/GB | bg % |"
    echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for ((r = 1; r <= ROUNDS; r++)); do
        for p in "${PATHS[@]}"; do
            echo "| $r | $p | ${RPS[$p,$r]} | ${P50[$p,$r]} | ${P99[$p,$r]} | ${CPUREQ[$p,$r]} | ${BGR[$p,$r]} | ${GBPS[$p,$r,1]} | ${CPUGB[$p,$r,1]} | ${BGB[$p,$r,1]} | ${GBPS[$p,$r,4]} | ${CPUGB[$p,$r,4]} | ${BGB[$p,$r,4]} |"
        done
    done
} | tee "$REPORT"
log "report written to $REPORT"
