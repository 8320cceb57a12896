//! One downstream connection's request handler: MOSN's downstream stream, in request order
//! (pingora-style phases):
//!
//! ```text
//!  filters BeforeRoute -> route (vhost, match) -> filters AfterRoute -> action
//!    direct response | redirect | forward:
//!      cluster -> upstream protocol -> [attempts: host (LB) -> filters AfterChooseHost
//!        -> rewrite -> re-encode head -> pool checkout -> send, per-try timeout]
//!      -> response headers (route) -> filters on_response -> downstream
//!  end of response body: stats, access logs, filters on_log
//! ```

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use mosn_net::Transport;
use mosn_stream::pool::{ConnObserver, Pools, UpstreamSettings};
use mosn_stream::xprotocol::{self, Meta, ReplyCode};
use mosn_stream::{Body, StreamProtocol};

use super::body::{BodyEnd, BodyFailure, RequestBody, RequestBodyState, ResponseBody};
use super::convert;
use super::HttpProxySpec;
use crate::accesslog::LogRecord;
use crate::cluster::{Cluster, ClusterManager};
use crate::filter::{self, LocalReply, Phase, RequestCtx, RequestView, ResponseCtx, Verdict};
use crate::flags::ResponseFlags;
use crate::host::Host;
use crate::lb::LbContext;
use crate::router::{RouteAction, RouteHit, RouteInput};

/// Logged and counted when the client went away mid-request (nginx's 499): nothing reaches the
/// client any more, and a 400 would blame it for a malformed request it did not send.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// The proxy's per-connection handler.
pub struct Session<T: Transport> {
    pub(super) spec: Arc<HttpProxySpec>,
    pub(super) clusters: Arc<ClusterManager>,
    pub(super) pools: Rc<Pools<T>>,
    pub(super) proto: StreamProtocol,
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) original_dst: Option<SocketAddr>,
    pub(super) connection_id: u64,
    /// `proto`'s name, shared by every request's log record.
    pub(super) proto_name: Arc<str>,
    pub(super) next_stream: Cell<u64>,
}

/// Everything learned about one request, finished into the access log.
struct Req {
    started: Instant,
    log: LogRecord,
    /// The request body's counters and verdicts; none for a request without a body.
    body_state: Option<Rc<RequestBodyState>>,
    /// The listener has access logs: fill the record's names and headers.
    logging: bool,
}

impl Req {
    fn flag(&mut self, f: ResponseFlags) {
        self.log.response_flags.insert(f);
    }
}

/// Sweeps `pools` when `clusters` changed since they were last swept: what no cluster
/// routes to any more (a removed host, a replaced TLS config) is let go
/// ([`Pools::retain_upstreams`]).
fn sync_pools<T: Transport>(clusters: &ClusterManager, pools: &Pools<T>) {
    let generation = clusters.generation();
    if generation == pools.swept_generation() {
        return;
    }
    let snapshot = clusters.snapshot();
    let identity = |tls: Option<&Arc<mosn_tls_offload::ClientConfig>>| {
        tls.map_or(0, |t| Arc::as_ptr(t) as *const () as usize)
    };
    // (address, TLS config identity) of every host; ORIGINAL_DST clusters reach any address
    // with their config.
    type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
    let mut hosts = Set::default();
    let mut any_address = Set::default();
    for cluster in snapshot.values() {
        let tls = cluster.spec().tls.as_ref().map(|t| &t.config);
        if matches!(
            cluster.spec().kind,
            crate::cluster::ClusterKind::OriginalDst
        ) {
            any_address.insert(identity(tls));
        }
        for host in cluster.hosts() {
            let tls = if host.tls_disabled() { None } else { tls };
            hosts.insert((host.address(), identity(tls)));
        }
    }
    // The snapshot stays alive with the predicate: the configs it compares by identity
    // cannot be freed and their addresses reused meanwhile.
    let keep: mosn_stream::pool::KeepUpstream = Rc::new(move |addr, tls| {
        let _ = &snapshot;
        let id = identity(tls);
        hosts.contains(&(addr, id)) || any_address.contains(&id)
    });
    pools.retain_upstreams(generation, keep);
}

