//! The HTTP listener: an accept loop over hyper's HTTP/1.1 server with the bounds `axum::serve`
//! does not offer (`server.http`):
//! - a connection must send each request head within `header_read_timeout`, counted from its
//!   opening and again from each response while it idles in keep-alive;
//! - at most `max_connections` plain HTTP connections are open; past it a new one gets a
//!   one-line `503` and is closed at once. A connection upgraded to a WebSocket gives its place
//!   back ([`ConnectionSlot::release`]): sockets have their own cap.
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
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
    permits: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    max: usize,
    accepted: AtomicU64,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
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
    /// The connection is now a WebSocket: it no longer counts as an HTTP connection.
    pub fn release(&self) {
        let released = self.permit.lock().map(|mut p| p.take()).ok().flatten();
        if released.is_some() {
            self.connections.upgraded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Serves `router` on `listener` until `stop` is cancelled, then lets each connection finish
/// its request in flight and returns once all have closed. Dropping the future closes them.
///
/// Connections are accepted on a thread of their own (the "front"), which also serves the
/// connections whose first request is a probe (`GET /health`, `GET /metrics`): a load balancer
/// or the load tester gets its answer while chat saturates the main runtime. Every other
/// connection moves to the runtime `serve` is called on before hyper reads it.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    limits: HttpConfig,
    stop: CancellationToken,
) {
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot hand the listener to its thread");
            return;
        }
    };
    let abort = CancellationToken::new();
    let _abort_on_drop = abort.clone().drop_guard();
    let front = Front {
        router,
        connections,
        limits,
        stop,
        abort,
        main: tokio::runtime::Handle::current(),
        open: TaskTracker::new(),
    };
    let (finished, done) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("http-front".into())
        .spawn(move || {
            front.run(listener);
            drop(finished);
        });
    match spawned {
        Ok(_) => {
            let _ = done.await;
        }
        Err(error) => tracing::error!(%error, "cannot start the HTTP listener's thread"),
    }
}

/// The accept loop and what it needs to place each connection.
struct Front {
    router: Router,
    connections: Arc<Connections>,
    limits: HttpConfig,
    /// Stop accepting; connections finish their request in flight.
    stop: CancellationToken,
    /// Close every connection now (the `serve` future was dropped).
    abort: CancellationToken,
    /// The runtime that serves everything but probes.
    main: tokio::runtime::Handle,
    /// Connections open on either runtime.
    open: TaskTracker,
}

impl Front {
    /// Runs the accept loop on a current-thread runtime until `stop`, then waits for the open
    /// connections (both runtimes) to close.
    fn run(self, listener: std::net::TcpListener) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "cannot build the HTTP listener's runtime");
                return;
            }
        };
        let front = Arc::new(self);
        runtime.block_on(async {
            match TcpListener::from_std(listener) {
                Ok(listener) => front.clone().accept_loop(listener).await,
                Err(error) => tracing::error!(%error, "cannot register the listener"),
            }
            front.open.close();
            tokio::select! {
                () = front.open.wait() => {}
                () = front.abort.cancelled() => {}
            }
        });
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = tokio::select! {
                () = self.stop.cancelled() => break,
                () = self.abort.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        accept_failed(error).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = self.connections.permits.clone().try_acquire_owned() else {
                self.connections.refused.fetch_add(1, Ordering::Relaxed);
                refuse(stream, &self.connections);
                continue;
            };
            self.connections.accepted.fetch_add(1, Ordering::Relaxed);
            let slot = ConnectionSlot {
                permit: Arc::new(Mutex::new(Some(permit))),
                connections: self.connections.clone(),
            };
            prepare(&stream, &self.limits);
            tokio::spawn(
                self.open
                    .track_future(self.clone().place(stream, peer, slot)),
            );
        }
    }

    /// Serves the connection here if its first request is a probe, else on the main runtime.
    async fn place(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, slot: ConnectionSlot) {
        let first = tokio::select! {
            first = first_request(&stream, self.limits.header_read_timeout) => first,
            () = self.stop.cancelled() => FirstRequest::Closed,
        };
        match first {
            FirstRequest::Probe => self.serve_here(stream, peer, slot).await,
            FirstRequest::Other => self.serve_on_main(stream, peer, slot),
            FirstRequest::TimedOut => {
                self.connections
                    .header_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "closed a connection that sent no request head in time");
            }
            FirstRequest::Closed => {}
        }
    }

    async fn serve_here(&self, stream: TcpStream, peer: SocketAddr, slot: ConnectionSlot) {
        let connection = serve_connection(
            stream,
            peer,
            slot,
            self.router.clone(),
            self.limits.header_read_timeout,
            self.stop.clone(),
        );
        tokio::select! {
            () = connection => {}
            () = self.abort.cancelled() => {}
        }
    }

    fn serve_on_main(&self, stream: TcpStream, peer: SocketAddr, slot: ConnectionSlot) {
        // Registered with this runtime's reactor: out of it, then into the main one's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "cannot move a connection to the main runtime");
                return;
            }
        };
        let connection = serve_connection_std(
            stream,
            peer,
            slot,
            self.router.clone(),
            self.limits.header_read_timeout,
            self.stop.clone(),
        );
        let abort = self.abort.clone();
        self.main.spawn(self.open.track_future(async move {
            tokio::select! {
                () = connection => {}
                () = abort.cancelled() => {}
            }
        }));
    }
}

