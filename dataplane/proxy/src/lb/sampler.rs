//! Random draws over a host list: uniform, or in proportion to weight through Vose's alias
//! method in exact integer arithmetic (O(1) per draw, O(n) memory).
//!
//! Every draw goes through the same two stages: a few rejection draws (exact while the
//! filter rejects little), then an exact two-pass scan over the accepted hosts. Both stages
//! pick each accepted host with probability proportional to its weight, so the mix of the
//! two is exact as well.

use std::sync::Arc;

use super::{Filter, Rng};
use crate::host::Host;

/// Rejection draws before falling back to the exact scan.
const REJECTION_TRIES: usize = 4;

/// Draws host indices uniformly or in proportion to a weight per host.
pub(super) struct Sampler {
    weights: Box<[u32]>,
    alias: Option<Alias>,
}

/// Vose's alias table: bucket `i` keeps itself when `r < cutoff[i]` (`r` uniform in
/// `0..total`), otherwise hands over to `alias[i]`.
struct Alias {
    cutoff: Box<[u64]>,
    alias: Box<[u32]>,
    total: u64,
}

impl Sampler {
    /// Uniform over `n` hosts.
    pub(super) fn uniform(n: usize) -> Self {
        Sampler {
            weights: vec![1; n].into_boxed_slice(),
            alias: None,
        }
    }

    /// In proportion to `weights` (each at least 1); uniform when all weights are equal.
    pub(super) fn weighted(weights: Vec<u32>) -> Self {
        let weights: Box<[u32]> = weights.into_iter().map(|w| w.max(1)).collect();
        let equal = weights.windows(2).all(|p| p[0] == p[1]);
        let alias = if equal { None } else { Alias::build(&weights) };
        Sampler { weights, alias }
    }

    /// Whether every host has the same weight (draws are uniform).
    #[inline]
    pub(super) fn is_uniform(&self) -> bool {
        self.alias.is_none()
    }

    /// Weight of host `i` (1 when out of range).
    #[inline]
    pub(super) fn weight(&self, i: usize) -> u32 {
        self.weights.get(i).copied().unwrap_or(1)
    }

    /// One raw draw, ignoring health. `None` only for an empty set.
    #[inline]
    pub(super) fn draw(&self, rng: &mut Rng) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        let i = rng.below(n as u64) as usize;
        match &self.alias {
            None => Some(i),
            Some(a) => {
                let r = rng.below(a.total);
                let keep = a.cutoff.get(i).is_some_and(|&c| r < c);
                if keep {
                    Some(i)
                } else {
                    a.alias.get(i).map(|&j| j as usize)
                }
            }
        }
    }

    /// One draw among the hosts `filter` accepts, in proportion to weight.
    #[inline]
    pub(super) fn pick(
        &self,
        hosts: &[Arc<Host>],
        rng: &mut Rng,
        filter: Filter<'_>,
    ) -> Option<usize> {
        for _ in 0..REJECTION_TRIES {
            let i = self.draw(rng)?;
            if hosts.get(i).is_some_and(|h| filter.accepts(h)) {
                return Some(i);
            }
        }
        scan_pick(hosts, rng, filter, |i| u64::from(self.weight(i)))
    }

    /// One draw among accepted hosts that is not `other` (best effort: after a few draws
    /// that hit only `other` or rejected hosts, `None`).
    #[inline]
    pub(super) fn pick_other(
        &self,
        hosts: &[Arc<Host>],
        rng: &mut Rng,
        filter: Filter<'_>,
        other: usize,
    ) -> Option<usize> {
        let n = self.weights.len();
        if n < 2 {
            return None;
        }
        for _ in 0..REJECTION_TRIES {
            let i = if self.alias.is_none() {
                // Uniform over the n-1 others, exactly.
                let j = rng.below(n as u64 - 1) as usize;
                if j >= other {
                    j + 1
                } else {
                    j
                }
            } else {
                self.draw(rng)?
            };
            if i != other && hosts.get(i).is_some_and(|h| filter.accepts(h)) {
                return Some(i);
            }
        }
        None
    }
}

impl Alias {
    /// Vose's construction over integers: with `n` buckets each of capacity `total`, host `i`
    /// brings `w_i * n` units; small buckets are topped up from large ones.
    fn build(weights: &[u32]) -> Option<Alias> {
        let n = weights.len();
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if n == 0 || total == 0 {
            return None;
        }
        let mut scaled: Vec<u64> = weights.iter().map(|&w| u64::from(w) * n as u64).collect();
        let mut cutoff = vec![total; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < total);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            cutoff[s] = scaled[s];
            alias[s] = l as u32;
            // The large bucket gives away `total - scaled[s]` units.
            scaled[l] = (scaled[l] + scaled[s]).saturating_sub(total);
            if scaled[l] < total {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers (rounding cannot occur in integers, but be safe) keep themselves.
        for i in small.into_iter().chain(large) {
            cutoff[i] = total;
            alias[i] = i as u32;
        }
        Some(Alias {
            cutoff: cutoff.into_boxed_slice(),
            alias: alias.into_boxed_slice(),
            total,
        })
    }
}

/// Exact weighted draw among the accepted hosts by two passes (sum, then walk). Health may
/// change between the passes: then the last accepted host of the walk is returned.
pub(super) fn scan_pick(
    hosts: &[Arc<Host>],
    rng: &mut Rng,
    filter: Filter<'_>,
    weight: impl Fn(usize) -> u64,
) -> Option<usize> {
    let total: u64 = hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| filter.accepts(h))
        .map(|(i, _)| weight(i))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    let mut last = None;
    for (i, h) in hosts.iter().enumerate() {
        if !filter.accepts(h) {
            continue;
        }
        let w = weight(i);
        if r < w {
            return Some(i);
        }
        r -= w;
        last = Some(i);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_is_exact() {
        // Each bucket's kept mass plus the mass it receives as alias equals w_i * n.
        let weights = vec![1, 2, 3, 128, 7];
        let a = Alias::build(&weights).expect("alias");
        let n = weights.len() as u64;
        let mut mass = vec![0u64; weights.len()];
        for i in 0..weights.len() {
            mass[i] += a.cutoff[i];
            mass[a.alias[i] as usize] += a.total - a.cutoff[i];
        }
        for (i, &w) in weights.iter().enumerate() {
            assert_eq!(mass[i], u64::from(w) * n, "host {i}");
        }
    }

    #[test]
    fn weighted_draws_follow_weights() {
        let s = Sampler::weighted(vec![1, 3]);
        let mut rng = Rng::from_seed(7);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[s.draw(&mut rng).expect("draw")] += 1;
        }
        // Expect 10_000 : 30_000.
        assert!((9_400..=10_600).contains(&counts[0]), "{counts:?}");
    }
}
