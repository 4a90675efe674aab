//! Where a socket's frames wait to be written: a bounded queue. A full queue makes senders
//! wait (back-pressure on the turn), but only for `stall_limit`: a reader that slow is given
//! up on, so memory per socket stays bounded by the queue however slow the client is.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use super::ServerFrame;

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<ServerFrame>,
    stall_limit: Duration,
    stalled: CancellationToken,
}

impl Outbox {
    /// The sending side, the receiving side, and the token cancelled when the reader stalls.
    pub fn channel(
        capacity: usize,
        stall_limit: Duration,
    ) -> (Self, mpsc::Receiver<ServerFrame>, CancellationToken) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stalled = CancellationToken::new();
        let outbox = Self {
            tx,
            stall_limit,
            stalled: stalled.clone(),
        };
        (outbox, rx, stalled)
    }

    /// Queues `frame`; `false` when it will never be written (the socket is gone or stalled).
    pub async fn send(&self, frame: ServerFrame) -> bool {
        if self.stalled.is_cancelled() {
            return false;
        }
        let frame = match self.tx.try_send(frame) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(frame)) => frame,
        };
        if let Ok(sent) = tokio::time::timeout(self.stall_limit, self.tx.send(frame)).await {
            sent.is_ok()
        } else {
            self.stalled.cancel();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_waits_then_gives_up_on_the_reader() {
        let (outbox, mut rx, stalled) = Outbox::channel(2, Duration::from_secs(5));
        assert!(outbox.send(ServerFrame::pong(None)).await);
        assert!(outbox.send(ServerFrame::pong(None)).await);
        // A reader that takes a frame within the limit unblocks the sender.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rx.recv().await;
            rx
        });
        assert!(outbox.send(ServerFrame::pong(None)).await);
        assert!(!stalled.is_cancelled());
        let _rx = reader.await.expect("reader");
        // Nobody reads: after the limit the socket counts as stalled, and later sends fail fast.
        assert!(!outbox.send(ServerFrame::pong(None)).await);
        assert!(stalled.is_cancelled());
        assert!(!outbox.send(ServerFrame::pong(None)).await);
    }
}
