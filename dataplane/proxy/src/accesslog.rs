//! Access logs, MOSN style: a text format with `%variable%` tokens, one line per request,
//! written by a background thread so workers never block on the disk.
//!
//! ```text
//!  accesslog.rs          LogRecord: what the proxy engine knows about one finished request
//!  accesslog/format.rs   AccessLogFormat: `%var%` text compiled once into tokens; render()
//!  accesslog/writer.rs   AccessLog: bounded queue -> writer thread -> file | stdout | stderr
//! ```
//!
//! The engine fills a [`LogRecord`] when a request ends and calls [`AccessLog::log`]; the line
//! is rendered on the calling worker into a fresh buffer and handed to the writer thread with
//! a non-blocking `try_send`. When the queue is full the line is dropped and counted, never
//! waited for.
//!
//! # Format
//!
//! Text is copied as is; `%name%` is replaced by a variable's value and `%%` by one `%`.
//! A value that is not known prints `-`. An empty format means MOSN's
//! [`DEFAULT_ACCESS_LOG_FORMAT`]. Variables (names as in MOSN's `pkg/types/variable.go`):
//!
//! | variable | value |
//! |---|---|
//! | `start_time` | [`LogRecord::start_time`] as `2006/01/02 15:04:05.000`, **UTC** (MOSN: local time) |
//! | `request_received_duration`, `response_received_duration`, `request_finished_duration`, `process_time_duration`, `duration` | the matching [`LogRecord`] duration in Go's `time.Duration` notation (`1.5ms`, `2m3.25s`) |
//! | `bytes_sent`, `bytes_received` | decimal byte counts |
//! | `protocol` | protocol name (`Http1`, `bolt`, ...) |
//! | `response_code` | HTTP status or RPC response code |
//! | `response_flag`, `response_flags` | [`ResponseFlags`] short codes `UF,URX` (`-` when none; MOSN prints `true`/`false`) |
//! | `upstream_local_address`, `downstream_local_address`, `downstream_remote_address` | `ip:port` |
//! | `upstream_host` | the upstream host's name when it has one (as MOSN), else its `ip:port` |
//! | `upstream_cluster`, `route_name`, `requested_server_name` (SNI), `upstream_transport_failure_reason` | as recorded |
//! | `request_header_<NAME>`, `response_header_<NAME>` | first value of that header; `NAME` is case-insensitive |
//! | `x-mosn-host`, `x-mosn-path`, `x-mosn-method`, `x-mosn-querystring` | authority, path, method, raw query string |
//! | `x-mosn-rpc-service`, `x-mosn-rpc-method` | RPC service and method (Bolt/Dubbo) |
//! | `request_path` | the path |
//! | `request_arg_<NAME>` | first query parameter `NAME`, percent-decoded (`+` is a space) |
//! | `cookie_<NAME>` | cookie `NAME` from the request's `Cookie` headers |
//! | `connection_id`, `stream_id` | decimal ids |
//!
//! A header, argument or cookie that is present but empty prints nothing (as MOSN); control
//! characters in any logged value are written as `\xNN`, so one request is always one line.
//!
//! # Differences from MOSN
//!
//! - `%%` is a literal `%` (MOSN rejects `%%` and only skips `\%`).
//! - `start_time` is UTC: there is no time-zone database here.
//! - `response_flag` prints the flag codes rather than MOSN's `true`/`false`.

mod format;
mod writer;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method};

use crate::flags::ResponseFlags;
pub use format::{AccessLogFormat, FormatError, DEFAULT_ACCESS_LOG_FORMAT};
pub use writer::{AccessLog, DEFAULT_QUEUE_CAPACITY, DROPPED_COUNTER};

