//! L7 helpers: in-process hyper upstreams that record exactly what they received, mosn configs
//! in the current shape (`servers[].routers` + the `proxy` filter), the real binary started
//! with its listener and admin addresses, access-log parsing, and clients (curl, a raw TCP
//! HTTP/1 client, a hyper HTTP/2 client). Third-party tools are required: a missing one fails
//! the test with the Debian package that provides it (`ci/setup.sh` installs them).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

use super::MosnProcess;

// === runtime ===

/// One multi-threaded runtime per test binary for upstreams and async clients.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

// === bodies ===

/// A body made of fixed frames (data and trailers).
pub struct Frames(VecDeque<Frame<Bytes>>);

impl Frames {
    /// `data` followed by `trailers` (when given).
    pub fn new(data: impl Into<Bytes>, trailers: Option<HeaderMap>) -> Frames {
        let data = data.into();
        let mut f = VecDeque::new();
        if !data.is_empty() {
            f.push_back(Frame::data(data));
        }
        if let Some(t) = trailers {
            f.push_back(Frame::trailers(t));
        }
        Frames(f)
    }
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        // Exact only without trailers, so a body with trailers goes out chunked on HTTP/1.
        if self.0.iter().any(|f| f.is_trailers()) {
            return hyper::body::SizeHint::default();
        }
        let n: usize = self
            .0
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len())
            .sum();
        hyper::body::SizeHint::with_exact(n as u64)
    }
}

/// Header map from pairs.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

// === upstreams ===

/// One request as an upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// The request target as decoded (origin-form for HTTP/1, absolute for HTTP/2).
    pub uri: hyper::Uri,
    /// HTTP version on the upstream connection.
    pub version: Version,
    /// Header fields.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
    /// Trailer fields, if any were received.
    pub trailers: Option<HeaderMap>,
    /// Which accepted connection (0-based) carried it.
    pub conn: usize,
}

impl Seen {
    /// First value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of `name`.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// `Host`, else the URI authority (`:authority` on HTTP/2).
    pub fn host(&self) -> Option<String> {
        self.header("host")
            .map(str::to_owned)
            .or_else(|| self.uri.authority().map(|a| a.to_string()))
    }

    /// Path and query.
    pub fn path(&self) -> String {
        self.uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default()
    }
}

/// What an upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Header fields.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
    /// Trailer fields (sent after the body).
    pub trailers: Option<HeaderMap>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            trailers: None,
            delay: Duration::ZERO,
        }
    }

    /// 200 with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply {
            body: body.into(),
            ..Reply::status(200)
        }
    }

    /// Adds a header.
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    /// Answers after `d`.
    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    /// The default echo: 200, the request body back, its trailers back (declared in
    /// `Trailer` so HTTP/1 carries them), and what was seen in `x-echo-*` headers.
    pub fn echo(name: &str, s: &Seen) -> Reply {
        let mut r = Reply::ok(s.body.clone())
            .header("x-upstream", name)
            .header("x-echo-method", &s.method)
            .header("x-echo-path", &s.path())
            .header("x-echo-host", &s.host().unwrap_or_default())
            .header("x-echo-version", &format!("{:?}", s.version));
        if let Some(t) = &s.trailers {
            let names: Vec<&str> = t.keys().map(|k| k.as_str()).collect();
            r = r.header("trailer", &names.join(", "));
            r.trailers = Some(t.clone());
        }
        r
    }
}

/// Decides the answer to request number `n` (0-based, across connections).
pub type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// An in-process HTTP/1.1 + h2c upstream on 127.0.0.1 (protocol detected per connection).
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Its name (`x-upstream` of the echo reply).
    pub name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    conns: Arc<AtomicUsize>,
    broken: Arc<AtomicUsize>,
}

impl Upstream {
    /// An echo upstream ([`Reply::echo`]).
    pub fn echo(name: &str) -> Upstream {
        let n = name.to_string();
        Upstream::with(name, Arc::new(move |s, _| Reply::echo(&n, s)))
    }

    /// An upstream answering with `handler`.
    pub fn with(name: &str, handler: Handler) -> Upstream {
        Upstream::with_h2_limit(name, handler, None)
    }

