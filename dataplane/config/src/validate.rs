//! Raw model -> typed [`Config`], collecting every semantic error and warning.
//!
//! Paths are built with canonical field names (`servers[0].listeners[1].address`) and turned
//! into the user's spelling (`servers[0].listeners[1].ADDRESS`) through the map the decoder
//! recorded, so messages point at the text the user wrote.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::de::{self, describe, join_index, join_key, Ctx};
use crate::error::Diagnostic;
use crate::model::*;
use crate::raw::*;

// === canonical paths ===

/// A canonical path under construction.
#[derive(Clone, Debug, Default)]
struct P(String);

impl P {
    fn k(&self, key: &str) -> P {
        P(join_key(&self.0, key))
    }
    fn i(&self, index: usize) -> P {
        P(join_index(&self.0, index))
    }
}

/// A name that must exist once everything is built.
enum Reference {
    Cluster(P, String),
    Router(P, String),
}

// === builder ===

pub(crate) struct Builder<'c> {
    ctx: &'c Ctx,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    references: Vec<Reference>,
}

impl<'c> Builder<'c> {
    pub fn new(ctx: &'c Ctx, errors: Vec<Diagnostic>) -> Self {
        Builder {
            ctx,
            errors,
            warnings: Vec::new(),
            references: Vec::new(),
        }
    }

