//! Keyless TLS (`type: "keyless"`): the private key lives only in a real `mosn-keyserver`
//! process; handshakes with rustls clients and `openssl s_client` on 127.0.0.1, a slow key
//! server that must not block the (current-thread) event loop, a dead and a restarted key
//! server, injected failures, a keyless client certificate, and the config errors.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{echo, s_client, server_ctx, tcp, Cert, Key, Pki, Server};
use mosn_config::{TlsContext, TlsVersion};
use mosn_tls_offload::keyless::wire::{self, Reply, Request, Status};
use mosn_tls_offload::{Backend, ClientConfig, ServerConfig};
use serde_json::json;

const PATH: &str = "listeners[0].filter_chains[0].tls_context";
const CPATH: &str = "cluster_manager.clusters[0].tls_context";

// === the key server process ===

/// A running `mosn-keyserver`, killed on drop.
struct KeyServer {
    child: Child,
    /// What it listens on (`127.0.0.1:port` or `unix:/path`).
    addr: String,
}

/// The key server's own counters (its `STATS` reply).
#[derive(Debug, Default, PartialEq, Eq)]
struct KsStats {
    requests: u64,
    signed: u64,
    failed: u64,
}

impl KeyServer {
    fn start(listen: &str, keys: &[&Path], extra: &[&str]) -> KeyServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mosn-keyserver"));
        cmd.args(["--listen", listen]);
        for k in keys {
            cmd.arg("--key").arg(k);
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start mosn-keyserver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("mosn-keyserver did not start: {line:?}"))
            .to_string();
        KeyServer { child, addr }
    }

    fn stats(&self) -> KsStats {
        let request = Request {
            opcode: wire::OP_STATS,
            id: 42,
            scheme: 0,
            key_id: [0; 32],
            message: Vec::new(),
        };
        let body = with_conn(&self.addr, |conn| {
            conn.write_all(&request.encode())?;
            wire::read_frame(conn)
        });
        let reply = Reply::decode(&body).unwrap();
        assert_eq!((reply.id, reply.status), (42, Status::Ok));
        let mut out = KsStats::default();
        for line in reply.text().lines() {
            let (k, v) = line.split_once('=').unwrap();
            let v = v.parse().unwrap();
            match k {
                "requests" => out.requests = v,
                "signed" => out.signed = v,
                "failed" => out.failed = v,
                _ => {}
            }
        }
        out
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.kill();
    }
}

trait Conn: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> Conn for T {}

fn with_conn<T>(addr: &str, f: impl FnOnce(&mut dyn Conn) -> std::io::Result<T>) -> T {
    let timeout = Some(Duration::from_secs(5));
    match addr.strip_prefix("unix:") {
        Some(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
            s.set_read_timeout(timeout).unwrap();
            f(&mut s).unwrap()
        }
        None => {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(timeout).unwrap();
            f(&mut s).unwrap()
        }
    }
}

// === configs ===

fn keyless_ctx(cert: &Cert, key_server: &str, timeout: &str) -> TlsContext {
    TlsContext {
        enabled: true,
        kind: "keyless".into(),
        cert_chain: cert.cert.to_str().unwrap().into(),
        extend_verify: Some(json!({"key_server": key_server, "timeout": timeout})),
        ..TlsContext::default()
    }
}

fn keyless_server(cert: &Cert, key_server: &str, timeout: &str) -> ServerConfig {
    let cfg = ServerConfig::build(&[keyless_ctx(cert, key_server, timeout)], PATH)
        .expect("keyless server config");
    assert_eq!(cfg.backend(), Backend::Rustls);
    cfg
}

fn client(ca: &Cert, max: Option<TlsVersion>) -> ClientConfig {
    ClientConfig::build(
        &TlsContext {
            enabled: true,
            server_name: "a.example".into(),
            ca_cert: ca.cert.to_str().unwrap().into(),
            max_version: max,
            ..TlsContext::default()
        },
        CPATH,
    )
    .unwrap()
}

fn pki_with(keys: &[Key]) -> (Pki, Cert, Vec<Cert>) {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaves = keys
        .iter()
        .enumerate()
        .map(|(i, &k)| pki.leaf(&ca, &format!("leaf{i}"), k, "a.example", &["a.example"]))
        .collect();
    (pki, ca, leaves)
}

// === tests ===

