//! Server stream connections: one downstream connection decoded by the HTTP/1 codec
//! (`h1server`) or the HTTP/2 one (hyper), each request handed to a [`Handler`] as a
//! `Request<Body>` and its answer encoded back. Keep-alive, pipelining, chunked framing,
//! `Upgrade`/`CONNECT`, HTTP/2 flow control and GOAWAY are the codecs'; limits come from
//! [`ServerLimits`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch};
use tokio_util::io::poll_write_buf;

use crate::detect::Rewind;
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

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_header_bytes: 8 * 1024,
            max_headers: 100,
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

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let h = self.0.clone();
        if req.method() == Method::CONNECT {
            if let Some(u) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
                req.extensions_mut().insert(OnUpgrade::http2(u));
            }
        }
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

/// Why a downstream connection ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP/1 codec refused a request (malformed, or over the head limits) and answered
    /// it with `status` itself; no handler saw it.
    #[error("request refused with {status}: {reason}")]
    Refused {
        status: StatusCode,
        reason: &'static str,
    },
    /// Reading or writing the connection failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The HTTP/2 codec failed.
    #[error("HTTP/2: {0}")]
    Http2(#[from] hyper::Error),
}

impl ServeError {
    /// The status the codec answered a refused request with.
    pub fn refused_with(&self) -> Option<StatusCode> {
        match self {
            ServeError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A downstream connection's switch of protocols, in the extensions of a request that may
/// switch (HTTP/1 `Upgrade` or `CONNECT`, HTTP/2 `CONNECT`): resolves to the connection's
/// byte stream once the handler's answer (101, or a 2xx to `CONNECT`) went out, or fails when
/// the answer did not switch.
///
/// Request extensions must be `Clone + Send + Sync`: clones share the one switch, and the
/// first to poll it takes the connection.
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<Switch>>>);

enum Switch {
    Http1(oneshot::Receiver<Upgraded>),
    Http2(hyper::upgrade::OnUpgrade),
}

impl OnUpgrade {
    pub(crate) fn http1(rx: oneshot::Receiver<Upgraded>) -> Self {
        OnUpgrade(Arc::new(Mutex::new(Some(Switch::Http1(rx)))))
    }

    fn http2(u: hyper::upgrade::OnUpgrade) -> Self {
        OnUpgrade(Arc::new(Mutex::new(Some(Switch::Http2(u)))))
    }
}

impl std::fmt::Debug for OnUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnUpgrade")
    }
}

impl Future for OnUpgrade {
    type Output = io::Result<Upgraded>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let r = match slot.as_mut() {
            None => Err(io::Error::other("the protocol switch was taken already")),
            Some(Switch::Http1(rx)) => std::task::ready!(Pin::new(rx).poll(cx))
                .map_err(|_| io::Error::other("the connection did not switch protocols")),
            Some(Switch::Http2(u)) => std::task::ready!(Pin::new(u).poll(cx))
                .map(|u| Upgraded::new(TokioIo::new(u), Bytes::new()))
                .map_err(io::Error::other),
        };
        *slot = None;
        Poll::Ready(r)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A downstream connection after a protocol switch (bytes the client sent after its request
/// come first).
pub struct Upgraded(Rewind<Box<dyn Io>>);

impl Upgraded {
    pub(crate) fn new<C: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        io: C,
        read: Bytes,
    ) -> Self {
        Upgraded(Rewind::new(read, Box::new(io)))
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The connection must be `Send` because the HTTP/2 codec hands `CONNECT` streams over as
/// `Send` objects; kernel sockets are.
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
) -> Result<(), ServeError>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            if *drain.borrow() {
                conn.as_mut().graceful_shutdown();
                return conn.await.map_err(Into::into);
            }
            tokio::select! {
                r = conn.as_mut() => r.map_err(Into::into),
                _ = drain.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await.map_err(Into::into)
                }
            }
        }};
    }
    match proto {
        StreamProtocol::Http1 => crate::h1server::serve(io, limits, handler, drain).await,
        StreamProtocol::Http2 => {
            let mut b = hyper::server::conn::http2::Builder::new(LocalExec);
            b.timer(TokioTimer::new())
                .max_concurrent_streams(limits.h2_max_concurrent_streams)
                .max_header_list_size(limits.h2_max_header_list)
                .initial_stream_window_size(limits.h2_stream_window)
                .initial_connection_window_size(limits.h2_conn_window)
                .keep_alive_interval(Some(limits.idle_timeout / 3))
                .keep_alive_timeout(Duration::from_secs(20));
            let svc = Svc(handler);
            drive!(b.serve_connection(TokioIo::new(Coalesce::new(io)), svc))
        }
        other => {
            // RPC protocols are served by `xprotocol::server`; callers dispatch on family().
            tracing::warn!(protocol = other.name(), "not an HTTP protocol; closing");
            Ok(())
        }
    }
}

