//! The shipped configs: every file in `configs/` loads, the reference deployment has the
//! expected shape, YAML and JSON agree, and dumps round-trip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mosn_config::{
    load, parse_str, ClusterType, Format, LbType, LogLevel, LogPath, NetworkFilter, Protocol,
};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn config_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .expect("configs/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json" | "yaml" | "yml")
            )
        })
        .collect();
    files.sort();
    files
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[test]
fn every_file_in_configs_loads() {
    let files = config_files();
    assert!(
        files.len() >= 4,
        "expected the shipped configs, found {files:?}"
    );
    for file in files {
        match load(&file) {
            Ok(loaded) => {
                // Shipped examples should be clean, not only valid.
                assert!(
                    loaded.warnings.is_empty(),
                    "{}: unexpected warnings:\n{}",
                    file.display(),
                    loaded
                        .warnings
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            Err(e) => panic!("{} does not load:\n{e}", file.display()),
        }
    }
}

#[test]
fn reference_mesh_has_the_expected_shape() {
    let loaded = load(&configs_dir().join("reference-mesh.json")).expect("reference loads");
    let c = &loaded.config;

    assert_eq!(c.servers.len(), 1);
    let server = &c.servers[0];
    assert_eq!(server.default_log_path, LogPath::Stdout);
    assert_eq!(server.default_log_level, LogLevel::Info);
    assert_eq!(server.graceful_timeout, Duration::from_secs(30));
    assert!(server.processor >= 1);

    let names: Vec<&str> = server.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["serverListener", "clientListener"]);
    assert_eq!(server.listeners[0].address, addr("127.0.0.1:2046"));
    assert_eq!(server.listeners[1].address, addr("127.0.0.1:2045"));
    assert!(server.listeners.iter().all(|l| l.bind_port));

    // Clusters are named with "Name" in the file (Go matches keys case-insensitively).
    let clusters: Vec<&str> = c.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clusters, ["serverCluster", "clientCluster"]);
    for cluster in &c.clusters {
        assert_eq!(cluster.kind, ClusterType::Simple);
        assert_eq!(cluster.lb_type, LbType::Random);
        assert_eq!(cluster.max_request_per_conn, 1024);
        assert_eq!(cluster.conn_buffer_limit_bytes, 32768);
        assert_eq!(cluster.connect_timeout, Duration::from_secs(10));
        assert_eq!(cluster.hosts.len(), 1);
        assert_eq!(cluster.hosts[0].weight, 1);
    }
    assert_eq!(
        c.cluster("serverCluster")
            .map(|c| c.hosts[0].address.as_str()),
        Some("127.0.0.1:8080")
    );

    // The legacy connection_manager filters became router tables.
    let routers: Vec<&str> = c.routers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routers, ["server_router", "client_router"]);
    let route = &c.routers[0].virtual_hosts[0].routes[0];
    assert_eq!(c.routers[0].virtual_hosts[0].domains, ["*"]);
    assert_eq!(route.route.cluster_name, "serverCluster");
    assert_eq!(route.matcher.headers[0].name, "service");
    assert_eq!(route.matcher.headers[0].value, ".*");
    assert!(!route.matcher.headers[0].regex);
    assert_eq!(
        c.router("client_router")
            .map(|r| r.virtual_hosts[0].routes[0].route.cluster_name.as_str()),
        Some("clientCluster")
    );

    // Each chain keeps only the proxy filter; `tls_context: {}` means no TLS.
    let proxy = |i: usize| {
        let chain = &server.listeners[i].filter_chains[0];
        assert!(chain.tls_context.is_none());
        assert_eq!(chain.filters.len(), 1);
        match &chain.filters[0] {
            NetworkFilter::Proxy(p) => p.clone(),
            other => panic!("expected a proxy filter, got {other:?}"),
        }
    };
    let server_proxy = proxy(0);
    assert_eq!(server_proxy.downstream_protocols, [Protocol::Http2]);
    assert_eq!(server_proxy.upstream_protocol, Some(Protocol::SofaRpc));
    assert_eq!(server_proxy.router_config_name, "server_router");
    let client_proxy = proxy(1);
    assert_eq!(client_proxy.downstream_protocols, [Protocol::SofaRpc]);
    assert_eq!(client_proxy.upstream_protocol, Some(Protocol::Http2));
    assert_eq!(client_proxy.router_config_name, "client_router");

    assert_eq!(c.admin.address, addr("127.0.0.1:34901"));
}

