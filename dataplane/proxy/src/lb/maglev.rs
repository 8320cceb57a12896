//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted as Envoy does.
//!
//! Every host has a permutation of the `M` table slots derived from its address only
//! (`offset = h1 % M`, `skip = h2 % (M - 1) + 1`, `M` prime), so the table depends on the
//! host set and not on the order hosts are listed in, the seed, or the process: every proxy
//! builds the same table. Hosts take turns claiming their next free preferred slot. Weighted:
//! in each turn a host earns its weight in credit and claims one slot per `max_weight` of
//! credit, so slot counts follow weights while the heaviest host claims one slot per turn.

use std::sync::Arc;

use super::{mix64, Filter, GOLDEN};
use crate::host::{clamp_weight, Host};

/// Table size for fewer than [`LARGE_SET`] hosts (prime, as MOSN and Envoy use).
pub(super) const SMALL_M: u64 = 65_537;
/// Table size for at least [`LARGE_SET`] hosts (prime), keeping ~20 slots per host.
pub(super) const BIG_M: u64 = 655_373;
/// Host count from which [`BIG_M`] is used (MOSN's threshold).
pub(super) const LARGE_SET: usize = 30_000;

/// Extra probes with a re-mixed hash when the first slot's host is unusable.
const REHASH_TRIES: u32 = 8;

const SEED_OFFSET: u64 = 0x6d61_676c_6576_5f6f; // "maglev_o"
const SEED_SKIP: u64 = 0x6d61_676c_6576_5f73; // "maglev_s"
const SEED_KEY: u64 = 0x6d6f_736e_5f6b_6579; // "mosn_key"

/// A 64-bit hash of `data` (not cryptographic; stable across processes and platforms).
pub(crate) fn hash_bytes(data: &[u8], seed: u64) -> u64 {
    let mut h = seed ^ (data.len() as u64).wrapping_mul(GOLDEN);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        h = mix64(h ^ u64::from_le_bytes(b)).wrapping_add(GOLDEN);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = mix64(h ^ u64::from_le_bytes(b) ^ 0xff);
    }
    mix64(h)
}

/// The hash a request key is looked up with.
pub(super) fn key_hash(key: &[u8]) -> u64 {
    hash_bytes(key, SEED_KEY)
}

/// A built Maglev lookup table: slot -> index into the host list.
pub(super) struct MaglevTable {
    slots: Box<[u32]>,
}

impl std::fmt::Debug for MaglevTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaglevTable")
            .field("size", &self.size())
            .finish()
    }
}

/// Per-host state while filling the table.
struct Filler {
    host: u32,
    next: u64,
    skip: u64,
    weight: u64,
    credit: u64,
}

impl MaglevTable {
    /// Builds the table for `hosts` with the size Maglev needs for that many hosts.
    pub(super) fn build(hosts: &[Arc<Host>]) -> Self {
        let m = if hosts.len() >= LARGE_SET {
            BIG_M
        } else {
            SMALL_M
        };
        Self::build_with_size(hosts, m)
    }

