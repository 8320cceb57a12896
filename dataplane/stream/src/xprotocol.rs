//! The RPC stream engine (MOSN's XProtocol): SOFARPC Bolt v1/v2 and Dubbo on one framework,
//! the codecs being `mosn-wire`'s.
//!
//! ```text
//!  xprotocol.rs          the frame type over both codecs, settings, MOSN's status tables
//!  xprotocol/convert.rs  frames <-> the common message model (Request/Response + Meta), and
//!                        Meta <-> `x-mosn-*` fields when the other side speaks HTTP
//!  xprotocol/server.rs   downstream connections: frames decoded, heartbeats answered here,
//!                        requests handed to the Handler concurrently, answers in any order
//!  xprotocol/client.rs   upstream connections: request ids generated per connection and
//!                        mapped back; multiplex / ping-pong / binding pools; heartbeats on
//!                        idle connections
//! ```
//!
//! A request decoded from a frame becomes an `http::Request<Body>` whose headers are the
//! frame's routing fields (the Bolt header map, Dubbo's service/method/version/attachments),
//! whose body is the frame's content, and whose extensions carry the decoded frame itself
//! ([`Meta`]): the same protocol upstream re-encodes from it (or forwards the raw bytes with
//! only the request id rewritten when nothing changed), another protocol converts from it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
/// The codecs (re-exported for the proxy's RPC fast path).
pub use mosn_wire::{bolt, dubbo};

pub mod client;
pub mod convert;
mod outq;
pub mod server;

/// The codec family of an RPC protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// SOFARPC Bolt (v1 and v2 share one codec; a connection may mix them).
    Bolt,
    /// Dubbo (hessian2).
    Dubbo,
}

impl Family {
    /// The protocol's name in `x-mosn-protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Bolt => "bolt",
            Family::Dubbo => "dubbo",
        }
    }
}

/// One decoded RPC frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A Bolt v1 or v2 frame.
    Bolt(bolt::Frame),
    /// A Dubbo frame.
    Dubbo(dubbo::Frame),
}

impl Frame {
    /// Splits one whole frame off the front of `buf` (`Ok(None)`: more bytes needed).
    pub fn decode(
        family: Family,
        buf: &mut BytesMut,
        max_frame: usize,
    ) -> Result<Option<Frame>, mosn_wire::Error> {
        Ok(match family {
            Family::Bolt => bolt::Frame::decode(buf, max_frame)?.map(Frame::Bolt),
            Family::Dubbo => dubbo::Frame::decode(buf, max_frame)?.map(Frame::Dubbo),
        })
    }

    /// The frame's codec family.
    pub fn family(&self) -> Family {
        match self {
            Frame::Bolt(_) => Family::Bolt,
            Frame::Dubbo(_) => Family::Dubbo,
        }
    }

    /// The request id (Bolt's u32 widened).
    pub fn request_id(&self) -> u64 {
        match self {
            Frame::Bolt(f) => u64::from(f.request_id),
            Frame::Dubbo(f) => f.request_id,
        }
    }

    /// Sets the request id in the fields (not in `raw`).
    pub fn set_request_id(&mut self, id: u64) {
        match self {
            Frame::Bolt(f) => f.request_id = id as u32,
            Frame::Dubbo(f) => f.request_id = id,
        }
    }

    /// The bytes the frame was decoded from (empty for a built frame).
    pub fn raw(&self) -> &Bytes {
        match self {
            Frame::Bolt(f) => &f.raw,
            Frame::Dubbo(f) => &f.raw,
        }
    }

    /// The payload: Bolt's content, Dubbo's body.
    pub fn payload(&self) -> &Bytes {
        match self {
            Frame::Bolt(f) => &f.content,
            Frame::Dubbo(f) => &f.body,
        }
    }

    /// A heartbeat (Bolt command 0, Dubbo event), either direction.
    pub fn is_heartbeat(&self) -> bool {
        match self {
            Frame::Bolt(f) => f.is_heartbeat(),
            Frame::Dubbo(f) => f.is_event(),
        }
    }

