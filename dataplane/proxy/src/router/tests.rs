use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, HOST};
use http::request::Parts;
use http::{Method, StatusCode};
use mosn_config::{
    DirectResponseAction, HeaderMatcher, HeaderValueOption, Protocol, QueryParameterMatcher,
    RedirectAction, RegexRewrite, RequestMirrorPolicy, RetryPolicy as RetryConfig, Route,
    RouteAction as RouteActionConfig, RouteMatch, Router, VariableMatcher, VirtualHost,
    WeightedCluster,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::*;

// === helpers ===

/// Clusters the JSON configs may name.
const CLUSTERS: [&str; 6] = ["a", "b", "c", "d", "e", "mirror"];

/// A table from a MOSN-shaped router object (`router_config_name` added), loaded through the
/// config crate so the JSON is what users write.
fn load(mut router: Value) -> Arc<RouteTable> {
    router["router_config_name"] = json!("r");
    let clusters: Vec<Value> = CLUSTERS
        .iter()
        .map(|c| json!({"name": c, "hosts": [{"address": "127.0.0.1:1"}]}))
        .collect();
    let doc = json!({
        "servers": [{"routers": [router]}],
        "cluster_manager": {"clusters": clusters}
    });
    let loaded = mosn_config::parse_value(&doc).unwrap_or_else(|e| panic!("config: {e}"));
    let set = RouterSet::build(&loaded.config.routers).unwrap_or_else(|e| panic!("{e:?}"));
    set.get("r").expect("table r")
}

/// A table with one default virtual host holding `routes`.
fn routes(routes: Value) -> Arc<RouteTable> {
    load(json!({"virtual_hosts": [{"name": "vh", "domains": ["*"], "routers": routes}]}))
}

/// A request head; `uri` may be absolute (it then carries the authority).
fn parts(method: Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Parts {
    parts(Method::GET, uri, headers)
}

fn input(p: &Parts) -> RouteInput<'_> {
    RouteInput::from_parts(p, "http")
}

/// An RPC request: no authority, headers only.
fn rpc<'a>(headers: &'a HeaderMap, method: &'a Method) -> RouteInput<'a> {
    RouteInput {
        authority: None,
        path: "",
        query: None,
        method,
        headers,
        scheme: "",
    }
}

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    get("/", pairs).headers
}

/// The cluster `table` picks for `i` (rnd 0), or `None` when nothing matches.
fn cluster_for(table: &RouteTable, i: &RouteInput<'_>) -> Option<String> {
    let hit = table.find(i)?;
    let picked = hit.route().forward()?.pick_cluster(i.headers, 0)?;
    Some(picked.name.into_owned())
}

fn cluster(table: &RouteTable, p: &Parts) -> Option<String> {
    cluster_for(table, &input(p))
}

fn hit(table: &RouteTable, p: &Parts) -> RouteHit {
    table.find(&input(p)).expect("a route matches")
}

fn fwd(hit: &RouteHit) -> &ForwardAction {
    hit.route().forward().expect("a forwarding route")
}

fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .collect()
}

// === virtual hosts ===

