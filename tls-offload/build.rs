//! Builds the test accelerator ENGINE (engine/test_engine.c) as a shared object when the
//! `openssl` feature is on, and tells the crate where it is (`MOSN_TEST_ENGINE_PATH`, read by
//! `mosn_tls_offload::openssl::TEST_ENGINE_PATH`). The default build compiles nothing here.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "openssl")]
    engine::build();
}

#[cfg(feature = "openssl")]
mod engine {
    use std::path::PathBuf;
    use std::process::Command;

    const SOURCE: &str = "engine/test_engine.c";

    pub fn build() {
        println!("cargo:rerun-if-changed={SOURCE}");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
        let mut cc = cc::Build::new();
        cc.file(SOURCE)
            .pic(true)
            .warnings(true)
            .extra_warnings(true)
            // OpenSSL 3 marks the ENGINE and RSA/EC_KEY method APIs deprecated
            .define("OPENSSL_SUPPRESS_DEPRECATED", None)
            .flag_if_supported("-Wno-unused-parameter");
        // openssl-sys found the headers (pkg-config); it exports their folder as DEP_OPENSSL_INCLUDE
        if let Ok(include) = std::env::var("DEP_OPENSSL_INCLUDE") {
            cc.include(include);
        }
        // cc makes static archives only: compile to objects and link the shared object here
        let objects = cc.compile_intermediates();
        let so = out.join("libmosn_test_engine.so");
        let mut link = cc.get_compiler().to_command();
        link.arg("-shared").arg("-o").arg(&so).args(&objects);
        link.args(["-lcrypto", "-lpthread"]);
        run(link);
        println!("cargo:rustc-env=MOSN_TEST_ENGINE_PATH={}", so.display());
    }

    fn run(mut cmd: Command) {
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(status.success(), "{cmd:?} failed: {status}");
    }
}
