//! The `tcp_proxy` network filter: pick a cluster by the connection's source and destination,
//! a host by the cluster's load balancer, connect (retrying up to `max_connect_attempts`
//! hosts), then pipe bytes both ways with bounded buffers, half-close and an idle timeout.
//!
//! Generic over [`Transport`], so the same code runs over kernel sockets and over the
//! userspace (smoltcp) stack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use mosn_metrics::{Counter, GaugeGuard};
use mosn_net::pipe::{pipe, Direction, PipeConfig, PipeEnd, PipeObserver, Side};
use mosn_net::{Accepted, Transport};
use tokio::io::{AsyncRead, AsyncWrite};

use mosn_stream::pool::{connect_upstream, ConnObserver, UpstreamSettings};

use crate::cluster::{Cluster, ClusterManager};
use crate::host::Host;
use crate::lb::LbContext;

/// An inclusive port range.
pub type PortRange = std::ops::RangeInclusive<u16>;

/// One `routes[]` entry: the cluster for connections whose addresses match (an empty list or
/// `None` matches anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRoute {
    /// Target cluster.
    pub cluster: String,
    /// Downstream (client) networks.
    pub source_addrs: Vec<IpNet>,
    /// Destination networks (original destination when redirected, else the listener address).
    pub destination_addrs: Vec<IpNet>,
    /// Client ports.
    pub source_port: Option<PortRange>,
    /// Destination ports.
    pub destination_port: Option<PortRange>,
}

impl TcpRoute {
    fn matches(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        let net_ok = |nets: &[IpNet], a: SocketAddr| {
            nets.is_empty() || nets.iter().any(|n| n.contains(&a.ip()))
        };
        let port_ok =
            |r: &Option<PortRange>, a: SocketAddr| r.as_ref().is_none_or(|r| r.contains(&a.port()));
        net_ok(&self.source_addrs, src)
            && net_ok(&self.destination_addrs, dst)
            && port_ok(&self.source_port, src)
            && port_ok(&self.destination_port, dst)
    }
}

/// The filter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpProxySpec {
    /// Prefix for logs.
    pub stat_prefix: String,
    /// Cluster used when no route matches.
    pub cluster: Option<String>,
    /// Routes, tried in order.
    pub routes: Vec<TcpRoute>,
    /// Close the session after this long without traffic.
    pub idle_timeout: Option<Duration>,
    /// Hosts tried before giving up (at least 1).
    pub max_connect_attempts: u32,
}

impl TcpProxySpec {
    /// The cluster for a connection from `src` to `dst`: the first matching route, else the
    /// default cluster.
    pub fn route(&self, src: SocketAddr, dst: SocketAddr) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.matches(src, dst))
            .map(|r| r.cluster.as_str())
            .or(self.cluster.as_deref())
    }
}

/// Per-listener context handed to every session.
#[derive(Debug, Clone)]
pub struct ListenerCtx {
    /// Listener name, for logs.
    pub name: Arc<str>,
    /// Bytes buffered towards the downstream connection at most.
    pub buffer_limit: usize,
    /// The listener's `connection_idle_timeout`.
    pub idle_timeout: Option<Duration>,
    /// Bytes read from downstream.
    pub bytes_in: Arc<Counter>,
    /// Bytes written to downstream.
    pub bytes_out: Arc<Counter>,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Both directions closed normally.
    Closed,
    /// Closed for inactivity.
    IdleTimeout,
    /// No route and no default cluster.
    NoRoute,
    /// The route named a cluster that does not exist (now).
    NoCluster,
    /// No healthy host, or every connect attempt failed.
    UpstreamConnectFailed,
    /// The downstream side failed mid-session (e.g. reset).
    DownstreamError,
    /// The upstream side failed mid-session (e.g. reset).
    UpstreamError,
}

struct Bytes<'a> {
    listener: &'a ListenerCtx,
    cluster: &'a Cluster,
}

impl PipeObserver for Bytes<'_> {
    fn on_bytes(&self, dir: Direction, n: usize) {
        let n = n as u64;
        match dir {
            Direction::AToB => {
                self.listener.bytes_in.add(n);
                self.cluster.stats.bytes_sent.add(n);
            }
            Direction::BToA => {
                self.cluster.stats.bytes_received.add(n);
                self.listener.bytes_out.add(n);
            }
        }
    }
}

