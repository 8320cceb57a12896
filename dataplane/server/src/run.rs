//! The control side of the process: binds every listener before any worker starts (so a bad
//! address fails start-up), starts the workers, serves the admin API, refreshes DNS, applies
//! reloads and runs the graceful drain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mosn_admin::{Admin, AdminHandler, ServerState};
use mosn_ebpf::{Capture, CaptureGuard, CaptureSpec};
use mosn_metrics::Registry;
use mosn_net::kernel::{bind_for_workers, KernelTransport};
use mosn_net::ListenSpec;
use mosn_proxy::accesslog::{AccessLog, AccessLogFormat};
use mosn_proxy::cluster::{ClusterManager, ClusterSpec, SystemResolver};
use mosn_proxy::filter::{FilterChain, RouteOverrides};
use mosn_proxy::http::HttpProxySpec;
use mosn_proxy::router::RouteTable;
use mosn_proxy::tcp_proxy::{ListenerCtx, TcpProxySpec};
use mosn_stream::server::ServerLimits;
use mosn_stream::StreamProtocol;
use tokio::sync::watch;

use crate::logging::{LogHandle, LogTarget};
use crate::worker::{
    spawn_kernel_worker, BoundListener, ListenerRuntime, ListenerStats, NetworkFilter, Shared,
    Snapshot, Worker,
};

// === the plan: what to run, derived from a validated config ===

/// The network a server's workers run on.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Backend {
    /// Kernel sockets, `workers` threads with `SO_REUSEPORT` listeners (the default).
    #[default]
    Kernel,
    /// A DPDK port under the userspace TCP stack (cargo feature `dpdk`).
    Dpdk(crate::dpdk::DpdkPlan),
}

/// Everything the server needs to start, with no reference to the config crate's types.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Worker threads (of the kernel backend).
    pub workers: usize,
    /// The network the workers run on.
    pub backend: Backend,
    /// Transparent traffic capture to install once the listeners are bound.
    pub capture: Option<CaptureSpec>,
    /// `SO_MARK` for upstream connections (so capture never takes the proxy's own).
    pub upstream_mark: Option<u32>,
    /// How long a drain waits for open connections.
    pub graceful_timeout: Duration,
    /// Listeners.
    pub listeners: Vec<ListenerPlan>,
    /// Clusters.
    pub clusters: Vec<ClusterSpec>,
    /// Admin API address (`None`: no admin API).
    pub admin: Option<SocketAddr>,
    /// Where to record the pid.
    pub pid_file: Option<PathBuf>,
    /// Log destination.
    pub log_target: LogTarget,
    /// Log level name.
    pub log_level: String,
    /// The running config as `/api/v1/config_dump` shows it (secrets already removed).
    pub config_dump: serde_json::Value,
}

/// One listener.
#[derive(Debug, Clone)]
pub struct ListenerPlan {
    /// Unique name.
    pub name: Arc<str>,
    /// What to bind.
    pub listen: ListenSpec,
    /// `use_original_dst: redirect`: hand each connection to the listener bound to its
    /// original destination (virtual listeners with `bind_port: false` included).
    pub use_original_dst: bool,
    /// `bind_port: false` listeners are not bound (they receive handed-off connections).
    pub bind: bool,
    /// Bytes buffered towards one downstream connection at most.
    pub buffer_limit: usize,
    /// `connection_idle_timeout`.
    pub idle_timeout: Option<Duration>,
    /// The network filter.
    pub filter: FilterPlan,
    /// TLS termination (`tls_context` / `tls_context_set`), with `inspector`.
    pub tls: Option<TlsPlan>,
}

/// A listener's TLS, built and checked when the plan is made.
#[derive(Debug, Clone)]
pub struct TlsPlan {
    /// The server configuration (certificates loaded).
    pub config: mosn_tls_offload::ServerConfig,
    /// `inspector: true`: TLS and plaintext on one port.
    pub inspector: bool,
}

/// How often certificate files are checked for changes.
pub const TLS_RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Network filters this build runs.
#[derive(Debug, Clone)]
pub enum FilterPlan {
    /// `tcp_proxy`.
    TcpProxy(TcpProxySpec),
    /// `proxy`: the L7 proxy for HTTP/1 and HTTP/2.
    Http(Box<HttpPlan>),
}

