//! The L7 router end to end through the real `mosn` binary: virtual-host domain priority,
//! every match kind, every cluster specifier, rewrites, header edits at three levels,
//! redirects, direct responses and request mirroring.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::http::*;
use serde_json::{json, Value};

fn direct(body: &str) -> Value {
    json!({"status": 200, "body": body})
}

fn one_router_config(router: Value, clusters: Vec<Value>) -> Value {
    config(vec![listener("l7", "Auto", "r")], vec![router], clusters)
}

#[test]
fn virtual_host_domain_priority() {
    let vh = |name: &str, domains: Value| {
        json!({"name": name, "domains": domains,
               "routers": [{"match": {"prefix": "/"}, "direct_response": direct(name)}]})
    };
    let router = json!({"router_config_name": "r", "virtual_hosts": [
        vh("default", json!(["*"])),
        vh("wild-short", json!(["*.example.com"])),
        vh("wild-long", json!(["*.api.example.com"])),
        vh("exact-host", json!(["www.example.com"])),
        vh("exact-port", json!(["www.example.com:8080"])),
        vh("wild-port", json!(["*.example.com:9000"])),
    ]});
    let m = Mosn::start(&one_router_config(router, vec![]));
    for (host, want) in [
        ("www.example.com:8080", "exact-port"),
        ("www.example.com", "exact-host"),
        ("www.example.com:9999", "exact-host"),
        ("WWW.Example.COM", "exact-host"),
        ("v1.api.example.com", "wild-long"),
        ("a.b.api.example.com:81", "wild-long"),
        ("shop.example.com", "wild-short"),
        ("shop.example.com:9000", "wild-port"),
        ("example.com", "default"),
        ("other.org", "default"),
    ] {
        let r = get(m.l7(), "/", &[("Host", host)]);
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.text(), want, "Host: {host}");
    }
    // HTTP/2 :authority is matched the same way.
    let r = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: www.example.com:8080",
        &format!("http://{}/", m.l7()),
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "exact-port");
}

/// Request header pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

#[test]
fn every_match_kind() {
    let d = |name: &str, m: Value| json!({"match": m, "direct_response": direct(name)});
    let router = router(
        "r",
        json!([
            d("path", json!({"path": "/exact"})),
            d(
                "nocase",
                json!({"prefix": "/CaseX", "case_sensitive": false})
            ),
            d("sensitive", json!({"prefix": "/Sensitive"})),
            d("regex", json!({"regex": "/re/[0-9]+"})),
            d(
                "hdr-exact",
                json!({"prefix": "/h", "headers": [{"name": "X-Env", "value": "canary"}]})
            ),
            d(
                "hdr-regex",
                json!({"prefix": "/h", "headers": [{"name": "x-env", "value": "^blue-[0-9]+$", "regex": true}]})
            ),
            d(
                "hdr-any",
                json!({"prefix": "/h", "headers": [{"name": "x-any", "value": ".*"}]})
            ),
            d(
                "hdr-two",
                json!({"prefix": "/h2", "headers": [
                {"name": "x-a", "value": "1"}, {"name": "x-b", "value": "2"}]})
            ),
            d(
                "query",
                json!({"prefix": "/q", "query_parameters": [{"name": "v", "value": "2"}]})
            ),
            d(
                "query-regex",
                json!({"prefix": "/q", "query_parameters": [{"name": "re", "value": "[a-c]+", "regex": true}]})
            ),
            d("default", json!({"prefix": "/"})),
        ]),
    );
    let m = Mosn::start(&one_router_config(router, vec![]));
    let cases: &[(&str, Headers, &str)] = &[
        ("/exact", &[], "path"),
        ("/exact?x=1", &[], "path"),
        ("/exact/more", &[], "default"),
        ("/EXACT", &[], "default"),
        ("/casex/a", &[], "nocase"),
        ("/CASEX", &[], "nocase"),
        ("/Sensitive/a", &[], "sensitive"),
        ("/sensitive/a", &[], "default"),
        ("/re/123", &[], "regex"),
        ("/re/123/x", &[], "default"),
        ("/re/abc", &[], "default"),
        ("/h", &[("x-env", "canary")], "hdr-exact"),
        ("/h", &[("x-env", "Canary")], "default"),
        ("/h", &[("x-env", "blue-42")], "hdr-regex"),
        ("/h", &[("x-env", "blue-x")], "default"),
        ("/h", &[("x-any", "whatever")], "hdr-any"),
        ("/h", &[], "default"),
        ("/h2", &[("x-a", "1"), ("x-b", "2")], "hdr-two"),
        ("/h2", &[("x-a", "1")], "default"),
        ("/q?v=2", &[], "query"),
        ("/q?a=1&v=2", &[], "query"),
        ("/q?v=3", &[], "default"),
        ("/q?re=abcab", &[], "query-regex"),
        ("/q?re=abd", &[], "default"),
        ("/q", &[], "default"),
    ];
    for (path, headers, want) in cases {
        let r = get(m.l7(), path, headers);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), *want, "{path} {headers:?}");
    }
}

