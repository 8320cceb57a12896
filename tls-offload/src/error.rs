//! TlsError: configuration errors name the JSON path and key they come from
//! (`listeners[0].filter_chains[0].tls_context.cert_chain: cannot read /x.pem: ...`);
//! handshake errors carry the IO error underneath.

use std::io;

/// Errors of this crate. Config variants carry the JSON path of the offending key; none of them
/// ever contains PEM text or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file could not be read.
    #[error("{path}: cannot read {file}: {source}")]
    Read {
        /// JSON path of the key (`...tls_context.cert_chain`).
        path: String,
        /// The file named by the key.
        file: String,
        /// The IO error.
        source: io::Error,
    },
    /// A value is missing, malformed or not supported; the message names the value.
    #[error("{path}: {message}")]
    Config {
        /// JSON path of the key.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the assembled configuration (e.g. the key does not match the certificate).
    #[error("{path}: {source}")]
    Rustls {
        /// JSON path of the context or key.
        path: String,
        /// The rustls error.
        source: rustls::Error,
    },
    /// OpenSSL refused a certificate, key or setting (OpenSSL backend).
    #[cfg(feature = "openssl")]
    #[error("{path}: OpenSSL: {source}")]
    OpenSsl {
        /// JSON path of the context or key.
        path: String,
        /// OpenSSL's error queue.
        source: ::openssl::error::ErrorStack,
    },
    /// The TLS accelerator (ENGINE or provider) could not be loaded or initialised, and the
    /// config says to refuse rather than fall back to rustls.
    #[error("TLS offload initialisation failed: {0}")]
    Offload(String),
    /// The name given for an upstream connection is neither a DNS name nor an IP address.
    #[error("invalid TLS server name `{0}`")]
    ServerName(String),
    /// The handshake failed: the peer, the protocol or the transport. Not a config error.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
}

impl TlsError {
    pub(crate) fn config(path: impl Into<String>, message: impl Into<String>) -> TlsError {
        TlsError::Config {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn rustls(path: impl Into<String>, source: rustls::Error) -> TlsError {
        TlsError::Rustls {
            path: path.into(),
            source,
        }
    }

    /// True for errors found while building or reloading a config (as opposed to handshakes).
    pub fn is_config(&self) -> bool {
        !matches!(self, TlsError::Handshake(_) | TlsError::ServerName(_))
    }
}
