//! Transparent capture end to end with the real binary (issue 6): an unmodified client calls a
//! service address; capture (eBPF in a cgroup made by the test, or iptables in a network
//! namespace made by the test) sends the connection to mosn's outbound listener, which hands it
//! to the virtual listener (`bind_port: false`) of its original destination, whose L7 router
//! picks the upstream.
//!
//! CI runs as root, so these run there; elsewhere they skip with a loud message.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn privileged_or_skip(test: &str, tools: &[&str]) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !tool(t)).collect();
    let cgroup = Path::new(CGROUP_ROOT).join("cgroup.procs").exists();
    if root && missing.is_empty() && cgroup {
        return true;
    }
    let why = format!(
        "{test}: needs root, cgroup v2 at {CGROUP_ROOT} and {tools:?} (root={root}, cgroup={cgroup}, missing={missing:?})"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}: CI runs as root and must run this test (ci/setup.sh installs the tools)");
    }
    eprintln!("\n!!! SKIPPED {why}\n");
    false
}

/// A cgroup v2 child made for one test; removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(tag: &str) -> Cgroup {
        let path = Path::new(CGROUP_ROOT).join(format!("mosn-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).expect("create the test cgroup");
        Cgroup(path)
    }

    /// Runs `cmd` (a shell command line) in this cgroup.
    fn run(&self, cmd: &str) -> Output {
        let script = format!("echo $$ > {}/cgroup.procs && exec {cmd}", self.0.display());
        Command::new("sh").args(["-c", &script]).output().unwrap()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes of the test have exited by now; retry briefly while the kernel lets go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove {}", self.0.display());
    }
}

/// An HTTP/1.1 upstream on 127.0.0.1 that answers `<tag>:<path>` to every request.
fn upstream(tag: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("?").to_string();
                let body = format!("{tag}:{path}");
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The L7 config shared by both tests: `outbound` takes captured connections and hands them
/// on by original destination; `svc` (virtual, at `service`) routes `/a` and `/b`; with
/// `bolt` = (service address, upstream), `boltsvc` (virtual, SofaRpc) routes every Bolt
/// `service` to cluster `bolt`.
fn capture_config(
    outbound: SocketAddr,
    service: SocketAddr,
    a: SocketAddr,
    b: SocketAddr,
    capture: &str,
    access_log: &Path,
    bolt: Option<(SocketAddr, SocketAddr)>,
) -> String {
    let mut cfg: serde_json::Value = serde_json::from_str(&capture_config_base(
        outbound, service, a, b, capture, access_log,
    ))
    .unwrap();
    if let Some((svc, up)) = bolt {
        let server = &mut cfg["servers"][0];
        server["routers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
            "router_config_name": "bolt", "virtual_hosts": [{"name": "bolt", "domains": ["*"],
            "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]},
                         "route": {"cluster_name": "bolt"}}]}]}));
        server["listeners"].as_array_mut().unwrap().push(serde_json::json!({
            "name": "boltsvc", "address": svc.to_string(), "bind_port": false,
            "access_logs": [{"log_path": access_log, "log_format": "%downstream_local_address% %x-mosn-rpc-service% %response_code% %upstream_cluster%"}],
            "filter_chains": [{"filters": [{"type": "proxy", "config": {
                "downstream_protocol": "SofaRpc", "router_config_name": "bolt"}}]}]}));
        cfg["cluster_manager"]["clusters"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
            "name": "bolt", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": up.to_string()}]}));
    }
    cfg.to_string()
}

