//! Chain and registry tests, and the request harness the filter tests share.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::*;

/// A request head with these headers.
pub(crate) fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// Owns what a [`RequestCtx`] borrows. The connection is 127.0.0.1:40000 -> 127.0.0.1:2045.
pub(crate) struct Harness<'a> {
    pub parts: http::request::Parts,
    pub upstream_protocol: Option<String>,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub cluster: Option<&'a str>,
    pub overrides: Option<&'a RouteOverrides>,
}

impl<'a> Harness<'a> {
    pub(crate) fn new(parts: http::request::Parts) -> Harness<'a> {
        Harness {
            parts,
            upstream_protocol: None,
            remote: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:2045".parse().unwrap(),
            cluster: None,
            overrides: None,
        }
    }

    pub(crate) fn ctx(&mut self) -> RequestCtx<'_> {
        let mut ctx = RequestCtx::new(
            &mut self.parts,
            self.remote,
            self.local,
            "test_listener",
            "Http1",
            &mut self.upstream_protocol,
        );
        ctx.cluster = self.cluster;
        ctx.route_overrides = self.overrides;
        ctx
    }

    pub(crate) fn run(&mut self, f: &dyn StreamFilter) -> Verdict {
        f.on_request(&mut self.ctx())
    }

    pub(crate) fn run_chain(
        &mut self,
        chain: &FilterChain,
        phase: Phase,
        from: usize,
    ) -> ChainVerdict {
        chain.run_request_from(phase, from, &mut self.ctx())
    }
}

type Log = Arc<Mutex<Vec<String>>>;

/// Records every hook call; answers `verdict` on the request path.
#[derive(Debug)]
struct Probe {
    name: &'static str,
    phase: Phase,
    verdict: Verdict,
    response_verdict: Verdict,
    log: Log,
}

impl Probe {
    fn new(name: &'static str, phase: Phase, log: &Log) -> Probe {
        Probe {
            name,
            phase,
            verdict: Verdict::Continue,
            response_verdict: Verdict::Continue,
            log: log.clone(),
        }
    }

    fn answering(mut self, verdict: Verdict) -> Probe {
        self.verdict = verdict;
        self
    }

    fn record(&self, what: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}:{what}", self.name));
    }
}

impl StreamFilter for Probe {
    fn name(&self) -> &'static str {
        self.name
    }
    fn phase(&self) -> Phase {
        self.phase
    }
    fn on_request(&self, _ctx: &mut RequestCtx<'_>) -> Verdict {
        self.record("req");
        self.verdict.clone()
    }
    fn on_request_data(&self, _r: RequestView<'_>, so_far: u64, chunk: usize) -> Verdict {
        self.record(&format!("data{so_far}/{chunk}"));
        Verdict::Continue
    }
    fn on_response(&self, ctx: &mut ResponseCtx<'_>) -> Verdict {
        self.record("resp");
        ctx.head
            .headers
            .append("x-probe", http::HeaderValue::from_static(self.name));
        self.response_verdict.clone()
    }
    fn on_log(&self, record: &LogRecord<'_>) {
        self.record(&format!("log{}", record.status.map_or(0, |s| s.as_u16())));
    }
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

fn teapot() -> LocalReply {
    LocalReply::new(StatusCode::IM_A_TEAPOT, ResponseFlags::NONE)
}

#[test]
fn phases_run_their_own_filters_in_config_order() {
    let log = Log::default();
    let mut chain = FilterChain::new();
    chain.push_filter(Arc::new(Probe::new("a1", Phase::AfterRoute, &log)));
    chain.push_filter(Arc::new(Probe::new("b1", Phase::BeforeRoute, &log)));
    chain.push_filter(Arc::new(Probe::new("h1", Phase::AfterChooseHost, &log)));
    chain.push_filter(Arc::new(Probe::new("b2", Phase::BeforeRoute, &log)));
    chain.push_filter(Arc::new(Probe::new("a2", Phase::AfterRoute, &log)));
    assert_eq!(chain.len(), 5);
    assert_eq!(
        chain.names().collect::<Vec<_>>(),
        ["a1", "b1", "h1", "b2", "a2"]
    );

    let mut h = Harness::new(request("GET", "/", &[]));
    for phase in Phase::ALL {
        let v = h.run_chain(&chain, phase, 0);
        assert_eq!(v.verdict, Verdict::Continue);
        assert_eq!(v.resume_from, 5);
    }
    assert_eq!(
        take(&log),
        ["b1:req", "b2:req", "a1:req", "a2:req", "h1:req"]
    );

    let empty = FilterChain::new();
    assert!(empty.is_empty() && !empty.has_phase(Phase::BeforeRoute));
    assert!(chain.has_phase(Phase::AfterChooseHost));
    assert_eq!(
        h.run_chain(&empty, Phase::AfterRoute, 0).verdict,
        Verdict::Continue
    );
}

