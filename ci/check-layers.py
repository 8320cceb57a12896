#!/usr/bin/env python3
"""Fails when a workspace crate depends on a crate at the same or a higher layer.

Layers (ARCHITECTURE.md): wire/config/metrics at the bottom, then net, stream, proxy, admin,
server, and the binary/bench on top. Every workspace crate must be ranked here, so a new crate
cannot slip past the check.
"""
import json
import subprocess
import sys

RANK = {
    "mosn-config": 0,
    "mosn-metrics": 0,
    "mosn-wire": 0,
    "mosn-ffi": 1,
    "mosn-tls-offload": 1,
    "mosn-net": 2,
    "mosn-stream": 3,
    "mosn-proxy": 4,
    "mosn-ebpf": 5,
    "mosn-admin": 5,
    "mosn-server": 6,
    "mosn": 7,
    "mosn-bench": 7,
}


def check(meta: dict) -> list:
    """Returns one line per upward (or sideways, or unranked) edge."""
    members = {p["name"]: p for p in meta["packages"]}
    problems = []
    for name, pkg in sorted(members.items()):
        if name not in RANK:
            problems.append(f"{name}: not ranked in ci/check-layers.py; give it a layer")
            continue
        for dep in pkg["dependencies"]:
            dn = dep["name"]
            if dn not in members:
                continue
            if dep.get("kind") == "dev" and name in ("mosn", "mosn-bench"):
                continue
            if dn not in RANK:
                continue
            if RANK[dn] >= RANK[name]:
                kind = dep.get("kind") or "normal"
                problems.append(
                    f"{name} (layer {RANK[name]}) depends on {dn} (layer {RANK[dn]}) [{kind}]: "
                    "a crate may only depend on crates below it"
                )
    return problems


def self_test() -> None:
    """The check must fail on an upward edge, a sideways edge and an unranked crate."""
    def pkg(name, *deps, kind=None):
        return {"name": name, "dependencies": [{"name": d, "kind": kind} for d in deps]}

    ok = {"packages": [pkg("mosn-net", "mosn-config"), pkg("mosn-config"), pkg("mosn", "mosn-net")]}
    assert check(ok) == [], check(ok)
    up = {"packages": [pkg("mosn-net", "mosn-proxy"), pkg("mosn-proxy", "mosn-net")]}
    assert any("mosn-net (layer 2) depends on mosn-proxy" in p for p in check(up)), check(up)
    side = {"packages": [pkg("mosn-config", "mosn-metrics"), pkg("mosn-metrics")]}
    assert len(check(side)) == 1, check(side)
    dev_up = {"packages": [pkg("mosn-config", "mosn-net", kind="dev"), pkg("mosn-net")]}
    assert len(check(dev_up)) == 1, "dev-dependencies of library crates must point down too"
    new = {"packages": [pkg("mosn-new")]}
    assert "not ranked" in check(new)[0]
    print("layer check self-test: ok")


def main() -> int:
    if "--self-test" in sys.argv:
        self_test()
        return 0
    meta = json.loads(
        subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--no-deps"])
    )
    problems = check(meta)
    for p in problems:
        print(f"layer check: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"layer check: {len(meta['packages'])} crates, all edges point down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
