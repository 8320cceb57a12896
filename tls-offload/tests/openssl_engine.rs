//! Accelerator offload through the test ENGINE (engine/test_engine.c, loaded by path): every
//! signature reaches the device, async mode hides the device latency, connections dropped
//! mid-job leak nothing, device failures fail only their handshake, initialisation failures
//! fall back or refuse, external polling, the provider route.
//!
//! OpenSSL's engine defaults and the engine's knobs are process-wide, so the tests of this file
//! run one at a time (`SERIAL`).
#![cfg(feature = "openssl")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{echo, s_client, server_ctx, tcp, Key, Pki, Server};
use mosn_config::{TlsContext, TlsVersion};
use mosn_tls_offload::openssl::{
    self as ossl, Accelerator, Offload, OnFailure, OpenSslBackend, Polling,
};
use mosn_tls_offload::{Backend, ClientConfig, ServerConfig, TlsError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::DigitallySignedStruct;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

const PATH: &str = "listeners[0].filter_chains[0].tls_context";
const CPATH: &str = "cluster_manager.clusters[0].tls_context";

static SERIAL: Mutex<()> = Mutex::const_new(());

fn engine() -> Offload {
    Offload::Engine {
        id_or_path: ossl::TEST_ENGINE_PATH.into(),
        algorithms: "RSA,EC".into(),
        ctrls: vec![],
    }
}

fn backend(async_mode: bool) -> OpenSslBackend {
    OpenSslBackend {
        offload: Some(engine()),
        async_mode,
        on_failure: OnFailure::Refuse,
        ..OpenSslBackend::default()
    }
}

fn server(ctx: &TlsContext, async_mode: bool) -> (ServerConfig, Accelerator) {
    let cfg = ServerConfig::build_openssl(std::slice::from_ref(ctx), PATH, &backend(async_mode))
        .expect("server config with the test engine");
    assert_eq!(cfg.backend(), Backend::OpenSsl);
    let accel = cfg.accelerator().expect("accelerator").clone();
    knobs(&accel, 0, 64, 0);
    (cfg, accel)
}

fn knobs(accel: &Accelerator, latency_us: u64, lanes: u64, fail_next: u64) {
    for (cmd, v) in [
        ("LATENCY_US", latency_us),
        ("LANES", lanes),
        ("FAIL_NEXT", fail_next),
    ] {
        accel.ctrl(cmd, Some(&v.to_string())).unwrap();
    }
}

/// The engine's counters: (in a job, blocking, failed, pauses).
fn counts(accel: &Accelerator) -> [i64; 4] {
    ["STAT_ASYNC", "STAT_SYNC", "STAT_FAILED", "STAT_PAUSES"].map(|c| {
        accel
            .counter(c)
            .unwrap_or_else(|| panic!("engine counter {c}"))
    })
}

fn delta(after: [i64; 4], before: [i64; 4]) -> [i64; 4] {
    [0, 1, 2, 3].map(|i| after[i] - before[i])
}

fn client(ca: &common::Cert, max: Option<TlsVersion>) -> ClientConfig {
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

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn every_handshake_signature_goes_through_the_engine() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let stats = ossl::stats();
    for key in [Key::EcPkcs8, Key::RsaPkcs8] {
        let leaf = pki.leaf(&ca, &format!("{key:?}"), key, "a.example", &["a.example"]);
        for async_mode in [true, false] {
            let (cfg, accel) = server(&server_ctx(&leaf), async_mode);
            knobs(&accel, 1000, 64, 0);
            let before = counts(&accel);
            let mut srv = Server::start(cfg.clone()).await;
            for max in [None, Some(TlsVersion::V1_2)] {
                let mut tls = client(&ca, max)
                    .connect(tcp(&srv).await, "127.0.0.1")
                    .await
                    .unwrap();
                assert_eq!(echo(&mut tls, b"offloaded").await, b"offloaded");
                let info = srv.next().await.unwrap();
                assert_eq!(info.version, Some(max.unwrap_or(TlsVersion::V1_3)));
            }
            let run = s_client(srv.port(), &["-servername", "a.example"]).await;
            assert!(run.ok, "{}", run.out);
            srv.next().await.unwrap();
            let d = delta(counts(&accel), before);
            // one private-key operation per full handshake, on the device, in the mode asked
            if async_mode {
                assert_eq!(d[..3], [3, 0, 0], "{key:?} async: {d:?}");
                assert!(d[3] >= 3, "{key:?}: each job paused: {d:?}");
            } else {
                assert_eq!(d, [0, 3, 0, 0], "{key:?} sync: {d:?}");
            }
            assert_eq!(cfg.counters().ok(), 3);
        }
    }
    let now = ossl::stats();
    assert_eq!(now.handshakes_offloaded - stats.handshakes_offloaded, 12);
    assert!(
        now.async_waits - stats.async_waits >= 6,
        "{stats:?} {now:?}"
    );
}

/// The load generator's client: rustls, TLS 1.3 with AES-128-GCM and X25519 only, no session
/// resumption (every handshake is a full one, with a signature), and no certificate chain check
/// (only the handshake signature): the cheapest full handshake, so the clients are not what
/// limits the server's rate (ACCELERATION.md §7).
fn cheap_client() -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .retain(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
        .kx_groups
        .retain(|g| g.name() == rustls::NamedGroup::X25519);
    let provider = Arc::new(provider);
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignatureOnly(provider)))
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

