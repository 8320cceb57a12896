//! Errors and diagnostics.
//!
//! A [`Diagnostic`] names one place in the user's file (`servers[0].listeners[1].address`,
//! spelled with the keys as the user wrote them) and what is wrong or noteworthy there.
//! Warnings never stop start-up; a [`ConfigError::Invalid`] carries every error found.

use std::fmt;
use std::path::PathBuf;

/// One problem (or warning) at one place in the config document.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// JSON path as the user wrote the keys, e.g. `cluster_manager.clusters[2].hosts[0].weight`.
    /// Empty for the document root.
    pub path: String,
    /// Human readable reason.
    pub message: String,
}

impl Diagnostic {
    /// Builds a diagnostic.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(root): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The document format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON (MOSN's native format).
    Json,
    /// YAML (MOSN converts it to JSON first; so do we).
    Yaml,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
        })
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not well-formed JSON / YAML.
    #[error("{format} syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// Which parser complained.
        format: Format,
        /// 1-based line (0 when the parser did not say).
        line: usize,
        /// 1-based column (0 when the parser did not say).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The document is well-formed but wrong; every problem found is listed, one per line.
    #[error("{}", DisplayLines(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The diagnostics of an [`ConfigError::Invalid`] error (empty for the other kinds).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(d) => d,
            _ => &[],
        }
    }
}

struct DisplayLines<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
