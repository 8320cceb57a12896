//! Privileged tests of the eBPF inbound capture (`sk_lookup`). Each test makes two network
//! namespaces joined by a veth pair: the "pod" (198.18.1.1, where the capture listener and the
//! program live) and the "client" side (198.18.1.2 and 198.18.1.3; IPv6: fd00:198:18:1::/64,
//! inside these namespaces only). The program is attached
//! to the pod namespace only, never to the host's; everything is removed on drop (the
//! namespaces by `Netns`, the program and its link with the guard).
//!
//! CI runs as root, so these run there; elsewhere they skip with a loud message.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mosn_ebpf::{Backend, Capture, CaptureSpec, InboundStats, Mode, OnFailure};
use support::*;

const TOOLS: &[&str] = &["ip", "bpftool"];
const POD: &str = "198.18.1.1";
const CLIENT: &str = "198.18.1.2";
const EXCLUDED_CLIENT: &str = "198.18.1.3";
const POD6: &str = "fd00:198:18:1::1";
const CLIENT6: &str = "fd00:198:18:1::2";
const APP_PORT: u16 = 8080;
const UNCAPTURED_PORT: u16 = 8081;
const INBOUND_PORT: u16 = 15006;

/// The pod and client namespaces, linked by a veth pair.
struct Pair {
    pod: Netns,
    client: Netns,
}

fn pair(tag: &str) -> Pair {
    let pod = Netns::new(&format!("{tag}p"), &[]);
    let client = Netns::new(&format!("{tag}c"), &[]);
    pod.exec(&[
        "ip",
        "link",
        "add",
        "vpod",
        "type",
        "veth",
        "peer",
        "name",
        "vcli",
        "netns",
        &client.name,
    ]);
    pod.exec(&["ip", "addr", "add", &format!("{POD}/24"), "dev", "vpod"]);
    pod.exec(&["ip", "link", "set", "vpod", "up"]);
    for a in [CLIENT, EXCLUDED_CLIENT] {
        client.exec(&["ip", "addr", "add", &format!("{a}/24"), "dev", "vcli"]);
    }
    client.exec(&["ip", "link", "set", "vcli", "up"]);
    Pair { pod, client }
}

fn spec(pod: &Netns) -> CaptureSpec {
    spec_at(pod.path())
}

fn spec_at(netns: std::path::PathBuf) -> CaptureSpec {
    CaptureSpec {
        mode: Mode::Ebpf,
        on_failure: OnFailure::Refuse,
        inbound_port: INBOUND_PORT,
        inbound_ports: vec![APP_PORT],
        inbound_exclude_sources: vec![format!("{EXCLUDED_CLIENT}/32").parse().unwrap()],
        netns: Some(netns),
        instance: "intest".to_string(),
        ..CaptureSpec::default()
    }
}

/// Connects from `ns` to `to` (from `from`, when given) and sends `hello`; returns the local
/// address of the connection, or the connect error.
fn connect_from(
    ns: &Netns,
    from: Option<&str>,
    to: SocketAddr,
) -> std::io::Result<(SocketAddr, TcpStream)> {
    let from: Option<SocketAddr> = from.map(|f| format!("{f}:0").parse().unwrap());
    ns.run_inside(move || {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(to),
            socket2::Type::STREAM,
            None,
        )?;
        if let Some(f) = from {
            sock.bind(&f.into())?;
        }
        sock.connect_timeout(&to.into(), Duration::from_secs(3))?;
        let mut s: TcpStream = sock.into();
        s.write_all(b"hello")?;
        Ok((s.local_addr()?, s))
    })
}