#[tokio::test]
async fn ecdsa_and_rsa_handshakes_sign_in_the_key_server() {
    let (_pki, ca, leaves) = pki_with(&[Key::EcPkcs8, Key::RsaPkcs1, Key::EcSec1]);
    let (ec, rsa, unknown) = (&leaves[0], &leaves[1], &leaves[2]);
    // one key server, two keys (told apart by the key id); the third key is not there
    let ks = KeyServer::start("127.0.0.1:0", &[&ec.key, &rsa.key], &[]);
    let ca_path = ca.cert.to_str().unwrap();
    let mut handshakes = 0;
    for leaf in [ec, rsa] {
        let cfg = keyless_server(leaf, &ks.addr, "5s");
        let mut srv = Server::start(cfg.clone()).await;
        for max in [None, Some(TlsVersion::V1_2)] {
            let mut tls = client(&ca, max)
                .connect(tcp(&srv).await, "127.0.0.1")
                .await
                .unwrap();
            assert_eq!(echo(&mut tls, b"keyless").await, b"keyless");
            let info = srv.next().await.unwrap();
            assert_eq!(info.version, Some(max.unwrap_or(TlsVersion::V1_3)));
            assert_eq!(info.backend, Backend::Rustls);
            handshakes += 1;
        }
        for flag in ["-tls1_3", "-tls1_2"] {
            let args = [
                "-servername",
                "a.example",
                flag,
                "-CAfile",
                ca_path,
                "-verify_return_error",
            ];
            let run = s_client(srv.port(), &args).await;
            assert!(run.ok, "{flag}: {}", run.out);
            assert_eq!(
                run.field("Verify return code:").as_deref(),
                Some("0 (ok)"),
                "{}",
                run.out
            );
            srv.next().await.expect("server side of s_client");
            handshakes += 1;
        }
        let st = cfg.keyless_stats().unwrap();
        assert_eq!(
            (st.requested, st.signed, st.failed, st.timed_out),
            (4, 4, 0, 0)
        );
        assert!((1..=4).contains(&st.connects), "{st:?}");
        assert_eq!(cfg.counters().ok(), 4);
    }
    // every signature was made by the key server, and nothing else
    assert_eq!(
        ks.stats(),
        KsStats {
            requests: handshakes,
            signed: handshakes,
            failed: 0
        }
    );

    // a certificate whose key the key server does not hold: that handshake fails, clearly
    let cfg = keyless_server(unknown, &ks.addr, "5s");
    let mut srv = Server::start(cfg.clone()).await;
    assert!(client(&ca, None)
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .is_err());
    let err = srv.next().await.unwrap_err();
    assert!(err.contains("refused to sign (UnknownKey)"), "{err}");
    assert_eq!(cfg.keyless_stats().unwrap().failed, 1);
    assert_eq!(ks.stats().failed, 1);
}

#[tokio::test]
async fn a_slow_key_server_fails_only_its_handshake_and_never_blocks_the_event_loop() {
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread,
        "the proof needs the servers and clients on one current-thread runtime"
    );
    let (_pki, ca, leaves) = pki_with(&[Key::EcPkcs8]);
    let leaf = &leaves[0];
    let slow_ks = KeyServer::start("127.0.0.1:0", &[&leaf.key], &["--delay", "10s"]);
    let fast_ks = KeyServer::start("127.0.0.1:0", &[&leaf.key], &[]);
    let slow = keyless_server(leaf, &slow_ks.addr, "1500ms");
    let fast = keyless_server(leaf, &fast_ks.addr, "5s");
    let mut slow_srv = Server::start(slow.clone()).await;
    let mut fast_srv = Server::start(fast.clone()).await;
    let started = Instant::now();
    let slow_client = tokio::spawn({
        let (c, addr) = (client(&ca, None), slow_srv.addr);
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.connect(tcp, "127.0.0.1").await.map(|_| ())
        }
    });
    // wait until the slow handshake is inside its signature
    while slow.keyless_stats().unwrap().requested == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no signature asked"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // meanwhile, on the same event loop, another keyless handshake completes
    // (a fresh client config: no session to resume, so the handshake signs)
    let mut tls = client(&ca, None)
        .connect(tcp(&fast_srv).await, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(echo(&mut tls, b"not blocked").await, b"not blocked");
    fast_srv.next().await.unwrap();
    assert!(
        !slow_client.is_finished() && slow.keyless_stats().unwrap().timed_out == 0,
        "the fast handshake must finish while the slow one still waits for its key server"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));

    // the slow one fails at its deadline, on its own
    let err = slow_srv.next().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        err.contains("did not answer within 1.5s"),
        "a clear error: {err}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "failed after {took:?}, the deadline is 1.5 s"
    );
    assert!(slow_client.await.unwrap().is_err());
    let st = slow.keyless_stats().unwrap();
    assert_eq!(
        (st.requested, st.signed, st.failed, st.timed_out),
        (1, 0, 0, 1)
    );
    assert_eq!((slow.counters().ok(), slow.counters().failed()), (0, 1));
    assert_eq!((fast.counters().ok(), fast.counters().failed()), (1, 0));
    assert_eq!(fast.keyless_stats().unwrap().signed, 1);
}

