//! Userspace TCP backend: a smoltcp [`Interface`] over any [`Device`], driven inside the
//! worker's single-threaded event loop and exposed through the [`Transport`] seam.
//!
//! ```text
//!  tasks      UserspaceConn (AsyncRead/AsyncWrite)   UserspaceListener::accept   connect()
//!               | recv_slice/send_slice, register_*_waker, then signal the driver
//!  stack      Rc<Shared>: RefCell<Core> (Interface, SocketSet, device, ports, conn table)
//!               ^ driver round: ingress (one packet at a time, listener backlog refill),
//!               | egress, reap closed sockets, compute the next deadline
//!  driver     UserspaceStack::run(): one spawn_local task per stack
//!  device     StackDevice = phy::Device + flush() (Loopback and FaultInjector in tests,
//!             DpdkDevice with the `dpdk` feature)
//! ```
//!
//! # Wake-ups
//!
//! Every task-facing operation borrows the stack, works on its smoltcp socket and, when it
//! cannot make progress, registers the task's waker with smoltcp (`register_recv_waker` for
//! reads and accepts, `register_send_waker` for writes and connects). smoltcp wakes those
//! wakers from inside `Interface::poll_*` when data arrives, buffer space frees up or the
//! state changes. After any operation that gives the stack work (bytes written, bytes read
//! and so a window to reopen, a close, a new socket) the task *signals* the driver.
//!
//! The driver (in [`PollMode::Sleep`]) runs a round, then:
//! - if the round moved a packet, it yields and runs another round at once (on a loopback a
//!   transmitted packet is the next received one; one extra quiet round also covers packets
//!   that a fault injector swallowed on receive);
//! - otherwise it sleeps until smoltcp's `poll_delay` (retransmit, delayed ACK, TIME-WAIT,
//!   keep-alive timers), an orphan deadline, or a signal, whichever comes first. An idle
//!   stack with no timers sleeps until signalled: it never spins.
//!
//! A device whose frames arrive from outside (a TAP fd) must call [`UserspaceStack::notify`]
//! when it becomes readable, or run in [`PollMode::Busy`] (the DPDK case: poll every loop turn).
//! In busy mode the driver runs a round and yields on every turn, whatever the round found:
//! other tasks of the worker run in between, and tokio polls its IO driver and timers before
//! it resumes a task that yielded, so an idle busy stack costs a core but starves nothing.
//!
//! # Transmit batching
//!
//! A device may queue the frames smoltcp hands it (DPDK sends them in bursts). The driver
//! calls [`StackDevice::flush`] once per round, after the round's egress, so that a queued
//! frame never waits longer than the round that produced it.
//!
//! # Connection semantics (chosen to match a kernel socket)
//!
//! - Read returns `Ok(0)` (EOF) once the peer's FIN was received and the buffer is drained;
//!   EOF is sticky. A peer RST (or the stack giving up on the connection) surfaces as
//!   `ConnectionReset`, on reads and writes.
//! - `connect` resolves when the handshake completes; a RST in SYN-SENT is
//!   `ConnectionRefused`. There is no built-in connect timeout (the SYN is retransmitted with
//!   backoff): callers apply their own, and dropping the future cleans the socket up.
//! - Write copies into the socket's transmit buffer; a full buffer is `Pending` until the peer
//!   acknowledges data (back-pressure; no unbounded buffering). Writing after our own shutdown
//!   is `BrokenPipe`; after a reset, `ConnectionReset`.
//! - `poll_flush` is a no-op, as on a kernel socket: bytes accepted by `poll_write` belong to
//!   the stack, which sends and retransmits them without further help from the caller.
//! - `poll_shutdown` is `shutdown(SHUT_WR)`: smoltcp's `close()` queues a FIN after the buffered
//!   bytes and the read side stays open until the peer's FIN. When the peer closed first
//!   (CLOSE-WAIT) and bytes are still unacknowledged, the FIN is held back until they are
//!   (one round trip), working around a smoltcp 0.14 LAST-ACK bug that ignores window
//!   updates (see `Core::close_conn`).
//! - Drop is `close(2)`: a graceful close (FIN after the buffered bytes, finished in the
//!   background as an orphan for at most [`ORPHAN_TIMEOUT`]) unless received bytes were left
//!   unread, in which case the connection is aborted with a RST, as Linux does.
//! - A socket leaves the `SocketSet` once it reaches TIME-WAIT, or CLOSED with any RST already
//!   sent. A still-owned connection keeps the detached socket so that it can drain the rest of
//!   its receive buffer and read EOF; its port is released. TIME-WAIT is therefore not held:
//!   a retransmitted FIN after that point is answered with a RST (documented trade-off for
//!   memory: a TIME-WAIT socket would pin both of its buffers).
//! - Listeners keep one spare socket in LISTEN state and refill it after every received
//!   packet, so a burst of SYNs is absorbed up to the backlog (handshaking plus established,
//!   not yet accepted connections). Beyond the backlog a SYN is answered with a RST (a kernel
//!   would drop it), so the client sees `ConnectionRefused`.
//!
//! IPv4 and IPv6 are built in (smoltcp features `proto-ipv4`, `proto-ipv6`): a stack holds up
//! to two addresses (an IPv4 one and, for dual stack, an IPv6 one; neighbours found with ARP
//! and NDP), a default route per family. A listener on an unspecified address (`0.0.0.0` or
//! `::`) takes connections to either; a connect leaves from the address of the peer's family.

