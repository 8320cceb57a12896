#![cfg(feature = "dpdk")]
//! End to end over real DPDK (issue 7): the real `mosn` binary with
//! `servers[0].network_backend.type: "dpdk"` serves every listener on its userspace TCP stack
//! over a DPDK port and makes every upstream connection through it. Clients and upstreams are
//! kernel sockets in network namespaces the test makes (addresses from 198.18.0.0/15 only):
//!
//! - **tap**: mosn runs in namespace M and drives `--vdev net_tap0,iface=<tap>`; the tap's
//!   kernel side (in M) gets 198.18.20.1/24; clients and upstreams live in M and talk to mosn
//!   at 198.18.20.2.
//! - **af_packet**: M holds one end of a veth pair (no address, up) driven by
//!   `--vdev net_af_packet0,iface=<veth>`; namespace C holds the peer with 198.18.21.1/24 and
//!   `ethtool -K <peer> tx off` (ACCELERATION.md §4); clients and upstreams live in C, mosn is
//!   at 198.18.21.2.
//! - **af_xdp**: the same veth topology on 198.18.22.0/24, driven by
//!   `--vdev net_af_xdp0,iface=<veth>,start_queue=0,queue_count=1` (an XDP program on M's end
//!   redirects the frames to an AF_XDP socket).
//!
//! One mosn per topology carries every scenario: HTTP/1.1 (proxied and a direct response),
//! h2c, a Bolt v1 call (sofa-rpc-node client and server), a 100 MiB tcp_proxy echo checked
//! byte for byte both ways, 1,000 concurrent keep-alive connections, half-close and resets,
//! the admin API's listener stats, and a TERM at the end (exit 0, the port closed: no PROMISC
//! and no XDP program left on the veth). Bad set-ups (unknown port, unknown `--vdev` driver,
//! `eal_args` without `--no-pci`) must fail cleanly. The heavy tests run one at a time (mosn
//! busy-polls a core; the machine has two).
//!
//! `cargo test --features dpdk --test dpdk`, as root. CI runs as root, so these run there;
//! elsewhere they skip with a loud message. Everything the test makes (namespaces, veth, tap,
//! /var/run/dpdk/<prefix>) is removed by guards, also on panic; only the mosn processes the
//! test started are killed.

mod common;
#[path = "../dataplane/net/tests/support/hugepages.rs"]
mod hugepages;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::http::{self as h, eventually, Frames, H2Client, Raw, Reply, Upstream};
use common::rpc::{bolt_call, read_records, BoltServer, CallOpts};
use common::{mosn_bin, MosnProcess};
use hugepages::Hugepages;
use hyper::http::Request;
use serde_json::{json, Value};

// === privileges, tools, one heavy test at a time ===

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn privileged_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let missing: Vec<&str> = ["ip", "ethtool", "curl", "node"]
        .into_iter()
        .filter(|t| !tool(t))
        .collect();
    let tun = Path::new("/dev/net/tun").exists();
    if root && missing.is_empty() && tun {
        return true;
    }
    let why = format!(
        "{test}: needs root, /dev/net/tun and ip, ethtool, curl, node \
         (root={root}, tun={tun}, missing={missing:?})"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}: CI runs as root and must run this test (ci/setup.sh installs the tools)");
    }
    eprintln!("\n!!! SKIPPED {why}\n");
    false
}

/// mosn's DPDK worker busy-polls a core: the tests that start one take turns.
fn exclusive() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The soft RLIMIT_NOFILE at least `want` (with `prlimit` on this process when lower).
fn ensure_nofile(want: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if soft >= want {
        return;
    }
    let pid = std::process::id().to_string();
    run(&["prlimit", "--pid", &pid, &format!("--nofile={want}:{want}")]);
}

// === network namespaces ===

/// A network namespace named after the test's pid; deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("mosn-dpdk-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        // No IPv6 chatter (router solicitations, neighbour discovery) on the links.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    fn name(&self) -> &str {
        &self.0
    }

    /// `ip -n <ns> args...`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", &self.0];
        all.extend_from_slice(args);
        run(&all);
    }

    /// `ip netns exec <ns> args...`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    /// [`Netns::cmd`], which must succeed.
    fn exec(&self, args: &[&str]) {
        let out = self.cmd(args).output().expect("spawn");
        assert!(
            out.status.success(),
            "{args:?} in {}: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn has_link(&self, link: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.0, "link", "show", link])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs `f` on a thread that first joins this namespace: every socket `f` creates (and
    /// every process it spawns) lives here. Panics in `f` come back to the caller.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = std::fs::File::open(Path::new("/var/run/netns").join(&self.0))
            .unwrap_or_else(|e| panic!("open netns {}: {e}", self.0));
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns into the test namespace");
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// EAL's runtime directory for a `--file-prefix` (only made without `--in-memory`);
/// removed when dropped, after the mosn that made it is gone.
struct EalFiles(String);

impl EalFiles {
    fn new(tag: &str) -> EalFiles {
        let prefix = format!("mosn-test-{tag}-{}", std::process::id());
        let e = EalFiles(prefix);
        e.remove();
        e
    }

    fn remove(&self) {
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.0));
    }
}

impl Drop for EalFiles {
    fn drop(&mut self) {
        self.remove();
    }
}

// === topologies ===

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Tap,
    AfPacket,
    /// net_af_xdp on the same veth topology as af_packet (an XDP program on mosn's end).
    AfXdp,
}

/// Namespaces and links of one topology. Drop order: links, namespaces, EAL files (mosn
/// itself must be gone first: declare it after the topology, or kill it).
struct Topology {
    kind: Kind,
    /// Where mosn runs.
    mosn_ns: Netns,
    /// Where clients and upstreams run (None: in `mosn_ns`).
    client_ns: Option<Netns>,
    /// The interface DPDK drives (tap name or mosn's veth end).
    link: String,
    /// The kernel's interface facing mosn (the tap itself, or the veth peer in C).
    peer_link: String,
    /// mosn's address on its userspace stack.
    mosn_ip: Ipv4Addr,
    /// RX/TX queue pairs (mosn workers) on the port.
    queues: u16,
    /// `poll_mode: interrupt` (else `busy`).
    interrupts: bool,
    /// The kernel side's address (gateway, upstreams).
    peer_ip: Ipv4Addr,
    eal: EalFiles,
}

