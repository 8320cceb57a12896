//! From a validated config to the plan the server runs: the only place that reads
//! `mosn_config` types and turns them into the small specs of the lower layers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mosn_config as cfg;
use mosn_ebpf::{CaptureSpec, Destination, Mode, OnFailure};
use mosn_net::ListenSpec;
use mosn_proxy::accesslog::AccessLogFormat;
use mosn_proxy::cluster::{
    ClusterKind, ClusterSpec, ClusterTls, HostSource, SubsetFallback, SubsetSpec,
};
use mosn_proxy::filter::{FilterChain, FilterRegistry};
use mosn_proxy::lb::LbType;
use mosn_proxy::router::RouterSet;
use mosn_proxy::tcp_proxy::{TcpProxySpec, TcpRoute};
use mosn_stream::server::ServerLimits;
use mosn_stream::xprotocol::{PoolMode, RpcServerSettings, RpcSettings};
use mosn_stream::StreamProtocol;
use serde_json::Value;

use crate::dpdk::DpdkPlan;
use crate::logging::LogTarget;
use crate::run::{Backend, FilterPlan, HttpPlan, ListenerPlan, Plan};

/// Upstream timeout of a route that sets none (MOSN's global default).
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(60);
/// Request bodies up to this size are buffered for retries.
pub const RETRY_BUFFER_LIMIT: usize = 64 * 1024;
/// How long a connection on a multi-protocol listener may take to show its protocol.
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a `dpdk` backend cannot start in a build without the cargo feature.
pub const NO_DPDK: &str =
    "this mosn was built without DPDK support (rebuild with `cargo build --release --features dpdk`)";

/// A config that is valid but asks for something this build does not run yet.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Unsupported {
    /// JSON path of the offending piece.
    pub path: String,
    /// What is missing.
    pub reason: String,
}

