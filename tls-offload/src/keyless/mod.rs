//! Keyless TLS (`tls_context.type: "keyless"`): the certificate chain is local, the private key
//! stays in another process, a key server, asked for each handshake signature over a socket.
//!
//! ```text
//!  mod.rs    config (KeylessConfig from extend_verify), the signer (a rustls SigningKey whose
//!            Signer asks the key server through a pool of blocking connections, with its own
//!            deadline), key types from the certificate's SPKI, counters (KeylessStats)
//!  wire.rs   the wire protocol, byte by byte (also used by the `mosn-keyserver` binary)
//!  drive.rs  the handshake driver that keeps the signing step off the event loop
//! ```
//!
//! # Config
//!
//! ```json
//! "tls_context": {
//!   "status": true, "type": "keyless",
//!   "cert_chain": "/etc/mosn/cert.pem", "private_key": "",
//!   "extend_verify": {"key_server": "unix:/run/keyserver.sock", "timeout": "200ms",
//!                     "connections": 8}
//! }
//! ```
//!
//! - `key_server` (required): `unix:/path/to.sock`, or `host:port` (`127.0.0.1:9443`,
//!   `[::1]:9443`, `keys.internal:9443`, resolved at connect time).
//! - `timeout` (Go duration, default `1s`): the signer's own deadline per signature, waiting
//!   for a free connection, connecting, and the answer included. Past it the handshake fails.
//! - `connections` (default 8): at most this many connections to the key server per context;
//!   idle ones are kept and reused, a broken one is dropped and replaced on next use.
//! - `private_key` must be empty (the key would not be remote otherwise).
//!
//! Key types are read from the certificate's SubjectPublicKeyInfo: ECDSA P-256
//! (`ecdsa_secp256r1_sha256`), P-384 (`ecdsa_secp384r1_sha384`), RSA (RSA-PSS SHA-256/384/512
//! first, then PKCS#1 SHA-256/384/512) and Ed25519. The key id sent to the key server is the
//! SHA-256 of that SPKI (DER).
//!
//! # Not blocking the worker
//!
//! rustls's `Signer::sign` is synchronous, and a worker is a single-threaded event loop. For a
//! keyless context the handshake is driven here ([`drive`]): records are read and written on
//! the worker, and each handshake step that may sign (`Accepted::into_connection`,
//! `process_new_packets`) runs on tokio's blocking pool; the signer blocks that thread only,
//! for at most `timeout`. The finished connection becomes the same `TlsStream` as any rustls
//! connection. A key server that answers late fails its handshake, never the worker.
//!
//! A reused connection that turns out broken (the key server restarted) is replaced by a fresh
//! one once within the same signature, so a restart costs no handshake.

mod drive;
pub mod wire;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::{alg_id, CertificateDer, SubjectPublicKeyInfoDer};
use serde_json::Value;

pub(crate) use drive::{handshake, off_loop};

use crate::kind::{check_keys, duration, object, string};
use crate::TlsError;

/// Default deadline of one signature.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default largest number of connections to the key server per context.
pub const DEFAULT_CONNECTIONS: usize = 8;

/// Where the key server listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyServerAddr {
    /// A unix stream socket (`unix:/path`).
    Unix(PathBuf),
    /// A TCP address, `host:port`.
    Tcp(String),
}

impl KeyServerAddr {
    /// Parses `unix:/path` or `host:port`.
    pub fn parse(text: &str) -> Result<KeyServerAddr, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path".into());
            }
            return Ok(KeyServerAddr::Unix(PathBuf::from(path)));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("`{text}` is neither `unix:/path` nor `host:port`"));
        };
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("`{text}` needs a host and a port (1-65535)"));
        }
        Ok(KeyServerAddr::Tcp(text.to_string()))
    }
}

impl fmt::Display for KeyServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyServerAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            KeyServerAddr::Tcp(a) => f.write_str(a),
        }
    }
}

/// A keyless context's settings (its `extend_verify`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeylessConfig {
    /// The key server.
    pub key_server: KeyServerAddr,
    /// Deadline of one signature.
    pub timeout: Duration,
    /// Most connections to the key server at once.
    pub connections: usize,
}