impl Topology {
    fn new(kind: Kind, queues: u16, interrupts: bool) -> Topology {
        let pid = std::process::id();
        match kind {
            Kind::Tap => {
                let link = format!("mtap{pid}");
                Topology {
                    kind,
                    mosn_ns: Netns::new("tap"),
                    client_ns: None,
                    peer_link: link.clone(),
                    link,
                    mosn_ip: Ipv4Addr::new(198, 18, 20, 2),
                    queues,
                    interrupts,
                    peer_ip: Ipv4Addr::new(198, 18, 20, 1),
                    eal: EalFiles::new("tap"),
                }
            }
            Kind::AfPacket | Kind::AfXdp => {
                // Per kind: namespace tags, link names, subnet and EAL prefix of their own.
                let (tag, net) = match kind {
                    Kind::AfXdp => ("x", 22),
                    _ => ("f", 21),
                };
                let (m, c) = (
                    Netns::new(&format!("a{tag}m")),
                    Netns::new(&format!("a{tag}c")),
                );
                let (link, peer) = (format!("ma{tag}m{pid}"), format!("ma{tag}c{pid}"));
                // Made directly inside the namespaces: nothing is ever left in the root one.
                run(&[
                    "ip",
                    "link",
                    "add",
                    &link,
                    "netns",
                    m.name(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &peer,
                    "netns",
                    c.name(),
                ]);
                m.ip(&["link", "set", &link, "up"]);
                c.ip(&["addr", "add", &format!("198.18.{net}.1/24"), "dev", &peer]);
                c.ip(&["link", "set", &peer, "up"]);
                // Full checksums and no TSO super-frames towards af_packet (ACCELERATION.md §4).
                c.exec(&["ethtool", "-K", &peer, "tx", "off"]);
                Topology {
                    kind,
                    mosn_ns: m,
                    client_ns: Some(c),
                    link,
                    peer_link: peer,
                    mosn_ip: Ipv4Addr::new(198, 18, net, 2),
                    queues,
                    interrupts,
                    peer_ip: Ipv4Addr::new(198, 18, net, 1),
                    eal: EalFiles::new(&format!("a{tag}p")),
                }
            }
        }
    }

    fn clients(&self) -> &Netns {
        self.client_ns.as_ref().unwrap_or(&self.mosn_ns)
    }

    fn vdev_port(&self) -> (String, &'static str) {
        match self.kind {
            Kind::Tap => (format!("net_tap0,iface={}", self.link), "net_tap0"),
            // af_packet opens one socket per queue pair (a fanout group, hashed by flow).
            Kind::AfPacket => (
                format!("net_af_packet0,iface={},qpairs={}", self.link, self.queues),
                "net_af_packet0",
            ),
            Kind::AfXdp => (
                format!(
                    "net_af_xdp0,iface={},start_queue=0,queue_count=1",
                    self.link
                ),
                "net_af_xdp0",
            ),
        }
    }

    /// `servers[0].network_backend` for this topology.
    fn backend(&self) -> Value {
        let (vdev, port) = self.vdev_port();
        json!({
            "type": "dpdk",
            "eal_args": ["-l", "0", "--no-pci", "--file-prefix", self.eal.0, "--vdev", vdev],
            "port": port,
            "address": format!("{}/24", self.mosn_ip),
            "gateway": self.peer_ip.to_string(),
            "mtu": 1500, "queues": self.queues, "mempool_size": 8191,
            "poll_mode": if self.interrupts { "interrupt" } else { "busy" }
        })
    }

    /// Starts mosn in its namespace and, for the tap, addresses the tap's kernel side once
    /// DPDK made it. Returns once the listeners named in `listeners` are up.
    fn start_mosn(&self, cfg: &Path, listeners: &[&str]) -> (MosnProcess, SocketAddr) {
        let mut mosn = spawn_mosn(&self.mosn_ns, cfg);
        if self.kind == Kind::Tap {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.mosn_ns.has_link(&self.link) {
                if let Some(st) = mosn.child.try_wait().unwrap() {
                    panic!("mosn exited ({st}) before tap {} appeared", self.link);
                }
                assert!(
                    Instant::now() < deadline,
                    "tap {} did not appear within 30s",
                    self.link
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let cidr = format!("{}/24", self.peer_ip);
            self.mosn_ns
                .ip(&["addr", "add", &cidr, "dev", &self.peer_link]);
            self.mosn_ns.ip(&["link", "set", &self.peer_link, "up"]);
        }
        for l in listeners {
            let a = mosn.listener_addr(l);
            assert!(
                a.ip() == self.mosn_ip || a.ip().is_unspecified(),
                "listener {l} at {a}"
            );
        }
        mosn.wait_for("DPDK port up", Duration::from_secs(20));
        let admin = admin_addr(&mut mosn);
        if self.kind == Kind::Tap {
            // The PMD may have toggled the link while starting the port.
            self.mosn_ns.ip(&["link", "set", &self.peer_link, "up"]);
        }
        (mosn, admin)
    }

    /// mosn's address for `port`.
    fn at(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.mosn_ip, port))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-n", self.mosn_ns.name(), "link", "del", &self.link])
            .stderr(Stdio::null())
            .status();
    }
}

/// Starts `mosn start -c cfg` inside `ns` with stdout and stderr piped.
fn start_mosn(ns: &Netns, cfg: &Path) -> std::process::Child {
    ns.cmd(&[
        mosn_bin().to_str().unwrap(),
        "start",
        "-c",
        cfg.to_str().unwrap(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn mosn")
}

/// `mosn start -c cfg` inside `ns`, stdout and stderr collected.
fn spawn_mosn(ns: &Netns, cfg: &Path) -> MosnProcess {
    MosnProcess::adopt(start_mosn(ns, cfg))
}

fn admin_addr(mosn: &mut MosnProcess) -> SocketAddr {
    let line = mosn.wait_for("admin API listening", Duration::from_secs(20));
    line.split("addr=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("admin address in {line:?}"))
}

// === upstreams (kernel sockets in the client namespace) ===

/// Deterministic bytes, 8 at a time (fast enough for 100 MiB in a debug build).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The first offset where `got` differs from `want[at..]`.
fn first_diff(want: &[u8], at: usize, got: &[u8]) -> Option<usize> {
    match want.get(at..at + got.len()) {
        Some(w) if w == got => None,
        Some(w) => w.iter().zip(got).position(|(a, b)| a != b).map(|i| at + i),
        None => Some(want.len().max(at)),
    }
}

/// What an echo upstream saw on one connection.
#[derive(Default, Debug)]
struct ConnRec {
    bytes: AtomicUsize,
    mismatch: Mutex<Option<usize>>,
    ended: AtomicBool,
}

/// An echo upstream on 0.0.0.0:0 (in the calling thread's namespace): every byte comes back,
/// EOF is answered with EOF. With `expect`, what each connection sends is compared with it.
struct Echo {
    port: u16,
    conns: Arc<Mutex<Vec<Arc<ConnRec>>>>,
    peers: Peers,
}

/// The source address of every connection an upstream accepted.
type Peers = Arc<Mutex<Vec<SocketAddr>>>;

fn note_peer(peers: &Peers, s: &TcpStream) {
    if let Ok(p) = s.peer_addr() {
        peers.lock().unwrap().push(p);
    }
}

/// Asserts that every upstream connection came from mosn's userspace stack (not from a
/// kernel socket of mosn's namespace).
fn assert_from_stack(what: &str, peers: &Peers, mosn_ip: Ipv4Addr) {
    let peers = peers.lock().unwrap();
    assert!(!peers.is_empty(), "{what}: no upstream connection");
    assert!(
        peers.iter().all(|p| p.ip() == mosn_ip),
        "{what}: upstream connections from {peers:?}, not all from {mosn_ip}"
    );
}

impl Echo {
    fn start(expect: Option<Arc<Vec<u8>>>) -> Echo {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<Arc<ConnRec>>>> = Arc::default();
        let peers = Peers::default();
        let (c2, p2) = (conns.clone(), peers.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                note_peer(&p2, &s);
                let rec = Arc::new(ConnRec::default());
                c2.lock().unwrap().push(rec.clone());
                let expect = expect.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = match s.read(&mut buf) {
                            Ok(0) => {
                                let _ = s.shutdown(Shutdown::Write);
                                break;
                            }
                            Ok(n) => n,
                            Err(_) => break,
                        };
                        let at = rec.bytes.fetch_add(n, Ordering::SeqCst);
                        if let Some(want) = &expect {
                            let mut m = rec.mismatch.lock().unwrap();
                            if m.is_none() {
                                *m = first_diff(want, at, &buf[..n]);
                            }
                        }
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    rec.ended.store(true, Ordering::SeqCst);
                });
            }
        });
        Echo { port, conns, peers }
    }

    fn conn(&self, i: usize) -> Arc<ConnRec> {
        self.conns
            .lock()
            .unwrap()
            .get(i)
            .cloned()
            .unwrap_or_else(|| panic!("the echo upstream has no connection {i}"))
    }

    fn count(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

/// Answers only after the client's EOF: `<n> bytes\n` and then `answer`, then closes.
struct Late {
    port: u16,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    peers: Peers,
}

impl Late {
    fn start(answer: Arc<Vec<u8>>) -> Late {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let peers = Peers::default();
        let (r2, p2) = (requests.clone(), peers.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                note_peer(&p2, &s);
                let (answer, r2) = (answer.clone(), r2.clone());
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut req = Vec::new();
                    if s.read_to_end(&mut req).is_err() {
                        return;
                    }
                    let n = req.len();
                    r2.lock().unwrap().push(req);
                    let _ = s.write_all(format!("{n} bytes\n").as_bytes());
                    let _ = s.write_all(&answer);
                });
            }
        });
        Late {
            port,
            requests,
            peers,
        }
    }
}