/// The L7 proxy of one listener, before metrics and log files are attached.
#[derive(Debug, Clone)]
pub struct HttpPlan {
    /// Protocols accepted downstream (more than one: detection).
    pub downstream: Vec<StreamProtocol>,
    /// The proxy filter's `upstream_protocol`.
    pub upstream: Option<StreamProtocol>,
    /// Router table.
    pub router: Option<Arc<RouteTable>>,
    /// Stream filters.
    pub filters: Arc<FilterChain>,
    /// Compiled per-route filter configs, by route key.
    pub overrides: Arc<HashMap<usize, RouteOverrides>>,
    /// Access logs: path and compiled format.
    pub access_logs: Vec<(String, Arc<AccessLogFormat>)>,
    /// Codec limits.
    pub limits: ServerLimits,
    /// Protocol detection timeout.
    pub detect_timeout: Duration,
    /// Upstream timeout when the route sets none.
    pub default_timeout: Duration,
    /// Largest request body.
    pub max_request_body: Option<u64>,
    /// Retry replay buffer.
    pub retry_buffer_limit: usize,
    /// RPC downstream settings.
    pub rpc_server: mosn_stream::xprotocol::RpcServerSettings,
    /// RPC upstream settings.
    pub rpc_upstream: mosn_stream::xprotocol::RpcSettings,
}

/// Version information baked in by the binary's build script.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    /// Package version.
    pub version: &'static str,
    /// Git commit the binary was built from, or `unknown`.
    pub commit: &'static str,
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listener's address could not be bound.
    #[error("listener {listener}: cannot bind {addr}: {source}")]
    Bind {
        /// Listener name.
        listener: String,
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The admin address could not be bound.
    #[error("admin: cannot bind {addr}: {source}")]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Traffic capture could not be installed.
    #[error("traffic_capture: {0}")]
    Capture(#[from] mosn_ebpf::CaptureError),
    /// A cluster could not be built.
    #[error(transparent)]
    Cluster(#[from] mosn_proxy::cluster::ClusterError),
    /// Threads, runtimes, pid file.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

// === admin glue ===

const STATE_INITING: u8 = 0;
const STATE_RUNNING: u8 = 1;
const STATE_DRAINING: u8 = 2;
const STATE_STOPPING: u8 = 3;

struct Control {
    build: BuildInfo,
    dump: arc_swap::ArcSwap<serde_json::Value>,
    state: AtomicU8,
    log: Option<LogHandle>,
}

impl AdminHandler for Control {
    fn version(&self) -> serde_json::Value {
        serde_json::json!({ "version": self.build.version, "commit": self.build.commit, "name": "mosn-rs" })
    }
    fn config_dump(&self) -> serde_json::Value {
        serde_json::Value::clone(&self.dump.load())
    }
    fn state(&self) -> ServerState {
        match self.state.load(Ordering::Acquire) {
            STATE_INITING => ServerState::Initing,
            STATE_RUNNING => ServerState::Running,
            STATE_DRAINING => ServerState::Draining,
            _ => ServerState::Stopping,
        }
    }
    fn log_level(&self) -> String {
        self.log
            .as_ref()
            .map(|l| l.level())
            .unwrap_or_else(|| "INFO".into())
    }
    fn set_log_level(&self, level: &str) -> Result<(), String> {
        match &self.log {
            Some(l) => l.set_level(level),
            None => crate::logging::filter_for(level).map(|_| ()),
        }
    }
}

// === the running server ===

/// A started server. Dropping it does not stop the workers; call [`Server::drain`].
pub struct Server {
    shared: Arc<Shared>,
    registry: Registry,
    control: Arc<Control>,
    drain_tx: watch::Sender<bool>,
    stop_control: Option<tokio::sync::oneshot::Sender<()>>,
    _control_thread: std::thread::JoinHandle<()>,
    listener_addrs: HashMap<Arc<str>, SocketAddr>,
    admin_addr: Option<SocketAddr>,
    graceful_timeout: Duration,
    workers: Vec<Worker>,
    /// Removed (programs detached, rules deleted) when the server is dropped after a drain.
    _capture: Option<CaptureGuard>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listener_addrs)
            .field("admin", &self.admin_addr)
            .finish()
    }
}

fn listener_runtime(
    l: &ListenerPlan,
    stats: &ListenerStats,
    registry: &Registry,
) -> Result<ListenerRuntime, RunError> {
    let filter = match &l.filter {
        FilterPlan::TcpProxy(spec) => NetworkFilter::TcpProxy(spec.clone()),
        FilterPlan::Http(h) => {
            let scope = registry.scope("listener", &[("listener", &l.name)]);
            let mut access_logs = Vec::new();
            let mut req_headers = Vec::new();
            let mut resp_headers = Vec::new();
            for (path, format) in &h.access_logs {
                req_headers.extend(format.request_header_names().iter().cloned());
                resp_headers.extend(format.response_header_names().iter().cloned());
                let log = AccessLog::open(path, AccessLogFormat::clone(format), &scope).map_err(
                    |source| RunError::Io {
                        what: format!("listener {}: cannot open access log {path}", l.name),
                        source,
                    },
                )?;
                access_logs.push(log);
            }
            req_headers.dedup();
            resp_headers.dedup();
            NetworkFilter::Http(Arc::new(HttpProxySpec {
                listener: l.name.clone(),
                downstream: h.downstream.clone(),
                upstream: h.upstream,
                router: h.router.clone(),
                overrides: h.overrides.clone(),
                filters: h.filters.clone(),
                access_logs,
                log_request_headers: req_headers,
                log_response_headers: resp_headers,
                limits: h.limits.clone(),
                detect_timeout: h.detect_timeout,
                default_timeout: h.default_timeout,
                max_request_body: h.max_request_body,
                retry_buffer_limit: h.retry_buffer_limit,
                stats: stats.requests.clone(),
                rpc_server: h.rpc_server,
                rpc_upstream: h.rpc_upstream,
            }))
        }
    };
    let tls = l.tls.as_ref().map(|t| {
        let scope = registry.scope("listener", &[("listener", &l.name)]);
        let config = t
            .config
            .clone()
            .with_counters(mosn_tls_offload::HandshakeCounters::from_scope(&scope));
        let reloader = match mosn_tls_offload::Reloader::spawn(config.clone(), TLS_RELOAD_EVERY) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(listener = %l.name, error = %e, "cannot start the certificate reloader");
                None
            }
        };
        crate::worker::ListenerTls {
            config,
            inspector: t.inspector,
            reloader,
        }
    });
    Ok(ListenerRuntime {
        use_original_dst: l.use_original_dst,
        tls,
        ctx: ListenerCtx {
            name: l.name.clone(),
            buffer_limit: l.buffer_limit,
            idle_timeout: l.idle_timeout,
            bytes_in: stats.bytes_in.clone(),
            bytes_out: stats.bytes_out.clone(),
        },
        filter,
    })
}

