//! The validated, typed configuration. Built once by [`crate::parse_str`] / [`crate::load`],
//! then shared read-only (wrap it in an `Arc`). Everything here has already been checked:
//! addresses parse, names that are referenced exist, durations and regexes are valid.
//!
//! Strings that are empty mean "not set" unless a field says otherwise.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

// === defaults ===

/// `max_request_per_conn` when unset or 0 (MOSN `DefaultMaxRequestPerConn`).
pub const DEFAULT_MAX_REQUEST_PER_CONN: u32 = 1024;
/// `conn_buffer_limit_bytes` when unset or 0 (MOSN `DefaultConnBufferLimitBytes`, 16 KiB).
pub const DEFAULT_CONN_BUFFER_LIMIT_BYTES: u32 = 16 * 1024;
/// Listener per-connection buffer limit when unset (MOSN: fixed 32 KiB).
pub const DEFAULT_PER_CONNECTION_BUFFER_LIMIT_BYTES: u32 = 32 * 1024;
/// Cluster `connect_timeout` when unset or zero.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// STRICT_DNS `dns_refresh_rate` when unset or zero.
pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);
/// Server `graceful_timeout` when unset or zero.
pub const DEFAULT_GRACEFUL_TIMEOUT: Duration = Duration::from_secs(30);
/// Smallest host weight; smaller (and unset) weights become this.
pub const MIN_HOST_WEIGHT: u32 = 1;
/// Largest host weight; larger weights are clamped to this.
pub const MAX_HOST_WEIGHT: u32 = 128;
/// Largest weight of one `weighted_clusters` entry.
pub const MAX_CLUSTER_WEIGHT: u32 = 100;
/// Admin API address when the `admin` section is absent (loopback only, never 0.0.0.0).
pub const DEFAULT_ADMIN_ADDRESS: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 34901);
/// MOSN's log file when `default_log_path` is empty (`types.MosnLogDefaultPath`).
pub const DEFAULT_LOG_PATH: &str = "/home/admin/mosn/logs/mosn.log";
/// What [`Config::dump`] writes in place of a secret.
pub const REDACTED: &str = "[redacted]";

// === top level ===

/// The whole validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `servers[]` (MOSN runs one; more are accepted).
    pub servers: Vec<Server>,
    /// `cluster_manager.clusters[]`, in file order, names unique.
    pub clusters: Vec<Cluster>,
    /// Every router table: `servers[].routers[]` plus legacy `connection_manager` filters,
    /// names unique.
    pub routers: Vec<Router>,
    /// The admin API listener.
    pub admin: Admin,
    /// `pid`: where to write the process id.
    pub pid_file: Option<PathBuf>,
    /// `disable_upgrade` (or its alias `close_graceful`): no hot upgrade / graceful hand-off.
    pub disable_upgrade: bool,
    /// `inherit_old_mosnconfig`: take the config of the old process on hot upgrade.
    pub inherit_old_mosnconfig: bool,
    /// `uds_dir`: directory of the hot-upgrade unix sockets.
    pub uds_dir: Option<PathBuf>,
    /// Cluster-manager wide options.
    pub cluster_manager: ClusterManagerOptions,
    /// Sections kept verbatim for later work.
    pub sections: PassthroughSections,
    /// `traffic_capture` (mosn-rs only): capture of an application's connections.
    pub traffic_capture: Option<crate::capture::TrafficCapture>,
}

impl Config {
    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The router table called `name`.
    pub fn router(&self, name: &str) -> Option<&Router> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// Every listener of every server.
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.servers.iter().flat_map(|s| s.listeners.iter())
    }

    /// A copy with every secret (TLS `private_key`, session `ticket` keys) replaced by
    /// [`REDACTED`]. `parse(dump(c)) == c.redacted()`.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        let mut redact = |t: &mut TlsContext| t.redact();
        if let Some(t) = c.cluster_manager.tls_context.as_mut() {
            redact(t);
        }
        for cluster in &mut c.clusters {
            if let Some(t) = cluster.tls_context.as_mut() {
                redact(t);
            }
        }
        for server in &mut c.servers {
            for listener in &mut server.listeners {
                for chain in &mut listener.filter_chains {
                    if let Some(t) = chain.tls_context.as_mut() {
                        redact(t);
                    }
                    chain.tls_context_set.iter_mut().for_each(&mut redact);
                }
            }
        }
        c
    }

    /// The configuration as MOSN current-shape JSON (routers under `servers[0].routers`),
    /// secrets redacted. Parsing the result gives back [`Config::redacted`].
    pub fn dump(&self) -> Value {
        let c = self.redacted();
        crate::capture::add_to_dump(crate::dump::config(&c), c.traffic_capture.as_ref())
    }

    /// Like [`Config::dump`] but with secrets left in: only for handing the config to a new
    /// process over a private channel (hot upgrade), never for the admin API or logs.
    pub fn dump_with_secrets(&self) -> Value {
        crate::capture::add_to_dump(crate::dump::config(self), self.traffic_capture.as_ref())
    }
}

