//! The golden fixtures are the cargo-fuzz seed corpus (`/fuzz/corpus/<target>/<name>`). This
//! test checks the corpus matches them; `MOSN_WRITE_FUZZ_CORPUS=1 cargo test -p mosn-wire
//! --test fuzz_corpus` (re)writes it.

mod common;

use std::path::PathBuf;

#[test]
fn fuzz_corpus_matches_fixtures() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let write = std::env::var_os("MOSN_WRITE_FUZZ_CORPUS").is_some();
    if !write && !root.is_dir() {
        eprintln!("no {}: nothing to check", root.display());
        return;
    }
    let targets = [
        ("bolt", common::bolt_all()),
        ("dubbo", common::dubbo_all()),
        ("hessian2", common::hessian2_all()),
    ];
    for (target, seeds) in targets {
        let dir = root.join(target);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (name, bytes) in seeds {
            let path = dir.join(name);
            if write {
                std::fs::write(&path, &bytes).unwrap();
            }
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "{} differs from its fixture: rerun with MOSN_WRITE_FUZZ_CORPUS=1",
                path.display()
            );
        }
    }
}
