//! Build script of mosn-ffi. Does nothing unless the cargo feature `dpdk` is on, so that
//! `cargo build --workspace` needs no DPDK. With the feature (ACCELERATION.md §3):
//! 1. probes libdpdk >= 22.11 with pkg-config (and, after the shim, emits its `-lrte_*` link flags);
//! 2. compiles `csrc/shim.c` with the pkg-config cflags (`-march=corei7` is required:
//!    `rte_memcpy.h` does not compile without SSSE3);
//! 3. runs bindgen over `csrc/wrapper.h` with an allowlist into `$OUT_DIR/bindings.rs` (the
//!    allowlist keeps the packed/aligned ARP and GTP headers, which do not compile as Rust,
//!    out of the bindings).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The cfg keeps the optional build-dependencies out of a featureless build; the
    // variable check makes the "nothing without the feature" rule explicit.
    #[cfg(feature = "dpdk")]
    if std::env::var_os("CARGO_FEATURE_DPDK").is_some() {
        dpdk::build();
    }
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;
    use std::process::Command;

    /// The oldest DPDK whose ABI the bindings and the shim were written against.
    const MIN_VERSION: &str = "22.11";

    pub fn build() {
        for f in ["csrc/shim.c", "csrc/shim.h", "csrc/wrapper.h"] {
            println!("cargo:rerun-if-changed={f}");
        }
        // Link flags are emitted after the shim's, so that the linker sees the static shim
        // before the shared libraries whose symbols it needs.
        let lib = match pkg_config::Config::new()
            .atleast_version(MIN_VERSION)
            .cargo_metadata(false)
            .probe("libdpdk")
        {
            Ok(lib) => lib,
            Err(e) => fail(&format!(
                "libdpdk >= {MIN_VERSION} not found by pkg-config (Debian: apt-get install \
                 dpdk-dev libdpdk-dev): {e}"
            )),
        };
        let cflags = pkg_config_cflags();
        println!("cargo:rustc-env=MOSN_FFI_DPDK_VERSION={}", lib.version);

        let mut shim = cc::Build::new();
        shim.file("csrc/shim.c").opt_level(3).warnings(false);
        for flag in &cflags {
            shim.flag(flag);
        }
        shim.compile("mosndpdkshim");
        if let Err(e) = pkg_config::Config::new()
            .atleast_version(MIN_VERSION)
            .probe("libdpdk")
        {
            fail(&format!("pkg-config libdpdk: {e}"));
        }

        let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
        let bindings = bindgen::Builder::default()
            .header("csrc/wrapper.h")
            .clang_args(&cflags)
            .allowlist_function(
                "rte_eal_init|rte_eal_cleanup|rte_eth_.*|rte_pktmbuf_pool_create|\
                 rte_pktmbuf_free_bulk|rte_mempool_free|rte_mempool_avail_count|\
                 rte_socket_id|rte_lcore_id|rte_strerror|shim_.*",
            )
            .allowlist_type("rte_eth_conf|rte_eth_dev_info|rte_ether_addr|rte_mbuf|rte_mempool|rte_eth_stats")
            .allowlist_var("RTE_MBUF_DEFAULT_.*|RTE_PKTMBUF_HEADROOM|RTE_ETHER_.*|RTE_MAX_ETHPORTS|RTE_ETH_NAME_MAX_LEN|RTE_ETH_DEV_NO_OWNER")
            .opaque_type("rte_arp_ipv4|rte_arp_hdr|rte_l2tpv2_combined_msg_hdr|rte_gtp_psc_generic_hdr")
            .blocklist_type("max_align_t")
            .derive_default(true)
            .layout_tests(false)
            .generate_comments(false)
            .generate();
        let bindings = match bindings {
            Ok(b) => b,
            Err(e) => fail(&format!("bindgen over csrc/wrapper.h failed: {e}")),
        };
        if let Err(e) = bindings.write_to_file(out.join("bindings.rs")) {
            fail(&format!("cannot write bindings.rs: {e}"));
        }
    }

    /// `pkg-config --cflags libdpdk`, split on whitespace (the pkg-config crate keeps only
    /// the include paths and defines; the shim also needs `-include rte_config.h` and `-march`).
    fn pkg_config_cflags() -> Vec<String> {
        let tool = std::env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
        let out = match Command::new(&tool).args(["--cflags", "libdpdk"]).output() {
            Ok(out) if out.status.success() => out,
            Ok(out) => fail(&format!(
                "{tool} --cflags libdpdk failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => fail(&format!("cannot run {tool}: {e}")),
        };
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    fn fail(msg: &str) -> ! {
        eprintln!("mosn-ffi (feature dpdk): {msg}");
        std::process::exit(1);
    }
}
