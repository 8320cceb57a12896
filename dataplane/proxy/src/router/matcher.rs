//! Route matching: where a value comes from ([`Source`]), how it is compared
//! ([`ValueMatch`]), and the compiled `match` block of one route ([`RouteMatcher`]).

use std::borrow::Cow;

use http::header::{HeaderName, COOKIE};
use mosn_config::RouteMatch;
use regex::Regex;

use super::headers::header_name;
use super::{compile_regex, At, Errors, RouteHeaders, RouteInput};

/// The `method` field (Dubbo's method name).
const METHOD: HeaderName = HeaderName::from_static("method");

// === sources ===

/// Where a matcher reads its value from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// `x-mosn-method`, `:method`.
    Method,
    /// `x-mosn-path`, `:path`.
    Path,
    /// `x-mosn-host`, `:authority`, `host`.
    Host,
    /// `x-mosn-querystring`.
    QueryString,
    /// `x-mosn-scheme`, `:scheme`.
    Scheme,
    /// The header `method` when present, else the request method. MOSN maps a header
    /// matcher named `method` to `x-mosn-method`; Dubbo carries a real `method` header.
    MethodHeader,
    /// `request_arg_<name>`: a query parameter (percent-decoded).
    QueryArg(String),
    /// A value in the header map.
    Headers(HeaderSource),
}

/// A value read from the header map alone (what a dynamic cluster name may use).
#[derive(Debug, Clone)]
pub(super) enum HeaderSource {
    /// A request header (first value, UTF-8).
    Header(HeaderName),
    /// `cookie_<name>`.
    Cookie(String),
}

impl HeaderSource {
    /// The value in `headers`, if there is one.
    pub(super) fn get<'a>(&self, headers: &'a dyn RouteHeaders) -> Option<&'a str> {
        match self {
            HeaderSource::Header(name) => header_str(headers.value(name, 0)),
            HeaderSource::Cookie(name) => (0..)
                .map_while(|i| headers.value(&COOKIE, i))
                .find_map(|v| cookie(header_str(Some(v))?, name)),
        }
    }
}

impl Source {
    /// The source of a header matcher: a header name, where MOSN's
    /// built-in `x-mosn-*` keys and HTTP/2 pseudo-headers read the request head.
    pub(super) fn header(name: &str) -> Result<Source, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "x-mosn-method" | ":method" => Source::Method,
            "x-mosn-path" | ":path" => Source::Path,
            "x-mosn-host" | ":authority" | "host" => Source::Host,
            "x-mosn-querystring" => Source::QueryString,
            "x-mosn-scheme" | ":scheme" => Source::Scheme,
            "method" => Source::MethodHeader,
            _ => Source::Headers(HeaderSource::Header(header_name(name)?)),
        })
    }

    /// The source of a variable: `request_arg_<name>`, `cookie_<name>`,
    /// `request_header_<name>`, a built-in `x-mosn-*` variable, or a header name.
    pub(super) fn variable(name: &str) -> Result<Source, String> {
        let named = |rest: &str| {
            if rest.is_empty() {
                Err(format!("variable {name:?} names nothing"))
            } else {
                Ok(rest.to_string())
            }
        };
        if let Some(arg) = name.strip_prefix("request_arg_") {
            named(arg).map(Source::QueryArg)
        } else if let Some(cookie) = name.strip_prefix("cookie_") {
            named(cookie).map(|c| Source::Headers(HeaderSource::Cookie(c)))
        } else if let Some(header) = name.strip_prefix("request_header_") {
            Source::header(header)
        } else {
            Source::header(name)
        }
    }

    /// The value in `input`, if there is one.
    pub(super) fn get<'a>(&self, input: &RouteInput<'a>) -> Option<Cow<'a, str>> {
        let value = match self {
            Source::Method => input.method.as_str(),
            Source::Path => input.path,
            Source::Host => input.authority?,
            Source::QueryString => input.query?,
            Source::Scheme => input.scheme,
            Source::MethodHeader => {
                header_str(input.headers.value(&METHOD, 0)).unwrap_or(input.method.as_str())
            }
            Source::QueryArg(name) => return query_param(input.query?, name),
            Source::Headers(h) => h.get(input.headers)?,
        };
        Some(Cow::Borrowed(value))
    }
}

