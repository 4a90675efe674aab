//! Semantic memory: what the model (or an MCP client) asks to remember, found again by
//! similarity; and history search over finished turns, embedded in the background.
//!
//! Vectors live in the same SQLite file (sqlite-vec `vec0` tables, `store::Memories`); the
//! embedder is the built-in lexical one or a provider's embedding model (`embedder.rs`).

mod embedder;
mod indexer;
mod lexical;
pub mod reembed;
pub mod tools;

use crate::wire::{ErrorCode, WireFault};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::Notify;

pub use embedder::{EmbedError, TextEmbedder};
pub use lexical::LexicalEmbedder;

use crate::auth::Caller;
use crate::config::MemoryConfig;
use crate::store::{Memory, MemoryCounts, MemoryHit, MessageHit, PrincipalId, Store, StoreError};

/// Characters a memory's text may have.
pub const MAX_MEMORY_CHARS: usize = 8_000;
/// Characters of a text that are embedded; the rest rarely changes what it is about.
pub(crate) const EMBED_CHARS: usize = 4_000;
/// Characters a query may have.
pub const MAX_QUERY_CHARS: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key's tokens for the day are used (a provider's embedding costs tokens).
    #[error(transparent)]
    Quota(#[from] crate::auth::QuotaExceeded),
}

impl MemoryError {
    /// A stable code for the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) | Self::Embed(EmbedError::NoWords) => ErrorCode::InvalidRequest,
            Self::Embed(EmbedError::Provider(e)) => e.code(),
            Self::Embed(EmbedError::Dimensions { .. }) => ErrorCode::EmbedderError,
            Self::Store(e) => e.code(),
            Self::Quota(_) => ErrorCode::QuotaExceeded,
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            Self::Invalid(_) => false,
            Self::Embed(e) => e.retryable(),
            Self::Store(e) => e.retryable(),
            Self::Quota(_) => true,
        }
    }
}

impl WireFault for MemoryError {
    fn code(&self) -> ErrorCode {
        MemoryError::code(self)
    }

    fn retryable(&self) -> bool {
        MemoryError::retryable(self)
    }
}

pub struct MemoryService {
    store: Store,
    embedder: TextEmbedder,
    config: MemoryConfig,
    /// Woken when a turn has finished, so its messages are embedded soon.
    turn_finished: Notify,
    stats: IndexerStats,
    /// Row counts for `/health`, recounted in the background at most every [`COUNTS_TTL`].
    counts: Arc<std::sync::Mutex<CountsCache>>,
}

fn lock(cache: &std::sync::Mutex<CountsCache>) -> std::sync::MutexGuard<'_, CountsCache> {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct CountsCache {
    counted_at: Option<std::time::Instant>,
    counts: MemoryCounts,
    recounting: bool,
}

/// `/health` is polled often and must stay cheap: row counts are at most this old.
const COUNTS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Default)]
struct IndexerStats {
    embedded: AtomicU64,
    batches: AtomicU64,
    failures: AtomicU64,
}

/// `/health` `memory`.
#[derive(Debug, Clone, Serialize)]
pub struct MemorySnapshot {
    pub embedder: String,
    pub dimensions: u32,
    pub tools: bool,
    pub history_search: bool,
    #[serde(flatten)]
    pub counts: MemoryCounts,
    pub messages_embedded: u64,
    pub embed_batches: u64,
    pub embed_failures: u64,
}

impl MemoryService {
    pub fn new(store: Store, embedder: TextEmbedder, config: MemoryConfig) -> Self {
        Self {
            store,
            embedder,
            config,
            turn_finished: Notify::new(),
            stats: IndexerStats::default(),
            counts: Arc::default(),
        }
    }

    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    pub fn describe(&self) -> String {
        self.embedder.describe()
    }

