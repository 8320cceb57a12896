//! RPC peers: real, independent SOFARPC Bolt and Dubbo implementations from npm, driven
//! through the node scripts in tests/tools/rpc/ (sofa-rpc-node + sofa-bolt-node for Bolt,
//! sofa-rpc-node + dubbo-remoting for Dubbo; versions pinned in its package-lock.json), and
//! anthunder (Ant's Python Bolt client, from PyPI, pinned in its requirements.txt) as a
//! second Bolt client.
//! Servers print `LISTENING <port>` and can record every frame they receive (a JSON line
//! each); clients run to completion and print a JSON line per call plus a summary. The
//! tools are required: when node or their node_modules are missing the test fails saying
//! to run `ci/setup.sh`, which installs them.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{require_tool, ChildGuard};

// === tools ===

/// tests/tools/rpc/.
pub fn rpc_tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/rpc")
}

/// The packages the tools load, all pinned in tests/tools/rpc/package-lock.json.
const PACKAGES: [&str; 4] = [
    "sofa-rpc-node",
    "sofa-bolt-node",
    "dubbo-remoting",
    "hessian.js",
];

/// The `node` binary, after checking that the tools' node_modules are installed; otherwise a
/// failure that says to run ci/setup.sh.
pub fn node_tools_ready() -> PathBuf {
    let node = require_tool("node", "nodejs");
    let modules = rpc_tools_dir().join("node_modules");
    for p in PACKAGES {
        if !modules.join(p).join("package.json").is_file() {
            panic!(
                "RPC peer tools are not installed ({} has no {p}): run ci/setup.sh \
                 (it runs `npm ci` in tests/tools/rpc)",
                modules.display()
            );
        }
    }
    node
}

fn script(name: &str) -> PathBuf {
    rpc_tools_dir().join(name)
}

// === servers ===

/// A running peer server process; killed when dropped. [`BoltServer`] and [`DubboServer`]
/// deref to it.
pub struct PeerServer {
    child: ChildGuard,
    port: u16,
    record: Option<PathBuf>,
}

/// `bin`, run inside network namespace `netns` when given (`ip netns exec`).
fn command_in(bin: PathBuf, netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// A client command for `o`: inside its network namespace, or moved into its cgroup v2
/// first (the shell writes its own pid to `cgroup.procs`, then execs the client).
fn client_command(bin: PathBuf, o: &CallOpts) -> Command {
    match &o.cgroup {
        Some(cg) => {
            let mut c = Command::new("sh");
            c.args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""])
                .arg(cg)
                .arg(bin);
            c
        }
        None => command_in(bin, o.netns.as_deref()),
    }
}

impl PeerServer {
    fn spawn(name: &str, record: Option<&Path>, extra: &[&str]) -> PeerServer {
        PeerServer::spawn_in(name, None, 0, record, extra)
    }

