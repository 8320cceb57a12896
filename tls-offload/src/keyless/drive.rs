//! Drives a rustls handshake whose signature is remote without blocking the event loop: TLS
//! records are read and written on the worker, but every `process_new_packets` of the
//! handshake (the call that may sign, and so wait for the key server) runs on tokio's
//! blocking pool (`spawn_blocking`, available on current-thread runtimes too). The connection
//! moves to the blocking thread and back; the worker serves other connections meanwhile.

use std::io;
use std::ops::DerefMut;

use rustls::{ConnectionCommon, SideData};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Runs `f` on the blocking pool and gives back its result (a panic there is an IO error).
pub(crate) async fn off_loop<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("keyless signer task failed: {e}")))
}

/// Writes everything the connection wants to send.
async fn flush<C, D, IO>(conn: &mut C, io: &mut IO) -> io::Result<()>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
    IO: AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    if !out.is_empty() {
        io.write_all(&out).await?;
    }
    io.flush().await
}

/// Completes the handshake of `conn` over `io` (see the module docs). Bytes read past the
/// handshake (the peer's first application data) are fed to the connection, not lost.
pub(crate) async fn handshake<C, D, IO>(mut conn: C, io: &mut IO) -> io::Result<C>
where
    C: DerefMut<Target = ConnectionCommon<D>> + Send + 'static,
    D: SideData,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        flush(&mut conn, io).await?;
        if !conn.is_handshaking() {
            break;
        }
        if start == end {
            let n = io.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the handshake",
                ));
            }
            (start, end) = (0, n);
        }
        let mut rd = &buf[start..end];
        let fed = conn.read_tls(&mut rd)?;
        if fed == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed the TLS session during the handshake",
            ));
        }
        start += fed;
        let (back, result) = off_loop(move || {
            let result = conn.process_new_packets().map(|_| ());
            (conn, result)
        })
        .await?;
        conn = back;
        if let Err(e) = result {
            // the alert rustls queued, best effort
            let _ = flush(&mut conn, io).await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    while start < end {
        let mut rd = &buf[start..end];
        let fed = conn.read_tls(&mut rd)?;
        if fed == 0 {
            break;
        }
        start += fed;
        conn.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    Ok(conn)
}