/// A header value as text (UTF-8, which RPC headers may carry; HTTP's `to_str` is
/// visible-ASCII only).
fn header_str(value: Option<&[u8]>) -> Option<&str> {
    std::str::from_utf8(value?).ok()
}

/// The first value of query parameter `name` (names and values percent-decoded, `+` is a
/// space).
fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| decode_component(k) == name)
        .map(|(_, v)| decode_component(v))
}

/// The value of cookie `name` in one `Cookie` header value.
fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Percent-decodes a query component; invalid escapes stay as they are, invalid UTF-8
/// becomes U+FFFD. Borrows when there is nothing to decode.
fn decode_component(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(text);
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (b, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

// === values ===

/// How a value is compared.
#[derive(Debug, Clone)]
pub(super) enum ValueMatch {
    /// Equal.
    Exact(String),
    /// Regex (anchored at build time when the whole value must match).
    Regex(Regex),
    /// Present, any value.
    Present,
    /// Never matches (a variable matcher without value or regex, as in MOSN).
    Never,
}

impl ValueMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(expected) => value == expected,
            ValueMatch::Regex(re) => re.is_match(value),
            ValueMatch::Present => true,
            ValueMatch::Never => false,
        }
    }
}

/// A value read from a [`Source`] and compared with a [`ValueMatch`]; an absent value does
/// not match.
#[derive(Debug, Clone)]
pub(super) struct Condition {
    source: Source,
    value: ValueMatch,
}

impl Condition {
    fn matches(&self, input: &RouteInput<'_>) -> bool {
        self.source
            .get(input)
            .is_some_and(|v| self.value.matches(&v))
    }
}

/// A `variables[]` entry; `or` joins it with the next one by "or" instead of "and".
#[derive(Debug, Clone)]
struct Variable {
    condition: Condition,
    or: bool,
}

// === paths ===

/// The path part of a route's `match`.
#[derive(Debug, Clone)]
pub(super) enum PathMatch {
    /// `prefix`.
    Prefix {
        /// The prefix.
        prefix: String,
        /// `case_sensitive` (ASCII case folding otherwise).
        case_sensitive: bool,
    },
    /// `path`: the whole path.
    Exact {
        /// The path.
        path: String,
        /// `case_sensitive`.
        case_sensitive: bool,
    },
    /// `regex`, anchored: the whole path.
    Regex(Regex),
    /// No path matcher: MOSN's RPC rule, matched on headers (and variables) only.
    Any,
}

impl PathMatch {
    /// What is left of `path` after the matched part when it matches: the rest after a
    /// prefix, `""` after an exact or regex match, the whole path for [`PathMatch::Any`].
    pub(super) fn remainder<'p>(&self, path: &'p str) -> Option<&'p str> {
        let same = |a: &[u8], b: &[u8], case_sensitive: bool| {
            if case_sensitive {
                a == b
            } else {
                a.eq_ignore_ascii_case(b)
            }
        };
        match self {
            PathMatch::Prefix {
                prefix,
                case_sensitive,
            } => {
                let head = path.as_bytes().get(..prefix.len())?;
                same(head, prefix.as_bytes(), *case_sensitive)
                    .then(|| path.get(prefix.len()..))
                    .flatten()
            }
            PathMatch::Exact {
                path: expected,
                case_sensitive,
            } => same(path.as_bytes(), expected.as_bytes(), *case_sensitive).then_some(""),
            PathMatch::Regex(re) => re.is_match(path).then_some(""),
            PathMatch::Any => Some(path),
        }
    }
}

// === the match block ===

/// A compiled `match`: path matcher, then headers and query parameters, then variables.
#[derive(Debug, Clone)]
pub(super) struct RouteMatcher {
    pub(super) path: PathMatch,
    conditions: Vec<Condition>,
    variables: Vec<Variable>,
}