/// Keeps one worker's `pools` in step with `clusters`: sweeps at once and after every
/// change (woken on the worker's own thread right after it, so a worker without traffic
/// lets go of removed upstreams too, and requests pay nothing for it). Runs until the
/// worker ends.
pub async fn keep_pools_in_sync<T: Transport>(pools: Rc<Pools<T>>, clusters: Arc<ClusterManager>) {
    let mut changes = clusters.subscribe();
    loop {
        sync_pools(&clusters, &pools);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

impl<T: Transport> Session<T> {
    /// The pool settings for a connection to `cluster` (the common and the RPC paths).
    pub(super) fn upstream_settings(&self, cluster: &Cluster) -> UpstreamSettings {
        UpstreamSettings {
            connect_timeout: cluster.connect_timeout(),
            max_request_per_conn: cluster.spec().max_request_per_conn,
            rpc: xprotocol::RpcSettings {
                binding_key: self.connection_id,
                ..self.spec.rpc_upstream
            },
            tls: cluster.spec().tls.as_ref().map(|t| t.config.clone()),
        }
    }
}

/// Counts the connections a pool opens to one host.
pub(super) struct HostObserver {
    pub(super) host: Arc<Host>,
    pub(super) cluster: Arc<Cluster>,
}

impl ConnObserver for HostObserver {
    fn on_connected(&self) {
        self.host.stats.cx_total.inc();
        self.host.stats.cx_active.inc();
        self.cluster.stats.cx_total.inc();
        self.cluster.stats.cx_active.inc();
    }
    fn on_connect_failed(&self, timeout: bool) {
        self.host.stats.cx_connect_fail.inc();
        self.cluster.stats.cx_connect_fail.inc();
        if timeout {
            self.cluster.stats.cx_connect_timeout.inc();
        }
    }
    fn on_closed(&self) {
        self.host.stats.cx_active.dec();
        self.cluster.stats.cx_active.dec();
    }
    fn on_unknown_response(&self) {
        self.cluster.stats.rpc_unknown_response.inc();
    }
}

pub(super) fn local_reply(
    status: StatusCode,
    text: &'static str,
    flags: ResponseFlags,
) -> LocalReply {
    LocalReply::new(status, flags).with_text(text)
}

fn into_response(r: LocalReply) -> Response<Body> {
    let mut resp = Response::new(Body::full(r.body.clone()));
    *resp.status_mut() = r.status;
    *resp.headers_mut() = r.headers;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(r.body.len()));
    resp
}

/// What the filters of a phase may know: the route, cluster and host chosen so far.
#[derive(Default, Clone, Copy)]
struct Stage<'a> {
    route: Option<&'a RouteHit>,
    cluster: Option<&'a str>,
    host: Option<SocketAddr>,
}

impl<T: Transport> mosn_stream::server::Handler for Session<T>
where
    T::Conn: Send,
{
    async fn handle(self: Rc<Self>, req: Request<Body>) -> Response<Body> {
        let stream_id = self.next_stream.get() + 1;
        self.next_stream.set(stream_id);
        let spec = self.spec.clone();
        spec.stats.total.inc();
        spec.stats.active.inc();

        let (mut head, body) = req.into_parts();
        let logging = !spec.access_logs.is_empty();
        // Boxed: the record is large, and the request's future and its response body's end
        // hook would otherwise each hold (and move) a copy of it.
        let mut r = Box::new(Req {
            started: Instant::now(),
            // The wall clock is read only for an access log's `%start_time%`.
            log: LogRecord::new(if logging {
                SystemTime::now()
            } else {
                SystemTime::UNIX_EPOCH
            }),
            body_state: None,
            logging,
        });
        r.log.downstream_remote_address = Some(self.peer);
        r.log.downstream_local_address = Some(self.local);
        r.log.connection_id = Some(self.connection_id);
        r.log.stream_id = Some(stream_id);
        if r.logging {
            // Only what an access log prints needs copying out of the request.
            r.log.protocol = Some(self.proto_name.clone());
            r.log.method = Some(head.method.clone());
            r.log.path = Some(head.uri.path().to_owned());
            r.log.query = head.uri.query().map(str::to_owned);
            r.log.authority = convert::authority(&head.uri, &head.headers).map(str::to_owned);
            if let Some(family) = self.proto.family() {
                let method_key = match family {
                    xprotocol::Family::Bolt => "sofa_head_method_name",
                    xprotocol::Family::Dubbo => "method",
                };
                let text = |k: &str| {
                    head.headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .map(Arc::from)
                };
                r.log.rpc_service = text("service");
                r.log.rpc_method = text(method_key);
            }
            for name in spec.log_request_headers.iter() {
                for v in head.headers.get_all(name) {
                    r.log.request_headers.append(name.clone(), v.clone());
                }
            }
        }
        // A request without a body (most) has nothing to count or limit: no wrapper to box.
        let body = if body.is_end_stream() {
            body
        } else {
            let st = Rc::new(RequestBodyState::default());
            r.body_state = Some(st.clone());
            Body::new(RequestBody::new(body, st, spec.max_request_body))
        };

        // Not boxed on its own: the codecs hold this future in place (the HTTP/1 connection's
        // own future) or box it once per request already (hyper's HTTP/2 service future, an
        // RPC request's task), and a box here would move the request flow's state once more.
        let resp = match self.process(&mut head, body, &mut r).await {
            Ok(resp) => resp,
            Err(reply) => {
                r.flag(reply.flags);
                self.local_response(reply)
            }
        };
        self.finish(head, r, resp)
    }
}

