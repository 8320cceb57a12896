//! Integration tests of the userspace (smoltcp) transport over `phy::Loopback`, with and
//! without a `FaultInjector`. Addresses are in 198.18.0.0/15; nothing touches the kernel
//! network.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mosn_net::userspace::{
    loopback, PollMode, StackConfig, StackDevice, UserspaceStack, UserspaceTransport,
    DEFAULT_BUFFER,
};
use mosn_net::{Connection, ListenSpec, Listener, Transport};
use smoltcp::phy::{FaultInjector, Loopback, Medium};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr, Ipv6Cidr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn cidr() -> Ipv4Cidr {
    Ipv4Cidr::new(ADDR, 15)
}

fn any_port() -> SocketAddr {
    SocketAddr::new(ADDR.into(), 0)
}

/// Runs `f` on a current-thread runtime inside a `LocalSet`, like a worker, with a deadline.
fn run<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        tokio::time::timeout(Duration::from_secs(120), f)
            .await
            .expect("test timed out")
    })
}

/// A loopback transport with its driver spawned.
fn start_loopback() -> UserspaceTransport<Loopback> {
    let (t, driver) = loopback(cidr()).unwrap();
    tokio::task::spawn_local(driver);
    t
}

/// A transport over any device with its driver spawned.
fn start<D: StackDevice + 'static>(device: D, config: StackConfig) -> UserspaceTransport<D> {
    let stack = UserspaceStack::new(device, config).unwrap();
    tokio::task::spawn_local(stack.run());
    UserspaceTransport::new(stack)
}

