//! Body wrappers of the proxy: counting bytes each way, enforcing the request body limit, and
//! finishing a request (stats, access log) exactly once when its response body ends or is
//! dropped.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use mosn_stream::{Body, BoxError};

use crate::filter::LocalReply;

/// A per-chunk check of the request body (stream filters' body hooks): given the bytes
/// received so far and the chunk's length, a reply stops the request.
pub type BodyHook = Box<dyn FnMut(u64, usize) -> Option<LocalReply>>;

/// Shared between a request's body wrapper and its handler.
#[derive(Default)]
pub struct RequestBodyState {
    /// Body bytes read from downstream so far.
    pub received: Cell<u64>,
    /// Set when the body went over the limit (the handler answers 413).
    pub too_large: Cell<bool>,
    /// Set when reading the body from downstream failed: the downstream is to blame, not the
    /// upstream the body was going to.
    pub failed: Cell<Option<BodyFailure>>,
    /// Installed once the route is known, when a filter inspects bodies.
    pub hook: RefCell<Option<BodyHook>>,
    /// The reply a body hook stopped the request with.
    pub rejected: RefCell<Option<LocalReply>>,
}

impl std::fmt::Debug for RequestBodyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBodyState")
            .field("received", &self.received.get())
            .field("too_large", &self.too_large.get())
            .field("failed", &self.failed.get())
            .field("hook", &self.hook.borrow().is_some())
            .finish()
    }
}

/// How reading a request body from downstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// The bytes broke the protocol (bad chunk framing, an over-long chunk): answered 400.
    Malformed,
    /// The client went away mid-body (closed, reset, cancelled the stream): nobody is left to
    /// answer; logged and counted as 499 ("client closed request", nginx's code) with `DC`.
    Gone,
}

impl BodyFailure {
    /// Classifies a body read error by the I/O error or HTTP/2 reset in its source chain.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> BodyFailure {
        let mut cur = Some(error);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                return match io.kind() {
                    UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
                    | NotConnected | TimedOut => BodyFailure::Gone,
                    _ => BodyFailure::Malformed,
                };
            }
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                    return BodyFailure::Gone;
                }
            }
            if let Some(h2) = e.downcast_ref::<h2::Error>() {
                // The client reset its stream or the connection (CANCEL, a GOAWAY) or the
                // connection broke; a PROTOCOL_ERROR or FLOW_CONTROL_ERROR is malformed input.
                return match h2.reason() {
                    Some(r)
                        if r == h2::Reason::PROTOCOL_ERROR
                            || r == h2::Reason::FLOW_CONTROL_ERROR
                            || r == h2::Reason::FRAME_SIZE_ERROR =>
                    {
                        BodyFailure::Malformed
                    }
                    _ => BodyFailure::Gone,
                };
            }
            cur = e.source();
        }
        BodyFailure::Malformed
    }
}

/// Why a request body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyStopped {
    /// Over the listener's limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// A stream filter refused it.
    #[error("request body refused by a stream filter")]
    Refused,
}

/// A downstream request body on its way upstream: counts bytes and stops with an error past
/// `limit` (so the upstream never sees a truncated body as complete).
pub struct RequestBody {
    inner: Body,
    state: Rc<RequestBodyState>,
    limit: Option<u64>,
}