    /// A request (two-way or one-way), heartbeats excluded.
    pub fn is_request(&self) -> bool {
        match self {
            Frame::Bolt(f) => f.is_request() && !f.is_heartbeat(),
            Frame::Dubbo(f) => f.is_request() && !f.is_event(),
        }
    }

    /// A request that expects no answer.
    pub fn is_oneway(&self) -> bool {
        match self {
            Frame::Bolt(f) => f.is_oneway(),
            Frame::Dubbo(f) => f.is_request() && !f.is_two_way() && !f.is_event(),
        }
    }

    /// A response (heartbeat acks included).
    pub fn is_response(&self) -> bool {
        match self {
            Frame::Bolt(f) => f.is_response(),
            Frame::Dubbo(f) => !f.is_request(),
        }
    }

    /// Bolt's GoAway: the peer will close, send nothing new on this connection.
    pub fn is_goaway(&self) -> bool {
        matches!(self, Frame::Bolt(f) if f.is_goaway())
    }

    /// The frame's own timeout (Bolt requests; 0 or negative: none).
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            Frame::Bolt(f) if f.timeout > 0 && !f.is_heartbeat() => {
                Some(Duration::from_millis(f.timeout as u64))
            }
            _ => None,
        }
    }

    /// A copy with only what an answer to this frame needs (ids, versions, codec): no class,
    /// header map or payload.
    pub fn reply_template(&self) -> Frame {
        match self {
            Frame::Bolt(f) => Frame::Bolt(bolt::Frame {
                class: Bytes::new(),
                header: bolt::HeaderMap::new(),
                content: Bytes::new(),
                raw: Bytes::new(),
                ..*f
            }),
            Frame::Dubbo(f) => Frame::Dubbo(dubbo::Frame {
                body: Bytes::new(),
                raw: Bytes::new(),
                ..*f
            }),
        }
    }

    /// The answer to a heartbeat request.
    pub fn heartbeat_ack(&self) -> Frame {
        match self {
            Frame::Bolt(f) => Frame::Bolt(bolt::Frame::response_to(f, bolt::status::SUCCESS)),
            Frame::Dubbo(f) => Frame::Dubbo(dubbo::Frame::heartbeat_reply(f)),
        }
    }

    /// A heartbeat request of `family` (Bolt v1; Dubbo two-way event).
    pub fn heartbeat(family: Family, id: u64) -> Frame {
        match family {
            Family::Bolt => Frame::Bolt(bolt::Frame::heartbeat(bolt::PROTO_V1, id as u32)),
            Family::Dubbo => Frame::Dubbo(dubbo::Frame {
                flag: dubbo::FLAG_REQUEST
                    | dubbo::FLAG_TWO_WAY
                    | dubbo::FLAG_EVENT
                    | dubbo::HESSIAN2,
                status: 0,
                request_id: id,
                // Hessian null: the heartbeat's data.
                body: Bytes::from_static(b"N"),
                raw: Bytes::new(),
            }),
        }
    }

    /// Encodes the frame: its raw bytes with the id rewritten when `raw` is set and
    /// `use_raw`, else from the fields.
    pub fn encode(&self, use_raw: bool, dst: &mut BytesMut) -> Result<(), mosn_wire::Error> {
        if use_raw && !self.raw().is_empty() {
            let start = dst.len();
            dst.extend_from_slice(self.raw());
            let ok = match self {
                Frame::Bolt(f) => bolt::set_request_id(&mut dst[start..], f.request_id),
                Frame::Dubbo(f) => dubbo::set_request_id(&mut dst[start..], f.request_id),
            };
            if ok {
                return Ok(());
            }
            dst.truncate(start);
        }
        match self {
            Frame::Bolt(f) => f.encode(dst),
            Frame::Dubbo(f) => f.encode(dst),
        }
    }
}

