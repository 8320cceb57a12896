//! DPDK under the userspace stack: EAL set-up, ports, and a [`smoltcp::phy::Device`] over one
//! RX/TX queue pair (cargo feature `dpdk`).
//!
//! ```text
//!  UserspaceStack<DpdkDevice>   one per worker, PollMode::Busy, flush() once per round
//!  ───────────────────────────────────────────
//!  DpdkDevice     one queue pair (Send, not Sync): RX in bursts of 32, TX queued and sent
//!                 in bursts (at the end of each round, or when 32 are queued); with several
//!                 queues, frames owned by another queue's stack (userspace::steer) go to
//!                 that queue's inbox, and each device takes its inbox's frames too
//!  Port           Arc<PortInner>: configured and started at open, stopped and closed when
//!                 the Port and every DpdkDevice of it are gone; owns the mbuf pool
//!  init_eal       once per process; refuses to let EAL probe PCI devices on its own
//!  mosn-ffi       raw bindings + C shim (rx/tx burst, mbuf helpers, rte_errno)
//! ```
//!
//! # EAL policy
//!
//! [`init_eal`] refuses arguments that would let EAL probe the host's PCI devices: `--no-pci`
//! must be given, or the PCI devices named with `-a`/`--allow`. Memory: when at least
//! [`MIN_HUGEPAGE_MB`] of hugepages are free (`HugePages_Free` x `Hugepagesize` in
//! /proc/meminfo) and the arguments choose no memory mode, `--in-memory` is added (memfd-backed
//! hugepages, no hugetlbfs mount, no files in /var/run/dpdk); with less, `--no-huge -m 256
//! --no-shconf` is added (plain memory; `--no-shconf` keeps EAL from writing its shared config
//! files), with a warning. A few free pages are not taken: the default mbuf pool alone needs
//! about 20 MiB, and EAL would start and then fail the pool with ENOMEM. EAL pins the
//! thread that initialises it to its main lcore; `init_eal` restores that thread's CPU affinity
//! afterwards, so threads spawned later are not confined to one core.
//!
//! # Why `unsafe` is allowed in this module
//!
//! Everything DPDK offers is a C function over raw pointers: ports, queues, the mbuf pool and
//! the mbufs themselves. This module is the fence: it is the only place in mosn-net that
//! calls into `mosn-ffi`, and it turns those calls into owned values with safe interfaces.
//! The invariants the `unsafe` blocks rely on:
//! - an mbuf pointer is owned by exactly one place at a time (the RX batch, one token, or the
//!   TX queue) and is freed or handed to `rte_eth_tx_burst` exactly once;
//! - a queue pair is driven by one [`DpdkDevice`] at a time (claimed in [`Port::queue`],
//!   released on drop): DPDK's rx/tx burst functions are not thread-safe per queue;
//! - the port and its mbuf pool outlive every device ([`Arc`]); the pool's ring operations are
//!   multi-producer/multi-consumer safe, so devices on different threads share it;
//! - the EAL is initialised (checked in [`Port::open`]) before any other DPDK call;
//! - an mbuf in a queue's inbox is owned by the inbox until its device pops it; the port
//!   frees what is left in the inboxes before it frees the pool.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::ffi::{c_char, CString};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mosn_ffi as ffi;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::userspace::steer::{Steering, Verdict};
use crate::userspace::StackDevice;

/// Frames waiting in a queue's inbox at most (more are dropped: TCP retransmits).
const INBOX: usize = 1024;

/// An mbuf on its way from one queue's device to another's.
struct Steered(*mut ffi::rte_mbuf);

// SAFETY: the mbuf is owned by whoever holds the `Steered` (module invariants); mbufs may be
// used and freed on any thread.
unsafe impl Send for Steered {}

/// Frames fetched by one `rte_eth_rx_burst` and sent by one `rte_eth_tx_burst` at most.
pub const BURST: usize = 32;
/// Memory (MiB) given to EAL with `-m` when no hugepages are free and the args set none.
pub const NO_HUGE_MEMORY_MB: u32 = 256;

/// Free hugepage memory below which EAL runs on plain memory instead: room for the default
/// mbuf pool (8,191 mbufs of 2,176 bytes, ~20 MiB), EAL's own heap and the PMDs' rings.
pub const MIN_HUGEPAGE_MB: u64 = 128;

/// Ethernet header bytes on top of the MTU (no VLAN tag, no FCS: DPDK strips it).
const ETHER_HDR: usize = 14;

// ---------------------------------------------------------------------------------------
// EAL
// ---------------------------------------------------------------------------------------

enum EalState {
    Uninit,
    /// Initialised with these arguments (as the caller gave them).
    Ready(Vec<String>),
    /// `rte_eal_init` failed with these arguments: EAL cannot be initialised again.
    Failed(Vec<String>, String),
}

static EAL: Mutex<EalState> = Mutex::new(EalState::Uninit);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The signals DPDK's virtual PMDs raise per frame: `net_tap` asks the kernel for a signal
/// (SIGIO, or a realtime one set with `F_SETSIG`: signal 35 on Debian's 22.11) on every frame
/// queued to its fds, to skip empty reads. Delivered to whichever thread does not block it,
/// usually a sleeping one: a wake-up and a context switch per packet (~20 µs of CPU per
/// proxied HTTP request measured through mosn). [`block_pmd_signals`] in every thread but the
/// polling one (threads inherit the mask, so call it before they start) and
/// [`unblock_pmd_signals`] in the polling thread make the signal land on the thread that runs
/// anyway. mosn uses none of these signals itself. Since [`take_tap_trigger_signals`] net_tap
/// finds no free signal and asks for none; the masks stay for a PMD or DPDK build that still
/// raises one.
fn pmd_signals(how: nix::libc::c_int) {
    use nix::libc;
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset adds valid signal numbers to it;
    // pthread_sigmask reads it and changes only the calling thread's mask.
    let ret = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGIO);
        for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
            libc::sigaddset(set.as_mut_ptr(), sig);
        }
        libc::pthread_sigmask(how, set.as_ptr(), std::ptr::null_mut())
    };
    if ret != 0 {
        tracing::warn!(error = %io::Error::from_raw_os_error(ret), "DPDK: cannot change the PMD signal mask");
    }
}