    fn spawn_in(
        name: &str,
        netns: Option<&str>,
        port: u16,
        record: Option<&Path>,
        extra: &[&str],
    ) -> PeerServer {
        let node = node_tools_ready();
        let mut cmd = command_in(node, netns);
        cmd.arg(script(name)).arg("--port").arg(port.to_string());
        if let Some(r) = record {
            cmd.arg("--record").arg(r);
        }
        cmd.args(extra);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let guard = ChildGuard(child);
        let (tx, rx) = std::sync::mpsc::channel();
        let tag = name.to_string();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for l in lines.map_while(Result::ok) {
                eprintln!("[{tag}] {l}");
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{name} did not print LISTENING <port> within 30s"));
        let port = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected {name} output {line:?}"));
        PeerServer {
            child: guard,
            port,
            record: record.map(Path::to_path_buf),
        }
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1:port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The records written so far (empty without a record file).
    pub fn records(&self) -> Vec<Value> {
        self.record.as_deref().map(read_records).unwrap_or_default()
    }

    /// Waits for at least `n` records (see [`wait_records`]).
    pub fn wait_records(&self, n: usize) -> Vec<Value> {
        let path = self
            .record
            .as_deref()
            .expect("server started without a record file");
        wait_records(path, n, Duration::from_secs(10))
    }
}

/// A real SOFARPC Bolt server (bolt_server.js: sofa-rpc-node RpcServer, hessian2) on
/// 127.0.0.1:0: service `com.alipay.test.EchoService:1.0` with echo(String), fail(String),
/// sleep(int ms), len(String), big(int n). Answers Bolt v1 and v2 (with CRC) in kind.
pub struct BoltServer(PeerServer);

impl BoltServer {
    /// Starts it; `record` makes it append a JSON line per received frame.
    pub fn start(record: Option<&Path>) -> BoltServer {
        Self::start_with(record, &[])
    }

    /// Starts it with extra flags (`--reply-oneway`, `--service NAME`).
    /// Starts bolt_server.js inside network namespace `netns` on a fixed `port`.
    pub fn start_in(netns: &str, port: u16, record: Option<&Path>) -> BoltServer {
        BoltServer(PeerServer::spawn_in(
            "bolt_server.js",
            Some(netns),
            port,
            record,
            &[],
        ))
    }

    pub fn start_with(record: Option<&Path>, extra: &[&str]) -> BoltServer {
        BoltServer(PeerServer::spawn("bolt_server.js", record, extra))
    }

    /// Starts bolt_server.js inside network namespace `netns` on `host:port` (port 0: any;
    /// [`PeerServer::port`] tells which).
    pub fn start_in_at(netns: &str, host: &str, port: u16, record: Option<&Path>) -> BoltServer {
        BoltServer(PeerServer::spawn_in(
            "bolt_server.js",
            Some(netns),
            port,
            record,
            &["--host", host],
        ))
    }
}

impl std::ops::Deref for BoltServer {
    type Target = PeerServer;
    fn deref(&self) -> &PeerServer {
        &self.0
    }
}

/// A real Dubbo server (dubbo_server.js: sofa-rpc-node RpcServer + dubbo-remoting, hessian2)
/// on 127.0.0.1:0: service `com.alipay.test.EchoService` version `1.0.0`, same methods.
pub struct DubboServer(PeerServer);

impl DubboServer {
    /// Starts it; `record` makes it append a JSON line per received frame.
    pub fn start(record: Option<&Path>) -> DubboServer {
        Self::start_with(record, &[])
    }

    /// Starts it with extra flags (`--service PATH`, `--version V`).
    /// Starts dubbo_server.js inside network namespace `netns` on a fixed `port`.
    pub fn start_in(netns: &str, port: u16, record: Option<&Path>) -> DubboServer {
        DubboServer(PeerServer::spawn_in(
            "dubbo_server.js",
            Some(netns),
            port,
            record,
            &[],
        ))
    }

    pub fn start_with(record: Option<&Path>, extra: &[&str]) -> DubboServer {
        DubboServer(PeerServer::spawn("dubbo_server.js", record, extra))
    }
}

impl std::ops::Deref for DubboServer {
    type Target = PeerServer;
    fn deref(&self) -> &PeerServer {
        &self.0
    }
}

// === records ===

/// The JSON lines of a server's record file (missing file: none). Bolt records carry
/// `kind` (request|oneway|heartbeat), `proto`, `ver1`, `type`, `cmdcode`, `req_id`, `codec`,
/// `switch`, `timeout`, `class`, `headers` ([[k, v], ...] in wire order), `crc`, `crc_ok`,
/// lengths, and the decoded `service`, `method`, `arg_types`, `args`, `request_props`.
/// Dubbo records carry `kind` (request|heartbeat), `flag`, `two_way`, `event`,
/// `serialization`, `req_id` (string), `dubbo_version`, `path`, `version`, `method`,
/// `desc`, `args`, `attachments` ([[k, v], ...] in wire order), `service`.
pub fn read_records(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}")))
        .collect()
}

/// Waits until `path` holds at least `n` records (e.g. after a oneway call); returns them.
pub fn wait_records(path: &Path, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = read_records(path);
        if r.len() >= n || Instant::now() >= deadline {
            assert!(
                r.len() >= n,
                "{} has {} records, wanted {n}: {r:#?}",
                path.display(),
                r.len()
            );
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A record's `headers` as (key, value) pairs in wire order (Bolt header map, Dubbo
/// attachments under `attachments`).
pub fn record_pairs(record: &Value, field: &str) -> Vec<(String, String)> {
    record[field]
        .as_array()
        .unwrap_or_else(|| panic!("record has no {field}: {record}"))
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or_default().to_string(),
                p[1].as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| p[1].to_string()),
            )
        })
        .collect()
}