/// Request/response extension: the RPC frame a message was decoded from (content included),
/// and the HTTP fields its routing entries became when it was converted.
#[derive(Debug, Clone)]
pub struct Meta {
    frame: Frame,
    /// The fields as the message's `HeaderMap` iterated right after conversion (so "nothing
    /// changed" is one pass, no parsing); `None`: not made (responses get fields only when
    /// an HTTP peer needs them, see `convert::render_http`).
    fields: Option<Vec<(http::HeaderName, http::HeaderValue)>>,
}

impl Meta {
    /// The frame.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }
}

/// Response extension set by the proxy on its own replies: MOSN's internal status code
/// (`mosn/api` xprotocol.go: 0 codec error, 403, 404 no route, 502 no healthy upstream,
/// 503 overflow, 504 timeout, 509 limit), which each protocol maps to its own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyCode(pub u16);

/// MOSN's internal codes.
pub mod code {
    /// Codec exception.
    pub const CODEC_EXCEPTION: u16 = 0;
    /// Deserialization exception.
    pub const DESERIAL_EXCEPTION: u16 = 3;
    /// Success.
    pub const SUCCESS: u16 = 200;
    /// Permission denied.
    pub const PERMISSION_DENIED: u16 = 403;
    /// No route.
    pub const ROUTER_UNAVAILABLE: u16 = 404;
    /// Internal error.
    pub const INTERNAL_ERROR: u16 = 500;
    /// No healthy upstream.
    pub const NO_HEALTH_UPSTREAM: u16 = 502;
    /// Upstream overflow.
    pub const UPSTREAM_OVERFLOW: u16 = 503;
    /// Timeout.
    pub const TIMEOUT: u16 = 504;
    /// Limit exceeded.
    pub const LIMIT_EXCEEDED: u16 = 509;
}

/// MOSN's Bolt `Mapping`: internal code -> Bolt response status.
pub fn bolt_status_for(code: u16) -> u16 {
    use bolt::status as s;
    match code {
        code::SUCCESS => s::SUCCESS,
        code::ROUTER_UNAVAILABLE | code::NO_HEALTH_UPSTREAM => s::NO_PROCESSOR,
        code::UPSTREAM_OVERFLOW => s::SERVER_THREADPOOL_BUSY,
        code::CODEC_EXCEPTION => s::CODEC_EXCEPTION,
        code::DESERIAL_EXCEPTION => s::SERVER_DESERIAL_EXCEPTION,
        code::TIMEOUT => s::TIMEOUT,
        code::PERMISSION_DENIED => s::SERVER_EXCEPTION,
        _ => s::UNKNOWN,
    }
}

/// Bolt response status -> HTTP status (MOSN's `mapping.go`).
pub fn http_status_for_bolt(status: u16) -> u16 {
    match status {
        bolt::status::SUCCESS => 200,
        bolt::status::SERVER_THREADPOOL_BUSY => 503,
        bolt::status::TIMEOUT => 504,
        bolt::status::CONNECTION_CLOSED => 502,
        _ => 500,
    }
}

/// MOSN's Dubbo hijack table: internal code -> Dubbo status.
pub fn dubbo_status_for(code: u16) -> u8 {
    use dubbo::status as s;
    match code {
        code::SUCCESS => s::OK,
        code::ROUTER_UNAVAILABLE | code::NO_HEALTH_UPSTREAM => s::SERVICE_NOT_FOUND,
        code::UPSTREAM_OVERFLOW | code::LIMIT_EXCEEDED => s::BAD_REQUEST,
        code::TIMEOUT => s::CLIENT_TIMEOUT,
        code::PERMISSION_DENIED => s::SERVER_ERROR,
        code::CODEC_EXCEPTION | code::DESERIAL_EXCEPTION => s::BAD_REQUEST,
        _ => s::SERVICE_ERROR,
    }
}

