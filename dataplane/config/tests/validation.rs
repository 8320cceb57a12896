//! Go key semantics, warnings, and one test per error kind (exact `path: reason` lines).

use std::time::Duration;

use mosn_config::{
    parse_str, parse_value, ClusterType, ConfigError, Format, LbType, Loaded, NetworkFilter,
    OriginalDst, Protocol, REDACTED,
};
use serde_json::{json, Value};

// === helpers ===

/// A small valid config: one listener with a tcp_proxy, one HTTP listener with a router,
/// three clusters.
fn base() -> Value {
    json!({
        "servers": [{
            "default_log_path": "stdout",
            "listeners": [
                {
                    "name": "tcp",
                    "address": "127.0.0.1:3001",
                    "filter_chains": [{"filters": [
                        {"type": "tcp_proxy", "config": {"cluster": "c1"}}
                    ]}]
                },
                {
                    "name": "http",
                    "address": "127.0.0.1:3002",
                    "filter_chains": [{"filters": [
                        {"type": "proxy", "config": {
                            "downstream_protocol": "Http1",
                            "router_config_name": "r1"
                        }}
                    ]}]
                }
            ],
            "routers": [{
                "router_config_name": "r1",
                "virtual_hosts": [{
                    "name": "vh",
                    "domains": ["*"],
                    "routers": [
                        {"match": {"prefix": "/"}, "route": {"cluster_name": "c1"}}
                    ]
                }]
            }]
        }],
        "cluster_manager": {"clusters": [
            {"name": "c1", "type": "SIMPLE", "hosts": [{"address": "127.0.0.1:8080"}]},
            {"name": "c2", "type": "SIMPLE", "hosts": [{"address": "127.0.0.1:8081"}]},
            {"name": "dns", "type": "STRICT_DNS", "hosts": [{"address": "localhost:8082"}]}
        ]}
    })
}

/// `base()` with the value at a JSON pointer set (the parent must exist).
fn with(pointer: &str, value: Value) -> Value {
    let mut doc = base();
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key.to_string(), value);
        }
        Some(Value::Array(items)) => {
            let i: usize = key.parse().expect("an index");
            items[i] = value;
        }
        _ => panic!("no {parent} in base()"),
    }
    doc
}

fn ok(doc: &Value) -> Loaded {
    parse_value(doc).unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}"))
}