#[test]
fn first_reply_stops_the_phase() {
    let log = Log::default();
    let mut chain = FilterChain::new();
    chain.push_filter(Arc::new(Probe::new("p0", Phase::BeforeRoute, &log)));
    chain.push_filter(Arc::new(
        Probe::new("p1", Phase::BeforeRoute, &log).answering(Verdict::Reply(teapot())),
    ));
    chain.push_filter(Arc::new(Probe::new("p2", Phase::BeforeRoute, &log)));
    let mut h = Harness::new(request("GET", "/", &[]));
    let v = h.run_chain(&chain, Phase::BeforeRoute, 0);
    assert_eq!(v.verdict, Verdict::Reply(teapot()));
    assert_eq!(v.resume_from, 2);
    assert_eq!(take(&log), ["p0:req", "p1:req"]);
}

#[test]
fn delay_without_reply_resumes_after_the_delaying_filter() {
    let log = Log::default();
    let registry = FilterRegistry::with_builtins();
    let mut chain = FilterChain::new();
    chain.push_filter(Arc::new(Probe::new("r0", Phase::AfterRoute, &log)));
    chain.push_filter(Arc::new(Probe::new("b0", Phase::BeforeRoute, &log)));
    chain
        .push(
            &registry,
            "fault",
            &json!({"delay": {"fixed_delay": "20ms", "percentage": 100}}),
        )
        .unwrap();
    chain.push_filter(Arc::new(Probe::new("r1", Phase::AfterRoute, &log)));
    chain.push_filter(Arc::new(Probe::new("r2", Phase::AfterRoute, &log)));

    let mut h = Harness::new(request("GET", "/", &[]));
    let v = h.run_chain(&chain, Phase::AfterRoute, 0);
    assert_eq!(
        v.verdict,
        Verdict::Delay {
            delay: Duration::from_millis(20),
            then: None
        }
    );
    assert_eq!(v.resume_from, 3);
    assert_eq!(take(&log), ["r0:req"]);

    // The engine sleeps, then resumes: the fault filter does not run again.
    let v = h.run_chain(&chain, Phase::AfterRoute, v.resume_from);
    assert_eq!(v.verdict, Verdict::Continue);
    assert_eq!(v.resume_from, chain.len());
    assert_eq!(take(&log), ["r1:req", "r2:req"]);

    // Resuming past the end runs nothing.
    let v = h.run_chain(&chain, Phase::AfterRoute, 99);
    assert_eq!(v.verdict, Verdict::Continue);
    assert!(take(&log).is_empty());
}

#[test]
fn response_data_and_log_hooks_run_in_chain_order() {
    let log = Log::default();
    let mut chain = FilterChain::new();
    chain.push_filter(Arc::new(Probe::new("x", Phase::AfterRoute, &log)));
    let mut stopper = Probe::new("y", Phase::BeforeRoute, &log);
    stopper.response_verdict = Verdict::Reply(teapot());
    chain.push_filter(Arc::new(stopper));
    chain.push_filter(Arc::new(Probe::new("z", Phase::BeforeRoute, &log)));

    let req = request("GET", "/", &[]);
    let v = chain.run_request_data(RequestView::from(&req), None, 12, 5);
    assert_eq!(v.verdict, Verdict::Continue);
    assert_eq!(take(&log), ["x:data12/5", "y:data12/5", "z:data12/5"]);

    let (mut head, ()) = Response::builder()
        .status(200)
        .body(())
        .unwrap()
        .into_parts();
    let mut ctx = ResponseCtx {
        head: &mut head,
        request: RequestView::from(&req),
        downstream_protocol: "Http1",
        upstream_protocol: Some("Http1"),
        route_overrides: None,
        flags: ResponseFlags::NONE,
    };
    let v = chain.run_response(&mut ctx);
    assert_eq!(v.verdict, Verdict::Reply(teapot()));
    assert_eq!(v.resume_from, 2);
    let v = chain.run_response_from(v.resume_from, &mut ctx);
    assert_eq!(v.verdict, Verdict::Continue);
    let probes: Vec<_> = head.headers.get_all("x-probe").iter().collect();
    assert_eq!(probes, ["x", "y", "z"]);
    assert_eq!(take(&log), ["x:resp", "y:resp", "z:resp"]);

    chain.run_log(&LogRecord {
        request: RequestView::from(&req),
        status: Some(StatusCode::OK),
        flags: ResponseFlags::NONE,
        duration: Duration::from_millis(3),
        route_overrides: None,
    });
    assert_eq!(take(&log), ["x:log200", "y:log200", "z:log200"]);
}