/// Dubbo status -> HTTP status.
pub fn http_status_for_dubbo(status: u8) -> u16 {
    use dubbo::status as s;
    match status {
        s::OK => 200,
        s::CLIENT_TIMEOUT | s::SERVER_TIMEOUT => 504,
        s::BAD_REQUEST => 400,
        s::SERVICE_NOT_FOUND => 404,
        s::SERVER_THREADPOOL_EXHAUSTED => 503,
        _ => 500,
    }
}

/// An HTTP status (an HTTP upstream's answer, or a reply without a [`ReplyCode`]) as one of
/// MOSN's internal codes.
pub fn code_for_http_status(status: u16) -> u16 {
    match status {
        200..=299 => code::SUCCESS,
        400 => code::CODEC_EXCEPTION,
        403 => code::PERMISSION_DENIED,
        404 => code::ROUTER_UNAVAILABLE,
        429 => code::LIMIT_EXCEEDED,
        502 => code::NO_HEALTH_UPSTREAM,
        503 => code::UPSTREAM_OVERFLOW,
        504 => code::TIMEOUT,
        _ => code::INTERNAL_ERROR,
    }
}

/// How upstream RPC connections are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Several requests in flight per connection (request ids), `conns_per_host`
    /// connections per host.
    Multiplex,
    /// One request at a time per connection; idle connections are reused.
    PingPong,
    /// One upstream connection per downstream connection and host.
    Binding,
}

/// Upstream RPC settings (part of `UpstreamSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcSettings {
    /// How connections are shared.
    pub pool_mode: PoolMode,
    /// Connections per host in multiplex mode.
    pub conns_per_host: usize,
    /// Heartbeat an upstream connection idle this long (`None`: never).
    pub heartbeat_interval: Option<Duration>,
    /// Close a connection after this many unanswered heartbeats in a row.
    pub heartbeat_max_failures: u32,
    /// Largest frame accepted from the upstream.
    pub max_frame: usize,
    /// The downstream connection (binding mode).
    pub binding_key: u64,
}

/// MOSN's keepalive tick.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// MOSN closes after this many failed heartbeats.
pub const DEFAULT_HEARTBEAT_FAILURES: u32 = 6;
/// Largest RPC frame by default.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

impl Default for RpcSettings {
    fn default() -> Self {
        RpcSettings {
            pool_mode: PoolMode::Multiplex,
            conns_per_host: 1,
            heartbeat_interval: Some(DEFAULT_HEARTBEAT_INTERVAL),
            heartbeat_max_failures: DEFAULT_HEARTBEAT_FAILURES,
            max_frame: DEFAULT_MAX_FRAME,
            binding_key: 0,
        }
    }
}

/// Downstream RPC settings (part of `ServerLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcServerSettings {
    /// Largest frame accepted from a client; larger is a codec error.
    pub max_frame: usize,
    /// Requests one connection may have in flight; more waits (reading pauses).
    pub max_inflight: usize,
    /// Send Bolt GoAway to clients on graceful close (`enable_bolt_goaway`).
    pub bolt_goaway: bool,
}

impl Default for RpcServerSettings {
    fn default() -> Self {
        RpcServerSettings {
            max_frame: DEFAULT_MAX_FRAME,
            max_inflight: 10_000,
            bolt_goaway: false,
        }
    }
}

/// Why an RPC exchange failed on an upstream connection.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The connection closed (or was closed) before the answer came.
    #[error("upstream connection closed")]
    Closed,
    /// The upstream sent bytes its protocol does not allow.
    #[error("upstream codec error: {0}")]
    Codec(#[source] mosn_wire::Error),
    /// The request could not be encoded for the upstream protocol.
    #[error("cannot encode the request for the upstream: {0}")]
    Encode(String),
    /// Reading the request body failed.
    #[error("request body failed: {0}")]
    Body(String),
    /// No answer came before the request's deadline ([`client::RpcConn::send_direct`]).
    #[error("no answer before the deadline")]
    Timeout,
}