fn error_lines(doc: &Value) -> Vec<String> {
    match parse_value(doc) {
        Ok(_) => panic!("expected errors for {doc:#}"),
        Err(ConfigError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected Invalid, got {other}"),
    }
}

fn assert_one_error(doc: Value, expected: &str) {
    let lines = error_lines(&doc);
    assert_eq!(lines, [expected], "all errors: {lines:#?}");
}

fn warning_lines(loaded: &Loaded) -> Vec<String> {
    loaded.warnings.iter().map(ToString::to_string).collect()
}

const LISTENER0: &str = "/servers/0/listeners/0";
const TCP_CONFIG: &str = "/servers/0/listeners/0/filter_chains/0/filters/0/config";
const PROXY_CONFIG: &str = "/servers/0/listeners/1/filter_chains/0/filters/0/config";
const ROUTE0: &str = "/servers/0/routers/0/virtual_hosts/0/routers/0";

#[test]
fn base_is_valid_and_clean() {
    let loaded = ok(&base());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

// === Go key semantics ===

#[test]
fn struct_keys_are_case_insensitive_but_user_data_keys_are_verbatim() {
    let doc = json!({
        "Servers": [{
            "Listeners": [{
                "Name": "l1",
                "ADDRESS": "127.0.0.1:3001",
                "Filter_Chains": [{"filters": [{"type": "proxy", "config": {
                    "DownStream_Protocol": "http1",
                    "ROUTER_CONFIG_NAME": "r1"
                }}]}]
            }],
            "routers": [{
                "router_config_name": "r1",
                "virtual_hosts": [{
                    "domains": ["*"],
                    "routers": [{
                        "match": {"Headers": [{"Name": "X-Custom-Header", "Value": "v"}]},
                        "Route": {
                            "Cluster_Name": "c1",
                            "request_headers_to_add": [
                                {"header": {"key": "X-Custom-Header", "value": "1"}}
                            ]
                        }
                    }]
                }]
            }]
        }],
        "CLUSTER_MANAGER": {"Clusters": [{
            "Name": "c1",
            "Hosts": [{
                "Address": "127.0.0.1:8080",
                "Metadata": {"Filter_Metadata": {"MOSN.LB": {"Zone": "gz", "zone": "sh"}}}
            }]
        }]}
    });
    let loaded = ok(&doc);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    let listener = &c.servers[0].listeners[0];
    assert_eq!(listener.name, "l1");
    assert_eq!(listener.address.to_string(), "127.0.0.1:3001");
    let NetworkFilter::Proxy(p) = &listener.filter_chains[0].filters[0] else {
        panic!("expected proxy");
    };
    assert_eq!(p.downstream_protocols, [Protocol::Http1]);
    let route = &c.routers[0].virtual_hosts[0].routes[0];
    assert_eq!(route.matcher.headers[0].name, "X-Custom-Header");
    assert_eq!(route.route.request_headers_to_add[0].key, "X-Custom-Header");
    assert!(route.route.request_headers_to_add[0].append);
    let host = &c.clusters[0].hosts[0];
    assert_eq!(c.clusters[0].name, "c1");
    assert_eq!(host.metadata.get("Zone").map(String::as_str), Some("gz"));
    assert_eq!(host.metadata.get("zone").map(String::as_str), Some("sh"));
    assert_eq!(host.metadata.len(), 2);
}

#[test]
fn error_paths_use_the_users_spelling() {
    let doc = with(
        LISTENER0,
        json!({"NAME": "tcp", "ADDRESS": "bad", "filter_chains": [{"filters": [
            {"type": "tcp_proxy", "config": {"Cluster": "c1"}}
        ]}]}),
    );
    assert_one_error(
        doc,
        "servers[0].listeners[0].ADDRESS: invalid address \"bad\": expected ip:port such as 127.0.0.1:2045",
    );
}

#[test]
fn unknown_keys_warn_with_their_path_and_do_not_fail() {
    let mut doc = with("/servers/0/listeners/0/bogus", json!(1));
    doc["top_level_surprise"] = json!({"a": 1});
    doc.pointer_mut(TCP_CONFIG)
        .and_then(Value::as_object_mut)
        .map(|m| m.insert("not_a_key".into(), json!(true)));
    // A key inside a user-data map is data, never "unknown".
    doc.pointer_mut("/cluster_manager/clusters/0/hosts/0")
        .and_then(Value::as_object_mut)
        .map(|m| {
            m.insert(
                "metadata".into(),
                json!({"filter_metadata": {"mosn.lb": {"anything": "x"}}}),
            )
        });
    let loaded = ok(&doc);
    // Filter configs are decoded once their type is known, so their warnings come last.
    assert_eq!(
        warning_lines(&loaded),
        [
            "servers[0].listeners[0].bogus: unknown key, ignored",
            "top_level_surprise: unknown key, ignored",
            "servers[0].listeners[0].filter_chains[0].filters[0].config.not_a_key: unknown key, ignored",
        ]
    );
}

#[test]
fn null_means_absent_and_later_duplicate_keys_win() {
    let doc = with(
        "/cluster_manager/clusters/1",
        json!({"name": "c2", "Name": "c2", "lb_type": null, "hosts": [{"address": "127.0.0.1:1"}]}),
    );
    let loaded = ok(&doc);
    assert_eq!(loaded.config.clusters[1].lb_type, LbType::RoundRobin);
    assert_eq!(
        warning_lines(&loaded),
        ["cluster_manager.clusters[1].name: ignored: key \"Name\" sets the same field later"]
    );
}

// === defaults and MOSN behaviours ===

#[test]
fn defaults_are_filled_in() {
    let c = ok(&base()).config;
    let s = &c.servers[0];
    assert_eq!(s.graceful_timeout, Duration::from_secs(30));
    let l = &s.listeners[0];
    assert!(l.bind_port);
    assert_eq!(l.per_connection_buffer_limit_bytes, 32 * 1024);
    assert_eq!(l.connection_idle_timeout, None);
    let cl = &c.clusters[0];
    assert_eq!(cl.lb_type, LbType::RoundRobin);
    assert_eq!(cl.max_request_per_conn, 1024);
    assert_eq!(cl.conn_buffer_limit_bytes, 16 * 1024);
    assert_eq!(cl.connect_timeout, Duration::from_secs(10));
    assert_eq!(cl.dns_refresh_rate, Duration::from_secs(5));
    assert_eq!(cl.hosts[0].weight, 1);
    assert_eq!(c.admin.address.to_string(), "127.0.0.1:34901");
    assert_eq!(c.pid_file, None);
    let mut no_log_path = base();
    no_log_path["servers"][0]
        .as_object_mut()
        .map(|m| m.remove("default_log_path"));
    assert_eq!(
        ok(&no_log_path).config.servers[0].default_log_path,
        mosn_config::LogPath::File("/home/admin/mosn/logs/mosn.log".into())
    );
}

#[test]
fn host_weights_are_clamped_with_a_warning() {
    let doc = with(
        "/cluster_manager/clusters/0/hosts",
        json!([
            {"address": "127.0.0.1:1", "weight": 500},
            {"address": "127.0.0.1:2", "weight": 0},
            {"address": "127.0.0.1:3", "weight": 128},
            {"address": "127.0.0.1:4"}
        ]),
    );
    let loaded = ok(&doc);
    let weights: Vec<u32> = loaded.config.clusters[0]
        .hosts
        .iter()
        .map(|h| h.weight)
        .collect();
    assert_eq!(weights, [128, 1, 128, 1]);
    assert_eq!(
        warning_lines(&loaded),
        [
            "cluster_manager.clusters[0].hosts[0].weight: weight 500 out of range 1..=128; clamped to 128",
            "cluster_manager.clusters[0].hosts[1].weight: weight 0 out of range 1..=128; clamped to 1",
        ]
    );
}

#[test]
fn negative_or_fractional_host_weight_is_an_error() {
    let doc = with(
        "/cluster_manager/clusters/0/hosts",
        json!([
            {"address": "127.0.0.1:1", "weight": -1},
            {"address": "127.0.0.1:2", "weight": 1.5}
        ]),
    );
    assert_eq!(
        error_lines(&doc),
        [
            "cluster_manager.clusters[0].hosts[0].weight: expected an integer in 0..=4294967295, found integer `-1`",
            "cluster_manager.clusters[0].hosts[1].weight: expected an integer in 0..=4294967295, found floating point `1.5`",
        ]
    );
}

#[test]
fn unknown_lb_type_falls_back_to_round_robin_with_a_warning() {
    let doc = with("/cluster_manager/clusters/0/lb_type", json!("LB_FANCY"));
    let loaded = ok(&doc);
    assert_eq!(loaded.config.clusters[0].lb_type, LbType::RoundRobin);
    let warnings = warning_lines(&loaded);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with(
            "cluster_manager.clusters[0].lb_type: UNKNOWN LOAD BALANCER \"LB_FANCY\": falling back to LB_ROUNDROBIN"
        ),
        "{warnings:?}"
    );
}

#[test]
fn lb_type_names_and_cluster_types() {
    let doc = with(
        "/cluster_manager/clusters/1",
        json!({"name": "c2", "type": "ORIGINAL_DST", "lb_type": "LB_RANDOM"}),
    );
    let loaded = ok(&doc);
    assert_eq!(loaded.config.clusters[1].kind, ClusterType::OriginalDst);
    assert_eq!(loaded.config.clusters[1].lb_type, LbType::OriginalDst);
    assert_eq!(loaded.warnings.len(), 1);

    for (name, lb) in [
        ("LB_RANDOM", LbType::Random),
        ("LB_ROUNDROBIN", LbType::RoundRobin),
        ("LB_WEIGHTED_ROUNDROBIN", LbType::WeightedRoundRobin),
        ("LB_LEAST_REQUEST", LbType::LeastRequest),
        ("LB_LEAST_CONNECTION", LbType::LeastConnection),
        ("LB_REQUEST_ROUNDROBIN", LbType::RequestRoundRobin),
        ("LB_MAGLEV", LbType::Maglev),
        ("LB_PEAK_EWMA", LbType::PeakEwma),
        ("LB_ORIGINAL_DST", LbType::OriginalDst),
    ] {
        let c = ok(&with("/cluster_manager/clusters/0/lb_type", json!(name))).config;
        assert_eq!(c.clusters[0].lb_type, lb, "{name}");
    }

    for kind in ["STATIC", "DYNAMIC", "EDS", "WHATEVER"] {
        let loaded = ok(&with("/cluster_manager/clusters/0/type", json!(kind)));
        assert_eq!(loaded.config.clusters[0].kind, ClusterType::Simple);
        assert_eq!(
            warning_lines(&loaded),
            [format!(
                "cluster_manager.clusters[0].type: cluster type \"{kind}\" is not supported; using SIMPLE (as MOSN does)"
            )]
        );
    }
}

#[test]
fn legacy_x_protocol_and_protocol_lists() {
    let doc = with(
        PROXY_CONFIG,
        json!({
            "downstream_protocol": "X",
            "upstream_protocol": "Http2",
            "router_config_name": "r1",
            "extend_config": {"sub_protocol": "bolt"}
        }),
    );
    let c = ok(&doc).config;
    let NetworkFilter::Proxy(p) = &c.servers[0].listeners[1].filter_chains[0].filters[0] else {
        panic!("expected proxy");
    };
    assert_eq!(p.downstream_protocols, [Protocol::Bolt]);
    assert_eq!(p.upstream_protocol, Some(Protocol::Http2));

    let doc = with(
        PROXY_CONFIG,
        json!({"downstream_protocol": "Http1, bolt,dubbo", "router_config_name": "r1"}),
    );
    let c = ok(&doc).config;
    let NetworkFilter::Proxy(p) = &c.servers[0].listeners[1].filter_chains[0].filters[0] else {
        panic!("expected proxy");
    };
    assert_eq!(
        p.downstream_protocols,
        [Protocol::Http1, Protocol::Bolt, Protocol::Dubbo]
    );
    assert_eq!(p.upstream_protocol, None);

    assert_one_error(
        with(
            PROXY_CONFIG,
            json!({"downstream_protocol": "X", "router_config_name": "r1"}),
        ),
        "servers[0].listeners[1].filter_chains[0].filters[0].config.downstream_protocol: protocol \"X\" needs extend_config.sub_protocol (or name the codec directly, e.g. \"bolt\")",
    );
}

#[test]
fn tcp_routes_accept_mosn_go_field_names_and_cidr_objects() {
    let doc = with(
        TCP_CONFIG,
        json!({
            "routes": [{
                "cluster": "c1",
                "SourceAddrs": [{"address": "10.1.2.3", "length": 8}],
                "DestinationAddrs": ["2001:db8::/32"],
                "SourcePort": "8080",
                "destination_port": 9000
            }],
            "idle_timeout": 90_000_000_000u64
        }),
    );
    let c = ok(&doc).config;
    let NetworkFilter::TcpProxy(t) = &c.servers[0].listeners[0].filter_chains[0].filters[0] else {
        panic!("expected tcp_proxy");
    };
    assert_eq!(t.cluster, None);
    assert_eq!(t.idle_timeout, Some(Duration::from_secs(90)));
    let r = &t.routes[0];
    assert_eq!(r.source_addrs[0].to_string(), "10.0.0.0/8");
    assert_eq!(r.destination_addrs[0].to_string(), "2001:db8::/32");
    assert_eq!(r.source_port.map(|p| (p.start, p.end)), Some((8080, 8080)));
    assert_eq!(
        r.destination_port.map(|p| (p.start, p.end)),
        Some((9000, 9000))
    );
}

#[test]
fn listener_options() {
    let doc = with(
        LISTENER0,
        json!({
            "address": "0.0.0.0:15001",
            "bind_port": false,
            "use_original_dst": "tproxy",
            "connection_idle_timeout": "1m30s",
            "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c1"}}]}]
        }),
    );
    let c = ok(&doc).config;
    let l = &c.servers[0].listeners[0];
    assert_eq!(l.name, "0.0.0.0:15001");
    assert!(!l.bind_port);
    assert_eq!(l.use_original_dst, Some(OriginalDst::Tproxy));
    assert_eq!(l.connection_idle_timeout, Some(Duration::from_secs(90)));

    let legacy = with("/servers/0/listeners/0/use_original_dst", json!(true));
    assert_eq!(
        ok(&legacy).config.servers[0].listeners[0].use_original_dst,
        Some(OriginalDst::Redirect)
    );
}

