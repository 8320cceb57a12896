//! The endpoints: routing, parameters, bodies and responses. No sockets here.
//!
//! [`handle`] is generic over the request body so unit tests can drive it with
//! in-memory bodies; the server feeds it hyper's `Incoming`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::query::{self, Pairs};
use crate::{Inner, ServerState};

/// Largest request body accepted (the update_loglevel JSON is a few dozen bytes).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// How long a client may take to send a request body once its headers are in.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `Content-Type` of every JSON response.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Type` of the Prometheus exposition (text format 0.0.4).
pub const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4";
/// `Content-Type` of plain-text responses (`/api/v1/states`).
pub const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";

/// MOSN's log level names, most to least severe. Matching is case-insensitive;
/// the handler always receives the upper-case name.
pub const LOG_LEVELS: [&str; 6] = ["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

type Resp = Response<Full<Bytes>>;

/// What an endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Help,
    Version,
    ConfigDump,
    Stats,
    Prometheus,
    States,
    GetLogLevel,
    UpdateLogLevel,
}

/// One row of the route table; `/` lists these.
struct Endpoint {
    path: &'static str,
    route: Route,
    /// `true`: POST only; `false`: GET (and HEAD).
    post: bool,
    params: &'static [&'static str],
    about: &'static str,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/",
        route: Route::Help,
        post: false,
        params: &[],
        about: "this list of endpoints",
    },
    Endpoint {
        path: "/api/v1/version",
        route: Route::Version,
        post: false,
        params: &[],
        about: "build version of the running binary",
    },
    Endpoint {
        path: "/api/v1/config_dump",
        route: Route::ConfigDump,
        post: false,
        params: &[],
        about: "running configuration as JSON, secrets removed",
    },
    Endpoint {
        path: "/api/v1/stats",
        route: Route::Stats,
        post: false,
        params: &["type", "key"],
        about: "metrics as JSON {type: {labels: {metric: value}}}; \
                ?type=<type> keeps one type, ?key=<type>[.<label value>...] one scope (MOSN style)",
    },
    Endpoint {
        path: "/stats/prometheus",
        route: Route::Prometheus,
        post: false,
        params: &[],
        about: "metrics in Prometheus text format 0.0.4",
    },
    Endpoint {
        path: "/api/v1/stats/prometheus",
        route: Route::Prometheus,
        post: false,
        params: &[],
        about: "same as /stats/prometheus",
    },
    Endpoint {
        path: "/metrics",
        route: Route::Prometheus,
        post: false,
        params: &[],
        about: "same as /stats/prometheus (Prometheus' default scrape path)",
    },
    Endpoint {
        path: "/api/v1/states",
        route: Route::States,
        post: false,
        params: &["format"],
        about: "MOSN text `pid=<pid>&state=<code>` (MOSN stage codes: 2 initing, 6 running, \
                8 draining, 9 stopping); ?format=json for JSON",
    },
    Endpoint {
        path: "/api/v1/get_loglevel",
        route: Route::GetLogLevel,
        post: false,
        params: &[],
        about: "current log level as {\"log_level\": \"INFO\"}",
    },
    Endpoint {
        path: "/api/v1/update_loglevel",
        route: Route::UpdateLogLevel,
        post: true,
        params: &["level"],
        about: "POST {\"log_path\": \"...\", \"log_level\": \"DEBUG\"} (MOSN body; log_path is \
                optional and ignored: one process-wide level) or ?level=DEBUG; \
                levels: FATAL ERROR WARN INFO DEBUG TRACE",
    },
];

/// Answers one request. Never panics: a panic inside the process' [`crate::AdminHandler`]
/// becomes a 500.
pub(crate) async fn handle<B>(inner: &Inner, req: Request<B>) -> Resp
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let Some(endpoint) = ENDPOINTS.iter().find(|e| e.path == path) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no such endpoint `{path}`; GET / lists them"),
        );
    };
    let method_ok = if endpoint.post {
        parts.method == Method::POST
    } else {
        parts.method == Method::GET || parts.method == Method::HEAD
    };
    if !method_ok {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method {} not allowed on {path}", parts.method),
        );
        let allow = if endpoint.post { "POST" } else { "GET, HEAD" };
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return resp;
    }
    let params = match query::parse(parts.uri.query().unwrap_or(""))
        .and_then(|p| query::check(&p, endpoint.params).map(|()| p))
    {
        Ok(p) => p,
        Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
    };

    // Only update_loglevel reads its body; other bodies are left for hyper to drain.
    let body = if endpoint.route == Route::UpdateLogLevel {
        match read_body(body).await {
            Ok(b) => b,
            Err(resp) => return resp,
        }
    } else {
        Bytes::new()
    };

    let route = endpoint.route;
    match catch_unwind(AssertUnwindSafe(|| respond(inner, route, &params, &body))) {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!(path, "admin handler panicked");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Collects a body of at most [`MAX_REQUEST_BODY`] bytes within [`BODY_READ_TIMEOUT`].
async fn read_body<B>(body: B) -> Result<Bytes, Resp>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let limited = Limited::new(body, MAX_REQUEST_BODY);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {MAX_REQUEST_BODY} bytes"),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("cannot read request body: {e}"),
        )),
    }
}

