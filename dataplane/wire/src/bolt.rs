//! SOFARPC Bolt v1 (protocol code `0x01`) and v2 (`0x02`) frames. One module handles both:
//! a connection may mix them, the first byte of each frame decides.
//!
//! Layout (big-endian; PROTOCOLS.md §2.1/§2.2; sofa-bolt `RpcCommandEncoderV2`):
//!
//! ```text
//! v1 request  (22 B): proto type cmd(2) ver2 id(4) codec        timeout(4) classLen(2) headerLen(2) contentLen(4)
//! v1 response (20 B): proto type cmd(2) ver2 id(4) codec        status(2)  classLen(2) headerLen(2) contentLen(4)
//! v2 request  (24 B): proto ver1 type cmd(2) ver2 id(4) codec switch timeout(4) classLen headerLen contentLen
//! v2 response (22 B): proto ver1 type cmd(2) ver2 id(4) codec switch status(2)  classLen headerLen contentLen
//! then: class · header map · content · (v2, ver1 == 2 and switch bit 0: CRC32 of all before it)
//! ```
//!
//! [`Packet`] is a typed view over those bytes (offsets in the private `field` module);
//! [`Frame`] is the owned form with [`Frame::decode`] / [`Frame::encode`]. A frame decoded from
//! bytes re-encodes to exactly those bytes, unless its header map held Java-null entries (a
//! length of `-1`), which are dropped on decode as sofa-bolt's `SimpleMapSerializer` does.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::{be_u16, be_u32, byte, put, Cursor};
use crate::Error;

/// Protocol code of Bolt v1.
pub const PROTO_V1: u8 = 1;
/// Protocol code of Bolt v2.
pub const PROTO_V2: u8 = 2;

/// Command code: heartbeat (request and ack).
pub const CMD_HEARTBEAT: u16 = 0;
/// Command code: RPC request.
pub const CMD_REQUEST: u16 = 1;
/// Command code: RPC response.
pub const CMD_RESPONSE: u16 = 2;
/// Command code: GoAway (MOSN extension, sent before a graceful close).
pub const CMD_GOAWAY: u16 = 100;

/// Frame type: response.
pub const TYPE_RESPONSE: u8 = 0;
/// Frame type: two-way request.
pub const TYPE_REQUEST: u8 = 1;
/// Frame type: one-way request (no response expected).
pub const TYPE_ONEWAY: u8 = 2;

/// Serializer id of Hessian2 (the `codec` byte).
pub const CODEC_HESSIAN2: u8 = 1;
/// The v2 `ver1` value that turns the CRC32 trailer on (with switch bit 0).
pub const VER1_CRC: u8 = 2;
/// Bit of the v2 `switch` byte that asks for the CRC32 trailer (`CRC_SWITCH_INDEX = 0`).
pub const SWITCH_CRC: u8 = 0x01;

/// Response status codes (sofa-bolt `ResponseStatus`).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0;
    /// Generic error.
    pub const ERROR: u16 = 1;
    /// The server threw.
    pub const SERVER_EXCEPTION: u16 = 2;
    /// Unknown.
    pub const UNKNOWN: u16 = 3;
    /// The server's thread pool is full.
    pub const SERVER_THREADPOOL_BUSY: u16 = 4;
    /// Communication error.
    pub const ERROR_COMM: u16 = 5;
    /// No processor for the request (MOSN: no route / no healthy upstream).
    pub const NO_PROCESSOR: u16 = 6;
    /// Timeout.
    pub const TIMEOUT: u16 = 7;
    /// The client failed to send.
    pub const CLIENT_SEND_ERROR: u16 = 8;
    /// Codec error.
    pub const CODEC_EXCEPTION: u16 = 9;
    /// Connection closed.
    pub const CONNECTION_CLOSED: u16 = 0x10;
    /// The server failed to serialize.
    pub const SERVER_SERIAL_EXCEPTION: u16 = 0x11;
    /// The server failed to deserialize.
    pub const SERVER_DESERIAL_EXCEPTION: u16 = 0x12;
}

const PROTOCOL: &str = "bolt";

fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        protocol: PROTOCOL,
        what,
    }
}

fn too_large(len: usize, limit: usize) -> Error {
    Error::TooLarge {
        protocol: PROTOCOL,
        len,
        limit,
    }
}

/// Byte offsets of the four fixed header layouts.
mod field {
    use core::ops::Range;

    /// A multi-byte field.
    pub(super) type Field = Range<usize>;

    /// Where each field of one header layout sits.
    #[derive(Debug)]
    pub(super) struct Layout {
        /// `PROTO_V1` or `PROTO_V2`.
        pub(super) proto: u8,
        /// v2 only.
        pub(super) ver1: Option<usize>,
        pub(super) kind: usize,
        pub(super) cmd_code: Field,
        pub(super) ver2: usize,
        pub(super) request_id: Field,
        pub(super) codec: usize,
        /// v2 only.
        pub(super) switch: Option<usize>,
        /// Requests only.
        pub(super) timeout: Option<Field>,
        /// Responses only.
        pub(super) status: Option<Field>,
        pub(super) class_len: Field,
        pub(super) header_len: Field,
        pub(super) content_len: Field,
        /// Length of the fixed header; the class starts here.
        pub(super) len: usize,
    }

