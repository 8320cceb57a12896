//! `local_rate_limit` (alias `local_ratelimit`): a local token bucket, shared by all worker
//! threads, lock-free on the request path. MOSN itself has no local token-bucket stream
//! filter (its `flowControlFilter` wraps Sentinel); the keys follow Envoy's
//! `local_ratelimit` token bucket, flat or nested under `token_bucket`. Runs AfterRoute so a
//! route's `per_filter_config` can give that route its own bucket.
//!
//! ```json
//! {"type": "local_rate_limit", "config": {
//!   "max_tokens": 100, "tokens_per_fill": 10, "fill_interval": "1s",
//!   "header": "x-user", "max_buckets": 1024
//! }}
//! ```
//!
//! - `max_tokens` (required, >= 1): bucket size; a bucket starts full.
//! - `tokens_per_fill` (default 1): tokens added every `fill_interval` (required, Go duration).
//! - `header` (optional): one bucket per value of this request header; requests without it
//!   share one bucket. `max_buckets` (default 1024) bounds the table: a key takes a free slot
//!   or takes over one whose bucket is full again and was not claimed in the current fill
//!   tick (idle: a fresh bucket would be just the same); when the 8 slots a key may use are
//!   all busy with other keys, it shares one (more limiting, never less). A takeover racing
//!   with the old owner's request at a tick boundary can cost or grant one token.
//! - An empty bucket replies 429 with `RATE_LIMITED`.
//!
//! # The lock-free bucket
//!
//! The state is one `AtomicU64` `c`: tokens handed out, offset so that at fill tick `t`
//! (`t = elapsed / fill_interval`) the available tokens are
//! `min(max_tokens, t * tokens_per_fill + max_tokens - c)`. Taking a token is a CAS from `c`
//! to `max(c, t * tokens_per_fill) + 1`, allowed while that stays `<=` the budget
//! `t * tokens_per_fill + max_tokens`; the `max` drops tokens that would overflow the bucket.
//! `c` only grows, so there is no ABA and no wrap-around in practice.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderName;
use http::StatusCode;
use serde_json::Value;

use super::json::Fields;
use super::{FilterError, LocalReply, Phase, RequestCtx, StreamFilter, Verdict};
use crate::flags::ResponseFlags;

/// The canonical type name.
pub const TYPE: &str = "local_rate_limit";
/// Also accepted (Envoy's spelling).
pub const ALIAS: &str = "local_ratelimit";

const BUCKET_KEYS: &[&str] = &["max_tokens", "tokens_per_fill", "fill_interval"];
const DEFAULT_MAX_BUCKETS: u64 = 1024;
const MAX_MAX_BUCKETS: u64 = 1 << 20;
/// How many slots a key may probe.
const PROBES: usize = 8;

/// Time source; injectable for tests.
pub trait Clock: std::fmt::Debug + Send + Sync {
    /// Time elapsed since a fixed origin; never decreases.
    fn now(&self) -> Duration;
}

/// The real clock: a monotonic `Instant` against the filter's creation.
#[derive(Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock moved by hand (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// The parsed config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Bucket size.
    pub max_tokens: u64,
    /// Tokens added per fill.
    pub tokens_per_fill: u64,
    /// Time between fills.
    pub fill_interval: Duration,
    /// Header whose value selects the bucket.
    pub header: Option<HeaderName>,
    /// Size of the per-key bucket table (used only with `header`).
    pub max_buckets: usize,
}

impl RateLimitConfig {
    /// Parses the JSON (flat keys, or the bucket keys nested under `token_bucket`).
    pub fn parse(v: &Value) -> Result<RateLimitConfig, FilterError> {
        let mut allowed = BUCKET_KEYS.to_vec();
        allowed.extend_from_slice(&["token_bucket", "header", "max_buckets"]);
        let f = Fields::root(v, &allowed)?;
        let nested = f.object("token_bucket", BUCKET_KEYS)?;
        if nested.is_some() {
            if let Some(k) = BUCKET_KEYS.iter().find(|k| f.has(k)) {
                return Err(f.err(
                    k,
                    "give the bucket either flat or under token_bucket, not both",
                ));
            }
        }
        let b = nested.as_ref().unwrap_or(&f);
        let max_tokens = b
            .u64_in("max_tokens", 1, u64::from(u32::MAX))?
            .ok_or_else(|| b.err("max_tokens", "required (an integer >= 1)"))?;
        let tokens_per_fill = b
            .u64_in("tokens_per_fill", 1, u64::from(u32::MAX))?
            .unwrap_or(1);
        let fill_interval = b
            .duration("fill_interval")?
            .ok_or_else(|| b.err("fill_interval", "required (a Go duration such as \"1s\")"))?;
        if fill_interval.is_zero() {
            return Err(b.err("fill_interval", "must be above zero"));
        }
        let header = match f.str("header")? {
            None | Some("") => None,
            Some(h) => Some(
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| f.err("header", format!("invalid header name {h:?}")))?,
            ),
        };
        let max_buckets = f
            .u64_in("max_buckets", 1, MAX_MAX_BUCKETS)?
            .unwrap_or(DEFAULT_MAX_BUCKETS) as usize;
        Ok(RateLimitConfig {
            max_tokens,
            tokens_per_fill,
            fill_interval,
            header,
            max_buckets,
        })
    }
}

