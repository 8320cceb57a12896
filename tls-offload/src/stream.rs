//! TlsStream: an established TLS connection of any backend, a tokio `AsyncRead + AsyncWrite`,
//! with what the handshake negotiated in [`SessionInfo`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use mosn_config::TlsVersion;
use rustls::{CommonState, HandshakeKind, ProtocolVersion};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{params, Backend};

/// What a handshake negotiated. Filled once when the handshake completes, backend-neutral.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The backend that ran the handshake.
    pub backend: Backend,
    /// Negotiated ALPN protocol (`h2`, `http/1.1`, ...), if any.
    pub alpn: Option<Vec<u8>>,
    /// Server side: the SNI name the client sent. Client side: the SNI name we sent.
    pub sni: Option<String>,
    /// The peer's certificate chain, leaf first (empty when the peer sent none).
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// Negotiated protocol version (`V1_2` or `V1_3`).
    pub version: Option<TlsVersion>,
    /// Negotiated cipher suite, IANA name (`TLS_AES_128_GCM_SHA256`).
    pub cipher_suite: Option<&'static str>,
    /// Negotiated key-exchange group (`X25519`, `secp256r1`, `X25519MLKEM768`, ...).
    pub key_exchange_group: Option<&'static str>,
    /// The session was resumed (session cache or ticket) rather than fully negotiated.
    pub resumed: bool,
    /// Server side: the index of the `tls_context_set` entry that served the connection.
    pub context: Option<usize>,
}

impl SessionInfo {
    pub(crate) fn from_rustls(
        state: &CommonState,
        sni: Option<String>,
        context: Option<usize>,
    ) -> Self {
        SessionInfo {
            backend: Backend::Rustls,
            alpn: state.alpn_protocol().map(<[u8]>::to_vec),
            sni,
            peer_certificates: state
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            version: state.protocol_version().and_then(|v| match v {
                ProtocolVersion::TLSv1_2 => Some(TlsVersion::V1_2),
                ProtocolVersion::TLSv1_3 => Some(TlsVersion::V1_3),
                _ => None,
            }),
            cipher_suite: state.negotiated_cipher_suite().map(params::suite_name),
            key_exchange_group: state
                .negotiated_key_exchange_group()
                .and_then(|g| g.name().as_str()),
            resumed: state.handshake_kind() == Some(HandshakeKind::Resumed),
            context,
        }
    }
}

/// The backend's stream. One variant per backend: no dynamic dispatch per read or write. The
/// rustls stream (the default) stays inline rather than boxed, although it is the largest.
#[allow(clippy::large_enum_variant)]
enum Inner<IO> {
    Rustls(tokio_rustls::TlsStream<IO>),
    #[cfg(feature = "openssl")]
    OpenSsl(crate::openssl::Stream<IO>),
}

/// An established TLS connection over `IO` (a TCP stream, or any tokio byte stream).
pub struct TlsStream<IO> {
    inner: Inner<IO>,
    info: SessionInfo,
}

impl<IO> TlsStream<IO> {
    pub(crate) fn rustls(inner: tokio_rustls::TlsStream<IO>, info: SessionInfo) -> Self {
        TlsStream {
            inner: Inner::Rustls(inner),
            info,
        }
    }

    #[cfg(feature = "openssl")]
    pub(crate) fn openssl(inner: crate::openssl::Stream<IO>, info: SessionInfo) -> Self {
        TlsStream {
            inner: Inner::OpenSsl(inner),
            info,
        }
    }

    /// What the handshake negotiated.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Negotiated ALPN protocol, if any (the proxy picks HTTP/2 on `h2`).
    pub fn alpn(&self) -> Option<&[u8]> {
        self.info.alpn.as_deref()
    }

    /// Server side: the client's SNI name. Client side: the name sent.
    pub fn sni(&self) -> Option<&str> {
        self.info.sni.as_deref()
    }

    /// The peer's certificate chain, leaf first.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.info.peer_certificates
    }

    /// The transport underneath (for addresses and socket options).
    pub fn get_ref(&self) -> &IO {
        match &self.inner {
            Inner::Rustls(s) => s.get_ref().0,
            #[cfg(feature = "openssl")]
            Inner::OpenSsl(s) => s.get_ref(),
        }
    }
}

impl<IO> std::fmt::Debug for TlsStream<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

// === impl AsyncRead / AsyncWrite: delegate to the backend ===

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Rustls(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "openssl")]
            Inner::OpenSsl(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Rustls(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "openssl")]
            Inner::OpenSsl(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Rustls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "openssl")]
            Inner::OpenSsl(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Rustls(s) => s.is_write_vectored(),
            #[cfg(feature = "openssl")]
            Inner::OpenSsl(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Rustls(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "openssl")]
            Inner::OpenSsl(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Rustls(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "openssl")]
            Inner::OpenSsl(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
