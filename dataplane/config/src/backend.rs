//! `servers[].network_backend`: which network stack a server's listeners and upstream
//! connections run on (a mosn-rs section; MOSN itself always uses kernel sockets).
//!
//! ```json
//! "servers": [{
//!   "network_backend": {
//!     "type": "dpdk",                            // "kernel" (default) | "dpdk"
//!     "eal_args": ["--no-pci", "--vdev", "net_tap0,iface=mosn0"],
//!     "port": "net_tap0",                        // DPDK device name, or a port number "0"
//!     "address": "198.18.3.2/24",                // the userspace stack's IPv4 address/prefix
//!     "gateway": "198.18.3.1",                   // optional default route, inside `address`
//!     "address6": "fd00:198:18:3::2/64",         // optional: IPv6 too (dual stack)
//!     "gateway6": "fd00:198:18:3::1",            // optional IPv6 default route, inside `address6`
//!     "routes": [{"destination": "198.19.0.0/16", "via": "198.18.3.254"}], // static routes
//!     "mtu": 1500,                               // 576..=9000
//!     "queues": 1,                               // RX/TX queue pairs, one worker each; 1..=64
//!     "poll_mode": "busy",                       // or "interrupt": sleep on RX interrupts when idle
//!     "mempool_size": 8191,                      // mbufs, 1024..=1048575
//!     "rx_buffer": 262144, "tx_buffer": 262144   // per-connection bytes, 4096..=16777216
//!   },
//!   "listeners": [ ... ]
//! }]
//! ```
//!
//! An absent section, or an absent or empty `type`, is the kernel backend. With `dpdk` the
//! server's listeners bind on the userspace stack (its `address` or `0.0.0.0`) and its
//! upstream connections leave from there; `validate.rs` checks that the listeners fit.
//!
//! Raw serde struct, typed model, validation and the dump live here; `raw.rs`, `model.rs`,
//! `validate.rs`, `dump.rs` and `lib.rs` only hook them in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::capture::Report;
use crate::de::describe;

/// Default `mtu`.
pub const DEFAULT_DPDK_MTU: u16 = 1500;
/// Default `mempool_size` (mbufs; a power of two minus one suits the DPDK mempool best).
pub const DEFAULT_DPDK_MEMPOOL: u32 = 8191;
/// Default `rx_buffer` and `tx_buffer` (bytes per connection and direction).
pub const DEFAULT_DPDK_SOCKET_BUFFER: usize = 262144;

const MTU: RangeInclusive<u64> = 576..=9000;
/// The least MTU an IPv6 link may have (RFC 8200 §5).
const MIN_IPV6_MTU: u16 = 1280;
const MEMPOOL: RangeInclusive<u64> = 1024..=1_048_575;
const SOCKET_BUFFER: RangeInclusive<u64> = 4096..=16_777_216;
/// Queue pairs (worker threads) of a DPDK port at most.
const MAX_QUEUES: u64 = 64;

// === raw ===

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawNetworkBackend {
    #[serde(rename = "type")]
    pub kind: String,
    pub eal_args: Vec<String>,
    /// A string, or a JSON integer taken as a port number.
    pub port: Option<Value>,
    pub address: String,
    pub gateway: String,
    pub address6: String,
    pub gateway6: String,
    pub routes: Vec<RawRoute>,
    pub mtu: Option<u64>,
    pub queues: Option<u64>,
    pub poll_mode: String,
    pub mempool_size: Option<u64>,
    pub rx_buffer: Option<u64>,
    pub tx_buffer: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRoute {
    pub destination: String,
    pub via: String,
}

// === typed ===

/// Static routes a DPDK stack takes besides its default route (smoltcp's route table holds
/// 16, the default route included).
pub const MAX_DPDK_ROUTES: usize = 15;

/// A static route of the userspace stack: `destination` via the neighbour `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpdkRoute {
    /// The destination network (host bits cleared; a bare address is a /32).
    pub destination: Ipv4Net,
    /// The next hop, a neighbour on `address`'s network.
    pub via: Ipv4Addr,
}

/// `network_backend.poll_mode`: how a DPDK worker waits for frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DpdkPollMode {
    /// `busy`: poll the queue on every turn of the event loop (a core per worker, always).
    #[default]
    Busy,
    /// `interrupt`: poll while frames come, sleep on the queue's RX interrupt when none do
    /// (the PMD must support RX interrupts: net_tap does).
    Interrupt,
}

impl DpdkPollMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DpdkPollMode::Busy => "busy",
            DpdkPollMode::Interrupt => "interrupt",
        }
    }
}

/// `servers[].network_backend`, validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum NetworkBackend {
    /// `kernel`: kernel sockets (the default).
    #[default]
    Kernel,
    /// `dpdk`: a userspace TCP/IP stack over a DPDK port.
    Dpdk(DpdkBackend),
}

impl NetworkBackend {
    /// The config spelling of `type`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NetworkBackend::Kernel => "kernel",
            NetworkBackend::Dpdk(_) => "dpdk",
        }
    }

    /// The DPDK settings, when this is the DPDK backend.
    pub fn dpdk(&self) -> Option<&DpdkBackend> {
        match self {
            NetworkBackend::Kernel => None,
            NetworkBackend::Dpdk(d) => Some(d),
        }
    }
}

