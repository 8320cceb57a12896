//! Handshake counters: per config ([`HandshakeCounters`], registrable in a mosn-metrics scope)
//! and process-wide per backend ([`HandshakeTotals`] via [`Backend::totals`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mosn_metrics::{Counter, Scope};

use crate::Backend;

/// Counters of one server or client config. Cloning shares the counters.
#[derive(Clone, Debug, Default)]
pub struct HandshakeCounters {
    ok: Arc<Counter>,
    failed: Arc<Counter>,
}

impl HandshakeCounters {
    /// Metric name of completed handshakes.
    pub const OK: &'static str = "tls_handshake_ok";
    /// Metric name of failed handshakes (peer, protocol or transport errors).
    pub const FAILED: &'static str = "tls_handshake_failed";

    /// Counters that live in `scope` as `tls_handshake_ok` and `tls_handshake_failed`
    /// (the caller picks the scope's labels, e.g. listener and backend).
    pub fn from_scope(scope: &Scope) -> HandshakeCounters {
        HandshakeCounters {
            ok: scope.counter(Self::OK),
            failed: scope.counter(Self::FAILED),
        }
    }

    /// Completed handshakes.
    pub fn ok(&self) -> u64 {
        self.ok.get()
    }

    /// Failed handshakes.
    pub fn failed(&self) -> u64 {
        self.failed.get()
    }

    pub(crate) fn record(&self, backend: Backend, ok: bool) {
        let (mine, total) = match (backend, ok) {
            (Backend::Rustls, true) => (&self.ok, &RUSTLS.0),
            (Backend::Rustls, false) => (&self.failed, &RUSTLS.1),
            #[cfg(feature = "openssl")]
            (Backend::OpenSsl, true) => (&self.ok, &OPENSSL.0),
            #[cfg(feature = "openssl")]
            (Backend::OpenSsl, false) => (&self.failed, &OPENSSL.1),
        };
        mine.inc();
        total.fetch_add(1, Ordering::Relaxed);
    }
}

/// Process-wide handshake counts of one backend (server and client sides together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeTotals {
    /// Completed handshakes.
    pub ok: u64,
    /// Failed handshakes.
    pub failed: u64,
}

static RUSTLS: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));
#[cfg(feature = "openssl")]
static OPENSSL: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));

pub(crate) fn totals(backend: Backend) -> HandshakeTotals {
    let (ok, failed) = match backend {
        Backend::Rustls => &RUSTLS,
        #[cfg(feature = "openssl")]
        Backend::OpenSsl => &OPENSSL,
    };
    HandshakeTotals {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    }
}
