//! Header edits of one level (router, virtual host or route): removals, then additions.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use mosn_config::{HeaderValueOption, RouteAction, Router, VirtualHost};

use super::{At, Errors};

/// `*_headers_to_add` / `*_headers_to_remove` of one direction, compiled.
#[derive(Debug, Clone, Default)]
pub(super) struct HeaderOps {
    remove: Vec<HeaderName>,
    /// (name, value, append).
    add: Vec<(HeaderName, HeaderValue, bool)>,
}

impl HeaderOps {
    /// Compiles `add` (at `add_at`) and `remove` (at `remove_at`).
    fn build(
        add: &[HeaderValueOption],
        remove: &[String],
        add_at: &At,
        remove_at: &At,
        errs: &mut Errors,
    ) -> HeaderOps {
        let remove = remove
            .iter()
            .enumerate()
            .filter_map(|(i, name)| errs.check(&remove_at.i(i), header_name(name)))
            .collect();
        let add = add
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let hp = add_at.i(i).k("header");
                let name = errs.check(&hp.k("key"), header_name(&h.key));
                let value = errs.check(
                    &hp.k("value"),
                    HeaderValue::from_str(&h.value)
                        .map_err(|_| format!("invalid header value {:?}", h.value)),
                );
                Some((name?, value?, h.append))
            })
            .collect();
        HeaderOps { remove, add }
    }

    /// No edits.
    pub(super) fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Removes, then adds (`append`: another value; otherwise: replace every value).
    pub(super) fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value, append) in &self.add {
            if *append {
                headers.append(name.clone(), value.clone());
            } else {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

/// The request and response edits of one level.
#[derive(Debug, Clone, Default)]
pub(super) struct HeaderScope {
    pub(super) request: HeaderOps,
    pub(super) response: HeaderOps,
}

/// The four header lists of one config level, borrowed.
pub(super) struct HeaderLists<'c> {
    pub(super) request_add: &'c [HeaderValueOption],
    pub(super) request_remove: &'c [String],
    pub(super) response_add: &'c [HeaderValueOption],
    pub(super) response_remove: &'c [String],
}

/// Every config level carries the same four lists under the same names.
macro_rules! header_lists_from {
    ($($level:ty),*) => {$(
        impl<'c> From<&'c $level> for HeaderLists<'c> {
            fn from(c: &'c $level) -> Self {
                HeaderLists {
                    request_add: &c.request_headers_to_add,
                    request_remove: &c.request_headers_to_remove,
                    response_add: &c.response_headers_to_add,
                    response_remove: &c.response_headers_to_remove,
                }
            }
        }
    )*};
}

header_lists_from!(Router, VirtualHost, RouteAction);

impl HeaderScope {
    /// Compiles one level whose lists sit under `at`.
    pub(super) fn build<'c>(
        lists: impl Into<HeaderLists<'c>>,
        at: &At,
        errs: &mut Errors,
    ) -> HeaderScope {
        let lists = lists.into();
        HeaderScope {
            request: HeaderOps::build(
                lists.request_add,
                lists.request_remove,
                &at.k("request_headers_to_add"),
                &at.k("request_headers_to_remove"),
                errs,
            ),
            response: HeaderOps::build(
                lists.response_add,
                lists.response_remove,
                &at.k("response_headers_to_add"),
                &at.k("response_headers_to_remove"),
                errs,
            ),
        }
    }
}

/// A header name from config (any case; stored lower-case).
pub(super) fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))
}
