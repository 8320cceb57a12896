//! Request metrics for listeners and clusters: totals, in-flight, per status code (created on
//! first use, then read without locks), and request time as a histogram.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mosn_metrics::{Counter, Gauge, Histogram, Scope};

/// Counters for one side (downstream per listener, or upstream per cluster).
#[derive(Debug)]
pub struct RequestStats {
    scope: Scope,
    prefix: &'static str,
    /// Requests started.
    pub total: Arc<Counter>,
    /// Requests in flight.
    pub active: Arc<Gauge>,
    /// Request time, from the request head to the end of the response.
    pub time: Arc<Histogram>,
    /// Requests that ended with a local error reply or reset.
    pub failed: Arc<Counter>,
    /// Retries sent.
    pub retries: Arc<Counter>,
    /// Requests that timed out.
    pub timeouts: Arc<Counter>,
    by_code: Box<[OnceLock<Arc<Counter>>]>,
}

impl RequestStats {
    /// Stats named `<prefix>_request_*` in `scope` (`prefix`: `downstream` or `upstream`).
    pub fn new(scope: &Scope, prefix: &'static str) -> Self {
        RequestStats {
            total: scope.counter(&format!("{prefix}_request_total")),
            active: scope.gauge(&format!("{prefix}_request_active")),
            time: scope.histogram(&format!("{prefix}_request_time_seconds")),
            failed: scope.counter(&format!("{prefix}_request_failure_total")),
            retries: scope.counter(&format!("{prefix}_request_retry_total")),
            timeouts: scope.counter(&format!("{prefix}_request_timeout_total")),
            by_code: (100..600).map(|_| OnceLock::new()).collect(),
            scope: scope.clone(),
            prefix,
        }
    }

    /// Counts one response with `status`.
    pub fn count_status(&self, status: u16) {
        let Some(slot) = self.by_code.get(usize::from(status).wrapping_sub(100)) else {
            return;
        };
        slot.get_or_init(|| {
            self.scope
                .counter(&format!("{}_response_{status}_total", self.prefix))
        })
        .inc();
    }

    /// Records a finished request.
    pub fn finish(&self, status: u16, took: Duration) {
        self.count_status(status);
        self.time.observe(took);
    }
}