#[test]
fn quickstart_points_at_its_own_admin_api() {
    let c = load(&configs_dir().join("quickstart.json"))
        .expect("quickstart loads")
        .config;
    let listener = &c.servers[0].listeners[0];
    assert_eq!(listener.name, "quickstart");
    assert_eq!(listener.address, addr("127.0.0.1:2045"));
    let NetworkFilter::Proxy(proxy) = &listener.filter_chains[0].filters[0] else {
        panic!("expected the L7 proxy filter");
    };
    assert_eq!(proxy.router_config_name, "quickstart_router");
    let router = c
        .routers
        .iter()
        .find(|r| r.name == "quickstart_router")
        .expect("quickstart router");
    let routes = &router.virtual_hosts[0].routes;
    assert_eq!(routes[0].route.cluster_name, "admin_api");
    assert_eq!(routes[0].matcher.prefix, "/api/");
    let direct = routes[1].direct_response.as_ref().expect("direct response");
    assert_eq!(direct.status, 200);
    let cluster = c.cluster("admin_api").expect("admin_api cluster");
    assert_eq!(cluster.hosts[0].socket_addr(), Some(c.admin.address));
    assert_eq!(c.admin.address, addr("127.0.0.1:34901"));
    assert_eq!(c.servers[0].default_log_path, LogPath::Stdout);
    assert_eq!(c.servers[0].default_log_level, LogLevel::Info);
    assert_eq!(
        c.servers[0].processor,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

#[test]
fn dpdk_tap_runs_its_listeners_on_the_userspace_stack() {
    let c = load(&configs_dir().join("dpdk-tap.json"))
        .expect("dpdk-tap loads")
        .config;
    let server = &c.servers[0];
    let dpdk = server.network_backend.dpdk().expect("a DPDK backend");
    assert_eq!(server.network_backend.as_str(), "dpdk");
    assert_eq!(dpdk.port, "net_tap0");
    assert!(dpdk
        .eal_args
        .iter()
        .any(|a| a == "net_tap0,iface=mosn-tap0"));
    assert!(dpdk.eal_args.iter().any(|a| a == "--no-pci"));
    assert_eq!(dpdk.address.to_string(), "198.18.3.2/24");
    assert_eq!(dpdk.gateway, Some(std::net::Ipv4Addr::new(198, 18, 3, 1)));
    assert_eq!(dpdk.queues, 1);
    let addrs: Vec<SocketAddr> = server.listeners.iter().map(|l| l.address).collect();
    assert_eq!(addrs, [addr("0.0.0.0:8080"), addr("0.0.0.0:9000")]);
    let NetworkFilter::TcpProxy(tcp) = &server.listeners[1].filter_chains[0].filters[0] else {
        panic!("expected tcp_proxy");
    };
    let peer = c
        .cluster(tcp.cluster.as_deref().expect("a cluster"))
        .expect("tap_peer");
    assert_eq!(peer.hosts[0].socket_addr(), Some(addr("198.18.3.1:9001")));
    let router = c.router("dpdk_router").expect("dpdk_router");
    let direct = router.virtual_hosts[0].routes[0]
        .direct_response
        .as_ref()
        .expect("direct response");
    assert_eq!(direct.status, 200);
    assert_eq!(direct.body, "hello from mosn over DPDK\n");
}

#[test]
fn current_shape_yaml_equals_json() {
    let json = load(&configs_dir().join("current-shape.json")).expect("json loads");
    let yaml = load(&configs_dir().join("current-shape.yaml")).expect("yaml loads");
    assert_eq!(json.config, yaml.config);
    assert_eq!(json.warnings, yaml.warnings);

    let c = &json.config;
    assert_eq!(c.servers[0].listeners.len(), 2);
    let NetworkFilter::TcpProxy(tcp) = &c.servers[0].listeners[0].filter_chains[0].filters[0]
    else {
        panic!("expected tcp_proxy");
    };
    assert_eq!(tcp.routes[0].source_addrs.len(), 2);
    assert_eq!(tcp.routes[0].source_addrs[1].to_string(), "192.168.0.0/16");
    assert_eq!(
        tcp.routes[1].source_port.map(|p| (p.start, p.end)),
        Some((1024, 65535))
    );
    let NetworkFilter::Proxy(proxy) = &c.servers[0].listeners[1].filter_chains[0].filters[0] else {
        panic!("expected proxy");
    };
    assert_eq!(
        proxy.downstream_protocols,
        [Protocol::Http1, Protocol::Http2]
    );
    assert_eq!(
        c.cluster("static_assets").map(|c| c.kind),
        Some(ClusterType::StrictDns)
    );
    assert_eq!(
        c.cluster("static_assets").map(|c| c.dns_refresh_rate),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        c.cluster("api_v1").map(|c| c.lb_type),
        Some(LbType::WeightedRoundRobin)
    );
}

#[test]
fn shipped_configs_round_trip_through_dump() {
    for file in config_files() {
        let c = load(&file).expect("loads").config;
        let dumped = c.dump().to_string();
        let again = parse_str(&dumped, Format::Json)
            .unwrap_or_else(|e| panic!("{}: dump does not load:\n{e}\n{dumped}", file.display()));
        assert!(
            again.warnings.is_empty(),
            "{}: {:?}",
            file.display(),
            again.warnings
        );
        assert_eq!(again.config, c, "{}", file.display());
    }
}
