//! mosn-ebpf: transparent capture of an application's TCP connections into the proxy:
//! outbound with eBPF on the application's cgroup v2, inbound with an `sk_lookup` eBPF
//! program on the proxy's network namespace (iptables `REDIRECT` as the fallback for both).
//!
//! ```text
//!  Capture::install(&CaptureSpec) -> CaptureGuard (drop = uninstall)
//!    |
//!    +-- ebpf.rs      aya (=0.14.0) loads src/bpf/mosn_capture.bpf.c (clang, or the prebuilt
//!    |                object), fills the maps from the spec, attaches:
//!    |                  connect4/connect6     -> app cgroup
//!    |                  sockops, getsockopt   -> app cgroup + proxy cgroup
//!    |                  sk_msg                -> sock_hash          (when sockmap is on)
//!    +-- inbound.rs   aya loads src/bpf/mosn_inbound.bpf.c, puts the inbound listener in its
//!    |                sockmap, attaches sk_lookup -> the proxy's network namespace
//!    +-- iptables.rs  nat OUTPUT/PREROUTING -> <INSTANCE>_OUTPUT/_INBOUND REDIRECT chains,
//!    |                in one network namespace
//!    +-- spec.rs      CaptureSpec, Destination ("10.0.0.0/8", "127.0.0.2:80", "[::1]:443")
//!    +-- system.rs    capabilities, cgroup v2 and bpffs checks (the syscall-ish seam)
//!    +-- pod.rs       map key/value structs mirrored from mosn_capture.h (the only unsafe)
//! ```
//!
//! Either way the proxy learns the original destination of an outbound connection with the
//! same call: `getsockopt(SOL_IP, SO_ORIGINAL_DST)` (or `SOL_IPV6, IP6T_SO_ORIGINAL_DST`) on
//! the accepted socket: under iptables conntrack answers, under eBPF the `cgroup/getsockopt`
//! program does. An inbound connection captured by `sk_lookup` is not rewritten at all: the
//! accepted socket's local address is the original destination (it differs from the
//! listener's own address, which is how the proxy tells it was steered).
//!
//! Nothing outlives the process: the cgroup attachments are bpf links held by file
//! descriptors, so the kernel detaches them when mosn exits, crashes or is killed. Pinned
//! maps (optional) and iptables chains do outlive a crash; the next install of the same
//! instance removes them first.

#![deny(unsafe_code)]

mod ebpf;
mod error;
mod inbound;
mod iptables;
#[allow(unsafe_code)]
mod pod;
mod spec;
mod system;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use error::CaptureError;
pub use inbound::InboundStats;
pub use spec::{
    CaptureSpec, Destination, DestinationError, Mode, OnFailure, DEFAULT_INBOUND_PORT,
    DEFAULT_OUTBOUND_PORT,
};

/// The compiled eBPF object (`mosn_capture.bpf.o`), built by `build.rs` with clang or copied
/// from `ebpf/prebuilt/` when clang is absent.
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mosn_capture.bpf.o"));

/// The compiled inbound eBPF object (`mosn_inbound.bpf.o`: the `sk_lookup` program).
pub static INBOUND_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mosn_inbound.bpf.o"));

/// How [`OBJECT`] and [`INBOUND_OBJECT`] were produced: `clang` or `prebuilt`.
pub const OBJECT_ORIGIN: &str = env!("MOSN_EBPF_OBJECT_ORIGIN");

/// The same programs built with `-DMOSN_VERIFIER_PITFALL`: the getsockopt program stores
/// `optlen` and `retval` without `volatile`, clang merges the two stores into one 8-byte
/// store, and the verifier refuses it. Only for testing the refused-program error path.
#[doc(hidden)]
pub static VERIFIER_PITFALL_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mosn_capture_pitfall.bpf.o"));

/// Which backend a guard holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Nothing is captured (`mode: none`).
    None,
    /// The eBPF programs are attached.
    Ebpf,
    /// The iptables chains are installed.
    Iptables,
}

