//! Bolt end to end at the byte level (mosn-wire's codec as the client and upstream, so every
//! field can be checked exactly): the reference mesh shape (Bolt -> HTTP/2 -> Bolt) is
//! lossless, v2 with CRC, one-way requests, heartbeats answered locally, hijack replies,
//! codec errors closing only their own connection. Interop with real SOFARPC libraries is in
//! tests/rpc_mesh.rs.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::http::{cluster, Mosn};
use common::wire::{bolt_request, mesh_config, BoltUpstream, RawClient};
use mosn_wire::bolt;
use serde_json::{json, Value};

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
    let mosn = Mosn::start(&mesh_config(svc.addr, "SofaRpc", json!({})));
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
        assert_eq!(
            resp.class.as_ref(),
            b"com.alipay.sofa.rpc.core.response.SofaResponse"
        );
        let got: Vec<_> = resp
            .header
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Bytes::from_static(b"Resp-Key"),
                    Bytes::from_static(b"Resp Value")
                ),
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

/// One listener `l7` (`down`) routing `service` `svc` (exact) to cluster `up`, with the proxy
/// filter's `extend_config`.
fn direct_config(down: &str, up: &str, hosts: &[std::net::SocketAddr], extend: Value) -> Value {
    let mut l = common::http::listener("l7", down, "r");
    let cfg = &mut l["filter_chains"][0]["filters"][0]["config"];
    cfg["extend_config"] = extend;
    if !up.is_empty() {
        cfg["upstream_protocol"] = json!(up);
    }
    common::http::config(
        vec![l],
        vec![common::http::router(
            "r",
            json!([{"match": {"headers": [{"name": "service", "value": "svc"}]},
                    "route": {"cluster_name": "up", "timeout": "5s"}}]),
        )],
        vec![cluster("up", hosts)],
    )
}

fn svc_request(id: u32) -> bolt::Frame {
    bolt_request(
        id,
        &[(b"service", b"svc"), (b"sofa_head_method_name", b"m")],
        b"hello",
    )
}

/// Many requests in flight on one downstream connection share one upstream connection and
/// come back with their own ids; heartbeats are answered by mosn itself; one-way requests
/// are forwarded and answered by nobody.
#[test]
fn multiplexing_heartbeats_and_oneway() {
    let svc = BoltUpstream::echo();
    let mosn = Mosn::start(&direct_config("bolt", "", &[svc.addr], json!({})));
    let mut c = RawClient::connect(mosn.l7());
    for id in 1..=200u32 {
        c.send_bolt(&svc_request(id));
    }
    let mut ids: Vec<u32> = (0..200)
        .map(|_| c.read_bolt().expect("answer").request_id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=200).collect::<Vec<_>>());
    assert_eq!(
        *svc.conns.lock().unwrap(),
        1,
        "one multiplexed upstream connection"
    );

    c.send_bolt(&bolt::Frame::heartbeat(bolt::PROTO_V1, 999));
    let ack = c.read_bolt().expect("heartbeat ack");
    assert_eq!(
        (ack.request_id, ack.cmd_code, ack.kind),
        (999, bolt::CMD_HEARTBEAT, bolt::TYPE_RESPONSE)
    );
    assert!(
        svc.seen.lock().unwrap().iter().all(|f| !f.is_heartbeat()),
        "heartbeats are not routed"
    );

    let mut oneway = svc_request(500);
    oneway.kind = bolt::TYPE_ONEWAY;
    c.send_bolt(&oneway);
    c.send_bolt(&svc_request(501));
    let next = c.read_bolt().expect("answer");
    assert_eq!(
        next.request_id, 501,
        "nothing comes back for a one-way request"
    );
    assert!(
        svc.requests().iter().any(|f| f.is_oneway()),
        "the one-way request was forwarded"
    );
}

