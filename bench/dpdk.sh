#!/usr/bin/env bash
# DPDK backend benchmark (issue 7): the same mosn HTTP/1.1 proxy config over DPDK (net_tap,
# net_af_packet, net_af_xdp) and over kernel sockets, across the same topology, in one run;
# plus the packet path alone (io forwarding through mosn-net's DpdkDevice, the example
# dataplane/net/examples/dpdk_fwd.rs) against dpdk-testpmd's io forwarding on the same PMD.
#
#   bench/dpdk.sh [--quick] [--rounds N] [--only LIST] [--fwd LIST] [--conns C] [--no-build]
#
# Topology (made here, names from this script's pid, addresses from 198.18.0.0/15 only,
# all of it removed on exit by a trap, also on Ctrl-C):
#
#   netns C (client side)                          netns M (mosn)
#   wrk, curl; upstream nginx on 198.18.42.1:8081  mosn, one worker, pinned to CPU 0
#   (an address on C's lo)
#   veth dbc<pid> 198.18.40.1/24, tx off  <---->   veth dbm<pid>: 198.18.40.2/24 for the kernel
#                                                  variant; no kernel address for af_packet and
#                                                  af_xdp (mosn's userspace stack is 198.18.40.2)
#   tap dbt<pid> 198.18.41.1/24           <---->   DPDK net_tap0 in mosn (198.18.41.2/24)
#
# Variants of the HTTP test (wrk -t1 -c32 --latency, 1 KiB body, keep-alive):
#   direct     wrk -> the upstream, both in C (the ceiling of the client side)
#   kernel     wrk -> mosn with kernel sockets on the veth (processor 1)
#   tap        wrk -> mosn over DPDK net_tap0. mosn creates the tap in M; once the PMD has
#              started the port (link UP and PROMISC in M) the script moves the tap's kernel
#              side into C (`ip link set <tap> netns C`), so the client stays in C as for the
#              other variants. This works: the PMD keeps its fd, it needs the netdev by name
#              only while configuring the port.
#   af_packet  wrk -> mosn over DPDK net_af_packet0 on the M veth
#   af_xdp     wrk -> mosn over DPDK net_af_xdp0 on the M veth (mosn is stopped with TERM and
#              closes the port, which detaches its XDP program; builds before the sixth
#              session did not, so the script still runs `ip link set dev <veth> xdp off`
#              before the next variant, a no-op now)
# One mosn config for all mosn variants (HTTP/1.1 listener on 0.0.0.0:8080, one route to the
# cluster whose host is 198.18.42.1:8081), apart from `network_backend`. The upstream address
# is on C's lo so that it is the same for every variant: the kernel variant routes to it via
# 198.18.40.1, the DPDK stacks through their gateway (198.18.40.1, or 198.18.41.1 for tap).
# `ethtool -K dbc<pid> tx off` (ACCELERATION.md §4) holds for every variant, the kernel one
# included. Per variant and round: a fresh mosn, a preflight request, a 2 s warm-up, one
# measured wrk run: req/s, p50, p99, mosn's CPU time per request from /proc/<pid>/stat, split
# by thread (/proc/<pid>/task) into the busy-polling DPDK thread (mosn-dpdk-0) and the rest.
#
# Packet path (--fwd; 64-byte frames): a generator, `dpdk-testpmd --forward-mode=txonly` on
# net_af_xdp over C's side of the link (the veth, or the tap moved into C), feeds a
# forwarder in M on the PMD under test, pinned to CPU 0 (the generator forwards on CPU 1).
# af_xdp, not af_packet, for the generator: on this 2-core machine the generator's core also
# pays for the kernel's receive work towards M, and txonly on af_packet offered only
# ~0.27-0.35 Mpps on the veth, which both forwarders kept up with (no ceiling measured);
# on af_xdp it offers ~0.5 Mpps (--gen af_packet to compare). The forwarders:
#   testpmd    dpdk-testpmd --forward-mode=io --port-topology=loop (the ceiling)
#   mosn       dpdk_fwd: every frame received through DpdkDevice's receive token is copied
#              into the transmit token handed out with it and sent back out the same port
# The forwarder's own forwarded rate (its Tx-pps over 1 s intervals inside the measured
# window, median) is compared; its Rx-pps and the generator's offered Tx-pps are reported
# next to it (when the forwarder forwards all that is offered, the generator is the limit
# and the ratio says only that the device keeps up).
#
# Figures: medians over rounds; ratios are paired (taken within a round, then the median).
# Targets: DPDK over tap >= 1.0x the kernel path's req/s with a lower p99; dpdk_fwd >= 0.8x
# testpmd's io forwarding rate on each PMD. The script fails only when a step breaks,
# never on a MISS. A busy-polling worker burns its core by design: the DPDK variants' CPU
# per request is about one core-second divided by the request rate and falls with load.
#
# Memory: unless --no-hugepages, the script makes sure 256 2 MiB hugepages are free
# (raising /proc/sys/vm/nr_hugepages by what is missing, compacting memory once if the kernel
# cannot find them, and lowering it by as much on exit); mosn and dpdk_fwd then run EAL with
# --in-memory (mosn-net's policy), testpmd is given --in-memory too. When they cannot be had
# (or with --no-hugepages), all three are given --no-huge -m 256 --no-shconf explicitly:
# mosn-net would pick --in-memory as soon as one page is free, and then fail to make its
# mbuf pool with too few.
#
# Prints a Markdown report to stdout and writes it to bench/results/dpdk-<date>.md (as the
# other harnesses do), with the generated configs in bench/results/dpdk-<date>/ and the raw
# outputs (wrk, forwarder and generator counters, mosn logs) under its raw/. Progress goes
# to stderr. Needs root (namespaces, DPDK), 2 CPUs, and installs what is missing with apt-get
# (dpdk, nginx, wrk, curl, ethtool). Kills only the processes it started, by pid.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'EOF'
usage: bench/dpdk.sh [options]
  --quick            3 s runs and 1 round instead of 10 s and 3 rounds
  --rounds N         rounds, alternating forward/reverse order; default 3 (--quick 1)
  --only LIST        HTTP variants, a subset of direct,kernel,tap,af_packet,af_xdp
                     (default: all; env DPDK_ONLY works too; "none" skips the HTTP test)
  --fwd LIST         PMDs of the packet-path test, a subset of tap,af_packet,af_xdp
                     (default: all; "none" skips it)
  --gen PMD          the packet-path generator's PMD on C's end of the link: af_xdp
                     (default) or af_packet
  --conns C          wrk connections (default 32; wrk runs one thread)
  --poll-mode MODE   network_backend.poll_mode of the DPDK variants: busy (default) or
                     interrupt (the worker sleeps on its RX interrupt when idle; net_tap)
  --no-pin           do not pin (default: mosn and the forwarders on CPU 0, wrk, the
                     upstream and the generator on CPU 1)
  --no-hugepages     do not reserve hugepages: every EAL runs on plain memory
                     (--no-huge -m 256 --no-shconf)
  --no-build         do not run cargo build; use the existing binaries
                     (env MOSN_BIN, FWD_BIN override target/release/{mosn,examples/dpdk_fwd})
  --quiet-wait S     before each measurement wait up to S seconds for the machine to be
                     idle (other processes < 25 % of all CPUs); default 60, 0 disables
  -h, --help         this text
