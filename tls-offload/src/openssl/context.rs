//! `TlsContext` -> OpenSSL `SslContext`, server and client side, from the same parameters the
//! rustls backend uses (params.rs): TLS 1.2/1.3, the same cipher suites and key-exchange groups
//! (mapped to OpenSSL names), ALPN, client verification, certificates from PEM text or files.
//!
//! Keys are re-created as legacy RSA / EC_KEY objects (`d2i_RSAPrivateKey`, `d2i_ECPrivateKey`)
//! after the accelerator is loaded: such a key takes the default ENGINE's method when it is
//! created, and OpenSSL 3 routes a key with a non-default method ("foreign") through that method
//! for every signature. A key decoded by the provider decoders would never reach the engine.

use ::openssl::ec::EcKey;
use ::openssl::pkey::{Id, PKey, Private};
use ::openssl::rsa::Rsa;
use ::openssl::ssl::{
    AlpnError, SslContext, SslContextBuilder, SslMethod, SslOptions, SslVerifyMode, SslVersion,
};
use ::openssl::x509::store::X509StoreBuilder;
use ::openssl::x509::X509;
use mosn_config::TlsContext;
use rustls::{CipherSuite, NamedGroup, SupportedCipherSuite};
use rustls_pki_types::PrivateKeyDer;

use crate::params::{self, Params};
use crate::{source, TlsError};

/// A listener context: certificate and key, versions, suites, groups, ALPN (a fatal alert when
/// the client offers ALPN and nothing matches, as rustls does), client verification, sessions.
pub(crate) fn server_context(ctx: &TlsContext, path: &str) -> Result<SslContext, TlsError> {
    let p = params::params(ctx, path)?;
    let mut b = builder(SslMethod::tls_server(), &p, path)?;
    certificate(&mut b, ctx, path)?;
    if ctx.verify_client || ctx.require_client_cert {
        // server.rs already checked that ca_cert is set
        let ca_path = format!("{path}.ca_cert");
        let cas = source::load_certs(&ctx.ca_cert, &ca_path)?;
        let mut store = X509StoreBuilder::new().map_err(|e| TlsError::openssl(&ca_path, e))?;
        for der in &cas {
            let ca = X509::from_der(der).map_err(|e| TlsError::openssl(&ca_path, e))?;
            b.add_client_ca(&ca)
                .map_err(|e| TlsError::openssl(&ca_path, e))?;
            store
                .add_cert(ca)
                .map_err(|e| TlsError::openssl(&ca_path, e))?;
        }
        b.set_verify_cert_store(store.build())
            .map_err(|e| TlsError::openssl(&ca_path, e))?;
        let mut mode = SslVerifyMode::PEER;
        if ctx.require_client_cert {
            mode |= SslVerifyMode::FAIL_IF_NO_PEER_CERT;
        }
        b.set_verify(mode);
    }
    if !p.alpn.is_empty() {
        let ours = p.alpn.clone();
        b.set_alpn_select_callback(move |_, offered| {
            select_alpn(&ours, offered).ok_or(AlpnError::ALERT_FATAL)
        });
    }
    if p.server_order {
        b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
    }
    if ctx.ticket.is_empty() {
        b.set_options(SslOptions::NO_TICKET);
    }
    // Sessions resume only within the context that made them (required with client certs).
    let sid: Vec<u8> = path.bytes().rev().take(32).collect();
    b.set_session_id_context(&sid)
        .map_err(|e| TlsError::openssl(path, e))?;
    Ok(b.build())
}

/// A cluster context: roots (`ca_cert`, else the system's default paths), `insecure_skip`,
/// client certificate, versions, suites, groups, ALPN. SNI and the name checked are set per
/// connection (driver.rs).
pub(crate) fn client_context(ctx: &TlsContext, path: &str) -> Result<SslContext, TlsError> {
    let p = params::params(ctx, path)?;
    let mut b = builder(SslMethod::tls_client(), &p, path)?;
    if ctx.insecure_skip {
        b.set_verify(SslVerifyMode::NONE);
    } else {
        if ctx.ca_cert.trim().is_empty() {
            b.set_default_verify_paths()
                .map_err(|e| TlsError::openssl(path, e))?;
        } else {
            let ca_path = format!("{path}.ca_cert");
            let mut store = X509StoreBuilder::new().map_err(|e| TlsError::openssl(&ca_path, e))?;
            for der in source::load_certs(&ctx.ca_cert, &ca_path)? {
                let ca = X509::from_der(&der).map_err(|e| TlsError::openssl(&ca_path, e))?;
                store
                    .add_cert(ca)
                    .map_err(|e| TlsError::openssl(&ca_path, e))?;
            }
            b.set_verify_cert_store(store.build())
                .map_err(|e| TlsError::openssl(&ca_path, e))?;
        }
        b.set_verify(SslVerifyMode::PEER);
    }
    if !ctx.cert_chain.trim().is_empty() && !ctx.private_key.trim().is_empty() {
        certificate(&mut b, ctx, path)?;
    }
    if !p.alpn.is_empty() {
        b.set_alpn_protos(&alpn_wire(&p.alpn))
            .map_err(|e| TlsError::openssl(format!("{path}.alpn"), e))?;
    }
    Ok(b.build())
}

