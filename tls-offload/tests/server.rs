//! The rustls server against `openssl s_client` and `curl`: key types, versions, ALPN, mTLS,
//! SNI, suites, groups, session resumption and config errors.

mod common;

use common::{curl, s_client, server_ctx, Key, Pki, Server};
use mosn_config::{TlsContext, TlsVersion};
use mosn_tls_offload::{Backend, HandshakeCounters, ServerConfig, TlsError};

const PATH: &str = "listeners[0].filter_chains[0].tls_context";

fn build(ctx: TlsContext) -> ServerConfig {
    ServerConfig::build(&[ctx], PATH).expect("server config")
}

#[tokio::test]
async fn ecdsa_and_rsa_over_tls12_and_tls13_with_s_client() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    for key in [Key::EcPkcs8, Key::RsaPkcs8] {
        let leaf = pki.leaf(&ca, &format!("{key:?}"), key, "a.example", &["a.example"]);
        let mut server = Server::start(build(server_ctx(&leaf))).await;
        for (flag, version) in [("-tls1_2", TlsVersion::V1_2), ("-tls1_3", TlsVersion::V1_3)] {
            let ca_path = ca.cert.to_str().unwrap();
            let run = s_client(
                server.port(),
                &[
                    "-servername",
                    "a.example",
                    flag,
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
            let info = server.next().await.expect("server handshake");
            assert_eq!(info.version, Some(version));
            assert_eq!(info.backend, Backend::Rustls);
            assert_eq!(info.sni.as_deref(), Some("a.example"));
            let suite = info.cipher_suite.unwrap();
            match (key, version) {
                (_, TlsVersion::V1_3) => assert!(
                    suite.starts_with("TLS_AES_") || suite.starts_with("TLS_CHACHA"),
                    "{suite}"
                ),
                (Key::EcPkcs8, _) => assert!(suite.starts_with("TLS_ECDHE_ECDSA_"), "{suite}"),
                _ => assert!(suite.starts_with("TLS_ECDHE_RSA_"), "{suite}"),
            }
        }
    }
}

#[tokio::test]
async fn sec1_and_pkcs1_keys_load() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    for key in [Key::EcSec1, Key::RsaPkcs1] {
        let leaf = pki.leaf(&ca, &format!("{key:?}"), key, "a.example", &["a.example"]);
        assert!(leaf.key_pem().contains(match key {
            Key::EcSec1 => "BEGIN EC PRIVATE KEY",
            _ => "BEGIN RSA PRIVATE KEY",
        }));
        let mut server = Server::start(build(server_ctx(&leaf))).await;
        let run = s_client(server.port(), &["-servername", "a.example"]).await;
        assert!(run.ok, "{key:?}: {}", run.out);
        server.next().await.expect("handshake");
    }
}

#[tokio::test]
async fn curl_over_http1_and_alpn_as_configured() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);

    // ALPN http/1.1 only: curl (which offers h2 first) gets http/1.1 and its response
    let mut server = Server::start(build(TlsContext {
        alpn: "http/1.1".into(),
        ..server_ctx(&leaf)
    }))
    .await;
    let run = curl(server.port(), "a.example", &ca.cert, &[]).await;
    assert!(run.ok && run.out.starts_with("ok"), "{}", run.out);
    assert_eq!(
        server.next().await.unwrap().alpn.as_deref(),
        Some(&b"http/1.1"[..])
    );

    // RSA certificate, TLS 1.2 forced on curl's side
    let rsa = pki.leaf(&ca, "rsa", Key::RsaPkcs8, "a.example", &["a.example"]);
    let mut server = Server::start(build(TlsContext {
        alpn: "h2,http/1.1".into(),
        ..server_ctx(&rsa)
    }))
    .await;
    let run = curl(
        server.port(),
        "a.example",
        &ca.cert,
        &["--http1.1", "--tls-max", "1.2"],
    )
    .await;
    assert!(run.ok && run.out.starts_with("ok"), "{}", run.out);
    let info = server.next().await.unwrap();
    assert_eq!(info.version, Some(TlsVersion::V1_2));
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));

    // h2 is negotiated when offered and configured
    let run = s_client(
        server.port(),
        &["-alpn", "h2,http/1.1", "-servername", "a.example"],
    )
    .await;
    assert!(run.ok, "{}", run.out);
    assert_eq!(
        run.field("ALPN protocol:").as_deref(),
        Some("h2"),
        "{}",
        run.out
    );
    assert_eq!(
        server.next().await.unwrap().alpn.as_deref(),
        Some(&b"h2"[..])
    );

    // curl with a CA that did not sign the certificate fails
    let other = pki.ca("other");
    let run = curl(server.port(), "a.example", &other.cert, &[]).await;
    assert!(!run.ok, "{}", run.out);
}

