//! From a validated config to the plan the server runs: the only place that reads
//! `mosn_config` types and turns them into the small specs of the lower layers.

use std::sync::Arc;

use mosn_config as cfg;
use mosn_net::ListenSpec;
use mosn_proxy::cluster::{ClusterKind, ClusterSpec, HostSource};
use mosn_proxy::lb::LbType;
use mosn_proxy::tcp_proxy::{TcpProxySpec, TcpRoute};

use crate::logging::LogTarget;
use crate::run::{FilterPlan, ListenerPlan, Plan};

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
    for (si, s) in config.servers.iter().enumerate() {
        for (li, l) in s.listeners.iter().enumerate() {
            let path = format!("servers[{si}].listeners[{li}]");
            match listener_plan(l, &path) {
                Ok(p) => listeners.push(p),
                Err(e) => problems.push(e),
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let clusters = config.clusters.iter().map(cluster_spec).collect();
    let (log_target, log_level) = match server {
        Some(s) => (
            log_target(&s.default_log_path),
            s.default_log_level.as_str().to_string(),
        ),
        None => (LogTarget::Stderr, "INFO".to_string()),
    };
    Ok(Plan {
        workers: server.map(|s| s.processor).unwrap_or(1).max(1),
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

/// Where `default_log_path` sends log lines.
pub fn log_target(p: &cfg::LogPath) -> LogTarget {
    match p {
        cfg::LogPath::Stdout => LogTarget::Stdout,
        cfg::LogPath::Stderr => LogTarget::Stderr,
        cfg::LogPath::File(f) => LogTarget::File(f.clone()),
    }
}

fn listener_plan(l: &cfg::Listener, path: &str) -> Result<ListenerPlan, Unsupported> {
    if l.network != cfg::Network::Tcp {
        return Err(Unsupported {
            path: format!("{path}.network"),
            reason: format!(
                "{} listeners are not supported yet; this build serves tcp",
                l.network.as_str()
            ),
        });
    }
    let mut tcp = None;
    let mut others = Vec::new();
    for chain in &l.filter_chains {
        for f in &chain.filters {
            match f {
                cfg::NetworkFilter::TcpProxy(t) if tcp.is_none() => tcp = Some(t),
                cfg::NetworkFilter::TcpProxy(_) => others.push("a second tcp_proxy".to_string()),
                cfg::NetworkFilter::Proxy(_) => others.push("proxy (the L7 proxy)".to_string()),
                cfg::NetworkFilter::Other { kind, .. } => others.push(kind.clone()),
            }
        }
    }
    let Some(t) = tcp else {
        return Err(Unsupported {
            path: format!("{path}.filter_chains"),
            reason: if others.is_empty() {
                "no network filter: this build needs a tcp_proxy filter".to_string()
            } else {
                format!(
                    "network filter(s) {} not available in this build yet (it runs tcp_proxy)",
                    others.join(", ")
                )
            },
        });
    };
    if !others.is_empty() {
        return Err(Unsupported {
            path: format!("{path}.filter_chains"),
            reason: format!("tcp_proxy cannot be combined with {}", others.join(", ")),
        });
    }
    if l.filter_chains
        .iter()
        .any(|c| c.tls_context.as_ref().is_some_and(|t| t.enabled))
    {
        return Err(Unsupported {
            path: format!("{path}.filter_chains[0].tls_context"),
            reason: "TLS listeners are not available in this build yet".to_string(),
        });
    }
    let mut listen = ListenSpec::new(l.address);
    listen.reuseport = l.reuseport;
    Ok(ListenerPlan {
        name: Arc::from(l.name.as_str()),
        listen,
        bind: l.bind_port,
        buffer_limit: l.per_connection_buffer_limit_bytes as usize,
        idle_timeout: l.connection_idle_timeout,
        filter: FilterPlan::TcpProxy(tcp_proxy_spec(t)),
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
            })
            .collect(),
        connect_timeout: c.connect_timeout,
        max_request_per_conn: c.max_request_per_conn,
        conn_buffer_limit_bytes: c.conn_buffer_limit_bytes,
    }
}
