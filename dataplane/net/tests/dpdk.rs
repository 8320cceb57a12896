#![cfg(feature = "dpdk")]
//! The DPDK device under the userspace stack, for real: DPDK virtual PMDs (`net_tap`,
//! `net_af_packet`) inside network namespaces this test makes, kernel sockets on the other
//! side. Addresses come from 198.18.0.0/15 only; nothing leaves the namespaces.
//!
//! ```text
//!  tap:        namespace B: [DPDK child: net_tap0 -> tap "dtap0"] <-> kernel dtap0 198.18.11.1
//!              the stack is 198.18.11.2; kernel clients and listeners run in B
//!  af_packet:  namespace B: [DPDK child: net_af_packet0 on vb0]  <-veth->  namespace A: va0
//!              198.18.10.1 (`ethtool -K va0 tx off`); the stack is 198.18.10.2
//! ```
//!
//! EAL can be initialised once per process, so every scenario runs the DPDK side in a child
//! process: this test binary again (`ip netns exec <B> <this binary> child --exact`), with
//! `MOSN_DPDK_CHILD` saying what to do. The child talks over stdin/stdout: it prints
//! `@@ `-prefixed lines (READY, EVENT, RESULT), reads commands from stdin, and ends when stdin
//! closes. Its stderr (EAL's log) is shown only when a test fails. DPDK children busy-poll a
//! core, so the tests take turns.
//!
//! Run as root (`cargo test -p mosn-net --features dpdk --test dpdk`); without root the
//! tests that need it skip with a message. Namespaces (and the veth/tap in them) and EAL's
//! runtime directory are removed by guards, also when a test fails.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mosn_net::dpdk::{init_eal, Port, PortOptions};

#[path = "support/hugepages.rs"]
mod hugepages;
use hugepages::{hugepages_free, Hugepages};

/// Bytes echoed through the DPDK stack, checked byte for byte.
const ECHO_BYTES: usize = 10 * 1024 * 1024;
/// Bytes the DPDK stack sends to a kernel echo server and checks.
const UPSTREAM_BYTES: usize = 4 * 1024 * 1024;
/// The longest a single step may take (debug builds over a loaded 2-core machine).
const STEP: Duration = Duration::from_secs(60);

// ======================================================================================
// Privileges, turns, commands
// ======================================================================================

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!(
        "\n!!! SKIPPED {test}: needs root (network namespaces, veth/tap, DPDK); run \
         `cargo test -p mosn-net --features dpdk --test dpdk` as root\n"
    );
    false
}

/// DPDK children busy-poll a core: one scenario at a time.
fn turn() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs a command that must succeed.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
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

// ======================================================================================
// Namespaces and clean-up
// ======================================================================================

/// Everything a scenario creates outside its own memory; removed on drop, also on panic.
struct Cleanup {
    netns: Vec<String>,
    /// `--file-prefix` of the child's EAL: /var/run/dpdk/<prefix> is removed.
    prefix: String,
    /// Whether /var/run/dpdk existed before (if not, it is removed again when empty).
    run_dir_existed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth/tap links in it.
        for ns in &self.netns {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
        if !self.run_dir_existed {
            let _ = std::fs::remove_dir("/var/run/dpdk");
        }
    }
}

/// Network namespace `name`: creates it with lo up and IPv6 off (no ND/RS chatter).
fn add_netns(cleanup: &mut Cleanup, name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
    run(&["ip", "netns", "add", name]);
    cleanup.netns.push(name.to_owned());
    run(&["ip", "-n", name, "link", "set", "lo", "up"]);
    for knob in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        run(&["ip", "netns", "exec", name, "sysctl", "-qw", knob]);
    }
}

/// Runs `f` on a thread inside namespace `ns`: the sockets it makes live there.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(Path::new("/var/run/netns").join(ns))
        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pmd {
    Tap,
    AfPacket,
}

/// One scenario's namespaces and addresses.
struct Topo {
    pmd: Pmd,
    /// Where the DPDK child runs.
    dpdk_ns: String,
    /// Where kernel clients and listeners run.
    kernel_ns: String,
    /// The kernel's interface towards the DPDK port.
    kernel_if: String,
    kernel_ip: Ipv4Addr,
    dpdk_ip: Ipv4Addr,
    vdev: String,
    device: String,
    cleanup: Cleanup,
}

