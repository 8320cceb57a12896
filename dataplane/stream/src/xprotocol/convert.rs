//! RPC frames <-> the common message model, and the `x-mosn-*` fields that carry an RPC
//! message's own fields across an HTTP hop.
//!
//! On the HTTP side a converted Bolt message is: the header-map entries whose names and values
//! are valid HTTP fields, as fields (lower-cased names: `service`, `sofa_head_method_name`...),
//! plus
//!
//! ```text
//!  x-mosn-protocol: bolt
//!  x-mosn-bolt-meta: proto=1;ver1=0;type=1;cmd=1;ver2=1;codec=1;switch=0;timeout=3000;status=0
//!  x-mosn-bolt-class: com.alipay.sofa.rpc.core.request.SofaRequest      (percent-encoded)
//!  x-mosn-bolt-keys: service,sofa_head_method_name,Odd%20Key=%01value   (the manifest)
//! ```
//!
//! The manifest lists every header-map entry in order by its exact (percent-encoded) key;
//! an entry whose value could not travel as an HTTP field carries it inline after `=`. On
//! the way back each manifest entry takes the next value of its lower-cased field, so order,
//! case, duplicates and odd bytes survive, a field removed on the HTTP hop disappears, and
//! fields added there are appended. Dubbo carries `x-mosn-dubbo-meta: flag=..;status=..` and
//! its hessian2 body unchanged. Plain HTTP peers (no `x-mosn-protocol`) are converted from
//! their fields and body, see `request_to_frame` / `response_to_frame`.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use mosn_wire::{bolt, dubbo, hessian2};

use super::{Family, Frame, Meta, ReplyCode, RpcError};
use crate::Body;

/// `x-mosn-protocol`: which RPC protocol an HTTP message carries.
pub const PROTOCOL: HeaderName = HeaderName::from_static("x-mosn-protocol");
/// Bolt's numeric fields.
pub const BOLT_META: HeaderName = HeaderName::from_static("x-mosn-bolt-meta");
/// Bolt's class name.
pub const BOLT_CLASS: HeaderName = HeaderName::from_static("x-mosn-bolt-class");
/// Bolt's header-map manifest.
pub const BOLT_KEYS: HeaderName = HeaderName::from_static("x-mosn-bolt-keys");
/// Dubbo's flag and status.
pub const DUBBO_META: HeaderName = HeaderName::from_static("x-mosn-dubbo-meta");
/// The JVM parameter descriptor a plain HTTP request to Dubbo may set.
pub const DUBBO_PARAMETER_TYPES: HeaderName =
    HeaderName::from_static("x-mosn-dubbo-parameter-types");

/// The Dubbo framework version written when a plain HTTP request is converted.
const DUBBO_VERSION: &str = "2.0.2";
/// Hessian2 compact int 1: Dubbo's RESPONSE_VALUE.
const DUBBO_RESPONSE_VALUE: u8 = 0x91;
/// Hessian2 compact int 2: Dubbo's RESPONSE_NULL_VALUE.
const DUBBO_RESPONSE_NULL: u8 = 0x92;

/// Fields that never become RPC header-map entries (connection-level or ours).
fn reserved(name: &HeaderName) -> bool {
    use http::header;
    let s = name.as_str();
    s.starts_with("x-mosn-")
        || matches!(
            *name,
            header::HOST
                | header::CONTENT_LENGTH
                | header::TRANSFER_ENCODING
                | header::CONNECTION
                | header::TE
                | header::UPGRADE
        )
        || s == "keep-alive"
        || s == "proxy-connection"
}

/// The HTTP field an RPC header entry travels as, when it can.
fn readable(key: &[u8], value: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let name = readable_name(key, value)?;
    Some((name, HeaderValue::from_bytes(value).ok()?))
}

/// [`readable`] for a value already in a `Bytes` (shared, not copied).
fn readable_shared(key: &[u8], value: &Bytes) -> Option<(HeaderName, HeaderValue)> {
    let name = readable_name(key, value)?;
    Some((name, HeaderValue::from_maybe_shared(value.clone()).ok()?))
}

