//! L7 stream filters: the framework and the built-in filters.
//!
//! ```text
//!  filter.rs              Phase, Verdict, LocalReply, the contexts, the StreamFilter trait,
//!                         FilterRegistry (type name -> factory), FilterChain, RouteOverrides
//!  filter/json.rs         strict config readers (unknown keys and wrong types are errors)
//!  filter/matcher.rs      MOSN header matchers {name, value, regex}
//!  filter/fault.rs        `fault`: delay / abort by percentage
//!  filter/payload_limit.rs `payload_limit`: Content-Length and streamed body size
//!  filter/ip_access.rs    `ip_access`: allow / deny by client IP or CIDR
//!  filter/rate_limit.rs   `local_rate_limit` (alias `local_ratelimit`): lock-free token buckets
//!  filter/transcoder.rs   `transcoder`: picks the upstream protocol by header rules
//! ```
//!
//! # How the engine drives a chain
//!
//! MOSN runs receiver filters at three phases (BeforeRoute, AfterRoute, AfterChooseHost) and
//! sender filters before the response is sent. Here one [`FilterChain`] per listener holds the
//! filters of `stream_filters[]` in config order; each filter declares its [`Phase`]. The proxy
//! engine calls the chain synchronously; filters never do IO and keep no per-request state
//! (they are shared by every worker thread behind an `Arc`).
//!
//! 1. `chain.run_request(phase, &mut ctx)` runs the filters of `phase` in order and stops at
//!    the first verdict that is not [`Verdict::Continue`]. It returns a [`ChainVerdict`]:
//!    - `Continue`: go on with routing / host selection / the upstream request;
//!    - `Reply(r)`: answer the downstream with `r` (the upstream is never contacted);
//!    - `Delay { delay, then }`: sleep `delay` (record `ResponseFlags::DELAY_INJECTED`), then
//!      reply with `then` if it is `Some`, or else resume the phase with
//!      `chain.run_request_from(phase, verdict.resume_from, &mut ctx)`.
//! 2. For every request body chunk: `chain.run_request_data(..)` (payload limits).
//! 3. Before the response head goes downstream: `chain.run_response(&mut ctx)`; a `Reply`
//!    there replaces the upstream response.
//! 4. When the request is done: `chain.run_log(&record)`.
//!
//! # Per-route configuration (`per_filter_config`)
//!
//! A route's `per_filter_config` maps a filter type name to a config that replaces the
//! listener-level config of that filter for requests on that route (MOSN's
//! `ReadPerRouteConfig`). JSON is never parsed on the request path: at router build time the
//! lead calls [`FilterChain::compile_route_overrides`] (or [`FilterRegistry::compile_route_overrides`]
//! when the router is shared by several listeners) with the route's `per_filter_config`. That
//! builds one complete filter instance per overridden type with the same factory that built
//! the listener filter, and returns them as [`RouteOverrides`]. The engine then puts
//! `Some(&overrides)` into [`RequestCtx::route_overrides`] (and the response / log / data
//! contexts) once the route is known; the chain runs the override instance in place of the
//! listener instance of the same type. Filters therefore never look at overrides themselves.
//! Consequences: an override is a whole config (like MOSN, no field-by-field merge); a
//! `local_rate_limit` override has its own token bucket shared by all requests on that route;
//! BeforeRoute filters (`ip_access`) never see overrides, since the route is not known yet.
//!
//! # Errors
//!
//! Factories return [`FilterError`] whose reason starts with the path inside the filter's
//! `config` (`delay.percentage: must be ...`). [`FilterChain::build`] prefixes
//! `stream_filters[i] (type): ` and [`FilterChain::compile_route_overrides`] prefixes
//! `per_filter_config.type: `; the caller prefixes the path of the listener or route.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use serde_json::{Map, Value};

use crate::flags::ResponseFlags;

pub mod fault;
pub mod ip_access;
mod json;
pub mod matcher;
pub mod payload_limit;
pub mod rate_limit;
pub mod transcoder;

#[cfg(test)]
mod tests;

/// When a receiver filter runs (MOSN `api.FilterPhase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before the route is chosen: no route, no cluster, no per-route config.
    BeforeRoute,
    /// After the route is chosen: `cluster` and `route_overrides` are set.
    AfterRoute,
    /// After the load balancer chose a host: `upstream_host` is set as well.
    AfterChooseHost,
}

