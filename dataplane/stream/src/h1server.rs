//! HTTP/1 server stream connections driven by the connection's own task.
//!
//! hyper's HTTP/1 server boxed every request's service future, armed a timer per request for
//! the head deadline and fed request bodies through a channel. Here one task per connection
//! parses each request head (httparse) into the common message model, runs the handler's
//! future in place (inside the connection's future: no allocation per request), lets the
//! request body read straight from the connection when the handler polls it, and writes the
//! response head and body in as few writes as the body's arrival allows.
//!
//! Request framing follows RFC 9112 §6 strictly, since it decides where the next request on
//! the connection starts: `Transfer-Encoding` other than a single `chunked`, or on HTTP/1.0,
//! invalid or differing `Content-Length` values, obs-fold, bad chunk framing are refused (400)
//! and the connection closes; a request with both framings is read as chunked, its
//! `Content-Length` removed and the connection closed after the answer. Heads over the size
//! or field-count limits get 431. A response's framing is chosen here: its `Content-Length`
//! or exact size, else chunked (trailers only for clients that sent `TE: trailers`), else the
//! connection's end for HTTP/1.0 clients.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::body::BoxError;
use crate::h1client::{
    self, content_length, put_chunk_size, put_field, tokens, Decoder, H1Error, Scratch, Step,
};
use crate::server::{Handler, OnUpgrade, ServeError, ServerLimits, Upgraded};
use crate::Body;

/// Response data up to this size is copied next to its head or framing (one write); larger
/// goes as its own slice of a vectored write.
const COPY_DATA: usize = 8 * 1024;
/// Response bytes queued before the body is polled for more.
const WRITE_HIGH: usize = 64 * 1024;
/// Most unread request-body bytes read and dropped after an answer to keep the connection.
const DRAIN_BODY: u64 = 64 * 1024;
/// Most response-body bytes polled and dropped for an answer without a body (HEAD, 304).
const DISCARD_BODY: usize = 64 * 1024;
/// After refusing a request, how long the connection still reads (and drops) what the client
/// sends, so that closing with unread bytes does not reset the connection before the client
/// has read the answer.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes read while lingering.
const LINGER_BYTES: usize = 256 * 1024;
/// Header slots parsed into on the stack; a larger configured limit uses the heap.
const INLINE_FIELDS: usize = 100;
/// The smallest head size limit (hyper's floor, kept for the configs written against it).
const MIN_HEAD: usize = 8 * 1024;

/// The connection and what was read from it, shared by the connection's loop and the body
/// of its current request (never borrowed across an await).
struct Conn<C> {
    io: C,
    buf: BytesMut,
    /// The current request body's framing: `Done` when it has none or all of it was read.
    body: Decoder,
    /// Which request `body` belongs to: a body object that outlives its request reads nothing.
    seq: u64,
    /// `100 Continue` is owed before the body is read: bytes of it written so far.
    continue_at: Option<usize>,
    /// The read side ended (EOF or an error).
    read_closed: bool,
    /// The request body broke its framing: the connection carries no further request.
    broken: bool,
    /// What parsing a request head reuses.
    scratch: Scratch,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Conn<C> {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        h1client::poll_fill(&mut self.io, &mut self.buf, cx)
    }

    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
        while let Some(at) = self.continue_at {
            if at == CONTINUE.len() {
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                self.continue_at = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_at = Some(at + n);
        }
        Poll::Ready(Ok(()))
    }
}

/// A request body that broke its framing.
#[derive(Debug, thiserror::Error)]
#[error("malformed request body: {0}")]
struct MalformedBody(&'static str);

/// The body of one request, read from the connection as it is polled.
struct RequestBody<C> {
    conn: Rc<RefCell<Conn<C>>>,
    seq: u64,
}

impl<C: AsyncRead + AsyncWrite + Unpin> http_body::Body for RequestBody<C> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut c = self.conn.borrow_mut();
        let c = &mut *c;
        if c.seq != self.seq {
            return Poll::Ready(Some(Err(
                "request body read after its exchange ended".into()
            )));
        }
        if c.continue_at.is_some() {
            if let Err(e) = ready!(c.poll_continue(cx)) {
                c.read_closed = true;
                return Poll::Ready(Some(Err(e.into())));
            }
        }
        loop {
            match c.body.step(&mut c.buf) {
                Ok(Step::Frame(f)) => return Poll::Ready(Some(Ok(f))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::More) => {}
                Err(e) => {
                    c.broken = true;
                    let why = match e {
                        H1Error::Malformed(why) => why,
                        _ => "invalid framing",
                    };
                    return Poll::Ready(Some(Err(MalformedBody(why).into())));
                }
            }
            if c.read_closed {
                return Poll::Ready(Some(Err(gone().into())));
            }
            match ready!(c.poll_fill(cx)) {
                Ok(0) => {
                    c.read_closed = true;
                    return Poll::Ready(Some(Err(gone().into())));
                }
                Ok(_) => {}
                Err(e) => {
                    c.read_closed = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn
            .try_borrow()
            .is_ok_and(|c| c.seq == self.seq && c.body.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        self.conn
            .try_borrow()
            .ok()
            .filter(|c| c.seq == self.seq)
            .map_or_else(SizeHint::default, |c| c.body.size_hint())
    }
}

/// The client closed its side inside a request body.
fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "client closed the connection inside a request body",
    )
}

/// A request head and what it says about its body and the connection.
struct Head {
    parts: http::request::Parts,
    body: Decoder,
    /// The client keeps the connection after this exchange.
    keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    expect_continue: bool,
    /// The request may switch protocols (`Upgrade`, `CONNECT`).
    upgrade: bool,
    /// The client takes trailers in a chunked response (`TE: trailers`).
    trailers: bool,
}

/// Why a request was refused before any handler saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
}

const fn bad(reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        reason,
    }
}

const fn too_large(reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        reason,
    }
}

