//! Golden byte fixtures (tests/common): each is parsed and checked field by field against a
//! frame built by hand, and that frame is emitted back to the same bytes. Then truncations,
//! malformed variants and the in-place request-id rewrite.

mod common;

use bytes::{Bytes, BytesMut};
use mosn_wire::bolt::{self, HeaderMap};
use mosn_wire::dubbo;
use mosn_wire::hessian2::{self, Reader};
use mosn_wire::Error;

const MAX: usize = 1 << 20;

fn header(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.push(
            Bytes::from_static(k.as_bytes()),
            Bytes::from_static(v.as_bytes()),
        );
    }
    h
}

fn decode_bolt(bytes: &[u8]) -> bolt::Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = bolt::Frame::decode(&mut buf, MAX).unwrap().unwrap();
    assert!(buf.is_empty(), "one fixture = one frame");
    assert_eq!(&frame.raw[..], bytes);
    frame
}

fn encode_bolt(frame: &bolt::Frame) -> Vec<u8> {
    let mut dst = BytesMut::new();
    frame.encode(&mut dst).unwrap();
    dst.to_vec()
}

/// Parse/emit pair: the fixture parses to `expected` (raw aside) and `expected` emits it.
fn bolt_pair(bytes: &[u8], expected: &bolt::Frame) -> bolt::Frame {
    let got = decode_bolt(bytes);
    let without_raw = bolt::Frame {
        raw: Bytes::new(),
        ..got.clone()
    };
    assert_eq!(&without_raw, expected);
    assert_eq!(encode_bolt(expected), bytes);
    assert_eq!(encode_bolt(&got), bytes);
    got
}

const SOFA_REQUEST: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";
const SOFA_RESPONSE: &str = "com.alipay.sofa.rpc.core.response.SofaResponse";

fn v1_request() -> bolt::Frame {
    bolt::Frame {
        proto: bolt::PROTO_V1,
        ver1: 0,
        kind: bolt::TYPE_REQUEST,
        cmd_code: bolt::CMD_REQUEST,
        ver2: 1,
        request_id: 7,
        codec: 1,
        switch: 0,
        timeout: 3000,
        status: 0,
        class: Bytes::from_static(SOFA_REQUEST.as_bytes()),
        header: header(&[
            ("service", "com.example.HelloService:1.0"),
            ("sofa_head_method_name", "sayHello"),
        ]),
        content: Bytes::from_static(b"\x05hello"),
        raw: Bytes::new(),
    }
}

#[test]
fn bolt_v1_request() {
    let f = bolt_pair(&common::bolt_v1_request(), &v1_request());
    assert!(f.is_request() && !f.is_oneway() && !f.is_response());
    assert!(!f.is_heartbeat() && !f.is_goaway());
    assert_eq!(
        f.header.get(b"service").map(|v| &v[..]),
        Some(&b"com.example.HelloService:1.0"[..])
    );
    assert_eq!(f.header.encoded_len(), 80);
    // Zero-copy: the parts point into raw.
    let raw = f.raw.as_ptr_range();
    assert!(raw.contains(&f.class.as_ptr()) && raw.contains(&f.content.as_ptr()));
}

#[test]
fn bolt_v1_oneway() {
    let expected = bolt::Frame {
        kind: bolt::TYPE_ONEWAY,
        request_id: 8,
        timeout: 1000,
        class: Bytes::new(),
        header: HeaderMap::new(),
        content: Bytes::from_static(b"\x04ping"),
        ..v1_request()
    };
    let f = bolt_pair(&common::bolt_v1_oneway(), &expected);
    assert!(f.is_request() && f.is_oneway());
}

#[test]
fn bolt_v1_response() {
    let expected = bolt::Frame {
        kind: bolt::TYPE_RESPONSE,
        cmd_code: bolt::CMD_RESPONSE,
        timeout: 0,
        status: bolt::status::SUCCESS,
        class: Bytes::from_static(SOFA_RESPONSE.as_bytes()),
        header: header(&[("sofa_head_response_error", "")]),
        content: Bytes::from_static(b"\x0bhello world"),
        ..v1_request()
    };
    let f = bolt_pair(&common::bolt_v1_response(), &expected);
    assert!(f.is_response() && !f.is_request());
}

