//! `tls_context.type` + `extend_verify` select the backend in `ServerConfig::build` and
//! `ClientConfig::build`: rustls (`""`, `"rustls"`), OpenSSL (`"openssl"`, settings from
//! `extend_verify`; feature `openssl`), keyless (tests/keyless.rs). Unknown types, mixed
//! `tls_context_set`s and malformed settings are errors that name the JSON path.

mod common;

use common::{echo, server_ctx, tcp, Key, Pki, Server};
use mosn_config::TlsContext;
use mosn_tls_offload::{Backend, ClientConfig, ServerConfig};
use serde_json::{json, Value};

const PATH: &str = "listeners[0].filter_chains[0].tls_context";
const CPATH: &str = "cluster_manager.clusters[0].tls_context";

fn typed(mut ctx: TlsContext, kind: &str, extend_verify: Option<Value>) -> TlsContext {
    ctx.kind = kind.into();
    ctx.extend_verify = extend_verify;
    ctx
}

fn client_ctx(ca: &common::Cert) -> TlsContext {
    TlsContext {
        enabled: true,
        server_name: "a.example".into(),
        ca_cert: ca.cert.to_str().unwrap().into(),
        ..TlsContext::default()
    }
}

#[tokio::test]
async fn rustls_types_build_rustls_and_unknown_types_are_errors() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    for kind in ["", "rustls", "Rustls"] {
        // extend_verify with a rustls type: warned and ignored
        let ctx = typed(server_ctx(&leaf), kind, Some(json!({"anything": 1})));
        let cfg = ServerConfig::build(&[ctx], PATH).unwrap();
        assert_eq!(cfg.backend(), Backend::Rustls);
        let mut srv = Server::start(cfg).await;
        let c = ClientConfig::build(&typed(client_ctx(&ca), kind, None), CPATH).unwrap();
        assert_eq!(c.backend(), Backend::Rustls);
        let mut tls = c.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
        assert_eq!(echo(&mut tls, b"rustls").await, b"rustls");
        assert_eq!(srv.next().await.unwrap().backend, Backend::Rustls);
    }
    let known = r#"known: "" (rustls), "rustls", "openssl", "keyless""#;
    let e = ServerConfig::build(&[typed(server_ctx(&leaf), "sm2", None)], PATH)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("{PATH}.type: unknown TLS context type \"sm2\"; {known}")
    );
    let e = ServerConfig::build(
        &[server_ctx(&leaf), typed(server_ctx(&leaf), "gm", None)],
        PATH,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with(&format!("{PATH}[1].type: unknown")), "{e}");
    let e = ClientConfig::build(&typed(client_ctx(&ca), "sm2", None), CPATH)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("{CPATH}.type: unknown")), "{e}");
    // a disabled context's type is not looked at
    let mut off = typed(server_ctx(&leaf), "sm2", None);
    off.enabled = false;
    assert!(ServerConfig::build(&[server_ctx(&leaf), off], PATH).is_ok());
}

#[cfg(not(feature = "openssl"))]
#[test]
fn openssl_type_without_the_feature_is_an_error() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
    let ctx = typed(server_ctx(&leaf), "openssl", None);
    let e = ServerConfig::build(std::slice::from_ref(&ctx), PATH)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("{PATH}.type: \"openssl\" needs mosn built with the openssl feature")
    );
    let e = ServerConfig::build(&[server_ctx(&leaf), ctx], PATH)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{PATH}[1].type: \"openssl\" needs")),
        "{e}"
    );
    let e = ClientConfig::build(&typed(client_ctx(&ca), "openssl", None), CPATH)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("{CPATH}.type: \"openssl\" needs mosn built with the openssl feature")
    );
}

#[cfg(feature = "openssl")]
mod openssl {
    use super::*;
    use mosn_tls_offload::openssl::{self as ossl, Accelerator};
    use mosn_tls_offload::TlsError;
    use tokio::sync::Mutex;

    /// The engine and OpenSSL's defaults are process-wide: one test at a time.
    static SERIAL: Mutex<()> = Mutex::const_new(());

    fn counts(accel: &Accelerator) -> [i64; 3] {
        ["STAT_ASYNC", "STAT_SYNC", "STAT_FAILED"].map(|c| accel.counter(c).unwrap())
    }