    /// Offset of the type byte in v1.
    pub(super) const V1_KIND: usize = 1;
    /// Offset of the type byte in v2.
    pub(super) const V2_KIND: usize = 2;
    /// `RequestIdIndex` of v1.
    pub(super) const V1_REQUEST_ID: usize = 5;
    /// `RequestIdIndex` of v2.
    pub(super) const V2_REQUEST_ID: usize = 6;
    /// The CRC32 trailer.
    pub(super) const CRC_LEN: usize = 4;

    pub(super) const V1_REQUEST: Layout = Layout {
        proto: 1,
        ver1: None,
        kind: 1,
        cmd_code: 2..4,
        ver2: 4,
        request_id: 5..9,
        codec: 9,
        switch: None,
        timeout: Some(10..14),
        status: None,
        class_len: 14..16,
        header_len: 16..18,
        content_len: 18..22,
        len: 22,
    };

    pub(super) const V1_RESPONSE: Layout = Layout {
        proto: 1,
        ver1: None,
        kind: 1,
        cmd_code: 2..4,
        ver2: 4,
        request_id: 5..9,
        codec: 9,
        switch: None,
        timeout: None,
        status: Some(10..12),
        class_len: 12..14,
        header_len: 14..16,
        content_len: 16..20,
        len: 20,
    };

    pub(super) const V2_REQUEST: Layout = Layout {
        proto: 2,
        ver1: Some(1),
        kind: 2,
        cmd_code: 3..5,
        ver2: 5,
        request_id: 6..10,
        codec: 10,
        switch: Some(11),
        timeout: Some(12..16),
        status: None,
        class_len: 16..18,
        header_len: 18..20,
        content_len: 20..24,
        len: 24,
    };

    pub(super) const V2_RESPONSE: Layout = Layout {
        proto: 2,
        ver1: Some(1),
        kind: 2,
        cmd_code: 3..5,
        ver2: 5,
        request_id: 6..10,
        codec: 10,
        switch: Some(11),
        timeout: None,
        status: Some(12..14),
        class_len: 14..16,
        header_len: 16..18,
        content_len: 18..22,
        len: 22,
    };
}

use field::Layout;

/// The layout of a frame with protocol code `proto` and type byte `kind`.
fn layout(proto: u8, kind: u8) -> Option<&'static Layout> {
    match (proto, kind) {
        (PROTO_V1, TYPE_RESPONSE) => Some(&field::V1_RESPONSE),
        (PROTO_V1, TYPE_REQUEST | TYPE_ONEWAY) => Some(&field::V1_REQUEST),
        (PROTO_V2, TYPE_RESPONSE) => Some(&field::V2_RESPONSE),
        (PROTO_V2, TYPE_REQUEST | TYPE_ONEWAY) => Some(&field::V2_REQUEST),
        _ => None,
    }
}

/// Whether a frame with these values carries the CRC32 trailer.
fn carries_crc(proto: u8, ver1: u8, switch: u8) -> bool {
    proto == PROTO_V2 && ver1 == VER1_CRC && switch & SWITCH_CRC != 0
}

/// What the first bytes of `buf` say about the frame there: `Ok(None)` when they are not
/// enough to tell, else its layout and total length (header, payload and CRC).
fn probe(buf: &[u8]) -> Result<Option<(&'static Layout, usize)>, Error> {
    let Some(&proto) = buf.first() else {
        return Ok(None);
    };
    let kind_at = match proto {
        PROTO_V1 => field::V1_KIND,
        PROTO_V2 => field::V2_KIND,
        _ => return Err(malformed("unknown protocol code")),
    };
    let Some(&kind) = buf.get(kind_at) else {
        return Ok(None);
    };
    let layout = layout(proto, kind).ok_or_else(|| malformed("unknown command type"))?;
    if buf.len() < layout.len {
        return Ok(None);
    }
    let class_len = usize::from(be_u16(buf, layout.class_len.start));
    let header_len = usize::from(be_u16(buf, layout.header_len.start));
    let content_len = usize::try_from(be_u32(buf, layout.content_len.start)).unwrap_or(usize::MAX);
    let crc = match (layout.ver1, layout.switch) {
        (Some(v), Some(s)) if carries_crc(proto, byte(buf, v), byte(buf, s)) => field::CRC_LEN,
        _ => 0,
    };
    let total = layout
        .len
        .checked_add(class_len)
        .and_then(|n| n.checked_add(header_len))
        .and_then(|n| n.checked_add(content_len))
        .and_then(|n| n.checked_add(crc))
        .unwrap_or(usize::MAX);
    Ok(Some((layout, total)))
}