#[test]
fn bolt_v1_heartbeat_and_ack() {
    let hb = bolt_pair(
        &common::bolt_v1_heartbeat(),
        &bolt::Frame::heartbeat(bolt::PROTO_V1, 9),
    );
    assert!(hb.is_heartbeat() && !hb.is_request() && hb.timeout == -1);
    let ack = bolt::Frame::response_to(&hb, bolt::status::SUCCESS);
    let ack = bolt_pair(&common::bolt_v1_heartbeat_ack(), &ack);
    assert!(ack.is_heartbeat() && ack.is_response());
}

#[test]
fn bolt_v1_goaway() {
    let f = bolt_pair(
        &common::bolt_v1_goaway(),
        &bolt::Frame::goaway(bolt::PROTO_V1, 0),
    );
    assert!(f.is_goaway() && !f.is_request() && !f.is_response());
}

#[test]
fn bolt_v1_hijack() {
    let req = decode_bolt(&common::bolt_v1_request());
    let reply = bolt::Frame::response_to(&req, bolt::status::NO_PROCESSOR);
    let f = bolt_pair(&common::bolt_v1_hijack(), &reply);
    assert_eq!(f.status, bolt::status::NO_PROCESSOR);
    assert_eq!(f.cmd_code, bolt::CMD_RESPONSE);
}

fn v2_request(ver1: u8, switch: u8) -> bolt::Frame {
    bolt::Frame {
        proto: bolt::PROTO_V2,
        ver1,
        switch,
        request_id: 0x0102_0304,
        timeout: 5000,
        header: header(&[("service", "com.example.HelloService:1.0")]),
        ..v1_request()
    }
}

#[test]
fn bolt_v2_request_without_crc() {
    let f = bolt_pair(&common::bolt_v2_request(), &v2_request(1, 0));
    assert!(!f.has_crc());
    let view = bolt::Packet::new_checked(&f.raw[..]).unwrap();
    assert_eq!(view.crc(), None);
    assert_eq!(view.header_size(), 24);
}

#[test]
fn bolt_v2_request_with_crc() {
    let bytes = common::bolt_v2_request_crc();
    let f = bolt_pair(&bytes, &v2_request(2, 1));
    assert!(f.has_crc());
    let view = bolt::Packet::new_checked(&bytes[..]).unwrap();
    let crc = u32::from_be_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
    assert_eq!(view.crc(), Some(crc));
    assert_eq!(view.compute_crc(), crc);
    // ver1 2 without the switch bit, or the switch bit with ver1 1: no CRC.
    assert!(!v2_request(2, 0).has_crc() && !v2_request(1, 1).has_crc());
    // The CRC bit is bit 0 only; other switch bits travel untouched.
    let other_bits = v2_request(2, 0xfe);
    assert!(!other_bits.has_crc());
    assert_eq!(decode_bolt(&encode_bolt(&other_bits)).switch, 0xfe);
}

#[test]
fn bolt_v2_responses() {
    let expected = bolt::Frame {
        kind: bolt::TYPE_RESPONSE,
        cmd_code: bolt::CMD_RESPONSE,
        timeout: 0,
        status: bolt::status::SERVER_EXCEPTION,
        class: Bytes::from_static(SOFA_RESPONSE.as_bytes()),
        header: HeaderMap::new(),
        content: Bytes::from_static(b"\x0bhello world"),
        ..v2_request(2, 1)
    };
    let f = bolt_pair(&common::bolt_v2_response_crc(), &expected);
    assert!(f.is_response() && f.has_crc());
    let plain = bolt::Frame {
        ver1: 1,
        switch: 0,
        status: bolt::status::SUCCESS,
        class: Bytes::new(),
        ..expected
    };
    let f = bolt_pair(&common::bolt_v2_response(), &plain);
    assert_eq!(
        bolt::Packet::new_checked(&f.raw[..]).unwrap().header_size(),
        22
    );
}

#[test]
fn bolt_v2_heartbeat() {
    let hb = bolt_pair(
        &common::bolt_v2_heartbeat(),
        &bolt::Frame::heartbeat(bolt::PROTO_V2, 10),
    );
    let ack = bolt::Frame::response_to(&hb, 0);
    assert_eq!((ack.proto, ack.ver1, ack.switch), (2, 1, 0));
    assert_eq!(ack.cmd_code, bolt::CMD_HEARTBEAT);
    assert_eq!(decode_bolt(&encode_bolt(&ack)).request_id, 10);
}

