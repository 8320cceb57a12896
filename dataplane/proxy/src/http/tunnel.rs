//! Byte tunnels after a protocol switch: `Upgrade` (WebSocket: both sides switched, 101) and
//! `CONNECT` (the downstream switched; the upstream is a raw connection to the route's host).

use std::net::SocketAddr;

use hyper_util::rt::TokioIo;
use mosn_net::Connection;
use mosn_stream::pool::Counted;
use mosn_stream::server::OnUpgrade;

/// Joins the two upgraded connections once both switched, and copies bytes both ways.
pub fn spawn_upgrade(down: OnUpgrade, up: Option<hyper::upgrade::OnUpgrade>, upstream: SocketAddr) {
    tokio::task::spawn_local(async move {
        let Some(up) = up else {
            tracing::debug!(%upstream, "upstream answered 101 without switching");
            return;
        };
        let (mut down, up) = match tokio::join!(down, up) {
            (Ok(down), Ok(up)) => (down, up),
            (Err(e), _) => {
                tracing::debug!(%upstream, error = %e, "downstream protocol switch failed");
                return;
            }
            (_, Err(e)) => {
                tracing::debug!(%upstream, error = %e, "upstream protocol switch failed");
                return;
            }
        };
        let mut up = TokioIo::new(up);
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(%upstream, error = %e, "upgraded tunnel ended");
        }
    });
}

/// Copies bytes between the downstream (once its CONNECT is answered) and `conn`.
pub fn spawn_connect<C: Connection>(down: OnUpgrade, mut conn: Counted<C>, upstream: SocketAddr) {
    tokio::task::spawn_local(async move {
        let mut down = match down.await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(%upstream, error = %e, "CONNECT switch failed");
                return;
            }
        };
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut conn.conn).await {
            tracing::debug!(%upstream, error = %e, "CONNECT tunnel ended");
        }
    });
}