#[test]
fn processor_accepts_numbers_and_auto() {
    let auto = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (value, expected) in [
        (json!(3), 3),
        (json!("4"), 4),
        (json!("auto"), auto),
        (json!("AUTO"), auto),
        (json!(0), auto),
        (json!(-2), auto),
    ] {
        let c = ok(&with("/servers/0/processor", value.clone())).config;
        assert_eq!(c.servers[0].processor, expected, "{value}");
    }
    let loaded = ok(&with("/servers/0/processor", json!("many")));
    assert_eq!(loaded.config.servers[0].processor, auto);
    assert_eq!(
        warning_lines(&loaded),
        ["servers[0].processor: \"many\" is neither a number nor \"auto\"; using \"auto\""]
    );
}

#[test]
fn admin_section() {
    let mut doc = base();
    doc["admin"] =
        json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}});
    assert_eq!(ok(&doc).config.admin.address.to_string(), "127.0.0.1:0");
    doc["admin"] =
        json!({"address": {"socket_address": {"address": "0.0.0.0", "port_value": 34901}}});
    let loaded = ok(&doc);
    assert_eq!(
        warning_lines(&loaded),
        ["admin.address.socket_address.address: the admin API will listen on all interfaces; prefer 127.0.0.1"]
    );
    doc["admin"] =
        json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 70000}}});
    assert_one_error(
        doc,
        "admin.address.socket_address.port_value: port 70000 out of range 0..=65535",
    );
}

