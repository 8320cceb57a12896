//! Shared pieces of the privileged capture tests: a cgroup v2 child made for the test, a
//! network namespace made for the test, a small HTTP service, a stand-in proxy that reads
//! `SO_ORIGINAL_DST` and forwards, and clients run inside a cgroup or a namespace.
//! Everything a test creates is removed by a `Drop`, also when the test fails.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";

pub fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when the test can run; otherwise skips loudly, or fails under CI (which runs as
/// root and must run every privileged test).
pub fn privileged_or_skip(test: &str, tools: &[&str]) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !tool(t)).collect();
    let cgroup2 = Path::new(CGROUP2_ROOT).join("cgroup.procs").exists();
    if root && missing.is_empty() && cgroup2 {
        return true;
    }
    let why = format!(
        "{test}: needs root, cgroup v2 at {CGROUP2_ROOT} and {tools:?} \
         (root={root}, cgroup2={cgroup2}, missing tools={missing:?})"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}: CI runs as root and must run this test (ci/setup.sh installs the tools)");
    }
    // straight to stderr: libtest captures eprintln! of passing tests
    let _ = writeln!(std::io::stderr(), "\n!!! SKIPPED {why}\n");
    false
}

pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// === cgroups ===

/// A child cgroup of the cgroup v2 root, removed (after killing what is left in it) on drop.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new(tag: &str) -> TestCgroup {
        let path = Path::new(CGROUP2_ROOT).join(format!("mosn-test-{tag}-{}", std::process::id()));
        if path.exists() {
            let _ = TestCgroup { path: path.clone() };
        }
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup { path }
    }

    pub fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// A shell command line that moves itself into this cgroup and then runs `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
            .arg(&self.path)
            .args(args);
        c
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let me = std::process::id() as i32;
        for pid in self.procs().into_iter().filter(|p| *p != me) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let start = Instant::now();
        while std::fs::remove_dir(&self.path).is_err() && self.path.exists() {
            if start.elapsed() > Duration::from_secs(5) {
                eprintln!("!!! could not remove cgroup {}", self.path.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// This whole process in `cg` until dropped (then back where it was). Sockets created
/// meanwhile belong to `cg` for good (cgroup eBPF programs follow the socket's cgroup).
pub struct InCgroup {
    previous: PathBuf,
}

pub fn own_cgroup() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .trim()
        .trim_start_matches('/');
    Path::new(CGROUP2_ROOT).join(rel)
}

impl InCgroup {
    pub fn enter(cg: &Path) -> InCgroup {
        let previous = own_cgroup();
        std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string())
            .unwrap_or_else(|e| panic!("joining {}: {e}", cg.display()));
        InCgroup { previous }
    }
}

impl Drop for InCgroup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(
            self.previous.join("cgroup.procs"),
            std::process::id().to_string(),
        ) {
            eprintln!(
                "!!! could not move back to {}: {e}",
                self.previous.display()
            );
        }
    }
}

/// The eBPF programs attached to a cgroup, as `bpftool cgroup show` lists them.
pub fn cgroup_programs(cg: &Path) -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(cg)
        .output()
        .expect("bpftool");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| format!("{} {}", p["attach_type"], p["name"]))
                .collect()
        })
        .unwrap_or_default()
}

// === network namespaces ===

/// A network namespace with `lo` up and the given addresses on it; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str, addrs: &[&str]) -> Netns {
        let name = format!("mosn-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        for a in addrs {
            ns.exec(&["ip", "addr", "add", a, "dev", "lo"]);
        }
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("spawn");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `iptables -t nat -S` inside the namespace.
    pub fn nat_rules(&self) -> String {
        let out = self
            .command(&["iptables", "-w", "-t", "nat", "-S"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread inside the namespace (sockets it creates, and threads it spawns,
    /// live there).
    pub fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = File::open(self.path()).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

// === the service: a small HTTP/1.1 server ===

/// Byte `i` of every generated body.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8 ^ (i / 251) as u8
}

pub fn checksum(bytes: &[u8]) -> u64 {
    // FNV-1a
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// An HTTP server: `GET|POST /bytes/N` answers N pattern bytes, with headers `x-peer` (the
/// connection's peer address), `x-body-len` and `x-body-sum` (of the request body).
pub struct Service {
    pub addr: SocketAddr,
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Service {
    pub fn start(listener: TcpListener) -> Service {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peers.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, peer)) => {
                        p.lock().unwrap().push(peer);
                        std::thread::spawn(move || serve_http(conn, peer));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Service { addr, peers, stop }
    }

    pub fn bind(addr: &str) -> Service {
        Service::start(TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")))
    }

    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_http(conn: TcpStream, peer: SocketAddr) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let n: usize = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nx-peer: {peer}\r\nx-body-len: {}\r\n\
         x-body-sum: {:016x}\r\nConnection: close\r\n\r\n",
        body.len(),
        checksum(&body)
    );
    let mut conn = conn;
    let _ = conn.write_all(head.as_bytes());
    let mut sent = 0;
    while sent < n {
        let len = (n - sent).min(1 << 20);
        let piece: Vec<u8> = (sent..sent + len).map(pattern).collect();
        if conn.write_all(&piece).is_err() {
            return;
        }
        sent += len;
    }
    let _ = conn.shutdown(Shutdown::Write);
}

// === the stand-in proxy ===

/// One connection the stand-in proxy accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub peer: SocketAddr,
    /// What `getsockopt(SO_ORIGINAL_DST)` answered.
    pub original_dst: Option<SocketAddr>,
    /// The local address of the proxy's own connection to the original destination.
    pub upstream_local: Option<SocketAddr>,
}

/// Listens on the outbound port (IPv4 and, when given, IPv6), asks each accepted connection
/// for its original destination with the same getsockopt a proxy uses under iptables, and
/// forwards it there (with `SO_MARK` = `mark` on the upstream socket, when set).
pub struct StandInProxy {
    pub port: u16,
    pub accepted: Arc<Mutex<Vec<Accepted>>>,
    stop: Arc<AtomicBool>,
}

pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match stream.local_addr().ok()? {
        SocketAddr::V4(_) => getsockopt(stream, sockopt::OriginalDst).ok().map(|sa| {
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
                u16::from_be(sa.sin_port),
            ))
        }),
        SocketAddr::V6(_) => getsockopt(stream, sockopt::Ip6tOriginalDst).ok().map(|sa| {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sa.sin6_addr.s6_addr),
                u16::from_be(sa.sin6_port),
                0,
                0,
            ))
        }),
    }
}

