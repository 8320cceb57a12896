//! The eBPF inbound capture: loads `mosn_inbound.bpf.o`, fills its maps from the spec, puts
//! the proxy's inbound listener into `in_listener` and attaches `mosn_sk_lookup` to a network
//! namespace (mosn's own unless the spec names one) as a bpf link. The link is owned by the
//! `Ebpf` value: dropping it detaches the program, and so does the kernel when the process
//! dies (kill -9 included), since nothing is pinned.

use std::fs::File;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, SockMap};
use aya::programs::SkLookup;
use aya::{Ebpf, EbpfLoader};
use ipnet::IpNet;

use crate::ebpf::{ebpf_err, load_err, map_mut, object_err, program};
use crate::error::chain;
use crate::spec::CaptureSpec;
use crate::{system, CaptureError};

/// The program of the object.
pub(crate) const SK_LOOKUP: &str = "mosn_sk_lookup";
/// Capacity of `in_ports` and of each `in_src` trie (the `max_entries` in the object).
const IN_CAPACITY: usize = 1024;
/// Slots of `in_listener`.
const SLOT_V4: u32 = 0;
const SLOT_V6: u32 = 1;

/// Counters of the inbound program (the `in_stats` map), in `MOSN_IN_STAT_*` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// Connections handed to the inbound listener.
    pub captured: u64,
    /// Connections to a captured port made inside the namespace (arrived on loopback, from
    /// the destination address itself or from a loopback address; e.g. mosn's own to the
    /// application): left alone.
    pub local_skipped: u64,
    /// Connections to a captured port from an excluded source: left alone.
    pub excluded_source: u64,
    /// No listener for the connection's address family (e.g. IPv6 with an IPv4 listener).
    pub no_listener: u64,
    /// `bpf_sk_assign` refused the listener (e.g. IPv4 to a v6only socket).
    pub assign_failed: u64,
}

/// An installed inbound capture.
pub(crate) struct InboundCapture {
    bpf: Option<Ebpf>,
    netns: PathBuf,
    listener: SocketAddr,
}

impl std::fmt::Debug for InboundCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundCapture")
            .field("netns", &self.netns)
            .field("listener", &self.listener)
            .finish()
    }
}