/// Resets every connection (SO_LINGER 0, close) once its first bytes arrived.
struct Resetter {
    port: u16,
    accepted: Arc<AtomicUsize>,
    peers: Peers,
}

impl Resetter {
    fn start() -> Resetter {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let peers = Peers::default();
        let (a2, p2) = (accepted.clone(), peers.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                note_peer(&p2, &s);
                a2.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut b = [0u8; 1024];
                    let _ = s.read(&mut b);
                    reset(s);
                });
            }
        });
        Resetter {
            port,
            accepted,
            peers,
        }
    }
}

/// Closes `s` with a RST.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

/// Every upstream of one topology, in the client namespace.
struct Upstreams {
    web: Upstream,
    bulk: Echo,
    echo: Echo,
    late: Late,
    rst: Resetter,
    bolt: BoltServer,
    bolt_records: PathBuf,
}

// === the config ===

const HTTP1: u16 = 8080;
const HTTP2: u16 = 8081;
const BOLT: u16 = 12200;
const BULK: u16 = 9000;
const HALF: u16 = 9001;
const RST: u16 = 9002;
const ECHO: u16 = 9003;
const LISTENERS: [&str; 7] = [
    "http1",
    "http2",
    "bolt",
    "bulk",
    "halfclose",
    "reset",
    "echo",
];

const BOLT_SERVICE: &str = "com.alipay.test.EchoService:1.0";
const DIRECT_BODY: &str = "answered by mosn over dpdk";
const BULK_LEN: usize = 100 * 1024 * 1024;
const HALF_REQUEST: usize = 300_000;
const HALF_ANSWER: usize = 2 * 1024 * 1024;
const MANY: usize = 1000;

/// Every listener on the DPDK stack: HTTP/1 and HTTP/2 to the `web` upstream (with a direct
/// response on `/direct`), Bolt to the Bolt server (bound to the stack's own address, the
/// others to 0.0.0.0), and tcp_proxy listeners to the echo, late-answer and reset upstreams.
fn mosn_config(t: &Topology, u: &Upstreams, access_log: &Path) -> String {
    let host = |port: u16| SocketAddr::from((t.peer_ip, port));
    let l7 = |name: &str, ip: Ipv4Addr, port: u16, proto: &str, router: &str| {
        let mut l = h::listener(name, proto, router);
        l["address"] = json!(format!("{ip}:{port}"));
        l
    };
    let l4 = |name: &str, port: u16, cluster: &str| {
        json!({
            "name": name, "address": format!("0.0.0.0:{port}"), "bind_port": true,
            "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": cluster}}]}]
        })
    };
    let any = Ipv4Addr::UNSPECIFIED;
    // A thousand upstream connects at once through a debug build: SYNs and SYN-ACKs lost in
    // the burst are retransmitted after 1 s and 3 s, so 2 s would be too short.
    let mut web_cluster = h::cluster("web", &[host(u.web.addr.port())]);
    web_cluster["connect_timeout"] = json!("10s");
    let cfg = json!({
        "servers": [{
            "default_log_path": "stderr", "default_log_level": "INFO",
            "processor": 1, "graceful_timeout": "1s",
            "network_backend": t.backend(),
            "listeners": [
                l7("http1", any, HTTP1, "Http1", "web"),
                l7("http2", any, HTTP2, "Http2", "web"),
                l7("bolt", t.mosn_ip, BOLT, "bolt", "rpc"),
                l4("bulk", BULK, "bulk"),
                l4("halfclose", HALF, "late"),
                l4("reset", RST, "rst"),
                l4("echo", ECHO, "echo"),
            ],
            "routers": [
                h::router("web", json!([
                    {"match": {"prefix": "/direct"},
                     "direct_response": {"status": 418, "body": DIRECT_BODY}},
                    h::prefix_route("/", "web"),
                ])),
                h::router("rpc", json!([
                    {"match": {"headers": [{"name": "service", "value": BOLT_SERVICE}]},
                     "route": {"cluster_name": "bolt", "timeout": "5s"}},
                ])),
            ]
        }],
        "cluster_manager": {"clusters": [
            web_cluster,
            h::cluster("bolt", &[host(u.bolt.port())]),
            h::cluster("bulk", &[host(u.bulk.port)]),
            h::cluster("late", &[host(u.late.port)]),
            h::cluster("rst", &[host(u.rst.port)]),
            h::cluster("echo", &[host(u.echo.port)]),
        ]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    });
    serde_json::to_string_pretty(&cfg)
        .unwrap()
        .replace(h::ACCESS_LOG, access_log.to_str().unwrap())
}

// === the scenarios ===

