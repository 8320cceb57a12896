//! The admin server on 127.0.0.1:0, spoken to over raw TCP with hand-written HTTP/1.1.
//!
//! The `AdminHandler` here is a fake: it is the seam the server crate fills in.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mosn_admin::{Admin, AdminHandler, ServerState};
use mosn_metrics::Registry;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

struct FakeProcess {
    level: Mutex<String>,
}

impl AdminHandler for FakeProcess {
    fn version(&self) -> Value {
        json!({"version": "0.1.0", "commit": "abc123"})
    }
    fn config_dump(&self) -> Value {
        json!({"servers": [{"default_log_level": "INFO", "listeners": []}]})
    }
    fn state(&self) -> ServerState {
        ServerState::Running
    }
    fn log_level(&self) -> String {
        self.level.lock().unwrap().clone()
    }
    fn set_log_level(&self, level: &str) -> Result<(), String> {
        *self.level.lock().unwrap() = level.to_string();
        Ok(())
    }
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
    registry: Registry,
}

async fn start() -> Server {
    let registry = Registry::new();
    let handler = Arc::new(FakeProcess {
        level: Mutex::new("INFO".into()),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let admin = Admin::new(registry.clone(), handler);
    let task = tokio::spawn(admin.serve(listener, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
        registry,
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

fn request_bytes(method: &str, target: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\n",
        body.len()
    );
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads one response (Content-Length framed; HEAD responses carry no body).
async fn read_reply(stream: &mut TcpStream, head_request: bool) -> Reply {
    let mut buf = Vec::new();
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response timed out")
            .unwrap();
        assert!(n > 0, "connection closed before headers: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..header_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = if head_request {
        0
    } else {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .expect("response without content-length")
    };
    let mut body = buf[header_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("body timed out")
            .unwrap();
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), len, "more bytes than content-length");
    Reply {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// One request on a fresh connection.
async fn call(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&request_bytes(method, target, body, true))
        .await
        .unwrap();
    read_reply(&mut s, method == "HEAD").await
}

async fn get(addr: SocketAddr, target: &str) -> Reply {
    call(addr, "GET", target, b"").await
}

/// Reads until EOF; returns what arrived. Fails if the server keeps the connection open.
async fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("server did not close the connection")
        .unwrap_or_default();
    out
}

#[tokio::test]
async fn every_endpoint_answers_with_status_type_and_body() {
    let srv = start().await;
    let a = srv.addr;

    let r = get(a, "/api/v1/version").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"version": "0.1.0", "commit": "abc123"}));

    let r = get(a, "/api/v1/config_dump").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["servers"][0]["default_log_level"], "INFO");

    let listener = srv.registry.scope("listener", &[("listener", "ingress")]);
    listener.counter("downstream_connection_total").add(3);
    srv.registry
        .scope("cluster", &[("cluster", "backend")])
        .gauge("upstream_connection_active")
        .set(4);

    let r = get(a, "/api/v1/stats").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(
        v["listener"]["listener=ingress"]["downstream_connection_total"],
        3
    );
    assert_eq!(
        v["cluster"]["cluster=backend"]["upstream_connection_active"],
        4
    );

    let r = get(a, "/api/v1/stats?type=cluster").await;
    assert_eq!(r.status, 200);
    assert!(r.json().get("listener").is_none());
    let r = get(a, "/api/v1/stats?key=listener.ingress").await;
    assert_eq!(r.status, 200);
    assert!(r.json()["listener"]["listener=ingress"].is_object());
    let r = get(a, "/api/v1/stats?key=listener.egress").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no metrics key: listener.egress");

    for path in ["/stats/prometheus", "/api/v1/stats/prometheus", "/metrics"] {
        let r = get(a, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4"),
            "{path}"
        );
        assert!(
            r.body
                .contains("# TYPE mosn_listener_downstream_connection_total counter\n"),
            "{}",
            r.body
        );
        assert!(r
            .body
            .contains("mosn_listener_downstream_connection_total{listener=\"ingress\"} 3\n"));
        assert!(r
            .body
            .contains("mosn_cluster_upstream_connection_active{cluster=\"backend\"} 4\n"));
    }
    // The scrape sees live values.
    listener.counter("downstream_connection_total").inc();
    assert!(get(a, "/stats/prometheus")
        .await
        .body
        .contains("mosn_listener_downstream_connection_total{listener=\"ingress\"} 4\n"));

    let r = get(a, "/api/v1/states").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body, format!("pid={}&state=6\n", std::process::id()));
    let r = get(a, "/api/v1/states?format=json").await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"pid": std::process::id(), "state": 6, "name": "running"})
    );

    let r = get(a, "/api/v1/get_loglevel").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"log_level": "INFO"}));

    let r = get(a, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let listed: Vec<String> = r.json()["apis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    for path in [
        "/api/v1/version",
        "/api/v1/config_dump",
        "/api/v1/stats",
        "/stats/prometheus",
        "/api/v1/states",
        "/api/v1/get_loglevel",
        "/api/v1/update_loglevel",
    ] {
        assert!(listed.iter().any(|p| p == path), "{path} not in {listed:?}");
    }

    // HEAD: the GET headers, no body.
    let r = call(a, "HEAD", "/api/v1/version", b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn update_loglevel_changes_get_loglevel_and_rejects_bad_input() {
    let srv = start().await;
    let a = srv.addr;
    let level = |r: Reply| r.json()["log_level"].as_str().unwrap().to_string();

    // MOSN's body shape.
    let r = call(
        a,
        "POST",
        "/api/v1/update_loglevel",
        br#"{"log_path": "/home/admin/logs/mosn/default.log", "log_level": "DEBUG"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(level(r), "DEBUG");
    assert_eq!(level(get(a, "/api/v1/get_loglevel").await), "DEBUG");

    // Query form, any case.
    let r = call(a, "POST", "/api/v1/update_loglevel?level=warn", b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(level(get(a, "/api/v1/get_loglevel").await), "WARN");

    // Rejected: the level stays WARN, each with a JSON reason.
    for (target, body, reason) in [
        (
            "/api/v1/update_loglevel",
            &br#"{"log_level": "VERBOSE"}"#[..],
            "invalid log level",
        ),
        (
            "/api/v1/update_loglevel?level=loud",
            b"",
            "invalid log level",
        ),
        (
            "/api/v1/update_loglevel",
            b"{\"log_level\": ",
            "request body is not",
        ),
        (
            "/api/v1/update_loglevel",
            b"\xff\xfe",
            "request body is not",
        ),
        ("/api/v1/update_loglevel", b"", "no level given"),
        (
            "/api/v1/update_loglevel?lvl=INFO",
            b"",
            "unsupported query parameter",
        ),
    ] {
        let r = call(a, "POST", target, body).await;
        assert_eq!(r.status, 400, "{target}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let got = r.json()["error"].as_str().unwrap().to_string();
        assert!(got.contains(reason), "{target}: {got}");
    }
    assert_eq!(level(get(a, "/api/v1/get_loglevel").await), "WARN");

    // Wrong methods.
    let r = get(a, "/api/v1/update_loglevel?level=INFO").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = call(a, "POST", "/api/v1/get_loglevel", b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(level(get(a, "/api/v1/get_loglevel").await), "WARN");
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let srv = start().await;
    let body = vec![b' '; mosn_admin::MAX_REQUEST_BODY + 1];
    let r = call(srv.addr, "POST", "/api/v1/update_loglevel", &body).await;
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].as_str().unwrap().contains("larger than"));
}

#[tokio::test]
async fn unknown_path_is_404_json() {
    let srv = start().await;
    for target in [
        "/nope",
        "/api/v1/stats/",
        "/api/v2/version",
        "/api/v1/version/x",
    ] {
        let r = get(srv.addr, target).await;
        assert_eq!(r.status, 404, "{target}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no such endpoint"));
    }
    // Other request-target forms: absolute-form routes by its path; `*` is no endpoint.
    let r = get(srv.addr, "http://admin.example/api/v1/version").await;
    assert_eq!(r.status, 200);
    let r = call(srv.addr, "OPTIONS", "*", b"").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let srv = start().await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    for _ in 0..3 {
        s.write_all(&request_bytes("GET", "/api/v1/version", b"", false))
            .await
            .unwrap();
        let r = read_reply(&mut s, false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["version"], "0.1.0");
    }
}

#[tokio::test]
async fn malformed_requests_close_only_their_connection() {
    let srv = start().await;
    let huge_header = format!(
        "GET /api/v1/version HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let garbage: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\xff\xfe garbage \r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET /api/v1/version HTTP/9.9\r\n\r\n".to_vec(),
        b"POST /api/v1/update_loglevel HTTP/1.1\r\nContent-Length: zz\r\n\r\n".to_vec(),
        b"POST /api/v1/update_loglevel HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"
            .to_vec(),
        huge_header.into_bytes(),
    ];
    // A healthy connection opened before the garbage must survive it.
    let mut healthy = TcpStream::connect(srv.addr).await.unwrap();
    for bytes in garbage {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        // The server may close while a long write is still going: ignore write errors.
        let _ = s.write_all(&bytes).await;
        let answer = read_to_eof(&mut s).await;
        if !answer.is_empty() {
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 4"), "{text}");
        }
        let r = get(srv.addr, "/api/v1/version").await;
        assert_eq!(r.status, 200);
    }
    healthy
        .write_all(&request_bytes("GET", "/api/v1/states", b"", false))
        .await
        .unwrap();
    assert_eq!(read_reply(&mut healthy, false).await.status, 200);
}

#[tokio::test]
async fn shutdown_future_stops_the_server() {
    let mut srv = start().await;
    // An idle keep-alive connection, which shutdown must close.
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    idle.write_all(&request_bytes("GET", "/api/v1/version", b"", false))
        .await
        .unwrap();
    assert_eq!(read_reply(&mut idle, false).await.status, 200);

    srv.stop.take().unwrap().send(()).unwrap();
    let served = timeout(WAIT, &mut srv.task)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");

    assert!(read_to_eof(&mut idle).await.is_empty());
    assert!(
        TcpStream::connect(srv.addr).await.is_err(),
        "listener still accepting after shutdown"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_when_a_client_is_stuck_mid_request() {
    let mut srv = start().await;
    // Headers promise 100 body bytes; only a few ever come.
    let mut stuck = TcpStream::connect(srv.addr).await.unwrap();
    stuck
        .write_all(b"POST /api/v1/update_loglevel HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{\"log")
        .await
        .unwrap();
    // Let the server take the request in (virtual time: auto-advances when idle).
    tokio::time::sleep(Duration::from_millis(50)).await;

    let asked = tokio::time::Instant::now();
    srv.stop.take().unwrap().send(()).unwrap();
    let served = timeout(Duration::from_secs(60), &mut srv.task)
        .await
        .expect("serve did not return")
        .unwrap();
    assert!(served.is_ok());
    let waited = asked.elapsed();
    assert!(
        waited >= mosn_admin::DRAIN_TIMEOUT && waited < mosn_admin::DRAIN_TIMEOUT * 2,
        "serve returned after {waited:?}"
    );
    // The stuck connection was dropped, not left open.
    let mut rest = Vec::new();
    let _ = stuck.read_to_end(&mut rest).await;
}
