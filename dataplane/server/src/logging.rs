//! Logging through `tracing`: MOSN's `default_log_path` (`stdout`, `stderr` or a file) and
//! `default_log_level`, changeable at run time from the admin API.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to a file (created if missing).
    File(PathBuf),
}

/// Changes the level of the installed logger.
#[derive(Clone)]
pub struct LogHandle {
    reload: reload::Handle<EnvFilter, Registry>,
    level: Arc<Mutex<String>>,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHandle")
            .field("level", &self.level())
            .finish()
    }
}

/// The `tracing` filter for one of MOSN's level names (case-insensitive).
pub fn filter_for(level: &str) -> Result<EnvFilter, String> {
    let directive = match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" | "WARNING" => "warn",
        "ERROR" | "FATAL" | "CRITICAL" => "error",
        "OFF" => "off",
        other => {
            return Err(format!(
                "unknown log level {other:?} (TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF)"
            ))
        }
    };
    Ok(EnvFilter::new(directive))
}

/// Installs the process-wide logger.
pub fn init(target: &LogTarget, level: &str) -> Result<LogHandle, String> {
    let filter = filter_for(level)?;
    let (layer, handle) = reload::Layer::new(filter);
    let writer = match target {
        LogTarget::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogTarget::Stderr => BoxMakeWriter::new(std::io::stderr),
        LogTarget::File(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            BoxMakeWriter::new(Mutex::new(file))
        }
    };
    let ansi = matches!(target, LogTarget::Stdout | LogTarget::Stderr)
        && std::env::var_os("NO_COLOR").is_none()
        && is_terminal(target);
    tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(ansi)
                .with_thread_names(true),
        )
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(LogHandle {
        reload: handle,
        level: Arc::new(Mutex::new(level.to_ascii_uppercase())),
    })
}

fn is_terminal(target: &LogTarget) -> bool {
    use std::io::IsTerminal;
    match target {
        LogTarget::Stdout => std::io::stdout().is_terminal(),
        LogTarget::Stderr => std::io::stderr().is_terminal(),
        LogTarget::File(_) => false,
    }
}

impl LogHandle {
    /// The current level name.
    pub fn level(&self) -> String {
        self.level.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Changes the level.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = filter_for(level)?;
        self.reload
            .reload(filter)
            .map_err(|e| format!("cannot change the log level: {e}"))?;
        if let Ok(mut l) = self.level.lock() {
            *l = level.to_ascii_uppercase();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names() {
        for ok in ["trace", "DEBUG", "Info", "WARN", "ERROR", "FATAL", "OFF"] {
            assert!(filter_for(ok).is_ok(), "{ok}");
        }
        assert!(filter_for("LOUD").unwrap_err().contains("LOUD"));
    }
}
