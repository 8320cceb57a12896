//! Workers: one thread each, a tokio `current_thread` runtime with a `LocalSet`, owning its
//! listener sockets and every connection accepted on them. Nothing on the per-connection path
//! takes a lock: configuration is read from an `ArcSwap` snapshot at accept time.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mosn_metrics::{Counter, Gauge, GaugeGuard, Registry};
use mosn_net::inspector::{self, Inspection};
use mosn_net::kernel::{KernelListener, KernelTransport};
use mosn_net::{Accepted, Listener, Transport};
use mosn_proxy::cluster::ClusterManager;
use mosn_proxy::http::{self, HttpProxySpec, RequestStats};
use mosn_proxy::tcp_proxy::{self, ListenerCtx, TcpProxySpec};
use mosn_stream::detect::Rewind;
use mosn_stream::pool::Pools;
use mosn_tls_offload::{Reloader, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

// === shared state ===

/// What a listener does with its connections, as of one config snapshot.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// Hand connections to the listener of their original destination.
    pub use_original_dst: bool,
    /// Terminate TLS on accepted connections (and with `inspector`, plaintext too).
    pub tls: Option<ListenerTls>,
    /// Context handed to each session (name, limits, byte counters).
    pub ctx: ListenerCtx,
    /// The network filter.
    pub filter: NetworkFilter,
}

/// A listener's TLS: the server configuration (shared by every worker), the inspector
/// switch, and the certificate-file watcher that lives as long as this snapshot.
#[derive(Debug)]
pub struct ListenerTls {
    /// Certificates, versions, suites, ALPN; chosen by SNI.
    pub config: ServerConfig,
    /// `inspector: true`: TLS and plaintext on one port.
    pub inspector: bool,
    /// Reloads certificates when their files change.
    pub reloader: Option<Reloader>,
}

/// How long a new connection may take to send its ClientHello (and finish the handshake).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The network filters this build runs.
#[derive(Debug)]
pub enum NetworkFilter {
    /// L4 forwarding.
    TcpProxy(TcpProxySpec),
    /// The L7 proxy (HTTP/1, HTTP/2).
    Http(Arc<HttpProxySpec>),
}

/// Per-listener connection counters, stable across snapshots.
#[derive(Debug, Clone)]
pub struct ListenerStats {
    /// Connections accepted.
    pub cx_total: Arc<Counter>,
    /// Connections open.
    pub cx_active: Arc<Gauge>,
    /// Bytes read from downstream.
    pub bytes_in: Arc<Counter>,
    /// Bytes written to downstream.
    pub bytes_out: Arc<Counter>,
    /// L7 request metrics (unused by tcp_proxy listeners).
    pub requests: Arc<RequestStats>,
}

impl ListenerStats {
    /// Counters for listener `name` in `registry`.
    pub fn new(registry: &Registry, name: &str) -> Self {
        let s = registry.scope("listener", &[("listener", name)]);
        ListenerStats {
            cx_total: s.counter("downstream_connection_total"),
            cx_active: s.gauge("downstream_connection_active"),
            bytes_in: s.counter("downstream_bytes_read_total"),
            bytes_out: s.counter("downstream_bytes_write_total"),
            requests: Arc::new(RequestStats::new(&s, "downstream")),
        }
    }
}

/// The immutable per-snapshot view workers read.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Listener behaviour by listener name.
    pub listeners: std::collections::HashMap<Arc<str>, Arc<(ListenerRuntime, ListenerStats)>>,
    /// Listener names by configured address (`bind_port: false` listeners included).
    pub by_addr: std::collections::HashMap<SocketAddr, Arc<str>>,
}

impl Snapshot {
    /// The listener a connection redirected from `dst` belongs to: the one configured at
    /// exactly `dst`, else one on the unspecified address with `dst`'s port (MOSN's rule).
    pub fn listener_for(&self, dst: SocketAddr) -> Option<&Arc<(ListenerRuntime, ListenerStats)>> {
        let any = match dst {
            SocketAddr::V4(_) => {
                SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), dst.port())
            }
            SocketAddr::V6(_) => {
                SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), dst.port())
            }
        };
        let name = self.by_addr.get(&dst).or_else(|| self.by_addr.get(&any))?;
        self.listeners.get(name)
    }
}

