//! Errors as a proxy owes them, end to end through the real `mosn` binary, each checked in
//! the access log: no route, unknown cluster, no host, connect failure, upstream timeout,
//! retries (succeeding and exhausted), upstream resets, body / header limits, malformed
//! requests, and request-smuggling attempts over raw TCP (RFC 9112).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::*;
use serde_json::{json, Value};

fn proxy_config(cfg: &mut Value) -> &mut Value {
    &mut cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
}

#[test]
fn no_route_no_cluster_no_host_and_connect_failure() {
    let routes = json!([
        {"match": {"prefix": "/nc"}, "route": {"cluster_header": "x-cluster"}},
        {"match": {"prefix": "/uh"}, "route": {"cluster_name": "empty"},
         "metadata": {"filter_metadata": {"mosn.lb": {"name": "to-empty"}}}},
        {"match": {"prefix": "/uf"}, "route": {"cluster_name": "dead"}},
    ]);
    let m = Mosn::start(&config(
        vec![listener("l7", "Auto", "r")],
        vec![router("r", routes)],
        vec![
            cluster("empty", &[]),
            cluster("dead", &[common::dead_addr()]),
        ],
    ));
    let r = get(m.l7(), "/none", &[]);
    assert_eq!(r.status, 404);
    m.log_for("/none").expect(404, &["NR"]);

    let r = get(m.l7(), "/nc", &[("x-cluster", "no-such-cluster")]);
    assert_eq!(r.status, 503);
    m.log_for("/nc").expect(503, &["NC"]);

    let r = get(m.l7(), "/uh", &[]);
    assert_eq!(r.status, 503);
    let l = m.log_for("/uh");
    l.expect(503, &["UH"]);
    assert_eq!(l.get("cluster"), "empty");
    assert_eq!(l.get("route"), "to-empty");

    let r = get(m.l7(), "/uf", &[]);
    assert_eq!(r.status, 503);
    let l = m.log_for("/uf");
    l.expect(503, &["UF"]);
    assert_eq!(l.get("cluster"), "dead");
    assert!(!l.flags().contains(&"URX"), "no retry policy: {}", l.raw);
    // Over HTTP/2 the same.
    let r = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/uf/h2", m.l7()),
    ]);
    assert_eq!(r.status, 503);
    m.log_for("/uf/h2").expect(503, &["UF"]);
}

#[test]
fn upstream_timeout_is_504() {
    let up = Upstream::with(
        "slow",
        Arc::new(|s: &Seen, _| Reply::echo("slow", s).after(Duration::from_secs(5))),
    );
    let m = Mosn::start(&simple_config(
        "Auto",
        &[up.addr],
        json!({"timeout": "200ms"}),
    ));
    let start = Instant::now();
    let r = get(m.l7(), "/slow", &[]);
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert!(took < Duration::from_secs(3), "504 after {took:?}");
    m.log_for("/slow").expect(504, &["UT"]);
    let start = Instant::now();
    let r = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/slow2", m.l7()),
    ]);
    assert_eq!(r.status, 504);
    assert!(start.elapsed() < Duration::from_secs(3));
    m.log_for("/slow2").expect(504, &["UT"]);
}

/// An upstream that answers 503 to its first `fails` requests, then echoes.
fn flaky(name: &'static str, fails: usize) -> Upstream {
    Upstream::with(
        name,
        Arc::new(move |s: &Seen, n| {
            if n < fails {
                Reply::status(503).header("x-attempt", &n.to_string())
            } else {
                Reply::echo(name, s).header("x-attempt", &n.to_string())
            }
        }),
    )
}

