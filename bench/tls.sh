#!/usr/bin/env bash
# End-to-end TLS benchmark: TLS 1.3 termination in mosn (listener tls_context, proxy filter,
# direct_response) against nginx (ssl, return 200) and haproxy (ssl bind, http-request return),
# each with ONE worker pinned to CPU 0, the load generator (tls-load) pinned to CPU 1.
#
#   bench/tls.sh [--quick] [--rounds N] [--only LIST] [--certs ecdsa,rsa] [--modes full,resumed,bulk] [--no-build]
#
# Measures, for each certificate (ECDSA P-256, RSA-2048; X25519 always), each server and each
# mode, in one run:
#   1. full handshakes/s (no resumption offered; one small HTTP/1.1 request per connection,
#      Connection: close, answer checked for status 200)
#   2. resumed handshakes/s (TLS 1.3 session tickets; the share actually resumed is checked)
#   3. bulk throughput (keep-alive connections fetching a 1 MiB body), MB/s (ECDSA only: the
#      certificate does not matter once the connection is up)
#   4. CPU time of the server (utime+stime of the process and its children, /proc/PID/stat)
#      per handshake, and from it handshakes per CPU-second: the per-core rate, robust on a
#      noisy shared machine because it does not need the server to be saturated
#   5. paired ratios mosn/nginx and mosn/haproxy and PASS/MISS against the targets:
#      ECDSA full handshakes per CPU-second >= 1.5x nginx's; >= 6,600/s per core ECDSA and
#      >= 1,440/s per core RSA-2048 (60 % of the in-memory ceilings in ACCELERATION.md §7)
# Prints a Markdown report to stdout and writes it to bench/results/tls-<date>.md; the
# generated configs go to bench/results/tls-<date>/. Progress goes to stderr.
# The script fails only when a step breaks, never on a MISS. See docs/BENCHMARKS.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WAIT_LISTEN_SECONDS=15
SKIP_MOSN_ONLY=nginx,haproxy

usage() {
    cat <<'EOF'
usage: bench/tls.sh [options]
  --quick            3 s runs and 2 rounds instead of 10 s and 4 rounds
  --rounds N         rounds, alternating forward/reverse server order; default 4
                     (with --quick 2)
  --only LIST        comma-separated subset of mosn,nginx,haproxy (default: all;
                     env TLS_ONLY works too)
  --certs LIST       comma-separated subset of ecdsa,rsa (default: both)
  --modes LIST       comma-separated subset of full,resumed,bulk (default: all)
  --connections C    concurrent handshake loops of the load generator; default 32
  --bulk-connections C  keep-alive connections of the bulk test; default 4
  --suite S          cipher suites the client offers: default (AES-256-GCM-SHA384 first,
                     as rustls and OpenSSL clients), aes128 (TLS_AES_128_GCM_SHA256 only,
                     the browsers' first choice), aes256; default: default
  --no-build         do not run cargo build; use the existing binaries (env MOSN_BIN
                     overrides target/release/mosn, BENCH_BIN_DIR the directory of
                     tls-load, default target/release)
  --quiet-wait S     before each measurement wait up to S seconds for the machine
                     to be idle (other processes < 25 % of all CPUs); default 60,
                     0 disables
  -h, --help         this text
EOF
}

QUICK=0
ROUNDS=""
BUILD=1
QUIET_WAIT=60
CONNS=32
BULK_CONNS=4
SUITE=default
ONLY="${TLS_ONLY:-mosn,nginx,haproxy}"
CERTS_ARG="ecdsa,rsa"
MODES_ARG="full,resumed,bulk"
ARGS_TEXT="$*"

while (($#)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS="${2:?--rounds needs a value}"; shift ;;
    --rounds=*) ROUNDS="${1#*=}" ;;
    --only) ONLY="${2:?--only needs a value}"; shift ;;
    --only=*) ONLY="${1#*=}" ;;
    --certs) CERTS_ARG="${2:?--certs needs a value}"; shift ;;
    --certs=*) CERTS_ARG="${1#*=}" ;;
    --modes) MODES_ARG="${2:?--modes needs a value}"; shift ;;
    --modes=*) MODES_ARG="${1#*=}" ;;
    --connections) CONNS="${2:?--connections needs a value}"; shift ;;
    --connections=*) CONNS="${1#*=}" ;;
    --bulk-connections) BULK_CONNS="${2:?--bulk-connections needs a value}"; shift ;;
    --bulk-connections=*) BULK_CONNS="${1#*=}" ;;
    --suite) SUITE="${2:?--suite needs a value}"; shift ;;
    --suite=*) SUITE="${1#*=}" ;;
    --no-build) BUILD=0 ;;
    --quiet-wait) QUIET_WAIT="${2:?--quiet-wait needs a value}"; shift ;;
    --quiet-wait=*) QUIET_WAIT="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "tls.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[tls %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[tls] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -z "$ROUNDS" ]]; then if ((QUICK)); then ROUNDS=2; else ROUNDS=4; fi; fi
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || die "--quiet-wait must be a number of seconds"
[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
[[ "$BULK_CONNS" =~ ^[1-9][0-9]*$ ]] || die "--bulk-connections must be a positive integer"
case "$SUITE" in default | aes128 | aes256) ;; *) die "--suite must be default, aes128 or aes256" ;; esac

