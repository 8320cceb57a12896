//! Dubbo end to end at the byte level, and conversion between the RPC protocols and HTTP:
//! Dubbo -> Dubbo (routing on service and attachments, the frame forwarded as it came),
//! Dubbo -> HTTP/2 -> Dubbo lossless, plain HTTP -> Dubbo and -> Bolt, Bolt and Dubbo -> a
//! plain HTTP service, one port detecting HTTP, Bolt and Dubbo, and hijack replies.

mod common;

use bytes::Bytes;
use common::http::{cluster, free_port, Mosn, Upstream};
use common::wire::{
    bolt_request, dubbo_request, dubbo_response_string, BoltUpstream, DubboUpstream, RawClient,
};
use mosn_wire::{bolt, dubbo};
use serde_json::{json, Value};

const SVC: &str = "com.alipay.test.EchoService";

/// Listener `l7` (`down` -> `up`) routing `service == SVC` (and, when given, an attachment
/// `group == g1`) to cluster `up`.
fn config(down: &str, up: &str, hosts: &[std::net::SocketAddr], extra_match: Value) -> Value {
    let mut l = common::http::listener("l7", down, "r");
    if !up.is_empty() {
        l["filter_chains"][0]["filters"][0]["config"]["upstream_protocol"] = json!(up);
    }
    let mut headers = vec![json!({"name": "service", "value": SVC})];
    if let Value::Array(more) = extra_match {
        headers.extend(more);
    }
    common::http::config(
        vec![l],
        vec![common::http::router(
            "r",
            json!([{"match": {"headers": headers}, "route": {"cluster_name": "up", "timeout": "5s"}}]),
        )],
        vec![cluster("up", hosts)],
    )
}

/// A Dubbo call routed on its service and an attachment reaches the provider byte for byte
/// (but the id); the answer comes back with the client's id; heartbeats are answered by
/// mosn; an unknown service gets SERVICE_NOT_FOUND in Dubbo's own form.
#[test]
fn dubbo_to_dubbo_routes_and_forwards_the_frame() {
    let provider = DubboUpstream::echo();
    let mosn = Mosn::start(&config(
        "dubbo",
        "",
        &[provider.addr],
        json!([{"name": "group", "value": "g1"}]),
    ));
    let mut c = RawClient::connect(mosn.l7());
    let req = dubbo_request(77, SVC, "echo", "hi", &[("group", "g1"), ("trace", "t-1")]);
    c.send_dubbo(&req);
    let resp = c.read_dubbo().expect("answer");
    assert_eq!((resp.request_id, resp.status), (77, dubbo::status::OK));
    assert_eq!(
        dubbo_response_string(&resp.body).as_deref(),
        Some("echo:echo")
    );
    let seen = provider.requests().pop().unwrap();
    assert_eq!((seen.flag, &seen.body), (req.flag, &req.body));

    c.send_dubbo(&dubbo_request(78, SVC, "echo", "hi", &[("group", "other")]));
    let r = c.read_dubbo().unwrap();
    assert_eq!(
        (r.request_id, r.status),
        (78, dubbo::status::SERVICE_NOT_FOUND)
    );

    let mut hb = dubbo_request(79, SVC, "", "", &[]);
    hb.flag |= dubbo::FLAG_EVENT;
    hb.body = Bytes::from_static(b"N");
    c.send_dubbo(&hb);
    let r = c.read_dubbo().unwrap();
    assert!(r.is_event() && !r.is_request(), "heartbeat reply: {r:?}");
    assert_eq!(r.request_id, 79);
    assert!(provider.seen.lock().unwrap().iter().all(|f| !f.is_event()));
}

/// Dubbo -> HTTP/2 -> Dubbo (two listeners, the reference mesh's shape) arrives unchanged.
#[test]
fn dubbo_over_http2_and_back_is_lossless() {
    let provider = DubboUpstream::echo();
    let (cp, sp) = (free_port(), free_port());
    let mut client = common::http::listener("client", "dubbo", "r");
    client["address"] = json!(format!("127.0.0.1:{cp}"));
    client["filter_chains"][0]["filters"][0]["config"]["upstream_protocol"] = json!("Http2");
    let mut server = common::http::listener("server", "Http2", "r2");
    server["address"] = json!(format!("127.0.0.1:{sp}"));
    server["filter_chains"][0]["filters"][0]["config"]["upstream_protocol"] = json!("dubbo");
    let route = |c: &str| json!([{"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": c}}]);
    let cfg = common::http::config(
        vec![server, client],
        vec![
            common::http::router("r", route("hop")),
            common::http::router("r2", route("up")),
        ],
        vec![
            cluster("hop", &[format!("127.0.0.1:{sp}").parse().unwrap()]),
            cluster("up", &[provider.addr]),
        ],
    );
    let mosn = Mosn::start(&cfg);
    let mut c = RawClient::connect(mosn.addr("client"));
    let req = dubbo_request(
        5,
        SVC,
        "echo",
        "über ✓ 𝄞",
        &[("k", "v"), ("Odd Key", "x\ty")],
    );
    c.send_dubbo(&req);
    let resp = c.read_dubbo().expect("answer");
    assert_eq!((resp.request_id, resp.status), (5, dubbo::status::OK));
    assert_eq!(
        dubbo_response_string(&resp.body).as_deref(),
        Some("echo:echo")
    );
    let seen = provider.requests().pop().unwrap();
    assert_eq!((seen.flag, &seen.body), (req.flag, &req.body));
}

