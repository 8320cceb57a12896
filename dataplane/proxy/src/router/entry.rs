//! One compiled route: its matcher and what to do with a matched request.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Uri};
use http::StatusCode;
use mosn_config::{
    Protocol, RedirectAction, RequestMirrorPolicy, RetryPolicy as RetryConfig, Route,
    RouteAction as RouteActionConfig,
};
use regex::Regex;
use serde_json::{Map, Value};

use super::headers::{header_name, HeaderScope};
use super::matcher::{HeaderSource, PathMatch, RouteMatcher, Source};
use super::table::VirtualHostEntry;
use super::{compile_regex, At, Errors, RouteHeaders, RouteInput};

// === public action types ===

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Forward upstream.
    Forward(ForwardAction),
    /// Answer with a redirect.
    Redirect(RedirectRule),
    /// Answer with a fixed response (`direct_response`).
    DirectResponse {
        /// Status.
        status: StatusCode,
        /// Body (may be empty).
        body: Bytes,
    },
}

/// `redirect`: parts of the `Location` that replace the request's.
#[derive(Debug, Clone)]
pub struct RedirectRule {
    status: StatusCode,
    scheme: Option<String>,
    host: Option<String>,
    path: Option<String>,
}

impl RedirectRule {
    /// The response status (301 unless configured).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// `Location`: scheme, host and path from the rule where set, else from the request;
    /// the request's query is kept unless `path_redirect` has its own. Without any host the
    /// location is relative (`/path?query`). Bytes that may not appear in a header value are
    /// percent-encoded.
    pub fn location(&self, input: &RouteInput<'_>) -> HeaderValue {
        let host = self.host.as_deref().or(input.authority);
        let scheme = self.scheme.as_deref().unwrap_or(input.scheme);
        let (path, query) = match self.path.as_deref() {
            Some(p) => match p.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (p, input.query),
            },
            None => (input.path, input.query),
        };
        let mut location = String::new();
        if let Some(host) = host.filter(|h| !h.is_empty()) {
            push_encoded(&mut location, scheme);
            location.push_str("://");
            push_encoded(&mut location, host);
        }
        if !path.starts_with('/') {
            location.push('/');
        }
        push_encoded(&mut location, path);
        if let Some(query) = query {
            location.push('?');
            push_encoded(&mut location, query);
        }
        HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/"))
    }
}