/// The next connection `l` accepts within 3 s: (peer, local address, first bytes).
fn accept_within(l: &TcpListener) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match l.accept() {
            Ok((mut s, peer)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).unwrap();
                return Some((peer, s.local_addr().unwrap(), buf.to_vec()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Nothing pending on `l` right now (after a short grace period).
fn nothing_accepted(l: &TcpListener) -> bool {
    l.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    matches!(l.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn prog_exists(id: u32) -> bool {
    std::process::Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Links of type sk_lookup attached in the namespace (by `bpftool link` inside it).
fn sk_lookup_links(ns: &Netns) -> String {
    let out = ns.command(&["bpftool", "link", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("sk_lookup"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sk_lookup_captures_inbound_ports_with_the_original_destination() {
    if !privileged_or_skip("sk_lookup_inbound", TOOLS) {
        return;
    }
    let Pair { pod, client } = pair("skl");
    // The capture listener (as mosn's inbound listener) and the application, in the pod.
    let (capture, app, other) = pod.run_inside(|| {
        (
            TcpListener::bind(("127.0.0.1", INBOUND_PORT)).unwrap(),
            TcpListener::bind(("0.0.0.0", APP_PORT)).unwrap(),
            TcpListener::bind(("0.0.0.0", UNCAPTURED_PORT + 1)).unwrap(),
        )
    });
    let guard = Capture::install_with_listener(&spec(&pod), Some(&capture))
        .unwrap_or_else(|e| panic!("install: {e}"));
    assert_eq!(guard.backend(), Backend::Ebpf);
    assert_eq!(
        guard.attachments(),
        [("mosn_sk_lookup".to_string(), pod.path())]
    );
    assert!(
        sk_lookup_links(&pod).contains("sk_lookup"),
        "a sk_lookup link in the pod namespace"
    );
    let app_addr: SocketAddr = format!("{POD}:{APP_PORT}").parse().unwrap();

    // 1. From the other namespace to the app port: the capture listener gets it, its local
    // address is the original destination, and the app (listening there too) does not.
    let (client_addr, _c1) = connect_from(&client, None, app_addr).expect("captured connect");
    let (peer, local, data) = accept_within(&capture).expect("the capture listener accepts");
    assert_eq!(peer, client_addr, "the client address is intact");
    assert_eq!(
        local, app_addr,
        "the original destination is the local address"
    );
    assert_eq!(data, b"hello");
    assert!(nothing_accepted(&app), "the application did not see it");

    // 2. A port not in the map: ordinary lookup (nothing listens on 8081 -> refused; 8082 has
    // its own listener -> reaches it).
    let refused = connect_from(
        &client,
        None,
        format!("{POD}:{UNCAPTURED_PORT}").parse().unwrap(),
    );
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let _c2 = connect_from(
        &client,
        None,
        format!("{POD}:{}", UNCAPTURED_PORT + 1).parse().unwrap(),
    )
    .expect("uncaptured port");
    assert!(accept_within(&other).is_some(), "its own listener accepts");
    assert!(nothing_accepted(&capture), "not captured");

    // 3. Loop-breaker: connections made inside the pod (the proxy's own to the application:
    // to 127.0.0.1, to the pod address, or to the pod address from 127.0.0.6) are not captured.
    for (from, to) in [
        (None, format!("127.0.0.1:{APP_PORT}")),
        (None, format!("{POD}:{APP_PORT}")),
        (Some("127.0.0.6"), format!("{POD}:{APP_PORT}")),
    ] {
        let _c = connect_from(&pod, from, to.parse().unwrap()).expect("local connect");
        let Some((_, local, _)) = accept_within(&app) else {
            panic!(
                "{to}: the application did not accept; capture listener: {:?}; stats {:?}",
                accept_within(&capture),
                guard.stats()
            );
        };
        assert_eq!(local.to_string(), to);
        assert!(nothing_accepted(&capture), "{to}: not captured");
    }
    // ... and an excluded client is not captured either.
    let (_, _c3) = connect_from(&client, Some(EXCLUDED_CLIENT), app_addr).expect("excluded");
    let (peer, _, _) = accept_within(&app).expect("the application accepts");
    assert_eq!(peer.ip().to_string(), EXCLUDED_CLIENT);
    assert!(nothing_accepted(&capture));

    let stats = guard.stats().expect("stats").inbound;
    assert_eq!(
        stats,
        InboundStats {
            captured: 1,
            local_skipped: 3,
            excluded_source: 1,
            no_listener: 0,
            assign_failed: 0,
        }
    );

    // 4. Drop: the program and its link are gone; the app port is the app's again.
    let (progs, _) = guard.kernel_ids();
    assert_eq!(progs.len(), 1, "{progs:?}");
    drop(guard);
    wait_until(
        "the sk_lookup program to be freed",
        Duration::from_secs(5),
        || !prog_exists(progs[0]),
    );
    assert_eq!(sk_lookup_links(&pod), "", "no sk_lookup link left");
    let _c4 = connect_from(&client, None, app_addr).expect("connect after uninstall");
    assert!(accept_within(&app).is_some(), "the application accepts");
    assert!(nothing_accepted(&capture));
}

#[test]
fn sk_lookup_dual_stack_listener_takes_ipv4_and_ipv6() {
    if !privileged_or_skip("sk_lookup_dual_stack", TOOLS) {
        return;
    }
    let Pair { pod, client } = pair("skd");
    let capture = pod.run_inside(|| TcpListener::bind(("::", INBOUND_PORT)).unwrap());
    let guard = Capture::install_with_listener(&spec(&pod), Some(&capture))
        .unwrap_or_else(|e| panic!("install: {e}"));
    let app_addr: SocketAddr = format!("{POD}:{APP_PORT}").parse().unwrap();
    let (client_addr, _c) = connect_from(&client, None, app_addr).expect("captured connect");
    let (peer, local, _) = accept_within(&capture).expect("the capture listener accepts");
    let v4 = |a: SocketAddr| match a {
        SocketAddr::V6(v6) => {
            SocketAddr::new(v6.ip().to_ipv4_mapped().expect("mapped").into(), v6.port())
        }
        v4 => v4,
    };
    assert_eq!(v4(peer), client_addr);
    assert_eq!(v4(local), app_addr);
    assert_eq!(guard.stats().unwrap().inbound.captured, 1);

    // IPv6 (ULA addresses inside the test's namespaces only): captured the same way; the
    // pod's own connection to its IPv6 address is not (refused: nothing else listens).
    pod.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{POD6}/64"),
        "dev",
        "vpod",
        "nodad",
    ]);
    client.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{CLIENT6}/64"),
        "dev",
        "vcli",
        "nodad",
    ]);
    let app6: SocketAddr = format!("[{POD6}]:{APP_PORT}").parse().unwrap();
    let connected = eventually_ok(|| connect_from(&client, None, app6));
    let (client6, _c6) = connected.expect("captured IPv6 connect");
    let (peer, local, _) = accept_within(&capture).expect("the capture listener accepts IPv6");
    assert_eq!((peer, local), (client6, app6));
    let local_refused = connect_from(&pod, None, app6);
    assert_eq!(
        local_refused.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let stats = guard.stats().unwrap().inbound;
    assert_eq!((stats.captured, stats.local_skipped), (2, 1), "{stats:?}");
}

/// Retries `f` for up to 5 s (a fresh IPv6 neighbour may take a moment).
fn eventually_ok<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn sk_lookup_without_a_listener_is_refused_or_falls_back() {
    if !privileged_or_skip("sk_lookup_no_listener", &["ip", "iptables"]) {
        return;
    }
    let pod = Netns::new("sknl", &[]);
    let e = Capture::install(&spec(&pod)).unwrap_err().to_string();
    assert!(e.contains("inbound listener"), "{e}");
    // With on_failure: fallback, the iptables REDIRECT (in the same namespace) takes over.
    let s = CaptureSpec {
        on_failure: OnFailure::Fallback,
        ..spec(&pod)
    };
    let guard = Capture::install(&s).unwrap_or_else(|e| panic!("fallback: {e}"));
    assert_eq!(guard.backend(), Backend::Iptables);
    assert!(guard
        .fallback_reason()
        .unwrap()
        .to_string()
        .contains("inbound listener"));
    let rules = pod.nat_rules();
    assert!(
        rules.contains(&format!(
            "-A INTEST_INBOUND -s {EXCLUDED_CLIENT}/32 -p tcp -j RETURN"
        )),
        "{rules}"
    );
    drop(guard);
    assert!(!pod.nat_rules().contains("INTEST_INBOUND"));
}

/// Runs inside a child process started by the tests below (a no-op in a normal run), started
/// by `ip netns exec` in the pod namespace as mosn would be: makes a capture listener there,
/// installs the inbound capture on its own namespace (the default, no `netns` in the spec),
/// prints `READY` or `ERROR <message>`, then waits to be killed.
#[test]
fn inbound_helper_process() {
    if std::env::var_os("MOSN_EBPF_INBOUND_HELPER").is_none() {
        return;
    }
    let listener = TcpListener::bind(("0.0.0.0", INBOUND_PORT)).unwrap();
    let s = CaptureSpec {
        netns: None,
        ..spec_at(std::path::PathBuf::new())
    };
    match Capture::install_with_listener(&s, Some(&listener)) {
        Ok(_guard) => {
            println!("READY");
            std::thread::sleep(Duration::from_secs(600));
        }
        Err(e) => println!("ERROR {e}"),
    }
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this test binary's `inbound_helper_process` in namespace `ns`, under `wrapper`;
/// returns it and its first `READY`/`ERROR` line.
fn spawn_helper(wrapper: &[&str], ns: &Netns) -> (Kill, String) {
    use std::io::BufRead;
    let exe = std::env::current_exe().unwrap();
    let prefix = ["ip", "netns", "exec", &ns.name];
    let mut args: Vec<&std::ffi::OsStr> =
        prefix.iter().chain(wrapper).map(|a| a.as_ref()).collect();
    args.push(exe.as_os_str());
    let mut child = std::process::Command::new(args[0])
        .args(&args[1..])
        .args([
            "--exact",
            "inbound_helper_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MOSN_EBPF_INBOUND_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the helper");
    let stdout = child.stdout.take().unwrap();
    let helper = Kill(child);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        if let Some(i) = line.find("READY").or_else(|| line.find("ERROR")) {
            return (helper, line[i..].to_string());
        }
    }
    panic!("the helper printed neither READY nor ERROR");
}

#[test]
fn sk_lookup_link_goes_away_when_the_process_is_killed() {
    if !privileged_or_skip("sk_lookup_kill", TOOLS) {
        return;
    }
    let Pair { pod, client } = pair("skk");
    let (mut helper, line) = spawn_helper(&[], &pod);
    assert_eq!(line, "READY");
    assert!(sk_lookup_links(&pod).contains("sk_lookup"));
    let app_addr: SocketAddr = format!("{POD}:{APP_PORT}").parse().unwrap();
    // captured by the helper's listener (nothing else listens on 8080)
    assert!(connect_from(&client, None, app_addr).is_ok());
    helper.0.kill().unwrap(); // SIGKILL
    helper.0.wait().unwrap();
    wait_until(
        "the kernel to drop the link",
        Duration::from_secs(5),
        || sk_lookup_links(&pod).is_empty(),
    );
    let refused = connect_from(&client, None, app_addr);
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused,
        "nothing captures 8080 any more"
    );
}

#[test]
fn sk_lookup_without_cap_bpf_says_what_is_missing() {
    if !privileged_or_skip("sk_lookup_no_cap", &["ip", "bpftool", "setpriv"]) {
        return;
    }
    let pod = Netns::new("sknc", &[]);
    let (_helper, line) = spawn_helper(&["setpriv", "--bounding-set=-bpf,-sys_admin", "--"], &pod);
    assert!(
        line.starts_with("ERROR") && line.contains("missing capability CAP_BPF (or CAP_SYS_ADMIN)"),
        "{line}"
    );
    assert_eq!(sk_lookup_links(&pod), "");
}