/// Times each step of one topology's run.
struct Clock(&'static str, Instant);

impl Clock {
    fn step(&mut self, what: &str) {
        eprintln!("[dpdk {}] {what}: {:?}", self.0, self.1.elapsed());
        self.1 = Instant::now();
    }
}

fn end_to_end(kind: Kind, queues: u16, interrupts: bool) {
    let _one = exclusive();
    let total = Instant::now();
    let tag = match (kind, queues) {
        (Kind::Tap, 1) if interrupts => "tap, RX interrupts",
        (Kind::Tap, 1) => "tap",
        (Kind::Tap, _) if interrupts => "tap, 2 queues, RX interrupts",
        (Kind::Tap, _) => "tap, 2 queues",
        (Kind::AfPacket, 1) => "af_packet",
        (Kind::AfPacket, _) => "af_packet, 2 queues",
        (Kind::AfXdp, _) => "af_xdp",
    };
    let mut clock = Clock(tag, Instant::now());
    ensure_nofile(8192);
    // The tap run uses hugepages (mosn adds --in-memory), the af_packet run whatever is free
    // (none on a fresh machine: mosn adds --no-huge and warns).
    let _huge = match kind {
        Kind::Tap => {
            let h = Hugepages::reserve(256);
            if h.is_none() {
                eprintln!("[dpdk {tag}] cannot reserve 256 hugepages: running on plain memory");
            }
            h
        }
        Kind::AfPacket | Kind::AfXdp => None,
    };
    // The runtime's threads are made here, in the test's own namespace.
    let _ = h::rt();
    let t = Topology::new(kind, queues, interrupts);
    let clients = t.clients();
    let bulk_data = Arc::new(pattern(BULK_LEN, 0x5eed_d9d4));
    let half_answer = Arc::new(pattern(HALF_ANSWER, 0x1a7e));
    let dir = tempfile::tempdir().unwrap();
    let bolt_records = dir.path().join("bolt.jsonl");
    let u = {
        let (bulk_data, half_answer) = (bulk_data.clone(), half_answer.clone());
        let bolt = BoltServer::start_in_at(clients.name(), "0.0.0.0", 0, Some(&bolt_records));
        let (web, bulk, echo, late, rst) = clients.enter(move || {
            let web = Upstream::with_at(
                "0.0.0.0:0".parse().unwrap(),
                "web",
                Arc::new(|s, _| Reply::echo("web", s)),
            );
            (
                web,
                Echo::start(Some(bulk_data)),
                Echo::start(None),
                Late::start(half_answer),
                Resetter::start(),
            )
        });
        Upstreams {
            web,
            bulk,
            echo,
            late,
            rst,
            bolt,
            bolt_records,
        }
    };
    let cfg = dir.path().join("mosn.json");
    std::fs::write(&cfg, mosn_config(&t, &u, &dir.path().join("access.log"))).unwrap();
    clock.step("topology and upstreams");

    let (mut mosn, admin) = t.start_mosn(&cfg, &LISTENERS);
    let eal = mosn.wait_for("DPDK EAL init", Duration::from_secs(1));
    eprintln!(
        "[dpdk {tag}] EAL memory: {}",
        if eal.contains("--in-memory") {
            "hugepages (--in-memory)"
        } else if eal.contains("--no-huge") {
            "plain (--no-huge)"
        } else {
            "as given"
        }
    );
    clock.step("mosn up");

    let http1_requests = http1(&t, &u);
    clock.step("1. HTTP/1.1 proxied and direct");
    let h2_requests = http2(&t, &u);
    clock.step("2. HTTP/2 (h2c)");
    let bolt_requests = bolt(&t, &u);
    clock.step("3. Bolt v1");
    bulk(&t, &u, &bulk_data);
    clock.step("4. 100 MiB tcp_proxy echo");
    let reset_requests = resets_and_half_closes(&t, &u, &half_answer);
    clock.step("6. half-close and resets");
    let many_requests = thousand_connections(&t, &u);
    clock.step("5. 1,000 concurrent connections");

    // The admin API (a kernel socket in mosn's namespace) saw all of it on the listeners.
    let want_http1 = (http1_requests + reset_requests + many_requests) as i64;
    let stats = eventually(Duration::from_secs(10), || {
        let v = admin_stats(&t, admin);
        let n = |l: &str, k: &str| v["listener"][format!("listener={l}")][k].as_i64();
        let ok = n("http1", "downstream_request_total") >= Some(want_http1)
            && n("http2", "downstream_request_total") == Some(h2_requests as i64)
            && n("bolt", "downstream_request_total") >= Some(bolt_requests as i64)
            && n("bulk", "downstream_bytes_read_total") == Some(BULK_LEN as i64);
        ok.then_some(v)
    });
    let stats = stats.unwrap_or_else(|| {
        panic!(
            "listener stats do not show the traffic (want http1 >= {want_http1}, http2 == \
             {h2_requests}, bolt >= {bolt_requests}, bulk bytes == {BULK_LEN}): {}",
            admin_stats(&t, admin)
        )
    });
    eprintln!("[dpdk {tag}] listener stats: {}", stats["listener"]);
    if queues > 1 {
        // Every worker's stack carried traffic, and frames that arrived on a queue whose
        // stack did not own them were handed over (the PMD spreads flows by its own hash,
        // the stacks own them by theirs). The stacks' counters are copied once a second.
        let (_, port) = t.vdev_port();
        let stack_rx = |v: &Value, q: u16| {
            v["userspace_stack"][format!("port={port},queue={q}")]["rx_packets_total"].as_i64()
        };
        let v = eventually(Duration::from_secs(5), || {
            let v = admin_stats(&t, admin);
            (0..queues)
                .all(|q| stack_rx(&v, q) > Some(1000))
                .then_some(v)
        })
        .unwrap_or_else(|| {
            panic!(
                "a queue's stack received little or nothing: {}",
                admin_stats(&t, admin)["userspace_stack"]
            )
        });
        let dpdk = &v["dpdk"][format!("port={port}")];
        eprintln!(
            "[dpdk {tag}] port: {dpdk}; stacks: {}",
            v["userspace_stack"]
        );
        assert!(
            dpdk["steered_total"].as_i64() > Some(0),
            "no frame was steered between the queues: {dpdk}"
        );
    }
    clock.step("admin stats");

    // Every upstream connection left from mosn's userspace stack.
    assert_from_stack("bulk", &u.bulk.peers, t.mosn_ip);
    assert_from_stack("echo", &u.echo.peers, t.mosn_ip);
    assert_from_stack("halfclose", &u.late.peers, t.mosn_ip);
    assert_from_stack("reset", &u.rst.peers, t.mosn_ip);
    let stack = format!("{}:", t.mosn_ip);
    for r in read_records(&u.bolt_records) {
        let remote = r["remote"].as_str().unwrap_or_default();
        assert!(
            remote.starts_with(&stack),
            "Bolt upstream connection from {remote}"
        );
    }

    assert!(
        mosn.child.try_wait().unwrap().is_none(),
        "mosn exited during the run"
    );
    if kind == Kind::Tap {
        // net_tap would ask for a signal per received frame (O_ASYNC on its queue fds) unless
        // mosn took every signal it could use before EAL started: a signal, an interrupt and
        // a sigreturn per frame on the polling thread.
        let pid = mosn.child.id();
        let mut tun_fds = 0;
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
            let fd = fd.unwrap();
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            if target != Path::new("/dev/net/tun") {
                continue;
            }
            tun_fds += 1;
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
                .unwrap();
            assert_eq!(
                flags & nix::libc::O_ASYNC as u32,
                0,
                "a tap fd of mosn asks for a signal per frame (fdinfo: {info})"
            );
        }
        assert!(tun_fds > 0, "mosn holds no /dev/net/tun fd");
        mosn.wait_for("All rt-signals are in use", Duration::from_secs(1));
    }
    if interrupts {
        // Idle, a worker that sleeps on its RX interrupt uses next to no CPU (a busy-polling
        // one uses its whole core).
        let pid = mosn.child.id();
        let ticks = || -> u64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split(' ').collect();
            f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
        };
        std::thread::sleep(Duration::from_secs(1));
        let (t0, c0) = (Instant::now(), ticks());
        std::thread::sleep(Duration::from_secs(2));
        let share = (ticks() - c0) as f64 / 100.0 / t0.elapsed().as_secs_f64();
        eprintln!("[dpdk {tag}] idle CPU: {:.1} % of a core", share * 100.0);
        assert!(
            share < 0.2,
            "idle mosn used {:.0} % of a core",
            share * 100.0
        );
    }
    // TERM: mosn drains, stops its DPDK worker and closes the port before it exits; with
    // af_packet and af_xdp the interface leaves promiscuous mode again and af_xdp's XDP
    // program is detached (both were left behind before).
    let link_flags = || {
        let out = t
            .mosn_ns
            .cmd(&["ip", "link", "show", &t.link])
            .output()
            .expect("ip link show");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("PROMISC"), text.contains("prog/xdp"))
    };
    let on_veth = matches!(kind, Kind::AfPacket | Kind::AfXdp);
    if on_veth {
        let (promiscuous, xdp) = link_flags();
        assert!(promiscuous, "{tag} runs {} in promiscuous mode", t.link);
        assert_eq!(
            xdp,
            kind == Kind::AfXdp,
            "XDP program on {} while mosn runs",
            t.link
        );
    }
    mosn.signal(nix::sys::signal::Signal::SIGTERM);
    let code = mosn.wait_exit(Duration::from_secs(60));
    assert_eq!(code, 0, "mosn's exit code after TERM");
    mosn.wait_for("DPDK port closed", Duration::from_secs(5));
    mosn.wait_for("DPDK worker stopped", Duration::from_secs(5));
    if on_veth {
        let (promiscuous, xdp) = link_flags();
        assert!(
            !promiscuous,
            "{} is still in promiscuous mode after mosn exited",
            t.link
        );
        assert!(
            !xdp,
            "an XDP program is still on {} after mosn exited",
            t.link
        );
    }
    clock.step("TERM: drained, port closed");
    drop(mosn);
    drop(u);
    drop(t);
    eprintln!("[dpdk {tag}] total: {:?}", total.elapsed());
}