/// Takes net_tap's "Rx trigger" signal away from it, so that it never asks for one.
///
/// net_tap looks for a signal no one handles yet (SIGIO before DPDK 21.x; since then the first
/// real-time signal from SIGRTMIN+1 whose handler is `SIG_DFL`), installs its own handler and
/// sets `O_ASYNC` on its queue fds: the kernel then signals the process for every frame queued
/// to the tap, so that an RX burst can skip the read when nothing arrived. Under load that is
/// an interrupt, a signal frame and a `rt_sigreturn` per received frame on the polling thread
/// (measured: 12 % of its CPU in `irqentry_exit_to_user_mode` alone, and one `rt_sigreturn`
/// per `readv`), more than the empty `readv` it saves once per poll round. When every
/// candidate signal has a handler, net_tap says "All rt-signals are in use" (or "Rx trigger
/// disabled" for SIGIO), leaves `O_ASYNC` off and reads on every burst. So before EAL starts,
/// each candidate that nobody handles gets a handler that does nothing; a signal mosn did not
/// ask for then costs nothing and kills nothing. A handler installed before (by an embedding
/// program) is left alone. Handlers, unlike ignored signals, do not survive an `exec`.
fn take_tap_trigger_signals() {
    use nix::libc;
    extern "C" fn nothing(_: libc::c_int) {}
    let candidates = std::iter::once(libc::SIGIO).chain((libc::SIGRTMIN() + 1)..libc::SIGRTMAX());
    let mut taken = 0u32;
    for sig in candidates {
        let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a null new action only reads the current one into `old`, which is valid
        // memory for a `sigaction` (zeroed, then written by the kernel on success).
        if unsafe { libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) } != 0 {
            continue;
        }
        // SAFETY: sigaction returned 0, so it filled `old`.
        if unsafe { old.assume_init() }.sa_sigaction != libc::SIG_DFL {
            continue;
        }
        // SAFETY: `action` is fully initialised (zeroed, then the handler, flags and an empty
        // mask set); `nothing` is an `extern "C"` function that touches no state, so it is
        // async-signal-safe.
        let ret = unsafe {
            let mut action = std::mem::zeroed::<libc::sigaction>();
            action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if ret == 0 {
            taken += 1;
        }
    }
    tracing::debug!(
        taken,
        "DPDK: took the signals net_tap would raise per frame"
    );
}

/// Blocks the PMDs' per-frame signals in the calling thread (and the threads it starts).
pub fn block_pmd_signals() {
    pmd_signals(nix::libc::SIG_BLOCK);
}

/// Takes the PMDs' per-frame signals in the calling thread (the polling one).
pub fn unblock_pmd_signals() {
    pmd_signals(nix::libc::SIG_UNBLOCK);
}

/// EAL init, once per process. `args` are EAL arguments (without argv\[0\]).
///
/// Refuses (an `InvalidInput` error) unless `--no-pci` is among them or PCI devices are named
/// explicitly with `-a`/`--allow`: EAL never probes the host NIC on its own. If hugepages are
/// free (at least [`MIN_HUGEPAGE_MB`]) and the args have neither `--no-huge` nor
/// `--in-memory`, `--in-memory` is added; otherwise `--no-huge -m 256 --no-shconf` (and a
/// warning). A second call returns `Ok`
/// if the args are the same as the first, an error otherwise.
pub fn init_eal(args: &[String]) -> io::Result<()> {
    let mut state = lock(&EAL);
    match &*state {
        EalState::Ready(prev) if prev.as_slice() == args => return Ok(()),
        EalState::Failed(prev, why) if prev.as_slice() == args => {
            return Err(io::Error::other(why.clone()))
        }
        EalState::Ready(prev) | EalState::Failed(prev, _) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "DPDK EAL was already initialised with other arguments ({prev:?}); it can be \
                     initialised once per process"
                ),
            ))
        }
        EalState::Uninit => {}
    }
    let (argv, warning) = eal_argv(args, hugepage_mb_free())?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    tracing::info!(args = ?argv, "DPDK EAL init");
    take_tap_trigger_signals();
    let result = eal_init_raw(&argv);
    *state = match &result {
        Ok(()) => EalState::Ready(args.to_vec()),
        Err(e) => EalState::Failed(args.to_vec(), e.to_string()),
    };
    result
}

/// Whether [`init_eal`] succeeded in this process.
pub fn eal_initialised() -> bool {
    matches!(*lock(&EAL), EalState::Ready(_))
}

/// The arguments EAL gets after the policy checks (without argv\[0\]), and a warning to log.
fn eal_argv(args: &[String], hugepage_mb_free: u64) -> io::Result<(Vec<String>, Option<String>)> {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let has_opt = |short: &str, long: &str| {
        args.iter().any(|a| {
            a == long
                || a.starts_with(&format!("{long}="))
                || (!short.is_empty() && a.starts_with(short))
        })
    };
    if !has("--no-pci") && !has_opt("-a", "--allow") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing DPDK EAL arguments {args:?}: without --no-pci (or PCI devices named \
                 with -a/--allow) EAL would probe the host's PCI devices, its own NIC included"
            ),
        ));
    }
    let mut argv = args.to_vec();
    let mut warning = None;
    let no_huge = has("--no-huge");
    if hugepage_mb_free >= MIN_HUGEPAGE_MB {
        if !no_huge && !has("--in-memory") {
            argv.push("--in-memory".into());
        }
    } else if !no_huge {
        let mut extra = vec!["--no-huge".to_owned()];
        if !has_opt("-m", "--socket-mem") {
            extra.push("-m".into());
            extra.push(NO_HUGE_MEMORY_MB.to_string());
        }
        // --in-memory is not compatible with --no-huge (EAL: "Option --legacy-mem is not
        // compatible with --in-memory"); --no-shconf keeps the no-files property.
        argv.retain(|a| a != "--in-memory");
        if !has("--no-shconf") {
            extra.push("--no-shconf".into());
        }
        warning = Some(format!(
            "DPDK: {hugepage_mb_free} MiB of hugepages free (HugePages_Free in /proc/meminfo), \
             less than the {MIN_HUGEPAGE_MB} MiB mosn needs: running EAL on plain memory with {} \
             (slower; reserve pages in /proc/sys/vm/nr_hugepages)",
            extra.join(" ")
        ));
        argv.extend(extra);
    }
    Ok((argv, warning))
}

/// Free hugepage memory in MiB (`HugePages_Free` x `Hugepagesize` of /proc/meminfo, pages of
/// the default size); 0 when unreadable.
fn hugepage_mb_free() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .map(|m| meminfo_hugepage_mb_free(&m))
        .unwrap_or(0)
}

fn meminfo_hugepage_mb_free(meminfo: &str) -> u64 {
    let field = |name: &str| {
        meminfo.lines().find_map(|l| {
            let v = l.strip_prefix(name)?.trim();
            v.trim_end_matches("kB").trim().parse::<u64>().ok()
        })
    };
    let pages = field("HugePages_Free:").unwrap_or(0);
    let page_kb = field("Hugepagesize:").unwrap_or(2048);
    pages.saturating_mul(page_kb) / 1024
}