EOF
}

QUICK=0
ROUNDS=""
CONNS=32
PIN=1
HUGE=1
BUILD=1
QUIET_WAIT=60
ONLY="${DPDK_ONLY:-direct,kernel,tap,af_packet,af_xdp}"
FWD_ONLY="tap,af_packet,af_xdp"
GEN_PMD=af_xdp
POLL_MODE=busy
ARGS_TEXT="$*"

while (($#)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS="${2:?--rounds needs a value}"; shift ;;
    --rounds=*) ROUNDS="${1#*=}" ;;
    --only) ONLY="${2:?--only needs a value}"; shift ;;
    --only=*) ONLY="${1#*=}" ;;
    --fwd) FWD_ONLY="${2:?--fwd needs a value}"; shift ;;
    --fwd=*) FWD_ONLY="${1#*=}" ;;
    --gen) GEN_PMD="${2:?--gen needs a value}"; shift ;;
    --gen=*) GEN_PMD="${1#*=}" ;;
    --conns) CONNS="${2:?--conns needs a value}"; shift ;;
    --conns=*) CONNS="${1#*=}" ;;
    --poll-mode) POLL_MODE="${2:?--poll-mode needs a value}"; shift ;;
    --poll-mode=*) POLL_MODE="${1#*=}" ;;
    --no-pin) PIN=0 ;;
    --no-hugepages) HUGE=0 ;;
    --no-build) BUILD=0 ;;
    --quiet-wait) QUIET_WAIT="${2:?--quiet-wait needs a value}"; shift ;;
    --quiet-wait=*) QUIET_WAIT="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "dpdk.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[dpdk %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[dpdk] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -z "$ROUNDS" ]]; then if ((QUICK)); then ROUNDS=1; else ROUNDS=3; fi; fi
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || die "--conns must be a positive integer"
[[ "$GEN_PMD" == af_xdp || "$GEN_PMD" == af_packet ]] || die "--gen must be af_xdp or af_packet"
[[ "$POLL_MODE" == busy || "$POLL_MODE" == interrupt ]] || die "--poll-mode must be busy or interrupt"
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || die "--quiet-wait must be a number of seconds"
((EUID == 0)) || die "needs root (network namespaces, DPDK)"

