//! Typed [`Config`] -> MOSN current-shape JSON (`/api/v1/config_dump`, hot-upgrade hand-off).
//!
//! The output parses back to an equal `Config`. Settings that are at their zero value are
//! left out; defaults that were filled in (timeouts, buffer sizes, weights) are written out.
//! Secrets are handled by the caller ([`Config::dump`] redacts first).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::duration::format_go_duration;
use crate::model::*;

// === object builder ===

struct Obj(Map<String, Value>);

impl Obj {
    fn new() -> Self {
        Obj(Map::new())
    }
    fn put(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_string(), value.into());
        self
    }
    fn put_if(self, cond: bool, key: &str, value: impl Into<Value>) -> Self {
        if cond {
            self.put(key, value)
        } else {
            self
        }
    }
    fn text(self, key: &str, value: &str) -> Self {
        self.put_if(!value.is_empty(), key, value)
    }
    fn flag(self, key: &str, value: bool) -> Self {
        self.put_if(value, key, value)
    }
    fn opt(self, key: &str, value: Option<Value>) -> Self {
        match value {
            Some(v) => self.put(key, v),
            None => self,
        }
    }
    fn list(self, key: &str, items: Vec<Value>) -> Self {
        self.put_if(!items.is_empty(), key, Value::Array(items))
    }
    fn strings(self, key: &str, items: &[String]) -> Self {
        self.list(key, items.iter().map(|s| Value::from(s.as_str())).collect())
    }
    fn map(self, key: &str, map: &Map<String, Value>) -> Self {
        self.put_if(!map.is_empty(), key, Value::Object(map.clone()))
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn dur(d: Duration) -> Value {
    Value::from(format_go_duration(d))
}

fn metadata(m: &BTreeMap<String, String>) -> Option<Value> {
    if m.is_empty() {
        return None;
    }
    let lb: Map<String, Value> = m
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    Some(serde_json::json!({ "filter_metadata": { "mosn.lb": lb } }))
}

fn header_options(items: &[HeaderValueOption]) -> Vec<Value> {
    items
        .iter()
        .map(|h| {
            serde_json::json!({
                "header": { "key": h.key, "value": h.value },
                "append": h.append,
            })
        })
        .collect()
}

// === top level ===

pub(crate) fn config(c: &Config) -> Value {
    let servers: Vec<Value> = c
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| server(s, if i == 0 { &c.routers } else { &[] }))
        .collect();
    let cm = Obj::new()
        .opt(
            "tls_context",
            c.cluster_manager.tls_context.as_ref().map(tls),
        )
        .flag("auto_discovery", c.cluster_manager.auto_discovery)
        .flag(
            "registry_use_health_check",
            c.cluster_manager.registry_use_health_check,
        )
        .put(
            "clusters",
            Value::Array(c.clusters.iter().map(cluster).collect()),
        )
        .done();
    let admin = Obj::new()
        .put(
            "address",
            serde_json::json!({
                "socket_address": {
                    "address": c.admin.address.ip().to_string(),
                    "port_value": c.admin.address.port(),
                }
            }),
        )
        .text("access_log_path", &c.admin.access_log_path)
        .done();
    let s = &c.sections;
    Obj::new()
        .put("servers", Value::Array(servers))
        .put("cluster_manager", cm)
        .put("admin", admin)
        .opt(
            "pid",
            c.pid_file
                .as_ref()
                .map(|p| Value::from(p.display().to_string())),
        )
        .flag("disable_upgrade", c.disable_upgrade)
        .flag("inherit_old_mosnconfig", c.inherit_old_mosnconfig)
        .opt(
            "uds_dir",
            c.uds_dir
                .as_ref()
                .map(|p| Value::from(p.display().to_string())),
        )
        .opt("tracing", s.tracing.clone())
        .opt("metrics", s.metrics.clone())
        .opt("pprof", s.pprof.clone())
        .opt("static_resources", s.static_resources.clone())
        .opt("dynamic_resources", s.dynamic_resources.clone())
        .opt("service_registry", s.service_registry.clone())
        .opt("extends", s.extends.clone())
        .opt("third_part_codec", s.third_part_codec.clone())
        .opt("node", s.node.clone())
        .opt("plugin", s.plugin.clone())
        .opt("wasm_global_plugins", s.wasm_global_plugins.clone())
        .done()
}

