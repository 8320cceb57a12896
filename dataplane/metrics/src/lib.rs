//! mosn-metrics: counters, gauges and latency histograms shared by every layer, and their
//! exposition.
//!
//! ```text
//!  lib.rs        Counter, Gauge, Registry/Scope, Prometheus text and MOSN-style JSON rendering
//!  histogram.rs  Histogram: fixed latency buckets (0.5 ms .. 10 s, +Inf), lock-free observe
//! ```
//!
//! The hot path touches only atomics (`Arc<Counter>`, `Arc<Gauge>`, `Arc<Histogram>` handed
//! out once at set-up);
//! the registry's lock is taken when a metric is created and when the admin API renders.
//! Metrics are grouped MOSN-style into scopes: a type (`listener`, `cluster`, `host`,
//! `server`) plus identifying labels; Prometheus names are `mosn_<type>_<metric>`.
//!
//! Sits at the bottom of the crate graph: depends on no other mosn-rs crate.
#![forbid(unsafe_code)]

mod histogram;

pub use histogram::{Histogram, HistogramSnapshot, LATENCY_BUCKETS};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Raises the count to `total` (never lowers it): for a counter mirrored from a total kept
    /// elsewhere (see [`Registry::add_collector`]).
    pub fn raise_to(&self, total: u64) {
        self.0.fetch_max(total, Ordering::Relaxed);
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Increments a gauge now and decrements it when dropped. It holds the gauge as an `Arc`
/// (a guard that outlives its owner) or as a plain reference (one the caller outlives: no
/// reference count is touched).
#[derive(Debug)]
pub struct GaugeGuard<G: std::ops::Deref<Target = Gauge> = Arc<Gauge>>(G);

impl<G: std::ops::Deref<Target = Gauge>> GaugeGuard<G> {
    /// Increments `g` until the guard is dropped.
    pub fn new(g: G) -> Self {
        g.inc();
        GaugeGuard(g)
    }
}

impl<G: std::ops::Deref<Target = Gauge>> Drop for GaugeGuard<G> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug, Clone)]
enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

impl Metric {
    /// The single number [`Registry::value`] reports: a histogram's is its count.
    fn value(&self) -> i128 {
        match self {
            Metric::Counter(c) => c.get() as i128,
            Metric::Gauge(g) => g.get() as i128,
            Metric::Histogram(h) => h.count() as i128,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Metric::Counter(_) => "counter",
            Metric::Gauge(_) => "gauge",
            Metric::Histogram(_) => "histogram",
        }
    }
    fn to_json(&self) -> serde_json::Value {
        match self {
            Metric::Histogram(h) => {
                let s = h.snapshot();
                serde_json::json!({
                    "count": s.count(),
                    "sum": s.sum_seconds(),
                    "p50": s.quantile(0.5),
                    "p90": s.quantile(0.9),
                    "p99": s.quantile(0.99),
                })
            }
            other => serde_json::Value::from(other.value() as i64),
        }
    }
    /// Appends this metric's Prometheus sample lines; `labels` is the scope's rendered
    /// `k="v"` list (possibly empty).
    fn prometheus_lines(&self, family: &str, labels: &str, out: &mut Vec<String>) {
        let braces = |extra: &str| -> String {
            match (labels.is_empty(), extra.is_empty()) {
                (true, true) => String::new(),
                (true, false) => format!("{{{extra}}}"),
                (false, true) => format!("{{{labels}}}"),
                (false, false) => format!("{{{labels},{extra}}}"),
            }
        };
        match self {
            Metric::Histogram(h) => {
                let s = h.snapshot();
                for (le, n) in s.cumulative() {
                    let le = if le.is_infinite() {
                        "+Inf".to_string()
                    } else {
                        le.to_string()
                    };
                    out.push(format!(
                        "{family}_bucket{} {n}",
                        braces(&format!("le=\"{le}\""))
                    ));
                }
                out.push(format!("{family}_sum{} {}", braces(""), s.sum_seconds()));
                out.push(format!("{family}_count{} {}", braces(""), s.count()));
            }
            other => out.push(format!("{family}{} {}", braces(""), other.value())),
        }
    }
}

