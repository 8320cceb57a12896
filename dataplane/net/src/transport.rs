//! The transport seam: everything above NET/IO sees connections only through these traits.
//!
//! A worker is a single-threaded event loop, so nothing here is `Send`: a userspace stack
//! (smoltcp) can keep its state in `Rc<RefCell<..>>` and wake tasks on the same thread.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// What a listener is asked to bind. Lower layers take this small struct, never the config.
#[derive(Debug, Clone)]
pub struct ListenSpec {
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Set `SO_REUSEPORT` so that every worker binds its own socket on the same address.
    pub reuseport: bool,
    /// Accept backlog.
    pub backlog: u32,
}

impl ListenSpec {
    /// A spec with MOSN's defaults: no reuseport, backlog 1024.
    pub fn new(addr: SocketAddr) -> Self {
        ListenSpec {
            addr,
            reuseport: false,
            backlog: 1024,
        }
    }
}

/// An accepted downstream connection and the addresses that identify it.
#[derive(Debug)]
pub struct Accepted<S> {
    /// The byte stream.
    pub stream: S,
    /// The downstream peer.
    pub peer: SocketAddr,
    /// The local address the connection arrived on.
    pub local: SocketAddr,
    /// The destination the client meant before a redirect (iptables `REDIRECT`, eBPF
    /// connect4), when the transport can tell; `None` when it was not redirected.
    pub original_dst: Option<SocketAddr>,
}

/// A byte stream connection: read, write, and half-close through `AsyncWrite::poll_shutdown`
/// (which must send a FIN and leave the read side open).
pub trait Connection: AsyncRead + AsyncWrite + Unpin + 'static {
    /// The remote end.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
    /// The local end.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A bound listener owned by one worker.
pub trait Listener: 'static {
    /// The connection type it yields.
    type Conn: Connection;
    /// The address actually bound.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Accepted<Self::Conn>>>;
}

/// A network backend: the kernel's sockets or a userspace TCP stack.
pub trait Transport: Clone + 'static {
    /// Connection type, downstream and upstream alike.
    type Conn: Connection;
    /// Listener type.
    type Listener: Listener<Conn = Self::Conn>;
    /// Binds a listener on this worker.
    fn listen(&self, spec: &ListenSpec) -> io::Result<Self::Listener>;
    /// Opens an upstream connection. Callers apply their own connect timeout.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Conn>>;
    /// A short name for logs and metrics (`kernel`, `userspace`).
    fn name(&self) -> &'static str;
}