fn server(s: &Server, routers: &[Router]) -> Value {
    Obj::new()
        .text("mosn_server_name", &s.name)
        .put("default_log_path", s.default_log_path.to_string())
        .put("default_log_level", s.default_log_level.as_str())
        .text("default_log_roller", &s.default_log_roller)
        .put("graceful_timeout", dur(s.graceful_timeout))
        .put("processor", s.processor)
        .flag("use_netpoll_mode", s.use_netpoll_mode)
        .opt("network_backend", crate::backend::dump(&s.network_backend))
        .put(
            "listeners",
            Value::Array(s.listeners.iter().map(listener).collect()),
        )
        .list("routers", routers.iter().map(router).collect())
        .done()
}

fn listener(l: &Listener) -> Value {
    Obj::new()
        .put("name", l.name.as_str())
        .text("type", &l.listener_type)
        .put_if(l.network != Network::Tcp, "network", l.network.as_str())
        .put("address", l.address.to_string())
        .put("bind_port", l.bind_port)
        .flag("reuseport", l.reuseport)
        .opt(
            "use_original_dst",
            l.use_original_dst.map(|o| Value::from(o.as_str())),
        )
        .flag("inspector", l.inspector)
        .opt(
            "connection_idle_timeout",
            l.connection_idle_timeout.map(dur),
        )
        .put(
            "per_connection_buffer_limit_bytes",
            l.per_connection_buffer_limit_bytes,
        )
        .opt(
            "default_read_buffer_size",
            l.default_read_buffer_size.map(Value::from),
        )
        .opt(
            "log_path",
            l.log_path.as_ref().map(|p| p.to_string().into()),
        )
        .opt("log_level", l.log_level.map(|v| v.as_str().into()))
        .list(
            "access_logs",
            l.access_logs
                .iter()
                .map(|a| {
                    Obj::new()
                        .text("log_path", &a.path)
                        .text("log_format", &a.format)
                        .done()
                })
                .collect(),
        )
        .flag("handoff_restoreddestination", l.handoff_restoreddestination)
        .list(
            "listener_filters",
            l.listener_filters.iter().map(plain_filter).collect(),
        )
        .put(
            "filter_chains",
            Value::Array(l.filter_chains.iter().map(filter_chain).collect()),
        )
        .list(
            "stream_filters",
            l.stream_filters.iter().map(plain_filter).collect(),
        )
        .done()
}

fn plain_filter(f: &FilterConfig) -> Value {
    serde_json::json!({ "type": f.kind, "config": f.config })
}

fn filter_chain(c: &FilterChain) -> Value {
    Obj::new()
        .opt("match", c.filter_chain_match.clone())
        .opt("tls_context", c.tls_context.as_ref().map(tls))
        .list(
            "tls_context_set",
            c.tls_context_set.iter().map(tls).collect(),
        )
        .put(
            "filters",
            Value::Array(c.filters.iter().map(network_filter).collect()),
        )
        .done()
}

fn network_filter(f: &NetworkFilter) -> Value {
    match f {
        NetworkFilter::TcpProxy(t) => {
            serde_json::json!({ "type": "tcp_proxy", "config": tcp_proxy(t) })
        }
        NetworkFilter::Proxy(p) => serde_json::json!({ "type": "proxy", "config": proxy(p) }),
        NetworkFilter::Other { kind, config } => {
            serde_json::json!({ "type": kind, "config": config })
        }
    }
}

