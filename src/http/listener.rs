//! The HTTP listener: an accept loop over hyper's HTTP/1.1 server with the bounds `axum::serve`
//! does not offer (`server.http`):
//! - a connection must send each request head within `header_read_timeout`, counted from its
//!   opening and again from each response while it idles in keep-alive;
//! - at most `max_connections` plain HTTP connections are open; past it a new one gets a
//!   one-line `503` and is closed at once. A connection upgraded to a WebSocket gives its place
//!   back ([`ConnectionSlot::release`]): sockets have their own cap.
//!
//! The accept loop itself is in [`super::accept`].
//!
//! HTTP/1.1 only: browsers never speak cleartext HTTP/2, and TLS (with HTTP/2) belongs to a
//! reverse proxy in front.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpConfig;

/// The body of the reply to a connection over the cap.
const OVER_CAPACITY: &str = "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server holds its maximum of HTTP connections; retry shortly\"}}";

/// The whole reply to a connection over the cap, followed by a close.
fn over_capacity_reply() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{OVER_CAPACITY}",
        OVER_CAPACITY.len()
    )
}

/// Refused connections whose request is being drained at once, at most.
const REFUSALS_IN_FLIGHT: usize = 64;

/// How long a refused connection's request is drained before the close.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Open HTTP connections under `server.http.max_connections`, with what `/health` shows.
pub struct Connections {
    pub(super) permits: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    max: usize,
    pub(super) accepted: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) header_timeouts: AtomicU64,
    upgraded: AtomicU64,
}

/// `/health` `http`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsSnapshot {
    /// Plain HTTP connections open now (upgraded WebSockets are in `websocket_stats`).
    pub open: usize,
    pub max: usize,
    pub accepted: u64,
    /// Connections refused with `503` at the cap.
    pub refused: u64,
    /// Connections closed for not sending a request head within `header_read_timeout`.
    pub header_timeouts: u64,
    /// Connections that became WebSockets.
    pub upgraded: u64,
}

impl Connections {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            refusals: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
            max,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            upgraded: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self) -> ConnectionsSnapshot {
        ConnectionsSnapshot {
            open: self.max - self.permits.available_permits(),
            max: self.max,
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            header_timeouts: self.header_timeouts.load(Ordering::Relaxed),
            upgraded: self.upgraded.load(Ordering::Relaxed),
        }
    }
}

/// A connection's place under the HTTP cap, in every request's extensions.
#[derive(Clone)]
pub struct ConnectionSlot {
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    connections: Arc<Connections>,
}

impl ConnectionSlot {
    pub(super) fn new(permit: OwnedSemaphorePermit, connections: Arc<Connections>) -> Self {
        Self {
            permit: Arc::new(Mutex::new(Some(permit))),
            connections,
        }
    }

    /// The connection is now a WebSocket: it no longer counts as an HTTP connection.
    pub fn release(&self) {
        let released = self.permit.lock().map(|mut p| p.take()).ok().flatten();
        if released.is_some() {
            self.connections.upgraded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Socket options of an accepted connection: no Nagle delay (a streamed answer is many small
/// writes, each of which would otherwise wait up to 40 ms for an ACK), and a bounded kernel
/// send buffer.
pub(super) fn prepare(stream: &TcpStream, limits: &HttpConfig) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted socket");
    }
    if limits.socket_send_buffer > 0
        && let Err(error) =
            rustix::net::sockopt::set_socket_send_buffer_size(stream, limits.socket_send_buffer)
    {
        tracing::debug!(%error, "cannot set SO_SNDBUF on an accepted socket");
    }
}

pub(super) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: ConnectionSlot,
    router: Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    let connections = slot.connections.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(slot.clone());
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    match result {
        Err(error) if error.is_timeout() => {
            connections.header_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "closed a connection that sent no request head in time");
        }
        Err(error) => tracing::trace!(%peer, %error, "connection ended with an error"),
        Ok(()) => {}
    }
}

/// Answers a connection over the cap with a `503` and closes it. The reply goes out
/// in one non-blocking write; the peer's request is then read and discarded for a moment, so
/// that closing does not reset the connection under the reply. At most [`REFUSALS_IN_FLIGHT`]
/// refusals linger at once; past that a connection is just closed.
pub(super) fn refuse(stream: TcpStream, connections: &Arc<Connections>) {
    let _ = stream.try_write(over_capacity_reply().as_bytes());
    let Ok(lingering) = connections.refusals.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _lingering = lingering;
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    });
}

/// Connection-level errors (the peer gave up during the handshake) are not the listener's;
/// anything else (out of file descriptors) is logged and retried after a pause, so a full
/// table does not spin the accept loop.
pub(super) async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_capacity_reply_declares_its_exact_length() {
        let text = over_capacity_reply();
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let declared: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .expect("content-length")
            .parse()
            .expect("number");
        assert_eq!(declared, body.len());
        let json: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
