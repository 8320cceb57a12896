//! The OpenSSL backend (feature `openssl`, no accelerator) against `openssl s_client`, curl, the
//! rustls backend and itself: key types, versions, ALPN, SNI over a context set, mTLS, counters.
#![cfg(feature = "openssl")]

mod common;

use common::{curl, echo, s_client, server_ctx, tcp, Key, Pki, Server};
use mosn_config::{TlsContext, TlsVersion};
use mosn_tls_offload::openssl::{self as ossl, OpenSslBackend};
use mosn_tls_offload::{Backend, ClientConfig, ServerConfig};

const PATH: &str = "listeners[0].filter_chains[0].tls_context";
const CPATH: &str = "cluster_manager.clusters[0].tls_context";

fn server(contexts: &[TlsContext]) -> ServerConfig {
    let cfg = ServerConfig::build_openssl(contexts, PATH, &OpenSslBackend::default())
        .expect("openssl server config");
    assert_eq!(cfg.backend(), Backend::OpenSsl);
    cfg
}

fn ca_ctx(ca: &common::Cert) -> TlsContext {
    TlsContext {
        enabled: true,
        ca_cert: ca.cert.to_str().unwrap().into(),
        ..TlsContext::default()
    }
}

#[tokio::test]
async fn s_client_ecdsa_and_rsa_over_tls12_and_tls13() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let before = ossl::stats();
    for key in [Key::EcPkcs8, Key::RsaPkcs1] {
        let leaf = pki.leaf(&ca, &format!("{key:?}"), key, "a.example", &["a.example"]);
        let cfg = server(&[TlsContext {
            alpn: "h2,http/1.1".into(),
            ..server_ctx(&leaf)
        }]);
        let mut srv = Server::start(cfg.clone()).await;
        for (flag, version) in [("-tls1_2", TlsVersion::V1_2), ("-tls1_3", TlsVersion::V1_3)] {
            let ca_path = ca.cert.to_str().unwrap();
            let run = s_client(
                srv.port(),
                &[
                    "-servername",
                    "a.example",
                    flag,
                    "-alpn",
                    "http/1.1,h2",
                    "-CAfile",
                    ca_path,
                    "-verify_return_error",
                ],
            )
            .await;
            assert!(run.ok, "{key:?} {flag}: {}", run.out);
            assert_eq!(
                run.field("Verify return code:").as_deref(),
                Some("0 (ok)"),
                "{}",
                run.out
            );
            // the server's ALPN preference wins
            assert_eq!(run.field("ALPN protocol:").as_deref(), Some("h2"));
            let info = srv.next().await.expect("server handshake");
            assert_eq!(info.backend, Backend::OpenSsl);
            assert_eq!(info.version, Some(version));
            assert_eq!(info.sni.as_deref(), Some("a.example"));
            assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
            assert_eq!(info.context, Some(0));
            let suite = info.cipher_suite.unwrap();
            match (key, version) {
                (_, TlsVersion::V1_3) => assert!(suite.starts_with("TLS_AES_"), "{suite}"),
                (Key::EcPkcs8, _) => assert!(suite.starts_with("TLS_ECDHE_ECDSA_"), "{suite}"),
                _ => assert!(suite.starts_with("TLS_ECDHE_RSA_"), "{suite}"),
            }
            assert_eq!(info.key_exchange_group, Some("X25519"));
        }
        assert_eq!(cfg.counters().ok(), 2);
    }
    assert!(ossl::stats().handshakes_software >= before.handshakes_software + 4);
    assert!(Backend::OpenSsl.totals().ok >= 4);
}

#[tokio::test]
async fn curl_gets_a_response() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::RsaPkcs8, "a.example", &["a.example"]);
    let mut srv = Server::start(server(&[TlsContext {
        alpn: "http/1.1".into(),
        ..server_ctx(&leaf)
    }]))
    .await;
    let run = curl(srv.port(), "a.example", &ca.cert, &[]).await;
    assert!(run.ok && run.out.starts_with("ok"), "{}", run.out);
    assert_eq!(
        srv.next().await.unwrap().alpn.as_deref(),
        Some(&b"http/1.1"[..])
    );
    // a CA that did not sign the certificate
    let other = pki.ca("other");
    assert!(!curl(srv.port(), "a.example", &other.cert, &[]).await.ok);
}