impl KeylessConfig {
    /// Parses `extend_verify` of a keyless context; `path` is the context's JSON path.
    pub fn from_json(value: Option<&Value>, path: &str) -> Result<KeylessConfig, TlsError> {
        let at = format!("{path}.extend_verify");
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Err(TlsError::config(
                at,
                "type \"keyless\" needs {\"key_server\": \"unix:/path\" or \"host:port\"}",
            ));
        };
        let map = object(value, &at)?;
        check_keys(map, &["key_server", "timeout", "connections"], &at)?;
        let ks_at = format!("{at}.key_server");
        let key_server = match map.get("key_server") {
            None => return Err(TlsError::config(ks_at, "required")),
            Some(v) => {
                KeyServerAddr::parse(string(v, &ks_at)?).map_err(|e| TlsError::config(ks_at, e))?
            }
        };
        let timeout = match map.get("timeout") {
            None => DEFAULT_TIMEOUT,
            Some(v) => {
                let t_at = format!("{at}.timeout");
                let t = duration(v, &t_at)?;
                if t.is_zero() {
                    return Err(TlsError::config(t_at, "must be more than 0"));
                }
                t
            }
        };
        let connections = match map.get("connections") {
            None => DEFAULT_CONNECTIONS,
            Some(v) => {
                let c_at = format!("{at}.connections");
                match v.as_u64() {
                    Some(n @ 1..=1024) => n as usize,
                    _ => {
                        return Err(TlsError::config(
                            c_at,
                            format!("must be an integer from 1 to 1024, not {v}"),
                        ))
                    }
                }
            }
        };
        Ok(KeylessConfig {
            key_server,
            timeout,
            connections,
        })
    }
}

// === counters ===

/// Keyless signing counters of one server or client config (all its keyless contexts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeylessStats {
    /// Signatures asked of the key server.
    pub requested: u64,
    /// Signatures the key server returned.
    pub signed: u64,
    /// Signatures that failed: key server unreachable, broken connection, error reply.
    pub failed: u64,
    /// Signatures that missed their deadline (`timeout`).
    pub timed_out: u64,
    /// Connections opened to key servers.
    pub connects: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requested: AtomicU64,
    signed: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    connects: AtomicU64,
}

