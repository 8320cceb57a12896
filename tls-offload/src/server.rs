//! ServerConfig: a listener's `tls_context` (or `tls_context_set`) as one rustls config per
//! context, the SNI/ALPN selection between them, the accept path and certificate reload.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use mosn_config::TlsContext;
use rustls::crypto::CryptoProvider;
use rustls::server::{
    danger::ClientCertVerifier, Acceptor, ProducesTickets, ServerSessionMemoryCache,
    StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use crate::keyless::{self, KeylessKey, KeylessStats};
use crate::kind::{self, Kind};
use crate::{params, source, Backend, HandshakeCounters, SessionInfo, TlsError, TlsStream};

/// Entries of each context's stateful session cache (always on; tickets come on top when
/// `ticket` is set).
const SESSION_CACHE_SIZE: usize = 4096;

/// A listener's TLS configuration: one or more contexts chosen by SNI, reloadable.
///
/// Cheap to clone (the state is shared); share one per listener across workers.
#[derive(Clone)]
pub struct ServerConfig {
    shared: Arc<Shared>,
    counters: HandshakeCounters,
}

struct Shared {
    backend: Backend,
    /// OpenSSL backend: async mode and the accelerator (None for rustls).
    #[cfg(feature = "openssl")]
    openssl: Option<OpenSslSettings>,
    path: String,
    specs: Vec<Spec>,
    /// Keyless signing counters, when a context is keyless.
    keyless: Option<Arc<keyless::Counters>>,
    snapshot: ArcSwap<Snapshot>,
    generation: AtomicU64,
    reload_lock: Mutex<()>,
}

#[cfg(feature = "openssl")]
type OpenSslSettings = crate::openssl::Settings;
#[cfg(not(feature = "openssl"))]
type OpenSslSettings = ();

/// One enabled context as configured, plus the state that survives reloads.
struct Spec {
    /// Index in the slice given to `build` (`tls_context_set[index]`).
    index: usize,
    /// JSON path of the context.
    path: String,
    ctx: TlsContext,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Option<Arc<dyn ProducesTickets>>,
    /// `type: keyless`: the key server connections (kept across reloads).
    keyless: Option<Arc<keyless::Client>>,
}

/// Everything a handshake needs, swapped whole on reload.
struct Snapshot {
    contexts: Vec<Built>,
    selector: Selector,
    /// OpenSSL backend: one context per entry of `contexts`, same order (empty for rustls).
    #[cfg(feature = "openssl")]
    openssl: Vec<::openssl::ssl::SslContext>,
}

struct Built {
    index: usize,
    config: Arc<rustls::ServerConfig>,
    key: Arc<CertifiedKey>,
    /// The key is remote: the handshake is driven off the event loop.
    keyless: bool,
}

/// What selection looks at; positions index `Snapshot::contexts`.
#[derive(Default)]
struct Selector {
    /// Served name (exact or `*.parent`) -> position; the first context wins a shared name.
    names: HashMap<String, usize>,
    /// Each context's ALPN list.
    alpn: Vec<Vec<Vec<u8>>>,
}

impl ServerConfig {
    /// Builds a listener's config from its `tls_context` (one element) or `tls_context_set`
    /// (several), the backend selected by the contexts' `type` (see the crate README):
    /// `""`/`"rustls"`: rustls; `"openssl"`: the OpenSSL backend with the settings of
    /// `extend_verify` (feature `openssl`; every context of a set must then be `openssl` with
    /// the same settings); `"keyless"`: rustls with the key in a key server. `path` is the JSON
    /// path of that key (`listeners[0].filter_chains[0].tls_context`); errors name
    /// `{path}.cert_chain` for one context and `{path}[i].cert_chain` for a set. Contexts with
    /// `status: false` are skipped.
    pub fn build(contexts: &[TlsContext], path: &str) -> Result<ServerConfig, TlsError> {
        let kinds = kinds(contexts, path)?;
        #[cfg(feature = "openssl")]
        if let Some(settings) = openssl_of_set(&kinds, path)? {
            return ServerConfig::build_openssl_kinds(contexts, path, &settings, kinds);
        }
        ServerConfig::build_inner(Backend::Rustls, contexts, path, None, kinds)
    }

    /// [`ServerConfig::build`] with an explicit backend, whatever the contexts' `type` says
    /// (`Backend::OpenSsl`: the OpenSSL backend's default settings, no accelerator). `keyless`
    /// contexts need `Backend::Rustls`.
    pub fn build_with(
        backend: Backend,
        contexts: &[TlsContext],
        path: &str,
    ) -> Result<ServerConfig, TlsError> {
        let kinds = kinds(contexts, path)?;
        match backend {
            Backend::Rustls => ServerConfig::build_inner(backend, contexts, path, None, kinds),
            #[cfg(feature = "openssl")]
            Backend::OpenSsl => {
                ServerConfig::build_openssl_kinds(contexts, path, &Default::default(), kinds)
            }
        }
    }

    /// The OpenSSL backend with `settings`: loads the accelerator first (once per process), so
    /// the keys loaded next use it. When it fails, `settings.on_failure` decides: refuse
    /// ([`TlsError::Offload`]) or build with rustls ([`ServerConfig::backend`] then says so).
    #[cfg(feature = "openssl")]
    pub fn build_openssl(
        contexts: &[TlsContext],
        path: &str,
        settings: &crate::openssl::OpenSslBackend,
    ) -> Result<ServerConfig, TlsError> {
        let kinds = kinds(contexts, path)?;
        ServerConfig::build_openssl_kinds(contexts, path, settings, kinds)
    }

    #[cfg(feature = "openssl")]
    fn build_openssl_kinds(
        contexts: &[TlsContext],
        path: &str,
        settings: &crate::openssl::OpenSslBackend,
        kinds: Vec<Option<Kind>>,
    ) -> Result<ServerConfig, TlsError> {
        match crate::openssl::Settings::load(settings, path)? {
            Some(s) => ServerConfig::build_inner(Backend::OpenSsl, contexts, path, Some(s), kinds),
            None => ServerConfig::build_inner(Backend::Rustls, contexts, path, None, kinds),
        }
    }

    /// The accelerator this config's handshakes use, if any.
    #[cfg(feature = "openssl")]
    pub fn accelerator(&self) -> Option<&crate::openssl::Accelerator> {
        self.shared.openssl.as_ref()?.accelerator.as_ref()
    }

    /// Keyless signing counters of this config (all its keyless contexts together); `None`
    /// when no context is keyless.
    pub fn keyless_stats(&self) -> Option<KeylessStats> {
        self.shared.keyless.as_ref().map(|c| c.stats())
    }

    fn build_inner(
        backend: Backend,
        contexts: &[TlsContext],
        path: &str,
        openssl: Option<OpenSslSettings>,
        kinds: Vec<Option<Kind>>,
    ) -> Result<ServerConfig, TlsError> {
        let mut specs = Vec::with_capacity(contexts.len());
        let mut keyless_counters: Option<Arc<keyless::Counters>> = None;
        for ((index, ctx), kind) in contexts.iter().enumerate().zip(kinds) {
            let cpath = context_path(path, index, contexts.len());
            let Some(kind) = kind else {
                tracing::debug!(path = %cpath, "TLS context has status false: skipped");
                continue;
            };
            let keyless = match kind {
                Kind::Keyless(cfg) => {
                    if backend != Backend::Rustls {
                        return Err(TlsError::config(
                            format!("{cpath}.type"),
                            format!("\"keyless\" needs the rustls backend, not {backend}"),
                        ));
                    }
                    let counters = keyless_counters.get_or_insert_with(Default::default);
                    Some(Arc::new(keyless::Client::new(cfg, counters.clone())))
                }
                _ => None,
            };
            check_server_context(ctx, &cpath, keyless.is_some())?;
            let ticketer = if ctx.ticket.is_empty() {
                None
            } else {
                Some(
                    params::provider::Ticketer::new()
                        .map_err(|e| TlsError::rustls(format!("{cpath}.ticket"), e))?,
                )
            };
            specs.push(Spec {
                index,
                path: cpath,
                ctx: ctx.clone(),
                sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
                ticketer,
                keyless,
            });
        }
        if specs.is_empty() {
            return Err(TlsError::config(path, "no TLS context with status: true"));
        }
        let snapshot = build_snapshot(&specs, backend)?;
        #[cfg(not(feature = "openssl"))]
        let () = openssl.unwrap_or_default();
        Ok(ServerConfig {
            shared: Arc::new(Shared {
                backend,
                #[cfg(feature = "openssl")]
                openssl,
                path: path.to_string(),
                specs,
                keyless: keyless_counters,
                snapshot: ArcSwap::from_pointee(snapshot),
                generation: AtomicU64::new(0),
                reload_lock: Mutex::new(()),
            }),
            counters: HandshakeCounters::default(),
        })
    }

    /// Counts this config's handshakes into `counters` (e.g. from a listener's metrics scope).
    pub fn with_counters(mut self, counters: HandshakeCounters) -> ServerConfig {
        self.counters = counters;
        self
    }

    /// This config's handshake counters.
    pub fn counters(&self) -> &HandshakeCounters {
        &self.counters
    }

    /// The backend that runs the handshakes.
    pub fn backend(&self) -> Backend {
        self.shared.backend
    }

    /// The JSON path given to `build`.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// Runs the server handshake on `io`: reads the ClientHello, picks the context by SNI
    /// (exact, `*.parent` longest first), then ALPN, then the first context, and completes the
    /// handshake with it. Bound it with a timeout: a silent peer is waited for.
    pub async fn accept<IO>(&self, io: IO) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let result = match self.shared.backend {
            Backend::Rustls => self.accept_rustls(io).await,
            #[cfg(feature = "openssl")]
            Backend::OpenSsl => self.accept_openssl(io).await,
        };
        self.counters.record(self.shared.backend, result.is_ok());
        if let Err(e) = &result {
            tracing::debug!(path = %self.shared.path, error = %e, "TLS accept failed");
        }
        result
    }

    async fn accept_rustls<IO>(&self, io: IO) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(Acceptor::default(), io)
            .await
            .map_err(TlsError::Handshake)?;
        let (config, index, sni, keyless) = {
            let hello = start.client_hello();
            let sni = hello.server_name().map(str::to_string);
            let snapshot = self.shared.snapshot.load();
            let offered: Vec<&[u8]> = hello.alpn().map(Iterator::collect).unwrap_or_default();
            let built = &snapshot.contexts[snapshot.selector.select(sni.as_deref(), &offered)];
            (built.config.clone(), built.index, sni, built.keyless)
        };
        if keyless {
            return accept_keyless(start, config, sni, index).await;
        }
        let stream = start
            .into_stream(config)
            .await
            .map_err(TlsError::Handshake)?;
        let info = SessionInfo::from_rustls(stream.get_ref().1, sni, Some(index));
        Ok(TlsStream::rustls(stream.into(), info))
    }

    #[cfg(feature = "openssl")]
    async fn accept_openssl<IO>(&self, mut io: IO) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let settings = self
            .shared
            .openssl
            .as_ref()
            .expect("an OpenSSL config has settings");
        let snapshot = self.shared.snapshot.load_full();
        // With several contexts the ClientHello is read first (parsed by rustls) to pick one the
        // same way as the rustls backend; its bytes are then handed to OpenSSL.
        let (pos, initial) = if snapshot.contexts.len() > 1 {
            let (sni, alpn, bytes) = peek_hello(&mut io).await?;
            let offered: Vec<&[u8]> = alpn.iter().map(Vec::as_slice).collect();
            (snapshot.selector.select(sni.as_deref(), &offered), bytes)
        } else {
            (0, Vec::new())
        };
        let mut ssl = ::openssl::ssl::Ssl::new(&snapshot.openssl[pos])
            .map_err(|e| TlsError::Handshake(std::io::Error::other(e)))?;
        ssl.set_accept_state();
        let mut stream = crate::openssl::Stream::new(ssl, io, settings.async_mode, initial)
            .map_err(TlsError::Handshake)?;
        stream.handshake().await.map_err(TlsError::Handshake)?;
        settings.record_handshake();
        let info = crate::openssl::info(stream.ssl(), None, Some(snapshot.contexts[pos].index));
        Ok(TlsStream::openssl(stream, info))
    }

    /// Re-reads every certificate, key and CA file and swaps the new certificates in for new
    /// handshakes; open connections are untouched. On error the old certificates stay.
    /// Session caches and ticket keys are kept, so sessions resume across a reload.
    pub fn reload(&self) -> Result<(), TlsError> {
        let _serial = self
            .shared
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let snapshot = build_snapshot(&self.shared.specs, self.shared.backend)?;
        self.shared.snapshot.store(Arc::new(snapshot));
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(path = %self.shared.path, generation, "TLS certificates reloaded");
        Ok(())
    }

    /// How many successful reloads happened (0 after `build`).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Relaxed)
    }

    /// The files `reload` re-reads (contexts given as file paths; PEM text is not watched).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = Vec::new();
        for spec in &self.shared.specs {
            let c = &spec.ctx;
            for value in [&c.cert_chain, &c.private_key, &c.ca_cert] {
                if let Some(f) = source::file_of(value) {
                    if !files.contains(&f) {
                        files.push(f);
                    }
                }
            }
        }
        files
    }

    /// The leaf certificate each enabled context currently serves, in config order.
    pub fn leaf_certificates(&self) -> Vec<CertificateDer<'static>> {
        let snapshot = self.shared.snapshot.load();
        snapshot
            .contexts
            .iter()
            .filter_map(|b| b.key.cert.first().cloned())
            .collect()
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("backend", &self.shared.backend)
            .field("path", &self.shared.path)
            .field("contexts", &self.shared.specs.len())
            .field("generation", &self.generation())
            .finish()
    }
}