/// Write coalescing for HTTP/2 server connections: what the codec writes during one pass of the
/// connection's task goes out in one write at the start of its next pass.
///
/// h2 flushes after every DATA frame of 256 bytes or more (it writes such payloads by
/// reference and takes no next frame until they are out), so a connection whose responses come
/// back from upstreams one by one made one `writev` per response. Here the first flush of a
/// pass only wakes the task again (it runs after the other tasks that are ready, which may add
/// more responses); the bytes are written when the task next reads (h2 reads first on every
/// pass), on shutdown, or at once past [`Coalesce::LIMIT`].
pub(crate) struct Coalesce<C> {
    io: C,
    /// Bytes held back (written ones are advanced past).
    out: BytesMut,
    /// A flush was put off in this pass (and the task woken for the next one).
    deferred: bool,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Coalesce<C> {
    /// Most bytes held back; a larger write goes straight through.
    const LIMIT: usize = 64 * 1024;

    pub(crate) fn new(io: C) -> Self {
        Coalesce {
            io,
            out: BytesMut::new(),
            deferred: false,
        }
    }

    fn held(&self) -> usize {
        self.out.len()
    }

    /// Writes what is held back.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = std::task::ready!(poll_write_buf(Pin::new(&mut self.io), cx, &mut self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesce<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A new pass: out with what the last one wrote (a full socket keeps it for later and
        // wakes the task when there is room).
        if this.held() > 0 {
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        this.deferred = false;
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Coalesce<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held() + data.len() > Self::LIMIT {
            std::task::ready!(this.poll_drain(cx))?;
            if data.len() >= Self::LIMIT {
                return Pin::new(&mut this.io).poll_write(cx, data);
            }
        }
        this.out.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.held() + total > Self::LIMIT {
            std::task::ready!(this.poll_drain(cx))?;
            if total >= Self::LIMIT {
                return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            this.out.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held() == 0 {
            return Pin::new(&mut this.io).poll_flush(cx);
        }
        if !this.deferred {
            this.deferred = true;
            cx.waker().wake_by_ref();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes written and flushed in one pass stay held until the next pass reads (or the
    /// connection shuts down), then go out together and in order.
    #[tokio::test]
    async fn coalesce_holds_a_pass_and_writes_it_at_the_next_read() {
        let (a, mut peer) = tokio::net::UnixStream::pair().unwrap();
        let mut c = Coalesce::new(a);
        let mut got = [0u8; 64];
        c.write_all(b"HEADERS").await.unwrap();
        c.flush().await.unwrap();
        c.write_all(b"DATA").await.unwrap();
        c.flush().await.unwrap();
        assert!(
            matches!(peer.try_read(&mut got), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "a flush in the same pass wrote"
        );
        // The next pass starts with a read (nothing to read: pending), which writes.
        let mut byte = [0u8; 1];
        let pass = tokio::time::timeout(Duration::from_millis(50), c.read(&mut byte)).await;
        assert!(pass.is_err(), "nothing was sent to read");
        let n = peer.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"HEADERSDATA");
        // Shutdown writes what is held.
        c.write_all(b"GOAWAY").await.unwrap();
        c.flush().await.unwrap();
        c.shutdown().await.unwrap();
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"GOAWAY");
        // Past the limit a write goes out at once.
        let (a, mut peer) = tokio::net::UnixStream::pair().unwrap();
        let mut c = Coalesce::new(a);
        let big = vec![7u8; Coalesce::<tokio::net::UnixStream>::LIMIT + 1];
        c.write_all(&big).await.unwrap();
        let mut seen = vec![0u8; big.len()];
        peer.read_exact(&mut seen).await.unwrap();
        assert_eq!(seen, big);
    }
}