    /// Builds a table of `m` slots (`m` should be prime and larger than the host count).
    pub(super) fn build_with_size(hosts: &[Arc<Host>], m: u64) -> Self {
        if hosts.is_empty() || m < 2 {
            return MaglevTable {
                slots: Box::new([]),
            };
        }
        // Turn order by identity, not by position in the list, so the table is the same
        // whatever order the control plane lists hosts in.
        let mut fillers: Vec<(u64, String, Filler)> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let name = h.address().to_string();
                let offset = hash_bytes(name.as_bytes(), SEED_OFFSET) % m;
                let skip = hash_bytes(name.as_bytes(), SEED_SKIP) % (m - 1) + 1;
                let filler = Filler {
                    host: i as u32,
                    next: offset,
                    skip,
                    weight: u64::from(clamp_weight(h.weight())),
                    credit: 0,
                };
                (offset, name, filler)
            })
            .collect();
        fillers.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut fillers: Vec<Filler> = fillers.into_iter().map(|(_, _, f)| f).collect();
        let max_weight = fillers.iter().map(|f| f.weight).max().unwrap_or(1);

        const EMPTY: u32 = u32::MAX;
        let mut slots = vec![EMPTY; m as usize];
        let mut filled = 0u64;
        'fill: loop {
            for f in fillers.iter_mut() {
                f.credit += f.weight;
                while f.credit >= max_weight {
                    f.credit -= max_weight;
                    // Walk this host's permutation to its next free slot. With `m` prime
                    // the permutation visits every slot, so `m` steps always suffice; the
                    // linear search only guards a non-prime size.
                    let mut claimed = None;
                    for _ in 0..m {
                        let slot = f.next as usize;
                        f.next = (f.next + f.skip) % m;
                        if slots.get(slot) == Some(&EMPTY) {
                            claimed = Some(slot);
                            break;
                        }
                    }
                    let claimed = claimed.or_else(|| slots.iter().position(|&s| s == EMPTY));
                    if let Some(s) = claimed.and_then(|slot| slots.get_mut(slot)) {
                        *s = f.host;
                        filled += 1;
                    }
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
        MaglevTable {
            slots: slots.into_boxed_slice(),
        }
    }

    /// Table size.
    pub(super) fn size(&self) -> usize {
        self.slots.len()
    }

    /// Host index for `hash`, ignoring health.
    pub(super) fn get(&self, hash: u64) -> Option<usize> {
        let m = self.slots.len() as u64;
        if m == 0 {
            return None;
        }
        self.slots.get((hash % m) as usize).map(|&i| i as usize)
    }

    /// Host index for `hash` among the hosts `filter` accepts. When the slot's host is
    /// rejected the hash is re-mixed and looked up again, so the keys of an unusable host
    /// spread over the others in proportion to their share of the table while every other
    /// key stays put; after [`REHASH_TRIES`] misses, a deterministic walk of the host list.
    pub(super) fn lookup(
        &self,
        hash: u64,
        hosts: &[Arc<Host>],
        filter: Filter<'_>,
    ) -> Option<usize> {
        let mut h = hash;
        for _ in 0..=REHASH_TRIES {
            let i = self.get(h)?;
            if hosts.get(i).is_some_and(|host| filter.accepts(host)) {
                return Some(i);
            }
            h = mix64(h ^ SEED_KEY).wrapping_add(GOLDEN);
        }
        let n = hosts.len();
        let start = (hash % n.max(1) as u64) as usize;
        (0..n)
            .map(|j| (start + j) % n)
            .find(|&i| hosts.get(i).is_some_and(|host| filter.accepts(host)))
    }

    /// Slots owned by each host index (tests).
    #[cfg(test)]
    pub(super) fn shares(&self, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in self.slots.iter() {
            c[s as usize] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_prime(n: u64) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    fn hosts(n: usize) -> Vec<Arc<Host>> {
        (0..n)
            .map(|i| Host::test(&format!("10.0.{}.{}:80", i / 250, i % 250 + 1), 1))
            .collect()
    }

    #[test]
    fn table_sizes_are_prime() {
        assert!(is_prime(SMALL_M));
        assert!(is_prime(BIG_M));
    }

    #[test]
    fn equal_weights_get_equal_shares() {
        let hs = hosts(100);
        let t = MaglevTable::build(&hs);
        assert_eq!(t.size(), SMALL_M as usize);
        let shares = t.shares(100);
        // Hosts claim one slot per turn: every share is floor or ceil of M / n.
        let lo = SMALL_M as usize / 100;
        assert!(shares.iter().all(|&s| s == lo || s == lo + 1), "{shares:?}");
        assert_eq!(shares.iter().sum::<usize>(), SMALL_M as usize);
    }

    #[test]
    fn order_of_hosts_does_not_matter() {
        let hs = hosts(7);
        let mut rev = hs.clone();
        rev.reverse();
        let a = MaglevTable::build(&hs);
        let b = MaglevTable::build(&rev);
        for h in (0..1000u64).map(mix64) {
            let x = a.get(h).map(|i| hs[i].address());
            let y = b.get(h).map(|i| rev[i].address());
            assert_eq!(x, y);
        }
    }

    #[test]
    fn weighted_shares_follow_weights() {
        let hs = vec![
            Host::test("10.0.0.1:80", 1),
            Host::test("10.0.0.2:80", 2),
            Host::test("10.0.0.3:80", 3),
        ];
        let t = MaglevTable::build(&hs);
        let shares = t.shares(3);
        let unit = SMALL_M as f64 / 6.0;
        for (i, &s) in shares.iter().enumerate() {
            let want = unit * (i + 1) as f64;
            assert!((s as f64 - want).abs() <= 3.0, "{shares:?}");
        }
    }

    #[test]
    fn hash_is_stable() {
        // Pinned so that a change of the key hash (which would move keys between hosts on
        // upgrade) is a visible decision.
        assert_eq!(hash_bytes(b"mosn", 0), 0x252b_eee0_6821_e13e);
        assert_eq!(key_hash(b"user-42"), 0x0b8d_ce85_2143_1a32);
        assert_ne!(hash_bytes(b"a", 0), hash_bytes(b"b", 0));
        assert_ne!(hash_bytes(b"abcdefgh", 0), hash_bytes(b"abcdefgh\0", 0));
        assert_ne!(key_hash(b"x"), hash_bytes(b"x", 0));
    }
}