fn tcp_proxy(t: &TcpProxy) -> Value {
    let nets = |n: &[ipnet::IpNet]| n.iter().map(|n| Value::from(n.to_string())).collect();
    Obj::new()
        .text("stat_prefix", &t.stat_prefix)
        .opt("cluster", t.cluster.as_deref().map(Value::from))
        .opt("idle_timeout", t.idle_timeout.map(dur))
        .put("max_connect_attempts", t.max_connect_attempts)
        .list(
            "routes",
            t.routes
                .iter()
                .map(|r| {
                    Obj::new()
                        .put("cluster", r.cluster.as_str())
                        .list("source_addrs", nets(&r.source_addrs))
                        .list("destination_addrs", nets(&r.destination_addrs))
                        .opt("source_port", r.source_port.map(|p| p.to_string().into()))
                        .opt(
                            "destination_port",
                            r.destination_port.map(|p| p.to_string().into()),
                        )
                        .done()
                })
                .collect(),
        )
        .done()
}

fn proxy(p: &ProxyFilter) -> Value {
    let downstream = p
        .downstream_protocols
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",");
    Obj::new()
        .text("name", &p.name)
        .put("downstream_protocol", downstream)
        .opt(
            "upstream_protocol",
            p.upstream_protocol.map(|u| u.as_str().into()),
        )
        .put("router_config_name", p.router_config_name.as_str())
        .text("router_handler_name", &p.router_handler_name)
        .flag("validate_clusters", p.validate_clusters)
        .flag(
            "fallback_for_unknown_protocol",
            p.fallback_for_unknown_protocol,
        )
        .put_if(p.concurrency_num != 0, "concurrency_num", p.concurrency_num)
        .map("extend_config", &p.extend_config)
        .done()
}

fn tls(t: &TlsContext) -> Value {
    Obj::new()
        .put("status", t.enabled)
        .text("type", &t.kind)
        .text("server_name", &t.server_name)
        .text("ca_cert", &t.ca_cert)
        .text("cert_chain", &t.cert_chain)
        .text("private_key", &t.private_key)
        .flag("verify_client", t.verify_client)
        .flag("require_client_cert", t.require_client_cert)
        .flag("insecure_skip", t.insecure_skip)
        .text("cipher_suites", &t.cipher_suites)
        .text("ecdh_curves", &t.ecdh_curves)
        .opt("min_version", t.min_version.map(|v| v.as_str().into()))
        .opt("max_version", t.max_version.map(|v| v.as_str().into()))
        .text("alpn", &t.alpn)
        .text("ticket", &t.ticket)
        .flag("fall_back", t.fall_back)
        .opt("extend_verify", t.extend_verify.clone())
        .opt("sds_source", t.sds_source.clone())
        .opt("callbacks", t.callbacks.clone())
        .done()
}

// === routers ===

fn router(r: &Router) -> Value {
    Obj::new()
        .put("router_config_name", r.name.as_str())
        .put(
            "virtual_hosts",
            Value::Array(r.virtual_hosts.iter().map(virtual_host).collect()),
        )
        .list(
            "request_headers_to_add",
            header_options(&r.request_headers_to_add),
        )
        .strings("request_headers_to_remove", &r.request_headers_to_remove)
        .list(
            "response_headers_to_add",
            header_options(&r.response_headers_to_add),
        )
        .strings("response_headers_to_remove", &r.response_headers_to_remove)
        .done()
}

fn virtual_host(v: &VirtualHost) -> Value {
    Obj::new()
        .text("name", &v.name)
        .strings("domains", &v.domains)
        .put(
            "routers",
            Value::Array(v.routes.iter().map(route).collect()),
        )
        .opt("require_tls", v.require_tls.clone())
        .opt("virtual_clusters", v.virtual_clusters.clone())
        .map("per_filter_config", &v.per_filter_config)
        .list(
            "request_headers_to_add",
            header_options(&v.request_headers_to_add),
        )
        .strings("request_headers_to_remove", &v.request_headers_to_remove)
        .list(
            "response_headers_to_add",
            header_options(&v.response_headers_to_add),
        )
        .strings("response_headers_to_remove", &v.response_headers_to_remove)
        .done()
}