fn builder(method: SslMethod, p: &Params, path: &str) -> Result<SslContextBuilder, TlsError> {
    let mut b = SslContextBuilder::new(method).map_err(|e| TlsError::openssl(path, e))?;
    let has = |v| p.versions.iter().any(|s| s.version == v);
    let tls12 = has(rustls::ProtocolVersion::TLSv1_2);
    let min = if tls12 {
        SslVersion::TLS1_2
    } else {
        SslVersion::TLS1_3
    };
    let max = if has(rustls::ProtocolVersion::TLSv1_3) {
        SslVersion::TLS1_3
    } else {
        SslVersion::TLS1_2
    };
    b.set_min_proto_version(Some(min))
        .and_then(|()| b.set_max_proto_version(Some(max)))
        .map_err(|e| TlsError::openssl(path, e))?;

    let suites_path = format!("{path}.cipher_suites");
    let (mut tls13, mut tls12_list) = (Vec::new(), Vec::new());
    for suite in &p.provider.cipher_suites {
        match suite {
            SupportedCipherSuite::Tls13(_) => tls13.push(params::suite_name(*suite)),
            SupportedCipherSuite::Tls12(_) => {
                if let Some(name) = openssl_suite_name(suite.suite()) {
                    tls12_list.push(name);
                }
            }
        }
    }
    b.set_ciphersuites(&tls13.join(":"))
        .map_err(|e| TlsError::openssl(&suites_path, e))?;
    if tls12 {
        b.set_cipher_list(&tls12_list.join(":"))
            .map_err(|e| TlsError::openssl(&suites_path, e))?;
    }

    let groups_path = format!("{path}.ecdh_curves");
    let mut groups = Vec::new();
    for g in &p.provider.kx_groups {
        match openssl_group_name(g.name()) {
            Some(name) => groups.push(name),
            None => {
                tracing::warn!(path = %groups_path, group = ?g.name(), "key-exchange group not offered by OpenSSL 3.0: skipped")
            }
        }
    }
    if groups.is_empty() {
        return Err(TlsError::config(
            groups_path,
            "no key-exchange group OpenSSL supports",
        ));
    }
    b.set_groups_list(&groups.join(":"))
        .map_err(|e| TlsError::openssl(&groups_path, e))?;
    b.set_options(SslOptions::NO_RENEGOTIATION);
    Ok(b)
}

/// Certificate chain and private key (the key re-created so the default engine applies).
fn certificate(b: &mut SslContextBuilder, ctx: &TlsContext, path: &str) -> Result<(), TlsError> {
    let cert_path = format!("{path}.cert_chain");
    let key_path = format!("{path}.private_key");
    let chain = source::load_certs(&ctx.cert_chain, &cert_path)?;
    let mut certs = chain.iter().map(|der| X509::from_der(der));
    if let Some(leaf) = certs.next() {
        let leaf = leaf.map_err(|e| TlsError::openssl(&cert_path, e))?;
        b.set_certificate(&leaf)
            .map_err(|e| TlsError::openssl(&cert_path, e))?;
    }
    for extra in certs {
        let extra = extra.map_err(|e| TlsError::openssl(&cert_path, e))?;
        b.add_extra_chain_cert(extra)
            .map_err(|e| TlsError::openssl(&cert_path, e))?;
    }
    let key = source::load_key(&ctx.private_key, &key_path)?;
    let key = engine_key(&key).map_err(|e| TlsError::openssl(&key_path, e))?;
    b.set_private_key(&key)
        .map_err(|e| TlsError::openssl(&key_path, e))?;
    b.check_private_key()
        .map_err(|_| TlsError::config(&key_path, "the private key does not match the certificate"))
}