fn ip_config() -> StackConfig {
    StackConfig::new(HardwareAddress::Ip, vec![IpCidr::Ipv4(cidr())])
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Spawns an echo server (echo until EOF, then shut down) and returns its address.
fn spawn_echo_server<T: Transport>(t: &T) -> SocketAddr {
    let mut listener = t.listen(&ListenSpec::new(any_port())).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::task::spawn_local(async move {
        while let Ok(accepted) = listener.accept().await {
            tokio::task::spawn_local(async move {
                let (mut r, mut w) = tokio::io::split(accepted.stream);
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
        }
    });
    addr
}

/// Writes `data` (then FIN) while reading everything back.
async fn echo_roundtrip<C: Connection>(conn: C, data: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(conn);
    let writer = tokio::task::spawn_local(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    drop(writer.await.unwrap());
    out
}

/// Waits until `cond` holds, checking every 10 ms, for at most `limit`.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[test]
fn echo_one_mib_byte_identical() {
    run(async {
        let t = start_loopback();
        let addr = spawn_echo_server(&t);
        let conn = t.connect(addr).await.unwrap();
        assert_eq!(conn.peer_addr().unwrap(), addr);
        assert_eq!(conn.local_addr().unwrap().ip(), addr.ip());
        let data = payload(1 << 20, 1);
        let started = std::time::Instant::now();
        let back = echo_roundtrip(conn, data.clone()).await;
        let elapsed = started.elapsed();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "echoed bytes differ");
        // smoltcp's minimum RTO is 1 s: a transfer that waited for a retransmission or
        // zero-window-probe timer on a lossless loopback took at least that long.
        assert!(
            elapsed < Duration::from_millis(900),
            "echo stalled: {elapsed:?}"
        );
    });
}

#[test]
fn fifty_concurrent_connections() {
    run(async {
        let t = start_loopback();
        let addr = spawn_echo_server(&t);
        let mut tasks = Vec::new();
        for i in 0..50u64 {
            let t = t.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let conn = t.connect(addr).await.unwrap();
                let data = payload(64 * 1024 + i as usize * 37, i + 100);
                let back = echo_roundtrip(conn, data.clone()).await;
                assert!(back == data, "connection {i}: echoed bytes differ");
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let stack = t.stack().clone();
        assert!(
            eventually(Duration::from_secs(5), || stack.stats().conns == 0).await,
            "connections left: {:?}",
            stack.stats()
        );
    });
}

#[test]
fn half_close_client_first() {
    run(async {
        let t = start_loopback();
        let mut listener = t.listen(&ListenSpec::new(any_port())).unwrap();
        let addr = listener.local_addr().unwrap();
        let response = payload(200 * 1024, 7);
        let expected = response.clone();
        let server = tokio::task::spawn_local(async move {
            let mut conn = listener.accept().await.unwrap().stream;
            let mut request = Vec::new();
            conn.read_to_end(&mut request).await.unwrap();
            assert_eq!(request, b"request");
            // The client's write side is closed; ours is open: answer after its EOF.
            conn.write_all(&response).await.unwrap();
            conn.shutdown().await.unwrap();
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        });
        let mut conn = t.connect(addr).await.unwrap();
        conn.write_all(b"request").await.unwrap();
        conn.shutdown().await.unwrap();
        let err = conn.write_all(b"late").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        // Let our receive window fill up and close, so that the server, whose peer closed
        // first, must see a window update before it can send the rest and its FIN.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        let elapsed = started.elapsed();
        assert!(got == expected, "response differs");
        assert!(
            elapsed < Duration::from_millis(900),
            "stalled after a zero window: {elapsed:?}"
        );
        // EOF is sticky.
        assert_eq!(conn.read(&mut [0u8; 16]).await.unwrap(), 0);
        server.await.unwrap();
    });
}

#[test]
fn half_close_server_first() {
    run(async {
        let t = start_loopback();
        let mut listener = t.listen(&ListenSpec::new(any_port())).unwrap();
        let addr = listener.local_addr().unwrap();
        let upload = payload(300 * 1024, 9);
        let expected = upload.clone();
        let server = tokio::task::spawn_local(async move {
            let mut conn = listener.accept().await.unwrap().stream;
            conn.write_all(b"greeting").await.unwrap();
            conn.shutdown().await.unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut conn = t.connect(addr).await.unwrap();
        let mut greeting = Vec::new();
        conn.read_to_end(&mut greeting).await.unwrap();
        assert_eq!(greeting, b"greeting");
        // The server's FIN does not close our write side.
        conn.write_all(&upload).await.unwrap();
        conn.shutdown().await.unwrap();
        let got = server.await.unwrap();
        assert!(got == expected, "upload differs");
    });
}

#[test]
fn connect_without_listener_is_refused() {
    run(async {
        let t = start_loopback();
        let err = t
            .connect(SocketAddr::new(ADDR.into(), 9))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let stack = t.stack().clone();
        assert!(
            eventually(Duration::from_secs(2), || {
                let s = stack.stats();
                s.sockets == 0 && s.conns == 0 && s.ports == 0
            })
            .await,
            "refused connection leaked: {:?}",
            stack.stats()
        );
    });
}

#[test]
fn listener_port_zero_gets_a_real_port() {
    run(async {
        let t = start_loopback();
        let listener = t.listen(&ListenSpec::new(any_port())).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        assert_eq!(addr.ip(), std::net::IpAddr::V4(ADDR));
        let err = t.listen(&ListenSpec::new(addr)).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // An address the interface does not have.
        let err = t
            .listen(&ListenSpec::new("198.19.9.9:80".parse().unwrap()))
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        // 0.0.0.0 binds every interface address.
        let mut wildcard = t
            .listen(&ListenSpec::new("0.0.0.0:8080".parse().unwrap()))
            .unwrap();
        let conn = t.connect(SocketAddr::new(ADDR.into(), 8080)).await.unwrap();
        let accepted = wildcard.accept().await.unwrap();
        assert_eq!(accepted.local, SocketAddr::new(ADDR.into(), 8080));
        assert_eq!(accepted.peer, conn.local_addr().unwrap());
        drop(listener);
        // The port is free again.
        t.listen(&ListenSpec::new(addr)).unwrap();
    });
}

#[test]
fn thousand_connect_close_cycles_do_not_grow_the_socket_set() {
    run(async {
        let t = start_loopback();
        let stack = t.stack().clone();
        let mut listener = t.listen(&ListenSpec::new(any_port())).unwrap();
        let addr = listener.local_addr().unwrap();
        let baseline = stack.stats();
        let mut peak = 0;
        for i in 0..1000 {
            let mut client = t.connect(addr).await.unwrap();
            let mut server = listener.accept().await.unwrap().stream;
            if i % 2 == 0 {
                // Client closes first.
                client.write_all(b"ping").await.unwrap();
                drop(client);
                let mut got = Vec::new();
                server.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"ping");
                drop(server);
            } else {
                // Server closes first.
                server.write_all(b"pong").await.unwrap();
                drop(server);
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"pong");
                drop(client);
            }
            peak = peak.max(stack.stats().sockets);
        }
        assert!(peak <= baseline.sockets + 8, "socket set grew to {peak}");
        assert!(
            eventually(Duration::from_secs(5), || stack.stats().sockets
                == baseline.sockets
                && stack.stats().conns == 0)
            .await,
            "leaked: baseline {baseline:?}, now {:?}",
            stack.stats()
        );
        assert_eq!(stack.stats().ports, 1, "only the listener holds a port");
    });
}

#[test]
fn writer_to_a_peer_that_never_reads_is_held_back() {
    run(async {
        let mut config = ip_config();
        config.rx_buffer = 8 * 1024;
        config.tx_buffer = 8 * 1024;
        let t = start(Loopback::new(Medium::Ip), config);
        let mut listener = t.listen(&ListenSpec::new(any_port())).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = t.connect(addr).await.unwrap();
        let mut server = listener.accept().await.unwrap().stream;

        let chunk = [0x5a_u8; 1024];
        let mut written = 0usize;
        loop {
            match tokio::time::timeout(Duration::from_millis(300), client.write(&chunk)).await {
                Ok(n) => written += n.unwrap(),
                Err(_) => break,
            }
            assert!(
                written <= 64 * 1024,
                "writer is not held back ({written} bytes)"
            );
        }
        // At most the peer's receive buffer plus our transmit buffer.
        assert!(written >= 8 * 1024, "only {written} bytes before blocking");
        assert!(written <= 16 * 1024, "{written} bytes buffered");

        // Once the peer reads, the writer makes progress again.
        let mut sink = vec![0u8; 64 * 1024];
        let mut read = 0;
        while read < written {
            read += server.read(&mut sink).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), client.write_all(&chunk))
            .await
            .expect("writer still blocked after the peer read")
            .unwrap();
    });
}

#[test]
fn dropped_packets_are_retransmitted() {
    run(async {
        let mut device = FaultInjector::new(Loopback::new(Medium::Ip), 0x5eed);
        device.set_drop_chance(2);
        let t = start(device, ip_config());
        let addr = spawn_echo_server(&t);
        let conn = t.connect(addr).await.unwrap();
        let data = payload(256 * 1024, 3);
        let back = echo_roundtrip(conn, data.clone()).await;
        assert!(back == data, "echo over a lossy link differs");
        // Frames were lost on the way (dropped on transmit or on receive).
        let stats = t.stack().stats();
        assert!(
            stats.tx_packets > stats.rx_packets,
            "no packet was dropped: {stats:?}"
        );
    });
}

#[test]
fn unread_data_on_drop_resets_the_peer() {
    run(async {
        let t = start_loopback();
        let mut listener = t.listen(&ListenSpec::new(any_port())).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = t.connect(addr).await.unwrap();
        let server = listener.accept().await.unwrap().stream;
        client.write_all(b"never read").await.unwrap();
        let stack = t.stack().clone();
        // Wait until the bytes sit in the server's receive buffer, then drop it unread.
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(server);
        let err = client.read(&mut [0u8; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        let err = client.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        drop(client);
        assert!(
            eventually(Duration::from_secs(2), || stack.stats().conns == 0).await,
            "{:?}",
            stack.stats()
        );
    });
}

#[test]
fn idle_stack_does_not_spin() {
    run(async {
        let t = start_loopback();
        let stack = t.stack().clone();
        let addr = spawn_echo_server(&t);
        let mut conn = t.connect(addr).await.unwrap();
        conn.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).await.unwrap();
        // Let delayed ACKs go out, then measure an idle period.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = stack.stats().rounds;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rounds = stack.stats().rounds - before;
        assert!(rounds <= 5, "{rounds} driver rounds while idle");
    });
}

#[test]
fn ethernet_medium_echo() {
    run(async {
        let config = StackConfig::new(
            HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0, 0, 1])),
            vec![IpCidr::Ipv4(cidr())],
        );
        let t = start(Loopback::new(Medium::Ethernet), config);
        let addr = spawn_echo_server(&t);
        let conn = t.connect(addr).await.unwrap();
        let data = payload(100 * 1024, 11);
        assert!(echo_roundtrip(conn, data.clone()).await == data);
    });
}

#[test]
fn config_errors_are_errors_not_panics() {
    let mismatch = StackConfig::new(
        HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0, 0, 1])),
        vec![IpCidr::Ipv4(cidr())],
    );
    assert!(UserspaceStack::new(Loopback::new(Medium::Ip), mismatch).is_err());
    let multicast_mac = StackConfig::new(
        HardwareAddress::Ethernet(EthernetAddress([0x01, 0, 0x5e, 0, 0, 1])),
        vec![IpCidr::Ipv4(cidr())],
    );
    assert!(UserspaceStack::new(Loopback::new(Medium::Ethernet), multicast_mac).is_err());
    let mut no_buffer = ip_config();
    no_buffer.rx_buffer = 0;
    assert!(UserspaceStack::new(Loopback::new(Medium::Ip), no_buffer).is_err());
    assert_eq!(ip_config().rx_buffer, DEFAULT_BUFFER);
}