    /// [`Upstream::with`], advertising `SETTINGS_MAX_CONCURRENT_STREAMS = limit` on HTTP/2.
    pub fn with_h2_limit(name: &str, handler: Handler, limit: Option<u32>) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let listener = rt().block_on(tokio::net::TcpListener::bind("127.0.0.1:0"));
        let listener = listener.unwrap();
        let addr = listener.local_addr().unwrap();
        let broken = Arc::new(AtomicUsize::new(0));
        let (s2, c2, b2) = (seen.clone(), conns.clone(), broken.clone());
        rt().spawn(async move {
            let served = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let conn = c2.fetch_add(1, Ordering::SeqCst);
                let (seen, handler, served) = (s2.clone(), handler.clone(), served.clone());
                let broken = b2.clone();
                tokio::spawn(serve_upstream_conn(
                    stream, conn, seen, handler, served, broken, limit,
                ));
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            seen,
            conns,
            broken,
        }
    }

    /// [`Upstream::with`] listening on `bind` instead of 127.0.0.1:0 (`0.0.0.0:0` inside a
    /// network namespace, say: the listening socket belongs to the namespace of the thread
    /// that calls this), with a listen backlog of 4096 (a burst of a thousand connections
    /// overflows the usual 1024 once SYNs are retransmitted). [`Upstream::addr`] is the
    /// address it bound.
    pub fn with_at(bind: SocketAddr, name: &str, handler: Handler) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let broken = Arc::new(AtomicUsize::new(0));
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        socket.set_reuse_address(true).unwrap();
        socket
            .bind(&bind.into())
            .unwrap_or_else(|e| panic!("upstream {name} cannot bind {bind}: {e}"));
        socket.listen(4096).unwrap();
        socket.set_nonblocking(true).unwrap();
        let listener = {
            let _rt = rt().enter();
            tokio::net::TcpListener::from_std(socket.into()).unwrap()
        };
        let addr = listener.local_addr().unwrap();
        let (s2, c2, b2) = (seen.clone(), conns.clone(), broken.clone());
        rt().spawn(async move {
            let served = Arc::new(AtomicUsize::new(0));
            while let Ok((stream, _)) = listener.accept().await {
                let conn = c2.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_upstream_conn(
                    stream,
                    conn,
                    s2.clone(),
                    handler.clone(),
                    served.clone(),
                    b2.clone(),
                    None,
                ));
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            seen,
            conns,
            broken,
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Requests whose body broke off before its end (not in [`Upstream::seen`]).
    pub fn broken(&self) -> usize {
        self.broken.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.seen();
            if s.len() >= n {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "upstream {} got {} requests, expected {n}",
                self.name,
                s.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received a request")
    }
}

async fn serve_upstream_conn(
    stream: tokio::net::TcpStream,
    conn: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Handler,
    served: Arc<AtomicUsize>,
    broken: Arc<AtomicUsize>,
    h2_limit: Option<u32>,
) {
    // h2c prior knowledge starts with "PRI "; anything else is HTTP/1.
    let mut first = [0u8; 4];
    let h2 = loop {
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(n) if n < 4 && first[..n] == b"PRI "[..n] => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            Ok(_) => break &first == b"PRI ",
        }
    };
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (seen, handler, served) = (seen.clone(), handler.clone(), served.clone());
        let broken = broken.clone();
        async move {
            let (parts, body) = req.into_parts();
            // A request whose body broke off never counts as received.
            let Ok(collected) = body.collect().await else {
                broken.fetch_add(1, Ordering::SeqCst);
                let mut resp = Response::new(Frames::new(Bytes::new(), None));
                *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
                return Ok(resp);
            };
            let (body, trailers) = collected.to_bytes_and_trailers();
            let s = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.clone(),
                version: parts.version,
                headers: parts.headers.clone(),
                body,
                trailers,
                conn,
            };
            let n = served.fetch_add(1, Ordering::SeqCst);
            seen.lock().unwrap().push(s.clone());
            let reply = handler(&s, n);
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            // HEAD: the length of the body a GET would get, and no body (hyper's HTTP/2
            // server would send it).
            let head = s.method == "HEAD";
            let len = reply.body.len();
            let body = if head { Bytes::new() } else { reply.body };
            let mut resp = Response::new(Frames::new(body, reply.trailers));
            *resp.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
            if head {
                resp.headers_mut()
                    .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            for (k, v) in &reply.headers {
                resp.headers_mut().append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let io = TokioIo::new(stream);
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        if let Some(n) = h2_limit {
            b.max_concurrent_streams(n);
        }
        let _ = b.serve_connection(io, svc).await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    }
}

/// `Collected` into (bytes, trailers).
trait IntoParts {
    fn to_bytes_and_trailers(self) -> (Bytes, Option<HeaderMap>);
}

impl IntoParts for http_body_util::Collected<Bytes> {
    fn to_bytes_and_trailers(self) -> (Bytes, Option<HeaderMap>) {
        let t = self.trailers().cloned();
        (self.to_bytes(), t)
    }
}

/// A raw TCP upstream: every accepted connection is handed to `f` on its own thread.
pub fn raw_upstream<F>(f: F) -> SocketAddr
where
    F: Fn(std::net::TcpStream) + Send + Sync + 'static,
{
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let f = Arc::new(f);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let f = f.clone();
            std::thread::spawn(move || f(s));
        }
    });
    addr
}