/// What the proxy engine knows about one finished request; rendered by [`AccessLogFormat`].
///
/// Every field that may be unknown is an `Option` (or an empty map) and prints `-` when
/// absent. Build one with `LogRecord::new(start)` or `LogRecord::default()` (start time
/// `UNIX_EPOCH`) and struct-update syntax.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// When the first byte of the request arrived (`%start_time%`).
    pub start_time: SystemTime,
    /// From start until the request was sent upstream (`%request_received_duration%`).
    pub request_received_duration: Option<Duration>,
    /// From start until the upstream response arrived (`%response_received_duration%`).
    pub response_received_duration: Option<Duration>,
    /// From start until the response was fully written downstream
    /// (`%request_finished_duration%`).
    pub request_finished_duration: Option<Duration>,
    /// Time spent inside the proxy itself: request forwarding plus response forwarding
    /// (`%process_time_duration%`).
    pub process_time_duration: Option<Duration>,
    /// Total time of the request (`%duration%`).
    pub duration: Option<Duration>,
    /// Bytes written to the downstream (`%bytes_sent%`).
    pub bytes_sent: u64,
    /// Bytes read from the downstream (`%bytes_received%`).
    pub bytes_received: u64,
    /// Downstream protocol name, MOSN spelling: `Http1`, `Http2`, `bolt`, `dubbo`
    /// (`%protocol%`).
    pub protocol: Option<Arc<str>>,
    /// HTTP status or RPC response status (`%response_code%`).
    pub response_code: Option<u32>,
    /// Why the request ended the way it did (`%response_flag%`).
    pub response_flags: ResponseFlags,
    /// Local address of the upstream connection (`%upstream_local_address%`).
    pub upstream_local_address: Option<SocketAddr>,
    /// Listener-side address of the downstream connection (`%downstream_local_address%`).
    pub downstream_local_address: Option<SocketAddr>,
    /// Client address (`%downstream_remote_address%`).
    pub downstream_remote_address: Option<SocketAddr>,
    /// Address of the upstream host the request went to (`%upstream_host%` when the host has
    /// no name).
    pub upstream_host: Option<SocketAddr>,
    /// Configured name of that host (`%upstream_host%`; an empty name counts as none).
    pub upstream_hostname: Option<Arc<str>>,
    /// Cluster the route picked (`%upstream_cluster%`).
    pub upstream_cluster: Option<Arc<str>>,
    /// Why the upstream connection failed (`%upstream_transport_failure_reason%`).
    pub upstream_transport_failure_reason: Option<Arc<str>>,
    /// TLS SNI sent by the client (`%requested_server_name%`).
    pub requested_server_name: Option<Arc<str>>,
    /// Name of the matched route (`%route_name%`).
    pub route_name: Option<Arc<str>>,
    /// Downstream request headers (`%request_header_NAME%`, `%cookie_NAME%`); the engine
    /// only needs to keep those of [`AccessLogFormat::request_header_names`].
    pub request_headers: HeaderMap,
    /// Response headers sent downstream (`%response_header_NAME%`); see
    /// [`AccessLogFormat::response_header_names`].
    pub response_headers: HeaderMap,
    /// Request method (`%x-mosn-method%`).
    pub method: Option<Method>,
    /// Request path without the query, as routed on (`%x-mosn-path%`, `%request_path%`).
    pub path: Option<String>,
    /// Raw query string without the `?` (`%x-mosn-querystring%`, `%request_arg_NAME%`).
    pub query: Option<String>,
    /// Authority or `Host` header (`%x-mosn-host%`).
    pub authority: Option<String>,
    /// RPC service (interface) name (`%x-mosn-rpc-service%`).
    pub rpc_service: Option<Arc<str>>,
    /// RPC method name (`%x-mosn-rpc-method%`).
    pub rpc_method: Option<Arc<str>>,
    /// Downstream connection id (`%connection_id%`).
    pub connection_id: Option<u64>,
    /// Stream (request) id on that connection (`%stream_id%`).
    pub stream_id: Option<u64>,
}

impl LogRecord {
    /// An empty record for a request that started at `start_time`.
    pub fn new(start_time: SystemTime) -> Self {
        LogRecord {
            start_time,
            request_received_duration: None,
            response_received_duration: None,
            request_finished_duration: None,
            process_time_duration: None,
            duration: None,
            bytes_sent: 0,
            bytes_received: 0,
            protocol: None,
            response_code: None,
            response_flags: ResponseFlags::NONE,
            upstream_local_address: None,
            downstream_local_address: None,
            downstream_remote_address: None,
            upstream_host: None,
            upstream_hostname: None,
            upstream_cluster: None,
            upstream_transport_failure_reason: None,
            requested_server_name: None,
            route_name: None,
            request_headers: HeaderMap::new(),
            response_headers: HeaderMap::new(),
            method: None,
            path: None,
            query: None,
            authority: None,
            rpc_service: None,
            rpc_method: None,
            connection_id: None,
            stream_id: None,
        }
    }
}

impl Default for LogRecord {
    /// An empty record starting at `UNIX_EPOCH`.
    fn default() -> Self {
        LogRecord::new(SystemTime::UNIX_EPOCH)
    }
}
