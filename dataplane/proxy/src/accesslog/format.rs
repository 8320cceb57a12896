//! The access-log format: `%variable%` text compiled once into tokens, rendered per request.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, COOKIE};
use http::HeaderMap;

use super::LogRecord;

/// MOSN's `types.DefaultAccessLogFormat`, used when a configured format is empty.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str = "%start_time% %request_received_duration% \
     %response_received_duration% %bytes_sent% %bytes_received% %protocol% %response_code% \
     %duration% %response_flag% %response_code% %upstream_local_address% \
     %downstream_local_address% %downstream_remote_address% %upstream_host%";

/// Why a format string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// `%name%` names no known variable (`%%` is the way to write a literal `%`).
    #[error("unknown access log variable `%{name}%`")]
    UnknownVariable {
        /// The name between the two `%`.
        name: String,
    },
    /// A `%` opens a variable that is never closed.
    #[error("access log format: `%` at byte {offset} opens a variable that is never closed")]
    Unclosed {
        /// Byte offset of the opening `%`.
        offset: usize,
    },
    /// A prefix variable (`request_header_`, ...) without the name that must follow it.
    #[error("access log variable `%{prefix}%` needs a name after the prefix")]
    MissingName {
        /// The bare prefix.
        prefix: &'static str,
    },
    /// `request_header_<NAME>` or `response_header_<NAME>` where NAME is not a header name.
    #[error("access log variable `%{name}%`: not a valid header name")]
    InvalidHeaderName {
        /// The whole variable name.
        name: String,
    },
}

/// A compiled access-log format. Parse once at configuration time, render per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogFormat {
    source: Box<str>,
    tokens: Vec<Token>,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Text(Box<str>),
    Var(Var),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    StartTime,
    RequestReceivedDuration,
    ResponseReceivedDuration,
    RequestFinishedDuration,
    ProcessTimeDuration,
    Duration,
    BytesSent,
    BytesReceived,
    Protocol,
    ResponseCode,
    ResponseFlags,
    UpstreamLocalAddress,
    DownstreamLocalAddress,
    DownstreamRemoteAddress,
    UpstreamHost,
    UpstreamCluster,
    UpstreamTransportFailureReason,
    RequestedServerName,
    RouteName,
    RequestHeader(HeaderName),
    ResponseHeader(HeaderName),
    Host,
    Path,
    Method,
    QueryString,
    RpcService,
    RpcMethod,
    RequestPath,
    RequestArg(Box<str>),
    Cookie(Box<str>),
    ConnectionId,
    StreamId,
}

const REQUEST_HEADER: &str = "request_header_";
const RESPONSE_HEADER: &str = "response_header_";
const REQUEST_ARG: &str = "request_arg_";
const COOKIE_PREFIX: &str = "cookie_";

impl Var {
    fn parse(name: &str) -> Result<Var, FormatError> {
        let var = match name {
            "start_time" => Var::StartTime,
            "request_received_duration" => Var::RequestReceivedDuration,
            "response_received_duration" => Var::ResponseReceivedDuration,
            "request_finished_duration" => Var::RequestFinishedDuration,
            "process_time_duration" => Var::ProcessTimeDuration,
            "duration" => Var::Duration,
            "bytes_sent" => Var::BytesSent,
            "bytes_received" => Var::BytesReceived,
            "protocol" => Var::Protocol,
            "response_code" => Var::ResponseCode,
            "response_flag" | "response_flags" => Var::ResponseFlags,
            "upstream_local_address" => Var::UpstreamLocalAddress,
            "downstream_local_address" => Var::DownstreamLocalAddress,
            "downstream_remote_address" => Var::DownstreamRemoteAddress,
            "upstream_host" => Var::UpstreamHost,
            "upstream_cluster" => Var::UpstreamCluster,
            "upstream_transport_failure_reason" => Var::UpstreamTransportFailureReason,
            "requested_server_name" => Var::RequestedServerName,
            "route_name" => Var::RouteName,
            "x-mosn-host" => Var::Host,
            "x-mosn-path" => Var::Path,
            "x-mosn-method" => Var::Method,
            "x-mosn-querystring" => Var::QueryString,
            "x-mosn-rpc-service" => Var::RpcService,
            "x-mosn-rpc-method" => Var::RpcMethod,
            "request_path" => Var::RequestPath,
            "connection_id" => Var::ConnectionId,
            "stream_id" => Var::StreamId,
            _ => return Self::parse_prefixed(name),
        };
        Ok(var)
    }

