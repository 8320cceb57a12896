//! TLS end to end through the real binary: listener TLS (HTTP/1, HTTP/2 by ALPN) checked by
//! curl, the inspector serving TLS and plaintext (HTTP and Bolt) on one port, mTLS accepted
//! and refused, a TLS hop between two mosn listeners (cluster `tls_context`) carrying the
//! reference mesh's Bolt -> HTTP/2 -> Bolt, and a bad certificate stopping start-up with its
//! path. Certificates are made at test time with the openssl CLI.

mod common;
#[path = "../tls-offload/tests/common/mod.rs"]
mod pki;

use std::net::SocketAddr;
use std::process::Command;

use common::http::{cluster, free_port, Mosn, Upstream};
use common::wire::{bolt_request, BoltUpstream};
use mosn_wire::bolt;
use pki::{Key, Pki};
use serde_json::{json, Value};

struct Certs {
    _pki: Pki,
    ca: pki::Cert,
    server: pki::Cert,
    client: pki::Cert,
    stranger: pki::Cert,
}

fn certs() -> Certs {
    let p = Pki::new();
    let ca = p.ca("ca");
    let other_ca = p.ca("other-ca");
    let server = p.leaf(
        &ca,
        "server",
        Key::EcPkcs8,
        "mosn.test",
        &["mosn.test", "localhost"],
    );
    let client = p.leaf(&ca, "client", Key::EcPkcs8, "client", &["client.test"]);
    let stranger = p.leaf(
        &other_ca,
        "stranger",
        Key::EcPkcs8,
        "stranger",
        &["stranger.test"],
    );
    Certs {
        _pki: p,
        ca,
        server,
        client,
        stranger,
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `l7` on TLS with `tls` keys (server cert added), routing everything to `up`.
fn tls_config(c: &Certs, up: SocketAddr, downstream: &str, tls: Value, inspector: bool) -> Value {
    let mut cfg = common::http::simple_config(downstream, &[up], json!({}));
    let l = &mut cfg["servers"][0]["listeners"][0];
    let mut ctx = json!({"status": true, "cert_chain": path(&c.server.cert),
                         "private_key": path(&c.server.key)});
    ctx.as_object_mut()
        .unwrap()
        .extend(tls.as_object().unwrap().clone());
    l["filter_chains"][0]["tls_context"] = ctx;
    l["inspector"] = json!(inspector);
    cfg
}

struct Curl {
    code: u16,
    body: String,
    version: String,
}

fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut t = tail.split_whitespace();
    Curl {
        code: t.next().and_then(|c| c.parse().ok()).unwrap_or(0),
        version: t.next().unwrap_or("").to_string(),
        body: body.to_string(),
    }
}

fn https(c: &Certs, addr: SocketAddr, extra: &[&str]) -> Curl {
    let resolve = format!("mosn.test:{}:127.0.0.1", addr.port());
    let url = format!("https://mosn.test:{}/hello", addr.port());
    let ca = path(&c.ca.cert);
    let mut args = vec!["--resolve", &resolve, "--cacert", &ca];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

#[test]
fn listener_tls_serves_http1_and_http2_by_alpn() {
    let c = certs();
    let up = Upstream::echo("up");
    let mosn = Mosn::start(&tls_config(
        &c,
        up.addr,
        "Auto",
        json!({"alpn": "h2,http/1.1"}),
        false,
    ));
    let r = https(&c, mosn.l7(), &["--http1.1"]);
    assert_eq!((r.code, r.version.as_str()), (200, "1.1"), "{}", r.body);
    let r = https(&c, mosn.l7(), &["--http2"]);
    assert_eq!((r.code, r.version.as_str()), (200, "2"), "{}", r.body);
    // Plaintext on a TLS-only listener gets nowhere.
    let r = curl(&[&format!("http://{}/hello", mosn.l7())]);
    assert_ne!(r.code, 200);
    let (code, text) = mosn.admin_get("/stats/prometheus");
    assert_eq!(code, 200);
    assert!(
        text.lines()
            .any(|l| l.starts_with("mosn_listener_tls_handshake_ok")
                && l.contains("l7")
                && !l.ends_with(" 0")),
        "{text}"
    );
}

#[test]
fn inspector_serves_tls_and_plaintext_on_one_port() {
    let c = certs();
    let bolt_svc = BoltUpstream::echo();
    let mut cfg = tls_config(
        &c,
        bolt_svc.addr,
        "Auto",
        json!({"alpn": "h2,http/1.1"}),
        true,
    );
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
        ["upstream_protocol"] = json!("bolt");
    let mosn = Mosn::start(&cfg);
    let addr = mosn.l7();
    // HTTP/1 and HTTP/2 over TLS, and in plaintext, on the same port, all converted to Bolt.
    let r = https(
        &c,
        addr,
        &["--http1.1", "-H", "service: s", "--data-binary", "tls-h1"],
    );
    assert_eq!((r.code, r.body.as_str()), (200, "tls-h1"));
    let r = https(
        &c,
        addr,
        &["--http2", "-H", "service: s", "--data-binary", "tls-h2"],
    );
    assert_eq!(
        (r.code, r.version.as_str(), r.body.as_str()),
        (200, "2", "tls-h2")
    );
    let r = curl(&[
        "-H",
        "service: s",
        "--data-binary",
        "plain",
        &format!("http://{addr}/"),
    ]);
    assert_eq!((r.code, r.body.as_str()), (200, "plain"));
    // Bolt in plaintext and over TLS on the same port.
    let mut plain = common::wire::RawClient::connect(addr);
    plain.send_bolt(&bolt_request(1, &[(b"service", b"s")], b"bolt-plain"));
    assert_eq!(plain.read_bolt().unwrap().content.as_ref(), b"bolt-plain");
    let got = common::http::rt().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ctx = mosn_config::TlsContext {
            enabled: true,
            ca_cert: path(&c.ca.cert),
            server_name: "mosn.test".into(),
            ..Default::default()
        };
        let client = mosn_tls_offload::ClientConfig::build(&ctx, "test").unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut s = client.connect(tcp, "mosn.test").await.unwrap();
        let mut out = bytes::BytesMut::new();
        bolt_request(2, &[(b"service", b"s")], b"bolt-tls")
            .encode(&mut out)
            .unwrap();
        s.write_all(&out).await.unwrap();
        let mut buf = bytes::BytesMut::new();
        loop {
            if let Some(f) = bolt::Frame::decode(&mut buf, 1 << 20).unwrap() {
                return f;
            }
            assert!(s.read_buf(&mut buf).await.unwrap() > 0, "closed");
        }
    });
    assert_eq!(
        (got.request_id, got.content.as_ref()),
        (2, &b"bolt-tls"[..])
    );
}