    /// (errors, warnings); decoder warnings come first.
    pub fn finish(self) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let mut warnings = self.ctx.warnings.borrow().clone();
        warnings.extend(self.warnings);
        (self.errors, warnings)
    }

    /// The user's spelling of a canonical path.
    fn user(&self, canon: &P) -> String {
        let spelling = self.ctx.spelling.borrow();
        let canon = canon.0.as_str();
        if spelling.is_empty() {
            return canon.to_string();
        }
        let mut end = canon.len();
        loop {
            if let Some(user) = canon.get(..end).and_then(|prefix| spelling.get(prefix)) {
                return format!("{user}{}", canon.get(end..).unwrap_or(""));
            }
            match canon.get(..end).and_then(|prefix| prefix.rfind(['.', '['])) {
                Some(i) if i > 0 => end = i,
                _ => return canon.to_string(),
            }
        }
    }

    fn err(&mut self, at: &P, message: impl Into<String>) {
        let d = Diagnostic::new(self.user(at), message);
        self.errors.push(d);
    }

    fn warn(&mut self, at: &P, message: impl Into<String>) {
        let d = Diagnostic::new(self.user(at), message);
        self.warnings.push(d);
    }

    /// Decodes a sub-document (a filter `config`) that sits at `at`.
    fn decode<T: DeserializeOwned + Default>(&mut self, value: &Value, at: &P) -> T {
        let base = de::Path::at(&at.0, &self.user(at));
        de::decode(value, &base, self.ctx, &mut self.errors)
    }

    // === top level ===

    pub fn config(&mut self, raw: RawConfig) -> Config {
        let root = P::default();
        let clusters = self.clusters(&raw.cluster_manager, &root.k("cluster_manager"));
        let cm = &raw.cluster_manager;
        let cm_path = root.k("cluster_manager");
        let cluster_manager = ClusterManagerOptions {
            tls_context: self.tls_opt(cm.tls_context.as_ref(), &cm_path.k("tls_context")),
            auto_discovery: cm.auto_discovery,
            registry_use_health_check: cm.registry_use_health_check,
        };
        if !cm.clusters_configs.is_empty() {
            self.err(
                &cm_path.k("clusters_configs"),
                "loading clusters from a directory is not supported; list them in `clusters`",
            );
        }

        let mut routers: Vec<(P, Router)> = Vec::new();
        let servers = raw
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| self.server(s, &root.k("servers").i(i), &mut routers))
            .collect::<Vec<_>>();

        self.check_listener_uniqueness(&servers);
        let routers = self.unique_routers(routers);
        self.check_references(&clusters, &routers);
        let traffic_capture = raw
            .traffic_capture
            .as_ref()
            .map(|t| self.traffic_capture(t, &root.k("traffic_capture")));
        if let Some(tc) = &traffic_capture {
            self.check_capture_against_backends(tc, &servers);
        }

        Config {
            servers,
            clusters,
            routers,
            admin: self.admin(raw.admin.as_ref(), &root.k("admin")),
            pid_file: (!raw.pid.is_empty()).then(|| PathBuf::from(&raw.pid)),
            disable_upgrade: raw.disable_upgrade || raw.close_graceful,
            inherit_old_mosnconfig: raw.inherit_old_mosnconfig,
            uds_dir: (!raw.uds_dir.is_empty()).then(|| PathBuf::from(&raw.uds_dir)),
            cluster_manager,
            sections: PassthroughSections {
                tracing: raw.tracing,
                metrics: raw.metrics,
                pprof: raw.pprof,
                static_resources: raw.static_resources,
                dynamic_resources: raw.dynamic_resources,
                service_registry: raw.service_registry,
                extends: raw.extends,
                third_part_codec: raw.third_part_codec,
                node: raw.node,
                plugin: raw.plugin,
                wasm_global_plugins: raw.wasm_global_plugins,
            },
            traffic_capture,
        }
    }

    /// Runs the `build` of a mosn-rs section that sits at `at` and reports its problems
    /// (paths relative to the section) as errors and warnings.
    fn section<T>(&mut self, at: &P, build: impl FnOnce(crate::capture::Report<'_>) -> T) -> T {
        let mut found = Vec::new();
        let built = build(&mut |rel, message, error| {
            found.push((rel.to_string(), message, error));
        });
        for (rel, message, error) in found {
            let p = match rel.as_str() {
                "" => at.clone(),
                _ => P(format!("{}.{rel}", at.0)),
            };
            if error {
                self.err(&p, message);
            } else {
                self.warn(&p, message);
            }
        }
        built
    }

    fn traffic_capture(
        &mut self,
        raw: &crate::capture::RawTrafficCapture,
        at: &P,
    ) -> crate::capture::TrafficCapture {
        self.section(at, |report| crate::capture::build(raw, report))
    }

    /// A top-level capture and a DPDK server exclude each other.
    fn check_capture_against_backends(
        &mut self,
        tc: &crate::capture::TrafficCapture,
        servers: &[Server],
    ) {
        if tc.mode == crate::capture::CaptureMode::None {
            return;
        }
        let root = P::default();
        if let Some(i) = servers
            .iter()
            .position(|s| s.network_backend.dpdk().is_some())
        {
            let server = self.user(&root.k("servers").i(i).k("network_backend"));
            self.err(
                &root.k("traffic_capture").k("mode"),
                format!("capture redirects kernel sockets; a DPDK server has none ({server})"),
            );
        }
    }

    /// The listeners of a DPDK server live on its userspace stack: TCP only, bound on the
    /// stack's address (or 0.0.0.0), no original destination to recover.
    fn check_dpdk_listeners(
        &mut self,
        backend: &crate::backend::DpdkBackend,
        listeners: &[Listener],
        at: &P,
    ) {
        let own = backend.address.addr();
        for (j, l) in listeners.iter().enumerate() {
            let lp = at.k("listeners").i(j);
            if l.network != Network::Tcp {
                self.err(
                    &lp.k("network"),
                    "the DPDK backend carries TCP only: a listener of a DPDK server must be tcp",
                );
            }
            if l.use_original_dst.is_some() {
                self.err(
                    &lp.k("use_original_dst"),
                    "a DPDK server has no kernel sockets to redirect or to ask for an original \
                     destination: remove use_original_dst",
                );
            }
            let own6 = backend.address6.map(|n| n.addr());
            let fits = match l.address.ip() {
                IpAddr::V4(ip) => ip == own || ip.is_unspecified(),
                // `::` takes IPv4 and IPv6 on the userspace stack, as 0.0.0.0 does.
                IpAddr::V6(ip) => ip.is_unspecified() || Some(ip) == own6,
            };
            // `own` is 0.0.0.0 only when the backend's address was invalid (already reported).
            if l.bind_port && !own.is_unspecified() && !fits {
                let also = own6.map(|a| format!(", {a}")).unwrap_or_default();
                self.err(
                    &lp.k("address"),
                    format!(
                        "a listener of a DPDK server binds on its userspace stack: use \
                         {own}{also}, 0.0.0.0 or ::"
                    ),
                );
            }
        }
    }

    fn admin(&mut self, raw: Option<&RawAdmin>, at: &P) -> Admin {
        let Some(raw) = raw else {
            return Admin::default();
        };
        let addr_path = at.k("address");
        if raw.address.pipe.is_some() {
            self.err(
                &addr_path.k("pipe"),
                "pipe (unix socket) admin addresses are not supported",
            );
        }
        let mut admin = Admin {
            address: DEFAULT_ADMIN_ADDRESS,
            access_log_path: raw.access_log_path.clone(),
        };
        let Some(sa) = raw.address.socket_address.as_ref() else {
            return admin;
        };
        let sa_path = addr_path.k("socket_address");
        let ip = if sa.address.is_empty() {
            DEFAULT_ADMIN_ADDRESS.ip()
        } else {
            match sa.address.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => {
                    self.err(
                        &sa_path.k("address"),
                        format!("invalid IP address {:?}", sa.address),
                    );
                    DEFAULT_ADMIN_ADDRESS.ip()
                }
            }
        };
        let port = match u16::try_from(sa.port_value) {
            Ok(p) => p,
            Err(_) => {
                self.err(
                    &sa_path.k("port_value"),
                    format!("port {} out of range 0..=65535", sa.port_value),
                );
                0
            }
        };
        if ip.is_unspecified() {
            self.warn(
                &sa_path.k("address"),
                "the admin API will listen on all interfaces; prefer 127.0.0.1",
            );
        }
        admin.address = SocketAddr::new(ip, port);
        admin
    }

    // === servers ===

    fn server(&mut self, raw: &RawServer, at: &P, routers: &mut Vec<(P, Router)>) -> Server {
        let default_log_level = self.log_level(&raw.default_log_level, &at.k("default_log_level"));
        let graceful_timeout = match raw.graceful_timeout.0 {
            Some(d) if !d.is_zero() => d,
            _ => DEFAULT_GRACEFUL_TIMEOUT,
        };
        let processor = self.processor(raw.processor.as_ref(), &at.k("processor"));
        let listeners: Vec<Listener> = raw
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| self.listener(l, &at.k("listeners").i(i), routers))
            .collect();
        let network_backend = match &raw.network_backend {
            None => crate::backend::NetworkBackend::Kernel,
            Some(b) => self.section(&at.k("network_backend"), |report| {
                crate::backend::build(b, report)
            }),
        };
        if let Some(dpdk) = network_backend.dpdk() {
            self.check_dpdk_listeners(dpdk, &listeners, at);
        }
        for (i, r) in raw.routers.iter().enumerate() {
            let p = at.k("routers").i(i);
            if let Some(router) = self.router(r, &p) {
                routers.push((p, router));
            }
        }
        Server {
            name: raw.mosn_server_name.clone(),
            default_log_path: LogPath::parse(&raw.default_log_path)
                .unwrap_or_else(LogPath::mosn_default),
            default_log_level: default_log_level.unwrap_or_default(),
            default_log_roller: raw.default_log_roller.clone(),
            graceful_timeout,
            processor,
            use_netpoll_mode: raw.use_netpoll_mode,
            listeners,
            network_backend,
        }
    }

    fn log_level(&mut self, text: &str, at: &P) -> Option<LogLevel> {
        if text.is_empty() {
            return None;
        }
        let level = LogLevel::parse(text);
        if level.is_none() {
            self.err(
                at,
                format!("invalid log level {text:?} (expected TRACE, DEBUG, INFO, WARN, ERROR or FATAL)"),
            );
        }
        level
    }

    /// `processor`: an integer or `"auto"`, as MOSN's `setMaxProcsWithProcessor`.
    fn processor(&mut self, raw: Option<&Value>, at: &P) -> usize {
        let auto = || {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        };
        let from_int = |n: i64| usize::try_from(n).ok().filter(|n| *n > 0);
        match raw {
            None => auto(),
            Some(Value::Number(n)) => {
                let int = n
                    .as_i64()
                    .or_else(|| n.as_u64().map(|_| i64::MAX))
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64));
                match int {
                    Some(i) if i > MAX_PROCESSOR => {
                        self.err(
                            at,
                            format!("processor {n} is too large (at most {MAX_PROCESSOR})"),
                        );
                        auto()
                    }
                    Some(i) => from_int(i).unwrap_or_else(auto),
                    None => {
                        self.err(
                            at,
                            format!(
                                "expected an integer or \"auto\", found {}",
                                describe(&Value::Number(n.clone()))
                            ),
                        );
                        auto()
                    }
                }
            }
            Some(Value::String(s)) => {
                if s.eq_ignore_ascii_case("auto") || s.is_empty() {
                    auto()
                } else if let Ok(i) = s.trim().parse::<i64>() {
                    if i > MAX_PROCESSOR {
                        self.err(
                            at,
                            format!("processor {i} is too large (at most {MAX_PROCESSOR})"),
                        );
                        return auto();
                    }
                    from_int(i).unwrap_or_else(auto)
                } else {
                    self.warn(
                        at,
                        format!("{s:?} is neither a number nor \"auto\"; using \"auto\""),
                    );
                    auto()
                }
            }
            Some(other) => {
                self.err(
                    at,
                    format!("expected an integer or \"auto\", found {}", describe(other)),
                );
                auto()
            }
        }
    }

    // === listeners ===

    fn listener(&mut self, raw: &RawListener, at: &P, routers: &mut Vec<(P, Router)>) -> Listener {
        let address = if raw.address.is_empty() {
            self.err(&at.k("address"), "address is required (ip:port)");
            unspecified_addr()
        } else {
            match raw.address.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.err(
                        &at.k("address"),
                        format!(
                            "invalid address {:?}: expected ip:port such as 127.0.0.1:2045",
                            raw.address
                        ),
                    );
                    unspecified_addr()
                }
            }
        };
        let network = match raw.network.to_ascii_lowercase().as_str() {
            "" | "tcp" => Network::Tcp,
            "udp" => Network::Udp,
            "unix" => {
                self.err(&at.k("network"), "unix listeners are not supported");
                Network::Tcp
            }
            other => {
                self.err(
                    &at.k("network"),
                    format!("unknown network {other:?} (expected tcp or udp)"),
                );
                Network::Tcp
            }
        };
        let use_original_dst = match &raw.use_original_dst {
            None | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(OriginalDst::Redirect),
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("redirect") => {
                Some(OriginalDst::Redirect)
            }
            Some(Value::String(s)) if s.eq_ignore_ascii_case("tproxy") => Some(OriginalDst::Tproxy),
            Some(other) => {
                self.err(
                    &at.k("use_original_dst"),
                    format!(
                        "expected \"redirect\", \"tproxy\" or a boolean, found {}",
                        describe(other)
                    ),
                );
                None
            }
        };
        let log_path = LogPath::parse(&raw.log_path);
        let log_level = self.log_level(&raw.log_level, &at.k("log_level"));

        let listener_filters = raw
            .listener_filters
            .iter()
            .enumerate()
            .map(|(i, f)| self.plain_filter(f, &at.k("listener_filters").i(i)))
            .collect();
        let stream_filters = raw
            .stream_filters
            .iter()
            .enumerate()
            .map(|(i, f)| self.plain_filter(f, &at.k("stream_filters").i(i)))
            .collect();

        let chains_path = at.k("filter_chains");
        for i in 1..raw.filter_chains.len() {
            self.warn(
                &chains_path.i(i),
                "only the first filter chain is used (as in MOSN); this one is ignored",
            );
        }
        let filter_chains = raw
            .filter_chains
            .first()
            .map(|c| self.filter_chain(c, &chains_path.i(0), routers))
            .into_iter()
            .collect();

        Listener {
            name: if raw.name.is_empty() {
                raw.address.clone()
            } else {
                raw.name.clone()
            },
            listener_type: raw.kind.clone(),
            network,
            address,
            bind_port: raw.bind_port.unwrap_or(true),
            reuseport: raw.reuseport,
            use_original_dst,
            inspector: raw.inspector,
            connection_idle_timeout: raw.connection_idle_timeout.0.filter(|d| !d.is_zero()),
            per_connection_buffer_limit_bytes: match raw.per_connection_buffer_limit_bytes {
                0 => DEFAULT_PER_CONNECTION_BUFFER_LIMIT_BYTES,
                n => n,
            },
            default_read_buffer_size: (raw.default_read_buffer_size != 0)
                .then_some(raw.default_read_buffer_size),
            log_path,
            log_level,
            access_logs: raw
                .access_logs
                .iter()
                .map(|a| AccessLog {
                    path: a.log_path.clone(),
                    format: a.log_format.clone(),
                })
                .collect(),
            handoff_restoreddestination: raw.handoff_restoreddestination,
            listener_filters,
            filter_chains,
            stream_filters,
        }
    }

    fn plain_filter(&mut self, raw: &RawFilter, at: &P) -> FilterConfig {
        if raw.kind.is_empty() {
            self.err(&at.k("type"), "filter type is required");
        }
        FilterConfig {
            kind: raw.kind.clone(),
            config: raw
                .config
                .clone()
                .unwrap_or_else(|| Value::Object(Map::new())),
        }
    }

    fn filter_chain(
        &mut self,
        raw: &RawFilterChain,
        at: &P,
        routers: &mut Vec<(P, Router)>,
    ) -> FilterChain {
        let tls_context = self.tls_opt(raw.tls_context.as_ref(), &at.k("tls_context"));
        let tls_context_set: Vec<TlsContext> = raw
            .tls_context_set
            .iter()
            .enumerate()
            .map(|(i, t)| self.tls(t, &at.k("tls_context_set").i(i)))
            .collect();
        if tls_context.is_some() && !tls_context_set.is_empty() {
            self.err(
                &at.k("tls_context_set"),
                "tls_context and tls_context_set are mutually exclusive",
            );
        }
        let mut filters = Vec::new();
        for (i, f) in raw.filters.iter().enumerate() {
            let fp = at.k("filters").i(i);
            let cp = fp.k("config");
            let config = f
                .config
                .clone()
                .unwrap_or_else(|| Value::Object(Map::new()));
            match f.kind.as_str() {
                "" => self.err(&fp.k("type"), "filter type is required"),
                "proxy" => {
                    let raw: RawProxy = self.decode(&config, &cp);
                    filters.push(NetworkFilter::Proxy(self.proxy(&raw, &cp)));
                }
                "tcp_proxy" => {
                    let raw: RawTcpProxy = self.decode(&config, &cp);
                    filters.push(NetworkFilter::TcpProxy(self.tcp_proxy(&raw, &cp)));
                }
                "connection_manager" => {
                    // Legacy: the filter is a router table; MOSN >= 0.11 reads it from
                    // filter_chains[0] for compatibility and ignores the filter itself.
                    let raw: RawRouterConfig = self.decode(&config, &cp);
                    if let Some(router) = self.router(&raw, &cp) {
                        routers.push((cp, router));
                    }
                }
                kind => filters.push(NetworkFilter::Other {
                    kind: kind.to_string(),
                    config,
                }),
            }
        }
        FilterChain {
            filter_chain_match: raw.filter_chain_match.clone(),
            tls_context,
            tls_context_set,
            filters,
        }
    }

    fn check_listener_uniqueness(&mut self, servers: &[Server]) {
        let mut names: HashMap<&str, P> = HashMap::new();
        let mut addrs: HashMap<(Network, SocketAddr), P> = HashMap::new();
        for (si, server) in servers.iter().enumerate() {
            for (li, l) in server.listeners.iter().enumerate() {
                let lp = P::default().k("servers").i(si).k("listeners").i(li);
                // A name equal to the address (also the default name) is covered by the
                // address check below.
                if l.name != l.address.to_string() {
                    if let Some(first) = names.get(l.name.as_str()) {
                        let first = self.user(first);
                        self.err(
                            &lp.k("name"),
                            format!("duplicate listener name {:?} (also {first})", l.name),
                        );
                    } else {
                        names.insert(&l.name, lp.clone());
                    }
                }
                if l.address.port() == 0 {
                    continue;
                }
                if let Some(first) = addrs.get(&(l.network, l.address)) {
                    let first = self.user(first);
                    self.err(
                        &lp.k("address"),
                        format!("duplicate listener address {} (also {first})", l.address),
                    );
                } else {
                    addrs.insert((l.network, l.address), lp);
                }
            }
        }
    }

    // === network filters ===

    fn proxy(&mut self, raw: &RawProxy, at: &P) -> ProxyFilter {
        let extend_config = raw.extend_config.clone().unwrap_or_default();
        let mut downstream_protocols = Vec::new();
        for part in raw.downstream_protocol.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            if let Some(p) =
                self.protocol(part, Some(&extend_config), at, &at.k("downstream_protocol"))
            {
                if !downstream_protocols.contains(&p) {
                    downstream_protocols.push(p);
                }
            }
        }
        if downstream_protocols.is_empty() && raw.downstream_protocol.trim().is_empty() {
            downstream_protocols.push(Protocol::Auto);
        }
        let upstream_protocol = if raw.upstream_protocol.trim().is_empty() {
            None
        } else {
            self.protocol(
                raw.upstream_protocol.trim(),
                Some(&extend_config),
                at,
                &at.k("upstream_protocol"),
            )
        };
        if raw.router_config_name.is_empty() {
            self.err(
                &at.k("router_config_name"),
                "router_config_name is required",
            );
        } else {
            self.references.push(Reference::Router(
                at.k("router_config_name"),
                raw.router_config_name.clone(),
            ));
        }
        ProxyFilter {
            name: raw.name.clone(),
            downstream_protocols,
            upstream_protocol,
            router_config_name: raw.router_config_name.clone(),
            router_handler_name: raw.router_handler_name.clone(),
            validate_clusters: raw.validate_clusters,
            fallback_for_unknown_protocol: raw.fallback_for_unknown_protocol,
            concurrency_num: raw.concurrency_num,
            extend_config,
        }
    }

    /// Parses one protocol name; legacy `X` takes `extend_config.sub_protocol`.
    fn protocol(
        &mut self,
        name: &str,
        extend_config: Option<&Map<String, Value>>,
        filter_at: &P,
        at: &P,
    ) -> Option<Protocol> {
        if name.eq_ignore_ascii_case("x") {
            let sub = extend_config.and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("sub_protocol"))
                    .map(|(_, v)| v)
            });
            return match sub {
                Some(Value::String(s)) if !s.is_empty() => match Protocol::parse(s) {
                    Some(p) => Some(p),
                    None => {
                        self.err(
                            &filter_at.k("extend_config").k("sub_protocol"),
                            format!("unknown sub protocol {s:?} (known: {})", protocol_list()),
                        );
                        None
                    }
                },
                _ => {
                    self.err(
                        at,
                        "protocol \"X\" needs extend_config.sub_protocol (or name the codec directly, e.g. \"bolt\")",
                    );
                    None
                }
            };
        }
        let p = Protocol::parse(name);
        if p.is_none() {
            self.err(
                at,
                format!("unknown protocol {name:?} (known: {})", protocol_list()),
            );
        }
        p
    }

    fn tcp_proxy(&mut self, raw: &RawTcpProxy, at: &P) -> TcpProxy {
        let cluster = (!raw.cluster.is_empty()).then(|| raw.cluster.clone());
        if let Some(c) = &cluster {
            self.references
                .push(Reference::Cluster(at.k("cluster"), c.clone()));
        }
        let mut routes = Vec::new();
        for (i, r) in raw.routes.iter().enumerate() {
            let rp = at.k("routes").i(i);
            if r.cluster.is_empty() {
                self.err(&rp.k("cluster"), "route cluster is required");
            } else {
                self.references
                    .push(Reference::Cluster(rp.k("cluster"), r.cluster.clone()));
            }
            routes.push(TcpRoute {
                cluster: r.cluster.clone(),
                source_addrs: self.cidrs(&r.source_addrs, &rp.k("source_addrs")),
                destination_addrs: self.cidrs(&r.destination_addrs, &rp.k("destination_addrs")),
                source_port: self.port_range(r.source_port.as_ref(), &rp.k("source_port")),
                destination_port: self
                    .port_range(r.destination_port.as_ref(), &rp.k("destination_port")),
            });
        }
        if cluster.is_none() && raw.routes.is_empty() {
            self.err(at, "tcp_proxy needs `cluster` or `routes`");
        }
        TcpProxy {
            stat_prefix: raw.stat_prefix.clone(),
            cluster,
            routes,
            idle_timeout: raw.idle_timeout.0.filter(|d| !d.is_zero()),
            max_connect_attempts: raw.max_connect_attempts.max(1),
        }
    }

    fn cidrs(&mut self, raw: &[Value], at: &P) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for (i, v) in raw.iter().enumerate() {
            let p = at.i(i);
            let net = match v {
                Value::String(s) => parse_cidr(s).map_err(|e| (p.clone(), e)),
                Value::Object(_) => {
                    let c: RawCidr = self.decode(v, &p);
                    match c.address.parse::<IpAddr>() {
                        Err(_) => Err((
                            p.k("address"),
                            format!("invalid CIDR: {:?} is not an IP address", c.address),
                        )),
                        Ok(ip) => u8::try_from(c.length)
                            .ok()
                            .and_then(|len| ipnet::IpNet::new(ip, len).ok())
                            .ok_or_else(|| {
                                (
                                    p.k("length"),
                                    format!("invalid CIDR: prefix length {} is too long for {ip}", c.length),
                                )
                            }),
                    }
                }
                other => Err((
                    p.clone(),
                    format!(
                        "expected a CIDR string such as \"10.0.0.0/8\" or {{\"address\", \"length\"}}, found {}",
                        describe(other)
                    ),
                )),
            };
            match net {
                Ok(n) => out.push(n.trunc()),
                Err((p, msg)) => self.err(&p, msg),
            }
        }
        out
    }

    fn port_range(&mut self, raw: Option<&Value>, at: &P) -> Option<PortRange> {
        let text = match raw? {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                self.err(
                    at,
                    format!(
                        "expected a port or port range such as \"1000-2000\", found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        if text.is_empty() {
            return None;
        }
        let parsed = match text.split_once('-') {
            Some((a, b)) => a
                .trim()
                .parse::<u16>()
                .ok()
                .zip(b.trim().parse::<u16>().ok()),
            None => text.parse::<u16>().ok().map(|p| (p, p)),
        };
        match parsed {
            Some((start, end)) if start <= end => Some(PortRange { start, end }),
            _ => {
                self.err(
                    at,
                    format!("invalid port range {text:?} (expected \"PORT\" or \"FIRST-LAST\" within 0..=65535)"),
                );
                None
            }
        }
    }

    // === routers ===

    fn router(&mut self, raw: &RawRouterConfig, at: &P) -> Option<Router> {
        if !raw.router_configs.is_empty() {
            self.err(
                &at.k("router_configs"),
                "loading virtual hosts from a directory is not supported; list them in `virtual_hosts`",
            );
        }
        let name_ok = !raw.router_config_name.is_empty();
        if !name_ok {
            self.err(
                &at.k("router_config_name"),
                "router_config_name is required",
            );
        }
        let mut default_vhost: Option<P> = None;
        let mut virtual_hosts = Vec::new();
        for (i, vh) in raw.virtual_hosts.iter().enumerate() {
            let vp = at.k("virtual_hosts").i(i);
            if vh.domains.iter().any(|d| d == "*") {
                if let Some(first) = &default_vhost {
                    let first = self.user(first);
                    self.err(
                        &vp.k("domains"),
                        format!("more than one default virtual host (domain \"*\"; also {first})"),
                    );
                } else {
                    default_vhost = Some(vp.clone());
                }
            }
            let routes = vh
                .routers
                .iter()
                .enumerate()
                .map(|(j, r)| self.route(r, &vp.k("routers").i(j)))
                .collect();
            virtual_hosts.push(VirtualHost {
                name: vh.name.clone(),
                domains: vh.domains.clone(),
                routes,
                require_tls: vh.require_tls.clone(),
                virtual_clusters: vh.virtual_clusters.clone(),
                per_filter_config: vh.per_filter_config.clone(),
                request_headers_to_add: self
                    .header_options(&vh.request_headers_to_add, &vp.k("request_headers_to_add")),
                request_headers_to_remove: vh.request_headers_to_remove.clone(),
                response_headers_to_add: self.header_options(
                    &vh.response_headers_to_add,
                    &vp.k("response_headers_to_add"),
                ),
                response_headers_to_remove: vh.response_headers_to_remove.clone(),
            });
        }
        let router = Router {
            name: raw.router_config_name.clone(),
            virtual_hosts,
            request_headers_to_add: self
                .header_options(&raw.request_headers_to_add, &at.k("request_headers_to_add")),
            request_headers_to_remove: raw.request_headers_to_remove.clone(),
            response_headers_to_add: self.header_options(
                &raw.response_headers_to_add,
                &at.k("response_headers_to_add"),
            ),
            response_headers_to_remove: raw.response_headers_to_remove.clone(),
        };
        name_ok.then_some(router)
    }

    fn header_options(&mut self, raw: &[RawHeaderValueOption], at: &P) -> Vec<HeaderValueOption> {
        raw.iter()
            .enumerate()
            .map(|(i, h)| {
                if h.header.key.is_empty() {
                    self.err(&at.i(i).k("header").k("key"), "header key is empty");
                }
                HeaderValueOption {
                    key: h.header.key.clone(),
                    value: h.header.value.clone(),
                    append: h.append.unwrap_or(true),
                }
            })
            .collect()
    }

    fn regex(&mut self, pattern: &str, at: &P) {
        if let Err(e) = regex::Regex::new(pattern) {
            self.err(
                at,
                format!("invalid regex {pattern:?}: {}", regex_reason(&e)),
            );
        }
    }

    fn route(&mut self, raw: &RawRoute, at: &P) -> Route {
        let mp = at.k("match");
        let m = &raw.matcher;
        if !m.regex.is_empty() {
            self.regex(&m.regex, &mp.k("regex"));
        }
        let headers = m
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if h.regex {
                    self.regex(&h.value, &mp.k("headers").i(i).k("value"));
                }
                HeaderMatcher {
                    name: h.name.clone(),
                    value: h.value.clone(),
                    regex: h.regex,
                }
            })
            .collect();
        let variables = m
            .variables
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if let Some(re) = &v.regex {
                    self.regex(re, &mp.k("variables").i(i).k("regex"));
                }
                VariableMatcher {
                    name: v.name.clone(),
                    value: v.value.clone(),
                    regex: v.regex.clone(),
                    model: v.model.clone(),
                }
            })
            .collect();
        let query_parameters = m
            .query_parameters
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let qp = mp.k("query_parameters").i(i);
                if q.name.is_empty() {
                    self.err(&qp.k("name"), "query parameter name is empty");
                }
                if q.regex {
                    self.regex(&q.value, &qp.k("value"));
                }
                QueryParameterMatcher {
                    name: q.name.clone(),
                    value: q.value.clone(),
                    regex: q.regex,
                }
            })
            .collect();
        let matcher = RouteMatch {
            prefix: m.prefix.clone(),
            path: m.path.clone(),
            regex: m.regex.clone(),
            case_sensitive: m.case_sensitive,
            headers,
            variables,
            query_parameters,
            dsl_expressions: m.dsl_expressions.clone(),
            runtime: m.runtime.clone(),
        };

        let route = self.route_action(&raw.route, &at.k("route"));

        let redirect = raw.redirect.as_ref().map(|r| {
            let rp = at.k("redirect");
            let code = match r.response_code {
                0 => 301,
                c @ (301 | 302 | 303 | 307 | 308) => c as u16,
                c => {
                    self.err(
                        &rp.k("response_code"),
                        format!("redirect response_code {c} is not one of 301, 302, 303, 307, 308"),
                    );
                    301
                }
            };
            RedirectAction {
                response_code: code,
                path_redirect: r.path_redirect.clone(),
                host_redirect: r.host_redirect.clone(),
                scheme_redirect: r.scheme_redirect.clone(),
            }
        });
        let direct_response = raw.direct_response.as_ref().map(|d| {
            let status = match u16::try_from(d.status) {
                Ok(s) if (100..=599).contains(&s) => s,
                _ => {
                    self.err(
                        &at.k("direct_response").k("status"),
                        format!("status {} out of range 100..=599", d.status),
                    );
                    200
                }
            };
            DirectResponseAction {
                status,
                body: d.body.clone(),
            }
        });

        let has_target = !route.cluster_name.is_empty()
            || !route.cluster_header.is_empty()
            || !route.cluster_variable.is_empty()
            || !route.weighted_clusters.is_empty();
        if !has_target && redirect.is_none() && direct_response.is_none() {
            self.err(
                &at.k("route"),
                "route has no cluster_name, cluster_header, cluster_variable, weighted_clusters, redirect or direct_response",
            );
        }

        Route {
            matcher,
            route,
            redirect,
            direct_response,
            metadata: self.metadata(raw.metadata.as_ref(), &at.k("metadata")),
            per_filter_config: raw.per_filter_config.clone(),
            decorator: raw.decorator.clone(),
            mirror_policies: self.mirror_policies(
                raw.request_mirror_policies.as_ref(),
                &at.k("request_mirror_policies"),
            ),
        }
    }

    /// `request_mirror_policies`: one object (MOSN) or a list of them.
    fn mirror_policies(&mut self, raw: Option<&Value>, at: &P) -> Vec<RequestMirrorPolicy> {
        let entries: Vec<(&Value, P)> = match raw {
            None => Vec::new(),
            Some(v @ Value::Object(_)) => vec![(v, at.clone())],
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (v, at.i(i)))
                .collect(),
            Some(other) => {
                self.err(
                    at,
                    format!(
                        "expected an object or a list of objects, found {}",
                        describe(other)
                    ),
                );
                Vec::new()
            }
        };
        entries
            .into_iter()
            .map(|(value, p)| {
                let raw: RawMirrorPolicy = self.decode(value, &p);
                if raw.cluster.is_empty() {
                    self.err(&p.k("cluster"), "mirror cluster is required");
                } else {
                    self.references
                        .push(Reference::Cluster(p.k("cluster"), raw.cluster.clone()));
                }
                if raw.percent > 100 {
                    self.err(
                        &p.k("percent"),
                        format!("percent {} out of range 0..=100", raw.percent),
                    );
                }
                RequestMirrorPolicy {
                    cluster: raw.cluster,
                    percent: raw.percent,
                }
            })
            .collect()
    }

    fn route_action(&mut self, raw: &RawRouteAction, at: &P) -> RouteAction {
        if !raw.cluster_name.is_empty() {
            self.references.push(Reference::Cluster(
                at.k("cluster_name"),
                raw.cluster_name.clone(),
            ));
        }
        let wp = at.k("weighted_clusters");
        let mut total: u64 = 0;
        let mut weighted_clusters = Vec::new();
        for (i, w) in raw.weighted_clusters.iter().enumerate() {
            let cp = wp.i(i).k("cluster");
            if w.cluster.name.is_empty() {
                self.err(&cp.k("name"), "weighted cluster name is required");
            } else {
                self.references
                    .push(Reference::Cluster(cp.k("name"), w.cluster.name.clone()));
            }
            if w.cluster.weight > MAX_CLUSTER_WEIGHT {
                self.err(
                    &cp.k("weight"),
                    format!(
                        "weight {} out of range 0..={MAX_CLUSTER_WEIGHT}",
                        w.cluster.weight
                    ),
                );
            }
            total += u64::from(w.cluster.weight);
            weighted_clusters.push(WeightedCluster {
                name: w.cluster.name.clone(),
                weight: w.cluster.weight,
                metadata_match: self
                    .metadata(w.cluster.metadata_match.as_ref(), &cp.k("metadata_match")),
            });
        }
        if !weighted_clusters.is_empty() && total == 0 {
            self.err(
                &wp,
                "weights sum to 0; at least one weight must be positive",
            );
        }
        let regex_rewrite = raw.regex_rewrite.as_ref().map(|r| {
            let pp = at.k("regex_rewrite").k("pattern").k("regex");
            if r.pattern.regex.is_empty() {
                self.err(&pp, "regex_rewrite pattern is empty");
            } else {
                self.regex(&r.pattern.regex, &pp);
            }
            RegexRewrite {
                pattern: r.pattern.regex.clone(),
                substitution: r.substitution.clone(),
            }
        });
        let upstream_protocol = if raw.upstream_protocol.is_empty() {
            None
        } else {
            self.protocol(&raw.upstream_protocol, None, at, &at.k("upstream_protocol"))
        };
        RouteAction {
            cluster_name: raw.cluster_name.clone(),
            cluster_header: raw.cluster_header.clone(),
            cluster_variable: raw.cluster_variable.clone(),
            weighted_clusters,
            metadata_match: self.metadata(raw.metadata_match.as_ref(), &at.k("metadata_match")),
            timeout: raw.timeout.0.filter(|d| !d.is_zero()),
            retry_policy: raw.retry_policy.as_ref().map(|r| RetryPolicy {
                retry_on: r.retry_on,
                retry_timeout: r.retry_timeout.0.filter(|d| !d.is_zero()),
                num_retries: r.num_retries,
                status_codes: r.status_codes.clone(),
            }),
            prefix_rewrite: raw.prefix_rewrite.clone(),
            regex_rewrite,
            host_rewrite: raw.host_rewrite.clone(),
            auto_host_rewrite: raw.auto_host_rewrite,
            auto_host_rewrite_header: raw.auto_host_rewrite_header.clone(),
            upstream_protocol,
            hash_policy: raw.hash_policy.clone(),
            request_headers_to_add: self
                .header_options(&raw.request_headers_to_add, &at.k("request_headers_to_add")),
            request_headers_to_remove: raw.request_headers_to_remove.clone(),
            response_headers_to_add: self.header_options(
                &raw.response_headers_to_add,
                &at.k("response_headers_to_add"),
            ),
            response_headers_to_remove: raw.response_headers_to_remove.clone(),
        }
    }

    /// Flattens `filter_metadata."mosn.lb"` into string pairs (keys verbatim).
    fn metadata(&mut self, raw: Option<&RawMetadata>, at: &P) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(raw) = raw else {
            return out;
        };
        let lb = at.k("filter_metadata").k("mosn.lb");
        for (k, v) in &raw.filter_metadata.mosn_lb {
            match v {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                Value::Number(n) => {
                    out.insert(k.clone(), n.to_string());
                }
                Value::Bool(b) => {
                    out.insert(k.clone(), b.to_string());
                }
                other => self.warn(
                    &lb.k(k),
                    format!(
                        "metadata values must be strings, found {}; ignored",
                        describe(other)
                    ),
                ),
            }
        }
        out
    }

    fn unique_routers(&mut self, routers: Vec<(P, Router)>) -> Vec<Router> {
        let mut out: Vec<(P, Router)> = Vec::new();
        for (p, r) in routers {
            match out.iter().find(|(_, o)| o.name == r.name) {
                Some((_, o)) if *o == r => {} // the same table declared twice: keep one
                Some((first, _)) => {
                    let first = self.user(first);
                    self.err(
                        &p.k("router_config_name"),
                        format!("duplicate router_config_name {:?} (also {first})", r.name),
                    );
                }
                None => out.push((p, r)),
            }
        }
        out.into_iter().map(|(_, r)| r).collect()
    }

    fn check_references(&mut self, clusters: &[Cluster], routers: &[Router]) {
        let references = std::mem::take(&mut self.references);
        for r in references {
            match r {
                Reference::Cluster(p, name) => {
                    if !clusters.iter().any(|c| c.name == name) {
                        self.err(&p, format!("cluster {name:?} does not exist"));
                    }
                }
                Reference::Router(p, name) => {
                    if !routers.iter().any(|r| r.name == name) {
                        self.err(&p, format!("router {name:?} does not exist"));
                    }
                }
            }
        }
    }

    // === TLS ===

    fn tls_opt(&mut self, raw: Option<&RawTls>, at: &P) -> Option<TlsContext> {
        let t = self.tls(raw?, at);
        (t != TlsContext::default()).then_some(t)
    }

    fn tls(&mut self, raw: &RawTls, at: &P) -> TlsContext {
        let mut version = |text: &str, key: &str| -> Option<TlsVersion> {
            if text.is_empty() {
                return None;
            }
            let v = TlsVersion::parse(text);
            if v.is_none() {
                self.err(
                    &at.k(key),
                    format!("unknown TLS version {text:?} (expected tls_auto, tlsv1_0, tlsv1_1, tlsv1_2 or tlsv1_3)"),
                );
            }
            v
        };
        let min_version = version(&raw.min_version, "min_version");
        let max_version = version(&raw.max_version, "max_version");
        TlsContext {
            enabled: raw.status,
            kind: raw.kind.clone(),
            server_name: raw.server_name.clone(),
            ca_cert: raw.ca_cert.clone(),
            cert_chain: raw.cert_chain.clone(),
            private_key: raw.private_key.clone(),
            verify_client: raw.verify_client,
            require_client_cert: raw.require_client_cert,
            insecure_skip: raw.insecure_skip,
            cipher_suites: raw.cipher_suites.clone(),
            ecdh_curves: raw.ecdh_curves.clone(),
            min_version,
            max_version,
            alpn: raw.alpn.clone(),
            ticket: raw.ticket.clone(),
            fall_back: raw.fall_back,
            extend_verify: raw.extend_verify.clone(),
            sds_source: raw.sds_source.clone(),
            callbacks: raw.callbacks.clone(),
        }
    }

    // === clusters ===

    fn clusters(&mut self, raw: &RawClusterManager, at: &P) -> Vec<Cluster> {
        let mut out: Vec<Cluster> = Vec::new();
        let mut seen: HashMap<String, P> = HashMap::new();
        for (i, c) in raw.clusters.iter().enumerate() {
            let cp = at.k("clusters").i(i);
            let cluster = self.cluster(c, &cp);
            if cluster.name.is_empty() {
                self.err(&cp.k("name"), "cluster name is empty");
            } else if let Some(first) = seen.get(&cluster.name) {
                let first = self.user(first);
                self.err(
                    &cp.k("name"),
                    format!("duplicate cluster name {:?} (also {first})", cluster.name),
                );
                continue;
            } else {
                seen.insert(cluster.name.clone(), cp.clone());
            }
            out.push(cluster);
        }
        out
    }

    fn cluster(&mut self, raw: &RawCluster, at: &P) -> Cluster {
        let kind = match raw.kind.to_ascii_uppercase().as_str() {
            "" | "SIMPLE" => ClusterType::Simple,
            "STRICT_DNS" => ClusterType::StrictDns,
            "ORIGINAL_DST" => ClusterType::OriginalDst,
            other => {
                self.warn(
                    &at.k("type"),
                    format!("cluster type {other:?} is not supported; using SIMPLE (as MOSN does)"),
                );
                ClusterType::Simple
            }
        };
        let mut lb_type = if raw.lb_type.is_empty() {
            LbType::RoundRobin
        } else {
            match LbType::parse(&raw.lb_type) {
                Some(l) => l,
                None => {
                    self.warn(
                        &at.k("lb_type"),
                        format!(
                            "UNKNOWN LOAD BALANCER {:?}: falling back to LB_ROUNDROBIN (as MOSN does); known: {}",
                            raw.lb_type,
                            LbType::ALL.map(LbType::as_str).join(", ")
                        ),
                    );
                    LbType::RoundRobin
                }
            }
        };
        if kind == ClusterType::OriginalDst && lb_type != LbType::OriginalDst {
            if !raw.lb_type.is_empty() {
                self.warn(
                    &at.k("lb_type"),
                    format!(
                        "ORIGINAL_DST clusters always use LB_ORIGINAL_DST; {:?} ignored",
                        raw.lb_type
                    ),
                );
            }
            lb_type = LbType::OriginalDst;
        }
        if raw.circuit_breakers.len() > 1 {
            self.warn(
                &at.k("circuit_breakers").i(1),
                "only the first circuit_breakers entry is used (as in MOSN)",
            );
        }
        let dns_lookup_family = match raw.dns_lookup_family.to_ascii_uppercase().as_str() {
            "" | "AUTO" | "ALL" => DnsLookupFamily::Auto,
            "V4_ONLY" => DnsLookupFamily::V4Only,
            "V6_ONLY" => DnsLookupFamily::V6Only,
            other => {
                self.err(
                    &at.k("dns_lookup_family"),
                    format!("unknown dns_lookup_family {other:?} (expected V4_ONLY or V6_ONLY)"),
                );
                DnsLookupFamily::Auto
            }
        };
        let health_check = match &raw.health_check {
            None => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(other) => {
                self.err(
                    &at.k("health_check"),
                    format!("expected an object, found {}", describe(other)),
                );
                None
            }
        };
        let lb_subset_config = raw.lb_subset_config.as_ref().map(|s| {
            let mut policy = s.fall_back_policy;
            if policy > 2 {
                self.warn(
                    &at.k("lb_subset_config").k("fall_back_policy"),
                    format!("fall_back_policy {policy} is not 0, 1 or 2; using 0 (NO_FALLBACK)"),
                );
                policy = 0;
            }
            LbSubsetConfig {
                fall_back_policy: policy,
                default_subset: s.default_subset.clone(),
                subset_selectors: s.subset_selectors.clone(),
            }
        });
        let hosts = raw
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| self.host(h, kind, &at.k("hosts").i(i)))
            .collect();
        Cluster {
            name: raw.name.clone(),
            kind,
            sub_type: raw.sub_type.clone(),
            lb_type,
            max_request_per_conn: match raw.max_request_per_conn {
                0 => DEFAULT_MAX_REQUEST_PER_CONN,
                n => n,
            },
            conn_buffer_limit_bytes: match raw.conn_buffer_limit_bytes {
                0 => DEFAULT_CONN_BUFFER_LIMIT_BYTES,
                n => n,
            },
            connect_timeout: nonzero_or(raw.connect_timeout.0, DEFAULT_CONNECT_TIMEOUT),
            idle_timeout: raw.idle_timeout.0.filter(|d| !d.is_zero()),
            circuit_breakers: raw
                .circuit_breakers
                .iter()
                .map(|t| CircuitBreakers {
                    max_connections: t.max_connections,
                    max_pending_requests: t.max_pending_requests,
                    max_requests: t.max_requests,
                    max_retries: t.max_retries,
                })
                .collect(),
            health_check,
            outlier_detection: raw.outlier_detection.clone(),
            spec: raw.spec.clone(),
            lb_subset_config,
            original_dst_lb_config: raw.original_dst_lb_config.as_ref().map(|o| {
                OriginalDstLbConfig {
                    use_header: o.use_header,
                    header_name: o.header_name.clone(),
                    replace_local: o.replace_local,
                }
            }),
            cluster_manager_tls: raw.cluster_manager_tls,
            tls_context: self.tls_opt(raw.tls_context.as_ref(), &at.k("tls_context")),
            dns_refresh_rate: nonzero_or(raw.dns_refresh_rate.0, DEFAULT_DNS_REFRESH_RATE),
            respect_dns_ttl: raw.respect_dns_ttl,
            dns_lookup_family,
            dns_resolvers: raw.dns_resolvers.as_ref().map(|d| DnsResolvers {
                servers: d.servers.clone(),
                search: d.search.clone(),
                port: d.port.clone(),
                ndots: d.ndots,
                timeout: d.timeout,
                attempts: d.attempts,
            }),
            dns_resolver_file: raw.dns_resolver_file.clone(),
            dns_resolver_port: raw.dns_resolver_port.clone(),
            mark: raw.mark,
            lbconfig: raw.lbconfig.clone(),
            keepalive: raw.keepalive.clone(),
            slow_start: raw.slow_start.clone(),
            cluster_pool_enable: raw.cluster_pool_enable,
            hosts,
        }
    }

    fn host(&mut self, raw: &RawHost, kind: ClusterType, at: &P) -> Host {
        let ap = at.k("address");
        if raw.address.is_empty() {
            self.err(&ap, "host address is required");
        } else {
            match kind {
                ClusterType::Simple | ClusterType::OriginalDst => {
                    if raw.address.parse::<SocketAddr>().is_err() {
                        self.err(
                            &ap,
                            format!(
                                "invalid address {:?}: expected ip:port such as 127.0.0.1:8080",
                                raw.address
                            ),
                        );
                    }
                }
                ClusterType::StrictDns => {
                    if let Err(reason) = check_host_port(&raw.address) {
                        self.err(
                            &ap,
                            format!(
                                "STRICT_DNS host must be host:port, got {:?} ({reason})",
                                raw.address
                            ),
                        );
                    }
                }
            }
        }
        let weight = match raw.weight {
            None => MIN_HOST_WEIGHT,
            Some(w) if (MIN_HOST_WEIGHT..=MAX_HOST_WEIGHT).contains(&w) => w,
            Some(w) => {
                let clamped = w.clamp(MIN_HOST_WEIGHT, MAX_HOST_WEIGHT);
                self.warn(
                    &at.k("weight"),
                    format!("weight {w} out of range {MIN_HOST_WEIGHT}..={MAX_HOST_WEIGHT}; clamped to {clamped}"),
                );
                clamped
            }
        };
        Host {
            address: raw.address.clone(),
            hostname: raw.hostname.clone(),
            weight,
            metadata: self.metadata(raw.metadata.as_ref(), &at.k("metadata")),
            tls_disable: raw.tls_disable,
        }
    }
}

