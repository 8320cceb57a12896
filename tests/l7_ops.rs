//! Operating the L7 proxy through the real `mosn` binary: h2load (HTTP/1.1 pipelined and
//! h2c multiplexed, with conversion both ways) with every request succeeding, request
//! metrics in Prometheus and JSON form, and a graceful drain with an HTTP/2 stream open.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::http::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// Runs h2load and returns (succeeded, total) from its summary.
fn h2load(args: &[&str]) -> (u64, u64, String) {
    let bin = require_tool("h2load", "nghttp2-client");
    let out = Command::new(bin).args(args).output().expect("run h2load");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "h2load {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, ..."
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no summary in h2load output:\n{text}"));
    let num = |what: &str| -> u64 {
        line.split(',')
            .find(|p| p.trim().ends_with(what))
            .and_then(|p| p.split_whitespace().rev().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what:?} in {line:?}"))
    };
    (num("succeeded"), num("total"), text)
}

#[test]
fn h2load_through_mosn_all_requests_succeed() {
    let up = Upstream::echo("load");
    let routes = json!([
        {"match": {"prefix": "/to-h2"}, "route": {"cluster_name": "up", "upstream_protocol": "Http2"}},
        {"match": {"prefix": "/to-h1"}, "route": {"cluster_name": "up", "upstream_protocol": "Http1"}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}},
    ]);
    let m = Mosn::start(&config(
        vec![listener("l7", "Auto", "r")],
        vec![router("r", routes)],
        vec![cluster("up", &[up.addr])],
    ));
    let base = format!("http://{}", m.l7());
    for (h1, path) in [
        (true, "/same"),
        (false, "/same"),
        (true, "/to-h2"),
        (false, "/to-h1"),
    ] {
        let url = format!("{base}{path}");
        let mut args = vec!["-n", "2000", "-c", "4", "-m", "20", "-T", "30", "-N", "30"];
        if h1 {
            args.push("--h1");
        }
        args.push(&url);
        let (ok, total, text) = h2load(&args);
        assert_eq!(total, 2000);
        assert_eq!(ok, 2000, "h1={h1} {path}:\n{text}");
        assert!(text.contains("2000 2xx"), "h1={h1} {path}:\n{text}");
    }
    assert_eq!(up.count(), 8000);
    let versions = up.seen();
    let h2_up = versions
        .iter()
        .filter(|s| s.version == hyper::Version::HTTP_2)
        .count();
    assert_eq!(
        h2_up, 4000,
        "h2c /same and h1 /to-h2 went upstream over HTTP/2"
    );
    // The HTTP/2 upstream streams were multiplexed over few connections.
    assert!(
        up.connections() < 100,
        "{} upstream connections",
        up.connections()
    );
}

#[test]
fn request_metrics_in_prometheus_and_json() {
    let up = Upstream::with(
        "m",
        Arc::new(|s: &Seen, _| {
            if s.path() == "/missing" {
                Reply::status(404)
            } else {
                Reply::echo("m", s)
            }
        }),
    );
    let m = Mosn::start(&simple_config("Auto", &[up.addr], json!({})));
    for _ in 0..5 {
        assert_eq!(get(m.l7(), "/ok", &[]).status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(m.l7(), "/missing", &[]).status, 404);
    }
    let r = curl(&["--http2-prior-knowledge", &format!("http://{}/ok", m.l7())]);
    assert_eq!(r.status, 200);
    m.logs_for("/ok", 6);
    m.logs_for("/missing", 3);

    let (code, text) = m.admin_get("/stats/prometheus");
    assert_eq!(code, 200);
    let metric = |name: &str| -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains("listener=\"l7\""))
            .collect()
    };
    let value = |line: &str| -> f64 { line.rsplit(' ').next().unwrap().parse().unwrap() };
    let buckets = metric("mosn_listener_downstream_request_time_seconds_bucket");
    assert!(buckets.len() > 3, "histogram buckets missing:\n{text}");
    let inf = buckets
        .iter()
        .find(|l| l.contains("le=\"+Inf\""))
        .expect("+Inf bucket");
    assert_eq!(value(inf), 9.0);
    let count = metric("mosn_listener_downstream_request_time_seconds_count");
    assert_eq!(count.len(), 1, "{text}");
    assert_eq!(value(count[0]), 9.0);
    let sum = metric("mosn_listener_downstream_request_time_seconds_sum");
    assert_eq!(sum.len(), 1);
    assert!(value(sum[0]) > 0.0);
    let ok = metric("mosn_listener_downstream_response_200_total");
    assert_eq!(ok.len(), 1, "{text}");
    assert_eq!(value(ok[0]), 6.0);
    let nf = metric("mosn_listener_downstream_response_404_total");
    assert_eq!(value(nf[0]), 3.0);
    let total = metric("mosn_listener_downstream_request_total");
    assert_eq!(value(total[0]), 9.0);
    // The cluster side has its own.
    assert!(
        text.lines().any(|l| l
            .starts_with("mosn_cluster_upstream_request_time_seconds_count{cluster=\"up\"}")
            && l.ends_with(" 9")),
        "{text}"
    );

    let (code, body) = m.admin_get("/api/v1/stats");
    assert_eq!(code, 200);
    let j: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
    let l = &j["listener"]["listener=l7"];
    assert_eq!(l["downstream_request_total"], 9, "{body}");
    assert_eq!(l["downstream_response_200_total"], 6);
    assert_eq!(l["downstream_response_404_total"], 3);
    assert_eq!(l["downstream_request_time_seconds"]["count"], 9, "{body}");
}