fn readable_name(key: &[u8], value: &[u8]) -> Option<HeaderName> {
    let name = HeaderName::from_bytes(key).ok()?;
    if reserved(&name) {
        return None;
    }
    // Leading/trailing whitespace would be trimmed by an HTTP/1 parser on the way.
    if value.first().is_some_and(|b| *b == b' ' || *b == b'\t')
        || value.last().is_some_and(|b| *b == b' ' || *b == b'\t')
    {
        return None;
    }
    Some(name)
}

/// Percent-encodes `bytes` onto `out`, leaving ASCII letters, digits and `-._~:/@`.
pub fn pct_encode(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b'@')
        {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

fn pct_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// How many values of each field name a walk over a header map has consumed. Maps hold a
/// handful of names: a linear scan beats hashing (and allocates only when one repeats).
#[derive(Default)]
struct Used(Vec<(HeaderName, usize)>);

impl Used {
    /// The index of the next value of `name`, counting this one.
    fn next(&mut self, name: &HeaderName) -> usize {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, i)) => {
                *i += 1;
                *i - 1
            }
            None => {
                self.0.push((name.clone(), 1));
                0
            }
        }
    }

    /// Values of `name` consumed so far.
    fn count(&self, name: &HeaderName) -> usize {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, i)| *i)
    }
}

