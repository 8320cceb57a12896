//! mosn-net: the NET/IO layer of mosn-rs.
//!
//! ```text
//!  proxy (tcp_proxy, later the L7 proxy)      <- sees only `Transport`/`Connection`
//!  ─────────────────────────────────────────
//!  transport seam   transport.rs: Transport, Listener, Connection, Accepted
//!  backends         kernel.rs     tokio + socket2 sockets (SO_REUSEPORT, SO_ORIGINAL_DST)
//!                   userspace.rs  smoltcp Interface over any phy::Device (loopback, TAP, DPDK)
//!                   dpdk.rs       (feature `dpdk`) EAL, ports, DpdkDevice: a queue pair as a
//!                                 phy::Device; the only module with `unsafe` (it says why)
//!  data movement    pipe.rs       bidirectional copy with buffer limits, back-pressure, half-close
//!  classification   inspector.rs  TLS inspector: ClientHello (SNI, ALPN) or plaintext, bytes replayed
//! ```
//!
//! Depends on nothing of mosn-rs but the raw DPDK bindings (mosn-ffi, feature `dpdk`): lower
//! layers take small parameter structs, not the config.
// No unsafe code, except in the fenced DPDK device module (feature `dpdk`).
#![cfg_attr(not(feature = "dpdk"), forbid(unsafe_code))]
#![cfg_attr(feature = "dpdk", deny(unsafe_code))]

#[cfg(feature = "dpdk")]
pub mod dpdk;

pub mod inspector;
pub mod kernel;
pub mod pipe;
pub mod transport;
pub mod userspace;

pub use transport::{Accepted, Connection, ListenSpec, Listener, Transport};
