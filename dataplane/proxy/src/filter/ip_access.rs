//! `ip_access`: allow or deny clients by IP or CIDR (MOSN `pkg/filter/stream/ipaccess`).
//! Runs BeforeRoute, as in MOSN (so route overrides do not apply).
//!
//! ```json
//! {"type": "ip_access", "config": {
//!   "default_action": "deny",
//!   "header": "x-forwarded-for",
//!   "ips": [{"action": "deny",  "addrs": ["192.168.1.1"]},
//!           {"action": "allow", "addrs": ["192.168.1.0/24", "10.0.0.0/8", "2001:db8::/32"]}]
//! }}
//! ```
//!
//! - `ips` is checked in order: the first entry whose `addrs` contain the client decides
//!   (`allow` continues, `deny` replies 403 with `ACCESS_DENIED`). `action` defaults to
//!   `allow`; `addrs` (IPs or CIDRs) must not be empty (MOSN: "not found trusted IPs").
//! - `default_action` (`allow` unless `deny`) decides when no entry matches.
//! - `header`: take the client IP from this request header (the first element of a comma
//!   list, an optional port allowed) when present; otherwise, and when the header is absent,
//!   the connection's remote address. An unparsable header value matches no entry, so the
//!   default action applies (MOSN). IPv4-mapped IPv6 addresses compare as IPv4.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::HeaderName;
use http::StatusCode;
use ipnet::IpNet;
use serde_json::Value;

use super::json::Fields;
use super::{FilterError, LocalReply, RequestCtx, StreamFilter, Verdict};
use crate::flags::ResponseFlags;

/// The type name.
pub const TYPE: &str = "ip_access";

/// What to do with a matching client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Reply 403.
    Deny,
}

/// The parsed `ip_access` config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpAccessConfig {
    /// `default_action`.
    pub default_action: Action,
    /// `header`.
    pub header: Option<HeaderName>,
    /// `ips`, in order.
    pub rules: Vec<(Action, Vec<IpNet>)>,
}

fn parse_action(f: &Fields<'_>, key: &str) -> Result<Option<Action>, FilterError> {
    match f.str(key)? {
        None => Ok(None),
        Some("allow") => Ok(Some(Action::Allow)),
        Some("deny") => Ok(Some(Action::Deny)),
        Some(other) => Err(f.err(key, format!("must be \"allow\" or \"deny\", got {other:?}"))),
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(IpNet::from(ip.to_canonical()));
    }
    s.parse::<IpNet>().ok()
}

impl IpAccessConfig {
    /// Parses MOSN's JSON.
    pub fn parse(v: &Value) -> Result<IpAccessConfig, FilterError> {
        let f = Fields::root(v, &["default_action", "header", "ips"])?;
        let default_action = parse_action(&f, "default_action")?.unwrap_or(Action::Allow);
        let header = match f.str("header")? {
            None | Some("") => None,
            Some(h) => Some(
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| f.err("header", format!("invalid header name {h:?}")))?,
            ),
        };
        let mut rules = Vec::new();
        for entry in &f.objects("ips", &["action", "addrs"])? {
            let action = parse_action(entry, "action")?.unwrap_or(Action::Allow);
            let addrs = entry.array("addrs")?.map(Vec::as_slice).unwrap_or(&[]);
            if addrs.is_empty() {
                return Err(entry.err("addrs", "at least one IP or CIDR is required"));
            }
            let mut nets = Vec::with_capacity(addrs.len());
            for (j, a) in addrs.iter().enumerate() {
                let key = format!("addrs[{j}]");
                let s = a
                    .as_str()
                    .ok_or_else(|| entry.err(&key, "must be a string"))?;
                let net = parse_net(s)
                    .ok_or_else(|| entry.err(&key, format!("not an IP address or CIDR: {s:?}")))?;
                nets.push(net);
            }
            rules.push((action, nets));
        }
        Ok(IpAccessConfig {
            default_action,
            header,
            rules,
        })
    }
}

