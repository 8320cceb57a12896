//! `fault`: delay and abort requests by percentage (MOSN `pkg/filter/stream/faultinject`,
//! config `v2.StreamFaultInject`). Runs AfterRoute, as in MOSN.
//!
//! ```json
//! {"type": "fault", "config": {
//!   "delay": {"fixed_delay": "1s", "percentage": 100},
//!   "abort": {"status": 500, "percentage": 100},
//!   "upstream_cluster": "clustername",
//!   "headers": [{"name": "service", "value": "test", "regex": false}]
//! }}
//! ```
//!
//! - `percentage` is an integer percent 0..=100 (MOSN draws `rand % 100 < percentage`);
//!   0 or an absent block disables that fault. `fixed_delay` is a Go duration string.
//! - `upstream_cluster`: only requests routed to this cluster are faulted.
//! - `headers`: only requests matching every header matcher are faulted
//!   (see [`super::matcher`]).
//! - Delay and abort are drawn independently; when both hit, the request is delayed and then
//!   aborted (MOSN's order). A delay yields [`Verdict::Delay`] (the engine records
//!   `DELAY_INJECTED`); an abort replies `status` with `FAULT_INJECTED`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;

use super::json::Fields;
use super::matcher::{self, HeaderMatcher};
use super::{FilterError, LocalReply, Phase, RequestCtx, StreamFilter, Verdict};
use crate::flags::ResponseFlags;

/// The type name.
pub const TYPE: &str = "fault";

/// Where percentage draws come from; injectable for tests.
pub trait RandomSource: std::fmt::Debug + Send + Sync {
    /// A uniform integer in `0..100`.
    fn percent_draw(&self) -> u32;
}

/// The default source: the calling thread's RNG (no lock shared between workers).
#[derive(Debug, Default)]
pub struct ThreadRandom;

impl RandomSource for ThreadRandom {
    fn percent_draw(&self) -> u32 {
        rand::thread_rng().gen_range(0..100)
    }
}

/// A seeded, reproducible source (tests, benchmarks). Uses a mutex: not for production.
#[derive(Debug)]
pub struct SeededRandom(Mutex<SmallRng>);

impl SeededRandom {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom(Mutex::new(SmallRng::seed_from_u64(seed)))
    }
}

impl RandomSource for SeededRandom {
    fn percent_draw(&self) -> u32 {
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        rng.next_u32() % 100
    }
}

/// The parsed `fault` config.
#[derive(Clone, Debug, Default)]
pub struct FaultConfig {
    /// `delay.fixed_delay`, `delay.percentage`.
    pub delay: Option<(Duration, u32)>,
    /// `abort.status`, `abort.percentage`.
    pub abort: Option<(StatusCode, u32)>,
    /// `upstream_cluster`.
    pub upstream_cluster: Option<String>,
    /// `headers`.
    pub headers: Vec<HeaderMatcher>,
}

impl FaultConfig {
    /// Parses MOSN's JSON.
    pub fn parse(v: &Value) -> Result<FaultConfig, FilterError> {
        let f = Fields::root(v, &["delay", "abort", "upstream_cluster", "headers"])?;
        let delay = match f.object("delay", &["fixed_delay", "percentage"])? {
            None => None,
            Some(d) => {
                let percent = d.percent("percentage")?.unwrap_or(0);
                let fixed = d.duration("fixed_delay")?;
                match fixed {
                    Some(fixed) => Some((fixed, percent)),
                    None if percent == 0 => None,
                    None => return Err(d.err("fixed_delay", "required when percentage is above 0")),
                }
            }
        };
        let abort = match f.object("abort", &["status", "percentage"])? {
            None => None,
            Some(a) => {
                let percent = a.percent("percentage")?.unwrap_or(0);
                match a.status("status")? {
                    Some(status) => Some((status, percent)),
                    None if percent == 0 => None,
                    None => return Err(a.err("status", "required when percentage is above 0")),
                }
            }
        };
        let upstream_cluster = f
            .str("upstream_cluster")?
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Ok(FaultConfig {
            delay,
            abort,
            upstream_cluster,
            headers: matcher::parse_list(&f, "headers")?,
        })
    }
}

