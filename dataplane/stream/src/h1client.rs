//! HTTP/1 client stream connections driven by the request's own task.
//!
//! hyper's HTTP/1 client runs every connection as a task of its own and hands the request,
//! the response head and each body chunk over channels, so every proxied request paid two
//! more task wake-ups and channel hops than the work needs. Here the task that proxies the
//! request writes the request (head and body, coalesced into one write when the body is at
//! hand), reads and parses the response head (httparse) and, through the response body,
//! reads the body straight from the socket; the pool gets the connection back once the body
//! has been read to the end (`pool.rs`). `Upgrade` and `CONNECT` still go through hyper.
//!
//! Framing follows RFC 9112 §6.3 strictly, since an upstream's framing decides where the
//! next response starts on a reused connection: `Content-Length` together with
//! `Transfer-Encoding`, differing `Content-Length` values, bad chunk framing or a bare LF in
//! it, bytes after a response, or a `101` that was not asked for are protocol errors (502);
//! a response without length is read to the connection's end and never reused.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body::{Body as _, Frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use crate::body::BoxError;
use crate::Body;

/// Largest response head (status line and headers) accepted, bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// Largest trailer section of a chunked response, bytes.
const MAX_TRAILERS: usize = 16 * 1024;
/// Most trailer fields.
const MAX_TRAILER_FIELDS: usize = 32;
/// Longest chunk extension accepted (they are skipped), bytes.
const MAX_CHUNK_EXT: usize = 1024;
/// Room made in the read buffer before a read.
const READ_ROOM: usize = 8 * 1024;
/// Body data up to this size is copied next to its framing (one write); larger goes as its
/// own slice of a vectored write.
const COPY_DATA: usize = 2 * 1024;

/// Why an HTTP/1 exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// Reading or writing the connection failed.
    #[error("upstream connection error: {0}")]
    Io(#[from] io::Error),
    /// The connection ended before a complete response head.
    #[error("upstream closed the connection before a complete response head")]
    ClosedBeforeResponse,
    /// The connection ended inside a response body.
    #[error("upstream closed the connection inside a response body")]
    ClosedMidBody,
    /// The upstream's bytes are not a valid response.
    #[error("malformed upstream response: {0}")]
    Malformed(&'static str),
    /// The request body failed on our side (downstream read error, limit, filter).
    #[error("request body: {0}")]
    Body(#[source] BoxError),
    /// The request body's length differs from its `Content-Length`.
    #[error("request body does not match its content-length")]
    BodyLength,
}

impl H1Error {
    /// True when the upstream broke the protocol (as opposed to closing or resetting).
    pub fn is_protocol(&self) -> bool {
        matches!(self, H1Error::Malformed(_))
    }
}

/// An HTTP/1 client connection: the byte stream and the bytes read from it but not yet
/// consumed. `guard` travels with the connection (it reports the close when dropped).
pub(crate) struct H1Conn<C, G> {
    pub(crate) io: C,
    pub(crate) buf: BytesMut,
    pub(crate) guard: G,
    /// What parsing a response head reuses (boxed: the connection moves in and out of
    /// the pool with every request).
    pub(crate) scratch: Box<Scratch>,
}

impl<C: AsyncRead + AsyncWrite + Unpin, G> H1Conn<C, G> {
    pub(crate) fn new(io: C, guard: G) -> Self {
        H1Conn {
            io,
            buf: BytesMut::new(),
            guard,
            scratch: Box::default(),
        }
    }

    /// Whether an idle connection can take a request: nothing has arrived on it since its last
    /// response (an upstream that closed it sends a FIN, which reads as the end). One read
    /// attempt without a waker; on a kernel socket whose last read drained it this is answered
    /// from the cached readiness, without a system call.
    pub(crate) fn is_reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.buf.reserve(READ_ROOM);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.buf),
            Poll::Pending
        )
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(&mut self.io, &mut self.buf, cx)
    }
}

/// Reads what `io` has into `buf`, making room first; `Ok(0)`: the connection's end.
pub(crate) fn poll_fill<C: AsyncRead + Unpin>(
    io: &mut C,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_ROOM / 2 {
        buf.reserve(READ_ROOM);
    }
    poll_read_buf(Pin::new(io), cx, buf)
}