mod conn;
mod meter;
mod ports;
pub mod steer;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, Route, SocketHandle,
    SocketSet,
};
use smoltcp::phy::{Device, FaultInjector, Loopback, Medium, Tracer};
use smoltcp::socket::{tcp, AnySocket, Socket};
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{
    HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, Ipv4Address, Ipv4Cidr,
    Ipv6Address,
};

use crate::transport::{Accepted, ListenSpec, Listener, Transport};

pub use conn::UserspaceConn;
use meter::Meter;
use ports::Ports;
pub use ports::{ephemeral_owner, ephemeral_share, EPHEMERAL};

/// A [`Device`] the stack can drive: a device plus the hook that ends a round.
pub trait StackDevice: Device {
    /// Hands frames queued by transmit tokens to the wire. The driver calls it once per
    /// round, after the round's egress. A device that transmits in `TxToken::consume`
    /// (loopback, TAP) has nothing to do.
    fn flush(&mut self) {}
}

impl StackDevice for Loopback {}

/// `FaultInjector` does not expose its inner device, so the flush cannot reach it: a
/// batching device under a fault injector must also flush on its own (the DPDK device does,
/// before each receive burst and whenever its batch is full).
impl<D: Device> StackDevice for FaultInjector<D> {}

impl<D: StackDevice> StackDevice for Tracer<D> {
    fn flush(&mut self) {
        self.get_mut().flush();
    }
}

/// Default per-socket receive and transmit buffer size.
pub const DEFAULT_BUFFER: usize = 64 * 1024;
/// Default cap on a listener's backlog (connections handshaking or waiting for `accept`).
pub const DEFAULT_BACKLOG: usize = 128;
/// How long a dropped connection may take to finish its close before it is aborted
/// (Linux's `tcp_fin_timeout` default).
pub const ORPHAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// A handshake that does not complete within this time frees its backlog slot.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sockets a listener keeps in LISTEN state; refilled after every received packet.
const LISTEN_SPARES: usize = 1;
/// Received packets processed per round before the driver yields to other tasks.
const INGRESS_BUDGET: usize = 256;
/// Egress passes per round (each pass sends at most one packet per socket).
const EGRESS_PASSES: usize = 64;
/// Rounds without packet movement before the driver sleeps.
const QUIET_ROUNDS: u32 = 1;
/// Zero-delay rounds without packet movement after which the driver sleeps 1 ms anyway.
const ZERO_DELAY_ROUNDS: u32 = 8;
/// Time an aborted orphan gets to send its RST before it is dropped regardless.
const ABORT_GRACE: SmolDuration = SmolDuration::from_millis(1000);

/// How the driver waits between rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollMode {
    /// Sleep until a smoltcp timer, a socket operation, or [`UserspaceStack::notify`].
    /// For devices with no receive readiness of their own (loopback) or that signal it.
    #[default]
    Sleep,
    /// Poll the device on every turn of the event loop (yielding in between). Meant for
    /// DPDK queues, which have no interrupt; burns the core by design.
    Busy,
}

/// What a userspace stack is built from. Small and independent of the mosn config.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Link layer: `HardwareAddress::Ip` (no link header: loopback, TUN) or
    /// `HardwareAddress::Ethernet(mac)` (TAP, DPDK). Must match the device's medium.
    pub hardware: HardwareAddress,
    /// Interface addresses (at most 2, smoltcp's `IFACE_MAX_ADDR_COUNT`).
    pub addrs: Vec<IpCidr>,
    /// Default IPv4 gateway.
    pub gateway: Option<Ipv4Address>,
    /// Default IPv6 gateway (a neighbour found with NDP).
    pub gateway6: Option<Ipv6Address>,
    /// Static routes: (destination, next hop); the longest matching prefix wins over the
    /// default route.
    pub routes: Vec<(Ipv4Cidr, Ipv4Address)>,
    /// Receive buffer per socket, bytes (it bounds the advertised window).
    pub rx_buffer: usize,
    /// Transmit buffer per socket, bytes (it bounds what a writer may queue).
    pub tx_buffer: usize,
    /// Cap on each listener's backlog; a `ListenSpec` may ask for less, never more.
    pub backlog: usize,
    /// Driver wait strategy.
    pub poll_mode: PollMode,
    /// Local ports for outgoing connections (and listeners on port 0). Stacks that share one
    /// address on the queues of one port take disjoint shares ([`ephemeral_share`]), so a
    /// packet's destination port says which of them it is for.
    pub ephemeral: std::ops::RangeInclusive<u16>,
}

impl StackConfig {
    /// A config with 64 KiB buffers, a backlog of 128 and [`PollMode::Sleep`].
    pub fn new(hardware: HardwareAddress, addrs: Vec<IpCidr>) -> Self {
        StackConfig {
            hardware,
            addrs,
            gateway: None,
            gateway6: None,
            routes: Vec::new(),
            rx_buffer: DEFAULT_BUFFER,
            tx_buffer: DEFAULT_BUFFER,
            backlog: DEFAULT_BACKLOG,
            poll_mode: PollMode::Sleep,
            ephemeral: ports::EPHEMERAL,
        }
    }
}

