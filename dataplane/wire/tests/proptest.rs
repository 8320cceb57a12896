//! Property round trips: arbitrary Bolt frames, Dubbo invocations and hessian2 strings.

use bytes::{Bytes, BytesMut};
use mosn_wire::bolt::{self, HeaderMap};
use mosn_wire::dubbo;
use mosn_wire::hessian2::{self, Reader};
use proptest::collection::vec;
use proptest::prelude::*;

/// Header keys/values from a small alphabet (so duplicates and empties are common).
fn small_bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        Just(Bytes::from_static(b"service")),
        vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..24).prop_map(Bytes::from),
    ]
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    vec((small_bytes(), small_bytes()), 0..10).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.push(k, v);
        }
        h
    })
}

prop_compose! {
    fn bolt_frame()(
        v2 in any::<bool>(),
        ver1 in prop_oneof![Just(1u8), Just(2u8), any::<u8>()],
        kind in 0u8..=2,
        cmd_code in prop_oneof![Just(0u16), Just(1), Just(2), Just(100), any::<u16>()],
        ver2 in any::<u8>(),
        request_id in any::<u32>(),
        codec in any::<u8>(),
        switch in any::<u8>(),
        timeout in any::<i32>(),
        status in any::<u16>(),
        class in vec(any::<u8>(), 0..64),
        header in header_map(),
        content in vec(any::<u8>(), 0..512),
    ) -> bolt::Frame {
        let response = kind == bolt::TYPE_RESPONSE;
        bolt::Frame {
            proto: if v2 { bolt::PROTO_V2 } else { bolt::PROTO_V1 },
            ver1: if v2 { ver1 } else { 0 },
            kind,
            cmd_code,
            ver2,
            request_id,
            codec,
            switch: if v2 { switch } else { 0 },
            timeout: if response { 0 } else { timeout },
            status: if response { status } else { 0 },
            class: Bytes::from(class),
            header,
            content: Bytes::from(content),
            raw: Bytes::new(),
        }
    }
}

/// Any `char` string, with astral-plane characters common.
fn any_string(max: usize) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            any::<char>(),
            Just('\u{1F600}'),
            Just('é'),
            Just('中'),
            Just('a')
        ],
        0..max,
    )
    .prop_map(String::from_iter)
}

