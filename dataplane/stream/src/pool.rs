//! Client stream connections and the per-worker upstream pools.
//!
//! - HTTP/1 (ping-pong): an idle list per host; a connection goes back to the list only once
//!   its response body has been read to the end, and is retired after
//!   `max_request_per_conn` requests.
//! - HTTP/2 (multiplexed): requests share a connection until it has carried
//!   `max_request_per_conn` streams; the peer's `SETTINGS_MAX_CONCURRENT_STREAMS` queues the
//!   excess inside the codec. Concurrent first requests wait for one connect instead of each
//!   opening their own.
//!
//! - RPC (Bolt, Dubbo): `xprotocol::client` (multiplex, ping-pong or binding).
//!
//! A pool belongs to one worker (`Rc`, `RefCell`): nothing here takes a lock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use mosn_net::Transport;
use mosn_tls_offload::{ClientConfig, TlsStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// A map looked up per request, keyed by upstream address: foldhash, not SipHash (the keys
/// come from config and name resolution, not from clients).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use crate::body::BoxError;
use crate::h1client::{self, H1Conn, H1Error, Outgoing};
use crate::xprotocol::client::{Checkout, RpcConn, RpcPools};
use crate::xprotocol::{convert as rpc_convert, Family, PoolMode, RpcError, RpcSettings};
use crate::{Body, LocalExec, StreamProtocol};

/// Per-request upstream settings (from the cluster).
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Requests (HTTP/1, RPC) or streams (HTTP/2) one connection carries before it is
    /// retired.
    pub max_request_per_conn: u32,
    /// RPC pooling and heartbeats.
    pub rpc: RpcSettings,
    /// TLS towards the upstream (the cluster's `tls_context`); `None`: plaintext.
    pub tls: Option<Arc<ClientConfig>>,
}

impl UpstreamSettings {
    /// These settings for one host: without TLS when the host has `tls_disable` (borrowed
    /// as they are otherwise).
    pub fn for_host(&self, tls_disabled: bool) -> std::borrow::Cow<'_, UpstreamSettings> {
        if tls_disabled && self.tls.is_some() {
            std::borrow::Cow::Owned(UpstreamSettings {
                tls: None,
                ..self.clone()
            })
        } else {
            std::borrow::Cow::Borrowed(self)
        }
    }
}

/// What a pooled connection (HTTP or RPC) was made for: the upstream address and the TLS config it
/// was made with, compared by identity. Clusters sharing one unchanged TLS config share
/// connections; a plaintext and a TLS cluster (or a `tls_disable` host) to the same address
/// never do, and a reloaded TLS config starts new connections (the key holds its config, so
/// an address is never reused by another config while a key lives).
#[derive(Clone)]
pub(crate) struct PoolKey {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<Arc<ClientConfig>>,
}

impl PoolKey {
    pub(crate) fn new(addr: SocketAddr, settings: &UpstreamSettings) -> Self {
        PoolKey {
            addr,
            tls: settings.tls.clone(),
        }
    }
}

impl PartialEq for PoolKey {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for PoolKey {}

impl std::hash::Hash for PoolKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
        self.tls.as_ref().map(Arc::as_ptr).hash(state);
    }
}

/// Told about the connections a pool opens for one host (the proxy layer counts them).
pub trait ConnObserver {
    /// A connect attempt began.
    fn on_connect_start(&self) {}
    /// A connection is established.
    fn on_connected(&self) {}
    /// A connect attempt failed (`timeout`: it ran out of time).
    fn on_connect_failed(&self, _timeout: bool) {}
    /// An established connection closed.
    fn on_closed(&self) {}
    /// An RPC answer arrived for a request id nobody waits for (it was dropped).
    fn on_unknown_response(&self) {}
}

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connecting took longer than the connect timeout.
    #[error("upstream connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// Connecting failed.
    #[error("upstream connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The protocol handshake failed on a fresh connection.
    #[error("upstream handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// An RPC request failed on an established connection.
    #[error("upstream RPC failed: {source}")]
    Rpc {
        /// What went wrong.
        #[source]
        source: RpcError,
        /// The request never left: safe to retry.
        not_sent: bool,
    },
    /// An HTTP/1 exchange failed on an established connection.
    #[error("upstream request failed: {source}")]
    Http1 {
        /// What went wrong.
        #[source]
        source: H1Error,
        /// No byte of the request was written: safe to retry.
        not_sent: bool,
    },
    /// The request failed on an established connection (HTTP/2, upgrades).
    #[error("upstream request failed: {source}")]
    Request {
        /// The codec's error.
        #[source]
        source: hyper::Error,
        /// The request never left (the connection was already closing): safe to retry.
        not_sent: bool,
    },
}

