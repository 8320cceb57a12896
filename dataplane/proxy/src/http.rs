//! The `proxy` network filter for HTTP/1.1 and HTTP/2 (gRPC): a downstream connection is
//! detected (`Auto`, comma lists), decoded by the stream layer, and each request goes through
//! [`session::Session`]: stream filters, router, cluster, load balancer, upstream pool,
//! retries and timeouts, then back with response headers, stats and access logs.
//!
//! ```text
//!  http.rs          HttpProxySpec (one listener's settings), serve() for one connection
//!  http/session.rs  the per-request flow
//!  http/rpc.rs      the RPC fast path: frames routed and forwarded without an HTTP form
//!  http/convert.rs  head re-encoding between HTTP/1 and HTTP/2, hop-by-hop fields
//!  http/body.rs     body wrappers: byte counts, body limit, end-of-request hook
//!  http/tunnel.rs   Upgrade (WebSocket) and CONNECT tunnels
//!  http/stats.rs    request metrics with per-status counters and a latency histogram
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::HeaderName;
use mosn_metrics::Counter;
use mosn_net::{Accepted, Transport};
use mosn_stream::detect::{self, Rewind};
use mosn_stream::pool::Pools;
use mosn_stream::server::{self, ServerLimits};
use mosn_stream::xprotocol::{self, RpcServerSettings, RpcSettings};
use mosn_stream::StreamProtocol;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::accesslog::{AccessLog, LogRecord};
use crate::cluster::ClusterManager;
use crate::filter::{FilterChain, RouteOverrides};
use crate::flags::ResponseFlags;
use crate::router::{RouteHit, RouteTable};
use crate::tcp_proxy::ListenerCtx;

pub mod body;
pub mod convert;
mod rpc;
pub mod session;
pub mod stats;
pub mod tunnel;

pub use stats::RequestStats;

/// One listener's L7 proxy settings, immutable for a config snapshot.
#[derive(Debug)]
pub struct HttpProxySpec {
    /// Listener name.
    pub listener: Arc<str>,
    /// Protocols accepted downstream; more than one means detection.
    pub downstream: Vec<StreamProtocol>,
    /// The proxy filter's own `upstream_protocol` (legacy shape); `None`: route, transcoder,
    /// else the downstream's.
    pub upstream: Option<StreamProtocol>,
    /// The router table (`router_config_name`); `None`: every request gets 404.
    pub router: Option<Arc<RouteTable>>,
    /// Route `per_filter_config`s compiled by the filter chain, by route key.
    pub overrides: Arc<HashMap<usize, RouteOverrides>>,
    /// Stream filters.
    pub filters: Arc<FilterChain>,
    /// Access logs.
    pub access_logs: Vec<Arc<AccessLog>>,
    /// Request headers the access log formats print.
    pub log_request_headers: Vec<HeaderName>,
    /// Response headers the access log formats print.
    pub log_response_headers: Vec<HeaderName>,
    /// Codec limits.
    pub limits: ServerLimits,
    /// How long a new connection may take to show its protocol.
    pub detect_timeout: Duration,
    /// Upstream timeout when the route sets none (until the response head).
    pub default_timeout: Duration,
    /// Largest request body; larger gets 413.
    pub max_request_body: Option<u64>,
    /// Request bodies up to this size are buffered so retries can replay them.
    pub retry_buffer_limit: usize,
    /// Downstream request metrics of this listener.
    pub stats: Arc<RequestStats>,
    /// RPC (Bolt, Dubbo) downstream connections: frame limit, in-flight limit, GoAway.
    pub rpc_server: RpcServerSettings,
    /// RPC upstream pooling and heartbeats.
    pub rpc_upstream: RpcSettings,
}

impl HttpProxySpec {
    fn route_overrides(&self, hit: &RouteHit) -> Option<&RouteOverrides> {
        self.overrides.get(&hit.route().key())
    }
}

/// Maps a config protocol to a stream protocol (`None`: a protocol this layer does not
/// speak, or `Auto`). `SofaRpc` is Bolt (v1 and v2 are told apart frame by frame).
pub fn stream_protocol(p: mosn_config::Protocol) -> Option<StreamProtocol> {
    match p {
        mosn_config::Protocol::Http1 => Some(StreamProtocol::Http1),
        mosn_config::Protocol::Http2 => Some(StreamProtocol::Http2),
        mosn_config::Protocol::SofaRpc | mosn_config::Protocol::Bolt => Some(StreamProtocol::Bolt),
        mosn_config::Protocol::BoltV2 => Some(StreamProtocol::BoltV2),
        mosn_config::Protocol::Dubbo => Some(StreamProtocol::Dubbo),
        _ => None,
    }
}

