//! The cluster manager: named clusters of hosts with a load balancer each, published as an
//! immutable snapshot that workers read without locks (`ArcSwap`). A change (host set, DNS
//! answer, config push) builds a new `Cluster` and swaps it in; hosts whose address, weight
//! and metadata are unchanged keep their `Arc<Host>`, so their counters and health survive.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mosn_metrics::{Counter, Gauge, Registry, Scope};

use crate::host::{Host, HostSpec};
use crate::lb::{new_lb, LbContext, LbType, LoadBalancer};

// === specs ===

/// How a cluster finds its hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterKind {
    /// Fixed addresses from config.
    Simple,
    /// Host names resolved now and every `refresh`; every address returned becomes a host.
    StrictDns {
        /// Re-resolution period.
        refresh: Duration,
    },
    /// The host is the connection's original destination (`SO_ORIGINAL_DST`).
    OriginalDst,
}

/// A configured host before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSource {
    /// `ip:port` (SIMPLE) or `name:port` (STRICT_DNS).
    pub address: String,
    /// Display name; empty means the address.
    pub hostname: String,
    /// Weight, already clamped to 1..=128.
    pub weight: u32,
    /// Metadata, verbatim.
    pub metadata: BTreeMap<String, String>,
    /// `tls_disable`: plaintext to this host even when the cluster has a `tls_context`.
    pub tls_disable: bool,
}

/// What the cluster manager needs to build one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Unique name.
    pub name: String,
    /// Discovery type.
    pub kind: ClusterKind,
    /// Load-balancing policy.
    pub lb: LbType,
    /// Configured hosts.
    pub hosts: Vec<HostSource>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Requests per upstream connection before it is retired (L7 pools).
    pub max_request_per_conn: u32,
    /// Bytes buffered towards one upstream connection at most.
    pub conn_buffer_limit_bytes: u32,
    /// Subset load balancing (`lb_subset_config`).
    pub subset: SubsetSpec,
    /// Upstream TLS (`tls_context`), `None`: plaintext.
    pub tls: Option<ClusterTls>,
}

/// A cluster's upstream TLS: the client configuration, compared by the config it came
/// from (so an unchanged cluster stays unchanged across reloads).
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The client configuration (roots, SNI, client certificate, ALPN).
    pub config: Arc<mosn_tls_offload::ClientConfig>,
    /// What it was built from.
    pub source: mosn_config::TlsContext,
}

impl PartialEq for ClusterTls {
    fn eq(&self, other: &ClusterTls) -> bool {
        self.source == other.source
    }
}

// JSON values in `source` have no NaN: equality is reflexive.
impl Eq for ClusterTls {}

/// What a request whose `metadata_match` no host satisfies gets (MOSN `fall_back_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubsetFallback {
    /// No host: the request fails with "no healthy upstream" (MOSN's 0).
    NoFallback,
    /// Any host of the cluster (MOSN's 1; also what a cluster without `lb_subset_config`
    /// does).
    #[default]
    AnyEndpoint,
    /// The hosts matching `default_subset` (MOSN's 2).
    DefaultSubset,
}

/// Subset load-balancing settings of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubsetSpec {
    /// What to do when no host matches.
    pub fallback: SubsetFallback,
    /// The subset for [`SubsetFallback::DefaultSubset`].
    pub default_subset: BTreeMap<String, String>,
}

/// Errors building or updating a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A SIMPLE host address that is not `ip:port`.
    #[error("cluster {cluster}: host address {address:?} is not ip:port")]
    BadAddress {
        /// Cluster name.
        cluster: String,
        /// The address text.
        address: String,
    },
    /// A STRICT_DNS host without a port.
    #[error("cluster {cluster}: host {address:?} must be name:port")]
    BadDnsName {
        /// Cluster name.
        cluster: String,
        /// The address text.
        address: String,
    },
    /// No cluster by that name.
    #[error("no cluster named {0:?}")]
    Unknown(String),
}

// === resolver seam ===