impl serde::Serialize for Config {
    /// Serializes [`Config::dump`] (redacted).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.dump().serialize(s)
    }
}

/// `cluster_manager` options other than the clusters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterManagerOptions {
    /// Global client TLS context, used by clusters with `cluster_manager_tls: true`.
    pub tls_context: Option<TlsContext>,
    /// Legacy `auto_discovery`.
    pub auto_discovery: bool,
    /// Legacy `registry_use_health_check`.
    pub registry_use_health_check: bool,
}

/// Top-level sections that are parsed as plain JSON and kept for later work.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassthroughSections {
    /// `tracing {enable, driver, config}`.
    pub tracing: Option<Value>,
    /// `metrics {sinks, stats_matcher, ...}`.
    pub metrics: Option<Value>,
    /// `pprof {debug, port_value, endpoint}`.
    pub pprof: Option<Value>,
    /// xDS bootstrap `static_resources`.
    pub static_resources: Option<Value>,
    /// xDS bootstrap `dynamic_resources`.
    pub dynamic_resources: Option<Value>,
    /// Legacy `service_registry`.
    pub service_registry: Option<Value>,
    /// `extends[]`.
    pub extends: Option<Value>,
    /// `third_part_codec {codecs[]}`.
    pub third_part_codec: Option<Value>,
    /// xDS `node`.
    pub node: Option<Value>,
    /// `plugin {log_base}`.
    pub plugin: Option<Value>,
    /// `wasm_global_plugins[]`.
    pub wasm_global_plugins: Option<Value>,
}

/// The admin API listener (`admin.address.socket_address`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// Where to listen. Port 0 asks for an ephemeral port.
    pub address: SocketAddr,
    /// Envoy-style `access_log_path` (kept, not acted on yet).
    pub access_log_path: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            address: DEFAULT_ADMIN_ADDRESS,
            access_log_path: String::new(),
        }
    }
}

// === logging ===

/// Where a log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogPath {
    /// `"stdout"`.
    Stdout,
    /// `"stderr"`.
    Stderr,
    /// A file path.
    File(PathBuf),
}

impl LogPath {
    /// Parses MOSN's log path string (`stdout`, `stderr`, or a path). `None` for `""`.
    pub fn parse(text: &str) -> Option<LogPath> {
        match text {
            "" => None,
            t if t.eq_ignore_ascii_case("stdout") => Some(LogPath::Stdout),
            t if t.eq_ignore_ascii_case("stderr") => Some(LogPath::Stderr),
            t => Some(LogPath::File(PathBuf::from(t))),
        }
    }

    /// MOSN's default: [`DEFAULT_LOG_PATH`].
    pub fn mosn_default() -> LogPath {
        LogPath::File(PathBuf::from(DEFAULT_LOG_PATH))
    }
}

impl fmt::Display for LogPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogPath::Stdout => f.write_str("stdout"),
            LogPath::Stderr => f.write_str("stderr"),
            LogPath::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// MOSN log levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `TRACE`
    Trace,
    /// `DEBUG`
    Debug,
    /// `INFO` (the default)
    #[default]
    Info,
    /// `WARN`
    Warn,
    /// `ERROR`
    Error,
    /// `FATAL`
    Fatal,
}

impl LogLevel {
    /// Parses a level name, case-insensitively. `WARNING` is taken as `WARN`.
    pub fn parse(text: &str) -> Option<LogLevel> {
        Some(match text.to_ascii_uppercase().as_str() {
            "TRACE" => LogLevel::Trace,
            "DEBUG" => LogLevel::Debug,
            "INFO" => LogLevel::Info,
            "WARN" | "WARNING" => LogLevel::Warn,
            "ERROR" => LogLevel::Error,
            "FATAL" => LogLevel::Fatal,
            _ => return None,
        })
    }