/// The last DPDK error of this thread, as an `io::Error` saying what failed.
fn dpdk_error(what: impl std::fmt::Display, errnum: i32) -> io::Error {
    let errnum = errnum.abs();
    let msg = format!("{what}: {} (DPDK error {errnum})", ffi::strerror(errnum));
    let kind = match errnum {
        nix::libc::ENODEV => io::ErrorKind::NotFound,
        nix::libc::EINVAL => io::ErrorKind::InvalidInput,
        nix::libc::ENOMEM | nix::libc::ENOSPC => io::ErrorKind::OutOfMemory,
        nix::libc::ENOTSUP => io::ErrorKind::Unsupported,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, msg)
}

fn eal_init_raw(argv: &[String]) -> io::Result<()> {
    let mut owned = Vec::with_capacity(argv.len() + 1);
    for a in std::iter::once("mosn").chain(argv.iter().map(String::as_str)) {
        owned.push(CString::new(a).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("EAL argument {a:?} contains a NUL byte"),
            )
        })?);
    }
    // EAL may keep pointers into argv (and getopt permutes the array): both live forever.
    let strings: &'static mut [CString] = Vec::leak(owned);
    let ptrs: &'static mut [*mut c_char] = Vec::leak(
        strings
            .iter_mut()
            .map(|s| s.as_ptr().cast_mut())
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect(),
    );
    let argc = i32::try_from(strings.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many EAL arguments"))?;
    let affinity = thread_affinity();
    // SAFETY: argc/argv describe `argc` valid NUL-terminated strings followed by a null
    // pointer, all leaked above so that they outlive EAL; init is serialised by the EAL mutex
    // held by our caller and runs at most once per process (state recorded there).
    let ret = unsafe { ffi::rte_eal_init(argc, ptrs.as_mut_ptr()) };
    let err = ffi::errno();
    if let Some(set) = affinity {
        // EAL pinned this thread to its main lcore; threads spawned from it would inherit that.
        set_thread_affinity(&set);
    }
    if ret < 0 {
        return Err(dpdk_error(
            format!("DPDK EAL init with {argv:?} failed (see the EAL log above)"),
            err,
        ));
    }
    Ok(())
}

/// The calling thread's CPU set.
fn thread_affinity() -> Option<nix::libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data (all zeroes is an empty set).
    let mut set: nix::libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is a valid buffer of the size passed.
    let ret = unsafe {
        nix::libc::sched_getaffinity(0, std::mem::size_of::<nix::libc::cpu_set_t>(), &mut set)
    };
    (ret == 0).then_some(set)
}

fn set_thread_affinity(set: &nix::libc::cpu_set_t) {
    // SAFETY: pid 0 is the calling thread; `set` is a valid CPU set of the size passed.
    let ret = unsafe {
        nix::libc::sched_setaffinity(0, std::mem::size_of::<nix::libc::cpu_set_t>(), set)
    };
    if ret != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "DPDK: cannot restore the CPU affinity after EAL init");
    }
}

// ---------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------

/// How to bring a port up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOptions {
    /// An ethdev name (a vdev given to EAL, like `net_tap0` or `net_af_packet0`) or a port
    /// number (`"0"`).
    pub device: String,
    /// RX/TX queue pairs (one per worker).
    pub queues: u16,
    /// Mbufs in the port's pool (shared by its queues). `2^n - 1` suits DPDK's ring best.
    pub mempool_size: u32,
    /// IP MTU of the port (the Ethernet frame is 14 bytes more).
    pub mtu: u16,
    /// RX descriptors per queue (adjusted to the device's limits).
    pub rx_desc: u16,
    /// TX descriptors per queue (adjusted to the device's limits).
    pub tx_desc: u16,
    /// Configure RX queue interrupts, so that a worker can sleep on
    /// [`DpdkDevice::rx_interrupt`] instead of polling (the PMD must support them).
    pub rx_interrupts: bool,
}

impl Default for PortOptions {
    fn default() -> Self {
        PortOptions {
            device: String::new(),
            queues: 1,
            mempool_size: 8191,
            mtu: 1500,
            rx_desc: 1024,
            tx_desc: 1024,
            rx_interrupts: false,
        }
    }
}

/// Port counters (`rte_eth_stats_get`), plus frames this process dropped before DPDK saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the device dropped on receive: RX ring full (`imissed`) or no mbuf (`rx_nombuf`).
    pub rx_dropped: u64,
    /// Erroneous frames received (`ierrors`).
    pub rx_errors: u64,
    /// Frames the device failed to send (`oerrors`).
    pub tx_errors: u64,
    /// Frames the stack produced that were dropped before DPDK: no free mbuf, or the TX queue
    /// still full after a burst.
    pub tx_dropped: u64,
    /// Frames a queue received for another queue's stack and handed over (several queues).
    pub steered: u64,
    /// Frames dropped on the way to another queue: its inbox was full, or no mbuf for a copy.
    pub steer_dropped: u64,
}

/// Ports opened in this process (a port is configured by one `Port` at a time).
static OPEN_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

struct PortInner {
    id: u16,
    name: String,
    pool: *mut ffi::rte_mempool,
    /// One flag per queue pair: taken by a live `DpdkDevice`.
    claimed: Box<[AtomicBool]>,
    mac: [u8; 6],
    mtu: u16,
    tx_dropped: AtomicU64,
    /// Promiscuous mode was switched on at open (and is switched off at close).
    promiscuous: bool,
    /// Which queue's stack owns a frame (several queues only).
    steering: Steering,
    /// One inbox per queue: frames another queue received for this one's stack (empty with
    /// one queue).
    inboxes: Box<[crossbeam_queue::ArrayQueue<Steered>]>,
    /// One per queue: raised after a frame lands in its inbox, so that a worker asleep on its
    /// RX interrupt ([`RxInterrupt::arrived`]) wakes for frames another queue received.
    inbox_bells: Box<[tokio::sync::Notify]>,
    /// Frames handed to another queue's inbox, and frames dropped because it was full.
    steered: AtomicU64,
    steer_dropped: AtomicU64,
}

// SAFETY: `pool` is only read (its address is passed to DPDK); the mempool's get/put are
// multi-producer/multi-consumer safe (ring_mp_mc), and the pool is freed only in Drop, when
// no device holds the Arc any more. Queue access is serialised by `claimed`.
unsafe impl Send for PortInner {}
// SAFETY: as above; every other field is immutable or atomic.
unsafe impl Sync for PortInner {}