/// Counters kept by the eBPF programs (the `stats` map).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// IPv4 connects redirected to the proxy.
    pub connect4_redirects: u64,
    /// IPv6 (and IPv4-mapped IPv6) connects redirected to the proxy.
    pub connect6_redirects: u64,
    /// Connects to captured destinations skipped as the proxy's own (uid or mark).
    pub proxy_own_skipped: u64,
    /// Redirected connections that reached ESTABLISHED (their original destination is then
    /// known by client address).
    pub established: u64,
    /// Sockets added to the sockhash.
    pub sockhash_adds: u64,
    /// Messages `sk_msg` passed straight to the peer socket.
    pub msg_redirects: u64,
    /// `SO_ORIGINAL_DST` answers given by the getsockopt program.
    pub original_dst_answers: u64,
    /// `SO_ORIGINAL_DST` asked on a socket with no record (not redirected by eBPF).
    pub original_dst_misses: u64,
    /// The inbound (`sk_lookup`) counters.
    pub inbound: InboundStats,
}

/// Installs a capture. See [`Capture::install`].
#[derive(Debug)]
pub struct Capture;

impl Capture {
    /// Installs the capture `spec` asks for and returns the guard that removes it.
    ///
    /// [`Mode::Ebpf`] that cannot be installed (missing capability, no cgroup v2 at the path,
    /// a program the kernel refuses, ...) falls back to iptables when `on_failure` is
    /// [`OnFailure::Fallback`] (the reason is kept in [`CaptureGuard::fallback_reason`] and
    /// logged), and is an error with [`OnFailure::Refuse`].
    ///
    /// With [`Mode::Ebpf`] and `inbound_ports`, use [`Capture::install_with_listener`]: the
    /// inbound capture needs the listener socket (without it, the eBPF install fails and the
    /// failure policy applies).
    pub fn install(spec: &CaptureSpec) -> Result<CaptureGuard, CaptureError> {
        Capture::install_objects(spec, OBJECT, INBOUND_OBJECT, None)
    }

    /// Like [`Capture::install`], with the proxy's inbound listening socket (bound to
    /// `inbound_port`, in the network namespace of `spec.netns` or of the calling thread):
    /// under eBPF, connections to `inbound_ports` are handed to it by `sk_lookup`. A dual-stack
    /// IPv6 listener takes IPv4 and IPv6 connections, an IPv4 one IPv4 only. The iptables
    /// backend does not use the socket (it redirects to `inbound_port`).
    pub fn install_with_listener(
        spec: &CaptureSpec,
        inbound_listener: Option<&std::net::TcpListener>,
    ) -> Result<CaptureGuard, CaptureError> {
        Capture::install_objects(spec, OBJECT, INBOUND_OBJECT, inbound_listener)
    }

    /// Like [`Capture::install`] with another build of the eBPF object (tests, experiments).
    pub fn install_with_object(
        spec: &CaptureSpec,
        object: &[u8],
    ) -> Result<CaptureGuard, CaptureError> {
        Capture::install_objects(spec, object, INBOUND_OBJECT, None)
    }

    fn install_objects(
        spec: &CaptureSpec,
        object: &[u8],
        inbound_object: &[u8],
        inbound_listener: Option<&std::net::TcpListener>,
    ) -> Result<CaptureGuard, CaptureError> {
        spec.check().map_err(CaptureError::Spec)?;
        let guard = |inner, fallback_reason| CaptureGuard {
            inner,
            fallback_reason,
        };
        match spec.mode {
            Mode::None => Ok(guard(Inner::None, None)),
            Mode::Iptables => Ok(guard(
                Inner::Iptables(iptables::IptablesCapture::install(spec)?),
                None,
            )),
            Mode::Ebpf => {
                match ebpf::EbpfCapture::install(spec, object, inbound_object, inbound_listener) {
                    Ok(c) => Ok(guard(Inner::Ebpf(Box::new(c)), None)),
                    Err(e) if spec.on_failure == OnFailure::Refuse => Err(e),
                    Err(e) => {
                        tracing::warn!(
                            "{e}; falling back to the iptables capture (on_failure: fallback)"
                        );
                        match iptables::IptablesCapture::install(spec) {
                            Ok(c) => Ok(guard(Inner::Iptables(c), Some(e))),
                            Err(ipt) => Err(CaptureError::FallbackFailed {
                                ebpf: Box::new(e),
                                iptables: Box::new(ipt),
                            }),
                        }
                    }
                }
            }
        }
    }