// === clients ===

/// What a client run does. `Default` gives one echo("hi") call with a 3 s timeout to the
/// tool's default service (Bolt `com.alipay.test.EchoService:1.0`, Dubbo
/// `com.alipay.test.EchoService` version `1.0.0`).
#[derive(Debug, Clone)]
pub struct CallOpts {
    /// Service unique name (Bolt `interface:version`; Dubbo path); None = tool default.
    pub service: Option<String>,
    /// Dubbo service version (None = `1.0.0`).
    pub version: Option<String>,
    /// Dubbo group (None = the library's `SOFA`).
    pub group: Option<String>,
    /// Method name.
    pub method: String,
    /// Arguments (a JSON array).
    pub args: Value,
    /// Instead of `args`: one deterministic ASCII string of this many characters.
    pub payload_size: Option<usize>,
    /// Number of calls.
    pub count: usize,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Per-call timeout.
    pub timeout_ms: u64,
    /// Bolt: oneway requests (type 0x02), no reply awaited.
    pub oneway: bool,
    /// Send `count` heartbeats instead of calls and wait for each ack.
    pub heartbeat: bool,
    /// Bolt: extra header-map entries after the library's `service` (tool extension).
    pub headers: Vec<(String, String)>,
    /// Bolt: requestProps entries (inside the hessian2 SofaRequest body).
    pub props: Vec<(String, String)>,
    /// Dubbo: attachments.
    pub attachments: Vec<(String, String)>,
    /// Bolt: v2 frames (proto 0x02, ver1 1).
    pub bolt_v2: bool,
    /// Bolt: v2 with CRC32 (ver1 2, switch 1).
    pub crc: bool,
    /// Bolt: target app name (in the SofaRequest body).
    pub target_app: Option<String>,
    /// Bolt: the library's protobuf codec (11) instead of hessian2; echo/fail only, the
    /// argument goes as `EchoRequest{message}` (tests/tools/rpc/proto/echo.proto).
    pub protobuf: bool,
    /// Run the client inside this network namespace.
    pub netns: Option<String>,
    /// Run the client inside this cgroup v2 (traffic capture tests).
    pub cgroup: Option<PathBuf>,
}

impl Default for CallOpts {
    fn default() -> Self {
        CallOpts {
            service: None,
            version: None,
            group: None,
            method: "echo".into(),
            args: json!(["hi"]),
            payload_size: None,
            count: 1,
            concurrency: 1,
            timeout_ms: 3000,
            oneway: false,
            heartbeat: false,
            headers: Vec::new(),
            props: Vec::new(),
            attachments: Vec::new(),
            bolt_v2: false,
            crc: false,
            target_app: None,
            protobuf: false,
            netns: None,
            cgroup: None,
        }
    }
}

impl CallOpts {
    /// `method(args...)` once.
    pub fn call(method: &str, args: Value) -> CallOpts {
        CallOpts {
            method: method.into(),
            args,
            ..Default::default()
        }
    }
}

/// One call's outcome as the client printed it.
#[derive(Debug, Clone)]
pub struct CallResult {
    /// The call succeeded.
    pub ok: bool,
    /// The result (absent for strings over 64 KiB: see `result_len` / `result_sha256`).
    pub result: Option<Value>,
    /// String results: length in characters.
    pub result_len: Option<u64>,
    /// String results: sha256 hex of the UTF-8 bytes.
    pub result_sha256: Option<String>,
    /// The result equals the first argument.
    pub echoed: bool,
    /// Error message (failed calls).
    pub error: Option<String>,
    /// Error name (e.g. `RpcResponseTimeoutError`).
    pub error_name: Option<String>,
    /// sofa-rpc-node's resultCode for failures: 01 business, 02 framework, 03 timeout,
    /// 04 no provider.
    pub code: Option<String>,
    /// The response status off the wire (Bolt u16 status, Dubbo status byte); None when no
    /// response arrived.
    pub status: Option<u64>,
    /// Milliseconds the call took.
    pub ms: u64,
    /// The request id the client used (Bolt u32; Dubbo u64).
    pub req_id: Option<u64>,
    /// A heartbeat rather than a call.
    pub heartbeat: bool,
    /// A oneway call.
    pub oneway: bool,
    /// The whole JSON line.
    pub raw: Value,
}