impl<T: Transport> Drop for Session<T> {
    fn drop(&mut self) {
        // Binding-mode upstream connections live as long as their downstream connection.
        if self.spec.rpc_upstream.pool_mode == xprotocol::PoolMode::Binding {
            self.pools.release_binding(self.connection_id);
        }
    }
}

/// MOSN's internal status code for a local reply to an RPC client.
pub(super) fn reply_code(reply: &LocalReply) -> u16 {
    use xprotocol::code;
    let f = reply.flags;
    if f.contains(ResponseFlags::NO_ROUTE) {
        code::ROUTER_UNAVAILABLE
    } else if f.contains(ResponseFlags::NO_HEALTHY_UPSTREAM)
        || f.contains(ResponseFlags::NO_CLUSTER)
        || f.contains(ResponseFlags::UPSTREAM_CONNECT_FAILURE)
    {
        code::NO_HEALTH_UPSTREAM
    } else if f.contains(ResponseFlags::UPSTREAM_OVERFLOW) {
        code::UPSTREAM_OVERFLOW
    } else if f.contains(ResponseFlags::UPSTREAM_TIMEOUT) {
        code::TIMEOUT
    } else if f.contains(ResponseFlags::ACCESS_DENIED) {
        code::PERMISSION_DENIED
    } else if f.contains(ResponseFlags::RATE_LIMITED) {
        code::LIMIT_EXCEEDED
    } else if f.contains(ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR) {
        code::CODEC_EXCEPTION
    } else {
        xprotocol::code_for_http_status(reply.status.as_u16())
    }
}