fn listener_filters() -> Value {
    json!([
        {"type": "ip_access", "config": {"ips": [{"action": "deny", "addrs": ["10.0.0.0/8"]}]}},
        {"type": "payload_limit", "config": {"max_entity_size": 10}},
        {"type": "transcoder", "config": {"rules": [
            {"macther_config": {"headers": []}, "rule_info": {"upstream_protocol": "Http2"}}]}},
        {"type": "local_ratelimit", "config": {"max_tokens": 1, "fill_interval": "1h"}}
    ])
}

#[test]
fn chain_from_listener_json_with_builtins() {
    let registry = FilterRegistry::with_builtins();
    let chain = FilterChain::from_json(&registry, &listener_filters()).unwrap();
    assert_eq!(
        chain.names().collect::<Vec<_>>(),
        [
            "ip_access",
            "payload_limit",
            "transcoder",
            "local_rate_limit"
        ]
    );
    assert!(chain.has_phase(Phase::BeforeRoute));
    assert!(chain.has_phase(Phase::AfterRoute));
    assert!(!chain.has_phase(Phase::AfterChooseHost));

    let mut h = Harness::new(request("POST", "/", &[("content-length", "5")]));
    assert!(h
        .run_chain(&chain, Phase::BeforeRoute, 0)
        .verdict
        .is_continue());
    assert!(h
        .run_chain(&chain, Phase::AfterRoute, 0)
        .verdict
        .is_continue());
    assert_eq!(h.upstream_protocol.as_deref(), Some("Http2"));
    // The bucket (1 token) is now empty.
    match h.run_chain(&chain, Phase::AfterRoute, 0).verdict {
        Verdict::Reply(r) => assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS),
        v => panic!("expected 429, got {v:?}"),
    }
    // A denied client never gets past BeforeRoute.
    h.remote = "10.1.1.1:1234".parse().unwrap();
    match h.run_chain(&chain, Phase::BeforeRoute, 0).verdict {
        Verdict::Reply(r) => assert_eq!(r.status, StatusCode::FORBIDDEN),
        v => panic!("expected 403, got {v:?}"),
    }
    // Absent list / absent config are fine.
    assert!(FilterChain::from_json(&registry, &Value::Null)
        .unwrap()
        .is_empty());
    let c = FilterChain::from_json(&registry, &json!([{"type": "transcoder"}])).unwrap();
    assert_eq!(c.len(), 1);
}

#[test]
fn route_override_takes_precedence() {
    let registry = FilterRegistry::with_builtins();
    let chain = FilterChain::from_json(&registry, &listener_filters()).unwrap();
    let pfc = json!({
        "payload_limit": {"max_entity_size": 100, "http_status": 400},
        "fault": {"abort": {"status": 500, "percentage": 100}},
        "not_a_filter": {"anything": true}
    });
    let overrides = chain
        .compile_route_overrides(pfc.as_object().unwrap())
        .unwrap();
    // `fault` is not in this chain and `not_a_filter` is unknown: both ignored.
    assert_eq!(overrides.len(), 1);
    assert!(overrides.get("payload_limit").is_some());

    // Without the route's override the listener limit (10) applies...
    let mut h = Harness::new(request("POST", "/", &[("content-length", "50")]));
    match h.run_chain(&chain, Phase::AfterRoute, 0).verdict {
        Verdict::Reply(r) => assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE),
        v => panic!("expected 413, got {v:?}"),
    }
    // ...with it, the route's limit (100) does, on the head and on the body.
    let mut h = Harness::new(request("POST", "/", &[("content-length", "50")]));
    h.overrides = Some(&overrides);
    assert!(h
        .run_chain(&chain, Phase::AfterRoute, 0)
        .verdict
        .is_continue());
    let req = request("POST", "/", &[]);
    let view = RequestView::from(&req);
    assert!(chain
        .run_request_data(view, Some(&overrides), 50, 50)
        .verdict
        .is_continue());
    match chain
        .run_request_data(view, Some(&overrides), 101, 51)
        .verdict
    {
        Verdict::Reply(r) => assert_eq!(r.status, StatusCode::BAD_REQUEST),
        v => panic!("expected 400, got {v:?}"),
    }
    match chain.run_request_data(view, None, 11, 11).verdict {
        Verdict::Reply(r) => assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE),
        v => panic!("expected 413, got {v:?}"),
    }

    // The registry compiles every known type, for routers shared by several listeners.
    let all = registry
        .compile_route_overrides(pfc.as_object().unwrap())
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.get("fault").is_some() && all.get("payload_limit").is_some());
}