/// A pre-encoded argument and its descriptor.
fn argument() -> impl Strategy<Value = (String, Vec<u8>)> {
    prop_oneof![
        any_string(40).prop_map(|s| {
            let mut b = BytesMut::new();
            hessian2::write_string(&mut b, &s);
            ("Ljava/lang/String;".to_string(), b.to_vec())
        }),
        (-16i32..=47).prop_map(|i| ("I".to_string(), vec![(0x90 + i) as u8])),
        Just(("Ljava/lang/Object;".to_string(), b"N".to_vec())),
        Just((
            "[Ljava/lang/String;".to_string(),
            b"\x72\x07[string\x01a\x01b".to_vec()
        )),
        Just((
            "Ljava/util/Map;".to_string(),
            b"H\x01k\x91\x01m\x79\x90Z".to_vec()
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn bolt_encode_decode(frame in bolt_frame(), split in any::<prop::sample::Index>()) {
        let mut dst = BytesMut::new();
        frame.encode(&mut dst).unwrap();
        let bytes = dst.freeze();
        prop_assert_eq!(bytes.len(), frame.encoded_len().unwrap());
        // Fed in two pieces: the first never yields a frame.
        let cut = split.index(bytes.len());
        let mut buf = BytesMut::from(&bytes[..cut]);
        prop_assert_eq!(bolt::Frame::decode(&mut buf, usize::MAX), Ok(None));
        buf.extend_from_slice(&bytes[cut..]);
        let got = bolt::Frame::decode(&mut buf, usize::MAX).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(&got.raw, &bytes);
        prop_assert_eq!(bolt::Frame { raw: Bytes::new(), ..got.clone() }, frame);
        // Re-encoding the decoded frame is byte-identical (CRC included).
        prop_assert_eq!(got.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn dubbo_frame_encode_decode(
        flag in any::<u8>(),
        status in any::<u8>(),
        request_id in any::<u64>(),
        body in vec(any::<u8>(), 0..256),
    ) {
        let frame = dubbo::Frame { flag, status, request_id, body: Bytes::from(body), raw: Bytes::new() };
        let bytes = frame.to_bytes().unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let got = dubbo::Frame::decode(&mut buf, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(&got.raw, &bytes);
        prop_assert_eq!(dubbo::Frame { raw: Bytes::new(), ..got }, frame);
    }

    #[test]
    fn dubbo_invocation_round_trip(
        dubbo_version in any_string(12),
        service in any_string(60),
        version in any_string(8),
        method in any_string(20),
        args in vec(argument(), 0..6),
        attachments in vec((any_string(16), any_string(40)), 0..8),
    ) {
        let param_types: String = args.iter().map(|(d, _)| d.as_str()).collect();
        let arg_bytes: Vec<u8> = args.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        let head = dubbo::Invocation {
            dubbo_version, service, version, method, param_types,
            ..dubbo::Invocation::default()
        };
        let mut body = BytesMut::new();
        dubbo::encode_invocation(&head, &arg_bytes, &attachments, &mut body);
        let inv = dubbo::parse_invocation(&body).unwrap();
        prop_assert_eq!(&inv.dubbo_version, &head.dubbo_version);
        prop_assert_eq!(&inv.service, &head.service);
        prop_assert_eq!(&inv.version, &head.version);
        prop_assert_eq!(&inv.method, &head.method);
        prop_assert_eq!(&inv.param_types, &head.param_types);
        prop_assert_eq!(&body[inv.args.clone()], &arg_bytes[..]);
        prop_assert_eq!(inv.attachments_start, inv.args.end);
        prop_assert_eq!(&inv.attachments, &attachments);
        // The head read alone and the tail read from where it ends give the same fields.
        let h = dubbo::parse_invocation_head(&body).unwrap();
        prop_assert_eq!(&*h.service, head.service.as_bytes());
        prop_assert_eq!(&*h.method, head.method.as_bytes());
        let tail = dubbo::parse_invocation_tail(&body, h.rest).unwrap();
        prop_assert_eq!(&tail.args, &inv.args);
        prop_assert_eq!(tail.attachments.len(), attachments.len());
        // Emitting what was parsed gives the same body.
        let mut again = BytesMut::new();
        dubbo::encode_invocation(&inv, &body[inv.args.clone()], &inv.attachments, &mut again);
        prop_assert_eq!(again, body);
    }

    #[test]
    fn hessian2_string_round_trip(s in any_string(160)) {
        let mut b = BytesMut::new();
        hessian2::write_string(&mut b, &s);
        let mut r = Reader::new(&b);
        prop_assert_eq!(r.read_string().unwrap(), Some(s));
        prop_assert!(r.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Strings past 32768 UTF-16 units are chunked; pairs near the chunk edges survive.
    #[test]
    fn hessian2_long_string_round_trip(
        n in 32_000usize..70_000,
        pattern in vec(prop_oneof![Just('a'), Just('\u{1F600}'), Just('ü'), Just('中')], 1..5),
    ) {
        let s: String = pattern.iter().copied().cycle().take(n).collect();
        let mut b = BytesMut::new();
        hessian2::write_string(&mut b, &s);
        if s.encode_utf16().count() > hessian2::CHUNK_UNITS {
            prop_assert_eq!(b[0], b'R');
        }
        let mut r = Reader::new(&b);
        prop_assert_eq!(r.read_string().unwrap(), Some(s));
        prop_assert!(r.is_empty());
        let mut r = Reader::new(&b);
        r.skip_value().unwrap();
        prop_assert!(r.is_empty());
    }
}