fn admin_stats(t: &Topology, admin: SocketAddr) -> Value {
    let (status, body) = t.mosn_ns.enter(|| common::http_get(admin, "/api/v1/stats"));
    assert!(status.contains("200"), "{status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats JSON: {e}: {body}"))
}

/// Scenario 1: HTTP/1.1 through mosn to the upstream (a Rust client and curl), exact status,
/// body and headers both ways; a direct response without the upstream. Returns the number
/// of requests made on the listener.
fn http1(t: &Topology, u: &Upstreams) -> usize {
    let addr = t.at(HTTP1);
    let before = u.web.count();
    let body = b"hello over dpdk \x00\x01\xff".to_vec();
    let r = t.clients().enter(|| {
        h::request(
            addr,
            "POST",
            "/echo/path?q=1",
            &[("x-test-id", "dpdk-http1"), ("Host", "dpdk.test")],
            &body,
        )
    });
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, body);
    assert_eq!(r.header("x-upstream"), Some("web"));
    assert_eq!(r.header("x-echo-method"), Some("POST"));
    assert_eq!(r.header("x-echo-path"), Some("/echo/path?q=1"));
    assert_eq!(r.header("x-echo-host"), Some("dpdk.test"));
    let seen = u.web.wait_requests(before + 1, Duration::from_secs(5));
    let last = seen.last().unwrap();
    assert_eq!(last.header("x-test-id"), Some("dpdk-http1"));
    assert_eq!(last.body.as_ref(), &body[..]);

    let url = format!("http://{addr}/curl/get");
    let r = t
        .clients()
        .enter(|| h::curl(&["-H", "x-test-id: curl-http1", &url]));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-echo-path"), Some("/curl/get"));
    assert_eq!(u.web.last().header("x-test-id"), Some("curl-http1"));

    let count = u.web.count();
    let r = t.clients().enter(|| h::get(addr, "/direct/x", &[]));
    assert_eq!((r.status, r.text().as_str()), (418, DIRECT_BODY), "{r:?}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        u.web.count(),
        count,
        "a direct response reached the upstream"
    );
    3
}

/// Scenario 2: h2c with prior knowledge through the Http2 listener (hyper client and curl).
/// Returns the number of requests made.
fn http2(t: &Topology, u: &Upstreams) -> usize {
    let addr = t.at(HTTP2);
    let before = u.web.count();
    let rs = t.clients().enter(|| {
        let c = H2Client::connect(addr);
        (0..3)
            .map(|i| {
                let req = Request::builder()
                    .method("POST")
                    .uri(format!("http://dpdk.test/h2/{i}"))
                    .header("x-test-id", format!("h2-{i}"))
                    .body(Frames::new(Bytes::from(format!("h2 body {i}")), None))
                    .unwrap();
                c.send(req)
            })
            .collect::<Vec<_>>()
    });
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), format!("h2 body {i}"));
        assert_eq!(r.header("x-upstream"), Some("web"));
        assert_eq!(r.header("x-echo-path"), Some(format!("/h2/{i}").as_str()));
    }
    let seen = u.web.wait_requests(before + 3, Duration::from_secs(5));
    assert!(
        seen[before..].iter().all(
            |s| s.header("x-test-id").is_some_and(|v| v.starts_with("h2-"))
                && s.version == hyper::http::Version::HTTP_2
        ),
        "HTTP/2 all the way to the upstream: {seen:?}"
    );

    let url = format!("http://{addr}/curl/h2");
    let r = t
        .clients()
        .enter(|| h::curl(&["--http2-prior-knowledge", "-H", "x-test-id: curl-h2", &url]));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-echo-path"), Some("/curl/h2"));
    assert_eq!(u.web.last().header("x-test-id"), Some("curl-h2"));
    4
}

/// Scenario 3: Bolt v1 calls (sofa-rpc-node client) through the bolt listener to the SOFARPC
/// server. Returns the number of calls.
fn bolt(t: &Topology, u: &Upstreams) -> usize {
    const N: usize = 5;
    let calls = bolt_call(
        t.at(BOLT),
        CallOpts {
            args: json!(["hello bolt over dpdk"]),
            count: N,
            concurrency: N,
            netns: Some(t.clients().name().to_string()),
            ..Default::default()
        },
    );
    assert_eq!(calls.len(), N);
    for c in &calls {
        assert!(c.ok, "{:?}", c.raw);
        assert_eq!(c.text(), "hello bolt over dpdk");
    }
    let recs: Vec<Value> = read_records(&u.bolt_records)
        .into_iter()
        .filter(|r| r["kind"] == "request")
        .collect();
    assert_eq!(recs.len(), N, "{recs:#?}");
    for r in &recs {
        assert_eq!(r["proto"], 1, "Bolt v1 upstream: {r}");
        assert_eq!(r["service"], BOLT_SERVICE, "{r}");
        assert_eq!(r["args"][0], "hello bolt over dpdk", "{r}");
    }
    N
}

