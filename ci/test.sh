#!/usr/bin/env bash
# The whole test suite: formatting, lints, the layer check and every test. Installs what it
# needs first (ci/setup.sh). Run from anywhere: `ci/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

# A from-scratch build gains nothing from incremental compilation, and its caches were 3.6 GB
# of a 12 GB run: off (set CARGO_INCREMENTAL=1 to keep them for repeated local runs).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Each step says how much disk is left: a machine short of space fails at the step that ran out.
step() { printf '\n=== %s (%s free) ===\n' "$*" "$(df -h --output=avail . | tail -1 | tr -d ' ')"; }

step "setup"
bash ci/setup.sh

step "rustfmt"
cargo fmt --all --check

step "layer check"
python3 ci/check-layers.py --self-test
python3 ci/check-layers.py

step "clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p mosn-tls-offload --all-targets --features openssl --locked -- -D warnings
cargo clippy -p mosn -p mosn-server --all-targets --features openssl,dpdk --locked -- -D warnings
cargo clippy -p mosn-ffi -p mosn-net --all-targets --features dpdk --locked -- -D warnings

step "tests"
{
    cargo test --workspace --locked --no-fail-fast
    # The OpenSSL offload backend (feature `openssl`): interop, the test ENGINE, async mode.
    cargo test -p mosn-tls-offload --features openssl --locked --no-fail-fast
    # mosn built with the OpenSSL and DPDK backends (one build for both): `type: openssl`
    # listeners with the test ENGINE; the real binary over DPDK in test
    # namespaces (tap, af_packet, af_xdp): HTTP/1, HTTP/2, Bolt, tcp_proxy, 1,000 connections,
    # resets, TERM, bad set-ups.
    cargo test --features openssl,dpdk --locked --no-fail-fast --test tls --test dpdk
    # The DPDK device under the userspace stack (feature `dpdk`): net_tap and net_af_packet
    # in test namespaces, kernel peers on the other side (root; EAL in child processes).
    cargo test -p mosn-net --features dpdk --locked --no-fail-fast
} 2>&1 | tee target/test-output.txt
printf '\ntarget/ holds %s; %s free\n' "$(du -sh target | cut -f1)" "$(df -h --output=avail . | tail -1 | tr -d ' ')"
# One plain summary line over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\nall tests: %d passed, %d failed, %d ignored\n", p, f, i; if (p == 0) exit 1 }' target/test-output.txt
