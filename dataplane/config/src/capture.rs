//! `traffic_capture`: transparent capture of an application's connections into mosn
//! (a mosn-rs section; MOSN itself leaves capture to iptables scripts outside the proxy).
//!
//! ```json
//! "traffic_capture": {
//!   "mode": "ebpf",                          // "ebpf" | "iptables" | "none" (default)
//!   "cgroup_path": "/sys/fs/cgroup/unified/app",
//!   "proxy_cgroup_path": "",                 // default: the cgroup mosn runs in
//!   "outbound_port": 15001, "inbound_port": 15006, "inbound_ports": [8080],
//!   "inbound_exclude_sources": ["10.0.0.9/32"], // clients never captured inbound
//!   "proxy_mark": 1337, "proxy_uid": 1337,   // the proxy's own sockets: never captured
//!   "destinations": ["127.0.0.0/8:80", "10.0.0.0/8", "[fd00::/8]:443"],
//!   "exclude_destinations": ["10.0.0.1"], "exclude_ports": [22],
//!   "on_failure": "fallback",                // "fallback" (to iptables) | "refuse"
//!   "sockmap": true,                         // default true
//!   "bpffs_pin_path": "/sys/fs/bpf/mosn",    // default: nothing pinned
//!   "instance": "mosn"
//! }
//! ```
//!
//! Raw serde struct, typed model, validation and the dump live here; `raw.rs`, `model.rs`,
//! `validate.rs` and `lib.rs` only hook them in.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Default `outbound_port`.
pub const DEFAULT_CAPTURE_OUTBOUND_PORT: u16 = 15001;
/// Default `inbound_port`.
pub const DEFAULT_CAPTURE_INBOUND_PORT: u16 = 15006;

// === raw ===

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTrafficCapture {
    pub mode: String,
    pub cgroup_path: String,
    pub proxy_cgroup_path: String,
    pub outbound_port: Option<u64>,
    pub inbound_port: Option<u64>,
    pub inbound_ports: Vec<u64>,
    pub inbound_exclude_sources: Vec<String>,
    pub proxy_uid: Option<u32>,
    pub proxy_mark: Option<u32>,
    pub destinations: Vec<String>,
    pub exclude_destinations: Vec<String>,
    pub exclude_ports: Vec<u64>,
    pub on_failure: String,
    pub sockmap: Option<bool>,
    pub bpffs_pin_path: String,
    pub instance: String,
}

// === typed ===

/// `traffic_capture.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaptureMode {
    /// `none`: no capture (the default).
    #[default]
    None,
    /// `ebpf`: cgroup eBPF programs on `cgroup_path`.
    Ebpf,
    /// `iptables`: nat `REDIRECT` rules in mosn's network namespace.
    Iptables,
}

impl CaptureMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMode::None => "none",
            CaptureMode::Ebpf => "ebpf",
            CaptureMode::Iptables => "iptables",
        }
    }
}

/// `traffic_capture.on_failure`: what to do when the eBPF capture cannot be installed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaptureFailurePolicy {
    /// `fallback`: install the iptables capture instead (the default).
    #[default]
    Fallback,
    /// `refuse`: refuse to start.
    Refuse,
}

impl CaptureFailurePolicy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureFailurePolicy::Fallback => "fallback",
            CaptureFailurePolicy::Refuse => "refuse",
        }
    }
}

/// A captured or excluded destination: `CIDR`/`IP` (every port), `CIDR:PORT`/`IP:PORT` for
/// IPv4, `[CIDR]:PORT`/`[IP]:PORT` for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CaptureDestination {
    /// Address range (host bits cleared).
    pub net: IpNet,
    /// `None`: every port.
    pub port: Option<u16>,
}

impl fmt::Display for CaptureDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.net, self.port) {
            (net, None) => write!(f, "{net}"),
            (IpNet::V4(net), Some(p)) => write!(f, "{net}:{p}"),
            (IpNet::V6(net), Some(p)) => write!(f, "[{net}]:{p}"),
        }
    }
}

