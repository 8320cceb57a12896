//! Privileged tests of the iptables capture and of the eBPF -> iptables fallback, each in a
//! network namespace made by the test (198.18.0.0/15 addresses on its loopback; the host's
//! tables are never touched). The stand-in proxy listens on 127.0.0.1 in the namespace,
//! marks its upstream sockets (proxy_mark), reads `SO_ORIGINAL_DST` from conntrack and
//! forwards to the service.
//!
//! CI runs as root, so these run there; elsewhere they skip with a loud message.

mod support;

use std::path::PathBuf;

use mosn_ebpf::{Backend, Capture, CaptureError, CaptureGuard, CaptureSpec, Mode, OnFailure};
use support::*;

const TOOLS: &[&str] = &["ip", "iptables", "curl"];
const MARK: u32 = 0x5150;
const BODY: usize = 8 << 20;
const SERVICE: &str = "198.18.0.11";

fn spec(ns: &Netns, port: u16, service_port: u16) -> CaptureSpec {
    CaptureSpec {
        mode: Mode::Iptables,
        on_failure: OnFailure::Refuse,
        outbound_port: port,
        destinations: vec![format!("198.18.0.0/15:{service_port}").parse().unwrap()],
        exclude_destinations: vec!["198.18.0.12".parse().unwrap()],
        proxy_mark: Some(MARK),
        netns: Some(ns.path()),
        ..CaptureSpec::default()
    }
}

/// Service + stand-in proxy inside `ns`; checks that curl in the namespace is captured with
/// the right original destination, bodies intact, that the proxy's own upstream connection
/// is not captured again and that an excluded address is not captured.
fn check_capture(ns: &Netns, proxy: &StandInProxy, service: &Service, excluded: &Service) {
    let upload = TempFile::pattern("ipt-up", BODY);
    let in_ns = |args: &[&str]| ns.command(args).output().unwrap();
    let r = curl(
        in_ns,
        &format!("http://{}/bytes/{BODY}", service.addr),
        &upload,
        BODY,
    );
    assert!(r.status.contains("200"), "{r:?}");
    assert!(r.body_ok, "response body damaged: {} bytes", r.body_len);
    let sent = std::fs::read(&upload.0).unwrap();
    assert_eq!(
        r.header("x-body-sum"),
        Some(format!("{:016x}", checksum(&sent)))
    );
    let accepted = proxy.accepted();
    assert_eq!(
        accepted.len(),
        1,
        "captured once, the proxy's upstream not again: {accepted:?}"
    );
    assert_eq!(
        accepted[0].original_dst,
        Some(service.addr),
        "SO_ORIGINAL_DST from conntrack"
    );
    let x_peer: std::net::SocketAddr = r.header("x-peer").unwrap().parse().unwrap();
    assert_eq!(Some(x_peer), accepted[0].upstream_local);
    eprintln!(
        "iptables capture: 8 MiB up + 8 MiB down in {:.3}s",
        r.seconds
    );

    let r = curl(
        in_ns,
        &format!("http://{}/bytes/10", excluded.addr),
        &upload,
        10,
    );
    assert!(r.body_ok, "{r:?}");
    assert_eq!(
        proxy.accepted().len(),
        1,
        "an excluded destination was captured"
    );
}

/// Starts the stand-in proxy and two services inside the namespace.
fn start_inside(ns: &Netns) -> (StandInProxy, Service, Service) {
    ns.run_inside(|| {
        (
            StandInProxy::start(false, Some(MARK)),
            Service::bind(&format!("{SERVICE}:0")),
            Service::bind("198.18.0.12:0"),
        )
    })
}

fn assert_no_chains(ns: &Netns) {
    let rules = ns.nat_rules();
    assert!(!rules.contains("MOSN"), "chains left behind:\n{rules}");
}