fn header_value(bytes: Vec<u8>) -> HeaderValue {
    // Percent-encoded and `k=v;` forms are visible ASCII.
    HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A header map's readable entries as HTTP fields, in order.
fn bolt_fields(map: &bolt::HeaderMap, headers: &mut HeaderMap) {
    for (k, v) in map.iter() {
        if let Some((n, v)) = readable_shared(k, v) {
            headers.append(n, v);
        }
    }
}

/// The fields as `headers` iterates them now (what [`fields_unchanged`] compares against).
fn snapshot(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// Are the fields exactly what the conversion made (nothing added, removed or changed)?
/// Then the original bytes may be forwarded.
fn fields_unchanged(meta: &Meta, headers: &HeaderMap) -> bool {
    match &meta.fields {
        None => headers.is_empty(),
        Some(snap) => {
            headers.len() == snap.len()
                && headers
                    .iter()
                    .zip(snap)
                    .all(|((n, v), (sn, sv))| n == sn && v == sv)
        }
    }
}

/// The manifest of a header map.
fn bolt_manifest(map: &bolt::HeaderMap) -> HeaderValue {
    let mut out = Vec::new();
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        pct_encode(&mut out, k);
        if readable(k, v).is_none() {
            out.push(b'=');
            pct_encode(&mut out, v);
        }
    }
    header_value(out)
}

/// Rebuilds a header map from HTTP fields (and a manifest, when there is one).
fn bolt_map_from_fields(headers: &HeaderMap) -> Result<bolt::HeaderMap, RpcError> {
    let mut map = bolt::HeaderMap::new();
    let mut used = Used::default();
    if let Some(manifest) = headers.get(BOLT_KEYS) {
        let bad = || RpcError::Encode("malformed x-mosn-bolt-keys".into());
        for entry in manifest.as_bytes().split(|b| *b == b',') {
            if entry.is_empty() {
                continue;
            }
            let (k, inline) = match entry.iter().position(|b| *b == b'=') {
                Some(i) => (&entry[..i], Some(&entry[i + 1..])),
                None => (entry, None),
            };
            let key = pct_decode(k).ok_or_else(bad)?;
            if let Some(v) = inline {
                let v = pct_decode(v).ok_or_else(bad)?;
                map.push(Bytes::from(key), Bytes::from(v));
                continue;
            }
            let Ok(name) = HeaderName::from_bytes(&key) else {
                return Err(bad());
            };
            let idx = used.next(&name);
            if let Some(v) = headers.get_all(&name).iter().nth(idx) {
                map.push(Bytes::from(key), Bytes::copy_from_slice(v.as_bytes()));
            }
            // else: removed on the HTTP hop.
        }
    }
    // Fields the manifest does not account for (added on the way, or a plain HTTP peer);
    // `date` is what an HTTP server stamps on every response, not part of the message.
    let manifest = headers.contains_key(BOLT_KEYS);
    for name in headers.keys() {
        if reserved(name) || (manifest && name == http::header::DATE) {
            continue;
        }
        let skip = used.count(name);
        for v in headers.get_all(name).iter().skip(skip) {
            map.push(
                Bytes::copy_from_slice(name.as_str().as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            );
        }
    }
    Ok(map)
}

/// Bolt's numeric fields as `k=v;...`.
fn bolt_meta_value(f: &bolt::Frame) -> HeaderValue {
    let s = format!(
        "proto={};ver1={};type={};cmd={};ver2={};codec={};switch={};timeout={};status={}",
        f.proto, f.ver1, f.kind, f.cmd_code, f.ver2, f.codec, f.switch, f.timeout, f.status
    );
    header_value(s.into_bytes())
}

fn parse_kv(v: &HeaderValue) -> HashMap<&str, i64> {
    v.to_str()
        .unwrap_or("")
        .split(';')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A Bolt frame's own fields from `x-mosn-bolt-meta` / `-class`, defaults for a plain peer.
fn bolt_from_fields(headers: &HeaderMap, request: bool) -> Result<bolt::Frame, RpcError> {
    let kv = headers.get(BOLT_META).map(parse_kv).unwrap_or_default();
    let get = |k: &str, d: i64| kv.get(k).copied().unwrap_or(d);
    let class = match headers.get(BOLT_CLASS) {
        Some(c) => Bytes::from(
            pct_decode(c.as_bytes())
                .ok_or_else(|| RpcError::Encode("malformed x-mosn-bolt-class".into()))?,
        ),
        None => Bytes::new(),
    };
    let proto = get("proto", i64::from(bolt::PROTO_V1)) as u8;
    Ok(bolt::Frame {
        proto,
        ver1: get("ver1", if proto == bolt::PROTO_V2 { 1 } else { 0 }) as u8,
        kind: get(
            "type",
            i64::from(if request {
                bolt::TYPE_REQUEST
            } else {
                bolt::TYPE_RESPONSE
            }),
        ) as u8,
        cmd_code: get(
            "cmd",
            i64::from(if request {
                bolt::CMD_REQUEST
            } else {
                bolt::CMD_RESPONSE
            }),
        ) as u16,
        ver2: get("ver2", 1) as u8,
        request_id: 0,
        codec: get("codec", 1) as u8,
        switch: get("switch", 0) as u8,
        timeout: get("timeout", 0) as i32,
        status: get("status", 0) as u16,
        class,
        header: bolt_map_from_fields(headers)?,
        content: Bytes::new(),
        raw: Bytes::new(),
    })
}

/// The routing fields of a Dubbo request: `dubbo`, `service`, `version`, `method`, then
/// the string attachments (MOSN's `getServiceAwareMeta`). A body whose head parses but whose
/// rest does not (a broken argument or attachment) keeps the head's fields: the service and
/// method still route.
fn dubbo_fields(f: &dubbo::Frame, headers: &mut HeaderMap) {
    if !f.is_request() || f.is_event() || f.serialization() != dubbo::HESSIAN2 {
        return;
    }
    let Ok(head) = dubbo::parse_invocation_head(&f.body) else {
        return;
    };
    let mut put = |k: &[u8], v: &[u8]| {
        if let Some((n, v)) = readable(k, v) {
            headers.append(n, v);
        }
    };
    put(b"dubbo", &head.dubbo_version);
    put(b"service", &head.service);
    put(b"version", &head.version);
    put(b"method", &head.method);
    if let Ok(tail) = dubbo::parse_invocation_tail(&f.body, head.rest) {
        for (k, v) in &tail.attachments {
            put(k, v);
        }
    }
}

fn rpc_path(service: Option<&HeaderValue>, method: Option<&HeaderValue>) -> http::Uri {
    let (Some(s), Some(m)) = (service, method) else {
        return http::Uri::from_static("/");
    };
    let mut p = b"/".to_vec();
    pct_encode(&mut p, s.as_bytes());
    p.push(b'/');
    pct_encode(&mut p, m.as_bytes());
    http::Uri::try_from(p).unwrap_or_else(|_| http::Uri::from_static("/"))
}

/// A decoded RPC request as a common-model request: routing fields as headers, content as
/// body, the frame itself in [`Meta`].
pub fn request_from_frame(frame: Frame) -> Request<Body> {
    let mut req = Request::new(Body::full(frame.payload().clone()));
    *req.method_mut() = http::Method::POST;
    let headers = req.headers_mut();
    match &frame {
        Frame::Bolt(f) => bolt_fields(&f.header, headers),
        Frame::Dubbo(f) => dubbo_fields(f, headers),
    }
    let method_key = match frame.family() {
        Family::Bolt => "sofa_head_method_name",
        Family::Dubbo => "method",
    };
    *req.uri_mut() = rpc_path(headers.get("service"), headers.get(method_key));
    let fields = Some(snapshot(req.headers()));
    req.extensions_mut().insert(Meta { frame, fields });
    req
}

/// A decoded RPC response as a common-model response (status mapped to HTTP). Its header
/// map becomes fields only if an HTTP peer needs them ([`render_http`]): an RPC client of
/// the same protocol gets the frame as it came.
pub fn response_from_frame(frame: Frame) -> Response<Body> {
    let mut resp = Response::new(Body::full(frame.payload().clone()));
    let status = match &frame {
        Frame::Bolt(f) => super::http_status_for_bolt(f.status),
        Frame::Dubbo(f) => super::http_status_for_dubbo(f.status),
    };
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.extensions_mut().insert(Meta {
        frame,
        fields: None,
    });
    resp
}

/// Writes an RPC message's own fields as `x-mosn-*` fields (and its header map as fields
/// when that was left for later), for an HTTP peer. Called when a message carrying [`Meta`]
/// leaves over HTTP.
pub fn render_http(extensions: &http::Extensions, headers: &mut HeaderMap) {
    let Some(meta) = extensions.get::<Meta>() else {
        return;
    };
    let frame = &meta.frame;
    if meta.fields.is_none() {
        if let Frame::Bolt(f) = frame {
            bolt_fields(&f.header, headers);
        }
    }
    headers.insert(PROTOCOL, HeaderValue::from_static(frame.family().name()));
    match frame {
        Frame::Bolt(f) => {
            headers.insert(BOLT_META, bolt_meta_value(f));
            let mut class = Vec::new();
            pct_encode(&mut class, &f.class);
            headers.insert(BOLT_CLASS, header_value(class));
            headers.insert(BOLT_KEYS, bolt_manifest(&f.header));
        }
        Frame::Dubbo(f) => {
            let s = format!("flag={};status={}", f.flag, f.status);
            headers.insert(DUBBO_META, header_value(s.into_bytes()));
        }
    }
}

async fn collect(body: Body) -> Result<Bytes, RpcError> {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| RpcError::Body(e.to_string()))
}

/// The frame to send upstream for `req`, and whether its raw bytes may be forwarded (same
/// protocol, nothing changed). `proto_v2`: build Bolt v2 frames for a plain peer.
pub async fn request_to_frame(
    family: Family,
    proto_v2: bool,
    req: Request<Body>,
) -> Result<(Frame, bool), RpcError> {
    let (parts, body) = req.into_parts();
    let content = collect(body).await?;
    let meta = parts.extensions.get::<Meta>();
    match (family, meta.map(|m| (m, &m.frame))) {
        (Family::Bolt, Some((m, Frame::Bolt(orig)))) => {
            let raw_ok = content == orig.content && fields_unchanged(m, &parts.headers);
            let mut f = orig.clone();
            if !raw_ok {
                f.raw = Bytes::new();
                f.content = content;
                // Entries that could not be HTTP fields stay; readable ones come from the
                // (possibly changed) fields, in the original order.
                f.header = rebuild_bolt_map(m, &orig.header, &parts.headers);
            }
            Ok((Frame::Bolt(f), raw_ok))
        }
        (Family::Dubbo, Some((_, Frame::Dubbo(orig)))) => {
            let raw_ok = content == orig.body;
            let mut f = orig.clone();
            if !raw_ok {
                f.raw = Bytes::new();
                f.body = content;
            }
            Ok((Frame::Dubbo(f), raw_ok))
        }
        (Family::Bolt, _) => {
            let mut f = bolt_from_fields(&parts.headers, true)?;
            if parts.headers.get(BOLT_META).is_none() && proto_v2 {
                f.proto = bolt::PROTO_V2;
                f.ver1 = 1;
            }
            f.content = content;
            Ok((Frame::Bolt(f), false))
        }
        (Family::Dubbo, _) => Ok((
            Frame::Dubbo(dubbo_request_from_http(&parts, content)?),
            false,
        )),
    }
}

/// The header map of a same-protocol message after the proxy touched its fields: entries
/// in the original order with their current values, removed ones dropped, new ones last.
/// (A message whose map never became fields keeps every entry; new fields come last.)
fn rebuild_bolt_map(meta: &Meta, orig: &bolt::HeaderMap, headers: &HeaderMap) -> bolt::HeaderMap {
    if meta.fields.is_none() {
        let mut map = orig.clone();
        for (n, v) in headers.iter().filter(|(n, _)| !reserved(n)) {
            map.push(
                Bytes::copy_from_slice(n.as_str().as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            );
        }
        return map;
    }
    let mut map = bolt::HeaderMap::new();
    let mut used = Used::default();
    for (k, v) in orig.iter() {
        match readable(k, v) {
            None => map.push(k.clone(), v.clone()),
            Some((n, _)) => {
                let idx = used.next(&n);
                if let Some(cur) = headers.get_all(&n).iter().nth(idx) {
                    map.push(k.clone(), Bytes::copy_from_slice(cur.as_bytes()));
                }
            }
        }
    }
    for name in headers.keys() {
        if reserved(name) {
            continue;
        }
        let skip = used.count(name);
        for v in headers.get_all(name).iter().skip(skip) {
            map.push(
                Bytes::copy_from_slice(name.as_str().as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            );
        }
    }
    map
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A Dubbo request from HTTP: a Dubbo message that crossed an HTTP hop keeps its body; a
/// plain HTTP request becomes an invocation of `service`/`method` (fields) whose one
/// `java.lang.String` argument is the body (or no argument when it is empty), with the
/// other fields as attachments.
fn dubbo_request_from_http(
    parts: &http::request::Parts,
    body: Bytes,
) -> Result<dubbo::Frame, RpcError> {
    if let Some(meta) = parts.headers.get(DUBBO_META) {
        let kv = parse_kv(meta);
        return Ok(dubbo::Frame {
            flag: kv.get("flag").copied().unwrap_or(0xc2) as u8,
            status: 0,
            request_id: 0,
            body,
            raw: Bytes::new(),
        });
    }
    let h = &parts.headers;
    let service = header_str(h, "service")
        .ok_or_else(|| RpcError::Encode("a Dubbo request needs a `service` field".into()))?;
    let method = header_str(h, "method")
        .ok_or_else(|| RpcError::Encode("a Dubbo request needs a `method` field".into()))?;
    let version = header_str(h, "version").unwrap_or("");
    let mut args = BytesMut::new();
    let param_types = match header_str(h, DUBBO_PARAMETER_TYPES.as_str()) {
        // The caller encoded the arguments itself.
        Some(d) => {
            args.extend_from_slice(&body);
            d.to_owned()
        }
        None if body.is_empty() => String::new(),
        None => {
            let s = std::str::from_utf8(&body).map_err(|_| {
                RpcError::Encode("a plain HTTP body for Dubbo must be UTF-8".into())
            })?;
            hessian2::write_string(&mut args, s);
            "Ljava/lang/String;".to_owned()
        }
    };
    let mut attachments: Vec<(String, String)> = Vec::new();
    for (n, v) in h.iter() {
        if reserved(n) || matches!(n.as_str(), "dubbo" | "service" | "method" | "version") {
            continue;
        }
        if let Ok(v) = v.to_str() {
            attachments.push((n.as_str().to_owned(), v.to_owned()));
        }
    }
    for (k, v) in [
        ("path", service),
        ("interface", service),
        ("version", version),
    ] {
        if !attachments.iter().any(|(ak, _)| ak == k) {
            attachments.push((k.to_owned(), v.to_owned()));
        }
    }
    let head = dubbo::Invocation {
        dubbo_version: header_str(h, "dubbo").unwrap_or(DUBBO_VERSION).to_owned(),
        service: service.to_owned(),
        version: version.to_owned(),
        method: method.to_owned(),
        param_types,
        args: 0..0,
        attachments: Vec::new(),
        attachments_start: 0,
    };
    let mut out = BytesMut::new();
    dubbo::encode_invocation(&head, &args, &attachments, &mut out);
    Ok(dubbo::Frame {
        flag: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
        status: 0,
        request_id: 0,
        body: out.freeze(),
        raw: Bytes::new(),
    })
}

/// The response frame for downstream request `req`, from whatever the proxy answered: an
/// upstream frame of the same protocol (raw bytes forwarded when unchanged), an RPC message
/// that crossed HTTP (`x-mosn-*`), a plain HTTP answer, or a local reply ([`ReplyCode`]).
pub async fn response_to_frame(req: &Frame, resp: Response<Body>) -> (Frame, bool) {
    let (parts, body) = resp.into_parts();
    let code = parts.extensions.get::<ReplyCode>().map(|c| c.0);
    let content = match collect(body).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "response body failed; answering with an error");
            return (
                hijack(req, super::code::INTERNAL_ERROR, "upstream body failed"),
                false,
            );
        }
    };
    if let Some(code) = code {
        let text = String::from_utf8_lossy(&content);
        return (hijack(req, code, text.trim_end()), false);
    }
    let meta = parts.extensions.get::<Meta>();
    let mut out = match (req, meta.map(|m| (m, &m.frame))) {
        (Frame::Bolt(_), Some((m, Frame::Bolt(orig)))) => {
            let raw_ok = content == orig.content && fields_unchanged(m, &parts.headers);
            let mut f = orig.clone();
            if !raw_ok {
                f.raw = Bytes::new();
                f.content = content;
                f.header = rebuild_bolt_map(m, &orig.header, &parts.headers);
            }
            (Frame::Bolt(f), raw_ok)
        }
        (Frame::Dubbo(_), Some((_, Frame::Dubbo(orig)))) => {
            let raw_ok = content == orig.body;
            let mut f = orig.clone();
            if !raw_ok {
                f.raw = Bytes::new();
                f.body = content;
            }
            (Frame::Dubbo(f), raw_ok)
        }
        (Frame::Bolt(r), _) => (
            Frame::Bolt(bolt_response_from_http(r, &parts, content)),
            false,
        ),
        (Frame::Dubbo(r), _) => (
            Frame::Dubbo(dubbo_response_from_http(r, &parts, content)),
            false,
        ),
    };
    out.0.set_request_id(req.request_id());
    out
}

fn bolt_response_from_http(
    req: &bolt::Frame,
    parts: &http::response::Parts,
    content: Bytes,
) -> bolt::Frame {
    if parts.headers.get(BOLT_META).is_some() {
        if let Ok(mut f) = bolt_from_fields(&parts.headers, false) {
            f.content = content;
            return f;
        }
    }
    let code = super::code_for_http_status(parts.status.as_u16());
    let mut f = bolt::Frame::response_to(req, super::bolt_status_for(code));
    if let Ok(map) = bolt_map_from_fields(&parts.headers) {
        f.header = map;
    }
    f.content = content;
    f
}

fn dubbo_response_from_http(
    req: &dubbo::Frame,
    parts: &http::response::Parts,
    content: Bytes,
) -> dubbo::Frame {
    if let Some(meta) = parts.headers.get(DUBBO_META) {
        let kv = parse_kv(meta);
        return dubbo::Frame {
            flag: kv
                .get("flag")
                .copied()
                .unwrap_or(i64::from(req.serialization())) as u8,
            status: kv.get("status").copied().unwrap_or(20) as u8,
            request_id: req.request_id,
            body: content,
            raw: Bytes::new(),
        };
    }
    let code = super::code_for_http_status(parts.status.as_u16());
    if code != super::code::SUCCESS {
        let msg = format!(
            "{}|{}",
            parts.status.as_u16(),
            String::from_utf8_lossy(&content)
        );
        return dubbo::Frame::error_response(req, super::dubbo_status_for(code), msg.trim_end());
    }
    // A plain HTTP answer: the body as the invocation's return value (a string).
    let mut body = BytesMut::new();
    if content.is_empty() {
        body.extend_from_slice(&[DUBBO_RESPONSE_NULL]);
    } else {
        body.extend_from_slice(&[DUBBO_RESPONSE_VALUE]);
        hessian2::write_string(&mut body, &String::from_utf8_lossy(&content));
    }
    dubbo::Frame {
        flag: req.serialization(),
        status: dubbo::status::OK,
        request_id: req.request_id,
        body: body.freeze(),
        raw: Bytes::new(),
    }
}

/// The protocol's own error reply to `req` for one of MOSN's internal codes.
pub fn hijack(req: &Frame, code: u16, msg: &str) -> Frame {
    match req {
        Frame::Bolt(r) => Frame::Bolt(bolt::Frame::response_to(r, super::bolt_status_for(code))),
        Frame::Dubbo(r) => Frame::Dubbo(dubbo::Frame::error_response(
            r,
            super::dubbo_status_for(code),
            &format!("{code}|{msg}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bolt_req(entries: &[(&[u8], &[u8])]) -> bolt::Frame {
        let mut header = bolt::HeaderMap::new();
        for (k, v) in entries {
            header.push(Bytes::copy_from_slice(k), Bytes::copy_from_slice(v));
        }
        bolt::Frame {
            proto: bolt::PROTO_V2,
            ver1: 2,
            kind: bolt::TYPE_REQUEST,
            cmd_code: bolt::CMD_REQUEST,
            ver2: 1,
            request_id: 7,
            codec: 1,
            switch: 1,
            timeout: 3000,
            status: 0,
            class: Bytes::from_static(b"com.alipay.sofa.rpc.core.request.SofaRequest"),
            header,
            content: Bytes::from_static(b"\x01\x02payload"),
            raw: Bytes::new(),
        }
    }

    /// Bolt -> common model -> HTTP fields -> common model -> Bolt keeps every field.
    #[tokio::test]
    async fn bolt_round_trip_over_http_fields_is_lossless() {
        let orig = bolt_req(&[
            (b"service", b"com.alipay.test.EchoService:1.0"),
            (b"sofa_head_method_name", b"echo"),
            (b"rpc_trace_context.sofaTraceId", b"0a0b"),
            (b"Upper-Case", b"v1"),
            (b"upper-case", b"v2"),
            (b"odd key", b"x"),
            (b"ctl", b"a\x01b"),
            (b"pad", b" spaced "),
            (b"host", b"not-http"),
            (b"empty", b""),
            (b"service", b"dup"),
        ]);
        let req = request_from_frame(Frame::Bolt(orig.clone()));
        assert_eq!(req.uri().path(), "/com.alipay.test.EchoService:1.0/echo");
        assert_eq!(req.headers()["service"], "com.alipay.test.EchoService:1.0");
        // As an HTTP/2 hop sees it: fields plus x-mosn-*, no extensions.
        let (mut parts, body) = req.into_parts();
        render_http(&parts.extensions, &mut parts.headers);
        parts.extensions = http::Extensions::new();
        let hop = Request::from_parts(parts, body);
        let (back, raw) = request_to_frame(Family::Bolt, false, hop).await.unwrap();
        assert!(!raw);
        let Frame::Bolt(back) = back else { panic!() };
        assert_eq!(back.header, orig.header);
        assert_eq!(back.class, orig.class);
        assert_eq!(
            (
                back.proto,
                back.ver1,
                back.kind,
                back.cmd_code,
                back.ver2,
                back.codec,
                back.switch,
                back.timeout
            ),
            (2, 2, 1, 1, 1, 1, 1, 3000)
        );
        assert_eq!(back.content, orig.content);
    }

    /// A field the proxy adds on the HTTP hop is appended; one it removes disappears.
    #[tokio::test]
    async fn http_hop_changes_apply_to_the_header_map() {
        let orig = bolt_req(&[(b"service", b"s"), (b"a", b"1"), (b"b", b"2")]);
        let (mut parts, body) = request_from_frame(Frame::Bolt(orig)).into_parts();
        render_http(&parts.extensions, &mut parts.headers);
        parts.extensions = http::Extensions::new();
        parts.headers.remove("a");
        parts
            .headers
            .append("added", HeaderValue::from_static("yes"));
        let (back, _) = request_to_frame(Family::Bolt, false, Request::from_parts(parts, body))
            .await
            .unwrap();
        let Frame::Bolt(back) = back else { panic!() };
        let got: Vec<_> = back
            .header
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Bytes::from_static(b"service"), Bytes::from_static(b"s")),
                (Bytes::from_static(b"b"), Bytes::from_static(b"2")),
                (Bytes::from_static(b"added"), Bytes::from_static(b"yes")),
            ]
        );
    }

    /// Unchanged same-protocol requests keep their raw bytes; a changed field forces a
    /// re-encode with the change in place.
    #[tokio::test]
    async fn raw_fast_path_only_when_unchanged() {
        let mut f = bolt_req(&[(b"service", b"s"), (b"k", b"v")]);
        let mut buf = BytesMut::new();
        f.encode(&mut buf).unwrap();
        f = bolt::Frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
        let req = request_from_frame(Frame::Bolt(f.clone()));
        let (out, raw) = request_to_frame(Family::Bolt, false, req).await.unwrap();
        assert!(raw);
        assert_eq!(out.raw(), &f.raw);

        let mut req = request_from_frame(Frame::Bolt(f));
        req.headers_mut()
            .insert("k", HeaderValue::from_static("changed"));
        let (out, raw) = request_to_frame(Family::Bolt, false, req).await.unwrap();
        assert!(!raw);
        let Frame::Bolt(out) = out else { panic!() };
        assert_eq!(
            out.header.get(b"k").unwrap(),
            &Bytes::from_static(b"changed")
        );
    }

    /// Local replies become each protocol's own error with MOSN's status mapping.
    #[tokio::test]
    async fn local_replies_map_to_protocol_statuses() {
        let req = Frame::Bolt(bolt_req(&[]));
        for (code, want) in [
            (404, bolt::status::NO_PROCESSOR),
            (502, bolt::status::NO_PROCESSOR),
            (503, bolt::status::SERVER_THREADPOOL_BUSY),
            (504, bolt::status::TIMEOUT),
            (0, bolt::status::CODEC_EXCEPTION),
        ] {
            let mut resp = Response::new(Body::full(Bytes::from_static(b"no route\n")));
            resp.extensions_mut().insert(ReplyCode(code));
            let (f, _) = response_to_frame(&req, resp).await;
            let Frame::Bolt(f) = f else { panic!() };
            assert_eq!(
                (f.status, f.request_id, f.cmd_code),
                (want, 7, bolt::CMD_RESPONSE)
            );
        }
    }

    #[test]
    fn percent_coding_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut enc = Vec::new();
        pct_encode(&mut enc, &all);
        assert!(enc
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b',' && *b != b'='));
        assert_eq!(pct_decode(&enc).unwrap(), all);
        assert!(pct_decode(b"%zz").is_none());
        assert!(pct_decode(b"%4").is_none());
    }
}
