//! The RPC peers on their own, no proxy involved: the real SOFARPC Bolt client and server
//! (sofa-rpc-node + sofa-bolt-node, hessian2 and protobuf), a second Bolt client (anthunder,
//! Python) and the real Dubbo client and server (sofa-rpc-node + dubbo-remoting, hessian2)
//! talk to each other directly, and the servers'
//! records show exactly what arrived. The proxy tests build on these peers, so this proves
//! the peers first. Also checks that each committed golden frame is one whole frame.

mod common;

use common::rpc::*;
use serde_json::json;

const BOLT_SERVICE: &str = "com.alipay.test.EchoService:1.0";
const SOFA_REQUEST: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// === Bolt ===

#[test]
fn bolt_echo_and_recorded_header_map() {
    let dir = tmp();
    let rec = dir.path().join("bolt.jsonl");
    let s = BoltServer::start(Some(&rec));
    let r = bolt_call(s.addr(), CallOpts::call("echo", json!(["hello mosn"])));
    assert_eq!(r.len(), 1);
    assert!(r[0].ok, "{:?}", r[0].raw);
    assert_eq!(r[0].text(), "hello mosn");
    assert_eq!(r[0].status, Some(0));

    let recs = s.records();
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let q = &recs[0];
    // sofa-rpc-node 2.10.0 with hessian2 sends exactly one header-map entry:
    //   service = "<interface>:<version>"
    // (sofa_head_method_name, sofa_head_target_service, sofa_head_target_app and the
    // requestProps keys are added only with the protobuf codec; with hessian2 they travel in
    // the SofaRequest body). The Java client sends more keys; see PROTOCOLS.md §2.1.
    assert_eq!(
        record_pairs(q, "headers"),
        vec![("service".to_string(), BOLT_SERVICE.to_string())]
    );
    assert_eq!(q["kind"], "request");
    assert_eq!(q["proto"], 1);
    assert_eq!(q["type"], 1);
    assert_eq!(q["cmdcode"], 1);
    assert_eq!(q["codec"], 1, "hessian2");
    assert_eq!(q["timeout"], 3000);
    assert_eq!(q["class"], SOFA_REQUEST);
    assert_eq!(q["req_id"], r[0].req_id.unwrap());
    assert_eq!(q["service"], BOLT_SERVICE);
    assert_eq!(q["method"], "echo");
    assert_eq!(q["arg_types"], json!(["java.lang.String"]));
    assert_eq!(q["args"], json!(["hello mosn"]));
    assert_eq!(q["request_props"], json!({ "service": BOLT_SERVICE }));
}

#[test]
fn bolt_fail_is_an_error_response() {
    let s = BoltServer::start(None);
    let r = bolt_call(s.addr(), CallOpts::call("fail", json!(["boom"])));
    assert!(!r[0].ok, "{:?}", r[0].raw);
    assert!(
        r[0].error.as_deref().unwrap().contains("boom"),
        "{:?}",
        r[0].raw
    );
    assert_eq!(r[0].status, Some(2), "SERVER_EXCEPTION");
    assert_eq!(r[0].code.as_deref(), Some("01"));
}

#[test]
fn bolt_200_concurrent_calls() {
    let s = BoltServer::start(None);
    let r = bolt_call(
        s.addr(),
        CallOpts {
            count: 200,
            concurrency: 200,
            args: json!(["c"]),
            ..Default::default()
        },
    );
    assert_eq!(r.len(), 200);
    assert!(
        r.iter().all(|c| c.ok && c.echoed),
        "{:?}",
        r.iter().find(|c| !c.ok)
    );
    let mut ids: Vec<u64> = r.iter().map(|c| c.req_id.unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "request ids are distinct");
}

#[test]
fn bolt_timeout_and_large_payload() {
    let s = BoltServer::start(None);
    let r = bolt_call(
        s.addr(),
        CallOpts {
            method: "sleep".into(),
            args: json!([600]),
            timeout_ms: 200,
            ..Default::default()
        },
    );
    assert!(!r[0].ok);
    assert_eq!(r[0].code.as_deref(), Some("03"), "{:?}", r[0].raw);
    assert_eq!(r[0].status, None);

    let r = bolt_call(
        s.addr(),
        CallOpts {
            payload_size: Some(1 << 20),
            ..Default::default()
        },
    );
    assert!(r[0].ok && r[0].echoed, "{:?}", r[0].raw);
    assert_eq!(r[0].result_len, Some(1 << 20));
    assert!(r[0].result.is_none(), "big results are summarized");
}