    /// The canonical upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === servers and listeners ===

/// One `servers[]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    /// `mosn_server_name`.
    pub name: String,
    /// `default_log_path`; [`LogPath::mosn_default`] when empty.
    pub default_log_path: LogPath,
    /// `default_log_level`, INFO when empty.
    pub default_log_level: LogLevel,
    /// `default_log_roller` / `global_log_roller` (e.g. `"time=24"`), kept verbatim.
    pub default_log_roller: String,
    /// `graceful_timeout`, [`DEFAULT_GRACEFUL_TIMEOUT`] when unset or zero.
    pub graceful_timeout: Duration,
    /// Worker count, resolved: `"auto"`, 0, negative or unset mean
    /// `std::thread::available_parallelism()` (cgroup-aware).
    pub processor: usize,
    /// `use_netpoll_mode` (MOSN-specific; kept).
    pub use_netpoll_mode: bool,
    /// The listeners.
    pub listeners: Vec<Listener>,
    /// `network_backend` (mosn-rs only): the network stack the listeners and upstream
    /// connections run on; [`crate::NetworkBackend::Kernel`] when absent.
    pub network_backend: crate::backend::NetworkBackend,
}

/// Listener socket kind (`network`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Network {
    /// `tcp` (default).
    #[default]
    Tcp,
    /// `udp`.
    Udp,
}

impl Network {
    /// The config string.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Tcp => "tcp",
            Network::Udp => "udp",
        }
    }
}

/// How a listener learns the original destination (`use_original_dst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginalDst {
    /// iptables REDIRECT: read `SO_ORIGINAL_DST` (legacy `true`).
    Redirect,
    /// TPROXY: the local address is the original destination.
    Tproxy,
}

impl OriginalDst {
    /// The config string.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginalDst::Redirect => "redirect",
            OriginalDst::Tproxy => "tproxy",
        }
    }
}

/// One listener.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    /// `name`; the address text when the config left it empty.
    pub name: String,
    /// `type`: `ingress` / `egress` / empty (informational).
    pub listener_type: String,
    /// `network`.
    pub network: Network,
    /// `address`.
    pub address: SocketAddr,
    /// `bind_port`: true unless the config says `false` (a virtual listener reached only by
    /// original-destination hand-off). MOSN's Go zero value would be false, but every MOSN
    /// sample sets it and a listener that silently never binds is a trap.
    pub bind_port: bool,
    /// `reuseport`: SO_REUSEPORT.
    pub reuseport: bool,
    /// `use_original_dst`.
    pub use_original_dst: Option<OriginalDst>,
    /// `inspector`: accept TLS and plaintext on the same port.
    pub inspector: bool,
    /// `connection_idle_timeout` (None: no idle timeout).
    pub connection_idle_timeout: Option<Duration>,
    /// `per_connection_buffer_limit_bytes`, [`DEFAULT_PER_CONNECTION_BUFFER_LIMIT_BYTES`] when
    /// unset.
    pub per_connection_buffer_limit_bytes: u32,
    /// `default_read_buffer_size` (None: the transport's default).
    pub default_read_buffer_size: Option<u32>,
    /// `log_path` (None: the server's).
    pub log_path: Option<LogPath>,
    /// `log_level` (None: the server's).
    pub log_level: Option<LogLevel>,
    /// `access_logs[]`.
    pub access_logs: Vec<AccessLog>,
    /// `handoff_restoreddestination`.
    pub handoff_restoreddestination: bool,
    /// `listener_filters[]` (e.g. `original_dst`), kept as type + JSON config.
    pub listener_filters: Vec<FilterConfig>,
    /// The filter chain. MOSN uses only the first; later ones are dropped with a warning,
    /// so this holds at most one entry.
    pub filter_chains: Vec<FilterChain>,
    /// `stream_filters[]`, kept as type + JSON config.
    pub stream_filters: Vec<StreamFilter>,
}

/// `access_logs[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLog {
    /// `log_path`.
    pub path: String,
    /// `log_format` with `%variable%` tokens.
    pub format: String,
}

/// A filter whose config is not interpreted by this crate.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterConfig {
    /// `type`.
    pub kind: String,
    /// `config` (an empty object when absent).
    pub config: Value,
}

/// A stream (L7) filter: `stream_filters[]`.
pub type StreamFilter = FilterConfig;

/// `filter_chains[0]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilterChain {
    /// `match` (unused by MOSN), kept verbatim.
    pub filter_chain_match: Option<Value>,
    /// `tls_context`; None when absent or all-default (`{}`).
    pub tls_context: Option<TlsContext>,
    /// `tls_context_set` (several certificates, chosen by SNI). Exclusive with `tls_context`.
    pub tls_context_set: Vec<TlsContext>,
    /// The network filters in order (`connection_manager` removed: it became a router).
    pub filters: Vec<NetworkFilter>,
}