/// Builds the plan for `config`. Listeners whose filter chain this build cannot serve are
/// reported together.
pub fn plan(config: &cfg::Config) -> Result<Plan, Vec<Unsupported>> {
    let mut problems = Vec::new();
    let mut listeners = Vec::new();
    let server = config.servers.first();
    let routers = match RouterSet::build(&config.routers) {
        Ok(r) => r,
        Err(errs) => {
            return Err(errs
                .into_iter()
                .map(|e| Unsupported {
                    path: e.path,
                    reason: e.reason,
                })
                .collect())
        }
    };
    let filters = FilterRegistry::with_builtins();
    let ctx = PlanCtx {
        routers: &routers,
        filters: &filters,
    };
    for (si, s) in config.servers.iter().enumerate() {
        for (li, l) in s.listeners.iter().enumerate() {
            let path = format!("servers[{si}].listeners[{li}]");
            match listener_plan(l, &path, &ctx) {
                Ok(p) => listeners.push(p),
                Err(e) => problems.push(e),
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut clusters = Vec::new();
    for (i, c) in config.clusters.iter().enumerate() {
        let mut spec = cluster_spec(c);
        match cluster_tls(c, &format!("cluster_manager.clusters[{i}].tls_context")) {
            Ok(tls) => spec.tls = tls,
            Err(e) => problems.push(e),
        }
        clusters.push(spec);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (log_target, log_level) = match server {
        Some(s) => (
            log_target(&s.default_log_path),
            s.default_log_level.as_str().to_string(),
        ),
        None => (LogTarget::Stderr, "INFO".to_string()),
    };
    let capture = match &config.traffic_capture {
        Some(t) if t.mode != cfg::CaptureMode::None => {
            let spec = capture_spec(t);
            check_capture_listener(&spec, &listeners)?;
            Some(spec)
        }
        _ => None,
    };
    let backend = backend_plan(config)?;
    Ok(Plan {
        workers: server.map(|s| s.processor).unwrap_or(1).max(1),
        backend,
        upstream_mark: capture.as_ref().and_then(|c| c.proxy_mark),
        capture,
        graceful_timeout: server
            .map(|s| s.graceful_timeout)
            .unwrap_or(cfg::DEFAULT_GRACEFUL_TIMEOUT),
        listeners,
        clusters,
        admin: Some(config.admin.address),
        pid_file: config.pid_file.clone(),
        log_target,
        log_level,
        config_dump: config.dump(),
    })
}

/// The first server's network backend; the config crate has checked its listeners. Only the
/// first server runs (as in MOSN), so a backend on another one is refused rather than ignored.
fn backend_plan(config: &cfg::Config) -> Result<Backend, Vec<Unsupported>> {
    for (i, s) in config.servers.iter().enumerate().skip(1) {
        if s.network_backend != cfg::NetworkBackend::Kernel {
            return Err(vec![Unsupported {
                path: format!("servers[{i}].network_backend"),
                reason: "only the first server's network backend is used; move it to servers[0]"
                    .into(),
            }]);
        }
    }
    match config.servers.first().map(|s| &s.network_backend) {
        None | Some(cfg::NetworkBackend::Kernel) => Ok(Backend::Kernel),
        Some(cfg::NetworkBackend::Dpdk(d)) => {
            if !cfg!(feature = "dpdk") {
                return Err(vec![Unsupported {
                    path: "servers[0].network_backend.type".into(),
                    reason: format!("\"dpdk\": {NO_DPDK}"),
                }]);
            }
            Ok(Backend::Dpdk(DpdkPlan {
                eal_args: d.eal_args.clone(),
                port: d.port.clone(),
                address: d.address,
                gateway: d.gateway,
                address6: d.address6,
                gateway6: d.gateway6,
                routes: d.routes.iter().map(|r| (r.destination, r.via)).collect(),
                mtu: d.mtu,
                queues: d.queues,
                rx_interrupts: d.poll_mode == mosn_config::DpdkPollMode::Interrupt,
                mempool_size: d.mempool_size,
                rx_buffer: d.rx_buffer,
                tx_buffer: d.tx_buffer,
            }))
        }
    }
}

fn capture_spec(t: &cfg::TrafficCapture) -> CaptureSpec {
    let dest = |d: &cfg::CaptureDestination| Destination::new(d.net, d.port);
    CaptureSpec {
        mode: match t.mode {
            cfg::CaptureMode::None => Mode::None,
            cfg::CaptureMode::Ebpf => Mode::Ebpf,
            cfg::CaptureMode::Iptables => Mode::Iptables,
        },
        on_failure: match t.on_failure {
            cfg::CaptureFailurePolicy::Fallback => OnFailure::Fallback,
            cfg::CaptureFailurePolicy::Refuse => OnFailure::Refuse,
        },
        cgroup: t.cgroup_path.clone().unwrap_or_default(),
        proxy_cgroup: t.proxy_cgroup_path.clone(),
        outbound_port: t.outbound_port,
        inbound_port: t.inbound_port,
        inbound_ports: t.inbound_ports.clone(),
        inbound_exclude_sources: t.inbound_exclude_sources.clone(),
        proxy_uid: t.proxy_uid,
        proxy_mark: t.proxy_mark,
        destinations: t.destinations.iter().map(dest).collect(),
        exclude_destinations: t.exclude_destinations.iter().map(dest).collect(),
        exclude_ports: t.exclude_ports.clone(),
        sockmap: t.sockmap,
        pin_root: t.bpffs_pin_path.clone(),
        instance: t.instance.clone(),
        ..CaptureSpec::default()
    }
}

/// Captured outbound connections arrive at the outbound port on loopback: some listener
/// must take them there and hand them on by their original destination. Captured inbound
/// connections arrive at the inbound listener (iptables: redirected to its port on the
/// receiving interface's address, so it must listen on every address; eBPF: handed to its
/// socket as they are), which does the same.
fn check_capture_listener(
    spec: &CaptureSpec,
    listeners: &[ListenerPlan],
) -> Result<(), Vec<Unsupported>> {
    let mut problems = Vec::new();
    let outbound = |l: &ListenerPlan| {
        l.bind
            && l.use_original_dst
            && l.listen.addr.port() == spec.outbound_port
            && (l.listen.addr.ip().is_loopback() || l.listen.addr.ip().is_unspecified())
    };
    if !spec.destinations.is_empty() && !listeners.iter().any(outbound) {
        problems.push(Unsupported {
            path: "traffic_capture.outbound_port".to_string(),
            reason: format!(
                "captured connections go to 127.0.0.1:{}, but no listener there has \"use_original_dst\": \"redirect\"",
                spec.outbound_port
            ),
        });
    }
    if !spec.inbound_ports.is_empty() && inbound_listener(spec, listeners).is_none() {
        problems.push(Unsupported {
            path: "traffic_capture.inbound_port".to_string(),
            reason: format!(
                "captured inbound connections go to port {}, but no listener on 0.0.0.0:{0} or [::]:{0} has \"use_original_dst\": \"redirect\"",
                spec.inbound_port
            ),
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The listener that takes captured inbound connections: bound, `use_original_dst`, on
/// every address at `inbound_port`.
pub(crate) fn inbound_listener<'a>(
    spec: &CaptureSpec,
    listeners: &'a [ListenerPlan],
) -> Option<&'a ListenerPlan> {
    listeners.iter().find(|l| {
        l.bind
            && l.use_original_dst
            && l.listen.addr.port() == spec.inbound_port
            && l.listen.addr.ip().is_unspecified()
    })
}

/// Where `default_log_path` sends log lines.
pub fn log_target(p: &cfg::LogPath) -> LogTarget {
    match p {
        cfg::LogPath::Stdout => LogTarget::Stdout,
        cfg::LogPath::Stderr => LogTarget::Stderr,
        cfg::LogPath::File(f) => LogTarget::File(f.clone()),
    }
}

/// What every listener's plan may refer to.
struct PlanCtx<'a> {
    routers: &'a RouterSet,
    filters: &'a FilterRegistry,
}

fn listener_plan(
    l: &cfg::Listener,
    path: &str,
    ctx: &PlanCtx<'_>,
) -> Result<ListenerPlan, Unsupported> {
    if l.network != cfg::Network::Tcp {
        return Err(Unsupported {
            path: format!("{path}.network"),
            reason: format!(
                "{} listeners are not supported yet; this build serves tcp",
                l.network.as_str()
            ),
        });
    }
    // The one terminal filter this build runs: tcp_proxy or proxy.
    enum Serving<'a> {
        Tcp(&'a cfg::TcpProxy),
        Http(&'a cfg::ProxyFilter),
    }
    let mut chosen: Option<(usize, usize, &cfg::NetworkFilter, Serving<'_>)> = None;
    let mut others = Vec::new();
    for (ci, chain) in l.filter_chains.iter().enumerate() {
        for (fi, f) in chain.filters.iter().enumerate() {
            let serving = match f {
                cfg::NetworkFilter::TcpProxy(t) => Serving::Tcp(t),
                cfg::NetworkFilter::Proxy(p) => Serving::Http(p),
                cfg::NetworkFilter::Other { kind, .. } => {
                    others.push(kind.clone());
                    continue;
                }
            };
            match &chosen {
                Some((_, _, prev, _)) => {
                    others.push(format!("{} after {}", filter_name(f), filter_name(prev)))
                }
                None => chosen = Some((ci, fi, f, serving)),
            }
        }
    }
    let Some((ci, fi, f, serving)) = chosen else {
        return Err(Unsupported {
            path: format!("{path}.filter_chains"),
            reason: if others.is_empty() {
                "no network filter: a listener needs a tcp_proxy or proxy filter".to_string()
            } else {
                format!(
                    "network filter(s) {} not available in this build (it runs tcp_proxy and proxy)",
                    others.join(", ")
                )
            },
        });
    };
    if !others.is_empty() {
        return Err(Unsupported {
            path: format!("{path}.filter_chains"),
            reason: format!(
                "{} cannot be combined with {}",
                filter_name(f),
                others.join(", ")
            ),
        });
    }
    let fpath = format!("{path}.filter_chains[{ci}].filters[{fi}].config");
    let filter = match serving {
        Serving::Tcp(t) => FilterPlan::TcpProxy(tcp_proxy_spec(t)),
        Serving::Http(p) => FilterPlan::Http(Box::new(http_plan(l, p, path, &fpath, ctx)?)),
    };
    let tls = listener_tls(l, path)?;
    if l.use_original_dst == Some(cfg::OriginalDst::Tproxy) {
        return Err(Unsupported {
            path: format!("{path}.use_original_dst"),
            reason: "tproxy is not available in this build yet; use redirect".to_string(),
        });
    }
    let mut listen = ListenSpec::new(l.address);
    listen.reuseport = l.reuseport;
    Ok(ListenerPlan {
        name: Arc::from(l.name.as_str()),
        use_original_dst: l.use_original_dst == Some(cfg::OriginalDst::Redirect),
        listen,
        bind: l.bind_port,
        buffer_limit: l.per_connection_buffer_limit_bytes as usize,
        idle_timeout: l.connection_idle_timeout,
        filter,
        tls,
    })
}

/// The listener's TLS from its first filter chain: `tls_context_set` (several certificates,
/// by SNI) or `tls_context`, when enabled (`status: true`); certificates are loaded now, so a
/// bad file stops start-up with its path.
fn listener_tls(l: &cfg::Listener, path: &str) -> Result<Option<crate::run::TlsPlan>, Unsupported> {
    let Some(chain) = l.filter_chains.first() else {
        return Ok(None);
    };
    let (contexts, at): (Vec<cfg::TlsContext>, String) = if !chain.tls_context_set.is_empty() {
        (
            chain
                .tls_context_set
                .iter()
                .filter(|t| t.enabled)
                .cloned()
                .collect(),
            format!("{path}.filter_chains[0].tls_context_set"),
        )
    } else {
        (
            chain
                .tls_context
                .iter()
                .filter(|t| t.enabled)
                .cloned()
                .collect(),
            format!("{path}.filter_chains[0].tls_context"),
        )
    };
    if contexts.is_empty() {
        if l.inspector {
            tracing::warn!(listener = %l.name, "inspector is set but no TLS context is enabled: serving plaintext only");
        }
        return Ok(None);
    }
    let config =
        mosn_tls_offload::ServerConfig::build(&contexts, &at).map_err(|e| tls_problem(&at, e))?;
    Ok(Some(crate::run::TlsPlan {
        config,
        inspector: l.inspector,
    }))
}

fn filter_name(f: &cfg::NetworkFilter) -> &str {
    match f {
        cfg::NetworkFilter::TcpProxy(_) => "tcp_proxy",
        cfg::NetworkFilter::Proxy(_) => "proxy",
        cfg::NetworkFilter::Other { kind, .. } => kind,
    }
}

/// What `Auto` (or an empty `downstream_protocol`) detects among.
const AUTO_PROTOCOLS: [StreamProtocol; 4] = [
    StreamProtocol::Http1,
    StreamProtocol::Http2,
    StreamProtocol::Bolt,
    StreamProtocol::Dubbo,
];

fn stream_protocol(p: cfg::Protocol, path: &str) -> Result<Option<StreamProtocol>, Unsupported> {
    if p == cfg::Protocol::Auto {
        return Ok(None);
    }
    match mosn_proxy::http::stream_protocol(p) {
        Some(sp) => Ok(Some(sp)),
        None => Err(Unsupported {
            path: path.to_string(),
            reason: format!(
                "protocol {p} is not available in this build (Http1, Http2, bolt, boltv2, SofaRpc and dubbo are)"
            ),
        }),
    }
}

/// The first `extend_config` value for `key` in the section of any of `protos`.
fn extend_value<'a>(
    p: &'a cfg::ProxyFilter,
    protos: &[&str],
    key: &str,
) -> Option<(String, &'a Value)> {
    protos.iter().find_map(|proto| {
        let (pk, section) = p
            .extend_config
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(proto))?;
        let v = section.as_object()?.get(key)?;
        Some((format!("extend_config.{pk}.{key}"), v))
    })
}

/// The RPC sections of `extend_config`.
const RPC_SECTIONS: [&str; 4] = ["bolt", "boltv2", "SofaRpc", "dubbo"];

/// RPC settings from the proxy filter's `extend_config` (`{"bolt": {...}}`):
/// `enable_bolt_goaway` (MOSN's), `pool_mode` (`multiplex` | `pingpong` | `binding`),
/// `connections_per_host`, `heartbeat_interval` (a duration; `0s` turns heartbeats off),
/// `heartbeat_max_failures`, `max_frame_size`, `max_inflight`.
fn rpc_settings(
    p: &cfg::ProxyFilter,
    fpath: &str,
) -> Result<(RpcServerSettings, RpcSettings), Unsupported> {
    let mut server = RpcServerSettings::default();
    let mut up = RpcSettings::default();
    let bad = |at: &str, reason: &str| Unsupported {
        path: format!("{fpath}.{at}"),
        reason: reason.to_string(),
    };
    let uint = |key: &str| -> Result<Option<u64>, Unsupported> {
        match extend_value(p, &RPC_SECTIONS, key) {
            None => Ok(None),
            Some((at, v)) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(&at, "must be a non-negative integer")),
        }
    };
    if let Some((at, v)) = extend_value(p, &["bolt", "boltv2", "SofaRpc"], "enable_bolt_goaway") {
        server.bolt_goaway = v
            .as_bool()
            .ok_or_else(|| bad(&at, "must be true or false"))?;
    }
    if let Some((at, v)) = extend_value(p, &RPC_SECTIONS, "pool_mode") {
        up.pool_mode = match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("multiplex") => PoolMode::Multiplex,
            Some("pingpong") | Some("ping_pong") => PoolMode::PingPong,
            Some("binding") => PoolMode::Binding,
            _ => {
                return Err(bad(
                    &at,
                    "must be \"multiplex\", \"pingpong\" or \"binding\"",
                ))
            }
        };
    }
    if let Some(n) = uint("connections_per_host")? {
        up.conns_per_host = n.clamp(1, 1024) as usize;
    }
    if let Some((at, v)) = extend_value(p, &RPC_SECTIONS, "heartbeat_interval") {
        let d = v
            .as_str()
            .ok_or_else(|| bad(&at, "must be a duration such as \"15s\""))
            .and_then(|t| cfg::parse_go_duration(t).map_err(|e| bad(&at, &e)))?;
        up.heartbeat_interval = (!d.is_zero()).then_some(d);
    }
    if let Some(n) = uint("heartbeat_max_failures")? {
        up.heartbeat_max_failures = n.clamp(1, 1000) as u32;
    }
    if let Some(n) = uint("max_frame_size")? {
        server.max_frame = n as usize;
        up.max_frame = n as usize;
    }
    if let Some(n) = uint("max_inflight")? {
        server.max_inflight = n.max(1) as usize;
    }
    Ok((server, up))
}

/// A `u64` setting from the proxy's `extend_config`, keyed by protocol name
/// (`{"Http1": {"max_header_size": 16384}}`), case-insensitively.
fn extend_u64(
    p: &cfg::ProxyFilter,
    proto: &str,
    key: &str,
    path: &str,
) -> Result<Option<u64>, Unsupported> {
    let Some((pk, section)) = p
        .extend_config
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(proto))
    else {
        return Ok(None);
    };
    let Some(v) = section.as_object().and_then(|o| o.get(key)) else {
        return Ok(None);
    };
    match v {
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64()),
        _ => Err(Unsupported {
            path: format!("{path}.extend_config.{pk}.{key}"),
            reason: "must be a non-negative integer".to_string(),
        }),
    }
}

fn http_plan(
    l: &cfg::Listener,
    p: &cfg::ProxyFilter,
    lpath: &str,
    fpath: &str,
    ctx: &PlanCtx<'_>,
) -> Result<HttpPlan, Unsupported> {
    let mut downstream = Vec::new();
    for (i, d) in p.downstream_protocols.iter().enumerate() {
        match stream_protocol(*d, &format!("{fpath}.downstream_protocol[{i}]"))? {
            Some(sp) if !downstream.contains(&sp) => downstream.push(sp),
            Some(_) => {}
            None => {
                for sp in AUTO_PROTOCOLS {
                    if !downstream.contains(&sp) {
                        downstream.push(sp);
                    }
                }
            }
        }
    }
    if downstream.is_empty() {
        downstream = AUTO_PROTOCOLS.to_vec();
    }
    // One codec reads Bolt v1 and v2: `bolt` and `boltv2` on one listener detect as one.
    if downstream.contains(&StreamProtocol::Bolt) {
        downstream.retain(|p| *p != StreamProtocol::BoltV2);
    }
    let upstream = match p.upstream_protocol {
        Some(u) => stream_protocol(u, &format!("{fpath}.upstream_protocol"))?,
        None => None,
    };
    let router = if p.router_config_name.is_empty() {
        None
    } else {
        Some(ctx.routers.get(&p.router_config_name).ok_or_else(|| Unsupported {
            path: format!("{fpath}.router_config_name"),
            reason: format!("no router named {:?} (define it in servers[].routers or a connection_manager filter)", p.router_config_name),
        })?)
    };
    let chain = FilterChain::build(
        ctx.filters,
        l.stream_filters
            .iter()
            .map(|f| (f.kind.as_str(), &f.config)),
    )
    .map_err(|e| Unsupported {
        path: lpath.to_string(),
        reason: e.reason,
    })?;
    let mut overrides = HashMap::new();
    if let Some(table) = &router {
        for route in table.routes() {
            let o = chain
                .compile_route_overrides(route.per_filter_configs())
                .map_err(|e| Unsupported {
                    path: format!("routers.{}: route {}", table.name(), route.name()),
                    reason: e.reason,
                })?;
            if !o.is_empty() {
                overrides.insert(route.key(), o);
            }
        }
    }
    let mut access_logs = Vec::new();
    for (i, a) in l.access_logs.iter().enumerate() {
        let format = AccessLogFormat::parse(&a.format).map_err(|e| Unsupported {
            path: format!("{lpath}.access_logs[{i}].log_format"),
            reason: e.to_string(),
        })?;
        access_logs.push((a.path.clone(), Arc::new(format)));
    }
    let mut limits = ServerLimits::default();
    if let Some(n) = extend_u64(p, "Http1", "max_header_size", fpath)? {
        limits.max_header_bytes = n as usize;
    }
    if let Some(n) = extend_u64(p, "Http1", "max_headers", fpath)? {
        limits.max_headers = n as usize;
    }
    if let Some(n) = extend_u64(p, "Http2", "max_concurrent_streams", fpath)? {
        limits.h2_max_concurrent_streams = n.min(u64::from(u32::MAX)) as u32;
    }
    if let Some(n) = extend_u64(p, "Http2", "max_header_list_size", fpath)? {
        limits.h2_max_header_list = n.min(u64::from(u32::MAX)) as u32;
    }
    if let Some(t) = l.connection_idle_timeout {
        limits.idle_timeout = t;
    }
    let (rpc_server, rpc_upstream) = rpc_settings(p, fpath)?;
    let max_request_body = extend_u64(p, "Http1", "max_request_body_size", fpath)?.or(extend_u64(
        p,
        "Http2",
        "max_request_body_size",
        fpath,
    )?);
    Ok(HttpPlan {
        downstream,
        upstream,
        router,
        filters: Arc::new(chain),
        overrides: Arc::new(overrides),
        access_logs,
        limits,
        detect_timeout: DETECT_TIMEOUT,
        default_timeout: DEFAULT_ROUTE_TIMEOUT,
        max_request_body,
        retry_buffer_limit: RETRY_BUFFER_LIMIT,
        rpc_server,
        rpc_upstream,
    })
}

fn tcp_proxy_spec(t: &cfg::TcpProxy) -> TcpProxySpec {
    TcpProxySpec {
        stat_prefix: t.stat_prefix.clone(),
        cluster: t.cluster.clone(),
        routes: t
            .routes
            .iter()
            .map(|r| TcpRoute {
                cluster: r.cluster.clone(),
                source_addrs: r.source_addrs.clone(),
                destination_addrs: r.destination_addrs.clone(),
                source_port: r.source_port.map(|p| p.start..=p.end),
                destination_port: r.destination_port.map(|p| p.start..=p.end),
            })
            .collect(),
        idle_timeout: t.idle_timeout,
        max_connect_attempts: t.max_connect_attempts.max(1),
    }
}

/// A TLS configuration error as a problem at its JSON path (the error names the key under
/// `at`, e.g. `...tls_context.cert_chain: cannot read ...`).
fn tls_problem(at: &str, e: mosn_tls_offload::TlsError) -> Unsupported {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((path, reason)) if path.starts_with(at) => Unsupported {
            path: path.to_string(),
            reason: reason.to_string(),
        },
        _ => Unsupported {
            path: at.to_string(),
            reason: text,
        },
    }
}

