//! Enough Hessian 2.0 for Dubbo: read strings, skip any value, read string maps; write
//! strings, null and string maps.
//!
//! Strings: the length prefix counts UTF-16 code units, not bytes, and Java's Hessian2Output
//! encodes each UTF-16 unit on its own, so a character outside the BMP travels as two 3-byte
//! surrogate sequences (CESU-8). The reader accepts that, proper 4-byte UTF-8 (counted as two
//! units, as dubbo-go-hessian2 writes it) and surrogate pairs split across chunks; an unpaired
//! surrogate becomes U+FFFD. The writer emits what Java emits (CESU-8, chunks of at most 0x8000
//! units never ending on a high surrogate), which Java's `parseUTF8Char` (1 to 3-byte forms
//! only) can read.
//!
//! [`Reader::skip_value`] knows every Hessian 2.0 production (null, booleans, the int / long /
//! double / date forms, binary and string chunks, typed / untyped and fixed / variable lists,
//! typed / untyped maps, class definitions and objects, refs). Nesting is limited to
//! [`MAX_DEPTH`] so hostile input cannot overflow the stack; every value consumes at least one
//! byte, so skipping is linear in the input.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use crate::cursor::Cursor;
use crate::Error;

/// How deeply lists, maps and objects may nest before the input is called malformed.
pub const MAX_DEPTH: usize = 64;

/// Largest chunk the writer emits, in UTF-16 units (Java's 0x8000).
pub const CHUNK_UNITS: usize = 0x8000;

const PROTOCOL: &str = "hessian2";

fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        protocol: PROTOCOL,
        what,
    }
}

fn eof() -> Error {
    malformed("unexpected end of input")
}

/// Tag bytes (Hessian 2.0 serialization grammar).
mod tag {
    pub(super) const BINARY_CHUNK: u8 = b'A';
    pub(super) const BINARY_FINAL: u8 = b'B';
    pub(super) const CLASS_DEF: u8 = b'C';
    pub(super) const DOUBLE: u8 = b'D';
    pub(super) const FALSE: u8 = b'F';
    pub(super) const UNTYPED_MAP: u8 = b'H';
    pub(super) const INT: u8 = b'I';
    pub(super) const DATE_MILLIS: u8 = b'J';
    pub(super) const DATE_MINUTES: u8 = b'K';
    pub(super) const LONG: u8 = b'L';
    pub(super) const TYPED_MAP: u8 = b'M';
    pub(super) const NULL: u8 = b'N';
    pub(super) const OBJECT: u8 = b'O';
    pub(super) const REF: u8 = b'Q';
    pub(super) const STRING_CHUNK: u8 = b'R';
    pub(super) const STRING_FINAL: u8 = b'S';
    pub(super) const TRUE: u8 = b'T';
    pub(super) const LIST_TYPED_VAR: u8 = b'U';
    pub(super) const LIST_TYPED_FIXED: u8 = b'V';
    pub(super) const LIST_VAR: u8 = b'W';
    pub(super) const LIST_FIXED: u8 = b'X';
    pub(super) const LONG_INT: u8 = b'Y';
    pub(super) const END: u8 = b'Z';
    pub(super) const DOUBLE_ZERO: u8 = 0x5b;
    pub(super) const DOUBLE_ONE: u8 = 0x5c;
    pub(super) const DOUBLE_BYTE: u8 = 0x5d;
    pub(super) const DOUBLE_SHORT: u8 = 0x5e;
    pub(super) const DOUBLE_FLOAT: u8 = 0x5f;
    /// 0x00-0x1f: string of 0-31 units.
    pub(super) const STRING_COMPACT_MAX: u8 = 0x1f;
    /// 0x30-0x33 b0: string of 0-1023 units.
    pub(super) const STRING_SHORT: u8 = 0x30;
    /// 0x20-0x2f: binary of 0-15 bytes.
    pub(super) const BINARY_COMPACT: u8 = 0x20;
    /// 0x34-0x37 b0: binary of 0-1023 bytes.
    pub(super) const BINARY_SHORT: u8 = 0x34;
    /// 0x60-0x6f: object of class definition 0-15.
    pub(super) const OBJECT_COMPACT: u8 = 0x60;
    /// 0x70-0x77 type: fixed typed list of 0-7 elements.
    pub(super) const LIST_TYPED_COMPACT: u8 = 0x70;
    /// 0x78-0x7f: fixed untyped list of 0-7 elements.
    pub(super) const LIST_COMPACT: u8 = 0x78;
}

