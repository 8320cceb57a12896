//! `payload_limit`: reject request bodies larger than `max_entity_size` (MOSN
//! `pkg/filter/stream/payloadlimit`, config `v2.StreamPayloadLimit`). Runs AfterRoute, as in
//! MOSN, so a route's `per_filter_config` can change the limit.
//!
//! ```json
//! {"type": "payload_limit", "config": {"max_entity_size": 1048576, "http_status": 413}}
//! ```
//!
//! - `max_entity_size`: bytes; 0 or absent = no limit (MOSN). MOSN's struct tag is
//!   `"max_entity_size "` with a stray trailing space, so that spelling is accepted too.
//! - `http_status`: the reply status, default 413 (MOSN has no default).
//!
//! The request is refused up front when `Content-Length` is above the limit, and otherwise
//! as soon as the streamed body passes it ([`StreamFilter::on_request_data`]); both reply
//! with `PAYLOAD_TOO_LARGE`.

use std::sync::Arc;

use http::StatusCode;
use serde_json::Value;

use super::json::Fields;
use super::{FilterError, LocalReply, Phase, RequestCtx, RequestView, StreamFilter, Verdict};
use crate::flags::ResponseFlags;

/// The type name.
pub const TYPE: &str = "payload_limit";

const KEY: &str = "max_entity_size";
const KEY_MOSN_TYPO: &str = "max_entity_size ";

/// The parsed `payload_limit` config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadLimitConfig {
    /// Largest allowed body in bytes; 0 = unlimited.
    pub max_entity_size: u64,
    /// Reply status.
    pub http_status: StatusCode,
}

impl PayloadLimitConfig {
    /// Parses MOSN's JSON.
    pub fn parse(v: &Value) -> Result<PayloadLimitConfig, FilterError> {
        let f = Fields::root(v, &[KEY, KEY_MOSN_TYPO, "http_status"])?;
        if f.has(KEY) && f.has(KEY_MOSN_TYPO) {
            return Err(f.err(KEY, "given twice (with and without a trailing space)"));
        }
        let size = match f.u64_in(KEY, 0, i64::MAX as u64)? {
            Some(s) => Some(s),
            None => f.u64_in(KEY_MOSN_TYPO, 0, i64::MAX as u64)?,
        };
        Ok(PayloadLimitConfig {
            max_entity_size: size.unwrap_or(0),
            http_status: f
                .status("http_status")?
                .unwrap_or(StatusCode::PAYLOAD_TOO_LARGE),
        })
    }
}

/// The `payload_limit` filter.
#[derive(Debug)]
pub struct PayloadLimitFilter {
    config: PayloadLimitConfig,
}

/// The registry factory.
pub fn factory(v: &Value) -> Result<Arc<dyn StreamFilter>, FilterError> {
    Ok(Arc::new(PayloadLimitFilter::new(
        PayloadLimitConfig::parse(v)?,
    )))
}

impl PayloadLimitFilter {
    /// A filter with this config.
    pub fn new(config: PayloadLimitConfig) -> PayloadLimitFilter {
        PayloadLimitFilter { config }
    }

    fn too_large(&self, size: u64) -> bool {
        self.config.max_entity_size != 0 && size > self.config.max_entity_size
    }

    fn reply(&self) -> Verdict {
        Verdict::Reply(
            LocalReply::new(self.config.http_status, ResponseFlags::PAYLOAD_TOO_LARGE)
                .with_text("payload too large"),
        )
    }
}

