//! ClientConfig against the rustls server: server_name, CA verification, insecure_skip,
//! client certificates, ALPN, versions, groups, resumption and config errors.

mod common;

use common::{echo, server_ctx, tcp, Key, Pki, Server};
use mosn_config::{TlsContext, TlsVersion};
use mosn_tls_offload::{ClientConfig, ServerConfig, TlsError};

const CPATH: &str = "cluster_manager.clusters[0].tls_context";

fn client(ctx: TlsContext) -> ClientConfig {
    ClientConfig::build(&ctx, CPATH).expect("client config")
}

fn ca_ctx(ca: &common::Cert) -> TlsContext {
    TlsContext {
        enabled: true,
        ca_cert: ca.cert.to_str().unwrap().into(),
        ..TlsContext::default()
    }
}

#[tokio::test]
async fn server_name_and_ca_verification() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let other = pki.ca("other");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let mut server = Server::start(ServerConfig::build(&[server_ctx(&leaf)], "l").unwrap()).await;

    // server_name: sent as SNI and checked against the certificate; the host is ignored
    let c = client(TlsContext {
        server_name: "a.example".into(),
        ..ca_ctx(&ca)
    });
    assert_eq!(c.server_name().as_deref(), Some("a.example"));
    let mut tls = c.connect(tcp(&server).await, "127.0.0.1").await.unwrap();
    assert_eq!(tls.sni(), Some("a.example"));
    assert_eq!(tls.peer_certificates()[0].as_ref(), leaf.der().as_slice());
    assert_eq!(echo(&mut tls, b"ping").await, b"ping");
    assert_eq!(
        server.next().await.unwrap().sni.as_deref(),
        Some("a.example")
    );
    assert_eq!(c.counters().ok(), 1);

    // no server_name: the host given by the caller is used
    let c = client(ca_ctx(&ca));
    let tls = c.connect(tcp(&server).await, "a.example").await.unwrap();
    assert_eq!(tls.sni(), Some("a.example"));
    server.next().await.unwrap();
    // an IP literal is verified against the IP SAN and sends no SNI
    let tls = c.connect(tcp(&server).await, "127.0.0.1").await.unwrap();
    assert_eq!(tls.sni(), None);
    assert_eq!(server.next().await.unwrap().sni, None);

    // the name does not match the certificate
    let e = client(TlsContext {
        server_name: "wrong.example".into(),
        ..ca_ctx(&ca)
    })
    .connect(tcp(&server).await, "127.0.0.1")
    .await
    .unwrap_err();
    assert!(matches!(e, TlsError::Handshake(_)), "{e}");
    server.next().await.expect_err("client aborts");

    // another CA: verification fails
    let c = client(TlsContext {
        server_name: "a.example".into(),
        ..ca_ctx(&other)
    });
    let e = c
        .connect(tcp(&server).await, "a.example")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    assert_eq!((c.counters().ok(), c.counters().failed()), (0, 1));
    server.next().await.expect_err("client aborts");

    // no ca_cert: the compiled-in Mozilla roots, which do not know the test CA
    let c = client(TlsContext {
        enabled: true,
        ..TlsContext::default()
    });
    let e = c
        .connect(tcp(&server).await, "a.example")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    server.next().await.expect_err("client aborts");
}

#[tokio::test]
async fn insecure_skip_accepts_any_certificate() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::RsaPkcs1, "a.example", &["a.example"]);
    let mut server = Server::start(ServerConfig::build(&[server_ctx(&leaf)], "l").unwrap()).await;
    let c = client(TlsContext {
        enabled: true,
        insecure_skip: true,
        server_name: "not-the-name.test".into(),
        ..TlsContext::default()
    });
    let mut tls = c.connect(tcp(&server).await, "ignored").await.unwrap();
    assert_eq!(echo(&mut tls, b"hello").await, b"hello");
    assert_eq!(tls.peer_certificates()[0].as_ref(), leaf.der().as_slice());
    server.next().await.unwrap();
}

#[tokio::test]
async fn client_certificates_are_presented() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let other = pki.ca("other");
    let leaf = pki.leaf(&ca, "server", Key::EcPkcs8, "a.example", &["a.example"]);
    let me = pki.leaf(&ca, "me", Key::EcSec1, "me.client", &["me.client"]);
    let stranger = pki.leaf(&other, "stranger", Key::EcPkcs8, "stranger", &["stranger"]);
    let server_cfg = ServerConfig::build(
        &[TlsContext {
            ca_cert: ca.cert.to_str().unwrap().into(),
            verify_client: true,
            require_client_cert: true,
            ..server_ctx(&leaf)
        }],
        "l",
    )
    .unwrap();
    let mut server = Server::start(server_cfg).await;
    let with_cert = |cert: &common::Cert| {
        client(TlsContext {
            server_name: "a.example".into(),
            cert_chain: cert.cert.to_str().unwrap().into(),
            private_key: cert.key.to_str().unwrap().into(),
            ..ca_ctx(&ca)
        })
    };
    for version in [TlsVersion::V1_2, TlsVersion::V1_3] {
        let c = client(TlsContext {
            server_name: "a.example".into(),
            cert_chain: me.cert.to_str().unwrap().into(),
            private_key: me.key.to_str().unwrap().into(),
            min_version: Some(version),
            max_version: Some(version),
            ..ca_ctx(&ca)
        });
        let mut tls = c.connect(tcp(&server).await, "x").await.unwrap();
        assert_eq!(tls.info().version, Some(version));
        assert_eq!(echo(&mut tls, b"mtls").await, b"mtls");
        let info = server.next().await.unwrap();
        assert_eq!(info.peer_certificates[0].as_ref(), me.der().as_slice());
    }
    // a certificate the server's CA did not sign: the server refuses it
    let mut tls = with_cert(&stranger).connect(tcp(&server).await, "x").await;
    if let Ok(t) = &mut tls {
        // TLS 1.3: the client finishes first; the refusal arrives as an alert on first read
        let mut buf = [0u8; 1];
        assert!(tokio::io::AsyncReadExt::read(t, &mut buf).await.is_err());
    }
    server.next().await.expect_err("foreign client certificate");
    // no certificate at all
    let _ = client(TlsContext {
        server_name: "a.example".into(),
        ..ca_ctx(&ca)
    })
    .connect(tcp(&server).await, "x")
    .await;
    server.next().await.expect_err("missing client certificate");
}