/// Appends `text`, percent-encoding what a header value may not carry (controls, space,
/// DEL, non-ASCII).
fn push_encoded(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `retry_policy` with `retry_on: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub num_retries: u32,
    /// Timeout of each try.
    pub retry_timeout: Option<Duration>,
    /// Response statuses that trigger a retry (besides connection failures and resets).
    pub status_codes: Vec<StatusCode>,
}

impl RetryPolicy {
    /// Whether a response with `status` should be retried.
    pub fn retries_status(&self, status: StatusCode) -> bool {
        self.status_codes.contains(&status)
    }
}

/// `request_mirror_policies` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPolicy {
    /// The cluster that receives the copies.
    pub cluster: String,
    /// Share of requests copied, 0..=100.
    pub percent: u32,
}

impl MirrorPolicy {
    /// Whether to copy this request, given a uniformly random `rnd`.
    pub fn should_mirror(&self, rnd: u64) -> bool {
        rnd % 100 < u64::from(self.percent)
    }
}

/// The upstream cluster chosen for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickedCluster<'a> {
    /// Cluster name.
    pub name: Cow<'a, str>,
    /// Subset metadata for the load balancer (`metadata_match`), possibly empty.
    pub metadata_match: &'a BTreeMap<String, String>,
}

// === private parts ===

/// How the cluster is chosen.
#[derive(Debug, Clone)]
enum ClusterSpecifier {
    /// `cluster_name`.
    Name(String),
    /// `cluster_header` / `cluster_variable`: named by the request; absent => no cluster.
    Dynamic(HeaderSource),
    /// `weighted_clusters`: picked by weight.
    Weighted {
        clusters: Vec<WeightedTarget>,
        total: u64,
    },
}

#[derive(Debug, Clone)]
struct WeightedTarget {
    name: String,
    weight: u64,
    metadata_match: BTreeMap<String, String>,
}

/// Path rewrite; `prefix_rewrite` wins over `regex_rewrite` when both are set (MOSN).
#[derive(Debug, Clone)]
enum PathRewrite {
    None,
    /// Replace the matched prefix (the whole path after a `path` / `regex` match).
    Prefix(String),
    /// Replace every match of the regex with the substitution (`$1`, `${name}`).
    Regex(Regex, String),
}

/// New `Host` / `:authority`; the first configured wins, in this order.
#[derive(Debug, Clone)]
enum HostRewrite {
    None,
    /// `host_rewrite`.
    Literal(HeaderValue),
    /// `auto_host_rewrite_header`: the value of this request header.
    FromHeader(HeaderName),
    /// `auto_host_rewrite`: the upstream host's hostname.
    Auto,
}

// === building the parts ===

impl RouteAction {
    /// `direct_response` wins over `redirect`, which wins over `route`.
    fn build(cfg: &Route, at: &At, errs: &mut Errors) -> RouteAction {
        if let Some(d) = &cfg.direct_response {
            let status = errs.check(
                &at.k("direct_response").k("status"),
                status(d.status, 100..=599),
            );
            RouteAction::DirectResponse {
                status: status.unwrap_or(StatusCode::OK),
                body: Bytes::from(d.body.clone()),
            }
        } else if let Some(r) = &cfg.redirect {
            RouteAction::Redirect(RedirectRule::build(r, &at.k("redirect"), errs))
        } else {
            RouteAction::Forward(ForwardAction::build(cfg, at, errs))
        }
    }
}

impl RedirectRule {
    /// Compiles `redirect` (at `at`).
    fn build(r: &RedirectAction, at: &At, errs: &mut Errors) -> RedirectRule {
        let status = match r.response_code {
            0 => StatusCode::MOVED_PERMANENTLY,
            code @ (301 | 302 | 303 | 307 | 308) => {
                StatusCode::from_u16(code).unwrap_or(StatusCode::MOVED_PERMANENTLY)
            }
            code => {
                errs.push(
                    &at.k("response_code"),
                    format!("redirect response_code {code} is not one of 301, 302, 303, 307, 308"),
                );
                StatusCode::MOVED_PERMANENTLY
            }
        };
        let set = |s: &String| (!s.is_empty()).then(|| s.clone());
        let scheme = set(&r.scheme_redirect).map(|s| s.to_ascii_lowercase());
        if let Some(s) = &scheme {
            let mut chars = s.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
            if !valid {
                errs.push(
                    &at.k("scheme_redirect"),
                    format!("invalid scheme {:?}", r.scheme_redirect),
                );
            }
        }
        let host = set(&r.host_redirect);
        if host.is_some() && Authority::from_str(&r.host_redirect).is_err() {
            errs.push(
                &at.k("host_redirect"),
                format!("invalid host {:?}", r.host_redirect),
            );
        }
        let path = set(&r.path_redirect);
        if path.is_some()
            && !(r.path_redirect.starts_with('/')
                && PathAndQuery::from_str(&r.path_redirect).is_ok())
        {
            errs.push(
                &at.k("path_redirect"),
                format!("invalid path {:?}: must start with '/'", r.path_redirect),
            );
        }
        RedirectRule {
            status,
            scheme,
            host,
            path,
        }
    }
}

impl ClusterSpecifier {
    /// `weighted_clusters`, else `cluster_header`, else `cluster_variable`, else
    /// `cluster_name`; `rp` is the `route` object. `None` when none is set or it is invalid
    /// (an error is recorded either way).
    fn build(ra: &RouteActionConfig, rp: &At, errs: &mut Errors) -> Option<ClusterSpecifier> {
        if !ra.weighted_clusters.is_empty() {
            let wp = rp.k("weighted_clusters");
            let clusters: Vec<WeightedTarget> = ra
                .weighted_clusters
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if w.name.is_empty() {
                        errs.push(
                            &wp.i(i).k("cluster").k("name"),
                            "weighted cluster name is required",
                        );
                    }
                    WeightedTarget {
                        name: w.name.clone(),
                        weight: u64::from(w.weight),
                        metadata_match: w.metadata_match.clone(),
                    }
                })
                .collect();
            let total = clusters.iter().map(|c| c.weight).sum();
            if total == 0 {
                errs.push(
                    &wp,
                    "weights sum to 0; at least one weight must be positive",
                );
            }
            Some(ClusterSpecifier::Weighted { clusters, total })
        } else if !ra.cluster_header.is_empty() {
            let header = header_name(&ra.cluster_header).map(HeaderSource::Header);
            errs.check(&rp.k("cluster_header"), header)
                .map(ClusterSpecifier::Dynamic)
        } else if !ra.cluster_variable.is_empty() {
            let variable = Source::variable(&ra.cluster_variable).and_then(|s| match s {
                Source::Headers(h) => Ok(h),
                _ => Err(format!(
                    "variable {:?} is not known when the cluster is chosen; use a header or cookie_<name>",
                    ra.cluster_variable
                )),
            });
            errs.check(&rp.k("cluster_variable"), variable)
                .map(ClusterSpecifier::Dynamic)
        } else if !ra.cluster_name.is_empty() {
            Some(ClusterSpecifier::Name(ra.cluster_name.clone()))
        } else {
            errs.push(
                rp,
                "route has no cluster_name, cluster_header, cluster_variable, weighted_clusters, redirect or direct_response",
            );
            None
        }
    }

    /// The cluster for a request with `headers`; `route_metadata` is the route's
    /// `metadata_match`.
    fn pick<'a>(
        &'a self,
        headers: &'a dyn RouteHeaders,
        route_metadata: &'a BTreeMap<String, String>,
        rnd: u64,
    ) -> Option<PickedCluster<'a>> {
        let route_level = |name| PickedCluster {
            name,
            metadata_match: route_metadata,
        };
        match self {
            ClusterSpecifier::Name(name) => Some(route_level(Cow::Borrowed(name))),
            ClusterSpecifier::Dynamic(source) => source
                .get(headers)
                .filter(|n| !n.is_empty())
                .map(|n| route_level(Cow::Borrowed(n))),
            ClusterSpecifier::Weighted { clusters, total } => {
                let mut point = rnd.checked_rem(*total)?;
                clusters.iter().find_map(|c| {
                    if point < c.weight {
                        Some(PickedCluster {
                            name: Cow::Borrowed(&c.name),
                            metadata_match: &c.metadata_match,
                        })
                    } else {
                        point -= c.weight;
                        None
                    }
                })
            }
        }
    }
}

impl RetryPolicy {
    fn build(r: &RetryConfig, at: &At, errs: &mut Errors) -> RetryPolicy {
        let codes = at.k("status_codes");
        RetryPolicy {
            num_retries: r.num_retries,
            retry_timeout: r.retry_timeout,
            status_codes: r
                .status_codes
                .iter()
                .enumerate()
                .filter_map(|(i, c)| errs.check(&codes.i(i), status(*c, 100..=599)))
                .collect(),
        }
    }
}

impl MirrorPolicy {
    fn build(m: &RequestMirrorPolicy, at: &At, errs: &mut Errors) -> MirrorPolicy {
        if m.cluster.is_empty() {
            errs.push(&at.k("cluster"), "mirror cluster is required");
        }
        if m.percent > 100 {
            errs.push(
                &at.k("percent"),
                format!("percent {} out of range 0..=100", m.percent),
            );
        }
        MirrorPolicy {
            cluster: m.cluster.clone(),
            percent: m.percent,
        }
    }
}

impl PathRewrite {
    fn build(ra: &RouteActionConfig, rp: &At, errs: &mut Errors) -> PathRewrite {
        if !ra.prefix_rewrite.is_empty() {
            let valid = PathAndQuery::from_str(&ra.prefix_rewrite)
                .is_ok_and(|pq| pq.query().is_none())
                .then(|| PathRewrite::Prefix(ra.prefix_rewrite.clone()))
                .ok_or_else(|| format!("invalid path {:?}", ra.prefix_rewrite));
            errs.check(&rp.k("prefix_rewrite"), valid)
                .unwrap_or(PathRewrite::None)
        } else if let Some(r) = &ra.regex_rewrite {
            let pp = rp.k("regex_rewrite").k("pattern").k("regex");
            let re = if r.pattern.is_empty() {
                Err("regex_rewrite pattern is empty".to_string())
            } else {
                compile_regex(&r.pattern, false)
            };
            errs.check(&pp, re).map_or(PathRewrite::None, |re| {
                PathRewrite::Regex(re, r.substitution.clone())
            })
        } else {
            PathRewrite::None
        }
    }
}

impl HostRewrite {
    fn build(ra: &RouteActionConfig, rp: &At, errs: &mut Errors) -> HostRewrite {
        if !ra.host_rewrite.is_empty() {
            let valid = Authority::from_str(&ra.host_rewrite)
                .ok()
                .and_then(|_| HeaderValue::from_str(&ra.host_rewrite).ok())
                .ok_or_else(|| format!("invalid host {:?}", ra.host_rewrite));
            errs.check(&rp.k("host_rewrite"), valid)
                .map_or(HostRewrite::None, HostRewrite::Literal)
        } else if !ra.auto_host_rewrite_header.is_empty() {
            errs.check(
                &rp.k("auto_host_rewrite_header"),
                header_name(&ra.auto_host_rewrite_header),
            )
            .map_or(HostRewrite::None, HostRewrite::FromHeader)
        } else if ra.auto_host_rewrite {
            HostRewrite::Auto
        } else {
            HostRewrite::None
        }
    }
}

// === forwarding ===

/// How a request is forwarded upstream.
#[derive(Debug, Clone)]
pub struct ForwardAction {
    /// `None` only inside a table that failed to build.
    cluster: Option<ClusterSpecifier>,
    metadata_match: BTreeMap<String, String>,
    timeout: Option<Duration>,
    retry_policy: Option<RetryPolicy>,
    upstream_protocol: Option<Protocol>,
    mirrors: Vec<MirrorPolicy>,
    path_rewrite: PathRewrite,
    host_rewrite: HostRewrite,
}

impl ForwardAction {
    /// Compiles the `route` object of `cfg` (at `at`).
    fn build(cfg: &Route, at: &At, errs: &mut Errors) -> ForwardAction {
        let ra = &cfg.route;
        let rp = at.k("route");
        ForwardAction {
            cluster: ClusterSpecifier::build(ra, &rp, errs),
            metadata_match: ra.metadata_match.clone(),
            timeout: ra.timeout,
            retry_policy: ra
                .retry_policy
                .as_ref()
                .filter(|r| r.retry_on)
                .map(|r| RetryPolicy::build(r, &rp.k("retry_policy"), errs)),
            upstream_protocol: ra.upstream_protocol,
            mirrors: cfg
                .mirror_policies
                .iter()
                .enumerate()
                .map(|(i, m)| MirrorPolicy::build(m, &at.k("request_mirror_policies").i(i), errs))
                .collect(),
            path_rewrite: PathRewrite::build(ra, &rp, errs),
            host_rewrite: HostRewrite::build(ra, &rp, errs),
        }
    }

    /// The upstream cluster for this request: `weighted_clusters` picked with `rnd` (a
    /// uniformly random number from the caller, so tests are deterministic), else the
    /// cluster named by the `cluster_header` / `cluster_variable` value (none when absent
    /// or empty), else `cluster_name`.
    pub fn pick_cluster<'a>(
        &'a self,
        headers: &'a dyn RouteHeaders,
        rnd: u64,
    ) -> Option<PickedCluster<'a>> {
        self.cluster
            .as_ref()?
            .pick(headers, &self.metadata_match, rnd)
    }

    /// Route-level `metadata_match` (LB subset selection); weighted clusters carry their
    /// own, see [`PickedCluster::metadata_match`].
    pub fn metadata_match(&self) -> &BTreeMap<String, String> {
        &self.metadata_match
    }

    /// Overall timeout of the request (`timeout`).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The retry policy, when `retry_on` is set.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.retry_policy.as_ref()
    }

    /// `upstream_protocol`, overriding the proxy's.
    pub fn upstream_protocol(&self) -> Option<Protocol> {
        self.upstream_protocol
    }

    /// Where to copy requests (`request_mirror_policies`).
    pub fn mirror_policies(&self) -> &[MirrorPolicy] {
        &self.mirrors
    }

    /// The rewritten path, if a rewrite applies; `matched` is the route's path matcher.
    fn rewritten_path(&self, matched: &PathMatch, path: &str) -> Option<String> {
        match &self.path_rewrite {
            PathRewrite::None => None,
            PathRewrite::Prefix(new) => Some(format!("{new}{}", matched.remainder(path)?)),
            PathRewrite::Regex(re, substitution) => {
                match re.replace_all(path, substitution.as_str()) {
                    Cow::Borrowed(_) => None,
                    Cow::Owned(p) => Some(p),
                }
            }
        }
    }

    /// The new host, if a host rewrite applies.
    fn rewritten_host(
        &self,
        headers: &HeaderMap,
        upstream_hostname: Option<&str>,
    ) -> Option<HeaderValue> {
        match &self.host_rewrite {
            HostRewrite::None => None,
            HostRewrite::Literal(v) => Some(v.clone()),
            HostRewrite::FromHeader(name) => headers.get(name).cloned(),
            HostRewrite::Auto => upstream_hostname
                .filter(|h| !h.is_empty())
                .and_then(|h| HeaderValue::from_str(h).ok()),
        }
    }
}

// === the entry ===

/// A compiled route.
#[derive(Debug)]
pub struct RouteEntry {
    name: Arc<str>,
    key: usize,
    vhost: Arc<VirtualHostEntry>,
    pub(super) matcher: RouteMatcher,
    action: RouteAction,
    headers: HeaderScope,
    /// The route's `per_filter_config` over its virtual host's.
    per_filter_config: Map<String, Value>,
    metadata: BTreeMap<String, String>,
}

impl RouteEntry {
    /// Compiles route number `index` of `vhost` (number `key` of the table), at `at`.
    pub(super) fn build(
        cfg: &Route,
        index: usize,
        key: usize,
        vhost: &Arc<VirtualHostEntry>,
        at: &At,
        errs: &mut Errors,
    ) -> RouteEntry {
        let name = match cfg.metadata.get("name") {
            Some(name) => Arc::from(name.as_str()),
            None => Arc::from(format!("{}/{index}", vhost.name())),
        };
        let mut per_filter_config = vhost.per_filter_configs().clone();
        per_filter_config.extend(cfg.per_filter_config.clone());
        RouteEntry {
            name,
            key,
            vhost: Arc::clone(vhost),
            matcher: RouteMatcher::build(&cfg.matcher, &at.k("match"), errs),
            action: RouteAction::build(cfg, at, errs),
            headers: HeaderScope::build(&cfg.route, &at.k("route"), errs),
            per_filter_config,
            metadata: cfg.metadata.clone(),
        }
    }

    /// Name for logs: `metadata."mosn.lb".name` if set, else `<virtual host>/<index>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`RouteEntry::name`], shared.
    pub fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// Position of the route in its table (see [`super::RouteTable::routes`]): a key for
    /// per-route data compiled elsewhere, stable for the table's lifetime.
    pub fn key(&self) -> usize {
        self.key
    }

    /// The virtual host this route belongs to.
    pub fn virtual_host(&self) -> &VirtualHostEntry {
        &self.vhost
    }

    /// What to do with the request.
    pub fn action(&self) -> &RouteAction {
        &self.action
    }

    /// The forwarding part, for routes that forward.
    pub fn forward(&self) -> Option<&ForwardAction> {
        match &self.action {
            RouteAction::Forward(f) => Some(f),
            _ => None,
        }
    }

    /// The route's own metadata (`metadata.filter_metadata."mosn.lb"`).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// `per_filter_config.<filter>` of the route, else of its virtual host.
    pub fn per_filter_config(&self, filter: &str) -> Option<&Value> {
        self.per_filter_config.get(filter)
    }

    /// Every effective `per_filter_config` entry: the route's over its virtual host's.
    pub fn per_filter_configs(&self) -> &Map<String, Value> {
        &self.per_filter_config
    }

    /// The redirect status and `Location`, for redirect routes.
    pub fn redirect_location(&self, input: &RouteInput<'_>) -> Option<(StatusCode, HeaderValue)> {
        match &self.action {
            RouteAction::Redirect(rule) => Some((rule.status(), rule.location(input))),
            _ => None,
        }
    }

    /// Prepares the upstream request: path rewrite (query kept), request header edits
    /// (router, then virtual host, then route), then host rewrite (`host_rewrite`, else
    /// `auto_host_rewrite_header`, else `auto_host_rewrite` with `upstream_hostname`, which
    /// the caller passes only when MOSN would: for STRICT_DNS clusters). The host goes into
    /// the URI authority when the URI has one, and into `Host` when the request has that
    /// header or no URI authority. Rewrites that would produce an invalid URI are skipped.
    pub fn rewrite_request(
        &self,
        parts: &mut http::request::Parts,
        upstream_hostname: Option<&str>,
    ) {
        let forward = self.forward();
        let path = forward.and_then(|f| f.rewritten_path(&self.matcher.path, parts.uri.path()));
        if let Some(path) = path {
            let pq = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            if let Ok(pq) = PathAndQuery::try_from(pq) {
                set_uri(&mut parts.uri, |u| u.path_and_query = Some(pq));
            }
        }
        for scope in self.scopes() {
            scope.request.apply(&mut parts.headers);
        }
        let host = forward.and_then(|f| f.rewritten_host(&parts.headers, upstream_hostname));
        if let Some(host) = host {
            set_host(parts, host);
        }
    }

    /// True when [`RouteEntry::rewrite_request`] or [`RouteEntry::apply_response_headers`]
    /// may change a message (path or host rewrite, header edits at any level); when false,
    /// both are no-ops and an RPC frame may pass without an HTTP form.
    pub fn edits_messages(&self) -> bool {
        let rewrites = self.forward().is_some_and(|f| {
            !matches!(f.path_rewrite, PathRewrite::None)
                || !matches!(f.host_rewrite, HostRewrite::None)
        });
        rewrites
            || self
                .scopes()
                .iter()
                .any(|s| !s.request.is_empty() || !s.response.is_empty())
    }

    /// Response header edits: router, then virtual host, then route.
    pub fn apply_response_headers(&self, headers: &mut HeaderMap) {
        for scope in self.scopes() {
            scope.response.apply(headers);
        }
    }

    /// Header edit levels, least specific first.
    fn scopes(&self) -> [&HeaderScope; 3] {
        [
            self.vhost.router_headers(),
            self.vhost.headers(),
            &self.headers,
        ]
    }
}

/// Edits the parts of `uri`; keeps the old URI when the result is invalid.
fn set_uri(uri: &mut Uri, edit: impl FnOnce(&mut http::uri::Parts)) {
    let mut parts = uri.clone().into_parts();
    edit(&mut parts);
    if let Ok(new) = Uri::from_parts(parts) {
        *uri = new;
    }
}

fn set_host(parts: &mut http::request::Parts, host: HeaderValue) {
    let has_authority = parts.uri.authority().is_some();
    if has_authority {
        if let Ok(authority) = Authority::try_from(host.as_bytes()) {
            set_uri(&mut parts.uri, |u| u.authority = Some(authority));
        }
    }
    if !has_authority || parts.headers.contains_key(HOST) {
        parts.headers.insert(HOST, host);
    }
}

/// A status code from config, within `range`.
fn status(
    code: impl Into<u32>,
    range: std::ops::RangeInclusive<u16>,
) -> Result<StatusCode, String> {
    let code = code.into();
    u16::try_from(code)
        .ok()
        .filter(|c| range.contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| {
            format!(
                "status {code} out of range {}..={}",
                range.start(),
                range.end()
            )
        })
}