impl<T: Transport> Session<T>
where
    T::Conn: Send,
{
    /// A local reply in the downstream protocol's terms (RPC clients get their protocol's
    /// error status through [`ReplyCode`]).
    fn local_response(&self, reply: LocalReply) -> Response<Body> {
        let code = (!self.proto.is_http()).then(|| reply_code(&reply));
        let mut resp = into_response(reply);
        if let Some(code) = code {
            resp.extensions_mut().insert(ReplyCode(code));
        }
        resp
    }

    /// Runs the request filters of `phase`. Callers enter it only when the chain has that
    /// phase (`has_phase`), so that a listener without filters does not even build its future.
    async fn run_filters(
        &self,
        phase: Phase,
        head: &mut http::request::Parts,
        r: &mut Req,
        upstream_protocol: &mut Option<String>,
        at: Stage<'_>,
    ) -> Result<(), LocalReply> {
        let Stage {
            route,
            cluster,
            host,
        } = at;
        let chain = &self.spec.filters;
        let overrides = route.and_then(|h| self.spec.route_overrides(h));
        let mut from = 0;
        loop {
            let v = {
                let mut ctx = RequestCtx::new(
                    head,
                    self.peer,
                    self.local,
                    &self.spec.listener,
                    self.proto.name(),
                    upstream_protocol,
                );
                ctx.route_overrides = overrides;
                ctx.cluster = cluster;
                ctx.upstream_host = host;
                chain.run_request_from(phase, from, &mut ctx)
            };
            match v.verdict {
                Verdict::Continue => return Ok(()),
                Verdict::Reply(reply) => return Err(reply),
                Verdict::Delay { delay, then } => {
                    r.flag(ResponseFlags::DELAY_INJECTED);
                    tokio::time::sleep(delay).await;
                    if let Some(reply) = then {
                        return Err(reply);
                    }
                    from = v.resume_from;
                }
            }
        }
    }

    async fn process(
        &self,
        head: &mut http::request::Parts,
        body: Body,
        r: &mut Req,
    ) -> Result<Response<Body>, LocalReply> {
        let mut upstream_protocol: Option<String> = None;
        // Each phase's filter run is entered only when a filter has that phase: a listener
        // without filters pays nothing for them.
        let filters = &self.spec.filters;
        if filters.has_phase(Phase::BeforeRoute) {
            self.run_filters(
                Phase::BeforeRoute,
                head,
                r,
                &mut upstream_protocol,
                Stage::default(),
            )
            .await?;
        }

        // === route ===
        let Some(table) = self.spec.router.as_ref() else {
            return Err(local_reply(
                StatusCode::NOT_FOUND,
                "no route\n",
                ResponseFlags::NO_ROUTE,
            ));
        };
        let hit = table.find(&route_input(head));
        let Some(hit) = hit else {
            return Err(local_reply(
                StatusCode::NOT_FOUND,
                "no route\n",
                ResponseFlags::NO_ROUTE,
            ));
        };
        if r.logging {
            r.log.route_name = Some(hit.route().name_arc());
        }
        if filters.has_phase(Phase::AfterRoute) {
            self.run_filters(
                Phase::AfterRoute,
                head,
                r,
                &mut upstream_protocol,
                Stage {
                    route: Some(&hit),
                    ..Stage::default()
                },
            )
            .await?;
        }

        let overrides = self.spec.route_overrides(&hit);
        // (A request without a body has no data for them to see.)
        let inspected = r
            .body_state
            .as_ref()
            .filter(|_| filters.inspects_request_body(overrides));
        if let Some(st) = inspected {
            let spec = self.spec.clone();
            let key = hit.route().key();
            let view = copy_head(head);
            st.hook.replace(Some(Box::new(move |so_far, len| {
                let overrides = spec.overrides.get(&key);
                match spec
                    .filters
                    .run_request_data(RequestView::from(&view), overrides, so_far, len)
                    .verdict
                {
                    Verdict::Reply(reply)
                    | Verdict::Delay {
                        then: Some(reply), ..
                    } => Some(reply),
                    _ => None,
                }
            })));
        }

        let forward = match hit.route().action() {
            RouteAction::DirectResponse { status, body } => {
                let mut reply = LocalReply::new(*status, ResponseFlags::NONE);
                reply.body = body.clone();
                let mut resp = into_response(reply);
                hit.route().apply_response_headers(resp.headers_mut());
                r.flag(ResponseFlags::LOCAL_REPLY);
                return Ok(resp);
            }
            RouteAction::Redirect(rule) => {
                let (status, location) = (rule.status(), rule.location(&route_input(head)));
                let mut resp = into_response(LocalReply::new(status, ResponseFlags::NONE));
                resp.headers_mut().insert(header::LOCATION, location);
                r.flag(ResponseFlags::LOCAL_REPLY);
                return Ok(resp);
            }
            RouteAction::Forward(f) => f,
        };

        // === cluster ===
        let picked = forward
            .pick_cluster(&head.headers, rand::random())
            .and_then(|p| Some((self.clusters.get(&p.name)?, p)));
        let Some((cluster, picked)) = picked else {
            return Err(local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "no cluster\n",
                ResponseFlags::NO_CLUSTER,
            ));
        };
        if r.logging {
            r.log.upstream_cluster = Some(Arc::from(cluster.name()));
        }
        // The weighted entry's metadata_match, over the route's (MOSN merges them so).
        let mut metadata_match = forward.metadata_match().clone();
        metadata_match.extend(
            picked
                .metadata_match
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );

        // === upstream protocol: proxy filter, route, transcoder, else the downstream's ===
        // A matching transcoder rule (set by the filters so far) wins; else the proxy
        // filter's setting, the route's, and finally the downstream's own protocol.
        let mut up_proto = upstream_protocol
            .as_deref()
            .and_then(super::stream_protocol_by_name)
            .or(self.spec.upstream)
            .or(forward.upstream_protocol().and_then(super::stream_protocol))
            .unwrap_or(self.proto);

        // === body: buffered when retries may need to replay it ===
        let retry = forward.retry_policy().filter(|p| p.num_retries > 0);
        let mirrors: Vec<Arc<Cluster>> = forward
            .mirror_policies()
            .iter()
            .filter(|m| m.should_mirror(rand::random()))
            .filter_map(|m| self.clusters.get(&m.cluster))
            .collect();
        let mut replayable = if retry.is_some() || !mirrors.is_empty() {
            self.buffer_for_retry(body, r).await?
        } else {
            Replay::Once(Some(body))
        };
        for m in mirrors {
            // Only a body read in full can be sent twice; a streamed one is not mirrored.
            let Some(body) = replayable.copy() else {
                tracing::debug!(listener = %self.spec.listener, cluster = m.name(), "request body too large to mirror");
                break;
            };
            let mut parts = copy_head(head);
            hit.route().rewrite_request(&mut parts, None);
            if convert::request_for_upstream(&mut parts, up_proto, false).is_ok() {
                tokio::task::spawn_local(mirror(
                    self.pools.clone(),
                    m,
                    up_proto,
                    Request::from_parts(parts, body),
                ));
            }
        }

        let upgrade = convert::is_upgrade_request(&head.method, &head.headers)
            && self.proto == StreamProtocol::Http1;
        let connect = head.method == http::Method::CONNECT;
        if upgrade || connect {
            up_proto = StreamProtocol::Http1;
        }
        let on_upgrade = if upgrade || connect {
            head.extensions.remove::<mosn_stream::server::OnUpgrade>()
        } else {
            None
        };

        // The route's timeout; an RPC frame's own (Bolt `timeout`) when shorter or alone.
        let frame_timeout = head
            .extensions
            .get::<Meta>()
            .and_then(|m| m.frame().timeout());
        let deadline = match (forward.timeout(), frame_timeout) {
            (Some(route), Some(frame)) => route.min(frame),
            (route, frame) => route.or(frame).unwrap_or(self.spec.default_timeout),
        };
        let deadline = r.started + deadline;
        let max_attempts = 1 + retry.as_ref().map_or(0, |p| p.num_retries);
        let settings = self.upstream_settings(&cluster);
        let mut tried = Tried::default();
        let keep_head = max_attempts > 1 || !self.spec.filters.is_empty();
        let mut last: Option<LocalReply> = None;
        for attempt in 1..=max_attempts {
            if attempt > 1 {
                self.spec.stats.retries.inc();
                cluster.stats.requests.retries.inc();
            }
            let ctx = LbContext {
                original_dst: self.original_dst,
                hash_key: None,
                avoid: tried.as_slice(),
                metadata_match: Some(&metadata_match),
            };
            let Some(host) = cluster.choose(&ctx) else {
                return Err(local_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no healthy upstream\n",
                    ResponseFlags::NO_HEALTHY_UPSTREAM,
                ));
            };
            let addr = host.address();
            tried.push(addr);
            r.log.upstream_host = Some(addr);
            if r.logging {
                r.log.upstream_hostname = Some(Arc::from(host.hostname()));
            }
            if attempt == 1 && filters.has_phase(Phase::AfterChooseHost) {
                self.run_filters(
                    Phase::AfterChooseHost,
                    head,
                    r,
                    &mut upstream_protocol,
                    Stage {
                        route: Some(&hit),
                        cluster: Some(cluster.name()),
                        host: Some(addr),
                    },
                )
                .await?;
                if let Some(p) = upstream_protocol.as_deref() {
                    if let Some(p) = super::stream_protocol_by_name(p) {
                        if !(upgrade || connect) {
                            up_proto = p;
                        }
                    }
                }
            }
            // Head for this attempt: routed rewrite, then re-encoded for the upstream protocol.
            // The downstream head is copied only when something reads it again (another
            // attempt, the response and log filters); else it moves.
            let mut parts = if keep_head {
                copy_head(head)
            } else {
                take_head(head)
            };
            hit.route()
                .rewrite_request(&mut parts, Some(host.hostname()));
            if up_proto.is_http()
                && convert::authority(&parts.uri, &parts.headers).is_none()
                && parts.extensions.get::<Meta>().is_some()
            {
                // An RPC request has no authority of its own: name the upstream.
                if let Ok(v) = HeaderValue::from_str(&addr.to_string()) {
                    parts.headers.insert(header::HOST, v);
                }
            }
            if convert::request_for_upstream(&mut parts, up_proto, upgrade).is_err() {
                return Err(local_reply(
                    StatusCode::BAD_REQUEST,
                    "bad request authority\n",
                    ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
                ));
            }

            let observer = || -> Rc<dyn ConnObserver> {
                Rc::new(HostObserver {
                    host: host.clone(),
                    cluster: cluster.clone(),
                })
            };
            let settings = settings.for_host(host.tls_disabled());
            if connect {
                return self
                    .tunnel_connect(addr, &settings, observer(), on_upgrade, r)
                    .await;
            }
            let per_try = retry
                .as_ref()
                .and_then(|p| p.retry_timeout)
                .map_or(deadline, |t| (Instant::now() + t).min(deadline));
            let retries_left = attempt < max_attempts && retry.is_some();

            // Connect (or reuse) first: a failure here has not consumed the body.
            // One timer per attempt bounds both the checkout and the response head.
            let expiry = tokio::time::sleep_until(per_try.into());
            tokio::pin!(expiry);
            let checkout = self.pools.checkout(addr, up_proto, &settings, observer);
            let upstream = match within(checkout, expiry.as_mut()).await {
                Ok(Ok(u)) => u,
                Ok(Err(e)) => {
                    tracing::debug!(listener = %self.spec.listener, upstream = %addr, attempt, error = %e, "upstream connect failed");
                    r.log.upstream_transport_failure_reason = Some(Arc::from(e.to_string()));
                    last = Some(local_reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "upstream connect failure\n",
                        ResponseFlags::UPSTREAM_CONNECT_FAILURE,
                    ));
                    if retries_left {
                        continue;
                    }
                    break;
                }
                Err(_) => {
                    last = Some(self.timed_out(&cluster));
                    if retries_left && Instant::now() < deadline {
                        continue;
                    }
                    break;
                }
            };
            let Some(body) = replayable.take() else {
                break;
            };
            host.stats.rq_total.inc();
            cluster.stats.rq_total.inc();
            let _active = (
                mosn_metrics::GaugeGuard::new(&*host.stats.rq_active),
                mosn_metrics::GaugeGuard::new(&*cluster.stats.rq_active),
            );
            let sent_at = Instant::now();
            r.log.request_received_duration = Some(sent_at - r.started);
            let sent = upstream.send(Request::from_parts(parts, body));
            match within(sent, expiry.as_mut()).await {
                Ok(Ok(mut resp)) => {
                    let status = resp.status();
                    let now = Instant::now();
                    cluster
                        .stats
                        .requests
                        .finish(status.as_u16(), now - sent_at);
                    let retry_status = retry.as_ref().is_some_and(|p| p.retries_status(status));
                    if retries_left && retry_status && replayable.is_some() {
                        last = Some(local_reply(status, "", ResponseFlags::NONE));
                        continue;
                    }
                    if retry_status && !retries_left {
                        // The last try's retriable answer goes downstream as it is; the log
                        // says the retries ran out (Envoy's URX on an upstream 5xx).
                        r.flag(ResponseFlags::RETRY_LIMIT_EXCEEDED);
                    }
                    r.log.response_received_duration = Some(now - r.started);
                    if let Some(down) = on_upgrade {
                        if status == StatusCode::SWITCHING_PROTOCOLS {
                            let up = resp.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
                            super::tunnel::spawn_upgrade(down, up, addr);
                        }
                    }
                    return Ok(self.respond(resp, &hit, head, up_proto, r));
                }
                Ok(Err(e)) => {
                    // The request body stopped on our side (limit, filter, or a downstream
                    // read error such as broken chunk framing): not the upstream's fault.
                    if r.body_state.as_ref().is_some_and(|st| {
                        st.too_large.get()
                            || st.failed.get().is_some()
                            || st.rejected.borrow().is_some()
                    }) {
                        return Err(self.body_failure(r));
                    }
                    tracing::debug!(listener = %self.spec.listener, upstream = %addr, attempt, error = %e, "upstream request failed");
                    cluster.stats.requests.failed.inc();
                    last = Some(upstream_failure(&e));
                    if retries_left && replayable.is_some() {
                        continue;
                    }
                    break;
                }
                Err(_) => {
                    last = Some(self.timed_out(&cluster));
                    if retries_left && replayable.is_some() && Instant::now() < deadline {
                        continue;
                    }
                    break;
                }
            }
        }
        let mut reply = last.unwrap_or_else(|| {
            local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream unavailable\n",
                ResponseFlags::UPSTREAM_CONNECT_FAILURE,
            )
        });
        if max_attempts > 1 {
            reply.flags.insert(ResponseFlags::RETRY_LIMIT_EXCEEDED);
        }
        Err(reply)
    }

    pub(super) fn timed_out(&self, cluster: &Cluster) -> LocalReply {
        cluster.stats.requests.timeouts.inc();
        self.spec.stats.timeouts.inc();
        local_reply(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream request timeout\n",
            ResponseFlags::UPSTREAM_TIMEOUT,
        )
    }

    /// The reply for a request body that could not be read in full.
    fn body_failure(&self, r: &Req) -> LocalReply {
        let st = r.body_state.as_deref();
        if let Some(reply) = st.and_then(|st| st.rejected.take()) {
            return reply;
        }
        if st.is_some_and(|st| st.too_large.get()) {
            return local_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large\n",
                ResponseFlags::PAYLOAD_TOO_LARGE,
            );
        }
        match st.and_then(|st| st.failed.get()) {
            Some(BodyFailure::Gone) => local_reply(
                CLIENT_CLOSED_REQUEST,
                "client closed request\n",
                ResponseFlags::DOWNSTREAM_TERMINATION,
            ),
            _ => local_reply(
                StatusCode::BAD_REQUEST,
                "request body error\n",
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
            ),
        }
    }

    /// Reads a small body fully so retries can send it again; a large or unbounded body is
    /// streamed once (retries then only cover failures before it was sent).
    async fn buffer_for_retry(&self, body: Body, r: &Req) -> Result<Replay, LocalReply> {
        if body.is_end_stream() {
            return Ok(Replay::Buffered(Bytes::new(), None));
        }
        let fits = body
            .size_hint()
            .upper()
            .is_some_and(|n| n <= self.spec.retry_buffer_limit as u64);
        if !fits {
            return Ok(Replay::Once(Some(body)));
        }
        match body.collect().await {
            Ok(c) => {
                let trailers = c.trailers().cloned();
                Ok(Replay::Buffered(c.to_bytes(), trailers))
            }
            Err(_) => Err(self.body_failure(r)),
        }
    }

    fn respond(
        &self,
        resp: Response<Body>,
        hit: &RouteHit,
        head: &http::request::Parts,
        up_proto: StreamProtocol,
        r: &mut Req,
    ) -> Response<Body> {
        let (mut parts, body) = resp.into_parts();
        convert::response_for_downstream(&mut parts, self.proto);
        hit.route().apply_response_headers(&mut parts.headers);
        let chain = &self.spec.filters;
        let overrides = self.spec.route_overrides(hit);
        let mut from = 0;
        loop {
            let v = {
                let mut ctx = ResponseCtx {
                    head: &mut parts,
                    request: RequestView::from(head),
                    downstream_protocol: self.proto.name(),
                    upstream_protocol: Some(up_proto.name()),
                    route_overrides: overrides,
                    flags: r.log.response_flags,
                };
                chain.run_response_from(from, &mut ctx)
            };
            match v.verdict {
                Verdict::Continue => break,
                Verdict::Reply(reply) => {
                    r.flag(reply.flags);
                    return self.local_response(reply);
                }
                // A response hook cannot sleep: treat a delay as continue.
                Verdict::Delay { then, .. } => {
                    if let Some(reply) = then {
                        r.flag(reply.flags);
                        return self.local_response(reply);
                    }
                    from = v.resume_from;
                }
            }
        }
        Response::from_parts(parts, body)
    }

    async fn tunnel_connect(
        &self,
        addr: SocketAddr,
        settings: &UpstreamSettings,
        obs: Rc<dyn ConnObserver>,
        on_upgrade: Option<mosn_stream::server::OnUpgrade>,
        r: &mut Req,
    ) -> Result<Response<Body>, LocalReply> {
        let Some(down) = on_upgrade else {
            return Err(local_reply(
                StatusCode::BAD_REQUEST,
                "CONNECT needs HTTP/1.1\n",
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
            ));
        };
        match self.pools.connect_raw(addr, settings, obs).await {
            Ok(conn) => {
                r.log.response_received_duration = Some(r.started.elapsed());
                super::tunnel::spawn_connect(down, conn, addr);
                Ok(Response::new(Body::empty()))
            }
            Err(e) => {
                r.log.upstream_transport_failure_reason = Some(Arc::from(e.to_string()));
                Err(local_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream connect failure\n",
                    ResponseFlags::UPSTREAM_CONNECT_FAILURE,
                ))
            }
        }
    }

    /// Wraps the response body so the request is finished (stats, logs) when it ends.
    fn finish(
        &self,
        head: http::request::Parts,
        mut r: Box<Req>,
        resp: Response<Body>,
    ) -> Response<Body> {
        let status = resp.status();
        r.log.response_code = Some(u32::from(status.as_u16()));
        for name in self.spec.log_response_headers.iter().filter(|_| r.logging) {
            for v in resp.headers().get_all(name) {
                r.log.response_headers.append(name.clone(), v.clone());
            }
        }
        let spec = self.spec.clone();
        // Only stream filters read the request at the end.
        let head = (!spec.filters.is_empty()).then_some(head);
        let (parts, body) = resp.into_parts();
        let body = ResponseBody::new(body, move |end, sent| {
            let took = r.started.elapsed();
            let log = &mut r.log;
            log.bytes_sent = sent;
            log.bytes_received = r.body_state.as_ref().map_or(0, |st| st.received.get());
            log.duration = Some(took);
            log.request_finished_duration = Some(took);
            match end {
                BodyEnd::Complete => {}
                BodyEnd::UpstreamError => log
                    .response_flags
                    .insert(ResponseFlags::UPSTREAM_TERMINATION),
                BodyEnd::Dropped => log
                    .response_flags
                    .insert(ResponseFlags::DOWNSTREAM_TERMINATION),
            }
            spec.stats.active.dec();
            spec.stats.finish(status.as_u16(), took);
            if !log.response_flags.is_empty() && status.as_u16() >= 400 {
                spec.stats.failed.inc();
            }
            for al in spec.access_logs.iter() {
                al.log(log);
            }
            if let Some(head) = &head {
                spec.filters.run_log(&filter::LogRecord {
                    request: RequestView::from(head),
                    status: Some(status),
                    flags: log.response_flags,
                    duration: took,
                    route_overrides: None,
                });
            }
        });
        Response::from_parts(parts, Body::new(body))
    }
}