/// The `dpdk` backend's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DpdkBackend {
    /// Arguments for `rte_eal_init` (after the program name), verbatim. They either contain
    /// `--no-pci` or name the PCI devices to use (`-a`).
    pub eal_args: Vec<String>,
    /// The DPDK device name (as given to `--vdev`, up to the comma, e.g. `net_tap0`) or a port
    /// number (`"0"`). Never empty.
    pub port: String,
    /// The userspace stack's address with the link's prefix (host bits kept: `addr()` is the
    /// address, `network()` the link). A unicast host address of the network.
    pub address: Ipv4Net,
    /// Default route; inside `address`'s network and not the address itself.
    pub gateway: Option<Ipv4Addr>,
    /// The stack's IPv6 address with the link's prefix, when it speaks IPv6 too: a global or
    /// unique-local unicast address (neighbours are found with NDP).
    pub address6: Option<Ipv6Net>,
    /// IPv6 default route; inside `address6`'s network and not the address itself.
    pub gateway6: Option<Ipv6Addr>,
    /// Static routes (longest prefix wins; then the default route; else on-link only).
    pub routes: Vec<DpdkRoute>,
    /// Link MTU in bytes, 576..=9000.
    pub mtu: u16,
    /// RX/TX queue pairs, one worker each, 1..=64.
    pub queues: u16,
    /// How a worker waits for frames.
    pub poll_mode: DpdkPollMode,
    /// mbufs in the packet pool, 1024..=1048575.
    pub mempool_size: u32,
    /// Receive buffer of each TCP connection in bytes, 4096..=16777216.
    pub rx_buffer: usize,
    /// Transmit buffer of each TCP connection in bytes, 4096..=16777216.
    pub tx_buffer: usize,
}

impl DpdkBackend {
    /// A backend on `port` with `address`, no EAL arguments and every other setting at its
    /// default.
    pub fn new(port: impl Into<String>, address: Ipv4Net) -> DpdkBackend {
        DpdkBackend {
            eal_args: Vec::new(),
            port: port.into(),
            address,
            gateway: None,
            address6: None,
            gateway6: None,
            routes: Vec::new(),
            mtu: DEFAULT_DPDK_MTU,
            queues: 1,
            poll_mode: DpdkPollMode::Busy,
            mempool_size: DEFAULT_DPDK_MEMPOOL,
            rx_buffer: DEFAULT_DPDK_SOCKET_BUFFER,
            tx_buffer: DEFAULT_DPDK_SOCKET_BUFFER,
        }
    }
}

// === validation ===

/// The keys only the `dpdk` backend reads, and whether each was given.
fn dpdk_keys(raw: &RawNetworkBackend) -> [(&'static str, bool); 13] {
    [
        ("eal_args", !raw.eal_args.is_empty()),
        (
            "port",
            !matches!(&raw.port, None | Some(Value::String(_))) || port_text(raw).is_some(),
        ),
        ("address", !raw.address.is_empty()),
        ("gateway", !raw.gateway.is_empty()),
        ("address6", !raw.address6.is_empty()),
        ("gateway6", !raw.gateway6.is_empty()),
        ("routes", !raw.routes.is_empty()),
        ("mtu", raw.mtu.is_some()),
        ("queues", raw.queues.is_some()),
        ("poll_mode", !raw.poll_mode.is_empty()),
        ("mempool_size", raw.mempool_size.is_some()),
        ("rx_buffer", raw.rx_buffer.is_some()),
        ("tx_buffer", raw.tx_buffer.is_some()),
    ]
}

/// `port` as text when it is a non-empty string or a non-negative integer.
fn port_text(raw: &RawNetworkBackend) -> Option<String> {
    match &raw.port {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

/// Whether EAL is kept away from the host's PCI devices: `--no-pci`, or an explicit allow-list
/// (`-a DEV`, `-aDEV`, `--allow DEV`, `--allow=DEV`, and the older `--pci-whitelist`).
fn pci_probe_limited(args: &[String]) -> bool {
    let mut args = args.iter().map(String::as_str).peekable();
    while let Some(arg) = args.next() {
        let limited = match arg {
            "--no-pci" => true,
            "-a" | "--allow" | "--pci-whitelist" => args
                .peek()
                .is_some_and(|dev| !dev.is_empty() && !dev.starts_with('-')),
            _ => ["--allow=", "--pci-whitelist=", "-a"]
                .iter()
                .any(|p| arg.strip_prefix(p).is_some_and(|dev| !dev.is_empty())),
        };
        if limited {
            return true;
        }
    }
    false
}

fn ranged(
    value: Option<u64>,
    key: &str,
    range: RangeInclusive<u64>,
    report: Report<'_>,
) -> Option<u64> {
    let value = value?;
    if range.contains(&value) {
        Some(value)
    } else {
        report(
            key,
            format!(
                "{key} {value} out of range {}..={}",
                range.start(),
                range.end()
            ),
            true,
        );
        None
    }
}

/// The named special address of `net` that `ip` is, if any (a /31 has none: RFC 3021).
fn special(ip: Ipv4Addr, net: Ipv4Net) -> Option<&'static str> {
    if net.prefix_len() >= 31 {
        None
    } else if ip == net.network() {
        Some("network")
    } else if ip == net.broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

fn address(text: &str, report: Report<'_>) -> Option<Ipv4Net> {
    if text.is_empty() {
        report(
            "address",
            "required with type \"dpdk\": the userspace stack's IPv4 address and prefix, \
             e.g. \"198.18.3.2/24\""
                .to_string(),
            true,
        );
        return None;
    }
    let net = match (text.parse::<IpNet>(), text.parse::<IpAddr>()) {
        (Ok(IpNet::V4(net)), _) => net,
        (Ok(IpNet::V6(_)), _) | (_, Ok(IpAddr::V6(_))) => {
            report(
                "address",
                format!(
                    "{text:?} is an IPv6 address: `address` is the stack's IPv4 address; \
                     an IPv6 one goes in `address6` (dual stack)"
                ),
                true,
            );
            return None;
        }
        (_, Ok(IpAddr::V4(ip))) => {
            report(
                "address",
                format!(
                    "invalid address {text:?}: the prefix length is missing (write e.g. \
                     \"{ip}/24\")"
                ),
                true,
            );
            return None;
        }
        _ => {
            report(
                "address",
                format!(
                    "invalid address {text:?}: expected an IPv4 address and prefix length \
                     such as \"198.18.3.2/24\""
                ),
                true,
            );
            return None;
        }
    };
    let ip = net.addr();
    let why = if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
        format!("{ip} is not a unicast host address")
    } else if net.prefix_len() == 32 {
        format!("a /32 has no neighbours to reach: give the link's prefix (e.g. \"{ip}/24\")")
    } else if let Some(which) = special(ip, net) {
        format!(
            "{ip} is the {which} address of {}: give a host address",
            net.trunc()
        )
    } else {
        return Some(net);
    };
    report("address", why, true);
    None
}

fn gateway(text: &str, net: Option<Ipv4Net>, report: Report<'_>) -> Option<Ipv4Addr> {
    if text.is_empty() {
        return None;
    }
    let gw = match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(gw)) => gw,
        Ok(IpAddr::V6(_)) => {
            report(
                "gateway",
                format!("{text:?} is an IPv6 address: the IPv6 default route goes in `gateway6`"),
                true,
            );
            return None;
        }
        Err(_) => {
            report(
                "gateway",
                format!("invalid gateway {text:?}: expected an IPv4 address such as 198.18.3.1"),
                true,
            );
            return None;
        }
    };
    let net = net?;
    let why = if !net.contains(&gw) {
        format!(
            "gateway {gw} is not in {}, the network of address",
            net.trunc()
        )
    } else if gw == net.addr() {
        format!("gateway {gw} is the stack's own address")
    } else if let Some(which) = special(gw, net) {
        format!("gateway {gw} is the {which} address of {}", net.trunc())
    } else {
        return Some(gw);
    };
    report("gateway", why, true);
    None
}