/// Reads one HTTP/1 request head (up to the blank line) from a raw connection.
pub fn read_head(s: &mut std::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// === configs ===

/// Placeholder for the access log path in a config; [`Mosn::start`] fills it in.
pub const ACCESS_LOG: &str = "@ACCESS_LOG@";

/// The access log format the tests parse ([`LogLine`]).
pub const LOG_FORMAT: &str = "code=%response_code% flags=%response_flag% \
     cluster=%upstream_cluster% route=%route_name% method=%x-mosn-method% \
     path=%x-mosn-path% proto=%protocol% host=%upstream_host% \
     svc=%x-mosn-rpc-service% rpc_method=%x-mosn-rpc-method%";

/// A SIMPLE round-robin cluster.
pub fn cluster(name: &str, hosts: &[SocketAddr]) -> Value {
    let hosts: Vec<Value> = hosts
        .iter()
        .map(|h| json!({"address": h.to_string()}))
        .collect();
    json!({
        "name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
        "connect_timeout": "2s", "hosts": hosts
    })
}

/// A `proxy` listener on 127.0.0.1:0 with an access log at [`ACCESS_LOG`].
pub fn listener(name: &str, downstream: &str, router: &str) -> Value {
    json!({
        "name": name, "address": "127.0.0.1:0", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": downstream, "router_config_name": router
        }}]}],
        "access_logs": [{"log_path": ACCESS_LOG, "log_format": LOG_FORMAT}]
    })
}

/// A router with one virtual host `*`.
pub fn router(name: &str, routes: Value) -> Value {
    json!({
        "router_config_name": name,
        "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": routes}]
    })
}

/// A prefix route to `cluster`.
pub fn prefix_route(prefix: &str, cluster: &str) -> Value {
    json!({"match": {"prefix": prefix}, "route": {"cluster_name": cluster}})
}

/// A whole config: listeners, routers and clusters; admin on 127.0.0.1:0.
pub fn config(listeners: Vec<Value>, routers: Vec<Value>, clusters: Vec<Value>) -> Value {
    json!({
        "servers": [{
            "default_log_path": "stderr", "default_log_level": "INFO",
            "processor": 2, "graceful_timeout": "10s",
            "listeners": listeners, "routers": routers
        }],
        "cluster_manager": {"clusters": clusters},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    })
}

/// The usual one-listener config: listener `l7` (`downstream`) with every request routed
/// to cluster `up` (`hosts`), the route's extra keys in `route_extra`.
pub fn simple_config(downstream: &str, hosts: &[SocketAddr], route_extra: Value) -> Value {
    let mut route = json!({"cluster_name": "up"});
    if let Value::Object(extra) = route_extra {
        route.as_object_mut().unwrap().extend(extra);
    }
    config(
        vec![listener("l7", downstream, "r")],
        vec![router(
            "r",
            json!([{"match": {"prefix": "/"}, "route": route}]),
        )],
        vec![cluster("up", hosts)],
    )
}

// === the binary ===

/// A running `mosn start` with its listener and admin addresses.
pub struct Mosn {
    /// The process.
    pub proc: MosnProcess,
    /// Holds the config and the access log.
    pub dir: tempfile::TempDir,
    /// The admin API.
    pub admin: SocketAddr,
    addrs: HashMap<String, SocketAddr>,
}