impl Phase {
    /// All phases, in the order the engine runs them.
    pub const ALL: [Phase; 3] = [
        Phase::BeforeRoute,
        Phase::AfterRoute,
        Phase::AfterChooseHost,
    ];

    fn index(self) -> usize {
        match self {
            Phase::BeforeRoute => 0,
            Phase::AfterRoute => 1,
            Phase::AfterChooseHost => 2,
        }
    }
}

/// A response produced by the proxy itself (MOSN `SendHijackReply` / `SendDirectResponse`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    /// Status code.
    pub status: StatusCode,
    /// Body (may be empty).
    pub body: Bytes,
    /// Extra response headers; the engine adds `content-length` and protocol headers.
    pub headers: HeaderMap,
    /// Flags to record for the access log; built-ins always include `LOCAL_REPLY`.
    pub flags: ResponseFlags,
}

impl LocalReply {
    /// A reply with an empty body and the given flags plus `LOCAL_REPLY`.
    pub fn new(status: StatusCode, flags: ResponseFlags) -> LocalReply {
        LocalReply {
            status,
            body: Bytes::new(),
            headers: HeaderMap::new(),
            flags: flags | ResponseFlags::LOCAL_REPLY,
        }
    }

    /// Sets a `text/plain` body.
    pub fn with_text(mut self, body: &'static str) -> LocalReply {
        self.body = Bytes::from_static(body.as_bytes());
        self.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        self
    }
}

/// What a filter decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the next filter.
    Continue,
    /// Stop and answer locally.
    Reply(LocalReply),
    /// Sleep `delay`, then answer with `then`, or (when `None`) resume the chain after the
    /// filter that asked for the delay. The engine records `ResponseFlags::DELAY_INJECTED`.
    Delay {
        /// How long to hold the request.
        delay: Duration,
        /// The reply to send after the delay, if any.
        then: Option<LocalReply>,
    },
}

impl Verdict {
    /// True for [`Verdict::Continue`].
    pub fn is_continue(&self) -> bool {
        matches!(self, Verdict::Continue)
    }
}

/// What a chain run decided, and where to resume after a [`Verdict::Delay`] with no reply.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainVerdict {
    /// `Continue` when every filter of the phase continued, else the first other verdict.
    pub verdict: Verdict,
    /// Index (in chain order) of the first filter not yet run; pass it to
    /// [`FilterChain::run_request_from`] / [`FilterChain::run_response_from`] to resume.
    /// Equal to [`FilterChain::len`] when the run went to the end.
    pub resume_from: usize,
}

/// A read-only view of the request head (for response, data and log hooks).
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a Method,
    /// URI (origin form for HTTP/1, with authority for HTTP/2).
    pub uri: &'a Uri,
    /// HTTP version as received.
    pub version: Version,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

impl<'a> From<&'a http::request::Parts> for RequestView<'a> {
    fn from(p: &'a http::request::Parts) -> RequestView<'a> {
        RequestView {
            method: &p.method,
            uri: &p.uri,
            version: p.version,
            headers: &p.headers,
        }
    }
}

/// What a filter sees on the request path.
#[derive(Debug)]
pub struct RequestCtx<'a> {
    /// The request head; filters may change method, URI and headers.
    pub head: &'a mut http::request::Parts,
    /// Client address (after PROXY protocol / original-dst handling).
    pub downstream_remote: SocketAddr,
    /// Local address the request arrived on.
    pub downstream_local: SocketAddr,
    /// Listener name.
    pub listener: &'a str,
    /// Downstream protocol name as in config: `"Http1"`, `"Http2"`, later `"bolt"`...
    pub downstream_protocol: &'a str,
    /// The route's compiled `per_filter_config` (see the module doc); `None` before routing
    /// or when the route has none. Read by the chain, not by filters.
    pub route_overrides: Option<&'a RouteOverrides>,
    /// Upstream protocol chosen by a filter (the transcoder); `None` = engine default.
    pub upstream_protocol: &'a mut Option<String>,
    /// The chosen upstream host (AfterChooseHost only).
    pub upstream_host: Option<SocketAddr>,
    /// The route's cluster (AfterRoute and later).
    pub cluster: Option<&'a str>,
}

