//! Helpers shared by the end-to-end tests: in-process upstreams on 127.0.0.1:0, a server
//! started from JSON config text, and the real `mosn` binary.
#![allow(dead_code)]

pub mod http;
pub mod rpc;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Parses JSON config text and builds the server's plan from it.
pub fn plan_from_json(json: &str) -> mosn_server::Plan {
    let loaded = mosn_config::parse_str(json, mosn_config::Format::Json)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    mosn_server::plan::plan(&loaded.config).unwrap_or_else(|e| panic!("unsupported: {e:?}"))
}

/// Starts a server in this process from JSON config text.
pub fn start_server(json: &str) -> mosn_server::Server {
    let plan = plan_from_json(json);
    mosn_server::Server::start(
        plan,
        mosn_server::BuildInfo {
            version: "test",
            commit: "test",
        },
        None,
    )
    .expect("server starts")
}

/// A one-listener tcp_proxy config towards `hosts`, with extra tcp_proxy keys.
pub fn tcp_proxy_config(hosts: &[SocketAddr], tcp_extra: &str, cluster_extra: &str) -> String {
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| format!(r#"{{"address":"{h}"}}"#))
        .collect();
    format!(
        r#"{{
  "servers": [{{
    "default_log_path": "stderr", "processor": 2, "graceful_timeout": "2s",
    "listeners": [{{
      "name": "l4", "address": "127.0.0.1:0", "bind_port": true,
      "filter_chains": [{{"filters": [{{"type": "tcp_proxy",
        "config": {{"cluster": "up" {tcp_extra}}}}}]}}]
    }}]
  }}],
  "cluster_manager": {{"clusters": [{{
    "name": "up", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "connect_timeout": "2s",
    "hosts": [{hosts}] {cluster_extra}
  }}]}},
  "admin": {{"address": {{"socket_address": {{"address": "127.0.0.1", "port_value": 0}}}}}}
}}"#,
        hosts = hosts.join(",")
    )
}

/// An echo server: every connection gets its bytes back; EOF is answered with EOF.
pub async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// An address nobody listens on (bound, then closed).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `data`, half-closes, and reads everything back.
pub async fn roundtrip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let data = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    back
}

/// A plain HTTP/1.0 GET over a fresh connection; returns (status line, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

// === the real binary ===

/// Writes `text` to `dir/name` and returns the path.
pub fn write_config(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Path of the built `mosn` binary.
pub fn mosn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mosn"))
}

/// A running `mosn start` with its stderr lines collected.
pub struct MosnProcess {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl MosnProcess {
    /// Starts `mosn start -c <config>`.
    pub fn start(config: &std::path::Path) -> MosnProcess {
        let mut child = Command::new(mosn_bin())
            .args(["start", "-c"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosn");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[mosn] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        MosnProcess {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Takes over an already spawned mosn (e.g. inside a network namespace) whose stdout
    /// and/or stderr are piped: both are collected as log lines.
    pub fn adopt(mut child: Child) -> MosnProcess {
        let (tx, rx) = mpsc::channel();
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[mosn] {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        MosnProcess {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?} within {timeout:?}; saw {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// The address logged for listener `name` (`listening listener=NAME address=ADDR`).
    pub fn listener_addr(&mut self, name: &str) -> SocketAddr {
        let line = self.wait_for(
            &format!("listener={name} address="),
            Duration::from_secs(20),
        );
        let addr = line
            .split("address=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("address in log line");
        addr.parse().expect("socket address")
    }

    /// Sends a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for exit; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("mosn did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MosnProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