impl SendError {
    /// True when no byte of the request reached the upstream.
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            SendError::ConnectTimeout(_) | SendError::Connect(_) | SendError::Handshake(_)
        )
    }

    /// True when the upstream answered with bytes that are not a valid response (its
    /// protocol error, as opposed to a reset or a close).
    pub fn is_protocol_error(&self) -> bool {
        match self {
            SendError::Request { source, .. } | SendError::Handshake(source) => source.is_parse(),
            SendError::Rpc { source, .. } => matches!(source, RpcError::Codec(_)),
            SendError::Http1 { source, .. } => source.is_protocol(),
            _ => false,
        }
    }

    /// True when the request may be sent again without risking a duplicate.
    pub fn is_safe_to_retry(&self) -> bool {
        match self {
            SendError::Request { not_sent, .. }
            | SendError::Rpc { not_sent, .. }
            | SendError::Http1 { not_sent, .. } => *not_sent,
            _ => true,
        }
    }
}

/// An upstream connection's observer, told of the close when the guard (kept with the
/// connection) is dropped.
pub(crate) struct CloseGuard(Rc<dyn ConnObserver>);

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.0.on_closed();
    }
}

/// An HTTP/1 upstream connection of the pools.
type H1Upstream<C> = H1Conn<UpstreamIo<C>, CloseGuard>;

struct H1Idle<C> {
    /// The connection; its guard holds the host's observer (a reconnect reports to it too).
    conn: H1Upstream<C>,
    used: u32,
    /// The pools' sweep generation when it was made or last pooled: a sweep since then may
    /// have dropped its upstream (checked when it comes back, not on every request).
    epoch: u64,
}

struct H2Conn {
    sender: http2::SendRequest<Body>,
    used: Cell<u32>,
}

struct Inner<C> {
    h1: FastMap<PoolKey, Vec<H1Idle<C>>>,
    h2: FastMap<PoolKey, Vec<Rc<H2Conn>>>,
    h2_connecting: FastMap<PoolKey, Rc<Notify>>,
}

impl<C> Default for Inner<C> {
    fn default() -> Self {
        Inner {
            h1: FastMap::default(),
            h2: FastMap::default(),
            h2_connecting: FastMap::default(),
        }
    }
}

/// Which upstreams a worker's pools still want: `keep(addr, tls)` is true for an address and
/// TLS config (compared by identity) that some cluster still routes to. See
/// [`Pools::retain_upstreams`].
pub type KeepUpstream = Rc<dyn Fn(SocketAddr, Option<&Arc<ClientConfig>>) -> bool>;

/// Upstream connection pools of one worker, over transport `T`.
pub struct Pools<T: Transport> {
    transport: T,
    inner: RefCell<Inner<T::Conn>>,
    rpc: RpcPools,
    max_idle_per_host: usize,
    /// The cluster generation the pools were last swept for, and what it keeps.
    swept: Cell<u64>,
    keep: RefCell<Option<KeepUpstream>>,
}

impl<T: Transport> std::fmt::Debug for Pools<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.inner.borrow();
        f.debug_struct("Pools")
            .field("h1_hosts", &i.h1.len())
            .field("h2_hosts", &i.h2.len())
            .finish()
    }
}

impl<T: Transport> Pools<T> {
    /// Empty pools connecting through `transport`; at most `max_idle_per_host` idle HTTP/1
    /// connections are kept per host.
    pub fn new(transport: T, max_idle_per_host: usize) -> Rc<Self> {
        Rc::new(Pools {
            transport,
            inner: RefCell::new(Inner::default()),
            rpc: RpcPools::default(),
            max_idle_per_host,
            swept: Cell::new(0),
            keep: RefCell::new(None),
        })
    }

    /// The cluster generation of the last [`Pools::retain_upstreams`] (0: never swept).
    pub fn swept_generation(&self) -> u64 {
        self.swept.get()
    }

    /// Drops what the clusters of `generation` no longer route to: idle HTTP/1 connections
    /// close, HTTP/2 and multiplexed RPC connections take no new requests and close when
    /// their requests in flight are done, idle ping-pong RPC connections close, bound ones
    /// are replaced on their next request. An HTTP/1 connection busy now is not pooled
    /// again when it finishes. Without this a removed host, or a cluster whose TLS config
    /// was reloaded, would keep its connections (multiplexed RPC ones heartbeated forever).
    pub fn retain_upstreams(&self, generation: u64, keep: KeepUpstream) {
        self.swept.set(generation);
        {
            let mut inner = self.inner.borrow_mut();
            inner.h1.retain(|k, _| keep(k.addr, k.tls.as_ref()));
            inner.h2.retain(|k, _| keep(k.addr, k.tls.as_ref()));
        }
        self.rpc.retain(|k| keep(k.addr, k.tls.as_ref()));
        *self.keep.borrow_mut() = Some(keep);
    }

