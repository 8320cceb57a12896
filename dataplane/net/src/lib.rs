//! mosn-net: the NET/IO layer of mosn-rs.
//!
//! ```text
//!  proxy (tcp_proxy, later the L7 proxy)      <- sees only `Transport`/`Connection`
//!  ─────────────────────────────────────────
//!  transport seam   transport.rs: Transport, Listener, Connection, Accepted
//!  backends         kernel.rs     tokio + socket2 sockets (SO_REUSEPORT, SO_ORIGINAL_DST)
//!                   userspace.rs  smoltcp Interface over any phy::Device (loopback, TAP, DPDK later)
//!  data movement    pipe.rs       bidirectional copy with buffer limits, back-pressure, half-close
//!  classification   inspector.rs  TLS inspector: ClientHello (SNI, ALPN) or plaintext, bytes replayed
//! ```
//!
//! Depends on nothing of mosn-rs: lower layers take small parameter structs, not the config.
#![forbid(unsafe_code)]

pub mod inspector;
pub mod kernel;
pub mod pipe;
pub mod transport;
pub mod userspace;

pub use transport::{Accepted, Connection, ListenSpec, Listener, Transport};
