//! Route tables: virtual-host selection by authority and the named set of tables.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use mosn_config::{Router, VirtualHost};
use serde_json::{Map, Value};

use super::entry::RouteEntry;
use super::headers::HeaderScope;
use super::{At, Errors, RouteHit, RouteInput, RouterError};

// === router set ===

/// Every route table, by `router_config_name`.
#[derive(Debug, Clone, Default)]
pub struct RouterSet {
    tables: HashMap<String, Arc<RouteTable>>,
}

impl RouterSet {
    /// Compiles every router; on failure returns every problem found, with paths rooted at
    /// `routers[i]`.
    pub fn build(cfg: &[Router]) -> Result<RouterSet, Vec<RouterError>> {
        let mut errs = Errors::default();
        let mut tables = HashMap::new();
        let mut first: HashMap<&str, At> = HashMap::new();
        let root = At::default().k("routers");
        for (i, router) in cfg.iter().enumerate() {
            let at = root.i(i);
            let table = RouteTable::compile(router, &at, &mut errs);
            let name_at = at.k("router_config_name");
            if router.name.is_empty() {
                errs.push(&name_at, "router_config_name is required");
            } else if let Some(other) = first.get(router.name.as_str()) {
                errs.push(
                    &name_at,
                    format!(
                        "duplicate router_config_name {:?} (also {other})",
                        router.name
                    ),
                );
            } else {
                first.insert(&router.name, at);
                tables.insert(router.name.clone(), Arc::new(table));
            }
        }
        errs.finish(RouterSet { tables })
    }

    /// The table called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<RouteTable>> {
        self.tables.get(name).cloned()
    }

    /// The names of every table, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }
}

// === virtual hosts ===

/// What a route shares with the rest of its virtual host.
#[derive(Debug)]
pub struct VirtualHostEntry {
    name: String,
    per_filter_config: Map<String, Value>,
    headers: HeaderScope,
    router_headers: Arc<HeaderScope>,
}

impl VirtualHostEntry {
    /// The virtual host's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `per_filter_config.<filter>` of the virtual host.
    pub fn per_filter_config(&self, filter: &str) -> Option<&Value> {
        self.per_filter_config.get(filter)
    }

    /// Every `per_filter_config` entry of the virtual host.
    pub fn per_filter_configs(&self) -> &Map<String, Value> {
        &self.per_filter_config
    }

    pub(super) fn headers(&self) -> &HeaderScope {
        &self.headers
    }

    pub(super) fn router_headers(&self) -> &HeaderScope {
        &self.router_headers
    }
}

/// A virtual host and its routes, in config order.
#[derive(Debug)]
struct VirtualHostRoutes {
    entry: Arc<VirtualHostEntry>,
    routes: Vec<Arc<RouteEntry>>,
}

impl VirtualHostRoutes {
    /// Compiles `cfg`; its routes get table keys from `first_key` on.
    fn compile(
        cfg: &VirtualHost,
        router_headers: &Arc<HeaderScope>,
        first_key: usize,
        at: &At,
        errs: &mut Errors,
    ) -> Self {
        let entry = Arc::new(VirtualHostEntry {
            name: cfg.name.clone(),
            per_filter_config: cfg.per_filter_config.clone(),
            headers: HeaderScope::build(cfg, at, errs),
            router_headers: Arc::clone(router_headers),
        });
        let routes = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(j, r)| {
                let at = at.k("routers").i(j);
                Arc::new(RouteEntry::build(r, j, first_key + j, &entry, &at, errs))
            })
            .collect();
        VirtualHostRoutes { entry, routes }
    }
}

// === domains ===

/// Virtual-host lookup by authority (all keys lower-case).
#[derive(Debug, Default)]
struct DomainIndex {
    /// `host` or `host:port` -> virtual host.
    exact: HashMap<String, usize>,
    /// Suffixes of `*suffix` domains, longest first.
    wildcards: Vec<(String, usize)>,
    /// The `*` virtual host.
    default: Option<usize>,
}

impl DomainIndex {
    fn build(vhosts: &[VirtualHost], at: &At, errs: &mut Errors) -> DomainIndex {
        let mut index = DomainIndex::default();
        let mut seen: HashMap<String, At> = HashMap::new();
        for (i, vh) in vhosts.iter().enumerate() {
            for (j, domain) in vh.domains.iter().enumerate() {
                let dp = at.k("virtual_hosts").i(i).k("domains").i(j);
                let domain = domain.to_ascii_lowercase();
                if domain.is_empty() {
                    errs.push(&dp, "empty domain");
                    continue;
                }
                if let Some(first) = seen.get(&domain) {
                    let what = if domain == "*" {
                        "more than one default virtual host (domain \"*\")".to_string()
                    } else {
                        format!("duplicate domain {domain:?}")
                    };
                    errs.push(&dp, format!("{what} (also {first})"));
                    continue;
                }
                seen.insert(domain.clone(), dp);
                if domain == "*" {
                    index.default = Some(i);
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    index.wildcards.push((suffix.to_string(), i));
                } else {
                    index.exact.insert(domain, i);
                }
            }
        }
        // Stable: equal lengths keep config order (they cannot both match one name).
        index
            .wildcards
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        index
    }

