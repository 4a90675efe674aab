//! A socket's writer: sends queued frames, pings every `ping_interval`, and closes the socket
//! when no pong comes within `ping_timeout`, when the socket is aborted, or, once the queue is
//! closed and drained, with the reason's close frame.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::SinkExt;
use futures::stream::SplitSink;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

use super::Sockets;
use super::close::{CloseReason, Closer};
use super::outbox::OutboxReceiver;

/// How long the close frame may take to write before the connection is just dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Frames written before one flush at most: frames queued together (a streamed answer's
/// chunks) go out in one write instead of one system call each.
const MAX_BATCH: usize = 64;

pub struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

pub async fn run(
    mut sink: SplitSink<WebSocket, Message>,
    mut frames: OutboxReceiver,
    closer: Arc<Closer>,
    pong: Arc<Notify>,
    keepalive: Keepalive,
    sockets: Arc<Sockets>,
) {
    let mut ping_timer =
        tokio::time::interval_at(Instant::now() + keepalive.interval, keepalive.interval);
    ping_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pong_due: Option<Instant> = None;
    // Made once and polled again each time round, not made anew per frame.
    let aborted = closer.aborted();
    tokio::pin!(aborted);
    let mut ponged = std::pin::pin!(pong.notified());
    loop {
        let message = tokio::select! {
            biased;
            () = &mut aborted => break,
            () = &mut ponged => {
                ponged.set(pong.notified());
                pong_due = None;
                continue;
            }
            () = tokio::time::sleep_until(pong_due.unwrap_or_else(Instant::now)), if pong_due.is_some() => {
                closer.abort(CloseReason::PingTimeout);
                break;
            }
            frame = frames.recv() => match frame {
                Some(text) => message(text, &sockets),
                None => break,
            },
            _ = ping_timer.tick() => {
                if pong_due.is_some() {
                    continue;
                }
                pong_due = Some(Instant::now() + keepalive.timeout);
                Message::Ping(axum::body::Bytes::new())
            }
        };
        let sent = tokio::select! {
            sent = write_batch(&mut sink, message, &mut frames, &sockets) => sent.is_ok(),
            () = &mut aborted => false,
        };
        if !sent {
            closer.abort(CloseReason::Client);
            break;
        }
    }
    let close = Message::Close(Some(closer.reason().frame()));
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close)).await;
}

fn message(text: String, sockets: &Sockets) -> Message {
    sockets.frames_out.fetch_add(1, Ordering::Relaxed);
    sockets
        .bytes_out
        .fetch_add(text.len() as u64, Ordering::Relaxed);
    Message::Text(text.into())
}

/// Writes `first` and the frames already queued behind it (up to [`MAX_BATCH`]), then flushes.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    first: Message,
    frames: &mut OutboxReceiver,
    sockets: &Sockets,
) -> Result<(), axum::Error> {
    sink.feed(first).await?;
    // Nothing else queued yet: let the tasks that are ready run once first. A provider's burst
    // of events reaches the turn one HTTP chunk per hop (hyper hands a body over one chunk at
    // a time), so without this each of its frames would go out in a system call (and wake the
    // client) of its own; with it, they leave together. Costs one scheduling round when
    // nothing more comes.
    if frames.is_empty() {
        tokio::task::yield_now().await;
    }
    for _ in 1..MAX_BATCH {
        let Some(text) = frames.try_recv() else { break };
        sink.feed(message(text, sockets)).await?;
    }
    sink.flush().await
}