fn connect_marked(addr: SocketAddr, mark: Option<u32>) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    if let Some(m) = mark {
        socket.set_mark(m)?;
    }
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

impl StandInProxy {
    /// Binds 127.0.0.1:0 (and [::1] on the same port when `v6`) and starts serving.
    pub fn start(v6: bool, mark: Option<u32>) -> StandInProxy {
        // find a port free on both families
        let (l4, l6) = loop {
            let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l4.local_addr().unwrap().port();
            if !v6 {
                break (l4, None);
            }
            if let Ok(l6) = TcpListener::bind(("::1", port)) {
                break (l4, Some(l6));
            }
        };
        let port = l4.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        for l in std::iter::once(l4).chain(l6) {
            let (acc, stop) = (accepted.clone(), stop.clone());
            l.set_nonblocking(true).unwrap();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((conn, peer)) = l.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    conn.set_nonblocking(false).unwrap();
                    let dst = original_dst(&conn);
                    let upstream = dst.and_then(|d| connect_marked(d, mark).ok());
                    acc.lock().unwrap().push(Accepted {
                        peer,
                        original_dst: dst,
                        upstream_local: upstream.as_ref().and_then(|u| u.local_addr().ok()),
                    });
                    let Some(up) = upstream else {
                        continue; // dropping `conn` closes it
                    };
                    let (c2, u2) = (conn.try_clone().unwrap(), up.try_clone().unwrap());
                    std::thread::spawn(move || pipe(conn, up));
                    std::thread::spawn(move || pipe(u2, c2));
                }
            });
        }
        StandInProxy {
            port,
            accepted,
            stop,
        }
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap().clone()
    }
}

impl Drop for StandInProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// === clients ===

/// A file of `len` pattern bytes in the temp dir, removed on drop.
pub struct TempFile(pub PathBuf);

fn temp_path(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("mosn-ebpf-{tag}-{}-{n}", std::process::id()))
}

impl TempFile {
    pub fn pattern(tag: &str, len: usize) -> TempFile {
        let path = temp_path(tag);
        let bytes: Vec<u8> = (0..len).map(pattern).collect();
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }

    pub fn empty(tag: &str) -> TempFile {
        TempFile(temp_path(tag))
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a curl run saw.
#[derive(Debug)]
pub struct CurlResult {
    pub status: String,
    pub headers: String,
    pub body_len: usize,
    pub body_ok: bool,
    pub seconds: f64,
}

impl CurlResult {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// `POST url` with `upload` as the body, run through `wrap` (inside a cgroup or a
/// namespace); checks the response body against the pattern.
pub fn curl(
    wrap: impl FnOnce(&[&str]) -> Output,
    url: &str,
    upload: &TempFile,
    expect_len: usize,
) -> CurlResult {
    let out = TempFile::empty("out");
    let at = format!("@{}", upload.path());
    let args = [
        "curl",
        "-sS",
        "-g",
        "--max-time",
        "60",
        "-H",
        "Expect:",
        "--data-binary",
        at.as_str(),
        "-o",
        out.path(),
        "-D",
        "-",
        url,
    ];
    let start = Instant::now();
    let output = wrap(&args);
    let seconds = start.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let headers = String::from_utf8_lossy(&output.stdout).into_owned();
    let body = std::fs::read(&out.0).unwrap_or_default();
    let body_ok =
        body.len() == expect_len && body.iter().enumerate().all(|(i, b)| *b == pattern(i));
    CurlResult {
        status: headers.lines().next().unwrap_or("").trim().to_string(),
        headers,
        body_len: body.len(),
        body_ok,
        seconds,
    }
}

/// A python client that connects to HOST PORT (after `setuid(UID)` when UID > 0, with
/// `SO_MARK` = MARK when MARK > 0), sends a GET for 10 bytes and prints the response head.
pub const PY_CLIENT: &str = r#"
import os, socket, sys
host, port, mark, uid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if uid: os.setuid(uid)
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.settimeout(10)
if mark: s.setsockopt(socket.SOL_SOCKET, 36, mark)  # SO_MARK
s.connect((host, port))
s.sendall(b"GET /bytes/10 HTTP/1.0\r\nHost: x\r\n\r\n")
out = b""
while True:
    b = s.recv(65536)
    if not b: break
    out += b
print(out.split(b"\r\n\r\n")[0].decode())
"#;