/// A network (L4) filter.
#[derive(Clone, Debug, PartialEq)]
pub enum NetworkFilter {
    /// `tcp_proxy`.
    TcpProxy(TcpProxy),
    /// `proxy`: the L7 proxy.
    Proxy(ProxyFilter),
    /// Anything else, kept as type + JSON config.
    Other {
        /// `type`.
        kind: String,
        /// `config` (an empty object when absent).
        config: Value,
    },
}

/// `tcp_proxy` filter config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpProxy {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `cluster`: used when no route matches (or there are no routes).
    pub cluster: Option<String>,
    /// `routes[]`, first match wins.
    pub routes: Vec<TcpRoute>,
    /// `idle_timeout` (None: none).
    pub idle_timeout: Option<Duration>,
    /// `max_connect_attempts`, at least 1.
    pub max_connect_attempts: u32,
}

/// One `tcp_proxy.routes[]` entry. An empty list / None means "any".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpRoute {
    /// Target cluster.
    pub cluster: String,
    /// Source CIDRs (host bits cleared).
    pub source_addrs: Vec<ipnet::IpNet>,
    /// Destination CIDRs (host bits cleared).
    pub destination_addrs: Vec<ipnet::IpNet>,
    /// Source port range.
    pub source_port: Option<PortRange>,
    /// Destination port range.
    pub destination_port: Option<PortRange>,
}

/// An inclusive port range (`"8080"` or `"1000-2000"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A protocol name as used by `downstream_protocol` / `upstream_protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// `Http1`.
    Http1,
    /// `Http2`.
    Http2,
    /// `Auto`: detect among all known protocols (upstream: same as downstream).
    Auto,
    /// `SofaRpc` (MOSN <= 0.10): Bolt v1 or v2, told apart by the first byte.
    SofaRpc,
    /// `bolt` (legacy `X` + `sub_protocol: bolt`).
    Bolt,
    /// `boltv2`.
    BoltV2,
    /// `dubbo`.
    Dubbo,
    /// `dubbo-thrift`.
    DubboThrift,
    /// `tars`.
    Tars,
}

impl Protocol {
    /// Every protocol, in canonical-name order for messages.
    pub const ALL: [Protocol; 9] = [
        Protocol::Http1,
        Protocol::Http2,
        Protocol::Auto,
        Protocol::SofaRpc,
        Protocol::Bolt,
        Protocol::BoltV2,
        Protocol::Dubbo,
        Protocol::DubboThrift,
        Protocol::Tars,
    ];

    /// MOSN's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "Http1",
            Protocol::Http2 => "Http2",
            Protocol::Auto => "Auto",
            Protocol::SofaRpc => "SofaRpc",
            Protocol::Bolt => "bolt",
            Protocol::BoltV2 => "boltv2",
            Protocol::Dubbo => "dubbo",
            Protocol::DubboThrift => "dubbo-thrift",
            Protocol::Tars => "tars",
        }
    }

    /// Parses a MOSN protocol name (case-insensitive). `X` is not a protocol by itself:
    /// see [`ProxyFilter`].
    pub fn parse(text: &str) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `proxy` filter config.
///
/// Legacy `"X"` with `extend_config.sub_protocol` is rewritten to the sub-protocol, as MOSN
/// >= 0.26 does (`"X"` + `bolt` becomes [`Protocol::Bolt`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyFilter {
    /// `name`.
    pub name: String,
    /// `downstream_protocol`, split at commas; `[Auto]` when empty.
    pub downstream_protocols: Vec<Protocol>,
    /// `upstream_protocol`; None when empty (route or downstream decides).
    pub upstream_protocol: Option<Protocol>,
    /// `router_config_name`: the router table (exists in [`Config::routers`]).
    pub router_config_name: String,
    /// `router_handler_name`.
    pub router_handler_name: String,
    /// `validate_clusters`.
    pub validate_clusters: bool,
    /// `fallback_for_unknown_protocol`: fall back to TCP proxying when detection fails.
    pub fallback_for_unknown_protocol: bool,
    /// `concurrency_num`.
    pub concurrency_num: u32,
    /// `extend_config`, keyed by protocol name, kept verbatim.
    pub extend_config: Map<String, Value>,
}

// === TLS ===

/// TLS protocol version bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// `tls_auto`.
    Auto,
    /// `tlsv1_0`.
    V1_0,
    /// `tlsv1_1`.
    V1_1,
    /// `tlsv1_2`.
    V1_2,
    /// `tlsv1_3`.
    V1_3,
}

