//! TLS inspector: tells from the first bytes of a new connection whether the client speaks TLS
//! and, if it does, what its ClientHello asks for (server name, ALPN, versions), so that a
//! listener with MOSN's `inspector: true` can serve TLS and plaintext on one port and pick a
//! filter chain (server names, transport `tls`/`raw`, application protocols) before a TLS
//! context is chosen.
//!
//! The bytes are never consumed: [`inspect`] is a pure function over the bytes seen so far, and
//! [`inspect_stream`] reads into a buffer that it hands back to be replayed in front of the
//! connection (MSG_PEEK is not available on every transport: the smoltcp backend has none).
//!
//! Classification follows MOSN: a first byte other than `0x16` (a TLS handshake record) is
//! plaintext at once. After `0x16` the client is committed to TLS, and anything that is not a
//! well-formed ClientHello is [`InspectError::Malformed`]; the connection is then closed, as
//! MOSN's TLS handshake would fail on those bytes.
//!
//! ```text
//!  record    16 | 03 xx | len:u16 | fragment ...          (RFC 8446 §5.1, repeated)
//!  handshake 01 | len:u24 | ClientHello body              (reassembled from the fragments)
//!  body      legacy_version | random | session_id | cipher_suites | compression | extensions
//! ```

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Default cap on the bytes a ClientHello may take, record headers included (16 KiB, as
/// Envoy's `tls_inspector`). [`inspect_with_limit`] and [`inspect_stream`] take another.
pub const MAX_HELLO: usize = 16 * 1024;

/// Transport protocol name of a connection that starts with a TLS ClientHello.
pub const TRANSPORT_TLS: &str = "tls";
/// Transport protocol name of any other connection.
pub const TRANSPORT_RAW: &str = "raw";

/// TLS `ContentType.handshake`.
const CONTENT_HANDSHAKE: u8 = 0x16;
/// The record and hello version major byte of SSL 3.0 and every TLS version.
const VERSION_MAJOR: u8 = 0x03;
/// TLS `HandshakeType.client_hello`.
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;
/// Largest record fragment a peer may send (2^14, RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 1 << 14;
/// Smallest ClientHello body: version 2, random 32, session id 1, one suite 2+2, one
/// compression method 1+1.
const MIN_HELLO_BODY: usize = 2 + 32 + 1 + 4 + 2;
/// Longest DNS name accepted as SNI (without a trailing dot) and longest label.
const MAX_HOST_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// Extension types (IANA "TLS ExtensionType Values").
mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const EC_POINT_FORMATS: u16 = 11;
    pub const ALPN: u16 = 16;
    pub const SUPPORTED_VERSIONS: u16 = 43;
}

/// Byte layout of the TLS record header and the handshake message header.
mod field {
    use core::ops::Range;

    /// `TLSPlaintext.type`.
    pub const CONTENT_TYPE: usize = 0;
    /// `TLSPlaintext.legacy_record_version`, major byte first.
    pub const VERSION: Range<usize> = 1..3;
    /// `TLSPlaintext.length` (u16).
    pub const LENGTH: Range<usize> = 3..5;
    /// Start of `TLSPlaintext.fragment`: the record header length.
    pub const FRAGMENT: usize = 5;

    /// `Handshake.msg_type`.
    pub const MSG_TYPE: usize = 0;
    /// `Handshake.length` (u24).
    pub const MSG_LENGTH: Range<usize> = 1..4;
    /// Start of the handshake body: the handshake header length.
    pub const MSG_BODY: usize = 4;
}

/// What the inspector says about the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// A complete, well-formed TLS ClientHello.
    Tls(ClientHelloInfo),
    /// Not TLS: the first byte is not a handshake record (`0x16`).
    Plaintext,
    /// A valid prefix of a ClientHello (or nothing yet): read more.
    NeedMore,
}

impl Inspection {
    /// The filter-chain transport protocol: [`TRANSPORT_TLS`] or [`TRANSPORT_RAW`]; `None`
    /// while undecided.
    pub fn transport_protocol(&self) -> Option<&'static str> {
        match self {
            Inspection::Tls(_) => Some(TRANSPORT_TLS),
            Inspection::Plaintext => Some(TRANSPORT_RAW),
            Inspection::NeedMore => None,
        }
    }

    /// The ClientHello, when this is TLS.
    pub fn client_hello(&self) -> Option<&ClientHelloInfo> {
        match self {
            Inspection::Tls(hello) => Some(hello),
            _ => None,
        }
    }
}