/// The total length of the Bolt frame at the front of `buf` (header, class, header map,
/// content and CRC trailer) once its fixed header is there; `Ok(None)` before that; `Err` for a
/// bad protocol code or type byte.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    Ok(probe(buf)?.map(|(_, total)| total))
}

/// A typed, read-only (plus request-id rewrite) view over the bytes of one Bolt frame.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    layout: &'static Layout,
    len: usize,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that `buffer` starts with one whole Bolt frame (a valid protocol code and type,
    /// the fixed header and everything its lengths announce). Trailing bytes are allowed and
    /// ignored. The header map and the CRC are not checked here: see [`Packet::check_crc`] and
    /// [`HeaderMap::decode`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        match probe(buffer.as_ref())? {
            Some((layout, len)) if buffer.as_ref().len() >= len => Ok(Packet {
                buffer,
                layout,
                len,
            }),
            _ => Err(malformed("truncated frame")),
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Protocol code: [`PROTO_V1`] or [`PROTO_V2`].
    pub fn proto(&self) -> u8 {
        self.layout.proto
    }
    /// v2 protocol version byte (0 in v1).
    pub fn ver1(&self) -> u8 {
        self.layout.ver1.map_or(0, |at| byte(self.bytes(), at))
    }
    /// Frame type: [`TYPE_RESPONSE`], [`TYPE_REQUEST`] or [`TYPE_ONEWAY`].
    pub fn kind(&self) -> u8 {
        byte(self.bytes(), self.layout.kind)
    }
    /// Command code.
    pub fn cmd_code(&self) -> u16 {
        be_u16(self.bytes(), self.layout.cmd_code.start)
    }
    /// Command version byte.
    pub fn ver2(&self) -> u8 {
        byte(self.bytes(), self.layout.ver2)
    }
    /// Request id.
    pub fn request_id(&self) -> u32 {
        be_u32(self.bytes(), self.layout.request_id.start)
    }
    /// Serializer id.
    pub fn codec(&self) -> u8 {
        byte(self.bytes(), self.layout.codec)
    }
    /// v2 switch byte (0 in v1).
    pub fn switch(&self) -> u8 {
        self.layout.switch.map_or(0, |at| byte(self.bytes(), at))
    }
    /// Request timeout in ms (0 in responses).
    pub fn timeout(&self) -> i32 {
        self.layout
            .timeout
            .as_ref()
            .map_or(0, |f| be_u32(self.bytes(), f.start) as i32)
    }
    /// Response status (0 in requests).
    pub fn status(&self) -> u16 {
        self.layout
            .status
            .as_ref()
            .map_or(0, |f| be_u16(self.bytes(), f.start))
    }
    /// Length of the class name.
    pub fn class_len(&self) -> u16 {
        be_u16(self.bytes(), self.layout.class_len.start)
    }
    /// Length of the encoded header map.
    pub fn header_len(&self) -> u16 {
        be_u16(self.bytes(), self.layout.header_len.start)
    }
    /// Length of the content.
    pub fn content_len(&self) -> u32 {
        be_u32(self.bytes(), self.layout.content_len.start)
    }
    /// Length of the fixed header (20, 22 or 24).
    pub fn header_size(&self) -> usize {
        self.layout.len
    }
    /// Whether the frame carries a CRC32 trailer (v2, `ver1 == 2`, switch bit 0).
    pub fn has_crc(&self) -> bool {
        carries_crc(self.proto(), self.ver1(), self.switch())
    }
    /// Total frame length, CRC included.
    pub fn frame_len(&self) -> usize {
        self.len
    }

    fn class_range(&self) -> core::ops::Range<usize> {
        let start = self.layout.len;
        start..start.saturating_add(usize::from(self.class_len()))
    }
    fn header_range(&self) -> core::ops::Range<usize> {
        let start = self.class_range().end;
        start..start.saturating_add(usize::from(self.header_len()))
    }
    fn content_range(&self) -> core::ops::Range<usize> {
        let start = self.header_range().end;
        let len = usize::try_from(self.content_len()).unwrap_or(usize::MAX);
        start..start.saturating_add(len)
    }
    fn payload_end(&self) -> usize {
        self.content_range().end
    }

    /// The class name bytes.
    pub fn class(&self) -> &[u8] {
        self.bytes().get(self.class_range()).unwrap_or_default()
    }
    /// The encoded header map.
    pub fn header(&self) -> &[u8] {
        self.bytes().get(self.header_range()).unwrap_or_default()
    }
    /// The content bytes.
    pub fn content(&self) -> &[u8] {
        self.bytes().get(self.content_range()).unwrap_or_default()
    }
    /// The CRC32 trailer, when the frame carries one.
    pub fn crc(&self) -> Option<u32> {
        self.has_crc()
            .then(|| be_u32(self.bytes(), self.payload_end()))
    }
    /// The CRC32 (IEEE, as `java.util.zip.CRC32`) of everything before the trailer.
    pub fn compute_crc(&self) -> u32 {
        crc32fast::hash(self.bytes().get(..self.payload_end()).unwrap_or_default())
    }
    /// `Err` when the frame carries a CRC32 trailer that does not match its bytes.
    pub fn check_crc(&self) -> Result<(), Error> {
        match self.crc() {
            Some(crc) if crc != self.compute_crc() => Err(malformed("CRC32 mismatch")),
            _ => Ok(()),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Rewrites the request id, and the CRC32 trailer when the frame carries one.
    pub fn set_request_id(&mut self, id: u32) {
        let at = self.layout.request_id.start;
        put(self.buffer.as_mut(), at, &id.to_be_bytes());
        if self.has_crc() {
            let crc = self.compute_crc();
            let at = self.payload_end();
            put(self.buffer.as_mut(), at, &crc.to_be_bytes());
        }
    }
}

/// Walks an encoded header map, calling `pair` with the byte ranges of each entry whose key
/// and value are both non-null; returns how many entries were dropped for a null.
fn walk_header(
    bytes: &[u8],
    mut pair: impl FnMut(core::ops::Range<usize>, core::ops::Range<usize>),
) -> Result<usize, Error> {
    let mut cur = Cursor::new(bytes);
    let mut nulls = 0usize;
    let field = |cur: &mut Cursor<'_>| -> Result<Option<core::ops::Range<usize>>, Error> {
        let len = cur.u32().ok_or_else(|| malformed("header map overrun"))?;
        // Java writes -1 for null; SimpleMapSerializer reads any negative length as null.
        if len > i32::MAX as u32 {
            return Ok(None);
        }
        let start = cur.position();
        let len = usize::try_from(len).map_err(|_| malformed("header map overrun"))?;
        cur.take(len)
            .ok_or_else(|| malformed("header map overrun"))?;
        Ok(Some(start..cur.position()))
    };
    while cur.remaining() > 0 {
        let key = field(&mut cur)?;
        let value = field(&mut cur)?;
        match (key, value) {
            (Some(k), Some(v)) => pair(k, v),
            _ => nulls = nulls.saturating_add(1),
        }
    }
    Ok(nulls)
}

/// The ordered Bolt header map: `[u32 keyLen][key][u32 valueLen][value]` repeated. Order and
/// duplicates are kept; decoded keys and values are zero-copy slices of the frame.
///
/// A decoded map stays in its encoded form (validated once) until something asks for its
/// entries as [`Bytes`] or changes it: reading it in place ([`HeaderMap::entries`]) and
/// re-encoding it cost no allocation and no reference count per entry, which is what a proxy
/// that routes on a few keys and forwards the frame does.
#[derive(Clone)]
pub struct HeaderMap {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// Encoded, validated, without null entries; `parsed` is filled on first use as `Bytes`.
    Raw {
        raw: Bytes,
        len: usize,
        parsed: OnceLock<Vec<(Bytes, Bytes)>>,
    },
    /// Built or changed here.
    Owned(Vec<(Bytes, Bytes)>),
}

impl Default for HeaderMap {
    fn default() -> Self {
        HeaderMap {
            repr: Repr::Owned(Vec::new()),
        }
    }
}

/// The entries of an encoded map as `Bytes` slices of it (null entries dropped).
fn parse_entries(raw: &Bytes) -> Vec<(Bytes, Bytes)> {
    let mut v = Vec::new();
    // Validated when the map was decoded: an error here cannot happen and ends the walk.
    let _ = walk_header(raw, |k, val| v.push((raw.slice(k), raw.slice(val))));
    v
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> Self {
        HeaderMap::default()
    }

    /// The entries as `Bytes` (decoded in full on first use).
    fn parsed(&self) -> &[(Bytes, Bytes)] {
        match &self.repr {
            Repr::Raw { raw, parsed, .. } => parsed.get_or_init(|| parse_entries(raw)),
            Repr::Owned(v) => v,
        }
    }

    /// Takes the entries out for a change (the map is left empty).
    fn take_entries(&mut self) -> Vec<(Bytes, Bytes)> {
        match std::mem::replace(&mut self.repr, Repr::Owned(Vec::new())) {
            Repr::Raw { raw, parsed, .. } => {
                parsed.into_inner().unwrap_or_else(|| parse_entries(&raw))
            }
            Repr::Owned(v) => v,
        }
    }

    /// Changes the entries with `f`.
    fn change<R>(&mut self, f: impl FnOnce(&mut Vec<(Bytes, Bytes)>) -> R) -> R {
        let mut v = self.take_entries();
        let r = f(&mut v);
        self.repr = Repr::Owned(v);
        r
    }

    /// Appends an entry (an existing entry with the same key stays).
    pub fn push(&mut self, key: Bytes, value: Bytes) {
        self.change(|v| v.push((key, value)));
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.parsed().iter().map(|(k, v)| (k, v))
    }

    /// The entries in order as byte slices, read in place (no allocation).
    pub fn entries(&self) -> Entries<'_> {
        match &self.repr {
            Repr::Raw { raw, parsed, .. } => match parsed.get() {
                Some(v) => Entries(EntriesRepr::Parsed(v.iter())),
                None => Entries(EntriesRepr::Raw(Cursor::new(raw))),
            },
            Repr::Owned(v) => Entries(EntriesRepr::Parsed(v.iter())),
        }
    }

    /// The value of the first entry whose key is `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.parsed()
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v)
    }

    /// Replaces the value of the first entry with this key, or appends one.
    pub fn set(&mut self, key: Bytes, value: Bytes) {
        self.change(
            |entries| match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key, value)),
            },
        );
    }

    /// Removes every entry with this key; returns how many there were.
    pub fn remove(&mut self, key: &[u8]) -> usize {
        self.change(|entries| {
            let before = entries.len();
            entries.retain(|(k, _)| k.as_ref() != key);
            before.saturating_sub(entries.len())
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Raw { len, .. } => *len,
            Repr::Owned(v) => v.len(),
        }
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encoded length: Σ(8 + |key| + |value|).
    pub fn encoded_len(&self) -> usize {
        match &self.repr {
            Repr::Raw { raw, .. } => raw.len(),
            Repr::Owned(v) => v.iter().fold(0usize, |n, (k, v)| {
                n.saturating_add(8)
                    .saturating_add(k.len())
                    .saturating_add(v.len())
            }),
        }
    }

    /// Decodes an encoded header map. A length overrunning the bytes is `Malformed`; an entry
    /// whose key or value has a negative length (Java null, `0xFFFFFFFF`) is dropped, as
    /// sofa-bolt's `SimpleMapSerializer` does.
    pub fn decode(bytes: &Bytes) -> Result<HeaderMap, Error> {
        let mut len = 0usize;
        let nulls = walk_header(bytes, |_, _| len = len.saturating_add(1))?;
        Ok(HeaderMap::validated(bytes.clone(), len, nulls))
    }

    /// A map whose encoded form `raw` [`walk_header`] accepted, finding `len` entries and
    /// `nulls` null ones.
    fn validated(raw: Bytes, len: usize, nulls: usize) -> HeaderMap {
        let repr = if nulls == 0 {
            Repr::Raw {
                raw,
                len,
                parsed: OnceLock::new(),
            }
        } else {
            // Rare: the encoded form would keep the dropped entries.
            Repr::Owned(parse_entries(&raw))
        };
        HeaderMap { repr }
    }

    /// Appends the encoded map to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        match &self.repr {
            // Validated and without nulls: the same bytes the entries encode to.
            Repr::Raw { raw, .. } => dst.put_slice(raw),
            Repr::Owned(entries) => {
                dst.reserve(self.encoded_len());
                for (k, v) in entries {
                    dst.put_u32(u32::try_from(k.len()).unwrap_or(u32::MAX));
                    dst.put_slice(k);
                    dst.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
                    dst.put_slice(v);
                }
            }
        }
    }
}

impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        self.entries().eq(other.entries())
    }
}

impl Eq for HeaderMap {}

impl std::fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries()
                    .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v))),
            )
            .finish()
    }
}

/// The entries of a [`HeaderMap`] as byte slices, in order ([`HeaderMap::entries`]).
#[derive(Debug, Clone)]
pub struct Entries<'a>(EntriesRepr<'a>);

#[derive(Debug, Clone)]
enum EntriesRepr<'a> {
    Raw(Cursor<'a>),
    Parsed(std::slice::Iter<'a, (Bytes, Bytes)>),
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            EntriesRepr::Raw(cur) => {
                // A validated map without nulls: every length fits.
                let mut field = || {
                    let len = usize::try_from(cur.u32()?).ok()?;
                    cur.take(len)
                };
                let k = field()?;
                let v = field()?;
                Some((k, v))
            }
            EntriesRepr::Parsed(it) => it.next().map(|(k, v)| (k.as_ref(), v.as_ref())),
        }
    }
}

impl<'a> IntoIterator for &'a HeaderMap {
    type Item = (&'a Bytes, &'a Bytes);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Bytes, Bytes)>,
        fn(&'a (Bytes, Bytes)) -> (&'a Bytes, &'a Bytes),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.parsed().iter().map(|(k, v)| (k, v))
    }
}