/// Counters of one stack, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Sockets in the smoltcp `SocketSet` (listening spares, live and closing connections).
    pub sockets: usize,
    /// Connections tracked by the stack: owned by a `UserspaceConn`, or orphans still closing.
    pub conns: usize,
    /// Orphans: connections whose owner dropped them and that are still closing.
    pub orphans: usize,
    /// Listeners.
    pub listeners: usize,
    /// Local ports held (listeners and outgoing connections).
    pub ports: usize,
    /// Driver rounds run.
    pub rounds: u64,
    /// Frames received from the device.
    pub rx_packets: u64,
    /// Frames handed to the device.
    pub tx_packets: u64,
}

/// Where a connection's smoltcp socket lives.
enum Slot {
    /// In the interface's socket set.
    Set(SocketHandle),
    /// Taken out of the set after TIME-WAIT/CLOSED; kept only so the owner can drain it.
    Detached(Box<Socket<'static>>),
}

struct ConnEntry {
    slot: Slot,
    /// Ephemeral port to release when the socket leaves the set (outgoing connections).
    port: Option<u16>,
    /// Set once the owner dropped the connection: abort it if still open by then.
    orphan_deadline: Option<SmolInstant>,
}

struct ListenEntry {
    endpoint: IpListenEndpoint,
    port: u16,
    backlog: usize,
    /// Sockets in LISTEN state.
    spares: Vec<SocketHandle>,
    /// Sockets that received a SYN and are not accepted yet, oldest first.
    queue: VecDeque<SocketHandle>,
    /// The task waiting in `accept`.
    waker: Option<Waker>,
}

/// The driver's doorbell: set by socket operations, awaited by the driver when idle.
#[derive(Default)]
struct Signal {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.replace(false) {
            Poll::Ready(())
        } else {
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// The state behind the `RefCell`.
struct Core<D: Device> {
    iface: Interface,
    sockets: SocketSet<'static>,
    device: D,
    rx_buffer: usize,
    tx_buffer: usize,
    backlog: usize,
    epoch: tokio::time::Instant,
    ports: Ports,
    conns: HashMap<u64, ConnEntry>,
    listeners: HashMap<u64, ListenEntry>,
    /// Connections whose FIN waits for their transmit buffer to drain (see `close_conn`).
    deferred_fin: Vec<u64>,
    next_id: u64,
    rounds: u64,
    rx_packets: u64,
    tx_packets: u64,
}

/// What one driver round found.
struct Round {
    /// Some frame was received or transmitted.
    moved: bool,
    /// When the stack wants to be polled again (`None`: only on a signal).
    delay: Option<std::time::Duration>,
    /// No connection and no listener is left.
    empty: bool,
}

fn to_std(d: SmolDuration) -> std::time::Duration {
    std::time::Duration::from_micros(d.total_micros())
}

fn to_smol(d: std::time::Duration) -> SmolDuration {
    SmolDuration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn endpoint_addr(ep: IpEndpoint) -> SocketAddr {
    SocketAddr::from(ep)
}

fn new_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    );
    // Like the kernel backend's TCP_NODELAY: a proxy forwards what it has at once.
    socket.set_nagle_enabled(false);
    socket
}

/// A socket that has nothing left to do on the wire and may leave the set.
fn finished(socket: &tcp::Socket<'_>) -> bool {
    match socket.state() {
        tcp::State::TimeWait => true,
        // An aborted socket keeps its tuple until its RST has been dispatched.
        tcp::State::Closed => socket.remote_endpoint().is_none(),
        _ => false,
    }
}

/// Moves spares that left LISTEN into the accept queue and tops the spares up.
fn refill(l: &mut ListenEntry, sockets: &mut SocketSet<'static>, rx: usize, tx: usize) {
    let mut moved = false;
    let mut i = 0;
    while i < l.spares.len() {
        if sockets.get::<tcp::Socket>(l.spares[i]).state() == tcp::State::Listen {
            i += 1;
        } else {
            l.queue.push_back(l.spares.swap_remove(i));
            moved = true;
        }
    }
    while l.spares.len() < LISTEN_SPARES && l.queue.len() < l.backlog {
        let mut socket = new_socket(rx, tx);
        socket.set_timeout(Some(to_smol(HANDSHAKE_TIMEOUT)));
        if socket.listen(l.endpoint).is_err() {
            // Unreachable: the port is never 0 and the socket is fresh.
            break;
        }
        l.spares.push(sockets.add(socket));
    }
    if moved {
        if let Some(waker) = l.waker.take() {
            waker.wake();
        }
    }
}

impl<D: Device> Core<D> {
    fn now(&self) -> SmolInstant {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        SmolInstant::from_micros(i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
    }

    fn add_conn(
        &mut self,
        slot: Slot,
        port: Option<u16>,
        orphan_deadline: Option<SmolInstant>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            ConnEntry {
                slot,
                port,
                orphan_deadline,
            },
        );
        id
    }

    /// The socket of connection `id`, wherever it lives.
    fn conn_socket(&mut self, id: u64) -> Option<&mut tcp::Socket<'static>> {
        let entry = self.conns.get_mut(&id)?;
        match &mut entry.slot {
            Slot::Set(handle) => Some(self.sockets.get_mut::<tcp::Socket>(*handle)),
            Slot::Detached(socket) => tcp::Socket::downcast_mut(socket),
        }
    }

