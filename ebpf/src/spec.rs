//! What to capture: the parameter struct the server fills from the `traffic_capture` config
//! section (this crate does not read the config itself).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Which mechanism redirects the application's connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No capture: [`crate::Capture::install`] returns an empty guard.
    #[default]
    None,
    /// cgroup eBPF programs (connect4/6, sockops, sk_msg, getsockopt).
    Ebpf,
    /// `nat` table `REDIRECT` rules in a dedicated chain, in one network namespace.
    Iptables,
}

/// What to do when the eBPF capture cannot be installed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Fall back to the iptables capture (and say why).
    #[default]
    Fallback,
    /// Return the error: the caller refuses to start.
    Refuse,
}

/// A captured (or excluded) destination: an address range and optionally one port.
///
/// Text form: `CIDR` or `IP` (any port), `CIDR:PORT` / `IP:PORT` for IPv4, and
/// `[CIDR]:PORT` / `[IP]:PORT` for IPv6, e.g. `10.0.0.0/8`, `127.0.0.2:80`,
/// `[fd00::/8]:443`, `::1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The address range (host bits are cleared).
    pub net: IpNet,
    /// `None`: every port.
    pub port: Option<u16>,
}

impl Destination {
    /// A destination covering `net` on `port` (`None` = every port).
    pub fn new(net: IpNet, port: Option<u16>) -> Destination {
        Destination {
            net: net.trunc(),
            port,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.net, self.port) {
            (net, None) => write!(f, "{net}"),
            (IpNet::V4(net), Some(p)) => write!(f, "{net}:{p}"),
            (IpNet::V6(net), Some(p)) => write!(f, "[{net}]:{p}"),
        }
    }
}

/// Why a [`Destination`] text did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid destination {text:?}: {reason} (write e.g. \"10.0.0.0/8\", \"127.0.0.2:80\" or \"[fd00::/8]:443\")")]
pub struct DestinationError {
    text: String,
    reason: &'static str,
}

impl FromStr for Destination {
    type Err = DestinationError;

    fn from_str(text: &str) -> Result<Destination, DestinationError> {
        let err = |reason| DestinationError {
            text: text.to_string(),
            reason,
        };
        let port_of = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(err("the port must be in 1..=65535")),
            Ok(p) => Ok(p),
        };
        let (addr, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(|| err("missing `]`"))?;
            let port = match after {
                "" => None,
                _ => Some(port_of(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| err("expected `:PORT` after `]`"))?,
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
                .map_err(|_| err("not an IP address range"))?
        } else {
            IpNet::from(
                addr.parse::<std::net::IpAddr>()
                    .map_err(|_| err("not an IP address"))?,
            )
        };
        if text.starts_with('[') && net.addr().is_ipv4() {
            return Err(err("brackets are only for IPv6"));
        }
        Ok(Destination::new(net, port))
    }
}

/// Everything [`crate::Capture::install`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    /// Which backend to install.
    pub mode: Mode,
    /// What to do when [`Mode::Ebpf`] cannot be installed.
    pub on_failure: OnFailure,
    /// eBPF: the application's cgroup v2 directory, e.g. `/sys/fs/cgroup/unified/app`.
    /// Connections made by processes in it (and its descendants) are captured.
    pub cgroup: PathBuf,
    /// eBPF: the cgroup v2 directory the proxy's listening sockets were created in (the
    /// sockops and getsockopt programs are attached there too). `None`: this process's cgroup.
    pub proxy_cgroup: Option<PathBuf>,
    /// Where the proxy accepts captured outbound connections (on loopback).
    pub outbound_port: u16,
    /// Where the proxy accepts captured inbound connections.
    pub inbound_port: u16,
    /// Local ports whose incoming connections go to the proxy's inbound listener (iptables:
    /// nat PREROUTING REDIRECT to `inbound_port`; eBPF: `sk_lookup` hands them to the listener
    /// socket given to [`crate::Capture::install_with_listener`], with no address rewrite).
    pub inbound_ports: Vec<u16>,
    /// Inbound only: clients (source ranges) whose connections are never captured, e.g.
    /// `127.0.0.6/32` or a health checker's range. Connections made inside the namespace
    /// itself (arriving on loopback) are never captured inbound anyway.
    pub inbound_exclude_sources: Vec<IpNet>,
    /// The IPv4 address captured IPv4 connections are sent to (default 127.0.0.1).
    pub proxy_ip4: Ipv4Addr,
    /// The IPv6 address captured IPv6 connections are sent to (default ::1).
    pub proxy_ip6: Ipv6Addr,
    /// Connections made by this uid are never captured.
    pub proxy_uid: Option<u32>,
    /// Sockets with this `SO_MARK` are never captured (the proxy marks its upstream sockets).
    pub proxy_mark: Option<u32>,
    /// Destinations to capture.
    pub destinations: Vec<Destination>,
    /// Destinations never captured (a more specific match than a captured range wins).
    pub exclude_destinations: Vec<Destination>,
    /// Destination ports never captured, whatever the address.
    pub exclude_ports: Vec<u16>,
    /// eBPF: short-circuit app <-> proxy loopback connections with sockmap (`sk_msg`).
    pub sockmap: bool,
    /// eBPF: pin the data maps under `<pin_root>/<instance>-<pid>` (a bpffs directory), for
    /// inspection with `bpftool map dump pinned ...`. Stale directories of crashed instances
    /// are removed on the next install. `None`: nothing is pinned.
    pub pin_root: Option<PathBuf>,
    /// Names this capture: pin directory `<instance>-<pid>`, iptables chains
    /// `<INSTANCE>_OUTPUT` / `<INSTANCE>_INBOUND`. `[A-Za-z0-9_]`, at most 16 characters.
    pub instance: String,
    /// iptables: the network namespace to install the rules in; eBPF inbound: the namespace
    /// the `sk_lookup` program is attached to (the inbound listener must live there). A file
    /// such as `/run/netns/NAME`. `None`: the namespace of the thread calling `install`.
    pub netns: Option<PathBuf>,
}