#[test]
fn bolt_oneway_heartbeat_extra_headers_v2_crc() {
    let dir = tmp();
    let rec = dir.path().join("bolt.jsonl");
    let s = BoltServer::start(Some(&rec));

    let r = bolt_call(
        s.addr(),
        CallOpts {
            oneway: true,
            ..Default::default()
        },
    );
    assert!(r[0].ok && r[0].oneway, "{:?}", r[0].raw);
    let recs = s.wait_records(1);
    assert_eq!(recs[0]["kind"], "oneway");
    assert_eq!(recs[0]["type"], 2);

    let r = bolt_call(
        s.addr(),
        CallOpts {
            heartbeat: true,
            count: 2,
            ..Default::default()
        },
    );
    assert!(
        r.iter().all(|h| h.ok && h.heartbeat && h.status == Some(0)),
        "{r:?}"
    );
    let recs = s.wait_records(3);
    for h in &recs[1..3] {
        assert_eq!(h["kind"], "heartbeat");
        assert_eq!(h["cmdcode"], 0);
        assert_eq!(h["frame_len"], 22);
        // sofa-bolt-node's heartbeat timeout is 3000 (Java sends -1).
        assert_eq!(h["timeout"], 3000);
    }

    let r = bolt_call(
        s.addr(),
        CallOpts {
            headers: vec![
                ("x-tenant".into(), "t1".into()),
                ("zone".into(), "gz00a".into()),
            ],
            ..Default::default()
        },
    );
    assert!(r[0].ok);
    let recs = s.wait_records(4);
    assert_eq!(
        record_pairs(&recs[3], "headers"),
        vec![
            ("service".to_string(), BOLT_SERVICE.to_string()),
            ("x-tenant".to_string(), "t1".to_string()),
            ("zone".to_string(), "gz00a".to_string()),
        ]
    );

    for (crc, ver1) in [(false, 1), (true, 2)] {
        let r = bolt_call(
            s.addr(),
            CallOpts {
                bolt_v2: true,
                crc,
                args: json!(["v2"]),
                ..Default::default()
            },
        );
        assert!(r[0].ok && r[0].echoed, "{:?}", r[0].raw);
        assert_eq!(r[0].status, Some(0));
        let recs = s.records();
        let q = recs.last().unwrap();
        assert_eq!(q["proto"], 2);
        assert_eq!(q["ver1"], ver1);
        assert_eq!(q["switch"], u8::from(crc));
        if crc {
            assert_eq!(q["crc_ok"], true);
        }
    }
}