fn capture_config_base(
    outbound: SocketAddr,
    service: SocketAddr,
    a: SocketAddr,
    b: SocketAddr,
    capture: &str,
    access_log: &Path,
) -> String {
    format!(
        r#"{{
  "servers": [{{
    "default_log_path": "stderr", "processor": 1, "graceful_timeout": "1s",
    "routers": [{{"router_config_name": "svc", "virtual_hosts": [{{"name": "svc", "domains": ["*"],
      "routers": [
        {{"match": {{"prefix": "/a"}}, "route": {{"cluster_name": "a"}}}},
        {{"match": {{"prefix": "/b"}}, "route": {{"cluster_name": "b"}}}}]}}]}}],
    "listeners": [
      {{"name": "outbound", "address": "{outbound}", "bind_port": true, "use_original_dst": "redirect",
        "filter_chains": [{{"filters": [{{"type": "tcp_proxy", "config": {{"cluster": "passthrough"}}}}]}}]}},
      {{"name": "svc", "address": "{service}", "bind_port": false,
        "access_logs": [{{"log_path": "{log}", "log_format": "%downstream_local_address% %x-mosn-path% %response_code% %upstream_cluster%"}}],
        "filter_chains": [{{"filters": [{{"type": "proxy", "config": {{"downstream_protocol": "Http1", "router_config_name": "svc"}}}}]}}]}}]
  }}],
  "cluster_manager": {{"clusters": [
    {{"name": "a", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{{"address": "{a}"}}]}},
    {{"name": "b", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{{"address": "{b}"}}]}},
    {{"name": "passthrough", "type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST"}}]}},
  "traffic_capture": {capture},
  "admin": {{"address": {{"socket_address": {{"address": "127.0.0.1", "port_value": 0}}}}}}
}}"#,
        log = access_log.display()
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Retries `f` until it returns `Some` or 10 s pass (the capture and listeners come up
/// asynchronously with respect to the log line).
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ebpf_capture_routes_by_original_destination_and_cleans_up() {
    if !privileged_or_skip("ebpf capture", &["curl", "bpftool"]) {
        return;
    }
    let app = Cgroup::new("app");
    let (a, b) = (upstream("A"), upstream("B"));
    let outbound: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let service: SocketAddr = format!("127.0.0.7:{}", 20000 + std::process::id() % 20000)
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // A real SOFARPC service, and the Bolt address the application calls.
    common::rpc::node_tools_ready();
    let bolt_up = common::rpc::BoltServer::start(None);
    let bolt_service: SocketAddr = format!("127.0.0.7:{}", service.port() + 1).parse().unwrap();
    let capture = format!(
        r#"{{"mode": "ebpf", "on_failure": "refuse", "cgroup_path": "{}", "outbound_port": {},
            "destinations": ["127.0.0.7/32"], "proxy_mark": 19821, "instance": "e2e{}"}}"#,
        app.0.display(),
        outbound.port(),
        std::process::id() % 10000
    );
    let cfg = write_config(
        &dir,
        "capture.json",
        &capture_config(
            outbound,
            service,
            a,
            b,
            &capture,
            &log,
            Some((bolt_service, bolt_up.addr())),
        ),
    );
    let mut m = MosnProcess::start(&cfg);
    m.wait_for("traffic capture installed", Duration::from_secs(20));
    assert!(
        m.wait_for("traffic capture installed", Duration::from_secs(1))
            .contains("Ebpf"),
        "the eBPF backend, not a fallback"
    );

    // An unmodified curl in the application's cgroup calls the service address.
    let url = |p: &str| format!("curl -s --max-time 10 http://{service}{p}");
    let got = eventually(|| {
        let o = app.run(&url("/a/one"));
        (stdout(&o) == "A:/a/one").then_some(())
    });
    assert!(got.is_some(), "captured /a reaches cluster a");
    let o = app.run(&url("/b/two"));
    assert_eq!(stdout(&o), "B:/b/two", "captured /b reaches cluster b");

    // An unmodified SOFARPC client in the cgroup calls the Bolt service address: captured,
    // handed to the Bolt listener by original destination, routed by its `service` header.
    let calls = common::rpc::bolt_call(
        bolt_service,
        common::rpc::CallOpts {
            args: serde_json::json!(["captured bolt"]),
            count: 3,
            cgroup: Some(app.0.clone()),
            ..Default::default()
        },
    );
    assert!(
        calls.iter().all(|c| c.ok && c.text() == "captured bolt"),
        "{calls:?}"
    );

    // Outside the cgroup nothing is captured: nothing listens on the service address.
    let outside = Command::new("sh")
        .args(["-c", &url("/a/x")])
        .output()
        .unwrap();
    assert_eq!(
        outside.status.code(),
        Some(7),
        "curl outside the cgroup connects directly and is refused: {}",
        stdout(&outside)
    );

    // The virtual listener served them: its access log names the original destination.
    m.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(m.wait_exit(Duration::from_secs(15)), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(&format!("{service} /a/one 200 a")), "{text}");
    assert!(text.contains(&format!("{service} /b/two 200 b")), "{text}");
    assert!(
        text.contains(&format!(
            "{bolt_service} com.alipay.test.EchoService:1.0 200 bolt"
        )),
        "{text}"
    );

    // Nothing left attached to the application's cgroup.
    let show = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(&app.0)
        .output()
        .unwrap();
    let left = stdout(&show);
    assert!(
        !left.contains("mosn"),
        "programs still attached after exit: {left}"
    );
}

