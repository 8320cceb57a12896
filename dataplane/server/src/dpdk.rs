//! The DPDK backend of a server (`servers[0].network_backend.type: "dpdk"`): a worker thread
//! that owns the EAL, the port and its queue, with the userspace TCP stack (smoltcp) over
//! them. Every listener binds on that stack and every upstream connection leaves through it;
//! above the transport seam everything (codecs, stream layer, proxy, TLS) is the code the
//! kernel workers run.
//!
//! ```text
//!  thread mosn-dpdk-0: EAL main lcore (pinned by EAL to its first -l core)
//!    Port::open -> queue 0 -> DpdkDevice -> UserspaceStack (PollMode::Busy)
//!    current-thread runtime + LocalSet: stack driver, serve_listener per listener,
//!    a task per connection, upstream pools on the same stack
//! ```
//!
//! The worker thread calls `rte_eal_init` itself, so that EAL pins that thread (the one that
//! busy-polls the queue) and not the process's main or control threads.

use std::net::Ipv4Addr;

/// What a DPDK server runs on: the port and the userspace stack's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DpdkPlan {
    /// EAL arguments (without argv[0]); `--no-pci` or an explicit PCI allow-list.
    pub eal_args: Vec<String>,
    /// The port: a device name (`net_tap0`) or a port number.
    pub port: String,
    /// The stack's IPv4 address and prefix.
    pub address: ipnet::Ipv4Net,
    /// Default route.
    pub gateway: Option<Ipv4Addr>,
    /// Static routes: (destination network, next hop).
    pub routes: Vec<(ipnet::Ipv4Net, Ipv4Addr)>,
    /// Port MTU.
    pub mtu: u16,
    /// RX/TX queue pairs (one worker each).
    pub queues: u16,
    /// Mbufs in the port's pool.
    pub mempool_size: u32,
    /// Receive buffer per connection, bytes.
    pub rx_buffer: usize,
    /// Transmit buffer per connection, bytes.
    pub tx_buffer: usize,
}

#[cfg(feature = "dpdk")]
pub(crate) use imp::{block_sigio, spawn};

#[cfg(feature = "dpdk")]
mod imp {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::{mpsc, Arc, Weak};
    use std::time::Duration;

