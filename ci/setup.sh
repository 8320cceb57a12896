#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine (run as root). Idempotent:
# packages already present are not fetched again.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# eBPF capture (ebpf/): clang + libbpf-dev + linux-libc-dev build the programs (without clang
# the committed ebpf/prebuilt/ objects are used), bpftool and curl drive its tests, setpriv
# (util-linux) drops capabilities in one of them. L7 tests (tests/l7_*.rs): curl, h2load
# (nghttp2-client), grpcio and websockets for Debian's /usr/bin/python3.
for pkg in iproute2 iptables python3 ca-certificates \
    clang libbpf-dev linux-libc-dev bpftool curl util-linux \
    nghttp2-client python3-grpcio python3-websockets; do
    have "$pkg" || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "ci/setup.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for c in rustfmt clippy; do
    if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$c"
    fi
done