#[test]
fn bolt_mixed_stream_decodes_in_order() {
    let all = common::bolt_all();
    let mut buf = BytesMut::new();
    for (_, bytes) in &all {
        buf.extend_from_slice(bytes);
    }
    for (name, bytes) in &all {
        let f = bolt::Frame::decode(&mut buf, MAX).unwrap().unwrap();
        assert_eq!(&f.raw[..], &bytes[..], "{name}");
    }
    assert!(buf.is_empty());
    assert_eq!(bolt::Frame::decode(&mut buf, MAX), Ok(None));
}

#[test]
fn bolt_every_prefix_needs_more() {
    for (name, bytes) in common::bolt_all() {
        for n in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..n]);
            assert_eq!(
                bolt::Frame::decode(&mut buf, MAX),
                Ok(None),
                "{name}[..{n}]"
            );
            assert_eq!(buf.len(), n, "{name}[..{n}] untouched");
            if let Some(total) = bolt::frame_len(&bytes[..n]).unwrap() {
                assert_eq!(total, bytes.len(), "{name}[..{n}]");
            }
        }
    }
}

fn bolt_err(bytes: &[u8], max: usize) -> Error {
    let mut buf = BytesMut::from(bytes);
    let err = bolt::Frame::decode(&mut buf, max).unwrap_err();
    assert_eq!(&buf[..], bytes, "an error leaves the buffer untouched");
    err
}

#[test]
fn bolt_malformed() {
    let good = common::bolt_v1_request();
    // Bad protocol code: an error from the very first byte.
    assert!(matches!(bolt_err(&[0x03], MAX), Error::Malformed { .. }));
    let mut bad = good.clone();
    bad[0] = 0x03;
    assert!(matches!(bolt_err(&bad, MAX), Error::Malformed { .. }));
    // Bad type byte.
    let mut bad = good.clone();
    bad[1] = 0x03;
    assert!(matches!(bolt_err(&bad[..2], MAX), Error::Malformed { .. }));
    // Header map overrun: the first key claims 0x100 bytes.
    let mut bad = good.clone();
    let key_len = 22 + SOFA_REQUEST.len();
    bad[key_len..key_len + 4].copy_from_slice(&[0, 0, 1, 0]);
    assert!(matches!(bolt_err(&bad, MAX), Error::Malformed { .. }));
    // A header section too short for a length field.
    let mut bad = common::bolt_v1_oneway();
    bad[17] = 2; // headerLen 2, taken from the content
    bad[21] = 3; // contentLen 3
    assert!(matches!(bolt_err(&bad, MAX), Error::Malformed { .. }));
    // Bad CRC: one content byte flipped.
    let mut bad = common::bolt_v2_request_crc();
    let at = bad.len() - 5;
    bad[at] ^= 0x01;
    assert!(matches!(bolt_err(&bad, MAX), Error::Malformed { .. }));
    // Oversize, known from the header alone (no waiting for 4 GiB).
    assert_eq!(
        bolt_err(&good, good.len() - 1),
        Error::TooLarge {
            protocol: "bolt",
            len: good.len(),
            limit: good.len() - 1
        }
    );
    let mut huge = good[..22].to_vec();
    huge[18..22].copy_from_slice(&[0xff; 4]);
    assert!(matches!(bolt_err(&huge, MAX), Error::TooLarge { .. }));
    // The id of a malformed frame can still be found for the error reply.
    assert_eq!(bolt::peek_request_id(&huge), Some((1, 7)));
}

#[test]
fn bolt_encode_limits() {
    let mut f = v1_request();
    f.class = Bytes::from(vec![b'c'; 65536]);
    assert!(matches!(
        f.encode(&mut BytesMut::new()),
        Err(Error::TooLarge { len: 65536, .. })
    ));
    let mut f = v1_request();
    f.header
        .push(Bytes::from_static(b"big"), Bytes::from(vec![b'v'; 65536]));
    assert!(matches!(
        f.encode(&mut BytesMut::new()),
        Err(Error::TooLarge { .. })
    ));
    let mut f = v1_request();
    f.proto = 3;
    let mut dst = BytesMut::new();
    assert!(matches!(f.encode(&mut dst), Err(Error::Malformed { .. })));
    assert!(dst.is_empty());
    let mut f = v1_request();
    f.kind = 7;
    assert!(f.encode(&mut dst).is_err());
    // Exactly at the limits is fine.
    let mut f = v1_request();
    f.class = Bytes::from(vec![b'c'; 65535]);
    f.header = header(&[]);
    f.header
        .push(Bytes::new(), Bytes::from(vec![b'v'; 65535 - 8]));
    let bytes = encode_bolt(&f);
    assert_eq!(
        bolt::Frame {
            raw: Bytes::new(),
            ..decode_bolt(&bytes)
        },
        f
    );
}