/// Whether `b` starts a string (any chunk form).
fn is_string_tag(b: u8) -> bool {
    matches!(b, 0x00..=tag::STRING_COMPACT_MAX | 0x30..=0x33 | tag::STRING_CHUNK | tag::STRING_FINAL)
}

/// Builds a `String` from UTF-16 units, pairing surrogates (also across chunks).
struct Utf16Sink<'s> {
    out: Option<&'s mut String>,
    high: Option<u16>,
}

impl Utf16Sink<'_> {
    fn push_char(&mut self, c: char) {
        if let Some(out) = self.out.as_deref_mut() {
            out.push(c);
        }
    }

    fn flush_high(&mut self) {
        if self.high.take().is_some() {
            self.push_char(char::REPLACEMENT_CHARACTER);
        }
    }

    fn unit(&mut self, u: u16) {
        match u {
            0xD800..=0xDBFF => {
                self.flush_high();
                self.high = Some(u);
            }
            0xDC00..=0xDFFF => match self.high.take() {
                Some(h) => {
                    let c = 0x10000u32
                        .wrapping_add((u32::from(h) & 0x3ff) << 10)
                        .wrapping_add(u32::from(u) & 0x3ff);
                    self.push_char(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                None => self.push_char(char::REPLACEMENT_CHARACTER),
            },
            _ => {
                self.flush_high();
                self.push_char(char::from_u32(u32::from(u)).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
        }
    }

    /// A run of ASCII bytes: one UTF-16 unit each.
    fn ascii(&mut self, run: &[u8]) {
        self.flush_high();
        if let Some(out) = self.out.as_deref_mut() {
            // ASCII is UTF-8 as it is.
            out.push_str(std::str::from_utf8(run).unwrap_or_default());
        }
    }

    fn scalar(&mut self, c: u32) {
        self.flush_high();
        self.push_char(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
    }
}

/// A Hessian 2.0 reader over a byte slice. It remembers the class definitions it has seen (a
/// Dubbo body is one Hessian stream: a class defined in an argument may be used again in the
/// attachments).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    cur: Cursor<'a>,
    /// Field count of each class definition, by definition index.
    classes: Vec<usize>,
    max_depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`, nesting limited to [`MAX_DEPTH`].
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            cur: Cursor::new(buf),
            classes: Vec::new(),
            max_depth: MAX_DEPTH,
        }
    }

    /// A reader with another nesting limit.
    pub fn with_max_depth(buf: &'a [u8], max_depth: usize) -> Self {
        Reader {
            max_depth,
            ..Reader::new(buf)
        }
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.cur.position()
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.cur.remaining()
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.cur.remaining() == 0
    }

    /// The next byte, not consumed.
    pub fn peek(&self) -> Option<u8> {
        self.cur.peek()
    }

    fn u8(&mut self) -> Result<u8, Error> {
        self.cur.u8().ok_or_else(eof)
    }

    fn skip(&mut self, n: usize) -> Result<(), Error> {
        self.cur.take(n).map(|_| ()).ok_or_else(eof)
    }

    /// Reads an int in any of its forms (`I`, 1, 2 and 3-byte compact).
    pub fn read_int(&mut self) -> Result<i32, Error> {
        let t = self.u8()?;
        self.int_after(t)
    }

    fn int_after(&mut self, t: u8) -> Result<i32, Error> {
        Ok(match t {
            0x80..=0xbf => i32::from(t).wrapping_sub(0x90),
            0xc0..=0xcf => {
                let b0 = self.u8()?;
                i32::from(t)
                    .wrapping_sub(0xc8)
                    .wrapping_mul(256)
                    .wrapping_add(i32::from(b0))
            }
            0xd0..=0xd7 => {
                let b1 = self.u8()?;
                let b0 = self.u8()?;
                i32::from(t)
                    .wrapping_sub(0xd4)
                    .wrapping_mul(65536)
                    .wrapping_add(i32::from(u16::from_be_bytes([b1, b0])))
            }
            tag::INT => i32::from_be_bytes(self.cur.array().ok_or_else(eof)?),
            _ => return Err(malformed("expected an int")),
        })
    }

    /// A non-negative int used as a length or index.
    fn read_count(&mut self) -> Result<usize, Error> {
        usize::try_from(self.read_int()?).map_err(|_| malformed("negative length"))
    }

    /// Reads one string chunk's UTF-8 data of `units` UTF-16 units into `sink`.
    fn string_data(&mut self, units: usize, sink: &mut Utf16Sink<'_>) -> Result<(), Error> {
        let mut left = units;
        while left > 0 {
            // ASCII runs (Java names, ids, most text) in one step: a skipped argument string
            // costs a scan, not a decode per character.
            let rest = self.cur.rest();
            let here = rest.get(..left).unwrap_or(rest);
            // The whole chunk at once when it is ASCII (a word-at-a-time check).
            let run = if here.is_ascii() {
                here.len()
            } else {
                here.iter().take_while(|b| b.is_ascii()).count()
            };
            if run > 0 {
                let ascii = self.cur.take(run).ok_or_else(eof)?;
                sink.ascii(ascii);
                left = left.saturating_sub(run);
                continue;
            }
            let b = self.u8()?;
            match b {
                0x00..=0x7f => {
                    sink.unit(u16::from(b));
                    left = left.saturating_sub(1);
                }
                0xc0..=0xdf => {
                    let b1 = self.u8()?;
                    sink.unit((u16::from(b & 0x1f) << 6) | u16::from(b1 & 0x3f));
                    left = left.saturating_sub(1);
                }
                0xe0..=0xef => {
                    let b1 = self.u8()?;
                    let b2 = self.u8()?;
                    sink.unit(
                        (u16::from(b & 0x0f) << 12)
                            | (u16::from(b1 & 0x3f) << 6)
                            | u16::from(b2 & 0x3f),
                    );
                    left = left.saturating_sub(1);
                }
                0xf0..=0xf7 => {
                    // A supplementary character in one 4-byte sequence: two UTF-16 units.
                    if left < 2 {
                        return Err(malformed("4-byte UTF-8 sequence split by a chunk"));
                    }
                    let [b1, b2, b3] = self.cur.array().ok_or_else(eof)?;
                    let c = (u32::from(b & 0x07) << 18)
                        | (u32::from(b1 & 0x3f) << 12)
                        | (u32::from(b2 & 0x3f) << 6)
                        | u32::from(b3 & 0x3f);
                    sink.scalar(c);
                    left = left.saturating_sub(2);
                }
                _ => return Err(malformed("bad UTF-8 lead byte")),
            }
        }
        Ok(())
    }

    /// Reads (into `out`, or discards when `None`) a string whose first tag is `t`.
    fn string_after(&mut self, mut t: u8, out: Option<&mut String>) -> Result<(), Error> {
        let mut sink = Utf16Sink { out, high: None };
        loop {
            let (units, last) = match t {
                0x00..=tag::STRING_COMPACT_MAX => (usize::from(t), true),
                0x30..=0x33 => {
                    let b0 = self.u8()?;
                    (usize::from(u16::from_be_bytes([t & 0x03, b0])), true)
                }
                tag::STRING_FINAL | tag::STRING_CHUNK => {
                    let len: [u8; 2] = self.cur.array().ok_or_else(eof)?;
                    (usize::from(u16::from_be_bytes(len)), t == tag::STRING_FINAL)
                }
                _ => return Err(malformed("expected a string chunk")),
            };
            self.string_data(units, &mut sink)?;
            if last {
                break;
            }
            t = self.u8()?;
        }
        sink.flush_high();
        Ok(())
    }

    /// Reads a string; `None` for null (`N`). Handles every chunk form.
    pub fn read_string(&mut self) -> Result<Option<String>, Error> {
        Ok(self.read_str()?.map(Cow::into_owned))
    }

    /// Reads a string, borrowed from the input when it is one ASCII chunk (names, ids, most
    /// attachments: nothing to decode or allocate), decoded otherwise; `None` for null.
    pub fn read_str(&mut self) -> Result<Option<Cow<'a, str>>, Error> {
        self.read_text()?.map(text_str).transpose()
    }

    /// Reads a string as its UTF-8 bytes: borrowed from the input when it is one ASCII chunk
    /// (then not even UTF-8 validation is needed), decoded otherwise; `None` for null. For
    /// readers that compare bytes, as routing does.
    pub fn read_text(&mut self) -> Result<Option<Cow<'a, [u8]>>, Error> {
        let t = self.u8()?;
        if t == tag::NULL {
            return Ok(None);
        }
        if !is_string_tag(t) {
            return Err(malformed("expected a string"));
        }
        self.text_after(t).map(Some)
    }

    /// A string whose first tag is `t` (see [`Reader::read_text`]).
    fn text_after(&mut self, t: u8) -> Result<Cow<'a, [u8]>, Error> {
        let rest = self.cur.rest();
        // One final chunk: its length and where its data starts.
        let single = match t {
            0x00..=tag::STRING_COMPACT_MAX => Some((usize::from(t), 0usize)),
            0x30..=0x33 => rest
                .first()
                .map(|&b0| (usize::from(u16::from_be_bytes([t & 0x03, b0])), 1)),
            tag::STRING_FINAL => rest
                .get(..2)
                .and_then(|l| <[u8; 2]>::try_from(l).ok())
                .map(|l| (usize::from(u16::from_be_bytes(l)), 2)),
            _ => None,
        };
        if let Some((units, at)) = single {
            // ASCII: one byte per UTF-16 unit.
            if let Some(end) = at.checked_add(units) {
                if let Some(text) = rest.get(at..end).filter(|d| d.is_ascii()) {
                    self.skip(end)?;
                    return Ok(Cow::Borrowed(text));
                }
            }
        }
        let mut s = String::with_capacity(self.remaining().min(64));
        self.string_after(t, Some(&mut s))?;
        Ok(Cow::Owned(s.into_bytes()))
    }

    /// Skips a `type` (a string or a type-ref int).
    fn skip_type(&mut self) -> Result<(), Error> {
        let t = self.u8()?;
        if is_string_tag(t) {
            self.string_after(t, None)
        } else {
            self.int_after(t).map(|_| ())
        }
    }

    /// Skips binary data whose first tag is `t`.
    fn binary_after(&mut self, mut t: u8) -> Result<(), Error> {
        loop {
            let (len, last) = match t {
                tag::BINARY_COMPACT..=0x2f => (usize::from(t & 0x0f), true),
                tag::BINARY_SHORT..=0x37 => {
                    let b0 = self.u8()?;
                    (usize::from(u16::from_be_bytes([t & 0x03, b0])), true)
                }
                tag::BINARY_FINAL | tag::BINARY_CHUNK => {
                    let len: [u8; 2] = self.cur.array().ok_or_else(eof)?;
                    (usize::from(u16::from_be_bytes(len)), t == tag::BINARY_FINAL)
                }
                _ => return Err(malformed("expected a binary chunk")),
            };
            self.skip(len)?;
            if last {
                return Ok(());
            }
            t = self.u8()?;
        }
    }

    /// Skips values until the `Z` end marker (consumed).
    fn skip_until_end(&mut self, depth: usize, per_entry: usize) -> Result<(), Error> {
        loop {
            if self.cur.peek().ok_or_else(eof)? == tag::END {
                self.skip(1)?;
                return Ok(());
            }
            for _ in 0..per_entry {
                self.skip_at(depth)?;
            }
        }
    }

    fn skip_n(&mut self, n: usize, depth: usize) -> Result<(), Error> {
        for _ in 0..n {
            self.skip_at(depth)?;
        }
        Ok(())
    }

    /// Reads a class definition (after its `C`).
    fn class_def(&mut self) -> Result<(), Error> {
        let t = self.u8()?;
        if !is_string_tag(t) {
            return Err(malformed("class name is not a string"));
        }
        self.string_after(t, None)?;
        let fields = self.read_count()?;
        for _ in 0..fields {
            let t = self.u8()?;
            if !is_string_tag(t) {
                return Err(malformed("field name is not a string"));
            }
            self.string_after(t, None)?;
        }
        self.classes.push(fields);
        Ok(())
    }

    fn object_fields(&mut self, class: usize, depth: usize) -> Result<(), Error> {
        let fields = *self
            .classes
            .get(class)
            .ok_or_else(|| malformed("object of an undefined class"))?;
        self.skip_n(fields, depth)
    }

    /// Skips one Hessian 2.0 value of any kind.
    pub fn skip_value(&mut self) -> Result<(), Error> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), Error> {
        if depth >= self.max_depth {
            return Err(malformed("nesting too deep"));
        }
        let inner = depth.saturating_add(1);
        let mut t = self.u8()?;
        // A class definition is followed by the value that uses it.
        while t == tag::CLASS_DEF {
            self.class_def()?;
            t = self.u8()?;
        }
        match t {
            tag::NULL | tag::TRUE | tag::FALSE => Ok(()),
            // int
            0x80..=0xbf | 0xc0..=0xcf | 0xd0..=0xd7 | tag::INT => self.int_after(t).map(|_| ()),
            // long
            0xd8..=0xef => Ok(()),
            0xf0..=0xff => self.skip(1),
            0x38..=0x3f => self.skip(2),
            tag::LONG_INT => self.skip(4),
            tag::LONG => self.skip(8),
            // double
            tag::DOUBLE_ZERO | tag::DOUBLE_ONE => Ok(()),
            tag::DOUBLE_BYTE => self.skip(1),
            tag::DOUBLE_SHORT => self.skip(2),
            tag::DOUBLE_FLOAT => self.skip(4),
            tag::DOUBLE => self.skip(8),
            // date
            tag::DATE_MILLIS => self.skip(8),
            tag::DATE_MINUTES => self.skip(4),
            // binary
            0x20..=0x2f | 0x34..=0x37 | tag::BINARY_CHUNK | tag::BINARY_FINAL => {
                self.binary_after(t)
            }
            // string
            0x00..=0x1f | 0x30..=0x33 | tag::STRING_CHUNK | tag::STRING_FINAL => {
                self.string_after(t, None)
            }
            // lists
            tag::LIST_TYPED_VAR => {
                self.skip_type()?;
                self.skip_until_end(inner, 1)
            }
            tag::LIST_TYPED_FIXED => {
                self.skip_type()?;
                let n = self.read_count()?;
                self.skip_n(n, inner)
            }
            tag::LIST_VAR => self.skip_until_end(inner, 1),
            tag::LIST_FIXED => {
                let n = self.read_count()?;
                self.skip_n(n, inner)
            }
            tag::LIST_TYPED_COMPACT..=0x77 => {
                self.skip_type()?;
                self.skip_n(usize::from(t & 0x07), inner)
            }
            tag::LIST_COMPACT..=0x7f => self.skip_n(usize::from(t & 0x07), inner),
            // maps
            tag::TYPED_MAP => {
                self.skip_type()?;
                self.skip_until_end(inner, 2)
            }
            tag::UNTYPED_MAP => self.skip_until_end(inner, 2),
            // objects
            tag::OBJECT => {
                let class = self.read_count()?;
                self.object_fields(class, inner)
            }
            tag::OBJECT_COMPACT..=0x6f => self.object_fields(usize::from(t & 0x0f), inner),
            tag::REF => self.read_int().map(|_| ()),
            _ => Err(malformed("unknown value tag")),
        }
    }

    /// Reads a map (`H` or `M type`, up to `Z`; null reads as empty). Entries whose key and
    /// value are both strings are returned in order; the others are skipped.
    pub fn read_string_map(&mut self) -> Result<Vec<(String, String)>, Error> {
        self.read_text_map()?
            .into_iter()
            .map(|(k, v)| Ok((text_str(k)?.into_owned(), text_str(v)?.into_owned())))
            .collect()
    }

    /// [`Reader::read_string_map`] with each string as [`Reader::read_text`] reads it.
    #[allow(clippy::type_complexity)]
    pub fn read_text_map(&mut self) -> Result<Vec<(Cow<'a, [u8]>, Cow<'a, [u8]>)>, Error> {
        if self.max_depth == 0 {
            return Err(malformed("nesting too deep"));
        }
        let mut t = self.u8()?;
        while t == tag::CLASS_DEF {
            self.class_def()?;
            t = self.u8()?;
        }
        match t {
            tag::NULL => return Ok(Vec::new()),
            tag::UNTYPED_MAP => {}
            tag::TYPED_MAP => self.skip_type()?,
            _ => return Err(malformed("expected a map")),
        }
        // Dubbo's attachments: a handful (path, interface, version, group, timeout, ...).
        let mut entries = Vec::with_capacity(8);
        loop {
            let next = self.cur.peek().ok_or_else(eof)?;
            if next == tag::END {
                self.skip(1)?;
                return Ok(entries);
            }
            let key = self.string_or_skip()?;
            let value = self.string_or_skip()?;
            if let (Some(k), Some(v)) = (key, value) {
                entries.push((k, v));
            }
        }
    }

    /// A string value as `Some`, any other value (null included) skipped as `None`.
    fn string_or_skip(&mut self) -> Result<Option<Cow<'a, [u8]>>, Error> {
        match self.cur.peek() {
            Some(t) if is_string_tag(t) => self.read_text(),
            _ => self.skip_at(1).map(|_| None),
        }
    }
}

/// A string read by [`Reader::read_text`] as `str` (always UTF-8: ASCII when borrowed,
/// decoded text otherwise).
pub fn text_str(text: Cow<'_, [u8]>) -> Result<Cow<'_, str>, Error> {
    match text {
        Cow::Borrowed(b) => std::str::from_utf8(b)
            .map(Cow::Borrowed)
            .map_err(|_| malformed("bad UTF-8")),
        Cow::Owned(v) => String::from_utf8(v)
            .map(Cow::Owned)
            .map_err(|_| malformed("bad UTF-8")),
    }
}

/// Number of UTF-16 units of `c`.
fn units(c: char) -> usize {
    c.len_utf16()
}

/// Appends `c` as Java's Hessian2Output does: each UTF-16 unit on its own, 1 to 3 bytes.
fn put_char(dst: &mut BytesMut, c: char) {
    let mut buf = [0u16; 2];
    for &u in c.encode_utf16(&mut buf).iter() {
        if u < 0x80 {
            dst.put_u8(u as u8);
        } else if u < 0x800 {
            dst.put_u8(0xc0 | (u >> 6) as u8);
            dst.put_u8(0x80 | (u & 0x3f) as u8);
        } else {
            dst.put_u8(0xe0 | (u >> 12) as u8);
            dst.put_u8(0x80 | ((u >> 6) & 0x3f) as u8);
            dst.put_u8(0x80 | (u & 0x3f) as u8);
        }
    }
}

/// Appends a string: compact forms (`0x00-0x1f`, `0x30-0x33`, `S`), and `R` chunks of at
/// most 0x8000 UTF-16 units for longer strings, as Java's Hessian2Output.
pub fn write_string(dst: &mut BytesMut, s: &str) {
    let mut left: usize = s.encode_utf16().count();
    let mut chars = s.chars().peekable();
    while left > CHUNK_UNITS {
        // Fill one chunk; a surrogate pair never straddles two chunks.
        let mut n = 0usize;
        let mut body = BytesMut::new();
        while let Some(&c) = chars.peek() {
            let u = units(c);
            if n.saturating_add(u) > CHUNK_UNITS {
                break;
            }
            n = n.saturating_add(u);
            put_char(&mut body, c);
            chars.next();
        }
        dst.put_u8(tag::STRING_CHUNK);
        dst.put_u16(u16::try_from(n).unwrap_or(u16::MAX));
        dst.put_slice(&body);
        left = left.saturating_sub(n);
    }
    if left <= usize::from(tag::STRING_COMPACT_MAX) {
        dst.put_u8(u8::try_from(left).unwrap_or(0));
    } else if left <= 1023 {
        let [hi, lo] = u16::try_from(left).unwrap_or(0).to_be_bytes();
        dst.put_u8(tag::STRING_SHORT | hi);
        dst.put_u8(lo);
    } else {
        dst.put_u8(tag::STRING_FINAL);
        dst.put_u16(u16::try_from(left).unwrap_or(u16::MAX));
    }
    for c in chars {
        put_char(dst, c);
    }
}

/// Appends null (`N`).
pub fn write_null(dst: &mut BytesMut) {
    dst.put_u8(tag::NULL);
}

/// Appends an untyped map of strings: `H (key value)* Z`.
pub fn write_string_map(dst: &mut BytesMut, entries: &[(String, String)]) {
    dst.put_u8(tag::UNTYPED_MAP);
    for (k, v) in entries {
        write_string(dst, k);
        write_string(dst, v);
    }
    dst.put_u8(tag::END);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One ASCII chunk is borrowed from the input in each length form; anything that needs
    /// decoding (non-ASCII, several chunks) is decoded; a chunk cut short is an error.
    #[test]
    fn read_str_borrows_single_ascii_chunks_only() {
        let ascii = |n: usize| "abcdefghij".repeat(n / 10 + 1)[..n].to_string();
        for n in [0, 1, 31, 32, 1023, 1024, CHUNK_UNITS] {
            let s = ascii(n);
            let mut b = BytesMut::new();
            write_string(&mut b, &s);
            let mut r = Reader::new(&b);
            let got = r.read_str().unwrap().unwrap();
            assert!(matches!(got, Cow::Borrowed(_)), "length {n} borrowed");
            assert_eq!(got, s);
            assert!(r.is_empty());
        }
        for s in [
            ascii(CHUNK_UNITS + 1),
            "caf\u{e9}".to_string(),
            "\u{1F600}x".to_string(),
        ] {
            let mut b = BytesMut::new();
            write_string(&mut b, &s);
            let mut r = Reader::new(&b);
            let got = r.read_str().unwrap().unwrap();
            assert!(matches!(got, Cow::Owned(_)), "{s:?} decoded");
            assert_eq!(got, s);
            assert!(r.is_empty());
        }
        // A compact string of 5 with 3 bytes, a short one and an `S` chunk cut short.
        for cut in [&b"\x05abc"[..], b"\x30\x40abc", b"S\x00\x05ab", b"S\x00"] {
            assert!(Reader::new(cut).read_str().is_err(), "{cut:?}");
        }
        let mut r = Reader::new(b"N");
        assert_eq!(r.read_str().unwrap(), None);
    }

    fn roundtrip(s: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        write_string(&mut b, s);
        let mut r = Reader::new(&b);
        assert_eq!(r.read_string().unwrap().as_deref(), Some(s));
        assert!(r.is_empty());
        let mut r = Reader::new(&b);
        r.skip_value().unwrap();
        assert!(r.is_empty());
        b.to_vec()
    }

    #[test]
    fn compact_forms() {
        assert_eq!(roundtrip(""), [0x00]);
        assert_eq!(roundtrip("hello"), b"\x05hello");
        assert_eq!(&roundtrip(&"a".repeat(32))[..2], [0x30, 32]);
        assert_eq!(&roundtrip(&"a".repeat(1024))[..3], [b'S', 0x04, 0x00]);
    }

    #[test]
    fn astral_is_cesu8_counted_in_utf16_units() {
        // U+1F600 = D83D DE00.
        let b = roundtrip("\u{1F600}");
        assert_eq!(b, [0x02, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]);
        // dubbo-go-hessian2 style: real 4-byte UTF-8 counted as two units.
        let mut r = Reader::new(&[0x02, 0xf0, 0x9f, 0x98, 0x80]);
        assert_eq!(r.read_string().unwrap().unwrap(), "\u{1F600}");
        // A lone surrogate becomes U+FFFD.
        let mut r = Reader::new(&[0x01, 0xed, 0xa0, 0xbd]);
        assert_eq!(r.read_string().unwrap().unwrap(), "\u{FFFD}");
    }

    #[test]
    fn ascii_runs_mix_with_other_characters() {
        for text in ["abc\u{e9}def", "\u{1F600}tail", "head\u{4e2d}\u{6587}", "x"] {
            let b = roundtrip(text);
            assert_eq!(Reader::new(&b).read_string().unwrap().unwrap(), text);
        }
        // A lone high surrogate followed by ASCII: U+FFFD, then the ASCII.
        let mut r = Reader::new(&[0x03, 0xed, 0xa0, 0xbd, b'a', b'b']);
        assert_eq!(r.read_string().unwrap().unwrap(), "\u{FFFD}ab");
        // The unit count bounds the ASCII run: the next value's bytes are not taken.
        let mut r = Reader::new(b"\x02abN");
        assert_eq!(r.read_string().unwrap().unwrap(), "ab");
        assert_eq!(r.read_string().unwrap(), None);
    }

    #[test]
    fn chunks_do_not_split_pairs() {
        let s = format!("{}\u{1F600}{}", "x".repeat(CHUNK_UNITS - 1), "y".repeat(10));
        let b = roundtrip(&s);
        assert_eq!(&b[..3], [b'R', 0x7f, 0xff]);
        // A pair split across chunks by another writer still pairs up.
        let mut split = vec![b'R', 0x00, 0x01, 0xed, 0xa0, 0xbd];
        split.extend_from_slice(&[0x01, 0xed, 0xb8, 0x80]);
        assert_eq!(
            Reader::new(&split).read_string().unwrap().unwrap(),
            "\u{1F600}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = vec![0x79u8; 100_000]; // fixed untyped list of 1, nested
        assert!(Reader::new(&deep).skip_value().is_err());
    }

    #[test]
    fn ints() {
        for (bytes, v) in [
            (&[0x90u8][..], 0),
            (&[0x80], -16),
            (&[0xbf], 47),
            (&[0xc8, 0x30], 48),
            (&[0xc0, 0x00], -2048),
            (&[0xd4, 0x08, 0x00], 2048),
            (&[0xd0, 0x00, 0x00], -262144),
            (&[b'I', 0x7f, 0xff, 0xff, 0xff], i32::MAX),
        ] {
            assert_eq!(Reader::new(bytes).read_int().unwrap(), v);
        }
    }
}
