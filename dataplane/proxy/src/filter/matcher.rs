//! MOSN header matchers: `{"name": "service", "value": "test", "regex": false}`
//! (`v2.HeaderMatcher`, used by `fault.headers` and the transcoder's `macther_config.headers`).
//!
//! A list matches when every matcher matches (MOSN `MatchHeaders`). One matcher matches when
//! the header is present and:
//! - `regex: false` (default): some value of the header equals `value` byte for byte; an
//!   absent or empty `value` only requires the header to be present;
//! - `regex: true`: `value` is a regular expression that matches somewhere in some value
//!   (unanchored, as Go's `Regexp.MatchString` which MOSN uses; write `^...$` for a full
//!   match).
//!
//! Header names are case-insensitive.

use http::header::HeaderName;
use http::HeaderMap;
use regex::Regex;

use super::json::Fields;
use super::FilterError;

/// Keys of one header matcher object.
pub(crate) const KEYS: &[&str] = &["name", "value", "regex"];

#[derive(Clone, Debug)]
enum Value {
    Present,
    Exact(Box<[u8]>),
    Regex(Regex),
}

/// One compiled header matcher.
#[derive(Clone, Debug)]
pub struct HeaderMatcher {
    name: HeaderName,
    value: Value,
}

impl HeaderMatcher {
    /// Matches when `name` has the value `value` exactly.
    pub fn exact(name: HeaderName, value: &str) -> HeaderMatcher {
        HeaderMatcher {
            name,
            value: Value::Exact(value.as_bytes().into()),
        }
    }

    /// Matches when `name` is present.
    pub fn present(name: HeaderName) -> HeaderMatcher {
        HeaderMatcher {
            name,
            value: Value::Present,
        }
    }

    /// Matches when `pattern` matches somewhere in a value of `name`.
    pub fn regex(name: HeaderName, pattern: &str) -> Result<HeaderMatcher, FilterError> {
        let re = Regex::new(pattern)
            .map_err(|e| FilterError::new(format!("invalid regex {pattern:?}: {e}")))?;
        Ok(HeaderMatcher {
            name,
            value: Value::Regex(re),
        })
    }

    /// The header name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// True when the header matches.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter().peekable();
        match &self.value {
            Value::Present => values.peek().is_some(),
            Value::Exact(want) => values.any(|v| v.as_bytes() == &want[..]),
            Value::Regex(re) => values.any(|v| v.to_str().is_ok_and(|s| re.is_match(s))),
        }
    }

    /// Parses one matcher object.
    pub(crate) fn parse(f: &Fields<'_>) -> Result<HeaderMatcher, FilterError> {
        let raw_name = f
            .str("name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| f.err("name", "a non-empty header name is required"))?;
        let name = HeaderName::from_bytes(raw_name.as_bytes())
            .map_err(|_| f.err("name", format!("invalid header name {raw_name:?}")))?;
        let value = f.str("value")?.unwrap_or("");
        if f.bool("regex")?.unwrap_or(false) {
            HeaderMatcher::regex(name, value).map_err(|e| e.prefixed(f.path_of("value")))
        } else if value.is_empty() {
            Ok(HeaderMatcher::present(name))
        } else {
            Ok(HeaderMatcher::exact(name, value))
        }
    }
}

/// Parses the matcher array at `key` (absent = no matcher = matches everything).
pub(crate) fn parse_list(f: &Fields<'_>, key: &str) -> Result<Vec<HeaderMatcher>, FilterError> {
    f.objects(key, KEYS)?
        .iter()
        .map(HeaderMatcher::parse)
        .collect()
}

/// True when every matcher matches (an empty list matches everything).
pub fn all_match(matchers: &[HeaderMatcher], headers: &HeaderMap) -> bool {
    matchers.iter().all(|m| m.matches(headers))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn parse(v: serde_json::Value) -> Result<Vec<HeaderMatcher>, FilterError> {
        let f = Fields::root(&v, &["headers"])?;
        parse_list(&f, "headers")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn exact_regex_and_presence() {
        let m = parse(json!({"headers": [
            {"name": "Service", "value": "test"},
            {"name": "user", "value": "^b.b$", "regex": true},
            {"name": "x-present"}
        ]}))
        .unwrap();
        let ok = headers(&[("service", "test"), ("user", "bob"), ("x-present", "")]);
        assert!(all_match(&m, &ok));
        let wrong_value = headers(&[("service", "tes"), ("user", "bob"), ("x-present", "1")]);
        assert!(!all_match(&m, &wrong_value));
        let regex_miss = headers(&[("service", "test"), ("user", "bobby"), ("x-present", "1")]);
        assert!(!all_match(&m, &regex_miss));
        let missing = headers(&[("service", "test"), ("user", "bob")]);
        assert!(!all_match(&m, &missing));
        assert!(all_match(&[], &HeaderMap::new()));
    }

    #[test]
    fn regex_is_unanchored_like_go_and_any_value_counts() {
        let m =
            parse(json!({"headers": [{"name": "user", "value": "ob", "regex": true}]})).unwrap();
        assert!(all_match(&m, &headers(&[("user", "bobby")])));
        let m = parse(json!({"headers": [{"name": "tag", "value": "b"}]})).unwrap();
        assert!(all_match(&m, &headers(&[("tag", "a"), ("tag", "b")])));
        assert!(!all_match(&m, &headers(&[("tag", "a"), ("tag", "c")])));
    }

    #[test]
    fn malformed_matchers_are_rejected() {
        assert_eq!(
            parse(json!({"headers": [{"value": "x"}]}))
                .unwrap_err()
                .reason,
            "headers[0].name: a non-empty header name is required"
        );
        assert_eq!(
            parse(json!({"headers": [{"name": "bad name"}]}))
                .unwrap_err()
                .reason,
            "headers[0].name: invalid header name \"bad name\""
        );
        assert!(
            parse(json!({"headers": [{"name": "a", "value": "(", "regex": true}]}))
                .unwrap_err()
                .reason
                .starts_with("headers[0].value: invalid regex")
        );
        assert_eq!(
            parse(json!({"headers": [{"name": "a", "regex": "yes"}]}))
                .unwrap_err()
                .reason,
            "headers[0].regex: must be a boolean, got a string"
        );
        assert_eq!(
            parse(json!({"headers": {"name": "a"}})).unwrap_err().reason,
            "headers: must be an array, got an object"
        );
        assert_eq!(
            parse(json!({"headers": [{"name": "a", "exact": "b"}]}))
                .unwrap_err()
                .reason,
            "headers[0]: unknown key \"exact\" (expected one of: name, value, regex)"
        );
    }
}