impl FromStr for CaptureDestination {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let port_of = |p: &str| match p.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("port {p:?} is not in 1..=65535")),
        };
        let (addr, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or("missing `]`")?;
            let port = match after {
                "" => None,
                _ => Some(port_of(
                    after
                        .strip_prefix(':')
                        .ok_or("expected `:PORT` after `]`")?,
                )?),
            };
            (inside, port)
        } else if text.matches(':').count() == 1 {
            let (addr, port) = text.split_once(':').unwrap_or((text, ""));
            (addr, Some(port_of(port)?))
        } else {
            (text, None)
        };
        let net = if addr.contains('/') {
            addr.parse::<IpNet>()
                .map_err(|_| format!("{addr:?} is not an IP address range"))?
        } else {
            IpNet::from(
                addr.parse::<IpAddr>()
                    .map_err(|_| format!("{addr:?} is not an IP address"))?,
            )
        };
        if text.starts_with('[') && net.addr().is_ipv4() {
            return Err("brackets are only for IPv6".to_string());
        }
        Ok(CaptureDestination {
            net: net.trunc(),
            port,
        })
    }
}

/// `traffic_capture`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficCapture {
    /// Which mechanism.
    pub mode: CaptureMode,
    /// The application's cgroup v2 directory (required for `ebpf`).
    pub cgroup_path: Option<PathBuf>,
    /// The cgroup v2 directory mosn's listening sockets live in; `None`: mosn's own cgroup.
    pub proxy_cgroup_path: Option<PathBuf>,
    /// Where mosn accepts captured outbound connections (127.0.0.1 / ::1).
    pub outbound_port: u16,
    /// Where mosn accepts captured inbound connections (a `use_original_dst` listener).
    pub inbound_port: u16,
    /// Local ports whose incoming connections are captured (iptables: nat PREROUTING
    /// REDIRECT; eBPF: `sk_lookup` in mosn's network namespace).
    pub inbound_ports: Vec<u16>,
    /// Client ranges whose incoming connections are never captured (connections made inside
    /// mosn's own network namespace never are).
    pub inbound_exclude_sources: Vec<IpNet>,
    /// Connections made by this uid are never captured.
    pub proxy_uid: Option<u32>,
    /// Sockets with this `SO_MARK` are never captured; mosn marks its upstream sockets.
    pub proxy_mark: Option<u32>,
    /// What is captured.
    pub destinations: Vec<CaptureDestination>,
    /// What is never captured (a more specific match wins over a captured range).
    pub exclude_destinations: Vec<CaptureDestination>,
    /// Destination ports never captured.
    pub exclude_ports: Vec<u16>,
    /// eBPF failure policy.
    pub on_failure: CaptureFailurePolicy,
    /// Short-circuit app <-> mosn loopback connections with sockmap.
    pub sockmap: bool,
    /// bpffs directory to pin the eBPF maps under (`<path>/<instance>-<pid>`).
    pub bpffs_pin_path: Option<PathBuf>,
    /// Name of this capture (pin directory, iptables chain prefix).
    pub instance: String,
}

impl Default for TrafficCapture {
    fn default() -> Self {
        TrafficCapture {
            mode: CaptureMode::None,
            cgroup_path: None,
            proxy_cgroup_path: None,
            outbound_port: DEFAULT_CAPTURE_OUTBOUND_PORT,
            inbound_port: DEFAULT_CAPTURE_INBOUND_PORT,
            inbound_ports: Vec::new(),
            inbound_exclude_sources: Vec::new(),
            proxy_uid: None,
            proxy_mark: None,
            destinations: Vec::new(),
            exclude_destinations: Vec::new(),
            exclude_ports: Vec::new(),
            on_failure: CaptureFailurePolicy::Fallback,
            sockmap: true,
            bpffs_pin_path: None,
            instance: "mosn".to_string(),
        }
    }
}

// === validation ===

/// One problem found while building: a path relative to `traffic_capture` (empty for the
/// section itself), the message, and whether it is an error (else a warning).
pub(crate) type Report<'a> = &'a mut dyn FnMut(&str, String, bool);

fn port(value: u64, at: &str, report: Report<'_>) -> Option<u16> {
    match u16::try_from(value) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            report(at, format!("port {value} out of range 1..=65535"), true);
            None
        }
    }
}

