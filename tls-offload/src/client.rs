//! ClientConfig: a cluster's `tls_context` as a rustls client config, and the connect path.

use std::sync::Arc;

use mosn_config::TlsContext;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::keyless::{self, KeylessConfig, KeylessKey, KeylessStats};
use crate::kind::{self, Kind};
use crate::{params, server, source, Backend, HandshakeCounters, SessionInfo, TlsError, TlsStream};

/// An upstream (cluster) TLS configuration. Cheap to clone; share one per cluster.
#[derive(Clone)]
pub struct ClientConfig {
    backend: Backend,
    config: Arc<rustls::ClientConfig>,
    /// OpenSSL backend: the context and settings (None for rustls).
    #[cfg(feature = "openssl")]
    openssl: Option<Arc<OpenSslClient>>,
    server_name: Option<ServerName<'static>>,
    fall_back: bool,
    counters: HandshakeCounters,
    /// `type: keyless`: the client certificate's key is remote (its signing counters).
    keyless: Option<Arc<keyless::Counters>>,
}

impl ClientConfig {
    /// Builds a cluster's client config from its `tls_context`; `path` is its JSON path
    /// (`cluster_manager.clusters[0].tls_context`), errors name `{path}.<key>`. The backend
    /// follows `type` as on listeners ([`crate::ServerConfig::build`]): rustls, `openssl`
    /// (settings in `extend_verify`) or `keyless` (the client certificate's key in a key
    /// server; `cert_chain` required, `private_key` empty).
    ///
    /// - `server_name`: SNI and the name the certificate is checked against; when empty the
    ///   host given to [`ClientConfig::connect`] is used.
    /// - `ca_cert`: the roots; when empty, the Mozilla roots compiled in (webpki-roots).
    /// - `insecure_skip`: accept any server certificate (the verifier is named
    ///   `AcceptAnyServerCert`; only the handshake signature is still checked).
    /// - `cert_chain` + `private_key`: the client certificate presented when asked.
    /// - `alpn`, `min_version`/`max_version`, `cipher_suites`, `ecdh_curves`: as on listeners.
    pub fn build(ctx: &TlsContext, path: &str) -> Result<ClientConfig, TlsError> {
        match kind::of(ctx, path)? {
            Kind::Rustls => ClientConfig::build_rustls(ctx, path, None),
            #[cfg(feature = "openssl")]
            Kind::OpenSsl(settings) => ClientConfig::build_openssl(ctx, path, &settings),
            Kind::Keyless(cfg) => ClientConfig::build_rustls(ctx, path, Some(cfg)),
        }
    }

