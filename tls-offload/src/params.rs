//! MOSN TLS settings -> rustls parameters: protocol versions, cipher suites, key-exchange
//! groups, ALPN, and the crypto provider that carries the chosen suites and groups.
//!
//! Unknown names are errors that quote the name. Names MOSN or OpenSSL know but rustls cannot
//! do (CBC and static-RSA suites, P-521, the post-quantum hybrid under ring) are skipped with a
//! warning, so a MOSN config that lists them still loads; a list left empty by that is an error.

use std::sync::Arc;

use mosn_config::{TlsContext, TlsVersion};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{CipherSuite, NamedGroup, SupportedCipherSuite, SupportedProtocolVersion};

use crate::TlsError;

#[cfg(feature = "aws-lc-rs")]
pub(crate) use rustls::crypto::aws_lc_rs as provider;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
pub(crate) use rustls::crypto::ring as provider;

/// The crypto provider compiled in.
#[cfg(feature = "aws-lc-rs")]
pub(crate) const PROVIDER_NAME: &str = "aws-lc-rs";
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
pub(crate) const PROVIDER_NAME: &str = "ring";

/// Parameters shared by the server and client sides of one `tls_context`.
pub(crate) struct Params {
    /// The provider restricted to the configured suites and groups.
    pub provider: Arc<CryptoProvider>,
    /// TLS 1.2 and/or 1.3.
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// ALPN protocol ids, in preference order.
    pub alpn: Vec<Vec<u8>>,
    /// The server's suite order wins over the client's. Always, as in Go's crypto/tls (MOSN):
    /// the configured `cipher_suites` order, else AES-128-GCM first (see [`cipher_suites`]).
    pub server_order: bool,
}

/// Builds the parameters of one context; `path` is the context's JSON path.
pub(crate) fn params(ctx: &TlsContext, path: &str) -> Result<Params, TlsError> {
    let versions = versions(ctx.min_version, ctx.max_version, path)?;
    let cipher_suites = cipher_suites(&ctx.cipher_suites, &format!("{path}.cipher_suites"))?;
    let kx_groups = kx_groups(&ctx.ecdh_curves, &format!("{path}.ecdh_curves"))?;
    let alpn = alpn(&ctx.alpn, &format!("{path}.alpn"))?;
    let provider = CryptoProvider {
        cipher_suites,
        kx_groups,
        ..provider::default_provider()
    };
    Ok(Params {
        provider: Arc::new(provider),
        versions,
        alpn,
        server_order: true,
    })
}

// === versions ===

fn rank(v: TlsVersion) -> Option<u8> {
    match v {
        TlsVersion::Auto => None,
        TlsVersion::V1_0 => Some(10),
        TlsVersion::V1_1 => Some(11),
        TlsVersion::V1_2 => Some(12),
        TlsVersion::V1_3 => Some(13),
    }
}