/// Name resolution for STRICT_DNS clusters; the system resolver in production, a scripted
/// one in tests.
pub trait Resolver: Send + Sync + 'static {
    /// Addresses for `name`.
    fn resolve(
        &self,
        name: &str,
        port: u16,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Vec<IpAddr>>> + Send + '_>>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(
        &self,
        name: &str,
        port: u16,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Vec<IpAddr>>> + Send + '_>>
    {
        let target = format!("{name}:{port}");
        Box::pin(async move {
            let mut out: Vec<IpAddr> = tokio::net::lookup_host(target)
                .await?
                .map(|a| a.ip())
                .collect();
            out.sort();
            out.dedup();
            Ok(out)
        })
    }
}

// === cluster ===

/// Per-cluster counters.
#[derive(Debug)]
pub struct ClusterStats {
    /// Upstream connections opened.
    pub cx_total: Arc<Counter>,
    /// Upstream connections open now.
    pub cx_active: Arc<Gauge>,
    /// Failed connect attempts.
    pub cx_connect_fail: Arc<Counter>,
    /// Connect attempts that timed out (also counted in `cx_connect_fail`).
    pub cx_connect_timeout: Arc<Counter>,
    /// Requests (L4: sessions) in flight.
    pub rq_active: Arc<Gauge>,
    /// Requests started.
    pub rq_total: Arc<Counter>,
    /// Times no healthy host could be chosen.
    pub no_healthy_host: Arc<Counter>,
    /// Bytes sent upstream.
    pub bytes_sent: Arc<Counter>,
    /// Bytes received from upstream.
    pub bytes_received: Arc<Counter>,
    /// Hosts in the current snapshot.
    pub hosts: Arc<Gauge>,
    /// RPC answers whose request id no request waited for (dropped).
    pub rpc_unknown_response: Arc<Counter>,
    /// L7 upstream request metrics: per status code, latency, retries, timeouts.
    pub requests: crate::http::RequestStats,
}

impl ClusterStats {
    fn new(scope: &Scope) -> Self {
        ClusterStats {
            cx_total: scope.counter("upstream_connection_total"),
            cx_active: scope.gauge("upstream_connection_active"),
            cx_connect_fail: scope.counter("upstream_connection_connect_fail"),
            cx_connect_timeout: scope.counter("upstream_connection_connect_timeout"),
            rq_active: scope.gauge("upstream_request_active"),
            rq_total: scope.counter("upstream_request_total"),
            no_healthy_host: scope.counter("upstream_no_healthy_host"),
            bytes_sent: scope.counter("upstream_bytes_write_total"),
            bytes_received: scope.counter("upstream_bytes_read_total"),
            hosts: scope.gauge("host_total"),
            rpc_unknown_response: scope.counter("upstream_rpc_unknown_response"),
            requests: crate::http::RequestStats::new(scope, "upstream"),
        }
    }
}

/// One cluster as published in a snapshot. Immutable; shared by every worker.
#[derive(Debug)]
pub struct Cluster {
    spec: Arc<ClusterSpec>,
    hosts: Arc<[Arc<Host>]>,
    lb: Box<dyn LoadBalancer>,
    /// Round-robin position for subset choices.
    subset_next: AtomicU64,
    /// Counters.
    pub stats: Arc<ClusterStats>,
}

impl Cluster {
    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    /// The spec it was built from.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }
    /// Current hosts.
    pub fn hosts(&self) -> &[Arc<Host>] {
        &self.hosts
    }
    /// Picks a host. With a `metadata_match` the choice is made among the healthy hosts
    /// whose metadata contains every pair (round robin, `avoid` honoured), falling back as the
    /// cluster's [`SubsetSpec`] says when none does.
    pub fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let h = match ctx.metadata_match.filter(|m| !m.is_empty()) {
            None => self.lb.choose(ctx),
            Some(m) => self
                .choose_subset(m, ctx)
                .or_else(|| match self.spec.subset.fallback {
                    SubsetFallback::NoFallback => None,
                    SubsetFallback::AnyEndpoint => self.lb.choose(ctx),
                    SubsetFallback::DefaultSubset => {
                        let d = &self.spec.subset.default_subset;
                        if d.is_empty() {
                            self.lb.choose(ctx)
                        } else {
                            self.choose_subset(d, ctx)
                        }
                    }
                }),
        };
        if h.is_none() {
            self.stats.no_healthy_host.inc();
        }
        h
    }

    fn choose_subset(
        &self,
        m: &BTreeMap<String, String>,
        ctx: &LbContext<'_>,
    ) -> Option<Arc<Host>> {
        let matches = |h: &&Arc<Host>| {
            h.is_healthy() && m.iter().all(|(k, v)| h.metadata().get(k) == Some(v))
        };
        let subset: Vec<&Arc<Host>> = self.hosts.iter().filter(matches).collect();
        if subset.is_empty() {
            return None;
        }
        let preferred: Vec<&Arc<Host>> = subset
            .iter()
            .copied()
            .filter(|h| !ctx.avoid.contains(&h.address()))
            .collect();
        let pool = if preferred.is_empty() {
            &subset
        } else {
            &preferred
        };
        let i = self.subset_next.fetch_add(1, Ordering::Relaxed) as usize % pool.len();
        Some(pool[i].clone())
    }
    /// Connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.spec.connect_timeout
    }
}

