//! Load balancers: choose one upstream [`Host`] of a cluster snapshot per request (or, for
//! L4, per connection).
//!
//! A balancer is built once per cluster snapshot by [`new_lb`] and shared by every worker,
//! so [`LoadBalancer::choose`] takes `&self` and never locks: rotation counters and the
//! random generator are atomics, schedules (weighted round robin, alias tables, the Maglev
//! table) are precomputed at build time, and host health and load are read from the hosts'
//! own atomics on every choice.
//!
//! Rules shared by every balancer except [`LbType::OriginalDst`]:
//! - unhealthy hosts are never chosen; an empty or fully unhealthy set gives `None`;
//! - hosts whose address is in [`LbContext::avoid`] are skipped (connect retries), best
//!   effort: when every healthy host is avoided, a healthy host is chosen anyway;
//! - weights are clamped to `1..=128` ([`clamp_weight`]) whatever the [`Host`] was built with.
//!
//! ```text
//!  lb.rs            API, shared rules, random / round robin / least-* / failover / original dst
//!  lb/sampler.rs    uniform and weighted (alias method) draws with health filtering
//!  lb/schedule.rs   weighted round-robin schedules (EDF table, interleaved rounds)
//!  lb/maglev.rs     Maglev table and key hashing
//! ```

mod maglev;
mod sampler;
mod schedule;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::host::{clamp_weight, Host, HostSpec};

use maglev::MaglevTable;
use sampler::{scan_pick, Sampler};
use schedule::Schedule;

/// The load-balancing algorithms, named after MOSN's `lb_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LbType {
    /// `LB_RANDOM`: uniform among healthy hosts, weights ignored. MOSN falls back to round
    /// robin when its single random draw is unhealthy; here unhealthy hosts are redrawn, so
    /// the choice stays uniform among the healthy ones.
    Random,
    /// `LB_ROUNDROBIN` (and MOSN's fallback for unknown names): plain rotation over the host
    /// list, weights ignored, starting at a seed-chosen offset so that proxies do not move in
    /// lock step. An unhealthy host's turn is skipped (the rotation moves on), so its share
    /// is spread evenly rather than falling on its neighbour.
    #[default]
    RoundRobin,
    /// `LB_WEIGHTED_ROUNDROBIN`: smooth weighted rotation. The earliest-deadline-first order
    /// MOSN and Envoy compute with a locked heap is unrolled once per snapshot into a table
    /// read by an atomic counter (see `lb/schedule.rs`): exact `w_i / Σw` shares over every
    /// period, picks of a host spread evenly. Equal weights degrade to plain rotation.
    WeightedRoundRobin,
    /// `LB_LEAST_REQUEST`: power of `choice_count` (default 2) choices on
    /// [`Host::active_requests`]. Candidates are distinct hosts drawn in proportion to weight;
    /// the one with the fewest active requests per unit of weight wins, ties going to the
    /// first drawn. With equal weights this is Envoy's and MOSN's P2C; with unequal weights it
    /// is a lock-free stand-in for their EDF over `weight / (active + 1)`: idle hosts are
    /// chosen exactly in proportion to weight, and under load active requests settle in
    /// proportion to weight.
    LeastRequest,
    /// `LB_LEAST_CONNECTION`: as [`LbType::LeastRequest`] on [`Host::active_connections`].
    LeastConnection,
    /// `LB_REQUEST_ROUNDROBIN`: MOSN's per-request failover order. Every request starts at
    /// the first healthy host in list order; a retry that lists the hosts it already tried
    /// in [`LbContext::avoid`] moves on to the next one (MOSN keeps that index in the
    /// `upstream_index` request variable). When every healthy host has been tried, MOSN gives
    /// up; here the first healthy host is returned again, as for every other balancer.
    RequestRoundRobin,
    /// `LB_MAGLEV`: consistent hashing of [`LbContext::hash_key`] through a Maglev table of
    /// 65537 slots (655373 from 30000 hosts), weighted as Envoy does. Removing a host moves
    /// only (about) the keys it owned. A key whose host is unhealthy or avoided is re-hashed
    /// to another host (deterministically, and without moving any other key); MOSN instead
    /// walks the host list from the failed host. Without a key: random. Building the table
    /// takes about 3 ms (release), once per snapshot, off the request path.
    Maglev,
    /// `LB_ORIGINAL_DST`: the host is [`LbContext::original_dst`] itself (the address the
    /// client connected to before redirection). A host of the snapshot with that address is
    /// returned (sharing its counters); otherwise a detached host is made on the fly. Health
    /// and `avoid` do not apply: there is no other destination. `None` without an address.
    OriginalDst,
}

impl LbType {
    /// Every type, in declaration order.
    pub const ALL: [LbType; 8] = [
        LbType::Random,
        LbType::RoundRobin,
        LbType::WeightedRoundRobin,
        LbType::LeastRequest,
        LbType::LeastConnection,
        LbType::RequestRoundRobin,
        LbType::Maglev,
        LbType::OriginalDst,
    ];