/// Requests answered on the front thread when they open a connection.
const PROBES: [&[u8]; 2] = [b"GET /health", b"GET /metrics"];

/// How long to wait before looking again at a request line that has only partly arrived.
const PEEK_AGAIN_AFTER: Duration = Duration::from_millis(2);

/// What a connection's first bytes say.
#[derive(Debug, PartialEq, Eq)]
enum FirstRequest {
    Probe,
    Other,
    /// Not enough of a request line within the header timeout.
    TimedOut,
    /// Closed (or failed) before saying anything.
    Closed,
}

/// Looks at (without reading) the start of the first request.
async fn first_request(stream: &TcpStream, within: Duration) -> FirstRequest {
    let deadline = tokio::time::Instant::now() + within;
    let mut head = [0u8; 16];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut head)).await {
            Err(_) => return FirstRequest::TimedOut,
            Ok(Ok(0) | Err(_)) => return FirstRequest::Closed,
            Ok(Ok(n)) => n,
        };
        if let Some(verdict) = classify(&head[..n]) {
            return verdict;
        }
        // Peeked bytes stay readable: wait a moment rather than spin on them.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(PEEK_AGAIN_AFTER))
            .await
            .is_err()
        {
            return FirstRequest::TimedOut;
        }
    }
}

/// `Probe` or `Other` once `head` decides it; `None` while it could still become a probe.
fn classify(head: &[u8]) -> Option<FirstRequest> {
    let mut undecided = false;
    for probe in PROBES {
        match head.get(probe.len()) {
            Some(b' ' | b'?') if head.starts_with(probe) => return Some(FirstRequest::Probe),
            Some(_) => {}
            None => undecided |= probe.starts_with(head),
        }
    }
    (!undecided).then_some(FirstRequest::Other)
}

/// Socket options of an accepted connection: no Nagle delay (a streamed answer is many small
/// writes, each of which would otherwise wait up to 40 ms for an ACK), and a bounded kernel
/// send buffer.
fn prepare(stream: &TcpStream, limits: &HttpConfig) {
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

/// [`serve_connection`] for a stream handed over from another runtime.
async fn serve_connection_std(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    slot: ConnectionSlot,
    router: Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    match TcpStream::from_std(stream) {
        Ok(stream) => {
            serve_connection(stream, peer, slot, router, header_read_timeout, stop).await;
        }
        Err(error) => tracing::debug!(%peer, %error, "cannot register a moved connection"),
    }
}

async fn serve_connection(
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
fn refuse(stream: TcpStream, connections: &Arc<Connections>) {
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
async fn accept_failed(error: std::io::Error) {
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
    fn a_probe_is_told_from_its_first_bytes_and_waits_while_it_could_still_be_one() {
        use FirstRequest::{Other, Probe};
        assert_eq!(classify(b"GET /health HTTP/1.1\r\n"), Some(Probe));
        assert_eq!(classify(b"GET /health?x=1 HTTP"), Some(Probe));
        assert_eq!(classify(b"GET /metrics HTTP/1.1"), Some(Probe));
        assert_eq!(classify(b"GET /healthz HTTP/1.1"), Some(Other));
        assert_eq!(classify(b"GET /ws/chat HTTP/1.1"), Some(Other));
        assert_eq!(classify(b"POST /health HTTP"), Some(Other));
        assert_eq!(classify(b"PUT"), Some(Other));
        assert_eq!(classify(b"GET /he"), None);
        assert_eq!(classify(b"GET /health"), None);
        assert_eq!(classify(b"G"), None);
        assert_eq!(classify(b"GET /m"), None);
    }

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