// === manager ===

/// The clusters by name, looked up per request: foldhash, not SipHash (the table is built
/// from config; a client-chosen name via `cluster_header` is only looked up).
pub type ClusterMap = HashMap<String, Arc<Cluster>, foldhash::fast::RandomState>;

/// All clusters, swapped atomically.
#[derive(Debug)]
pub struct ClusterManager {
    clusters: ArcSwap<ClusterMap>,
    registry: Registry,
    seed: AtomicU64,
    /// Bumped after every change to the clusters or their hosts: workers compare it with
    /// what their pools were last swept for.
    generation: AtomicU64,
    /// The generation, for workers waiting for a change.
    changes: tokio::sync::watch::Sender<u64>,
}

impl ClusterManager {
    /// An empty manager whose counters live in `registry`.
    pub fn new(registry: Registry) -> Self {
        ClusterManager {
            clusters: ArcSwap::from_pointee(ClusterMap::default()),
            registry,
            seed: AtomicU64::new(0x6d6f_736e),
            generation: AtomicU64::new(1),
            changes: tokio::sync::watch::Sender::new(1),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<ClusterMap> {
        self.clusters.load_full()
    }

    /// The current version of one cluster.
    pub fn get(&self, name: &str) -> Option<Arc<Cluster>> {
        self.clusters.load().get(name).cloned()
    }

    /// Adds a cluster or replaces one of the same name. SIMPLE hosts are taken as they are;
    /// STRICT_DNS clusters keep their previously resolved hosts until [`Self::refresh_dns`] runs.
    pub fn add_or_update(&self, spec: ClusterSpec) -> Result<(), ClusterError> {
        let hosts = match spec.kind {
            ClusterKind::Simple => spec
                .hosts
                .iter()
                .map(|h| {
                    let address: SocketAddr =
                        h.address.parse().map_err(|_| ClusterError::BadAddress {
                            cluster: spec.name.clone(),
                            address: h.address.clone(),
                        })?;
                    Ok(HostSpec {
                        address,
                        hostname: if h.hostname.is_empty() {
                            h.address.clone()
                        } else {
                            h.hostname.clone()
                        },
                        weight: h.weight,
                        metadata: h.metadata.clone(),
                        tls_disable: h.tls_disable,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            ClusterKind::StrictDns { .. } => {
                for h in &spec.hosts {
                    split_name_port(&h.address).ok_or_else(|| ClusterError::BadDnsName {
                        cluster: spec.name.clone(),
                        address: h.address.clone(),
                    })?;
                }
                self.get(&spec.name)
                    .filter(|c| c.spec.hosts == spec.hosts)
                    .map(|c| c.hosts.iter().map(|h| h.spec().clone()).collect())
                    .unwrap_or_default()
            }
            ClusterKind::OriginalDst => Vec::new(),
        };
        self.publish(Arc::new(spec), hosts);
        Ok(())
    }

    /// The clusters' generation: it changes (after the new clusters are visible) whenever a
    /// cluster is added, replaced or removed, or its hosts change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Hears every change of [`Self::generation`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A change is visible: a new generation.
    fn bump(&self) {
        let g = self.generation.fetch_add(1, Ordering::Release) + 1;
        self.changes.send_replace(g);
    }

    /// Removes a cluster and its counters.
    pub fn remove(&self, name: &str) {
        self.clusters.rcu(|cur| {
            let mut next = HashMap::clone(cur);
            next.remove(name);
            next
        });
        self.bump();
        self.registry
            .remove_scope(&self.registry.scope("cluster", &[("cluster", name)]));
    }

    /// Replaces the hosts of a cluster, keeping the `Arc<Host>` of unchanged hosts.
    pub fn set_hosts(&self, name: &str, hosts: Vec<HostSpec>) -> Result<(), ClusterError> {
        let cur = self
            .get(name)
            .ok_or_else(|| ClusterError::Unknown(name.to_string()))?;
        self.publish(cur.spec.clone(), hosts);
        Ok(())
    }

    fn publish(&self, spec: Arc<ClusterSpec>, hosts: Vec<HostSpec>) {
        let name = spec.name.clone();
        let scope = self.registry.scope("cluster", &[("cluster", &name)]);
        let prev = self.get(&name);
        let stats = prev
            .as_ref()
            .map(|c| c.stats.clone())
            .unwrap_or_else(|| Arc::new(ClusterStats::new(&scope)));
        let old: HashMap<&HostSpec, &Arc<Host>> = prev
            .as_ref()
            .map(|c| c.hosts.iter().map(|h| (h.spec(), h)).collect())
            .unwrap_or_default();
        let built: Vec<Arc<Host>> = hosts
            .into_iter()
            .map(|s| match old.get(&s) {
                Some(h) => Arc::clone(h),
                None => Arc::new(Host::new(s, &name, &self.registry)),
            })
            .collect();
        // Drop the counters of hosts that went away.
        if let Some(prev) = &prev {
            for h in prev.hosts.iter() {
                // Counters are keyed by address: keep them while any host has it.
                if !built.iter().any(|b| b.address() == h.address()) {
                    let addr = h.address().to_string();
                    self.registry.remove_scope(
                        &self
                            .registry
                            .scope("host", &[("cluster", &name), ("host", &addr)]),
                    );
                }
            }
        }
        stats.hosts.set(built.len() as i64);
        let hosts: Arc<[Arc<Host>]> = built.into();
        let seed = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        let cluster = Arc::new(Cluster {
            subset_next: AtomicU64::new(0),
            lb: new_lb(spec.lb, hosts.clone(), seed),
            spec,
            hosts,
            stats,
        });
        self.clusters.rcu(|cur| {
            let mut next = HashMap::clone(cur);
            next.insert(name.clone(), cluster.clone());
            next
        });
        self.bump();
    }

    /// Resolves every STRICT_DNS cluster once and publishes the answers. A failed lookup keeps
    /// that cluster's previous hosts and is logged.
    pub async fn refresh_dns(&self, resolver: &dyn Resolver) {
        let snapshot = self.snapshot();
        for cluster in snapshot.values() {
            if !matches!(cluster.spec.kind, ClusterKind::StrictDns { .. }) {
                continue;
            }
            let mut hosts = Vec::new();
            let mut failed = false;
            for src in &cluster.spec.hosts {
                let Some((name, port)) = split_name_port(&src.address) else {
                    continue;
                };
                match resolver.resolve(name, port).await {
                    Ok(ips) => hosts.extend(ips.into_iter().map(|ip| HostSpec {
                        address: SocketAddr::new(ip, port),
                        hostname: if src.hostname.is_empty() {
                            name.to_string()
                        } else {
                            src.hostname.clone()
                        },
                        weight: src.weight,
                        metadata: src.metadata.clone(),
                        tls_disable: src.tls_disable,
                    })),
                    Err(e) => {
                        failed = true;
                        tracing::warn!(cluster = cluster.name(), host = %src.address, error = %e, "DNS resolution failed; keeping previous hosts");
                    }
                }
            }
            if failed {
                continue;
            }
            let current: Vec<&HostSpec> = cluster.hosts.iter().map(|h| h.spec()).collect();
            if current.len() != hosts.len() || current.iter().zip(&hosts).any(|(a, b)| *a != b) {
                tracing::info!(cluster = cluster.name(), hosts = ?hosts.iter().map(|h| h.address).collect::<Vec<_>>(), "DNS answer changed; hosts updated");
                if let Some(cur) = self.get(cluster.name()) {
                    // The spec may have been replaced meanwhile; publish under the latest one.
                    self.publish(cur.spec.clone(), hosts);
                }
            }
        }
    }

    /// The shortest STRICT_DNS refresh period, if any cluster needs refreshing.
    pub fn dns_refresh_period(&self) -> Option<Duration> {
        self.snapshot()
            .values()
            .filter_map(|c| match c.spec.kind {
                ClusterKind::StrictDns { refresh } => Some(refresh),
                _ => None,
            })
            .min()
    }

    /// Runs [`Self::refresh_dns`] forever at the shortest refresh period (spawn it on the
    /// control thread).
    pub async fn run_dns_refresh(self: Arc<Self>, resolver: Arc<dyn Resolver>) {
        loop {
            let period = self.dns_refresh_period().unwrap_or(Duration::from_secs(5));
            tokio::time::sleep(period.max(Duration::from_millis(100))).await;
            self.refresh_dns(resolver.as_ref()).await;
        }
    }
}

/// Splits `name:port` (or `[v6]:port`).
fn split_name_port(s: &str) -> Option<(&str, u16)> {
    let (name, port) = s.rsplit_once(':')?;
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() {
        return None;
    }
    Some((name, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn spec(name: &str, kind: ClusterKind, hosts: &[(&str, u32)]) -> ClusterSpec {
        ClusterSpec {
            name: name.into(),
            kind,
            lb: LbType::RoundRobin,
            hosts: hosts
                .iter()
                .map(|(a, w)| HostSource {
                    address: a.to_string(),
                    hostname: String::new(),
                    weight: *w,
                    metadata: BTreeMap::new(),
                    tls_disable: false,
                })
                .collect(),
            connect_timeout: Duration::from_secs(1),
            max_request_per_conn: 1024,
            conn_buffer_limit_bytes: 16384,
            subset: SubsetSpec::default(),
            tls: None,
        }
    }

    #[test]
    fn metadata_match_chooses_within_the_subset_and_falls_back_as_configured() {
        let reg = Registry::new();
        let cm = ClusterManager::new(reg);
        let mut s = spec(
            "sub",
            ClusterKind::Simple,
            &[("127.0.0.1:1", 1), ("127.0.0.1:2", 1), ("127.0.0.1:3", 1)],
        );
        for (h, v) in s.hosts.iter_mut().zip(["v1", "v2", "v2"]) {
            h.metadata.insert("version".into(), v.into());
        }
        cm.add_or_update(s.clone()).unwrap();
        let c = cm.get("sub").unwrap();
        let v2: BTreeMap<String, String> = [("version".to_string(), "v2".to_string())].into();
        let ctx = LbContext {
            metadata_match: Some(&v2),
            ..LbContext::default()
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let h = c.choose(&ctx).unwrap();
            assert_eq!(h.metadata()["version"], "v2");
            seen.insert(h.address().port());
        }
        assert_eq!(seen, [2, 3].into(), "round robin over the whole subset");
        // `avoid` is honoured within the subset.
        let avoid = ["127.0.0.1:2".parse().unwrap()];
        let ctx2 = LbContext {
            metadata_match: Some(&v2),
            avoid: &avoid,
            ..LbContext::default()
        };
        assert_eq!(c.choose(&ctx2).unwrap().address().port(), 3);

        // No host matches: any endpoint by default, none with NO_FALLBACK, the default subset
        // with DEFAULT_SUBSET.
        let v9: BTreeMap<String, String> = [("version".to_string(), "v9".to_string())].into();
        let ctx9 = LbContext {
            metadata_match: Some(&v9),
            ..LbContext::default()
        };
        assert!(c.choose(&ctx9).is_some());
        s.subset.fallback = SubsetFallback::NoFallback;
        cm.add_or_update(s.clone()).unwrap();
        assert!(cm.get("sub").unwrap().choose(&ctx9).is_none());
        s.subset.fallback = SubsetFallback::DefaultSubset;
        s.subset.default_subset = [("version".to_string(), "v1".to_string())].into();
        cm.add_or_update(s).unwrap();
        assert_eq!(
            cm.get("sub")
                .unwrap()
                .choose(&ctx9)
                .unwrap()
                .address()
                .port(),
            1
        );
    }

    #[test]
    fn simple_cluster_publishes_hosts_and_keeps_host_state_across_updates() {
        let reg = Registry::new();
        let cm = ClusterManager::new(reg.clone());
        cm.add_or_update(spec(
            "c",
            ClusterKind::Simple,
            &[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)],
        ))
        .unwrap();
        let before = cm.get("c").unwrap();
        before.hosts()[0].stats.cx_total.add(7);
        before.hosts()[1].set_healthy(false);
        // Re-publish with one host added: the unchanged hosts keep counters and health.
        cm.add_or_update(spec(
            "c",
            ClusterKind::Simple,
            &[("127.0.0.1:1", 1), ("127.0.0.1:2", 1), ("127.0.0.1:3", 1)],
        ))
        .unwrap();
        let after = cm.get("c").unwrap();
        assert_eq!(after.hosts().len(), 3);
        assert!(Arc::ptr_eq(&before.hosts()[0], &after.hosts()[0]));
        assert_eq!(after.hosts()[0].stats.cx_total.get(), 7);
        assert!(!after.hosts()[1].is_healthy());
        // The old snapshot is still intact for whoever holds it.
        assert_eq!(before.hosts().len(), 2);
        assert_eq!(
            reg.value("cluster", &[("cluster", "c")], "host_total"),
            Some(3)
        );
        // Removing a host drops its counters.
        cm.add_or_update(spec("c", ClusterKind::Simple, &[("127.0.0.1:1", 1)]))
            .unwrap();
        assert_eq!(
            reg.value(
                "host",
                &[("cluster", "c"), ("host", "127.0.0.1:3")],
                "upstream_connection_total"
            ),
            None
        );
        assert!(matches!(
            cm.add_or_update(spec("bad", ClusterKind::Simple, &[("nope", 1)])),
            Err(ClusterError::BadAddress { .. })
        ));
    }

    struct Scripted(Mutex<Vec<io::Result<Vec<IpAddr>>>>);
    impl Resolver for Scripted {
        fn resolve(
            &self,
            _name: &str,
            _port: u16,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Vec<IpAddr>>> + Send + '_>>
        {
            let next = self.0.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn strict_dns_follows_answers_and_survives_failures() {
        let cm = ClusterManager::new(Registry::new());
        cm.add_or_update(spec(
            "d",
            ClusterKind::StrictDns {
                refresh: Duration::from_secs(1),
            },
            &[("svc.example:8080", 5)],
        ))
        .unwrap();
        assert!(cm.get("d").unwrap().hosts().is_empty());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let r = Scripted(Mutex::new(vec![
            Ok(vec![ip("127.0.0.2"), ip("127.0.0.3")]),
            Err(io::Error::other("SERVFAIL")),
            Ok(vec![ip("127.0.0.3"), ip("127.0.0.4")]),
        ]));
        cm.refresh_dns(&r).await;
        let c = cm.get("d").unwrap();
        let addrs: Vec<String> = c.hosts().iter().map(|h| h.address().to_string()).collect();
        assert_eq!(addrs, ["127.0.0.2:8080", "127.0.0.3:8080"]);
        assert!(c
            .hosts()
            .iter()
            .all(|h| h.weight() == 5 && h.hostname() == "svc.example"));
        let kept = c.hosts()[1].clone();
        cm.refresh_dns(&r).await; // failure: hosts unchanged
        assert_eq!(cm.get("d").unwrap().hosts().len(), 2);
        cm.refresh_dns(&r).await;
        let c = cm.get("d").unwrap();
        let addrs: Vec<String> = c.hosts().iter().map(|h| h.address().to_string()).collect();
        assert_eq!(addrs, ["127.0.0.3:8080", "127.0.0.4:8080"]);
        assert!(
            Arc::ptr_eq(&kept, &c.hosts()[0]),
            "surviving host keeps its state"
        );
        assert_eq!(cm.dns_refresh_period(), Some(Duration::from_secs(1)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn system_resolver_resolves_localhost() {
        let ips = SystemResolver.resolve("localhost", 80).await.unwrap();
        assert!(ips.iter().any(|ip| ip.is_loopback()), "{ips:?}");
    }

    #[test]
    fn name_port_split() {
        assert_eq!(split_name_port("a.b:80"), Some(("a.b", 80)));
        assert_eq!(split_name_port("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_name_port("a.b"), None);
        assert_eq!(split_name_port(":80"), None);
    }
}
