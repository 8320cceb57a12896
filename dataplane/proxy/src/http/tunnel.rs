//! Byte tunnels after a protocol switch: `Upgrade` (WebSocket: both sides switched, 101) and
//! `CONNECT` (the downstream switched; the upstream is a raw connection to the route's host).

use std::net::SocketAddr;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use mosn_net::Connection;
use mosn_stream::pool::Counted;

/// Joins the two upgraded connections once both switched, and copies bytes both ways.
pub fn spawn_upgrade(down: OnUpgrade, up: Option<OnUpgrade>, upstream: SocketAddr) {
    tokio::task::spawn_local(async move {
        let Some(up) = up else {
            tracing::debug!(%upstream, "upstream answered 101 without switching");
            return;
        };
        let (down, up) = match tokio::try_join!(down, up) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(%upstream, error = %e, "protocol switch failed");
                return;
            }
        };
        let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(%upstream, error = %e, "upgraded tunnel ended");
        }
    });
}

/// Copies bytes between the downstream (once its CONNECT is answered) and `conn`.
pub fn spawn_connect<C: Connection>(down: OnUpgrade, mut conn: Counted<C>, upstream: SocketAddr) {
    tokio::task::spawn_local(async move {
        let down = match down.await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(%upstream, error = %e, "CONNECT switch failed");
                return;
            }
        };
        let mut down = TokioIo::new(down);
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut conn.conn).await {
            tracing::debug!(%upstream, error = %e, "CONNECT tunnel ended");
        }
    });
}