#[tokio::test]
async fn rustls_client_to_openssl_server_and_back() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcSec1, "a.example", &["a.example"]);
    let client_ctx = TlsContext {
        server_name: "a.example".into(),
        alpn: "h2".into(),
        ..ca_ctx(&ca)
    };
    let srv_ctx = TlsContext {
        alpn: "h2".into(),
        ..server_ctx(&leaf)
    };

    // rustls client -> OpenSSL server, TLS 1.3 and 1.2
    let mut srv = Server::start(server(std::slice::from_ref(&srv_ctx))).await;
    for max in [None, Some(TlsVersion::V1_2)] {
        let c = ClientConfig::build(
            &TlsContext {
                max_version: max,
                ..client_ctx.clone()
            },
            CPATH,
        )
        .unwrap();
        let mut tls = c.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
        assert_eq!(tls.info().backend, Backend::Rustls);
        assert_eq!(tls.alpn(), Some(&b"h2"[..]));
        assert_eq!(
            echo(&mut tls, b"rustls to openssl").await,
            b"rustls to openssl"
        );
        // a large write crosses several records and write calls
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        assert_eq!(echo(&mut tls, &big).await, big);
        let info = srv.next().await.unwrap();
        assert_eq!(info.backend, Backend::OpenSsl);
        assert_eq!(info.version, Some(max.unwrap_or(TlsVersion::V1_3)));
    }

    // OpenSSL client -> rustls server
    let mut rustls_srv =
        Server::start(ServerConfig::build(std::slice::from_ref(&srv_ctx), PATH).unwrap()).await;
    let c = ClientConfig::build_openssl(&client_ctx, CPATH, &OpenSslBackend::default()).unwrap();
    assert_eq!(c.backend(), Backend::OpenSsl);
    let mut tls = c
        .connect(tcp(&rustls_srv).await, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(tls.info().backend, Backend::OpenSsl);
    assert_eq!(tls.sni(), Some("a.example"));
    assert_eq!(tls.alpn(), Some(&b"h2"[..]));
    assert_eq!(tls.info().version, Some(TlsVersion::V1_3));
    assert_eq!(tls.peer_certificates()[0].as_ref(), leaf.der().as_slice());
    assert_eq!(
        echo(&mut tls, b"openssl to rustls").await,
        b"openssl to rustls"
    );
    let info = rustls_srv.next().await.unwrap();
    assert_eq!(info.backend, Backend::Rustls);
    assert_eq!(info.sni.as_deref(), Some("a.example"));

    // OpenSSL client -> OpenSSL server; the name is verified
    let mut tls = c.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
    assert_eq!(
        echo(&mut tls, b"openssl both ends").await,
        b"openssl both ends"
    );
    srv.next().await.unwrap();
    let wrong = ClientConfig::build_openssl(
        &TlsContext {
            server_name: "wrong.example".into(),
            ..client_ctx.clone()
        },
        CPATH,
        &OpenSslBackend::default(),
    )
    .unwrap();
    let e = wrong
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .unwrap_err();
    assert!(!e.is_config(), "{e}");
    assert!(e.to_string().contains("certificate verify failed"), "{e}");
    let _ = srv.next().await;
    // insecure_skip accepts it
    let skip = ClientConfig::build_openssl(
        &TlsContext {
            server_name: "wrong.example".into(),
            insecure_skip: true,
            ..TlsContext::default()
        },
        CPATH,
        &OpenSslBackend::default(),
    )
    .unwrap();
    let mut tls = skip.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
    assert_eq!(echo(&mut tls, b"x").await, b"x");
    srv.next().await.unwrap();
    assert_eq!(c.counters().ok(), 2);
    assert_eq!(wrong.counters().failed(), 1);
}

