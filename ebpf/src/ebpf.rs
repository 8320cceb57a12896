//! The eBPF backend: loads `mosn_capture.bpf.o` with aya, fills its maps from the spec and
//! attaches its programs (links are owned by the `Ebpf` value: dropping it detaches them,
//! and so does the kernel when the process dies). Outbound (cgroup programs) when the spec
//! has destinations; inbound (`sk_lookup`, src/inbound.rs) when it has inbound ports.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, SockHash};
use aya::programs::{
    CgroupAttachMode, CgroupSockAddr, CgroupSockopt, Program, ProgramError, SkMsg, SockOps,
};
use aya::{Ebpf, EbpfError, EbpfLoader};

use crate::error::{chain, log_tail};
use crate::inbound::InboundCapture;
use crate::pod::{MosnAddr, MosnConfig, MosnSockKey};
use crate::spec::CaptureSpec;
use crate::{system, CaptureError, CaptureStats};

// Flag bits of `struct mosn_config` (mosn_capture.h).
const F_SOCKMAP: u32 = 1 << 0;
const F_IPV6: u32 = 1 << 1;
const F_UID: u32 = 1 << 2;
const F_MARK: u32 = 1 << 3;

/// Capacity of each destination trie (the `max_entries` compiled into the object).
const DST_TRIE_CAPACITY: usize = 65536;
/// Capacity of the `exclude_ports` hash.
const EXCLUDE_PORTS_CAPACITY: usize = 1024;
/// Cgroup attachments are bpf links (kernel >= 5.7), which always coexist with other
/// programs on the cgroup and its ancestors (ALLOW_MULTI semantics); the link API takes no
/// attach flags, so the mode must be the flag-less `Single`.
const LINK_MODE: CgroupAttachMode = CgroupAttachMode::Single;
/// Lines of verifier log kept in [`CaptureError::ProgramRejected`].
const VERIFIER_TAIL_LINES: usize = 20;

/// The programs of the object, by symbol name.
pub(crate) const CONNECT4: &str = "mosn_connect4";
pub(crate) const CONNECT6: &str = "mosn_connect6";
pub(crate) const SOCKOPS: &str = "mosn_sockops";
pub(crate) const SK_MSG: &str = "mosn_sk_msg";
pub(crate) const GETSOCKOPT: &str = "mosn_getsockopt";

/// Maps pinned when a pin root is configured (`sock_hash` never is: a pinned sockhash would
/// keep its `sk_msg` program alive after a crash).
const PINNED_MAPS: &[&str] = &[
    "config",
    "dst4",
    "dst6",
    "exclude_ports",
    "orig_by_peer",
    "stats",
];

/// An installed eBPF capture.
pub(crate) struct EbpfCapture {
    /// The outbound programs (`None` without destinations).
    bpf: Option<Ebpf>,
    /// The inbound program (`None` without inbound ports).
    inbound: Option<InboundCapture>,
    pin_dir: Option<PathBuf>,
    /// (program, cgroup) pairs, for logs and tests.
    attached: Vec<(&'static str, PathBuf)>,
}

impl std::fmt::Debug for EbpfCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfCapture")
            .field("attached", &self.attached)
            .field("inbound", &self.inbound)
            .field("pin_dir", &self.pin_dir)
            .finish()
    }
}

pub(crate) fn ebpf_err(
    step: impl Into<String>,
    e: &(dyn std::error::Error + 'static),
) -> CaptureError {
    CaptureError::Ebpf {
        step: step.into(),
        detail: chain(e),
    }
}

pub(crate) fn load_err(program: &str, e: ProgramError) -> CaptureError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => CaptureError::ProgramRejected {
            program: program.to_string(),
            error: io_error,
            verifier_log: log_tail(&verifier_log.to_string(), VERIFIER_TAIL_LINES),
        },
        other => ebpf_err(format!("loading program {program}"), &other),
    }
}