/// Parses the request head at the start of `buf` (taking its bytes); `Ok(None)`: more bytes
/// are needed.
fn parse_request(
    buf: &mut BytesMut,
    limits: &ServerLimits,
    scratch: &mut Scratch,
) -> Result<Option<Head>, Refusal> {
    let max_head = limits.max_header_bytes.max(MIN_HEAD);
    let max_fields = limits.max_headers.max(1);
    // Slots the parser fills, left uninitialised (zeroing them costs more than a parse).
    let mut inline = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; INLINE_FIELDS];
    let mut heap = Vec::new();
    let slots = if max_fields <= INLINE_FIELDS {
        &mut inline[..max_fields]
    } else {
        heap.resize_with(max_fields, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_head {
                return Err(too_large("request head too large"));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(too_large("too many header fields")),
        Err(_) => return Err(bad("malformed request head")),
    };
    if len > max_head {
        return Err(too_large("request head too large"));
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| bad("invalid method"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(bad("unsupported HTTP version")),
    };
    // Where the target and each field sit in the head, so that they can share the head's
    // bytes once it is split off.
    let path = req.path.unwrap_or_default();
    let target = path.as_ptr() as usize - buf.as_ptr() as usize;
    let target = target..target + path.len();
    let count = req.headers.len();
    scratch.locate(buf, req.headers);
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target)).map_err(|_| bad("invalid target"))?;
    let (mut headers, notes) = scratch.fields(&head, count).map_err(bad)?;

    let mut close_after = false;
    let body = if notes.te {
        if version == Version::HTTP_10 {
            return Err(bad("transfer-encoding in an HTTP/1.0 request"));
        }
        // Exactly one `chunked`: the only coding this proxy decodes (another one would reach
        // the upstream undeclared once the hop-by-hop field is gone).
        if notes.codings != 1 || !notes.chunked_last {
            return Err(bad("unsupported transfer-encoding"));
        }
        // Both framings: chunked wins, the length goes, and the connection ends after the
        // answer (RFC 9112 §6.3), so that nothing after this body is read as a request.
        if notes.length.is_some() || notes.bad_length {
            headers.remove(header::CONTENT_LENGTH);
            close_after = true;
        }
        Decoder::chunked()
    } else if notes.bad_length {
        return Err(bad("invalid content-length"));
    } else {
        match notes.length {
            Some(n) if n > 0 => Decoder::Length(n),
            _ => Decoder::Done,
        }
    };
    let keep_alive = !close_after && notes.keeps_alive(version);
    let expect_continue = version == Version::HTTP_11 && !body.is_done() && notes.expect_continue;
    let upgrade = method == Method::CONNECT || notes.upgrade;
    let trailers = notes.te_trailers;
    let mut r = Request::new(());
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    *r.version_mut() = version;
    *r.headers_mut() = headers;
    Ok(Some(Head {
        parts: r.into_parts().0,
        body,
        keep_alive,
        expect_continue,
        upgrade,
        trailers,
    }))
}

/// What the response's encoding needs to know of its request.
#[derive(Debug, Clone, Copy)]
struct Asked {
    head: bool,
    connect: bool,
    version: Version,
    trailers: bool,
}

/// How a response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304, a CONNECT's 2xx).
    None,
    /// This many bytes left (`Content-Length`).
    Length(u64),
    /// Chunked; `trailers`: the client takes them.
    Chunked { trailers: bool },
    /// Until the connection closes (an HTTP/1.0 client, no length known).
    Close,
}

/// Encodes the response head into `out` and picks its body's framing. `keep_alive` says
/// whether the connection may stay; it turns false when the response ends it.
fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    hint: &SizeHint,
    asked: Asked,
    keep_alive: &mut bool,
) -> Framing {
    let status = parts.status;
    let h = &parts.headers;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    // One pass: the fields go out, except those about framing and the connection, which are
    // noted and written by the rules below.
    let mut declared = None;
    let mut dated = false;
    for (name, value) in h {
        if *name == header::CONTENT_LENGTH {
            declared = declared.or(content_length(value.as_bytes()));
            continue;
        }
        if *name == header::CONNECTION && !switching {
            if tokens(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close")) {
                *keep_alive = false;
            }
            continue;
        }
        if *name == header::TRANSFER_ENCODING {
            continue;
        }
        dated |= *name == header::DATE;
        put_field(out, name.as_str(), value.as_bytes());
    }
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || (asked.connect && status.is_success());
    let framing = if asked.head || bodiless_status || status == StatusCode::NOT_MODIFIED {
        Framing::None
    } else if let Some(n) = declared.or(hint.exact()) {
        Framing::Length(n)
    } else if asked.version == Version::HTTP_11 {
        Framing::Chunked {
            trailers: asked.trailers,
        }
    } else {
        *keep_alive = false;
        Framing::Close
    };
    match framing {
        Framing::Length(n) => {
            put_field(
                out,
                "content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
        }
        Framing::Chunked { .. } => put_field(out, "transfer-encoding", b"chunked"),
        // HEAD and 304 say what the body would have been.
        Framing::None if !bodiless_status => {
            if let Some(n) = declared {
                put_field(
                    out,
                    "content-length",
                    itoa::Buffer::new().format(n).as_bytes(),
                );
            }
        }
        Framing::None | Framing::Close => {}
    }
    if !dated {
        put_date(out);
    }
    if !switching {
        if !*keep_alive {
            put_field(out, "connection", b"close");
        } else if asked.version == Version::HTTP_10 {
            put_field(out, "connection", b"keep-alive");
        }
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// A `date` field for responses without one (RFC 9110 §6.6.1), formatted once a second.
fn put_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs || text.is_empty() {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        put_field(out, "date", text.as_bytes());
    });
}

/// Response bytes on their way out: small pieces copied together, large data by reference.
#[derive(Default)]
struct Out {
    own: Vec<u8>,
    /// What to write, in order: spans of `own` and large data.
    segs: Vec<Seg>,
    /// Bytes of `own` before this are in `segs`.
    sealed: usize,
    /// The first segment not written in full, and how much of it was.
    at: usize,
    off: usize,
    /// Bytes in large data segments.
    big: usize,
}

enum Seg {
    Own(usize, usize),
    Data(Bytes),
}

impl Out {
    fn queued(&self) -> usize {
        self.own.len() + self.big
    }

    fn is_empty(&self) -> bool {
        self.own.is_empty() && self.segs.is_empty()
    }

    fn put_data(&mut self, data: Bytes) {
        if data.len() <= COPY_DATA {
            self.own.extend_from_slice(&data);
        } else {
            self.seal();
            self.big += data.len();
            self.segs.push(Seg::Data(data));
        }
    }

    fn seal(&mut self) {
        if self.own.len() > self.sealed {
            self.segs.push(Seg::Own(self.sealed, self.own.len()));
            self.sealed = self.own.len();
        }
    }

    fn bytes<'a>(own: &'a [u8], seg: &'a Seg) -> &'a [u8] {
        match seg {
            Seg::Own(a, b) => &own[*a..*b],
            Seg::Data(d) => d,
        }
    }

    /// Writes everything queued.
    fn poll_write<C: AsyncWrite + Unpin>(
        &mut self,
        io: &mut C,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.seal();
        while self.at < self.segs.len() {
            let rest = &self.segs[self.at..];
            let first = &Self::bytes(&self.own, &rest[0])[self.off..];
            let n = if rest.len() > 1 && io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); 16];
                slices[0] = IoSlice::new(first);
                let mut k = 1;
                for seg in rest[1..].iter().take(slices.len() - 1) {
                    slices[k] = IoSlice::new(Self::bytes(&self.own, seg));
                    k += 1;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k]))?
            } else {
                ready!(Pin::new(&mut *io).poll_write(cx, first))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
        self.own.clear();
        self.segs.clear();
        self.sealed = 0;
        self.at = 0;
        self.off = 0;
        self.big = 0;
        Poll::Ready(Ok(()))
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let len = Self::bytes(&self.own, &self.segs[self.at]).len() - self.off;
            if n < len {
                self.off += n;
                return;
            }
            n -= len;
            self.at += 1;
            self.off = 0;
        }
    }

    /// Lets go of a buffer a large response left grown.
    fn shrink(&mut self) {
        if self.own.capacity() > 4 * WRITE_HIGH {
            self.own = Vec::new();
        }
    }
}