/// What a filter-chain matcher may want from a ClientHello. Lists keep the client's order and
/// its GREASE values (RFC 8701); [`is_grease`] tells them apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// The `host_name` of the server_name extension: a DNS name, lower-cased, no trailing dot.
    pub sni: Option<String>,
    /// ALPN protocol names offered, in the client's order (non-UTF-8 bytes replaced by U+FFFD).
    pub alpn: Vec<String>,
    /// `ClientHello.legacy_version` (0x0303 from TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
    /// The supported_versions extension (empty when absent: a TLS 1.2-or-older client).
    pub supported_versions: Vec<u16>,
    /// Cipher suites offered.
    pub cipher_suites: Vec<u16>,
    /// Extension types, in the order sent.
    pub extensions: Vec<u16>,
    /// The supported_groups extension (named groups / curves).
    pub supported_groups: Vec<u16>,
    /// The ec_point_formats extension.
    pub ec_point_formats: Vec<u8>,
    /// Bytes of the TLS records that carried the ClientHello, headers included.
    pub record_bytes: usize,
}

impl ClientHelloInfo {
    /// Highest protocol version offered: the highest non-GREASE supported_versions entry, or
    /// `legacy_version` without that extension. 0x0304 is TLS 1.3, 0x0303 TLS 1.2.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|&v| !is_grease(v))
            .max()
            .unwrap_or(self.legacy_version)
    }

    /// Does the client offer ALPN protocol `proto`?
    pub fn offers_alpn(&self, proto: &str) -> bool {
        self.alpn.iter().any(|p| p == proto)
    }

    /// The JA3 fingerprint string (`version,ciphers,extensions,groups,point_formats`, GREASE
    /// left out); hash it with MD5 for the usual 32-hex-digit form.
    pub fn ja3(&self) -> String {
        fn join<T: ToString>(items: impl Iterator<Item = T>) -> String {
            items.map(|i| i.to_string()).collect::<Vec<_>>().join("-")
        }
        let keep = |v: &&u16| !is_grease(**v);
        format!(
            "{},{},{},{},{}",
            self.legacy_version,
            join(self.cipher_suites.iter().filter(keep)),
            join(self.extensions.iter().filter(keep)),
            join(self.supported_groups.iter().filter(keep)),
            join(self.ec_point_formats.iter()),
        )
    }
}

/// Is `v` a GREASE value (RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa)?
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Why the inspector gave up; the connection should be closed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The bytes start like TLS (`0x16`) but are not a well-formed ClientHello.
    #[error("malformed TLS ClientHello: {0}")]
    Malformed(&'static str),
    /// The ClientHello needs more bytes than the limit.
    #[error("TLS ClientHello larger than the inspector's limit")]
    TooLarge,
    /// The client sent too little for too long.
    #[error("TLS inspection timed out")]
    Timeout,
    /// The client closed before the inspector could decide.
    #[error("connection closed before the TLS inspector could decide")]
    Closed,
    /// Reading failed.
    #[error("read failed during TLS inspection: {0}")]
    Io(#[from] io::Error),
}

use InspectError::Malformed;

/// Classifies the first bytes of a connection, with the default cap [`MAX_HELLO`].
pub fn inspect(buf: &[u8]) -> Result<Inspection, InspectError> {
    inspect_with_limit(buf, MAX_HELLO)
}

/// Classifies the first bytes of a connection: [`Inspection::NeedMore`] for a valid prefix of a
/// ClientHello, [`InspectError::TooLarge`] as soon as the hello is known to need more than
/// `max` bytes (record headers included). Never panics, whatever the bytes.
pub fn inspect_with_limit(buf: &[u8], max: usize) -> Result<Inspection, InspectError> {
    Ok(match classify(buf, max)? {
        Step::Plaintext => Inspection::Plaintext,
        Step::Tls(hello) => Inspection::Tls(hello),
        Step::NeedMore(_) => Inspection::NeedMore,
    })
}

/// Reads from `conn` until [`inspect_with_limit`] decides, within `timeout`, reading never more
/// than `max` bytes. Returns [`Inspection::Tls`] or [`Inspection::Plaintext`] and every byte
/// read, to be replayed in front of the connection. A first byte other than `0x16` decides at
/// once; a ClientHello is decided as soon as its last byte arrives.
pub async fn inspect_stream<C: AsyncRead + Unpin>(
    conn: &mut C,
    timeout: Duration,
    max: usize,
) -> Result<(Inspection, Bytes), InspectError> {
    let mut buf = BytesMut::with_capacity(max.clamp(1, 1024));
    let work = async {
        // Bytes needed before anything new can be said: classifying again earlier is wasted
        // work (a hello trickled in 1-byte reads would be re-walked on every byte).
        let mut need = 1;
        loop {
            if buf.len() >= need {
                match classify(&buf, max)? {
                    Step::Plaintext => return Ok(Inspection::Plaintext),
                    Step::Tls(hello) => return Ok(Inspection::Tls(hello)),
                    Step::NeedMore(n) => need = n,
                }
            }
            // `classify` never asks for a byte at or past `max` (that is `TooLarge`), so there
            // is room; at least one byte when `max` is 0 and nothing was read yet.
            let room = max.saturating_sub(buf.len()).max(1);
            buf.reserve(room.min(4096));
            let limit = u64::try_from(room).unwrap_or(u64::MAX);
            if (&mut *conn).take(limit).read_buf(&mut buf).await? == 0 {
                return Err(InspectError::Closed);
            }
        }
    };
    let verdict = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| InspectError::Timeout)??;
    Ok((verdict, buf.freeze()))
}