#[test]
fn bolt_null_header_entries_are_skipped() {
    let mut bytes = common::bolt_v1_oneway();
    // Insert a header map of: (null key, "x"), ("k", null), ("a", "b").
    let map: Vec<u8> = common::cat(&[
        &[0xff, 0xff, 0xff, 0xff], // key: null
        &[0, 0, 0, 1],             // value length 1
        b"x",                      // value
        &[0, 0, 0, 1],             // key length 1
        b"k",                      // key
        &[0xff, 0xff, 0xff, 0xff], // value: null
        &[0, 0, 0, 1],             // key length 1
        b"a",                      // key
        &[0, 0, 0, 1],             // value length 1
        b"b",                      // value
    ]);
    bytes[16..18].copy_from_slice(&(map.len() as u16).to_be_bytes());
    bytes.splice(22..22, map.iter().copied());
    let f = decode_bolt(&bytes);
    assert_eq!(f.header, header(&[("a", "b")]));
    // Re-encoding drops them (the canonical form), which then round-trips exactly.
    let canonical = encode_bolt(&f);
    assert_eq!(canonical.len(), bytes.len() - 18);
    assert_eq!(encode_bolt(&decode_bolt(&canonical)), canonical);
}

#[test]
fn bolt_set_request_id() {
    for (name, bytes) in common::bolt_all() {
        let mut copy = bytes.clone();
        assert!(bolt::set_request_id(&mut copy, 0xdead_beef), "{name}");
        let f = decode_bolt(&copy);
        assert_eq!(f.request_id, 0xdead_beef, "{name}");
        let original = decode_bolt(&bytes);
        assert_eq!(
            bolt::Frame {
                request_id: original.request_id,
                raw: Bytes::new(),
                ..f
            },
            bolt::Frame {
                raw: Bytes::new(),
                ..original
            },
            "{name}: only the id changed"
        );
        let (proto, id) = bolt::peek_request_id(&copy).unwrap();
        assert_eq!((proto, id), (copy[0], 0xdead_beef));
    }
    // The v2 CRC is recomputed.
    let mut crc = common::bolt_v2_request_crc();
    let before = crc[crc.len() - 4..].to_vec();
    assert!(bolt::set_request_id(&mut crc, 42));
    assert_ne!(&crc[crc.len() - 4..], &before[..]);
    // Too short or not Bolt: false, nothing changed.
    let mut short = common::bolt_v1_request();
    short.truncate(21);
    let copy = short.clone();
    assert!(!bolt::set_request_id(&mut short, 1));
    assert_eq!(short, copy);
    let mut dubbo = common::dubbo_request();
    assert!(!bolt::set_request_id(&mut dubbo, 1));
    assert_eq!(dubbo, common::dubbo_request());
    assert_eq!(bolt::peek_request_id(&[1, 1, 0, 1, 1, 0, 0, 0]), None);
    assert_eq!(
        bolt::peek_request_id(&[2, 1, 1, 0, 1, 1, 0, 0, 0, 5]),
        Some((2, 5))
    );
}

// ----------------------------------------------------------------------------------- Dubbo

fn decode_dubbo(bytes: &[u8]) -> dubbo::Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = dubbo::Frame::decode(&mut buf, MAX).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(&frame.raw[..], bytes);
    frame
}

fn dubbo_pair(bytes: &[u8], expected: &dubbo::Frame) -> dubbo::Frame {
    let got = decode_dubbo(bytes);
    let without_raw = dubbo::Frame {
        raw: Bytes::new(),
        ..got.clone()
    };
    assert_eq!(&without_raw, expected);
    let mut dst = BytesMut::new();
    expected.encode(&mut dst).unwrap();
    assert_eq!(&dst[..], bytes);
    assert_eq!(&got.to_bytes().unwrap()[..], bytes);
    got
}

