//! 2 MiB hugepages for a DPDK test: how many are free, and a reservation that writes the old
//! `nr_hugepages` back when dropped. Shared by `dataplane/net/tests/dpdk.rs` and the root
//! crate's `tests/dpdk.rs` (each includes this file with `#[path]`).

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// `HugePages_Free` of /proc/meminfo (0 when unreadable).
pub fn hugepages_free() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// At least `pages` free hugepages for one test (reserved only when fewer are free).
pub struct Hugepages {
    old: Option<String>,
}

impl Hugepages {
    /// `None` when the kernel cannot provide them (memory too fragmented): the test then runs
    /// on plain memory or skips, as it sees fit.
    pub fn reserve(pages: u64) -> Option<Hugepages> {
        let free = hugepages_free();
        if free >= pages {
            return Some(Hugepages { old: None });
        }
        let old = std::fs::read_to_string(NR_HUGEPAGES).ok()?;
        let total: u64 = old.trim().parse().ok()?;
        let guard = Hugepages {
            old: Some(old.trim().to_owned()),
        };
        std::fs::write(NR_HUGEPAGES, (total + pages - free).to_string()).ok()?;
        (hugepages_free() >= pages).then_some(guard)
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            if let Err(e) = std::fs::write(NR_HUGEPAGES, old) {
                eprintln!("!!! could not restore {NR_HUGEPAGES} to {old}: {e}");
            }
        }
    }
}