impl Counters {
    pub(crate) fn stats(&self) -> KeylessStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KeylessStats {
            requested: get(&self.requested),
            signed: get(&self.signed),
            failed: get(&self.failed),
            timed_out: get(&self.timed_out),
            connects: get(&self.connects),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

// === the key server client ===

/// One context's connections to its key server, shared by its signers; survives reloads.
pub(crate) struct Client {
    config: KeylessConfig,
    pool: Mutex<Pool>,
    freed: Condvar,
    next_id: AtomicU64,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Conn>,
    open: usize,
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn set_timeouts(&self, d: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.set_read_timeout(Some(d))?;
                s.set_write_timeout(Some(d))
            }
            Conn::Unix(s) => {
                s.set_read_timeout(Some(d))?;
                s.set_write_timeout(Some(d))
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a signature failed.
enum Failure {
    /// The deadline passed.
    Timeout(String),
    /// The connection broke or could not be made (worth one retry on a reused connection).
    Io(String),
    /// The key server answered with an error.
    Refused(String),
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Client {
    pub(crate) fn new(config: KeylessConfig, counters: Arc<Counters>) -> Client {
        Client {
            config,
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
            next_id: AtomicU64::new(1),
            counters,
        }
    }

    fn remaining(&self, deadline: Instant) -> Result<Duration, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.timed_out())
        } else {
            Ok(left)
        }
    }

    fn timed_out(&self) -> Failure {
        Failure::Timeout(format!(
            "key server {} did not answer within {:?}",
            self.config.key_server, self.config.timeout
        ))
    }

    fn connect(&self, deadline: Instant) -> Result<Conn, Failure> {
        let left = self.remaining(deadline)?;
        let fail = |e: io::Error| {
            if is_timeout(&e) {
                self.timed_out()
            } else {
                Failure::Io(format!(
                    "cannot connect to key server {}: {e}",
                    self.config.key_server
                ))
            }
        };
        let conn = match &self.config.key_server {
            KeyServerAddr::Unix(path) => Conn::Unix(UnixStream::connect(path).map_err(fail)?),
            KeyServerAddr::Tcp(addr) => {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address resolved");
                let mut found = None;
                for a in addr.to_socket_addrs().map_err(fail)? {
                    match TcpStream::connect_timeout(&a, left) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = found.ok_or_else(|| fail(last))?;
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }
        };
        bump(&self.counters.connects);
        Ok(conn)
    }

    /// An idle connection (true: reused) or a new one, waiting for a free slot until the
    /// deadline.
    fn checkout(&self, deadline: Instant) -> Result<(Conn, bool), Failure> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok((conn, true));
            }
            if pool.open < self.config.connections {
                pool.open += 1;
                drop(pool);
                return match self.connect(deadline) {
                    Ok(conn) => Ok((conn, false)),
                    Err(e) => {
                        self.discard();
                        Err(e)
                    }
                };
            }
            let left = self.remaining(deadline)?;
            pool = self
                .freed
                .wait_timeout(pool, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn checkin(&self, conn: Conn) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        pool.idle.push(conn);
        self.freed.notify_one();
    }

    fn discard(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        pool.open = pool.open.saturating_sub(1);
        self.freed.notify_one();
    }

    /// One request/reply on `conn`. `Ok` means the connection is still usable.
    fn exchange(
        &self,
        conn: &mut Conn,
        request: &wire::Request,
        deadline: Instant,
    ) -> Result<wire::Reply, Failure> {
        let io_fail = |e: io::Error| {
            if is_timeout(&e) {
                self.timed_out()
            } else {
                Failure::Io(format!("key server {}: {e}", self.config.key_server))
            }
        };
        conn.set_timeouts(self.remaining(deadline)?)
            .map_err(io_fail)?;
        conn.write_all(&request.encode()).map_err(io_fail)?;
        loop {
            conn.set_timeouts(self.remaining(deadline)?)
                .map_err(io_fail)?;
            let body = wire::read_frame(conn).map_err(io_fail)?;
            let reply = wire::Reply::decode(&body).map_err(|e| {
                Failure::Io(format!(
                    "key server {} sent a bad reply: {e}",
                    self.config.key_server
                ))
            })?;
            if reply.id == request.id {
                return Ok(reply);
            }
            // an answer to an older request of this connection: skip it
        }
    }

    /// Asks the key server to sign; blocks the calling thread until the answer or the deadline.
    fn sign(
        &self,
        key_id: &[u8; 32],
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, rustls::Error> {
        bump(&self.counters.requested);
        let deadline = Instant::now() + self.config.timeout;
        let request = wire::Request {
            opcode: wire::OP_SIGN,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            scheme: u16::from(scheme),
            key_id: *key_id,
            message: message.to_vec(),
        };
        let result = self.sign_with_retry(&request, deadline);
        match result {
            Ok(signature) => {
                bump(&self.counters.signed);
                Ok(signature)
            }
            Err(failure) => {
                let (counter, text) = match failure {
                    Failure::Timeout(t) => (&self.counters.timed_out, t),
                    Failure::Io(t) | Failure::Refused(t) => (&self.counters.failed, t),
                };
                bump(counter);
                tracing::warn!(key_server = %self.config.key_server, ?scheme, error = %text, "keyless signature failed");
                Err(rustls::Error::General(format!("keyless: {text}")))
            }
        }
    }

    fn sign_with_retry(
        &self,
        request: &wire::Request,
        deadline: Instant,
    ) -> Result<Vec<u8>, Failure> {
        let mut retried = false;
        loop {
            let (mut conn, reused) = self.checkout(deadline)?;
            match self.exchange(&mut conn, request, deadline) {
                Ok(reply) => {
                    self.checkin(conn);
                    return match reply.status {
                        wire::Status::Ok => Ok(reply.payload),
                        status => Err(Failure::Refused(format!(
                            "key server {} refused to sign ({status:?}): {}",
                            self.config.key_server,
                            reply.text()
                        ))),
                    };
                }
                Err(e) => {
                    drop(conn);
                    self.discard();
                    match e {
                        // a pooled connection the key server closed (restart): once more, fresh
                        Failure::Io(_) if reused && !retried => retried = true,
                        e => return Err(e),
                    }
                }
            }
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("keyless::Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// === key types and the signing key ===

/// The key types a keyless certificate may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Rsa,
    Ed25519,
}

impl KeyKind {
    /// From a SubjectPublicKeyInfo (DER, outer SEQUENCE included).
    fn of_spki(spki: &[u8]) -> Option<KeyKind> {
        const RSA_OID: &[u8] = &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ];
        let (0x30, body, _) = crate::source::tlv(spki)? else {
            return None;
        };
        let (0x30, alg, _) = crate::source::tlv(body)? else {
            return None;
        };
        if alg == alg_id::ECDSA_P256.as_ref() {
            Some(KeyKind::EcdsaP256)
        } else if alg == alg_id::ECDSA_P384.as_ref() {
            Some(KeyKind::EcdsaP384)
        } else if alg == alg_id::ED25519.as_ref() {
            Some(KeyKind::Ed25519)
        } else if alg.starts_with(RSA_OID) {
            Some(KeyKind::Rsa)
        } else {
            None
        }
    }

    /// The schemes this key signs with, in preference order.
    fn schemes(self) -> &'static [SignatureScheme] {
        use SignatureScheme as S;
        match self {
            KeyKind::EcdsaP256 => &[S::ECDSA_NISTP256_SHA256],
            KeyKind::EcdsaP384 => &[S::ECDSA_NISTP384_SHA384],
            KeyKind::Ed25519 => &[S::ED25519],
            KeyKind::Rsa => &[
                S::RSA_PSS_SHA256,
                S::RSA_PSS_SHA384,
                S::RSA_PSS_SHA512,
                S::RSA_PKCS1_SHA256,
                S::RSA_PKCS1_SHA384,
                S::RSA_PKCS1_SHA512,
            ],
        }
    }

    fn algorithm(self) -> SignatureAlgorithm {
        match self {
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => SignatureAlgorithm::ECDSA,
            KeyKind::Ed25519 => SignatureAlgorithm::ED25519,
            KeyKind::Rsa => SignatureAlgorithm::RSA,
        }
    }
}

/// SHA-256 with the crypto provider compiled in.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Some(suite) = crate::params::provider::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13() {
        let digest = suite.common.hash_provider.hash(data);
        let digest = digest.as_ref();
        if digest.len() == 32 {
            out.copy_from_slice(digest);
        }
    }
    out
}

/// The key id of a SubjectPublicKeyInfo (DER): its SHA-256.
pub fn key_id(spki: &[u8]) -> [u8; 32] {
    sha256(spki)
}

/// A certificate's SubjectPublicKeyInfo (DER), if the certificate parses.
pub fn spki_of(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    Some(cert.subject_public_key_info().as_ref().to_vec())
}

/// A private key that lives in the key server.
#[derive(Debug)]
pub(crate) struct KeylessKey {
    client: Arc<Client>,
    key_id: [u8; 32],
    kind: KeyKind,
    spki: Vec<u8>,
}

impl KeylessKey {
    /// The remote key of `leaf`; `path` names the `cert_chain` key for errors.
    pub(crate) fn new(
        leaf: &CertificateDer<'_>,
        client: Arc<Client>,
        path: &str,
    ) -> Result<KeylessKey, TlsError> {
        let spki = spki_of(leaf).ok_or_else(|| {
            TlsError::config(
                path,
                "the leaf certificate does not parse (X.509 v3 expected)",
            )
        })?;
        let kind = KeyKind::of_spki(&spki).ok_or_else(|| {
            TlsError::config(
                path,
                "keyless supports ECDSA P-256/P-384, RSA and Ed25519 certificates only",
            )
        })?;
        Ok(KeylessKey {
            client,
            key_id: key_id(&spki),
            kind,
            spki,
        })
    }
}

impl SigningKey for KeylessKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = *self.kind.schemes().iter().find(|s| offered.contains(s))?;
        Some(Box::new(KeylessSigner {
            client: self.client.clone(),
            key_id: self.key_id,
            scheme,
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.kind.algorithm()
    }
}

#[derive(Debug)]
struct KeylessSigner {
    client: Arc<Client>,
    key_id: [u8; 32],
    scheme: SignatureScheme,
}

impl Signer for KeylessSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.client.sign(&self.key_id, self.scheme, message)
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P: &str = "listeners[0].filter_chains[0].tls_context";

    fn parse(v: Value) -> Result<KeylessConfig, String> {
        KeylessConfig::from_json(Some(&v), P).map_err(|e| e.to_string())
    }

    #[test]
    fn config_parses_and_errors_name_the_key() {
        let c = parse(json!({"key_server": "unix:/run/k.sock"})).unwrap();
        assert_eq!(c.key_server, KeyServerAddr::Unix("/run/k.sock".into()));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.connections, DEFAULT_CONNECTIONS);
        let c =
            parse(json!({"key_server": "127.0.0.1:9443", "timeout": "200ms", "connections": 2}))
                .unwrap();
        assert_eq!(c.key_server, KeyServerAddr::Tcp("127.0.0.1:9443".into()));
        assert_eq!(c.timeout, Duration::from_millis(200));
        assert_eq!(c.connections, 2);
        for (v, at) in [
            (json!({}), "extend_verify.key_server: required"),
            (
                json!({"key_server": "nowhere"}),
                "extend_verify.key_server: ",
            ),
            (json!({"key_server": "h:0"}), "extend_verify.key_server: "),
            (json!({"key_server": 5}), "extend_verify.key_server: "),
            (
                json!({"key_server": "h:1", "timeout": "soon"}),
                "extend_verify.timeout: ",
            ),
            (
                json!({"key_server": "h:1", "timeout": "0s"}),
                "extend_verify.timeout: ",
            ),
            (
                json!({"key_server": "h:1", "connections": 0}),
                "extend_verify.connections: ",
            ),
            (
                json!({"key_server": "h:1", "key": "x"}),
                "extend_verify.key: unknown key",
            ),
            (json!([1]), "extend_verify: "),
        ] {
            let e = parse(v.clone()).unwrap_err();
            assert!(e.starts_with(&format!("{P}.{at}")), "{v}: {e}");
        }
        let e = KeylessConfig::from_json(None, P).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{P}.extend_verify: ")), "{e}");
    }

    #[test]
    fn key_kinds_come_from_the_spki_and_garbage_is_none() {
        // SEQUENCE { SEQUENCE { alg }, BIT STRING {} }
        let spki = |alg: &[u8]| {
            let mut inner = vec![0x30, alg.len() as u8];
            inner.extend_from_slice(alg);
            inner.extend_from_slice(&[0x03, 0x01, 0x00]);
            let mut out = vec![0x30, inner.len() as u8];
            out.extend_from_slice(&inner);
            out
        };
        assert_eq!(
            KeyKind::of_spki(&spki(&alg_id::ECDSA_P256)),
            Some(KeyKind::EcdsaP256)
        );
        assert_eq!(
            KeyKind::of_spki(&spki(&alg_id::ECDSA_P384)),
            Some(KeyKind::EcdsaP384)
        );
        assert_eq!(
            KeyKind::of_spki(&spki(&alg_id::ED25519)),
            Some(KeyKind::Ed25519)
        );
        assert_eq!(
            KeyKind::of_spki(&spki(&alg_id::RSA_ENCRYPTION)),
            Some(KeyKind::Rsa)
        );
        assert_eq!(KeyKind::of_spki(&spki(&alg_id::ECDSA_P521)), None);
        for n in 0..20 {
            let _ = KeyKind::of_spki(&spki(&alg_id::ECDSA_P256)[..n]);
        }
        assert_eq!(sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