impl RouteMatcher {
    /// Compiles `m` (at `at`, the `match` object), recording errors in `errs`.
    pub(super) fn build(m: &RouteMatch, at: &At, errs: &mut Errors) -> RouteMatcher {
        let case_sensitive = m.case_sensitive.unwrap_or(true);
        // Priority as in MOSN when several are set: prefix, path, regex.
        let path = if !m.prefix.is_empty() {
            PathMatch::Prefix {
                prefix: m.prefix.clone(),
                case_sensitive,
            }
        } else if !m.path.is_empty() {
            PathMatch::Exact {
                path: m.path.clone(),
                case_sensitive,
            }
        } else if !m.regex.is_empty() {
            errs.check(&at.k("regex"), compile_regex(&m.regex, true))
                .map_or(PathMatch::Any, PathMatch::Regex)
        } else {
            PathMatch::Any
        };
        if m.dsl_expressions.is_some() {
            errs.push(
                &at.k("dsl_expressions"),
                "dsl_expressions (CEL) are not supported; use headers or variables",
            );
        }

        let mut conditions = Vec::new();
        for (i, h) in m.headers.iter().enumerate() {
            let hp = at.k("headers").i(i);
            let source = errs.check(&hp.k("name"), Source::header(&h.name));
            let value = if h.regex {
                errs.check(&hp.k("value"), compile_regex(&h.value, false))
                    .map(ValueMatch::Regex)
            } else if h.value == ".*" {
                // MOSN's legacy spelling of "any value".
                Some(ValueMatch::Present)
            } else {
                Some(ValueMatch::Exact(h.value.clone()))
            };
            conditions.extend(
                source
                    .zip(value)
                    .map(|(source, value)| Condition { source, value }),
            );
        }
        for (i, q) in m.query_parameters.iter().enumerate() {
            let qp = at.k("query_parameters").i(i);
            if q.name.is_empty() {
                errs.push(&qp.k("name"), "query parameter name is empty");
            }
            let value = if q.regex {
                errs.check(&qp.k("value"), compile_regex(&q.value, true))
                    .map(ValueMatch::Regex)
            } else if q.value.is_empty() {
                Some(ValueMatch::Present)
            } else {
                Some(ValueMatch::Exact(q.value.clone()))
            };
            conditions.extend(value.map(|value| Condition {
                source: Source::QueryArg(q.name.clone()),
                value,
            }));
        }

        let mut variables = Vec::new();
        for (i, v) in m.variables.iter().enumerate() {
            let vp = at.k("variables").i(i);
            let source = errs.check(&vp.k("name"), Source::variable(&v.name));
            // MOSN: an empty value or regex is "not set"; the regex wins over the value.
            let value = match (v.regex.as_deref(), v.value.as_deref()) {
                (Some(re), _) if !re.is_empty() => errs
                    .check(&vp.k("regex"), compile_regex(re, false))
                    .map(ValueMatch::Regex),
                (_, Some(value)) if !value.is_empty() => Some(ValueMatch::Exact(value.into())),
                _ => Some(ValueMatch::Never),
            };
            let or = match v.model.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("" | "and") => Some(false),
                Some("or") => Some(true),
                Some(other) => {
                    errs.push(
                        &vp.k("model"),
                        format!("unknown model {other:?} (expected \"and\" or \"or\")"),
                    );
                    None
                }
            };
            if let (Some(source), Some(value), Some(or)) = (source, value, or) {
                variables.push(Variable {
                    condition: Condition { source, value },
                    or,
                });
            }
        }

        RouteMatcher {
            path,
            conditions,
            variables,
        }
    }

    /// Whether the request matches every part.
    /// True when matching reads the request path (a path matcher, or a header or variable
    /// condition on the path or its query).
    pub(super) fn reads_path(&self) -> bool {
        let on_path = |c: &Condition| {
            matches!(
                c.source,
                Source::Path | Source::QueryString | Source::QueryArg(_)
            )
        };
        !matches!(self.path, PathMatch::Any)
            || self.conditions.iter().any(on_path)
            || self.variables.iter().any(|v| on_path(&v.condition))
    }

    pub(super) fn matches(&self, input: &RouteInput<'_>) -> bool {
        self.path.remainder(input.path).is_some()
            && self.conditions.iter().all(|c| c.matches(input))
            && self.variables_match(input)
    }

    /// MOSN's variable rule: results chain left to right; after an `or` entry a new chain
    /// starts, and a chain that is true when it reaches an `or` wins. An absent variable
    /// reads as `""`.
    fn variables_match(&self, input: &RouteInput<'_>) -> bool {
        let mut result = true;
        let mut last_or = false;
        for v in &self.variables {
            let actual = v.condition.source.get(input).unwrap_or_default();
            let current = v.condition.value.matches(&actual);
            result = if last_or { current } else { result && current };
            if result && v.or {
                break;
            }
            last_or = v.or;
        }
        result
    }
}