#[test]
fn cluster_header_and_weighted_clusters() {
    let (a, b) = (Upstream::echo("a"), Upstream::echo("b"));
    let router = router(
        "r",
        json!([
            {"match": {"prefix": "/by-header"}, "route": {"cluster_header": "x-target"}},
            {"match": {"prefix": "/weighted"}, "route": {"weighted_clusters": [
                {"cluster": {"name": "a", "weight": 80}},
                {"cluster": {"name": "b", "weight": 20}}]}},
        ]),
    );
    let m = Mosn::start(&one_router_config(
        router,
        vec![cluster("a", &[a.addr]), cluster("b", &[b.addr])],
    ));
    let r = get(m.l7(), "/by-header", &[("x-target", "b")]);
    assert_eq!(r.header("x-upstream"), Some("b"));
    let r = get(m.l7(), "/by-header", &[("x-target", "a")]);
    assert_eq!(r.header("x-upstream"), Some("a"));
    // Named cluster unknown: 503 NC; header absent: no cluster either.
    let r = get(m.l7(), "/by-header/x", &[("x-target", "nope")]);
    assert_eq!(r.status, 503);
    m.log_for("/by-header/x").expect(503, &["NC"]);
    let r = get(m.l7(), "/by-header/none", &[]);
    assert_eq!(r.status, 503);
    m.log_for("/by-header/none").expect(503, &["NC"]);

    // 200 requests over keep-alive: about 80/20 (binomial sd ~5.7; bounds are > 6 sd).
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut c = Raw::connect(m.l7());
    for _ in 0..200 {
        c.send(b"GET /weighted HTTP/1.1\r\nHost: w\r\n\r\n");
        let r = c.response().expect("response");
        assert_eq!(r.status, 200);
        *counts
            .entry(r.header("x-upstream").unwrap().to_string())
            .or_default() += 1;
    }
    let (na, nb) = (counts["a"], counts["b"]);
    assert_eq!(na + nb, 200);
    assert!((125..=195).contains(&na), "a got {na} of 200 (weight 80%)");
    let logs = m.logs_for("/weighted", 200);
    let by_cluster = logs.iter().filter(|l| l.get("cluster") == "b").count();
    assert_eq!(by_cluster, nb, "the access log names the weighted cluster");
}

