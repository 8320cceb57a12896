//! Byte-level RPC peers built on mosn-wire's codecs, for what the real client libraries
//! cannot be made to do (Bolt v2 with CRC, odd header maps, malformed frames, exact ids):
//! a recording Bolt/Dubbo upstream and a raw client that writes frames and reads answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mosn_wire::{bolt, dubbo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use serde_json::{json, Value};

use super::http::{cluster, free_port, rt};

/// A frame of one RPC protocol, as the byte-level peers need it.
pub trait WireFrame: Clone + Send + 'static {
    /// One whole frame off the front of `buf` (`None`: more bytes needed).
    fn decode_from(buf: &mut BytesMut) -> Option<Self>;
    /// The frame's bytes.
    fn encode_to(&self, out: &mut BytesMut);
}

impl WireFrame for bolt::Frame {
    fn decode_from(buf: &mut BytesMut) -> Option<Self> {
        bolt::Frame::decode(buf, 1 << 26).expect("valid bolt")
    }
    fn encode_to(&self, out: &mut BytesMut) {
        self.encode(out).unwrap();
    }
}

impl WireFrame for dubbo::Frame {
    fn decode_from(buf: &mut BytesMut) -> Option<Self> {
        dubbo::Frame::decode(buf, 1 << 26).expect("valid dubbo")
    }
    fn encode_to(&self, out: &mut BytesMut) {
        self.encode(out).unwrap();
    }
}

/// What an upstream answers to one frame (`None`: no answer).
pub type Handler<F> = Arc<dyn Fn(&F) -> Option<F> + Send + Sync>;
/// A Bolt upstream's handler.
pub type BoltHandler = Handler<bolt::Frame>;

/// An RPC upstream on 127.0.0.1:0 that records every frame it receives.
pub struct RpcUpstream<F> {
    /// Its address.
    pub addr: SocketAddr,
    /// Frames received, in order.
    pub seen: Arc<Mutex<Vec<F>>>,
    /// Connections accepted.
    pub conns: Arc<Mutex<usize>>,
}

/// A Bolt upstream.
pub type BoltUpstream = RpcUpstream<bolt::Frame>;
/// A Dubbo upstream.
pub type DubboUpstream = RpcUpstream<dubbo::Frame>;

impl<F: WireFrame> RpcUpstream<F> {
    /// Starts it with `handler`.
    pub fn start(handler: Handler<F>) -> RpcUpstream<F> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(Mutex::new(0));
        let (s2, c2) = (seen.clone(), conns.clone());
        let addr = rt().block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    *c2.lock().unwrap() += 1;
                    let (seen, handler) = (s2.clone(), handler.clone());
                    tokio::spawn(async move {
                        let mut buf = BytesMut::new();
                        loop {
                            while let Some(f) = F::decode_from(&mut buf) {
                                seen.lock().unwrap().push(f.clone());
                                if let Some(resp) = handler(&f) {
                                    let mut out = BytesMut::new();
                                    resp.encode_to(&mut out);
                                    if s.write_all(&out).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            match s.read_buf(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                        }
                    });
                }
            });
            addr
        });
        RpcUpstream { addr, seen, conns }
    }
}

impl RpcUpstream<bolt::Frame> {
    /// Answers every request with a response carrying its content, a header map of its own
    /// and `status`; heartbeats are acked.
    pub fn echo() -> BoltUpstream {
        BoltUpstream::start(Arc::new(|f: &bolt::Frame| {
            if f.is_heartbeat() {
                return Some(bolt::Frame::response_to(f, bolt::status::SUCCESS));
            }
            if f.is_oneway() || !f.is_request() {
                return None;
            }
            let mut r = bolt::Frame::response_to(f, bolt::status::SUCCESS);
            r.class = Bytes::from_static(b"com.alipay.sofa.rpc.core.response.SofaResponse");
            r.header.push(
                Bytes::from_static(b"Resp-Key"),
                Bytes::from_static(b"Resp Value"),
            );
            r.header
                .push(Bytes::from_static(b"bin"), Bytes::from_static(b"\x00\x01"));
            r.content = f.content.clone();
            Some(r)
        }))
    }

    /// Request frames received (heartbeats excluded).
    pub fn requests(&self) -> Vec<bolt::Frame> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.is_request() && !f.is_heartbeat())
            .cloned()
            .collect()
    }
}

/// A blocking raw client connection.
pub struct RawClient {
    /// The socket.
    pub s: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        RawClient {
            s,
            buf: BytesMut::new(),
        }
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    /// Writes a Bolt frame.
    pub fn send_bolt(&mut self, f: &bolt::Frame) {
        let mut out = BytesMut::new();
        f.encode(&mut out).unwrap();
        self.send_bytes(&out);
    }