#[test]
fn bolt_protobuf_codec_and_anthunder_client() {
    let dir = tmp();
    let rec = dir.path().join("bolt.jsonl");
    let s = BoltServer::start(Some(&rec));

    // sofa-rpc-node with its protobuf codec: the header map grows to
    //   service, sofa_head_method_name, sofa_head_target_app, sofa_head_target_service
    // followed by the requestProps flattened (here only --prop keys: `service` is already set).
    let r = bolt_call(
        s.addr(),
        CallOpts {
            protobuf: true,
            args: json!(["pb"]),
            props: vec![("tenant".into(), "t1".into())],
            ..Default::default()
        },
    );
    assert!(r[0].ok && r[0].echoed, "{:?}", r[0].raw);
    let recs = s.wait_records(1);
    assert_eq!(recs[0]["codec"], 11);
    assert_eq!(
        record_pairs(&recs[0], "headers"),
        [
            ("service", BOLT_SERVICE),
            ("sofa_head_method_name", "echo"),
            ("sofa_head_target_app", ""),
            ("sofa_head_target_service", BOLT_SERVICE),
            ("tenant", "t1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    );

    // anthunder 0.8.1 (Python): protobuf codec, header map
    //   sofa_head_target_service, sofa_head_method_name, sofa_head_target_app, service, uid,
    //   <extra headers>, rpc_trace_context.sofaTraceId, rpc_trace_context.sofaRpcId
    let r = anthunder_call(
        s.addr(),
        CallOpts {
            args: json!(["from python"]),
            headers: vec![("tenant".into(), "t9".into())],
            ..Default::default()
        },
    );
    assert!(r[0].ok, "{:?}", r[0].raw);
    assert_eq!(r[0].text(), "from python");
    let recs = s.wait_records(2);
    let keys: Vec<String> = record_pairs(&recs[1], "headers")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "sofa_head_target_service",
            "sofa_head_method_name",
            "sofa_head_target_app",
            "service",
            "uid",
            "tenant",
            "rpc_trace_context.sofaTraceId",
            "rpc_trace_context.sofaRpcId",
        ]
    );
    assert_eq!(recs[1]["codec"], 11);
    assert_eq!(recs[1]["args"], json!([{ "message": "from python" }]));

    let r = anthunder_call(s.addr(), CallOpts::call("fail", json!(["boom"])));
    assert!(!r[0].ok);
    assert_eq!(r[0].status, Some(2));
    let r = anthunder_call(
        s.addr(),
        CallOpts {
            heartbeat: true,
            ..Default::default()
        },
    );
    assert!(r[0].ok && r[0].status == Some(0), "{:?}", r[0].raw);
}

// === Dubbo ===

#[test]
fn dubbo_echo_fail_and_attachments() {
    let dir = tmp();
    let rec = dir.path().join("dubbo.jsonl");
    let s = DubboServer::start(Some(&rec));
    let r = dubbo_call(
        s.addr(),
        CallOpts {
            args: json!(["hello dubbo"]),
            attachments: vec![("tenant".into(), "alipay".into())],
            ..Default::default()
        },
    );
    assert!(r[0].ok, "{:?}", r[0].raw);
    assert_eq!(r[0].text(), "hello dubbo");
    assert_eq!(r[0].status, Some(20));

    let recs = s.records();
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let q = &recs[0];
    assert_eq!(q["kind"], "request");
    assert_eq!(q["flag"], 0xc2, "request | two-way | hessian2");
    assert_eq!(q["serialization"], 2);
    assert_eq!(q["path"], "com.alipay.test.EchoService");
    assert_eq!(q["version"], "1.0.0");
    assert_eq!(q["method"], "echo");
    assert_eq!(q["desc"], "Ljava/lang/String;");
    assert_eq!(q["args"], json!(["hello dubbo"]));
    // dubbo-remoting 2.1.4 attachments; hessian.js writes the map keys sorted.
    assert_eq!(
        record_pairs(q, "attachments"),
        [
            ("dubbo", "5.3.0"),
            ("group", "SOFA"),
            ("path", "com.alipay.test.EchoService"),
            ("service", "com.alipay.test.EchoService:1.0.0"),
            ("tenant", "alipay"),
            ("version", "1.0.0"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    );

    let r = dubbo_call(s.addr(), CallOpts::call("fail", json!(["boom"])));
    assert!(!r[0].ok);
    assert_eq!(r[0].error.as_deref(), Some("boom"));
    assert_eq!(r[0].status, Some(80), "SERVER_ERROR");
}

#[test]
fn dubbo_200_concurrent_calls_and_heartbeat() {
    let dir = tmp();
    let rec = dir.path().join("dubbo.jsonl");
    let s = DubboServer::start(Some(&rec));
    let r = dubbo_call(
        s.addr(),
        CallOpts {
            count: 200,
            concurrency: 200,
            ..Default::default()
        },
    );
    assert_eq!(r.len(), 200);
    assert!(
        r.iter().all(|c| c.ok && c.echoed),
        "{:?}",
        r.iter().find(|c| !c.ok)
    );

    let r = dubbo_call(
        s.addr(),
        CallOpts {
            heartbeat: true,
            ..Default::default()
        },
    );
    assert!(
        r[0].ok && r[0].heartbeat && r[0].status == Some(20),
        "{:?}",
        r[0].raw
    );
    let recs = s.wait_records(201);
    let hb = &recs[200];
    assert_eq!(hb["kind"], "heartbeat");
    assert_eq!(hb["flag"], 0xe2);
    assert_eq!(hb["frame_len"], 17);
}

// === golden frames ===

/// Whole-frame length from the protocol's length fields (PROTOCOLS.md §2).
fn frame_len(b: &[u8]) -> usize {
    let u16_at = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
    match (b[0], b[1]) {
        (0xda, 0xbb) => 16 + u32_at(12),
        (0x01, 0x00) => 20 + u16_at(12) + u16_at(14) + u32_at(16),
        (0x01, _) => 22 + u16_at(14) + u16_at(16) + u32_at(18),
        (0x02, _) => {
            let crc = if b[11] & 1 == 1 { 4 } else { 0 };
            crc + if b[2] == 0 {
                22 + u16_at(14) + u16_at(16) + u32_at(18)
            } else {
                24 + u16_at(16) + u16_at(18) + u32_at(20)
            }
        }
        _ => panic!("unknown frame start {:02x?}", &b[..2]),
    }
}

#[test]
fn golden_frames_are_whole_frames() {
    let dir = real_fixtures_dir();
    let mut names = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "bin") {
            let b = std::fs::read(&p).unwrap();
            assert_eq!(frame_len(&b), b.len(), "{}", p.display());
            names.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for want in [
        "bolt_v1_request.bin",
        "bolt_v1_response.bin",
        "bolt_v1_response_error.bin",
        "bolt_v1_heartbeat.bin",
        "bolt_v1_oneway.bin",
        "bolt_v2_crc_request.bin",
        "dubbo_request.bin",
        "dubbo_response.bin",
        "dubbo_heartbeat.bin",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "missing {want} in {names:?}"
        );
    }
}