// === building ===

/// The JSON path of context `index` of `len` (`{path}` alone, `{path}[i]` in a set).
fn context_path(path: &str, index: usize, len: usize) -> String {
    if len == 1 {
        path.to_string()
    } else {
        format!("{path}[{index}]")
    }
}

/// Each context's `type` + `extend_verify`, `None` for contexts with `status: false`.
fn kinds(contexts: &[TlsContext], path: &str) -> Result<Vec<Option<Kind>>, TlsError> {
    contexts
        .iter()
        .enumerate()
        .map(|(i, ctx)| {
            ctx.enabled
                .then(|| kind::of(ctx, &context_path(path, i, contexts.len())))
                .transpose()
        })
        .collect()
}

/// The OpenSSL settings when the contexts select the OpenSSL backend. A set must not mix
/// `openssl` with other types (one listener runs one backend), nor differ in its OpenSSL
/// settings: the error names the first context that does.
#[cfg(feature = "openssl")]
fn openssl_of_set(
    kinds: &[Option<Kind>],
    path: &str,
) -> Result<Option<crate::openssl::OpenSslBackend>, TlsError> {
    let enabled: Vec<(usize, &Kind)> = kinds
        .iter()
        .enumerate()
        .filter_map(|(i, k)| Some((i, k.as_ref()?)))
        .collect();
    if !enabled.iter().any(|(_, k)| matches!(k, Kind::OpenSsl(_))) {
        return Ok(None);
    }
    let (first, first_kind) = enabled[0];
    let at = |i: usize| context_path(path, i, kinds.len());
    for &(i, k) in &enabled[1..] {
        match (first_kind, k) {
            (Kind::OpenSsl(a), Kind::OpenSsl(b)) if a != b => {
                return Err(TlsError::config(
                    format!("{}.extend_verify", at(i)),
                    format!(
                        "differs from {}.extend_verify: the contexts of one listener share one OpenSSL backend",
                        at(first)
                    ),
                ))
            }
            (Kind::OpenSsl(_), Kind::OpenSsl(_)) => {}
            (a, b) if matches!(a, Kind::OpenSsl(_)) || matches!(b, Kind::OpenSsl(_)) => {
                return Err(TlsError::config(
                    format!("{}.type", at(i)),
                    format!(
                        "{:?} cannot share a tls_context_set with {:?} ({}.type): one listener runs one TLS backend",
                        b.name(),
                        a.name(),
                        at(first)
                    ),
                ))
            }
            _ => {}
        }
    }
    match first_kind {
        Kind::OpenSsl(settings) => Ok(Some(settings.clone())),
        _ => Ok(None),
    }
}

