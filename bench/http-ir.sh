#!/usr/bin/env bash
# User-space instructions per proxied HTTP/1.1 request: mosn and nginx, each run under
# valgrind's callgrind in front of one nginx upstream serving a 1 KiB file.
#
#   bench/http-ir.sh [--requests N] [--no-build]
#
# Timing on a shared 2-core machine moves by 10-20 % between rounds; an instruction count
# does not (it repeats to within 0.1 %), so this tells whether a change to the request path
# made it cheaper. It counts user-space instructions only: the kernel's share (about three
# quarters of a proxied request here) and cache misses are not in it; bench/http.sh measures
# those. Both proxies get one worker, keep-alive both ways, no access log; the load is
# `h2load --h1 -c10` (N requests, counted after 2,000 unmeasured ones). Prints one line per
# proxy and the ratio; the script fails only when a step breaks.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WAIT_LISTEN_SECONDS=15

N=20000
BUILD=1
while (($#)); do
    case "$1" in
    --requests) N="${2:?--requests needs a value}"; shift ;;
    --no-build) BUILD=0 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "http-ir.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
log() { printf '[http-ir %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[http-ir] ERROR: %s\n' "$*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOSN_BIN="${MOSN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mosn}"
need=()
for t in valgrind:valgrind nginx:nginx h2load:nghttp2-client curl:curl ss:iproute2; do
    command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
        die "apt-get install ${need[*]} failed"
fi
if ((BUILD)); then
    (cd "$ROOT" && cargo build --release --bin mosn) >&2 || die "cargo build failed"
fi
[[ -x "$MOSN_BIN" ]] || die "mosn binary not found at $MOSN_BIN"

# 4 ports from the pid-derived base the other harnesses use, in slots http.sh leaves free (the
# ones tls.sh and rpc.sh take too: run one benchmark at a time)
BASE=$((10000 + ($$ % 1100) * 20 + 12))
P_UP=$BASE P_MOSN=$((BASE + 1)) P_ADMIN=$((BASE + 2)) P_NGINX=$((BASE + 3))
for port in "$P_UP" "$P_MOSN" "$P_ADMIN" "$P_NGINX"; do
    if ss -Htln "sport = :$port" | grep -q .; then die "port $port is already in use; rerun"; fi
done
TMP="$(mktemp -d /tmp/mosn-http-ir.XXXXXX)"
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$TMP/up/www" "$TMP/px"
head -c 1024 /dev/zero | tr '\0' 'x' >"$TMP/up/www/1k.txt"
chmod -R a+rX "$TMP"
nginx_conf() { # nginx_conf DIR BODY
    cat <<EOF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    default_type text/plain;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    $2
}
EOF
}
nginx_conf "$TMP/up" "sendfile on; server { listen 127.0.0.1:$P_UP; root $TMP/up/www; }" >"$TMP/up/nginx.conf"
nginx_conf "$TMP/px" "upstream up { server 127.0.0.1:$P_UP; keepalive 128; }
    server { listen 127.0.0.1:$P_NGINX; location / { proxy_pass http://up;
        proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" >"$TMP/px/nginx.conf"
cat >"$TMP/mosn.json" <<EOF
{ "servers": [{ "default_log_path": "$TMP/mosn.log", "default_log_level": "WARN", "processor": 1,
    "routers": [{ "router_config_name": "r", "virtual_hosts": [{ "name": "all", "domains": ["*"],
      "routers": [{ "match": { "prefix": "/" }, "route": { "cluster_name": "up" } }] }] }],
    "listeners": [{ "name": "h1", "address": "127.0.0.1:$P_MOSN", "bind_port": true,
      "filter_chains": [{ "filters": [{ "type": "proxy", "config": { "downstream_protocol": "Http1",
        "upstream_protocol": "Http1", "router_config_name": "r" } }] }] }] }],
  "cluster_manager": { "clusters": [{ "name": "up", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
    "hosts": [{ "address": "127.0.0.1:$P_UP" }] }] },
  "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": $P_ADMIN } } } }
EOF

nginx -p "$TMP/up/" -e "$TMP/up/error.log" -c "$TMP/up/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
PIDS+=("$!")
wait_listen "$P_UP" "$!" "upstream nginx" "$TMP/up/error.log"

# measure NAME PORT CMD...: IR = instructions per request of CMD (a proxy listening on PORT)
# under callgrind
measure() {
    local name=$1 port=$2 pid out
    shift 2
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.$name.%p" "$@" >"$TMP/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 300); do
        curl -fso /dev/null "http://127.0.0.1:$port/1k.txt" && break
        sleep 0.2
    done
    h2load --h1 -t1 -c10 -n 2000 "http://127.0.0.1:$port/1k.txt" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    out="$(h2load --h1 -t1 -c10 -n "$N" "http://127.0.0.1:$port/1k.txt")"
    grep -q "$N succeeded" <<<"$out" || die "$name: not all $N requests succeeded: $(grep '^requests:' <<<"$out")"
    callgrind_control -d "$pid" >/dev/null 2>&1
    stop_proc "$pid"
    local total
    total="$(cat "$TMP"/cg."$name".*.1 2>/dev/null | awk '/^summary:/ { s += $2 } END { print s + 0 }')"
    ((total > 0)) || die "$name: no callgrind dump"
    IR=$((total / N))
}

log "mosn ($MOSN_BIN) under callgrind, $N requests"
measure mosn "$P_MOSN" "$MOSN_BIN" start -c "$TMP/mosn.json"
MOSN_IR=$IR
log "nginx under callgrind, $N requests"
measure nginx "$P_NGINX" nginx -p "$TMP/px/" -e "$TMP/px/error.log" -c "$TMP/px/nginx.conf" \
    -g 'daemon off; master_process off;'
NGINX_IR=$IR
printf 'user-space instructions per HTTP/1.1 request (%d requests, h2load --h1 -c10, 1 KiB body)\n' "$N"
printf '  mosn   %6d\n  nginx  %6d\n  mosn / nginx  %s\n' "$MOSN_IR" "$NGINX_IR" "$(fdiv "$MOSN_IR" "$NGINX_IR")"