/// Writes a chunk's size line (hex digits, CRLF).
pub(crate) fn put_chunk_size(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqFraming {
    /// No body.
    Empty,
    /// `Content-Length`: this many bytes still to send.
    Length(u64),
    /// `Transfer-Encoding: chunked` (trailers go out at its end).
    Chunked,
}

/// The request side of an exchange: bytes still to write and the body frames still to come.
pub(crate) struct Outgoing {
    /// Head, chunk framing and small data not yet written: `pending[pos..]`.
    pending: Vec<u8>,
    pos: usize,
    /// Larger body data to write after `pending`, then `tail`.
    data: Bytes,
    tail: &'static [u8],
    body: Option<Body>,
    framing: ReqFraming,
    /// The encoded head, kept while the request could be sent again (no body).
    head_len: usize,
    /// Everything (head, body, final chunk) written and flushed.
    done: bool,
    wrote: bool,
}

impl Outgoing {
    /// Encodes `parts` for the wire (into `buf`, emptied) and takes `body` to stream after it.
    pub(crate) fn new(parts: &http::request::Parts, body: Body, mut buf: Vec<u8>) -> Outgoing {
        buf.clear();
        buf.reserve(256);
        let mut p = buf;
        p.extend_from_slice(parts.method.as_str().as_bytes());
        p.push(b' ');
        let target = if parts.method == Method::CONNECT {
            parts.uri.authority().map(|a| a.as_str())
        } else {
            parts.uri.path_and_query().map(|pq| pq.as_str())
        };
        p.extend_from_slice(target.filter(|t| !t.is_empty()).unwrap_or("/").as_bytes());
        p.extend_from_slice(b" HTTP/1.1\r\n");
        let h = &parts.headers;
        let notes = Notes::of(h);
        let chunked_asked = notes.te && notes.chunked_last;
        let declared = if chunked_asked || notes.bad_length {
            None
        } else {
            notes.length
        };
        let framing = match declared {
            Some(n) => ReqFraming::Length(n),
            None if chunked_asked => ReqFraming::Chunked,
            None if body.is_end_stream() => ReqFraming::Empty,
            None => match body.size_hint().exact() {
                Some(n) => ReqFraming::Length(n),
                None => ReqFraming::Chunked,
            },
        };
        for (name, value) in h {
            if name == header::TRANSFER_ENCODING
                || (name == header::CONTENT_LENGTH && declared.is_none())
            {
                continue;
            }
            put_field(&mut p, name.as_str(), value.as_bytes());
        }
        if !notes.host {
            if let Some(a) = parts.uri.authority() {
                put_field(&mut p, "host", a.as_str().as_bytes());
            }
        }
        match framing {
            ReqFraming::Chunked => put_field(&mut p, "transfer-encoding", b"chunked"),
            ReqFraming::Length(n) if declared.is_none() => {
                put_field(
                    &mut p,
                    "content-length",
                    itoa::Buffer::new().format(n).as_bytes(),
                );
            }
            ReqFraming::Empty if method_implies_body(&parts.method) => {
                put_field(&mut p, "content-length", b"0");
            }
            _ => {}
        }
        p.extend_from_slice(b"\r\n");
        let head_len = p.len();
        let body = (framing != ReqFraming::Empty).then_some(body);
        Outgoing {
            pending: p,
            pos: 0,
            data: Bytes::new(),
            tail: b"",
            body,
            framing,
            head_len,
            done: false,
            wrote: false,
        }
    }

    /// The encoding buffer, for the next request on the connection.
    pub(crate) fn into_buf(self) -> Vec<u8> {
        self.pending
    }

    /// Whether the request has no body bytes (its encoded head is all of it).
    fn bodiless(&self) -> bool {
        matches!(self.framing, ReqFraming::Empty | ReqFraming::Length(0))
    }

    /// Whether the same request can go again on another connection (it has no body bytes, so
    /// the encoded head is all of it).
    pub(crate) fn replay(&mut self) -> bool {
        if !self.bodiless() || self.pending.len() != self.head_len {
            return false;
        }
        self.pos = 0;
        self.done = false;
        self.wrote = false;
        true
    }

    /// Whether any byte of the request reached the connection.
    pub(crate) fn wrote(&self) -> bool {
        self.wrote
    }

    /// Whether all of the request has been written.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Writes what is pending and streams the body until it ends or waits.
    pub(crate) fn poll_send<C: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut C,
    ) -> Poll<Result<(), H1Error>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        let vectored = io.is_write_vectored();
        loop {
            // Take the next body frame first when nothing large is queued, so that a body at
            // hand goes out in the same write as the head.
            if self.data.is_empty() && self.tail.is_empty() {
                if let Some(body) = self.body.as_mut() {
                    match Pin::new(body).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            self.queue(frame, vectored)?;
                            self.finish_if_ended();
                        }
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(H1Error::Body(e))),
                        Poll::Ready(None) => self.finish_body()?,
                        Poll::Pending if self.pending_is_empty() => return Poll::Pending,
                        Poll::Pending => {}
                    }
                }
            }
            if self.pending_is_empty() {
                if self.body.is_some() {
                    continue;
                }
                return match Pin::new(&mut *io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.done = true;
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
                    Poll::Pending => Poll::Pending,
                };
            }
            match self.poll_write_some(cx, io) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn pending_is_empty(&self) -> bool {
        self.pos == self.pending.len() && self.data.is_empty() && self.tail.is_empty()
    }

    fn poll_write_some<C: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut C,
    ) -> Poll<io::Result<()>> {
        let head = &self.pending[self.pos..];
        // `data` and `tail` are only ever queued for an I/O that writes vectored
        // (`push_data`); anything else has all its bytes in `pending`.
        let n = if self.data.is_empty() && self.tail.is_empty() {
            std::task::ready!(Pin::new(&mut *io).poll_write(cx, head))?
        } else {
            let bufs = [
                io::IoSlice::new(head),
                io::IoSlice::new(&self.data),
                io::IoSlice::new(self.tail),
            ];
            std::task::ready!(Pin::new(&mut *io).poll_write_vectored(cx, &bufs))?
        };
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.wrote = true;
        let mut n = n;
        let from_head = n.min(self.pending.len() - self.pos);
        self.pos += from_head;
        n -= from_head;
        let from_data = n.min(self.data.len());
        self.data.advance(from_data);
        n -= from_data;
        self.tail = &self.tail[n.min(self.tail.len())..];
        if self.pos == self.pending.len() && !self.bodiless() {
            // Written out: the buffer takes the next chunk's framing (a request without a body
            // keeps its head, for a replay).
            self.pending.clear();
            self.pos = 0;
        }
        Poll::Ready(Ok(()))
    }

    fn queue(&mut self, frame: Frame<Bytes>, vectored: bool) -> Result<(), H1Error> {
        let frame = match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    return Ok(());
                }
                match &mut self.framing {
                    ReqFraming::Length(left) => {
                        let len = data.len() as u64;
                        if len > *left {
                            return Err(H1Error::BodyLength);
                        }
                        *left -= len;
                        self.push_data(data, b"", vectored);
                    }
                    ReqFraming::Chunked => {
                        put_chunk_size(&mut self.pending, data.len());
                        self.push_data(data, b"\r\n", vectored);
                    }
                    ReqFraming::Empty => {}
                }
                return Ok(());
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            // Trailers end the body; only chunked framing can carry them.
            if self.framing == ReqFraming::Chunked {
                self.pending.extend_from_slice(b"0\r\n");
                for (name, value) in &trailers {
                    put_field(&mut self.pending, name.as_str(), value.as_bytes());
                }
                self.pending.extend_from_slice(b"\r\n");
                self.body = None;
                return Ok(());
            }
            return self.finish_body();
        }
        Ok(())
    }

    fn push_data(&mut self, data: Bytes, tail: &'static [u8], vectored: bool) {
        if !vectored || data.len() <= COPY_DATA {
            self.pending.extend_from_slice(&data);
            self.pending.extend_from_slice(tail);
        } else {
            self.data = data;
            self.tail = tail;
        }
    }

    /// A body at its end after a data frame: its last chunk goes in the same write. (A body
    /// short of its length is reported by the next poll, which sees its end.)
    fn finish_if_ended(&mut self) {
        let ended = self.body.as_ref().is_some_and(|b| b.is_end_stream());
        if ended && matches!(self.framing, ReqFraming::Chunked | ReqFraming::Length(0)) {
            // Cannot fail for these two framings.
            let _ = self.finish_body();
        }
    }

    fn finish_body(&mut self) -> Result<(), H1Error> {
        self.body = None;
        match self.framing {
            ReqFraming::Length(0) | ReqFraming::Empty => Ok(()),
            ReqFraming::Length(_) => Err(H1Error::BodyLength),
            ReqFraming::Chunked => {
                if self.tail.is_empty() {
                    self.pending.extend_from_slice(b"0\r\n\r\n");
                } else {
                    // Large data queued with its CRLF: the last chunk follows it.
                    self.tail = b"\r\n0\r\n\r\n";
                }
                Ok(())
            }
        }
    }
}

