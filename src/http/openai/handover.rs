//! An exchange's events handed to its HTTP response, bounded: the exchange never waits for
//! the client (it reads its provider at the provider's pace), and a client that leaves more
//! than [`BUFFER_BYTES`] unread has its exchange cancelled, so a slow reader costs only itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chat::{TurnEvent, TurnSink};

/// Bytes of events waiting for the client at most.
pub const BUFFER_BYTES: usize = 4 << 20;

struct Shared {
    waiting: AtomicUsize,
    cancel: CancellationToken,
}

pub struct Sender {
    tx: mpsc::UnboundedSender<(usize, TurnEvent)>,
    shared: Arc<Shared>,
}

pub struct Receiver {
    rx: mpsc::UnboundedReceiver<(usize, TurnEvent)>,
    shared: Arc<Shared>,
}

/// The two ends; `cancel` is the exchange's, cancelled on overflow.
pub fn channel(cancel: CancellationToken) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        waiting: AtomicUsize::new(0),
        cancel,
    });
    (
        Sender {
            tx,
            shared: shared.clone(),
        },
        Receiver { rx, shared },
    )
}

fn size_of(event: &TurnEvent) -> usize {
    256 + match event {
        TurnEvent::TextDelta(text) => text.len(),
        TurnEvent::ToolCallStarted { arguments, .. } => arguments.len(),
        TurnEvent::ToolCallFinished { summary, .. } => summary.len(),
        _ => 0,
    }
}

impl TurnSink for Sender {
    fn emit(&self, event: TurnEvent) {
        let size = size_of(&event);
        let last = matches!(event, TurnEvent::Completed(_) | TurnEvent::Failed(_));
        let waiting = self.shared.waiting.fetch_add(size, Ordering::Relaxed) + size;
        // The last event always goes: the client learns how the exchange ended.
        if waiting > BUFFER_BYTES && !last {
            self.shared.waiting.fetch_sub(size, Ordering::Relaxed);
            self.shared.cancel.cancel();
            return;
        }
        let _ = self.tx.send((size, event));
    }
}

impl Receiver {
    pub async fn recv(&mut self) -> Option<TurnEvent> {
        let (size, event) = self.rx.recv().await?;
        self.shared.waiting.fetch_sub(size, Ordering::Relaxed);
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

    #[tokio::test]
    async fn past_the_buffer_the_exchange_is_cancelled_but_its_end_still_arrives() {
        let cancel = CancellationToken::new();
        let (sender, mut receiver) = channel(cancel.clone());
        let piece = "x".repeat(1 << 20);
        for _ in 0..3 {
            sender.emit(TurnEvent::TextDelta(piece.clone()));
        }
        assert!(!cancel.is_cancelled());
        sender.emit(TurnEvent::TextDelta(piece.clone()));
        assert!(cancel.is_cancelled(), "the fourth MiB overflows");
        sender.emit(TurnEvent::Failed(WireError::cancelled()));
        let mut got = Vec::new();
        drop(sender);
        while let Some(event) = receiver.recv().await {
            got.push(event);
        }
        assert_eq!(got.len(), 4, "three deltas and the end");
        assert!(matches!(got[3], TurnEvent::Failed(_)));
    }
}