/// One Bolt v1 or v2 frame, owned (the repr of [`Packet`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// [`PROTO_V1`] or [`PROTO_V2`].
    pub proto: u8,
    /// v2 only (0 for v1); `2` plus switch bit 0 means a CRC32 trailer.
    pub ver1: u8,
    /// [`TYPE_RESPONSE`], [`TYPE_REQUEST`] or [`TYPE_ONEWAY`].
    pub kind: u8,
    /// Command code ([`CMD_HEARTBEAT`], [`CMD_REQUEST`], [`CMD_RESPONSE`], [`CMD_GOAWAY`]).
    pub cmd_code: u16,
    /// Command version.
    pub ver2: u8,
    /// Request id.
    pub request_id: u32,
    /// Serializer id (1 = Hessian2).
    pub codec: u8,
    /// v2 only (0 for v1); bit 0 asks for the CRC32 trailer.
    pub switch: u8,
    /// Requests: timeout in ms (heartbeat -1). Not encoded in responses (0 there).
    pub timeout: i32,
    /// Responses: status. Not encoded in requests (0 there).
    pub status: u16,
    /// The Java class name of the payload.
    pub class: Bytes,
    /// The header map.
    pub header: HeaderMap,
    /// The content (serialized payload).
    pub content: Bytes,
    /// The exact bytes the frame was decoded from (empty for built frames).
    pub raw: Bytes,
}

