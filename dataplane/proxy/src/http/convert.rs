//! Re-encoding a request or response head for the other side's protocol: hop-by-hop fields
//! dropped (RFC 9110 §7.6.1), HTTP/1 origin-form + `Host` vs HTTP/2 absolute URI +
//! `:authority`. Bodies and trailers pass through unchanged, so HTTP/1 <-> HTTP/2 conversion
//! is exact for everything end to end.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Method, Version};
use mosn_stream::xprotocol::convert as rpc;
use mosn_stream::StreamProtocol;

/// Fields that describe one connection, never forwarded. `strip_hop_by_hop` refers to them by
/// index: 0 `Connection`, 2 `Upgrade`, 3 `TE`.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// The request's authority: HTTP/2 `:authority` (in the URI) or HTTP/1 `Host`.
pub fn authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    if let Some(a) = uri.authority() {
        return Some(a.as_str());
    }
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// Removes hop-by-hop fields, and those the `Connection` field names. With `keep_upgrade`
/// (a protocol switch passing through), `Connection: upgrade` and `Upgrade` stay. True when
/// `TE: trailers` stayed.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> bool {
    // Most messages carry none: one pass over the names, no hashing, no allocation; the
    // pass also notes which are there, so that only those are removed (a removal hashes).
    let mut present = 0u8;
    for k in headers.keys() {
        // Names are compared only when their length is one of HOP_BY_HOP's (most fields'
        // is not; `hop_by_hop_lengths` checks the list).
        if !matches!(k.as_str().len(), 2 | 7 | 10 | 16 | 17) {
            continue;
        }
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == k) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return false;
    }
    let has = |i: usize| present & (1 << i) != 0;
    let te_trailers = has(3)
        && headers
            .get_all(header::TE)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let upgrade = has(2)
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    // The `Connection` values move out of the map (their bytes are shared, not copied) so the
    // fields they name can be removed by `&str`: no owned names, no allocation for the usual
    // one or two `Connection` fields (`Connection: keep-alive` on most upstream responses).
    let mut first: [Option<HeaderValue>; 2] = [None, None];
    let mut more: Vec<HeaderValue> = Vec::new();
    if let header::Entry::Occupied(e) = headers.entry(header::CONNECTION) {
        for (i, v) in e.remove_entry_mult().1.enumerate() {
            match first.get_mut(i) {
                Some(slot) => *slot = Some(v),
                None => more.push(v),
            }
        }
    }
    for v in first.iter().flatten().chain(more.iter()) {
        for token in v.to_str().unwrap_or_default().split(',') {
            let token = token.trim();
            // `close` names no field; `keep-alive` is one of HOP_BY_HOP (removed below when
            // present): the usual `Connection` values cost no lookup.
            if !token.is_empty()
                && !token.eq_ignore_ascii_case("close")
                && !token.eq_ignore_ascii_case("keep-alive")
            {
                headers.remove(token);
            }
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if i > 0 && has(i) {
            headers.remove(n);
        }
    }
    if te_trailers {
        // `TE: trailers` is end to end in practice (gRPC requires it on HTTP/2).
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        if let Some(u) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, u);
        }
    }
    te_trailers
}

/// True when the request asks for a protocol switch (`Upgrade`) on HTTP/1.
pub fn is_upgrade_request(method: &Method, headers: &HeaderMap) -> bool {
    method != Method::CONNECT && headers.contains_key(header::UPGRADE)
}

/// Rewrites `parts` (already routed and rewritten) for an upstream speaking `to`.
pub fn request_for_upstream(
    parts: &mut http::request::Parts,
    to: StreamProtocol,
    keep_upgrade: bool,
) -> Result<(), http::Error> {
    if !to.is_http() {
        // The RPC codecs build their frames from the fields and the message's own `Meta`.
        strip_hop_by_hop(&mut parts.headers, false);
        return Ok(());
    }
    // An RPC message leaving over HTTP carries its own fields as `x-mosn-*`.
    rpc::render_http(&parts.extensions, &mut parts.headers);
    // Only an absolute-form / HTTP/2 request needs its authority moved; an HTTP/1 request's
    // `Host` stays where it is.
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            (to == StreamProtocol::Http2)
                .then(|| authority(&parts.uri, &parts.headers).map(str::to_owned))
                .flatten()
        });
    strip_hop_by_hop(&mut parts.headers, keep_upgrade);
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match to {
        StreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            if let Some(a) = &authority {
                parts
                    .headers
                    .insert(header::HOST, HeaderValue::from_str(a)?);
            }
            parts.uri = Uri::from(pq);
        }
        _ => {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
            let mut b = Uri::builder()
                .scheme(parts.uri.scheme().cloned().unwrap_or(Scheme::HTTP))
                .path_and_query(origin_form(&parts.uri));
            if let Some(a) = authority {
                b = b.authority(Authority::try_from(a.as_str())?);
            }
            parts.uri = b.build()?;
        }
    }
    Ok(())
}