    /// The MOSN `lb_type` name (parsing config text is mosn-config's job).
    pub fn mosn_name(self) -> &'static str {
        match self {
            LbType::Random => "LB_RANDOM",
            LbType::RoundRobin => "LB_ROUNDROBIN",
            LbType::WeightedRoundRobin => "LB_WEIGHTED_ROUNDROBIN",
            LbType::LeastRequest => "LB_LEAST_REQUEST",
            LbType::LeastConnection => "LB_LEAST_CONNECTION",
            LbType::RequestRoundRobin => "LB_REQUEST_ROUNDROBIN",
            LbType::Maglev => "LB_MAGLEV",
            LbType::OriginalDst => "LB_ORIGINAL_DST",
        }
    }
}

impl fmt::Display for LbType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mosn_name())
    }
}

/// Per-choice inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LbContext<'a> {
    /// The downstream connection's original destination ([`LbType::OriginalDst`]).
    pub original_dst: Option<SocketAddr>,
    /// The request's hash key ([`LbType::Maglev`]): header value, source IP, ... as the
    /// route's hash policy produced it.
    pub hash_key: Option<&'a [u8]>,
    /// Hosts to avoid, typically those a connect retry already failed on. Best effort: when
    /// every healthy host is listed, one of them is chosen anyway.
    pub avoid: &'a [SocketAddr],
    /// The route's `metadata_match` (subset load balancing); handled by the cluster, not by
    /// the balancers.
    pub metadata_match: Option<&'a BTreeMap<String, String>>,
}

impl<'a> LbContext<'a> {
    /// No inputs.
    pub fn new() -> Self {
        LbContext::default()
    }

    /// With a hash key.
    pub fn with_hash_key(mut self, key: &'a [u8]) -> Self {
        self.hash_key = Some(key);
        self
    }

    /// With an original destination.
    pub fn with_original_dst(mut self, addr: SocketAddr) -> Self {
        self.original_dst = Some(addr);
        self
    }

    /// With hosts to avoid.
    pub fn with_avoid(mut self, avoid: &'a [SocketAddr]) -> Self {
        self.avoid = avoid;
        self
    }
}

/// Tuning shared by the balancers (MOSN `lb_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbOptions {
    /// Candidates per least-request / least-connection choice (MOSN and Envoy default 2;
    /// 0 counts as 1, which is weighted random).
    pub choice_count: u32,
}

impl Default for LbOptions {
    fn default() -> Self {
        LbOptions { choice_count: 2 }
    }
}

/// Chooses a host of one cluster snapshot. Shared by every worker.
pub trait LoadBalancer: Send + Sync + fmt::Debug {
    /// One host for this request / connection, or `None` when no host may be chosen.
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>>;

    /// The algorithm.
    fn kind(&self) -> LbType;
}

/// Builds the balancer `kind` over `hosts` with default [`LbOptions`]. `seed` makes random
/// draws and rotation offsets reproducible (pass something per process, e.g. time, in
/// production; fixed values in tests). Maglev tables do not depend on the seed.
pub fn new_lb(kind: LbType, hosts: Arc<[Arc<Host>]>, seed: u64) -> Box<dyn LoadBalancer> {
    new_lb_with(kind, hosts, seed, &LbOptions::default())
}

/// [`new_lb`] with explicit options.
pub fn new_lb_with(
    kind: LbType,
    hosts: Arc<[Arc<Host>]>,
    seed: u64,
    opts: &LbOptions,
) -> Box<dyn LoadBalancer> {
    let rng = AtomicRng::new(seed);
    match kind {
        LbType::Random => Box::new(RandomLb {
            sampler: Sampler::uniform(hosts.len()),
            hosts,
            rng,
        }),
        LbType::RoundRobin | LbType::WeightedRoundRobin => {
            Box::new(RotationLb::new(kind, hosts, rng))
        }
        LbType::LeastRequest | LbType::LeastConnection => Box::new(LeastLoadedLb {
            kind,
            sampler: Sampler::weighted(weights_of(&hosts)),
            choice_count: opts.choice_count.max(1),
            hosts,
            rng,
        }),
        LbType::RequestRoundRobin => Box::new(FailoverLb { hosts }),
        LbType::Maglev => Box::new(MaglevLb {
            table: MaglevTable::build(&hosts),
            sampler: Sampler::uniform(hosts.len()),
            hosts,
            rng,
        }),
        LbType::OriginalDst => Box::new(OriginalDstLb {
            by_addr: hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.address(), i))
                .collect(),
            hosts,
        }),
    }
}

fn weights_of(hosts: &[Arc<Host>]) -> Vec<u32> {
    hosts.iter().map(|h| clamp_weight(h.weight())).collect()
}

// ---------------------------------------------------------------------------------------
// Shared machinery.

/// splitmix64's increment.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's finalizer: a bijective mix of 64 bits.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Keeps a hot atomic on its own cache line, away from the read-only fields.
#[repr(align(64))]
struct Padded(AtomicU64);