    /// Whether the last sweep keeps `key` (true before any sweep).
    fn kept(&self, key: &PoolKey) -> bool {
        self.keep
            .borrow()
            .as_ref()
            .is_none_or(|keep| keep(key.addr, key.tls.as_ref()))
    }

    /// The transport new connections are made with.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Open RPC connections to `addr` (tests, stats).
    pub fn open_rpc(&self, addr: SocketAddr, family: Family) -> usize {
        self.rpc.open(addr, family)
    }

    /// The downstream connection `key` ended: close the upstream connections bound to it.
    pub fn release_binding(&self, key: u64) {
        self.rpc.release_binding(key);
    }
}

impl<T: Transport> Pools<T>
where
    T::Conn: Send,
{
    /// Idle HTTP/1 connections kept for `addr`, TLS or not (tests, stats).
    pub fn idle_h1(&self, addr: SocketAddr) -> usize {
        let inner = self.inner.borrow();
        inner
            .h1
            .iter()
            .filter(|(k, _)| k.addr == addr)
            .map(|(_, v)| v.len())
            .sum()
    }

    /// Open HTTP/2 connections to `addr`, TLS or not (tests, stats).
    pub fn open_h2(&self, addr: SocketAddr) -> usize {
        let inner = self.inner.borrow();
        inner
            .h2
            .iter()
            .filter(|(k, _)| k.addr == addr)
            .map(|(_, v)| v.iter().filter(|c| !c.sender.is_closed()).count())
            .sum()
    }

    /// A connection to `addr` for pooled use ([`connect_upstream`]).
    async fn connect(
        &self,
        addr: SocketAddr,
        settings: &UpstreamSettings,
        obs: &Rc<dyn ConnObserver>,
    ) -> Result<UpstreamIo<T::Conn>, SendError> {
        connect_upstream(&self.transport, addr, settings, &**obs).await
    }

    async fn connect_tcp(
        &self,
        addr: SocketAddr,
        settings: &UpstreamSettings,
        obs: &Rc<dyn ConnObserver>,
    ) -> Result<T::Conn, SendError> {
        connect_tcp(&self.transport, addr, settings, &**obs).await
    }

    /// A raw byte-stream connection to `addr` (CONNECT tunnels), counted like pooled ones.
    pub async fn connect_raw(
        &self,
        addr: SocketAddr,
        settings: &UpstreamSettings,
        obs: Rc<dyn ConnObserver>,
    ) -> Result<Counted<T::Conn>, SendError> {
        let conn = self.connect_tcp(addr, settings, &obs).await?;
        Ok(Counted {
            conn,
            _closed: CloseGuard(obs),
        })
    }

    /// A connection to `addr` speaking `proto`: a pooled one when one is ready, else a new
    /// one. Connect failures are reported here, before any request is committed, so the
    /// caller may try another host with the same request.
    pub async fn checkout(
        self: &Rc<Self>,
        addr: SocketAddr,
        proto: StreamProtocol,
        settings: &UpstreamSettings,
        obs: impl FnOnce() -> Rc<dyn ConnObserver>,
    ) -> Result<Upstream<T>, SendError> {
        // The steady state takes a ready connection without boxing anything.
        if let Some(u) = self.ready(addr, proto, settings) {
            return Ok(u);
        }
        // Each protocol's path is boxed: the caller's request future then holds a pointer,
        // not the largest of the three state machines.
        match proto {
            StreamProtocol::Http1 => Box::pin(self.connect_h1_upstream(addr, settings, obs)).await,
            StreamProtocol::Http2 => {
                let max = settings.max_request_per_conn.max(1);
                Ok(Upstream(Up::H2(
                    Box::pin(self.checkout_or_connect_h2(addr, settings, obs, max)).await?,
                )))
            }
            StreamProtocol::Bolt | StreamProtocol::BoltV2 | StreamProtocol::Dubbo => {
                Box::pin(self.checkout_rpc(addr, proto, settings, obs)).await
            }
        }
    }

    /// An upstream without waiting, when the pool has one ready: an idle HTTP/1 connection
    /// that can take a request now, an HTTP/2 connection with room, a multiplex RPC pool
    /// with all its connections open. The steady state of a busy proxy then needs no boxed
    /// checkout future per request. `None`: [`Pools::checkout`] connects or waits.
    fn ready(
        self: &Rc<Self>,
        addr: SocketAddr,
        proto: StreamProtocol,
        settings: &UpstreamSettings,
    ) -> Option<Upstream<T>> {
        let key = PoolKey::new(addr, settings);
        match proto {
            StreamProtocol::Http1 => {
                // The most recently used first; one the upstream has closed (or sent stray
                // bytes on) while it sat idle is dropped.
                let idle = {
                    let mut inner = self.inner.borrow_mut();
                    let list = inner.h1.get_mut(&key)?;
                    loop {
                        let mut c = list.pop()?;
                        if c.conn.is_reusable() {
                            break c;
                        }
                    }
                };
                Some(self.h1_upstream(key, idle, settings))
            }
            StreamProtocol::Http2 => {
                let max = settings.max_request_per_conn.max(1);
                Some(Upstream(Up::H2(self.checkout_h2(&key, max)?)))
            }
            StreamProtocol::Bolt | StreamProtocol::BoltV2 | StreamProtocol::Dubbo => {
                let family = proto.family()?;
                let conn = self.rpc.ready_multiplex(&key, family, &settings.rpc)?;
                Some(Upstream(Up::Rpc {
                    pools: self.clone(),
                    key,
                    proto,
                    conn,
                    mode: PoolMode::Multiplex,
                }))
            }
        }
    }

    /// A multiplexed RPC connection to `addr` that can take a request now, without waiting
    /// or connecting (see [`Pools::checkout`] for every other case): the proxy's RPC fast
    /// path sends on it with [`RpcConn::send_direct`].
    pub fn ready_rpc(
        &self,
        addr: SocketAddr,
        proto: StreamProtocol,
        settings: &UpstreamSettings,
    ) -> Option<Rc<RpcConn>> {
        let family = proto.family()?;
        if settings.rpc.pool_mode != PoolMode::Multiplex {
            return None;
        }
        self.rpc
            .ready_multiplex(&PoolKey::new(addr, settings), family, &settings.rpc)
    }

    /// A new HTTP/1 connection (`ready` found no idle one).
    async fn connect_h1_upstream(
        self: &Rc<Self>,
        addr: SocketAddr,
        settings: &UpstreamSettings,
        obs: impl FnOnce() -> Rc<dyn ConnObserver>,
    ) -> Result<Upstream<T>, SendError> {
        let idle = self.connect_h1(addr, settings, &obs()).await?;
        Ok(self.h1_upstream(PoolKey::new(addr, settings), idle, settings))
    }

    fn h1_upstream(
        self: &Rc<Self>,
        key: PoolKey,
        idle: H1Idle<T::Conn>,
        settings: &UpstreamSettings,
    ) -> Upstream<T> {
        Upstream(Up::H1 {
            pools: self.clone(),
            key,
            idle,
            max: settings.max_request_per_conn.max(1),
            settings: settings.clone(),
        })
    }

    async fn checkout_rpc(
        self: &Rc<Self>,
        addr: SocketAddr,
        proto: StreamProtocol,
        settings: &UpstreamSettings,
        obs: impl FnOnce() -> Rc<dyn ConnObserver>,
    ) -> Result<Upstream<T>, SendError> {
        let family = proto.family().unwrap_or(Family::Bolt);
        let s = &settings.rpc;
        let max = settings.max_request_per_conn.max(1);
        let key = PoolKey::new(addr, settings);
        let conn = match self.rpc.checkout(&key, family, s, max).await {
            Checkout::Ready(c) => c,
            Checkout::Connect => {
                // Gives the pool its slot back however this ends (a caller's timer may drop
                // us mid-connect).
                let slot = ConnectSlot {
                    rpc: &self.rpc,
                    key: &key,
                    family,
                    settings: s,
                };
                let obs = obs();
                let io = self.connect(addr, settings, &obs).await?;
                let c = RpcConn::start(io, family, addr, s, obs);
                std::mem::forget(slot);
                self.rpc.add(&key, family, s, Some(&c));
                c
            }
        };
        Ok(Upstream(Up::Rpc {
            pools: self.clone(),
            key,
            proto,
            conn,
            mode: s.pool_mode,
        }))
    }

    async fn connect_h1(
        &self,
        addr: SocketAddr,
        settings: &UpstreamSettings,
        obs: &Rc<dyn ConnObserver>,
    ) -> Result<H1Idle<T::Conn>, SendError> {
        let io = self.connect(addr, settings, obs).await?;
        Ok(H1Idle {
            conn: H1Conn::new(io, CloseGuard(obs.clone())),
            used: 0,
            epoch: self.swept.get(),
        })
    }

    fn checkin_h1(&self, key: &PoolKey, mut c: H1Idle<T::Conn>) {
        let swept = self.swept.get();
        if c.epoch != swept && !self.kept(key) {
            return;
        }
        c.epoch = swept;
        let mut inner = self.inner.borrow_mut();
        if let Some(list) = inner.h1.get_mut(key) {
            if list.len() < self.max_idle_per_host {
                list.push(c);
            }
            return;
        }
        // A new key: drop lists left empty by configs that are gone (a reloaded TLS config
        // or a removed host) so the map does not grow with every reload.
        inner.h1.retain(|_, l| {
            l.retain_mut(|c| c.conn.is_reusable());
            !l.is_empty()
        });
        let list = inner.h1.entry(key.clone()).or_default();
        if list.len() < self.max_idle_per_host {
            list.push(c);
        }
    }

    async fn checkout_or_connect_h2(
        &self,
        addr: SocketAddr,
        settings: &UpstreamSettings,
        obs: impl FnOnce() -> Rc<dyn ConnObserver>,
        max: u32,
    ) -> Result<Rc<H2Conn>, SendError> {
        let key = PoolKey::new(addr, settings);
        loop {
            if let Some(c) = self.checkout_h2(&key, max) {
                return Ok(c);
            }
            let waiting = self.inner.borrow().h2_connecting.get(&key).cloned();
            let Some(n) = waiting else { break };
            // Another request is connecting to this host: share its connection.
            let notified = n.notified();
            if self.inner.borrow().h2_connecting.contains_key(&key) {
                notified.await;
            }
        }
        let notify = Rc::new(Notify::new());
        self.inner
            .borrow_mut()
            .h2_connecting
            .insert(key.clone(), notify.clone());
        let made = self.connect_h2(addr, settings, &obs()).await;
        self.inner.borrow_mut().h2_connecting.remove(&key);
        notify.notify_waiters();
        let c = made?;
        let mut inner = self.inner.borrow_mut();
        if !inner.h2.contains_key(&key) {
            // As for HTTP/1: forget the lists of configs that are gone.
            inner.h2.retain(|_, l| {
                l.retain(|c| !c.sender.is_closed());
                !l.is_empty()
            });
        }
        inner.h2.entry(key).or_default().push(c.clone());
        drop(inner);
        c.used.set(c.used.get() + 1);
        Ok(c)
    }

    fn checkout_h2(&self, key: &PoolKey, max: u32) -> Option<Rc<H2Conn>> {
        let mut inner = self.inner.borrow_mut();
        let list = inner.h2.get_mut(key)?;
        // Retire closed and used-up connections (open streams keep them alive until done).
        list.retain(|c| !c.sender.is_closed() && c.used.get() < max);
        let c = list.first()?.clone();
        c.used.set(c.used.get() + 1);
        Some(c)
    }

    async fn connect_h2(
        &self,
        addr: SocketAddr,
        settings: &UpstreamSettings,
        obs: &Rc<dyn ConnObserver>,
    ) -> Result<Rc<H2Conn>, SendError> {
        let io = self.connect(addr, settings, obs).await?;
        let (sender, conn) = http2::Builder::new(LocalExec)
            .timer(TokioTimer::new())
            // Until the peer's SETTINGS arrive, open one stream only: a burst of requests
            // on a fresh connection must not exceed a SETTINGS_MAX_CONCURRENT_STREAMS we
            // have not seen yet (the excess would be refused). The peer's first SETTINGS
            // replace this (unlimited when it names no limit), and waiting streams go out.
            .initial_max_send_streams(1)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .handshake(TokioIo::new(io))
            .await
            .map_err(SendError::Handshake)?;
        let obs = obs.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection ended");
            }
            obs.on_closed();
        });
        Ok(Rc::new(H2Conn {
            sender,
            used: Cell::new(0),
        }))
    }
}

