//! Stream filters end to end through the real `mosn` binary: fault (abort and delay),
//! ip_access, local_rate_limit, transcoder, and per-route filter config overriding the
//! listener's; each checked in the access log.

mod common;

use std::time::{Duration, Instant};

use common::http::*;
use serde_json::{json, Value};

fn with_filters(filters: Value, routes: Value, hosts: &[std::net::SocketAddr]) -> Mosn {
    let mut l = listener("l7", "Auto", "r");
    l["stream_filters"] = filters;
    Mosn::start(&config(
        vec![l],
        vec![router("r", routes)],
        vec![cluster("up", hosts)],
    ))
}

#[test]
fn fault_abort_and_delay() {
    let up = Upstream::echo("f");
    let m = with_filters(
        json!([{"type": "fault", "config": {
            "abort": {"status": 418, "percentage": 100},
            "headers": [{"name": "x-fault", "value": "abort"}]}},
               {"type": "fault", "config": {
            "delay": {"fixed_delay": "1s", "percentage": 100},
            "headers": [{"name": "x-fault", "value": "delay"}]}}]),
        json!([
            {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}},
        ]),
        &[up.addr],
    );
    let r = get(m.l7(), "/abort", &[("x-fault", "abort")]);
    assert_eq!(r.status, 418);
    m.log_for("/abort").expect(418, &["FI"]);
    assert_eq!(
        up.count(),
        0,
        "an aborted request never reaches the upstream"
    );

    let start = Instant::now();
    let r = get(m.l7(), "/delay", &[("x-fault", "delay")]);
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("f"));
    assert!(
        took >= Duration::from_millis(950),
        "delay not applied: {took:?}"
    );
    let l = m.log_for("/delay");
    l.expect(200, &["DI"]);

    // Not matching the header: untouched.
    let r = get(m.l7(), "/plain", &[("x-fault", "other")]);
    assert_eq!(r.status, 200);
    assert_eq!(m.log_for("/plain").get("flags"), "-");
    // HTTP/2 downstream too.
    let r = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "x-fault: abort",
        &format!("http://{}/abort-h2", m.l7()),
    ]);
    assert_eq!(r.status, 418);
    m.log_for("/abort-h2").expect(418, &["FI"]);
}

#[test]
fn ip_access_denies_with_403() {
    let up = Upstream::echo("ip");
    let deny = with_filters(
        json!([{"type": "ip_access", "config": {
            "default_action": "allow",
            "header": "x-real-ip",
            "ips": [{"action": "deny", "addrs": ["127.0.0.0/8", "10.9.9.9"]}]}}]),
        json!([{"match": {"prefix": "/"}, "route": {"cluster_name": "up"}}]),
        &[up.addr],
    );
    let r = get(deny.l7(), "/from-loopback", &[]);
    assert_eq!(r.status, 403);
    deny.log_for("/from-loopback").expect(403, &["DENY"]);
    let r = get(deny.l7(), "/from-header", &[("x-real-ip", "10.9.9.9")]);
    assert_eq!(r.status, 403);
    let r = get(deny.l7(), "/allowed", &[("x-real-ip", "192.0.2.7")]);
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);

    let allow_only = with_filters(
        json!([{"type": "ip_access", "config": {
            "default_action": "deny",
            "ips": [{"action": "allow", "addrs": ["127.0.0.1"]}]}}]),
        json!([{"match": {"prefix": "/"}, "route": {"cluster_name": "up"}}]),
        &[up.addr],
    );
    let r = get(allow_only.l7(), "/loopback-allowed", &[]);
    assert_eq!(r.status, 200);
}

#[test]
fn local_rate_limit_429_after_the_bucket_empties() {
    let up = Upstream::echo("rl");
    let m = with_filters(
        json!([{"type": "local_rate_limit", "config": {
            "max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "1h"}}]),
        json!([
            {"match": {"prefix": "/own"}, "route": {"cluster_name": "up"},
             "per_filter_config": {"local_rate_limit": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "1h"}}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}},
        ]),
        &[up.addr],
    );
    let mut c = Raw::connect(m.l7());
    let mut codes = Vec::new();
    for _ in 0..6 {
        c.send(b"GET /limited HTTP/1.1\r\nHost: x\r\n\r\n");
        codes.push(c.response().expect("response").status);
    }
    assert_eq!(codes, vec![200, 200, 200, 429, 429, 429]);
    let logs = m.logs_for("/limited", 6);
    for l in &logs[3..] {
        l.expect(429, &["RL"]);
    }
    assert_eq!(up.count(), 3);
    // The route with its own bucket is limited separately.
    assert_eq!(get(m.l7(), "/own", &[]).status, 200);
    assert_eq!(get(m.l7(), "/own", &[]).status, 429);
}

#[test]
fn transcoder_sets_the_upstream_protocol() {
    let up = Upstream::echo("tc");
    let m = with_filters(
        json!([{"type": "transcoder", "config": {"rules": [
            {"macther_config": {"headers": [{"name": "x-up-proto", "value": "h2"}]},
             "rule_info": {"upstream_protocol": "Http2"}}]}}]),
        json!([{"match": {"prefix": "/"}, "route": {"cluster_name": "up"}}]),
        &[up.addr],
    );
    let r = request(m.l7(), "POST", "/tc/h2", &[("x-up-proto", "h2")], b"to h2");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "to h2");
    let s = up.last();
    assert_eq!(s.version, hyper::Version::HTTP_2);
    assert_eq!(s.body.as_ref(), b"to h2");
    let r = get(m.l7(), "/tc/h1", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(up.last().version, hyper::Version::HTTP_11);
}

#[test]
fn per_route_filter_config_overrides_the_listener() {
    let up = Upstream::echo("ov");
    let m = with_filters(
        json!([{"type": "fault", "config": {"abort": {"status": 500, "percentage": 100}}}]),
        json!([
            {"match": {"prefix": "/safe"}, "route": {"cluster_name": "up"},
             "per_filter_config": {"fault": {"abort": {"status": 500, "percentage": 0}}}},
            {"match": {"prefix": "/other-status"}, "route": {"cluster_name": "up"},
             "per_filter_config": {"fault": {"abort": {"status": 503, "percentage": 100}}}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}},
        ]),
        &[up.addr],
    );
    assert_eq!(get(m.l7(), "/anything", &[]).status, 500);
    m.log_for("/anything").expect(500, &["FI"]);
    let r = get(m.l7(), "/safe", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("ov"));
    assert_eq!(get(m.l7(), "/other-status", &[]).status, 503);
    m.log_for("/other-status").expect(503, &["FI"]);
    assert_eq!(up.count(), 1);
}