impl TlsVersion {
    /// The config string.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Auto => "tls_auto",
            TlsVersion::V1_0 => "tlsv1_0",
            TlsVersion::V1_1 => "tlsv1_1",
            TlsVersion::V1_2 => "tlsv1_2",
            TlsVersion::V1_3 => "tlsv1_3",
        }
    }

    /// Parses a version string, case-insensitively.
    pub fn parse(text: &str) -> Option<TlsVersion> {
        [
            TlsVersion::Auto,
            TlsVersion::V1_0,
            TlsVersion::V1_1,
            TlsVersion::V1_2,
            TlsVersion::V1_3,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(text))
    }
}

/// A TLS context (listener side or cluster side). Parsed now, acted on by later work.
/// Certificates and keys are PEM text or file paths, as in MOSN.
#[derive(Clone, Default, PartialEq)]
pub struct TlsContext {
    /// `status`: TLS is on.
    pub enabled: bool,
    /// `type`: certificate provider / hook factory name.
    pub kind: String,
    /// `server_name` (SNI on the client side).
    pub server_name: String,
    /// `ca_cert`.
    pub ca_cert: String,
    /// `cert_chain`.
    pub cert_chain: String,
    /// `private_key` (secret: redacted by [`Config::dump`] and `Debug`).
    pub private_key: String,
    /// `verify_client`.
    pub verify_client: bool,
    /// `require_client_cert`.
    pub require_client_cert: bool,
    /// `insecure_skip`: do not verify the peer.
    pub insecure_skip: bool,
    /// `cipher_suites`, comma separated OpenSSL-style names.
    pub cipher_suites: String,
    /// `ecdh_curves`, comma separated (`x25519,p256,p384,p521`).
    pub ecdh_curves: String,
    /// `min_version`.
    pub min_version: Option<TlsVersion>,
    /// `max_version`.
    pub max_version: Option<TlsVersion>,
    /// `alpn`, comma separated (`h2,http/1.1,sofa`).
    pub alpn: String,
    /// `ticket`: session ticket key (secret).
    pub ticket: String,
    /// `fall_back`: retry in plaintext when the handshake fails (client side).
    pub fall_back: bool,
    /// `extend_verify`, kept verbatim.
    pub extend_verify: Option<Value>,
    /// `sds_source`, kept verbatim.
    pub sds_source: Option<Value>,
    /// `callbacks`, kept verbatim.
    pub callbacks: Option<Value>,
}

impl TlsContext {
    fn redact(&mut self) {
        if !self.private_key.is_empty() {
            self.private_key = REDACTED.to_string();
        }
        if !self.ticket.is_empty() {
            self.ticket = REDACTED.to_string();
        }
    }
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &str| if s.is_empty() { "" } else { REDACTED };
        f.debug_struct("TlsContext")
            .field("enabled", &self.enabled)
            .field("kind", &self.kind)
            .field("server_name", &self.server_name)
            .field("ca_cert", &self.ca_cert)
            .field("cert_chain", &self.cert_chain)
            .field("private_key", &secret(&self.private_key))
            .field("verify_client", &self.verify_client)
            .field("require_client_cert", &self.require_client_cert)
            .field("insecure_skip", &self.insecure_skip)
            .field("cipher_suites", &self.cipher_suites)
            .field("ecdh_curves", &self.ecdh_curves)
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .field("alpn", &self.alpn)
            .field("ticket", &secret(&self.ticket))
            .field("fall_back", &self.fall_back)
            .field("extend_verify", &self.extend_verify)
            .field("sds_source", &self.sds_source)
            .field("callbacks", &self.callbacks)
            .finish()
    }
}

// === routers ===

/// A named router table (`router_config_name`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Router {
    /// `router_config_name`.
    pub name: String,
    /// `virtual_hosts[]`.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Router-level `request_headers_to_add`.
    pub request_headers_to_add: Vec<HeaderValueOption>,
    /// Router-level `request_headers_to_remove`.
    pub request_headers_to_remove: Vec<String>,
    /// Router-level `response_headers_to_add`.
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// Router-level `response_headers_to_remove`.
    pub response_headers_to_remove: Vec<String>,
}

/// A virtual host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VirtualHost {
    /// `name`.
    pub name: String,
    /// `domains` (`"*"` = default virtual host, at most one per router).
    pub domains: Vec<String>,
    /// `routers[]`: the routes, first match wins.
    pub routes: Vec<Route>,
    /// `require_tls` (not used by MOSN), kept verbatim.
    pub require_tls: Option<Value>,
    /// `virtual_clusters` (not used by MOSN), kept verbatim.
    pub virtual_clusters: Option<Value>,
    /// `per_filter_config`, keys verbatim.
    pub per_filter_config: Map<String, Value>,
    /// `request_headers_to_add`.
    pub request_headers_to_add: Vec<HeaderValueOption>,
    /// `request_headers_to_remove`.
    pub request_headers_to_remove: Vec<String>,
    /// `response_headers_to_add`.
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// `response_headers_to_remove`.
    pub response_headers_to_remove: Vec<String>,
}