impl Frame {
    /// Decodes the frame at the front of `buf`.
    ///
    /// `Ok(None)`: need more bytes, `buf` untouched. `Ok(Some)`: the frame's bytes were split
    /// off the front of `buf` (`raw` = those bytes; `class`/`header`/`content` are slices of
    /// `raw`). `Err`: malformed (bad protocol code, bad type, header map overrun, CRC mismatch
    /// when a CRC is present, total length above `max_frame`); `buf` is left untouched so
    /// [`peek_request_id`] can still find the id, and the caller closes the connection.
    pub fn decode(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Frame>, Error> {
        let Some((layout, total)) = probe(buf)? else {
            return Ok(None);
        };
        if total > max_frame {
            return Err(too_large(total, max_frame));
        }
        if buf.len() < total {
            return Ok(None);
        }
        // Validate before consuming, so an error leaves the buffer as it was (the layout and
        // length are the probe's: one probe per frame).
        let (entries, nulls) = {
            let view = Packet {
                buffer: buf.get(..total).unwrap_or_default(),
                layout,
                len: total,
            };
            view.check_crc()?;
            let mut entries = 0usize;
            let nulls = walk_header(view.header(), |_, _| entries = entries.saturating_add(1))?;
            (entries, nulls)
        };
        let raw = buf.split_to(total).freeze();
        let view = Packet {
            buffer: raw.clone(),
            layout,
            len: total,
        };
        let header = HeaderMap::validated(raw.slice(view.header_range()), entries, nulls);
        Ok(Some(Frame::with_header(&view, raw, header)))
    }

    /// The owned form of a checked view whose header map is `header`; `raw` must be the
    /// view's bytes.
    fn with_header(view: &Packet<Bytes>, raw: Bytes, header: HeaderMap) -> Frame {
        let class = raw.slice(view.class_range());
        let content = raw.slice(view.content_range());
        let raw = if raw.len() == view.frame_len() {
            raw
        } else {
            raw.slice(..view.frame_len())
        };
        Frame {
            proto: view.proto(),
            ver1: view.ver1(),
            kind: view.kind(),
            cmd_code: view.cmd_code(),
            ver2: view.ver2(),
            request_id: view.request_id(),
            codec: view.codec(),
            switch: view.switch(),
            timeout: view.timeout(),
            status: view.status(),
            class,
            header,
            content,
            raw,
        }
    }

    /// Whether this frame carries (and [`Frame::encode`] writes) a CRC32 trailer.
    pub fn has_crc(&self) -> bool {
        carries_crc(self.proto, self.ver1, self.switch)
    }

    /// The encoded length, or why the frame cannot be encoded.
    pub fn encoded_len(&self) -> Result<usize, Error> {
        let layout =
            layout(self.proto, self.kind).ok_or_else(|| malformed("unknown protocol or type"))?;
        if self.class.len() > usize::from(u16::MAX) {
            return Err(too_large(self.class.len(), usize::from(u16::MAX)));
        }
        let header_len = self.header.encoded_len();
        if header_len > usize::from(u16::MAX) {
            return Err(too_large(header_len, usize::from(u16::MAX)));
        }
        let max_content = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
        if self.content.len() > max_content {
            return Err(too_large(self.content.len(), max_content));
        }
        let crc = if self.has_crc() { field::CRC_LEN } else { 0 };
        layout
            .len
            .checked_add(self.class.len())
            .and_then(|n| n.checked_add(header_len))
            .and_then(|n| n.checked_add(self.content.len()))
            .and_then(|n| n.checked_add(crc))
            .ok_or_else(|| too_large(usize::MAX, usize::MAX))
    }

    /// Appends the encoded frame to `dst` (nothing is written on `Err`): `TooLarge` when the
    /// class or header map exceeds `u16::MAX` bytes or the content `u32::MAX`, `Malformed` for
    /// a protocol code or type that has no layout. Writes the CRC32 trailer when
    /// `proto == 2 && ver1 == 2 && switch & 1 != 0`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), Error> {
        let total = self.encoded_len()?;
        let is_response = self.kind == TYPE_RESPONSE;
        let v2 = self.proto == PROTO_V2;
        let start = dst.len();
        dst.reserve(total);
        dst.put_u8(self.proto);
        if v2 {
            dst.put_u8(self.ver1);
        }
        dst.put_u8(self.kind);
        dst.put_u16(self.cmd_code);
        dst.put_u8(self.ver2);
        dst.put_u32(self.request_id);
        dst.put_u8(self.codec);
        if v2 {
            dst.put_u8(self.switch);
        }
        if is_response {
            dst.put_u16(self.status);
        } else {
            dst.put_i32(self.timeout);
        }
        // Lengths were checked by encoded_len.
        dst.put_u16(u16::try_from(self.class.len()).unwrap_or(u16::MAX));
        dst.put_u16(u16::try_from(self.header.encoded_len()).unwrap_or(u16::MAX));
        dst.put_u32(u32::try_from(self.content.len()).unwrap_or(u32::MAX));
        dst.put_slice(&self.class);
        self.header.encode(dst);
        dst.put_slice(&self.content);
        if self.has_crc() {
            let crc = crc32fast::hash(dst.get(start..).unwrap_or_default());
            dst.put_u32(crc);
        }
        Ok(())
    }

