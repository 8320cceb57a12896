//! Dubbo frames (magic `0xdabb`) and the hessian2 request body.
//!
//! ```text
//! 0-1 magic 0xdabb · 2 flag (0x80 request, 0x40 two-way, 0x20 event, 0x1f serialization id)
//! 3 status (responses) · 4-11 request id (u64) · 12-15 body length (u32) · body
//! ```
//!
//! [`Packet`] is a typed view over those bytes (offsets in the private `field` module);
//! [`Frame`] is the owned form. A request body (hessian2) is: dubbo version, service path,
//! service version (string or null), method name, parameter descriptor (JVM syntax), one value
//! per parameter, attachments (a map) — [`parse_invocation`] / [`encode_invocation`].
//!
//! Heartbeat reply body: Java Dubbo writes the heartbeat result with `writeObject(null)`, one
//! hessian null `N` (ExchangeCodec `encodeResponse` → `encodeEventData`); its decoder reads one
//! object and skips (with a warning) whatever follows. MOSN replies `N N` (two bytes); mosn-rs
//! sends the single `N` a Java peer itself sends.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::{be_u32, be_u64, byte, put};
use crate::hessian2::{self, Reader};
use crate::Error;

/// Fixed header length.
pub const HEADER_LEN: usize = 16;
/// Magic bytes.
pub const MAGIC: [u8; 2] = [0xda, 0xbb];
/// Flag bit: request (else response).
pub const FLAG_REQUEST: u8 = 0x80;
/// Flag bit: two-way request (a response is expected).
pub const FLAG_TWO_WAY: u8 = 0x40;
/// Flag bit: event (heartbeat).
pub const FLAG_EVENT: u8 = 0x20;
/// Flag bits of the serialization id.
pub const SERIALIZATION_MASK: u8 = 0x1f;
/// Serialization id of hessian2.
pub const HESSIAN2: u8 = 2;

/// Response status codes.
pub mod status {
    /// OK.
    pub const OK: u8 = 20;
    /// Client-side timeout.
    pub const CLIENT_TIMEOUT: u8 = 30;
    /// Server-side timeout.
    pub const SERVER_TIMEOUT: u8 = 31;
    /// Bad request.
    pub const BAD_REQUEST: u8 = 40;
    /// Bad response.
    pub const BAD_RESPONSE: u8 = 50;
    /// Service not found.
    pub const SERVICE_NOT_FOUND: u8 = 60;
    /// Service error.
    pub const SERVICE_ERROR: u8 = 70;
    /// Server error.
    pub const SERVER_ERROR: u8 = 80;
    /// Client error.
    pub const CLIENT_ERROR: u8 = 90;
    /// The server's thread pool is exhausted.
    pub const SERVER_THREADPOOL_EXHAUSTED: u8 = 100;
}

const PROTOCOL: &str = "dubbo";

fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        protocol: PROTOCOL,
        what,
    }
}

/// Byte offsets of the 16-byte header.
mod field {
    use core::ops::Range;

    pub(super) const MAGIC: Range<usize> = 0..2;
    pub(super) const FLAG: usize = 2;
    pub(super) const STATUS: usize = 3;
    pub(super) const REQUEST_ID: Range<usize> = 4..12;
    pub(super) const BODY_LEN: Range<usize> = 12..16;
    pub(super) const BODY: usize = 16;
}

/// What the first bytes of `buf` say: `Ok(None)` when not enough to tell, `Err` for a bad
/// magic, else the total frame length.
fn probe(buf: &[u8]) -> Result<Option<usize>, Error> {
    // Reject a bad magic as soon as its first byte is there.
    for (i, m) in MAGIC.iter().enumerate() {
        match buf.get(i) {
            None => return Ok(None),
            Some(b) if b != m => return Err(malformed("bad magic")),
            Some(_) => {}
        }
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let body = usize::try_from(be_u32(buf, field::BODY_LEN.start)).unwrap_or(usize::MAX);
    Ok(Some(HEADER_LEN.saturating_add(body)))
}

/// The total length of the Dubbo frame at the front of `buf` once its header is there.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    probe(buf)
}

