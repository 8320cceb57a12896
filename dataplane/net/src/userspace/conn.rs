//! [`UserspaceConn`]: one TCP connection of a userspace stack as a tokio byte stream.
//!
//! Semantics (EOF, reset, back-pressure, half-close, drop) are described in the parent
//! module's documentation.
//!
//! # `Send`
//!
//! The connection is `Send` although its stack is an `Rc` handle: hyper hands upgraded
//! connections (WebSocket, CONNECT) around as `Send` objects, and TLS sessions and the L7
//! codecs are written for `Send` streams. The stack handle sits in a [`SendWrapper`], which
//! records the thread that made it. The connection never actually leaves its worker (a
//! current-thread runtime with a `LocalSet`); should it be used on another thread anyway, every
//! operation fails with an error instead of touching the stack, and a drop there leaks the
//! socket (the stack reclaims it when it goes away) instead of panicking.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use send_wrapper::SendWrapper;
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::UserspaceStack;
use crate::transport::Connection;

/// A TCP connection on a [`UserspaceStack`]; reads, writes and half-closes like a kernel
/// socket.
pub struct UserspaceConn<D: Device + 'static> {
    /// `None` only while dropping.
    stack: Option<SendWrapper<UserspaceStack<D>>>,
    id: u64,
    local: SocketAddr,
    peer: SocketAddr,
    /// `poll_shutdown` was called: our FIN is queued.
    write_shut: bool,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "userspace connection is gone")
}

fn foreign() -> io::Error {
    io::Error::other("userspace connection used off its worker thread")
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
            stack: Some(SendWrapper::new(stack)),
            id,
            local,
            peer,
            write_shut: false,
        }
    }

    /// The stack, when called on the worker thread that owns it.
    fn stack(&self) -> io::Result<&UserspaceStack<D>> {
        match &self.stack {
            Some(stack) if stack.valid() => Ok(stack),
            _ => Err(foreign()),
        }
    }

    /// Runs `f` on this connection's socket.
    fn with_socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> io::Result<R> {
        let mut core = self.stack()?.shared.core.borrow_mut();
        core.conn_socket(self.id).map(f).ok_or_else(gone)
    }

    fn notify(&self) {
        if let Ok(stack) = self.stack() {
            stack.shared.signal.notify();
        }
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
            let mut core = match this.stack() {
                Ok(stack) => stack.shared.core.borrow_mut(),
                Err(e) => return Poll::Ready(Err(e)),
            };
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
        let Some(stack) = self.stack.take() else {
            return;
        };
        if !stack.valid() {
            // Off the owning thread the stack must not be touched, not even its reference
            // count: leak the handle (and with it this socket until the stack goes away).
            tracing::error!(
                id = self.id,
                "userspace connection dropped off its worker thread"
            );
            std::mem::forget(stack);
            return;
        }
        // Never panic in drop; a stack borrowed right now (not possible on one thread
        // outside a stack call) would only cost this socket's cleanup.
        if let Ok(mut core) = stack.shared.core.try_borrow_mut() {
            core.orphan(self.id);
        }
        stack.shared.signal.notify();
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use smoltcp::wire::Ipv4Cidr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::transport::{ListenSpec, Listener, Transport};
    use crate::userspace::loopback;

    fn assert_send<T: Send>(_: &T) {}

    /// A connection is `Send` (hyper's upgrades and the L7 codecs need it), works on its
    /// worker, and used or dropped on another thread fails cleanly without touching the stack.
    #[test]
    fn send_but_bound_to_its_worker() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let addr = Ipv4Addr::new(198, 18, 0, 1);
            let (t, driver) = loopback(Ipv4Cidr::new(addr, 15)).unwrap();
            tokio::task::spawn_local(driver);
            let mut listener = t
                .listen(&ListenSpec::new(SocketAddr::new(addr.into(), 0)))
                .unwrap();
            let to = listener.local_addr().unwrap();
            let (client, accepted) = tokio::join!(t.connect(to), listener.accept());
            let mut client = client.unwrap();
            let mut server = accepted.unwrap().stream;
            assert_send(&client);
            client.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(10), server.read_exact(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf, b"ping");

            // On another thread: operations fail, drop leaks instead of panicking.
            let conns_before = t.stack().stats().conns;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let err = client.with_socket(|s| s.state()).unwrap_err();
                let msg = err.to_string();
                drop(client);
                tx.send(msg).unwrap();
            })
            .join()
            .unwrap();
            assert!(rx.recv().unwrap().contains("off its worker thread"));
            assert_eq!(t.stack().stats().conns, conns_before, "stack untouched");
            // The server side still works on its own thread.
            server.write_all(b"pong").await.unwrap();
        });
    }
}