/// The `fault` filter.
#[derive(Debug)]
pub struct FaultFilter {
    config: FaultConfig,
    random: Arc<dyn RandomSource>,
}

/// The registry factory.
pub fn factory(v: &Value) -> Result<Arc<dyn StreamFilter>, FilterError> {
    Ok(Arc::new(FaultFilter::new(FaultConfig::parse(v)?)))
}

impl FaultFilter {
    /// A filter drawing from the thread RNG.
    pub fn new(config: FaultConfig) -> FaultFilter {
        FaultFilter::with_random(config, Arc::new(ThreadRandom))
    }

    /// A filter drawing from `random`.
    pub fn with_random(config: FaultConfig, random: Arc<dyn RandomSource>) -> FaultFilter {
        FaultFilter { config, random }
    }

    fn hit(&self, percent: u32) -> bool {
        percent > 0 && self.random.percent_draw() < percent
    }
}

impl StreamFilter for FaultFilter {
    fn name(&self) -> &'static str {
        TYPE
    }

    fn phase(&self) -> Phase {
        Phase::AfterRoute
    }

    fn on_request(&self, ctx: &mut RequestCtx<'_>) -> Verdict {
        let c = &self.config;
        if let Some(cluster) = &c.upstream_cluster {
            if ctx.cluster != Some(cluster.as_str()) {
                return Verdict::Continue;
            }
        }
        if !matcher::all_match(&c.headers, &ctx.head.headers) {
            return Verdict::Continue;
        }
        let delay = c
            .delay
            .filter(|&(d, p)| !d.is_zero() && self.hit(p))
            .map(|(d, _)| d);
        let abort = c.abort.filter(|&(_, p)| self.hit(p)).map(|(status, _)| {
            LocalReply::new(status, ResponseFlags::FAULT_INJECTED).with_text("fault filter abort")
        });
        match (delay, abort) {
            (Some(delay), then) => Verdict::Delay { delay, then },
            (None, Some(reply)) => Verdict::Reply(reply),
            (None, None) => Verdict::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::filter::tests::{request, Harness};

    fn filter(v: Value, seed: u64) -> FaultFilter {
        FaultFilter::with_random(
            FaultConfig::parse(&v).unwrap(),
            Arc::new(SeededRandom::new(seed)),
        )
    }

    #[test]
    fn parses_mosn_keys() {
        let c = FaultConfig::parse(&json!({
            "delay": {"fixed_delay": "1s", "percentage": 100},
            "abort": {"status": 500, "percentage": 100},
            "upstream_cluster": "clustername",
            "headers": [{"name": "service", "value": "test", "regex": false},
                        {"name": "user", "value": "bob", "regex": false}]
        }))
        .unwrap();
        assert_eq!(c.delay, Some((Duration::from_secs(1), 100)));
        assert_eq!(c.abort, Some((StatusCode::INTERNAL_SERVER_ERROR, 100)));
        assert_eq!(c.upstream_cluster.as_deref(), Some("clustername"));
        assert_eq!(c.headers.len(), 2);
        let empty = FaultConfig::parse(&Value::Null).unwrap();
        assert!(empty.delay.is_none() && empty.abort.is_none() && empty.headers.is_empty());
    }

    #[test]
    fn always_abort_replies_with_status_and_flag() {
        let f = filter(json!({"abort": {"status": 503, "percentage": 100}}), 1);
        let mut h = Harness::new(request("GET", "/", &[]));
        match h.run(&f) {
            Verdict::Reply(r) => {
                assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
                assert!(r.flags.contains(ResponseFlags::FAULT_INJECTED));
                assert!(r.flags.contains(ResponseFlags::LOCAL_REPLY));
            }
            v => panic!("expected a reply, got {v:?}"),
        }
    }

    #[test]
    fn always_delay_then_continue_or_abort() {
        let f = filter(
            json!({"delay": {"fixed_delay": "250ms", "percentage": 100}}),
            1,
        );
        let mut h = Harness::new(request("GET", "/", &[]));
        assert_eq!(
            h.run(&f),
            Verdict::Delay {
                delay: Duration::from_millis(250),
                then: None
            }
        );
        let f = filter(
            json!({"delay": {"fixed_delay": "2s", "percentage": 100},
                   "abort": {"status": 418, "percentage": 100}}),
            1,
        );
        match h.run(&f) {
            Verdict::Delay {
                delay,
                then: Some(r),
            } => {
                assert_eq!(delay, Duration::from_secs(2));
                assert_eq!(r.status, StatusCode::IM_A_TEAPOT);
            }
            v => panic!("expected delay then abort, got {v:?}"),
        }
    }

    #[test]
    fn zero_percent_or_zero_delay_never_faults() {
        let f = filter(
            json!({"delay": {"fixed_delay": "1s", "percentage": 0},
                   "abort": {"status": 500, "percentage": 0}}),
            1,
        );
        let g = filter(
            json!({"delay": {"fixed_delay": "0s", "percentage": 100}}),
            1,
        );
        let mut h = Harness::new(request("GET", "/", &[]));
        for _ in 0..1000 {
            assert_eq!(h.run(&f), Verdict::Continue);
            assert_eq!(h.run(&g), Verdict::Continue);
        }
    }

    #[test]
    fn percentages_hold_over_many_draws() {
        let f = filter(
            json!({"delay": {"fixed_delay": "1ms", "percentage": 30},
                   "abort": {"status": 500, "percentage": 10}}),
            42,
        );
        let mut h = Harness::new(request("GET", "/", &[]));
        let (mut delays, mut aborts) = (0u32, 0u32);
        let n = 20_000u32;
        for _ in 0..n {
            match h.run(&f) {
                Verdict::Continue => {}
                Verdict::Reply(_) => aborts += 1,
                Verdict::Delay { then, .. } => {
                    delays += 1;
                    if then.is_some() {
                        aborts += 1;
                    }
                }
            }
        }
        // Expected 6000 delays and 2000 aborts; allow ±1.5 points.
        assert!((5700..=6300).contains(&delays), "delays {delays}");
        assert!((1700..=2300).contains(&aborts), "aborts {aborts}");
    }

    #[test]
    fn header_and_cluster_conditions() {
        let f = filter(
            json!({"abort": {"status": 500, "percentage": 100},
                   "upstream_cluster": "c1",
                   "headers": [{"name": "x-fault", "value": "^y", "regex": true}]}),
            1,
        );
        let mut h = Harness::new(request("GET", "/", &[("x-fault", "yes")]));
        h.cluster = Some("c1");
        assert!(matches!(h.run(&f), Verdict::Reply(_)));
        h.cluster = Some("c2");
        assert_eq!(h.run(&f), Verdict::Continue);
        h.cluster = None;
        assert_eq!(h.run(&f), Verdict::Continue);
        let mut h = Harness::new(request("GET", "/", &[("x-fault", "no")]));
        h.cluster = Some("c1");
        assert_eq!(h.run(&f), Verdict::Continue);
    }

    #[test]
    fn malformed_configs_are_rejected() {
        let cases = [
            (
                json!({"delay": {"fixed_delay": "1s", "percentage": 101}}),
                "delay.percentage: must be an integer in 0..=100, got 101",
            ),
            (
                json!({"delay": {"fixed_delay": 1000, "percentage": 10}}),
                "delay.fixed_delay: must be a Go duration string such as \"1s\" or \"500ms\"",
            ),
            (
                json!({"delay": {"percentage": 10}}),
                "delay.fixed_delay: required when percentage is above 0",
            ),
            (
                json!({"abort": {"percentage": 10}}),
                "abort.status: required when percentage is above 0",
            ),
            (
                json!({"abort": {"status": 1000, "percentage": 10}}),
                "abort.status: must be an HTTP status code in 200..=599, got 1000",
            ),
            (
                json!({"abort": {"status": 500, "percent": 10}}),
                "abort: unknown key \"percent\" (expected one of: status, percentage)",
            ),
            (
                json!({"upstream_cluster": 5}),
                "upstream_cluster: must be a string, got a number",
            ),
            (json!("fault"), "must be an object, got a string"),
        ];
        for (v, want) in cases {
            assert_eq!(FaultConfig::parse(&v).unwrap_err().reason, want, "{v}");
        }
    }
}