// === one test per error kind ===

#[test]
fn err_unparsable_listener_address() {
    assert_one_error(
        with("/servers/0/listeners/0/address", json!("localhost")),
        "servers[0].listeners[0].address: invalid address \"localhost\": expected ip:port such as 127.0.0.1:2045",
    );
}

#[test]
fn err_missing_listener_address() {
    let mut doc = base();
    doc["servers"][0]["listeners"][0]
        .as_object_mut()
        .map(|m| m.remove("address"));
    assert_one_error(
        doc,
        "servers[0].listeners[0].address: address is required (ip:port)",
    );
}

#[test]
fn err_unparsable_simple_host_address() {
    assert_one_error(
        with(
            "/cluster_manager/clusters/0/hosts/0/address",
            json!("localhost:8080"),
        ),
        "cluster_manager.clusters[0].hosts[0].address: invalid address \"localhost:8080\": expected ip:port such as 127.0.0.1:8080",
    );
}

#[test]
fn err_strict_dns_host_without_port() {
    assert_one_error(
        with(
            "/cluster_manager/clusters/2/hosts/0/address",
            json!("example.com"),
        ),
        "cluster_manager.clusters[2].hosts[0].address: STRICT_DNS host must be host:port, got \"example.com\" (missing port)",
    );
}