/// A typed view over the bytes of one Dubbo frame.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that `buffer` starts with one whole frame (magic, header, body); trailing bytes
    /// are ignored.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        match probe(buffer.as_ref())? {
            Some(len) if buffer.as_ref().len() >= len => Ok(Packet { buffer }),
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

    /// The magic bytes (always [`MAGIC`] in a checked view).
    pub fn magic(&self) -> [u8; 2] {
        [
            byte(self.bytes(), field::MAGIC.start),
            byte(self.bytes(), field::MAGIC.start.saturating_add(1)),
        ]
    }
    /// The flag byte.
    pub fn flag(&self) -> u8 {
        byte(self.bytes(), field::FLAG)
    }
    /// The status byte.
    pub fn status(&self) -> u8 {
        byte(self.bytes(), field::STATUS)
    }
    /// The request id.
    pub fn request_id(&self) -> u64 {
        be_u64(self.bytes(), field::REQUEST_ID.start)
    }
    /// The body length.
    pub fn body_len(&self) -> u32 {
        be_u32(self.bytes(), field::BODY_LEN.start)
    }
    fn body_range(&self) -> Range<usize> {
        let len = usize::try_from(self.body_len()).unwrap_or(usize::MAX);
        field::BODY..field::BODY.saturating_add(len)
    }
    /// Total frame length.
    pub fn frame_len(&self) -> usize {
        self.body_range().end
    }
    /// The body.
    pub fn body(&self) -> &[u8] {
        self.bytes().get(self.body_range()).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Rewrites the request id.
    pub fn set_request_id(&mut self, id: u64) {
        put(
            self.buffer.as_mut(),
            field::REQUEST_ID.start,
            &id.to_be_bytes(),
        );
    }
}

/// One Dubbo frame, owned (the repr of [`Packet`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Flag byte: [`FLAG_REQUEST`] | [`FLAG_TWO_WAY`] | [`FLAG_EVENT`] | serialization id.
    pub flag: u8,
    /// Status (responses; see [`status`]).
    pub status: u8,
    /// Request id.
    pub request_id: u64,
    /// The serialized body.
    pub body: Bytes,
    /// The exact bytes the frame was decoded from (empty for built frames).
    pub raw: Bytes,
}

impl Frame {
    /// Decodes the frame at the front of `buf`; same contract as [`crate::bolt::Frame::decode`]
    /// (`Ok(None)`: need more, `buf` untouched; `Err`: bad magic or longer than `max_frame`,
    /// `buf` untouched).
    pub fn decode(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Frame>, Error> {
        let Some(total) = probe(buf)? else {
            return Ok(None);
        };
        if total > max_frame {
            return Err(Error::TooLarge {
                protocol: PROTOCOL,
                len: total,
                limit: max_frame,
            });
        }
        if buf.len() < total {
            return Ok(None);
        }
        let raw = buf.split_to(total).freeze();
        let view = Packet::new_checked(raw.clone())?;
        Ok(Some(Frame {
            flag: view.flag(),
            status: view.status(),
            request_id: view.request_id(),
            body: raw.slice(view.body_range()),
            raw,
        }))
    }

    /// Appends the encoded frame (`TooLarge` when the body exceeds `u32::MAX` bytes).
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), Error> {
        let len = u32::try_from(self.body.len()).map_err(|_| Error::TooLarge {
            protocol: PROTOCOL,
            len: self.body.len(),
            limit: usize::try_from(u32::MAX).unwrap_or(usize::MAX),
        })?;
        dst.reserve(HEADER_LEN.saturating_add(self.body.len()));
        dst.put_slice(&MAGIC);
        dst.put_u8(self.flag);
        dst.put_u8(self.status);
        dst.put_u64(self.request_id);
        dst.put_u32(len);
        dst.put_slice(&self.body);
        Ok(())
    }

    /// The encoded frame as one buffer.
    pub fn to_bytes(&self) -> Result<Bytes, Error> {
        let mut dst = BytesMut::with_capacity(HEADER_LEN.saturating_add(self.body.len()));
        self.encode(&mut dst)?;
        Ok(dst.freeze())
    }

    /// Request bit set.
    pub fn is_request(&self) -> bool {
        self.flag & FLAG_REQUEST != 0
    }
    /// Two-way bit set.
    pub fn is_two_way(&self) -> bool {
        self.flag & FLAG_TWO_WAY != 0
    }
    /// Event (heartbeat) bit set.
    pub fn is_event(&self) -> bool {
        self.flag & FLAG_EVENT != 0
    }
    /// Serialization id (2 = hessian2).
    pub fn serialization(&self) -> u8 {
        self.flag & SERIALIZATION_MASK
    }

    /// The heartbeat reply: flag `0x22` (response, event, hessian2), status 20, body one
    /// hessian null `N` (what Java Dubbo's own `encodeResponse` writes; MOSN writes `N N`).
    pub fn heartbeat_reply(req: &Frame) -> Frame {
        Frame {
            flag: FLAG_EVENT | HESSIAN2,
            status: status::OK,
            request_id: req.request_id,
            body: Bytes::from_static(b"N"),
            raw: Bytes::new(),
        }
    }