/// Ends the body's framing; false when the body fell short of its declared length.
fn end_body(out: &mut Vec<u8>, framing: Framing, trailers: Option<HeaderMap>) -> bool {
    match framing {
        Framing::Length(left) => left == 0,
        Framing::Chunked { trailers: send } => {
            out.extend_from_slice(b"0\r\n");
            if let (true, Some(t)) = (send, trailers) {
                for (name, value) in &t {
                    put_field(out, name.as_str(), value.as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
            true
        }
        Framing::None | Framing::Close => true,
    }
}

/// Writes a response body after its head (queued in `out`). `Ok(true)`: the response went
/// out whole; `Ok(false)`: the body failed or broke its length, and the client must see the
/// connection end.
async fn send_body<C: AsyncRead + AsyncWrite + Unpin>(
    conn: &RefCell<Conn<C>>,
    out: &mut Out,
    mut body: Body,
    mut framing: Framing,
) -> io::Result<bool> {
    let mut done: Option<bool> = None;
    let mut discarded = 0usize;
    poll_fn(|cx| loop {
        if let Some(whole) = done {
            let mut c = conn.borrow_mut();
            ready!(out.poll_write(&mut c.io, cx))?;
            ready!(Pin::new(&mut c.io).poll_flush(cx))?;
            return Poll::Ready(Ok(whole));
        }
        if out.queued() >= WRITE_HIGH {
            ready!(out.poll_write(&mut conn.borrow_mut().io, cx))?;
        }
        match Pin::new(&mut body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    match &mut framing {
                        Framing::None => {
                            discarded += data.len();
                            if discarded > DISCARD_BODY {
                                done = Some(true);
                                continue;
                            }
                        }
                        Framing::Length(left) => {
                            let fits = usize::try_from(*left).unwrap_or(usize::MAX);
                            if data.len() > fits {
                                // More than it said: what fits goes, then the connection ends.
                                data.truncate(fits);
                                *left = 0;
                                out.put_data(data);
                                done = Some(false);
                                continue;
                            }
                            *left -= data.len() as u64;
                            out.put_data(data);
                        }
                        Framing::Chunked { .. } => {
                            if !data.is_empty() {
                                put_chunk_size(&mut out.own, data.len());
                                out.put_data(data);
                                out.own.extend_from_slice(b"\r\n");
                            }
                        }
                        Framing::Close => out.put_data(data),
                    }
                    if body.is_end_stream() {
                        done = Some(end_body(&mut out.own, framing, None));
                    }
                }
                Err(frame) => {
                    done = Some(end_body(&mut out.own, framing, frame.into_trailers().ok()));
                }
            },
            Poll::Ready(None) => done = Some(end_body(&mut out.own, framing, None)),
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "response body failed; ending the connection");
                done = Some(false);
            }
            Poll::Pending => {
                // Out with what is here while the rest is on its way.
                if !out.is_empty() {
                    let mut c = conn.borrow_mut();
                    if out.poll_write(&mut c.io, cx)?.is_ready() {
                        let _ = Pin::new(&mut c.io).poll_flush(cx)?;
                    }
                }
                return Poll::Pending;
            }
        }
    })
    .await
}

/// Whether the connection was told to drain since `w` was made (or its sender is gone).
fn draining(w: &watch::Receiver<bool>) -> bool {
    match w.has_changed() {
        Ok(false) => false,
        Ok(true) => *w.borrow(),
        Err(_) => true,
    }
}