impl InboundCapture {
    /// `listener`: the proxy's inbound listening socket (created in the namespace the program
    /// is attached to).
    pub(crate) fn install(
        spec: &CaptureSpec,
        object: &[u8],
        listener: &TcpListener,
    ) -> Result<InboundCapture, CaptureError> {
        if let Some(e) = system::ebpf_caps_problem(system::effective_caps()) {
            return Err(e);
        }
        if spec.inbound_ports.len() > IN_CAPACITY {
            return Err(CaptureError::Spec(format!(
                "{} inbound_ports, at most {IN_CAPACITY}",
                spec.inbound_ports.len()
            )));
        }
        let (src4, src6): (Vec<IpNet>, Vec<IpNet>) = spec
            .inbound_exclude_sources
            .iter()
            .map(|n| n.trunc())
            .partition(|n| n.addr().is_ipv4());
        if src4.len().max(src6.len()) > IN_CAPACITY {
            return Err(CaptureError::Spec(format!(
                "{} inbound_exclude_sources, at most {IN_CAPACITY} per address family",
                src4.len().max(src6.len())
            )));
        }
        let local = listener
            .local_addr()
            .map_err(|e| ebpf_err("reading the inbound listener's address", &e))?;
        if local.port() != spec.inbound_port {
            return Err(CaptureError::Spec(format!(
                "the inbound listener is bound to {local}, not to inbound_port {}",
                spec.inbound_port
            )));
        }
        let netns_path = spec
            .netns
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/thread-self/ns/net"));
        let netns = File::open(&netns_path).map_err(|e| CaptureError::Ebpf {
            step: format!("opening the network namespace {}", netns_path.display()),
            detail: e.to_string(),
        })?;

        let mut bpf = EbpfLoader::new().load(object).map_err(object_err)?;
        let update =
            |what: &str, e: aya::maps::MapError| ebpf_err(format!("filling map {what}"), &e);
        {
            let mut ports =
                HashMap::<&mut MapData, u16, u8>::try_from(map_mut(&mut bpf, "in_ports")?)
                    .map_err(|e| update("in_ports", e))?;
            for p in &spec.inbound_ports {
                ports
                    .insert(p.to_be(), 1, 0)
                    .map_err(|e| update("in_ports", e))?;
            }
        }
        {
            let mut trie =
                LpmTrie::<&mut MapData, [u8; 4], u8>::try_from(map_mut(&mut bpf, "in_src4")?)
                    .map_err(|e| update("in_src4", e))?;
            for n in &src4 {
                if let IpAddr::V4(a) = n.addr() {
                    trie.insert(&Key::new(u32::from(n.prefix_len()), a.octets()), 1, 0)
                        .map_err(|e| update("in_src4", e))?;
                }
            }
        }
        {
            let mut trie =
                LpmTrie::<&mut MapData, [u8; 16], u8>::try_from(map_mut(&mut bpf, "in_src6")?)
                    .map_err(|e| update("in_src6", e))?;
            for n in &src6 {
                if let IpAddr::V6(a) = n.addr() {
                    trie.insert(&Key::new(u32::from(n.prefix_len()), a.octets()), 1, 0)
                        .map_err(|e| update("in_src6", e))?;
                }
            }
        }
        {
            // An IPv4 socket takes IPv4 connections only; a dual-stack IPv6 socket both.
            let slots: &[u32] = match local {
                SocketAddr::V4(_) => &[SLOT_V4],
                SocketAddr::V6(_) if v6_only(listener) => &[SLOT_V6],
                SocketAddr::V6(_) => &[SLOT_V4, SLOT_V6],
            };
            let mut map = SockMap::<&mut MapData>::try_from(map_mut(&mut bpf, "in_listener")?)
                .map_err(|e| update("in_listener", e))?;
            for slot in slots {
                map.set(*slot, listener, 0).map_err(|e| {
                    ebpf_err(
                        format!("adding the inbound listener {local} to in_listener"),
                        &e,
                    )
                })?;
            }
        }
        let prog: &mut SkLookup = program(&mut bpf, SK_LOOKUP)?;
        prog.load().map_err(|e| load_err(SK_LOOKUP, e))?;
        prog.attach(&netns).map_err(|e| {
            let mut detail = chain(&e);
            if detail.contains("Invalid argument") || detail.contains("os error 22") {
                detail.push_str(" (sk_lookup links need kernel >= 5.9)");
            }
            CaptureError::Ebpf {
                step: format!(
                    "attaching {SK_LOOKUP} to the network namespace {}",
                    netns_path.display()
                ),
                detail,
            }
        })?;
        tracing::info!(
            listener = %local,
            ports = ?spec.inbound_ports,
            netns = %netns_path.display(),
            "traffic capture: eBPF inbound (sk_lookup) attached"
        );
        Ok(InboundCapture {
            bpf: Some(bpf),
            netns: netns_path,
            listener: local,
        })
    }

    /// The network namespace the program is attached to.
    pub(crate) fn netns(&self) -> &std::path::Path {
        &self.netns
    }

    pub(crate) fn stats(&self) -> Option<InboundStats> {
        let bpf = self.bpf.as_ref()?;
        let stats = Array::<_, u64>::try_from(bpf.map("in_stats")?).ok()?;
        let get = |i: u32| stats.get(&i, 0).unwrap_or(0);
        Some(InboundStats {
            captured: get(0),
            local_skipped: get(1),
            excluded_source: get(2),
            no_listener: get(3),
            assign_failed: get(4),
        })
    }

    pub(crate) fn kernel_ids(&self, progs: &mut Vec<u32>, maps: &mut Vec<u32>) {
        if let Some(bpf) = &self.bpf {
            for (_, p) in bpf.programs() {
                if let Ok(info) = p.info() {
                    progs.push(info.id());
                    if let Ok(Some(ids)) = info.map_ids() {
                        maps.extend(ids);
                    }
                }
            }
        }
    }

    pub(crate) fn uninstall(&mut self) {
        if self.bpf.take().is_some() {
            tracing::info!(netns = %self.netns.display(), "traffic capture: eBPF inbound detached");
        }
    }
}

impl Drop for InboundCapture {
    fn drop(&mut self) {
        self.uninstall();
    }
}

fn v6_only(listener: &TcpListener) -> bool {
    use nix::sys::socket::{getsockopt, sockopt};
    getsockopt(listener, sockopt::Ipv6V6Only).unwrap_or(false)
}