    fn engine_json(async_mode: bool) -> Value {
        json!({
            "engine": {
                "path": ossl::TEST_ENGINE_PATH,
                "algorithms": "RSA,EC",
                "ctrls": [["LATENCY_US", 0], ["LANES", "64"], ["FAIL_NEXT", 0]]
            },
            "async": async_mode,
            "polling": "internal",
            "on_failure": "refuse"
        })
    }

    #[tokio::test]
    async fn openssl_type_selects_the_test_engine_from_json_alone() {
        let _serial = SERIAL.lock().await;
        let pki = Pki::new();
        let ca = pki.ca("ca");
        for key in [Key::EcPkcs8, Key::RsaPkcs8] {
            let leaf = pki.leaf(&ca, &format!("{key:?}"), key, "a.example", &["a.example"]);
            for async_mode in [true, false] {
                let ctx = typed(server_ctx(&leaf), "openssl", Some(engine_json(async_mode)));
                let cfg = ServerConfig::build(&[ctx], PATH).unwrap();
                assert_eq!(cfg.backend(), Backend::OpenSsl);
                let accel = cfg
                    .accelerator()
                    .expect("the engine from extend_verify")
                    .clone();
                let before = counts(&accel);
                let mut srv = Server::start(cfg.clone()).await;
                for max in [None, Some(mosn_config::TlsVersion::V1_2)] {
                    let mut cctx = client_ctx(&ca);
                    cctx.max_version = max;
                    let c = ClientConfig::build(&cctx, CPATH).unwrap();
                    let mut tls = c.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
                    assert_eq!(echo(&mut tls, b"engine").await, b"engine");
                    assert_eq!(srv.next().await.unwrap().backend, Backend::OpenSsl);
                }
                // both handshake signatures went through the engine, in a job or blocking
                let after = counts(&accel);
                let delta = [0, 1, 2].map(|i| after[i] - before[i]);
                let expected = if async_mode { [2, 0, 0] } else { [0, 2, 0] };
                assert_eq!(delta, expected, "{key:?} async={async_mode}");
            }
        }

        // the client side too: type openssl on a cluster
        let leaf = pki.leaf(&ca, "plain", Key::EcPkcs8, "a.example", &["a.example"]);
        let mut srv = Server::start(ServerConfig::build(&[server_ctx(&leaf)], PATH).unwrap()).await;
        let cctx = typed(client_ctx(&ca), "openssl", Some(json!({"async": false})));
        let c = ClientConfig::build(&cctx, CPATH).unwrap();
        assert_eq!(c.backend(), Backend::OpenSsl);
        let mut tls = c.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
        assert_eq!(tls.info().backend, Backend::OpenSsl);
        assert_eq!(echo(&mut tls, b"client").await, b"client");
        srv.next().await.unwrap();
    }

    #[tokio::test]
    async fn on_failure_fallback_or_refuse_comes_from_json() {
        let _serial = SERIAL.lock().await;
        let pki = Pki::new();
        let ca = pki.ca("ca");
        let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
        let fallbacks = ossl::stats().fallbacks;
        for engine in [
            json!({"id": "mosn-no-such-engine"}),
            json!({"path": "/nonexistent/libengine.so"}),
        ] {
            let refuse = json!({"engine": engine, "on_failure": "refuse"});
            let e = ServerConfig::build(
                &[typed(server_ctx(&leaf), "openssl", Some(refuse.clone()))],
                PATH,
            )
            .unwrap_err();
            assert!(matches!(e, TlsError::Offload(_)), "{e}");
            let e = ClientConfig::build(&typed(client_ctx(&ca), "openssl", Some(refuse)), CPATH)
                .unwrap_err();
            assert!(matches!(e, TlsError::Offload(_)), "{e}");

            // fallback (also the default): built with rustls, handshakes work
            for fallback in [
                json!({"engine": engine, "on_failure": "fallback"}),
                json!({"engine": engine}),
            ] {
                let ctx = typed(server_ctx(&leaf), "openssl", Some(fallback.clone()));
                let cfg = ServerConfig::build(&[ctx], PATH).unwrap();
                assert_eq!(cfg.backend(), Backend::Rustls);
                assert!(cfg.accelerator().is_none());
                let mut srv = Server::start(cfg).await;
                let c =
                    ClientConfig::build(&typed(client_ctx(&ca), "openssl", Some(fallback)), CPATH)
                        .unwrap();
                assert_eq!(c.backend(), Backend::Rustls);
                let mut tls = c.connect(tcp(&srv).await, "127.0.0.1").await.unwrap();
                assert_eq!(echo(&mut tls, b"fallback").await, b"fallback");
                assert_eq!(srv.next().await.unwrap().backend, Backend::Rustls);
            }
        }
        assert_eq!(ossl::stats().fallbacks - fallbacks, 8);
    }