type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Inner {
    // type -> labels -> metric name -> metric
    scopes: BTreeMap<String, BTreeMap<Labels, BTreeMap<String, Metric>>>,
}

/// Refreshes metrics whose values live elsewhere just before the registry is read.
type Collector = Arc<dyn Fn() + Send + Sync>;

/// The process-wide metric registry. Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
    collectors: Arc<Mutex<Vec<Collector>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A metric scope: a type and its identifying labels.
#[derive(Debug, Clone)]
pub struct Scope {
    registry: Registry,
    kind: String,
    labels: Labels,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A scope of type `kind` (`listener`, `cluster`, ...) with identifying labels.
    pub fn scope(&self, kind: &str, labels: &[(&str, &str)]) -> Scope {
        Scope {
            registry: self.clone(),
            kind: kind.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn get_or_insert(&self, scope: &Scope, name: &str, make: impl FnOnce() -> Metric) -> Metric {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .scopes
            .entry(scope.kind.clone())
            .or_default()
            .entry(scope.labels.clone())
            .or_default()
            .entry(name.to_string())
            .or_insert_with(make)
            .clone()
    }

    /// Runs `collect` before every read of the registry (`value`, Prometheus, JSON): for totals
    /// another crate keeps in its own atomics (e.g. the TLS backends' process-wide counters),
    /// copied into this registry's metrics on demand instead of by a timer.
    pub fn add_collector(&self, collect: impl Fn() + Send + Sync + 'static) {
        self.collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(collect));
    }

    fn collect(&self) {
        // Cloned out so a collector may use the registry (its scopes' metrics) freely.
        let list = self
            .collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for c in list {
            c();
        }
    }

    /// Removes every metric of one scope (a host or cluster that went away).
    pub fn remove_scope(&self, scope: &Scope) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(by_labels) = inner.scopes.get_mut(&scope.kind) {
            by_labels.remove(&scope.labels);
        }
    }