/// A lock-free seeded generator shared by workers: each choice takes one `fetch_add` and
/// continues with a private [`Rng`] stream. Deterministic for a seed when single-threaded.
struct AtomicRng(Padded);

impl AtomicRng {
    fn new(seed: u64) -> Self {
        AtomicRng(Padded(AtomicU64::new(mix64(seed ^ 0x6c62_5f73_6565_6421))))
    }

    /// A private stream for one choice.
    #[inline]
    fn stream(&self) -> Rng {
        Rng::from_seed(self.0 .0.fetch_add(GOLDEN, Ordering::Relaxed))
    }
}

/// splitmix64, owned by one choice.
struct Rng(u64);

impl Rng {
    fn from_seed(seed: u64) -> Self {
        Rng(mix64(seed))
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; bias below 2^-40 for n < 2^24).
    /// `n == 0` gives 0.
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Which hosts a pass may choose.
#[derive(Clone, Copy)]
struct Filter<'a> {
    avoid: &'a [SocketAddr],
}

impl Filter<'_> {
    #[inline]
    fn accepts(&self, h: &Host) -> bool {
        h.is_healthy() && (self.avoid.is_empty() || !self.avoid.contains(&h.address()))
    }
}

/// Runs `pick` over healthy, not avoided hosts; when that finds nothing and some hosts
/// were avoided, runs it again over every healthy host.
fn choose_in(
    hosts: &[Arc<Host>],
    ctx: &LbContext<'_>,
    mut pick: impl FnMut(Filter<'_>) -> Option<usize>,
) -> Option<Arc<Host>> {
    let idx = match pick(Filter { avoid: ctx.avoid }) {
        Some(i) => i,
        None if !ctx.avoid.is_empty() => pick(Filter { avoid: &[] })?,
        None => return None,
    };
    hosts.get(idx).cloned()
}

// ---------------------------------------------------------------------------------------
// Balancers.

/// [`LbType::Random`].
struct RandomLb {
    hosts: Arc<[Arc<Host>]>,
    sampler: Sampler,
    rng: AtomicRng,
}

impl LoadBalancer for RandomLb {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let mut rng = self.rng.stream();
        choose_in(&self.hosts, ctx, |f| {
            self.sampler.pick(&self.hosts, &mut rng, f)
        })
    }

    fn kind(&self) -> LbType {
        LbType::Random
    }
}

impl fmt::Debug for RandomLb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RandomLb")
            .field("hosts", &self.hosts.len())
            .finish()
    }
}

/// Counter turns a rotation may spend skipping unusable hosts before one exact random
/// draw among the usable hosts (weighted like the rotation) takes over.
const ROTATION_TRIES: usize = 8;

/// [`LbType::RoundRobin`] and [`LbType::WeightedRoundRobin`]: a [`Schedule`] read by an
/// atomic counter. Skipping an unusable host consumes its turn, so in steady state its
/// share is spread over the others in proportion to theirs.
struct RotationLb {
    kind: LbType,
    hosts: Arc<[Arc<Host>]>,
    schedule: Schedule,
    weights: Box<[u32]>,
    next: Padded,
    rng: AtomicRng,
}

impl RotationLb {
    /// Plain rotation for [`LbType::RoundRobin`], the weighted schedule otherwise.
    fn new(kind: LbType, hosts: Arc<[Arc<Host>]>, rng: AtomicRng) -> Self {
        let weights: Box<[u32]> = if kind == LbType::RoundRobin {
            vec![1; hosts.len()].into()
        } else {
            weights_of(&hosts).into()
        };
        let schedule = Schedule::new(&weights);
        // Start at a seed-chosen point of the period.
        let start = rng.stream().below(schedule.period());
        RotationLb {
            kind,
            hosts,
            schedule,
            weights,
            next: Padded(AtomicU64::new(start)),
            rng,
        }
    }

    fn pick(&self, f: Filter<'_>) -> Option<usize> {
        let n = self.hosts.len();
        if n == 0 {
            return None;
        }
        for _ in 0..ROTATION_TRIES {
            let k = self.next.0.fetch_add(1, Ordering::Relaxed);
            let i = self.schedule.at(k)?;
            if self.hosts.get(i).is_some_and(|h| f.accepts(h)) {
                return Some(i);
            }
        }
        let mut rng = self.rng.stream();
        scan_pick(&self.hosts, &mut rng, f, |i| {
            u64::from(self.weights.get(i).copied().unwrap_or(1))
        })
    }
}

impl LoadBalancer for RotationLb {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        choose_in(&self.hosts, ctx, |f| self.pick(f))
    }

    fn kind(&self) -> LbType {
        self.kind
    }
}

impl fmt::Debug for RotationLb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotationLb")
            .field("kind", &self.kind)
            .field("hosts", &self.hosts.len())
            .field("period", &self.schedule.period())
            .field("schedule_entries", &self.schedule.entries())
            .finish()
    }
}