#[test]
fn virtual_host_priority_follows_each_rung() {
    let vh = |name: &str, domains: &[&str]| json!({"name": name, "domains": domains, "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]});
    let table = load(json!({"virtual_hosts": [
        vh("default", &["*"]),
        vh("wild-any", &["*.foo.com"]),
        vh("wild-longer", &["*.bar.foo.com"]),
        vh("wild-port", &["*.foo.com:8080"]),
        vh("host", &["foo.com", "[::1]"]),
        vh("host-port", &["Foo.com:8080"]),
    ]}));
    let name = |authority: Option<&str>| {
        table
            .virtual_host(authority)
            .map(|v| v.name().to_string())
            .unwrap_or_default()
    };
    // exact host:port, then exact host with any port
    assert_eq!(name(Some("foo.com:8080")), "host-port");
    assert_eq!(name(Some("FOO.COM:8080")), "host-port");
    assert_eq!(name(Some("foo.com:9090")), "host");
    assert_eq!(name(Some("foo.com")), "host");
    assert_eq!(name(Some("[::1]:80")), "host");
    // wildcards: with port first, then longest suffix without port
    assert_eq!(name(Some("x.foo.com:8080")), "wild-port");
    assert_eq!(name(Some("x.bar.foo.com:8080")), "wild-port");
    assert_eq!(name(Some("x.bar.foo.com:9090")), "wild-longer");
    assert_eq!(name(Some("x.bar.foo.com")), "wild-longer");
    assert_eq!(name(Some("x.foo.com")), "wild-any");
    assert_eq!(name(Some("X.Foo.Com:1")), "wild-any");
    // the wildcard needs at least one more character; then the default
    assert_eq!(name(Some(".foo.com")), "default");
    assert_eq!(name(Some("other.com")), "default");
    assert_eq!(name(Some("")), "default");
    assert_eq!(name(None), "default");
}

#[test]
fn without_a_default_virtual_host_unknown_hosts_find_nothing() {
    let table = load(
        json!({"virtual_hosts": [{"name": "foo", "domains": ["foo.com"], "routers": [
            {"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}
        ]}]}),
    );
    assert_eq!(
        cluster(&table, &get("/", &[("host", "foo.com")])),
        Some("a".into())
    );
    assert_eq!(
        cluster(&table, &get("http://foo.com/x", &[])),
        Some("a".into())
    );
    assert_eq!(cluster(&table, &get("/", &[("host", "bar.com")])), None);
    let (headers, method) = (HeaderMap::new(), Method::GET);
    assert!(table.find(&rpc(&headers, &method)).is_none());
}

// === path matchers ===

#[test]
fn prefix_path_and_regex_matchers() {
    let table = routes(json!([
        {"match": {"path": "/exact"}, "route": {"cluster_name": "a"}},
        {"match": {"regex": "/re/\\d+"}, "route": {"cluster_name": "b"}},
        {"match": {"prefix": "/p/"}, "route": {"cluster_name": "c"}},
    ]));
    let c = |uri: &str| cluster(&table, &get(uri, &[]));
    assert_eq!(c("/exact"), Some("a".into()));
    assert_eq!(c("/exact?q=1"), Some("a".into()));
    assert_eq!(c("/exact/more"), None);
    assert_eq!(c("/EXACT"), None, "case sensitive by default");
    assert_eq!(c("/re/42"), Some("b".into()));
    assert_eq!(c("/re/42/x"), None, "regex must match the whole path");
    assert_eq!(c("/x/re/42"), None, "regex must match the whole path");
    assert_eq!(c("/p/anything"), Some("c".into()));
    assert_eq!(c("/P/anything"), None);
    assert_eq!(c("/p"), None);
}

#[test]
fn case_insensitive_prefix_and_path() {
    let table = routes(json!([
        {"match": {"path": "/Exact", "case_sensitive": false}, "route": {"cluster_name": "a"}},
        {"match": {"prefix": "/Api/", "case_sensitive": false}, "route": {"cluster_name": "b"}},
    ]));
    let c = |uri: &str| cluster(&table, &get(uri, &[]));
    assert_eq!(c("/eXACT"), Some("a".into()));
    assert_eq!(c("/API/v1"), Some("b".into()));
    assert_eq!(c("/api/v1"), Some("b".into()));
    assert_eq!(c("/apx/v1"), None);
}

#[test]
fn first_matching_route_wins() {
    let table = routes(json!([
        {"match": {"prefix": "/a"}, "route": {"cluster_name": "a"}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "b"}},
        {"match": {"prefix": "/a/b"}, "route": {"cluster_name": "c"}},
    ]));
    assert_eq!(cluster(&table, &get("/a/b", &[])), Some("a".into()));
    assert_eq!(cluster(&table, &get("/z", &[])), Some("b".into()));
}

// === headers, query parameters, variables ===

#[test]
fn header_matchers_exact_regex_and_any_value() {
    let table = routes(json!([
        {"match": {"prefix": "/", "headers": [{"name": "X-Exact", "value": "yes"}]}, "route": {"cluster_name": "a"}},
        {"match": {"prefix": "/", "headers": [{"name": "x-re", "value": "^v[0-9]+", "regex": true}]}, "route": {"cluster_name": "b"}},
        {"match": {"prefix": "/", "headers": [{"name": "x-search", "value": "mid", "regex": true}]}, "route": {"cluster_name": "c"}},
        {"match": {"prefix": "/", "headers": [{"name": "x-any", "value": ".*"}]}, "route": {"cluster_name": "d"}},
    ]));
    let c = |h: &[(&str, &str)]| cluster(&table, &get("/", h));
    assert_eq!(c(&[("x-exact", "yes")]), Some("a".into()));
    assert_eq!(c(&[("x-exact", "YES")]), None);
    assert_eq!(c(&[("x-re", "v12-beta")]), Some("b".into()));
    assert_eq!(c(&[("x-re", "beta-v12")]), None);
    assert_eq!(
        c(&[("x-search", "amidst")]),
        Some("c".into()),
        "MOSN searches"
    );
    assert_eq!(c(&[("x-any", "")]), Some("d".into()));
    assert_eq!(c(&[("x-any", "whatever")]), Some("d".into()));
    assert_eq!(c(&[]), None, "an absent header never matches");
}

#[test]
fn header_matchers_read_mosn_builtin_keys() {
    let table = routes(json!([
        {"match": {"headers": [
            {"name": "x-mosn-method", "value": "POST"},
            {"name": "x-mosn-host", "value": "foo.com"},
            {"name": "x-mosn-path", "value": "/p"},
            {"name": "x-mosn-querystring", "value": "a=1"}
        ]}, "route": {"cluster_name": "a"}},
        {"match": {"headers": [{"name": "method", "value": "sayHello"}]}, "route": {"cluster_name": "b"}},
        {"match": {"headers": [{"name": "method", "value": "PUT"}]}, "route": {"cluster_name": "c"}},
    ]));
    let post = parts(Method::POST, "http://foo.com/p?a=1", &[]);
    assert_eq!(cluster(&table, &post), Some("a".into()));
    let other = parts(Method::POST, "http://foo.com/p?a=2", &[]);
    assert_eq!(cluster(&table, &other), None);
    // `method`: the Dubbo header when present, else the request method (MOSN's alias).
    let dubbo = header_map(&[("method", "sayHello")]);
    let m = Method::POST;
    assert_eq!(cluster_for(&table, &rpc(&dubbo, &m)), Some("b".into()));
    assert_eq!(
        cluster(&table, &parts(Method::PUT, "/", &[])),
        Some("c".into())
    );
}

#[test]
fn rpc_rule_matches_on_headers_only() {
    let table = routes(json!([
        {"match": {"headers": [{"name": "service", "value": "com.foo.Bar:1.0"}]}, "route": {"cluster_name": "a"}},
        {"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "b"}},
    ]));
    let method = Method::POST;
    let pick = |h: &HeaderMap| cluster_for(&table, &rpc(h, &method));
    assert_eq!(
        pick(&header_map(&[("service", "com.foo.Bar:1.0")])),
        Some("a".into())
    );
    assert_eq!(
        pick(&header_map(&[("service", "com.foo.Baz:1.0")])),
        Some("b".into())
    );
    assert_eq!(pick(&HeaderMap::new()), None);
}

#[test]
fn query_parameter_matchers() {
    let table = routes(json!([
        {"match": {"prefix": "/", "query_parameters": [{"name": "v", "value": "1"}, {"name": "flag"}]}, "route": {"cluster_name": "a"}},
        {"match": {"prefix": "/", "query_parameters": [{"name": "id", "value": "[0-9]+", "regex": true}]}, "route": {"cluster_name": "b"}},
        {"match": {"prefix": "/", "query_parameters": [{"name": "name", "value": "a b/c"}]}, "route": {"cluster_name": "c"}},
    ]));
    let c = |uri: &str| cluster(&table, &get(uri, &[]));
    assert_eq!(c("/?v=1&flag"), Some("a".into()));
    assert_eq!(c("/?flag=&v=1"), Some("a".into()));
    assert_eq!(c("/?v=1"), None, "flag must be present");
    assert_eq!(c("/?v=2&flag"), None);
    assert_eq!(c("/?id=123"), Some("b".into()));
    assert_eq!(c("/?id=12x"), None, "query regexes match the whole value");
    assert_eq!(
        c("/?name=a+b%2Fc"),
        Some("c".into()),
        "values are percent-decoded"
    );
    assert_eq!(c("/?n%61me=a%20b/c"), Some("c".into()), "names too");
    assert_eq!(c("/"), None);
}

#[test]
fn variable_matchers_read_builtin_variables() {
    let table = routes(json!([
        {"match": {"variables": [{"name": "x-mosn-method", "value": "PUT"}]}, "route": {"cluster_name": "a"}},
        {"match": {"variables": [{"name": "x-mosn-path", "regex": "^/v[0-9]/"}]}, "route": {"cluster_name": "b"}},
        {"match": {"variables": [{"name": "x-mosn-host", "value": "foo.com:81"}]}, "route": {"cluster_name": "c"}},
        {"match": {"variables": [{"name": "x-mosn-querystring", "value": "x=1&y=2"}]}, "route": {"cluster_name": "d"}},
        {"match": {"variables": [{"name": "request_arg_user", "value": "bob"}]}, "route": {"cluster_name": "e"}},
        {"match": {"variables": [{"name": "cookie_session", "value": "s1"}]}, "route": {"cluster_name": "mirror"}},
        {"match": {"variables": [{"name": "x-tenant", "value": "t1"}]}, "route": {"cluster_name": "a"}},
    ]));
    let c = |p: Parts| cluster(&table, &p);
    assert_eq!(c(parts(Method::PUT, "/", &[])), Some("a".into()));
    assert_eq!(c(get("/v2/x", &[])), Some("b".into()));
    assert_eq!(c(get("http://foo.com:81/", &[])), Some("c".into()));
    assert_eq!(c(get("/?x=1&y=2", &[])), Some("d".into()));
    assert_eq!(c(get("/?q=1&user=bob", &[])), Some("e".into()));
    assert_eq!(
        c(get("/", &[("cookie", "a=b; session=s1")])),
        Some("mirror".into())
    );
    assert_eq!(
        c(get("/", &[("cookie", "a=b"), ("cookie", "session=s1")])),
        Some("mirror".into())
    );
    assert_eq!(c(get("/", &[("x-tenant", "t1")])), Some("a".into()));
    assert_eq!(c(get("/", &[("cookie", "session=s2")])), None);
}

#[test]
fn variable_and_or_model_follows_mosn() {
    // (a && b) || c
    let table = routes(json!([
        {"match": {"variables": [
            {"name": "x-a", "value": "1", "model": "and"},
            {"name": "x-b", "value": "1", "model": "OR"},
            {"name": "x-c", "value": "1"}
        ]}, "route": {"cluster_name": "a"}},
    ]));
    let c = |h: &[(&str, &str)]| cluster(&table, &get("/", h));
    assert_eq!(c(&[("x-a", "1"), ("x-b", "1")]), Some("a".into()));
    assert_eq!(c(&[("x-c", "1")]), Some("a".into()));
    assert_eq!(c(&[("x-a", "1"), ("x-c", "1")]), Some("a".into()));
    assert_eq!(c(&[("x-a", "1")]), None);
    assert_eq!(c(&[("x-b", "1")]), None);
}

// === actions ===

#[test]
fn cluster_name_header_and_variable() {
    let table = routes(json!([
        {"match": {"prefix": "/h"}, "route": {"cluster_header": "x-cluster"}},
        {"match": {"prefix": "/v"}, "route": {"cluster_variable": "cookie_cluster"}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "a", "metadata_match": {"filter_metadata": {"mosn.lb": {"zone": "z1"}}}}},
    ]));
    assert_eq!(
        cluster(&table, &get("/h", &[("x-cluster", "b")])),
        Some("b".into())
    );
    assert_eq!(
        cluster(&table, &get("/h", &[])),
        None,
        "missing header: no cluster"
    );
    assert_eq!(cluster(&table, &get("/h", &[("x-cluster", "")])), None);
    let by_cookie = get("/v", &[("cookie", "x=1; cluster=c")]);
    assert_eq!(cluster(&table, &by_cookie), Some("c".into()));
    let p = get("/", &[]);
    let h = hit(&table, &p);
    let picked = fwd(&h).pick_cluster(&p.headers, 7).expect("cluster");
    assert_eq!(picked.name, "a");
    let zone = BTreeMap::from([("zone".to_string(), "z1".to_string())]);
    assert_eq!(picked.metadata_match, &zone);
    assert_eq!(fwd(&h).metadata_match(), &zone);
    assert!(matches!(h.route().action(), RouteAction::Forward(_)));
}

#[test]
fn weighted_clusters_split_by_weight_with_their_own_metadata() {
    let table = routes(
        json!([{"match": {"prefix": "/"}, "route": {"weighted_clusters": [
            {"cluster": {"name": "a", "weight": 20, "metadata_match": {"filter_metadata": {"mosn.lb": {"v": "1"}}}}},
            {"cluster": {"name": "b", "weight": 0}},
            {"cluster": {"name": "c", "weight": 30}},
            {"cluster": {"name": "d", "weight": 50, "metadata_match": {"filter_metadata": {"mosn.lb": {"v": "3"}}}}},
        ]}}]),
    );
    let p = get("/", &[]);
    let h = hit(&table, &p);
    let route = fwd(&h);
    let i = &p.headers;
    // deterministic edges: rnd % 100 lands in [0,20) a, [20,50) c, [50,100) d
    let name = |rnd: u64| route.pick_cluster(i, rnd).map(|c| c.name.into_owned());
    assert_eq!(name(0), Some("a".into()));
    assert_eq!(name(19), Some("a".into()));
    assert_eq!(name(20), Some("c".into()));
    assert_eq!(name(49), Some("c".into()));
    assert_eq!(name(50), Some("d".into()));
    assert_eq!(name(199), Some("d".into()));
    assert_eq!(
        name(u64::MAX),
        route
            .pick_cluster(i, u64::MAX % 100)
            .map(|c| c.name.into_owned())
    );
    let v = |rnd: u64| {
        route
            .pick_cluster(i, rnd)
            .map(|c| c.metadata_match.get("v").cloned())
    };
    assert_eq!(v(0), Some(Some("1".into())));
    assert_eq!(v(60), Some(Some("3".into())));
    assert_eq!(v(30), Some(None), "c has no metadata_match of its own");

    let mut rng = SmallRng::seed_from_u64(7);
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let n = 100_000;
    for _ in 0..n {
        let picked = route.pick_cluster(i, rng.gen()).expect("cluster");
        *counts.entry(picked.name.into_owned()).or_default() += 1;
    }
    assert_eq!(counts.get("b"), None, "weight 0 is never picked");
    for (cluster, share) in [("a", 0.2), ("c", 0.3), ("d", 0.5)] {
        let got = f64::from(counts[cluster]) / f64::from(n);
        assert!((got - share).abs() < 0.01, "{cluster}: {got} vs {share}");
    }
}

#[test]
fn timeout_retry_protocol_and_mirrors() {
    let table = routes(json!([
        {"match": {"prefix": "/r"}, "route": {
            "cluster_name": "a", "timeout": "3s", "upstream_protocol": "Http2",
            "retry_policy": {"retry_on": true, "num_retries": 2, "retry_timeout": "500ms", "status_codes": [503, 504]}
        }, "request_mirror_policies": {"cluster": "mirror", "percent": 25}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "a", "retry_policy": {"retry_on": false, "num_retries": 3}}},
    ]));
    let h = hit(&table, &get("/r", &[]));
    let r = fwd(&h);
    assert_eq!(r.timeout(), Some(Duration::from_secs(3)));
    assert_eq!(r.upstream_protocol(), Some(Protocol::Http2));
    let retry = r.retry_policy().expect("retry policy");
    assert_eq!(retry.num_retries, 2);
    assert_eq!(retry.retry_timeout, Some(Duration::from_millis(500)));
    assert!(retry.retries_status(StatusCode::SERVICE_UNAVAILABLE));
    assert!(!retry.retries_status(StatusCode::INTERNAL_SERVER_ERROR));
    let mirrors = r.mirror_policies();
    assert_eq!(mirrors.len(), 1);
    assert_eq!(mirrors[0].cluster, "mirror");
    let copied = (0..1000u64)
        .filter(|&rnd| mirrors[0].should_mirror(rnd))
        .count();
    assert_eq!(copied, 250);

    let plain = hit(&table, &get("/", &[]));
    let plain = fwd(&plain);
    assert_eq!(plain.timeout(), None);
    assert!(plain.retry_policy().is_none(), "retry_on false: no retries");
    assert_eq!(plain.upstream_protocol(), None);
    assert!(plain.mirror_policies().is_empty());
}

#[test]
fn prefix_rewrite_replaces_the_matched_part_and_keeps_the_query() {
    let table = routes(json!([
        {"match": {"prefix": "/old/"}, "route": {"cluster_name": "a", "prefix_rewrite": "/new/"}},
        {"match": {"prefix": "/CI/", "case_sensitive": false}, "route": {"cluster_name": "a", "prefix_rewrite": "/ci/"}},
        {"match": {"path": "/exact"}, "route": {"cluster_name": "a", "prefix_rewrite": "/whole"}},
        {"match": {"regex": "/re/.*"}, "route": {"cluster_name": "a", "prefix_rewrite": "/from-regex"}},
        {"match": {"prefix": "/both/"}, "route": {"cluster_name": "a", "prefix_rewrite": "/p/",
            "regex_rewrite": {"pattern": {"regex": "both"}, "substitution": "r"}}},
    ]));
    let rewrite = |uri: &str| {
        let mut p = get(uri, &[]);
        hit(&table, &p).route().rewrite_request(&mut p, None);
        p.uri.to_string()
    };
    assert_eq!(rewrite("/old/x/y?a=1&b=2"), "/new/x/y?a=1&b=2");
    assert_eq!(rewrite("/old/"), "/new/");
    assert_eq!(rewrite("http://h.com/old/x?q"), "http://h.com/new/x?q");
    assert_eq!(rewrite("/ci/x"), "/ci/x");
    assert_eq!(rewrite("/Ci/x?k=v"), "/ci/x?k=v");
    assert_eq!(rewrite("/exact?z=9"), "/whole?z=9");
    assert_eq!(rewrite("/re/a/b"), "/from-regex");
    assert_eq!(
        rewrite("/both/x"),
        "/p/x",
        "prefix_rewrite wins over regex_rewrite"
    );
}

#[test]
fn regex_rewrite_substitutes_over_the_path_only() {
    let table = routes(json!([
        {"match": {"prefix": "/"}, "route": {"cluster_name": "a",
            "regex_rewrite": {"pattern": {"regex": "^/service/([^/]+)(/.*)$"}, "substitution": "${2}/instance/$1"}}},
    ]));
    let rewrite = |uri: &str| {
        let mut p = get(uri, &[]);
        hit(&table, &p).route().rewrite_request(&mut p, None);
        p.uri.to_string()
    };
    assert_eq!(
        rewrite("/service/foo/v1/api?service=x"),
        "/v1/api/instance/foo?service=x"
    );
    assert_eq!(rewrite("/other?x=1"), "/other?x=1", "no match: unchanged");
}

#[test]
fn host_rewrites() {
    let table = routes(json!([
        {"match": {"prefix": "/lit"}, "route": {"cluster_name": "a", "host_rewrite": "new.com:8443",
            "auto_host_rewrite_header": "x-host", "auto_host_rewrite": true}},
        {"match": {"prefix": "/hdr"}, "route": {"cluster_name": "a", "auto_host_rewrite_header": "x-host"}},
        {"match": {"prefix": "/auto"}, "route": {"cluster_name": "a", "auto_host_rewrite": true}},
    ]));
    let rewrite = |uri: &str, headers: &[(&str, &str)], upstream: Option<&str>| {
        let mut p = get(uri, headers);
        hit(&table, &p).route().rewrite_request(&mut p, upstream);
        let host = p
            .headers
            .get(HOST)
            .map(|h| h.to_str().unwrap_or("?").to_string());
        (p.uri.authority().map(|a| a.to_string()), host)
    };
    // HTTP/1 origin form: the Host header changes
    assert_eq!(
        rewrite(
            "/lit",
            &[("host", "old.com"), ("x-host", "h.com")],
            Some("up")
        ),
        (None, Some("new.com:8443".into()))
    );
    // HTTP/2 style absolute URI without Host: the authority changes, no Host is added
    assert_eq!(
        rewrite("http://old.com/lit?x", &[], None),
        (Some("new.com:8443".into()), None)
    );
    assert_eq!(
        rewrite("/hdr", &[("host", "old.com"), ("x-host", "h.com")], None),
        (None, Some("h.com".into()))
    );
    assert_eq!(
        rewrite("/hdr", &[("host", "old.com")], None),
        (None, Some("old.com".into())),
        "header absent: unchanged"
    );
    assert_eq!(
        rewrite("/auto", &[("host", "old.com")], Some("backend.internal")),
        (None, Some("backend.internal".into()))
    );
    assert_eq!(
        rewrite("/auto", &[("host", "old.com")], None),
        (None, Some("old.com".into()))
    );
}

#[test]
fn header_edits_apply_router_then_vhost_then_route() {
    let add = |k: &str, v: &str, append: bool| json!({"header": {"key": k, "value": v}, "append": append});
    let table = load(json!({
        "request_headers_to_add": [add("x-level", "router", false), add("x-router", "1", true), add("x-gone", "router", true)],
        "response_headers_to_add": [add("x-level", "router", false), add("x-gone", "router", true)],
        "response_headers_to_remove": ["server"],
        "virtual_hosts": [{
            "name": "vh", "domains": ["*"],
            "request_headers_to_add": [add("x-level", "vhost", false), add("x-vhost", "1", true)],
            "request_headers_to_remove": ["x-drop"],
            "response_headers_to_add": [add("x-level", "vhost", false)],
            "routers": [{"match": {"prefix": "/"}, "route": {
                "cluster_name": "a",
                "request_headers_to_add": [add("x-level", "route", true), add("x-client", "route", false)],
                "request_headers_to_remove": ["x-gone"],
                "response_headers_to_add": [add("x-level", "route", true)],
                "response_headers_to_remove": ["x-gone"]
            }}]
        }]
    }));
    let mut p = get(
        "/",
        &[
            ("x-level", "client"),
            ("x-client", "client"),
            ("x-client", "client2"),
            ("x-drop", "1"),
        ],
    );
    let h = hit(&table, &p);
    h.route().rewrite_request(&mut p, None);
    assert_eq!(values(&p.headers, "x-level"), ["vhost", "route"]);
    assert_eq!(values(&p.headers, "x-client"), ["route"]);
    assert_eq!(values(&p.headers, "x-router"), ["1"]);
    assert_eq!(values(&p.headers, "x-vhost"), ["1"]);
    assert!(p.headers.get("x-drop").is_none());
    assert!(
        p.headers.get("x-gone").is_none(),
        "the route removes what the router added"
    );

    let mut response = header_map(&[("server", "upstream"), ("x-level", "upstream")]);
    h.route().apply_response_headers(&mut response);
    assert_eq!(values(&response, "x-level"), ["vhost", "route"]);
    assert!(response.get("server").is_none());
    assert!(response.get("x-gone").is_none());
}

#[test]
fn redirect_location_is_composed_from_rule_and_request() {
    let table = load(
        json!({"virtual_hosts": [{"name": "vh", "domains": ["*"], "routers": [
            {"match": {"prefix": "/default"}, "redirect": {}},
            {"match": {"prefix": "/all"}, "redirect": {"response_code": 302, "scheme_redirect": "HTTPS",
                "host_redirect": "new.com:8443", "path_redirect": "/moved"}},
            {"match": {"prefix": "/own-query"}, "redirect": {"response_code": 308, "path_redirect": "/p?x=1"}},
            {"match": {"prefix": "/host"}, "redirect": {"host_redirect": "h.com"}},
        ]}]}),
    );
    let location = |uri: &str, host: Option<&str>| {
        let p = match host {
            Some(h) => get(uri, &[("host", h)]),
            None => get(uri, &[]),
        };
        let h = hit(&table, &p);
        assert!(h.route().forward().is_none());
        let (status, loc) = h.route().redirect_location(&input(&p)).expect("redirect");
        (status.as_u16(), loc.to_str().unwrap_or("?").to_string())
    };
    assert_eq!(
        location("/default/a?q=1", Some("foo.com")),
        (301, "http://foo.com/default/a?q=1".into())
    );
    assert_eq!(
        location("/all/a?q=1", Some("foo.com")),
        (302, "https://new.com:8443/moved?q=1".into())
    );
    assert_eq!(
        location("/own-query?q=1", Some("foo.com")),
        (308, "http://foo.com/p?x=1".into())
    );
    assert_eq!(
        location("/default?q=1", None),
        (301, "/default?q=1".into()),
        "no host: relative"
    );
    assert_eq!(
        location("/host/x", None),
        (301, "http://h.com/host/x".into())
    );
    let headers = HeaderMap::new();
    let method = Method::GET;
    let odd = RouteInput {
        authority: Some("foo.com"),
        path: "/default/a b\u{7f}é",
        query: Some("k=\u{1}"),
        method: &method,
        headers: &headers,
        scheme: "http",
    };
    let h = table.find(&odd).expect("route");
    let (_, loc) = h.route().redirect_location(&odd).expect("redirect");
    assert_eq!(loc, "http://foo.com/default/a%20b%7F%C3%A9?k=%01");
}

#[test]
fn direct_response_has_status_and_body() {
    let table = routes(json!([
        {"match": {"prefix": "/"}, "direct_response": {"status": 503, "body": "down"}, "route": {"cluster_name": "a"}},
    ]));
    let p = get("/", &[]);
    let h = hit(&table, &p);
    let RouteAction::DirectResponse { status, body } = h.route().action() else {
        panic!("not a direct response: {:?}", h.route().action());
    };
    assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "down");
    assert!(h.route().forward().is_none(), "direct response wins");
    assert!(h.route().redirect_location(&input(&p)).is_none());
}

