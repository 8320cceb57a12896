//! Builds the eBPF objects of mosn-ebpf into OUT_DIR:
//! `clang -O2 -g -target bpf` on `src/bpf/mosn_capture.bpf.c` (outbound) and
//! `src/bpf/mosn_inbound.bpf.c` (inbound) when clang and the libbpf headers are installed,
//! otherwise a copy of the committed `prebuilt/*.o`.
//!
//! Environment:
//! - `MOSN_EBPF_PREBUILT=1`: use the prebuilt objects even when clang is there.
//! - `MOSN_EBPF_REQUIRE_CLANG=1`: fail instead of falling back to the prebuilt objects.
//! - `MOSN_EBPF_PREBUILT_OUT=<dir>`: also copy the clang-built objects there
//!   (`ebpf/regen-prebuilt.sh` uses it to refresh `prebuilt/`).
//!
//! The crate exports the objects as `mosn_ebpf::OBJECT` and `mosn_ebpf::INBOUND_OBJECT`, and
//! tells how they were made in `MOSN_EBPF_OBJECT_ORIGIN` (`clang` or `prebuilt`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// (output object, source, extra clang flags)
const OBJECTS: &[(&str, &str, &[&str])] = &[
    ("mosn_capture.bpf.o", "mosn_capture.bpf.c", &[]),
    (
        "mosn_capture_pitfall.bpf.o",
        "mosn_capture.bpf.c",
        &["-DMOSN_VERIFIER_PITFALL"],
    ),
    ("mosn_inbound.bpf.o", "mosn_inbound.bpf.c", &[]),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let src = manifest.join("src/bpf");
    let prebuilt = manifest.join("prebuilt");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-changed=prebuilt");
    for var in [
        "MOSN_EBPF_PREBUILT",
        "MOSN_EBPF_REQUIRE_CLANG",
        "MOSN_EBPF_PREBUILT_OUT",
        "CLANG",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let flag = |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0");

    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let why_not_clang = if flag("MOSN_EBPF_PREBUILT") {
        Some("MOSN_EBPF_PREBUILT is set".to_string())
    } else if Command::new(&clang).arg("--version").output().is_err() {
        Some(format!("{clang} is not installed"))
    } else if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        Some("the libbpf headers are not installed (libbpf-dev)".to_string())
    } else {
        None
    };

    let origin = match why_not_clang {
        None => {
            for (obj, source, extra) in OBJECTS {
                compile(&clang, &src, source, extra, &out.join(obj));
            }
            if let Ok(dir) = std::env::var("MOSN_EBPF_PREBUILT_OUT") {
                for (obj, _, _) in OBJECTS {
                    std::fs::copy(out.join(obj), Path::new(&dir).join(obj))
                        .unwrap_or_else(|e| panic!("copying {obj} to {dir}: {e}"));
                }
            }
            "clang"
        }
        Some(reason) => {
            if flag("MOSN_EBPF_REQUIRE_CLANG") {
                panic!("MOSN_EBPF_REQUIRE_CLANG is set but {reason}");
            }
            println!("cargo:warning=mosn-ebpf: {reason}: using the prebuilt eBPF objects in ebpf/prebuilt/");
            for (obj, _, _) in OBJECTS {
                std::fs::copy(prebuilt.join(obj), out.join(obj)).unwrap_or_else(|e| {
                    panic!("{reason}, and the prebuilt object ebpf/prebuilt/{obj} is unusable: {e}")
                });
            }
            "prebuilt"
        }
    };
    println!("cargo:rustc-env=MOSN_EBPF_OBJECT_ORIGIN={origin}");
}

fn compile(clang: &str, src: &Path, source: &str, extra: &[&str], out: &Path) {
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64",
        Ok("aarch64") => "aarch64",
        Ok(other) => panic!("mosn-ebpf: no multiarch include directory known for {other}"),
        Err(_) => "x86_64",
    };
    let mut cmd = Command::new(clang);
    cmd.current_dir(src)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{arch}-linux-gnu"))
        // keep the checkout path out of the debug info
        .arg(format!("-fdebug-prefix-map={}=ebpf/src/bpf", src.display()))
        .args(extra)
        .args(["-c", source, "-o"])
        .arg(out);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {clang}: {e}"));
    if !output.status.success() {
        panic!(
            "clang failed on ebpf/src/bpf/{source} ({cmd:?}):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