/// Maps a protocol name set by a filter (`"Http2"`, `"bolt"`, case-insensitive) to a
/// stream protocol.
pub fn stream_protocol_by_name(name: &str) -> Option<StreamProtocol> {
    mosn_config::Protocol::parse(name).and_then(stream_protocol)
}

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

/// Serves one accepted downstream connection until it closes (or drains).
pub async fn serve<T: Transport, C>(
    pools: &Rc<Pools<T>>,
    spec: Arc<HttpProxySpec>,
    clusters: Arc<ClusterManager>,
    listener: &ListenerCtx,
    accepted: Accepted<C>,
    drain: watch::Receiver<bool>,
) where
    T::Conn: Send,
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        stream,
        peer,
        local,
        original_dst,
    } = accepted;
    let mut io = Metered {
        inner: stream,
        bytes_in: listener.bytes_in.clone(),
        bytes_out: listener.bytes_out.clone(),
    };
    let (proto, seen) = match spec.downstream.as_slice() {
        [only] => (*only, bytes::Bytes::new()),
        allowed => match detect::detect(&mut io, allowed, spec.detect_timeout).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(listener = %spec.listener, %peer, error = %e, "closing connection");
                return;
            }
        },
    };
    let connection_id = CONNECTION_IDS.fetch_add(1, Ordering::Relaxed);
    let session = Rc::new(session::Session {
        spec: spec.clone(),
        clusters,
        pools: pools.clone(),
        proto,
        peer,
        local,
        original_dst,
        connection_id,
        proto_name: Arc::from(proto.name()),
        next_stream: Cell::new(0),
    });
    let io = Rewind::new(seen, io);
    let started = SystemTime::now();
    if let Some(family) = proto.family() {
        if let Err(e) = xprotocol::server::serve(
            io,
            family,
            &spec.rpc_server,
            spec.limits.idle_timeout,
            session,
            drain,
        )
        .await
        {
            tracing::debug!(listener = %spec.listener, %peer, protocol = proto.name(), error = %e, "downstream connection ended with an error");
            if let xprotocol::server::ServeError::Codec(_) = e {
                spec.stats.total.inc();
                spec.stats.failed.inc();
                let mut log = LogRecord::new(started);
                log.protocol = Some(Arc::from(proto.name()));
                log.downstream_remote_address = Some(peer);
                log.downstream_local_address = Some(local);
                log.connection_id = Some(connection_id);
                log.response_flags = ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR;
                log.duration = started.elapsed().ok();
                for al in spec.access_logs.iter() {
                    al.log(&log);
                }
            }
        }
        return;
    }
    if let Err(e) = server::serve(io, proto, &spec.limits, session, drain).await {
        tracing::debug!(listener = %spec.listener, %peer, protocol = proto.name(), error = %e, "downstream connection ended with an error");
        if let Some(status) = e.refused_with().map(|s| s.as_u16()) {
            // The codec answered a request it could not parse (400, 431) itself: no handler
            // ran, so count and log it here.
            spec.stats.total.inc();
            spec.stats.failed.inc();
            spec.stats.count_status(status);
            let mut log = LogRecord::new(started);
            log.protocol = Some(Arc::from(proto.name()));
            log.downstream_remote_address = Some(peer);
            log.downstream_local_address = Some(local);
            log.connection_id = Some(connection_id);
            log.response_code = Some(u32::from(status));
            log.response_flags = ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR;
            log.duration = started.elapsed().ok();
            for al in spec.access_logs.iter() {
                al.log(&log);
            }
        }
    }
}

/// Counts the bytes of a downstream connection into the listener's counters.
struct Metered<C> {
    inner: C,
    bytes_in: Arc<Counter>,
    bytes_out: Arc<Counter>,
}

impl<C: AsyncRead + Unpin> AsyncRead for Metered<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bytes_in.add((buf.filled().len() - before) as u64);
        r
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Metered<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes_out.add(n as u64);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes_out.add(n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