    #[tokio::test]
    async fn sets_must_not_mix_backends_and_settings_errors_name_the_key() {
        let _serial = SERIAL.lock().await;
        let pki = Pki::new();
        let ca = pki.ca("ca");
        let leaf = pki.leaf(&ca, "leaf", Key::EcPkcs8, "a.example", &["a.example"]);
        let ossl_ctx = |v: Value| typed(server_ctx(&leaf), "openssl", Some(v));
        let err = |ctxs: &[TlsContext]| ServerConfig::build(ctxs, PATH).unwrap_err().to_string();

        let e = err(&[ossl_ctx(json!({})), server_ctx(&leaf)]);
        assert!(
            e.starts_with(&format!(
                "{PATH}[1].type: \"rustls\" cannot share a tls_context_set with \"openssl\""
            )),
            "{e}"
        );
        let keyless = typed(
            server_ctx(&leaf),
            "keyless",
            Some(json!({"key_server": "127.0.0.1:1"})),
        );
        let e = err(&[server_ctx(&leaf), keyless, ossl_ctx(json!({}))]);
        assert!(
            e.starts_with(&format!("{PATH}[2].type: \"openssl\" cannot share")),
            "{e}"
        );
        let e = err(&[ossl_ctx(json!({})), ossl_ctx(json!({"async": false}))]);
        assert!(
            e.starts_with(&format!(
                "{PATH}[1].extend_verify: differs from {PATH}[0].extend_verify"
            )),
            "{e}"
        );
        // the same settings everywhere: one OpenSSL config serving the set
        let cfg = ServerConfig::build(&[ossl_ctx(json!({})), ossl_ctx(json!({}))], PATH).unwrap();
        assert_eq!(cfg.backend(), Backend::OpenSsl);
        // a disabled context does not count
        let mut off = server_ctx(&leaf);
        off.enabled = false;
        let cfg = ServerConfig::build(&[ossl_ctx(json!({})), off], PATH).unwrap();
        assert_eq!(cfg.backend(), Backend::OpenSsl);

        for (v, at) in [
            (json!({"engine": {"path": "qat"}}), "engine.path"),
            (
                json!({"engine": {"id": "e", "ctrls": [["A", true]]}}),
                "engine.ctrls[0][1]",
            ),
            (json!({"provider": {"name": ""}}), "provider.name"),
            (
                json!({"polling": {"external": {"interval": "1 ms"}}}),
                "polling.external.interval",
            ),
            (json!({"on_failure": "retry"}), "on_failure"),
            (json!({"asynch": true}), "asynch"),
        ] {
            let e = err(&[ossl_ctx(v.clone())]);
            assert!(
                e.starts_with(&format!("{PATH}.extend_verify.{at}: ")),
                "{v}: {e}"
            );
            let e = err(&[server_ctx(&leaf), ossl_ctx(v.clone())]);
            assert!(
                e.starts_with(&format!("{PATH}[1].extend_verify.{at}: ")),
                "{v}: {e}"
            );
            let e = ClientConfig::build(&typed(client_ctx(&ca), "openssl", Some(v.clone())), CPATH)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("{CPATH}.extend_verify.{at}: ")),
                "{v}: {e}"
            );
        }

        // keyless needs rustls: an explicit OpenSSL backend refuses it
        let keyless = typed(
            server_ctx(&leaf),
            "keyless",
            Some(json!({"key_server": "127.0.0.1:1"})),
        );
        let e = ServerConfig::build_with(Backend::OpenSsl, &[keyless], PATH)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "{PATH}.type: \"keyless\" needs the rustls backend"
            )),
            "{e}"
        );
    }
}