#[tokio::test]
async fn sni_selects_the_context_and_mtls_is_enforced() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let a = pki.leaf(&ca, "a", Key::EcPkcs8, "a.example", &["a.example"]);
    let b = pki.leaf(&ca, "b", Key::RsaPkcs8, "b.example", &["*.b.example"]);
    let client_cert = pki.leaf(&ca, "client", Key::EcPkcs8, "client", &["client"]);
    let set = [
        server_ctx(&a),
        TlsContext {
            require_client_cert: true,
            ca_cert: ca.cert.to_str().unwrap().into(),
            ..server_ctx(&b)
        },
    ];
    let mut srv = Server::start(server(&set)).await;

    // no SNI: the first context
    let c = ClientConfig::build_openssl(
        &TlsContext {
            server_name: "a.example".into(),
            ..ca_ctx(&ca)
        },
        CPATH,
        &OpenSslBackend::default(),
    )
    .unwrap();
    let tls = c.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
    assert_eq!(tls.peer_certificates()[0].as_ref(), a.der().as_slice());
    assert_eq!(srv.next().await.unwrap().context, Some(0));

    // x.b.example: the wildcard context, which requires a client certificate
    let anon = ClientConfig::build(
        &TlsContext {
            server_name: "x.b.example".into(),
            ..ca_ctx(&ca)
        },
        CPATH,
    )
    .unwrap();
    let refused = async {
        let mut tls = anon.connect(tcp(&srv).await, "127.0.0.1").await?;
        // TLS 1.3: the client learns of the refusal on its first read
        let _ = echo_result(&mut tls).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(refused.is_err());
    assert!(srv.next().await.is_err());

    let with_cert = ClientConfig::build(
        &TlsContext {
            server_name: "x.b.example".into(),
            cert_chain: client_cert.cert.to_str().unwrap().into(),
            private_key: client_cert.key.to_str().unwrap().into(),
            ..ca_ctx(&ca)
        },
        CPATH,
    )
    .unwrap();
    let mut tls = with_cert
        .connect(tcp(&srv).await, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(tls.peer_certificates()[0].as_ref(), b.der().as_slice());
    assert_eq!(echo(&mut tls, b"mtls").await, b"mtls");
    let info = srv.next().await.unwrap();
    assert_eq!(info.context, Some(1));
    assert_eq!(info.sni.as_deref(), Some("x.b.example"));
    assert_eq!(
        info.peer_certificates[0].as_ref(),
        client_cert.der().as_slice()
    );
}

async fn echo_result<S>(s: &mut S) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"x").await?;
    let mut back = [0u8; 1];
    s.read_exact(&mut back).await?;
    Ok(back.to_vec())
}

#[test]
fn build_with_openssl_is_the_default_settings() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let cfg = ServerConfig::build_with(Backend::OpenSsl, &[server_ctx(&leaf)], PATH).unwrap();
    assert_eq!(cfg.backend(), Backend::OpenSsl);
    assert!(cfg.accelerator().is_none());
    // reload rebuilds the OpenSSL contexts from the files
    cfg.reload().unwrap();
    assert_eq!(cfg.generation(), 1);
    assert_eq!(Backend::ALL, &[Backend::Rustls, Backend::OpenSsl]);
    assert_eq!(Backend::OpenSsl.name(), "openssl");
    // a key that does not match its certificate is a config error naming the key
    let other = pki.leaf(&ca, "other", Key::EcPkcs8, "a.example", &["a.example"]);
    let e = ServerConfig::build_with(
        Backend::OpenSsl,
        &[TlsContext {
            private_key: other.key.to_str().unwrap().into(),
            ..server_ctx(&leaf)
        }],
        PATH,
    )
    .unwrap_err();
    assert!(e.is_config());
    assert!(
        e.to_string().starts_with(&format!("{PATH}.private_key")),
        "{e}"
    );
}