impl Drop for PortInner {
    fn drop(&mut self) {
        // Promiscuous mode is switched off first: PMDs over kernel interfaces (af_packet, tap)
        // set IFF_PROMISC on the interface, and closing the port leaves the flag as it is.
        // SAFETY: the port was started by `Port::open` and no DpdkDevice is left (each holds
        // the Arc), so nobody polls its queues. Promiscuous-disable, stop and close fail only
        // for an invalid port, which cannot happen here; stop and close are logged, not
        // unwrapped.
        let (stop, close) = unsafe {
            if self.promiscuous {
                ffi::rte_eth_promiscuous_disable(self.id);
            }
            (
                ffi::rte_eth_dev_stop(self.id),
                ffi::rte_eth_dev_close(self.id),
            )
        };
        if stop < 0 || close < 0 {
            tracing::debug!(
                port = self.id,
                stop,
                close,
                "DPDK: port stop/close reported an error"
            );
        }
        for inbox in self.inboxes.iter() {
            while let Some(Steered(m)) = inbox.pop() {
                // SAFETY: the inbox owned the mbuf; nobody else can pop it any more.
                unsafe { ffi::shim_pktmbuf_free(m) };
            }
        }
        // SAFETY: the port is closed, so its queues hold no mbuf from the pool any more, every
        // device (the only other users of the pool) is gone, and the inboxes are empty.
        unsafe { ffi::rte_mempool_free(self.pool) };
        if let Some(open) = lock(&OPEN_PORTS).as_mut() {
            open.remove(&self.id);
        }
        tracing::info!(port = self.id, name = %self.name, "DPDK port closed");
    }
}

/// A started DPDK port. `Send + Sync`; hand its queues to workers with [`Port::queue`].
/// Stopped and closed when the `Port` and every [`DpdkDevice`] made from it are dropped.
pub struct Port {
    inner: Arc<PortInner>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("queues", &self.inner.claimed.len())
            .field("mtu", &self.inner.mtu)
            .finish()
    }
}

/// Releases the port claim and frees the pool when `open` fails half-way.
struct OpenGuard {
    id: u16,
    pool: *mut ffi::rte_mempool,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if !self.pool.is_null() {
            // SAFETY: the port was not started, so no queue holds mbufs of the pool; freeing
            // a pool that was never attached to a started port is allowed.
            unsafe { ffi::rte_mempool_free(self.pool) };
        }
        if let Some(open) = lock(&OPEN_PORTS).as_mut() {
            open.remove(&self.id);
        }
    }
}

fn resolve_port(device: &str) -> io::Result<u16> {
    if !device.is_empty() && device.bytes().all(|b| b.is_ascii_digit()) {
        let id: u16 = device.parse().map_err(|_| {
            io::Error::new(io::ErrorKind::NotFound, format!("no DPDK port {device}"))
        })?;
        // SAFETY: a plain query on an initialised EAL.
        if unsafe { ffi::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no DPDK port {id} (ports available: {})", available_ports()),
            ));
        }
        return Ok(id);
    }
    let name = CString::new(device).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "DPDK device name contains a NUL byte",
        )
    })?;
    let mut id = 0u16;
    // SAFETY: `name` is a valid C string for the duration of the call; `id` is a valid
    // out-pointer.
    let ret = unsafe { ffi::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut id) };
    if ret < 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "unknown DPDK device {device:?}: no such ethdev (a vdev must be given to EAL with \
                 --vdev, and its probe must have succeeded; ports available: {})",
                available_ports()
            ),
        ));
    }
    Ok(id)
}

fn available_ports() -> String {
    // SAFETY: a plain query on an initialised EAL.
    let n = unsafe { ffi::rte_eth_dev_count_avail() };
    n.to_string()
}

