//! `tls-load`: the TLS benchmark's load generator (bench/tls.sh). TLS 1.3 only, X25519 only,
//! rustls with the aws-lc-rs provider. C connection loops run at once (closed loop); what each
//! loop does depends on `--mode`:
//!
//! - `full`: connect, full handshake (no session resumption offered), send
//!   `GET PATH HTTP/1.1` with `Connection: close`, read the response to the end (the server
//!   closes first, so client ports never sit in TIME_WAIT), check its status is 200, close,
//!   again.
//! - `resumed`: the same, with a session store per loop: the loop's first connection is a full
//!   handshake and every later one offers the ticket the previous connections received
//!   (TLS 1.3 PSK with an X25519 exchange, so no certificate signature). The share actually
//!   resumed is reported and the run fails when it is below `--min-resumed`.
//! - `bulk`: one keep-alive connection per loop fetching `GET PATH` again and again (the
//!   response must carry a Content-Length); the body bytes received give MB/s.
//!
//! The client does not verify the server's certificate chain nor its handshake signature
//! (`NoVerify` below): that keeps the client cheap on a 2-core machine, and the server does
//! all of its usual work anyway (it cannot tell). It still checks every HTTP answer.
//!
//! Prints one JSON object on stdout:
//!
//! ```text
//! {"mode":"full","suite":"default","addr":"127.0.0.1:P","connections":32,...,"handshakes":N,"hs_per_s":..,
//!  "resumed":R,"resumed_share":..,"requests":N,"errors":E,"hs_p50_us":..,"hs_p99_us":..,
//!  "conn_p50_us":..,"conn_p99_us":..,"body_bytes":B,"mb_per_s":..,"loader_cpu_pct":..,
//!  "first_error":null}
//! ```
//!
//! A handshake counts when the whole iteration it belongs to completed within `--duration`
//! (for `bulk`: each connection's handshake, and body bytes of complete responses). Handshake
//! latency is from the start of the TCP connect to the end of the client's side of the TLS
//! handshake; connection latency (`conn_*`) to the end of the response. Exits 1 when nothing
//! completed, when there were errors beyond `--max-error-share`, or when `resumed` resumed too
//! rarely.
//!
//! ```text
//! tls-load --addr 127.0.0.1:P [--mode full|resumed|bulk] [--connections C] [--duration S]
//!          [--threads T] [--path /] [--server-name localhost] [--min-resumed 0.9]
//!          [--suite default|aes128|aes256]
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CipherSuite, ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A full handshake per connection, one request per connection.
    Full,
    /// Resumed handshakes (session tickets), one request per connection.
    Resumed,
    /// Keep-alive connections fetching a large body.
    Bulk,
}

/// The TLS 1.3 cipher suites the client offers, in its order of preference.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Suite {
    /// rustls's default order: AES-256-GCM-SHA384, AES-128-GCM-SHA256, ChaCha20-Poly1305
    /// (OpenSSL clients offer AES-256-GCM-SHA384 first too).
    Default,
    /// Only TLS_AES_128_GCM_SHA256 (the suite browsers put first).
    Aes128,
    /// Only TLS_AES_256_GCM_SHA384.
    Aes256,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::Default => "default",
            Suite::Aes128 => "aes128",
            Suite::Aes256 => "aes256",
        }
    }
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Resumed => "resumed",
            Mode::Bulk => "bulk",
        }
    }
}

/// A TLS 1.3 handshake / bulk load generator for the TLS benchmark.
#[derive(Parser, Debug)]
#[command(name = "tls-load")]
struct Args {
    /// Where to connect (the TLS-terminating server).
    #[arg(long)]
    addr: SocketAddr,
    /// What each connection loop does.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    mode: Mode,
    /// Concurrent connection loops.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds of load (measured).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Threads, each with its own single-threaded runtime and a share of the loops.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// The cipher suites offered.
    #[arg(long, value_enum, default_value_t = Suite::Default)]
    suite: Suite,
    /// SNI and Host header.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// `resumed`: the least share of handshakes that must be resumptions (else exit 1).
    #[arg(long, default_value_t = 0.9)]
    min_resumed: f64,
    /// The largest share of iterations that may fail before the run counts as failed.
    #[arg(long, default_value_t = 0.01)]
    max_error_share: f64,
}