# pick LIST ALLOWED...: the allowed names LIST selects, in the allowed order
pick() {
    local list="$1" what="$2" w a out=()
    shift 2
    local -a wanted
    IFS=',' read -r -a wanted <<<"$list"
    for w in "${wanted[@]}"; do
        for a in "$@"; do [[ "$w" == "$a" ]] && continue 2; done
        die "$what: unknown name '$w'"
    done
    for a in "$@"; do
        for w in "${wanted[@]}"; do
            if [[ "$w" == "$a" ]]; then out+=("$a"); break; fi
        done
    done
    ((${#out[@]})) || die "$what selects nothing"
    echo "${out[*]}"
}
read -r -a PATHS <<<"$(pick "$ONLY" --only mosn nginx haproxy)"
read -r -a CERTS <<<"$(pick "$CERTS_ARG" --certs ecdsa rsa)"
read -r -a MODES <<<"$(pick "$MODES_ARG" --modes full resumed bulk)"
PEERS=(nginx haproxy)
has_mode() {
    local m
    for m in "${MODES[@]}"; do [[ "$m" == "$1" ]] && return 0; done
    return 1
}
# workloads "CERT:MODE", the unit of every table; bulk only with the first certificate
WLS=()
for c in "${CERTS[@]}"; do
    for m in "${MODES[@]}"; do
        if [[ "$m" == bulk && "$c" != "${CERTS[0]}" ]]; then continue; fi
        WLS+=("$c:$m")
    done
done
cert_label() { case "$1" in ecdsa) echo "ECDSA P-256" ;; rsa) echo "RSA-2048" ;; esac; }
wl_label() { echo "$(cert_label "${1%%:*}"), ${1##*:}"; }

if ((QUICK)); then DUR=3; else DUR=10; fi
WARMUP=1                  # s of unmeasured load before each measured run, same client and shape
BODY="hello"              # the small answer (6 bytes with the newline)
BIG_BYTES=$((1024 * 1024)) # the bulk body
TARGET_NGINX=1.5          # ECDSA full handshakes per CPU-second, mosn / nginx
TARGET_ECDSA=6600         # per core: 60 % of ~11k/s (ACCELERATION.md §7)
TARGET_RSA=1440           # per core: 60 % of ~2.4k/s

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
RESULTS_DIR="$ROOT/bench/results"
MOSN_BIN="${MOSN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mosn}"
if [[ "$MOSN_BIN" != */* ]]; then
    MOSN_BIN="$(command -v "$MOSN_BIN" || echo "$MOSN_BIN")" # a bare name: look it up in PATH
fi
[[ "$MOSN_BIN" == /* ]] || MOSN_BIN="$PWD/$MOSN_BIN" # the proxy runs from a temp dir
BENCH_BIN_DIR="${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
[[ "$BENCH_BIN_DIR" == /* ]] || BENCH_BIN_DIR="$PWD/$BENCH_BIN_DIR"
LOAD_BIN="$BENCH_BIN_DIR/tls-load"
NCPU="$(nproc)"
((NCPU >= 2)) || die "needs at least 2 CPUs (server on CPU 0, load generator on CPU 1)"
PIN_SERVER=(taskset -c 0)
PIN_LOAD=(taskset -c 1)

# ---------------------------------------------------------------- tools
need_pkgs=()
if has_path nginx; then command -v nginx >/dev/null || need_pkgs+=(nginx); fi
if has_path haproxy; then command -v haproxy >/dev/null || need_pkgs+=(haproxy); fi
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v ss >/dev/null || need_pkgs+=(iproute2)
command -v pgrep >/dev/null || need_pkgs+=(procps)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
fi
CLK_TCK="$(getconf CLK_TCK)"

# ---------------------------------------------------------------- ports, temp dir, cleanup
# 4 ports from a pid-derived base below the ephemeral range, in the slots of the same formula
# that http.sh (+0..+11) and rpc.sh (+14..+17) leave free, so the three never collide
SLOT=$((10000 + ($$ % 1100) * 20))
P_MOSN=$((SLOT + 12))
P_MOSN_ADMIN=$((SLOT + 13))
P_NGINX=$((SLOT + 18))
P_HAPROXY=$((SLOT + 19))
for port in "$P_MOSN" "$P_MOSN_ADMIN" "$P_NGINX" "$P_HAPROXY"; do
    if ss -Htln "sport = :$port" | grep -q .; then die "port $port is already in use (pid-derived base $SLOT); rerun"; fi
done

TMP="$(mktemp -d /tmp/mosn-tls.XXXXXX)"
PIDS=()
PROXY_PID=""

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# our_ticks: CPU ticks of everything this benchmark runs: the server, our children (the load
# generator, reaped by the time bg_end reads this)
our_ticks() {
    local t
    t="$(self_child_ticks)"
    if [[ -n "${PROXY_PID:-}" ]]; then t=$((t + $(cpu_ticks "$PROXY_PID"))); fi
    echo "$t"
}


# ---------------------------------------------------------------- build
git_rev() {
    local rev
    rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]]; then rev="$rev with uncommitted changes"; fi
    echo "$rev"
}
GIT_REV="$(git_rev)"
BUILD_CMD=(cargo build --release -p mosn -p mosn-bench --bin mosn --bin tls-load)
if ((BUILD)); then
    log "${BUILD_CMD[*]}"
    (cd "$ROOT" && "${BUILD_CMD[@]}") >&2 || die "${BUILD_CMD[*]} failed"
fi
if has_path mosn; then [[ -x "$MOSN_BIN" ]] || die "mosn binary not found at $MOSN_BIN"; fi
[[ -x "$LOAD_BIN" ]] || die "tls-load not found in $BENCH_BIN_DIR (build: ${BUILD_CMD[*]})"

RUSTC_AT_START="$(pgrep -c -x rustc || true)"
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
if ((RUSTC_AT_START > 0)); then
    log "WARNING: $RUSTC_AT_START rustc process(es) running: other compiles share the CPU; figures will be noisy"
fi

STAMP="$(date '+%Y%m%d-%H%M%S')"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/tls-$STAMP.md"
CONF_DIR="$RESULTS_DIR/tls-$STAMP" # filled with the generated configs when the report is written

# ---------------------------------------------------------------- certificates and content
# the same self-signed leaf certificates for every server (CN and SAN localhost, 127.0.0.1)
mkdir -p "$TMP/pki" "$TMP/www"
make_cert() {
    local name="$1" base="$TMP/pki/$1"
    shift
    openssl req -x509 "$@" -nodes -days 30 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$base.key" -out "$base.crt" >/dev/null 2>&1 || die "openssl could not make the $name certificate"
    cat "$base.crt" "$base.key" >"$base.pem" # haproxy's crt: certificate and key in one file
}
make_cert ecdsa -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
make_cert rsa -newkey rsa:2048
printf '%s\n' "$BODY" >"$TMP/www/index.txt"
head -c "$BIG_BYTES" /dev/zero | tr '\0' 'x' >"$TMP/www/big"
chmod -R a+rX "$TMP" # nginx workers run as an unprivileged user

# ---------------------------------------------------------------- servers
# write_configs CERT: mosn, nginx and haproxy terminating TLS 1.3 (X25519 only) with that
# certificate; GET /big answers the 1 MiB body, anything else "hello\n"
write_configs() {
    local cert="$1" crt="$TMP/pki/$1.crt" key="$TMP/pki/$1.key" d
    d="$TMP/$cert/mosn"; mkdir -p "$d"
    cat >"$d/mosn.json" <<EOF
{
  "pid": "$d/mosn.pid",
  "servers": [{
    "default_log_path": "$d/mosn.log",
    "default_log_level": "WARN",
    "processor": 1,
    "routers": [{
      "router_config_name": "tls",
      "virtual_hosts": [{
        "name": "all",
        "domains": ["*"],
        "routers": [
          { "match": { "path": "/big" }, "direct_response": { "status": 200, "body": "$(cat "$TMP/www/big")" } },
          { "match": { "prefix": "/" }, "direct_response": { "status": 200, "body": "$BODY\n" } }
        ]
      }]
    }],
    "listeners": [{
      "name": "tls", "address": "127.0.0.1:$P_MOSN", "bind_port": true,
      "filter_chains": [{
        "tls_context": {
          "status": true,
          "cert_chain": "$crt",
          "private_key": "$key",
          "ecdh_curves": "X25519",
          "min_version": "tlsv1_3",
          "max_version": "tlsv1_3",
          "ticket": "on"
        },
        "filters": [{ "type": "proxy", "config": {
          "downstream_protocol": "Http1", "router_config_name": "tls" } }]
      }]
    }]
  }],
  "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": $P_MOSN_ADMIN } } }
}
EOF

    d="$TMP/$cert/nginx"; mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
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
    default_type text/plain;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$P_NGINX ssl backlog=4096;
        ssl_certificate $crt;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        ssl_session_tickets on;
        ssl_session_cache shared:TLS:10m;
        location = /big { root $TMP/www; }
        location / { return 200 "$BODY\n"; }
    }
}
EOF

    # http-request return ... file: the file is loaded at start and must fit in one buffer,
    # so tune.bufsize is raised above the bulk body (2 buffers per stream: 64 conns ~ 128 MiB)
    d="$TMP/$cert/haproxy"; mkdir -p "$d"
    cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8192
    tune.bufsize $((BIG_BYTES + 65536))
    ssl-default-bind-curves X25519
    ssl-default-bind-options ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s

frontend fe
    bind 127.0.0.1:$P_HAPROXY ssl crt $TMP/pki/$cert.pem curves X25519 ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3
    http-request return status 200 content-type application/octet-stream file $TMP/www/big if { path /big }
    http-request return status 200 content-type text/plain string "$BODY\n"
EOF
}

# start_server PATH CERT -> PROXY_PID, FRONT_PORT; the server pinned to CPU 0
start_server() {
    local path="$1" cert="$2" d="$TMP/$2/$1"
    case "$path" in
    mosn)
        FRONT_PORT="$P_MOSN"
        (cd "$d" && exec "${PIN_SERVER[@]}" "$MOSN_BIN" start -c "$d/mosn.json") >"$d/stdout.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "mosn" "$d/stdout.log"
        ;;
    nginx)
        FRONT_PORT="$P_NGINX"
        "${PIN_SERVER[@]}" nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' >"$d/stdout.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "nginx" "$d/error.log"
        ;;
    haproxy)
        FRONT_PORT="$P_HAPROXY"
        "${PIN_SERVER[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 &
        PROXY_PID=$!
        PIDS+=("$PROXY_PID")
        wait_listen "$FRONT_PORT" "$PROXY_PID" "haproxy" "$d/haproxy.log"
        ;;
    esac
}

# load_cmd MODE: the tls-load command line of a mode (without --duration)
load_cmd() {
    case "$1" in
    full | resumed) echo "$LOAD_BIN --addr 127.0.0.1:$FRONT_PORT --mode $1 --suite $SUITE --connections $CONNS --path /" ;;
    bulk) echo "$LOAD_BIN --addr 127.0.0.1:$FRONT_PORT --mode bulk --suite $SUITE --connections $BULK_CONNS --path /big" ;;
    esac
}

# check_server PATH CERT: a short light run of each selected mode; every answer must check out
check_server() {
    local path="$1" cert="$2" out m conns
    for m in "${MODES[@]}"; do
        if [[ "$m" == bulk && "$cert" != "${CERTS[0]}" ]]; then continue; fi
        out="$TMP/check-$path-$cert-$m.json"
        conns=2
        if ! "${PIN_LOAD[@]}" "$LOAD_BIN" --addr "127.0.0.1:$FRONT_PORT" --mode "$m" --suite "$SUITE" --connections "$conns" \
            --path "$([[ "$m" == bulk ]] && echo /big || echo /)" --duration 0.5 --max-error-share 0 \
            --min-resumed 0.5 >"$out" 2>"$out.err"; then
            cat "$out" "$out.err" >&2
            local hint=""
            [[ "$path" == mosn ]] && hint="; run with --only $SKIP_MOSN_ONLY to skip mosn (its log: $TMP/$cert/mosn/mosn.log)"
            die "$path ($cert, $m): the check run through 127.0.0.1:$FRONT_PORT failed$hint"
        fi
        NEG[$cert,$path]="$(jq -r '.negotiated_suite // "?"' "$out")"
    done
}

# ---------------------------------------------------------------- measurements
# results keyed "CERT:MODE,path,round"
declare -A HS HSCPU CPUHS CPUPCT MBS CPUGB P50 P99 RES LDPCT ERRS BG FIRSTERR NEG

# measure WORKLOAD PATH ROUND: warm-up, then one measured run against the running server
measure() {
    local wl="$1" path="$2" round="$3" key="$1,$2,$3" mode="${1##*:}" out t0 t1 c0 c1 secs ticks n
    out="$TMP/load-${1/:/-}-$2-$3.json"
    local -a cmd
    read -r -a cmd <<<"$(load_cmd "$mode")"
    wait_quiet
    "${PIN_LOAD[@]}" "${cmd[@]}" --duration "$WARMUP" --min-resumed 0 >"$out.warm" 2>&1 ||
        { cat "$out.warm" >&2; die "$path ($wl): warm-up failed: ${cmd[*]}"; }
    bg_begin
    c0="$(cpu_ticks "$PROXY_PID")"
    t0="$(now)"
    "${PIN_LOAD[@]}" "${cmd[@]}" --duration "$DUR" >"$out" 2>"$out.err" ||
        { cat "$out" "$out.err" >&2; die "$path ($wl): run failed: ${cmd[*]} --duration $DUR"; }
    t1="$(now)"
    c1="$(cpu_ticks "$PROXY_PID")"
    BG[$key]="$(bg_end)"
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
    ticks=$((c1 - c0))
    n="$(jq -r .handshakes "$out")"
    HS[$key]="$(jq -r '.hs_per_s | floor' "$out")"
    P50[$key]="$(jq -r .hs_p50_us "$out")"
    P99[$key]="$(jq -r .hs_p99_us "$out")"
    RES[$key]="$(jq -r '.resumed_share * 100 | floor' "$out")"
    ERRS[$key]="$(jq -r .errors "$out")"
    FIRSTERR[$key]="$(jq -r '.first_error // empty' "$out")"
    LDPCT[$key]="$(jq -r '.loader_cpu_pct // "n/a"' "$out")"
    CPUPCT[$key]="$(awk -v t="$ticks" -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f\n", t / hz / s * 100 }')"
    if [[ "$mode" == bulk ]]; then
        local bytes
        bytes="$(jq -r .body_bytes "$out")"
        MBS[$key]="$(jq -r '.mb_per_s' "$out")"
        CPUGB[$key]="$(awk -v t="$ticks" -v hz="$CLK_TCK" -v b="$bytes" 'BEGIN { if (b > 0) printf "%.3f\n", t / hz / (b / 1e9); else print "n/a" }')"
        HSCPU[$key]="—"; CPUHS[$key]="—"; HS[$key]="—"; P50[$key]="—"; P99[$key]="—"; RES[$key]="—"
        log "  $(wl_label "$wl") $path round $round: ${MBS[$key]} MB/s, server CPU ${CPUGB[$key]} s/GB (${CPUPCT[$key]} %), loader ${LDPCT[$key]} %, errors ${ERRS[$key]}, background CPU ${BG[$key]} %"
    else
        ((n > 0 && ticks > 0)) || { cat "$out" >&2; die "$path ($wl): no handshake or no server CPU time measured"; }
        # handshakes per CPU-second of the server (the per-core rate) and CPU µs per handshake
        HSCPU[$key]="$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.0f\n", n / (t / hz) }')"
        CPUHS[$key]="$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f\n", t / hz * 1e6 / n }')"
        MBS[$key]="—"; CPUGB[$key]="—"
        log "  $(wl_label "$wl") $path round $round: ${HS[$key]} handshakes/s, ${HSCPU[$key]} per CPU-s (${CPUHS[$key]} µs each, server CPU ${CPUPCT[$key]} %), resumed ${RES[$key]} %, p50 ${P50[$key]} µs, p99 ${P99[$key]} µs, loader ${LDPCT[$key]} %, errors ${ERRS[$key]}, background CPU ${BG[$key]} %"
    fi
}

# ---------------------------------------------------------------- run
for cert in "${CERTS[@]}"; do write_configs "$cert"; done

log "preflight: a short check run of each mode through each server and certificate"
for cert in "${CERTS[@]}"; do
    for path in "${PATHS[@]}"; do
        start_server "$path" "$cert"
        check_server "$path" "$cert"
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
    for cert in "${CERTS[@]}"; do
        for path in "${order[@]}"; do
            # a fresh server per certificate, path and round; the modes run against it in turn
            start_server "$path" "$cert"
            for wl in "${WLS[@]}"; do
                if [[ "${wl%%:*}" == "$cert" ]]; then measure "$wl" "$path" "$round"; fi
            done
            stop_proxy
        done
    done
done
RUSTC_AT_END="$(pgrep -c -x rustc || true)"
LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- summary



verdict() { if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a != "—" && a + 0 >= b + 0) }'; then echo "**PASS**"; else echo "**MISS**"; fi; }

# table WORKLOAD
table() {
    local wl="$1" p
    if [[ "${wl##*:}" == bulk ]]; then
        echo "| server | MB/s | server CPU s/GB | server CPU % | loader CPU % | errors (sum) | max background CPU % |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    else
        echo "| server | handshakes per CPU-second | server CPU µs/handshake | handshakes/s | server CPU % | p50 µs | p99 µs | resumed % | loader CPU % | errors (sum) | max background CPU % |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    fi
    for p in "${PATHS[@]}"; do
        local errs=0 bgmax=0 r
        for ((r = 1; r <= ROUNDS; r++)); do
            errs=$((errs + ${ERRS[$wl,$p,$r]:-0}))
            ((${BG[$wl,$p,$r]:-0} > bgmax)) && bgmax=${BG[$wl,$p,$r]}
        done
        if [[ "${wl##*:}" == bulk ]]; then
            echo "| $p | $(median_of MBS "$wl" "$p" %.0f) | $(median_of CPUGB "$wl" "$p" %.3f) | $(median_of CPUPCT "$wl" "$p" %.0f) | $(median_of LDPCT "$wl" "$p" %.0f) | $errs | $bgmax |"
        else
            echo "| $p | $(median_of HSCPU "$wl" "$p" %.0f) | $(median_of CPUHS "$wl" "$p" %.1f) | $(median_of HS "$wl" "$p" %.0f) | $(median_of CPUPCT "$wl" "$p" %.0f) | $(median_of P50 "$wl" "$p" %.0f) | $(median_of P99 "$wl" "$p" %.0f) | $(median_of RES "$wl" "$p" %.0f) | $(median_of LDPCT "$wl" "$p" %.0f) | $errs | $bgmax |"
        fi
    done
}

ratio_row() {
    local wl="$1" label="$2" arr="$3" dir="$4" p row
    row="| $(wl_label "$wl") | $label | $dir |"
    for p in "${PEERS[@]}"; do row="$row $(paired "$arr" "$wl" "$p") |"; done
    echo "$row"
}

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
GIT_REV_END="$(git_rev)"
if [[ "$GIT_REV_END" != "$GIT_REV" ]]; then GIT_REV="$GIT_REV at the build; $GIT_REV_END at the end of the run"; fi
if ((!BUILD)); then GIT_REV="$GIT_REV; --no-build: the binaries may be built from another tree"; fi
CMD="bench/tls.sh${ARGS_TEXT:+ $ARGS_TEXT}"

peer_versions() {
    local v=""
    has_path nginx && v="$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    has_path haproxy && v="${v:+$v, }$(haproxy -v | awk 'NR == 1 { print "HAProxy " $3 }')"
    echo "${v:-none}, $(openssl version | awk '{ print $1 " " $2 }')"
}

mkdir -p "$CONF_DIR"
for cert in "${CERTS[@]}"; do
    # the mosn config carries the 1 MiB body inline: store it with a placeholder
    sed -E 's/"body": "x{1000,}"/"body": "<the 1 MiB body>"/' "$TMP/$cert/mosn/mosn.json" >"$CONF_DIR/$cert-mosn.json"
    cp "$TMP/$cert/nginx/nginx.conf" "$CONF_DIR/$cert-nginx.conf"
    cp "$TMP/$cert/haproxy/haproxy.cfg" "$CONF_DIR/$cert-haproxy.cfg"
done

E_FULL="ecdsa:full"
R_FULL="rsa:full"
{
    echo "# TLS 1.3 termination benchmark, $STARTED_AT"
    echo
    echo "- command: \`$CMD\` (git $GIT_REV)"
    echo "- machine: $NCPU CPU(s), ${CPU_MODEL:-unknown CPU}, Linux $(uname -r)"
    echo "- servers: mosn (rustls, aws-lc-rs; listener \`tls_context\`, proxy filter Http1, \`direct_response\`), $(peer_versions); each with one worker pinned to CPU 0 (\`taskset -c 0\`), the load generator on CPU 1"
    echo "- TLS: 1.3 only, X25519 only, self-signed leaf certificates made by \`openssl req -x509\` (ECDSA P-256, RSA-2048), the same files for every server; session tickets on everywhere; client suites \`--suite $SUITE\`, negotiated: $(for c in "${CERTS[@]}"; do for p in "${PATHS[@]}"; do printf '%s ' "$p/$c ${NEG[$c,$p]:-?};"; done; done)"
    echo "- load: \`tls-load\` (bench/bin, 1 thread, rustls + aws-lc-rs, no certificate or signature verification on the client); full/resumed: $CONNS loops of connect, handshake, \`GET / HTTP/1.1\` + \`Connection: close\`, read to the server's close, status 200 checked; bulk: $BULK_CONNS keep-alive connections fetching a $BIG_BYTES-byte body; ${DUR} s measured after a ${WARMUP} s warm-up; $ROUNDS round(s) alternating server order; a fresh server per certificate, server and round; quiet wait up to ${QUIET_WAIT} s before each run"
    echo "- **handshakes per CPU-second** = handshakes completed / server CPU seconds (utime+stime of the server process, its threads and its children, /proc/PID/stat): the per-core rate. Raw handshakes/s also depend on the load generator (one core, also doing X25519)"
    echo "- load average at start / end: $LOAD_AT_START / $LOAD_AT_END; rustc processes at start / end: $RUSTC_AT_START / $RUSTC_AT_END"
    echo "- figures are medians over the rounds; ratios are the median over rounds of the ratio within each round (paired)"
    for wl in "${WLS[@]}"; do
        echo
        echo "## $(wl_label "$wl")"
        echo
        table "$wl"
    done
    echo
    echo "## Ratios mosn / peer (paired median; same run)"
    echo
    echo "| workload | figure | better | mosn/nginx | mosn/haproxy |"
    echo "| --- | --- | --- | ---: | ---: |"
    for wl in "${WLS[@]}"; do
        if [[ "${wl##*:}" == bulk ]]; then
            ratio_row "$wl" "MB/s" MBS higher
            ratio_row "$wl" "server CPU s/GB" CPUGB lower
        else
            ratio_row "$wl" "handshakes per CPU-second" HSCPU higher
            ratio_row "$wl" "handshakes/s" HS higher
            ratio_row "$wl" "p99 handshake latency" P99 lower
        fi
    done
    echo
    echo "## Targets"
    echo
    echo "| target | wanted | measured | result |"
    echo "| --- | --- | ---: | --- |"
    have() { local w; for w in "${WLS[@]}"; do [[ "$w" == "$1" ]] && return 0; done; return 1; }
    if has_path mosn && has_path nginx && have "$E_FULL"; then
        r="$(paired HSCPU "$E_FULL" nginx)"
        echo "| ECDSA full handshakes per CPU-second vs nginx | >= ${TARGET_NGINX}x nginx | ${r}x (raw handshakes/s: $(paired HS "$E_FULL" nginx)x) | $(verdict "$r" "$TARGET_NGINX") |"
    else
        echo "| ECDSA full handshakes per CPU-second vs nginx | >= ${TARGET_NGINX}x nginx | n/a | not measured |"
    fi
    if has_path mosn && have "$E_FULL"; then
        m="$(median_of HSCPU "$E_FULL" mosn %.0f)"
        echo "| ECDSA full handshakes per core | >= $TARGET_ECDSA/s (60 % of ~11k/s) | $m/s (raw $(median_of HS "$E_FULL" mosn %.0f)/s at $(median_of CPUPCT "$E_FULL" mosn %.0f) % CPU) | $(verdict "$m" "$TARGET_ECDSA") |"
    fi
    if has_path mosn && have "$R_FULL"; then
        m="$(median_of HSCPU "$R_FULL" mosn %.0f)"
        echo "| RSA-2048 full handshakes per core | >= $TARGET_RSA/s (60 % of ~2.4k/s) | $m/s (raw $(median_of HS "$R_FULL" mosn %.0f)/s at $(median_of CPUPCT "$R_FULL" mosn %.0f) % CPU) | $(verdict "$m" "$TARGET_RSA") |"
    fi
    echo
    echo "## All rounds"
    echo
    echo "bg: share of all CPUs used by processes outside the benchmark during that run (above about 10 %: disturbed)."
    echo
    echo "| round | workload | server | handshakes per CPU-s | CPU µs/hs | handshakes/s | MB/s | server CPU % | p50 µs | p99 µs | resumed % | loader CPU % | errors | bg % |"
    echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for ((r = 1; r <= ROUNDS; r++)); do
        for wl in "${WLS[@]}"; do
            for p in "${PATHS[@]}"; do
                k="$wl,$p,$r"
                echo "| $r | $(wl_label "$wl") | $p | ${HSCPU[$k]} | ${CPUHS[$k]} | ${HS[$k]} | ${MBS[$k]} | ${CPUPCT[$k]} | ${P50[$k]} | ${P99[$k]} | ${RES[$k]} | ${LDPCT[$k]} | ${ERRS[$k]}$([[ -n "${FIRSTERR[$k]}" ]] && echo " (${FIRSTERR[$k]})") | ${BG[$k]} |"
            done
        done
    done
    echo
    echo "The generated configs are in \`bench/results/tls-$STAMP/\`. Servers were started as \`taskset -c 0 mosn start -c mosn.json\`, \`taskset -c 0 nginx -c nginx.conf -g 'daemon off;'\`, \`taskset -c 0 haproxy -db -f haproxy.cfg\`; the load as \`taskset -c 1 tls-load --addr 127.0.0.1:PORT --mode MODE --connections C --duration $DUR\`."
} | tee "$REPORT"
log "report written to $REPORT"
