//! [`UserspaceConn`]: one TCP connection of a userspace stack as a tokio byte stream.
//!
//! Semantics (EOF, reset, back-pressure, half-close, drop) are described in the parent
//! module's documentation.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::UserspaceStack;
use crate::transport::Connection;

/// A TCP connection on a [`UserspaceStack`]; reads, writes and half-closes like a kernel
/// socket.
pub struct UserspaceConn<D: Device + 'static> {
    stack: UserspaceStack<D>,
    id: u64,
    local: SocketAddr,
    peer: SocketAddr,
    /// `poll_shutdown` was called: our FIN is queued.
    write_shut: bool,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "userspace connection is gone")
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection reset by peer (userspace stack)",
    )
}

impl<D: Device + 'static> UserspaceConn<D> {
    pub(super) fn new(
        stack: UserspaceStack<D>,
        id: u64,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Self {
        UserspaceConn {
            stack,
            id,
            local,
            peer,
            write_shut: false,
        }
    }

    /// Runs `f` on this connection's socket.
    fn with_socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> io::Result<R> {
        let mut core = self.stack.shared.core.borrow_mut();
        core.conn_socket(self.id).map(f).ok_or_else(gone)
    }

    fn notify(&self) {
        self.stack.shared.signal.notify();
    }

    /// Resolves once the handshake finished; `ConnectionRefused` if it was reset.
    pub(super) fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let state = self.with_socket(|socket| {
            let state = socket.state();
            if matches!(state, tcp::State::SynSent | tcp::State::SynReceived) {
                socket.register_send_waker(cx.waker());
            }
            state
        })?;
        match state {
            tcp::State::SynSent | tcp::State::SynReceived => Poll::Pending,
            tcp::State::Closed | tcp::State::Listen => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("connection to {} refused (userspace stack)", self.peer),
            ))),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// The smoltcp state of the connection (for tests and diagnostics).
    pub fn state(&self) -> io::Result<tcp::State> {
        self.with_socket(|socket| socket.state())
    }
}

impl<D: Device + 'static> AsyncRead for UserspaceConn<D> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let polled = this.with_socket(|socket| {
            let mut total = 0;
            // Two passes at most: the ring buffer hands out its tail, then its head.
            let outcome = loop {
                if buf.remaining() == 0 {
                    break Ok(());
                }
                match socket.recv(|data| {
                    let n = data.len().min(buf.remaining());
                    buf.put_slice(&data[..n]);
                    (n, n)
                }) {
                    Ok(0) => break Ok(()),
                    Ok(n) => total += n,
                    Err(err) => break Err(err),
                }
            };
            if total > 0 {
                // An error or EOF behind the data is reported on the next call.
                return Poll::Ready(Ok(total));
            }
            match outcome {
                Ok(()) => {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
                Err(tcp::RecvError::Finished) => Poll::Ready(Ok(0)),
                Err(tcp::RecvError::InvalidState) => match socket.state() {
                    tcp::State::SynSent | tcp::State::SynReceived => {
                        socket.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                    // Closed without the peer's FIN: RST received, or timed out.
                    _ => Poll::Ready(Err(reset())),
                },
            }
        })?;
        match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    // The window opened: the stack may owe the peer a window update.
                    this.notify();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<D: Device + 'static> AsyncWrite for UserspaceConn<D> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write_shut {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown (userspace stack)",
            )));
        }
        let polled = this.with_socket(|socket| match socket.send_slice(buf) {
            Ok(0) => {
                // Transmit buffer full: wait for the peer to acknowledge (back-pressure).
                socket.register_send_waker(cx.waker());
                Poll::Pending
            }
            Ok(n) => Poll::Ready(Ok(n)),
            Err(tcp::SendError::InvalidState) => match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                tcp::State::Closed => Poll::Ready(Err(reset())),
                _ => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "connection closed for writing (userspace stack)",
                ))),
            },
        })?;
        if let Poll::Ready(Ok(_)) = polled {
            this.notify();
        }
        polled
    }

    /// A no-op, as on a kernel socket: written bytes are the stack's to deliver.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// `shutdown(SHUT_WR)`: queue a FIN behind the buffered bytes; the read side stays open.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_shut {
            let mut core = this.stack.shared.core.borrow_mut();
            if core.conn_socket(this.id).is_none() {
                return Poll::Ready(Err(gone()));
            }
            core.close_conn(this.id);
            drop(core);
            this.write_shut = true;
            this.notify();
        }
        Poll::Ready(Ok(()))
    }
}

impl<D: Device + 'static> Connection for UserspaceConn<D> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl<D: Device + 'static> Drop for UserspaceConn<D> {
    fn drop(&mut self) {
        // Never panic in drop; a stack borrowed right now (not possible on one thread
        // outside a stack call) would only cost this socket's cleanup.
        if let Ok(mut core) = self.stack.shared.core.try_borrow_mut() {
            core.orphan(self.id);
        }
        self.notify();
    }
}

impl<D: Device + 'static> std::fmt::Debug for UserspaceConn<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserspaceConn")
            .field("id", &self.id)
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish()
    }
}
