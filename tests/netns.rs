//! Privileged end-to-end tests in network namespaces made by the test (addresses in
//! 198.18.0.0/15 on the namespace's own loopback):
//! - ORIGINAL_DST: an iptables `REDIRECT` sends an application's outbound connection to mosn's
//!   listener; mosn reads `SO_ORIGINAL_DST` and connects to the address the application meant;
//! - connect timeout: an upstream whose SYNs are dropped times out after `connect_timeout` and
//!   the next host is tried.
//!
//! CI runs as root, so these run there; elsewhere they skip with a loud message.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn privileged_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let tools = tool("ip") && tool("iptables") && tool("python3");
    if root && tools {
        return true;
    }
    let why = format!("{test}: needs root, ip, iptables and python3 (root={root}, tools={tools})");
    if std::env::var_os("CI").is_some() {
        panic!("{why}: CI runs as root and must run this test (ci/setup.sh installs the tools)");
    }
    eprintln!("\n!!! SKIPPED {why}\n");
    false
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("mosn-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        // The application's addresses, on the namespace's own loopback device.
        ns.exec(&["ip", "addr", "add", "198.18.0.10/32", "dev", "lo"]);
        ns.exec(&["ip", "addr", "add", "198.18.0.11/32", "dev", "lo"]);
        ns.exec(&["ip", "addr", "add", "198.18.0.12/32", "dev", "lo"]);
        ns
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }
    fn exec(&self, args: &[&str]) {
        let out = self.cmd(args).output().expect("spawn");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Netns {
    /// Starts [`UPSTREAM`] on 198.18.0.10:8080 and waits until it listens.
    fn spawn_upstream(&self) -> Kill {
        let mut upstream = self
            .cmd(&["python3", "-c", UPSTREAM])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = [0u8; 5];
        std::io::Read::read_exact(upstream.stdout.as_mut().unwrap(), &mut ready).unwrap();
        Kill(upstream)
    }

    /// Starts `mosn start -c cfg` in the namespace.
    fn spawn_mosn(&self, cfg: &std::path::Path) -> Kill {
        let mosn = self
            .cmd(&[
                mosn_bin().to_str().unwrap(),
                "start",
                "-c",
                cfg.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Kill(mosn)
    }
}

impl Netns {
    /// Runs [`CLIENT`] in the namespace.
    fn client(&self, src: &str, dst: &str, port: u16, size: usize) -> std::process::Output {
        self.cmd(&[
            "python3",
            "-c",
            CLIENT,
            src,
            dst,
            &port.to_string(),
            &size.to_string(),
        ])
        .output()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The upstream: answers every connection with the peer address it saw, then echoes.
const UPSTREAM: &str = r#"
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.0.10", 8080)); s.listen(16); print("ready", flush=True)
def serve(c, peer):
    c.sendall(("peer=%s\n" % peer[0]).encode())
    while True:
        b = c.recv(65536)
        if not b: break
        c.sendall(b)
    c.close()
while True:
    c, peer = s.accept(); threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"#;

/// The application: `client.py SRC DST PORT SIZE` connects from SRC (`-`: any) to DST:PORT
/// (the address it means), sends SIZE bytes, half-closes, and prints the upstream's
/// `peer=` line, the bytes echoed, whether they match, and the seconds it took.
const CLIENT: &str = r#"
import socket, sys, time
src, dst, port, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t = time.time()
c = socket.socket(); c.settimeout(10)
if src != "-": c.bind((src, 0))
c.connect((dst, port))
c.sendall(b"x" * size); c.shutdown(socket.SHUT_WR)
out = b""
while True:
    b = c.recv(65536)
    if not b: break
    out += b
head, _, body = out.partition(b"\n")
print(head.decode(), len(body), body == b"x" * size, "%.3f" % (time.time() - t))
"#;

#[test]
fn redirected_connections_reach_their_original_destination() {
    if !privileged_or_skip("original_dst") {
        return;
    }
    let ns = Netns::new("odst");
    let port = 15001 + (std::process::id() % 1000) as u16;
    ns.exec(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-s",
        "198.18.0.11",
        "-d",
        "198.18.0.10",
        "--dport",
        "8080",
        "-j",
        "REDIRECT",
        "--to-ports",
        &port.to_string(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("odst.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"servers":[{{"default_log_path":"stderr","processor":1,"graceful_timeout":"1s",
              "listeners":[{{"name":"outbound","address":"0.0.0.0:{port}","bind_port":true,
                "filter_chains":[{{"filters":[{{"type":"tcp_proxy","config":{{"cluster":"passthrough"}}}}]}}]}}]}}],
              "cluster_manager":{{"clusters":[{{"name":"passthrough","type":"ORIGINAL_DST","lb_type":"LB_ORIGINAL_DST"}}]}},
              "admin":{{"address":{{"socket_address":{{"address":"127.0.0.1","port_value":0}}}}}}}}"#
        ),
    )
    .unwrap();
    let _upstream = ns.spawn_upstream();

    // Direct, without the rule's source address: the upstream sees the client itself.
    let direct = ns.client("198.18.0.10", "198.18.0.10", 8080, 100_000);
    let direct = String::from_utf8_lossy(&direct.stdout).to_string();
    assert!(
        direct.starts_with("peer=198.18.0.10 100000 True"),
        "{direct}"
    );

    // Redirected without mosn running: the connection is refused (the rule is in force).
    let refused = ns.client("198.18.0.11", "198.18.0.10", 8080, 100_000);
    assert!(
        !refused.status.success(),
        "the REDIRECT rule is not in force"
    );

    let _mosn = ns.spawn_mosn(&cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = ns.client("198.18.0.11", "198.18.0.10", 8080, 100_000);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // Through mosn, the upstream sees mosn's own connection (source 198.18.0.10, not .11) and
    // every byte arrives at the original destination and comes back.
    assert!(
        text.starts_with("peer=198.18.0.10 100000 True"),
        "stdout {text:?}, stderr {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_dropped_syn_times_out_after_connect_timeout_and_the_next_host_serves() {
    if !privileged_or_skip("connect_timeout") {
        return;
    }
    let ns = Netns::new("ctmo");
    // SYNs to 198.18.0.12 vanish: a connect there can only time out.
    ns.exec(&[
        "iptables",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "198.18.0.12",
        "-j",
        "DROP",
    ]);
    let port = 16001 + (std::process::id() % 1000) as u16;
    let admin = port + 1000;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ctmo.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"servers":[{{"default_log_path":"stderr","processor":1,"graceful_timeout":"1s",
              "listeners":[{{"name":"l4","address":"127.0.0.1:{port}",
                "filter_chains":[{{"filters":[{{"type":"tcp_proxy","config":{{"cluster":"up","max_connect_attempts":2}}}}]}}]}}]}}],
              "cluster_manager":{{"clusters":[{{"name":"up","type":"SIMPLE","lb_type":"LB_ROUNDROBIN","connect_timeout":"500ms",
                "hosts":[{{"address":"198.18.0.12:8080"}},{{"address":"198.18.0.10:8080"}}]}}]}},
              "admin":{{"address":{{"socket_address":{{"address":"127.0.0.1","port_value":{admin}}}}}}}}}"#
        ),
    )
    .unwrap();
    let _upstream = ns.spawn_upstream();
    let _mosn = ns.spawn_mosn(&cfg);

    // Sessions that meet the black hole first wait out the 500 ms connect timeout and are
    // served by the second attempt; the others are served at once. Every one is served.
    let mut times = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while times.len() < 3 {
        let out = ns.client("-", "127.0.0.1", port, 5000);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            assert!(
                Instant::now() < deadline,
                "mosn never served: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let f: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(&f[..3], ["peer=198.18.0.10", "5000", "True"], "{text}");
        times.push(f[3].parse::<f64>().unwrap());
    }
    let slow = times.iter().filter(|t| **t >= 0.45).count() as i64;
    assert!(slow >= 1, "no session met the black hole: {times:?}");
    for t in &times {
        assert!(
            *t < 0.4 || (0.45..3.0).contains(t),
            "neither direct nor one timeout: {times:?}"
        );
    }
    let stats = ns
        .cmd(&["python3", "-c", &format!(
            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{admin}/api/v1/stats').read().decode())"
        )])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
    let counter = |scope: &str, key: &str, name: &str| v[scope][key][name].as_i64();
    let ctx = format!("{times:?} {v}");
    assert_eq!(
        counter(
            "cluster",
            "cluster=up",
            "upstream_connection_connect_timeout"
        ),
        Some(slow),
        "{ctx}"
    );
    assert_eq!(
        counter(
            "host",
            "cluster=up,host=198.18.0.12:8080",
            "upstream_connection_connect_fail"
        ),
        Some(slow),
        "{ctx}"
    );
    assert_eq!(
        counter(
            "host",
            "cluster=up,host=198.18.0.10:8080",
            "upstream_connection_total"
        ),
        Some(3),
        "{ctx}"
    );
}