impl Port {
    /// Configures and starts a port: `opts.queues` RX/TX queue pairs with one mbuf pool,
    /// MTU `opts.mtu`, promiscuous mode. Needs [`init_eal`] first.
    pub fn open(opts: &PortOptions) -> io::Result<Port> {
        if !eal_initialised() {
            return Err(io::Error::other(
                "DPDK EAL is not initialised: call init_eal first",
            ));
        }
        if opts.queues == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a DPDK port needs at least one queue",
            ));
        }
        let id = resolve_port(&opts.device)?;
        if !lock(&OPEN_PORTS)
            .get_or_insert_with(HashSet::new)
            .insert(id)
        {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("DPDK port {id} ({:?}) is already open", opts.device),
            ));
        }
        let mut guard = OpenGuard {
            id,
            pool: std::ptr::null_mut(),
        };
        let what = |step: &str| format!("DPDK port {id} ({:?}): {step}", opts.device);

        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: `info` is a valid out-pointer of the right type.
        let ret = unsafe { ffi::rte_eth_dev_info_get(id, &mut info) };
        if ret < 0 {
            return Err(dpdk_error(what("device info"), ret));
        }
        let max_queues = info.max_rx_queues.min(info.max_tx_queues);
        if opts.queues > max_queues {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                what(&format!(
                    "{} queues asked, the device has at most {max_queues}",
                    opts.queues
                )),
            ));
        }
        if u32::from(opts.mtu) < u32::from(info.min_mtu)
            || u32::from(opts.mtu) > u32::from(info.max_mtu)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                what(&format!(
                    "MTU {} outside the device's range {}..={}",
                    opts.mtu, info.min_mtu, info.max_mtu
                )),
            ));
        }
        let needed = u64::from(opts.queues) * (u64::from(opts.rx_desc) + u64::from(opts.tx_desc));
        if u64::from(opts.mempool_size) < needed {
            tracing::warn!(
                port = id,
                mempool = opts.mempool_size,
                needed,
                "DPDK: the mbuf pool is smaller than the descriptor rings it must fill"
            );
        }

        // SAFETY: a plain query.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let pool_name = CString::new(format!("mosn_port{id}")).map_err(io::Error::other)?;
        // Room for one whole frame per mbuf (no scatter): the default 2048 bytes unless the
        // MTU needs more.
        let data_room = (ffi::RTE_PKTMBUF_HEADROOM as usize
            + (ffi::RTE_MBUF_DEFAULT_DATAROOM as usize).max(usize::from(opts.mtu) + ETHER_HDR + 4))
        .min(usize::from(u16::MAX));
        let cache = opts.mempool_size.saturating_div(2).min(256);
        // SAFETY: `pool_name` is a valid C string; the numbers are in range (data_room fits in
        // u16, cache <= size/2 <= RTE_MEMPOOL_CACHE_MAX_SIZE).
        let pool = unsafe {
            ffi::rte_pktmbuf_pool_create(
                pool_name.as_ptr(),
                opts.mempool_size,
                cache,
                0,
                data_room as u16,
                socket,
            )
        };
        if pool.is_null() {
            return Err(dpdk_error(
                what(&format!(
                    "cannot create a pool of {} mbufs",
                    opts.mempool_size
                )),
                ffi::errno(),
            ));
        }
        guard.pool = pool;

        let (mut nb_rx, mut nb_tx) = (opts.rx_desc, opts.tx_desc);
        // SAFETY: valid out-pointers.
        let ret = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nb_rx, &mut nb_tx) };
        if ret < 0 {
            return Err(dpdk_error(what("descriptor counts"), ret));
        }
        let mut conf = ffi::rte_eth_conf::default();
        conf.rxmode.mtu = u32::from(opts.mtu);
        if opts.rx_interrupts {
            conf.intr_conf.set_rxq(1);
        }
        // SAFETY: `conf` is a valid, zero-initialised configuration with the MTU (and maybe
        // the RX interrupt bit) set.
        let ret = unsafe { ffi::rte_eth_dev_configure(id, opts.queues, opts.queues, &conf) };
        if ret < 0 {
            let step = if opts.rx_interrupts {
                "configure with RX interrupts (does the PMD support them? poll_mode busy does \
                 without)"
            } else {
                "configure"
            };
            return Err(dpdk_error(what(step), ret));
        }
        // SOCKET_ID_ANY (-1) becomes u32::MAX, as in C.
        let queue_socket = socket as u32;
        for q in 0..opts.queues {
            // SAFETY: the port is configured with `opts.queues` queues; a null rx_conf/tx_conf
            // selects the driver's defaults; `pool` is a valid mbuf pool.
            let ret = unsafe {
                ffi::rte_eth_rx_queue_setup(id, q, nb_rx, queue_socket, std::ptr::null(), pool)
            };
            if ret < 0 {
                return Err(dpdk_error(what(&format!("RX queue {q} setup")), ret));
            }
            // SAFETY: as above.
            let ret = unsafe {
                ffi::rte_eth_tx_queue_setup(id, q, nb_tx, queue_socket, std::ptr::null())
            };
            if ret < 0 {
                return Err(dpdk_error(what(&format!("TX queue {q} setup")), ret));
            }
        }
        // SAFETY: the port is configured and its queues are set up.
        let ret = unsafe { ffi::rte_eth_dev_start(id) };
        if ret < 0 {
            return Err(dpdk_error(what("start"), ret));
        }
        // From here on PortInner's Drop stops and closes the port and frees the pool.
        std::mem::forget(guard);
        let mut inner = PortInner {
            id,
            name: opts.device.clone(),
            pool,
            claimed: (0..opts.queues).map(|_| AtomicBool::new(false)).collect(),
            mac: [0; 6],
            mtu: opts.mtu,
            tx_dropped: AtomicU64::new(0),
            promiscuous: false,
            steering: Steering::new(opts.queues),
            inboxes: if opts.queues > 1 {
                (0..opts.queues)
                    .map(|_| crossbeam_queue::ArrayQueue::new(INBOX))
                    .collect()
            } else {
                Box::new([])
            },
            inbox_bells: if opts.queues > 1 && opts.rx_interrupts {
                (0..opts.queues)
                    .map(|_| tokio::sync::Notify::new())
                    .collect()
            } else {
                Box::new([])
            },
            steered: AtomicU64::new(0),
            steer_dropped: AtomicU64::new(0),
        };
        // SAFETY: the port is started.
        let ret = unsafe { ffi::rte_eth_promiscuous_enable(id) };
        if ret < 0 {
            tracing::debug!(port = id, error = %ffi::strerror(-ret), "DPDK: promiscuous mode not enabled");
        }
        inner.promiscuous = ret == 0;
        let mut addr = ffi::rte_ether_addr::default();
        // SAFETY: `addr` is a valid out-pointer.
        let ret = unsafe { ffi::rte_eth_macaddr_get(id, &mut addr) };
        if ret < 0 {
            return Err(dpdk_error(what("MAC address"), ret));
        }
        inner.mac = addr.addr_bytes;
        let mut mtu = 0u16;
        // SAFETY: `mtu` is a valid out-pointer.
        if unsafe { ffi::rte_eth_dev_get_mtu(id, &mut mtu) } == 0 && mtu != 0 {
            inner.mtu = mtu;
        }
        tracing::info!(
            port = id, name = %opts.device, queues = opts.queues, rx_desc = nb_rx, tx_desc = nb_tx,
            mtu = inner.mtu, mac = ?inner.mac, "DPDK port started"
        );
        Ok(Port {
            inner: Arc::new(inner),
        })
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.inner.mac
    }

    /// The DPDK port number.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// The port's MTU (IP bytes per frame).
    pub fn mtu(&self) -> u16 {
        self.inner.mtu
    }

    /// Queue pairs the port was configured with.
    pub fn queues(&self) -> u16 {
        // The count came from a u16.
        u16::try_from(self.inner.claimed.len()).unwrap_or(u16::MAX)
    }

    /// The device of queue pair `q`, for one worker. Fails if `q` is out of range or the
    /// queue is already driven by another live `DpdkDevice`.
    pub fn queue(&self, q: u16) -> io::Result<DpdkDevice> {
        let Some(flag) = self.inner.claimed.get(usize::from(q)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "DPDK port {} ({}): queue {q} out of range (the port has {} queues)",
                    self.inner.id,
                    self.inner.name,
                    self.inner.claimed.len()
                ),
            ));
        };
        if flag.swap(true, Ordering::AcqRel) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "DPDK port {} ({}): queue {q} is already in use",
                    self.inner.id, self.inner.name
                ),
            ));
        }
        let frame = usize::from(self.inner.mtu) + ETHER_HDR;
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = frame;
        caps.max_burst_size = Some(BURST);
        // Checksums stay in software both ways (smoltcp's default): virtual PMDs offer no
        // offload, and a kernel peer on a veth must run with `ethtool -K <veth> tx off` so that
        // it sends finished checksums (ACCELERATION.md §4).
        Ok(DpdkDevice {
            port: Arc::clone(&self.inner),
            queue: q,
            rx: [std::ptr::null_mut(); BURST],
            rx_next: 0,
            rx_len: 0,
            tx: TxQueue {
                port: self.inner.id,
                queue: q,
                mbufs: Vec::with_capacity(BURST),
            },
            rx_scratch: Vec::new(),
            tx_scratch: vec![0; frame],
            caps,
        })
    }

    /// Counters of the port (all queues).
    pub fn stats(&self) -> PortStats {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: `s` is a valid out-pointer; the port is started.
        let ret = unsafe { ffi::rte_eth_stats_get(self.inner.id, &mut s) };
        if ret < 0 {
            tracing::debug!(port = self.inner.id, error = %ffi::strerror(-ret), "DPDK: no port stats");
        }
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_dropped: s.imissed + s.rx_nombuf,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            tx_dropped: self.inner.tx_dropped.load(Ordering::Relaxed),
            steered: self.inner.steered.load(Ordering::Relaxed),
            steer_dropped: self.inner.steer_dropped.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The device
// ---------------------------------------------------------------------------------------

/// Mbufs waiting for `rte_eth_tx_burst`, oldest first.
struct TxQueue {
    port: u16,
    queue: u16,
    mbufs: Vec<*mut ffi::rte_mbuf>,
}

impl TxQueue {
    /// Sends what the NIC takes; the rest stays queued, in order, for the next burst.
    fn flush(&mut self) {
        if self.mbufs.is_empty() {
            return;
        }
        let n = u16::try_from(self.mbufs.len()).unwrap_or(u16::MAX);
        // SAFETY: the queue pair is owned by this device (claimed); `mbufs` holds `n` valid
        // mbufs owned by us. tx_burst takes ownership of the first `sent` of them.
        let sent = unsafe { ffi::shim_tx_burst(self.port, self.queue, self.mbufs.as_mut_ptr(), n) };
        self.mbufs.drain(..usize::from(sent).min(self.mbufs.len()));
    }
}

/// One RX/TX queue pair of a [`Port`] as a smoltcp device (`Medium::Ethernet`).
///
/// `Send` (move it to the worker that runs the stack), not `Sync`. Receive pulls bursts of
/// [`BURST`] frames and hands them out one at a time; transmitted frames are queued and sent
/// in one burst by [`StackDevice::flush`] (once per stack round), when [`BURST`] are queued,
/// and before each receive burst. The port stays up while any of its devices lives.
pub struct DpdkDevice {
    port: Arc<PortInner>,
    queue: u16,
    /// The current receive burst: `rx[rx_next..rx_len]` are ours, not yet handed out.
    rx: [*mut ffi::rte_mbuf; BURST],
    rx_next: usize,
    rx_len: usize,
    tx: TxQueue,
    /// Linearises a multi-segment frame for smoltcp (rare: frames fit one mbuf).
    rx_scratch: Vec<u8>,
    /// Where smoltcp writes a frame that cannot go out (no mbuf); the frame is dropped.
    tx_scratch: Vec<u8>,
    caps: DeviceCapabilities,
}

// SAFETY: the device owns its queue pair exclusively (claimed in Port::queue) and every mbuf
// it points to; the pool and port are shared through a Sync Arc. Nothing ties it to the
// thread that made it: DPDK allows any thread (EAL or not) to drive a queue, one at a time.
// It is not Sync (raw pointers), so two threads never use it at once.
unsafe impl Send for DpdkDevice {}

impl std::fmt::Debug for DpdkDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkDevice")
            .field("port", &self.port.id)
            .field("queue", &self.queue)
            .field("rx_pending", &(self.rx_len - self.rx_next))
            .field("tx_queued", &self.tx.mbufs.len())
            .finish()
    }
}

