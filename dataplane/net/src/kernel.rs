//! The kernel backend: tokio sockets, set up with socket2.
//!
//! Listeners are bound by the control thread (so a bad address fails start-up before any
//! worker runs) and handed to workers as `std::net::TcpListener`s: with `reuseport` each worker
//! gets its own `SO_REUSEPORT` socket (the kernel spreads connections across them); without it
//! every worker accepts on a duplicate of one socket.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use crate::transport::{Accepted, Connection, ListenSpec, Listener, Transport};

/// Kernel sockets through tokio. Cheap to copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelTransport {
    mark: Option<u32>,
}

impl KernelTransport {
    /// Upstream connections carry `SO_MARK = mark` (traffic capture leaves marked sockets
    /// alone, so the proxy's own connections are never captured).
    pub fn with_mark(mark: Option<u32>) -> Self {
        KernelTransport { mark }
    }
}

/// Binds one listening socket for `spec` (non-blocking, `SO_REUSEADDR`, optional `SO_REUSEPORT`).
pub fn bind_std(spec: &ListenSpec) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(spec.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if spec.reuseport {
        socket.set_reuse_port(true)?;
    }
    if spec.addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&spec.addr.into())?;
    socket.listen(spec.backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// Binds the sockets for `workers` workers: `workers` separate `SO_REUSEPORT` sockets on the
/// same address when `spec.reuseport`, else one socket and `workers - 1` duplicates of it.
/// A port of 0 is resolved by the first bind and reused for the rest.
pub fn bind_for_workers(
    spec: &ListenSpec,
    workers: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind_std(spec)?;
    let mut out = Vec::with_capacity(workers.max(1));
    let actual = first.local_addr()?;
    out.push(first);
    for _ in 1..workers {
        if spec.reuseport {
            let mut s = spec.clone();
            s.addr = actual;
            out.push(bind_std(&s)?);
        } else {
            out.push(out[0].try_clone()?);
        }
    }
    Ok(out)
}

/// A worker's listener over a kernel socket.
#[derive(Debug)]
pub struct KernelListener {
    inner: TcpListener,
    local: SocketAddr,
}

impl KernelListener {
    /// Adopts a socket from [`bind_std`]; must be called inside the worker's runtime.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        Ok(KernelListener {
            inner: TcpListener::from_std(listener)?,
            local,
        })
    }
}

impl Listener for KernelListener {
    type Conn = TcpStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    async fn accept(&mut self) -> io::Result<Accepted<TcpStream>> {
        let (stream, peer) = self.inner.accept().await?;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr()?;
        let original_dst = original_dst(&stream, local);
        Ok(Accepted {
            stream,
            peer,
            local,
            original_dst,
        })
    }
}

impl Connection for TcpStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        TcpStream::peer_addr(self)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpStream::local_addr(self)
    }
}

impl Transport for KernelTransport {
    type Conn = TcpStream;
    type Listener = KernelListener;

    fn listen(&self, spec: &ListenSpec) -> io::Result<KernelListener> {
        KernelListener::from_std(bind_std(spec)?)
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = match self.mark {
            None => TcpStream::connect(addr).await?,
            Some(mark) => {
                let socket =
                    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
                socket.set_mark(mark)?;
                socket.set_nonblocking(true)?;
                let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
                socket.connect(addr).await?
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn name(&self) -> &'static str {
        "kernel"
    }
}

/// The destination a redirected connection was meant for (`SO_ORIGINAL_DST`, or
/// `IP6T_SO_ORIGINAL_DST` for IPv6), or `None` when the connection was not redirected
/// (the kernel answers `ENOENT`, or names the local address itself).
pub fn original_dst(stream: &TcpStream, local: SocketAddr) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    let found = match local {
        SocketAddr::V4(_) => getsockopt(stream, sockopt::OriginalDst).ok().map(|sa| {
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
                u16::from_be(sa.sin_port),
            ))
        }),
        SocketAddr::V6(_) => getsockopt(stream, sockopt::Ip6tOriginalDst).ok().map(|sa| {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sa.sin6_addr.s6_addr),
                u16::from_be(sa.sin6_port),
                0,
                0,
            ))
        }),
    };
    found.filter(|dst| *dst != local)
}

/// Makes the next close of `stream` send a RST instead of a FIN (`SO_LINGER` 0): used to pass a
/// peer's reset on to the other side of a proxied connection.
pub fn set_reset_on_close(stream: &TcpStream) -> io::Result<()> {
    SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(flavor = "current_thread")]
    async fn reuseport_workers_share_one_port_and_dups_accept() {
        for reuseport in [true, false] {
            let mut spec = ListenSpec::new("127.0.0.1:0".parse().unwrap());
            spec.reuseport = reuseport;
            let socks = bind_for_workers(&spec, 3).unwrap();
            let ports: Vec<u16> = socks
                .iter()
                .map(|s| s.local_addr().unwrap().port())
                .collect();
            assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
            let mut l = KernelListener::from_std(socks.into_iter().next().unwrap()).unwrap();
            let addr = l.local_addr().unwrap();
            let client = tokio::spawn(async move {
                let mut c = KernelTransport::default().connect(addr).await.unwrap();
                c.write_all(b"ping").await.unwrap();
                c.shutdown().await.unwrap();
                let mut back = Vec::new();
                c.read_to_end(&mut back).await.unwrap();
                back
            });
            // With reuseport the kernel may hand the connection to one of the other sockets;
            // only the dup case guarantees this listener sees it.
            if !reuseport {
                let mut acc = l.accept().await.unwrap();
                assert_eq!(acc.peer, acc.stream.peer_addr().unwrap());
                assert_eq!(acc.original_dst, None, "not redirected");
                let mut buf = Vec::new();
                acc.stream.read_to_end(&mut buf).await.unwrap();
                assert_eq!(buf, b"ping");
                acc.stream.write_all(b"pong").await.unwrap();
                drop(acc);
                assert_eq!(client.await.unwrap(), b"pong");
            } else {
                client.abort();
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bind_conflict_is_an_error() {
        let spec = ListenSpec::new("127.0.0.1:0".parse().unwrap());
        let a = bind_std(&spec).unwrap();
        let taken = ListenSpec::new(a.local_addr().unwrap());
        let err = bind_std(&taken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