/// A connection to `addr` through `transport`: TCP, then TLS when `settings.tls` is set (both
/// within the connect timeout, SNI from the config's `server_name`, else the address). With
/// the cluster's `fall_back`, a failed handshake is retried once in plaintext (logged). `obs`
/// hears of the attempt, its success or its failure. Used by the pools and by `tcp_proxy`.
pub async fn connect_upstream<T: Transport>(
    transport: &T,
    addr: SocketAddr,
    settings: &UpstreamSettings,
    obs: &dyn ConnObserver,
) -> Result<UpstreamIo<T::Conn>, SendError> {
    let Some(tls) = &settings.tls else {
        return Ok(UpstreamIo::Plain(
            connect_tcp(transport, addr, settings, obs).await?,
        ));
    };
    let host = tls.server_name().unwrap_or_else(|| addr.ip().to_string());
    let tcp = connect_tcp(transport, addr, settings, obs).await?;
    match tokio::time::timeout(settings.connect_timeout, tls.connect(tcp, &host)).await {
        Ok(Ok(s)) => Ok(UpstreamIo::Tls(Box::new(s))),
        Ok(Err(e)) if tls.fall_back() => {
            tracing::warn!(%addr, error = %e, "upstream TLS handshake failed; falling back to plaintext (fall_back)");
            Ok(UpstreamIo::Plain(
                connect_tcp(transport, addr, settings, obs).await?,
            ))
        }
        Ok(Err(e)) => {
            obs.on_connect_failed(false);
            Err(SendError::Connect(io::Error::other(e.to_string())))
        }
        Err(_) => {
            obs.on_connect_failed(true);
            Err(SendError::ConnectTimeout(settings.connect_timeout))
        }
    }
}