    fn parse_prefixed(name: &str) -> Result<Var, FormatError> {
        let suffix = |prefix: &'static str| -> Option<Result<&str, FormatError>> {
            let rest = name.strip_prefix(prefix)?;
            Some(if rest.is_empty() {
                Err(FormatError::MissingName { prefix })
            } else {
                Ok(rest)
            })
        };
        let header = |h: &str| {
            HeaderName::from_bytes(h.as_bytes()).map_err(|_| FormatError::InvalidHeaderName {
                name: name.to_string(),
            })
        };
        if let Some(h) = suffix(REQUEST_HEADER) {
            return Ok(Var::RequestHeader(header(h?)?));
        }
        if let Some(h) = suffix(RESPONSE_HEADER) {
            return Ok(Var::ResponseHeader(header(h?)?));
        }
        if let Some(arg) = suffix(REQUEST_ARG) {
            return Ok(Var::RequestArg(arg?.into()));
        }
        if let Some(cookie) = suffix(COOKIE_PREFIX) {
            return Ok(Var::Cookie(cookie?.into()));
        }
        Err(FormatError::UnknownVariable {
            name: name.to_string(),
        })
    }

    fn render(&self, r: &LogRecord, out: &mut Vec<u8>) {
        match self {
            Var::StartTime => push_time(out, r.start_time),
            Var::RequestReceivedDuration => push_opt_duration(out, r.request_received_duration),
            Var::ResponseReceivedDuration => push_opt_duration(out, r.response_received_duration),
            Var::RequestFinishedDuration => push_opt_duration(out, r.request_finished_duration),
            Var::ProcessTimeDuration => push_opt_duration(out, r.process_time_duration),
            Var::Duration => push_opt_duration(out, r.duration),
            Var::BytesSent => push_display(out, r.bytes_sent),
            Var::BytesReceived => push_display(out, r.bytes_received),
            Var::Protocol => push_opt_text(out, r.protocol.as_deref()),
            Var::ResponseCode => push_opt_display(out, r.response_code),
            Var::ResponseFlags => push_display(out, r.response_flags),
            Var::UpstreamLocalAddress => push_opt_display(out, r.upstream_local_address),
            Var::DownstreamLocalAddress => push_opt_display(out, r.downstream_local_address),
            Var::DownstreamRemoteAddress => push_opt_display(out, r.downstream_remote_address),
            Var::UpstreamHost => match r.upstream_hostname.as_deref().filter(|h| !h.is_empty()) {
                Some(name) => push_escaped(out, name.as_bytes()),
                None => push_opt_display(out, r.upstream_host),
            },
            Var::UpstreamCluster => push_opt_text(out, r.upstream_cluster.as_deref()),
            Var::UpstreamTransportFailureReason => {
                push_opt_text(out, r.upstream_transport_failure_reason.as_deref())
            }
            Var::RequestedServerName => push_opt_text(out, r.requested_server_name.as_deref()),
            Var::RouteName => push_opt_text(out, r.route_name.as_deref()),
            Var::RequestHeader(name) => push_opt_bytes(out, header(&r.request_headers, name)),
            Var::ResponseHeader(name) => push_opt_bytes(out, header(&r.response_headers, name)),
            Var::Host => push_opt_text(out, r.authority.as_deref()),
            Var::Path | Var::RequestPath => push_opt_text(out, r.path.as_deref()),
            Var::Method => push_opt_text(out, r.method.as_ref().map(http::Method::as_str)),
            Var::QueryString => push_opt_text(out, r.query.as_deref()),
            Var::RpcService => push_opt_text(out, r.rpc_service.as_deref()),
            Var::RpcMethod => push_opt_text(out, r.rpc_method.as_deref()),
            Var::RequestArg(name) => {
                let value = r.query.as_deref().and_then(|q| query_arg(q, name));
                push_opt_bytes(out, value.as_deref());
            }
            Var::Cookie(name) => push_opt_bytes(out, cookie(&r.request_headers, name)),
            Var::ConnectionId => push_opt_display(out, r.connection_id),
            Var::StreamId => push_opt_display(out, r.stream_id),
        }
    }
}

