//! Privileged tests of the eBPF capture on a cgroup v2 child made by the test.
//!
//! The layout mirrors production: the application (curl, a python client) runs in an "app"
//! cgroup; this test process plays the proxy and moves itself into a "proxy" cgroup, where
//! its stand-in proxy listens on the outbound port, reads `SO_ORIGINAL_DST` with the
//! ordinary getsockopt and forwards to the original destination, a service on 127.0.0.2.
//!
//! CI runs as root, so these run there; elsewhere they skip with a loud message. The tests
//! of this file run one at a time (they move the whole process between cgroups).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use mosn_ebpf::{Backend, Capture, CaptureError, CaptureSpec, Mode, OnFailure};
use support::*;

static SERIAL: Mutex<()> = Mutex::new(());

const TOOLS: &[&str] = &["curl", "python3", "bpftool"];
const MARK: u32 = 0x5150;
const NOBODY: u32 = 65534;
const BODY: usize = 8 << 20;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn spec(app: &Path, port: u16, destinations: &[String]) -> CaptureSpec {
    CaptureSpec {
        mode: Mode::Ebpf,
        on_failure: OnFailure::Refuse,
        cgroup: app.to_path_buf(),
        outbound_port: port,
        destinations: destinations.iter().map(|d| d.parse().unwrap()).collect(),
        proxy_mark: Some(MARK),
        proxy_uid: Some(NOBODY),
        ..CaptureSpec::default()
    }
}

/// Waits until none of the given program, map and link ids exists any more.
fn assert_kernel_objects_gone(progs: &[u32], maps: &[u32]) {
    wait_until(
        "the programs, links and maps to be freed",
        Duration::from_secs(10),
        || {
            let live_progs: Vec<u32> = aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .map(|p| p.id())
                .collect();
            let live_maps: Vec<u32> = aya::maps::loaded_maps()
                .filter_map(Result::ok)
                .map(|m| m.id())
                .collect();
            let live_links = aya::programs::loaded_links()
                .filter_map(Result::ok)
                .filter(|l| progs.contains(&l.program_id()))
                .count();
            !progs.iter().any(|p| live_progs.contains(p))
                && !maps.iter().any(|m| live_maps.contains(m))
                && live_links == 0
        },
    );
}