// === helpers ===

/// Largest accepted explicit `processor`.
const MAX_PROCESSOR: i64 = 1024;

fn unspecified_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn nonzero_or(d: Option<Duration>, default: Duration) -> Duration {
    d.filter(|d| !d.is_zero()).unwrap_or(default)
}

fn protocol_list() -> String {
    Protocol::ALL
        .iter()
        .map(|p| p.as_str())
        .chain(std::iter::once("X (+ extend_config.sub_protocol)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"10.0.0.0/8"`, or a bare IP meaning a single address.
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if text.contains('/') {
        text.parse::<ipnet::IpNet>()
            .map_err(|_| format!("invalid CIDR {text:?} (expected e.g. \"10.0.0.0/8\")"))
    } else {
        text.parse::<IpAddr>()
            .map(ipnet::IpNet::from)
            .map_err(|_| format!("invalid CIDR {text:?} (expected e.g. \"10.0.0.0/8\")"))
    }
}

/// Checks `host:port` / `[v6]:port`.
fn check_host_port(text: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '['")?;
        (host, after.strip_prefix(':').ok_or("missing port")?)
    } else {
        text.rsplit_once(':').ok_or("missing port")?
    };
    if host.is_empty() {
        return Err("missing host");
    }
    if host.contains(':') && !text.starts_with('[') {
        return Err("IPv6 addresses need brackets");
    }
    port.parse::<u16>().map(|_| ()).map_err(|_| "invalid port")
}

/// One line out of the `regex` crate's multi-line error text.
fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or_else(|| text.lines().last().unwrap_or("syntax error"))
            .to_string(),
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled regex exceeds the size limit of {limit} bytes")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_checks() {
        assert!(check_host_port("example.com:80").is_ok());
        assert!(check_host_port("[::1]:80").is_ok());
        assert!(check_host_port("example.com").is_err());
        assert!(check_host_port(":80").is_err());
        assert!(check_host_port("example.com:http").is_err());
        assert!(check_host_port("example.com:70000").is_err());
        assert!(check_host_port("::1:80").is_err());
    }

    #[test]
    fn cidr_forms() {
        assert_eq!(
            parse_cidr("10.1.2.3/8").map(|n| n.trunc().to_string()),
            Ok("10.0.0.0/8".to_string())
        );
        assert_eq!(
            parse_cidr("192.168.1.1").map(|n| n.to_string()),
            Ok("192.168.1.1/32".to_string())
        );
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("127.0.0.1:80").is_err());
    }

    /// A config with one cluster `c` and one route built from `route` (JSON).
    fn with_route(route: serde_json::Value) -> Result<Route, Vec<Diagnostic>> {
        let doc = serde_json::json!({
            "servers": [{"routers": [{
                "router_config_name": "r",
                "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [route]}]
            }]}],
            "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}]}]}
        });
        crate::parse_value(&doc)
            .map(|l| l.config.routers[0].virtual_hosts[0].routes[0].clone())
            .map_err(|e| e.diagnostics().to_vec())
    }

    fn errors(route: serde_json::Value) -> Vec<String> {
        with_route(route)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    const AT: &str = "servers[0].routers[0].virtual_hosts[0].routers[0]";

    #[test]
    fn query_parameters_are_typed() {
        let route = with_route(serde_json::json!({
            "match": {"prefix": "/", "query_parameters": [
                {"name": "a", "value": "1"},
                {"name": "b", "value": "^x+$", "regex": true},
                {"name": "c"}
            ]},
            "route": {"cluster_name": "c"}
        }))
        .expect("loads");
        let q = &route.matcher.query_parameters;
        assert_eq!(q.len(), 3);
        assert_eq!(
            q[1],
            QueryParameterMatcher {
                name: "b".into(),
                value: "^x+$".into(),
                regex: true
            }
        );
        assert_eq!((q[2].value.as_str(), q[2].regex), ("", false));
    }

    #[test]
    fn query_parameter_errors_carry_the_path() {
        let e = errors(serde_json::json!({
            "match": {"prefix": "/", "query_parameters": [
                {"name": "", "value": "1"},
                {"name": "b", "value": "(", "regex": true}
            ]},
            "route": {"cluster_name": "c"}
        }));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with(&format!("{AT}.match.query_parameters[0].name: ")),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(&format!(
                "{AT}.match.query_parameters[1].value: invalid regex"
            )),
            "{e:?}"
        );
    }

    #[test]
    fn mirror_policies_accept_an_object_or_a_list() {
        let one = with_route(serde_json::json!({
            "route": {"cluster_name": "c"},
            "request_mirror_policies": {"cluster": "c", "percent": 30, "trace_sampled": true}
        }))
        .expect("loads");
        let expected = RequestMirrorPolicy {
            cluster: "c".into(),
            percent: 30,
        };
        assert_eq!(one.mirror_policies, vec![expected.clone()]);
        let list = with_route(serde_json::json!({
            "route": {"cluster_name": "c"},
            "request_mirror_policies": [{"cluster": "c", "percent": 30}, {"cluster": "c"}]
        }))
        .expect("loads");
        assert_eq!(list.mirror_policies.len(), 2);
        assert_eq!(list.mirror_policies[0], expected);
        assert_eq!(list.mirror_policies[1].percent, 0);
        let none = with_route(serde_json::json!({"route": {"cluster_name": "c"}})).expect("loads");
        assert!(none.mirror_policies.is_empty());
    }

    #[test]
    fn mirror_policy_errors_carry_the_path() {
        let at = format!("{AT}.request_mirror_policies");
        let e = errors(serde_json::json!({
            "route": {"cluster_name": "c"},
            "request_mirror_policies": [{"cluster": "nope", "percent": 101}, {"percent": 1}]
        }));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e.contains(&format!(
                "{at}[0].percent: percent 101 out of range 0..=100"
            )),
            "{e:?}"
        );
        assert!(
            e.contains(&format!("{at}[1].cluster: mirror cluster is required")),
            "{e:?}"
        );
        assert!(
            e.contains(&format!("{at}[0].cluster: cluster \"nope\" does not exist")),
            "{e:?}"
        );
        let e = errors(serde_json::json!({
            "route": {"cluster_name": "c"},
            "request_mirror_policies": "c"
        }));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!("{at}: expected an object or a list")),
            "{e:?}"
        );
        let e = errors(serde_json::json!({
            "route": {"cluster_name": "c"},
            "request_mirror_policies": {"cluster": "c", "percent": "x"}
        }));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with(&format!("{at}.percent: ")), "{e:?}");
    }

    #[test]
    fn regex_reason_is_one_line() {
        let pattern = ["("].concat(); // built at run time: clippy checks literal regexes
        let e = regex::Regex::new(&pattern).err();
        let reason = e.as_ref().map(regex_reason).unwrap_or_default();
        assert!(!reason.contains('\n'), "{reason}");
        assert!(reason.contains("unclosed group"), "{reason}");
    }
}
