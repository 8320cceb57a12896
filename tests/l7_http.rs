//! L7 end to end through the real `mosn` binary: HTTP/1.1 proxying (bodies byte-exact,
//! chunked uploads, keep-alive reuse of upstream connections, pipelining), HTTP/1 <-> HTTP/2
//! conversion both ways (headers, bodies, trailers), protocol detection on one port, and
//! WebSocket / CONNECT tunnels. Clients: curl, a raw TCP client, a hyper HTTP/2 client, the
//! python `websockets` package.

mod common;

use std::process::Command;
use std::time::Duration;

use common::http::*;
use hyper::http::{Method, Request};
use serde_json::json;

fn write_file(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn h1_get_and_post_bodies_arrive_byte_exact() {
    let up = Upstream::echo("a");
    let m = Mosn::start(&simple_config("Http1", &[up.addr], json!({})));
    let url = format!("http://{}", m.l7());

    // GET with a query and a custom header.
    let r = curl(&[
        &format!("{url}/hello/world?x=1&y=two"),
        "-H",
        "X-Test: one",
        "-H",
        "X-Multi: a",
        "-H",
        "X-Multi: b",
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("a"));
    assert!(r.body.is_empty());
    let s = up.last();
    assert_eq!(s.method, "GET");
    assert_eq!(s.path(), "/hello/world?x=1&y=two");
    assert_eq!(s.version, hyper::Version::HTTP_11);
    assert_eq!(s.header("x-test"), Some("one"));
    assert_eq!(s.header_all("x-multi"), vec!["a", "b"]);
    assert_eq!(s.host().as_deref(), Some(m.l7().to_string().as_str()));

    // POST with a binary body (Content-Length), a chunked upload and a 5 MB body.
    let dir = tempfile::tempdir().unwrap();
    let small = common::payload(100_000, 1);
    let f = write_file(&dir, "small", &small);
    let r = curl(&[&format!("{url}/post"), "--data-binary", &format!("@{f}")]);
    assert_eq!(r.status, 200);
    assert!(r.body == small, "echoed body differs");
    let s = up.last();
    assert_eq!((s.method.as_str(), s.path().as_str()), ("POST", "/post"));
    assert!(s.body == small);
    assert_eq!(s.header("content-length"), Some("100000"));

    let chunked = common::payload(300_001, 2);
    let f = write_file(&dir, "chunked", &chunked);
    let r = curl(&[
        &format!("{url}/chunked"),
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{f}"),
    ]);
    assert_eq!(r.status, 200);
    assert!(r.body == chunked, "echoed chunked body differs");
    assert!(up.last().body == chunked, "upstream got a different body");

    let big = common::payload(5 << 20, 3);
    let f = write_file(&dir, "big", &big);
    let r = curl(&[
        &format!("{url}/big"),
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{f}"),
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big, "5 MB body differs");
    let s = up.last();
    assert_eq!(s.method, "PUT");
    assert!(s.body == big);

    let lines = m.logs_for("/big", 1);
    lines[0].expect(200, &[]);
    assert_eq!(lines[0].get("cluster"), "up");
    assert_eq!(lines[0].get("proto"), "Http1");
}

#[test]
fn keep_alive_reuses_one_upstream_connection() {
    let up = Upstream::echo("a");
    let m = Mosn::start(&simple_config("Http1", &[up.addr], json!({})));
    let mut c = Raw::connect(m.l7());
    for i in 0..6 {
        // Alternate empty and non-empty bodies: both must leave the connection reusable.
        let req = if i % 2 == 0 {
            format!("GET /ka/{i} HTTP/1.1\r\nHost: ka\r\n\r\n")
        } else {
            format!("POST /ka/{i} HTTP/1.1\r\nHost: ka\r\nContent-Length: 5\r\n\r\nhello")
        };
        c.send(req.as_bytes());
        let r = c.response().expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-echo-path"), Some(format!("/ka/{i}").as_str()));
    }
    let seen = up.wait_requests(6, Duration::from_secs(5));
    let conns: std::collections::BTreeSet<usize> = seen.iter().map(|s| s.conn).collect();
    assert_eq!(
        up.connections(),
        1,
        "six requests on one downstream connection used {} upstream connections",
        up.connections()
    );
    assert_eq!(conns.len(), 1);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    // The first answer is the slowest: order must still hold.
    let up = Upstream::with(
        "p",
        std::sync::Arc::new(|s: &Seen, _| {
            let r = Reply::echo("p", s);
            if s.path() == "/p/0" {
                r.after(Duration::from_millis(300))
            } else {
                r
            }
        }),
    );
    let m = Mosn::start(&simple_config("Http1", &[up.addr], json!({})));
    let mut c = Raw::connect(m.l7());
    let mut batch = Vec::new();
    for i in 0..5 {
        if i == 2 {
            batch.extend_from_slice(
                format!("POST /p/{i} HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n\r\nabc")
                    .as_bytes(),
            );
        } else {
            batch.extend_from_slice(format!("GET /p/{i} HTTP/1.1\r\nHost: p\r\n\r\n").as_bytes());
        }
    }
    c.send(&batch);
    for i in 0..5 {
        let r = c.response().expect("pipelined response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-echo-path"), Some(format!("/p/{i}").as_str()));
        if i == 2 {
            assert_eq!(r.body, b"abc");
        }
    }
    assert_eq!(up.count(), 5);
}

// === conversion ===

#[test]
fn h2_downstream_to_h1_upstream_curl_and_hyper() {
    let up = Upstream::echo("h1");
    let m = Mosn::start(&simple_config(
        "Http2",
        &[up.addr],
        json!({"upstream_protocol": "Http1"}),
    ));
    let url = format!("http://{}", m.l7());
    let dir = tempfile::tempdir().unwrap();
    let body = common::payload(200_000, 5);
    let f = write_file(&dir, "b", &body);
    let r = curl(&[
        "--http2-prior-knowledge",
        &format!("{url}/conv/h2?q=1"),
        "-H",
        "X-Conv: yes",
        "--data-binary",
        &format!("@{f}"),
    ]);
    assert_eq!(r.status, 200);
    assert!(r.body == body);
    let s = up.last();
    assert_eq!(s.version, hyper::Version::HTTP_11);
    assert_eq!(s.path(), "/conv/h2?q=1");
    assert_eq!(s.header("x-conv"), Some("yes"));
    assert_eq!(s.host().as_deref(), Some(m.l7().to_string().as_str()));
    assert!(s.body == body);

    // A Rust client with request trailers: they reach the HTTP/1 upstream (chunked), and the
    // upstream's response trailers come back over HTTP/2.
    let c = H2Client::connect(m.l7());
    let mut req = Request::new(Frames::new(
        "trailered body",
        Some(headers(&[("x-checksum", "abc123"), ("x-count", "2")])),
    ));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = "http://svc.example:8080/conv/trailers".parse().unwrap();
    req.headers_mut()
        .insert("te", hyper::http::HeaderValue::from_static("trailers"));
    req.headers_mut().insert(
        "trailer",
        hyper::http::HeaderValue::from_static("x-checksum, x-count"),
    );
    let r = c.send(req);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"trailered body");
    let s = up.last();
    assert_eq!(s.host().as_deref(), Some("svc.example:8080"));
    assert_eq!(s.body.as_ref(), b"trailered body");
    let t = s
        .trailers
        .as_ref()
        .expect("trailers reached the HTTP/1 upstream");
    assert_eq!(t["x-checksum"], "abc123");
    assert_eq!(t["x-count"], "2");
    assert_eq!(r.trailer("x-checksum"), Some("abc123"));
    assert_eq!(r.trailer("x-count"), Some("2"));
    m.log_for("/conv/trailers").expect(200, &[]);
    assert_eq!(m.log_for("/conv/trailers").get("proto"), "Http2");
}

#[test]
fn h1_downstream_to_h2_upstream() {
    let up = Upstream::echo("h2");
    let m = Mosn::start(&simple_config(
        "Http1",
        &[up.addr],
        json!({"upstream_protocol": "Http2"}),
    ));
    let url = format!("http://{}", m.l7());
    let dir = tempfile::tempdir().unwrap();
    let body = common::payload(1 << 20, 6);
    let f = write_file(&dir, "b", &body);
    let r = curl(&[
        &format!("{url}/conv/h1?a=b"),
        "-H",
        "Host: api.example",
        "-H",
        "X-Conv: h1",
        "-H",
        "Connection: keep-alive, X-Hop",
        "-H",
        "X-Hop: must-not-pass",
        "--data-binary",
        &format!("@{f}"),
    ]);
    assert_eq!(r.status, 200);
    assert!(r.body == body);
    let s = up.last();
    assert_eq!(s.version, hyper::Version::HTTP_2);
    assert_eq!(s.path(), "/conv/h1?a=b");
    assert_eq!(s.uri.authority().map(|a| a.as_str()), Some("api.example"));
    assert_eq!(s.header("x-conv"), Some("h1"));
    assert_eq!(
        s.header("x-hop"),
        None,
        "a Connection-named field was forwarded"
    );
    assert_eq!(s.header("connection"), None);
    assert!(s.body == body);
}

/// H1 -> mosn -> H2 -> mosn -> H1: request and response headers, body and trailers exact.
#[test]
fn trailers_survive_h1_h2_h1() {
    let up = Upstream::echo("end");
    // Back: HTTP/2 in, HTTP/1 out.
    let back = Mosn::start(&simple_config(
        "Http2",
        &[up.addr],
        json!({"upstream_protocol": "Http1"}),
    ));
    // Front: HTTP/1 in, HTTP/2 out to the back mosn.
    let front = Mosn::start(&simple_config(
        "Http1",
        &[back.l7()],
        json!({"upstream_protocol": "Http2"}),
    ));
    let mut c = Raw::connect(front.l7());
    c.send(
        b"POST /t?x=1 HTTP/1.1\r\nHost: trail.example\r\nTE: trailers\r\n\
          Trailer: x-sum, x-extra\r\nTransfer-Encoding: chunked\r\nX-Req: r1\r\n\r\n\
          5\r\nhello\r\n7\r\n, world\r\n0\r\nx-sum: 42\r\nx-extra: e\r\n\r\n",
    );
    let r = c.response().expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, world");
    assert_eq!(r.header("x-echo-path"), Some("/t?x=1"));
    assert_eq!(r.header("x-echo-host"), Some("trail.example"));
    assert_eq!(r.header("x-echo-method"), Some("POST"));
    assert_eq!(r.trailer("x-sum"), Some("42"), "response trailers: {r:?}");
    assert_eq!(r.trailer("x-extra"), Some("e"));
    let s = up.last();
    assert_eq!(s.version, hyper::Version::HTTP_11);
    assert_eq!(s.header("x-req"), Some("r1"));
    assert_eq!(s.body.as_ref(), b"hello, world");
    let t = s
        .trailers
        .as_ref()
        .expect("request trailers reached the end");
    assert_eq!(t["x-sum"], "42");
    assert_eq!(t["x-extra"], "e");
    // The same connection still works afterwards.
    c.send(b"GET /t2 HTTP/1.1\r\nHost: trail.example\r\n\r\n");
    let r = c.response().expect("second response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo-path"), Some("/t2"));
}