    /// An error response to `req`: flag hessian2 (no request bit; the body is a hessian2
    /// string whatever the request's serialization, as MOSN's `Hijack` does), the given
    /// status, body = hessian2 string `msg` (Java reads it with `readUTF`).
    pub fn error_response(req: &Frame, status: u8, msg: &str) -> Frame {
        let mut body = BytesMut::new();
        hessian2::write_string(&mut body, msg);
        Frame {
            flag: HESSIAN2,
            status,
            request_id: req.request_id,
            body: body.freeze(),
            raw: Bytes::new(),
        }
    }
}

/// Rewrites the request id of an encoded frame in place (bytes 4-11). Returns false (and
/// changes nothing) if `frame` is shorter than the header or has a bad magic.
pub fn set_request_id(frame: &mut [u8], id: u64) -> bool {
    if frame.len() < HEADER_LEN || frame.get(field::MAGIC) != Some(&MAGIC[..]) {
        return false;
    }
    put(frame, field::REQUEST_ID.start, &id.to_be_bytes())
}

/// The request id of a (possibly incomplete or malformed) frame, when the magic and the id
/// bytes are there.
pub fn peek_request_id(buf: &[u8]) -> Option<u64> {
    if buf.get(field::MAGIC)? != MAGIC {
        return None;
    }
    let id = buf.get(field::REQUEST_ID)?;
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// The leading fields of a Dubbo hessian2 request body, the byte range of the arguments, and
/// the attachments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The Dubbo framework version (e.g. `2.0.2`).
    pub dubbo_version: String,
    /// The service path (interface name).
    pub service: String,
    /// The service version; hessian null reads as `""` (and `""` is written as null).
    pub version: String,
    /// The method name.
    pub method: String,
    /// The JVM parameter descriptor, e.g. `Ljava/lang/String;I`.
    pub param_types: String,
    /// Byte range of the encoded arguments within the body.
    pub args: Range<usize>,
    /// String→string entries of the attachments map, in order (other entries skipped).
    pub attachments: Vec<(String, String)>,
    /// Offset of the attachments map within the body (== `args.end`).
    pub attachments_start: usize,
}

impl Invocation {
    /// The first attachment with this key.
    pub fn attachment(&self, key: &str) -> Option<&str> {
        self.attachments
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a hessian2 request body ([`parse_invocation_head`], then
/// [`parse_invocation_tail`]). The argument count comes from the descriptor; the arguments
/// are skipped, not decoded. A body that ends right after the arguments (no attachments)
/// gives an empty attachment list.
pub fn parse_invocation(body: &[u8]) -> Result<Invocation, Error> {
    let head = parse_invocation_head(body)?;
    let tail = parse_invocation_tail(body, head.rest)?;
    let s = |t| hessian2::text_str(t).map(Cow::into_owned);
    Ok(Invocation {
        dubbo_version: s(head.dubbo_version)?,
        service: s(head.service)?,
        version: s(head.version)?,
        method: s(head.method)?,
        param_types: s(tail.param_types)?,
        attachments_start: tail.args.end,
        args: tail.args,
        attachments: tail
            .attachments
            .into_iter()
            .map(|(k, v)| Ok((s(k)?, s(v)?)))
            .collect::<Result<_, Error>>()?,
    })
}

/// An attachment read in place: key and value as UTF-8 bytes, borrowed from the body where
/// they need no decoding (ASCII in one chunk: the usual case), so routing reads a request's
/// fields without an allocation or a validation pass per string.
pub type TextPair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// The four leading strings of a hessian2 request body, read in place, and where the rest
/// (descriptor, arguments, attachments) starts: what routing by service, version and method
/// needs, without reading the rest of the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationHead<'a> {
    /// The Dubbo framework version (e.g. `2.0.2`).
    pub dubbo_version: Cow<'a, [u8]>,
    /// The service path (interface name).
    pub service: Cow<'a, [u8]>,
    /// The service version; hessian null reads as `""`.
    pub version: Cow<'a, [u8]>,
    /// The method name.
    pub method: Cow<'a, [u8]>,
    /// Offset of the parameter descriptor within the body.
    pub rest: usize,
}

/// What follows an [`InvocationHead`]: the descriptor, the arguments' range and the
/// attachments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationTail<'a> {
    /// The JVM parameter descriptor, e.g. `Ljava/lang/String;I`.
    pub param_types: Cow<'a, [u8]>,
    /// Byte range of the encoded arguments within the body.
    pub args: Range<usize>,
    /// String→string entries of the attachments map, in order (other entries skipped).
    pub attachments: Vec<TextPair<'a>>,
}

fn text<'a>(r: &mut Reader<'a>) -> Result<Cow<'a, [u8]>, Error> {
    r.read_text().map(Option::unwrap_or_default)
}