#[test]
fn ipv6_needs_an_ipv6_address() {
    run(async {
        // An IPv4-only stack has no IPv6 source address and no IPv6 address to listen on.
        let t = start_loopback();
        let err = t
            .connect("[fd00::1]:80".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
        let err = t
            .listen(&ListenSpec::new("[fd00::2]:80".parse().unwrap()))
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
    });
}

#[test]
fn dual_stack_serves_both_families() {
    run(async {
        let v6: std::net::Ipv6Addr = "fd00:198:18::1".parse().unwrap();
        let config = StackConfig::new(
            HardwareAddress::Ip,
            vec![IpCidr::Ipv4(cidr()), IpCidr::Ipv6(Ipv6Cidr::new(v6, 64))],
        );
        let t = start(Loopback::new(Medium::Ip), config);
        // `::` takes both families, as 0.0.0.0 does.
        let mut any = t
            .listen(&ListenSpec::new("[::]:7000".parse().unwrap()))
            .unwrap();
        let mut own6 = t
            .listen(&ListenSpec::new(SocketAddr::new(v6.into(), 7001)))
            .unwrap();
        assert_eq!(own6.local_addr().unwrap(), SocketAddr::new(v6.into(), 7001));
        for (to, on_own6) in [
            (SocketAddr::new(v6.into(), 7000), false),
            (SocketAddr::new(ADDR.into(), 7000), false),
            (SocketAddr::new(v6.into(), 7001), true),
        ] {
            let listener = if on_own6 { &mut own6 } else { &mut any };
            let conn = t.connect(to).await.unwrap();
            // The connection leaves from the stack's address of the peer's family.
            assert_eq!(conn.local_addr().unwrap().is_ipv6(), to.is_ipv6(), "{to}");
            let accepted = listener.accept().await.unwrap();
            assert_eq!(accepted.stream.local_addr().unwrap(), to);
            let (mut a, mut c) = (accepted.stream, conn);
            c.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            a.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping", "{to}");
        }
    });
}

#[test]
fn driver_keeps_running_while_a_listener_lives() {
    run(async {
        let (t, driver) = loopback(cidr()).unwrap();
        let driver = tokio::task::spawn_local(driver);
        let addr = spawn_echo_server(&t);
        let conn = t.connect(addr).await.unwrap();
        let back = echo_roundtrip(conn, b"bye".to_vec()).await;
        assert_eq!(back, b"bye");
        // The echo server task still holds its listener; nothing else does once `t` goes.
        drop(t);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !driver.is_finished(),
            "driver quit while a listener is alive"
        );
    });
}