#[tokio::test]
async fn alpn_versions_groups_and_resumption() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let mut server = Server::start(
        ServerConfig::build(
            &[TlsContext {
                alpn: "h2,http/1.1".into(),
                ..server_ctx(&leaf)
            }],
            "l",
        )
        .unwrap(),
    )
    .await;
    let base = TlsContext {
        server_name: "a.example".into(),
        ..ca_ctx(&ca)
    };

    let c = client(TlsContext {
        alpn: "http/1.1".into(),
        max_version: Some(TlsVersion::V1_2),
        ecdh_curves: "p384".into(),
        ..base.clone()
    });
    let tls = c.connect(tcp(&server).await, "x").await.unwrap();
    assert_eq!(tls.alpn(), Some(&b"http/1.1"[..]));
    assert_eq!(tls.info().version, Some(TlsVersion::V1_2));
    assert_eq!(tls.info().key_exchange_group, Some("secp384r1"));
    let info = server.next().await.unwrap();
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(!tls.info().resumed);
    // the same config resumes (TLS 1.2 session id from the server's cache)
    let tls = c.connect(tcp(&server).await, "x").await.unwrap();
    assert!(tls.info().resumed);
    assert!(server.next().await.unwrap().resumed);

    let c = client(TlsContext {
        alpn: "h2,http/1.1".into(),
        ..base.clone()
    });
    let mut tls = c.connect(tcp(&server).await, "x").await.unwrap();
    assert_eq!(tls.alpn(), Some(&b"h2"[..]));
    assert_eq!(tls.info().version, Some(TlsVersion::V1_3));
    assert_eq!(tls.info().key_exchange_group, Some("X25519"));
    // read the TLS 1.3 tickets, then resume with them
    assert_eq!(echo(&mut tls, b"x").await, b"x");
    server.next().await.unwrap();
    let tls = c.connect(tcp(&server).await, "x").await.unwrap();
    assert!(tls.info().resumed);
    server.next().await.unwrap();
}

#[cfg(feature = "aws-lc-rs")]
#[tokio::test]
async fn post_quantum_hybrid_only_when_configured() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let pq = TlsContext {
        server_name: "a.example".into(),
        ecdh_curves: "x25519mlkem768,x25519".into(),
        ..ca_ctx(&ca)
    };
    // default server groups: the hybrid is not offered by the server, X25519 is chosen
    let mut server = Server::start(ServerConfig::build(&[server_ctx(&leaf)], "l").unwrap()).await;
    let tls = client(pq.clone())
        .connect(tcp(&server).await, "x")
        .await
        .unwrap();
    assert_eq!(tls.info().key_exchange_group, Some("X25519"));
    server.next().await.unwrap();
    // listed on the listener: negotiated
    let mut server = Server::start(
        ServerConfig::build(
            &[TlsContext {
                ecdh_curves: "x25519mlkem768,x25519".into(),
                ..server_ctx(&leaf)
            }],
            "l",
        )
        .unwrap(),
    )
    .await;
    let tls = client(pq).connect(tcp(&server).await, "x").await.unwrap();
    assert_eq!(tls.info().key_exchange_group, Some("X25519MLKEM768"));
    server.next().await.unwrap();
}

#[test]
fn client_config_errors_name_the_path() {
    let err = |ctx: TlsContext| ClientConfig::build(&ctx, CPATH).unwrap_err().to_string();
    let e = err(TlsContext {
        ca_cert: "/nonexistent/ca.pem".into(),
        ..TlsContext::default()
    });
    assert!(
        e.starts_with(&format!(
            "{CPATH}.ca_cert: cannot read /nonexistent/ca.pem: "
        )),
        "{e}"
    );
    let e = err(TlsContext {
        private_key: "/k.pem".into(),
        ..TlsContext::default()
    });
    assert_eq!(
        e,
        format!("{CPATH}.cert_chain: private_key is set without a certificate chain")
    );
    let e = err(TlsContext {
        server_name: "bad name!".into(),
        ..TlsContext::default()
    });
    assert_eq!(
        e,
        format!("{CPATH}.server_name: `bad name!` is not a DNS name or IP address")
    );
    let e = err(TlsContext {
        cipher_suites: "DHE-RSA-AES128-GCM-SHA256".into(),
        ..TlsContext::default()
    });
    assert_eq!(
        e,
        format!("{CPATH}.cipher_suites: unknown cipher suite `DHE-RSA-AES128-GCM-SHA256`")
    );
    let c = ClientConfig::build(
        &TlsContext {
            fall_back: true,
            ..TlsContext::default()
        },
        CPATH,
    )
    .unwrap();
    assert!(c.fall_back());
}