fn route(r: &Route) -> Value {
    let m = &r.matcher;
    let matcher = Obj::new()
        .text("prefix", &m.prefix)
        .text("path", &m.path)
        .text("regex", &m.regex)
        .opt("case_sensitive", m.case_sensitive.map(Value::from))
        .opt("runtime", m.runtime.clone())
        .list(
            "headers",
            m.headers
                .iter()
                .map(|h| serde_json::json!({ "name": h.name, "value": h.value, "regex": h.regex }))
                .collect(),
        )
        .list(
            "variables",
            m.variables
                .iter()
                .map(|v| {
                    Obj::new()
                        .put("name", v.name.as_str())
                        .opt("value", v.value.as_deref().map(Value::from))
                        .opt("regex", v.regex.as_deref().map(Value::from))
                        .opt("model", v.model.as_deref().map(Value::from))
                        .done()
                })
                .collect(),
        )
        .list(
            "query_parameters",
            m.query_parameters
                .iter()
                .map(|q| {
                    Obj::new()
                        .put("name", q.name.as_str())
                        .put("value", q.value.as_str())
                        .put("regex", q.regex)
                        .done()
                })
                .collect(),
        )
        .opt("dsl_expressions", m.dsl_expressions.clone())
        .done();
    Obj::new()
        .put("match", matcher)
        .put("route", route_action(&r.route))
        .opt(
            "redirect",
            r.redirect.as_ref().map(|d| {
                Obj::new()
                    .put("response_code", d.response_code)
                    .text("path_redirect", &d.path_redirect)
                    .text("host_redirect", &d.host_redirect)
                    .text("scheme_redirect", &d.scheme_redirect)
                    .done()
            }),
        )
        .opt(
            "direct_response",
            r.direct_response.as_ref().map(|d| {
                Obj::new()
                    .put("status", d.status)
                    .text("body", &d.body)
                    .done()
            }),
        )
        .opt("metadata", metadata(&r.metadata))
        .map("per_filter_config", &r.per_filter_config)
        .opt("decorator", r.decorator.clone())
        .list(
            "request_mirror_policies",
            r.mirror_policies
                .iter()
                .map(|m| {
                    Obj::new()
                        .put("cluster", m.cluster.as_str())
                        .put("percent", m.percent)
                        .done()
                })
                .collect(),
        )
        .done()
}

fn route_action(a: &RouteAction) -> Value {
    Obj::new()
        .text("cluster_name", &a.cluster_name)
        .text("cluster_header", &a.cluster_header)
        .text("cluster_variable", &a.cluster_variable)
        .list(
            "weighted_clusters",
            a.weighted_clusters
                .iter()
                .map(|w| {
                    let cluster = Obj::new()
                        .put("name", w.name.as_str())
                        .put("weight", w.weight)
                        .opt("metadata_match", metadata(&w.metadata_match))
                        .done();
                    serde_json::json!({ "cluster": cluster })
                })
                .collect(),
        )
        .opt("metadata_match", metadata(&a.metadata_match))
        .opt("timeout", a.timeout.map(dur))
        .opt(
            "retry_policy",
            a.retry_policy.as_ref().map(|r| {
                Obj::new()
                    .put("retry_on", r.retry_on)
                    .opt("retry_timeout", r.retry_timeout.map(dur))
                    .put("num_retries", r.num_retries)
                    .list(
                        "status_codes",
                        r.status_codes.iter().map(|c| Value::from(*c)).collect(),
                    )
                    .done()
            }),
        )
        .text("prefix_rewrite", &a.prefix_rewrite)
        .opt(
            "regex_rewrite",
            a.regex_rewrite.as_ref().map(|r| {
                serde_json::json!({
                    "pattern": { "regex": r.pattern },
                    "substitution": r.substitution,
                })
            }),
        )
        .text("host_rewrite", &a.host_rewrite)
        .flag("auto_host_rewrite", a.auto_host_rewrite)
        .text("auto_host_rewrite_header", &a.auto_host_rewrite_header)
        .opt(
            "upstream_protocol",
            a.upstream_protocol.map(|p| p.as_str().into()),
        )
        .list("hash_policy", a.hash_policy.clone())
        .list(
            "request_headers_to_add",
            header_options(&a.request_headers_to_add),
        )
        .strings("request_headers_to_remove", &a.request_headers_to_remove)
        .list(
            "response_headers_to_add",
            header_options(&a.response_headers_to_add),
        )
        .strings("response_headers_to_remove", &a.response_headers_to_remove)
        .done()
}