/// The synchronous part of every endpoint: everything that calls into the process.
fn respond(inner: &Inner, route: Route, params: &Pairs, body: &[u8]) -> Resp {
    match route {
        Route::Help => json_ok(&help()),
        Route::Version => json_ok(&inner.handler.version()),
        Route::ConfigDump => json_ok(&inner.handler.config_dump()),
        Route::Stats => stats(inner, params),
        Route::Prometheus => with_type(
            StatusCode::OK,
            CONTENT_TYPE_PROMETHEUS,
            inner.registry.render_prometheus().into(),
        ),
        Route::States => states(inner.handler.state(), params),
        Route::GetLogLevel => json_ok(&json!({ "log_level": inner.handler.log_level() })),
        Route::UpdateLogLevel => update_log_level(inner, params, body),
    }
}

fn help() -> Value {
    let apis: Vec<Value> = ENDPOINTS
        .iter()
        .map(|e| {
            json!({
                "path": e.path,
                "methods": if e.post { vec!["POST"] } else { vec!["GET", "HEAD"] },
                "params": e.params,
                "description": e.about,
            })
        })
        .collect();
    json!({ "apis": apis })
}

/// `/api/v1/stats`, optionally narrowed by `type` and/or MOSN's `key` filter.
fn stats(inner: &Inner, params: &Pairs) -> Resp {
    let mut all = match inner.registry.to_json() {
        Value::Object(m) => m,
        other => return json_ok(&other),
    };
    if let Some(kind) = query::get(params, "type") {
        all.retain(|k, _| k == kind);
        if all.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no metrics of type `{kind}`"),
            );
        }
    }
    if let Some(key) = query::get(params, "key") {
        all = filter_key(all, key);
        if all.is_empty() {
            return error(StatusCode::NOT_FOUND, &format!("no metrics key: {key}"));
        }
    }
    json_ok(&Value::Object(all))
}

/// Keeps what MOSN's `?key=` names: a whole type (`cluster`), or one scope written as
/// its type followed by its label values, each after a dot (`cluster.backend`).
fn filter_key(all: Map<String, Value>, key: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (kind, scopes) in all {
        if kind == key {
            out.insert(kind, scopes);
            continue;
        }
        let Some(rest) = key
            .strip_prefix(kind.as_str())
            .and_then(|r| r.strip_prefix('.'))
        else {
            continue;
        };
        let Value::Object(scopes) = scopes else {
            continue;
        };
        let kept: Map<String, Value> = scopes
            .into_iter()
            .filter(|(labels, _)| label_values(labels) == rest)
            .collect();
        if !kept.is_empty() {
            out.insert(kind, Value::Object(kept));
        }
    }
    out
}

/// `"listener=ingress,port=80"` -> `"ingress.80"`.
fn label_values(labels: &str) -> String {
    labels
        .split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').map_or(kv, |(_, v)| v))
        .collect::<Vec<_>>()
        .join(".")
}

/// `/api/v1/states`: MOSN's `pid=<pid>&state=<code>\n`, or JSON with `?format=json`.
fn states(state: ServerState, params: &Pairs) -> Resp {
    let pid = std::process::id();
    match query::get(params, "format") {
        None | Some("text") => with_type(
            StatusCode::OK,
            CONTENT_TYPE_TEXT,
            format!("pid={pid}&state={}\n", state.mosn_code()).into(),
        ),
        Some("json") => json_ok(&json!({
            "pid": pid,
            "state": state.mosn_code(),
            "name": state.as_str(),
        })),
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            &format!("unknown format `{other}`; expected text or json"),
        ),
    }
}

/// MOSN's update_loglevel body. `log_path` names one of MOSN's error loggers; mosn-rs has
/// a single process-wide level, so it is accepted and ignored.
#[derive(Debug, Deserialize)]
struct LogLevelBody {
    #[serde(default)]
    #[allow(dead_code)]
    log_path: Option<String>,
    #[serde(default)]
    log_level: Option<String>,
}