impl<'a> RequestCtx<'a> {
    /// A context for the BeforeRoute phase; set `route_overrides`, `cluster` and
    /// `upstream_host` as the engine learns them.
    pub fn new(
        head: &'a mut http::request::Parts,
        downstream_remote: SocketAddr,
        downstream_local: SocketAddr,
        listener: &'a str,
        downstream_protocol: &'a str,
        upstream_protocol: &'a mut Option<String>,
    ) -> RequestCtx<'a> {
        RequestCtx {
            head,
            downstream_remote,
            downstream_local,
            listener,
            downstream_protocol,
            route_overrides: None,
            upstream_protocol,
            upstream_host: None,
            cluster: None,
        }
    }
}

/// What a filter sees before the response head is sent downstream.
#[derive(Debug)]
pub struct ResponseCtx<'a> {
    /// The response head; filters may change status and headers.
    pub head: &'a mut http::response::Parts,
    /// The request this responds to.
    pub request: RequestView<'a>,
    /// Downstream protocol name.
    pub downstream_protocol: &'a str,
    /// Upstream protocol actually used (`None` for a local reply).
    pub upstream_protocol: Option<&'a str>,
    /// The route's compiled `per_filter_config`, as on the request path.
    pub route_overrides: Option<&'a RouteOverrides>,
    /// Flags recorded so far.
    pub flags: ResponseFlags,
}

/// What the log hook sees when the request is finished.
#[derive(Clone, Copy, Debug)]
pub struct LogRecord<'a> {
    /// The request head.
    pub request: RequestView<'a>,
    /// Status sent downstream (`None` when no response head was sent).
    pub status: Option<StatusCode>,
    /// Final response flags.
    pub flags: ResponseFlags,
    /// Time from the request head to the end of the response.
    pub duration: Duration,
    /// The route's compiled `per_filter_config`, as on the request path.
    pub route_overrides: Option<&'a RouteOverrides>,
}

/// An L7 stream filter. Implementations are immutable after construction (interior
/// mutability only through atomics), shared by all worker threads.
pub trait StreamFilter: fmt::Debug + Send + Sync + 'static {
    /// The canonical type name (`"fault"`, ...). Route overrides are keyed by it.
    fn name(&self) -> &'static str;

    /// When [`StreamFilter::on_request`] runs.
    fn phase(&self) -> Phase {
        Phase::BeforeRoute
    }

    /// Request head hook, at [`StreamFilter::phase`].
    fn on_request(&self, _ctx: &mut RequestCtx<'_>) -> Verdict {
        Verdict::Continue
    }

    /// Request body hook, once per chunk after the request phases ran.
    /// `received_so_far` counts every body byte received, this chunk included.
    /// Should return `Continue` or `Reply` (a delay here is not resumable).
    fn on_request_data(
        &self,
        _request: RequestView<'_>,
        _received_so_far: u64,
        _chunk_len: usize,
    ) -> Verdict {
        Verdict::Continue
    }

    /// True when [`StreamFilter::on_request_data`] does anything: the engine then calls it for
    /// every body chunk (others pay nothing for body inspection).
    fn inspects_request_body(&self) -> bool {
        false
    }

    /// Response head hook (MOSN sender filters, BeforeSend).
    fn on_response(&self, _ctx: &mut ResponseCtx<'_>) -> Verdict {
        Verdict::Continue
    }

    /// Called once when the request is finished.
    fn on_log(&self, _record: &LogRecord<'_>) {}
}

/// A config error: why a filter config was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct FilterError {
    /// Human readable reason, starting with the path inside the config when there is one.
    pub reason: String,
}

impl FilterError {
    /// An error with this reason.
    pub fn new(reason: impl Into<String>) -> FilterError {
        FilterError {
            reason: reason.into(),
        }
    }

    /// Prefixes the reason with `prefix: `.
    pub fn prefixed(self, prefix: impl fmt::Display) -> FilterError {
        FilterError {
            reason: format!("{prefix}: {}", self.reason),
        }
    }
}

/// Builds a filter from its JSON `config` (`Value::Null` when the config is absent).
pub type FilterFactory =
    Arc<dyn Fn(&Value) -> Result<Arc<dyn StreamFilter>, FilterError> + Send + Sync>;

/// Filter factories by type name. Registration is explicit: no global constructors.
#[derive(Clone, Default)]
pub struct FilterRegistry {
    factories: HashMap<String, FilterFactory>,
}

impl fmt::Debug for FilterRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.factories.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("FilterRegistry")
            .field("types", &names)
            .finish()
    }
}

