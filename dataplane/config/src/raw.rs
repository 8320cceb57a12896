//! The raw serde model: every key MOSN accepts in either shape, with Go zero-value
//! defaults (`#[serde(default)]` everywhere). Nothing here is validated; the `validate` module
//! turns it into the typed [`crate::Config`].
//!
//! Key names are MOSN's JSON tags (`pkg/config/v2/*.go`, `pkg/api/v2` at old tags). Keys are
//! matched case-insensitively by [`crate::de`]; `alias` covers the few places where MOSN's
//! Go struct had no JSON tag (the Go field name is then the key) or where a key was renamed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::duration::parse_go_duration;

// === scalar helpers ===

/// How a duration field reads a bare JSON number.
#[derive(Clone, Copy)]
enum BareNumber {
    /// MOSN's `api.DurationConfig`: only `0` (Go's `time.ParseDuration` needs a unit).
    ZeroOnly,
    /// A plain Go `time.Duration`: nanoseconds.
    Nanos,
}

/// Reads a Go duration string, `""`/`null` (not set), or a bare number as `BareNumber` says.
struct DurationVisitor(BareNumber);

impl Visitor<'_> for DurationVisitor {
    type Value = Option<Duration>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            BareNumber::ZeroOnly => {
                f.write_str("a duration string such as \"10s\", \"1m30s\" or \"500ms\"")
            }
            BareNumber::Nanos => {
                f.write_str("a duration string such as \"90s\" or an integer of nanoseconds")
            }
        }
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<Duration>, E> {
        if s.is_empty() {
            return Ok(None);
        }
        parse_go_duration(s).map(Some).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Option<Duration>, E> {
        match self.0 {
            BareNumber::ZeroOnly if n == 0 => Ok(Some(Duration::ZERO)),
            BareNumber::ZeroOnly => Err(E::custom(format!(
                "invalid duration {n}: missing unit (write e.g. \"{n}s\" or \"{n}ms\")"
            ))),
            BareNumber::Nanos if n > i64::MAX as u64 => {
                Err(E::custom(format!("invalid duration {n}: overflow")))
            }
            BareNumber::Nanos => Ok(Some(Duration::from_nanos(n))),
        }
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Option<Duration>, E> {
        Err(E::custom(match self.0 {
            BareNumber::ZeroOnly => {
                format!("invalid duration {n}: must be a string such as \"10s\"")
            }
            BareNumber::Nanos => format!("invalid duration {n}: must not be negative"),
        }))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Option<Duration>, E> {
        Err(E::custom(format!(
            "invalid duration {n}: must be a string such as \"10s\""
        )))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<Duration>, E> {
        Ok(None)
    }
}

/// A MOSN `api.DurationConfig`: a Go duration string (`"10s"`). `""` and `null` mean
/// "not set"; the bare number `0` means zero; other bare numbers are rejected because Go's
/// `time.ParseDuration` needs a unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GoDuration(pub Option<Duration>);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor(BareNumber::ZeroOnly))
            .map(GoDuration)
    }
}

/// A Go `time.Duration` field without MOSN's string wrapper (`tcp_proxy.idle_timeout` is a
/// `*time.Duration`): a JSON integer counts nanoseconds. A duration string is accepted too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NanosDuration(pub Option<Duration>);

impl<'de> Deserialize<'de> for NanosDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor(BareNumber::Nanos))
            .map(NanosDuration)
    }
}