impl Mosn {
    /// Starts mosn with `cfg` ([`ACCESS_LOG`] replaced) and waits for every listener.
    pub fn start(cfg: &Value) -> Mosn {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let text = serde_json::to_string_pretty(cfg)
            .unwrap()
            .replace(ACCESS_LOG, log.to_str().unwrap());
        let path = dir.path().join("mosn.json");
        std::fs::write(&path, text).unwrap();
        let mut proc = MosnProcess::start(&path);
        let mut addrs = HashMap::new();
        let names: Vec<String> = cfg["servers"][0]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect();
        for n in names {
            let a = proc.listener_addr(&n);
            addrs.insert(n, a);
        }
        let line = proc.wait_for("admin API listening", Duration::from_secs(20));
        let admin = line
            .split("addr=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("admin address in log line")
            .parse()
            .expect("admin socket address");
        Mosn {
            proc,
            dir,
            admin,
            addrs,
        }
    }

    /// Replaces the config file with `cfg` ([`ACCESS_LOG`] replaced as at start), sends
    /// SIGHUP and waits for the reload (once per process: the log line is looked for once).
    pub fn reload(&mut self, cfg: &Value) {
        let text = serde_json::to_string_pretty(cfg)
            .unwrap()
            .replace(ACCESS_LOG, self.access_log().to_str().unwrap());
        std::fs::write(self.dir.path().join("mosn.json"), text).unwrap();
        self.proc.signal(nix::sys::signal::Signal::SIGHUP);
        self.proc
            .wait_for("configuration reloaded", Duration::from_secs(10));
    }

    /// The address listener `name` is bound to.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addrs[name]
    }

    /// The address of listener `l7`.
    pub fn l7(&self) -> SocketAddr {
        self.addr("l7")
    }

    /// The access log path.
    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// Every access log line written so far.
    pub fn log_lines(&self) -> Vec<LogLine> {
        std::fs::read_to_string(self.access_log())
            .unwrap_or_default()
            .lines()
            .map(LogLine::parse)
            .collect()
    }

    /// Waits for `n` access log lines whose path is `path`.
    pub fn logs_for(&self, path: &str, n: usize) -> Vec<LogLine> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines: Vec<LogLine> = self
                .log_lines()
                .into_iter()
                .filter(|l| l.get("path") == path)
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{} access log lines for {path}, expected {n}; log:\n{}",
                lines.len(),
                std::fs::read_to_string(self.access_log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The (single, latest) access log line for `path`.
    pub fn log_for(&self, path: &str) -> LogLine {
        self.logs_for(path, 1).pop().unwrap()
    }

    /// GET on the admin API: (status code, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let (status, body) = super::http_get(self.admin, path);
        let code = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, body)
    }
}

/// One access log line in [`LOG_FORMAT`].
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The raw text.
    pub raw: String,
    fields: HashMap<String, String>,
}

impl LogLine {
    fn parse(raw: &str) -> LogLine {
        let fields = raw
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogLine {
            raw: raw.to_string(),
            fields,
        }
    }

    /// A field (`code`, `flags`, `cluster`, `route`, `method`, `path`, `proto`, `host`).
    pub fn get(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }

    /// The response flags, split.
    pub fn flags(&self) -> Vec<&str> {
        self.get("flags").split(',').collect()
    }

    /// Asserts the status code and that every flag in `flags` is set.
    pub fn expect(&self, code: u16, flags: &[&str]) {
        assert_eq!(self.get("code"), code.to_string(), "{}", self.raw);
        for f in flags {
            assert!(self.flags().contains(f), "flag {f} missing: {}", self.raw);
        }
    }
}

// === tools ===

fn on_path(bin: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
}

/// The path of `bin`, or a failure naming the Debian package that provides it.
pub fn require_tool(bin: &str, apt: &str) -> PathBuf {
    on_path(bin).unwrap_or_else(|| {
        panic!("`{bin}` not found: install the Debian package `{apt}` (ci/setup.sh does)")
    })
}