fn ports(values: &[u64], key: &str, report: Report<'_>) -> Vec<u16> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| port(*v, &format!("{key}[{i}]"), report))
        .collect()
}

fn destinations(values: &[String], key: &str, report: Report<'_>) -> Vec<CaptureDestination> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, text)| match text.parse::<CaptureDestination>() {
            Ok(d) => Some(d),
            Err(why) => {
                report(
                    &format!("{key}[{i}]"),
                    format!(
                        "invalid destination {text:?}: {why} (write e.g. \"10.0.0.0/8\", \
                         \"127.0.0.2:80\" or \"[fd00::/8]:443\")"
                    ),
                    true,
                );
                None
            }
        })
        .collect()
}

fn sources(values: &[String], key: &str, report: Report<'_>) -> Vec<IpNet> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            let at = format!("{key}[{i}]");
            match text.parse::<CaptureDestination>() {
                Ok(CaptureDestination { net, port: None }) => Some(net),
                Ok(_) => {
                    report(
                        &at,
                        format!("{text:?}: a client range has no port (write e.g. \"10.0.0.0/8\")"),
                        true,
                    );
                    None
                }
                Err(why) => {
                    report(
                        &at,
                        format!(
                            "invalid client range {text:?}: {why} (write e.g. \"10.0.0.0/8\", \
                             \"127.0.0.6\" or \"fd00::/8\")"
                        ),
                        true,
                    );
                    None
                }
            }
        })
        .collect()
}

fn path(text: &str, key: &str, report: Report<'_>) -> Option<PathBuf> {
    if text.is_empty() {
        return None;
    }
    if !text.starts_with('/') {
        report(key, format!("{text:?} must be an absolute path"), true);
    }
    Some(PathBuf::from(text))
}