/// One route.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Route {
    /// `match`.
    pub matcher: RouteMatch,
    /// `route`.
    pub route: RouteAction,
    /// `redirect` (takes precedence over `route`).
    pub redirect: Option<RedirectAction>,
    /// `direct_response` (takes precedence over `redirect` and `route`).
    pub direct_response: Option<DirectResponseAction>,
    /// `metadata.filter_metadata."mosn.lb"`, keys verbatim.
    pub metadata: BTreeMap<String, String>,
    /// `per_filter_config`, keys verbatim.
    pub per_filter_config: Map<String, Value>,
    /// `decorator`, kept verbatim.
    pub decorator: Option<Value>,
    /// `request_mirror_policies`, typed: MOSN's single `{cluster, percent}` object, or a list
    /// of them. Clusters exist; percents are 0..=100.
    pub mirror_policies: Vec<RequestMirrorPolicy>,
}

/// `request_mirror_policies` entry: copy matched requests to `cluster`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMirrorPolicy {
    /// Where the copies go (exists in [`Config::clusters`]).
    pub cluster: String,
    /// Share of requests copied, 0..=100.
    pub percent: u32,
}

/// `match`. Empty strings are "not set". With no path matcher at all the route is an RPC
/// rule that matches on `headers` only (the Bolt/Dubbo case).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteMatch {
    /// `prefix`.
    pub prefix: String,
    /// `path` (exact).
    pub path: String,
    /// `regex` on the path (compiles with the `regex` crate).
    pub regex: String,
    /// `case_sensitive`.
    pub case_sensitive: Option<bool>,
    /// `headers[]`, all must match. Names verbatim.
    pub headers: Vec<HeaderMatcher>,
    /// `variables[]`.
    pub variables: Vec<VariableMatcher>,
    /// `query_parameters[]` (Envoy shape), all must match.
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// `dsl_expressions`, kept verbatim.
    pub dsl_expressions: Option<Value>,
    /// `runtime` (unused), kept verbatim.
    pub runtime: Option<Value>,
}

/// `headers[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderMatcher {
    /// Header name, verbatim.
    pub name: String,
    /// Expected value (or regex when `regex`).
    pub value: String,
    /// `value` is a regex (validated).
    pub regex: bool,
}

/// `query_parameters[]` entry (Envoy v2 shape).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryParameterMatcher {
    /// Parameter name, verbatim.
    pub name: String,
    /// Expected value (or regex when `regex`); empty without `regex`: present with any value.
    pub value: String,
    /// `value` is a regex (validated).
    pub regex: bool,
}

/// `variables[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VariableMatcher {
    /// Variable name.
    pub name: String,
    /// Exact value.
    pub value: Option<String>,
    /// Regex (validated).
    pub regex: Option<String>,
    /// `model`: `and` / `or` with the next matcher.
    pub model: Option<String>,
}

/// `route` action: where to send a matched request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteAction {
    /// `cluster_name` (exists in [`Config::clusters`]).
    pub cluster_name: String,
    /// `cluster_header`: take the cluster name from this request header.
    pub cluster_header: String,
    /// `cluster_variable`: take the cluster name from this variable.
    pub cluster_variable: String,
    /// `weighted_clusters[]`.
    pub weighted_clusters: Vec<WeightedCluster>,
    /// `metadata_match.filter_metadata."mosn.lb"` (subset selection), keys verbatim.
    pub metadata_match: BTreeMap<String, String>,
    /// `timeout` (None: none).
    pub timeout: Option<Duration>,
    /// `retry_policy`.
    pub retry_policy: Option<RetryPolicy>,
    /// `prefix_rewrite`.
    pub prefix_rewrite: String,
    /// `regex_rewrite`.
    pub regex_rewrite: Option<RegexRewrite>,
    /// `host_rewrite`.
    pub host_rewrite: String,
    /// `auto_host_rewrite`.
    pub auto_host_rewrite: bool,
    /// `auto_host_rewrite_header`.
    pub auto_host_rewrite_header: String,
    /// `upstream_protocol`: overrides the proxy's.
    pub upstream_protocol: Option<Protocol>,
    /// `hash_policy[]`, kept verbatim.
    pub hash_policy: Vec<Value>,
    /// `request_headers_to_add`.
    pub request_headers_to_add: Vec<HeaderValueOption>,
    /// `request_headers_to_remove`.
    pub request_headers_to_remove: Vec<String>,
    /// `response_headers_to_add`.
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// `response_headers_to_remove`.
    pub response_headers_to_remove: Vec<String>,
}