#[test]
fn rewrites_prefix_regex_host_and_auto_host() {
    let up = Upstream::echo("rw");
    let router = router(
        "r",
        json!([
            {"match": {"prefix": "/api/"}, "route": {"cluster_name": "up", "prefix_rewrite": "/v2/"}},
            {"match": {"prefix": "/svc/"}, "route": {"cluster_name": "up",
                "regex_rewrite": {"pattern": {"regex": "^/svc/([^/]+)/(.*)$"}, "substitution": "/$2/of/$1"}}},
            {"match": {"prefix": "/host"}, "route": {"cluster_name": "up", "host_rewrite": "rewritten.example:81"}},
            {"match": {"prefix": "/auto"}, "route": {"cluster_name": "named", "auto_host_rewrite": true}},
            {"match": {"prefix": "/from-header"}, "route": {"cluster_name": "up", "auto_host_rewrite_header": "x-new-host"}},
        ]),
    );
    let mut named = cluster("named", &[up.addr]);
    named["hosts"][0]["hostname"] = json!("backend.internal");
    let m = Mosn::start(&one_router_config(
        router,
        vec![cluster("up", &[up.addr]), named],
    ));

    get(m.l7(), "/api/users?id=7", &[("Host", "orig.example")]);
    let s = up.last();
    assert_eq!(s.path(), "/v2/users?id=7");
    assert_eq!(s.host().as_deref(), Some("orig.example"));

    get(m.l7(), "/svc/billing/invoices/3?x=y", &[]);
    assert_eq!(up.last().path(), "/invoices/3/of/billing?x=y");

    get(m.l7(), "/host/p", &[("Host", "orig.example")]);
    let s = up.last();
    assert_eq!(s.host().as_deref(), Some("rewritten.example:81"));
    assert_eq!(s.path(), "/host/p");

    get(m.l7(), "/auto", &[("Host", "orig.example")]);
    assert_eq!(up.last().host().as_deref(), Some("backend.internal"));

    get(
        m.l7(),
        "/from-header",
        &[("Host", "orig.example"), ("x-new-host", "hdr.example")],
    );
    assert_eq!(up.last().host().as_deref(), Some("hdr.example"));

    // Over HTTP/2 the rewrite lands in :authority.
    let r = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/host/h2", m.l7()),
    ]);
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(s.version, hyper::Version::HTTP_2);
    assert_eq!(
        s.uri.authority().map(|a| a.as_str()),
        Some("rewritten.example:81")
    );
}

#[test]
fn header_edits_at_router_vhost_and_route_level() {
    let up = Upstream::with(
        "hdr",
        std::sync::Arc::new(|s: &Seen, _| {
            Reply::echo("hdr", s)
                .header("x-up-secret", "hidden")
                .header("x-level", "upstream")
        }),
    );
    let add = |k: &str, v: &str, append: bool| json!({"header": {"key": k, "value": v}, "append": append});
    let router = json!({
        "router_config_name": "r",
        "request_headers_to_add": [add("x-router", "r", false), add("x-level", "router", false)],
        "request_headers_to_remove": ["x-drop-router"],
        "response_headers_to_add": [add("x-resp-router", "r", false), add("x-resp-level", "router", false)],
        "response_headers_to_remove": ["x-up-secret"],
        "virtual_hosts": [{
            "name": "vh", "domains": ["*"],
            "request_headers_to_add": [add("x-vhost", "v", false), add("x-level", "vhost", false)],
            "request_headers_to_remove": ["x-drop-vhost"],
            "response_headers_to_add": [add("x-resp-vhost", "v", false), add("x-resp-level", "vhost", false)],
            "routers": [
                {"match": {"prefix": "/edit"}, "route": {
                    "cluster_name": "up",
                    "request_headers_to_add": [add("x-route", "rt", false), add("x-level", "route", false),
                                               add("x-multi", "added", true)],
                    "request_headers_to_remove": ["x-drop-route"],
                    "response_headers_to_add": [add("x-resp-route", "rt", false), add("x-resp-level", "route", false)],
                    "response_headers_to_remove": ["x-level"]
                }},
                {"match": {"prefix": "/direct"}, "direct_response": {"status": 202, "body": "d"}}
            ]
        }]
    });
    let m = Mosn::start(&one_router_config(router, vec![cluster("up", &[up.addr])]));
    let r = get(
        m.l7(),
        "/edit",
        &[
            ("x-drop-router", "1"),
            ("x-drop-vhost", "1"),
            ("x-drop-route", "1"),
            ("x-level", "client"),
            ("x-multi", "client"),
            ("x-kept", "yes"),
        ],
    );
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(s.header("x-router"), Some("r"));
    assert_eq!(s.header("x-vhost"), Some("v"));
    assert_eq!(s.header("x-route"), Some("rt"));
    assert_eq!(s.header_all("x-level"), vec!["route"], "most specific wins");
    assert_eq!(
        s.header_all("x-multi"),
        vec!["client", "added"],
        "append keeps"
    );
    assert_eq!(s.header("x-kept"), Some("yes"));
    for gone in ["x-drop-router", "x-drop-vhost", "x-drop-route"] {
        assert_eq!(s.header(gone), None, "{gone} was not removed");
    }
    assert_eq!(r.header("x-resp-router"), Some("r"));
    assert_eq!(r.header("x-resp-vhost"), Some("v"));
    assert_eq!(r.header("x-resp-route"), Some("rt"));
    assert_eq!(r.header_all("x-resp-level"), vec!["route"]);
    assert_eq!(
        r.header("x-up-secret"),
        None,
        "router-level response removal"
    );
    assert_eq!(r.header("x-level"), None, "route-level response removal");
    assert_eq!(r.header("x-upstream"), Some("hdr"));
    // Response edits apply to direct responses too.
    let r = get(m.l7(), "/direct", &[]);
    assert_eq!((r.status, r.text().as_str()), (202, "d"));
    assert_eq!(r.header("x-resp-route"), None);
    assert_eq!(r.header("x-resp-vhost"), Some("v"));
}