    /// Writes a Dubbo frame.
    pub fn send_dubbo(&mut self, f: &dubbo::Frame) {
        let mut out = BytesMut::new();
        f.encode(&mut out).unwrap();
        self.send_bytes(&out);
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

    /// The next frame, `None` when the connection closed (or timed out) first.
    pub fn read<F: WireFrame>(&mut self) -> Option<F> {
        loop {
            if let Some(f) = F::decode_from(&mut self.buf) {
                return Some(f);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next Bolt frame.
    pub fn read_bolt(&mut self) -> Option<bolt::Frame> {
        self.read()
    }

    /// The next Dubbo frame.
    pub fn read_dubbo(&mut self) -> Option<dubbo::Frame> {
        self.read()
    }

    /// True when the peer closed the connection (reads EOF within the timeout).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0))
    }
}

/// A Bolt v1 request with `entries` in its header map.
pub fn bolt_request(id: u32, entries: &[(&[u8], &[u8])], content: &[u8]) -> bolt::Frame {
    let mut header = bolt::HeaderMap::new();
    for (k, v) in entries {
        header.push(Bytes::copy_from_slice(k), Bytes::copy_from_slice(v));
    }
    bolt::Frame {
        proto: bolt::PROTO_V1,
        ver1: 0,
        kind: bolt::TYPE_REQUEST,
        cmd_code: bolt::CMD_REQUEST,
        ver2: 1,
        request_id: id,
        codec: 1,
        switch: 0,
        timeout: 3000,
        status: 0,
        class: Bytes::from_static(b"com.alipay.sofa.rpc.core.request.SofaRequest"),
        header,
        content: Bytes::copy_from_slice(content),
        raw: Bytes::new(),
    }
}

impl RpcUpstream<dubbo::Frame> {
    /// Answers requests with status OK and `RESPONSE_VALUE` + the hessian string `echo:<method>`;
    /// heartbeats get the heartbeat reply.
    pub fn echo() -> DubboUpstream {
        DubboUpstream::start(Arc::new(|f: &dubbo::Frame| {
            if f.is_event() {
                return Some(dubbo::Frame::heartbeat_reply(f));
            }
            if !f.is_request() || !f.is_two_way() {
                return None;
            }
            let inv = dubbo::parse_invocation(&f.body).ok()?;
            let mut body = BytesMut::new();
            body.extend_from_slice(&[0x91]);
            mosn_wire::hessian2::write_string(&mut body, &format!("echo:{}", inv.method));
            Some(dubbo::Frame {
                flag: dubbo::HESSIAN2,
                status: dubbo::status::OK,
                request_id: f.request_id,
                body: body.freeze(),
                raw: Bytes::new(),
            })
        }))
    }

    /// Request frames received (events excluded).
    pub fn requests(&self) -> Vec<dubbo::Frame> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.is_request() && !f.is_event())
            .cloned()
            .collect()
    }
}

/// A two-way hessian2 Dubbo request invoking `service.method(String arg)` with `attachments`.
pub fn dubbo_request(
    id: u64,
    service: &str,
    method: &str,
    arg: &str,
    attachments: &[(&str, &str)],
) -> dubbo::Frame {
    let head = dubbo::Invocation {
        dubbo_version: "2.0.2".into(),
        service: service.into(),
        version: "1.0.0".into(),
        method: method.into(),
        param_types: "Ljava/lang/String;".into(),
        args: 0..0,
        attachments: Vec::new(),
        attachments_start: 0,
    };
    let mut args = BytesMut::new();
    mosn_wire::hessian2::write_string(&mut args, arg);
    let att: Vec<(String, String)> = attachments
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut body = BytesMut::new();
    dubbo::encode_invocation(&head, &args, &att, &mut body);
    dubbo::Frame {
        flag: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
        status: 0,
        request_id: id,
        body: body.freeze(),
        raw: Bytes::new(),
    }
}

/// The string a Dubbo `RESPONSE_VALUE` body carries.
pub fn dubbo_response_string(body: &[u8]) -> Option<String> {
    let rest = body.strip_prefix(&[0x91])?;
    mosn_wire::hessian2::Reader::new(rest).read_string().ok()?
}

/// The reference mesh's two listeners on free ports: `clientListener` (`rpc` -> Http2) and
/// `serverListener` (Http2 -> `rpc`), routes on `service` `.*`, in the legacy shape.
pub fn mesh_config(service: std::net::SocketAddr, rpc: &str, extend: Value) -> Value {
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
                listener("serverListener", server_port, "Http2", rpc, "server"),
                listener("clientListener", client_port, rpc, "Http2", "client"),
            ]}],
        "cluster_manager": {"clusters": [
            cluster("server_cluster", &[service]),
            cluster("client_cluster", &[format!("127.0.0.1:{server_port}").parse().unwrap()]),
        ]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    })
}
