//! `tls_context.type` + `extend_verify` -> the backend. In MOSN, `type` names a registered
//! config-hooks factory and `extend_verify` is that factory's free-form config; here the known
//! types are:
//!
//! - `""` or `"rustls"`: the rustls backend (`extend_verify` is ignored with a warning);
//! - `"openssl"`: the OpenSSL backend (feature `openssl`), its settings from `extend_verify`
//!   (see [`openssl_settings`] for the keys; without the feature: a config error);
//! - `"keyless"`: rustls with the private key in a key server ([`crate::keyless`]).
//!
//! Any other type is a config error listing these. Every error names the JSON path of the key.

use std::time::Duration;

use mosn_config::TlsContext;
use serde_json::{Map, Value};

use crate::keyless::KeylessConfig;
use crate::TlsError;

/// The types `tls_context.type` may name.
pub(crate) const KNOWN: &str = "\"\" (rustls), \"rustls\", \"openssl\", \"keyless\"";

/// What a context's `type` selects.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Rustls,
    #[cfg(feature = "openssl")]
    OpenSsl(crate::openssl::OpenSslBackend),
    Keyless(KeylessConfig),
}

#[cfg(feature = "openssl")]
impl Kind {
    /// The type's name, for errors.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Rustls => "rustls",
            #[cfg(feature = "openssl")]
            Kind::OpenSsl(_) => "openssl",
            Kind::Keyless(_) => "keyless",
        }
    }
}

/// Parses a context's `type` and `extend_verify`; `path` is the context's JSON path.
pub(crate) fn of(ctx: &TlsContext, path: &str) -> Result<Kind, TlsError> {
    let kind = ctx.kind.trim();
    match kind.to_ascii_lowercase().as_str() {
        "" | "rustls" => {
            if ctx.extend_verify.as_ref().is_some_and(|v| !v.is_null()) {
                tracing::warn!(path = %format!("{path}.extend_verify"), "ignored: custom verification hooks are not supported (type is rustls)");
            }
            Ok(Kind::Rustls)
        }
        "openssl" => openssl(ctx, path),
        "keyless" => Ok(Kind::Keyless(KeylessConfig::from_json(
            ctx.extend_verify.as_ref(),
            path,
        )?)),
        _ => Err(TlsError::config(
            format!("{path}.type"),
            format!("unknown TLS context type {kind:?}; known: {KNOWN}"),
        )),
    }
}

#[cfg(not(feature = "openssl"))]
fn openssl(_ctx: &TlsContext, path: &str) -> Result<Kind, TlsError> {
    Err(TlsError::config(
        format!("{path}.type"),
        "\"openssl\" needs mosn built with the openssl feature",
    ))
}

#[cfg(feature = "openssl")]
fn openssl(ctx: &TlsContext, path: &str) -> Result<Kind, TlsError> {
    Ok(Kind::OpenSsl(openssl_settings(
        ctx.extend_verify.as_ref(),
        &format!("{path}.extend_verify"),
    )?))
}