#[test]
fn driver_returns_once_everything_is_closed() {
    run(async {
        let (t, driver) = loopback(cidr()).unwrap();
        let driver = tokio::task::spawn_local(driver);
        let mut listener = t.listen(&ListenSpec::new(any_port())).unwrap();
        let client = t.connect(listener.local_addr().unwrap()).await.unwrap();
        let server = listener.accept().await.unwrap().stream;
        drop((client, server, listener, t));
        tokio::time::timeout(Duration::from_secs(5), driver)
            .await
            .expect("driver still running")
            .unwrap();
    });
}

#[test]
fn syns_beyond_the_backlog_are_refused() {
    run(async {
        let t = start_loopback();
        let mut spec = ListenSpec::new(any_port());
        spec.backlog = 2;
        let mut listener = t.listen(&spec).unwrap();
        let addr = listener.local_addr().unwrap();
        // Five connects in one burst, nobody accepting yet.
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let t = t.clone();
                tokio::task::spawn_local(async move { t.connect(addr).await })
            })
            .collect();
        let mut ok = Vec::new();
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(conn) => ok.push(conn),
                Err(err) => {
                    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
                    refused += 1;
                }
            }
        }
        assert_eq!((ok.len(), refused), (2, 3));
        for _ in 0..2 {
            listener.accept().await.unwrap();
        }
        // The backlog has room again.
        t.connect(addr).await.unwrap();
        listener.accept().await.unwrap();
    });
}

#[test]
fn abandoned_connect_does_not_leak() {
    run(async {
        let t = start_loopback();
        let stack = t.stack().clone();
        // In the subnet but not ours: on a loopback the SYN comes back and is dropped,
        // so the handshake never finishes and the caller's timeout gives up.
        let nowhere = SocketAddr::new(Ipv4Addr::new(198, 18, 0, 99).into(), 80);
        let res = tokio::time::timeout(Duration::from_millis(100), t.connect(nowhere)).await;
        assert!(res.is_err(), "connect to nowhere finished: {res:?}");
        assert!(
            eventually(Duration::from_secs(2), || {
                let s = stack.stats();
                s.sockets == 0 && s.conns == 0 && s.ports == 0
            })
            .await,
            "abandoned connect leaked: {:?}",
            stack.stats()
        );
    });
}

#[test]
fn busy_poll_mode_moves_data_too() {
    run(async {
        let mut config = ip_config();
        config.poll_mode = PollMode::Busy;
        let t = start(Loopback::new(Medium::Ip), config);
        let addr = spawn_echo_server(&t);
        let conn = t.connect(addr).await.unwrap();
        let data = payload(128 * 1024, 5);
        assert!(echo_roundtrip(conn, data.clone()).await == data);
        // Busy mode never sleeps: the driver keeps polling while idle.
        let before = t.stack().stats().rounds;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(t.stack().stats().rounds > before);
    });
}
