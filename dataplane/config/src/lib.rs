//! mosn-config: reads a SOFA-MOSN JSON (or YAML) configuration, in the legacy (0.4-era,
//! routers inside `connection_manager` filters) or the current (routers under
//! `servers[].routers`) shape, checks it once, and hands out an immutable typed [`Config`]
//! that serializes back (`Config::dump`, secrets redacted). It sits at the bottom of the
//! workspace and depends on no other mosn-rs crate.
//!
//! ```text
//! text --(serde_json / serde_yaml)--> serde_json::Value
//!      --(de: Go encoding/json key semantics, all type errors collected)--> raw::RawConfig
//!      --(validate: defaults, names, references, all semantic errors collected)--> Config
//!      --(dump)--> current-shape JSON
//! ```
//!
//! Keys of Go structs match case-insensitively (`"Name"` == `name`), keys of user data maps
//! (headers, metadata, filter configs) are kept verbatim, unknown keys are warnings, and a
//! [`ConfigError::Invalid`] lists every problem at once as `json.path: reason` lines.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod capture;
mod de;
mod dump;
mod duration;
mod error;
mod model;
mod raw;
mod validate;

use std::path::Path;

pub use backend::{
    DpdkBackend, DpdkPollMode, DpdkRoute, NetworkBackend, DEFAULT_DPDK_MEMPOOL, DEFAULT_DPDK_MTU,
    DEFAULT_DPDK_SOCKET_BUFFER, MAX_DPDK_ROUTES,
};
pub use capture::{
    CaptureDestination, CaptureFailurePolicy, CaptureMode, TrafficCapture,
    DEFAULT_CAPTURE_INBOUND_PORT, DEFAULT_CAPTURE_OUTBOUND_PORT,
};
pub use duration::{format_go_duration, parse_go_duration};
pub use error::{ConfigError, Diagnostic, Format};
pub use model::*;

/// A successfully loaded configuration and the warnings found on the way (unknown keys,
/// clamped weights, unknown `lb_type`, ...). The caller should log the warnings.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Things that did not stop loading but deserve attention, in discovery order.
    pub warnings: Vec<Diagnostic>,
}

/// Loads a config file: YAML when the extension is `.yaml` / `.yml` (any case), JSON
/// otherwise.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, Format::from_path(path))
}

/// Parses config text in the given format.
pub fn parse_str(text: &str, format: Format) -> Result<Loaded, ConfigError> {
    let value: serde_json::Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
            format,
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?,
        Format::Yaml => parse_yaml(text)?,
    };
    parse_value(&value)
}

/// YAML -> JSON the way MOSN does it (ghodss/yaml): anchors, aliases and `<<` merge keys are
/// resolved, scalar mapping keys become strings, tags are dropped.
fn parse_yaml(text: &str) -> Result<serde_json::Value, ConfigError> {
    let syntax = |e: serde_yaml::Error| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ConfigError::Syntax {
            format: Format::Yaml,
            line,
            column,
            message: strip_position(&e.to_string()),
        }
    };
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(syntax)?;
    yaml.apply_merge().map_err(syntax)?;
    yaml_to_json(yaml).map_err(|message| ConfigError::Syntax {
        format: Format::Yaml,
        line: 0,
        column: 0,
        message,
    })
}

fn yaml_to_json(value: serde_yaml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                J::from(u)
            } else if let Some(i) = n.as_i64() {
                J::from(i)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(J::Number)
                    .ok_or_else(|| format!("the number {n} cannot be represented in JSON"))?
            }
        }
        Y::String(s) => J::String(s),
        Y::Sequence(items) => J::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_string(),
                    Y::Tagged(t) => match t.value {
                        Y::String(s) => s,
                        _ => return Err("mapping keys must be scalars".to_string()),
                    },
                    Y::Sequence(_) | Y::Mapping(_) => {
                        return Err("mapping keys must be scalars".to_string())
                    }
                };
                out.insert(key, yaml_to_json(v)?);
            }
            J::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value)?,
    })
}

/// Validates an already parsed JSON document (e.g. one received over the network).
pub fn parse_value(value: &serde_json::Value) -> Result<Loaded, ConfigError> {
    let ctx = de::Ctx::default();
    let mut errors = Vec::new();
    let raw: raw::RawConfig = de::decode(value, &de::Path::default(), &ctx, &mut errors);
    let mut builder = validate::Builder::new(&ctx, errors);
    let config = builder.config(raw);
    let (errors, warnings) = builder.finish();
    if errors.is_empty() {
        Ok(Loaded { config, warnings })
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

impl Format {
    /// YAML for `.yaml` / `.yml`, JSON for anything else.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") => {
                Format::Yaml
            }
            _ => Format::Json,
        }
    }
}

/// serde_json / serde_yaml append " at line L column C"; we report those separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