/// Scenario 4: 100 MiB through the tcp_proxy listener to the echo upstream and back, sent
/// and read at once; the upstream checks what arrived, the client what came back.
fn bulk(t: &Topology, u: &Upstreams, data: &Arc<Vec<u8>>) {
    let addr = t.at(BULK);
    let started = Instant::now();
    let (got, mismatch) = t.clients().enter(|| {
        let s = TcpStream::connect(addr).expect("connect to the bulk listener");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = s.try_clone().unwrap();
        let d = data.clone();
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            for chunk in d.chunks(64 * 1024) {
                w.write_all(chunk)?;
            }
            w.shutdown(Shutdown::Write)
        });
        let mut r = s;
        let (mut got, mut mismatch) = (0usize, None);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if mismatch.is_none() {
                        mismatch = first_diff(data, got, &buf[..n]);
                    }
                    got += n;
                }
                Err(e) => panic!("bulk read failed after {got} of {BULK_LEN} bytes: {e}"),
            }
        }
        writer
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("bulk write failed: {e}"));
        (got, mismatch)
    });
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "[dpdk] bulk: {BULK_LEN} bytes each way in {secs:.2}s ({:.1} MiB/s each way)",
        BULK_LEN as f64 / secs / (1024.0 * 1024.0)
    );
    assert_eq!(mismatch, None, "the echoed stream differs at this offset");
    assert_eq!(got, BULK_LEN, "bytes echoed back");
    let rec = u.bulk.conn(0);
    assert!(
        eventually(Duration::from_secs(10), || rec
            .ended
            .load(Ordering::SeqCst)
            .then_some(()))
        .is_some(),
        "the upstream side of the bulk session did not end"
    );
    assert_eq!(rec.bytes.load(Ordering::SeqCst), BULK_LEN, "bytes upstream");
    assert_eq!(
        *rec.mismatch.lock().unwrap(),
        None,
        "what reached the upstream differs at this offset"
    );
    assert_eq!(u.bulk.count(), 1);
}

/// How a read that must not hang ended.
#[derive(Debug, PartialEq)]
enum End {
    Eof,
    Reset,
}

/// Reads until EOF or reset (bytes are dropped); panics on a timeout.
fn read_until_closed(s: &mut TcpStream, timeout: Duration) -> End {
    s.set_read_timeout(Some(timeout)).unwrap();
    let started = Instant::now();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return End::Eof,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no EOF or reset within {:?}", started.elapsed())
            }
            Err(_) => return End::Reset,
        }
    }
}

/// Echoes `msg` on `s` and checks it came back.
fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)
        .unwrap_or_else(|e| panic!("echo of {:?}: {e}", String::from_utf8_lossy(msg)));
    assert_eq!(back, msg);
}

/// Scenario 6: half-close, upstream reset, client reset. Returns the number of complete
/// HTTP/1 requests made on the http1 listener.
fn resets_and_half_closes(t: &Topology, u: &Upstreams, answer: &[u8]) -> usize {
    let clients = t.clients();

    // A client that half-closes still gets the upstream's whole answer (which the upstream
    // only sends after it saw EOF).
    let request = pattern(HALF_REQUEST, 0x4a1f);
    let back = clients.enter(|| {
        let mut s = TcpStream::connect(t.at(HALF)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&request).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back)
            .unwrap_or_else(|e| panic!("half-closed client read after {} bytes: {e}", back.len()));
        back
    });
    let mut want = format!("{HALF_REQUEST} bytes\n").into_bytes();
    want.extend_from_slice(answer);
    assert_eq!(back.len(), want.len(), "answer length after a half-close");
    assert!(back == want, "the answer after a half-close differs");
    assert_eq!(u.late.requests.lock().unwrap().as_slice(), [request]);

    // An upstream reset closes the downstream: EOF or reset, never a hang.
    let before = u.rst.accepted.load(Ordering::SeqCst);
    let (end, took) = clients.enter(|| {
        let mut s = TcpStream::connect(t.at(RST)).unwrap();
        s.write_all(b"please reset me").unwrap();
        let started = Instant::now();
        (
            read_until_closed(&mut s, Duration::from_secs(10)),
            started.elapsed(),
        )
    });
    eprintln!("[dpdk] upstream reset: the client saw {end:?} after {took:?}");
    assert_eq!(u.rst.accepted.load(Ordering::SeqCst), before + 1);

    // A client reset disturbs nobody else: a session open beside it goes on, new sessions
    // and HTTP requests work; mosn closes the reset session's upstream side.
    let first = u.echo.count();
    clients.enter(|| {
        let mut a = TcpStream::connect(t.at(ECHO)).unwrap();
        echo_once(&mut a, b"session a");
        let mut b = TcpStream::connect(t.at(ECHO)).unwrap();
        echo_once(&mut b, b"session b");
        a.write_all(b"left unread").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        reset(a);
        let ended = eventually(Duration::from_secs(10), || {
            u.echo
                .conn(first)
                .ended
                .load(Ordering::SeqCst)
                .then_some(())
        });
        assert!(ended.is_some(), "the reset session's upstream stayed open");
        assert!(!u.echo.conn(first + 1).ended.load(Ordering::SeqCst));
        echo_once(&mut b, b"session b after a's reset");
        let mut c = TcpStream::connect(t.at(ECHO)).unwrap();
        echo_once(&mut c, b"session c");

        // The same on the HTTP/1 listener: a reset in the middle of a request body.
        let mut partial = TcpStream::connect(t.at(HTTP1)).unwrap();
        partial
            .write_all(b"POST /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        reset(partial);
        let r = h::get(t.at(HTTP1), "/after-reset", &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("x-echo-path"), Some("/after-reset"));
    });
    1
}

/// Kernel-side counters of the clients' namespace: the TCP/IP MIB (`nstat`) and the drop
/// and packet counters of the interface facing mosn.
fn kernel_counters(t: &Topology) -> std::collections::BTreeMap<String, u64> {
    let ns = t.clients();
    let mut out = std::collections::BTreeMap::new();
    if let Ok(o) = ns.cmd(&["nstat", "-asz"]).output() {
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            let mut f = l.split_whitespace();
            if let (Some(k), Some(Ok(v))) = (f.next(), f.next().map(str::parse::<u64>)) {
                out.insert(k.to_string(), v);
            }
        }
    }
    if let Ok(o) = ns
        .cmd(&["ip", "-j", "-s", "link", "show", "dev", &t.peer_link])
        .output()
    {
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        for dir in ["rx", "tx"] {
            for k in ["packets", "dropped", "errors"] {
                if let Some(n) = v[0]["stats64"][dir][k].as_u64() {
                    out.insert(format!("link_{dir}_{k}"), n);
                }
            }
        }
    }
    out
}

/// Prints what changed in [`kernel_counters`] since it was made (drops, overflows,
/// retransmissions, resets), also when the scenario fails.
struct KernelDiag<'a> {
    t: &'a Topology,
    what: &'static str,
    before: std::collections::BTreeMap<String, u64>,
}

impl<'a> KernelDiag<'a> {
    fn new(t: &'a Topology, what: &'static str) -> KernelDiag<'a> {
        KernelDiag {
            t,
            what,
            before: kernel_counters(t),
        }
    }
}

impl Drop for KernelDiag<'_> {
    fn drop(&mut self) {
        const KEYS: [&str; 12] = [
            "link_", "Listen", "Syn", "Retrans", "Timeout", "Drop", "Reset", "Rst", "Cookies",
            "Backlog", "Abort", "Prune",
        ];
        let after = kernel_counters(self.t);
        let changed: Vec<String> = after
            .iter()
            .filter(|(k, _)| KEYS.iter().any(|p| k.contains(p)))
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(*self.before.get(k).unwrap_or(&0));
                (d > 0).then(|| format!("{k}+{d}"))
            })
            .collect();
        eprintln!(
            "[dpdk] kernel counters during {}: {}",
            self.what,
            changed.join(" ")
        );
    }
}