/// Serves HTTP/1 requests on `io` until the client closes, a head is late (the limits' idle
/// timeout) or `drain` turns true (an idle connection closes at once, one with a request in
/// flight after its answer).
pub(crate) async fn serve<C, H>(
    io: C,
    limits: &ServerLimits,
    handler: Rc<H>,
    drain: watch::Receiver<bool>,
) -> Result<(), ServeError>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    if *drain.borrow() {
        return Ok(());
    }
    let watcher = drain.clone();
    let mut drained = pin!(async move {
        let mut d = drain;
        while !*d.borrow_and_update() {
            if d.changed().await.is_err() {
                return;
            }
        }
    });
    let conn = Rc::new(RefCell::new(Conn {
        io,
        buf: BytesMut::new(),
        body: Decoder::Done,
        seq: 0,
        continue_at: None,
        read_closed: false,
        broken: false,
        scratch: Scratch::default(),
    }));
    let mut out = Out::default();
    let idle = limits.idle_timeout;
    let max_head = limits.max_header_bytes.max(MIN_HEAD);
    // One timer for the connection, moved on lazily: it fires at most once per idle period,
    // and a head that was awaited less than `idle` moves it on instead of closing.
    let mut timer = pin!(tokio::time::sleep(idle));
    let mut seq = 0u64;
    loop {
        let mut since: Option<Instant> = None;
        let next = poll_fn(|cx| {
            {
                let mut c = conn.borrow_mut();
                loop {
                    if !c.buf.is_empty() {
                        let c = &mut *c;
                        if let Some(head) = parse_request(&mut c.buf, limits, &mut c.scratch)? {
                            return Poll::Ready(Ok(Some(head)));
                        }
                    }
                    if c.read_closed {
                        return Poll::Ready(Ok(None));
                    }
                    match c.poll_fill(cx) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            c.read_closed = true;
                            return Poll::Ready(Ok(None));
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Pending => break,
                    }
                }
            }
            if drained.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(None));
            }
            let since = *since.get_or_insert_with(Instant::now);
            while timer.as_mut().poll(cx).is_ready() {
                let deadline = since + idle;
                if Instant::now() >= deadline {
                    return Poll::Ready(Ok(None));
                }
                timer.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await;
        let head = match next {
            Ok(Some(head)) => head,
            Ok(None) => {
                finish(&conn, &mut out, false).await;
                return Ok(());
            }
            Err(refusal) => {
                refuse(&conn, &mut out, refusal).await;
                return Err(ServeError::Refused {
                    status: refusal.status,
                    reason: refusal.reason,
                });
            }
        };

        seq += 1;
        let Head {
            mut parts,
            body,
            keep_alive,
            expect_continue,
            upgrade,
            trailers,
        } = head;
        let asked = Asked {
            head: parts.method == Method::HEAD,
            connect: parts.method == Method::CONNECT,
            version: parts.version,
            trailers,
        };
        let has_body = !body.is_done();
        {
            let mut c = conn.borrow_mut();
            c.body = body;
            c.seq = seq;
            c.continue_at = (expect_continue && has_body).then_some(0);
        }
        let switch = upgrade.then(|| {
            let (tx, rx) = oneshot::channel();
            parts.extensions.insert(OnUpgrade::http1(rx));
            tx
        });
        let body = if has_body {
            Body::new(RequestBody {
                conn: conn.clone(),
                seq,
            })
        } else {
            Body::empty()
        };
        let mut call = pin!(handler.clone().handle(Request::from_parts(parts, body)));
        let answer = poll_fn(|cx| {
            if let Poll::Ready(resp) = call.as_mut().poll(cx) {
                return Poll::Ready(Some(resp));
            }
            // With the request read in full, a read finds the client gone (or its next,
            // pipelined request, kept for later).
            let mut c = conn.borrow_mut();
            while c.body.is_done() && !c.read_closed && c.buf.len() < max_head {
                match c.poll_fill(cx) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        c.read_closed = true;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            Poll::Pending
        })
        .await;
        // The client left: the handler's work is dropped with its future.
        let Some(resp) = answer else { return Ok(()) };

        let (rparts, rbody) = resp.into_parts();
        let mut keep = keep_alive && !draining(&watcher);
        let framing = encode_head(&mut out.own, &rparts, &rbody.size_hint(), asked, &mut keep);
        let status = rparts.status;
        // The response's map, encoded, takes the next request's fields.
        conn.borrow_mut().scratch.recycle(rparts.headers);
        if let Some(tx) = switch {
            let switched = if asked.connect {
                status.is_success()
            } else {
                status == StatusCode::SWITCHING_PROTOCOLS
            };
            if switched {
                drop(rbody);
                poll_fn(|cx| {
                    let mut c = conn.borrow_mut();
                    ready!(out.poll_write(&mut c.io, cx))?;
                    Pin::new(&mut c.io).poll_flush(cx)
                })
                .await?;
                // A body object still holding the connection (none for these requests)
                // keeps it from switching.
                if let Ok(c) = Rc::try_unwrap(conn) {
                    let c = c.into_inner();
                    let _ = tx.send(Upgraded::new(c.io, c.buf.freeze()));
                }
                return Ok(());
            }
        }
        let whole = send_body(&conn, &mut out, rbody, framing).await?;
        if !whole || !keep || !finish_request_body(&conn, seq, idle).await {
            finish(&conn, &mut out, !whole).await;
            return Ok(());
        }
        out.shrink();
    }
}

/// Reads what is left of the request body once its answer went out (a handler that answered
/// without reading it all): true when the connection can take the next request.
async fn finish_request_body<C: AsyncRead + AsyncWrite + Unpin>(
    conn: &RefCell<Conn<C>>,
    seq: u64,
    idle: Duration,
) -> bool {
    {
        let c = conn.borrow();
        if c.body.is_done() {
            return true;
        }
        // Broken framing, a client gone, or one still waiting for `100 Continue` (it may
        // never send the body): the connection ends.
        if c.broken || c.read_closed || c.seq != seq || c.continue_at == Some(0) {
            return false;
        }
    }
    let mut left = DRAIN_BODY;
    let drain = poll_fn(|cx| {
        let mut c = conn.borrow_mut();
        let c = &mut *c;
        loop {
            match c.body.step(&mut c.buf) {
                Ok(Step::End) => return Poll::Ready(true),
                Ok(Step::Frame(f)) => {
                    let n = f.data_ref().map_or(0, |d| d.len() as u64);
                    if n > left {
                        return Poll::Ready(false);
                    }
                    left -= n;
                    continue;
                }
                Ok(Step::More) => {}
                Err(_) => return Poll::Ready(false),
            }
            match ready!(c.poll_fill(cx)) {
                Ok(n) if n > 0 => {}
                _ => return Poll::Ready(false),
            }
        }
    });
    tokio::time::timeout(idle, drain).await.unwrap_or(false)
}