/// What the router sees of a request head (a CONNECT's empty path reads as `/`).
fn route_input(head: &http::request::Parts) -> RouteInput<'_> {
    let mut input = RouteInput::from_parts(head, "http");
    if input.path.is_empty() {
        input.path = "/";
    }
    input
}

/// The local reply for an upstream exchange that failed after the request went out: 502,
/// a protocol error or a reset.
pub(super) fn upstream_failure(e: &mosn_stream::pool::SendError) -> LocalReply {
    if e.is_protocol_error() {
        local_reply(
            StatusCode::BAD_GATEWAY,
            "upstream protocol error\n",
            ResponseFlags::UPSTREAM_PROTOCOL_ERROR,
        )
    } else {
        local_reply(
            StatusCode::BAD_GATEWAY,
            "upstream reset\n",
            ResponseFlags::UPSTREAM_TERMINATION,
        )
    }
}

/// `fut`'s output, or `Err(())` once `expiry` fires (the same timer may bound several steps).
pub(super) async fn within<F: std::future::Future>(
    fut: F,
    expiry: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Result<F::Output, ()> {
    tokio::select! {
        biased;
        out = fut => Ok(out),
        () = expiry => Err(()),
    }
}

/// A copy of a request head without its extensions (which are per-connection state), but
/// with an RPC request's own fields ([`Meta`]).
fn copy_head(head: &http::request::Parts) -> http::request::Parts {
    let mut r = Request::new(());
    *r.method_mut() = head.method.clone();
    *r.uri_mut() = head.uri.clone();
    *r.version_mut() = head.version;
    *r.headers_mut() = head.headers.clone();
    if let Some(m) = head.extensions.get::<Meta>() {
        r.extensions_mut().insert(m.clone());
    }
    r.into_parts().0
}

/// Moves the parts of a request head the upstream request needs out of `head`, leaving it
/// empty (for when nothing reads the downstream head again).
fn take_head(head: &mut http::request::Parts) -> http::request::Parts {
    let mut r = Request::new(());
    *r.method_mut() = head.method.clone();
    *r.uri_mut() = std::mem::take(&mut head.uri);
    *r.version_mut() = head.version;
    *r.headers_mut() = std::mem::take(&mut head.headers);
    if let Some(m) = head.extensions.remove::<Meta>() {
        r.extensions_mut().insert(m);
    }
    r.into_parts().0
}

/// The hosts a request already tried (the load balancer avoids them), without allocating:
/// the last [`Tried::CAP`] are kept (order does not matter to the balancer).
struct Tried {
    addrs: [SocketAddr; Tried::CAP],
    len: usize,
}

impl Default for Tried {
    fn default() -> Self {
        Tried {
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); Tried::CAP],
            len: 0,
        }
    }
}

