//! Shared helpers for the micro-benchmarks in `benches/`; the end-to-end harness is `l4.sh`.