async fn connect_tcp<T: Transport>(
    transport: &T,
    addr: SocketAddr,
    settings: &UpstreamSettings,
    obs: &dyn ConnObserver,
) -> Result<T::Conn, SendError> {
    obs.on_connect_start();
    match tokio::time::timeout(settings.connect_timeout, transport.connect(addr)).await {
        Ok(Ok(c)) => {
            obs.on_connected();
            Ok(c)
        }
        Ok(Err(e)) => {
            obs.on_connect_failed(false);
            Err(SendError::Connect(e))
        }
        Err(_) => {
            obs.on_connect_failed(true);
            Err(SendError::ConnectTimeout(settings.connect_timeout))
        }
    }
}

/// A connection checked out of a pool, ready for one request.
pub struct Upstream<T: Transport>(Up<T>);

enum Up<T: Transport> {
    H1 {
        pools: Rc<Pools<T>>,
        key: PoolKey,
        idle: H1Idle<T::Conn>,
        max: u32,
        settings: UpstreamSettings,
    },
    H2(Rc<H2Conn>),
    Rpc {
        pools: Rc<Pools<T>>,
        key: PoolKey,
        proto: StreamProtocol,
        conn: Rc<RpcConn>,
        mode: PoolMode,
    },
}

impl<T: Transport> std::fmt::Debug for Upstream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Up::H1 { key, .. } => write!(f, "Upstream(Http1 {})", key.addr),
            Up::H2(_) => f.write_str("Upstream(Http2)"),
            Up::Rpc { key, proto, .. } => write!(f, "Upstream({} {})", proto.name(), key.addr),
        }
    }
}

