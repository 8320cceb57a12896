//! `rpc-load`: the RPC benchmark's load generator (bench/rpc.sh). Opens C connections and keeps
//! D requests in flight on each (closed loop: an answer is followed by the next request at
//! once), or with `--rate` sends each connection's share of R req/s on a schedule (still at
//! most D in flight). Requests are SOFARPC-shaped Bolt requests or Dubbo hessian2
//! invocations (see `mosn_bench::rpc`); every answer is checked (request id known, status
//! success, body shape) and timed. Prints one JSON object on stdout:
//!
//! ```text
//! {"proto":"bolt","connections":16,"pipeline":8,...,"requests":N,"errors":E,"rps":..,
//!  "p50_us":..,"p90_us":..,"p99_us":..,"p999_us":..,"max_us":..,
//!  "loader_cpu_s":..,"loader_cpu_pct":..,"loader_cpu_us_per_req":..,"first_error":null}
//! ```
//!
//! Only answers received within `--duration` count (req/s = requests / duration); requests
//! still in flight at the end are dropped with the connections. Exits 1 when no request
//! completed (or an argument is wrong, or a connection cannot be made).
//!
//! ```text
//! rpc-load --proto bolt|dubbo --addr 127.0.0.1:P [--connections C] [--pipeline D]
//!          [--duration S] [--rate R] [--threads T]
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::Parser;
use mosn_bench::rpc::{next_answer, Answer, Proto, RequestTemplate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A closed-loop (or fixed-rate) Bolt / Dubbo load generator for the RPC benchmark.
#[derive(Parser, Debug)]
#[command(name = "rpc-load")]
struct Args {
    /// The protocol to speak.
    #[arg(long, value_enum)]
    proto: Proto,
    /// Where to connect (the proxy, or the upstream for the direct baseline).
    #[arg(long)]
    addr: SocketAddr,
    /// Connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 8)]
    pipeline: usize,
    /// Seconds of load (measured).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Total requests per second over all connections (default: closed loop, as fast as
    /// answers come).
    #[arg(long)]
    rate: Option<f64>,
    /// Threads, each with its own single-threaded runtime and a share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

const READ_CHUNK: usize = 64 * 1024;

/// What one connection (or all of them) saw.
#[derive(Default)]
struct Stats {
    requests: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
}

impl Stats {
    fn error(&mut self, n: u64, what: impl Into<String>) {
        self.errors += n;
        if self.first_error.is_none() {
            self.first_error = Some(what.into());
        }
    }

    fn merge(&mut self, other: Stats) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The settings every connection shares.
struct Cfg {
    proto: Proto,
    template: RequestTemplate,
    pipeline: usize,
    /// `--rate`: time between two requests of one connection.
    interval: Option<Duration>,
    connections: usize,
}

/// Requests in flight on one connection, oldest first, with their send times.
struct InFlight {
    q: VecDeque<(u32, Instant)>,
    next_id: u32,
}

impl InFlight {
    fn push(&mut self, cfg: &Cfg, now: Instant, out: &mut BytesMut) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        cfg.template.append(id, out);
        self.q.push_back((id, now));
    }

    /// Removes request `id` (answers usually come in order: the front is tried first).
    fn take(&mut self, id: u32) -> Option<Instant> {
        let pos = if self.q.front().map(|f| f.0) == Some(id) {
            0
        } else {
            self.q.iter().position(|f| f.0 == id)?
        };
        self.q.remove(pos).map(|(_, t)| t)
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

enum Event {
    Read(std::io::Result<usize>),
    Tick,
}

async fn run_conn(
    mut s: TcpStream,
    cfg: Arc<Cfg>,
    idx: usize,
    start: Instant,
    deadline: Instant,
) -> Stats {
    let mut st = Stats::default();
    let mut fl = InFlight {
        q: VecDeque::with_capacity(cfg.pipeline),
        next_id: 1,
    };
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(cfg.pipeline.saturating_mul(cfg.template.len()));
    // --rate: the connections' schedules are staggered over one interval
    let mut next_send = cfg.interval.map(|iv| {
        let frac = idx as f64 / cfg.connections as f64;
        start + iv.mul_f64(frac)
    });
    let end = tokio::time::sleep_until(deadline.into());
    tokio::pin!(end);
    let tick = tokio::time::sleep_until(next_send.unwrap_or(deadline).into());
    tokio::pin!(tick);

    let mut now = Instant::now();
    loop {
        // send what is due: the closed loop refills the pipeline, the fixed rate follows its
        // schedule (catching up when the pipeline was full), both in one write
        match (next_send, cfg.interval) {
            (Some(mut due), Some(iv)) => {
                while due <= now && fl.q.len() < cfg.pipeline {
                    fl.push(&cfg, now, &mut out);
                    due += iv;
                }
                next_send = Some(due);
                tick.as_mut().reset(due.into());
            }
            _ => {
                while fl.q.len() < cfg.pipeline {
                    fl.push(&cfg, now, &mut out);
                }
            }
        }
        if !out.is_empty() {
            if let Err(e) = s.write_all(&out).await {
                st.error(fl.q.len() as u64, format!("write: {e}"));
                return st;
            }
            out.clear();
        }

        input.reserve(READ_CHUNK);
        let paced = next_send.is_some() && fl.q.len() < cfg.pipeline;
        let ev = tokio::select! {
            biased;
            _ = &mut end => break,
            r = s.read_buf(&mut input) => Event::Read(r),
            _ = &mut tick, if paced => Event::Tick,
        };
        now = Instant::now();
        if now >= deadline {
            break;
        }
        match ev {
            Event::Tick => {}
            Event::Read(Ok(0)) => {
                st.error(fl.q.len().max(1) as u64, "connection closed by the peer");
                return st;
            }
            Event::Read(Err(e)) => {
                st.error(fl.q.len().max(1) as u64, format!("read: {e}"));
                return st;
            }
            Event::Read(Ok(_)) => loop {
                match next_answer(cfg.proto, &mut input) {
                    Ok(None) => break,
                    Ok(Some(answer)) => {
                        let (id, bad) = match answer {
                            Answer::Ok(id) => (id, None),
                            Answer::Bad(id, why) => (id, Some(why)),
                        };
                        match (fl.take(id), bad) {
                            (None, _) => st.error(1, format!("answer to unknown request id {id}")),
                            (Some(_), Some(why)) => st.error(1, why),
                            (Some(t0), None) => {
                                st.requests += 1;
                                st.latencies_us
                                    .push(micros(now.saturating_duration_since(t0)));
                            }
                        }
                    }
                    Err(e) => {
                        st.error(fl.q.len().max(1) as u64, format!("malformed answer: {e}"));
                        return st;
                    }
                }
            },
        }
    }
    st
}

/// CPU seconds (user + system) of this process so far, all threads, from /proc/self/stat
/// (in USER_HZ = 100 ticks per second on Linux).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields 14 and 15 (utime, stime); `rest` starts at field 3
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

/// One thread: connects its share of the connections, waits for the others, runs the load.
fn run_thread(
    t: usize,
    args: &Args,
    cfg: Arc<Cfg>,
    barrier: Arc<Barrier>,
    dur: Duration,
) -> Result<Stats, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"));
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            barrier.wait();
            return Err(e);
        }
    };
    let mine: Vec<usize> = (0..args.connections)
        .filter(|i| i % args.threads == t)
        .collect();
    let addr = args.addr;
    let conns = rt.block_on(async {
        let mut v = Vec::with_capacity(mine.len());
        for &i in &mine {
            let s = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
            v.push((i, s));
        }
        Ok::<_, String>(v)
    });
    barrier.wait();
    let conns = conns?;
    let start = Instant::now();
    let deadline = start + dur;
    Ok(rt.block_on(async move {
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|(i, s)| tokio::spawn(run_conn(s, cfg.clone(), i, start, deadline)))
            .collect();
        let mut all = Stats::default();
        for task in tasks {
            match task.await {
                Ok(st) => all.merge(st),
                Err(e) => all.error(1, format!("connection task failed: {e}")),
            }
        }
        all
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let fail = |msg: String| {
        eprintln!("rpc-load: {msg}");
        ExitCode::FAILURE
    };
    if args.connections == 0 || args.pipeline == 0 || args.threads == 0 {
        return fail("--connections, --pipeline and --threads must be at least 1".into());
    }
    if args.threads > args.connections {
        return fail("--threads must not exceed --connections".into());
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        return fail("--duration must be a positive number of seconds".into());
    }
    let interval = match args.rate {
        None => None,
        Some(r) if r > 0.0 && r.is_finite() => {
            Some(Duration::from_secs_f64(args.connections as f64 / r))
        }
        Some(_) => return fail("--rate must be a positive number of requests per second".into()),
    };
    let template = match RequestTemplate::new(args.proto) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot encode the request: {e}")),
    };
    let request_bytes = template.len();
    let cfg = Arc::new(Cfg {
        proto: args.proto,
        template,
        pipeline: args.pipeline,
        interval,
        connections: args.connections,
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
    all.latencies_us.sort_unstable();
    let lat = &all.latencies_us;
    let secs = dur.as_secs_f64();
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let num = |v: Option<f64>, prec: usize| match v {
        Some(x) => format!("{x:.prec$}"),
        None => "null".to_owned(),
    };
    let per_req = cpu
        .filter(|_| all.requests > 0)
        .map(|c| c * 1e6 / all.requests as f64);
    println!(
        "{{\"proto\":\"{}\",\"addr\":\"{}\",\"connections\":{},\"pipeline\":{},\"threads\":{},\"rate\":{},\
         \"request_bytes\":{},\"duration_s\":{:.3},\"requests\":{},\"errors\":{},\"rps\":{:.1},\
         \"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\
         \"loader_cpu_s\":{},\"loader_cpu_pct\":{},\"loader_cpu_us_per_req\":{},\"first_error\":{}}}",
        args.proto.name(),
        args.addr,
        args.connections,
        args.pipeline,
        args.threads,
        num(args.rate, 1),
        request_bytes,
        secs,
        all.requests,
        all.errors,
        all.requests as f64 / secs,
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
        percentile(lat, 0.999),
        lat.last().copied().unwrap_or(0),
        num(cpu, 2),
        num(cpu.map(|c| c / secs * 100.0), 1),
        num(per_req, 2),
        all.first_error.as_deref().map_or_else(|| "null".to_owned(), json_str),
    );
    if all.requests == 0 {
        return fail(format!(
            "no request completed ({})",
            all.first_error.as_deref().unwrap_or("no answer")
        ));
    }
    ExitCode::SUCCESS
}