impl Topo {
    fn new(pmd: Pmd, tag: &str) -> Topo {
        let pid = std::process::id();
        let run_dir_existed = Path::new("/var/run/dpdk").exists();
        let mut cleanup = Cleanup {
            netns: Vec::new(),
            prefix: format!("mosn-dpdk-{pid}-{tag}"),
            run_dir_existed,
        };
        let b = format!("mosn-dpdk-{pid}-{tag}-b");
        add_netns(&mut cleanup, &b);
        match pmd {
            Pmd::Tap => Topo {
                pmd,
                dpdk_ns: b.clone(),
                kernel_ns: b,
                kernel_if: "dtap0".into(),
                kernel_ip: Ipv4Addr::new(198, 18, 11, 1),
                dpdk_ip: Ipv4Addr::new(198, 18, 11, 2),
                vdev: "net_tap0,iface=dtap0".into(),
                device: "net_tap0".into(),
                cleanup,
            },
            Pmd::AfPacket => {
                let a = format!("mosn-dpdk-{pid}-{tag}-a");
                add_netns(&mut cleanup, &a);
                run(&[
                    "ip", "-n", &a, "link", "add", "va0", "type", "veth", "peer", "name", "vb0",
                    "netns", &b,
                ]);
                run(&[
                    "ip",
                    "-n",
                    &a,
                    "addr",
                    "add",
                    "198.18.10.1/24",
                    "dev",
                    "va0",
                ]);
                run(&["ip", "-n", &a, "link", "set", "va0", "up"]);
                run(&["ip", "-n", &b, "link", "set", "vb0", "up"]);
                // Finished checksums and no TSO super-frames from the kernel (ACCELERATION §4).
                run(&[
                    "ip", "netns", "exec", &a, "ethtool", "-K", "va0", "tx", "off",
                ]);
                Topo {
                    pmd,
                    dpdk_ns: b,
                    kernel_ns: a,
                    kernel_if: "va0".into(),
                    kernel_ip: Ipv4Addr::new(198, 18, 10, 1),
                    dpdk_ip: Ipv4Addr::new(198, 18, 10, 2),
                    vdev: "net_af_packet0,iface=vb0".into(),
                    device: "net_af_packet0".into(),
                    cleanup,
                }
            }
        }
    }

    fn eal_args(&self, vdev: &str) -> Vec<String> {
        vec![
            "-l".into(),
            "0".into(),
            "--no-pci".into(),
            "--file-prefix".into(),
            self.cleanup.prefix.clone(),
            "--vdev".into(),
            vdev.into(),
        ]
    }

    /// Starts the DPDK child in `mode` over `device` (a vdev given to EAL as `vdev`).
    fn child(&self, mode: &str, vdev: &str, device: &str) -> DpdkChild {
        DpdkChild::spawn(
            &self.dpdk_ns,
            mode,
            &self.eal_args(vdev),
            device,
            &format!("{}/24", self.dpdk_ip),
        )
    }

    /// Starts the serving child and finishes the kernel side (the tap exists only then).
    /// Returns the child and the port's MAC (`aa:bb:..`).
    fn serve(&self) -> (DpdkChild, String) {
        let mut child = self.child("serve", &self.vdev, &self.device);
        let ready = child.expect("READY");
        let mac = ready.strip_prefix("mac=").unwrap_or_default().to_owned();
        if self.pmd == Pmd::Tap {
            let ip = format!("{}/24", self.kernel_ip);
            run(&[
                "ip",
                "-n",
                &self.kernel_ns,
                "addr",
                "add",
                &ip,
                "dev",
                &self.kernel_if,
            ]);
            run(&[
                "ip",
                "-n",
                &self.kernel_ns,
                "link",
                "set",
                &self.kernel_if,
                "up",
            ]);
        }
        (child, mac)
    }

    fn dpdk(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.dpdk_ip, port))
    }

    /// The kernel's neighbour entry for the DPDK address (`ip neigh`).
    fn neighbour(&self) -> String {
        output(&[
            "ip",
            "-n",
            &self.kernel_ns,
            "neigh",
            "show",
            &self.dpdk_ip.to_string(),
            "dev",
            &self.kernel_if,
        ])
    }
}

// ======================================================================================
// The child process, seen from the parent
// ======================================================================================

struct DpdkChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// The last `@@` lines, for failure messages.
    seen: Vec<String>,
}

