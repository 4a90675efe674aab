//! `mcp-platform reembed`: every memory and searchable message embedded again with the
//! configured embedder, in batches, then swapped in at once (`store/vector_rebuild.rs`). Texts with no
//! word to embed are skipped and counted.

use crate::config::VectorSpace;
use crate::store::{ReembedCounts, Store, vector_rebuild};

use super::{MemoryError, TextEmbedder};

#[derive(Debug, Clone, Default)]
pub struct ReembedReport {
    pub counts: ReembedCounts,
    pub skipped: u64,
}

/// Re-embeds everything for `space`; `progress` hears each batch (kind, rows so far).
pub async fn reembed(
    store: &Store,
    embedder: &TextEmbedder,
    space: &VectorSpace,
    batch: usize,
    progress: impl Fn(&str, u64),
) -> Result<ReembedReport, MemoryError> {
    store.reembed_begin().await?;
    let mut skipped = 0;
    let (mut after, mut done) = (0, 0);
    loop {
        let texts = store.memory_texts(after, batch).await?;
        let Some((last, _)) = texts.last() else { break };
        after = *last;
        let (none, vectors) = embed_all(embedder, texts).await?;
        skipped += none;
        done += vectors.len() as u64;
        store
            .reembed_stage(vector_rebuild::MEMORY, vectors, space)
            .await?;
        progress("memories", done);
    }
    let (mut after, mut done, mut up_to) = (0, 0, 0);
    loop {
        let pending = store.searchable_messages(after, batch).await?;
        let Some(last) = pending.up_to else { break };
        (after, up_to) = (last, last);
        let texts = pending
            .messages
            .into_iter()
            .map(|m| (m.id, m.content))
            .collect();
        let (none, vectors) = embed_all(embedder, texts).await?;
        skipped += none;
        done += vectors.len() as u64;
        store
            .reembed_stage(vector_rebuild::MESSAGE, vectors, space)
            .await?;
        progress("messages", done);
    }
    let counts = store.reembed_finish(space.clone(), up_to).await?;
    Ok(ReembedReport { counts, skipped })
}

/// Vectors for the texts that have words; the others are counted as skipped.
async fn embed_all(
    embedder: &TextEmbedder,
    texts: Vec<(i64, String)>,
) -> Result<(u64, Vec<(i64, Vec<f32>)>), MemoryError> {
    let total = texts.len();
    let (ids, texts): (Vec<i64>, Vec<String>) = texts
        .into_iter()
        .filter(|(_, t)| t.chars().any(char::is_alphanumeric))
        .map(|(id, t)| (id, t.chars().take(super::EMBED_CHARS).collect()))
        .unzip();
    let skipped = (total - ids.len()) as u64;
    if ids.is_empty() {
        return Ok((skipped, Vec::new()));
    }
    let vectors = embedder.embed(&texts).await?;
    Ok((skipped, ids.into_iter().zip(vectors).collect()))
}