    /// Removes the pin directories `<pin_root>/<instance>-<pid>` left by instances that did
    /// not exit cleanly (install does this too). Returns what was removed.
    pub fn remove_stale_pins(pin_root: &Path, instance: &str) -> Vec<PathBuf> {
        ebpf::remove_stale_pins(pin_root, instance)
    }
}

#[derive(Debug)]
enum Inner {
    None,
    Ebpf(Box<ebpf::EbpfCapture>),
    Iptables(iptables::IptablesCapture),
}

/// An installed capture; dropping it removes the capture (errors are logged), as does
/// [`CaptureGuard::uninstall`] (errors are returned).
#[derive(Debug)]
pub struct CaptureGuard {
    inner: Inner,
    fallback_reason: Option<CaptureError>,
}

impl CaptureGuard {
    /// The backend in place.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::None => Backend::None,
            Inner::Ebpf(_) => Backend::Ebpf,
            Inner::Iptables(_) => Backend::Iptables,
        }
    }

    /// Why the eBPF capture was not used, when this guard holds the iptables fallback.
    pub fn fallback_reason(&self) -> Option<&CaptureError> {
        self.fallback_reason.as_ref()
    }

    /// The eBPF counters (`None` for other backends).
    pub fn stats(&self) -> Option<CaptureStats> {
        match &self.inner {
            Inner::Ebpf(c) => c.stats(),
            _ => None,
        }
    }

    /// The original destination of a redirected connection, by the client address the
    /// proxy's accepted socket sees as its peer (the same record the getsockopt program
    /// answers from). eBPF only.
    pub fn original_dst(&self, peer: SocketAddr) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Ebpf(c) => c.original_dst(peer),
            _ => None,
        }
    }

    /// Where the maps are pinned (eBPF with a pin root).
    pub fn pin_dir(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Ebpf(c) => c.pin_dir(),
            _ => None,
        }
    }

    /// `(program, cgroup directory)` of every attachment (eBPF; `sk_msg` is attached to
    /// `sock_hash`, `mosn_sk_lookup` to a network namespace file).
    pub fn attachments(&self) -> Vec<(String, PathBuf)> {
        match &self.inner {
            Inner::Ebpf(c) => c
                .attached()
                .iter()
                .map(|(p, cg)| (p.to_string(), cg.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `(binary, chain)` of every installed iptables chain.
    pub fn iptables_chains(&self) -> Vec<(String, String)> {
        match &self.inner {
            Inner::Iptables(c) => c
                .chains()
                .map(|(b, n)| (b.to_string(), n.to_string()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Kernel ids of the loaded programs and of their maps (eBPF), e.g. for
    /// `bpftool prog show id N`.
    pub fn kernel_ids(&self) -> (Vec<u32>, Vec<u32>) {
        match &self.inner {
            Inner::Ebpf(c) => c.kernel_ids(),
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// Removes the capture now and reports what could not be removed.
    pub fn uninstall(mut self) -> Result<(), CaptureError> {
        match std::mem::replace(&mut self.inner, Inner::None) {
            Inner::None => Ok(()),
            Inner::Ebpf(mut c) => c.uninstall(),
            Inner::Iptables(mut c) => c.uninstall(),
        }
    }
}
