//! Upstream hosts: an address, a weight, metadata, health and the counters that load
//! balancers read (active requests/connections are atomics shared by every worker).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mosn_metrics::{Counter, Gauge, Registry, Scope};

/// MOSN clamps host weights to this range.
pub const MIN_WEIGHT: u32 = 1;
/// MOSN clamps host weights to this range.
pub const MAX_WEIGHT: u32 = 128;

/// Clamps a configured weight to `1..=128` as MOSN does (0 and absent mean 1).
pub fn clamp_weight(w: u32) -> u32 {
    w.clamp(MIN_WEIGHT, MAX_WEIGHT)
}

/// What a cluster is told about one host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostSpec {
    /// Resolved address.
    pub address: SocketAddr,
    /// Host name as configured (for STRICT_DNS: the DNS name), or the address text.
    pub hostname: String,
    /// Weight, already clamped to 1..=128.
    pub weight: u32,
    /// Metadata (`filter_metadata."mosn.lb"` flattened), kept verbatim.
    pub metadata: BTreeMap<String, String>,
    /// `tls_disable`: connect in plaintext even when the cluster has TLS.
    pub tls_disable: bool,
}

/// Per-host counters.
#[derive(Debug)]
pub struct HostStats {
    /// Upstream connections open now.
    pub cx_active: Arc<Gauge>,
    /// Upstream connections opened.
    pub cx_total: Arc<Counter>,
    /// Connect attempts that failed (refused, timed out, unreachable).
    pub cx_connect_fail: Arc<Counter>,
    /// Requests (for L4: proxied sessions) in flight.
    pub rq_active: Arc<Gauge>,
    /// Requests started.
    pub rq_total: Arc<Counter>,
}

impl HostStats {
    fn new(scope: &Scope) -> Self {
        HostStats {
            cx_active: scope.gauge("upstream_connection_active"),
            cx_total: scope.counter("upstream_connection_total"),
            cx_connect_fail: scope.counter("upstream_connection_connect_fail"),
            rq_active: scope.gauge("upstream_request_active"),
            rq_total: scope.counter("upstream_request_total"),
        }
    }

    /// Counters not attached to any registry (tests, benchmarks).
    pub fn detached() -> Self {
        Self::new(&Registry::new().scope("host", &[]))
    }
}

/// One upstream host of a cluster. Shared (`Arc`) by every worker.
#[derive(Debug)]
pub struct Host {
    spec: HostSpec,
    healthy: AtomicBool,
    /// Counters, read by least-request and least-connection balancers.
    pub stats: HostStats,
}

impl Host {
    /// A healthy host whose counters live in `registry` under `cluster`.
    pub fn new(spec: HostSpec, cluster: &str, registry: &Registry) -> Self {
        let addr = spec.address.to_string();
        let scope = registry.scope("host", &[("cluster", cluster), ("host", &addr)]);
        Host {
            stats: HostStats::new(&scope),
            spec,
            healthy: AtomicBool::new(true),
        }
    }

    /// A healthy host with detached counters (tests, benchmarks).
    pub fn detached(spec: HostSpec) -> Self {
        Host {
            spec,
            healthy: AtomicBool::new(true),
            stats: HostStats::detached(),
        }
    }

    /// Convenience for tests: a host at `addr` with `weight` and no metadata.
    pub fn test(addr: &str, weight: u32) -> Arc<Host> {
        let address: SocketAddr = addr.parse().expect("test address");
        Arc::new(Host::detached(HostSpec {
            address,
            hostname: addr.to_string(),
            weight: clamp_weight(weight),
            metadata: BTreeMap::new(),
            tls_disable: false,
        }))
    }

    /// The host's address.
    pub fn address(&self) -> SocketAddr {
        self.spec.address
    }
    /// The configured host name.
    pub fn hostname(&self) -> &str {
        &self.spec.hostname
    }
    /// Weight in 1..=128.
    pub fn weight(&self) -> u32 {
        self.spec.weight
    }
    /// Metadata, verbatim.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.spec.metadata
    }
    /// Whether connections to this host skip the cluster's TLS (`tls_disable`).
    pub fn tls_disabled(&self) -> bool {
        self.spec.tls_disable
    }
    /// The spec the host was built from.
    pub fn spec(&self) -> &HostSpec {
        &self.spec
    }
    /// Whether the host may be chosen.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    /// Marks the host healthy or not (health checks, outlier detection).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
    /// Requests in flight.
    pub fn active_requests(&self) -> u64 {
        self.stats.rq_active.get().max(0) as u64
    }
    /// Connections open.
    pub fn active_connections(&self) -> u64 {
        self.stats.cx_active.get().max(0) as u64
    }
}