/// One `name: value` line of a head or trailer section.
pub(crate) fn put_field(dst: &mut Vec<u8>, name: &str, value: &[u8]) {
    dst.extend_from_slice(name.as_bytes());
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

/// Methods whose empty body is still announced with `Content-Length: 0`.
fn method_implies_body(m: &Method) -> bool {
    *m == Method::POST || *m == Method::PUT || m.as_str() == "PATCH"
}

/// The fields [`Notes`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    Host,
    Te,
    Other,
}

impl Field {
    /// Which one `name` is (any case): by length first, then compared.
    pub(crate) fn of(name: &[u8]) -> Field {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        match name.len() {
            14 if is(b"content-length") => Field::ContentLength,
            17 if is(b"transfer-encoding") => Field::TransferEncoding,
            10 if is(b"connection") => Field::Connection,
            7 if is(b"upgrade") => Field::Upgrade,
            6 if is(b"expect") => Field::Expect,
            4 if is(b"host") => Field::Host,
            2 if is(b"te") => Field::Te,
            _ => Field::Other,
        }
    }
}

/// What a head's fields say about its framing and its connection, noted while the fields are
/// read (so that no map lookup asks again). Names are matched by length first, then
/// case-insensitively.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Notes {
    /// The one `Content-Length` every value agrees on.
    pub(crate) length: Option<u64>,
    /// A `Content-Length` value was not digits, or values differ.
    pub(crate) bad_length: bool,
    /// `Transfer-Encoding` is present.
    pub(crate) te: bool,
    /// Transfer codings listed, and whether the last is `chunked`.
    pub(crate) codings: u32,
    pub(crate) chunked_last: bool,
    /// `Connection` tokens.
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    /// `Upgrade` is present.
    pub(crate) upgrade: bool,
    /// `Expect: 100-continue`.
    pub(crate) expect_continue: bool,
    /// `TE` lists `trailers`.
    pub(crate) te_trailers: bool,
    /// `Host` is present.
    pub(crate) host: bool,
}

impl Notes {
    /// Notes one field.
    pub(crate) fn note(&mut self, name: &[u8], value: &[u8]) {
        self.note_field(Field::of(name), value);
    }

    /// Notes one field whose name is known to be `field`.
    pub(crate) fn note_field(&mut self, field: Field, value: &[u8]) {
        match field {
            Field::ContentLength => self.note_length(value),
            Field::TransferEncoding => {
                self.te = true;
                for t in tokens(value) {
                    self.codings += 1;
                    self.chunked_last = t.eq_ignore_ascii_case(b"chunked");
                }
            }
            Field::Connection => {
                for t in tokens(value) {
                    self.close |= t.eq_ignore_ascii_case(b"close");
                    self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            Field::Upgrade => self.upgrade = true,
            Field::Expect => {
                self.expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
            }
            Field::Host => self.host = true,
            Field::Te => {
                self.te_trailers |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"trailers"))
            }
            Field::Other => {}
        }
    }