/// [`inspect_with_limit`]'s answer, with how many bytes (in total) are needed before it can
/// say more.
#[derive(Debug)]
enum Step {
    Plaintext,
    Tls(ClientHelloInfo),
    NeedMore(usize),
}

/// Walks the handshake records at the front of `buf`, reassembling the first handshake
/// message, and parses it once complete.
fn classify(buf: &[u8], max: usize) -> Result<Step, InspectError> {
    match buf.first() {
        None => return Ok(Step::NeedMore(1)),
        Some(&b) if b != CONTENT_HANDSHAKE => return Ok(Step::Plaintext),
        Some(_) => {}
    }
    let mut message = Reassembly::Empty;
    let mut pos = 0usize;
    loop {
        let fragment_start = pos
            .checked_add(field::FRAGMENT)
            .ok_or(InspectError::TooLarge)?;
        if fragment_start > max {
            return Err(InspectError::TooLarge);
        }
        let Some(header) = buf.get(pos..fragment_start) else {
            check_partial_header(buf.get(pos..).unwrap_or_default())?;
            return Ok(Step::NeedMore(fragment_start));
        };
        let length = record_length(header)?;
        let record_end = fragment_start
            .checked_add(length)
            .ok_or(InspectError::TooLarge)?;
        if record_end > max {
            return Err(InspectError::TooLarge);
        }
        let available_end = record_end.min(buf.len());
        message.push(buf.get(fragment_start..available_end).unwrap_or_default());
        match hello_progress(message.bytes(), max)? {
            Progress::Complete(body) => {
                let mut hello = parse_client_hello(body)?;
                // The records up to the one holding the hello's last byte.
                hello.record_bytes = record_end;
                return Ok(Step::Tls(hello));
            }
            Progress::Missing(missing) if available_end < record_end => {
                let wanted = available_end.saturating_add(missing).min(record_end);
                return Ok(Step::NeedMore(wanted));
            }
            Progress::Missing(_) => pos = record_end,
        }
    }
}

/// Checks the bytes of a record header that has not fully arrived, so that garbage after a
/// `0x16` is refused without waiting for five bytes.
fn check_partial_header(partial: &[u8]) -> Result<(), InspectError> {
    if let Some(&t) = partial.get(field::CONTENT_TYPE) {
        if t != CONTENT_HANDSHAKE {
            return Err(Malformed("non-handshake record inside the ClientHello"));
        }
    }
    if let Some(&major) = partial.get(field::VERSION.start) {
        if major != VERSION_MAJOR {
            return Err(Malformed("record version is not 3.x"));
        }
    }
    Ok(())
}

/// Validates a complete 5-byte record header and returns the fragment length.
fn record_length(header: &[u8]) -> Result<usize, InspectError> {
    check_partial_header(header)?;
    let length = header
        .get(field::LENGTH)
        .and_then(be_uint)
        .ok_or(Malformed("truncated record header"))?;
    if length == 0 {
        // RFC 8446 §5.1: no zero-length handshake fragments.
        return Err(Malformed("empty handshake record"));
    }
    if length > MAX_FRAGMENT {
        return Err(Malformed("record longer than 2^14 bytes"));
    }
    Ok(length)
}

/// Reads a big-endian unsigned integer of 1 to 3 bytes.
fn be_uint(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() || bytes.len() > 3 {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
    )
}

/// The handshake bytes gathered from consecutive records; borrowed while one record holds them.
enum Reassembly<'a> {
    Empty,
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl<'a> Reassembly<'a> {
    fn push(&mut self, fragment: &'a [u8]) {
        *self = match std::mem::replace(self, Reassembly::Empty) {
            Reassembly::Empty => Reassembly::Borrowed(fragment),
            Reassembly::Borrowed(first) => {
                let mut all = Vec::with_capacity(first.len().saturating_add(fragment.len()));
                all.extend_from_slice(first);
                all.extend_from_slice(fragment);
                Reassembly::Owned(all)
            }
            Reassembly::Owned(mut all) => {
                all.extend_from_slice(fragment);
                Reassembly::Owned(all)
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Reassembly::Empty => &[],
            Reassembly::Borrowed(b) => b,
            Reassembly::Owned(v) => v,
        }
    }
}

enum Progress<'a> {
    /// The ClientHello body, complete.
    Complete(&'a [u8]),
    /// This many more handshake bytes are needed, at least.
    Missing(usize),
}

/// Checks the handshake header gathered so far and returns the body once complete.
fn hello_progress(message: &[u8], max: usize) -> Result<Progress<'_>, InspectError> {
    if let Some(&t) = message.get(field::MSG_TYPE) {
        if t != HANDSHAKE_CLIENT_HELLO {
            return Err(Malformed("first handshake message is not a ClientHello"));
        }
    }
    let Some(body_len) = message.get(field::MSG_LENGTH).and_then(be_uint) else {
        return Ok(Progress::Missing(
            field::MSG_BODY.saturating_sub(message.len()),
        ));
    };
    if body_len < MIN_HELLO_BODY {
        return Err(Malformed("ClientHello too short"));
    }
    let total = field::MSG_BODY.saturating_add(body_len);
    // At least one record header in front of it.
    if total.saturating_add(field::FRAGMENT) > max {
        return Err(InspectError::TooLarge);
    }
    match message.get(field::MSG_BODY..total) {
        Some(body) => Ok(Progress::Complete(body)),
        None => Ok(Progress::Missing(total.saturating_sub(message.len()))),
    }
}