# pick LIST ALLOWED...: the items of LIST in the order of ALLOWED ("none": nothing)
pick() {
    local list="$1" a w picked=()
    shift
    [[ "$list" == none ]] && return 0
    IFS=',' read -r -a wanted <<<"$list"
    for w in "${wanted[@]}"; do
        [[ " $* " == *" $w "* ]] || die "unknown variant '$w' (allowed: $*)"
    done
    for a in "$@"; do
        for w in "${wanted[@]}"; do
            if [[ "$w" == "$a" ]]; then picked+=("$a"); break; fi
        done
    done
    echo "${picked[*]}"
}
read -r -a PATHS <<<"$(pick "$ONLY" direct kernel tap af_packet af_xdp)"
read -r -a FWD_PMDS <<<"$(pick "$FWD_ONLY" tap af_packet af_xdp)"
((${#PATHS[@]} + ${#FWD_PMDS[@]})) || die "--only and --fwd select nothing"
MOSN_PATHS=()
for p in "${PATHS[@]}"; do [[ "$p" == direct ]] || MOSN_PATHS+=("$p"); done

if ((QUICK)); then DUR=3; else DUR=10; fi
WARMUP=2             # s of unmeasured load before each measured run
FWD_WARMUP=2         # s the generator runs before the forwarder's window starts
BODY_BYTES=1024
URL_PATH=/1k.txt
HUGE_WANT=256        # 2 MiB pages wanted free
STARTUP_TIMEOUT=60   # s for mosn / a forwarder to come up

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
RESULTS_DIR="$ROOT/bench/results"
MOSN_BIN="${MOSN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mosn}"
FWD_BIN="${FWD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/dpdk_fwd}"
[[ "$MOSN_BIN" == /* ]] || MOSN_BIN="$PWD/$MOSN_BIN"
[[ "$FWD_BIN" == /* ]] || FWD_BIN="$PWD/$FWD_BIN"
NCPU="$(nproc)"
if ((PIN)) && ((NCPU < 2)); then die "pinning needs at least 2 CPUs (or --no-pin)"; fi
CLK_TCK="$(getconf CLK_TCK)"

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v dpdk-testpmd >/dev/null || need_pkgs+=(dpdk)
command -v nginx >/dev/null || need_pkgs+=(nginx)
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v ethtool >/dev/null || need_pkgs+=(ethtool)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v pgrep >/dev/null || need_pkgs+=(procps)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
command -v stdbuf >/dev/null || need_pkgs+=(coreutils)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
fi
[[ -e /dev/net/tun ]] || die "/dev/net/tun is missing (the tap PMD needs it)"

# ---------------------------------------------------------------- names, clean-up
ID=$$
NS_C="mosnb-c-$ID"
NS_M="mosnb-m-$ID"
VETH_C="dbc$ID"
VETH_M="dbm$ID"
TAP="dbt$ID"      # mosn's tap
FTAP="dbf$ID"     # the forwarders' tap
EAL_PREFIX="mosnb-$ID"
C_IP=198.18.40.1
M_IP=198.18.40.2
TAP_C_IP=198.18.41.1
TAP_M_IP=198.18.41.2
UP_IP=198.18.42.1
UP_PORT=8081
MOSN_PORT=8080

TMP="$(mktemp -d /tmp/mosn-dpdk.XXXXXX)"
PIDS=()
PROXY_PID=""
UP_PID=""
FWD_PID=""
GEN_PID=""
TOPOLOGY=0
HUGE_ADDED=0

dpdk_cleanup() {
    local rc=$? pid cur
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill_tree "$pid"; done
    if ((TOPOLOGY)); then
        ip netns del "$NS_M" 2>/dev/null || true
        ip netns del "$NS_C" 2>/dev/null || true
    fi
    rm -rf "/var/run/dpdk/$EAL_PREFIX"-*
    if ((HUGE_ADDED > 0)); then
        # give back what this script added (others may have changed the value meanwhile,
        # so subtract rather than write the old value back)
        cur="$(cat /proc/sys/vm/nr_hugepages)"
        if ((cur >= HUGE_ADDED)); then echo $((cur - HUGE_ADDED)) >/proc/sys/vm/nr_hugepages || true; fi
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap dpdk_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_c() { ip netns exec "$NS_C" "$@"; }
in_m() { ip netns exec "$NS_M" "$@"; }

if ((PIN)); then
    PIN_PROXY=(taskset -c 0)
    PIN_OTHERS=(taskset -c 1)
else
    PIN_PROXY=()
    PIN_OTHERS=()
fi

# our_ticks (for lib.sh's bg_begin/bg_end): CPU ticks of everything this benchmark runs
our_ticks() {
    local t pid
    t="$(self_child_ticks)"
    for pid in "$UP_PID" "$PROXY_PID" "$FWD_PID" "$GEN_PID"; do
        [[ -n "$pid" ]] && t=$((t + $(cpu_ticks "$pid")))
    done
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
if ((BUILD)); then
    if ((${#MOSN_PATHS[@]})); then
        log "cargo build --release --features dpdk"
        (cd "$ROOT" && cargo build --release --features dpdk) >&2 || die "cargo build --release --features dpdk failed"
    fi
    if ((${#FWD_PMDS[@]})); then
        log "cargo build --release -p mosn-net --features dpdk --example dpdk_fwd"
        (cd "$ROOT" && cargo build --release -p mosn-net --features dpdk --example dpdk_fwd) >&2 ||
            die "cargo build of the dpdk_fwd example failed"
    fi
fi
if ((${#MOSN_PATHS[@]})); then
    [[ -x "$MOSN_BIN" ]] || die "mosn binary not found at $MOSN_BIN"
    # a binary without the dpdk feature refuses network_backend dpdk at start; say it early
    if [[ " ${MOSN_PATHS[*]} " == *" "[ta]* ]] && ! grep -aq "mosn_net::dpdk" "$MOSN_BIN"; then
        die "$MOSN_BIN was not built with --features dpdk (cargo build --release --features dpdk)"
    fi
fi
if ((${#FWD_PMDS[@]})); then [[ -x "$FWD_BIN" ]] || die "dpdk_fwd not found at $FWD_BIN"; fi

RUSTC_AT_START="$(pgrep -c -x rustc || true)"
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
if ((RUSTC_AT_START > 0)); then
    log "WARNING: $RUSTC_AT_START rustc process(es) running: other compiles share the CPU; figures will be noisy"
fi
STAMP="$(date '+%Y%m%d-%H%M%S')"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/dpdk-$STAMP.md"
CONF_DIR="$RESULTS_DIR/dpdk-$STAMP"

# ---------------------------------------------------------------- hugepages
# With HUGE_WANT pages free, mosn and dpdk_fwd get no memory flags (mosn-net's init_eal then
# adds --in-memory) and testpmd gets --in-memory. Otherwise all three get PLAIN_MEM
# explicitly: mosn-net picks --in-memory whenever any page is free, and a few free pages are
# not enough for an 8191-mbuf pool (the port then fails with ENOMEM).
huge_free() { awk '/^HugePages_Free:/ { print $2; exit }' /proc/meminfo; }
PLAIN_MEM=(--no-huge -m 256 --no-shconf)
huge_reserve() {
    local free old want
    free="$(huge_free)"
    ((free < HUGE_WANT)) || return 0
    old="$(cat /proc/sys/vm/nr_hugepages)"
    want=$((old + HUGE_WANT - free))
    echo "$want" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
    HUGE_ADDED=$((HUGE_ADDED + $(cat /proc/sys/vm/nr_hugepages) - old))
    log "nr_hugepages $old -> $(cat /proc/sys/vm/nr_hugepages) (given back on exit)"
}
EAL_MEM=()
if ((HUGE)); then
    huge_reserve
    if (($(huge_free) < HUGE_WANT)); then
        log "fewer than $HUGE_WANT hugepages free: compacting memory and trying again"
        echo 1 >/proc/sys/vm/compact_memory 2>/dev/null || true
        huge_reserve
    fi
    if (($(huge_free) >= HUGE_WANT)); then
        TESTPMD_MEM=(--in-memory)
        MEM_NOTE="2 MiB hugepages ($(huge_free) free at the start; EAL --in-memory)"
    else
        log "only $(huge_free) hugepages free (wanted $HUGE_WANT): running EAL on plain memory"
        EAL_MEM=("${PLAIN_MEM[@]}")
        TESTPMD_MEM=("${PLAIN_MEM[@]}")
        MEM_NOTE="plain memory (${PLAIN_MEM[*]}): only $(huge_free) of the $HUGE_WANT hugepages wanted were free"
    fi
else
    EAL_MEM=("${PLAIN_MEM[@]}")
    TESTPMD_MEM=("${PLAIN_MEM[@]}")
    MEM_NOTE="plain memory (${PLAIN_MEM[*]}; --no-hugepages)"
fi
EAL_MEM_JSON=""
for a in "${EAL_MEM[@]}"; do EAL_MEM_JSON="$EAL_MEM_JSON, \"$a\""; done

# ---------------------------------------------------------------- topology
log "topology: netns $NS_C (client, upstream) and $NS_M (mosn), veth $VETH_C <-> $VETH_M"
ip netns add "$NS_C"
TOPOLOGY=1
ip netns add "$NS_M"
for ns in "$NS_C" "$NS_M"; do
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
done
ip link add "$VETH_M" netns "$NS_M" type veth peer name "$VETH_C" netns "$NS_C"
ip -n "$NS_C" addr add "$C_IP/24" dev "$VETH_C"
ip -n "$NS_C" addr add "$UP_IP/32" dev lo
ip -n "$NS_C" link set "$VETH_C" up
ip -n "$NS_M" link set "$VETH_M" up
# finished checksums and no TSO super-frames towards the PMDs (ACCELERATION.md §4); for
# every variant, the kernel one included
in_c ethtool -K "$VETH_C" tx off >/dev/null

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
        listen $UP_IP:$UP_PORT backlog=4096;
        root $TMP/up/www;
    }
}
EOF

# http_code URL: the status of one GET from C (000 when it fails)
http_code() {
    in_c curl -s -m 2 -o "$TMP/check.body" -w '%{http_code}' "$1" 2>/dev/null || true
}

# wait_http URL PID NAME LOG: wait until a GET from C returns 200 with the full body
wait_http() {
    local url="$1" pid="$2" name="$3" logf="$4" start=$SECONDS code rc
    while :; do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            rc=0
            wait "$pid" 2>/dev/null || rc=$?
            forget_pid "$pid"
            { echo "---- last lines of $name's log ($logf) ----"; tail -n 30 "$logf" 2>/dev/null || true; echo "----"; } >&2
            die "$name exited during startup (exit code $rc); run with --only to skip it"
        fi
        code="$(http_code "$url")"
        if [[ "$code" == 200 ]] && [[ "$(wc -c <"$TMP/check.body")" == "$BODY_BYTES" ]]; then return 0; fi
        if ((SECONDS - start >= STARTUP_TIMEOUT)); then
            { echo "---- last lines of $name's log ($logf) ----"; tail -n 30 "$logf" 2>/dev/null || true; echo "----"; } >&2
            die "$name: GET $url from $NS_C did not return 200 with $BODY_BYTES bytes within ${STARTUP_TIMEOUT} s (last status $code)"
        fi
        sleep 0.2
    done
}

start_upstream() {
    log "starting the upstream nginx (1 worker, ${BODY_BYTES}-byte $URL_PATH) on $UP_IP:$UP_PORT in $NS_C"
    # not through in_c: a function run in the background is a subshell, and its pid would not
    # be nginx's (ip netns exec and taskset exec, so this pid is the nginx master's)
    ip netns exec "$NS_C" "${PIN_OTHERS[@]}" nginx -p "$TMP/up/" -e "$TMP/up/error.log" -c "$TMP/up/nginx.conf" \
        -g 'daemon off;' >"$TMP/up/stdout.log" 2>&1 &
    UP_PID=$!
    PIDS+=("$UP_PID")
    wait_http "http://$UP_IP:$UP_PORT$URL_PATH" "$UP_PID" "upstream nginx" "$TMP/up/error.log"
}

# ---------------------------------------------------------------- mosn
# backend_json VARIANT: servers[0].network_backend ("" for the kernel)
backend_json() {
    local vdev port addr gw
    case "$1" in
    kernel) echo ""; return 0 ;;
    tap) vdev="net_tap0,iface=$TAP"; port=net_tap0; addr="$TAP_M_IP/24"; gw="$TAP_C_IP" ;;
    af_packet) vdev="net_af_packet0,iface=$VETH_M"; port=net_af_packet0; addr="$M_IP/24"; gw="$C_IP" ;;
    af_xdp) vdev="net_af_xdp0,iface=$VETH_M,start_queue=0,queue_count=1"; port=net_af_xdp0; addr="$M_IP/24"; gw="$C_IP" ;;
    esac
    cat <<EOF
    "network_backend": {
      "type": "dpdk",
      "eal_args": ["-l", "0", "--no-pci", "--file-prefix", "$EAL_PREFIX-$1", "--vdev", "$vdev"$EAL_MEM_JSON],
      "port": "$port",
      "address": "$addr",
      "gateway": "$gw",
      "poll_mode": "$POLL_MODE"
    },
EOF
}

write_mosn_config() {
    local v="$1" d="$TMP/mosn-$1"
    mkdir -p "$d"
    cat >"$d/mosn.json" <<EOF
{
  "pid": "$d/mosn.pid",
  "servers": [{
    "default_log_path": "$d/mosn.log",
    "default_log_level": "WARN",
    "processor": 1,
$(backend_json "$v")
    "routers": [{
      "router_config_name": "bench",
      "virtual_hosts": [{
        "name": "all",
        "domains": ["*"],
        "routers": [{ "match": { "prefix": "/" }, "route": { "cluster_name": "up" } }]
      }]
    }],
    "listeners": [{
      "name": "h1", "address": "0.0.0.0:$MOSN_PORT", "bind_port": true,
      "filter_chains": [{ "filters": [{ "type": "proxy", "config": {
        "downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": "bench" } }] }]
    }]
  }],
  "cluster_manager": { "clusters": [{
    "name": "up", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
    "hosts": [{ "address": "$UP_IP:$UP_PORT" }]
  }] }
}
EOF
}

# url_of VARIANT: where wrk sends its requests
url_of() {
    case "$1" in
    direct) echo "http://$UP_IP:$UP_PORT$URL_PATH" ;;
    tap) echo "http://$TAP_M_IP:$MOSN_PORT$URL_PATH" ;;
    *) echo "http://$M_IP:$MOSN_PORT$URL_PATH" ;;
    esac
}

# link_flags NS LINK: the flags of LINK in NS ("" when it is not there)
link_flags() { { ip -n "$1" -o link show "$2" 2>/dev/null || true; } | sed -n 's/^[0-9]*: [^<]*<\([^>]*\)>.*/\1/p'; }

# tap_to_c LINK PID NAME LOG: wait until the PMD in M started the port behind tap LINK (the
# link is UP and PROMISC: the last ioctls of Port::open and of testpmd's start), then move
# the tap's kernel side into C and bring it up there
tap_to_c() {
    local link="$1" pid="$2" name="$3" logf="$4" start=$SECONDS f
    while :; do
        f="$(link_flags "$NS_M" "$link")"
        [[ ",$f," == *,UP,* && ",$f," == *,PROMISC,* ]] && break
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS - start >= STARTUP_TIMEOUT)); then
            { echo "---- last lines of $name's log ($logf) ----"; tail -n 30 "$logf" 2>/dev/null || true; echo "----"; } >&2
            die "$name: tap $link did not come up in $NS_M (flags: ${f:-none})"
        fi
        sleep 0.1
    done
    sleep 0.2
    ip -n "$NS_M" link set "$link" netns "$NS_C"
    ip -n "$NS_C" link set "$link" up
}

start_mosn() {
    local v="$1" d="$TMP/mosn-$1"
    PROXY_PID=""
    [[ "$v" == direct ]] && return 0
    if [[ "$v" == kernel ]]; then
        ip -n "$NS_M" addr add "$M_IP/24" dev "$VETH_M"
        ip -n "$NS_M" route add "$UP_IP/32" via "$C_IP"
    fi
    : >"$d/stdout.log"
    (cd "$d" && exec ip netns exec "$NS_M" "${PIN_PROXY[@]}" "$MOSN_BIN" start -c "$d/mosn.json") >>"$d/stdout.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if [[ "$v" == tap ]]; then
        tap_to_c "$TAP" "$PROXY_PID" "mosn ($v)" "$d/mosn.log"
        ip -n "$NS_C" addr add "$TAP_C_IP/24" dev "$TAP"
    fi
    wait_http "$(url_of "$v")" "$PROXY_PID" "mosn ($v)" "$d/mosn.log"
}

stop_mosn() {
    local v="$1"
    [[ -n "$PROXY_PID" ]] && stop_proc "$PROXY_PID"
    PROXY_PID=""
    case "$v" in
    kernel) ip -n "$NS_M" addr flush dev "$VETH_M" ;;
    af_xdp) ip -n "$NS_M" link set dev "$VETH_M" xdp off 2>/dev/null || true ;;
    tap) ip -n "$NS_C" link del "$TAP" 2>/dev/null || true ;; # gone with mosn's fd, normally
    esac
}