impl DpdkChild {
    fn spawn(ns: &str, mode: &str, eal: &[String], device: &str, addr: &str) -> DpdkChild {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(["child", "--exact", "--nocapture", "--test-threads", "1"])
            .env("MOSN_DPDK_CHILD", mode)
            .env("MOSN_DPDK_EAL", eal.join("\u{1f}"))
            .env("MOSN_DPDK_DEVICE", device)
            .env("MOSN_DPDK_ADDR", addr)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the DPDK child");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("child stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have printed `test child ... ` on the same line first.
                if let Some(at) = line.find("@@ ") {
                    if tx.send(line[at + 3..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut err = child.stderr.take().expect("child stderr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        DpdkChild {
            child,
            stdin,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    fn log(&self) -> String {
        let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        format!(
            "child messages: {:?}\n--- child stderr ---\n{err}--- end ---",
            self.seen
        )
    }

    /// Waits for the next message starting with `prefix` (others are skipped); panics with
    /// the child's log on timeout, exit or a FAIL message.
    fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(msg) => {
                    self.seen.push(msg.clone());
                    if msg.starts_with("FAIL") {
                        panic!("DPDK child failed: {msg}\n{}", self.log());
                    }
                    if let Some(rest) = msg.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {prefix:?} from the DPDK child within {STEP:?}\n{}",
                        self.log()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "the DPDK child ended ({status:?}) before {prefix:?}\n{}",
                        self.log()
                    )
                }
            }
        }
    }

    fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("child stdin open");
        writeln!(stdin, "{cmd}").expect("write to the DPDK child");
        stdin.flush().expect("flush to the DPDK child");
    }

    /// Closes stdin (the child then shuts down) and checks that it exits cleanly.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let bye = self.expect("BYE");
        let deadline = Instant::now() + STEP;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "DPDK child exited with {status}\n{}",
                        self.log()
                    );
                    return bye;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => panic!("the DPDK child did not exit\n{}", self.log()),
            }
        }
    }

    /// Waits for a child that exits by itself (bad set-ups), returning all its messages.
    fn wait_exit(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + STEP;
        loop {
            while let Ok(msg) = self.lines.try_recv() {
                self.seen.push(msg);
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    while let Ok(msg) = self.lines.recv_timeout(Duration::from_millis(200)) {
                        self.seen.push(msg);
                    }
                    assert!(
                        status.success(),
                        "DPDK child exited with {status}\n{}",
                        self.log()
                    );
                    return std::mem::take(&mut self.seen);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => panic!("the DPDK child did not exit\n{}", self.log()),
            }
        }
    }
}

impl Drop for DpdkChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Only when a test failed half-way: the child we started, by its handle.
        if let Ok(None) = self.child.try_wait() {
            std::thread::sleep(Duration::from_millis(200));
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

// ======================================================================================
// Kernel-side helpers
// ======================================================================================

fn connect(to: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&to, STEP).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    s.set_read_timeout(Some(STEP)).unwrap();
    s.set_write_timeout(Some(STEP)).unwrap();
    s
}

/// Sends `data` on one thread while reading the echo on this one; then half-closes and
/// expects EOF after exactly `data.len()` bytes.
fn echo_roundtrip(to: SocketAddr, data: &[u8]) {
    let mut s = connect(to);
    let mut w = s.try_clone().unwrap();
    let mut back = Vec::with_capacity(data.len());
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            for chunk in data.chunks(64 * 1024) {
                w.write_all(chunk).expect("write to the DPDK echo server");
            }
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => back.extend_from_slice(&buf[..n]),
                Err(e) => panic!("read echo after {} bytes: {e}", back.len()),
            }
        }
        writer.join().unwrap();
    });
    assert_eq!(back.len(), data.len(), "echoed length");
    assert!(back == data, "echoed bytes differ");
}

/// A network off the link, reached through a static route of the DPDK stack (next hop: the
/// kernel's end of the link).
const ROUTED_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 12, 0), 24);

