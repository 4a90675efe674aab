//! The connection cap, the shutdown signal every socket listens to, and the socket figures of
//! `/health` `websocket_stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::close::CloseReason;
use super::live::LiveTurns;
use crate::chat::TurnSnapshot;
use crate::stats::{Gauge, GaugeGuard};

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    /// `max_connections` sockets are open.
    Capacity,
    /// The server is shutting down.
    ShuttingDown,
    /// A browser page from an origin not in `server.allowed_origins`.
    Origin,
}

pub struct Sockets {
    slots: Arc<Semaphore>,
    max: usize,
    active: Gauge,
    accepted: AtomicU64,
    rejected: [AtomicU64; 3],
    closed: [AtomicU64; 6],
    pub(super) frames_in: AtomicU64,
    pub(super) frames_out: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) refused_frames: AtomicU64,
    closing: CancellationToken,
    sessions: TaskTracker,
    /// The turns of every socket, which outlive them.
    pub live: Arc<LiveTurns>,
}

/// `/health` `websocket_stats`.
#[derive(Debug, Clone, Serialize)]
pub struct SocketSnapshot {
    pub active: usize,
    pub peak: usize,
    pub max_connections: usize,
    pub accepted: u64,
    /// Upgrades refused, all reasons.
    pub rejected: u64,
    pub rejected_by_reason: RejectedByReason,
    pub closed_by_reason: ClosedByReason,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Inbound frames answered with an error frame (bad JSON, unknown action, too large...).
    pub refused_frames: u64,
    pub turns: TurnSnapshot,
    /// Turns running now, and those of them no socket watches (their socket closed).
    pub live_turns: usize,
    pub detached_turns: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectedByReason {
    pub capacity: u64,
    pub shutting_down: u64,
    pub origin: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClosedByReason {
    pub client: u64,
    pub too_large: u64,
    pub slow_reader: u64,
    pub ping_timeout: u64,
    pub shutdown: u64,
    /// Closed with 4401: the connection's API key was revoked.
    pub revoked: u64,
}

impl Sockets {
    /// `closing` is cancelled when shutdown begins (a child of the application's shutdown).
    /// `keep`: `chat.service.detached_turn_timeout`.
    pub fn new(max: usize, keep: Duration, closing: CancellationToken) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            active: Gauge::default(),
            accepted: AtomicU64::new(0),
            rejected: Default::default(),
            closed: Default::default(),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            refused_frames: AtomicU64::new(0),
            closing,
            sessions: TaskTracker::new(),
            live: Arc::new(LiveTurns::new(keep)),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more socket, or why not.
    pub(super) fn admit(&self) -> Result<OwnedSemaphorePermit, Rejection> {
        if self.closing.is_cancelled() {
            return Err(Rejection::ShuttingDown);
        }
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Rejection::Capacity)
    }

    pub fn rejected(&self, why: Rejection) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn opened(&self) -> GaugeGuard<'_> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.enter()
    }

    /// Grows with every socket opened or closed and every frame in or out: a measure of
    /// activity.
    pub fn activity(&self) -> u64 {
        [&self.accepted, &self.frames_in, &self.frames_out]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .fold(self.closed_total(), u64::wrapping_add)
    }

    /// Turns running for sockets (attached or not).
    pub fn live_turns(&self) -> usize {
        self.live.running()
    }

    /// Sockets closed since start, whatever the reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub(super) fn closed(&self, why: CloseReason) {
        self.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether shutdown has begun (sockets are draining).
    pub fn shutting_down(&self) -> bool {
        self.closing.is_cancelled()
    }

    pub(super) fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// Cancelled when shutdown begins (other long-lived connections, such as `/mcp`'s
    /// streams, end with it).
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.closing
    }

    pub(super) fn sessions(&self) -> &TaskTracker {
        &self.sessions
    }

    /// Refuses new sockets and tells the open ones to finish their turns and close (1001).
    pub fn begin_shutdown(&self) {
        self.closing.cancel();
        self.sessions.close();
    }

    /// Waits until every socket has closed and every turn has ended (turns without a socket
    /// are cancelled at `deadline`, storing what they have); `false` if some socket is still
    /// open at `deadline`.
    pub async fn drained(&self, deadline: Duration) -> bool {
        let closed = tokio::time::timeout(deadline, self.sessions.wait())
            .await
            .is_ok();
        self.live.drain(deadline).await;
        closed
    }

    pub fn snapshot(&self, turns: TurnSnapshot) -> SocketSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let [capacity, shutting_down, origin] = self.rejected.each_ref().map(load);
        let [
            client,
            too_large,
            slow_reader,
            ping_timeout,
            shutdown,
            revoked,
        ] = self.closed.each_ref().map(load);
        SocketSnapshot {
            active: self.active.current(),
            peak: self.active.peak(),
            max_connections: self.max,
            accepted: load(&self.accepted),
            rejected: capacity + shutting_down + origin,
            rejected_by_reason: RejectedByReason {
                capacity,
                shutting_down,
                origin,
            },
            closed_by_reason: ClosedByReason {
                client,
                too_large,
                slow_reader,
                ping_timeout,
                shutdown,
                revoked,
            },
            messages_in: load(&self.frames_in),
            messages_out: load(&self.frames_out),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            refused_frames: load(&self.refused_frames),
            turns,
            live_turns: self.live.running(),
            detached_turns: self.live.detached(),
        }
    }
}
