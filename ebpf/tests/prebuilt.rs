//! The committed objects in `ebpf/prebuilt/` (used when clang is absent) must come from the
//! current sources. clang output is not guaranteed byte-reproducible across versions, so the
//! check is on the inputs: `prebuilt/SOURCES.sha256` records the sha256 of every input when
//! `ebpf/regen-prebuilt.sh` built the objects. When this build used clang, the prebuilt
//! objects must also hold the same programs and maps as the fresh ones.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const REGEN: &str = "run ebpf/regen-prebuilt.sh (needs clang and libbpf-dev, see ci/setup.sh) \
                     and commit ebpf/prebuilt/";

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every input of the objects, relative to the crate directory.
fn inputs() -> BTreeSet<String> {
    let mut set: BTreeSet<String> = std::fs::read_dir(crate_dir().join("src/bpf"))
        .unwrap()
        .flatten()
        .map(|e| format!("src/bpf/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".c") || n.ends_with(".h"))
        .collect();
    set.insert("build.rs".to_string());
    set
}

#[test]
fn prebuilt_objects_match_their_sources() {
    let recorded = std::fs::read_to_string(crate_dir().join("prebuilt/SOURCES.sha256"))
        .unwrap_or_else(|e| panic!("ebpf/prebuilt/SOURCES.sha256: {e}; {REGEN}"));
    let recorded: Vec<(String, String)> = recorded
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, f)| (f.trim().to_string(), h.to_string()))
        .collect();
    let names: BTreeSet<String> = recorded.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(
        names,
        inputs(),
        "the set of eBPF sources changed since ebpf/prebuilt/ was built; {REGEN}"
    );
    let out = Command::new("sha256sum")
        .current_dir(crate_dir())
        .args(names.iter())
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    let now = String::from_utf8_lossy(&out.stdout);
    for (file, hash) in &recorded {
        let current = now
            .lines()
            .find_map(|l| l.split_once("  ").filter(|(_, f)| f.trim() == file))
            .map(|(h, _)| h)
            .unwrap_or("?");
        assert_eq!(
            current, hash,
            "ebpf/{file} changed since ebpf/prebuilt/ was built: the prebuilt objects are stale; {REGEN}"
        );
    }
}

fn programs_and_maps(bytes: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    let obj = aya_obj::Object::parse(bytes).expect("an eBPF ELF object");
    (
        obj.programs.keys().cloned().collect(),
        obj.maps.keys().cloned().collect(),
    )
}

#[test]
fn prebuilt_objects_hold_the_programs_and_maps_of_the_build() {
    let prebuilt = aya::include_bytes_aligned!("../prebuilt/mosn_capture.bpf.o");
    let (progs, maps) = programs_and_maps(prebuilt);
    assert_eq!(
        progs,
        [
            "mosn_connect4",
            "mosn_connect6",
            "mosn_getsockopt",
            "mosn_sk_msg",
            "mosn_sockops"
        ]
        .map(String::from)
        .into(),
    );
    assert!(
        maps.contains("orig_by_peer") && maps.contains("sock_hash"),
        "{maps:?}"
    );
    let built = programs_and_maps(mosn_ebpf::OBJECT);
    assert_eq!(
        (progs, maps),
        built,
        "the prebuilt object differs from this build's ({}); {REGEN}",
        mosn_ebpf::OBJECT_ORIGIN
    );
    eprintln!("eBPF object of this build: {}", mosn_ebpf::OBJECT_ORIGIN);
}

#[test]
fn prebuilt_inbound_object_holds_the_programs_and_maps_of_the_build() {
    let prebuilt = aya::include_bytes_aligned!("../prebuilt/mosn_inbound.bpf.o");
    let (progs, maps) = programs_and_maps(prebuilt);
    assert_eq!(progs, ["mosn_sk_lookup"].map(String::from).into());
    assert!(
        maps.contains("in_listener") && maps.contains("in_ports"),
        "{maps:?}"
    );
    let built = programs_and_maps(mosn_ebpf::INBOUND_OBJECT);
    assert_eq!(
        (progs, maps),
        built,
        "the prebuilt inbound object differs from this build's ({}); {REGEN}",
        mosn_ebpf::OBJECT_ORIGIN
    );
}