/// A kernel echo server (echo until EOF, then close) on `ip:0`; returns its address.
fn kernel_echo_server(ns: &str, ip: Ipv4Addr) -> SocketAddr {
    let listener = in_netns(ns, || {
        TcpListener::bind((ip, 0)).expect("bind in the namespace")
    });
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A port on `ip` where nothing listens (bound, then closed): the kernel answers RST.
fn kernel_closed_port(ns: &str, ip: Ipv4Addr) -> SocketAddr {
    in_netns(ns, || {
        TcpListener::bind((ip, 0))
            .expect("bind in the namespace")
            .local_addr()
            .unwrap()
    })
}

// ======================================================================================
// Scenarios
// ======================================================================================

/// ARP resolution by the kernel peer, then 10 MB echoed byte-identical through a
/// `UserspaceListener` on the DPDK stack.
fn arp_and_echo(pmd: Pmd, tag: &str) {
    let _turn = turn();
    let topo = Topo::new(pmd, tag);
    let (mut child, mac) = topo.serve();
    let started = Instant::now();
    let data = payload(ECHO_BYTES, 7);
    in_netns(&topo.kernel_ns, || echo_roundtrip(topo.dpdk(7), &data));
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{pmd:?}: {} MB echoed in {secs:.2} s ({:.1} MB/s each way)",
        ECHO_BYTES >> 20,
        ECHO_BYTES as f64 / 1e6 / secs
    );
    let neigh = topo.neighbour();
    assert!(
        neigh.contains(&format!("lladdr {mac}")),
        "the kernel resolved {} to {mac:?} by ARP; `ip neigh` says: {neigh:?}",
        topo.dpdk_ip
    );
    child.send("stats");
    let stats = child.expect("STATS");
    eprintln!("{pmd:?}: port stats {stats}");
    child.finish();
}

/// The DPDK stack connects out to a kernel listener in the other namespace (ARP from the
/// stack, handshake, 4 MB both ways, FIN both ways), to one behind a static route, and a
/// connect to a closed kernel port is refused (RST), as on the kernel path.
fn upstream(pmd: Pmd, tag: &str) {
    let _turn = turn();
    let topo = Topo::new(pmd, tag);
    let (mut child, _) = topo.serve();
    let echo = kernel_echo_server(&topo.kernel_ns, topo.kernel_ip);
    child.send(&format!("connect {echo} {UPSTREAM_BYTES}"));
    let r = child.expect("RESULT connect");
    assert_eq!(r, format!("ok {UPSTREAM_BYTES}"), "{}", child.log());
    // Off-link, through the stack's static route to ROUTED_NET via the kernel's end of the
    // link: the kernel owns ROUTED_HOST (on its loopback), so it answers itself.
    let routed = Ipv4Addr::new(
        ROUTED_NET.0.octets()[0],
        ROUTED_NET.0.octets()[1],
        ROUTED_NET.0.octets()[2],
        1,
    );
    run(&[
        "ip",
        "-n",
        &topo.kernel_ns,
        "addr",
        "add",
        &format!("{routed}/32"),
        "dev",
        "lo",
    ]);
    let far = kernel_echo_server(&topo.kernel_ns, routed);
    child.send(&format!("connect {far} {UPSTREAM_BYTES}"));
    let r = child.expect("RESULT connect");
    assert_eq!(
        r,
        format!("ok {UPSTREAM_BYTES}"),
        "via the static route: {}",
        child.log()
    );
    let closed = kernel_closed_port(&topo.kernel_ns, topo.kernel_ip);
    child.send(&format!("connect {closed} 0"));
    let r = child.expect("RESULT connect");
    assert!(
        r.starts_with("err ConnectionRefused"),
        "{r}\n{}",
        child.log()
    );
    child.finish();
}

