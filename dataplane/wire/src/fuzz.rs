//! Fuzz entry points, shared by the cargo-fuzz targets (`/fuzz/fuzz_targets/*.rs`, nightly)
//! and the bounded in-suite smoke run (`tests/fuzz_smoke.rs`, stable). Each takes arbitrary
//! bytes; any panic is a finding: either a decoder panicked on untrusted input or a stated
//! property (below) does not hold.

#![allow(clippy::expect_used, clippy::indexing_slicing)]

use bytes::BytesMut;

use crate::{bolt, dubbo, hessian2};

/// Frame limit used by the entry points (large enough for every seed, small enough that a
/// hostile length is rejected rather than waited for).
pub const MAX_FRAME: usize = 1 << 20;

/// Decodes Bolt frames from `data` until it needs more bytes or fails. For every decoded frame:
/// re-encoding gives exactly its raw bytes (unless a Java-null header entry was dropped: then
/// re-encoding decodes back to an equal frame), rewriting its request id in place keeps it
/// decodable with the new id, and its local replies encode.
pub fn bolt(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        match bolt::Frame::decode(&mut buf, MAX_FRAME) {
            Ok(Some(frame)) => check_bolt(&frame),
            Ok(None) => {
                // Waiting only ever happens for a frame within the limit.
                assert!(buf.len() < MAX_FRAME);
                break;
            }
            Err(_) => {
                // The buffer is untouched: the reply to a codec error can find the id.
                if buf.len() >= 10 && matches!(buf[0], bolt::PROTO_V1 | bolt::PROTO_V2) {
                    assert!(bolt::peek_request_id(&buf).is_some());
                }
                break;
            }
        }
    }
}

fn check_bolt(frame: &bolt::Frame) {
    let view = bolt::Packet::new_checked(&frame.raw[..]).expect("decoded frame has a valid view");
    assert_eq!(view.frame_len(), frame.raw.len());
    let encoded = frame.to_bytes().expect("decoded frame re-encodes");
    let exact = frame.header.encoded_len() == usize::from(view.header_len());
    if exact {
        assert_eq!(
            encoded, frame.raw,
            "re-encoded bytes differ from the decoded ones"
        );
    } else {
        // Java-null entries were dropped: the canonical form must be a fixpoint.
        let mut again = BytesMut::from(&encoded[..]);
        let second = bolt::Frame::decode(&mut again, usize::MAX)
            .expect("canonical form decodes")
            .expect("canonical form is whole");
        assert!(again.is_empty());
        assert_eq!(second.header, frame.header);
        assert_eq!(second.content, frame.content);
    }
    // In-place id rewrite keeps the frame (and its CRC) valid.
    let mut copy = frame.raw.to_vec();
    let id = frame.request_id ^ 0x5a5a_5a5a;
    assert!(bolt::set_request_id(&mut copy, id));
    assert_eq!(bolt::peek_request_id(&copy), Some((frame.proto, id)));
    let mut again = BytesMut::from(&copy[..]);
    let rewritten = bolt::Frame::decode(&mut again, usize::MAX)
        .expect("rewritten frame decodes")
        .expect("rewritten frame is whole");
    assert_eq!(rewritten.request_id, id);
    assert_eq!(rewritten.content, frame.content);
    // Local replies always encode.
    let reply = bolt::Frame::response_to(frame, bolt::status::CODEC_EXCEPTION);
    let bytes = reply.to_bytes().expect("reply encodes");
    let mut b = BytesMut::from(&bytes[..]);
    let back = bolt::Frame::decode(&mut b, usize::MAX)
        .expect("reply decodes")
        .expect("reply is whole");
    assert_eq!(back.request_id, frame.request_id);
    assert!(back.is_response());
}

/// Decodes Dubbo frames from `data`; each re-encodes to exactly its raw bytes, and the body of
/// every non-event request goes through [`dubbo::parse_invocation`] (which must not panic; when
/// it succeeds, re-encoding the invocation parses back to the same fields).
pub fn dubbo(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        match dubbo::Frame::decode(&mut buf, MAX_FRAME) {
            Ok(Some(frame)) => check_dubbo(&frame),
            Ok(None) => break,
            Err(_) => {
                if buf.len() >= 12 && buf[..2] == dubbo::MAGIC {
                    assert!(dubbo::peek_request_id(&buf).is_some());
                }
                break;
            }
        }
    }
    // The body parser also sees the raw input.
    invocation(data);
}

