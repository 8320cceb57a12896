//! `dpdk_fwd`: io forwarding through mosn-net's DPDK device, the packet path under mosn's
//! userspace stack, measured on its own (bench/dpdk.sh compares it with `dpdk-testpmd
//! --forward-mode=io --port-topology=loop` on the same PMD).
//!
//! ```text
//! dpdk_fwd [EAL args] -- [--port NAME] [--seconds N] [--interval S] [--idle-exit S] [--mempool N]
//! ip netns exec M dpdk_fwd -l 0 --no-pci --vdev net_af_packet0,iface=veth0 -- --port net_af_packet0 --seconds 10
//! ```
//!
//! Every received frame goes back out of the port it came from, unchanged: a receive token
//! of [`DpdkDevice`] (the `smoltcp::phy::Device` mosn's stack polls) is consumed into the
//! transmit token handed out with it, which copies the frame into a fresh mbuf (the device
//! API gives smoltcp a slice, not the mbuf: that copy is part of the path measured; testpmd's
//! io mode sends the received mbuf itself). The transmit queue is flushed once per round, as
//! the stack's driver does ([`StackDevice::flush`]). Busy-polls one core like mosn's worker.
//!
//! Every `--interval` seconds it prints the port's counters over that interval, in testpmd's
//! words: `Rx-pps: N  Tx-pps: N  Tx-dropped: N` (from `rte_eth_stats`, plus frames dropped
//! before DPDK for want of an mbuf or TX room), and a `total` line at the end. It stops after
//! `--seconds`, or with `--idle-exit S` once traffic has come and then no frame arrived for `S`
//! seconds (so that a harness ends it by stopping its generator: it has no signal handler,
//! and a clean exit closes the port, which for af_xdp detaches its XDP program). Safe Rust
//! only: everything DPDK goes through `mosn_net::dpdk`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mosn_net::dpdk::{init_eal, Port, PortOptions, PortStats, BURST};
use mosn_net::userspace::StackDevice;
use smoltcp::phy::{Device, RxToken, TxToken};

struct Opts {
    eal: Vec<String>,
    port: String,
    seconds: f64,
    interval: f64,
    idle_exit: Option<f64>,
    mempool: u32,
}

fn usage() -> &'static str {
    "usage: dpdk_fwd [EAL args] -- [--port NAME] [--seconds N] [--interval S] [--idle-exit S] \
     [--mempool N]\n(the EAL args must contain --no-pci; default port 0, 10 s, 1 s, no idle exit, \
     8191 mbufs)"
}

fn parse() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let mut opts = Opts {
        eal: args[..split].to_vec(),
        port: "0".into(),
        seconds: 10.0,
        interval: 1.0,
        idle_exit: None,
        mempool: 8191,
    };
    let mut it = args.iter().skip(split + 1);
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--port" => opts.port = value()?,
            "--seconds" => {
                opts.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--interval" => {
                opts.interval = value()?.parse().map_err(|e| format!("--interval: {e}"))?;
            }
            "--idle-exit" => {
                let v: f64 = value()?.parse().map_err(|e| format!("--idle-exit: {e}"))?;
                opts.idle_exit = Some(v);
            }
            "--mempool" => {
                opts.mempool = value()?.parse().map_err(|e| format!("--mempool: {e}"))?
            }
            "-h" | "--help" => return Err(usage().into()),
            other => return Err(format!("unknown option {other}\n{}", usage())),
        }
    }
    let positive = |v: f64| v > 0.0 && v.is_finite();
    if !positive(opts.seconds) || !positive(opts.interval) || !opts.idle_exit.is_none_or(positive) {
        return Err("--seconds, --interval and --idle-exit must be positive".into());
    }
    Ok(opts)
}

/// Prints the counters that moved between `a` and `b` over `secs` seconds.
fn report(label: &str, a: &PortStats, b: &PortStats, secs: f64) {
    let rate = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / secs;
    println!(
        "{label} {secs:.3} s  Rx-pps: {:.0}  Tx-pps: {:.0}  Rx-dropped: {}  Tx-errors: {}  Tx-dropped: {}",
        rate(a.rx_packets, b.rx_packets),
        rate(a.tx_packets, b.tx_packets),
        b.rx_dropped.saturating_sub(a.rx_dropped),
        b.tx_errors.saturating_sub(a.tx_errors),
        b.tx_dropped.saturating_sub(a.tx_dropped),
    );
}

fn run(opts: &Opts) -> Result<(), String> {
    init_eal(&opts.eal).map_err(|e| format!("EAL: {e}"))?;
    let port = Port::open(&PortOptions {
        device: opts.port.clone(),
        mempool_size: opts.mempool,
        ..PortOptions::default()
    })
    .map_err(|e| format!("port {}: {e}", opts.port))?;
    let mut dev = port
        .queue(0)
        .map_err(|e| format!("port {} queue 0: {e}", opts.port))?;
    let mac = port.mac();
    println!(
        "READY port {} ({}) mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        port.id(),
        opts.port,
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(opts.seconds);
    let interval = Duration::from_secs_f64(opts.interval);
    let first = port.stats();
    let (mut last, mut last_at) = (first, start);
    let idle_exit = opts.idle_exit.map(Duration::from_secs_f64);
    // When a frame was last seen arriving, checked every 256 rounds (None: none yet), and
    // whether one arrived since the last check.
    let mut last_rx: Option<Instant> = None;
    let mut seen = false;
    let mut rounds: u64 = 0;
    let ts = smoltcp::time::Instant::ZERO; // the device ignores the timestamp
    loop {
        // One round: up to a burst of frames, each sent back out, then one flush.
        let mut got = false;
        for _ in 0..BURST {
            let Some((rx, tx)) = dev.receive(ts) else {
                break;
            };
            rx.consume(|frame| tx.consume(frame.len(), |out| out.copy_from_slice(frame)));
            got = true;
        }
        dev.flush();
        seen |= got;
        rounds += 1;
        if rounds.is_multiple_of(256) {
            let now = Instant::now();
            if seen {
                last_rx = Some(now);
                seen = false;
            }
            let idle = match (idle_exit, last_rx) {
                (Some(limit), Some(at)) => now.duration_since(at) >= limit,
                _ => false,
            };
            if idle {
                let s = port.stats();
                report(
                    "interval",
                    &last,
                    &s,
                    now.duration_since(last_at).as_secs_f64(),
                );
                (last, last_at) = (s, now);
                println!("idle for {:.1} s: stopping", opts.idle_exit.unwrap_or(0.0));
                break;
            }
            if now.duration_since(last_at) >= interval || now >= end {
                let s = port.stats();
                report(
                    "interval",
                    &last,
                    &s,
                    now.duration_since(last_at).as_secs_f64(),
                );
                (last, last_at) = (s, now);
                if now >= end {
                    break;
                }
            }
        }
    }
    report(
        "total",
        &first,
        &last,
        last_at.duration_since(start).as_secs_f64(),
    );
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dpdk_fwd: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dpdk_fwd: {e}");
            ExitCode::FAILURE
        }
    }
}