/// Answers a refused request and closes.
async fn refuse<C: AsyncRead + AsyncWrite + Unpin>(
    conn: &RefCell<Conn<C>>,
    out: &mut Out,
    refusal: Refusal,
) {
    let mut resp = http::Response::new(());
    *resp.status_mut() = refusal.status;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    let (parts, ()) = resp.into_parts();
    let asked = Asked {
        head: false,
        connect: false,
        version: Version::HTTP_11,
        trailers: false,
    };
    out.own.clear();
    encode_head(
        &mut out.own,
        &parts,
        &SizeHint::with_exact(0),
        asked,
        &mut false,
    );
    finish(conn, out, true).await;
}

/// Writes what is queued, ends the write side and, with `linger`, reads and drops what the
/// client still sends for a moment (closing with unread bytes would reset the connection,
/// which can destroy the answer before the client has read it).
async fn finish<C: AsyncRead + AsyncWrite + Unpin>(
    conn: &RefCell<Conn<C>>,
    out: &mut Out,
    linger: bool,
) {
    let _ = poll_fn(|cx| {
        let mut c = conn.borrow_mut();
        ready!(out.poll_write(&mut c.io, cx))?;
        ready!(Pin::new(&mut c.io).poll_flush(cx))?;
        Pin::new(&mut c.io).poll_shutdown(cx)
    })
    .await;
    if !linger {
        return;
    }
    let mut read = 0usize;
    let drop_input = poll_fn(|cx| {
        let mut c = conn.borrow_mut();
        loop {
            c.buf.clear();
            match ready!(c.poll_fill(cx)) {
                Ok(n) if n > 0 && read + n < LINGER_BYTES => read += n,
                _ => return Poll::Ready(()),
            }
        }
    });
    let _ = tokio::time::timeout(LINGER, drop_input).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    fn parse(raw: &[u8]) -> Result<Option<Head>, Refusal> {
        let mut buf = BytesMut::from(raw);
        parse_request(&mut buf, &ServerLimits::default(), &mut Scratch::default())
    }

    #[test]
    fn heads_and_their_framing() {
        let h = parse(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.parts.method, Method::GET);
        assert_eq!(h.parts.uri, "/a?b=1");
        assert_eq!(h.parts.headers["x-a"], "1");
        assert!(h.keep_alive && h.body.is_done() && !h.upgrade);

        let h = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Decoder::Length(5));
        assert!(h.expect_continue);

        // Both framings: chunked, the length removed, the connection closed after.
        let h =
            parse(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(h.body, Decoder::chunked());
        assert!(!h.parts.headers.contains_key("content-length"));
        assert!(!h.keep_alive);

        let h = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse(b"GET / HTTP/1.1\r\nConnection: close\r\nTE: trailers\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive && h.trailers);
        let h = parse(b"CONNECT a.example:443 HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.upgrade);
        assert_eq!(h.parts.uri.authority().unwrap(), "a.example:443");
        // Bare LF line ends are accepted.
        let h = parse(b"GET /lf HTTP/1.1\nHost: x\n\n").unwrap().unwrap();
        assert_eq!(h.parts.headers["host"], "x");
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn refusals() {
        for (raw, status) in [
            (&b"GET / HTTP/1.1\r\nNo colon\r\n\r\n"[..], 400),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ] {
            let r = parse(raw).err().map(|r| r.status.as_u16());
            assert_eq!(r, Some(status), "{:?}", String::from_utf8_lossy(raw));
        }
        let limits = ServerLimits {
            max_headers: 3,
            ..ServerLimits::default()
        };
        let mut buf =
            BytesMut::from(&b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"[..]);
        assert_eq!(
            parse_request(&mut buf, &limits, &mut Scratch::default())
                .err()
                .map(|r| r.status),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(
            parse(big.as_bytes()).err().map(|r| r.status),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    fn head_of(
        status: u16,
        headers: &[(&str, &str)],
        hint: SizeHint,
        asked: Asked,
    ) -> (String, Framing, bool) {
        let mut r = http::Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let (parts, ()) = r.into_parts();
        let mut out = Vec::new();
        let mut keep = true;
        let f = encode_head(&mut out, &parts, &hint, asked, &mut keep);
        (String::from_utf8(out).unwrap(), f, keep)
    }

    const GET11: Asked = Asked {
        head: false,
        connect: false,
        version: Version::HTTP_11,
        trailers: false,
    };

    #[test]
    fn response_framing() {
        let (text, f, keep) = head_of(200, &[("date", "x")], SizeHint::with_exact(5), GET11);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!((f, keep), (Framing::Length(5), true));
        // Unknown length: chunked for 1.1, the connection's end for 1.0.
        let (text, f, _) = head_of(200, &[("date", "x")], SizeHint::default(), GET11);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert_eq!(f, Framing::Chunked { trailers: false });
        let ten = Asked {
            version: Version::HTTP_10,
            ..GET11
        };
        let (text, f, keep) = head_of(200, &[("date", "x")], SizeHint::default(), ten);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ndate: x\r\nconnection: close\r\n\r\n"
        );
        assert_eq!((f, keep), (Framing::Close, false));
        let (text, _, keep) = head_of(200, &[("date", "x")], SizeHint::with_exact(0), ten);
        assert!(
            text.ends_with("connection: keep-alive\r\n\r\n") && keep,
            "{text}"
        );
        // A declared length wins; the handler's framing and connection fields are replaced.
        let (text, f, keep) = head_of(
            200,
            &[
                ("content-length", "7"),
                ("transfer-encoding", "chunked"),
                ("connection", "close"),
                ("date", "x"),
            ],
            SizeHint::default(),
            GET11,
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 7\r\nconnection: close\r\n\r\n"
        );
        assert_eq!((f, keep), (Framing::Length(7), false));
        // HEAD and 304 keep the length they would have had; 204 and 1xx carry none.
        let head = Asked {
            head: true,
            ..GET11
        };
        let (text, f, _) = head_of(
            200,
            &[("content-length", "10"), ("date", "x")],
            SizeHint::default(),
            head,
        );
        assert!(text.contains("content-length: 10\r\n"));
        assert_eq!(f, Framing::None);
        let (text, f, _) = head_of(
            204,
            &[("content-length", "0"), ("date", "x")],
            SizeHint::with_exact(0),
            GET11,
        );
        assert_eq!(text, "HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n");
        assert_eq!(f, Framing::None);
        // A switch keeps its connection field; no date supplied gets one.
        let (text, f, _) = head_of(
            101,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            SizeHint::default(),
            GET11,
        );
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\ndate: "), "{text}");
        assert_eq!(f, Framing::None);
    }

    /// Connection-level behaviour over real sockets, against a scripted handler.
    mod conn {
        use super::super::*;
        use http::Response;
        use http_body_util::BodyExt;
        use std::cell::Cell;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};

        type Reply = Pin<Box<dyn Future<Output = Response<Body>>>>;

        /// Answers with what `f` makes of each request; counts requests and dropped calls.
        struct Script {
            f: Box<dyn Fn(Request<Body>) -> Reply>,
            dropped: Rc<Cell<usize>>,
        }

        struct DropCount(Rc<Cell<usize>>, bool);
        impl DropCount {
            fn disarm(&mut self) {
                self.1 = true;
            }
        }
        impl Drop for DropCount {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.set(self.0.get() + 1);
                }
            }
        }

        impl Handler for Script {
            fn handle(
                self: Rc<Self>,
                req: Request<Body>,
            ) -> impl Future<Output = Response<Body>> + 'static {
                let mut guard = DropCount(self.dropped.clone(), false);
                let fut = (self.f)(req);
                async move {
                    let r = fut.await;
                    guard.disarm();
                    r
                }
            }
        }

        fn reply(f: impl Fn(Request<Body>) -> Reply + 'static) -> Rc<Script> {
            Rc::new(Script {
                f: Box::new(f),
                dropped: Rc::new(Cell::new(0)),
            })
        }

        /// Echoes the request body back, with the request line in `x-target`.
        fn echo() -> Rc<Script> {
            reply(|req| {
                Box::pin(async move {
                    let target = req.uri().to_string();
                    let body = req.into_body().collect().await.map(|c| c.to_bytes());
                    let (status, body) = match body {
                        Ok(b) => (200, b),
                        Err(e) => (400, Bytes::from(e.to_string())),
                    };
                    let mut r = Response::new(Body::full(body));
                    *r.status_mut() = StatusCode::from_u16(status).unwrap();
                    r.headers_mut()
                        .insert("x-target", HeaderValue::from_str(&target).unwrap());
                    r
                })
            })
        }

        /// Serves one connection with `h` and `limits`; returns the client side and the
        /// drain switch.
        async fn start(
            h: Rc<Script>,
            limits: ServerLimits,
        ) -> (
            TcpStream,
            watch::Sender<bool>,
            tokio::task::JoinHandle<Result<(), ServeError>>,
        ) {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (server, _) = l.accept().await.unwrap();
            let (tx, rx) = watch::channel(false);
            let task = tokio::task::spawn_local(async move { serve(server, &limits, h, rx).await });
            (client, tx, task)
        }

        /// Reads until `n` responses' worth of `\r\n\r\n`-ended heads with their
        /// content-length bodies arrived, or the connection ends; returns the text.
        async fn read_responses(c: &mut TcpStream, n: usize) -> String {
            let mut got = Vec::new();
            let complete = |got: &[u8]| {
                let mut at = 0;
                for _ in 0..n {
                    let Some(end) = got[at..].windows(4).position(|w| w == b"\r\n\r\n") else {
                        return false;
                    };
                    let head = String::from_utf8_lossy(&got[at..at + end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    at += end + 4 + len;
                    if got.len() < at {
                        return false;
                    }
                }
                true
            };
            let mut b = [0u8; 4096];
            while !complete(&got) {
                match tokio::time::timeout(Duration::from_secs(5), c.read(&mut b)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => got.extend_from_slice(&b[..k]),
                    Err(_) => panic!("no response: {:?}", String::from_utf8_lossy(&got)),
                }
            }
            String::from_utf8(got).unwrap()
        }

        /// True when the server closes the connection within `t` (reading what comes).
        async fn closes_within(c: &mut TcpStream, t: Duration) -> bool {
            let mut b = [0u8; 1024];
            let end = tokio::time::Instant::now() + t;
            loop {
                match tokio::time::timeout_at(end, c.read(&mut b)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => {}
                    Err(_) => return false,
                }
            }
        }

        fn local<F: Future>(f: F) -> F::Output {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio::task::LocalSet::new().block_on(&rt, f)
        }

        #[test]
        fn keep_alive_pipelining_and_bodies() {
            local(async {
                let (mut c, _tx, _task) = start(echo(), ServerLimits::default()).await;
                // Three requests in one write: a GET, a Content-Length body, a chunked body
                // with an extension and trailers.
                c.write_all(
                    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
                      POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                      POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                      3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n",
                )
                .await
                .unwrap();
                let text = read_responses(&mut c, 3).await;
                let parts: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
                assert_eq!(parts.len(), 3, "{text}");
                assert!(parts[0].contains("x-target: /a\r\n"), "{text}");
                assert!(parts[0].contains("content-length: 0\r\n"), "{text}");
                assert!(parts[1].contains("x-target: /b\r\n") && parts[1].ends_with("hello"));
                assert!(parts[2].contains("x-target: /c\r\n") && parts[2].ends_with("abcde"));
                assert!(parts
                    .iter()
                    .all(|p| p.starts_with("200 OK\r\n") && p.contains("date: ")));
                assert!(!closes_within(&mut c, Duration::from_millis(100)).await);
            })
        }

        #[test]
        fn expect_continue_is_sent_only_when_the_body_is_read() {
            local(async {
                // Refused without reading: no 100, a final answer, and the connection ends
                // (the client may never send the body).
                let refuse = reply(|_req| {
                    Box::pin(async {
                        let mut r = Response::new(Body::empty());
                        *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                        r
                    })
                });
                let (mut c, _tx, _task) = start(refuse, ServerLimits::default()).await;
                c.write_all(
                    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
                )
                .await
                .unwrap();
                let text = read_responses(&mut c, 1).await;
                assert!(
                    text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
                    "{text}"
                );
                assert!(
                    text.contains("connection: close\r\n")
                        || closes_within(&mut c, Duration::from_secs(2)).await
                );
                // Read: 100 first, then the body is sent and echoed.
                let (mut c, _tx, _task) = start(echo(), ServerLimits::default()).await;
                c.write_all(
                    b"POST /e HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
                )
                .await
                .unwrap();
                let mut b = [0u8; 64];
                let n = c.read(&mut b).await.unwrap();
                assert_eq!(&b[..n], b"HTTP/1.1 100 Continue\r\n\r\n");
                c.write_all(b"abc").await.unwrap();
                let text = read_responses(&mut c, 1).await;
                assert!(
                    text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("abc"),
                    "{text}"
                );
            })
        }

        #[test]
        fn an_unread_body_is_drained_or_ends_the_connection() {
            local(async {
                let ignore = || {
                    reply(|req| {
                        Box::pin(async move {
                            let mut r = Response::new(Body::full("no"));
                            r.headers_mut().insert(
                                "x-target",
                                HeaderValue::from_str(&req.uri().to_string()).unwrap(),
                            );
                            r
                        })
                    })
                };
                // Small: read and dropped, the next request is served on the connection.
                let (mut c, _tx, _task) = start(ignore(), ServerLimits::default()).await;
                c.write_all(b"POST /1 HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789GET /2 HTTP/1.1\r\n\r\n")
                    .await
                    .unwrap();
                let text = read_responses(&mut c, 2).await;
                assert!(
                    text.contains("x-target: /1\r\n") && text.contains("x-target: /2\r\n"),
                    "{text}"
                );
                // Large: the connection ends after the answer.
                let (mut c, _tx, _task) = start(ignore(), ServerLimits::default()).await;
                let mut req = b"POST /big HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n".to_vec();
                req.extend_from_slice(&[b'x'; 100_000]);
                c.write_all(&req).await.unwrap();
                let text = read_responses(&mut c, 1).await;
                assert!(text.contains("x-target: /big\r\n"), "{text}");
                assert!(closes_within(&mut c, Duration::from_secs(3)).await);
            })
        }

        #[test]
        fn idle_timeout_closes_only_idle_connections() {
            local(async {
                let limits = ServerLimits {
                    idle_timeout: Duration::from_millis(300),
                    ..ServerLimits::default()
                };
                let (mut c, _tx, task) = start(echo(), limits).await;
                // Requests 200 ms apart cross the timer's first deadline: it moves on.
                for i in 0..4 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    c.write_all(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes())
                        .await
                        .unwrap();
                    let text = read_responses(&mut c, 1).await;
                    assert!(
                        text.contains(&format!("x-target: /{i}\r\n")),
                        "request {i}: {text}"
                    );
                }
                let idle_from = tokio::time::Instant::now();
                assert!(closes_within(&mut c, Duration::from_secs(2)).await);
                let idle = idle_from.elapsed();
                assert!(idle >= Duration::from_millis(250), "closed after {idle:?}");
                assert!(task.await.unwrap().is_ok());
            })
        }

        #[test]
        fn drain_closes_idle_connections_and_ends_busy_ones_after_their_answer() {
            local(async {
                let (mut c, tx, task) = start(echo(), ServerLimits::default()).await;
                c.write_all(b"GET /1 HTTP/1.1\r\n\r\n").await.unwrap();
                let text = read_responses(&mut c, 1).await;
                assert!(!text.contains("connection: close"), "{text}");
                tx.send(true).unwrap();
                assert!(closes_within(&mut c, Duration::from_secs(2)).await);
                assert!(task.await.unwrap().is_ok());

                let gate = Rc::new(tokio::sync::Notify::new());
                let g = gate.clone();
                let slow = reply(move |_req| {
                    let g = g.clone();
                    Box::pin(async move {
                        g.notified().await;
                        Response::new(Body::full("late"))
                    })
                });
                let (mut c, tx, _task) = start(slow, ServerLimits::default()).await;
                c.write_all(b"GET /slow HTTP/1.1\r\n\r\n").await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.send(true).unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                gate.notify_one();
                let text = read_responses(&mut c, 1).await;
                assert!(
                    text.ends_with("late") && text.contains("connection: close\r\n"),
                    "{text}"
                );
                assert!(closes_within(&mut c, Duration::from_secs(2)).await);
            })
        }

        #[test]
        fn a_client_gone_while_waiting_drops_the_call() {
            local(async {
                let never = reply(|_req| Box::pin(std::future::pending()));
                let dropped = never.dropped.clone();
                let (mut c, _tx, task) = start(never, ServerLimits::default()).await;
                c.write_all(b"GET /wait HTTP/1.1\r\n\r\n").await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert_eq!(dropped.get(), 0);
                c.shutdown().await.unwrap();
                assert!(tokio::time::timeout(Duration::from_secs(2), task)
                    .await
                    .is_ok());
                assert_eq!(dropped.get(), 1, "the handler's call was not dropped");
            })
        }

        #[test]
        fn response_framing_on_the_wire() {
            local(async {
                // Streamed (no length): chunked to 1.1 with trailers only when asked for,
                // to the connection's end for 1.0; a body that fails midway ends the
                // connection without the last chunk.
                let streamed = reply(|req| {
                    Box::pin(async move {
                        let mut t = HeaderMap::new();
                        t.insert("x-sum", HeaderValue::from_static("42"));
                        let mut frames = vec![
                            Frame::data(Bytes::from_static(b"ab")),
                            Frame::data(Bytes::from(vec![b'z'; 20_000])),
                        ];
                        if req.uri().path() == "/fail" {
                            return Response::new(Body::new(Failing(frames.into())));
                        }
                        frames.push(Frame::trailers(t));
                        Response::new(Body::from_frames(frames))
                    })
                });
                let (mut c, _tx, _task) = start(streamed, ServerLimits::default()).await;
                c.write_all(b"GET /t HTTP/1.1\r\nTE: trailers\r\n\r\n")
                    .await
                    .unwrap();
                let want = format!(
                    "2\r\nab\r\n4e20\r\n{}\r\n0\r\nx-sum: 42\r\n\r\n",
                    "z".repeat(20_000)
                );
                let got = read_until(&mut c, want.as_bytes()).await;
                assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
                c.write_all(b"GET /no-trailers HTTP/1.1\r\n\r\n")
                    .await
                    .unwrap();
                let want = format!("4e20\r\n{}\r\n0\r\n\r\n", "z".repeat(20_000));
                let got = read_until(&mut c, want.as_bytes()).await;
                assert!(!got.contains("x-sum"), "{got}");
                c.write_all(b"GET /fail HTTP/1.1\r\n\r\n").await.unwrap();
                let mut rest = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut rest)).await;
                let rest = String::from_utf8_lossy(&rest);
                assert!(
                    rest.contains("4e20\r\n") && !rest.contains("0\r\n\r\n"),
                    "{rest}"
                );

                let (mut c, _tx, _task) = start(
                    reply(|_req| {
                        Box::pin(async {
                            Response::new(Body::from_frames(vec![Frame::data(Bytes::from_static(
                                b"ten",
                            ))]))
                        })
                    }),
                    ServerLimits::default(),
                )
                .await;
                c.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                    .await
                    .unwrap();
                let mut all = Vec::new();
                tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut all))
                    .await
                    .unwrap()
                    .unwrap();
                let all = String::from_utf8(all).unwrap();
                assert!(
                    all.contains("connection: close\r\n") && all.ends_with("\r\n\r\nten"),
                    "{all}"
                );
            })
        }

        #[test]
        fn a_switch_hands_over_the_connection_with_early_bytes() {
            local(async {
                let switch = reply(|mut req| {
                    Box::pin(async move {
                        let up = req
                            .extensions_mut()
                            .remove::<OnUpgrade>()
                            .expect("switchable");
                        tokio::task::spawn_local(async move {
                            let mut io = up.await.unwrap();
                            let mut b = [0u8; 5];
                            io.read_exact(&mut b).await.unwrap();
                            io.write_all(&b).await.unwrap();
                            io.write_all(b"!").await.unwrap();
                        });
                        let mut r = Response::new(Body::empty());
                        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                        r.headers_mut()
                            .insert("upgrade", HeaderValue::from_static("echo"));
                        r.headers_mut()
                            .insert("connection", HeaderValue::from_static("upgrade"));
                        r
                    })
                });
                let (mut c, _tx, task) = start(switch, ServerLimits::default()).await;
                // "he" arrives with the request, "llo" after the switch.
                c.write_all(b"GET /ws HTTP/1.1\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\nhe")
                    .await
                    .unwrap();
                let head = read_until(&mut c, b"\r\n\r\n").await;
                assert!(
                    head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
                    "{head}"
                );
                assert!(head.contains("connection: upgrade\r\n"), "{head}");
                assert!(task.await.unwrap().is_ok());
                c.write_all(b"llo").await.unwrap();
                let mut b = [0u8; 6];
                c.read_exact(&mut b).await.unwrap();
                assert_eq!(&b, b"hello!");
            })
        }

        #[test]
        fn refused_heads_are_answered_and_reported() {
            local(async {
                let (mut c, _tx, task) = start(echo(), ServerLimits::default()).await;
                c.write_all(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n")
                    .await
                    .unwrap();
                let text = read_responses(&mut c, 1).await;
                assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
                assert!(text.contains("connection: close\r\n"));
                let e = task.await.unwrap().unwrap_err();
                assert_eq!(e.refused_with(), Some(StatusCode::BAD_REQUEST));
                // A head over the limit while the client is still sending it: the 431
                // arrives intact.
                let (mut c, _tx, task) = start(echo(), ServerLimits::default()).await;
                let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(200_000));
                let (mut r, mut w) = c.split();
                let (_, text) = tokio::join!(w.write_all(big.as_bytes()), async {
                    let mut got = Vec::new();
                    let _ = r.read_to_end(&mut got).await;
                    String::from_utf8_lossy(&got).into_owned()
                });
                assert!(
                    text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
                    "{text}"
                );
                assert_eq!(
                    task.await.unwrap().unwrap_err().refused_with(),
                    Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                );
            })
        }

        /// Reads until `want` has arrived at the end of what was read; returns it all.
        async fn read_until(c: &mut TcpStream, want: &[u8]) -> String {
            let mut got = Vec::new();
            let mut b = [0u8; 8192];
            while !got.ends_with(want) {
                match tokio::time::timeout(Duration::from_secs(5), c.read(&mut b)).await {
                    Ok(Ok(k)) if k > 0 => got.extend_from_slice(&b[..k]),
                    _ => panic!(
                        "{:?} did not end with {:?}",
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(want)
                    ),
                }
            }
            String::from_utf8(got).unwrap()
        }

        /// Yields its frames, then fails.
        struct Failing(std::collections::VecDeque<Frame<Bytes>>);

        impl http_body::Body for Failing {
            type Data = Bytes;
            type Error = BoxError;

            fn poll_frame(
                mut self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                Poll::Ready(Some(
                    self.0.pop_front().ok_or_else(|| "upstream broke".into()),
                ))
            }
        }
    }
}
