//! Build script of the `mosn` binary: bakes the git commit into `mosn version`.
//!
//! The eBPF programs (`ebpf/src/bpf/*.bpf.c`) are compiled with clang by the build script of
//! the `mosn-ebpf` crate (`ebpf/build.rs`), not here: a build script's OUT_DIR is visible only
//! to its own package, and the loader crate (and its tests) embed the object. Without clang it
//! uses the committed `ebpf/prebuilt/` objects; `ebpf/regen-prebuilt.sh` refreshes them.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=MOSN_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=build.rs");
}