    /// Sends our FIN (`shutdown(SHUT_WR)`) for connection `id`.
    ///
    /// Works around smoltcp 0.14 (`process`, LAST-ACK arm): in LAST-ACK a pure ACK that
    /// acknowledges nothing new returns before the peer's window is read, so a window update
    /// that reopens a zero window is lost and the rest of the data waits for the zero-window
    /// probe (one RTO, at least 1 s). In CLOSE-WAIT the FIN is therefore held back until the
    /// transmit buffer has been acknowledged; the driver sends it from `flush_deferred_fins`.
    /// Costs one round trip before the FIN, only when the peer closed first.
    fn close_conn(&mut self, id: u64) {
        let Some(entry) = self.conns.get(&id) else {
            return;
        };
        let socket = match &entry.slot {
            Slot::Set(handle) => self.sockets.get_mut::<tcp::Socket>(*handle),
            Slot::Detached(_) => return,
        };
        if socket.state() == tcp::State::CloseWait && socket.send_queue() > 0 {
            if !self.deferred_fin.contains(&id) {
                self.deferred_fin.push(id);
            }
        } else {
            socket.close();
        }
    }

    /// Sends the FINs held back by `close_conn` whose data has been acknowledged.
    fn flush_deferred_fins(
        sockets: &mut SocketSet<'static>,
        conns: &HashMap<u64, ConnEntry>,
        deferred_fin: &mut Vec<u64>,
    ) {
        deferred_fin.retain(|id| {
            let Some(Slot::Set(handle)) = conns.get(id).map(|e| &e.slot) else {
                return false;
            };
            let socket = sockets.get_mut::<tcp::Socket>(*handle);
            if socket.state() != tcp::State::CloseWait {
                // Reset or timed out meanwhile: nothing left to close.
                return false;
            }
            if socket.send_queue() > 0 {
                return true;
            }
            socket.close();
            false
        });
    }

    /// The owner of connection `id` is gone: close or abort it and let the reaper finish.
    fn orphan(&mut self, id: u64) {
        let deadline = self.now() + to_smol(ORPHAN_TIMEOUT);
        let Some(entry) = self.conns.get(&id) else {
            return;
        };
        let handle = match entry.slot {
            Slot::Detached(_) => {
                self.conns.remove(&id);
                return;
            }
            Slot::Set(handle) => handle,
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        // Nobody reads any more: acknowledge at once, so that the last ACK is out before
        // the reaper takes the socket out of the set.
        socket.set_ack_delay(None);
        if socket.recv_queue() > 0 {
            // Unread data would be lost: tell the peer, as Linux does on close(2).
            socket.abort();
        } else {
            self.close_conn(id);
        }
        if let Some(entry) = self.conns.get_mut(&id) {
            entry.orphan_deadline = Some(deadline);
        }
    }

    /// Gets rid of a socket nobody will accept: remove it now or abort and reap later.
    fn discard(&mut self, handle: SocketHandle) {
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if socket.state() == tcp::State::Listen || finished(socket) {
            self.sockets.remove(handle);
        } else {
            socket.abort();
            let deadline = self.now() + ABORT_GRACE;
            self.add_conn(Slot::Set(handle), None, Some(deadline));
        }
    }

    /// Takes finished sockets out of the set; returns the next orphan deadline.
    fn reap(&mut self, now: SmolInstant) -> Option<SmolInstant> {
        let Core {
            sockets,
            conns,
            ports,
            ..
        } = self;
        let mut next: Option<SmolInstant> = None;
        conns.retain(|_, entry| {
            let Slot::Set(handle) = entry.slot else {
                return true;
            };
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            let done = finished(socket);
            if let Some(deadline) = entry.orphan_deadline {
                if done || (now >= deadline && socket.state() == tcp::State::Closed) {
                    sockets.remove(handle);
                    if let Some(port) = entry.port {
                        ports.release(port);
                    }
                    return false;
                }
                if now >= deadline {
                    tracing::debug!(state = %socket.state(), "userspace: orphan timed out, aborting");
                    socket.abort();
                    entry.orphan_deadline = Some(now + ABORT_GRACE);
                }
                next = Some(match (next, entry.orphan_deadline) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b).unwrap_or(now),
                });
                return true;
            }
            if done {
                let socket = sockets.remove(handle);
                if let Some(port) = entry.port.take() {
                    ports.release(port);
                }
                entry.slot = Slot::Detached(Box::new(socket));
            }
            true
        });
        next
    }
}

