//! Downstream RPC connections: frames are decoded as they arrive, heartbeats are answered
//! here (never routed), every request goes to the [`Handler`] on its own task and its answer
//! is written as soon as it is ready (responses in any order, matched by request id). A
//! malformed frame gets the protocol's codec-error reply and closes this connection only.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use super::{convert, Family, Frame, RpcServerSettings};
use crate::server::Handler;

/// Why a downstream RPC connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The client sent a malformed or oversized frame (answered with a codec error).
    #[error("{0}")]
    Codec(#[from] mosn_wire::Error),
    /// Reading or writing failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves one downstream RPC connection until the client closes it, an error ends it, or
/// `drain` turns true (then: Bolt GoAway when enabled, no new requests read, the ones in
/// flight answered, close). Idle connections close after `idle_timeout`.
pub async fn serve<C, H>(
    io: C,
    family: Family,
    settings: &RpcServerSettings,
    idle_timeout: Duration,
    handler: Rc<H>,
    mut drain: watch::Receiver<bool>,
) -> Result<(), ServeError>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
    H: Handler,
{
    let (mut rd, wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::task::spawn_local(write_loop(wr, rx));
    let max_inflight = settings.max_inflight.max(1);
    let permits = std::sync::Arc::new(Semaphore::new(max_inflight));
    let inflight = Rc::new(InFlight::default());
    let mut buf = BytesMut::with_capacity(4096);
    let mut result = Ok(());
    'read: loop {
        loop {
            match Frame::decode(family, &mut buf, settings.max_frame) {
                Ok(Some(frame)) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break 'read;
                    };
                    dispatch(frame, &tx, &handler, &inflight, permit);
                }
                Ok(None) => break,
                Err(e) => {
                    codec_error_reply(family, &buf, &tx);
                    result = Err(ServeError::Codec(e));
                    break 'read;
                }
            }
        }
        if *drain.borrow() {
            break;
        }
        let read = async {
            if inflight.count.get() == 0 {
                tokio::time::timeout(idle_timeout, rd.read_buf(&mut buf))
                    .await
                    .unwrap_or(Ok(0))
            } else {
                rd.read_buf(&mut buf).await
            }
        };
        tokio::select! {
            r = read => match r {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    result = Err(ServeError::Io(e));
                    break;
                }
            },
            _ = drain.changed() => {
                if family == Family::Bolt && settings.bolt_goaway {
                    let mut out = BytesMut::new();
                    if Frame::Bolt(mosn_wire::bolt::Frame::goaway(mosn_wire::bolt::PROTO_V1, 0))
                        .encode(false, &mut out)
                        .is_ok()
                    {
                        let _ = tx.send(out.freeze());
                    }
                }
                break;
            }
        }
    }
    // Answer what is in flight (on a codec error too: those requests were well formed).
    inflight.wait_idle().await;
    drop(tx);
    let _ = writer.await;
    result
}

#[derive(Default)]
struct InFlight {
    count: Cell<usize>,
    idle: Notify,
}

impl InFlight {
    async fn wait_idle(&self) {
        while self.count.get() > 0 {
            self.idle.notified().await;
        }
    }
}

struct InFlightGuard(Rc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let n = self.0.count.get() - 1;
        self.0.count.set(n);
        if n == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

fn send_frame(tx: &mpsc::UnboundedSender<Bytes>, frame: &Frame, use_raw: bool) {
    let mut out = BytesMut::new();
    match frame.encode(use_raw, &mut out) {
        Ok(()) => {
            let _ = tx.send(out.freeze());
        }
        Err(e) => tracing::debug!(error = %e, "cannot encode a response frame"),
    }
}

fn dispatch<H: Handler>(
    frame: Frame,
    tx: &mpsc::UnboundedSender<Bytes>,
    handler: &Rc<H>,
    inflight: &Rc<InFlight>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    if frame.is_heartbeat() {
        if !frame.is_response() {
            send_frame(tx, &frame.heartbeat_ack(), false);
        }
        return;
    }
    if !frame.is_request() {
        // A response or GoAway from a client: nothing waits for it.
        tracing::debug!(
            id = frame.request_id(),
            "dropping a frame that is not a request from a client"
        );
        return;
    }
    inflight.count.set(inflight.count.get() + 1);
    let guard = InFlightGuard(inflight.clone());
    let tx = tx.clone();
    let handler = handler.clone();
    let fut = async move {
        let _guard = guard;
        let _permit = permit;
        let oneway = frame.is_oneway();
        let template = frame.reply_template();
        let req = convert::request_from_frame(frame);
        let resp = handler.handle(req).await;
        if oneway {
            // Nobody waits for an answer; let the response (and its stats hook) finish.
            let _ = resp.into_body().collect().await;
            return;
        }
        let (out, raw) = convert::response_to_frame(&template, resp).await;
        send_frame(&tx, &out, raw);
    };
    tokio::task::spawn_local(fut);
}

/// The protocol's codec-error reply, when the broken frame's request id can be read.
fn codec_error_reply(family: Family, buf: &[u8], tx: &mpsc::UnboundedSender<Bytes>) {
    let frame = match family {
        Family::Bolt => mosn_wire::bolt::peek_request_id(buf).map(|(proto, id)| {
            let mut req = mosn_wire::bolt::Frame::heartbeat(proto, id);
            req.cmd_code = mosn_wire::bolt::CMD_REQUEST;
            Frame::Bolt(mosn_wire::bolt::Frame::response_to(
                &req,
                super::bolt_status_for(super::code::CODEC_EXCEPTION),
            ))
        }),
        Family::Dubbo => mosn_wire::dubbo::peek_request_id(buf).map(|id| {
            let req = mosn_wire::dubbo::Frame {
                flag: mosn_wire::dubbo::FLAG_REQUEST
                    | mosn_wire::dubbo::FLAG_TWO_WAY
                    | mosn_wire::dubbo::HESSIAN2,
                status: 0,
                request_id: id,
                body: Bytes::new(),
                raw: Bytes::new(),
            };
            Frame::Dubbo(mosn_wire::dubbo::Frame::error_response(
                &req,
                super::dubbo_status_for(super::code::CODEC_EXCEPTION),
                "0|codec error",
            ))
        }),
    };
    if let Some(f) = frame {
        send_frame(tx, &f, false);
    }
}

/// Writes queued frames, several per write when they pile up.
async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut chunk = first;
        // Coalesce what is already queued into one write.
        if let Ok(next) = rx.try_recv() {
            batch.extend_from_slice(&chunk);
            batch.extend_from_slice(&next);
            while batch.len() < 64 * 1024 {
                match rx.try_recv() {
                    Ok(b) => batch.extend_from_slice(&b),
                    Err(_) => break,
                }
            }
            chunk = batch.split().freeze();
        }
        if wr.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}