# mosn_ticks PID: "TOTAL POLL POLL_SYS": CPU ticks (utime + stime) of all of PID's threads, of
# its busy-polling DPDK thread (mosn-dpdk-0), and that thread's stime; one pass over
# /proc/PID/task so that the three agree
mosn_ticks() {
    local t comm line rest total=0 poll=0 sys=0
    local -a f
    for t in /proc/"$1"/task/*; do
        line="$(cat "$t/stat" 2>/dev/null)" || continue
        comm="$(cat "$t/comm" 2>/dev/null)" || continue
        rest="${line##*) }"
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
        if [[ "$comm" == mosn-dpdk-0 ]]; then
            poll=$((poll + f[11] + f[12]))
            sys=$((sys + f[12]))
        fi
    done
    echo "$total $poll $sys"
}

# ---------------------------------------------------------------- HTTP measurement
declare -A RPS P50 P99 CPUREQ CPUPCT OTHREQ POLLSYS UPREQ ERRS BG
declare -A FWD_TX FWD_RX FWD_OFFERED FWD_BG
WRK_CMD=""

measure_http() {
    local v="$1" round="$2" key="h1,$1,$2" out="$TMP/wrk-$1-$2.txt" url
    local t0 t1 c0=0 c1=0 p0=0 p1=0 s0=0 s1=0 u0 u1 reqs secs p50 p99
    url="$(url_of "$v")"
    WRK_CMD="wrk -t1 -c$CONNS -d${DUR}s --latency URL"
    wait_quiet
    in_c "${PIN_OTHERS[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >"$out.warm" 2>&1 ||
        { cat "$out.warm" >&2; die "$v: wrk warm-up failed"; }
    bg_begin
    [[ -n "$PROXY_PID" ]] && read -r c0 p0 s0 <<<"$(mosn_ticks "$PROXY_PID")"
    u0="$(cpu_ticks "$UP_PID")"
    t0="$(now)"
    in_c "${PIN_OTHERS[@]}" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$url" >"$out" 2>&1 ||
        { cat "$out" >&2; die "$v: wrk failed"; }
    t1="$(now)"
    u1="$(cpu_ticks "$UP_PID")"
    [[ -n "$PROXY_PID" ]] && read -r c1 p1 s1 <<<"$(mosn_ticks "$PROXY_PID")"
    BG[$key]="$(bg_end)"

    reqs="$(awk '/requests in/ { print $1; exit }' "$out")"
    RPS[$key]="$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")"
    p50="$(awk '$1 == "50%" { print $2; exit }' "$out")"
    p99="$(awk '$1 == "99%" { print $2; exit }' "$out")"
    ERRS[$key]="$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }' "$out")"
    [[ -n "$reqs" && "$reqs" -gt 0 && -n "${RPS[$key]}" && -n "$p50" && -n "$p99" ]] || {
        cat "$out" >&2
        die "$v: wrk completed no request or its output could not be parsed"
    }
    P50[$key]="$(to_ms "$p50")"
    P99[$key]="$(to_ms "$p99")"
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
    per_req() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f\n", t / hz * 1e6 / n }'; }
    UPREQ[$key]="$(per_req $((u1 - u0)))"
    if [[ -z "$PROXY_PID" ]]; then
        CPUREQ[$key]="—"; CPUPCT[$key]="—"; OTHREQ[$key]="—"; POLLSYS[$key]="—"
    else
        CPUREQ[$key]="$(per_req $((c1 - c0)))"
        CPUPCT[$key]="$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f\n", t / hz / s * 100 }')"
        if [[ "$v" == kernel ]]; then
            OTHREQ[$key]="—"; POLLSYS[$key]="—"
        else
            OTHREQ[$key]="$(per_req $((c1 - c0 - (p1 - p0))))"
            POLLSYS[$key]="$(awk -v s=$((s1 - s0)) -v p=$((p1 - p0)) 'BEGIN { if (p > 0) printf "%.0f\n", s / p * 100; else print "n/a" }')"
        fi
    fi
    log "  $v round $round: ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms, mosn CPU ${CPUREQ[$key]} µs/req (${CPUPCT[$key]} %; non-polling threads ${OTHREQ[$key]} µs/req; poll thread sys ${POLLSYS[$key]} %), upstream ${UPREQ[$key]} µs/req, errors ${ERRS[$key]}, background CPU ${BG[$key]} %"
}

# ---------------------------------------------------------------- packet path
# vdev_of PMD LINK / port_of PMD
vdev_of() {
    case "$1" in
    tap) echo "net_tap0,iface=$2" ;;
    af_packet) echo "net_af_packet0,iface=$2" ;;
    af_xdp) echo "net_af_xdp0,iface=$2,start_queue=0,queue_count=1" ;;
    esac
}
port_of() { echo "net_${1}0"; }

# pps_samples LOG NAME: the NAME (Tx-pps / Rx-pps) of each 1 s interval, one a line
# (testpmd's "  Tx-pps:  N  Tx-bps: ..." and dpdk_fwd's "interval ... Tx-pps: N ..." alike)
pps_samples() { { grep -v '^total' "$1" 2>/dev/null || true; } | { grep -o "$2: *[0-9]*" || true; } | awk '{ print $2 }'; }
sample_count() { pps_samples "$1" Tx-pps | wc -l; }

# median_window LOG NAME FROM TO: median of samples FROM+1..TO
median_window() {
    pps_samples "$1" "$2" | sed -n "$(($3 + 1)),$4p" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.0f\n", m }'
}

# wait_line FILE REGEX PID NAME: wait until FILE has a line matching REGEX
wait_line() {
    local start=$SECONDS
    until grep -qE "$2" "$1" 2>/dev/null; do
        if ! kill -0 "$3" 2>/dev/null || ((SECONDS - start >= STARTUP_TIMEOUT)); then
            { echo "---- last lines of $4's output ($1) ----"; tail -n 30 "$1" 2>/dev/null || true; echo "----"; } >&2
            die "$4 did not start (no line matching '$2')"
        fi
        sleep 0.1
    done
}

declare -A FWD_CMDS
GEN_CMD=""

measure_fwd() {
    local pmd="$1" who="$2" round="$3" key="$1,$2,$3" d="$TMP/fwd-$1-$2-$3" link gen_if vdev
    local f0 f1 g0 g1 start
    local -a fcmd gcmd
    mkdir -p "$d"
    if [[ "$pmd" == tap ]]; then link="$FTAP"; gen_if="$FTAP"; else link="$VETH_M"; gen_if="$VETH_C"; fi
    vdev="$(vdev_of "$pmd" "$link")"
    if [[ "$who" == testpmd ]]; then
        fcmd=(dpdk-testpmd -l 0-1 --main-lcore 1 --no-pci "${TESTPMD_MEM[@]}" --file-prefix "$EAL_PREFIX-fwd"
            --vdev "$vdev" -- --no-mlockall --total-num-mbufs=8192 --forward-mode=io --port-topology=loop
            -a --stats-period 1)
        FWD_CMDS[testpmd,$pmd]="ip netns exec M ${fcmd[*]}"
        fcmd=(stdbuf -oL "${fcmd[@]}")
    else
        fcmd=("${PIN_PROXY[@]}" "$FWD_BIN" -l 0 --no-pci "${EAL_MEM[@]}" --file-prefix "$EAL_PREFIX-fwd" --vdev "$vdev"
            -- --port "$(port_of "$pmd")" --seconds 600 --interval 1 --idle-exit 2)
        FWD_CMDS[mosn,$pmd]="ip netns exec M ${fcmd[*]/#$FWD_BIN/dpdk_fwd}"
    fi
    gcmd=(dpdk-testpmd -l 0-1 --main-lcore 0 --no-pci "${TESTPMD_MEM[@]}" --file-prefix "$EAL_PREFIX-gen"
        --vdev "$(vdev_of "$GEN_PMD" "$gen_if")" -- --no-mlockall --total-num-mbufs=8192 --forward-mode=txonly
        --port-topology=loop -a --stats-period 1)
    GEN_CMD="ip netns exec C ${gcmd[*]}"

    wait_quiet
    (cd "$d" && exec ip netns exec "$NS_M" "${fcmd[@]}") >"$d/fwd.log" 2>&1 </dev/null &
    FWD_PID=$!
    PIDS+=("$FWD_PID")
    if [[ "$who" == testpmd ]]; then
        wait_line "$d/fwd.log" 'packet forwarding - ports=' "$FWD_PID" "testpmd io forwarder ($pmd)"
    else
        wait_line "$d/fwd.log" '^READY' "$FWD_PID" "dpdk_fwd ($pmd)"
    fi
    [[ "$pmd" == tap ]] && tap_to_c "$FTAP" "$FWD_PID" "forwarder ($who, tap)" "$d/fwd.log"

    (cd "$d" && exec ip netns exec "$NS_C" stdbuf -oL "${gcmd[@]}") >"$d/gen.log" 2>&1 </dev/null &
    GEN_PID=$!
    PIDS+=("$GEN_PID")
    wait_line "$d/gen.log" 'Tx-pps' "$GEN_PID" "generator (txonly, $GEN_PMD on $gen_if)"
    sleep "$FWD_WARMUP"
    f0="$(sample_count "$d/fwd.log")"; g0="$(sample_count "$d/gen.log")"
    bg_begin
    sleep "$DUR"
    f1="$(sample_count "$d/fwd.log")"; g1="$(sample_count "$d/gen.log")"
    FWD_BG[$key]="$(bg_end)"
    stop_proc "$GEN_PID"; GEN_PID=""
    [[ "$GEN_PMD" == af_xdp ]] && { ip -n "$NS_C" link set dev "$gen_if" xdp off 2>/dev/null || true; }
    if [[ "$who" == mosn ]]; then
        # dpdk_fwd ends by itself 2 s after the traffic stopped (a clean exit closes the port)
        start=$SECONDS
        while kill -0 "$FWD_PID" 2>/dev/null && ((SECONDS - start < 10)); do sleep 0.2; done
    fi
    stop_proc "$FWD_PID"; FWD_PID=""
    [[ "$pmd" == af_xdp ]] && { ip -n "$NS_M" link set dev "$VETH_M" xdp off 2>/dev/null || true; }

    FWD_TX[$key]="$(median_window "$d/fwd.log" Tx-pps "$f0" "$f1")"
    FWD_RX[$key]="$(median_window "$d/fwd.log" Rx-pps "$f0" "$f1")"
    FWD_OFFERED[$key]="$(median_window "$d/gen.log" Tx-pps "$g0" "$g1")"
    [[ "${FWD_TX[$key]}" != n/a && "${FWD_TX[$key]}" -gt 0 ]] || {
        tail -n 40 "$d/fwd.log" >&2
        die "$pmd: the $who forwarder forwarded nothing in its window (samples $f0..$f1)"
    }
    log "  packet path $pmd, $who: forwarded ${FWD_TX[$key]} pps (rx ${FWD_RX[$key]} pps), offered ${FWD_OFFERED[$key]} pps, background CPU ${FWD_BG[$key]} %"
}

# ---------------------------------------------------------------- run
for v in "${MOSN_PATHS[@]}"; do write_mosn_config "$v"; done
if ((${#PATHS[@]})); then
    start_upstream
    log "preflight: one request through each variant"
    for v in "${PATHS[@]}"; do
        start_mosn "$v"
        stop_mosn "$v"
    done
fi

STARTED_AT="$(date '+%Y-%m-%d %H:%M:%S %Z')"
for ((round = 1; round <= ROUNDS; round++)); do
    order=("${PATHS[@]}")
    fwd_who=(testpmd mosn)
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#PATHS[@]} - 1; i >= 0; i--)); do order+=("${PATHS[i]}"); done
        fwd_who=(mosn testpmd)
    fi
    log "round $round/$ROUNDS, order: ${order[*]}${FWD_PMDS[*]:+; packet path: ${FWD_PMDS[*]} (${fwd_who[*]})}"
    for v in "${order[@]}"; do
        start_mosn "$v"
        measure_http "$v" "$round"
        stop_mosn "$v"
    done
    for pmd in "${FWD_PMDS[@]}"; do
        for who in "${fwd_who[@]}"; do measure_fwd "$pmd" "$who" "$round"; done
    done
done
RUSTC_AT_END="$(pgrep -c -x rustc || true)"
LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
# paired_vs ARRAY WORKLOAD A B: median over rounds of A's figure / B's (within a round)
paired_vs() {
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        fdiv "$(val "$1" "$2" "$3" "$r")" "$(val "$1" "$2" "$4" "$r")" %.6f
    done | grep -v n/a | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f\n", m }'
}

# verdict VALUE OP LIMIT: PASS / MISS / not measured
verdict() {
    if [[ "$1" == n/a || "$1" == "—" ]]; then echo "not measured"; return 0; fi
    if awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { exit !((op == ">=") ? v >= l : v < l) }'; then
        echo "**PASS**"
    else
        echo "**MISS**"
    fi
}

has_http() { [[ " ${PATHS[*]} " == *" $1 "* ]]; }

# limit_of PMD WHO: "generator" when WHO's forwarder received >= 95 % of the offered rate
limit_of() {
    awk -v rx="$(median_of FWD_RX "$1" "$2" %.0f)" -v off="$(median_of FWD_OFFERED "$1" "$2" %.0f)" 'BEGIN {
        if (rx == "—" || off == "—" || off == 0) print "n/a"; else if (rx >= 0.95 * off) print "generator"; else print "forwarder" }'
}

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
GIT_REV_END="$(git_rev)"
if [[ "$GIT_REV_END" != "$GIT_REV" ]]; then GIT_REV="$GIT_REV at the build; $GIT_REV_END at the end of the run"; fi
if ((!BUILD)); then GIT_REV="$GIT_REV; --no-build: the binaries may be built from another tree"; fi
CMD="bench/dpdk.sh${ARGS_TEXT:+ $ARGS_TEXT}"
if ((PIN)); then
    PIN_TEXT="mosn (both backends) and the forwarders pinned to CPU 0; wrk, the upstream and the generator to CPU 1 (taskset; DPDK's -l 0 for mosn and dpdk_fwd, testpmd's forwarding lcore 0 / generator's lcore 1)"
else
    PIN_TEXT="nothing pinned by taskset (DPDK lcores as given)"
fi
mkdir -p "$CONF_DIR"
cp "$TMP/up/nginx.conf" "$CONF_DIR/upstream-nginx.conf"
for v in "${MOSN_PATHS[@]}"; do cp "$TMP/mosn-$v/mosn.json" "$CONF_DIR/mosn-$v.json"; done
# the raw outputs, for a second look at an odd figure: wrk's, the forwarders' and generator's
# (1 s counters), mosn's log of each variant
mkdir -p "$CONF_DIR/raw"
for f in "$TMP"/wrk-*.txt; do [[ -e "$f" ]] && cp "$f" "$CONF_DIR/raw/"; done
for v in "${MOSN_PATHS[@]}"; do
    [[ -s "$TMP/mosn-$v/mosn.log" ]] && cp "$TMP/mosn-$v/mosn.log" "$CONF_DIR/raw/mosn-$v.log"
    cp "$TMP/mosn-$v/stdout.log" "$CONF_DIR/raw/mosn-$v.stdout.log" 2>/dev/null || true
done
for d in "$TMP"/fwd-*; do
    [[ -d "$d" ]] || continue
    cp "$d/fwd.log" "$CONF_DIR/raw/${d##*/}.fwd.log" 2>/dev/null || true
    cp "$d/gen.log" "$CONF_DIR/raw/${d##*/}.gen.log" 2>/dev/null || true