#[derive(Debug)]
struct SignatureOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for SignatureOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Handshakes per second through `cfg` (on this thread) with `concurrency` clients (on another
/// thread), each running `each` handshakes one after the other.
async fn rate(cfg: ServerConfig, concurrency: usize, each: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let cfg = cfg.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = cfg.accept(tcp).await {
                    use tokio::io::AsyncWriteExt;
                    let _ = tls.write_all(b"k").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let client = tokio_rustls::TlsConnector::from(cheap_client());
    let clients = std::thread::Builder::new()
        .name("clients".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // this thread's DRBG seeds itself (jitter entropy, milliseconds) before the clock starts
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            provider.secure_random.fill(&mut [0u8; 32]).unwrap();
            rt.block_on(async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..concurrency)
                    .map(|_| {
                        let client = client.clone();
                        tokio::spawn(async move {
                            use tokio::io::AsyncReadExt;
                            for _ in 0..each {
                                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                                let name = ServerName::try_from("a.example").unwrap();
                                let mut tls = client.connect(name, tcp).await.unwrap();
                                tls.read_exact(&mut [0u8; 1]).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        })
        .unwrap();
    let elapsed = tokio::task::spawn_blocking(move || clients.join().unwrap())
        .await
        .unwrap();
    server.abort();
    (concurrency * each) as f64 / elapsed.as_secs_f64()
}

#[tokio::test]
async fn async_mode_hides_a_2ms_device_latency() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let (sync_cfg, accel) = server(&server_ctx(&leaf), false);
    let (async_cfg, _) = server(&server_ctx(&leaf), true);
    knobs(&accel, 2000, 64, 0);
    // warm-up: the device's lanes start, OpenSSL's job pool fills
    rate(async_cfg.clone(), 32, 1).await;
    // three rounds of each, alternating; the best of each counts (other load only slows a round)
    let (mut sync, mut asynchronous) = (0f64, 0f64);
    for _ in 0..3 {
        let before = counts(&accel);
        sync = sync.max(rate(sync_cfg.clone(), 32, 8).await);
        let mid = counts(&accel);
        asynchronous = asynchronous.max(rate(async_cfg.clone(), 32, 8).await);
        let after = counts(&accel);
        // every handshake signed on the device: blocking in sync mode, paused in async mode
        assert_eq!(delta(mid, before)[..3], [0, 256, 0]);
        assert_eq!(delta(after, mid)[..3], [256, 0, 0]);
    }
    knobs(&accel, 0, 64, 0);
    let ratio = asynchronous / sync;
    println!("32 concurrent ECDSA handshakes, 2 ms device latency: async {asynchronous:.0}/s, sync {sync:.0}/s, ratio {ratio:.1}");
    assert!(
        ratio >= 3.0,
        "async mode should hide the device latency: async {asynchronous:.0}/s vs sync {sync:.0}/s"
    );
}

#[tokio::test]
async fn connections_dropped_mid_job_leak_nothing() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::RsaPkcs8, "a.example", &["a.example"]);
    let (cfg, accel) = server(&server_ctx(&leaf), true);
    knobs(&accel, 100_000, 64, 0);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = client(&ca, None);
    let fds = open_fds();
    let parked = ossl::stats().parked;
    let before = counts(&accel);

    // (a) the handshake future is dropped (a timeout) while its job is paused on the device
    for _ in 0..4 {
        let c = c.clone();
        let pending = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = tokio::time::timeout(Duration::from_millis(400), c.connect(tcp, "x")).await;
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(30), cfg.accept(tcp)).await;
        assert!(r.is_err(), "the handshake cannot finish within 30 ms");
        drop(r);
        pending.abort();
    }
    assert_eq!(ossl::stats().parked - parked, 4);

    // (b) the client goes away while the server's job is paused: only that handshake fails
    for _ in 0..4 {
        let c = c.clone();
        tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = tokio::time::timeout(Duration::from_millis(20), c.connect(tcp, "x")).await;
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let e = cfg.accept(tcp).await.unwrap_err();
        assert!(!e.is_config(), "{e}");
    }

    // every job completes (100 ms), parked SSLs are freed, the eventfds closed
    let deadline = Instant::now() + Duration::from_secs(5);
    while (open_fds() != fds || delta(counts(&accel), before)[0] < 8) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open_fds(), fds, "descriptors leaked");
    assert_eq!(delta(counts(&accel), before)[..3], [8, 0, 0]);

    // and the server still works
    knobs(&accel, 0, 64, 0);
    let mut srv = Server::start(cfg).await;
    let mut tls = c.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
    assert_eq!(echo(&mut tls, b"still fine").await, b"still fine");
    srv.next().await.unwrap();
}

#[tokio::test]
async fn device_failures_fail_only_their_handshake() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    for async_mode in [true, false] {
        let (cfg, accel) = server(&server_ctx(&leaf), async_mode);
        let before = counts(&accel);
        knobs(&accel, 1000, 64, 3);
        let mut srv = Server::start(cfg.clone()).await;
        let c = client(&ca, None);
        let clients: Vec<_> = (0..10)
            .map(|_| {
                let c = c.clone();
                let addr = srv.addr;
                tokio::spawn(async move {
                    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let mut tls = c.connect(tcp, "127.0.0.1").await.ok()?;
                    Some(echo(&mut tls, b"ok").await)
                })
            })
            .collect();
        let mut ok = 0;
        for _ in 0..10 {
            if srv.next().await.is_ok() {
                ok += 1;
            }
        }
        let mut client_ok = 0;
        for t in clients {
            if t.await.unwrap().is_some() {
                client_ok += 1;
            }
        }
        assert_eq!((ok, client_ok), (7, 7), "async {async_mode}");
        assert_eq!(cfg.counters().failed(), 3);
        let d = delta(counts(&accel), before);
        assert_eq!(d[2], 3, "{d:?}");
        assert_eq!(if async_mode { d[0] } else { d[1] }, 7, "{d:?}");
    }
}