impl<D: StackDevice> Core<D> {
    /// One driver round: receive, refill listeners, transmit, reap.
    fn round(&mut self) -> Round {
        let now = self.now();
        self.rounds += 1;
        self.iface.poll_maintenance(now);
        let mut meter = Meter::new(&mut self.device);
        let mut budget = INGRESS_BUDGET;
        while budget > 0 {
            match self
                .iface
                .poll_ingress_single(now, &mut meter, &mut self.sockets)
            {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    // A SYN may have taken a listener's spare: give it a new one before the
                    // next packet, so that a burst of SYNs finds listening sockets.
                    for l in self.listeners.values_mut() {
                        refill(l, &mut self.sockets, self.rx_buffer, self.tx_buffer);
                    }
                }
            }
            budget -= 1;
        }
        if !self.deferred_fin.is_empty() {
            Self::flush_deferred_fins(&mut self.sockets, &self.conns, &mut self.deferred_fin);
        }
        for _ in 0..EGRESS_PASSES {
            if self.iface.poll_egress(now, &mut meter, &mut self.sockets) == PollResult::None {
                break;
            }
        }
        let (rx, tx) = (meter.rx(), meter.tx());
        // The round's frames leave together (one burst on a DPDK queue).
        self.device.flush();
        self.rx_packets += rx;
        self.tx_packets += tx;
        let next_orphan = self.reap(now);
        let mut delay = self.iface.poll_delay(now, &self.sockets).map(to_std);
        if let Some(at) = next_orphan {
            let orphan = if at > now {
                to_std(at - now)
            } else {
                std::time::Duration::ZERO
            };
            delay = Some(delay.map_or(orphan, |d| d.min(orphan)));
        }
        Round {
            moved: rx + tx > 0 || budget == 0,
            delay,
            empty: self.conns.is_empty() && self.listeners.is_empty(),
        }
    }
}

struct Shared<D: Device> {
    core: RefCell<Core<D>>,
    signal: Signal,
    poll_mode: PollMode,
    driver_running: Cell<bool>,
    shutdown: Cell<bool>,
}

/// A smoltcp TCP/IP stack owned by one worker: interface, sockets, device, ports.
///
/// This is a cheap `Rc` handle; clones share the stack. Nothing in it is `Send`: create it,
/// spawn [`run`](Self::run) with `tokio::task::spawn_local`, and use it on that worker only.
pub struct UserspaceStack<D: Device + 'static> {
    shared: Rc<Shared<D>>,
}

impl<D: Device + 'static> Clone for UserspaceStack<D> {
    fn clone(&self) -> Self {
        UserspaceStack {
            shared: Rc::clone(&self.shared),
        }
    }
}

impl<D: Device + 'static> Drop for UserspaceStack<D> {
    fn drop(&mut self) {
        // Lets the driver notice when the last handle is gone.
        self.shared.signal.notify();
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one(nanos)
}

