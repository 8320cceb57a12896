//! The async driver of the OpenSSL backend.
//!
//! The SSL reads from and writes to memory ([`Buffers`], through the openssl crate's `SslStream`
//! BIO), and this driver moves bytes between those buffers and the tokio IO. That keeps the SSL
//! independent of the IO type, so an SSL whose async job is paused can outlive its connection.
//!
//! One step of the handshake calls `SSL_do_handshake`, sends what it produced, and then:
//! - `WANT_READ`: reads from the IO (EOF is handed to OpenSSL, which fails the handshake);
//! - `WANT_ASYNC` (9): the job paused on the device: registers the job's fds (owned by
//!   OpenSSL/the engine, borrowed here) in tokio's reactor (`AsyncFd`), waits until one is
//!   readable, deregisters them and retries the same call, on the same thread;
//! - `WANT_ASYNC_JOB` (10): no job available: yields to the runtime and retries.
//!
//! `tokio-openssl` cannot be used: it treats `WANT_ASYNC` as fatal. Async mode is switched off
//! once the handshake is done, so `SSL_read`/`SSL_write` never pause holding the caller's
//! buffer. A paused job must resume on the thread that started it: async mode is used only on
//! a current-thread runtime. An SSL must never be freed while its job is paused (the device
//! would complete into freed memory): [`Session`] parks such an SSL in a task of the same
//! runtime until the job's fd fires, resumes it to completion, and frees it then.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{ready, Context, Poll};
use std::thread::ThreadId;
use std::time::Duration;

use ::openssl::ssl::{ErrorCode, Ssl, SslRef, SslStream, SslVersion};
use mosn_config::TlsVersion;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::{bump, context, ffi, COUNTERS};
use crate::{Backend, SessionInfo};

/// Bytes read from the IO per call.
const READ_CHUNK: usize = 17 * 1024;
/// The most plaintext one `poll_write` encrypts (bounds the ciphertext buffered per write).
const MAX_WRITE: usize = 64 * 1024;

/// The SSL's memory BIO: ciphertext from the peer (`incoming[start..end]`) and to the peer
/// (`outgoing[sent..]`). Reading an empty buffer is `WouldBlock` (OpenSSL's WANT_READ) or, after
/// the peer's EOF, end of stream.
#[derive(Default)]
pub(crate) struct Buffers {
    incoming: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    outgoing: Vec<u8>,
    sent: usize,
}

impl Read for Buffers {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.incoming[self.start..self.end];
        if available.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.start += n;
        Ok(n)
    }
}

impl Write for Buffers {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buffers {
    /// Room for one more read at the end of `incoming`.
    fn read_space(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.incoming.len() - self.end < READ_CHUNK {
            self.incoming.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.incoming.is_empty() {
            // zeroed by the allocator (calloc), not byte by byte
            self.incoming = vec![0; READ_CHUNK];
        } else if self.incoming.len() - self.end < READ_CHUNK {
            self.incoming.resize(self.end + READ_CHUNK, 0);
        }
        &mut self.incoming[self.end..]
    }
}

// === the SSL, never freed mid-job ===

/// An SSL over [`Buffers`]. Dropping it while an async job is paused parks it instead of
/// freeing it.
pub(crate) struct Session {
    ssl: Option<SslStream<Buffers>>,
    /// The thread whose async jobs this SSL may have (async mode only): a paused job is resumed
    /// on it or never.
    thread: Option<ThreadId>,
}

impl Session {
    fn new(ssl: Ssl, async_thread: Option<ThreadId>) -> io::Result<Session> {
        let stream = SslStream::new(ssl, Buffers::default()).map_err(io::Error::other)?;
        Ok(Session {
            ssl: Some(stream),
            thread: async_thread,
        })
    }

    /// True on the thread that may resume this SSL's jobs.
    fn on_its_thread(&self) -> bool {
        self.thread.is_none_or(|t| t == std::thread::current().id())
    }

    fn get(&mut self) -> &mut SslStream<Buffers> {
        self.ssl.as_mut().expect("the SSL is only taken on drop")
    }