/// Proxies one accepted connection to completion.
pub async fn serve<T: Transport, C: AsyncRead + AsyncWrite + Unpin>(
    transport: &T,
    spec: &TcpProxySpec,
    clusters: &ClusterManager,
    listener: &ListenerCtx,
    accepted: Accepted<C>,
) -> SessionEnd {
    let Accepted {
        stream: mut downstream,
        peer,
        local,
        original_dst,
    } = accepted;
    let dst = original_dst.unwrap_or(local);
    let Some(cluster_name) = spec.route(peer, dst) else {
        tracing::warn!(listener = %listener.name, %peer, %dst, "tcp_proxy: no route matches; closing");
        return SessionEnd::NoRoute;
    };
    let Some(cluster) = clusters.get(cluster_name) else {
        tracing::warn!(listener = %listener.name, cluster = cluster_name, "tcp_proxy: cluster does not exist; closing");
        return SessionEnd::NoCluster;
    };
    if original_dst.is_some_and(|d| d == local) {
        tracing::warn!(listener = %listener.name, %dst, "tcp_proxy: original destination is this listener; refusing a loop");
        return SessionEnd::UpstreamConnectFailed;
    }

    // === connect (TCP, then TLS when the cluster has it), trying up to max_connect_attempts
    // hosts ===
    let settings = UpstreamSettings {
        connect_timeout: cluster.connect_timeout(),
        max_request_per_conn: cluster.spec().max_request_per_conn,
        rpc: Default::default(),
        tls: cluster.spec().tls.as_ref().map(|t| t.config.clone()),
    };
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut upstream = None;
    for attempt in 1..=spec.max_connect_attempts.max(1) {
        let ctx = LbContext {
            original_dst,
            hash_key: None,
            avoid: &tried,
            metadata_match: None,
        };
        let Some(host) = cluster.choose(&ctx) else {
            tracing::warn!(listener = %listener.name, cluster = cluster.name(), "tcp_proxy: no healthy upstream host");
            break;
        };
        let addr = host.address();
        tried.push(addr);
        let settings = settings.for_host(host.tls_disabled());
        let failures = ConnectFailures {
            cluster: &cluster,
            host: &host,
        };
        match connect_upstream(transport, addr, &settings, &failures).await {
            Ok(conn) => {
                upstream = Some((conn, host));
                break;
            }
            Err(e) => {
                tracing::warn!(listener = %listener.name, cluster = cluster.name(), upstream = %addr, attempt, error = %e, "tcp_proxy: upstream connect failed");
            }
        }
    }
    let Some((mut upstream, host)) = upstream else {
        return SessionEnd::UpstreamConnectFailed;
    };

    // === pipe ===
    cluster.stats.cx_total.inc();
    cluster.stats.rq_total.inc();
    host.stats.cx_total.inc();
    host.stats.rq_total.inc();
    let _guards = (
        GaugeGuard::new(cluster.stats.cx_active.clone()),
        GaugeGuard::new(cluster.stats.rq_active.clone()),
        GaugeGuard::new(host.stats.cx_active.clone()),
        GaugeGuard::new(host.stats.rq_active.clone()),
    );
    let idle_timeout = match (spec.idle_timeout, listener.idle_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let cfg = PipeConfig {
        a_to_b_buffer: (cluster.spec().conn_buffer_limit_bytes as usize).max(1024),
        b_to_a_buffer: listener.buffer_limit.max(1024),
        idle_timeout,
    };
    let obs = Bytes {
        listener,
        cluster: &cluster,
    };
    match pipe(&mut downstream, &mut upstream, &cfg, &obs).await {
        Ok(out) => {
            tracing::debug!(listener = %listener.name, %peer, upstream = %host.address(), sent = out.a_to_b, received = out.b_to_a, end = ?out.end, "tcp_proxy: session closed");
            match out.end {
                PipeEnd::Closed => SessionEnd::Closed,
                PipeEnd::IdleTimeout => {
                    tracing::info!(listener = %listener.name, %peer, upstream = %host.address(), timeout = ?idle_timeout, "tcp_proxy: idle timeout; closing both sides");
                    SessionEnd::IdleTimeout
                }
            }
        }
        Err(e) => {
            let (who, end) = match e.side {
                Side::A => ("downstream", SessionEnd::DownstreamError),
                Side::B => ("upstream", SessionEnd::UpstreamError),
            };
            tracing::info!(listener = %listener.name, %peer, upstream = %host.address(), side = who, error = %e, "tcp_proxy: {who} failed; closing both sides");
            end
        }
    }
}

/// Counts a failed upstream connect (TCP or TLS) against its cluster and host.
struct ConnectFailures<'a> {
    cluster: &'a Cluster,
    host: &'a Host,
}

impl ConnObserver for ConnectFailures<'_> {
    fn on_connect_failed(&self, timeout: bool) {
        self.cluster.stats.cx_connect_fail.inc();
        if timeout {
            self.cluster.stats.cx_connect_timeout.inc();
        }
        self.host.stats.cx_connect_fail.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(cluster: &str, src: &[&str], dst: &[&str], dport: Option<PortRange>) -> TcpRoute {
        TcpRoute {
            cluster: cluster.into(),
            source_addrs: src.iter().map(|s| s.parse().unwrap()).collect(),
            destination_addrs: dst.iter().map(|s| s.parse().unwrap()).collect(),
            source_port: None,
            destination_port: dport,
        }
    }

    #[test]
    fn routes_match_cidrs_and_ports_in_order_then_default() {
        let spec = TcpProxySpec {
            stat_prefix: "t".into(),
            cluster: Some("default".into()),
            routes: vec![
                route("a", &["10.0.0.0/8"], &[], None),
                route("b", &[], &["192.168.1.0/24"], Some(80..=89)),
                route("c", &["127.0.0.0/8"], &["127.0.0.1/32"], None),
            ],
            idle_timeout: None,
            max_connect_attempts: 1,
        };
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(spec.route(a("10.1.2.3:5"), a("1.1.1.1:1")), Some("a"));
        assert_eq!(spec.route(a("8.8.8.8:5"), a("192.168.1.9:85")), Some("b"));
        assert_eq!(
            spec.route(a("8.8.8.8:5"), a("192.168.1.9:90")),
            Some("default")
        );
        assert_eq!(spec.route(a("127.0.0.5:5"), a("127.0.0.1:90")), Some("c"));
        let none = TcpProxySpec {
            cluster: None,
            ..spec
        };
        assert_eq!(none.route(a("8.8.8.8:5"), a("9.9.9.9:9")), None);
    }
}