#[tokio::test]
async fn require_client_cert_refuses_missing_and_foreign_certs() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let other = pki.ca("other");
    let leaf = pki.leaf(&ca, "server", Key::EcPkcs8, "a.example", &["a.example"]);
    let good = pki.leaf(
        &ca,
        "client",
        Key::EcSec1,
        "client.a.example",
        &["client.a.example"],
    );
    let foreign = pki.leaf(&other, "foreign", Key::RsaPkcs1, "foreign", &["foreign"]);
    let counters = HandshakeCounters::default();
    let config = build(TlsContext {
        ca_cert: ca.cert.to_str().unwrap().into(),
        verify_client: true,
        require_client_cert: true,
        ..server_ctx(&leaf)
    })
    .with_counters(counters.clone());
    let before = Backend::Rustls.totals();
    let mut server = Server::start(config).await;

    // no client certificate: refused (TLS 1.2, so s_client sees the refusal in the handshake)
    let run = s_client(server.port(), &["-tls1_2"]).await;
    assert!(!run.ok, "{}", run.out);
    server
        .next()
        .await
        .expect_err("no client certificate must be refused");

    // a certificate from another CA: refused
    let run = s_client(
        server.port(),
        &[
            "-tls1_2",
            "-cert",
            foreign.cert.to_str().unwrap(),
            "-key",
            foreign.key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!run.ok, "{}", run.out);
    server
        .next()
        .await
        .expect_err("a foreign client certificate must be refused");

    // TLS 1.3 too (the refusal arrives after the client's Finished)
    let _ = s_client(server.port(), &["-tls1_3"]).await;
    server
        .next()
        .await
        .expect_err("no client certificate must be refused over TLS 1.3");

    // signed by ca_cert: accepted, and the server sees the certificate
    for flag in ["-tls1_2", "-tls1_3"] {
        let run = s_client(
            server.port(),
            &[
                flag,
                "-cert",
                good.cert.to_str().unwrap(),
                "-key",
                good.key.to_str().unwrap(),
            ],
        )
        .await;
        assert!(run.ok, "{}", run.out);
        let info = server.next().await.expect("client certificate accepted");
        assert_eq!(info.peer_certificates[0].as_ref(), good.der().as_slice());
    }
    assert_eq!((counters.ok(), counters.failed()), (2, 3));
    let after = Backend::Rustls.totals();
    assert!(after.ok >= before.ok + 2 && after.failed >= before.failed + 3);
}