/// `weighted_clusters[].cluster`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightedCluster {
    /// Cluster name (exists).
    pub name: String,
    /// Weight, 0..=[`MAX_CLUSTER_WEIGHT`]; the entries of one route sum to more than 0.
    pub weight: u32,
    /// Subset metadata, keys verbatim.
    pub metadata_match: BTreeMap<String, String>,
}

/// `retry_policy`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `retry_on`.
    pub retry_on: bool,
    /// `retry_timeout` (None: none).
    pub retry_timeout: Option<Duration>,
    /// `num_retries`.
    pub num_retries: u32,
    /// `status_codes` that trigger a retry.
    pub status_codes: Vec<u32>,
}

/// `regex_rewrite`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegexRewrite {
    /// `pattern.regex` (validated).
    pub pattern: String,
    /// `substitution`.
    pub substitution: String,
}

/// `redirect`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedirectAction {
    /// `response_code`: 301 (default), 302, 303, 307 or 308.
    pub response_code: u16,
    /// `path_redirect`.
    pub path_redirect: String,
    /// `host_redirect`.
    pub host_redirect: String,
    /// `scheme_redirect`.
    pub scheme_redirect: String,
}

/// `direct_response`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectResponseAction {
    /// `status`, 100..=599.
    pub status: u16,
    /// `body`.
    pub body: String,
}

/// `{"header": {"key", "value"}, "append"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderValueOption {
    /// Header name, verbatim.
    pub key: String,
    /// Header value.
    pub value: String,
    /// `append` (default true): add to existing values instead of replacing them.
    pub append: bool,
}

// === clusters ===

/// Cluster discovery type (`type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ClusterType {
    /// `SIMPLE`: static IP:port hosts (also what `STATIC`, `DYNAMIC`, `EDS` and unknown
    /// types become, as in MOSN).
    #[default]
    Simple,
    /// `STRICT_DNS`: hosts are `name:port`, re-resolved every `dns_refresh_rate`.
    StrictDns,
    /// `ORIGINAL_DST`: connect to the downstream connection's original destination.
    OriginalDst,
}

impl ClusterType {
    /// The config string.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterType::Simple => "SIMPLE",
            ClusterType::StrictDns => "STRICT_DNS",
            ClusterType::OriginalDst => "ORIGINAL_DST",
        }
    }
}

/// Load balancer (`lb_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LbType {
    /// `LB_RANDOM`.
    Random,
    /// `LB_ROUNDROBIN` (the default, and what unknown names become).
    #[default]
    RoundRobin,
    /// `LB_WEIGHTED_ROUNDROBIN`.
    WeightedRoundRobin,
    /// `LB_LEAST_REQUEST`.
    LeastRequest,
    /// `LB_LEAST_CONNECTION`.
    LeastConnection,
    /// `LB_REQUEST_ROUNDROBIN`.
    RequestRoundRobin,
    /// `LB_MAGLEV`.
    Maglev,
    /// `LB_PEAK_EWMA`.
    PeakEwma,
    /// `LB_ORIGINAL_DST` (forced for ORIGINAL_DST clusters).
    OriginalDst,
}

impl LbType {
    /// Every load balancer type.
    pub const ALL: [LbType; 9] = [
        LbType::Random,
        LbType::RoundRobin,
        LbType::WeightedRoundRobin,
        LbType::LeastRequest,
        LbType::LeastConnection,
        LbType::RequestRoundRobin,
        LbType::Maglev,
        LbType::PeakEwma,
        LbType::OriginalDst,
    ];

    /// The config string.
    pub fn as_str(self) -> &'static str {
        match self {
            LbType::Random => "LB_RANDOM",
            LbType::RoundRobin => "LB_ROUNDROBIN",
            LbType::WeightedRoundRobin => "LB_WEIGHTED_ROUNDROBIN",
            LbType::LeastRequest => "LB_LEAST_REQUEST",
            LbType::LeastConnection => "LB_LEAST_CONNECTION",
            LbType::RequestRoundRobin => "LB_REQUEST_ROUNDROBIN",
            LbType::Maglev => "LB_MAGLEV",
            LbType::PeakEwma => "LB_PEAK_EWMA",
            LbType::OriginalDst => "LB_ORIGINAL_DST",
        }
    }

    /// Parses a MOSN name, case-insensitively.
    pub fn parse(text: &str) -> Option<LbType> {
        LbType::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(text))
    }
}

