//! Moving bytes between two connections: a bidirectional copy with bounded buffers,
//! back-pressure, half-close in both directions, an idle timeout and live byte counts.
//!
//! Each direction owns one buffer of a fixed bound (`a_to_b_buffer`, `b_to_a_buffer`) (allocated on first use). A
//! side is read only when its buffer has been fully written to the other side, so a slow peer
//! stops the reading of the fast one: memory per connection is bounded by the sum of the two bounds.
//! When one side reaches EOF its peer gets a FIN (`shutdown(SHUT_WR)`) once the buffered bytes
//! are written, and the other direction keeps flowing until it ends too.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Which way bytes move. `AToB` is downstream -> upstream when the caller passes
/// (downstream, upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the first connection to the second.
    AToB,
    /// From the second connection to the first.
    BToA,
}

/// Which connection an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first connection passed to [`pipe`].
    A,
    /// The second connection passed to [`pipe`].
    B,
}

/// Limits for one proxied connection.
#[derive(Debug, Clone)]
pub struct PipeConfig {
    /// Bytes read from A and not yet written to B, at most (B's buffer limit).
    pub a_to_b_buffer: usize,
    /// Bytes read from B and not yet written to A, at most (A's buffer limit).
    pub b_to_a_buffer: usize,
    /// Close both sides after this long without a byte moving either way.
    pub idle_timeout: Option<Duration>,
}

impl Default for PipeConfig {
    fn default() -> Self {
        PipeConfig {
            a_to_b_buffer: 32 * 1024,
            b_to_a_buffer: 32 * 1024,
            idle_timeout: None,
        }
    }
}

/// Told about every chunk that was written through (for byte counters).
pub trait PipeObserver {
    /// `n` bytes were written in direction `dir`.
    fn on_bytes(&self, dir: Direction, n: usize);
}

impl PipeObserver for () {
    fn on_bytes(&self, _: Direction, _: usize) {}
}

/// How a pipe ended without an IO error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeEnd {
    /// Both directions reached EOF and were shut down.
    Closed,
    /// Nothing moved for the idle timeout.
    IdleTimeout,
}

/// Totals of a finished pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeOutcome {
    /// Bytes written from A to B.
    pub a_to_b: u64,
    /// Bytes written from B to A.
    pub b_to_a: u64,
    /// Why it ended.
    pub end: PipeEnd,
}

/// An IO error on one side, with the totals moved before it.
#[derive(Debug, thiserror::Error)]
#[error("{op} on side {side:?} failed after {a_to_b} bytes A->B and {b_to_a} bytes B->A: {source}")]
pub struct PipeError {
    /// The side whose socket failed.
    pub side: Side,
    /// `read`, `write` or `shutdown`.
    pub op: &'static str,
    /// Bytes written A -> B before the error.
    pub a_to_b: u64,
    /// Bytes written B -> A before the error.
    pub b_to_a: u64,
    /// The IO error.
    #[source]
    pub source: io::Error,
}

struct Half {
    buf: Option<Box<[u8]>>,
    pos: usize,
    cap: usize,
    eof: bool,
    done: bool,
    moved: u64,
}

impl Half {
    fn new() -> Self {
        Half {
            buf: None,
            pos: 0,
            cap: 0,
            eof: false,
            done: false,
            moved: 0,
        }
    }
}

enum HalfError {
    Read(io::Error),
    Write(io::Error),
    Shutdown(io::Error),
}

#[allow(clippy::too_many_arguments)]
fn poll_half<R, W, O>(
    half: &mut Half,
    cx: &mut Context<'_>,
    reader: &mut R,
    writer: &mut W,
    size: usize,
    obs: &O,
    dir: Direction,
    activity: &mut bool,
) -> Poll<Result<(), HalfError>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    O: PipeObserver,
{
    loop {
        if half.pos == half.cap && !half.eof {
            let buf = half
                .buf
                .get_or_insert_with(|| vec![0u8; size.max(1)].into_boxed_slice());
            let mut rb = ReadBuf::new(buf);
            match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(HalfError::Read(e))),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        half.eof = true;
                    } else {
                        half.pos = 0;
                        half.cap = n;
                    }
                }
            }
        }
        while half.pos < half.cap {
            let Some(buf) = half.buf.as_ref() else {
                break;
            };
            match Pin::new(&mut *writer).poll_write(cx, &buf[half.pos..half.cap]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(HalfError::Write(e))),
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(HalfError::Write(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => {
                    half.pos += n;
                    half.moved += n as u64;
                    *activity = true;
                    obs.on_bytes(dir, n);
                }
            }
        }
        if half.eof && half.pos == half.cap {
            match Pin::new(&mut *writer).poll_flush(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(HalfError::Write(e))),
                Poll::Ready(Ok(())) => {}
            }
            match Pin::new(&mut *writer).poll_shutdown(cx) {
                Poll::Pending => return Poll::Pending,
                // The peer may already be gone; its own direction reports that.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(HalfError::Shutdown(e))),
                Poll::Ready(Ok(())) => {}
            }
            half.done = true;
            // Give the buffer back as soon as this direction is finished.
            half.buf = None;
            return Poll::Ready(Ok(()));
        }
    }
}