/// One full capture run with sockmap on or off.
fn capture_end_to_end(sockmap: bool) {
    let tag = if sockmap { "sm" } else { "nosm" };
    let app = TestCgroup::new(&format!("app-{tag}"));
    let proxy_cg = TestCgroup::new(&format!("proxy-{tag}"));
    let in_proxy = InCgroup::enter(&proxy_cg.path);

    let service = Service::bind("127.0.0.2:0");
    let excluded_service = Service::bind("127.0.0.2:0");
    let service6 = Service::bind("[::1]:0");
    let proxy = StandInProxy::start(true, None);
    let mut spec = spec(
        &app.path,
        proxy.port,
        &[
            "127.0.0.2".to_string(),
            format!("[::1]:{}", service6.addr.port()),
        ],
    );
    spec.exclude_ports = vec![excluded_service.addr.port()];
    spec.sockmap = sockmap;

    let guard = Capture::install(&spec).unwrap_or_else(|e| panic!("install: {e}"));
    assert_eq!(guard.backend(), Backend::Ebpf);
    let (progs, maps) = guard.kernel_ids();
    let expected = if sockmap { 5 } else { 4 }; // sk_msg is loaded only for sockmap
    assert_eq!(progs.len(), expected, "programs loaded: {progs:?}");
    let attached = cgroup_programs(&app.path);
    assert_eq!(attached.len(), 4, "on the app cgroup: {attached:?}");
    let attached = cgroup_programs(&proxy_cg.path);
    assert_eq!(attached.len(), 2, "on the proxy cgroup: {attached:?}");
    let in_app = |args: &[&str]| app.output(args);

    // 1. curl in the app cgroup -> captured; 8 MB each way, intact.
    let upload = TempFile::pattern(&format!("up-{tag}"), BODY);
    let url = format!("http://{}/bytes/{BODY}", service.addr);
    let r = curl(in_app, &url, &upload, BODY);
    assert!(r.status.contains("200"), "{r:?}");
    assert!(r.body_ok, "response body damaged: {} bytes", r.body_len);
    assert_eq!(r.header("x-body-len"), Some(BODY.to_string()), "{r:?}");
    let sent = std::fs::read(&upload.0).unwrap();
    assert_eq!(
        r.header("x-body-sum"),
        Some(format!("{:016x}", checksum(&sent))),
        "request body damaged"
    );
    let accepted = proxy.accepted();
    assert_eq!(
        accepted.len(),
        1,
        "captured into the stand-in proxy once: {accepted:?}"
    );
    assert_eq!(
        accepted[0].original_dst,
        Some(service.addr),
        "SO_ORIGINAL_DST"
    );
    assert_eq!(guard.original_dst(accepted[0].peer), Some(service.addr));
    // the service saw the proxy's upstream connection, not curl: the proxy's own connect
    // (from the proxy cgroup) was not captured again (no loop)
    let x_peer: SocketAddr = r.header("x-peer").unwrap().parse().unwrap();
    assert_eq!(Some(x_peer), accepted[0].upstream_local);
    eprintln!(
        "capture (sockmap={sockmap}): 8 MiB up + 8 MiB down through the stand-in proxy in {:.3}s",
        r.seconds
    );

    // 2. the same curl outside the app cgroup goes straight to the service
    let before = service.peers().len();
    let direct = curl(
        |args| Command::new(args[0]).args(&args[1..]).output().unwrap(),
        &format!("http://{}/bytes/100", service.addr),
        &upload,
        100,
    );
    assert!(direct.body_ok, "{direct:?}");
    assert_eq!(
        proxy.accepted().len(),
        1,
        "a process outside the cgroup was captured"
    );
    assert_eq!(service.peers().len(), before + 1);

    // 3. inside the app cgroup but the proxy's own: SO_MARK or the proxy uid -> not captured
    let svc_port = service.addr.port().to_string();
    for (mark, uid) in [(MARK, 0), (0, NOBODY)] {
        let out = app.output(&[
            "python3",
            "-c",
            PY_CLIENT,
            "127.0.0.2",
            &svc_port,
            &mark.to_string(),
            &uid.to_string(),
        ]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("200 OK"),
            "mark={mark} uid={uid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        proxy.accepted().len(),
        1,
        "the proxy's own connections were captured"
    );
    let stats = guard.stats().unwrap();
    assert_eq!(stats.proxy_own_skipped, 2, "{stats:?}");

    // 4. an excluded port is not captured
    let out = app.output(&[
        "python3",
        "-c",
        PY_CLIENT,
        "127.0.0.2",
        &excluded_service.addr.port().to_string(),
        "0",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(proxy.accepted().len(), 1, "an excluded port was captured");
    assert_eq!(excluded_service.peers().len(), 1);

    // 5. IPv6, and IPv4 through a dual-stack socket (IPv4-mapped IPv6)
    let r6 = curl(
        in_app,
        &format!("http://[::1]:{}/bytes/1000", service6.addr.port()),
        &upload,
        1000,
    );
    assert!(r6.body_ok, "{r6:?}");
    let r_mapped = curl(
        in_app,
        &format!(
            "http://[::ffff:127.0.0.2]:{}/bytes/1000",
            service.addr.port()
        ),
        &upload,
        1000,
    );
    assert!(r_mapped.body_ok, "{r_mapped:?}");
    let accepted = proxy.accepted();
    assert_eq!(accepted.len(), 3, "{accepted:?}");
    assert_eq!(
        accepted[1].original_dst,
        Some(service6.addr),
        "IPv6 SO_ORIGINAL_DST"
    );
    assert!(accepted[1].peer.is_ipv6());
    assert_eq!(accepted[2].original_dst, Some(service.addr), "mapped IPv4");
    assert!(
        accepted[2].peer.is_ipv4(),
        "a mapped connect lands on the IPv4 listener"
    );

    let stats = guard.stats().unwrap();
    eprintln!("stats (sockmap={sockmap}): {stats:?}");
    assert_eq!(stats.connect4_redirects, 1, "{stats:?}");
    assert_eq!(stats.connect6_redirects, 2, "{stats:?}");
    assert_eq!(stats.established, 3, "{stats:?}");
    assert_eq!(stats.original_dst_answers, 3, "{stats:?}");
    if sockmap {
        assert_eq!(
            stats.sockhash_adds, 6,
            "both ends of 3 connections: {stats:?}"
        );
        assert!(stats.msg_redirects > 0, "{stats:?}");
    } else {
        assert_eq!(stats.sockhash_adds, 0, "{stats:?}");
        assert_eq!(stats.msg_redirects, 0, "{stats:?}");
    }

    // 6. uninstall: nothing attached, loaded or pinned is left
    guard.uninstall().expect("uninstall");
    assert_eq!(cgroup_programs(&app.path), Vec::<String>::new());
    assert_eq!(cgroup_programs(&proxy_cg.path), Vec::<String>::new());
    assert_kernel_objects_gone(&progs, &maps);
    let before = proxy.accepted().len();
    let after = curl(
        in_app,
        &format!("http://{}/bytes/10", service.addr),
        &upload,
        10,
    );
    assert!(after.body_ok);
    assert_eq!(proxy.accepted().len(), before, "captured after uninstall");

    drop(in_proxy);
    let (app_path, proxy_path) = (app.path.clone(), proxy_cg.path.clone());
    drop(app);
    drop(proxy_cg);
    assert!(
        !app_path.exists() && !proxy_path.exists(),
        "test cgroups removed"
    );
}

#[test]
fn ebpf_capture_with_sockmap() {
    if !privileged_or_skip("ebpf_capture_with_sockmap", TOOLS) {
        return;
    }
    let _serial = serial();
    capture_end_to_end(true);
}

#[test]
fn ebpf_capture_without_sockmap() {
    if !privileged_or_skip("ebpf_capture_without_sockmap", TOOLS) {
        return;
    }
    let _serial = serial();
    capture_end_to_end(false);
}

#[test]
fn ebpf_refuses_a_missing_cgroup_and_a_looping_layout() {
    if !privileged_or_skip("ebpf_refuses", TOOLS) {
        return;
    }
    let _serial = serial();
    let app = TestCgroup::new("refuse");
    let mut s = spec(&app.path, 15001, &["127.0.0.2".to_string()]);
    let missing = app.path.join("no-such-child");
    s.cgroup = missing.clone();
    let e = Capture::install(&s).unwrap_err();
    assert!(matches!(e, CaptureError::Cgroup { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("no cgroup v2 at {}", missing.display()))
            && text.contains("no such directory"),
        "{text}"
    );

    // not a cgroup2 filesystem
    s.cgroup = "/proc".into();
    let text = Capture::install(&s).unwrap_err().to_string();
    assert!(text.contains("not cgroup2"), "{text}");

    // the proxy in the captured cgroup with nothing to tell its sockets apart: a loop
    s.cgroup = app.path.clone();
    s.proxy_cgroup = Some(app.path.clone());
    s.proxy_mark = None;
    s.proxy_uid = None;
    let text = Capture::install(&s).unwrap_err().to_string();
    assert!(text.contains("a loop"), "{text}");
    assert_eq!(cgroup_programs(&app.path), Vec::<String>::new());
}

#[test]
fn ebpf_reports_the_verifier_log_of_a_refused_program() {
    if !privileged_or_skip("ebpf_refused_program", TOOLS) {
        return;
    }
    let _serial = serial();
    let app = TestCgroup::new("verifier");
    let proxy_cg = TestCgroup::new("verifier-proxy");
    let mut s = spec(&app.path, 15001, &["127.0.0.2".to_string()]);
    s.proxy_cgroup = Some(proxy_cg.path.clone());
    let e = Capture::install_with_object(&s, mosn_ebpf::VERIFIER_PITFALL_OBJECT).unwrap_err();
    let text = e.to_string();
    match &e {
        CaptureError::ProgramRejected {
            program,
            verifier_log,
            ..
        } => {
            assert_eq!(program, "mosn_getsockopt", "{text}");
            assert!(
                verifier_log.contains("invalid bpf_context access"),
                "{text}"
            );
        }
        other => panic!("expected ProgramRejected, got {other}"),
    }
    assert!(
        text.contains("the kernel refused program mosn_getsockopt"),
        "{text}"
    );
    // what was attached before the failure is gone again
    wait_until(
        "detach after a failed install",
        Duration::from_secs(5),
        || cgroup_programs(&app.path).is_empty() && cgroup_programs(&proxy_cg.path).is_empty(),
    );
}

/// Runs inside a child process started by the tests below (a no-op in a normal run): installs
/// a capture as the environment says, prints `READY <pin dir>` or `ERROR <message>`, then
/// waits to be killed.
#[test]
fn helper_process() {
    let Ok(cgroup) = std::env::var("MOSN_EBPF_HELPER_CGROUP") else {
        return;
    };
    let mut s = spec(Path::new(&cgroup), 15001, &["127.0.0.2".to_string()]);
    s.proxy_cgroup = std::env::var("MOSN_EBPF_HELPER_PROXY_CGROUP")
        .ok()
        .map(Into::into);
    s.pin_root = std::env::var("MOSN_EBPF_HELPER_PIN_ROOT")
        .ok()
        .map(Into::into);
    s.instance = "mosn_t".to_string();
    match Capture::install(&s) {
        Ok(guard) => {
            println!(
                "READY {}",
                guard
                    .pin_dir()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_secs(600));
        }
        Err(e) => println!("ERROR {e}"),
    }
}

fn spawn_helper(wrapper: &[&str], envs: &[(&str, &Path)]) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut args: Vec<&std::ffi::OsStr> = wrapper.iter().map(|a| a.as_ref()).collect();
    args.push(exe.as_os_str());
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .args([
            "--exact",
            "helper_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn the helper")
}

fn helper_line(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        // libtest may print "test helper_process ... " on the same line first
        if let Some(i) = line.find("READY").or_else(|| line.find("ERROR")) {
            return line[i..].to_string();
        }
    }
    panic!("the helper exited without a READY/ERROR line");
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private bpffs instance mounted on a temp directory (unmounted on drop).
struct Bpffs(std::path::PathBuf);

impl Bpffs {
    fn mount() -> Bpffs {
        let dir = std::env::temp_dir().join(format!("mosn-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        run(&["mount", "-t", "bpf", "bpf", dir.to_str().unwrap()]);
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn ebpf_killed_process_leaves_nothing_attached_and_stale_pins_are_removed() {
    if !privileged_or_skip("ebpf_killed_process", TOOLS) {
        return;
    }
    let _serial = serial();
    let app = TestCgroup::new("crash");
    let proxy_cg = TestCgroup::new("crash-proxy");
    let bpffs = Bpffs::mount();
    let mut helper = Kill(spawn_helper(
        &[],
        &[
            ("MOSN_EBPF_HELPER_CGROUP", &app.path),
            ("MOSN_EBPF_HELPER_PROXY_CGROUP", &proxy_cg.path),
            ("MOSN_EBPF_HELPER_PIN_ROOT", &bpffs.0),
        ],
    ));
    let line = helper_line(&mut helper.0);
    let pin_dir = line
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("helper: {line}"))
        .to_string();
    assert!(
        Path::new(&pin_dir).join("orig_by_peer").exists(),
        "{pin_dir}"
    );
    assert_eq!(cgroup_programs(&app.path).len(), 4);

    // SIGKILL: no destructor runs
    let _ = helper.0.kill();
    let _ = helper.0.wait();
    wait_until(
        "the kernel to detach a killed process's links",
        Duration::from_secs(10),
        || cgroup_programs(&app.path).is_empty() && cgroup_programs(&proxy_cg.path).is_empty(),
    );
    assert!(Path::new(&pin_dir).exists(), "the pins outlive the crash");

    // the next start of the same instance removes them
    let mut s = spec(&app.path, 15001, &["127.0.0.2".to_string()]);
    s.proxy_cgroup = Some(proxy_cg.path.clone());
    s.pin_root = Some(bpffs.0.clone());
    s.instance = "mosn_t".to_string();
    let guard = Capture::install(&s).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !Path::new(&pin_dir).exists(),
        "stale pins removed on the next start"
    );
    let own = guard.pin_dir().unwrap().to_path_buf();
    assert!(own.join("stats").exists());
    drop(guard);
    assert!(!own.exists(), "pins removed on uninstall");
    let left: Vec<_> = std::fs::read_dir(&bpffs.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".debug")) // the kernel's maps.debug / progs.debug
        .collect();
    assert!(left.is_empty(), "left in the bpffs: {left:?}");
}

#[test]
fn ebpf_without_cap_bpf_says_what_is_missing() {
    if !privileged_or_skip("ebpf_without_cap_bpf", &["setpriv", "bpftool"]) {
        return;
    }
    let _serial = serial();
    let app = TestCgroup::new("nocap");
    let mut helper = Kill(spawn_helper(
        &["setpriv", "--bounding-set=-bpf,-sys_admin", "--"],
        &[("MOSN_EBPF_HELPER_CGROUP", &app.path)],
    ));
    let line = helper_line(&mut helper.0);
    assert!(
        line.contains("ERROR") && line.contains("missing capability CAP_BPF (or CAP_SYS_ADMIN)"),
        "{line}"
    );
    assert_eq!(cgroup_programs(&app.path), Vec::<String>::new());
}