impl<T: Transport> Upstream<T>
where
    T::Conn: Send,
{
    /// The protocol this connection speaks.
    pub fn protocol(&self) -> StreamProtocol {
        match self.0 {
            Up::H1 { .. } => StreamProtocol::Http1,
            Up::H2(_) => StreamProtocol::Http2,
            Up::Rpc { proto, .. } => proto,
        }
    }

    /// Sends `req` and waits for the response head. An HTTP/1 connection returns to its pool
    /// once the response body has been read to the end (never after a protocol switch).
    /// The future is boxed per protocol (only the chosen path's state is allocated).
    pub fn send(self, req: Request<Body>) -> Pin<Box<dyn Future<Output = SendResult>>> {
        match self.0 {
            Up::Rpc {
                pools,
                key,
                proto,
                conn,
                mode,
            } => Box::pin(send_rpc(pools, key, proto, conn, mode, req)),
            Up::H2(conn) => Box::pin(async move {
                let mut sender = conn.sender.clone();
                let resp = sender.send_request(req).await.map_err(request_failed)?;
                Ok(resp.map(Body::new))
            }),
            Up::H1 {
                pools,
                key,
                idle,
                max,
                settings,
            } => send_h1(pools, key, idle, max, settings, req),
        }
    }
}

/// What [`Upstream::send`] resolves to.
pub type SendResult = Result<Response<Body>, SendError>;

fn request_failed(e: hyper::Error) -> SendError {
    let not_sent = e.is_canceled();
    SendError::Request {
        source: e,
        not_sent,
    }
}

async fn send_rpc<T: Transport>(
    pools: Rc<Pools<T>>,
    key: PoolKey,
    proto: StreamProtocol,
    conn: Rc<RpcConn>,
    mode: PoolMode,
    req: Request<Body>,
) -> SendResult {
    let family = proto.family().unwrap_or(Family::Bolt);
    let rpc_fail = |source: RpcError| {
        let not_sent = matches!(source, RpcError::Encode(_) | RpcError::Body(_));
        SendError::Rpc { source, not_sent }
    };
    let (frame, raw) = rpc_convert::request_to_frame(family, proto == StreamProtocol::BoltV2, req)
        .await
        .map_err(rpc_fail)?;
    let answer = conn.call(frame, raw).await.map_err(rpc_fail)?;
    if mode == PoolMode::PingPong && pools.kept(&key) {
        pools
            .rpc
            .checkin(&key, family, conn, pools.max_idle_per_host);
    }
    Ok(match answer {
        Some(f) => rpc_convert::response_from_frame(f),
        // One-way: nothing comes back; the downstream side sends nothing either.
        None => Response::new(Body::empty()),
    })
}