#[test]
fn redirect_and_direct_response() {
    let router = router(
        "r",
        json!([
            {"match": {"prefix": "/old"}, "redirect": {"path_redirect": "/new", "response_code": 302}},
            {"match": {"prefix": "/moved"}, "redirect": {"host_redirect": "other.example", "scheme_redirect": "https"}},
            {"match": {"prefix": "/perm"}, "redirect": {"path_redirect": "/elsewhere?fixed=1", "response_code": 308}},
            {"match": {"path": "/teapot"}, "direct_response": {"status": 418, "body": "short and stout"}},
            {"match": {"path": "/empty"}, "direct_response": {"status": 204}},
        ]),
    );
    let m = Mosn::start(&one_router_config(router, vec![]));
    let r = get(m.l7(), "/old?q=1", &[("Host", "site.example")]);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://site.example/new?q=1"));
    let r = get(m.l7(), "/moved/x", &[("Host", "site.example")]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://other.example/moved/x"));
    let r = get(m.l7(), "/perm?q=1", &[("Host", "site.example")]);
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("http://site.example/elsewhere?fixed=1")
    );
    let r = get(m.l7(), "/teapot", &[]);
    assert_eq!((r.status, r.text().as_str()), (418, "short and stout"));
    let r = get(m.l7(), "/empty", &[]);
    assert_eq!(r.status, 204);
    // Over HTTP/2 too.
    let r = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/teapot", m.l7()),
    ]);
    assert_eq!((r.status, r.text().as_str()), (418, "short and stout"));
    // No route at all: 404 NR.
    let router2 = json!({"router_config_name": "r", "virtual_hosts": [
        {"name": "only", "domains": ["only.example"], "routers": [{"match": {"prefix": "/"}, "direct_response": direct("x")}]}]});
    let m2 = Mosn::start(&one_router_config(router2, vec![]));
    let r = get(m2.l7(), "/nowhere", &[("Host", "else.example")]);
    assert_eq!(r.status, 404);
    m2.log_for("/nowhere").expect(404, &["NR"]);
    m.log_for("/teapot").expect(418, &["LR"]);
}

#[test]
fn mirror_upstream_receives_a_copy() {
    let main = Upstream::echo("main");
    let shadow = Upstream::with(
        "shadow",
        std::sync::Arc::new(|_: &Seen, _| Reply::status(500).after(Duration::from_millis(50))),
    );
    let router = router(
        "r",
        json!([{"match": {"prefix": "/"}, "route": {"cluster_name": "main"},
                "request_mirror_policies": {"cluster": "shadow", "percent": 100}}]),
    );
    let m = Mosn::start(&one_router_config(
        router,
        vec![
            cluster("main", &[main.addr]),
            cluster("shadow", &[shadow.addr]),
        ],
    ));
    for i in 0..3 {
        let body = format!("copy me {i}");
        let r = request(
            m.l7(),
            "POST",
            &format!("/mirror/{i}?k=v"),
            &[("Host", "m.example"), ("x-id", &i.to_string())],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "the mirror's answer does not matter");
        assert_eq!(r.text(), body);
        assert_eq!(r.header("x-upstream"), Some("main"));
    }
    let copies = shadow.wait_requests(3, Duration::from_secs(10));
    let mut paths: Vec<String> = copies.iter().map(|s| s.path()).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec!["/mirror/0?k=v", "/mirror/1?k=v", "/mirror/2?k=v"]
    );
    for c in &copies {
        let i = c.header("x-id").unwrap();
        assert_eq!(c.method, "POST");
        assert_eq!(c.body.as_ref(), format!("copy me {i}").as_bytes());
        assert_eq!(c.host().as_deref(), Some("m.example"));
    }
    assert_eq!(main.count(), 3);
}