#[test]
fn auto_and_comma_list_detect_both_protocols_on_one_port() {
    let up = Upstream::echo("d");
    for downstream in ["Auto", "Http1,Http2"] {
        let m = Mosn::start(&simple_config(downstream, &[up.addr], json!({})));
        let url = format!("http://{}/detect", m.l7());
        let r1 = curl(&["--http1.1", &url, "-H", "X-Proto: one"]);
        assert_eq!(r1.status, 200, "{downstream}");
        assert_eq!(r1.header("x-echo-version"), Some("HTTP/1.1"));
        let r2 = curl(&["--http2-prior-knowledge", &url, "-H", "X-Proto: two"]);
        assert_eq!(r2.status, 200, "{downstream}");
        // Without an upstream_protocol the upstream speaks the downstream's protocol.
        assert_eq!(r2.header("x-echo-version"), Some("HTTP/2.0"));
        let logs = m.logs_for("/detect", 2);
        let protos: Vec<&str> = logs.iter().map(|l| l.get("proto")).collect();
        assert_eq!(protos, vec!["Http1", "Http2"], "{downstream}");
        // Garbage is neither: the connection is closed without a response.
        let mut raw = Raw::connect(m.l7());
        raw.send(b"\x16\x03\x01\x02\x00garbage");
        assert!(raw.closed_within(Duration::from_secs(5)));
        assert!(raw.leftover().is_empty());
    }
}

