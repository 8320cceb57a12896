//! mosn-tls-offload: the TLS backends of mosn-rs, built from MOSN's `tls_context` keys.
//!
//! ```text
//!  lib.rs      Backend (the seam), re-exports
//!  server.rs   ServerConfig: tls_context / tls_context_set -> one rustls config per context,
//!              SNI selection, accept(), reload()
//!  client.rs   ClientConfig: cluster tls_context -> rustls client config, connect(),
//!              AcceptAnyServerCert (insecure_skip)
//!  stream.rs   TlsStream<IO> (tokio AsyncRead + AsyncWrite) and SessionInfo (ALPN, SNI,
//!              peer certificates, version, suite, group, resumed)
//!  params.rs   versions, cipher suite names, key-exchange groups, ALPN -> rustls; the crypto
//!              provider (aws-lc-rs by default, `ring` feature)
//!  source.rs   PEM text or file path -> certificates, keys, root stores; names served by a cert
//!  reload.rs   Reloader: polls the files' mtime on a std thread and calls ServerConfig::reload
//!  metrics.rs  HandshakeCounters (per config, registrable in mosn-metrics) and per-backend totals
//!  error.rs    TlsError: every config error names the JSON path and key
//!  kind.rs     tls_context `type` + `extend_verify` -> the backend (rustls, openssl, keyless)
//!              and the OpenSSL settings parsed from JSON
//!  keyless/    (`type: keyless`) the remote-key signer, its wire protocol, and the handshake
//!              driver that keeps the signing step off the event loop; the key server is the
//!              `mosn-keyserver` binary (src/bin/mosn-keyserver.rs)
//!  openssl/    (feature `openssl`) the OpenSSL backend: ENGINE/provider offload, SSL_MODE_ASYNC
//!              and its async driver, the only `unsafe` of the crate (openssl/ffi.rs)
//! ```
//!
//! # The backend seam
//!
//! A backend is chosen when a config is built, never per connection: by the contexts' `type`
//! in [`ServerConfig::build`] / [`ClientConfig::build`] (`""`/`"rustls"`, `"openssl"` with its
//! settings in `extend_verify`, `"keyless"`; unknown types and `tls_context_set`s mixing
//! `openssl` with other types are errors), or explicitly ([`ServerConfig::build_with`]). It is
//! a closed enum ([`Backend`]) rather than a trait object: the handshake futures and streams
//! are concrete enums (`TlsStream` wraps one variant per backend), so a worker's event loop
//! pays no dynamic dispatch and no boxing per read or write, and a future OpenSSL backend can
//! bring its own async driver (the `SSL_MODE_ASYNC` retry loop that must resume on the same OS
//! thread, ACCELERATION.md §7) as one more variant without changing the callers. Nothing here spawns tasks or threads on the data path (only [`Reloader`] owns a std
//! thread; with OpenSSL, an SSL dropped while its async job is paused is finished by a task of
//! the same runtime, and external accelerator polling has its own thread; keyless handshake
//! steps run on the blocking pool): `accept`/`connect` run on the caller's single-threaded
//! worker.
//!
//! The OpenSSL backend (feature `openssl`) is `Backend::OpenSsl`, a variant in the private
//! server/client/stream enums; its settings (accelerator, async mode, polling, what to do when
//! the accelerator fails) are an `openssl::OpenSslBackend`, parsed from `extend_verify` by
//! `build` or given to `ServerConfig::build_openssl` / `ClientConfig::build_openssl`, so
//! `Backend` stays a plain tag.
//!
//! Keyless is not a backend: it is rustls with a remote key ([`keyless`]), `Backend::Rustls`
//! in metrics and [`SessionInfo`]. Its handshakes are driven by the crate so that the step
//! that signs runs on tokio's blocking pool (`spawn_blocking`) instead of the worker, and end
//! as the same `TlsStream` variant as any rustls connection.
//!
//! # SNI selection
//!
//! Each context of a `tls_context_set` gets its own `rustls::ServerConfig` (contexts may differ
//! in client verification, versions, suites, groups, ALPN). `accept` reads the ClientHello
//! first (`LazyConfigAcceptor`), then picks the context the MOSN way: the SNI name exactly,
//! then `*.parent` wildcards longest parent first, then the first context whose ALPN list
//! shares a protocol with the client's offer, then the first context. A context serves the
//! names of its certificate (subject CN and DNS SANs) plus its `server_name`.
//!
//! # Reload
//!
//! The per-context rustls configs (with their certified keys) live in one snapshot behind
//! `arc-swap`. [`ServerConfig::reload`] rebuilds the snapshot from the same `tls_context`s
//! (re-reading every file), keeping each context's session cache and ticket keys, and swaps it
//! in one step; on any error the old snapshot stays. A handshake loads the snapshot once, so
//! open connections keep their session and new full handshakes see the new certificates
//! (a session resumed after a reload keeps the identity it was established with).
//!
//! Sits at layer 1: depends on mosn-config and mosn-metrics only.
// `unsafe` only in the OpenSSL FFI module (openssl/ffi.rs), and only with that feature.
#![cfg_attr(not(feature = "openssl"), forbid(unsafe_code))]
#![cfg_attr(feature = "openssl", deny(unsafe_code))]
#![deny(missing_docs)]

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!("mosn-tls-offload needs a rustls crypto provider: enable `aws-lc-rs` or `ring`");

mod client;
mod error;
pub mod keyless;
mod kind;
mod metrics;
#[cfg(feature = "openssl")]
pub mod openssl;
mod params;
mod reload;
mod server;
mod source;
mod stream;

pub use client::ClientConfig;
pub use error::TlsError;
pub use metrics::{HandshakeCounters, HandshakeTotals};
pub use reload::Reloader;
pub use server::ServerConfig;
pub use stream::{SessionInfo, TlsStream};

/// Re-exported so callers can name peer certificates without depending on rustls directly.
pub use rustls_pki_types::CertificateDer;

/// A TLS implementation. Chosen per config at build time; see the crate docs for why this is
/// an enum and not a trait object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// rustls 0.23 with the aws-lc-rs provider (or ring, with the `ring` feature only).
    Rustls,
    /// The system OpenSSL 3, with ENGINE/provider offload and `SSL_MODE_ASYNC` (feature
    /// `openssl`; settings in [`openssl::OpenSslBackend`]).
    #[cfg(feature = "openssl")]
    OpenSsl,
}

impl Backend {
    /// Every backend compiled in, in a stable order (for metrics registration).
    #[cfg(not(feature = "openssl"))]
    pub const ALL: &'static [Backend] = &[Backend::Rustls];
    /// Every backend compiled in, in a stable order (for metrics registration).
    #[cfg(feature = "openssl")]
    pub const ALL: &'static [Backend] = &[Backend::Rustls, Backend::OpenSsl];

    /// The backend's name, as used in metric labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Rustls => "rustls",
            #[cfg(feature = "openssl")]
            Backend::OpenSsl => "openssl",
        }
    }

    /// The crypto library under the backend (`aws-lc-rs` or `ring` for rustls, `openssl`).
    pub fn crypto_provider(self) -> &'static str {
        match self {
            Backend::Rustls => params::PROVIDER_NAME,
            #[cfg(feature = "openssl")]
            Backend::OpenSsl => "openssl",
        }
    }

    /// Process-wide handshake totals of this backend, server and client sides together.
    pub fn totals(self) -> HandshakeTotals {
        metrics::totals(self)
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