#[test]
fn mtls_accepts_known_clients_and_refuses_others() {
    let c = certs();
    let up = Upstream::echo("up");
    let tls = json!({"ca_cert": path(&c.ca.cert), "require_client_cert": true});
    let mosn = Mosn::start(&tls_config(&c, up.addr, "Http1", tls, false));
    let (cert, key) = (path(&c.client.cert), path(&c.client.key));
    let r = https(&c, mosn.l7(), &["--cert", &cert, "--key", &key]);
    assert_eq!(r.code, 200);
    assert_eq!(
        https(&c, mosn.l7(), &[]).code,
        0,
        "no client certificate: refused"
    );
    let (cert, key) = (path(&c.stranger.cert), path(&c.stranger.key));
    assert_eq!(
        https(&c, mosn.l7(), &["--cert", &cert, "--key", &key]).code,
        0,
        "a certificate from another CA: refused"
    );
}

/// The reference mesh with its HTTP/2 hop over TLS: the client listener's cluster has a
/// `tls_context` (CA, SNI, ALPN h2), the server listener terminates TLS.
#[test]
fn bolt_mesh_with_a_tls_hop() {
    let c = certs();
    let svc = BoltUpstream::echo();
    let (cp, sp) = (free_port(), free_port());
    let listener = |name: &str, port: u16, down: &str, up: &str, router: &str| {
        json!({"name": name, "address": format!("127.0.0.1:{port}"), "bind_port": true,
               "filter_chains": [{"filters": [{"type": "proxy", "config": {
                   "downstream_protocol": down, "upstream_protocol": up, "router_config_name": router}}]}]})
    };
    let mut server = listener("server", sp, "Http2", "bolt", "rs");
    server["filter_chains"][0]["tls_context"] = json!({"status": true, "alpn": "h2",
        "cert_chain": path(&c.server.cert), "private_key": path(&c.server.key)});
    let client = listener("client", cp, "bolt", "Http2", "rc");
    let route = |cl: &str| json!([{"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": cl}}]);
    let mut hop = cluster("hop", &[format!("127.0.0.1:{sp}").parse().unwrap()]);
    hop["tls_context"] = json!({"status": true, "ca_cert": path(&c.ca.cert),
                                "server_name": "mosn.test", "alpn": "h2"});
    let cfg = common::http::config(
        vec![server, client],
        vec![
            common::http::router("rc", route("hop")),
            common::http::router("rs", route("svc")),
        ],
        vec![hop, cluster("svc", &[svc.addr])],
    );
    let mosn = Mosn::start(&cfg);
    let mut cl = common::wire::RawClient::connect(mosn.addr("client"));
    let req = bolt_request(9, &[(b"service", b"s"), (b"Odd Key", b"v")], b"over tls");
    cl.send_bolt(&req);
    let r = cl.read_bolt().unwrap();
    assert_eq!(
        (r.request_id, r.status, r.content.as_ref()),
        (9, bolt::status::SUCCESS, &b"over tls"[..])
    );
    assert_eq!(svc.requests().pop().unwrap().header, req.header);
    let (_, text) = mosn.admin_get("/stats/prometheus");
    assert!(
        text.lines()
            .any(|l| l.starts_with("mosn_listener_tls_handshake_ok")
                && l.contains("server")
                && !l.ends_with(" 0")),
        "the hop was TLS: {text}"
    );
}