/// `address6`: an IPv6 host address with the link's prefix, or `None` (reported) when it is not.
fn address6(text: &str, report: Report<'_>) -> Option<Ipv6Net> {
    if text.is_empty() {
        return None;
    }
    let net = match (text.parse::<IpNet>(), text.parse::<IpAddr>()) {
        (Ok(IpNet::V6(net)), _) => net,
        (Ok(IpNet::V4(_)), _) | (_, Ok(IpAddr::V4(_))) => {
            report(
                "address6",
                format!("{text:?} is an IPv4 address: IPv4 goes in `address`"),
                true,
            );
            return None;
        }
        (_, Ok(IpAddr::V6(ip))) => {
            report(
                "address6",
                format!(
                    "invalid address6 {text:?}: the prefix length is missing (write e.g. \
                     \"{ip}/64\")"
                ),
                true,
            );
            return None;
        }
        _ => {
            report(
                "address6",
                format!(
                    "invalid address6 {text:?}: expected an IPv6 address and prefix length \
                     such as \"fd00:198:18:3::2/64\""
                ),
                true,
            );
            return None;
        }
    };
    let ip = net.addr();
    let why = if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        format!("{ip} is not a unicast host address")
    } else if ip.is_unicast_link_local() {
        format!("{ip} is link-local: give a global or unique-local address (the stack has no scope ids)")
    } else if ip.to_ipv4_mapped().is_some() {
        format!("{ip} is an IPv4-mapped address: IPv4 goes in `address`")
    } else if net.prefix_len() == 128 {
        format!("a /128 has no neighbours to reach: give the link's prefix (e.g. \"{ip}/64\")")
    } else if ip == net.network() {
        format!(
            "{ip} is the subnet-router anycast address of {}: give a host address",
            net.trunc()
        )
    } else {
        return Some(net);
    };
    report("address6", why, true);
    None
}

/// `gateway6`: a neighbour on `address6`'s network.
fn gateway6(text: &str, net: Option<Ipv6Net>, given: bool, report: Report<'_>) -> Option<Ipv6Addr> {
    if text.is_empty() {
        return None;
    }
    let gw = match text.parse::<IpAddr>() {
        Ok(IpAddr::V6(gw)) => gw,
        Ok(IpAddr::V4(_)) => {
            report(
                "gateway6",
                format!("{text:?} is an IPv4 address: the IPv4 default route goes in `gateway`"),
                true,
            );
            return None;
        }
        Err(_) => {
            report(
                "gateway6",
                format!(
                    "invalid gateway6 {text:?}: expected an IPv6 address such as fd00:198:18:3::1"
                ),
                true,
            );
            return None;
        }
    };
    let Some(net) = net else {
        if !given {
            report(
                "gateway6",
                "gateway6 needs address6: the stack has no IPv6 address".to_string(),
                true,
            );
        }
        return None;
    };
    let why = if !net.contains(&gw) {
        format!(
            "gateway6 {gw} is not in {}, the network of address6",
            net.trunc()
        )
    } else if gw == net.addr() {
        format!("gateway6 {gw} is the stack's own address")
    } else if gw == net.network() {
        format!(
            "gateway6 {gw} is the subnet-router anycast address of {}",
            net.trunc()
        )
    } else {
        return Some(gw);
    };
    report("gateway6", why, true);
    None
}

/// A neighbour on `net` that is not the stack's own, network or broadcast address: why not.
fn neighbour_problem(ip: Ipv4Addr, net: Ipv4Net) -> Option<String> {
    if !net.contains(&ip) {
        Some(format!(
            "{ip} is not in {}, the network of address",
            net.trunc()
        ))
    } else if ip == net.addr() {
        Some(format!("{ip} is the stack's own address"))
    } else {
        special(ip, net).map(|which| format!("{ip} is the {which} address of {}", net.trunc()))
    }
}