// === a raw HTTP/2 client, to see GOAWAY frames themselves ===

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET <path>` on `authority`: indexed :method GET and :scheme http, literal
/// :path and :authority (indexed names, no Huffman).
fn get_headers(path: &str, authority: &str) -> Vec<u8> {
    let mut h = vec![0x82, 0x86];
    for (index, value) in [(0x04u8, path), (0x01, authority)] {
        assert!(value.len() < 127);
        h.push(index);
        h.push(value.len() as u8);
        h.extend_from_slice(value.as_bytes());
    }
    h
}

struct RawH2(std::net::TcpStream);

impl RawH2 {
    fn connect(addr: std::net::SocketAddr) -> RawH2 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(PREFACE).unwrap();
        s.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
        RawH2(s)
    }

    fn send(&mut self, f: &[u8]) {
        use std::io::Write;
        self.0.write_all(f).unwrap();
    }

    /// The next frame (kind, flags, stream, payload), answering SETTINGS and PING on the
    /// way; `None` at EOF.
    fn next(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        use std::io::Read;
        let mut head = [0u8; 9];
        self.0.read_exact(&mut head).ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        self.0.read_exact(&mut payload).ok()?;
        if kind == SETTINGS && flags & ACK == 0 {
            self.send(&frame(SETTINGS, ACK, 0, &[]));
        }
        if kind == PING && flags & ACK == 0 {
            self.send(&frame(PING, ACK, 0, &payload));
        }
        Some((kind, flags, stream, payload))
    }
}

#[test]
fn sigterm_finishes_open_h2_streams_refuses_new_ones_and_exits_0() {
    let up = Upstream::with(
        "slow",
        Arc::new(|s: &Seen, _| {
            let r = Reply::echo("slow", s);
            if s.path() == "/slow" {
                r.after(Duration::from_secs(4))
            } else {
                r
            }
        }),
    );
    let mut m = Mosn::start(&simple_config("Http2", &[up.addr], json!({})));
    let addr = m.l7();
    let mut c = RawH2::connect(addr);
    c.send(&frame(
        HEADERS,
        0x4 | END_STREAM,
        1,
        &get_headers("/slow", "drain.test"),
    ));
    up.wait_requests(1, Duration::from_secs(10));
    m.proc.signal(Signal::SIGTERM);
    m.proc.wait_for("draining", Duration::from_secs(5));

    // GOAWAY arrives while stream 1 is still open; the final one names stream 1 as the
    // last processed. A stream opened after it is never served.
    let mut stream1_done = false;
    let mut goaways = Vec::new();
    let mut sent_after = false;
    let mut stream3_answered = false;
    while let Some((kind, flags, stream, payload)) = c.next() {
        match kind {
            GOAWAY => {
                let last = u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                assert_eq!(code, 0, "GOAWAY with NO_ERROR");
                assert!(
                    !stream1_done,
                    "GOAWAY came only after the open stream had finished"
                );
                goaways.push(last);
                if last == 1 && !sent_after {
                    let h = get_headers("/after", "drain.test");
                    c.send(&frame(HEADERS, 0x4 | END_STREAM, 3, &h));
                    sent_after = true;
                }
            }
            HEADERS | DATA if stream == 3 => stream3_answered = true,
            HEADERS | DATA if stream == 1 && flags & END_STREAM != 0 => stream1_done = true,
            RST_STREAM if stream == 1 => panic!("the open stream was reset"),
            _ => {}
        }
    }
    assert!(stream1_done, "the open stream did not complete");
    assert!(!goaways.is_empty(), "no GOAWAY");
    assert_eq!(
        *goaways.last().unwrap(),
        1,
        "final GOAWAY last-stream-id: {goaways:?}"
    );
    assert!(
        sent_after,
        "no final GOAWAY to open a stream after: {goaways:?}"
    );
    assert!(!stream3_answered, "a stream after GOAWAY was served");
    assert!(up.seen().iter().all(|s| s.path() != "/after"));
    assert_eq!(up.last().path(), "/slow");

    // No new connections either, and the process exits 0 once drained.
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting"
    );
    assert_eq!(m.proc.wait_exit(Duration::from_secs(15)), 0);
}

/// An HTTP/1 upstream on 127.0.0.1:0 answering every request with `body` after `delay`,
/// counting in `ended` the connections that end.
fn answering(
    body: &'static [u8],
    delay: Duration,
    ended: Arc<std::sync::atomic::AtomicUsize>,
) -> std::net::SocketAddr {
    use std::io::Write;
    raw_upstream(move |mut s| {
        while read_head(&mut s).is_some() {
            std::thread::sleep(delay);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
                break;
            }
        }
        ended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
}

/// One HTTP/1 listener routing everything to cluster `up` with the one host `host`.
fn one_host(host: std::net::SocketAddr) -> serde_json::Value {
    config(
        vec![listener("l7", "Http1", "r")],
        vec![router(
            "r",
            json!([{"match": {"prefix": "/"}, "route": {"cluster_name": "up"}}]),
        )],
        vec![cluster("up", &[host])],
    )
}

/// Waits up to 5 s for `n` to become non-zero and returns it.
fn settle(n: &std::sync::atomic::AtomicUsize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while n.load(std::sync::atomic::Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    n.load(std::sync::atomic::Ordering::SeqCst)
}

/// A reload that moves a cluster to another host closes the idle HTTP/1 connection pooled for
/// the old one (before, it stayed in the pool until the upstream closed it); requests go to
/// the new host.
#[test]
fn a_host_removed_by_a_reload_loses_its_idle_connection() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ended = Arc::new(AtomicUsize::new(0));
    let old = answering(b"old", Duration::ZERO, ended.clone());
    let new = answering(b"new", Duration::ZERO, Arc::default());
    let mut mosn = Mosn::start(&one_host(old));
    let r = get(mosn.l7(), "/", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"old"[..]));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ended.load(Ordering::SeqCst), 0, "the connection is pooled");

    mosn.reload(&one_host(new));
    let r = get(mosn.l7(), "/", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"new"[..]));
    assert_eq!(
        settle(&ended),
        1,
        "the removed host's idle connection was closed"
    );
}

/// An HTTP/1 connection busy with a request while a reload removes its host is not pooled
/// again when the response is done: it closes.
#[test]
fn a_connection_busy_during_the_reload_is_not_pooled_again() {
    let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Answers after 800 ms, so the reload lands while the request is in flight.
    let old = answering(b"old", Duration::from_millis(800), ended.clone());
    let new = answering(b"new", Duration::ZERO, Arc::default());
    let mut mosn = Mosn::start(&one_host(old));
    let addr = mosn.l7();
    let busy = std::thread::spawn(move || get(addr, "/", &[]));
    std::thread::sleep(Duration::from_millis(300));
    mosn.reload(&one_host(new));
    let r = busy.join().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"old"[..]));
    assert_eq!(
        settle(&ended),
        1,
        "the connection that was busy during the reload closed after its response"
    );
    let r = get(mosn.l7(), "/", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"new"[..]));
}