// === tunnels ===

#[test]
fn websocket_echo_through_mosn() {
    let py = python_with("websockets", "python3-websockets");
    let (_server, port) = spawn_ready(
        Command::new(&py)
            .arg(tool_script("ws_echo.py"))
            .args(["server", "--port", "0"]),
    );
    let upstream: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let m = Mosn::start(&simple_config("Http1", &[upstream], json!({})));
    let out = Command::new(&py)
        .arg(tool_script("ws_echo.py"))
        .args([
            "client",
            "--url",
            &format!("ws://{}/ws/echo", m.l7()),
            "--messages",
            "50",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "websocket client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK 50 text 50 binary"), "{stdout}");
    m.log_for("/ws/echo").expect(101, &[]);
}

#[test]
fn connect_tunnel_to_a_tcp_echo_upstream() {
    let echo = raw_upstream(|mut s| {
        let mut b = [0u8; 4096];
        use std::io::{Read, Write};
        loop {
            match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&b[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let m = Mosn::start(&simple_config("Http1", &[echo], json!({})));
    let mut c = Raw::connect(m.l7());
    c.send(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes());
    let r = c.response_to(true).expect("CONNECT answer");
    assert_eq!(r.status, 200);
    let data = common::payload(100_000, 9);
    let mut writer = c.s.try_clone().unwrap();
    let d2 = data.clone();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&d2).unwrap();
    });
    let mut back = c.leftover().to_vec();
    while back.len() < data.len() {
        use std::io::Read;
        let mut b = [0u8; 65536];
        let n = c.s.read(&mut b).expect("tunnel read");
        assert!(n > 0, "tunnel closed early after {} bytes", back.len());
        back.extend_from_slice(&b[..n]);
    }
    t.join().unwrap();
    assert!(back == data, "tunnelled bytes differ");

    // curl through mosn as an HTTP proxy with CONNECT (-p) to an HTTP upstream.
    let up = Upstream::echo("behind-connect");
    let m2 = Mosn::start(&simple_config("Http1", &[up.addr], json!({})));
    let r = curl(&[
        "-p",
        "-x",
        &format!("http://{}", m2.l7()),
        &format!("http://{}/through/tunnel", up.addr),
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("behind-connect"));
    assert_eq!(up.last().path(), "/through/tunnel");
}

#[test]
fn h2_to_h2_large_bodies_and_a_small_peer_stream_limit() {
    let big = common::payload(5 << 20, 11);
    let download = bytes::Bytes::from(big.clone());
    let up = Upstream::with_h2_limit(
        "h2",
        std::sync::Arc::new(move |s: &Seen, _| {
            if s.path() == "/download" {
                Reply::ok(download.clone())
            } else {
                Reply::echo("h2", s).after(Duration::from_millis(30))
            }
        }),
        Some(4),
    );
    let m = Mosn::start(&simple_config("Http2", &[up.addr], json!({})));
    // First, 40 concurrent streams on one downstream connection: they meet a fresh upstream
    // connection whose peer allows 4 at a time, before its SETTINGS say so. The excess
    // waits; nothing is refused.
    let c = std::sync::Arc::new(H2Client::connect(m.l7()));
    let threads: Vec<_> = (0..40)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let body = format!("stream {i}");
                let mut req = Request::new(Frames::new(body.clone(), None));
                *req.method_mut() = Method::POST;
                *req.uri_mut() = format!("http://h2.test/many/{i}").parse().unwrap();
                let r = c.send(req);
                (r.status, r.text() == body)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), (200, true));
    }
    let url = format!("http://{}", m.l7());
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(&dir, "big", &big);
    let r = curl(&[
        "--http2-prior-knowledge",
        &format!("{url}/upload"),
        "--data-binary",
        &format!("@{f}"),
    ]);
    assert_eq!(r.status, 200);
    assert!(r.body == big, "5 MB echoed over HTTP/2 differs");
    assert!(up.last().body == big);
    let r = curl(&["--http2-prior-knowledge", &format!("{url}/download")]);
    assert_eq!(r.status, 200);
    assert!(r.body == big, "5 MB download differs");

    assert_eq!(up.count(), 42);
    assert!(
        up.connections() <= 3,
        "{} upstream connections for one multiplexed pool",
        up.connections()
    );
}