#[test]
fn per_filter_config_falls_back_to_the_virtual_host() {
    let table = load(json!({"virtual_hosts": [{"name": "vh", "domains": ["*"],
        "per_filter_config": {"fault": {"delay": "1s"}, "gzip": {"level": 1}},
        "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"},
            "per_filter_config": {"fault": {"delay": "2s"}}}]}]}));
    let h = hit(&table, &get("/", &[]));
    assert_eq!(
        h.route().per_filter_config("fault"),
        Some(&json!({"delay": "2s"}))
    );
    assert_eq!(
        h.route().per_filter_config("gzip"),
        Some(&json!({"level": 1}))
    );
    assert_eq!(h.route().per_filter_config("none"), None);
    assert_eq!(
        h.virtual_host().per_filter_config("fault"),
        Some(&json!({"delay": "1s"}))
    );
}

#[test]
fn route_names_come_from_metadata_or_position() {
    let table = routes(json!([
        {"match": {"prefix": "/n"}, "route": {"cluster_name": "a"},
            "metadata": {"filter_metadata": {"mosn.lb": {"name": "named"}}}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "a"}},
    ]));
    let named = hit(&table, &get("/n", &[]));
    assert_eq!(named.route().name(), "named");
    assert_eq!(
        named.route().metadata().get("name").map(String::as_str),
        Some("named")
    );
    assert_eq!(hit(&table, &get("/x", &[])).route().name(), "vh/1");
    assert_eq!(hit(&table, &get("/x", &[])).virtual_host().name(), "vh");
}