#[test]
fn iptables_capture_in_a_network_namespace() {
    if !privileged_or_skip("iptables_capture", TOOLS) {
        return;
    }
    let ns = Netns::new("ipt", &["198.18.0.11/32", "198.18.0.12/32"]);
    let (proxy, service, excluded) = start_inside(&ns);

    // a crashed earlier instance left its chain and two jumps behind
    for args in [
        &["iptables", "-w", "-t", "nat", "-N", "MOSN_OUTPUT"][..],
        &[
            "iptables",
            "-w",
            "-t",
            "nat",
            "-A",
            "MOSN_OUTPUT",
            "-p",
            "tcp",
            "-j",
            "RETURN",
        ],
        &[
            "iptables",
            "-w",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-j",
            "MOSN_OUTPUT",
        ],
        &[
            "iptables",
            "-w",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-j",
            "MOSN_OUTPUT",
        ],
    ] {
        ns.exec(args);
    }

    let guard = Capture::install(&spec(&ns, proxy.port, service.addr.port()))
        .unwrap_or_else(|e| panic!("install: {e}"));
    assert_eq!(guard.backend(), Backend::Iptables);
    assert_eq!(
        guard.iptables_chains(),
        [("iptables".to_string(), "MOSN_OUTPUT".to_string())]
    );
    let rules = ns.nat_rules();
    assert_eq!(
        rules.matches("-A OUTPUT -p tcp -j MOSN_OUTPUT").count(),
        1,
        "stale jumps removed:\n{rules}"
    );
    assert!(
        !rules.contains("-A MOSN_OUTPUT -p tcp -j RETURN"),
        "stale rules removed:\n{rules}"
    );

    check_capture(&ns, &proxy, &service, &excluded);

    // uninstall from another thread (not in the namespace): the rules still go
    std::thread::spawn(move || guard.uninstall())
        .join()
        .unwrap()
        .expect("uninstall");
    assert_no_chains(&ns);
}

fn missing_cgroup() -> PathBuf {
    PathBuf::from(format!(
        "{CGROUP2_ROOT}/mosn-test-missing-{}",
        std::process::id()
    ))
}

#[test]
fn ebpf_failure_falls_back_to_iptables() {
    if !privileged_or_skip("ebpf_fallback", TOOLS) {
        return;
    }
    let ns = Netns::new("fallback", &["198.18.0.11/32", "198.18.0.12/32"]);
    let (proxy, service, excluded) = start_inside(&ns);
    let mut s = spec(&ns, proxy.port, service.addr.port());
    s.mode = Mode::Ebpf;
    s.on_failure = OnFailure::Fallback;
    s.cgroup = missing_cgroup();
    let guard: CaptureGuard = Capture::install(&s).unwrap_or_else(|e| panic!("install: {e}"));
    assert_eq!(guard.backend(), Backend::Iptables);
    let why = guard.fallback_reason().expect("a reason").to_string();
    assert!(
        why.contains(&format!("no cgroup v2 at {}", s.cgroup.display())),
        "{why}"
    );
    check_capture(&ns, &proxy, &service, &excluded);
    drop(guard);
    assert_no_chains(&ns);
}

#[test]
fn ebpf_failure_with_refuse_changes_nothing() {
    if !privileged_or_skip("ebpf_refuse", TOOLS) {
        return;
    }
    let ns = Netns::new("refuse", &[]);
    let mut s = spec(&ns, 15001, 80);
    s.mode = Mode::Ebpf;
    s.on_failure = OnFailure::Refuse;
    s.cgroup = missing_cgroup();
    let e = Capture::install(&s).unwrap_err();
    assert!(matches!(e, CaptureError::Cgroup { .. }), "{e:?}");
    assert!(e.to_string().contains("no cgroup v2 at"), "{e}");
    assert_no_chains(&ns);

    // iptables without a way to tell the proxy's own sockets apart would loop: refused
    s.mode = Mode::Iptables;
    s.proxy_mark = None;
    let e = Capture::install(&s).unwrap_err();
    assert!(e.to_string().contains("proxy_mark"), "{e}");
    assert_no_chains(&ns);

    // fallback that fails too reports both reasons
    s.mode = Mode::Ebpf;
    s.on_failure = OnFailure::Fallback;
    let e = Capture::install(&s).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, CaptureError::FallbackFailed { .. }), "{e:?}");
    assert!(
        text.contains("no cgroup v2 at") && text.contains("fallback failed"),
        "{text}"
    );
    assert_no_chains(&ns);
}
