//! Server stream connections: one downstream connection decoded by the HTTP/1 or HTTP/2 codec
//! (hyper), each request handed to a [`Handler`] as a `Request<Body>` and its answer encoded
//! back. Keep-alive, pipelining, chunked framing, `Upgrade`/`CONNECT`, HTTP/2 flow control and
//! GOAWAY are the codec's; limits come from [`ServerLimits`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::{Body, LocalExec, StreamProtocol};

/// Codec limits and timeouts for downstream connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest HTTP/1 request head (line + headers), bytes; larger gets 431. At least 8 KiB
    /// (the codec's floor).
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP/1 request; more gets 431.
    pub max_headers: usize,
    /// Largest HTTP/2 header list (SETTINGS_MAX_HEADER_LIST_SIZE), bytes.
    pub h2_max_header_list: u32,
    /// Concurrent streams one HTTP/2 client may open.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 stream receive window, bytes.
    pub h2_stream_window: u32,
    /// HTTP/2 connection receive window, bytes.
    pub h2_conn_window: u32,
    /// An HTTP/1 connection must deliver each request head within this time (it also ends
    /// idle keep-alive connections).
    pub idle_timeout: Duration,
}

/// hyper's built-in HTTP/1 header count limit.
const HYPER_MAX_HEADERS: usize = 100;

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_header_bytes: 8 * 1024,
            max_headers: HYPER_MAX_HEADERS,
            h2_max_header_list: 16 * 1024,
            h2_max_concurrent_streams: 1000,
            h2_stream_window: 1 << 20,
            h2_conn_window: 4 << 20,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// What the proxy layer does with each decoded request of one connection.
pub trait Handler: 'static {
    /// Answers one request. Never fails: errors become error responses.
    fn handle(self: Rc<Self>, req: Request<Body>)
        -> impl Future<Output = Response<Body>> + 'static;
}

struct Svc<H>(Rc<H>);

impl<H: Handler> hyper::service::Service<Request<Incoming>> for Svc<H> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let h = self.0.clone();
        // A request without a body (most) gets the empty body, which boxes nothing.
        let req = req.map(|b| {
            if http_body::Body::is_end_stream(&b) {
                Body::empty()
            } else {
                Body::new(b)
            }
        });
        Box::pin(async move { Ok(h.handle(req).await) })
    }
}

/// The connection must be `Send` because the HTTP/1 codec hands upgraded (`Upgrade`,
/// `CONNECT`) connections over as `Send` objects; kernel sockets are.
///
/// Serves `io` with `proto` until the client closes, an error ends it, or `drain` turns true
/// (then: HTTP/1 finishes the request in flight and closes; HTTP/2 sends GOAWAY and finishes
/// open streams).
pub async fn serve<C, H>(
    io: C,
    proto: StreamProtocol,
    limits: &ServerLimits,
    handler: Rc<H>,
    mut drain: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let io = TokioIo::new(io);
    let svc = Svc(handler);
    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            if *drain.borrow() {
                conn.as_mut().graceful_shutdown();
                return conn.await;
            }
            tokio::select! {
                r = conn.as_mut() => r,
                _ = drain.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }};
    }
    match proto {
        StreamProtocol::Http1 => {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.idle_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(true);
            // Setting the count at all moves hyper's header array to the heap (one allocation
            // per request): only do it when it differs from hyper's own 100.
            if limits.max_headers != HYPER_MAX_HEADERS {
                b.max_headers(limits.max_headers);
            }
            drive!(b.serve_connection(io, svc).with_upgrades())
        }
        StreamProtocol::Http2 => {
            let mut b = hyper::server::conn::http2::Builder::new(LocalExec);
            b.timer(TokioTimer::new())
                .max_concurrent_streams(limits.h2_max_concurrent_streams)
                .max_header_list_size(limits.h2_max_header_list)
                .initial_stream_window_size(limits.h2_stream_window)
                .initial_connection_window_size(limits.h2_conn_window)
                .keep_alive_interval(Some(limits.idle_timeout / 3))
                .keep_alive_timeout(Duration::from_secs(20));
            drive!(b.serve_connection(io, svc))
        }
        other => {
            // RPC protocols are served by `xprotocol::server`; callers dispatch on family().
            tracing::warn!(protocol = other.name(), "not an HTTP protocol; closing");
            Ok(())
        }
    }
}
