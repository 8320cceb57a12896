//! Weighted round-robin schedules, precomputed once per host set and read by an atomic
//! counter: `at(k)` is the host for the k-th pick, periodic with period `Σw / gcd(w)`.
//!
//! - [`Schedule::Rotation`]: all weights equal, plain rotation, no memory.
//! - [`Schedule::Table`]: earliest-deadline-first order, the schedule Envoy's and MOSN's
//!   EDF schedulers produce, unrolled over one period. Host `i`'s `c`-th pick has deadline
//!   `(c + ½) / w_i`; picks are sorted by deadline (ties by host index). The half step
//!   spreads picks evenly (it is the order of nginx's smooth weighted round robin) and makes
//!   every period contain exactly `w_i / g` picks of host `i`.
//! - [`Schedule::Rounds`]: interleaved weighted round robin for huge host sets, whose period
//!   would make the table too big: round `r` visits, in weight order, every host whose
//!   weight exceeds `r`. O(n) memory, exact counts, less smooth than EDF.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Largest EDF table (entries); beyond it [`Schedule::Rounds`] is used. 2^17 entries
/// (512 KiB) hold 1000 hosts of arbitrary weights.
pub(super) const MAX_TABLE: u64 = 1 << 17;

/// A periodic pick order over host indices.
#[derive(Debug)]
pub(super) enum Schedule {
    /// `k % n`.
    Rotation { n: usize },
    /// One EDF period.
    Table(Box<[u32]>),
    /// Interleaved rounds: `order` sorted by weight (descending), round `r` starts at
    /// `starts[r]` and visits the first `lens[r]` hosts of `order`.
    Rounds {
        order: Box<[u32]>,
        starts: Box<[u64]>,
        lens: Box<[u32]>,
        period: u64,
    },
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A pending pick in the EDF build: deadline `num / den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadline {
    num: u64,
    den: u64,
    host: u32,
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> Ordering {
        (u128::from(self.num) * u128::from(other.den))
            .cmp(&(u128::from(other.num) * u128::from(self.den)))
            .then(self.host.cmp(&other.host))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Schedule {
    /// A schedule for `weights` (each at least 1).
    pub(super) fn new(weights: &[u32]) -> Self {
        Self::with_table_limit(weights, MAX_TABLE)
    }

    pub(super) fn with_table_limit(weights: &[u32], max_table: u64) -> Self {
        let n = weights.len();
        let g = weights.iter().fold(0, |g, &w| gcd(g, w.max(1)));
        if n == 0 || weights.iter().all(|&w| w.max(1) == g) {
            return Schedule::Rotation { n };
        }
        let reduced: Vec<u32> = weights.iter().map(|&w| w.max(1) / g).collect();
        let period: u64 = reduced.iter().map(|&w| u64::from(w)).sum();
        if period <= max_table {
            Self::edf_table(&reduced, period)
        } else {
            Self::rounds(&reduced, period)
        }
    }

    fn edf_table(weights: &[u32], period: u64) -> Self {
        let mut heap: BinaryHeap<Reverse<Deadline>> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Reverse(Deadline {
                    num: 1,
                    den: 2 * u64::from(w),
                    host: i as u32,
                })
            })
            .collect();
        let mut table = Vec::with_capacity(period as usize);
        while (table.len() as u64) < period {
            let Some(Reverse(mut d)) = heap.pop() else {
                break;
            };
            table.push(d.host);
            d.num += 2;
            heap.push(Reverse(d));
        }
        Schedule::Table(table.into_boxed_slice())
    }

    fn rounds(weights: &[u32], period: u64) -> Self {
        let mut order: Vec<u32> = (0..weights.len() as u32).collect();
        order.sort_by_key(|&i| Reverse(weights.get(i as usize).copied().unwrap_or(1)));
        let max = weights.iter().copied().max().unwrap_or(1);
        let mut starts = Vec::with_capacity(max as usize);
        let mut lens = Vec::with_capacity(max as usize);
        let mut start = 0u64;
        for r in 0..max {
            // Hosts are sorted by weight, so those with weight > r are a prefix.
            let len = order.partition_point(|&i| weights.get(i as usize).copied().unwrap_or(1) > r);
            starts.push(start);
            lens.push(len as u32);
            start += len as u64;
        }
        Schedule::Rounds {
            order: order.into_boxed_slice(),
            starts: starts.into_boxed_slice(),
            lens: lens.into_boxed_slice(),
            period,
        }
    }

    /// Length of one period (0 for an empty host set).
    pub(super) fn period(&self) -> u64 {
        match self {
            Schedule::Rotation { n } => *n as u64,
            Schedule::Table(t) => t.len() as u64,
            Schedule::Rounds { period, .. } => *period,
        }
    }

    /// The host index for pick number `k`.
    pub(super) fn at(&self, k: u64) -> Option<usize> {
        let period = self.period();
        if period == 0 {
            return None;
        }
        let k = k % period;
        match self {
            Schedule::Rotation { .. } => Some(k as usize),
            Schedule::Table(t) => t.get(k as usize).map(|&i| i as usize),
            Schedule::Rounds {
                order,
                starts,
                lens,
                ..
            } => {
                let r = starts.partition_point(|&s| s <= k).checked_sub(1)?;
                let pos = k - starts.get(r)?;
                if pos >= u64::from(*lens.get(r)?) {
                    return None;
                }
                order.get(pos as usize).map(|&i| i as usize)
            }
        }
    }

    /// Memory held, in entries (for tests and debug output).
    pub(super) fn entries(&self) -> usize {
        match self {
            Schedule::Rotation { .. } => 0,
            Schedule::Table(t) => t.len(),
            Schedule::Rounds { order, starts, .. } => order.len() + starts.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(s: &Schedule, n: usize) -> Vec<u64> {
        let mut c = vec![0; n];
        for k in 0..s.period() {
            c[s.at(k).expect("host")] += 1;
        }
        c
    }

    #[test]
    fn equal_weights_rotate() {
        let s = Schedule::new(&[5, 5, 5]);
        assert!(matches!(s, Schedule::Rotation { n: 3 }));
        let seq: Vec<usize> = (0..6).filter_map(|k| s.at(k)).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn edf_is_smooth_and_exact() {
        let s = Schedule::new(&[2, 4, 6]); // gcd 2 -> 1:2:3
        assert_eq!(s.period(), 6);
        let seq: Vec<usize> = (0..6).filter_map(|k| s.at(k)).collect();
        assert_eq!(seq, [2, 1, 0, 2, 1, 2]);
        assert_eq!(counts(&s, 3), [1, 2, 3]);
    }

    #[test]
    fn edf_spreads_a_heavy_host() {
        let s = Schedule::new(&[128, 1, 1]);
        assert_eq!(s.period(), 130);
        let pos: Vec<u64> = (0..130).filter(|&k| s.at(k) != Some(0)).collect();
        // The two light hosts sit near 1/2 of the period, not both at its start.
        assert_eq!(pos.len(), 2);
        assert!(pos.iter().all(|&p| (40..=90).contains(&p)), "{pos:?}");
    }

    #[test]
    fn rounds_are_exact() {
        let w = [3, 1, 2, 128, 7];
        let s = Schedule::with_table_limit(&w, 4);
        assert!(matches!(s, Schedule::Rounds { .. }));
        assert_eq!(s.period(), 141);
        assert_eq!(counts(&s, 5), [3, 1, 2, 128, 7]);
        // Round 0 visits every host, heaviest first.
        let first: Vec<usize> = (0..5).filter_map(|k| s.at(k)).collect();
        assert_eq!(first, [3, 4, 0, 2, 1]);
    }

    #[test]
    fn big_sets_fall_back_to_rounds() {
        let w: Vec<u32> = (0..3000).map(|i| 1 + (i % 128)).collect();
        let s = Schedule::new(&w);
        assert!(matches!(s, Schedule::Rounds { .. }));
        assert!(s.entries() < 3200);
        assert_eq!(
            counts(&s, w.len()),
            w.iter().map(|&x| u64::from(x)).collect::<Vec<_>>()
        );
    }
}