impl<D: Device + 'static> UserspaceStack<D> {
    /// Builds the interface over `device`. Fails (never panics) on a config that smoltcp
    /// would reject: medium mismatch, a non-unicast MAC, too many addresses or no buffers.
    pub fn new(mut device: D, config: StackConfig) -> io::Result<Self> {
        let medium = device.capabilities().medium;
        #[allow(unreachable_patterns)]
        let wanted = match config.hardware {
            HardwareAddress::Ip => Medium::Ip,
            HardwareAddress::Ethernet(mac) => {
                if !mac.is_unicast() {
                    return Err(invalid(format!("MAC {mac} is not unicast")));
                }
                Medium::Ethernet
            }
            _ => return Err(invalid("unsupported link layer")),
        };
        if wanted != medium {
            return Err(invalid(format!(
                "hardware address is for {wanted:?} but the device is {medium:?}"
            )));
        }
        if config.rx_buffer == 0 || config.tx_buffer == 0 {
            return Err(invalid("socket buffers must not be empty"));
        }
        if config.backlog == 0 {
            return Err(invalid("backlog must be at least 1"));
        }
        let seed = random_seed();
        let epoch = tokio::time::Instant::now();
        let mut iface_config = IfaceConfig::new(config.hardware);
        iface_config.random_seed = seed;
        let mut iface = Interface::new(iface_config, &mut device, SmolInstant::ZERO);
        let mut full = false;
        iface.update_ip_addrs(|addrs| {
            for cidr in &config.addrs {
                full |= addrs.push(*cidr).is_err();
            }
        });
        if full {
            return Err(invalid("too many interface addresses"));
        }
        if let Some(gateway) = config.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gateway)
                .map_err(|_| invalid("route table full"))?;
        }
        if let Some(gateway) = config.gateway6 {
            iface
                .routes_mut()
                .add_default_ipv6_route(gateway)
                .map_err(|_| invalid("route table full"))?;
        }
        for &(cidr, via) in &config.routes {
            let route = Route {
                cidr: IpCidr::Ipv4(cidr),
                via_router: IpAddress::Ipv4(via),
                preferred_until: None,
                expires_at: None,
            };
            let mut full = false;
            iface
                .routes_mut()
                .update(|table| full = table.push(route).is_err());
            if full {
                return Err(invalid(format!(
                    "route table full at {cidr} via {via} (at most 16 routes, default included)"
                )));
            }
        }
        let core = Core {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            rx_buffer: config.rx_buffer,
            tx_buffer: config.tx_buffer,
            backlog: config.backlog,
            epoch,
            ports: Ports::new(seed >> 16, config.ephemeral.clone()),
            conns: HashMap::new(),
            listeners: HashMap::new(),
            deferred_fin: Vec::new(),
            next_id: 0,
            rounds: 0,
            rx_packets: 0,
            tx_packets: 0,
        };
        Ok(UserspaceStack {
            shared: Rc::new(Shared {
                core: RefCell::new(core),
                signal: Signal::default(),
                poll_mode: config.poll_mode,
                driver_running: Cell::new(false),
                shutdown: Cell::new(false),
            }),
        })
    }

    /// Asks the driver to run a round soon. Socket operations do this themselves; a device
    /// whose frames arrive from outside (a TAP fd becoming readable) calls it.
    pub fn notify(&self) {
        self.shared.signal.notify();
    }

    /// Stops the driver after its current round. Sockets stay as they are; connections that
    /// still wait for the stack will wait forever, so drop them first.
    pub fn shutdown(&self) {
        self.shared.shutdown.set(true);
        self.shared.signal.notify();
    }

    /// Counters, including the size of the socket set.
    pub fn stats(&self) -> StackStats {
        let core = self.shared.core.borrow();
        StackStats {
            sockets: core.sockets.iter().count(),
            conns: core.conns.len(),
            orphans: core
                .conns
                .values()
                .filter(|e| e.orphan_deadline.is_some())
                .count(),
            listeners: core.listeners.len(),
            ports: core.ports.in_use(),
            rounds: core.rounds,
            rx_packets: core.rx_packets,
            tx_packets: core.tx_packets,
        }
    }

    /// Runs `f` on the device (to change a fault injector's settings, or flush a queue).
    pub fn with_device<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        let r = f(&mut self.shared.core.borrow_mut().device);
        self.shared.signal.notify();
        r
    }

    /// A [`Transport`] over this stack.
    pub fn transport(&self) -> UserspaceTransport<D> {
        UserspaceTransport::new(self.clone())
    }

    fn listen(&self, spec: &ListenSpec) -> io::Result<UserspaceListener<D>> {
        let addr = spec.addr;
        let mut core = self.shared.core.borrow_mut();
        let core = &mut *core;
        let ip = addr.ip();
        // An unspecified address (0.0.0.0 or ::) takes connections to any of the stack's
        // addresses, IPv4 and IPv6 alike.
        let bind_addr = if ip.is_unspecified() {
            None
        } else if core.iface.has_ip_addr(ip) {
            Some(IpAddress::from(ip))
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("userspace stack: {ip} is not an interface address"),
            ));
        };
        let port = core.ports.listen(addr.port(), spec.reuseport)?;
        let backlog = usize::try_from(spec.backlog)
            .unwrap_or(usize::MAX)
            .clamp(1, core.backlog);
        let mut entry = ListenEntry {
            endpoint: IpListenEndpoint {
                addr: bind_addr,
                port,
            },
            port,
            backlog,
            spares: Vec::with_capacity(LISTEN_SPARES),
            queue: VecDeque::new(),
            waker: None,
        };
        refill(
            &mut entry,
            &mut core.sockets,
            core.rx_buffer,
            core.tx_buffer,
        );
        let id = core.next_id;
        core.next_id += 1;
        core.listeners.insert(id, entry);
        Ok(UserspaceListener {
            stack: self.clone(),
            id,
            local: SocketAddr::new(ip, port),
        })
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<UserspaceConn<D>> {
        let (id, local) = {
            let mut core = self.shared.core.borrow_mut();
            let core = &mut *core;
            let family_ok = core
                .iface
                .ip_addrs()
                .iter()
                .any(|c| matches!(c, IpCidr::Ipv6(_)) == addr.is_ipv6());
            if !family_ok {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!(
                        "userspace stack: cannot connect to {addr}: the stack has no {} address",
                        if addr.is_ipv6() { "IPv6" } else { "IPv4" }
                    ),
                ));
            }
            let port = core.ports.connect()?;
            let mut socket = new_socket(core.rx_buffer, core.tx_buffer);
            let remote_ep = IpEndpoint::new(IpAddress::from(addr.ip()), addr.port());
            if let Err(err) = socket.connect(core.iface.context(), remote_ep, port) {
                core.ports.release(port);
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("userspace stack: cannot connect to {addr}: {err}"),
                ));
            }
            let Some(local) = socket.local_endpoint() else {
                core.ports.release(port);
                return Err(io::Error::other("userspace stack: no local endpoint"));
            };
            let handle = core.sockets.add(socket);
            let id = core.add_conn(Slot::Set(handle), Some(port), None);
            (id, endpoint_addr(local))
        };
        // From here on the connection's Drop cleans up, also if this future is dropped.
        let conn = UserspaceConn::new(self.clone(), id, local, addr);
        self.shared.signal.notify();
        poll_fn(|cx| conn.poll_connected(cx)).await?;
        Ok(conn)
    }
}

impl<D: StackDevice + 'static> UserspaceStack<D> {
    /// The driver: spawn it once with `tokio::task::spawn_local` on the worker that uses the
    /// stack. It returns after [`shutdown`](Self::shutdown), or once every handle
    /// (transport, listener, connection) is gone and no orphan is left closing. A second
    /// driver for the same stack returns at once.
    pub fn run(&self) -> impl Future<Output = ()> + 'static {
        let shared = Rc::clone(&self.shared);
        async move {
            if shared.driver_running.replace(true) {
                tracing::warn!("userspace stack: a driver is already running");
                return;
            }
            drive(&shared).await;
            shared.driver_running.set(false);
        }
    }
}