/// Listener names by configured address, for original-destination hand-off.
fn addresses(plan: &Plan) -> HashMap<SocketAddr, Arc<str>> {
    plan.listeners
        .iter()
        .map(|l| (l.listen.addr, l.name.clone()))
        .collect()
}

fn snapshot_for(plan: &Plan, registry: &Registry) -> Result<Snapshot, RunError> {
    let mut listeners = HashMap::new();
    for l in &plan.listeners {
        let stats = ListenerStats::new(registry, &l.name);
        let rt = listener_runtime(l, &stats, registry)?;
        listeners.insert(l.name.clone(), Arc::new((rt, stats)));
    }
    Ok(Snapshot {
        listeners,
        by_addr: addresses(plan),
    })
}

impl Server {
    /// Binds everything, starts the workers and the control thread (admin API, DNS refresh).
    pub fn start(plan: Plan, build: BuildInfo, log: Option<LogHandle>) -> Result<Server, RunError> {
        #[cfg(feature = "dpdk")]
        if matches!(plan.backend, Backend::Dpdk(_)) {
            crate::dpdk::block_sigio();
        }
        let registry = Registry::new();
        crate::tls_stats::register(&registry);
        let clusters = Arc::new(ClusterManager::new(registry.clone()));
        for c in &plan.clusters {
            clusters.add_or_update(c.clone())?;
        }
        let shared = Arc::new(Shared::new(clusters.clone()));
        shared
            .snapshot
            .store(Arc::new(snapshot_for(&plan, &registry)?));

        // Bind every listener for every worker before starting anything.
        let workers = plan.workers.max(1);
        let mut per_worker: Vec<Vec<BoundListener>> = (0..workers).map(|_| Vec::new()).collect();
        let mut listener_addrs = HashMap::new();
        let kernel_listeners: &[ListenerPlan] = match plan.backend {
            Backend::Kernel => &plan.listeners,
            // Bound on the userspace stack by the DPDK worker (below).
            Backend::Dpdk(_) => &[],
        };
        for l in kernel_listeners {
            if !l.bind {
                tracing::info!(listener = %l.name, addr = %l.listen.addr, "bind_port is false: not bound (receives handed-off connections only)");
                continue;
            }
            let socks = bind_for_workers(&l.listen, workers).map_err(|source| RunError::Bind {
                listener: l.name.to_string(),
                addr: l.listen.addr,
                source,
            })?;
            if let Some(addr) = socks.first().and_then(|s| s.local_addr().ok()) {
                listener_addrs.insert(l.name.clone(), addr);
            }
            for (w, socket) in socks.into_iter().enumerate() {
                per_worker[w].push(BoundListener {
                    name: l.name.clone(),
                    socket,
                });
            }
        }
        // Capture only once something listens where captured connections are sent.
        let capture = match &plan.capture {
            Some(spec) => {
                // The eBPF inbound capture hands connections to the inbound listener's socket
                // (one of a reuseport group is enough: the kernel picks within the group).
                let inbound = crate::plan::inbound_listener(spec, &plan.listeners).and_then(|l| {
                    per_worker
                        .first()?
                        .iter()
                        .find(|b| b.name == l.name)
                        .map(|b| &b.socket)
                });
                let guard = Capture::install_with_listener(spec, inbound)?;
                if let Some(why) = guard.fallback_reason() {
                    tracing::warn!(reason = %why, "traffic capture: eBPF unavailable, using iptables instead");
                }
                tracing::info!(backend = ?guard.backend(), port = spec.outbound_port, inbound_ports = ?spec.inbound_ports, "traffic capture installed");
                Some(guard)
            }
            None => None,
        };
        let admin_std = match plan.admin {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .map_err(|source| RunError::AdminBind { addr, source })?;
                l.set_nonblocking(true)
                    .map_err(|source| RunError::AdminBind { addr, source })?;
                Some(l)
            }
            None => None,
        };
        let admin_addr = admin_std.as_ref().and_then(|l| l.local_addr().ok());