#[tokio::test]
async fn failed_initialisation_falls_back_or_refuses() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let fallbacks = ossl::stats().fallbacks;
    for bad in [
        Offload::Engine {
            id_or_path: "/nonexistent/libengine.so".into(),
            algorithms: String::new(),
            ctrls: vec![],
        },
        Offload::Engine {
            id_or_path: "no-such-engine".into(),
            algorithms: String::new(),
            ctrls: vec![],
        },
        Offload::Engine {
            id_or_path: ossl::TEST_ENGINE_PATH.into(),
            algorithms: "RSA".into(),
            ctrls: vec![("NO_SUCH_CTRL".into(), "1".into())],
        },
        Offload::Provider {
            name: "no-such-provider".into(),
            search_path: None,
            properties: None,
        },
    ] {
        let mut settings = OpenSslBackend {
            offload: Some(bad.clone()),
            on_failure: OnFailure::Refuse,
            ..OpenSslBackend::default()
        };
        let e = ServerConfig::build_openssl(&[server_ctx(&leaf)], PATH, &settings).unwrap_err();
        assert!(matches!(e, TlsError::Offload(_)), "{e}");
        assert!(e.is_config());
        let e = ClientConfig::build_openssl(&TlsContext::default(), CPATH, &settings).unwrap_err();
        assert!(matches!(e, TlsError::Offload(_)), "{e}");

        settings.on_failure = OnFailure::FallBack;
        let cfg = ServerConfig::build_openssl(&[server_ctx(&leaf)], PATH, &settings).unwrap();
        assert_eq!(cfg.backend(), Backend::Rustls, "{bad:?}");
        assert!(cfg.accelerator().is_none());
        let mut srv = Server::start(cfg).await;
        let mut tls = client(&ca, None)
            .connect(tcp(&srv).await, "127.0.0.1")
            .await
            .unwrap();
        assert_eq!(echo(&mut tls, b"fallback").await, b"fallback");
        assert_eq!(srv.next().await.unwrap().backend, Backend::Rustls);
        let c = ClientConfig::build_openssl(&TlsContext::default(), CPATH, &settings).unwrap();
        assert_eq!(c.backend(), Backend::Rustls);
    }
    let e = ServerConfig::build_openssl(
        &[server_ctx(&leaf)],
        PATH,
        &OpenSslBackend {
            offload: Some(Offload::Engine {
                id_or_path: "/nonexistent/libengine.so".into(),
                algorithms: String::new(),
                ctrls: vec![],
            }),
            on_failure: OnFailure::Refuse,
            ..OpenSslBackend::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/libengine.so"), "{e}");
    assert_eq!(ossl::stats().fallbacks - fallbacks, 8);
}

#[tokio::test]
async fn external_polling_and_the_provider_route() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);

    // external polling: a thread runs the engine's POLL command
    let polled = Accelerator::load(
        &Offload::Engine {
            id_or_path: ossl::TEST_ENGINE_PATH.into(),
            algorithms: "RSA,EC".into(),
            ctrls: vec![("LANES".into(), "64".into())],
        },
        &Polling::External {
            every: Duration::from_millis(2),
            command: "POLL".into(),
        },
    )
    .unwrap();
    let polls = polled.counter("STAT_POLLS").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(polled.counter("STAT_POLLS").unwrap() > polls);
    assert!(polled.describe().starts_with("engine mosn-test-accel"));
    assert!(polled.ctrl("NO_SUCH_CTRL", Some("1")).is_err());
    assert_eq!(polled.counter("NO_SUCH_COUNTER"), None);

    // the provider route (Debian's `legacy` provider stands in for an accelerator's)
    let settings = OpenSslBackend {
        offload: Some(Offload::Provider {
            name: "legacy".into(),
            search_path: None,
            properties: None,
        }),
        on_failure: OnFailure::Refuse,
        ..OpenSslBackend::default()
    };
    let cfg = ServerConfig::build_openssl(&[server_ctx(&leaf)], PATH, &settings).unwrap();
    let accel = cfg.accelerator().unwrap();
    assert_eq!(accel.describe(), "provider legacy");
    assert!(accel.ctrl("X", None).is_err());
    assert_eq!(accel.counter("STAT_ASYNC"), None);
    let mut srv = Server::start(cfg.clone()).await;
    let mut tls = client(&ca, None)
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(echo(&mut tls, b"provider").await, b"provider");
    assert_eq!(srv.next().await.unwrap().backend, Backend::OpenSsl);
}