/// Local replies in Bolt's own form, with MOSN's status mapping and the client's id.
#[test]
fn hijack_replies_use_bolt_statuses() {
    // A service that never answers, to time out.
    let silent = BoltUpstream::start(std::sync::Arc::new(|_: &bolt::Frame| None));
    let dead = common::dead_addr();
    let mosn = Mosn::start(&direct_config("bolt", "", &[silent.addr], json!({})));
    let mut c = RawClient::connect(mosn.l7());

    let no_route = bolt_request(1, &[(b"service", b"other")], b"");
    c.send_bolt(&no_route);
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (1, bolt::status::NO_PROCESSOR));

    let mut quick = svc_request(2);
    quick.timeout = 300;
    let t = std::time::Instant::now();
    c.send_bolt(&quick);
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (2, bolt::status::TIMEOUT));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the frame's own timeout applies"
    );
    drop(mosn);

    let mosn = Mosn::start(&direct_config("bolt", "", &[dead], json!({})));
    let mut c = RawClient::connect(mosn.l7());
    c.send_bolt(&svc_request(3));
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (3, bolt::status::NO_PROCESSOR));
    // The access log names the service and method as the path, and why it failed.
    mosn.logs_for("/svc/m", 1)[0].expect(503, &["UF"]);
    let log = std::fs::read_to_string(mosn.access_log()).unwrap();
    assert!(log.contains("svc=svc rpc_method=m"), "{log}");
}

/// A Bolt upstream on 127.0.0.1:0 that answers requests by their content: "silent" never,
/// "close" by closing the connection, anything else with an echo. Returns its address and
/// how many connections it has accepted and seen end.
fn scripted_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let ended = std::sync::Arc::new(AtomicUsize::new(0));
    let (count, gone) = (accepted.clone(), ended.clone());
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let gone = gone.clone();
            std::thread::spawn(move || {
                let mut buf = bytes::BytesMut::new();
                let mut chunk = [0u8; 4096];
                'conn: loop {
                    while let Some(f) = bolt::Frame::decode(&mut buf, 1 << 20).unwrap() {
                        if !f.is_request() {
                            continue;
                        }
                        match f.content.as_ref() {
                            b"close" => break 'conn,
                            b"silent" => {}
                            _ => {
                                let mut r = bolt::Frame::response_to(&f, bolt::status::SUCCESS);
                                r.content = f.content.clone();
                                let mut out = bytes::BytesMut::new();
                                r.encode(&mut out).unwrap();
                                if s.write_all(&out).is_err() {
                                    break 'conn;
                                }
                            }
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                gone.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (up, accepted, ended)
}

/// A reload that moves a cluster to another host lets go of the old host's multiplexed
/// connection (before, it stayed open, heartbeated, for as long as mosn ran); requests go to
/// the new host.
#[test]
fn a_host_removed_by_a_reload_loses_its_pooled_connection() {
    use std::sync::atomic::Ordering;
    let (old, accepted, ended) = scripted_upstream();
    let new = BoltUpstream::echo();
    let mut mosn = Mosn::start(&direct_config("bolt", "", &[old], json!({})));
    let mut c = RawClient::connect(mosn.l7());
    c.send_bolt(&svc_request(1));
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (1, bolt::status::SUCCESS));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (
            accepted.load(Ordering::SeqCst),
            ended.load(Ordering::SeqCst)
        ),
        (1, 0),
        "one pooled connection to the first host"
    );

    mosn.reload(&direct_config("bolt", "", &[new.addr], json!({})));
    c.send_bolt(&svc_request(2));
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (2, bolt::status::SUCCESS));
    assert_eq!(new.requests().len(), 1, "the request went to the new host");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ended.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        ended.load(Ordering::SeqCst),
        1,
        "the removed host's connection was closed"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// Requests on an open multiplexed upstream connection are sent from the client's read loop
/// and answered from the upstream's, with one deadline sweeper per connection: a short
/// deadline behind a long one still fires on time, answers that come meanwhile are
/// unaffected, and an upstream that closes fails every request waiting on it at once (an
/// upstream-reset reply, not a timeout) before the next request opens a new connection.
#[test]
fn open_connection_requests_time_out_on_time_and_fail_on_close() {
    let (up, accepted, _) = scripted_upstream();
    let mosn = Mosn::start(&direct_config("bolt", "", &[up], json!({})));
    let mut c = RawClient::connect(mosn.l7());
    let call = |id: u32, content: &[u8], timeout_ms: i32| {
        let mut f = bolt_request(
            id,
            &[(b"service", b"svc"), (b"sofa_head_method_name", b"m")],
            content,
        );
        f.timeout = timeout_ms;
        f
    };
    // The first request opens the upstream connection; the rest find it open.
    c.send_bolt(&call(1, b"hello", 0));
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (1, bolt::status::SUCCESS));

    let t = std::time::Instant::now();
    c.send_bolt(&call(2, b"silent", 3000));
    std::thread::sleep(Duration::from_millis(100));
    c.send_bolt(&call(3, b"silent", 300));
    c.send_bolt(&call(4, b"hello", 0));
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (4, bolt::status::SUCCESS));
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (3, bolt::status::TIMEOUT));
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "the 300 ms deadline fired on time, not with the 3 s one: {took:?}"
    );
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (2, bolt::status::TIMEOUT));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(5),
        "the 3 s deadline: {took:?}"
    );

    // Two requests wait on the connection when the upstream closes it.
    let t = std::time::Instant::now();
    c.send_bolt(&call(5, b"silent", 0));
    c.send_bolt(&call(6, b"close", 0));
    let mut failed: Vec<(u32, u16)> = (0..2)
        .map(|_| {
            let r = c.read_bolt().unwrap();
            (r.request_id, r.status)
        })
        .collect();
    failed.sort_unstable();
    // An upstream reset (HTTP 502) in MOSN's Bolt mapping.
    let reset = bolt::status::NO_PROCESSOR;
    assert_eq!(failed, vec![(5, reset), (6, reset)]);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "failed at the close, not at the 5 s route timeout"
    );
    c.send_bolt(&call(7, b"hello", 0));
    let r = c.read_bolt().unwrap();
    assert_eq!((r.request_id, r.status), (7, bolt::status::SUCCESS));
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);

    let logs = mosn.logs_for("/svc/m", 7);
    let codes: Vec<String> = logs.iter().map(|l| l.get("code").to_string()).collect();
    assert_eq!(codes.iter().filter(|c| *c == "504").count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| *c == "502").count(), 2, "{codes:?}");
    for l in &logs {
        match l.get("code") {
            "504" => l.expect(504, &["UT"]),
            "502" => l.expect(502, &["UC"]),
            _ => l.expect(200, &[]),
        }
    }
}

