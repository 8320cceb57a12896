//! Upstream RPC connections and their pools.
//!
//! Each connection generates its own request ids (the downstream's are restored on the
//! way back by the server side) and keeps the requests waiting for an answer by id; an
//! answer with an unknown id is dropped and counted. A connection idle for the heartbeat
//! interval sends a heartbeat and is closed after `heartbeat_max_failures` unanswered ones
//! in a row. A Bolt GoAway from the upstream retires the connection: its requests in flight
//! finish, new ones go elsewhere.
//!
//! A request is waited for in one of two ways: [`RpcConn::call`] parks its caller's task on
//! a oneshot channel; [`RpcConn::send_direct`] leaves a [`Completion`] that the connection's
//! read loop runs when the answer comes (no task, channel or timer per request: the
//! connection's one sweeper task fails the completions whose deadline passed).
//!
//! Pools (per worker, no locks): multiplex (`conns_per_host` connections per host, requests
//! spread round robin), ping-pong (one request at a time per connection, idle ones reused),
//! binding (one connection per downstream connection and host).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{oneshot, watch, Notify};

use super::outq::OutQueue;
use super::{Family, Frame, PoolMode, RpcError, RpcSettings};
use crate::pool::{ConnObserver, FastMap, PoolKey};

/// Hashes a request id with one multiplication: ids are generated here (unique, sequential
/// per connection), an answer's id is only looked up, so SipHash buys nothing per request.
#[derive(Default, Clone, Copy)]
struct IdHash(u64);

impl Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Waiting requests by id.
type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHash>>;

/// What receives an upstream answer when no task waits for it ([`RpcConn::send_direct`]).
pub trait Completion {
    /// The answer, or why none will come: the connection closed ([`RpcError::Closed`]) or
    /// the deadline passed ([`RpcError::Timeout`]), at `now` (one clock read per batch of
    /// answers read together). Called once, from the connection's own tasks, never while the
    /// connection's state is borrowed.
    fn complete(self: Box<Self>, answer: Result<Frame, RpcError>, now: Instant);
}

/// A request waiting for its answer.
enum Waiter {
    /// A task parked in [`RpcConn::call`] (or the heartbeat loop).
    Task(oneshot::Sender<Frame>),
    /// A [`Completion`] left by [`RpcConn::send_direct`], failed at `deadline`.
    Direct {
        deadline: Instant,
        done: Box<dyn Completion>,
    },
}

impl Waiter {
    /// Hands `answer` to whoever waits (a task gone: dropped), at `now`.
    fn finish(self, answer: Result<Frame, RpcError>, now: Instant) {
        match self {
            Waiter::Task(tx) => {
                if let Ok(f) = answer {
                    let _ = tx.send(f);
                }
                // An error: dropping the sender tells the task (Closed).
            }
            Waiter::Direct { done, .. } => done.complete(answer, now),
        }
    }
}

/// One upstream RPC connection.
pub struct RpcConn {
    family: Family,
    addr: SocketAddr,
    next_id: Cell<u64>,
    pending: RefCell<IdMap<Waiter>>,
    /// When the sweeper next looks for direct waiters past their deadline (`None`: no
    /// sweeper runs; the next [`RpcConn::send_direct`] starts one).
    next_sweep: Cell<Option<Instant>>,
    /// Wakes the sweeper early: a deadline before `next_sweep` came.
    sweep_wake: Notify,
    /// Encoded frames waiting for the writer.
    out: Rc<OutQueue>,
    closed: Cell<bool>,
    /// The upstream said GoAway: no new requests.
    retired: Cell<bool>,
    /// Frames sent and received so far: the heartbeat loop compares it between its ticks
    /// (a counter, not a clock read per frame).
    activity: Cell<u64>,
    used: Cell<u32>,
    /// Turns true when the connection is closed from our side: the tasks stop.
    shutdown: watch::Sender<bool>,
    /// Counts this connection's events (closed, unknown answers) for the proxy layer.
    obs: Rc<dyn ConnObserver>,
}

impl std::fmt::Debug for RpcConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcConn")
            .field("family", &self.family)
            .field("addr", &self.addr)
            .field("pending", &self.pending.borrow().len())
            .field("closed", &self.closed.get())
            .finish()
    }
}