/// `min_version`/`max_version` -> the rustls versions. rustls has TLS 1.2 and 1.3 only: a
/// 1.0/1.1 floor is raised to 1.2 (with a warning); a 1.0/1.1 ceiling is an error.
pub(crate) fn versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
    path: &str,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let mut lo = min.and_then(rank).unwrap_or(12);
    let hi = max.and_then(rank).unwrap_or(13);
    if hi < 12 {
        let v = max.map(TlsVersion::as_str).unwrap_or_default();
        return Err(TlsError::config(
            format!("{path}.max_version"),
            format!("{v} is not supported: rustls speaks TLS 1.2 and 1.3 only"),
        ));
    }
    if lo < 12 {
        tracing::warn!(
            path = %format!("{path}.min_version"),
            "{} is below what rustls supports: raised to tlsv1_2",
            min.map(TlsVersion::as_str).unwrap_or_default()
        );
        lo = 12;
    }
    if lo > hi {
        return Err(TlsError::config(
            format!("{path}.min_version"),
            format!(
                "{} is above max_version {}",
                min.map(TlsVersion::as_str).unwrap_or_default(),
                max.map(TlsVersion::as_str).unwrap_or_default()
            ),
        ));
    }
    let mut out = Vec::with_capacity(2);
    if hi >= 13 {
        out.push(&rustls::version::TLS13);
    }
    if lo <= 12 {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

// === cipher suites ===

/// OpenSSL, MOSN and IANA names of the suites rustls implements.
const SUITES: &[(&str, CipherSuite)] = &[
    // TLS 1.3 (IANA = OpenSSL names; MOSN's `AES128-GCM-SHA256`/`AES256-GCM-SHA384` mean these)
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    ("AES128-GCM-SHA256", CipherSuite::TLS13_AES_128_GCM_SHA256),
    ("AES256-GCM-SHA384", CipherSuite::TLS13_AES_256_GCM_SHA384),
    // TLS 1.2, OpenSSL names
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    // TLS 1.2, MOSN's spellings (pkg/mtls/ciphers.go)
    (
        "ECDHE-ECDSA-WITH-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-WITH-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    // TLS 1.2, IANA names
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Names MOSN (pkg/mtls/ciphers.go) or OpenSSL accept for suites rustls does not implement
/// (CBC, 3DES, static RSA key exchange): skipped with a warning.
const UNSUPPORTED_SUITES: &[&str] = &[
    "ECDHE-RSA-AES256-CBC-SHA",
    "ECDHE-RSA-AES128-CBC-SHA",
    "ECDHE-ECDSA-AES256-CBC-SHA",
    "ECDHE-ECDSA-AES128-CBC-SHA",
    "RSA-AES256-CBC-SHA",
    "RSA-AES128-CBC-SHA",
    "ECDHE-RSA-3DES-EDE-CBC-SHA",
    "RSA-3DES-EDE-CBC-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "AES128-SHA256",
    "AES256-SHA256",
    "DES-CBC3-SHA",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
];

/// `cipher_suites` (`:` or `,` separated) -> the provider's suites. A TLS version none of whose
/// suites is named keeps all of its suites (as Go and MOSN do for TLS 1.3).
pub(crate) fn cipher_suites(list: &str, path: &str) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let all = provider::ALL_CIPHER_SUITES;
    let names: Vec<&str> = split(list, &[':', ',']).collect();
    if names.is_empty() {
        // Go's TLS 1.3 preference (MOSN's, on CPUs with AES instructions): AES-128-GCM, then
        // AES-256-GCM, then ChaCha20. Most clients (OpenSSL, curl) list AES-256 first; with the
        // server's order they get AES-128-GCM-SHA256, whose SHA-256 key schedule is the cheaper
        // one (SHA-384 had no fast path on the AMD CPUs measured: a quarter less CPU per
        // handshake, docs/BENCHMARKS.md). TLS 1.2 suites keep the provider's order.
        let rank = |s: &SupportedCipherSuite| match s.suite() {
            CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
            CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 2,
            _ => 3,
        };
        let mut suites = provider::DEFAULT_CIPHER_SUITES.to_vec();
        suites.sort_by_key(rank);
        return Ok(suites);
    }
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for name in &names {
        if let Some(&(_, id)) = SUITES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            let Some(suite) = all.iter().find(|s| s.suite() == id) else {
                tracing::warn!(%path, suite = %name, "cipher suite not offered by {PROVIDER_NAME}: skipped");
                continue;
            };
            if !chosen.iter().any(|s| s.suite() == id) {
                chosen.push(*suite);
            }
        } else if UNSUPPORTED_SUITES
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
        {
            tracing::warn!(%path, suite = %name, "cipher suite not implemented by rustls (no CBC, 3DES or RSA key exchange): skipped");
        } else {
            return Err(TlsError::config(
                path,
                format!("unknown cipher suite `{name}`"),
            ));
        }
    }
    if chosen.is_empty() {
        return Err(TlsError::config(
            path,
            format!("no cipher suite rustls supports in `{}`", list.trim()),
        ));
    }
    let is13 = |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls13(_));
    for tls13 in [true, false] {
        if !chosen.iter().any(|s| is13(s) == tls13) {
            chosen.extend(
                provider::DEFAULT_CIPHER_SUITES
                    .iter()
                    .filter(|s| is13(s) == tls13),
            );
        }
    }
    Ok(chosen)
}

// === key-exchange groups ===

/// `ecdh_curves` name -> group. Also accepts the IANA/OpenSSL spellings.
fn group_of(name: &str) -> Option<NamedGroup> {
    Some(match name.to_ascii_lowercase().as_str() {
        "x25519" => NamedGroup::X25519,
        "p256" | "p-256" | "secp256r1" | "prime256v1" => NamedGroup::secp256r1,
        "p384" | "p-384" | "secp384r1" => NamedGroup::secp384r1,
        "p521" | "p-521" | "secp521r1" => NamedGroup::secp521r1,
        "x25519mlkem768" => NamedGroup::X25519MLKEM768,
        _ => return None,
    })
}

/// The default groups: X25519, P-256, P-384. Never the post-quantum hybrid first
/// (ACCELERATION.md §7): it is offered only when a listener lists it.
const DEFAULT_GROUPS: &[NamedGroup] = &[
    NamedGroup::X25519,
    NamedGroup::secp256r1,
    NamedGroup::secp384r1,
];

/// `ecdh_curves` (comma separated) -> the provider's groups, in the listed order.
pub(crate) fn kx_groups(
    list: &str,
    path: &str,
) -> Result<Vec<&'static dyn SupportedKxGroup>, TlsError> {
    let find = |g: NamedGroup| {
        provider::ALL_KX_GROUPS
            .iter()
            .copied()
            .find(|k| k.name() == g)
    };
    let names: Vec<&str> = split(list, &[',', ':']).collect();
    if names.is_empty() {
        return Ok(DEFAULT_GROUPS.iter().filter_map(|&g| find(g)).collect());
    }
    let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in &names {
        let Some(group) = group_of(name) else {
            return Err(TlsError::config(path, format!("unknown curve `{name}`")));
        };
        match find(group) {
            Some(k) if !out.iter().any(|o| o.name() == group) => out.push(k),
            Some(_) => {}
            None => {
                tracing::warn!(%path, curve = %name, "key-exchange group not offered by rustls/{PROVIDER_NAME}: skipped")
            }
        }
    }
    if out.is_empty() {
        return Err(TlsError::config(
            path,
            format!(
                "no key-exchange group rustls/{PROVIDER_NAME} supports in `{}`",
                list.trim()
            ),
        ));
    }
    Ok(out)
}

