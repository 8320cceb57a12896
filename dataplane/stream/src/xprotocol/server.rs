//! Downstream RPC connections: frames are decoded as they arrive, heartbeats are answered
//! here (never routed), every request goes to the [`RpcHandler`] and its answer is written as
//! soon as it is ready (responses in any order, matched by request id). The handler first
//! gets the chance to send the request on from the read loop itself
//! ([`RpcHandler::answer_now`], leaving a [`Reply`] for the answer); a request it cannot take
//! that way gets a task of its own ([`RpcHandler::answer`]). A malformed frame gets the
//! protocol's codec-error reply and closes this connection only.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{watch, Notify};

use super::outq::OutQueue;
use super::{convert, Family, Frame, RpcServerSettings};
use crate::server::Handler;

/// What answers the requests of a downstream RPC connection.
pub trait RpcHandler: 'static {
    /// The answer to one request frame: the frame to send back and whether its raw bytes
    /// may be forwarded with only the request id rewritten; `None` sends nothing (a one-way
    /// request). [`answer_via`] answers through the common message model.
    fn answer(
        self: Rc<Self>,
        frame: Frame,
    ) -> impl Future<Output = Option<(Frame, bool)>> + 'static;

    /// Takes `frame` without a task of its own when it can (sends it on and leaves `reply`
    /// to whatever answers it), from the connection's read loop: nothing here may wait.
    /// `Err` gives both back untouched, and the request goes to [`RpcHandler::answer`] on a
    /// task. The default takes nothing.
    #[allow(clippy::result_large_err)]
    fn answer_now(self: &Rc<Self>, frame: Frame, reply: Reply) -> Result<(), (Frame, Reply)> {
        Err((frame, reply))
    }
}

/// Where the answer to one downstream request goes: its connection's write queue. The
/// request counts as in flight (for the connection's limit and its drain) until this is
/// sent or dropped.
pub struct Reply {
    tx: Rc<OutQueue>,
    _guard: InFlightGuard,
    received: Instant,
}

impl Reply {
    /// When the request was read (one clock read for the requests of one read).
    pub fn received(&self) -> Instant {
        self.received
    }

    /// Sends `frame` to the client (`raw`: its bytes as they are, only the request id
    /// rewritten; see [`Frame::encode`]).
    pub fn send(self, frame: &Frame, raw: bool) {
        send_frame(&self.tx, frame, raw);
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// Answers `frame` through the common message model: the request converted
/// ([`convert::request_from_frame`]), handled by `handler`, the response converted back
/// ([`convert::response_to_frame`]); one-way requests get their response consumed and
/// nothing sent.
pub async fn answer_via<H: Handler>(handler: Rc<H>, frame: Frame) -> Option<(Frame, bool)> {
    let oneway = frame.is_oneway();
    let template = frame.reply_template();
    let req = convert::request_from_frame(frame);
    let resp = handler.handle(req).await;
    if oneway {
        // Nobody waits for an answer; let the response (and its stats hook) finish.
        let _ = resp.into_body().collect().await;
        return None;
    }
    Some(convert::response_to_frame(&template, resp).await)
}

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
    H: RpcHandler,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let tx = Rc::new(OutQueue::default());
    let writer = {
        let out = tx.clone();
        tokio::task::spawn_local(async move {
            out.write_loop(&mut wr, None).await;
        })
    };
    let inflight = Rc::new(InFlight {
        count: Cell::new(0),
        max: settings.max_inflight.max(1),
        idle: Notify::new(),
        room: Notify::new(),
    });
    let mut buf = BytesMut::with_capacity(4096);
    let mut result = Ok(());
    'read: loop {
        // One clock read for the requests of one read.
        let mut received = None;
        loop {
            match Frame::decode(family, &mut buf, settings.max_frame) {
                Ok(Some(frame)) => {
                    // At the limit: the next request waits for one to finish.
                    while inflight.count.get() >= inflight.max {
                        inflight.room.notified().await;
                    }
                    let now = *received.get_or_insert_with(Instant::now);
                    dispatch(frame, &tx, &handler, &inflight, now);
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
                    let goaway =
                        Frame::Bolt(mosn_wire::bolt::Frame::goaway(mosn_wire::bolt::PROTO_V1, 0));
                    send_frame(&tx, &goaway, false);
                }
                break;
            }
        }
    }
    // Answer what is in flight (on a codec error too: those requests were well formed).
    inflight.wait_idle().await;
    tx.close();
    let _ = writer.await;
    result
}

/// A connection's requests in flight.
struct InFlight {
    count: Cell<usize>,
    /// The most in flight at once (`max_inflight`).
    max: usize,
    /// Notified when the count reaches 0.
    idle: Notify,
    /// Notified when the count falls below `max` again.
    room: Notify,
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
        if n + 1 == self.0.max {
            self.0.room.notify_waiters();
        }
    }
}

fn send_frame(tx: &OutQueue, frame: &Frame, use_raw: bool) {
    if let Err(e) = tx.push(frame, use_raw) {
        tracing::debug!(error = %e, "cannot encode a response frame");
    }
}

fn dispatch<H: RpcHandler>(
    frame: Frame,
    tx: &Rc<OutQueue>,
    handler: &Rc<H>,
    inflight: &Rc<InFlight>,
    received: Instant,
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
    let reply = Reply {
        tx: tx.clone(),
        _guard: InFlightGuard(inflight.clone()),
        received,
    };
    let Err((frame, reply)) = handler.answer_now(frame, reply) else {
        return;
    };
    let handler = handler.clone();
    let fut = async move {
        if let Some((out, raw)) = handler.answer(frame).await {
            reply.send(&out, raw);
        }
    };
    tokio::task::spawn_local(fut);
}

/// The protocol's codec-error reply, when the broken frame's request id can be read.
fn codec_error_reply(family: Family, buf: &[u8], tx: &OutQueue) {
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
