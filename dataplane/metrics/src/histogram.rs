//! A fixed-bucket latency histogram: lock-free to record, Prometheus-shaped to read.
//!
//! Buckets are the upper bounds in [`LATENCY_BUCKETS`] (seconds, 0.5 ms .. 10 s) plus an
//! implicit `+Inf`. A value `v` lands in the first bucket whose bound `b` has `v <= b`
//! (Prometheus `le` semantics). Bounds and the running sum are kept in whole nanoseconds, so
//! placement at an edge is exact and concurrent sums never lose precision.
//!
//! [`Histogram::observe`] is two relaxed `fetch_add`s (its bucket and the sum); the count is
//! the sum of the buckets, so a [`HistogramSnapshot`] is always self-consistent
//! (`count == le="+Inf"`), whatever runs concurrently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the finite buckets, in seconds (a `+Inf` bucket follows them).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// [`LATENCY_BUCKETS`] in nanoseconds (what `observe` compares against).
const BOUNDS_NS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Number of buckets including `+Inf`.
const SLOTS: usize = BOUNDS_NS.len() + 1;

/// A latency distribution over [`LATENCY_BUCKETS`]; obtained from `Scope::histogram`.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per-bucket (not cumulative) counts; the last slot is `+Inf`.
    buckets: [AtomicU64; SLOTS],
    /// Sum of every observed value, in nanoseconds (wraps after ~584 years of latency).
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one duration. Lock-free: safe to call from every worker thread.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let slot = BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Sum of every observation so far.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed))
    }

    /// A point-in-time copy to render or query.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = [0u64; SLOTS];
        for (out, b) in buckets.iter_mut().zip(&self.buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        HistogramSnapshot {
            buckets,
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// A copy of a [`Histogram`]'s buckets and sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    buckets: [u64; SLOTS],
    sum_ns: u64,
}

impl HistogramSnapshot {
    /// Number of observations (equals the `+Inf` cumulative bucket).
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// Cumulative counts as Prometheus exposes them: `(le, count)` for every finite bound
    /// in [`LATENCY_BUCKETS`], then `(f64::INFINITY, count)`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let mut acc = 0u64;
        bounds.zip(self.buckets.iter()).map(move |(le, n)| {
            acc += n;
            (le, acc)
        })
    }

    /// Estimates the `q`-quantile (`0.0..=1.0`) in seconds, as Prometheus'
    /// `histogram_quantile` does: find the bucket holding rank `q * count` and interpolate
    /// linearly between its lower and upper bound (the first bucket starts at 0). A rank in
    /// the `+Inf` bucket yields the highest finite bound. `None` when nothing was observed.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 || q.is_nan() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            let upto = below + n;
            if n > 0 && upto as f64 >= rank {
                let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                    return Some(LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1]);
                };
                let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
                let frac = (rank - below as f64) / n as f64;
                return Some(lower + (upper - lower) * frac);
            }
            below = upto;
        }
        // Unreachable with count > 0: the last non-empty bucket always reaches the rank.
        Some(LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn slot_of(d: Duration) -> usize {
        let h = Histogram::default();
        h.observe(d);
        let s = h.snapshot();
        s.buckets.iter().position(|&n| n == 1).unwrap()
    }

    #[test]
    fn bounds_in_nanoseconds_match_the_public_seconds() {
        for (s, ns) in LATENCY_BUCKETS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn values_on_an_edge_land_in_that_bucket() {
        assert_eq!(slot_of(Duration::ZERO), 0);
        assert_eq!(slot_of(Duration::from_micros(500)), 0);
        assert_eq!(slot_of(Duration::from_nanos(500_001)), 1);
        assert_eq!(slot_of(Duration::from_millis(1)), 1);
        assert_eq!(slot_of(Duration::from_millis(250)), 8);
        assert_eq!(slot_of(Duration::from_secs(10)), 13);
        assert_eq!(slot_of(Duration::from_nanos(10_000_000_001)), 14);
        assert_eq!(slot_of(Duration::MAX), 14);
    }

    #[test]
    fn concurrent_observes_sum_exactly() {
        let h = Arc::new(Histogram::default());
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe(Duration::from_micros(t * 1000 + i % 7));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let expected_ns: u64 = (0..8u64)
            .flat_map(|t| (0..10_000u64).map(move |i| (t * 1000 + i % 7) * 1000))
            .sum();
        assert_eq!(h.count(), 80_000);
        assert_eq!(h.sum(), Duration::from_nanos(expected_ns));
        let s = h.snapshot();
        assert_eq!(s.cumulative().last(), Some((f64::INFINITY, 80_000)));
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        // 100 values in (0.1, 0.25]: every quantile lies in that bucket.
        for _ in 0..100 {
            h.observe(Duration::from_millis(200));
        }
        let s = h.snapshot();
        let p50 = s.quantile(0.5).unwrap();
        assert!((p50 - 0.175).abs() < 1e-9, "{p50}");
        let p99 = s.quantile(0.99).unwrap();
        assert!((0.1..=0.25).contains(&p99), "{p99}");
        assert!((p99 - (0.1 + 0.15 * 0.99)).abs() < 1e-9, "{p99}");

        // Split across buckets: 90 fast (le 0.001), 10 slow (le 1).
        let h = Histogram::default();
        for _ in 0..90 {
            h.observe(Duration::from_micros(700));
        }
        for _ in 0..10 {
            h.observe(Duration::from_millis(700));
        }
        let s = h.snapshot();
        let p50 = s.quantile(0.5).unwrap();
        assert!((0.0005..=0.001).contains(&p50), "{p50}");
        let p99 = s.quantile(0.99).unwrap();
        assert!((0.5..=1.0).contains(&p99), "{p99}");
        assert!((p99 - 0.95).abs() < 1e-9, "{p99}");

        // Beyond the last bound: the highest finite bound.
        let h = Histogram::default();
        h.observe(Duration::from_secs(60));
        assert_eq!(h.snapshot().quantile(0.5), Some(10.0));
    }
}
