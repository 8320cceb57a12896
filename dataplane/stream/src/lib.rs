//! mosn-stream: the STREAM layer of mosn-rs.
//!
//! ```text
//!  (filled in below as the protocol engines land)
//! ```
#![forbid(unsafe_code)]
