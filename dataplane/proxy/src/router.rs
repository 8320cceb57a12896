//! The L7 router (MOSN `pkg/router`): named route tables, compiled once from
//! [`mosn_config::Router`] into immutable [`RouteTable`]s that the proxy shares through `Arc`.
//!
//! ```text
//!  RouteInput (authority, path, query, method, headers, scheme)
//!    -> table.rs    virtual host by authority: exact host:port, exact host, `*.suffix`
//!                   (longest first, with port then without), default `*`; none (RPC) => `*`
//!    -> matcher.rs  first route whose path matcher (prefix | path | regex | none = RPC rule),
//!                   headers, query_parameters and variables all match
//!    -> entry.rs    RouteEntry -> RouteAction: Forward (cluster pick, timeout, retry,
//!                   mirrors, rewrites), Redirect or DirectResponse; headers.rs applies
//!                   header edits router -> virtual host -> route (most specific wins)
//! ```
//!
//! Nothing here parses JSON or compiles a regex per request; every config error (bad regex,
//! header name, duplicate domain, ...) is found at build time and reported with its JSON path.
//! Per-request inputs are untrusted: no byte sequence in a path, query or header panics.
//!
//! Value regexes follow their origin: header and variable regexes are searched (Go's
//! `MatchString`, as MOSN does), the path `regex` and `query_parameters` regexes must match the
//! whole value (Envoy).

mod entry;
mod headers;
mod matcher;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

pub use entry::{
    ForwardAction, MirrorPolicy, PickedCluster, RedirectRule, RetryPolicy, RouteAction, RouteEntry,
};
pub use table::{RouteTable, RouterSet, VirtualHostEntry};

// === errors ===

/// A problem in a router config, found while building a [`RouterSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterError {
    /// JSON-ish path of the offending value, e.g.
    /// `routers[0].virtual_hosts[1].routers[2].match.regex`.
    pub path: String,
    /// Why it is rejected.
    pub reason: String,
}

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for RouterError {}

/// A path under construction (`routers[0].virtual_hosts[1]`).
#[derive(Debug, Clone, Default)]
struct At(String);

impl At {
    /// `self.key`.
    fn k(&self, key: &str) -> At {
        if self.0.is_empty() {
            At(key.to_string())
        } else {
            At(format!("{}.{key}", self.0))
        }
    }

    /// `self[index]`.
    fn i(&self, index: usize) -> At {
        At(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects every build error instead of stopping at the first.
#[derive(Debug, Default)]
struct Errors(Vec<RouterError>);

impl Errors {
    fn push(&mut self, at: &At, reason: impl Into<String>) {
        self.0.push(RouterError {
            path: at.0.clone(),
            reason: reason.into(),
        });
    }

    /// The value, or `None` after recording the error at `at`.
    fn check<T>(&mut self, at: &At, result: Result<T, String>) -> Option<T> {
        result.map_err(|reason| self.push(at, reason)).ok()
    }

    /// `value` when nothing was recorded, else every error.
    fn finish<T>(self, value: T) -> Result<T, Vec<RouterError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

// === per-request input and result ===

/// What the router looks at: the request head, protocol-neutral. RPC protocols (Bolt,
/// Dubbo) pass no authority and their header map.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    /// `Host` / `:authority`; `None` for RPC (selects the default virtual host).
    pub authority: Option<&'a str>,
    /// The path, without the query string.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The request method.
    pub method: &'a http::Method,
    /// The request headers (for RPC: the protocol's header map, read in place).
    pub headers: &'a dyn RouteHeaders,
    /// `http` or `https` (used for redirects and `x-mosn-scheme`).
    pub scheme: &'a str,
}

impl<'a> RouteInput<'a> {
    /// The input for an HTTP request head: authority from the URI, else the `Host` header;
    /// scheme from the URI, else `default_scheme`.
    pub fn from_parts(parts: &'a http::request::Parts, default_scheme: &'a str) -> Self {
        let authority = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        RouteInput {
            authority,
            path: parts.uri.path(),
            query: parts.uri.query(),
            method: &parts.method,
            headers: &parts.headers,
            scheme: parts.uri.scheme_str().unwrap_or(default_scheme),
        }
    }
}

/// The request headers as the router reads them: an HTTP [`http::HeaderMap`], or an RPC
/// frame's own header map read in place (no `HeaderMap` is built for RPC routing). Lookups
/// take lower-case HTTP field names and must see what the `HeaderMap` made from the same
/// message would hold.
pub trait RouteHeaders: fmt::Debug {
    /// The `n`-th value (0: the first) of field `name`, as bytes.
    fn value(&self, name: &http::HeaderName, n: usize) -> Option<&[u8]>;
}

impl RouteHeaders for http::HeaderMap {
    fn value(&self, name: &http::HeaderName, n: usize) -> Option<&[u8]> {
        let v = if n == 0 {
            self.get(name)
        } else {
            self.get_all(name).iter().nth(n)
        };
        v.map(http::HeaderValue::as_bytes)
    }
}

/// A matched route. Owns an `Arc`, so it can be held across `.await` and outlive a table
/// swap.
#[derive(Debug, Clone)]
pub struct RouteHit {
    route: Arc<RouteEntry>,
}

impl RouteHit {
    /// The matched route.
    pub fn route(&self) -> &RouteEntry {
        &self.route
    }

    /// The virtual host the route belongs to.
    pub fn virtual_host(&self) -> &VirtualHostEntry {
        self.route.virtual_host()
    }
}

/// One line out of the `regex` crate's error text.
fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or_else(|| text.lines().last().unwrap_or("syntax error"))
            .to_string(),
        other => other.to_string(),
    }
}

/// Compiles `pattern`; `whole` anchors it so it must match the entire value.
fn compile_regex(pattern: &str, whole: bool) -> Result<regex::Regex, String> {
    let invalid = |e: regex::Error| format!("invalid regex {pattern:?}: {}", regex_reason(&e));
    // Check the pattern on its own first: wrapping an unbalanced pattern such as `a)|(b`
    // would otherwise compile into something else.
    let re = regex::Regex::new(pattern).map_err(invalid)?;
    if whole {
        regex::Regex::new(&format!("^(?:{pattern})$")).map_err(invalid)
    } else {
        Ok(re)
    }
}