/// Accepts any certificate and any handshake signature: the benchmark's client must stay cheap
/// (see the module doc). Never use this outside a benchmark.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// TLS 1.3 only, X25519 only, no certificate checks; session resumption only in `resumed`.
fn client_config(mode: Mode, suite: Suite) -> Result<Arc<ClientConfig>, String> {
    let base = aws_lc_rs::default_provider();
    let cipher_suites = match suite {
        Suite::Default => base.cipher_suites.clone(),
        Suite::Aes128 => vec![aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256],
        Suite::Aes256 => vec![aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384],
    };
    let provider = Arc::new(CryptoProvider {
        kx_groups: vec![aws_lc_rs::kx_group::X25519],
        cipher_suites,
        ..base
    });
    let verifier = Arc::new(NoVerify(provider.signature_verification_algorithms));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("client config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = match mode {
        Mode::Resumed => Resumption::in_memory_sessions(64),
        Mode::Full | Mode::Bulk => Resumption::disabled(),
    };
    Ok(Arc::new(config))
}

/// What one loop (or all of them) saw.
#[derive(Default)]
struct Stats {
    handshakes: u64,
    resumed: u64,
    requests: u64,
    errors: u64,
    body_bytes: u64,
    reconnects: u64,
    hs_us: Vec<u32>,
    conn_us: Vec<u32>,
    first_error: Option<String>,
    /// The cipher suite of the first handshake.
    suite: Option<CipherSuite>,
}

impl Stats {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }

    fn merge(&mut self, o: Stats) {
        self.handshakes += o.handshakes;
        self.resumed += o.resumed;
        self.requests += o.requests;
        self.errors += o.errors;
        self.body_bytes += o.body_bytes;
        self.reconnects += o.reconnects;
        self.hs_us.extend(o.hs_us);
        self.conn_us.extend(o.conn_us);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.suite = self.suite.or(o.suite);
    }
}

/// The settings every loop shares.
struct Cfg {
    addr: SocketAddr,
    mode: Mode,
    suite: Suite,
    name: ServerName<'static>,
    request: Vec<u8>,
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// TCP connect + TLS handshake; returns the stream, whether the handshake was a resumption and
/// the negotiated cipher suite.
async fn handshake(
    cfg: &Cfg,
    connector: &TlsConnector,
) -> Result<(Tls, bool, Option<CipherSuite>), String> {
    let tcp = TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let tls = match tokio::time::timeout(IO_TIMEOUT, connector.connect(cfg.name.clone(), tcp)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(format!("handshake: {e}")),
        Err(_) => return Err("handshake: timed out".into()),
    };
    let conn = tls.get_ref().1;
    let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    let suite = conn.negotiated_cipher_suite().map(|s| s.suite());
    Ok((tls, resumed, suite))
}

/// Position of the end of the response head (after `\r\n\r\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Status code and Content-Length (if any) of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, Option<usize>), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut len = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = Some(
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("bad Content-Length {v:?}"))?,
                );
            } else if k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                return Err("chunked responses are not supported; serve a Content-Length".into());
            }
        }
    }
    Ok((status, len))
}

/// Reads until EOF (the server closes after `Connection: close`). A TCP close without
/// `close_notify` also counts as the end.
async fn read_to_eof<R: AsyncRead + Unpin>(s: &mut R, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(IO_TIMEOUT, s.read(&mut chunk)).await {
            Err(_) => return Err("read: timed out waiting for the server to close".into()),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
        }
    }
}

