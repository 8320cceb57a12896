//! Why a capture could not be installed. Each variant says what is missing and where, in
//! words an operator can act on.

use std::path::PathBuf;

/// A capture install (or uninstall) failure.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The spec itself is inconsistent (nothing was touched).
    #[error("traffic capture: {0}")]
    Spec(String),

    /// The process lacks a capability the backend needs.
    #[error(
        "traffic capture ({backend}): missing capability {missing}, needed to {why}; \
         run mosn as root or grant it (e.g. `setcap cap_bpf,cap_net_admin+ep`)"
    )]
    Capability {
        /// `ebpf` or `iptables`.
        backend: &'static str,
        /// e.g. `CAP_BPF (or CAP_SYS_ADMIN)`.
        missing: String,
        /// What the capability is needed for.
        why: &'static str,
    },

    /// The cgroup directory is missing or is not on a cgroup v2 filesystem.
    #[error("traffic capture (ebpf): no cgroup v2 at {}: {reason}", path.display())]
    Cgroup {
        /// The configured path.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// The kernel refused to load a program.
    #[error(
        "traffic capture (ebpf): the kernel refused program {program}: {error}\n\
         verifier log (last lines):\n{verifier_log}"
    )]
    ProgramRejected {
        /// The program's name (`mosn_connect4`, ...).
        program: String,
        /// The errno of BPF_PROG_LOAD.
        error: std::io::Error,
        /// The tail of the verifier log.
        verifier_log: String,
    },

    /// Any other eBPF step failed (object parse, map creation, map update, attach).
    #[error("traffic capture (ebpf): {step} failed: {detail}")]
    Ebpf {
        /// What was being done, e.g. `attaching mosn_connect4 to /sys/fs/cgroup/unified/app`.
        step: String,
        /// The error and its causes, joined.
        detail: String,
    },

    /// Pinning under the bpffs directory failed.
    #[error("traffic capture (ebpf): cannot pin maps under {}: {reason}", path.display())]
    Pin {
        /// The pin directory (or its root).
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// An iptables command failed.
    #[error("traffic capture (iptables): `{command}` failed: {detail}")]
    Iptables {
        /// The command line.
        command: String,
        /// Its stderr, or why it could not run.
        detail: String,
    },

    /// The eBPF capture failed and so did the iptables fallback.
    #[error("{ebpf}; the iptables fallback failed too: {iptables}")]
    FallbackFailed {
        /// Why eBPF failed.
        ebpf: Box<CaptureError>,
        /// Why iptables failed.
        iptables: Box<CaptureError>,
    },
}

/// Joins an error and its `source()` chain into one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        cur = s.source();
    }
    text
}

/// The last `lines` non-empty lines of a verifier log.
pub(crate) fn log_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = all.len().saturating_sub(lines);
    if all.is_empty() {
        return "(empty)".to_string();
    }
    all[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let log =
            "0: r1 = r0\n\n1: exit\ninvalid bpf_context access off=32 size=8\nprocessed 2 insns\n";
        assert_eq!(
            log_tail(log, 2),
            "invalid bpf_context access off=32 size=8\nprocessed 2 insns"
        );
        assert_eq!(log_tail("", 5), "(empty)");
    }

    #[test]
    fn messages_name_what_is_missing() {
        let e = CaptureError::Capability {
            backend: "ebpf",
            missing: "CAP_BPF (or CAP_SYS_ADMIN)".to_string(),
            why: "load eBPF programs",
        };
        assert!(e.to_string().contains("missing capability CAP_BPF"), "{e}");
        let e = CaptureError::Cgroup {
            path: "/sys/fs/cgroup/unified/nope".into(),
            reason: "no such directory".to_string(),
        };
        assert_eq!(
            e.to_string(),
            "traffic capture (ebpf): no cgroup v2 at /sys/fs/cgroup/unified/nope: no such directory"
        );
    }
}