impl<T: Transport> Upstream<T> {
    /// Sends an RPC frame of this connection's own family as it is, with no HTTP form (the
    /// proxy's RPC fast path; `raw`: forward the frame's bytes with only the id rewritten),
    /// and waits for the answer (`None`: one-way). A ping-pong connection goes back to its
    /// pool as [`Upstream::send`] would put it.
    pub async fn send_frame(
        self,
        frame: crate::xprotocol::Frame,
        raw: bool,
    ) -> Result<Option<crate::xprotocol::Frame>, SendError> {
        let rpc_fail = |source: RpcError| {
            let not_sent = matches!(source, RpcError::Encode(_) | RpcError::Body(_));
            SendError::Rpc { source, not_sent }
        };
        let Up::Rpc {
            pools,
            key,
            conn,
            mode,
            ..
        } = self.0
        else {
            return Err(rpc_fail(RpcError::Encode(
                "not an RPC upstream connection".into(),
            )));
        };
        let answer = conn.call(frame, raw).await.map_err(rpc_fail)?;
        if mode == PoolMode::PingPong && pools.kept(&key) {
            let family = conn.family();
            pools
                .rpc
                .checkin(&key, family, conn, pools.max_idle_per_host);
        }
        Ok(answer)
    }
}

/// The HTTP/1 exchange's future, boxed. The request is encoded before the future is made, so
/// that the box holds the encoded request and not the request (every byte of the future is
/// moved into the box once per request); an upgrade goes its own way (hyper).
fn send_h1<T: Transport>(
    pools: Rc<Pools<T>>,
    key: PoolKey,
    mut idle: H1Idle<T::Conn>,
    max: u32,
    settings: UpstreamSettings,
    req: Request<Body>,
) -> Pin<Box<dyn Future<Output = SendResult>>>
where
    T::Conn: Send,
{
    if is_upgrade(&req) {
        return Box::pin(send_upgrade(idle, key.addr, req));
    }
    let (parts, body) = req.into_parts();
    let head_request = parts.method == http::Method::HEAD;
    let idempotent = parts.method.is_idempotent();
    let out = Outgoing::new(&parts, body, idle.conn.scratch.take_out());
    // The request's map, encoded, takes the response's fields.
    idle.conn.scratch.recycle(parts.headers);
    Box::pin(exchange_h1(
        pools,
        key,
        idle,
        max,
        settings,
        out,
        head_request,
        idempotent,
    ))
}