impl Drop for RpcConn {
    fn drop(&mut self) {
        // Direct waiters hold the downstream's reply: they hear Closed rather than nothing
        // (the sweeper keeps the connection while they wait, so this is a runtime going away).
        self.fail_all();
    }
}

/// Removes a waiting request when its caller gives up (timeout, cancellation).
struct Waiting<'a> {
    conn: &'a RpcConn,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.conn.pending.borrow_mut().remove(&self.id);
    }
}

impl RpcConn {
    /// Starts the reader, writer and heartbeat tasks over a connected `io`; `obs` hears
    /// when it closes and about answers nobody waited for.
    pub fn start<C>(
        io: C,
        family: Family,
        addr: SocketAddr,
        settings: &RpcSettings,
        obs: Rc<dyn ConnObserver>,
    ) -> Rc<RpcConn>
    where
        C: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let out = Rc::new(OutQueue::default());
        let conn = Rc::new(RpcConn {
            family,
            addr,
            next_id: Cell::new(1),
            pending: RefCell::new(IdMap::default()),
            next_sweep: Cell::new(None),
            sweep_wake: Notify::new(),
            out: out.clone(),
            closed: Cell::new(false),
            retired: Cell::new(false),
            activity: Cell::new(0),
            used: Cell::new(0),
            shutdown: watch::channel(false).0,
            obs: obs.clone(),
        });
        let weak = Rc::downgrade(&conn);
        let max_frame = settings.max_frame;
        {
            let stop = conn.shutdown.subscribe();
            let weak = weak.clone();
            let mut wr = wr;
            tokio::task::spawn_local(async move {
                if out.write_loop(&mut wr, Some(stop)).await {
                    if let Some(c) = weak.upgrade() {
                        c.mark_closed();
                    }
                }
            });
        }
        let stop = conn.shutdown.subscribe();
        tokio::task::spawn_local(async move {
            read_loop(rd, family, max_frame, weak.clone(), stop).await;
            if let Some(c) = weak.upgrade() {
                c.mark_closed();
            }
            obs.on_closed();
        });
        if let Some(every) = settings.heartbeat_interval {
            tokio::task::spawn_local(heartbeat_loop(
                Rc::downgrade(&conn),
                every,
                settings.heartbeat_max_failures.max(1),
            ));
        }
        conn
    }

    /// The connection's codec family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// True while new requests may use this connection.
    pub fn is_usable(&self) -> bool {
        !self.closed.get() && !self.retired.get()
    }

    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.borrow().len()
    }

    fn mark_closed(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.shutdown.send_replace(true);
        self.fail_all();
    }

    /// Every waiter fails with Closed (tasks see their sender dropped).
    fn fail_all(&self) {
        let waiters: Vec<Waiter> = self.pending.borrow_mut().drain().map(|(_, w)| w).collect();
        for w in waiters {
            w.finish(Err(RpcError::Closed), Instant::now());
        }
    }

    /// Closes the connection (its waiting requests fail).
    pub fn close(&self) {
        self.mark_closed();
    }

    /// No new requests: the connection closes once the requests in flight are answered
    /// (or time out), at once when there are none.
    pub fn retire(&self) {
        self.retired.set(true);
        self.close_if_drained();
    }

    /// A retired connection with nothing in flight closes.
    fn close_if_drained(&self) {
        if self.retired.get() && !self.closed.get() && self.pending.borrow().is_empty() {
            tracing::debug!(addr = %self.addr, "retired upstream connection drained; closing");
            self.mark_closed();
        }
    }

    fn touch(&self) {
        self.activity.set(self.activity.get().wrapping_add(1));
    }

    fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        let next = match self.family {
            // Bolt ids are u32; 0 is left out.
            Family::Bolt if id >= u64::from(u32::MAX) => 1,
            _ => id + 1,
        };
        self.next_id.set(next);
        id
    }

    /// Gives `frame` one of this connection's request ids and queues it: the id.
    fn push(&self, frame: &mut Frame, use_raw: bool) -> Result<u64, RpcError> {
        if self.closed.get() {
            return Err(RpcError::Closed);
        }
        let id = self.next_id();
        frame.set_request_id(id);
        match self.out.push(frame, use_raw) {
            Ok(true) => {}
            Ok(false) => return Err(RpcError::Closed),
            Err(e) => return Err(RpcError::Encode(e.to_string())),
        }
        self.used.set(self.used.get() + 1);
        self.touch();
        Ok(id)
    }

    /// Sends `frame` (its id replaced by one of this connection's) and waits for the
    /// answer; `None` for a one-way request.
    pub async fn call(&self, mut frame: Frame, use_raw: bool) -> Result<Option<Frame>, RpcError> {
        if frame.is_oneway() {
            return self.send_oneway(frame, use_raw).map(|()| None);
        }
        let id = self.push(&mut frame, use_raw)?;
        let (otx, orx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, Waiter::Task(otx));
        let _waiting = Waiting { conn: self, id };
        orx.await.map(Some).map_err(|_| RpcError::Closed)
    }

    /// Sends a one-way request `frame` (its id replaced by one of this connection's): nothing
    /// waits for an answer.
    pub fn send_oneway(&self, mut frame: Frame, use_raw: bool) -> Result<(), RpcError> {
        self.push(&mut frame, use_raw).map(|_| ())
    }

    /// Sends a two-way request `frame` (its id replaced by one of this connection's) and
    /// leaves `done` to receive the answer, with no task waiting: the read loop completes
    /// it when the answer comes, the sweeper with [`RpcError::Timeout`] at `deadline`, and
    /// a close with [`RpcError::Closed`]. When the frame cannot go (the connection is
    /// closed, the frame does not encode, it is one-way), `done` comes back with the reason
    /// and nothing was sent.
    #[allow(clippy::type_complexity)]
    pub fn send_direct(
        self: &Rc<Self>,
        mut frame: Frame,
        use_raw: bool,
        deadline: Instant,
        done: Box<dyn Completion>,
    ) -> Result<(), (RpcError, Box<dyn Completion>)> {
        if frame.is_oneway() {
            return Err((
                RpcError::Encode("a one-way request has no answer".into()),
                done,
            ));
        }
        let id = match self.push(&mut frame, use_raw) {
            Ok(id) => id,
            Err(e) => return Err((e, done)),
        };
        self.pending
            .borrow_mut()
            .insert(id, Waiter::Direct { deadline, done });
        match self.next_sweep.get() {
            None => {
                self.next_sweep.set(Some(deadline));
                tokio::task::spawn_local(sweep_loop(self.clone()));
            }
            Some(at) if deadline < at => {
                self.next_sweep.set(Some(deadline));
                self.sweep_wake.notify_one();
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Fails the direct waiters whose deadline is not after `now` and sets the next sweep
    /// to the earliest deadline left (`None` when no direct waiter is left).
    fn sweep(&self, now: Instant) {
        let (expired, next) = {
            let mut pending = self.pending.borrow_mut();
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, w)| matches!(w, Waiter::Direct { deadline, .. } if *deadline <= now))
                .map(|(id, _)| *id)
                .collect();
            let expired: Vec<Waiter> = ids.iter().filter_map(|id| pending.remove(id)).collect();
            let next = pending
                .values()
                .filter_map(|w| match w {
                    Waiter::Direct { deadline, .. } => Some(*deadline),
                    Waiter::Task(_) => None,
                })
                .min();
            (expired, next)
        };
        self.next_sweep.set(next);
        for w in expired {
            w.finish(Err(RpcError::Timeout), now);
        }
        self.close_if_drained();
    }

    fn on_frame(&self, frame: Frame, now: &mut Option<Instant>) {
        self.touch();
        if frame.is_goaway() {
            tracing::debug!(addr = %self.addr, "upstream sent GoAway; retiring the connection");
            self.retired.set(true);
            return;
        }
        if frame.is_heartbeat() && !frame.is_response() {
            // An upstream checking on us.
            let _ = self.out.push(&frame.heartbeat_ack(), false);
            return;
        }
        if !frame.is_response() {
            self.obs.on_unknown_response();
            return;
        }
        let waiter = self.pending.borrow_mut().remove(&frame.request_id());
        match waiter {
            Some(w) => {
                w.finish(Ok(frame), *now.get_or_insert_with(Instant::now));
                self.close_if_drained();
            }
            None => {
                self.obs.on_unknown_response();
                tracing::debug!(addr = %self.addr, id = frame.request_id(), "answer for an unknown request id dropped");
            }
        }
    }
}