#[test]
fn routes_are_listed_in_order_with_stable_keys() {
    let route = |p: &str| json!({"match": {"prefix": p}, "route": {"cluster_name": "a"}});
    let table = load(json!({"virtual_hosts": [
        {"name": "one", "domains": ["one.com"], "per_filter_config": {"f": 1},
            "routers": [route("/1"), route("/2")]},
        {"name": "two", "domains": ["*"], "routers": [
            {"match": {"prefix": "/"}, "route": {"cluster_name": "a"}, "per_filter_config": {"g": 2}}
        ]},
    ]}));
    let listed: Vec<(usize, String)> = table
        .routes()
        .map(|r| (r.key(), r.name().to_string()))
        .collect();
    let expected = [(0, "one/0"), (1, "one/1"), (2, "two/0")].map(|(k, n)| (k, n.to_string()));
    assert_eq!(listed, expected);
    let h = hit(&table, &get("/2", &[("host", "one.com")]));
    assert_eq!(h.route().key(), 1);
    assert_eq!(&*h.route().name_arc(), "one/1");
    let configs: Vec<&Map<String, Value>> =
        table.routes().map(|r| r.per_filter_configs()).collect();
    assert_eq!(configs[1], json!({"f": 1}).as_object().expect("object"));
    assert_eq!(configs[2], json!({"g": 2}).as_object().expect("object"));
}