/// A malformed frame gets a codec-exception reply and closes its own connection only; a
/// request in flight on another connection is answered.
#[test]
fn malformed_frame_closes_only_its_connection() {
    let slow = BoltUpstream::start(std::sync::Arc::new(|f: &bolt::Frame| {
        std::thread::sleep(Duration::from_millis(300));
        let mut r = bolt::Frame::response_to(f, bolt::status::SUCCESS);
        r.content = f.content.clone();
        Some(r)
    }));
    let mosn = Mosn::start(&direct_config("bolt", "", &[slow.addr], json!({})));
    let mut other = RawClient::connect(mosn.l7());
    other.send_bolt(&svc_request(7));

    let mut bad = RawClient::connect(mosn.l7());
    // A v1 request header whose header-map length overruns the frame's own map.
    let mut req = svc_request(42);
    req.header = bolt::HeaderMap::new();
    let mut bytes = bytes::BytesMut::new();
    req.encode(&mut bytes).unwrap();
    let mut raw = bytes.to_vec();
    raw[16..18].copy_from_slice(&5u16.to_be_bytes()); // headerLen 5: not a whole entry
    raw[18..22].copy_from_slice(&0u32.to_be_bytes());
    raw.truncate(22 + req.class.len() + 5);
    bad.send_bytes(&raw);
    let r = bad.read_bolt().expect("codec error reply");
    assert_eq!(
        (r.request_id, r.status),
        (42, bolt::status::CODEC_EXCEPTION)
    );
    assert!(bad.closed(), "the broken connection is closed");

    let r = other
        .read_bolt()
        .expect("the other connection is untouched");
    assert_eq!((r.request_id, r.status), (7, bolt::status::SUCCESS));
    assert_eq!(r.content.as_ref(), b"hello");
}