impl FilterRegistry {
    /// An empty registry.
    pub fn new() -> FilterRegistry {
        FilterRegistry::default()
    }

    /// A registry with every built-in filter: `fault`, `payload_limit`, `ip_access`,
    /// `local_rate_limit` (and its alias `local_ratelimit`), `transcoder`.
    pub fn with_builtins() -> FilterRegistry {
        let mut r = FilterRegistry::new();
        r.register(fault::TYPE, fault::factory);
        r.register(payload_limit::TYPE, payload_limit::factory);
        r.register(ip_access::TYPE, ip_access::factory);
        r.register(rate_limit::TYPE, rate_limit::factory);
        r.register(rate_limit::ALIAS, rate_limit::factory);
        r.register(transcoder::TYPE, transcoder::factory);
        r
    }

    /// Registers (or replaces) the factory for `type_name`.
    pub fn register<F>(&mut self, type_name: impl Into<String>, factory: F)
    where
        F: Fn(&Value) -> Result<Arc<dyn StreamFilter>, FilterError> + Send + Sync + 'static,
    {
        self.factories.insert(type_name.into(), Arc::new(factory));
    }

    /// True when `type_name` is registered.
    pub fn contains(&self, type_name: &str) -> bool {
        self.factories.contains_key(type_name)
    }

    /// The registered type names, sorted.
    pub fn types(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.factories.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The factory for `type_name`.
    pub fn factory(&self, type_name: &str) -> Option<&FilterFactory> {
        self.factories.get(type_name)
    }

    /// Builds one filter. The error names the type when it is unknown; config errors are
    /// returned as the factory wrote them.
    pub fn create(
        &self,
        type_name: &str,
        config: &Value,
    ) -> Result<Arc<dyn StreamFilter>, FilterError> {
        let factory = self
            .factory(type_name)
            .ok_or_else(|| self.unknown(type_name))?;
        factory(config)
    }

    fn unknown(&self, type_name: &str) -> FilterError {
        FilterError::new(format!(
            "unknown stream filter type {type_name:?} (known: {})",
            self.types().join(", ")
        ))
    }

    /// Compiles a route's `per_filter_config` for every registered type it names, for use
    /// with any chain. Keys that are not registered filter types are ignored (MOSN ignores
    /// them too; validation may warn with [`FilterRegistry::contains`]). Errors are prefixed
    /// with `per_filter_config.<key>`.
    pub fn compile_route_overrides(
        &self,
        per_filter_config: &Map<String, Value>,
    ) -> Result<RouteOverrides, FilterError> {
        let mut out = RouteOverrides::default();
        for (key, config) in per_filter_config {
            if let Some(factory) = self.factories.get(key) {
                let filter = factory(config)
                    .map_err(|e| e.prefixed(format_args!("per_filter_config.{key}")))?;
                out.insert(key, filter)?;
            }
        }
        Ok(out)
    }
}

/// A route's compiled `per_filter_config`: one filter instance per overridden type, keyed
/// by [`StreamFilter::name`]. Cheap to share (`Arc` inside); build it once per route.
#[derive(Clone, Debug, Default)]
pub struct RouteOverrides {
    entries: Vec<(&'static str, Arc<dyn StreamFilter>)>,
}

impl RouteOverrides {
    /// The override for the filter type `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn StreamFilter>> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f)
    }

    /// Number of overridden types.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is overridden (the engine may then pass `None`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, key: &str, filter: Arc<dyn StreamFilter>) -> Result<(), FilterError> {
        let name = filter.name();
        if self.get(name).is_some() {
            return Err(FilterError::new(format!(
                "per_filter_config.{key}: filter type {name:?} is configured twice (under two of its names)"
            )));
        }
        self.entries.push((name, filter));
        Ok(())
    }
}

#[derive(Clone)]
struct Entry {
    /// The type as written in the config (may be an alias).
    type_name: String,
    phase: Phase,
    filter: Arc<dyn StreamFilter>,
    /// The factory that built `filter`; used for route overrides (None: pushed directly).
    factory: Option<FilterFactory>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("type_name", &self.type_name)
            .field("phase", &self.phase)
            .field("filter", &self.filter)
            .finish()
    }
}

