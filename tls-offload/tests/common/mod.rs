//! Test support: a throwaway PKI made with the `openssl` CLI at test time, an in-process TLS
//! server on 127.0.0.1:0 that reports each handshake, and `openssl s_client` / `curl` runners.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mosn_config::TlsContext;
use mosn_tls_offload::{ServerConfig, SessionInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

// === PKI ===

/// Key types and encodings of the test certificates.
#[derive(Clone, Copy, Debug)]
pub enum Key {
    /// ECDSA P-256, PKCS#8 (`BEGIN PRIVATE KEY`).
    EcPkcs8,
    /// ECDSA P-256, SEC1 (`BEGIN EC PRIVATE KEY`).
    EcSec1,
    /// RSA-2048, PKCS#8.
    RsaPkcs8,
    /// RSA-2048, PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    RsaPkcs1,
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Cert {
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }
    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key).unwrap()
    }
    /// The leaf certificate's DER bytes.
    pub fn der(&self) -> Vec<u8> {
        let out = openssl(&["x509", "-in", s(&self.cert), "-outform", "DER"]);
        out.stdout
    }
}

/// A temporary directory of test keys and certificates, removed on drop.
pub struct Pki {
    dir: tempfile::TempDir,
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl CLI must be installed (/usr/bin/openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const REQ_CONFIG: &str = "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\n\
    basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
    subjectKeyIdentifier = hash\n";

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(pki.path("req.cnf"), REQ_CONFIG).unwrap();
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn key(&self, name: &str, kind: Key) -> PathBuf {
        let key = self.path(&format!("{name}.key"));
        match kind {
            Key::EcPkcs8 => {
                openssl(&[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    s(&key),
                ]);
            }
            Key::EcSec1 => {
                openssl(&[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    s(&key),
                ]);
            }
            Key::RsaPkcs8 => {
                openssl(&[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    s(&key),
                ]);
            }
            Key::RsaPkcs1 => {
                let tmp = self.path(&format!("{name}.pk8"));
                openssl(&[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    s(&tmp),
                ]);
                openssl(&["rsa", "-in", s(&tmp), "-traditional", "-out", s(&key)]);
            }
        }
        key
    }

    /// A self-signed CA (ECDSA P-256).
    pub fn ca(&self, name: &str) -> Cert {
        let key = self.key(name, Key::EcPkcs8);
        let cert = self.path(&format!("{name}.pem"));
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            s(&key),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "30",
            "-config",
            s(&self.path("req.cnf")),
            "-extensions",
            "v3_ca",
            "-out",
            s(&cert),
        ]);
        Cert { cert, key }
    }

    /// A leaf signed by `ca` with subject CN `cn` and DNS SANs `dns` (plus IP 127.0.0.1),
    /// usable as server and client certificate.
    pub fn leaf(&self, ca: &Cert, name: &str, kind: Key, cn: &str, dns: &[&str]) -> Cert {
        let key = self.key(name, kind);
        let csr = self.path(&format!("{name}.csr"));
        let cert = self.path(&format!("{name}.pem"));
        let ext = self.path(&format!("{name}.ext"));
        let mut san: Vec<String> = dns.iter().map(|d| format!("DNS:{d}")).collect();
        san.push("IP:127.0.0.1".to_string());
        std::fs::write(
            &ext,
            format!(
                "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = {}\n\
                 authorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n",
                san.join(",")
            ),
        )
        .unwrap();
        openssl(&[
            "req",
            "-new",
            "-key",
            s(&key),
            "-subj",
            &format!("/CN={cn}"),
            "-config",
            s(&self.path("req.cnf")),
            "-out",
            s(&csr),
        ]);
        let serial = format!(
            "{}",
            SERIAL.fetch_add(1, Ordering::Relaxed) + 1000 * std::process::id() as u64
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&ca.cert),
            "-CAkey",
            s(&ca.key),
            "-set_serial",
            &serial,
            "-days",
            "30",
            "-extfile",
            s(&ext),
            "-out",
            s(&cert),
        ]);
        Cert { cert, key }
    }
}

/// A listener context serving `cert` from its files.
pub fn server_ctx(cert: &Cert) -> TlsContext {
    TlsContext {
        enabled: true,
        cert_chain: s(&cert.cert).to_string(),
        private_key: s(&cert.key).to_string(),
        ..TlsContext::default()
    }
}

// === in-process server ===

/// A TLS server on 127.0.0.1:0. Each accepted connection reports its handshake result, then
/// answers `GET ` requests with a tiny HTTP/1.1 response and echoes anything else.
pub struct Server {
    pub addr: SocketAddr,
    results: mpsc::UnboundedReceiver<Result<SessionInfo, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(config: ServerConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, results) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (config, tx) = (config.clone(), tx.clone());
                tokio::spawn(async move {
                    let accepted =
                        tokio::time::timeout(Duration::from_secs(10), config.accept(tcp)).await;
                    let mut tls = match accepted {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls.info().clone()));
                            tls
                        }
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                        Err(_) => {
                            let _ = tx.send(Err("handshake timed out".into()));
                            return;
                        }
                    };
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if buf.starts_with(b"GET ") {
                            let _ = tls
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                                .await;
                            let _ = tls.shutdown().await;
                            return;
                        }
                        if tls.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Server {
            addr,
            results,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The next handshake's result on the server side.
    pub async fn next(&mut self) -> Result<SessionInfo, String> {
        tokio::time::timeout(Duration::from_secs(20), self.results.recv())
            .await
            .expect("no handshake reported within 20 s")
            .expect("server task ended")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === external clients ===

/// The result of an external client run.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub out: String,
}

impl Run {
    /// The value after `prefix` on the first line that starts with it (trimmed).
    pub fn field(&self, prefix: &str) -> Option<String> {
        self.out
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
    }
}

async fn run(program: &'static str, args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
        Run {
            ok: out.status.success(),
            out: format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    })
    .await
    .unwrap()
}

/// `openssl s_client -connect 127.0.0.1:port <extra...>` with stdin closed, so it handshakes,
/// prints the session and quits.
pub async fn s_client(port: u16, extra: &[&str]) -> Run {
    let mut args = vec![
        "s_client".to_string(),
        "-connect".to_string(),
        format!("127.0.0.1:{port}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    run("openssl", args).await
}

/// `curl -sS --cacert ca https://host:port/ --resolve host:port:127.0.0.1 <extra...>`.
pub async fn curl(port: u16, host: &str, ca: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "-sS".to_string(),
        "--max-time".to_string(),
        "10".to_string(),
        "--cacert".to_string(),
        s(ca).to_string(),
        "--resolve".to_string(),
        format!("{host}:{port}:127.0.0.1"),
        format!("https://{host}:{port}/"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    run("curl", args).await
}

/// Connects a plain TCP stream to the server.
pub async fn tcp(server: &Server) -> TcpStream {
    TcpStream::connect(server.addr).await.unwrap()
}

/// Writes `msg` and reads the same number of bytes back.
pub async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    msg: &[u8],
) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
        .await
        .expect("echo timed out")
        .unwrap();
    back
}