/// Raw section -> typed section; problems go to `report`.
pub(crate) fn build(raw: &RawTrafficCapture, report: Report<'_>) -> TrafficCapture {
    let mode = match raw.mode.to_ascii_lowercase().as_str() {
        "" | "none" => CaptureMode::None,
        "ebpf" => CaptureMode::Ebpf,
        "iptables" => CaptureMode::Iptables,
        other => {
            report(
                "mode",
                format!("unknown mode {other:?}: expected \"ebpf\", \"iptables\" or \"none\""),
                true,
            );
            CaptureMode::None
        }
    };
    let on_failure = match raw.on_failure.to_ascii_lowercase().as_str() {
        "" | "fallback" => CaptureFailurePolicy::Fallback,
        "refuse" => CaptureFailurePolicy::Refuse,
        other => {
            report(
                "on_failure",
                format!("unknown on_failure {other:?}: expected \"fallback\" or \"refuse\""),
                true,
            );
            CaptureFailurePolicy::Fallback
        }
    };
    let tc = TrafficCapture {
        mode,
        cgroup_path: path(&raw.cgroup_path, "cgroup_path", report),
        proxy_cgroup_path: path(&raw.proxy_cgroup_path, "proxy_cgroup_path", report),
        outbound_port: raw
            .outbound_port
            .and_then(|p| port(p, "outbound_port", report))
            .unwrap_or(DEFAULT_CAPTURE_OUTBOUND_PORT),
        inbound_port: raw
            .inbound_port
            .and_then(|p| port(p, "inbound_port", report))
            .unwrap_or(DEFAULT_CAPTURE_INBOUND_PORT),
        inbound_ports: ports(&raw.inbound_ports, "inbound_ports", report),
        inbound_exclude_sources: sources(
            &raw.inbound_exclude_sources,
            "inbound_exclude_sources",
            report,
        ),
        proxy_uid: raw.proxy_uid,
        proxy_mark: raw.proxy_mark,
        destinations: destinations(&raw.destinations, "destinations", report),
        exclude_destinations: destinations(
            &raw.exclude_destinations,
            "exclude_destinations",
            report,
        ),
        exclude_ports: ports(&raw.exclude_ports, "exclude_ports", report),
        on_failure,
        sockmap: raw.sockmap.unwrap_or(true),
        bpffs_pin_path: path(&raw.bpffs_pin_path, "bpffs_pin_path", report),
        instance: if raw.instance.is_empty() {
            "mosn".to_string()
        } else {
            raw.instance.clone()
        },
    };

    let ok_name = tc.instance.len() <= 16
        && tc
            .instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_name {
        report(
            "instance",
            format!(
                "{:?} must be 1 to 16 characters of [A-Za-z0-9_]",
                tc.instance
            ),
            true,
        );
    }
    if tc.proxy_mark == Some(0) {
        report(
            "proxy_mark",
            "must not be 0: every unmarked socket has mark 0, so nothing would be captured"
                .to_string(),
            true,
        );
    }
    if tc.proxy_uid == Some(0) {
        report(
            "proxy_uid",
            "0 (root): connections of every root process are left uncaptured".to_string(),
            false,
        );
    }
    if tc.mode == CaptureMode::None {
        return tc;
    }
    if tc.destinations.is_empty() && tc.inbound_ports.is_empty() && raw.destinations.is_empty() {
        report(
            "destinations",
            "nothing to capture: list destinations (\"0.0.0.0/0\" and \"::/0\" capture \
             everything)"
                .to_string(),
            true,
        );
    }
    // Outbound capture (destinations) needs the cgroup and a way to tell mosn's own
    // connections apart; inbound capture alone needs neither (neither sk_lookup nor nat
    // PREROUTING ever sees a connection made inside mosn's namespace as inbound).
    let outbound = !tc.destinations.is_empty() || !raw.destinations.is_empty();
    if tc.mode == CaptureMode::Ebpf && outbound && tc.cgroup_path.is_none() {
        report(
            "cgroup_path",
            "required with mode \"ebpf\" and destinations: the application's cgroup v2 \
             directory"
                .to_string(),
            true,
        );
    }
    let iptables_possible = tc.mode == CaptureMode::Iptables
        || (tc.mode == CaptureMode::Ebpf && tc.on_failure == CaptureFailurePolicy::Fallback);
    if outbound && iptables_possible && tc.proxy_mark.is_none() && tc.proxy_uid.is_none() {
        let why = if tc.mode == CaptureMode::Iptables {
            "mode \"iptables\""
        } else {
            "on_failure \"fallback\" (to iptables)"
        };
        report(
            "",
            format!(
                "{why} needs proxy_mark or proxy_uid: iptables rules apply to mosn's own \
                 connections too, which would loop back into mosn"
            ),
            true,
        );
    }
    if tc.inbound_ports.contains(&tc.inbound_port) || tc.inbound_ports.contains(&tc.outbound_port) {
        report(
            "inbound_ports",
            "must not list inbound_port or outbound_port (mosn's own listeners)".to_string(),
            true,
        );
    }
    tc
}

// === dump ===

/// The section as config JSON (every field written, so it parses back to the same value).
pub(crate) fn dump(tc: &TrafficCapture) -> Value {
    let mut m = Map::new();
    let put = |m: &mut Map<String, Value>, k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    let strs = |ds: &[CaptureDestination]| {
        Value::from(ds.iter().map(|d| d.to_string()).collect::<Vec<_>>())
    };
    put(&mut m, "mode", tc.mode.as_str().into());
    if let Some(p) = &tc.cgroup_path {
        put(&mut m, "cgroup_path", p.display().to_string().into());
    }
    if let Some(p) = &tc.proxy_cgroup_path {
        put(&mut m, "proxy_cgroup_path", p.display().to_string().into());
    }
    put(&mut m, "outbound_port", tc.outbound_port.into());
    put(&mut m, "inbound_port", tc.inbound_port.into());
    put(&mut m, "inbound_ports", tc.inbound_ports.clone().into());
    put(
        &mut m,
        "inbound_exclude_sources",
        Value::from(
            tc.inbound_exclude_sources
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>(),
        ),
    );
    if let Some(uid) = tc.proxy_uid {
        put(&mut m, "proxy_uid", uid.into());
    }
    if let Some(mark) = tc.proxy_mark {
        put(&mut m, "proxy_mark", mark.into());
    }
    put(&mut m, "destinations", strs(&tc.destinations));
    put(
        &mut m,
        "exclude_destinations",
        strs(&tc.exclude_destinations),
    );
    put(&mut m, "exclude_ports", tc.exclude_ports.clone().into());
    put(&mut m, "on_failure", tc.on_failure.as_str().into());
    put(&mut m, "sockmap", tc.sockmap.into());
    if let Some(p) = &tc.bpffs_pin_path {
        put(&mut m, "bpffs_pin_path", p.display().to_string().into());
    }
    put(&mut m, "instance", tc.instance.clone().into());
    Value::Object(m)
}