#[tokio::test]
async fn verify_client_without_require_accepts_anonymous_clients() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let other = pki.ca("other");
    let leaf = pki.leaf(&ca, "server", Key::EcPkcs8, "a.example", &["a.example"]);
    let foreign = pki.leaf(&other, "foreign", Key::EcPkcs8, "foreign", &["foreign"]);
    let mut server = Server::start(build(TlsContext {
        ca_cert: ca.cert.to_str().unwrap().into(),
        verify_client: true,
        ..server_ctx(&leaf)
    }))
    .await;
    let run = s_client(server.port(), &["-tls1_2"]).await;
    assert!(run.ok, "{}", run.out);
    assert!(server.next().await.unwrap().peer_certificates.is_empty());
    // a presented certificate is still verified
    let _ = s_client(
        server.port(),
        &[
            "-tls1_2",
            "-cert",
            foreign.cert.to_str().unwrap(),
            "-key",
            foreign.key.to_str().unwrap(),
        ],
    )
    .await;
    server
        .next()
        .await
        .expect_err("a presented foreign certificate must be refused");
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_first() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let a = pki.leaf(&ca, "a", Key::EcPkcs8, "a.example", &["a.example"]);
    let b = pki.leaf(&ca, "b", Key::RsaPkcs8, "*.b.example", &["*.b.example"]);
    let config = ServerConfig::build(
        &[server_ctx(&a), server_ctx(&b)],
        "listeners[0].filter_chains[0].tls_context_set",
    )
    .unwrap();
    let mut server = Server::start(config).await;
    for (sni, cn, context) in [
        (Some("a.example"), "a.example", 0),
        (Some("x.b.example"), "*.b.example", 1),
        (Some("deep.x.b.example"), "*.b.example", 1),
        (Some("unknown.test"), "a.example", 0),
        (None, "a.example", 0),
    ] {
        let args: Vec<&str> = match sni {
            Some(name) => vec!["-servername", name],
            None => vec!["-noservername"],
        };
        let run = s_client(server.port(), &args).await;
        assert!(run.ok, "{sni:?}: {}", run.out);
        assert_eq!(
            run.field("subject=").as_deref(),
            Some(format!("CN = {cn}").as_str()),
            "{sni:?}: {}",
            run.out
        );
        let info = server.next().await.unwrap();
        assert_eq!(info.context, Some(context), "{sni:?}");
        assert_eq!(info.sni.as_deref(), sni);
    }
}

#[tokio::test]
async fn versions_and_cipher_suites_are_honoured() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);

    // No `cipher_suites`: the server's preference (Go's, MOSN's) picks AES-128-GCM even for a
    // client that lists AES-256 first, as OpenSSL and curl do.
    let mut server = Server::start(build(server_ctx(&leaf))).await;
    let run = s_client(
        server.port(),
        &[
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
        ],
    )
    .await;
    assert!(run.ok, "{}", run.out);
    assert_eq!(
        server.next().await.unwrap().cipher_suite,
        Some("TLS_AES_128_GCM_SHA256")
    );

    // TLS 1.3 floor: a TLS 1.2 client is refused
    let mut server = Server::start(build(TlsContext {
        min_version: Some(TlsVersion::V1_3),
        ..server_ctx(&leaf)
    }))
    .await;
    assert!(!s_client(server.port(), &["-tls1_2"]).await.ok);
    server.next().await.expect_err("TLS 1.2 below the floor");
    assert!(s_client(server.port(), &["-tls1_3"]).await.ok);
    server.next().await.unwrap();

    // TLS 1.2 ceiling and one TLS 1.2 suite
    let mut server = Server::start(build(TlsContext {
        max_version: Some(TlsVersion::V1_2),
        cipher_suites: "ECDHE-ECDSA-AES128-GCM-SHA256".into(),
        ..server_ctx(&leaf)
    }))
    .await;
    let run = s_client(
        server.port(),
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    )
    .await;
    assert!(run.ok, "{}", run.out);
    assert!(
        run.out.contains("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"),
        "{}",
        run.out
    );
    let info = server.next().await.unwrap();
    assert_eq!(
        info.cipher_suite,
        Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    );
    assert!(
        !s_client(
            server.port(),
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"]
        )
        .await
        .ok
    );
    server.next().await.expect_err("suite not configured");
    assert!(!s_client(server.port(), &["-tls1_3"]).await.ok);
    server.next().await.expect_err("TLS 1.3 above the ceiling");

    // a TLS 1.3 suite by name (MOSN/OpenSSL separator `:`)
    let mut server = Server::start(build(TlsContext {
        cipher_suites: "TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES256-GCM-SHA384".into(),
        ..server_ctx(&leaf)
    }))
    .await;
    let run = s_client(
        server.port(),
        &[
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
        ],
    )
    .await;
    assert!(run.ok, "{}", run.out);
    assert_eq!(
        server.next().await.unwrap().cipher_suite,
        Some("TLS_AES_128_GCM_SHA256")
    );
    assert!(
        !s_client(
            server.port(),
            &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"]
        )
        .await
        .ok
    );
    server
        .next()
        .await
        .expect_err("TLS 1.3 suite not configured");

    // a tlsv1_0 floor is raised to TLS 1.2 (with a warning), not refused
    let mut server = Server::start(build(TlsContext {
        min_version: Some(TlsVersion::V1_0),
        ..server_ctx(&leaf)
    }))
    .await;
    assert!(s_client(server.port(), &["-tls1_2"]).await.ok);
    server.next().await.unwrap();
}

