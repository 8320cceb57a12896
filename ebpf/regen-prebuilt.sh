#!/usr/bin/env bash
# Rebuilds ebpf/prebuilt/*.o from src/bpf/ with clang (through build.rs, so the flags are the
# ones every build uses) and records the sha256 of the inputs in prebuilt/SOURCES.sha256.
# The test `prebuilt_objects_match_their_sources` fails when the inputs change without this.
# Needs clang and libbpf-dev (ci/setup.sh installs them). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"
touch build.rs # make cargo rerun the build script
MOSN_EBPF_REQUIRE_CLANG=1 MOSN_EBPF_PREBUILT_OUT="$PWD/prebuilt" cargo build -p mosn-ebpf --quiet
sha256sum build.rs src/bpf/*.bpf.c src/bpf/*.h >prebuilt/SOURCES.sha256
echo "ebpf/prebuilt/ regenerated:"
ls -l prebuilt/