/// Default [`CaptureSpec::outbound_port`] (Istio's).
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;
/// Default [`CaptureSpec::inbound_port`] (Istio's).
pub const DEFAULT_INBOUND_PORT: u16 = 15006;

impl Default for CaptureSpec {
    fn default() -> Self {
        CaptureSpec {
            mode: Mode::None,
            on_failure: OnFailure::Fallback,
            cgroup: PathBuf::new(),
            proxy_cgroup: None,
            outbound_port: DEFAULT_OUTBOUND_PORT,
            inbound_port: DEFAULT_INBOUND_PORT,
            inbound_ports: Vec::new(),
            inbound_exclude_sources: Vec::new(),
            proxy_ip4: Ipv4Addr::LOCALHOST,
            proxy_ip6: Ipv6Addr::LOCALHOST,
            proxy_uid: None,
            proxy_mark: None,
            destinations: Vec::new(),
            exclude_destinations: Vec::new(),
            exclude_ports: Vec::new(),
            sockmap: true,
            pin_root: None,
            instance: "mosn".to_string(),
            netns: None,
        }
    }
}

impl CaptureSpec {
    /// Checks what does not depend on the machine. Errors read as one sentence each.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.mode == Mode::None {
            return Ok(());
        }
        if self.outbound_port == 0 {
            return Err("outbound_port must be set".to_string());
        }
        if !self.inbound_ports.is_empty() && self.inbound_port == 0 {
            return Err("inbound_port must be set when inbound_ports are captured".to_string());
        }
        if self.destinations.is_empty() && self.inbound_ports.is_empty() {
            return Err(
                "no destinations to capture (use \"0.0.0.0/0\" and \"::/0\" to capture everything)"
                    .to_string(),
            );
        }
        let ok_name = !self.instance.is_empty()
            && self.instance.len() <= 16
            && self
                .instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_name {
            return Err(format!(
                "instance {:?} must be 1 to 16 characters of [A-Za-z0-9_]",
                self.instance
            ));
        }
        Ok(())
    }

    /// Every destination rule, captured or excluded, most specific first: port-specific
    /// rules before any-port rules, longer prefixes before shorter (the order the eBPF LPM
    /// lookups decide in, and the order iptables needs for first-match).
    pub(crate) fn ordered_rules(&self) -> Vec<(Destination, bool)> {
        let mut rules: Vec<(Destination, bool)> = self
            .exclude_destinations
            .iter()
            .map(|d| (*d, false))
            .chain(self.destinations.iter().map(|d| (*d, true)))
            .collect();
        // stable: for the same (port-specific, prefix) an exclusion stays before a capture
        rules.sort_by_key(|(d, _)| (d.port.is_none(), std::cmp::Reverse(d.net.prefix_len())));
        rules
    }

    /// IPv4 destinations (capture and exclude) for the eBPF trie.
    pub(crate) fn v4_rules(&self) -> impl Iterator<Item = (Ipv4Net, Option<u16>, bool)> + '_ {
        self.ordered_rules()
            .into_iter()
            .filter_map(|(d, capture)| match d.net {
                IpNet::V4(n) => Some((n, d.port, capture)),
                IpNet::V6(_) => None,
            })
    }

    /// IPv6 destinations (capture and exclude) for the eBPF trie.
    pub(crate) fn v6_rules(&self) -> impl Iterator<Item = (Ipv6Net, Option<u16>, bool)> + '_ {
        self.ordered_rules()
            .into_iter()
            .filter_map(|(d, capture)| match d.net {
                IpNet::V6(n) => Some((n, d.port, capture)),
                IpNet::V4(_) => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Destination {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn destinations_parse_and_print() {
        for (text, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("127.0.0.2", "127.0.0.2/32"),
            ("127.0.0.0/8:80", "127.0.0.0/8:80"),
            ("127.0.0.2:8080", "127.0.0.2/32:8080"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("[fd00::/8]:443", "[fd00::/8]:443"),
            ("[::1]:80", "[::1/128]:80"),
            ("[::ffff:127.0.0.2]", "::ffff:127.0.0.2/128"),
        ] {
            assert_eq!(d(text).to_string(), shown, "{text}");
            assert_eq!(d(shown), d(text), "{shown} re-parses");
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.1:0",
            "10.0.0.1:x",
            "[10.0.0.1]:80",
            "[::1",
            "[::1]80",
            "host:80",
            "::1:80:",
        ] {
            assert!(
                bad.parse::<Destination>().is_err(),
                "{bad:?} must not parse"
            );
        }
        let e = "10.0.0.1:99999".parse::<Destination>().unwrap_err();
        assert!(e.to_string().contains("1..=65535"), "{e}");
    }

    #[test]
    fn rules_are_ordered_most_specific_first() {
        let spec = CaptureSpec {
            destinations: vec![d("10.0.0.0/8"), d("10.1.0.0/16:80"), d("0.0.0.0/0:443")],
            exclude_destinations: vec![d("10.1.2.0/24"), d("10.1.0.0/16:80")],
            ..CaptureSpec::default()
        };
        let order: Vec<String> = spec
            .ordered_rules()
            .iter()
            .map(|(d, c)| format!("{}{d}", if *c { "+" } else { "-" }))
            .collect();
        assert_eq!(
            order,
            [
                "-10.1.0.0/16:80",
                "+10.1.0.0/16:80",
                "+0.0.0.0/0:443",
                "-10.1.2.0/24",
                "+10.0.0.0/8"
            ]
        );
    }

    #[test]
    fn spec_check_explains_what_is_wrong() {
        let mut spec = CaptureSpec {
            mode: Mode::Ebpf,
            ..CaptureSpec::default()
        };
        assert!(spec.check().unwrap_err().contains("0.0.0.0/0"));
        spec.destinations.push(d("10.0.0.0/8"));
        assert_eq!(spec.check(), Ok(()));
        spec.instance = "bad-name".to_string();
        assert!(spec.check().unwrap_err().contains("instance"));
        spec.instance = "mosn".to_string();
        spec.outbound_port = 0;
        assert!(spec.check().unwrap_err().contains("outbound_port"));
    }
}
