//! mosn-server: the composition layer. The only crate that knows every concrete type: it turns
//! a validated config into the small specs of the lower layers (`plan.rs`), binds listeners,
//! starts one worker per core (`worker.rs`), and runs the control thread: admin API, DNS
//! refresh, reload and graceful drain (`run.rs`).
//!
//! ```text
//!  binary (dataplane/main.rs: CLI)  ->  mosn-server  ->  mosn-admin, mosn-proxy, mosn-net, mosn-config
//! ```
#![forbid(unsafe_code)]

pub mod dpdk;
pub mod logging;
pub mod plan;
pub mod run;
mod tls_stats;
pub mod worker;

pub use run::{Backend, BuildInfo, FilterPlan, ListenerPlan, Plan, RunError, Server, Signal};
