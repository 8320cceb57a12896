//! A connection's outgoing bytes: frames are encoded straight into one shared buffer and the
//! connection's writer sends whatever piled up in one write (no per-frame allocation, copy
//! or channel hop).

use std::cell::{Cell, RefCell};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify};

use super::Frame;

/// The queue: encoded frames not yet written.
#[derive(Default)]
pub(crate) struct OutQueue {
    buf: RefCell<BytesMut>,
    /// The writer is gone (or going): nothing more is accepted.
    closed: Cell<bool>,
    /// Wakes the writer (a permit is kept when it is not waiting yet).
    ready: Notify,
}

impl OutQueue {
    /// Appends `frame` encoded (`use_raw`: see [`Frame::encode`]); `Ok(false)` when the
    /// queue is closed (nothing appended).
    pub(crate) fn push(&self, frame: &Frame, use_raw: bool) -> Result<bool, mosn_wire::Error> {
        if self.closed.get() {
            return Ok(false);
        }
        let mut buf = self.buf.borrow_mut();
        let was_empty = buf.is_empty();
        let start = buf.len();
        if let Err(e) = frame.encode(use_raw, &mut buf) {
            buf.truncate(start);
            return Err(e);
        }
        drop(buf);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(true)
    }

    /// No more frames: the writer sends what is queued, then shuts the stream down.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        self.ready.notify_one();
    }

    /// Writes queued bytes until the queue is closed and drained, a write fails, or `stop`
    /// changes or loses its sender (then queued bytes are dropped); then shuts `wr` down. Returns whether
    /// it ended on a write error. The queue is closed when this returns.
    pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
        &self,
        wr: &mut W,
        mut stop: Option<watch::Receiver<bool>>,
    ) -> bool {
        let mut failed = false;
        loop {
            if stop.as_ref().is_some_and(|s| *s.borrow()) {
                break;
            }
            let chunk = {
                let mut buf = self.buf.borrow_mut();
                (!buf.is_empty()).then(|| buf.split())
            };
            match chunk {
                Some(chunk) => {
                    if wr.write_all(&chunk).await.is_err() {
                        failed = true;
                        break;
                    }
                    drop(chunk);
                    // The written chunk's storage comes back to the buffer when it is the
                    // only user left (no allocation per write in the steady state).
                    let mut buf = self.buf.borrow_mut();
                    if buf.is_empty() {
                        buf.reserve(8 * 1024);
                    }
                }
                None if self.closed.get() => break,
                None => match stop.as_mut() {
                    Some(s) => {
                        // A stop (or its sender gone: the connection is dropped) ends it.
                        let stopped = tokio::select! {
                            _ = self.ready.notified() => false,
                            _ = s.changed() => true,
                        };
                        if stopped {
                            break;
                        }
                    }
                    None => self.ready.notified().await,
                },
            }
        }
        self.closed.set(true);
        self.buf.borrow_mut().clear();
        let _ = wr.shutdown().await;
        failed
    }
}