#[tokio::test]
async fn a_dead_key_server_fails_cleanly_and_a_restarted_one_is_reconnected() {
    let (_pki, ca, leaves) = pki_with(&[Key::RsaPkcs8]);
    let leaf = &leaves[0];
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix:{}", dir.path().join("ks.sock").display());
    // builds with no key server running: it is only asked at handshake time
    let cfg = keyless_server(leaf, &addr, "1s");
    let mut srv = Server::start(cfg.clone()).await;
    let stats = || {
        let s = cfg.keyless_stats().unwrap();
        (s.requested, s.signed, s.failed, s.timed_out)
    };

    // (1) nothing listening: that handshake fails at once, with a clear error
    let t = Instant::now();
    assert!(client(&ca, None)
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .is_err());
    let err = srv.next().await.unwrap_err();
    assert!(
        err.contains(&format!("cannot connect to key server {addr}")),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(stats(), (1, 0, 1, 0));

    // (2) the key server comes up: handshakes work
    let mut ks = KeyServer::start(&addr, &[&leaf.key], &[]);
    let mut tls = client(&ca, None)
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(echo(&mut tls, b"up").await, b"up");
    srv.next().await.unwrap();
    assert_eq!(stats(), (2, 1, 1, 0));

    // (3) killed mid-run: the pooled connection is broken, a new one is refused
    ks.kill();
    assert!(client(&ca, None)
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .is_err());
    let err = srv.next().await.unwrap_err();
    assert!(err.contains("key server"), "{err}");
    assert_eq!(stats(), (3, 1, 2, 0));

    // (4) restarted on the same socket: reconnected
    let mut ks = KeyServer::start(&addr, &[&leaf.key], &[]);
    let mut tls = client(&ca, None)
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(echo(&mut tls, b"again").await, b"again");
    srv.next().await.unwrap();
    assert_eq!(stats(), (4, 2, 2, 0));

    // (5) restarted between two handshakes: the stale pooled connection is replaced within the
    // same signature, so no handshake is lost
    ks.kill();
    let ks = KeyServer::start(&addr, &[&leaf.key], &[]);
    let mut tls = client(&ca, None)
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(echo(&mut tls, b"seamless").await, b"seamless");
    srv.next().await.unwrap();
    assert_eq!(stats(), (5, 3, 2, 0));
    assert_eq!(ks.stats().signed, 1);
    assert_eq!(cfg.keyless_stats().unwrap().connects, 3);
    assert_eq!((cfg.counters().ok(), cfg.counters().failed()), (3, 2));

    // a TCP key server that is gone: refused, same clean failure
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gone = keyless_server(leaf, &format!("127.0.0.1:{port}"), "1s");
    let mut srv = Server::start(gone.clone()).await;
    assert!(client(&ca, None)
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .is_err());
    let err = srv.next().await.unwrap_err();
    assert!(
        err.contains("cannot connect to key server 127.0.0.1:"),
        "{err}"
    );
    assert_eq!(gone.keyless_stats().unwrap().failed, 1);
}

#[tokio::test]
async fn concurrent_handshakes_share_the_pool_and_injected_failures_fail_only_theirs() {
    let (_pki, ca, leaves) = pki_with(&[Key::EcPkcs8]);
    let leaf = &leaves[0];
    let ks = KeyServer::start("127.0.0.1:0", &[&leaf.key], &["--delay", "30ms"]);
    let mut ctx = keyless_ctx(leaf, &ks.addr, "10s");
    ctx.extend_verify = Some(json!({"key_server": ks.addr, "timeout": "10s", "connections": 3}));
    let cfg = ServerConfig::build(&[ctx], PATH).unwrap();
    let srv = Server::start(cfg.clone()).await;
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let (c, addr) = (client(&ca, None), srv.addr);
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut tls = c.connect(tcp, "127.0.0.1").await.unwrap();
            assert_eq!(echo(&mut tls, &[i; 8]).await, [i; 8]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let st = cfg.keyless_stats().unwrap();
    assert_eq!((st.requested, st.signed), (16, 16));
    assert!(
        st.connects <= 3,
        "at most `connections` connections: {st:?}"
    );
    assert_eq!(ks.stats().signed, 16);

    // every 2nd signature fails in the key server: every 2nd handshake fails, the others work
    let flaky = KeyServer::start("127.0.0.1:0", &[&leaf.key], &["--fail-every", "2"]);
    let cfg = keyless_server(leaf, &flaky.addr, "5s");
    let mut srv = Server::start(cfg.clone()).await;
    for i in 0..4 {
        let r = client(&ca, None)
            .connect(tcp(&srv).await, "127.0.0.1")
            .await;
        let server_side = srv.next().await;
        if i % 2 == 0 {
            assert!(r.is_ok() && server_side.is_ok());
        } else {
            assert!(r.is_err());
            let err = server_side.unwrap_err();
            assert!(
                err.contains("SignFailed") && err.contains("injected"),
                "{err}"
            );
        }
    }
    let st = cfg.keyless_stats().unwrap();
    assert_eq!((st.requested, st.signed, st.failed), (4, 2, 2));
    assert_eq!(
        flaky.stats(),
        KsStats {
            requests: 4,
            signed: 2,
            failed: 2
        }
    );
}

#[tokio::test]
async fn the_key_server_survives_clients_leaving_mid_request() {
    let (_pki, _ca, leaves) = pki_with(&[Key::EcPkcs8]);
    let ks = KeyServer::start("127.0.0.1:0", &[&leaves[0].key], &["--delay", "200ms"]);
    // requests sent, connections closed before the answers: nothing breaks
    for i in 0..8 {
        let request = Request {
            opcode: wire::OP_SIGN,
            id: i,
            scheme: 0x0403,
            key_id: [0; 32],
            message: b"gone".to_vec(),
        };
        with_conn(&ks.addr, |conn| conn.write_all(&request.encode()));
    }
    // garbage: a frame over the limit, then a malformed one; answered or dropped, no crash
    with_conn(&ks.addr, |conn| conn.write_all(&[0xff; 16]));
    let body = with_conn(&ks.addr, |conn| {
        conn.write_all(&[0, 0, 0, 12, 1, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0])?;
        wire::read_frame(conn)
    });
    let reply = Reply::decode(&body).unwrap();
    assert_eq!((reply.id, reply.status), (7, Status::BadRequest));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // still serving
    assert_eq!(
        ks.stats(),
        KsStats {
            requests: 8,
            signed: 0,
            failed: 8
        }
    );
}

#[tokio::test]
async fn a_keyless_client_certificate_signs_in_the_key_server() {
    let (pki, ca, leaves) = pki_with(&[Key::EcPkcs8]);
    let server_leaf = &leaves[0];
    let client_leaf = pki.leaf(&ca, "client", Key::RsaPkcs8, "client", &["client.example"]);
    let ks = KeyServer::start("127.0.0.1:0", &[&client_leaf.key], &[]);
    let mut sctx = server_ctx(server_leaf);
    sctx.ca_cert = ca.cert.to_str().unwrap().into();
    sctx.require_client_cert = true;
    let mut srv = Server::start(ServerConfig::build(&[sctx], PATH).unwrap()).await;
    let cctx = TlsContext {
        enabled: true,
        kind: "keyless".into(),
        server_name: "a.example".into(),
        ca_cert: ca.cert.to_str().unwrap().into(),
        cert_chain: client_leaf.cert.to_str().unwrap().into(),
        extend_verify: Some(json!({"key_server": ks.addr})),
        ..TlsContext::default()
    };
    for max in [None, Some(TlsVersion::V1_2)] {
        let mut cctx = cctx.clone();
        cctx.max_version = max;
        let c = ClientConfig::build(&cctx, CPATH).unwrap();
        let mut tls = c.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
        assert_eq!(echo(&mut tls, b"mtls").await, b"mtls");
        let info = srv.next().await.unwrap();
        assert_eq!(info.peer_certificates.len(), 1);
        assert_eq!(c.keyless_stats().unwrap().signed, 1);
    }
    assert_eq!(ks.stats().signed, 2);
}

#[test]
fn keyless_config_errors_name_the_key() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let err = |ctxs: &[TlsContext]| ServerConfig::build(ctxs, PATH).unwrap_err().to_string();

    let mut with_key = keyless_ctx(&leaf, "127.0.0.1:1", "1s");
    with_key.private_key = leaf.key.to_str().unwrap().into();
    let e = err(std::slice::from_ref(&with_key));
    assert!(
        e.starts_with(&format!("{PATH}.private_key: must be empty")),
        "{e}"
    );
    let e = ClientConfig::build(&with_key, CPATH)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{CPATH}.private_key: must be empty")),
        "{e}"
    );

    let mut no_server = keyless_ctx(&leaf, "x", "1s");
    no_server.extend_verify = None;
    let e = err(&[no_server]);
    assert!(e.starts_with(&format!("{PATH}.extend_verify: ")), "{e}");

    let e = err(&[server_ctx(&leaf), keyless_ctx(&leaf, "localhost", "1s")]);
    assert!(
        e.starts_with(&format!("{PATH}[1].extend_verify.key_server: ")),
        "{e}"
    );

    let e = err(&[keyless_ctx(&leaf, "127.0.0.1:1", "a while")]);
    assert!(
        e.starts_with(&format!("{PATH}.extend_verify.timeout: ")),
        "{e}"
    );

    let mut no_chain = keyless_ctx(&leaf, "127.0.0.1:1", "1s");
    no_chain.cert_chain.clear();
    let e = err(&[no_chain]);
    assert!(e.starts_with(&format!("{PATH}.cert_chain: ")), "{e}");

    // keyless and plain rustls contexts may share a set (both rustls)
    let set = ServerConfig::build(
        &[server_ctx(&leaf), keyless_ctx(&leaf, "127.0.0.1:1", "1s")],
        PATH,
    )
    .unwrap();
    assert_eq!(set.backend(), Backend::Rustls);
    assert!(set.keyless_stats().is_some());
    assert!(ServerConfig::build(&[server_ctx(&leaf)], PATH)
        .unwrap()
        .keyless_stats()
        .is_none());
}