#[tokio::test]
async fn key_exchange_groups_are_honoured() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    // RSA: with an ECDSA P-256 certificate a TLS 1.2 client offering only P-384 refuses the
    // certificate's curve (OpenSSL ties the two), which would hide what is tested here
    let leaf = pki.leaf(&ca, "leaf", Key::RsaPkcs8, "a.example", &["a.example"]);

    // default: X25519, P-256, P-384
    let mut server = Server::start(build(server_ctx(&leaf))).await;
    assert!(s_client(server.port(), &[]).await.ok);
    assert_eq!(
        server.next().await.unwrap().key_exchange_group,
        Some("X25519")
    );
    for (group, name) in [("P-256", "secp256r1"), ("P-384", "secp384r1")] {
        for flag in ["-tls1_2", "-tls1_3"] {
            let run = s_client(server.port(), &[flag, "-groups", group]).await;
            assert!(run.ok, "{group} {flag}: {}", run.out);
            assert_eq!(server.next().await.unwrap().key_exchange_group, Some(name));
        }
    }
    assert!(!s_client(server.port(), &["-groups", "P-521"]).await.ok);
    server
        .next()
        .await
        .expect_err("P-521 is not a default group");

    // p256 only: an X25519-only client is refused, P-256 works
    let mut server = Server::start(build(TlsContext {
        ecdh_curves: "p256".into(),
        ..server_ctx(&leaf)
    }))
    .await;
    for flag in ["-tls1_2", "-tls1_3"] {
        assert!(
            !s_client(server.port(), &[flag, "-groups", "X25519"])
                .await
                .ok
        );
        server.next().await.expect_err("x25519 not configured");
        assert!(
            s_client(server.port(), &[flag, "-groups", "P-256"])
                .await
                .ok
        );
        assert_eq!(
            server.next().await.unwrap().key_exchange_group,
            Some("secp256r1")
        );
    }
}

#[tokio::test]
async fn session_resumption_and_tickets() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let dir = tempfile::tempdir().unwrap();
    let sess = dir.path().join("sess.pem");
    let sess = sess.to_str().unwrap();
    for ticket in ["", "any-ticket-key"] {
        let mut server = Server::start(build(TlsContext {
            ticket: ticket.into(),
            ..server_ctx(&leaf)
        }))
        .await;
        let run = s_client(server.port(), &["-tls1_2", "-sess_out", sess]).await;
        assert!(run.ok, "{}", run.out);
        assert!(!server.next().await.unwrap().resumed);
        assert_eq!(
            run.out.contains("TLS session ticket lifetime hint"),
            !ticket.is_empty(),
            "ticket={ticket:?}: {}",
            run.out
        );
        let run = s_client(server.port(), &["-tls1_2", "-sess_in", sess]).await;
        assert!(
            run.ok && run.out.contains("Reused, TLSv1.2"),
            "ticket={ticket:?}: {}",
            run.out
        );
        assert!(server.next().await.unwrap().resumed);
    }
}

