//! `transcoder`: choose the upstream protocol by header rules (MOSN
//! `pkg/filter/stream/transcoder`, `rules.TransferRuleConfig`). Runs AfterRoute, as in MOSN.
//! This filter only decides: it sets [`RequestCtx::upstream_protocol`]; the stream layer does
//! the conversion (HTTP/1 <-> HTTP/2 now, Bolt later).
//!
//! ```json
//! {"type": "transcoder", "config": {"rules": [
//!   {"macther_config": {"headers": [{"name": "x-upstream", "value": "h2"}]},
//!    "rule_info": {"upstream_protocol": "Http2", "upstream_sub_protocol": "",
//!                  "description": "h2 upstream", "config": {}}}
//! ]}}
//! ```
//!
//! - `rules` are tried in order; the first whose matcher matches wins.
//! - `macther_config` is MOSN's spelling (sic); `matcher_config` is accepted too. Its
//!   `headers` must all match ([`super::matcher`]); no header matcher = every request.
//!   A rule without a matcher config never matches in MOSN, so it is rejected here.
//!   `variables` matchers are not supported (rejected when non-empty).
//! - `rule_info.upstream_protocol` (required): the protocol name given to the stream layer.
//!   `upstream_sub_protocol`, `description` and `config` are kept ([`TranscoderFilter::rules`])
//!   but not used yet.
//! - The top-level `type` (a transcoder plugin name in MOSN) is accepted and ignored;
//!   `go_plugin_config` is rejected (no Go plugins here).

use std::sync::Arc;

use http::HeaderMap;
use serde_json::Value;

use super::json::Fields;
use super::matcher::{self, HeaderMatcher};
use super::{FilterError, Phase, RequestCtx, StreamFilter, Verdict};

/// The type name.
pub const TYPE: &str = "transcoder";

/// `rule_info`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleInfo {
    /// `upstream_protocol`.
    pub upstream_protocol: String,
    /// `upstream_sub_protocol`.
    pub upstream_sub_protocol: String,
    /// `description`.
    pub description: String,
    /// `config`, verbatim.
    pub config: Value,
}

/// One rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `macther_config.headers`.
    pub headers: Vec<HeaderMatcher>,
    /// `rule_info`.
    pub info: RuleInfo,
}

/// The parsed `transcoder` config.
#[derive(Clone, Debug, Default)]
pub struct TranscoderConfig {
    /// `rules`, in order.
    pub rules: Vec<Rule>,
}

impl TranscoderConfig {
    /// Parses MOSN's JSON.
    pub fn parse(v: &Value) -> Result<TranscoderConfig, FilterError> {
        let f = Fields::root(v, &["type", "rules", "go_plugin_config"])?;
        f.str("type")?;
        if f.has("go_plugin_config") {
            return Err(f.err(
                "go_plugin_config",
                "Go transcoder plugins are not supported",
            ));
        }
        let mut rules = Vec::new();
        for r in &f.objects("rules", &["macther_config", "matcher_config", "rule_info"])? {
            if r.has("macther_config") && r.has("matcher_config") {
                return Err(r.err(
                    "matcher_config",
                    "given twice (as macther_config and matcher_config)",
                ));
            }
            let key = if r.has("matcher_config") {
                "matcher_config"
            } else {
                "macther_config"
            };
            let m = r.object(key, &["headers", "variables"])?.ok_or_else(|| {
                r.err(
                    "macther_config",
                    "required (MOSN never matches a rule without one)",
                )
            })?;
            if m.array("variables")?.is_some_and(|v| !v.is_empty()) {
                return Err(m.err("variables", "variable matchers are not supported"));
            }
            let headers = matcher::parse_list(&m, "headers")?;
            let info = r
                .object(
                    "rule_info",
                    &[
                        "upstream_protocol",
                        "upstream_sub_protocol",
                        "description",
                        "config",
                    ],
                )?
                .ok_or_else(|| r.err("rule_info", "required"))?;
            let upstream_protocol = info
                .str("upstream_protocol")?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    info.err("upstream_protocol", "a non-empty protocol name is required")
                })?;
            let info = RuleInfo {
                upstream_protocol: upstream_protocol.to_owned(),
                upstream_sub_protocol: info.str("upstream_sub_protocol")?.unwrap_or("").to_owned(),
                description: info.str("description")?.unwrap_or("").to_owned(),
                config: info.get("config").cloned().unwrap_or(Value::Null),
            };
            rules.push(Rule { headers, info });
        }
        Ok(TranscoderConfig { rules })
    }
}

/// The `transcoder` filter.
#[derive(Debug)]
pub struct TranscoderFilter {
    config: TranscoderConfig,
}

