//! Rough figures for the capture paths (not a test; run as root):
//!
//! ```text
//! cargo run --release -p mosn-ebpf --example capture_bench
//! ```
//!
//! Everything runs inside a network namespace and two cgroup v2 children made for the run
//! (removed at the end). A client process in the "app" cgroup talks to an echo service on
//! 127.0.0.2; captured connections go through a stand-in proxy (this process, in the "proxy"
//! cgroup) that reads SO_ORIGINAL_DST and forwards. Per scenario it prints
//! - connect + first 64-byte request/response: p50 / p99 in microseconds (new connection
//!   each time),
//! - round trip of 64 bytes on an open connection through the proxy (p50, microseconds),
//! - round trip of the app <-> proxy hop alone (the proxy answers itself; p50), the hop
//!   sockmap shortcuts.
//!
//! Latencies in microseconds. Scenarios: direct (no capture), eBPF with 1 / 100 / 10,000 captured destinations (sockmap
//! on), eBPF with sockmap off, iptables with 1 / 100 / 10,000 rules.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mosn_ebpf::{Capture, CaptureSpec, Mode, OnFailure};

const CGROOT: &str = "/sys/fs/cgroup/unified";
const MARK: u32 = 0x5150;
const CONNECTS: usize = 2000;
const ROUND_TRIPS: usize = 20000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        client(&args[2], &args[3]);
        return;
    }
    assert!(nix::unistd::geteuid().is_root(), "run as root");
    let pid = std::process::id();
    let ns = format!("mosn-bench-{pid}");
    sh(&["ip", "netns", "add", &ns]);
    let _ns = Cleanup(vec!["ip".into(), "netns".into(), "del".into(), ns.clone()]);
    sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
    let nsfile = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    nix::sched::setns(&nsfile, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();

    let app = Path::new(CGROOT).join(format!("mosn-bench-app-{pid}"));
    let proxy_cg = Path::new(CGROOT).join(format!("mosn-bench-proxy-{pid}"));
    std::fs::create_dir(&app).unwrap();
    std::fs::create_dir(&proxy_cg).unwrap();
    let _cg = CgCleanup(vec![app.clone(), proxy_cg.clone()]);
    std::fs::write(proxy_cg.join("cgroup.procs"), pid.to_string()).unwrap();

    let echo = TcpListener::bind("127.0.0.2:0").unwrap();
    let svc = echo.local_addr().unwrap();
    spawn_acceptor(echo, |s, _| echo_loop(s));
    // the "hop" destination: the proxy answers itself, nothing listens there
    let hop: SocketAddr = format!("127.0.0.3:{}", svc.port()).parse().unwrap();
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let out_port = proxy.local_addr().unwrap().port();
    spawn_acceptor(proxy, move |s, _| proxy_conn(s, hop));

    println!(
        "{:<26} {:>8} {:>9} {:>9} {:>10} {:>9} {:>10}",
        "scenario", "install", "conn p50", "conn p99", "conn/s", "rtt p50", "hop p50"
    );
    run("direct", "-", &app, svc, None);
    for (name, n, mode, sockmap) in [
        ("ebpf, 1 destination", 1, Mode::Ebpf, true),
        ("ebpf, 100 destinations", 100, Mode::Ebpf, true),
        ("ebpf, 10000 destinations", 10000, Mode::Ebpf, true),
        ("ebpf sockmap off, 1", 1, Mode::Ebpf, false),
        ("ebpf sockmap off, 10000", 10000, Mode::Ebpf, false),
        ("iptables, 1 rule", 1, Mode::Iptables, false),
        ("iptables, 100 rules", 100, Mode::Iptables, false),
        ("iptables, 10000 rules", 10000, Mode::Iptables, false),
    ] {
        let mut destinations: Vec<mosn_ebpf::Destination> = (1..n)
            .map(|i| {
                format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255)
                    .parse()
                    .unwrap()
            })
            .collect();
        destinations.push("127.0.0.2".parse().unwrap());
        destinations.push("127.0.0.3".parse().unwrap());
        let spec = CaptureSpec {
            mode,
            on_failure: OnFailure::Refuse,
            cgroup: app.clone(),
            outbound_port: out_port,
            destinations,
            proxy_mark: Some(MARK),
            sockmap,
            instance: "mosnbench".to_string(),
            ..CaptureSpec::default()
        };
        let t = Instant::now();
        let guard = Capture::install(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let install = t.elapsed();
        run(name, &format!("{install:.0?}"), &app, svc, Some(hop));
        drop(guard);
    }
    std::fs::write(Path::new(CGROOT).join("cgroup.procs"), pid.to_string()).unwrap();
}