/// Completes a keyless handshake: the step that signs (`into_connection`, then each
/// `process_new_packets`) runs on the blocking pool, the IO stays on the worker.
async fn accept_keyless<IO>(
    start: StartHandshake<IO>,
    config: Arc<rustls::ServerConfig>,
    sni: Option<String>,
    index: usize,
) -> Result<TlsStream<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let StartHandshake {
        accepted, mut io, ..
    } = start;
    let cfg = config.clone();
    let conn = match keyless::off_loop(move || accepted.into_connection(cfg))
        .await
        .map_err(TlsError::Handshake)?
    {
        Ok(conn) => conn,
        Err((e, mut alert)) => {
            let mut out = Vec::new();
            let _ = alert.write_all(&mut out);
            let _ = io.write_all(&out).await;
            return Err(TlsError::Handshake(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e,
            )));
        }
    };
    let conn = keyless::handshake(conn, &mut io)
        .await
        .map_err(TlsError::Handshake)?;
    // the same tokio-rustls stream as any rustls connection: its (cheap, unused) fresh
    // connection is replaced by the finished one before it is polled
    let stream = tokio_rustls::TlsAcceptor::from(config)
        .accept_with(io, move |fresh| *fresh = conn)
        .await
        .map_err(TlsError::Handshake)?;
    let info = SessionInfo::from_rustls(stream.get_ref().1, sni, Some(index));
    Ok(TlsStream::rustls(stream.into(), info))
}

