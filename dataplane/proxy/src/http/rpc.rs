//! The RPC fast path: a Bolt or Dubbo request whose handling needs no HTTP form goes from
//! the decoded frame straight to an upstream connection of the same family and back,
//! without `http::Request`, `HeaderMap`, bodies or body wrappers.
//!
//! ```text
//!  frame -> route on the frame's own header map (FrameHeaders: what request_from_frame's
//!           fields would hold, read in place)
//!        -> eligible?  no stream filters, a forward route with no rewrites or header edits,
//!                      no retries, no mirrors, a cluster, upstream of the same family,
//!                      the payload under the body limit
//!           no  -> the common path (server::answer_via: Session::handle)
//!           yes -> host (LB) -> checkout -> RpcConn::call (raw bytes, id rewritten)
//!                  -> the answer with the downstream id | a hijack reply (MOSN codes)
//! ```
//!
//! Stats, metrics and access-log records are those the common path produces for the same
//! request: the same counters, the same record fields, the same statuses and flags.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use mosn_net::Transport;
use mosn_stream::pool::{ConnObserver, SendError};
use mosn_stream::xprotocol::client::Completion;
use mosn_stream::xprotocol::server::{answer_via, Reply, RpcHandler};
use mosn_stream::xprotocol::{self, bolt, convert as rpc_convert, dubbo, Family, Frame, RpcError};
use mosn_stream::StreamProtocol;

use super::session::{local_reply, reply_code, upstream_failure, within, HostObserver, Session};
use crate::accesslog::LogRecord;
use crate::cluster::Cluster;
use crate::filter::LocalReply;
use crate::flags::ResponseFlags;
use crate::lb::LbContext;
use crate::router::{ForwardAction, RouteAction, RouteHeaders, RouteHit, RouteInput};

/// An RPC request's routing fields read in place: exactly the fields
/// `xprotocol::convert::request_from_frame` would put in the request's `HeaderMap` (entries
/// whose key is an HTTP field name, not reserved, with a field-safe value), in order.
#[derive(Debug)]
enum FrameHeaders<'a> {
    /// A Bolt header map.
    Bolt(&'a bolt::HeaderMap),
    /// A Dubbo invocation: `dubbo`, `service`, `version`, `method`, then the attachments.
    Dubbo(&'a DubboFields<'a>),
    /// No fields (a Dubbo body that is not a hessian2 invocation).
    None,
}

/// A Dubbo invocation's fields: the four leading strings read up front, the rest of the body
/// (descriptor, arguments, attachments) only when a look-up gets past them. Routing by
/// service, version or method reads a few dozen bytes of the body.
#[derive(Debug)]
struct DubboFields<'a> {
    body: &'a [u8],
    head: dubbo::InvocationHead<'a>,
    /// The attachments, read on first need; none when the rest of the body does not parse
    /// (the head still counts, as in `request_from_frame`).
    attachments: std::cell::OnceCell<Vec<dubbo::TextPair<'a>>>,
}

impl<'a> DubboFields<'a> {
    /// The head of `body`, `None` when even that does not parse.
    fn new(body: &'a [u8]) -> Option<Self> {
        Some(DubboFields {
            body,
            head: dubbo::parse_invocation_head(body).ok()?,
            attachments: std::cell::OnceCell::new(),
        })
    }

    /// The head's fields in `request_from_frame`'s order.
    fn head(&self) -> [(&[u8], &[u8]); 4] {
        let h = &self.head;
        [
            (b"dubbo", &h.dubbo_version),
            (b"service", &h.service),
            (b"version", &h.version),
            (b"method", &h.method),
        ]
    }

    fn attachments(&self) -> &[dubbo::TextPair<'a>] {
        self.attachments.get_or_init(|| {
            dubbo::parse_invocation_tail(self.body, self.head.rest)
                .map(|t| t.attachments)
                .unwrap_or_default()
        })
    }

