//! mosn-proxy: the PROXY layer of mosn-rs.
//!
//! ```text
//!  tcp_proxy.rs   network filter `tcp_proxy`: route by CIDR -> cluster -> host -> pipe
//!  cluster.rs     cluster manager: SIMPLE, STRICT_DNS, ORIGINAL_DST; snapshots swapped atomically
//!  lb.rs          load balancers: random, round robin, weighted RR, least request (P2C),
//!                 least connection, request RR, maglev, original destination
//!  host.rs        hosts: address, weight, metadata, health, counters
//!  filter.rs      L7 stream filters: phases, chain, registry; fault, payload_limit, ip_access, ...
//!  router.rs      L7 router: virtual host by authority, first matching route, actions
//!  http.rs        network filter `proxy` (HTTP/1, HTTP/2, gRPC): per-request flow, conversion
//!  accesslog.rs   access logs: MOSN `%variable%` formats, async file/stdout writer
//! ```
//!
//! Depends on mosn-stream (codecs, pools), mosn-net (transports) and mosn-metrics. The server
//! turns config into the small spec structs defined here; the router and the stream filters
//! compile their own config sections (route tables and filter configs are too rich to copy).
#![forbid(unsafe_code)]

pub mod accesslog;
pub mod cluster;
pub mod filter;
pub mod flags;
pub mod host;
pub mod http;
pub mod lb;
pub mod router;
pub mod tcp_proxy;