/// Keys a server context must have, and keys this backend does not act on.
fn check_server_context(ctx: &TlsContext, path: &str, keyless: bool) -> Result<(), TlsError> {
    if ctx.sds_source.is_some() {
        return Err(TlsError::config(
            format!("{path}.sds_source"),
            "SDS certificates are not supported",
        ));
    }
    if ctx.cert_chain.trim().is_empty() {
        return Err(TlsError::config(
            format!("{path}.cert_chain"),
            "a listener TLS context needs a certificate chain",
        ));
    }
    check_key_presence(
        ctx,
        path,
        keyless,
        "a listener TLS context needs a private key",
    )?;
    warn_ignored(ctx, path);
    Ok(())
}

/// `private_key`: required (with `missing` as the message), except for keyless contexts
/// where it must be empty.
pub(crate) fn check_key_presence(
    ctx: &TlsContext,
    path: &str,
    keyless: bool,
    missing: &str,
) -> Result<(), TlsError> {
    match (keyless, ctx.private_key.trim().is_empty()) {
        (false, true) => Err(TlsError::config(format!("{path}.private_key"), missing)),
        (true, false) => Err(TlsError::config(
            format!("{path}.private_key"),
            "must be empty with type \"keyless\": the private key stays in the key server",
        )),
        _ => Ok(()),
    }
}