#[test]
fn err_unknown_protocol() {
    assert_one_error(
        with(&format!("{PROXY_CONFIG}/downstream_protocol"), json!("Http3")),
        "servers[0].listeners[1].filter_chains[0].filters[0].config.downstream_protocol: unknown protocol \"Http3\" (known: Http1, Http2, Auto, SofaRpc, bolt, boltv2, dubbo, dubbo-thrift, tars, X (+ extend_config.sub_protocol))",
    );
}

#[test]
fn err_route_names_missing_cluster() {
    assert_one_error(
        with(&format!("{ROUTE0}/route/cluster_name"), json!("nope")),
        "servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name: cluster \"nope\" does not exist",
    );
}

#[test]
fn err_tcp_proxy_names_missing_cluster() {
    assert_one_error(
        with(&format!("{TCP_CONFIG}/cluster"), json!("nope")),
        "servers[0].listeners[0].filter_chains[0].filters[0].config.cluster: cluster \"nope\" does not exist",
    );
}

#[test]
fn err_tcp_route_names_missing_cluster() {
    assert_one_error(
        with(TCP_CONFIG, json!({"routes": [{"cluster": "nope"}]})),
        "servers[0].listeners[0].filter_chains[0].filters[0].config.routes[0].cluster: cluster \"nope\" does not exist",
    );
}

#[test]
fn err_weighted_cluster_names_missing_cluster() {
    assert_one_error(
        with(
            &format!("{ROUTE0}/route"),
            json!({"weighted_clusters": [
                {"cluster": {"name": "c1", "weight": 50}},
                {"cluster": {"name": "nope", "weight": 50}}
            ]}),
        ),
        "servers[0].routers[0].virtual_hosts[0].routers[0].route.weighted_clusters[1].cluster.name: cluster \"nope\" does not exist",
    );
}