/// One `full` / `resumed` iteration; Ok((handshake µs, connection µs, resumed, suite)).
async fn one_connection(
    cfg: &Cfg,
    connector: &TlsConnector,
    buf: &mut Vec<u8>,
) -> Result<(u32, u32, bool, Option<CipherSuite>), String> {
    let t0 = Instant::now();
    let (mut tls, resumed, suite) = handshake(cfg, connector).await?;
    let hs = micros(t0.elapsed());
    tls.write_all(&cfg.request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    buf.clear();
    read_to_eof(&mut tls, buf).await?;
    let end = head_end(buf).ok_or_else(|| {
        format!(
            "incomplete response head ({} bytes before the close)",
            buf.len()
        )
    })?;
    let (status, len) = parse_head(&buf[..end])?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    if let Some(len) = len {
        if buf.len() - end < len {
            return Err(format!(
                "short body: {} of {len} bytes before the close",
                buf.len() - end
            ));
        }
    }
    Ok((hs, micros(t0.elapsed()), resumed, suite))
}

async fn run_loop(cfg: Arc<Cfg>, deadline: Instant) -> Stats {
    let mut st = Stats::default();
    // one session store per loop: "the loop's first connection is full, the rest resume"
    let connector = match client_config(cfg.mode, cfg.suite) {
        Ok(c) => TlsConnector::from(c),
        Err(e) => {
            st.error(e);
            return st;
        }
    };
    match cfg.mode {
        Mode::Full | Mode::Resumed => {
            let mut buf = Vec::with_capacity(4096);
            let dl = tokio::time::Instant::from_std(deadline);
            while Instant::now() < deadline {
                match tokio::time::timeout_at(dl, one_connection(&cfg, &connector, &mut buf)).await
                {
                    Err(_) => break, // the iteration in flight at the deadline does not count
                    Ok(Ok((hs, conn, resumed, suite))) => {
                        st.suite = st.suite.or(suite);
                        st.handshakes += 1;
                        st.requests += 1;
                        st.resumed += u64::from(resumed);
                        st.hs_us.push(hs);
                        st.conn_us.push(conn);
                    }
                    Ok(Err(e)) => {
                        st.error(e);
                        // do not spin on a dead server
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        Mode::Bulk => {
            let dl = tokio::time::Instant::from_std(deadline);
            let _ = tokio::time::timeout_at(dl, bulk_loop(&cfg, &connector, &mut st)).await;
        }
    }
    st
}

/// `bulk`: keep-alive fetches; reconnects when the server closes between responses.
async fn bulk_loop(cfg: &Cfg, connector: &TlsConnector, st: &mut Stats) {
    let mut first = true;
    loop {
        let t0 = Instant::now();
        let mut tls = match handshake(cfg, connector).await {
            Ok((tls, _, suite)) => {
                st.suite = st.suite.or(suite);
                tls
            }
            Err(e) => {
                st.error(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        st.handshakes += 1;
        st.hs_us.push(micros(t0.elapsed()));
        if !first {
            st.reconnects += 1;
        }
        first = false;
        let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
        let mut chunk = vec![0u8; 256 * 1024];
        'conn: loop {
            let t1 = Instant::now();
            if let Err(e) = tls.write_all(&cfg.request).await {
                st.error(format!("write: {e}"));
                break;
            }
            // response head
            buf.clear();
            let end = loop {
                if let Some(end) = head_end(&buf) {
                    break end;
                }
                match tls.read(&mut chunk).await {
                    Ok(0) if buf.is_empty() => break 'conn, // closed between responses
                    Ok(0) => {
                        st.error("closed inside a response head".into());
                        break 'conn;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => {
                        st.error(format!("read: {e}"));
                        break 'conn;
                    }
                }
            };
            let len = match parse_head(&buf[..end]) {
                Ok((200, Some(len))) => len,
                Ok((200, None)) => {
                    st.error("bulk needs a Content-Length".into());
                    return;
                }
                Ok((status, _)) => {
                    st.error(format!("status {status}"));
                    break;
                }
                Err(e) => {
                    st.error(e);
                    break;
                }
            };
            let mut got = buf.len() - end;
            while got < len {
                match tls.read(&mut chunk).await {
                    Ok(0) => {
                        st.error(format!("closed after {got} of {len} body bytes"));
                        break 'conn;
                    }
                    Ok(n) => got += n,
                    Err(e) => {
                        st.error(format!("read: {e}"));
                        break 'conn;
                    }
                }
            }
            if got != len {
                st.error(format!("{} bytes past the body", got - len));
                break;
            }
            st.requests += 1;
            st.body_bytes += len as u64;
            st.conn_us.push(micros(t1.elapsed()));
        }
    }
}

/// CPU seconds (user + system) of this process so far, from /proc/self/stat (USER_HZ = 100).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(k - 1).copied().unwrap_or(0)
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn run_thread(
    t: usize,
    args: &Args,
    cfg: Arc<Cfg>,
    barrier: Arc<Barrier>,
    dur: Duration,
) -> Result<Stats, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    barrier.wait();
    let rt = rt.map_err(|e| format!("runtime: {e}"))?;
    let n = (0..args.connections)
        .filter(|i| i % args.threads == t)
        .count();
    let deadline = Instant::now() + dur;
    Ok(rt.block_on(async move {
        let tasks: Vec<_> = (0..n)
            .map(|_| tokio::spawn(run_loop(cfg.clone(), deadline)))
            .collect();
        let mut all = Stats::default();
        for task in tasks {
            match task.await {
                Ok(st) => all.merge(st),
                Err(e) => all.error(format!("connection task failed: {e}")),
            }
        }
        all
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let fail = |msg: String| {
        eprintln!("tls-load: {msg}");
        ExitCode::FAILURE
    };
    if args.connections == 0 || args.threads == 0 {
        return fail("--connections and --threads must be at least 1".into());
    }
    if args.threads > args.connections {
        return fail("--threads must not exceed --connections".into());
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        return fail("--duration must be a positive number of seconds".into());
    }
    let name = match ServerName::try_from(args.server_name.clone()) {
        Ok(n) => n,
        Err(e) => return fail(format!("--server-name: {e}")),
    };
    let conn_header = if args.mode == Mode::Bulk {
        "keep-alive"
    } else {
        "close"
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tls-load\r\nConnection: {conn_header}\r\n\r\n",
        args.path, args.server_name
    )
    .into_bytes();
    let cfg = Arc::new(Cfg {
        addr: args.addr,
        mode: args.mode,
        suite: args.suite,
        name,
        request,
    });
    let dur = Duration::from_secs_f64(args.duration);
    let cpu0 = own_cpu_seconds();
    let barrier = Arc::new(Barrier::new(args.threads));
    let results: Vec<Result<Stats, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let (cfg, barrier, args) = (cfg.clone(), barrier.clone(), &args);
                scope.spawn(move || run_thread(t, args, cfg, barrier, dur))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a load thread panicked".into()))
            })
            .collect()
    });
    let cpu1 = own_cpu_seconds();
    let mut all = Stats::default();
    for r in results {
        match r {
            Ok(st) => all.merge(st),
            Err(e) => return fail(e),
        }
    }
    all.hs_us.sort_unstable();
    all.conn_us.sort_unstable();
    let secs = dur.as_secs_f64();
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let num = |v: Option<f64>, prec: usize| match v {
        Some(x) => format!("{x:.prec$}"),
        None => "null".to_owned(),
    };
    let resumed_share = if all.handshakes > 0 {
        all.resumed as f64 / all.handshakes as f64
    } else {
        0.0
    };
    println!(
        "{{\"mode\":\"{}\",\"suite\":\"{}\",\"addr\":\"{}\",\"connections\":{},\"threads\":{},\"duration_s\":{:.3},\
         \"handshakes\":{},\"hs_per_s\":{:.1},\"resumed\":{},\"resumed_share\":{:.4},\
         \"requests\":{},\"errors\":{},\"reconnects\":{},\
         \"hs_p50_us\":{},\"hs_p99_us\":{},\"conn_p50_us\":{},\"conn_p99_us\":{},\
         \"body_bytes\":{},\"mb_per_s\":{:.1},\"negotiated_suite\":{},\"loader_cpu_pct\":{},\"first_error\":{}}}",
        args.mode.name(),
        args.suite.name(),
        args.addr,
        args.connections,
        args.threads,
        secs,
        all.handshakes,
        all.handshakes as f64 / secs,
        all.resumed,
        resumed_share,
        all.requests,
        all.errors,
        all.reconnects,
        percentile(&all.hs_us, 0.50),
        percentile(&all.hs_us, 0.99),
        percentile(&all.conn_us, 0.50),
        percentile(&all.conn_us, 0.99),
        all.body_bytes,
        all.body_bytes as f64 / 1e6 / secs,
        all.suite
            .map_or_else(|| "null".to_owned(), |s| json_str(&format!("{s:?}"))),
        num(cpu.map(|c| c / secs * 100.0), 1),
        all.first_error
            .as_deref()
            .map_or_else(|| "null".to_owned(), json_str),
    );
    if all.requests == 0 {
        return fail(format!(
            "no request completed ({})",
            all.first_error.as_deref().unwrap_or("no answer")
        ));
    }
    let attempts = all.requests + all.errors;
    if all.errors as f64 > args.max_error_share * attempts as f64 {
        return fail(format!(
            "{} of {attempts} iterations failed (first: {})",
            all.errors,
            all.first_error.as_deref().unwrap_or("?")
        ));
    }
    if args.mode == Mode::Resumed && resumed_share < args.min_resumed {
        return fail(format!(
            "only {:.1} % of the handshakes resumed (--min-resumed {:.0} %)",
            resumed_share * 100.0,
            args.min_resumed * 100.0
        ));
    }
    ExitCode::SUCCESS
}