/// A bounds-checked reader over a byte slice: every read names what it reads, for the error.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Cursor { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn len(&self) -> usize {
        self.rest.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], InspectError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(Malformed(what))?;
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, InspectError> {
        let (&b, tail) = self.rest.split_first().ok_or(Malformed(what))?;
        self.rest = tail;
        Ok(b)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, InspectError> {
        let b = self.take(2, what)?;
        let pair: [u8; 2] = b.try_into().map_err(|_| Malformed(what))?;
        Ok(u16::from_be_bytes(pair))
    }

    /// A vector with a 1-byte length prefix.
    fn u8_prefixed(&mut self, what: &'static str) -> Result<Cursor<'a>, InspectError> {
        let n = self.u8(what)?;
        Ok(Cursor::new(self.take(usize::from(n), what)?))
    }

    /// A vector with a 2-byte length prefix.
    fn u16_prefixed(&mut self, what: &'static str) -> Result<Cursor<'a>, InspectError> {
        let n = self.u16(what)?;
        Ok(Cursor::new(self.take(usize::from(n), what)?))
    }

    /// Fails unless everything was read.
    fn finish(&self, what: &'static str) -> Result<(), InspectError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Malformed(what))
        }
    }

    /// Reads the rest as a non-empty list of u16.
    fn u16_list(mut self, what: &'static str) -> Result<Vec<u16>, InspectError> {
        if self.is_empty() || !self.len().is_multiple_of(2) {
            return Err(Malformed(what));
        }
        let mut out = Vec::with_capacity(self.len() / 2);
        while !self.is_empty() {
            out.push(self.u16(what)?);
        }
        Ok(out)
    }
}

/// Parses a ClientHello body (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2 for hellos without
/// extensions).
fn parse_client_hello(body: &[u8]) -> Result<ClientHelloInfo, InspectError> {
    let mut c = Cursor::new(body);
    let mut hello = ClientHelloInfo {
        legacy_version: c.u16("truncated legacy_version")?,
        ..ClientHelloInfo::default()
    };
    if hello.legacy_version >> 8 != u16::from(VERSION_MAJOR) {
        return Err(Malformed("ClientHello version is not 3.x"));
    }
    c.take(32, "truncated random")?;
    if c.u8_prefixed("truncated legacy_session_id")?.len() > 32 {
        return Err(Malformed("legacy_session_id longer than 32 bytes"));
    }
    hello.cipher_suites = c
        .u16_prefixed("truncated cipher_suites")?
        .u16_list("bad cipher_suites length")?;
    if c.u8_prefixed("truncated compression_methods")?.is_empty() {
        return Err(Malformed("no compression methods"));
    }
    if c.is_empty() {
        // No extensions at all: a TLS 1.2-or-older hello may end here.
        return Ok(hello);
    }
    let mut extensions = c.u16_prefixed("truncated extensions")?;
    c.finish("bytes after the extensions")?;
    while !extensions.is_empty() {
        let ty = extensions.u16("truncated extension type")?;
        let data = extensions.u16_prefixed("truncated extension")?;
        hello.extensions.push(ty);
        match ty {
            ext::SERVER_NAME => hello.sni = parse_server_name(data)?,
            ext::ALPN => hello.alpn = parse_alpn(data)?,
            ext::SUPPORTED_VERSIONS => {
                let mut data = data;
                let list = data.u8_prefixed("truncated supported_versions")?;
                data.finish("bytes after supported_versions")?;
                hello.supported_versions = list.u16_list("bad supported_versions length")?;
            }
            ext::SUPPORTED_GROUPS => {
                let mut data = data;
                let list = data.u16_prefixed("truncated supported_groups")?;
                data.finish("bytes after supported_groups")?;
                hello.supported_groups = list.u16_list("bad supported_groups length")?;
            }
            ext::EC_POINT_FORMATS => {
                let mut data = data;
                let list = data.u8_prefixed("truncated ec_point_formats")?;
                data.finish("bytes after ec_point_formats")?;
                if list.is_empty() {
                    return Err(Malformed("empty ec_point_formats"));
                }
                hello.ec_point_formats = list.rest.to_vec();
            }
            _ => {}
        }
    }
    // RFC 8446 §4.2: no extension type twice.
    let mut types = hello.extensions.clone();
    types.sort_unstable();
    if types.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(Malformed("duplicate extension"));
    }
    Ok(hello)
}