/// The OpenSSL backend's settings from `extend_verify` (`at` is its JSON path). Absent or
/// `null`: the defaults (no offload, async on, internal polling, fall back). Keys:
///
/// - `engine`: `{"id": "qatengine"}` or `{"path": "/x/qatengine.so"}` (a missing file is an
///   initialisation failure, left to `on_failure`), with optional
///   `algorithms` (`"RSA,EC"` when absent) and `ctrls` (`[["NAME", "VALUE"], ["NAME"]]`, values
///   strings or numbers, run before `ENGINE_init`);
/// - `provider`: `{"name": "qatprovider", "search_path": "/x", "properties": "?provider=qat"}`
///   (only `name` required; exclusive with `engine`);
/// - `async` (bool, default true): `SSL_MODE_ASYNC`;
/// - `polling`: `"internal"` (default) or `{"external": {"interval": "1ms", "command": "POLL"}}`
///   (`command` defaults to `POLL`);
/// - `on_failure`: `"fallback"` (default: build with rustls, loudly) or `"refuse"`.
#[cfg(feature = "openssl")]
pub(crate) fn openssl_settings(
    value: Option<&Value>,
    at: &str,
) -> Result<crate::openssl::OpenSslBackend, TlsError> {
    use crate::openssl::{Offload, OnFailure, OpenSslBackend, Polling};
    let mut out = OpenSslBackend::default();
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let map = object(value, at)?;
    check_keys(
        map,
        &["engine", "provider", "async", "polling", "on_failure"],
        at,
    )?;
    if map.contains_key("engine") && map.contains_key("provider") {
        return Err(TlsError::config(
            format!("{at}.provider"),
            "`engine` and `provider` are exclusive: name one accelerator",
        ));
    }
    if let Some(v) = map.get("engine") {
        let e_at = format!("{at}.engine");
        let e = object(v, &e_at)?;
        check_keys(e, &["id", "path", "algorithms", "ctrls"], &e_at)?;
        let id_or_path = match (e.get("id"), e.get("path")) {
            (Some(_), Some(_)) => {
                return Err(TlsError::config(
                    format!("{e_at}.path"),
                    "`id` and `path` are exclusive",
                ))
            }
            (Some(v), None) => non_empty(v, &format!("{e_at}.id"))?,
            (None, Some(v)) => {
                let p_at = format!("{e_at}.path");
                let p = non_empty(v, &p_at)?;
                // a missing file is an initialisation failure (`on_failure` decides), not a
                // config error: the same config runs on machines without the accelerator
                if !p.contains('/') && !p.ends_with(".so") {
                    return Err(TlsError::config(
                        p_at,
                        format!(
                            "`{p}` is not a path to a shared object (use `id` for an engine id)"
                        ),
                    ));
                }
                p
            }
            (None, None) => {
                return Err(TlsError::config(
                    e_at,
                    "needs `id` (an engine id) or `path` (its shared object)",
                ))
            }
        };
        let algorithms = match e.get("algorithms") {
            None => String::new(),
            Some(v) => string(v, &format!("{e_at}.algorithms"))?.to_string(),
        };
        let mut ctrls = Vec::new();
        if let Some(v) = e.get("ctrls") {
            let c_at = format!("{e_at}.ctrls");
            let list = v
                .as_array()
                .ok_or_else(|| TlsError::config(&c_at, "must be a list of [name, value] pairs"))?;
            for (i, item) in list.iter().enumerate() {
                let i_at = format!("{c_at}[{i}]");
                let pair = item
                    .as_array()
                    .filter(|p| (1..=2).contains(&p.len()))
                    .ok_or_else(|| TlsError::config(&i_at, "must be [name, value] or [name]"))?;
                let name = non_empty(&pair[0], &format!("{i_at}[0]"))?;
                let value = match pair.get(1) {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(other) => {
                        return Err(TlsError::config(
                            format!("{i_at}[1]"),
                            format!("must be a string or a number, not {other}"),
                        ))
                    }
                };
                ctrls.push((name, value));
            }
        }
        out.offload = Some(Offload::Engine {
            id_or_path,
            algorithms,
            ctrls,
        });
    }
    if let Some(v) = map.get("provider") {
        let p_at = format!("{at}.provider");
        let p = object(v, &p_at)?;
        check_keys(p, &["name", "search_path", "properties"], &p_at)?;
        let name = match p.get("name") {
            Some(v) => non_empty(v, &format!("{p_at}.name"))?,
            None => return Err(TlsError::config(format!("{p_at}.name"), "required")),
        };
        let opt = |key: &str| -> Result<Option<String>, TlsError> {
            p.get(key)
                .map(|v| non_empty(v, &format!("{p_at}.{key}")))
                .transpose()
        };
        out.offload = Some(Offload::Provider {
            name,
            search_path: opt("search_path")?,
            properties: opt("properties")?,
        });
    }
    if let Some(v) = map.get("async") {
        out.async_mode = v.as_bool().ok_or_else(|| {
            TlsError::config(
                format!("{at}.async"),
                format!("must be true or false, not {v}"),
            )
        })?;
    }
    if let Some(v) = map.get("polling") {
        let p_at = format!("{at}.polling");
        out.polling = match v {
            Value::String(s) if s == "internal" => Polling::Internal,
            Value::Object(m) => {
                check_keys(m, &["external"], &p_at)?;
                let x_at = format!("{p_at}.external");
                let x = object(
                    m.get("external").ok_or_else(|| {
                        TlsError::config(&x_at, "required in a polling object")
                    })?,
                    &x_at,
                )?;
                check_keys(x, &["interval", "command"], &x_at)?;
                let i_at = format!("{x_at}.interval");
                let every = match x.get("interval") {
                    Some(v) => duration(v, &i_at)?,
                    None => return Err(TlsError::config(i_at, "required")),
                };
                if every.is_zero() {
                    return Err(TlsError::config(i_at, "must be more than 0"));
                }
                let command = match x.get("command") {
                    Some(v) => non_empty(v, &format!("{x_at}.command"))?,
                    None => "POLL".to_string(),
                };
                Polling::External { every, command }
            }
            other => {
                return Err(TlsError::config(
                    p_at,
                    format!(
                        "must be \"internal\" or {{\"external\": {{\"interval\": \"1ms\", \"command\": \"POLL\"}}}}, not {other}"
                    ),
                ))
            }
        };
    }
    if let Some(v) = map.get("on_failure") {
        out.on_failure = match v.as_str() {
            Some("fallback") => OnFailure::FallBack,
            Some("refuse") => OnFailure::Refuse,
            _ => {
                return Err(TlsError::config(
                    format!("{at}.on_failure"),
                    format!("must be \"fallback\" or \"refuse\", not {v}"),
                ))
            }
        };
    }
    Ok(out)
}

