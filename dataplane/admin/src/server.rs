//! Accept loop and per-connection HTTP/1.1 tasks.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::Inner;

/// Most connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// A client must send a request's headers within this time (idle keep-alive included).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown, how long requests in flight may take before their connections are dropped.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// hyper's read buffer cap, which bounds request headers (hyper's floor is 8 KiB).
const MAX_BUF_SIZE: usize = 64 * 1024;
/// Pause after an accept error that is not about one connection (e.g. EMFILE).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) async fn serve(
    inner: Arc<Inner>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut shutdown = pin!(shutdown);
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin API listening");
    }

    loop {
        while let Some(done) = conns.try_join_next() {
            log_join(done);
        }
        // `shutdown` is polled in both selects but never again once it has resolved.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                conns.spawn(serve_conn(
                    inner.clone(),
                    stream,
                    peer,
                    stop_rx.clone(),
                    permit,
                ));
            }
            Err(e) if per_connection(&e) => {
                tracing::debug!(error = %e, "admin accept: connection failed before accept");
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed; retrying");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }

    drop(listener);
    tracing::info!(
        connections = conns.len(),
        "admin API shutting down: draining"
    );
    // Receivers see `true` (or the sender gone): each connection shuts down gracefully.
    let _ = stop_tx.send(true);
    let drain = async {
        while let Some(done) = conns.join_next().await {
            log_join(done);
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!(
            connections = conns.len(),
            "admin API drain timed out; dropping connections"
        );
        conns.abort_all();
    }
    Ok(())
}

/// Errors that concern only the connection being accepted, not the listener.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!("admin connection task panicked");
        }
    }
}

async fn serve_conn(
    inner: Arc<Inner>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let inner = inner.clone();
        async move {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let resp = crate::api::handle(&inner, req).await;
            tracing::debug!(%peer, %method, path, status = resp.status().as_u16(), "admin request");
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));

    let stopped = async move {
        // An error means the accept loop is gone: stop as well.
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Malformed requests, header timeouts, resets: this connection only.
        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
    }
}