/// `dns_lookup_family`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DnsLookupFamily {
    /// Unset: both families.
    #[default]
    Auto,
    /// `V4_ONLY`.
    V4Only,
    /// `V6_ONLY`.
    V6Only,
}

/// One cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// `name` (non-empty, unique).
    pub name: String,
    /// `type`.
    pub kind: ClusterType,
    /// `sub_type` (unused by MOSN), kept.
    pub sub_type: String,
    /// `lb_type`.
    pub lb_type: LbType,
    /// `max_request_per_conn`.
    pub max_request_per_conn: u32,
    /// `conn_buffer_limit_bytes`.
    pub conn_buffer_limit_bytes: u32,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// `idle_timeout` of upstream connections (None: none).
    pub idle_timeout: Option<Duration>,
    /// `circuit_breakers[]` (MOSN uses the first; 0 = unlimited).
    pub circuit_breakers: Vec<CircuitBreakers>,
    /// `health_check`, kept as JSON for the health-check work.
    pub health_check: Option<Value>,
    /// `outlier_detection` (never implemented by MOSN), kept.
    pub outlier_detection: Option<Value>,
    /// `spec` (subscriptions), kept.
    pub spec: Option<Value>,
    /// `lb_subset_config`.
    pub lb_subset_config: Option<LbSubsetConfig>,
    /// `original_dst_lb_config`.
    pub original_dst_lb_config: Option<OriginalDstLbConfig>,
    /// `cluster_manager_tls`: use `cluster_manager.tls_context`.
    pub cluster_manager_tls: bool,
    /// `tls_context` towards the hosts; None when absent or all-default.
    pub tls_context: Option<TlsContext>,
    /// `dns_refresh_rate` (STRICT_DNS).
    pub dns_refresh_rate: Duration,
    /// `respect_dns_ttl`.
    pub respect_dns_ttl: bool,
    /// `dns_lookup_family`.
    pub dns_lookup_family: DnsLookupFamily,
    /// `dns_resolvers`.
    pub dns_resolvers: Option<DnsResolvers>,
    /// `dns_resolver_file`.
    pub dns_resolver_file: String,
    /// `dns_resolver_port`.
    pub dns_resolver_port: String,
    /// `mark` (SO_MARK), 0 = none.
    pub mark: u32,
    /// `lbconfig`, kept.
    pub lbconfig: Option<Value>,
    /// `keepalive`, kept.
    pub keepalive: Option<Value>,
    /// `slow_start`, kept.
    pub slow_start: Option<Value>,
    /// `cluster_pool_enable`.
    pub cluster_pool_enable: bool,
    /// `hosts[]`.
    pub hosts: Vec<Host>,
}

/// `circuit_breakers[]` entry; 0 = unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// `max_connections`.
    pub max_connections: u32,
    /// `max_pending_requests`.
    pub max_pending_requests: u32,
    /// `max_requests`.
    pub max_requests: u32,
    /// `max_retries`.
    pub max_retries: u32,
}

/// `lb_subset_config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbSubsetConfig {
    /// 0 NO_FALLBACK, 1 ANY_ENDPOINT, 2 DEFAULT_SUBSET (larger values become 0).
    pub fall_back_policy: u8,
    /// `default_subset`, keys verbatim.
    pub default_subset: BTreeMap<String, String>,
    /// `subset_selectors`.
    pub subset_selectors: Vec<Vec<String>>,
}

/// `original_dst_lb_config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginalDstLbConfig {
    /// `use_header`: take the destination from a header.
    pub use_header: bool,
    /// `header_name`.
    pub header_name: String,
    /// `replace_local`.
    pub replace_local: bool,
}

/// `dns_resolvers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsResolvers {
    /// `servers`.
    pub servers: Vec<String>,
    /// `search`.
    pub search: Vec<String>,
    /// `port`.
    pub port: String,
    /// `ndots`.
    pub ndots: u32,
    /// `timeout` (seconds).
    pub timeout: u32,
    /// `attempts`.
    pub attempts: u32,
}

/// One upstream host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// `address`: `ip:port` (SIMPLE, ORIGINAL_DST; checked) or `name:port` (STRICT_DNS).
    pub address: String,
    /// `hostname`.
    pub hostname: String,
    /// `weight`, clamped to [`MIN_HOST_WEIGHT`]..=[`MAX_HOST_WEIGHT`].
    pub weight: u32,
    /// `metadata.filter_metadata."mosn.lb"`, keys verbatim.
    pub metadata: BTreeMap<String, String>,
    /// `tls_disable`.
    pub tls_disable: bool,
}

impl Host {
    /// The address as a socket address, when it is an `ip:port`.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.address.parse().ok()
    }
}