impl StreamFilter for PayloadLimitFilter {
    fn name(&self) -> &'static str {
        TYPE
    }

    fn phase(&self) -> Phase {
        Phase::AfterRoute
    }

    fn on_request(&self, ctx: &mut RequestCtx<'_>) -> Verdict {
        let declared = ctx
            .head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok());
        match declared {
            Some(len) if self.too_large(len) => self.reply(),
            _ => Verdict::Continue,
        }
    }

    fn inspects_request_body(&self) -> bool {
        true
    }

    fn on_request_data(
        &self,
        _request: RequestView<'_>,
        received_so_far: u64,
        _chunk_len: usize,
    ) -> Verdict {
        if self.too_large(received_so_far) {
            self.reply()
        } else {
            Verdict::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::filter::tests::{request, Harness};

    fn filter(v: Value) -> PayloadLimitFilter {
        PayloadLimitFilter::new(PayloadLimitConfig::parse(&v).unwrap())
    }

    #[test]
    fn parses_keys_and_defaults() {
        let c = PayloadLimitConfig::parse(&json!({"max_entity_size": 100, "http_status": 500}))
            .unwrap();
        assert_eq!(c.max_entity_size, 100);
        assert_eq!(c.http_status, StatusCode::INTERNAL_SERVER_ERROR);
        let c = PayloadLimitConfig::parse(&json!({"max_entity_size ": 7})).unwrap();
        assert_eq!(c.max_entity_size, 7);
        assert_eq!(c.http_status, StatusCode::PAYLOAD_TOO_LARGE);
        let c = PayloadLimitConfig::parse(&Value::Null).unwrap();
        assert_eq!(c.max_entity_size, 0);
    }

    #[test]
    fn content_length_over_the_limit_is_refused_up_front() {
        let f = filter(json!({"max_entity_size": 10}));
        let mut h = Harness::new(request("POST", "/", &[("content-length", "11")]));
        match h.run(&f) {
            Verdict::Reply(r) => {
                assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
                assert!(r.flags.contains(ResponseFlags::PAYLOAD_TOO_LARGE));
            }
            v => panic!("expected a reply, got {v:?}"),
        }
        let mut h = Harness::new(request("POST", "/", &[("content-length", "10")]));
        assert_eq!(h.run(&f), Verdict::Continue);
        let mut h = Harness::new(request("POST", "/", &[]));
        assert_eq!(h.run(&f), Verdict::Continue);
    }

    #[test]
    fn streamed_body_is_counted() {
        let f = filter(json!({"max_entity_size": 10, "http_status": 400}));
        let parts = request("POST", "/", &[("transfer-encoding", "chunked")]);
        let view = RequestView::from(&parts);
        assert_eq!(f.on_request_data(view, 4, 4), Verdict::Continue);
        assert_eq!(f.on_request_data(view, 10, 6), Verdict::Continue);
        match f.on_request_data(view, 11, 1) {
            Verdict::Reply(r) => {
                assert_eq!(r.status, StatusCode::BAD_REQUEST);
                assert!(r.flags.contains(ResponseFlags::PAYLOAD_TOO_LARGE));
            }
            v => panic!("expected a reply, got {v:?}"),
        }
    }

    #[test]
    fn zero_means_unlimited() {
        let f = filter(json!({"max_entity_size": 0}));
        let parts = request("POST", "/", &[("content-length", "99999999")]);
        assert_eq!(
            f.on_request_data(RequestView::from(&parts), u64::MAX, 1),
            Verdict::Continue
        );
        let mut h = Harness::new(parts);
        assert_eq!(h.run(&f), Verdict::Continue);
    }

    #[test]
    fn malformed_configs_are_rejected() {
        let cases = [
            (json!({"max_entity_size": -1}), "max_entity_size: must be an integer in 0..=9223372036854775807, got -1"),
            (json!({"max_entity_size": "1k"}), "max_entity_size: must be an integer, got a string"),
            (json!({"http_status": 42}), "http_status: must be an HTTP status code in 200..=599, got 42"),
            (
                json!({"max_entity_size": 1, "max_entity_size ": 2}),
                "max_entity_size: given twice (with and without a trailing space)",
            ),
            (
                json!({"max_size": 1}),
                "unknown key \"max_size\" (expected one of: max_entity_size, max_entity_size , http_status)",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(
                PayloadLimitConfig::parse(&v).unwrap_err().reason,
                want,
                "{v}"
            );
        }
    }
}