/// Opens `n` connections to `addr` at once: every SYN leaves before any handshake is
/// awaited (non-blocking connects), then waits until all are established.
fn connect_burst(addr: SocketAddr, n: usize, timeout: Duration) -> Vec<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socks: Vec<Socket> = (0..n)
        .map(|i| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            match s.connect(&addr.into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
                Err(e) => panic!("connect {i} to {addr}: {e}"),
            }
            s
        })
        .collect();
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<usize> = (0..n).collect();
    while !pending.is_empty() {
        pending.retain(|&i| {
            if let Ok(Some(e)) = socks[i].take_error() {
                panic!("connection {i} to {addr} failed: {e}");
            }
            socks[i].peer_addr().is_err()
        });
        assert!(
            pending.is_empty() || Instant::now() < deadline,
            "{} of {n} connections to {addr} not established within {timeout:?}",
            pending.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    socks
        .into_iter()
        .map(|s| {
            s.set_nonblocking(false).unwrap();
            TcpStream::from(s)
        })
        .collect()
}

/// Scenario 5: 1,000 client connections opened at once (a burst of SYNs), each with a
/// keep-alive request in flight (twice). Returns the number of requests.
fn thousand_connections(t: &Topology, u: &Upstreams) -> usize {
    let addr = t.at(HTTP1);
    let before = u.web.count();
    let _diag = KernelDiag::new(t, "1,000 connections");
    t.clients().enter(|| {
        let started = Instant::now();
        let mut conns: Vec<Raw> = connect_burst(addr, MANY, Duration::from_secs(30))
            .into_iter()
            .map(Raw::from_stream)
            .collect();
        eprintln!("[dpdk] {MANY} connections open in {:?}", started.elapsed());
        for round in 0..2 {
            for (i, c) in conns.iter_mut().enumerate() {
                c.send(format!("GET /many/{round}/{i} HTTP/1.1\r\nHost: many\r\n\r\n").as_bytes());
            }
            for (i, c) in conns.iter_mut().enumerate() {
                let r = c.response().unwrap_or_else(|| {
                    let mut b = [0u8; 1];
                    c.s.set_read_timeout(Some(Duration::from_millis(10)))
                        .unwrap();
                    let now = c.s.read(&mut b);
                    panic!(
                        "round {round}: no answer on connection {i} after {:?} \
                             ({} bytes buffered: {:?}; a read now gives {now:?})",
                        started.elapsed(),
                        c.leftover().len(),
                        String::from_utf8_lossy(c.leftover()),
                    )
                });
                assert_eq!(r.status, 200, "round {round}, connection {i}: {r:?}");
                let path = format!("/many/{round}/{i}");
                assert_eq!(r.header("x-echo-path"), Some(path.as_str()));
            }
        }
        eprintln!(
            "[dpdk] {MANY} connections x 2 requests in {:?}",
            started.elapsed()
        );
    });
    u.web
        .wait_requests(before + 2 * MANY, Duration::from_secs(10));
    2 * MANY
}

/// A `#[test]` that runs [`end_to_end`] on one topology: skipped loudly without root and the
/// tools, a failure under CI (see [`privileged_or_skip`]).
macro_rules! end_to_end_test {
    ($(#[$doc:meta])* $name:ident: $kind:expr, $queues:expr, $interrupts:expr) => {
        $(#[$doc])*
        #[test]
        fn $name() {
            if privileged_or_skip(stringify!($name)) {
                end_to_end($kind, $queues, $interrupts);
            }
        }
    };
}

end_to_end_test!(tap_topology_end_to_end: Kind::Tap, 1, false);

end_to_end_test!(
    /// `poll_mode: interrupt`: the worker polls while frames come and sleeps on the queue's RX
    /// interrupt when none do; the same scenario, and next to no CPU when idle.
    tap_rx_interrupts_end_to_end: Kind::Tap, 1, true
);

end_to_end_test!(
    /// Two queue pairs, two workers, two stacks on one address: upstream replies and accepted
    /// connections reach the stack that owns them whichever queue they arrive on. With RX
    /// interrupts: a frame handed to a sleeping worker's inbox wakes it (an accepted
    /// connection's SYN steered to a sleeping stack would otherwise wait forever), and both
    /// workers sleep when idle. (af_packet below runs two queues busy-polled.)
    tap_two_queues_rx_interrupts_end_to_end: Kind::Tap, 2, true
);

/// IPv6 on the userspace stack, dual stack with IPv4, two queues in interrupt mode (neighbour
/// discovery reaches both stacks, IPv6 TCP is steered like IPv4): HTTP/1 from a kernel client
/// over IPv6 to listeners on `::` and on the stack's IPv6 address, proxied to an upstream
/// reached over IPv6 (which sees mosn's IPv6 address), and IPv4 on the same `::` listener.
#[test]
fn tap_ipv6_dual_stack_end_to_end() {
    if !privileged_or_skip("tap_ipv6_dual_stack_end_to_end") {
        return;
    }
    let _one = exclusive();
    let _ = h::rt();
    let t = Topology::new(Kind::Tap, 2, true);
    let (own6, peer6) = (
        "fd00:198:18:20::2".parse::<std::net::Ipv6Addr>().unwrap(),
        "fd00:198:18:20::1".parse::<std::net::Ipv6Addr>().unwrap(),
    );
    // An upstream that answers once per connection and says which address it was called from.
    let (up_port, callers) = t.clients().enter(|| {
        let l = std::net::TcpListener::bind("[::]:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let callers = Arc::new(Mutex::new(Vec::<SocketAddr>::new()));
        let seen = callers.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { break };
                seen.lock().unwrap().push(s.peer_addr().unwrap());
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nover v6",
                );
            }
        });
        (port, callers)
    });
    let mut backend = t.backend();
    backend["address6"] = json!(format!("{own6}/64"));
    backend["gateway6"] = json!(peer6.to_string());
    let mut any6 = h::listener("h6", "Http1", "web");
    any6["address"] = json!(format!("[::]:{HTTP1}"));
    let mut own = h::listener("h6own", "Http1", "web");
    own["address"] = json!(format!("[{own6}]:{HTTP2}"));
    let cfg = json!({
        "servers": [{
            "default_log_path": "stderr", "default_log_level": "INFO",
            "processor": 1, "graceful_timeout": "1s",
            "network_backend": backend,
            "listeners": [any6, own],
            "routers": [h::router("web", json!([
                {"match": {"prefix": "/direct"},
                 "direct_response": {"status": 418, "body": DIRECT_BODY}},
                h::prefix_route("/", "web6"),
            ]))]
        }],
        "cluster_manager": {"clusters": [
            h::cluster("web6", &[SocketAddr::from((peer6, up_port))]),
        ]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mosn.json");
    let access_log = dir.path().join("access.log");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&cfg)
            .unwrap()
            .replace(h::ACCESS_LOG, access_log.to_str().unwrap()),
    )
    .unwrap();
    let (mut mosn, _admin) = t.start_mosn(&path, &["h6"]);
    assert_eq!(
        mosn.listener_addr("h6own"),
        SocketAddr::from((own6, HTTP2)),
        "listener on the stack's IPv6 address"
    );
    // IPv6 on the tap's kernel side (Netns::new switches it off for the other tests).
    t.mosn_ns.exec(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{}.disable_ipv6=0", t.peer_link),
    ]);
    t.mosn_ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{peer6}/64"),
        "dev",
        &t.peer_link,
        "nodad",
    ]);

    let v6 = |port: u16| SocketAddr::from((own6, port));
    // A direct response, then the proxied request, over IPv6, on many connections (distinct
    // source ports: both stacks take some of them).
    for i in 0..16 {
        let r = t.clients().enter(|| h::get(v6(HTTP1), "/direct/x", &[]));
        assert_eq!(
            (r.status, r.text().as_str()),
            (418, DIRECT_BODY),
            "#{i}: {r:?}"
        );
    }
    for i in 0..8 {
        let r = t.clients().enter(|| h::get(v6(HTTP1), "/up", &[]));
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "over v6"),
            "#{i}: {r:?}"
        );
    }
    let r = t.clients().enter(|| h::get(v6(HTTP2), "/up", &[]));
    assert_eq!((r.status, r.text().as_str()), (200, "over v6"), "{r:?}");
    // The upstream was called from mosn's IPv6 address.
    let callers = callers.lock().unwrap().clone();
    assert_eq!(callers.len(), 9, "upstream connections: {callers:?}");
    for c in &callers {
        assert_eq!(
            c.ip(),
            std::net::IpAddr::V6(own6),
            "upstream called from {c}"
        );
    }
    // IPv4 on the same `::` listener.
    let r = t.clients().enter(|| h::get(t.at(HTTP1), "/direct/v4", &[]));
    assert_eq!((r.status, r.text().as_str()), (418, DIRECT_BODY), "{r:?}");
    // curl, the kernel's own client, over IPv6.
    let url = format!("http://[{own6}]:{HTTP1}/direct/curl");
    let r = t.clients().enter(|| h::curl(&[&url]));
    assert_eq!(r.status, 418, "{r:?}");

    mosn.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        mosn.wait_exit(Duration::from_secs(60)),
        0,
        "exit code after TERM"
    );
    mosn.wait_for("DPDK port closed", Duration::from_secs(5));
}

