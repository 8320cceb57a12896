//! Process-wide TLS backend counters in the metric registry: the OpenSSL backend's offload
//! totals (feature `openssl`), mirrored into scope `tls_offload{backend="openssl"}` whenever the
//! registry is read (`/stats`, `/stats/prometheus`). Per-listener handshake counts live in the
//! listener scopes (`tls_handshake_ok`, `tls_handshake_failed`).

use mosn_metrics::Registry;

/// Registers the collectors (nothing without the `openssl` feature).
pub(crate) fn register(registry: &Registry) {
    #[cfg(feature = "openssl")]
    {
        let scope = registry.scope("tls_offload", &[("backend", "openssl")]);
        let offloaded = scope.counter("handshakes_offloaded");
        let software = scope.counter("handshakes_software");
        let waits = scope.counter("async_waits");
        let retries = scope.counter("async_job_retries");
        let parked = scope.counter("parked");
        let fallbacks = scope.counter("fallbacks");
        registry.add_collector(move || {
            let s = mosn_tls_offload::openssl::stats();
            offloaded.raise_to(s.handshakes_offloaded);
            software.raise_to(s.handshakes_software);
            waits.raise_to(s.async_waits);
            retries.raise_to(s.async_job_retries);
            parked.raise_to(s.parked);
            fallbacks.raise_to(s.fallbacks);
        });
    }
    #[cfg(not(feature = "openssl"))]
    let _ = registry;
}