/// State shared by the control thread and every worker.
#[derive(Debug)]
pub struct Shared {
    /// Current listener behaviour, swapped atomically on reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// Clusters, swapped atomically per cluster.
    pub clusters: Arc<ClusterManager>,
    /// Downstream connections open in the whole process (graceful drain waits for 0).
    pub active_connections: AtomicUsize,
}

impl Shared {
    /// Shared state with an empty snapshot.
    pub fn new(clusters: Arc<ClusterManager>) -> Self {
        Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            clusters,
            active_connections: AtomicUsize::new(0),
        }
    }
}

struct ActiveConn(Arc<Shared>);

impl ActiveConn {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.active_connections.fetch_add(1, Ordering::AcqRel);
        ActiveConn(shared.clone())
    }
}

impl Drop for ActiveConn {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

// === accept loop (any transport) ===

/// Accepts on `listener` until `drain` turns true, serving each connection in its own local
/// task with the filter of the snapshot current at accept time. Dropping the listener on drain
/// stops accepting; sessions already running are not touched.
/// Any [`Transport`] whose connections are `Send` (kernel sockets, the userspace stack's)
/// runs every network filter, with or without TLS.
pub async fn serve_listener<T: Transport>(
    pools: Rc<Pools<T>>,
    mut listener: T::Listener,
    name: Arc<str>,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) where
    T::Conn: Send,
{
    let bound = listener.local_addr().ok();
    loop {
        if *drain.borrow() {
            break;
        }
        let accepted = tokio::select! {
            // Drain first: once it is signalled, nothing new is served.
            biased;
            changed = drain.changed() => {
                // A closed channel means the server handle is gone: stop accepting too.
                if changed.is_err() {
                    break;
                }
                continue;
            }
            r = listener.accept() => r,
        };
        if *drain.borrow() {
            // Accepted in the same instant the drain began: close it unserved.
            break;
        }
        let mut accepted = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE/ECONNABORTED: log, back off briefly, keep the listener.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let snap = shared.snapshot.load();
        let Some(mut rt) = snap.listeners.get(&name).cloned() else {
            tracing::warn!(listener = %name, "listener removed from config; closing new connection");
            continue;
        };
        if rt.0.use_original_dst {
            // Captured traffic: serve it with the listener of its original destination, if
            // one is configured; else with this one (e.g. an ORIGINAL_DST tcp_proxy).
            if accepted.original_dst.is_none() {
                if let Some((dst, local)) = steered(bound, accepted.local) {
                    accepted.original_dst = Some(dst);
                    accepted.local = local;
                }
            }
            if let Some(dst) = accepted.original_dst {
                if let Some(target) = snap.listener_for(dst) {
                    if !Arc::ptr_eq(target, &rt) {
                        rt = target.clone();
                        // The L7 proxy sees the connection as arriving at the address the
                        // client meant (logs, filters); tcp_proxy keeps the socket's own
                        // local address for its loop check.
                        if matches!(rt.0.filter, NetworkFilter::Http(_)) {
                            accepted.local = dst;
                        }
                    }
                }
            }
        }
        let stats = &rt.1;
        stats.cx_total.inc();
        let guard = (
            GaugeGuard::new(stats.cx_active.clone()),
            ActiveConn::new(&shared),
        );
        let pools = pools.clone();
        let shared = shared.clone();
        let drain = drain.clone();
        tokio::task::spawn_local(async move {
            let _guard = guard;
            let (runtime, _) = &*rt;
            match &runtime.tls {
                None => serve_stream(&pools, &shared, runtime, accepted, drain).await,
                Some(tls) => serve_tls(&pools, &shared, runtime, tls, accepted, drain).await,
            }
        });
    }
    tracing::debug!(listener = %name, "stopped accepting");
}

/// A connection the eBPF inbound capture (`sk_lookup`) handed to this listener: nothing was
/// rewritten, so the accepted socket's local address is where the client connected, and it
/// differs from the address the listener is bound to (another port, or another address than
/// a specific bound one). Returns `(original destination, local address)` as an iptables
/// `REDIRECT` would have left them (the destination's address, the listener's port), so that
/// the rest (hand-off, `tcp_proxy`'s loop check, `ORIGINAL_DST` clusters) is the same. `None`
/// for a connection made to the listener itself. An IPv4 client of a dual-stack listener
/// shows as IPv4-mapped: it is given back as IPv4, the form virtual listeners use.
fn steered(bound: Option<SocketAddr>, local: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
    let bound = bound?;
    let unmap = |a: std::net::IpAddr| match a {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, std::net::IpAddr::V4),
        v4 => v4,
    };
    let ip = unmap(local.ip());
    let same_ip = bound.ip().is_unspecified() || unmap(bound.ip()) == ip;
    (local.port() != bound.port() || !same_ip).then(|| {
        (
            SocketAddr::new(ip, local.port()),
            SocketAddr::new(ip, bound.port()),
        )
    })
}