impl DpdkDevice {
    /// The port number.
    pub fn port_id(&self) -> u16 {
        self.port.id
    }

    /// The queue pair index.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.port.mac
    }

    /// This queue's RX interrupt (the port opened with [`PortOptions::rx_interrupts`]),
    /// enabled and registered with the current tokio runtime's reactor: await
    /// [`RxInterrupt::arrived`] to sleep until frames come. Call it on the worker's runtime.
    pub fn rx_interrupt(&self) -> io::Result<RxInterrupt> {
        let what = |step: &str| format!("DPDK port {} queue {}: {step}", self.port.id, self.queue);
        // SAFETY: plain calls on a started port and a queue this device owns.
        let fd = unsafe { ffi::rte_eth_dev_rx_intr_ctl_q_get_fd(self.port.id, self.queue) };
        if fd < 0 {
            return Err(dpdk_error(what("no RX interrupt fd"), ffi::errno()));
        }
        // SAFETY: as above.
        let ret = unsafe { ffi::rte_eth_dev_rx_intr_enable(self.port.id, self.queue) };
        // ENOTSUP: the PMD has no switch because its fd is always armed (net_tap hands out
        // the queue's tap fd itself).
        if ret < 0 && -ret != nix::libc::ENOTSUP {
            return Err(dpdk_error(what("RX interrupt enable"), ret));
        }
        // SAFETY: the fd is the PMD's and stays open while the port is; the RxInterrupt holds
        // the port (so it cannot close) and deregisters the fd before it lets go of it
        // (field order), and never reads or closes it.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                InterruptFd(fd),
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(|e| io::Error::other(what(&format!("watching the RX interrupt fd: {e}"))))?;
        Ok(RxInterrupt {
            fd,
            queue: self.queue,
            port: Arc::clone(&self.port),
        })
    }

    fn next_rx(&mut self) -> Option<*mut ffi::rte_mbuf> {
        if self.port.inboxes.is_empty() {
            return self.next_burst();
        }
        // Several queues: what the others steered here first, then our own burst, keeping
        // only the frames our stack owns.
        let here = self.queue;
        if let Some(Steered(m)) = self
            .port
            .inboxes
            .get(usize::from(here))
            .and_then(|inbox| inbox.pop())
        {
            return Some(m);
        }
        loop {
            let m = self.next_burst()?;
            // SAFETY: `m` is a received mbuf owned here; the slice is read before it moves.
            let verdict = self
                .port
                .steering
                .verdict(unsafe { first_segment(m) }, here);
            match verdict {
                Verdict::Here => return Some(m),
                Verdict::To(q) => self.hand_over(m, q),
                Verdict::All => {
                    for q in (0..self.port.steering.queues()).filter(|q| *q != here) {
                        // SAFETY: `m` stays owned here; the copy is a fresh mbuf of ours.
                        match unsafe { copy_mbuf(m, self.port.pool) } {
                            Some(c) => self.hand_over(c, q),
                            None => {
                                self.port.steer_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    return Some(m);
                }
            }
        }
    }

    /// Gives `m` (owned here) to queue `q`'s inbox, or frees it when the inbox is full.
    fn hand_over(&self, m: *mut ffi::rte_mbuf, q: u16) {
        let refused = match self.port.inboxes.get(usize::from(q)) {
            Some(inbox) => inbox.push(Steered(m)).err().map(|Steered(m)| m),
            None => Some(m),
        };
        match refused {
            None => {
                self.port.steered.fetch_add(1, Ordering::Relaxed);
                if let Some(bell) = self.port.inbox_bells.get(usize::from(q)) {
                    // A stored permit when the owner is awake; a wake-up when it sleeps.
                    bell.notify_one();
                }
            }
            Some(m) => {
                self.port.steer_dropped.fetch_add(1, Ordering::Relaxed);
                // SAFETY: not handed over, so the mbuf is still ours; freed once.
                unsafe { ffi::shim_pktmbuf_free(m) };
            }
        }
    }

    fn next_burst(&mut self) -> Option<*mut ffi::rte_mbuf> {
        if self.rx_next == self.rx_len {
            // Whatever a previous round left queued goes first (a device under a wrapper
            // that does not forward flush() still sends).
            self.tx.flush();
            // SAFETY: the queue pair is ours; `rx` has room for BURST mbuf pointers, and the
            // previous burst was fully handed out (rx_next == rx_len).
            let n = unsafe {
                ffi::shim_rx_burst(self.port.id, self.queue, self.rx.as_mut_ptr(), BURST as u16)
            };
            self.rx_next = 0;
            self.rx_len = usize::from(n).min(BURST);
            if self.rx_len == 0 {
                return None;
            }
        }
        let m = self.rx[self.rx_next];
        self.rx_next += 1;
        Some(m)
    }
}

/// A queue's RX interrupt fd (the PMD's: watched, never read or closed here).
struct InterruptFd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for InterruptFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// The RX interrupt of one queue, from [`DpdkDevice::rx_interrupt`]. Not `Send`: it lives on
/// the worker whose reactor watches it.
pub struct RxInterrupt {
    /// First: deregistered before the port can close.
    fd: tokio::io::unix::AsyncFd<InterruptFd>,
    queue: u16,
    port: Arc<PortInner>,
}

impl std::fmt::Debug for RxInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxInterrupt")
            .field("fd", &self.fd.get_ref().0)
            .finish()
    }
}

