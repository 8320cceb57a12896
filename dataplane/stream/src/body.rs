//! The body type every layer above the codecs speaks: a boxed `http_body::Body` of `Bytes`
//! frames (data and trailers). Not `Send`: bodies live on one worker's event loop, so they may
//! hold `Rc` state (a pooled upstream connection waiting for the end of a response).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Any error a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed message body.
pub struct Body(Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError>>>);

impl Body {
    /// No bytes at all.
    pub fn empty() -> Body {
        Body::new(http_body_util::Empty::<Bytes>::new())
    }

    /// One chunk.
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::new(http_body_util::Full::new(bytes.into()))
    }

    /// Fixed frames (data and trailers), e.g. a buffered request replayed for a retry.
    pub fn from_frames(frames: Vec<Frame<Bytes>>) -> Body {
        Body::new(Frames(frames.into()))
    }

    /// Wraps any body whose error converts into [`BoxError`].
    pub fn new<B>(body: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + 'static,
        B::Error: Into<BoxError>,
    {
        Body(Box::pin(http_body_util::BodyExt::map_err(body, Into::into)))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("size_hint", &self.0.size_hint())
            .finish()
    }
}

struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn full_and_empty_collect() {
        let b = Body::full("abc").collect().await.unwrap().to_bytes();
        assert_eq!(&b[..], b"abc");
        let e = Body::empty();
        assert!(http_body::Body::is_end_stream(&e));
        assert_eq!(e.collect().await.unwrap().to_bytes().len(), 0);
    }

    #[tokio::test]
    async fn frames_keep_data_and_trailers() {
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        let b = Body::from_frames(vec![
            Frame::data(Bytes::from_static(b"x")),
            Frame::trailers(t),
        ]);
        let c = b.collect().await.unwrap();
        assert_eq!(c.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(&c.to_bytes()[..], b"x");
    }
}