/// One token bucket (see the module doc).
#[derive(Debug, Default)]
struct Bucket {
    consumed: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    /// Fill ticks since the clock's origin.
    tick: u64,
    /// `t * tokens_per_fill`: tokens below this were refilled away.
    floor: u64,
    /// `floor + max_tokens`.
    budget: u64,
}

impl Bucket {
    fn try_acquire(&self, w: Window) -> bool {
        let mut cur = self.consumed.load(Ordering::Relaxed);
        loop {
            let base = cur.max(w.floor);
            if base >= w.budget {
                return false;
            }
            match self.consumed.compare_exchange_weak(
                cur,
                base + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// True when the bucket holds `max_tokens` (indistinguishable from a fresh bucket).
    fn is_full(&self, w: Window) -> bool {
        self.consumed.load(Ordering::Relaxed) <= w.floor
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// Hash of the key owning the slot; 0 = free.
    tag: AtomicU64,
    /// The tick at which the slot was last claimed: a slot is not taken over in the tick it
    /// was claimed, so a key that just claimed it cannot lose it before its first token.
    claimed_tick: AtomicU64,
    bucket: Bucket,
}

impl Slot {
    fn idle(&self, w: Window) -> bool {
        self.bucket.is_full(w) && self.claimed_tick.load(Ordering::Acquire) < w.tick
    }
}

/// The `local_rate_limit` filter.
#[derive(Debug)]
pub struct LocalRateLimit {
    config: RateLimitConfig,
    clock: Arc<dyn Clock>,
    interval_nanos: u128,
    /// The bucket used without `header`, and for requests lacking the header.
    shared: Bucket,
    /// Per-key buckets (empty without `header`).
    slots: Box<[Slot]>,
    hasher: RandomState,
}

/// The registry factory.
pub fn factory(v: &Value) -> Result<Arc<dyn StreamFilter>, FilterError> {
    Ok(Arc::new(LocalRateLimit::new(RateLimitConfig::parse(v)?)))
}

impl LocalRateLimit {
    /// A limiter on the monotonic clock.
    pub fn new(config: RateLimitConfig) -> LocalRateLimit {
        LocalRateLimit::with_clock(config, Arc::new(MonotonicClock::default()))
    }

    /// A limiter on `clock`.
    pub fn with_clock(config: RateLimitConfig, clock: Arc<dyn Clock>) -> LocalRateLimit {
        let slots = if config.header.is_some() {
            (0..config.max_buckets).map(|_| Slot::default()).collect()
        } else {
            Box::default()
        };
        LocalRateLimit {
            interval_nanos: config.fill_interval.as_nanos().max(1),
            config,
            clock,
            shared: Bucket::default(),
            slots,
            hasher: RandomState::new(),
        }
    }

    fn window(&self) -> Window {
        let tick =
            u64::try_from(self.clock.now().as_nanos() / self.interval_nanos).unwrap_or(u64::MAX);
        let floor = tick.saturating_mul(self.config.tokens_per_fill);
        Window {
            tick,
            floor,
            budget: floor.saturating_add(self.config.max_tokens),
        }
    }

    fn keyed_bucket(&self, key: &[u8], w: Window) -> &Bucket {
        let tag = self.hasher.hash_one(key).max(1);
        let n = self.slots.len();
        let start = (tag % n as u64) as usize;
        let probes = PROBES.min(n);
        for _round in 0..2 {
            let mut candidate = None;
            for i in 0..probes {
                let idx = (start + i) % n;
                let slot = &self.slots[idx];
                let owner = slot.tag.load(Ordering::Acquire);
                if owner == tag {
                    return &slot.bucket;
                }
                if candidate.is_none() && (owner == 0 || slot.idle(w)) {
                    candidate = Some((idx, owner));
                }
            }
            let Some((idx, owner)) = candidate else { break };
            let slot = &self.slots[idx];
            // Published before the tag (release by the CAS): whoever sees the new tag sees it.
            slot.claimed_tick.fetch_max(w.tick, Ordering::AcqRel);
            match slot
                .tag
                .compare_exchange(owner, tag, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return &slot.bucket,
                Err(now) if now == tag => return &slot.bucket,
                Err(_) => continue,
            }
        }
        &self.slots[start].bucket
    }

    /// Takes one token for a request with this key (`None`: the shared bucket).
    pub fn try_acquire(&self, key: Option<&[u8]>) -> bool {
        let w = self.window();
        let bucket = match key {
            Some(k) if !self.slots.is_empty() => self.keyed_bucket(k, w),
            _ => &self.shared,
        };
        bucket.try_acquire(w)
    }
}

impl StreamFilter for LocalRateLimit {
    fn name(&self) -> &'static str {
        TYPE
    }

    fn phase(&self) -> Phase {
        Phase::AfterRoute
    }

    fn on_request(&self, ctx: &mut RequestCtx<'_>) -> Verdict {
        let key = self
            .config
            .header
            .as_ref()
            .and_then(|h| ctx.head.headers.get(h))
            .map(|v| v.as_bytes());
        if self.try_acquire(key) {
            Verdict::Continue
        } else {
            Verdict::Reply(
                LocalReply::new(StatusCode::TOO_MANY_REQUESTS, ResponseFlags::RATE_LIMITED)
                    .with_text("local_rate_limited"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use serde_json::json;

    use super::*;
    use crate::filter::tests::{request, Harness};

    fn limiter(v: Value) -> (LocalRateLimit, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let l = LocalRateLimit::with_clock(RateLimitConfig::parse(&v).unwrap(), clock.clone());
        (l, clock)
    }

    fn take_all(l: &LocalRateLimit, key: Option<&[u8]>) -> u32 {
        let mut n = 0;
        while l.try_acquire(key) {
            n += 1;
            assert!(n <= 1_000_000, "bucket never empties");
        }
        n
    }

    #[test]
    fn parses_flat_and_nested_keys() {
        let flat = RateLimitConfig::parse(
            &json!({"max_tokens": 5, "tokens_per_fill": 2, "fill_interval": "1s"}),
        )
        .unwrap();
        let nested = RateLimitConfig::parse(
            &json!({"token_bucket": {"max_tokens": 5, "tokens_per_fill": 2, "fill_interval": "1s"}}),
        )
        .unwrap();
        assert_eq!(flat, nested);
        assert_eq!(flat.max_tokens, 5);
        assert_eq!(flat.tokens_per_fill, 2);
        assert_eq!(flat.fill_interval, Duration::from_secs(1));
        assert_eq!(flat.header, None);
        let keyed = RateLimitConfig::parse(&json!({"max_tokens": 1, "fill_interval": "100ms", "header": "X-User", "max_buckets": 4})).unwrap();
        assert_eq!(keyed.tokens_per_fill, 1);
        assert_eq!(
            keyed.header.as_ref().map(HeaderName::as_str),
            Some("x-user")
        );
        assert_eq!(keyed.max_buckets, 4);
    }

    #[test]
    fn bucket_starts_full_refills_per_interval_and_caps() {
        let (l, clock) =
            limiter(json!({"max_tokens": 3, "tokens_per_fill": 2, "fill_interval": "1s"}));
        assert_eq!(take_all(&l, None), 3);
        clock.advance(Duration::from_millis(999));
        assert!(!l.try_acquire(None));
        clock.advance(Duration::from_millis(1));
        assert_eq!(take_all(&l, None), 2);
        clock.advance(Duration::from_secs(1));
        assert!(l.try_acquire(None));
        // One token left over; a long idle period refills to max_tokens, not beyond.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(take_all(&l, None), 3);
    }

    #[test]
    fn filter_replies_429_with_flag() {
        let (l, _clock) = limiter(json!({"max_tokens": 2, "fill_interval": "1m"}));
        let mut h = Harness::new(request("GET", "/", &[]));
        assert_eq!(h.run(&l), Verdict::Continue);
        assert_eq!(h.run(&l), Verdict::Continue);
        match h.run(&l) {
            Verdict::Reply(r) => {
                assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
                assert!(r.flags.contains(ResponseFlags::RATE_LIMITED));
            }
            v => panic!("expected 429, got {v:?}"),
        }
    }

    #[test]
    fn header_keys_get_separate_buckets() {
        let (l, clock) =
            limiter(json!({"max_tokens": 2, "fill_interval": "1s", "header": "x-user"}));
        let mut alice = Harness::new(request("GET", "/", &[("x-user", "alice")]));
        let mut bob = Harness::new(request("GET", "/", &[("x-user", "bob")]));
        let mut anon = Harness::new(request("GET", "/", &[]));
        for _ in 0..2 {
            assert_eq!(alice.run(&l), Verdict::Continue);
        }
        assert!(matches!(alice.run(&l), Verdict::Reply(_)));
        assert_eq!(bob.run(&l), Verdict::Continue);
        assert_eq!(anon.run(&l), Verdict::Continue);
        assert_eq!(anon.run(&l), Verdict::Continue);
        assert!(matches!(anon.run(&l), Verdict::Reply(_)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(alice.run(&l), Verdict::Continue);
    }

    #[test]
    fn bucket_table_is_bounded_and_reuses_idle_slots() {
        let (l, clock) = limiter(
            json!({"max_tokens": 1, "fill_interval": "1s", "header": "k", "max_buckets": 2}),
        );
        assert_eq!(l.slots.len(), 2);
        // Two keys own the two slots and drain them.
        assert!(l.try_acquire(Some(b"a")));
        assert!(l.try_acquire(Some(b"b")));
        assert!(!l.try_acquire(Some(b"a")));
        assert!(!l.try_acquire(Some(b"b")));
        // A third key finds no free or idle slot: it shares one, which is empty (limiting).
        assert!(!l.try_acquire(Some(b"c")));
        // After a refill the slots are full (idle) again: the new key can take one over.
        clock.advance(Duration::from_secs(1));
        assert!(l.try_acquire(Some(b"c")));
        assert!(!l.try_acquire(Some(b"c")));
        let owners: Vec<u64> = l
            .slots
            .iter()
            .map(|s| s.tag.load(Ordering::Relaxed))
            .collect();
        assert!(owners.contains(&l.hasher.hash_one(b"c".as_slice()).max(1)));
    }

    #[test]
    fn concurrent_threads_never_exceed_the_budget() {
        let clock = Arc::new(ManualClock::new());
        let cfg = RateLimitConfig::parse(
            &json!({"max_tokens": 1000, "tokens_per_fill": 500, "fill_interval": "1s"}),
        )
        .unwrap();
        let l = Arc::new(LocalRateLimit::with_clock(cfg, clock.clone()));
        let run_round = |attempts: u32| -> u32 {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let l = l.clone();
                    thread::spawn(move || {
                        (0..attempts).filter(|_| l.try_acquire(None)).count() as u32
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        };
        assert_eq!(run_round(1000), 1000);
        clock.advance(Duration::from_secs(1));
        assert_eq!(run_round(1000), 500);
        assert_eq!(run_round(1000), 0);
    }

    #[test]
    fn concurrent_keyed_use_stays_within_each_budget() {
        let clock = Arc::new(ManualClock::new());
        let cfg = RateLimitConfig::parse(
            &json!({"max_tokens": 50, "fill_interval": "1h", "header": "k", "max_buckets": 64}),
        )
        .unwrap();
        let l = Arc::new(LocalRateLimit::with_clock(cfg, clock));
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let l = l.clone();
                thread::spawn(move || {
                    let mut granted = [0u32; 4];
                    for i in 0..400 {
                        let key = (i + t) % 4;
                        if l.try_acquire(Some(format!("user-{key}").as_bytes())) {
                            granted[key] += 1;
                        }
                    }
                    granted
                })
            })
            .collect();
        let mut total = [0u32; 4];
        for h in handles {
            for (t, g) in total.iter_mut().zip(h.join().unwrap()) {
                *t += g;
            }
        }
        // Each key has its own 50 tokens (keys could only ever share, never gain).
        assert!(total.iter().all(|&g| g <= 50), "{total:?}");
        assert_eq!(total.iter().sum::<u32>(), 200, "{total:?}");
    }

    #[test]
    fn malformed_configs_are_rejected() {
        let cases = [
            (
                json!({"fill_interval": "1s"}),
                "max_tokens: required (an integer >= 1)",
            ),
            (
                json!({"max_tokens": 0, "fill_interval": "1s"}),
                "max_tokens: must be an integer in 1..=4294967295, got 0",
            ),
            (
                json!({"max_tokens": 1}),
                "fill_interval: required (a Go duration such as \"1s\")",
            ),
            (
                json!({"max_tokens": 1, "fill_interval": "0s"}),
                "fill_interval: must be above zero",
            ),
            (
                json!({"max_tokens": 1, "fill_interval": "1 s"}),
                "fill_interval: invalid duration \"1 s\"",
            ),
            (
                json!({"max_tokens": 1, "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}),
                "max_tokens: give the bucket either flat or under token_bucket, not both",
            ),
            (
                json!({"token_bucket": {"max_tokens": 1}}),
                "token_bucket.fill_interval: required (a Go duration such as \"1s\")",
            ),
            (
                json!({"max_tokens": 1, "fill_interval": "1s", "max_buckets": 0}),
                "max_buckets: must be an integer in 1..=1048576, got 0",
            ),
            (
                json!({"max_tokens": 1, "fill_interval": "1s", "header": "a b"}),
                "header: invalid header name \"a b\"",
            ),
        ];
        for (v, want) in cases {
            let reason = RateLimitConfig::parse(&v).unwrap_err().reason;
            // The duration parser adds its own detail after the prefix.
            assert!(reason.starts_with(want), "{v}: {reason}");
        }
    }
}