pub(crate) fn object_err(e: EbpfError) -> CaptureError {
    match e {
        EbpfError::MapError(m) => ebpf_err(
            "creating the maps (is the process missing CAP_BPF, or memlock limited?)",
            &m,
        ),
        other => ebpf_err("parsing the eBPF object", &other),
    }
}

impl EbpfCapture {
    pub(crate) fn install(
        spec: &CaptureSpec,
        object: &[u8],
        inbound_object: &[u8],
        inbound_listener: Option<&TcpListener>,
    ) -> Result<EbpfCapture, CaptureError> {
        if let Some(e) = system::ebpf_caps_problem(system::effective_caps()) {
            return Err(e);
        }
        // Inbound first: it is the cheaper one to check, and refuses early without a listener.
        let inbound = if spec.inbound_ports.is_empty() {
            None
        } else {
            let listener = inbound_listener.ok_or_else(|| {
                CaptureError::Spec(format!(
                    "inbound_ports {:?} are captured with eBPF, which needs the inbound \
                     listener's socket (on port {}); none was given",
                    spec.inbound_ports, spec.inbound_port
                ))
            })?;
            Some(InboundCapture::install(spec, inbound_object, listener)?)
        };
        let inbound_attached: Vec<(&'static str, PathBuf)> = inbound
            .iter()
            .map(|i| (crate::inbound::SK_LOOKUP, i.netns().to_path_buf()))
            .collect();
        if spec.destinations.is_empty() {
            return Ok(EbpfCapture {
                bpf: None,
                inbound,
                pin_dir: None,
                attached: inbound_attached,
            });
        }
        let app = system::cgroup2_dir(&spec.cgroup)?;
        let proxy = match &spec.proxy_cgroup {
            Some(p) => system::cgroup2_dir(p)?,
            None => system::own_cgroup()?,
        };
        if proxy.starts_with(&app) && spec.proxy_uid.is_none() && spec.proxy_mark.is_none() {
            return Err(CaptureError::Spec(format!(
                "the proxy's cgroup {} is the captured cgroup {} or inside it, so the proxy's \
                 own connections would be captured too (a loop): set proxy_mark or proxy_uid, \
                 or run the proxy in another cgroup",
                proxy.display(),
                app.display()
            )));
        }
        let v4 = spec.v4_rules().count();
        let v6 = spec.v6_rules().count();
        if v4.max(v6) > DST_TRIE_CAPACITY {
            return Err(CaptureError::Spec(format!(
                "{} destination rules, at most {DST_TRIE_CAPACITY} per address family",
                v4.max(v6)
            )));
        }
        if spec.exclude_ports.len() > EXCLUDE_PORTS_CAPACITY {
            return Err(CaptureError::Spec(format!(
                "{} exclude_ports, at most {EXCLUDE_PORTS_CAPACITY}",
                spec.exclude_ports.len()
            )));
        }

        let mut bpf = EbpfLoader::new().load(object).map_err(object_err)?;
        fill_maps(&mut bpf, spec, v6 > 0)?;

        let mut cap = EbpfCapture {
            bpf: None,
            inbound,
            pin_dir: None,
            attached: inbound_attached,
        };
        let app_file = open_cgroup(&app)?;
        let proxy_file = open_cgroup(&proxy)?;
        // sockops and getsockopt run where the sockets live: the app's (client side) and the
        // proxy's (accepted side). A program attached to an ancestor already covers its
        // descendants, so attach once when the proxy's cgroup contains the app's.
        let mut sock_targets = vec![(&proxy_file, proxy.as_path())];
        if !app.starts_with(&proxy) {
            sock_targets.push((&app_file, app.as_path()));
        }
        if system::is_cgroup2_root(&proxy) {
            tracing::warn!(
                cgroup = %proxy.display(),
                "traffic capture: the proxy runs in the cgroup v2 root, so the sockops and \
                 getsockopt programs apply host-wide (they act only on redirected connections)"
            );
        }

        for name in [CONNECT4, CONNECT6] {
            let prog: &mut CgroupSockAddr = program(&mut bpf, name)?;
            prog.load().map_err(|e| load_err(name, e))?;
            prog.attach(&app_file, LINK_MODE)
                .map_err(|e| attach_err(name, &app, &e))?;
            cap.attached.push((name, app.clone()));
        }
        {
            let prog: &mut SockOps = program(&mut bpf, SOCKOPS)?;
            prog.load().map_err(|e| load_err(SOCKOPS, e))?;
            for (file, path) in &sock_targets {
                prog.attach(*file, LINK_MODE)
                    .map_err(|e| attach_err(SOCKOPS, path, &e))?;
                cap.attached.push((SOCKOPS, path.to_path_buf()));
            }
        }
        {
            let prog: &mut CgroupSockopt = program(&mut bpf, GETSOCKOPT)?;
            prog.load().map_err(|e| load_err(GETSOCKOPT, e))?;
            for (file, path) in &sock_targets {
                prog.attach(*file, LINK_MODE)
                    .map_err(|e| attach_err(GETSOCKOPT, path, &e))?;
                cap.attached.push((GETSOCKOPT, path.to_path_buf()));
            }
        }
        if spec.sockmap {
            let map = bpf
                .map("sock_hash")
                .ok_or_else(|| missing("map", "sock_hash"))?;
            let hash = SockHash::<_, MosnSockKey>::try_from(map)
                .map_err(|e| ebpf_err("opening sock_hash", &e))?;
            let fd = hash
                .fd()
                .try_clone()
                .map_err(|e| ebpf_err("duplicating the sock_hash fd", &e))?;
            let prog: &mut SkMsg = program(&mut bpf, SK_MSG)?;
            prog.load().map_err(|e| load_err(SK_MSG, e))?;
            prog.attach(&fd)
                .map_err(|e| ebpf_err(format!("attaching {SK_MSG} to sock_hash"), &e))?;
            cap.attached.push((SK_MSG, PathBuf::from("sock_hash")));
        }
        if let Some(root) = &spec.pin_root {
            cap.pin_dir = Some(pin_maps(&bpf, root, &spec.instance)?);
        }
        cap.bpf = Some(bpf);
        tracing::info!(
            cgroup = %app.display(),
            proxy_cgroup = %proxy.display(),
            outbound_port = spec.outbound_port,
            sockmap = spec.sockmap,
            "traffic capture: eBPF programs attached"
        );
        Ok(cap)
    }

    pub(crate) fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    pub(crate) fn attached(&self) -> &[(&'static str, PathBuf)] {
        &self.attached
    }

    pub(crate) fn stats(&self) -> Option<CaptureStats> {
        let inbound = self.inbound.as_ref().and_then(InboundCapture::stats);
        let Some(bpf) = self.bpf.as_ref() else {
            return inbound.map(|inbound| CaptureStats {
                inbound,
                ..CaptureStats::default()
            });
        };
        let stats = Array::<_, u64>::try_from(bpf.map("stats")?).ok()?;
        let get = |i: u32| stats.get(&i, 0).unwrap_or(0);
        Some(CaptureStats {
            inbound: inbound.unwrap_or_default(),
            connect4_redirects: get(0),
            connect6_redirects: get(1),
            proxy_own_skipped: get(2),
            established: get(3),
            sockhash_adds: get(4),
            msg_redirects: get(5),
            original_dst_answers: get(6),
            original_dst_misses: get(7),
        })
    }

    pub(crate) fn original_dst(&self, peer: SocketAddr) -> Option<SocketAddr> {
        let bpf = self.bpf.as_ref()?;
        let map = HashMap::<_, MosnAddr, MosnAddr>::try_from(bpf.map("orig_by_peer")?).ok()?;
        map.get(&MosnAddr::from_socket_addr(peer), 0)
            .ok()
            .and_then(MosnAddr::to_socket_addr)
    }

    /// Ids of the loaded programs and of the maps they use.
    pub(crate) fn kernel_ids(&self) -> (Vec<u32>, Vec<u32>) {
        let mut progs = Vec::new();
        let mut maps = Vec::new();
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
        if let Some(inbound) = &self.inbound {
            inbound.kernel_ids(&mut progs, &mut maps);
        }
        maps.sort_unstable();
        maps.dedup();
        (progs, maps)
    }

    /// Detaches and unloads everything and removes the pins; reports what could not be
    /// removed.
    pub(crate) fn uninstall(&mut self) -> Result<(), CaptureError> {
        let pins = self.pin_dir.take().map(|dir| {
            std::fs::remove_dir_all(&dir).map_err(|e| CaptureError::Pin {
                path: dir.clone(),
                reason: format!("removing the pin directory: {e}"),
            })
        });
        if let Some(mut inbound) = self.inbound.take() {
            inbound.uninstall();
        }
        if self.bpf.take().is_some() {
            tracing::info!("traffic capture: eBPF programs detached");
        }
        pins.unwrap_or(Ok(()))
    }
}

impl Drop for EbpfCapture {
    fn drop(&mut self) {
        if let Err(e) = self.uninstall() {
            tracing::warn!("{e}");
        }
    }
}

fn missing(kind: &str, name: &str) -> CaptureError {
    CaptureError::Ebpf {
        step: format!("finding {kind} {name} in the eBPF object"),
        detail: "not present (is the object from another mosn version?)".to_string(),
    }
}

pub(crate) fn program<'a, T>(bpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, CaptureError>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let prog = bpf
        .program_mut(name)
        .ok_or_else(|| missing("program", name))?;
    prog.try_into()
        .map_err(|e: ProgramError| ebpf_err(format!("program {name} has an unexpected type"), &e))
}

fn attach_err(program: &str, cgroup: &Path, e: &ProgramError) -> CaptureError {
    let mut detail = chain(e);
    if detail.contains("Operation not permitted") || detail.contains("os error 1)") {
        detail.push_str(
            " (a program attached to a parent cgroup without BPF_F_ALLOW_MULTI blocks this, \
             as does a missing CAP_NET_ADMIN)",
        );
    }
    CaptureError::Ebpf {
        step: format!("attaching {program} to {}", cgroup.display()),
        detail,
    }
}

fn open_cgroup(path: &Path) -> Result<File, CaptureError> {
    File::open(path).map_err(|e| CaptureError::Cgroup {
        path: path.to_path_buf(),
        reason: format!("cannot open: {e}"),
    })
}

pub(crate) fn map_mut<'a>(
    bpf: &'a mut Ebpf,
    name: &str,
) -> Result<&'a mut aya::maps::Map, CaptureError> {
    bpf.map_mut(name).ok_or_else(|| missing("map", name))
}