    fn build_rustls(
        ctx: &TlsContext,
        path: &str,
        keyless: Option<KeylessConfig>,
    ) -> Result<ClientConfig, TlsError> {
        if ctx.sds_source.is_some() {
            return Err(TlsError::config(
                format!("{path}.sds_source"),
                "SDS certificates are not supported",
            ));
        }
        server::warn_ignored(ctx, path);
        let p = params::params(ctx, path)?;
        let server_name = match ctx.server_name.trim() {
            "" => None,
            name => Some(ServerName::try_from(name.to_string()).map_err(|_| {
                TlsError::config(
                    format!("{path}.server_name"),
                    format!("`{name}` is not a DNS name or IP address"),
                )
            })?),
        };
        let builder = rustls::ClientConfig::builder_with_provider(p.provider.clone())
            .with_protocol_versions(&p.versions)
            .map_err(|e| TlsError::rustls(path, e))?;
        let builder = if ctx.insecure_skip {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(p.provider.clone())))
        } else {
            builder.with_root_certificates(roots(ctx, path)?)
        };
        let counters = keyless
            .as_ref()
            .map(|_| Arc::<keyless::Counters>::default());
        let mut config = if let (Some(cfg), Some(counters)) = (keyless, &counters) {
            server::check_key_presence(ctx, path, true, "")?;
            let chain_path = format!("{path}.cert_chain");
            if ctx.cert_chain.trim().is_empty() {
                return Err(TlsError::config(
                    chain_path,
                    "type \"keyless\" needs the client certificate chain",
                ));
            }
            let chain = source::load_certs(&ctx.cert_chain, &chain_path)?;
            let client = Arc::new(keyless::Client::new(cfg, counters.clone()));
            let key = KeylessKey::new(&chain[0], client, &chain_path)?;
            let certified = CertifiedKey::new(chain, Arc::new(key));
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        } else {
            match (ctx.cert_chain.trim(), ctx.private_key.trim()) {
                ("", "") => builder.with_no_client_auth(),
                ("", _) => {
                    return Err(TlsError::config(
                        format!("{path}.cert_chain"),
                        "private_key is set without a certificate chain",
                    ))
                }
                (_, "") => {
                    return Err(TlsError::config(
                        format!("{path}.private_key"),
                        "cert_chain is set without a private key",
                    ))
                }
                _ => {
                    let chain = source::load_certs(&ctx.cert_chain, &format!("{path}.cert_chain"))?;
                    let key = source::load_key(&ctx.private_key, &format!("{path}.private_key"))?;
                    let certified = CertifiedKey::from_der(chain, key, &p.provider)
                        .map_err(|e| TlsError::rustls(format!("{path}.private_key"), e))?;
                    builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
                }
            }
        };
        config.alpn_protocols = p.alpn;
        Ok(ClientConfig {
            backend: Backend::Rustls,
            config: Arc::new(config),
            #[cfg(feature = "openssl")]
            openssl: None,
            server_name,
            fall_back: ctx.fall_back,
            counters: HandshakeCounters::default(),
            keyless: counters,
        })
    }

    /// The OpenSSL backend with `settings` (same keys as [`ClientConfig::build`]; without
    /// `ca_cert` the system's default CA paths are used instead of the compiled-in roots). The
    /// accelerator is loaded first; when it fails, `settings.on_failure` decides: refuse
    /// ([`TlsError::Offload`]) or build with rustls ([`ClientConfig::backend`] then says so).
    #[cfg(feature = "openssl")]
    pub fn build_openssl(
        ctx: &TlsContext,
        path: &str,
        settings: &crate::openssl::OpenSslBackend,
    ) -> Result<ClientConfig, TlsError> {
        if let Kind::Keyless(_) = kind::of(ctx, path)? {
            return Err(TlsError::config(
                format!("{path}.type"),
                "\"keyless\" needs the rustls backend, not openssl",
            ));
        }
        let loaded = crate::openssl::Settings::load(settings, path)?;
        let mut config = ClientConfig::build_rustls(ctx, path, None)?;
        if let Some(settings) = loaded {
            config.openssl = Some(Arc::new(OpenSslClient {
                context: crate::openssl::client_context(ctx, path)?,
                settings,
                verify: !ctx.insecure_skip,
            }));
            config.backend = Backend::OpenSsl;
        }
        Ok(config)
    }

    /// Counts this config's handshakes into `counters` (e.g. from a cluster's metrics scope).
    pub fn with_counters(mut self, counters: HandshakeCounters) -> ClientConfig {
        self.counters = counters;
        self
    }

    /// This config's handshake counters.
    pub fn counters(&self) -> &HandshakeCounters {
        &self.counters
    }

    /// Keyless signing counters (`type: keyless`), `None` otherwise.
    pub fn keyless_stats(&self) -> Option<KeylessStats> {
        self.keyless.as_ref().map(|c| c.stats())
    }

    /// The backend that runs the handshakes.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `fall_back`: the caller retries in plaintext when the handshake fails (MOSN cluster
    /// behaviour); this crate only reports it.
    pub fn fall_back(&self) -> bool {
        self.fall_back
    }

    /// The configured `server_name`, if any.
    pub fn server_name(&self) -> Option<String> {
        self.server_name.as_ref().map(|n| n.to_str().into_owned())
    }

    /// Runs the client handshake on `io`. The server name is the configured `server_name`,
    /// else `host` (a DNS name, sent as SNI, or an IP literal, not sent). Bound it with a
    /// timeout: a silent peer is waited for.
    pub async fn connect<IO>(&self, io: IO, host: &str) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        #[cfg(feature = "openssl")]
        let result = match &self.openssl {
            Some(o) => self.connect_openssl(o, io, host).await,
            None => self.connect_rustls(io, host).await,
        };
        #[cfg(not(feature = "openssl"))]
        let result = self.connect_rustls(io, host).await;
        self.counters.record(self.backend, result.is_ok());
        if let Err(e) = &result {
            tracing::debug!(host, error = %e, "TLS connect failed");
        }
        result
    }

    async fn connect_rustls<IO>(&self, io: IO, host: &str) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_string())
                .map_err(|_| TlsError::ServerName(host.to_string()))?,
        };
        let sni = match &name {
            ServerName::DnsName(dns) => Some(dns.as_ref().to_string()),
            _ => None,
        };
        let connector = TlsConnector::from(self.config.clone());
        let stream = if self.keyless.is_some() {
            // the client certificate's signature is remote: drive the handshake with the
            // signing steps on the blocking pool, then hand the finished connection to the
            // same tokio-rustls stream type (its fresh connection is replaced before use)
            let mut io = io;
            let conn = rustls::ClientConnection::new(self.config.clone(), name.clone())
                .map_err(|e| TlsError::Handshake(std::io::Error::other(e)))?;
            let conn = keyless::handshake(conn, &mut io)
                .await
                .map_err(TlsError::Handshake)?;
            connector
                .connect_with(name, io, move |fresh| *fresh = conn)
                .await
                .map_err(TlsError::Handshake)?
        } else {
            connector
                .connect(name, io)
                .await
                .map_err(TlsError::Handshake)?
        };
        let info = SessionInfo::from_rustls(stream.get_ref().1, sni, None);
        Ok(TlsStream::rustls(stream.into(), info))
    }
}