impl CallResult {
    fn from_json(v: Value) -> CallResult {
        CallResult {
            ok: v["ok"].as_bool().unwrap_or(false),
            result: v.get("result").cloned(),
            result_len: v["result_len"].as_u64(),
            result_sha256: v["result_sha256"].as_str().map(str::to_string),
            echoed: v["echoed"].as_bool().unwrap_or(false),
            error: v["error"].as_str().map(str::to_string),
            error_name: v["name"].as_str().map(str::to_string),
            code: v["code"].as_str().map(str::to_string),
            status: v["status"].as_u64(),
            ms: v["ms"].as_u64().unwrap_or(0),
            req_id: v["req_id"].as_u64(),
            heartbeat: v["heartbeat"].as_bool().unwrap_or(false),
            oneway: v["oneway"].as_bool().unwrap_or(false),
            raw: v,
        }
    }

    /// The result as a string (panics when it is not one).
    pub fn text(&self) -> &str {
        self.result
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string result: {:?}", self.raw))
    }
}

fn pair_flags(cmd: &mut Command, flag: &str, pairs: &[(String, String)]) {
    for (k, v) in pairs {
        cmd.arg(flag).arg(format!("{k}={v}"));
    }
}

fn common_flags(cmd: &mut Command, addr: SocketAddr, o: &CallOpts) {
    cmd.arg("--addr").arg(addr.to_string());
    if let Some(s) = &o.service {
        cmd.arg("--service").arg(s);
    }
    cmd.arg("--method").arg(&o.method);
    match o.payload_size {
        Some(n) => cmd.arg("--payload-size").arg(n.to_string()),
        None => cmd.arg("--args").arg(o.args.to_string()),
    };
    cmd.arg("--count").arg(o.count.to_string());
    cmd.arg("--concurrency").arg(o.concurrency.to_string());
    cmd.arg("--timeout").arg(o.timeout_ms.to_string());
    if o.heartbeat {
        cmd.arg("--heartbeat");
    }
}

/// Runs bolt_client.js (sofa-rpc-node RpcConsumer) to completion; one result per call.
pub fn bolt_call(addr: SocketAddr, o: CallOpts) -> Vec<CallResult> {
    let node = node_tools_ready();
    let mut cmd = client_command(node, &o);
    cmd.arg(script("bolt_client.js"));
    common_flags(&mut cmd, addr, &o);
    if o.oneway {
        cmd.arg("--oneway");
    }
    pair_flags(&mut cmd, "--header", &o.headers);
    pair_flags(&mut cmd, "--prop", &o.props);
    if o.bolt_v2 {
        cmd.args(["--bolt", "v2"]);
    }
    if o.crc {
        cmd.arg("--crc");
    }
    if let Some(a) = &o.target_app {
        cmd.arg("--target-app").arg(a);
    }
    if o.protobuf {
        cmd.args(["--codec", "protobuf"]);
    }
    run_client(cmd, &o)
}

/// Runs dubbo_client.js (sofa-rpc-node RpcConsumer + dubbo-remoting) to completion.
pub fn dubbo_call(addr: SocketAddr, o: CallOpts) -> Vec<CallResult> {
    assert!(!o.oneway, "dubbo-remoting has no oneway call");
    let node = node_tools_ready();
    let mut cmd = client_command(node, &o);
    cmd.arg(script("dubbo_client.js"));
    common_flags(&mut cmd, addr, &o);
    if let Some(v) = &o.version {
        cmd.arg("--version").arg(v);
    }
    if let Some(g) = &o.group {
        cmd.arg("--group").arg(g);
    }
    pair_flags(&mut cmd, "--attachment", &o.attachments);
    run_client(cmd, &o)
}