#[test]
fn route_override_under_an_alias_and_its_own_bucket() {
    let registry = FilterRegistry::with_builtins();
    let chain = FilterChain::from_json(&registry, &listener_filters()).unwrap();
    let pfc = json!({"local_ratelimit": {"max_tokens": 2, "fill_interval": "1h"}});
    let overrides = chain
        .compile_route_overrides(pfc.as_object().unwrap())
        .unwrap();
    assert!(overrides.get("local_rate_limit").is_some());
    let mut h = Harness::new(request("GET", "/", &[]));
    h.overrides = Some(&overrides);
    assert!(h
        .run_chain(&chain, Phase::AfterRoute, 0)
        .verdict
        .is_continue());
    assert!(h
        .run_chain(&chain, Phase::AfterRoute, 0)
        .verdict
        .is_continue());
    assert!(!h
        .run_chain(&chain, Phase::AfterRoute, 0)
        .verdict
        .is_continue());
    // The listener bucket was untouched by the route's traffic.
    h.overrides = None;
    assert!(h
        .run_chain(&chain, Phase::AfterRoute, 0)
        .verdict
        .is_continue());

    // The same type under both names is ambiguous.
    let both = json!({
        "local_ratelimit": {"max_tokens": 2, "fill_interval": "1h"},
        "local_rate_limit": {"max_tokens": 3, "fill_interval": "1h"}
    });
    let err = registry
        .compile_route_overrides(both.as_object().unwrap())
        .unwrap_err();
    assert!(err.reason.contains("configured twice"), "{}", err.reason);
}

#[test]
fn route_override_errors_name_the_key() {
    let registry = FilterRegistry::with_builtins();
    let chain = FilterChain::from_json(&registry, &listener_filters()).unwrap();
    let pfc = json!({"payload_limit": {"max_entity_size": "big"}});
    let err = chain
        .compile_route_overrides(pfc.as_object().unwrap())
        .unwrap_err();
    assert_eq!(
        err.reason,
        "per_filter_config.payload_limit: max_entity_size: must be an integer, got a string"
    );
    let err = registry
        .compile_route_overrides(pfc.as_object().unwrap())
        .unwrap_err();
    assert_eq!(
        err,
        FilterError::new(
            "per_filter_config.payload_limit: max_entity_size: must be an integer, got a string"
        )
    );
}

#[test]
fn unknown_type_and_bad_configs_are_named() {
    let registry = FilterRegistry::with_builtins();
    let err = FilterChain::from_json(
        &registry,
        &json!([{"type": "fault"}, {"type": "gzip", "config": {}}]),
    )
    .unwrap_err();
    assert_eq!(
        err.reason,
        "stream_filters[1].type: unknown stream filter type \"gzip\" (known: fault, ip_access, \
         local_rate_limit, local_ratelimit, payload_limit, transcoder)"
    );
    let err = registry.create("gzip", &Value::Null).unwrap_err();
    assert!(err
        .reason
        .starts_with("unknown stream filter type \"gzip\""));
    let mut chain = FilterChain::new();
    assert!(chain.push(&registry, "gzip", &Value::Null).is_err());
    assert!(chain.is_empty());

    let err = FilterChain::from_json(
        &registry,
        &json!([{"type": "fault", "config": {"delay": {"fixed_delay": "1s", "percentage": 200}}}]),
    )
    .unwrap_err();
    assert_eq!(
        err.reason,
        "stream_filters[0] (fault): delay.percentage: must be an integer in 0..=100, got 200"
    );
    assert_eq!(
        FilterChain::from_json(&registry, &json!([{"config": {}}]))
            .unwrap_err()
            .reason,
        "stream_filters[0].type: a string is required"
    );
    assert_eq!(
        FilterChain::from_json(&registry, &json!({"type": "fault"}))
            .unwrap_err()
            .reason,
        "stream_filters: must be an array"
    );
    assert_eq!(
        FilterChain::from_json(&registry, &json!(["fault"]))
            .unwrap_err()
            .reason,
        "stream_filters[0]: must be an object"
    );
}