    /// The encoded frame as one buffer.
    pub fn to_bytes(&self) -> Result<Bytes, Error> {
        let mut dst = BytesMut::with_capacity(self.encoded_len()?);
        self.encode(&mut dst)?;
        Ok(dst.freeze())
    }

    /// An RPC request: type request or oneway, command code [`CMD_REQUEST`].
    pub fn is_request(&self) -> bool {
        (self.kind == TYPE_REQUEST || self.kind == TYPE_ONEWAY) && self.cmd_code == CMD_REQUEST
    }

    /// A one-way request (no response expected).
    pub fn is_oneway(&self) -> bool {
        self.kind == TYPE_ONEWAY
    }

    /// A response (type byte 0), including the heartbeat ack.
    pub fn is_response(&self) -> bool {
        self.kind == TYPE_RESPONSE
    }

    /// A heartbeat or heartbeat ack (command code 0).
    pub fn is_heartbeat(&self) -> bool {
        self.cmd_code == CMD_HEARTBEAT
    }

    /// A GoAway (command code 100).
    pub fn is_goaway(&self) -> bool {
        self.cmd_code == CMD_GOAWAY
    }

    /// A bare frame of this protocol: ver1 1 in v2, ver2 1, codec Hessian2, nothing else set.
    fn bare(proto: u8, kind: u8, cmd_code: u16, request_id: u32, timeout: i32) -> Frame {
        Frame {
            proto,
            ver1: if proto == PROTO_V2 { 1 } else { 0 },
            kind,
            cmd_code,
            ver2: 1,
            request_id,
            codec: CODEC_HESSIAN2,
            switch: 0,
            timeout,
            status: status::SUCCESS,
            class: Bytes::new(),
            header: HeaderMap::new(),
            content: Bytes::new(),
            raw: Bytes::new(),
        }
    }

    /// A heartbeat request: `{type 1, cmdcode 0, ver2 1, codec 1, timeout -1}` (v2: ver1 1,
    /// switch 0).
    pub fn heartbeat(proto: u8, request_id: u32) -> Frame {
        Frame::bare(proto, TYPE_REQUEST, CMD_HEARTBEAT, request_id, -1)
    }

    /// A GoAway: `{type 1, cmdcode 100, ver2 1, codec 1, timeout 0}`.
    pub fn goaway(proto: u8, request_id: u32) -> Frame {
        Frame::bare(proto, TYPE_REQUEST, CMD_GOAWAY, request_id, 0)
    }

    /// An empty response to `req` with `status`: same proto / ver1 / ver2 / codec / switch /
    /// request id; command code [`CMD_RESPONSE`], or [`CMD_HEARTBEAT`] when `req` is a
    /// heartbeat (the heartbeat ack).
    pub fn response_to(req: &Frame, status: u16) -> Frame {
        let cmd_code = if req.is_heartbeat() {
            CMD_HEARTBEAT
        } else {
            CMD_RESPONSE
        };
        Frame {
            proto: req.proto,
            ver1: req.ver1,
            kind: TYPE_RESPONSE,
            cmd_code,
            ver2: req.ver2,
            request_id: req.request_id,
            codec: req.codec,
            switch: req.switch,
            timeout: 0,
            status,
            class: Bytes::new(),
            header: HeaderMap::new(),
            content: Bytes::new(),
            raw: Bytes::new(),
        }
    }
}

/// Rewrites the request id of an encoded frame in place (offset 5 in v1, 6 in v2) and
/// recomputes a trailing CRC32 when the frame carries one. Returns false (and changes nothing)
/// if `frame` is too short to hold the whole frame or is not a Bolt frame.
pub fn set_request_id(frame: &mut [u8], id: u32) -> bool {
    match Packet::new_checked(frame) {
        Ok(mut view) => {
            view.set_request_id(id);
            true
        }
        Err(_) => false,
    }
}