/// Resets and half-closes between a kernel client and the DPDK stack, each behaving as a
/// kernel socket would on both ends.
fn reset_and_half_close(pmd: Pmd, tag: &str) {
    let _turn = turn();
    let topo = Topo::new(pmd, tag);
    let (mut child, _) = topo.serve();
    in_netns(&topo.kernel_ns, || {
        // 1. Kernel client resets (SO_LINGER 0): the stack's reader sees ConnectionReset.
        let s = connect(topo.dpdk(11));
        (&s).write_all(b"some bytes").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    });
    assert_eq!(child.expect("EVENT p11"), "reset");

    in_netns(&topo.kernel_ns, || {
        // 2. The stack drops a connection with unread bytes: RST, the client reads ECONNRESET
        //    (Linux does the same on close(2) with unread data).
        let mut s = connect(topo.dpdk(12));
        s.write_all(&payload(1000, 3)).unwrap();
        let mut buf = [0u8; 16];
        let err = loop {
            match s.read(&mut buf) {
                Ok(0) => panic!("EOF instead of a reset"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    });
    assert_eq!(child.expect("EVENT p12"), "dropped");

    in_netns(&topo.kernel_ns, || {
        // 3. Kernel client half-closes: the stack reads to EOF, then still answers.
        let mut s = connect(topo.dpdk(9));
        let data = payload(300_000, 9);
        s.write_all(&data).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, format!("got {}\n", data.len()));
    });

    in_netns(&topo.kernel_ns, || {
        // 4. The stack half-closes first: the client reads EOF, then still sends.
        let mut s = connect(topo.dpdk(13));
        let mut greeting = String::new();
        s.read_to_string(&mut greeting).unwrap();
        assert_eq!(greeting, "hello\n");
        s.write_all(&payload(200_000, 13)).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    });
    assert_eq!(child.expect("EVENT p13"), "got 200000");

    // 5. No connection is left behind on the stack.
    child.send("stack");
    let stack = child.expect("STACK");
    assert!(stack.contains("conns=0"), "{stack}");
    child.finish();
}

/// Bad set-ups fail cleanly with errors that name the cause: a vdev whose probe fails (its
/// name is then unknown), a name that was never given, a queue out of range or in use, a
/// second EAL init with other arguments.
fn bad_setup(pmd: Pmd, tag: &str) {
    let _turn = turn();
    let topo = Topo::new(pmd, tag);
    let (bad_vdev, bad_device) = match pmd {
        // A tap interface name longer than IFNAMSIZ: the PMD refuses it.
        Pmd::Tap => ("net_tap0,iface=mosn-tap-name-far-too-long", "net_tap0"),
        // No such interface in the namespace.
        Pmd::AfPacket => ("net_af_packet0,iface=nosuch0", "net_af_packet0"),
    };
    let msgs = topo.child("bad", bad_vdev, bad_device).wait_exit();
    eprintln!("{pmd:?} bad set-up: {msgs:#?}");
    let find = |key: &str| {
        msgs.iter()
            .find_map(|m| m.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {msgs:?}"))
            .trim()
            .to_owned()
    };
    assert_eq!(find("RESULT init"), "ok");
    let open = find("RESULT open");
    assert!(
        open.starts_with("err NotFound") && open.contains(bad_device),
        "opening {bad_device} after its probe failed: {open}"
    );
    let other = find("RESULT open-unknown");
    assert!(
        other.starts_with("err NotFound") && other.contains("net_nosuch7"),
        "{other}"
    );
    let again = find("RESULT init-other");
    assert!(again.starts_with("err AlreadyExists"), "{again}");
    assert_eq!(find("RESULT init-same"), "ok");

    // A good port: queue out of range, queue in use.
    let (mut child, _) = topo.serve();
    child.send("queue 3");
    let q = child.expect("RESULT queue");
    assert!(
        q.starts_with("err InvalidInput") && q.contains("queue 3 out of range"),
        "{q}"
    );
    child.send("queue 0");
    let q = child.expect("RESULT queue");
    assert!(
        q.starts_with("err AddrInUse") && q.contains("in use"),
        "{q}"
    );
    child.finish();
}

// ======================================================================================
// Tests
// ======================================================================================

#[test]
fn tap_arp_and_echo_10mb() {
    if root_or_skip("tap_arp_and_echo_10mb") {
        arp_and_echo(Pmd::Tap, "t1");
    }
}

#[test]
fn af_packet_arp_and_echo_10mb() {
    if root_or_skip("af_packet_arp_and_echo_10mb") {
        arp_and_echo(Pmd::AfPacket, "p1");
    }
}

#[test]
fn tap_upstream_connect() {
    if root_or_skip("tap_upstream_connect") {
        upstream(Pmd::Tap, "t2");
    }
}

#[test]
fn af_packet_upstream_connect() {
    if root_or_skip("af_packet_upstream_connect") {
        upstream(Pmd::AfPacket, "p2");
    }
}

#[test]
fn tap_reset_and_half_close() {
    if root_or_skip("tap_reset_and_half_close") {
        reset_and_half_close(Pmd::Tap, "t3");
    }
}

#[test]
fn af_packet_reset_and_half_close() {
    if root_or_skip("af_packet_reset_and_half_close") {
        reset_and_half_close(Pmd::AfPacket, "p3");
    }
}

#[test]
fn tap_bad_setup() {
    if root_or_skip("tap_bad_setup") {
        bad_setup(Pmd::Tap, "t4");
    }
}

#[test]
fn af_packet_bad_setup() {
    if root_or_skip("af_packet_bad_setup") {
        bad_setup(Pmd::AfPacket, "p4");
    }
}

/// A tap topology with its DPDK child serving, and the free hugepages the child sees once its
/// EAL and port are up.
fn tap_child_free_hugepages(tag: &str) -> (Topo, DpdkChild, u64) {
    let topo = Topo::new(Pmd::Tap, tag);
    let (mut child, _) = topo.serve();
    child.send("hugepages");
    let free = child
        .expect("HUGEPAGES free=")
        .parse()
        .expect("a page count");
    (topo, child, free)
}

/// With free hugepages `init_eal` adds `--in-memory` (memfd-backed hugepages, no hugetlbfs
/// mount): the child's EAL takes its memory from them, and the port works (1 MB echo). The
/// other tests run without hugepages (`--no-huge` fallback) unless the machine has some free.
#[test]
fn tap_on_hugepages_in_memory() {
    if !root_or_skip("tap_on_hugepages_in_memory") {
        return;
    }
    let _turn = turn();
    let Some(_pages) = Hugepages::reserve(96) else {
        eprintln!("\n!!! SKIPPED tap_on_hugepages_in_memory: cannot reserve 96 hugepages\n");
        return;
    };
    let before = hugepages_free();
    let (topo, child, free) = tap_child_free_hugepages("t6");
    assert!(
        free < before,
        "EAL should run on hugepages (--in-memory): {before} free before, {free} after\n{}",
        child.log()
    );
    let data = payload(1 << 20, 6);
    in_netns(&topo.kernel_ns, || echo_roundtrip(topo.dpdk(7), &data));
    child.finish();
    assert!(
        !Path::new("/var/run/dpdk")
            .join(&topo.cleanup.prefix)
            .join("config")
            .exists(),
        "--in-memory writes no EAL config file"
    );
}

/// A few free hugepages (8 x 2 MiB, less than the default mbuf pool) are not taken: EAL runs on
/// plain memory and the port works. Taking them made the pool fail with ENOMEM at start-up.
#[test]
fn tap_with_few_hugepages_runs_on_plain_memory() {
    if !root_or_skip("tap_with_few_hugepages_runs_on_plain_memory") {
        return;
    }
    let _turn = turn();
    let Some(_pages) = Hugepages::reserve(8) else {
        eprintln!("\n!!! SKIPPED tap_with_few_hugepages_runs_on_plain_memory: cannot reserve 8 hugepages\n");
        return;
    };
    let before = hugepages_free();
    if before * 2 >= mosn_net::dpdk::MIN_HUGEPAGE_MB {
        eprintln!(
            "\n!!! SKIPPED tap_with_few_hugepages_runs_on_plain_memory: {before} hugepages are free \
             already (the test needs fewer than {} MiB)\n",
            mosn_net::dpdk::MIN_HUGEPAGE_MB
        );
        return;
    }
    let (topo, child, free) = tap_child_free_hugepages("t7");
    assert_eq!(
        free,
        before,
        "EAL should leave {before} free hugepages alone\n{}",
        child.log()
    );
    let data = payload(1 << 20, 7);
    in_netns(&topo.kernel_ns, || echo_roundtrip(topo.dpdk(7), &data));
    child.finish();
}

/// An unknown driver in `--vdev` makes EAL init fail, with an error (no panic, no exit).
#[test]
fn unknown_vdev_driver_fails_eal_init() {
    if !root_or_skip("unknown_vdev_driver_fails_eal_init") {
        return;
    }
    let _turn = turn();
    let topo = Topo::new(Pmd::Tap, "t5");
    let msgs = topo
        .child("bad", "net_nosuchdriver0", "net_nosuchdriver0")
        .wait_exit();
    let init = msgs
        .iter()
        .find_map(|m| m.strip_prefix("RESULT init"))
        .unwrap_or_else(|| panic!("no init result in {msgs:?}"));
    assert!(init.contains("err") && init.contains("EAL init"), "{init}");
}

/// EAL arguments that would let EAL probe the host's PCI devices are refused before EAL
/// runs (so this runs in the test process itself, unprivileged); a port needs EAL first.
#[test]
fn eal_args_without_no_pci_are_refused() {
    let err = init_eal(&["-l".into(), "0".into(), "--vdev".into(), "net_tap0".into()])
        .expect_err("args without --no-pci must be refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("--no-pci"), "{err}");
    let err = Port::open(&PortOptions {
        device: "net_tap0".into(),
        ..PortOptions::default()
    })
    .expect_err("no EAL yet");
    assert!(err.to_string().contains("init_eal"), "{err}");
}

// ======================================================================================
// The child side
// ======================================================================================

/// Entry point of the DPDK child (a no-op in a normal test run).
#[test]
fn child() {
    let Ok(mode) = std::env::var("MOSN_DPDK_CHILD") else {
        return;
    };
    let eal: Vec<String> = std::env::var("MOSN_DPDK_EAL")
        .unwrap_or_default()
        .split('\u{1f}')
        .map(str::to_owned)
        .collect();
    let device = std::env::var("MOSN_DPDK_DEVICE").unwrap_or_default();
    let addr = std::env::var("MOSN_DPDK_ADDR").unwrap_or_default();
    match mode.as_str() {
        "serve" => child_side::serve(&eal, &device, &addr),
        "bad" => child_side::bad(&eal, &device),
        other => say(&format!("FAIL unknown mode {other}")),
    }
}

fn say(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@@ {msg}");
    let _ = out.flush();
}

fn result<T>(what: &str, r: &std::io::Result<T>) {
    match r {
        Ok(_) => say(&format!("RESULT {what} ok")),
        Err(e) => say(&format!("RESULT {what} err {:?} {e}", e.kind())),
    }
}

mod child_side {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use mosn_net::dpdk::{init_eal, DpdkDevice, Port, PortOptions};
    use mosn_net::userspace::{PollMode, StackConfig, UserspaceStack, UserspaceTransport};
    use mosn_net::{ListenSpec, Listener, Transport};
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{payload, result, say};

    type T = UserspaceTransport<DpdkDevice>;

    pub(super) fn bad(eal: &[String], device: &str) {
        let r = init_eal(eal);
        result("init", &r);
        if r.is_err() {
            return;
        }
        let open = |name: &str| {
            Port::open(&PortOptions {
                device: name.into(),
                ..PortOptions::default()
            })
        };
        result("open", &open(device));
        result("open-unknown", &open("net_nosuch7"));
        let mut other = eal.to_vec();
        other.push("--no-telemetry".into());
        result("init-other", &init_eal(&other));
        result("init-same", &init_eal(eal));
    }

    pub(super) fn serve(eal: &[String], device: &str, addr: &str) {
        if let Err(e) = init_eal(eal) {
            say(&format!("FAIL init_eal: {e}"));
            return;
        }
        // The defaults, as the server uses them.
        let port = match Port::open(&PortOptions {
            device: device.into(),
            ..PortOptions::default()
        }) {
            Ok(p) => p,
            Err(e) => {
                say(&format!("FAIL open {device}: {e}"));
                return;
            }
        };
        let device = match port.queue(0) {
            Ok(d) => d,
            Err(e) => {
                say(&format!("FAIL queue 0: {e}"));
                return;
            }
        };
        let Ok(net) = addr.parse::<ipnet::Ipv4Net>() else {
            say(&format!("FAIL bad address {addr}"));
            return;
        };
        let ip = net.addr();
        let cidr = IpCidr::Ipv4(Ipv4Cidr::new(ip, net.prefix_len()));
        // Commands from the parent, on stdin; EOF ends the child.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let mac = EthernetAddress(port.mac());
            let m = port.mac();
            let mac_colons = format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
            let mut config = StackConfig::new(HardwareAddress::Ethernet(mac), vec![cidr]);
            // ROUTED_NET lies behind the kernel end of the link (always .1 of the network).
            let kernel_end = Ipv4Addr::from(u32::from(net.network()) + 1);
            let routed = super::ROUTED_NET;
            config.routes = vec![(
                Ipv4Cidr::new(routed.0, routed.1),
                kernel_end,
            )];
            config.poll_mode = PollMode::Busy;
            config.rx_buffer = 256 * 1024;
            config.tx_buffer = 256 * 1024;
            let stack = match UserspaceStack::new(device, config) {
                Ok(s) => s,
                Err(e) => {
                    say(&format!("FAIL stack: {e}"));
                    return;
                }
            };
            let driver = tokio::task::spawn_local(stack.run());
            let t = stack.transport();
            let bind = |p: u16| ListenSpec::new(SocketAddr::new(ip.into(), p));
            let listeners = [7u16, 9, 11, 12, 13].map(|p| t.listen(&bind(p)));
            let mut ls = Vec::new();
            for (l, p) in listeners.into_iter().zip([7u16, 9, 11, 12, 13]) {
                match l {
                    Ok(l) => ls.push((p, l)),
                    Err(e) => {
                        say(&format!("FAIL listen {p}: {e}"));
                        return;
                    }
                }
            }
            for (p, l) in ls {
                tokio::task::spawn_local(serve_port(p, l));
            }
            say(&format!("READY mac={mac_colons}"));
            while let Some(cmd) = rx.recv().await {
                let words: Vec<&str> = cmd.split_whitespace().collect();
                match words.as_slice() {
                    ["connect", to, n] => {
                        let (Ok(to), Ok(n)) = (to.parse::<SocketAddr>(), n.parse::<usize>())
                        else {
                            say(&format!("FAIL bad command {cmd}"));
                            continue;
                        };
                        match tokio::time::timeout(Duration::from_secs(60), upstream(&t, to, n))
                            .await
                        {
                            Ok(Ok(got)) => say(&format!("RESULT connect ok {got}")),
                            Ok(Err(e)) => {
                                say(&format!("RESULT connect err {:?} {e}", e.kind()))
                            }
                            Err(_) => say("RESULT connect err TimedOut"),
                        }
                    }
                    ["queue", q] => {
                        let q = q.parse().unwrap_or(u16::MAX);
                        result("queue", &port.queue(q));
                    }
                    ["hugepages"] => {
                        say(&format!("HUGEPAGES free={}", super::hugepages::hugepages_free()));
                    }
                    ["stats"] => {
                        let s = port.stats();
                        say(&format!(
                            "STATS rx={} tx={} rx_dropped={} rx_errors={} tx_errors={} tx_dropped={}",
                            s.rx_packets, s.tx_packets, s.rx_dropped, s.rx_errors, s.tx_errors,
                            s.tx_dropped
                        ));
                    }
                    ["stack"] => {
                        // Give closing connections a moment to leave.
                        for _ in 0..100 {
                            if stack.stats().conns == 0 {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        let s = stack.stats();
                        say(&format!(
                            "STACK conns={} sockets={} rounds={}",
                            s.conns, s.sockets, s.rounds
                        ));
                    }
                    _ => say(&format!("FAIL unknown command {cmd}")),
                }
            }
            let rounds = stack.stats().rounds;
            stack.shutdown();
            let _ = driver.await;
            say(&format!("BYE rounds={rounds}"));
        });
    }

    /// Connects to a kernel echo server, sends `n` bytes, half-closes, reads the echo to
    /// EOF and checks it.
    async fn upstream(t: &T, to: SocketAddr, n: usize) -> std::io::Result<usize> {
        let conn = t.connect(to).await?;
        let (mut r, mut w) = tokio::io::split(conn);
        let data = payload(n, 42);
        let reader = async {
            let mut back = Vec::with_capacity(n);
            r.read_to_end(&mut back).await?;
            Ok::<_, std::io::Error>(back)
        };
        let writer = async {
            w.write_all(&data).await?;
            w.shutdown().await
        };
        let (back, wrote) = tokio::join!(reader, writer);
        wrote?;
        let back = back?;
        if back != data {
            return Err(std::io::Error::other(format!(
                "echo differs: sent {n} bytes, got {}",
                back.len()
            )));
        }
        Ok(back.len())
    }

    async fn serve_port(p: u16, mut l: mosn_net::userspace::UserspaceListener<DpdkDevice>) {
        while let Ok(accepted) = l.accept().await {
            let mut conn = accepted.stream;
            tokio::task::spawn_local(async move {
                match p {
                    // Echo until EOF, then close.
                    7 => {
                        let (mut r, mut w) = tokio::io::split(conn);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        let _ = w.shutdown().await;
                    }
                    // Read to EOF, then answer and close.
                    9 => {
                        let mut all = Vec::new();
                        match conn.read_to_end(&mut all).await {
                            Ok(n) => {
                                let _ = conn.write_all(format!("got {n}\n").as_bytes()).await;
                                let _ = conn.shutdown().await;
                            }
                            Err(e) => say(&format!("FAIL p9 read: {e}")),
                        }
                    }
                    // Read until the peer resets.
                    11 => {
                        let mut buf = [0u8; 1024];
                        let ev = loop {
                            match conn.read(&mut buf).await {
                                Ok(0) => break "eof".to_owned(),
                                Ok(_) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                                    break "reset".to_owned()
                                }
                                Err(e) => break format!("error {e}"),
                            }
                        };
                        say(&format!("EVENT p11 {ev}"));
                    }
                    // Read a little, then drop with bytes unread: RST.
                    12 => {
                        let mut buf = [0u8; 10];
                        let _ = conn.read_exact(&mut buf).await;
                        // Let the rest arrive so that it is unread when we drop.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        drop(conn);
                        say("EVENT p12 dropped");
                    }
                    // Greet, half-close, then read to EOF.
                    13 => {
                        let _ = conn.write_all(b"hello\n").await;
                        let _ = conn.shutdown().await;
                        let mut all = Vec::new();
                        match conn.read_to_end(&mut all).await {
                            Ok(n) => say(&format!("EVENT p13 got {n}")),
                            Err(e) => say(&format!("EVENT p13 error {e}")),
                        }
                    }
                    _ => {}
                }
            });
        }
    }
}