fn strings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn dubbo_request() {
    let bytes = common::dubbo_request();
    let expected = dubbo::Frame {
        flag: 0xc2,
        status: 0,
        request_id: 1,
        body: Bytes::copy_from_slice(&bytes[16..]),
        raw: Bytes::new(),
    };
    let f = dubbo_pair(&bytes, &expected);
    assert!(f.is_request() && f.is_two_way() && !f.is_event());
    assert_eq!(f.serialization(), dubbo::HESSIAN2);
    let inv = dubbo::parse_invocation(&f.body).unwrap();
    assert_eq!(inv.dubbo_version, "2.0.2");
    assert_eq!(inv.service, "com.example.DemoService");
    assert_eq!(inv.version, "1.0.0");
    assert_eq!(inv.method, "sayHello");
    assert_eq!(inv.param_types, "Ljava/lang/String;");
    assert_eq!(&f.body[inv.args.clone()], b"\x05world");
    assert_eq!(inv.attachments_start, inv.args.end);
    assert_eq!(f.body[inv.attachments_start], b'H');
    assert_eq!(
        inv.attachments,
        strings(&[
            ("path", "com.example.DemoService"),
            ("interface", "com.example.DemoService"),
            ("version", "1.0.0"),
            ("timeout", "3000"),
        ])
    );
    assert_eq!(inv.attachment("timeout"), Some("3000"));
    // Emit: the same head, args and attachments give the same body.
    let mut body = BytesMut::new();
    dubbo::encode_invocation(&inv, &f.body[inv.args.clone()], &inv.attachments, &mut body);
    assert_eq!(&body[..], &f.body[..]);
}

#[test]
fn dubbo_request_with_object_list_and_nested_map() {
    let bytes = common::dubbo_request_complex();
    let f = decode_dubbo(&bytes);
    let inv = dubbo::parse_invocation(&f.body).unwrap();
    assert_eq!(inv.service, "com.example.UserService");
    assert_eq!(inv.version, "2.0");
    assert_eq!(inv.method, "save");
    assert_eq!(dubbo::argument_count(&inv.param_types), Ok(3));
    let args = &f.body[inv.args.clone()];
    assert_eq!(args.first(), Some(&b'C'));
    assert_eq!(args.last(), Some(&b'Z'));
    // The non-string "count" entry is skipped.
    assert_eq!(
        inv.attachments,
        strings(&[
            ("path", "com.example.UserService"),
            ("interface", "com.example.UserService"),
            ("version", "2.0"),
        ])
    );
    // skip_value walks the three arguments one by one.
    let mut r = Reader::new(args);
    let mut ends = Vec::new();
    while !r.is_empty() {
        r.skip_value().unwrap();
        ends.push(r.position());
    }
    assert_eq!(ends.len(), 3);
    assert_eq!(args[ends[0]], 0x7a);
    assert_eq!(args[ends[1]], b'H');
    // Too shallow a depth limit fails cleanly on the nested map.
    let mut r = Reader::with_max_depth(&args[ends[1]..], 1);
    assert!(r.skip_value().is_err());
    let mut body = BytesMut::new();
    dubbo::encode_invocation(&inv, args, &inv.attachments, &mut body);
    let again = dubbo::parse_invocation(&body).unwrap();
    assert_eq!(again.attachments, inv.attachments);
    assert_eq!(&body[again.args.clone()], args);
}

#[test]
fn dubbo_oneway() {
    let bytes = common::dubbo_oneway();
    let f = decode_dubbo(&bytes);
    assert!(f.is_request() && !f.is_two_way());
    let inv = dubbo::parse_invocation(&f.body).unwrap();
    assert_eq!(inv.version, "", "hessian null reads as empty");
    assert_eq!(inv.param_types, "Ljava/lang/String;I");
    assert_eq!(&f.body[inv.args.clone()], b"\x02hi\x95");
    assert!(inv.attachments.is_empty());
    let mut body = BytesMut::new();
    dubbo::encode_invocation(&inv, &f.body[inv.args.clone()], &[], &mut body);
    assert_eq!(
        &body[..],
        &f.body[..],
        "an empty version is written as null"
    );
}

#[test]
fn dubbo_response() {
    let bytes = common::dubbo_response();
    let expected = dubbo::Frame {
        flag: 0x02,
        status: dubbo::status::OK,
        request_id: 1,
        body: Bytes::from_static(b"\x91\x0bhello world"),
        raw: Bytes::new(),
    };
    let f = dubbo_pair(&bytes, &expected);
    assert!(!f.is_request() && !f.is_event());
}

#[test]
fn dubbo_heartbeat_and_reply() {
    let hb = decode_dubbo(&common::dubbo_heartbeat());
    assert!(hb.is_request() && hb.is_event() && hb.is_two_way());
    assert_eq!(hb.request_id, 4);
    let reply = dubbo::Frame::heartbeat_reply(&hb);
    let f = dubbo_pair(&common::dubbo_heartbeat_reply(), &reply);
    assert_eq!(f.flag, 0x22);
    assert_eq!(f.status, 20);
    assert_eq!(&f.body[..], b"N");
}