/// An idle upstream connection is heartbeated; one whose heartbeats go unanswered is closed
/// after `heartbeat_max_failures`, and the next request opens a new one.
#[test]
fn upstream_heartbeats_and_their_failures() {
    let svc = BoltUpstream::echo();
    let extend = json!({"bolt": {"heartbeat_interval": "200ms"}});
    let mosn = Mosn::start(&direct_config("bolt", "", &[svc.addr], extend));
    let mut c = RawClient::connect(mosn.l7());
    c.send_bolt(&svc_request(1));
    c.read_bolt().unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let beats = svc
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.is_heartbeat())
        .count();
    assert!(beats >= 2, "idle upstream connection heartbeated ({beats})");
    drop(mosn);

    // Requests are answered, heartbeats are not.
    let deaf = BoltUpstream::start(std::sync::Arc::new(|f: &bolt::Frame| {
        (!f.is_heartbeat()).then(|| bolt::Frame::response_to(f, bolt::status::SUCCESS))
    }));
    let extend = json!({"bolt": {"heartbeat_interval": "100ms", "heartbeat_max_failures": 2}});
    let mosn = Mosn::start(&direct_config("bolt", "", &[deaf.addr], extend));
    let mut c = RawClient::connect(mosn.l7());
    c.send_bolt(&svc_request(1));
    c.read_bolt().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    c.send_bolt(&svc_request(2));
    assert_eq!(c.read_bolt().unwrap().status, bolt::status::SUCCESS);
    assert_eq!(
        *deaf.conns.lock().unwrap(),
        2,
        "closed after unanswered heartbeats, reopened"
    );
}

/// Pool modes: ping-pong opens a connection per concurrent request; binding gives each
/// downstream connection its own upstream connection.
#[test]
fn pingpong_and_binding_pools() {
    let slow = BoltUpstream::start(std::sync::Arc::new(|f: &bolt::Frame| {
        std::thread::sleep(Duration::from_millis(100));
        Some(bolt::Frame::response_to(f, bolt::status::SUCCESS))
    }));
    let mosn = Mosn::start(&direct_config(
        "bolt",
        "",
        &[slow.addr],
        json!({"bolt": {"pool_mode": "pingpong"}}),
    ));
    let mut c = RawClient::connect(mosn.l7());
    for id in 1..=4 {
        c.send_bolt(&svc_request(id));
    }
    for _ in 0..4 {
        assert_eq!(c.read_bolt().unwrap().status, bolt::status::SUCCESS);
    }
    assert_eq!(
        *slow.conns.lock().unwrap(),
        4,
        "one upstream connection per request in flight"
    );
    drop(mosn);

    let svc = BoltUpstream::echo();
    let mosn = Mosn::start(&direct_config(
        "bolt",
        "",
        &[svc.addr],
        json!({"bolt": {"pool_mode": "binding"}}),
    ));
    let mut a = RawClient::connect(mosn.l7());
    let mut b = RawClient::connect(mosn.l7());
    for id in 1..=3 {
        a.send_bolt(&svc_request(id));
        a.read_bolt().unwrap();
        b.send_bolt(&svc_request(id));
        b.read_bolt().unwrap();
    }
    assert_eq!(
        *svc.conns.lock().unwrap(),
        2,
        "one upstream connection per downstream one"
    );
}

