//! Where a socket's frames wait to be written, already encoded (and fitted to
//! [`MAX_FRAME_BYTES`](super::fit::MAX_FRAME_BYTES)). Sending never waits: a turn reads its
//! provider at the provider's pace whatever its client does, so a slow reader never holds a
//! provider slot longer than the stream lasts, nor makes a provider read time out.
//!
//! What a slow reader costs is bounded twice:
//! - in bytes: past `buffer_bytes` waiting, a frame is refused and the reader counts as
//!   stalled at once;
//! - in time: the queue is *full* from when it reaches `queue_frames` frames (or half the
//!   byte buffer) until it drains to half of that. Full for `stall_limit` without a break, the
//!   reader counts as stalled, however often it takes one frame.
//!
//! A stalled socket is closed (1008) and its turns cancelled: they store what was answered.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fit::{Encoded, MAX_FRAME_BYTES, encode};
use super::frames::ServerFrame;

#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// Frames waiting that make the queue count as full.
    pub queue_frames: usize,
    /// Bytes waiting at most.
    pub buffer_bytes: usize,
    /// How long the queue may stay full.
    pub stall_limit: Duration,
}

/// The sending side, shared by a socket's reader and its turns.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<String>,
    shared: Arc<Shared>,
}

/// The writer's side.
pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<String>,
    shared: Arc<Shared>,
}

struct Shared {
    limits: OutboxLimits,
    frames: AtomicUsize,
    bytes: AtomicUsize,
    full: AtomicBool,
    full_since: Mutex<Option<Instant>>,
    became_full: Notify,
    overflowed: CancellationToken,
    /// `overflowed`, read without its lock on every frame.
    has_overflowed: AtomicBool,
}

impl Outbox {
    pub fn channel(limits: OutboxLimits) -> (Self, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            limits: OutboxLimits {
                queue_frames: limits.queue_frames.max(1),
                ..limits
            },
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            full: AtomicBool::new(false),
            full_since: Mutex::new(None),
            became_full: Notify::new(),
            overflowed: CancellationToken::new(),
            has_overflowed: AtomicBool::new(false),
        });
        let receiver = OutboxReceiver {
            rx,
            shared: shared.clone(),
        };
        (Self { tx, shared }, receiver)
    }

    /// Queues `frame` without waiting; `false` when it will never be written (the socket is
    /// gone, or its reader stalled).
    pub fn send(&self, frame: &ServerFrame) -> bool {
        let shared = &self.shared;
        if shared.has_overflowed.load(Ordering::Acquire) {
            return false;
        }
        let encoded = encode(frame, MAX_FRAME_BYTES);
        let size = encoded.bytes();
        let waiting = shared.bytes.load(Ordering::Relaxed);
        // A frame always goes into an empty queue, however large.
        if waiting > 0 && waiting + size > shared.limits.buffer_bytes {
            shared.has_overflowed.store(true, Ordering::Release);
            shared.overflowed.cancel();
            return false;
        }
        shared.bytes.fetch_add(size, Ordering::Relaxed);
        let frames = shared.frames.fetch_add(encoded.count(), Ordering::Relaxed) + encoded.count();
        let sent = match encoded {
            Encoded::One(text) => self.tx.send(text).is_ok(),
            Encoded::Many(texts) => texts.into_iter().all(|text| self.tx.send(text).is_ok()),
        };
        if frames >= shared.limits.queue_frames || waiting + size >= shared.limits.buffer_bytes / 2
        {
            shared.mark_full();
        }
        sent
    }

    /// What tells when the reader stalls (it holds no sender: the queue still closes when the
    /// outboxes are dropped).
    pub fn stall_watch(&self) -> StallWatch {
        StallWatch {
            shared: self.shared.clone(),
        }
    }
}

/// See [`Outbox::stall_watch`].
pub struct StallWatch {
    shared: Arc<Shared>,
}

