//! L4 end to end, in process: the tcp_proxy listener on 127.0.0.1:0 in front of real
//! upstreams, driven by real sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfers_arrive_intact_both_ways_on_many_connections() {
    let up = echo_server().await;
    let server = start_server(&tcp_proxy_config(&[up], "", ""));
    let addr = server.listener_addr("l4").unwrap();
    // One 32 MiB transfer and 16 concurrent 1 MiB transfers, echoed back byte for byte.
    let big = payload(32 << 20, 7);
    let mut tasks = vec![tokio::spawn({
        let big = big.clone();
        async move { roundtrip(addr, &big).await == big }
    })];
    for i in 0..16 {
        tasks.push(tokio::spawn(async move {
            let data = payload(1 << 20, 100 + i);
            roundtrip(addr, &data).await == data
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "bytes differ");
    }
    let reg = server.registry();
    let total = reg
        .value(
            "listener",
            &[("listener", "l4")],
            "downstream_connection_total",
        )
        .unwrap();
    assert_eq!(total, 17);
    let sent = reg
        .value(
            "cluster",
            &[("cluster", "up")],
            "upstream_bytes_write_total",
        )
        .unwrap();
    assert_eq!(sent, (32 << 20) + 16 * (1 << 20));
    let read = reg
        .value(
            "listener",
            &[("listener", "l4")],
            "downstream_bytes_write_total",
        )
        .unwrap();
    assert_eq!(read, sent);
    server.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_is_passed_on_in_both_directions() {
    // Upstream: read the request to EOF, then answer and close (client half-closes first).
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut req = Vec::new();
        s.read_to_end(&mut req).await.unwrap();
        s.write_all(format!("got {} bytes", req.len()).as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        // Second connection: upstream half-closes first, then still reads the client.
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"banner").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"client data after upstream FIN");
    });
    let server = start_server(&tcp_proxy_config(&[up], "", ""));
    let addr = server.listener_addr("l4").unwrap();

    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&payload(100_000, 1)).await.unwrap();
    c.shutdown().await.unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "got 100000 bytes");

    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut banner = Vec::new();
    c.read_to_end(&mut banner).await.unwrap(); // EOF from the upstream's FIN
    assert_eq!(banner, b"banner");
    c.write_all(b"client data after upstream FIN")
        .await
        .unwrap();
    c.shutdown().await.unwrap();
    let mut more = [0u8; 1];
    assert_eq!(c.read(&mut more).await.unwrap(), 0);
    server.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connect_closes_the_downstream_and_retries_another_host() {
    let dead = dead_addr();
    // Only a dead host: the downstream connection is closed promptly and counted.
    let server = start_server(&tcp_proxy_config(&[dead], "", ""));
    let addr = server.listener_addr("l4").unwrap();
    let start = Instant::now();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(start.elapsed() < Duration::from_secs(2));
    let fails = server
        .registry()
        .value(
            "cluster",
            &[("cluster", "up")],
            "upstream_connection_connect_fail",
        )
        .unwrap();
    assert_eq!(fails, 1);
    server.drain();

    // A dead and a live host with two attempts: every connection gets through.
    let live = echo_server().await;
    let server = start_server(&tcp_proxy_config(
        &[dead, live],
        r#", "max_connect_attempts": 2"#,
        "",
    ));
    let addr = server.listener_addr("l4").unwrap();
    for i in 0..6 {
        let data = payload(1000, i);
        assert_eq!(roundtrip(addr, &data).await, data);
    }
    let fails = server
        .registry()
        .value(
            "host",
            &[("cluster", "up"), ("host", &dead.to_string())],
            "upstream_connection_connect_fail",
        )
        .unwrap();
    assert!(fails >= 1, "the dead host was tried");
    server.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed_after_the_idle_timeout() {
    let up = echo_server().await;
    let server = start_server(&tcp_proxy_config(&[up], r#", "idle_timeout": "600ms""#, ""));
    let addr = server.listener_addr("l4").unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    // Traffic keeps it alive past the timeout...
    for _ in 0..4 {
        c.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // ...silence closes it.
    let quiet = Instant::now();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
        .await
        .expect("closed by the idle timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    server.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_closes_only_its_own_session() {
    // Upstream: the first connection is reset mid-transfer, the others echo.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            if std::mem::take(&mut first) {
                tokio::spawn(async move {
                    let mut b = vec![0u8; 10_000];
                    let _ = s.read_exact(&mut b).await;
                    socket2::SockRef::from(&s)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                    drop(s); // RST
                });
            } else {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        }
    });
    let server = start_server(&tcp_proxy_config(&[up], "", ""));
    let addr = server.listener_addr("l4").unwrap();
    let mut doomed = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let healthy = tokio::spawn(async move {
        let data = payload(4 << 20, 9);
        roundtrip(addr, &data).await == data
    });
    doomed.write_all(&payload(10_000, 3)).await.unwrap();
    let mut b = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), doomed.read_to_end(&mut b))
        .await
        .expect("the reset session is closed");
    assert!(
        r.is_err() || b.is_empty(),
        "no data after an upstream reset"
    );
    assert!(healthy.await.unwrap(), "the healthy session lost bytes");
    server.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_stops_the_proxy_from_reading_the_client() {
    // The upstream accepts and never reads: the client's writes must stall after the kernel
    // buffers and the proxy's bounded buffer fill, instead of the proxy buffering everything.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    });
    let server = start_server(&tcp_proxy_config(&[up], "", ""));
    let addr = server.listener_addr("l4").unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let chunk = vec![1u8; 64 * 1024];
    let mut written = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), c.write_all(&chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break, // stalled: back-pressure reached the client
        }
        assert!(
            written < 256 << 20,
            "no back-pressure after {written} bytes"
        );
    }
    let in_proxy = server
        .registry()
        .value(
            "listener",
            &[("listener", "l4")],
            "downstream_bytes_read_total",
        )
        .unwrap() as usize;
    // What the proxy has taken from the client but could not hand to the upstream is at most
    // its buffer plus what the kernel would queue towards the upstream.
    assert!(written > 0);
    assert!(in_proxy <= written);
    hold.abort();
    server.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_stops_accepting_and_lets_open_sessions_finish() {
    let up = echo_server().await;
    let server = start_server(&tcp_proxy_config(&[up], "", ""));
    let addr = server.listener_addr("l4").unwrap();
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"before").await.unwrap();
    let mut b = [0u8; 6];
    open.read_exact(&mut b).await.unwrap();
    assert_eq!(server.active_connections(), 1);

    server.begin_drain();
    let drained = std::thread::spawn(move || {
        let start = Instant::now();
        let left = server.drain();
        (left, start.elapsed())
    });
    // New connections are refused once the listeners are closed.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match TcpStream::connect(addr).await {
            Err(_) => break,
            Ok(mut s) => {
                // Accepted by the backlog just before the close: it must not be served.
                let mut b = [0u8; 1];
                let _ = s.write_all(b"x").await;
                let r = tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await;
                assert!(
                    !matches!(r, Ok(Ok(1))),
                    "a new connection was served while draining"
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "listener still accepting while draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The open session still works.
    open.write_all(b"during").await.unwrap();
    open.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"during");
    open.shutdown().await.unwrap();
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).await.unwrap();
    let (left, took) = tokio::task::spawn_blocking(move || drained.join().unwrap())
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert!(
        took < Duration::from_secs(2),
        "drain waited for nothing: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_reports_listener_and_cluster_metrics() {
    let up = echo_server().await;
    let server = start_server(&tcp_proxy_config(&[up], "", ""));
    let addr = server.listener_addr("l4").unwrap();
    let data = payload(5000, 5);
    assert_eq!(roundtrip(addr, &data).await, data);
    let admin = server.admin_addr().unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(admin, "/stats/prometheus"))
        .await
        .unwrap();
    assert!(status.contains("200"), "{status}");
    assert!(
        body.contains("mosn_listener_downstream_connection_total{listener=\"l4\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("mosn_listener_downstream_bytes_read_total{listener=\"l4\"} 5000"),
        "{body}"
    );
    assert!(
        body.contains("mosn_cluster_upstream_connection_total{cluster=\"up\"} 1"),
        "{body}"
    );
    let (_, dump) = tokio::task::spawn_blocking(move || http_get(admin, "/api/v1/config_dump"))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert!(dump.contains("\"up\""), "{v}");
    let (_, stats) = tokio::task::spawn_blocking(move || http_get(admin, "/api/v1/stats"))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        v["cluster"]["cluster=up"]["upstream_bytes_write_total"],
        5000
    );
    server.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_reset_closes_its_upstream_and_spares_the_others() {
    // The upstream reports when its side of a session ends.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let ended_tx = ended_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut total = 0usize;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total += n;
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = ended_tx.send(total);
            });
        }
    });
    let server = start_server(&tcp_proxy_config(&[up], "", ""));
    let addr = server.listener_addr("l4").unwrap();
    let healthy = tokio::spawn(async move {
        let data = payload(8 << 20, 11);
        roundtrip(addr, &data).await == data
    });
    let doomed = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = doomed.into_split();
    w.write_all(&payload(20_000, 12)).await.unwrap();
    let mut echoed = vec![0u8; 20_000];
    r.read_exact(&mut echoed).await.unwrap();
    let doomed = r.reunite(w).unwrap();
    socket2::SockRef::from(&doomed)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(doomed); // RST towards the proxy
                  // The proxy closes the upstream side of the reset session.
    let first = tokio::time::timeout(Duration::from_secs(5), ended_rx.recv())
        .await
        .expect("the upstream of the reset session is closed")
        .unwrap();
    assert!(first == 20_000 || first == 8 << 20, "{first}");
    assert!(healthy.await.unwrap(), "the healthy session lost bytes");
    server.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuseport_workers_all_serve_one_address() {
    let up = echo_server().await;
    let cfg = tcp_proxy_config(&[up], "", "")
        .replace(
            "\"bind_port\": true",
            "\"bind_port\": true, \"reuseport\": true",
        )
        .replace("\"processor\": 2", "\"processor\": 4");
    assert!(cfg.contains("\"reuseport\": true"));
    let server = start_server(&cfg);
    let addr = server.listener_addr("l4").unwrap();
    let mut tasks = Vec::new();
    for i in 0..64 {
        tasks.push(tokio::spawn(async move {
            let data = payload(10_000, 200 + i);
            roundtrip(addr, &data).await == data
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(
        server.registry().value(
            "listener",
            &[("listener", "l4")],
            "downstream_connection_total"
        ),
        Some(64)
    );
    server.drain();
}
