//! The wire shapes of the RPC benchmark (`rpc.sh`, binaries `rpc-echo` and `rpc-load`), all
//! on mosn-wire's codecs: SOFARPC-like Bolt requests and Dubbo hessian2 invocations, the
//! echo upstream's answers, and the load generator's answer checks.
//!
//! Requests are encoded once into a [`RequestTemplate`]; each request sent is a copy with its
//! request id written in place, so the load generator spends its CPU on IO, not on encoding.

use bytes::{Bytes, BytesMut};
use mosn_wire::{bolt, dubbo, hessian2};

/// The RPC protocol under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// SOFARPC Bolt v1.
    Bolt,
    /// Dubbo, hessian2 serialization.
    Dubbo,
}

impl Proto {
    /// The name used on command lines and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Bolt => "bolt",
            Proto::Dubbo => "dubbo",
        }
    }

    /// The value of the routing field `service` of this protocol's requests (Bolt: the
    /// header map's `service`; Dubbo: the invocation's service name).
    pub fn route_service(self) -> &'static str {
        match self {
            Proto::Bolt => BOLT_SERVICE,
            Proto::Dubbo => SERVICE,
        }
    }
}

/// Largest frame either tool accepts.
pub const MAX_FRAME: usize = 16 << 20;
/// The interface called.
pub const SERVICE: &str = "com.alipay.test.EchoService";
/// SOFARPC's unique service name (interface:version), Bolt's `service` header.
pub const BOLT_SERVICE: &str = "com.alipay.test.EchoService:1.0";
/// The Dubbo service version.
pub const DUBBO_SERVICE_VERSION: &str = "1.0.0";
/// The method called.
pub const METHOD: &str = "echo";
/// The Bolt request class, as SOFARPC sends it.
pub const BOLT_REQUEST_CLASS: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";
/// The Bolt response class.
pub const BOLT_RESPONSE_CLASS: &str = "com.alipay.sofa.rpc.core.response.SofaResponse";
/// Bytes of Bolt request content (the serialized SofaRequest stand-in).
pub const BOLT_CONTENT_LEN: usize = 200;
/// Characters of the Dubbo call's one string argument, and of the echoed return value.
pub const DUBBO_ARG_LEN: usize = 160;

/// Hessian2 Dubbo response body tags (an `int` 0..2 in the compact form `0x90 + n`).
const DUBBO_RESPONSE_VALUE: u8 = 0x91;
const DUBBO_RESPONSE_NULL: u8 = 0x92;

/// `len` printable bytes, deterministic.
fn filler(len: usize) -> String {
    "abcdefghijklmnopqrstuvwxyz0123456789"
        .chars()
        .cycle()
        .take(len)
        .collect()
}

/// A SOFARPC-like Bolt v1 request: class SofaRequest, the header map SOFARPC writes (service,
/// target service, method, a few trace keys), [`BOLT_CONTENT_LEN`] bytes of content.
pub fn bolt_request(id: u32) -> bolt::Frame {
    let mut header = bolt::HeaderMap::new();
    for (k, v) in [
        ("service", BOLT_SERVICE),
        ("sofa_head_target_service", BOLT_SERVICE),
        ("sofa_head_method_name", METHOD),
        ("sofa_head_target_app", "echo-server"),
        (
            "rpc_trace_context.sofaTraceId",
            "0a0b0c0d1732650000000100112345",
        ),
        ("rpc_trace_context.sofaRpcId", "0.1"),
        ("rpc_trace_context.sofaCallerApp", "bench-client"),
        ("rpc_trace_context.sofaCallerIp", "127.0.0.1"),
        ("rpc_trace_context.sofaPenAttrs", ""),
    ] {
        header.push(
            Bytes::from_static(k.as_bytes()),
            Bytes::from_static(v.as_bytes()),
        );
    }
    let mut content = BytesMut::new();
    // a hessian2 string, like the start of a serialized SofaRequest, padded to the length
    hessian2::write_string(&mut content, &filler(BOLT_CONTENT_LEN.saturating_sub(3)));
    content.resize(BOLT_CONTENT_LEN, b'.');
    bolt::Frame {
        proto: bolt::PROTO_V1,
        ver1: 0,
        kind: bolt::TYPE_REQUEST,
        cmd_code: bolt::CMD_REQUEST,
        ver2: 1,
        request_id: id,
        codec: bolt::CODEC_HESSIAN2,
        switch: 0,
        timeout: 3000,
        status: 0,
        class: Bytes::from_static(BOLT_REQUEST_CLASS.as_bytes()),
        header,
        content: content.freeze(),
        raw: Bytes::new(),
    }
}