    /// The virtual host for `authority`: exact `host:port`, exact host, wildcard on
    /// `host:port`, wildcard on host, then the default. No authority: the default.
    fn find(&self, authority: Option<&str>) -> Option<usize> {
        let Some(authority) = authority.filter(|a| !a.is_empty()) else {
            return self.default;
        };
        let authority = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(authority.to_ascii_lowercase())
        } else {
            Cow::Borrowed(authority)
        };
        let host = host_without_port(&authority);
        self.exact
            .get(authority.as_ref())
            .or_else(|| host.and_then(|h| self.exact.get(h)))
            .copied()
            .or_else(|| self.wildcard(&authority))
            .or_else(|| host.and_then(|h| self.wildcard(h)))
            .or(self.default)
    }

    /// Longest `*suffix` strictly shorter than `name` that ends it.
    fn wildcard(&self, name: &str) -> Option<usize> {
        self.wildcards
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map(|(_, i)| *i)
    }
}

/// The host of `host:port` / `[v6]:port`; `None` when there is no port.
fn host_without_port(authority: &str) -> Option<&str> {
    let (host, port) = authority.rsplit_once(':')?;
    let port_ok = port.bytes().all(|b| b.is_ascii_digit());
    let bracketed = host.starts_with('[') && host.ends_with(']');
    (port_ok && (bracketed || !host.contains(':'))).then_some(host)
}

// === table ===

/// One compiled router table (`router_config_name`). Immutable; share it with `Arc`.
#[derive(Debug)]
pub struct RouteTable {
    name: String,
    vhosts: Vec<VirtualHostRoutes>,
    domains: DomainIndex,
    /// Some route's match reads the path (see [`RouteTable::reads_path`]).
    reads_path: bool,
}

impl RouteTable {
    /// Compiles one router; error paths are relative to it (`virtual_hosts[0]...`).
    pub fn build(cfg: &Router) -> Result<RouteTable, Vec<RouterError>> {
        let mut errs = Errors::default();
        let table = RouteTable::compile(cfg, &At::default(), &mut errs);
        errs.finish(table)
    }

    fn compile(cfg: &Router, at: &At, errs: &mut Errors) -> RouteTable {
        let router_headers = Arc::new(HeaderScope::build(cfg, at, errs));
        let mut first_key = 0;
        let vhosts: Vec<VirtualHostRoutes> = cfg
            .virtual_hosts
            .iter()
            .enumerate()
            .map(|(i, vh)| {
                let at = at.k("virtual_hosts").i(i);
                let v = VirtualHostRoutes::compile(vh, &router_headers, first_key, &at, errs);
                first_key += v.routes.len();
                v
            })
            .collect();
        let reads_path = vhosts
            .iter()
            .any(|v| v.routes.iter().any(|r| r.matcher.reads_path()));
        RouteTable {
            name: cfg.name.clone(),
            vhosts,
            domains: DomainIndex::build(&cfg.virtual_hosts, at, errs),
            reads_path,
        }
    }

    /// True when some route's match reads the request path or query: with `false` any path
    /// finds the same route, so a caller may skip building one (RPC requests route on
    /// headers).
    pub fn reads_path(&self) -> bool {
        self.reads_path
    }

    /// `router_config_name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every route, virtual host by virtual host, in config order; the position is
    /// [`RouteEntry::key`].
    pub fn routes(&self) -> impl Iterator<Item = &RouteEntry> {
        self.vhosts
            .iter()
            .flat_map(|v| v.routes.iter().map(Arc::as_ref))
    }

    /// The virtual host selected for `authority` (see [`RouteTable::find`]).
    pub fn virtual_host(&self, authority: Option<&str>) -> Option<&VirtualHostEntry> {
        let i = self.domains.find(authority)?;
        self.vhosts.get(i).map(|v| v.entry.as_ref())
    }

    /// The first route of the selected virtual host that matches `input`.
    pub fn find(&self, input: &RouteInput<'_>) -> Option<RouteHit> {
        let vhost = self.vhosts.get(self.domains.find(input.authority)?)?;
        vhost
            .routes
            .iter()
            .find(|r| r.matcher.matches(input))
            .map(|route| RouteHit {
                route: Arc::clone(route),
            })
    }
}