#[allow(clippy::too_many_arguments)] // the parts of one request, prepared by `send_h1`
async fn exchange_h1<T: Transport>(
    pools: Rc<Pools<T>>,
    key: PoolKey,
    idle: H1Idle<T::Conn>,
    max: u32,
    settings: UpstreamSettings,
    mut out: Outgoing,
    head_request: bool,
    idempotent: bool,
) -> SendResult
where
    T::Conn: Send,
{
    let H1Idle {
        mut conn,
        mut used,
        epoch,
    } = idle;
    let head = match h1client::exchange(&mut conn, &mut out, head_request).await {
        Ok(h) => h,
        // A pooled connection the upstream closed just as it was taken (its keep-alive
        // timeout crossing the request) and nothing came back: a request without a body that
        // may be repeated goes once more, on a fresh connection.
        Err(H1Error::ClosedBeforeResponse | H1Error::Io(_))
            if used > 0 && idempotent && conn.buf.is_empty() && out.replay() =>
        {
            tracing::debug!(addr = %key.addr, "pooled connection was closed by the upstream; reconnecting");
            // Boxed: inline, the connect (TCP and TLS) would make every request's send
            // future several KiB larger, all of it moved into the box `Upstream::send` makes.
            let obs = conn.guard.0.clone();
            conn = Box::pin(pools.connect_h1(key.addr, &settings, &obs))
                .await?
                .conn;
            used = 0;
            h1client::exchange(&mut conn, &mut out, head_request)
                .await
                .map_err(|e| h1_failed(e, &out))?
        }
        Err(e) => return Err(h1_failed(e, &out)),
    };
    used += 1;
    let h1client::ResponseHead {
        parts,
        decoder,
        keep_alive,
    } = head;
    let back = (keep_alive && used < max).then(|| Back {
        pools: Rc::downgrade(&pools),
        key,
        used,
        epoch,
    });
    let out = if out.is_done() {
        conn.scratch.keep_out(out.into_buf());
        None
    } else {
        Some(out)
    };
    if decoder.is_done() {
        // Nothing left to read (`Content-Length: 0`, 204, 304, HEAD): reusable now. The
        // downstream codec never polls a body that is already at its end, so the body
        // would never see its end and the connection would be closed instead of reused.
        if let (Some(back), None) = (back, &out) {
            back.give_back(conn);
        }
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    Ok(Response::from_parts(
        parts,
        Body::new(H1Body {
            conn: Some(conn),
            decoder,
            out,
            back,
        }),
    ))
}

fn h1_failed(source: H1Error, out: &Outgoing) -> SendError {
    SendError::Http1 {
        source,
        not_sent: !out.wrote(),
    }
}

/// `Upgrade` and `CONNECT` requests go through hyper's client, which hands the connection
/// over once the upstream switches protocols; the connection is never pooled again.
async fn send_upgrade<C: mosn_net::Connection + Send>(
    idle: H1Idle<C>,
    addr: SocketAddr,
    req: Request<Body>,
) -> SendResult {
    let H1Conn { io, guard, .. } = idle.conn;
    let (mut sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(SendError::Handshake)?;
    tokio::task::spawn_local(async move {
        let _closed = guard;
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream HTTP/1 connection ended");
        }
    });
    let resp = sender.send_request(req).await.map_err(request_failed)?;
    Ok(resp.map(Body::new))
}

/// Where a finished HTTP/1 connection goes back to.
struct Back<T: Transport> {
    pools: std::rc::Weak<Pools<T>>,
    key: PoolKey,
    used: u32,
    epoch: u64,
}

impl<T: Transport> Back<T>
where
    T::Conn: Send,
{
    fn give_back(self, conn: H1Upstream<T::Conn>) {
        // Bytes after the response's end are not the start of a next response we asked for.
        if !conn.buf.is_empty() {
            return;
        }
        if let Some(p) = self.pools.upgrade() {
            p.checkin_h1(
                &self.key,
                H1Idle {
                    conn,
                    used: self.used,
                    epoch: self.epoch,
                },
            );
        }
    }
}

/// An HTTP/1 response body read straight from its connection by whoever polls it (the
/// downstream codec, on the request's task). Read to the end, the connection goes back to
/// the pool (when the response allows it and the request went out in full); dropped early
/// or broken, the connection closes with it.
struct H1Body<T: Transport> {
    conn: Option<H1Upstream<T::Conn>>,
    decoder: h1client::Decoder,
    /// The rest of the request, when the response came before all of it was sent.
    out: Option<Outgoing>,
    back: Option<Back<T>>,
}

impl<T: Transport> H1Body<T>
where
    T::Conn: Send,
{
    fn finish(&mut self) {
        let conn = self.conn.take();
        if let (Some(conn), Some(back), None) = (conn, self.back.take(), &self.out) {
            back.give_back(conn);
        }
    }
}

impl<T: Transport> http_body::Body for H1Body<T>
where
    T::Conn: Send,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let r = h1client::poll_body(conn, &mut this.decoder, &mut this.out, cx);
        match &r {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Ok(_))) if this.decoder.is_done() => this.finish(),
            Poll::Ready(Some(Err(_))) => {
                this.conn = None;
                this.back = None;
            }
            _ => {}
        }
        r.map(|o| o.map(|res| res.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.decoder.size_hint()
    }
}

/// An RPC connect in progress: when dropped (failure, or the caller gave up), the pool
/// learns that no connection came of it.
struct ConnectSlot<'a> {
    rpc: &'a RpcPools,
    key: &'a PoolKey,
    family: Family,
    settings: &'a RpcSettings,
}

impl Drop for ConnectSlot<'_> {
    fn drop(&mut self) {
        self.rpc.add(self.key, self.family, self.settings, None);
    }
}

/// A raw connection that tells its observer when it closes.
pub struct Counted<C> {
    /// The connection.
    pub conn: C,
    _closed: CloseGuard,
}

fn is_upgrade(req: &Request<Body>) -> bool {
    req.method() == http::Method::CONNECT || req.headers().contains_key(http::header::UPGRADE)
}

/// An upstream connection: plain, or a TLS session over it.
#[derive(Debug)]
pub enum UpstreamIo<C> {
    /// Plaintext.
    Plain(C),
    /// A TLS session over the connection.
    Tls(Box<TlsStream<C>>),
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncRead for UpstreamIo<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(c) => Pin::new(c).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncWrite for UpstreamIo<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(c) => Pin::new(c).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(c) => c.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(c) => Pin::new(c).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(c) => Pin::new(c).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