#[test]
fn retries_succeed_after_503s_and_exhaust_with_urx() {
    let ok_after_two = flaky("two-fails", 2);
    let always = flaky("always", usize::MAX);
    let retry =
        json!({"retry_on": true, "num_retries": 3, "status_codes": [503], "retry_timeout": "2s"});
    let routes = json!([
        {"match": {"prefix": "/recover"}, "route": {"cluster_name": "flaky", "retry_policy": retry}},
        {"match": {"prefix": "/exhaust"}, "route": {"cluster_name": "always",
            "retry_policy": {"retry_on": true, "num_retries": 2, "status_codes": [503]}}},
        {"match": {"prefix": "/noretry"}, "route": {"cluster_name": "always"}},
    ]);
    let m = Mosn::start(&config(
        vec![listener("l7", "Auto", "r")],
        vec![router("r", routes)],
        vec![
            cluster("flaky", &[ok_after_two.addr]),
            cluster("always", &[always.addr]),
        ],
    ));
    let r = request(m.l7(), "POST", "/recover", &[], b"retry me");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "retry me");
    assert_eq!(r.header("x-attempt"), Some("2"));
    let seen = ok_after_two.seen();
    assert_eq!(seen.len(), 3, "two failures and the success");
    for s in &seen {
        assert_eq!(s.body.as_ref(), b"retry me", "every try carries the body");
        assert_eq!(s.path(), "/recover");
    }
    let l = m.log_for("/recover");
    l.expect(200, &[]);
    assert_eq!(l.get("flags"), "-");

    let r = request(m.l7(), "POST", "/exhaust", &[], b"x");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-attempt"), Some("2"), "the last try's answer");
    assert_eq!(always.count(), 3, "one try and two retries");
    m.log_for("/exhaust").expect(503, &["URX"]);

    // Without a policy the 503 passes once, unflagged.
    let r = get(m.l7(), "/noretry", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(always.count(), 4);
    assert_eq!(m.log_for("/noretry").get("flags"), "-");
}

#[test]
fn retries_cover_connect_failures_resets_and_per_try_timeouts() {
    let live = Upstream::echo("live");
    let dead = common::dead_addr();
    // An upstream that resets its first connection after reading the request.
    let resets = Arc::new(AtomicUsize::new(0));
    let r2 = resets.clone();
    let resetting = raw_upstream(move |mut s| {
        let Some(_head) = read_head(&mut s) else {
            return;
        };
        if r2.fetch_add(1, Ordering::SeqCst) == 0 {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            return; // RST
        }
        use std::io::Write;
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nrecovered",
        );
    });
    // Slow on its first request only.
    let slow_once = Upstream::with(
        "slow-once",
        Arc::new(|s: &Seen, n| {
            let r = Reply::echo("slow-once", s).header("x-n", &n.to_string());
            if n == 0 {
                r.after(Duration::from_secs(6))
            } else {
                r
            }
        }),
    );
    let retry1 = json!({"retry_on": true, "num_retries": 1});
    let routes = json!([
        {"match": {"prefix": "/connect"}, "route": {"cluster_name": "half-dead", "retry_policy": retry1}},
        {"match": {"prefix": "/all-dead"}, "route": {"cluster_name": "dead",
            "retry_policy": {"retry_on": true, "num_retries": 2}}},
        {"match": {"prefix": "/reset-retry"}, "route": {"cluster_name": "resetting", "retry_policy": retry1}},
        {"match": {"prefix": "/reset"}, "route": {"cluster_name": "resetting"}},
        {"match": {"prefix": "/per-try"}, "route": {"cluster_name": "slow-once", "timeout": "20s",
            "retry_policy": {"retry_on": true, "num_retries": 1, "retry_timeout": "1500ms"}}},
    ]);
    let m = Mosn::start(&config(
        vec![listener("l7", "Http1", "r")],
        vec![router("r", routes)],
        vec![
            cluster("half-dead", &[dead, live.addr]),
            cluster("dead", &[dead]),
            cluster("resetting", &[resetting]),
            cluster("slow-once", &[slow_once.addr]),
        ],
    ));
    for i in 0..6 {
        let r = get(m.l7(), &format!("/connect/{i}"), &[]);
        assert_eq!(r.status, 200, "request {i}: the dead host is retried away");
        assert_eq!(r.header("x-upstream"), Some("live"));
    }
    let r = get(m.l7(), "/all-dead", &[]);
    assert_eq!(r.status, 503);
    m.log_for("/all-dead").expect(503, &["UF", "URX"]);

    let r = get(m.l7(), "/reset-retry", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "recovered");
    assert_eq!(resets.load(Ordering::SeqCst), 2);
    // Without retries an upstream reset is a 502 with UC.
    resets.store(0, Ordering::SeqCst);
    let r = get(m.l7(), "/reset", &[]);
    assert_eq!(r.status, 502);
    m.log_for("/reset").expect(502, &["UC"]);

    let r = get(m.l7(), "/per-try", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-n"), Some("1"), "the second try answered");
    assert_eq!(slow_once.count(), 2);
}

