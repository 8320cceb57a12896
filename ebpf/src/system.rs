//! The machine as this crate sees it: capabilities, cgroup v2 directories, bpffs, processes.
//! The parsing is pure (tested here on fixed text); the thin readers around it touch /proc.

use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC};

use crate::CaptureError;

/// Capability numbers (`linux/capability.h`).
pub(crate) const CAP_NET_ADMIN: u32 = 12;
pub(crate) const CAP_SYS_ADMIN: u32 = 21;
pub(crate) const CAP_BPF: u32 = 39;

/// `CapEff` of a `/proc/<pid>/status` text.
pub(crate) fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// This process's effective capabilities (all bits set when they cannot be read, so that
/// the kernel's own answer decides).
pub(crate) fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .unwrap_or(u64::MAX)
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// What the eBPF capture misses of `caps`: loading needs CAP_BPF (CAP_SYS_ADMIN on kernels
/// before 5.8 or as a superset), attaching to a cgroup and using a sockhash need CAP_NET_ADMIN.
pub(crate) fn ebpf_caps_problem(caps: u64) -> Option<CaptureError> {
    if !has(caps, CAP_BPF) && !has(caps, CAP_SYS_ADMIN) {
        return Some(CaptureError::Capability {
            backend: "ebpf",
            missing: "CAP_BPF (or CAP_SYS_ADMIN)".to_string(),
            why: "load eBPF programs",
        });
    }
    if !has(caps, CAP_NET_ADMIN) {
        return Some(CaptureError::Capability {
            backend: "ebpf",
            missing: "CAP_NET_ADMIN".to_string(),
            why: "attach eBPF programs to a cgroup and use a sockhash",
        });
    }
    None
}

/// What the iptables capture misses of `caps`.
pub(crate) fn iptables_caps_problem(caps: u64) -> Option<CaptureError> {
    (!has(caps, CAP_NET_ADMIN)).then(|| CaptureError::Capability {
        backend: "iptables",
        missing: "CAP_NET_ADMIN".to_string(),
        why: "change the nat table",
    })
}

/// Checks that `path` is a directory on a cgroup v2 filesystem; returns it canonicalized.
pub(crate) fn cgroup2_dir(path: &Path) -> Result<PathBuf, CaptureError> {
    let fail = |reason: String| CaptureError::Cgroup {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(fail("cgroup_path is not set".to_string()));
    }
    let meta = std::fs::metadata(path).map_err(|e| {
        fail(match e.kind() {
            std::io::ErrorKind::NotFound => "no such directory".to_string(),
            _ => e.to_string(),
        })
    })?;
    if !meta.is_dir() {
        return Err(fail("not a directory".to_string()));
    }
    let fs = statfs(path).map_err(|e| fail(format!("statfs: {e}")))?;
    if fs.filesystem_type() != CGROUP2_SUPER_MAGIC {
        return Err(fail(format!(
            "the filesystem there is not cgroup2 (type {:#x}); mount cgroup v2 \
             (`mount -t cgroup2 none /sys/fs/cgroup/unified`) and point cgroup_path into it",
            fs.filesystem_type().0
        )));
    }
    path.canonicalize().map_err(|e| fail(e.to_string()))
}

/// Is this cgroup v2 directory the root of its hierarchy (its parent is not cgroup2)?
pub(crate) fn is_cgroup2_root(path: &Path) -> bool {
    path.parent()
        .is_none_or(|p| statfs(p).map_or(true, |fs| fs.filesystem_type() != CGROUP2_SUPER_MAGIC))
}

/// Mount points of cgroup v2 filesystems in a `/proc/self/mountinfo` text.
pub(crate) fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <type> ..."
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount_point = left.split_whitespace().nth(4)?;
            (fstype == "cgroup2").then(|| PathBuf::from(unescape_mountinfo(mount_point)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let oct: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&oct, 8) {
                Ok(b) => out.push(b as char),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&oct);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The cgroup v2 path (relative to the hierarchy root) in a `/proc/<pid>/cgroup` text.
pub(crate) fn own_cgroup_rel(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().trim_start_matches('/').to_string())
}

/// The cgroup v2 directory this process is in.
pub(crate) fn own_cgroup() -> Result<PathBuf, CaptureError> {
    let fail = |reason: String| CaptureError::Cgroup {
        path: PathBuf::from("/proc/self/cgroup"),
        reason,
    };
    let cg = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| fail(e.to_string()))?;
    let rel = own_cgroup_rel(&cg)
        .ok_or_else(|| fail("this process is in no cgroup v2 hierarchy".to_string()))?;
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| fail(e.to_string()))?;
    let mounts = cgroup2_mounts(&mountinfo);
    mounts
        .iter()
        .map(|m| m.join(&rel))
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            fail(format!(
                "cgroup v2 path /{rel} of this process is under no cgroup2 mount ({mounts:?}); \
                 set proxy_cgroup_path"
            ))
        })
}

/// Is `path` on a bpffs?
pub(crate) fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
}

/// Is there a process with this pid?
pub(crate) fn pid_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(_) => true, // EPERM: it exists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_parse_and_explain() {
        let status = "Name:\tmosn\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        let caps = parse_cap_eff(status).unwrap();
        assert!(ebpf_caps_problem(caps).is_none());
        assert!(iptables_caps_problem(caps).is_none());
        // a root process whose bounding set lost CAP_BPF and CAP_SYS_ADMIN
        let no_bpf = caps & !(1 << CAP_BPF) & !(1 << CAP_SYS_ADMIN);
        let e = ebpf_caps_problem(no_bpf).unwrap().to_string();
        assert!(
            e.contains("missing capability CAP_BPF (or CAP_SYS_ADMIN)"),
            "{e}"
        );
        // CAP_SYS_ADMIN alone still loads
        assert!(ebpf_caps_problem(caps & !(1 << CAP_BPF)).is_none());
        let e = ebpf_caps_problem(1 << CAP_BPF).unwrap().to_string();
        assert!(e.contains("CAP_NET_ADMIN"), "{e}");
        assert!(iptables_caps_problem(0)
            .unwrap()
            .to_string()
            .contains("CAP_NET_ADMIN"));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn cgroup2_mounts_and_own_cgroup() {
        let mountinfo = "\
35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
36 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
37 25 0:32 / /mnt/with\\040space rw - cgroup2 none rw
";
        assert_eq!(
            cgroup2_mounts(mountinfo),
            [
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/mnt/with space")
            ]
        );
        let proc_cgroup = "9:name=systemd:/\n4:memory:/x\n0::/mosn/proxy\n";
        assert_eq!(own_cgroup_rel(proc_cgroup).as_deref(), Some("mosn/proxy"));
        assert_eq!(own_cgroup_rel("0::/\n").as_deref(), Some(""));
        assert_eq!(own_cgroup_rel("4:memory:/x\n"), None);
    }

    #[test]
    fn cgroup_errors_say_what_is_wrong() {
        let e = cgroup2_dir(Path::new("/nonexistent/mosn-cgroup")).unwrap_err();
        assert!(e.to_string().contains("no such directory"), "{e}");
        let e = cgroup2_dir(Path::new("/proc")).unwrap_err();
        assert!(e.to_string().contains("not cgroup2"), "{e}");
        let e = cgroup2_dir(Path::new("")).unwrap_err();
        assert!(e.to_string().contains("cgroup_path is not set"), "{e}");
    }

    #[test]
    fn this_process_is_alive() {
        assert!(pid_alive(std::process::id() as i32));
    }
}