/// `callbacks` select MOSN Go plugins: ignored with a warning (`type` and `extend_verify`
/// select the backend, see kind.rs).
pub(crate) fn warn_ignored(ctx: &TlsContext, path: &str) {
    if ctx.callbacks.is_some() {
        tracing::warn!(path = %format!("{path}.callbacks"), "ignored: TLS callbacks are not supported");
    }
}

fn build_snapshot(specs: &[Spec], backend: Backend) -> Result<Snapshot, TlsError> {
    #[cfg(feature = "openssl")]
    let mut openssl = Vec::new();
    let mut contexts = Vec::with_capacity(specs.len());
    let mut selector = Selector::default();
    for (pos, spec) in specs.iter().enumerate() {
        let parts = build_context(spec)?;
        for name in parts.served {
            selector.names.entry(name).or_insert(pos);
        }
        selector.alpn.push(parts.alpn);
        contexts.push(parts.built);
        #[cfg(feature = "openssl")]
        if backend == Backend::OpenSsl {
            openssl.push(crate::openssl::server_context(&spec.ctx, &spec.path)?);
        }
    }
    let _ = backend;
    Ok(Snapshot {
        contexts,
        selector,
        #[cfg(feature = "openssl")]
        openssl,
    })
}

/// One context's rustls config, with what selection needs to know about it.
struct Parts {
    built: Built,
    /// Names served: the certificate's DNS SANs and CN, and `server_name`.
    served: Vec<String>,
    alpn: Vec<Vec<u8>>,
}

