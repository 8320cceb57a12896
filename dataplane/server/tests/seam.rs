//! The transport seam, proven: the very same accept loop (`serve_listener`), `tcp_proxy`,
//! cluster manager and `pipe` run over kernel sockets and over the smoltcp userspace stack
//! (on its loopback device, 198.18.0.1 — no kernel network involved), with identical results.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mosn_metrics::Registry;
use mosn_net::kernel::KernelTransport;
use mosn_net::userspace;
use mosn_net::{Connection, ListenSpec, Listener, Transport};
use mosn_proxy::cluster::{ClusterKind, ClusterManager, ClusterSpec, HostSource};
use mosn_proxy::lb::LbType;
use mosn_proxy::tcp_proxy::{ListenerCtx, TcpProxySpec};
use mosn_server::worker::{
    serve_listener, ListenerRuntime, ListenerStats, NetworkFilter, Shared, Snapshot,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

fn payload(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) ^ seed) as u8)
        .collect()
}

async fn echo<T: Transport>(mut l: T::Listener) {
    loop {
        let Ok(acc) = l.accept().await else { return };
        tokio::task::spawn_local(async move {
            let (mut r, mut w) = tokio::io::split(acc.stream);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

async fn roundtrip<T: Transport>(t: T, addr: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let conn = t.connect(addr).await.expect("connect through the proxy");
    assert_eq!(conn.peer_addr().unwrap(), addr);
    let (mut r, mut w) = tokio::io::split(conn);
    let writer = tokio::task::spawn_local(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap(); // half-close: the echo still answers
        w
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    drop(writer.await.unwrap());
    back
}

/// Runs the proxy over `t` in front of an echo upstream on `t`, with a second cluster whose
/// only host refuses connections. Returns (bytes through the listener, connect failures).
async fn run_proxy_over<T: Transport>(t: T, ip: &str) -> (i128, i128)
where
    T::Conn: Send,
{
    let any = |ip: &str| -> SocketAddr { format!("{ip}:0").parse().unwrap() };
    let echo_l = t.listen(&ListenSpec::new(any(ip))).unwrap();
    let echo_addr = echo_l.local_addr().unwrap();
    tokio::task::spawn_local(echo::<T>(echo_l));
    // A port with no listener: the stack answers SYN with RST.
    let dead: SocketAddr = format!("{ip}:{}", echo_addr.port().wrapping_add(1000).max(1024))
        .parse()
        .unwrap();

    let registry = Registry::new();
    let cm = Arc::new(ClusterManager::new(registry.clone()));
    for (name, host) in [("echo", echo_addr), ("dead", dead)] {
        cm.add_or_update(ClusterSpec {
            name: name.into(),
            kind: ClusterKind::Simple,
            lb: LbType::RoundRobin,
            hosts: vec![HostSource {
                address: host.to_string(),
                hostname: String::new(),
                weight: 1,
                metadata: Default::default(),
                tls_disable: false,
            }],
            connect_timeout: std::time::Duration::from_secs(3),
            max_request_per_conn: 1024,
            subset: Default::default(),
            conn_buffer_limit_bytes: 16 * 1024,
            tls: None,
        })
        .unwrap();
    }
    let shared = Arc::new(Shared::new(cm));
    let mut listeners = HashMap::new();
    let mut addrs = Vec::new();
    let (drain_tx, drain_rx) = watch::channel(false);
    for (name, cluster) in [("seam", "echo"), ("refused", "dead")] {
        let stats = ListenerStats::new(&registry, name);
        let runtime = ListenerRuntime {
            use_original_dst: false,
            tls: None,
            ctx: ListenerCtx {
                name: Arc::from(name),
                buffer_limit: 32 * 1024,
                idle_timeout: None,
                bytes_in: stats.bytes_in.clone(),
                bytes_out: stats.bytes_out.clone(),
            },
            filter: NetworkFilter::TcpProxy(TcpProxySpec {
                stat_prefix: name.into(),
                cluster: Some(cluster.into()),
                routes: vec![],
                idle_timeout: None,
                max_connect_attempts: 1,
            }),
        };
        listeners.insert(Arc::from(name), Arc::new((runtime, stats)));
        let l = t.listen(&ListenSpec::new(any(ip))).unwrap();
        addrs.push(l.local_addr().unwrap());
        tokio::task::spawn_local(serve_listener(
            mosn_stream::pool::Pools::new(t.clone(), 16),
            l,
            Arc::from(name),
            shared.clone(),
            drain_rx.clone(),
        ));
    }
    shared.snapshot.store(Arc::new(Snapshot {
        listeners,
        by_addr: Default::default(),
    }));
    let (proxy, refused) = (addrs[0], addrs[1]);

    // 8 concurrent sessions of 256 KiB each, echoed back intact through the proxy.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let data = payload(256 * 1024, i);
        let t = t.clone();
        tasks.push(tokio::task::spawn_local(async move {
            roundtrip(t, proxy, data.clone()).await == data
        }));
    }
    for task in tasks {
        assert!(
            task.await.unwrap(),
            "bytes differ over {}",
            std::any::type_name::<T>()
        );
    }
    // A refused upstream closes the downstream connection cleanly.
    let conn = t.connect(refused).await.unwrap();
    let (mut r, _w) = tokio::io::split(conn);
    let mut b = Vec::new();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), r.read_to_end(&mut b))
        .await
        .expect("closed after the refused connect")
        .unwrap_or(0);
    assert_eq!(n, 0);

    let _ = drain_tx.send(true);
    let bytes = registry
        .value(
            "listener",
            &[("listener", "seam")],
            "downstream_bytes_read_total",
        )
        .unwrap();
    let fails = registry
        .value(
            "cluster",
            &[("cluster", "dead")],
            "upstream_connection_connect_fail",
        )
        .unwrap();
    (bytes, fails)
}

#[test]
fn the_same_proxy_code_runs_over_kernel_sockets_and_smoltcp() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let kernel = local.block_on(&rt, run_proxy_over(KernelTransport::default(), "127.0.0.1"));

    let local = tokio::task::LocalSet::new();
    let user = local.block_on(&rt, async {
        let cidr = smoltcp::wire::Ipv4Cidr::new(smoltcp::wire::Ipv4Address::new(198, 18, 0, 1), 24);
        let (t, driver) = userspace::loopback(cidr).unwrap();
        tokio::task::spawn_local(driver);
        let r = run_proxy_over(t.clone(), "198.18.0.1").await;
        t.stack().shutdown();
        r
    });
    assert_eq!(kernel, (8 * 256 * 1024, 1));
    assert_eq!(user, kernel, "kernel and userspace runs differ");
}