    fn ssl(&self) -> &SslRef {
        self.ssl
            .as_ref()
            .expect("the SSL is only taken on drop")
            .ssl()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(stream) = self.ssl.take() {
            if ffi::waiting_for_async(stream.ssl()) {
                if self.on_its_thread() {
                    park(stream);
                } else {
                    tracing::warn!("TLS connection with a paused async job dropped on another thread: its SSL is leaked rather than resumed there");
                    std::mem::forget(stream);
                }
            }
        }
    }
}

/// Keeps an SSL whose job is paused until the job finishes (its fd fires and the handshake is
/// resumed once more, on this thread), then frees it.
fn park(mut stream: SslStream<Buffers>) {
    bump(&COUNTERS.parked);
    // the connection is gone: whatever the resumed handshake reads next is EOF
    let b = stream.get_mut();
    b.eof = true;
    b.start = b.end;
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::CurrentThread => {
            let mut parked = Parked(Some(stream));
            h.spawn(async move {
                while let Some(s) = parked.0.as_mut() {
                    if !ffi::waiting_for_async(s.ssl()) {
                        break;
                    }
                    wait_async(s.ssl()).await;
                    let _ = s.do_handshake();
                    s.get_mut().outgoing.clear();
                }
                // dropped here: the job is done, SSL_free is safe
            });
        }
        _ => {
            tracing::warn!("TLS connection dropped mid async job outside a current-thread runtime: its SSL is leaked rather than freed under the device");
            std::mem::forget(stream);
        }
    }
}

/// A parked SSL; if the runtime drops the task before the job finished, the SSL is leaked
/// rather than freed while the device may still complete into it.
struct Parked(Option<SslStream<Buffers>>);

impl Drop for Parked {
    fn drop(&mut self) {
        if let Some(stream) = self.0.take() {
            if ffi::waiting_for_async(stream.ssl()) {
                std::mem::forget(stream);
            }
        }
    }
}

/// Waits until the paused job of `ssl` can make progress (ffi.rs registers its fds in tokio's
/// reactor for the wait). Without usable fds, waits a little: the retry then either completes
/// or pauses again.
async fn wait_async(ssl: &SslRef) {
    bump(&COUNTERS.async_waits);
    if !ffi::wait_job_fds(ssl).await {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

// === the stream ===

/// An SSL over a tokio IO: runs the handshake, then is the backend's `TlsStream` variant.
pub(crate) struct Stream<IO> {
    session: Session,
    io: IO,
    shutdown: bool,
}

static WARNED_FLAVOR: AtomicBool = AtomicBool::new(false);

impl<IO> Stream<IO> {
    /// What the handshake negotiated.
    pub(crate) fn ssl(&self) -> &SslRef {
        self.session.ssl()
    }

    /// The IO underneath.
    pub(crate) fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Stream<IO> {
    /// Wraps `ssl` (accept or connect state already set). `async_mode`: set `SSL_MODE_ASYNC`
    /// for the handshake if this runs on a current-thread runtime. `initial`: bytes already
    /// read from `io` (a ClientHello peeked for context selection).
    pub(crate) fn new(ssl: Ssl, io: IO, async_mode: bool, initial: Vec<u8>) -> io::Result<Self> {
        let mut async_thread = None;
        if async_mode {
            let current = Handle::try_current()
                .map(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread)
                .unwrap_or(false);
            if current {
                ffi::set_async_mode(&ssl);
                async_thread = Some(std::thread::current().id());
            } else if !WARNED_FLAVOR.swap(true, Ordering::Relaxed) {
                tracing::warn!("OpenSSL async mode needs a current-thread runtime (a paused job resumes on its own thread): handshakes here block on the device");
            }
        }
        let mut session = Session::new(ssl, async_thread)?;
        let b = session.get().get_mut();
        b.end = initial.len();
        b.incoming = initial;
        Ok(Stream {
            session,
            io,
            shutdown: false,
        })
    }

    /// Runs the handshake to completion (bound it with a timeout: a silent peer is waited for).
    pub(crate) async fn handshake(&mut self) -> io::Result<()> {
        loop {
            let result = self.session.get().do_handshake();
            poll_fn(|cx| self.poll_send(cx)).await?;
            let e = match result {
                Ok(()) => {
                    ffi::clear_async_mode(self.session.ssl());
                    return Ok(());
                }
                Err(e) => e,
            };
            match e.code() {
                ErrorCode::WANT_READ => {
                    poll_fn(|cx| self.poll_receive(cx)).await?;
                }
                ErrorCode::WANT_WRITE => {}
                code if code.as_raw() == ffi::SSL_ERROR_WANT_ASYNC => {
                    wait_async(self.session.ssl()).await;
                    if !self.session.on_its_thread() {
                        // never resume a job on another thread; the SSL is leaked, not freed
                        std::mem::forget(self.session.ssl.take());
                        return Err(io::Error::other(
                            "TLS handshake with a paused async job moved to another thread",
                        ));
                    }
                }
                code if code.as_raw() == ffi::SSL_ERROR_WANT_ASYNC_JOB => {
                    bump(&COUNTERS.async_job_retries);
                    tokio::task::yield_now().await;
                }
                _ => return Err(handshake_error(e, self.session.get().get_ref().eof)),
            }
        }
    }

    /// Writes the buffered ciphertext to the IO.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let b = self.session.get().get_mut();
        while b.sent < b.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &b.outgoing[b.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            b.sent += n;
        }
        b.outgoing.clear();
        b.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads ciphertext from the IO into the buffers; EOF is recorded for OpenSSL to see.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let b = self.session.get().get_mut();
        if b.eof {
            return Poll::Ready(Ok(()));
        }
        let space = b.read_space();
        let mut rb = ReadBuf::new(space);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 {
            b.eof = true;
        }
        b.end += n;
        Poll::Ready(Ok(()))
    }
}

fn handshake_error(e: ::openssl::ssl::Error, eof: bool) -> io::Error {
    if eof && e.ssl_error().is_none() {
        return io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "peer closed the connection during the TLS handshake",
        );
    }
    let kind = match e.code() {
        ErrorCode::SYSCALL => io::ErrorKind::ConnectionAborted,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e.to_string())
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.session.get().ssl_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    // a reply OpenSSL queued while reading (key update) goes out when it can
                    let _ = this.poll_send(cx);
                    return Poll::Ready(Ok(()));
                }
                Err(e) => match e.code() {
                    ErrorCode::ZERO_RETURN => return Poll::Ready(Ok(())),
                    ErrorCode::WANT_READ => {
                        ready!(this.poll_send(cx))?;
                        ready!(this.poll_receive(cx))?;
                    }
                    ErrorCode::WANT_WRITE => ready!(this.poll_send(cx))?,
                    _ if this.session.get().get_ref().eof => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed connection without sending TLS close_notify",
                        )))
                    }
                    _ => return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                },
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // backpressure: the previous write's ciphertext goes out first
        ready!(this.poll_send(cx))?;
        let chunk = &buf[..buf.len().min(MAX_WRITE)];
        loop {
            match this.session.get().ssl_write(chunk) {
                Ok(n) => {
                    if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) => match e.code() {
                    ErrorCode::WANT_READ => ready!(this.poll_receive(cx))?,
                    ErrorCode::WANT_WRITE => ready!(this.poll_send(cx))?,
                    _ => return Poll::Ready(Err(io::Error::other(e))),
                },
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shutdown {
            this.shutdown = true;
            // queues close_notify; the peer's close_notify is not waited for
            if let Err(e) = this.session.get().shutdown() {
                tracing::trace!(error = %e, "SSL_shutdown");
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

// === what was negotiated ===

/// The session info of a completed OpenSSL handshake. `sni`: the name sent (client side);
/// the server side reads the client's.
pub(crate) fn info(ssl: &SslRef, sni: Option<String>, context: Option<usize>) -> SessionInfo {
    let mut peer: Vec<CertificateDer<'static>> = Vec::new();
    if let Some(leaf) = ssl.peer_certificate() {
        if let Ok(der) = leaf.to_der() {
            peer.push(CertificateDer::from(der));
        }
    }
    if let Some(chain) = ssl.peer_cert_chain() {
        for cert in chain {
            if let Ok(der) = cert.to_der() {
                // the client side's chain starts with the leaf, the server side's does not
                if peer.first().map(|l| l.as_ref()) != Some(der.as_slice()) {
                    peer.push(CertificateDer::from(der));
                }
            }
        }
    }
    let sni = sni.or_else(|| {
        ssl.servername(::openssl::ssl::NameType::HOST_NAME)
            .map(str::to_string)
    });
    SessionInfo {
        backend: Backend::OpenSsl,
        alpn: ssl.selected_alpn_protocol().map(<[u8]>::to_vec),
        sni,
        peer_certificates: peer,
        version: match ssl.version2() {
            Some(SslVersion::TLS1_2) => Some(TlsVersion::V1_2),
            Some(SslVersion::TLS1_3) => Some(TlsVersion::V1_3),
            _ => None,
        },
        cipher_suite: ssl.current_cipher().and_then(|c| c.standard_name()),
        key_exchange_group: context::group_name(ffi::negotiated_group(ssl)),
        resumed: ssl.session_reused(),
        context,
    }
}