/// The `ip_access` filter.
#[derive(Debug)]
pub struct IpAccessFilter {
    config: IpAccessConfig,
}

/// The registry factory.
pub fn factory(v: &Value) -> Result<Arc<dyn StreamFilter>, FilterError> {
    Ok(Arc::new(IpAccessFilter::new(IpAccessConfig::parse(v)?)))
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80` (the first of a comma list).
fn ip_from_header(value: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(value).ok()?;
    let first = s.split(',').next()?.trim();
    if let Ok(ip) = first.parse::<IpAddr>() {
        return Some(ip);
    }
    first.parse::<SocketAddr>().ok().map(|a| a.ip())
}

impl IpAccessFilter {
    /// A filter with this config.
    pub fn new(config: IpAccessConfig) -> IpAccessFilter {
        IpAccessFilter { config }
    }

    /// The decision for a client IP (`None`: unknown client, only the default applies).
    pub fn decide(&self, client: Option<IpAddr>) -> Action {
        if let Some(ip) = client.map(|ip| ip.to_canonical()) {
            for (action, nets) in &self.config.rules {
                if nets.iter().any(|n| n.contains(&ip)) {
                    return *action;
                }
            }
        }
        self.config.default_action
    }
}

impl StreamFilter for IpAccessFilter {
    fn name(&self) -> &'static str {
        TYPE
    }

    fn on_request(&self, ctx: &mut RequestCtx<'_>) -> Verdict {
        let client = match self
            .config
            .header
            .as_ref()
            .and_then(|h| ctx.head.headers.get(h))
        {
            Some(v) => ip_from_header(v.as_bytes()),
            None => Some(ctx.downstream_remote.ip()),
        };
        match self.decide(client) {
            Action::Allow => Verdict::Continue,
            Action::Deny => Verdict::Reply(
                LocalReply::new(StatusCode::FORBIDDEN, ResponseFlags::ACCESS_DENIED)
                    .with_text("access denied"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::filter::tests::{request, Harness};

    fn filter(v: Value) -> IpAccessFilter {
        IpAccessFilter::new(IpAccessConfig::parse(&v).unwrap())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn first_matching_entry_decides_in_order() {
        // MOSN's stream_filter_test.go table: block 192.168.1.1, allow its /24, block all.
        let f = filter(json!({"ips": [
            {"action": "deny", "addrs": ["192.168.1.1"]},
            {"action": "allow", "addrs": ["192.168.1.0/24"]},
            {"action": "allow", "addrs": ["10.1.1.0/16"]},
            {"action": "allow", "addrs": ["2001:0db8:0000:0000:0000:0000:0000:0000/32"]},
            {"action": "deny", "addrs": ["0.0.0.0/0"]}
        ]}));
        assert_eq!(f.decide(ip("192.168.1.1")), Action::Deny);
        assert_eq!(f.decide(ip("192.168.1.2")), Action::Allow);
        assert_eq!(f.decide(ip("10.1.200.3")), Action::Allow);
        assert_eq!(f.decide(ip("2001:db8::1")), Action::Allow);
        assert_eq!(f.decide(ip("172.168.1.2")), Action::Deny);
        // An IPv6 client outside every entry falls to the default (allow).
        assert_eq!(f.decide(ip("2001:db9::1")), Action::Allow);
    }

    #[test]
    fn default_action_applies_when_nothing_matches() {
        let allow_list = filter(json!({"default_action": "deny",
                                       "ips": [{"action": "allow", "addrs": ["127.0.0.1", "10.0.0.0/8"]}]}));
        assert_eq!(allow_list.decide(ip("127.0.0.1")), Action::Allow);
        assert_eq!(allow_list.decide(ip("10.9.8.7")), Action::Allow);
        assert_eq!(allow_list.decide(ip("11.0.0.1")), Action::Deny);
        assert_eq!(allow_list.decide(None), Action::Deny);
        let open = filter(json!({"ips": []}));
        assert_eq!(open.decide(None), Action::Allow);
        assert_eq!(open.decide(ip("1.2.3.4")), Action::Allow);
    }

    #[test]
    fn cidr_with_host_bits_and_mapped_addresses() {
        let f = filter(json!({"default_action": "deny",
                              "ips": [{"addrs": ["192.168.0.1/24", "::ffff:1.2.3.4"]}]}));
        assert_eq!(f.decide(ip("192.168.0.200")), Action::Allow);
        assert_eq!(f.decide(ip("192.168.1.1")), Action::Deny);
        assert_eq!(f.decide(ip("1.2.3.4")), Action::Allow);
        assert_eq!(f.decide(ip("::ffff:192.168.0.9")), Action::Allow);
    }

    #[test]
    fn client_ip_comes_from_the_header_or_the_connection() {
        let f = filter(
            json!({"header": "x-forwarded-for", "default_action": "deny",
                              "ips": [{"action": "allow", "addrs": ["10.0.0.0/8"]}]}),
        );
        // The connection is 127.0.0.1 (see Harness); the header names the client.
        let mut h = Harness::new(request(
            "GET",
            "/",
            &[("x-forwarded-for", "10.1.2.3, 127.0.0.1")],
        ));
        assert_eq!(h.run(&f), Verdict::Continue);
        let mut h = Harness::new(request("GET", "/", &[("x-forwarded-for", "10.1.2.3:5555")]));
        assert_eq!(h.run(&f), Verdict::Continue);
        let mut h = Harness::new(request("GET", "/", &[("x-forwarded-for", "8.8.8.8")]));
        match h.run(&f) {
            Verdict::Reply(r) => {
                assert_eq!(r.status, StatusCode::FORBIDDEN);
                assert!(r.flags.contains(ResponseFlags::ACCESS_DENIED));
            }
            v => panic!("expected 403, got {v:?}"),
        }
        // Garbage in the header: no client IP, default action.
        let mut h = Harness::new(request("GET", "/", &[("x-forwarded-for", "unknown")]));
        assert!(matches!(h.run(&f), Verdict::Reply(_)));
        // Header absent: the connection's address.
        let mut h = Harness::new(request("GET", "/", &[]));
        assert!(matches!(h.run(&f), Verdict::Reply(_)));
        h.remote = "10.0.0.9:4000".parse().unwrap();
        assert_eq!(h.run(&f), Verdict::Continue);
    }

    #[test]
    fn header_parsing() {
        assert_eq!(ip_from_header(b"[::1]:80"), ip("::1"));
        assert_eq!(ip_from_header(b" 2001:db8::2 , 1.1.1.1"), ip("2001:db8::2"));
        assert_eq!(ip_from_header(b""), None);
        assert_eq!(ip_from_header(b"\xff"), None);
    }

    #[test]
    fn malformed_configs_are_rejected() {
        let cases = [
            (
                json!({"ips": [{"action": "allow", "addrs": []}]}),
                "ips[0].addrs: at least one IP or CIDR is required",
            ),
            (
                json!({"ips": [{"action": "allow"}]}),
                "ips[0].addrs: at least one IP or CIDR is required",
            ),
            (
                json!({"ips": [{"action": "block", "addrs": ["1.2.3.4"]}]}),
                "ips[0].action: must be \"allow\" or \"deny\", got \"block\"",
            ),
            (
                json!({"ips": [{"addrs": ["1.2.3.4", "10.0.0.0/33"]}]}),
                "ips[0].addrs[1]: not an IP address or CIDR: \"10.0.0.0/33\"",
            ),
            (
                json!({"ips": [{"addrs": [5]}]}),
                "ips[0].addrs[0]: must be a string",
            ),
            (
                json!({"default_action": "maybe"}),
                "default_action: must be \"allow\" or \"deny\", got \"maybe\"",
            ),
            (
                json!({"header": "bad header"}),
                "header: invalid header name \"bad header\"",
            ),
            (
                json!({"ips": {"action": "allow"}}),
                "ips: must be an array, got an object",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(IpAccessConfig::parse(&v).unwrap_err().reason, want, "{v}");
        }
    }
}
