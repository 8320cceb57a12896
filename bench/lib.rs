//! Shared helpers for the micro-benchmarks in `benches/` and the RPC load tools in `bin/`
//! (`rpc-echo`, `rpc-load`, driven by `rpc.sh`); the other end-to-end harnesses are `l4.sh`
//! and `http.sh`.

pub mod rpc;
