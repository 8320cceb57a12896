//! mosn-metrics: counters and gauges shared by every layer, and their exposition.
//!
//! The hot path touches only atomics (`Arc<Counter>`, `Arc<Gauge>` handed out once at set-up);
//! the registry's lock is taken when a metric is created and when the admin API renders.
//! Metrics are grouped MOSN-style into scopes: a type (`listener`, `cluster`, `host`,
//! `server`) plus identifying labels; Prometheus names are `mosn_<type>_<metric>`.
//!
//! Sits at the bottom of the crate graph: depends on no other mosn-rs crate.
#![forbid(unsafe_code)]

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

/// Increments a gauge now and decrements it when dropped.
#[derive(Debug)]
pub struct GaugeGuard(Arc<Gauge>);

impl GaugeGuard {
    /// Increments `g` until the guard is dropped.
    pub fn new(g: Arc<Gauge>) -> Self {
        g.inc();
        GaugeGuard(g)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug, Clone)]
enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
}

impl Metric {
    fn value(&self) -> i128 {
        match self {
            Metric::Counter(c) => c.get() as i128,
            Metric::Gauge(g) => g.get() as i128,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Metric::Counter(_) => "counter",
            Metric::Gauge(_) => "gauge",
        }
    }
}

type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Inner {
    // type -> labels -> metric name -> metric
    scopes: BTreeMap<String, BTreeMap<Labels, BTreeMap<String, Metric>>>,
}

/// The process-wide metric registry. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
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

    /// Removes every metric of one scope (a host or cluster that went away).
    pub fn remove_scope(&self, scope: &Scope) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(by_labels) = inner.scopes.get_mut(&scope.kind) {
            by_labels.remove(&scope.labels);
        }
    }

    /// Reads one metric's current value, if it exists.
    pub fn value(&self, kind: &str, labels: &[(&str, &str)], name: &str) -> Option<i128> {
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
                    let line = if label_text.is_empty() {
                        format!("{family} {}", metric.value())
                    } else {
                        format!("{family}{{{label_text}}} {}", metric.value())
                    };
                    families
                        .entry(family)
                        .or_insert_with(|| (metric.kind(), Vec::new()))
                        .1
                        .push(line);
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

    /// MOSN-style JSON: `{type: {"k=v,k=v": {metric: value}}}`.
    pub fn to_json(&self) -> serde_json::Value {
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
                    .map(|(n, v)| (n.clone(), serde_json::Value::from(v.value() as i64)))
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
            Metric::Gauge(_) => panic!("metric {name} registered as a gauge"),
        }
    }

    /// Gets or creates a gauge in this scope.
    pub fn gauge(&self, name: &str) -> Arc<Gauge> {
        match self
            .registry
            .get_or_insert(self, name, || Metric::Gauge(Arc::default()))
        {
            Metric::Gauge(g) => g,
            Metric::Counter(_) => panic!("metric {name} registered as a counter"),
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
}