#[test]
fn config_errors_name_the_path() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let err = |ctx: TlsContext| ServerConfig::build(&[ctx], PATH).unwrap_err().to_string();

    assert_eq!(
        err(TlsContext {
            cipher_suites: "ECDHE-ECDSA-AES128-GCM-SHA256:NOPE-SUITE".into(),
            ..server_ctx(&leaf)
        }),
        format!("{PATH}.cipher_suites: unknown cipher suite `NOPE-SUITE`")
    );
    assert_eq!(
        err(TlsContext {
            ecdh_curves: "x25519,brainpool".into(),
            ..server_ctx(&leaf)
        }),
        format!("{PATH}.ecdh_curves: unknown curve `brainpool`")
    );
    let e = err(TlsContext {
        cert_chain: "/nonexistent/x.pem".into(),
        ..server_ctx(&leaf)
    });
    assert!(
        e.starts_with(&format!(
            "{PATH}.cert_chain: cannot read /nonexistent/x.pem: No such file"
        )),
        "{e}"
    );
    let e = err(TlsContext {
        max_version: Some(TlsVersion::V1_1),
        ..server_ctx(&leaf)
    });
    assert!(
        e.starts_with(&format!("{PATH}.max_version: tlsv1_1")),
        "{e}"
    );
    let e = err(TlsContext {
        verify_client: true,
        ..server_ctx(&leaf)
    });
    assert_eq!(
        e,
        format!("{PATH}.ca_cert: verify_client needs a CA to verify client certificates")
    );
    let e = err(TlsContext {
        private_key: String::new(),
        ..server_ctx(&leaf)
    });
    assert!(e.starts_with(&format!("{PATH}.private_key: ")), "{e}");
    // a key that does not belong to the certificate
    let other = pki.leaf(&ca, "other", Key::EcPkcs8, "b.example", &["b.example"]);
    let e = err(TlsContext {
        private_key: other.key.to_str().unwrap().into(),
        ..server_ctx(&leaf)
    });
    assert!(e.starts_with(&format!("{PATH}.private_key: ")), "{e}");
    // a private key in the certificate slot, as PEM text: the text is never echoed
    let key_text = leaf.key_pem();
    let e = err(TlsContext {
        cert_chain: key_text.clone(),
        ..server_ctx(&leaf)
    });
    assert_eq!(
        e,
        format!("{PATH}.cert_chain: no CERTIFICATE block in the PEM text")
    );
    // in a set, the index is part of the path
    let set = "listeners[1].filter_chains[0].tls_context_set";
    let bad = TlsContext {
        alpn: "h2".into(),
        cipher_suites: "BOGUS".into(),
        ..server_ctx(&leaf)
    };
    let e = ServerConfig::build(&[server_ctx(&leaf), bad], set).unwrap_err();
    assert!(matches!(e, TlsError::Config { .. }));
    assert_eq!(
        e.to_string(),
        format!("{set}[1].cipher_suites: unknown cipher suite `BOGUS`")
    );
    // nothing enabled
    let e = ServerConfig::build(&[TlsContext::default()], PATH).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{PATH}: no TLS context with status: true")
    );
}

#[tokio::test]
async fn inline_pem_text_works_like_files() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcSec1, "a.example", &["a.example"]);
    let config = build(TlsContext {
        enabled: true,
        cert_chain: leaf.cert_pem(),
        private_key: leaf.key_pem(),
        ..TlsContext::default()
    });
    assert!(config.watched_files().is_empty());
    let mut server = Server::start(config).await;
    let run = s_client(
        server.port(),
        &["-CAfile", ca.cert.to_str().unwrap(), "-verify_return_error"],
    )
    .await;
    assert!(run.ok, "{}", run.out);
    server.next().await.unwrap();
}

/// The lead may run handshakes on a multi-threaded runtime or hand streams across tasks.
#[allow(dead_code)]
fn handshake_futures_and_streams_are_send(
    server: ServerConfig,
    client: mosn_tls_offload::ClientConfig,
) {
    fn send<T: Send>(_: T) {}
    send(async move {
        let tcp = tokio::net::TcpStream::connect("127.0.0.1:1").await.unwrap();
        let tls = server.accept(tcp).await.unwrap();
        send(tls);
    });
    send(async move {
        let tcp = tokio::net::TcpStream::connect("127.0.0.1:1").await.unwrap();
        client.connect(tcp, "x").await.unwrap()
    });
}