/// The protocol code and request id of a (possibly incomplete or malformed) frame, when
/// enough bytes are there: what a codec-error reply needs.
pub fn peek_request_id(buf: &[u8]) -> Option<(u8, u32)> {
    let proto = *buf.first()?;
    let at = match proto {
        PROTO_V1 => field::V1_REQUEST_ID,
        PROTO_V2 => field::V2_REQUEST_ID,
        _ => return None,
    };
    let id = buf.get(at..at.checked_add(4)?)?;
    Some((proto, u32::from_be_bytes(id.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32fast_is_java_util_zip_crc32() {
        // The CRC-32/ISO-HDLC check value, what `new CRC32().update("123456789")` yields.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn layouts_are_contiguous() {
        for l in [
            &field::V1_REQUEST,
            &field::V1_RESPONSE,
            &field::V2_REQUEST,
            &field::V2_RESPONSE,
        ] {
            assert_eq!(l.content_len.end, l.len);
            assert_eq!(l.header_len.end, l.content_len.start);
            assert_eq!(l.class_len.end, l.header_len.start);
            assert_eq!(l.request_id.start, l.ver2 + 1);
        }
    }

    #[test]
    fn null_entries_are_dropped() {
        let mut raw = BytesMut::new();
        raw.put_u32(1);
        raw.put_slice(b"a");
        raw.put_u32(u32::MAX); // null value
        raw.put_u32(u32::MAX); // null key
        raw.put_u32(1);
        raw.put_slice(b"b");
        raw.put_u32(1);
        raw.put_slice(b"k");
        raw.put_u32(0);
        let map = HeaderMap::decode(&raw.freeze()).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map.get(b"k").unwrap().as_ref(), b"");
    }

    /// A decoded map read in place, as `Bytes`, re-encoded and changed: the same entries and
    /// bytes whichever form it is in.
    #[test]
    fn decoded_maps_read_in_place_match_their_entries() {
        let mut built = HeaderMap::new();
        for (k, v) in [
            (&b"service"[..], &b"svc"[..]),
            (b"k", b""),
            (b"k", b"dup"),
            (b"", b"v"),
        ] {
            built.push(Bytes::copy_from_slice(k), Bytes::copy_from_slice(v));
        }
        let mut enc = BytesMut::new();
        built.encode(&mut enc);
        let enc = enc.freeze();
        let decoded = HeaderMap::decode(&enc).unwrap();
        assert!(matches!(decoded.repr, Repr::Raw { .. }));
        assert_eq!(decoded.len(), 4);
        assert_eq!(decoded.encoded_len(), enc.len());
        let slices: Vec<(&[u8], &[u8])> = decoded.entries().collect();
        let owned: Vec<(&[u8], &[u8])> = built.entries().collect();
        assert_eq!(slices, owned);
        assert_eq!(decoded, built);
        // Re-encoding in place gives the bytes back.
        let mut again = BytesMut::new();
        decoded.encode(&mut again);
        assert_eq!(again.as_ref(), enc.as_ref());
        // Asked for as Bytes: parsed once, still the same map.
        assert_eq!(decoded.get(b"k").unwrap().as_ref(), b"");
        assert_eq!(decoded.entries().collect::<Vec<_>>(), owned);
        assert_eq!(decoded.iter().count(), 4);
        // Changed: the change shows and the rest stays in order.
        let mut changed = decoded.clone();
        changed.set(Bytes::from_static(b"k"), Bytes::from_static(b"new"));
        assert_eq!(changed.remove(b"service"), 1);
        changed.push(Bytes::from_static(b"z"), Bytes::from_static(b"1"));
        let got: Vec<(&[u8], &[u8])> = changed.entries().collect();
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"k", b"new"), (b"k", b"dup"), (b"", b"v"), (b"z", b"1")];
        assert_eq!(got, want);
        let mut out = BytesMut::new();
        changed.encode(&mut out);
        assert_eq!(HeaderMap::decode(&out.freeze()).unwrap(), changed);
        // The original is untouched by its clone's changes.
        assert_eq!(decoded, built);
        assert_ne!(decoded, changed);
    }

    /// A map with a null entry is kept parsed: encoding it drops the null, as before.
    #[test]
    fn maps_with_nulls_encode_without_them() {
        let mut raw = BytesMut::new();
        raw.put_u32(1);
        raw.put_slice(b"a");
        raw.put_u32(u32::MAX);
        raw.put_u32(1);
        raw.put_slice(b"k");
        raw.put_u32(1);
        raw.put_slice(b"v");
        let map = HeaderMap::decode(&raw.freeze()).unwrap();
        let mut out = BytesMut::new();
        map.encode(&mut out);
        assert_eq!(out.as_ref(), &[0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v']);
        assert_eq!(map.encoded_len(), out.len());
    }

    #[test]
    fn header_overrun_is_malformed() {
        let raw = Bytes::from_static(&[0, 0, 0, 5, b'a']);
        assert!(HeaderMap::decode(&raw).is_err());
        let raw = Bytes::from_static(&[0, 0, 0]);
        assert!(HeaderMap::decode(&raw).is_err());
    }
}