/// A Dubbo two-way hessian2 request: `echo(String)` on [`SERVICE`] version
/// [`DUBBO_SERVICE_VERSION`], with the attachments a Java consumer sends.
pub fn dubbo_request(id: u64) -> dubbo::Frame {
    let head = dubbo::Invocation {
        dubbo_version: "2.0.2".to_owned(),
        service: SERVICE.to_owned(),
        version: DUBBO_SERVICE_VERSION.to_owned(),
        method: METHOD.to_owned(),
        param_types: "Ljava/lang/String;".to_owned(),
        args: 0..0,
        attachments: Vec::new(),
        attachments_start: 0,
    };
    let mut args = BytesMut::new();
    hessian2::write_string(&mut args, &filler(DUBBO_ARG_LEN));
    let attachments: Vec<(String, String)> = [
        ("path", SERVICE),
        ("interface", SERVICE),
        ("version", DUBBO_SERVICE_VERSION),
        ("timeout", "3000"),
        ("remote.application", "bench-client"),
        ("traceId", "0a0b0c0d1732650000000100112345"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let mut body = BytesMut::new();
    dubbo::encode_invocation(&head, &args, &attachments, &mut body);
    dubbo::Frame {
        flag: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
        status: 0,
        request_id: id,
        body: body.freeze(),
        raw: Bytes::new(),
    }
}

/// One request of `proto`, encoded once; [`RequestTemplate::append`] copies it with a new id.
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    proto: Proto,
    bytes: Bytes,
}

impl RequestTemplate {
    /// The template of `proto`'s request.
    pub fn new(proto: Proto) -> Result<RequestTemplate, mosn_wire::Error> {
        let bytes = match proto {
            Proto::Bolt => bolt_request(0).to_bytes()?,
            Proto::Dubbo => dubbo_request(0).to_bytes()?,
        };
        Ok(RequestTemplate { proto, bytes })
    }

    /// Encoded length of one request.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never empty; for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends one request with request id `id` to `dst`.
    pub fn append(&self, id: u32, dst: &mut BytesMut) {
        let start = dst.len();
        dst.extend_from_slice(&self.bytes);
        if let Some(frame) = dst.get_mut(start..) {
            match self.proto {
                Proto::Bolt => bolt::set_request_id(frame, id),
                Proto::Dubbo => dubbo::set_request_id(frame, u64::from(id)),
            };
        }
    }
}

/// The echo upstream's answers: Bolt gets `response_to` (success, class SofaResponse) with
/// the request's content echoed, Dubbo a status-OK hessian2 return value of the argument's
/// size; heartbeats are acked; one-way requests get nothing.
#[derive(Clone, Debug)]
pub struct Echo {
    proto: Proto,
    dubbo_body: Bytes,
}

impl Echo {
    /// An echo for `proto`.
    pub fn new(proto: Proto) -> Echo {
        let mut body = BytesMut::new();
        body.extend_from_slice(&[DUBBO_RESPONSE_VALUE]);
        hessian2::write_string(&mut body, &filler(DUBBO_ARG_LEN));
        Echo {
            proto,
            dubbo_body: body.freeze(),
        }
    }

    /// Decodes every whole frame in `input` and appends the answers to `out`, in order.
    /// Returns how many requests were answered; `Err` on a malformed stream.
    pub fn answer_all(
        &self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<usize, mosn_wire::Error> {
        let mut n = 0;
        match self.proto {
            Proto::Bolt => {
                while let Some(req) = bolt::Frame::decode(input, MAX_FRAME)? {
                    if req.is_heartbeat() {
                        bolt::Frame::response_to(&req, bolt::status::SUCCESS).encode(out)?;
                        continue;
                    }
                    if !req.is_request() || req.is_oneway() {
                        continue;
                    }
                    let mut resp = bolt::Frame::response_to(&req, bolt::status::SUCCESS);
                    resp.class = Bytes::from_static(BOLT_RESPONSE_CLASS.as_bytes());
                    resp.content = req.content.clone();
                    resp.encode(out)?;
                    n += 1;
                }
            }
            Proto::Dubbo => {
                while let Some(req) = dubbo::Frame::decode(input, MAX_FRAME)? {
                    if !req.is_request() || !req.is_two_way() {
                        continue;
                    }
                    if req.is_event() {
                        dubbo::Frame::heartbeat_reply(&req).encode(out)?;
                        continue;
                    }
                    dubbo::Frame {
                        flag: req.serialization(),
                        status: dubbo::status::OK,
                        request_id: req.request_id,
                        body: self.dubbo_body.clone(),
                        raw: Bytes::new(),
                    }
                    .encode(out)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// One answer as the load generator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A success response to request `id`.
    Ok(u32),
    /// A response to request `id` that is not a success, and why.
    Bad(u32, &'static str),
}

/// The next whole answer at the front of `buf` (`Ok(None)`: more bytes needed; `Err`: the
/// stream is malformed).
pub fn next_answer(proto: Proto, buf: &mut BytesMut) -> Result<Option<Answer>, mosn_wire::Error> {
    Ok(match proto {
        Proto::Bolt => bolt::Frame::decode(buf, MAX_FRAME)?.map(|f| {
            if f.kind != bolt::TYPE_RESPONSE || f.cmd_code != bolt::CMD_RESPONSE {
                Answer::Bad(f.request_id, "not a Bolt response")
            } else if f.status != bolt::status::SUCCESS {
                Answer::Bad(f.request_id, "Bolt status not SUCCESS")
            } else if f.content.len() != BOLT_CONTENT_LEN {
                Answer::Bad(f.request_id, "Bolt response content of the wrong size")
            } else {
                Answer::Ok(f.request_id)
            }
        }),
        Proto::Dubbo => dubbo::Frame::decode(buf, MAX_FRAME)?.map(|f| {
            let id = u32::try_from(f.request_id).unwrap_or(u32::MAX);
            if f.is_request() || f.is_event() {
                Answer::Bad(id, "not a Dubbo response")
            } else if f.status != dubbo::status::OK {
                Answer::Bad(id, "Dubbo status not OK")
            } else if !matches!(
                f.body.first(),
                Some(&DUBBO_RESPONSE_VALUE | &DUBBO_RESPONSE_NULL)
            ) {
                Answer::Bad(id, "Dubbo response body is not a return value")
            } else {
                Answer::Ok(id)
            }
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_round_trip_through_the_echo() {
        for proto in [Proto::Bolt, Proto::Dubbo] {
            let t = RequestTemplate::new(proto).unwrap();
            let mut wire = BytesMut::new();
            for id in [7u32, 8, 9] {
                t.append(id, &mut wire);
            }
            assert_eq!(wire.len(), 3 * t.len());
            let mut out = BytesMut::new();
            assert_eq!(Echo::new(proto).answer_all(&mut wire, &mut out).unwrap(), 3);
            assert!(wire.is_empty());
            for id in [7u32, 8, 9] {
                assert_eq!(next_answer(proto, &mut out).unwrap(), Some(Answer::Ok(id)));
            }
            assert_eq!(next_answer(proto, &mut out).unwrap(), None);
        }
    }

    #[test]
    fn requests_carry_the_routing_fields() {
        let b = bolt::Frame::decode(
            &mut BytesMut::from(&bolt_request(1).to_bytes().unwrap()[..]),
            MAX_FRAME,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            b.header.get(b"service").unwrap().as_ref(),
            BOLT_SERVICE.as_bytes()
        );
        assert_eq!(b.content.len(), BOLT_CONTENT_LEN);
        let d = dubbo_request(1);
        let inv = dubbo::parse_invocation(&d.body).unwrap();
        assert_eq!(inv.service, SERVICE);
        assert_eq!(inv.version, DUBBO_SERVICE_VERSION);
        assert_eq!(inv.method, METHOD);
        assert_eq!(inv.attachment("interface"), Some(SERVICE));
    }

    #[test]
    fn bad_status_is_reported() {
        let req = bolt_request(5);
        let mut out = BytesMut::new();
        bolt::Frame::response_to(&req, bolt::status::ERROR)
            .encode(&mut out)
            .unwrap();
        assert!(matches!(
            next_answer(Proto::Bolt, &mut out).unwrap(),
            Some(Answer::Bad(5, _))
        ));
        let d = dubbo_request(6);
        dubbo::Frame::error_response(&d, dubbo::status::SERVER_ERROR, "x")
            .encode(&mut out)
            .unwrap();
        assert!(matches!(
            next_answer(Proto::Dubbo, &mut out).unwrap(),
            Some(Answer::Bad(6, _))
        ));
    }
}