fn curl(args: &[&str]) -> (u16, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-D", "-", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl (apt install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// A plain HTTP client calls a Dubbo provider: the fields become the invocation and its
/// attachments, the body its one String argument; the answer carries the Dubbo status.
#[test]
fn http_to_dubbo() {
    let provider = DubboUpstream::echo();
    let mosn = Mosn::start(&config("Http1", "dubbo", &[provider.addr], json!([])));
    let url = format!("http://{}/", mosn.l7());
    let (status, head, _) = curl(&[
        "-H",
        &format!("service: {SVC}"),
        "-H",
        "method: echo",
        "-H",
        "version: 1.0.0",
        "-H",
        "x-tenant: t1",
        "--data-binary",
        "payload",
        &url,
    ]);
    assert_eq!(status, 200);
    assert!(
        head.contains("x-mosn-dubbo-meta: flag=2;status=20"),
        "{head}"
    );
    let seen = provider.requests().pop().unwrap();
    let inv = dubbo::parse_invocation(&seen.body).unwrap();
    assert_eq!(
        (
            inv.service.as_str(),
            inv.method.as_str(),
            inv.version.as_str()
        ),
        (SVC, "echo", "1.0.0")
    );
    assert_eq!(inv.param_types, "Ljava/lang/String;");
    let arg = mosn_wire::hessian2::Reader::new(&seen.body[inv.args.clone()])
        .read_string()
        .unwrap();
    assert_eq!(arg.as_deref(), Some("payload"));
    assert_eq!(inv.attachment("x-tenant"), Some("t1"));
    assert_eq!(inv.attachment("interface"), Some(SVC));
}

/// A plain HTTP client calls a Bolt service: its fields become the header map, its body the
/// content; the Bolt status and fields come back as x-mosn-bolt-*.
#[test]
fn http_to_bolt() {
    let svc = BoltUpstream::echo();
    let mosn = Mosn::start(&config("Http1", "bolt", &[svc.addr], json!([])));
    let url = format!("http://{}/", mosn.l7());
    let (status, head, body) = curl(&[
        "-H",
        &format!("service: {SVC}"),
        "-H",
        "x-a: 1",
        "--data-binary",
        "abc",
        &url,
    ]);
    assert_eq!((status, body.as_str()), (200, "abc"));
    assert!(head.contains("x-mosn-bolt-meta: proto=1;"), "{head}");
    assert!(head.contains("resp-key: resp value"), "{head}");
    let seen = svc.requests().pop().unwrap();
    assert_eq!(
        seen.header.get(b"service").map(|v| v.as_ref()),
        Some(SVC.as_bytes())
    );
    assert_eq!(seen.header.get(b"x-a").map(|v| v.as_ref()), Some(&b"1"[..]));
    assert!(
        seen.header.get(b"host").is_none(),
        "connection fields stay out of the header map"
    );
    assert_eq!(seen.content.as_ref(), b"abc");
}

/// Bolt and Dubbo clients call a plain HTTP/1 service: it sees the routing fields as HTTP
/// fields and the payload as its body; its 200 answer becomes a success, its 503 the
/// protocol's "busy" status.
#[test]
fn rpc_to_plain_http_service() {
    let up = Upstream::echo("web");
    let mosn = Mosn::start(&config("bolt,dubbo", "Http1", &[up.addr], json!([])));
    let mut c = RawClient::connect(mosn.l7());
    c.send_bolt(&bolt_request(
        3,
        &[
            (b"service", SVC.as_bytes()),
            (b"sofa_head_method_name", b"echo"),
        ],
        b"xyz",
    ));
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (3, bolt::status::SUCCESS));
    let seen = up.last();
    assert_eq!(seen.header("service"), Some(SVC));
    assert_eq!(seen.header("x-mosn-protocol"), Some("bolt"));
    assert_eq!(seen.path(), format!("/{SVC}/echo"));

    let mut d = RawClient::connect(mosn.l7());
    d.send_dubbo(&dubbo_request(4, SVC, "echo", "hi", &[]));
    let r = d.read_dubbo().unwrap();
    assert_eq!((r.request_id, r.status), (4, dubbo::status::OK));
    assert!(
        dubbo_response_string(&r.body).is_some(),
        "the HTTP body as the return value"
    );
    assert_eq!(up.last().header("method"), Some("echo"));
}

/// `Auto` serves HTTP/1, HTTP/2, Bolt and Dubbo on one port.
#[test]
fn auto_detects_http_bolt_and_dubbo_on_one_port() {
    let bolt_svc = BoltUpstream::echo();
    let mosn = Mosn::start(&config("Auto", "bolt", &[bolt_svc.addr], json!([])));
    let mut c = RawClient::connect(mosn.l7());
    c.send_bolt(&bolt_request(1, &[(b"service", SVC.as_bytes())], b"b"));
    assert_eq!(c.read_bolt().unwrap().status, bolt::status::SUCCESS);
    let mut d = RawClient::connect(mosn.l7());
    // Dubbo to a Bolt service: converted through the common model (status answered).
    d.send_dubbo(&dubbo_request(2, SVC, "echo", "x", &[]));
    assert_eq!(d.read_dubbo().unwrap().request_id, 2);
    let url = format!("http://{}/", mosn.l7());
    let (status, _, body) = curl(&[
        "-H",
        &format!("service: {SVC}"),
        "--data-binary",
        "h1",
        &url,
    ]);
    assert_eq!((status, body.as_str()), (200, "h1"));
    let (status, _, body) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        &format!("service: {SVC}"),
        "--data-binary",
        "h2",
        &url,
    ]);
    assert_eq!((status, body.as_str()), (200, "h2"));
}