fn check_dubbo(frame: &dubbo::Frame) {
    let encoded = frame.to_bytes().expect("decoded frame re-encodes");
    assert_eq!(
        encoded, frame.raw,
        "re-encoded bytes differ from the decoded ones"
    );
    let mut copy = frame.raw.to_vec();
    let id = frame.request_id ^ 0x5a5a_5a5a_5a5a_5a5a;
    assert!(dubbo::set_request_id(&mut copy, id));
    assert_eq!(dubbo::peek_request_id(&copy), Some(id));
    if frame.is_request() && !frame.is_event() {
        invocation(&frame.body);
    }
    let reply = dubbo::Frame::error_response(frame, dubbo::status::BAD_REQUEST, "codec error");
    let bytes = reply.to_bytes().expect("reply encodes");
    let mut b = BytesMut::from(&bytes[..]);
    let back = dubbo::Frame::decode(&mut b, usize::MAX)
        .expect("reply decodes")
        .expect("reply is whole");
    assert_eq!(back.request_id, frame.request_id);
    let msg = hessian2::Reader::new(&back.body).read_string();
    assert_eq!(msg, Ok(Some("codec error".to_string())));
}

fn invocation(body: &[u8]) {
    // The head alone (what routing reads first) never panics either, and agrees with the
    // whole parse when that succeeds.
    let head = dubbo::parse_invocation_head(body);
    let Ok(inv) = dubbo::parse_invocation(body) else {
        return;
    };
    let head = head.expect("a body whose invocation parses has a head");
    assert_eq!(&*head.dubbo_version, inv.dubbo_version.as_bytes());
    assert_eq!(&*head.service, inv.service.as_bytes());
    assert_eq!(&*head.version, inv.version.as_bytes());
    assert_eq!(&*head.method, inv.method.as_bytes());
    assert!(head.rest <= inv.args.start);
    assert!(inv.args.start <= inv.args.end && inv.args.end <= body.len());
    assert_eq!(inv.attachments_start, inv.args.end);
    let args = body
        .get(inv.args.clone())
        .expect("args range is inside the body");
    let mut out = BytesMut::new();
    dubbo::encode_invocation(&inv, args, &inv.attachments, &mut out);
    let again = dubbo::parse_invocation(&out).expect("re-encoded invocation parses");
    assert_eq!(again.dubbo_version, inv.dubbo_version);
    assert_eq!(again.service, inv.service);
    assert_eq!(again.version, inv.version);
    assert_eq!(again.method, inv.method);
    assert_eq!(again.param_types, inv.param_types);
    assert_eq!(again.attachments, inv.attachments);
    assert_eq!(out.get(again.args.clone()), Some(args));
}

/// Runs the hessian2 [`hessian2::Reader`] over `data` in every mode: a string loop, a value
/// skipping loop, a string map, and the invocation parser; none may panic. A string that reads
/// back is written again and must read back equal.
pub fn hessian2(data: &[u8]) {
    let mut r = hessian2::Reader::new(data);
    while let Ok(Some(s)) = r.read_string() {
        let mut out = BytesMut::new();
        hessian2::write_string(&mut out, &s);
        let back = hessian2::Reader::new(&out).read_string();
        assert_eq!(back, Ok(Some(s)));
    }
    let mut r = hessian2::Reader::new(data);
    let mut last = r.position();
    while r.skip_value().is_ok() {
        assert!(r.position() > last, "skip_value consumed nothing");
        last = r.position();
    }
    let mut r = hessian2::Reader::new(data);
    if let Ok(entries) = r.read_string_map() {
        let mut out = BytesMut::new();
        hessian2::write_string_map(&mut out, &entries);
        assert_eq!(hessian2::Reader::new(&out).read_string_map(), Ok(entries));
    }
    let _ = dubbo::parse_invocation(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = dubbo::argument_count(s);
    }
}