impl Tried {
    const CAP: usize = 8;

    fn push(&mut self, a: SocketAddr) {
        self.addrs[self.len % Self::CAP] = a;
        self.len += 1;
    }

    fn as_slice(&self) -> &[SocketAddr] {
        &self.addrs[..self.len.min(Self::CAP)]
    }
}

/// Sends a shadow copy of a request to a mirror cluster and discards the answer.
async fn mirror<T: Transport>(
    pools: Rc<Pools<T>>,
    cluster: Arc<Cluster>,
    proto: StreamProtocol,
    req: Request<Body>,
) where
    T::Conn: Send,
{
    let Some(host) = cluster.choose(&LbContext::default()) else {
        return;
    };
    let settings = UpstreamSettings {
        connect_timeout: cluster.connect_timeout(),
        max_request_per_conn: cluster.spec().max_request_per_conn,
        rpc: xprotocol::RpcSettings {
            // A mirror must not share a downstream connection's bound upstream.
            pool_mode: xprotocol::PoolMode::Multiplex,
            ..xprotocol::RpcSettings::default()
        },
        tls: cluster.spec().tls.as_ref().map(|t| t.config.clone()),
    };
    let observer = || -> Rc<dyn ConnObserver> {
        Rc::new(HostObserver {
            host: host.clone(),
            cluster: cluster.clone(),
        })
    };
    let settings = settings.for_host(host.tls_disabled());
    let sent = async {
        let up = pools
            .checkout(host.address(), proto, &settings, observer)
            .await?;
        let resp = up.send(req).await?;
        let _ = resp.into_body().collect().await;
        Ok::<_, mosn_stream::pool::SendError>(())
    };
    match tokio::time::timeout(MIRROR_TIMEOUT, sent).await {
        Ok(Ok(())) => cluster.stats.rq_total.inc(),
        Ok(Err(e)) => {
            tracing::debug!(cluster = cluster.name(), error = %e, "mirror request failed")
        }
        Err(_) => tracing::debug!(cluster = cluster.name(), "mirror request timed out"),
    }
}

/// How long a mirrored request may take before it is abandoned.
const MIRROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A request body that can be sent once, or again (retries).
enum Replay {
    Once(Option<Body>),
    Buffered(Bytes, Option<http::HeaderMap>),
}

impl Replay {
    /// The body for the next send: a streamed body once, a buffered one every time.
    fn take(&mut self) -> Option<Body> {
        match self {
            Replay::Once(b) => b.take(),
            Replay::Buffered(..) => self.copy(),
        }
    }

    /// Another copy of a buffered body; `None` for a streamed one.
    fn copy(&self) -> Option<Body> {
        match self {
            Replay::Once(_) => None,
            Replay::Buffered(bytes, None) => Some(Body::full(bytes.clone())),
            Replay::Buffered(bytes, Some(t)) => Some(Body::from_frames(vec![
                http_body::Frame::data(bytes.clone()),
                http_body::Frame::trailers(t.clone()),
            ])),
        }
    }

    fn is_some(&self) -> bool {
        !matches!(self, Replay::Once(None))
    }
}
