//! Certificates, keys and CA bundles from MOSN values: PEM text when the value contains
//! `-----BEGIN`, else a file path (MOSN's `GetCertificate`/`GetX509Pool` rule). Also the names
//! a certificate serves (subject CN and DNS SANs), for SNI selection.

use std::path::PathBuf;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Where a value's bytes come from.
enum Source<'a> {
    Inline(&'a str),
    File(&'a str),
}

fn classify(value: &str) -> Source<'_> {
    if value.contains("-----BEGIN") {
        Source::Inline(value)
    } else {
        Source::File(value.trim())
    }
}

/// The file a value names, when it is a path (for the reloader's mtime polling).
pub(crate) fn file_of(value: &str) -> Option<PathBuf> {
    match classify(value) {
        Source::File(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => None,
    }
}

/// Reads the value's bytes and says what to call them in an error (`PEM text` or the path).
fn read(value: &str, path: &str) -> Result<(Vec<u8>, String), TlsError> {
    match classify(value) {
        Source::Inline(text) => Ok((text.as_bytes().to_vec(), "the PEM text".to_string())),
        Source::File(file) => match std::fs::read(file) {
            Ok(bytes) => Ok((bytes, file.to_string())),
            Err(source) => Err(TlsError::Read {
                path: path.to_string(),
                file: file.to_string(),
                source,
            }),
        },
    }
}

/// All `CERTIFICATE` blocks of a value, leaf first.
pub(crate) fn load_certs(
    value: &str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let (bytes, what) = read(value, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::config(path, format!("bad PEM in {what}: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::config(
            path,
            format!("no CERTIFICATE block in {what}"),
        ));
    }
    Ok(certs)
}

/// The first private key of a value: PKCS#8, PKCS#1 (RSA) or SEC1 (EC). Encrypted keys are not
/// supported (MOSN does not support them either).
pub(crate) fn load_key(value: &str, path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let (bytes, what) = read(value, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::config(
            path,
            format!("no private key (PKCS#8, RSA or EC; unencrypted) in {what}"),
        ),
        e => TlsError::config(path, format!("bad PEM in {what}: {e}")),
    })
}

/// A root store from a CA bundle value; every certificate must be a usable trust anchor.
pub(crate) fn load_roots(value: &str, path: &str) -> Result<RootCertStore, TlsError> {
    let certs = load_certs(value, path)?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| TlsError::config(path, format!("CA certificate #{i}: {e}")))?;
    }
    Ok(roots)
}

/// The names a leaf certificate serves: its DNS SANs and subject common name, lower case.
/// A certificate webpki cannot parse serves no name (it is still served as the default).
pub(crate) fn cert_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .valid_dns_names()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    if let Some(cn) = common_name(cert.subject()) {
        let cn = cn.to_ascii_lowercase();
        if !names.contains(&cn) {
            names.push(cn);
        }
    }
    names
}

// === DER: the subject common name ===

/// One DER TLV: (tag, contents, rest). None on malformed input (never panics).
pub(crate) fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The first commonName (OID 2.5.4.3) of a Name's RDNSequence contents.
fn common_name(mut rdns: &[u8]) -> Option<String> {
    const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
    const SET: u8 = 0x31;
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    while !rdns.is_empty() {
        let (tag, mut set, rest) = tlv(rdns)?;
        rdns = rest;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (tag, atv, rest) = tlv(set)?;
            set = rest;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = tlv(atv)?;
            if tag == OID && oid == OID_CN {
                let (_string_tag, text, _) = tlv(value)?;
                return std::str::from_utf8(text).ok().map(str::to_string);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_from_rdn_sequence() {
        // SET { SEQUENCE { OID 2.5.4.6 (C), PrintableString "CN" } }
        // SET { SEQUENCE { OID 2.5.4.3 (CN), UTF8String "a.example" } }
        let rdns = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'C', b'N', //
            0x31, 0x12, 0x30, 0x10, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x09, b'a', b'.', b'e',
            b'x', b'a', b'm', b'p', b'l', b'e',
        ];
        assert_eq!(common_name(&rdns).as_deref(), Some("a.example"));
        assert_eq!(common_name(&rdns[..13]), None);
        // truncated input: no panic, no name
        for cut in 0..rdns.len() {
            let _ = common_name(&rdns[..cut]);
        }
    }

    #[test]
    fn pem_text_or_path() {
        assert!(file_of("-----BEGIN CERTIFICATE-----\n...").is_none());
        assert_eq!(file_of(" /etc/x.pem "), Some(PathBuf::from("/etc/x.pem")));
        assert!(file_of("").is_none());
        let err = load_certs("/nonexistent/x.pem", "l.tls_context.cert_chain").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("l.tls_context.cert_chain: cannot read /nonexistent/x.pem: "),
            "{text}"
        );
    }

    #[test]
    fn key_errors_never_echo_the_text() {
        let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END PRIVATE KEY-----\n";
        let err = load_certs(secret, "p.cert_chain").unwrap_err().to_string();
        assert!(!err.contains("c2Vj"), "{err}");
        assert_eq!(err, "p.cert_chain: no CERTIFICATE block in the PEM text");
    }
}