/// [`LbType::LeastRequest`] and [`LbType::LeastConnection`]: power of d choices.
struct LeastLoadedLb {
    kind: LbType,
    hosts: Arc<[Arc<Host>]>,
    sampler: Sampler,
    choice_count: u32,
    rng: AtomicRng,
}

impl LeastLoadedLb {
    #[inline]
    fn load(&self, h: &Host) -> u64 {
        match self.kind {
            LbType::LeastConnection => h.active_connections(),
            _ => h.active_requests(),
        }
    }

    /// Whether host `a` (load `la`) is strictly less loaded per unit of weight than `b`.
    #[inline]
    fn lighter(&self, a: usize, la: u64, b: usize, lb: u64) -> bool {
        if self.sampler.is_uniform() {
            return la < lb;
        }
        let (wa, wb) = (self.sampler.weight(a), self.sampler.weight(b));
        u128::from(la) * u128::from(wb) < u128::from(lb) * u128::from(wa)
    }

    fn pick(&self, rng: &mut Rng, f: Filter<'_>) -> Option<usize> {
        let hosts = &self.hosts[..];
        let mut best = self.sampler.pick(hosts, rng, f)?;
        let mut best_load = hosts.get(best).map_or(0, |h| self.load(h));
        for _ in 1..self.choice_count {
            let Some(c) = self.sampler.pick_other(hosts, rng, f, best) else {
                break;
            };
            let load = hosts.get(c).map_or(u64::MAX, |h| self.load(h));
            if self.lighter(c, load, best, best_load) {
                best = c;
                best_load = load;
            }
        }
        Some(best)
    }
}

impl LoadBalancer for LeastLoadedLb {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let mut rng = self.rng.stream();
        choose_in(&self.hosts, ctx, |f| self.pick(&mut rng, f))
    }

    fn kind(&self) -> LbType {
        self.kind
    }
}

impl fmt::Debug for LeastLoadedLb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeastLoadedLb")
            .field("kind", &self.kind)
            .field("hosts", &self.hosts.len())
            .field("choice_count", &self.choice_count)
            .field("weighted", &!self.sampler.is_uniform())
            .finish()
    }
}

/// [`LbType::RequestRoundRobin`]: first usable host in list order.
struct FailoverLb {
    hosts: Arc<[Arc<Host>]>,
}

impl LoadBalancer for FailoverLb {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        choose_in(&self.hosts, ctx, |f| {
            self.hosts.iter().position(|h| f.accepts(h))
        })
    }

    fn kind(&self) -> LbType {
        LbType::RequestRoundRobin
    }
}

impl fmt::Debug for FailoverLb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverLb")
            .field("hosts", &self.hosts.len())
            .finish()
    }
}

/// [`LbType::Maglev`].
struct MaglevLb {
    hosts: Arc<[Arc<Host>]>,
    table: MaglevTable,
    sampler: Sampler,
    rng: AtomicRng,
}

impl LoadBalancer for MaglevLb {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        match ctx.hash_key {
            Some(key) => {
                let hash = maglev::key_hash(key);
                choose_in(&self.hosts, ctx, |f| {
                    self.table.lookup(hash, &self.hosts, f)
                })
            }
            None => {
                let mut rng = self.rng.stream();
                choose_in(&self.hosts, ctx, |f| {
                    self.sampler.pick(&self.hosts, &mut rng, f)
                })
            }
        }
    }

    fn kind(&self) -> LbType {
        LbType::Maglev
    }
}

impl fmt::Debug for MaglevLb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevLb")
            .field("hosts", &self.hosts.len())
            .field("table", &self.table)
            .finish()
    }
}

/// [`LbType::OriginalDst`].
struct OriginalDstLb {
    hosts: Arc<[Arc<Host>]>,
    /// Host addresses, sorted, with their index (binary search beats SipHash here).
    by_addr: Box<[(SocketAddr, usize)]>,
}

impl LoadBalancer for OriginalDstLb {
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let addr = ctx.original_dst?;
        let found = self
            .by_addr
            .binary_search_by(|(a, _)| a.cmp(&addr))
            .ok()
            .and_then(|p| self.by_addr.get(p))
            .and_then(|&(_, i)| self.hosts.get(i));
        if let Some(h) = found {
            return Some(h.clone());
        }
        Some(Arc::new(Host::detached(HostSpec {
            address: addr,
            hostname: addr.to_string(),
            weight: 1,
            metadata: BTreeMap::new(),
            tls_disable: false,
        })))
    }

    fn kind(&self) -> LbType {
        LbType::OriginalDst
    }
}