/// Debian's python3 with anthunder importable from tests/tools/rpc/pydeps, or a failure that
/// says to run ci/setup.sh.
pub fn anthunder_ready() -> PathBuf {
    let py = PathBuf::from("/usr/bin/python3");
    let pkg = rpc_tools_dir().join("pydeps/anthunder/__init__.py");
    if !py.is_file() || !pkg.is_file() {
        panic!(
            "anthunder is not installed ({} missing): run ci/setup.sh (it pip-installs \
             tests/tools/rpc/requirements.txt into tests/tools/rpc/pydeps)",
            pkg.display()
        );
    }
    py
}

/// Runs anthunder_client.py (anthunder, Ant's Python Bolt client: Bolt v1, protobuf codec
/// 11, `com.alipay.test.EchoRequest{message}` from `args[0]`) to completion. Uses
/// `service`, `method`, `args`, `count`, `timeout_ms`, `oneway`, `heartbeat`, `headers`
/// (appended to its header map) and `target_app`; calls are sequential.
pub fn anthunder_call(addr: SocketAddr, o: CallOpts) -> Vec<CallResult> {
    let py = anthunder_ready();
    let mut cmd = client_command(py, &o);
    cmd.arg(script("anthunder_client.py"));
    cmd.arg("--addr").arg(addr.to_string());
    if let Some(s) = &o.service {
        cmd.arg("--service").arg(s);
    }
    cmd.arg("--method").arg(&o.method);
    cmd.arg("--args").arg(o.args.to_string());
    cmd.arg("--count").arg(o.count.to_string());
    cmd.arg("--timeout").arg(o.timeout_ms.to_string());
    if o.oneway {
        cmd.arg("--oneway");
    }
    if o.heartbeat {
        cmd.arg("--heartbeat");
    }
    pair_flags(&mut cmd, "--header", &o.headers);
    if let Some(a) = &o.target_app {
        cmd.arg("--target-app").arg(a);
    }
    let sequential = CallOpts {
        concurrency: 1,
        ..o
    };
    run_client(cmd, &sequential)
}

/// Runs a client with a deadline (killed and failed past it), parses its JSON lines, and
/// checks the summary line against the per-call lines.
fn run_client(mut cmd: Command, o: &CallOpts) -> Vec<CallResult> {
    let waves = o.count.div_ceil(o.concurrency.max(1)) as u64;
    let limit = Duration::from_millis(30_000 + o.timeout_ms.saturating_mul(waves));
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut guard = ChildGuard(child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = guard.0.try_wait().expect("wait client") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = guard.0.kill();
            let _ = guard.0.wait();
            panic!(
                "client did not finish within {limit:?}: {desc}\nstdout:\n{}\nstderr:\n{}",
                out_t.join().unwrap_or_default(),
                err_t.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    if !err.trim().is_empty() {
        eprintln!("[client stderr] {}", err.trim_end());
    }
    assert!(
        status.success(),
        "client exited {status}: {desc}\nstdout:\n{out}\nstderr:\n{err}"
    );
    let mut results = Vec::new();
    let mut summary = None;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("client printed non-JSON {line:?}: {e}\n{err}"));
        if let Some(s) = v.get("summary") {
            summary = Some(s.clone());
        } else {
            results.push(CallResult::from_json(v));
        }
    }
    let summary = summary.unwrap_or_else(|| panic!("no summary line from {desc}:\n{out}\n{err}"));
    let ok = results.iter().filter(|r| r.ok).count() as u64;
    assert_eq!(
        (summary["ok"].as_u64(), summary["failed"].as_u64()),
        (Some(ok), Some(results.len() as u64 - ok)),
        "summary does not match the call lines:\n{out}"
    );
    results
}

/// dataplane/wire/tests/fixtures/real/: golden frames captured from these peers.
pub fn real_fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dataplane/wire/tests/fixtures/real")
}