impl RequestBody {
    /// Wraps `inner`.
    pub fn new(inner: Body, state: Rc<RequestBodyState>, limit: Option<u64>) -> Self {
        RequestBody {
            inner,
            state,
            limit,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &r {
            this.state.failed.set(Some(BodyFailure::of(&**e)));
        }
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                let n = this.state.received.get() + d.len() as u64;
                this.state.received.set(n);
                if let Some(limit) = this.limit.filter(|l| n > *l) {
                    this.state.too_large.set(true);
                    return Poll::Ready(Some(Err(Box::new(BodyStopped::TooLarge(limit)))));
                }
                let verdict = this
                    .state
                    .hook
                    .borrow_mut()
                    .as_mut()
                    .and_then(|hook| hook(n, d.len()));
                if let Some(reply) = verdict {
                    this.state.rejected.replace(Some(reply));
                    return Poll::Ready(Some(Err(Box::new(BodyStopped::Refused))));
                }
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Read to the end.
    Complete,
    /// The upstream side failed mid-body.
    UpstreamError,
    /// Dropped before the end (the downstream went away).
    Dropped,
}

/// A response body on its way downstream: counts bytes and calls `finish` once at the end.
pub struct ResponseBody<F: FnOnce(BodyEnd, u64)> {
    inner: Body,
    sent: u64,
    finish: Option<F>,
}

impl<F: FnOnce(BodyEnd, u64)> ResponseBody<F> {
    /// Wraps `inner`; `finish(end, bytes_sent)` runs exactly once.
    pub fn new(inner: Body, finish: F) -> Self {
        let mut b = ResponseBody {
            inner,
            sent: 0,
            finish: Some(finish),
        };
        if b.inner.is_end_stream() {
            b.end(BodyEnd::Complete);
        }
        b
    }

    fn end(&mut self, how: BodyEnd) {
        if let Some(f) = self.finish.take() {
            f(how, self.sent);
        }
    }
}

impl<F: FnOnce(BodyEnd, u64)> Drop for ResponseBody<F> {
    fn drop(&mut self) {
        self.end(BodyEnd::Dropped);
    }
}

impl<F: FnOnce(BodyEnd, u64) + Unpin> http_body::Body for ResponseBody<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.sent += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.end(BodyEnd::Complete);
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(BodyEnd::UpstreamError),
            Poll::Ready(None) => this.end(BodyEnd::Complete),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.finish.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn request_body_counts_and_stops_past_the_limit() {
        let st = Rc::new(RequestBodyState::default());
        let b = RequestBody::new(Body::full(vec![0u8; 10]), st.clone(), Some(20));
        assert_eq!(b.collect().await.unwrap().to_bytes().len(), 10);
        assert_eq!(st.received.get(), 10);
        let st = Rc::new(RequestBodyState::default());
        let b = RequestBody::new(Body::full(vec![0u8; 30]), st.clone(), Some(20));
        assert!(b.collect().await.is_err());
        assert!(st.too_large.get());
    }

    #[tokio::test]
    async fn request_body_marks_a_downstream_read_error() {
        struct Broken(Option<BoxError>);
        impl http_body::Body for Broken {
            type Data = Bytes;
            type Error = BoxError;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                Poll::Ready(self.0.take().map(Err))
            }
        }
        /// An error whose cause is `source` (as hyper wraps the I/O error of a body read).
        #[derive(Debug)]
        struct Wrapped(std::io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error reading a body from connection")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        use std::io::{Error, ErrorKind};
        let cases: Vec<(BoxError, BodyFailure)> = vec![
            ("invalid chunk size line".into(), BodyFailure::Malformed),
            (
                Box::new(Error::new(
                    ErrorKind::InvalidInput,
                    "invalid chunk size line",
                )),
                BodyFailure::Malformed,
            ),
            (
                Box::new(Wrapped(Error::new(
                    ErrorKind::InvalidData,
                    "chunk too long",
                ))),
                BodyFailure::Malformed,
            ),
            (
                Box::new(Wrapped(Error::new(
                    ErrorKind::UnexpectedEof,
                    "incomplete body",
                ))),
                BodyFailure::Gone,
            ),
            (
                Box::new(Error::from(ErrorKind::ConnectionReset)),
                BodyFailure::Gone,
            ),
            (
                Box::new(h2::Error::from(h2::Reason::CANCEL)),
                BodyFailure::Gone,
            ),
            (
                Box::new(h2::Error::from(h2::Reason::PROTOCOL_ERROR)),
                BodyFailure::Malformed,
            ),
        ];
        for (error, want) in cases {
            let what = error.to_string();
            let st = Rc::new(RequestBodyState::default());
            let b = RequestBody::new(Body::new(Broken(Some(error))), st.clone(), Some(20));
            assert!(b.collect().await.is_err());
            assert_eq!(st.failed.get(), Some(want), "{what}");
            assert!(!st.too_large.get());
        }
        // The limit's own error is not a read error.
        let st = Rc::new(RequestBodyState::default());
        let b = RequestBody::new(Body::full(vec![0u8; 30]), st.clone(), Some(20));
        assert!(b.collect().await.is_err());
        assert_eq!(st.failed.get(), None);
    }

    #[tokio::test]
    async fn body_hook_sees_running_totals_and_can_refuse() {
        use crate::flags::ResponseFlags;
        let st = Rc::new(RequestBodyState::default());
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s2 = seen.clone();
        st.hook.replace(Some(Box::new(move |so_far, len| {
            s2.borrow_mut().push((so_far, len));
            (so_far > 5).then(|| {
                LocalReply::new(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    ResponseFlags::PAYLOAD_TOO_LARGE,
                )
            })
        })));
        let frames = vec![
            http_body::Frame::data(Bytes::from_static(b"abc")),
            http_body::Frame::data(Bytes::from_static(b"defg")),
        ];
        let b = RequestBody::new(Body::from_frames(frames), st.clone(), None);
        assert!(b.collect().await.is_err());
        assert_eq!(*seen.borrow(), vec![(3, 3), (7, 4)]);
        assert_eq!(st.rejected.borrow().as_ref().unwrap().status, 413);
    }

    #[tokio::test]
    async fn response_body_finishes_once_with_bytes() {
        let seen = Rc::new(Cell::new(None));
        let s = seen.clone();
        let b = ResponseBody::new(Body::full("hello"), move |end, n| {
            assert!(s.replace(Some((end, n))).is_none());
        });
        assert_eq!(&b.collect().await.unwrap().to_bytes()[..], b"hello");
        assert_eq!(seen.get(), Some((BodyEnd::Complete, 5)));

        let seen = Rc::new(Cell::new(None));
        let s = seen.clone();
        let b = ResponseBody::new(Body::full("abc"), move |end, n| s.set(Some((end, n))));
        drop(b);
        assert_eq!(seen.get(), Some((BodyEnd::Dropped, 0)));

        let seen = Rc::new(Cell::new(None));
        let s = seen.clone();
        let _b = ResponseBody::new(Body::empty(), move |end, n| s.set(Some((end, n))));
        assert_eq!(seen.get(), Some((BodyEnd::Complete, 0)));
    }
}
