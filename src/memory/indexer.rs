//! History search's background indexer: finished user and assistant messages are embedded in
//! batches after their turn (never delaying it) and stored with a watermark, so each message
//! is considered once, across restarts. An embedder that fails is retried with a backoff;
//! turns never wait for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{MemoryError, MemoryService};

/// Checked this often even without a finished turn (messages written through `/api`).
const IDLE_INTERVAL: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// After a turn finishes, the indexer waits this long for others before it reads what is
/// pending: under load many turns make one batch (one read, one write) instead of one each.
const GATHER: Duration = Duration::from_millis(200);

impl MemoryService {
    /// Runs until `shutdown`.
    pub async fn run_indexer(self: Arc<Self>, shutdown: CancellationToken) {
        if !self.config.history_search {
            return;
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match self.index_batch().await {
                Ok(true) => Duration::ZERO,
                Ok(false) => {
                    backoff = Duration::from_secs(1);
                    tokio::select! {
                        () = self.turn_finished.notified() => GATHER,
                        () = tokio::time::sleep(IDLE_INTERVAL) => Duration::ZERO,
                        () = shutdown.cancelled() => return,
                    }
                }
                Err(error) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, retry_in = ?backoff, "history search: embedding failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Embeds one batch; `true` when it was full (more may be waiting at once). A batch that
    /// caught up returns `false`: the indexer then gathers again instead of embedding, under
    /// steady load, a turn or two at a time (a read and a write each).
    pub async fn index_batch(&self) -> Result<bool, MemoryError> {
        let memories = self.store.memories();
        let batch = memories.pending_messages(self.config.batch_size).await?;
        let Some(up_to) = batch.up_to else {
            return Ok(false);
        };
        let pending: Vec<_> = batch
            .messages
            .into_iter()
            .filter(|m| m.content.chars().any(char::is_alphanumeric))
            .collect();
        let texts: Vec<String> = pending
            .iter()
            .map(|m| m.content.chars().take(super::EMBED_CHARS).collect())
            .collect();
        let vectors = if texts.is_empty() {
            Vec::new()
        } else {
            self.embedder.embed(&texts).await?
        };
        let count = vectors.len() as u64;
        memories
            .put_message_vectors(pending.into_iter().zip(vectors).collect(), up_to)
            .await?;
        self.stats.embedded.fetch_add(count, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(batch.full)
    }
}
