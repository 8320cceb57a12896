//! mosn-admin: the admin HTTP API of mosn-rs, compatible with SOFA-MOSN's admin API.
//!
//! ```text
//!  TcpListener (control thread's runtime)
//!    |  accept: one task per connection, at most MAX_CONNECTIONS at once
//!  server   hyper HTTP/1.1 connection: header-read timeout, keep-alive, graceful shutdown
//!    |
//!  api      route table -> method check -> query check -> (body, capped) -> endpoint
//!    |                                                          |
//!  Registry (mosn-metrics): JSON / Prometheus          AdminHandler (the process):
//!                                                      version, config, state, log level
//! ```
//!
//! Endpoints (GET unless noted; `GET /` lists them with their parameters):
//!
//! | path | answer |
//! | --- | --- |
//! | `/api/v1/version` | [`AdminHandler::version`] as JSON |
//! | `/api/v1/config_dump` | [`AdminHandler::config_dump`] as JSON |
//! | `/api/v1/stats` | [`Registry::to_json`]; `?type=<type>`, MOSN's `?key=<type>[.<label value>...]` |
//! | `/stats/prometheus`, `/api/v1/stats/prometheus`, `/metrics` | Prometheus text 0.0.4 |
//! | `/api/v1/states` | MOSN's `pid=<pid>&state=<code>` text ([`ServerState::mosn_code`]); `?format=json` |
//! | `/api/v1/get_loglevel` | `{"log_level": "INFO"}` |
//! | `/api/v1/update_loglevel` | POST MOSN's `{"log_path": "...", "log_level": "DEBUG"}`, or `?level=DEBUG` |
//!
//! Errors are JSON `{"error": "<reason>"}` (MOSN's shape): 404 unknown path, 405 wrong method
//! (with `Allow`), 400 bad query or body, 413 body over [`MAX_REQUEST_BODY`], 500 if the
//! [`AdminHandler`] panics. Malformed HTTP is answered by hyper (400) and that connection
//! closed; nothing a client sends can panic the server.
//!
//! Depends on no mosn-rs crate but `mosn-metrics`; the process plugs in through
//! [`AdminHandler`], which the server crate implements.
//!
//! [`Registry::to_json`]: mosn_metrics::Registry::to_json
#![forbid(unsafe_code)]

mod api;
mod query;
mod server;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub use api::{
    CONTENT_TYPE_JSON, CONTENT_TYPE_PROMETHEUS, CONTENT_TYPE_TEXT, LOG_LEVELS, MAX_REQUEST_BODY,
};
pub use server::{DRAIN_TIMEOUT, HEADER_READ_TIMEOUT, MAX_CONNECTIONS};

/// What the admin API asks of the running process (implemented by the server crate).
///
/// Called from the admin server's tasks on the control thread: keep each call short
/// and non-blocking. A panic in a call is caught and answered with a 500.
pub trait AdminHandler: Send + Sync + 'static {
    /// Build information, e.g. `{"version": "0.1.0", "commit": "..."}`.
    fn version(&self) -> serde_json::Value;
    /// The running configuration, secrets already removed.
    fn config_dump(&self) -> serde_json::Value;
    /// Where the process is in its life.
    fn state(&self) -> ServerState;
    /// The current log level, one of [`LOG_LEVELS`] (e.g. `"INFO"`).
    fn log_level(&self) -> String;
    /// Sets the log level. `level` is always one of [`LOG_LEVELS`], upper case; an `Err`
    /// is reported to the client as a 400 with its text as the reason.
    fn set_log_level(&self, level: &str) -> Result<(), String>;
}

/// The process' life stage, as reported by `/api/v1/states`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Loading config, binding listeners.
    Initing,
    /// Serving traffic.
    Running,
    /// Stopped accepting; finishing the connections it has (graceful stop).
    Draining,
    /// Closing everything.
    Stopping,
}

impl ServerState {
    /// MOSN's number for this stage (`stagemanager.State` in MOSN 1.x:
    /// `Initing` = 2, `Running` = 6, `GracefulStopping` = 8, `Stopping` = 9), which MOSN's
    /// `/api/v1/states` prints as `state=<code>`.
    pub fn mosn_code(self) -> u32 {
        match self {
            ServerState::Initing => 2,
            ServerState::Running => 6,
            ServerState::Draining => 8,
            ServerState::Stopping => 9,
        }
    }

    /// Lower-case name: `initing`, `running`, `draining`, `stopping`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Initing => "initing",
            ServerState::Running => "running",
            ServerState::Draining => "draining",
            ServerState::Stopping => "stopping",
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every connection task shares.
pub(crate) struct Inner {
    pub(crate) registry: mosn_metrics::Registry,
    pub(crate) handler: Arc<dyn AdminHandler>,
}

/// The admin API server.
pub struct Admin {
    inner: Arc<Inner>,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// An admin API over `registry`'s metrics and the process behind `handler`.
    pub fn new(registry: mosn_metrics::Registry, handler: Arc<dyn AdminHandler>) -> Self {
        Admin {
            inner: Arc::new(Inner { registry, handler }),
        }
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves; each connection in its own task.
    ///
    /// Must run inside a tokio runtime (the control thread's). When `shutdown` resolves it
    /// stops accepting, closes idle connections, lets requests in flight finish for up to
    /// [`DRAIN_TIMEOUT`], then drops what is left and returns. Accept errors (e.g. out of file
    /// descriptors) are logged and retried, never returned: the admin API outlives them.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        server::serve(self.inner, listener, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_follow_mosn_stagemanager() {
        let all = [
            (ServerState::Initing, 2, "initing"),
            (ServerState::Running, 6, "running"),
            (ServerState::Draining, 8, "draining"),
            (ServerState::Stopping, 9, "stopping"),
        ];
        for (s, code, name) in all {
            assert_eq!(s.mosn_code(), code);
            assert_eq!(s.to_string(), name);
        }
    }
}