    /// Reads one metric's current value, if it exists (a histogram's is its count).
    pub fn value(&self, kind: &str, labels: &[(&str, &str)], name: &str) -> Option<i128> {
        self.collect();
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        inner
            .scopes
            .get(kind)?
            .get(&labels)?
            .get(name)
            .map(Metric::value)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        self.collect();
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // family name -> (kind, lines)
        let mut families: BTreeMap<String, (&'static str, Vec<String>)> = BTreeMap::new();
        for (kind, by_labels) in &inner.scopes {
            for (labels, metrics) in by_labels {
                let label_text = labels
                    .iter()
                    .map(|(k, v)| format!("{}=\"{}\"", sanitize(k), escape_label(v)))
                    .collect::<Vec<_>>()
                    .join(",");
                for (name, metric) in metrics {
                    let family = format!("mosn_{}_{}", sanitize(kind), sanitize(name));
                    let lines = &mut families
                        .entry(family.clone())
                        .or_insert_with(|| (metric.kind(), Vec::new()))
                        .1;
                    metric.prometheus_lines(&family, &label_text, lines);
                }
            }
        }
        let mut out = String::new();
        for (family, (kind, lines)) in families {
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }

    /// MOSN-style JSON: `{type: {"k=v,k=v": {metric: value}}}`. A histogram's value is an
    /// object `{"count", "sum", "p50", "p90", "p99"}` (seconds; quantiles estimated from
    /// the buckets, `null` while the histogram is empty).
    pub fn to_json(&self) -> serde_json::Value {
        self.collect();
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut root = serde_json::Map::new();
        for (kind, by_labels) in &inner.scopes {
            let mut k = serde_json::Map::new();
            for (labels, metrics) in by_labels {
                let key = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let m: serde_json::Map<String, serde_json::Value> = metrics
                    .iter()
                    .map(|(n, v)| (n.clone(), v.to_json()))
                    .collect();
                k.insert(key, serde_json::Value::Object(m));
            }
            root.insert(kind.clone(), serde_json::Value::Object(k));
        }
        serde_json::Value::Object(root)
    }
}

impl Scope {
    /// Gets or creates a counter in this scope.
    pub fn counter(&self, name: &str) -> Arc<Counter> {
        match self
            .registry
            .get_or_insert(self, name, || Metric::Counter(Arc::default()))
        {
            Metric::Counter(c) => c,
            other => panic!("metric {name} registered as a {}", other.kind()),
        }
    }

    /// Gets or creates a gauge in this scope.
    pub fn gauge(&self, name: &str) -> Arc<Gauge> {
        match self
            .registry
            .get_or_insert(self, name, || Metric::Gauge(Arc::default()))
        {
            Metric::Gauge(g) => g,
            other => panic!("metric {name} registered as a {}", other.kind()),
        }
    }

    /// Gets or creates a latency histogram (buckets [`LATENCY_BUCKETS`]) in this scope.
    /// Prometheus shows it as `mosn_<type>_<name>_bucket{..,le=".."}`, `_sum` (seconds) and
    /// `_count`.
    pub fn histogram(&self, name: &str) -> Arc<Histogram> {
        match self
            .registry
            .get_or_insert(self, name, || Metric::Histogram(Arc::default()))
        {
            Metric::Histogram(h) => h,
            other => panic!("metric {name} registered as a {}", other.kind()),
        }
    }

    /// The registry this scope belongs to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_and_json_render_values_by_scope() {
        let r = Registry::new();
        let l = r.scope("listener", &[("listener", "in\"gress")]);
        l.counter("downstream_connection_total").add(3);
        let g = l.gauge("downstream_connection_active");
        {
            let _a = GaugeGuard::new(g.clone());
            let _b = GaugeGuard::new(g.clone());
            assert_eq!(g.get(), 2);
        }
        g.inc();
        let text = r.render_prometheus();
        assert!(text.contains("# TYPE mosn_listener_downstream_connection_total counter"));
        assert!(
            text.contains("mosn_listener_downstream_connection_total{listener=\"in\\\"gress\"} 3")
        );
        assert!(
            text.contains("mosn_listener_downstream_connection_active{listener=\"in\\\"gress\"} 1")
        );
        let json = r.to_json();
        assert_eq!(
            json["listener"]["listener=in\"gress"]["downstream_connection_total"],
            3
        );
        assert_eq!(
            r.value(
                "listener",
                &[("listener", "in\"gress")],
                "downstream_connection_active"
            ),
            Some(1)
        );
        r.remove_scope(&l);
        assert_eq!(
            r.value(
                "listener",
                &[("listener", "in\"gress")],
                "downstream_connection_total"
            ),
            None
        );
    }

    /// Parses `name{labels} value` sample lines of one family back into
    /// `(suffix, labels, value)`.
    fn samples<'a>(text: &'a str, family: &str) -> Vec<(&'a str, &'a str, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let rest = l.strip_prefix(family)?;
                let (head, value) = rest.rsplit_once(' ')?;
                let (suffix, labels) = match head.split_once('{') {
                    Some((s, l)) => (s, l.strip_suffix('}')?),
                    None => (head, ""),
                };
                Some((suffix, labels, value.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn histogram_renders_cumulative_prometheus_buckets() {
        let r = Registry::new();
        let c = r.scope("cluster", &[("cluster", "backend")]);
        let h = c.histogram("request_duration_time");
        assert!(Arc::ptr_eq(&h, &c.histogram("request_duration_time")));
        for ms in [0.2, 0.5, 0.7, 3.0, 3.0, 120.0, 20_000.0] {
            h.observe(std::time::Duration::from_secs_f64(ms / 1000.0));
        }
        // A scope without labels renders `le` as the only label.
        r.scope("server", &[])
            .histogram("latency")
            .observe(std::time::Duration::from_millis(2));

        let text = r.render_prometheus();
        let family = "mosn_cluster_request_duration_time";
        assert_eq!(
            text.matches(&format!("# TYPE {family} histogram\n"))
                .count(),
            1,
            "{text}"
        );
        let samples = samples(&text, family);
        let buckets: Vec<(String, f64)> = samples
            .iter()
            .filter(|(suffix, _, _)| *suffix == "_bucket")
            .map(|(_, labels, v)| {
                let (scope, le) = labels.split_once(",le=").expect("le label");
                assert_eq!(scope, "cluster=\"backend\"");
                (le.trim_matches('"').to_string(), *v)
            })
            .collect();
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            assert_eq!(buckets[i].0.parse::<f64>().unwrap(), *b);
        }
        assert_eq!(buckets.last().unwrap().0, "+Inf");
        let counts: Vec<f64> = buckets.iter().map(|(_, v)| *v).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        let le = |bound: &str| buckets.iter().find(|(l, _)| l == bound).unwrap().1;
        assert_eq!(le("0.0005"), 2.0);
        assert_eq!(le("0.001"), 3.0);
        assert_eq!(le("0.005"), 5.0);
        assert_eq!(le("0.25"), 6.0);
        assert_eq!(le("10"), 6.0);
        assert_eq!(le("+Inf"), 7.0);
        let one = |suffix: &str| {
            let found: Vec<_> = samples.iter().filter(|s| s.0 == suffix).collect();
            assert_eq!(found.len(), 1, "{suffix}");
            assert_eq!(found[0].1, "cluster=\"backend\"");
            found[0].2
        };
        assert_eq!(one("_count"), 7.0);
        assert!((one("_sum") - 20.1274).abs() < 1e-9, "{}", one("_sum"));

        assert!(text.contains("# TYPE mosn_server_latency histogram\n"));
        assert!(text.contains("mosn_server_latency_bucket{le=\"0.0025\"} 1\n"));
        assert!(text.contains("mosn_server_latency_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("mosn_server_latency_count 1\n"));

        let json = r.to_json();
        let j = &json["cluster"]["cluster=backend"]["request_duration_time"];
        assert_eq!(j["count"], 7);
        assert!((j["sum"].as_f64().unwrap() - 20.1274).abs() < 1e-9);
        let p50 = j["p50"].as_f64().unwrap();
        assert!((0.0025..=0.005).contains(&p50), "{p50}");
        assert_eq!(j["p99"].as_f64(), Some(10.0));
        assert_eq!(
            r.value(
                "cluster",
                &[("cluster", "backend")],
                "request_duration_time"
            ),
            Some(7)
        );
        let empty = r.scope("host", &[]).histogram("idle");
        assert_eq!(empty.count(), 0);
        assert!(r.to_json()["host"][""]["idle"]["p50"].is_null());
    }

    #[test]
    #[should_panic(expected = "registered as a histogram")]
    fn a_name_keeps_its_metric_type() {
        let r = Registry::new();
        let s = r.scope("server", &[]);
        s.histogram("x");
        s.counter("x");
    }

    #[test]
    fn collectors_refresh_mirrored_totals_before_every_read() {
        use std::sync::atomic::AtomicU64;
        static ELSEWHERE: AtomicU64 = AtomicU64::new(0);
        let r = Registry::new();
        let c = r
            .scope("tls_offload", &[("backend", "x")])
            .counter("handshakes");
        let mirrored = c.clone();
        r.add_collector(move || mirrored.raise_to(ELSEWHERE.load(Ordering::Relaxed)));
        ELSEWHERE.store(5, Ordering::Relaxed);
        assert!(r
            .render_prometheus()
            .contains("mosn_tls_offload_handshakes{backend=\"x\"} 5"));
        ELSEWHERE.store(7, Ordering::Relaxed);
        assert_eq!(
            r.value("tls_offload", &[("backend", "x")], "handshakes"),
            Some(7)
        );
        ELSEWHERE.store(9, Ordering::Relaxed);
        assert_eq!(
            r.to_json()["tls_offload"]["backend=x"]["handshakes"],
            serde_json::json!(9)
        );
        // Never lowered.
        c.raise_to(3);
        assert_eq!(c.get(), 9);
    }
}