// === clusters ===

fn cluster(c: &Cluster) -> Value {
    Obj::new()
        .put("name", c.name.as_str())
        .put("type", c.kind.as_str())
        .text("sub_type", &c.sub_type)
        .put("lb_type", c.lb_type.as_str())
        .put("max_request_per_conn", c.max_request_per_conn)
        .put("conn_buffer_limit_bytes", c.conn_buffer_limit_bytes)
        .put("connect_timeout", dur(c.connect_timeout))
        .opt("idle_timeout", c.idle_timeout.map(dur))
        .list(
            "circuit_breakers",
            c.circuit_breakers
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "max_connections": t.max_connections,
                        "max_pending_requests": t.max_pending_requests,
                        "max_requests": t.max_requests,
                        "max_retries": t.max_retries,
                    })
                })
                .collect(),
        )
        .opt("health_check", c.health_check.clone())
        .opt("outlier_detection", c.outlier_detection.clone())
        .opt("spec", c.spec.clone())
        .opt(
            "lb_subset_config",
            c.lb_subset_config.as_ref().map(|s| {
                serde_json::json!({
                    "fall_back_policy": s.fall_back_policy,
                    "default_subset": s.default_subset,
                    "subset_selectors": s.subset_selectors,
                })
            }),
        )
        .opt(
            "original_dst_lb_config",
            c.original_dst_lb_config.as_ref().map(|o| {
                serde_json::json!({
                    "use_header": o.use_header,
                    "header_name": o.header_name,
                    "replace_local": o.replace_local,
                })
            }),
        )
        .flag("cluster_manager_tls", c.cluster_manager_tls)
        .opt("tls_context", c.tls_context.as_ref().map(tls))
        .put("dns_refresh_rate", dur(c.dns_refresh_rate))
        .flag("respect_dns_ttl", c.respect_dns_ttl)
        .opt(
            "dns_lookup_family",
            match c.dns_lookup_family {
                DnsLookupFamily::Auto => None,
                DnsLookupFamily::V4Only => Some("V4_ONLY".into()),
                DnsLookupFamily::V6Only => Some("V6_ONLY".into()),
            },
        )
        .opt(
            "dns_resolvers",
            c.dns_resolvers.as_ref().map(|d| {
                serde_json::json!({
                    "servers": d.servers,
                    "search": d.search,
                    "port": d.port,
                    "ndots": d.ndots,
                    "timeout": d.timeout,
                    "attempts": d.attempts,
                })
            }),
        )
        .text("dns_resolver_file", &c.dns_resolver_file)
        .text("dns_resolver_port", &c.dns_resolver_port)
        .put_if(c.mark != 0, "mark", c.mark)
        .opt("lbconfig", c.lbconfig.clone())
        .opt("keepalive", c.keepalive.clone())
        .opt("slow_start", c.slow_start.clone())
        .flag("cluster_pool_enable", c.cluster_pool_enable)
        .put("hosts", Value::Array(c.hosts.iter().map(host).collect()))
        .done()
}

fn host(h: &Host) -> Value {
    Obj::new()
        .put("address", h.address.as_str())
        .text("hostname", &h.hostname)
        .put("weight", h.weight)
        .opt("metadata", metadata(&h.metadata))
        .flag("tls_disable", h.tls_disable)
        .done()
}