/// A python3 that can import `module` (Debian's /usr/bin/python3 first: the packages install
/// there), or a failure naming the Debian package.
pub fn python_with(module: &str, apt: &str) -> PathBuf {
    let mut candidates = vec![PathBuf::from("/usr/bin/python3")];
    candidates.extend(on_path("python3"));
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return py;
        }
    }
    panic!(
        "no python3 can import `{module}`: install the Debian package `{apt}` (ci/setup.sh does)"
    )
}

/// A script in tests/tools/.
pub fn tool_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts a helper process that prints `READY <port>` on its first stdout line; returns it
/// with the port.
pub fn spawn_ready(cmd: &mut Command) -> (ChildGuard, u16) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for l in lines.map_while(Result::ok) {
            eprintln!("[helper] {l}");
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("helper printed READY <port>");
    let port = line
        .strip_prefix("READY ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected helper output {line:?}"));
    (guard, port)
}

// === clients ===

/// A response as a client saw it.
#[derive(Debug, Clone, Default)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Header fields in order (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
    /// Trailer fields (names lower-cased).
    pub trailers: Vec<(String, String)>,
}

impl Resp {
    /// First value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// First value of trailer `name`.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl with `args` (plus `-sS`, a 30 s limit and files for the head and body).
pub fn curl(args: &[&str]) -> Resp {
    let bin = require_tool("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let (h, b) = (dir.path().join("head"), dir.path().join("body"));
    let out = Command::new(bin)
        .args(["-sS", "--max-time", "30", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read_to_string(&h).unwrap_or_default();
    // The last head block wins (after `100 Continue`); trailers follow it without a status.
    let mut resp = Resp::default();
    let mut in_trailers = false;
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("HTTP/") {
            resp.status = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            resp.headers.clear();
            resp.trailers.clear();
            in_trailers = false;
        } else if line.is_empty() {
            in_trailers = resp.status >= 200;
        } else if let Some((k, v)) = line.split_once(':') {
            let kv = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if in_trailers {
                resp.trailers.push(kv);
            } else {
                resp.headers.push(kv);
            }
        }
    }
    resp.body = std::fs::read(&b).unwrap_or_default();
    resp
}

/// A plain TCP client speaking HTTP/1 by hand (smuggling cases, pipelining, trailers).
pub struct Raw {
    /// The connection.
    pub s: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects with a 15 s read timeout.
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s, buf: Vec::new() }
    }

    /// Wraps a connection made elsewhere (e.g. one of many opened at once), with a 15 s read
    /// timeout.
    pub fn from_stream(s: std::net::TcpStream) -> Raw {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s, buf: Vec::new() }
    }

    /// Writes `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Writes `bytes`; false when the peer already closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }

    fn fill(&mut self) -> bool {
        let mut b = [0u8; 65536];
        match self.s.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(l);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    fn fields(&mut self) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        loop {
            let l = self.line()?;
            if l.is_empty() {
                return Some(out);
            }
            let (k, v) = l.split_once(':')?;
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }

    /// Reads one response (skipping 1xx except 101); `None` when the connection closed first.
    pub fn response(&mut self) -> Option<Resp> {
        self.response_to(false)
    }

    /// [`Raw::response`] for a HEAD request (no body).
    pub fn response_to(&mut self, head: bool) -> Option<Resp> {
        loop {
            let status_line = self.line()?;
            let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
            let headers = self.fields()?;
            let mut r = Resp {
                status,
                headers,
                ..Resp::default()
            };
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            if head || status == 101 || status == 204 || status == 304 {
                return Some(r);
            }
            let chunked = r
                .header("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            if chunked {
                loop {
                    let size_line = self.line()?;
                    let size =
                        usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
                    if size == 0 {
                        r.trailers = self.fields()?;
                        return Some(r);
                    }
                    let data = self.take(size)?;
                    r.body.extend_from_slice(&data);
                    self.line()?;
                }
            } else if let Some(cl) = r.header("content-length") {
                let n: usize = cl.parse().ok()?;
                r.body = self.take(n)?;
                return Some(r);
            } else {
                while self.fill() {}
                r.body = std::mem::take(&mut self.buf);
                return Some(r);
            }
        }
    }

    /// True when the peer closes (EOF or reset) within `timeout` without sending more bytes
    /// than those already buffered.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.s.set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 4096];
        let r = loop {
            match self.s.read(&mut b) {
                Ok(0) => break true,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) => {
                    break !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
            }
        };
        self.s
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        r
    }