fn run(name: &str, install: &str, app: &Path, svc: SocketAddr, hop: Option<SocketAddr>) {
    let exe = std::env::current_exe().unwrap();
    let hop = hop.map_or("-".to_string(), |h| h.to_string());
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(app)
        .arg(&exe)
        .args(["client", &svc.to_string(), &hop])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{name:<26} {install:>8} {}",
        String::from_utf8_lossy(&out.stdout).trim_end()
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn round_trips(addr: SocketAddr, n: usize) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = [0u8; 64];
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&[7u8; 64]).unwrap();
        s.read_exact(&mut buf).unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    pct(&mut lat, 0.5)
}

fn client(svc: &str, hop: &str) {
    let svc: SocketAddr = svc.parse().unwrap();
    let mut lat = Vec::with_capacity(CONNECTS);
    let start = Instant::now();
    let mut buf = [0u8; 64];
    for _ in 0..CONNECTS {
        let t = Instant::now();
        let mut s = TcpStream::connect(svc).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(&[1u8; 64]).unwrap();
        s.read_exact(&mut buf).unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let rate = CONNECTS as f64 / start.elapsed().as_secs_f64();
    let rtt = round_trips(svc, ROUND_TRIPS);
    let hop_rtt = match hop.parse::<SocketAddr>() {
        Ok(h) => format!("{:>10.1}", round_trips(h, ROUND_TRIPS)),
        Err(_) => format!("{:>10}", "-"),
    };
    println!(
        "{:>9.1} {:>9.1} {:>10.0} {:>9.1} {hop_rtt}",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        rate,
        rtt
    );
}

fn spawn_acceptor(l: TcpListener, f: impl Fn(TcpStream, SocketAddr) + Send + Copy + 'static) {
    std::thread::spawn(move || loop {
        if let Ok((s, peer)) = l.accept() {
            std::thread::spawn(move || f(s, peer));
        }
    });
}

fn echo_loop(mut s: TcpStream) {
    s.set_nodelay(true).unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn original_dst(s: &TcpStream) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    let sa = getsockopt(s, sockopt::OriginalDst).ok()?;
    Some(SocketAddr::from((
        u32::from_be(sa.sin_addr.s_addr).to_be_bytes(),
        u16::from_be(sa.sin_port),
    )))
}

fn proxy_conn(s: TcpStream, hop: SocketAddr) {
    let Some(dst) = original_dst(&s) else {
        return;
    };
    if dst == hop {
        return echo_loop(s);
    }
    let up = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    up.set_mark(MARK).unwrap();
    if up.connect(&dst.into()).is_err() {
        return;
    }
    let up: TcpStream = up.into();
    let _ = up.set_nodelay(true);
    let _ = s.set_nodelay(true);
    let (mut a, mut b) = (s.try_clone().unwrap(), up.try_clone().unwrap());
    let (mut s, mut up) = (s, up);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b);
        let _ = b.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut up, &mut s);
    let _ = s.shutdown(std::net::Shutdown::Write);
}

fn sh(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap()
        .success();
    assert!(ok, "{args:?}");
}

struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(&self.0[0]).args(&self.0[1..]).status();
    }
}

struct CgCleanup(Vec<PathBuf>);
impl Drop for CgCleanup {
    fn drop(&mut self) {
        let _ = std::fs::write(
            Path::new(CGROOT).join("cgroup.procs"),
            std::process::id().to_string(),
        );
        for p in &self.0 {
            for _ in 0..100 {
                if std::fs::remove_dir(p).is_ok() || !p.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