/// The OpenSSL side of a client config.
#[cfg(feature = "openssl")]
struct OpenSslClient {
    context: ::openssl::ssl::SslContext,
    settings: crate::openssl::Settings,
    /// Check the server's name (off with `insecure_skip`).
    verify: bool,
}

#[cfg(feature = "openssl")]
impl ClientConfig {
    async fn connect_openssl<IO>(
        &self,
        o: &OpenSslClient,
        io: IO,
        host: &str,
    ) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_string())
                .map_err(|_| TlsError::ServerName(host.to_string()))?,
        };
        let other = |e: ::openssl::error::ErrorStack| TlsError::Handshake(std::io::Error::other(e));
        let mut ssl = ::openssl::ssl::Ssl::new(&o.context).map_err(other)?;
        ssl.set_connect_state();
        let sni = match &name {
            ServerName::DnsName(dns) => {
                let dns = dns.as_ref();
                ssl.set_hostname(dns).map_err(other)?;
                if o.verify {
                    ssl.param_mut().set_host(dns).map_err(other)?;
                }
                Some(dns.to_string())
            }
            ServerName::IpAddress(ip) => {
                if o.verify {
                    let ip = std::net::IpAddr::from(*ip);
                    ssl.param_mut().set_ip(ip).map_err(other)?;
                }
                None
            }
            _ => None,
        };
        let mut stream = crate::openssl::Stream::new(ssl, io, o.settings.async_mode, Vec::new())
            .map_err(TlsError::Handshake)?;
        stream.handshake().await.map_err(TlsError::Handshake)?;
        o.settings.record_handshake();
        let info = crate::openssl::info(stream.ssl(), sni, None);
        Ok(TlsStream::openssl(stream, info))
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("backend", &self.backend)
            .field("server_name", &self.server_name)
            .field("alpn", &self.config.alpn_protocols)
            .field("fall_back", &self.fall_back)
            .finish()
    }
}

fn roots(ctx: &TlsContext, path: &str) -> Result<RootCertStore, TlsError> {
    if ctx.ca_cert.trim().is_empty() {
        Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    } else {
        source::load_roots(&ctx.ca_cert, &format!("{path}.ca_cert"))
    }
}

// === insecure_skip ===

/// `insecure_skip: true`: accepts ANY server certificate, for any name, expired or self-signed.
/// Only the handshake signature is checked (the peer holds the key of the certificate it sent),
/// which protects against nothing when the certificate itself is not trusted. Never the default.
#[derive(Debug)]
pub(crate) struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