/// A listener on `port` whose filter chain is `filter` (a `proxy` or `tcp_proxy` entry).
fn listener_with(name: &str, port: u16, filter: Value) -> Value {
    json!({"name": name, "address": format!("127.0.0.1:{port}"), "bind_port": true,
           "filter_chains": [{"filters": [filter]}]})
}

fn tcp_proxy(cluster: &str) -> Value {
    json!({"type": "tcp_proxy", "config": {"cluster": cluster}})
}

/// The value of `metric{listener="name"}` in mosn's Prometheus text (0 when absent).
fn listener_metric(mosn: &Mosn, metric: &str, name: &str) -> u64 {
    let (_, text) = mosn.admin_get("/stats/prometheus");
    let label = format!("listener=\"{name}\"");
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn tcp_proxy_connects_upstream_over_tls_and_tls_disable_hosts_in_plaintext() {
    let c = certs();
    let up = Upstream::echo("up");
    let (front, back, plain_front, mixed) = (free_port(), free_port(), free_port(), free_port());
    let server_tls = json!({"status": true, "cert_chain": path(&c.server.cert),
                            "private_key": path(&c.server.key)});
    // `back` speaks TLS only; `mixed` serves TLS and plaintext (inspector).
    let mut back_l = listener_with("back", back, tcp_proxy("up"));
    back_l["filter_chains"][0]["tls_context"] = server_tls.clone();
    let mut mixed_l = listener_with("mixed", mixed, tcp_proxy("up"));
    mixed_l["filter_chains"][0]["tls_context"] = server_tls;
    mixed_l["inspector"] = json!(true);
    let client_tls =
        json!({"status": true, "ca_cert": path(&c.ca.cert), "server_name": "mosn.test"});
    let mut hop = cluster("hop", &[format!("127.0.0.1:{back}").parse().unwrap()]);
    hop["tls_context"] = client_tls.clone();
    let mut hop_plain = cluster(
        "hop_plain",
        &[format!("127.0.0.1:{mixed}").parse().unwrap()],
    );
    hop_plain["tls_context"] = client_tls;
    hop_plain["hosts"][0]["tls_disable"] = json!(true);
    let cfg = common::http::config(
        vec![
            listener_with("front", front, tcp_proxy("hop")),
            back_l,
            listener_with("plain_front", plain_front, tcp_proxy("hop_plain")),
            mixed_l,
        ],
        vec![],
        vec![hop, hop_plain, cluster("up", &[up.addr])],
    );
    let mosn = Mosn::start(&cfg);
    for _ in 0..2 {
        let r = common::http::get(mosn.addr("front"), "/through-tls", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-echo-path"), Some("/through-tls"));
    }
    // Each tcp_proxy session is its own upstream connection: two TLS handshakes at `back`
    // (a plaintext connect would have failed there: it serves TLS only).
    assert_eq!(
        listener_metric(&mosn, "mosn_listener_tls_handshake_ok", "back"),
        2
    );
    let r = common::http::get(mosn.addr("plain_front"), "/plain", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        listener_metric(&mosn, "mosn_listener_downstream_connection_total", "mixed"),
        1
    );
    assert_eq!(
        listener_metric(&mosn, "mosn_listener_tls_handshake_ok", "mixed"),
        0,
        "tls_disable: the host is reached in plaintext"
    );
}

#[test]
fn http_pools_keep_tls_and_plaintext_connections_to_one_address_apart() {
    let c = certs();
    let up = Upstream::echo("up");
    let (front, mixed) = (free_port(), free_port());
    let proxy = |router: &str| {
        json!({"type": "proxy", "config": {"downstream_protocol": "Http1",
               "upstream_protocol": "Http1", "router_config_name": router}})
    };
    let mut mixed_l = listener_with("mixed", mixed, proxy("rm"));
    mixed_l["filter_chains"][0]["tls_context"] = json!({"status": true,
        "cert_chain": path(&c.server.cert), "private_key": path(&c.server.key)});
    mixed_l["inspector"] = json!(true);
    let mixed_addr: SocketAddr = format!("127.0.0.1:{mixed}").parse().unwrap();
    // Two clusters to the same address: one over TLS, one in plaintext.
    let mut ctls = cluster("ctls", &[mixed_addr]);
    ctls["tls_context"] =
        json!({"status": true, "ca_cert": path(&c.ca.cert), "server_name": "mosn.test"});
    let mut cfg = common::http::config(
        vec![listener_with("front", front, proxy("rf")), mixed_l],
        vec![
            common::http::router(
                "rf",
                json!([
                    common::http::prefix_route("/tls", "ctls"),
                    common::http::prefix_route("/plain", "cplain")
                ]),
            ),
            common::http::router("rm", json!([common::http::prefix_route("/", "up")])),
        ],
        vec![
            ctls,
            cluster("cplain", &[mixed_addr]),
            cluster("up", &[up.addr]),
        ],
    );
    // One worker: one set of pools, so reuse is observable.
    cfg["servers"][0]["processor"] = json!(1);
    let mosn = Mosn::start(&cfg);
    for i in 0..4 {
        for path in ["/tls", "/plain"] {
            let r = common::http::get(mosn.addr("front"), path, &[]);
            assert_eq!(
                (r.status, r.header("x-echo-path")),
                (200, Some(path)),
                "round {i}"
            );
        }
    }
    let tls = listener_metric(&mosn, "mosn_listener_tls_handshake_ok", "mixed");
    let total = listener_metric(&mosn, "mosn_listener_downstream_connection_total", "mixed");
    // Pooled connections are reused within their kind (at most one per request if a
    // check-in races the next request), and each kind has its own connections: a pool keyed
    // by address alone would have sent the plaintext cluster's requests over the TLS
    // connection (no plaintext connection at all).
    assert!((1..=4).contains(&tls), "TLS connections: {tls}");
    assert!(
        (1..=4).contains(&(total - tls)),
        "plaintext connections: {} of {total}",
        total - tls
    );
}

/// A process-wide metric of mosn's `tls_offload{backend="openssl"}` scope.
#[cfg(feature = "openssl")]
fn offload_metric(mosn: &Mosn, name: &str) -> u64 {
    let (_, text) = mosn.admin_get("/stats/prometheus");
    let prefix = format!("mosn_tls_offload_{name}{{backend=\"openssl\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
}

#[cfg(feature = "openssl")]
fn openssl_listener(c: &Certs, up: SocketAddr, extend_verify: Value) -> Value {
    tls_config(
        c,
        up,
        "Http1",
        json!({"type": "openssl", "extend_verify": extend_verify}),
        false,
    )
}

/// `type: openssl` with the test ENGINE named in `extend_verify`: curl's handshakes are served
/// by OpenSSL in async mode with every private-key operation on the engine (mosn counts them
/// as offloaded), and the rustls default is untouched elsewhere.
#[cfg(feature = "openssl")]
#[test]
fn openssl_backend_offloads_handshakes_to_the_engine_named_in_the_config() {
    let c = certs();
    let up = Upstream::echo("up");
    let cfg = openssl_listener(
        &c,
        up.addr,
        json!({"engine": {"path": mosn_tls_offload::openssl::TEST_ENGINE_PATH},
               "async": true, "on_failure": "refuse"}),
    );
    let mosn = Mosn::start(&cfg);
    for _ in 0..3 {
        let r = https(&c, mosn.addr("l7"), &[]);
        assert_eq!((r.code, r.version.as_str()), (200, "1.1"));
    }
    assert_eq!(
        listener_metric(&mosn, "mosn_listener_tls_handshake_ok", "l7"),
        3
    );
    assert_eq!(offload_metric(&mosn, "handshakes_offloaded"), 3);
    assert_eq!(offload_metric(&mosn, "handshakes_software"), 0);
    assert!(
        offload_metric(&mosn, "async_waits") >= 3,
        "async mode paused jobs"
    );
}

/// An engine that cannot be loaded: `on_failure: refuse` stops start-up naming the key;
/// `fallback` starts with rustls (counted) and serves.
#[cfg(feature = "openssl")]
#[test]
fn openssl_accelerator_failure_refuses_or_falls_back_as_configured() {
    let c = certs();
    let up = Upstream::echo("up");
    let dir = tempfile::tempdir().unwrap();
    let missing = json!({"path": "/nonexistent/engine.so"});
    let cfg = openssl_listener(
        &c,
        up.addr,
        json!({"engine": missing, "on_failure": "refuse"}),
    );
    let p = common::write_config(&dir, "refuse.json", &cfg.to_string());
    let out = Command::new(common::mosn_bin())
        .args(["start", "-c", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("servers[0].listeners[0].filter_chains[0].tls_context")
            && err.contains("/nonexistent/engine.so"),
        "{err}"
    );

    let cfg = openssl_listener(
        &c,
        up.addr,
        json!({"engine": missing, "on_failure": "fallback"}),
    );
    let mosn = Mosn::start(&cfg);
    let r = https(&c, mosn.addr("l7"), &[]);
    assert_eq!(r.code, 200);
    assert_eq!(offload_metric(&mosn, "fallbacks"), 1);
    assert_eq!(offload_metric(&mosn, "handshakes_offloaded"), 0);
}

/// Bolt clusters to one address, one over TLS and one in plaintext: the multiplexed RPC
/// pools keep a connection of each kind (keyed by address and TLS config, as HTTP's are).
#[test]
fn rpc_pools_keep_tls_and_plaintext_connections_to_one_address_apart() {
    let c = certs();
    let svc = BoltUpstream::echo();
    let (front, mixed) = (free_port(), free_port());
    let proxy = |router: &str| {
        json!({"type": "proxy", "config": {"downstream_protocol": "bolt",
               "upstream_protocol": "bolt", "router_config_name": router}})
    };
    let mut mixed_l = listener_with("mixed", mixed, proxy("rm"));
    mixed_l["filter_chains"][0]["tls_context"] = json!({"status": true,
        "cert_chain": path(&c.server.cert), "private_key": path(&c.server.key)});
    mixed_l["inspector"] = json!(true);
    let mixed_addr: SocketAddr = format!("127.0.0.1:{mixed}").parse().unwrap();
    let by_service = |service: &str, cluster: &str| {
        json!({"match": {"headers": [{"name": "service", "value": service}]},
               "route": {"cluster_name": cluster}})
    };
    let mut ctls = cluster("ctls", &[mixed_addr]);
    ctls["tls_context"] =
        json!({"status": true, "ca_cert": path(&c.ca.cert), "server_name": "mosn.test"});
    let mut cfg = common::http::config(
        vec![listener_with("front", front, proxy("rf")), mixed_l],
        vec![
            common::http::router(
                "rf",
                json!([by_service("tls", "ctls"), by_service("plain", "cplain")]),
            ),
            common::http::router("rm", json!([by_service(".*", "svc")])),
        ],
        vec![
            ctls,
            cluster("cplain", &[mixed_addr]),
            cluster("svc", &[svc.addr]),
        ],
    );
    cfg["servers"][0]["processor"] = json!(1);
    let mosn = Mosn::start(&cfg);
    let mut cl = common::wire::RawClient::connect(mosn.addr("front"));
    for id in 1..=6u32 {
        let service: &[u8] = if id % 2 == 0 { b"plain" } else { b"tls" };
        cl.send_bolt(&bolt_request(id, &[(b"service", service)], b"hi"));
        let r = cl.read_bolt().unwrap();
        assert_eq!(
            (r.request_id, r.status, r.content.as_ref()),
            (id, bolt::status::SUCCESS, &b"hi"[..])
        );
    }
    let tls = listener_metric(&mosn, "mosn_listener_tls_handshake_ok", "mixed");
    let total = listener_metric(&mosn, "mosn_listener_downstream_connection_total", "mixed");
    // One multiplexed connection per kind: a pool keyed by address alone would have carried
    // the plaintext cluster's calls over the TLS connection.
    assert_eq!((tls, total), (1, 2), "TLS {tls} of {total} connections");
}

/// A `mosn-keyserver` process (the `mosn-tls-offload` package's binary, built next to `mosn`
/// by `cargo test --workspace`), killed on drop.
struct KeyServer(std::process::Child);

impl KeyServer {
    fn start(listen: &str, key: &std::path::Path) -> KeyServer {
        use std::io::BufRead;
        let bin = common::mosn_bin().with_file_name("mosn-keyserver");
        assert!(
            bin.is_file(),
            "{} is missing: `cargo build -p mosn-tls-offload --bin mosn-keyserver` \
             (`cargo test --workspace` builds it)",
            bin.display()
        );
        let mut child = Command::new(bin)
            .args(["--listen", listen, "--key", key.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start mosn-keyserver");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on "), "{line:?}");
        KeyServer(child)
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `type: keyless` through the real binary: the listener holds the certificate only, every
/// handshake's signature comes from a key server process; with the key server gone,
/// handshakes fail (counted) and mosn keeps running.
#[test]
fn keyless_listener_signs_through_a_key_server_process() {
    let c = certs();
    let up = Upstream::echo("up");
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("ks.sock").display());
    let ks = KeyServer::start(&listen, &c.server.key);
    let cfg = tls_config(
        &c,
        up.addr,
        "Http1",
        json!({"type": "keyless", "private_key": "",
               "extend_verify": {"key_server": listen, "timeout": "2s"}}),
        false,
    );
    let mosn = Mosn::start(&cfg);
    for _ in 0..2 {
        let r = https(&c, mosn.addr("l7"), &[]);
        assert_eq!(r.code, 200);
    }
    assert_eq!(
        listener_metric(&mosn, "mosn_listener_tls_handshake_ok", "l7"),
        2
    );
    drop(ks);
    let r = https(&c, mosn.addr("l7"), &[]);
    assert_eq!(r.code, 0, "no key server, no handshake");
    assert!(listener_metric(&mosn, "mosn_listener_tls_handshake_failed", "l7") >= 1);
    let (status, _) = mosn.admin_get("/stats/prometheus");
    assert_eq!(status, 200, "mosn still serves");
}

#[test]
fn unreadable_certificate_stops_start_up_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::echo("up");
    let mut cfg = common::http::simple_config("Http1", &[up.addr], json!({}));
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = json!({"status": true, "cert_chain": "/nonexistent/cert.pem", "private_key": "/nonexistent/key.pem"});
    let p = common::write_config(&dir, "bad.json", &cfg.to_string());
    let out = Command::new(common::mosn_bin())
        .args(["start", "-c", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("servers[0].listeners[0].filter_chains[0].tls_context")
            && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );
}
