//! Protocol detection on a fresh downstream connection: read just enough bytes to tell which
//! of the listener's protocols the client speaks, then hand the connection on with those bytes
//! replayed ([`Rewind`]). MOSN's `Auto` and comma lists (`"Http1,Http2"`) work this way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::StreamProtocol;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest HTTP/1 method token we accept while sniffing (`OPTIONS`, `CONNECT`, extensions).
const MAX_METHOD_LEN: usize = 20;

/// What a matcher says about the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// These bytes are this protocol.
    Yes,
    /// These bytes are not this protocol.
    No,
    /// Not enough bytes to decide.
    NeedMore,
}

/// Does `buf` (the first bytes of a connection) look like `proto`?
pub fn matches(proto: StreamProtocol, buf: &[u8]) -> Match {
    match proto {
        StreamProtocol::Http2 => {
            let n = buf.len().min(H2_PREFACE.len());
            if buf[..n] != H2_PREFACE[..n] {
                Match::No
            } else if n == H2_PREFACE.len() {
                Match::Yes
            } else {
                Match::NeedMore
            }
        }
        StreamProtocol::Http1 => {
            // A method token (RFC 9110 tchar, upper case in practice) followed by a space.
            for (i, &b) in buf.iter().enumerate().take(MAX_METHOD_LEN + 1) {
                if b == b' ' {
                    // `PRI` is the HTTP/2 preface's pseudo-method, never an HTTP/1 request.
                    return if i == 0 || &buf[..i] == b"PRI" {
                        Match::No
                    } else {
                        Match::Yes
                    };
                }
                if !(b.is_ascii_uppercase() || b == b'-' || b == b'_') {
                    return Match::No;
                }
            }
            if buf.len() > MAX_METHOD_LEN {
                Match::No
            } else {
                Match::NeedMore
            }
        }
        // Bolt's protocol byte: 1 (v1) or 2 (v2); one codec reads both.
        StreamProtocol::Bolt | StreamProtocol::BoltV2 => match buf.first() {
            None => Match::NeedMore,
            Some(1 | 2) => Match::Yes,
            Some(_) => Match::No,
        },
        StreamProtocol::Dubbo => {
            let n = buf.len().min(2);
            if buf[..n] != mosn_wire::dubbo::MAGIC[..n] {
                Match::No
            } else if n == 2 {
                Match::Yes
            } else {
                Match::NeedMore
            }
        }
    }
}

/// Why detection gave up.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The client sent bytes none of the listener's protocols accepts.
    #[error("unknown protocol (first bytes {0:?})")]
    Unknown(Bytes),
    /// The client closed before enough bytes arrived.
    #[error("connection closed before the protocol could be detected")]
    Closed,
    /// The client sent too little for too long.
    #[error("protocol detection timed out")]
    Timeout,
    /// Reading failed.
    #[error("read failed during protocol detection: {0}")]
    Io(#[from] io::Error),
}

/// Reads from `conn` until one of `allowed` matches, within `timeout`. Returns the protocol
/// and every byte read so far (to be replayed with [`Rewind`]).
pub async fn detect<C: AsyncRead + Unpin>(
    conn: &mut C,
    allowed: &[StreamProtocol],
    timeout: Duration,
) -> Result<(StreamProtocol, Bytes), DetectError> {
    let mut buf = BytesMut::with_capacity(64);
    let work = async {
        loop {
            let mut undecided = false;
            if !buf.is_empty() {
                for &p in allowed {
                    match matches(p, &buf) {
                        Match::Yes => return Ok(p),
                        Match::NeedMore => undecided = true,
                        Match::No => {}
                    }
                }
                if !undecided {
                    return Err(DetectError::Unknown(buf.clone().freeze()));
                }
            }
            if conn.read_buf(&mut buf).await? == 0 {
                return Err(DetectError::Closed);
            }
        }
    };
    let proto = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| DetectError::Timeout)??;
    Ok((proto, buf.freeze()))
}

/// A connection whose first reads return `prefix` (bytes already consumed while detecting).
#[derive(Debug)]
pub struct Rewind<C> {
    prefix: Bytes,
    inner: C,
}

impl<C> Rewind<C> {
    /// Replays `prefix` before reading from `inner`.
    pub fn new(prefix: Bytes, inner: C) -> Self {
        Rewind { prefix, inner }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Rewind<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Rewind<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn matcher_table() {
        use StreamProtocol::*;
        assert_eq!(matches(Http2, b"PRI * HT"), Match::NeedMore);
        assert_eq!(matches(Http2, H2_PREFACE), Match::Yes);
        assert_eq!(matches(Http2, b"GET / HTTP/1.1"), Match::No);
        assert_eq!(matches(Http1, b"GET / HTTP/1.1"), Match::Yes);
        assert_eq!(matches(Http1, b"GE"), Match::NeedMore);
        assert_eq!(matches(Http1, b"PRI * HTTP/2.0"), Match::No);
        assert_eq!(matches(Http1, b"\x16\x03\x01"), Match::No);
        assert_eq!(matches(Http1, b" GET"), Match::No);
        assert_eq!(matches(Http1, &[b'A'; 40]), Match::No);
    }

    #[tokio::test]
    async fn detects_split_preface_and_replays_it() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            client.write_all(&H2_PREFACE[..5]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(&H2_PREFACE[5..]).await.unwrap();
            client.write_all(b"rest").await.unwrap();
            client
        });
        let all = [StreamProtocol::Http1, StreamProtocol::Http2];
        let (p, seen) = detect(&mut server, &all, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(p, StreamProtocol::Http2);
        let _client = writer.await.unwrap();
        let mut r = Rewind::new(seen, server);
        let mut got = vec![0u8; H2_PREFACE.len() + 4];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..H2_PREFACE.len()], H2_PREFACE);
        assert_eq!(&got[H2_PREFACE.len()..], b"rest");
    }

    #[tokio::test]
    async fn unknown_closed_and_timeout() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"\x01\x01\x00").await.unwrap();
        let only_h1 = [StreamProtocol::Http1];
        let e = detect(&mut server, &only_h1, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, DetectError::Unknown(_)), "{e}");

        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let e = detect(&mut server, &only_h1, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, DetectError::Closed), "{e}");

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GE").await.unwrap();
        let e = detect(&mut server, &only_h1, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, DetectError::Timeout), "{e}");
        // Only HTTP/2 allowed: an HTTP/1 request is refused at once.
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let e = detect(
            &mut server,
            &[StreamProtocol::Http2],
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, DetectError::Unknown(_)), "{e}");
    }
}