/// A private key as a legacy RSA / EC_KEY object created now, so it carries the default
/// ENGINE's RSA or EC method when an engine is the default for it (else the software method).
fn engine_key(key: &PrivateKeyDer<'_>) -> Result<PKey<Private>, ::openssl::error::ErrorStack> {
    match key {
        PrivateKeyDer::Pkcs1(der) => {
            PKey::from_rsa(Rsa::private_key_from_der(der.secret_pkcs1_der())?)
        }
        PrivateKeyDer::Sec1(der) => {
            PKey::from_ec_key(EcKey::private_key_from_der(der.secret_sec1_der())?)
        }
        PrivateKeyDer::Pkcs8(der) => {
            let pkey = PKey::private_key_from_pkcs8(der.secret_pkcs8_der())?;
            match pkey.id() {
                Id::RSA => {
                    let der = pkey.rsa()?.private_key_to_der()?;
                    PKey::from_rsa(Rsa::private_key_from_der(&der)?)
                }
                Id::EC => {
                    let der = pkey.ec_key()?.private_key_to_der()?;
                    PKey::from_ec_key(EcKey::private_key_from_der(&der)?)
                }
                _ => Ok(pkey),
            }
        }
        _ => Err(::openssl::error::ErrorStack::get()),
    }
}

/// ALPN ids -> the wire format (length-prefixed).
fn alpn_wire(protocols: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for p in protocols {
        // params::alpn rejects ids over 255 bytes
        wire.push(u8::try_from(p.len()).unwrap_or(u8::MAX));
        wire.extend_from_slice(p);
    }
    wire
}

/// The first of our protocols (our preference, as rustls) that the client's wire-format offer
/// contains, as a slice of the offer.
fn select_alpn<'a>(ours: &[Vec<u8>], offered: &'a [u8]) -> Option<&'a [u8]> {
    let mut theirs = Vec::new();
    let mut rest = offered;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if tail.len() < len {
            break;
        }
        theirs.push(&tail[..len]);
        rest = &tail[len..];
    }
    ours.iter()
        .find_map(|p| theirs.iter().copied().find(|t| *t == p.as_slice()))
}

/// The OpenSSL name of a TLS 1.2 suite rustls implements.
fn openssl_suite_name(suite: CipherSuite) -> Option<&'static str> {
    Some(match suite {
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => return None,
    })
}

/// The OpenSSL 3.0 name of a key-exchange group (`None`: not in OpenSSL 3.0, e.g. the
/// post-quantum hybrid).
fn openssl_group_name(group: NamedGroup) -> Option<&'static str> {
    Some(match group {
        NamedGroup::X25519 => "X25519",
        NamedGroup::secp256r1 => "P-256",
        NamedGroup::secp384r1 => "P-384",
        NamedGroup::secp521r1 => "P-521",
        NamedGroup::X448 => "X448",
        _ => return None,
    })
}

/// The rustls name of a negotiated group NID (as `SessionInfo` reports it for rustls).
pub(crate) fn group_name(nid: i32) -> Option<&'static str> {
    Some(match nid {
        openssl_sys::NID_X25519 => "X25519",
        openssl_sys::NID_X448 => "X448",
        openssl_sys::NID_X9_62_prime256v1 => "secp256r1",
        openssl_sys::NID_secp384r1 => "secp384r1",
        openssl_sys::NID_secp521r1 => "secp521r1",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_wire_format() {
        assert_eq!(
            alpn_wire(&[b"h2".to_vec(), b"http/1.1".to_vec()]),
            b"\x02h2\x08http/1.1"
        );
    }

    #[test]
    fn alpn_server_preference() {
        let ours = [b"h2".to_vec(), b"http/1.1".to_vec()];
        assert_eq!(select_alpn(&ours, b"\x08http/1.1\x02h2"), Some(&b"h2"[..]));
        assert_eq!(select_alpn(&ours, b"\x08http/1.1"), Some(&b"http/1.1"[..]));
        assert_eq!(select_alpn(&ours, b"\x04sofa"), None);
        assert_eq!(select_alpn(&ours, b"\x09h2"), None);
    }

    #[test]
    fn every_rustls_tls12_suite_has_an_openssl_name() {
        for s in params::provider::ALL_CIPHER_SUITES {
            if let SupportedCipherSuite::Tls12(_) = s {
                assert!(openssl_suite_name(s.suite()).is_some(), "{:?}", s.suite());
            }
        }
    }
}