#[tokio::test]
async fn keyless_and_local_key_contexts_share_a_set_and_survive_a_reload() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let remote = pki.leaf(&ca, "remote", Key::EcPkcs8, "a.example", &["a.example"]);
    let local = pki.leaf(&ca, "local", Key::RsaPkcs8, "b.example", &["b.example"]);
    let ks = KeyServer::start("127.0.0.1:0", &[&remote.key], &[]);
    let cfg = ServerConfig::build(
        &[server_ctx(&local), keyless_ctx(&remote, &ks.addr, "5s")],
        PATH,
    )
    .unwrap();
    let mut srv = Server::start(cfg.clone()).await;
    let connect = |name: &str| {
        ClientConfig::build(
            &TlsContext {
                enabled: true,
                server_name: name.into(),
                ca_cert: ca.cert.to_str().unwrap().into(),
                ..TlsContext::default()
            },
            CPATH,
        )
        .unwrap()
    };
    for round in 0..2 {
        for (name, context) in [("a.example", 1), ("b.example", 0)] {
            let mut tls = connect(name)
                .connect(tcp(&srv).await, "127.0.0.1")
                .await
                .unwrap();
            assert_eq!(echo(&mut tls, name.as_bytes()).await, name.as_bytes());
            let info = srv.next().await.unwrap();
            assert_eq!(info.context, Some(context), "{name}");
        }
        // only the keyless context asked the key server
        assert_eq!(cfg.keyless_stats().unwrap().signed, round + 1);
        assert_eq!(ks.stats().signed, round + 1);
        if round == 0 {
            cfg.reload().unwrap();
        }
    }
    assert_eq!(cfg.generation(), 1);
    // the pooled key server connection was kept across the reload
    assert_eq!(cfg.keyless_stats().unwrap().connects, 1);
}
