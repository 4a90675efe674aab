//! Embeddings: a cache keyed by model and text in front of a batcher that coalesces concurrent
//! requests arriving within `batch_window` (up to `max_batch` texts) into one `/embeddings` call.
//!
//! Each [`Embedder`] owns its batcher task, which ends when the embedder is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::error::ProviderError;
use super::provider::Provider;
use crate::config::EmbeddingsConfig;
use crate::stats::CacheSnapshot;

pub type Vector = Arc<[f32]>;

/// Vectors by (model, text), shared by every embedder, with its hit and miss counts.
pub struct EmbeddingCache {
    cache: Option<quick_cache::sync::Cache<(String, String), Vector>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl EmbeddingCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn get(&self, model: &str, text: &str) -> Option<Vector> {
        let found = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&(model.to_string(), text.to_string())));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn insert(&self, model: &str, text: String, vector: Vector) {
        if let Some(cache) = &self.cache {
            cache.insert((model.to_string(), text), vector);
        }
    }

    pub fn snapshot(&self) -> CacheSnapshot {
        CacheSnapshot {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.as_ref().map_or(0, quick_cache::sync::Cache::len),
            capacity: self
                .cache
                .as_ref()
                .map_or(0, |c| usize::try_from(c.capacity()).unwrap_or(usize::MAX)),
        }
    }
}

struct Job {
    text: String,
    reply: oneshot::Sender<Result<Vector, ProviderError>>,
}

#[derive(Default)]
struct BatchStats {
    batches: AtomicU64,
    texts: AtomicU64,
    largest: AtomicUsize,
}

/// `/health` figures of one provider's embeddings.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedderSnapshot {
    pub model: String,
    pub batches: u64,
    pub texts: u64,
    pub mean_batch: f64,
    pub largest_batch: usize,
}

pub struct Embedder {
    model: String,
    jobs: mpsc::Sender<Job>,
    cache: Arc<EmbeddingCache>,
    stats: Arc<BatchStats>,
}

impl Embedder {
    /// Starts the batcher task; call inside a tokio runtime.
    pub fn start(
        provider: Arc<Provider>,
        model: String,
        config: &EmbeddingsConfig,
        cache: Arc<EmbeddingCache>,
    ) -> Self {
        let (jobs, queue) = mpsc::channel(4096);
        let stats = Arc::new(BatchStats::default());
        let batcher = Batcher {
            provider,
            model: model.clone(),
            config: config.clone(),
            cache: cache.clone(),
            stats: stats.clone(),
        };
        tokio::spawn(batcher.run(queue));
        Self {
            model,
            jobs,
            cache,
            stats,
        }
    }

    /// One vector per text, in order: from the cache, or from a batched request.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vector>, ProviderError> {
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(ProviderError::InvalidRequest {
                provider: "embeddings".into(),
                message: format!("text {index} is empty; there is nothing to embed"),
            });
        }
        let mut vectors: Vec<Option<Vector>> = texts
            .iter()
            .map(|t| self.cache.get(&self.model, t))
            .collect();
        let mut pending = Vec::new();
        for (index, text) in texts
            .iter()
            .enumerate()
            .filter(|(i, _)| vectors[*i].is_none())
        {
            let (reply, answer) = oneshot::channel();
            self.jobs
                .send(Job {
                    text: text.clone(),
                    reply,
                })
                .await
                .map_err(|_| closed())?;
            pending.push((index, answer));
        }
        for (index, answer) in pending {
            vectors[index] = Some(answer.await.map_err(|_| closed())??);
        }
        Ok(vectors.into_iter().flatten().collect())
    }

    pub fn snapshot(&self) -> EmbedderSnapshot {
        let batches = self.stats.batches.load(Ordering::Relaxed);
        let texts = self.stats.texts.load(Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let mean_batch = if batches == 0 {
            0.0
        } else {
            (texts as f64 / batches as f64 * 100.0).round() / 100.0
        };
        EmbedderSnapshot {
            model: self.model.clone(),
            batches,
            texts,
            mean_batch,
            largest_batch: self.stats.largest.load(Ordering::Relaxed),
        }
    }
}

fn closed() -> ProviderError {
    ProviderError::Connect {
        provider: "embeddings".into(),
        message: "the embedding batcher has stopped".into(),
    }
}

struct Batcher {
    provider: Arc<Provider>,
    model: String,
    config: EmbeddingsConfig,
    cache: Arc<EmbeddingCache>,
    stats: Arc<BatchStats>,
}

impl Batcher {
    async fn run(self, mut queue: mpsc::Receiver<Job>) {
        let this = Arc::new(self);
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            let deadline = Instant::now() + this.config.batch_window;
            while batch.len() < this.config.max_batch {
                match tokio::time::timeout_at(deadline, queue.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    _ => break,
                }
            }
            // Batches go out concurrently, within the provider's own limits.
            tokio::spawn(this.clone().send(batch));
        }
    }

    async fn send(self: Arc<Self>, batch: Vec<Job>) {
        let mut unique: Vec<String> = Vec::new();
        let mut position: HashMap<String, usize> = HashMap::new();
        let slots: Vec<usize> = batch
            .iter()
            .map(|job| {
                *position.entry(job.text.clone()).or_insert_with(|| {
                    unique.push(job.text.clone());
                    unique.len() - 1
                })
            })
            .collect();
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .texts
            .fetch_add(unique.len() as u64, Ordering::Relaxed);
        self.stats
            .largest
            .fetch_max(unique.len(), Ordering::Relaxed);
        match self.provider.embed_batch(&self.model, &unique).await {
            Ok(vectors) => {
                let vectors: Vec<Vector> = vectors.into_iter().map(Vector::from).collect();
                for (text, vector) in unique.into_iter().zip(&vectors) {
                    self.cache.insert(&self.model, text, vector.clone());
                }
                for (job, slot) in batch.into_iter().zip(slots) {
                    let _ = job.reply.send(Ok(vectors[slot].clone()));
                }
            }
            Err(error) => {
                for job in batch {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