impl RxInterrupt {
    /// Waits until frames arrive on the queue: the next edge of its fd (tokio's epoll is
    /// edge-triggered, so frames that were there before the last wait do not count again;
    /// the stack polls the queue until its rounds go quiet anyway), or, with several queues,
    /// a frame another queue put in this one's inbox.
    pub async fn arrived(&self) -> io::Result<()> {
        let bell = self.port.inbox_bells.get(usize::from(self.queue));
        let rung = async {
            match bell {
                Some(bell) => bell.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ready = self.fd.readable() => {
                ready?.clear_ready();
            }
            () = rung => {}
        }
        Ok(())
    }
}

/// The bytes of `m`'s first segment (the headers steering reads).
///
/// # Safety
/// `m` must be a valid mbuf that outlives the returned slice and is not written meanwhile.
unsafe fn first_segment<'a>(m: *mut ffi::rte_mbuf) -> &'a [u8] {
    // SAFETY: per the contract, `data_len` initialised bytes are at mtod.
    unsafe {
        std::slice::from_raw_parts(
            ffi::shim_pktmbuf_mtod(m).cast::<u8>(),
            usize::from(ffi::shim_pktmbuf_data_len(m)),
        )
    }
}

/// A one-segment copy of `m`'s first segment from `pool` (ARP frames: one segment), `None`
/// when the pool is empty.
///
/// # Safety
/// `m` must be a valid mbuf and `pool` a valid mbuf pool.
unsafe fn copy_mbuf(
    m: *mut ffi::rte_mbuf,
    pool: *mut ffi::rte_mempool,
) -> Option<*mut ffi::rte_mbuf> {
    // SAFETY: per the contract.
    let (src, c) = unsafe { (first_segment(m), ffi::shim_pktmbuf_alloc(pool)) };
    if c.is_null() {
        return None;
    }
    // SAFETY: `c` is a fresh mbuf of ours; append reserves `len` bytes or returns null.
    let data = u16::try_from(src.len())
        .ok()
        .map(|l| unsafe { ffi::shim_pktmbuf_append(c, l) })
        .filter(|d| !d.is_null());
    let Some(data) = data else {
        // SAFETY: ours, never queued.
        unsafe { ffi::shim_pktmbuf_free(c) };
        return None;
    };
    // SAFETY: `data` has room for `src.len()` bytes in `c`, which does not overlap `m`.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), data.cast::<u8>(), src.len()) };
    Some(c)
}

impl Drop for DpdkDevice {
    fn drop(&mut self) {
        self.tx.flush();
        if let Some(inbox) = self.port.inboxes.get(usize::from(self.queue)) {
            while let Some(Steered(m)) = inbox.pop() {
                // SAFETY: popped from our inbox: ours, freed once.
                unsafe { ffi::shim_pktmbuf_free(m) };
            }
        }
        for m in self
            .tx
            .mbufs
            .drain(..)
            .chain(self.rx[self.rx_next..self.rx_len].iter().copied())
        {
            // SAFETY: these mbufs are ours (queued or received, never handed out) and freed
            // once here.
            unsafe { ffi::shim_pktmbuf_free(m) };
        }
        self.rx_len = 0;
        self.rx_next = 0;
        if let Some(flag) = self.port.claimed.get(usize::from(self.queue)) {
            flag.store(false, Ordering::Release);
        }
    }
}

/// A received frame; the mbuf is freed when the token is consumed or dropped.
pub struct DpdkRxToken<'a> {
    mbuf: *mut ffi::rte_mbuf,
    scratch: &'a mut Vec<u8>,
}

impl Drop for DpdkRxToken<'_> {
    fn drop(&mut self) {
        // SAFETY: the token owns the mbuf (taken out of the RX burst) and frees it once.
        unsafe { ffi::shim_pktmbuf_free(self.mbuf) };
    }
}

impl phy::RxToken for DpdkRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let m = self.mbuf;
        // SAFETY: `m` is a valid received mbuf owned by this token.
        let contiguous = unsafe { ffi::shim_pktmbuf_is_contiguous(m) } != 0;
        if contiguous {
            // SAFETY: a one-segment mbuf holds `data_len` initialised bytes at mtod; the slice
            // lives only for `f`, before the token (and the mbuf) is dropped.
            let frame = unsafe {
                std::slice::from_raw_parts(
                    ffi::shim_pktmbuf_mtod(m).cast::<u8>(),
                    usize::from(ffi::shim_pktmbuf_data_len(m)),
                )
            };
            return f(frame);
        }
        // SAFETY: as above, a plain read of the mbuf header.
        let len = unsafe { ffi::shim_pktmbuf_pkt_len(m) };
        self.scratch.resize(len as usize, 0);
        // SAFETY: `scratch` has room for `len` bytes; rte_pktmbuf_read copies the segments
        // into it (or returns a pointer into the mbuf when they are contiguous after all), and
        // returns null only if `len` exceeds the packet, which it does not.
        let p = unsafe { ffi::shim_pktmbuf_read(m, 0, len, self.scratch.as_mut_ptr().cast()) };
        if p.is_null() {
            return f(&[]);
        }
        // SAFETY: `p` points to `len` initialised bytes (scratch or the mbuf), valid for `f`.
        let frame = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) };
        f(frame)
    }
}

