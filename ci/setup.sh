#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine (run as root). Idempotent:
# packages already present are not fetched again.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# eBPF capture (ebpf/): clang + libbpf-dev + linux-libc-dev build the programs (without clang
# the committed ebpf/prebuilt/ objects are used), bpftool and curl drive its tests, setpriv
# (util-linux) drops capabilities in one of them. L7 tests (tests/l7_*.rs): curl, h2load
# (nghttp2-client), grpcio and websockets for Debian's /usr/bin/python3. TLS offload
# (tls-offload/, feature `openssl`): libssl-dev + pkg-config build the OpenSSL backend and its
# test engine; the openssl CLI (openssl) makes the test PKI and drives s_client. DPDK backend
# (ffi/ and mosn-net, feature `dpdk`): dpdk-dev + libdpdk-dev give the headers and pkg-config
# file the bindings are generated from (bindgen loads clang's libclang), dpdk the PMDs the tests
# drive (net_tap, net_af_packet, net_af_xdp); ethtool turns off the veth peer's checksum offload.
for pkg in iproute2 iptables python3 ca-certificates \
    clang libbpf-dev linux-libc-dev bpftool curl util-linux \
    nghttp2-client python3-grpcio python3-websockets \
    openssl libssl-dev pkg-config \
    dpdk-dev libdpdk-dev dpdk ethtool; do
    have "$pkg" || need+=("$pkg")
done
# RPC peers (tests/rpc_*.rs): node runs the real SOFARPC Bolt and Dubbo peers in
# tests/tools/rpc/. Checked as commands: a nodejs that ships its own npm (NodeSource's) is kept.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# anthunder (the second Bolt client) is pip-installed for Debian's python into its own folder.
have python3-pip || need+=(python3-pip)
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
# The peers' npm packages, pinned by tests/tools/rpc/package-lock.json; reinstalled when the
# lock file is newer than node_modules.
rpc="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/tools/rpc"
if [[ ! -d "$rpc/node_modules" || "$rpc/package-lock.json" -nt "$rpc/node_modules" ]]; then
    echo "ci/setup.sh: npm ci in tests/tools/rpc"
    (cd "$rpc" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    touch "$rpc/node_modules"
fi
# anthunder and its dependencies, pinned by tests/tools/rpc/requirements.txt, into
# tests/tools/rpc/pydeps (--target: Debian's /usr/bin/python3 itself is not modified).
if [[ ! -d "$rpc/pydeps" || "$rpc/requirements.txt" -nt "$rpc/pydeps" ]]; then
    echo "ci/setup.sh: pip install --target tests/tools/rpc/pydeps"
    rm -rf "$rpc/pydeps"
    /usr/bin/python3 -m pip install --quiet --no-cache-dir --disable-pip-version-check \
        --root-user-action=ignore --no-deps --target "$rpc/pydeps" -r "$rpc/requirements.txt"
    touch "$rpc/pydeps"
fi