end_to_end_test!(af_packet_two_queues_end_to_end: Kind::AfPacket, 2, false);

end_to_end_test!(af_packet_topology_end_to_end: Kind::AfPacket, 1, false);

end_to_end_test!(af_xdp_topology_end_to_end: Kind::AfXdp, 1, false);

// === bad set-ups fail cleanly ===

/// Runs `mosn start -c cfg` in `ns` and waits for it to exit: (exit code, stdout + stderr,
/// time taken). Panics (after killing it) when it is still running after `limit`.
fn mosn_must_exit(ns: &Netns, cfg: &Path, limit: Duration) -> (i32, String, Duration) {
    let started = Instant::now();
    let mut child = start_mosn(ns, cfg);
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut s| {
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
    })
    .collect();
    let mut guard = h::ChildGuard(child);
    let code = loop {
        if let Some(st) = guard.0.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = guard.0.kill();
            let _ = guard.0.wait();
            let out: Vec<String> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            panic!("mosn still running after {limit:?}:\n{}", out.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let out: Vec<String> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let out = out.join("\n");
    eprintln!("[mosn exited {code} after {took:?}]\n{out}");
    (code, out, took)
}

/// A one-listener config (a direct response) over `backend`.
fn small_config(backend: Value) -> String {
    let cfg = json!({
        "servers": [{
            "default_log_path": "stderr", "processor": 1,
            "network_backend": backend,
            "listeners": [{
                "name": "http1", "address": "0.0.0.0:8080", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http1", "router_config_name": "r"}}]}]
            }],
            "routers": [h::router("r", json!([{"match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": "x"}}]))]
        }],
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    });
    serde_json::to_string_pretty(&cfg).unwrap()
}

fn bad_setup(tag: &str, eal_args: Vec<String>, port: &str) -> (i32, String, Duration) {
    let ns = Netns::new(tag);
    let eal = EalFiles::new(tag);
    let mut args = vec!["-l".to_string(), "0".into()];
    args.extend(eal_args);
    if args.iter().any(|a| a == "--no-pci") {
        args.extend(["--file-prefix".to_string(), eal.0.clone()]);
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mosn.json");
    std::fs::write(
        &cfg,
        small_config(json!({
            "type": "dpdk", "eal_args": args, "port": port,
            "address": "198.18.22.2/24", "gateway": "198.18.22.1",
            "mtu": 1500, "queues": 1, "mempool_size": 8191
        })),
    )
    .unwrap();
    let r = mosn_must_exit(&ns, &cfg, Duration::from_secs(30));
    drop(ns);
    drop(eal);
    r
}

/// The line where mosn says why it did not start.
fn failure_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("mosn: start-up failed"))
        .unwrap_or_else(|| panic!("no `mosn: start-up failed` line: {out}"))
}

#[test]
fn an_unknown_port_fails_cleanly() {
    if !privileged_or_skip("an_unknown_port_fails_cleanly") {
        return;
    }
    let _one = exclusive();
    let tap = format!("mbad{}", std::process::id());
    let (code, out, took) = bad_setup(
        "badport",
        vec![
            "--no-pci".into(),
            "--vdev".into(),
            format!("net_tap0,iface={tap}"),
        ],
        "net_nosuch0",
    );
    assert_eq!(code, 1, "a start-up failure: {out}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let why = failure_line(&out);
    assert!(
        why.contains("port \"net_nosuch0\"") && why.contains("unknown DPDK device"),
        "the message names the port: {why}"
    );
}

#[test]
fn an_unknown_vdev_driver_fails_cleanly() {
    if !privileged_or_skip("an_unknown_vdev_driver_fails_cleanly") {
        return;
    }
    let _one = exclusive();
    let (code, out, took) = bad_setup(
        "baddrv",
        vec!["--no-pci".into(), "--vdev".into(), "net_bogusdrv0".into()],
        "net_bogusdrv0",
    );
    assert_eq!(code, 1, "a start-up failure: {out}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let why = failure_line(&out);
    assert!(
        why.contains("EAL") && why.contains("net_bogusdrv0"),
        "the message names EAL and the device: {why}"
    );
    assert!(
        out.contains("Unable to parse device 'net_bogusdrv0'"),
        "EAL's own reason is shown: {out}"
    );
}

#[test]
fn eal_args_without_no_pci_are_rejected_at_config_load() {
    if !privileged_or_skip("eal_args_without_no_pci_are_rejected_at_config_load") {
        return;
    }
    let _one = exclusive();
    let tap = format!("mnop{}", std::process::id());
    let (code, out, took) = bad_setup(
        "nopci",
        vec!["--vdev".into(), format!("net_tap0,iface={tap}")],
        "net_tap0",
    );
    assert_eq!(code, 2, "a config error: {out}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(out.contains("--no-pci"), "{out}");
    assert!(out.contains("servers[0].network_backend.eal_args"), "{out}");
    // Rejected before EAL ran: no EAL output at all.
    assert!(!out.contains("EAL:"), "EAL ran: {out}");
}