impl StallWatch {
    /// Resolves once the reader counts as stalled: the byte buffer overflowed, or the queue
    /// stayed full for `stall_limit`.
    pub async fn stalled(&self) {
        let shared = &self.shared;
        loop {
            let since = *shared.lock_since();
            let Some(since) = since else {
                tokio::select! {
                    () = shared.became_full.notified() => continue,
                    () = shared.overflowed.cancelled() => return,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(since + shared.limits.stall_limit) => {
                    if *shared.lock_since() == Some(since) {
                        return;
                    }
                }
                () = shared.overflowed.cancelled() => return,
            }
        }
    }
}

impl OutboxReceiver {
    pub async fn recv(&mut self) -> Option<String> {
        let text = self.rx.recv().await?;
        self.shared.taken(text.len());
        Some(text)
    }

    /// No frame waiting now.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    pub fn try_recv(&mut self) -> Option<String> {
        let text = self.rx.try_recv().ok()?;
        self.shared.taken(text.len());
        Some(text)
    }
}

impl Shared {
    fn lock_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.full_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_full(&self) {
        if self.full.swap(true, Ordering::Relaxed) {
            return;
        }
        self.lock_since().get_or_insert_with(Instant::now);
        self.became_full.notify_one();
    }

    /// A frame left the queue for the socket; below the low-water mark the queue is no longer
    /// full.
    fn taken(&self, bytes: usize) {
        let frames = self.frames.fetch_sub(1, Ordering::Relaxed) - 1;
        let waiting = self.bytes.fetch_sub(bytes, Ordering::Relaxed) - bytes;
        if self.full.load(Ordering::Relaxed)
            && frames <= self.limits.queue_frames / 2
            && waiting < self.limits.buffer_bytes / 4
        {
            let mut since = self.lock_since();
            self.full.store(false, Ordering::Relaxed);
            *since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> OutboxLimits {
        OutboxLimits {
            queue_frames: 4,
            buffer_bytes: 64 * 1024,
            stall_limit: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sending_never_waits_and_a_reader_that_keeps_up_never_stalls() {
        let (outbox, mut rx) = Outbox::channel(limits());
        for round in 0..20 {
            for _ in 0..3 {
                assert!(outbox.send(&ServerFrame::pong(None)));
            }
            for _ in 0..3 {
                assert!(rx.recv().await.is_some());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let stalled =
                tokio::time::timeout(Duration::ZERO, outbox.stall_watch().stalled()).await;
            assert!(stalled.is_err(), "stalled in round {round}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_taking_one_frame_at_a_time_while_full_stalls_after_the_limit() {
        let (outbox, mut rx) = Outbox::channel(limits());
        for _ in 0..8 {
            assert!(outbox.send(&ServerFrame::pong(None)));
        }
        let started = Instant::now();
        let reader = tokio::spawn(async move {
            // One frame every 4 s (under the 5 s limit), while more keep coming.
            loop {
                tokio::time::sleep(Duration::from_secs(4)).await;
                if rx.recv().await.is_none() {
                    break;
                }
            }
        });
        let feeder = outbox.clone();
        let feeding = tokio::spawn(async move {
            loop {
                feeder.send(&ServerFrame::pong(None));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        outbox.stall_watch().stalled().await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        feeding.abort();
        reader.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_byte_buffer_a_frame_is_refused_and_the_reader_stalls_at_once() {
        let (outbox, _rx) = Outbox::channel(OutboxLimits {
            queue_frames: 1000,
            buffer_bytes: 1024,
            stall_limit: Duration::from_secs(60),
        });
        let big = || ServerFrame::text("r", "x".repeat(600));
        assert!(outbox.send(&big()), "an empty queue takes any frame");
        assert!(!outbox.send(&big()), "over the buffer");
        tokio::time::timeout(Duration::ZERO, outbox.stall_watch().stalled())
            .await
            .expect("stalled at once");
        assert!(!outbox.send(&ServerFrame::pong(None)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_drained_below_half_is_no_longer_full() {
        let (outbox, mut rx) = Outbox::channel(limits());
        for _ in 0..4 {
            outbox.send(&ServerFrame::pong(None));
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        for _ in 0..2 {
            rx.recv().await;
        }
        // Full again, later: the limit counts from now.
        for _ in 0..2 {
            outbox.send(&ServerFrame::pong(None));
        }
        let started = Instant::now();
        outbox.stall_watch().stalled().await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