/// A cluster's upstream TLS, when its `tls_context` is enabled.
fn cluster_tls(c: &cfg::Cluster, path: &str) -> Result<Option<ClusterTls>, Unsupported> {
    let Some(ctx) = c.tls_context.as_ref().filter(|t| t.enabled) else {
        return Ok(None);
    };
    let config =
        mosn_tls_offload::ClientConfig::build(ctx, path).map_err(|e| tls_problem(path, e))?;
    Ok(Some(ClusterTls {
        config: Arc::new(config),
        source: ctx.clone(),
    }))
}

fn cluster_spec(c: &cfg::Cluster) -> ClusterSpec {
    let kind = match c.kind {
        cfg::ClusterType::Simple => ClusterKind::Simple,
        cfg::ClusterType::StrictDns => ClusterKind::StrictDns {
            refresh: c.dns_refresh_rate,
        },
        cfg::ClusterType::OriginalDst => ClusterKind::OriginalDst,
    };
    let lb = match (c.kind, c.lb_type) {
        (cfg::ClusterType::OriginalDst, _) | (_, cfg::LbType::OriginalDst) => LbType::OriginalDst,
        (_, cfg::LbType::Random) => LbType::Random,
        (_, cfg::LbType::RoundRobin) => LbType::RoundRobin,
        (_, cfg::LbType::WeightedRoundRobin) => LbType::WeightedRoundRobin,
        (_, cfg::LbType::LeastRequest) => LbType::LeastRequest,
        (_, cfg::LbType::LeastConnection) => LbType::LeastConnection,
        (_, cfg::LbType::RequestRoundRobin) => LbType::RequestRoundRobin,
        (_, cfg::LbType::Maglev) => LbType::Maglev,
        (_, cfg::LbType::PeakEwma) => {
            tracing::warn!(cluster = %c.name, "LB_PEAK_EWMA is not implemented yet; using LB_LEAST_REQUEST");
            LbType::LeastRequest
        }
    };
    ClusterSpec {
        name: c.name.clone(),
        kind,
        lb,
        hosts: c
            .hosts
            .iter()
            .map(|h| HostSource {
                address: h.address.clone(),
                hostname: h.hostname.clone(),
                weight: h.weight,
                metadata: h.metadata.clone(),
                tls_disable: h.tls_disable,
            })
            .collect(),
        connect_timeout: c.connect_timeout,
        max_request_per_conn: c.max_request_per_conn,
        conn_buffer_limit_bytes: c.conn_buffer_limit_bytes,
        subset: match &c.lb_subset_config {
            // No lb_subset_config: a route's metadata_match still prefers matching hosts.
            None => SubsetSpec::default(),
            Some(s) => SubsetSpec {
                fallback: match s.fall_back_policy {
                    1 => SubsetFallback::AnyEndpoint,
                    2 => SubsetFallback::DefaultSubset,
                    _ => SubsetFallback::NoFallback,
                },
                default_subset: s.default_subset.clone(),
            },
        },
        tls: None,
    }
}