/// A chunked POST of `n` chunks of `size` bytes.
fn chunked_request(path: &str, n: usize, size: usize) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    for _ in 0..n {
        req.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        req.extend_from_slice(&vec![b'y'; size]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

#[test]
fn request_body_limits_are_413() {
    // The listener-wide limit (extend_config) and the payload_limit filter with a per-route
    // override; Content-Length and chunked bodies both.
    let up = Upstream::echo("lim");
    let mut cfg = simple_config("Http1", &[up.addr], json!({}));
    proxy_config(&mut cfg)["extend_config"] = json!({"Http1": {"max_request_body_size": 1000}});
    let m = Mosn::start(&cfg);
    let big = vec![b'x'; 2000];
    let r = request(m.l7(), "POST", "/cl-too-big", &[], &big);
    assert_eq!(r.status, 413);
    m.log_for("/cl-too-big").expect(413, &["PL"]);
    let mut c = Raw::connect(m.l7());
    c.send(&chunked_request("/chunked-too-big", 4, 500));
    let r = c.response().expect("413 for the chunked body");
    assert_eq!(r.status, 413);
    m.log_for("/chunked-too-big").expect(413, &["PL"]);
    let r = request(m.l7(), "POST", "/fits", &[], &[b'z'; 1000]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1000);
    let paths: Vec<String> = up.seen().iter().map(|s| s.path()).collect();
    assert_eq!(
        paths,
        vec!["/fits"],
        "no oversized body reached the upstream whole"
    );

    // payload_limit: refused up front by Content-Length (the upstream sees nothing), or
    // while streaming; a route's per_filter_config raises the limit.
    let up = Upstream::echo("pl");
    let routes = json!([
        {"match": {"prefix": "/roomy"}, "route": {"cluster_name": "up"},
         "per_filter_config": {"payload_limit": {"max_entity_size": 5000, "http_status": 413}}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}},
    ]);
    let mut l = listener("l7", "Auto", "r");
    l["stream_filters"] =
        json!([{"type": "payload_limit", "config": {"max_entity_size": 1000, "http_status": 413}}]);
    let m = Mosn::start(&config(
        vec![l],
        vec![router("r", routes)],
        vec![cluster("up", &[up.addr])],
    ));
    let r = request(m.l7(), "POST", "/pl-cl", &[], &big);
    assert_eq!(r.status, 413);
    m.log_for("/pl-cl").expect(413, &["PL"]);
    assert_eq!(
        up.connections(),
        0,
        "refused by Content-Length before any upstream work"
    );
    let mut c = Raw::connect(m.l7());
    c.send(&chunked_request("/pl-chunked", 4, 500));
    let r = c.response().expect("413 for the chunked body");
    assert_eq!(r.status, 413);
    m.log_for("/pl-chunked").expect(413, &["PL"]);
    let r = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &"h".repeat(2000),
        &format!("http://{}/pl-h2", m.l7()),
    ]);
    assert_eq!(r.status, 413);
    m.log_for("/pl-h2").expect(413, &["PL"]);
    // Expect: 100-continue: refused before the body is sent, and allowed ones go through.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big");
    std::fs::write(&f, &big).unwrap();
    let data = format!("@{}", f.display());
    let url = format!("http://{}", m.l7());
    let r = curl(&[
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        &format!("{url}/expect"),
    ]);
    assert_eq!(r.status, 413);
    let r = curl(&[
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        &format!("{url}/roomy/expect"),
    ]);
    assert_eq!(r.status, 200);
    assert!(r.body == big);
    let r = request(m.l7(), "POST", "/roomy", &[], &big);
    assert_eq!(r.status, 200, "the route's own limit applies");
    assert!(r.body == big);
    let paths: Vec<String> = up.seen().iter().map(|s| s.path()).collect();
    assert_eq!(paths, vec!["/roomy/expect", "/roomy"]);
}