fn build_context(spec: &Spec) -> Result<Parts, TlsError> {
    let (ctx, path) = (&spec.ctx, spec.path.as_str());
    let p = params::params(ctx, path)?;
    let chain_path = format!("{path}.cert_chain");
    let chain = source::load_certs(&ctx.cert_chain, &chain_path)?;
    let mut served = source::cert_names(&chain[0]);
    let certified = Arc::new(match &spec.keyless {
        Some(client) => {
            let key = KeylessKey::new(&chain[0], client.clone(), &chain_path)?;
            CertifiedKey::new(chain, Arc::new(key))
        }
        None => {
            let key = source::load_key(&ctx.private_key, &format!("{path}.private_key"))?;
            CertifiedKey::from_der(chain, key, &p.provider)
                .map_err(|e| TlsError::rustls(format!("{path}.private_key"), e))?
        }
    });
    let server_name = ctx.server_name.trim().trim_end_matches('.');
    if !server_name.is_empty() {
        served.push(server_name.to_ascii_lowercase());
    }

    let builder = rustls::ServerConfig::builder_with_provider(p.provider.clone())
        .with_protocol_versions(&p.versions)
        .map_err(|e| TlsError::rustls(path, e))?;
    let builder = match client_verifier(ctx, path, &p.provider)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));
    config.alpn_protocols = p.alpn.clone();
    config.ignore_client_order = p.server_order;
    config.session_storage = spec.sessions.clone();
    if let Some(ticketer) = &spec.ticketer {
        config.ticketer = ticketer.clone();
    }
    let built = Built {
        index: spec.index,
        config: Arc::new(config),
        key: certified,
        keyless: spec.keyless.is_some(),
    };
    Ok(Parts {
        built,
        served,
        alpn: p.alpn,
    })
}