/// Reads the four leading strings of a hessian2 request body, borrowed where they need no
/// decoding.
pub fn parse_invocation_head(body: &[u8]) -> Result<InvocationHead<'_>, Error> {
    let mut r = Reader::new(body);
    Ok(InvocationHead {
        dubbo_version: text(&mut r)?,
        service: text(&mut r)?,
        version: text(&mut r)?,
        method: text(&mut r)?,
        rest: r.position(),
    })
}

/// Reads what follows the head of `body` (`rest` from [`parse_invocation_head`]). The
/// arguments are skipped; a body that ends after them has no attachments.
pub fn parse_invocation_tail(body: &[u8], rest: usize) -> Result<InvocationTail<'_>, Error> {
    let tail = body.get(rest..).ok_or(Error::Malformed {
        protocol: PROTOCOL,
        what: "invocation head beyond the body",
    })?;
    // A reader over the tail alone sees every class definition the arguments and the
    // attachments can refer to: the head's strings define none.
    let mut r = Reader::new(tail);
    let param_types = text(&mut r)?;
    let n = descriptor_arguments(&param_types)?;
    let start = r.position();
    for _ in 0..n {
        r.skip_value()?;
    }
    let end = r.position();
    let attachments = if r.is_empty() {
        Vec::new()
    } else {
        r.read_text_map()?
    };
    let at = |p: usize| rest.saturating_add(p);
    Ok(InvocationTail {
        param_types,
        args: at(start)..at(end),
        attachments,
    })
}

/// Writes the five leading strings of `inv_head` (an empty `version` as null), the
/// pre-encoded argument bytes, and the attachments map (hessian2 untyped map `H` ... `Z`).
pub fn encode_invocation(
    inv_head: &Invocation,
    args: &[u8],
    attachments: &[(String, String)],
    dst: &mut BytesMut,
) {
    hessian2::write_string(dst, &inv_head.dubbo_version);
    hessian2::write_string(dst, &inv_head.service);
    if inv_head.version.is_empty() {
        hessian2::write_null(dst);
    } else {
        hessian2::write_string(dst, &inv_head.version);
    }
    hessian2::write_string(dst, &inv_head.method);
    hessian2::write_string(dst, &inv_head.param_types);
    dst.put_slice(args);
    hessian2::write_string_map(dst, attachments);
}

/// The argument count a JVM parameter descriptor implies: one per primitive (`V Z B C D F I J
/// S`), per object type `L...;` and per array (`[` repeated, then a primitive or an object).
/// `Err` on a malformed descriptor.
pub fn argument_count(descriptor: &str) -> Result<usize, Error> {
    descriptor_arguments(descriptor.as_bytes())
}

/// [`argument_count`] over the descriptor's bytes.
fn descriptor_arguments(descriptor: &[u8]) -> Result<usize, Error> {
    let mut count = 0usize;
    let mut bytes = descriptor.iter().copied();
    while let Some(mut b) = bytes.next() {
        while b == b'[' {
            b = bytes
                .next()
                .ok_or_else(|| malformed("array descriptor without element type"))?;
        }
        match b {
            b'V' | b'Z' | b'B' | b'C' | b'D' | b'F' | b'I' | b'J' | b'S' => {}
            b'L' => {
                let mut empty = true;
                loop {
                    match bytes.next() {
                        Some(b';') if !empty => break,
                        Some(b';') => return Err(malformed("empty class name in descriptor")),
                        Some(_) => empty = false,
                        None => return Err(malformed("unterminated class in descriptor")),
                    }
                }
            }
            _ => return Err(malformed("bad parameter descriptor")),
        }
        count = count.saturating_add(1);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors() {
        assert_eq!(argument_count("").unwrap(), 0);
        assert_eq!(argument_count("Ljava/lang/String;I").unwrap(), 2);
        assert_eq!(
            argument_count("Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;").unwrap(),
            3
        );
        assert_eq!(argument_count("[[IJZ").unwrap(), 3);
        assert!(argument_count("Ljava/lang/String").is_err());
        assert!(argument_count("[").is_err());
        assert!(argument_count("Q").is_err());
        assert!(argument_count("L;").is_err());
    }

    #[test]
    fn bad_magic_fails_on_the_first_byte() {
        let mut b = BytesMut::from(&[0xdau8][..]);
        assert_eq!(Frame::decode(&mut b, 1024), Ok(None));
        let mut b = BytesMut::from(&[0x00u8][..]);
        assert!(Frame::decode(&mut b, 1024).is_err());
        let mut b = BytesMut::from(&[0xda, 0x00][..]);
        assert!(Frame::decode(&mut b, 1024).is_err());
    }
}