/// Adds `traffic_capture` to a dumped config object.
pub(crate) fn add_to_dump(mut dumped: Value, tc: Option<&TrafficCapture>) -> Value {
    if let (Some(tc), Value::Object(m)) = (tc, &mut dumped) {
        m.insert("traffic_capture".to_string(), dump(tc));
    }
    dumped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_print_back() {
        for (text, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("127.0.0.2", "127.0.0.2/32"),
            ("127.0.0.0/8:80", "127.0.0.0/8:80"),
            ("::1", "::1/128"),
            ("[fd00::/8]:443", "[fd00::/8]:443"),
        ] {
            let d: CaptureDestination = text.parse().unwrap();
            assert_eq!(d.to_string(), shown);
            assert_eq!(shown.parse::<CaptureDestination>().unwrap(), d);
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.1:0",
            "[10.0.0.1]:80",
            "[::1",
            "host:80",
        ] {
            assert!(bad.parse::<CaptureDestination>().is_err(), "{bad:?}");
        }
    }

    fn load(section: &str) -> Result<crate::Loaded, crate::ConfigError> {
        crate::parse_str(
            &format!(r#"{{"traffic_capture": {section}}}"#),
            crate::Format::Json,
        )
    }

    fn errors(section: &str) -> Vec<String> {
        match load(section) {
            Ok(_) => Vec::new(),
            Err(crate::ConfigError::Invalid(d)) => d.iter().map(|d| d.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn a_full_section_parses_and_round_trips_through_the_dump() {
        let loaded = load(
            r#"{
                "mode": "ebpf", "cgroup_path": "/sys/fs/cgroup/unified/app",
                "proxy_cgroup_path": "/sys/fs/cgroup/unified/mosn",
                "outbound_port": 15101, "inbound_port": 15106, "inbound_ports": [8080],
                "inbound_exclude_sources": ["127.0.0.6", "fd00::/8"],
                "proxy_uid": 1337, "proxy_mark": 4919,
                "destinations": ["127.0.0.0/8:80", "10.0.0.0/8", "[fd00::/8]:443"],
                "exclude_destinations": ["10.0.0.1"], "exclude_ports": [22, 15020],
                "on_failure": "refuse", "sockmap": false,
                "bpffs_pin_path": "/sys/fs/bpf/mosn", "instance": "edge"
            }"#,
        )
        .unwrap();
        let tc = loaded.config.traffic_capture.clone().unwrap();
        assert_eq!(tc.mode, CaptureMode::Ebpf);
        assert_eq!(tc.outbound_port, 15101);
        assert_eq!(tc.inbound_ports, [8080]);
        assert_eq!(tc.proxy_mark, Some(4919));
        assert_eq!(tc.on_failure, CaptureFailurePolicy::Refuse);
        assert!(!tc.sockmap);
        assert_eq!(tc.destinations.len(), 3);
        assert_eq!(tc.destinations[2].port, Some(443));
        assert_eq!(tc.exclude_ports, [22, 15020]);
        assert_eq!(
            tc.inbound_exclude_sources,
            [
                "127.0.0.6/32".parse::<IpNet>().unwrap(),
                "fd00::/8".parse().unwrap()
            ]
        );
        // inbound_ports under ebpf: captured by sk_lookup, no warning any more
        assert!(
            !loaded
                .warnings
                .iter()
                .any(|w| w.path.starts_with("traffic_capture")),
            "{:?}",
            loaded.warnings
        );
        let dumped = loaded.config.dump();
        assert_eq!(
            dumped["traffic_capture"]["destinations"][0],
            "127.0.0.0/8:80"
        );
        let again = crate::parse_value(&dumped).unwrap().config;
        assert_eq!(again, loaded.config.redacted());
    }

    #[test]
    fn defaults_and_absent_section() {
        let c = crate::parse_str("{}", crate::Format::Json).unwrap().config;
        assert_eq!(c.traffic_capture, None);
        assert!(c.dump().get("traffic_capture").is_none());
        let tc = load(r#"{"mode": "none"}"#)
            .unwrap()
            .config
            .traffic_capture
            .unwrap();
        assert_eq!(tc, TrafficCapture::default());
        let tc = load(r#"{"mode": "iptables", "destinations": ["0.0.0.0/0"], "proxy_uid": 1337}"#)
            .unwrap()
            .config
            .traffic_capture
            .unwrap();
        assert_eq!(
            (tc.outbound_port, tc.inbound_port, tc.sockmap, tc.on_failure),
            (15001, 15006, true, CaptureFailurePolicy::Fallback)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = errors(
            r#"{"mode": "bpf", "destinations": ["10.0.0.0/8", "10.0.0.1:0", "nope"],
                "outbound_port": 70000, "exclude_ports": [22, 0], "on_failure": "maybe",
                "proxy_mark": 0, "cgroup_path": "relative/app", "instance": "a-b"}"#,
        );
        let want = [
            "traffic_capture.mode: unknown mode \"bpf\"",
            "traffic_capture.destinations[1]: invalid destination \"10.0.0.1:0\"",
            "traffic_capture.destinations[2]: invalid destination \"nope\"",
            "traffic_capture.outbound_port: port 70000 out of range",
            "traffic_capture.exclude_ports[1]: port 0 out of range",
            "traffic_capture.on_failure: unknown on_failure \"maybe\"",
            "traffic_capture.proxy_mark: must not be 0",
            "traffic_capture.cgroup_path: \"relative/app\" must be an absolute path",
            "traffic_capture.instance: \"a-b\" must be",
        ];
        for w in want {
            assert!(
                e.iter().any(|e| e.starts_with(w)),
                "missing {w:?} in {e:#?}"
            );
        }

        let e = errors(r#"{"mode": "ebpf", "destinations": ["10.0.0.0/8"]}"#);
        assert!(
            e.iter()
                .any(|e| e.starts_with("traffic_capture.cgroup_path: required")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.starts_with(
                "traffic_capture: on_failure \"fallback\" (to iptables) needs proxy_mark"
            )),
            "{e:?}"
        );
        let e = errors(r#"{"mode": "iptables", "proxy_mark": 1}"#);
        assert!(
            e.iter()
                .any(|e| e.starts_with("traffic_capture.destinations: nothing to capture")),
            "{e:?}"
        );
        let e = errors(r#"{"mode": "ebpf", "destinations": "10.0.0.0/8"}"#);
        assert!(
            e.iter()
                .any(|e| e.starts_with("traffic_capture.destinations:")),
            "{e:?}"
        );
        assert!(errors(
            r#"{"mode": "ebpf", "on_failure": "refuse", "cgroup_path": "/sys/fs/cgroup/unified/a",
                "destinations": ["10.0.0.0/8"]}"#
        )
        .is_empty());
        // inbound only: no cgroup, no proxy_mark needed
        assert!(errors(r#"{"mode": "ebpf", "inbound_ports": [8080]}"#).is_empty());
        let e = errors(
            r#"{"mode": "ebpf", "inbound_ports": [8080, 15006],
                "inbound_exclude_sources": ["10.0.0.0/8:80", "nope"]}"#,
        );
        for w in [
            "traffic_capture.inbound_ports: must not list inbound_port",
            "traffic_capture.inbound_exclude_sources[0]: \"10.0.0.0/8:80\": a client range has no port",
            "traffic_capture.inbound_exclude_sources[1]: invalid client range \"nope\"",
        ] {
            assert!(e.iter().any(|e| e.starts_with(w)), "missing {w:?} in {e:#?}");
        }
    }
}
