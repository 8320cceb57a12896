//! The DPDK backend of a server (`servers[0].network_backend.type: "dpdk"`): one worker thread
//! per RX/TX queue pair of the port, each with its own userspace TCP stack (smoltcp) on the
//! same address. Every listener binds on every stack and every upstream connection leaves
//! through its worker's stack; above the transport seam everything (codecs, stream layer,
//! proxy, TLS) is the code the kernel workers run.
//!
//! ```text
//!  thread mosn-dpdk-0: EAL init, Port::open (N queues) -> queue 0 -> DpdkDevice
//!                      -> UserspaceStack (PollMode::Busy, or Sleep woken by the queue's
//!                         RX interrupt with poll_mode interrupt; ephemeral share 0 of N)
//!  thread mosn-dpdk-q: queue q of the same port -> its own stack (share q of N)
//!    each: current-thread runtime + LocalSet: stack driver, serve_listener per listener,
//!    a task per connection, upstream pools on its own stack
//! ```
//!
//! Worker 0 calls `rte_eal_init` itself, so that EAL pins that thread's start-up and not the
//! process's main or control threads. With several queues, the devices steer each received
//! frame to the stack that owns it (`mosn_net::userspace::steer`): replies to an upstream
//! connection by the ephemeral port's share, an accepted connection's segments by a hash of
//! the peer, ARP to all.

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
    /// The stack's IPv6 address and prefix, when it speaks IPv6 too.
    pub address6: Option<ipnet::Ipv6Net>,
    /// IPv6 default route.
    pub gateway6: Option<std::net::Ipv6Addr>,
    /// Static routes: (destination network, next hop).
    pub routes: Vec<(ipnet::Ipv4Net, Ipv4Addr)>,
    /// Port MTU.
    pub mtu: u16,
    /// RX/TX queue pairs (one worker each).
    pub queues: u16,
    /// `poll_mode: interrupt`: workers sleep on their queue's RX interrupt when no frames
    /// come, instead of polling all the time.
    pub rx_interrupts: bool,
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
    use mosn_net::dpdk::{init_eal, DpdkDevice, Port, PortOptions, RxInterrupt};
    use mosn_net::userspace::{
        ephemeral_share, PollMode, StackConfig, UserspaceStack, UserspaceTransport,
    };
    use mosn_net::{Listener, Transport};
    use mosn_stream::pool::Pools;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr, Ipv6Cidr};
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

    /// How a worker gets its queue: worker 0 opens the port (and passes it on), the others
    /// take their queue of it.
    enum Origin {
        Open(mpsc::Sender<Arc<Port>>),
        Queue(Arc<Port>),
    }

    /// Starts the DPDK workers: EAL, port, one stack per queue, listeners on each. Returns
    /// once every listener is bound on every stack (their addresses), or the first failure as
    /// a start-up error.
    pub(crate) fn spawn(
        plan: &DpdkPlan,
        listeners: &[ListenerPlan],
        shared: Arc<Shared>,
        registry: &Registry,
        drain: watch::Receiver<bool>,
    ) -> Result<DpdkStarted, RunError> {
        let listeners: Vec<ListenerPlan> = listeners.iter().filter(|l| l.bind).cloned().collect();
        let fail = |why: String| RunError::Io {
            what: "DPDK backend (servers[0].network_backend)".into(),
            source: std::io::Error::other(why),
        };
        let (port_tx, port_rx) = mpsc::channel();
        let (first, addrs) = start_worker(
            0,
            Origin::Open(port_tx),
            plan,
            listeners.clone(),
            &shared,
            registry,
            &drain,
        )
        .map_err(fail)?;
        let mut workers = vec![first];
        if plan.queues > 1 {
            // Worker 0 sent the port before it reported ready.
            let port = port_rx
                .try_recv()
                .map_err(|_| fail("the DPDK worker 0 did not hand its port over".into()))?;
            // The other stacks bind what worker 0 bound (a listener on port 0 got one).
            let bound: Vec<ListenerPlan> = listeners
                .iter()
                .cloned()
                .map(|mut l| {
                    if let Some(a) = addrs.get(&l.name) {
                        l.listen.addr = *a;
                    }
                    l
                })
                .collect();
            for q in 1..plan.queues {
                let (w, _) = start_worker(
                    q,
                    Origin::Queue(port.clone()),
                    plan,
                    bound.clone(),
                    &shared,
                    registry,
                    &drain,
                )
                .map_err(fail)?;
                workers.push(w);
            }
        }
        Ok((workers, addrs))
    }

    /// Starts the worker of queue `q` and waits until its listeners are bound.
    fn start_worker(
        q: u16,
        origin: Origin,
        plan: &DpdkPlan,
        listeners: Vec<ListenerPlan>,
        shared: &Arc<Shared>,
        registry: &Registry,
        drain: &watch::Receiver<bool>,
    ) -> Result<(Worker, HashMap<Arc<str>, SocketAddr>), String> {
        let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (plan, shared, registry, drain) = (
            plan.clone(),
            shared.clone(),
            registry.clone(),
            drain.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("mosn-dpdk-{q}"))
            .spawn(move || {
                run(
                    q, origin, plan, listeners, shared, registry, drain, ready_tx, stop_rx,
                )
            })
            .map_err(|e| format!("cannot start the DPDK worker {q}: {e}"))?;
        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(addrs)) => Ok((
                Worker {
                    thread,
                    stop: Some(stop_tx),
                },
                addrs,
            )),
            Ok(Err(why)) => Err(why),
            Err(_) => Err(format!("the DPDK worker {q} did not come up")),
        }
    }

    /// Wakes the stack's driver whenever frames arrive on its queue; the driver then polls
    /// the queue until its rounds go quiet again.
    async fn rx_wakeups(interrupt: RxInterrupt, stack: UserspaceStack<DpdkDevice>) {
        loop {
            if let Err(e) = interrupt.arrived().await {
                tracing::error!(error = %e, "DPDK: RX interrupt failed; the queue is polled from now on");
                // Without wake-ups the stack would see frames only on its timers: poll.
                loop {
                    stack.notify();
                    tokio::task::yield_now().await;
                }
            }
            stack.notify();
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
        let steered = scope.counter("steered_total");
        let steer_dropped = scope.counter("steer_dropped_total");
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
            steered.raise_to(s.steered);
            steer_dropped.raise_to(s.steer_dropped);
        });
    }

    /// The stack's own counters (it lives on this thread only), copied every
    /// [`STACK_STATS_EVERY`] into scope `userspace_stack{port=..,queue=..}`.
    async fn stack_metrics(
        registry: Registry,
        name: String,
        queue: u16,
        stack: UserspaceStack<DpdkDevice>,
    ) {
        let queue = queue.to_string();
        let scope = registry.scope("userspace_stack", &[("port", &name), ("queue", &queue)]);
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

    #[allow(clippy::too_many_arguments)]
    fn run(
        q: u16,
        origin: Origin,
        plan: DpdkPlan,
        listeners: Vec<ListenerPlan>,
        shared: Arc<Shared>,
        registry: Registry,
        drain: watch::Receiver<bool>,
        ready: mpsc::Sender<Ready>,
        stop: oneshot::Receiver<()>,
    ) {
        let setup = || -> Result<(Arc<Port>, DpdkDevice), String> {
            let port = match origin {
                Origin::Open(hand_over) => {
                    init_eal(&plan.eal_args).map_err(|e| format!("EAL: {e}"))?;
                    let opts = PortOptions {
                        device: plan.port.clone(),
                        queues: plan.queues,
                        mempool_size: plan.mempool_size,
                        mtu: plan.mtu,
                        rx_interrupts: plan.rx_interrupts,
                        ..PortOptions::default()
                    };
                    let port = Arc::new(
                        Port::open(&opts).map_err(|e| format!("port {:?}: {e}", plan.port))?,
                    );
                    if plan.queues > 1 {
                        let _ = hand_over.send(port.clone());
                    }
                    port
                }
                Origin::Queue(port) => port,
            };
            let device = port
                .queue(q)
                .map_err(|e| format!("port {:?} queue {q}: {e}", plan.port))?;
            Ok((port, device))
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
            tokio::task::spawn_local(crate::worker::timer_anchor());
            let mac = EthernetAddress(port.mac());
            let cidr = Ipv4Cidr::new(plan.address.addr(), plan.address.prefix_len());
            let interrupt = match plan.rx_interrupts.then(|| device.rx_interrupt()).transpose() {
                Ok(i) => i,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            };
            let mut addrs = vec![IpCidr::Ipv4(cidr)];
            if let Some(a6) = plan.address6 {
                addrs.push(IpCidr::Ipv6(Ipv6Cidr::new(a6.addr(), a6.prefix_len())));
            }
            let mut config = StackConfig::new(HardwareAddress::Ethernet(mac), addrs);
            config.gateway = plan.gateway;
            config.gateway6 = plan.gateway6;
            config.routes = plan
                .routes
                .iter()
                .map(|(net, via)| (Ipv4Cidr::new(net.network(), net.prefix_len()), *via))
                .collect();
            config.rx_buffer = plan.rx_buffer;
            config.tx_buffer = plan.tx_buffer;
            config.backlog = 1024;
            // With RX interrupts the driver sleeps when rounds go quiet and the queue's
            // interrupt fd wakes it (rx_wakeups); otherwise it polls on every turn.
            config.poll_mode = if interrupt.is_some() {
                PollMode::Sleep
            } else {
                PollMode::Busy
            };
            config.ephemeral = ephemeral_share(q, plan.queues);
            let stack = match UserspaceStack::new(device, config) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(format!("userspace stack: {e}")));
                    return;
                }
            };
            tokio::task::spawn_local(stack.run());
            if let Some(interrupt) = interrupt {
                tokio::task::spawn_local(rx_wakeups(interrupt, stack.clone()));
            }
            if q == 0 {
                port_metrics(&registry, &plan.port, Arc::downgrade(&port));
            }
            tokio::task::spawn_local(stack_metrics(registry, plan.port.clone(), q, stack.clone()));
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
            tracing::info!(port = %plan.port, queue = q, %mac, address = %plan.address, gateway = ?plan.gateway, address6 = ?plan.address6, gateway6 = ?plan.gateway6, "DPDK port up");
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
        tracing::info!(queue = q, "DPDK worker stopped");
    }
}