/// A TLS listener's connection: with `inspector`, the first bytes decide TLS or plaintext
/// (replayed either way); then the handshake, within [`TLS_HANDSHAKE_TIMEOUT`]; then the
/// network filter over the session.
async fn serve_tls<T: Transport>(
    pools: &Rc<Pools<T>>,
    shared: &Arc<Shared>,
    runtime: &ListenerRuntime,
    tls: &ListenerTls,
    accepted: Accepted<T::Conn>,
    drain: watch::Receiver<bool>,
) where
    T::Conn: Send,
{
    let Accepted {
        mut stream,
        peer,
        local,
        original_dst,
    } = accepted;
    let name = &runtime.ctx.name;
    let seen = if tls.inspector {
        let inspected =
            inspector::inspect_stream(&mut stream, TLS_HANDSHAKE_TIMEOUT, inspector::MAX_HELLO)
                .await;
        match inspected {
            Ok((Inspection::Tls(_), seen)) => seen,
            Ok((_, seen)) => {
                let stream = Rewind::new(seen, stream);
                let plain = Accepted {
                    stream,
                    peer,
                    local,
                    original_dst,
                };
                return serve_stream(pools, shared, runtime, plain, drain).await;
            }
            Err(e) => {
                tracing::debug!(listener = %name, %peer, error = %e, "TLS inspector: closing");
                return;
            }
        }
    } else {
        bytes::Bytes::new()
    };
    let io = Rewind::new(seen, stream);
    let session = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.config.accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(listener = %name, %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(listener = %name, %peer, "TLS handshake timed out");
            return;
        }
    };
    let secured = Accepted {
        stream: session,
        peer,
        local,
        original_dst,
    };
    serve_stream(pools, shared, runtime, secured, drain).await;
}

/// The listener's network filter over a stream with `Send` connections: a plain one, a TLS
/// session, or replayed plaintext.
async fn serve_stream<T: Transport, C>(
    pools: &Rc<Pools<T>>,
    shared: &Arc<Shared>,
    runtime: &ListenerRuntime,
    accepted: Accepted<C>,
    drain: watch::Receiver<bool>,
) where
    T::Conn: Send,
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match &runtime.filter {
        NetworkFilter::TcpProxy(spec) => {
            tcp_proxy::serve(
                pools.transport(),
                spec,
                &shared.clusters,
                &runtime.ctx,
                accepted,
            )
            .await;
        }
        NetworkFilter::Http(spec) => {
            http::serve(
                pools,
                spec.clone(),
                shared.clusters.clone(),
                &runtime.ctx,
                accepted,
                drain,
            )
            .await;
        }
    }
}

// === worker threads ===

/// Idle HTTP/1 upstream connections a worker keeps per host.
pub const UPSTREAM_IDLE_PER_HOST: usize = 256;

/// A listener socket bound by the control thread for one worker.
#[derive(Debug)]
pub struct BoundListener {
    /// Listener name.
    pub name: Arc<str>,
    /// The socket.
    pub socket: std::net::TcpListener,
}

