//! Bolt end to end at the byte level (mosn-wire's codec as the client and upstream, so every
//! field can be checked exactly): the reference mesh shape (Bolt -> HTTP/2 -> Bolt) is
//! lossless, v2 with CRC, one-way requests, heartbeats answered locally, hijack replies,
//! codec errors closing only their own connection. Interop with real SOFARPC libraries is in
//! tests/rpc_mesh.rs.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::http::{cluster, free_port, Mosn};
use common::wire::{bolt_request, BoltUpstream, RawClient};
use mosn_wire::bolt;
use serde_json::{json, Value};

/// The reference mesh's two listeners on free ports: `client` (SofaRpc -> Http2) and
/// `server` (Http2 -> SofaRpc), routes on `service` `.*`, in the legacy shape.
fn mesh_config(service: std::net::SocketAddr, extend: Value) -> Value {
    let (client_port, server_port) = (free_port(), free_port());
    let listener = |name: &str, port: u16, down: &str, up: &str, router: &str| {
        json!({
            "name": name, "address": format!("127.0.0.1:{port}"), "bind_port": true,
            "filter_chains": [{"tls_context": {}, "filters": [
                {"type": "proxy", "config": {
                    "downstream_protocol": down, "upstream_protocol": up,
                    "router_config_name": router, "extend_config": extend.clone()}},
                {"type": "connection_manager", "config": {
                    "router_config_name": router,
                    "virtual_hosts": [{"name": "h", "domains": ["*"], "routers": [
                        {"match": {"headers": [{"name": "service", "value": ".*"}]},
                         "route": {"cluster_name": format!("{router}_cluster")}}]}]}}
            ]}]
        })
    };
    json!({
        "servers": [{"default_log_path": "stderr", "default_log_level": "INFO", "processor": 1,
            "listeners": [
                listener("serverListener", server_port, "Http2", "SofaRpc", "server"),
                listener("clientListener", client_port, "SofaRpc", "Http2", "client"),
            ]}],
        "cluster_manager": {"clusters": [
            cluster("server_cluster", &[service]),
            cluster("client_cluster", &[format!("127.0.0.1:{server_port}").parse().unwrap()]),
        ]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    })
}

fn entries() -> Vec<(&'static [u8], &'static [u8])> {
    vec![
        (b"service", b"com.alipay.test.EchoService:1.0"),
        (b"sofa_head_method_name", b"echo"),
        (b"rpc_trace_context.sofaTraceId", b"0a0b0c"),
        (b"Mixed-Case", b"1"),
        (b"mixed-case", b"2"),
        (b"space key", b"v"),
        (b"ctl", b"a\x01b"),
        (b"host", b"not-an-http-host"),
        (b"", b"empty key"),
    ]
}

/// Everything the client sent arrives at the service (but the request id), and everything
/// the service answered arrives at the client (with the client's id).
#[test]
fn bolt_over_http2_and_back_is_lossless() {
    let svc = BoltUpstream::echo();
    let mosn = Mosn::start(&mesh_config(svc.addr, json!({})));
    let addr = mosn.addr("clientListener");
    let mut c = RawClient::connect(addr);
    let content: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    for (id, proto) in [(11u32, bolt::PROTO_V1), (12, bolt::PROTO_V2)] {
        let mut req = bolt_request(id, &entries(), &content);
        if proto == bolt::PROTO_V2 {
            req.proto = bolt::PROTO_V2;
            req.ver1 = 2;
            req.switch = 1; // CRC32 on
        }
        c.send_bolt(&req);
        let resp = c.read_bolt().expect("answer");
        assert_eq!(resp.request_id, id);
        assert_eq!(resp.proto, proto);
        assert_eq!(resp.status, bolt::status::SUCCESS);
        assert_eq!(resp.class.as_ref(), b"com.alipay.sofa.rpc.core.response.SofaResponse");
        let got: Vec<_> = resp.header.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(
            got,
            vec![
                (Bytes::from_static(b"Resp-Key"), Bytes::from_static(b"Resp Value")),
                (Bytes::from_static(b"bin"), Bytes::from_static(b"\x00\x01")),
            ]
        );
        assert_eq!(resp.content.as_ref(), &content[..]);
        let seen = svc.requests().pop().expect("service saw the request");
        let mut want = req.clone();
        want.request_id = seen.request_id;
        want.raw = seen.raw.clone();
        assert_eq!(seen, want, "the service sees exactly what the client sent");
    }
    drop(mosn);
}
