//! mosn-wire: the PROTOCOL layer's pure codecs. No IO, no tokio, no `unsafe`; every decoder
//! takes untrusted bytes and answers "need more", "here is a frame" or "malformed", never a
//! panic.
//!
//! Layer map (bottom to top):
//!
//! | module | what it is |
//! |---|---|
//! | [`hessian2`] | enough Hessian 2.0 to read Dubbo request bodies: strings (chunked, UTF-16 counted), a skipper for every value kind (depth-limited), string maps; writers for strings, null and string maps |
//! | [`bolt`] | SOFARPC Bolt v1 (`0x01`) and v2 (`0x02`) frames: typed header views ([`bolt::Packet`]) over the bytes, the owned [`bolt::Frame`] with `decode`/`encode`, the ordered [`bolt::HeaderMap`], heartbeat / GoAway / local-reply builders, in-place request-id rewrite (with the v2 CRC32) |
//! | [`dubbo`] | Dubbo frames (magic `0xdabb`): typed view ([`dubbo::Packet`]), [`dubbo::Frame`], heartbeat reply, error reply, in-place request-id rewrite, and the hessian2 request body ([`dubbo::Invocation`]) |
//! | [`fuzz`] | the fuzz entry points shared by the cargo-fuzz targets (`/fuzz`) and the in-suite smoke run (`tests/fuzz_smoke.rs`) |
//!
//! Frame decoders share one contract: `decode(&mut BytesMut, max_frame)` returns `Ok(None)`
//! with the buffer untouched when more bytes are needed, `Ok(Some(frame))` after splitting the
//! frame's bytes off the front (the frame keeps them as `raw`, its parts are zero-copy slices of
//! them), and `Err` (buffer untouched, so a reply can still peek at the request id) when the
//! bytes can never become a valid frame: the caller closes the connection.
//!
//! Byte-exact formats: `shared/design/PROTOCOLS.md` §2.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]
#![warn(missing_docs)]

pub mod bolt;
pub mod dubbo;
pub mod fuzz;
pub mod hessian2;

mod cursor;

/// A codec error: the bytes can never become a valid frame (or a frame cannot be encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes violate the protocol's format.
    #[error("{protocol}: malformed frame: {what}")]
    Malformed {
        /// `"bolt"`, `"dubbo"` or `"hessian2"`.
        protocol: &'static str,
        /// What is wrong, for logs.
        what: &'static str,
    },
    /// A frame (or a part of one) is larger than allowed.
    #[error("{protocol}: frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// `"bolt"`, `"dubbo"` or `"hessian2"`.
        protocol: &'static str,
        /// The length found (saturated at `usize::MAX`).
        len: usize,
        /// The limit it broke.
        limit: usize,
    },
}