/// `verify_client`: verify a client certificate when one is presented; `require_client_cert`:
/// require one (and verify it). Both need `ca_cert`. MOSN's `require_client_cert` without
/// `verify_client` only requests a certificate and never checks it; here it is verified too.
fn client_verifier(
    ctx: &TlsContext,
    path: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    if !ctx.verify_client && !ctx.require_client_cert {
        return Ok(None);
    }
    let ca_path = format!("{path}.ca_cert");
    if ctx.ca_cert.trim().is_empty() {
        let key = if ctx.require_client_cert {
            "require_client_cert"
        } else {
            "verify_client"
        };
        return Err(TlsError::config(
            ca_path,
            format!("{key} needs a CA to verify client certificates"),
        ));
    }
    let roots = source::load_roots(&ctx.ca_cert, &ca_path)?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if ctx.require_client_cert {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map(Some)
        .map_err(|e| TlsError::config(ca_path, e.to_string()))
}

// === selection ===

/// Reads from `io` until rustls has parsed a whole ClientHello: (SNI, ALPN offer, the bytes
/// read). A hello rustls rejects selects nothing (the first context) and is left to OpenSSL.
#[cfg(feature = "openssl")]
async fn peek_hello<IO>(io: &mut IO) -> Result<(Option<String>, Vec<Vec<u8>>, Vec<u8>), TlsError>
where
    IO: AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut acceptor = Acceptor::default();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = io.read(&mut chunk).await.map_err(TlsError::Handshake)?;
        if n == 0 {
            return Err(TlsError::Handshake(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "peer closed the connection before its ClientHello",
            )));
        }
        seen.extend_from_slice(&chunk[..n]);
        let mut rd = &chunk[..n];
        while !rd.is_empty() {
            match acceptor.read_tls(&mut rd) {
                Ok(0) | Err(_) => return Ok((None, Vec::new(), seen)),
                Ok(_) => {}
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                let sni = hello.server_name().map(str::to_string);
                let alpn = hello
                    .alpn()
                    .map(|a| a.map(<[u8]>::to_vec).collect())
                    .unwrap_or_default();
                return Ok((sni, alpn, seen));
            }
            Ok(None) => {}
            Err(_) => return Ok((None, Vec::new(), seen)),
        }
    }
}

impl Selector {
    /// The context for a ClientHello: SNI exact, then `*.parent` (longest parent first), then
    /// the first context sharing an ALPN protocol with the offer, then the first context.
    fn select(&self, sni: Option<&str>, offered_alpn: &[&[u8]]) -> usize {
        if let Some(sni) = sni {
            let name = sni.trim_end_matches('.').to_ascii_lowercase();
            if let Some(&pos) = self.names.get(&name) {
                return pos;
            }
            let mut wildcard = String::with_capacity(name.len() + 1);
            let mut parent = name.as_str();
            while let Some(dot) = parent.find('.') {
                parent = &parent[dot + 1..];
                if parent.is_empty() {
                    break;
                }
                wildcard.clear();
                wildcard.push_str("*.");
                wildcard.push_str(parent);
                if let Some(&pos) = self.names.get(&wildcard) {
                    return pos;
                }
            }
        }
        if !offered_alpn.is_empty() {
            if let Some(pos) = self
                .alpn
                .iter()
                .position(|a| a.iter().any(|p| offered_alpn.contains(&p.as_slice())))
            {
                return pos;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_exact_then_wildcard_longest_then_alpn_then_first() {
        let names = [
            ("a.example", 1),
            ("*.b.example", 2),
            ("*.example", 3),
            ("*.deep.b.example", 4),
        ];
        let alpn: [&[&str]; 5] = [&[], &[], &["sofa"], &[], &["h2"]];
        let s = Selector {
            names: names.iter().map(|&(n, i)| (n.to_string(), i)).collect(),
            alpn: alpn
                .iter()
                .map(|a| a.iter().map(|p| p.as_bytes().to_vec()).collect())
                .collect(),
        };
        assert_eq!(s.select(Some("a.example"), &[]), 1);
        assert_eq!(s.select(Some("A.Example."), &[]), 1);
        assert_eq!(s.select(Some("x.b.example"), &[]), 2);
        assert_eq!(s.select(Some("x.y.b.example"), &[]), 2);
        assert_eq!(s.select(Some("x.deep.b.example"), &[]), 4);
        assert_eq!(s.select(Some("c.example"), &[]), 3);
        assert_eq!(s.select(Some("example"), &[]), 0);
        assert_eq!(s.select(Some("other.test"), &[]), 0);
        assert_eq!(s.select(None, &[b"http/1.1", b"h2"]), 4);
        assert_eq!(s.select(Some("other.test"), &[b"sofa"]), 2);
        assert_eq!(s.select(None, &[]), 0);
    }
}