    use mosn_metrics::Registry;
    use mosn_net::dpdk::{init_eal, DpdkDevice, Port, PortOptions};
    use mosn_net::userspace::{PollMode, StackConfig, UserspaceStack, UserspaceTransport};
    use mosn_net::{Listener, Transport};
    use mosn_stream::pool::Pools;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};
    use tokio::sync::{oneshot, watch};

    use super::DpdkPlan;
    use crate::run::{DpdkStarted, ListenerPlan, RunError};
    use crate::worker::{serve_listener, Shared, Worker, UPSTREAM_IDLE_PER_HOST};

    /// How long start-up waits for the worker to bring the port up and bind the listeners.
    const READY_TIMEOUT: Duration = Duration::from_secs(60);

    type Ready = Result<HashMap<Arc<str>, SocketAddr>, String>;

    /// Keeps the PMDs' per-frame signals off every thread started from here on (see
    /// `mosn_net::dpdk::block_pmd_signals`); the polling worker takes them back.
    pub(crate) fn block_sigio() {
        mosn_net::dpdk::block_pmd_signals();
    }

    /// How often the worker copies its stack's counters into the registry.
    const STACK_STATS_EVERY: Duration = Duration::from_secs(1);

    /// Starts the DPDK worker: EAL, port, stack, listeners. Returns once every listener is
    /// bound on the stack (their addresses), or the first failure as a start-up error.
    pub(crate) fn spawn(
        plan: &DpdkPlan,
        listeners: &[ListenerPlan],
        shared: Arc<Shared>,
        registry: &Registry,
        drain: watch::Receiver<bool>,
    ) -> Result<DpdkStarted, RunError> {
        let plan = plan.clone();
        let listeners: Vec<ListenerPlan> = listeners.iter().filter(|l| l.bind).cloned().collect();
        let registry = registry.clone();
        let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("mosn-dpdk-0".into())
            .spawn(move || run(plan, listeners, shared, registry, drain, ready_tx, stop_rx))
            .map_err(|source| RunError::Io {
                what: "cannot start the DPDK worker".into(),
                source,
            })?;
        let fail = |why: String| RunError::Io {
            what: "DPDK backend (servers[0].network_backend)".into(),
            source: std::io::Error::other(why),
        };
        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(addrs)) => Ok((
                vec![Worker {
                    thread,
                    stop: Some(stop_tx),
                }],
                addrs,
            )),
            Ok(Err(why)) => Err(fail(why)),
            Err(_) => Err(fail("the DPDK worker did not come up".into())),
        }
    }

    /// Port counters (`rte_eth_stats_get`, safe from any thread) mirrored into scope
    /// `dpdk{port=..}` whenever the registry is read. The collector holds a weak reference:
    /// the port closes when the worker stops, and the counters keep their last values.
    fn port_metrics(registry: &Registry, name: &str, port: Weak<Port>) {
        let scope = registry.scope("dpdk", &[("port", name)]);
        let rx = scope.counter("rx_packets_total");
        let tx = scope.counter("tx_packets_total");
        let rx_bytes = scope.counter("rx_bytes_total");
        let tx_bytes = scope.counter("tx_bytes_total");
        let rx_dropped = scope.counter("rx_dropped_total");
        let rx_errors = scope.counter("rx_errors_total");
        let tx_errors = scope.counter("tx_errors_total");
        let tx_dropped = scope.counter("tx_dropped_total");
        registry.add_collector(move || {
            let Some(port) = port.upgrade() else {
                return;
            };
            let s = port.stats();
            rx.raise_to(s.rx_packets);
            tx.raise_to(s.tx_packets);
            rx_bytes.raise_to(s.rx_bytes);
            tx_bytes.raise_to(s.tx_bytes);
            rx_dropped.raise_to(s.rx_dropped);
            rx_errors.raise_to(s.rx_errors);
            tx_errors.raise_to(s.tx_errors);
            tx_dropped.raise_to(s.tx_dropped);
        });
    }

    /// The stack's own counters (it lives on this thread only), copied every
    /// [`STACK_STATS_EVERY`] into scope `userspace_stack{port=..}`.
    async fn stack_metrics(registry: Registry, name: String, stack: UserspaceStack<DpdkDevice>) {
        let scope = registry.scope("userspace_stack", &[("port", &name)]);
        let sockets = scope.gauge("sockets");
        let conns = scope.gauge("connections");
        let orphans = scope.gauge("orphans");
        let ports = scope.gauge("ports_in_use");
        let rx = scope.counter("rx_packets_total");
        let tx = scope.counter("tx_packets_total");
        let gauge = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let mut tick = tokio::time::interval(STACK_STATS_EVERY);
        loop {
            tick.tick().await;
            let s = stack.stats();
            sockets.set(gauge(s.sockets));
            conns.set(gauge(s.conns));
            orphans.set(gauge(s.orphans));
            ports.set(gauge(s.ports));
            rx.raise_to(s.rx_packets);
            tx.raise_to(s.tx_packets);
        }
    }

    fn run(
        plan: DpdkPlan,
        listeners: Vec<ListenerPlan>,
        shared: Arc<Shared>,
        registry: Registry,
        drain: watch::Receiver<bool>,
        ready: mpsc::Sender<Ready>,
        stop: oneshot::Receiver<()>,
    ) {
        let setup = || -> Result<(Arc<Port>, DpdkDevice), String> {
            init_eal(&plan.eal_args).map_err(|e| format!("EAL: {e}"))?;
            let opts = PortOptions {
                device: plan.port.clone(),
                queues: plan.queues,
                mempool_size: plan.mempool_size,
                mtu: plan.mtu,
                ..PortOptions::default()
            };
            let port = Port::open(&opts).map_err(|e| format!("port {:?}: {e}", plan.port))?;
            let device = port
                .queue(0)
                .map_err(|e| format!("port {:?} queue 0: {e}", plan.port))?;
            Ok((Arc::new(port), device))
        };
        let setup = setup();
        // EAL's own threads exist now and keep SIGIO blocked; this thread takes it.
        mosn_net::dpdk::unblock_pmd_signals();
        let (port, device) = match setup {
            Ok(p) => p,
            Err(why) => {
                let _ = ready.send(Err(why));
                return;
            }
        };
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot build the worker runtime: {e}")));
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let mac = EthernetAddress(port.mac());
            let cidr = Ipv4Cidr::new(plan.address.addr(), plan.address.prefix_len());
            let mut config = StackConfig::new(HardwareAddress::Ethernet(mac), vec![IpCidr::Ipv4(cidr)]);
            config.gateway = plan.gateway;
            config.routes = plan
                .routes
                .iter()
                .map(|(net, via)| (Ipv4Cidr::new(net.network(), net.prefix_len()), *via))
                .collect();
            config.rx_buffer = plan.rx_buffer;
            config.tx_buffer = plan.tx_buffer;
            config.backlog = 1024;
            config.poll_mode = PollMode::Busy;
            let stack = match UserspaceStack::new(device, config) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(format!("userspace stack: {e}")));
                    return;
                }
            };
            tokio::task::spawn_local(stack.run());
            port_metrics(&registry, &plan.port, Arc::downgrade(&port));
            tokio::task::spawn_local(stack_metrics(registry, plan.port.clone(), stack.clone()));
            let transport = UserspaceTransport::new(stack.clone());
            let mut bound = Vec::new();
            let mut addrs = HashMap::new();
            for l in &listeners {
                match transport.listen(&l.listen) {
                    Ok(sock) => {
                        if let Ok(a) = sock.local_addr() {
                            addrs.insert(l.name.clone(), a);
                        }
                        bound.push((l.name.clone(), sock));
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!(
                            "listener {} cannot bind {} on the userspace stack: {e}",
                            l.name, l.listen.addr
                        )));
                        return;
                    }
                }
            }
            tracing::info!(port = %plan.port, %mac, address = %plan.address, gateway = ?plan.gateway, "DPDK port up");
            let pools = Pools::new(transport, UPSTREAM_IDLE_PER_HOST);
            tokio::task::spawn_local(mosn_proxy::http::session::keep_pools_in_sync(
                pools.clone(),
                shared.clusters.clone(),
            ));
            for (name, sock) in bound {
                tokio::task::spawn_local(serve_listener(
                    pools.clone(),
                    sock,
                    name,
                    shared.clone(),
                    drain.clone(),
                ));
            }
            let _ = ready.send(Ok(addrs));
            // Run until the server stops (after its drain), then let go of the port.
            let _ = stop.await;
            drop(port);
        });
        // Dropping the tasks drops the connections, the stack and its device (the queue): the
        // last reference to the port, which then switches promiscuous mode off, stops and closes
        // (net_af_xdp detaches its XDP program) and frees its mbuf pool.
        drop(local);
        drop(rt);
        tracing::info!("DPDK worker stopped");
    }
}