    fn note_length(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                self.bad_length = true;
                return;
            }
            let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            match self.length {
                Some(m) if m != n => self.bad_length = true,
                _ => self.length = Some(n),
            }
        }
    }

    /// Notes every field of `h`.
    pub(crate) fn of(h: &HeaderMap) -> Notes {
        let mut n = Notes::default();
        for (name, value) in h {
            n.note(name.as_str().as_bytes(), value.as_bytes());
        }
        n
    }

    /// The connection stays open after this message (by its version and `Connection`).
    pub(crate) fn keeps_alive(&self, version: Version) -> bool {
        if version == Version::HTTP_11 {
            !self.close
        } else {
            self.keep_alive && !self.close
        }
    }
}

/// A `Content-Length` value's length; `None` when it is invalid or contradicts itself.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let mut n = Notes::default();
    n.note_length(value);
    n.length.filter(|_| !n.bad_length)
}

/// The non-empty comma-separated tokens of a field value.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// A parsed response head and how its body is framed.
pub(crate) struct ResponseHead {
    pub(crate) parts: http::response::Parts,
    pub(crate) decoder: Decoder,
    /// The connection may carry another request after this response.
    pub(crate) keep_alive: bool,
}

/// What parsing a head reuses from the heads before it on the same connection, so that a
/// parse neither zeroes nor allocates: the field offsets, and a header map given back by a
/// message that is done with it (maps travel: a request's goes to its upstream connection for
/// the response, the response's to the downstream connection for the next request), and on
/// client connections the last request's encoding buffer.
#[derive(Default)]
pub(crate) struct Scratch {
    spans: Vec<[u32; 4]>,
    /// The last heads' field names, by position, as sent and parsed.
    names: Vec<Known>,
    headers: Option<HeaderMap>,
    /// The last request's encoding buffer.
    out: Vec<u8>,
}

/// A field name as sent, parsed.
struct Known {
    raw: Vec<u8>,
    name: HeaderName,
    field: Field,
}

impl Scratch {
    /// Most field names remembered.
    const NAMES: usize = 32;
    /// Maps that grew larger than this are not kept.
    const KEEP: usize = 64;
    /// Nor encoding buffers larger than this.
    const KEEP_OUT: usize = 16 * 1024;

    /// Where each field's name and value sit in `buf` (offsets: a head is at most a few
    /// hundred KiB long), so that they can share the head's bytes once it is split off
    /// ([`Scratch::fields`]).
    pub(crate) fn locate(&mut self, buf: &[u8], fields: &[httparse::Header<'_>]) {
        let base = buf.as_ptr() as usize;
        self.spans.clear();
        self.spans.extend(fields.iter().map(|f| {
            let name = f.name.as_ptr() as usize - base;
            let value = f.value.as_ptr() as usize - base;
            [
                name as u32,
                (name + f.name.len()) as u32,
                value as u32,
                (value + f.value.len()) as u32,
            ]
        }));
    }

    /// The name of a head's field number `i`, sent as `raw`: taken from the heads before
    /// when they had the same name there (a peer sends the same fields in the same order
    /// head after head), else parsed and remembered.
    pub(crate) fn name(
        &mut self,
        i: usize,
        raw: &[u8],
    ) -> Result<(HeaderName, Field), http::header::InvalidHeaderName> {
        if let Some(k) = self.names.get(i) {
            if k.raw == raw {
                return Ok((k.name.clone(), k.field));
            }
        }
        let name = HeaderName::from_bytes(raw)?;
        let field = Field::of(raw);
        if let Some(k) = self.names.get_mut(i) {
            k.raw.clear();
            k.raw.extend_from_slice(raw);
            k.name = name.clone();
            k.field = field;
        } else if i == self.names.len() && i < Self::NAMES {
            self.names.push(Known {
                raw: raw.to_vec(),
                name: name.clone(),
                field,
            });
        }
        Ok((name, field))
    }

    /// The header map of a head of `count` fields that [`Scratch::locate`] found, `head`
    /// being its bytes (split off: the values share them), and what its fields say.
    pub(crate) fn fields(
        &mut self,
        head: &Bytes,
        count: usize,
    ) -> Result<(HeaderMap, Notes), &'static str> {
        let mut headers = self.headers(count);
        let mut notes = Notes::default();
        for i in 0..count {
            let [n, n_end, v, v_end] = self.spans[i];
            let (n, v) = (n as usize..n_end as usize, v as usize..v_end as usize);
            let (name, field) = self.name(i, &head[n]).map_err(|_| "invalid header name")?;
            notes.note_field(field, &head[v.clone()]);
            let value = HeaderValue::from_maybe_shared(head.slice(v))
                .map_err(|_| "invalid header value")?;
            headers.append(name, value);
        }
        Ok((headers, notes))
    }

    /// An empty map for a head of `n` fields.
    pub(crate) fn headers(&mut self, n: usize) -> HeaderMap {
        self.headers
            .take()
            .unwrap_or_else(|| HeaderMap::with_capacity(n))
    }