#[test]
fn dubbo_error_response() {
    let req = decode_dubbo(&common::dubbo_request());
    let reply = dubbo::Frame::error_response(
        &req,
        dubbo::status::SERVICE_NOT_FOUND,
        "404|router unavailable",
    );
    let f = dubbo_pair(&common::dubbo_error_response(), &reply);
    assert_eq!(
        Reader::new(&f.body).read_string().unwrap().as_deref(),
        Some("404|router unavailable")
    );
}

#[test]
fn dubbo_every_prefix_needs_more() {
    for (name, bytes) in common::dubbo_all() {
        for n in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..n]);
            assert_eq!(
                dubbo::Frame::decode(&mut buf, MAX),
                Ok(None),
                "{name}[..{n}]"
            );
            assert_eq!(buf.len(), n);
        }
    }
}

#[test]
fn dubbo_malformed() {
    let good = common::dubbo_request();
    for bad_magic in [[0xdb, 0xbb], [0xda, 0xbc]] {
        let mut bad = good.clone();
        bad[..2].copy_from_slice(&bad_magic);
        let mut buf = BytesMut::from(&bad[..]);
        assert!(matches!(
            dubbo::Frame::decode(&mut buf, MAX),
            Err(Error::Malformed { .. })
        ));
        assert_eq!(buf.len(), bad.len());
        assert_eq!(dubbo::peek_request_id(&bad), None);
        assert!(!dubbo::set_request_id(&mut bad, 9));
    }
    let mut buf = BytesMut::from(&good[..]);
    assert!(matches!(
        dubbo::Frame::decode(&mut buf, 100),
        Err(Error::TooLarge {
            protocol: "dubbo",
            ..
        })
    ));
    let mut huge = good[..16].to_vec();
    huge[12..16].copy_from_slice(&[0xff; 4]);
    let mut buf = BytesMut::from(&huge[..]);
    assert!(matches!(
        dubbo::Frame::decode(&mut buf, MAX),
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(dubbo::peek_request_id(&huge), Some(1));
    // Bodies that are not invocations.
    assert!(dubbo::parse_invocation(b"").is_err());
    assert!(dubbo::parse_invocation(&[0x01, b'2', 0x01]).is_err());
    let mut body = BytesMut::new();
    for s in ["2.0.2", "S", "1", "m", "Lbroken"] {
        hessian2::write_string(&mut body, s);
    }
    assert!(dubbo::parse_invocation(&body).is_err());
}

#[test]
fn dubbo_set_request_id() {
    for (name, bytes) in common::dubbo_all() {
        let mut copy = bytes.clone();
        assert!(dubbo::set_request_id(&mut copy, u64::MAX - 1), "{name}");
        assert_eq!(decode_dubbo(&copy).request_id, u64::MAX - 1);
        assert_eq!(dubbo::peek_request_id(&copy), Some(u64::MAX - 1));
        assert_eq!(copy[..4], bytes[..4]);
        assert_eq!(copy[12..], bytes[12..]);
    }
    let mut short = common::dubbo_request()[..15].to_vec();
    assert!(!dubbo::set_request_id(&mut short, 1));
    assert_eq!(dubbo::peek_request_id(&short[..11]), None);
    assert_eq!(dubbo::peek_request_id(&short[..12]), Some(1));
}

// -------------------------------------------------------------------------------- Hessian2

#[test]
fn hessian2_chunked_string() {
    let bytes = common::hessian2_chunked_string();
    assert_eq!(bytes[0], b'R');
    let mut r = Reader::new(&bytes);
    let s = r.read_string().unwrap().unwrap();
    assert!(r.is_empty());
    assert_eq!(s.encode_utf16().count(), 32767 + 2 + 7231);
    assert!(s.contains('\u{1F600}'));
}

#[test]
fn hessian2_seeds_skip_cleanly() {
    for (name, bytes) in common::hessian2_all() {
        let mut r = Reader::new(&bytes);
        while !r.is_empty() {
            r.skip_value()
                .unwrap_or_else(|e| panic!("{name} at {}: {e}", r.position()));
        }
    }
    let map = common::hessian2_all()
        .into_iter()
        .find(|(n, _)| *n == "hessian2_string_map")
        .unwrap()
        .1;
    assert_eq!(
        Reader::new(&map).read_string_map().unwrap(),
        strings(&[("k", "λλ")])
    );
}
