//! Where connections are accepted and served: a thread of its own (the "front", a
//! current-thread runtime) accepts every connection and looks at (without reading) its first
//! bytes. One whose first request is a probe (`GET /health`, `GET /metrics`) is served there,
//! so a load balancer gets its answer while chat work saturates the main runtime; any other is
//! moved to the main runtime before hyper reads it. The bounds on each connection are
//! [`super::listener`]'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::listener::{
    ConnectionSlot, Connections, accept_failed, prepare, refuse, serve_connection,
};
use crate::config::HttpConfig;

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
            .on_thread_park(crate::allocator::release_if_asked)
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
            let slot = ConnectionSlot::new(permit, self.connections.clone());
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
            FirstRequest::Probe => self.serve(stream, peer, slot).await,
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

    /// Serves the connection on the runtime this is polled on, until it ends or `abort`.
    async fn serve(&self, stream: TcpStream, peer: SocketAddr, slot: ConnectionSlot) {
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

    fn serve_on_main(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, slot: ConnectionSlot) {
        // Registered with this runtime's reactor: out of it, then into the main one's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "cannot move a connection to the main runtime");
                return;
            }
        };
        let front = self.clone();
        self.main.spawn(self.open.track_future(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => front.serve(stream, peer, slot).await,
                Err(error) => tracing::debug!(%peer, %error, "cannot register a moved connection"),
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
}