/// Room for one frame to send: an mbuf is taken from the pool when smoltcp fills it.
pub struct DpdkTxToken<'a> {
    pool: *mut ffi::rte_mempool,
    tx: &'a mut TxQueue,
    scratch: &'a mut Vec<u8>,
    dropped: &'a AtomicU64,
}

impl phy::TxToken for DpdkTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        if self.tx.mbufs.len() >= BURST {
            self.tx.flush();
        }
        let mbuf = if self.tx.mbufs.len() >= BURST {
            // The NIC's TX ring is full: nothing can go out now.
            std::ptr::null_mut()
        } else {
            // SAFETY: `pool` is the port's valid mbuf pool (alive while the device holds the
            // port's Arc).
            unsafe { ffi::shim_pktmbuf_alloc(self.pool) }
        };
        if !mbuf.is_null() {
            let data = match u16::try_from(len) {
                // SAFETY: `mbuf` is a fresh mbuf owned here; append returns null when `len`
                // exceeds its tailroom.
                Ok(l) => unsafe { ffi::shim_pktmbuf_append(mbuf, l) },
                Err(_) => std::ptr::null_mut(),
            };
            if !data.is_null() {
                // SAFETY: append reserved `len` bytes at `data` inside the mbuf, which nobody
                // else references until it is queued below.
                let frame = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) };
                let r = f(frame);
                self.tx.mbufs.push(mbuf);
                if self.tx.mbufs.len() >= BURST {
                    self.tx.flush();
                }
                return r;
            }
            // SAFETY: the mbuf is ours and was never queued.
            unsafe { ffi::shim_pktmbuf_free(mbuf) };
        }
        // No mbuf (pool empty, ring full or an oversized frame): let smoltcp write the frame
        // somewhere and drop it; TCP retransmits.
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        f(&mut self.scratch[..len])
    }
}

impl phy::Device for DpdkDevice {
    type RxToken<'a>
        = DpdkRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = DpdkTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let mbuf = self.next_rx()?;
        Some((
            DpdkRxToken {
                mbuf,
                scratch: &mut self.rx_scratch,
            },
            DpdkTxToken {
                pool: self.port.pool,
                tx: &mut self.tx,
                scratch: &mut self.tx_scratch,
                dropped: &self.port.tx_dropped,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.tx.mbufs.len() >= BURST {
            self.tx.flush();
            if self.tx.mbufs.len() >= BURST {
                // Back-pressure: the NIC takes nothing now; smoltcp keeps the data.
                return None;
            }
        }
        Some(DpdkTxToken {
            pool: self.port.pool,
            tx: &mut self.tx,
            scratch: &mut self.tx_scratch,
            dropped: &self.port.tx_dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}

impl StackDevice for DpdkDevice {
    fn flush(&mut self) {
        self.tx.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn refuses_pci_probing() {
        for bad in [
            &["--vdev", "net_tap0"][..],
            &[],
            &["-l", "0", "--in-memory"],
        ] {
            let err = eal_argv(&args(bad), 10).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("--no-pci"), "{err}");
        }
        for ok in [
            &["--no-pci"][..],
            &["-a", "0000:00:04.0"],
            &["-a0000:00:04.0"],
            &["--allow=0000:00:04.0"],
            &["--allow", "0000:00:04.0"],
        ] {
            eal_argv(&args(ok), 10).unwrap();
        }
    }

    #[test]
    fn memory_mode_follows_hugepages() {
        let (argv, warn) = eal_argv(&args(&["--no-pci"]), 512).unwrap();
        assert_eq!(argv, args(&["--no-pci", "--in-memory"]));
        assert!(warn.is_none());
        // The caller's own choice is kept.
        let (argv, _) = eal_argv(&args(&["--no-pci", "--no-huge", "-m", "64"]), 512).unwrap();
        assert_eq!(argv, args(&["--no-pci", "--no-huge", "-m", "64"]));
        let (argv, _) = eal_argv(&args(&["--no-pci", "--in-memory"]), 512).unwrap();
        assert_eq!(argv, args(&["--no-pci", "--in-memory"]));

        for free in [0, 16, MIN_HUGEPAGE_MB - 1] {
            let (argv, warn) = eal_argv(&args(&["--no-pci"]), free).unwrap();
            assert_eq!(
                argv,
                args(&["--no-pci", "--no-huge", "-m", "256", "--no-shconf"]),
                "{free} MiB free"
            );
            let warn = warn.unwrap();
            assert!(warn.contains("HugePages_Free"), "{warn}");
            assert!(warn.contains(&format!("{free} MiB")), "{warn}");
        }
        let (argv, _) = eal_argv(&args(&["--no-pci"]), MIN_HUGEPAGE_MB).unwrap();
        assert_eq!(argv, args(&["--no-pci", "--in-memory"]));
        // --in-memory cannot run without hugepages; -m given is kept.
        let (argv, _) = eal_argv(&args(&["--no-pci", "--in-memory", "-m", "128"]), 0).unwrap();
        assert_eq!(
            argv,
            args(&["--no-pci", "-m", "128", "--no-huge", "--no-shconf"])
        );
        let (argv, warn) = eal_argv(&args(&["--no-pci", "--no-huge"]), 0).unwrap();
        assert_eq!(argv, args(&["--no-pci", "--no-huge"]));
        assert!(warn.is_none());
    }

    #[test]
    fn hugepage_memory_from_meminfo() {
        let m = "MemTotal: 24000000 kB\nHugePages_Total:      64\nHugePages_Free:        8\n\
                 HugePages_Rsvd:        0\nHugepagesize:       2048 kB\n";
        assert_eq!(meminfo_hugepage_mb_free(m), 16);
        let m = "HugePages_Free:        2\nHugepagesize:    1048576 kB\n";
        assert_eq!(meminfo_hugepage_mb_free(m), 2048);
        assert_eq!(meminfo_hugepage_mb_free("MemTotal: 1 kB\n"), 0);
        assert_eq!(meminfo_hugepage_mb_free("HugePages_Free: x\n"), 0);
    }

    /// A port is shared by workers; a device moves to its worker but is used by one thread.
    #[test]
    fn thread_bounds() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Port>();
        send::<DpdkDevice>();
    }

    #[test]
    fn port_needs_eal() {
        if eal_initialised() {
            return;
        }
        let err = Port::open(&PortOptions {
            device: "net_tap0".into(),
            ..PortOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("init_eal"), "{err}");
    }
}