/// The stream filters of one listener, in config order.
#[derive(Clone, Debug, Default)]
pub struct FilterChain {
    entries: Vec<Entry>,
    /// Entry indexes per phase, ascending.
    by_phase: [Vec<usize>; 3],
}

impl FilterChain {
    /// An empty chain (every run continues).
    pub fn new() -> FilterChain {
        FilterChain::default()
    }

    /// Builds a chain from a listener's `stream_filters`, as `(type, config)` pairs
    /// (`config` is `Value::Null` when absent). Errors are prefixed with
    /// `stream_filters[i]` and, for config errors, the type.
    pub fn build<'v, I, S>(
        registry: &FilterRegistry,
        filters: I,
    ) -> Result<FilterChain, FilterError>
    where
        I: IntoIterator<Item = (S, &'v Value)>,
        S: AsRef<str>,
    {
        let mut chain = FilterChain::new();
        for (i, (type_name, config)) in filters.into_iter().enumerate() {
            let type_name = type_name.as_ref();
            if !registry.contains(type_name) {
                return Err(registry
                    .unknown(type_name)
                    .prefixed(format_args!("stream_filters[{i}].type")));
            }
            chain
                .push(registry, type_name, config)
                .map_err(|e| e.prefixed(format_args!("stream_filters[{i}] ({type_name})")))?;
        }
        Ok(chain)
    }

    /// Builds a chain from a JSON array `[{"type": ..., "config": {...}}, ...]`.
    pub fn from_json(
        registry: &FilterRegistry,
        stream_filters: &Value,
    ) -> Result<FilterChain, FilterError> {
        let list = match stream_filters {
            Value::Null => return Ok(FilterChain::new()),
            Value::Array(list) => list,
            _ => return Err(FilterError::new("stream_filters: must be an array")),
        };
        let mut pairs = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let obj = item.as_object().ok_or_else(|| {
                FilterError::new(format!("stream_filters[{i}]: must be an object"))
            })?;
            let type_name = match obj.get("type") {
                Some(Value::String(s)) => s.as_str(),
                _ => {
                    return Err(FilterError::new(format!(
                        "stream_filters[{i}].type: a string is required"
                    )))
                }
            };
            pairs.push((type_name, obj.get("config").unwrap_or(&Value::Null)));
        }
        FilterChain::build(registry, pairs)
    }

    /// Appends a filter built by `registry`.
    pub fn push(
        &mut self,
        registry: &FilterRegistry,
        type_name: &str,
        config: &Value,
    ) -> Result<(), FilterError> {
        let factory = registry
            .factory(type_name)
            .ok_or_else(|| registry.unknown(type_name))?
            .clone();
        let filter = factory(config)?;
        self.push_entry(type_name, filter, Some(factory));
        Ok(())
    }

    /// Appends an already built filter (it cannot be overridden per route).
    pub fn push_filter(&mut self, filter: Arc<dyn StreamFilter>) {
        let name = filter.name();
        self.push_entry(name, filter, None);
    }

    fn push_entry(
        &mut self,
        type_name: &str,
        filter: Arc<dyn StreamFilter>,
        factory: Option<FilterFactory>,
    ) {
        let phase = filter.phase();
        self.by_phase[phase.index()].push(self.entries.len());
        self.entries.push(Entry {
            type_name: type_name.to_owned(),
            phase,
            filter,
            factory,
        });
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the chain has no filter.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when some filter runs at `phase` (the engine may skip building a context).
    pub fn has_phase(&self, phase: Phase) -> bool {
        !self.by_phase[phase.index()].is_empty()
    }

    /// The filters' canonical names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|e| e.filter.name())
    }

    /// Compiles a route's `per_filter_config` for the filters of this chain: keys naming a
    /// type of this chain (as written in `stream_filters` or by canonical name) are built
    /// with that filter's factory; other keys are ignored. Errors are prefixed with
    /// `per_filter_config.<key>`. Same as [`FilterChain::compile_route_overrides_with`] over
    /// the map.
    pub fn compile_route_overrides(
        &self,
        per_filter_config: &Map<String, Value>,
    ) -> Result<RouteOverrides, FilterError> {
        self.compile_route_overrides_with(|key| per_filter_config.get(key))
    }

    /// Like [`FilterChain::compile_route_overrides`], asking `lookup` for the config of each
    /// filter type of the chain (first as written in `stream_filters`, then by canonical
    /// name). Fits the router's `route.per_filter_config(type)`, which falls back to the
    /// virtual host: `chain.compile_route_overrides_with(|t| route.per_filter_config(t))`.
    pub fn compile_route_overrides_with<'v, F>(
        &self,
        lookup: F,
    ) -> Result<RouteOverrides, FilterError>
    where
        F: Fn(&str) -> Option<&'v Value>,
    {
        let mut out = RouteOverrides::default();
        for entry in &self.entries {
            let Some(factory) = &entry.factory else {
                continue;
            };
            let name = entry.filter.name();
            if out.get(name).is_some() {
                continue; // the same type twice in the chain: one override serves both
            }
            let found = lookup(&entry.type_name)
                .map(|v| (entry.type_name.as_str(), v))
                .or_else(|| lookup(name).map(|v| (name, v)));
            let Some((key, config)) = found else {
                continue;
            };
            let filter =
                factory(config).map_err(|e| e.prefixed(format_args!("per_filter_config.{key}")))?;
            out.insert(key, filter)?;
        }
        Ok(out)
    }

    fn effective<'s>(
        &'s self,
        entry: &'s Entry,
        overrides: Option<&'s RouteOverrides>,
    ) -> &'s dyn StreamFilter {
        match overrides.and_then(|o| o.get(entry.filter.name())) {
            Some(f) => f.as_ref(),
            None => entry.filter.as_ref(),
        }
    }

    /// Runs the filters of `phase` from the first one.
    pub fn run_request(&self, phase: Phase, ctx: &mut RequestCtx<'_>) -> ChainVerdict {
        self.run_request_from(phase, 0, ctx)
    }

    /// Runs the filters of `phase` whose chain index is `>= from`, in order, and stops at
    /// the first verdict that is not `Continue`.
    pub fn run_request_from(
        &self,
        phase: Phase,
        from: usize,
        ctx: &mut RequestCtx<'_>,
    ) -> ChainVerdict {
        let list = &self.by_phase[phase.index()];
        let start = list.partition_point(|&i| i < from);
        let overrides = ctx.route_overrides;
        self.first_stop(list[start..].iter().copied(), overrides, |f| {
            f.on_request(ctx)
        })
    }

    /// Runs `hook` on the (route-overridden) filters at `indices`, in order, up to the first
    /// verdict that is not `Continue`.
    fn first_stop(
        &self,
        indices: impl Iterator<Item = usize>,
        route_overrides: Option<&RouteOverrides>,
        mut hook: impl FnMut(&dyn StreamFilter) -> Verdict,
    ) -> ChainVerdict {
        for i in indices {
            let verdict = hook(self.effective(&self.entries[i], route_overrides));
            if !verdict.is_continue() {
                return ChainVerdict {
                    verdict,
                    resume_from: i + 1,
                };
            }
        }
        ChainVerdict {
            verdict: Verdict::Continue,
            resume_from: self.entries.len(),
        }
    }

    /// True when some filter (as overridden for the route) inspects request bodies.
    pub fn inspects_request_body(&self, route_overrides: Option<&RouteOverrides>) -> bool {
        self.entries
            .iter()
            .any(|e| self.effective(e, route_overrides).inspects_request_body())
    }

    /// Runs every filter's body hook for one chunk (see [`StreamFilter::on_request_data`]).
    pub fn run_request_data(
        &self,
        request: RequestView<'_>,
        route_overrides: Option<&RouteOverrides>,
        received_so_far: u64,
        chunk_len: usize,
    ) -> ChainVerdict {
        self.first_stop(0..self.entries.len(), route_overrides, |f| {
            f.on_request_data(request, received_so_far, chunk_len)
        })
    }

    /// Runs every filter's response hook, in chain order.
    pub fn run_response(&self, ctx: &mut ResponseCtx<'_>) -> ChainVerdict {
        self.run_response_from(0, ctx)
    }

    /// Runs the response hooks of the filters whose chain index is `>= from`.
    pub fn run_response_from(&self, from: usize, ctx: &mut ResponseCtx<'_>) -> ChainVerdict {
        let overrides = ctx.route_overrides;
        self.first_stop(from..self.entries.len(), overrides, |f| f.on_response(ctx))
    }

    /// Runs every filter's log hook.
    pub fn run_log(&self, record: &LogRecord<'_>) {
        for entry in &self.entries {
            self.effective(entry, record.route_overrides).on_log(record);
        }
    }
}