fn update_log_level(inner: &Inner, params: &Pairs, body: &[u8]) -> Resp {
    let from_query = query::get(params, "level");
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<LogLevelBody>(body) {
            Ok(b) => match b.log_level {
                Some(level) => Some(level),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "request body has no `log_level` field",
                    )
                }
            },
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "request body is not {{\"log_path\": \"...\", \"log_level\": \"...\"}}: {e}"
                    ),
                )
            }
        }
    };
    let requested = match (from_query, from_body.as_deref()) {
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "no level given: send {\"log_level\": \"DEBUG\"} or ?level=DEBUG",
            )
        }
        (Some(q), Some(b)) if !q.eq_ignore_ascii_case(b) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("?level={q} and body log_level {b} disagree"),
            )
        }
        (Some(l), _) | (None, Some(l)) => l,
    };
    let Some(level) = LOG_LEVELS
        .iter()
        .find(|l| l.eq_ignore_ascii_case(requested.trim()))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid log level `{requested}`; expected one of {}",
                LOG_LEVELS.join(", ")
            ),
        );
    };
    match inner.handler.set_log_level(level) {
        Ok(()) => {
            tracing::info!(level, "log level updated through the admin API");
            json_ok(&json!({
                "message": "update logger success",
                "log_level": inner.handler.log_level(),
            }))
        }
        Err(reason) => error(
            StatusCode::BAD_REQUEST,
            &format!("update logger failed: {reason}"),
        ),
    }
}

fn json_ok(v: &Value) -> Resp {
    json_resp(StatusCode::OK, v)
}