#[test]
fn legacy_connection_manager_router_and_proxy_upstream_protocol() {
    let up = Upstream::echo("legacy");
    let cfg = json!({
        "servers": [{
            "default_log_path": "stderr", "processor": 1,
            "listeners": [{
                "name": "l7", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [
                    {"type": "proxy", "config": {"downstream_protocol": "Http1",
                        "upstream_protocol": "Http2", "router_config_name": "legacy"}},
                    {"type": "connection_manager", "config": {"router_config_name": "legacy",
                        "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                            {"match": {"prefix": "/legacy"}, "route": {"cluster_name": "up"}}]}]}}
                ]}]
            }]
        }],
        "cluster_manager": {"clusters": [cluster("up", &[up.addr])]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    });
    let m = Mosn::start(&cfg);
    let r = get(m.l7(), "/legacy/x", &[("Host", "old.example")]);
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(
        s.version,
        hyper::Version::HTTP_2,
        "the proxy's upstream_protocol"
    );
    assert_eq!(s.uri.authority().map(|a| a.as_str()), Some("old.example"));
    assert_eq!(get(m.l7(), "/other", &[]).status, 404);
}

#[test]
fn metadata_match_picks_the_host_subset() {
    let (v1, v2a, v2b) = (
        Upstream::echo("v1"),
        Upstream::echo("v2a"),
        Upstream::echo("v2b"),
    );
    let host = |u: &Upstream, version: &str| {
        json!({"address": u.addr.to_string(),
               "metadata": {"filter_metadata": {"mosn.lb": {"version": version}}}})
    };
    let subset = |policy: u8| {
        json!({"name": format!("svc{policy}"), "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
               "lb_subset_config": {"fall_back_policy": policy,
                                     "default_subset": {"version": "v1"},
                                     "subset_selectors": [["version"]]},
               "hosts": [host(&v1, "v1"), host(&v2a, "v2"), host(&v2b, "v2")]})
    };
    let meta = |v: &str| json!({"filter_metadata": {"mosn.lb": {"version": v}}});
    let router = router(
        "r",
        json!([
            {"match": {"prefix": "/v2"}, "route": {"cluster_name": "svc0", "metadata_match": meta("v2")}},
            {"match": {"prefix": "/none"}, "route": {"cluster_name": "svc0", "metadata_match": meta("v9")}},
            {"match": {"prefix": "/default"}, "route": {"cluster_name": "svc2", "metadata_match": meta("v9")}},
            {"match": {"prefix": "/weighted"}, "route": {"weighted_clusters": [
                {"cluster": {"name": "svc0", "weight": 100, "metadata_match": meta("v1")}}]}}
        ]),
    );
    let m = Mosn::start(&one_router_config(router, vec![subset(0), subset(2)]));
    for _ in 0..6 {
        assert_eq!(get(m.l7(), "/v2", &[]).status, 200);
    }
    assert_eq!(v1.count(), 0, "v1 is outside the v2 subset");
    assert_eq!(
        (v2a.count(), v2b.count()),
        (3, 3),
        "round robin within the subset"
    );
    // NO_FALLBACK: nothing matches v9 -> no healthy upstream.
    let r = get(m.l7(), "/none", &[]);
    assert_eq!(r.status, 503);
    m.log_for("/none").expect(503, &["UH"]);
    // DEFAULT_SUBSET: v9 falls back to version v1.
    assert_eq!(get(m.l7(), "/default", &[]).status, 200);
    assert_eq!(v1.count(), 1);
    // A weighted cluster entry's own metadata_match.
    assert_eq!(get(m.l7(), "/weighted", &[]).status, 200);
    assert_eq!(v1.count(), 2);
}