    /// The `n`th field (0-based) that `hit` accepts: the head's first, then the attachments'.
    fn nth(&self, hit: impl Fn(&[u8], &[u8]) -> bool, mut n: usize) -> Option<&[u8]> {
        for (k, v) in self.head() {
            if hit(k, v) {
                match n.checked_sub(1) {
                    Some(rest) => n = rest,
                    None => return Some(v),
                }
            }
        }
        self.attachments()
            .iter()
            .filter(|(k, v)| hit(k, v))
            .nth(n)
            .map(|(_, v)| v.as_ref())
    }
}

/// Fields that never come from an RPC header map (`convert`'s `reserved`).
fn reserved(name: &HeaderName) -> bool {
    use http::header;
    let s = name.as_str();
    s.starts_with("x-mosn-")
        || matches!(
            *name,
            header::HOST
                | header::CONTENT_LENGTH
                | header::TRANSFER_ENCODING
                | header::CONNECTION
                | header::TE
                | header::UPGRADE
        )
        || s == "keep-alive"
        || s == "proxy-connection"
}

/// A value an HTTP field may carry unchanged (`HeaderValue::from_bytes` accepts it and no
/// HTTP/1 parser would trim it).
fn field_safe(value: &[u8]) -> bool {
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    !value.first().is_some_and(ws)
        && !value.last().is_some_and(ws)
        && value.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

impl RouteHeaders for FrameHeaders<'_> {
    fn value(&self, name: &HeaderName, n: usize) -> Option<&[u8]> {
        if reserved(name) {
            return None;
        }
        // An entry becomes field `name` when its key is `name` in any ASCII case (a key
        // that differs only in case is a valid field name too, lower-cased by `HeaderName`).
        let want = name.as_str().as_bytes();
        let hit = |k: &[u8], v: &[u8]| k.eq_ignore_ascii_case(want) && field_safe(v);
        match self {
            FrameHeaders::Bolt(map) => map
                .entries()
                .filter(|(k, v)| hit(k, v))
                .nth(n)
                .map(|(_, v)| v),
            FrameHeaders::Dubbo(fields) => fields.nth(hit, n),
            FrameHeaders::None => None,
        }
    }
}

const SERVICE: HeaderName = HeaderName::from_static("service");
const BOLT_METHOD: HeaderName = HeaderName::from_static("sofa_head_method_name");
const DUBBO_METHOD: HeaderName = HeaderName::from_static("method");

/// The longest URI `http::Uri` accepts (a longer RPC path reads as `/`).
const MAX_URI: usize = (u16::MAX - 1) as usize;

/// The path `request_from_frame` gives an RPC request: `/<service>/<method>`
/// percent-encoded, `/` without both.
fn rpc_path(headers: &FrameHeaders<'_>, family: Family) -> String {
    let method = match family {
        Family::Bolt => &BOLT_METHOD,
        Family::Dubbo => &DUBBO_METHOD,
    };
    let (Some(s), Some(m)) = (headers.value(&SERVICE, 0), headers.value(method, 0)) else {
        return "/".to_owned();
    };
    let mut p = Vec::with_capacity(2 + s.len() + m.len());
    p.push(b'/');
    rpc_convert::pct_encode(&mut p, s);
    p.push(b'/');
    rpc_convert::pct_encode(&mut p, m);
    if p.len() > MAX_URI {
        return "/".to_owned();
    }
    // Percent-encoding leaves ASCII only.
    String::from_utf8(p).unwrap_or_else(|_| "/".to_owned())
}