/// An upstream answer with a request id nobody waits for is dropped and counted; the real
/// answer still reaches its client.
#[test]
fn unknown_response_ids_are_dropped_and_counted() {
    // An upstream that sends an answer with a bogus id before each real one.
    let liar = common::http::raw_upstream(|mut s| {
        use std::io::{Read, Write};
        let mut buf = bytes::BytesMut::new();
        let mut b = [0u8; 4096];
        loop {
            let n = match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&b[..n]);
            while let Ok(Some(f)) = bolt::Frame::decode(&mut buf, 1 << 20) {
                let mut bogus = bolt::Frame::response_to(&f, bolt::status::SUCCESS);
                bogus.request_id = f.request_id.wrapping_add(1000);
                let mut real = bolt::Frame::response_to(&f, bolt::status::SUCCESS);
                real.content = Bytes::from_static(b"real");
                let mut out = bytes::BytesMut::new();
                bogus.encode(&mut out).unwrap();
                real.encode(&mut out).unwrap();
                if s.write_all(&out).is_err() {
                    return;
                }
            }
        }
    });
    let mosn = Mosn::start(&direct_config("bolt", "", &[liar], json!({})));
    let mut c = RawClient::connect(mosn.l7());
    for id in 1..=3 {
        c.send_bolt(&svc_request(id));
        let r = c.read_bolt().unwrap();
        assert_eq!((r.request_id, r.content.as_ref()), (id, &b"real"[..]));
    }
    let (code, text) = mosn.admin_get("/stats/prometheus");
    assert_eq!(code, 200);
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("mosn_cluster_upstream_rpc_unknown_response")
                && l.contains("cluster=\"up\"")
        })
        .unwrap_or_else(|| panic!("counter missing:\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
}

/// With `enable_bolt_goaway`, a graceful stop tells Bolt clients GoAway; requests in flight
/// are still answered.
#[test]
fn goaway_on_graceful_stop() {
    let slow = BoltUpstream::start(std::sync::Arc::new(|f: &bolt::Frame| {
        std::thread::sleep(Duration::from_millis(400));
        Some(bolt::Frame::response_to(f, bolt::status::SUCCESS))
    }));
    let mosn = Mosn::start(&direct_config(
        "bolt",
        "",
        &[slow.addr],
        json!({"bolt": {"enable_bolt_goaway": true}}),
    ));
    let mut c = RawClient::connect(mosn.l7());
    c.send_bolt(&svc_request(9));
    std::thread::sleep(Duration::from_millis(100));
    mosn.proc.signal(nix::sys::signal::Signal::SIGTERM);
    let mut frames = vec![
        c.read_bolt().expect("a frame"),
        c.read_bolt().expect("a frame"),
    ];
    frames.sort_by_key(|f| f.cmd_code);
    assert_eq!(frames[0].cmd_code, bolt::CMD_RESPONSE, "{frames:?}");
    assert_eq!(
        (frames[0].request_id, frames[0].status),
        (9, bolt::status::SUCCESS)
    );
    assert_eq!(frames[1].cmd_code, bolt::CMD_GOAWAY, "{frames:?}");
    assert!(c.closed(), "closed after the answer");
}

/// A frame over `max_frame_size` is a codec error: the protocol's reply, then that
/// connection closes.
#[test]
fn oversized_frame_is_a_codec_error() {
    let svc = BoltUpstream::echo();
    let mosn = Mosn::start(&direct_config(
        "bolt",
        "",
        &[svc.addr],
        json!({"bolt": {"max_frame_size": 4096}}),
    ));
    let mut c = RawClient::connect(mosn.l7());
    c.send_bolt(&svc_request(1));
    assert_eq!(c.read_bolt().unwrap().status, bolt::status::SUCCESS);
    let big = bolt_request(2, &[(b"service", b"svc")], &vec![7u8; 8192]);
    c.send_bolt(&big);
    let r = c.read_bolt().expect("codec error reply");
    assert_eq!((r.request_id, r.status), (2, bolt::status::CODEC_EXCEPTION));
    assert!(c.closed());
    assert!(svc
        .requests()
        .iter()
        .all(|f| f.request_id != 2 || f.content.len() < 8192));
}

/// `connections_per_host` spreads multiplexed requests over that many upstream connections;
/// the legacy `X` + `sub_protocol` names the codec.
#[test]
fn connections_per_host_and_legacy_x_protocol() {
    let svc = BoltUpstream::start(std::sync::Arc::new(|f: &bolt::Frame| {
        std::thread::sleep(Duration::from_millis(50));
        Some(bolt::Frame::response_to(f, bolt::status::SUCCESS))
    }));
    let mut cfg = direct_config(
        "X",
        "",
        &[svc.addr],
        json!({"sub_protocol": "bolt", "bolt": {"connections_per_host": 3}}),
    );
    cfg["servers"][0]["processor"] = json!(1);
    let mosn = Mosn::start(&cfg);
    let mut c = RawClient::connect(mosn.l7());
    for id in 1..=30 {
        c.send_bolt(&svc_request(id));
    }
    for _ in 0..30 {
        assert_eq!(c.read_bolt().unwrap().status, bolt::status::SUCCESS);
    }
    assert_eq!(*svc.conns.lock().unwrap(), 3);
}