/// A running worker thread.
#[derive(Debug)]
pub struct Worker {
    /// The thread.
    pub thread: std::thread::JoinHandle<()>,
    /// Ends the worker's event loop when sent or dropped, for workers that hold something to
    /// release before the process exits (the DPDK worker's port); `None` for kernel workers,
    /// which end with the process.
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// How far ahead [`timer_anchor`] keeps a timer pending on a worker's runtime.
const TIMER_ANCHOR: Duration = Duration::from_secs(1);

/// Keeps a timer pending on the worker's runtime at all times, due within [`TIMER_ANCHOR`].
///
/// tokio's time driver unparks the runtime (a write to its eventfd) whenever a timer is
/// registered that is due before the wake-up the driver planned when it last parked, or when it
/// planned none. On a current-thread worker that write is wasted: the runtime is not parked, it
/// is the very thread registering the timer; and the next `epoll_wait` returns at once for it.
/// Every proxied request registers its deadline (the route timeout, seconds away), and a worker
/// that went idle between two requests parked with no timer at all: one `write` and one empty
/// `epoll_wait` per request (measured: 0.77 eventfd writes per request at 2,000 req/s). With a
/// timer always due within a second, a request's deadline is never the earliest one. The cost:
/// one wake-up per second on an idle worker.
pub(crate) async fn timer_anchor() {
    loop {
        tokio::time::sleep(TIMER_ANCHOR).await;
    }
}

/// Starts worker `id` on its own thread with kernel sockets.
pub fn spawn_kernel_worker(
    id: usize,
    transport: KernelTransport,
    listeners: Vec<BoundListener>,
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
) -> std::io::Result<Worker> {
    let thread = std::thread::Builder::new()
        .name(format!("mosn-worker-{id}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(worker = id, error = %e, "cannot build the worker runtime");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                tokio::task::spawn_local(timer_anchor());
                let pools = Pools::new(transport, UPSTREAM_IDLE_PER_HOST);
                tokio::task::spawn_local(mosn_proxy::http::session::keep_pools_in_sync(
                    pools.clone(),
                    shared.clusters.clone(),
                ));
                let mut tasks = Vec::new();
                for l in listeners {
                    let addr: Option<SocketAddr> = l.socket.local_addr().ok();
                    match KernelListener::from_std(l.socket) {
                        Ok(kl) => tasks.push(tokio::task::spawn_local(serve_listener(
                            pools.clone(),
                            kl,
                            l.name.clone(),
                            shared.clone(),
                            drain.clone(),
                        ))),
                        Err(e) => tracing::error!(worker = id, listener = %l.name, ?addr, error = %e, "cannot adopt listener socket"),
                    }
                }
                for t in tasks {
                    let _ = t.await;
                }
                // Keep serving the sessions of this worker until the process exits.
                std::future::pending::<()>().await;
            });
        })?;
    Ok(Worker { thread, stop: None })
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;
    use std::time::Duration;

    use super::timer_anchor;

    /// Write-like system calls made by the calling thread so far (`syscw`).
    fn thread_writes() -> u64 {
        std::fs::read_to_string("/proc/thread-self/io")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("syscw:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap()
    }

    /// On a worker runtime: `rounds` times, park with nothing of ours pending until another
    /// thread wakes it, then register a request-length deadline (as every proxied request
    /// does) and drop it. Returns the runtime thread's write calls meanwhile.
    fn writes_for_deadlines(anchor: bool, rounds: usize) -> u64 {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                if anchor {
                    tokio::task::spawn_local(timer_anchor());
                }
                tokio::task::yield_now().await;
                let before = thread_writes();
                for _ in 0..rounds {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(1));
                        let _ = tx.send(());
                    });
                    rx.await.unwrap();
                    let deadline = tokio::time::sleep(Duration::from_secs(15));
                    tokio::pin!(deadline);
                    std::future::poll_fn(|cx| {
                        let _ = deadline.as_mut().poll(cx);
                        Poll::Ready(())
                    })
                    .await;
                }
                thread_writes() - before
            })
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_request_deadline_on_an_idle_worker_costs_no_write() {
        let rounds = 50;
        let without = writes_for_deadlines(false, rounds);
        // The premise: tokio unparks (writes its eventfd) for such a deadline.
        assert!(
            without >= rounds as u64 * 9 / 10,
            "{without} writes for {rounds} deadlines without the anchor"
        );
        let with = writes_for_deadlines(true, rounds);
        eprintln!("writes: {without} without the anchor, {with} with it");
        assert!(
            with <= 2,
            "{with} writes for {rounds} deadlines with the anchor"
        );
    }
}