#[test]
fn registry_registration_is_explicit() {
    let mut registry = FilterRegistry::new();
    assert!(registry.types().is_empty());
    let log = Log::default();
    let shared = log.clone();
    registry.register("probe", move |_v: &Value| {
        Ok(Arc::new(Probe::new("probe", Phase::BeforeRoute, &shared)) as Arc<dyn StreamFilter>)
    });
    assert!(registry.contains("probe") && !registry.contains("fault"));
    let chain = FilterChain::build(&registry, [("probe", &Value::Null)]).unwrap();
    let mut h = Harness::new(request("GET", "/", &[]));
    assert!(h
        .run_chain(&chain, Phase::BeforeRoute, 0)
        .verdict
        .is_continue());
    assert_eq!(take(&log), ["probe:req"]);
    let builtins = FilterRegistry::with_builtins();
    assert_eq!(
        builtins.types(),
        [
            "fault",
            "ip_access",
            "local_rate_limit",
            "local_ratelimit",
            "payload_limit",
            "transcoder"
        ]
    );
    assert!(format!("{builtins:?}").contains("payload_limit"));
}

#[test]
fn local_reply_helpers() {
    let r = LocalReply::new(StatusCode::FORBIDDEN, ResponseFlags::ACCESS_DENIED).with_text("no");
    assert_eq!(r.body.as_ref(), b"no");
    assert_eq!(
        r.headers.get(http::header::CONTENT_TYPE).unwrap(),
        "text/plain"
    );
    assert!(r
        .flags
        .contains(ResponseFlags::ACCESS_DENIED | ResponseFlags::LOCAL_REPLY));
    let e = FilterError::new("bad").prefixed("x.y");
    assert_eq!(e.to_string(), "x.y: bad");
}

#[test]
fn route_overrides_from_a_router_lookup() {
    let registry = FilterRegistry::with_builtins();
    let chain = FilterChain::from_json(
        &registry,
        &json!([
            {"type": "payload_limit", "config": {"max_entity_size": 10}},
            {"type": "local_ratelimit", "config": {"max_tokens": 1, "fill_interval": "1h"}},
            {"type": "payload_limit", "config": {"max_entity_size": 20}}
        ]),
    )
    .unwrap();
    // A route map with a virtual-host fallback, as the router's per_filter_config(type).
    let route = json!({"payload_limit": {"max_entity_size": 100}});
    let vhost = json!({"local_rate_limit": {"max_tokens": 5, "fill_interval": "1h"},
                       "payload_limit": {"max_entity_size": 1}});
    let lookup = |t: &str| route.get(t).or_else(|| vhost.get(t));
    let overrides = chain.compile_route_overrides_with(lookup).unwrap();
    // One override per type, even though payload_limit appears twice in the chain; the
    // rate limit was found under its canonical name although the chain uses the alias.
    assert_eq!(overrides.len(), 2);
    let mut h = Harness::new(request("POST", "/", &[("content-length", "50")]));
    h.overrides = Some(&overrides);
    assert!(h
        .run_chain(&chain, Phase::AfterRoute, 0)
        .verdict
        .is_continue());
    for _ in 0..4 {
        assert!(h
            .run_chain(&chain, Phase::AfterRoute, 0)
            .verdict
            .is_continue());
    }
    match h.run_chain(&chain, Phase::AfterRoute, 0).verdict {
        Verdict::Reply(r) => assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS),
        v => panic!("expected 429 after 5 tokens, got {v:?}"),
    }
    let err = chain
        .compile_route_overrides_with(|t| (t == "payload_limit").then_some(&Value::Bool(true)))
        .unwrap_err();
    assert_eq!(
        err.reason,
        "per_filter_config.payload_limit: must be an object, got a boolean"
    );
}