// === JSON helpers (errors name the path) ===

pub(crate) fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, TlsError> {
    v.as_object()
        .ok_or_else(|| TlsError::config(at, format!("must be an object, not {v}")))
}

/// Rejects keys not in `known` (a typo would silently fall back to a default otherwise).
pub(crate) fn check_keys(
    map: &Map<String, Value>,
    known: &[&str],
    at: &str,
) -> Result<(), TlsError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(TlsError::config(
            format!("{at}.{k}"),
            format!("unknown key; known: {}", known.join(", ")),
        )),
    }
}

pub(crate) fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, TlsError> {
    v.as_str()
        .ok_or_else(|| TlsError::config(at, format!("must be a string, not {v}")))
}

#[cfg(feature = "openssl")]
fn non_empty(v: &Value, at: &str) -> Result<String, TlsError> {
    let s = string(v, at)?.trim();
    if s.is_empty() {
        return Err(TlsError::config(at, "must not be empty"));
    }
    Ok(s.to_string())
}

/// A MOSN (Go) duration string: `"1ms"`, `"2s"`, `"1m30s"`.
pub(crate) fn duration(v: &Value, at: &str) -> Result<Duration, TlsError> {
    let s = string(v, at)?;
    mosn_config::parse_go_duration(s.trim()).map_err(|e| TlsError::config(at, e))
}

#[cfg(all(test, feature = "openssl"))]
mod tests {
    use super::*;
    use crate::openssl::{Offload, OnFailure, Polling};
    use serde_json::json;

    const AT: &str = "l.tls_context.extend_verify";

    fn err(v: Value) -> String {
        openssl_settings(Some(&v), AT).unwrap_err().to_string()
    }

    #[test]
    fn openssl_settings_parse_and_errors_name_the_key() {
        assert_eq!(openssl_settings(None, AT).unwrap(), Default::default());
        let s = openssl_settings(
            Some(&json!({
                "engine": {"id": "qatengine", "algorithms": "ALL",
                           "ctrls": [["ENABLE_EXTERNAL_POLLING"], ["LATENCY_US", 5]]},
                "async": false,
                "polling": {"external": {"interval": "2ms"}},
                "on_failure": "refuse"
            })),
            AT,
        )
        .unwrap();
        assert_eq!(
            s.offload,
            Some(Offload::Engine {
                id_or_path: "qatengine".into(),
                algorithms: "ALL".into(),
                ctrls: vec![
                    ("ENABLE_EXTERNAL_POLLING".into(), String::new()),
                    ("LATENCY_US".into(), "5".into())
                ],
            })
        );
        assert!(!s.async_mode);
        assert_eq!(
            s.polling,
            Polling::External {
                every: Duration::from_millis(2),
                command: "POLL".into()
            }
        );
        assert_eq!(s.on_failure, OnFailure::Refuse);
        let p = openssl_settings(Some(&json!({"provider": {"name": "legacy"}})), AT).unwrap();
        assert_eq!(
            p.offload,
            Some(Offload::Provider {
                name: "legacy".into(),
                search_path: None,
                properties: None
            })
        );
        for (v, at) in [
            (json!({"engine": {"path": "engine"}}), "engine.path: "),
            (json!({"engine": {}}), "engine: needs"),
            (
                json!({"engine": {"id": "a", "path": "/b"}}),
                "engine.path: ",
            ),
            (
                json!({"engine": {"id": ""}}),
                "engine.id: must not be empty",
            ),
            (
                json!({"engine": {"id": "e", "ctrls": [[]]}}),
                "engine.ctrls[0]: ",
            ),
            (
                json!({"engine": {"id": "e", "ctrls": [["A", true]]}}),
                "engine.ctrls[0][1]: ",
            ),
            (
                json!({"engine": {"id": "e", "ctrl": []}}),
                "engine.ctrl: unknown key",
            ),
            (
                json!({"engine": {"id": "e"}, "provider": {"name": "p"}}),
                "provider: ",
            ),
            (json!({"provider": {}}), "provider.name: required"),
            (json!({"async": "yes"}), "async: "),
            (json!({"polling": "sometimes"}), "polling: "),
            (
                json!({"polling": {"external": {"interval": "fast"}}}),
                "polling.external.interval: ",
            ),
            (
                json!({"polling": {"external": {}}}),
                "polling.external.interval: required",
            ),
            (json!({"on_failure": "ignore"}), "on_failure: "),
            (json!({"offload": {}}), "offload: unknown key"),
            (json!("engine"), ": must be an object"),
        ] {
            let e = err(v.clone());
            assert!(
                e.starts_with(&format!("{AT}.{at}")) || e.starts_with(&format!("{AT}{at}")),
                "{v}: {e}"
            );
        }
    }
}
