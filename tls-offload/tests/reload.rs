//! Certificate reload: explicit `reload()` and the mtime-polling `Reloader`. New handshakes
//! see the new certificate; an open connection keeps working; a failed reload keeps the old.

mod common;

use std::time::{Duration, Instant};

use common::{echo, s_client, server_ctx, tcp, Cert, Key, Pki, Server};
use mosn_config::TlsContext;
use mosn_tls_offload::{ClientConfig, Reloader, ServerConfig};

/// Replaces `dst`'s certificate and key files with `src`'s (write to a temporary name, rename).
fn install(src: &Cert, dst: &Cert) {
    for (from, to) in [(&src.cert, &dst.cert), (&src.key, &dst.key)] {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
}

fn served(config: &ServerConfig) -> Vec<u8> {
    config.leaf_certificates()[0].as_ref().to_vec()
}

async fn wait_for_generation(config: &ServerConfig, generation: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while config.generation() < generation {
        assert!(
            Instant::now() < deadline,
            "the reloader did not reload within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reload_swaps_certificates_for_new_handshakes_only() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let v1 = pki.leaf(&ca, "v1", Key::EcPkcs8, "v1.a.example", &["a.example"]);
    let v2 = pki.leaf(&ca, "v2", Key::RsaPkcs8, "v2.a.example", &["a.example"]);
    let v3 = pki.leaf(&ca, "v3", Key::EcSec1, "v3.a.example", &["a.example"]);
    // the listener's files, first with v1's contents
    let live = Cert {
        cert: pki.path("live.pem"),
        key: pki.path("live.key"),
    };
    install(&v1, &live);

    let config = ServerConfig::build(
        &[server_ctx(&live)],
        "listeners[0].filter_chains[0].tls_context",
    )
    .unwrap();
    assert_eq!(
        config.watched_files(),
        vec![live.cert.clone(), live.key.clone()]
    );
    let mut server = Server::start(config.clone()).await;
    // a fresh client config per connection: a shared one would resume the first session,
    // whose identity is the certificate it was established with
    let client = || {
        ClientConfig::build(
            &TlsContext {
                enabled: true,
                server_name: "a.example".into(),
                ca_cert: ca.cert.to_str().unwrap().into(),
                ..TlsContext::default()
            },
            "c",
        )
        .unwrap()
    };

    let mut open = client().connect(tcp(&server).await, "x").await.unwrap();
    assert_eq!(open.peer_certificates()[0].as_ref(), v1.der().as_slice());
    assert_eq!(echo(&mut open, b"before").await, b"before");
    server.next().await.unwrap();

    // explicit reload
    install(&v2, &live);
    config.reload().unwrap();
    assert_eq!(config.generation(), 1);
    assert_eq!(served(&config), v2.der());
    let fresh = client().connect(tcp(&server).await, "x").await.unwrap();
    assert_eq!(fresh.peer_certificates()[0].as_ref(), v2.der().as_slice());
    server.next().await.unwrap();
    let run = s_client(server.port(), &["-servername", "a.example"]).await;
    assert_eq!(
        run.field("subject=").as_deref(),
        Some("CN = v2.a.example"),
        "{}",
        run.out
    );
    server.next().await.unwrap();
    // the connection opened before the reload still works
    assert_eq!(echo(&mut open, b"after").await, b"after");

    // a broken key: reload fails with the path, the old certificate stays
    std::fs::write(&live.key, "not a key").unwrap();
    let e = config.reload().unwrap_err().to_string();
    assert!(
        e.starts_with("listeners[0].filter_chains[0].tls_context.private_key: "),
        "{e}"
    );
    assert_eq!(config.generation(), 1);
    assert_eq!(served(&config), v2.der());
    let tls = client().connect(tcp(&server).await, "x").await.unwrap();
    assert_eq!(tls.peer_certificates()[0].as_ref(), v2.der().as_slice());
    server.next().await.unwrap();

    // the poller notices the fixed files and reloads on its own
    let reloader = Reloader::spawn(config.clone(), Duration::from_millis(50)).unwrap();
    install(&v3, &live);
    wait_for_generation(&config, 2).await;
    let tls = client().connect(tcp(&server).await, "x").await.unwrap();
    assert_eq!(tls.peer_certificates()[0].as_ref(), v3.der().as_slice());
    server.next().await.unwrap();
    assert_eq!(echo(&mut open, b"still").await, b"still");

    // a failed poll-triggered reload keeps v3; the next change is picked up
    std::fs::write(&live.cert, "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(config.generation(), 2);
    assert_eq!(served(&config), v3.der());
    install(&v1, &live);
    wait_for_generation(&config, 3).await;
    assert_eq!(served(&config), v1.der());
    reloader.stop();
}

#[tokio::test]
async fn reloader_without_files_does_nothing() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let config = ServerConfig::build(
        &[TlsContext {
            enabled: true,
            cert_chain: leaf.cert_pem(),
            private_key: leaf.key_pem(),
            ..TlsContext::default()
        }],
        "l",
    )
    .unwrap();
    let reloader = Reloader::spawn(config.clone(), Duration::from_millis(10)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(reloader);
    assert_eq!(config.generation(), 0);
    // inline PEM reloads to the same certificate
    config.reload().unwrap();
    assert_eq!(
        config.leaf_certificates()[0].as_ref(),
        leaf.der().as_slice()
    );
}