    /// A buffer to encode the next request into.
    pub(crate) fn take_out(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Keeps `buf` to encode the next request into.
    pub(crate) fn keep_out(&mut self, buf: Vec<u8>) {
        if buf.capacity() <= Self::KEEP_OUT {
            self.out = buf;
        }
    }

    /// Keeps `h`, emptied, for the next head.
    pub(crate) fn recycle(&mut self, mut h: HeaderMap) {
        if h.capacity() <= Self::KEEP {
            h.clear();
            self.headers = Some(h);
        }
    }
}

/// Parses the next final response head from `buf` (skipping `1xx` interim responses);
/// `Ok(None)`: more bytes are needed.
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
    scratch: &mut Scratch,
) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        // Slots the parser fills (left uninitialised: zeroing 100 of them cost more than the
        // parse of a typical head).
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut fields,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(H1Error::Malformed("response head too large"));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(H1Error::Malformed("too many response header fields"))
            }
            Err(_) => return Err(H1Error::Malformed("invalid response head")),
        };
        if len > MAX_HEAD {
            return Err(H1Error::Malformed("response head too large"));
        }
        let code = resp.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|_| H1Error::Malformed("invalid status code"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(H1Error::Malformed("101 without an upgrade request"));
        }
        if status.is_informational() {
            buf.advance(len);
            continue;
        }
        let version = if resp.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // Where each field sits in the head, so that values can share the head's bytes once
        // it is split off (offsets fit: the head is at most MAX_HEAD long).
        let count = resp.headers.len();
        scratch.locate(buf, resp.headers);
        let head = buf.split_to(len).freeze();
        let (headers, notes) = scratch.fields(&head, count).map_err(H1Error::Malformed)?;
        let (decoder, close_delimited) = framing(&notes, status, head_request, version)?;
        let keep_alive = !close_delimited && notes.keeps_alive(version);
        let mut r = http::Response::new(());
        *r.status_mut() = status;
        *r.version_mut() = version;
        *r.headers_mut() = headers;
        return Ok(Some(ResponseHead {
            parts: r.into_parts().0,
            decoder,
            keep_alive,
        }));
    }
}

/// RFC 9112 §6.3: how the body of this response is delimited (and whether only the
/// connection's end delimits it).
fn framing(
    notes: &Notes,
    status: StatusCode,
    head_request: bool,
    version: Version,
) -> Result<(Decoder, bool), H1Error> {
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Decoder::Done, false));
    }
    if notes.te {
        if notes.length.is_some() || notes.bad_length {
            return Err(H1Error::Malformed(
                "both transfer-encoding and content-length",
            ));
        }
        if version == Version::HTTP_11 && notes.chunked_last {
            return Ok((Decoder::chunked(), false));
        }
        return Ok((Decoder::Eof, true));
    }
    if notes.bad_length {
        return Err(H1Error::Malformed("invalid or conflicting content-length"));
    }
    match notes.length {
        Some(0) => Ok((Decoder::Done, false)),
        Some(n) => Ok((Decoder::Length(n), false)),
        None => Ok((Decoder::Eof, true)),
    }
}

/// Where a response body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// This many bytes left.
    Length(u64),
    /// Chunked framing.
    Chunked(Chunk),
    /// Until the connection ends.
    Eof,
    /// The body has ended.
    Done,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// In the hex size (`digits` read so far).
    Size {
        n: u64,
        digits: u8,
    },
    /// Whitespace after the size.
    SizeWs(u64),
    /// Inside a chunk extension (`len` bytes of it so far).
    Ext {
        n: u64,
        len: usize,
    },
    /// After the size line's CR.
    SizeLf(u64),
    /// This many data bytes left in the chunk.
    Data(u64),
    /// After the chunk's data: its CR, then its LF.
    DataCr,
    DataLf,
    /// After the last chunk: the trailer section.
    Trailers,
}

/// What one decoding step produced.
#[derive(Debug)]
pub(crate) enum Step {
    Frame(Frame<Bytes>),
    /// Needs more bytes.
    More,
    /// The body is complete.
    End,
}

impl Decoder {
    /// A chunked body, before its first chunk.
    pub(crate) const fn chunked() -> Decoder {
        Decoder::Chunked(Chunk::Size { n: 0, digits: 0 })
    }

    /// Decodes from `buf` (consuming what it uses).
    pub(crate) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        match self {
            Decoder::Done => Ok(Step::End),
            Decoder::Length(left) => {
                if *left == 0 {
                    *self = Decoder::Done;
                    return Ok(Step::End);
                }
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                let data = buf.split_to(take).freeze();
                if *left == 0 {
                    *self = Decoder::Done;
                }
                Ok(Step::Frame(Frame::data(data)))
            }
            Decoder::Eof => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                Ok(Step::Frame(Frame::data(buf.split().freeze())))
            }
            Decoder::Chunked(c) => {
                let r = step_chunked(c, buf);
                if matches!(r, Ok(Step::End))
                    || matches!(r, Ok(Step::Frame(ref f)) if f.is_trailers())
                {
                    *self = Decoder::Done;
                }
                r
            }
        }
    }

    /// Whether the body is known to have ended.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Decoder::Done | Decoder::Length(0))
    }

    /// The connection's end is this body's end.
    pub(crate) fn ends_at_eof(&self) -> bool {
        matches!(self, Decoder::Eof)
    }

    pub(crate) fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Decoder::Length(n) => http_body::SizeHint::with_exact(*n),
            Decoder::Done => http_body::SizeHint::with_exact(0),
            _ => http_body::SizeHint::default(),
        }
    }
}

