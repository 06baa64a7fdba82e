//! The accept loop, with the bounds `axum::serve` does not keep: how long a client may take to
//! send its headers, how many connections are open at once, and how a shutdown drains them.
//!
//! Each connection is hyper's HTTP/1 (with upgrades, for WebSockets) under a tokio timer, so
//! `header_read_timeout` holds from the moment a connection is accepted and between the
//! requests of a kept-alive one. HTTP/2 is left out on purpose: hyper-util's auto builder
//! first reads the HTTP/2 preface to choose, with no timeout of its own (even when told
//! HTTP/1 only, once upgrades are on), so a client that connects and sends nothing would hold
//! its slot forever; and HTTP/2 has no header timeout at all. Browsers reach Beckon over
//! HTTP/1, or through a proxy that terminates TLS.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::limits::Limits;

/// How long the loop pauses after an accept error that is not the client's (out of file
/// descriptors): retrying at once would spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets the
/// requests in flight finish for at most `limits.drain_timeout`, closes what is left, and
/// returns once every connection is closed.
///
/// At most `limits.max_connections` connections are open at once: past that the loop stops
/// accepting (new clients wait in the kernel's backlog) until one closes. A connection that
/// became a WebSocket leaves the count; the WebSocket limits bound those.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    // `drain` asks every connection to finish its request and close; `close` drops them.
    let drain = CancellationToken::new();
    let close = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            http: http.clone(),
            router: router.clone(),
            drain: drain.clone(),
            close: close.clone(),
        };
        tokio::spawn(async move {
            connection.serve(stream, peer).await;
            drop(slot);
        });
    }
    drop(listener);
    drop(router);
    let open = max - slots.available_permits();
    tracing::info!(open, "stopped accepting; draining connections");
    drain.cancel();
    // Every slot back means every connection has closed.
    let all = slots.acquire_many(max as u32);
    let all = match tokio::time::timeout(limits.drain_timeout, all).await {
        Ok(all) => all,
        Err(_) => {
            let left = max - slots.available_permits();
            tracing::warn!(left, "drain timeout: closing the connections left");
            close.cancel();
            slots.acquire_many(max as u32).await
        }
    };
    drop(all.expect("the semaphore is never closed"));
    Ok(())
}

/// What one connection's task needs.
struct Connection {
    http: hyper::server::conn::http1::Builder,
    router: Router,
    drain: CancellationToken,
    close: CancellationToken,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        // Handlers (and the per-address rate limit) read the peer as axum's `ConnectInfo`.
        let service = self.router.map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let mut conn = pin!(
            self.http
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades()
        );
        let result = tokio::select! {
            result = conn.as_mut() => Some(result),
            () = self.drain.cancelled() => {
                // Finishes the request in flight, if any, then closes; an idle connection
                // (or one still sending its headers) closes at once.
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    result = conn.as_mut() => Some(result),
                    () = self.close.cancelled() => None,
                }
            }
        };
        if let Some(Err(e)) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// Errors of one client's connection, not of the listener: the loop goes on at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
