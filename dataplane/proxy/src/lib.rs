//! mosn-proxy: the PROXY layer of mosn-rs.
//!
//! ```text
//!  tcp_proxy.rs   network filter `tcp_proxy`: route by CIDR -> cluster -> host -> pipe
//!  cluster.rs     cluster manager: SIMPLE, STRICT_DNS, ORIGINAL_DST; snapshots swapped atomically
//!  lb.rs          load balancers: random, round robin, weighted RR, least request (P2C),
//!                 least connection, request RR, maglev, original destination
//!  host.rs        hosts: address, weight, metadata, health, counters
//! ```
//!
//! Depends on mosn-net (transports) and mosn-metrics; never on the config crate: the server
//! turns config into the small spec structs defined here.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod flags;
pub mod host;
pub mod lb;
pub mod tcp_proxy;