done

{
    echo "# DPDK backend benchmark, $STARTED_AT"
    echo
    echo "- command: \`$CMD\` (git $GIT_REV)"
    echo "- machine: $NCPU CPU(s), ${CPU_MODEL:-unknown CPU}, Linux $(uname -r); DPDK $(dpkg-query -W -f '${Version}' dpdk 2>/dev/null || echo '?'), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | awk 'NR == 1 { print $1 " " $2 }')"
    echo "- settings: $PIN_TEXT; DPDK poll_mode $POLL_MODE; wrk -t1 -c$CONNS, ${DUR} s per measured run after a ${WARMUP} s warm-up; packet path ${DUR} s windows after ${FWD_WARMUP} s of traffic, 64-byte frames; $ROUNDS round(s) alternating forward/reverse order; a fresh mosn per variant and round; memory: $MEM_NOTE; quiet wait up to ${QUIET_WAIT} s before each run"
    echo "- load average at start / end: $LOAD_AT_START / $LOAD_AT_END; rustc processes at start / end: $RUSTC_AT_START / $RUSTC_AT_END"
    echo "- topology: netns C (wrk, upstream nginx with 1 worker on $UP_IP:$UP_PORT serving a ${BODY_BYTES}-byte file) and netns M (mosn), a veth pair ($C_IP/24 in C with \`ethtool -K <veth> tx off\`; mosn at $M_IP); for tap, mosn creates the tap in M and its kernel side is moved into C ($TAP_C_IP/24; mosn at $TAP_M_IP)"
    echo "- figures are medians over the rounds; ratios are the median over rounds of the ratio within each round (paired). Absolute figures depend on this shared machine; compare the ratios"
    if ((${#PATHS[@]})); then
        echo
        echo "## HTTP/1.1 through mosn, wrk (closed loop)"
        echo
        echo "\`$WRK_CMD\` from netns C"
        echo
        echo "A busy-polling DPDK worker burns its core by design (mosn CPU % near 100 whatever the load), so for the DPDK variants the CPU per request is that core divided by the request rate: it falls as the load rises, and is not the cost of a request. \"non-polling threads\" is mosn's CPU outside the polling thread \`mosn-dpdk-0\` (/proc/<pid>/task); \"poll sys %\" the share of the polling thread's CPU spent in the kernel (the tap and af_packet PMDs make syscalls)."
        echo
        echo "| variant | req/s | p50 ms | p99 ms | mosn CPU µs/req | mosn CPU % | non-polling threads µs/req | poll sys % | upstream CPU µs/req | errors (sum) | max background CPU % |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        for v in "${PATHS[@]}"; do
            errs=0; bgmax=0
            for ((r = 1; r <= ROUNDS; r++)); do
                errs=$((errs + ${ERRS[h1,$v,$r]:-0}))
                ((${BG[h1,$v,$r]:-0} > bgmax)) && bgmax=${BG[h1,$v,$r]}
            done
            echo "| $v | $(median_of RPS h1 "$v" %.0f) | $(median_of P50 h1 "$v" %.3f) | $(median_of P99 h1 "$v" %.3f) | $(median_of CPUREQ h1 "$v") | $(median_of CPUPCT h1 "$v" %.0f) | $(median_of OTHREQ h1 "$v") | $(median_of POLLSYS h1 "$v" %.0f) | $(median_of UPREQ h1 "$v") | $errs | $bgmax |"
        done
        if has_http kernel; then
            echo
            echo "### Ratios against \`kernel\` (paired median)"
            echo
            echo "| variant | req/s ratio (higher is better) | p99 ratio (lower is better) | p50 ratio | mosn CPU/req ratio |"
            echo "| --- | ---: | ---: | ---: | ---: |"
            for v in "${PATHS[@]}"; do
                [[ "$v" == kernel ]] && continue
                echo "| $v / kernel | $(paired_vs RPS h1 "$v" kernel) | $(paired_vs P99 h1 "$v" kernel) | $(paired_vs P50 h1 "$v" kernel) | $(if [[ "$v" == direct ]]; then echo "—"; else paired_vs CPUREQ h1 "$v" kernel; fi) |"
            done
        fi
    fi
    if ((${#FWD_PMDS[@]})); then
        echo
        echo "## Packet path: dpdk_fwd (DpdkDevice tokens) vs testpmd io forwarding, same PMD"
        echo
        echo "Forwarded = the forwarder's own Tx-pps (port counters over 1 s intervals inside the window, median); rx = its Rx-pps; offered = the generator's Tx-pps (testpmd txonly on net_$GEN_PMD over C's end of the link). 64-byte frames, back out of the port they came in on."
        echo
        echo "\"limit\": \"generator\" when the forwarder received at least 95 % of what was offered (median over rounds), so that its rate is the generator's and says only that it keeps up; \"forwarder\" otherwise."
        echo
        echo "| PMD | testpmd io fwd pps | testpmd rx pps | dpdk_fwd pps | dpdk_fwd rx pps | offered pps (testpmd run / dpdk_fwd run) | limit (testpmd / dpdk_fwd) | dpdk_fwd / testpmd (paired) | max background CPU % |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
        for pmd in "${FWD_PMDS[@]}"; do
            bgmax=0
            for ((r = 1; r <= ROUNDS; r++)); do
                for who in testpmd mosn; do ((${FWD_BG[$pmd,$who,$r]:-0} > bgmax)) && bgmax=${FWD_BG[$pmd,$who,$r]}; done
            done
            echo "| $pmd | $(median_of FWD_TX "$pmd" testpmd %.0f) | $(median_of FWD_RX "$pmd" testpmd %.0f) | $(median_of FWD_TX "$pmd" mosn %.0f) | $(median_of FWD_RX "$pmd" mosn %.0f) | $(median_of FWD_OFFERED "$pmd" testpmd %.0f) / $(median_of FWD_OFFERED "$pmd" mosn %.0f) | $(limit_of "$pmd" testpmd) / $(limit_of "$pmd" mosn) | $(paired_vs FWD_TX "$pmd" mosn testpmd) | $bgmax |"
        done
    fi
    echo
    echo "## Targets"
    echo
    echo "| target | wanted | measured (paired median) | result |"
    echo "| --- | --- | ---: | --- |"
    if has_http tap && has_http kernel; then
        r="$(paired_vs RPS h1 tap kernel)"
        echo "| DPDK over tap: requests/s | >= 1.0x kernel | ${r}x | $(verdict "$r" ">=" 1.0) |"
        r="$(paired_vs P99 h1 tap kernel)"
        echo "| DPDK over tap: p99 | < 1.0x kernel (lower) | ${r}x | $(verdict "$r" "<" 1.0) |"
    else
        echo "| DPDK over tap vs kernel | req/s >= 1.0x, lower p99 | n/a | not measured (needs --only with tap and kernel) |"
    fi
    for pmd in "${FWD_PMDS[@]}"; do
        r="$(paired_vs FWD_TX "$pmd" mosn testpmd)"
        note=""
        if [[ "$(limit_of "$pmd" testpmd)" == generator && "$(limit_of "$pmd" mosn)" == generator ]]; then
            note=" (both forwarders kept up with the generator: the ceiling was not reached)"
        fi
        echo "| packet path on $pmd | >= 0.8x testpmd io forwarding | ${r}x | $(verdict "$r" ">=" 0.8)$note |"
    done
    echo
    echo "## All rounds"
    echo
    echo "bg: share of all CPUs used by processes outside the benchmark during that run (above about 10 %: disturbed)."
    echo
    if ((${#PATHS[@]})); then
        echo "| round | variant | req/s | p50 ms | p99 ms | mosn CPU µs/req | mosn CPU % | non-polling µs/req | poll sys % | upstream µs/req | errors | bg % |"
        echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        for ((r = 1; r <= ROUNDS; r++)); do
            for v in "${PATHS[@]}"; do
                k="h1,$v,$r"
                echo "| $r | $v | ${RPS[$k]} | ${P50[$k]} | ${P99[$k]} | ${CPUREQ[$k]} | ${CPUPCT[$k]} | ${OTHREQ[$k]} | ${POLLSYS[$k]} | ${UPREQ[$k]} | ${ERRS[$k]} | ${BG[$k]} |"
            done
        done
        echo
    fi
    if ((${#FWD_PMDS[@]})); then
        echo "| round | PMD | forwarder | forwarded pps | rx pps | offered pps | bg % |"
        echo "| ---: | --- | --- | ---: | ---: | ---: | ---: |"
        for ((r = 1; r <= ROUNDS; r++)); do
            for pmd in "${FWD_PMDS[@]}"; do
                for who in testpmd mosn; do
                    k="$pmd,$who,$r"
                    echo "| $r | $pmd | $( [[ "$who" == mosn ]] && echo dpdk_fwd || echo testpmd) | ${FWD_TX[$k]} | ${FWD_RX[$k]} | ${FWD_OFFERED[$k]} | ${FWD_BG[$k]} |"
                done
            done
        done
        echo
    fi
    echo "## Commands"
    echo
    echo "C and M stand for the namespaces \`mosnb-c-<pid>\` and \`mosnb-m-<pid>\`; \`<veth>\`, \`<tap>\` for \`dbm<pid>\`/\`dbc<pid>\` and \`dbt<pid>\`/\`dbf<pid>\`."
    echo
    echo '```'
    if ((${#MOSN_PATHS[@]})); then
        echo "ip netns exec M ${PIN_PROXY[*]}${PIN_PROXY[*]:+ }mosn start -c mosn-<variant>.json     # configs in bench/results/dpdk-$STAMP/"
        echo "ip link set <tap> netns C; ip -n C addr add $TAP_C_IP/24 dev <tap>; ip -n C link set <tap> up   # tap, once the port is up"
    fi
    ((${#PATHS[@]})) && echo "ip netns exec C ${PIN_OTHERS[*]}${PIN_OTHERS[*]:+ }${WRK_CMD}"
    for pmd in "${FWD_PMDS[@]}"; do
        echo "${FWD_CMDS[testpmd,$pmd]}"
        echo "${FWD_CMDS[mosn,$pmd]}"
    done
    ((${#FWD_PMDS[@]})) && echo "$GEN_CMD   # generator, on the veth or the tap moved into C"
    echo '```'
    echo
    echo "The generated configs are in \`bench/results/dpdk-$STAMP/\`, the raw outputs (wrk's, the forwarders' and the generator's per-second counters, mosn's logs) in \`bench/results/dpdk-$STAMP/raw/\`."
} | tee "$REPORT"
log "report written to $REPORT"