fn routes(raw: &[RawRoute], net: Option<Ipv4Net>, report: Report<'_>) -> Vec<DpdkRoute> {
    if raw.len() > MAX_DPDK_ROUTES {
        report(
            "routes",
            format!(
                "{} routes: the userspace stack holds at most {MAX_DPDK_ROUTES} besides the \
                 default route",
                raw.len()
            ),
            true,
        );
    }
    let mut out: Vec<DpdkRoute> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let destination = match r.destination.parse::<Ipv4Net>() {
            Ok(n) => Some(n.trunc()),
            Err(_) => match r.destination.parse::<Ipv4Addr>() {
                Ok(a) => Some(Ipv4Net::from(a)),
                Err(_) => {
                    report(
                        &format!("routes[{i}].destination"),
                        format!(
                            "invalid destination {:?}: expected an IPv4 network such as \
                             198.19.0.0/16",
                            r.destination
                        ),
                        true,
                    );
                    None
                }
            },
        };
        let via = match r.via.parse::<Ipv4Addr>() {
            Ok(v) => match net.and_then(|net| neighbour_problem(v, net)) {
                None => Some(v),
                Some(why) => {
                    report(&format!("routes[{i}].via"), why, true);
                    None
                }
            },
            Err(_) => {
                report(
                    &format!("routes[{i}].via"),
                    format!(
                        "invalid next hop {:?}: expected an IPv4 neighbour such as 198.18.3.254",
                        r.via
                    ),
                    true,
                );
                None
            }
        };
        if let Some(d) = destination {
            if d.prefix_len() == 0 {
                report(
                    &format!("routes[{i}].destination"),
                    "0.0.0.0/0 is the default route: use `gateway`".to_string(),
                    true,
                );
                continue;
            }
            if out.iter().any(|o| o.destination == d) {
                report(
                    &format!("routes[{i}].destination"),
                    format!("{d} is routed twice"),
                    true,
                );
                continue;
            }
            if let Some(via) = via {
                out.push(DpdkRoute {
                    destination: d,
                    via,
                });
            }
        }
    }
    out
}

/// Raw section -> typed section; problems go to `report` with paths relative to the section.
pub(crate) fn build(raw: &RawNetworkBackend, report: Report<'_>) -> NetworkBackend {
    match raw.kind.to_ascii_lowercase().as_str() {
        "" | "kernel" => {
            for (key, given) in dpdk_keys(raw) {
                if given {
                    report(
                        key,
                        format!(
                            "ignored: the kernel backend has no {key} (it applies to \
                             \"type\": \"dpdk\" only)"
                        ),
                        false,
                    );
                }
            }
            return NetworkBackend::Kernel;
        }
        "dpdk" => {}
        other => {
            report(
                "type",
                format!("unknown type {other:?}: expected \"kernel\" or \"dpdk\""),
                true,
            );
            return NetworkBackend::Kernel;
        }
    }

    if !pci_probe_limited(&raw.eal_args) {
        report(
            "eal_args",
            "EAL would probe the host's PCI devices: add --no-pci (or name the devices with -a)"
                .to_string(),
            true,
        );
    }
    let port = match (&raw.port, port_text(raw)) {
        (_, Some(port)) => {
            if port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_err() {
                report(
                    "port",
                    format!("port number {port} out of range 0..=65535"),
                    true,
                );
            }
            port
        }
        (None | Some(Value::String(_)), None) => {
            report(
                "port",
                "required with type \"dpdk\": the DPDK device name (as given to --vdev, e.g. \
                 \"net_tap0\") or port number (\"0\")"
                    .to_string(),
                true,
            );
            String::new()
        }
        (Some(other), None) => {
            report(
                "port",
                format!(
                    "expected a device name such as \"net_tap0\" or a port number, found {}",
                    describe(other)
                ),
                true,
            );
            String::new()
        }
    };
    let net = address(&raw.address, report);
    let gateway = gateway(&raw.gateway, net, report);
    let routes = routes(&raw.routes, net, report);
    let net6 = address6(&raw.address6, report);
    let gateway6 = gateway6(&raw.gateway6, net6, !raw.address6.is_empty(), report);
    let queues = match raw.queues {
        None => 1,
        Some(0) => {
            report(
                "queues",
                "queues 0: at least one RX/TX queue pair is needed".to_string(),
                true,
            );
            1
        }
        Some(n) if n > MAX_QUEUES => {
            report(
                "queues",
                format!("queues {n}: at most {MAX_QUEUES} (one worker thread each)"),
                true,
            );
            1
        }
        // At most MAX_QUEUES.
        Some(n) => n as u16,
    };
    let defaults = DpdkBackend::new(String::new(), Ipv4Net::default());
    // An invalid address leaves 0.0.0.0/0, which no valid config has (`address` rejects the
    // unspecified address): the listener checks in validate.rs skip it.
    let mut b = DpdkBackend::new(port, net.unwrap_or_default());
    b.eal_args = raw.eal_args.clone();
    b.gateway = gateway;
    b.address6 = net6;
    b.gateway6 = gateway6;
    b.routes = routes;
    b.queues = queues;
    b.poll_mode = match raw.poll_mode.to_ascii_lowercase().as_str() {
        "" | "busy" => DpdkPollMode::Busy,
        "interrupt" => DpdkPollMode::Interrupt,
        other => {
            report(
                "poll_mode",
                format!("poll_mode {other:?}: expected \"busy\" or \"interrupt\""),
                true,
            );
            DpdkPollMode::Busy
        }
    };
    b.mtu = ranged(raw.mtu, "mtu", MTU, report).map_or(defaults.mtu, |v| v as u16);
    if b.address6.is_some() && b.mtu < MIN_IPV6_MTU {
        report(
            "mtu",
            format!(
                "mtu {}: IPv6 (address6) needs at least {MIN_IPV6_MTU}",
                b.mtu
            ),
            true,
        );
    }
    b.mempool_size = ranged(raw.mempool_size, "mempool_size", MEMPOOL, report)
        .map_or(defaults.mempool_size, |v| v as u32);
    b.rx_buffer = ranged(raw.rx_buffer, "rx_buffer", SOCKET_BUFFER, report)
        .map_or(defaults.rx_buffer, |v| v as usize);
    b.tx_buffer = ranged(raw.tx_buffer, "tx_buffer", SOCKET_BUFFER, report)
        .map_or(defaults.tx_buffer, |v| v as usize);
    NetworkBackend::Dpdk(b)
}