// === ALPN ===

/// `alpn` (comma separated) -> protocol ids.
pub(crate) fn alpn(list: &str, path: &str) -> Result<Vec<Vec<u8>>, TlsError> {
    split(list, &[','])
        .map(|p| {
            if p.len() > 255 {
                Err(TlsError::config(
                    path,
                    "an ALPN protocol id is longer than 255 bytes",
                ))
            } else {
                Ok(p.as_bytes().to_vec())
            }
        })
        .collect()
}

fn split<'a>(list: &'a str, seps: &'a [char]) -> impl Iterator<Item = &'a str> + 'a {
    list.split(seps).map(str::trim).filter(|s| !s.is_empty())
}

/// The IANA name of a negotiated suite (`TLS_AES_128_GCM_SHA256`, `TLS_ECDHE_..._SHA256`).
pub(crate) fn suite_name(suite: SupportedCipherSuite) -> &'static str {
    let id = suite.suite();
    match id {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        _ => id.as_str().unwrap_or("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_floor_is_raised_and_ceiling_checked() {
        let v = versions(Some(TlsVersion::V1_0), None, "p").unwrap();
        assert_eq!(v.len(), 2);
        let v = versions(Some(TlsVersion::V1_3), Some(TlsVersion::Auto), "p").unwrap();
        assert_eq!(v, vec![&rustls::version::TLS13]);
        let v = versions(None, Some(TlsVersion::V1_2), "p").unwrap();
        assert_eq!(v, vec![&rustls::version::TLS12]);
        let e = versions(None, Some(TlsVersion::V1_1), "p").unwrap_err();
        assert!(e.to_string().starts_with("p.max_version: tlsv1_1"), "{e}");
        let e = versions(Some(TlsVersion::V1_3), Some(TlsVersion::V1_2), "p").unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.min_version: tlsv1_3 is above max_version tlsv1_2"
        );
    }

    #[test]
    fn suites_by_name() {
        let s = cipher_suites(
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-CBC-SHA",
            "p",
        )
        .unwrap();
        assert_eq!(
            s[0].suite(),
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        );
        // TLS 1.2 restricted to the one named suite, TLS 1.3 keeps its defaults
        let tls12: Vec<_> = s
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .collect();
        assert_eq!(tls12.len(), 1);
        assert!(s
            .iter()
            .any(|s| s.suite() == CipherSuite::TLS13_AES_256_GCM_SHA384));
        let e =
            cipher_suites("ECDHE-ECDSA-AES128-GCM-SHA256, FOO-BAR", "x.cipher_suites").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.cipher_suites: unknown cipher suite `FOO-BAR`"
        );
        assert!(cipher_suites("RSA-AES128-CBC-SHA", "p").is_err());
        assert_eq!(
            cipher_suites("", "p").unwrap().len(),
            provider::DEFAULT_CIPHER_SUITES.len()
        );
        let default = cipher_suites("", "p").unwrap();
        assert_eq!(default[0].suite(), CipherSuite::TLS13_AES_128_GCM_SHA256);
    }

    #[test]
    fn groups_default_without_post_quantum() {
        let g: Vec<_> = kx_groups("", "p")
            .unwrap()
            .iter()
            .map(|k| k.name())
            .collect();
        assert_eq!(g, DEFAULT_GROUPS);
        let g: Vec<_> = kx_groups("p384, P256", "p")
            .unwrap()
            .iter()
            .map(|k| k.name())
            .collect();
        assert_eq!(g, vec![NamedGroup::secp384r1, NamedGroup::secp256r1]);
        assert!(kx_groups("p521", "p").is_err());
        let e = kx_groups("x448", "l.ecdh_curves").unwrap_err();
        assert_eq!(e.to_string(), "l.ecdh_curves: unknown curve `x448`");
    }

    #[cfg(feature = "aws-lc-rs")]
    #[test]
    fn post_quantum_hybrid_only_when_listed() {
        let g: Vec<_> = kx_groups("x25519mlkem768,x25519", "p")
            .unwrap()
            .iter()
            .map(|k| k.name())
            .collect();
        assert_eq!(g, vec![NamedGroup::X25519MLKEM768, NamedGroup::X25519]);
    }

    #[test]
    fn alpn_list() {
        assert_eq!(
            alpn(" h2 , http/1.1,", "p").unwrap(),
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(alpn("", "p").unwrap().is_empty());
    }
}