// === top level ===

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    pub servers: Vec<RawServer>,
    pub cluster_manager: RawClusterManager,
    pub admin: Option<RawAdmin>,
    pub pid: String,
    pub disable_upgrade: bool,
    pub close_graceful: bool,
    pub inherit_old_mosnconfig: bool,
    pub uds_dir: String,
    // Kept verbatim (acted on by later work or not at all); listed so they are not "unknown".
    pub tracing: Option<Value>,
    pub metrics: Option<Value>,
    pub pprof: Option<Value>,
    pub static_resources: Option<Value>,
    pub dynamic_resources: Option<Value>,
    pub service_registry: Option<Value>,
    pub extends: Option<Value>,
    pub third_part_codec: Option<Value>,
    pub node: Option<Value>,
    pub plugin: Option<Value>,
    pub wasm_global_plugins: Option<Value>,
    /// mosn-rs only: transparent capture (`crate::capture`).
    pub traffic_capture: Option<crate::capture::RawTrafficCapture>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAdmin {
    pub address: RawAdminAddress,
    #[serde(alias = "accessLogPath")]
    pub access_log_path: String,
    #[serde(alias = "profilePath")]
    pub profile_path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAdminAddress {
    #[serde(alias = "socketAddress")]
    pub socket_address: Option<RawSocketAddress>,
    pub pipe: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawSocketAddress {
    pub address: String,
    #[serde(alias = "portValue")]
    pub port_value: u32,
    pub protocol: Option<Value>,
    #[serde(alias = "namedPort")]
    pub named_port: String,
    #[serde(alias = "resolverName")]
    pub resolver_name: String,
    #[serde(alias = "ipv4Compat")]
    pub ipv4_compat: bool,
}

// === servers and listeners ===

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawServer {
    pub mosn_server_name: String,
    pub default_log_path: String,
    pub default_log_level: String,
    #[serde(alias = "global_log_roller")]
    pub default_log_roller: String,
    pub use_netpoll_mode: bool,
    pub optimize_local_write: bool,
    pub graceful_timeout: GoDuration,
    pub processor: Option<Value>,
    pub listeners: Vec<RawListener>,
    pub routers: Vec<RawRouterConfig>,
    /// mosn-rs only: kernel or DPDK network stack (`crate::backend`).
    pub network_backend: Option<crate::backend::RawNetworkBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawListener {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
    pub bind_port: Option<bool>,
    #[serde(alias = "reuse_port")]
    pub reuseport: bool,
    pub network: String,
    pub use_original_dst: Option<Value>,
    pub inspector: bool,
    pub connection_idle_timeout: GoDuration,
    pub per_connection_buffer_limit_bytes: u32,
    pub default_read_buffer_size: u32,
    pub log_path: String,
    pub log_level: String,
    pub access_logs: Vec<RawAccessLog>,
    pub handoff_restoreddestination: bool,
    pub listener_filters: Vec<RawFilter>,
    pub filter_chains: Vec<RawFilterChain>,
    pub stream_filters: Vec<RawFilter>,
    pub tunnel_listener: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAccessLog {
    pub log_path: String,
    pub log_format: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawFilterChain {
    #[serde(rename = "match")]
    pub filter_chain_match: Option<Value>,
    pub tls_context: Option<RawTls>,
    pub tls_context_set: Vec<RawTls>,
    pub filters: Vec<RawFilter>,
}

/// A `{type, config}` pair; `config` is decoded once the type is known.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawFilter {
    #[serde(rename = "type")]
    pub kind: String,
    pub config: Option<Value>,
    pub go_plugin_config: Option<Value>,
}

// === network filters ===

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTcpProxy {
    pub stat_prefix: String,
    pub cluster: String,
    pub idle_timeout: NanosDuration,
    pub max_connect_attempts: u32,
    pub routes: Vec<RawTcpRoute>,
}

/// MOSN's `StreamRoute` has no JSON tags, so Go matches its field names (`SourceAddrs`,
/// `DestinationPort`, ...) case-insensitively; the snake_case names are accepted too.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTcpRoute {
    pub cluster: String,
    #[serde(alias = "SourceAddrs")]
    pub source_addrs: Vec<Value>,
    #[serde(alias = "DestinationAddrs")]
    pub destination_addrs: Vec<Value>,
    #[serde(alias = "SourcePort")]
    pub source_port: Option<Value>,
    #[serde(alias = "DestinationPort")]
    pub destination_port: Option<Value>,
}

/// MOSN's `CidrRange{Address, Length}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawCidr {
    pub address: String,
    pub length: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawProxy {
    pub name: String,
    pub downstream_protocol: String,
    pub upstream_protocol: String,
    pub router_config_name: String,
    pub router_handler_name: String,
    pub validate_clusters: bool,
    pub fallback_for_unknown_protocol: bool,
    pub concurrency_num: u32,
    pub extend_config: Option<Map<String, Value>>,
}

// === routers ===

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRouterConfig {
    pub router_config_name: String,
    pub router_configs: String,
    pub virtual_hosts: Vec<RawVirtualHost>,
    pub request_headers_to_add: Vec<RawHeaderValueOption>,
    pub request_headers_to_remove: Vec<String>,
    pub response_headers_to_add: Vec<RawHeaderValueOption>,
    pub response_headers_to_remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawVirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routers: Vec<RawRoute>,
    pub virtual_clusters: Option<Value>,
    pub require_tls: Option<Value>,
    pub per_filter_config: Map<String, Value>,
    pub request_headers_to_add: Vec<RawHeaderValueOption>,
    pub request_headers_to_remove: Vec<String>,
    pub response_headers_to_add: Vec<RawHeaderValueOption>,
    pub response_headers_to_remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRoute {
    #[serde(rename = "match")]
    pub matcher: RawRouteMatch,
    pub route: RawRouteAction,
    pub redirect: Option<RawRedirect>,
    pub direct_response: Option<RawDirectResponse>,
    pub metadata: Option<RawMetadata>,
    pub decorator: Option<Value>,
    pub per_filter_config: Map<String, Value>,
    /// One [`RawMirrorPolicy`] object (MOSN) or a list of them; decoded by `validate`.
    pub request_mirror_policies: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRouteMatch {
    pub prefix: String,
    pub path: String,
    pub regex: String,
    pub case_sensitive: Option<bool>,
    pub runtime: Option<Value>,
    pub headers: Vec<RawHeaderMatcher>,
    pub variables: Vec<RawVariableMatcher>,
    pub query_parameters: Vec<RawQueryParameterMatcher>,
    pub dsl_expressions: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHeaderMatcher {
    pub name: String,
    pub value: String,
    pub regex: bool,
}

/// Envoy's (v2) `query_parameters[]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawQueryParameterMatcher {
    pub name: String,
    pub value: String,
    pub regex: bool,
}

/// MOSN's `RequestMirrorPolicy`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawMirrorPolicy {
    pub cluster: String,
    pub percent: u32,
    /// Not implemented by MOSN either; accepted so it is not an unknown key.
    pub trace_sampled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawVariableMatcher {
    pub name: String,
    pub value: Option<String>,
    pub regex: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRouteAction {
    pub cluster_name: String,
    pub cluster_header: String,
    pub cluster_variable: String,
    pub upstream_protocol: String,
    pub weighted_clusters: Vec<RawWeightedCluster>,
    pub hash_policy: Vec<Value>,
    pub metadata_match: Option<RawMetadata>,
    pub timeout: GoDuration,
    pub retry_policy: Option<RawRetryPolicy>,
    pub prefix_rewrite: String,
    pub regex_rewrite: Option<RawRegexRewrite>,
    pub host_rewrite: String,
    pub auto_host_rewrite: bool,
    pub auto_host_rewrite_header: String,
    pub request_headers_to_add: Vec<RawHeaderValueOption>,
    pub request_headers_to_remove: Vec<String>,
    pub response_headers_to_add: Vec<RawHeaderValueOption>,
    pub response_headers_to_remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawWeightedCluster {
    pub cluster: RawClusterWeight,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawClusterWeight {
    pub name: String,
    pub weight: u32,
    pub metadata_match: Option<RawMetadata>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRetryPolicy {
    pub retry_on: bool,
    pub retry_timeout: GoDuration,
    pub num_retries: u32,
    pub status_codes: Vec<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRegexRewrite {
    pub pattern: RawRegexPattern,
    pub substitution: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRegexPattern {
    pub google_re2: Option<Value>,
    pub regex: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRedirect {
    pub response_code: u32,
    pub path_redirect: String,
    pub host_redirect: String,
    pub scheme_redirect: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawDirectResponse {
    pub status: u32,
    pub body: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHeaderValueOption {
    pub header: RawHeaderValue,
    pub append: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHeaderValue {
    pub key: String,
    pub value: String,
}

/// `{"filter_metadata": {"mosn.lb": {"key": "value"}}}`: the outer keys are Go struct tags
/// (case-insensitive), the inner map is user data (verbatim).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawMetadata {
    pub filter_metadata: RawFilterMetadata,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawFilterMetadata {
    #[serde(rename = "mosn.lb")]
    pub mosn_lb: Map<String, Value>,
}

// === TLS ===

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTls {
    pub status: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub server_name: String,
    pub ca_cert: String,
    pub cert_chain: String,
    pub private_key: String,
    pub verify_client: bool,
    pub require_client_cert: bool,
    pub insecure_skip: bool,
    pub cipher_suites: String,
    pub ecdh_curves: String,
    pub min_version: String,
    pub max_version: String,
    pub alpn: String,
    pub ticket: String,
    pub fall_back: bool,
    pub extend_verify: Option<Value>,
    pub sds_source: Option<Value>,
    pub callbacks: Option<Value>,
}

// === clusters ===

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawClusterManager {
    pub clusters: Vec<RawCluster>,
    pub tls_context: Option<RawTls>,
    pub clusters_configs: String,
    pub auto_discovery: bool,
    pub registry_use_health_check: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawCluster {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sub_type: String,
    pub lb_type: String,
    pub max_request_per_conn: u32,
    pub conn_buffer_limit_bytes: u32,
    pub circuit_breakers: Vec<RawThresholds>,
    pub outlier_detection: Option<Value>,
    pub health_check: Option<Value>,
    pub spec: Option<Value>,
    pub lb_subset_config: Option<RawLbSubset>,
    pub original_dst_lb_config: Option<RawOriginalDstLb>,
    pub cluster_manager_tls: bool,
    pub tls_context: Option<RawTls>,
    pub hosts: Vec<RawHost>,
    pub connect_timeout: GoDuration,
    pub idle_timeout: GoDuration,
    pub lbconfig: Option<Value>,
    pub dns_refresh_rate: GoDuration,
    pub respect_dns_ttl: bool,
    pub dns_lookup_family: String,
    pub dns_resolvers: Option<RawDnsResolvers>,
    pub dns_resolver_file: String,
    pub dns_resolver_port: String,
    pub mark: u32,
    pub keepalive: Option<Value>,
    pub slow_start: Option<Value>,
    pub cluster_pool_enable: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawThresholds {
    pub priority: Option<Value>,
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawLbSubset {
    pub fall_back_policy: u8,
    pub default_subset: BTreeMap<String, String>,
    pub subset_selectors: Vec<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawOriginalDstLb {
    pub use_header: bool,
    pub header_name: String,
    pub replace_local: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawDnsResolvers {
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub port: String,
    pub ndots: u32,
    pub timeout: u32,
    pub attempts: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHost {
    pub address: String,
    pub hostname: String,
    pub weight: Option<u32>,
    pub metadata: Option<RawMetadata>,
    pub tls_disable: bool,
}