fn origin_form(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// Rewrites an upstream response head for a downstream connection speaking `to`.
pub fn response_for_downstream(parts: &mut http::response::Parts, to: StreamProtocol) {
    if to.is_http() {
        rpc::render_http(&parts.extensions, &mut parts.headers);
    }
    let switching = parts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    // `TE` is a request field; none of it goes down.
    if strip_hop_by_hop(&mut parts.headers, switching) {
        parts.headers.remove(header::TE);
    }
    parts.version = Version::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hop_by_hop_lengths() {
        for h in &HOP_BY_HOP {
            assert!(
                matches!(h.as_str().len(), 2 | 7 | 10 | 16 | 17),
                "{h} is skipped by strip_hop_by_hop's length check"
            );
        }
    }

    #[test]
    fn h1_to_h2_moves_host_into_authority_and_drops_hop_by_hop() {
        let mut p = req(
            "/a/b?x=1",
            &[
                ("host", "svc.local:8080"),
                ("connection", "keep-alive, x-private"),
                ("x-private", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("x-end", "kept"),
            ],
        );
        request_for_upstream(&mut p, StreamProtocol::Http2, false).unwrap();
        assert_eq!(p.uri.to_string(), "http://svc.local:8080/a/b?x=1");
        assert_eq!(p.version, Version::HTTP_2);
        assert!(p.headers.get("host").is_none());
        assert!(p.headers.get("x-private").is_none());
        assert!(p.headers.get("keep-alive").is_none());
        assert!(p.headers.get("connection").is_none());
        assert_eq!(p.headers["te"], "trailers");
        assert_eq!(p.headers["x-end"], "kept");
    }

    #[test]
    fn h2_to_h1_puts_authority_in_host_and_origin_form() {
        let mut p = req("http://api.example:81/p?q", &[("x-a", "b")]);
        request_for_upstream(&mut p, StreamProtocol::Http1, false).unwrap();
        assert_eq!(p.uri.to_string(), "/p?q");
        assert_eq!(p.headers["host"], "api.example:81");
        assert_eq!(p.version, Version::HTTP_11);
    }

    #[test]
    fn upgrade_headers_survive_only_when_asked() {
        let h = [
            ("host", "h"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ];
        let mut p = req("/ws", &h);
        assert!(is_upgrade_request(&p.method, &p.headers));
        request_for_upstream(&mut p, StreamProtocol::Http1, true).unwrap();
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["connection"], "upgrade");
        let mut p = req("/ws", &h);
        request_for_upstream(&mut p, StreamProtocol::Http1, false).unwrap();
        assert!(p.headers.get("upgrade").is_none());
    }

    #[test]
    fn every_connection_field_names_fields_to_drop() {
        let mut h = HeaderMap::new();
        for v in ["X-One", " x-two ,, ", "x-three", "bad name, x-four"] {
            h.append(header::CONNECTION, HeaderValue::from_str(v).unwrap());
        }
        for n in ["x-one", "x-two", "x-three", "x-four", "x-five"] {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static("v"));
        }
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-five", "te"]);
    }

    #[test]
    fn response_hop_by_hop_removed() {
        let mut r = http::Response::builder()
            .header("connection", "close")
            .header("transfer-encoding", "chunked")
            .header("x-ok", "1")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        response_for_downstream(&mut r, StreamProtocol::Http1);
        assert!(r.headers.get("connection").is_none());
        assert!(r.headers.get("transfer-encoding").is_none());
        assert_eq!(r.headers["x-ok"], "1");
    }
}