/// An upstream connection's read size: it starts small and doubles, up to the largest, each
/// time a read fills all the room it had (a multiplexed connection carrying the answers for
/// many clients then reads them in large batches; a quiet one keeps a small buffer).
const READ_START: usize = 4096;
const READ_MAX: usize = 64 * 1024;

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    family: Family,
    max_frame: usize,
    conn: std::rc::Weak<RpcConn>,
    mut stop: watch::Receiver<bool>,
) {
    let mut want = READ_START;
    let mut buf = BytesMut::with_capacity(want);
    loop {
        // One clock read for the answers of one read.
        let mut now = None;
        loop {
            match Frame::decode(family, &mut buf, max_frame) {
                Ok(Some(f)) => match conn.upgrade() {
                    Some(c) => c.on_frame(f, &mut now),
                    None => return,
                },
                Ok(None) => break,
                Err(e) => {
                    let addr = conn.upgrade().map(|c| c.addr);
                    tracing::debug!(?addr, error = %e, "upstream sent a malformed frame; closing");
                    return;
                }
            }
        }
        if *stop.borrow() {
            return;
        }
        if buf.capacity() - buf.len() < want / 2 {
            buf.reserve(want);
        }
        let room = buf.capacity() - buf.len();
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if n >= room && want < READ_MAX {
                        want *= 2;
                    }
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// Fails a connection's direct waiters at their deadlines; runs while any may be waiting
/// (holding the connection: a retired one stays until its requests end) and sleeps until
/// the earliest deadline it knows of. Answers that come in time leave `next_sweep` stale:
/// the sweep at that time finds nothing and moves on (one look per timeout, not per request).
async fn sweep_loop(conn: Rc<RpcConn>) {
    let mut stop = conn.shutdown.subscribe();
    while let Some(at) = conn.next_sweep.get() {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => conn.sweep(Instant::now()),
            // An earlier deadline: sleep again with it.
            () = conn.sweep_wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

async fn heartbeat_loop(conn: std::rc::Weak<RpcConn>, every: Duration, max_failures: u32) {
    let mut failures = 0;
    // Activity counted when the last tick looked (the connection starts at 0).
    let mut seen = 0;
    loop {
        tokio::time::sleep(every).await;
        let Some(c) = conn.upgrade() else { return };
        if c.closed.get() {
            return;
        }
        let now = c.activity.get();
        if now != seen || c.in_flight() > 0 {
            // Frames went either way since the last tick: the connection is alive.
            seen = now;
            failures = 0;
            continue;
        }
        let id = c.next_id();
        let (otx, orx) = oneshot::channel();
        c.pending.borrow_mut().insert(id, Waiter::Task(otx));
        if c.out.push(&Frame::heartbeat(c.family, id), false).is_err() {
            c.pending.borrow_mut().remove(&id);
            return;
        }
        let weak = Rc::downgrade(&c);
        drop(c);
        let answered = matches!(tokio::time::timeout(every, orx).await, Ok(Ok(_)));
        let Some(c) = weak.upgrade() else { return };
        c.pending.borrow_mut().remove(&id);
        // The heartbeat's own answer is not traffic.
        seen = c.activity.get();
        if answered {
            failures = 0;
            continue;
        }
        failures += 1;
        tracing::debug!(addr = %c.addr, failures, "upstream heartbeat unanswered");
        if failures >= max_failures {
            tracing::info!(addr = %c.addr, failures, "closing an upstream connection after unanswered heartbeats");
            c.close();
            return;
        }
    }
}

/// A pool of RPC connections: upstream address and TLS config (see [`PoolKey`]), and family.
type Key = (PoolKey, Family);

/// The RPC part of one worker's upstream pools.
#[derive(Default)]
pub struct RpcPools {
    multiplex: RefCell<FastMap<Key, Vec<Rc<RpcConn>>>>,
    rotor: Cell<usize>,
    /// Connects in progress per host, and who waits for one to finish.
    connecting: RefCell<FastMap<Key, (usize, Rc<Notify>)>>,
    idle: RefCell<FastMap<Key, Vec<Rc<RpcConn>>>>,
    binding: RefCell<FastMap<(u64, PoolKey, Family), Rc<RpcConn>>>,
}

impl std::fmt::Debug for RpcPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcPools")
            .field("multiplex_hosts", &self.multiplex.borrow().len())
            .field("binding", &self.binding.borrow().len())
            .finish()
    }
}

/// What a checkout found.
pub enum Checkout {
    /// A ready connection.
    Ready(Rc<RpcConn>),
    /// A new connection is needed (the caller connects and calls [`RpcPools::add`]).
    Connect,
}

impl RpcPools {
    /// Open connections to `addr`, TLS or not (tests, stats).
    pub fn open(&self, addr: SocketAddr, family: Family) -> usize {
        let count = |m: &FastMap<Key, Vec<Rc<RpcConn>>>| {
            m.iter()
                .filter(|((k, f), _)| k.addr == addr && *f == family)
                .map(|(_, v)| v.iter().filter(|c| !c.closed.get()).count())
                .sum::<usize>()
        };
        count(&self.multiplex.borrow())
            + count(&self.idle.borrow())
            + self
                .binding
                .borrow()
                .iter()
                .filter(|((_, k, f), c)| k.addr == addr && *f == family && !c.closed.get())
                .count()
    }

    /// A connection for one request, or `Connect` when the caller must open one. Concurrent
    /// first requests to a multiplexed host wait for one connect instead of each opening
    /// their own.
    pub(crate) async fn checkout(
        &self,
        to: &PoolKey,
        family: Family,
        s: &RpcSettings,
        max_requests: u32,
    ) -> Checkout {
        let key = (to.clone(), family);
        match s.pool_mode {
            PoolMode::Binding => {
                let mut b = self.binding.borrow_mut();
                let k = (s.binding_key, to.clone(), family);
                match b.get(&k) {
                    Some(c) if c.is_usable() => Checkout::Ready(c.clone()),
                    _ => {
                        b.remove(&k);
                        Checkout::Connect
                    }
                }
            }
            PoolMode::PingPong => {
                let mut idle = self.idle.borrow_mut();
                let Some(list) = idle.get_mut(&key) else {
                    return Checkout::Connect;
                };
                while let Some(c) = list.pop() {
                    if c.is_usable() && c.used.get() < max_requests {
                        return Checkout::Ready(c);
                    }
                }
                Checkout::Connect
            }
            // Up to `conns_per_host` connections (counting connects in flight); requests
            // beyond that share the open ones round robin, or wait for a connect to finish.
            PoolMode::Multiplex => loop {
                let notified = {
                    let mut m = self.multiplex.borrow_mut();
                    if !m.contains_key(&key) {
                        m.insert(key.clone(), Vec::new());
                    }
                    let Some(list) = m.get_mut(&key) else {
                        return Checkout::Connect;
                    };
                    // Not retired by request count: ids wrap per connection, and MOSN's
                    // multiplex pools keep their connections.
                    list.retain(|c| c.is_usable());
                    let mut connecting = self.connecting.borrow_mut();
                    let slot = connecting
                        .entry(key.clone())
                        .or_insert_with(|| (0, Rc::new(Notify::new())));
                    if list.len() + slot.0 < s.conns_per_host.max(1) {
                        slot.0 += 1;
                        return Checkout::Connect;
                    }
                    if !list.is_empty() {
                        let i = self.rotor.get();
                        self.rotor.set(i.wrapping_add(1));
                        return Checkout::Ready(list[i % list.len()].clone());
                    }
                    slot.1.clone()
                };
                // Registered before the borrow ends: a connect finishing now still wakes us.
                let wait = notified.notified();
                wait.await;
            },
        }
    }

    /// The multiplex pool's pick when it needs neither a connect nor a wait: all
    /// `conns_per_host` connections are open and usable (the steady state). `None` sends the
    /// caller to [`RpcPools::checkout`], which handles every other case.
    pub(crate) fn ready_multiplex(
        &self,
        to: &PoolKey,
        family: Family,
        s: &RpcSettings,
    ) -> Option<Rc<RpcConn>> {
        if s.pool_mode != PoolMode::Multiplex {
            return None;
        }
        let m = self.multiplex.borrow();
        let list = m.get(&(to.clone(), family))?;
        if list.len() < s.conns_per_host.max(1) || !list.iter().all(|c| c.is_usable()) {
            return None;
        }
        let i = self.rotor.get();
        self.rotor.set(i.wrapping_add(1));
        Some(list[i % list.len()].clone())
    }

    /// A connect for a `Connect` checkout ended (`conn`: the new connection, or `None` on
    /// failure); waiters are woken.
    pub(crate) fn add(
        &self,
        to: &PoolKey,
        family: Family,
        s: &RpcSettings,
        conn: Option<&Rc<RpcConn>>,
    ) {
        let key = (to.clone(), family);
        match s.pool_mode {
            PoolMode::Multiplex => {
                if let Some(c) = conn {
                    self.multiplex
                        .borrow_mut()
                        .entry(key.clone())
                        .or_default()
                        .push(c.clone());
                }
                if let Some(slot) = self.connecting.borrow_mut().get_mut(&key) {
                    slot.0 = slot.0.saturating_sub(1);
                    slot.1.notify_waiters();
                }
            }
            PoolMode::Binding => {
                if let Some(c) = conn {
                    self.binding
                        .borrow_mut()
                        .insert((s.binding_key, to.clone(), family), c.clone());
                }
            }
            PoolMode::PingPong => {}
        }
    }

    /// A ping-pong connection finished its request.
    pub(crate) fn checkin(&self, to: &PoolKey, family: Family, conn: Rc<RpcConn>, max_idle: usize) {
        if !conn.is_usable() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry((to.clone(), family)).or_default();
        if list.len() < max_idle {
            list.push(conn);
        }
    }

    /// Keeps the connections whose key `keep` accepts; the others are retired (multiplexed,
    /// bound: they finish what is in flight) or closed (idle ping-pong ones).
    pub(crate) fn retain(&self, keep: impl Fn(&PoolKey) -> bool) {
        self.multiplex.borrow_mut().retain(|(k, _), list| {
            let kept = keep(k);
            if !kept {
                list.iter().for_each(|c| c.retire());
            }
            kept
        });
        self.connecting
            .borrow_mut()
            .retain(|(k, _), (n, _)| *n > 0 || keep(k));
        self.idle.borrow_mut().retain(|(k, _), list| {
            let kept = keep(k);
            if !kept {
                list.iter().for_each(|c| c.close());
            }
            kept
        });
        self.binding.borrow_mut().retain(|(_, k, _), c| {
            let kept = keep(k);
            if !kept {
                c.retire();
            }
            kept
        });
    }

    /// The downstream connection `key` closed: its bound upstream connections close too.
    pub fn release_binding(&self, key: u64) {
        let mut b = self.binding.borrow_mut();
        b.retain(|(k, _, _), c| {
            if *k == key {
                c.close();
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mosn_wire::bolt;
    use tokio::io::AsyncWriteExt;

    struct NoObs;
    impl ConnObserver for NoObs {}

    /// What each direct waiter got, by tag: the answer's id, or the error.
    type Log = Rc<RefCell<Vec<(&'static str, Result<u64, String>)>>>;

    struct Record(&'static str, Log);

    impl Completion for Record {
        fn complete(self: Box<Self>, answer: Result<Frame, RpcError>, _now: Instant) {
            let got = answer.map(|f| f.request_id()).map_err(|e| e.to_string());
            self.1.borrow_mut().push((self.0, got));
        }
    }

    fn request(id: u32, oneway: bool) -> Frame {
        Frame::Bolt(bolt::Frame {
            proto: bolt::PROTO_V1,
            ver1: 0,
            kind: if oneway {
                bolt::TYPE_ONEWAY
            } else {
                bolt::TYPE_REQUEST
            },
            cmd_code: bolt::CMD_REQUEST,
            ver2: 1,
            request_id: id,
            codec: 1,
            switch: 0,
            timeout: 0,
            status: 0,
            class: Bytes::from_static(b"c"),
            header: bolt::HeaderMap::new(),
            content: Bytes::from_static(b"x"),
            raw: Bytes::new(),
        })
    }

    fn settled(log: &Log) -> Vec<(&'static str, Result<u64, String>)> {
        log.borrow().clone()
    }

    /// Answers, deadlines (an earlier one wakes the sweeper early) and a closed upstream
    /// each complete a direct waiter exactly once; nothing goes out when the frame cannot.
    #[test]
    fn direct_waiters_complete_on_answer_deadline_and_close() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
            let settings = RpcSettings {
                heartbeat_interval: None,
                ..RpcSettings::default()
            };
            let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
            let conn = RpcConn::start(ours, Family::Bolt, addr, &settings, Rc::new(NoObs));
            let log = Log::default();
            let now = Instant::now();
            let long = now + Duration::from_secs(5);
            let short = now + Duration::from_millis(150);
            let send = |tag, deadline| {
                let done = Box::new(Record(tag, log.clone()));
                assert!(conn
                    .send_direct(request(77, false), true, deadline, done)
                    .is_ok());
            };
            send("slow", long);
            send("answered", long);
            // The sweeper now sleeps towards 5 s; an earlier deadline must wake it.
            tokio::time::sleep(Duration::from_millis(10)).await;
            send("quick", short);
            // One-way requests have no answer to wait for: refused, nothing sent.
            let done = Box::new(Record("oneway", log.clone()));
            let refused = conn.send_direct(request(78, true), true, long, done);
            assert!(matches!(refused, Err((RpcError::Encode(_), _))));
            assert_eq!(conn.in_flight(), 3);

            // The upstream sees three requests with the connection's own ids.
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            while got.len() < 3 {
                theirs.read_buf(&mut buf).await.unwrap();
                while let Some(f) = Frame::decode(Family::Bolt, &mut buf, 1 << 20).unwrap() {
                    got.push(f);
                }
            }
            let ids: Vec<u64> = got.iter().map(Frame::request_id).collect();
            assert_eq!(ids, vec![1, 2, 3]);
            // Only the second ("answered") is answered.
            let Frame::Bolt(second) = &got[1] else {
                unreachable!()
            };
            let mut out = BytesMut::new();
            Frame::Bolt(bolt::Frame::response_to(second, bolt::status::SUCCESS))
                .encode(false, &mut out)
                .unwrap();
            theirs.write_all(&out).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(settled(&log), vec![("answered", Ok(2))]);

            // The 150 ms deadline fires although the sweeper first slept towards 5 s.
            tokio::time::sleep_until((short + Duration::from_millis(100)).into()).await;
            assert_eq!(
                settled(&log)[1..],
                [("quick", Err(RpcError::Timeout.to_string()))]
            );
            assert_eq!(conn.in_flight(), 1);
            // Its late answer is an unknown id now; the connection goes on.
            let Frame::Bolt(third) = &got[2] else {
                unreachable!()
            };
            out.clear();
            Frame::Bolt(bolt::Frame::response_to(third, bolt::status::SUCCESS))
                .encode(false, &mut out)
                .unwrap();
            theirs.write_all(&out).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(settled(&log).len(), 2);
            assert!(conn.is_usable());

            // The upstream goes away: the last waiter hears Closed at once, not at 5 s.
            drop(theirs);
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(
                settled(&log)[2..],
                [("slow", Err(RpcError::Closed.to_string()))]
            );
            assert!(Instant::now() < long);
            assert_eq!(conn.in_flight(), 0);
            let done = Box::new(Record("late", log.clone()));
            let refused = conn.send_direct(request(79, false), true, long, done);
            assert!(matches!(refused, Err((RpcError::Closed, _))));
            assert_eq!(settled(&log).len(), 3, "each waiter completed once");
        });
    }
}