        let control = Arc::new(Control {
            build,
            dump: arc_swap::ArcSwap::from_pointee(plan.config_dump.clone()),
            state: AtomicU8::new(STATE_INITING),
            log,
        });

        // Control thread: admin API and DNS refresh on its own current-thread runtime.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let c_registry = registry.clone();
        let c_control = control.clone();
        let c_clusters = clusters.clone();
        let control_thread = std::thread::Builder::new()
            .name("mosn-control".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    // Resolve STRICT_DNS clusters once before traffic starts.
                    c_clusters.refresh_dns(&SystemResolver).await;
                    if c_clusters.dns_refresh_period().is_some() {
                        tokio::spawn(c_clusters.clone().run_dns_refresh(Arc::new(SystemResolver)));
                    }
                    if let Some(std_l) = admin_std {
                        match tokio::net::TcpListener::from_std(std_l) {
                            Ok(l) => {
                                let admin = Admin::new(c_registry, c_control);
                                tokio::spawn(async move {
                                    if let Err(e) = admin
                                        .serve(l, async {
                                            let _ = stop_rx.await;
                                        })
                                        .await
                                    {
                                        tracing::error!(error = %e, "admin server failed");
                                    }
                                });
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.to_string()));
                                return;
                            }
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    std::future::pending::<()>().await;
                });
            })
            .map_err(|source| RunError::Io {
                what: "cannot start the control thread".into(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(RunError::Io {
                    what: "control thread".into(),
                    source: std::io::Error::other(e),
                })
            }
            Err(_) => {
                return Err(RunError::Io {
                    what: "control thread".into(),
                    source: std::io::Error::other("exited during start-up"),
                })
            }
        }

        let (drain_tx, drain_rx) = watch::channel(false);
        let mut worker_handles = Vec::with_capacity(workers);
        if let Backend::Dpdk(dpdk) = &plan.backend {
            let (handles, addrs) =
                start_dpdk(dpdk, &plan.listeners, &shared, &registry, &drain_rx)?;
            worker_handles.extend(handles);
            listener_addrs.extend(addrs);
            per_worker.clear();
        }
        for (id, listeners) in per_worker.into_iter().enumerate() {
            worker_handles.push(
                spawn_kernel_worker(
                    id,
                    KernelTransport::with_mark(plan.upstream_mark),
                    listeners,
                    shared.clone(),
                    drain_rx.clone(),
                )
                .map_err(|source| RunError::Io {
                    what: format!("cannot start worker {id}"),
                    source,
                })?,
            );
        }
        if let Some(path) = &plan.pid_file {
            write_pid_file(path)?;
        }
        control.state.store(STATE_RUNNING, Ordering::Release);
        for l in &plan.listeners {
            if let Some(addr) = listener_addrs.get(&l.name) {
                tracing::info!(listener = %l.name, address = %addr, "listening");
            }
        }
        tracing::info!(
            workers = worker_handles.len(),
            backend = match plan.backend {
                Backend::Kernel => "kernel",
                Backend::Dpdk(_) => "dpdk",
            },
            version = build.version,
            commit = build.commit,
            "mosn started"
        );
        Ok(Server {
            shared,
            registry,
            control,
            drain_tx,
            stop_control: Some(stop_tx),
            _control_thread: control_thread,
            listener_addrs,
            admin_addr,
            graceful_timeout: plan.graceful_timeout,
            workers: worker_handles,
            _capture: capture,
        })
    }

    /// The bound address of a listener.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listener_addrs.get(name).copied()
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The metric registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The cluster manager.
    pub fn clusters(&self) -> &Arc<ClusterManager> {
        &self.shared.clusters
    }

    /// Downstream connections open now.
    pub fn active_connections(&self) -> usize {
        self.shared.active_connections.load(Ordering::Acquire)
    }

    /// Applies a new plan without closing connections: clusters are added, replaced or
    /// removed; listeners that still exist take their new filter settings for new
    /// connections. Listeners added or removed, or whose address changed, need a restart
    /// (logged).
    pub fn reload(&self, plan: &Plan) -> Result<(), RunError> {
        let cm = &self.shared.clusters;
        for c in &plan.clusters {
            cm.add_or_update(c.clone())?;
        }
        let keep: std::collections::HashSet<&str> =
            plan.clusters.iter().map(|c| c.name.as_str()).collect();
        for name in cm.snapshot().keys() {
            if !keep.contains(name.as_str()) {
                cm.remove(name);
            }
        }
        let old = self.shared.snapshot.load_full();
        let mut next = Snapshot {
            by_addr: addresses(plan),
            ..Snapshot::default()
        };
        for l in &plan.listeners {
            match old.listeners.get(&l.name) {
                Some(prev) => {
                    let stats = prev.1.clone();
                    let rt = listener_runtime(l, &stats, &self.registry)?;
                    next.listeners.insert(l.name.clone(), Arc::new((rt, stats)));
                    if l.bind
                        && self.listener_addrs.get(&l.name).is_some_and(|a| {
                            a.ip() != l.listen.addr.ip()
                                || (l.listen.addr.port() != 0 && a.port() != l.listen.addr.port())
                        })
                    {
                        tracing::warn!(listener = %l.name, "listener address changed: takes effect after a restart");
                    }
                }
                None => {
                    tracing::warn!(listener = %l.name, "new listener: takes effect after a restart")
                }
            }
        }
        for name in old.listeners.keys() {
            if !next.listeners.contains_key(name) {
                tracing::warn!(listener = %name, "listener removed from config: it stops serving new connections");
            }
        }
        self.shared.snapshot.store(Arc::new(next));
        self.control.dump.store(Arc::new(plan.config_dump.clone()));
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Stops accepting: once this returns, no connection accepted from now on is served, and
    /// the listeners close as each worker notices. Idempotent.
    pub fn begin_drain(&self) {
        if self.control.state.swap(STATE_DRAINING, Ordering::AcqRel) == STATE_DRAINING {
            return;
        }
        let _ = self.drain_tx.send(true);
        tracing::info!(active = self.active_connections(), timeout = ?self.graceful_timeout, "draining: stopped accepting");
    }

    /// Stops accepting, waits up to the graceful timeout for open connections to finish, and
    /// stops the control thread. Returns the number of connections still open at the end.
    pub fn drain(mut self) -> usize {
        self.begin_drain();
        let start = Instant::now();
        let mut last_log = Instant::now();
        loop {
            let active = self.active_connections();
            if active == 0 || start.elapsed() >= self.graceful_timeout {
                break;
            }
            if last_log.elapsed() >= Duration::from_secs(5) {
                tracing::info!(active, "draining: waiting for connections");
                last_log = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.active_connections();
        self.control.state.store(STATE_STOPPING, Ordering::Release);
        if left > 0 {
            tracing::warn!(
                left,
                "graceful timeout reached; closing remaining connections"
            );
        } else {
            tracing::info!(took = ?start.elapsed(), "drained");
        }
        // Stop the admin API; the control thread itself ends with the process.
        if let Some(tx) = self.stop_control.take() {
            let _ = tx.send(());
        }
        self.stop_workers();
        left
    }

    /// Stops the workers that hold something the process must give back before it exits (the
    /// DPDK worker closes its port: XDP program detached, promiscuous mode off) and waits up to
    /// [`WORKER_STOP_TIMEOUT`] for them. Kernel workers end with the process.
    fn stop_workers(&mut self) {
        let mut stopping = Vec::new();
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
                stopping.push(&w.thread);
            }
        }
        let start = Instant::now();
        while stopping.iter().any(|t| !t.is_finished()) {
            if start.elapsed() >= WORKER_STOP_TIMEOUT {
                tracing::warn!(
                    timeout = ?WORKER_STOP_TIMEOUT,
                    "a worker did not stop in time; exiting without it"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// How long [`Server::drain`] waits for a worker that releases something at exit.
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The DPDK worker's handles and its listeners' addresses.
pub(crate) type DpdkStarted = (Vec<Worker>, HashMap<Arc<str>, SocketAddr>);

/// Starts the DPDK worker (EAL, port, stack, listeners).
#[cfg(feature = "dpdk")]
fn start_dpdk(
    plan: &crate::dpdk::DpdkPlan,
    listeners: &[ListenerPlan],
    shared: &Arc<Shared>,
    registry: &Registry,
    drain: &watch::Receiver<bool>,
) -> Result<DpdkStarted, RunError> {
    crate::dpdk::spawn(plan, listeners, shared.clone(), registry, drain.clone())
}

/// This build has no DPDK: `plan()` already refuses such configs; a hand-made plan gets this.
#[cfg(not(feature = "dpdk"))]
fn start_dpdk(
    _plan: &crate::dpdk::DpdkPlan,
    _listeners: &[ListenerPlan],
    _shared: &Arc<Shared>,
    _registry: &Registry,
    _drain: &watch::Receiver<bool>,
) -> Result<DpdkStarted, RunError> {
    Err(RunError::Io {
        what: "DPDK backend".into(),
        source: std::io::Error::new(std::io::ErrorKind::Unsupported, crate::plan::NO_DPDK),
    })
}

fn write_pid_file(path: &std::path::Path) -> Result<(), RunError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
            what: format!("cannot create pid directory {}", dir.display()),
            source,
        })?;
    }
    std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| RunError::Io {
        what: format!("cannot write pid file {}", path.display()),
        source,
    })
}

/// What the process was told by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: drain and exit.
    Terminate,
    /// SIGHUP: reload the config file.
    Reload,
}

/// The process's signal handlers. Create it before anything else starts, so that a SIGTERM
/// that arrives during start-up is queued for [`Signals::wait`] instead of killing the process
/// with the default action.
pub struct Signals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signals")
    }
}

impl Signals {
    /// Installs handlers for SIGTERM, SIGINT and SIGHUP.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (term, int, hup) = rt.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ))
        })?;
        Ok(Signals { rt, term, int, hup })
    }

    /// Blocks until SIGTERM/SIGINT (`Terminate`) or SIGHUP (`Reload`), including one that
    /// arrived since the handlers were installed.
    pub fn wait(&mut self) -> Signal {
        let Signals { rt, term, int, hup } = self;
        rt.block_on(async {
            tokio::select! {
                _ = term.recv() => Signal::Terminate,
                _ = int.recv() => Signal::Terminate,
                _ = hup.recv() => Signal::Reload,
            }
        })
    }
}