#[test]
fn head_204_and_304_keep_the_framing_on_both_protocols() {
    let up = Upstream::with(
        "nb",
        std::sync::Arc::new(|s: &Seen, _| match s.path().as_str() {
            "/204" => Reply::status(204).header("x-kind", "204"),
            "/304" => Reply::status(304).header("etag", "\"v1\""),
            _ => Reply::ok("0123456789").header("x-kind", "full"),
        }),
    );
    for (downstream, upstream) in [
        ("Http1", "Http1"),
        ("Http1", "Http2"),
        ("Http2", "Http1"),
        ("Http2", "Http2"),
    ] {
        let m = Mosn::start(&simple_config(
            downstream,
            &[up.addr],
            json!({"upstream_protocol": upstream}),
        ));
        let what = format!("{downstream} -> {upstream}");
        if downstream == "Http1" {
            let mut c = Raw::connect(m.l7());
            c.send(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = c.response_to(true).unwrap();
            assert_eq!(r.status, 200, "{what}");
            assert_eq!(r.header("content-length"), Some("10"), "{what}");
            for (path, status) in [("/204", 204), ("/304", 304), ("/full", 200)] {
                c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
                let r = c.response().expect("next response on the same connection");
                assert_eq!(r.status, status, "{what} {path}");
                if status == 200 {
                    assert_eq!(r.body, b"0123456789", "{what}: framing broken");
                } else {
                    assert!(r.body.is_empty());
                }
            }
        } else {
            let c = H2Client::connect(m.l7());
            let req = |method: Method, path: &str| {
                let mut r = Request::new(Frames::new("", None));
                *r.method_mut() = method;
                *r.uri_mut() = format!("http://x{path}").parse().unwrap();
                r
            };
            let r = c.send(req(Method::HEAD, "/head"));
            assert_eq!(r.status, 200, "{what}");
            assert!(r.body.is_empty());
            assert_eq!(c.send(req(Method::GET, "/204")).status, 204, "{what}");
            assert_eq!(c.send(req(Method::GET, "/304")).status, 304, "{what}");
            let r = c.send(req(Method::GET, "/full"));
            assert_eq!(r.body, b"0123456789", "{what}");
        }
        m.log_for("/204").expect(204, &[]);
    }
}

#[test]
fn refused_upgrade_stays_http_and_connect_to_a_dead_host_is_503() {
    // The upstream does not switch: its answer passes and the connection stays HTTP/1.1.
    let up = Upstream::echo("no-ws");
    let m = Mosn::start(&simple_config("Http1", &[up.addr], json!({})));
    let mut c = Raw::connect(m.l7());
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    let r = c.response().expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("no-ws"));
    assert_eq!(up.last().header("upgrade"), Some("websocket"));
    c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response().expect("the connection is still HTTP");
    assert_eq!(r.header("x-echo-path"), Some("/after"));

    let dead = common::dead_addr();
    let m = Mosn::start(&simple_config("Http1", &[dead], json!({})));
    let mut c = Raw::connect(m.l7());
    c.send(format!("CONNECT {dead} HTTP/1.1\r\nHost: {dead}\r\n\r\n").as_bytes());
    let r = c.response().expect("answer");
    assert_eq!(r.status, 503);
    let l = eventually(Duration::from_secs(10), || m.log_lines().pop()).expect("a log line");
    l.expect(503, &["UF"]);
    assert_eq!(l.get("method"), "CONNECT");
}

#[test]
fn max_request_per_conn_retires_upstream_connections() {
    for (proto, per_conn, requests, want) in [("Http1", 3, 7, 3), ("Http2", 5, 12, 3)] {
        let up = Upstream::echo("mr");
        let mut cfg = simple_config("Http1", &[up.addr], json!({"upstream_protocol": proto}));
        cfg["cluster_manager"]["clusters"][0]["max_request_per_conn"] = json!(per_conn);
        let m = Mosn::start(&cfg);
        let mut c = Raw::connect(m.l7());
        for i in 0..requests {
            c.send(format!("GET /mr/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            assert_eq!(c.response().expect("response").status, 200);
        }
        assert_eq!(up.count(), requests);
        assert_eq!(
            up.connections(),
            want,
            "{proto}: {requests} requests at {per_conn} per connection"
        );
    }
}
