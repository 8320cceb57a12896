//! The real `mosn` binary: exit codes, validate, start/stop, SIGTERM drain, and the
//! quickstart (a direct response, and a route to the process's own admin API).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn mosn(args: &[&str]) -> std::process::Output {
    Command::new(mosn_bin())
        .args(args)
        .output()
        .expect("run mosn")
}

#[test]
fn version_prints_the_package_version() {
    let out = mosn(&["version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn validate_accepts_every_shipped_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if !matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("json" | "yaml" | "yml")
        ) {
            continue;
        }
        let out = mosn(&["validate", "-c", p.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        n += 1;
    }
    assert!(n >= 2, "configs/ holds the shipped configs");
}

#[test]
fn invalid_config_lists_every_problem_with_its_path_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(
        &dir,
        "bad.json",
        r#"{"servers":[{"listeners":[
             {"name":"a","address":"127.0.0.1:99999","filter_chains":[{"filters":[{"type":"tcp_proxy","config":{"cluster":"nope"}}]}]},
             {"name":"a","address":"127.0.0.1:1","filter_chains":[{"filters":[{"type":"tcp_proxy","config":{"cluster":"c"}}]}]}]}],
           "cluster_manager":{"clusters":[{"name":"c","hosts":[{"address":"not-an-address"}]}]}}"#,
    );
    for cmd in ["validate", "start"] {
        let out = mosn(&[cmd, "-c", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        for path in [
            "servers[0].listeners[0].address",
            "servers[0].listeners[0].filter_chains[0].filters[0].config.cluster",
            "servers[0].listeners[1].name",
            "cluster_manager.clusters[0].hosts[0].address",
        ] {
            assert!(
                err.contains(&format!("{path}: ")),
                "{cmd}: missing {path} in:\n{err}"
            );
        }
    }
    let out = mosn(&["validate", "-c", "/nonexistent/mosn.json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_taken_port_is_a_runtime_error_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tcp_proxy_config(&[dead_addr()], "", "")
        .replace("127.0.0.1:0\"", &format!("127.0.0.1:{port}\""));
    let p = write_config(&dir, "taken.json", &cfg);
    let out = mosn(&["start", "-c", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot bind"));
}

fn echo_thread() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = s.shutdown(std::net::Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn sigterm_drains_open_connections_then_exits_0() {
    let up = echo_thread();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tcp_proxy_config(&[up], "", "").replace(
        "\"graceful_timeout\": \"2s\"",
        "\"graceful_timeout\": \"10s\"",
    );
    let p = write_config(&dir, "drain.json", &cfg);
    let mut m = MosnProcess::start(&p);
    let addr = m.listener_addr("l4");
    let mut open = TcpStream::connect(addr).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    open.write_all(b"one").unwrap();
    let mut b = [0u8; 3];
    open.read_exact(&mut b).unwrap();

    m.signal(Signal::SIGTERM);
    m.wait_for("draining", Duration::from_secs(5));
    // Not accepting any more.
    let deadline = Instant::now() + Duration::from_secs(3);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The open connection still carries data, and the process is still there.
    open.write_all(b"two").unwrap();
    open.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"two");
    assert!(
        m.child.try_wait().unwrap().is_none(),
        "exited before the connection closed"
    );
    drop(open);
    let start = Instant::now();
    assert_eq!(m.wait_exit(Duration::from_secs(5)), 0);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "did not exit once drained"
    );
}

#[test]
fn graceful_timeout_bounds_the_drain() {
    let up = echo_thread();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tcp_proxy_config(&[up], "", "").replace(
        "\"graceful_timeout\": \"2s\"",
        "\"graceful_timeout\": \"1s\"",
    );
    let p = write_config(&dir, "timeout.json", &cfg);
    let mut m = MosnProcess::start(&p);
    let addr = m.listener_addr("l4");
    let _held = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    m.signal(Signal::SIGINT);
    assert_eq!(m.wait_exit(Duration::from_secs(10)), 0);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn stop_signals_the_instance_in_the_pid_file() {
    let up = echo_thread();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("run/mosn.pid");
    let cfg = tcp_proxy_config(&[up], "", "").replacen(
        "\"servers\"",
        &format!("\"pid\": \"{}\", \"servers\"", pid_file.display()),
        1,
    );
    let p = write_config(&dir, "stop.json", &cfg);
    let mut m = MosnProcess::start(&p);
    m.listener_addr("l4");
    let recorded: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(recorded, m.child.id());
    // --wait 0: this test is mosn's parent, so the exited process stays a zombie (and looks
    // alive to `kill -0`) until the test reaps it below.
    let out = mosn(&["stop", "-c", p.to_str().unwrap(), "--wait", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m.wait_exit(Duration::from_secs(5)), 0);
    assert!(!pid_file.exists(), "pid file removed on exit");
    let out = mosn(&["stop", "--pid-file", pid_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "no instance to stop");
}

#[test]
fn quickstart_shape_proxies_to_its_own_admin_api_and_reloads_on_sighup() {
    // configs/quickstart.json with its fixed ports swapped for free ones.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/quickstart.json"
    ))
    .unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (proxy_port, admin_port) = (free(), free());
    let text = text
        .replace("2045", &proxy_port.to_string())
        .replace("34901", &admin_port.to_string())
        .replace("\"stdout\"", "\"stderr\"");
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(&dir, "quickstart.json", &text);
    let mut m = MosnProcess::start(&p);
    let addr = m.listener_addr("quickstart");
    m.wait_for("admin API listening", Duration::from_secs(10));
    // The direct response answers with nothing else running; /api/ goes to the admin API.
    let (status, body) = http_get(addr, "/");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("Hello from mosn-rs"), "{body}");
    let (status, body) = http_get(addr, "/api/v1/version");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");
    let (_, body) = http_get(addr, "/api/v1/states");
    assert!(body.contains("state="), "{body}");

    // SIGHUP re-reads the file: point the cluster at a dead port and see connects fail.
    let dead = dead_addr();
    let reloaded = text.replace(
        &format!("\"127.0.0.1:{admin_port}\""),
        &format!("\"{dead}\""),
    );
    assert_ne!(
        reloaded, text,
        "quickstart's cluster host is the admin address"
    );
    std::fs::write(&p, reloaded).unwrap();
    m.signal(Signal::SIGHUP);
    m.wait_for("configuration reloaded", Duration::from_secs(5));
    let (status, body) = http_get(addr, "/api/v1/version");
    assert!(
        status.contains("503"),
        "the reloaded cluster points at a dead port: {status} {body}"
    );
    let (status, _) = http_get(addr, "/");
    assert!(
        status.contains("200"),
        "the direct response still answers: {status}"
    );
    m.signal(Signal::SIGTERM);
    assert_eq!(m.wait_exit(Duration::from_secs(10)), 0);
}