#[test]
fn err_weighted_cluster_weight_out_of_range() {
    assert_one_error(
        with(
            &format!("{ROUTE0}/route"),
            json!({"weighted_clusters": [
                {"cluster": {"name": "c1", "weight": 150}},
                {"cluster": {"name": "c2", "weight": 10}}
            ]}),
        ),
        "servers[0].routers[0].virtual_hosts[0].routers[0].route.weighted_clusters[0].cluster.weight: weight 150 out of range 0..=100",
    );
    assert_one_error(
        with(
            &format!("{ROUTE0}/route"),
            json!({"weighted_clusters": [{"cluster": {"name": "c1", "weight": 0}}]}),
        ),
        "servers[0].routers[0].virtual_hosts[0].routers[0].route.weighted_clusters: weights sum to 0; at least one weight must be positive",
    );
}

#[test]
fn err_proxy_names_missing_router() {
    assert_one_error(
        with(&format!("{PROXY_CONFIG}/router_config_name"), json!("nope")),
        "servers[0].listeners[1].filter_chains[0].filters[0].config.router_config_name: router \"nope\" does not exist",
    );
}

#[test]
fn err_duplicate_listener_names() {
    assert_one_error(
        with("/servers/0/listeners/1/name", json!("tcp")),
        "servers[0].listeners[1].name: duplicate listener name \"tcp\" (also servers[0].listeners[0])",
    );
}

#[test]
fn err_duplicate_listener_addresses() {
    assert_one_error(
        with("/servers/0/listeners/1/address", json!("127.0.0.1:3001")),
        "servers[0].listeners[1].address: duplicate listener address 127.0.0.1:3001 (also servers[0].listeners[0])",
    );
}

#[test]
fn err_duplicate_cluster_names() {
    assert_one_error(
        with("/cluster_manager/clusters/1/name", json!("c1")),
        "cluster_manager.clusters[1].name: duplicate cluster name \"c1\" (also cluster_manager.clusters[0])",
    );
}

#[test]
fn err_empty_cluster_name() {
    assert_one_error(
        with("/cluster_manager/clusters/1/name", json!("")),
        "cluster_manager.clusters[1].name: cluster name is empty",
    );
}

#[test]
fn err_invalid_cidr() {
    assert_one_error(
        with(
            TCP_CONFIG,
            json!({"cluster": "c1", "routes": [{"cluster": "c2", "source_addrs": ["10.0.0.0/33"]}]}),
        ),
        "servers[0].listeners[0].filter_chains[0].filters[0].config.routes[0].source_addrs[0]: invalid CIDR \"10.0.0.0/33\" (expected e.g. \"10.0.0.0/8\")",
    );
    assert_one_error(
        with(
            TCP_CONFIG,
            json!({"routes": [{"cluster": "c2", "destination_addrs": [{"address": "10.0.0.0", "length": 40}]}]}),
        ),
        "servers[0].listeners[0].filter_chains[0].filters[0].config.routes[0].destination_addrs[0].length: invalid CIDR: prefix length 40 is too long for 10.0.0.0",
    );
}

#[test]
fn err_invalid_port_range() {
    assert_one_error(
        with(
            TCP_CONFIG,
            json!({"routes": [{"cluster": "c2", "source_port": "9000-80"}]}),
        ),
        "servers[0].listeners[0].filter_chains[0].filters[0].config.routes[0].source_port: invalid port range \"9000-80\" (expected \"PORT\" or \"FIRST-LAST\" within 0..=65535)",
    );
}

#[test]
fn err_invalid_durations() {
    assert_one_error(
        with("/cluster_manager/clusters/0/connect_timeout", json!("10x")),
        "cluster_manager.clusters[0].connect_timeout: invalid duration \"10x\": unknown unit \"x\" (use ns, us, ms, s, m or h)",
    );
    assert_one_error(
        with("/cluster_manager/clusters/0/connect_timeout", json!(10)),
        "cluster_manager.clusters[0].connect_timeout: invalid duration 10: missing unit (write e.g. \"10s\" or \"10ms\")",
    );
    assert_one_error(
        with("/servers/0/graceful_timeout", json!("-5s")),
        "servers[0].graceful_timeout: invalid duration \"-5s\": must not be negative",
    );
}

#[test]
fn err_invalid_log_level() {
    assert_one_error(
        with("/servers/0/default_log_level", json!("LOUD")),
        "servers[0].default_log_level: invalid log level \"LOUD\" (expected TRACE, DEBUG, INFO, WARN, ERROR or FATAL)",
    );
}