#[test]
fn iptables_capture_in_a_netns_routes_by_original_destination() {
    if !privileged_or_skip("iptables capture", &["ip", "iptables", "curl", "python3"]) {
        return;
    }
    let ns = format!("mosn-cap-{}", std::process::id());
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    struct DelNs(String);
    impl Drop for DelNs {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = DelNs(ns.clone());
    let exec = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns]).args(args);
        c
    };
    for args in [
        vec!["ip", "link", "set", "lo", "up"],
        vec!["ip", "addr", "add", "198.18.0.10/32", "dev", "lo"],
        vec!["ip", "addr", "add", "198.18.0.20/32", "dev", "lo"],
    ] {
        assert!(exec(&args).status().unwrap().success(), "{args:?}");
    }
    // Upstreams inside the namespace: python http.server over a directory with one file.
    let web = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(web.path().join("a")).unwrap();
    std::fs::create_dir_all(web.path().join("b")).unwrap();
    std::fs::write(web.path().join("a/hello.txt"), "hello from a").unwrap();
    std::fs::write(web.path().join("b/hello.txt"), "hello from b").unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _web = Kill(
        exec(&["python3", "-m", "http.server", "-b", "198.18.0.10", "8080"])
            .current_dir(web.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up: SocketAddr = "198.18.0.10:8080".parse().unwrap();
    let outbound: SocketAddr = "127.0.0.1:15001".parse().unwrap();
    let service: SocketAddr = "198.18.0.20:80".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let capture = r#"{"mode": "iptables", "outbound_port": 15001, "destinations": ["198.18.0.20/32"],
        "proxy_mark": 19822, "instance": "e2eipt"}"#;
    let cfg = write_config(
        &dir,
        "capture.json",
        &capture_config(outbound, service, up, up, capture, &log, None),
    );
    let mut mosn = Kill(
        exec(&[
            mosn_bin().to_str().unwrap(),
            "start",
            "-c",
            cfg.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap(),
    );
    let curl = |p: &str| {
        let o = exec(&[
            "curl",
            "-s",
            "--max-time",
            "10",
            &format!("http://{service}{p}"),
        ])
        .output()
        .unwrap();
        stdout(&o)
    };
    let got = eventually(|| (curl("/a/hello.txt") == "hello from a").then_some(()));
    assert!(
        got.is_some(),
        "captured /a reaches the upstream through mosn"
    );
    assert_eq!(curl("/b/hello.txt"), "hello from b");
    let rules = exec(&["iptables", "-t", "nat", "-S"]).output().unwrap();
    assert!(
        stdout(&rules).contains("REDIRECT"),
        "mosn installed its rules"
    );
    // SIGTERM: mosn drains, removes its rules and exits 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mosn.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = mosn.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "mosn did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let rules = exec(&["iptables", "-t", "nat", "-S"]).output().unwrap();
    assert!(
        !stdout(&rules).contains("REDIRECT"),
        "rules left behind: {}",
        stdout(&rules)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("198.18.0.20:80 /a/hello.txt 200 a"), "{text}");
}

#[test]
fn refused_capture_stops_start_up_with_the_reason() {
    if !privileged_or_skip("capture refusal", &[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let outbound: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let service: SocketAddr = "127.0.0.8:80".parse().unwrap();
    let up = upstream("A");
    let missing = format!("{CGROUP_ROOT}/mosn-no-such-cgroup-{}", std::process::id());
    let capture = format!(
        r#"{{"mode": "ebpf", "on_failure": "refuse", "cgroup_path": "{missing}", "outbound_port": {},
            "destinations": ["127.0.0.8/32"], "proxy_mark": 19823, "instance": "e2eref"}}"#,
        outbound.port()
    );
    let log = dir.path().join("access.log");
    let cfg = write_config(
        &dir,
        "refuse.json",
        &capture_config(outbound, service, up, up, &capture, &log, None),
    );
    let mut m = MosnProcess::start(&cfg);
    assert_eq!(m.wait_exit(Duration::from_secs(20)), 1, "refused: exit 1");
    let line = m.wait_for("traffic_capture", Duration::from_secs(5));
    assert!(
        line.contains(&missing),
        "the error names the cgroup: {line}"
    );
}

/// Inbound capture with eBPF (`sk_lookup`), end to end: mosn runs in a "pod" namespace made
/// by the test, a client in a second namespace (veth, 198.18.2.0/24) calls the application's
/// address 198.18.2.1:8080; the program hands the connection to mosn's inbound listener
/// (0.0.0.0:15006), which hands it to the virtual listener of that address; its router sends
/// it to the application at the pod address, 198.18.2.1:8080 again, and the loop-breaker
/// (a connection made inside the namespace is never captured) lets that one through to the
/// application. After mosn is killed (-9), nothing is attached to the namespace.
#[test]
fn ebpf_inbound_capture_in_a_netns_routes_by_original_destination() {
    if !privileged_or_skip(
        "ebpf inbound capture",
        &["ip", "bpftool", "curl", "python3"],
    ) {
        return;
    }
    struct DelNs(String);
    impl Drop for DelNs {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let pod = format!("mosn-inpod-{}", std::process::id());
    let cli = format!("mosn-incli-{}", std::process::id());
    let mut guards = Vec::new();
    for ns in [&pod, &cli] {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
        assert!(Command::new("ip")
            .args(["netns", "add", ns])
            .status()
            .unwrap()
            .success());
        guards.push(DelNs(ns.clone()));
    }
    let exec = |ns: &str, args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c
    };
    for (ns, args) in [
        (&pod, vec!["ip", "link", "set", "lo", "up"]),
        (&cli, vec!["ip", "link", "set", "lo", "up"]),
        (
            &pod,
            vec![
                "ip", "link", "add", "vpod", "type", "veth", "peer", "name", "vcli", "netns", &cli,
            ],
        ),
        (
            &pod,
            vec!["ip", "addr", "add", "198.18.2.1/24", "dev", "vpod"],
        ),
        (&pod, vec!["ip", "link", "set", "vpod", "up"]),
        (
            &cli,
            vec!["ip", "addr", "add", "198.18.2.2/24", "dev", "vcli"],
        ),
        (&cli, vec!["ip", "link", "set", "vcli", "up"]),
    ] {
        assert!(exec(ns, &args).status().unwrap().success(), "{args:?}");
    }
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // The application: on every address of the pod, port 8080.
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("hello.txt"), "hello from the app").unwrap();
    let _app = Kill(
        exec(
            &pod,
            &["python3", "-m", "http.server", "-b", "0.0.0.0", "8080"],
        )
        .current_dir(web.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    // A second application on 8081, with no virtual listener in mosn: the inbound listener's
    // own tcp_proxy passes it through to its original destination (ORIGINAL_DST). Its log
    // tells who connected.
    let app2_log = web.path().join("app2.log");
    let _app2 = Kill(
        exec(
            &pod,
            &["python3", "-m", "http.server", "-b", "0.0.0.0", "8081"],
        )
        .current_dir(web.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&app2_log).unwrap())
        .spawn()
        .unwrap(),
    );
    // Wait for them (from inside the pod: local connections, never captured).
    let app_up = eventually(|| {
        let o = exec(
            &pod,
            &[
                "curl",
                "-s",
                "--max-time",
                "2",
                "http://127.0.0.1:8080/hello.txt",
                "http://127.0.0.1:8081/hello.txt",
            ],
        )
        .output()
        .unwrap();
        (stdout(&o) == "hello from the apphello from the app").then_some(())
    });
    assert!(app_up.is_some(), "the application did not start");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = format!(
        r#"{{
  "servers": [{{
    "default_log_path": "stderr", "processor": 2, "graceful_timeout": "1s",
    "routers": [{{"router_config_name": "in", "virtual_hosts": [{{"name": "in", "domains": ["*"],
      "routers": [{{"match": {{"prefix": "/"}}, "route": {{"cluster_name": "app"}}}}]}}]}}],
    "listeners": [
      {{"name": "inbound", "address": "0.0.0.0:15006", "bind_port": true, "use_original_dst": "redirect",
        "filter_chains": [{{"filters": [{{"type": "tcp_proxy", "config": {{"cluster": "passthrough"}}}}]}}]}},
      {{"name": "app_in", "address": "198.18.2.1:8080", "bind_port": false,
        "access_logs": [{{"log_path": "{log}", "log_format": "%downstream_local_address% %downstream_remote_address% %x-mosn-path% %response_code% %upstream_cluster%"}}],
        "filter_chains": [{{"filters": [{{"type": "proxy", "config": {{"downstream_protocol": "Http1", "router_config_name": "in"}}}}]}}]}}]
  }}],
  "cluster_manager": {{"clusters": [
    {{"name": "app", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{{"address": "198.18.2.1:8080"}}]}},
    {{"name": "passthrough", "type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST"}}]}},
  "traffic_capture": {{"mode": "ebpf", "on_failure": "refuse", "inbound_port": 15006,
    "inbound_ports": [8080, 8081], "instance": "e2ein"}},
  "admin": {{"address": {{"socket_address": {{"address": "127.0.0.1", "port_value": 0}}}}}}
}}"#,
        log = log.display()
    );
    let cfg = write_config(&dir, "inbound.json", &config);
    let mut mosn = Kill(
        exec(
            &pod,
            &[
                mosn_bin().to_str().unwrap(),
                "start",
                "-c",
                cfg.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap(),
    );
    let links = || {
        let o = exec(&pod, &["bpftool", "link", "show"]).output().unwrap();
        stdout(&o)
            .lines()
            .filter(|l| l.contains("sk_lookup"))
            .count()
    };
    let curl_port = |port: u16, p: &str| {
        let url = format!("http://198.18.2.1:{port}{p}");
        let o = exec(&cli, &["curl", "-s", "--max-time", "10", &url])
            .output()
            .unwrap();
        stdout(&o)
    };
    let curl = |p: &str| curl_port(8080, p);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let got =
        eventually(|| (links() == 1 && curl("/hello.txt") == "hello from the app").then_some(()));
    assert!(
        got.is_some(),
        "the captured request reaches the app through mosn (links: {}, log: {})",
        links(),
        logged()
    );
    let lines = eventually(|| {
        let text = logged();
        (!text.is_empty()).then_some(text)
    })
    .expect("an access log line");
    // Once, through the virtual listener of the original destination, from the client: the
    // hop from mosn to 198.18.2.1:8080 was not captured again (no loop).
    let hits: Vec<&str> = lines.lines().filter(|l| l.contains("/hello.txt")).collect();
    assert_eq!(hits.len(), 1, "{lines}");
    assert!(
        hits[0].starts_with("198.18.2.1:8080 198.18.2.2:") && hits[0].ends_with(" 200 app"),
        "{lines}"
    );

    // Passthrough: captured too (the application sees mosn's connection, from the pod
    // address, not the client's), and mosn's connection to 198.18.2.1:8081 is not captured.
    let app2_clients = || std::fs::read_to_string(&app2_log).unwrap_or_default();
    assert_eq!(curl_port(8081, "/hello.txt"), "hello from the app");
    let seen = eventually(|| {
        let text = app2_clients();
        (text.matches("GET /hello.txt").count() == 2).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "the second application logged the request: {}",
            app2_clients()
        )
    });
    let gets: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("GET /hello.txt"))
        .collect();
    // the first line is the readiness probe from 127.0.0.1
    assert!(gets[1].starts_with("198.18.2.1 "), "{seen}");

    // kill -9: the kernel drops the link with mosn's descriptors.
    mosn.0.kill().unwrap();
    mosn.0.wait().unwrap();
    assert!(
        eventually(|| (links() == 0).then_some(())).is_some(),
        "a sk_lookup link is left in the namespace"
    );
    // The application port is the application's again (not logged by mosn).
    assert_eq!(curl("/hello.txt"), "hello from the app");
    assert_eq!(
        logged()
            .lines()
            .filter(|l| l.contains("/hello.txt"))
            .count(),
        1
    );
}

#[test]
fn inbound_capture_without_an_inbound_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outbound: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let service: SocketAddr = "127.0.0.8:80".parse().unwrap();
    let up = upstream("A");
    let capture = r#"{"mode": "ebpf", "on_failure": "refuse", "inbound_port": 15906,
        "inbound_ports": [8080], "instance": "e2enoin"}"#;
    let log = dir.path().join("access.log");
    let cfg = write_config(
        &dir,
        "noinbound.json",
        &capture_config(outbound, service, up, up, capture, &log, None),
    );
    let mut m = MosnProcess::start(&cfg);
    // a config mosn cannot run: exit 2, like other unsupported configs
    assert_eq!(m.wait_exit(Duration::from_secs(20)), 2, "refused: exit 2");
    let line = m.wait_for("traffic_capture.inbound_port", Duration::from_secs(5));
    assert!(line.contains("15906"), "the error names the port: {line}");
}