#[test]
fn header_limits_are_431_and_malformed_requests_400() {
    let (addr, cap) = Capture::start();
    let mut cfg = simple_config("Http1", &[addr], json!({}));
    proxy_config(&mut cfg)["extend_config"] =
        json!({"Http1": {"max_headers": 30, "max_header_size": 16384}});
    let m = Mosn::start(&cfg);
    let send = |raw: &[u8]| -> Option<Resp> {
        let mut c = Raw::connect(m.l7());
        c.send(raw);
        c.response()
    };
    // Too large: one 20 KB header over the configured 16 KiB head limit; 12 KB fits.
    let head = |n: usize| {
        format!(
            "GET /big-head HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(n)
        )
    };
    assert_eq!(send(head(20_000).as_bytes()).map(|r| r.status), Some(431));
    assert_eq!(send(head(12_000).as_bytes()).map(|r| r.status), Some(200));
    // Too many: 40 fields over a limit of 30; 25 are fine.
    let many = |n: usize| {
        let mut s = "GET /many HTTP/1.1\r\nHost: x\r\n".to_string();
        for i in 0..n {
            s.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        s + "\r\n"
    };
    assert_eq!(send(many(40).as_bytes()).map(|r| r.status), Some(431));
    assert_eq!(send(many(25).as_bytes()).map(|r| r.status), Some(200));
    // Malformed.
    for bad in [
        &b"GET /bad HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n"[..],
        b"GET /bad HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /bad HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\n\r\n",
        b"GET /bad HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /b\x01ad HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G(T /bad HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let r = send(bad);
        assert_eq!(
            r.as_ref().map(|r| r.status),
            Some(400),
            "{:?} -> {r:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // The codec's own answers are logged too (no route, no upstream: DPE).
    let rejected = eventually(Duration::from_secs(10), || {
        let lines = m.log_lines();
        let count = |code: &str| lines.iter().filter(|l| l.get("code") == code).count();
        (count("431") == 2 && count("400") == 6).then_some(lines)
    })
    .unwrap_or_else(|| panic!("log:\n{:#?}", m.log_lines()));
    for l in rejected.iter().filter(|l| l.get("code") != "200") {
        l.expect(l.get("code").parse().unwrap(), &["DPE"]);
        assert_eq!(l.get("proto"), "Http1");
    }
    let texts = cap.texts();
    assert_eq!(
        texts.len(),
        2,
        "only the valid requests were forwarded: {texts:?}"
    );
    assert!(texts[0].starts_with("GET /big-head HTTP/1.1\r\n"));
    assert!(texts[0].contains(&"a".repeat(12_000)));
    assert!(texts[1].starts_with("GET /many HTTP/1.1\r\n"));
    assert!(cap.partial.lock().unwrap().is_empty());
}

#[test]
fn smuggling_attempts_are_rejected_or_normalized() {
    let (addr, cap) = Capture::start();
    let m = Mosn::start(&simple_config("Http1", &[addr], json!({})));

    // Content-Length + Transfer-Encoding: chunked framing wins, Content-Length is dropped,
    // the upstream sees one normalized request and the downstream connection closes after
    // the answer, so the bytes after the chunked body are never a second request.
    let mut c = Raw::connect(m.l7());
    c.send(
        b"POST /cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let r = c.response().expect("answer to the first request");
    assert_eq!(r.status, 200);
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "connection stays open after CL+TE"
    );
    assert!(
        !String::from_utf8_lossy(c.leftover()).contains("HTTP/1.1"),
        "a second response: {:?}",
        String::from_utf8_lossy(c.leftover())
    );
    let texts = cap.texts();
    assert_eq!(texts.len(), 1, "{texts:?}");
    let t = texts[0].to_ascii_lowercase();
    assert!(t.starts_with("post /cl-te http/1.1\r\n"), "{t:?}");
    assert!(
        !(t.contains("content-length:") && t.contains("transfer-encoding:")),
        "both framings forwarded: {t:?}"
    );
    assert!(!t.contains("content-length: 40"), "{t:?}");
    let body_ok = t.ends_with("\r\n\r\nabc") || t.ends_with("3\r\nabc\r\n0\r\n\r\n");
    assert!(body_ok, "body not forwarded as abc: {t:?}");
    assert!(!cap.everything().contains("/smuggled"));

    // Each of these is refused with 400 (or a close) and nothing of it is forwarded.
    let before = cap.texts().len();
    for (name, bad) in [
        (
            "two Content-Length values",
            &b"POST /two-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
        ),
        (
            "Content-Length list of different values",
            b"POST /cl-list HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd",
        ),
        (
            "signed Content-Length",
            b"POST /cl-sign HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            b"POST /te-id HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 3\r\n\r\nabc",
        ),
        (
            "unknown Transfer-Encoding",
            b"POST /te-x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            b"POST /te-10 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET /fold HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
        ),
        (
            "whitespace before the first field",
            b"GET /ws-first HTTP/1.1\r\n Host: x\r\n\r\n",
        ),
    ] {
        let mut c = Raw::connect(m.l7());
        c.send(bad);
        // Closed without an answer is also a refusal.
        if let Some(r) = c.response() {
            assert_eq!(r.status, 400, "{name}");
        }
        assert!(c.closed_within(Duration::from_secs(5)), "{name}: left open");
        assert_eq!(cap.texts().len(), before, "{name} was forwarded");
    }

    // Broken chunk framing: never forwarded as a complete request.
    for (name, bad) in [
        (
            "invalid chunk size",
            &b"POST /bad-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
        ),
        (
            "chunk size overflow",
            b"POST /chunk-overflow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk longer than its size",
            b"POST /chunk-long HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        ),
    ] {
        let mut c = Raw::connect(m.l7());
        c.send(bad);
        if let Some(r) = c.response() {
            assert!(
                r.status == 400 || r.status == 413,
                "{name}: answered {}",
                r.status
            );
        }
        assert!(c.closed_within(Duration::from_secs(5)), "{name}: left open");
        assert_eq!(cap.texts().len(), before, "{name} was forwarded whole");
    }
    let lines = m.log_lines();
    for l in lines
        .iter()
        .filter(|l| l.get("path").starts_with("/bad-chunk"))
    {
        assert_ne!(
            l.get("code"),
            "502",
            "a downstream error blamed on the upstream: {}",
            l.raw
        );
        assert!(!l.flags().contains(&"UC"), "{}", l.raw);
    }

    // Bare LF line endings (RFC 9112 §2.2: a recipient MAY accept them): accepted as one
    // request and forwarded with CRLF only.
    let mut c = Raw::connect(m.l7());
    c.send(b"GET /bare-lf HTTP/1.1\nHost: x\nX-A: 1\n\n");
    let r = c.response().expect("answer to a bare-LF request");
    assert_eq!(r.status, 200);
    let texts = cap.texts();
    assert_eq!(texts.len(), before + 1);
    let t = texts.last().unwrap();
    assert!(t.starts_with("GET /bare-lf HTTP/1.1\r\n"), "{t:?}");
    assert!(t.to_ascii_lowercase().contains("\r\nx-a: 1\r\n"), "{t:?}");
    assert!(
        !t.replace("\r\n", "").contains('\n'),
        "a bare LF was forwarded: {t:?}"
    );
}

#[test]
fn broken_upstream_responses() {
    use std::io::Write;
    let garbage = raw_upstream(|mut s| {
        if read_head(&mut s).is_some() {
            let _ = s.write_all(b"NOT HTTP AT ALL\r\n\r\n");
        }
    });
    let truncated = raw_upstream(|mut s| {
        if read_head(&mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n");
            let _ = s.write_all(&[b'x'; 50]);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let silent = raw_upstream(|mut s| {
        let _ = read_head(&mut s); // then FIN without an answer
    });
    // Answers once per connection without saying so, then closes it shortly after: the
    // pooled connection goes stale and must not be used for the next request.
    let one_shot = raw_upstream(|mut s| {
        if read_head(&mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let routes = json!([
        {"match": {"prefix": "/garbage"}, "route": {"cluster_name": "garbage"}},
        {"match": {"prefix": "/truncated"}, "route": {"cluster_name": "truncated"}},
        {"match": {"prefix": "/silent"}, "route": {"cluster_name": "silent"}},
        {"match": {"prefix": "/one-shot"}, "route": {"cluster_name": "one-shot"}},
    ]);
    let m = Mosn::start(&config(
        vec![listener("l7", "Http1", "r")],
        vec![router("r", routes)],
        vec![
            cluster("garbage", &[garbage]),
            cluster("truncated", &[truncated]),
            cluster("silent", &[silent]),
            cluster("one-shot", &[one_shot]),
        ],
    ));
    let r = get(m.l7(), "/garbage", &[]);
    assert_eq!(r.status, 502);
    m.log_for("/garbage").expect(502, &["UPE"]);

    let r = get(m.l7(), "/silent", &[]);
    assert_eq!(r.status, 502);
    m.log_for("/silent").expect(502, &["UC"]);

    // Headers went out already: the downstream sees the body cut short and the connection
    // closed, never a complete-looking response; the log says the upstream broke off.
    let mut c = Raw::connect(m.l7());
    c.send(b"GET /truncated HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.response().is_none(), "a truncated body looked complete");
    assert!(c.closed_within(Duration::from_secs(5)));
    m.log_for("/truncated").expect(200, &["UC"]);

    // (The gap lets mosn see the close. A close racing with reuse is sent again on a fresh
    // connection when the request had not left, else it is a 502 without a retry policy.)
    for i in 0..2 {
        let r = get(m.l7(), &format!("/one-shot/{i}"), &[]);
        assert_eq!((r.status, r.text().as_str()), (200, "once"), "request {i}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn connection_management_close_idle_and_http10() {
    let up = Upstream::with(
        "cm",
        Arc::new(|s: &Seen, _| {
            let r = Reply::echo("cm", s);
            if s.path() == "/up-closes" {
                r.header("connection", "close")
            } else {
                r
            }
        }),
    );
    let mut l = listener("l7", "Http1", "r");
    l["connection_idle_timeout"] = json!("500ms");
    let m = Mosn::start(&config(
        vec![l],
        vec![router("r", json!([prefix_route("/", "up")]))],
        vec![cluster("up", &[up.addr])],
    ));
    // The client's Connection: close ends the downstream connection after the answer.
    let mut c = Raw::connect(m.l7());
    c.send(b"GET /client-closes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.response().unwrap();
    assert_eq!(r.status, 200);
    assert!(c.closed_within(Duration::from_secs(5)));
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = Raw::connect(m.l7());
    c.send(b"GET /ten HTTP/1.0\r\n\r\n");
    let r = c.response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().path(), "/ten");
    assert!(c.closed_within(Duration::from_secs(5)));
    // The upstream's Connection: close is hop-by-hop: the downstream connection stays open
    // and the next request gets a fresh upstream connection.
    let mut c = Raw::connect(m.l7());
    let before = up.connections();
    c.send(b"GET /up-closes HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None);
    c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response().expect("the downstream connection stayed open");
    assert_eq!(r.status, 200);
    assert!(up.connections() > before);
    // An idle keep-alive connection is closed after connection_idle_timeout.
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "idle connection left open"
    );
}

/// A client that goes away mid-body (its write side closed, or a reset) is logged and counted
/// as 499 with `DC`; a body that breaks the chunked framing is a 400 with `DPE`. Neither is
/// blamed on the upstream.
#[test]
fn a_client_gone_mid_body_is_499_and_a_broken_body_400() {
    let up = Upstream::echo("mid");
    let m = Mosn::start(&simple_config("Http1", &[up.addr], json!({})));
    let head = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n").into_bytes()
    };
    // 100 of 1000 bytes, then the client closes its side.
    let mut c = Raw::connect(m.l7());
    c.send(&head("/half-closed"));
    c.send(&[b'a'; 100]);
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = c.response();
    m.log_for("/half-closed").expect(499, &["DC"]);
    // 100 of 1000 bytes, then a reset (SO_LINGER 0): no FIN, an RST.
    let c = Raw::connect(m.l7());
    let mut s = c.s;
    std::io::Write::write_all(&mut s, &head("/reset")).unwrap();
    std::io::Write::write_all(&mut s, &[b'b'; 100]).unwrap();
    // The head and the first bytes are on their way upstream before the reset.
    std::thread::sleep(Duration::from_millis(300));
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    m.log_for("/reset").expect(499, &["DC"]);
    // Broken chunk framing after a good chunk: malformed, 400.
    let mut c = Raw::connect(m.l7());
    c.send(b"POST /bad-framing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n");
    let _ = c.response();
    m.log_for("/bad-framing").expect(400, &["DPE"]);

    let (code, body) = m.admin_get("/api/v1/stats");
    assert_eq!(code, 200);
    let j: Value = serde_json::from_str(&body).expect("stats JSON");
    let l = &j["listener"]["listener=l7"];
    assert_eq!(l["downstream_response_499_total"], 2, "{body}");
    assert_eq!(l["downstream_response_400_total"], 1, "{body}");
    assert!(l["downstream_response_502_total"].is_null(), "{body}");
}

/// The HTTP/1 upstream client's reuse rules, against raw upstreams: a pooled connection the
/// upstream closes as a request arrives costs an idempotent request nothing (it goes once more
/// on a fresh connection) and a POST a 502 (never sent twice); bytes after a response mean
/// the connection is not reused; an answer that comes before the request body has all gone
/// up is passed down; a response framed both ways is a protocol error.
#[test]
fn upstream_connections_are_reused_only_when_it_is_safe() {
    use std::io::Write;
    use std::sync::Mutex;
    // Answers the first request on each connection and closes on reading the second.
    let heads = Arc::new(Mutex::new(Vec::<String>::new()));
    let conns = Arc::new(AtomicUsize::new(0));
    let (h, c) = (heads.clone(), conns.clone());
    let closing = raw_upstream(move |mut s| {
        c.fetch_add(1, Ordering::SeqCst);
        let mut n = 0;
        while let Some(head) = read_head(&mut s) {
            h.lock()
                .unwrap()
                .push(head.lines().next().unwrap_or("").to_owned());
            if n > 0 {
                return; // FIN instead of an answer
            }
            n += 1;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    // Every answer has stray bytes after its body.
    let extra_conns = Arc::new(AtomicUsize::new(0));
    let c = extra_conns.clone();
    let extra = raw_upstream(move |mut s| {
        c.fetch_add(1, Ordering::SeqCst);
        while read_head(&mut s).is_some() {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
            );
        }
    });
    // Refuses an upload as soon as its head arrives.
    let early = raw_upstream(|mut s| {
        if read_head(&mut s).is_some() {
            let _ = s.write_all(
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbig!",
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let ambiguous = raw_upstream(|mut s| {
        if read_head(&mut s).is_some() {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
            );
        }
    });
    let routes = json!([
        {"match": {"prefix": "/closing"}, "route": {"cluster_name": "closing"}},
        {"match": {"prefix": "/extra"}, "route": {"cluster_name": "extra"}},
        {"match": {"prefix": "/early"}, "route": {"cluster_name": "early"}},
        {"match": {"prefix": "/ambiguous"}, "route": {"cluster_name": "ambiguous"}},
    ]);
    let m = Mosn::start(&config(
        vec![listener("l7", "Http1", "r")],
        vec![router("r", routes)],
        vec![
            cluster("closing", &[closing]),
            cluster("extra", &[extra]),
            cluster("early", &[early]),
            cluster("ambiguous", &[ambiguous]),
        ],
    ));

    // One downstream connection throughout, so that every request lands on the same worker
    // and its pool.
    let mut d = Raw::connect(m.l7());
    let mut ask = |method: &str, path: &str| {
        d.send(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n").as_bytes(),
        );
        let r = d
            .response()
            .unwrap_or_else(|| panic!("no answer to {path}"));
        (r.status, r.text())
    };
    assert_eq!(ask("GET", "/closing/1"), (200, "ok".into()));
    // Reuses the pooled connection, which the upstream closes on reading this request: sent
    // once more on a new connection, answered there.
    assert_eq!(ask("GET", "/closing/2"), (200, "ok".into()));
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    // A POST on the (now pooled) second connection meets the same close: not repeated.
    assert_eq!(ask("POST", "/closing/3").0, 502);
    m.log_for("/closing/3").expect(502, &["UC"]);
    let seen = heads.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "GET /closing/1 HTTP/1.1",
            "GET /closing/2 HTTP/1.1",
            "GET /closing/2 HTTP/1.1",
            "POST /closing/3 HTTP/1.1"
        ]
    );

    for i in 0..3 {
        assert_eq!(ask("GET", &format!("/extra/{i}")), (200, "ok".into()));
    }
    assert_eq!(
        extra_conns.load(Ordering::SeqCst),
        3,
        "a connection with stray bytes was reused"
    );

    // The upload's head goes up, the upstream answers 413 at once: the client gets it
    // although most of its body was never sent.
    let mut c = Raw::connect(m.l7());
    c.send(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    c.send(&[b'x'; 1000]);
    let r = c
        .response()
        .expect("an answer before the body was complete");
    assert_eq!((r.status, r.text().as_str()), (413, "big!"));

    let r = get(m.l7(), "/ambiguous", &[]);
    assert_eq!(r.status, 502);
    m.log_for("/ambiguous").expect(502, &["UPE"]);
}