#[test]
fn err_invalid_regex() {
    assert_one_error(
        with(&format!("{ROUTE0}/match"), json!({"regex": "^/(unclosed"})),
        "servers[0].routers[0].virtual_hosts[0].routers[0].match.regex: invalid regex \"^/(unclosed\": unclosed group",
    );
    assert_one_error(
        with(
            &format!("{ROUTE0}/match"),
            json!({"headers": [{"name": "x", "value": "[a-", "regex": true}]}),
        ),
        "servers[0].routers[0].virtual_hosts[0].routers[0].match.headers[0].value: invalid regex \"[a-\": unclosed character class",
    );
}

#[test]
fn err_route_without_target() {
    assert_one_error(
        with(&format!("{ROUTE0}/route"), json!({"prefix_rewrite": "/x"})),
        "servers[0].routers[0].virtual_hosts[0].routers[0].route: route has no cluster_name, cluster_header, cluster_variable, weighted_clusters, redirect or direct_response",
    );
}

#[test]
fn err_wrong_json_type() {
    assert_one_error(
        with("/servers/0/listeners/0/bind_port", json!("yes")),
        "servers[0].listeners[0].bind_port: expected a boolean (true or false), found string \"yes\"",
    );
}

#[test]
fn err_tls_context_and_set_together() {
    let doc = with(
        "/servers/0/listeners/0/filter_chains/0",
        json!({
            "tls_context": {"status": true},
            "tls_context_set": [{"status": true}],
            "filters": [{"type": "tcp_proxy", "config": {"cluster": "c1"}}]
        }),
    );
    assert_one_error(
        doc,
        "servers[0].listeners[0].filter_chains[0].tls_context_set: tls_context and tls_context_set are mutually exclusive",
    );
}