/// The registry factory.
pub fn factory(v: &Value) -> Result<Arc<dyn StreamFilter>, FilterError> {
    Ok(Arc::new(TranscoderFilter::new(TranscoderConfig::parse(v)?)))
}

impl TranscoderFilter {
    /// A filter with this config.
    pub fn new(config: TranscoderConfig) -> TranscoderFilter {
        TranscoderFilter { config }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.config.rules
    }

    /// The first rule matching these request headers.
    pub fn matching_rule(&self, headers: &HeaderMap) -> Option<&Rule> {
        self.config
            .rules
            .iter()
            .find(|r| matcher::all_match(&r.headers, headers))
    }
}

impl StreamFilter for TranscoderFilter {
    fn name(&self) -> &'static str {
        TYPE
    }

    fn phase(&self) -> Phase {
        Phase::AfterRoute
    }

    fn on_request(&self, ctx: &mut RequestCtx<'_>) -> Verdict {
        if let Some(rule) = self.matching_rule(&ctx.head.headers) {
            *ctx.upstream_protocol = Some(rule.info.upstream_protocol.clone());
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::filter::tests::{request, Harness};

    fn filter(v: Value) -> TranscoderFilter {
        TranscoderFilter::new(TranscoderConfig::parse(&v).unwrap())
    }

    #[test]
    fn first_matching_rule_sets_the_upstream_protocol() {
        let f = filter(json!({"type": "http2bolt_simple", "rules": [
            {"macther_config": {"headers": [{"name": "x-proto", "value": "h2"}]},
             "rule_info": {"upstream_protocol": "Http2", "upstream_sub_protocol": "", "description": "to h2"}},
            {"matcher_config": {"headers": [{"name": "x-proto", "value": "^h", "regex": true}]},
             "rule_info": {"upstream_protocol": "Http1", "config": {"k": "v"}}}
        ]}));
        assert_eq!(f.rules().len(), 2);
        assert_eq!(f.rules()[0].info.description, "to h2");
        assert_eq!(f.rules()[1].info.config, json!({"k": "v"}));

        let mut h = Harness::new(request("GET", "/", &[("x-proto", "h2")]));
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.upstream_protocol.as_deref(), Some("Http2"));

        let mut h = Harness::new(request("GET", "/", &[("x-proto", "h1")]));
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.upstream_protocol.as_deref(), Some("Http1"));

        let mut h = Harness::new(request("GET", "/", &[("x-proto", "x")]));
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.upstream_protocol, None);
    }

    #[test]
    fn a_rule_without_header_matchers_matches_everything() {
        let f = filter(json!({"rules": [
            {"macther_config": {}, "rule_info": {"upstream_protocol": "Http2"}}
        ]}));
        let mut h = Harness::new(request("POST", "/any", &[]));
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.upstream_protocol.as_deref(), Some("Http2"));
        // No rules at all: nothing changes.
        let none = filter(Value::Null);
        let mut h = Harness::new(request("GET", "/", &[]));
        assert_eq!(h.run(&none), Verdict::Continue);
        assert_eq!(h.upstream_protocol, None);
    }

    #[test]
    fn malformed_configs_are_rejected() {
        let info = json!({"upstream_protocol": "Http2"});
        let cases = [
            (json!({"rules": [{"rule_info": info}]}), "rules[0].macther_config: required (MOSN never matches a rule without one)"),
            (json!({"rules": [{"macther_config": {}}]}), "rules[0].rule_info: required"),
            (
                json!({"rules": [{"macther_config": {}, "rule_info": {"upstream_protocol": ""}}]}),
                "rules[0].rule_info.upstream_protocol: a non-empty protocol name is required",
            ),
            (
                json!({"rules": [{"macther_config": {"variables": [{"name": "x"}]}, "rule_info": info}]}),
                "rules[0].macther_config.variables: variable matchers are not supported",
            ),
            (
                json!({"rules": [{"macther_config": {}, "matcher_config": {}, "rule_info": info}]}),
                "rules[0].matcher_config: given twice (as macther_config and matcher_config)",
            ),
            (
                json!({"rules": [{"macther_config": {"headers": [{"name": ""}]}, "rule_info": info}]}),
                "rules[0].macther_config.headers[0].name: a non-empty header name is required",
            ),
            (json!({"go_plugin_config": {"transcoders": []}}), "go_plugin_config: Go transcoder plugins are not supported"),
            (json!({"rules": [{"matcher": {}, "rule_info": info}]}), "rules[0]: unknown key \"matcher\" (expected one of: macther_config, matcher_config, rule_info)"),
            (json!({"type": 3}), "type: must be a string, got a number"),
        ];
        for (v, want) in cases {
            assert_eq!(TranscoderConfig::parse(&v).unwrap_err().reason, want, "{v}");
        }
    }
}