// === dump ===

/// The section as config JSON, every field written; `None` for the kernel backend (the
/// default, left out of the dump).
pub(crate) fn dump(backend: &NetworkBackend) -> Option<Value> {
    let b = backend.dpdk()?;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("type", backend.as_str().into());
    put("eal_args", b.eal_args.clone().into());
    put("port", b.port.clone().into());
    put("address", b.address.to_string().into());
    if let Some(gw) = b.gateway {
        put("gateway", gw.to_string().into());
    }
    if let Some(a) = b.address6 {
        put("address6", a.to_string().into());
    }
    if let Some(gw) = b.gateway6 {
        put("gateway6", gw.to_string().into());
    }
    if !b.routes.is_empty() {
        let routes: Vec<Value> = b
            .routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "destination": r.destination.to_string(),
                    "via": r.via.to_string(),
                })
            })
            .collect();
        put("routes", Value::Array(routes));
    }
    put("mtu", b.mtu.into());
    put("queues", b.queues.into());
    put("poll_mode", b.poll_mode.as_str().into());
    put("mempool_size", b.mempool_size.into());
    put("rx_buffer", b.rx_buffer.into());
    put("tx_buffer", b.tx_buffer.into());
    Some(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTION: &str = r#"{
        "type": "dpdk",
        "eal_args": ["--no-pci", "--vdev", "net_tap0,iface=mosn0", "-l", "0-1",
                     "--file-prefix", "mosn"],
        "port": "net_tap0", "address": "198.18.3.2/24", "gateway": "198.18.3.1",
        "address6": "fd00:198:18:3::2/64", "gateway6": "fd00:198:18:3::1",
        "routes": [{"destination": "198.19.0.0/16", "via": "198.18.3.254"},
                   {"destination": "198.19.7.9", "via": "198.18.3.253"}],
        "mtu": 9000, "queues": 1, "poll_mode": "Interrupt", "mempool_size": 16383,
        "rx_buffer": 65536, "tx_buffer": 131072
    }"#;

    const LISTENERS: &str = r#"[
        {"name": "any", "address": "0.0.0.0:8080",
         "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]},
        {"name": "own", "address": "198.18.3.2:9000",
         "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]}
    ]"#;

    fn config(section: &str, listeners: &str, extra: &str) -> String {
        format!(
            r#"{{"servers": [{{"network_backend": {section}, "listeners": {listeners}}}],
                "cluster_manager": {{"clusters": [{{"name": "c", "type": "SIMPLE",
                    "hosts": [{{"address": "198.18.3.1:9001"}}]}}]}}{extra}}}"#
        )
    }

    fn load(section: &str) -> Result<crate::Loaded, crate::ConfigError> {
        crate::parse_str(&config(section, LISTENERS, ""), crate::Format::Json)
    }

    fn problems(text: &str) -> Vec<String> {
        match crate::parse_str(text, crate::Format::Json) {
            Ok(_) => Vec::new(),
            Err(crate::ConfigError::Invalid(d)) => d.iter().map(|d| d.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    fn errors(section: &str) -> Vec<String> {
        problems(&config(section, LISTENERS, ""))
    }

    /// A valid dpdk section with `key` set to `value` (JSON text; `null` removes it).
    fn with(key: &str, value: &str) -> String {
        let mut v: Value = serde_json::from_str(SECTION).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        v.to_string()
    }

    fn assert_has(found: &[String], want: &str) {
        assert!(
            found.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }

    #[test]
    fn a_full_section_parses_and_round_trips_through_the_dump() {
        let loaded = load(SECTION).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let backend = &loaded.config.servers[0].network_backend;
        assert_eq!(backend.as_str(), "dpdk");
        let want = DpdkBackend {
            eal_args: [
                "--no-pci",
                "--vdev",
                "net_tap0,iface=mosn0",
                "-l",
                "0-1",
                "--file-prefix",
                "mosn",
            ]
            .map(String::from)
            .to_vec(),
            port: "net_tap0".to_string(),
            address: "198.18.3.2/24".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(198, 18, 3, 1)),
            address6: Some("fd00:198:18:3::2/64".parse().unwrap()),
            gateway6: Some("fd00:198:18:3::1".parse().unwrap()),
            routes: vec![
                DpdkRoute {
                    destination: "198.19.0.0/16".parse().unwrap(),
                    via: Ipv4Addr::new(198, 18, 3, 254),
                },
                DpdkRoute {
                    destination: "198.19.7.9/32".parse().unwrap(),
                    via: Ipv4Addr::new(198, 18, 3, 253),
                },
            ],
            mtu: 9000,
            queues: 1,
            poll_mode: DpdkPollMode::Interrupt,
            mempool_size: 16383,
            rx_buffer: 65536,
            tx_buffer: 131072,
        };
        assert_eq!(backend, &NetworkBackend::Dpdk(want.clone()));
        assert_eq!(want.address.addr(), Ipv4Addr::new(198, 18, 3, 2));

        let dumped = loaded.config.dump();
        let section = &dumped["servers"][0]["network_backend"];
        assert_eq!(section["type"], "dpdk");
        assert_eq!(
            section["routes"][1],
            serde_json::json!({"destination": "198.19.7.9/32", "via": "198.18.3.253"})
        );
        assert_eq!(section["address"], "198.18.3.2/24");
        assert_eq!(section["gateway"], "198.18.3.1");
        assert_eq!(section["eal_args"][2], "net_tap0,iface=mosn0");
        let again = crate::parse_value(&dumped).unwrap();
        assert!(again.warnings.is_empty(), "{:?}", again.warnings);
        assert_eq!(again.config, loaded.config.redacted());
    }

    #[test]
    fn defaults() {
        let loaded = load(
            r#"{"type": "DPDK", "eal_args": ["--no-pci", "--vdev", "net_tap0"],
                "port": 0, "address": "198.18.3.2/24"}"#,
        )
        .unwrap();
        let backend = &loaded.config.servers[0].network_backend;
        let mut want = DpdkBackend::new("0", "198.18.3.2/24".parse().unwrap());
        want.eal_args = ["--no-pci", "--vdev", "net_tap0"]
            .map(String::from)
            .to_vec();
        assert_eq!(backend, &NetworkBackend::Dpdk(want));
        let d = backend.dpdk().unwrap();
        assert_eq!(
            (
                d.mtu,
                d.queues,
                d.mempool_size,
                d.rx_buffer,
                d.tx_buffer,
                d.gateway
            ),
            (1500, 1, 8191, 262144, 262144, None)
        );
        // defaults are written out, and the port number comes back as a string
        let dumped = loaded.config.dump();
        let section = &dumped["servers"][0]["network_backend"];
        assert_eq!(section["port"], "0");
        assert_eq!(section["mtu"], DEFAULT_DPDK_MTU);
        assert_eq!(section["mempool_size"], DEFAULT_DPDK_MEMPOOL);
        assert_eq!(section["rx_buffer"], DEFAULT_DPDK_SOCKET_BUFFER);
        assert!(section.get("gateway").is_none());
        assert_eq!(
            crate::parse_value(&dumped).unwrap().config,
            loaded.config.redacted()
        );
    }

    #[test]
    fn accepted_variants() {
        // a PCI allow-list instead of --no-pci, in each spelling
        for args in [
            r#"["-a", "0000:01:00.0"]"#,
            r#"["-a0000:01:00.0"]"#,
            r#"["--allow", "0000:01:00.0"]"#,
            r#"["--allow=0000:01:00.0"]"#,
            r#"["--pci-whitelist", "0000:01:00.0"]"#,
        ] {
            assert_eq!(
                errors(&with("eal_args", args)),
                Vec::<String>::new(),
                "{args}"
            );
        }
        // /31: both addresses are hosts (RFC 3021)
        let mut p2p: Value = serde_json::from_str(&with("gateway", r#""198.18.3.3""#)).unwrap();
        p2p["address"] = "198.18.3.2/31".into();
        p2p["routes"] = serde_json::json!([{"destination": "198.19.0.0/16", "via": "198.18.3.3"}]);
        let p2p = p2p.to_string();
        assert_eq!(errors(&p2p), Vec::<String>::new());
        // EAL options other than the PCI ones are just strings
        let eal = r#"["--no-pci", "-l", "2-3", "--lcores", "0@2", "-c", "0xc",
                      "--file-prefix", "mosn1", "--huge-dir", "/dev/hugepages", "-m", "256"]"#;
        assert_eq!(errors(&with("eal_args", eal)), Vec::<String>::new());
        // a port number, as a string
        assert_eq!(errors(&with("port", r#""1""#)), Vec::<String>::new());
    }

    #[test]
    fn kernel_is_the_default_and_is_not_dumped() {
        for text in [
            r#"{"servers": [{"listeners": []}]}"#.to_string(),
            config("{}", LISTENERS, ""),
            config(r#"{"type": ""}"#, LISTENERS, ""),
            config(r#"{"type": "Kernel"}"#, LISTENERS, ""),
            config("null", LISTENERS, ""),
        ] {
            let loaded = crate::parse_str(&text, crate::Format::Json).unwrap();
            assert!(loaded.warnings.is_empty(), "{text}: {:?}", loaded.warnings);
            let c = loaded.config;
            assert_eq!(c.servers[0].network_backend, NetworkBackend::Kernel);
            assert_eq!(c.servers[0].network_backend.as_str(), "kernel");
            assert!(c.servers[0].network_backend.dpdk().is_none());
            let dumped = c.dump();
            assert!(
                dumped["servers"][0].get("network_backend").is_none(),
                "{dumped}"
            );
        }
    }

    #[test]
    fn dpdk_keys_with_the_kernel_backend_are_warnings() {
        let loaded = load(
            r#"{"eal_args": ["--no-pci"], "port": "net_tap0", "address": "198.18.3.2/24",
                "gateway": "198.18.3.1", "mtu": 1500, "queues": 1, "poll_mode": "busy",
                "mempool_size": 8191, "rx_buffer": 4096, "tx_buffer": 4096}"#,
        )
        .unwrap();
        assert_eq!(
            loaded.config.servers[0].network_backend,
            NetworkBackend::Kernel
        );
        let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
        for key in [
            "eal_args",
            "port",
            "address",
            "gateway",
            "mtu",
            "queues",
            "poll_mode",
            "mempool_size",
            "rx_buffer",
            "tx_buffer",
        ] {
            assert_has(
                &warnings,
                &format!(
                    "servers[0].network_backend.{key}: ignored: the kernel backend has no {key}"
                ),
            );
        }
        assert_eq!(warnings.len(), 10, "{warnings:#?}");
        // the user's spelling of the keys is kept
        let w = crate::parse_str(
            &config(r#"{"Type": "kernel", "MTU": 9000}"#, LISTENERS, ""),
            crate::Format::Json,
        )
        .unwrap()
        .warnings;
        assert_eq!(
            w[0].to_string(),
            "servers[0].network_backend.MTU: ignored: the kernel backend has no mtu (it \
             applies to \"type\": \"dpdk\" only)"
        );
    }

    #[test]
    fn route_errors_name_the_route() {
        let bad = with(
            "routes",
            r#"[{"destination": "nope", "via": "198.18.3.254"},
                {"destination": "198.19.0.0/16", "via": "10.0.0.1"},
                {"destination": "198.20.0.0/16", "via": "198.18.3.2"},
                {"destination": "0.0.0.0/0", "via": "198.18.3.254"},
                {"destination": "198.19.0.0/16", "via": "198.18.3.9"},
                {"destination": "198.21.0.0/16", "via": "x"}]"#,
        );
        let found = errors(&bad);
        for want in [
            "servers[0].network_backend.routes[0].destination: invalid destination \"nope\"",
            "servers[0].network_backend.routes[1].via: 10.0.0.1 is not in 198.18.3.0/24",
            "servers[0].network_backend.routes[2].via: 198.18.3.2 is the stack's own address",
            "servers[0].network_backend.routes[3].destination: 0.0.0.0/0 is the default route",
            "servers[0].network_backend.routes[5].via: invalid next hop \"x\"",
        ] {
            assert_has(&found, want);
        }
        // routes[4] repeats routes[1]'s destination (whose next hop was bad: not a duplicate
        // then, so only the first valid one counts)
        let twice = with(
            "routes",
            r#"[{"destination": "198.19.0.0/16", "via": "198.18.3.254"},
                {"destination": "198.19.1.2/16", "via": "198.18.3.9"}]"#,
        );
        assert_has(
            &errors(&twice),
            "servers[0].network_backend.routes[1].destination: 198.19.0.0/16 is routed twice",
        );
        let many: Vec<String> = (0..16)
            .map(|i| format!(r#"{{"destination": "198.19.{i}.0/24", "via": "198.18.3.254"}}"#))
            .collect();
        assert_has(
            &errors(&with("routes", &format!("[{}]", many.join(",")))),
            "servers[0].network_backend.routes: 16 routes: the userspace stack holds at most 15",
        );
    }

    #[test]
    fn ipv6_is_optional_and_gateway6_needs_address6() {
        let mut v: Value = serde_json::from_str(SECTION).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("address6");
        obj.remove("gateway6");
        obj.insert("mtu".into(), 576.into());
        let v4_only = load(&v.to_string()).unwrap();
        let b = v4_only.config.servers[0].network_backend.dpdk().unwrap();
        assert_eq!((b.address6, b.gateway6, b.mtu), (None, None, 576));
        let dumped = v4_only.config.dump();
        assert!(dumped["servers"][0]["network_backend"]
            .get("address6")
            .is_none());
        v["gateway6"] = "fd00::1".into();
        assert_has(
            &errors(&v.to_string()),
            "servers[0].network_backend.gateway6: gateway6 needs address6",
        );
    }

    #[test]
    fn errors_name_the_field() {
        let p = "servers[0].network_backend";
        let cases: &[(&str, &str, &str)] = &[
            (
                "type",
                r#""xdp""#,
                "type: unknown type \"xdp\": expected \"kernel\" or \"dpdk\"",
            ),
            ("address", "null", "address: required with type \"dpdk\""),
            ("address", r#""""#, "address: required with type \"dpdk\""),
            (
                "address",
                r#""nope/24""#,
                "address: invalid address \"nope/24\": expected",
            ),
            (
                "address",
                r#""198.18.3.2/33""#,
                "address: invalid address \"198.18.3.2/33\"",
            ),
            (
                "address",
                r#""198.18.3.2""#,
                "address: invalid address \"198.18.3.2\": the prefix length is missing",
            ),
            (
                "address",
                r#""fd00::2/64""#,
                "address: \"fd00::2/64\" is an IPv6 address: `address` is the stack's IPv4 address; an IPv6 one goes in `address6`",
            ),
            (
                "address",
                r#""fd00::2""#,
                "address: \"fd00::2\" is an IPv6 address",
            ),
            (
                "address",
                r#""198.18.3.0/24""#,
                "address: 198.18.3.0 is the network address of 198.18.3.0/24",
            ),
            (
                "address",
                r#""198.18.3.255/24""#,
                "address: 198.18.3.255 is the broadcast address of 198.18.3.0/24",
            ),
            (
                "address",
                r#""198.18.3.2/32""#,
                "address: a /32 has no neighbours",
            ),
            (
                "address",
                r#""224.0.0.1/4""#,
                "address: 224.0.0.1 is not a unicast host address",
            ),
            (
                "address",
                r#""127.0.0.2/8""#,
                "address: 127.0.0.2 is not a unicast host address",
            ),
            (
                "gateway",
                r#""10.0.0.1""#,
                "gateway: gateway 10.0.0.1 is not in 198.18.3.0/24, the network of address",
            ),
            (
                "gateway",
                r#""198.18.3.2""#,
                "gateway: gateway 198.18.3.2 is the stack's own address",
            ),
            (
                "gateway",
                r#""198.18.3.255""#,
                "gateway: gateway 198.18.3.255 is the broadcast address of 198.18.3.0/24",
            ),
            ("gateway", r#""gw""#, "gateway: invalid gateway \"gw\""),
            (
                "gateway",
                r#""fd00::1""#,
                "gateway: \"fd00::1\" is an IPv6 address: the IPv6 default route goes in `gateway6`",
            ),
            (
                "address6",
                r#""fd00::2""#,
                "address6: invalid address6 \"fd00::2\": the prefix length is missing",
            ),
            (
                "address6",
                r#""nope/64""#,
                "address6: invalid address6 \"nope/64\": expected an IPv6 address",
            ),
            (
                "address6",
                r#""198.18.3.9/24""#,
                "address6: \"198.18.3.9/24\" is an IPv4 address: IPv4 goes in `address`",
            ),
            ("address6", r#""fe80::2/64""#, "address6: fe80::2 is link-local"),
            (
                "address6",
                r#""fd00::2/128""#,
                "address6: a /128 has no neighbours to reach",
            ),
            (
                "address6",
                r#""ff02::1/64""#,
                "address6: ff02::1 is not a unicast host address",
            ),
            (
                "address6",
                r#""fd00::/64""#,
                "address6: fd00:: is the subnet-router anycast address of fd00::/64",
            ),
            (
                "address6",
                r#""::ffff:198.18.3.9/120""#,
                "address6: ::ffff:198.18.3.9 is an IPv4-mapped address",
            ),
            (
                "gateway6",
                r#""fd00:1::1""#,
                "gateway6: gateway6 fd00:1::1 is not in fd00:198:18:3::/64, the network of address6",
            ),
            (
                "gateway6",
                r#""fd00:198:18:3::2""#,
                "gateway6: gateway6 fd00:198:18:3::2 is the stack's own address",
            ),
            (
                "gateway6",
                r#""198.18.3.1""#,
                "gateway6: \"198.18.3.1\" is an IPv4 address",
            ),
            ("mtu", "1279", "mtu: mtu 1279: IPv6 (address6) needs at least 1280"),
            ("mtu", "575", "mtu: mtu 575 out of range 576..=9000"),
            ("mtu", "9001", "mtu: mtu 9001 out of range 576..=9000"),
            (
                "mempool_size",
                "1023",
                "mempool_size: mempool_size 1023 out of range 1024..=1048575",
            ),
            (
                "mempool_size",
                "1048576",
                "mempool_size: mempool_size 1048576 out of range 1024..=1048575",
            ),
            (
                "rx_buffer",
                "4095",
                "rx_buffer: rx_buffer 4095 out of range 4096..=16777216",
            ),
            (
                "tx_buffer",
                "16777217",
                "tx_buffer: tx_buffer 16777217 out of range 4096..=16777216",
            ),
            (
                "queues",
                "0",
                "queues: queues 0: at least one RX/TX queue pair is needed",
            ),
            (
                "queues",
                "65",
                "queues: queues 65: at most 64 (one worker thread each)",
            ),
            (
                "poll_mode",
                r#""spin""#,
                "poll_mode: poll_mode \"spin\": expected \"busy\" or \"interrupt\"",
            ),
            (
                "eal_args",
                r#"["--vdev", "net_tap0", "-l", "0", "--lcores", "0@1", "-c", "1"]"#,
                "eal_args: EAL would probe the host's PCI devices: add --no-pci (or name the \
                 devices with -a)",
            ),
            (
                "eal_args",
                r#"["--vdev", "net_tap0", "-a"]"#,
                "eal_args: EAL would probe the host's PCI devices",
            ),
            (
                "eal_args",
                "null",
                "eal_args: EAL would probe the host's PCI devices",
            ),
            ("port", "null", "port: required with type \"dpdk\""),
            ("port", r#""""#, "port: required with type \"dpdk\""),
            (
                "port",
                r#""70000""#,
                "port: port number 70000 out of range 0..=65535",
            ),
            (
                "port",
                "true",
                "port: expected a device name such as \"net_tap0\" or a port number",
            ),
        ];
        for (key, value, want) in cases {
            let e = errors(&with(key, value));
            assert_has(&e, &format!("{p}.{want}"));
            assert_eq!(e.len(), 1, "{key} = {value}: {e:#?}");
        }
        // an unknown type stops there: no complaints about the dpdk keys
        let e = errors(r#"{"type": "xdp", "mtu": 1}"#);
        assert_eq!(e.len(), 1, "{e:#?}");
    }

    #[test]
    fn listeners_of_a_dpdk_server_must_fit_the_userspace_stack() {
        let listeners = r#"[
            {"name": "lo", "address": "127.0.0.1:8080",
             "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]},
            {"name": "v6", "address": "[fd00:1::9]:8081",
             "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]},
            {"name": "orig", "address": "0.0.0.0:15001", "use_original_dst": "redirect",
             "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]},
            {"name": "udp", "address": "198.18.3.2:53", "network": "udp",
             "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]},
            {"name": "handed", "address": "10.1.1.1:8082", "bind_port": false,
             "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]},
            {"name": "ok", "address": "198.18.3.2:8083",
             "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]},
            {"name": "any6", "address": "[::]:8084",
             "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]},
            {"name": "own6", "address": "[fd00:198:18:3::2]:8085",
             "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]}
        ]"#;
        let e = problems(&config(SECTION, listeners, ""));
        let l = "servers[0].listeners";
        for want in [
            format!(
                "{l}[0].address: a listener of a DPDK server binds on its userspace stack: use \
                 198.18.3.2, fd00:198:18:3::2, 0.0.0.0 or ::"
            ),
            format!("{l}[1].address: a listener of a DPDK server binds on its userspace stack"),
            format!("{l}[2].use_original_dst: a DPDK server has no kernel sockets"),
            format!("{l}[3].network: the DPDK backend carries TCP only"),
        ] {
            assert_has(&e, &want);
        }
        assert_eq!(e.len(), 4, "{e:#?}");

        // the same listeners on a kernel server are fine
        let kernel = problems(&config("{}", listeners, ""));
        assert!(kernel.is_empty(), "{kernel:#?}");
        // a bad backend address does not add listener errors on top
        let e = problems(&config(&with("address", r#""nope""#), LISTENERS, ""));
        assert_eq!(e.len(), 1, "{e:#?}");
    }

    #[test]
    fn traffic_capture_and_a_dpdk_server_exclude_each_other() {
        let capture = r#", "traffic_capture": {"mode": "ebpf", "inbound_ports": [8080]}"#;
        let e = problems(&config(SECTION, LISTENERS, capture));
        assert_has(
            &e,
            "traffic_capture.mode: capture redirects kernel sockets; a DPDK server has none",
        );
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(problems(&config("{}", LISTENERS, capture)).is_empty());
        let none = r#", "traffic_capture": {"mode": "none"}"#;
        assert!(problems(&config(SECTION, LISTENERS, none)).is_empty());
    }
}