impl AccessLogFormat {
    /// Compiles `format`; an empty string means [`DEFAULT_ACCESS_LOG_FORMAT`].
    ///
    /// `%name%` must name a known variable (see the [module docs](super)); `%%` is a literal
    /// `%`.
    pub fn parse(format: &str) -> Result<Self, FormatError> {
        let source = if format.is_empty() {
            DEFAULT_ACCESS_LOG_FORMAT
        } else {
            format
        };
        let mut tokens = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(i) = rest.find('%') {
            text.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(after) = after.strip_prefix('%') {
                text.push('%');
                rest = after;
                continue;
            }
            let Some(end) = after.find('%') else {
                return Err(FormatError::Unclosed {
                    offset: source.len() - rest.len() + i,
                });
            };
            let var = Var::parse(&after[..end])?;
            if !text.is_empty() {
                tokens.push(Token::Text(std::mem::take(&mut text).into()));
            }
            tokens.push(Token::Var(var));
            rest = &after[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            tokens.push(Token::Text(text.into()));
        }

        let mut request_headers = Vec::new();
        let mut response_headers = Vec::new();
        let add = |list: &mut Vec<HeaderName>, name: &HeaderName| {
            if !list.contains(name) {
                list.push(name.clone());
            }
        };
        for token in &tokens {
            match token {
                Token::Var(Var::RequestHeader(h)) => add(&mut request_headers, h),
                Token::Var(Var::Cookie(_)) => add(&mut request_headers, &COOKIE),
                Token::Var(Var::ResponseHeader(h)) => add(&mut response_headers, h),
                _ => {}
            }
        }
        Ok(AccessLogFormat {
            source: source.into(),
            tokens,
            request_headers,
            response_headers,
        })
    }

    /// Appends one rendered line, ending in `\n`, to `out`.
    pub fn render(&self, record: &LogRecord, out: &mut Vec<u8>) {
        for token in &self.tokens {
            match token {
                Token::Text(text) => out.extend_from_slice(text.as_bytes()),
                Token::Var(var) => var.render(record, out),
            }
        }
        out.push(b'\n');
    }

    /// The format string this was compiled from (the default format when given `""`).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Request headers the format reads (`request_header_*`, and `cookie` for `cookie_*`):
    /// the only ones the engine has to keep in [`LogRecord::request_headers`].
    pub fn request_header_names(&self) -> &[HeaderName] {
        &self.request_headers
    }

    /// Response headers the format reads (`response_header_*`).
    pub fn response_header_names(&self) -> &[HeaderName] {
        &self.response_headers
    }
}

impl Default for AccessLogFormat {
    /// MOSN's default format.
    fn default() -> Self {
        AccessLogFormat::parse(DEFAULT_ACCESS_LOG_FORMAT).expect("the default format is valid")
    }
}

impl FromStr for AccessLogFormat {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        AccessLogFormat::parse(s)
    }
}

impl fmt::Display for AccessLogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

const MISSING: &[u8] = b"-";

fn push_display(out: &mut Vec<u8>, v: impl fmt::Display) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{v}");
}

fn push_opt_display(out: &mut Vec<u8>, v: Option<impl fmt::Display>) {
    match v {
        Some(v) => push_display(out, v),
        None => out.extend_from_slice(MISSING),
    }
}

fn push_opt_text(out: &mut Vec<u8>, v: Option<&str>) {
    push_opt_bytes(out, v.map(str::as_bytes));
}

fn push_opt_bytes(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => push_escaped(out, v),
        None => out.extend_from_slice(MISSING),
    }
}

/// Copies `v`, writing control bytes as `\xNN` so a value can never break the line.
fn push_escaped(out: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        if b < 0x20 || b == 0x7f {
            let _ = write!(out, "\\x{b:02x}");
        } else {
            out.push(b);
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a [u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

/// The first query parameter named `name` (after percent-decoding), percent-decoded.
fn query_arg<'a>(query: &'a str, name: &str) -> Option<Cow<'a, [u8]>> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (*percent_decode(k) == *name.as_bytes()).then(|| percent_decode(v))
        })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XY` a byte; a `%` not
/// followed by two hex digits stays as is.
fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(bytes);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

fn push_opt_duration(out: &mut Vec<u8>, d: Option<Duration>) {
    match d {
        Some(d) => push_go_duration(out, d),
        None => out.extend_from_slice(MISSING),
    }
}

/// Go's `time.Duration.String()`: `0s`, `750ns`, `1.5µs`, `12.345ms`, `2.5s`, `1m30s`,
/// `2h0m5.001s` (fraction with trailing zeros removed).
pub(super) fn push_go_duration(out: &mut Vec<u8>, d: Duration) {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if secs == 0 {
        match nanos {
            0 => out.extend_from_slice(b"0s"),
            1..=999 => push_display(out, format_args!("{nanos}ns")),
            1_000..=999_999 => {
                push_display(out, nanos / 1_000);
                push_fraction(out, nanos % 1_000, 3);
                out.extend_from_slice("µs".as_bytes());
            }
            _ => {
                push_display(out, nanos / 1_000_000);
                push_fraction(out, nanos % 1_000_000, 6);
                out.extend_from_slice(b"ms");
            }
        }
        return;
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        push_display(out, format_args!("{h}h{m}m"));
    } else if m > 0 {
        push_display(out, format_args!("{m}m"));
    }
    push_display(out, s);
    push_fraction(out, nanos, 9);
    out.push(b's');
}

/// `.ddd` with `digits` digits, trailing zeros removed; nothing when `frac` is 0.
fn push_fraction(out: &mut Vec<u8>, frac: u32, digits: usize) {
    if frac == 0 {
        return;
    }
    let text = format!("{frac:0digits$}");
    out.push(b'.');
    out.extend_from_slice(text.trim_end_matches('0').as_bytes());
}

/// `2006/01/02 15:04:05.000` in UTC.
pub(super) fn push_time(out: &mut Vec<u8>, t: SystemTime) {
    let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_millis(),
        ),
        Err(e) => {
            // Before 1970: floor to the whole second below, keep the fraction positive.
            let d = e.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, (1_000_000_000 - n) / 1_000_000),
            }
        }
    };
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, sod / 60 % 60, sod % 60);
    push_display(
        out,
        format_args!("{y:04}/{mo:02}/{d:02} {h:02}:{mi:02}:{s:02}.{millis:03}"),
    );
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
