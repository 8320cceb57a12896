//! mosn-stream: the STREAM layer of mosn-rs.
//!
//! ```text
//!  detect.rs   protocol detection on new connections (Auto, comma lists) + byte replay
//!  server.rs   server stream connections: HTTP/1 and HTTP/2 codecs -> Handler per request
//!  h1server.rs the HTTP/1 server codec, one task per connection running its handlers in place
//!  pool.rs     client stream connections and per-worker upstream pools (ping-pong, multiplex)
//!  h1client.rs the HTTP/1 client codec, driven by the proxied request's own task
//!  body.rs     the streamed body type shared by every protocol
//!  xprotocol   the RPC engine (Bolt v1/v2, Dubbo): server and client connections, pools,
//!              heartbeats, request-id remapping, conversion to and from the common model
//! ```
//!
//! Messages between layers are `http::Request<Body>` / `http::Response<Body>`: the common
//! message model (head, streamed body, trailers; protocol-specific fields ride in extensions),
//! so N protocols need N codecs to and from it, not N x (N-1) converters. The codecs
//! themselves are hyper's (HTTP/2, upstream upgrades), httparse's under `h1server` and
//! `h1client` (HTTP/1 both ways) and mosn-wire's (Bolt, Dubbo); this crate owns
//! connections, pooling and detection. Nothing is `Send`: everything lives on one worker's event loop.
#![forbid(unsafe_code)]

pub mod body;
pub mod detect;
pub mod h1client;
mod h1server;
pub mod pool;
pub mod server;
pub mod xprotocol;

pub use body::{Body, BoxError};

/// Protocols the stream layer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamProtocol {
    /// HTTP/1.1 (and 1.0).
    Http1,
    /// HTTP/2 (h2c prior knowledge; h2 over TLS with ALPN).
    Http2,
    /// SOFARPC Bolt: v1 frames are built for plain peers; v1 and v2 are both accepted.
    Bolt,
    /// SOFARPC Bolt v2: v2 frames are built for plain peers; v1 and v2 are both accepted.
    BoltV2,
    /// Dubbo (hessian2).
    Dubbo,
}

impl StreamProtocol {
    /// MOSN's name for the protocol.
    pub fn name(self) -> &'static str {
        match self {
            StreamProtocol::Http1 => "Http1",
            StreamProtocol::Http2 => "Http2",
            StreamProtocol::Bolt => "bolt",
            StreamProtocol::BoltV2 => "boltv2",
            StreamProtocol::Dubbo => "dubbo",
        }
    }

    /// The RPC codec family, `None` for HTTP.
    pub fn family(self) -> Option<xprotocol::Family> {
        match self {
            StreamProtocol::Http1 | StreamProtocol::Http2 => None,
            StreamProtocol::Bolt | StreamProtocol::BoltV2 => Some(xprotocol::Family::Bolt),
            StreamProtocol::Dubbo => Some(xprotocol::Family::Dubbo),
        }
    }

    /// True for HTTP/1 and HTTP/2.
    pub fn is_http(self) -> bool {
        self.family().is_none()
    }
}

/// Runs hyper's background tasks (HTTP/2 streams and connections) on the current worker's
/// `LocalSet`, so they may hold `!Send` state.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