fn step_chunked(c: &mut Chunk, buf: &mut BytesMut) -> Result<Step, H1Error> {
    const BAD: H1Error = H1Error::Malformed("invalid chunked framing");
    loop {
        if let Chunk::Data(left) = c {
            if buf.is_empty() {
                return Ok(Step::More);
            }
            let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
            *left -= take as u64;
            let data = buf.split_to(take).freeze();
            if *left == 0 {
                *c = Chunk::DataCr;
            }
            return Ok(Step::Frame(Frame::data(data)));
        }
        if *c == Chunk::Trailers {
            return trailers(buf);
        }
        let Some(&b) = buf.first() else {
            return Ok(Step::More);
        };
        buf.advance(1);
        *c = match (*c, b) {
            (Chunk::Size { n, digits }, _) if b.is_ascii_hexdigit() => {
                if digits >= 16 {
                    return Err(H1Error::Malformed("chunk size too large"));
                }
                let d = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                Chunk::Size {
                    n: (n << 4) | d,
                    digits: digits + 1,
                }
            }
            (Chunk::Size { n, digits }, b' ' | b'\t') if digits > 0 => Chunk::SizeWs(n),
            (Chunk::Size { n, digits }, b';') if digits > 0 => Chunk::Ext { n, len: 0 },
            (Chunk::Size { n, digits }, b'\r') if digits > 0 => Chunk::SizeLf(n),
            (Chunk::SizeWs(n), b' ' | b'\t') => Chunk::SizeWs(n),
            (Chunk::SizeWs(n), b';') => Chunk::Ext { n, len: 0 },
            (Chunk::SizeWs(n), b'\r') => Chunk::SizeLf(n),
            (Chunk::Ext { n, .. }, b'\r') => Chunk::SizeLf(n),
            (Chunk::Ext { n, len }, _) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                if len >= MAX_CHUNK_EXT {
                    return Err(H1Error::Malformed("chunk extension too long"));
                }
                Chunk::Ext { n, len: len + 1 }
            }
            (Chunk::SizeLf(0), b'\n') => Chunk::Trailers,
            (Chunk::SizeLf(n), b'\n') => Chunk::Data(n),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Size { n: 0, digits: 0 },
            _ => return Err(BAD),
        };
    }
}

/// The trailer section after the last chunk: an empty line, or fields then an empty line.
fn trailers(buf: &mut BytesMut) -> Result<Step, H1Error> {
    if buf.len() < 2 {
        return Ok(Step::More);
    }
    if buf.starts_with(b"\r\n") {
        buf.advance(2);
        return Ok(Step::End);
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_TRAILERS {
            return Err(H1Error::Malformed("trailer section too large"));
        }
        return Ok(Step::More);
    };
    let len = end + 4;
    if len > MAX_TRAILERS {
        return Err(H1Error::Malformed("trailer section too large"));
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let parsed = match httparse::parse_headers(&buf[..len], &mut fields) {
        Ok(httparse::Status::Complete((_, f))) => f,
        _ => return Err(H1Error::Malformed("invalid trailer section")),
    };
    let mut map = HeaderMap::with_capacity(parsed.len());
    for f in parsed {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| H1Error::Malformed("invalid trailer name"))?;
        let value = HeaderValue::from_bytes(f.value)
            .map_err(|_| H1Error::Malformed("invalid trailer value"))?;
        map.append(name, value);
    }
    buf.advance(len);
    Ok(Step::Frame(Frame::trailers(map)))
}