fn fill_maps(bpf: &mut Ebpf, spec: &CaptureSpec, any_v6: bool) -> Result<(), CaptureError> {
    let mut flags = 0;
    if spec.sockmap {
        flags |= F_SOCKMAP;
    }
    if any_v6 {
        flags |= F_IPV6;
    }
    if spec.proxy_uid.is_some() {
        flags |= F_UID;
    }
    if spec.proxy_mark.is_some() {
        flags |= F_MARK;
    }
    let o6 = spec.proxy_ip6.octets();
    let word = |i: usize| u32::from_ne_bytes([o6[i], o6[i + 1], o6[i + 2], o6[i + 3]]);
    let config = MosnConfig {
        flags,
        proxy_uid: spec.proxy_uid.unwrap_or(0),
        proxy_mark: spec.proxy_mark.unwrap_or(0),
        proxy_ip4: u32::from_ne_bytes(spec.proxy_ip4.octets()),
        proxy_ip6: [word(0), word(4), word(8), word(12)],
        outbound_port: spec.outbound_port.to_be(),
        _pad: 0,
    };
    let update = |what: &str, e: aya::maps::MapError| ebpf_err(format!("filling map {what}"), &e);

    // Captures first, then exclusions: on an identical (range, port) the exclusion wins.
    let mut v4: Vec<_> = spec.v4_rules().collect();
    v4.sort_by_key(|(_, _, capture)| !capture);
    let mut v6: Vec<_> = spec.v6_rules().collect();
    v6.sort_by_key(|(_, _, capture)| !capture);
    {
        let mut trie = LpmTrie::<&mut MapData, [u8; 6], u32>::try_from(map_mut(bpf, "dst4")?)
            .map_err(|e| update("dst4", e))?;
        for (net, port, capture) in v4 {
            let mut data = [0u8; 6];
            data[..2].copy_from_slice(&port.unwrap_or(0).to_be_bytes());
            data[2..].copy_from_slice(&net.addr().octets());
            let key = Key::new(16 + u32::from(net.prefix_len()), data);
            trie.insert(&key, u32::from(capture), 0)
                .map_err(|e| update("dst4", e))?;
        }
    }
    {
        let mut trie = LpmTrie::<&mut MapData, [u8; 18], u32>::try_from(map_mut(bpf, "dst6")?)
            .map_err(|e| update("dst6", e))?;
        for (net, port, capture) in v6 {
            let mut data = [0u8; 18];
            data[..2].copy_from_slice(&port.unwrap_or(0).to_be_bytes());
            data[2..].copy_from_slice(&net.addr().octets());
            let key = Key::new(16 + u32::from(net.prefix_len()), data);
            trie.insert(&key, u32::from(capture), 0)
                .map_err(|e| update("dst6", e))?;
        }
    }
    {
        let mut ports = HashMap::<&mut MapData, u16, u8>::try_from(map_mut(bpf, "exclude_ports")?)
            .map_err(|e| update("exclude_ports", e))?;
        for port in &spec.exclude_ports {
            ports
                .insert(port.to_be(), 1, 0)
                .map_err(|e| update("exclude_ports", e))?;
        }
    }
    // The config goes last: until it is set the programs let every connection through.
    let mut cfg = Array::<&mut MapData, MosnConfig>::try_from(map_mut(bpf, "config")?)
        .map_err(|e| update("config", e))?;
    cfg.set(0, config, 0).map_err(|e| update("config", e))?;
    Ok(())
}