async fn drive<D: StackDevice + 'static>(shared: &Rc<Shared<D>>) {
    let mut quiet: u32 = 0;
    loop {
        shared.signal.pending.set(false);
        let round = shared.core.borrow_mut().round();
        if shared.shutdown.get() || (Rc::strong_count(shared) == 1 && round.empty) {
            return;
        }
        if shared.poll_mode == PollMode::Busy || round.moved {
            quiet = 0;
            tokio::task::yield_now().await;
            continue;
        }
        quiet += 1;
        if quiet <= QUIET_ROUNDS {
            tokio::task::yield_now().await;
            continue;
        }
        match round.delay {
            Some(d) if d.is_zero() => {
                if quiet > ZERO_DELAY_ROUNDS {
                    // smoltcp says "now" but nothing moves (no route, device refusing
                    // frames): do not spin on it.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                } else {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            Some(d) => {
                tokio::select! {
                    () = tokio::time::sleep(d) => {}
                    () = poll_fn(|cx| shared.signal.poll_wait(cx)) => {}
                }
            }
            None => poll_fn(|cx| shared.signal.poll_wait(cx)).await,
        }
        quiet = 0;
    }
}

/// The [`Transport`] over a [`UserspaceStack`]: use it exactly like the kernel transport.
pub struct UserspaceTransport<D: Device + 'static> {
    stack: UserspaceStack<D>,
}

impl<D: Device + 'static> Clone for UserspaceTransport<D> {
    fn clone(&self) -> Self {
        UserspaceTransport {
            stack: self.stack.clone(),
        }
    }
}

impl<D: Device + 'static> UserspaceTransport<D> {
    /// A transport over `stack` (whose driver must be running).
    pub fn new(stack: UserspaceStack<D>) -> Self {
        UserspaceTransport { stack }
    }

    /// The stack behind this transport.
    pub fn stack(&self) -> &UserspaceStack<D> {
        &self.stack
    }
}

impl<D: Device + 'static> Transport for UserspaceTransport<D> {
    type Conn = UserspaceConn<D>;
    type Listener = UserspaceListener<D>;

    fn listen(&self, spec: &ListenSpec) -> io::Result<Self::Listener> {
        self.stack.listen(spec)
    }

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Conn>> {
        let stack = self.stack.clone();
        async move { stack.connect(addr).await }
    }

    fn name(&self) -> &'static str {
        "userspace"
    }
}

/// A listener: a backlog of smoltcp sockets on one local endpoint.
pub struct UserspaceListener<D: Device + 'static> {
    stack: UserspaceStack<D>,
    id: u64,
    local: SocketAddr,
}

impl<D: Device + 'static> UserspaceListener<D> {
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted<UserspaceConn<D>>>> {
        let mut guard = self.stack.shared.core.borrow_mut();
        let core = &mut *guard;
        let Some(l) = core.listeners.get_mut(&self.id) else {
            return Poll::Ready(Err(io::Error::other("userspace listener is gone")));
        };
        match &l.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => l.waker = Some(cx.waker().clone()),
        }
        let mut found = None;
        let mut dead = Vec::new();
        let mut i = 0;
        while i < l.queue.len() {
            let handle = l.queue[i];
            let socket = core.sockets.get_mut::<tcp::Socket>(handle);
            match socket.state() {
                tcp::State::SynReceived => {
                    socket.register_recv_waker(cx.waker());
                    i += 1;
                }
                // Handshake reset (back to LISTEN), timed out or reset before accept.
                tcp::State::Listen | tcp::State::Closed => {
                    l.queue.remove(i);
                    dead.push(handle);
                }
                _ => {
                    l.queue.remove(i);
                    match (socket.remote_endpoint(), socket.local_endpoint()) {
                        (Some(peer), Some(local)) => {
                            socket.set_timeout(None);
                            found = Some((handle, endpoint_addr(peer), endpoint_addr(local)));
                            break;
                        }
                        _ => dead.push(handle),
                    }
                }
            }
        }
        let had_dead = !dead.is_empty();
        for handle in dead {
            core.discard(handle);
        }
        if let Some(l) = core.listeners.get_mut(&self.id) {
            refill(l, &mut core.sockets, core.rx_buffer, core.tx_buffer);
        }
        let ready = found.map(|(handle, peer, local)| {
            let id = core.add_conn(Slot::Set(handle), None, None);
            (id, peer, local)
        });
        drop(guard);
        if had_dead {
            self.stack.shared.signal.notify();
        }
        match ready {
            Some((id, peer, local)) => Poll::Ready(Ok(Accepted {
                stream: UserspaceConn::new(self.stack.clone(), id, local, peer),
                peer,
                local,
                original_dst: None,
            })),
            None => Poll::Pending,
        }
    }
}

impl<D: Device + 'static> Listener for UserspaceListener<D> {
    type Conn = UserspaceConn<D>;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn accept(&mut self) -> impl Future<Output = io::Result<Accepted<Self::Conn>>> {
        poll_fn(|cx| self.poll_accept(cx))
    }
}

impl<D: Device + 'static> Drop for UserspaceListener<D> {
    fn drop(&mut self) {
        let Ok(mut core) = self.stack.shared.core.try_borrow_mut() else {
            return;
        };
        let core = &mut *core;
        if let Some(l) = core.listeners.remove(&self.id) {
            for handle in l.spares {
                core.sockets.remove(handle);
            }
            for handle in l.queue {
                core.discard(handle);
            }
            core.ports.release(l.port);
        }
    }
}