/// Sends `out` on `conn` and reads the response head. A write error does not end the
/// exchange at once: an upstream that answers early and closes (a 413 before the whole body)
/// has its answer read. The request side may be unfinished when the head arrives (the
/// response body then keeps sending it).
pub(crate) async fn exchange<C: AsyncRead + AsyncWrite + Unpin, G>(
    conn: &mut H1Conn<C, G>,
    out: &mut Outgoing,
    head_request: bool,
) -> Result<ResponseHead, H1Error> {
    let mut write_failed: Option<H1Error> = None;
    std::future::poll_fn(|cx| loop {
        if write_failed.is_none() {
            match out.poll_send(cx, &mut conn.io) {
                Poll::Ready(Ok(())) | Poll::Pending => {}
                Poll::Ready(Err(e @ (H1Error::Body(_) | H1Error::BodyLength))) => {
                    return Poll::Ready(Err(e))
                }
                Poll::Ready(Err(e)) => write_failed = Some(e),
            }
        }
        if let Some(head) = parse_response(&mut conn.buf, head_request, &mut conn.scratch)? {
            return Poll::Ready(Ok(head));
        }
        match conn.poll_fill(cx) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(write_failed
                    .take()
                    .unwrap_or(H1Error::ClosedBeforeResponse)))
            }
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => {
                return Poll::Ready(Err(write_failed.take().unwrap_or(e.into())))
            }
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

/// Reads the next frame of a response body from `conn`, sending what is left of the request
/// (`out`, `None` once all of it is out) on the way. `Ready(None)`: the body ended.
pub(crate) fn poll_body<C: AsyncRead + AsyncWrite + Unpin, G>(
    conn: &mut H1Conn<C, G>,
    decoder: &mut Decoder,
    out: &mut Option<Outgoing>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
    loop {
        if let Some(o) = out.as_mut() {
            match o.poll_send(cx, &mut conn.io) {
                Poll::Ready(Ok(())) => *out = None,
                // The request side broke (the downstream body, or the upstream stopped
                // reading): the exchange ends here and the connection with it.
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => {}
            }
        }
        match decoder.step(&mut conn.buf) {
            Ok(Step::Frame(f)) => return Poll::Ready(Some(Ok(f))),
            Ok(Step::End) => return Poll::Ready(None),
            Ok(Step::More) => {}
            Err(e) => return Poll::Ready(Some(Err(e))),
        }
        match std::task::ready!(conn.poll_fill(cx)) {
            Ok(0) if decoder.ends_at_eof() => {
                *decoder = Decoder::Done;
                return Poll::Ready(None);
            }
            Ok(0) => return Poll::Ready(Some(Err(H1Error::ClosedMidBody))),
            Ok(_) => {}
            Err(e) => return Poll::Ready(Some(Err(e.into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        mut d: Decoder,
        input: &[u8],
        split: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>, BytesMut), H1Error> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match d.step(&mut buf)? {
                Step::Frame(f) => match f.into_data() {
                    Ok(b) => body.extend_from_slice(&b),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Step::End => return Ok((body, trailers, buf)),
                Step::More => {
                    if fed == input.len() {
                        return Err(H1Error::ClosedMidBody);
                    }
                    let n = split.min(input.len() - fed);
                    buf.extend_from_slice(&input[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunk_sizes_in_hex() {
        for (n, hex) in [
            (0, "0"),
            (1, "1"),
            (255, "ff"),
            (4096, "1000"),
            (usize::MAX, "ffffffffffffffff"),
        ] {
            let mut v = Vec::new();
            put_chunk_size(&mut v, n);
            assert_eq!(v, format!("{hex}\r\n").into_bytes());
        }
    }

    #[test]
    fn remembered_names_follow_each_head() {
        // One connection's scratch across heads whose fields change place and case.
        let mut scratch = Scratch::default();
        let mut parse = |raw: &[u8]| {
            let mut buf = BytesMut::from(raw);
            parse_response(&mut buf, false, &mut scratch)
                .unwrap()
                .unwrap()
        };
        let h = parse(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.decoder, Decoder::Length(3));
        assert_eq!(h.parts.headers["x-a"], "1");
        let h = parse(b"HTTP/1.1 200 OK\r\nX-A: 2\r\ncontent-length: 4\r\n\r\n");
        assert_eq!(h.decoder, Decoder::Length(4));
        assert_eq!(h.parts.headers["x-a"], "2");
        let h = parse(b"HTTP/1.1 200 OK\r\nX-B: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.decoder, Decoder::chunked());
        assert!(h.parts.headers.get("x-a").is_none());
        assert_eq!(h.parts.headers["x-b"], "3");
        let h =
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-B: 4\r\nConnection: close\r\n\r\n");
        assert_eq!(h.decoder, Decoder::Done);
        assert!(!h.keep_alive);
        assert_eq!(h.parts.headers.len(), 3);
    }

    #[test]
    fn notes_read_framing_and_connection_fields() {
        let notes = |fields: &[(&str, &str)]| {
            let mut n = Notes::default();
            for (k, v) in fields {
                n.note(k.as_bytes(), v.as_bytes());
            }
            n
        };
        let n = notes(&[("Content-Length", "5"), ("content-length", "5, 5")]);
        assert_eq!((n.length, n.bad_length), (Some(5), false));
        for bad in ["5, 6", "+5", "", "5 5", "99999999999999999999"] {
            assert!(notes(&[("Content-Length", bad)]).bad_length, "{bad:?}");
        }
        let n = notes(&[
            ("Transfer-Encoding", "gzip"),
            ("transfer-encoding", " Chunked "),
        ]);
        assert!(n.te && n.chunked_last);
        assert_eq!(n.codings, 2);
        let n = notes(&[("Transfer-Encoding", "chunked, identity")]);
        assert!(n.te && !n.chunked_last);
        let n = notes(&[
            ("Connection", "Keep-Alive, x-foo"),
            ("Expect", "100-Continue"),
        ]);
        assert!(n.keep_alive && !n.close && n.expect_continue);
        assert!(n.keeps_alive(Version::HTTP_10) && n.keeps_alive(Version::HTTP_11));
        let n = notes(&[
            ("connection", "close"),
            ("TE", "trailers, deflate"),
            ("Host", "x"),
        ]);
        assert!(n.close && n.te_trailers && n.host);
        assert!(!n.keeps_alive(Version::HTTP_11) && !n.keeps_alive(Version::HTTP_10));
        // Look-alike names of the same length are not taken for them.
        let n = notes(&[("content-lengtx", "5"), ("upgradx", "h2c"), ("hosx", "y")]);
        assert_eq!(n, Notes::default());
        assert!(!Notes::default().keeps_alive(Version::HTTP_10));
        assert_eq!(content_length(b"12"), Some(12));
        assert_eq!(content_length(b"1,2"), None);
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let wire = b"5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\ngrpc-status: 0\r\nx-a: b\r\n\r\nNEXT";
        for split in 1..=wire.len() {
            let (body, trailers, rest) = decode_all(Decoder::chunked(), wire, split).unwrap();
            assert_eq!(body, b"hello world", "split {split}");
            let t = trailers.expect("trailers");
            assert_eq!(t["grpc-status"], "0");
            assert_eq!(t["x-a"], "b");
            // Bytes after the body stay in the buffer (the caller refuses to reuse then).
            assert!(b"NEXT".starts_with(&rest), "split {split}: {rest:?}");
        }
        let (body, trailers, _) =
            decode_all(Decoder::chunked(), b"3\r\nabc\r\n0\r\n\r\n", 1).unwrap();
        assert_eq!(body, b"abc");
        assert!(trailers.is_none());
    }

    #[test]
    fn bad_chunked_framing_is_a_protocol_error() {
        for wire in [
            &b"5\nhello\r\n0\r\n\r\n"[..],     // bare LF after the size
            b"5\r\nhelloX\r\n0\r\n\r\n",       // no CRLF after the data
            b"5\r\nhello\n0\r\n\r\n",          // bare LF after the data
            b"x\r\n",                          // not hex
            b"\r\n",                           // no size
            b" 5\r\nhello\r\n0\r\n\r\n",       // leading whitespace
            b"11111111111111111\r\n",          // 17 hex digits
            b"5;a\x01b\r\nhello\r\n0\r\n\r\n", // a control byte in the extension
            b"0\r\nbad trailer\r\n\r\n",       // a trailer line without a colon
        ] {
            let e = decode_all(Decoder::chunked(), wire, 64).unwrap_err();
            assert!(e.is_protocol(), "{wire:?}: {e}");
        }
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (body, _, rest) = decode_all(Decoder::Length(5), b"helloHTTP/1.1", 3).unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(&rest[..], b"H");
        assert!(decode_all(Decoder::Length(5), b"hel", 3).is_err());
    }

    fn head(wire: &[u8], head_request: bool) -> Result<Option<ResponseHead>, H1Error> {
        let mut buf = BytesMut::from(wire);
        parse_response(&mut buf, head_request, &mut Scratch::default())
    }

    #[test]
    fn response_heads_and_their_framing() {
        let h = head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\nX-A: 2\r\n\r\nhello",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.parts.status, 200);
        assert_eq!(h.decoder, Decoder::Length(5));
        assert!(h.keep_alive);
        let xa: Vec<_> = h.parts.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);

        // Interim responses are skipped; HEAD, 204 and 304 have no body whatever they say.
        let h = head(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.parts.status, 204);
        assert!(h.decoder.is_done());
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert!(h.decoder.is_done());

        // Without a length, the connection's end ends the body: never reused.
        let h = head(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(h.decoder, Decoder::Eof);
        assert!(!h.keep_alive);
        let h = head(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(h.decoder, Decoder::Chunked(_)));
        assert!(h.keep_alive);
        let h = head(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.decoder, Decoder::Eof);

        // Keep-alive by version and Connection.
        let h = head(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert_eq!(h.parts.version, Version::HTTP_10);
        let h = head(
            b"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(h.keep_alive);
        let h = head(
            b"HTTP/1.1 200 OK\r\nconnection: foo, close\r\ncontent-length: 0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);

        // Same values repeated are one length.
        let h = head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.decoder, Decoder::Length(3));

        // Partial heads wait for more.
        assert!(head(b"HTTP/1.1 200 OK\r\ncontent-le", false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn ambiguous_or_broken_response_heads_are_protocol_errors() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx: a\r\n folded\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            match head(wire, false) {
                Err(e) => assert!(e.is_protocol(), "{:?}: {e}", String::from_utf8_lossy(wire)),
                Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(wire)),
            }
        }
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() <= MAX_HEAD {
            big.extend_from_slice(b"x-filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(head(&big, false).is_err());
    }

    fn encode(req: http::Request<Body>) -> Vec<u8> {
        let (parts, body) = req.into_parts();
        let out = Outgoing::new(&parts, body, Vec::new());
        out.pending[..out.head_len].to_vec()
    }

    #[test]
    fn request_heads_name_their_framing() {
        let get = encode(
            http::Request::get("/a?b=1")
                .header("host", "up")
                .body(Body::empty())
                .unwrap(),
        );
        assert_eq!(get, b"GET /a?b=1 HTTP/1.1\r\nhost: up\r\n\r\n");
        let post = encode(http::Request::post("/").body(Body::empty()).unwrap());
        assert_eq!(post, b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        let full = encode(http::Request::put("/").body(Body::full("abc")).unwrap());
        assert_eq!(full, b"PUT / HTTP/1.1\r\ncontent-length: 3\r\n\r\n");
        let te = encode(
            http::Request::post("/")
                .header("transfer-encoding", "chunked")
                .header("content-length", "3")
                .body(Body::full("abc"))
                .unwrap(),
        );
        assert_eq!(te, b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
        let abs = encode(
            http::Request::get("http://example.com:8080/x")
                .body(Body::empty())
                .unwrap(),
        );
        assert_eq!(abs, b"GET /x HTTP/1.1\r\nhost: example.com:8080\r\n\r\n");
    }

    /// Writes everything `out` produces into a vector (no async runtime needed: the bodies
    /// here are always ready).
    fn written(mut out: Outgoing) -> Result<Vec<u8>, H1Error> {
        let mut sink = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        match out.poll_send(&mut cx, &mut sink) {
            Poll::Ready(r) => r.map(|()| sink),
            Poll::Pending => panic!("pending on a ready body"),
        }
    }

    #[test]
    fn request_bodies_are_framed_with_their_trailers() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let body = Body::from_frames(vec![
            Frame::data(Bytes::from_static(b"hello")),
            Frame::data(Bytes::from(vec![b'x'; COPY_DATA + 1])),
            Frame::trailers(t),
        ]);
        let req = http::Request::post("/")
            .header("transfer-encoding", "chunked")
            .body(body)
            .unwrap();
        let (parts, body) = req.into_parts();
        let wire = written(Outgoing::new(&parts, body, Vec::new())).unwrap();
        let mut want =
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec();
        want.extend_from_slice(format!("{:x}\r\n", COPY_DATA + 1).as_bytes());
        want.extend_from_slice(&vec![b'x'; COPY_DATA + 1]);
        want.extend_from_slice(b"\r\n0\r\ngrpc-status: 0\r\n\r\n");
        assert_eq!(wire, want);

        // A known length goes with it; a body that breaks its length is refused.
        let (parts, body) = http::Request::post("/")
            .body(Body::full("abc"))
            .unwrap()
            .into_parts();
        assert_eq!(
            written(Outgoing::new(&parts, body, Vec::new())).unwrap(),
            b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc"
        );
        for declared in ["5", "2"] {
            let (parts, body) = http::Request::post("/")
                .header("content-length", declared)
                .body(Body::full("abc"))
                .unwrap()
                .into_parts();
            assert!(
                matches!(
                    written(Outgoing::new(&parts, body, Vec::new())),
                    Err(H1Error::BodyLength)
                ),
                "content-length {declared}"
            );
        }
    }
}