impl fmt::Debug for OriginalDstLb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginalDstLb")
            .field("hosts", &self.hosts.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: usize) -> String {
        format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
    }

    fn hosts(n: usize) -> Arc<[Arc<Host>]> {
        (0..n).map(|i| Host::test(&addr(i), 1)).collect()
    }

    fn weighted(ws: &[u32]) -> Arc<[Arc<Host>]> {
        ws.iter()
            .enumerate()
            .map(|(i, &w)| Host::test(&addr(i), w))
            .collect()
    }

    fn index_of(hosts: &[Arc<Host>], h: &Host) -> usize {
        hosts
            .iter()
            .position(|x| x.address() == h.address())
            .expect("known host")
    }

    /// Picks `n` times with `ctx`, counting per host index.
    fn tally(
        lb: &dyn LoadBalancer,
        hosts: &[Arc<Host>],
        n: usize,
        ctx: &LbContext<'_>,
    ) -> Vec<usize> {
        let mut c = vec![0; hosts.len()];
        for _ in 0..n {
            let h = lb.choose(ctx).expect("a host");
            c[index_of(hosts, &h)] += 1;
        }
        c
    }

    fn within(count: usize, want: f64, tolerance: f64) -> bool {
        (count as f64 - want).abs() <= want * tolerance
    }

    #[test]
    fn empty_set_gives_none() {
        let empty: Arc<[Arc<Host>]> = Arc::new([]);
        for kind in LbType::ALL {
            let lb = new_lb(kind, empty.clone(), 1);
            let ctx = LbContext::new().with_hash_key(b"k");
            assert!(lb.choose(&ctx).is_none(), "{kind}");
            assert_eq!(lb.kind(), kind);
        }
    }

    #[test]
    fn all_unhealthy_gives_none() {
        let hs = weighted(&[1, 2, 3]);
        for h in hs.iter() {
            h.set_healthy(false);
        }
        for kind in LbType::ALL
            .into_iter()
            .filter(|&k| k != LbType::OriginalDst)
        {
            let lb = new_lb(kind, hs.clone(), 1);
            let avoid = [hs[0].address()];
            for ctx in [
                LbContext::new(),
                LbContext::new().with_hash_key(b"k"),
                LbContext::new().with_avoid(&avoid),
            ] {
                assert!(lb.choose(&ctx).is_none(), "{kind}");
            }
        }
    }

    #[test]
    fn unhealthy_hosts_are_skipped() {
        let hs = weighted(&[1, 2, 3, 1]);
        hs[1].set_healthy(false);
        hs[3].set_healthy(false);
        for kind in LbType::ALL
            .into_iter()
            .filter(|&k| k != LbType::OriginalDst)
        {
            let lb = new_lb(kind, hs.clone(), 9);
            for i in 0..2000u32 {
                let key = i.to_le_bytes();
                let ctx = LbContext::new().with_hash_key(&key);
                let h = lb.choose(&ctx).expect("healthy host");
                assert!(h.is_healthy(), "{kind}");
            }
        }
    }

    #[test]
    fn random_is_uniform() {
        let hs = hosts(3);
        let lb = new_lb(LbType::Random, hs.clone(), 42);
        let c = tally(&*lb, &hs, 30_000, &LbContext::new());
        assert!(c.iter().all(|&x| within(x, 10_000.0, 0.05)), "{c:?}");
    }

    #[test]
    fn random_ignores_weights_and_spreads_over_healthy() {
        let hs = weighted(&[1, 128, 1, 1]);
        hs[0].set_healthy(false);
        let lb = new_lb(LbType::Random, hs.clone(), 3);
        let c = tally(&*lb, &hs, 30_000, &LbContext::new());
        assert_eq!(c[0], 0);
        // MOSN would send host 0's share to its round-robin neighbour; here it is spread.
        assert!(c[1..].iter().all(|&x| within(x, 10_000.0, 0.05)), "{c:?}");
    }

    #[test]
    fn round_robin_sequence() {
        let hs = weighted(&[1, 5, 1]); // weights ignored
        let lb = new_lb(LbType::RoundRobin, hs.clone(), 7);
        let ctx = LbContext::new();
        let first = index_of(&hs, &lb.choose(&ctx).expect("host"));
        let seq: Vec<usize> = (0..9)
            .map(|_| index_of(&hs, &lb.choose(&ctx).expect("host")))
            .collect();
        let want: Vec<usize> = (1..10).map(|k| (first + k) % 3).collect();
        assert_eq!(seq, want);
        // Deterministic for a seed.
        let again = new_lb(LbType::RoundRobin, hs.clone(), 7);
        assert_eq!(index_of(&hs, &again.choose(&ctx).expect("host")), first);
    }

    #[test]
    fn round_robin_skips_unhealthy_evenly() {
        let hs = hosts(4);
        hs[1].set_healthy(false);
        let lb = new_lb(LbType::RoundRobin, hs.clone(), 1);
        let c = tally(&*lb, &hs, 3000, &LbContext::new());
        // Host 1's turn is consumed: the others share exactly.
        assert_eq!(c, [1000, 0, 1000, 1000]);
    }

    #[test]
    fn weighted_round_robin_is_exact_and_interleaved() {
        let hs = weighted(&[1, 2, 3]);
        let lb = new_lb(LbType::WeightedRoundRobin, hs.clone(), 5);
        let ctx = LbContext::new();
        let seq: Vec<usize> = (0..600)
            .map(|_| index_of(&hs, &lb.choose(&ctx).expect("host")))
            .collect();
        let mut c = [0; 3];
        for &i in &seq {
            c[i] += 1;
        }
        assert_eq!(c, [100, 200, 300]);
        // Smooth: the heaviest host never runs three times in a row, and every window of 6
        // consecutive picks holds exactly 1, 2 and 3 picks.
        assert!(
            seq.windows(3)
                .all(|w| !(w[0] == 2 && w[1] == 2 && w[2] == 2)),
            "{seq:?}"
        );
        for w in seq.windows(6) {
            let mut c = [0; 3];
            for &i in w {
                c[i] += 1;
            }
            assert_eq!(c, [1, 2, 3], "{w:?}");
        }
    }

    #[test]
    fn weights_are_clamped() {
        // A host built with weight 200 outside `Host::test` (which clamps) counts as 128.
        let big = Arc::new(Host::detached(HostSpec {
            address: addr(0).parse().expect("addr"),
            hostname: "big".into(),
            weight: 200,
            metadata: BTreeMap::new(),
            tls_disable: false,
        }));
        let hs: Arc<[Arc<Host>]> = vec![big, Host::test(&addr(1), 1)].into();
        let lb = new_lb(LbType::WeightedRoundRobin, hs.clone(), 0);
        let c = tally(&*lb, &hs, 129 * 10, &LbContext::new());
        assert_eq!(c, [1280, 10]);
        let t = MaglevTable::build(&hs).shares(2);
        assert!((t[0] as f64 / t[1] as f64 - 128.0).abs() < 4.0, "{t:?}");
    }

    #[test]
    fn weighted_round_robin_equal_weights_rotate() {
        let hs = weighted(&[4, 4, 4]);
        let lb = new_lb(LbType::WeightedRoundRobin, hs.clone(), 11);
        let c = tally(&*lb, &hs, 300, &LbContext::new());
        assert_eq!(c, [100, 100, 100]);
    }

    #[test]
    fn weighted_round_robin_redistributes_by_weight() {
        let hs = weighted(&[1, 2, 3]);
        hs[2].set_healthy(false);
        let lb = new_lb(LbType::WeightedRoundRobin, hs.clone(), 5);
        let c = tally(&*lb, &hs, 600, &LbContext::new());
        assert_eq!(c, [200, 400, 0]);
    }

    fn least_loaded_prefers_idle(kind: LbType, set_load: impl Fn(&Host, i64)) {
        // Two hosts: every pair holds both, so the idle one always wins.
        let hs = hosts(2);
        set_load(&hs[0], 10);
        let lb = new_lb(kind, hs.clone(), 17);
        let c = tally(&*lb, &hs, 10_000, &LbContext::new());
        assert_eq!(c, [0, 10_000], "{kind}");

        // Three hosts, A busy: B and C idle. A wins only if drawn with... never: any pair
        // with A also holds an idle host.
        let hs = hosts(3);
        set_load(&hs[0], 10);
        let lb = new_lb(kind, hs.clone(), 17);
        let c = tally(&*lb, &hs, 30_000, &LbContext::new());
        assert_eq!(c[0], 0, "{kind}");
        assert!(
            within(c[1], 15_000.0, 0.05) && within(c[2], 15_000.0, 0.05),
            "{c:?}"
        );

        // Three hosts, only B idle: B is chosen whenever it is drawn (2/3 of pairs).
        let hs = hosts(3);
        set_load(&hs[0], 10);
        set_load(&hs[2], 10);
        let lb = new_lb(kind, hs.clone(), 17);
        let c = tally(&*lb, &hs, 30_000, &LbContext::new());
        assert!(c[1] >= 19_000, "{kind} {c:?}");

        // Equal load: uniform.
        let hs = hosts(3);
        let lb = new_lb(kind, hs.clone(), 17);
        let c = tally(&*lb, &hs, 30_000, &LbContext::new());
        assert!(c.iter().all(|&x| within(x, 10_000.0, 0.05)), "{c:?}");
    }

    #[test]
    fn least_request_prefers_idle() {
        least_loaded_prefers_idle(LbType::LeastRequest, |h, n| h.stats.rq_active.set(n));
    }

    #[test]
    fn least_connection_prefers_idle() {
        least_loaded_prefers_idle(LbType::LeastConnection, |h, n| h.stats.cx_active.set(n));
        // Least connection ignores requests and the other way round.
        let hs = hosts(2);
        hs[1].stats.rq_active.set(50);
        let lb = new_lb(LbType::LeastConnection, hs.clone(), 1);
        let c = tally(&*lb, &hs, 10_000, &LbContext::new());
        assert!(c.iter().all(|&x| within(x, 5_000.0, 0.05)), "{c:?}");
    }

    #[test]
    fn least_request_weighted() {
        let hs = weighted(&[1, 2, 3]);
        let lb = new_lb(LbType::LeastRequest, hs.clone(), 23);
        // Idle: exactly weighted random.
        let c = tally(&*lb, &hs, 60_000, &LbContext::new());
        for (i, &x) in c.iter().enumerate() {
            assert!(within(x, 10_000.0 * (i + 1) as f64, 0.05), "{c:?}");
        }
        // Per unit of weight, host 2 (3 requests / weight 3) is lighter than host 0
        // (2 / 1) and host 1 (4 / 2): it wins every pair it is in.
        hs[0].stats.rq_active.set(2);
        hs[1].stats.rq_active.set(4);
        hs[2].stats.rq_active.set(3);
        let c = tally(&*lb, &hs, 60_000, &LbContext::new());
        assert!(c[2] > c[0] + c[1], "{c:?}");
    }

    #[test]
    fn least_request_choice_count_one_is_random() {
        let hs = hosts(2);
        hs[0].stats.rq_active.set(10);
        let lb = new_lb_with(
            LbType::LeastRequest,
            hs.clone(),
            3,
            &LbOptions { choice_count: 0 },
        );
        let c = tally(&*lb, &hs, 10_000, &LbContext::new());
        assert!(within(c[0], 5_000.0, 0.05), "{c:?}");
    }

    #[test]
    fn request_round_robin_is_ordered_failover() {
        let hs = hosts(3);
        let lb = new_lb(LbType::RequestRoundRobin, hs.clone(), 1);
        let ctx = LbContext::new();
        for _ in 0..5 {
            assert_eq!(lb.choose(&ctx).expect("host").address(), hs[0].address());
        }
        let tried = [hs[0].address()];
        let h = lb
            .choose(&LbContext::new().with_avoid(&tried))
            .expect("host");
        assert_eq!(h.address(), hs[1].address());
        let tried = [hs[0].address(), hs[1].address()];
        let h = lb
            .choose(&LbContext::new().with_avoid(&tried))
            .expect("host");
        assert_eq!(h.address(), hs[2].address());
        hs[0].set_healthy(false);
        assert_eq!(lb.choose(&ctx).expect("host").address(), hs[1].address());
    }

    fn keys(n: u32) -> impl Iterator<Item = [u8; 4]> {
        (0..n).map(|i| i.to_be_bytes())
    }

    #[test]
    fn maglev_same_key_same_host() {
        let hs = hosts(5);
        let a = new_lb(LbType::Maglev, hs.clone(), 1);
        let b = new_lb(LbType::Maglev, hs.clone(), 999); // seed does not matter
        for k in keys(1000) {
            let ctx = LbContext::new().with_hash_key(&k);
            let x = a.choose(&ctx).expect("host").address();
            assert_eq!(x, a.choose(&ctx).expect("host").address());
            assert_eq!(x, b.choose(&ctx).expect("host").address());
        }
    }

    #[test]
    fn maglev_spreads_keys() {
        let hs = hosts(3);
        let lb = new_lb(LbType::Maglev, hs.clone(), 1);
        let mut c = [0usize; 3];
        for k in keys(30_000) {
            let h = lb
                .choose(&LbContext::new().with_hash_key(&k))
                .expect("host");
            c[index_of(&hs, &h)] += 1;
        }
        assert!(c.iter().all(|&x| within(x, 10_000.0, 0.10)), "{c:?}");
    }

    fn owners(lb: &dyn LoadBalancer, n: u32) -> Vec<SocketAddr> {
        keys(n)
            .map(|k| {
                lb.choose(&LbContext::new().with_hash_key(&k))
                    .expect("host")
                    .address()
            })
            .collect()
    }

    #[test]
    fn maglev_removal_moves_only_the_removed_hosts_keys() {
        let hs = hosts(5);
        let before = owners(&*new_lb(LbType::Maglev, hs.clone(), 1), 50_000);
        let removed = hs[2].address();
        let rest: Arc<[Arc<Host>]> = hs
            .iter()
            .filter(|h| h.address() != removed)
            .cloned()
            .collect();
        let after = owners(&*new_lb(LbType::Maglev, rest, 1), 50_000);
        let (mut kept, mut moved) = (0usize, 0usize);
        for (b, a) in before.iter().zip(&after) {
            assert_ne!(*a, removed);
            if *b != removed {
                if a == b {
                    kept += 1;
                } else {
                    moved += 1;
                }
            }
        }
        let churn = moved as f64 / (kept + moved) as f64;
        assert!(churn <= 0.01, "churn {churn} ({moved} of {})", kept + moved);
    }

    #[test]
    fn maglev_unhealthy_host_moves_only_its_keys() {
        let hs = hosts(5);
        let lb = new_lb(LbType::Maglev, hs.clone(), 1);
        let before = owners(&*lb, 20_000);
        hs[3].set_healthy(false);
        let after = owners(&*lb, 20_000);
        let mut spread = std::collections::HashMap::new();
        for (b, a) in before.iter().zip(&after) {
            if *b == hs[3].address() {
                *spread.entry(*a).or_insert(0usize) += 1;
            } else {
                assert_eq!(a, b, "a key of a healthy host moved");
            }
        }
        // The failed host's keys spread over all four others, not onto one neighbour.
        assert_eq!(spread.len(), 4, "{spread:?}");
        let total: usize = spread.values().sum();
        assert!(
            spread
                .values()
                .all(|&x| within(x, total as f64 / 4.0, 0.25)),
            "{spread:?}"
        );
    }

    #[test]
    fn maglev_avoid_moves_the_key() {
        let hs = hosts(5);
        let lb = new_lb(LbType::Maglev, hs.clone(), 1);
        let ctx = LbContext::new().with_hash_key(b"user-42");
        let first = lb.choose(&ctx).expect("host").address();
        let avoid = [first];
        let retry = lb.choose(&ctx.with_avoid(&avoid)).expect("host").address();
        assert_ne!(first, retry);
        assert_eq!(
            retry,
            lb.choose(&ctx.with_avoid(&avoid)).expect("host").address()
        );
    }

    #[test]
    fn maglev_without_key_is_random() {
        let hs = hosts(3);
        let lb = new_lb(LbType::Maglev, hs.clone(), 8);
        let c = tally(&*lb, &hs, 30_000, &LbContext::new());
        assert!(c.iter().all(|&x| within(x, 10_000.0, 0.05)), "{c:?}");
    }

    #[test]
    fn maglev_table_for_100_hosts() {
        let hs = hosts(100);
        let lb = new_lb(LbType::Maglev, hs.clone(), 1);
        let mut c = vec![0usize; 100];
        for k in keys(100_000) {
            let h = lb
                .choose(&LbContext::new().with_hash_key(&k))
                .expect("host");
            c[index_of(&hs, &h)] += 1;
        }
        assert!(c.iter().all(|&x| within(x, 1000.0, 0.20)), "{c:?}");
    }

    #[test]
    fn original_dst() {
        let hs = hosts(2);
        let lb = new_lb(LbType::OriginalDst, hs.clone(), 1);
        assert!(lb.choose(&LbContext::new()).is_none());
        let dst: SocketAddr = "192.0.2.7:443".parse().expect("addr");
        let h = lb
            .choose(&LbContext::new().with_original_dst(dst))
            .expect("host");
        assert_eq!(h.address(), dst);
        assert_eq!(h.weight(), 1);
        // A known address is the cluster's own host (shared counters).
        let h = lb
            .choose(&LbContext::new().with_original_dst(hs[1].address()))
            .expect("host");
        assert!(Arc::ptr_eq(&h, &hs[1]));
        // Works with no hosts at all (ORIGINAL_DST clusters usually have none).
        let lb = new_lb(LbType::OriginalDst, Arc::new([]), 1);
        assert_eq!(
            lb.choose(&LbContext::new().with_original_dst(dst))
                .expect("host")
                .address(),
            dst
        );
    }

    #[test]
    fn avoid_is_honoured() {
        let hs = weighted(&[1, 2, 3]);
        let avoid = [hs[1].address()];
        let ctx = LbContext::new().with_avoid(&avoid).with_hash_key(b"k");
        for kind in LbType::ALL
            .into_iter()
            .filter(|&k| k != LbType::OriginalDst)
        {
            let lb = new_lb(kind, hs.clone(), 4);
            for _ in 0..500 {
                let h = lb.choose(&ctx).expect("host");
                assert_ne!(h.address(), hs[1].address(), "{kind}");
            }
        }
    }

    #[test]
    fn avoid_is_best_effort() {
        let hs = hosts(3);
        hs[0].set_healthy(false);
        let avoid = [hs[1].address(), hs[2].address()];
        let ctx = LbContext::new().with_avoid(&avoid).with_hash_key(b"k");
        for kind in LbType::ALL
            .into_iter()
            .filter(|&k| k != LbType::OriginalDst)
        {
            let lb = new_lb(kind, hs.clone(), 4);
            let h = lb.choose(&ctx).expect("an avoided but healthy host");
            assert!(h.is_healthy(), "{kind}");
        }
    }

    #[test]
    fn shared_across_threads() {
        let hs = weighted(&[1, 2, 3]);
        let lb: Arc<dyn LoadBalancer> =
            Arc::from(new_lb(LbType::WeightedRoundRobin, hs.clone(), 2));
        let counts: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let lb = lb.clone();
                    let hs = hs.clone();
                    s.spawn(move || tally(&*lb, &hs, 6_000, &LbContext::new()))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let mut total = [0usize; 3];
        for c in counts {
            for (t, x) in total.iter_mut().zip(c) {
                *t += x;
            }
        }
        // 24000 picks off one shared counter: exact shares whatever the interleaving.
        assert_eq!(total, [4_000, 8_000, 12_000]);
    }
}