/// A JSON error body, MOSN's shape: `{"error": "<reason>"}`.
fn error(status: StatusCode, reason: &str) -> Resp {
    json_resp(status, &json!({ "error": reason }))
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    // Serializing a `Value` cannot fail (its map keys are strings); fall back anyway.
    let mut body = serde_json::to_vec_pretty(v)
        .unwrap_or_else(|_| br#"{"error": "response not serializable"}"#.to_vec());
    body.push(b'\n');
    with_type(status, CONTENT_TYPE_JSON, body.into())
}

fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AdminHandler;
    use mosn_metrics::Registry;
    use std::sync::{Arc, Mutex};

    struct Fake {
        level: Mutex<String>,
        panic: bool,
    }

    impl AdminHandler for Fake {
        fn version(&self) -> Value {
            json!({"version": "9.9.9"})
        }
        fn config_dump(&self) -> Value {
            if self.panic {
                panic!("config_dump exploded");
            }
            json!({"servers": []})
        }
        fn state(&self) -> ServerState {
            ServerState::Draining
        }
        fn log_level(&self) -> String {
            self.level.lock().unwrap().clone()
        }
        fn set_log_level(&self, level: &str) -> Result<(), String> {
            if level == "FATAL" {
                return Err("FATAL is not supported".into());
            }
            *self.level.lock().unwrap() = level.to_string();
            Ok(())
        }
    }

    fn inner(panic: bool) -> Inner {
        let registry = Registry::new();
        registry
            .scope("cluster", &[("cluster", "backend")])
            .counter("upstream_request_total")
            .add(7);
        registry
            .scope("listener", &[("listener", "ingress"), ("port", "80")])
            .gauge("downstream_connection_active")
            .set(2);
        Inner {
            registry,
            handler: Arc::new(Fake {
                level: Mutex::new("INFO".into()),
                panic,
            }),
        }
    }

    fn run(
        inner: &Inner,
        method: &str,
        uri: &str,
        body: &'static str,
    ) -> (StatusCode, String, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let resp = rt.block_on(handle(inner, req));
        let status = resp.status();
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
        (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn json_of(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn stats_filters_by_type_and_mosn_key() {
        let i = inner(false);
        let (s, _, b) = run(&i, "GET", "/api/v1/stats?type=cluster", "");
        assert_eq!(s, StatusCode::OK);
        let v = json_of(&b);
        assert_eq!(v["cluster"]["cluster=backend"]["upstream_request_total"], 7);
        assert!(v.get("listener").is_none());

        let (s, _, b) = run(&i, "GET", "/api/v1/stats?key=listener.ingress.80", "");
        assert_eq!(s, StatusCode::OK, "{b}");
        let v = json_of(&b);
        assert_eq!(
            v["listener"]["listener=ingress,port=80"]["downstream_connection_active"],
            2
        );
        assert!(v.get("cluster").is_none());

        let (s, _, b) = run(&i, "GET", "/api/v1/stats?key=cluster", "");
        assert_eq!(s, StatusCode::OK);
        assert!(json_of(&b).get("cluster").is_some());

        let (s, _, b) = run(&i, "GET", "/api/v1/stats?key=cluster.nope", "");
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(json_of(&b)["error"], "no metrics key: cluster.nope");
        let (s, _, _) = run(&i, "GET", "/api/v1/stats?type=host", "");
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, b) = run(&i, "GET", "/api/v1/stats?bogus=1", "");
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(json_of(&b)["error"].as_str().unwrap().contains("bogus"));
    }

    #[test]
    fn states_text_and_json() {
        let i = inner(false);
        let (s, ct, b) = run(&i, "GET", "/api/v1/states", "");
        assert_eq!((s, ct.as_str()), (StatusCode::OK, CONTENT_TYPE_TEXT));
        assert_eq!(b, format!("pid={}&state=8\n", std::process::id()));
        let (_, ct, b) = run(&i, "GET", "/api/v1/states?format=json", "");
        assert_eq!(ct, CONTENT_TYPE_JSON);
        assert_eq!(json_of(&b)["name"], "draining");
        let (s, _, _) = run(&i, "GET", "/api/v1/states?format=xml", "");
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn update_log_level_inputs() {
        let i = inner(false);
        let post = |uri: &str, body: &'static str| run(&i, "POST", uri, body);
        let (s, _, b) = post(
            "/api/v1/update_loglevel",
            r#"{"log_path":"/x.log","log_level":"debug"}"#,
        );
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(json_of(&b)["log_level"], "DEBUG");
        let (s, _, _) = post("/api/v1/update_loglevel?level=Trace", "");
        assert_eq!(s, StatusCode::OK);
        assert_eq!(i.handler.log_level(), "TRACE");
        let (s, _, _) = post(
            "/api/v1/update_loglevel?level=warn",
            r#"{"log_level":"WARN"}"#,
        );
        assert_eq!(s, StatusCode::OK);

        for (uri, body, needle) in [
            ("/api/v1/update_loglevel", "", "no level given"),
            ("/api/v1/update_loglevel", "{not json", "not {"),
            ("/api/v1/update_loglevel", "[1,2]", "not {"),
            ("/api/v1/update_loglevel", r#"{"log_level": 3}"#, "not {"),
            (
                "/api/v1/update_loglevel",
                r#"{"log_path":"/x"}"#,
                "no `log_level`",
            ),
            (
                "/api/v1/update_loglevel",
                r#"{"log_level":"LOUD"}"#,
                "invalid log level `LOUD`",
            ),
            (
                "/api/v1/update_loglevel?level=info",
                r#"{"log_level":"ERROR"}"#,
                "disagree",
            ),
            (
                "/api/v1/update_loglevel?level=fatal",
                "",
                "FATAL is not supported",
            ),
            ("/api/v1/update_loglevel?level=%zz", "", "percent-escape"),
        ] {
            let (s, ct, b) = post(uri, body);
            assert_eq!(s, StatusCode::BAD_REQUEST, "{uri} {body}: {b}");
            assert_eq!(ct, CONTENT_TYPE_JSON);
            let reason = json_of(&b)["error"].as_str().unwrap().to_string();
            assert!(reason.contains(needle), "{uri} {body}: {reason}");
        }
        assert_eq!(i.handler.log_level(), "WARN");
    }

    #[test]
    fn oversized_body_is_413() {
        let i = inner(false);
        let big: &'static str = Box::leak("x".repeat(MAX_REQUEST_BODY + 1).into_boxed_str());
        let (s, _, _) = run(&i, "POST", "/api/v1/update_loglevel", big);
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn handler_panic_is_500() {
        let i = inner(true);
        let (s, ct, b) = run(&i, "GET", "/api/v1/config_dump", "");
        assert_eq!(
            (s, ct.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, CONTENT_TYPE_JSON)
        );
        assert_eq!(json_of(&b)["error"], "internal error");
    }

    #[test]
    fn help_lists_every_endpoint_and_methods_are_checked() {
        let i = inner(false);
        let (_, _, b) = run(&i, "GET", "/", "");
        let v = json_of(&b);
        let paths: Vec<&str> = v["apis"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths.len(), ENDPOINTS.len());
        assert!(paths.contains(&"/api/v1/update_loglevel"));
        let req = Request::builder()
            .method("DELETE")
            .uri("/api/v1/version")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let resp = rt.block_on(handle(&i, req));
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[ALLOW], "GET, HEAD");
        let (s, _, _) = run(&i, "GET", "/api/v1/update_loglevel", "");
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        let (s, _, _) = run(&i, "HEAD", "/api/v1/version", "");
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) = run(&i, "GET", "/api/v1/config_dump?allclusters", "");
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
}