/// The server_name extension (RFC 6066 §3): a non-empty list; entries of unknown name types
/// are skipped (as Go's crypto/tls does), at most one `host_name`.
fn parse_server_name(mut data: Cursor<'_>) -> Result<Option<String>, InspectError> {
    let mut list = data.u16_prefixed("truncated server_name list")?;
    data.finish("bytes after the server_name list")?;
    if list.is_empty() {
        return Err(Malformed("empty server_name list"));
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8("truncated server_name entry")?;
        let name = list.u16_prefixed("truncated server_name entry")?;
        if name_type != 0 {
            continue;
        }
        if host.is_some() {
            return Err(Malformed("more than one host_name in server_name"));
        }
        host = Some(host_name(name.rest)?);
    }
    Ok(host)
}

/// Validates an SNI `host_name` as a DNS name (letters, digits, `-`, `_`; labels of 1 to 63
/// bytes; no trailing dot, which RFC 6066 forbids) and lower-cases it.
fn host_name(name: &[u8]) -> Result<String, InspectError> {
    if name.is_empty() {
        return Err(Malformed("empty host_name"));
    }
    if name.contains(&0) {
        return Err(Malformed("NUL in host_name"));
    }
    if name.len() > MAX_HOST_NAME {
        return Err(Malformed("host_name longer than 253 bytes"));
    }
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(Malformed("empty label in host_name"));
        }
        if label.len() > MAX_LABEL {
            return Err(Malformed("host_name label longer than 63 bytes"));
        }
        if !label
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Malformed("invalid character in host_name"));
        }
    }
    Ok(name
        .iter()
        .map(|&b| char::from(b.to_ascii_lowercase()))
        .collect())
}