/// A stack over `phy::Loopback` (`Medium::Ip`) with the single address `addr`, its transport
/// and its driver future (spawn it with `tokio::task::spawn_local`). Every packet the stack
/// sends comes back to it: clients and servers on `addr` talk to each other without touching
/// any kernel network.
pub fn loopback(
    addr: Ipv4Cidr,
) -> io::Result<(
    UserspaceTransport<Loopback>,
    impl Future<Output = ()> + 'static,
)> {
    let config = StackConfig::new(HardwareAddress::Ip, vec![IpCidr::Ipv4(addr)]);
    let stack = UserspaceStack::new(Loopback::new(Medium::Ip), config)?;
    let driver = stack.run();
    Ok((UserspaceTransport::new(stack), driver))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use smoltcp::phy::{DeviceCapabilities, RxToken, TxToken};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A loopback that, like a DPDK queue, holds transmitted frames until `flush`: without
    /// the driver's flush nothing would ever come back.
    #[derive(Default)]
    struct Batching {
        wire: VecDeque<Vec<u8>>,
        queued: Vec<Vec<u8>>,
        flushes: Rc<Cell<u64>>,
    }

    struct Rx(Vec<u8>);
    struct Tx<'a>(&'a mut Vec<Vec<u8>>);

    impl RxToken for Rx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }

    impl TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut frame = vec![0; len];
            let r = f(&mut frame);
            self.0.push(frame);
            r
        }
    }

    impl Device for Batching {
        type RxToken<'a> = Rx;
        type TxToken<'a> = Tx<'a>;

        fn receive(&mut self, _: SmolInstant) -> Option<(Rx, Tx<'_>)> {
            let frame = self.wire.pop_front()?;
            Some((Rx(frame), Tx(&mut self.queued)))
        }

        fn transmit(&mut self, _: SmolInstant) -> Option<Tx<'_>> {
            Some(Tx(&mut self.queued))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ip;
            caps.max_transmission_unit = 1500;
            caps.max_burst_size = Some(32);
            caps
        }
    }

    impl StackDevice for Batching {
        fn flush(&mut self) {
            self.flushes.set(self.flushes.get() + 1);
            self.wire.extend(self.queued.drain(..));
        }
    }

    fn on_worker<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            tokio::time::timeout(Duration::from_secs(30), f)
                .await
                .expect("test timed out")
        })
    }

    fn stack(mode: PollMode) -> (UserspaceStack<Batching>, Rc<Cell<u64>>) {
        let addr = Ipv4Cidr::new(Ipv4Address::new(198, 18, 0, 1), 15);
        let mut config = StackConfig::new(HardwareAddress::Ip, vec![IpCidr::Ipv4(addr)]);
        config.poll_mode = mode;
        let device = Batching::default();
        let flushes = Rc::clone(&device.flushes);
        (UserspaceStack::new(device, config).unwrap(), flushes)
    }

    /// Frames queued by the device go out once per round: a connection with an echo works
    /// over a device that sends only on flush, in both poll modes, one flush per round.
    #[test]
    fn driver_flushes_every_round() {
        for mode in [PollMode::Sleep, PollMode::Busy] {
            on_worker(async {
                let (stack, flushes) = stack(mode);
                tokio::task::spawn_local(stack.run());
                let t = stack.transport();
                let spec = ListenSpec::new(SocketAddr::from(([198, 18, 0, 1], 0)));
                let mut listener = t.listen(&spec).unwrap();
                let to = listener.local_addr().unwrap();
                tokio::task::spawn_local(async move {
                    let mut conn = listener.accept().await.unwrap().stream;
                    let mut buf = vec![0u8; 100_000];
                    conn.read_exact(&mut buf).await.unwrap();
                    conn.write_all(&buf).await.unwrap();
                });
                let mut conn = t.connect(to).await.unwrap();
                let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
                conn.write_all(&data).await.unwrap();
                let mut back = vec![0u8; data.len()];
                conn.read_exact(&mut back).await.unwrap();
                assert!(back == data, "{mode:?}: echo differs");
                let s = stack.stats();
                assert!(s.rounds > 0);
                assert_eq!(flushes.get(), s.rounds, "{mode:?}: one flush per round");
            });
        }
    }

    /// A busy stack polls its device on every turn of the loop, yet yields each round: timers
    /// fire on time and kernel IO on the same current-thread runtime makes progress while it
    /// spins idle.
    #[test]
    fn idle_busy_stack_starves_nothing() {
        on_worker(async {
            let (stack, _) = stack(PollMode::Busy);
            tokio::task::spawn_local(stack.run());
            tokio::task::yield_now().await;
            let before = stack.stats().rounds;

            let started = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let slept = started.elapsed();
            assert!(
                slept < Duration::from_millis(1000),
                "a 50 ms timer took {slept:?}"
            );

            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (client, server) =
                tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
            let (mut client, (mut server, _)) = (client.unwrap(), server.unwrap());
            client.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");

            let rounds = stack.stats().rounds - before;
            assert!(
                rounds > 50,
                "the busy driver ran only {rounds} rounds in {slept:?}"
            );
            stack.shutdown();
        });
    }
}