/// Pins the data maps under `<root>/<instance>-<pid>` (bpffs refuses names with dots), after
/// removing the directories that crashed instances of the same name left behind.
fn pin_maps(bpf: &Ebpf, root: &Path, instance: &str) -> Result<PathBuf, CaptureError> {
    let fail = |path: &Path, reason: String| CaptureError::Pin {
        path: path.to_path_buf(),
        reason,
    };
    if !root.is_dir() {
        std::fs::create_dir_all(root).map_err(|e| fail(root, e.to_string()))?;
    }
    if !system::is_bpffs(root) {
        return Err(fail(
            root,
            "not a bpffs (mount one: `mount -t bpf bpf /sys/fs/bpf`), or leave pinning off"
                .to_string(),
        ));
    }
    remove_stale_pins(root, instance);
    let dir = root.join(format!("{instance}-{}", std::process::id()));
    if dir.exists() {
        return Err(fail(
            &dir,
            format!("already exists: this process already runs a capture named {instance:?}"),
        ));
    }
    std::fs::create_dir(&dir).map_err(|e| fail(&dir, e.to_string()))?;
    for name in PINNED_MAPS {
        let result = match bpf.map(name) {
            Some(map) => map.pin(dir.join(name)).map_err(|e| chain(&e)),
            None => Err("not in the object".to_string()),
        };
        if let Err(reason) = result {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(fail(&dir.join(name), reason));
        }
    }
    Ok(dir)
}

/// Removes `<root>/<instance>-<pid>` directories whose process is gone (a crash or a kill
/// left them). Returns the removed directories.
pub(crate) fn remove_stale_pins(root: &Path, instance: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(instance))
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if system::pid_alive(pid) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::warn!(
                    dir = %path.display(),
                    "traffic capture: removed the pins of a previous instance (pid {pid}) that did not exit cleanly"
                );
                removed.push(path);
            }
            Err(e) => {
                tracing::warn!(dir = %path.display(), "traffic capture: cannot remove stale pins: {e}")
            }
        }
    }
    removed
}