/// The ALPN extension (RFC 7301 §3.1): a non-empty list of non-empty names whose lengths add
/// up to the list length exactly.
fn parse_alpn(mut data: Cursor<'_>) -> Result<Vec<String>, InspectError> {
    let mut list = data.u16_prefixed("truncated ALPN list")?;
    data.finish("bytes after the ALPN list")?;
    if list.is_empty() {
        return Err(Malformed("empty ALPN list"));
    }
    let mut protocols = Vec::new();
    while !list.is_empty() {
        let name = list.u8_prefixed("ALPN protocol overruns the list")?;
        if name.is_empty() {
            return Err(Malformed("zero-length ALPN protocol"));
        }
        protocols.push(String::from_utf8_lossy(name.rest).into_owned());
    }
    Ok(protocols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A small ClientHello, one comment per field.
    const FIXTURE: &[u8] = &[
        0x16, // record: handshake
        0x03, 0x01, // record version TLS 1.0 (legacy)
        0x00, 0x60, // record length 96
        0x01, // handshake: client_hello
        0x00, 0x00, 0x5c, // handshake length 92
        0x03, 0x03, // legacy_version TLS 1.2
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // random (32 bytes)
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, //
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, //
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, //
        0x00, // legacy_session_id: empty
        0x00, 0x04, // cipher_suites length 4
        0x13, 0x01, // TLS_AES_128_GCM_SHA256
        0xc0, 0x2f, // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        0x01, 0x00, // compression_methods: [null]
        0x00, 0x2f, // extensions length 47
        0x00, 0x00, // ext server_name
        0x00, 0x10, // ext length 16
        0x00, 0x0e, // server_name_list length 14
        0x00, // name_type host_name
        0x00, 0x0b, // host_name length 11
        b'E', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm', // "Example.com"
        0x00, 0x10, // ext application_layer_protocol_negotiation
        0x00, 0x0e, // ext length 14
        0x00, 0x0c, // protocol_name_list length 12
        0x02, b'h', b'2', // "h2"
        0x08, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1', // "http/1.1"
        0x00, 0x2b, // ext supported_versions
        0x00, 0x05, // ext length 5
        0x04, // versions length 4
        0x03, 0x04, // TLS 1.3
        0x03, 0x03, // TLS 1.2
    ];

    fn u16be(v: usize) -> [u8; 2] {
        u16::try_from(v).unwrap().to_be_bytes()
    }

    fn ext_bytes(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut e = ty.to_be_bytes().to_vec();
        e.extend_from_slice(&u16be(data.len()));
        e.extend_from_slice(data);
        e
    }

    fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (ty, name) in names {
            list.push(*ty);
            list.extend_from_slice(&u16be(name.len()));
            list.extend_from_slice(name);
        }
        let mut data = u16be(list.len()).to_vec();
        data.extend(list);
        ext_bytes(ext::SERVER_NAME, &data)
    }

    fn alpn_ext(protos: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for p in protos {
            list.push(u8::try_from(p.len()).unwrap());
            list.extend_from_slice(p);
        }
        let mut data = u16be(list.len()).to_vec();
        data.extend(list);
        ext_bytes(ext::ALPN, &data)
    }

    /// A ClientHello body with the given raw extension block (`None`: no extensions at all).
    fn body(extensions: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&[0x22; 32]);
        b.push(32);
        b.extend_from_slice(&[0x33; 32]);
        b.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0x0a, 0x0a]);
        b.extend_from_slice(&[0x01, 0x00]);
        if let Some(exts) = extensions {
            b.extend_from_slice(&u16be(exts.len()));
            b.extend_from_slice(exts);
        }
        b
    }

    /// One record holding a handshake message of type `msg_type` with `body`.
    fn record(msg_type: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len()).unwrap().to_be_bytes();
        let mut hs = vec![msg_type, len[1], len[2], len[3]];
        hs.extend_from_slice(body);
        let mut r = vec![0x16, 0x03, 0x01];
        r.extend_from_slice(&u16be(hs.len()));
        r.extend(hs);
        r
    }

    fn hello_with(exts: &[Vec<u8>]) -> Vec<u8> {
        record(1, &body(Some(&exts.concat())))
    }

    fn malformed(buf: &[u8]) -> &'static str {
        match inspect(buf) {
            Err(InspectError::Malformed(why)) => why,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    fn tls(buf: &[u8]) -> ClientHelloInfo {
        match inspect(buf) {
            Ok(Inspection::Tls(h)) => h,
            other => panic!("expected Tls, got {other:?}"),
        }
    }

    #[test]
    fn fixture_fields() {
        let h = tls(FIXTURE);
        assert_eq!(h.sni.as_deref(), Some("example.com"));
        assert_eq!(h.alpn, ["h2", "http/1.1"]);
        assert_eq!(h.legacy_version, 0x0303);
        assert_eq!(h.supported_versions, [0x0304, 0x0303]);
        assert_eq!(h.cipher_suites, [0x1301, 0xc02f]);
        assert_eq!(h.extensions, [0, 16, 43]);
        assert_eq!(h.record_bytes, FIXTURE.len());
        assert_eq!(h.max_version(), 0x0304);
        assert!(h.offers_alpn("h2") && !h.offers_alpn("h3"));
        assert_eq!(h.ja3(), "771,4865-49199,0-16-43,,");
        let i = Inspection::Tls(h);
        assert_eq!(i.transport_protocol(), Some(TRANSPORT_TLS));
        assert!(i.client_hello().is_some());
        assert_eq!(
            Inspection::Plaintext.transport_protocol(),
            Some(TRANSPORT_RAW)
        );
        assert_eq!(Inspection::NeedMore.transport_protocol(), None);
    }

    #[test]
    fn every_prefix_needs_more_and_trailing_bytes_are_ignored() {
        for n in 0..FIXTURE.len() {
            assert_eq!(inspect(&FIXTURE[..n]).unwrap(), Inspection::NeedMore, "{n}");
        }
        let mut more = FIXTURE.to_vec();
        more.extend_from_slice(b"\x17\x03\x03\x00\x10early data");
        assert_eq!(tls(&more).sni.as_deref(), Some("example.com"));
    }

    #[test]
    fn plaintext_from_the_first_byte() {
        for first in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            &[0x01],
            &[0x02],
            &[0xda, 0xbb],
            &[0x80, 0x2e, 0x01], // SSLv2-compatible hello: not served as TLS, as in MOSN
            &[0x15, 0x03, 0x03], // a TLS alert record first
        ] {
            assert_eq!(inspect(first).unwrap(), Inspection::Plaintext, "{first:?}");
            assert_eq!(inspect(&first[..1]).unwrap(), Inspection::Plaintext);
        }
        assert_eq!(inspect(&[]).unwrap(), Inspection::NeedMore);
        assert_eq!(inspect(&[0x16]).unwrap(), Inspection::NeedMore);
    }

    #[test]
    fn garbage_after_0x16_is_malformed() {
        assert_eq!(
            malformed(b"\x16GET / HTTP/1.1"),
            "record version is not 3.x"
        );
        assert_eq!(malformed(&[0x16, 0x02]), "record version is not 3.x");
        assert_eq!(
            malformed(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            "empty handshake record"
        );
        assert_eq!(
            malformed(&[0x16, 0x03, 0x01, 0x40, 0x01]),
            "record longer than 2^14 bytes"
        );
        // A ServerHello (type 2) where a ClientHello must be.
        assert_eq!(
            malformed(&[0x16, 0x03, 0x03, 0x00, 0x30, 0x02]),
            "first handshake message is not a ClientHello"
        );
        assert_eq!(
            malformed(&[0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04]),
            "ClientHello too short"
        );
        // legacy_version 2.0 inside.
        let mut b = body(None);
        b[0] = 2;
        assert_eq!(malformed(&record(1, &b)), "ClientHello version is not 3.x");
        // A change_cipher_spec record between two fragments of the hello.
        let full = record(1, &body(None));
        let (hs, split) = (&full[5..], 10);
        let mut two = vec![0x16, 0x03, 0x01, 0x00, split as u8];
        two.extend_from_slice(&hs[..split]);
        two.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        assert_eq!(
            malformed(&two),
            "non-handshake record inside the ClientHello"
        );
    }

    #[test]
    fn hello_without_extensions() {
        let h = tls(&record(1, &body(None)));
        assert_eq!(h.sni, None);
        assert!(h.alpn.is_empty() && h.supported_versions.is_empty());
        assert_eq!(h.cipher_suites, [0x1301, 0x0a0a]);
        assert_eq!(h.ja3(), "771,4865,,,");
        assert_eq!(h.max_version(), 0x0303);
        let empty_block = record(1, &body(Some(&[])));
        assert!(tls(&empty_block).extensions.is_empty());
    }

    #[test]
    fn body_structure_is_strict() {
        let mut b = body(Some(&[]));
        b.push(0);
        assert_eq!(malformed(&record(1, &b)), "bytes after the extensions");
        let mut b = body(None);
        b[34] = 33; // session id length
        assert_eq!(
            malformed(&record(1, &b)),
            "legacy_session_id longer than 32 bytes"
        );
        let mut b = body(None);
        b[68] = 3; // cipher_suites length, odd
        assert!(inspect(&record(1, &b)).is_err());
        let mut b = body(None);
        b.truncate(b.len() - 2);
        b.extend_from_slice(&[0x00]); // zero compression methods
        b.extend_from_slice(&[0u8; 8]);
        assert!(inspect(&record(1, &b)).is_err());
        // An extension overrunning the block.
        let mut e = ext_bytes(99, b"abc");
        e[3] = 9;
        assert_eq!(malformed(&hello_with(&[e])), "truncated extension");
        assert_eq!(
            malformed(&hello_with(&[alpn_ext(&[b"h2"]), alpn_ext(&[b"h2"])])),
            "duplicate extension"
        );
    }

    #[test]
    fn server_name_rules() {
        let h = tls(&hello_with(&[sni_ext(&[(0, b"WWW.Example.COM")])]));
        assert_eq!(h.sni.as_deref(), Some("www.example.com"));
        let ok = tls(&hello_with(&[sni_ext(&[(0, b"a_b-1.x")])]));
        assert_eq!(ok.sni.as_deref(), Some("a_b-1.x"));
        // Unknown name types are skipped.
        let other = tls(&hello_with(&[sni_ext(&[(7, b"whatever"), (0, b"a.b")])]));
        assert_eq!(other.sni.as_deref(), Some("a.b"));
        assert_eq!(tls(&hello_with(&[sni_ext(&[(7, b"x")])])).sni, None);

        let bad = |names: &[(u8, &[u8])]| malformed(&hello_with(&[sni_ext(names)]));
        assert_eq!(bad(&[]), "empty server_name list");
        assert_eq!(bad(&[(0, b"")]), "empty host_name");
        assert_eq!(bad(&[(0, b"evil.com\0.good.com")]), "NUL in host_name");
        assert_eq!(bad(&[(0, b"example.com.")]), "empty label in host_name");
        assert_eq!(bad(&[(0, b"a..b")]), "empty label in host_name");
        assert_eq!(bad(&[(0, b"a b")]), "invalid character in host_name");
        assert_eq!(
            bad(&[(0, "bücher.de".as_bytes())]),
            "invalid character in host_name"
        );
        assert_eq!(
            bad(&[(0, b"a"), (0, b"b")]),
            "more than one host_name in server_name"
        );
        let long_label = [b'a'; 64];
        assert_eq!(
            bad(&[(0, &long_label)]),
            "host_name label longer than 63 bytes"
        );
        let long_name = b"abcdefgh.".repeat(29);
        assert_eq!(
            bad(&[(0, &long_name[..260])]),
            "host_name longer than 253 bytes"
        );
        // The list length must match the extension.
        let mut e = sni_ext(&[(0, b"a.b")]);
        e.push(0);
        e[3] += 1;
        assert_eq!(
            malformed(&hello_with(&[e])),
            "bytes after the server_name list"
        );
        // Empty extension data (a ServerHello's form) from a client.
        assert_eq!(
            malformed(&hello_with(&[ext_bytes(ext::SERVER_NAME, &[])])),
            "truncated server_name list"
        );
    }

    #[test]
    fn alpn_rules() {
        let h = tls(&hello_with(&[alpn_ext(&[b"h2", b"http/1.1", b"\xff"])]));
        assert_eq!(h.alpn, ["h2", "http/1.1", "\u{fffd}"]);
        assert_eq!(
            malformed(&hello_with(&[alpn_ext(&[b"h2", b""])])),
            "zero-length ALPN protocol"
        );
        assert_eq!(malformed(&hello_with(&[alpn_ext(&[])])), "empty ALPN list");
        // Lengths that do not add up: the list claims 4 bytes, the name 5.
        let e = ext_bytes(ext::ALPN, &[0x00, 0x04, 0x05, b'h', b't', b't']);
        assert_eq!(
            malformed(&hello_with(&[e])),
            "ALPN protocol overruns the list"
        );
        let e = ext_bytes(ext::ALPN, &[0x00, 0x03, 0x02, b'h', b'2', b'x']);
        assert_eq!(malformed(&hello_with(&[e])), "bytes after the ALPN list");
    }

    #[test]
    fn versions_groups_and_grease() {
        let h = tls(&hello_with(&[
            ext_bytes(
                ext::SUPPORTED_VERSIONS,
                &[6, 0x7a, 0x7a, 0x03, 0x04, 0x03, 0x03],
            ),
            ext_bytes(ext::SUPPORTED_GROUPS, &[0, 4, 0x0a, 0x0a, 0x00, 0x1d]),
            ext_bytes(ext::EC_POINT_FORMATS, &[1, 0]),
            ext_bytes(0x2a2a, &[]),
        ]));
        assert_eq!(h.supported_versions, [0x7a7a, 0x0304, 0x0303]);
        assert_eq!(h.max_version(), 0x0304);
        assert_eq!(h.supported_groups, [0x0a0a, 0x001d]);
        assert_eq!(h.ec_point_formats, [0]);
        assert_eq!(h.ja3(), "771,4865,43-10-11,29,0");
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a1a));
        assert!(!is_grease(0x0303));
        let bad = ext_bytes(ext::SUPPORTED_VERSIONS, &[3, 0x03, 0x04, 0x03]);
        assert_eq!(
            malformed(&hello_with(&[bad])),
            "bad supported_versions length"
        );
        let bad = ext_bytes(ext::SUPPORTED_VERSIONS, &[0]);
        assert_eq!(
            malformed(&hello_with(&[bad])),
            "bad supported_versions length"
        );
        let bad = ext_bytes(ext::EC_POINT_FORMATS, &[0]);
        assert_eq!(malformed(&hello_with(&[bad])), "empty ec_point_formats");
    }

    /// Re-frames the handshake bytes of `hello` (one record) into records of `sizes` bytes.
    fn refragment(hello: &[u8], sizes: impl Fn(usize) -> usize) -> Vec<u8> {
        let hs = &hello[5..];
        let (mut out, mut at, mut i) = (Vec::new(), 0, 0);
        while at < hs.len() {
            let n = sizes(i).clamp(1, hs.len() - at);
            out.extend_from_slice(&[0x16, 0x03, 0x01]);
            out.extend_from_slice(&u16be(n));
            out.extend_from_slice(&hs[at..at + n]);
            at += n;
            i += 1;
        }
        out
    }

    #[test]
    fn hello_split_across_records() {
        let want = tls(FIXTURE);
        for size in [1, 2, 3, 4, 5, 7, 50] {
            let split = refragment(FIXTURE, |_| size);
            let got = tls(&split);
            assert_eq!(got.sni, want.sni);
            assert_eq!(got.alpn, want.alpn);
            assert_eq!(got.record_bytes, split.len());
            for n in 0..split.len() {
                assert_eq!(
                    inspect(&split[..n]).unwrap(),
                    Inspection::NeedMore,
                    "{size} {n}"
                );
            }
        }
    }

    #[test]
    fn cap() {
        // The declared handshake length alone exceeds the cap: refused from 9 bytes.
        let head = [0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x40, 0x00];
        assert!(matches!(inspect(&head), Err(InspectError::TooLarge)));
        // A hello that fits 16 KiB but not a smaller configured limit.
        assert!(matches!(
            inspect_with_limit(FIXTURE, FIXTURE.len() - 1),
            Err(InspectError::TooLarge)
        ));
        assert!(inspect_with_limit(FIXTURE, FIXTURE.len()).is_ok());
        // Record headers count: 1-byte records make the same hello six times longer.
        let split = refragment(FIXTURE, |_| 1);
        assert!(matches!(
            inspect_with_limit(&split, split.len() - 1),
            Err(InspectError::TooLarge)
        ));
        assert!(matches!(
            inspect_with_limit(&[0x16], 0),
            Err(InspectError::TooLarge)
        ));
        assert_eq!(inspect_with_limit(b"G", 0).unwrap(), Inspection::Plaintext);
        // A big but legal hello (padding extension) within the cap, across two records.
        let pad = ext_bytes(21, &[0u8; 15000]);
        let big = record(
            1,
            &body(Some(&[sni_ext(&[(0, b"big.example")]), pad].concat())),
        );
        let two = refragment(&big, |_| 8000);
        assert_eq!(tls(&two).sni.as_deref(), Some("big.example"));
        let pad = ext_bytes(21, &[0u8; 16300]);
        let huge = refragment(&record(1, &body(Some(&pad))), |_| MAX_FRAGMENT);
        assert!(matches!(inspect(&huge[..20]), Err(InspectError::TooLarge)));
    }

    #[tokio::test]
    async fn stream_decides_at_the_hello_end_and_returns_every_byte() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for chunk in FIXTURE.chunks(7) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let (verdict, seen) = inspect_stream(&mut server, Duration::from_secs(5), MAX_HELLO)
            .await
            .unwrap();
        assert_eq!(
            verdict.client_hello().unwrap().sni.as_deref(),
            Some("example.com")
        );
        assert_eq!(&seen[..], FIXTURE);
        drop(writer.await.unwrap());
    }
}
