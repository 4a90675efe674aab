//! Where connections are accepted and served: an accept loop on the runtime that serves
//! everything, one task per connection. The bounds on each connection are
//! [`super::listener`]'s.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::listener::{
    ConnectionSlot, Connections, accept_failed, prepare, refuse, serve_connection,
};
use crate::config::HttpConfig;

/// Serves `router` on `listener` until `stop` is cancelled, then lets each connection finish
/// its request in flight and returns once all have closed. Dropping the future closes them.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    limits: HttpConfig,
    stop: CancellationToken,
) {
    let abort = CancellationToken::new();
    let _abort_on_drop = abort.clone().drop_guard();
    let open = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.permits.clone().try_acquire_owned() else {
            connections.refused.fetch_add(1, Ordering::Relaxed);
            refuse(stream, &connections);
            continue;
        };
        connections.accepted.fetch_add(1, Ordering::Relaxed);
        let slot = ConnectionSlot::new(permit, connections.clone());
        prepare(&stream, &limits);
        let connection = serve_connection(
            stream,
            peer,
            slot,
            router.clone(),
            limits.header_read_timeout,
            stop.clone(),
        );
        let abort = abort.clone();
        open.spawn(async move {
            tokio::select! {
                () = connection => {}
                () = abort.cancelled() => {}
            }
        });
    }
    // Refuse new connections at once while the open ones finish.
    drop(listener);
    open.close();
    open.wait().await;
}