    /// Bytes read but not consumed.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }
}

/// A hyper HTTP/2 (h2c prior knowledge) client connection.
pub struct H2Client {
    sender: hyper::client::conn::http2::SendRequest<Frames>,
}

impl H2Client {
    /// Connects and handshakes.
    pub fn connect(addr: SocketAddr) -> H2Client {
        rt().block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            H2Client { sender }
        })
    }

    /// Sends `req` and reads the whole response.
    pub fn send(&self, req: Request<Frames>) -> Resp {
        let mut sender = self.sender.clone();
        rt().block_on(async move {
            let fut = async {
                sender.ready().await.expect("h2 connection ready");
                let resp = sender.send_request(req).await.expect("h2 response");
                let status = resp.status().as_u16();
                let headers = pairs(resp.headers());
                let c = resp.into_body().collect().await.expect("h2 body");
                let trailers = c.trailers().map(pairs).unwrap_or_default();
                Resp {
                    status,
                    headers,
                    body: c.to_bytes().to_vec(),
                    trailers,
                }
            };
            tokio::time::timeout(Duration::from_secs(30), fut)
                .await
                .expect("h2 request within 30s")
        })
    }
}

fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 request on a fresh connection (`Content-Length` added when `body` is not
/// empty); the response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut c = Raw::connect(addr);
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: test.local\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    c.send(&bytes);
    c.response_to(method == "HEAD")
        .unwrap_or_else(|| panic!("no response to {method} {path}"))
}

/// [`request`] GET with headers.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(addr, "GET", path, headers, b"")
}

/// A raw HTTP/1 upstream that records the exact bytes of every complete request it reads
/// (head and body, framed by `Content-Length` or chunked) and answers each with
/// `200 ok`. Requests that break off are kept apart, in [`Capture::partial`].
#[derive(Clone, Default)]
pub struct Capture {
    /// Complete requests, raw.
    pub requests: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Requests that broke off (head, and what of the body came).
    pub partial: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Connections accepted.
    pub conns: Arc<AtomicUsize>,
}

impl Capture {
    /// Starts it on 127.0.0.1:0.
    pub fn start() -> (SocketAddr, Capture) {
        let cap = Capture::default();
        let c2 = cap.clone();
        let addr = raw_upstream(move |s| {
            c2.conns.fetch_add(1, Ordering::SeqCst);
            c2.serve(s)
        });
        (addr, cap)
    }

    fn serve(&self, s: std::net::TcpStream) {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = Raw { s, buf: Vec::new() };
        loop {
            let mut raw = Vec::new();
            let complete = (|| {
                loop {
                    let l = r.line()?;
                    raw.extend_from_slice(l.as_bytes());
                    raw.extend_from_slice(b"\r\n");
                    if l.is_empty() {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
                let field = |name: &str| {
                    head.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}:")))
                        .map(|v| v.trim().to_string())
                };
                if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                    loop {
                        let size_line = r.line()?;
                        raw.extend_from_slice(size_line.as_bytes());
                        raw.extend_from_slice(b"\r\n");
                        let size =
                            usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
                        if size == 0 {
                            loop {
                                let t = r.line()?;
                                raw.extend_from_slice(t.as_bytes());
                                raw.extend_from_slice(b"\r\n");
                                if t.is_empty() {
                                    return Some(());
                                }
                            }
                        }
                        raw.extend_from_slice(&r.take(size + 2)?);
                    }
                } else if let Some(n) = field("content-length") {
                    raw.extend_from_slice(&r.take(n.parse().ok()?)?);
                }
                Some(())
            })();
            if complete.is_none() {
                if !raw.is_empty() {
                    self.partial.lock().unwrap().push(raw);
                }
                return;
            }
            self.requests.lock().unwrap().push(raw);
            if r.s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    }

    /// Complete requests as text.
    pub fn texts(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    /// Everything received, complete or not, as text.
    pub fn everything(&self) -> String {
        let mut all = self.texts().join("");
        for p in self.partial.lock().unwrap().iter() {
            all.push_str(&String::from_utf8_lossy(p));
        }
        all
    }
}