    /// Stores `text` with its vector, in one transaction.
    pub async fn remember(
        &self,
        caller: &Caller,
        text: &str,
        tags: Vec<String>,
        conversation: Option<String>,
    ) -> Result<Memory, MemoryError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(MemoryError::Invalid("text is empty".into()));
        }
        if text.chars().count() > MAX_MEMORY_CHARS {
            return Err(MemoryError::Invalid(format!(
                "text has over {MAX_MEMORY_CHARS} characters; store a summary"
            )));
        }
        let vector = self.embed_for(caller, text).await?;
        Ok(self
            .store
            .memories_of(caller.id())
            .store(text.to_string(), tags, conversation, &vector)
            .await?)
    }

    /// The `k` memories nearest `query`, filtered inside the KNN query.
    pub async fn recall(
        &self,
        caller: &Caller,
        query: &str,
        k: usize,
        tags: Vec<String>,
        conversation: Option<String>,
    ) -> Result<Vec<MemoryHit>, MemoryError> {
        let vector = self.query_vector(caller, query, k).await?;
        Ok(self
            .store
            .memories_of(caller.id())
            .find(&vector, k, tags, conversation)
            .await?)
    }

    /// Deletes one of `owner`'s memories; another principal's id is `not found`.
    pub async fn forget(&self, owner: PrincipalId, id: i64) -> Result<(), MemoryError> {
        Ok(self.store.memories_of(owner).delete(id).await?)
    }

    /// The `k` stored messages nearest `query` (history search).
    pub async fn search_history(
        &self,
        caller: &Caller,
        query: &str,
        k: usize,
        conversation: Option<String>,
    ) -> Result<Vec<MessageHit>, MemoryError> {
        if !self.config.history_search {
            return Err(MemoryError::Invalid(
                "history search is off (memory.history_search: false)".into(),
            ));
        }
        let vector = self.query_vector(caller, query, k).await?;
        Ok(self
            .store
            .memories_of(caller.id())
            .search_messages(&vector, k, conversation, self.config.snippet_chars)
            .await?)
    }

    async fn query_vector(
        &self,
        caller: &Caller,
        query: &str,
        k: usize,
    ) -> Result<Vec<f32>, MemoryError> {
        let max = self.config.max_k;
        if k == 0 || k > max {
            return Err(MemoryError::Invalid(format!(
                "k must be between 1 and {max} (got {k})"
            )));
        }
        let query = query.trim();
        if query.is_empty() {
            return Err(MemoryError::Invalid("query is empty".into()));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(MemoryError::Invalid(format!(
                "query has over {MAX_QUERY_CHARS} characters"
            )));
        }
        self.embed_for(caller, query).await
    }

    /// `text`'s vector, paid for by `caller`: a provider's embedding costs tokens of the key's
    /// `tokens_per_day` (refused first when none are left; counted with our tokenizer, since a
    /// batch's reported usage covers every caller in it). The built-in embedder is free.
    async fn embed_for(&self, caller: &Caller, text: &str) -> Result<Vec<f32>, MemoryError> {
        if !self.embedder.costs_tokens() {
            return Ok(self.embedder.embed_one(text).await?);
        }
        caller.within_tokens()?;
        let vector = self.embedder.embed_one(text).await?;
        let encoding = crate::tokens::Encoding::Cl100kBase;
        encoding.load().await;
        let embedded: String = text.chars().take(EMBED_CHARS).collect();
        caller.spent(u64::from(encoding.count_long(&embedded).await), 0);
        Ok(vector)
    }

    /// A turn has stored its messages: embed them soon.
    pub fn turn_finished(&self) {
        if self.config.history_search {
            self.turn_finished.notify_one();
        }
    }

    /// The row counts: counted inline the first time, afterwards the last count, recounted in
    /// the background when older than [`COUNTS_TTL`] (a `/health` poll never waits behind the
    /// database under load).
    async fn counts(&self) -> MemoryCounts {
        if let Some(counts) = self.cached_counts() {
            return counts;
        }
        let counts = self.store.memories().counts().await.unwrap_or_default();
        let mut cache = lock(&self.counts);
        cache.counted_at = Some(std::time::Instant::now());
        cache.counts = counts.clone();
        counts
    }

    /// The last count, if there is one; starts a recount when it is stale.
    fn cached_counts(&self) -> Option<MemoryCounts> {
        let mut cache = lock(&self.counts);
        let counted_at = cache.counted_at?;
        if counted_at.elapsed() >= COUNTS_TTL && !cache.recounting {
            cache.recounting = true;
            let (store, shared) = (self.store.clone(), self.counts.clone());
            tokio::spawn(async move {
                let counts = store.memories().counts().await.unwrap_or_default();
                *lock(&shared) = CountsCache {
                    counted_at: Some(std::time::Instant::now()),
                    counts,
                    recounting: false,
                };
            });
        }
        Some(cache.counts.clone())
    }

    pub async fn snapshot(&self) -> MemorySnapshot {
        let counts = self.counts().await;
        MemorySnapshot {
            embedder: self.describe(),
            dimensions: self.store.dimensions(),
            tools: self.config.tools,
            history_search: self.config.history_search,
            counts,
            messages_embedded: self.stats.embedded.load(Ordering::Relaxed),
            embed_batches: self.stats.batches.load(Ordering::Relaxed),
            embed_failures: self.stats.failures.load(Ordering::Relaxed),
        }
    }
}