#[test]
fn router_set_lookup_and_hits_outlive_the_set() {
    let router = |name: &str, cluster: &str| Router {
        name: name.into(),
        virtual_hosts: vec![vhost(&["*"], vec![forward(prefix("/"), cluster)])],
        ..Default::default()
    };
    let set = RouterSet::build(&[router("one", "a"), router("two", "b")]).expect("builds");
    let mut names: Vec<&str> = set.names().collect();
    names.sort_unstable();
    assert_eq!(names, ["one", "two"]);
    assert!(set.get("three").is_none());
    let table = set.get("two").expect("two");
    assert_eq!(table.name(), "two");
    let p = get("/", &[]);
    let h = table.find(&input(&p)).expect("hit");
    drop((set, table));
    let picked = fwd(&h).pick_cluster(&p.headers, 0);
    assert_eq!(picked.map(|c| c.name.into_owned()), Some("b".into()));
}

// === build errors ===

fn prefix(p: &str) -> RouteMatch {
    RouteMatch {
        prefix: p.into(),
        ..Default::default()
    }
}

fn forward(matcher: RouteMatch, cluster: &str) -> Route {
    Route {
        matcher,
        route: RouteActionConfig {
            cluster_name: cluster.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn vhost(domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: "vh".into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        ..Default::default()
    }
}

fn hvo(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        key: key.into(),
        value: value.into(),
        append: true,
    }
}

/// The errors of building one router named `r` with `vhosts`, as `path: reason` lines.
fn errors_of(router: Router) -> Vec<String> {
    match RouterSet::build(&[router]) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

fn errors(vhosts: Vec<VirtualHost>) -> Vec<String> {
    errors_of(Router {
        name: "r".into(),
        virtual_hosts: vhosts,
        ..Default::default()
    })
}

/// Asserts that exactly one error sits at `path` and its reason contains `reason`.
fn assert_error(errs: &[String], path: &str, reason: &str) {
    let at: Vec<&String> = errs
        .iter()
        .filter(|e| e.starts_with(&format!("{path}: ")))
        .collect();
    assert_eq!(at.len(), 1, "want one error at {path}, got {errs:#?}");
    assert!(at[0].contains(reason), "{:?} lacks {reason:?}", at[0]);
}

const R0: &str = "routers[0].virtual_hosts[0].routers[0]";

fn one_route(route: Route) -> Vec<String> {
    errors(vec![vhost(&["*"], vec![route])])
}

#[test]
fn error_display_is_path_colon_reason() {
    let e = RouterError {
        path: "routers[0].x".into(),
        reason: "bad".into(),
    };
    assert_eq!(e.to_string(), "routers[0].x: bad");
}

#[test]
fn errors_in_domains() {
    let errs = errors(vec![
        vhost(&["*", "foo.com", "*.bar.com"], vec![]),
        vhost(&["FOO.com", "*", ""], vec![]),
        vhost(&["*.BAR.com"], vec![]),
    ]);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_error(
        &errs,
        "routers[0].virtual_hosts[1].domains[0]",
        "duplicate domain \"foo.com\" (also routers[0].virtual_hosts[0].domains[1])",
    );
    assert_error(
        &errs,
        "routers[0].virtual_hosts[1].domains[1]",
        "more than one default virtual host",
    );
    assert_error(
        &errs,
        "routers[0].virtual_hosts[1].domains[2]",
        "empty domain",
    );
    assert_error(
        &errs,
        "routers[0].virtual_hosts[2].domains[0]",
        "duplicate domain \"*.bar.com\"",
    );
}

#[test]
fn errors_in_router_names() {
    let router = |name: &str| Router {
        name: name.into(),
        ..Default::default()
    };
    let errs: Vec<String> = RouterSet::build(&[router("a"), router(""), router("a")])
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_error(&errs, "routers[1].router_config_name", "required");
    assert_error(
        &errs,
        "routers[2].router_config_name",
        "duplicate router_config_name \"a\" (also routers[0])",
    );
    let single = RouteTable::build(&Router {
        virtual_hosts: vec![vhost(&["*", "*"], vec![])],
        ..Default::default()
    });
    let single: Vec<String> = single
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_error(
        &single,
        "virtual_hosts[0].domains[1]",
        "more than one default",
    );
}

#[test]
fn errors_in_matchers() {
    let header = |name: &str, value: &str, regex: bool| HeaderMatcher {
        name: name.into(),
        value: value.into(),
        regex,
    };
    let variable = |name: &str, regex: Option<&str>, model: Option<&str>| VariableMatcher {
        name: name.into(),
        value: Some("v".into()),
        regex: regex.map(Into::into),
        model: model.map(Into::into),
    };
    let matcher = RouteMatch {
        regex: "(".into(),
        headers: vec![header("bad name", "x", false), header("x-ok", "[", true)],
        query_parameters: vec![
            QueryParameterMatcher {
                name: String::new(),
                value: "1".into(),
                regex: false,
            },
            QueryParameterMatcher {
                name: "q".into(),
                value: "*".into(),
                regex: true,
            },
        ],
        variables: vec![
            variable("x-ok", Some("+"), None),
            variable("x-ok", None, Some("xor")),
            variable("request_arg_", None, None),
            variable("bad\nname", None, None),
        ],
        dsl_expressions: Some(json!(["1 == 1"])),
        ..Default::default()
    };
    let errs = one_route(forward(matcher, "a"));
    let m = format!("{R0}.match");
    assert_eq!(errs.len(), 10, "{errs:#?}");
    assert_error(&errs, &format!("{m}.regex"), "invalid regex \"(\"");
    assert_error(
        &errs,
        &format!("{m}.headers[0].name"),
        "invalid header name \"bad name\"",
    );
    assert_error(&errs, &format!("{m}.headers[1].value"), "invalid regex");
    assert_error(&errs, &format!("{m}.query_parameters[0].name"), "empty");
    assert_error(
        &errs,
        &format!("{m}.query_parameters[1].value"),
        "invalid regex",
    );
    assert_error(&errs, &format!("{m}.variables[0].regex"), "invalid regex");
    assert_error(
        &errs,
        &format!("{m}.variables[1].model"),
        "unknown model \"xor\"",
    );
    assert_error(&errs, &format!("{m}.variables[2].name"), "names nothing");
    assert_error(
        &errs,
        &format!("{m}.variables[3].name"),
        "invalid header name",
    );
    assert_error(&errs, &format!("{m}.dsl_expressions"), "not supported");
}

#[test]
fn an_unbalanced_regex_is_not_rescued_by_anchoring() {
    let matcher = RouteMatch {
        regex: "a)|(b".into(),
        ..Default::default()
    };
    let errs = one_route(forward(matcher, "a"));
    assert_error(&errs, &format!("{R0}.match.regex"), "invalid regex");
}

#[test]
fn errors_in_cluster_choice() {
    fn weighted(name: &str, weight: u32) -> WeightedCluster {
        WeightedCluster {
            name: name.into(),
            weight,
            metadata_match: BTreeMap::new(),
        }
    }
    fn action(edit: impl FnOnce(&mut RouteActionConfig)) -> Route {
        let mut route = forward(prefix("/"), "");
        edit(&mut route.route);
        route
    }
    let errs = errors(vec![vhost(
        &["*"],
        vec![
            action(|a| a.weighted_clusters = vec![weighted("a", 0), weighted("", 0)]),
            action(|_| {}),
            action(|a| a.cluster_header = "bad header".into()),
            action(|a| a.cluster_variable = "cookie_".into()),
            action(|a| a.cluster_variable = "x-mosn-path".into()),
        ],
    )]);
    let at = |i: usize| format!("routers[0].virtual_hosts[0].routers[{i}].route");
    assert_error(
        &errs,
        &format!("{}.weighted_clusters", at(0)),
        "weights sum to 0",
    );
    assert_error(
        &errs,
        &format!("{}.weighted_clusters[1].cluster.name", at(0)),
        "required",
    );
    assert_error(&errs, &at(1), "route has no cluster_name");
    assert_error(
        &errs,
        &format!("{}.cluster_header", at(2)),
        "invalid header name",
    );
    assert_error(
        &errs,
        &format!("{}.cluster_variable", at(3)),
        "names nothing",
    );
    assert_error(
        &errs,
        &format!("{}.cluster_variable", at(4)),
        "not known when the cluster is chosen",
    );
    assert_eq!(errs.len(), 6, "{errs:#?}");
    let fine = action(|a| a.weighted_clusters = vec![weighted("a", 0), weighted("b", 1)]);
    assert!(one_route(fine).is_empty());
}

#[test]
fn errors_in_actions() {
    let mut route = forward(prefix("/"), "a");
    route.route.retry_policy = Some(RetryConfig {
        retry_on: true,
        status_codes: vec![503, 99, 600],
        ..Default::default()
    });
    route.route.prefix_rewrite = "/a b".into();
    route.route.host_rewrite = "bad host".into();
    route.mirror_policies = vec![
        RequestMirrorPolicy {
            cluster: String::new(),
            percent: 10,
        },
        RequestMirrorPolicy {
            cluster: "m".into(),
            percent: 101,
        },
    ];
    let errs = one_route(route);
    let ra = format!("{R0}.route");
    assert_eq!(errs.len(), 6, "{errs:#?}");
    assert_error(
        &errs,
        &format!("{ra}.retry_policy.status_codes[1]"),
        "status 99 out of range 100..=599",
    );
    assert_error(
        &errs,
        &format!("{ra}.retry_policy.status_codes[2]"),
        "status 600",
    );
    assert_error(&errs, &format!("{ra}.prefix_rewrite"), "invalid path");
    assert_error(&errs, &format!("{ra}.host_rewrite"), "invalid host");
    assert_error(
        &errs,
        &format!("{R0}.request_mirror_policies[0].cluster"),
        "required",
    );
    assert_error(
        &errs,
        &format!("{R0}.request_mirror_policies[1].percent"),
        "out of range 0..=100",
    );

    let mut route = forward(prefix("/"), "a");
    route.route.regex_rewrite = Some(RegexRewrite {
        pattern: "(".into(),
        substitution: "x".into(),
    });
    route.route.auto_host_rewrite_header = "bad header".into();
    let errs = one_route(route);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_error(
        &errs,
        &format!("{ra}.regex_rewrite.pattern.regex"),
        "invalid regex",
    );
    assert_error(
        &errs,
        &format!("{ra}.auto_host_rewrite_header"),
        "invalid header name",
    );

    let mut route = forward(prefix("/"), "a");
    route.route.regex_rewrite = Some(RegexRewrite::default());
    assert_error(
        &one_route(route),
        &format!("{ra}.regex_rewrite.pattern.regex"),
        "empty",
    );
}

#[test]
fn errors_in_redirect_and_direct_response() {
    let mut redirect = forward(prefix("/"), "");
    redirect.redirect = Some(RedirectAction {
        response_code: 200,
        path_redirect: "relative".into(),
        host_redirect: "bad host".into(),
        scheme_redirect: "1http".into(),
    });
    let mut direct = forward(prefix("/"), "");
    direct.direct_response = Some(DirectResponseAction {
        status: 99,
        body: String::new(),
    });
    let errs = errors(vec![vhost(&["*"], vec![redirect, direct])]);
    let rd = format!("{R0}.redirect");
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert_error(
        &errs,
        &format!("{rd}.response_code"),
        "200 is not one of 301, 302, 303, 307, 308",
    );
    assert_error(&errs, &format!("{rd}.path_redirect"), "must start with '/'");
    assert_error(&errs, &format!("{rd}.host_redirect"), "invalid host");
    assert_error(
        &errs,
        &format!("{rd}.scheme_redirect"),
        "invalid scheme \"1http\"",
    );
    assert_error(
        &errs,
        "routers[0].virtual_hosts[0].routers[1].direct_response.status",
        "status 99",
    );
}

#[test]
fn errors_in_header_edits_at_every_level() {
    let mut route = forward(prefix("/"), "a");
    route.route.response_headers_to_add = vec![hvo("x-ok", "line\nbreak")];
    let mut vh = vhost(&["*"], vec![route]);
    vh.request_headers_to_remove = vec!["bad name".into()];
    let errs = errors_of(Router {
        name: "r".into(),
        virtual_hosts: vec![vh],
        request_headers_to_add: vec![hvo("", "v"), hvo("x-fine", "v")],
        ..Default::default()
    });
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_error(
        &errs,
        "routers[0].request_headers_to_add[0].header.key",
        "invalid header name \"\"",
    );
    assert_error(
        &errs,
        "routers[0].virtual_hosts[0].request_headers_to_remove[0]",
        "invalid header name",
    );
    assert_error(
        &errs,
        &format!("{R0}.route.response_headers_to_add[0].header.value"),
        "invalid header value",
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let regex = RouteMatch {
        regex: "(".into(),
        ..Default::default()
    };
    let mut bad = forward(regex, "");
    bad.route.weighted_clusters = vec![WeightedCluster::default()];
    let errs = errors(vec![vhost(&["*"], vec![bad]), vhost(&["*"], vec![])]);
    // regex, weighted cluster name, weights sum to 0, second default virtual host
    assert_eq!(errs.len(), 4, "{errs:#?}");
}

// === untrusted input ===

#[test]
fn random_requests_never_panic() {
    let table = load(json!({
        "request_headers_to_add": [{"header": {"key": "x-r", "value": "1"}}],
        "virtual_hosts": [
            {"name": "w", "domains": ["*.foo.com", "foo.com:80"], "routers": [
                {"match": {"prefix": "/é", "case_sensitive": false}, "route": {"cluster_name": "a", "prefix_rewrite": "/x"}},
                {"match": {"regex": ".*a.*"}, "route": {"cluster_name": "a",
                    "regex_rewrite": {"pattern": {"regex": "a"}, "substitution": "\u{1}$1"}, "auto_host_rewrite": true}},
                {"match": {"prefix": "/"}, "redirect": {"path_redirect": "/r"}}
            ]},
            {"name": "d", "domains": ["*"], "routers": [
                {"match": {"variables": [{"name": "cookie_c", "regex": "."}, {"name": "request_arg_q", "value": "v", "model": "or"}]},
                    "route": {"cluster_header": "x-c", "auto_host_rewrite_header": "x-h"}},
                {"match": {"query_parameters": [{"name": "q"}], "headers": [{"name": "x", "value": ".*"}]},
                    "route": {"weighted_clusters": [{"cluster": {"name": "a", "weight": 1}}, {"cluster": {"name": "b", "weight": 2}}]}},
                {"match": {}, "route": {"cluster_name": "b", "prefix_rewrite": "/p"}}
            ]}
        ]
    }));
    fn text(rng: &mut SmallRng) -> String {
        let len = rng.gen_range(0..24);
        let alphabet = b"/?&=%+;:. aAe\x00\x01\x7f[]*cqvx";
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.gen_bool(0.2) {
                    rng.gen()
                } else {
                    alphabet[rng.gen_range(0..alphabet.len())]
                }
            })
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    let mut rng = SmallRng::seed_from_u64(42);
    let method = Method::GET;
    for _ in 0..20_000 {
        let (authority, path, query) = (text(&mut rng), text(&mut rng), text(&mut rng));
        let mut headers = HeaderMap::new();
        for name in ["cookie", "x", "x-c", "x-h", "host"] {
            let raw: Vec<u8> = (0..rng.gen_range(0..12)).map(|_| rng.gen()).collect();
            if let Ok(v) = HeaderValue::from_bytes(&raw) {
                headers.append(name, v);
            }
        }
        let i = RouteInput {
            authority: rng.gen_bool(0.8).then_some(authority.as_str()),
            path: &path,
            query: rng.gen_bool(0.5).then_some(query.as_str()),
            method: &method,
            headers: &headers,
            scheme: "http",
        };
        let Some(h) = table.find(&i) else { continue };
        let route = h.route();
        let _ = route
            .forward()
            .map(|f| f.pick_cluster(&headers, rng.gen()).is_some());
        let _ = route.redirect_location(&i);
        let mut p = get("/", &[]);
        if let Ok(uri) = format!("{path}?{query}").parse() {
            p.uri = uri;
        }
        p.headers = headers.clone();
        route.rewrite_request(&mut p, Some(&authority));
        route.apply_response_headers(&mut headers);
    }
}

/// A table whose routes match on headers only finds the same route for any path, and says
/// so; a path matcher or a condition on the path or query reads it.
#[test]
fn reads_path_only_when_a_route_looks_at_it() {
    let header = json!({"headers": [{"name": "service", "value": "s"}]});
    let t = routes(json!([{"match": header, "route": {"cluster_name": "a"}}]));
    assert!(!t.reads_path());
    let svc = [("service", "s")];
    for uri in ["/", "/x/y", "/s/m?q=1"] {
        let p = get(uri, &svc);
        assert_eq!(
            t.find(&input(&p)).map(|h| h.route().key()),
            Some(0),
            "{uri}"
        );
    }
    for m in [
        json!({"prefix": "/"}),
        json!({"path": "/s/m"}),
        json!({"regex": "/s/.*"}),
        json!({"headers": [{"name": "x-mosn-path", "value": "/s/m"}]}),
        json!({"headers": [{"name": "x-mosn-querystring", "value": "q=1"}]}),
        json!({"variables": [{"name": "x-mosn-path", "value": "/s/m"}]}),
    ] {
        let t = routes(json!([
            {"match": header, "route": {"cluster_name": "a"}},
            {"match": m, "route": {"cluster_name": "b"}},
        ]));
        assert!(t.reads_path(), "{m}");
    }
}