/// A field value as `HeaderValue::to_str` reads it (visible ASCII), for the access log.
fn visible_ascii(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// What the eligibility check found: everything the fast path needs.
struct Plan {
    hit: RouteHit,
    cluster: Arc<Cluster>,
    metadata_match: BTreeMap<String, String>,
    /// The request's access-log fields (only when the listener logs; boxed, the record is
    /// large and the plan moves).
    log: Option<Box<LogRecord>>,
}

impl<T: Transport> RpcHandler for Session<T>
where
    T::Conn: Send,
{
    // Each path boxed: the per-request task then holds a pointer, not the larger of the two
    // state machines (moved when the task is spawned).
    async fn answer(self: Rc<Self>, frame: Frame) -> Option<(Frame, bool)> {
        match self.plan(&frame) {
            Some(plan) => Box::pin(self.answer_fast(frame, plan)).await,
            None => Box::pin(answer_via(self, frame)).await,
        }
    }

    /// The steady state of the fast path: a two-way request on a multiplexed upstream
    /// connection that is open and usable goes out from the downstream's read loop and its
    /// answer is written back from the upstream's ([`Direct`]): no task, future, channel or
    /// timer of its own; a one-way request is sent and finished there and then (so it keeps
    /// its place among the requests around it). Everything else (connects, waits, ping-pong
    /// and binding pools, no host) takes [`RpcHandler::answer`].
    fn answer_now(self: &Rc<Self>, frame: Frame, reply: Reply) -> Result<(), (Frame, Reply)> {
        let Some(plan) = self.plan(&frame) else {
            return Err((frame, reply));
        };
        let RouteAction::Forward(forward) = plan.hit.route().action() else {
            return Err((frame, reply));
        };
        let up_proto = self.upstream_proto(forward);
        let cluster = plan.cluster;
        let ctx = LbContext {
            original_dst: self.original_dst,
            hash_key: None,
            avoid: &[],
            metadata_match: Some(&plan.metadata_match),
        };
        let Some(host) = cluster.choose(&ctx) else {
            return Err((frame, reply));
        };
        let settings = self.upstream_settings(&cluster);
        let settings = settings.for_host(host.tls_disabled());
        let addr = host.address();
        let Some(conn) = self.pools.ready_rpc(addr, up_proto, &settings) else {
            return Err((frame, reply));
        };
        // Committed: the same accounting as answer_fast and forward_fast, in their order.
        let stream_id = self.next_stream.get() + 1;
        self.next_stream.set(stream_id);
        let spec = &self.spec;
        spec.stats.total.inc();
        spec.stats.active.inc();
        let started = reply.received();
        let mut log = plan.log;
        if let Some(log) = log.as_mut() {
            log.downstream_remote_address = Some(self.peer);
            log.downstream_local_address = Some(self.local);
            log.connection_id = Some(self.connection_id);
            log.stream_id = Some(stream_id);
            log.upstream_host = Some(addr);
            log.upstream_hostname = Some(Arc::from(host.hostname()));
            log.request_received_duration = Some(std::time::Duration::ZERO);
        }
        let deadline = started + self.deadline(forward, &frame);
        host.stats.rq_total.inc();
        cluster.stats.rq_total.inc();
        let active = (
            mosn_metrics::GaugeGuard::new(host.stats.rq_active.clone()),
            mosn_metrics::GaugeGuard::new(cluster.stats.rq_active.clone()),
        );
        let received = frame.payload().len() as u64;
        if frame.is_oneway() {
            let template = frame.reply_template();
            let sent = conn
                .send_oneway(frame, true)
                .map(|()| None)
                .map_err(|source| SendError::Rpc {
                    source,
                    not_sent: false,
                });
            let outcome = self.answered(sent, &cluster, addr, started, started, started, &mut log);
            drop(active);
            // Nothing goes back for a one-way request; `reply` ends it.
            let _ = self.finish_fast(outcome, &template, started, started, log, received, true);
            return Ok(());
        }
        let done = Box::new(Direct {
            session: self.clone(),
            reply,
            template: frame.reply_template(),
            started,
            cluster,
            addr,
            log,
            received,
            _active: active,
        });
        if let Err((e, done)) = conn.send_direct(frame, true, deadline, done) {
            done.complete(Err(e), Instant::now());
        }
        Ok(())
    }
}

/// A fast-path request sent by [`RpcHandler::answer_now`]: what finishing it needs when its
/// answer (or its timeout, or its connection's end) comes.
struct Direct<T: Transport> {
    session: Rc<Session<T>>,
    reply: Reply,
    template: Frame,
    started: Instant,
    cluster: Arc<Cluster>,
    addr: std::net::SocketAddr,
    log: Option<Box<LogRecord>>,
    /// The request payload's length.
    received: u64,
    /// The host's and cluster's active-request gauges, up while the request is.
    _active: (mosn_metrics::GaugeGuard, mosn_metrics::GaugeGuard),
}

impl<T: Transport> Completion for Direct<T>
where
    T::Conn: Send,
{
    fn complete(self: Box<Self>, answer: Result<Frame, RpcError>, now: Instant) {
        let Direct {
            session,
            reply,
            template,
            started,
            cluster,
            addr,
            mut log,
            received,
            _active,
        } = *self;
        let outcome = match answer {
            Err(RpcError::Timeout) => Err(session.timed_out(&cluster)),
            answer => {
                let answer = answer.map(Some).map_err(|source| SendError::Rpc {
                    source,
                    not_sent: false,
                });
                session.answered(answer, &cluster, addr, started, started, now, &mut log)
            }
        };
        drop(_active);
        if let Some((frame, raw)) =
            session.finish_fast(outcome, &template, started, now, log, received, false)
        {
            reply.send(&frame, raw);
        }
    }
}

impl<T: Transport> Session<T>
where
    T::Conn: Send,
{
    /// The fast path's plan for `frame`, or `None` when the request needs the common path.
    /// No side effects: the common path may still run.
    fn plan(&self, frame: &Frame) -> Option<Plan> {
        let spec = &self.spec;
        if !spec.filters.is_empty() {
            return None;
        }
        let family = self.proto.family()?;
        if frame.family() != family {
            return None;
        }
        if let Some(limit) = spec.max_request_body {
            if frame.payload().len() as u64 >= limit {
                return None;
            }
        }
        let table = spec.router.as_ref()?;
        let invocation;
        let headers = match frame {
            Frame::Bolt(f) => FrameHeaders::Bolt(&f.header),
            Frame::Dubbo(f) => {
                invocation =
                    (f.is_request() && !f.is_event() && f.serialization() == dubbo::HESSIAN2)
                        .then(|| DubboFields::new(&f.body))
                        .flatten();
                invocation
                    .as_ref()
                    .map_or(FrameHeaders::None, FrameHeaders::Dubbo)
            }
        };
        // The `/<service>/<method>` path only when a route or the access log reads it.
        let logging = !spec.access_logs.is_empty();
        let path = (logging || table.reads_path()).then(|| rpc_path(&headers, family));
        let method = http::Method::POST;
        let input = RouteInput {
            authority: None,
            path: path.as_deref().unwrap_or("/"),
            query: None,
            method: &method,
            headers: &headers,
            scheme: "http",
        };
        let hit = table.find(&input)?;
        let route = hit.route();
        if route.edits_messages() {
            return None;
        }
        let RouteAction::Forward(forward) = route.action() else {
            return None;
        };
        if forward.retry_policy().is_some_and(|p| p.num_retries > 0)
            || !forward.mirror_policies().is_empty()
        {
            return None;
        }
        let up_proto = spec
            .upstream
            .or(forward.upstream_protocol().and_then(super::stream_protocol))
            .unwrap_or(self.proto);
        if up_proto.family() != Some(family) {
            return None;
        }
        let picked = forward.pick_cluster(&headers, rand::random())?;
        let cluster = self.clusters.get(&picked.name)?;
        let mut metadata_match = forward.metadata_match().clone();
        metadata_match.extend(
            picked
                .metadata_match
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let log = logging.then(|| {
            let mut log = Box::new(LogRecord::new(SystemTime::now()));
            log.protocol = Some(self.proto_name.clone());
            log.method = Some(method.clone());
            log.path = path;
            let method_key = match family {
                Family::Bolt => &BOLT_METHOD,
                Family::Dubbo => &DUBBO_METHOD,
            };
            let text = |k: &HeaderName| headers.value(k, 0).and_then(visible_ascii).map(Arc::from);
            log.rpc_service = text(&SERVICE);
            log.rpc_method = text(method_key);
            for name in spec.log_request_headers.iter() {
                for v in (0..).map_while(|i| headers.value(name, i)) {
                    if let Ok(v) = HeaderValue::from_bytes(v) {
                        log.request_headers.append(name.clone(), v);
                    }
                }
            }
            log.route_name = Some(hit.route().name_arc());
            log.upstream_cluster = Some(Arc::from(cluster.name()));
            log
        });
        Some(Plan {
            hit,
            cluster,
            metadata_match,
            log,
        })
    }

    /// The upstream protocol for a request on `forward`: the proxy filter's, the route's, or
    /// the downstream's own.
    fn upstream_proto(&self, forward: &ForwardAction) -> StreamProtocol {
        self.spec
            .upstream
            .or(forward.upstream_protocol().and_then(super::stream_protocol))
            .unwrap_or(self.proto)
    }

    /// How long a request on `forward` may take: the route's timeout, the frame's own (Bolt
    /// `timeout`) when shorter or alone, else the listener's default.
    fn deadline(&self, forward: &ForwardAction, frame: &Frame) -> std::time::Duration {
        match (forward.timeout(), frame.timeout()) {
            (Some(route), Some(frame)) => route.min(frame),
            (route, frame) => route.or(frame).unwrap_or(self.spec.default_timeout),
        }
    }

    /// Forwards `frame` as planned; the answer to send back (`None` for one-way requests).
    async fn answer_fast(&self, frame: Frame, plan: Plan) -> Option<(Frame, bool)> {
        let stream_id = self.next_stream.get() + 1;
        self.next_stream.set(stream_id);
        let spec = &self.spec;
        spec.stats.total.inc();
        spec.stats.active.inc();
        let started = Instant::now();
        let Plan {
            hit,
            cluster,
            metadata_match,
            mut log,
        } = plan;
        if let Some(log) = log.as_mut() {
            log.downstream_remote_address = Some(self.peer);
            log.downstream_local_address = Some(self.local);
            log.connection_id = Some(self.connection_id);
            log.stream_id = Some(stream_id);
        }
        let oneway = frame.is_oneway();
        let template = frame.reply_template();
        let payload_len = frame.payload().len() as u64;
        let mut received = 0;
        let outcome = self
            .forward_fast(
                frame,
                &hit,
                &cluster,
                &metadata_match,
                started,
                &mut log,
                &mut received,
                payload_len,
            )
            .await;
        self.finish_fast(
            outcome,
            &template,
            started,
            Instant::now(),
            log,
            received,
            oneway,
        )
    }

    /// Finishes a fast-path request at `now`: the answer to send back (the upstream's, with
    /// the downstream's id, or the local reply in the protocol's form; `None` for one-way
    /// requests), the listener's stats and the access log.
    #[allow(clippy::too_many_arguments)]
    fn finish_fast(
        &self,
        outcome: Result<Option<Frame>, LocalReply>,
        template: &Frame,
        started: Instant,
        now: Instant,
        log: Option<Box<LogRecord>>,
        received: u64,
        oneway: bool,
    ) -> Option<(Frame, bool)> {
        let spec = &self.spec;
        let (status, flags, answer) = match outcome {
            Ok(Some(mut answer)) => {
                let status = match &answer {
                    Frame::Bolt(f) => xprotocol::http_status_for_bolt(f.status),
                    Frame::Dubbo(f) => xprotocol::http_status_for_dubbo(f.status),
                };
                let sent = answer.payload().len() as u64;
                answer.set_request_id(template.request_id());
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    ResponseFlags::NONE,
                    Some((answer, true, sent)),
                )
            }
            // One-way: the upstream answers nothing, nor do we.
            Ok(None) => (StatusCode::OK, ResponseFlags::NONE, None),
            Err(reply) => {
                let code = reply_code(&reply);
                let text = String::from_utf8_lossy(&reply.body);
                let out = rpc_convert::hijack(template, code, text.trim_end());
                (
                    reply.status,
                    reply.flags,
                    Some((out, false, reply.body.len() as u64)),
                )
            }
        };
        let sent = answer.as_ref().map_or(0, |(_, _, n)| *n);
        // The common path finishes here too: when the response body has been read.
        let took = now.saturating_duration_since(started);
        spec.stats.active.dec();
        spec.stats.finish(status.as_u16(), took);
        if !flags.is_empty() && status.as_u16() >= 400 {
            spec.stats.failed.inc();
        }
        if let Some(mut log) = log {
            log.response_code = Some(u32::from(status.as_u16()));
            log.response_flags.insert(flags);
            log.bytes_sent = sent;
            log.bytes_received = received;
            log.duration = Some(took);
            log.request_finished_duration = Some(took);
            for al in spec.access_logs.iter() {
                al.log(&log);
            }
        }
        if oneway {
            return None;
        }
        answer.map(|(f, raw, _)| (f, raw))
    }

    /// What an upstream exchange sent at `sent_at`, for a request that came at `started`,
    /// came to at `now`: the answer (counted in the cluster's stats), or the local reply for
    /// a failed exchange.
    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    fn answered(
        &self,
        result: Result<Option<Frame>, SendError>,
        cluster: &Cluster,
        addr: std::net::SocketAddr,
        started: Instant,
        sent_at: Instant,
        now: Instant,
        log: &mut Option<Box<LogRecord>>,
    ) -> Result<Option<Frame>, LocalReply> {
        match result {
            Ok(answer) => {
                let status = match &answer {
                    Some(Frame::Bolt(f)) => xprotocol::http_status_for_bolt(f.status),
                    Some(Frame::Dubbo(f)) => xprotocol::http_status_for_dubbo(f.status),
                    None => 200,
                };
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                cluster
                    .stats
                    .requests
                    .finish(status.as_u16(), now.saturating_duration_since(sent_at));
                if let Some(log) = log.as_mut() {
                    log.response_received_duration = Some(now.saturating_duration_since(started));
                }
                Ok(answer)
            }
            Err(e) => {
                tracing::debug!(listener = %self.spec.listener, upstream = %addr, attempt = 1, error = %e, "upstream request failed");
                cluster.stats.requests.failed.inc();
                Err(upstream_failure(&e))
            }
        }
    }

    /// Host, connection, exchange: the upstream's answer, or the local reply.
    #[allow(clippy::too_many_arguments)]
    async fn forward_fast(
        &self,
        frame: Frame,
        hit: &RouteHit,
        cluster: &Arc<Cluster>,
        metadata_match: &BTreeMap<String, String>,
        started: Instant,
        log: &mut Option<Box<LogRecord>>,
        received: &mut u64,
        payload_len: u64,
    ) -> Result<Option<Frame>, LocalReply> {
        let RouteAction::Forward(forward) = hit.route().action() else {
            return Err(local_reply(
                StatusCode::NOT_FOUND,
                "no route\n",
                ResponseFlags::NO_ROUTE,
            ));
        };
        let up_proto = self.upstream_proto(forward);
        let deadline = started + self.deadline(forward, &frame);
        let settings = self.upstream_settings(cluster);
        let ctx = LbContext {
            original_dst: self.original_dst,
            hash_key: None,
            avoid: &[],
            metadata_match: Some(metadata_match),
        };
        let Some(host) = cluster.choose(&ctx) else {
            return Err(local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "no healthy upstream\n",
                ResponseFlags::NO_HEALTHY_UPSTREAM,
            ));
        };
        let addr = host.address();
        if let Some(log) = log.as_mut() {
            log.upstream_host = Some(addr);
            log.upstream_hostname = Some(Arc::from(host.hostname()));
        }
        let observer = || -> Rc<dyn ConnObserver> {
            Rc::new(HostObserver {
                host: host.clone(),
                cluster: cluster.clone(),
            })
        };
        // One timer bounds both the checkout and the answer.
        let expiry = tokio::time::sleep_until(deadline.into());
        tokio::pin!(expiry);
        let settings = settings.for_host(host.tls_disabled());
        let checkout = self.pools.checkout(addr, up_proto, &settings, observer);
        let upstream = match within(checkout, expiry.as_mut()).await {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => {
                tracing::debug!(listener = %self.spec.listener, upstream = %addr, attempt = 1, error = %e, "upstream connect failed");
                if let Some(log) = log.as_mut() {
                    log.upstream_transport_failure_reason = Some(Arc::from(e.to_string()));
                }
                return Err(local_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream connect failure\n",
                    ResponseFlags::UPSTREAM_CONNECT_FAILURE,
                ));
            }
            Err(()) => return Err(self.timed_out(cluster)),
        };
        host.stats.rq_total.inc();
        cluster.stats.rq_total.inc();
        let _active = (
            mosn_metrics::GaugeGuard::new(host.stats.rq_active.clone()),
            mosn_metrics::GaugeGuard::new(cluster.stats.rq_active.clone()),
        );
        let sent_at = Instant::now();
        if let Some(log) = log.as_mut() {
            log.request_received_duration = Some(sent_at - started);
        }
        // The request body is read in full before it goes (as the common path's does).
        *received = payload_len;
        let sent = upstream.send_frame(frame, true);
        match within(sent, expiry.as_mut()).await {
            Ok(r) => self.answered(r, cluster, addr, started, sent_at, Instant::now(), log),
            Err(()) => Err(self.timed_out(cluster)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Every lookup the router may make reads what the common path's `HeaderMap` holds.
    fn same_fields(headers: &FrameHeaders<'_>, map: &http::HeaderMap, extra: &[&str]) {
        let mut names: Vec<HeaderName> = map.keys().cloned().collect();
        names.extend(
            extra
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok()),
        );
        for name in &names {
            for n in 0..4 {
                assert_eq!(
                    headers.value(name, n),
                    RouteHeaders::value(map, name, n),
                    "{name} #{n}"
                );
            }
        }
    }

    #[test]
    fn bolt_fields_read_in_place_match_the_header_map() {
        let mut header = bolt::HeaderMap::new();
        for (k, v) in [
            (&b"service"[..], &b"com.alipay.test.EchoService:1.0"[..]),
            (b"sofa_head_method_name", b"echo"),
            (b"Upper-Case", b"v1"),
            (b"upper-case", b"v2"),
            (b"odd key", b"x"),
            (b"ctl", b"a\x01b"),
            (b"pad", b" spaced "),
            (b"host", b"not-http"),
            (b"x-mosn-host", b"h"),
            (b"te", b"trailers"),
            (b"empty", b""),
            (b"utf8", "\u{e9}t\u{e9}".as_bytes()),
            (b"service", b"dup"),
            (b"cookie", b"a=1; b=2"),
        ] {
            header.push(Bytes::copy_from_slice(k), Bytes::copy_from_slice(v));
        }
        let frame = bolt::Frame {
            proto: bolt::PROTO_V1,
            ver1: 0,
            kind: bolt::TYPE_REQUEST,
            cmd_code: bolt::CMD_REQUEST,
            ver2: 1,
            request_id: 7,
            codec: 1,
            switch: 0,
            timeout: 3000,
            status: 0,
            class: Bytes::new(),
            header,
            content: Bytes::from_static(b"payload"),
            raw: Bytes::new(),
        };
        let req = rpc_convert::request_from_frame(Frame::Bolt(frame.clone()));
        let headers = FrameHeaders::Bolt(&frame.header);
        same_fields(
            &headers,
            req.headers(),
            &[
                "host",
                "x-mosn-host",
                "te",
                "odd key",
                "ctl",
                "pad",
                "missing",
            ],
        );
        assert_eq!(rpc_path(&headers, Family::Bolt), req.uri().path());
        let none = bolt::HeaderMap::new();
        assert_eq!(rpc_path(&FrameHeaders::Bolt(&none), Family::Bolt), "/");
    }

    #[test]
    fn dubbo_fields_read_in_place_match_the_header_map() {
        let head = dubbo::Invocation {
            dubbo_version: "2.0.2".into(),
            service: "com.alipay.test.EchoService".into(),
            version: "1.0.0".into(),
            method: "echo".into(),
            param_types: String::new(),
            args: 0..0,
            attachments: Vec::new(),
            attachments_start: 0,
        };
        let attachments: Vec<(String, String)> = [
            ("path", "com.alipay.test.EchoService"),
            ("Service", "other"),
            ("pad", " x"),
            ("bad key", "v"),
            ("method", "again"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut body = bytes::BytesMut::new();
        dubbo::encode_invocation(&head, &[], &attachments, &mut body);
        let frame = dubbo::Frame {
            flag: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
            status: 0,
            request_id: 9,
            body: body.freeze(),
            raw: Bytes::new(),
        };
        let req = rpc_convert::request_from_frame(Frame::Dubbo(frame.clone()));
        let fields = DubboFields::new(&frame.body).unwrap();
        let headers = FrameHeaders::Dubbo(&fields);
        same_fields(&headers, req.headers(), &["pad", "missing"]);
        assert_eq!(rpc_path(&headers, Family::Dubbo), req.uri().path());
    }

    #[test]
    fn dubbo_attachments_are_read_only_when_a_lookup_needs_them() {
        let head = dubbo::Invocation {
            dubbo_version: "2.0.2".into(),
            service: "com.alipay.test.EchoService".into(),
            method: "echo".into(),
            param_types: "Ljava/lang/String;".into(),
            ..dubbo::Invocation::default()
        };
        // The argument: hessian2's short string "hello".
        let arg = b"\x05hello";
        let attachments = vec![("group".to_string(), "blue".to_string())];
        let mut body = bytes::BytesMut::new();
        dubbo::encode_invocation(&head, arg, &attachments, &mut body);
        let fields = DubboFields::new(&body).unwrap();
        let headers = FrameHeaders::Dubbo(&fields);
        assert_eq!(
            headers.value(&SERVICE, 0),
            Some(&b"com.alipay.test.EchoService"[..])
        );
        assert_eq!(headers.value(&DUBBO_METHOD, 0), Some(&b"echo"[..]));
        assert!(
            fields.attachments.get().is_none(),
            "the head answered alone"
        );
        let group = HeaderName::from_static("group");
        assert_eq!(headers.value(&group, 0), Some(&b"blue"[..]));
        assert!(fields.attachments.get().is_some());
        // A second `method` is looked for past the head.
        let fields = DubboFields::new(&body).unwrap();
        assert_eq!(FrameHeaders::Dubbo(&fields).value(&DUBBO_METHOD, 1), None);
        assert!(fields.attachments.get().is_some());

        // An argument cut short: the attachments are lost, the head still routes, on both
        // paths alike.
        let cut = &body[..fields.head.rest + 6];
        let frame = dubbo::Frame {
            flag: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
            status: 0,
            request_id: 3,
            body: Bytes::copy_from_slice(cut),
            raw: Bytes::new(),
        };
        let req = rpc_convert::request_from_frame(Frame::Dubbo(frame.clone()));
        let fields = DubboFields::new(&frame.body).unwrap();
        let headers = FrameHeaders::Dubbo(&fields);
        same_fields(&headers, req.headers(), &["group"]);
        assert_eq!(
            headers.value(&SERVICE, 0),
            Some(&b"com.alipay.test.EchoService"[..])
        );
        assert_eq!(headers.value(&group, 0), None);
        assert_eq!(req.uri().path(), "/com.alipay.test.EchoService/echo");
    }
}