#[test]
fn err_duplicate_router_names() {
    let mut doc = base();
    let router = doc["servers"][0]["routers"][0].clone();
    let mut other = router.clone();
    other["virtual_hosts"][0]["routers"][0]["route"]["cluster_name"] = json!("c2");
    doc["servers"][0]["routers"] = json!([router.clone(), router, other]);
    // An identical duplicate is folded silently; a different one is an error.
    assert_one_error(
        doc,
        "servers[0].routers[2].router_config_name: duplicate router_config_name \"r1\" (also servers[0].routers[0])",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut doc = base();
    doc["servers"][0]["default_log_level"] = json!("LOUD");
    doc["servers"][0]["listeners"][0]["address"] = json!("nope");
    doc["servers"][0]["listeners"][1]["bind_port"] = json!(1);
    doc["servers"][0]["listeners"][1]["filter_chains"][0]["filters"][0]["config"]
        ["downstream_protocol"] = json!("Http9");
    doc["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][0]["route"]["cluster_name"] =
        json!("ghost");
    doc["cluster_manager"]["clusters"][0]["hosts"][0]["weight"] = json!("heavy");
    doc["cluster_manager"]["clusters"][1]["connect_timeout"] = json!("soon");
    doc["cluster_manager"]["clusters"][2]["hosts"][0]["address"] = json!("no-port");

    let err = parse_value(&doc).expect_err("invalid");
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let expected_prefixes = [
        "servers[0].listeners[1].bind_port: expected a boolean",
        "cluster_manager.clusters[0].hosts[0].weight: expected an integer",
        "cluster_manager.clusters[1].connect_timeout: invalid duration \"soon\"",
        "cluster_manager.clusters[2].hosts[0].address: STRICT_DNS host must be host:port",
        "servers[0].default_log_level: invalid log level \"LOUD\"",
        "servers[0].listeners[0].address: invalid address \"nope\"",
        "servers[0].listeners[1].filter_chains[0].filters[0].config.downstream_protocol: unknown protocol \"Http9\"",
        "servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name: cluster \"ghost\" does not exist",
    ];
    assert_eq!(lines.len(), expected_prefixes.len(), "{text}");
    for prefix in expected_prefixes {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "missing {prefix:?} in:\n{text}"
        );
    }
    assert_eq!(err.diagnostics().len(), expected_prefixes.len());
}

#[test]
fn syntax_errors_have_positions() {
    match parse_str("{\n  \"servers\": [\n}", Format::Json) {
        Err(ConfigError::Syntax { line, column, .. }) => {
            assert_eq!(line, 3);
            assert!(column >= 1);
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    match parse_str("servers:\n  - name: [unclosed\n", Format::Yaml) {
        Err(ConfigError::Syntax { line, format, .. }) => {
            assert_eq!(format, Format::Yaml);
            assert!(line >= 2);
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn hostile_inputs_never_panic() {
    for text in [
        "", "null", "[]", "1", "\"x\"", "{\"servers\": 5}", "{\"servers\": [null, 1, []]}",
        "{\"cluster_manager\": {\"clusters\": [{\"hosts\": [{\"weight\": 1e400}]}]}}",
        "{\"servers\": [{\"listeners\": [{\"filter_chains\": [{\"filters\": [{\"type\": \"proxy\", \"config\": []}]}]}]}]}",
        "{\"servers\": [{\"processor\": {}}]}",
        "{\"servers\": [{\"graceful_timeout\": \"99999999999999999999h\"}]}",
    ] {
        let _ = parse_str(text, Format::Json);
    }
    for text in [
        "",
        "~",
        "- 1",
        "servers: x",
        "a: !!binary AAAA",
        "? [a]\n: b",
    ] {
        let _ = parse_str(text, Format::Yaml);
    }
}

// === dump ===

#[test]
fn dump_redacts_secrets_and_round_trips() {
    let mut doc = base();
    doc["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = json!({
        "status": true,
        "cert_chain": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "private_key": "-----BEGIN PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END PRIVATE KEY-----",
        "ticket": "SESSIONTICKETKEY",
        "min_version": "tlsv1_2",
        "alpn": "h2,http/1.1"
    });
    doc["cluster_manager"]["clusters"][1]["tls_context"] = json!({
        "status": true, "server_name": "upstream.local", "private_key": "CLIENTKEY"
    });
    let config = ok(&doc).config;
    let dump = config.dump();
    let text = serde_json::to_string_pretty(&dump).expect("serializes");
    assert!(!text.contains("SECRETKEYMATERIAL"), "{text}");
    assert!(!text.contains("SESSIONTICKETKEY"), "{text}");
    assert!(!text.contains("CLIENTKEY"), "{text}");
    assert!(text.contains(REDACTED));
    assert!(!format!("{config:?}").contains("SECRETKEYMATERIAL"));
    // Serialize for Config is the redacted dump.
    assert_eq!(serde_json::to_value(&config).expect("serializes"), dump);

    let again = parse_str(&text, Format::Json).expect("dump loads").config;
    assert_eq!(again, config.redacted());
    assert_ne!(again, config);

    let with_secrets = config.dump_with_secrets();
    assert_eq!(parse_value(&with_secrets).expect("loads").config, config);
}

#[test]
fn dump_writes_the_current_shape() {
    let dump = ok(&base()).config.dump();
    assert_eq!(dump["servers"][0]["routers"][0]["router_config_name"], "r1");
    assert_eq!(dump["servers"][0]["graceful_timeout"], "30s");
    assert_eq!(
        dump["cluster_manager"]["clusters"][0]["connect_timeout"],
        "10s"
    );
    assert_eq!(
        dump["cluster_manager"]["clusters"][0]["lb_type"],
        "LB_ROUNDROBIN"
    );
    assert_eq!(
        dump["admin"]["address"]["socket_address"]["port_value"],
        34901
    );
}

#[test]
fn yaml_anchors_merge_keys_and_scalar_keys() {
    let text = r#"
defaults: &cluster_defaults
  type: SIMPLE
  lb_type: LB_RANDOM
  connect_timeout: 3s
servers: []
cluster_manager:
  clusters:
    - <<: *cluster_defaults
      name: a
      hosts: [{address: "127.0.0.1:1", metadata: {filter_metadata: {mosn.lb: {1: one, true: yes}}}}]
"#;
    let loaded = parse_str(text, Format::Yaml).expect("loads");
    let c = &loaded.config.clusters[0];
    assert_eq!(c.lb_type, LbType::Random);
    assert_eq!(c.connect_timeout, Duration::from_secs(3));
    assert_eq!(
        c.hosts[0].metadata.get("1").map(String::as_str),
        Some("one")
    );
    assert_eq!(
        c.hosts[0].metadata.get("true").map(String::as_str),
        Some("yes")
    );
    assert_eq!(warning_lines(&loaded), ["defaults: unknown key, ignored"]);
}