/// Copies A -> B and B -> A until both directions have ended, one side fails, or nothing moved
/// for `cfg.idle_timeout`.
pub async fn pipe<A, B, O>(
    a: &mut A,
    b: &mut B,
    cfg: &PipeConfig,
    obs: &O,
) -> Result<PipeOutcome, PipeError>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    O: PipeObserver,
{
    let mut ab = Half::new();
    let mut ba = Half::new();
    let mut last_activity = Instant::now();
    let mut idle: Option<Pin<Box<Sleep>>> = cfg
        .idle_timeout
        .map(|d| Box::pin(tokio::time::sleep_until(last_activity + d)));

    poll_fn(|cx| {
        let mut activity = false;
        if !ab.done {
            let r = poll_half(
                &mut ab,
                cx,
                a,
                b,
                cfg.a_to_b_buffer,
                obs,
                Direction::AToB,
                &mut activity,
            );
            if let Poll::Ready(Err(e)) = r {
                return Poll::Ready(Err(to_error(e, Side::A, Side::B, &ab, &ba)));
            }
        }
        if !ba.done {
            let r = poll_half(
                &mut ba,
                cx,
                b,
                a,
                cfg.b_to_a_buffer,
                obs,
                Direction::BToA,
                &mut activity,
            );
            if let Poll::Ready(Err(e)) = r {
                return Poll::Ready(Err(to_error(e, Side::B, Side::A, &ab, &ba)));
            }
        }
        if ab.done && ba.done {
            return Poll::Ready(Ok(PipeOutcome {
                a_to_b: ab.moved,
                b_to_a: ba.moved,
                end: PipeEnd::Closed,
            }));
        }
        if activity && idle.is_some() {
            last_activity = Instant::now();
        }
        if let (Some(sleep), Some(d)) = (idle.as_mut(), cfg.idle_timeout) {
            // The timer is moved only when it fires, not on every chunk.
            while sleep.as_mut().poll(cx).is_ready() {
                let deadline = last_activity + d;
                if Instant::now() >= deadline {
                    return Poll::Ready(Ok(PipeOutcome {
                        a_to_b: ab.moved,
                        b_to_a: ba.moved,
                        end: PipeEnd::IdleTimeout,
                    }));
                }
                sleep.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    })
    .await
}

fn to_error(e: HalfError, reader: Side, writer: Side, ab: &Half, ba: &Half) -> PipeError {
    let (side, op, source) = match e {
        HalfError::Read(e) => (reader, "read", e),
        HalfError::Write(e) => (writer, "write", e),
        HalfError::Shutdown(e) => (writer, "shutdown", e),
    };
    PipeError {
        side,
        op,
        a_to_b: ab.moved,
        b_to_a: ba.moved,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    struct Count(Cell<u64>, Cell<u64>);
    impl PipeObserver for Count {
        fn on_bytes(&self, dir: Direction, n: usize) {
            let c = if dir == Direction::AToB {
                &self.0
            } else {
                &self.1
            };
            c.set(c.get() + n as u64);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn copies_both_ways_with_half_close() {
        let (mut client, mut a) = duplex(1024);
        let (mut b, mut server) = duplex(1024);
        let obs = Count(Cell::new(0), Cell::new(0));
        let cfg = PipeConfig {
            a_to_b_buffer: 100,
            b_to_a_buffer: 100,
            idle_timeout: None,
        };
        let up: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        let c = tokio::spawn(async move {
            client.write_all(&up2).await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let s = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            // The client's FIN arrived; this side can still send.
            server.write_all(&down2).await.unwrap();
            server.shutdown().await.unwrap();
            got
        });
        let out = pipe(&mut a, &mut b, &cfg, &obs).await.unwrap();
        assert_eq!(out.end, PipeEnd::Closed);
        assert_eq!(out.a_to_b, up.len() as u64);
        assert_eq!(out.b_to_a, down.len() as u64);
        assert_eq!(obs.0.get(), up.len() as u64);
        assert_eq!(obs.1.get(), down.len() as u64);
        assert_eq!(s.await.unwrap(), up);
        assert_eq!(c.await.unwrap(), down);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn idle_timeout_fires_only_without_traffic() {
        let (mut client, mut a) = duplex(64);
        let (mut b, mut server) = duplex(64);
        let cfg = PipeConfig {
            a_to_b_buffer: 64,
            b_to_a_buffer: 64,
            idle_timeout: Some(Duration::from_secs(10)),
        };
        let t = tokio::spawn(async move {
            // Keep traffic flowing past the timeout, then go quiet.
            for _ in 0..5 {
                client.write_all(b"x").await.unwrap();
                let mut one = [0u8; 1];
                server.read_exact(&mut one).await.unwrap();
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
            (client, server)
        });
        let start = Instant::now();
        let out = pipe(&mut a, &mut b, &cfg, &()).await.unwrap();
        assert_eq!(out.end, PipeEnd::IdleTimeout);
        assert_eq!(out.a_to_b, 5);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(26) && took <= Duration::from_secs(31),
            "{took:?}"
        );
        drop(t.await.unwrap());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn slow_reader_stops_reading_the_fast_side() {
        // B never reads: A's writer must stall once the pipe buffer and B's window are full.
        let (mut client, mut a) = duplex(1000);
        let (mut b, _server) = duplex(1000);
        let cfg = PipeConfig {
            a_to_b_buffer: 500,
            b_to_a_buffer: 500,
            idle_timeout: None,
        };
        let writer = tokio::spawn(async move {
            let chunk = [7u8; 100];
            let mut sent = 0usize;
            loop {
                match tokio::time::timeout(Duration::from_millis(200), client.write_all(&chunk))
                    .await
                {
                    Ok(Ok(())) => sent += chunk.len(),
                    _ => return sent,
                }
            }
        });
        let p = tokio::spawn(async move { pipe(&mut a, &mut b, &cfg, &()).await.map(|_| ()) });
        let sent = writer.await.unwrap();
        // duplex(1000) client side + 500 pipe buffer + duplex(1000) to B.
        assert!(sent <= 2500, "buffered without bound: {sent}");
        assert!(sent >= 1500, "stalled too early: {sent}");
        p.abort();
    }
}
